//! Issue 23: three Wardens behind a real HAProxy (round-robin per request, no stickiness) with
//! one Redis and one PostgreSQL behave as one gateway. One 2025 session spread over all three; a
//! 2026 client; one shared rate limit; one replica SIGKILLed under load (calls on the others keep
//! succeeding, the killed one's fail cleanly, every answered call is in the audit trail and
//! every chain verifies); a kill switch set on one replica in effect on all within a second.

use crate::approval::admin_section;
use crate::audit::{audit, public_key};
use crate::authz::key;
use parking_lot::Mutex;
use serde_json::{json, Value};
use std::collections::HashSet;
use std::sync::Arc;
use std::time::{Duration, Instant};
use warden_testkit::harness::{self, fixture_stdio_upstream, warden_with_env, Client, Proc};

const KEY_VAR: &str = "WARDEN_TEST_CLUSTER_KEY";
const CLUSTER_KEY: &str = "AwMDAwMDAwMDAwMDAwMDAwMDAwMDAwMDAwMDAwMDAwM=";
const TOKEN: &str = "an-admin-token-that-is-long-enough-0123456789";
const LIMIT: usize = 200;

fn port_of(w: &Proc) -> u16 {
    w.url.rsplit(':').next().and_then(|p| p.trim_end_matches("/mcp").parse().ok()).unwrap()
}

fn text(v: &Value) -> Option<&str> {
    v["result"]["content"][0]["text"].as_str()
}

fn sigterm(w: &mut Proc) {
    let _ = nix::sys::signal::kill(nix::unistd::Pid::from_raw(w.child.id() as i32), nix::sys::signal::Signal::SIGTERM);
    let _ = w.child.wait();
}

/// What load through the proxy saw.
#[derive(Default)]
struct Seen {
    answered: Vec<i64>,
    /// Clean failures: an HTTP status or a JSON-RPC error, with when.
    failed: Vec<(Duration, String)>,
    /// No answer at all within the client's timeout.
    hung: usize,
    answered_after_kill: usize,
}

