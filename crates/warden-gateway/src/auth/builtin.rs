//! The built-in OAuth 2.1 authorization server, so that real MCP clients can log in to a Warden
//! without an external IdP: RFC 8414 metadata, `/authorize` with a login and consent page,
//! `/token` (authorization code with PKCE, refresh with rotation), RFC 7591 registration, a JWKS.
//! Access tokens are EdDSA JWTs for exactly one resource (this server), valid at most an hour.
//!
//! Defends against: code interception (PKCE S256 only, `plain` refused), open redirects and code
//! leakage (redirect URIs registered and matched exactly; errors before the redirect URI is
//! validated are shown, never redirected; and because anyone can register a client or describe
//! one in a document, errors of an authorization request go back only to a loopback redirect URI
//! — a native app on the user's own machine — and are shown as a page otherwise, so a
//! self-registered `https://evil.example` cannot use Warden as a redirector; the consent page
//! says a self-registered client's name is unverified), code replay (single use, 60 s; a replay revokes every
//! token issued from it), refresh token theft (rotation; reuse of a rotated token revokes the whole
//! family), login CSRF and clickjacking (per-request token bound to a `SameSite=Strict` cookie;
//! `X-Frame-Options: DENY` and `frame-ancestors 'none'`), password theft from the users file
//! (argon2id hashes only), tokens for other resources (`resource` must be this server).
//! Clients identify themselves by dynamic registration or by a Client ID Metadata Document URL
//! (see `cimd`). Password guessing meets argon2id's cost and a lockout per user name
//! (`max_failed_logins` in 15 minutes; the lock also answers "login failed", so it reveals nothing).
//! Registrations, refresh tokens (hashed) and revocations persist in the state file, written on
//! the blocking pool before the answer. Unauthenticated exhaustion: registration is limited per
//! address and clients expire (see [`super::register`]); authorization requests in progress are
//! bounded per address and per IPv6 /48 (the address's own oldest request makes way, so nobody is
//! locked out by another's flood) and in total (429); form bodies are read whole, at most 64 KiB
//! in 10 s.
//! Does not defend against (yet): a user's login being locked by someone guessing at their name
//! (lockout is per name, not per source), revoking access tokens already issued (they live at most
//! `access_token_ttl_secs`).

use super::as_http::{json_response, no_store, oauth_error, random_token};
use super::as_state::{Client, Code, Pending, Store};
use super::cimd::{self, Documents};
use super::jwt::{self, Issuer, KeySource};
use super::register::Registrations;
use super::{now_secs, sha256, Authenticator};
use crate::caller::ClientAddr;
use crate::config::{Auth, BuiltinAs, Config};
use argon2::password_hash::{PasswordHash, PasswordHasher, PasswordVerifier, SaltString};
use argon2::Argon2;
use axum::body::Body;
use axum::extract::{Query, State};
use axum::http::{header, HeaderMap, HeaderValue, Response, StatusCode};
use axum::{Extension, Form};
use base64::engine::general_purpose::URL_SAFE_NO_PAD as B64;
use base64::Engine;
use jsonwebtoken::jwk::JwkSet;
use jsonwebtoken::{Algorithm, EncodingKey, Header};
use parking_lot::Mutex;
use ring::signature::{Ed25519KeyPair, KeyPair};
use serde::Deserialize;
use serde_json::{json, Value};
use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};
use subtle::ConstantTimeEq;

pub(super) const CODE_TTL: Duration = Duration::from_secs(60);
const PENDING_TTL: Duration = Duration::from_secs(600);
const MAX_PENDING: usize = 10_000;
/// Authorization requests in progress at once from one address (IPv6: /64) and one IPv6 /48;
/// past them the address's own oldest request makes way.
const MAX_PENDING_PER_SOURCE: usize = 50;
const MAX_PENDING_PER_BLOCK: usize = 200;
/// Largest form or registration body, and the longest time to read it.
pub(super) const MAX_FORM_BYTES: usize = 64 << 10;
pub(super) const FORM_READ_TIMEOUT: Duration = Duration::from_secs(10);
/// Longest user name and password a login may give.
pub const MAX_USER_NAME: usize = 64;
const MAX_PASSWORD: usize = 1024;
/// Password hashes computed at once (each takes a core for tens of milliseconds).
const HASHING_AT_ONCE: usize = 2;

