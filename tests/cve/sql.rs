//! SQL injection through query tools. The SQLite reference server's class (a read-only check by
//! the `SELECT` prefix, then every statement of the string run) and the PostgreSQL reference
//! server's read-only bypass (`COMMIT; DROP …` ends the `READ ONLY` transaction it relied on).
//! Warden's SQL guard parses the query and lets through exactly one read-only query with
//! allow-listed functions, so the attack never reaches the server.

use crate::common::*;
use serde_json::json;
use warden_testkit::harness::{postgres_server, vulnerable_http, warden};

fn sql_guard(tool: &str, arg: &str, dialect: &str) -> String {
    format!(
        "[[guard]]\nserver = \"vuln\"\ntools = [{tool:?}]\nargument = {arg:?}\nkind = \"sql\"\ndialect = {dialect:?}\n"
    )
}

fn sqlite_has_table(db: &std::path::Path) -> bool {
    let c = rusqlite::Connection::open(db).unwrap();
    c.query_row("SELECT count(*) FROM sqlite_master WHERE name = 'secrets'", [], |r| r.get::<_, i64>(0)).unwrap() == 1
}

#[tokio::test]
async fn sqlite_server_stacked_statement_injection_is_refused() {
    let d = dir("sqlite");
    let db = d.join("app.db");
    let create = || {
        let c = rusqlite::Connection::open(&db).unwrap();
        c.execute_batch("CREATE TABLE IF NOT EXISTS secrets (k TEXT); INSERT INTO secrets VALUES ('s3cret');").unwrap();
    };
    create();
    let log = d.join("calls.jsonl");
    let up = vulnerable_http(&[("VULN_DB", &db.display().to_string()), ("VULN_LOG", &log.display().to_string())]);
    let attack = "SELECT 1; DROP TABLE secrets";

    // Directly: the "read-only" tool drops the table.
    let direct = client(&up.url).await;
    assert_eq!(text(&direct.tool(1, "read_query", json!({"query": attack})).await), "query executed");
    assert!(!sqlite_has_table(&db), "the vulnerable server ran the stacked statement");
    create();
    std::fs::remove_file(&log).unwrap();

    let w =
        warden("", &format!("{}{}", http_upstream("vuln", &up.url, ""), sql_guard("read_query", "query", "sqlite")));
    let c = client(&w.url).await;
    assert_eq!(
        text(&c.tool(1, "read_query", json!({"query": "SELECT count(*) FROM secrets"})).await),
        "query executed"
    );
    for (i, a) in [
        attack,
        "SELECT 1;ATTACH DATABASE '/tmp/x.db' AS x",
        "SELECT load_extension('/tmp/evil.so')",
        "SELECT writefile('/tmp/x', 'y')",
    ]
    .iter()
    .enumerate()
    {
        let v = c.tool(10 + i as i64, "read_query", json!({"query": a})).await;
        assert!(refused_by_warden(&v), "{a}: {v}");
    }
    assert!(sqlite_has_table(&db));
    assert_eq!(received(&log).len(), 1, "only the plain query reached the server");
    let blocked = calls_with_status(&w, "blocked_by_guard");
    assert_eq!(blocked.len(), 4, "{blocked:?}");
    assert!(blocked.iter().all(|b| b["findings"] == json!(["guard.sql:refused"])));
}

#[tokio::test]
async fn postgres_server_read_only_transaction_bypass_is_refused() {
    let pg = postgres_server();
    let create = || {
        pg.sql(|c| {
            c.batch_execute("CREATE TABLE IF NOT EXISTS accounts (id int); INSERT INTO accounts VALUES (1)").unwrap()
        })
    };
    let exists =
        || pg.sql(|c| c.query_one("SELECT to_regclass('public.accounts') IS NOT NULL", &[]).unwrap().get::<_, bool>(0));
    create();
    let d = dir("pg");
    let log = d.join("calls.jsonl");
    let up = vulnerable_http(&[("VULN_PG_URL", &pg.url), ("VULN_LOG", &log.display().to_string())]);
    let attack = "COMMIT; DROP TABLE accounts;";

    // Directly: the COMMIT ends the read-only transaction and the DROP runs.
    let direct = client(&up.url).await;
    let t = text(&direct.tool(1, "pg_query", json!({"sql": attack})).await);
    assert!(t.ends_with("messages"), "{t}");
    assert!(!exists(), "the vulnerable server dropped the table");
    create();
    std::fs::remove_file(&log).unwrap();

    let w = warden("", &format!("{}{}", http_upstream("vuln", &up.url, ""), sql_guard("pg_query", "sql", "postgres")));
    let c = client(&w.url).await;
    let ok = c.tool(1, "pg_query", json!({"sql": "SELECT count(*) FROM accounts"})).await;
    assert!(text(&ok).ends_with("messages"), "{ok}");
    let attacks = [
        attack,
        "SELECT 1; COMMIT; DROP SCHEMA public CASCADE",
        "SELECT \"pg_read_file\"('/etc/passwd')",
        "SELECT * FROM dblink('host=127.0.0.1', 'DROP TABLE accounts') AS t(x int)",
        "WITH d AS (DELETE FROM accounts RETURNING *) SELECT * FROM d",
    ];
    for (i, a) in attacks.iter().enumerate() {
        let v = c.tool(10 + i as i64, "pg_query", json!({"sql": a})).await;
        assert!(refused_by_warden(&v), "{a}: {v}");
    }
    assert!(exists());
    assert_eq!(received(&log).len(), 1);
    assert_eq!(calls_with_status(&w, "blocked_by_guard").len(), attacks.len());
}
