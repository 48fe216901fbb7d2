//! A file trail in segments (issue 24). The writer appends to the active file at `path`; when
//! it is due ([`Rotation`]: its size, or its age), the writer signs a checkpoint (the segment's
//! last record), renames the file to the next segment, `<stem>.<n>.<ext>` (n from 1, six digits,
//! beside it), and continues the same chain in a fresh file: the first record of a segment
//! chains to the last of the one before. Readers take the segments oldest first, then the active
//! file ([`files`]).
//!
//! [`Retention`] removes the oldest segments past an age or a total size, never the active file.
//! Before a removal the writer records an [`crate::Anchor`] (the last seq and hash removed) and
//! signs it at once, so the verifier accepts a chain that starts after them — and only then.
//!
//! Does not defend against: someone removing segments and forging an anchor — the anchor is
//! signed, so that needs the signing key; a removal that fails after the anchor was written (the
//! segment stays and verifies, and the next look at the policy removes it).

use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime};

/// Make a rename in `dir` durable (a power cut after it keeps the new names), best effort.
pub fn sync_dir(dir: &Path) {
    let dir = if dir.as_os_str().is_empty() { Path::new(".") } else { dir };
    if let Ok(d) = std::fs::File::open(dir) {
        let _ = d.sync_all();
    }
}

/// When the active file becomes a segment (either limit; none: never).
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Rotation {
    pub max_bytes: Option<u64>,
    pub max_age: Option<Duration>,
}

/// Which segments go (none set: all are kept), and where (`archive`: compressed there; none:
/// removed).
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Retention {
    pub archive: Option<PathBuf>,
    /// Segments whose last record is older.
    pub keep_age: Option<Duration>,
    /// The oldest segments while the whole trail (segments and active file) is larger.
    pub keep_bytes: Option<u64>,
}

impl Retention {
    pub fn is_set(&self) -> bool {
        self.keep_age.is_some() || self.keep_bytes.is_some()
    }
}

/// The policy of one file trail.
#[derive(Debug, Clone)]
pub struct Policy {
    pub active: PathBuf,
    pub rotation: Rotation,
    pub retention: Retention,
}

/// `(stem, extension)` of the active file's name: `warden-audit.db` → (`warden-audit`, `.db`).
pub fn name_parts(active: &Path) -> (String, String) {
    let name = active.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default();
    match name.rfind('.') {
        Some(i) if i > 0 => (name[..i].to_string(), name[i..].to_string()),
        _ => (name, String::new()),
    }
}

/// The path of segment `n` of the trail whose active file is `active`.
pub fn segment_path(active: &Path, n: u64) -> PathBuf {
    let (stem, ext) = name_parts(active);
    active.with_file_name(format!("{stem}.{n:06}{ext}"))
}

/// The segments beside `active`, oldest first.
pub fn segments(active: &Path) -> Result<Vec<(u64, PathBuf)>, String> {
    let dir = match active.parent().filter(|d| !d.as_os_str().is_empty()) {
        Some(d) => d.to_path_buf(),
        None => PathBuf::from("."),
    };
    let (stem, ext) = name_parts(active);
    let entries = match std::fs::read_dir(&dir) {
        Ok(e) => e,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(vec![]),
        Err(e) => return Err(format!("{}: {e}", dir.display())),
    };
    let mut out = Vec::new();
    for entry in entries.flatten() {
        let name = entry.file_name().to_string_lossy().into_owned();
        let Some(middle) = name.strip_prefix(&format!("{stem}.")).and_then(|r| r.strip_suffix(ext.as_str())) else {
            continue;
        };
        // Only names Warden writes: n in its canonical form (six digits at least, no extra
        // leading zero), below a bound that leaves room for the next.
        if let Ok(n) = middle.parse::<u64>() {
            if format!("{n:06}") == middle && n < u64::MAX / 2 {
                out.push((n, entry.path()));
            }
        }
    }
    out.sort();
    Ok(out)
}

/// Every file of the trail in order: its segments, then the active file (when it exists).
pub fn files(active: &Path) -> Result<Vec<PathBuf>, String> {
    let mut all: Vec<PathBuf> = segments(active)?.into_iter().map(|(_, p)| p).collect();
    if active.exists() {
        all.push(active.to_path_buf());
    }
    Ok(all)
}

