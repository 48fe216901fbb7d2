//! Warden's audit trail (stage 9 of DESIGN.md): one [`Event`] per operation, linked in a
//! SHA-256 hash chain with Ed25519-signed checkpoints, written by one thread behind a bounded
//! queue to a JSONL file, a SQLite database or PostgreSQL, and checked by [`verify::Report`].
#![forbid(unsafe_code)]

pub mod event;
pub mod journal;
pub mod pg;
pub mod pg_retain;
pub mod pg_schema;
pub mod pg_tls;
pub mod recorder;
pub mod retain;
pub mod segments;
pub mod signing;
pub mod sink;
pub mod spool;
pub mod sqlite_schema;
pub mod verify;

pub use event::{Anchor, Checkpoint, Event};
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
#[derive(Debug, Clone, PartialEq)]
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

    /// A PostgreSQL trail's connection settings (None: a file trail).
    pub fn pg(&self) -> Option<Result<crate::pg_tls::PgTarget, String>> {
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

/// Visit every stored record of `store` in order, a file trail's segments first (oldest
/// first, then the active file); returns the active file's cursor (for [`scan`] to follow it).
pub fn scan_all(
    store: &Store,
    filter: Option<&Filter>,
    mut visit: impl FnMut(&sink::Stored) -> bool,
) -> Result<i64, String> {
    let Store::File(active) = store else { return scan(store, 0, filter, visit) };
    let mut open = true;
    for (_, seg) in segments::segments(active)? {
        scan(&Store::File(seg), 0, filter, |s| {
            open = visit(s);
            open
        })?;
        if !open {
            return Ok(0);
        }
    }
    if !active.exists() {
        return Ok(0);
    }
    scan(store, 0, filter, visit)
}

/// Where a reader following a trail stands: a cursor in the active file (what [`scan_all`] or
/// [`follow`] returned), and that file's first record, which tells a rotation apart.
#[derive(Debug, Default, Clone)]
pub struct Following {
    pub cursor: i64,
    pub first: Option<String>,
}

fn first_line(active: &Path) -> Option<String> {
    let mut first = None;
    scan(&Store::File(active.to_path_buf()), 0, None, |s| {
        first = Some(s.line.clone());
        false
    })
    .ok()?;
    first
}

/// Follow a file trail from `at` across rotations: when the active file's first record is not
/// the one seen before, the file was rotated since — the rest of the segment it became is read
/// first (the newest segment whose first record it is), then the new active file from its start.
pub fn follow(store: &Store, at: &mut Following, visit: impl FnMut(&sink::Stored) -> bool) -> Result<(), String> {
    let Store::File(active) = store else {
        at.cursor = scan(store, at.cursor, None, visit)?;
        return Ok(());
    };
    let now_first = first_line(active);
    let rotated = at.first.is_some() && now_first != at.first;
    let mut visit = visit;
    let mut open = true;
    if rotated {
        // The segment the followed file became, then any made since, then the active file.
        let before = at.first.clone();
        let all = segments::segments(active)?;
        let from = all.iter().rposition(|(_, p)| first_line(p) == before);
        for (i, (_, seg)) in all.iter().enumerate().skip(from.unwrap_or(all.len())) {
            let start = if Some(i) == from { at.cursor } else { 0 };
            scan(&Store::File(seg.clone()), start, None, |s| {
                open = visit(s);
                open
            })?;
            if !open {
                break;
            }
        }
        at.cursor = 0;
    }
    at.first = now_first;
    if !open || !active.exists() {
        return Ok(());
    }
    at.cursor = scan(store, at.cursor, None, visit)?;
    Ok(())
}

/// What an export wrote of one chain: its first and last seq, and how many records.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Exported {
    pub first: u64,
    pub last: u64,
    pub records: u64,
}

/// Give `out` the stored lines of `store` from the first to the last of each chain whose time
/// is in `[since, until)` (RFC 3339, either open; times are nearly, not strictly, in seq order),
/// each chain continued to its next checkpoint, so that the end of what is exported is signed:
/// `warden audit export`. Verify the trail first; the export verifies alone
/// ([`verify::Expect::exported`]).
pub fn export(
    store: &Store,
    since: Option<&str>,
    until: Option<&str>,
    out: impl FnMut(&str) -> Result<(), String>,
) -> Result<std::collections::BTreeMap<String, Exported>, String> {
    export_archived(store, None, since, until, out)
}

