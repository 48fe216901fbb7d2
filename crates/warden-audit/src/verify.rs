//! `warden audit verify`: re-derive every record's hash, follow each chain, check every signed
//! checkpoint, and compare with the checkpoint file (the anchor kept apart from the log).
//!
//! Detects: an edited record (its hash no longer matches, or, if the editor recomputed it, the
//! next record's `prev` no longer does), a deleted record (a gap in `seq`), reordered records
//! (`seq` going backwards), records cut from the start (a chain not starting at seq 1 from
//! genesis) or the end (a checkpoint in the checkpoint file that the log no longer reaches), a
//! forged checkpoint (bad signature or another key), and index columns changed beside the record
//! (SQLite).
//! Does not detect: a rewrite of the tail after the last signed checkpoint by someone who can
//! also rewrite the checkpoint file (sign often, and ship checkpoints off the host: they are
//! also logged), or anything done by a holder of the signing key.

use crate::event::{expected_hash, Checkpoint, Event, GENESIS};
use crate::sink::{Stored, COLUMNS};
use serde_json::Value;
use std::collections::{BTreeMap, HashMap};

#[derive(Default, Debug)]
pub struct ChainReport {
    pub records: u64,
    pub seq: u64,
    pub hash: String,
    pub checkpoints: u64,
    /// The seq covered by the last valid checkpoint.
    pub signed_through: u64,
    pub dropped: u64,
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
    trusted_key: Option<String>,
    untrusted_warned: bool,
}

/// Problems beyond this many are counted, not listed.
const MAX_PROBLEMS: usize = 100;

impl Report {
    pub fn new(trusted_key: Option<&str>) -> Report {
        Report { trusted_key: trusted_key.map(str::to_string), ..Report::default() }
    }

    pub fn ok(&self) -> bool {
        self.problems.is_empty()
    }

    fn problem(&mut self, msg: String) {
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
        let first = c.records == 1;
        let mut problems = Vec::new();
        if first {
            if e.seq != 1 || e.prev != GENESIS {
                problems.push(format!(
                    "{at}: chain {} starts at seq {} instead of 1: the records before it were deleted",
                    e.chain, e.seq
                ));
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
        if let Some(cp) = &e.checkpoint {
            self.seen_checkpoints.insert((e.chain.clone(), e.seq), c.hash.clone());
            match self.check_signature(&e.chain, cp) {
                Ok(()) if cp.seq + 1 == e.seq && cp.hash == e.prev => {
                    let c = self.chains.get_mut(&e.chain).expect("present");
                    c.checkpoints += 1;
                    c.signed_through = e.seq;
                    c.dropped = cp.dropped;
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
        let key = match &self.trusted_key {
            Some(k) if *k != cp.key => return Err("signed by another key than the trusted one".into()),
            Some(k) => k.clone(),
            None => {
                if !self.untrusted_warned {
                    self.untrusted_warned = true;
                    self.notes.push(
                        "checkpoints checked against the key they name; pass --public-key to trust only yours".into(),
                    );
                }
                cp.key.clone()
            }
        };
        crate::signing::verify(&key, &Checkpoint::payload(chain, cp.seq, &cp.hash, cp.dropped), &cp.sig)
            .map_err(|e| format!("signature invalid: {e}"))
    }

    /// Compare with the checkpoint file: every checkpoint it holds must be in the log.
    pub fn anchor(&mut self, checkpoint_lines: &[String]) {
        for (i, l) in checkpoint_lines.iter().enumerate().filter(|(_, l)| !l.is_empty()) {
            let Ok(e) = serde_json::from_str::<Event>(l) else {
                self.problem(format!("checkpoint file line {}: not a checkpoint record", i + 1));
                continue;
            };
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
    }

    /// Notes on what no signature covers yet.
    pub fn finish(&mut self) {
        let mut notes = Vec::new();
        for (name, c) in &self.chains {
            if c.seq > c.signed_through {
                notes.push(format!(
                    "chain {name}: {} record(s) after seq {} are not yet covered by a signed checkpoint",
                    c.seq - c.signed_through,
                    c.signed_through
                ));
            }
            if c.dropped > 0 {
                notes.push(format!(
                    "chain {name}: {} event(s) were dropped with the queue full (on_full = drop)",
                    c.dropped
                ));
            }
        }
        self.notes.extend(notes);
    }
}
