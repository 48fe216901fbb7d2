//! Bearer JWT validation against an issuer's keys (JWKS), for external authorization servers and
//! the built-in one.
//!
//! Defends against: forged tokens (signature checked with the issuer's published keys only;
//! `jku`, `x5u` and embedded `jwk` headers are ignored), algorithm confusion (`none` and HMAC are
//! never accepted; the header's `alg` must be allow-listed, match the key's type and the key's own
//! `alg`), tokens for another resource (`aud` must contain this server's resource URI) or from
//! another issuer (`iss` exact), expired, not-yet-valid, future-issued or over-long-lived tokens,
//! and floods of random `kid`s (an unknown `kid` triggers at most one JWKS fetch per interval).
//! An issuer whose keys cannot be fetched (not started yet, down) makes tokens wait, not fail:
//! they get 503 with `Retry-After` (never 401, which would send OAuth clients into a new login),
//! and the keys are fetched again with a short backoff (0.5 s, doubling to 30 s).
//! Does not defend against: use of a stolen token before it expires, or revocation before `exp`
//! (keep lifetimes short, or use introspection).

use super::{now_secs, AuthError};
use crate::config::JwtIssuer;
use jsonwebtoken::jwk::{AlgorithmParameters, JwkSet, PublicKeyUse};
use jsonwebtoken::{Algorithm, DecodingKey, Header, Validation};
use parking_lot::{Mutex, RwLock};
use serde_json::{Map, Value};
use std::str::FromStr;
use std::sync::Arc;
use std::time::{Duration, Instant};
use warden_policy::{AuthMethod, Principal};

const MAX_DOC_BYTES: usize = 1 << 20;
/// First retry after a failed JWKS fetch; doubles up to [`MAX_RETRY`].
const FIRST_RETRY: Duration = Duration::from_millis(500);
const MAX_RETRY: Duration = Duration::from_secs(30);
/// While fetches fail, a token with an unknown `kid` causes at most one fetch per this long.
const FAILING_GAP: Duration = Duration::from_secs(1);

/// A usable verification key.
pub struct Key {
    kid: Option<String>,
    /// The key's own `alg`, when the JWK names one.
    alg: Option<Algorithm>,
    kty: Kty,
    key: DecodingKey,
}

#[derive(Clone, Copy, PartialEq, Eq, Debug)]
enum Kty {
    Rsa,
    Ec,
    Okp,
}

fn kty_of(alg: Algorithm) -> Option<Kty> {
    use Algorithm::*;
    match alg {
        RS256 | RS384 | RS512 | PS256 | PS384 | PS512 => Some(Kty::Rsa),
        ES256 | ES384 => Some(Kty::Ec),
        EdDSA => Some(Kty::Okp),
        HS256 | HS384 | HS512 => None,
    }
}

/// Usable signature keys of a JWKS document: symmetric keys, encryption keys and malformed keys
/// are skipped.
pub fn parse_jwks(set: &JwkSet) -> Vec<Key> {
    set.keys
        .iter()
        .filter(|k| !matches!(k.common.public_key_use, Some(PublicKeyUse::Encryption)))
        .filter_map(|k| {
            let kty = match &k.algorithm {
                AlgorithmParameters::RSA(_) => Kty::Rsa,
                AlgorithmParameters::EllipticCurve(_) => Kty::Ec,
                AlgorithmParameters::OctetKeyPair(_) => Kty::Okp,
                AlgorithmParameters::OctetKey(_) => return None,
            };
            let alg = match k.common.key_algorithm {
                Some(a) => Some(Algorithm::from_str(&a.to_string()).ok()?),
                None => None,
            };
            Some(Key { kid: k.common.key_id.clone(), alg, kty, key: DecodingKey::from_jwk(k).ok()? })
        })
        .collect()
}

/// How an issuer's keys are found.
pub enum KeySource {
    /// A JWKS URL.
    Url(String),
    /// RFC 8414 / OIDC discovery under the issuer.
    Discover,
    /// Fixed keys (the built-in authorization server's).
    Static,
}

/// One trusted issuer and its cached keys.
pub struct Issuer {
    pub cfg: JwtIssuer,
    source: KeySource,
    keys: RwLock<Arc<Vec<Key>>>,
    fetch: Mutex<FetchState>,
    fetching: tokio::sync::Mutex<()>,
    http: reqwest::Client,
}

