//! A test identity provider on loopback: RFC 8414 metadata, a JWKS (Ed25519 and ES256 keys), an
//! RFC 7662 introspection endpoint, and a signer for tokens good and bad. It counts JWKS fetches
//! so tests can check that unknown `kid`s cannot make Warden hammer it.

use axum::extract::State;
use axum::routing::{get, post};
use axum::{Form, Json, Router};
use base64::engine::general_purpose::URL_SAFE_NO_PAD as B64;
use base64::Engine;
use jsonwebtoken::{Algorithm, EncodingKey, Header};
use parking_lot::Mutex;
use ring::signature::{EcdsaKeyPair, Ed25519KeyPair, KeyPair, ECDSA_P256_SHA256_FIXED_SIGNING};
use serde_json::{json, Map, Value};
use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{SystemTime, UNIX_EPOCH};

pub struct IdpState {
    pub issuer: String,
    jwks: Value,
    pub jwks_fetches: AtomicUsize,
    /// While set, the metadata and JWKS answer 503 (an issuer not started yet, or down).
    pub down: AtomicBool,
    /// Opaque token → introspection claims (absent: inactive).
    pub opaque: Mutex<HashMap<String, Value>>,
    /// Client credentials grants served.
    pub token_requests: AtomicUsize,
    /// Introspection requests served.
    pub introspections: AtomicUsize,
    /// RFC 8693 token exchanges served.
    pub exchanges: AtomicUsize,
    /// Authorization codes waiting (code → what was authorized), and refresh tokens (→ user,
    /// resource, scope).
    codes: Mutex<HashMap<String, Value>>,
    refresh: Mutex<HashMap<String, Value>>,
    /// Every access and refresh token issued by the code and refresh grants (to look for them
    /// where they must not be).
    pub issued: Mutex<Vec<String>>,
    /// Codes redeemed, refreshes served.
    pub redeemed: AtomicUsize,
    pub refreshes: AtomicUsize,
    /// Lifetime of access tokens from the code and refresh grants, seconds.
    pub access_ttl: std::sync::atomic::AtomicU64,
    ed: Vec<u8>,
    ed_public: Vec<u8>,
}

/// RFC 8693 token exchange for client `warden`: the subject token must be one of this IdP's
/// (signature and expiry checked); the answer is a token for `resource` with the same subject,
/// `act` naming the client, expiring no later than the subject token.
fn exchange(s: &IdpState, f: &HashMap<String, String>) -> axum::response::Response {
    use axum::response::IntoResponse;
    let bad = |e: &str| (axum::http::StatusCode::BAD_REQUEST, Json(json!({"error": e}))).into_response();
    if f.get("subject_token_type").map(String::as_str) != Some("urn:ietf:params:oauth:token-type:access_token") {
        return bad("invalid_request");
    }
    let mut v = jsonwebtoken::Validation::new(Algorithm::EdDSA);
    v.validate_aud = false;
    let key = jsonwebtoken::DecodingKey::from_ed_der(&s.ed_public);
    let Some(subject) = f.get("subject_token").and_then(|t| jsonwebtoken::decode::<Value>(t, &key, &v).ok()) else {
        return bad("invalid_grant");
    };
    let c = subject.claims;
    s.exchanges.fetch_add(1, Ordering::SeqCst);
    let n = now();
    let exp = c["exp"].as_u64().unwrap_or(n).min(n + 300);
    let claims = json!({"iss": s.issuer, "sub": c["sub"], "aud": f.get("resource"), "iat": n, "exp": exp,
                        "scope": f.get("scope").cloned().unwrap_or_default(), "client_id": "warden",
                        "act": {"sub": "warden"}, "subject_client": c["client_id"]});
    let mut h = Header::new(Algorithm::EdDSA);
    h.kid = Some("ed1".into());
    let t = jsonwebtoken::encode(&h, &claims, &EncodingKey::from_ed_der(&s.ed)).unwrap();
    Json(json!({"access_token": t, "issued_token_type": "urn:ietf:params:oauth:token-type:access_token",
                "token_type": "Bearer", "expires_in": exp.saturating_sub(n)}))
    .into_response()
}