/// Check a password against a user's argon2id hash (or, for an unknown user, spend the same
/// cost on a dummy hash), on the blocking pool and at most [`HASHING_AT_ONCE`] at a time, so
/// that a burst of logins neither stalls the async workers serving MCP traffic nor the host.
async fn verify_password(hash: Option<String>, password: String) -> bool {
    use std::sync::atomic::{AtomicUsize, Ordering};
    static SLOTS: tokio::sync::Semaphore = tokio::sync::Semaphore::const_new(HASHING_AT_ONCE);
    // A bounded wait: past this many logins waiting for a hash, a login fails at once.
    static WAITING: AtomicUsize = AtomicUsize::new(0);
    if WAITING.fetch_add(1, Ordering::AcqRel) >= 32 {
        WAITING.fetch_sub(1, Ordering::AcqRel);
        tracing::warn!("built-in authorization server: too many logins at once; one refused");
        return false;
    }
    let slot = SLOTS.acquire().await;
    WAITING.fetch_sub(1, Ordering::AcqRel);
    let Ok(_slot) = slot else { return false };
    tokio::task::spawn_blocking(move || match hash {
        Some(h) => PasswordHash::new(&h)
            .map(|h| Argon2::default().verify_password(password.as_bytes(), &h).is_ok())
            .unwrap_or(false),
        None => {
            // Same cost for unknown users.
            let _ = UsersFile::default().set("x", &password, vec![]);
            false
        }
    })
    .await
    .unwrap_or(false)
}

/// The issuer for a resource URI: its origin.
pub fn issuer_for(resource: &str) -> String {
    reqwest::Url::parse(resource).map(|u| u.origin().ascii_serialization()).unwrap_or_default()
}

/// A local user (`warden user add`).
#[derive(Debug, Clone, Deserialize, serde::Serialize)]
#[serde(deny_unknown_fields)]
pub struct User {
    pub name: String,
    /// argon2id PHC string.
    pub password_hash: String,
    /// Scopes this user may grant; empty: all of the server's scopes.
    #[serde(default)]
    pub scopes: Vec<String>,
}

#[derive(Debug, Default, Deserialize, serde::Serialize)]
#[serde(deny_unknown_fields)]
pub struct UsersFile {
    #[serde(default, rename = "user")]
    pub users: Vec<User>,
}

impl UsersFile {
    pub fn load(path: &Path) -> Result<UsersFile, String> {
        match std::fs::read_to_string(path) {
            Ok(t) => toml::from_str(&t).map_err(|e| format!("{}: {e}", path.display())),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(UsersFile::default()),
            Err(e) => Err(format!("{}: {e}", path.display())),
        }
    }

    /// Add or replace `name` with a new password.
    pub fn set(&mut self, name: &str, password: &str, scopes: Vec<String>) -> Result<(), String> {
        let salt = SaltString::encode_b64(&rand::random::<[u8; 16]>()).map_err(|e| e.to_string())?;
        let hash = Argon2::default().hash_password(password.as_bytes(), &salt).map_err(|e| e.to_string())?.to_string();
        self.users.retain(|u| u.name != name);
        self.users.push(User { name: name.into(), password_hash: hash, scopes });
        Ok(())
    }

    pub fn save(&self, path: &Path) -> Result<(), String> {
        if let Some(d) = path.parent() {
            std::fs::create_dir_all(d).map_err(|e| format!("{}: {e}", d.display()))?;
        }
        let text = toml::to_string(self).map_err(|e| e.to_string())?;
        write_private(path, text.as_bytes())
    }
}

pub use warden_audit::signing::write_private;

/// The signing key: PKCS#8 Ed25519 at `path`, created when absent.
pub fn load_or_create_key(path: &Path) -> Result<Vec<u8>, String> {
    let (b, created) = warden_audit::signing::load_or_create_pkcs8(path)?;
    Ed25519KeyPair::from_pkcs8(&b).map_err(|_| format!("{}: not a PKCS#8 Ed25519 key", path.display()))?;
    if created {
        tracing::info!(path = %path.display(), "created the built-in authorization server's signing key");
    }
    Ok(b)
}

/// Where the built-in server keeps its files.
pub struct Paths {
    pub key: PathBuf,
    pub users: PathBuf,
    pub state: PathBuf,
}

