//! The SQLite trail's schemas, and the check that a database still has Warden's.

use crate::sink::open_ro;
use std::path::Path;

/// The first schema: every indexed field stored twice, beside the record, and three indexes.
/// Databases made with it are still written and read as they are.
pub(crate) const SCHEMA_V1: &str = "
CREATE TABLE IF NOT EXISTS audit_events (
    id INTEGER PRIMARY KEY,
    chain TEXT NOT NULL,
    seq INTEGER NOT NULL,
    ts TEXT NOT NULL,
    kind TEXT NOT NULL,
    subject TEXT,
    tenant TEXT,
    server TEXT,
    name TEXT,
    decision TEXT,
    status TEXT NOT NULL,
    hash TEXT NOT NULL,
    record TEXT NOT NULL
);
CREATE INDEX IF NOT EXISTS audit_events_chain_seq ON audit_events (chain, seq);
CREATE INDEX IF NOT EXISTS audit_events_ts ON audit_events (ts);
CREATE INDEX IF NOT EXISTS audit_events_subject ON audit_events (subject, ts);
";

/// The schema of new databases (`user_version` 2): only the record is stored; the fields
/// queries filter on are virtual columns read from it (no bytes on disk, never apart from the
/// record), and two indexes serve `--since`/`--until` and `--subject`. A file holds one writer's
/// chain, whose order is the rows' own: the head is the last row, no index needed.
pub(crate) const SCHEMA_V2: &str = "
CREATE TABLE audit_events (
    id INTEGER PRIMARY KEY,
    record TEXT NOT NULL,
    chain TEXT AS (json_extract(record, '$.chain')) VIRTUAL,
    seq INTEGER AS (json_extract(record, '$.seq')) VIRTUAL,
    ts TEXT AS (json_extract(record, '$.ts')) VIRTUAL,
    kind TEXT AS (json_extract(record, '$.kind')) VIRTUAL,
    subject TEXT AS (json_extract(record, '$.subject')) VIRTUAL,
    tenant TEXT AS (json_extract(record, '$.tenant')) VIRTUAL,
    server TEXT AS (json_extract(record, '$.server')) VIRTUAL,
    name TEXT AS (json_extract(record, '$.name')) VIRTUAL,
    decision TEXT AS (json_extract(record, '$.decision')) VIRTUAL,
    status TEXT AS (json_extract(record, '$.status')) VIRTUAL,
    hash TEXT AS (json_extract(record, '$.hash')) VIRTUAL
);
CREATE INDEX audit_events_ts ON audit_events (ts);
CREATE INDEX audit_events_subject ON audit_events (subject, ts);
PRAGMA user_version = 2;
";

/// What is wrong with a schema-2 database's definition or structure: its table or indexes
/// redefined (a generated column made to read another field, an index on something else) or
/// its b-trees damaged. Schema-1 databases keep their columns, checked against each record.
pub fn problems(path: &Path) -> Result<Vec<String>, String> {
    let c = open_ro(path)?;
    let err = |e: rusqlite::Error| format!("{}: {e}", path.display());
    let version: i64 = c.query_row("PRAGMA user_version", [], |r| r.get(0)).map_err(err)?;
    let mut out = Vec::new();
    let ok: String = c.query_row("PRAGMA quick_check", [], |r| r.get(0)).map_err(err)?;
    if ok != "ok" {
        out.push(format!("{}: the database is damaged ({ok})", path.display()));
    }
    if version < 2 {
        return Ok(out);
    }
    let norm = |s: &str| s.split_whitespace().collect::<Vec<_>>().join(" ");
    let mut want: Vec<String> =
        SCHEMA_V2.split(';').map(str::trim).filter(|s| s.starts_with("CREATE")).map(norm).collect();
    let mut st =
        c.prepare("SELECT sql FROM sqlite_master WHERE tbl_name = 'audit_events' AND sql IS NOT NULL").map_err(err)?;
    let mut have: Vec<String> =
        st.query_map([], |r| r.get::<_, String>(0)).map_err(err)?.filter_map(Result::ok).map(|s| norm(&s)).collect();
    want.sort();
    have.sort();
    if want != have {
        out.push(format!(
            "{}: the table audit_events or its indexes were redefined (queries would not read what the records say)",
            path.display()
        ));
    }
    Ok(out)
}
