//! Where sealed records go: a JSONL file or a SQLite database (WAL). Both are written by the
//! recorder's one writer thread, a batch at a time (group commit), and read back by the
//! verifier and `warden audit query`/`tail`.

use crate::event::Event;
use crate::sqlite_schema::{SCHEMA_V1, SCHEMA_V2};
use crate::Filter;
use rusqlite::{params, Connection, OpenFlags};
use std::fs::File;
use std::io::{BufRead, BufReader, Read, Seek, SeekFrom, Write};
use std::path::{Path, PathBuf};

/// A record sealed by the writer: the event and its stored line.
pub struct Sealed {
    pub event: Event,
    pub line: String,
}

/// When a sink forces its writes to stable storage.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, serde::Deserialize, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Fsync {
    /// Never: a record is in the OS once written, so it survives Warden being killed, not a
    /// power cut (SQLite `synchronous = NORMAL` in WAL mode).
    #[default]
    Never,
    /// After each batch (group commit): survives a power cut once acknowledged.
    Batch,
    /// After each event: batches of one.
    Event,
}

/// Where a chain stands: its last record's seq and hash, and how far it holds the
/// acknowledgement journal (`journal.rs`).
#[derive(Debug, Clone, PartialEq)]
pub struct Head {
    pub seq: u64,
    pub hash: String,
    pub journal: Option<u64>,
}

impl Head {
    /// From a stored record's JSON.
    pub fn of(v: &serde_json::Value) -> Result<Head, String> {
        Ok(Head {
            seq: v["seq"].as_u64().ok_or("a record without seq")?,
            hash: v["hash"].as_str().ok_or("a record without hash")?.to_string(),
            journal: v["journal"].as_u64(),
        })
    }
}

pub trait Sink: Send {
    /// Where `chain` stands, if it has records.
    fn head(&mut self, chain: &str) -> Result<Option<Head>, String>;
    /// Append a batch, atomically where the sink can.
    fn append(&mut self, batch: &[Sealed]) -> Result<(), String>;
    /// Move what is written to `to` (a closed segment) and continue in a fresh file at the same
    /// place (`segments.rs`). Only file sinks can.
    fn rotate(&mut self, _to: &Path) -> Result<(), String> {
        Err("this audit store does not rotate".into())
    }
    /// The size of what is written, for rotation (a SQLite database's pages, wherever they are:
    /// its write-ahead log keeps up to 16 MiB beside it). None: not a file.
    fn written_bytes(&mut self) -> Option<u64> {
        None
    }
}

/// A record as stored, with where it is (for the verifier's messages).
pub struct Stored {
    pub location: String,
    pub line: String,
    /// The indexed columns a database keeps beside the record (chain, seq, kind, subject,
    /// tenant, server, name, decision, status, hash), to be checked against it.
    pub columns: Option<Vec<Option<String>>>,
}

/// The kind of store at `path`, by its extension: `.jsonl`/`.log` → JSONL, else SQLite.
pub fn is_jsonl(path: &Path) -> bool {
    matches!(path.extension().and_then(|e| e.to_str()), Some("jsonl" | "log" | "ndjson"))
}

// ---------------------------------------------------------------------------------------------
// JSONL

pub struct Jsonl {
    file: File,
    fsync: Fsync,
    path: PathBuf,
    buf: Vec<u8>,
}

impl Jsonl {
    pub fn open(path: &Path, fsync: Fsync) -> Result<Jsonl, String> {
        use std::os::unix::fs::OpenOptionsExt;
        let err = |e: std::io::Error| format!("{}: {e}", path.display());
        if let Some(d) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
            std::fs::create_dir_all(d).map_err(|e| format!("{}: {e}", d.display()))?;
        }
        let mut file =
            std::fs::OpenOptions::new().read(true).append(true).create(true).mode(0o600).open(path).map_err(err)?;
        // A record cut short (power cut mid-write) cannot be verified or extended: drop it so
        // new records start on a line of their own; the verifier reports the gap it leaves.
        let len = file.metadata().map_err(err)?.len();
        if len > 0 {
            let mut last = [0u8];
            file.seek(SeekFrom::Start(len - 1)).map_err(err)?;
            file.read_exact(&mut last).map_err(err)?;
            if last[0] != b'\n' {
                let keep = last_newline(&mut file, len).map_err(err)?;
                tracing::warn!(path = %path.display(), bytes = len - keep, "audit log ends in a partial record; cut it off");
                file.set_len(keep).map_err(err)?;
            }
        }
        Ok(Jsonl { file, fsync, path: path.to_path_buf(), buf: Vec::with_capacity(1 << 20) })
    }
}

