//! `GET /admin/audit/verify[?fresh=1]`: the audit trail's hash chains and signed checkpoints
//! verified, as `warden audit verify --config` does: against the pinned `[audit] public_key`
//! (never the key file's own: whoever can replace that file could sign a rewritten trail), the
//! checkpoint file, the archive of removed segments, and the unsigned tail a running Warden
//! leaves (`checkpoint_every`, `checkpoint_secs`). Operators only.
//!
//! Verifying reads the whole trail: it runs on the blocking pool, one at a time (`flight.rs`),
//! and its result is kept 30 seconds (`verified_at` says when it was made, `cached` whether this
//! request reused it). `fresh=1` asks for a new one unless the last is under 2 seconds old; a
//! request waits for a run at most 60 seconds, then is answered 202 while it goes on.
//!
//! Only a file trail of this Warden's is verified here. With the audit off, or the trail in
//! PostgreSQL (shared by several Wardens, whose checkpoint files are on their hosts), the answer
//! is 200 with `ok: null` and the `reason`: use `warden audit verify` there.
//!
//! Defends against: a tampered trail going unnoticed by an operator who looks at the console; a
//! page reloaded in a loop reading a large trail over and over. Does not defend against: what
//! `warden audit verify` does not detect (warden_audit::verify), nor a pinned key replaced in
//! the config by whoever can edit it (keep a copy of the key off the host).

use super::caller::{operator, Presented};
use super::flight::{Got, Want};
use super::{reply, AdminState};
use crate::config::AuditConfig;
use axum::body::Body;
use axum::extract::{Query, State};
use axum::http::{header, Response, StatusCode};
use serde::{Deserialize, Serialize};
use serde_json::json;
use std::sync::Arc;
use std::time::{Duration, Instant};

const WAIT: Duration = Duration::from_secs(60);
const MAX_AGE: Duration = Duration::from_secs(30);
/// `fresh=1` reuses a result younger than this.
const FRESH_AGE: Duration = Duration::from_secs(2);
/// Chains and notes listed at most (problems: the verifier lists at most 100).
const MAX_LISTED: usize = 100;

/// One chain's state.
#[derive(Debug, Serialize)]
pub struct ChainView {
    pub name: String,
    pub records: u64,
    /// The last record's seq.
    pub seq: u64,
    /// Valid signed checkpoints.
    pub checkpoints: u64,
    /// The seq the last valid checkpoint covers.
    pub signed_through: u64,
    /// When the last valid checkpoint was written (seconds since the epoch).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub last_checkpoint_at: Option<u64>,
}

/// What a verification found.
#[derive(Debug, Serialize)]
pub struct Verified {
    pub ok: bool,
    /// The trail read (its path).
    pub trail: String,
    /// Whether `[audit] public_key` pins the checkpoint key (without it nothing verifies).
    pub key_pinned: bool,
    pub records: u64,
    pub chains: Vec<ChainView>,
    /// Chains not listed (beyond 100).
    #[serde(skip_serializing_if = "is_zero")]
    pub chains_not_listed: usize,
    pub problems: Vec<String>,
    pub notes: Vec<String>,
    pub took_ms: u64,
}

fn is_zero(n: &usize) -> bool {
    *n == 0
}

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
pub struct VerifyQuery {
    /// `1` (or `true`): verify again unless the last result is under 2 seconds old.
    fresh: Option<String>,
}

fn unavailable(reason: &str) -> Response<Body> {
    reply(StatusCode::OK, json!({"ok": null, "reason": reason}))
}

