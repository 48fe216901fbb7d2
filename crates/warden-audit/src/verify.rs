//! `warden audit verify`: re-derive every record's hash, follow each chain, check every signed
//! checkpoint against the pinned key, and compare with the checkpoint files (the anchors kept
//! apart from the log).
//!
//! Detects: an edited record (its hash no longer matches, or, if the editor recomputed it, the
//! next record's `prev` no longer does, or, with every hash recomputed from seq 1, the signed
//! checkpoints no longer match), a record not stored in its canonical bytes (a repeated key that
//! first-key-wins readers would read differently), a deleted record (a gap in `seq`), reordered
//! records, records cut from the start (a chain not starting at seq 1 from genesis) or the end (a
//! checkpoint in a checkpoint file that the log no longer reaches), checkpoints dropped from the
//! log or the checkpoint file, a forged checkpoint (bad signature, or a key other than the pinned
//! one), a chain with no signed checkpoint at all (every Warden signs one when it starts), and
//! index columns changed beside the record (SQLite, PostgreSQL).
//! Every one of those is a problem (exit status 1), as are: no pinned key, no checkpoint file, and
//! more unsigned records at a chain's end than a running Warden leaves ([`Expect`]).
//! Does not detect: a rewrite of the unsigned tail (at most [`Expect`]'s window) by someone who
//! can also rewrite the checkpoint file on the host, a rewrite of everything by someone who also
//! replaced the pinned key the verifier is given (keep the pin and copies of the checkpoints off
//! the host: docs/security.md), or anything done by a holder of the signing key.

use crate::event::{expected_hash, Checkpoint, Event, GENESIS};
use crate::sink::{Stored, COLUMNS};
use serde_json::Value;
use std::collections::{BTreeMap, HashMap, HashSet};

/// What the verifier trusts and tolerates.
#[derive(Debug, Clone, Default)]
pub struct Expect {
    /// The pinned checkpoint key (base64). None: every checkpoint is a problem (anyone can sign
    /// one with a key of their own).
    pub key: Option<String>,
    /// At most this many records may follow a chain's last signed checkpoint (a Warden running
    /// or killed signs at least every `checkpoint_every` records, written in batches).
    pub tail_records: u64,
    /// … and they may span at most this many seconds (it signs every `checkpoint_secs`).
    pub tail_secs: u64,
    /// An export (`warden audit export`): its chains start where the exported range does, and
    /// its end is its last signed checkpoint; no checkpoint file is expected.
    pub exported: bool,
    /// The archive is read too: every chain must start at its first record (a retention anchor
    /// does not excuse a late start, the archive must hold what was removed).
    pub complete: bool,
}

impl Expect {
    /// What a Warden with these `[audit]` settings leaves unsigned at most: one checkpoint
    /// period, plus the largest batch and a minute of slack for a slow or retried write.
    pub fn new(key: Option<&str>, checkpoint_every: u64, checkpoint_secs: u64) -> Expect {
        Expect {
            key: key.map(str::to_string),
            tail_records: checkpoint_every.saturating_add(MAX_BATCH),
            tail_secs: checkpoint_secs.saturating_add(60),
            exported: false,
            complete: false,
        }
    }
}

/// The largest batch the writer seals before it looks at its checkpoint schedule.
const MAX_BATCH: u64 = 4096;

#[derive(Default, Debug)]
pub struct ChainReport {
    pub records: u64,
    pub seq: u64,
    pub hash: String,
    pub checkpoints: u64,
    /// The seq covered by the last valid checkpoint.
    pub signed_through: u64,
    /// When the last valid checkpoint was written (its record's `ts`, RFC 3339).
    pub signed_at: Option<String>,
    pub dropped: u64,
    /// The time of the first record after the last valid checkpoint, and of the last record.
    unsigned_since: Option<String>,
    last_ts: String,
    /// The seq of every checkpoint record in the log (valid or not), for the anchor check.
    checkpoint_seqs: Vec<u64>,
    /// The last record was a valid `close` checkpoint (its seq): only a `start` checkpoint may
    /// follow, after at most one restart's word that the close never reached the checkpoint
    /// file (then `true`).
    after_close: Option<(u64, bool)>,
    /// Closes a restart said never reached the checkpoint file: the file must not hold them.
    closes_unfiled: Vec<u64>,
    /// The chain's first record when it is not seq 1 from genesis: its seq, prev and place.
    starts: Option<(u64, String, String)>,
    /// Retention anchors in the chain, with the seq of the record carrying each (an anchor may
    /// speak of another chain: [`crate::Anchor::chain`]).
    anchors: Vec<(u64, crate::event::Anchor)>,
    /// The seqs (first, last) a restart said followed the checkpoint file's last checkpoint of
    /// the chain, and the seq of its `inherited_unsigned` record saying so: the last checkpoint
    /// among them, when the file lacks it, is the one a kill kept from it.
    inherited: Vec<(u64, u64, u64)>,
}

