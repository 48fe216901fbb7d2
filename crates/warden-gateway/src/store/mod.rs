//! Where shared runtime state lives: rate-limit and quota counters, kill switches, approvals,
//! ended sessions, and small records with a lifetime (the built-in authorization server's
//! clients, codes, refresh tokens and lockouts). One trait, [`Store`], with two backends:
//!
//! - [`memory::MemoryStore`] (default): one process; kill switches written to a private file.
//! - [`redis::RedisStore`]: every Warden pointed at the same Redis shares limits, kill switches
//!   and approvals. All the limits of one call are taken by one Lua script, atomically, in one
//!   round trip; time is Redis's own clock, so replicas with skewed clocks still agree.
//!
//! A backend that cannot answer returns [`StoreError`]; what a call does then is the
//! `[store] on_outage` policy, applied by the caller (fail closed unless configured otherwise).

pub mod memory;
mod records;
pub mod redis;

use futures::future::BoxFuture;
use serde::{Deserialize, Serialize};
use serde_json::Value;
use std::time::Duration;
use warden_policy::limits::Rate;

/// One flipped kill switch, as the store keeps it (`killswitch.rs` follows them).
#[derive(Debug, Clone, serde::Serialize, serde::Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct Kill {
    pub server: String,
    /// `None` (absent in JSON): the whole upstream.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tool: Option<String>,
    pub reason: String,
    /// Who flipped it: the admin principal, or what an admin-token client declared.
    pub by: String,
    /// Unix seconds.
    pub at: u64,
    pub cancel_in_flight: bool,
}

/// One limit a call must fit in.
#[derive(Debug, Clone)]
pub enum Limit {
    Rate(Rate),
    /// Calls per UTC day.
    Daily(u64),
}

#[derive(Debug, Clone)]
pub struct Check {
    pub key: String,
    pub limit: Limit,
    /// Which limit this is, for the refusal (principal, tenant, tool, daily_quota).
    pub scope: &'static str,
}

/// A call that does not fit: the limit and when it would.
#[derive(Debug, Clone, PartialEq)]
pub struct Refusal {
    pub scope: &'static str,
    pub retry_after: Duration,
}

#[derive(Debug, thiserror::Error)]
#[error("{0}")]
pub struct StoreError(pub String);

/// Where an approval stands. Only `Pending` can be decided; only `Approved` can be consumed,
/// once.
#[derive(Debug, Clone, Copy, Serialize, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "snake_case")]
pub enum ApprovalState {
    Pending,
    Approved,
    Denied,
    Consumed,
}

impl ApprovalState {
    pub fn as_str(self) -> &'static str {
        match self {
            ApprovalState::Pending => "pending",
            ApprovalState::Approved => "approved",
            ApprovalState::Denied => "denied",
            ApprovalState::Consumed => "consumed",
        }
    }
    pub fn parse(s: &str) -> Option<ApprovalState> {
        Some(match s {
            "pending" => ApprovalState::Pending,
            "approved" => ApprovalState::Approved,
            "denied" => ApprovalState::Denied,
            "consumed" => ApprovalState::Consumed,
            _ => return None,
        })
    }
}

/// Most approval requests a store keeps (pending or approved-but-unused) across every tenant.
pub const MAX_APPROVALS: usize = 10_000;

/// One request for a person's decision about one call.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct Approval {
    pub id: String,
    /// Hex SHA-256 of (principal, server, tool, canonical arguments): what the approval is for.
    pub digest: String,
    /// Hex SHA-256 of the requester's person key (tenant, subject): whoever that is may not
    /// approve it, with any credential.
    pub requester: String,
    pub subject: String,
    /// Absent in JSON when the requester has no tenant (so are the undecided fields below).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tenant: Option<String>,
    pub server: String,
    pub tool: String,
    pub arguments: Value,
    pub summary: String,
    /// Unix seconds.
    pub created: u64,
    pub expires: u64,
    pub state: ApprovalState,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub approver: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub decided_at: Option<u64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub note: Option<String>,
}