/// The number the next segment gets: past every segment beside the trail and every one archived
/// (a number is never used twice).
pub fn next_number(active: &Path, archive: Option<&Path>) -> Result<u64, String> {
    let mut top = segments(active)?.last().map_or(0, |(n, _)| *n);
    if let Some(dir) = archive.filter(|d| d.exists()) {
        top = top.max(archived(active, dir)?.last().map_or(0, |(n, _)| *n));
    }
    Ok(top + 1)
}

/// The archived segments of the trail at `active` in `dir`, oldest first: (n, file).
pub fn archived(active: &Path, dir: &Path) -> Result<Vec<(u64, PathBuf)>, String> {
    let (stem, ext) = name_parts(active);
    let entries = std::fs::read_dir(dir).map_err(|e| format!("{}: {e}", dir.display()))?;
    let mut found = Vec::new();
    for entry in entries.flatten() {
        let name = entry.file_name().to_string_lossy().into_owned();
        let Some(plain) = name.strip_suffix(".zst") else { continue };
        let Some(middle) = plain.strip_prefix(&format!("{stem}.")).and_then(|r| r.strip_suffix(ext.as_str())) else {
            continue;
        };
        if let Ok(n) = middle.parse::<u64>() {
            if format!("{n:06}") == middle {
                found.push((n, entry.path()));
            }
        }
    }
    found.sort();
    Ok(found)
}

/// Bytes a trail file takes on disk (a SQLite database with its write-ahead log; blocks
/// allocated, so a sparse file planted beside it counts for what it holds).
pub fn bytes(path: &Path) -> u64 {
    use std::os::unix::fs::MetadataExt;
    let len = |p: &Path| std::fs::metadata(p).map_or(0, |m| m.len().min(m.blocks() * 512));
    if crate::sink::is_jsonl(path) {
        return len(path);
    }
    let mut wal = path.as_os_str().to_owned();
    wal.push("-wal");
    len(path) + len(Path::new(&wal))
}

/// The segments `r` removes now, oldest first: those whose records are all older than
/// `keep_age` (the next file's first record is: record times, not file times, which anyone can
/// set), then the oldest while the trail is larger than `keep_bytes`.
pub fn expired(active: &Path, r: &Retention, now: SystemTime) -> Result<Vec<(u64, PathBuf)>, String> {
    let all = segments(active)?;
    let mut total: u64 = all.iter().map(|(_, p)| bytes(p)).sum::<u64>() + bytes(active);
    let mut out = Vec::new();
    for (i, (n, p)) in all.iter().enumerate() {
        let next = all.get(i + 1).map_or(active, |(_, q)| q.as_path());
        let old = r
            .keep_age
            .is_some_and(|age| first_time(next).is_some_and(|t| now.duration_since(t).is_ok_and(|d| d > age)));
        let over = r.keep_bytes.is_some_and(|max| total > max);
        if !(old || over) {
            break; // oldest first: keep this one and every newer one
        }
        total = total.saturating_sub(bytes(p));
        out.push((*n, p.clone()));
    }
    Ok(out)
}

/// The last record of `chain` in a closed segment: its seq and hash.
pub fn last_of(path: &Path, chain: &str) -> Result<Option<(u64, String)>, String> {
    let head = if crate::sink::is_jsonl(path) {
        crate::sink::jsonl_head(path, chain)?
    } else {
        crate::sink::sqlite_head(path, chain)?
    };
    Ok(head.map(|h| (h.seq, h.hash)))
}

/// When the first record of a trail file was written (None: no record, or unreadable).
pub fn first_time(path: &Path) -> Option<SystemTime> {
    let line = if crate::sink::is_jsonl(path) {
        let f = std::fs::File::open(path).ok()?;
        let mut l = String::new();
        std::io::BufRead::read_line(&mut std::io::BufReader::new(f), &mut l).ok()?;
        l
    } else {
        crate::sink::read_sqlite(path, 0, None, 1).ok()?.into_iter().next()?.1.line
    };
    let v: serde_json::Value = serde_json::from_str(line.trim_end()).ok()?;
    humantime::parse_rfc3339(v["ts"].as_str()?).ok()
}

