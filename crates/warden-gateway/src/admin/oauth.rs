//! Console sign-in through the authorization server: the console is an OAuth 2.1 client of the
//! server that issues Warden's own access tokens (the built-in one on the default), with the
//! authorization code flow, PKCE (S256), the `resource` indicator (Warden's MCP resource, so the
//! token is one Warden accepts) and RFC 9207's `iss`. The user asks for `warden:admin` (operate)
//! or `warden:approve` (approvals, of their own tenant), with the scopes every credential must
//! carry (`[auth] required_scopes`); the token that comes back is checked
//! exactly as a pasted one (`console::principal_signer`), and the session has that principal's
//! rights until the token expires.
//!
//! - `GET /console/oauth`: whether sign-in through the server is offered, and with which scopes;
//! - `GET /console/oauth/start?scope=warden:admin|warden:approve`: to the server's `/authorize`;
//! - `GET /console/oauth/callback`: back from it; on success to `/console#csrf=…` with the
//!   session cookie set (the page keeps the CSRF token from the fragment, which no server sees).
//!
//! The console registers itself by RFC 7591 dynamic registration (a public client, its redirect
//! URI this listener's `/console/oauth/callback` under the `Host` the browser used), once per
//! redirect URI and process. The built-in server is called in process (its own routes, no
//! network, no TLS trust to set up); another server over HTTP, with 10 s timeouts, no redirects
//! followed and answers of at most 64 KiB.
//!
//! Defends against: login CSRF and code injection (a flow is bound to the browser that started
//! it by a random value in a `SameSite=Lax` cookie scoped to `/console/oauth`, whose hash the
//! flow's record keeps; `state` is single use and lives 10 minutes), a code from another server
//! (the `iss` of the answer must be the server's issuer when the server says it sends one), code
//! interception (PKCE), tokens for something else (the token must be valid for Warden's
//! resource and carry an operator scope), floods of flows (200 started per 10 minutes, kept in
//! the shared store with a lifetime), spoofed messages (errors come back as fixed codes the page
//! maps to its own words, never as text from the URL).
//! Does not defend against: a session outliving the user's revocation at the server (until the
//! access token expires: the built-in server's are valid at most an hour); the session is not
//! renewed with a refresh token, so the operator signs in again when the token expires.

use super::console::{open, principal_signer, random_token, set_cookie, Signer};
use super::{reply, AdminState, SCOPE_ADMIN, SCOPE_APPROVE};
use crate::digest::{hex, sha256};
use crate::store::RecordKey;
use axum::body::Body;
use axum::extract::{Query, State};
use axum::http::{header, HeaderMap, HeaderValue, Method, Request, Response, StatusCode};
use axum::Router;
use base64::engine::general_purpose::URL_SAFE_NO_PAD as B64;
use base64::Engine;
use serde::{Deserialize, Serialize};
use serde_json::{json, Value};
use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;
use subtle::ConstantTimeEq;
use tower::ServiceExt;

/// The cookie that binds a flow to the browser that started it.
const FLOW_COOKIE: &str = "warden_console_oauth";
const FLOW_RECORD: &str = "console-oauth";
const FLOW_LIFETIME: Duration = Duration::from_secs(600);
/// Flows started per [`FLOW_LIFETIME`], on every replica together.
const MAX_FLOWS: u64 = 200;
/// Redirect URIs (`Host`s the console was reached under) a process registers a client for.
const MAX_CLIENTS: usize = 16;
const MAX_ANSWER: usize = 64 << 10;
const TIMEOUT: Duration = Duration::from_secs(10);

/// How the console reaches the authorization server.
enum Channel {
    /// The built-in server's own routes, called in process, as `host` (its issuer's authority).
    InProcess { routes: Router, host: String },
    /// Another server, over HTTP.
    Remote(reqwest::Client),
}

/// RFC 8414 metadata: what the console uses of it.
#[derive(Clone, Deserialize)]
struct Metadata {
    issuer: String,
    authorization_endpoint: String,
    token_endpoint: String,
    registration_endpoint: Option<String>,
    #[serde(default)]
    scopes_supported: Vec<String>,
    #[serde(default)]
    authorization_response_iss_parameter_supported: bool,
}

/// The console's OAuth client.
pub struct ConsoleOAuth {
    issuer: String,
    /// Scopes asked for beside the operator scope: those every credential must carry.
    required: Vec<String>,
    channel: Channel,
    metadata: tokio::sync::OnceCell<Metadata>,
    /// Redirect URI → the client id registered for it.
    clients: Mutex<HashMap<String, String>>,
}

