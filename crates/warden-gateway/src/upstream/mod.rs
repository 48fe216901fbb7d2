//! Warden as a client of one upstream MCP server: one connection (a stdio child or a Streamable
//! HTTP session), its `initialize` handshake (or, for a 2026-07-28 server, `server/discover`:
//! `stateless.rs`, with the translation rules in `modern.rs`), calls with timeouts and
//! cancellation, and routing of what the server sends on its own (notifications,
//! sampling/elicitation/roots requests) to the downstream peer of the request it belongs to.
//! `spec.rs` is what a connection is opened with, `listing.rs` reads listings whole, and
//! `shared.rs` lets a stateless upstream's one connection serve many sessions.
//!
//! Defends against: an upstream that crashes, hangs, answers ids it was never asked, or writes
//! garbage (each pending call fails with a clear error; garbage is logged and skipped), and
//! against an upstream speaking an unsupported protocol revision (connection refused).
//! Does not defend against: hostile content in well-formed upstream messages (response policy).

pub mod builtin;
mod credential;
pub mod exposure;
mod h1;
pub mod http;
pub mod link;
mod listing;
pub mod modern;
pub mod oauth;
mod outbound;
pub mod program;
pub mod shared;
mod spec;
pub mod stateless;
pub mod stdio;
pub mod user;

pub use listing::{list_definitions, Definitions, Listing, MAX_PAGES};
pub use spec::Spec;

use crate::config::{self, Transport as Kind};
use crate::rpc::{cancelled_notification, CallResult, Calls, CancelGuard, Peer};
use parking_lot::Mutex;
use serde_json::{json, Value};
use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, OnceLock, Weak};
use std::time::Duration;
use warden_protocol::jsonrpc::{self, ErrorObject, Id, Message};
use warden_protocol::version;

/// What a transport reports to its connection.
pub enum Incoming {
    /// A message; `related` is the id of Warden's request whose response stream carried it.
    Message { msg: Message, related: Option<Id> },
    /// The transport is gone (child exited, session expired).
    Closed(String),
}

/// Where a transport hands what it reads. Called on the reading task itself (no extra hop): the
/// connection's dispatch is synchronous and spawns only for work that waits.
#[derive(Clone)]
pub struct IncomingTx(Arc<OnceLock<Weak<Conn>>>);

impl IncomingTx {
    /// Deliver; false once the connection is gone.
    pub fn send(&self, item: Incoming) -> bool {
        match self.0.get().and_then(Weak::upgrade) {
            Some(conn) => {
                dispatch(&conn, item);
                true
            }
            None => false,
        }
    }
}

enum Transport {
    Stdio(Box<stdio::StdioTransport>),
    Http(Arc<http::HttpTransport>),
    Builtin(builtin::BuiltinTransport),
}

impl Transport {
    async fn send(&self, msg: Message) -> Result<(), String> {
        match self {
            Transport::Stdio(t) => t.send(&msg),
            Transport::Http(t) => t.send(msg).await,
            Transport::Builtin(t) => t.send(msg),
        }
    }
    async fn close(&self) {
        match self {
            Transport::Stdio(t) => t.close().await,
            Transport::Http(t) => t.close().await,
            Transport::Builtin(t) => t.close(),
        }
    }
}

/// Called for every message the server sends on its own: the connection, the message, and the
/// downstream peer of the request it relates to (if known).
pub type ServerHandler = Arc<dyn Fn(&Arc<Conn>, Message, Option<Peer>) + Send + Sync>;

/// What the upstream said in `initialize`.
#[derive(Clone, Debug)]
pub struct ServerInit {
    pub protocol_version: String,
    pub capabilities: Value,
    pub server_info: Value,
    pub instructions: Option<String>,
}

