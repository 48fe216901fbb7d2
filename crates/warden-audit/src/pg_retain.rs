//! Retention of a PostgreSQL trail (`[audit.retention] keep_days`, `keep_gb`): whole monthly
//! partitions (`pg_schema.rs`) are dropped, oldest first, never this month's, once the month
//! ended more than `keep_days` ago or while the partitions together are larger than `keep_gb`.
//! A partition holds the records of every Warden that shares the trail, so one Warden (whichever
//! takes the advisory lock; each tries every hour) anchors every chain in it before it drops it:
//!
//! - Only Warden's partitions: plain tables in its schema, named for a month and bounded by
//!   exactly that month (a table renamed to an older month is left alone).
//! - Every record in the partition is re-hashed, chain by chain in seq order: each chain's part
//!   must start at the chain's start (seq 1 from genesis) or exactly where an earlier removal
//!   stopped (a mark in `audit_retention`, signed with the audit key), and run without a gap;
//!   each record's own time (hashed) must lie in the month (a day of slack): rows of later
//!   months moved in by changing `stored_at` are not old.
//! - The kept trail must continue exactly after it (the next seq's `prev` is the last removed
//!   record's hash), or the chain ends there (`audit_heads`): a Warden gone for good, whose chain
//!   is then removed whole.
//! - One anchor record per chain, in this Warden's own chain ([`crate::Anchor::chain`] names
//!   the chain cut), signed by a checkpoint before anything is dropped; then the signed marks
//!   (which `warden audit verify --url` also reads: they outlive the month the anchors are in);
//!   then `DROP TABLE`, under a 5 s lock timeout (writers wait no longer behind it) and only if
//!   the partition holds exactly the rows walked. `verify` accepts a chain that starts where a
//!   signed anchor or mark says its removed records stopped, and reports any other late start.
//!
//! Anything else refuses the removal (nothing dropped, an error logged at every try).
//!
//! Defends against: rows deleted, edited, inserted or moved into an old partition by someone
//! with access to the database but not the signing key, who would have Warden sign a cut that
//! hides them; partitions that are not Warden's are never dropped.
//! Does not defend against: a holder of the signing key; a database superuser dropping
//! partitions by hand (found by `warden audit verify`, not prevented); a partition made larger
//! on purpose (dead rows, extra indexes) makes `keep_gb` drop old months sooner, as any size
//! limit does; months are kept whole, so records stay between `keep_days` and `keep_days` + a
//! month.

use crate::event::{Anchor, Event};
use crate::pg::{connect, message};
use crate::pg_schema::{next_month, partitions, this_month, Month};
use crate::retain::{payload, step, Mark};
use crate::signing::SigningKey;
use crate::Recorder;
use std::time::Duration;

/// Most chains one partition may hold (each gets an anchor record).
const MAX_CHAINS: usize = 1_000;
/// Signed marks kept per chain.
const MARKS: i64 = 64;

/// What a PostgreSQL trail keeps (`[audit.retention]`).
#[derive(Debug, Clone, Copy, PartialEq, Default)]
pub struct Policy {
    /// Months that ended longer ago than this are dropped.
    pub keep_age: Option<Duration>,
    /// The oldest months are dropped while all of them together are larger than this.
    pub keep_bytes: Option<u64>,
}

pub struct Pruner {
    pub config: crate::pg_tls::PgTarget,
    /// This Warden's chain, which carries the anchors.
    pub chain: String,
    pub key: SigningKey,
    pub recorder: Recorder,
    pub policy: Policy,
}

/// What one partition held of one chain: the last seq and hash, and how many records.
struct Cut {
    chain: String,
    through: u64,
    hash: String,
    records: u64,
    /// A signed mark of a removal through `through` is already there (an earlier try anchored it).
    marked: bool,
}

/// Days from 1970-01-01 to the first of month `m` (proleptic Gregorian).
fn days_to((y, m): Month) -> i64 {
    let (y, m) = (i64::from(y) - i64::from(m <= 2), i64::from(m));
    let era = y.div_euclid(400);
    let yoe = y - era * 400;
    let doy = (153 * (if m > 2 { m - 3 } else { m + 9 }) + 2) / 5;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    era * 146_097 + doe - 719_468
}

impl Pruner {
    /// Try every `every` on a thread of its own, the first time now.
    pub fn start(self, every: Duration) {
        let spawned = std::thread::Builder::new().name("warden-audit-retention".into()).spawn(move || loop {
            match self.run_once() {
                Ok(gone) if !gone.is_empty() => tracing::info!(partitions = ?gone, "audit retention: partitions dropped"),
                Ok(_) => {}
                Err(e) => tracing::error!(error = %e, "audit retention refused or failed; nothing more dropped (tried again later) — run warden audit verify"),
            }
            std::thread::sleep(every);
        });
        if let Err(e) = spawned {
            tracing::error!(error = %e, "audit retention: cannot start its thread");
        }
    }