/// How the last JWKS fetches went.
#[derive(Clone, Copy, Default)]
struct FetchState {
    /// When the last fetch started.
    last: Option<Instant>,
    /// Failed fetches in a row (0: the last one worked, or none was made yet).
    failures: u32,
}

impl FetchState {
    /// The wait before the next background attempt after `failures` failures in a row.
    fn backoff(failures: u32) -> Duration {
        FIRST_RETRY.saturating_mul(1 << failures.saturating_sub(1).min(16)).min(MAX_RETRY)
    }
}

/// An issuer's keys as `/readyz` reports them.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct KeyStatus {
    pub keys: usize,
    /// Failed fetches in a row.
    pub failures: u32,
}

impl Issuer {
    pub fn new(cfg: JwtIssuer, source: KeySource, keys: Vec<Key>, http: reqwest::Client) -> Arc<Issuer> {
        Arc::new(Issuer {
            cfg,
            source,
            keys: RwLock::new(Arc::new(keys)),
            fetch: Mutex::new(FetchState::default()),
            fetching: tokio::sync::Mutex::new(()),
            http,
        })
    }

    /// Refresh the keys in the background every `jwks_refresh_secs` while `self` lives.
    pub fn start_refresh(self: &Arc<Self>) {
        if matches!(self.source, KeySource::Static) {
            return;
        }
        let me = Arc::downgrade(self);
        let every = Duration::from_secs(self.cfg.jwks_refresh_secs.max(10));
        tokio::spawn(async move {
            loop {
                let Some(i) = me.upgrade() else { return };
                let wait = match i.refresh().await {
                    Ok(n) => {
                        tracing::debug!(issuer = %i.cfg.issuer, keys = n, "JWKS refreshed");
                        every
                    }
                    Err(e) => {
                        let failures = i.fetch.lock().failures;
                        let retry = FetchState::backoff(failures).min(every);
                        tracing::warn!(issuer = %i.cfg.issuer, error = %e, keys = i.keys.read().len(),
                                       retry_in = ?retry, "JWKS fetch failed");
                        retry
                    }
                };
                drop(i);
                tokio::time::sleep(wait).await;
            }
        });
    }

    async fn get_json(&self, url: &str) -> Result<Value, String> {
        let resp = self
            .http
            .get(url)
            .header("accept", "application/json")
            .timeout(Duration::from_secs(10))
            .send()
            .await
            .map_err(|e| format!("GET {url}: {e}"))?;
        if !resp.status().is_success() {
            return Err(format!("GET {url}: HTTP {}", resp.status()));
        }
        if resp.content_length().is_some_and(|n| n as usize > MAX_DOC_BYTES) {
            return Err(format!("GET {url}: document too large"));
        }
        let body = resp.bytes().await.map_err(|e| format!("GET {url}: {e}"))?;
        if body.len() > MAX_DOC_BYTES {
            return Err(format!("GET {url}: document too large"));
        }
        serde_json::from_slice(&body).map_err(|e| format!("GET {url}: not JSON: {e}"))
    }

    /// The JWKS URL: configured, or from the issuer's metadata (whose `issuer` must match).
    async fn jwks_url(&self) -> Result<String, String> {
        match &self.source {
            KeySource::Url(u) => Ok(u.clone()),
            KeySource::Static => Err("static keys".into()),
            KeySource::Discover => {
                let iss = self.cfg.issuer.trim_end_matches('/');
                let u = reqwest::Url::parse(iss).map_err(|e| e.to_string())?;
                let origin = u.origin().ascii_serialization();
                let path = u.path().trim_end_matches('/');
                let candidates = [
                    format!("{origin}/.well-known/oauth-authorization-server{path}"),
                    format!("{iss}/.well-known/openid-configuration"),
                ];
                let mut last = String::new();
                for c in candidates {
                    match self.get_json(&c).await {
                        Ok(meta) => {
                            if meta.get("issuer").and_then(Value::as_str) != Some(self.cfg.issuer.as_str()) {
                                return Err(format!("{c}: metadata names another issuer"));
                            }
                            let j = meta.get("jwks_uri").and_then(Value::as_str).ok_or(format!("{c}: no jwks_uri"))?;
                            crate::config::check_remote_url(j).map_err(|m| format!("jwks_uri: {m}"))?;
                            return Ok(j.to_string());
                        }
                        Err(e) => last = e,
                    }
                }
                Err(last)
            }
        }
    }

    /// Fetch the keys now (one fetch at a time). Returns how many usable keys there are.
    pub async fn refresh(&self) -> Result<usize, String> {
        let _one = self.fetching.lock().await;
        self.fetch_now().await
    }

