//! One audit record, and its place in the hash chain.
//!
//! The canonical form of a record is its JSON with object keys sorted by their bytes at every
//! depth, as `warden_policy::canonical` writes it. [`Event`]'s fields are declared in that order
//! and `serde_json` maps are sorted, so serializing an `Event` *is* its canonical form (a test
//! holds this); the verifier, which must also read records written by other versions, works on
//! the parsed JSON with `canonical` instead.
//!
//! A record's `hash` is the SHA-256 of its canonical form without `hash`; that form contains
//! `seq` and `prev` (the previous record's hash in the same chain), so editing, deleting or
//! reordering a record breaks the chain at that point.

use serde::{Deserialize, Serialize};
use serde_json::Value;
use sha2::{Digest, Sha256};

/// `prev` of the first record of a chain.
pub const GENESIS: &str = "0000000000000000000000000000000000000000000000000000000000000000";

/// What the verifier needs from a signed checkpoint: it covers the chain up to `seq`, whose
/// hash is `hash`, and says how many events were dropped so far (queue full with
/// `on_full = "drop"`), so a loss is on the record.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct Checkpoint {
    pub dropped: u64,
    pub hash: String,
    /// The signer's Ed25519 public key, base64 (the verifier checks it against the trusted one).
    pub key: String,
    /// `start` (the first a Warden signs, over the head it continues from), `close` (its last,
    /// at a clean stop: only its next start may follow it); absent for the periodic ones.
    /// Signed (payload v2) when present.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub phase: Option<String>,
    pub seq: u64,
    /// Ed25519 over [`Checkpoint::payload`], base64.
    pub sig: String,
}

impl Checkpoint {
    /// The bytes a checkpoint signs (v1 without a phase, as before phases existed).
    pub fn payload(chain: &str, seq: u64, hash: &str, dropped: u64, phase: Option<&str>) -> Vec<u8> {
        match phase {
            None => format!("warden-audit-checkpoint/v1\n{chain}\n{seq}\n{hash}\n{dropped}").into_bytes(),
            Some(p) => format!("warden-audit-checkpoint/v2\n{chain}\n{seq}\n{hash}\n{dropped}\n{p}").into_bytes(),
        }
    }
}

/// A retention anchor: the trail's older segments (`removed`, by file name; PostgreSQL: by
/// partition), whose last record of this chain (or of `chain`, when another chain's records
/// were removed with them) was `through` with `hash`, were removed (or archived) by the
/// configured policy (`why`). Signed by the checkpoint that follows it, so a trail whose head was
/// cut by policy still verifies from here, and one cut by anyone else does not.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct Anchor {
    /// The chain whose records were removed, when not the one this record is in (a PostgreSQL
    /// partition holds every Warden's chain; one Warden anchors them all).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub chain: Option<String>,
    pub hash: String,
    pub removed: Vec<String>,
    pub through: u64,
    pub why: String,
}

fn is_false(b: &bool) -> bool {
    !*b
}

/// One audit record. Fields in byte order (see the module comment). `decision` is what policy
/// decided (`allowed`/`denied`, with the `rule`), kept apart from `status`, what happened.
#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq)]
pub struct Event {
    /// A retention anchor (kind `audit`, detail `retention`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub anchor: Option<Anchor>,
    /// Approval details: id, mode, who decided, outcome.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub approval: Option<Value>,
    /// The arguments, per `[audit] arguments` (absent for `none`; redacted for `redacted`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub args: Option<Value>,
    /// SHA-256 of the canonical arguments, whatever the argument policy.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub args_digest: Option<String>,
    /// `tool`, `resource` or `prompt`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub capability: Option<String>,
    /// The chain this record belongs to (one per writing instance).
    pub chain: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub checkpoint: Option<Checkpoint>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub client_addr: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub client_id: Option<String>,
    /// How many occurrences this record stands for, when it aggregates several (authentication
    /// failures from one address in one window); absent: one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub count: Option<u64>,
    /// Which credential reached the upstream (never its value): `service` (Warden's own),
    /// `exchange` (the caller's token exchanged), `exchange:<12 hex of the exchanged token's
    /// SHA-256>` once known.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub credential: Option<String>,
    /// `allowed`, `denied` (by a rule, a kill switch, a limit or an approver) or `pending` (held
    /// for approval).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub decision: Option<String>,
    /// A short reason label (never free text from a client or an upstream).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub detail: Option<String>,
    /// Guard and detector findings: `guard:<name>`, `injection:<rule>`, `redacted:<class>`, …
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub findings: Vec<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub hash: Option<String>,
    /// How far the acknowledgement journal is stored with this record (`journal.rs`): the
    /// position of the last journaled event stored so far.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub journal: Option<u64>,
    /// What happened: `initialize`, `list`, `call`, `read`, `prompt`, `complete`, `subscribe`,
    /// `ping`, `approval`, `kill_switch`, `pin`, `admin`, `auth_failure`, `checkpoint`, `audit`.
    pub kind: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub latency_us: Option<u64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub method: Option<String>,
    /// The tool or prompt name (the upstream's own).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
    pub prev: String,
    /// Whether the tool is effectively read-only (false: destructive), as classified by policy.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub read_only: Option<bool>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub request_id: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub result_bytes: Option<u64>,
    /// The rule that allowed or denied.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rule: Option<String>,
    pub seq: u64,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub server: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub session: Option<String>,
    /// `success`, `validation_error`, `auth_denied`, `rate_limited`, `backend_error`, `timeout`,
    /// `blocked_by_guard`, `error`.
    pub status: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub subject: Option<String>,
    /// The session read untrusted content before this request: where from and when
    /// (`server/name at <time> (why)`), the first few.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub taint: Vec<String>,
    /// A resource URI.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub target: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tenant: Option<String>,
    /// The W3C trace id of the request (the client's, or one Warden started).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub trace_id: Option<String>,
    #[serde(default, skip_serializing_if = "is_false")]
    pub truncated: bool,
    /// RFC 3339, UTC, microseconds.
    pub ts: String,
}