    /// Drop what the policy no longer keeps; the partitions dropped. Nothing when another
    /// Warden is at it.
    pub fn run_once(&self) -> Result<Vec<String>, String> {
        let mut db = connect(&self.config)?;
        let locked: bool = db
            .query_one("SELECT pg_try_advisory_lock(hashtext('warden_audit_retention'))", &[])
            .map_err(|e| message(&e))?
            .get(0);
        if !locked {
            return Ok(Vec::new());
        }
        crate::pg_schema::ensure_partitions(&mut db)?;
        let now_month = this_month(&mut db)?;
        let now: f64 = db.query_one("SELECT extract(epoch FROM now())::float8", &[]).map_err(|e| message(&e))?.get(0);
        let parts = partitions(&mut db)?;
        let mut size: u64 = parts.iter().map(|p| p.bytes).sum();
        let mut gone = Vec::new();
        for p in parts {
            if p.month >= now_month {
                break;
            }
            let ended = days_to(next_month(p.month)) * 86_400;
            let old = self.policy.keep_age.is_some_and(|a| (ended as f64) + a.as_secs_f64() <= now);
            let big = self.policy.keep_bytes.is_some_and(|b| size > b);
            if !(old || big) {
                break;
            }
            self.remove(&mut db, &p.name, ended)?;
            size = size.saturating_sub(p.bytes);
            gone.push(p.name);
        }
        Ok(gone)
    }

    /// The latest signed marks of `chain`'s earlier removals.
    fn marks(&self, db: &mut impl postgres::GenericClient, chain: &str) -> Result<Vec<Mark>, String> {
        let public = self.key.public_key();
        let rows = db
            .query(
                "SELECT through, hash, sig FROM audit_retention WHERE chain = $1 ORDER BY through DESC LIMIT $2",
                &[&chain, &MARKS],
            )
            .map_err(|e| message(&e))?;
        Ok(rows
            .iter()
            .map(|r| Mark { through: r.get::<_, i64>(0) as u64, hash: r.get(1), sig: r.get(2) })
            .filter(|m| crate::signing::verify(&public, &payload(chain, m.through, &m.hash), &m.sig).is_ok())
            .collect())
    }

    /// Each chain's part of partition `name` (whose month ended at `ended`, seconds since the
    /// epoch), checked (the module comment), and the partition's rows and highest id.
    fn walk(&self, db: &mut postgres::Client, name: &str, ended: i64) -> Result<(Vec<Cut>, i64, i64), String> {
        let mut cuts: Vec<Cut> = Vec::new();
        let mut marks: Vec<Mark> = Vec::new();
        let mut last: Option<(u64, String)> = None;
        let (mut rows_seen, mut max_id) = (0i64, 0i64);
        // A record's own (hashed) time must be in its month: rows moved into an old month by
        // changing `stored_at` are not old, and get no cut signed. A day of slack for clocks.
        let latest = std::time::UNIX_EPOCH + Duration::from_secs((ended + 86_400).max(0) as u64);
        let mut tx = db.transaction().map_err(|e| message(&e))?;
        let portal = tx
            .bind(&format!("SELECT chain, record, id FROM {name} ORDER BY chain, seq"), &[])
            .map_err(|e| message(&e))?;
        loop {
            let rows = tx.query_portal(&portal, 5_000).map_err(|e| message(&e))?;
            if rows.is_empty() {
                break;
            }
            for r in rows {
                let (chain, record, id): (String, String, i64) = (r.get(0), r.get(1), r.get(2));
                (rows_seen, max_id) = (rows_seen + 1, max_id.max(id));
                let at = |why: &str| format!("{name}: chain {chain:?}: {why}");
                if cuts.last().is_none_or(|c| c.chain != chain) {
                    if let (Some(c), Some((through, hash))) = (cuts.last_mut(), last.take()) {
                        (c.through, c.hash) = (through, hash);
                    }
                    if cuts.len() >= MAX_CHAINS {
                        return Err(format!("{name} holds more than {MAX_CHAINS} chains"));
                    }
                    if chain.is_empty() || chain.chars().any(char::is_control) {
                        return Err(at("not a chain name Warden writes"));
                    }
                    marks = self.marks(&mut tx, &chain)?;
                    cuts.push(Cut { chain: chain.clone(), through: 0, hash: String::new(), records: 0, marked: false });
                }
                let v: serde_json::Value = serde_json::from_str(&record).map_err(|_| at("a row is not a record"))?;
                let e: Event = serde_json::from_value(v.clone()).map_err(|_| at("a row is not a record"))?;
                if e.chain != chain {
                    return Err(at(&format!("seq {}: the row's chain column differs from its record", e.seq)));
                }
                if humantime::parse_rfc3339(&e.ts).map_or(true, |t| t > latest) {
                    return Err(at(&format!(
                        "seq {}: recorded at {}, after this month: moved here, not old",
                        e.seq, e.ts
                    )));
                }
                step(&mut last, &v, &e, &marks).map_err(|w| at(&w))?;
                let c = cuts.last_mut().expect("pushed");
                c.records += 1;
                c.marked = marks.iter().any(|m| m.through == e.seq && m.hash == e.hash.clone().unwrap_or_default());
            }
        }
        if let (Some(c), Some((through, hash))) = (cuts.last_mut(), last.take()) {
            (c.through, c.hash) = (through, hash);
        }
        tx.commit().map_err(|e| message(&e))?;
        // The kept trail continues exactly after each part, or the chain ends with it.
        for c in &cuts {
            let next = db
                .query_opt(
                    "SELECT record FROM audit_events WHERE chain = $1 AND seq = $2",
                    &[&c.chain, &(c.through as i64 + 1)],
                )
                .map_err(|e| message(&e))?;
            match next.map(|r| serde_json::from_str::<Event>(&r.get::<_, String>(0))) {
                Some(Ok(e)) if e.prev == c.hash => {}
                Some(_) => {
                    return Err(format!(
                        "{name}: chain {}: the record after seq {} does not continue from it",
                        c.chain, c.through
                    ))
                }
                None => {
                    let head: Option<i64> = db
                        .query_opt("SELECT seq FROM audit_heads WHERE chain = $1", &[&c.chain])
                        .map_err(|e| message(&e))?
                        .map(|r| r.get(0));
                    if head != Some(c.through as i64) {
                        return Err(format!(
                            "{name}: chain {}: seq {} is missing, after the last record in this partition",
                            c.chain,
                            c.through + 1
                        ));
                    }
                }
            }
        }
        Ok((cuts, rows_seen, max_id))
    }

