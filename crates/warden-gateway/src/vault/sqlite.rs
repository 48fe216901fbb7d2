//! The vault's table in a SQLite file (the embedded default): created readable by its owner
//! only, WAL journal.

use super::{Entry, Row, Table, Upsert};
use rusqlite::{params, Connection, OptionalExtension};
use std::path::Path;

const SCHEMA: &str = "PRAGMA journal_mode = WAL;
PRAGMA secure_delete = ON;
CREATE TABLE IF NOT EXISTS credentials (
    id TEXT PRIMARY KEY,
    upstream TEXT NOT NULL,
    binding TEXT NOT NULL,
    tenant TEXT,
    subject TEXT NOT NULL,
    created INTEGER NOT NULL,
    updated INTEGER NOT NULL,
    expires_at INTEGER,
    key_id TEXT NOT NULL,
    sealed BLOB NOT NULL,
    UNIQUE (upstream, binding)
);";

pub(super) struct Sqlite(Connection);

fn err(e: rusqlite::Error) -> String {
    format!("vault: {e}")
}

/// Open (or create) the file at `path`, its directory too, readable by its owner only (the
/// file is made, empty, with that mode before SQLite writes to it).
pub(super) fn open(path: &Path) -> Result<Sqlite, String> {
    let at = |e: std::io::Error| format!("vault: {}: {e}", path.display());
    if let Some(d) = path.parent().filter(|d| !d.exists()) {
        std::fs::create_dir_all(d).map_err(at)?;
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            std::fs::set_permissions(d, std::fs::Permissions::from_mode(0o700)).map_err(at)?;
        }
    }
    #[cfg(unix)]
    {
        use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
        std::fs::OpenOptions::new().create(true).append(true).mode(0o600).open(path).map_err(at)?;
        std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o600)).map_err(at)?;
    }
    let db = Connection::open(path).map_err(|e| format!("vault: {}: {e}", path.display()))?;
    db.execute_batch(SCHEMA).map_err(|e| format!("vault: {}: {e}", path.display()))?;
    Ok(Sqlite(db))
}

impl Table for Sqlite {
    fn find(&mut self, upstream: &str, binding: &str) -> Result<Option<(String, String, Vec<u8>)>, String> {
        self.0
            .query_row(
                "SELECT id, key_id, sealed FROM credentials WHERE upstream = ?1 AND binding = ?2",
                params![upstream, binding],
                |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)),
            )
            .optional()
            .map_err(err)
    }

    fn upsert(&mut self, u: &Upsert) -> Result<(), String> {
        self.0
            .execute(
                "INSERT INTO credentials (id, upstream, binding, tenant, subject, created, updated, expires_at, key_id, sealed)
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?6, ?7, ?8, ?9)
                 ON CONFLICT (upstream, binding) DO UPDATE SET
                     updated = excluded.updated, expires_at = excluded.expires_at, key_id = excluded.key_id,
                     sealed = excluded.sealed",
                params![
                    u.id,
                    u.upstream,
                    u.binding,
                    u.tenant,
                    u.subject,
                    u.now as i64,
                    u.expires_at.map(|e| e as i64),
                    u.key_id,
                    u.sealed
                ],
            )
            .map(drop)
            .map_err(err)
    }

    fn list(&mut self, limit: usize, binding: Option<&str>) -> Result<Vec<Entry>, String> {
        let mut q = self
            .0
            .prepare(
                "SELECT id, upstream, tenant, subject, created, updated, expires_at, key_id FROM credentials
                 WHERE ?2 IS NULL OR binding = ?2 ORDER BY updated DESC LIMIT ?1",
            )
            .map_err(err)?;
        let rows = q
            .query_map(params![limit as i64, binding], |r| {
                Ok(Entry {
                    id: r.get(0)?,
                    upstream: r.get(1)?,
                    tenant: r.get(2)?,
                    subject: r.get(3)?,
                    created: r.get::<_, i64>(4)? as u64,
                    updated: r.get::<_, i64>(5)? as u64,
                    expires_at: r.get::<_, Option<i64>>(6)?.map(|e| e as u64),
                    key_id: r.get(7)?,
                })
            })
            .map_err(err)?;
        rows.collect::<Result<Vec<_>, _>>().map_err(err)
    }

    fn delete(&mut self, id: &str) -> Result<bool, String> {
        Ok(self.0.execute("DELETE FROM credentials WHERE id = ?1", params![id]).map_err(err)? > 0)
    }

    fn delete_own(&mut self, upstream: &str, binding: &str) -> Result<bool, String> {
        let n = self
            .0
            .execute("DELETE FROM credentials WHERE upstream = ?1 AND binding = ?2", params![upstream, binding])
            .map_err(err)?;
        Ok(n > 0)
    }

    fn not_under(&mut self, key_id: &str) -> Result<Vec<Row>, String> {
        let mut q = self
            .0
            .prepare("SELECT id, upstream, binding, key_id, sealed FROM credentials WHERE key_id != ?1")
            .map_err(err)?;
        let rows = q
            .query_map(params![key_id], |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?, r.get(3)?, r.get(4)?)))
            .map_err(err)?;
        rows.collect::<Result<Vec<_>, _>>().map_err(err)
    }

    fn reseal(&mut self, id: &str, old_key: &str, key_id: &str, sealed: &[u8]) -> Result<(), String> {
        self.0
            .execute(
                "UPDATE credentials SET key_id = ?1, sealed = ?2 WHERE id = ?3 AND key_id = ?4",
                params![key_id, sealed, id, old_key],
            )
            .map(drop)
            .map_err(err)
    }
}
