//! The PostgreSQL store, for several Wardens sharing one trail: each writes its own chain
//! (`audit.instance`) into `audit_events` (monthly partitions, `pg_schema.rs`), a batch per
//! statement (`INSERT … SELECT FROM unnest(…)`) that also moves the chain's head in
//! `audit_heads`, only from exactly where the batch continues: two writers of one chain are an
//! error, never an interleaving.
//!
//! A batch whose commit was acknowledged but whose answer was lost is retried after the
//! reconnect; rows already there with the same hash count as stored, and anything else (a
//! second Warden with the same `instance`) is an error that keeps the batch queued, so the
//! on-full policy applies rather than silent loss.
//!
//! Durability is the server's (`synchronous_commit`); `fsync` does not apply. Not yet: TLS to
//! the server (use loopback or a Unix socket).

use crate::pg_tls::PgTarget;
use crate::sink::{filter_sql, Sealed, Sink, Stored, COLUMNS};
use crate::Filter;
use postgres::Client;
use std::time::Duration;

/// Parse a `postgres://` URL (or `key=value` string), with the password kept apart, as
/// application `app` (also the SQL tools' and the vault's connection settings): TLS as its
/// `sslmode` and `sslrootcert` say (`pg_tls.rs`), a 5 s connect timeout unless the URL sets one,
/// keepalives.
pub fn config(url: &str, password: Option<&str>, app: &str) -> Result<PgTarget, String> {
    let mut t = crate::pg_tls::parse(url).map_err(|e| format!("url: {e}"))?;
    let c = &mut t.config;
    if let Some(p) = password {
        c.password(p);
    }
    if c.get_connect_timeout().is_none() {
        c.connect_timeout(Duration::from_secs(5));
    }
    c.application_name(app).keepalives_idle(Duration::from_secs(30));
    Ok(t)
}

pub fn connect(c: &PgTarget) -> Result<Client, String> {
    c.connect().map_err(|e| format!("PostgreSQL: {}", message(&e)))
}

/// What went wrong, for people: the server's message, or the error with its causes (a TLS
/// handshake's says which check failed).
pub fn message(e: &postgres::Error) -> String {
    if let Some(d) = e.as_db_error() {
        return d.message().to_string();
    }
    let mut out = e.to_string();
    let mut cause = std::error::Error::source(e);
    while let Some(c) = cause {
        out.push_str(&format!(": {c}"));
        cause = c.source();
    }
    out
}

/// The sink. It connects on first use, on the writer's thread, and again after a failure.
pub struct Postgres {
    config: PgTarget,
    client: Option<Client>,
}

impl Postgres {
    pub fn new(config: PgTarget) -> Postgres {
        Postgres { config, client: None }
    }

    fn client(&mut self) -> Result<&mut Client, String> {
        if self.client.as_ref().is_none_or(Client::is_closed) {
            let mut c = connect(&self.config)?;
            crate::pg_schema::prepare(&mut c)?;
            self.client = Some(c);
        }
        Ok(self.client.as_mut().expect("connected"))
    }

    fn insert(&mut self, batch: &[Sealed]) -> Result<(), String> {
        self.client()?;
        let inserted = match self.insert_once(batch) {
            Err(e) if crate::pg_schema::is_missing_partition(&e) => {
                // A month no partition was made ahead for (a long-running writer, a clock jump).
                crate::pg_schema::ensure_partitions(self.client()?)?;
                self.client()?;
                self.insert_once(batch)
            }
            r => r,
        }
        .map_err(|e| message(&e))?;
        if inserted as usize == batch.len() {
            return Ok(());
        }
        // The head was elsewhere: a retried batch (its rows there, same hashes) or another writer.
        let seqs: Vec<i64> = batch.iter().map(|s| s.event.seq as i64).collect();
        let rows = self
            .client()?
            .query(
                "SELECT seq, hash FROM audit_events WHERE chain = $1 AND seq = ANY($2)",
                &[&batch[0].event.chain, &seqs],
            )
            .map_err(|e| message(&e))?;
        let stored: std::collections::HashMap<i64, String> = rows.iter().map(|r| (r.get(0), r.get(1))).collect();
        for s in batch {
            if stored.get(&(s.event.seq as i64)).map(String::as_str) != s.event.hash.as_deref() {
                return Err(format!(
                    "chain {:?} does not continue at seq {} here: another writer moved it (is a second Warden using the same audit.instance?)",
                    s.event.chain, s.event.seq
                ));
            }
        }
        Ok(())
    }

