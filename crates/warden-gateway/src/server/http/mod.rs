//! Streamable HTTP (MCP 2025-03-26, 2025-06-18, 2025-11-25) on `/mcp`: POST/GET/DELETE, sessions,
//! JSON or SSE answers, SSE priming events, per-stream event ids, resumption with `Last-Event-ID`,
//! the standalone GET stream, and the listener-side checks.
//!
//! Defends against: DNS rebinding (`Host`/`Origin` allow-list → 403), oversized or slow bodies
//! (413 / 408), deep nesting, invalid UTF-8 and malformed JSON-RPC (400 with a JSON-RPC error),
//! unknown or terminated sessions (404), unsupported protocol revisions (400), session-id
//! guessing (256-bit random ids), replay of another stream's events (event ids are checked
//! against the stream they name, within the caller's session), unbounded buffering (event and
//! stream retention caps, session cap → 503), session hijacking by another caller (a session is
//! bound to the principal that opened it; anyone else presenting its id gets 404), and — with an
//! [`Authenticate`] stage — unauthenticated callers (checked right after `Host`/`Origin`, before
//! anything else reads the request).
//! Does not defend against: floods (runtime limits issue).

use super::{Conn, Service};
use crate::host::{host_part, is_loopback_name};
use crate::rpc::Calls;
use axum::body::Body;
use base64::Engine;
use bytes::Bytes;
use futures::future::BoxFuture;
use http::{header, HeaderMap, HeaderValue, Method, Request, Response, StatusCode};
use http_body_util::{BodyExt, Limited};
use parking_lot::{Mutex, RwLock};
use serde_json::Value;
use std::collections::HashMap;
use std::sync::atomic::AtomicU64;
use std::sync::{Arc, OnceLock};
use std::time::{Duration, Instant};
use tokio::sync::mpsc;
use warden_policy::Principal;
use warden_protocol::jsonrpc::{self, Id, Message};
use warden_protocol::version;

mod mrtr;
mod sessions;
mod stateless_pool;
mod streams;

pub use sessions::{Ended, SessionIds};
use streams::Streams;

pub const SESSION_HEADER: &str = "mcp-session-id";
pub const VERSION_HEADER: &str = "mcp-protocol-version";

/// Limits and allow-lists of the HTTP endpoint.
#[derive(Clone, Debug)]
pub struct HttpOptions {
    pub max_body_bytes: usize,
    pub max_json_depth: usize,
    pub read_timeout: Duration,
    pub idle_timeout: Duration,
    pub max_sessions: usize,
    /// Most concurrent sessions of one caller (by binding key).
    pub max_sessions_per_principal: usize,
    pub sse_retry_ms: u64,
    /// How long a request may take and still be answered with one JSON body; past this, or as
    /// soon as a related message is sent first, the answer becomes an SSE stream. 0: always SSE.
    pub sse_grace: Duration,
    pub allowed_hosts: Vec<String>,
    pub allowed_origins: Vec<String>,
    /// Sealed session ids that any replica takes up (`sessions.rs`); `None`: random ids, and
    /// a session lives only in the process that opened it.
    pub session_ids: Option<Arc<SessionIds>>,
}

impl Default for HttpOptions {
    fn default() -> Self {
        HttpOptions {
            max_body_bytes: 4 << 20,
            max_json_depth: jsonrpc::DEFAULT_MAX_DEPTH,
            read_timeout: Duration::from_secs(30),
            idle_timeout: Duration::from_secs(1800),
            max_sessions: 10_000,
            max_sessions_per_principal: 10_000,
            sse_retry_ms: 1000,
            sse_grace: Duration::from_millis(10),
            allowed_hosts: vec![],
            allowed_origins: vec![],
            session_ids: None,
        }
    }
}

/// The authentication stage: a principal, or the refusal to send.
pub trait Authenticate: Send + Sync + 'static {
    /// `req` is the request head; the body is not read before authentication.
    fn authenticate<'a>(
        &'a self,
        req: &'a http::request::Parts,
    ) -> BoxFuture<'a, Result<Arc<Principal>, Response<Body>>>;
}

