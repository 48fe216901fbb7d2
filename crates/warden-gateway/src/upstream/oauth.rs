//! Warden's own credentials for an HTTP upstream: OAuth 2.1 client credentials against the
//! upstream's authorization server. One token per upstream, shared by all sessions, fetched
//! before first use, renewed 30 s before it expires or after the upstream answers 401.
//!
//! Defends against: clients' tokens reaching upstreams (upstream requests carry only this
//! token), secrets in logs (the secret and tokens are never logged; header values are marked
//! sensitive).
//! Does not defend against: a compromised upstream authorization server.

use crate::config::UpstreamOAuth;
use http::HeaderValue;
use parking_lot::Mutex;
use serde_json::Value;
use std::time::{Duration, Instant};

pub struct ClientCredentials {
    cfg: UpstreamOAuth,
    secret: String,
    cached: Mutex<Option<(HeaderValue, Instant)>>,
    fetching: tokio::sync::Mutex<()>,
}

impl ClientCredentials {
    pub fn new(cfg: &UpstreamOAuth, upstream: &str) -> Result<ClientCredentials, String> {
        let secret =
            cfg.client_secret.resolve().map_err(|e| format!("upstream {upstream}: oauth.client_secret: {e}"))?;
        Ok(ClientCredentials {
            cfg: cfg.clone(),
            secret,
            cached: Mutex::new(None),
            fetching: tokio::sync::Mutex::new(()),
        })
    }

    fn current(&self) -> Option<HeaderValue> {
        self.cached.lock().as_ref().filter(|(_, until)| *until > Instant::now()).map(|(v, _)| v.clone())
    }

    /// Forget the token (the upstream refused it).
    pub fn invalidate(&self) {
        *self.cached.lock() = None;
    }

    /// `Authorization` value for the upstream, fetching a token when needed.
    pub async fn header(&self, http: &reqwest::Client) -> Result<HeaderValue, String> {
        if let Some(v) = self.current() {
            return Ok(v);
        }
        let _one = self.fetching.lock().await;
        if let Some(v) = self.current() {
            return Ok(v);
        }
        let mut form = vec![("grant_type", "client_credentials")];
        if let Some(s) = &self.cfg.scope {
            form.push(("scope", s));
        }
        if let Some(r) = &self.cfg.resource {
            form.push(("resource", r));
        }
        let resp = http
            .post(&self.cfg.token_url)
            .basic_auth(&self.cfg.client_id, Some(&self.secret))
            .header("accept", "application/json")
            .form(&form)
            .timeout(Duration::from_secs(10))
            .send()
            .await
            .map_err(|e| format!("token request failed: {}", e.without_url()))?;
        if !resp.status().is_success() {
            return Err(format!("token endpoint answered HTTP {}", resp.status()));
        }
        let body: Value = resp.json().await.map_err(|_| "token response is not JSON".to_string())?;
        let token = body.get("access_token").and_then(Value::as_str).ok_or("token response has no access_token")?;
        let ttl = body.get("expires_in").and_then(Value::as_u64).unwrap_or(300);
        let mut v =
            HeaderValue::from_str(&format!("Bearer {token}")).map_err(|_| "access token is not a valid header")?;
        v.set_sensitive(true);
        let until = Instant::now() + Duration::from_secs(ttl.saturating_sub(30).max(1));
        *self.cached.lock() = Some((v.clone(), until));
        Ok(v)
    }
}