    /// Fetch the keys; the caller holds `fetching`.
    async fn fetch_now(&self) -> Result<usize, String> {
        // A document without a usable key is a failed fetch: tokens wait for keys (503).
        let r = self.fetch_keys().await.and_then(|n| if n == 0 { Err("no usable signing key".into()) } else { Ok(n) });
        let mut st = self.fetch.lock();
        // when it ended: the next attempt is measured from here (a hanging issuer is not asked
        // again the moment a slow fetch gives up)
        st.last = Some(Instant::now());
        st.failures = if r.is_ok() { 0 } else { st.failures.saturating_add(1) };
        r
    }

    async fn fetch_keys(&self) -> Result<usize, String> {
        let url = self.jwks_url().await?;
        let doc = self.get_json(&url).await?;
        let set: JwkSet = serde_json::from_value(doc).map_err(|e| format!("{url}: not a JWKS: {e}"))?;
        let keys = parse_jwks(&set);
        let n = keys.len();
        *self.keys.write() = Arc::new(keys);
        Ok(n)
    }

    /// How many keys are cached and how the fetches go (for `/readyz`).
    pub fn status(&self) -> KeyStatus {
        let keys = if matches!(self.source, KeySource::Static) { 1 } else { self.keys.read().len() };
        KeyStatus { keys, failures: self.fetch.lock().failures }
    }

    fn find(keys: &[Key], kid: Option<&str>, alg: Algorithm) -> Option<usize> {
        let kty = kty_of(alg)?;
        let fits = |k: &Key| k.kty == kty && k.alg.is_none_or(|a| a == alg);
        match kid {
            Some(kid) => keys.iter().position(|k| k.kid.as_deref() == Some(kid) && fits(k)),
            // No kid: only unambiguous.
            None => {
                let mut it = keys.iter().enumerate().filter(|(_, k)| fits(k));
                match (it.next(), it.next()) {
                    (Some((i, _)), None) => Some(i),
                    _ => None,
                }
            }
        }
    }

    /// The key for a token, fetching the JWKS again (rate-limited) when its `kid` is unknown.
    async fn key_for(&self, header: &Header) -> Result<(Arc<Vec<Key>>, usize), AuthError> {
        let keys = self.keys.read().clone();
        if let Some(i) = Self::find(&keys, header.kid.as_deref(), header.alg) {
            return Ok((keys, i));
        }
        if matches!(self.source, KeySource::Static) {
            return Err(AuthError::InvalidToken("unknown signing key"));
        }
        // While fetches fail, a request never queues behind one in flight: it waits outside (503).
        let failing = self.fetch.lock().failures > 0;
        let _one = match self.fetching.try_lock() {
            Ok(g) => g,
            Err(_) if failing => return Err(unavailable(FAILING_GAP)),
            Err(_) => self.fetching.lock().await,
        };
        // Someone else (or the background refresh) may have fetched while we waited.
        let keys = self.keys.read().clone();
        if let Some(i) = Self::find(&keys, header.kid.as_deref(), header.alg) {
            return Ok((keys, i));
        }
        let st = *self.fetch.lock();
        let since = st.last.map(|t| t.elapsed());
        if st.failures > 0 {
            // The keys cannot be fetched right now: the token may well be good, so it waits
            // (503) rather than fails (401); fetches on demand back off like the background ones
            // (from FAILING_GAP to 5 s after the last one ended).
            let gap = FetchState::backoff(st.failures).clamp(FAILING_GAP, Duration::from_secs(5));
            if let Some(wait) = since.and_then(|s| gap.checked_sub(s)) {
                return Err(unavailable(wait));
            }
        } else if since.is_some_and(|s| s < Duration::from_secs(self.cfg.unknown_kid_refresh_secs)) {
            return Err(AuthError::InvalidToken("unknown signing key"));
        }
        if let Err(e) = self.fetch_now().await {
            tracing::warn!(issuer = %self.cfg.issuer, error = %e, "JWKS fetch failed");
            return Err(unavailable(FAILING_GAP));
        }
        let keys = self.keys.read().clone();
        match Self::find(&keys, header.kid.as_deref(), header.alg) {
            Some(i) => Ok((keys, i)),
            None => Err(AuthError::InvalidToken("unknown signing key")),
        }
    }

