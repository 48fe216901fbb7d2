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
//! bounded by the queue's capacity beyond that.
//!
//! Defends against: losing acknowledged records when Warden is killed between the answer and the
//! trail's commit. Does not defend against: a power cut (use `fsync = "batch"` and acknowledge
//! after the commit), or someone editing the journal (it is not chained; the trail is, once
//! stored).

use crate::event::Event;
use std::fs::File;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::time::SystemTime;

/// A segment is closed past this size.
pub const SEGMENT_BYTES: u64 = 4 << 20;
/// Positions are `generation << 40 | byte offset`.
const GEN_SHIFT: u32 = 40;

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
    active: Segment,
    /// The closed segment still holding events not yet stored.
    closed: Option<(u64, PathBuf)>,
}

/// An event read back from the journal: when it was made, the event, and its position.
pub type Replayed = (SystemTime, Event, u64);

#[derive(serde::Serialize, serde::Deserialize)]
struct Header {
    warden_audit_journal: u32,
    generation: u64,
}

#[derive(serde::Serialize, serde::Deserialize)]
struct Entry {
    at: String,
    event: Event,
}

fn create(path: &Path, generation: u64) -> Result<Segment, String> {
    use std::os::unix::fs::OpenOptionsExt;
    let err = |e: std::io::Error| format!("{}: {e}", path.display());
    let mut file =
        std::fs::OpenOptions::new().create(true).truncate(true).write(true).mode(0o600).open(path).map_err(err)?;
    let head = format!("{}\n", serde_json::to_string(&Header { warden_audit_journal: 1, generation }).expect("json"));
    file.write_all(head.as_bytes()).map_err(err)?;
    Ok(Segment { generation, path: path.to_path_buf(), file, len: head.len() as u64 })
}

/// A segment's generation and its events with their positions (a torn last line is ignored).
fn read(path: &Path) -> Option<(u64, Vec<Replayed>)> {
    let text = std::fs::read(path).ok()?;
    let mut lines = text.split_inclusive(|&b| b == b'\n');
    let first = lines.next()?;
    let header: Header = serde_json::from_slice(first).ok()?;
    let mut offset = first.len() as u64;
    let mut out = Vec::new();
    for l in lines {
        offset += l.len() as u64;
        if !l.ends_with(b"\n") {
            break;
        }
        let Ok(e) = serde_json::from_slice::<Entry>(l) else { continue };
        let at = humantime::parse_rfc3339(&e.at).unwrap_or_else(|_| SystemTime::now());
        out.push((at, e.event, position(header.generation, offset)));
    }
    Some((header.generation, out))
}

fn paths(base: &Path) -> [PathBuf; 2] {
    let name = |s: &str| {
        let mut p = base.as_os_str().to_owned();
        p.push(s);
        PathBuf::from(p)
    };
    [name(".a"), name(".b")]
}

/// What a journal at `base` (`<base>.a`, `<base>.b`) holds after `stored` (the trail's last
/// journal position; `None`: none), in order — to be stored before anything new — and the
/// newest generation found.
pub fn unstored(base: &Path, stored: Option<u64>) -> (u64, Vec<Replayed>) {
    let mut found: Vec<(u64, Vec<Replayed>)> = paths(base).iter().filter_map(|p| read(p)).collect();
    found.sort_by_key(|f| f.0);
    let after = stored.unwrap_or(0);
    let newest = found.last().map_or(0, |f| f.0);
    (newest, found.into_iter().flat_map(|(_, ev)| ev.into_iter().filter(|r| r.2 > after)).collect())
}

impl Journal {
    /// A fresh journal at `base` with `generation` (after [`unstored`]'s events are stored: the
    /// old segments are removed).
    pub fn start(base: &Path, generation: u64) -> Result<Journal, String> {
        let paths = paths(base);
        if let Some(d) = base.parent().filter(|d| !d.as_os_str().is_empty()) {
            std::fs::create_dir_all(d).map_err(|e| format!("{}: {e}", d.display()))?;
        }
        let _ = std::fs::remove_file(&paths[1]);
        let active = create(&paths[0], generation)?;
        Ok(Journal { paths, active, closed: None })
    }

    /// Append `e` (made `at`); its position. The write is whole or an error (a torn line is
    /// ignored when read back).
    pub fn append(&mut self, at: SystemTime, e: &Event) -> Result<u64, String> {
        let entry = Entry { at: humantime::format_rfc3339_micros(at).to_string(), event: e.clone() };
        let mut line = serde_json::to_vec(&entry).map_err(|e| e.to_string())?;
        line.push(b'\n');
        self.active.file.write_all(&line).map_err(|e| format!("{}: {e}", self.active.path.display()))?;
        self.active.len += line.len() as u64;
        let pos = position(self.active.generation, self.active.len);
        if self.active.len >= SEGMENT_BYTES && self.closed.is_none() {
            let other = if self.active.path == self.paths[0] { &self.paths[1] } else { &self.paths[0] };
            let next = create(other, self.active.generation + 1)?;
            let old = std::mem::replace(&mut self.active, next);
            self.closed = Some((old.generation, old.path));
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

    /// Bytes held in the journal's files (for tests and metrics).
    pub fn bytes(&self) -> u64 {
        let closed = self.closed.as_ref().and_then(|(_, p)| std::fs::metadata(p).ok()).map_or(0, |m| m.len());
        self.active.len + closed
    }
}
