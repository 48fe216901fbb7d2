//! Session taint (toxic flows): a session that has read untrusted content may not use a sink
//! freely afterwards.
//!
//! A session becomes tainted when an answer enters it from a tool the operator classified
//! `untrusted_source` (web pages, email, issues: text other people wrote), or any answer whose
//! injection score reaches `[content] suspicion_threshold`. Its later calls to sinks (tools
//! classified `exfiltration` or `destructive`) then follow the allowing rule's `when_tainted`.
//! On an upstream with `trust_annotations`, unclassified tools count by their annotations and
//! MCP's defaults: a read-only tool that reaches the open world is a source, anything not
//! read-only a sink (`policy.rs`). The allowing rule's `when_tainted` says what a sink call does:
//! held for a person (default), refused, or let through; each later call's audit record names
//! where the taint came from and when.
//!
//! The taint of a 2025 session is kept under its session id; a 2026 stateless caller's under
//! the principal (all its conversations: stricter than one conversation). It is written to the
//! store (`[store]`), so every replica that takes the session up sees it, and lives a day.
//!
//! Defends against: the "lethal trifecta" — private data read, then an instruction planted in
//! something untrusted, then data sent out — at its last step, whatever the planted text says
//! (no detector has to recognise it); a compromised session moved to another replica.
//! Does not defend against: a sink the operator did not classify on an upstream whose
//! annotations are not trusted; untrusted content from a tool not classified as such that scores under the
//! suspicion threshold; data carried out in a read-only call's arguments (classify such tools
//! `exfiltration`); a taint written while the store was out reaches other replicas only when
//! this one marks it again. A call to a sink whose taint cannot be read (the store out, or an
//! unreadable record) counts as tainted, whatever `[store] on_outage` says.

use crate::store::{RecordKey, Store};
use parking_lot::Mutex;
use std::time::Duration;

/// Sources kept per session (the first ones: what tainted it).
const MAX_SOURCES: usize = 8;
/// How long a taint lives in the store after the last mark.
const TTL: Duration = Duration::from_secs(24 * 3600);
const KIND: &str = "taint";

/// One session's taint: where it is kept, and what this replica knows of it.
pub struct Taint {
    key: String,
    known: Mutex<Vec<String>>,
    /// The store holds what `known` holds (else the next mark writes it again).
    stored: std::sync::atomic::AtomicBool,
}

impl Taint {
    /// A 2025 session's (`session` is its id's digest), or a 2026 caller's (`principal`: its
    /// binding key).
    pub fn new(session: &str, principal: Option<&str>) -> Taint {
        let key = match principal {
            Some(p) => format!("p:{}", &warden_audit::event::digest(&serde_json::Value::String(p.into()))[..32]),
            None => format!("s:{session}"),
        };
        Taint { key, known: Mutex::new(Vec::new()), stored: std::sync::atomic::AtomicBool::new(false) }
    }

    /// What this replica knows tainted the session (may lag another replica's marks).
    pub fn known(&self) -> Vec<String> {
        self.known.lock().clone()
    }

    /// Taint the session: `source` (`server/name at <time> (why)`) is kept if it is among the
    /// first [`MAX_SOURCES`], and the whole list written to the store.
    pub async fn mark(&self, store: &dyn Store, source: String) {
        use std::sync::atomic::Ordering;
        let list = {
            let mut k = self.known.lock();
            let known = k.len() >= MAX_SOURCES || k.iter().any(|s| same_place(s, &source));
            if known && self.stored.load(Ordering::Acquire) {
                return;
            }
            if !known {
                k.push(source);
            }
            k.clone()
        };
        let body = serde_json::to_vec(&list).unwrap_or_default();
        match store.put_record(RecordKey { kind: KIND, key: &self.key }, &body, TTL, false).await {
            Ok(_) => self.stored.store(true, Ordering::Release),
            Err(e) => {
                self.stored.store(false, Ordering::Release);
                tracing::warn!(error = %e, "taint not written to the store: other replicas do not see it yet (written again at the next mark)");
            }
        }
    }

    /// Everything that tainted the session, as far as any replica has said (asks the store only
    /// while this replica knows of none). The store out: tainted, by that.
    pub async fn sources(&self, store: &dyn Store) -> Vec<String> {
        let known = self.known();
        if !known.is_empty() {
            return known;
        }
        match store.record(RecordKey { kind: KIND, key: &self.key }).await {
            Ok(Some(b)) => {
                // A record that does not read as a list: tainted, by that (fail closed).
                let list: Vec<String> = serde_json::from_slice::<Vec<String>>(&b)
                    .ok()
                    .filter(|l| !l.is_empty())
                    .unwrap_or_else(|| vec!["unknown: an unreadable taint record".into()]);
                let list: Vec<String> = list.into_iter().take(MAX_SOURCES).collect();
                let mut k = self.known.lock();
                if k.is_empty() {
                    k.clone_from(&list);
                }
                list
            }
            Ok(None) => Vec::new(),
            Err(e) => {
                tracing::warn!(error = %e, "taint unknown (store out): this sink call counts as tainted");
                vec!["unknown".into()]
            }
        }
    }
}

/// A source as the client is told it: where and when, not why (which would tell a hostile
/// client how its text was scored).
pub fn shown(source: &str) -> String {
    source.split(" (").next().unwrap_or(source).to_string()
}

/// Two sources from the same tool.
fn same_place(a: &str, b: &str) -> bool {
    a.split(" at ").next() == b.split(" at ").next()
}

/// How a source is written: `server/name at <time> (why)`.
pub fn source(server: &str, name: &str, why: &str) -> String {
    let at = humantime::format_rfc3339_seconds(std::time::SystemTime::now());
    format!("{server}/{name} at {at} ({why})")
}