#[derive(Default, Debug)]
pub struct Report {
    pub records: u64,
    pub chains: BTreeMap<String, ChainReport>,
    /// What is wrong, each with where.
    pub problems: Vec<String>,
    /// What is worth knowing but not wrong.
    pub notes: Vec<String>,
    /// (chain, seq) → hash of every checkpoint record seen, for the anchor check.
    seen_checkpoints: HashMap<(String, u64), String>,
    /// Chains some checkpoint file holds.
    anchored: HashSet<String>,
    /// Signed retention marks, as anchors ([`Report::add_marks`]).
    marks: Vec<crate::event::Anchor>,
    expect: Expect,
}

/// Whether the log's checkpoint at `seq` of chain `name`, which the checkpoint files lack, is the
/// one a kill kept from them: a restart's `inherited_unsigned` record, itself signed over,
/// covers it, starting right after a checkpoint the files hold, and it is the last checkpoint in
/// that range (a kill keeps at most the last one it wrote from the file).
fn kept_by_a_kill(c: &ChainReport, name: &str, seq: u64, held: &HashSet<(String, u64)>) -> bool {
    c.inherited.iter().any(|&(from, to, at)| {
        let last_in_range = c.checkpoint_seqs.iter().filter(|s| (from..=to).contains(*s)).max();
        at <= c.signed_through && held.contains(&(name.to_string(), from - 1)) && last_in_range == Some(&seq)
    })
}

/// Problems beyond this many are counted, not listed.
const MAX_PROBLEMS: usize = 100;

impl Report {
    pub fn new(expect: Expect) -> Report {
        Report { expect, ..Report::default() }
    }

    pub fn ok(&self) -> bool {
        self.problems.is_empty()
    }

    /// A new report with the same expectations and the problems found so far (about the
    /// checkpoint files, before any record): to read the trail again from its start.
    pub(crate) fn clone_empty(&self) -> Report {
        Report { expect: self.expect.clone(), problems: self.problems.clone(), ..Report::default() }
    }

    /// The signed retention anchors, by the chain whose records they say were removed: those
    /// carried by a record a valid checkpoint covers, and the signed marks a PostgreSQL trail
    /// keeps of each removal ([`Report::add_marks`]), which outlive the anchors' own months.
    fn signed_anchors(&self) -> HashMap<String, Vec<crate::event::Anchor>> {
        let mut out: HashMap<String, Vec<crate::event::Anchor>> = HashMap::new();
        if self.expect.key.is_none() {
            return out;
        }
        for (name, c) in &self.chains {
            for (_, a) in c.anchors.iter().filter(|(at, _)| *at <= c.signed_through) {
                out.entry(a.chain.clone().unwrap_or_else(|| name.clone())).or_default().push(a.clone());
            }
        }
        for a in &self.marks {
            out.entry(a.chain.clone().unwrap_or_default()).or_default().push(a.clone());
        }
        out
    }

    /// Signed marks of removals (PostgreSQL's `audit_retention`): each `(chain, through, hash,
    /// signature)` whose signature the pinned key verifies counts as a signed anchor.
    pub fn add_marks(&mut self, marks: &[(String, u64, String, String)]) {
        let Some(key) = self.expect.key.clone() else { return };
        for (chain, through, hash, sig) in marks {
            if crate::signing::verify(&key, &crate::retain::payload(chain, *through, hash), sig).is_ok() {
                self.marks.push(crate::event::Anchor {
                    chain: Some(chain.clone()),
                    hash: hash.clone(),
                    removed: vec!["a dropped partition".into()],
                    through: *through,
                    why: "a signed retention mark".into(),
                });
            }
        }
    }

    pub(crate) fn problem(&mut self, msg: String) {
        if self.problems.len() < MAX_PROBLEMS {
            self.problems.push(msg);
        } else if self.problems.len() == MAX_PROBLEMS {
            self.problems.push("… more problems not listed".into());
        }
    }