/// `GET /authorize` (authorization code with PKCE S256, for client `warden`): the user signs in
/// by the `user` parameter the test's browser adds (a real browser gets a form that asks it) (and consents to the scopes of `grant`, when
/// the browser adds it); the answer goes to `redirect_uri` with `code`, `state` and `iss`.
async fn authorize(
    State(s): State<Arc<IdpState>>,
    axum::extract::Query(q): axum::extract::Query<HashMap<String, String>>,
) -> axum::response::Response {
    use axum::response::IntoResponse;
    let get = |k: &str| q.get(k).cloned().unwrap_or_default();
    let ok = get("response_type") == "code"
        && get("client_id") == "warden"
        && get("code_challenge_method") == "S256"
        && !get("code_challenge").is_empty()
        && !get("redirect_uri").is_empty();
    // A browser without `user`: the sign-in form (the request again, with the name typed).
    if ok && get("user").is_empty() {
        let esc = |v: &str| v.replace('&', "&amp;").replace('"', "&quot;").replace('<', "&lt;");
        let hidden: String = q
            .iter()
            .map(|(k, v)| format!("<input type=\"hidden\" name=\"{}\" value=\"{}\">", esc(k), esc(v)))
            .collect();
        let page = format!(
            "<!doctype html><title>Test IdP sign-in</title><form method=\"get\" action=\"/authorize\">{hidden}\
             <input name=\"user\" id=\"user\"><button id=\"sign-in\" type=\"submit\">Sign in</button></form>"
        );
        return axum::response::Html(page).into_response();
    }
    if !ok || get("user").is_empty() {
        return (axum::http::StatusCode::BAD_REQUEST, "bad authorization request").into_response();
    }
    let code = B64.encode(ring::rand::generate::<[u8; 16]>(&ring::rand::SystemRandom::new()).unwrap().expose());
    // The user may consent to less than asked (`grant`, the scopes ticked).
    let mut granted = q.clone();
    if let Some(g) = q.get("grant") {
        granted.insert("scope".into(), g.clone());
    }
    s.codes.lock().insert(code.clone(), json!(granted));
    let mut to = reqwest::Url::parse(&get("redirect_uri")).unwrap();
    to.query_pairs_mut().append_pair("code", &code).append_pair("state", &get("state")).append_pair("iss", &s.issuer);
    (axum::http::StatusCode::FOUND, [("location", to.to_string())]).into_response()
}

/// An access token for `user` at `resource` (and a refresh token), as the code and refresh
/// grants answer.
fn user_tokens(s: &IdpState, user: &str, resource: &str, scope: &str) -> Value {
    let n = now();
    let ttl = s.access_ttl.load(Ordering::SeqCst);
    // Every user here is of tenant `acme`, as `Idp::claims` makes them.
    let claims = json!({"iss": s.issuer, "sub": user, "aud": resource, "iat": n, "exp": n + ttl,
                        "scope": scope, "client_id": "warden", "tenant": "acme"});
    let mut h = Header::new(Algorithm::EdDSA);
    h.kid = Some("ed1".into());
    let t = jsonwebtoken::encode(&h, &claims, &EncodingKey::from_ed_der(&s.ed)).unwrap();
    let r = B64.encode(ring::rand::generate::<[u8; 24]>(&ring::rand::SystemRandom::new()).unwrap().expose());
    s.refresh.lock().insert(r.clone(), json!({"user": user, "resource": resource, "scope": scope}));
    s.issued.lock().extend([t.clone(), r.clone()]);
    json!({"access_token": t, "token_type": "Bearer", "expires_in": ttl, "refresh_token": r, "scope": scope})
}