/// One live connection to an upstream.
pub struct Conn {
    pub name: String,
    transport: Transport,
    calls: Arc<Calls<Option<Peer>>>,
    handler: ServerHandler,
    alive: AtomicBool,
    init: Mutex<Option<ServerInit>>,
    call_timeout: Duration,
    /// Tasks answering the server's own requests, by the server's request id (so the server's
    /// `notifications/cancelled` can stop them).
    serving: Mutex<HashMap<Id, tokio::task::AbortHandle>>,
    /// A stateless (2026-07-28) upstream: set once `server/discover` answered.
    modern: OnceLock<modern::Modern>,
    /// A modern upstream's questions put to the client, waiting for the answer, by the id
    /// Warden gave them (they take the path of a 2025 server's own requests).
    asking: Mutex<HashMap<Id, tokio::sync::oneshot::Sender<CallResult>>>,
    /// Ids Warden makes up (questions, stdio listen requests).
    made_ids: AtomicU64,
    /// stdio: the id of the open `subscriptions/listen` request.
    listening: Mutex<Option<Id>>,
    /// The sessions using this connection (`shared.rs`), when it was opened for them.
    callers: Mutex<HashMap<u64, Arc<shared::Caller>>>,
    /// A modern upstream: the progress token Warden gave a call → the client's own.
    progress_alias: Mutex<HashMap<String, Value>>,
    me: Weak<Conn>,
}

/// How long `protocol = "auto"` waits for an answer to `server/discover` before it tries
/// `initialize` (a 2025 server may ignore a request before the handshake).
const PROBE_TIMEOUT: Duration = Duration::from_secs(5);

/// Longest wait for an upstream to take a notification or an answer to its own request (an HTTP
/// upstream that never answers the POST must not hold a task and a socket forever).
const SEND_TIMEOUT: Duration = Duration::from_secs(30);

/// How long a server found to speak only 2025 is not probed again (it may be upgraded).
pub const DETECTED_TTL: Duration = Duration::from_secs(600);

fn err(code: i64, msg: impl Into<String>) -> ErrorObject {
    ErrorObject::new(code, msg)
}

impl Conn {
    /// Connect and complete `initialize` with `init_params` (protocolVersion, capabilities,
    /// clientInfo), within the spec's connect timeout.
    pub async fn connect(
        spec: &Spec,
        init_params: Value,
        handler: ServerHandler,
        client: &reqwest::Client,
    ) -> Result<Arc<Conn>, String> {
        Conn::open(spec, init_params, handler, None, client).await
    }

    /// [`Conn::connect`] for a session, its first caller (`shared.rs`): a stateless upstream's
    /// connection may take more callers later.
    /// `principal` is whom the connection acts for, where the upstream takes each caller's
    /// identity (`[upstream.oauth] mode = "exchange"`).
    pub async fn connect_as(
        spec: &Spec,
        init_params: Value,
        caller: Arc<shared::Caller>,
        principal: &warden_policy::Principal,
        client: &reqwest::Client,
    ) -> Result<Arc<Conn>, String> {
        Conn::open(spec, init_params, shared::fan_out_handler(), Some((caller, principal)), client).await
    }

    /// Which credential this connection presents to its upstream, for the audit record.
    pub fn credential(&self) -> Option<String> {
        match &self.transport {
            Transport::Http(t) => t.credential(),
            _ => None,
        }
    }

    /// The latest request's caller: a connection acting for a caller uses its freshest token.
    pub fn on_behalf_of(&self, p: &warden_policy::Principal) {
        if let Transport::Http(t) = &self.transport {
            t.offer(p);
        }
    }