pub fn paths(b: &BuiltinAs, cfg: &Config) -> Paths {
    let or = |p: &Option<PathBuf>, d: &str| cfg.path(&p.clone().unwrap_or_else(|| d.into()));
    Paths {
        key: or(&b.key_file, "warden-data/signing-key.pk8"),
        users: or(&b.users_file, "warden-data/users.toml"),
        state: or(&b.state_file, "warden-data/as-state.json"),
    }
}

pub struct AuthServer {
    pub(super) cfg: BuiltinAs,
    pub(super) signing: EncodingKey,
    pub(super) kid: String,
    pub(super) jwks: Value,
    pub(super) keys: Arc<Issuer>,
    pub(super) users: HashMap<String, User>,
    pub(super) store: Mutex<Store>,
    pub(super) registrations: Mutex<Registrations>,
    /// The state file; the generation of the last change, and a lock that orders writes and
    /// holds the generation last written.
    pub(super) state_path: Option<PathBuf>,
    pub(super) changes: AtomicU64,
    pub(super) written: Arc<tokio::sync::Mutex<u64>>,
    pub(super) documents: Option<Documents>,
}

impl AuthServer {
    pub fn new(b: &BuiltinAs, _auth: &Auth, cfg: &Config) -> Result<Arc<AuthServer>, String> {
        let p = paths(b, cfg);
        let pkcs8 = load_or_create_key(&p.key)?;
        let previous = (b.previous_key_files.iter())
            .map(|f| {
                let f = cfg.path(f);
                std::fs::read(&f).map_err(|e| format!("auth.builtin.previous_key_files {}: {e}", f.display()))
            })
            .collect::<Result<Vec<_>, _>>()?;
        let users = UsersFile::load(&p.users)?.users.into_iter().map(|u| (u.name.clone(), u)).collect();
        let mut s = Self::with_keys(b.clone(), &pkcs8, &previous, users)?;
        *s.store.get_mut() = Store::load(&p.state)?;
        s.state_path = Some(p.state);
        Ok(Arc::new(s))
    }

    /// `pkcs8` signs; it and each of `previous` verify (and are published in the JWKS).
    pub(super) fn with_keys(
        cfg: BuiltinAs,
        pkcs8: &[u8],
        previous: &[Vec<u8>],
        users: HashMap<String, User>,
    ) -> Result<AuthServer, String> {
        let jwk = |der: &[u8]| -> Result<(String, Value), String> {
            let pair = Ed25519KeyPair::from_pkcs8(der).map_err(|_| "not a PKCS#8 Ed25519 key".to_string())?;
            let x = B64.encode(pair.public_key().as_ref());
            let kid = B64.encode(&sha256(pair.public_key().as_ref())[..12]);
            Ok((kid.clone(), json!({"kty": "OKP", "crv": "Ed25519", "x": x, "kid": kid, "alg": "EdDSA", "use": "sig"})))
        };
        let (kid, current) = jwk(pkcs8)?;
        let mut published = vec![current];
        for der in previous {
            published.push(jwk(der).map_err(|e| format!("auth.builtin.previous_key_files: {e}"))?.1);
        }
        let jwks = json!({ "keys": published });
        let set: JwkSet = serde_json::from_value(jwks.clone()).map_err(|e| e.to_string())?;
        let rules = super::builtin_rules("builtin");
        let keys = Issuer::new(rules, KeySource::Static, jwt::parse_jwks(&set), reqwest::Client::new());
        Ok(AuthServer {
            signing: EncodingKey::from_ed_der(pkcs8),
            kid,
            jwks,
            keys,
            users,
            store: Mutex::new(Store::default()),
            registrations: Mutex::new(Registrations::default()),
            state_path: None,
            changes: AtomicU64::new(0),
            written: Arc::new(tokio::sync::Mutex::new(0)),
            documents: cfg.client_metadata_documents.then(|| Documents::new(cfg.client_metadata_allow_loopback)),
            cfg,
        })
    }

