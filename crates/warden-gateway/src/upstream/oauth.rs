//! Credentials for an HTTP upstream. Warden's own ([`ClientCredentials`]): OAuth 2.1 client
//! credentials against the upstream's authorization server, one token per upstream, shared by
//! all sessions, fetched before first use, renewed 30 s before it expires or after the upstream
//! answers 401. Each caller's ([`Exchanger`], `mode = "exchange"`): the caller's token exchanged
//! for one for this upstream.
//!
//! Defends against: clients' tokens reaching upstreams (upstream requests carry only this
//! token), secrets in logs (the secret and tokens are never logged; header values are marked
//! sensitive).
//! Does not defend against: a compromised upstream authorization server.

use crate::config::UpstreamOAuth;
use http::HeaderValue;
use parking_lot::Mutex;
use serde_json::Value;
use std::sync::Arc;
use std::time::{Duration, Instant};

/// Warden's client at a configured token endpoint (`service` and `exchange`).
struct Client {
    token_url: String,
    id: String,
    secret: String,
}

impl Client {
    fn new(cfg: &UpstreamOAuth, upstream: &str) -> Result<Client, String> {
        let missing = |k: &str| format!("upstream {upstream}: oauth.{k}: required");
        let secret = cfg.client_secret.as_ref().ok_or_else(|| missing("client_secret"))?;
        Ok(Client {
            token_url: cfg.token_url.clone().ok_or_else(|| missing("token_url"))?,
            id: cfg.client_id.clone().ok_or_else(|| missing("client_id"))?,
            secret: secret.resolve().map_err(|e| format!("upstream {upstream}: oauth.client_secret: {e}"))?,
        })
    }
}

pub struct ClientCredentials {
    cfg: UpstreamOAuth,
    client: Client,
    cached: Mutex<Option<(HeaderValue, Instant)>>,
    fetching: tokio::sync::Mutex<()>,
}