/// The `/mcp` endpoint for one [`Service`].
pub struct McpEndpoint {
    svc: Arc<dyn Service>,
    opts: HttpOptions,
    /// None: every caller is the anonymous local principal (loopback only, enforced by config).
    auth: Option<Arc<dyn Authenticate>>,
    local: Arc<Principal>,
    sessions: RwLock<HashMap<String, Arc<HttpSession>>>,
    /// Stateless (2026-07-28) callers' pooled sessions: binding key → (session id, what its
    /// upstreams offer). The sessions live in `sessions` (bounded and reaped like any other).
    pooled: Mutex<HashMap<String, (String, Value)>>,
    /// Stateless requests waiting for their client's input (multi round-trip).
    runs: Arc<mrtr::Runs>,
    /// Pooled sessions' change notifications, fanned out to their `subscriptions/listen`
    /// streams: session id → sender (present while a listen is open).
    listens: Mutex<HashMap<String, tokio::sync::broadcast::Sender<Message>>>,
    /// Open listens on each (pooled session, resource URI): the resource is unsubscribed when
    /// the last of them ends, not the first.
    listen_refs: Mutex<HashMap<(String, String), usize>>,
    /// Sessions retired by a reload that still have calls in flight, by session id: the client's
    /// answers to their questions and its cancellations still reach them (`sessions.rs`).
    retired: Mutex<HashMap<String, Vec<Arc<HttpSession>>>>,
    /// Pooled sessions being created, by binding key (one at a time per caller).
    creating: Mutex<HashMap<String, Arc<tokio::sync::Mutex<()>>>>,
    started: Instant,
}

struct HttpSession {
    /// The principal that opened the session ([`Principal::binding_key`]).
    owner: String,
    conn: OnceLock<Arc<Conn>>,
    streams: Arc<Streams>,
    last_seen: AtomicU64,
    /// When the shared store was last asked whether the session was ended elsewhere (ms).
    checked: AtomicU64,
    /// What its sealed id carries (`None`: a random id, or a stateless caller's pooled session).
    sealed: Option<sessions::Sealed>,
    /// The service's configuration generation it was opened under ([`Service::generation`]).
    generation: u64,
}

type HttpResponse = Response<Body>;
/// A refusal: status and a message safe to show.
pub type Reject = (StatusCode, &'static str);

fn rpc_error(status: StatusCode, id: Id, code: i64, msg: &str) -> HttpResponse {
    let body = Message::error(id, code, msg).to_json();
    Response::builder()
        .status(status)
        .header(header::CONTENT_TYPE, "application/json")
        .body(Body::from(body))
        .expect("static response parts")
}

fn plain(status: StatusCode, msg: &'static str) -> HttpResponse {
    rpc_error(status, Id::Null, jsonrpc::SERVER_ERROR, msg)
}

/// A JSON answer to a request: 200, or the status its error carries (429 with `Retry-After`
/// for a limit, 503 when the audit trail cannot take the request, 400 for the stateless
/// revision's -32020/-32021/-32022), decided where the error was made.
fn json_answer(b: Bytes, status: Option<jsonrpc::HttpStatus>) -> HttpResponse {
    let code = status.and_then(|h| StatusCode::from_u16(h.status).ok()).unwrap_or(StatusCode::OK);
    let mut r = Response::builder().status(code).header(header::CONTENT_TYPE, "application/json");
    if let Some(secs) = status.and_then(|h| h.retry_after) {
        r = r.header(header::RETRY_AFTER, secs);
    }
    r.body(Body::from(b)).expect("static response parts")
}

fn json_response(msg: &Message) -> HttpResponse {
    Response::builder()
        .status(StatusCode::OK)
        .header(header::CONTENT_TYPE, "application/json")
        .body(Body::from(msg.to_json()))
        .expect("static response parts")
}

fn sse_response(rx: mpsc::UnboundedReceiver<Bytes>) -> HttpResponse {
    let stream = futures::stream::unfold(rx, |mut rx| async move {
        rx.recv().await.map(|b| (Ok::<_, std::convert::Infallible>(b), rx))
    });
    Response::builder()
        .status(StatusCode::OK)
        .header(header::CONTENT_TYPE, "text/event-stream")
        .header(header::CACHE_CONTROL, "no-cache")
        .body(Body::from_stream(stream))
        .expect("static response parts")
}

fn new_session_id() -> String {
    let bytes: [u8; 32] = rand::random();
    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(bytes)
}

fn header_str<'a>(h: &'a HeaderMap, name: &str) -> Option<&'a str> {
    h.get(name).and_then(|v| v.to_str().ok())
}

