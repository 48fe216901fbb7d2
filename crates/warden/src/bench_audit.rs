//! `warden bench --audit`: audit throughput to each sink (events/s, one writer thread, group
//! commit), and the cost a call pays on the call path to be recorded (building the event,
//! argument digest and redaction, metrics, enqueue), in process.

use std::time::{Duration, Instant};
use warden_audit::{Event, Fsync, OnFull, Recorder, Settings, Store};

fn call_event(i: u64) -> Event {
    let mut e = Event::new("call", "success");
    e.method = Some("tools/call".into());
    e.request_id = Some(i.to_string());
    e.session = Some("0123456789abcdef".into());
    e.subject = Some("alice@example.org".into());
    e.tenant = Some("acme".into());
    e.client_id = Some("claude-desktop".into());
    e.client_addr = Some("10.1.2.3".into());
    e.server = Some("files".into());
    e.capability = Some("tool".into());
    e.name = Some("read_file".into());
    e.decision = Some("allowed".into());
    e.rule = Some("read-only-files".into());
    e.latency_us = Some(1234);
    e.result_bytes = Some(4096);
    // As `[audit] arguments = "redacted"` records a small call's arguments, with their digest.
    let args = serde_json::json!({"path": "/srv/data/reports/2026/q3.csv", "max_bytes": 65536, "encoding": "utf-8"});
    e.args_digest = Some(warden_audit::event::digest(&args));
    e.args = Some(args);
    e.trace_id = Some("4bf92f3577b34da6a3ce929d0e0e4736".into());
    e
}

fn settings(path: &std::path::Path) -> Settings {
    Settings {
        chain: "bench".into(),
        capacity: 65536,
        on_full: OnFull::Reject,
        max_batch: 4096,
        group_commit: Duration::ZERO,
        checkpoint_every: 10_000,
        checkpoint_interval: Duration::from_secs(10),
        checkpoint_file: Some(warden_audit::checkpoint_path(path)),
        spools: Vec::new(),
        journal: None,
        journal_acks: false,
        segments: None,
    }
}

/// Push `n` events as fast as the queue takes them; events/s until the last is stored, and the
/// bytes each took on disk (file trails, once closed).
fn throughput(store: &Store, path: &std::path::Path, fsync: Fsync, n: u64, key_file: &std::path::Path) -> (f64, f64) {
    let _ = std::fs::remove_file(path);
    let _ = std::fs::remove_file(warden_audit::checkpoint_path(path));
    let sink = warden_audit::open_sink(store, fsync).expect("sink");
    let key = warden_audit::signing::SigningKey::load(key_file).expect("key");
    let public = key.public_key();
    let r = Recorder::start(settings(path), sink, Some(key)).expect("recorder");
    let t0 = Instant::now();
    let mut last = None;
    for i in 0..n {
        let mut e = call_event(i);
        loop {
            match r.record(e) {
                Ok(t) => {
                    last = Some(t);
                    break;
                }
                Err(_) => {
                    std::thread::sleep(Duration::from_micros(100));
                    e = call_event(i);
                }
            }
        }
    }
    assert!(r.stored_blocking(last.expect("events"), Duration::from_secs(120)));
    let rate = n as f64 / t0.elapsed().as_secs_f64();
    r.close();
    let cp = warden_audit::checkpoint_path(path);
    let expect = warden_audit::verify::Expect::new(Some(&public), 10_000, 10);
    let v = warden_audit::verify(store, &[cp], expect).expect("verify");
    assert!(v.ok(), "{:?}", v.problems);
    (rate, warden_audit::segments::bytes(path) as f64 / n as f64)
}

pub async fn run(n: usize) -> anyhow::Result<()> {
    let dir = std::env::temp_dir().join(format!("warden-bench-audit-{}", std::process::id()));
    std::fs::create_dir_all(&dir)?;
    let key = dir.join("k.der");
    let _ = std::fs::remove_file(&key);
    warden_audit::signing::SigningKey::generate(&key).map_err(|e| anyhow::anyhow!(e))?;
    let n = n as u64;
    println!("| sink | fsync | events | events/s | bytes/event on disk |");
    println!("|---|---|---:|---:|---:|");
    for (name, file) in [("SQLite (WAL)", "a.db"), ("JSONL", "a.jsonl")] {
        for fsync in [Fsync::Never, Fsync::Batch] {
            let path = dir.join(file);
            let (rate, bytes) = throughput(&Store::File(path.clone()), &path, fsync, n, &key);
            println!("| {name} | {fsync:?} | {n} | {rate:.0} | {bytes:.0} |");
        }
    }
    // PostgreSQL when a server is given (an empty database: the bench writes its own chain).
    if let Ok(url) = std::env::var("WARDEN_BENCH_POSTGRES") {
        let store = Store::Postgres { url, password: None };
        let (rate, _) = tokio::task::block_in_place(|| throughput(&store, &dir.join("pg"), Fsync::Never, n, &key));
        let footprint = tokio::task::block_in_place(|| {
            store.pg().expect("postgres").and_then(|c| warden_audit::pg_schema::footprint(&c))
        });
        let (bytes, rows) = footprint.map_err(|e| anyhow::anyhow!(e))?;
        println!(
            "| PostgreSQL (monthly partitions, unnest batches) | server's | {n} | {rate:.0} | {:.0} |",
            bytes as f64 / rows.max(1) as f64
        );
    }

    // The call path: what `pipeline::handle` does to record one call, timed per call with the
    // writer running (to a SQLite log) on another thread.
    let cfg_text = format!(
        "[[upstream]]\nname = \"files\"\ntransport = \"stdio\"\ncommand = \"x\"\n[audit]\npath = {:?}\nsigning_key = {:?}\nacknowledge = \"queued\"\n",
        dir.join("calls.db").display().to_string(),
        dir.join("calls.key").display().to_string()
    );
    let cfg = warden_gateway::config::Config::parse(&cfg_text, "bench").map_err(|e| anyhow::anyhow!(e.0))?;
    let audit = warden_gateway::audit::Audit::open(&cfg).map_err(|e| anyhow::anyhow!(e))?;
    let args = serde_json::json!({"path": "/srv/data/reports/2026/q3.csv", "max_bytes": 65536, "encoding": "utf-8"});
    let calls = 200_000u64;
    let mut per = Vec::with_capacity(calls as usize);
    {
        for i in 0..calls {
            let t = Instant::now();
            let mut e = call_event(i);
            audit.arguments(&mut e, &args);
            let _ = audit.commit(e).await;
            per.push(t.elapsed());
            if i % 4096 == 0 {
                // Let the writer keep up (the bench is not about a full queue).
                while audit.metrics.audit_queue.get() > 0 || !audit.admits() {
                    audit.refresh_gauges();
                    std::thread::sleep(Duration::from_micros(200));
                }
            }
        }
    }
    audit.close();
    per.sort();
    let pct = |p: f64| per[((per.len() as f64 * p) as usize).min(per.len() - 1)].as_secs_f64() * 1e6;
    let mean = per.iter().map(Duration::as_secs_f64).sum::<f64>() / per.len() as f64 * 1e6;
    println!();
    println!("| recording one call on the call path | mean µs | p50 µs | p99 µs |");
    println!("|---|---:|---:|---:|");
    println!(
        "| build + argument digest and redaction + metrics + enqueue ({calls} calls) | {mean:.2} | {:.2} | {:.2} |",
        pct(0.5),
        pct(0.99)
    );
    let _ = std::fs::remove_dir_all(&dir);
    Ok(())
}