    async fn open(
        spec: &Spec,
        init_params: Value,
        handler: ServerHandler,
        first: Option<(Arc<shared::Caller>, &warden_policy::Principal)>,
        client: &reqwest::Client,
    ) -> Result<Arc<Conn>, String> {
        let cell = Arc::new(OnceLock::new());
        let tx = IncomingTx(cell.clone());
        let (first, principal) = first.unzip();
        let transport = match spec.kind {
            Kind::Stdio => Transport::Stdio(Box::new(stdio::StdioTransport::spawn(spec, tx)?)),
            Kind::Http => Transport::Http(http::HttpTransport::new(spec, client.clone(), tx, principal)),
            Kind::Builtin => Transport::Builtin(builtin::BuiltinTransport::new(spec, tx)?),
        };
        let conn = Arc::new_cyclic(|me| Conn {
            name: spec.name.clone(),
            transport,
            calls: Arc::new(Calls::new("")),
            handler,
            alive: AtomicBool::new(true),
            init: Mutex::new(None),
            call_timeout: spec.call_timeout,
            serving: Mutex::new(HashMap::new()),
            modern: OnceLock::new(),
            asking: Mutex::new(HashMap::new()),
            made_ids: AtomicU64::new(0),
            listening: Mutex::new(None),
            callers: Mutex::new(first.into_iter().map(|c| (c.side.id, c)).collect()),
            progress_alias: Mutex::new(HashMap::new()),
            me: me.clone(),
        });
        let _ = cell.set(Arc::downgrade(&conn));
        let handshake = async {
            use config::UpstreamProtocol as P;
            let probe = match spec.protocol {
                P::Stateless(_) => true,
                P::Session(_) => false,
                P::Auto => !matches!(*spec.detected.lock(), Some((false, at)) if at.elapsed() < DETECTED_TTL),
            };
            if probe {
                let m = modern::Modern::new(&init_params);
                let wait = PROBE_TIMEOUT.min(spec.connect_timeout / 2);
                let found = conn.discover(&m, (spec.protocol == P::Auto).then_some(wait)).await;
                match found {
                    Ok(init) => {
                        *conn.init.lock() = Some(init);
                        let _ = conn.modern.set(m);
                        if spec.protocol == P::Auto {
                            *spec.detected.lock() = Some((true, std::time::Instant::now()));
                        }
                        conn.relisten().await;
                        return Ok(());
                    }
                    Err(e) if spec.protocol != P::Auto => return Err(e),
                    Err(e) if !conn.is_alive() => {
                        return Err(format!("{e}; the server closed (set protocol to its revision to skip the probe)"))
                    }
                    Err(e) => {
                        tracing::debug!(upstream = %spec.name, error = %e, "no 2026 answer; trying the 2025 handshake");
                        if let Transport::Http(t) = &conn.transport {
                            t.set_modern(false);
                        }
                    }
                }
            }
            let mut init_params = init_params;
            if let P::Session(v) = spec.protocol {
                init_params["protocolVersion"] = v.into();
            }
            let result = conn
                .call_once("initialize", Some(init_params), None)
                .await
                .map_err(|e| format!("initialize failed: {e}"))?;
            let v = result.get("protocolVersion").and_then(Value::as_str).unwrap_or("");
            if !version::is_supported(v) {
                return Err(format!("upstream speaks unsupported protocol revision {v:?}"));
            }
            if spec.protocol == P::Auto {
                *spec.detected.lock() = Some((false, std::time::Instant::now()));
            }
            let init = ServerInit {
                protocol_version: v.to_string(),
                capabilities: result.get("capabilities").cloned().unwrap_or_else(|| json!({})),
                server_info: result.get("serverInfo").cloned().unwrap_or(Value::Null),
                instructions: result.get("instructions").and_then(Value::as_str).map(str::to_string),
            };
            if let Transport::Http(t) = &conn.transport {
                t.set_protocol_version(&init.protocol_version);
            }
            *conn.init.lock() = Some(init);
            conn.notify("notifications/initialized", None).await;
            if let Transport::Http(t) = &conn.transport {
                t.start_standalone_stream();
            }
            Ok(())
        };
        match tokio::time::timeout(spec.connect_timeout, handshake).await {
            Ok(Ok(())) => Ok(conn),
            Ok(Err(e)) => {
                // A sandboxed server that dies at start: say what the sandbox refused it.
                let advice = match &conn.transport {
                    Transport::Stdio(t) => t.sandbox_advice(spec).await,
                    _ => None,
                };
                conn.close().await;
                Err(match advice {
                    Some(a) => format!("{e}; {a}"),
                    None => e,
                })
            }
            Err(_) => {
                conn.close().await;
                Err(format!("no answer to initialize within {:?}", spec.connect_timeout))
            }
        }
    }

    pub fn init(&self) -> Option<ServerInit> {
        self.init.lock().clone()
    }

    /// A stdio upstream's sandbox report, once its helper has written it (empty: no sandbox).
    pub fn sandbox_report(&self) -> Option<warden_sandbox::Report> {
        match &self.transport {
            Transport::Stdio(t) => t.sandbox_report(),
            _ => None,
        }
    }

    pub fn is_alive(&self) -> bool {
        self.alive.load(Ordering::Relaxed)
    }

    /// Does the server declare this top-level capability?
    pub fn has_capability(&self, cap: &str) -> bool {
        self.init.lock().as_ref().is_some_and(|i| i.capabilities.get(cap).is_some())
    }

    /// Call a method within the connection's call timeout. Messages the server sends about this
    /// call reach `ctx`. Dropping the future cancels the call upstream. A modern upstream is
    /// called statelessly, its questions asked of `ctx` ([`modern`]).
    pub async fn call(&self, method: &str, params: Option<Value>, ctx: Option<Peer>) -> CallResult {
        self.call_as(None, method, params, ctx).await
    }