/// The length of `f` up to and including its last newline (0 if none).
fn last_newline(f: &mut File, len: u64) -> std::io::Result<u64> {
    let mut end = len;
    let mut block = vec![0u8; 64 * 1024];
    while end > 0 {
        let start = end.saturating_sub(block.len() as u64);
        let n = (end - start) as usize;
        f.seek(SeekFrom::Start(start))?;
        f.read_exact(&mut block[..n])?;
        if let Some(i) = block[..n].iter().rposition(|&b| b == b'\n') {
            return Ok(start + i as u64 + 1);
        }
        end = start;
    }
    Ok(0)
}

impl Sink for Jsonl {
    fn written_bytes(&mut self) -> Option<u64> {
        self.file.metadata().ok().map(|m| m.len())
    }

    fn head(&mut self, chain: &str) -> Result<Option<Head>, String> {
        match jsonl_head(&self.path, chain)? {
            Some(h) => Ok(Some(h)),
            None => head_in_segments(&self.path, chain),
        }
    }

    fn append(&mut self, batch: &[Sealed]) -> Result<(), String> {
        let err = |e: std::io::Error| format!("{}: {e}", self.path.display());
        self.buf.clear();
        for (i, s) in batch.iter().enumerate() {
            self.buf.extend_from_slice(s.line.as_bytes());
            self.buf.push(b'\n');
            if self.fsync == Fsync::Event {
                self.file.write_all(&self.buf).map_err(err)?;
                self.file.sync_data().map_err(err)?;
                self.buf.clear();
            } else if self.buf.len() > (1 << 20) && i + 1 < batch.len() {
                self.file.write_all(&self.buf).map_err(err)?;
                self.buf.clear();
            }
        }
        self.file.write_all(&self.buf).map_err(err)?;
        if self.fsync == Fsync::Batch {
            self.file.sync_data().map_err(err)?;
        }
        Ok(())
    }

    fn rotate(&mut self, to: &Path) -> Result<(), String> {
        self.file.sync_all().map_err(|e| format!("{}: {e}", self.path.display()))?;
        std::fs::rename(&self.path, to).map_err(|e| format!("{} → {}: {e}", self.path.display(), to.display()))?;
        crate::segments::sync_dir(self.path.parent().unwrap_or(Path::new(".")));
        match Jsonl::open(&self.path, self.fsync) {
            Ok(fresh) => {
                *self = fresh;
                Ok(())
            }
            Err(e) => {
                // Back where it was: the writer keeps appending to the same file.
                let _ = std::fs::rename(to, &self.path);
                Err(e)
            }
        }
    }
}

/// An active file with no record of `chain` (a fresh one after a rotation, Warden stopped
/// before writing to it): the chain continues from its newest segment, not from seq 1.
fn head_in_segments(active: &Path, chain: &str) -> Result<Option<Head>, String> {
    for (_, seg) in crate::segments::segments(active)?.into_iter().rev() {
        let h = if is_jsonl(&seg) { jsonl_head(&seg, chain)? } else { sqlite_head(&seg, chain)? };
        if h.is_some() {
            return Ok(h);
        }
    }
    Ok(None)
}