    /// Check the next stored record.
    pub fn add(&mut self, s: &Stored) {
        if s.line.is_empty() {
            return;
        }
        self.records += 1;
        let at = &s.location;
        let v: Value = match serde_json::from_str(&s.line) {
            Ok(v) => v,
            Err(_) => return self.problem(format!("{at}: not a JSON record (damaged or edited)")),
        };
        let e: Event = match serde_json::from_value(v.clone()) {
            Ok(e) => e,
            Err(_) => return self.problem(format!("{at}: not an audit record (fields missing or of the wrong type)")),
        };
        // The hash covers the parsed record; the bytes must be exactly its canonical form, or
        // a reader that keeps the first of two repeated keys would read another record.
        if warden_policy::canonical::to_string(&v) != s.line {
            self.problem(format!(
                "{at}: chain {} seq {}: not stored in its canonical form (a repeated or reordered key, or added spacing): the record was edited",
                e.chain, e.seq
            ));
        }
        let hash_ok = e.hash.as_deref() == Some(expected_hash(&v).as_str());
        if !hash_ok {
            self.problem(format!(
                "{at}: chain {} seq {}: the hash does not match the content: the record was edited",
                e.chain, e.seq
            ));
        }
        if let Some(cols) = &s.columns {
            let fields = [
                Some(e.chain.clone()),
                Some(e.seq.to_string()),
                Some(e.kind.clone()),
                e.subject.clone(),
                e.tenant.clone(),
                e.server.clone(),
                e.name.clone(),
                e.decision.clone(),
                Some(e.status.clone()),
                e.hash.clone(),
            ];
            for ((name, col), f) in COLUMNS.iter().zip(cols).zip(fields) {
                if *col != f {
                    self.problem(format!("{at}: column {name} differs from the record (the index was edited)"));
                }
            }
        }
        let c = self.chains.entry(e.chain.clone()).or_default();
        let (last_seq, last_hash) = (c.seq, std::mem::take(&mut c.hash));
        c.records += 1;
        c.seq = e.seq;
        c.hash = e.hash.clone().unwrap_or_default();
        c.last_ts.clone_from(&e.ts);
        if c.unsigned_since.is_none() {
            c.unsigned_since = Some(e.ts.clone());
        }
        let first = c.records == 1;
        if let Some(a) = &e.anchor {
            c.anchors.push((e.seq, a.clone()));
        }
        let inherited = match (e.kind.as_str(), e.detail.as_deref(), e.count) {
            ("audit", Some("inherited_unsigned"), Some(n)) if n > 0 && n < e.seq => Some((e.seq - n, e.seq - 1, e.seq)),
            _ => None,
        };
        if let Some(range) = inherited.filter(|_| c.inherited.len() < 10_000) {
            c.inherited.push(range);
        }
        let mut problems = Vec::new();
        if first {
            // A problem unless a signed retention anchor later in the chain explains it (`finish`).
            if e.seq != 1 || e.prev != GENESIS {
                c.starts = Some((e.seq, e.prev.clone(), at.clone()));
            }
        } else if e.seq == last_seq + 1 {
            if e.prev != last_hash && hash_ok {
                problems.push(format!(
                    "{at}: chain {} seq {}: prev is not the hash of seq {last_seq}: the record before it was rewritten or replaced",
                    e.chain, e.seq
                ));
            }
        } else if e.seq > last_seq + 1 {
            problems.push(format!(
                "{at}: chain {} jumps from seq {last_seq} to {}: {} record(s) deleted (or moved) here",
                e.chain,
                e.seq,
                e.seq - last_seq - 1
            ));
        } else {
            problems.push(format!(
                "{at}: chain {} seq {} comes after seq {last_seq}: records reordered (or duplicated)",
                e.chain, e.seq
            ));
        }
        // Nothing Warden writes follows its clean stop but its next start checkpoint: a record
        // here was appended by someone else (and a start would otherwise sign it).
        if let Some((closed_at, said)) = c.after_close.take() {
            let starts = e.checkpoint.as_ref().is_some_and(|cp| cp.phase.as_deref() == Some("start"));
            // A stop killed before its close checkpoint reached the checkpoint file: the restart
            // says so first (its range ends at the close), once, then starts. Whether the file
            // indeed lacks that close is checked against it (`anchor`).
            let says_so = !said && inherited.is_some_and(|(_, to, _)| to == closed_at);
            if says_so {
                c.after_close = Some((closed_at, true));
                c.closes_unfiled.push(closed_at);
            } else if !starts {
                problems.push(format!(
                    "{at}: chain {} seq {}: a record after the clean stop at seq {closed_at} that is not Warden's next start: appended by someone else",
                    e.chain, e.seq
                ));
            }
        }
        if let Some(cp) = &e.checkpoint {
            c.checkpoint_seqs.push(e.seq);
            self.seen_checkpoints.insert((e.chain.clone(), e.seq), c.hash.clone());
            match self.check_signature(&e.chain, cp) {
                Ok(()) if self.expect.key.is_none() => {}
                Ok(()) if cp.seq + 1 == e.seq && cp.hash == e.prev => {
                    let c = self.chains.get_mut(&e.chain).expect("present");
                    c.checkpoints += 1;
                    c.signed_through = e.seq;
                    c.signed_at = Some(e.ts.clone());
                    c.dropped = cp.dropped;
                    c.unsigned_since = None;
                    if cp.phase.as_deref() == Some("close") {
                        c.after_close = Some((e.seq, false));
                    }
                }
                Ok(()) => problems.push(format!(
                    "{at}: chain {} seq {}: the checkpoint does not cover the record before it",
                    e.chain, e.seq
                )),
                Err(why) => problems.push(format!("{at}: chain {} seq {}: checkpoint {why}", e.chain, e.seq)),
            }
        }
        for p in problems {
            self.problem(p);
        }
    }

