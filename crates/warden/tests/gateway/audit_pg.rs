//! Issue 24: a PostgreSQL trail kept in monthly partitions. A schema-1 trail (one plain table)
//! is moved into partitions when a Warden first opens it; retention drops a whole old month only
//! after signed anchors for every chain in it (a Warden gone for good included), and refuses
//! while a record in it is missing or rows of this month were moved into it; `warden audit
//! verify --url` checks the trail across partitions, from those anchors, and still reports a cut
//! made by anyone else.

use crate::audit::{audit, public_key};
use serde_json::{json, Value};
use std::time::{Duration, Instant};
use warden_testkit::harness::{fixture_stdio_upstream, postgres_server, warden, warden_config, Client, Proc};

/// The table of schema 1 (before partitions), as earlier Wardens made it.
const SCHEMA_V1: &str = "
CREATE TABLE audit_events (id bigserial PRIMARY KEY, chain text NOT NULL, seq bigint NOT NULL, ts text NOT NULL,
    kind text NOT NULL, subject text, tenant text, server text, name text, decision text, status text NOT NULL,
    hash text NOT NULL, record text NOT NULL, UNIQUE (chain, seq));
CREATE INDEX audit_events_ts ON audit_events (ts);
CREATE INDEX audit_events_subject ON audit_events (subject, ts);";

async fn echo(w: &Proc, n: i64) {
    let mut c = Client::new(&w.url);
    c.initialize().await;
    for i in 0..n {
        let r = c.tool(i, "echo", json!({"text": "kept"})).await;
        assert_eq!(r["result"]["content"][0]["text"], "kept", "{r}");
    }
}

fn stop(mut w: Proc) {
    let _ = nix::sys::signal::kill(nix::unistd::Pid::from_raw(w.child.id() as i32), nix::sys::signal::Signal::SIGTERM);
    let _ = w.child.wait();
}

/// Start the Warden of `w`'s directory again with its `[audit]` section replaced.
fn restart(dir: &std::path::Path, url: &str, old: &str, new: &str) -> Proc {
    let cfg = dir.join("warden.toml");
    let text = std::fs::read_to_string(&cfg).unwrap();
    assert!(text.contains(old), "{text}");
    std::fs::write(&cfg, text.replace(old, new)).unwrap();
    let port = url.trim_end_matches("/mcp").rsplit(':').next().unwrap().parse().unwrap();
    warden_config(&cfg, port)
}

fn wait_log(w: &Proc, what: &str) {
    let t = Instant::now();
    while !w.log().contains(what) {
        assert!(t.elapsed() < Duration::from_secs(30), "no {what:?} in the log:\n{}", w.log());
        std::thread::sleep(Duration::from_millis(100));
    }
}

