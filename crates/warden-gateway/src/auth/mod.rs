//! Authentication, DESIGN.md stage 2: every request to `/mcp` proves who is calling before
//! anything else reads it, and becomes a [`Principal`].
//!
//! Accepted, in `Authorization: Bearer …` only: API keys (`wdk_…`), JWTs from configured issuers
//! or the built-in authorization server, opaque tokens through introspection. A verified TLS
//! client certificate authenticates on its own when no `Authorization` header is sent.
//!
//! Defends against: anonymous access on a network interface (config refuses a non-loopback bind
//! without `[auth]`), tokens in URLs (a query `access_token` is refused: URLs end up in logs),
//! oversized or malformed credentials, tokens for another resource, and token leakage: tokens are
//! never logged, never put in an error, and never forwarded (upstream requests are built from
//! scratch with the upstream's own credentials).
//! Does not defend against: what [`jwt`], [`apikey`] and [`introspect`] list as out of scope.

pub mod apikey;
pub mod as_http;
pub mod as_routes;
mod as_shared;
mod as_state;
mod as_store;
mod authorize;
pub mod builtin;
pub mod cimd;
pub mod introspect;
pub mod jwt;
pub mod register;
mod token;

use crate::caller::PeerCert;
pub use crate::clock::now_secs;
pub use crate::digest::{hex, sha256};

use crate::config::{Auth, Config, JwtIssuer};
use crate::server::http::Authenticate;
use axum::body::Body;
use base64::Engine;
use futures::future::BoxFuture;
use http::{header, HeaderValue, Response, StatusCode};
use parking_lot::Mutex;
use ring::digest::SHA256;
use serde_json::{json, Value};
use std::collections::HashMap;
use std::sync::Arc;
use std::time::SystemTime;
use warden_policy::Principal;

/// Longest credential accepted in `Authorization`.
pub const MAX_TOKEN_BYTES: usize = 8192;
const MAX_CACHE: usize = 10_000;

/// Why a request was not authenticated. Messages are safe to show a client.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum AuthError {
    /// No credential: 401 with a challenge.
    Missing,
    /// A credential that is not accepted: 401 `invalid_token`.
    InvalidToken(&'static str),
    /// A malformed request (token in the query, two `Authorization` headers): 400.
    InvalidRequest(&'static str),
    /// Authenticated, but lacking scopes: 403 `insufficient_scope`.
    InsufficientScope(Vec<String>),
    /// The authorization server cannot be reached to check the credential: 503 with
    /// `Retry-After` (seconds).
    Unavailable(&'static str, u64),
}

impl AuthError {
    /// A short label for logs and metrics.
    pub fn reason(&self) -> &'static str {
        match self {
            AuthError::Missing => "missing_credentials",
            AuthError::InvalidToken(r) | AuthError::InvalidRequest(r) | AuthError::Unavailable(r, _) => r,
            AuthError::InsufficientScope(_) => "insufficient_scope",
        }
    }
}

pub struct Authenticator {
    resource: Option<String>,
    tls: bool,
    required_scopes: Vec<String>,
    scopes_supported: Vec<String>,
    issuers: Vec<Arc<jwt::Issuer>>,
    introspection: Option<introspect::Introspector>,
    api_keys: apikey::ApiKeys,
    pub builtin: Option<Arc<builtin::AuthServer>>,
    /// Verified JWTs by SHA-256(token, resource), until their `exp`.
    verified: TtlCache<Arc<Principal>>,
    /// Where failures are recorded.
    audit: std::sync::OnceLock<Arc<crate::audit::Audit>>,
}

/// A bounded map of results that expire (unix seconds), keyed by a digest (never a token).
pub struct TtlCache<V> {
    map: Mutex<HashMap<[u8; 32], (u64, V)>>,
}

impl<V: Clone> Default for TtlCache<V> {
    fn default() -> Self {
        TtlCache { map: Mutex::new(HashMap::new()) }
    }
}

impl<V: Clone> TtlCache<V> {
    pub fn get(&self, key: &[u8; 32]) -> Option<V> {
        self.map.lock().get(key).filter(|(until, _)| *until > now_secs()).map(|(_, v)| v.clone())
    }

    pub fn put(&self, key: [u8; 32], until: u64, v: V) {
        let mut m = self.map.lock();
        if m.len() >= MAX_CACHE {
            let now = now_secs();
            m.retain(|_, (e, _)| *e > now);
            if m.len() >= MAX_CACHE {
                m.clear();
            }
        }
        m.insert(key, (until, v));
    }
}

fn b64token(s: &str) -> bool {
    !s.is_empty()
        && s.bytes().all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'.' | b'_' | b'~' | b'+' | b'/' | b'='))
}