fn accepts(h: &HeaderMap, mime: &str) -> bool {
    h.get_all(header::ACCEPT).iter().filter_map(|v| v.to_str().ok()).any(|v| {
        v.split(',').any(|p| {
            let t = p.split(';').next().unwrap_or("").trim();
            t == mime || t == "*/*"
        })
    })
}

impl McpEndpoint {
    pub fn new(svc: Arc<dyn Service>, opts: HttpOptions, auth: Option<Arc<dyn Authenticate>>) -> Arc<Self> {
        let runs = Arc::new(opts.session_ids.as_ref().map(|i| mrtr::Runs::new(i.sealer())).unwrap_or_default());
        let ep = Arc::new(McpEndpoint {
            svc,
            opts,
            auth,
            local: Arc::new(Principal::local()),
            sessions: RwLock::new(HashMap::new()),
            pooled: Mutex::new(HashMap::new()),
            runs,
            listens: Mutex::new(HashMap::new()),
            listen_refs: Mutex::new(HashMap::new()),
            creating: Mutex::new(HashMap::new()),
            retired: Mutex::new(HashMap::new()),
            started: Instant::now(),
        });
        let weak = Arc::downgrade(&ep);
        tokio::spawn(async move {
            let mut tick = tokio::time::interval(Duration::from_secs(15));
            loop {
                tick.tick().await;
                let Some(ep) = weak.upgrade() else { break };
                ep.housekeeping().await;
            }
        });
        ep
    }

    pub fn session_count(&self) -> usize {
        self.sessions.read().len()
    }

    fn now_ms(&self) -> u64 {
        self.started.elapsed().as_millis() as u64
    }

    pub fn check_host(&self, req_headers: &HeaderMap, authority: Option<&str>) -> Result<(), Reject> {
        let host = header_str(req_headers, "host").or(authority);
        let host_ok = match host {
            Some(h) => {
                is_loopback_name(host_part(h)) || self.opts.allowed_hosts.iter().any(|a| a.eq_ignore_ascii_case(h))
            }
            None => false,
        };
        if host_ok {
            Ok(())
        } else {
            Err((StatusCode::FORBIDDEN, "Forbidden: Host header not allowed"))
        }
    }

    /// `Host` and `Origin` checks (DNS rebinding protection).
    pub fn check_host_origin(&self, req_headers: &HeaderMap, authority: Option<&str>) -> Result<(), Reject> {
        self.check_host(req_headers, authority)?;
        if let Some(origin) = req_headers.get(header::ORIGIN) {
            let o = origin.to_str().unwrap_or("");
            let ok = match o.split_once("://") {
                Some((scheme, rest)) if scheme == "http" || scheme == "https" => {
                    is_loopback_name(host_part(rest))
                        || self.opts.allowed_origins.iter().any(|a| a.eq_ignore_ascii_case(o))
                }
                _ => false,
            };
            if !ok {
                return Err((StatusCode::FORBIDDEN, "Forbidden: Origin not allowed"));
            }
        }
        Ok(())
    }