    /// Verify `token` (already split: `header` is its decoded header) for `audience`, expecting
    /// `iss == issuer`.
    pub async fn verify(
        &self,
        token: &str,
        header: &Header,
        issuer: &str,
        audience: &str,
    ) -> Result<Principal, AuthError> {
        let allowed = self.cfg.algorithms.iter().any(|a| Algorithm::from_str(a).ok() == Some(header.alg));
        if !allowed || kty_of(header.alg).is_none() {
            return Err(AuthError::InvalidToken("signature algorithm not accepted"));
        }
        let (keys, i) = self.key_for(header).await?;
        let mut v = Validation::new(header.alg);
        v.leeway = self.cfg.leeway_secs;
        v.set_audience(&[audience]);
        v.set_issuer(&[issuer]);
        v.set_required_spec_claims(&["exp", "iss", "aud", "sub"]);
        v.validate_nbf = true;
        let data = jsonwebtoken::decode::<Map<String, Value>>(token, &keys[i].key, &v).map_err(|e| {
            use jsonwebtoken::errors::ErrorKind as K;
            AuthError::InvalidToken(match e.kind() {
                K::ExpiredSignature => "token expired",
                K::ImmatureSignature => "token not yet valid",
                K::InvalidAudience => "token is not for this resource",
                K::InvalidIssuer => "token from an untrusted issuer",
                K::MissingRequiredClaim(_) => "token lacks a required claim",
                K::InvalidSignature => "bad signature",
                K::InvalidAlgorithm => "signature algorithm not accepted",
                _ => "malformed token",
            })
        })?;
        claims_principal(data.claims, &self.cfg, AuthMethod::Jwt)
    }
}

/// The keys could not be fetched: 503, retry after `wait` (whole seconds, at least 1).
fn unavailable(wait: Duration) -> AuthError {
    AuthError::Unavailable("authorization server keys unavailable", crate::error::retry_after_secs(wait))
}

fn claim_path<'a>(claims: &'a Map<String, Value>, path: &str) -> Option<&'a Value> {
    let mut parts = path.split('.');
    let mut v = claims.get(parts.next()?)?;
    for p in parts {
        v = v.get(p)?;
    }
    Some(v)
}

fn strings(v: Option<&Value>) -> Vec<String> {
    match v {
        Some(Value::String(s)) => s.split_whitespace().map(String::from).collect(),
        Some(Value::Array(a)) => a.iter().filter_map(|x| x.as_str().map(String::from)).collect(),
        _ => vec![],
    }
}

/// Claims (signature, `iss`, `aud`, `exp`, `nbf` already checked) → a principal, after the
/// checks jsonwebtoken does not make: `iat` not in the future, lifetime within the maximum.
/// Shared with introspection, whose responses carry the same claims.
pub fn claims_principal(
    claims: Map<String, Value>,
    cfg: &JwtIssuer,
    method: AuthMethod,
) -> Result<Principal, AuthError> {
    let now = now_secs();
    let exp = claims.get("exp").and_then(Value::as_u64).ok_or(AuthError::InvalidToken("token lacks exp"))?;
    let iat = claims.get("iat").and_then(Value::as_u64);
    if iat.is_some_and(|t| t > now + cfg.leeway_secs) {
        return Err(AuthError::InvalidToken("token issued in the future"));
    }
    if exp.saturating_sub(iat.unwrap_or(now)) > cfg.max_lifetime_secs + cfg.leeway_secs {
        return Err(AuthError::InvalidToken("token lifetime exceeds the maximum"));
    }
    let subject = claims
        .get("sub")
        .and_then(Value::as_str)
        .filter(|s| !s.is_empty())
        .ok_or(AuthError::InvalidToken("token lacks sub"))?
        .to_string();
    let mut scopes = match claims.get("scope") {
        Some(v) => strings(Some(v)),
        None => strings(claims.get("scp")),
    };
    // Warden's own scopes only from an issuer trusted with them.
    if !cfg.admin_scopes {
        scopes.retain(|s| !s.starts_with("warden:"));
    }
    let roles = strings(claim_path(&claims, &cfg.roles_claim));
    let tenant = claim_path(&claims, &cfg.tenant_claim).and_then(Value::as_str).map(String::from);
    if !cfg.tenants.is_empty() && tenant.as_ref().is_some_and(|t| !cfg.tenants.contains(t)) {
        return Err(AuthError::InvalidToken("token names a tenant its issuer may not assert"));
    }
    let client_id = claims.get("client_id").or_else(|| claims.get("azp")).and_then(Value::as_str).map(String::from);
    Ok(Principal { subject, tenant, client_id, scopes, roles, claims, method, presented: Default::default() })
}
