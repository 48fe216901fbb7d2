//! The audit trail and metrics end to end: every kind of operation leaves a record with its
//! decision and status, secrets sent through never reach the trail, the log, or the metrics,
//! `warden audit verify` passes on the real log and fails on an edited one, and a Warden killed
//! with SIGKILL under load leaves a log that verifies and holds every call it answered.

use crate::approval::admin_section;
use serde_json::{json, Value};
use std::process::Command;
use std::time::Duration;
use warden_testkit::harness::{bin, fixture_stdio_upstream, postgres_server, warden, Client};

const SECRETS: [&str; 4] =
    ["AKIAIOSFODNN7EXAMPLE", "hunter2-correct-horse", "ann.secret@example.com", "4111111111111111"];

pub(crate) fn audit(args: &[&str]) -> (bool, String) {
    let out = Command::new(bin("warden")).arg("audit").args(args).output().unwrap();
    (out.status.success(), String::from_utf8_lossy(&out.stdout).into_owned())
}

/// The public half of a config's checkpoint key, as an operator would pin it.
pub(crate) fn public_key(cfg: &str) -> String {
    let (ok, out) = audit(&["public-key", "--config", cfg]);
    assert!(ok, "{out}");
    out.trim().to_string()
}

/// `warden audit verify --config cfg --public-key <its key>`, with more arguments.
pub(crate) fn verify(cfg: &str, more: &[&str]) -> (bool, String) {
    let key = public_key(cfg);
    audit(&[&["verify", "--config", cfg, "--public-key", &key], more].concat())
}

pub(crate) fn records(cfg: &str, filter: &[&str]) -> Vec<Value> {
    let (ok, out) = audit(&[&["query", "--config", cfg, "--limit", "0"], filter].concat());
    assert!(ok, "{out}");
    out.lines().map(|l| serde_json::from_str(l).unwrap()).collect()
}

fn sigterm(pid: u32) {
    let _ = nix::sys::signal::kill(nix::unistd::Pid::from_raw(pid as i32), nix::sys::signal::Signal::SIGTERM);
}

