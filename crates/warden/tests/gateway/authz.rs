//! Authorization, kill switches and limits, as callers and operators meet them.

use serde_json::{json, Value};
use std::time::{Duration, Instant};
use warden_gateway::auth::apikey::generate;
use warden_testkit::harness::{self, fixture_stdio_upstream, warden, Client, Proc};

/// An API key for `subject` with roles and a tenant, and its config entry.
pub(crate) fn key(subject: &str, scopes: &[&str], roles: &[&str], tenant: Option<&str>) -> (String, String) {
    let scopes: Vec<String> = scopes.iter().map(|s| s.to_string()).collect();
    let (k, mut entry) = generate(subject, &scopes, tenant, None);
    entry.push_str(&format!("roles = {roles:?}\n"));
    (k, entry)
}

pub(crate) async fn client(w: &Proc, key: &str) -> Client {
    let mut c = Client::new(&w.url);
    c.bearer = Some(key.to_string());
    c.initialize().await;
    c
}

async fn names(c: &Client, method: &str, field: &str, key: &str) -> Vec<String> {
    let v = c.call(90, method, json!({})).await;
    let mut n: Vec<String> =
        v["result"][field].as_array().unwrap().iter().map(|t| t[key].as_str().unwrap().to_string()).collect();
    n.sort();
    n
}

/// The error of an answer, without its id, for comparing refusals.
pub(crate) fn error(v: &Value) -> Value {
    assert!(v.get("error").is_some(), "expected an error: {v}");
    v["error"].clone()
}

