//! Console sign-in through the authorization server: the console is an OAuth 2.1 client of the
//! server that issues Warden's own access tokens (the built-in one on the default; see
//! `oauth_client.rs`), with the authorization code flow, PKCE (S256), the `resource` indicator
//! (Warden's MCP resource, so the token is one Warden accepts) and RFC 9207's `iss`. The user
//! asks for `warden:admin` (operate) or `warden:approve` (approvals, of their own tenant), with
//! the scopes every credential must carry (`[auth] required_scopes`); the token that comes back
//! is checked exactly as a pasted one (`console::principal_signer`), and the session has that
//! principal's rights until the token expires.
//!
//! - `GET /console/oauth`: whether sign-in through the server is offered, and with which scopes;
//! - `POST /console/oauth/start` `{scope, nonce}` (JSON, from the console's own origin):
//!   `{to}`, the server's authorization URL, where the page sends the browser;
//! - `GET /console/oauth/callback`: back from the server; on success to
//!   `/console#csrf=…&n=<nonce>` with the session cookie set. The page takes the CSRF token from
//!   the fragment (which no server sees) only when the nonce is the one it made for this flow.
//!
//! Defends against: a local process catching the code (the redirect URI is the admin listener's
//! bound address or `localhost` at its port, chosen by the browser's `Host` only among those);
//! login CSRF and code injection (a flow is bound to the browser that started it by a random
//! value in a `SameSite=Lax` cookie scoped to `/console/oauth`, whose hash the flow's record
//! keeps; `state` is single use and lives 10 minutes); a session planted in the operator's tab
//! (the page accepts a CSRF token only with the nonce it made before starting); a code from
//! another server (the `iss` of the answer must be the server's issuer when the server says it
//! sends one); code interception (PKCE); tokens for something else (the token must be valid for
//! Warden's resource and carry an operator scope); floods of flows from other sites (the start
//! is a JSON POST from this origin: no page elsewhere can send it; 200 flows per 10 minutes in
//! all, kept in the shared store with a lifetime); spoofed messages (errors come back as fixed
//! codes the page maps to its own words, never as text from the URL).
//! Does not defend against: a local process using up the 200 flows (it can reach the admin
//! listener anyway); a session outliving the user's revocation at the server (until the access
//! token expires: the built-in server's are valid at most an hour); the session is not renewed
//! with a refresh token, so the operator signs in again when the token expires.

use super::console::{json_from_this_origin, open, principal_signer, random_token, set_cookie, Signer};
use super::{reply, AdminState, SCOPE_ADMIN, SCOPE_APPROVE};
use crate::digest::{hex, sha256};
use crate::store::RecordKey;
use axum::body::Body;
use axum::extract::{Query, State};
use axum::http::{header, HeaderMap, HeaderValue, Method, Response, StatusCode};
use base64::engine::general_purpose::URL_SAFE_NO_PAD as B64;
use base64::Engine;
use serde::{Deserialize, Serialize};
use serde_json::{json, Value};
use std::sync::Arc;
use std::time::Duration;
use subtle::ConstantTimeEq;

pub use super::oauth_client::ConsoleOAuth;

/// The cookie that binds a flow to the browser that started it.
const FLOW_COOKIE: &str = "warden_console_oauth";
const FLOW_RECORD: &str = "console-oauth";
const FLOW_LIFETIME: Duration = Duration::from_secs(600);
/// Flows started per [`FLOW_LIFETIME`], on every replica together.
const MAX_FLOWS: u64 = 200;

/// A flow in progress, as stored under the SHA-256 of its `state`.
#[derive(Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct Flow {
    /// The hex SHA-256 of the browser's flow cookie.
    browser: String,
    verifier: String,
    client_id: String,
    redirect_uri: String,
    /// The page's nonce, handed back with the CSRF token.
    nonce: String,
}

fn flow_cookie(h: &HeaderMap) -> Option<&str> {
    h.get_all(header::COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(';'))
        .filter_map(|c| c.trim().strip_prefix(FLOW_COOKIE)?.strip_prefix('='))
        .find(|v| v.len() == 43)
}

/// A 303 to `location`.
fn see_other(location: &str) -> Response<Body> {
    Response::builder()
        .status(StatusCode::SEE_OTHER)
        .header(header::LOCATION, location)
        .body(Body::empty())
        .expect("static response parts")
}

/// Back to the console's sign-in, with one of the codes the page knows.
fn failed(code: &str) -> Response<Body> {
    let mut r = see_other(&format!("/console#sign-in-error={code}"));
    clear_flow_cookie(&mut r);
    r
}