fn code_grant(s: &IdpState, f: &HashMap<String, String>) -> axum::response::Response {
    use axum::response::IntoResponse;
    let bad = || (axum::http::StatusCode::BAD_REQUEST, Json(json!({"error": "invalid_grant"}))).into_response();
    let get = |k: &str| f.get(k).cloned().unwrap_or_default();
    let Some(a) = s.codes.lock().remove(&get("code")) else { return bad() };
    let challenge = B64.encode(ring::digest::digest(&ring::digest::SHA256, get("code_verifier").as_bytes()));
    if a["redirect_uri"] != get("redirect_uri") || a["code_challenge"] != challenge || a["resource"] != get("resource")
    {
        return bad();
    }
    s.redeemed.fetch_add(1, Ordering::SeqCst);
    let (user, scope) = (a["user"].as_str().unwrap_or_default(), a["scope"].as_str().unwrap_or_default());
    Json(user_tokens(s, user, &get("resource"), scope)).into_response()
}

/// A refresh token is used once: the answer brings a new one (rotation, as OAuth 2.1 asks of
/// public clients), and the old one is refused from then on.
fn refresh_grant(s: &IdpState, f: &HashMap<String, String>) -> axum::response::Response {
    use axum::response::IntoResponse;
    let rt = f.get("refresh_token").cloned().unwrap_or_default();
    let Some(r) = s.refresh.lock().remove(&rt) else {
        return (axum::http::StatusCode::BAD_REQUEST, Json(json!({"error": "invalid_grant"}))).into_response();
    };
    s.refreshes.fetch_add(1, Ordering::SeqCst);
    let field = |k: &str| r[k].as_str().unwrap_or_default().to_string();
    Json(user_tokens(s, &field("user"), &field("resource"), &field("scope"))).into_response()
}
impl IdpState {
    /// Revoke every refresh token of `user` (their grant is withdrawn at the server).
    pub fn revoke_refresh(&self, user: &str) {
        self.refresh.lock().retain(|_, v| v["user"] != user);
    }
}

/// `POST /token` for client `warden` / secret `s3cret` (HTTP Basic): client credentials (an
/// EdDSA JWT for the requested `resource`), a token exchange ([`exchange`]), an authorization
/// code (PKCE checked) or a refresh token.
async fn token(
    State(s): State<Arc<IdpState>>,
    headers: axum::http::HeaderMap,
    Form(f): Form<HashMap<String, String>>,
) -> axum::response::Response {
    use axum::response::IntoResponse;
    let basic = format!("Basic {}", base64::engine::general_purpose::STANDARD.encode("warden:s3cret"));
    if headers.get("authorization").and_then(|v| v.to_str().ok()) != Some(basic.as_str()) {
        return (axum::http::StatusCode::UNAUTHORIZED, Json(json!({"error": "invalid_client"}))).into_response();
    }
    match f.get("grant_type").map(String::as_str) {
        Some("client_credentials") => {}
        Some("urn:ietf:params:oauth:grant-type:token-exchange") => return exchange(&s, &f),
        Some("authorization_code") => return code_grant(&s, &f),
        Some("refresh_token") => return refresh_grant(&s, &f),
        _ => {
            return (axum::http::StatusCode::BAD_REQUEST, Json(json!({"error": "unsupported_grant_type"})))
                .into_response()
        }
    }
    s.token_requests.fetch_add(1, Ordering::SeqCst);
    let n = now();
    let claims = json!({"iss": s.issuer, "sub": "warden", "aud": f.get("resource"), "iat": n, "exp": n + 300,
                        "scope": f.get("scope").cloned().unwrap_or_default(), "client_id": "warden"});
    let mut h = Header::new(Algorithm::EdDSA);
    h.kid = Some("ed1".into());
    let t = jsonwebtoken::encode(&h, &claims, &EncodingKey::from_ed_der(&s.ed)).unwrap();
    Json(json!({"access_token": t, "token_type": "Bearer", "expires_in": 300})).into_response()
}

pub struct Idp {
    pub state: Arc<IdpState>,
    pub issuer: String,
    ed: Vec<u8>,
    ec: Vec<u8>,
    /// The Ed25519 public key, raw (for algorithm-confusion attacks).
    pub ed_public: Vec<u8>,
    _task: tokio::task::JoinHandle<()>,
}

