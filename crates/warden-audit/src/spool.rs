//! A disk spool between the writer and a forwarder (a SIEM over HTTP, an OTLP collector): the
//! writer appends every stored record (one line each) and never waits on the destination; the
//! forwarder reads from its delivered offset, sends, and commits the new offset. The spool
//! survives restarts (the offset is a file beside it), so nothing is lost while the
//! destination is down, up to `max_bytes`; beyond that records are dropped from the forward
//! copy only (the trail itself keeps them), counted and logged. Delivery is at least once: a
//! batch sent whose answer was lost is sent again, and records carry `chain` and `seq` to
//! de-duplicate on.

use crate::sink::Sealed;
use parking_lot::Mutex;
use std::fs::File;
use std::io::{Read, Seek, SeekFrom, Write};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};

pub struct Spool {
    path: PathBuf,
    offset_path: PathBuf,
    max_bytes: u64,
    /// The data file (append) and its length; the offset delivered.
    state: Mutex<State>,
    dropped: AtomicU64,
}

struct State {
    file: File,
    len: u64,
    delivered: u64,
}

impl Spool {
    /// Open (or create) the spool at `path`, with its offset at `<path>.offset`.
    pub fn open(path: &Path, max_bytes: u64) -> Result<Spool, String> {
        use std::os::unix::fs::OpenOptionsExt;
        let err = |e: std::io::Error| format!("{}: {e}", path.display());
        if let Some(d) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
            std::fs::create_dir_all(d).map_err(|e| format!("{}: {e}", d.display()))?;
        }
        let file =
            std::fs::OpenOptions::new().read(true).append(true).create(true).mode(0o600).open(path).map_err(err)?;
        let len = file.metadata().map_err(err)?.len();
        let mut offset_path = path.as_os_str().to_owned();
        offset_path.push(".offset");
        let offset_path = PathBuf::from(offset_path);
        let delivered =
            std::fs::read_to_string(&offset_path).ok().and_then(|s| s.trim().parse::<u64>().ok()).unwrap_or(0).min(len);
        Ok(Spool {
            path: path.to_path_buf(),
            offset_path,
            max_bytes,
            state: Mutex::new(State { file, len, delivered }),
            dropped: AtomicU64::new(0),
        })
    }

    /// Append stored records (the writer's thread). Never blocks on delivery.
    pub fn append(&self, batch: &[Sealed]) {
        let mut buf = Vec::with_capacity(batch.iter().map(|s| s.line.len() + 1).sum());
        for s in batch {
            buf.extend_from_slice(s.line.as_bytes());
            buf.push(b'\n');
        }
        let mut st = self.state.lock();
        if st.len - st.delivered + buf.len() as u64 > self.max_bytes {
            if self.dropped.fetch_add(batch.len() as u64, Ordering::Relaxed) == 0 {
                tracing::error!(spool = %self.path.display(), "audit forward spool is full; dropping records from the forward copy (the trail keeps them)");
            }
            return;
        }
        match st.file.write_all(&buf) {
            Ok(()) => st.len += buf.len() as u64,
            Err(e) => {
                self.dropped.fetch_add(batch.len() as u64, Ordering::Relaxed);
                tracing::error!(spool = %self.path.display(), error = %e, "cannot append to the audit forward spool");
                // a partial line would corrupt the next read: cut back to the last whole one
                let _ = st.file.set_len(st.len);
            }
        }
    }

    /// Up to `max` undelivered lines (and at most about 4 MiB), with the offset after them.
    pub fn read(&self, max: usize) -> Result<(Vec<String>, u64), String> {
        let (from, to) = {
            let st = self.state.lock();
            (st.delivered, st.len)
        };
        if from >= to {
            return Ok((Vec::new(), from));
        }
        let err = |e: std::io::Error| format!("{}: {e}", self.path.display());
        let mut f = File::open(&self.path).map_err(err)?;
        f.seek(SeekFrom::Start(from)).map_err(err)?;
        let mut buf = Vec::new();
        f.take((to - from).min(4 << 20)).read_to_end(&mut buf).map_err(err)?;
        let mut lines = Vec::new();
        let mut used = 0usize;
        for l in buf.split_inclusive(|&b| b == b'\n') {
            if lines.len() == max || l.last() != Some(&b'\n') {
                break;
            }
            used += l.len();
            lines.push(String::from_utf8_lossy(&l[..l.len() - 1]).into_owned());
        }
        Ok((lines, from + used as u64))
    }

    /// Mark everything before `offset` delivered. An emptied spool starts again at zero.
    pub fn commit(&self, offset: u64) -> Result<(), String> {
        let mut st = self.state.lock();
        st.delivered = offset.min(st.len);
        if st.delivered == st.len {
            st.file.set_len(0).map_err(|e| format!("{}: {e}", self.path.display()))?;
            st.len = 0;
            st.delivered = 0;
        }
        let tmp = self.offset_path.with_extension("offset.tmp");
        std::fs::write(&tmp, st.delivered.to_string())
            .and_then(|()| std::fs::rename(&tmp, &self.offset_path))
            .map_err(|e| format!("{}: {e}", self.offset_path.display()))
    }

    /// Bytes waiting for delivery.
    pub fn pending(&self) -> u64 {
        let st = self.state.lock();
        st.len - st.delivered
    }

    /// Records dropped from the forward copy (spool full or unwritable).
    pub fn dropped(&self) -> u64 {
        self.dropped.load(Ordering::Relaxed)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::Event;

    fn sealed(i: u64) -> Sealed {
        let mut e = Event::new("call", "success");
        e.seq = i;
        Sealed { line: format!("{{\"seq\":{i}}}"), event: e }
    }

    #[test]
    fn delivers_in_order_across_reopen_and_drops_only_beyond_its_cap() {
        let dir = std::env::temp_dir().join(format!("warden-spool-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        let path = dir.join("s.spool");
        let s = Spool::open(&path, 1 << 20).unwrap();
        s.append(&(1..=5).map(sealed).collect::<Vec<_>>());
        let (lines, next) = s.read(3).unwrap();
        assert_eq!(lines, ["{\"seq\":1}", "{\"seq\":2}", "{\"seq\":3}"]);
        s.commit(next).unwrap();
        drop(s);
        // a restart resumes after what was delivered
        let s = Spool::open(&path, 1 << 20).unwrap();
        let (lines, next) = s.read(100).unwrap();
        assert_eq!(lines, ["{\"seq\":4}", "{\"seq\":5}"]);
        s.commit(next).unwrap();
        assert_eq!((s.pending(), std::fs::metadata(&path).unwrap().len()), (0, 0), "an emptied spool is truncated");
        // over the cap: dropped and counted, the rest still flows
        let s = Spool::open(&path, 30).unwrap();
        s.append(&(1..=2).map(sealed).collect::<Vec<_>>());
        s.append(&(3..=4).map(sealed).collect::<Vec<_>>());
        assert_eq!(s.dropped(), 2);
        assert_eq!(s.read(10).unwrap().0.len(), 2);
    }
}