#[tokio::test]
async fn a_postgres_trail_drops_old_months_after_signed_anchors_and_verifies_across_partitions() {
    let pg = postgres_server();
    let fx = fixture_stdio_upstream("fx", Some(""), "");
    // A trail of schema 1: chain a's first records, written through a Warden, in the old table.
    let jsonl = "[audit]\npath = \"trail.jsonl\"\ninstance = \"a\"\n";
    let a = warden("", &format!("{fx}{jsonl}"));
    let (dir_a, url_a) = (a.dir.clone(), a.url.clone());
    echo(&a, 20).await;
    stop(a);
    let lines = std::fs::read_to_string(dir_a.join("trail.jsonl")).unwrap();
    let migrated = pg.sql(|db| {
        db.batch_execute(SCHEMA_V1).unwrap();
        let mut last = 0i64;
        for l in lines.lines() {
            let v: Value = serde_json::from_str(l).unwrap();
            let s = |k: &str| v[k].as_str().map(str::to_string);
            last = v["seq"].as_i64().unwrap();
            db.execute(
                "INSERT INTO audit_events (chain, seq, ts, kind, subject, tenant, server, name, decision, status, hash, record) \
                 VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12)",
                &[&s("chain"), &last, &s("ts"), &s("kind"), &s("subject"), &s("tenant"), &s("server"), &s("name"),
                  &s("decision"), &s("status"), &s("hash"), &l],
            )
            .unwrap();
        }
        last
    });
    // The same Warden on PostgreSQL: it moves the table into partitions and continues chain a.
    let on_pg =
        format!("[audit]\nurl = {:?}\ninstance = \"a\"\ncheckpoint_file = \"trail.jsonl.checkpoints\"\n", pg.url);
    let a = restart(&dir_a, &url_a, jsonl, &on_pg);
    echo(&a, 20).await;
    stop(a);
    let (kind, heads): (i8, i64) = pg.sql(|db| {
        let r = db
            .query_one(
                "SELECT (SELECT relkind FROM pg_class WHERE oid = 'audit_events'::regclass)::\"char\", (SELECT count(*) FROM audit_heads)",
                &[],
            )
            .unwrap();
        (r.get(0), r.get(1))
    });
    assert_eq!((kind as u8 as char, heads), ('p', 1), "partitioned, with the head of chain a");
    let continued =
        pg.sql(|db| db.query_one("SELECT seq FROM audit_heads WHERE chain = 'a'", &[]).unwrap().get::<_, i64>(0));
    assert!(continued > migrated + 20, "chain a continued from the migrated head: {migrated} → {continued}");
    // Chains of two Wardens from three months ago, as they wrote them then (their records'
    // own times in that month, stored in that month's partition): "old" ran again this month,
    // "gone" never did (a pod since replaced).
    let signing = warden_audit::signing::SigningKey::load(&dir_a.join("warden-audit.key")).unwrap();
    let (old, then) = pg.sql(|db| {
        let r = db
            .query_one(
                "SELECT extract(year FROM t)::int4, extract(month FROM t)::int4 FROM (SELECT (now() AT TIME ZONE 'UTC') - interval '3 months' AS t) x",
                &[],
            )
            .unwrap();
        let (y, m): (i32, i32) = (r.get(0), r.get(1));
        let (ny, nm) = if m == 12 { (y + 1, 1) } else { (y, m + 1) };
        let name = format!("audit_events_{y:04}_{m:02}");
        db.batch_execute(&format!(
            "CREATE TABLE {name} PARTITION OF audit_events FOR VALUES FROM ('{y:04}-{m:02}-01 00:00:00+00') TO ('{ny:04}-{nm:02}-01 00:00:00+00')"
        ))
        .unwrap();
        (name, humantime::parse_rfc3339(&format!("{y:04}-{m:02}-15T10:00:00Z")).unwrap())
    });
    let craft_dir = dir_a.join("crafted");
    std::fs::create_dir_all(&craft_dir).unwrap();
    let (cp_old, cp_gone) = (craft_dir.join("old.checkpoints"), craft_dir.join("gone.checkpoints"));
    let mut rows = Vec::new();
    let (seq, hash) = session(&signing, "old", (0, warden_audit::event::GENESIS.into()), then, 10, &cp_old, &mut rows);
    let old_end = seq;
    session(&signing, "old", (seq, hash), std::time::SystemTime::now(), 5, &cp_old, &mut rows);
    session(&signing, "gone", (0, warden_audit::event::GENESIS.into()), then, 8, &cp_gone, &mut rows);
    let stored_then = format!("{}", humantime::format_rfc3339(then));
    pg.sql(move |db| {
        for (line, ev) in &rows {
            let old_month = humantime::parse_rfc3339(&ev.ts).is_ok_and(|t| t == then);
            let at = if old_month { stored_then.clone() } else { humantime::format_rfc3339(std::time::SystemTime::now()).to_string() };
            db.execute(
                "INSERT INTO audit_events (chain, seq, ts, kind, subject, tenant, server, name, decision, status, hash, record, stored_at) \
                 VALUES ($1, $2, $3, $4, NULL, NULL, NULL, NULL, NULL, $5, $6, $7, $8::text::timestamptz)",
                &[&ev.chain, &(ev.seq as i64), &ev.ts, &ev.kind, &ev.status, &ev.hash, line, &at],
            )
            .unwrap();
            db.execute(
                "INSERT INTO audit_heads (chain, seq, hash) VALUES ($1, $2, $3) ON CONFLICT (chain) DO UPDATE SET seq = EXCLUDED.seq, hash = EXCLUDED.hash",
                &[&ev.chain, &(ev.seq as i64), &ev.hash],
            )
            .unwrap();
        }
    });
    let cfg = dir_a.join("warden.toml").display().to_string();
    let key = public_key(&cfg);
    let cp_a = dir_a.join("trail.jsonl.checkpoints").display().to_string();
    let (cp_old, cp_gone) = (cp_old.display().to_string(), cp_gone.display().to_string());
    let verify = || {
        audit(&[
            "verify",
            "--url",
            &pg.url,
            "--public-key",
            &key,
            "--checkpoints",
            &cp_a,
            "--checkpoints",
            &cp_old,
            "--checkpoints",
            &cp_gone,
        ])
    };
    let (ok, out) = verify();
    assert!(ok, "the migrated trail, with the chains of three months ago, verifies: {out}");
    let exists = |name: &str| {
        let name = name.to_string();
        pg.sql(move |db| db.query_one("SELECT to_regclass($1) IS NOT NULL", &[&name]).unwrap().get::<_, bool>(0))
    };
    let retention = format!("{on_pg}[audit.retention]\nkeep_days = 30\n");
    let port: u16 = url_a.trim_end_matches("/mcp").rsplit(':').next().unwrap().parse().unwrap();

    // Review finding: this month's rows of chain a moved into the old month (by their
    // `stored_at`) are not old: no cut is signed, nothing is dropped.
    let moved = pg.sql(|db| {
        db.execute("UPDATE audit_events SET stored_at = now() - interval '3 months' WHERE chain = 'a'", &[]).unwrap()
    });
    assert!(moved > 40, "{moved}");
    let a = restart(&dir_a, &url_a, &on_pg, &retention);
    wait_log(&a, "audit retention refused");
    assert!(a.log().contains("after this month: moved here, not old"), "{}", a.log());
    assert!(exists(&old), "nothing dropped");
    stop(a);
    pg.sql(|db| db.execute("UPDATE audit_events SET stored_at = now() WHERE chain = 'a'", &[]).unwrap());

    // A record missing in the old month: retention refuses, and drops nothing.
    pg.sql(|db| {
        db.batch_execute(
            "CREATE TABLE taken AS SELECT * FROM audit_events WHERE chain = 'gone' AND seq = 3;
             DELETE FROM audit_events WHERE chain = 'gone' AND seq = 3;",
        )
        .unwrap()
    });
    let a = warden_config(&dir_a.join("warden.toml"), port);
    wait_log(&a, "audit retention refused");
    assert!(a.log().contains("chain \"gone\": seq 4 does not follow seq 2"), "{}", a.log());
    assert!(exists(&old), "nothing dropped");
    stop(a);
    pg.sql(|db| db.batch_execute("INSERT INTO audit_events SELECT * FROM taken; DROP TABLE taken").unwrap());

    // Whole again: the old month is dropped after a signed anchor for each chain in it.
    let a = warden_config(&dir_a.join("warden.toml"), port);
    wait_log(&a, "partition dropped");
    echo(&a, 5).await;
    stop(a);
    assert!(!exists(&old), "{old} dropped");
    let (ok, out) = verify();
    assert!(ok, "{out}");
    assert!(
        out.contains(&format!("chain old: starts at seq {}", old_end + 1))
            && out.contains("removed by the retention policy"),
        "{out}"
    );
    assert!(!out.contains("chain gone:"), "chain gone removed whole: {out}");
    assert!(out.contains("chain a:"), "{out}");
    let (ok, anchors) = audit(&["query", "--url", &pg.url, "--kind", "audit", "--limit", "0"]);
    assert!(ok, "{anchors}");
    let anchors: Vec<Value> = anchors
        .lines()
        .filter_map(|l| serde_json::from_str::<Value>(l).ok())
        .filter(|r| r["anchor"].is_object())
        .collect();
    let of = |c: &str| {
        anchors.iter().find(|r| r["anchor"]["chain"] == c).unwrap_or_else(|| panic!("no anchor of {c}: {anchors:?}"))
    };
    assert_eq!(of("old")["anchor"]["through"].as_u64(), Some(old_end));
    assert_eq!(of("gone")["anchor"]["removed"][0], format!("public.{old}"));
    assert!(anchors.iter().all(|r| r["anchor"]["chain"] != "a"), "chain a had nothing in the old month: {anchors:?}");
    println!("dropped {old} (chains old and gone) after signed anchors; the rest verifies");

    // The oldest kept record of chain old deleted by hand: not the policy's doing.
    pg.sql(|db| {
        db.execute(
            "DELETE FROM audit_events WHERE chain = 'old' AND seq = (SELECT min(seq) FROM audit_events WHERE chain = 'old')",
            &[],
        )
        .unwrap()
    });
    let (ok, out) = verify();
    assert!(!ok && out.contains("the records before it were deleted"), "{out}");
}

