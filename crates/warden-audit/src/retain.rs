//! What the writer checks before it signs a retention anchor (review of issue 24, finding H1):
//! that the segments it is about to remove are exactly the oldest history of its chain, so that
//! nobody with write access to the trail's directory (but not the signing key) can get Warden to
//! sign a cut of their choosing by planting, renaming or truncating files.
//!
//! - Every record of the chain in the expired files is re-hashed, in order, with consecutive
//!   `seq` and `prev` links.
//! - They start at the chain's start (seq 1 from genesis) or exactly where an earlier removal
//!   stopped, as the signed retention marks beside the trail say (`<path>.retention`: the last
//!   seq and hash of each of the latest removals, signed with the audit key, so none can be
//!   forged or moved; earlier ones stay valid, so a removal cut short by a crash after its mark
//!   was written is finished at the next).
//! - They end exactly where the first kept file's first record continues (its `prev` is the hash
//!   of the last record removed): the kept, signed trail commits to every removed record.
//!
//! Anything else refuses the removal (nothing is removed; an error is logged every time).
//!
//! Does not defend against: someone with the signing key; a replaced retention mark from an
//! earlier removal (refused, since the trail no longer starts there: a denial, not a cut).

use crate::event::{expected_hash, Event, GENESIS};
use crate::signing::SigningKey;
use crate::Store;
use std::path::{Path, PathBuf};

/// The last removal: through which seq, and that record's hash.
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct Mark {
    pub through: u64,
    pub hash: String,
    pub sig: String,
}

pub(crate) fn payload(chain: &str, through: u64, hash: &str) -> Vec<u8> {
    format!("warden-audit-retention/v1\n{chain}\n{through}\n{hash}").into_bytes()
}

/// Where the mark of the trail at `active` is kept.
pub fn mark_path(active: &Path) -> PathBuf {
    let mut s = active.as_os_str().to_owned();
    s.push(".retention");
    PathBuf::from(s)
}

/// Marks kept: the latest removals.
const MARKS: usize = 64;

/// The marks beside `active` signed by `key` for `chain` (any other line is ignored).
pub fn read_marks(active: &Path, chain: &str, key: &SigningKey) -> Vec<Mark> {
    let Ok(text) = std::fs::read_to_string(mark_path(active)) else { return Vec::new() };
    let public = key.public_key();
    text.lines()
        .filter_map(|l| serde_json::from_str::<Mark>(l).ok())
        .filter(|m| crate::signing::verify(&public, &payload(chain, m.through, &m.hash), &m.sig).is_ok())
        .collect()
}

/// Sign and add the mark of a removal through `through` (`hash`), keeping the latest [`MARKS`].
pub fn write_mark(active: &Path, chain: &str, key: &SigningKey, through: u64, hash: &str) -> Result<(), String> {
    let mut marks = read_marks(active, chain, key);
    marks.push(Mark { through, hash: hash.to_string(), sig: key.sign(&payload(chain, through, hash)) });
    let keep = marks.len().saturating_sub(MARKS);
    let text: String =
        marks[keep..].iter().map(|m| serde_json::to_string(m).expect("marks serialise") + "\n").collect();
    crate::signing::write_private(&mark_path(active), text.as_bytes())
}

/// After a removal through `through`: drop the lines of `chain` at or below it from the
/// checkpoint file at `path` (the records they sign are gone, as a signed anchor records; the
/// verifier expects nothing of them), so the file is as long as what is kept. Written beside it
/// and renamed over it; a shipper following the file sees a rotation.
pub fn prune_checkpoints(path: &Path, chain: &str, through: u64) -> Result<(), String> {
    let text = match std::fs::read_to_string(path) {
        Ok(t) => t,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(()),
        Err(e) => return Err(format!("{}: {e}", path.display())),
    };
    let gone = |l: &str| serde_json::from_str::<Event>(l).is_ok_and(|e| e.chain == chain && e.seq <= through);
    let kept: String = text.lines().filter(|l| !gone(l)).map(|l| format!("{l}\n")).collect();
    if kept.len() == text.len() {
        return Ok(());
    }
    let mut tmp = path.as_os_str().to_owned();
    tmp.push(".tmp");
    let tmp = PathBuf::from(tmp);
    crate::signing::write_private(&tmp, kept.as_bytes())?;
    std::fs::rename(&tmp, path).map_err(|e| format!("{}: {e}", path.display()))?;
    crate::segments::sync_dir(path.parent().unwrap_or(Path::new(".")));
    Ok(())
}

/// One more record of a chain about to be removed, oldest first: its hash re-derived, and it
/// follows `last` (the first: it starts the chain, or continues where a signed mark says an
/// earlier removal stopped). `last` becomes it.
pub(crate) fn step(
    last: &mut Option<(u64, String)>,
    v: &serde_json::Value,
    e: &Event,
    marks: &[Mark],
) -> Result<(), String> {
    if e.hash.as_deref() != Some(expected_hash(v).as_str()) {
        return Err(format!("seq {}: its hash does not match", e.seq));
    }
    let follows = match last.as_ref() {
        Some((seq, hash)) => e.seq == seq + 1 && e.prev == *hash,
        None => (e.seq == 1 && e.prev == GENESIS) || marks.iter().any(|m| e.seq == m.through + 1 && e.prev == m.hash),
    };
    if !follows {
        return Err(match last.as_ref() {
            Some((seq, _)) => format!("seq {} does not follow seq {seq}", e.seq),
            None => format!(
                "the oldest records start at seq {}, neither the chain's start nor where the last removal stopped",
                e.seq
            ),
        });
    }
    *last = Some((e.seq, e.hash.clone().unwrap_or_default()));
    Ok(())
}

/// Check `expired` (oldest first) against the rules above; the last record removed (seq, hash).
pub fn check(chain: &str, expired: &[PathBuf], first_kept: &Path, marks: &[Mark]) -> Result<(u64, String), String> {
    let mut last: Option<(u64, String)> = None;
    let mut problem: Option<String> = None;
    for f in expired {
        crate::scan(&Store::File(f.clone()), 0, None, |s| {
            let at = || format!("{} {}", f.display(), s.location);
            let Ok(v) = serde_json::from_str::<serde_json::Value>(&s.line) else {
                problem = Some(format!("{}: not a record", at()));
                return false;
            };
            let Ok(e) = serde_json::from_value::<Event>(v.clone()) else {
                problem = Some(format!("{}: not a record", at()));
                return false;
            };
            if e.chain != chain {
                return true;
            }
            if let Err(why) = step(&mut last, &v, &e, marks) {
                problem = Some(format!("{}: {why}", at()));
                return false;
            }
            true
        })?;
        if let Some(p) = problem {
            return Err(p);
        }
    }
    let (through, hash) = last.ok_or("the expired segments hold no record of this chain")?;
    let mut next: Option<Event> = None;
    crate::scan(&Store::File(first_kept.to_path_buf()), 0, None, |s| match serde_json::from_str::<Event>(&s.line) {
        Ok(e) if e.chain == chain => {
            next = Some(e);
            false
        }
        _ => true,
    })?;
    match next {
        Some(e) if e.seq == through + 1 && e.prev == hash => Ok((through, hash)),
        Some(e) => Err(format!(
            "{} starts at seq {} (prev {}), not after seq {through} of the expired segments",
            first_kept.display(),
            e.seq,
            e.prev
        )),
        None => Err(format!("{} holds no record of this chain to continue the expired ones", first_kept.display())),
    }
}