pub fn now() -> u64 {
    SystemTime::now().duration_since(UNIX_EPOCH).unwrap().as_secs()
}

impl Idp {
    /// Start on a loopback port.
    pub async fn start() -> Idp {
        let rng = ring::rand::SystemRandom::new();
        let ed = Ed25519KeyPair::generate_pkcs8(&rng).unwrap().as_ref().to_vec();
        let ec = EcdsaKeyPair::generate_pkcs8(&ECDSA_P256_SHA256_FIXED_SIGNING, &rng).unwrap().as_ref().to_vec();
        let ed_pub = Ed25519KeyPair::from_pkcs8(&ed).unwrap().public_key().as_ref().to_vec();
        let ec_pub = EcdsaKeyPair::from_pkcs8(&ECDSA_P256_SHA256_FIXED_SIGNING, &ec, &rng)
            .unwrap()
            .public_key()
            .as_ref()
            .to_vec();
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let issuer = format!("http://{}", listener.local_addr().unwrap());
        let jwks = json!({"keys": [
            {"kty": "OKP", "crv": "Ed25519", "x": B64.encode(&ed_pub), "kid": "ed1", "use": "sig"},
            {"kty": "EC", "crv": "P-256", "x": B64.encode(&ec_pub[1..33]), "y": B64.encode(&ec_pub[33..]), "kid": "ec1", "alg": "ES256", "use": "sig"},
            {"kty": "oct", "k": B64.encode(b"a shared secret that must never be used"), "kid": "hmac1"},
        ]});
        let state = Arc::new(IdpState {
            issuer: issuer.clone(),
            jwks,
            jwks_fetches: AtomicUsize::new(0),
            down: AtomicBool::new(false),
            opaque: Mutex::new(HashMap::new()),
            token_requests: AtomicUsize::new(0),
            introspections: AtomicUsize::new(0),
            exchanges: AtomicUsize::new(0),
            codes: Mutex::new(HashMap::new()),
            refresh: Mutex::new(HashMap::new()),
            issued: Mutex::new(Vec::new()),
            redeemed: AtomicUsize::new(0),
            refreshes: AtomicUsize::new(0),
            access_ttl: std::sync::atomic::AtomicU64::new(300),
            ed: ed.clone(),
            ed_public: ed_pub.clone(),
        });
        let app = Router::new()
            .route(
                "/.well-known/oauth-authorization-server",
                get(|State(s): State<Arc<IdpState>>| async move {
                    if s.down.load(Ordering::SeqCst) {
                        return Err(axum::http::StatusCode::SERVICE_UNAVAILABLE);
                    }
                    Ok(Json(json!({"issuer": s.issuer, "jwks_uri": format!("{}/jwks", s.issuer),
                                "introspection_endpoint": format!("{}/introspect", s.issuer),
                                "authorization_endpoint": format!("{}/authorize", s.issuer),
                                "token_endpoint": format!("{}/token", s.issuer),
                                "response_types_supported": ["code"],
                                "code_challenge_methods_supported": ["S256"],
                                "authorization_response_iss_parameter_supported": true,
                                "scopes_supported": ["mcp", "offline_access"]})))
                }),
            )
            .route(
                "/jwks",
                get(|State(s): State<Arc<IdpState>>| async move {
                    s.jwks_fetches.fetch_add(1, Ordering::SeqCst);
                    if s.down.load(Ordering::SeqCst) {
                        return Err(axum::http::StatusCode::SERVICE_UNAVAILABLE);
                    }
                    Ok(Json(s.jwks.clone()))
                }),
            )
            .route(
                "/introspect",
                post(|State(s): State<Arc<IdpState>>, Form(f): Form<HashMap<String, String>>| async move {
                    s.introspections.fetch_add(1, Ordering::SeqCst);
                    let t = f.get("token").cloned().unwrap_or_default();
                    Json(s.opaque.lock().get(&t).cloned().unwrap_or(json!({"active": false})))
                }),
            )
            .route("/token", post(token))
            .route("/authorize", get(authorize))
            .with_state(state.clone());
        let task = tokio::spawn(async move {
            axum::serve(listener, app).await.unwrap();
        });
        Idp { state, issuer, ed, ec, ed_public: ed_pub, _task: task }
    }

