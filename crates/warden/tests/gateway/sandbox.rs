//! The sandbox end to end. A hostile stdio server tries to read an SSH key, `/etc/shadow` and
//! Warden's environment, write outside its directory, open sockets, fork-bomb and leave a
//! process behind. Each attempt must fail inside the sandbox while a well-behaved server in the
//! same sandbox keeps working. The same server run without a sandbox must succeed at the
//! attempts, which shows the checks can fail.

use serde_json::{json, Value};
use std::time::{Duration, Instant};
use warden_testkit::harness::{bin, fixture_stdio_upstream, tempdir, warden_with_env, Client};

const SECRET_ENV: &str = "WARDEN_TEST_SANDBOX_SECRET";

fn processes_with_arg(arg: &str) -> Vec<u32> {
    let mut out = Vec::new();
    for e in std::fs::read_dir("/proc").unwrap().flatten() {
        let Ok(pid) = e.file_name().to_string_lossy().parse::<u32>() else { continue };
        if let Ok(cmd) = std::fs::read(format!("/proc/{pid}/cmdline")) {
            if cmd.split(|b| *b == 0).any(|a| a == arg.as_bytes()) {
                out.push(pid);
            }
        }
    }
    out
}

fn results(v: &Value) -> Vec<Value> {
    let text = v["result"]["content"][0]["text"].as_str().unwrap_or_else(|| panic!("no result: {v}"));
    serde_json::from_str(text).unwrap_or_else(|e| panic!("{e}: {v}"))
}

fn find<'a>(r: &'a [Value], name: &str) -> &'a Value {
    r.iter().find(|a| a["name"] == name).unwrap_or_else(|| panic!("{name} missing"))
}