impl Event {
    /// A new event of `kind` with `status`; the chain fields are filled by the writer.
    pub fn new(kind: &str, status: &str) -> Event {
        Event { kind: kind.into(), status: status.into(), ..Event::default() }
    }

    /// Link this event after `prev` (`seq`, hash) in `chain`, and seal it: returns the stored
    /// line (canonical JSON, with `hash`).
    pub fn seal(&mut self, chain: &str, seq: u64, prev: &str) -> String {
        self.chain.clear();
        self.chain.push_str(chain);
        self.seq = seq;
        self.prev.clear();
        self.prev.push_str(prev);
        self.hash = None;
        let mut body = serde_json::to_string(self).expect("events serialize");
        let hash = hex(&Sha256::digest(body.as_bytes()));
        // `hash` sorts just before `journal` (a number, when present) and `kind`, which every
        // record has. Only scalars follow them, and a string cannot hold an unescaped quote, so
        // the last `,"journal":` (or `,"kind":`) is the top-level key.
        let next = if self.journal.is_some() { ",\"journal\":" } else { ",\"kind\":" };
        let at = body.rfind(next).expect("every record has a kind");
        body.insert_str(at, &format!(",\"hash\":\"{hash}\""));
        self.hash = Some(hash);
        body
    }
}

/// Lower-case hex.
pub fn hex(bytes: &[u8]) -> String {
    const D: &[u8; 16] = b"0123456789abcdef";
    let mut s = String::with_capacity(bytes.len() * 2);
    for b in bytes {
        s.push(D[(b >> 4) as usize] as char);
        s.push(D[(b & 15) as usize] as char);
    }
    s
}

/// The hash a stored record should carry: SHA-256 of its canonical form without `hash`.
pub fn expected_hash(record: &Value) -> String {
    let mut v = record.clone();
    if let Some(m) = v.as_object_mut() {
        m.remove("hash");
    }
    hex(&Sha256::digest(warden_policy::canonical::to_string(&v).as_bytes()))
}

/// SHA-256 of a value's canonical form (the argument digest).
pub fn digest(v: &Value) -> String {
    hex(&Sha256::digest(warden_policy::canonical::to_string(v).as_bytes()))
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn serialization_is_the_canonical_form() {
        let mut e = Event::new("call", "success");
        e.anchor = Some(Anchor {
            chain: None,
            hash: "h".into(),
            removed: vec!["a.000001.db".into()],
            through: 9,
            why: "w".into(),
        });
        e.approval = Some(json!({"z": 1, "a": [{"y": 2, "b": 3}]}));
        e.args = Some(json!({"path": "/x", "n": 1.5, "kind": ",\"kind\":", "z": {"a": 1, "kind": 2}}));
        e.args_digest = Some("d".into());
        e.capability = Some("tool".into());
        e.client_addr = Some("127.0.0.1".into());
        e.client_id = Some("c".into());
        e.decision = Some("allowed".into());
        e.detail = Some("x".into());
        e.findings = vec!["guard:path".into()];
        e.latency_us = Some(5);
        e.method = Some("tools/call".into());
        e.name = Some("echo".into());
        e.read_only = Some(false);
        e.request_id = Some("1".into());
        e.result_bytes = Some(10);
        e.rule = Some("r".into());
        e.server = Some("s".into());
        e.session = Some("sess".into());
        e.subject = Some("alice".into());
        e.taint = vec!["s/t at 2026-01-01T00:00:00Z (untrusted_source)".into()];
        e.target = Some("file:///a".into());
        e.tenant = Some("t".into());
        e.truncated = true;
        e.ts = "2026-01-01T00:00:00.000000Z".into();
        e.checkpoint = Some(Checkpoint {
            dropped: 0,
            hash: "h".into(),
            key: "k".into(),
            phase: Some("start".into()),
            seq: 1,
            sig: "s".into(),
        });
        let line = e.seal("main", 7, GENESIS);
        let v: Value = serde_json::from_str(&line).unwrap();
        assert_eq!(line, warden_policy::canonical::to_string(&v), "field order is canonical");
        assert_eq!(v["hash"].as_str().unwrap(), expected_hash(&v));
        let back: Event = serde_json::from_value(v).unwrap();
        assert_eq!(back, e);
    }

    #[test]
    fn any_change_changes_the_hash() {
        let mut e = Event::new("call", "success");
        e.ts = "t".into();
        let line = e.seal("main", 1, GENESIS);
        let mut v: Value = serde_json::from_str(&line).unwrap();
        v["status"] = "timeout".into();
        assert_ne!(v["hash"].as_str().unwrap(), expected_hash(&v));
    }
}