    /// Handle one request to `/mcp`.
    pub async fn handle(self: &Arc<Self>, mut req: Request<Body>) -> HttpResponse {
        let authority = req.uri().authority().map(|a| a.as_str().to_string());
        if let Err((status, msg)) = self.check_host_origin(req.headers(), authority.as_deref()) {
            return plain(status, msg);
        }
        let principal = match &self.auth {
            None => self.local.clone(),
            Some(a) => {
                let (parts, body) = req.into_parts();
                let r = a.authenticate(&parts).await;
                req = Request::from_parts(parts, body);
                match r {
                    Ok(p) => p,
                    Err(refusal) => return refusal,
                }
            }
        };
        let versions: Vec<_> = req.headers().get_all(VERSION_HEADER).iter().collect();
        // A POST of another revision is the stateless path's to judge (-32022 and friends).
        let stateless = matches!(versions.as_slice(), [v] if v.to_str().is_ok_and(|v| !version::is_supported(v)));
        if stateless && *req.method() != Method::POST && !req.headers().contains_key(SESSION_HEADER) {
            // The stateless revision has no GET stream and no session to DELETE.
            let mut r = plain(StatusCode::METHOD_NOT_ALLOWED, "Method Not Allowed");
            r.headers_mut().insert(header::ALLOW, HeaderValue::from_static("POST"));
            return r;
        }
        let version_ok = match versions.as_slice() {
            [] => true,
            [v] => v.to_str().is_ok_and(version::is_supported) || (stateless && *req.method() == Method::POST),
            _ => false,
        };
        if !version_ok {
            return plain(StatusCode::BAD_REQUEST, "Bad Request: unsupported MCP-Protocol-Version");
        }
        match *req.method() {
            Method::POST => self.post(req, principal).await,
            Method::GET => self.get(req, &principal).await,
            Method::DELETE => self.delete(req, &principal).await,
            _ => {
                let mut r = plain(StatusCode::METHOD_NOT_ALLOWED, "Method Not Allowed");
                r.headers_mut().insert(header::ALLOW, HeaderValue::from_static("GET, POST, DELETE"));
                r
            }
        }
    }

    /// Run a request in `session` and answer it: one JSON body, or an SSE stream once it sends
    /// something first or outlasts the grace window (always SSE with a zero window).
    async fn run(
        &self,
        session: &Arc<HttpSession>,
        id: Id,
        method: String,
        params: Option<Value>,
        principal: Arc<Principal>,
        want_sse: bool,
    ) -> HttpResponse {
        let conn = session.conn.get().expect("a session answers once initialized").clone();
        if want_sse && self.opts.sse_grace.is_zero() {
            let (stream, rx) = session.streams.open(Some(id.clone()));
            // The answer streams: the run goes on as a task of its own.
            drop(conn.request(id, method, params, Some(stream), Some(principal)));
            sse_response(rx)
        } else if want_sse {
            let (stream, mut rx, status) = session.streams.open_json(id.clone(), true);
            // Driven here while this handler waits; dropped (a task of its own) once it stops.
            let mut run = conn.request(id, method, params, Some(stream), Some(principal));
            let first = match run.until(tokio::time::timeout(self.opts.sse_grace, rx.recv())).await {
                Ok(first) => first,
                Err(_) => {
                    session.streams.upgrade(stream);
                    run.until(rx.recv()).await
                }
            };
            match first {
                Some(b) if b.first() == Some(&b'{') => json_answer(b, status.get().copied()),
                Some(b) => {
                    let (tx, out) = mpsc::unbounded_channel();
                    let _ = tx.send(b);
                    tokio::spawn(async move {
                        while let Some(b) = rx.recv().await {
                            if tx.send(b).is_err() {
                                break;
                            }
                        }
                    });
                    sse_response(out)
                }
                None => Response::builder().status(StatusCode::ACCEPTED).body(Body::empty()).expect("static"),
            }
        } else {
            let (stream, mut rx, status) = session.streams.open_json(id.clone(), false);
            let mut run = conn.request(id, method, params, Some(stream), Some(principal));
            match run.until(rx.recv()).await {
                Some(b) => json_answer(b, status.get().copied()),
                None => Response::builder().status(StatusCode::ACCEPTED).body(Body::empty()).expect("static"),
            }
        }
    }

