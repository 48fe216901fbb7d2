//! Several Wardens on one real Redis: one limit between them, kill switches and approvals that
//! follow each other, and the outage policy when Redis goes away.

use crate::approval::admin_section;
use crate::authz::{client, error, key};
use serde_json::json;
use std::time::{Duration, Instant};
use warden_testkit::harness::{self, fixture_stdio_upstream, warden, Client, Proc};

const TOKEN: &str = "an-admin-token-that-is-long-enough-0123456789";

fn store(redis: &Proc, prefix: &str, outage: &str) -> String {
    format!("[store]\nbackend = \"redis\"\nurl = {:?}\nprefix = {prefix:?}\non_outage = {outage:?}\n", redis.url)
}

/// Poll `f` until it is true (at most `secs`); how long it took.
async fn within<F: std::future::Future<Output = bool>>(secs: u64, mut f: impl FnMut() -> F) -> Duration {
    let t = Instant::now();
    while !f().await {
        assert!(t.elapsed() < Duration::from_secs(secs), "not within {secs} s");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    t.elapsed()
}

fn text(v: &serde_json::Value) -> Option<&str> {
    v["result"]["content"][0]["text"].as_str()
}

#[tokio::test]
async fn two_wardens_share_limits_kill_switches_and_approvals_and_fail_closed_without_redis() {
    let mut redis = harness::redis_server();
    let redis_port: u16 = redis.url.rsplit(':').next().unwrap().parse().unwrap();
    let prefix = format!("t{}", std::process::id());
    let up = fixture_stdio_upstream("fx", Some(""), "");
    let (alice, ea) = key("alice", &["mcp"], &[], Some("a"));
    let (bob, eb) = key("bob", &["warden:approve"], &[], Some("a"));
    let rules = "[[rule]]\nid = \"echo\"\ntools = [\"echo\"]\nrate = \"3/minute\"\nburst = 3\n\
                 [[rule]]\nid = \"text\"\ntools = [\"test_simple_text\"]\n\
                 [[rule]]\nid = \"slow-approved\"\ntools = [\"slow\"]\napproval = \"admin\"\n\
                 [approval]\nwait_secs = 20\n";
    let (admin_a, url_a) = admin_section();
    let (admin_b, url_b) = admin_section();
    let a =
        warden("", &format!("{up}\n[auth]\n{ea}{eb}\n{admin_a}\n{}\n{rules}", store(&redis, &prefix, "fail_closed")));
    let b = warden("", &format!("{up}\n[auth]\n{ea}{eb}\n{admin_b}\n{}\n{rules}", store(&redis, &prefix, "fail_open")));
    let ca = client(&a, &alice).await;
    let cb = client(&b, &alice).await;

    // One limit between the two: 3 calls a minute in all, wherever they land.
    assert_eq!(text(&ca.tool(1, "echo", json!({"text": "1"})).await), Some("1"));
    assert_eq!(text(&cb.tool(2, "echo", json!({"text": "2"})).await), Some("2"));
    assert_eq!(text(&ca.tool(3, "echo", json!({"text": "3"})).await), Some("3"));
    for c in [&ca, &cb] {
        let r = c
            .post(&json!({"jsonrpc": "2.0", "id": 4, "method": "tools/call",
                               "params": {"name": "echo", "arguments": {"text": "4"}}}))
            .await;
        assert_eq!(r.status, 429, "{}", r.raw);
        let retry: u64 = r.headers["retry-after"].to_str().unwrap().parse().unwrap();
        assert!((1..=20).contains(&retry), "one call every 20 s: {retry}");
        assert_eq!(r.answer(4).unwrap()["error"]["data"]["limit"], "tool");
    }

    // A kill switch flipped on A is in effect on B within a second, and revived from B on A.
    let http = reqwest::Client::new();
    let r = http
        .post(format!("{url_a}/kill-switches"))
        .bearer_auth(TOKEN)
        .json(&json!({"server": "fx", "tool": "test_simple_text", "reason": "shared", "by": "oncall"}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    let switched_off =
        |r: &serde_json::Value| r["result"]["isError"] == true && r.to_string().contains("switched off by an operator");
    let took = within(3, || async { switched_off(&cb.tool(6, "test_simple_text", json!({})).await) }).await;
    assert!(took < Duration::from_millis(1500), "{took:?}");
    let r = http
        .delete(format!("{url_b}/kill-switches?server=fx&tool=test_simple_text"))
        .bearer_auth(TOKEN)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    within(3, || async {
        let v: serde_json::Value =
            http.get(format!("{url_a}/kill-switches")).bearer_auth(TOKEN).send().await.unwrap().json().await.unwrap();
        v["kill_switches"].as_array().unwrap().is_empty()
    })
    .await;

    // A call held on A is approved on B's admin API.
    let held = tokio::spawn({
        let c = Client { session: ca.session.clone(), bearer: ca.bearer.clone(), ..Client::new(&a.url) };
        async move { c.tool(7, "slow", json!({"ms": 1})).await }
    });
    let pending = crate::approval::one_pending(&url_b, &bob).await;
    let id = pending["id"].as_str().unwrap();
    let r = http.post(format!("{url_b}/approvals/{id}/approve")).bearer_auth(&bob).send().await.unwrap();
    assert_eq!(r.status(), 200);
    let done = tokio::time::timeout(Duration::from_secs(5), held).await.expect("released").unwrap();
    assert!(done.get("result").is_some(), "{done}");

    // Redis goes away: A (fail_closed) refuses with a clear error, B (fail_open) goes on.
    redis.child.kill().unwrap();
    redis.child.wait().unwrap();
    let e = error(&ca.tool(8, "echo", json!({"text": "x"})).await);
    assert_eq!(e["code"], -32031, "{e}");
    assert!(e["message"].as_str().unwrap().contains("store unavailable"), "{e}");
    assert!(cb.tool(9, "echo", json!({"text": "open"})).await.get("result").is_some());
    assert!(a.log().contains("limit store out; call refused (fail_closed)"));
    assert!(b.log().contains("limit store out; call allowed (fail_open)"));
    // Issue 20, finding 8: a call let through without its limits says so in its record.
    let cfg_b = b.dir.join("warden.toml").display().to_string();
    let open = crate::audit::records(&cfg_b, &["--kind", "call"]);
    let unlimited: Vec<_> = open.iter().filter(|r| r["findings"].to_string().contains("limits:fail_open")).collect();
    assert_eq!(unlimited.len(), 1, "{open:?}");
    assert_eq!(unlimited[0]["request_id"], "9");

    // Back again: A serves from the same limits (a fresh Redis: a fresh budget).
    let _redis = harness::redis_server_on(redis_port);
    within(10, || async { text(&ca.tool(10, "echo", json!({"text": "back"})).await) == Some("back") }).await;
}

/// Issue 20 finding 8: Redis over TLS (`rediss://`, a private CA) works, and kill switches do not
/// revive when Redis loses its data (`FLUSHALL`): every replica keeps its switches in effect,
/// writes them back and records the reset.
#[tokio::test]
async fn kill_switches_survive_redis_data_loss_over_tls() {
    let redis = harness::redis_tls_server();
    let port = redis.url.rsplit(':').next().unwrap().to_string();
    let ca = redis.dir.join("ca.pem").display().to_string();
    let prefix = format!("tls{}", std::process::id());
    let section =
        format!("[store]\nbackend = \"redis\"\nurl = {:?}\nca_file = {ca:?}\nprefix = {prefix:?}\n", redis.url);
    let up = fixture_stdio_upstream("fx", Some(""), "");
    let (admin_a, url_a) = admin_section();
    let (admin_b, _) = admin_section();
    let a = warden("", &format!("{up}\n{admin_a}\n{section}"));
    let b = warden("", &format!("{up}\n{admin_b}\n{section}"));
    let (mut ca_client, mut cb) = (Client::new(&a.url), Client::new(&b.url));
    ca_client.initialize().await;
    cb.initialize().await;
    assert_eq!(
        text(&cb.tool(1, "test_simple_text", json!({})).await),
        Some("This is a simple text response for testing.")
    );

    let http = reqwest::Client::new();
    let r = http
        .post(format!("{url_a}/kill-switches"))
        .bearer_auth(TOKEN)
        .json(&json!({"server": "fx", "tool": "test_simple_text", "reason": "incident", "by": "oncall"}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    let switched_off =
        |r: &serde_json::Value| r["result"]["isError"] == true && r.to_string().contains("switched off by an operator");
    within(3, || async { switched_off(&cb.tool(2, "test_simple_text", json!({})).await) }).await;

    // Redis loses everything.
    let cli = |args: &[&str]| {
        let out = std::process::Command::new("redis-cli")
            .args(["--tls", "--cacert", &ca, "-h", "127.0.0.1", "-p", &port])
            .args(args)
            .output()
            .unwrap();
        assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
        String::from_utf8_lossy(&out.stdout).trim().to_string()
    };
    assert_eq!(cli(&["FLUSHALL"]), "OK");
    // Several polls later: still off on both, and back in Redis.
    tokio::time::sleep(Duration::from_millis(1500)).await;
    assert!(switched_off(&cb.tool(3, "test_simple_text", json!({})).await));
    assert!(switched_off(&ca_client.tool(4, "test_simple_text", json!({})).await));
    within(3, || async { cli(&["HLEN", &format!("{prefix}:kills")]) == "1" }).await;
    for w in [&a, &b] {
        assert!(w.log().contains("the store lost its state"), "{}", w.log());
        let cfg = w.dir.join("warden.toml").display().to_string();
        let resets = crate::audit::records(&cfg, &["--kind", "kill_switch"]);
        assert!(resets.iter().any(|r| r["detail"] == "store_reset" && r["count"] == 1), "{resets:?}");
    }
}
