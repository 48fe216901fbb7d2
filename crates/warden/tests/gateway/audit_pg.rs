//! Issue 24: a PostgreSQL trail kept in monthly partitions. A schema-1 trail (one plain table)
//! is moved into partitions when a Warden first opens it; retention drops a whole old month only
//! after signed anchors for every chain in it (a Warden gone for good included), refuses while a
//! record in it is missing; `warden audit verify --url` checks the trail across partitions, from
//! those anchors, and still reports a cut made by anyone else.

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
    let old_end = pg.sql(|db| {
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
    let key_file = dir_a.join("warden-audit.key").display().to_string();
    // Chain b: a second Warden (a pod since gone), sharing the key.
    let b_section = format!("[audit]\nurl = {:?}\ninstance = \"b\"\nsigning_key = {key_file:?}\n", pg.url);
    let b = warden("", &format!("{fx}{b_section}"));
    let dir_b = b.dir.clone();
    echo(&b, 10).await;
    stop(b);
    let (kind, heads): (i8, i64) = pg.sql(|db| {
        let r = db
            .query_one(
                "SELECT (SELECT relkind FROM pg_class WHERE oid = 'audit_events'::regclass)::\"char\", (SELECT count(*) FROM audit_heads)",
                &[],
            )
            .unwrap();
        (r.get(0), r.get(1))
    });
    assert_eq!((kind as u8 as char, heads), ('p', 2), "partitioned, with the heads of chains a and b");
    let cfg = dir_a.join("warden.toml").display().to_string();
    let key = public_key(&cfg);
    let cp_a = dir_a.join("trail.jsonl.checkpoints").display().to_string();
    let cp_b = dir_b.join("warden-audit.db.checkpoints").display().to_string();
    let verify =
        || audit(&["verify", "--url", &pg.url, "--public-key", &key, "--checkpoints", &cp_a, "--checkpoints", &cp_b]);
    let (ok, out) = verify();
    assert!(ok, "the migrated trail verifies: {out}");

    // Three months pass for chain a's first records and all of b's: they were stored then.
    let (old, rows_moved) = pg.sql(move |db| {
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
        let n = db
            .execute(
                &format!("UPDATE audit_events SET stored_at = '{y:04}-{m:02}-15 00:00:00+00' WHERE (chain = 'a' AND seq <= $1) OR chain = 'b'"),
                &[&old_end],
            )
            .unwrap();
        (name, n)
    });
    assert!(rows_moved > 30, "{rows_moved}");
    let exists = |name: &str| {
        let name = name.to_string();
        pg.sql(move |db| db.query_one("SELECT to_regclass($1) IS NOT NULL", &[&name]).unwrap().get::<_, bool>(0))
    };

    // A record missing in the old month: retention refuses, and drops nothing.
    pg.sql(|db| {
        db.batch_execute(
            "CREATE TABLE taken AS SELECT * FROM audit_events WHERE chain = 'b' AND seq = 3;
             DELETE FROM audit_events WHERE chain = 'b' AND seq = 3;",
        )
        .unwrap()
    });
    let retention = format!("{on_pg}[audit.retention]\nkeep_days = 30\n");
    let a = restart(&dir_a, &url_a, &on_pg, &retention);
    wait_log(&a, "audit retention refused");
    assert!(a.log().contains("chain b: seq 4 does not follow seq 2"), "{}", a.log());
    assert!(exists(&old), "nothing dropped");
    stop(a);
    pg.sql(|db| db.batch_execute("INSERT INTO audit_events SELECT * FROM taken; DROP TABLE taken").unwrap());
    // Whole again: the old month is dropped after a signed anchor for each chain in it.
    let a = warden_config(
        &dir_a.join("warden.toml"),
        url_a.trim_end_matches("/mcp").rsplit(':').next().unwrap().parse().unwrap(),
    );
    wait_log(&a, "partition dropped");
    echo(&a, 5).await;
    stop(a);
    assert!(!exists(&old), "{old} dropped");
    let (ok, out) = verify();
    assert!(ok, "{out}");
    assert!(
        out.contains(&format!("chain a: starts at seq {}", old_end + 1))
            && out.contains("removed by the retention policy"),
        "{out}"
    );
    assert!(!out.contains("chain b:"), "chain b removed whole: {out}");
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
    assert_eq!(of("a")["anchor"]["through"].as_i64(), Some(old_end));
    assert_eq!(of("b")["anchor"]["removed"][0], old.as_str());
    println!("dropped {old} ({rows_moved} rows of chains a and b) after signed anchors; the rest verifies");

    // The oldest kept record of chain a deleted by hand: not the policy's doing.
    pg.sql(|db| db.execute("DELETE FROM audit_events WHERE chain = 'a' AND seq = (SELECT min(seq) FROM audit_events WHERE chain = 'a')", &[]).unwrap());
    let (ok, out) = verify();
    assert!(!ok && out.contains("the records before it were deleted"), "{out}");
}
