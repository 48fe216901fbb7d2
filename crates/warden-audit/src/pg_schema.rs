//! The PostgreSQL trail's tables (schema 2), created and upgraded by the first Warden to connect
//! (under an advisory lock, so replicas starting together do it once):
//!
//! - `audit_events`, partitioned by month of `stored_at` (when the row was inserted, by the
//!   server's clock: a chain's records go to months in seq order even when a restart stores a
//!   killed Warden's old records late). Partitions are `audit_events_YYYY_MM`; this month's and
//!   the next are made ahead, and a month missing at insert time is made then. Retention drops
//!   whole partitions (`pg_retain.rs`).
//! - `audit_heads`: each chain's last seq and hash, moved forward by every insert only from
//!   exactly where the batch continues. A partitioned table cannot keep `UNIQUE (chain, seq)`
//!   (a unique index must hold the partition key), so this is what makes two writers of one
//!   chain an error, never an interleaving.
//! - `audit_retention`: the signed marks of where each chain's removed records stopped.
//!
//! A schema-1 trail (one plain `audit_events` table) is moved into partitions in one
//! transaction when first opened: its rows keep their ids; a row's month is the latest record
//! time of its chain up to it.

use postgres::GenericClient;

/// Held while the schema is made or changed, and while a partition is made.
pub(crate) const LOCK: &str = "SELECT pg_advisory_xact_lock(hashtext('warden_audit_schema'))";

const TABLES: &str = "
CREATE TABLE IF NOT EXISTS audit_events (
    id bigserial NOT NULL,
    chain text NOT NULL,
    seq bigint NOT NULL,
    ts text NOT NULL,
    kind text NOT NULL,
    subject text,
    tenant text,
    server text,
    name text,
    decision text,
    status text NOT NULL,
    hash text NOT NULL,
    record text NOT NULL,
    stored_at timestamptz NOT NULL DEFAULT now()
) PARTITION BY RANGE (stored_at);
CREATE INDEX IF NOT EXISTS audit_events_id ON audit_events (id);
CREATE INDEX IF NOT EXISTS audit_events_chain_seq ON audit_events (chain, seq);
CREATE INDEX IF NOT EXISTS audit_events_ts ON audit_events (ts);
CREATE INDEX IF NOT EXISTS audit_events_subject ON audit_events (subject, ts);
CREATE TABLE IF NOT EXISTS audit_heads (
    chain text PRIMARY KEY,
    seq bigint NOT NULL,
    hash text NOT NULL
);
CREATE TABLE IF NOT EXISTS audit_retention (
    chain text NOT NULL,
    through bigint NOT NULL,
    hash text NOT NULL,
    sig text NOT NULL,
    at timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (chain, through)
);
";

/// A month, `(year, month)`.
pub type Month = (i32, u32);

/// The partition holding the rows stored in `m`.
pub fn partition_name((y, m): Month) -> String {
    format!("audit_events_{y:04}_{m:02}")
}

/// The month a partition name stands for (None: not one of Warden's partitions).
pub fn parse_partition(name: &str) -> Option<Month> {
    let rest = name.strip_prefix("audit_events_")?;
    let (y, m) = rest.split_once('_')?;
    if y.len() != 4 || m.len() != 2 || !y.bytes().chain(m.bytes()).all(|b| b.is_ascii_digit()) {
        return None;
    }
    let (y, m) = (y.parse().ok()?, m.parse().ok()?);
    (1..=12).contains(&m).then_some((y, m))
}

pub fn next_month((y, m): Month) -> Month {
    if m == 12 {
        (y + 1, 1)
    } else {
        (y, m + 1)
    }
}

fn message(e: &postgres::Error) -> String {
    match e.as_db_error() {
        Some(d) => d.message().to_string(),
        None => e.to_string(),
    }
}

/// The server's current month (UTC).
pub fn this_month(db: &mut impl GenericClient) -> Result<Month, String> {
    let row = db
        .query_one(
            "SELECT extract(year FROM now() AT TIME ZONE 'UTC')::int4, extract(month FROM now() AT TIME ZONE 'UTC')::int4",
            &[],
        )
        .map_err(|e| message(&e))?;
    Ok((row.get(0), row.get::<_, i32>(1) as u32))
}