    /// Write the persistent state after a change, off the async workers (the copy is taken under
    /// the store's lock; serialising and writing happen on the blocking pool, without it).
    /// Writes are ordered, and one that a later write already covered is skipped, so a burst of
    /// changes costs a few writes, not one each. The write owns the order lock until it is done,
    /// so a request dropped meanwhile (its client went away) cannot let a newer snapshot be
    /// overtaken by an older one. False when the state could not be saved: the change is in
    /// effect in memory, and the next successful write carries it, but the caller must not
    /// promise durability (a rotated refresh token would come back after a restart).
    pub(super) async fn persist(&self) -> bool {
        let Some(path) = self.state_path.clone() else { return true };
        let mine = self.changes.fetch_add(1, Ordering::AcqRel) + 1;
        let mut written = self.written.clone().lock_owned().await;
        if *written >= mine {
            return true;
        }
        let (snapshot, upto) = {
            let mut st = self.store.lock();
            st.prune_clients(now_secs(), self.cfg.unused_client_ttl_secs, self.cfg.refresh_token_ttl_secs);
            (st.snapshot(), self.changes.load(Ordering::Acquire))
        };
        let wrote = tokio::task::spawn_blocking(move || {
            if let Some(d) = path.parent() {
                let _ = std::fs::create_dir_all(d);
            }
            let r = write_private(&path, &snapshot.to_bytes());
            if r.is_ok() {
                *written = upto;
            }
            r
        })
        .await;
        match wrote {
            Ok(Ok(())) => true,
            Ok(Err(e)) => {
                tracing::error!(error = %e, "cannot save the authorization server's state");
                false
            }
            Err(e) => {
                tracing::error!(error = %e, "cannot save the authorization server's state");
                false
            }
        }
    }

    /// Revoke every token of a grant family (a replayed code or reused refresh token); the
    /// caller saves. Answers `invalid_grant`.
    pub(super) fn revoke_family(
        &self,
        mut st: parking_lot::MutexGuard<'_, Store>,
        family: String,
        why: &str,
    ) -> Response<Body> {
        st.revoked_families.insert(family);
        oauth_error(StatusCode::BAD_REQUEST, "invalid_grant", why)
    }

    /// A client by ID: registered, or described by its metadata document.
    pub(super) async fn client(&self, id: &str) -> Result<Client, String> {
        if let Some(c) = self.store.lock().clients.get(id) {
            return Ok(c.clone());
        }
        match &self.documents {
            Some(d) if cimd::is_url(id) => {
                let m = d.get(id).await?;
                let name = format!("{} (from {})", m.name, m.host);
                Ok(Client {
                    name,
                    redirect_uris: m.redirect_uris.clone(),
                    secret: None,
                    registered: 0,
                    last_used: None,
                })
            }
            _ => Err("unknown client".into()),
        }
    }

    /// The verifier of this server's tokens.
    pub fn keys(&self) -> Arc<Issuer> {
        self.keys.clone()
    }

    /// A signed access token for `resource`.
    pub fn mint(&self, subject: &str, scopes: &[String], client_id: &str, resource: &str, ttl: u64) -> String {
        let now = now_secs();
        let claims = json!({
            "iss": issuer_for(resource),
            "sub": subject,
            "aud": resource,
            "client_id": client_id,
            "scope": scopes.join(" "),
            "iat": now,
            "nbf": now,
            "exp": now + ttl.min(3600),
            "jti": B64.encode(rand::random::<[u8; 16]>()),
        });
        let mut h = Header::new(Algorithm::EdDSA);
        h.kid = Some(self.kid.clone());
        h.typ = Some("at+jwt".into());
        jsonwebtoken::encode(&h, &claims, &self.signing).expect("Ed25519 signing does not fail")
    }

    pub(super) fn metadata(&self, issuer: &str) -> Value {
        let mut m = json!({
            "issuer": issuer,
            "authorization_endpoint": format!("{issuer}/authorize"),
            "token_endpoint": format!("{issuer}/token"),
            "jwks_uri": format!("{issuer}/jwks"),
            "response_types_supported": ["code"],
            "response_modes_supported": ["query"],
            "grant_types_supported": ["authorization_code", "refresh_token"],
            "code_challenge_methods_supported": ["S256"],
            "token_endpoint_auth_methods_supported": ["none", "client_secret_basic", "client_secret_post"],
            "scopes_supported": self.cfg.scopes,
            "authorization_response_iss_parameter_supported": true,
            "client_id_metadata_document_supported": self.documents.is_some(),
        });
        if self.cfg.dynamic_registration {
            m["registration_endpoint"] = format!("{issuer}/register").into();
        }
        m
    }
}

fn html_escape(s: &str) -> String {
    s.replace('&', "&amp;").replace('<', "&lt;").replace('>', "&gt;").replace('"', "&quot;").replace('\'', "&#39;")
}