    fn check_signature(&mut self, chain: &str, cp: &Checkpoint) -> Result<(), String> {
        match &self.expect.key {
            Some(k) if k.trim() != cp.key.trim() => Err("signed by another key than the pinned one".into()),
            Some(k) => crate::signing::verify(
                k,
                &Checkpoint::payload(chain, cp.seq, &cp.hash, cp.dropped, cp.phase.as_deref()),
                &cp.sig,
            )
            .map_err(|e| format!("signature invalid: {e}")),
            // Not checked: without a pin a signature proves nothing (one problem, in `finish`).
            None => Ok(()),
        }
    }

    /// Compare with the lines of the checkpoint files: every checkpoint they hold must be in the
    /// log, and every checkpoint the log holds of a chain they anchor must be in them (but the
    /// last, whose append a kill may have cut short).
    pub fn anchor(&mut self, checkpoint_lines: &[String]) {
        let cuts = self.signed_anchors();
        let removed_through = |chain: &str| cuts.get(chain).and_then(|v| v.iter().map(|a| a.through).max());
        let mut held: HashSet<(String, u64)> = HashSet::new();
        for (i, l) in checkpoint_lines.iter().enumerate().filter(|(_, l)| !l.is_empty()) {
            let Ok(e) = serde_json::from_str::<Event>(l) else {
                self.problem(format!("checkpoint file line {}: not a checkpoint record", i + 1));
                continue;
            };
            self.anchored.insert(e.chain.clone());
            held.insert((e.chain.clone(), e.seq));
            // Checkpoints before where the chain now starts went with the records before it: the
            // late start is one problem (`finish`), or explained by a retention anchor.
            // A chain removed whole by policy (a Warden gone before its records expired) is in no
            // record any more, but its signed anchor says through which seq.
            let first = self.chains.get(&e.chain).and_then(|c| c.starts.as_ref()).map(|s| s.0);
            if first.is_some_and(|first| e.seq < first) || removed_through(&e.chain).is_some_and(|t| e.seq <= t) {
                continue;
            }
            match self.seen_checkpoints.get(&(e.chain.clone(), e.seq)) {
                Some(h) if Some(h) == e.hash.as_ref() => {}
                Some(_) => self.problem(format!(
                    "chain {} seq {}: the log's checkpoint differs from the checkpoint file's",
                    e.chain, e.seq
                )),
                None => {
                    let end = self.chains.get(&e.chain).map_or(0, |c| c.seq);
                    if e.seq > end {
                        self.problem(format!(
                            "chain {} ends at seq {end}, but the checkpoint file holds a checkpoint at seq {}: the log was truncated",
                            e.chain, e.seq
                        ));
                    } else {
                        self.problem(format!(
                            "chain {} seq {}: a checkpoint in the checkpoint file is missing from the log",
                            e.chain, e.seq
                        ));
                    }
                }
            }
        }
        let mut missing = Vec::new();
        for (name, c) in self.chains.iter().filter(|(n, _)| self.anchored.contains(*n)) {
            // The files are read before the log: checkpoints signed since (Warden running) or
            // the one a kill cut short of the file are past the file's end, and only noted.
            let file_end = held.iter().filter(|(ch, _)| ch == name).map(|(_, s)| *s).max().unwrap_or(0);
            // Checkpoints of records removed by policy (read from an archive) left the file with them.
            let removed = removed_through(name).unwrap_or(0);
            for &seq in c.checkpoint_seqs.iter().filter(|s| **s > removed && !held.contains(&(name.clone(), **s))) {
                if seq > file_end {
                    self.notes.push(format!(
                        "chain {name}: checkpoint at seq {seq} is past the checkpoint file's end (signed since it was read, or Warden killed while appending it)"
                    ));
                } else if kept_by_a_kill(c, name, seq, &held) {
                    self.notes.push(format!(
                        "chain {name}: checkpoint at seq {seq} never reached the checkpoint file (Warden killed while appending it; its restart says so)"
                    ));
                } else {
                    missing.push(format!(
                        "chain {name} seq {seq}: the log's checkpoint is missing from the checkpoint file: the file was cut or edited (or an append failed: see the gateway's log)"
                    ));
                }
            }
        }
        for (name, c) in &self.chains {
            for seq in c.closes_unfiled.iter().filter(|s| held.contains(&(name.clone(), **s))) {
                missing.push(format!(
                    "chain {name} seq {seq}: a record after this clean stop says its close never reached the checkpoint file, but the file holds it: appended by someone else"
                ));
            }
        }
        for m in missing {
            self.problem(m);
        }
    }