/// The last record of `chain` in a JSONL file, read backwards a block at a time.
pub fn jsonl_head(path: &Path, chain: &str) -> Result<Option<Head>, String> {
    // Read backwards a block at a time for the last record of this chain.
    let err = |e: std::io::Error| format!("{}: {e}", path.display());
    let mut f = File::open(path).map_err(err)?;
    let mut end = f.metadata().map_err(err)?.len();
    let mut carry: Vec<u8> = Vec::new();
    let mut block = vec![0u8; 256 * 1024];
    while end > 0 {
        let start = end.saturating_sub(block.len() as u64);
        let n = (end - start) as usize;
        f.seek(SeekFrom::Start(start)).map_err(err)?;
        f.read_exact(&mut block[..n]).map_err(err)?;
        let mut data = block[..n].to_vec();
        data.extend_from_slice(&carry);
        let mut lines: Vec<&[u8]> = data.split(|&b| b == b'\n').collect();
        let first = if start > 0 { Some(lines.remove(0).to_vec()) } else { None };
        for l in lines.iter().rev().filter(|l| !l.is_empty()) {
            if let Ok(v) = serde_json::from_slice::<serde_json::Value>(l) {
                if v["chain"] == chain {
                    return Head::of(&v).map(Some);
                }
            }
        }
        carry = first.unwrap_or_default();
        end = start;
    }
    Ok(None)
}

/// Every whole line of a JSONL log from byte `from` on, with the byte offset after it. Lines are
/// numbered from 1 at `from` (true line numbers when `from` is 0). A last line without its
/// newline (a write in progress) is left for the next read.
pub fn read_jsonl(path: &Path, from: u64) -> Result<impl Iterator<Item = Result<(u64, Stored), String>>, String> {
    let mut f = File::open(path).map_err(|e| format!("{}: {e}", path.display()))?;
    f.seek(SeekFrom::Start(from)).map_err(|e| format!("{}: {e}", path.display()))?;
    let mut r = BufReader::with_capacity(1 << 20, f);
    let (mut at, mut n) = (from, 0u64);
    Ok(std::iter::from_fn(move || {
        let mut l = Vec::new();
        match r.read_until(b'\n', &mut l) {
            Ok(0) => None,
            Ok(_) if l.last() != Some(&b'\n') => None,
            Ok(k) => {
                at += k as u64;
                n += 1;
                l.pop();
                let line = String::from_utf8(l).unwrap_or_else(|e| String::from_utf8_lossy(e.as_bytes()).into_owned());
                Some(Ok((at, Stored { location: format!("line {n}"), line, columns: None })))
            }
            Err(e) => Some(Err(e.to_string())),
        }
    }))
}

// ---------------------------------------------------------------------------------------------
// SQLite

/// The columns stored beside each record, in [`Stored::columns`] order.
pub const COLUMNS: [&str; 10] =
    ["chain", "seq", "kind", "subject", "tenant", "server", "name", "decision", "status", "hash"];

pub struct Sqlite {
    conn: Connection,
    /// The database has [`SCHEMA_V2`].
    v2: bool,
    /// Stopped (None) while the file is being rotated.
    wal: Option<Checkpointer>,
    path: PathBuf,
    fsync: Fsync,
}

/// Records written since the last checkpoint past which the checkpointer moves the WAL into
/// the database (a commit of one record with its index entries is about four pages: about
/// SQLite's own default of 1,000 pages), and the WAL size past which the writer does so itself (the checkpointer cannot
/// keep up). After a checkpoint, the WAL file is cut back to `WAL_KEEP_BYTES`.
const WAL_CHECKPOINT_RECORDS: u64 = 250;
const WAL_WRITER_PAGES: u32 = 16_384;
const WAL_KEEP_BYTES: u64 = 16 << 20;