fn page(status: StatusCode, body: String, cookie: Option<String>) -> Response<Body> {
    let mut b = Response::builder()
        .status(status)
        .header(header::CONTENT_TYPE, "text/html; charset=utf-8")
        .header("x-frame-options", "DENY")
        .header(
            "content-security-policy",
            "default-src 'none'; style-src 'unsafe-inline'; form-action 'self'; frame-ancestors 'none'",
        )
        .header("referrer-policy", "no-referrer")
        .header("x-content-type-options", "nosniff");
    if let Some(c) = cookie {
        b = b.header(header::SET_COOKIE, c);
    }
    no_store(b.body(Body::from(body)).expect("static response parts"))
}

/// 429 with `Retry-After`: too many authorization requests in progress.
fn busy_page() -> Response<Body> {
    let mut r = page(
        StatusCode::TOO_MANY_REQUESTS,
        "<!doctype html><title>Try again later</title><h1>Too many authorization requests in progress</h1><p>Try again in a few minutes.</p>".into(),
        None,
    );
    r.headers_mut().insert(header::RETRY_AFTER, HeaderValue::from_static("60"));
    r
}

fn error_page(msg: &str) -> Response<Body> {
    page(
        StatusCode::BAD_REQUEST,
        format!(
            "<!doctype html><title>Authorization error</title><h1>Authorization error</h1><p>{}</p>",
            html_escape(msg)
        ),
        None,
    )
}

fn redirect(uri: &str, params: &[(&str, &str)]) -> Response<Body> {
    let mut u = match reqwest::Url::parse(uri) {
        Ok(u) => u,
        Err(_) => return error_page("invalid redirect URI"),
    };
    {
        let mut q = u.query_pairs_mut();
        for (k, v) in params {
            q.append_pair(k, v);
        }
    }
    no_store(
        Response::builder()
            .status(StatusCode::SEE_OTHER)
            .header(header::LOCATION, u.as_str())
            .body(Body::empty())
            .expect("static response parts"),
    )
}

/// An `http` redirect URI to a loopback address (a native app's local listener).
fn loopback_uri(u: &str) -> bool {
    let Ok(p) = reqwest::Url::parse(u) else { return false };
    p.scheme() == "http"
        && match p.host() {
            Some(url::Host::Domain(d)) => d.eq_ignore_ascii_case("localhost"),
            Some(url::Host::Ipv4(ip)) => ip.is_loopback(),
            Some(url::Host::Ipv6(ip)) => ip.is_loopback(),
            None => false,
        }
}

pub(super) fn pkce_ok(verifier: &str, challenge: &str) -> bool {
    let well_formed = (43..=128).contains(&verifier.len())
        && verifier.bytes().all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'.' | b'_' | b'~'));
    let computed = B64.encode(sha256(verifier.as_bytes()));
    well_formed && bool::from(computed.as_bytes().ct_eq(challenge.as_bytes()))
}

pub(super) type S = Arc<Authenticator>;

pub(super) fn server(a: &Authenticator) -> &AuthServer {
    a.builtin_server()
}

pub(super) fn issuer_of(a: &Authenticator, h: &HeaderMap) -> (String, String) {
    let resource = a.resource_for(h, None);
    (issuer_for(&resource), resource)
}

pub(super) async fn as_metadata(State(a): State<S>, h: HeaderMap) -> Response<Body> {
    let (issuer, _) = issuer_of(&a, &h);
    json_response(StatusCode::OK, server(&a).metadata(&issuer))
}

#[derive(Deserialize)]
pub(super) struct AuthorizeQuery {
    response_type: Option<String>,
    client_id: Option<String>,
    redirect_uri: Option<String>,
    scope: Option<String>,
    state: Option<String>,
    code_challenge: Option<String>,
    code_challenge_method: Option<String>,
    resource: Option<String>,
}