    /// Claims of a good token for `resource`.
    pub fn claims(&self, resource: &str, scope: &str) -> Map<String, Value> {
        let n = now();
        json!({"iss": self.issuer, "sub": "alice", "aud": resource, "iat": n, "nbf": n, "exp": n + 600,
               "scope": scope, "client_id": "test-client", "tenant": "acme", "roles": ["dev"]})
        .as_object()
        .unwrap()
        .clone()
    }

    /// Sign with the Ed25519 key (`kid` as given).
    pub fn sign_ed(&self, claims: &Map<String, Value>, kid: Option<&str>) -> String {
        let mut h = Header::new(Algorithm::EdDSA);
        h.kid = kid.map(String::from);
        jsonwebtoken::encode(&h, claims, &EncodingKey::from_ed_der(&self.ed)).unwrap()
    }

    /// Sign with the P-256 key as ES256.
    pub fn sign_ec(&self, claims: &Map<String, Value>) -> String {
        let mut h = Header::new(Algorithm::ES256);
        h.kid = Some("ec1".into());
        jsonwebtoken::encode(&h, claims, &EncodingKey::from_ec_der(&self.ec)).unwrap()
    }

    /// Sign with a fresh key nobody knows, with extra header fields (e.g. `jku`).
    pub fn sign_foreign(claims: &Map<String, Value>, kid: &str, jku: Option<&str>) -> String {
        let key = Ed25519KeyPair::generate_pkcs8(&ring::rand::SystemRandom::new()).unwrap();
        let mut h = Header::new(Algorithm::EdDSA);
        h.kid = Some(kid.into());
        h.jku = jku.map(String::from);
        jsonwebtoken::encode(&h, claims, &EncodingKey::from_ed_der(key.as_ref())).unwrap()
    }

    /// A token with an arbitrary header and an HMAC-SHA256 signature under `secret`.
    pub fn sign_hs256_raw(header: &Value, claims: &Map<String, Value>, secret: &[u8]) -> String {
        let msg =
            format!("{}.{}", B64.encode(header.to_string()), B64.encode(Value::Object(claims.clone()).to_string()));
        let tag = ring::hmac::sign(&ring::hmac::Key::new(ring::hmac::HMAC_SHA256, secret), msg.as_bytes());
        format!("{msg}.{}", B64.encode(tag.as_ref()))
    }

    /// `alg: none`.
    pub fn unsigned(claims: &Map<String, Value>) -> String {
        format!(
            "{}.{}.",
            B64.encode(json!({"alg": "none", "typ": "JWT"}).to_string()),
            B64.encode(Value::Object(claims.clone()).to_string())
        )
    }
}

/// One page of a [`static_site`]: path, status, headers, body.
pub type Page = (&'static str, u16, Vec<(&'static str, String)>, String);

/// Serve fixed pages, made from the site's base URL, on a loopback port (client metadata
/// documents, hostile ones included); the base URL and the number of requests served.
pub async fn static_site(pages: impl FnOnce(&str) -> Vec<Page>) -> (String, Arc<AtomicUsize>) {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let base = format!("http://{}", listener.local_addr().unwrap());
    let pages = pages(&base);
    let hits = Arc::new(AtomicUsize::new(0));
    let counter = hits.clone();
    let pages = Arc::new(pages);
    let app = Router::new().fallback(move |uri: axum::http::Uri| {
        let pages = pages.clone();
        counter.fetch_add(1, Ordering::SeqCst);
        async move {
            let mut b = axum::http::Response::builder();
            let Some((_, status, headers, body)) = pages.iter().find(|p| p.0 == uri.path()) else {
                return b.status(404).body(axum::body::Body::empty()).unwrap();
            };
            for (k, v) in headers {
                b = b.header(*k, v);
            }
            b.status(*status).body(axum::body::Body::from(body.clone())).unwrap()
        }
    });
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
    (base, hits)
}
