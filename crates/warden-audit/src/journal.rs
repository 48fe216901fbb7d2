//! The acknowledgement journal: each event is appended here, by the caller, before the request
//! it records is answered (one `write` under the queue's lock, in queue order); the writer then
//! stores it in the trail at its own pace. A record is thereby on disk — in the kernel's cache,
//! which survives Warden being killed, not a power cut (as `fsync = "never"`) — microseconds after
//! it is made, instead of after the trail's commit.
//!
//! Every sealed record carries the journal position of the last journaled event stored with or
//! before it (`Event::journal`), so the trail itself says how far the journal is stored,
//! atomically with the records. At start, the events after that position are stored again
//! ([`Journal::open`] returns them): what a killed Warden acknowledged is never lost.
//!
//! Two segment files take turns: the active one is closed at [`SEGMENT_BYTES`] and the next
//! opened; the closed one is deleted once the writer stores an event of the next. The journal is
//! bounded by the queue's capacity beyond that, and removed at a clean stop. Each segment names
//! its chain; one Warden instance has its own journal (`<trail>.<instance>.journal.*`).
//!
//! Defends against: losing acknowledged records when Warden is killed between the answer and the
//! trail's commit (a segment it cannot read stops the start rather than be overwritten). Does
//! not defend against: a power cut (with `fsync = "batch"` or `"event"` Warden acknowledges after
//! the commit instead), or someone editing the journal before the next start (it is not chained;
//! the trail is, once stored).

use crate::event::Event;
use std::fs::File;
use std::io::{Seek, SeekFrom, Write};
use std::path::{Path, PathBuf};
use std::time::{Instant, SystemTime};

/// A segment is closed past this size.
pub const SEGMENT_BYTES: u64 = 4 << 20;
/// Positions are `generation << 32 | byte offset` (they stay below 2^53, which JSON readers
/// that use doubles read exactly, for two million generations).
const GEN_SHIFT: u32 = 32;
/// A segment never grows past this (the writer is that far behind: appends are refused).
const MAX_SEGMENT: u64 = 1 << 31;

/// A journaled event's place, ordered like the journal.
pub fn position(generation: u64, offset: u64) -> u64 {
    (generation << GEN_SHIFT) | offset
}

/// The generation of a position.
pub fn generation_of(pos: u64) -> u64 {
    pos >> GEN_SHIFT
}

struct Segment {
    generation: u64,
    path: PathBuf,
    file: File,
    len: u64,
}

pub struct Journal {
    /// `<base>.a` and `<base>.b`.
    paths: [PathBuf; 2],
    chain: String,
    active: Segment,
    /// The closed segment still holding events not yet stored.
    closed: Option<(u64, PathBuf)>,
    /// A failed rotation is not tried again before this.
    rotate_after: Option<Instant>,
}

/// An event read back from the journal: when it was made, the event, and its position.
pub type Replayed = (SystemTime, Event, u64);

#[derive(serde::Serialize, serde::Deserialize)]
struct Header {
    warden_audit_journal: u32,
    chain: String,
    generation: u64,
}

#[derive(serde::Deserialize)]
struct Entry {
    at: String,
    event: Event,
}

/// An [`Entry`] as written, borrowing its event (no copy on the caller's path).
#[derive(serde::Serialize)]
struct EntryRef<'a> {
    at: String,
    event: &'a Event,
}

fn create(path: &Path, chain: &str, generation: u64) -> Result<Segment, String> {
    use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
    let err = |e: std::io::Error| format!("{}: {e}", path.display());
    let mut file =
        std::fs::OpenOptions::new().create(true).truncate(true).write(true).mode(0o600).open(path).map_err(err)?;
    // A file that was there keeps its mode through `truncate`: it is set.
    file.set_permissions(std::fs::Permissions::from_mode(0o600)).map_err(err)?;
    let header = Header { warden_audit_journal: 1, chain: chain.to_string(), generation };
    let head = format!("{}\n", serde_json::to_string(&header).expect("json"));
    file.write_all(head.as_bytes()).map_err(err)?;
    Ok(Segment { generation, path: path.to_path_buf(), file, len: head.len() as u64 })
}

/// A segment's header and its events with their positions (a torn last line is ignored; a
/// damaged line is counted). `None`: no such file. An unreadable segment is an error: what it
/// holds may be acknowledged records.
fn read(path: &Path) -> Result<Option<(Header, Vec<Replayed>, usize)>, String> {
    let text = match std::fs::read(path) {
        Ok(t) => t,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(format!("{}: {e}", path.display())),
    };
    let mut lines = text.split_inclusive(|&b| b == b'\n');
    let unreadable = || format!("{}: not an audit journal segment (move it aside to start)", path.display());
    let first = lines.next().ok_or_else(unreadable)?;
    let header: Header = serde_json::from_slice(first).map_err(|_| unreadable())?;
    let mut offset = first.len() as u64;
    let (mut out, mut damaged) = (Vec::new(), 0);
    for l in lines {
        offset += l.len() as u64;
        if !l.ends_with(b"\n") {
            break;
        }
        let Ok(e) = serde_json::from_slice::<Entry>(l) else {
            damaged += 1;
            continue;
        };
        let at = humantime::parse_rfc3339(&e.at).unwrap_or_else(|_| SystemTime::now());
        out.push((at, e.event, position(header.generation, offset)));
    }
    Ok(Some((header, out, damaged)))
}