/// Make the partition of `m` if it is not there (the caller holds [`LOCK`]).
fn make_partition(db: &mut impl GenericClient, m: Month) -> Result<(), String> {
    let sql = format!("CREATE TABLE IF NOT EXISTS {} PARTITION OF audit_events {}", partition_name(m), bounds(m));
    db.batch_execute(&sql).map_err(|e| format!("partition {}: {}", partition_name(m), message(&e)))
}

/// Make this month's partition and the next (in a transaction of their own).
pub fn ensure_partitions(db: &mut postgres::Client) -> Result<(), String> {
    let mut tx = db.transaction().map_err(|e| message(&e))?;
    tx.batch_execute(LOCK).map_err(|e| message(&e))?;
    let now = this_month(&mut tx)?;
    make_partition(&mut tx, now)?;
    make_partition(&mut tx, next_month(now))?;
    tx.commit().map_err(|e| message(&e))
}

/// Create the tables, or move a schema-1 trail into them; then the partitions.
pub fn prepare(db: &mut postgres::Client) -> Result<(), String> {
    let mut tx = db.transaction().map_err(|e| message(&e))?;
    tx.batch_execute(LOCK).map_err(|e| message(&e))?;
    let kind: Option<i8> = tx
        .query_one("SELECT (SELECT relkind FROM pg_class WHERE oid = to_regclass('audit_events'))::\"char\"", &[])
        .map_err(|e| message(&e))?
        .get(0);
    match kind.map(|k| k as u8) {
        Some(b'p') | None => tx.batch_execute(TABLES).map_err(|e| message(&e))?,
        Some(b'r') => migrate_v1(&mut tx)?,
        Some(k) => return Err(format!("audit_events is not a table (relkind {:?})", k as char)),
    }
    tx.commit().map_err(|e| message(&e))?;
    ensure_partitions(db)
}

/// Schema 1 → 2, inside the caller's transaction.
fn migrate_v1(tx: &mut postgres::Transaction<'_>) -> Result<(), String> {
    let run = |tx: &mut postgres::Transaction<'_>, sql: &str| tx.batch_execute(sql).map_err(|e| message(&e));
    run(
        tx,
        "ALTER TABLE audit_events RENAME TO audit_events_v1;
         ALTER SEQUENCE IF EXISTS audit_events_id_seq RENAME TO audit_events_v1_id_seq;
         DROP INDEX IF EXISTS audit_events_ts;
         DROP INDEX IF EXISTS audit_events_subject;",
    )?;
    run(tx, TABLES)?;
    // Each row's month: the latest record time of its chain so far (months follow seq order);
    // a time that does not parse, or lies ahead, counts as now.
    run(
        tx,
        "CREATE FUNCTION pg_temp.warden_v1_time(t text) RETURNS timestamptz LANGUAGE plpgsql AS $$
         BEGIN RETURN t::timestamptz; EXCEPTION WHEN others THEN RETURN now(); END $$",
    )?;
    run(
        tx,
        "CREATE TEMP TABLE audit_v1_at ON COMMIT DROP AS
         SELECT id, max(least(pg_temp.warden_v1_time(ts), now())) OVER (PARTITION BY chain ORDER BY seq) AS at
         FROM audit_events_v1",
    )?;
    let months = tx
        .query(
            "SELECT DISTINCT extract(year FROM at AT TIME ZONE 'UTC')::int4, extract(month FROM at AT TIME ZONE 'UTC')::int4 FROM audit_v1_at",
            &[],
        )
        .map_err(|e| message(&e))?;
    for r in months {
        make_partition(tx, (r.get(0), r.get::<_, i32>(1) as u32))?;
    }
    run(
        tx,
        "INSERT INTO audit_events (id, chain, seq, ts, kind, subject, tenant, server, name, decision, status, hash, record, stored_at)
         SELECT v.id, v.chain, v.seq, v.ts, v.kind, v.subject, v.tenant, v.server, v.name, v.decision, v.status, v.hash, v.record, a.at
         FROM audit_events_v1 v JOIN audit_v1_at a USING (id);
         SELECT setval(pg_get_serial_sequence('audit_events', 'id'), (SELECT coalesce(max(id), 0) + 1 FROM audit_events), false);
         INSERT INTO audit_heads (chain, seq, hash)
         SELECT DISTINCT ON (chain) chain, seq, hash FROM audit_events_v1 ORDER BY chain, seq DESC;
         DROP TABLE audit_events_v1;",
    )?;
    tracing::info!("audit: the PostgreSQL trail was moved into monthly partitions (schema 2)");
    Ok(())
}