    /// Problems and notes about each chain as a whole: its signatures, its unsigned end, its
    /// anchor, and the trust the whole report rests on.
    pub fn finish(&mut self, anchors_given: bool) {
        if self.expect.key.is_none() {
            self.problem(
                "no pinned checkpoint key: without one, anyone can rewrite the trail and sign it with a key of their own \
                 (pass --public-key, or set [audit] public_key; keep a copy off this host)"
                    .into(),
            );
        }
        if !anchors_given && !self.expect.exported {
            self.problem(
                "no checkpoint file: a log cut at its end cannot be told from a whole one (pass --checkpoints)".into(),
            );
        }
        let mut problems = Vec::new();
        let mut notes = Vec::new();
        let cuts = self.signed_anchors();
        for (name, c) in &self.chains {
            if let Some((seq, prev, at)) = &c.starts {
                let by_policy =
                    cuts.get(name).and_then(|v| v.iter().find(|a| a.through + 1 == *seq && a.hash == *prev));
                match by_policy {
                    _ if self.expect.exported => {
                        notes.push(format!("chain {name}: the export starts at seq {seq}"));
                    }
                    Some(_) if self.expect.complete => problems.push(format!(
                        "{at}: chain {name} starts at seq {seq}: the archive does not hold the records before it (archived segments removed, or not all given)"
                    )),
                    Some(a) => notes.push(format!(
                        "chain {name}: starts at seq {seq}: the records before it (in {}) were removed by the retention policy ({}), as a signed anchor records",
                        a.removed.join(", "),
                        a.why
                    )),
                    None => problems.push(format!(
                        "{at}: chain {name} starts at seq {seq} instead of 1: the records before it were deleted"
                    )),
                }
            }
            if c.checkpoints == 0 && self.expect.key.is_some() {
                problems.push(format!(
                    "chain {name}: no valid signed checkpoint (every Warden signs one when it starts): the chain was rewritten, or its checkpoints dropped"
                ));
            }
            let tail = c.seq.saturating_sub(c.signed_through);
            let span = c.unsigned_since.as_deref().and_then(|from| seconds_between(from, &c.last_ts));
            if c.checkpoints > 0 && (tail > self.expect.tail_records || span.is_some_and(|s| s > self.expect.tail_secs))
            {
                problems.push(format!(
                    "chain {name}: {tail} record(s) after seq {} (over {}s) are covered by no signed checkpoint, more than a running Warden leaves unsigned ({} records, {}s): checkpoints were dropped and the end rewritten",
                    c.signed_through,
                    span.unwrap_or(0),
                    self.expect.tail_records,
                    self.expect.tail_secs
                ));
            } else if tail > 0 && c.checkpoints > 0 {
                notes.push(format!(
                    "chain {name}: {tail} record(s) after seq {} are not yet covered by a signed checkpoint (Warden running, or killed)",
                    c.signed_through
                ));
            }
            if c.dropped > 0 {
                notes.push(format!(
                    "chain {name}: {} event(s) were dropped with the queue full (on_full = drop)",
                    c.dropped
                ));
            }
            if anchors_given && !self.anchored.contains(name) {
                // A chain no file anchors can be cut back to any of its checkpoints unnoticed.
                problems.push(format!(
                    "chain {name}: no checkpoint file given holds it, so a cut at its end cannot be found (pass its instance's file with --checkpoints)"
                ));
            }
        }
        for p in problems {
            self.problem(p);
        }
        self.notes.extend(notes);
    }
}

