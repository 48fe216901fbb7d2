//! The built-in authorization server's state in the shared store (Redis), so that every replica
//! is the same authorization server. Records (JSON, each with a lifetime the store enforces):
//!
//! | kind | key | lives |
//! |---|---|---|
//! | `as-client` | client id | `unused_client_ttl_secs` from registration; `refresh_token_ttl_secs` from its last grant |
//! | `as-pending` | request id | 10 min; taken (once) by the consent form |
//! | `as-code` / `as-code-used` | hex SHA-256 of the code | 10 × the code's 60 s, so a late replay still revokes |
//! | `as-refresh` / `as-refresh-used` | hex SHA-256 of the token | until the token expires |
//! | `as-revoked` | grant family | the longer of the presented token's life and `refresh_token_ttl_secs`, plus 30 days |
//! | `as-fail` | user name | 15 min from the first failure |
//!
//! Single use across replicas: a code or refresh token is redeemed by creating its `-used` marker
//! with create-only-if-absent; exactly one replica succeeds, and any other redemption is a reuse
//! that revokes the family. A refresh token's rotation is one atomic step in the store (marker,
//! revocation check, next token, client's life: [`crate::store::Redeem`]), so a store failure
//! never leaves it redeemed without a successor. Consent requests are taken with get-and-delete.
//!
//! Bounds: registrations (per address and in total per hour) and authorization requests (per
//! address or IPv6 /64, per IPv6 /48 and in total, per 10 minutes) are limited with the store's
//! shared rate limits, so the records they create are bounded by those rates times their
//! lifetimes. Failed logins are bounded by the password hashing they follow. Unlike one process,
//! a client table at its size cap is not pruned on demand: records expire by themselves.
//!
//! Does not defend against: a store that loses data (a Redis restart without persistence, a
//! failover to an empty replica) forgets clients, refresh tokens and revocations — run Redis with
//! persistence (AOF) and `noeviction`, as for the rest of Warden's shared state. A code's 60 s are
//! counted from the issuing replica's clock by the redeeming one's: replicas' clocks must agree
//! (NTP) to within seconds. Needs Redis 6.2 or later (`GETDEL`).

use super::as_state::{block_key, Client, Code, Pending, Refresh, LOCKOUT};
use super::as_store::{
    code_age, Redeemed, Refused, Rotated, Unavailable, MAX_PENDING_PER_BLOCK, MAX_PENDING_PER_SOURCE, PENDING_TTL,
};
use super::builtin::CODE_TTL;
use crate::clock::now_secs;
use crate::config::BuiltinAs;
use crate::store::{Check, Limit, RecordKey, Store, StoreError};
use serde::de::DeserializeOwned;
use serde::Serialize;
use std::net::IpAddr;
use std::sync::Arc;
use std::time::Duration;
use warden_policy::limits::Rate;
use warden_policy::net::source_key;

/// Authorization requests started per 10 minutes across replicas.
const MAX_PENDING: u64 = 10_000;

pub struct Shared {
    store: Arc<dyn Store>,
    cfg: BuiltinAs,
}

fn gone(e: StoreError) -> Unavailable {
    tracing::error!(error = %e.0, "built-in authorization server: the shared store is unavailable");
    Unavailable
}

fn key<'a>(kind: &'static str, key: &'a str) -> RecordKey<'a> {
    RecordKey { kind, key }
}

/// At most `count` per `per`, all of them at once if need be.
fn rate(count: u64, per: Duration) -> Limit {
    let count = count.max(1);
    Limit::Rate(Rate { count, per, burst: count })
}

impl Shared {
    pub fn new(store: Arc<dyn Store>, cfg: &BuiltinAs) -> Shared {
        Shared { store, cfg: cfg.clone() }
    }

    async fn get<T: DeserializeOwned>(&self, r: RecordKey<'_>) -> Result<Option<T>, Unavailable> {
        let Some(bytes) = self.store.record(r).await.map_err(gone)? else { return Ok(None) };
        serde_json::from_slice(&bytes).map(Some).map_err(|e| gone(StoreError(format!("{}: {e}", r.kind))))
    }

    async fn put<T: Serialize>(&self, r: RecordKey<'_>, v: &T, ttl: Duration) -> Result<(), Unavailable> {
        let bytes = serde_json::to_vec(v).expect("state records serialise");
        self.store.put_record(r, &bytes, ttl, false).await.map_err(gone).map(drop)
    }