/// One of Warden's partitions of `audit_events`.
#[derive(Debug, Clone, PartialEq)]
pub struct Partition {
    pub month: Month,
    /// Schema-qualified and quoted, for SQL.
    pub name: String,
    /// With its indexes.
    pub bytes: u64,
}

/// The bounds a partition of month `m` is made with, as PostgreSQL prints them in UTC.
fn bounds(m: Month) -> String {
    let ((y, mo), (ny, nm)) = (m, next_month(m));
    format!("FOR VALUES FROM ('{y:04}-{mo:02}-01 00:00:00+00') TO ('{ny:04}-{nm:02}-01 00:00:00+00')")
}

/// Warden's partitions of `audit_events`, oldest first: plain tables in its schema, named for a
/// month and bounded by exactly that month. Anything else attached (a table renamed to another
/// month, one of another schema) is left alone, with a warning.
pub fn partitions(db: &mut impl GenericClient) -> Result<Vec<Partition>, String> {
    db.batch_execute("SET TIME ZONE 'UTC'").map_err(|e| message(&e))?;
    let rows = db
        .query(
            "SELECT c.relname::text, quote_ident(n.nspname) || '.' || quote_ident(c.relname), pg_total_relation_size(c.oid), \
                    c.relkind = 'r' AND c.relnamespace = p.relnamespace, pg_get_expr(c.relpartbound, c.oid) \
             FROM pg_inherits i JOIN pg_class c ON c.oid = i.inhrelid JOIN pg_namespace n ON n.oid = c.relnamespace \
                  JOIN pg_class p ON p.oid = i.inhparent \
             WHERE i.inhparent = to_regclass('audit_events')",
            &[],
        )
        .map_err(|e| message(&e))?;
    let mut out = Vec::new();
    for r in rows {
        let (relname, name, bytes, plain, bound): (String, String, i64, bool, Option<String>) =
            (r.get(0), r.get(1), r.get(2), r.get(3), r.get(4));
        match parse_partition(&relname) {
            Some(month) if plain && bound.as_deref() == Some(bounds(month).as_str()) => {
                out.push(Partition { month, name, bytes: bytes.max(0) as u64 })
            }
            _ => tracing::warn!(partition = %name, bounds = ?bound,
                "audit: a partition of audit_events that is not Warden's (its name, kind, schema or bounds); never dropped"),
        }
    }
    out.sort_by_key(|p| p.month);
    Ok(out)
}

/// The trail's bytes on disk (every partition with its indexes, and the heads) and its rows
/// (`warden bench --audit`).
pub fn footprint(config: &crate::pg_tls::PgTarget) -> Result<(u64, u64), String> {
    let mut db = crate::pg::connect(config)?;
    let bytes: u64 = partitions(&mut db)?.iter().map(|p| p.bytes).sum();
    let r = db
        .query_one(
            "SELECT pg_total_relation_size('audit_heads') + pg_total_relation_size('audit_retention'), (SELECT count(*) FROM audit_events)",
            &[],
        )
        .map_err(|e| message(&e))?;
    Ok((bytes + r.get::<_, i64>(0) as u64, r.get::<_, i64>(1) as u64))
}

/// A missing partition at insert time (the insert fails with this): make it and try again.
pub fn is_missing_partition(e: &postgres::Error) -> bool {
    e.code() == Some(&postgres::error::SqlState::CHECK_VIOLATION)
        && e.as_db_error().is_some_and(|d| d.message().contains("no partition"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn partition_names_round_trip_and_foreign_names_are_not_warden_s() {
        assert_eq!(partition_name((2026, 3)), "audit_events_2026_03");
        assert_eq!(parse_partition("audit_events_2026_03"), Some((2026, 3)));
        assert_eq!(next_month((2026, 12)), (2027, 1));
        for foreign in
            ["audit_events_v1", "audit_events_2026_13", "audit_events_2026_3", "audit_heads", "audit_events_2026_03x"]
        {
            assert_eq!(parse_partition(foreign), None, "{foreign}");
        }
    }
}
