//! Opaque bearer tokens checked with the authorization server (RFC 7662), cached briefly.
//!
//! Defends against: revoked or expired opaque tokens (an inactive answer is final; results are
//! cached at most `cache_secs` and never past `exp`), tokens for another resource (`aud` must
//! name this server), token leakage through the cache (keyed by SHA-256 of the token).
//! Does not defend against: a token revoked less than `cache_secs` ago.

use super::{now_secs, sha256, AuthError, TtlCache};
use crate::config::{Introspection, JwtIssuer};
use serde_json::{Map, Value};
use std::time::Duration;
use warden_policy::{AuthMethod, Principal};

pub struct Introspector {
    cfg: Introspection,
    secret: String,
    /// Lifetime and claim rules (reusing the JWT issuer defaults).
    rules: JwtIssuer,
    http: reqwest::Client,
    /// Results by SHA-256 of the token; `None`: inactive.
    cache: TtlCache<Option<Map<String, Value>>>,
}

impl Introspector {
    pub fn new(cfg: Introspection, http: reqwest::Client) -> Result<Introspector, String> {
        let secret = cfg.client_secret.resolve().map_err(|e| format!("auth.introspection.client_secret: {e}"))?;
        let rules = JwtIssuer::with_defaults(&cfg.endpoint);
        Ok(Introspector { cfg, secret, rules, http, cache: TtlCache::default() })
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

    /// Whether `token` is active and for `audience`; its principal.
    pub async fn check(&self, token: &str, audience: &str) -> Result<Principal, AuthError> {
        let key = sha256(token.as_bytes());
        let claims = match self.cache.get(&key) {
            Some(c) => c,
            None => {
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