fn paths(base: &Path) -> [PathBuf; 2] {
    let name = |s: &str| {
        let mut p = base.as_os_str().to_owned();
        p.push(s);
        PathBuf::from(p)
    };
    [name(".a"), name(".b")]
}

/// What the journal at `base` (`<base>.a`, `<base>.b`) holds of `chain` after `stored` (the
/// trail's last journal position; `None`: none), in order — to be stored before anything new —
/// and the newest generation found. A segment of another chain is left out (and said so).
pub fn unstored(base: &Path, chain: &str, stored: Option<u64>) -> Result<(u64, Vec<Replayed>), String> {
    let mut found = Vec::new();
    for p in paths(base) {
        let Some((h, events, damaged)) = read(&p)? else { continue };
        if h.chain != chain {
            tracing::warn!(path = %p.display(), chain = %h.chain, "audit journal segment of another chain; left alone");
            continue;
        }
        if damaged > 0 {
            tracing::error!(path = %p.display(), lines = damaged, "audit journal: damaged lines skipped");
        }
        found.push((h.generation, events));
    }
    found.sort_by_key(|f| f.0);
    let after = stored.unwrap_or(0);
    let newest = found.last().map_or(0, |f| f.0);
    Ok((newest, found.into_iter().flat_map(|(_, ev)| ev.into_iter().filter(|r| r.2 > after)).collect()))
}

/// Remove the journal's segments (everything in them is stored).
pub fn remove(base: &Path) {
    for p in paths(base) {
        let _ = std::fs::remove_file(p);
    }
}

impl Journal {
    /// A fresh journal of `chain` at `base` with `generation` (after [`unstored`]'s events are
    /// stored: the old segments are replaced).
    pub fn start(base: &Path, chain: &str, generation: u64) -> Result<Journal, String> {
        let paths = paths(base);
        if let Some(d) = base.parent().filter(|d| !d.as_os_str().is_empty()) {
            std::fs::create_dir_all(d).map_err(|e| format!("{}: {e}", d.display()))?;
        }
        let _ = std::fs::remove_file(&paths[1]);
        let active = create(&paths[0], chain, generation)?;
        Ok(Journal { paths, chain: chain.to_string(), active, closed: None, rotate_after: None })
    }

    /// Append `e` (made `at`); its position. On an error nothing of it stays in the journal.
    pub fn append(&mut self, at: SystemTime, e: &Event) -> Result<u64, String> {
        if self.active.len >= MAX_SEGMENT {
            return Err(format!("{}: the writer is too far behind", self.active.path.display()));
        }
        let entry = EntryRef { at: humantime::format_rfc3339_micros(at).to_string(), event: e };
        let mut line = serde_json::to_vec(&entry).map_err(|e| e.to_string())?;
        line.push(b'\n');
        if let Err(err) = self.active.file.write_all(&line) {
            // A partial line would join the next one (and shift every position after it).
            let len = self.active.len;
            let _ = self.active.file.set_len(len);
            let _ = self.active.file.seek(SeekFrom::Start(len));
            return Err(format!("{}: {err}", self.active.path.display()));
        }
        self.active.len += line.len() as u64;
        let pos = position(self.active.generation, self.active.len);
        let due = self.rotate_after.is_none_or(|t| Instant::now() >= t);
        if self.active.len >= SEGMENT_BYTES && self.closed.is_none() && due {
            // The event is in the journal either way: a failed rotation is tried again later.
            let other = if self.active.path == self.paths[0] { &self.paths[1] } else { &self.paths[0] };
            match create(other, &self.chain, self.active.generation + 1) {
                Ok(next) => {
                    let old = std::mem::replace(&mut self.active, next);
                    self.closed = Some((old.generation, old.path));
                    self.rotate_after = None;
                }
                Err(err) => {
                    tracing::error!(error = %err, "audit journal: cannot open the next segment; the current one grows");
                    self.rotate_after = Some(Instant::now() + std::time::Duration::from_secs(10));
                }
            }
        }
        Ok(pos)
    }

    /// The trail stored everything up to `pos`: a closed segment wholly before it goes.
    pub fn stored(&mut self, pos: u64) {
        if let Some((g, path)) = &self.closed {
            if generation_of(pos) > *g {
                let _ = std::fs::remove_file(path);
                self.closed = None;
            }
        }
    }
}
