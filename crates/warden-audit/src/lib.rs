//! Warden's audit trail (stage 9 of DESIGN.md): one [`Event`] per operation, linked in a
//! SHA-256 hash chain with Ed25519-signed checkpoints, written by one thread behind a bounded
//! queue to a JSONL file or a SQLite database, and checked by [`verify::Report`].
#![forbid(unsafe_code)]

pub mod event;
pub mod recorder;
pub mod signing;
pub mod sink;
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

/// Open the sink for `path` (JSONL by extension, else SQLite).
pub fn open_sink(path: &Path, fsync: Fsync) -> Result<Box<dyn sink::Sink>, String> {
    Ok(if sink::is_jsonl(path) {
        Box::new(sink::Jsonl::open(path, fsync)?)
    } else {
        Box::new(sink::Sqlite::open(path, fsync)?)
    })
}

const PAGE: usize = 10_000;

/// Visit the stored records of the log at `path` after `cursor` (a line count for JSONL, a row
/// id for SQLite), in order; returns the new cursor.
pub fn scan(
    path: &Path,
    cursor: i64,
    filter: Option<&Filter>,
    mut visit: impl FnMut(&sink::Stored) -> bool,
) -> Result<i64, String> {
    if sink::is_jsonl(path) {
        let mut n = 0i64;
        for s in sink::read_jsonl(path)? {
            n += 1;
            if n <= cursor {
                continue;
            }
            let s = s?;
            if s.line.is_empty() {
                continue;
            }
            let keep = filter.is_none_or(|f| serde_json::from_str::<Event>(&s.line).is_ok_and(|e| f.matches(&e)));
            if keep && !visit(&s) {
                return Ok(n);
            }
        }
        Ok(n.max(cursor))
    } else {
        let mut after = cursor;
        loop {
            let page = sink::read_sqlite(path, after, filter, PAGE)?;
            let Some(last) = page.last().map(|p| p.0) else { return Ok(after) };
            for (id, s) in &page {
                if !visit(s) {
                    return Ok(*id);
                }
            }
            after = last;
        }
    }
}

/// Verify the log at `path` (and its checkpoint file, if there is one).
pub fn verify(path: &Path, public_key: Option<&str>) -> Result<verify::Report, String> {
    let mut r = verify::Report::new(public_key);
    scan(path, 0, None, |s| {
        r.add(s);
        true
    })?;
    let cp = checkpoint_path(path);
    match std::fs::read_to_string(&cp) {
        Ok(text) => r.anchor(&text.lines().map(str::to_string).collect::<Vec<_>>()),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            r.notes.push(format!("no checkpoint file {}: truncation of the log's end cannot be detected", cp.display()))
        }
        Err(e) => return Err(format!("{}: {e}", cp.display())),
    }
    r.finish();
    Ok(r)
}

#[cfg(test)]
mod tests;