impl ClientCredentials {
    pub fn new(cfg: &UpstreamOAuth, upstream: &str) -> Result<ClientCredentials, String> {
        Ok(ClientCredentials {
            cfg: cfg.clone(),
            client: Client::new(cfg, upstream)?,
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
        let (v, ttl, _) = token_request(http, &self.client, &form).await?;
        let until = Instant::now() + Duration::from_secs(ttl.saturating_sub(30).max(1));
        *self.cached.lock() = Some((v.clone(), until));
        Ok(v)
    }
}

/// Largest token endpoint answer read.
const MAX_TOKEN_RESPONSE: usize = 64 << 10;

/// The `iss` claim of a JWT, unverified (it was verified when the caller authenticated; here
/// it only decides where the token may be sent). `None` for an opaque token.
fn unverified_issuer(token: &str) -> Option<String> {
    use base64::Engine;
    let payload = token.split('.').nth(1)?;
    let bytes = base64::engine::general_purpose::URL_SAFE_NO_PAD.decode(payload.trim_end_matches('=')).ok()?;
    serde_json::from_slice::<Value>(&bytes).ok()?.get("iss")?.as_str().map(str::to_string)
}

/// One request to the token endpoint as the upstream's client (HTTP Basic): the
/// `Authorization` value (marked sensitive), the token's lifetime (300 s when unsaid) and the
/// token itself.
async fn token_request(
    http: &reqwest::Client,
    client: &Client,
    form: &[(&str, &str)],
) -> Result<(HeaderValue, u64, String), String> {
    let resp = http
        .post(&client.token_url)
        .basic_auth(&client.id, Some(&client.secret))
        .header("accept", "application/json")
        .form(form)
        .timeout(Duration::from_secs(10))
        .send()
        .await
        .map_err(|e| format!("token request failed: {}", e.without_url()))?;
    if !resp.status().is_success() {
        return Err(format!("token endpoint answered HTTP {}", resp.status()));
    }
    let mut resp = resp;
    let mut bytes = Vec::new();
    while let Some(chunk) = resp.chunk().await.map_err(|e| format!("token response: {}", e.without_url()))? {
        if bytes.len() + chunk.len() > MAX_TOKEN_RESPONSE {
            return Err(format!("token response over {MAX_TOKEN_RESPONSE} bytes"));
        }
        bytes.extend_from_slice(&chunk);
    }
    let body: Value = serde_json::from_slice(&bytes).map_err(|_| "token response is not JSON".to_string())?;
    let token = body.get("access_token").and_then(Value::as_str).ok_or("token response has no access_token")?;
    // At most a day: an absurd `expires_in` must not overflow a deadline.
    let ttl = body.get("expires_in").and_then(Value::as_u64).unwrap_or(300).min(86_400);
    let mut v = HeaderValue::from_str(&format!("Bearer {token}")).map_err(|_| "access token is not a valid header")?;
    v.set_sensitive(true);
    Ok((v, ttl, token.to_string()))
}

/// RFC 8693 token exchange for `[upstream.oauth] mode = "exchange"`: a caller's validated token
/// (the subject token) exchanged at the upstream's authorization server for a token for this
/// upstream, with Warden authenticating as its client (HTTP Basic). Exchanged tokens are cached
/// by the SHA-256 of the subject token (so per caller, never shared between callers) until 30 s
/// before they expire, never past the subject token's own expiry.
///
/// Defends against: one caller's upstream token serving another (the cache key is the caller's
/// own token); the client's token reaching the upstream (only the exchanged token is sent);
/// unbounded memory (at most [`MAX_EXCHANGED`] tokens kept; expired ones are dropped first).
/// Does not defend against: an authorization server that exchanges too generously (the
/// upstream token's scopes and audience are its decision).
pub struct Exchanger {
    cfg: UpstreamOAuth,
    client: Client,
    /// By the SHA-256 of the subject token: the header, its token's short digest, until when.
    cached: Mutex<std::collections::HashMap<[u8; 32], (HeaderValue, String, Instant)>>,
    /// One exchange at a time per subject token: concurrent first calls wait for it.
    inflight: Mutex<std::collections::HashMap<[u8; 32], Arc<tokio::sync::Mutex<()>>>>,
    /// Exchanges made (for tests and the log).
    pub exchanges: std::sync::atomic::AtomicU64,
}

/// Exchanged tokens kept at once, per upstream.
pub const MAX_EXCHANGED: usize = 10_000;
const ACCESS_TOKEN: &str = "urn:ietf:params:oauth:token-type:access_token";

impl Exchanger {
    pub fn new(cfg: &UpstreamOAuth, upstream: &str) -> Result<Exchanger, String> {
        Ok(Exchanger {
            cfg: cfg.clone(),
            client: Client::new(cfg, upstream)?,
            cached: Mutex::new(Default::default()),
            inflight: Mutex::new(Default::default()),
            exchanges: 0.into(),
        })
    }

    fn key(subject: &str) -> [u8; 32] {
        crate::digest::sha256(subject.as_bytes())
    }

    /// The short digest (12 hex of its SHA-256) of the token exchanged for `subject`, if any:
    /// which credential reached the upstream, for the audit record.
    pub fn digest(&self, subject: &str) -> Option<String> {
        self.cached.lock().get(&Self::key(subject)).map(|(_, d, _)| d.clone())
    }

    /// Forget the token exchanged for `subject` (the upstream refused it).
    pub fn invalidate(&self, subject: &str) {
        self.cached.lock().remove(&Self::key(subject));
    }

    /// `Authorization` value for the upstream on behalf of the caller whose token is
    /// `subject` (valid until `subject_expires`, Unix seconds, when known).
    pub async fn header(
        &self,
        http: &reqwest::Client,
        subject: &str,
        subject_expires: Option<u64>,
    ) -> Result<HeaderValue, String> {
        // Only an issuer's tokens this server is trusted with leave Warden for it.
        let iss = unverified_issuer(subject);
        if !iss.as_ref().is_some_and(|i| self.cfg.subject_issuers.contains(i)) {
            return Err(
                "this caller's token is not from an issuer listed in oauth.subject_issuers: not exchanged".into()
            );
        }
        let key = Self::key(subject);
        let cached =
            || self.cached.lock().get(&key).filter(|(_, _, until)| *until > Instant::now()).map(|(v, _, _)| v.clone());
        if let Some(v) = cached() {
            return Ok(v);
        }
        // Single flight: the first caller exchanges, the others wait and take its token.
        let gate = self.inflight.lock().entry(key).or_default().clone();
        let _one = gate.lock().await;
        if let Some(v) = cached() {
            return Ok(v);
        }
        let r = self.exchange(http, subject, subject_expires, key).await;
        self.inflight.lock().remove(&key);
        r
    }

    async fn exchange(
        &self,
        http: &reqwest::Client,
        subject: &str,
        subject_expires: Option<u64>,
        key: [u8; 32],
    ) -> Result<HeaderValue, String> {
        let mut form = vec![
            ("grant_type", "urn:ietf:params:oauth:grant-type:token-exchange"),
            ("subject_token", subject),
            ("subject_token_type", ACCESS_TOKEN),
            ("requested_token_type", ACCESS_TOKEN),
        ];
        if let Some(s) = &self.cfg.scope {
            form.push(("scope", s));
        }
        if let Some(r) = &self.cfg.resource {
            form.push(("resource", r));
        }
        let (v, ttl, token) = token_request(http, &self.client, &form).await?;
        let now = crate::clock::now_secs();
        let ttl = subject_expires.map_or(ttl, |exp| ttl.min(exp.saturating_sub(now)));
        self.exchanges.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let until = Instant::now() + Duration::from_secs(ttl.saturating_sub(30).max(1));
        let mut cached = self.cached.lock();
        if cached.len() >= MAX_EXCHANGED {
            let now = Instant::now();
            cached.retain(|_, (_, _, until)| *until > now);
            // Still full: the half nearest its expiry makes way (not everyone's at once).
            if cached.len() >= MAX_EXCHANGED {
                let mut ends: Vec<Instant> = cached.values().map(|(_, _, u)| *u).collect();
                ends.sort_unstable();
                let cut = ends[ends.len() / 2];
                cached.retain(|_, (_, _, until)| *until > cut);
            }
        }
        let digest = crate::digest::hex(&crate::digest::sha256(token.as_bytes()))[..12].to_string();
        cached.insert(key, (v.clone(), digest, until));
        Ok(v)
    }
}

/// A caller's token and its expiry (Unix seconds), as offered to a connection.
pub type Offered = (warden_policy::Presented, Option<u64>);

tokio::task_local! {
    /// The token of the request being sent (`pipeline/call.rs` scopes each upstream call and
    /// connect in it): a request goes upstream with its own caller's token, never with one a
    /// concurrent request of the same user offered to the shared connection meanwhile.
    pub static ON_BEHALF: Offered;
}

pub fn presented(p: &warden_policy::Principal) -> Offered {
    (p.presented.clone(), p.claims.get("exp").and_then(serde_json::Value::as_u64))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn jwt(iss: &str) -> String {
        use base64::Engine;
        let b64 = |v: &str| base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(v);
        format!("{}.{}.sig", b64(r#"{"alg":"EdDSA"}"#), b64(&format!(r#"{{"iss":"{iss}","sub":"alice"}}"#)))
    }

    /// Found by review: a caller's token went to whatever `token_url` named. Only the listed
    /// issuers' tokens leave Warden for the upstream's authorization server; nothing is sent
    /// for another's (the token endpoint here does not even exist).
    #[tokio::test]
    async fn only_the_listed_issuers_tokens_are_sent_to_be_exchanged() {
        let cfg: UpstreamOAuth = toml::from_str(
            "mode = \"exchange\"\ntoken_url = \"http://127.0.0.1:9/token\"\nclient_id = \"w\"\n\
             client_secret = { env = \"CARGO_PKG_NAME\" }\nsubject_issuers = [\"https://idp.example\"]\n",
        )
        .unwrap();
        let x = Exchanger::new(&cfg, "up").unwrap();
        let http = reqwest::Client::new();
        for other in [jwt("https://evil.example"), "opaque-token".to_string()] {
            let e = x.header(&http, &other, None).await.unwrap_err();
            assert!(e.contains("not from an issuer listed"), "{e}");
        }
        // A listed issuer's token is sent (and here fails to reach the endpoint).
        let e = x.header(&http, &jwt("https://idp.example"), None).await.unwrap_err();
        assert!(e.contains("token request failed"), "{e}");
        assert_eq!(x.exchanges.load(std::sync::atomic::Ordering::Relaxed), 0);
    }

    /// Found by review: concurrent first calls of one caller each exchanged. Now one does, and
    /// the others take its token.
    #[tokio::test]
    async fn concurrent_first_calls_make_one_exchange() {
        use std::sync::atomic::{AtomicUsize, Ordering};
        let served = Arc::new(AtomicUsize::new(0));
        let counter = served.clone();
        let app = axum::Router::new().route(
            "/token",
            axum::routing::post(move || {
                let counter = counter.clone();
                async move {
                    counter.fetch_add(1, Ordering::SeqCst);
                    tokio::time::sleep(Duration::from_millis(100)).await;
                    axum::Json(serde_json::json!({"access_token": "exchanged", "expires_in": 300}))
                }
            }),
        );
        let l = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let url = format!("http://{}/token", l.local_addr().unwrap());
        tokio::spawn(async move { axum::serve(l, app).await });
        let cfg: UpstreamOAuth = toml::from_str(&format!(
            "mode = \"exchange\"\ntoken_url = {url:?}\nclient_id = \"w\"\n\
             client_secret = {{ env = \"CARGO_PKG_NAME\" }}\nsubject_issuers = [\"https://idp.example\"]\n"
        ))
        .unwrap();
        let x = Arc::new(Exchanger::new(&cfg, "up").unwrap());
        let http = reqwest::Client::new();
        let subject = jwt("https://idp.example");
        let calls = (0..8).map(|_| {
            let (x, http, subject) = (x.clone(), http.clone(), subject.clone());
            tokio::spawn(async move { x.header(&http, &subject, None).await })
        });
        for c in futures::future::join_all(calls).await {
            assert_eq!(c.unwrap().unwrap().to_str().unwrap(), "Bearer exchanged");
        }
        assert_eq!(served.load(Ordering::SeqCst), 1);
        assert!(x.inflight.lock().is_empty(), "the gate is dropped once the token is cached");
    }
}