    /// Take the limits in `checks` (shared by replicas); the refused one's scope otherwise.
    async fn admit(&self, checks: &[Check]) -> Result<Result<(), &'static str>, Unavailable> {
        Ok(self.store.take(checks).await.map_err(gone)?.map_err(|r| r.scope))
    }

    pub async fn client(&self, id: &str) -> Result<Option<Client>, Unavailable> {
        self.get(key("as-client", id)).await
    }

    pub async fn register(&self, id: &str, c: Client, ip: IpAddr) -> Result<(), Refused> {
        let hour = Duration::from_secs(3600);
        let checks = [
            Check {
                key: format!("as-reg:{}", source_key(ip)),
                limit: rate(self.cfg.registrations_per_hour.into(), hour),
                scope: "too many registrations from this address",
            },
            Check {
                key: "as-reg:total".into(),
                limit: rate(self.cfg.registrations_total_per_hour.into(), hour),
                scope: "too many registrations; try again later",
            },
        ];
        let unavailable = |_| Refused::Unavailable("the registration could not be saved");
        self.admit(&checks).await.map_err(unavailable)?.map_err(Refused::Limited)?;
        let ttl = Duration::from_secs(self.cfg.unused_client_ttl_secs);
        self.put(key("as-client", id), &c, ttl).await.map_err(unavailable)
    }

    pub async fn start_pending(&self, id: &str, p: &Pending) -> Result<bool, Unavailable> {
        let per = PENDING_TTL;
        let mut checks = vec![
            Check {
                key: format!("as-authz:{}", source_key(p.source)),
                limit: rate(MAX_PENDING_PER_SOURCE as u64, per),
                scope: "source",
            },
            Check { key: "as-authz:total".into(), limit: rate(MAX_PENDING, per), scope: "total" },
        ];
        if let Some(b) = block_key(p.source) {
            checks.push(Check {
                key: format!("as-authz-block:{b}"),
                limit: rate(MAX_PENDING_PER_BLOCK as u64, per),
                scope: "block",
            });
        }
        if self.admit(&checks).await?.is_err() {
            return Ok(false);
        }
        self.put(key("as-pending", id), p, PENDING_TTL).await?;
        Ok(true)
    }

    pub async fn take_pending(&self, id: &str, ok: impl Fn(&Pending) -> bool) -> Result<Option<Pending>, Unavailable> {
        let r = key("as-pending", id);
        match self.get::<Pending>(r).await? {
            Some(p) if ok(&p) => {}
            _ => return Ok(None),
        }
        // Another replica may have taken it meanwhile: then it is not ours.
        let Some(bytes) = self.store.take_record(r).await.map_err(gone)? else { return Ok(None) };
        serde_json::from_slice(&bytes).map(Some).map_err(|e| gone(StoreError(format!("as-pending: {e}"))))
    }

    pub async fn attempt_login(&self, user: &str) -> Result<u32, Unavailable> {
        let n = self.store.count_record(key("as-fail", user), LOCKOUT).await.map_err(gone)?;
        Ok(u32::try_from(n).unwrap_or(u32::MAX))
    }

    pub async fn login_succeeded(&self, user: &str) -> Result<(), Unavailable> {
        self.store.delete_record(key("as-fail", user)).await.map_err(gone)
    }

    pub async fn put_code(&self, k: &[u8; 32], c: &Code) -> Result<(), Unavailable> {
        self.put(key("as-code", &super::hex(k)), c, CODE_TTL * 10).await
    }

    pub async fn use_code(&self, k: &[u8; 32]) -> Result<Redeemed<Code>, Unavailable> {
        let k = super::hex(k);
        let Some(c) = self.get::<Code>(key("as-code", &k)).await? else { return Ok(Redeemed::Unknown) };
        if !self.claim(key("as-code-used", &k), CODE_TTL * 10).await? {
            return Ok(Redeemed::Again(c.family));
        }
        Ok(code_age(&c))
    }

    pub async fn refresh(&self, k: &str, client: &str) -> Result<Redeemed<Refresh>, Unavailable> {
        Ok(match self.get::<Refresh>(key("as-refresh", k)).await?.filter(|r| r.client_id == client) {
            None => Redeemed::Unknown,
            Some(r) if r.expires <= now_secs() => Redeemed::Expired,
            Some(r) => Redeemed::First(r),
        })
    }

    /// One atomic step in the store: the presented token marked used (a second use is a reuse),
    /// the family checked, the next token kept, the client's life extended to the token's.
    pub async fn rotate(&self, presented: Option<&str>, k: &str, next: &Refresh) -> Result<Rotated, Unavailable> {
        let now = now_secs();
        let life = Duration::from_secs(next.expires.saturating_sub(now).max(1));
        // The marker outlives the presented token (whose record lives until it expires).
        let claim =
            presented.map(|p| (key("as-refresh-used", p), Duration::from_secs(self.cfg.refresh_token_ttl_secs.max(1))));
        let value = serde_json::to_vec(next).expect("state records serialise");
        let r = crate::store::Redeem {
            claim,
            unless: key("as-revoked", &next.family),
            put: (key("as-refresh", k), &value, life),
            extend: Some((key("as-client", &next.client_id), life)),
        };
        Ok(match self.store.redeem(&r).await.map_err(gone)? {
            crate::store::Redeemed::Done => Rotated::Issued,
            crate::store::Redeemed::Claimed => Rotated::Reused,
            crate::store::Redeemed::Blocked => Rotated::Revoked,
        })
    }

    /// Create the marker `r`; true for the one caller across replicas that did.
    async fn claim(&self, r: RecordKey<'_>, ttl: Duration) -> Result<bool, Unavailable> {
        self.store.put_record(r, b"1", ttl, true).await.map_err(gone)
    }

    /// Kept as long as any token of the family can live: the longer of the presented token's
    /// life and the configured one, and a margin of 30 days for a lifetime lowered since.
    pub async fn revoke_family(&self, family: &str, expires: u64) -> Result<(), Unavailable> {
        let life = expires.saturating_sub(now_secs()).max(self.cfg.refresh_token_ttl_secs) + 30 * 86_400;
        let ttl = Duration::from_secs(life);
        self.store.put_record(key("as-revoked", family), b"1", ttl, false).await.map_err(gone).map(drop)
    }
}