    async fn post(self: &Arc<Self>, req: Request<Body>, principal: Arc<Principal>) -> HttpResponse {
        let (parts, body) = req.into_parts();
        let ct = header_str(&parts.headers, "content-type").unwrap_or("");
        if ct.split(';').next().map(str::trim) != Some("application/json") {
            return plain(StatusCode::UNSUPPORTED_MEDIA_TYPE, "Unsupported Media Type: expected application/json");
        }
        let want_sse = accepts(&parts.headers, "text/event-stream");
        if !want_sse && !accepts(&parts.headers, "application/json") {
            return plain(StatusCode::NOT_ACCEPTABLE, "Not Acceptable: accept application/json or text/event-stream");
        }
        let limited = Limited::new(body, self.opts.max_body_bytes);
        let bytes = match tokio::time::timeout(self.opts.read_timeout, limited.collect()).await {
            Err(_) => return plain(StatusCode::REQUEST_TIMEOUT, "Request Timeout: body not received in time"),
            Ok(Err(e)) if e.is::<http_body_util::LengthLimitError>() => {
                return rpc_error(
                    StatusCode::PAYLOAD_TOO_LARGE,
                    Id::Null,
                    jsonrpc::INVALID_REQUEST,
                    "Payload Too Large",
                )
            }
            Ok(Err(_)) => return plain(StatusCode::BAD_REQUEST, "Bad Request: could not read body"),
            Ok(Ok(c)) => c.to_bytes(),
        };
        let msg = match Message::parse(&bytes, self.opts.max_json_depth) {
            Ok(m) => m,
            Err(e) => return rpc_error(StatusCode::BAD_REQUEST, e.id(), e.code(), &e.to_string()),
        };
        // MCP 2026-07-28 requests carry their version in `_meta` and have no session.
        if super::stateless::is_stateless(&msg, &parts.headers) {
            let client = parts.extensions.get::<crate::caller::ClientAddr>().map(|c| c.0);
            return self.stateless(msg, &parts.headers, principal, want_sse, client).await;
        }
        if msg.method() == Some("initialize") {
            let client = parts.extensions.get::<crate::caller::ClientAddr>().map(|c| c.0);
            return self.initialize(msg, &parts.headers, principal, client).await;
        }
        let client = parts.extensions.get::<crate::caller::ClientAddr>().map(|c| c.0);
        let (sid, session) = match self.session_of(&parts.headers, &principal, client).await {
            Ok(s) => s,
            Err((status, msg)) => return plain(status, msg),
        };
        let accepted = || Response::builder().status(StatusCode::ACCEPTED).body(Body::empty()).expect("static");
        match msg {
            Message::Request { id, method, params } => {
                self.run(&session, id, method, params, principal, want_sse).await
            }
            Message::Notification { method, params } => {
                self.conn_for_notification(&sid, &session, &method, params.as_ref()).notification(method, params);
                accepted()
            }
            Message::Response { id, result } => {
                self.conn_asking(&sid, &session, &id).response(id, Ok(result));
                accepted()
            }
            Message::Error { id, error } => {
                self.conn_asking(&sid, &session, &id).response(id, Err(error));
                accepted()
            }
        }
    }

    async fn initialize(
        self: &Arc<Self>,
        msg: Message,
        h: &HeaderMap,
        principal: Arc<Principal>,
        client: Option<std::net::IpAddr>,
    ) -> HttpResponse {
        let Message::Request { id, params, .. } = msg else {
            return plain(StatusCode::BAD_REQUEST, "Bad Request: initialize must be a request");
        };
        if h.contains_key(SESSION_HEADER) {
            return rpc_error(
                StatusCode::BAD_REQUEST,
                id,
                jsonrpc::INVALID_REQUEST,
                "initialize must not carry Mcp-Session-Id",
            );
        }
        let params = params.unwrap_or_else(|| serde_json::json!({}));
        let requested = params.get("protocolVersion").and_then(|v| v.as_str());
        let negotiated = version::negotiate(requested);
        let owner = principal.binding_key();
        let mut sealed_params = params.clone();
        sealed_params["protocolVersion"] = negotiated.into();
        let (sid, sealed) = self.issue_id(&owner, &sealed_params);
        let streams = Arc::new(Streams::new(negotiated >= "2025-11-25", self.opts.sse_retry_ms, false));
        let session = Arc::new(HttpSession {
            owner,
            conn: OnceLock::new(),
            streams: streams.clone(),
            last_seen: AtomicU64::new(self.now_ms()),
            checked: AtomicU64::new(self.now_ms()),
            sealed,
            generation: self.svc.generation(),
        });
        {
            let mut map = self.sessions.write();
            if map.len() >= self.opts.max_sessions {
                return rpc_error(StatusCode::SERVICE_UNAVAILABLE, id, jsonrpc::SERVER_ERROR, "Too many sessions");
            }
            // One caller cannot take every session (and the upstream children they open).
            let own = sessions::owned(&map, &session.owner, &principal);
            if own >= self.opts.max_sessions_per_principal {
                tracing::info!(subject = %principal.subject, sessions = own, "session refused: too many for this caller");
                return rpc_error(
                    StatusCode::TOO_MANY_REQUESTS,
                    id,
                    crate::error::RATE_LIMITED,
                    "Too many sessions for this caller; close one (DELETE) or let one expire",
                );
            }
            map.insert(sid.clone(), session.clone());
        }
        let calls = Arc::new(Calls::new("warden-"));
        let peer = crate::rpc::Peer::new(streams.clone(), calls.clone(), None);
        let origin = super::Origin { session: sid.clone(), client, stateless: false };
        match self.svc.initialize(params, peer, principal, origin).await {
            Ok(init) => {
                let conn = Conn::new(init.session, streams, calls);
                let _ = session.conn.set(conn);
                let mut r = json_response(&Message::Response { id, result: init.result });
                r.headers_mut()
                    .insert(SESSION_HEADER, HeaderValue::from_str(&sid).expect("base64url is visible ASCII"));
                r
            }
            Err(error) => {
                self.sessions.write().remove(&sid);
                // A caller opening sessions too fast gets 429 and when to retry, as for the
                // session cap (the status its error carries); other refusals are JSON-RPC errors.
                let status = error.http;
                json_answer(Bytes::from(Message::Error { id, error }.to_json()), status)
            }
        }
    }