    /// One request and its answer, within the call timeout.
    async fn call_once(&self, method: &str, params: Option<Value>, ctx: Option<Peer>) -> CallResult {
        self.request(method, params, ctx, None).await
    }

    /// One request and its answer: within `quiet_wait`, after which it is forgotten without a
    /// cancellation sent (a probe), or else within the call timeout (cancelled upstream).
    async fn request(
        &self,
        method: &str,
        params: Option<Value>,
        ctx: Option<Peer>,
        quiet_wait: Option<Duration>,
    ) -> CallResult {
        if !self.is_alive() {
            return Err(err(jsonrpc::INTERNAL_ERROR, format!("upstream {} is not available", self.name)));
        }
        // A modern upstream's connection may serve many clients: each call's progress token is
        // Warden's own (two clients' tokens may be equal), mapped back when progress comes.
        let mut params = params;
        let mut alias = None;
        let progress = match params.as_mut().and_then(|p| p.pointer_mut("/_meta/progressToken")) {
            Some(t) if self.is_modern() => {
                let own = format!("warden-progress-{}", self.made_ids.fetch_add(1, Ordering::Relaxed));
                let theirs = std::mem::replace(t, Value::String(own.clone()));
                self.progress_alias.lock().insert(own.clone(), theirs);
                alias = Some(ProgressAlias { conn: self, own: own.clone() });
                Some(Value::String(own))
            }
            Some(t) => Some(t.clone()),
            None => None,
        };
        let _alias = alias;
        let (id, rx) = self.calls.start(ctx, progress);
        let mut guard = CancelGuard::new(self.calls.clone(), id.clone(), |id| match &self.transport {
            Transport::Stdio(t) => {
                let _ = t.send(&cancelled_notification(&id, "cancelled by client"));
            }
            // The stateless revision cancels by closing the answer stream.
            Transport::Http(t) if t.is_modern() => t.cancel(&id),
            Transport::Http(t) => {
                let t = t.clone();
                tokio::spawn(async move {
                    let _ =
                        tokio::time::timeout(SEND_TIMEOUT, t.send(cancelled_notification(&id, "cancelled by client")))
                            .await;
                });
            }
            Transport::Builtin(t) => {
                let _ = t.send(cancelled_notification(&id, "cancelled by client"));
            }
        });
        let msg = Message::Request { id: id.clone(), method: method.into(), params };
        // The call timeout covers sending too: an HTTP upstream's JSON answer is read while
        // sending, and one that never answers must not hold the call past it. A probe's quiet
        // wait is for the answer only (connecting to a slow HTTP upstream is not silence).
        let deadline = tokio::time::Instant::now() + self.call_timeout;
        let sent = tokio::time::timeout_at(deadline, self.transport.send(msg)).await;
        if let Ok(Err(e)) = sent {
            guard.disarm();
            self.calls.forget(&id);
            return Err(err(jsonrpc::INTERNAL_ERROR, format!("upstream {} unreachable: {e}", self.name)));
        }
        let wait = quiet_wait.unwrap_or(self.call_timeout);
        let out = match sent {
            Ok(_) => match quiet_wait {
                Some(q) => tokio::time::timeout(q, rx).await,
                None => tokio::time::timeout_at(deadline, rx).await,
            },
            Err(elapsed) => Err(elapsed),
        };
        if out.is_err() && quiet_wait.is_some() {
            guard.disarm();
            self.calls.forget(&id);
        }
        match out {
            Ok(Ok(res)) => {
                guard.disarm();
                res
            }
            Ok(Err(_)) => {
                guard.disarm();
                Err(err(jsonrpc::INTERNAL_ERROR, format!("upstream {} closed", self.name)))
            }
            // the guard cancels the call upstream
            Err(_) => Err(err(jsonrpc::INTERNAL_ERROR, format!("upstream {} timed out after {wait:?}", self.name))),
        }
    }

    pub async fn notify(&self, method: &str, params: Option<Value>) {
        let note = Message::Notification { method: method.into(), params };
        let _ = tokio::time::timeout(SEND_TIMEOUT, self.transport.send(note)).await;
    }