/// [`export`], with a file trail's archived segments read too (in the order of their numbers),
/// so that a range the retention policy moved to the archive can still be handed over.
pub fn export_archived(
    store: &Store,
    archive: Option<&Path>,
    since: Option<&str>,
    until: Option<&str>,
    out: impl FnMut(&str) -> Result<(), String>,
) -> Result<std::collections::BTreeMap<String, Exported>, String> {
    let (Store::File(active), Some(dir)) = (store, archive) else {
        return export_from(|visit| scan_all(store, None, visit).map(drop), since, until, out);
    };
    let scratch = scratch_dir();
    let result = segments::unpack(active, dir, &scratch).and_then(|unpacked| {
        let live: Vec<Store> = segments::files(active)?.into_iter().map(Store::File).collect();
        let files = in_order(store, &unpacked, &live);
        let each = |visit: &mut dyn FnMut(&sink::Stored) -> bool| -> Result<(), String> {
            for f in &files {
                let mut open = true;
                scan(f, 0, None, |s| {
                    open = visit(s);
                    open
                })?;
                if !open {
                    break;
                }
            }
            Ok(())
        };
        export_from(each, since, until, out)
    });
    let _ = std::fs::remove_dir_all(&scratch);
    result
}

/// The two passes of an export over what `each` visits (every record, in order, each time).
fn export_from(
    each: impl Fn(&mut dyn FnMut(&sink::Stored) -> bool) -> Result<(), String>,
    since: Option<&str>,
    until: Option<&str>,
    mut out: impl FnMut(&str) -> Result<(), String>,
) -> Result<std::collections::BTreeMap<String, Exported>, String> {
    let within = |ts: &str| since.is_none_or(|f| ts >= f) && until.is_none_or(|u| ts < u);
    // First pass: each chain's first and last seq in the range.
    let mut bounds: std::collections::BTreeMap<String, (u64, u64)> = Default::default();
    each(&mut |s| {
        if let Ok(e) = serde_json::from_str::<Event>(&s.line) {
            if within(&e.ts) {
                let b = bounds.entry(e.chain).or_insert((e.seq, e.seq));
                b.0 = b.0.min(e.seq);
                b.1 = b.1.max(e.seq);
            }
        }
        true
    })?;
    let mut done: std::collections::BTreeMap<String, Exported> = Default::default();
    let mut closed: std::collections::HashSet<String> = Default::default();
    let mut failed = None;
    each(&mut |s| {
        let Ok(e) = serde_json::from_str::<Event>(&s.line) else { return true };
        let Some(&(first, last)) = bounds.get(&e.chain) else { return true };
        if e.seq < first || closed.contains(&e.chain) {
            return true;
        }
        if e.seq >= last && e.checkpoint.is_some() {
            closed.insert(e.chain.clone());
        }
        if let Err(err) = out(&s.line) {
            failed = Some(err);
            return false;
        }
        let x = done.entry(e.chain).or_insert(Exported { first: e.seq, last: 0, records: 0 });
        x.last = e.seq;
        x.records += 1;
        true
    })?;
    match failed {
        Some(e) => Err(e),
        None => Ok(done),
    }
}

/// Verify the trail in `store` against its checkpoint files (one per writing instance; none is
/// a problem), trusting only `expect.key`.
pub fn verify(store: &Store, checkpoints: &[PathBuf], expect: verify::Expect) -> Result<verify::Report, String> {
    verify_archived(store, None, checkpoints, expect)
}