#[tokio::test]
async fn three_wardens_behind_haproxy_behave_as_one() {
    let redis = harness::redis_server();
    let pg = harness::postgres_server();
    let (alice, ea) = key("alice", &["mcp"], &[], None);
    let (admin, admin_url) = admin_section();
    let sections = |i: usize, signing_key: &str| {
        format!(
            "{}\n[auth]\n{ea}\n[cluster]\nkey = {{ env = \"{KEY_VAR}\" }}\n\
             [store]\nbackend = \"redis\"\nurl = {:?}\nprefix = \"c{}\"\n\
             [audit]\nurl = {:?}\ninstance = \"r{i}\"\ncheckpoint_every = 500\n{signing_key}\n{}\n\
             [[rule]]\nid = \"echo\"\ntools = [\"echo\"]\n\
             [[rule]]\nid = \"limited\"\ntools = [\"test_simple_text\"]\nrate = \"{LIMIT}/hour\"\nburst = {LIMIT}\n",
            fixture_stdio_upstream("fx", Some(""), ""),
            redis.url,
            std::process::id(),
            pg.url,
            if i == 0 { admin.as_str() } else { "" },
        )
    };
    let env = [(KEY_VAR, CLUSTER_KEY)];
    let first = warden_with_env("", &sections(0, ""), &env);
    let signing = format!("signing_key = {:?}", first.dir.join("warden-audit.key").display().to_string());
    let mut ws = vec![first];
    for i in 1..3 {
        ws.push(warden_with_env("", &sections(i, &signing), &env));
    }
    let lb = harness::haproxy(&ws.iter().map(|w| format!("127.0.0.1:{}", port_of(w))).collect::<Vec<_>>());

    // One 2025 session through the proxy: its requests land on all three replicas.
    let mut c = Client::new(&lb.url);
    c.bearer = Some(alice.clone());
    c.initialize().await;
    for i in 0..12 {
        assert_eq!(text(&c.tool(i, "echo", json!({"text": format!("call {i}")})).await), Some(&*format!("call {i}")));
    }
    let took_up = ws.iter().filter(|w| w.log().contains("session taken up on this replica")).count();
    assert_eq!(took_up, 2, "the two replicas that did not open the session took it up");
    println!("2025 session: 12 calls over 3 replicas, taken up by {took_up}");

    // A 2026 client: stateless requests through the proxy.
    for _ in 0..6 {
        let (status, body) = crate::stateless::post(
            &lb.url,
            Some(&alice),
            "tools/call",
            json!({"name": "echo", "arguments": {"text": "stateless"}}),
            &[],
        )
        .await;
        assert_eq!((status, text(&body)), (200, Some("stateless")), "{body}");
    }

    // One limit for the three: LIMIT calls an hour (burst LIMIT), wherever they land.
    let mut ok = 0;
    for i in 0..(LIMIT + LIMIT / 2) as i64 {
        let r = c
            .post(&json!({"jsonrpc": "2.0", "id": 1000 + i, "method": "tools/call",
                          "params": {"name": "test_simple_text", "arguments": {}}}))
            .await;
        ok += usize::from(r.status == 200 && r.answer(1000 + i).is_some_and(|a| a.get("result").is_some()));
    }
    println!("shared limit {LIMIT}/hour: {ok} of {} calls allowed across 3 replicas", LIMIT + LIMIT / 2);
    assert!(ok.abs_diff(LIMIT) * 100 <= LIMIT, "within 1 %: {ok}");

    // Load through the proxy; one replica is SIGKILLed in the middle.
    let seen = Arc::new(Mutex::new(Seen::default()));
    let killed_at: Arc<Mutex<Option<Instant>>> = Arc::default();
    let start = Instant::now();
    let mut tasks = Vec::new();
    for worker in 0..8i64 {
        let (url, alice, seen, killed_at) = (lb.url.clone(), alice.clone(), seen.clone(), killed_at.clone());
        tasks.push(tokio::spawn(async move {
            let mut c = Client::new(&url);
            c.bearer = Some(alice);
            c.initialize().await;
            let mut i = 0;
            while start.elapsed() < Duration::from_secs(4) {
                i += 1;
                let id = (worker + 1) * 1_000_000 + i;
                let body = json!({"jsonrpc": "2.0", "id": id, "method": "tools/call",
                                  "params": {"name": "echo", "arguments": {"text": "load"}}});
                let sent = c.request(reqwest::Method::POST).header("content-type", "application/json").json(&body);
                let outcome = match tokio::time::timeout(Duration::from_secs(5), sent.send()).await {
                    Err(_) => None,
                    Ok(Err(e)) => Some(Err(format!("transport: {e}"))),
                    Ok(Ok(resp)) => {
                        let r = Client::read(resp).await;
                        match r.answer(id) {
                            Some(a) if text(a) == Some("load") => Some(Ok(())),
                            Some(a) => Some(Err(format!("{} {a}", r.status))),
                            None => Some(Err(format!("HTTP {}", r.status))),
                        }
                    }
                };
                let mut s = seen.lock();
                match outcome {
                    None => s.hung += 1,
                    Some(Ok(())) => {
                        s.answered.push(id);
                        s.answered_after_kill += usize::from(killed_at.lock().is_some());
                    }
                    Some(Err(e)) => s.failed.push((start.elapsed(), e)),
                }
            }
        }));
    }
    tokio::time::sleep(Duration::from_millis(1500)).await;
    ws[1].child.kill().unwrap();
    *killed_at.lock() = Some(Instant::now());
    let _ = ws[1].child.wait();
    for t in tasks {
        t.await.unwrap();
    }
    let seen = std::mem::take(&mut *seen.lock());
    println!(
        "load: {} answered ({} after the SIGKILL), {} failed cleanly, {} without an answer",
        seen.answered.len(),
        seen.answered_after_kill,
        seen.failed.len(),
        seen.hung
    );
    for (at, e) in seen.failed.iter().take(5) {
        println!("  failed at {:?}: {e}", at);
    }
    assert_eq!(seen.hung, 0, "no call waits forever");
    assert!(seen.answered_after_kill > 100, "the other replicas keep serving: {}", seen.answered_after_kill);
    assert!(seen.failed.len() <= 16, "only the killed replica's calls in flight fail: {}", seen.failed.len());

    // The killed replica comes back (as its pod would), then everyone stops cleanly.
    let cfg1 = ws[1].dir.join("warden.toml");
    let port1 = port_of(&ws[1]);
    ws[1] = {
        let mut cmd = std::process::Command::new(harness::bin("warden"));
        cmd.args(["serve", "--config"]).arg(&cfg1).env(KEY_VAR, CLUSTER_KEY).env("RUST_LOG", "info");
        let err = std::fs::File::create(ws[1].dir.join("stderr-2.log")).unwrap();
        let child = cmd.stdout(std::process::Stdio::null()).stderr(err).spawn().unwrap();
        let url = format!("http://127.0.0.1:{port1}/mcp");
        harness::wait_http(&url);
        Proc { child, url, dir: ws[1].dir.clone() }
    };

    // A kill switch set on one replica stops the tool on all three within a second.
    let http = reqwest::Client::new();
    let r = http
        .post(format!("{admin_url}/kill-switches"))
        .bearer_auth(TOKEN)
        .json(&json!({"server": "fx", "tool": "echo", "reason": "incident", "by": "oncall"}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    let flipped = Instant::now();
    let mut pending: HashSet<usize> = (0..3).collect();
    while !pending.is_empty() {
        assert!(flipped.elapsed() < Duration::from_secs(3), "not switched off on {pending:?}");
        for i in pending.clone() {
            let mut o = Client::new(&ws[i].url);
            o.session = c.session.clone();
            o.bearer = c.bearer.clone();
            let a = o.tool(9_000_000, "echo", json!({"text": "x"})).await;
            if a.to_string().contains("switched off by an operator") {
                pending.remove(&i);
            }
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let took = flipped.elapsed();
    println!("kill switch in effect on all three replicas after {} ms", took.as_millis());
    assert!(took < Duration::from_millis(1000), "{took:?}");

    drop(lb);
    for w in ws.iter_mut() {
        sigterm(w);
    }
    // Every chain verifies, and every answered call is in the trail.
    let key = public_key(&ws[0].dir.join("warden.toml").display().to_string());
    let mut args = vec!["verify".to_string(), "--url".into(), pg.url.clone(), "--public-key".into(), key];
    for w in &ws {
        args.push("--checkpoints".into());
        args.push(w.dir.join("warden-audit.db.checkpoints").display().to_string());
    }
    let (ok, out) = audit(&args.iter().map(String::as_str).collect::<Vec<_>>());
    assert!(ok && ["chain r0:", "chain r1:", "chain r2:"].iter().all(|c| out.contains(c)), "{out}");
    let recorded: HashSet<i64> = pg.sql(|db| {
        db.query("SELECT record FROM audit_events WHERE kind = 'call' AND status = 'success'", &[])
            .unwrap()
            .iter()
            .filter_map(|r| serde_json::from_str::<Value>(&r.get::<_, String>(0)).ok())
            .filter_map(|v| v["request_id"].as_str().and_then(|s| s.parse().ok()))
            .collect()
    });
    let missing: Vec<_> = seen.answered.iter().filter(|id| !recorded.contains(id)).collect();
    assert!(
        missing.is_empty(),
        "{} answered calls not in the trail: {:?}",
        missing.len(),
        &missing[..missing.len().min(5)]
    );
    println!("audit: {} answered calls all recorded; chains r0, r1, r2 verify", seen.answered.len());
}
