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
use crate::rpc::{Calls, Outbound};
use axum::body::Body;
use base64::Engine;
use bytes::Bytes;
use futures::future::BoxFuture;
use http::{header, HeaderMap, HeaderValue, Method, Request, Response, StatusCode};
use http_body_util::{BodyExt, Limited};
use parking_lot::{Mutex, RwLock};
use serde_json::Value;
use std::collections::{HashMap, VecDeque};
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, OnceLock};
use std::time::{Duration, Instant};
use tokio::sync::mpsc;
use warden_policy::Principal;
use warden_protocol::jsonrpc::{self, Id, Message};
use warden_protocol::{sse, version};

mod mrtr;
mod stateless_pool;

pub const SESSION_HEADER: &str = "mcp-session-id";
pub const VERSION_HEADER: &str = "mcp-protocol-version";
const MAX_EVENTS_PER_STREAM: usize = 1024;
const MAX_DONE_STREAMS: usize = 16;
/// Bytes of events kept for replay (`Last-Event-ID`) per stream and per session: past them the
/// oldest events go (a stream's newest event, its answer, is always kept), and finished streams
/// are forgotten oldest first. A session holds at most the session bound plus the newest event
/// of each of its open streams.
const MAX_REPLAY_BYTES_PER_STREAM: usize = 4 << 20;
const MAX_REPLAY_BYTES_PER_SESSION: usize = 16 << 20;

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
}

/// All SSE streams of one session; the session's [`Outbound`].
struct Streams {
    inner: Mutex<StreamsInner>,
    /// Bytes of events kept for replay in all streams (changed under `inner`'s lock).
    retained: AtomicUsize,
    priming: bool,
    retry_ms: u64,
    /// A stateless caller's pooled session: nothing that names no request goes out as a
    /// request (its questions are multi round-trips; the standalone stream is a listen's).
    pooled: bool,
}

#[derive(Default)]
struct StreamsInner {
    next: u64,
    map: HashMap<u64, Stream>,
    standalone: Option<u64>,
    done_order: VecDeque<u64>,
}