/// [`verify`], with a file trail's archived segments (`[audit.retention] archive_dir`) read
/// first: the whole trail from its first record, whatever the retention policy moved away.
pub fn verify_archived(
    store: &Store,
    archive: Option<&Path>,
    checkpoints: &[PathBuf],
    mut expect: verify::Expect,
) -> Result<verify::Report, String> {
    expect.complete |= archive.is_some();
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
    // A file trail: its segments oldest first, then the active file (`segments.rs`).
    // Archived segments unpacked into a scratch directory, removed when done.
    let scratch = scratch_dir();
    let unpacked = match (store, archive) {
        (Store::File(path), Some(dir)) => match segments::unpack(path, dir, &scratch) {
            Ok(files) => files,
            Err(e) => {
                let _ = std::fs::remove_dir_all(&scratch);
                return Err(e);
            }
        },
        _ => Vec::new(),
    };
    // A running Warden may rotate (or apply retention) while the trail is read: then the files
    // read are not the trail any more, and it is read again (a few times at most).
    let live = |store: &Store| -> Result<Vec<Store>, String> {
        Ok(match store {
            Store::File(path) => segments::files(path)?.into_iter().map(Store::File).collect(),
            Store::Postgres { .. } => vec![store.clone()],
        })
    };
    let fresh = r.clone_empty();
    let mut attempt = 0;
    let result = loop {
        attempt += 1;
        let listed = match live(store) {
            Ok(l) => l,
            Err(e) => break Err(e),
        };
        let files = in_order(store, &unpacked, &listed);
        let mut this = fresh.clone_empty();
        let read = verify_files(&mut this, &files);
        let moved = read.is_err() || live(store).map(|l| l != listed).unwrap_or(true);
        if moved && attempt < 3 && matches!(store, Store::File(_)) {
            continue;
        }
        r = this;
        break read;
    };
    let _ = std::fs::remove_dir_all(&scratch);
    result?;
    if let Some(config) = store.pg() {
        r.add_marks(&pg::marks(&config?)?);
    }
    r.anchor(&lines);
    r.finish(given || !checkpoints.is_empty());
    Ok(r)
}

/// Archived (unpacked) and live parts of a trail in the order of their segment numbers (a
/// segment whose archiving failed is still live, between archived ones), the active file last.
fn in_order(store: &Store, unpacked: &[PathBuf], live: &[Store]) -> Vec<Store> {
    let mut files: Vec<Store> = unpacked.iter().cloned().map(Store::File).collect();
    files.extend(live.iter().cloned());
    if let (Store::File(active), false) = (store, unpacked.is_empty()) {
        let name = |s: &Store| match s {
            Store::File(p) => p.file_name().map(|n| n.to_owned()),
            Store::Postgres { .. } => None,
        };
        let active_name = active.file_name().map(|n| n.to_owned());
        files.sort_by_key(|f| (name(f) == active_name, segment_number(active, f)));
    }
    files
}

/// A scratch directory for unpacked archived segments (removed by the caller).
fn scratch_dir() -> PathBuf {
    std::env::temp_dir().join(format!(
        "warden-audit-{}-{}",
        std::process::id(),
        std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(0, |d| d.as_nanos())
    ))
}

/// The number in a segment's name (the active file's: none).
fn segment_number(active: &Path, f: &Store) -> Option<u64> {
    let Store::File(p) = f else { return None };
    let (stem, ext) = segments::name_parts(active);
    let name = p.file_name()?.to_string_lossy().into_owned();
    name.strip_prefix(&format!("{stem}."))?.strip_suffix(ext.as_str())?.parse().ok()
}

fn verify_files(r: &mut verify::Report, files: &[Store]) -> Result<(), String> {
    let named = files.len() > 1;
    for part in files {
        let end = scan(part, 0, None, |s| {
            match (named, part) {
                (true, Store::File(path)) => {
                    let name = path.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default();
                    let location = format!("{name} {}", s.location);
                    r.add(&sink::Stored { location, line: s.line.clone(), columns: s.columns.clone() });
                }
                _ => r.add(s),
            }
            true
        })?;
        if let Store::File(path) = part {
            if !sink::is_jsonl(path) {
                for p in sqlite_schema::problems(path)? {
                    r.problem(p);
                }
            }
        }
        if let Store::File(path) = part {
            let len = std::fs::metadata(path).map_or(0, |m| m.len());
            if sink::is_jsonl(path) && len > end as u64 {
                r.notes.push(format!(
                    "{}: ends in a partial record ({} bytes): a write cut short",
                    path.display(),
                    len - end as u64
                ));
            }
        }
    }
    Ok(())
}

#[cfg(test)]
mod segment_tests;
#[cfg(test)]
mod tests;