/// One session of a Warden as it writes it: a start checkpoint over `(seq, hash)`, `calls`
/// call records, a close checkpoint, all at time `at`; each stored line with its event is added
/// to `rows`, the checkpoints to the file `cps`. The chain's new end.
fn session(
    key: &warden_audit::signing::SigningKey,
    chain: &str,
    (mut seq, mut hash): (u64, String),
    at: std::time::SystemTime,
    calls: usize,
    cps: &std::path::Path,
    rows: &mut Vec<(String, warden_audit::Event)>,
) -> (u64, String) {
    use std::io::Write;
    let ts = humantime::format_rfc3339_micros(at).to_string();
    let mut file = std::fs::OpenOptions::new().create(true).append(true).open(cps).unwrap();
    for i in 0..calls + 2 {
        let mut e = if i == 0 || i == calls + 1 {
            let phase = if i == 0 { "start" } else { "close" };
            let mut e = warden_audit::Event::new("checkpoint", "success");
            e.checkpoint = Some(warden_audit::Checkpoint {
                dropped: 0,
                hash: hash.clone(),
                key: key.public_key(),
                phase: Some(phase.into()),
                seq,
                sig: key.sign(&warden_audit::Checkpoint::payload(chain, seq, &hash, 0, Some(phase))),
            });
            e
        } else {
            let mut e = warden_audit::Event::new("call", "success");
            e.request_id = Some(i.to_string());
            e
        };
        e.ts = ts.clone();
        seq += 1;
        let line = e.seal(chain, seq, &hash);
        hash = e.hash.clone().unwrap();
        if e.checkpoint.is_some() {
            writeln!(file, "{line}").unwrap();
        }
        rows.push((line, e));
    }
    (seq, hash)
}