#[tokio::test]
async fn hostile_server_is_contained_while_a_good_one_works() {
    let t = tempdir("sandbox");
    let perm = |p: &std::path::Path, mode: u32| {
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(p, std::fs::Permissions::from_mode(mode)).unwrap();
    };
    // a readable key, and writable directories: only the sandbox stands in the way
    std::fs::create_dir_all(t.join("home/.ssh")).unwrap();
    std::fs::write(t.join("home/.ssh/id_rsa"), "ssh-key-material SANDBOX-TEST-KEY").unwrap();
    for d in ["outside", "work", "control-work"] {
        std::fs::create_dir_all(t.join(d)).unwrap();
        perm(&t.join(d), 0o777);
    }
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    let marker = format!("1000.{}", std::process::id());
    let control_marker = format!("1001.{}", std::process::id());
    let hostile = bin("warden-hostile").display().to_string();
    let work = t.join("work").display().to_string();
    // Process limits count per uid: when root, each server gets a uid of its own, so that other
    // tests' sandboxed servers (running as nobody) do not count against these limits.
    let uid =
        |n: u32| if nix::unistd::geteuid().is_root() { format!("user = \"{}\"\n", 61000 + n) } else { String::new() };
    let upstreams = format!(
        "[[upstream]]\nname = \"hostile\"\ntransport = \"stdio\"\ncommand = {hostile:?}\ncwd = {work:?}\n\
         [upstream.sandbox]\nnetwork = \"deny\"\nread_write = [{work:?}]\nprocesses = 64\n{}\
         [[upstream]]\nname = \"control\"\ntransport = \"stdio\"\ncommand = {hostile:?}\ncwd = {:?}\n\
         [upstream.sandbox]\nenabled = false\n{}",
        uid(std::process::id() % 1000),
        t.join("control-work").display().to_string(),
        fixture_stdio_upstream(
            "good",
            None,
            &format!(
                "[upstream.sandbox]\nnetwork = \"deny\"\nprocesses = 64\n{}",
                uid(1000 + std::process::id() % 1000)
            )
        ),
    );
    let home = t.join("home").display().to_string();
    let mut w = warden_with_env("", &upstreams, &[("HOME", &home), (SECRET_ENV, "sandbox-secret-value")]);
    let mut c = Client::new(&w.url);
    c.initialize().await;

    let args = |m: &str| {
        json!({"secret_env": SECRET_ENV, "warden_pid": w.child.id().to_string(), "outside": t.join("outside"),
               "port": port, "marker": m})
    };
    let r = results(&c.tool(2, "hostile__attack", args(&marker)).await);
    for name in [
        "read_ssh_key",
        "read_shadow",
        "read_warden_environ",
        "own_environment_secret",
        "write_outside",
        "tcp_connect",
        "udp_socket",
        "pidfd_open",
        "fork_bomb",
    ] {
        let a = find(&r, name);
        assert_eq!(a["blocked"], true, "{name} was not blocked: {a}");
    }
    assert_eq!(find(&r, "write_inside")["works"], true, "{r:?}");
    assert!(!t.join("outside/pwned.txt").exists());
    let fork = find(&r, "fork_bomb")["detail"].as_str().unwrap().to_string();
    assert!(fork.starts_with("stopped after"), "{fork}");

    // the well-behaved server in the same kind of sandbox works normally
    let echo = c.tool(3, "good__echo", json!({"text": "still fine"})).await;
    assert_eq!(echo["result"]["content"][0]["text"], "still fine", "{echo}");

    // without the sandbox the same attempts succeed (the checks above can fail)
    let r = results(&c.tool(4, "control__attack", args(&control_marker)).await);
    for name in ["read_ssh_key", "read_warden_environ", "write_outside", "tcp_connect", "pidfd_open"] {
        let a = find(&r, name);
        assert_eq!(a["blocked"], false, "{name} without a sandbox: {a}");
    }
    assert_eq!(find(&r, "own_environment_secret")["blocked"], true, "the environment is cleared even so");

    // Warden reports what the sandbox applied
    let log = w.log();
    let line = log.lines().find(|l| l.contains("sandbox applied") && l.contains("\"hostile\"")).expect("report");
    for layer in ["namespaces=active", "landlock=active", "seccomp=active", "no_new_privs=active", "network=active"] {
        assert!(line.contains(layer), "{layer} not in {line}");
    }
    assert!(log.contains("WITHOUT a sandbox"), "the unsandboxed upstream is flagged");

    // the sandboxed process that left its group ends with Warden; the control's does not
    assert!(!processes_with_arg(&marker).is_empty(), "the hostile server's straggler runs");
    nix::sys::signal::kill(nix::unistd::Pid::from_raw(w.child.id() as i32), nix::sys::signal::Signal::SIGTERM).unwrap();
    let _ = w.child.wait();
    let start = Instant::now();
    while !processes_with_arg(&marker).is_empty() && start.elapsed() < Duration::from_secs(10) {
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert!(processes_with_arg(&marker).is_empty(), "a sandboxed process outlived Warden");
    let left = processes_with_arg(&control_marker);
    assert!(!left.is_empty(), "without a PID namespace the straggler survives");
    for pid in left {
        let _ = nix::sys::signal::kill(nix::unistd::Pid::from_raw(pid as i32), nix::sys::signal::Signal::SIGKILL);
    }
    drop(listener);
}

/// A minimal MCP server in plain Python (no SDK), as a script outside every system path.
const TINY_SERVER: &str = r#"import json, sys
for line in sys.stdin:
    m = json.loads(line)
    if "id" not in m:
        continue
    if m["method"] == "initialize":
        r = {"protocolVersion": m["params"]["protocolVersion"], "capabilities": {"tools": {}},
             "serverInfo": {"name": "tiny", "version": "1"}}
    elif m["method"] == "tools/list":
        r = {"tools": [{"name": "hello", "description": "Says hello", "inputSchema": {"type": "object"}}]}
    else:
        print(json.dumps({"jsonrpc": "2.0", "id": m["id"], "error": {"code": -32601, "message": "no"}}), flush=True)
        continue
    print(json.dumps({"jsonrpc": "2.0", "id": m["id"], "result": r}), flush=True)
"#;

/// `warden scan -- CMD` on a server outside the system paths (a project directory): without a
/// grant it says which path the sandbox refused and what to add, `--read-only DIR` lets it run
/// in the sandbox, `--no-sandbox` runs it without one.
#[test]
fn scan_names_what_the_sandbox_refused_and_takes_readable_paths() {
    let dir = tempdir("scan-project");
    let script = dir.join("server.py");
    std::fs::write(&script, TINY_SERVER).unwrap();
    {
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(&dir, std::fs::Permissions::from_mode(0o755)).unwrap();
        std::fs::set_permissions(&script, std::fs::Permissions::from_mode(0o644)).unwrap();
    }
    let script = script.display().to_string();
    let scan = |flags: &[&str]| {
        let out = std::process::Command::new(bin("warden"))
            .arg("scan")
            .args(flags)
            .args(["--", "python3", &script])
            .output()
            .unwrap();
        (
            out.status.success(),
            String::from_utf8_lossy(&out.stdout).to_string(),
            String::from_utf8_lossy(&out.stderr).to_string(),
        )
    };
    let (ok, _, err) = scan(&[]);
    assert!(!ok, "the default sandbox cannot read the script: {err}");
    let real = std::fs::canonicalize(&script).unwrap();
    let want = format!("the sandbox does not let the server read {}", real.display());
    assert!(err.contains(&want), "want {want:?} in: {err}");
    let add = format!("--read-only {:?}", real.parent().unwrap().display().to_string());
    assert!(err.contains(&add), "want {add:?} in: {err}");

    let (ok, out, err) = scan(&["--read-only", &dir.display().to_string()]);
    assert!(ok, "{out}{err}");
    assert!(out.contains("target: 1 tool(s)"), "{out}");
    assert!(err.contains("sandbox applied"), "{err}");

    let (ok, out, err) = scan(&["--no-sandbox"]);
    assert!(ok && out.contains("target: 1 tool(s)"), "{out}{err}");
    assert!(err.contains("WITHOUT a sandbox"), "{err}");
    std::fs::remove_dir_all(dir).unwrap();
}

/// A stdio upstream that does not say it needs the network gets none: `network` defaults to
/// `deny` (a local server with network reaches every loopback service, Redis included).
#[test]
fn a_stdio_upstream_has_no_network_unless_it_says_so() {
    let dir = tempdir("net-default");
    let cfg = dir.join("w.toml");
    std::fs::write(&cfg, "[[upstream]]\nname = \"quiet\"\ntransport = \"stdio\"\ncommand = \"/bin/true\"\n").unwrap();
    let out = std::process::Command::new(bin("warden")).args(["check", "--config"]).arg(&cfg).output().unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "{text}{}", String::from_utf8_lossy(&out.stderr));
    let line = text.lines().find(|l| l.starts_with("upstream quiet: sandbox:")).unwrap_or_default();
    assert!(line.contains("network denied"), "{text}");
    std::fs::remove_dir_all(dir).unwrap();
}