#[tokio::test]
async fn every_operation_is_recorded_without_secrets_and_verifies() {
    let fx = fixture_stdio_upstream("fx", Some(""), "");
    let (admin_cfg, admin_url) = admin_section();
    let rules = "[[rule]]\nid = \"tools\"\ntools = [\"*\"]\nresources = [\"*\"]\n\
                 [[rule]]\nid = \"no-errors\"\neffect = \"deny\"\ntools = [\"test_error_handling\"]\n\
                 [[guard]]\nserver = \"fx\"\ntools = [\"test_sampling\"]\nargument = \"prompt\"\nkind = \"argv\"\n";
    let mut w = warden("", &format!("{fx}{admin_cfg}{rules}"));
    let cfg = w.dir.join("warden.toml").display().to_string();
    let mut c = Client::new(&w.url);
    c.initialize().await;

    let v = c.call(1, "tools/list", json!({})).await;
    assert!(v["result"]["tools"].as_array().is_some_and(|t| !t.is_empty()));
    // A call carrying secrets in its arguments (pattern-detected and under a secret-named key).
    let text = format!("key {} card {} mail {}", SECRETS[0], SECRETS[3], SECRETS[2]);
    c.tool(2, "echo", json!({"text": text})).await;
    c.tool(3, "echo", json!({"text": "x", "password": SECRETS[1]})).await; // also a schema refusal
    c.tool(4, "test_error_handling", json!({})).await; // denied by rule
    c.tool(5, "no_such_tool", json!({})).await;
    c.tool(6, "test_sampling", json!({"prompt": "-rf; $(curl evil)"})).await; // guard
    c.call(7, "resources/read", json!({"uri": "test://static-text"})).await;

    // Admin: a refused credential, a kill switch off and on.
    let http = reqwest::Client::new();
    let r = http.get(format!("{admin_url}/kill-switches")).bearer_auth("wrong").send().await.unwrap();
    assert_eq!(r.status(), 401);
    let kill = json!({"server": "fx", "tool": "echo", "reason": "audit test", "by": "tester"});
    let r = http.post(format!("{admin_url}/kill-switches")).bearer_auth(crate::approval::TOKEN).json(&kill).send();
    assert_eq!(r.await.unwrap().status(), 200);
    let r = http
        .delete(format!("{admin_url}/kill-switches?server=fx&tool=echo"))
        .bearer_auth(crate::approval::TOKEN)
        .send();
    assert_eq!(r.await.unwrap().status(), 200);

    // Metrics, on the admin listener.
    let metrics_url = admin_url.replace("/admin", "/metrics");
    // (the admin actions' own records may still be on their way to the writer: scrape until
    // the queue has drained)
    let mut m = String::new();
    for _ in 0..50 {
        m = http.get(&metrics_url).send().await.unwrap().text().await.unwrap();
        if m.contains("warden_audit_queue_depth 0") {
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    for want in [
        "warden_requests_total{method=\"tools/call\",server=\"fx\",tool=\"echo\",status=\"success\"} 1",
        "warden_authz_denials_total{rule=\"no-errors\"} 1",
        "warden_auth_failures_total{reason=\"admin_credentials\"} 1",
        "warden_kill_switch_flips_total{server=\"fx\",action=\"off\"} 1",
        "warden_guard_findings_total{guard=\"guard.argv\",action=\"refused\"} 1",
        "warden_guard_findings_total{guard=\"schema\",action=\"refused\"} 1",
        "warden_upstream_up{server=\"fx\"} 1",
        "warden_sessions_active 1",
        "warden_pin_changes_total{server=\"fx\",change=\"pinned\"}",
        "warden_request_duration_seconds_bucket{le=\"+Inf\",method=\"tools/call\",server=\"fx\",tool=\"echo\"} 2",
        "warden_audit_queue_depth 0",
    ] {
        assert!(m.contains(want), "metrics lack {want}:\n{m}");
    }

    // A clean stop writes a final signed checkpoint.
    sigterm(w.child.id());
    let _ = w.child.wait();

    let (ok, out) = verify(&cfg, &[]);
    assert!(ok, "{out}");
    assert!(out.contains("records(s) verified") || out.contains("record(s) verified"), "{out}");
    assert!(!out.contains("not yet covered"), "the final checkpoint covers everything: {out}");

    let all = records(&cfg, &[]);
    let kinds: Vec<&str> = all.iter().map(|r| r["kind"].as_str().unwrap()).collect();
    for k in ["initialize", "list", "call", "read", "auth_failure", "kill_switch", "pin", "checkpoint"] {
        assert!(kinds.contains(&k), "no {k} record in {kinds:?}");
    }
    let calls = records(&cfg, &["--kind", "call"]);
    let by_id = |id: &str| calls.iter().find(|r| r["request_id"] == id).unwrap_or_else(|| panic!("no call {id}"));
    let ok_call = by_id("2");
    assert_eq!((ok_call["decision"].as_str(), ok_call["status"].as_str()), (Some("allowed"), Some("success")));
    assert_eq!(ok_call["rule"], "tools");
    assert_eq!(ok_call["subject"], "local");
    assert_eq!(ok_call["client_addr"], "127.0.0.1");
    assert!(ok_call["args_digest"].as_str().is_some_and(|d| d.len() == 64));
    assert!(ok_call["result_bytes"].as_u64().is_some_and(|n| n > 0));
    assert!(ok_call["latency_us"].as_u64().is_some());
    assert_eq!(by_id("3")["status"], "validation_error");
    assert_eq!(by_id("3")["args"]["password"], "[REDACTED:secret-named argument]");
    let denied = by_id("4");
    assert_eq!((denied["decision"].as_str(), denied["status"].as_str()), (Some("denied"), Some("auth_denied")));
    assert_eq!(denied["rule"], "no-errors");
    assert_eq!(by_id("5")["status"], "validation_error");
    let guarded = by_id("6");
    assert_eq!((guarded["decision"].as_str(), guarded["status"].as_str()), (Some("allowed"), Some("blocked_by_guard")));
    assert_eq!(guarded["findings"], json!(["guard.argv:refused"]));
    let q = records(&cfg, &["--decision", "denied", "--kind", "call"]);
    assert_eq!(q.len(), 1, "{q:?}");
    let kills = records(&cfg, &["--kind", "kill_switch"]);
    assert_eq!(kills.len(), 2);
    assert_eq!(kills[0]["subject"], "admin-token:tester");

    // No secret anywhere: the database (and its WAL), the checkpoint file, the log, the metrics.
    let mut outputs = vec![w.log(), m, audit(&["query", "--config", &cfg, "--limit", "0"]).1];
    for f in std::fs::read_dir(&w.dir).unwrap() {
        let p = f.unwrap().path();
        if p.file_name().unwrap().to_string_lossy().starts_with("warden-audit.db") {
            outputs.push(String::from_utf8_lossy(&std::fs::read(&p).unwrap()).into_owned());
        }
    }
    for (i, o) in outputs.iter().enumerate() {
        for s in SECRETS {
            assert!(!o.contains(s), "secret {s} found in output {i}");
        }
    }

    // An edited record is found.
    let db = w.dir.join("warden-audit.db");
    let conn = rusqlite::Connection::open(&db).unwrap();
    conn.execute("UPDATE audit_events SET record = replace(record, '\"auth_denied\"', '\"success\"')", []).unwrap();
    drop(conn);
    let (ok, out) = verify(&cfg, &[]);
    assert!(!ok && out.contains("PROBLEM") && out.contains("edited"), "{out}");
}

/// kill -9 under load: the log verifies (up to its unsigned tail) and every call answered as a
/// success has its record.
#[tokio::test]
async fn a_killed_warden_loses_no_answered_call() {
    killed_under_load("[audit]\ncheckpoint_every = 200\n").await;
}

/// The same on PostgreSQL, then a second Warden writes its own chain into the same database,
/// and an edited row is found.
#[tokio::test]
async fn postgres_trail_survives_kill_9_and_is_shared_by_two_wardens() {
    let pg = postgres_server();
    let section =
        |instance: &str| format!("[audit]\nurl = {:?}\ninstance = {instance:?}\ncheckpoint_every = 200\n", pg.url);
    let cfg_a = killed_under_load(&section("a")).await;

    // Wardens sharing a trail share the signing key (one trusted key verifies every chain)
    let key = std::path::Path::new(&cfg_a).with_file_name("warden-audit.key");
    let fx = fixture_stdio_upstream("fx", Some(""), "");
    let mut b = warden("", &format!("{fx}{}signing_key = {:?}\n", section("b"), key.display().to_string()));
    let mut c = Client::new(&b.url);
    c.initialize().await;
    for i in 0..5 {
        let r = c.tool(10 + i, "echo", json!({"text": "from b"})).await;
        assert_eq!(r["result"]["content"][0]["text"], "from b", "{r}");
    }
    sigterm(b.child.id());
    let _ = b.child.wait();
    // both chains verify, each against its own checkpoint file (a chain no file anchors is a
    // problem: it could be cut back unnoticed)
    let key = public_key(&cfg_a);
    let cps = |dir: &std::path::Path| dir.join("warden-audit.db.checkpoints").display().to_string();
    let (cp_a, cp_b) = (cps(std::path::Path::new(&cfg_a).parent().unwrap()), cps(&b.dir));
    let (ok, out) = verify(&cfg_a, &[]);
    assert!(!ok && out.contains("chain b: no checkpoint file given holds it"), "{out}");
    let (ok, out) = verify(&cfg_a, &["--checkpoints", &cp_a, "--checkpoints", &cp_b]);
    assert!(ok && out.contains("chain a:") && out.contains("chain b:"), "{out}");
    let by_url =
        || audit(&["verify", "--url", &pg.url, "--public-key", &key, "--checkpoints", &cp_a, "--checkpoints", &cp_b]);
    let (ok, out) = by_url();
    assert!(ok, "{out}");
    // Without a pinned key, or without the checkpoint files, it does not pass.
    let (ok, out) = audit(&["verify", "--url", &pg.url, "--checkpoints", &cp_a, "--checkpoints", &cp_b]);
    assert!(!ok && out.contains("no pinned checkpoint key"), "{out}");
    let (ok, out) = audit(&["verify", "--url", &pg.url, "--public-key", &key]);
    assert!(!ok && out.contains("no checkpoint file"), "{out}");
    let from_b =
        records(&cfg_a, &["--kind", "call", "--status", "success"]).iter().filter(|r| r["chain"] == "b").count();
    assert_eq!(from_b, 5);
    // an edited record is found, with where
    let row: i64 = pg.sql(|db| {
        let row: i64 = db
            .query_one("SELECT min(id) FROM audit_events WHERE id >= 42 AND record LIKE '%\"success\"%'", &[])
            .unwrap()
            .get(0);
        db.execute(
            "UPDATE audit_events SET record = replace(record, '\"success\"', '\"denied\"') WHERE id = $1",
            &[&row],
        )
        .unwrap();
        row
    });
    let (ok, out) = by_url();
    assert!(!ok && out.contains(&format!("row {row}")), "{out}");
    // Checkpoint rows deleted: the chains are no longer signed, nor what the files anchor.
    pg.sql(|db| db.execute("DELETE FROM audit_events WHERE kind = 'checkpoint'", &[]).unwrap());
    let (ok, out) = by_url();
    assert!(!ok && out.contains("no valid signed checkpoint") && out.contains("missing from the log"), "{out}");
}

/// Load through a Warden with this `[audit]` section, kill it with SIGKILL, and check its
/// trail; returns the config's path.
async fn killed_under_load(audit_section: &str) -> String {
    let fx = fixture_stdio_upstream("fx", Some(""), "");
    let mut w = warden("", &format!("{fx}{audit_section}"));
    let cfg = w.dir.join("warden.toml").display().to_string();
    let answered = std::sync::Arc::new(parking_lot::Mutex::new(Vec::<String>::new()));
    let mut tasks = Vec::new();
    for worker in 0..8 {
        let url = w.url.clone();
        let answered = answered.clone();
        tasks.push(tokio::spawn(async move {
            let mut c = Client::new(&url);
            c.initialize().await;
            for i in 0..100_000i64 {
                let id = worker * 1_000_000 + i;
                let body = json!({"jsonrpc": "2.0", "id": id, "method": "tools/call",
                                  "params": {"name": "echo", "arguments": {"text": "load"}}});
                let sent = c.request(reqwest::Method::POST).json(&body);
                // The connection dies with Warden: that ends this worker.
                let Ok(Ok(resp)) = tokio::time::timeout(Duration::from_secs(5), sent.send()).await else { return };
                match Client::read(resp).await.answer(id) {
                    Some(v) if v["result"]["content"][0]["text"] == "load" => answered.lock().push(id.to_string()),
                    _ => return,
                }
            }
        }));
    }
    tokio::time::sleep(Duration::from_millis(2500)).await;
    w.child.kill().unwrap(); // SIGKILL
    let _ = w.child.wait();
    for t in tasks {
        let _ = t.await;
    }
    let answered = answered.lock().clone();
    assert!(answered.len() > 100, "load ran: {} calls", answered.len());
    eprintln!("{} calls answered before SIGKILL", answered.len());
    // The next start stores what the killed Warden acknowledged from its journal (a local
    // trail); then a clean stop.
    let port: u16 = w.url.rsplit(':').next().and_then(|p| p.trim_end_matches("/mcp").parse().ok()).unwrap();
    let mut again = warden_testkit::harness::warden_config(std::path::Path::new(&cfg), port);
    sigterm(again.child.id());
    let _ = again.child.wait();
    if again.log().contains("storing the journal's records") {
        eprintln!("the restart stored journaled records the killed Warden had acknowledged");
    }

    let (ok, out) = verify(&cfg, &[]);
    assert!(ok, "{out}");
    let recorded: std::collections::HashSet<String> = records(&cfg, &["--kind", "call", "--status", "success"])
        .iter()
        .map(|r| r["request_id"].as_str().unwrap().to_string())
        .collect();
    let missing: Vec<&String> = answered.iter().filter(|id| !recorded.contains(*id)).collect();
    assert!(
        missing.is_empty(),
        "{} answered call(s) without a record, e.g. {:?}",
        missing.len(),
        &missing[..missing.len().min(5)]
    );
    cfg
}

/// `[[audit.forward]]`: with the SIEM and the collector down, records wait in the disk spool,
/// through a SIGKILL and a restart; once they are up, every stored record arrives (JSONL and
/// OTLP logs), with the secret header sent and never logged.
#[tokio::test]
async fn forwarded_copies_survive_a_down_destination_and_a_restart() {
    use std::sync::atomic::Ordering;
    let siem = warden_testkit::harness::collector(503).await;
    let otel = warden_testkit::harness::collector(503).await;
    let spools = warden_testkit::harness::tempdir("spools");
    let fx = fixture_stdio_upstream("fx", Some(""), "");
    let forward = format!(
        "[[audit.forward]]\nname = \"siem\"\nurl = \"{}/ingest\"\nflush_ms = 50\nspool = {:?}\n\
         secret_headers = {{ Authorization = {{ env = \"WARDEN_TEST_SIEM_TOKEN\", prefix = \"Bearer \" }} }}\n\
         [[audit.forward]]\nname = \"otel\"\nformat = \"otlp\"\nurl = \"{}/v1/logs\"\nflush_ms = 50\nspool = {:?}\n",
        siem.url,
        spools.join("siem.spool").display().to_string(),
        otel.url,
        spools.join("otel.spool").display().to_string()
    );
    let token = "siem-token-5f1d2c";
    let mut w =
        warden_testkit::harness::warden_with_env("", &format!("{fx}{forward}"), &[("WARDEN_TEST_SIEM_TOKEN", token)]);
    let cfg = w.dir.join("warden.toml");
    let port: u16 = w.url.trim_start_matches("http://127.0.0.1:").split('/').next().unwrap().parse().unwrap();
    let mut c = Client::new(&w.url);
    c.initialize().await;
    for i in 0..5 {
        c.tool(10 + i, "echo", json!({"text": "before"})).await;
    }
    // the destinations are down: tried, refused, nothing delivered
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    while siem.refused.load(Ordering::SeqCst) == 0 || otel.refused.load(Ordering::SeqCst) == 0 {
        assert!(std::time::Instant::now() < deadline, "no delivery was attempted");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    w.child.kill().unwrap();
    let _ = w.child.wait();
    let log = w.log();

    // restart on the same config, still down, then bring both up
    std::env::set_var("WARDEN_TEST_SIEM_TOKEN", token);
    let mut w = warden_testkit::harness::warden_config(&cfg, port);
    let mut c = Client::new(&w.url);
    c.initialize().await;
    for i in 0..3 {
        c.tool(20 + i, "echo", json!({"text": "after"})).await;
    }
    siem.status.store(200, Ordering::SeqCst);
    otel.status.store(200, Ordering::SeqCst);
    sigterm(w.child.id());
    let _ = w.child.wait();
    let stored = records(&cfg.display().to_string(), &[]);
    let want: std::collections::BTreeSet<u64> = stored.iter().map(|r| r["seq"].as_u64().unwrap()).collect();
    assert!(want.len() > 16, "{} records", want.len());

    // a third run delivers whatever the second could not before it stopped
    let mut w = warden_testkit::harness::warden_config(&cfg, port);
    let seqs = |c: &warden_testkit::harness::Collector, otlp: bool| -> std::collections::BTreeSet<u64> {
        let mut out = std::collections::BTreeSet::new();
        for r in c.accepted.lock().iter() {
            let lines: Vec<String> = if otlp {
                let v: Value = serde_json::from_slice(&r.body).unwrap();
                let recs = v["resourceLogs"][0]["scopeLogs"][0]["logRecords"].as_array().unwrap().clone();
                recs.iter().map(|l| l["body"]["stringValue"].as_str().unwrap().to_string()).collect()
            } else {
                String::from_utf8(r.body.clone()).unwrap().lines().map(str::to_string).collect()
            };
            for l in lines {
                let v: Value = serde_json::from_str(&l).unwrap();
                if v["chain"] == "warden" {
                    out.insert(v["seq"].as_u64().unwrap());
                }
            }
        }
        out
    };
    let deadline = std::time::Instant::now() + Duration::from_secs(20);
    while !(seqs(&siem, false).is_superset(&want) && seqs(&otel, true).is_superset(&want)) {
        assert!(
            std::time::Instant::now() < deadline,
            "not all delivered: siem missing {:?}, otel missing {:?}",
            want.difference(&seqs(&siem, false)).collect::<Vec<_>>(),
            want.difference(&seqs(&otel, true)).collect::<Vec<_>>()
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    sigterm(w.child.id());
    let _ = w.child.wait();
    // the SIEM got its token and the right content type; OTLP is a logs export with attributes
    let first = siem.accepted.lock()[0].clone();
    assert_eq!(first.path, "/ingest");
    assert_eq!(first.headers["authorization"], format!("Bearer {token}"));
    assert_eq!(first.headers["content-type"], "application/x-ndjson");
    let o = otel.accepted.lock()[0].clone();
    assert_eq!(o.path, "/v1/logs");
    let v: Value = serde_json::from_slice(&o.body).unwrap();
    let rec = &v["resourceLogs"][0]["scopeLogs"][0]["logRecords"][0];
    assert!(rec["timeUnixNano"].as_str().unwrap().parse::<u128>().unwrap() > 1_600_000_000_000_000_000, "{rec}");
    assert!(rec["attributes"].to_string().contains("warden.kind"), "{rec}");
    assert_eq!(v["resourceLogs"][0]["resource"]["attributes"][0]["value"]["stringValue"], "warden");
    assert!(!log.contains(token) && !w.log().contains(token), "the token reached a log");
}

/// Trace context: the client's trace continues through Warden to the upstream (as the
/// upstream span's child), the audit record carries the trace id, and the spans of every stage
/// reach the collector as OTLP.
#[tokio::test]
async fn trace_context_flows_to_the_upstream_the_trail_and_the_collector() {
    let otel = warden_testkit::harness::collector(200).await;
    let fx = fixture_stdio_upstream("fx", Some(""), "");
    let w = warden("", &format!("{fx}[telemetry]\ntraces_url = \"{}/v1/traces\"\n", otel.url));
    let cfg = w.dir.join("warden.toml").display().to_string();
    let mut c = Client::new(&w.url);
    c.initialize().await;
    let trace = "4bf92f3577b34da6a3ce929d0e0e4736";
    let client_span = "00f067aa0ba902b7";
    let params = json!({"name": "trace_context", "arguments": {},
                        "_meta": {"traceparent": format!("00-{trace}-{client_span}-01")}});
    let r = c.call(2, "tools/call", params).await;
    let seen = r["result"]["content"][0]["text"].as_str().unwrap().to_string();
    let (t, parent, _) = warden_gateway::trace::parse_traceparent(&seen).expect("a valid traceparent upstream");
    let hex = |b: &[u8]| b.iter().map(|x| format!("{x:02x}")).collect::<String>();
    assert_eq!(hex(&t), trace, "{seen}");
    assert_ne!(hex(&parent), client_span, "the upstream's parent is Warden's span");
    // a request without context starts its own trace
    let r = c.tool(3, "trace_context", json!({})).await;
    let other = r["result"]["content"][0]["text"].as_str().unwrap();
    assert!(warden_gateway::trace::parse_traceparent(other).is_some() && !other.contains(trace), "{other}");

    let rec = records(&cfg, &["--kind", "call", "--tool", "trace_context"]);
    assert_eq!(rec[0]["trace_id"], trace, "{rec:?}");

    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    let spans = loop {
        let spans: Vec<Value> = otel
            .accepted
            .lock()
            .iter()
            .flat_map(|r| {
                let v: Value = serde_json::from_slice(&r.body).unwrap();
                v["resourceSpans"][0]["scopeSpans"][0]["spans"].as_array().cloned().unwrap_or_default()
            })
            .filter(|s| s["traceId"] == trace)
            .collect();
        if !spans.is_empty() || std::time::Instant::now() > deadline {
            break spans;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    let names: Vec<&str> = spans.iter().filter_map(|s| s["name"].as_str()).collect();
    assert!(!names.is_empty(), "no spans ({} posts): {}", otel.accepted.lock().len(), w.log());
    for n in [
        "tools/call trace_context",
        "warden.route",
        "warden.policy",
        "warden.arguments",
        "warden.upstream",
        "warden.response_policy",
        "warden.audit",
    ] {
        assert!(names.contains(&n), "{n} missing from {names:?}");
    }
    let root = spans.iter().find(|s| s["name"] == "tools/call trace_context").unwrap();
    assert_eq!(root["parentSpanId"], client_span);
    let upstream = spans.iter().find(|s| s["name"] == "warden.upstream").unwrap();
    assert_eq!(upstream["spanId"], hex(&parent), "the upstream saw the upstream span as its parent");
    assert_eq!(upstream["parentSpanId"], root["spanId"]);
}

/// A call the upstream received leaves a record however it ends: its attempt is recorded before
/// the upstream gets it, and a request that ends before its answer (the client cancels it, or
/// deletes its session) is recorded as cancelled.
#[tokio::test]
async fn calls_aborted_by_the_client_are_still_recorded() {
    let fx = fixture_stdio_upstream("fx", Some(""), "");
    let w = warden("", &format!("{fx}\n[audit]\ngroup_commit_ms = 1\n"));
    let cfg = w.dir.join("warden.toml").display().to_string();
    let mut c = Client::new(&w.url);
    c.initialize().await;
    // Cancelled by the client, after the upstream got it.
    let slow = tokio::spawn({
        let c = Client { session: c.session.clone(), ..Client::new(&w.url) };
        async move {
            c.post(&json!({"jsonrpc": "2.0", "id": "slow-1", "method": "tools/call", "params": {"name": "slow", "arguments": {"ms": 10000}}})).await
        }
    });
    tokio::time::sleep(Duration::from_millis(400)).await;
    let cancel = json!({"jsonrpc": "2.0", "method": "notifications/cancelled", "params": {"requestId": "slow-1"}});
    assert_eq!(c.post(&cancel).await.status, 202);
    // Ended by the session's DELETE.
    let slow2 = tokio::spawn({
        let c = Client { session: c.session.clone(), ..Client::new(&w.url) };
        async move {
            c.post(&json!({"jsonrpc": "2.0", "id": "slow-2", "method": "tools/call", "params": {"name": "slow", "arguments": {"ms": 10000}}})).await
        }
    });
    tokio::time::sleep(Duration::from_millis(400)).await;
    assert_eq!(c.request(reqwest::Method::DELETE).send().await.unwrap().status().as_u16(), 200);
    let _ = tokio::time::timeout(Duration::from_secs(5), slow).await;
    let _ = tokio::time::timeout(Duration::from_secs(5), slow2).await;
    tokio::time::sleep(Duration::from_millis(500)).await;
    for rid in ["slow-1", "slow-2"] {
        let mine: Vec<Value> = records(&cfg, &[]).into_iter().filter(|r| r["request_id"] == rid).collect();
        let attempt =
            mine.iter().find(|r| r["kind"] == "attempt").unwrap_or_else(|| panic!("{rid}: no attempt: {mine:?}"));
        assert_eq!(
            (attempt["status"].as_str(), attempt["name"].as_str()),
            (Some("attempted"), Some("slow")),
            "{attempt}"
        );
        assert!(attempt["args_digest"].is_string(), "{attempt}");
        let outcome =
            mine.iter().find(|r| r["kind"] == "call").unwrap_or_else(|| panic!("{rid}: no outcome: {mine:?}"));
        assert_eq!(outcome["status"], "cancelled", "{outcome}");
    }
    let (ok, out) = verify(&cfg, &[]);
    assert!(ok, "{out}");
}

/// The supply chain of a stdio upstream: `warden check` prints the program's digest to pin; a
/// pinned program runs; once it changes on disk it is not started (the check fails, the
/// connect is refused and audited, callers get an error), and an unpinned `npx` package is
/// named (refused outright with `sandbox.strict`).
#[tokio::test]
async fn a_pinned_program_that_changes_is_not_started() {
    let dir = warden_testkit::harness::tempdir("supply-chain");
    let program = dir.join("fixture-copy");
    std::fs::copy(bin("warden-fixture"), &program).unwrap();
    let port = warden_testkit::harness::free_port();
    let cfg = dir.join("warden.toml");
    let write = |pin: &str| {
        let text = format!(
            "[listen]\naddr = \"127.0.0.1:{port}\"\n[[upstream]]\nname = \"fx\"\nnamespace = \"\"\ntransport = \"stdio\"\n\
             command = {:?}\nargs = [\"--stdio\"]\n{pin}\n[upstream.sandbox]\nread_only = [{:?}]\n[[rule]]\nid = \"all\"\ntools = [\"*\"]\n",
            program.display().to_string(),
            dir.display().to_string()
        );
        std::fs::write(&cfg, text).unwrap();
    };
    let check = || {
        let o = Command::new(bin("warden")).args(["check", "--config"]).arg(&cfg).output().unwrap();
        (o.status.success(), format!("{}{}", String::from_utf8_lossy(&o.stdout), String::from_utf8_lossy(&o.stderr)))
    };
    write("");
    let (ok, out) = check();
    assert!(ok, "{out}");
    let digest =
        out.split("add sha256 = \"").nth(1).and_then(|r| r.split('"').next()).expect("the digest to pin").to_string();
    write(&format!("sha256 = {digest:?}"));
    assert!(check().1.contains("(pinned)"));
    {
        let w = warden_testkit::harness::warden_config(&cfg, port);
        let mut c = Client::new(&w.url);
        c.initialize().await;
        assert_eq!(c.tool(1, "echo", json!({"text": "pinned"})).await["result"]["content"][0]["text"], "pinned");
    }
    // The program changes on disk (an update, or worse).
    let mut bytes = std::fs::read(&program).unwrap();
    bytes.extend_from_slice(b"\0tampered");
    std::fs::remove_file(&program).unwrap();
    std::fs::write(&program, bytes).unwrap();
    std::fs::set_permissions(&program, std::os::unix::fs::PermissionsExt::from_mode(0o755)).unwrap();
    let (ok, out) = check();
    assert!(!ok && out.contains("it changed"), "{out}");
    let w = warden_testkit::harness::warden_config(&cfg, port);
    let mut c = Client::new(&w.url);
    c.initialize().await;
    let r = c.tool(2, "echo", json!({"text": "x"})).await;
    assert!(r.get("error").is_some(), "not run: {r}");
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert!(w.log().contains("program digest mismatch"), "{}", w.log());
    let refused = records(&cfg.display().to_string(), &["--kind", "supply_chain"]);
    assert!(!refused.is_empty() && refused[0]["status"] == "blocked_by_guard", "{refused:?}");
    drop(w);
    // An unpinned package launcher.
    let npx = "[listen]\naddr = \"127.0.0.1:0\"\n[[upstream]]\nname = \"ev\"\ntransport = \"stdio\"\ncommand = \"npx\"\nargs = [\"-y\", \"@modelcontextprotocol/server-everything\"]\n";
    std::fs::write(&cfg, npx).unwrap();
    let (ok, out) = check();
    assert!(
        ok && out.contains("warning: upstream ev: `npx @modelcontextprotocol/server-everything` runs whatever version"),
        "{out}"
    );
    std::fs::write(&cfg, format!("{npx}[upstream.sandbox]\nstrict = true\n")).unwrap();
    let (ok, out) = check();
    assert!(!ok && out.contains("refused: sandbox.strict"), "{out}");
    // The copy of the program is hundreds of megabytes in a debug build: not left behind.
    let _ = std::fs::remove_dir_all(&dir);
}

/// Issue 20, finding 9: failing to authenticate costs the trail one record per address and
/// window, not one per request, and a client-chosen id cannot make a record megabytes long;
/// every failure is still counted (in the records and the metrics).
#[tokio::test]
async fn auth_failures_are_aggregated_and_record_fields_capped() {
    let (key, entry) = warden_gateway::auth::apikey::generate("ann", &["mcp".into()], None, None);
    let mut w = warden(
        "max_body_bytes = 8388608",
        &format!("{}\n[auth]\nrequired_scopes = [\"mcp\"]\n{entry}\n", fixture_stdio_upstream("fx", Some(""), "")),
    );
    let cfg = w.dir.join("warden.toml").display().to_string();
    let http = reqwest::Client::new();
    for i in 0..300 {
        let mut r = http.post(&w.url).header("content-type", "application/json").body("{}");
        if i % 3 == 0 {
            r = r.bearer_auth("wdk_nope_nope");
        }
        assert_eq!(r.send().await.unwrap().status(), 401);
    }
    let mut c = Client::new(&w.url);
    c.bearer = Some(key);
    c.initialize().await;
    let huge = "7".repeat(3 << 20);
    let body = format!(
        r#"{{"jsonrpc":"2.0","id":"{huge}","method":"tools/call","params":{{"name":"echo","arguments":{{"text":"x"}}}}}}"#
    );
    let r = c
        .request(reqwest::Method::POST)
        .header("content-type", "application/json")
        .header("accept", "application/json, text/event-stream")
        .body(body)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    // Before the window ends: one record, for the first failure (written by the audit thread:
    // on a loaded machine it may take a moment to be on disk).
    let mut early = records(&cfg, &["--kind", "auth_failure"]);
    for _ in 0..50 {
        if !early.is_empty() {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
        early = records(&cfg, &["--kind", "auth_failure"]);
    }
    assert_eq!(early.len(), 1, "{early:?}");
    sigterm(w.child.id());
    let _ = w.child.wait();
    let failures = records(&cfg, &["--kind", "auth_failure"]);
    assert!(failures.len() <= 3, "one at once and one per reason at the end: {failures:?}");
    let counted: u64 = failures.iter().map(|r| r["count"].as_u64().unwrap_or(1)).sum();
    assert_eq!(counted, 300, "{failures:?}");
    let calls = records(&cfg, &["--kind", "call"]);
    let id = calls.iter().find_map(|r| r["request_id"].as_str().filter(|i| i.starts_with("777"))).unwrap();
    assert!(id.len() < 600 && id.ends_with("bytes not recorded]"), "{} bytes", id.len());
    let (ok, out) = verify(&cfg, &[]);
    assert!(ok, "{out}");
}

/// Issue 24: a running Warden rotates its trail into segments and removes the oldest by policy;
/// `warden audit verify` checks the whole set (from the signed anchor), `query` reads every
/// segment, and a segment removed by hand is reported.
#[tokio::test]
async fn a_rotated_trail_with_retention_verifies_and_reads_across_segments() {
    let fx = fixture_stdio_upstream("fx", Some(""), "");
    let section = "[audit]\npath = \"trail.jsonl\"\n[audit.rotate]\nmax_mb = 1\n[audit.retention]\nkeep_gb = 0.003\n";
    let mut w = warden("", &format!("{fx}{section}"));
    let cfg = w.dir.join("warden.toml").display().to_string();
    let mut c = Client::new(&w.url);
    c.initialize().await;
    let text = "y".repeat(600);
    for i in 0..6000 {
        let r = c.tool(i, "echo", json!({"text": text})).await;
        assert_eq!(r["result"]["content"][0]["text"].as_str().map(str::len), Some(600), "{r}");
    }
    sigterm(w.child.id());
    let _ = w.child.wait();
    let segments: Vec<String> = std::fs::read_dir(&w.dir)
        .unwrap()
        .flatten()
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .filter(|n| n.starts_with("trail.") && n.ends_with(".jsonl") && n != "trail.jsonl")
        .collect();
    assert!(segments.len() >= 2, "{segments:?}");
    assert!(!segments.iter().any(|s| s == "trail.000001.jsonl"), "the oldest removed by policy: {segments:?}");
    let (ok, out) = verify(&cfg, &[]);
    assert!(ok, "{out}");
    assert!(out.contains("removed by the retention policy"), "{out}");
    let removals = records(&cfg, &["--kind", "audit"]);
    assert!(
        removals.iter().any(|r| r["detail"] == "retention" && r["anchor"]["through"].as_u64().is_some()),
        "{removals:?}"
    );
    let calls = records(&cfg, &["--kind", "call"]);
    assert!(calls.len() > 1000 && calls.len() < 6000, "the kept calls, across segments: {}", calls.len());
    // An export of the second half, for an auditor: verifies on its own.
    let out = w.dir.join("export.jsonl").display().to_string();
    let (since, key) = (calls[calls.len() / 2]["ts"].as_str().unwrap().to_string(), public_key(&cfg));
    let (ok, text) = audit(&["export", "--config", &cfg, "--public-key", &key, "--since", &since, "--out", &out]);
    assert!(ok && text.contains("exported to"), "{text}");
    let (ok, text) = audit(&["verify", "--log", &out, "--exported", "--public-key", &key]);
    assert!(ok, "{text}");
    let mut oldest: Vec<&String> = segments.iter().collect();
    oldest.sort();
    std::fs::remove_file(w.dir.join(oldest[0])).unwrap();
    let (ok, out) = verify(&cfg, &[]);
    assert!(!ok && out.contains("the records before it were deleted"), "{out}");
}

/// Issue 24: a simulated full disk — the trail on a 16 MiB tmpfs mounted in a mount namespace of
/// Warden's own — is reported (`/readyz` 503 with the reason, `warden_audit_disk_low` 1) while
/// every call is still answered; at the limit calls fail closed, and Warden stays up.
#[tokio::test]
async fn a_filling_disk_is_reported_before_any_call_is_refused() {
    use warden_testkit::harness::{free_port, spawn_logged, tempdir};
    let (dir, port, metrics) = (tempdir("disk-full"), free_port(), free_port());
    std::fs::create_dir_all(dir.join("trail")).unwrap();
    let fx = fixture_stdio_upstream("fx", Some(""), "[upstream.sandbox]\nenabled = false\n");
    let cfg = format!(
        "[listen]\naddr = \"127.0.0.1:{port}\"\n{fx}\n[[rule]]\nid = \"all\"\ntools = [\"*\"]\n\
         [audit]\npath = \"trail/audit.jsonl\"\nmin_free_mb = 12\n[telemetry]\nmetrics_addr = \"127.0.0.1:{metrics}\"\n"
    );
    std::fs::write(dir.join("warden.toml"), cfg).unwrap();
    let mut cmd = Command::new("unshare");
    cmd.args([
        "-rm",
        "sh",
        "-c",
        "mount -t tmpfs -o size=16m tmpfs \"$0/trail\" && exec \"$1\" serve --config \"$0/warden.toml\"",
    ])
    .arg(&dir)
    .arg(bin("warden"))
    .env("RUST_LOG", "info");
    let w = spawn_logged(cmd, dir.clone(), port);
    let base = w.url.trim_end_matches("/mcp").to_string();
    let http = reqwest::Client::new();
    let ready = || async { http.get(format!("{base}/readyz")).send().await.unwrap() };
    let t = std::time::Instant::now();
    while ready().await.status() != 200 {
        assert!(t.elapsed() < Duration::from_secs(15), "never ready: {}", w.log());
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let mut c = Client::new(&w.url);
    c.initialize().await;
    let text = "z".repeat(1000);
    let answered = |r: &Value| r["result"]["content"][0]["text"].as_str().is_some_and(|t| t.len() == 1000);
    // Under the watermark (12 of 16 MiB left): reported, while every call is still answered.
    let mut calls = 0;
    let report = loop {
        calls += 1;
        let r = c.tool(calls, "echo", json!({"text": text})).await;
        assert!(answered(&r), "call {calls} refused before the disk was reported low: {r}\n{}", w.log());
        if calls % 25 == 0 {
            let r = ready().await;
            if r.status() == 503 {
                break r.json::<Value>().await.unwrap();
            }
        }
        assert!(calls < 20_000, "never reported low: {}", w.log());
    };
    assert_eq!(report["audit"]["disk"], "low", "{report}");
    assert!(report["audit"]["free_mb"].as_u64().is_some_and(|f| f < 12), "{report}");
    let m = http.get(format!("http://127.0.0.1:{metrics}/metrics")).send().await.unwrap().text().await.unwrap();
    assert!(m.lines().any(|l| l == "warden_audit_disk_low 1"), "{m}");
    assert!(w.log().contains("the trail's disk is low"), "{}", w.log());
    println!("disk reported low after {calls} calls, all answered");
    // At the limit: calls fail closed, none answered unrecorded; Warden stays up.
    let mut refused = None;
    for i in 0..20_000 {
        let r = c.tool(100_000 + i, "echo", json!({"text": text})).await;
        if !answered(&r) {
            println!("the full disk refused call {} after the watermark: {r}", i + 1);
            refused = Some(r);
            break;
        }
    }
    let refused = refused.unwrap_or_else(|| panic!("the full disk never refused a call: {}", w.log()));
    assert!(refused.get("error").is_some() || refused["result"]["isError"] == true, "{refused}");
    let h = http.get(format!("{base}/healthz")).send().await.unwrap();
    assert_eq!(h.status(), 200);
}