    async fn get(self: &Arc<Self>, req: Request<Body>, principal: &Arc<Principal>) -> HttpResponse {
        if !accepts(req.headers(), "text/event-stream") {
            return plain(StatusCode::NOT_ACCEPTABLE, "Not Acceptable: GET requires Accept: text/event-stream");
        }
        let client = req.extensions().get::<crate::caller::ClientAddr>().map(|c| c.0);
        let (_sid, session) = match self.session_of(req.headers(), principal, client).await {
            Ok(s) => s,
            Err((status, msg)) => return plain(status, msg),
        };
        if let Some(last) = header_str(req.headers(), "last-event-id") {
            if let Some(rx) = session.streams.resume(last) {
                return sse_response(rx);
            }
        }
        match session.streams.open_standalone() {
            Some(rx) => sse_response(rx),
            None => plain(StatusCode::CONFLICT, "Conflict: only one standalone SSE stream per session"),
        }
    }

    async fn delete(self: &Arc<Self>, req: Request<Body>, principal: &Arc<Principal>) -> HttpResponse {
        // A session this replica does not hold is ended without being taken up first.
        if let Some(id) = header_str(req.headers(), SESSION_HEADER).filter(|id| !self.sessions.read().contains_key(*id))
        {
            return match self.end_unheld(id, principal).await {
                Ok(()) => Response::builder().status(StatusCode::OK).body(Body::empty()).expect("static"),
                Err((status, msg)) => plain(status, msg),
            };
        }
        let client = req.extensions().get::<crate::caller::ClientAddr>().map(|c| c.0);
        let (sid, session) = match self.session_of(req.headers(), principal, client).await {
            Ok(s) => s,
            Err((status, msg)) => return plain(status, msg),
        };
        if let Err((status, msg)) = self.end(&sid, &session).await {
            return plain(status, msg);
        }
        Response::builder().status(StatusCode::OK).body(Body::empty()).expect("static")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn host_parsing_and_loopback_names() {
        assert_eq!(host_part("localhost:8080"), "localhost");
        assert_eq!(host_part("[::1]:8080"), "[::1]");
        assert_eq!(host_part("127.0.0.1"), "127.0.0.1");
        assert!(is_loopback_name("LOCALHOST"));
        assert!(is_loopback_name("127.0.0.2"));
        assert!(!is_loopback_name("evil.com"));
        assert!(!is_loopback_name("localhost.evil.com"));
    }

    #[test]
    fn accept_header_parsing() {
        let mut h = HeaderMap::new();
        h.insert(header::ACCEPT, HeaderValue::from_static("application/json;q=0.9, text/event-stream"));
        assert!(accepts(&h, "text/event-stream"));
        assert!(accepts(&h, "application/json"));
        h.insert(header::ACCEPT, HeaderValue::from_static("text/html"));
        assert!(!accepts(&h, "application/json"));
    }
}
