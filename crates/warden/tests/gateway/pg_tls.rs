//! PostgreSQL over TLS, as libpq's `sslmode` and `sslrootcert` say (`warden_audit::pg_tls`):
//! the audit trail, the credential vault and the SQL tools connect through it. Here the server
//! takes TLS only (a plain connection is refused), with a certificate for `localhost` from a
//! throwaway CA.

use serde_json::json;
use warden_testkit::harness::{fixture_stdio_upstream, postgres_tls_server, warden, Client};

/// Connect as Warden does, off the async runtime (the driver runs its own); whether the
/// connection is encrypted, or the error.
fn connect(url: String) -> Result<bool, String> {
    std::thread::spawn(move || {
        let mut c = warden_audit::pg::connect(&warden_audit::pg::config(&url, None, "test")?)?;
        let row =
            c.query_one("SELECT ssl FROM pg_stat_ssl WHERE pid = pg_backend_pid()", &[]).map_err(|e| e.to_string())?;
        Ok(row.get(0))
    })
    .join()
    .unwrap()
}

#[test]
fn each_sslmode_connects_or_refuses_as_libpq_would() {
    let pg = postgres_tls_server();
    let ca = pg.ca.clone().unwrap().display().to_string();
    let at = |host: &str, q: &str| format!("postgres://warden@{host}:{}/postgres?{q}", pg.port);
    // The default (`prefer`) and `require` take TLS, checking nothing.
    assert_eq!(connect(format!("postgres://warden@127.0.0.1:{}/postgres", pg.port)), Ok(true));
    assert_eq!(connect(at("127.0.0.1", "sslmode=require")), Ok(true));
    // `disable`: in the clear, which this server refuses.
    let e = connect(at("127.0.0.1", "sslmode=disable")).unwrap_err();
    assert!(e.contains("no encryption") || e.contains("pg_hba"), "{e}");
    // `verify-ca`: the chain to the CA, whatever the name; `verify-full`: the name too.
    assert_eq!(connect(at("127.0.0.1", &format!("sslmode=verify-ca&sslrootcert={ca}"))), Ok(true));
    let e = connect(at("127.0.0.1", &format!("sslmode=verify-full&sslrootcert={ca}"))).unwrap_err();
    assert!(e.contains("certificate") || e.contains("Certificate"), "not for 127.0.0.1: {e}");
    assert_eq!(connect(at("localhost", &format!("sslmode=verify-full&sslrootcert={ca}"))), Ok(true));
    // Another CA's certificate, or no roots named, is no connection.
    let other = warden_testkit::harness::tempdir("pg-other-ca").join("ca.pem");
    std::fs::write(&other, warden_testkit::pki::Ca::new("someone else").pem).unwrap();
    let e = connect(at("localhost", &format!("sslmode=verify-ca&sslrootcert={}", other.display()))).unwrap_err();
    assert!(e.to_lowercase().contains("certificate"), "{e}");
    assert!(connect(at("localhost", "sslmode=verify-full")).unwrap_err().contains("sslrootcert"));
    // A Unix socket takes no TLS, whatever the default.
    let socket = format!("host={} port={} user=warden dbname=postgres", pg.proc.dir.display(), pg.port);
    assert_eq!(connect(socket), Ok(false));
    // `require` with roots named checks them, as libpq does.
    assert!(connect(at("localhost", &format!("sslmode=require&sslrootcert={}", other.display()))).is_err());
}

/// A Warden whose audit trail and credential vault are in a TLS-only PostgreSQL, reached with
/// `verify-full`: calls are recorded there, the vault's table is made there.
#[tokio::test]
async fn the_audit_trail_and_the_vault_reach_postgres_over_verified_tls() {
    let pg = postgres_tls_server();
    let ca = pg.ca.clone().unwrap().display().to_string();
    let url = format!("postgres://warden@localhost:{}/postgres?sslmode=verify-full&sslrootcert={ca}", pg.port);
    let dir = warden_testkit::harness::tempdir("pg-tls-vault");
    std::fs::write(dir.join("vault.key"), "AQIDBAUGBwgJCgsMDQ4PEBESExQVFhcYGRobHB0eHyA=\n").unwrap();
    let fx = fixture_stdio_upstream("fx", Some(""), "");
    let w = warden(
        "",
        &format!(
            "{fx}[audit]\nurl = {url:?}\n[vault]\nurl = {url:?}\nkey = {{ file = {:?} }}\n",
            dir.join("vault.key").display().to_string()
        ),
    );
    let mut c = Client::new(&w.url);
    c.initialize().await;
    let r = c.tool(1, "echo", json!({"text": "over tls"})).await;
    assert_eq!(r["result"]["content"][0]["text"], "over tls", "{r}");
    let mut recorded = 0i64;
    for _ in 0..50 {
        recorded = pg.sql(|db| {
            db.query_one("SELECT count(*) FROM audit_events WHERE kind = 'call'", &[]).map(|r| r.get(0)).unwrap_or(0)
        });
        if recorded > 0 {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
    assert_eq!(recorded, 1, "{}", w.log());
    let vault: i64 = pg.sql(|db| {
        db.query_one("SELECT count(*) FROM information_schema.tables WHERE table_name = 'warden_credentials'", &[])
            .unwrap()
            .get(0)
    });
    assert_eq!(vault, 1, "the vault's table is there: {}", w.log());
    let ssl: i64 = pg.sql(|db| {
        db.query_one("SELECT count(*) FROM pg_stat_ssl s JOIN pg_stat_activity a USING (pid) WHERE a.application_name LIKE 'warden-%' AND s.ssl", &[])
            .unwrap()
            .get(0)
    });
    assert!(ssl >= 1, "Warden's connections are encrypted");
}