struct Stream {
    /// The request this stream answers (None: the standalone GET stream).
    request: Option<Id>,
    events: VecDeque<(u64, Bytes)>,
    /// Bytes in `events`.
    bytes: usize,
    next_seq: u64,
    live: Option<mpsc::UnboundedSender<Bytes>>,
    done: bool,
    /// JSON mode that turns into SSE when anything but the answer is sent first.
    lazy: bool,
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

/// A JSON answer to a request: 200; or, with the same JSON-RPC body, 429 with `Retry-After` for
/// a rate-limit error and 503 for a request refused because the audit trail cannot take it.
fn json_answer(b: Bytes) -> HttpResponse {
    let special = special_status(&b);
    let mut r = Response::builder()
        .status(special.map_or(StatusCode::OK, |s| s.0))
        .header(header::CONTENT_TYPE, "application/json");
    if let Some((_, secs)) = special {
        r = r.header(header::RETRY_AFTER, secs);
    }
    r.body(Body::from(b)).expect("static response parts")
}

/// The HTTP status and `Retry-After` of a serialized rate-limit or audit-unavailable error;
/// `None` for any other message.
fn special_status(b: &[u8]) -> Option<(StatusCode, u64)> {
    static MARKERS: std::sync::LazyLock<[String; 2]> = std::sync::LazyLock::new(|| {
        [crate::error::RATE_LIMITED, crate::error::AUDIT_UNAVAILABLE].map(|c| format!("\"code\":{c}"))
    });
    // The code comes first in Warden's own error objects; large results are never scanned.
    let head = &b[..b.len().min(256)];
    if !MARKERS.iter().any(|m| head.windows(m.len()).any(|w| w == m.as_bytes())) {
        return None;
    }
    let v: serde_json::Value = serde_json::from_slice(b).ok()?;
    match v["error"]["code"].as_i64()? {
        crate::error::RATE_LIMITED => {
            v["error"]["data"]["retryAfterSeconds"].as_u64().map(|s| (StatusCode::TOO_MANY_REQUESTS, s))
        }
        crate::error::AUDIT_UNAVAILABLE => Some((StatusCode::SERVICE_UNAVAILABLE, 1)),
        _ => None,
    }
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
        let ep = Arc::new(McpEndpoint {
            svc,
            opts,
            auth,
            local: Arc::new(Principal::local()),
            sessions: RwLock::new(HashMap::new()),
            pooled: Mutex::new(HashMap::new()),
            runs: Arc::new(mrtr::Runs::default()),
            listens: Mutex::new(HashMap::new()),
            creating: Mutex::new(HashMap::new()),
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

    /// Close idle sessions; keep standalone streams alive with a comment (and notice dead ones).
    async fn housekeeping(&self) {
        let now = self.now_ms();
        let idle_ms = self.opts.idle_timeout.as_millis() as u64;
        let mut expired = Vec::new();
        {
            let sessions = self.sessions.read();
            for (id, s) in sessions.iter() {
                let live = s.streams.keepalive();
                let busy = s.conn.get().map(|c| c.has_inflight()).unwrap_or(false);
                if !live && !busy && now.saturating_sub(s.last_seen.load(Ordering::Relaxed)) > idle_ms {
                    expired.push(id.clone());
                }
            }
        }
        for id in expired {
            tracing::info!("closing idle session");
            self.terminate(&id).await;
        }
    }

    async fn terminate(&self, id: &str) -> bool {
        let s = self.sessions.write().remove(id);
        match s {
            Some(s) => {
                s.streams.close_all();
                if let Some(c) = s.conn.get() {
                    c.close().await;
                }
                true
            }
            None => false,
        }
    }

    /// Close every session (shutdown).
    pub async fn shutdown(&self) {
        let ids: Vec<String> = self.sessions.read().keys().cloned().collect();
        for id in ids {
            self.terminate(&id).await;
        }
    }

    /// The `Host` check alone (DNS rebinding protection for the OAuth endpoints, which browsers
    /// reach from other origins).
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
            Method::GET => self.get(req, &principal),
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
            conn.request(id, method, params, Some(stream), Some(principal));
            sse_response(rx)
        } else if want_sse {
            let (stream, mut rx) = session.streams.open_json(id.clone(), true);
            conn.request(id, method, params, Some(stream), Some(principal));
            let first = match tokio::time::timeout(self.opts.sse_grace, rx.recv()).await {
                Ok(first) => first,
                Err(_) => {
                    session.streams.upgrade(stream);
                    rx.recv().await
                }
            };
            match first {
                Some(b) if b.first() == Some(&b'{') => json_answer(b),
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
            let (stream, mut rx) = session.streams.open_json(id.clone(), false);
            conn.request(id, method, params, Some(stream), Some(principal));
            match rx.recv().await {
                Some(b) => json_answer(b),
                None => Response::builder().status(StatusCode::ACCEPTED).body(Body::empty()).expect("static"),
            }
        }
    }

    fn session_of(&self, h: &HeaderMap, who: &Principal) -> Result<(String, Arc<HttpSession>), Reject> {
        let Some(id) = header_str(h, SESSION_HEADER) else {
            return Err((StatusCode::BAD_REQUEST, "Bad Request: Mcp-Session-Id header is required"));
        };
        match self.sessions.read().get(id) {
            Some(s) if s.conn.get().is_some() && s.owner == who.binding_key() => {
                s.last_seen.store(self.now_ms(), Ordering::Relaxed);
                Ok((id.to_string(), s.clone()))
            }
            _ => Err((StatusCode::NOT_FOUND, "Session not found")),
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
            let client = parts.extensions.get::<crate::listener::ClientAddr>().map(|c| c.0);
            return self.stateless(msg, &parts.headers, principal, want_sse, client).await;
        }
        if msg.method() == Some("initialize") {
            let client = parts.extensions.get::<crate::listener::ClientAddr>().map(|c| c.0);
            return self.initialize(msg, &parts.headers, principal, client).await;
        }
        let (_sid, session) = match self.session_of(&parts.headers, &principal) {
            Ok(s) => s,
            Err((status, msg)) => return plain(status, msg),
        };
        let conn = session.conn.get().expect("checked by session_of").clone();
        match msg {
            Message::Request { id, method, params } => {
                self.run(&session, id, method, params, principal, want_sse).await
            }
            Message::Notification { method, params } => {
                conn.notification(method, params);
                Response::builder().status(StatusCode::ACCEPTED).body(Body::empty()).expect("static")
            }
            Message::Response { id, result } => {
                conn.response(id, Ok(result));
                Response::builder().status(StatusCode::ACCEPTED).body(Body::empty()).expect("static")
            }
            Message::Error { id, error } => {
                conn.response(id, Err(error));
                Response::builder().status(StatusCode::ACCEPTED).body(Body::empty()).expect("static")
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
        let sid = new_session_id();
        let streams = Arc::new(Streams {
            inner: Mutex::new(StreamsInner::default()),
            retained: AtomicUsize::new(0),
            priming: negotiated >= "2025-11-25",
            retry_ms: self.opts.sse_retry_ms,
            pooled: false,
        });
        let session = Arc::new(HttpSession {
            owner: principal.binding_key(),
            conn: OnceLock::new(),
            streams: streams.clone(),
            last_seen: AtomicU64::new(self.now_ms()),
        });
        {
            let mut map = self.sessions.write();
            if map.len() >= self.opts.max_sessions {
                return rpc_error(StatusCode::SERVICE_UNAVAILABLE, id, jsonrpc::SERVER_ERROR, "Too many sessions");
            }
            // One caller cannot take every session (and the upstream children they open). The
            // anonymous loopback caller is everyone on this machine: `max_sessions` bounds it.
            let own = match principal.method {
                warden_policy::AuthMethod::Local => 0,
                _ => map.values().filter(|s| s.owner == session.owner).count(),
            };
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
        let origin = super::Origin { session: sid.clone(), client };
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
                // session cap; other refusals are JSON-RPC errors.
                let retry = (error.code == crate::error::RATE_LIMITED)
                    .then(|| error.data.as_ref().and_then(|d| d["retryAfterSeconds"].as_u64()).unwrap_or(1));
                let mut r = json_response(&Message::Error { id, error });
                *r.status_mut() = if retry.is_some() { StatusCode::TOO_MANY_REQUESTS } else { StatusCode::OK };
                if let Some(secs) = retry {
                    r.headers_mut().insert(header::RETRY_AFTER, HeaderValue::from(secs));
                }
                r
            }
        }
    }

    fn get(self: &Arc<Self>, req: Request<Body>, principal: &Principal) -> HttpResponse {
        if !accepts(req.headers(), "text/event-stream") {
            return plain(StatusCode::NOT_ACCEPTABLE, "Not Acceptable: GET requires Accept: text/event-stream");
        }
        let (_sid, session) = match self.session_of(req.headers(), principal) {
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

    async fn delete(self: &Arc<Self>, req: Request<Body>, principal: &Principal) -> HttpResponse {
        let (sid, _) = match self.session_of(req.headers(), principal) {
            Ok(s) => s,
            Err((status, msg)) => return plain(status, msg),
        };
        self.terminate(&sid).await;
        Response::builder().status(StatusCode::OK).body(Body::empty()).expect("static")
    }
}

impl Streams {
    fn event_id(stream: u64, seq: u64) -> String {
        format!("{stream}-{seq}")
    }

    fn alloc(&self, inner: &mut StreamsInner, request: Option<Id>) -> u64 {
        inner.next += 1;
        let s = inner.next;
        inner.map.insert(
            s,
            Stream { request, events: VecDeque::new(), bytes: 0, next_seq: 1, live: None, done: false, lazy: false },
        );
        s
    }

    /// A new SSE stream answering `request` (POST) — with a priming event when the session's
    /// revision supports resumption.
    fn open(&self, request: Option<Id>) -> (u64, mpsc::UnboundedReceiver<Bytes>) {
        let (tx, rx) = mpsc::unbounded_channel();
        let mut inner = self.inner.lock();
        let s = self.alloc(&mut inner, request);
        if self.priming {
            let _ = tx.send(Bytes::from(sse::encode(Some(&Self::event_id(s, 0)), "", Some(self.retry_ms))));
        }
        inner.map.get_mut(&s).expect("just inserted").live = Some(tx);
        (s, rx)
    }

    /// A stream whose single payload is the JSON response (Accept without text/event-stream):
    /// related messages that arrive first go to the standalone stream instead.
    fn open_json(&self, request: Id, lazy: bool) -> (u64, mpsc::UnboundedReceiver<Bytes>) {
        let (tx, rx) = mpsc::unbounded_channel();
        let mut inner = self.inner.lock();
        let s = self.alloc(&mut inner, Some(request));
        let st = inner.map.get_mut(&s).expect("just inserted");
        st.live = Some(tx);
        st.next_seq = u64::MAX; // marks JSON mode
        st.lazy = lazy;
        (s, rx)
    }

    /// Turn a lazy JSON-mode stream into an SSE stream (priming event first).
    fn upgrade(&self, s: u64) {
        let mut inner = self.inner.lock();
        if let Some(st) = inner.map.get_mut(&s) {
            self.upgrade_locked(st, s);
        }
    }

    fn upgrade_locked(&self, st: &mut Stream, s: u64) {
        if st.lazy && st.next_seq == u64::MAX && !st.done {
            st.next_seq = 1;
            st.lazy = false;
            if self.priming {
                if let Some(l) = &st.live {
                    let _ = l.send(Bytes::from(sse::encode(Some(&Self::event_id(s, 0)), "", Some(self.retry_ms))));
                }
            }
        }
    }

    fn open_standalone(&self) -> Option<mpsc::UnboundedReceiver<Bytes>> {
        self.attach_standalone(true)
    }

    /// Attach the standalone stream; with `backlog`, what queued while none was attached is
    /// delivered first (a 2025 GET), else dropped (a 2026 `subscriptions/listen` starts now).
    fn attach_standalone(&self, backlog: bool) -> Option<mpsc::UnboundedReceiver<Bytes>> {
        let mut inner = self.inner.lock();
        if let Some(s) = inner.standalone {
            if inner.map.get(&s).map(|st| st.live.as_ref().is_some_and(|l| !l.is_closed())).unwrap_or(false) {
                return None;
            }
        }
        let (tx, rx) = mpsc::unbounded_channel();
        let s = match inner.standalone {
            Some(s) if inner.map.contains_key(&s) => s,
            _ => {
                let s = self.alloc(&mut inner, None);
                inner.standalone = Some(s);
                s
            }
        };
        if self.priming {
            let _ = tx.send(Bytes::from(sse::encode(Some(&Self::event_id(s, 0)), "", Some(self.retry_ms))));
        }
        // undelivered messages queued while no standalone stream was attached
        let st = inner.map.get_mut(&s).expect("exists");
        self.retained.fetch_sub(std::mem::take(&mut st.bytes), Ordering::Relaxed);
        for (_, ev) in st.events.drain(..) {
            if backlog {
                let _ = tx.send(ev);
            }
        }
        st.live = Some(tx);
        Some(rx)
    }

    /// Resume the stream named by `last` after that event; None if the id names no stream of
    /// this session.
    fn resume(&self, last: &str) -> Option<mpsc::UnboundedReceiver<Bytes>> {
        let (s, seq) = last.split_once('-')?;
        let (s, seq): (u64, u64) = (s.parse().ok()?, seq.parse().ok()?);
        let mut inner = self.inner.lock();
        let standalone = inner.standalone == Some(s);
        let st = inner.map.get_mut(&s)?;
        if st.next_seq == u64::MAX || (standalone && st.live.as_ref().is_some_and(|l| !l.is_closed())) {
            return None;
        }
        let (tx, rx) = mpsc::unbounded_channel();
        for (n, ev) in st.events.iter() {
            if *n > seq {
                let _ = tx.send(ev.clone());
            }
        }
        if !st.done {
            st.live = Some(tx);
        }
        Some(rx)
    }

    /// Send a keep-alive comment on live streams; true if any stream is live.
    fn keepalive(&self) -> bool {
        let mut inner = self.inner.lock();
        let mut any = false;
        for st in inner.map.values_mut() {
            if let Some(l) = &st.live {
                if st.next_seq != u64::MAX && l.send(Bytes::from_static(b": keep-alive\n\n")).is_err() {
                    st.live = None;
                } else {
                    any = true;
                }
            }
        }
        any
    }

    fn close_all(&self) {
        let mut inner = self.inner.lock();
        inner.map.clear();
        inner.standalone = None;
        self.retained.store(0, Ordering::Relaxed);
    }

    fn push(&self, st: &mut Stream, s: u64, json: String) -> bool {
        if st.next_seq == u64::MAX {
            // JSON mode: only the response itself is carried.
            return match st.live.take() {
                Some(l) => l.send(Bytes::from(json)).is_ok(),
                None => false,
            };
        }
        let seq = st.next_seq;
        st.next_seq += 1;
        let ev = Bytes::from(sse::encode(Some(&Self::event_id(s, seq)), &json, None));
        if let Some(l) = &st.live {
            if l.send(ev.clone()).is_err() {
                st.live = None;
            }
        }
        st.bytes += ev.len();
        let total = self.retained.fetch_add(ev.len(), Ordering::Relaxed) + ev.len();
        st.events.push_back((seq, ev));
        // Oldest first; the newest event (an answer) always stays.
        let mut dropped = 0;
        while st.events.len() > 1
            && (st.events.len() > MAX_EVENTS_PER_STREAM
                || st.bytes > MAX_REPLAY_BYTES_PER_STREAM
                || total - dropped > MAX_REPLAY_BYTES_PER_SESSION)
        {
            let (_, old) = st.events.pop_front().expect("more than one");
            st.bytes -= old.len();
            dropped += old.len();
        }
        self.retained.fetch_sub(dropped, Ordering::Relaxed);
        true
    }

    fn finish(&self, inner: &mut StreamsInner, s: u64) {
        if let Some(st) = inner.map.get_mut(&s) {
            st.done = true;
            st.live = None;
        }
        inner.done_order.push_back(s);
        while inner.done_order.len() > MAX_DONE_STREAMS
            || (inner.done_order.len() > 1 && self.retained.load(Ordering::Relaxed) > MAX_REPLAY_BYTES_PER_SESSION)
        {
            if let Some(old) = inner.done_order.pop_front() {
                if let Some(gone) = inner.map.remove(&old) {
                    self.retained.fetch_sub(gone.bytes, Ordering::Relaxed);
                }
            }
        }
    }
}

impl Outbound for Streams {
    fn send(&self, stream: Option<u64>, msg: Message) -> bool {
        let mut inner = self.inner.lock();
        let closes = |st: &Stream| match (&msg, &st.request) {
            (Message::Response { id, .. } | Message::Error { id, .. }, Some(r)) => id == r,
            _ => false,
        };
        // 1. the stream of the related request, if it is still open (JSON-mode streams carry
        //    only their response)
        if let Some(s) = stream {
            if let Some(st) = inner.map.get_mut(&s) {
                if st.lazy && !closes(st) {
                    self.upgrade_locked(st, s);
                }
                if !st.done && (st.next_seq != u64::MAX || closes(st)) {
                    let done = closes(st);
                    let ok = self.push(st, s, msg.to_json());
                    if done {
                        self.finish(&mut inner, s);
                    }
                    return ok;
                }
            }
            if matches!(msg, Message::Response { .. } | Message::Error { .. }) {
                return false;
            }
        }
        if self.pooled && matches!(msg, Message::Request { .. }) {
            return false;
        }
        // 2. the standalone stream if live, 3. any open SSE request stream (newest first),
        // 4. queue on the standalone stream for when it (re)attaches
        let json = msg.to_json();
        if let Some(s) = inner.standalone {
            if let Some(st) = inner.map.get_mut(&s) {
                if st.live.as_ref().is_some_and(|l| !l.is_closed()) {
                    return self.push(st, s, json);
                }
            }
        }
        // (a request still in its JSON grace window counts: it is turned into an SSE stream, as
        // for a message related to it; a request whose client accepts JSON only cannot carry it)
        let newest_open = inner
            .map
            .iter()
            .filter(|(_, st)| {
                !st.done && st.request.is_some() && (st.next_seq != u64::MAX || st.lazy) && st.live.is_some()
            })
            .map(|(s, _)| *s)
            .max();
        if let Some(s) = newest_open {
            let st = inner.map.get_mut(&s).expect("found above");
            self.upgrade_locked(st, s);
            return self.push(st, s, json);
        }
        if matches!(msg, Message::Request { .. }) {
            return false;
        }
        let s = match inner.standalone {
            Some(s) => s,
            None => {
                let s = self.alloc(&mut inner, None);
                inner.standalone = Some(s);
                s
            }
        };
        let st = inner.map.get_mut(&s).expect("exists");
        self.push(st, s, json)
    }

    fn close_stream(&self, stream: u64) {
        let mut inner = self.inner.lock();
        if inner.map.get(&stream).is_some_and(|st| st.request.is_some() && !st.done) {
            self.finish(&mut inner, stream);
        }
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

    #[test]
    fn resumption_replays_only_the_named_stream_after_the_event() {
        let st = streams();
        let (a, _rxa) = st.open(Some(Id::Num(1)));
        let (b, _rxb) = st.open(Some(Id::Num(2)));
        let note = |n: i64| Message::Notification {
            method: "notifications/progress".into(),
            params: Some(serde_json::json!({"n": n})),
        };
        assert!(st.send(Some(a), note(1)));
        assert!(st.send(Some(b), note(2)));
        assert!(st.send(Some(a), note(3)));
        let mut rx = st.resume(&format!("{a}-1")).unwrap();
        let got = rx.try_recv().unwrap();
        assert!(std::str::from_utf8(&got).unwrap().contains("\"n\":3"));
        assert!(rx.try_recv().is_err(), "no event of stream b, nothing before the id");
        assert!(st.resume("999-0").is_none());
        assert!(st.resume("garbage").is_none());
    }

    /// A server request with no related stream (a stdio upstream cannot say which call it
    /// belongs to) while the only request stream is still in its JSON grace window: it goes on
    /// that stream, turned into SSE, not refused ("no open stream"; a flaky test found it).
    #[test]
    fn an_unrelated_server_request_upgrades_a_request_stream_in_its_grace_window() {
        let st = streams();
        let (a, mut rx) = st.open_json(Id::Num(1), true);
        let req = Message::Request { id: Id::Str("w1".into()), method: "sampling/createMessage".into(), params: None };
        assert!(st.send(None, req), "delivered");
        let priming = rx.try_recv().unwrap();
        assert!(std::str::from_utf8(&priming).unwrap().starts_with(&format!("id: {a}-0")), "{priming:?}");
        assert!(std::str::from_utf8(&rx.try_recv().unwrap()).unwrap().contains("sampling/createMessage"));
        // A JSON-only request (not lazy) cannot carry it.
        let st = streams();
        let (_b, _rxb) = st.open_json(Id::Num(2), false);
        let req = Message::Request { id: Id::Str("w2".into()), method: "sampling/createMessage".into(), params: None };
        assert!(!st.send(None, req));
    }

    fn streams() -> Streams {
        Streams {
            inner: Mutex::new(StreamsInner::default()),
            retained: AtomicUsize::new(0),
            priming: true,
            retry_ms: 500,
            pooled: false,
        }
    }

    /// Issue 19, finding 13: events kept for replay are bounded in bytes, per stream and per
    /// session, whatever their count; a stream's newest event stays replayable.
    #[test]
    fn replay_is_bounded_in_bytes() {
        let st = streams();
        let big = |n: i64| Message::Notification {
            method: "notifications/message".into(),
            params: Some(serde_json::json!({"n": n, "data": "x".repeat(512 << 10)})),
        };
        let (a, _rxa) = st.open(Some(Id::Num(1)));
        for n in 0..40 {
            assert!(st.send(Some(a), big(n)));
        }
        let kept = st.inner.lock().map[&a].bytes;
        assert!(kept <= MAX_REPLAY_BYTES_PER_STREAM, "{kept}");
        assert!(kept > MAX_REPLAY_BYTES_PER_STREAM / 2);
        // Many streams: the session's total stays bounded.
        for i in 2..40 {
            let (s, _rx) = st.open(Some(Id::Num(i)));
            for n in 0..4 {
                st.send(Some(s), big(n));
            }
            st.send(Some(s), Message::Response { id: Id::Num(i), result: serde_json::json!({}) });
        }
        let total = st.retained.load(Ordering::Relaxed);
        let counted: usize = st.inner.lock().map.values().map(|s| s.bytes).sum();
        assert_eq!(total, counted, "the running total is exact");
        assert!(total <= MAX_REPLAY_BYTES_PER_SESSION + MAX_REPLAY_BYTES_PER_STREAM, "{total}");
        // The newest event of the first stream is still there to replay.
        let mut rx = st.resume(&format!("{a}-39")).unwrap();
        assert!(std::str::from_utf8(&rx.try_recv().unwrap()).unwrap().contains("\"n\":39"));
    }
}