    /// The rows inserted: all of the batch, or none when the chain's head is not where the batch
    /// continues (one statement, so atomic).
    fn insert_once(&mut self, batch: &[Sealed]) -> Result<u64, postgres::Error> {
        let c = self.client.as_mut().expect("connected by the caller");
        let col = |f: fn(&Sealed) -> Option<&str>| batch.iter().map(f).collect::<Vec<Option<&str>>>();
        let seqs: Vec<i64> = batch.iter().map(|s| s.event.seq as i64).collect();
        let (first, last) = (&batch[0].event, &batch[batch.len() - 1].event);
        c.execute(
            "WITH moved AS ( \
                 INSERT INTO audit_heads AS h (chain, seq, hash) VALUES ($1, $12, $13) \
                 ON CONFLICT (chain) DO UPDATE SET seq = EXCLUDED.seq, hash = EXCLUDED.hash \
                 WHERE h.seq = $14 AND h.hash = $15 RETURNING 1) \
             INSERT INTO audit_events (chain, seq, ts, kind, subject, tenant, server, name, decision, status, hash, record) \
             SELECT $1, * FROM unnest($2::int8[], $3::text[], $4::text[], $5::text[], $6::text[], \
             $7::text[], $8::text[], $9::text[], $10::text[], $11::text[], $16::text[]) \
             WHERE EXISTS (SELECT 1 FROM moved)",
            &[
                &first.chain,
                &seqs,
                &col(|s| Some(&s.event.ts)),
                &col(|s| Some(&s.event.kind)),
                &col(|s| s.event.subject.as_deref()),
                &col(|s| s.event.tenant.as_deref()),
                &col(|s| s.event.server.as_deref()),
                &col(|s| s.event.name.as_deref()),
                &col(|s| s.event.decision.as_deref()),
                &col(|s| Some(&s.event.status)),
                &col(|s| s.event.hash.as_deref()),
                &(last.seq as i64),
                &last.hash.as_deref().unwrap_or_default(),
                &(first.seq as i64 - 1),
                &first.prev,
                &col(|s| Some(&s.line)),
            ],
        )
    }
}

impl Sink for Postgres {
    fn head(&mut self, chain: &str) -> Result<Option<crate::sink::Head>, String> {
        let c = self.client()?;
        let row =
            c.query_opt("SELECT seq, hash FROM audit_heads WHERE chain = $1", &[&chain]).map_err(|e| message(&e))?;
        // A chain with rows but no head (its head row deleted by hand): its last row.
        let row = match row {
            Some(r) => Some(r),
            None => c
                .query_opt("SELECT seq, hash FROM audit_events WHERE chain = $1 ORDER BY seq DESC LIMIT 1", &[&chain])
                .map_err(|e| message(&e))?,
        };
        // No journal here: PostgreSQL is acknowledged once committed.
        Ok(row.map(|r| crate::sink::Head { seq: r.get::<_, i64>(0) as u64, hash: r.get(1), journal: None }))
    }

    fn append(&mut self, batch: &[Sealed]) -> Result<(), String> {
        if batch.is_empty() {
            return Ok(());
        }
        let r = self.insert(batch);
        if r.is_err() && self.client.as_ref().is_some_and(Client::is_closed) {
            self.client = None;
        }
        r
    }
}

/// The signed marks of every removal (`audit_retention`: chain, through, hash, signature), for
/// the verifier ([`crate::verify::Report::add_marks`]); none before any removal.
pub fn marks(config: &PgTarget) -> Result<Vec<(String, u64, String, String)>, String> {
    let mut db = connect(config)?;
    match db.query("SELECT chain, through, hash, sig FROM audit_retention", &[]) {
        Ok(rows) => Ok(rows.iter().map(|r| (r.get(0), r.get::<_, i64>(1) as u64, r.get(2), r.get(3))).collect()),
        Err(e) if e.code() == Some(&postgres::error::SqlState::UNDEFINED_TABLE) => Ok(Vec::new()),
        Err(e) => Err(message(&e)),
    }
}

/// Reads a PostgreSQL trail a page at a time.
pub struct Reader(Client);

impl Reader {
    pub fn open(config: &PgTarget) -> Result<Reader, String> {
        connect(config).map(Reader)
    }

    /// Records after row `after_id`, in row order, at most `limit`.
    pub fn page(&mut self, after_id: i64, f: Option<&Filter>, limit: usize) -> Result<Vec<(i64, Stored)>, String> {
        let (filter, values) = filter_sql(f, 2, |n| format!("${n}"));
        let cols: Vec<String> =
            COLUMNS.iter().map(|c| if *c == "seq" { "seq::text".to_string() } else { c.to_string() }).collect();
        let sql = format!(
            "SELECT id, {}, record FROM audit_events WHERE id > $1{filter} ORDER BY id LIMIT {limit}",
            cols.join(", ")
        );
        let mut args: Vec<&(dyn postgres::types::ToSql + Sync)> = vec![&after_id];
        args.extend(values.iter().map(|v| v as &(dyn postgres::types::ToSql + Sync)));
        let rows = match self.0.query(&sql, &args) {
            Ok(r) => r,
            // a trail no Warden has written to yet
            Err(e) if e.code() == Some(&postgres::error::SqlState::UNDEFINED_TABLE) => return Ok(Vec::new()),
            Err(e) => return Err(message(&e)),
        };
        Ok(rows
            .iter()
            .map(|r| {
                let id: i64 = r.get(0);
                let columns = (0..COLUMNS.len()).map(|i| r.get::<_, Option<String>>(i + 1)).collect();
                (id, Stored { location: format!("row {id}"), line: r.get(COLUMNS.len() + 1), columns: Some(columns) })
            })
            .collect())
    }
}