pub(super) async fn authorize_get(
    State(a): State<S>,
    addr: Option<Extension<ClientAddr>>,
    h: HeaderMap,
    Query(q): Query<AuthorizeQuery>,
) -> Response<Body> {
    let s = server(&a);
    let source = addr.map_or(std::net::IpAddr::from([0, 0, 0, 0]), |Extension(ClientAddr(ip))| ip);
    let (issuer, resource) = issuer_of(&a, &h);
    let Some(client_id) = q.client_id.as_deref() else { return error_page("missing client_id") };
    let c = match s.client(client_id).await {
        Ok(c) => c,
        Err(e) => return error_page(&e),
    };
    let redirect_uri = match q.redirect_uri.as_deref() {
        Some(r) if c.redirect_uris.iter().any(|u| u == r) => r.to_string(),
        None if c.redirect_uris.len() == 1 => c.redirect_uris[0].clone(),
        _ => return error_page("the redirect URI does not match one registered for this client"),
    };
    let client_name = c.name;
    // Self-registered (not a metadata document URL): its name is only its own claim.
    let self_registered = !cimd::is_url(client_id);
    // From here errors go back to the validated redirect URI — when that cannot make Warden a
    // redirector for whoever registered the client (RFC 9700 §4.11.2): only to loopback.
    let state = q.state.clone();
    let to_client = loopback_uri(&redirect_uri);
    let fail = |error: &str, desc: &str| {
        if !to_client {
            return error_page(&format!("{error}: {desc}"));
        }
        let mut p = vec![("error", error), ("error_description", desc), ("iss", issuer.as_str())];
        if let Some(st) = &state {
            p.push(("state", st));
        }
        redirect(&redirect_uri, &p)
    };
    if q.response_type.as_deref() != Some("code") {
        return fail("unsupported_response_type", "only response_type=code");
    }
    let challenge = match (q.code_challenge.as_deref(), q.code_challenge_method.as_deref()) {
        (Some(c), Some("S256")) if c.len() == 43 => c.to_string(),
        (Some(_), Some("S256")) => return fail("invalid_request", "malformed code_challenge"),
        (Some(_), _) => return fail("invalid_request", "code_challenge_method must be S256"),
        (None, _) => return fail("invalid_request", "PKCE (S256) is required"),
    };
    if let Some(r) = q.resource.as_deref() {
        if r != resource {
            return fail("invalid_target", "this server issues tokens only for its own resource");
        }
    }
    let scopes: Vec<String> = match q.scope.as_deref() {
        Some(sc) if !sc.trim().is_empty() => sc.split_whitespace().map(String::from).collect(),
        _ => s.cfg.scopes.clone(),
    };
    if let Some(bad) = scopes.iter().find(|x| !s.cfg.scopes.contains(x)) {
        tracing::info!(scope = %bad, "authorization request for an unknown scope");
        return fail("invalid_scope", "a requested scope is not offered");
    }
    let request_id = random_token();
    let csrf = random_token();
    {
        let mut st = s.store.lock();
        if !st.admit_pending(source, PENDING_TTL, MAX_PENDING_PER_SOURCE, MAX_PENDING_PER_BLOCK, MAX_PENDING) {
            tracing::warn!(client = ?client_id, %source, "built-in authorization server: too many authorization requests in progress");
            return busy_page();
        }
        st.pending.insert(
            request_id.clone(),
            Pending {
                client_id: client_id.to_string(),
                redirect_uri: redirect_uri.clone(),
                scopes: scopes.clone(),
                state: q.state.clone(),
                challenge,
                resource: resource.clone(),
                csrf: csrf.clone(),
                created: Instant::now(),
                source,
            },
        );
    }
    let e = html_escape;
    let body = format!(
        r#"<!doctype html><html><head><meta charset="utf-8"><title>Authorize {client}</title>
<style>body{{font-family:sans-serif;max-width:32em;margin:3em auto}}code{{word-break:break-all}}</style></head>
<body><h1>Authorize access</h1>
<p>The application <strong>{client}</strong>{unverified} asks to use <code>{resource}</code> as you, with these scopes:</p>
<ul>{scopes}</ul>
<p>After you decide, you will be sent to <code>{redirect}</code>.</p>
<form method="post" action="/authorize">
<input type="hidden" name="request_id" value="{rid}"><input type="hidden" name="csrf" value="{csrf}">
<p><label>User <input name="username" autocomplete="username" required></label></p>
<p><label>Password <input name="password" type="password" autocomplete="current-password" required></label></p>
<p><button name="decision" value="approve">Approve</button> <button name="decision" value="deny">Deny</button></p>
</form></body></html>"#,
        client = e(&client_name),
        unverified = if self_registered {
            " <em>(unverified: the application registered itself and chose this name)</em>"
        } else {
            ""
        },
        resource = e(&resource),
        scopes = scopes.iter().map(|x| format!("<li><code>{}</code></li>", e(x))).collect::<String>(),
        redirect = e(&redirect_uri),
        rid = e(&request_id),
        csrf = e(&csrf),
    );
    let secure = if a.resource_for(&h, None).starts_with("https:") { "; Secure" } else { "" };
    let cookie = format!("warden_csrf={csrf}; Path=/authorize; HttpOnly; SameSite=Strict; Max-Age=600{secure}");
    page(StatusCode::OK, body, Some(cookie))
}

