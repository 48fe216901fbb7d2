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