#[tokio::test]
async fn rules_filter_listings_and_recheck_every_call() {
    let up = fixture_stdio_upstream("fx", Some(""), "classify = { echo = \"read_only\" }\n");
    let (alice, ea) = key("alice", &["mcp"], &["sre"], Some("a"));
    let (bob, eb) = key("bob", &["mcp"], &[], Some("b"));
    let (root, er) = key("root", &["mcp"], &["admin"], Some("a"));
    let (nobody, en) = key("nobody", &[], &[], None);
    let rules = r#"
[[rule]]
id = "echo-for-mcp"
tools = ["echo"]
scopes = ["mcp"]

[[rule]]
id = "slow-for-sre"
servers = ["fx"]
tools = ["slow"]
roles = ["sre"]

[[rule]]
id = "static-resources-tenant-a"
resources = ["test://static-*"]
tenants = ["a"]

[[rule]]
id = "prompt-if-ok"
prompts = ["test_prompt_with_arguments"]
when = "args.arg1 == 'ok'"

[[rule]]
id = "admins-all-tools"
tools = ["*"]
roles = ["admin"]

[[rule]]
id = "never-garbage"
effect = "deny"
tools = ["garbage", "crash"]

[[rule]]
id = "read-only-for-b"
tools = ["*"]
tenants = ["b"]
read_only = true
"#;
    let w = warden("", &format!("{up}\n[auth]\n{ea}{eb}{er}{en}\n{rules}"));
    let a = client(&w, &alice).await;
    let b = client(&w, &bob).await;
    let r = client(&w, &root).await;
    let n = client(&w, &nobody).await;

    // Listings show exactly what each caller may use.
    assert_eq!(names(&a, "tools/list", "tools", "name").await, ["echo", "slow"]);
    assert_eq!(names(&b, "tools/list", "tools", "name").await, ["echo"], "echo is classified read-only");
    assert!(names(&n, "tools/list", "tools", "name").await.is_empty(), "no rule, nothing listed");
    let all = names(&r, "tools/list", "tools", "name").await;
    assert!(all.contains(&"hang".to_string()) && !all.contains(&"garbage".to_string()), "deny overrides: {all:?}");
    assert_eq!(names(&a, "resources/list", "resources", "uri").await, ["test://static-binary", "test://static-text"]);
    assert!(names(&b, "resources/list", "resources", "uri").await.is_empty());
    assert_eq!(names(&n, "prompts/list", "prompts", "name").await, ["test_prompt_with_arguments"]);
    // The operator's classification is what clients see; unclassified tools count as destructive.
    let tools = r.call(91, "tools/list", json!({})).await;
    let by_name =
        |n: &str| tools["result"]["tools"].as_array().unwrap().iter().find(|t| t["name"] == n).cloned().unwrap();
    assert_eq!(by_name("echo")["annotations"]["readOnlyHint"], true);
    assert_eq!(by_name("slow")["annotations"]["destructiveHint"], true);

    // Calls are checked again, and a refusal looks exactly like a tool that does not exist.
    let missing = error(&n.tool(1, "no_such_tool", json!({})).await);
    assert_eq!(error(&n.tool(2, "echo", json!({"text": "x"})).await), missing);
    assert_eq!(error(&b.tool(3, "slow", json!({"ms": 1})).await), missing);
    assert_eq!(error(&r.tool(4, "garbage", json!({})).await), missing);
    assert_eq!(a.tool(5, "slow", json!({"ms": 1})).await["result"]["isError"], Value::Null);
    assert_eq!(b.tool(6, "echo", json!({"text": "hi"})).await["result"]["content"][0]["text"], "hi");
    // Resources: another tenant's read looks like a missing resource.
    let missing_res = error(&b.call(7, "resources/read", json!({"uri": "test://nope"})).await);
    assert_eq!(error(&b.call(8, "resources/read", json!({"uri": "test://static-text"})).await), missing_res);
    assert_eq!(error(&a.call(9, "resources/read", json!({"uri": "test://watched-resource"})).await), missing_res);
    assert!(a.call(10, "resources/read", json!({"uri": "test://static-text"})).await["result"]["contents"].is_array());
    assert_eq!(error(&b.call(11, "resources/subscribe", json!({"uri": "test://static-text"})).await), missing_res);
    // Prompts: the CEL condition sees the arguments; failing it looks like an unknown prompt.
    let p = |arg1: &str| json!({"name": "test_prompt_with_arguments", "arguments": {"arg1": arg1, "arg2": "x"}});
    assert!(n.call(12, "prompts/get", p("ok")).await["result"]["messages"].is_array());
    let missing_prompt = error(&n.call(13, "prompts/get", json!({"name": "nope", "arguments": {}})).await);
    assert_eq!(error(&n.call(14, "prompts/get", p("other")).await), missing_prompt);
    let c =
        json!({"ref": {"type": "ref/prompt", "name": "test_simple_prompt"}, "argument": {"name": "a", "value": ""}});
    assert_eq!(error(&n.call(15, "completion/complete", c).await), missing_prompt);
    // Refusals are in the log with who and what (arguments are not).
    let log = w.log();
    assert!(
        log.contains(
            "denied subject=bob server=fx kind=\"resource\" name=\"test://static-text\" rule=\"no allow rule\""
        ),
        "{log}"
    );
    assert!(!log.contains("\"other\""), "arguments stay out of the log");
}