/// `iss` of a JWT, read without verification, only to pick the issuer that verifies it.
fn unverified_issuer(token: &str) -> Option<String> {
    let payload = token.split('.').nth(1)?;
    let bytes = base64::engine::general_purpose::URL_SAFE_NO_PAD.decode(payload).ok()?;
    let v: Value = serde_json::from_slice(&bytes).ok()?;
    v.get("iss")?.as_str().map(String::from)
}

impl Authenticator {
    /// The built-in authorization server (its routes exist only when it does).
    pub(super) fn builtin_server(&self) -> &builtin::AuthServer {
        self.builtin.as_deref().expect("routes exist only with a built-in server")
    }

    /// `store`: the shared store, where the built-in authorization server keeps its state when it
    /// is not the memory one.
    pub fn new(
        auth: &Auth,
        cfg: &Config,
        http: reqwest::Client,
        store: Option<Arc<dyn crate::store::Store>>,
    ) -> Result<Arc<Authenticator>, String> {
        let issuers = auth
            .issuers
            .iter()
            .map(|j| {
                let source = match &j.jwks_url {
                    Some(u) => jwt::KeySource::Url(u.clone()),
                    None => jwt::KeySource::Discover,
                };
                jwt::Issuer::new(j.clone(), source, vec![], http.clone())
            })
            .collect();
        let introspection = auth.introspection.clone().map(|i| introspect::Introspector::new(i, http)).transpose()?;
        let builtin = auth.builtin.as_ref().map(|b| builtin::AuthServer::new(b, auth, cfg, store)).transpose()?;
        let scopes_supported = if auth.scopes_supported.is_empty() {
            let mut s = auth.required_scopes.clone();
            // Warden's operator scopes are not for MCP clients: a client that asks for every
            // scope the resource lists must not come back with the admin console's rights.
            for x in auth.builtin.iter().flat_map(|b| &b.scopes).filter(|x| !operator_scope(x)) {
                if !s.contains(x) {
                    s.push(x.clone());
                }
            }
            s
        } else {
            auth.scopes_supported.clone()
        };
        Ok(Arc::new(Authenticator {
            resource: auth.resource.clone(),
            tls: cfg.listen.tls.is_some(),
            required_scopes: auth.required_scopes.clone(),
            scopes_supported,
            issuers,
            introspection,
            api_keys: apikey::ApiKeys::new(&auth.api_keys),
            builtin,
            verified: TtlCache::default(),
            audit: std::sync::OnceLock::new(),
        }))
    }

    /// Record authentication failures in `audit`.
    pub fn set_audit(&self, audit: Arc<crate::audit::Audit>) {
        let _ = self.audit.set(audit);
    }

    /// Each configured issuer (by `iss`) and its keys, for `/readyz`.
    pub fn key_status(&self) -> Vec<(String, jwt::KeyStatus)> {
        self.issuers.iter().map(|i| (i.cfg.issuer.clone(), i.status())).collect()
    }

    /// Start background JWKS refreshes.
    pub fn start(&self) {
        for i in &self.issuers {
            i.start_refresh();
        }
    }

    /// This server's resource URI for a request: configured, or (loopback only) from its `Host`,
    /// which the endpoint has already checked.
    /// The scopes every caller's credential must carry.
    pub fn required_scopes(&self) -> &[String] {
        &self.required_scopes
    }

    /// The first JWT issuer trusted with Warden's own scopes (`admin_scopes`).
    pub fn admin_issuer(&self) -> Option<String> {
        self.issuers.iter().find(|i| i.cfg.admin_scopes).map(|i| i.cfg.issuer.clone())
    }

    pub fn resource_for(&self, req_headers: &http::HeaderMap, authority: Option<&str>) -> String {
        if let Some(r) = &self.resource {
            return r.clone();
        }
        let host = req_headers.get(header::HOST).and_then(|h| h.to_str().ok()).or(authority).unwrap_or("localhost");
        format!("{}://{host}/mcp", if self.tls { "https" } else { "http" })
    }

    /// The RFC 9728 metadata URL for a resource URI (path inserted after the well-known prefix).
    pub fn metadata_url(resource: &str) -> String {
        match reqwest::Url::parse(resource) {
            Ok(u) => format!(
                "{}/.well-known/oauth-protected-resource{}",
                u.origin().ascii_serialization(),
                u.path().trim_end_matches('/')
            ),
            Err(_) => String::new(),
        }
    }

    /// The protected resource metadata document (RFC 9728).
    pub fn metadata(&self, resource: &str) -> Value {
        let mut servers: Vec<String> = vec![];
        if self.builtin.is_some() {
            servers.push(builtin::issuer_for(resource));
        }
        servers.extend(self.issuers.iter().map(|i| i.cfg.issuer.clone()));
        json!({
            "resource": resource,
            "authorization_servers": servers,
            "scopes_supported": self.scopes_supported,
            "bearer_methods_supported": ["header"],
            "resource_name": "Warden MCP gateway",
        })
    }