/// Compress `segment` (zstd) into `dir` as `<name>.zst`, synced, then remove it. On an error
/// the segment stays where it is.
pub fn archive(segment: &Path, dir: &Path) -> Result<PathBuf, String> {
    use std::io::Write;
    use std::os::unix::fs::OpenOptionsExt;
    let name = segment.file_name().ok_or("a segment without a name")?.to_string_lossy().into_owned();
    std::fs::create_dir_all(dir).map_err(|e| format!("{}: {e}", dir.display()))?;
    let to = dir.join(format!("{name}.zst"));
    if to.exists() {
        return Err(format!("{} exists: an archived segment is never overwritten", to.display()));
    }
    let part = dir.join(format!(".{name}.zst.part"));
    let err = |e: std::io::Error| format!("{}: {e}", part.display());
    let src = std::fs::File::open(segment).map_err(|e| format!("{}: {e}", segment.display()))?;
    let out =
        std::fs::OpenOptions::new().write(true).create(true).truncate(true).mode(0o600).open(&part).map_err(err)?;
    let mut enc = zstd::stream::Encoder::new(out, 9).map_err(err)?;
    std::io::copy(&mut std::io::BufReader::new(src), &mut enc).map_err(err)?;
    let mut out = enc.finish().map_err(err)?;
    out.flush().map_err(err)?;
    out.sync_all().map_err(err)?;
    std::fs::rename(&part, &to).map_err(err)?;
    sync_dir(dir);
    std::fs::remove_file(segment).map_err(|e| format!("{}: {e}", segment.display()))?;
    Ok(to)
}

/// The archived segments of the trail at `active` found in `dir`, decompressed into `into`
/// (created 0700, each file 0600), oldest first (to be read before the live ones).
pub fn unpack(active: &Path, dir: &Path, into: &Path) -> Result<Vec<PathBuf>, String> {
    use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt};
    std::fs::DirBuilder::new()
        .mode(0o700)
        .recursive(true)
        .create(into)
        .map_err(|e| format!("{}: {e}", into.display()))?;
    let mut out = Vec::new();
    for (_, zst) in archived(active, dir)? {
        let plain =
            zst.file_name().map(|n| n.to_string_lossy().trim_end_matches(".zst").to_string()).unwrap_or_default();
        let to = into.join(&plain);
        let src = std::fs::File::open(&zst).map_err(|e| format!("{}: {e}", zst.display()))?;
        let mut dst = std::fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(0o600)
            .open(&to)
            .map_err(|e| format!("{}: {e}", to.display()))?;
        zstd::stream::copy_decode(std::io::BufReader::new(src), &mut dst)
            .map_err(|e| format!("{}: {e}", zst.display()))?;
        out.push(to);
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn segments_are_named_beside_the_active_file_and_listed_in_order() {
        let dir = std::env::temp_dir().join(format!("warden-segments-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        let active = dir.join("warden-audit.jsonl");
        assert_eq!(segment_path(&active, 3), dir.join("warden-audit.000003.jsonl"));
        assert_eq!(segment_path(&dir.join("trail"), 12), dir.join("trail.000012"));
        for n in [10u64, 2, 1_000_000] {
            std::fs::write(segment_path(&active, n), "x").unwrap();
        }
        for other in
            ["warden-audit.12.jsonl", "warden-audit.000001.db", "warden-audit.jsonl.checkpoints", "x.000001.jsonl"]
        {
            std::fs::write(dir.join(other), "x").unwrap();
        }
        std::fs::write(&active, "x").unwrap();
        let found: Vec<u64> = segments(&active).unwrap().into_iter().map(|(n, _)| n).collect();
        assert_eq!(found, [2, 10, 1_000_000]);
        assert_eq!(next_number(&active, None).unwrap(), 1_000_001);
        assert_eq!(files(&active).unwrap().last(), Some(&active));
        // Size: the oldest go until the trail fits; an age keeps the recent ones.
        let r = Retention { keep_age: None, keep_bytes: Some(2), archive: None };
        let gone: Vec<u64> = expired(&active, &r, SystemTime::now()).unwrap().into_iter().map(|(n, _)| n).collect();
        assert_eq!(gone, [2, 10], "4 bytes in 4 files: two oldest segments go to fit 2");
        let r = Retention { keep_age: Some(Duration::from_secs(3600)), keep_bytes: None, archive: None };
        assert!(expired(&active, &r, SystemTime::now()).unwrap().is_empty());
        let later = SystemTime::now() + Duration::from_secs(7200);
        assert!(expired(&active, &r, later).unwrap().is_empty(), "no record times to go by (not file times): kept");
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