pub async fn verify(State(s): State<Arc<AdminState>>, p: Presented, Query(q): Query<VerifyQuery>) -> Response<Body> {
    if let Err(r) = operator(&s, &p).await {
        return r;
    }
    let fresh = match q.fresh.as_deref() {
        None | Some("0" | "false") => false,
        Some("1" | "true") => true,
        Some(_) => return reply(StatusCode::BAD_REQUEST, json!({"error": "fresh: 1 or 0"})),
    };
    let current = s.current.load_full();
    let audit = current.config.audit.clone();
    if !audit.enabled {
        return unavailable("the audit trail is off ([audit] enabled = false)");
    }
    let path = match &s.audit_store {
        Some(warden_audit::Store::File(p)) => p.clone(),
        Some(warden_audit::Store::Postgres { .. }) => {
            return unavailable(
                "the trail is in PostgreSQL, shared by several Wardens whose checkpoint files are on their hosts: \
                 verify it with warden audit verify --checkpoints for each",
            )
        }
        None => return unavailable("this Warden writes no trail it can read"),
    };
    let max_age = if fresh { FRESH_AGE } else { MAX_AGE };
    let want = Want { key: current.generation, max_age, wait: WAIT };
    match s.jobs.verify.get(want, move || verify_file(path, &audit)).await {
        Got::Ready { done, cached } => {
            let mut v = serde_json::to_value(&done.value).unwrap_or_else(|_| json!({"ok": false}));
            v["verified_at"] = done.at.into();
            v["cached"] = cached.into();
            reply(StatusCode::OK, v)
        }
        Got::Running => {
            let mut r = reply(
                StatusCode::ACCEPTED,
                json!({"ok": null, "running": true,
                       "reason": "the verification is still running (a large trail): ask again in a few seconds"}),
            );
            r.headers_mut().insert(header::RETRY_AFTER, header::HeaderValue::from_static("5"));
            r
        }
        Got::Failed => {
            tracing::error!("admin: the audit verification failed");
            reply(StatusCode::INTERNAL_SERVER_ERROR, json!({"error": "the verification failed; see the log"}))
        }
    }
}

/// Verify the file trail at `path` as `warden audit verify --config` would. Blocking.
fn verify_file(path: std::path::PathBuf, a: &AuditConfig) -> Verified {
    let start = Instant::now();
    let store = warden_audit::Store::File(path);
    let mut out = Verified {
        ok: false,
        trail: store.describe(),
        key_pinned: a.public_key.is_some(),
        records: 0,
        chains: Vec::new(),
        chains_not_listed: 0,
        problems: Vec::new(),
        notes: Vec::new(),
        took_ms: 0,
    };
    let key = a.public_key.as_deref();
    if let Some(Err(e)) = key.map(warden_audit::signing::parse_public_key) {
        out.problems.push(format!("[audit] public_key: {e}"));
        return out;
    }
    let archive = a.retention.archive_dir.as_deref();
    if let Some(dir) = archive.filter(|d| !d.is_dir()) {
        out.problems.push(format!("{}: the archive directory is not there", dir.display()));
        return out;
    }
    let expect = warden_audit::verify::Expect::new(key, a.checkpoint_every, a.checkpoint_secs);
    match warden_audit::verify_archived(&store, archive, &[a.checkpoints()], expect) {
        Ok(r) => {
            out.ok = r.ok();
            out.records = r.records;
            out.chains_not_listed = r.chains.len().saturating_sub(MAX_LISTED);
            out.chains = (r.chains.iter().take(MAX_LISTED))
                .map(|(name, c)| ChainView {
                    name: name.clone(),
                    records: c.records,
                    seq: c.seq,
                    checkpoints: c.checkpoints,
                    signed_through: c.signed_through,
                    last_checkpoint_at: c.signed_at.as_deref().and_then(epoch_secs),
                })
                .collect();
            out.problems = r.problems;
            out.notes = r.notes.into_iter().take(MAX_LISTED).collect();
        }
        Err(e) => out.problems.push(format!("the trail could not be read: {e}")),
    }
    out.took_ms = start.elapsed().as_millis().try_into().unwrap_or(u64::MAX);
    out
}

/// An RFC 3339 time in seconds since the epoch.
fn epoch_secs(ts: &str) -> Option<u64> {
    let t = humantime::parse_rfc3339_weak(ts).ok()?;
    t.duration_since(std::time::UNIX_EPOCH).ok().map(|d| d.as_secs())
}