    /// Authenticate one request for `resource`.
    pub async fn authenticate(&self, req: &http::request::Parts, resource: &str) -> Result<Arc<Principal>, AuthError> {
        if let Some(q) = req.uri.query() {
            if q.split('&').any(|kv| kv.split('=').next() == Some("access_token")) {
                return Err(AuthError::InvalidRequest("tokens are accepted only in the Authorization header"));
            }
        }
        let mut values = req.headers.get_all(header::AUTHORIZATION).iter();
        let (value, extra) = (values.next(), values.next());
        if extra.is_some() {
            return Err(AuthError::InvalidRequest("more than one Authorization header"));
        }
        let principal = match value {
            None => match req.extensions.get::<PeerCert>() {
                Some(c) => c.0.clone(),
                None => return Err(AuthError::Missing),
            },
            Some(v) => {
                let v = v.to_str().map_err(|_| AuthError::InvalidToken("malformed credentials"))?;
                let (scheme, token) = v.split_once(' ').ok_or(AuthError::Missing)?;
                if !scheme.eq_ignore_ascii_case("bearer") {
                    return Err(AuthError::Missing);
                }
                let token = token.trim();
                if token.len() > MAX_TOKEN_BYTES {
                    return Err(AuthError::InvalidToken("token too large"));
                }
                if !b64token(token) {
                    return Err(AuthError::InvalidToken("malformed token"));
                }
                let client = req.extensions.get::<crate::caller::ClientAddr>().map(|c| c.0);
                self.bearer(token, resource, client).await?
            }
        };
        let missing = principal.missing_scopes(&self.required_scopes);
        if !missing.is_empty() {
            return Err(AuthError::InsufficientScope(missing.into_iter().map(String::from).collect()));
        }
        Ok(principal)
    }

    async fn bearer(
        &self,
        token: &str,
        resource: &str,
        client: Option<std::net::IpAddr>,
    ) -> Result<Arc<Principal>, AuthError> {
        if token.starts_with(apikey::PREFIX) && !self.api_keys.is_empty() {
            return match self.api_keys.check(token, SystemTime::now()) {
                Ok(p) => Ok(Arc::new(p)),
                Err(apikey::KeyError::Expired) => Err(AuthError::InvalidToken("API key expired")),
                Err(apikey::KeyError::Unknown) => Err(AuthError::InvalidToken("unknown API key")),
            };
        }
        if token.split('.').count() == 3 {
            let cache_key: [u8; 32] = {
                let mut ctx = ring::digest::Context::new(&SHA256);
                ctx.update(token.as_bytes());
                ctx.update(b"\0");
                ctx.update(resource.as_bytes());
                ctx.finish().as_ref().try_into().expect("32 bytes")
            };
            if let Some(p) = self.verified.get(&cache_key) {
                return Ok(p);
            }
            let header = jsonwebtoken::decode_header(token).map_err(|_| AuthError::InvalidToken("malformed token"))?;
            let iss = unverified_issuer(token);
            let issuer = match (&self.builtin, iss.as_deref()) {
                (Some(b), Some(i)) if i == builtin::issuer_for(resource) => Some((b.keys(), i.to_string())),
                (_, Some(i)) => self.issuers.iter().find(|x| x.cfg.issuer == i).map(|x| (x.clone(), i.to_string())),
                _ => None,
            };
            match issuer {
                Some((issuer, iss)) => {
                    let mut p = issuer.verify(token, &header, &iss, resource).await?;
                    p.presented = warden_policy::Presented::new(token);
                    let p = Arc::new(p);
                    let exp = p.claims.get("exp").and_then(Value::as_u64).unwrap_or(0);
                    self.verified.put(cache_key, exp, p.clone());
                    return Ok(p);
                }
                None if self.introspection.is_none() => {
                    return Err(AuthError::InvalidToken("token from an untrusted issuer"))
                }
                None => {}
            }
        }
        match &self.introspection {
            Some(i) => i.check(token, resource, client).await.map(|mut p| {
                p.presented = warden_policy::Presented::new(token);
                Arc::new(p)
            }),
            None => Err(AuthError::InvalidToken("malformed token")),
        }
    }

    /// Who a bearer token (from a browser's sign-in, `link_pages.rs`) says the caller is, checked
    /// as a request's would be for `resource`.
    pub async fn verify_bearer(&self, token: &str, resource: &str) -> Result<Arc<Principal>, AuthError> {
        if token.len() > MAX_TOKEN_BYTES || !b64token(token) {
            return Err(AuthError::InvalidToken("malformed token"));
        }
        self.bearer(token, resource, None).await
    }

