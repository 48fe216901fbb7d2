//! Warden's audit trail (stage 9 of DESIGN.md): one [`Event`] per operation, linked in a
//! SHA-256 hash chain with Ed25519-signed checkpoints, written by one thread behind a bounded
//! queue to a JSONL file, a SQLite database or PostgreSQL, and checked by [`verify::Report`].
#![forbid(unsafe_code)]

pub mod event;
pub mod journal;
pub mod pg;
pub mod recorder;
pub mod signing;
pub mod sink;
pub mod spool;
pub mod verify;

pub use event::{Checkpoint, Event};
pub use recorder::{Full, OnFull, Recorder, Settings, Ticket};
pub use sink::Fsync;

use std::path::{Path, PathBuf};

/// What `warden audit query` selects; every field set must match.
#[derive(Debug, Default, Clone)]
pub struct Filter {
    pub subject: Option<String>,
    pub tenant: Option<String>,
    pub server: Option<String>,
    pub tool: Option<String>,
    pub decision: Option<String>,
    pub status: Option<String>,
    pub kind: Option<String>,
    /// RFC 3339 bounds, `since` inclusive, `until` exclusive.
    pub since: Option<String>,
    pub until: Option<String>,
}

impl Filter {
    pub fn matches(&self, e: &Event) -> bool {
        let eq = |want: &Option<String>, have: Option<&String>| want.as_ref().is_none_or(|w| Some(w) == have);
        eq(&self.subject, e.subject.as_ref())
            && eq(&self.tenant, e.tenant.as_ref())
            && eq(&self.server, e.server.as_ref())
            && eq(&self.tool, e.name.as_ref())
            && eq(&self.decision, e.decision.as_ref())
            && eq(&self.status, Some(&e.status))
            && eq(&self.kind, Some(&e.kind))
            && self.since.as_ref().is_none_or(|s| e.ts.as_str() >= s.as_str())
            && self.until.as_ref().is_none_or(|u| e.ts.as_str() < u.as_str())
    }
}

/// The checkpoint file beside a log: `<log>.checkpoints`.
pub fn checkpoint_path(log: &Path) -> PathBuf {
    let mut s = log.as_os_str().to_owned();
    s.push(".checkpoints");
    PathBuf::from(s)
}

/// Where a trail is kept.
#[derive(Debug, Clone)]
pub enum Store {
    /// A JSONL file (`.jsonl`, `.log`, `.ndjson`) or else a SQLite database.
    File(PathBuf),
    /// A PostgreSQL database (table `audit_events`), shared by several Wardens.
    Postgres { url: String, password: Option<String> },
}

impl Store {
    /// For messages: the path, or the URL without its password.
    pub fn describe(&self) -> String {
        match self {
            Store::File(p) => p.display().to_string(),
            Store::Postgres { url, .. } => match (url.find("://"), url.rfind('@')) {
                (Some(s), Some(at)) if at > s => {
                    let user = &url[s + 3..at];
                    let user = user.split(':').next().unwrap_or_default();
                    format!("{}{user}@{}", &url[..s + 3], &url[at + 1..])
                }
                _ => url.clone(),
            },
        }
    }

    fn pg(&self) -> Option<Result<postgres::Config, String>> {
        match self {
            Store::Postgres { url, password } => Some(pg::config(url, password.as_deref(), "warden-audit")),
            Store::File(_) => None,
        }
    }
}

/// Open the sink for `store`. A PostgreSQL sink connects on first use, on the writer's thread.
pub fn open_sink(store: &Store, fsync: Fsync) -> Result<Box<dyn sink::Sink>, String> {
    Ok(match store {
        Store::Postgres { .. } => Box::new(pg::Postgres::new(store.pg().expect("postgres")?)),
        Store::File(path) if sink::is_jsonl(path) => Box::new(sink::Jsonl::open(path, fsync)?),
        Store::File(path) => Box::new(sink::Sqlite::open(path, fsync)?),
    })
}

const PAGE: usize = 10_000;

/// Reads the page of records after a row id.
type Pager<'a> = dyn FnMut(i64) -> Result<Vec<(i64, sink::Stored)>, String> + 'a;

/// Visit the stored records of `store` after `cursor` (a byte offset for JSONL, a row id for a
/// database), in order; returns the new cursor. Blocking: call it off any async runtime.
pub fn scan(
    store: &Store,
    cursor: i64,
    filter: Option<&Filter>,
    mut visit: impl FnMut(&sink::Stored) -> bool,
) -> Result<i64, String> {
    let mut page: Box<Pager> = match store {
        Store::File(path) if sink::is_jsonl(path) => {
            let mut at = cursor;
            for s in sink::read_jsonl(path, cursor.max(0) as u64)? {
                let (end, s) = s?;
                at = end as i64;
                if s.line.is_empty() {
                    continue;
                }
                let keep = filter.is_none_or(|f| serde_json::from_str::<Event>(&s.line).is_ok_and(|e| f.matches(&e)));
                if keep && !visit(&s) {
                    return Ok(at);
                }
            }
            return Ok(at);
        }
        Store::File(path) => Box::new(move |after| sink::read_sqlite(path, after, filter, PAGE)),
        Store::Postgres { .. } => {
            let mut r = pg::Reader::open(&store.pg().expect("postgres")?)?;
            Box::new(move |after| r.page(after, filter, PAGE))
        }
    };
    let mut after = cursor;
    loop {
        let rows = page(after)?;
        let Some(last) = rows.last().map(|p| p.0) else { return Ok(after) };
        for (id, s) in &rows {
            if !visit(s) {
                return Ok(*id);
            }
        }
        after = last;
    }
}

/// Verify the trail in `store` against its checkpoint files (one per writing instance; none is
/// a problem), trusting only `expect.key`.
pub fn verify(store: &Store, checkpoints: &[PathBuf], expect: verify::Expect) -> Result<verify::Report, String> {
    let mut r = verify::Report::new(expect);
    // The checkpoint files first: every checkpoint they hold was in the log before it was
    // appended to them, so a log read afterwards holds it too (verifying a running Warden).
    let mut lines = Vec::new();
    let mut given = false;
    for cp in checkpoints {
        match std::fs::read_to_string(cp) {
            Ok(text) => {
                given = true;
                lines.extend(text.lines().map(str::to_string));
            }
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => r.problem(format!(
                "no checkpoint file {}: it was deleted (every Warden writes one when it starts), or the wrong one was named",
                cp.display()
            )),
            Err(e) => return Err(format!("{}: {e}", cp.display())),
        }
    }
    let end = scan(store, 0, None, |s| {
        r.add(s);
        true
    })?;
    if let Store::File(path) = store {
        let len = std::fs::metadata(path).map_or(0, |m| m.len());
        if sink::is_jsonl(path) && len > end as u64 {
            r.notes.push(format!("the log ends in a partial record ({} bytes): a write cut short", len - end as u64));
        }
    }
    r.anchor(&lines);
    r.finish(given || !checkpoints.is_empty());
    Ok(r)
}

#[cfg(test)]
mod tests;