    /// Answer a request the server sent.
    pub async fn respond(&self, id: Id, res: CallResult) {
        self.serving.lock().remove(&id);
        let asked = self.asking.lock().remove(&id);
        if let Some(tx) = asked {
            let _ = tx.send(res);
            return;
        }
        // A 2026 upstream sends no requests of its own: an answer here is to a question whose
        // call has ended meanwhile, and is nothing to the upstream.
        if self.is_modern() {
            return;
        }
        let msg = match res {
            Ok(result) => Message::Response { id, result },
            Err(error) => Message::Error { id, error },
        };
        let _ = tokio::time::timeout(SEND_TIMEOUT, self.transport.send(msg)).await;
    }

    /// Track the task serving a server request so the server can cancel it.
    pub fn track_serving(&self, id: Id, h: tokio::task::AbortHandle) {
        self.serving.lock().insert(id, h);
    }

    pub async fn close(&self) {
        self.alive.store(false, Ordering::Relaxed);
        for (_, h) in self.serving.lock().drain() {
            h.abort();
        }
        self.transport.close().await;
        self.calls.fail_all(&err(jsonrpc::INTERNAL_ERROR, format!("upstream {} closed", self.name)));
    }
}

fn dispatch(conn: &Arc<Conn>, item: Incoming) {
    let (mut msg, related) = match item {
        Incoming::Closed(reason) => {
            if conn.alive.swap(false, Ordering::Relaxed) {
                tracing::warn!(upstream = %conn.name, %reason, "upstream connection closed");
            }
            conn.calls.fail_all(&err(jsonrpc::INTERNAL_ERROR, format!("upstream {} closed: {reason}", conn.name)));
            for (_, h) in conn.serving.lock().drain() {
                h.abort();
            }
            return;
        }
        Incoming::Message { msg, related } => (msg, related),
    };
    // A modern upstream's listen acknowledgement is Warden's own business; it asks nothing itself.
    if conn.is_modern() && !stateless::modern_message(&conn.name, &mut msg) {
        return;
    }
    match msg {
        Message::Response { id, result } => {
            if !conn.calls.complete(&id, Ok(result)) {
                tracing::debug!(upstream = %conn.name, %id, "response to an unknown id ignored");
            }
        }
        Message::Error { id, error } => {
            if !conn.calls.complete(&id, Err(error)) {
                tracing::debug!(upstream = %conn.name, %id, "error for an unknown id ignored");
            }
        }
        Message::Notification { ref method, ref params } if method == "notifications/cancelled" => {
            if let Some(id) = jsonrpc::cancelled_request_id(params.as_ref()) {
                if let Some(h) = conn.serving.lock().remove(&id) {
                    h.abort();
                }
            }
        }
        mut other => {
            // Progress under Warden's own token: the client's token again.
            if let Message::Notification { method, params: Some(p) } = &mut other {
                if method == "notifications/progress" {
                    let own = p.get("progressToken").and_then(Value::as_str).unwrap_or_default();
                    if let Some(theirs) = conn.progress_alias.lock().get(own).cloned() {
                        let ctx = conn.calls.ctx_for_progress(&p["progressToken"]).flatten();
                        p["progressToken"] = theirs;
                        (conn.handler)(conn, other, ctx);
                        return;
                    }
                }
            }
            let modern = conn.is_modern();
            let ctx = match &other {
                Message::Notification { method, params } if method == "notifications/progress" && !modern => params
                    .as_ref()
                    .and_then(|p| p.get("progressToken"))
                    .and_then(|t| conn.calls.ctx_for_progress(t))
                    .flatten(),
                _ => match related {
                    Some(r) => conn.calls.ctx(&r).flatten(),
                    // A modern upstream's connection serves many clients (`shared.rs`): what
                    // names no call is nobody's, never guessed.
                    None if modern => None,
                    // Unrelated (stdio cannot relate): the one call in flight, if one, not
                    // counting calls whose client request is parked (they wait for an answer
                    // to what they asked already, so this is not theirs).
                    None => conn.calls.sole_ctx(|c| c.as_ref().is_none_or(|p| !p.parked())).flatten(),
                },
            };
            (conn.handler)(conn, other, ctx);
        }
    }
}

/// Forgets a call's progress token alias when the call ends, however it ends.
struct ProgressAlias<'a> {
    conn: &'a Conn,
    own: String,
}

impl Drop for ProgressAlias<'_> {
    fn drop(&mut self) {
        self.conn.progress_alias.lock().remove(&self.own);
    }
}