    /// Warden's client at `issuer` for signing its users in (a pre-registered id and secret):
    /// the built-in server's first-party link client, or `[[auth.jwt]] sign_in_client_id`.
    /// `None`: register dynamically if the issuer offers it.
    pub fn sign_in_client(&self, issuer: &str, resource: &str) -> Result<Option<(String, Option<String>)>, String> {
        if self.builtin.is_some() && issuer == builtin::issuer_for(resource) {
            return Ok(Some((builtin::LINK_CLIENT.to_string(), None)));
        }
        let Some(i) = self.issuers.iter().find(|i| i.cfg.issuer == issuer) else { return Ok(None) };
        let secret = (i.cfg.sign_in_client_secret.as_ref())
            .map(|s| s.resolve().map_err(|e| format!("sign_in_client_secret: {e}")))
            .transpose()?;
        Ok(i.cfg.sign_in_client_id.clone().map(|id| (id, secret)))
    }

    /// The refusal for `e`: status, `WWW-Authenticate` challenge and a JSON body.
    pub fn reject(&self, e: &AuthError, resource: &str) -> Response<Body> {
        let meta = Self::metadata_url(resource);
        let scope = self.required_scopes.join(" ");
        let (status, challenge, error, desc) = match e {
            AuthError::Missing => {
                let mut c = format!("Bearer resource_metadata=\"{meta}\"");
                if !scope.is_empty() {
                    c.push_str(&format!(", scope=\"{scope}\""));
                }
                (StatusCode::UNAUTHORIZED, Some(c), "invalid_request", "authentication required")
            }
            AuthError::InvalidToken(d) => (
                StatusCode::UNAUTHORIZED,
                Some(format!(
                    "Bearer error=\"invalid_token\", error_description=\"{d}\", resource_metadata=\"{meta}\""
                )),
                "invalid_token",
                *d,
            ),
            AuthError::InvalidRequest(d) => (
                StatusCode::BAD_REQUEST,
                Some(format!("Bearer error=\"invalid_request\", error_description=\"{d}\"")),
                "invalid_request",
                *d,
            ),
            AuthError::InsufficientScope(missing) => {
                let mut need = self.required_scopes.clone();
                for m in missing {
                    if !need.contains(m) {
                        need.push(m.clone());
                    }
                }
                (
                    StatusCode::FORBIDDEN,
                    Some(format!(
                        "Bearer error=\"insufficient_scope\", scope=\"{}\", resource_metadata=\"{meta}\", \
                         error_description=\"additional scope required\"",
                        need.join(" ")
                    )),
                    "insufficient_scope",
                    "additional scope required",
                )
            }
            AuthError::Unavailable(d, _) => (StatusCode::SERVICE_UNAVAILABLE, None, "temporarily_unavailable", *d),
        };
        let mut r = Response::builder()
            .status(status)
            .header(header::CONTENT_TYPE, "application/json")
            .header(header::CACHE_CONTROL, "no-store")
            .body(Body::from(json!({"error": error, "error_description": desc}).to_string()))
            .expect("static response parts");
        if let Some(c) = challenge.and_then(|c| HeaderValue::from_str(&c).ok()) {
            r.headers_mut().insert(header::WWW_AUTHENTICATE, c);
        }
        if let AuthError::Unavailable(_, secs) = e {
            r.headers_mut().insert(header::RETRY_AFTER, HeaderValue::from(*secs));
        }
        r
    }
}

impl Authenticate for Authenticator {
    fn authenticate<'a>(
        &'a self,
        req: &'a http::request::Parts,
    ) -> BoxFuture<'a, Result<Arc<Principal>, Response<Body>>> {
        Box::pin(async move {
            let resource = self.resource_for(&req.headers, req.uri.authority().map(|a| a.as_str()));
            match Authenticator::authenticate(self, req, &resource).await {
                Ok(p) => Ok(p),
                Err(e) => {
                    tracing::info!(reason = e.reason(), "authentication failed");
                    if let Some(a) = self.audit.get() {
                        a.auth_failure(req.extensions.get::<crate::caller::ClientAddr>().map(|c| c.0), e.reason());
                    }
                    Err(self.reject(&e, &resource))
                }
            }
        })
    }
}

/// Warden's own scopes (`warden:admin`, `warden:approve`, …): the admin API's and console's,
/// never granted or advertised unless asked for by name.
pub fn operator_scope(s: &str) -> bool {
    s.starts_with("warden:")
}

/// JWT rules for tokens of the built-in authorization server.
pub fn builtin_rules(issuer: &str) -> JwtIssuer {
    let mut j = JwtIssuer::with_defaults(issuer);
    j.algorithms = vec!["EdDSA".into()];
    // Warden's own server grants what its users file says they may.
    j.admin_scopes = true;
    j
}
