//! The operators' console: a web page at `/console` on the admin listener, embedded in the
//! binary (`console/` next to this crate's sources: HTML, one script, one style sheet; no CDN,
//! nothing fetched at run time). The page calls the admin API (`/admin/…`) with the session
//! cookie set here.
//!
//! Sign-in: the admin token, under a name the operator gives (`console:<name>` in the audit
//! records of what they do), or an operator principal's credential (an API key or access token
//! with `warden:admin` or `warden:approve`): the session then has that principal's rights and
//! tenant, exactly as its bearer calls to the admin API would, and ends when its token expires.
//! The session lives in the store (`console` records, at most 8 hours), so any replica serves
//! it; signing out deletes it.
//!
//! Defends against: cross-site request forgery and a cookie leaked to another local port (the
//! cookie is `HttpOnly; SameSite=Strict`, and is worth nothing without the session's CSRF token in
//! `x-warden-csrf`, compared in constant time, which the page keeps from sign-in in its tab's
//! storage; an `Origin` must be exactly this listener, port included; sign-in takes JSON only;
//! the admin listener also refuses a foreign `Host`); a rotated admin token (its sessions end);
//! sign-in floods (50 sessions per credential per 8 hours; failures are throttled in the
//! audit trail); script
//! injection into the page (a strict CSP: `default-src 'self'`, no inline script or style, and
//! the page writes untrusted text with `textContent`, never as HTML); framing (`frame-ancestors
//! 'none'`); a stolen session id read from the store (records are keyed by its SHA-256).
//! Does not defend against: someone at the operator's unlocked browser; a leaked admin token; a
//! principal whose API key is removed or token revoked keeping its console session until it
//! expires (8 hours at most, or the token's expiry) or signs out;
//! a cookie read off the wire when the admin listener is reached through an unencrypted proxy
//! (it binds loopback; `Secure` is not set because it serves plain HTTP).

use super::caller::{is_admin_token, short};
use super::{reply, AdminState, SCOPE_ADMIN, SCOPE_APPROVE};
use crate::digest::{hex, sha256};
use crate::store::RecordKey;
use axum::body::Body;
use axum::extract::State;
use axum::http::{header, HeaderMap, HeaderValue, Method, Request, Response, StatusCode};
use axum::middleware::Next;
use base64::Engine;
use serde::{Deserialize, Serialize};
use serde_json::json;
use std::sync::Arc;
use std::time::Duration;
use subtle::ConstantTimeEq;
use warden_policy::Principal;

pub const COOKIE: &str = "warden_console";
pub const CSRF_HEADER: &str = "x-warden-csrf";
const LIFETIME: Duration = Duration::from_secs(8 * 3600);
const RECORD: &str = "console";
/// Sign-ins one credential may make within a session's lifetime.
const MAX_SIGN_INS: u64 = 50;
/// Every answer of the admin listener carries these.
pub const CSP: &str = "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data:; \
                       connect-src 'self'; object-src 'none'; base-uri 'none'; form-action 'self'; \
                       frame-ancestors 'none'";

/// A signed-in operator, as stored (under the SHA-256 of the cookie's value).
#[derive(Clone, Debug, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Session {
    pub name: String,
    pub(super) csrf: String,
    /// When it was signed in (seconds since the epoch).
    at: u64,
    pub signer: Signer,
}

/// What a session was signed in with.
#[derive(Clone, Debug, Serialize, Deserialize)]
#[serde(rename_all = "snake_case", deny_unknown_fields)]
pub enum Signer {
    /// The admin token: its rights, as long as it is still the admin token (`token` is the hex
    /// SHA-256 of its SHA-256: a rotated token ends the sessions signed in with the old one).
    AdminToken { token: String },
    /// A principal's credential (an API key or access token with `warden:admin` or
    /// `warden:approve`): its rights, its tenant.
    Principal(Principal),
}

fn token_fingerprint(s: &AdminState) -> String {
    hex(&sha256(&s.token_hash))
}

/// Whether a request's `Origin`, when it has one, is exactly this listener (scheme, host and
/// port): a page on another local port is another origin, though browsers send it the cookie.
pub(super) fn same_origin(h: &HeaderMap) -> bool {
    let Some(origin) = h.get(header::ORIGIN) else { return true };
    let host = h.get(header::HOST).and_then(|v| v.to_str().ok()).unwrap_or_default();
    !host.is_empty() && origin.as_bytes() == format!("http://{host}").as_bytes()
}

