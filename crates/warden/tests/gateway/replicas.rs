//! Several Wardens as one (issue 23): a 2025 session opened on one replica is served by any
//! other that holds the same `[cluster] key`, and survives the replica that opened it; it stays
//! its caller's; `DELETE` ends it everywhere (through Redis).

use crate::authz::{client, key};
use serde_json::json;
use std::time::{Duration, Instant};
use warden_testkit::harness::{self, fixture_stdio_upstream, warden_with_env, Client, Proc};

const KEY_VAR: &str = "WARDEN_TEST_CLUSTER_KEY";
const KEY_A: &str = "AQEBAQEBAQEBAQEBAQEBAQEBAQEBAQEBAQEBAQEBAQE=";
const KEY_B: &str = "AgICAgICAgICAgICAgICAgICAgICAgICAgICAgICAgI=";

fn replica(sections: &str, key: &str) -> Proc {
    replica_with("", sections, key)
}

/// [`replica`], with more settings for its upstream.
fn replica_with(upstream: &str, sections: &str, key: &str) -> Proc {
    let up = fixture_stdio_upstream("fx", Some(""), upstream);
    warden_with_env("", &format!("{up}\n[cluster]\nkey = {{ env = \"{KEY_VAR}\" }}\n{sections}"), &[(KEY_VAR, key)])
}

/// The same session (id and caller), sent to another replica.
fn on(w: &Proc, c: &Client) -> Client {
    let mut o = Client::new(&w.url);
    o.session = c.session.clone();
    o.bearer = c.bearer.clone();
    o
}

fn text(v: &serde_json::Value) -> &str {
    v["result"]["content"][0]["text"].as_str().unwrap_or_else(|| panic!("no text: {v}"))
}

#[tokio::test]
async fn a_session_is_served_by_every_replica_with_the_key_and_outlives_its_own() {
    let (alice, ea) = key("alice", &["mcp"], &[], None);
    let (bob, eb) = key("bob", &["mcp"], &[], None);
    let auth = format!("[auth]\n{ea}{eb}");
    let a = replica(&auth, KEY_A);
    let b = replica(&auth, KEY_A);
    let ca = client(&a, &alice).await;
    let id = ca.session.clone().unwrap();
    assert!(id.starts_with("ws1."), "a sealed id: {id}");
    assert_eq!(text(&ca.tool(1, "echo", json!({"text": "on a"})).await), "on a");

    // Another replica takes the session up: listings and calls, then as one of its own.
    let cb = on(&b, &ca);
    let tools = cb.call(2, "tools/list", json!({})).await;
    assert!(tools["result"]["tools"].as_array().unwrap().iter().any(|t| t["name"] == "echo"), "{tools}");
    assert_eq!(text(&cb.tool(3, "echo", json!({"text": "on b"})).await), "on b");
    assert!(b.log().contains("session taken up on this replica"), "{}", b.log());
    // On record there as an `initialize` taken up, with the caller and its address.
    let recs = crate::audit::records(&b.dir.join("warden.toml").display().to_string(), &["--kind", "initialize"]);
    let up = recs.iter().find(|r| r["detail"].as_str().is_some_and(|d| d.starts_with("session taken up")));
    let up = up.unwrap_or_else(|| panic!("{recs:?}"));
    assert_eq!((up["subject"].as_str(), up["client_addr"].as_str()), (Some("alice"), Some("127.0.0.1")), "{up}");

    // It stays alice's: bob presenting her id is as unknown as a made-up id, on every replica.
    for w in [&a, &b] {
        let mut mallory = on(w, &ca);
        mallory.bearer = Some(bob.clone());
        let r = mallory.post(&json!({"jsonrpc": "2.0", "id": 4, "method": "tools/list"})).await;
        assert_eq!(r.status, 404, "{}", r.raw);
    }
    // A replica with another key, an altered id, a plain random one: unknown.
    let c = replica(&auth, KEY_B);
    let r = on(&c, &ca).post(&json!({"jsonrpc": "2.0", "id": 5, "method": "tools/list"})).await;
    assert_eq!(r.status, 404, "another key: {}", r.raw);
    let mut altered = on(&b, &ca);
    let mut bytes = id.clone().into_bytes();
    let i = bytes.len() - 3;
    bytes[i] = if bytes[i] == b'A' { b'B' } else { b'A' };
    altered.session = Some(String::from_utf8(bytes).unwrap());
    let r = altered.post(&json!({"jsonrpc": "2.0", "id": 6, "method": "tools/list"})).await;
    assert_eq!(r.status, 404, "altered: {}", r.raw);

    // The replica that opened it dies; a new one (same key) serves the session.
    drop(a);
    let a2 = replica(&auth, KEY_A);
    assert_eq!(text(&on(&a2, &ca).tool(7, "echo", json!({"text": "on a2"})).await), "on a2");

    // DELETE ends it: on the replica that received it, and for any replica taking it up.
    let d = on(&a2, &ca).request(reqwest::Method::DELETE).send().await.unwrap();
    assert_eq!(d.status(), 200);
    let r = on(&a2, &ca).post(&json!({"jsonrpc": "2.0", "id": 8, "method": "tools/list"})).await;
    assert_eq!(r.status, 404, "ended: {}", r.raw);
}