    /// Anchor every chain of partition `name`, then drop it, unless rows came since the walk.
    fn remove(&self, db: &mut postgres::Client, name: &str, ended: i64) -> Result<(), String> {
        let (cuts, rows, max_id) = self.walk(db, name, ended)?;
        let why = match (self.policy.keep_age, self.policy.keep_bytes) {
            (Some(a), Some(b)) => format!("keep {} and at most {b} bytes", humantime::format_duration(a)),
            (Some(a), None) => format!("keep {}", humantime::format_duration(a)),
            (None, Some(b)) => format!("keep at most {b} bytes"),
            (None, None) => String::new(),
        };
        let mut ticket = None;
        // A chain already marked through here was anchored by an earlier try whose drop failed.
        for c in cuts.iter().filter(|c| !c.marked) {
            let mut e = Event::new("audit", "success");
            e.detail = Some("retention".into());
            e.count = Some(c.records);
            e.anchor = Some(Anchor {
                chain: Some(c.chain.clone()),
                hash: c.hash.clone(),
                removed: vec![name.to_string()],
                through: c.through,
                why: why.clone(),
            });
            ticket = Some(self.recorder.record(e).map_err(|_| "the audit queue is full; nothing dropped")?);
        }
        // Stored means signed: the writer signs a checkpoint right after a batch with an anchor.
        if let Some(t) = ticket {
            if !self.recorder.stored_blocking(t, Duration::from_secs(60)) {
                return Err(format!("{name}: the anchors were not stored within a minute; nothing dropped"));
            }
        }
        let mut tx = db.transaction().map_err(|e| message(&e))?;
        for c in &cuts {
            let sig = self.key.sign(&payload(&c.chain, c.through, &c.hash));
            tx.execute(
                "INSERT INTO audit_retention (chain, through, hash, sig) VALUES ($1, $2, $3, $4) ON CONFLICT DO NOTHING",
                &[&c.chain, &(c.through as i64), &c.hash, &sig],
            )
            .map_err(|e| message(&e))?;
            tx.execute(
                "DELETE FROM audit_retention WHERE chain = $1 AND through NOT IN \
                 (SELECT through FROM audit_retention WHERE chain = $1 ORDER BY through DESC LIMIT $2)",
                &[&c.chain, &MARKS],
            )
            .map_err(|e| message(&e))?;
        }
        tx.commit().map_err(|e| message(&e))?;
        // The drop: writers wait behind its lock at most a few seconds (else tried next time),
        // and only the rows walked go (a row stored since, by a clock at the month's end, stays).
        let mut tx = db.transaction().map_err(|e| message(&e))?;
        tx.batch_execute(&format!("SET LOCAL lock_timeout = '5s'; LOCK TABLE {name} IN ACCESS EXCLUSIVE MODE"))
            .map_err(|e| format!("{name}: {}", message(&e)))?;
        let now = tx
            .query_one(&format!("SELECT count(*), coalesce(max(id), 0) FROM {name}"), &[])
            .map_err(|e| message(&e))?;
        if (now.get::<_, i64>(0), now.get::<_, i64>(1)) != (rows, max_id) {
            return Err(format!("{name}: rows were stored in it since it was checked; checked again next time"));
        }
        tx.batch_execute(&format!("DROP TABLE {name}")).map_err(|e| format!("{name}: {}", message(&e)))?;
        tx.commit().map_err(|e| message(&e))?;
        tracing::info!(chain = %self.chain, partition = name, chains = cuts.len(),
            records = cuts.iter().map(|c| c.records).sum::<u64>(), "audit retention: partition dropped after its signed anchors");
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn days_to_a_month_start() {
        assert_eq!(super::days_to((1970, 1)), 0);
        assert_eq!(super::days_to((2000, 3)), 11_017);
        assert_eq!(super::days_to((2026, 12)), 20_788);
    }
}