/// Moves the write-ahead log into the database on a thread of its own (a passive checkpoint,
/// which neither waits for nor blocks the writer), once enough records were written since the
/// last one. Left to SQLite, the commit that fills the WAL does it, and the call waiting for
/// that record waits for a copy of ~4 MB and an fsync: the audit trail's p99.
struct Checkpointer {
    stop: std::sync::Arc<std::sync::atomic::AtomicBool>,
    /// Records appended since the last checkpoint.
    written: std::sync::Arc<std::sync::atomic::AtomicU64>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl Checkpointer {
    fn start(path: &Path) -> Result<Checkpointer, String> {
        use std::sync::atomic::Ordering;
        let conn = Connection::open(path).map_err(|e| format!("{}: {e}", path.display()))?;
        conn.busy_timeout(std::time::Duration::from_millis(100)).map_err(|e| e.to_string())?;
        let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
        let written = std::sync::Arc::new(std::sync::atomic::AtomicU64::new(0));
        let (s, w) = (stop.clone(), written.clone());
        let thread = std::thread::Builder::new()
            .name("audit-wal".into())
            .spawn(move || {
                let mut warned: Option<std::time::Instant> = None;
                while !s.load(Ordering::Acquire) {
                    std::thread::park_timeout(std::time::Duration::from_millis(50));
                    if w.load(Ordering::Acquire) < WAL_CHECKPOINT_RECORDS {
                        continue;
                    }
                    let seen = w.load(Ordering::Acquire);
                    // (busy, frames in the WAL, frames checkpointed): a checkpoint that could not
                    // take every frame (the writer was committing) is tried again next time.
                    let done = conn.query_row("PRAGMA wal_checkpoint(PASSIVE)", [], |r| {
                        Ok((r.get::<_, i64>(1)?, r.get::<_, i64>(2)?))
                    });
                    match done {
                        Ok((log, moved)) if moved >= log => {
                            w.fetch_sub(seen, Ordering::AcqRel);
                        }
                        Ok(_) => {}
                        // Logged at most once a minute; the writer checkpoints past 64 MiB itself.
                        Err(e) if warned.is_none_or(|t| t.elapsed().as_secs() >= 60) => {
                            tracing::warn!(error = %e, "audit WAL checkpoint failed; the writer will do it");
                            warned = Some(std::time::Instant::now());
                        }
                        Err(_) => {}
                    }
                }
            })
            .map_err(|e| e.to_string())?;
        Ok(Checkpointer { stop, written, thread: Some(thread) })
    }
}

impl Drop for Checkpointer {
    fn drop(&mut self) {
        self.stop.store(true, std::sync::atomic::Ordering::Release);
        if let Some(t) = self.thread.take() {
            t.thread().unpark();
            let _ = t.join();
        }
    }
}

impl Sqlite {
    pub fn open(path: &Path, fsync: Fsync) -> Result<Sqlite, String> {
        if let Some(d) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
            std::fs::create_dir_all(d).map_err(|e| format!("{}: {e}", d.display()))?;
        }
        let err = |e: rusqlite::Error| format!("{}: {e}", path.display());
        let conn = Connection::open(path).map_err(err)?;
        use std::os::unix::fs::PermissionsExt;
        let _ = std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o600));
        let sync = if fsync == Fsync::Never { "NORMAL" } else { "FULL" };
        conn.execute_batch(&format!(
            "PRAGMA journal_mode = WAL; PRAGMA synchronous = {sync}; PRAGMA busy_timeout = 5000; \
             PRAGMA wal_autocheckpoint = {WAL_WRITER_PAGES}; PRAGMA journal_size_limit = {WAL_KEEP_BYTES};"
        ))
        .map_err(err)?;
        let exists: bool = conn
            .query_row(
                "SELECT count(*) > 0 FROM sqlite_master WHERE type = 'table' AND name = 'audit_events'",
                [],
                |r| r.get(0),
            )
            .map_err(err)?;
        if !exists {
            conn.execute_batch(SCHEMA_V2).map_err(err)?;
        }
        let version: i64 = conn.query_row("PRAGMA user_version", [], |r| r.get(0)).map_err(err)?;
        if exists && version < 2 {
            conn.execute_batch(SCHEMA_V1).map_err(err)?; // its indexes, if one went missing
        }
        Ok(Sqlite { conn, v2: version >= 2, wal: Some(Checkpointer::start(path)?), path: path.to_path_buf(), fsync })
    }
}

fn head_row(conn: &Connection, chain: &str) -> Result<Option<Head>, String> {
    let v2 = conn.query_row("PRAGMA user_version", [], |r| r.get::<_, i64>(0)).map_err(|e| e.to_string())? >= 2;
    let sql = if v2 {
        // The rows' order is the chain's: the last row of the chain, found from the end.
        "SELECT record FROM audit_events WHERE chain = ?1 ORDER BY id DESC LIMIT 1"
    } else {
        "SELECT record FROM audit_events WHERE chain = ?1 ORDER BY seq DESC, id DESC LIMIT 1"
    };
    let mut st = conn.prepare_cached(sql).map_err(|e| e.to_string())?;
    let mut rows = st.query(params![chain]).map_err(|e| e.to_string())?;
    match rows.next().map_err(|e| e.to_string())? {
        Some(r) => {
            let line: String = r.get(0).map_err(|e| e.to_string())?;
            let v: serde_json::Value = serde_json::from_str(&line).map_err(|e| format!("the last record: {e}"))?;
            Head::of(&v).map(Some)
        }
        None => Ok(None),
    }
}