/// A decision on a pending approval.
#[derive(Debug, Clone)]
pub struct Decision {
    pub approve: bool,
    pub approver: String,
    pub at: u64,
    pub note: Option<String>,
}

/// Shared runtime state. Every method may fail with [`StoreError`] when the backend is out.
pub trait Store: Send + Sync + 'static {
    /// `"memory"` or `"redis"`.
    fn backend(&self) -> &'static str;

    /// Take one call from every check, or from none (atomically): the first refusal otherwise.
    fn take<'a>(&'a self, checks: &'a [Check]) -> BoxFuture<'a, Result<Result<(), Refusal>, StoreError>>;

    /// The kill switches that are off, and a version that changes with every flip.
    fn kills(&self) -> BoxFuture<'_, Result<(u64, Vec<Kill>), StoreError>>;
    /// The version, and the epoch of the store's switches (cheap; polled by replicas). The
    /// epoch is set to `claim` when the store holds none (a new store, or one that lost its
    /// data: `FLUSHALL`, a failover to an empty replica): an epoch other than the one a replica
    /// knows means the switches it holds may have been lost.
    fn kills_version<'a>(&'a self, claim: &'a str) -> BoxFuture<'a, Result<(u64, String), StoreError>>;
    fn put_kill<'a>(&'a self, k: &'a Kill) -> BoxFuture<'a, Result<(), StoreError>>;
    /// False when that switch was not off.
    fn remove_kill<'a>(&'a self, server: &'a str, tool: Option<&'a str>) -> BoxFuture<'a, Result<bool, StoreError>>;

    /// Open `a` unless a live approval (pending or approved) with the same digest exists; either
    /// way, the live one is returned.
    fn open_approval<'a>(&'a self, a: &'a Approval) -> BoxFuture<'a, Result<Approval, StoreError>>;
    fn approval<'a>(&'a self, id: &'a str) -> BoxFuture<'a, Result<Option<Approval>, StoreError>>;
    /// Approvals that have not expired, newest first, at most `limit`.
    fn approvals(&self, limit: usize) -> BoxFuture<'_, Result<Vec<Approval>, StoreError>>;
    /// Decide a pending approval; `None` when it is not pending (or not there).
    fn decide<'a>(&'a self, id: &'a str, d: &'a Decision) -> BoxFuture<'a, Result<Option<Approval>, StoreError>>;
    /// Approved → consumed, once; true for the one caller that consumed it.
    fn consume<'a>(&'a self, id: &'a str) -> BoxFuture<'a, Result<bool, StoreError>>;

    /// A 2025 session was ended (DELETE): its id, `nonce`, which stays valid until `expires`
    /// (unix seconds), is refused by every replica until then.
    fn revoke_session<'a>(&'a self, nonce: &'a str, expires: u64) -> BoxFuture<'a, Result<(), StoreError>>;
    /// Whether the session `nonce` (valid until `expires`) was ended. A store that had to forget
    /// revocations to stay bounded answers true for every session that may have been among them.
    fn session_revoked<'a>(&'a self, nonce: &'a str, expires: u64) -> BoxFuture<'a, Result<bool, StoreError>>;

    /// Keep `value` as the record `key` of `kind` for `ttl`; with `only_new`, only when no live
    /// record is there (then true for the one caller that created it, atomically across
    /// replicas).
    fn put_record<'a>(
        &'a self,
        r: RecordKey<'a>,
        value: &'a [u8],
        ttl: Duration,
        only_new: bool,
    ) -> BoxFuture<'a, Result<bool, StoreError>>;
    /// The live record, if any.
    fn record<'a>(&'a self, r: RecordKey<'a>) -> BoxFuture<'a, Result<Option<Vec<u8>>, StoreError>>;
    /// The live record, removed in the same step: exactly one caller gets it.
    fn take_record<'a>(&'a self, r: RecordKey<'a>) -> BoxFuture<'a, Result<Option<Vec<u8>>, StoreError>>;
    fn delete_record<'a>(&'a self, r: RecordKey<'a>) -> BoxFuture<'a, Result<(), StoreError>>;
    /// Add one to the counter `key` of `kind` and answer the new count; a new counter lives
    /// `ttl` from its first count.
    fn count_record<'a>(&'a self, r: RecordKey<'a>, ttl: Duration) -> BoxFuture<'a, Result<u64, StoreError>>;
    /// One redemption as a single atomic step (see [`Redeem`]).
    fn redeem<'a>(&'a self, r: &'a Redeem<'a>) -> BoxFuture<'a, Result<Redeemed, StoreError>>;

    /// Set `field` of the shared map `map` (definition pins, pin changes waiting for an
    /// operator); with `only_new`, only when the field is not there (then true for the one caller
    /// that set it). Every change raises the map's version.
    fn map_put<'a>(
        &'a self,
        map: &'static str,
        field: &'a str,
        value: &'a str,
        only_new: bool,
    ) -> BoxFuture<'a, Result<bool, StoreError>>;
    fn map_remove<'a>(&'a self, map: &'static str, field: &'a str) -> BoxFuture<'a, Result<(), StoreError>>;
    /// The map's version and every field (read together).
    fn map_all(&self, map: &'static str) -> BoxFuture<'_, Result<MapFields, StoreError>>;
    /// The map's version (cheap; polled by replicas).
    fn map_version(&self, map: &'static str) -> BoxFuture<'_, Result<u64, StoreError>>;
}

/// A redemption, atomically (a refresh token rotated: its use marked, the grant checked, the
/// next token kept, its client's life extended): no step without the others, whichever replica.
pub struct Redeem<'a> {
    /// A marker created first, only if absent; when present already: [`Redeemed::Claimed`] and
    /// nothing else is done.
    pub claim: Option<(RecordKey<'a>, Duration)>,
    /// When this record exists: [`Redeemed::Blocked`], nothing put (the claim stays).
    pub unless: RecordKey<'a>,
    pub put: (RecordKey<'a>, &'a [u8], Duration),
    /// A record whose remaining life is made at least this long, when it exists.
    pub extend: Option<(RecordKey<'a>, Duration)>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Redeemed {
    Done,
    Claimed,
    Blocked,
}

/// A shared map's version and its fields.
pub type MapFields = (u64, Vec<(String, String)>);

/// Names one record: its kind (a short fixed word, like `as-code`) and its key.
#[derive(Debug, Clone, Copy)]
pub struct RecordKey<'a> {
    pub kind: &'static str,
    pub key: &'a str,
}

impl RecordKey<'_> {
    pub(crate) fn joined(&self) -> String {
        format!("{}:{}", self.kind, self.key)
    }
}

/// Call `sync` every `every` while `me` lives (state a replica follows in a shared store: kill
/// switches, pins); a store that cannot answer is logged once per outage (`unreachable`).
pub fn follow<T: Send + Sync + 'static>(
    me: std::sync::Weak<T>,
    every: Duration,
    unreachable: &'static str,
    sync: impl Fn(std::sync::Arc<T>) -> BoxFuture<'static, Result<(), StoreError>> + Send + 'static,
) {
    tokio::spawn(async move {
        let mut warned = false;
        loop {
            tokio::time::sleep(every).await;
            let Some(it) = me.upgrade() else { return };
            match sync(it).await {
                Ok(()) => warned = false,
                Err(e) if !warned => {
                    warned = true;
                    tracing::error!(error = %e, "{unreachable}");
                }
                Err(_) => {}
            }
        }
    });
}

pub fn kill_key(server: &str, tool: Option<&str>) -> String {
    format!("{server}\0{}", tool.unwrap_or(""))
}

/// Seconds until the next UTC midnight.
pub fn until_midnight(now_secs: u64) -> Duration {
    Duration::from_secs((now_secs / 86_400 + 1) * 86_400 - now_secs)
}