/// The state of `layer` in a `sandbox applied` log line (`layers=namespaces=active …`).
fn logged_state<'a>(line: &'a str, layer: &str) -> &'a str {
    let layer = format!("{layer}=");
    line.split_whitespace().find_map(|w| w.trim_start_matches("layers=").strip_prefix(&layer)).unwrap_or("absent")
}

/// Finding 9: a sandbox layer that is not in force is loud. `/readyz` lists, per started stdio
/// upstream, the layers missing on this machine — the ones the helper's own report (its start
/// log line) does not show in force — without making the gateway unready. A layer the config
/// switches off (`network = "allow"`) is listed, an upstream without a sandbox misses every
/// layer, and the log says so at WARN.
#[tokio::test]
async fn readyz_lists_the_sandbox_layers_not_in_force() {
    let upstreams = [
        fixture_stdio_upstream("tight", None, "[upstream.sandbox]\nnetwork = \"deny\"\n"),
        fixture_stdio_upstream("open", None, "[upstream.sandbox]\nnetwork = \"allow\"\n"),
        fixture_stdio_upstream("bare", None, "[upstream.sandbox]\nenabled = false\n"),
    ]
    .concat();
    let w = warden_with_env("", &upstreams, &[]);
    let readyz = w.url.replace("/mcp", "/readyz");
    let deadline = Instant::now() + Duration::from_secs(20);
    let (status, body) = loop {
        let r = reqwest::get(&readyz).await.unwrap();
        let status = r.status().as_u16();
        let body: Value = r.json().await.unwrap();
        let reported = ["tight", "open", "bare"].iter().all(|u| body["sandbox"][u].is_object());
        if (reported && body["ready"] == true) || Instant::now() > deadline {
            break (status, body);
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    assert_eq!((status, &body["ready"]), (200, &json!(true)), "{body}");
    let sandbox = body.get("sandbox").unwrap_or_else(|| panic!("no sandbox report in /readyz: {body}"));
    let names = |v: &Value| -> Vec<String> {
        v.as_array().unwrap_or_else(|| panic!("{v}")).iter().map(|s| s.as_str().unwrap().to_string()).collect()
    };

    // What the helper reported for each sandboxed upstream, as Warden logged it at start.
    let log = w.log();
    for up in ["tight", "open"] {
        let line = log
            .lines()
            .find(|l| l.contains("sandbox applied") && l.contains(&format!("\"{up}\"")))
            .unwrap_or_else(|| panic!("no report for {up}: {log}"));
        let state = |l: &str| logged_state(line, l);
        let mut want = Vec::new();
        let mut partial = Vec::new();
        for (layer, logged, ok) in [
            ("pid_namespace", "namespaces", &["active"][..]),
            ("landlock", "landlock", &["active"][..]),
            ("seccomp", "seccomp", &["active"][..]),
            ("user", "user", &["active", "off"][..]),
            ("network", "network", &["active"][..]),
        ] {
            match state(logged) {
                s if ok.contains(&s) => {}
                "partial" => partial.push(layer.to_string()),
                _ => want.push(layer.to_string()),
            }
        }
        assert_eq!(names(&sandbox[up]["missing"]), want, "{up}: {line}\n{body}");
        assert_eq!(names(&sandbox[up]["partial"]), partial, "{up}: {line}\n{body}");
        // seccomp is in force on every kernel these tests run on, and is not listed
        assert_eq!(state("seccomp"), "active", "{line}");
        assert!(!want.contains(&"seccomp".to_string()));
    }
    // the layer the config switched off is listed; the one it asked for is not
    assert!(names(&sandbox["open"]["missing"]).contains(&"network".to_string()), "{body}");
    assert!(!names(&sandbox["tight"]["missing"]).contains(&"network".to_string()), "{body}");
    assert_eq!(
        names(&sandbox["bare"]["missing"]),
        ["pid_namespace", "landlock", "seccomp", "user", "network"],
        "no sandbox: nothing in force"
    );
    assert_eq!(body["upstreams"]["open"], "ready", "reported, not failed: {body}");
    let warned: Vec<&str> = log.lines().filter(|l| l.contains("WARN") && l.contains("NOT in force")).collect();
    assert!(
        warned.iter().any(|l| l.contains("\"open\"") && l.contains("network (allowed)")),
        "no WARN for the open upstream: {log}"
    );
    // logged once per upstream and gap, not once per server started (a session starts its own)
    let mut c = Client::new(&w.url);
    c.initialize().await;
    assert_eq!(c.tool(1, "open__echo", json!({"text": "x"})).await["result"]["content"][0]["text"], "x");
    let log = w.log();
    let started = log.lines().filter(|l| l.contains("sandbox applied") && l.contains("\"open\"")).count();
    let count = log.lines().filter(|l| l.contains("NOT in force") && l.contains("\"open\"")).count();
    assert_eq!((started, count), (2, 1), "{log}");
}

/// Finding 9: `warden check` names, for this machine, the sandbox layers not in force — probed
/// by running the helper itself — and warns when a sandboxed stdio upstream leaves `strict`
/// unset (the loader's default is best effort); one that sets it is not warned about.
#[test]
fn check_names_the_layers_not_in_force_and_an_unset_strict() {
    let dir = tempdir("check-layers");
    let cfg = dir.join("w.toml");
    std::fs::write(
        &cfg,
        "[[upstream]]\nname = \"loose\"\ntransport = \"stdio\"\ncommand = \"/bin/true\"\n\
         [upstream.sandbox]\nnetwork = \"allow\"\n\
         [[upstream]]\nname = \"firm\"\ntransport = \"stdio\"\ncommand = \"/bin/true\"\n\
         [upstream.sandbox]\nstrict = false\n",
    )
    .unwrap();
    let out = std::process::Command::new(bin("warden")).args(["check", "--config"]).arg(&cfg).output().unwrap();
    let text = String::from_utf8_lossy(&out.stdout).to_string();
    assert!(out.status.success(), "{text}{}", String::from_utf8_lossy(&out.stderr));
    let line = |prefix: &str| text.lines().find(|l| l.starts_with(prefix)).unwrap_or_default().to_string();
    let probed = line("upstream loose: sandbox on this machine: ");
    assert!(probed.contains("seccomp=active"), "the helper's own report: {text}");
    let warning = line("WARNING: upstream loose: sandbox layer(s) NOT in force: ");
    assert!(warning.contains("network (allowed)"), "{text}");
    for (layer, logged) in [("pid_namespace", "namespaces"), ("landlock", "landlock"), ("seccomp", "seccomp")] {
        let active = logged_state(&probed, logged) == "active";
        assert_eq!(!warning.contains(&format!(" {layer} (")), active, "{layer}: {text}");
    }
    assert!(text.contains("warning: upstream loose: [upstream.sandbox] strict is not set"), "{text}");
    assert!(!text.contains("upstream firm: [upstream.sandbox] strict is not set"), "{text}");
    std::fs::remove_dir_all(dir).unwrap();
}