/// A flow in progress, as stored under the SHA-256 of its `state`.
#[derive(Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct Flow {
    /// The hex SHA-256 of the browser's flow cookie.
    browser: String,
    verifier: String,
    client_id: String,
    redirect_uri: String,
}

impl ConsoleOAuth {
    /// The server the console signs in through: the built-in one when configured, else the first
    /// JWT issuer trusted with Warden's own scopes (`admin_scopes`).
    pub fn for_auth(auth: &Arc<crate::auth::Authenticator>, resource: &str) -> Option<ConsoleOAuth> {
        let mut o = if auth.builtin.is_some() {
            ConsoleOAuth::builtin(auth.clone(), resource)?
        } else {
            let issuer = auth.admin_issuer()?;
            ConsoleOAuth::remote(&issuer).map_err(|e| tracing::warn!(error = %e, "console: no OAuth client")).ok()?
        };
        o.required = auth.required_scopes().to_vec();
        Some(o)
    }

    /// The built-in server of `auth`, whose issuer serves `resource`.
    fn builtin(auth: Arc<crate::auth::Authenticator>, resource: &str) -> Option<ConsoleOAuth> {
        auth.builtin.as_ref()?;
        let issuer = crate::auth::builtin::issuer_for(resource);
        let host = reqwest::Url::parse(&issuer).ok()?.authority().to_string();
        Some(ConsoleOAuth::new(issuer, Channel::InProcess { routes: crate::auth::as_routes::router(auth), host }))
    }

    /// A server reached over HTTP, identified by its issuer URL.
    fn remote(issuer: &str) -> Result<ConsoleOAuth, String> {
        let client = reqwest::Client::builder()
            .redirect(reqwest::redirect::Policy::none())
            .timeout(TIMEOUT)
            .build()
            .map_err(|e| e.to_string())?;
        Ok(ConsoleOAuth::new(issuer.trim_end_matches('/').to_string(), Channel::Remote(client)))
    }

    fn new(issuer: String, channel: Channel) -> ConsoleOAuth {
        ConsoleOAuth {
            issuer,
            required: Vec::new(),
            channel,
            metadata: tokio::sync::OnceCell::new(),
            clients: Mutex::new(HashMap::new()),
        }
    }

    /// One request to the server: its status and JSON answer.
    async fn call(&self, method: Method, url: &str, form: Option<Vec<u8>>, json: bool) -> Result<(u16, Value), String> {
        let content_type = if json { "application/json" } else { "application/x-www-form-urlencoded" };
        let bytes = match &self.channel {
            Channel::InProcess { routes, host } => {
                let u = reqwest::Url::parse(url).map_err(|e| e.to_string())?;
                let path = match u.query() {
                    Some(q) => format!("{}?{q}", u.path()),
                    None => u.path().to_string(),
                };
                let mut req = Request::builder().method(method).uri(path).header(header::HOST, host);
                if form.is_some() {
                    req = req.header(header::CONTENT_TYPE, content_type);
                }
                let req = req
                    .extension(crate::caller::ClientAddr(std::net::IpAddr::from([127, 0, 0, 1])))
                    .body(Body::from(form.unwrap_or_default()))
                    .map_err(|e| e.to_string())?;
                let r = routes.clone().oneshot(req).await.map_err(|e| e.to_string())?;
                let status = r.status().as_u16();
                let body = axum::body::to_bytes(r.into_body(), MAX_ANSWER).await.map_err(|e| e.to_string())?;
                (status, body.to_vec())
            }
            Channel::Remote(client) => {
                let mut req = client.request(method, url).header(header::ACCEPT, "application/json");
                if let Some(f) = form {
                    req = req.header(header::CONTENT_TYPE, content_type).body(f);
                }
                let mut r = req.send().await.map_err(|e| format!("{url}: {e}"))?;
                let status = r.status().as_u16();
                let mut body = Vec::new();
                while let Some(chunk) = r.chunk().await.map_err(|e| format!("{url}: {e}"))? {
                    if body.len() + chunk.len() > MAX_ANSWER {
                        return Err(format!("{url}: answer over {MAX_ANSWER} bytes"));
                    }
                    body.extend_from_slice(&chunk);
                }
                (status, body)
            }
        };
        let (status, body) = bytes;
        let v = serde_json::from_slice(&body).map_err(|_| format!("{url}: answered {status} without JSON"))?;
        Ok((status, v))
    }

