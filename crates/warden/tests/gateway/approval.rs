//! Human approval: the admin queue (bound, single-use, not self-given, tenant-scoped) and MCP
//! elicitation back to the calling client.

use crate::authz::{error, key};
use serde_json::{json, Value};
use std::time::{Duration, Instant};
use warden_protocol::sse;
use warden_testkit::harness::{self, fixture_stdio_upstream, warden, Client, Proc};

pub(crate) const TOKEN: &str = "an-admin-token-that-is-long-enough-0123456789";

/// `[admin]` on a free port with [`TOKEN`]; returns the config text and the admin base URL.
pub(crate) fn admin_section() -> (String, String) {
    let port = harness::free_port();
    let file = std::env::temp_dir().join(format!("warden-admin-token-{}-{port}", std::process::id()));
    std::fs::write(&file, TOKEN).unwrap();
    (
        format!("[admin]\naddr = \"127.0.0.1:{port}\"\ntoken = {{ file = {:?} }}\n", file.display().to_string()),
        format!("http://127.0.0.1:{port}/admin"),
    )
}

/// A client that declares no client capabilities (so no elicitation).
pub(crate) async fn plain_client(w: &Proc, bearer: &str) -> Client {
    let mut c = Client::new(&w.url);
    c.bearer = Some(bearer.into());
    let init = json!({"jsonrpc": "2.0", "id": 0, "method": "initialize", "params": {
        "protocolVersion": "2025-11-25", "capabilities": {}, "clientInfo": {"name": "plain", "version": "1"}}});
    let r = c.post(&init).await;
    c.session = r.headers.get("mcp-session-id").map(|v| v.to_str().unwrap().to_string());
    c.post(&json!({"jsonrpc": "2.0", "method": "notifications/initialized"})).await;
    c
}

pub(crate) async fn admin_get(url: &str, bearer: &str) -> (u16, Value) {
    let r = reqwest::Client::new().get(url).bearer_auth(bearer).send().await.unwrap();
    (r.status().as_u16(), r.json().await.unwrap_or(Value::Null))
}

async fn admin_post(url: &str, bearer: &str, body: Value) -> (u16, Value) {
    let r = reqwest::Client::new().post(url).bearer_auth(bearer).json(&body).send().await.unwrap();
    (r.status().as_u16(), r.json().await.unwrap_or(Value::Null))
}

