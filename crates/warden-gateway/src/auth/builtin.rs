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
//! the blocking pool before the answer — or, with a shared `[store]`, in the store, so that
//! replicas are one server (see [`super::as_store`]). Unauthenticated exhaustion: registration is limited per
//! address and clients expire (see [`super::register`]); authorization requests in progress are
//! bounded per address and per IPv6 /48 (the address's own oldest request makes way, so nobody is
//! locked out by another's flood) and in total (429); form bodies are read whole, at most 64 KiB
//! in 10 s.
//! Does not defend against (yet): a user's login being locked by someone guessing at their name
//! (lockout is per name, not per source), revoking access tokens already issued (they live at most
//! `access_token_ttl_secs`).

use super::as_http::json_response;
use super::as_state::Client;
use super::as_store::{self, AsStore};
use super::cimd::{self, Documents};
use super::jwt::{self, Issuer, KeySource};
use super::{now_secs, sha256, Authenticator};
use crate::config::{Auth, BuiltinAs, Config};
use argon2::password_hash::{PasswordHasher, SaltString};
use argon2::Argon2;
use axum::body::Body;
use axum::extract::State;
use axum::http::{HeaderMap, Response, StatusCode};
use base64::engine::general_purpose::URL_SAFE_NO_PAD as B64;
use base64::Engine;
use jsonwebtoken::jwk::JwkSet;
use jsonwebtoken::{Algorithm, EncodingKey, Header};
use ring::signature::{Ed25519KeyPair, KeyPair};
use serde::Deserialize;
use serde_json::{json, Value};
use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;
use subtle::ConstantTimeEq;

pub(super) const CODE_TTL: Duration = Duration::from_secs(60);
/// Largest form or registration body, and the longest time to read it.
pub(super) const MAX_FORM_BYTES: usize = 64 << 10;
pub(super) const FORM_READ_TIMEOUT: Duration = Duration::from_secs(10);
/// Longest user name and password a login may give.
pub const MAX_USER_NAME: usize = 64;

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
    pub(super) state: AsStore,
    pub(super) documents: Option<Documents>,
    /// The operators' console's redirect URIs, once its listener is bound: the one client
    /// Warden's own operator scopes are granted to ([`CONSOLE_CLIENT`]).
    console: std::sync::OnceLock<Vec<String>>,
    /// The redirect URI of Warden's own link pages ([`LINK_CLIENT`]), once the listener is bound.
    link: std::sync::OnceLock<Vec<String>>,
}

/// The client id Warden's link pages sign users in with (`link_pages.rs`: whoever opens a link
/// to an upstream account must be the user it is for): first party, never registered, public
/// (PKCE), its redirect URI the MCP listener's (`set_link`).
pub const LINK_CLIENT: &str = "warden-link";

/// The client id of Warden's own console: first party, never registered, public (PKCE), its
/// redirect URIs the admin listener's (`set_console`).
pub const CONSOLE_CLIENT: &str = "warden-console";

impl AuthServer {
    /// With a shared `store` (not memory), the state lives there; else in the state file.
    pub fn new(
        b: &BuiltinAs,
        _auth: &Auth,
        cfg: &Config,
        store: Option<Arc<dyn crate::store::Store>>,
    ) -> Result<Arc<AuthServer>, String> {
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
        s.state = as_store::open(b, p.state, store)?;
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
            state: AsStore::Local(Box::new(as_store::Local::new(&cfg, Default::default(), None))),
            documents: cfg.client_metadata_documents.then(|| Documents::new(cfg.client_metadata_allow_loopback)),
            console: std::sync::OnceLock::new(),
            link: std::sync::OnceLock::new(),
            cfg,
        })
    }

    /// The console's redirect URIs (its admin listener's, under each name a browser may use).
    /// Replicas with one config bind the same address, so any of them can serve the consent.
    pub fn set_console(&self, redirect_uris: Vec<String>) {
        let _ = self.console.set(redirect_uris);
    }

    /// The link pages' redirect URIs.
    pub fn set_link(&self, redirect_uris: Vec<String>) {
        let _ = self.link.set(redirect_uris);
    }

    /// Is `id` the console, and is the console known here?
    pub(super) fn is_console(&self, id: &str) -> bool {
        id == CONSOLE_CLIENT && self.console.get().is_some()
    }

    /// The operator scopes this server may grant (to its console, to users allowed them).
    pub fn operator_scopes(&self) -> Vec<String> {
        self.cfg.scopes.iter().filter(|x| super::operator_scope(x)).cloned().collect()
    }

    /// A client by ID: registered, or described by its metadata document (an error saying why
    /// not); `Unavailable` when the state cannot be read.
    pub(super) async fn client(&self, id: &str) -> Result<Result<Client, String>, as_store::Unavailable> {
        if let (CONSOLE_CLIENT, Some(uris)) = (id, self.console.get()) {
            let c = Client { name: "Warden console".into(), redirect_uris: uris.clone(), ..Client::public() };
            return Ok(Ok(c));
        }
        if let (LINK_CLIENT, Some(uris)) = (id, self.link.get()) {
            let c =
                Client { name: "Warden (linking an account)".into(), redirect_uris: uris.clone(), ..Client::public() };
            return Ok(Ok(c));
        }
        if let Some(c) = self.state.client(id).await? {
            return Ok(Ok(c));
        }
        Ok(match &self.documents {
            Some(d) if cimd::is_url(id) => d.get(id).await.map(|m| Client {
                name: format!("{} (from {})", m.name, m.host),
                redirect_uris: m.redirect_uris.clone(),
                secret: None,
                registered: 0,
                last_used: None,
            }),
            _ => Err("unknown client".into()),
        })
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
            // The operator scopes are the console's: not advertised to clients.
            "scopes_supported": self.cfg.scopes.iter().filter(|x| !super::operator_scope(x)).collect::<Vec<_>>(),
            "authorization_response_iss_parameter_supported": true,
            "client_id_metadata_document_supported": self.documents.is_some(),
        });
        if self.cfg.dynamic_registration {
            m["registration_endpoint"] = format!("{issuer}/register").into();
        }
        m
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
            // Hosts a consent page's CSP would have to repeat (found by review).
            "https://*/cb",
            "https://%2A/cb",
            "https://a'b.example/cb",
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