    async fn metadata(&self) -> Result<&Metadata, String> {
        self.metadata
            .get_or_try_init(|| async {
                let url = format!("{}/.well-known/oauth-authorization-server", self.issuer);
                let (status, v) = self.call(Method::GET, &url, None, false).await?;
                if status != 200 {
                    return Err(format!("{url}: {status}"));
                }
                let m: Metadata = serde_json::from_value(v).map_err(|e| format!("{url}: {e}"))?;
                if m.issuer != self.issuer {
                    return Err(format!("{url}: names issuer {:?}", m.issuer));
                }
                Ok(m)
            })
            .await
    }

    /// The client id registered for `redirect_uri` (registering it the first time).
    async fn client_id(&self, redirect_uri: &str) -> Result<String, String> {
        if let Some(id) = self.clients.lock().expect("clients lock").get(redirect_uri) {
            return Ok(id.clone());
        }
        let m = self.metadata().await?;
        let Some(endpoint) = &m.registration_endpoint else {
            return Err("the authorization server offers no dynamic registration".into());
        };
        let body = json!({
            "client_name": "Warden console",
            "redirect_uris": [redirect_uri],
            "token_endpoint_auth_method": "none",
            "grant_types": ["authorization_code"],
            "response_types": ["code"],
        });
        let (status, v) = self.call(Method::POST, endpoint, Some(body.to_string().into_bytes()), true).await?;
        let id = v.get("client_id").and_then(Value::as_str).filter(|_| status == 201 || status == 200);
        let Some(id) = id else {
            return Err(format!("registration refused ({status}): {}", v.get("error").unwrap_or(&v)));
        };
        let mut clients = self.clients.lock().expect("clients lock");
        if clients.len() >= MAX_CLIENTS {
            clients.clear();
        }
        clients.insert(redirect_uri.to_string(), id.to_string());
        Ok(id.to_string())
    }

    /// The operator scopes the server offers.
    async fn offered(&self) -> Result<Vec<&'static str>, String> {
        let m = self.metadata().await?;
        Ok([SCOPE_ADMIN, SCOPE_APPROVE].into_iter().filter(|s| m.scopes_supported.iter().any(|x| x == s)).collect())
    }
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
pub struct Start {
    scope: String,
}

/// `GET /console/oauth/start?scope=…`: register if needed, remember the flow, and send the
/// browser to the server's authorization endpoint.
pub async fn start(State(s): State<Arc<AdminState>>, h: HeaderMap, Query(q): Query<Start>) -> Response<Body> {
    let Some(o) = oauth(&s) else { return failed("unavailable") };
    if q.scope != SCOPE_ADMIN && q.scope != SCOPE_APPROVE {
        return failed("scope");
    }
    // The admin listener accepts loopback `Host`s only (`loopback_only`): the callback is
    // reached under the name the browser used, where its session cookie will live.
    let Some(host) = h.get(header::HOST).and_then(|v| v.to_str().ok()) else { return failed("unavailable") };
    let redirect_uri = format!("http://{host}/console/oauth/callback");
    let (m, client_id) = match (o.metadata().await, o.client_id(&redirect_uri).await) {
        (Ok(m), Ok(id)) => (m, id),
        (Err(e), _) | (_, Err(e)) => {
            tracing::warn!(error = %e, "console: sign-in through the authorization server is unavailable");
            return failed("unavailable");
        }
    };
    match s.store.count_record(RecordKey { kind: "console-oauth-starts", key: "all" }, FLOW_LIFETIME).await {
        Ok(n) if n > MAX_FLOWS => return failed("busy"),
        Ok(_) => {}
        Err(e) => return super::store_error(e),
    }
    let (state, browser, verifier) = (random_token(), random_token(), random_token());
    let flow = Flow { browser: hex(&sha256(browser.as_bytes())), verifier, client_id, redirect_uri };
    let value = serde_json::to_vec(&flow).expect("a flow serializes");
    match s
        .store
        .put_record(RecordKey { kind: FLOW_RECORD, key: &hex(&sha256(state.as_bytes())) }, &value, FLOW_LIFETIME, true)
        .await
    {
        Ok(true) => {}
        Ok(false) => return failed("busy"),
        Err(e) => return super::store_error(e),
    }
    let Ok(mut to) = reqwest::Url::parse(&m.authorization_endpoint) else { return failed("unavailable") };
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
    let mut r = see_other(to.as_str());
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
            let mut r = see_other(&format!("/console#csrf={}", session.csrf));
            set_cookie(&mut r, &id, life.as_secs());
            clear_flow_cookie(&mut r);
            r
        }
        Err(_) => failed("busy"),
    }
}