/// The last record of `chain` in a SQLite trail file (opened read-only).
pub fn sqlite_head(path: &Path, chain: &str) -> Result<Option<Head>, String> {
    head_row(&open_ro(path)?, chain)
}

impl Sink for Sqlite {
    fn written_bytes(&mut self) -> Option<u64> {
        let pages: i64 = self.conn.query_row("PRAGMA page_count", [], |r| r.get(0)).ok()?;
        let size: i64 = self.conn.query_row("PRAGMA page_size", [], |r| r.get(0)).ok()?;
        Some((pages.max(0) as u64).saturating_mul(size.max(0) as u64))
    }

    fn head(&mut self, chain: &str) -> Result<Option<Head>, String> {
        match head_row(&self.conn, chain)? {
            Some(h) => Ok(Some(h)),
            None => head_in_segments(&self.path, chain),
        }
    }

    /// The write-ahead log moved into the database and emptied, the checkpointer stopped (its
    /// connection must not touch the next file's log), every connection closed, then the file
    /// renamed and a fresh one opened. On a failure the file is put back and reopened.
    fn rotate(&mut self, to: &Path) -> Result<(), String> {
        let at = |e: rusqlite::Error| format!("{}: {e}", self.path.display());
        // (busy, frames in the log, frames moved): a reader holding a snapshot keeps frames in
        // the log, and a file renamed without them would lose them. Not now, then: later.
        let (busy, log, moved): (i64, i64, i64) = self
            .conn
            .query_row("PRAGMA wal_checkpoint(TRUNCATE)", [], |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)))
            .map_err(at)?;
        if busy != 0 || moved < log {
            return Err(format!("{}: a reader holds the write-ahead log; rotation postponed", self.path.display()));
        }
        self.wal = None;
        let closed = std::mem::replace(&mut self.conn, Connection::open_in_memory().map_err(|e| e.to_string())?);
        if let Err((conn, e)) = closed.close() {
            self.conn = conn;
            self.wal = Some(Checkpointer::start(&self.path)?);
            return Err(format!("{}: {e}", self.path.display()));
        }
        let mut wal = self.path.as_os_str().to_owned();
        wal.push("-wal");
        if std::fs::metadata(Path::new(&wal)).is_ok_and(|m| m.len() > 0) {
            *self = Sqlite::open(&self.path, self.fsync)?;
            return Err(format!("{}: its write-ahead log is not empty; rotation postponed", self.path.display()));
        }
        let moved =
            std::fs::rename(&self.path, to).map_err(|e| format!("{} → {}: {e}", self.path.display(), to.display()));
        if moved.is_ok() {
            crate::segments::sync_dir(self.path.parent().unwrap_or(Path::new(".")));
        }
        match moved.and_then(|()| Sqlite::open(&self.path, self.fsync)) {
            Ok(fresh) => {
                *self = fresh;
                Ok(())
            }
            Err(e) => {
                if !self.path.exists() {
                    let _ = std::fs::rename(to, &self.path);
                }
                *self = Sqlite::open(&self.path, self.fsync)?;
                Err(e)
            }
        }
    }

    fn append(&mut self, batch: &[Sealed]) -> Result<(), String> {
        let tx = self.conn.transaction().map_err(|e| e.to_string())?;
        {
            if self.v2 {
                let mut st =
                    tx.prepare_cached("INSERT INTO audit_events (record) VALUES (?1)").map_err(|e| e.to_string())?;
                for s in batch {
                    st.execute(params![s.line]).map_err(|e| e.to_string())?;
                }
            } else {
                let mut st = tx
                    .prepare_cached(
                        "INSERT INTO audit_events (chain, seq, ts, kind, subject, tenant, server, name, decision, status, hash, record) \
                         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12)",
                    )
                    .map_err(|e| e.to_string())?;
                for s in batch {
                    let e = &s.event;
                    st.execute(params![
                        e.chain,
                        e.seq as i64,
                        e.ts,
                        e.kind,
                        e.subject,
                        e.tenant,
                        e.server,
                        e.name,
                        e.decision,
                        e.status,
                        e.hash,
                        s.line
                    ])
                    .map_err(|e| e.to_string())?;
                }
            }
        }
        tx.commit().map_err(|e| e.to_string())?;
        if let Some(w) = &self.wal {
            w.written.fetch_add(batch.len() as u64, std::sync::atomic::Ordering::AcqRel);
        }
        Ok(())
    }
}