/// A JSON body from this listener's own origin: what a page elsewhere cannot send (a
/// cross-origin form cannot send JSON without CORS, and the `Origin` would differ).
pub(super) fn json_from_this_origin(h: &HeaderMap) -> bool {
    let json = h
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.split(';').next().is_some_and(|t| t.trim().eq_ignore_ascii_case("application/json")));
    json && same_origin(h)
}

pub(super) fn key(id: &str) -> String {
    hex(&sha256(id.as_bytes()))
}

pub(super) fn random_token() -> String {
    let b: [u8; 32] = rand::random();
    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(b)
}

/// The session id a request's cookies carry (43 base64url characters), if any.
fn cookie(h: &HeaderMap) -> Option<&str> {
    h.get_all(header::COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(';'))
        .filter_map(|c| c.trim().strip_prefix(COOKIE)?.strip_prefix('='))
        .find(|v| v.len() == 43 && v.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_'))
}

/// Resolve the console session a request's cookie names, and attach it only when the request
/// also carries the session's CSRF token (`x-warden-csrf`, which the page keeps since sign-in):
/// the cookie alone, which a browser also sends to other local ports, is not enough for
/// anything. A state change without the token is refused (403); a read without it is answered
/// as not signed in. A bearer credential wins: the cookie is then ignored.
pub async fn session_layer(State(s): State<Arc<AdminState>>, mut req: Request<Body>, next: Next) -> Response<Body> {
    // Signing in (either way) needs no session; a stale cookie must not stand in its way.
    let signing_in = matches!(req.uri().path(), "/console/sign-in" | "/console/oauth/start");
    if req.headers().contains_key(header::AUTHORIZATION) || signing_in {
        return next.run(req).await;
    }
    let Some(id) = cookie(req.headers()).map(str::to_string) else { return next.run(req).await };
    let record = s.store.record(RecordKey { kind: RECORD, key: &key(&id) }).await;
    let session = match record {
        Ok(Some(bytes)) => serde_json::from_slice::<Session>(&bytes).ok().filter(|x| match &x.signer {
            Signer::AdminToken { token } => *token == token_fingerprint(&s),
            Signer::Principal(_) => true,
        }),
        Ok(None) => None,
        Err(e) => return super::store_error(e),
    };
    if let Some(session) = session {
        let sent = req.headers().get(CSRF_HEADER).map(|v| v.as_bytes()).unwrap_or_default();
        let token_ok = bool::from(sent.ct_eq(session.csrf.as_bytes())) && same_origin(req.headers());
        let safe = matches!(*req.method(), Method::GET | Method::HEAD);
        if token_ok {
            req.extensions_mut().insert(session);
        } else if !safe {
            s.audit.auth_failure(None, "console_csrf");
            return reply(
                StatusCode::FORBIDDEN,
                json!({"error": format!("a state change needs the session's CSRF token in {CSRF_HEADER}")}),
            );
        }
    }
    next.run(req).await
}

/// The console's security headers, on every answer of the admin listener.
pub async fn security_headers(req: Request<Body>, next: Next) -> Response<Body> {
    let mut r = next.run(req).await;
    let h = r.headers_mut();
    h.insert(header::CONTENT_SECURITY_POLICY, HeaderValue::from_static(CSP));
    h.insert(header::X_CONTENT_TYPE_OPTIONS, HeaderValue::from_static("nosniff"));
    h.insert(header::X_FRAME_OPTIONS, HeaderValue::from_static("DENY"));
    h.insert(header::REFERRER_POLICY, HeaderValue::from_static("no-referrer"));
    h.entry(header::CACHE_CONTROL).or_insert(HeaderValue::from_static("no-store"));
    r
}

fn asset(content_type: &'static str, body: &'static str) -> Response<Body> {
    Response::builder()
        .header(header::CONTENT_TYPE, content_type)
        .body(Body::from(body))
        .expect("static response parts")
}

pub async fn page() -> Response<Body> {
    asset("text/html; charset=utf-8", include_str!("../../console/index.html"))
}

pub async fn script() -> Response<Body> {
    asset("text/javascript; charset=utf-8", include_str!("../../console/app.js"))
}

pub async fn style() -> Response<Body> {
    asset("text/css; charset=utf-8", include_str!("../../console/app.css"))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct SignIn {
    token: String,
    name: Option<String>,
}

pub(super) fn set_cookie(r: &mut Response<Body>, value: &str, max_age: u64) {
    let c = format!("{COOKIE}={value}; Path=/; HttpOnly; SameSite=Strict; Max-Age={max_age}");
    r.headers_mut().insert(header::SET_COOKIE, HeaderValue::from_str(&c).expect("cookie is ASCII"));
}

/// Who a sign-in token names, and for how long a session may last: the admin token (8 hours),
/// or a principal's credential with an operator scope (until its token expires, at most 8 hours).
async fn signer(s: &AdminState, token: &str) -> Result<(Signer, Duration), Response<Body>> {
    if is_admin_token(s, token) {
        return Ok((Signer::AdminToken { token: token_fingerprint(s) }, LIFETIME));
    }
    principal_signer(s, token).await
}

/// The principal an operator credential (API key or access token) names, with
/// `warden:admin` or `warden:approve`, and how long its session may last (until the token
/// expires, at most 8 hours).
pub(super) async fn principal_signer(s: &AdminState, token: &str) -> Result<(Signer, Duration), Response<Body>> {
    let refused_sign_in = || {
        s.audit.auth_failure(None, "console_sign_in");
        reply(StatusCode::UNAUTHORIZED, json!({"error": "that is not the admin token or a valid operator credential"}))
    };
    let (Some(auth), Ok(value)) = (&s.auth, HeaderValue::from_str(&format!("Bearer {token}"))) else {
        return Err(refused_sign_in());
    };
    let mut req = Request::new(());
    req.headers_mut().insert(header::AUTHORIZATION, value);
    let (parts, ()) = req.into_parts();
    let Ok(p) = auth.authenticate(&parts, &s.resource).await else { return Err(refused_sign_in()) };
    if !p.has_scope(SCOPE_ADMIN) && !p.has_scope(SCOPE_APPROVE) {
        s.audit.auth_failure(None, "console_forbidden");
        return Err(reply(
            StatusCode::FORBIDDEN,
            json!({"error": format!("this credential has neither {SCOPE_ADMIN} nor {SCOPE_APPROVE}")}),
        ));
    }
    let now = crate::clock::now_secs();
    let life = match p.claims.get("exp").and_then(serde_json::Value::as_u64) {
        Some(exp) if exp <= now => return Err(refused_sign_in()),
        Some(exp) => LIFETIME.min(Duration::from_secs(exp - now)),
        None => LIFETIME,
    };
    Ok((Signer::Principal(Principal::clone(&p)), life))
}

/// `POST /console/sign-in` `{token, name?}`: a session for the admin token's holder (under the
/// name given), or for the principal an operator credential names (under its subject).
pub async fn sign_in(State(s): State<Arc<AdminState>>, h: HeaderMap, body: axum::body::Bytes) -> Response<Body> {
    if !json_from_this_origin(&h) {
        return reply(StatusCode::BAD_REQUEST, json!({"error": "expected a JSON body from the console's own origin"}));
    }
    let Ok(req) = serde_json::from_slice::<SignIn>(&body) else {
        return reply(StatusCode::BAD_REQUEST, json!({"error": "expected {token, name?}"}));
    };
    if req.name.as_deref().is_some_and(|n| !short(n, 64)) || req.token.len() > 16 * 1024 {
        return reply(StatusCode::BAD_REQUEST, json!({"error": "name: 1 to 64 characters, no control characters"}));
    }
    let (signer, life) = match signer(&s, &req.token).await {
        Ok(x) => x,
        Err(r) => return r,
    };
    match open(&s, signer, life, req.name, "signed_in").await {
        Ok((id, session)) => {
            let mut r = reply(StatusCode::OK, session.shown());
            set_cookie(&mut r, &id, life.as_secs());
            r
        }
        Err(r) => r,
    }
}

/// Open a session for `signer` (named `name` when it is the admin token's holder), recorded as
/// `how` in the audit trail: its id (the cookie's value) and the session.
pub(super) async fn open(
    s: &AdminState,
    signer: Signer,
    life: Duration,
    name: Option<String>,
    how: &str,
) -> Result<(String, Session), Response<Body>> {
    let session = Session {
        name: match &signer {
            Signer::Principal(p) => p.subject.clone(),
            Signer::AdminToken { .. } => name.unwrap_or_else(|| "admin".into()),
        },
        csrf: random_token(),
        at: crate::clock::now_secs(),
        signer,
    };
    // Sessions are records in the store, which is shared and bounded: a credential may open
    // only so many in its lifetime.
    let who = match &session.signer {
        Signer::Principal(p) => format!("p:{}:{}", p.tenant.as_deref().unwrap_or("-"), p.subject),
        Signer::AdminToken { .. } => "admin".into(),
    };
    match s.store.count_record(RecordKey { kind: "console-sign-ins", key: &key(&who) }, LIFETIME).await {
        Ok(n) if n > MAX_SIGN_INS => {
            return Err(reply(
                StatusCode::TOO_MANY_REQUESTS,
                json!({"error": "too many sign-ins; sign out of old sessions or wait"}),
            ))
        }
        Ok(_) => {}
        Err(e) => return Err(super::store_error(e)),
    }
    let id = random_token();
    let value = serde_json::to_vec(&session).expect("a session serializes");
    match s.store.put_record(RecordKey { kind: RECORD, key: &key(&id) }, &value, life, true).await {
        Ok(true) => {}
        Ok(false) => return Err(reply(StatusCode::CONFLICT, json!({"error": "try again"}))),
        Err(e) => return Err(super::store_error(e)),
    }
    super::admin_event(s, "console", how, &session.who(), "", None, json!({})).await;
    Ok((id, session))
}

impl Session {
    /// Who the audit records name: `console:<name>` (the admin token) or `principal:<subject>`.
    pub fn who(&self) -> String {
        match &self.signer {
            Signer::Principal(p) => format!("principal:{}", p.subject),
            Signer::AdminToken { .. } => format!("console:{}", self.name),
        }
    }

    /// What the page is told: the name, the CSRF token, and what it may do.
    fn shown(&self) -> serde_json::Value {
        let (operate, tenant) = match &self.signer {
            Signer::AdminToken { .. } => (true, None),
            Signer::Principal(p) => (p.has_scope(SCOPE_ADMIN) && p.tenant.is_none(), p.tenant.clone()),
        };
        json!({"name": self.name, "csrf": self.csrf, "since": self.at, "may_operate": operate, "tenant": tenant})
    }
}

/// `GET /console/session`: who is signed in, and the CSRF token for state changes.
pub async fn current(session: Option<axum::Extension<Session>>) -> Response<Body> {
    match session {
        Some(axum::Extension(s)) => reply(StatusCode::OK, s.shown()),
        None => reply(StatusCode::UNAUTHORIZED, json!({"error": "not signed in"})),
    }
}

/// `POST /console/sign-out`: end the session (CSRF-checked like every state change).
pub async fn sign_out(
    State(s): State<Arc<AdminState>>,
    session: Option<axum::Extension<Session>>,
    h: HeaderMap,
) -> Response<Body> {
    if let Some(id) = cookie(&h) {
        if let Err(e) = s.store.delete_record(RecordKey { kind: RECORD, key: &key(id) }).await {
            return super::store_error(e);
        }
    }
    if let Some(axum::Extension(session)) = session {
        super::admin_event(&s, "console", "signed_out", &session.who(), "", None, json!({})).await;
    }
    let mut r = reply(StatusCode::OK, json!({"signed_out": true}));
    set_cookie(&mut r, "", 0);
    r
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_a_well_formed_session_cookie_is_read() {
        let id = random_token();
        let mut h = HeaderMap::new();
        h.insert(header::COOKIE, format!("a=b; {COOKIE}={id}; c=d").parse().unwrap());
        assert_eq!(cookie(&h), Some(id.as_str()));
        for bad in [format!("{COOKIE}=short"), format!("{COOKIE}x={id}"), format!("{COOKIE}={}", "é".repeat(22))] {
            let mut h = HeaderMap::new();
            h.insert(header::COOKIE, HeaderValue::from_bytes(bad.as_bytes()).unwrap());
            assert_eq!(cookie(&h), None, "{bad}");
        }
    }
}