/// Wait for exactly one pending approval visible to `bearer`.
pub(crate) async fn one_pending(admin: &str, bearer: &str) -> Value {
    let until = Instant::now() + Duration::from_secs(10);
    loop {
        let (status, v) = admin_get(&format!("{admin}/approvals?state=pending"), bearer).await;
        assert_eq!(status, 200, "{v}");
        if let Some(a) = v["approvals"].as_array().and_then(|a| a.first()) {
            assert_eq!(v["approvals"].as_array().unwrap().len(), 1, "{v}");
            return a.clone();
        }
        assert!(Instant::now() < until, "no pending approval appeared");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

#[tokio::test]
async fn admin_queue_approvals_are_bound_single_use_and_never_self_given() {
    let up = fixture_stdio_upstream("fx", Some(""), "");
    let (admin_cfg, admin) = admin_section();
    let (alice, ea) = key("alice", &["mcp", "warden:approve"], &[], Some("a"));
    let (bob, eb) = key("bob", &["warden:approve"], &[], Some("a"));
    let (carol, ec) = key("carol", &["mcp", "warden:approve"], &[], Some("b"));
    let rules = "[[rule]]\nid = \"echo-needs-approval\"\ntools = [\"echo\"]\napproval = \"admin\"\n\
                 [approval]\nwait_secs = 4\n";
    // Lax schemas: the call below carries an argument echo does not declare, to show that
    // approvals bind every argument in any key order.
    let lax = "[content]\nstrict_schemas = false\n";
    let w = warden("", &format!("{up}\n[auth]\n{ea}{eb}{ec}\n{admin_cfg}\n{lax}{rules}"));
    // Elicitation is declared by the usual test client, but "admin" means the queue regardless.
    let c = crate::authz::client(&w, &alice).await;
    let held = tokio::spawn({
        let c = Client { session: c.session.clone(), bearer: c.bearer.clone(), ..Client::new(&w.url) };
        async move { c.tool(1, "echo", json!({"text": "drop table"})).await }
    });
    let a = one_pending(&admin, &bob).await;
    assert_eq!(
        (a["subject"].as_str(), a["tenant"].as_str(), a["tool"].as_str()),
        (Some("alice"), Some("a"), Some("echo"))
    );
    assert_eq!(a["arguments"], json!({"text": "drop table"}));
    assert_eq!(a["digest"].as_str().unwrap().len(), 64);
    let id = a["id"].as_str().unwrap().to_string();

    // Another tenant's approver sees nothing and cannot reach it; the caller cannot approve itself.
    let (s, v) = admin_get(&format!("{admin}/approvals"), &carol).await;
    assert_eq!((s, v["approvals"].as_array().unwrap().len()), (200, 0));
    assert_eq!(admin_get(&format!("{admin}/approvals/{id}"), &carol).await.0, 404);
    assert_eq!(admin_post(&format!("{admin}/approvals/{id}/approve"), &carol, json!({})).await.0, 404);
    let (s, v) = admin_post(&format!("{admin}/approvals/{id}/approve"), &alice, json!({})).await;
    assert_eq!(s, 403, "{v}");
    // A caller credential without an approver scope, or none at all, gets nothing.
    assert_eq!(admin_get(&format!("{admin}/approvals"), "wrong").await.0, 401);
    assert!(!held.is_finished(), "still held");

    let (s, v) = admin_post(&format!("{admin}/approvals/{id}/approve"), &bob, json!({"note": "ticket 7"})).await;
    assert_eq!(s, 200, "{v}");
    let done = tokio::time::timeout(Duration::from_secs(5), held).await.expect("released").unwrap();
    assert_eq!(done["result"]["content"][0]["text"], "drop table", "{done}");
    let (_, v) = admin_get(&format!("{admin}/approvals/{id}"), &bob).await;
    assert_eq!(v["approval"]["state"], "consumed");
    assert_eq!(v["approval"]["approver"], "principal:bob");
    assert_eq!(v["approval"]["note"], "ticket 7");
    assert_eq!(admin_post(&format!("{admin}/approvals/{id}/approve"), &bob, json!({})).await.0, 409);

    // Single use: the same call again waits for a new decision; a denial is an error naming it.
    let again = tokio::spawn({
        let c = Client { session: c.session.clone(), bearer: c.bearer.clone(), ..Client::new(&w.url) };
        async move { c.tool(2, "echo", json!({"text": "drop table"})).await }
    });
    let b = one_pending(&admin, TOKEN).await;
    assert_ne!(b["id"], id);
    // …decided from the shell this time.
    let cfg = w.dir.join("warden.toml");
    let out = crate::authz::warden_cli(&["approvals"], &cfg);
    let listed = String::from_utf8_lossy(&out.stdout);
    assert!(
        listed.contains(b["id"].as_str().unwrap()) && listed.contains("fx / echo") && listed.contains("alice"),
        "{listed}"
    );
    let out = crate::authz::warden_cli(&["deny", b["id"].as_str().unwrap(), "--note", "not today"], &cfg);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    assert!(String::from_utf8_lossy(&out.stdout).starts_with("denied"));
    let denied = error(&again.await.unwrap());
    assert_eq!((denied["code"].as_i64(), denied["data"]["state"].as_str()), (Some(-32030), Some("denied")), "{denied}");

    // Not decided within wait_secs: the caller learns the id; once approved, the same call (same
    // arguments in any key order) goes through at once, and other arguments need their own.
    let started = Instant::now();
    let pending = error(&c.tool(3, "echo", json!({"text": "later", "n": 1})).await);
    assert!(started.elapsed() >= Duration::from_secs(3), "held for wait_secs");
    assert_eq!(pending["data"]["state"], "pending", "{pending}");
    let pid = pending["data"]["approvalId"].as_str().unwrap();
    let (s, v) = admin_post(&format!("{admin}/approvals/{pid}/approve"), TOKEN, json!({"by": "oncall"})).await;
    assert_eq!((s, v["approval"]["approver"].as_str()), (200, Some("admin-token:oncall")));
    let other = tokio::spawn({
        let c = Client { session: c.session.clone(), bearer: c.bearer.clone(), ..Client::new(&w.url) };
        async move { c.tool(4, "echo", json!({"text": "other", "n": 1})).await }
    });
    let t = Instant::now();
    let ok = c
        .call(
            5,
            "tools/call",
            serde_json::from_str(r#"{"arguments": {"n": 1, "text": "later"}, "name": "echo"}"#).unwrap(),
        )
        .await;
    assert_eq!(ok["result"]["content"][0]["text"], "later", "{ok}");
    assert!(t.elapsed() < Duration::from_secs(2));
    let other = error(&other.await.unwrap());
    assert_eq!(other["data"]["state"], "pending", "other arguments are not covered: {other}");
    assert!(w.log().contains("self-approval refused"));
    // Issue 20, finding 13: the trail says what policy finally decided, not that a rule allowed
    // the call to be asked: held calls are `pending`, refused ones `denied`.
    let cfg_s = cfg.display().to_string();
    let calls = crate::audit::records(&cfg_s, &["--kind", "call"]);
    let by_status = |st: &str| calls.iter().filter(|r| r["status"] == st).collect::<Vec<_>>();
    let pending = by_status("approval_pending");
    assert!(!pending.is_empty() && pending.iter().all(|r| r["decision"] == "pending"), "{pending:?}");
    let denied: Vec<_> = calls.iter().filter(|r| r["approval"]["outcome"] == "denied").collect();
    assert!(!denied.is_empty() && denied.iter().all(|r| r["decision"] == "denied"), "{denied:?}");
}

/// POST a request and read its SSE stream, answering `elicitation/create` with `reply`;
/// returns (the elicitation request's params, the final answer).
async fn call_answering_elicitation(c: &Client, id: i64, params: Value, reply: Value) -> (Value, Value) {
    let mut resp = c.post_stream(&json!({"jsonrpc": "2.0", "id": id, "method": "tools/call", "params": params})).await;
    let mut d = sse::Decoder::new(1 << 20);
    let mut asked = Value::Null;
    loop {
        let chunk = tokio::time::timeout(Duration::from_secs(10), resp.chunk()).await.expect("stream").unwrap();
        let Some(chunk) = chunk else { panic!("stream ended without an answer") };
        for ev in d.feed(&chunk).unwrap() {
            let Ok(m) = serde_json::from_str::<Value>(&ev.data) else { continue };
            if m["method"] == "elicitation/create" {
                asked = m["params"].clone();
                let r = c.post(&json!({"jsonrpc": "2.0", "id": m["id"], "result": reply})).await;
                assert_eq!(r.status, 202);
            } else if m["id"] == json!(id) {
                return (asked, m);
            }
        }
    }
}

#[tokio::test]
async fn user_approval_asks_the_calling_client_by_elicitation() {
    let up = fixture_stdio_upstream("fx", Some(""), "");
    let (admin_cfg, admin) = admin_section();
    let (alice, ea) = key("alice", &["mcp"], &[], None);
    let rules = "[[rule]]\nid = \"echo-user-approves\"\ntools = [\"echo\"]\napproval = \"user\"\n\
                 [approval]\nwait_secs = 2\n";
    let w = warden("", &format!("{up}\n[auth]\n{ea}\n{admin_cfg}\n{rules}"));
    let c = crate::authz::client(&w, &alice).await;
    let call = json!({"name": "echo", "arguments": {"text": "delete everything"}});
    let (asked, answer) =
        call_answering_elicitation(&c, 1, call.clone(), json!({"action": "accept", "content": {"approve": true}}))
            .await;
    let msg = asked["message"].as_str().unwrap();
    assert!(msg.contains("\"echo\"") && msg.contains("delete everything") && msg.contains("alice"), "{msg}");
    let digest = msg.rsplit("Call digest: ").next().unwrap_or_default();
    assert!(digest.len() == 64 && digest.bytes().all(|b| b.is_ascii_hexdigit()), "the digest is shown: {msg}");
    // Hidden characters in the arguments are shown, not passed on invisibly.
    let sneaky = json!({"name": "echo", "arguments": {"text": "safe\u{202E}txt.exe\u{200B}"}});
    let (asked, _) = call_answering_elicitation(&c, 9, sneaky, json!({"action": "decline"})).await;
    let msg = asked["message"].as_str().unwrap();
    assert!(msg.contains("safe[U+202E]txt.exe[U+200B]") && !msg.contains('\u{202E}'), "{msg}");
    assert_eq!(asked["requestedSchema"]["properties"]["approve"]["type"], "boolean");
    assert_eq!(answer["result"]["content"][0]["text"], "delete everything", "{answer}");

    for reply in [
        json!({"action": "decline"}),
        json!({"action": "cancel"}),
        json!({"action": "accept", "content": {"approve": false}}),
        json!({"action": "accept", "content": {"approve": "yes"}}),
    ] {
        let (_, answer) = call_answering_elicitation(&c, 2, call.clone(), reply.clone()).await;
        let e = error(&answer);
        assert_eq!(e["code"], -32030, "{reply}: {e}");
    }

    // A client without the elicitation capability falls back to the admin queue.
    let p = plain_client(&w, &alice).await;
    let pending = error(&p.tool(3, "echo", json!({"text": "queued"})).await);
    assert_eq!(pending["data"]["state"], "pending", "{pending}");
    let a = one_pending(&admin, TOKEN).await;
    assert_eq!(a["id"], pending["data"]["approvalId"]);
}

/// The requester cannot approve its own held call by signing in to the admin API with another
/// credential: it called with an API key, and approves with a JWT of the same subject.
#[tokio::test]
async fn self_approval_is_refused_whatever_the_credential() {
    let idp = warden_testkit::idp::Idp::start().await;
    let up = fixture_stdio_upstream("fx", Some(""), "");
    let (admin_cfg, admin) = admin_section();
    let (alice, ea) = key("alice", &["mcp"], &[], Some("acme"));
    let rules =
        "[[rule]]\nid = \"echo-needs-approval\"\ntools = [\"echo\"]\napproval = \"admin\"\n[approval]\nwait_secs = 3\n";
    let jwt_issuer = format!("[[auth.jwt]]\nissuer = {:?}\nadmin_scopes = true\n", idp.issuer);
    let w = warden("", &format!("{up}\n[auth]\n{ea}\n{jwt_issuer}\n{admin_cfg}\n{rules}"));
    let c = crate::authz::client(&w, &alice).await;
    let held = tokio::spawn(async move { c.tool(1, "echo", json!({"text": "x"})).await });
    let a = one_pending(&admin, TOKEN).await;
    let id = a["id"].as_str().unwrap();
    let same_person = idp.sign_ed(&idp.claims(&w.url, "warden:approve"), Some("ed1"));
    let (s, v) = admin_post(&format!("{admin}/approvals/{id}/approve"), &same_person, json!({})).await;
    assert_eq!(s, 403, "alice's JWT may not approve alice's call: {v}");
    let pending = error(&held.await.unwrap());
    assert_eq!(pending["data"]["state"], "pending", "{pending}");
}

/// A call held for approval ends when an operator switches its tool off (no `cancel_in_flight`
/// needed: it has not reached the upstream), instead of waiting out `wait_secs`.
#[tokio::test]
async fn a_kill_switch_ends_a_call_waiting_for_approval() {
    let up = fixture_stdio_upstream("fx", Some(""), "");
    let (admin_cfg, admin) = admin_section();
    let rules = "[[rule]]\nid = \"echo-needs-approval\"\ntools = [\"echo\"]\napproval = \"admin\"\n[approval]\nwait_secs = 20\n";
    let w = warden("", &format!("{up}\n{admin_cfg}\n{rules}"));
    let mut c = Client::new(&w.url);
    c.initialize().await;
    let held = tokio::spawn(async move { c.tool(1, "echo", json!({"text": "x"})).await });
    one_pending(&admin, TOKEN).await;
    let (s, v) = admin_post(
        &format!("{admin}/kill-switches"),
        TOKEN,
        json!({"server": "fx", "tool": "echo", "reason": "incident"}),
    )
    .await;
    assert_eq!(s, 200, "{v}");
    let flipped = Instant::now();
    let done = tokio::time::timeout(Duration::from_secs(5), held).await.expect("the wait ended").unwrap();
    assert!(flipped.elapsed() < Duration::from_secs(3), "{:?}", flipped.elapsed());
    assert_eq!(done["result"]["isError"], true, "{done}");
    assert!(done.to_string().contains("switched off by an operator"), "{done}");
}

/// The admin queue has a quota per caller: past it a new held call is refused at once (a retry
/// of a call already waiting is not a new one), another caller is unaffected; arguments are
/// kept whole for the approver, and a call too large to show is refused rather than held.
#[tokio::test]
async fn the_approval_queue_has_a_quota_per_caller_and_shows_everything() {
    let up = fixture_stdio_upstream("fx", Some(""), "");
    let (admin_cfg, admin) = admin_section();
    let (alice, ea) = key("alice", &["mcp"], &[], None);
    let (bob, eb) = key("bob", &["mcp"], &[], None);
    let rules = "[[rule]]\nid = \"echo-needs-approval\"\ntools = [\"echo\"]\napproval = \"admin\"\n\
                 [approval]\nwait_secs = 1\nmax_pending_per_caller = 2\n\
                 [content]\nmax_string_length = 200000\n";
    let w = warden("", &format!("{up}\n[auth]\n{ea}\n{eb}\n{admin_cfg}\n{rules}"));
    let a = crate::authz::client(&w, &alice).await;
    let state = |v: &Value| v["error"]["data"]["state"].as_str().map(str::to_string);
    assert_eq!(state(&a.tool(1, "echo", json!({"text": "one"})).await).as_deref(), Some("pending"));
    let big = "x".repeat(20_000);
    assert_eq!(state(&a.tool(2, "echo", json!({"text": big})).await).as_deref(), Some("pending"));
    let started = Instant::now();
    let third = a.tool(3, "echo", json!({"text": "three"})).await;
    assert!(started.elapsed() < Duration::from_millis(900), "refused at once, not held");
    assert_eq!(third["error"]["code"], -32030, "{third}");
    assert!(third["error"]["message"].as_str().unwrap().contains("too many of your calls"), "{third}");
    assert_eq!(state(&a.tool(4, "echo", json!({"text": "one"})).await).as_deref(), Some("pending"), "a retry");
    let b = crate::authz::client(&w, &bob).await;
    assert_eq!(state(&b.tool(5, "echo", json!({"text": "bob"})).await).as_deref(), Some("pending"));
    let (_, listed) = admin_get(&format!("{admin}/approvals"), TOKEN).await;
    let whole = listed["approvals"]
        .as_array()
        .unwrap()
        .iter()
        .any(|x| x["arguments"]["text"].as_str().is_some_and(|t| t.len() == 20_000));
    assert!(whole, "the approver sees all of the arguments");
    let huge = b.tool(6, "echo", json!({"text": "y".repeat(100_000)})).await;
    assert_eq!(huge["error"]["code"], -32030, "{}", &huge.to_string()[..200]);
    assert!(huge["error"]["message"].as_str().unwrap().contains("too large"), "{}", &huge.to_string()[..200]);
}