/// Seconds from one record time (RFC 3339) to a later one; None when either does not parse.
fn seconds_between(from: &str, to: &str) -> Option<u64> {
    let (a, b) = (humantime::parse_rfc3339(from).ok()?, humantime::parse_rfc3339(to).ok()?);
    Some(b.duration_since(a).map_or(0, |d| d.as_secs()))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::signing::SigningKey;

    /// Records 11.. of chain `c` (a start checkpoint over seq 10, two calls, a close), signed.
    fn cut_chain(key: &SigningKey, prev: &str) -> Vec<Stored> {
        let (mut seq, mut hash) = (10u64, prev.to_string());
        let mut out = Vec::new();
        for i in 0..4 {
            let mut e = if i == 0 || i == 3 {
                let phase = if i == 0 { "start" } else { "close" };
                let mut e = Event::new("checkpoint", "success");
                e.checkpoint = Some(Checkpoint {
                    dropped: 0,
                    hash: hash.clone(),
                    key: key.public_key(),
                    phase: Some(phase.into()),
                    seq,
                    sig: key.sign(&Checkpoint::payload("c", seq, &hash, 0, Some(phase))),
                });
                e
            } else {
                Event::new("call", "success")
            };
            e.ts = "2026-12-01T00:00:00.000000Z".into();
            seq += 1;
            let line = e.seal("c", seq, &hash);
            hash = e.hash.clone().unwrap();
            out.push(Stored { location: format!("row {seq}"), line, columns: None });
        }
        out
    }

    /// Review of issue 24 (PostgreSQL, finding 2): the anchor records of a removal live in the
    /// month they were written, which is itself dropped later; the signed mark of the removal
    /// (kept apart, `audit_retention`) still explains where the chain starts. A mark signed by
    /// another key, or for another place, does not.
    #[test]
    fn a_signed_mark_explains_a_cut_whose_anchor_records_are_gone() {
        let dir = std::env::temp_dir().join(format!("warden-audit-marks-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let key = SigningKey::generate(&dir.join("k")).unwrap();
        let other = SigningKey::generate(&dir.join("o")).unwrap();
        let prev = "ab".repeat(32);
        let rows = cut_chain(&key, &prev);
        let report = |marks: &[(String, u64, String, String)]| {
            let mut r = Report::new(Expect::new(Some(&key.public_key()), 100, 60));
            for s in &rows {
                r.add(s);
            }
            r.add_marks(marks);
            let cps: Vec<String> =
                rows.iter().filter(|s| s.line.contains("\"checkpoint\":{")).map(|s| s.line.clone()).collect();
            r.anchor(&cps);
            r.finish(true);
            r
        };
        let mark = |k: &SigningKey, through: u64, hash: &str| {
            ("c".to_string(), through, hash.to_string(), k.sign(&crate::retain::payload("c", through, hash)))
        };
        let r = report(&[mark(&key, 10, &prev)]);
        assert!(r.ok(), "{:?}", r.problems);
        assert!(r.notes.iter().any(|n| n.contains("removed by the retention policy")), "{:?}", r.notes);
        for bad in
            [vec![], vec![mark(&other, 10, &prev)], vec![mark(&key, 9, &prev)], vec![mark(&key, 10, &"cd".repeat(32))]]
        {
            let r = report(&bad);
            assert!(r.problems.iter().any(|p| p.contains("the records before it were deleted")), "{:?}", r.problems);
        }
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