pub(crate) fn open_ro(path: &Path) -> Result<Connection, String> {
    if !path.exists() {
        return Err(format!("{}: no such file", path.display()));
    }
    let c = Connection::open_with_flags(path, OpenFlags::SQLITE_OPEN_READ_ONLY | OpenFlags::SQLITE_OPEN_NO_MUTEX)
        .map_err(|e| format!("{}: {e}", path.display()))?;
    c.busy_timeout(std::time::Duration::from_secs(5)).map_err(|e| e.to_string())?;
    Ok(c)
}

/// A filter as SQL: ` AND col = <p>…` with numbered placeholders from `first` (`ph` writes
/// one: `?N` for SQLite, `$N` for PostgreSQL), and the values to bind, in order.
pub(crate) fn filter_sql(f: Option<&Filter>, first: usize, ph: impl Fn(usize) -> String) -> (String, Vec<String>) {
    let mut sql = String::new();
    let mut args = Vec::new();
    let Some(f) = f else { return (sql, args) };
    for (col, op, v) in [
        ("subject", "=", &f.subject),
        ("tenant", "=", &f.tenant),
        ("server", "=", &f.server),
        ("name", "=", &f.tool),
        ("decision", "=", &f.decision),
        ("status", "=", &f.status),
        ("kind", "=", &f.kind),
        ("ts", ">=", &f.since),
        ("ts", "<", &f.until),
    ] {
        if let Some(v) = v {
            sql.push_str(&format!(" AND {col} {op} {}", ph(first + args.len())));
            args.push(v.clone());
        }
    }
    (sql, args)
}

/// Records of a SQLite log in insertion order after row `after_id`, at most `limit` (0: all).
pub fn read_sqlite(path: &Path, after_id: i64, f: Option<&Filter>, limit: usize) -> Result<Vec<(i64, Stored)>, String> {
    let c = open_ro(path)?;
    let (filter, values) = filter_sql(f, 2, |n| format!("?{n}"));
    let mut sql =
        format!("SELECT id, {}, record FROM audit_events WHERE id > ?1{filter} ORDER BY id", COLUMNS.join(", "));
    if limit > 0 {
        sql.push_str(&format!(" LIMIT {limit}"));
    }
    let mut args: Vec<rusqlite::types::Value> = vec![after_id.into()];
    args.extend(values.into_iter().map(Into::into));
    let mut st = c.prepare(&sql).map_err(|e| e.to_string())?;
    let rows = st
        .query_map(rusqlite::params_from_iter(args), |r| {
            let id: i64 = r.get(0)?;
            let mut cols = Vec::with_capacity(COLUMNS.len());
            for i in 0..COLUMNS.len() {
                let v: rusqlite::types::Value = r.get(i + 1)?;
                cols.push(match v {
                    rusqlite::types::Value::Null => None,
                    rusqlite::types::Value::Integer(n) => Some(n.to_string()),
                    rusqlite::types::Value::Text(t) => Some(t),
                    other => Some(format!("{other:?}")),
                });
            }
            let line: String = r.get(COLUMNS.len() + 1)?;
            Ok((id, Stored { location: format!("row {id}"), line, columns: Some(cols) }))
        })
        .map_err(|e| e.to_string())?;
    rows.collect::<Result<Vec<_>, _>>().map_err(|e| e.to_string())
}
