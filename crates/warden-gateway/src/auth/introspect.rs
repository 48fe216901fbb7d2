//! Opaque bearer tokens checked with the authorization server (RFC 7662), cached briefly.
//!
//! Defends against: revoked or expired opaque tokens (an inactive answer is final; results are
//! cached at most `cache_secs` and never past `exp`), tokens for another resource (`aud` must
//! name this server), token leakage through the cache (keyed by SHA-256 of the token), and
//! floods of made-up tokens: each would cost a request to the authorization server, so lookups
//! of uncached tokens are rated per client address and in total (503 with `Retry-After` past
//! them; the per-address table is bounded and fails closed when full of live entries).
//! Does not defend against: a token revoked less than `cache_secs` ago; legitimate clients
//! refused while a flood from many addresses uses up the total.

use super::{now_secs, sha256, AuthError, TtlCache};
use crate::config::{Introspection, JwtIssuer};
use parking_lot::Mutex;
use serde_json::{Map, Value};
use std::collections::HashMap;
use std::net::IpAddr;
use std::time::{Duration, Instant};
use warden_policy::limits::{gcra, Rate};
use warden_policy::{AuthMethod, Principal};

/// Client addresses whose lookups are counted at most.
const MAX_CLIENTS: usize = 10_000;

/// The lookup rates: per client address and in total (GCRA, in this process).
struct Budget {
    per_client: Rate,
    total: Rate,
    epoch: Instant,
    state: Mutex<(Option<u64>, HashMap<IpAddr, u64>)>,
}

impl Budget {
    /// One lookup for `client`, or how long to wait.
    fn take(&self, client: Option<IpAddr>) -> Result<(), Duration> {
        let now = self.epoch.elapsed().as_nanos() as u64;
        let mut st = self.state.lock();
        let (total, clients) = &mut *st;
        let next_total = gcra(*total, now, &self.total)?;
        if let Some(ip) = client.map(warden_policy::net::source_key) {
            if clients.len() >= MAX_CLIENTS && !clients.contains_key(&ip) {
                clients.retain(|_, tat| *tat > now);
                if clients.len() >= MAX_CLIENTS {
                    return Err(Duration::from_secs(1));
                }
            }
            let next = gcra(clients.get(&ip).copied(), now, &self.per_client)?;
            clients.insert(ip, next);
        }
        *total = Some(next_total);
        Ok(())
    }
}

pub struct Introspector {
    cfg: Introspection,
    secret: String,
    /// Lifetime and claim rules (reusing the JWT issuer defaults).
    rules: JwtIssuer,
    http: reqwest::Client,
    /// Results by SHA-256 of the token; `None`: inactive.
    cache: TtlCache<Option<Map<String, Value>>>,
    budget: Budget,
}

impl Introspector {
    pub fn new(cfg: Introspection, http: reqwest::Client) -> Result<Introspector, String> {
        let secret = cfg.client_secret.resolve().map_err(|e| format!("auth.introspection.client_secret: {e}"))?;
        let rules = JwtIssuer::with_defaults(&cfg.endpoint);
        let rate = |r: &str, burst, key: &str| {
            Rate::parse(r, Some(burst)).map_err(|e| format!("auth.introspection.{key}: {e}"))
        };
        let budget = Budget {
            per_client: rate(&cfg.lookups_per_client, 20, "lookups_per_client")?,
            total: rate(&cfg.lookups_total, 100, "lookups_total")?,
            epoch: Instant::now(),
            state: Mutex::default(),
        };
        Ok(Introspector { cfg, secret, rules, http, cache: TtlCache::default(), budget })
    }

    async fn ask(&self, token: &str) -> Result<Map<String, Value>, AuthError> {
        let resp = self
            .http
            .post(&self.cfg.endpoint)
            .basic_auth(&self.cfg.client_id, Some(&self.secret))
            .header("accept", "application/json")
            .form(&[("token", token), ("token_type_hint", "access_token")])
            .timeout(Duration::from_secs(10))
            .send()
            .await
            .map_err(|e| {
                tracing::warn!(error = %e.without_url(), "introspection request failed");
                AuthError::Unavailable("token introspection unavailable", 5)
            })?;
        if !resp.status().is_success() {
            tracing::warn!(status = %resp.status(), "introspection refused");
            return Err(AuthError::Unavailable("token introspection unavailable", 5));
        }
        let body = resp.bytes().await.map_err(|_| AuthError::Unavailable("token introspection unavailable", 5))?;
        serde_json::from_slice(&body).map_err(|_| AuthError::Unavailable("token introspection unavailable", 5))
    }

    /// Whether `token` is active and for `audience`; its principal. `client`: the caller's
    /// address, for the lookup rate.
    pub async fn check(&self, token: &str, audience: &str, client: Option<IpAddr>) -> Result<Principal, AuthError> {
        let key = sha256(token.as_bytes());
        let claims = match self.cache.get(&key) {
            Some(c) => c,
            None => {
                if let Err(wait) = self.budget.take(client) {
                    tracing::warn!(client = ?client, "token introspection refused: too many lookups");
                    return Err(AuthError::Unavailable("too many token checks; retry later", wait.as_secs().max(1)));
                }
                let r = self.ask(token).await?;
                let active = r.get("active").and_then(Value::as_bool) == Some(true);
                let c = active.then_some(r);
                let mut until = now_secs() + self.cfg.cache_secs;
                if let Some(exp) = c.as_ref().and_then(|c| c.get("exp")).and_then(Value::as_u64) {
                    until = until.min(exp);
                }
                self.cache.put(key, until, c.clone());
                c
            }
        };
        let claims = claims.ok_or(AuthError::InvalidToken("token is not active"))?;
        let aud_ok = match claims.get("aud") {
            Some(Value::String(a)) => a == audience,
            Some(Value::Array(a)) => a.iter().any(|x| x.as_str() == Some(audience)),
            _ => false,
        };
        if !aud_ok {
            return Err(AuthError::InvalidToken("token is not for this resource"));
        }
        super::jwt::claims_principal(claims, &self.rules, AuthMethod::Introspection)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn budget(per_client: &str, total: &str) -> Budget {
        Budget {
            per_client: Rate::parse(per_client, Some(2)).unwrap(),
            total: Rate::parse(total, Some(5)).unwrap(),
            epoch: Instant::now(),
            state: Mutex::default(),
        }
    }

    #[test]
    fn lookups_are_rated_per_client_and_in_total() {
        let b = budget("1/hour", "1/hour");
        let (a, c): (IpAddr, IpAddr) = ("192.0.2.1".parse().unwrap(), "192.0.2.2".parse().unwrap());
        assert!(b.take(Some(a)).is_ok() && b.take(Some(a)).is_ok());
        assert!(b.take(Some(a)).is_err(), "a third from one address");
        assert!(b.take(Some(c)).is_ok() && b.take(Some(c)).is_ok());
        assert!(b.take(None).is_ok());
        assert!(b.take(Some("192.0.2.3".parse().unwrap())).is_err(), "the total (5) is used up");
    }

    #[test]
    fn the_table_of_addresses_is_bounded() {
        let b = budget("1/hour", "1000000000/s");
        for i in 0..MAX_CLIENTS as u32 {
            assert!(b.take(Some(IpAddr::from(i.to_be_bytes()))).is_ok());
        }
        assert!(b.take(Some("198.51.100.7".parse().unwrap())).is_err(), "full of live entries: refused");
        assert_eq!(b.state.lock().1.len(), MAX_CLIENTS);
    }
}