#[derive(Deserialize)]
pub(super) struct ConsentForm {
    request_id: String,
    csrf: String,
    username: Option<String>,
    password: Option<String>,
    decision: String,
}

fn cookie_value<'a>(h: &'a HeaderMap, name: &str) -> Option<&'a str> {
    h.get_all(header::COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(';'))
        .filter_map(|kv| kv.trim().split_once('='))
        .find(|(k, _)| *k == name)
        .map(|(_, v)| v)
}

pub(super) async fn authorize_post(State(a): State<S>, h: HeaderMap, Form(f): Form<ConsentForm>) -> Response<Body> {
    let s = server(&a);
    let (issuer, _) = issuer_of(&a, &h);
    let cookie = cookie_value(&h, "warden_csrf").unwrap_or("");
    let p = {
        let mut st = s.store.lock();
        let ok = st.pending.get(&f.request_id).is_some_and(|p| {
            p.created.elapsed() < PENDING_TTL
                && bool::from(p.csrf.as_bytes().ct_eq(f.csrf.as_bytes()))
                && bool::from(p.csrf.as_bytes().ct_eq(cookie.as_bytes()))
        });
        if !ok {
            return error_page("this authorization request is unknown, expired or was not submitted from its own page");
        }
        st.pending.remove(&f.request_id).expect("checked above")
    };
    let mut base = vec![("iss", issuer.as_str())];
    if let Some(st) = &p.state {
        base.push(("state", st));
    }
    if f.decision != "approve" {
        base.extend([("error", "access_denied"), ("error_description", "the user denied access")]);
        return redirect(&p.redirect_uri, &base);
    }
    let name = f.username.unwrap_or_default();
    let max = s.cfg.max_failed_logins;
    // No user name is longer (`warden user add` refuses them): not even worth a hash, nor a
    // place in the failed-login map.
    if name.len() > MAX_USER_NAME || f.password.as_ref().is_some_and(|p| p.len() > MAX_PASSWORD) {
        tracing::info!("built-in authorization server: login refused (over-long name or password)");
        base.extend([("error", "access_denied"), ("error_description", "login failed")]);
        return redirect(&p.redirect_uri, &base);
    }
    let locked = s.store.lock().locked(&name, max);
    let user = s.users.get(&name);
    let password = f.password.unwrap_or_default();
    let verified = !locked && verify_password(user.map(|u| u.password_hash.clone()), password).await;
    let Some(user) = user.filter(|_| verified) else {
        if s.store.lock().failed_login(&name, max) {
            tracing::warn!(user = %name, "built-in authorization server: too many failed logins, name locked for 15 min");
        }
        tracing::info!(locked, "built-in authorization server: login failed");
        base.extend([("error", "access_denied"), ("error_description", "login failed")]);
        return redirect(&p.redirect_uri, &base);
    };
    if !user.scopes.is_empty() && p.scopes.iter().any(|x| !user.scopes.contains(x)) {
        base.extend([("error", "invalid_scope"), ("error_description", "the user may not grant a requested scope")]);
        return redirect(&p.redirect_uri, &base);
    }
    let code = random_token();
    let mut st = s.store.lock();
    st.login_succeeded(&name);
    st.codes.insert(
        sha256(code.as_bytes()),
        Code {
            client_id: p.client_id,
            redirect_uri: p.redirect_uri.clone(),
            scopes: p.scopes,
            challenge: p.challenge,
            resource: p.resource,
            subject: user.name.clone(),
            created: Instant::now(),
            used: false,
            family: random_token(),
        },
    );
    drop(st);
    tracing::info!(user = %user.name, "authorization granted");
    base.push(("code", &code));
    redirect(&p.redirect_uri, &base)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::auth::as_http::valid_redirect;

    #[test]
    fn pkce_s256_matches_rfc7636_example() {
        // RFC 7636 appendix B.
        assert!(pkce_ok("dBjftJeZ4CVP-mB92K27uhbUJU1p1r_wW1gFWFOEjXk", "E9Melhoa2OwvFrEMTJguCHaoeK1t8URWbuGJSstw-cM"));
        assert!(!pkce_ok("dBjftJeZ4CVP-mB92K27uhbUJU1p1r_wW1gFWFOEjXl", "E9Melhoa2OwvFrEMTJguCHaoeK1t8URWbuGJSstw-cM"));
        assert!(!pkce_ok("short", "E9Melhoa2OwvFrEMTJguCHaoeK1t8URWbuGJSstw-cM"));
    }

    #[test]
    fn redirect_uris_are_restricted() {
        for ok in ["https://app.example/cb", "http://127.0.0.1:3000/cb", "http://localhost/cb", "com.example.app:/cb"] {
            assert!(valid_redirect(ok), "{ok}");
        }
        for bad in [
            "http://evil.example/cb",
            "javascript:alert(1)",
            "https://a.example/cb#frag",
            "data:text/html,x",
            "/relative",
        ] {
            assert!(!valid_redirect(bad), "{bad}");
        }
    }

    #[test]
    fn minted_tokens_verify_for_their_resource_only() {
        let pk = Ed25519KeyPair::generate_pkcs8(&ring::rand::SystemRandom::new()).unwrap();
        let cfg: BuiltinAs = toml::from_str("").unwrap();
        let s = AuthServer::with_keys(cfg, pk.as_ref(), &[], HashMap::new()).unwrap();
        let t = s.mint("alice", &["mcp".into()], "cli", "http://127.0.0.1:1/mcp", 600);
        let rt = tokio::runtime::Builder::new_current_thread().build().unwrap();
        let h = jsonwebtoken::decode_header(&t).unwrap();
        let keys = s.keys();
        let p = rt.block_on(keys.verify(&t, &h, "http://127.0.0.1:1", "http://127.0.0.1:1/mcp")).unwrap();
        assert_eq!((p.subject.as_str(), p.scopes.clone()), ("alice", vec!["mcp".to_string()]));
        assert!(rt.block_on(keys.verify(&t, &h, "http://127.0.0.1:1", "http://127.0.0.1:2/mcp")).is_err());
    }

    /// Issue 23: replicas share the signing key; a rotated one keeps verifying (and is
    /// published) as a previous key, and stops when it is dropped.
    #[test]
    fn a_rotated_key_verifies_as_a_previous_key_until_dropped() {
        let rng = ring::rand::SystemRandom::new();
        let (old, new) = (Ed25519KeyPair::generate_pkcs8(&rng).unwrap(), Ed25519KeyPair::generate_pkcs8(&rng).unwrap());
        let cfg = || -> BuiltinAs { toml::from_str("").unwrap() };
        let before = AuthServer::with_keys(cfg(), old.as_ref(), &[], HashMap::new()).unwrap();
        let t = before.mint("alice", &["mcp".into()], "cli", "http://127.0.0.1:1/mcp", 600);
        let h = jsonwebtoken::decode_header(&t).unwrap();
        let rt = tokio::runtime::Builder::new_current_thread().build().unwrap();
        let verifies = |s: &AuthServer| {
            rt.block_on(s.keys().verify(&t, &h, "http://127.0.0.1:1", "http://127.0.0.1:1/mcp")).is_ok()
        };
        let rotated = AuthServer::with_keys(cfg(), new.as_ref(), &[old.as_ref().to_vec()], HashMap::new()).unwrap();
        assert!(verifies(&rotated), "the previous key still verifies");
        assert_eq!(rotated.jwks["keys"].as_array().unwrap().len(), 2, "and is published");
        let fresh = rotated.mint("bob", &["mcp".into()], "cli", "http://127.0.0.1:1/mcp", 600);
        assert_eq!(jsonwebtoken::decode_header(&fresh).unwrap().kid, Some(rotated.kid.clone()), "the new key signs");
        assert_ne!(rotated.kid, before.kid);
        let dropped = AuthServer::with_keys(cfg(), new.as_ref(), &[], HashMap::new()).unwrap();
        assert!(!verifies(&dropped), "dropped: no longer verifies");
        assert!(AuthServer::with_keys(cfg(), new.as_ref(), &[b"junk".to_vec()], HashMap::new()).is_err());
    }
}