#[tokio::test]
async fn delete_on_one_replica_ends_the_session_on_all_within_a_second_through_redis() {
    let redis = harness::redis_server();
    let store = format!("[store]\nbackend = \"redis\"\nurl = {:?}\nprefix = \"r{}\"\n", redis.url, std::process::id());
    let (alice, ea) = key("alice", &["mcp"], &[], None);
    let sections = format!("[auth]\n{ea}\n{store}");
    let a = replica(&sections, KEY_A);
    let b = replica(&sections, KEY_A);
    let ca = client(&a, &alice).await;
    let cb = on(&b, &ca);
    assert_eq!(text(&cb.tool(1, "echo", json!({"text": "held by b"})).await), "held by b");

    let d = ca.request(reqwest::Method::DELETE).send().await.unwrap();
    assert_eq!(d.status(), 200);
    let t = Instant::now();
    loop {
        let r = cb.post(&json!({"jsonrpc": "2.0", "id": 2, "method": "tools/list"})).await;
        if r.status == 404 {
            break;
        }
        assert_eq!(r.status, 200, "{}", r.raw);
        assert!(t.elapsed() < Duration::from_secs(3), "b still serves an ended session");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    println!("ended on the other replica after {} ms", t.elapsed().as_millis());
    // A third replica never takes it up.
    let c = replica(&sections, KEY_A);
    let r = on(&c, &ca).post(&json!({"jsonrpc": "2.0", "id": 3, "method": "tools/list"})).await;
    assert_eq!(r.status, 404, "{}", r.raw);
}

#[tokio::test]
async fn taking_sessions_up_respects_the_callers_session_cap() {
    let (alice, ea) = key("alice", &["mcp"], &[], None);
    let a = replica(&format!("[auth]\n{ea}"), KEY_A);
    let b = warden_with_env(
        "max_sessions_per_principal = 1",
        &format!(
            "{}\n[cluster]\nkey = {{ env = \"{KEY_VAR}\" }}\n[auth]\n{ea}",
            fixture_stdio_upstream("fx", Some(""), "")
        ),
        &[(KEY_VAR, KEY_A)],
    );
    let (s1, s2) = (client(&a, &alice).await, client(&a, &alice).await);
    assert_eq!(text(&on(&b, &s1).tool(1, "echo", json!({"text": "one"})).await), "one");
    let r = on(&b, &s2).post(&json!({"jsonrpc": "2.0", "id": 2, "method": "tools/list"})).await;
    assert_eq!(r.status, 429, "a second session of the same caller on b: {}", r.raw);
}

/// For a scraper outside the host (a Kubernetes ServiceMonitor): `[telemetry] metrics_addr`
/// serves `GET /metrics` and nothing else.
#[tokio::test]
async fn the_metrics_listener_serves_metrics_only() {
    let port = harness::free_port();
    let w = replica(&format!("[telemetry]\nmetrics_addr = \"127.0.0.1:{port}\"\n"), KEY_A);
    let mut c = Client::new(&w.url);
    c.initialize().await;
    assert_eq!(text(&c.tool(1, "echo", json!({"text": "m"})).await), "m");
    let http = reqwest::Client::new();
    let base = format!("http://127.0.0.1:{port}");
    let m = http.get(format!("{base}/metrics")).send().await.unwrap();
    assert_eq!(m.status(), 200);
    let body = m.text().await.unwrap();
    assert!(body.contains("warden_sessions_active 1") && body.contains("warden_requests_total{"), "{body}");
    for path in ["/admin/kill-switches", "/mcp", "/"] {
        assert_eq!(http.get(format!("{base}{path}")).send().await.unwrap().status(), 404, "{path}");
    }
    let r = http.post(format!("{base}/metrics")).send().await.unwrap();
    assert_eq!(r.status(), 405, "read-only");
    // Open to any address, so capped like `/mcp`: 16 connections from one address.
    let mut held = Vec::new();
    for _ in 0..16 {
        held.push(tokio::net::TcpStream::connect(("127.0.0.1", port)).await.unwrap());
    }
    tokio::time::sleep(Duration::from_millis(100)).await;
    let over = reqwest::Client::new().get(format!("{base}/metrics")).send().await;
    assert!(over.is_err(), "a 17th connection from one address is refused: {over:?}");
    drop(held);
}

/// Review finding: ids presented all at once cannot take up more sessions than the caller's cap
/// (the cap is checked again when each session is inserted).
#[tokio::test]
async fn many_ids_at_once_cannot_pass_the_session_cap() {
    let (alice, ea) = key("alice", &["mcp"], &[], None);
    let a = replica(&format!("[auth]\n{ea}"), KEY_A);
    let b = warden_with_env(
        "max_sessions_per_principal = 2",
        &format!(
            "{}\n[cluster]\nkey = {{ env = \"{KEY_VAR}\" }}\n[auth]\n{ea}\n[audit]\nfsync = \"event\"\ngroup_commit_ms = 50\n",
            fixture_stdio_upstream("fx", Some(""), "")
        ),
        &[(KEY_VAR, KEY_A)],
    );
    let mut ids = Vec::new();
    for _ in 0..20 {
        ids.push(client(&a, &alice).await);
    }
    let tries = ids.iter().map(|s| {
        let o = on(&b, s);
        async move { o.post(&json!({"jsonrpc": "2.0", "id": 1, "method": "tools/list"})).await.status }
    });
    let statuses = futures::future::join_all(tries).await;
    let ok = statuses.iter().filter(|s| **s == 200).count();
    assert!(ok <= 2, "at most the cap taken up: {statuses:?}");
    assert!(statuses.iter().all(|s| [200, 429].contains(s)), "{statuses:?}");
}

/// Review finding: `DELETE` of a session this replica does not hold ends it without taking it
/// up (no cap, no record of a session opened), and a second `DELETE` is 404.
#[tokio::test]
async fn delete_on_a_replica_that_does_not_hold_the_session() {
    let (alice, ea) = key("alice", &["mcp"], &[], None);
    let auth = format!("[auth]\n{ea}");
    let a = replica(&auth, KEY_A);
    let b = replica(&auth, KEY_A);
    let ca = client(&a, &alice).await;
    let d = on(&b, &ca).request(reqwest::Method::DELETE).send().await.unwrap();
    assert_eq!(d.status(), 200);
    assert!(!b.log().contains("session taken up"), "{}", b.log());
    let d = on(&b, &ca).request(reqwest::Method::DELETE).send().await.unwrap();
    assert_eq!(d.status(), 404, "ended already");
    let r = on(&b, &ca).post(&json!({"jsonrpc": "2.0", "id": 1, "method": "tools/list"})).await;
    assert_eq!(r.status, 404);
}

/// The tools a new session on `w` is offered, with their descriptions.
async fn offered(w: &Proc) -> Vec<(String, String)> {
    let mut c = Client::new(&w.url);
    c.initialize().await;
    let v = c.call(90, "tools/list", json!({})).await;
    let tools = v["result"]["tools"].as_array().unwrap_or_else(|| panic!("{v}"));
    tools.iter().map(|t| (t["name"].as_str().unwrap().into(), t["description"].as_str().unwrap_or("").into())).collect()
}

/// Issue 23: definition pins and their approvals are shared through Redis. A rug pull seen by
/// one replica waits on all; the operator reviews and approves it on another replica (the only
/// one with an admin listener); the first replica then offers the approved definition. On
/// per-process pins the change is unknown to the admin replica (nothing to approve there).
#[tokio::test]
async fn definition_pins_and_their_approvals_are_shared() {
    use crate::approval::{admin_section, TOKEN};
    let redis = harness::redis_server();
    let dir = harness::tempdir("shared-pins");
    let descs = dir.join("descs.json");
    std::fs::write(&descs, "{}").unwrap();
    let d = descs.display().to_string();
    let fx = fixture_stdio_upstream(
        "fx",
        Some(""),
        &format!("env = {{ FIXTURE_DESCRIPTIONS = {d:?} }}\n[upstream.sandbox]\nread_only = [{d:?}]\n"),
    );
    let store =
        format!("[store]\nbackend = \"redis\"\nurl = {:?}\nprefix = \"pins{}\"\n", redis.url, std::process::id());
    let (admin, admin_url) = admin_section();
    let a = warden_with_env("", &format!("{fx}{admin}{store}"), &[]);
    let b = warden_with_env("", &format!("{fx}{store}"), &[]);
    let echo = |list: &[(String, String)]| list.iter().find(|(n, _)| n == "echo").map(|(_, d)| d.clone());
    let original = echo(&offered(&a).await).expect("echo offered on a");
    assert_eq!(echo(&offered(&b).await).as_deref(), Some(original.as_str()));

    // The upstream changes echo; b is the one that sees it first.
    std::fs::write(&descs, json!({"echo": "Echoes the text back, and keeps a copy."}).to_string()).unwrap();
    assert_eq!(echo(&offered(&b).await), None, "withheld on b");
    // The change b saw waits on a, where the operator approves it.
    let http = reqwest::Client::new();
    let mut pending = serde_json::Value::Null;
    let deadline = Instant::now() + Duration::from_secs(5);
    while Instant::now() < deadline {
        let r = http.get(format!("{admin_url}/pins")).bearer_auth(TOKEN).send().await.unwrap();
        pending = r.json::<serde_json::Value>().await.unwrap()["pending"].clone();
        if pending.as_array().is_some_and(|p| !p.is_empty()) {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let change =
        pending.as_array().and_then(|p| p.first()).unwrap_or_else(|| panic!("nothing pending on a: {pending}"));
    assert_eq!((change["kind"].as_str(), change["name"].as_str()), (Some("tool"), Some("echo")), "{change}");
    let body = json!({"server": "fx", "kind": "tool", "name": "echo", "digest": change["seen"]["digest"], "by": "sec"});
    let r = http.post(format!("{admin_url}/pins/approve")).bearer_auth(TOKEN).json(&body).send().await.unwrap();
    assert_eq!(r.status(), 200, "{}", r.text().await.unwrap());
    // Both offer the approved definition (b within its next look at the store).
    let want = Some("Echoes the text back, and keeps a copy.".to_string());
    assert_eq!(echo(&offered(&a).await), want);
    let deadline = Instant::now() + Duration::from_secs(5);
    while echo(&offered(&b).await) != want {
        assert!(Instant::now() < deadline, "b never took the approval: {:?}", offered(&b).await);
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// Issue 25: a session's taint is kept in the store, so the replica that takes the session up
/// refuses its sink call too (a session hopping replicas would otherwise leave its taint behind).
#[tokio::test]
async fn a_session_tainted_on_one_replica_is_tainted_on_the_next() {
    let redis = harness::redis_server();
    let store = format!("[store]\nbackend = \"redis\"\nurl = {:?}\nprefix = \"t{}\"\n", redis.url, std::process::id());
    let (alice, ea) = key("alice", &["mcp"], &[], None);
    let sections = format!("[auth]\n{ea}\n{store}[[rule]]\nid = \"all\"\ntools = [\"*\"]\nwhen_tainted = \"deny\"\n");
    let classify = "classify = { echo = [\"read_only\", \"untrusted_source\"], rows = \"exfiltration\" }\n";
    let a = replica_with(classify, &sections, KEY_A);
    let b = replica_with(classify, &sections, KEY_A);
    let ca = client(&a, &alice).await;
    assert_eq!(text(&ca.tool(1, "echo", json!({"text": "an issue someone filed"})).await), "an issue someone filed");
    let refused = on(&b, &ca).tool(2, "rows", json!({"value": {"rows": [1]}})).await;
    assert_eq!(refused["error"]["code"], -32034, "refused on the other replica: {refused}");
    assert!(refused["error"]["data"]["source"].as_str().is_some_and(|s| s.starts_with("fx/echo at")), "{refused}");
    let clean = client(&b, &alice).await;
    assert_eq!(
        clean.tool(1, "rows", json!({"value": {"rows": [1]}})).await["result"]["structuredContent"]["rows"][0],
        1
    );
}
