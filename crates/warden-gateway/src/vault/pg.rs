//! The vault's table in PostgreSQL (`[vault] url`), shared by replicas: the same table as
//! `sqlite.rs`, created when absent. The password is a secret reference, kept out of the URL.

use super::{Entry, Row, Table, Upsert};
use postgres::Client;

const SCHEMA: &str = "CREATE TABLE IF NOT EXISTS warden_credentials (
    id TEXT PRIMARY KEY,
    upstream TEXT NOT NULL,
    binding TEXT NOT NULL,
    tenant TEXT,
    subject TEXT NOT NULL,
    created BIGINT NOT NULL,
    updated BIGINT NOT NULL,
    expires_at BIGINT,
    key_id TEXT NOT NULL,
    sealed BYTEA NOT NULL,
    UNIQUE (upstream, binding)
)";

/// The connection (always there until dropped).
pub(super) struct Pg(Option<Client>);

impl Pg {
    fn db(&mut self) -> &mut Client {
        self.0.as_mut().expect("the connection lives until the table is dropped")
    }
}

impl Drop for Pg {
    /// The client owns a runtime, which must not be dropped inside an async context (the vault
    /// may be dropped there): on a thread of its own.
    fn drop(&mut self) {
        if let Some(c) = self.0.take() {
            let _ = std::thread::Builder::new().name("warden-vault-close".into()).spawn(move || drop(c));
        }
    }
}

fn err(e: postgres::Error) -> String {
    format!("vault: PostgreSQL: {}", warden_audit::pg::message(&e))
}

/// Connect to `url` (with `password` when given; TLS as its `sslmode` says,
/// `warden_audit::pg_tls`) and make the table; where it is, without the password, for messages.
pub(super) fn open(url: &str, password: Option<&str>) -> Result<(Pg, String), String> {
    let t = warden_audit::pg::config(url, password, "warden-vault").map_err(|e| format!("vault.{e}"))?;
    let place = format!(
        "PostgreSQL {} database {}",
        t.config.get_hosts().iter().map(|h| format!("{h:?}")).collect::<Vec<_>>().join(","),
        t.config.get_dbname().unwrap_or("(default)")
    );
    let mut c = t.connect().map_err(err)?;
    c.batch_execute(SCHEMA).map_err(err)?;
    Ok((Pg(Some(c)), place))
}

impl Table for Pg {
    fn find(&mut self, upstream: &str, binding: &str) -> Result<Option<(String, String, Vec<u8>)>, String> {
        let row = self
            .db()
            .query_opt(
                "SELECT id, key_id, sealed FROM warden_credentials WHERE upstream = $1 AND binding = $2",
                &[&upstream, &binding],
            )
            .map_err(err)?;
        Ok(row.map(|r| (r.get(0), r.get(1), r.get(2))))
    }

    fn upsert(&mut self, u: &Upsert) -> Result<(), String> {
        self.db()
            .execute(
                "INSERT INTO warden_credentials (id, upstream, binding, tenant, subject, created, updated, expires_at, key_id, sealed)
                 VALUES ($1, $2, $3, $4, $5, $6, $6, $7, $8, $9)
                 ON CONFLICT (upstream, binding) DO UPDATE SET
                     updated = excluded.updated, expires_at = excluded.expires_at, key_id = excluded.key_id,
                     sealed = excluded.sealed",
                &[
                    &u.id,
                    &u.upstream,
                    &u.binding,
                    &u.tenant,
                    &u.subject,
                    &(u.now as i64),
                    &u.expires_at.map(|e| e as i64),
                    &u.key_id,
                    &u.sealed,
                ],
            )
            .map(drop)
            .map_err(err)
    }

    fn list(&mut self, limit: usize, binding: Option<&str>) -> Result<Vec<Entry>, String> {
        let rows = self
            .db()
            .query(
                "SELECT id, upstream, tenant, subject, created, updated, expires_at, key_id FROM warden_credentials
                 WHERE $2::TEXT IS NULL OR binding = $2 ORDER BY updated DESC LIMIT $1",
                &[&(limit as i64), &binding],
            )
            .map_err(err)?;
        Ok(rows
            .iter()
            .map(|r| Entry {
                id: r.get(0),
                upstream: r.get(1),
                tenant: r.get(2),
                subject: r.get(3),
                created: r.get::<_, i64>(4) as u64,
                updated: r.get::<_, i64>(5) as u64,
                expires_at: r.get::<_, Option<i64>>(6).map(|e| e as u64),
                key_id: r.get(7),
            })
            .collect())
    }

    fn delete(&mut self, id: &str) -> Result<bool, String> {
        Ok(self.db().execute("DELETE FROM warden_credentials WHERE id = $1", &[&id]).map_err(err)? > 0)
    }

    fn delete_own(&mut self, upstream: &str, binding: &str) -> Result<bool, String> {
        let n = self
            .db()
            .execute("DELETE FROM warden_credentials WHERE upstream = $1 AND binding = $2", &[&upstream, &binding])
            .map_err(err)?;
        Ok(n > 0)
    }

    fn not_under(&mut self, key_id: &str) -> Result<Vec<Row>, String> {
        let rows = self
            .db()
            .query(
                "SELECT id, upstream, binding, key_id, sealed FROM warden_credentials WHERE key_id <> $1",
                &[&key_id],
            )
            .map_err(err)?;
        Ok(rows.iter().map(|r| (r.get(0), r.get(1), r.get(2), r.get(3), r.get(4))).collect())
    }

    fn reseal(&mut self, id: &str, old_key: &str, key_id: &str, sealed: &[u8]) -> Result<(), String> {
        self.db()
            .execute(
                "UPDATE warden_credentials SET key_id = $1, sealed = $2 WHERE id = $3 AND key_id = $4",
                &[&key_id, &sealed, &id, &old_key],
            )
            .map(drop)
            .map_err(err)
    }
}