fn clear_flow_cookie(r: &mut Response<Body>) {
    let c = format!("{FLOW_COOKIE}=; Path=/console/oauth; HttpOnly; SameSite=Lax; Max-Age=0");
    r.headers_mut().append(header::SET_COOKIE, HeaderValue::from_str(&c).expect("cookie is ASCII"));
}

fn oauth(s: &AdminState) -> Option<&ConsoleOAuth> {
    s.oauth.as_ref()
}

/// `GET /console/oauth`: `{available, issuer?, scopes}`.
pub async fn offered(State(s): State<Arc<AdminState>>) -> Response<Body> {
    let Some(o) = oauth(&s) else { return reply(StatusCode::OK, json!({"available": false, "scopes": []})) };
    match o.offered().await {
        Ok(scopes) => {
            reply(StatusCode::OK, json!({"available": !scopes.is_empty(), "issuer": o.issuer, "scopes": scopes}))
        }
        Err(e) => {
            tracing::warn!(error = %e, "console: the authorization server's metadata could not be read");
            reply(StatusCode::OK, json!({"available": false, "issuer": o.issuer, "scopes": []}))
        }
    }
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Start {
    scope: String,
    /// Made by the page for this flow; handed back with the session's CSRF token.
    nonce: String,
}

/// A refusal of `/console/oauth/start`, with one of the codes the page knows.
fn refused(status: StatusCode, code: &str) -> Response<Body> {
    reply(status, json!({"error": code}))
}

/// `POST /console/oauth/start` `{scope, nonce}`: remember the flow, and answer the server's
/// authorization URL for the page to send the browser to.
pub async fn start(State(s): State<Arc<AdminState>>, h: HeaderMap, body: axum::body::Bytes) -> Response<Body> {
    // A page elsewhere cannot send it, so it cannot use up the flows or start one in the
    // operator's browser.
    if !json_from_this_origin(&h) {
        return refused(StatusCode::BAD_REQUEST, "origin");
    }
    let Ok(q) = serde_json::from_slice::<Start>(&body) else { return refused(StatusCode::BAD_REQUEST, "request") };
    let nonce_ok = (22..=128).contains(&q.nonce.len())
        && q.nonce.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_');
    if (q.scope != SCOPE_ADMIN && q.scope != SCOPE_APPROVE) || !nonce_ok {
        return refused(StatusCode::BAD_REQUEST, "scope");
    }
    let Some(o) = oauth(&s) else { return refused(StatusCode::NOT_FOUND, "unavailable") };
    // The callback is reached under the name the browser used (where its cookies live), but
    // only one of the admin listener's own: never a listener another process named.
    let host = h.get(header::HOST).and_then(|v| v.to_str().ok()).unwrap_or_default();
    let Some(redirect_uri) = o.redirect_for(host).map(str::to_string) else {
        return refused(StatusCode::BAD_REQUEST, "host");
    };
    match s.store.count_record(RecordKey { kind: "console-oauth-starts", key: "all" }, FLOW_LIFETIME).await {
        Ok(n) if n > MAX_FLOWS => return refused(StatusCode::TOO_MANY_REQUESTS, "busy"),
        Ok(_) => {}
        Err(e) => return super::store_error(e),
    }
    let m = match o.metadata().await {
        Ok(m) => m,
        Err(e) => {
            tracing::warn!(error = %e, "console: sign-in through the authorization server is unavailable");
            return refused(StatusCode::SERVICE_UNAVAILABLE, "unavailable");
        }
    };
    let client_id = match o.client_id(&m).await {
        Ok(id) => id,
        Err(e) => {
            tracing::warn!(error = %e, "console: the console is not a client of the authorization server");
            return refused(StatusCode::SERVICE_UNAVAILABLE, "unavailable");
        }
    };
    let (state, browser, verifier) = (random_token(), random_token(), random_token());
    let flow = Flow { browser: hex(&sha256(browser.as_bytes())), verifier, client_id, redirect_uri, nonce: q.nonce };
    let value = serde_json::to_vec(&flow).expect("a flow serializes");
    match s
        .store
        .put_record(RecordKey { kind: FLOW_RECORD, key: &hex(&sha256(state.as_bytes())) }, &value, FLOW_LIFETIME, true)
        .await
    {
        Ok(true) => {}
        Ok(false) => return refused(StatusCode::CONFLICT, "busy"),
        Err(e) => return super::store_error(e),
    }
    let Ok(mut to) = reqwest::Url::parse(&m.authorization_endpoint) else {
        return refused(StatusCode::SERVICE_UNAVAILABLE, "unavailable");
    };
    let mut scope = vec![q.scope.as_str()];
    scope.extend(o.required.iter().map(String::as_str).filter(|x| *x != q.scope));
    to.query_pairs_mut()
        .append_pair("response_type", "code")
        .append_pair("client_id", &flow.client_id)
        .append_pair("redirect_uri", &flow.redirect_uri)
        .append_pair("scope", &scope.join(" "))
        .append_pair("state", &state)
        .append_pair("code_challenge", &B64.encode(sha256(flow.verifier.as_bytes())))
        .append_pair("code_challenge_method", "S256")
        .append_pair("resource", &s.resource);
    let mut r = reply(StatusCode::OK, json!({"to": to.as_str()}));
    let c = format!("{FLOW_COOKIE}={browser}; Path=/console/oauth; HttpOnly; SameSite=Lax; Max-Age=600");
    r.headers_mut().append(header::SET_COOKIE, HeaderValue::from_str(&c).expect("cookie is ASCII"));
    r
}

#[derive(Deserialize)]
pub struct Callback {
    code: Option<String>,
    state: Option<String>,
    iss: Option<String>,
    error: Option<String>,
}

/// `GET /console/oauth/callback`: check the answer belongs to a flow this browser started,
/// redeem the code, check the token, open a session.
pub async fn callback(State(s): State<Arc<AdminState>>, h: HeaderMap, Query(q): Query<Callback>) -> Response<Body> {
    let Some(o) = oauth(&s) else { return failed("unavailable") };
    let Some(state) = q.state.as_deref().filter(|x| x.len() <= 256) else { return failed("expired") };
    let taken = s.store.take_record(RecordKey { kind: FLOW_RECORD, key: &hex(&sha256(state.as_bytes())) }).await;
    let flow = match taken {
        Ok(Some(b)) => match serde_json::from_slice::<Flow>(&b) {
            Ok(f) => f,
            Err(_) => return failed("expired"),
        },
        Ok(None) => return failed("expired"),
        Err(e) => return super::store_error(e),
    };
    let browser = hex(&sha256(flow_cookie(&h).unwrap_or_default().as_bytes()));
    if !bool::from(browser.as_bytes().ct_eq(flow.browser.as_bytes())) {
        s.audit.auth_failure(None, "console_oauth_browser");
        return failed("browser");
    }
    let Ok(m) = o.metadata().await else { return failed("unavailable") };
    let iss_ok = match q.iss.as_deref() {
        Some(i) => i == m.issuer,
        None => !m.authorization_response_iss_parameter_supported,
    };
    if !iss_ok {
        s.audit.auth_failure(None, "console_oauth_issuer");
        return failed("issuer");
    }
    if let Some(e) = q.error.as_deref() {
        return failed(if e == "access_denied" { "denied" } else { "refused" });
    }
    let Some(code) = q.code.as_deref().filter(|c| c.len() <= 4096) else { return failed("refused") };
    let form = url::form_urlencoded::Serializer::new(String::new())
        .append_pair("grant_type", "authorization_code")
        .append_pair("code", code)
        .append_pair("redirect_uri", &flow.redirect_uri)
        .append_pair("client_id", &flow.client_id)
        .append_pair("code_verifier", &flow.verifier)
        .append_pair("resource", &s.resource)
        .finish();
    let token = match o.call(Method::POST, &m.token_endpoint, Some(form.into_bytes()), false).await {
        Ok((200, v)) => v.get("access_token").and_then(Value::as_str).map(str::to_string),
        Ok((status, v)) => {
            let error = v.get("error").cloned().unwrap_or_default();
            tracing::info!(status, %error, "console: the code was not redeemed");
            None
        }
        Err(e) => {
            tracing::warn!(error = %e, "console: the token endpoint could not be reached");
            return failed("unavailable");
        }
    };
    let Some(token) = token else { return failed("refused") };
    let (signer, life) = match principal_signer(&s, &token).await {
        Ok(x @ (Signer::Principal(_), _)) => x,
        _ => return failed("scope"),
    };
    match open(&s, signer, life, None, "signed_in_oauth").await {
        Ok((id, session)) => {
            let mut r = see_other(&format!("/console#csrf={}&n={}", session.csrf, flow.nonce));
            set_cookie(&mut r, &id, life.as_secs());
            clear_flow_cookie(&mut r);
            r
        }
        Err(_) => failed("busy"),
    }
}
