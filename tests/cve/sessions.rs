//! Sessions and routing. CVE-2026-25536 (TypeScript SDK: one server or transport instance
//! reused for several clients delivered one client's responses and notifications to another;
//! the same class as JSON-RPC id collisions between clients) and the unbounded session tables
//! of several 2026 SDK advisories (sessions that are never capped or expired fill memory).
//! Warden gives each client session its own connection to a 2025 upstream (a 2026 upstream's
//! one connection carries each call under Warden's own id and progress token), allocates its own
//! id for every upstream call, routes related messages by the request that caused them, caps
//! sessions per caller and in total, and closes idle ones.

use crate::common::*;
use futures::future::join_all;
use serde_json::{json, Value};
use std::time::Duration;
use warden_testkit::harness::{fixture_http, fixture_stdio_upstream, warden, Client};

#[tokio::test]
async fn cve_2026_25536_answers_and_notifications_never_cross_clients() {
    let fx = fixture_http();
    let both = format!(
        "{}{}",
        http_upstream_ns("web", "web", &fx.url, ""),
        fixture_stdio_upstream("local", Some("local"), "")
    );
    let w = warden("", &both);
    let (a, b) = (client(&w.url).await, client(&w.url).await);
    for tool in ["web__echo", "local__echo"] {
        // The same JSON-RPC ids from both clients at the same time.
        let calls = (1..=20).flat_map(|i| {
            [(&a, "A", i), (&b, "B", i)].map(|(c, who, i)| async move {
                let v = c.tool(i, tool, json!({"text": format!("{who}-{i}")})).await;
                (who, i, text(&v))
            })
        });
        for (who, i, got) in join_all(calls).await {
            assert_eq!(got, format!("{who}-{i}"), "{tool}: client {who} request {i}");
        }
    }
    // Progress notifications go with the request that caused them, on its own client's stream.
    for tool in ["web__test_tool_with_progress", "local__test_tool_with_progress"] {
        let req = |token: &str| {
            json!({"jsonrpc": "2.0", "id": 7, "method": "tools/call",
            "params": {"name": tool, "arguments": {}, "_meta": {"progressToken": token}}})
        };
        let (qa, qb) = (req("token-A"), req("token-B"));
        let (ra, rb) = futures::join!(a.post(&qa), b.post(&qb));
        for (r, mine, theirs) in [(&ra, "token-A", "token-B"), (&rb, "token-B", "token-A")] {
            let progress: Vec<&Value> = r.messages.iter().filter(|m| m["method"] == "notifications/progress").collect();
            assert_eq!(progress.len(), 3, "{tool}: {}", r.raw);
            assert!(progress.iter().all(|p| p["params"]["progressToken"] == mine), "{tool}: {}", r.raw);
            assert!(!r.raw.contains(theirs), "{tool}: the other client's progress leaked: {}", r.raw);
            // The tool answers with the token it saw: the client's own, or (a 2026 upstream,
            // whose one connection serves both clients) the one Warden gave this call.
            let saw = text(r.answer(7).unwrap());
            assert!(saw == mine || saw.starts_with("warden-progress-"), "{tool}: {saw}");
        }
    }
    let calls = records(&w, &["--kind", "call"]);
    let sessions: std::collections::BTreeSet<&str> = calls.iter().filter_map(|r| r["session"].as_str()).collect();
    assert_eq!(sessions.len(), 2, "each call is recorded under its own client's session");
}

async fn init_status(url: &str, key: &str) -> u16 {
    let mut c = Client::new(url);
    c.bearer = Some(key.into());
    let r = c.post(&json!({"jsonrpc": "2.0", "id": 0, "method": "initialize", "params": warden_testkit::harness::init_params()})).await;
    r.status
}

#[tokio::test]
async fn session_floods_are_capped_and_idle_sessions_expire() {
    let (k1, e1) = warden_gateway::auth::apikey::generate("flooder", &["mcp".into()], None, None);
    let (k2, e2) = warden_gateway::auth::apikey::generate("someone-else", &["mcp".into()], None, None);
    let auth = format!("[auth]\nrequired_scopes = [\"mcp\"]\n{e1}\n{e2}\n");
    let w = warden(
        "max_sessions_per_principal = 8\nmax_sessions = 12\nsession_idle_timeout_secs = 2",
        &format!("{}\n{auth}", fixture_stdio_upstream("fx", Some(""), "")),
    );
    // One caller opening sessions as fast as it can: the first 8 succeed, every later one is
    // refused, and another caller still gets in.
    let statuses = join_all((0..40).map(|_| init_status(&w.url, &k1))).await;
    assert_eq!(statuses.iter().filter(|s| **s == 200).count(), 8, "{statuses:?}");
    assert!(statuses.iter().all(|s| *s == 200 || *s == 429), "{statuses:?}");
    // Another caller still gets in, until the table is full in total (12): then 503 for anyone.
    let mut others = Vec::new();
    for _ in 0..6 {
        others.push(init_status(&w.url, &k2).await);
    }
    assert_eq!(others, [200, 200, 200, 200, 503, 503], "another caller gets the rest of the table");
    let (k3, _) = warden_gateway::auth::apikey::generate("unknown", &["mcp".into()], None, None);
    assert_eq!(init_status(&w.url, &k3).await, 401, "an unknown key opens nothing");
    // Idle sessions are closed: after the idle timeout the flooder's slots are free again.
    let deadline = std::time::Instant::now() + Duration::from_secs(30);
    loop {
        tokio::time::sleep(Duration::from_millis(500)).await;
        if init_status(&w.url, &k1).await == 200 {
            break;
        }
        assert!(std::time::Instant::now() < deadline, "idle sessions were never closed");
    }
    let inits = records(&w, &["--kind", "initialize"]);
    assert!(inits.len() >= 10, "accepted sessions are recorded: {}", inits.len());
}