#[tokio::test]
async fn a_config_without_rules_reaches_nothing_and_bad_rules_are_refused() {
    let up = fixture_stdio_upstream("fx", Some(""), "");
    let w = warden("", &format!("{up}\n[[rule]]\nid = \"only-prompts\"\nprompts = [\"nothing\"]\n"));
    let c = client_local(&w).await;
    assert!(names(&c, "tools/list", "tools", "name").await.is_empty());
    assert_eq!(error(&c.tool(1, "echo", json!({"text": "x"})).await)["message"], "Unknown tool");
    let dir = std::env::temp_dir().join(format!("warden-badrules-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    for (rule, want) in [
        ("id = \"a\"\ntools = [\"x\"]\nwhen = \"args.x ==\"", "rule[0].when: invalid CEL"),
        ("id = \"a\"\ntools = [\"x\"]\nwhen = \"princpal.x == 1\"", "princpal"),
        ("id = \"a\"\ntools = [\"x\"]\nservers = [\"nope\"]", "no upstream is named"),
        ("id = \"a\"", "names no tools"),
        ("id = \"a\"\ntools = [\"x\"]\nrate = \"10/week\"", "rule[0].rate"),
        ("id = \"a\"\ntools = [\"x\"]\nbogus = 1", "unknown field"),
        ("id = \"a\"\ntools = [\"x\"]\napproval = \"user\"", "approval: approvals are decided on the admin API"),
        ("id = \"a\"\ntools = [\"x\"]\napproval = \"maybe\"", "unknown variant"),
        ("id = \"a\"\neffect = \"deny\"\ntools = [\"x\"]\napproval = \"admin\"", "a deny rule takes no"),
        ("id = \"a\"\ntools = [\"x\"]\n[store]\nbackend = \"redis\"", "store.url: required"),
        (
            "id = \"a\"\ntools = [\"x\"]\n[store]\nbackend = \"redis\"\nurl = \"http://x\"",
            "store.url: expected redis://",
        ),
        ("id = \"a\"\ntools = [\"x\"]\n[store]\nurl = \"redis://x\"", "are for backend = \"redis\""),
        (
            "id = \"a\"\ntools = [\"x\"]\n[store]\nbackend = \"redis\"\nurl = \"redis://x\"\non_outage = \"shrug\"",
            "unknown variant",
        ),
        ("id = \"a\"\ntools = [\"x\"]\n[approval]\nwait_secs = 0", "approval: wait_secs"),
        (
            "id = \"a\"\ntools = [\"x\"]\n[upstream.tenants.t1]\nurl = \"https://x.example/mcp\"",
            "url/secret_headers are for",
        ),
    ] {
        std::fs::write(dir.join("w.toml"), format!("{up}\n[[rule]]\n{rule}\n")).unwrap();
        let out = std::process::Command::new(harness::bin("warden"))
            .args(["check", "--config"])
            .arg(dir.join("w.toml"))
            .output()
            .unwrap();
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(!out.status.success() && err.contains(want), "{rule}: {err}");
    }
}

async fn client_local(w: &Proc) -> Client {
    let mut c = Client::new(&w.url);
    c.initialize().await;
    c
}

pub(crate) fn warden_cli(args: &[&str], cfg: &std::path::Path) -> std::process::Output {
    let mut cmd = std::process::Command::new(harness::bin("warden"));
    cmd.arg(args[0]).arg("--config").arg(cfg).args(&args[1..]);
    cmd.output().unwrap()
}

#[tokio::test]
async fn kill_switches_from_admin_api_and_cli() {
    let up = fixture_stdio_upstream("fx", Some(""), "");
    let admin_port = harness::free_port();
    let token = "an-admin-token-that-is-long-enough-0123456789";
    let token_file = std::env::temp_dir().join(format!("warden-admin-token-{}-{admin_port}", std::process::id()));
    std::fs::write(&token_file, format!("{token}\n")).unwrap();
    // `whoami` is denied by a rule: switching it off must not reveal that it exists.
    let deny = "[[rule]]\nid = \"no-whoami\"\neffect = \"deny\"\ntools = [\"whoami\"]\n";
    let mut w = warden(
        "",
        &format!(
            "{up}\n[admin]\naddr = \"127.0.0.1:{admin_port}\"\ntoken = {{ file = {:?} }}\n{}\n{deny}",
            token_file.display().to_string(),
            harness::ALLOW_ALL
        ),
    );
    let cfg = w.dir.join("warden.toml");
    let port: u16 = w.url.trim_end_matches("/mcp").rsplit(':').next().unwrap().parse().unwrap();
    let admin = format!("http://127.0.0.1:{admin_port}/admin/kill-switches");
    let http = reqwest::Client::new();
    // The admin listener is bound a moment after the main one accepts connections.
    let up = Instant::now();
    while std::net::TcpStream::connect(("127.0.0.1", admin_port)).is_err() {
        assert!(up.elapsed() < Duration::from_secs(10), "the admin listener did not come up");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }

    // The admin API wants its own token.
    for bad in [None, Some("wrong"), Some("wdk_not_an_admin_token")] {
        let mut rb = http.get(&admin);
        if let Some(t) = bad {
            rb = rb.bearer_auth(t);
        }
        assert_eq!(rb.send().await.unwrap().status(), 401);
    }
    // DNS rebinding: with a valid token still, the admin listener answers only to this machine.
    for (k, v) in [("host", "evil.example"), ("host", "evil.example:80"), ("origin", "http://evil.example")] {
        let r = http.get(&admin).bearer_auth(token).header(k, v).send().await.unwrap();
        assert_eq!(r.status(), 403, "{k}: {v}");
    }
    assert_eq!(http.get(&admin).bearer_auth(token).header("host", "localhost:1").send().await.unwrap().status(), 200);
    let c = client_local(&w).await;
    let slow = tokio::spawn({
        let c = Client { session: c.session.clone(), ..Client::new(&w.url) };
        async move { c.tool(50, "slow", json!({"ms": 20000})).await }
    });
    tokio::time::sleep(Duration::from_millis(300)).await;

    // Kill one tool through the CLI, cancelling what runs: gone at once from calls and listings.
    let out = warden_cli(&["kill", "fx", "--tool", "slow", "--reason", "runaway", "--cancel-in-flight"], &cfg);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let flipped = Instant::now();
    let cancelled =
        tokio::time::timeout(Duration::from_secs(5), slow).await.expect("in-flight call cancelled").unwrap();
    assert_eq!(cancelled["error"]["message"], "Call cancelled by the operator", "{cancelled}");
    assert!(flipped.elapsed() < Duration::from_secs(1));
    let missing = error(&c.tool(1, "no_such_tool", json!({})).await);
    // A switched-off tool says so (a tool error the model reads), not "Unknown tool", and does
    // not show the operator's reason.
    let off = c.tool(2, "slow", json!({"ms": 1})).await;
    assert_eq!(off["result"]["isError"], true, "{off}");
    let said = off["result"]["content"][0]["text"].as_str().unwrap_or_default();
    assert!(said.contains("switched off by an operator") && said.contains("this tool"), "{off}");
    assert!(!off.to_string().contains("runaway"), "the operator's reason stays internal: {off}");
    assert!(!names(&c, "tools/list", "tools", "name").await.contains(&"slow".to_string()));
    // A tool the rules hide stays unknown when it is also switched off.
    assert_eq!(error(&c.tool(20, "whoami", json!({})).await), missing);
    let out = warden_cli(&["kill", "fx", "--tool", "whoami", "--reason", "x"], &cfg);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    tokio::time::sleep(Duration::from_millis(200)).await;
    assert_eq!(error(&c.tool(21, "whoami", json!({})).await), missing);
    assert_eq!(c.tool(3, "echo", json!({"text": "still on"})).await["result"]["content"][0]["text"], "still on");
    let listed = warden_cli(&["kills"], &cfg);
    let text = String::from_utf8_lossy(&listed.stdout);
    assert!(text.contains("fx / slow") && text.contains("runaway") && text.contains("by admin-token:cli"), "{text}");

    // Kill the whole upstream through the API; it survives a restart; revive brings it back.
    let r = http
        .post(&admin)
        .bearer_auth(token)
        .json(&json!({"server": "fx", "reason": "incident 42", "by": "oncall"}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    let killed: Value = r.json().await.unwrap();
    assert!(killed["killed"].get("tool").is_none(), "absent, not null, for a whole upstream: {killed}");
    let off = c.tool(4, "echo", json!({"text": "x"})).await;
    let said = off["result"]["content"][0]["text"].as_str().unwrap_or_default();
    assert!(said.contains("switched off by an operator") && said.contains("server"), "{off}");
    // Prompts and resources of a switched-off server: a JSON-RPC error with its own code.
    let p = c.call(22, "prompts/get", json!({"name": "test_simple_prompt"})).await;
    assert_eq!(p["error"]["code"], -32033, "{p}");
    assert_eq!(p["error"]["data"], json!({"reason": "switched_off", "scope": "server"}), "{p}");
    assert!(!p.to_string().contains("incident 42"), "{p}");
    let r = http.post(&admin).bearer_auth(token).json(&json!({"server": "nope", "reason": "x"})).send().await.unwrap();
    assert_eq!(r.status(), 404);
    let r = http.post(&admin).bearer_auth(token).json(&json!({"server": "fx", "reason": ""})).send().await.unwrap();
    assert_eq!(r.status(), 400, "a reason is required");
    w.child.kill().unwrap();
    w.child.wait().unwrap();
    w = harness::warden_config(&cfg, port);
    let c = client_local(&w).await;
    let off = c.tool(5, "echo", json!({"text": "x"})).await;
    assert_eq!(off["result"]["isError"], true, "kill survives a restart: {off}");
    assert!(w.log().contains("kill switch active"));
    assert!(warden_cli(&["revive", "fx"], &cfg).status.success());
    assert_eq!(c.tool(6, "echo", json!({"text": "back"})).await["result"]["content"][0]["text"], "back");
    assert!(!warden_cli(&["revive", "fx"], &cfg).status.success(), "reviving what is on is an error");
    assert!(warden_cli(&["revive", "fx", "--tool", "slow"], &cfg).status.success());
    assert_eq!(c.tool(7, "slow", json!({"ms": 1})).await["result"]["isError"], Value::Null);
    let log = w.log();
    assert!(log.contains("kill switch flipped: revived") && log.contains("by=admin-token:cli"), "{log}");
}

#[tokio::test]
async fn limits_answer_429_with_retry_after_and_timeouts_cancel() {
    let up = fixture_stdio_upstream("fx", Some(""), "max_concurrency = 2\n");
    let (k1, e1) = key("one", &["mcp"], &[], Some("t"));
    let (k2, e2) = key("two", &["mcp"], &[], Some("t"));
    let rules = r#"
[[rule]]
id = "echo-rated"
tools = ["echo"]
rate = "2/minute"
burst = 2

[[rule]]
id = "prompt-quota"
prompts = ["test_simple_prompt"]
daily_quota = 1

[[rule]]
id = "hang-timeout"
tools = ["hang"]
timeout_secs = 1

[[rule]]
id = "slow"
tools = ["slow"]

[limits]
max_concurrent_per_principal = 1
"#;
    let w = warden("", &format!("{up}\n[auth]\n{e1}{e2}\n{rules}"));
    let one = client(&w, &k1).await;
    let two = client(&w, &k2).await;

    // Per caller and tool: the third echo within the minute is refused with when to retry.
    for i in 0..2 {
        assert!(one.tool(i, "echo", json!({"text": "x"})).await.get("result").is_some());
    }
    let r = one.post(&json!({"jsonrpc": "2.0", "id": 3, "method": "tools/call", "params": {"name": "echo", "arguments": {"text": "x"}}})).await;
    assert_eq!(r.status, 429, "{}", r.raw);
    let retry: u64 = r.headers["retry-after"].to_str().unwrap().parse().unwrap();
    assert!((1..=30).contains(&retry), "{retry}");
    let e = &r.messages[0]["error"];
    assert_eq!((e["code"].as_i64(), e["data"]["limit"].as_str()), (Some(-32029), Some("tool")));
    assert_eq!(e["data"]["retryAfterSeconds"].as_u64(), Some(retry));
    assert!(two.tool(4, "echo", json!({"text": "x"})).await.get("result").is_some(), "limits are per caller");
    // Issue 20, finding 13: recorded as denied by that limit, with the rule that allowed it.
    let cfg = w.dir.join("warden.toml").display().to_string();
    let limited = crate::audit::records(&cfg, &["--kind", "call", "--status", "rate_limited"]);
    assert_eq!(limited.len(), 1, "{limited:?}");
    let l = &limited[0];
    assert_eq!(
        (l["decision"].as_str(), l["rule"].as_str(), l["detail"].as_str()),
        (Some("denied"), Some("echo-rated"), Some("tool")),
        "{l}"
    );

    // Daily quota.
    assert!(one.call(5, "prompts/get", json!({"name": "test_simple_prompt"})).await.get("result").is_some());
    let q = one.call(6, "prompts/get", json!({"name": "test_simple_prompt"})).await;
    assert_eq!(q["error"]["data"]["limit"], "daily_quota");
    assert!(q["error"]["data"]["retryAfterSeconds"].as_u64().unwrap() <= 86_400);

    // Concurrency per caller: one call at a time.
    let busy = tokio::spawn({
        let c = Client { session: one.session.clone(), bearer: one.bearer.clone(), ..Client::new(&w.url) };
        async move { c.tool(7, "slow", json!({"ms": 1500})).await }
    });
    tokio::time::sleep(Duration::from_millis(300)).await;
    let c = one.tool(8, "slow", json!({"ms": 1})).await;
    assert_eq!(c["error"]["data"]["limit"], "principal_concurrency", "{c}");
    assert!(busy.await.unwrap().get("result").is_some());

    // The rule's timeout cancels a hung call.
    let t0 = Instant::now();
    let h = two.tool(9, "hang", json!({})).await;
    assert_eq!(h["error"]["message"], "Request timed out", "{h}");
    assert!(t0.elapsed() < Duration::from_secs(5));
}

/// Resource rules see the URI the upstream will read: spellings of a denied URI (`..`, `%2e`,
/// `//`, case, encoded letters) are denied, the canonical URI is what is forwarded, an encoded
/// separator is refused, and a rate on resources counts per rule, not per URI (a fresh URI does
/// not start a fresh bucket).
#[tokio::test]
async fn resource_rules_match_canonical_uris_and_limits_count_per_rule() {
    let up = fixture_stdio_upstream("fx", Some(""), "");
    let rules = r#"
[[rule]]
id = "templates"
resources = ["test://template/*"]
rate = "3/minute"
burst = 3

[[rule]]
id = "no-secret"
effect = "deny"
resources = ["test://template/secret/*"]
"#;
    let w = warden("", &format!("{up}\n{rules}"));
    let c = client_local(&w).await;
    let read = |id: i64, uri: &str| c.call(id, "resources/read", json!({ "uri": uri }));
    let r = read(1, "test://template/x/%2e%2e/ab/data").await;
    assert_eq!(r["result"]["contents"][0]["uri"], "test://template/ab/data", "forwarded canonical: {r}");
    for (i, u) in [
        "test://template/x/../secret/data",
        "test://template/x/%2E%2E/secret/data",
        "TEST://TEMPLATE/secret/data",
        "test://template//secret/data",
        "test://template/%73ecret/data",
    ]
    .into_iter()
    .enumerate()
    {
        let r = read(10 + i as i64, u).await;
        assert_eq!(r["error"]["code"], -32002, "{u}: {r}");
        assert!(r["error"].get("data").is_none(), "refused by Warden's rule, not by the upstream: {u}: {r}");
    }
    let r = read(20, "test://template/secret%2Fdata").await;
    assert_eq!(r["error"]["code"], -32602, "an encoded separator is refused: {r}");
    assert!(read(21, "test://template/cd/data").await.get("result").is_some());
    assert!(read(22, "test://template/ef/data").await.get("result").is_some());
    let r = read(23, "test://template/gh/data").await;
    assert_eq!(r["error"]["code"], -32029, "the fourth read in a minute is limited, whatever its URI: {r}");
}

/// A caller no rule lets see anything of an upstream does not make Warden start that upstream
/// for it: listing and calling spawn no child (each session would otherwise cost a process).
#[tokio::test]
async fn an_upstream_that_shows_the_caller_nothing_is_not_started_for_it() {
    let up = fixture_stdio_upstream("fx", Some(""), "");
    let rules = "[[rule]]\nid = \"only-x\"\ntools = [\"*\"]\nscopes = [\"x\"]\n";
    let w = warden("", &format!("{up}\n{rules}"));
    let ready = w.url.replace("/mcp", "/readyz");
    for _ in 0..100 {
        if reqwest::get(&ready).await.is_ok_and(|r| r.status().as_u16() == 200) {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let started = || w.log().matches("started stdio upstream").count();
    let before = started();
    assert_eq!(before, 1, "the control connection only");
    for _ in 0..3 {
        let c = client_local(&w).await;
        let listed = c.call(1, "tools/list", json!({})).await;
        assert_eq!(listed["result"]["tools"], json!([]), "{listed}");
        assert_eq!(c.tool(2, "echo", json!({"text": "x"})).await["error"]["code"], -32602);
    }
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_eq!(started(), before, "no child was started for a caller that may see nothing");
}

/// Issue 19, finding 6: a caller with nothing to call could open sessions and list without end,
/// each starting or asking every upstream it reaches. Both are rated per caller, by default;
/// another caller is not affected; refusals are recorded.
#[tokio::test]
async fn initialize_and_listings_are_rate_limited_per_caller() {
    let (k1, e1) = key("flooder", &["mcp"], &[], None);
    let (k2, e2) = key("bystander", &["mcp"], &[], None);
    let auth = format!("[auth]\nrequired_scopes = [\"mcp\"]\n{e1}\n{e2}\n[limits]\nlistings_per_principal = \"1/hour\"\nlistings_burst = 3\n");
    let w = warden("", &format!("{}\n{auth}", fixture_stdio_upstream("fx", Some(""), "")));
    // Defaults: 20 sessions at once, then 60 a minute.
    let init = json!({"jsonrpc": "2.0", "id": 0, "method": "initialize", "params": harness::init_params()});
    let mut statuses = Vec::new();
    let mut sessions = Vec::new();
    for _ in 0..24 {
        let mut c = Client::new(&w.url);
        c.bearer = Some(k1.clone());
        let r = c.post(&init).await;
        statuses.push(r.status);
        if r.status == 429 {
            assert_eq!(r.messages[0]["error"]["data"]["limit"], "initialize", "{}", r.raw);
            assert!(r.headers.get("retry-after").is_some());
        }
        // Close each session, so that the session cap is not what refuses.
        if r.status == 200 {
            c.session = r.headers.get("mcp-session-id").map(|v| v.to_str().unwrap().to_string());
            sessions.push(c);
        }
        if let Some(c) = sessions.pop() {
            c.request(reqwest::Method::DELETE).send().await.unwrap();
        }
    }
    assert_eq!(statuses.iter().filter(|s| **s == 200).count(), 20, "{statuses:?}");
    assert!(statuses[20..].iter().all(|s| *s == 429), "{statuses:?}");
    let other = client(&w, &k2).await;
    // Listings: three, then refused (JSON-RPC rate limited), for this caller only.
    let mut answers = Vec::new();
    for i in 0..4 {
        answers.push(other.call(i, "tools/list", json!({})).await);
    }
    assert!(answers[..3].iter().all(|a| a["result"]["tools"].is_array()), "{answers:?}");
    assert_eq!(answers[3]["error"]["data"]["limit"], "listing", "{}", answers[3]);
    let cfg = w.dir.join("warden.toml").display().to_string();
    let refused = crate::audit::records(&cfg, &["--kind", "initialize", "--status", "rate_limited"]);
    assert_eq!(refused.len(), 4, "{refused:?}");
    assert!(refused.iter().all(|r| r["subject"] == "flooder"));
    let listed = crate::audit::records(&cfg, &["--kind", "list", "--status", "rate_limited"]);
    assert_eq!(listed.len(), 1, "{listed:?}");
}
