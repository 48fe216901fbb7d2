//! Serving MCP to clients. A [`Service`] answers `initialize` with a [`Session`]; the transports
//! ([`http`]: Streamable HTTP, [`stdio`]: one local client) own framing, session ids, streams and
//! delivery, and share [`Conn`] for everything after a message is decoded. Warden's relay and the
//! test fixture are both services, so both speak the same transport code.

pub mod http;
mod running;
pub mod stateless;
pub mod stdio;

use crate::rpc::{Calls, Outbound, Peer};
use futures::future::AbortHandle;
use futures::future::BoxFuture;
use futures::FutureExt;
use parking_lot::Mutex;
pub use running::Running;
use serde_json::Value;
use std::collections::HashMap;
use std::sync::Arc;
use warden_policy::Principal;
use warden_protocol::jsonrpc::{self, ErrorObject, Id, Message};

/// What a session's `initialize` produced.
pub struct Initialized {
    pub session: Arc<dyn Session>,
    /// The `initialize` result sent to the client.
    pub result: Value,
}

/// Where a session comes from, for the audit trail.
#[derive(Debug, Clone, Default)]
pub struct Origin {
    /// The session id the transport gave it (`stdio` for stdio).
    pub session: String,
    /// The client's address (HTTP: the peer, or what a trusted proxy forwarded).
    pub client: Option<std::net::IpAddr>,
    /// A 2026 stateless caller's pooled session (state that outlives a request is the
    /// principal's, not the pooled session's).
    pub stateless: bool,
}

pub trait Service: Send + Sync + 'static {
    /// Answer `initialize`. `peer` reaches the new client (session level); `principal` is the
    /// authenticated caller the session belongs to.
    fn initialize(
        &self,
        params: Value,
        peer: Peer,
        principal: Arc<Principal>,
        origin: Origin,
    ) -> BoxFuture<'static, Result<Initialized, ErrorObject>>;

    /// Take up a session that was opened before, here or on another replica, from what its
    /// `initialize` carried (`params`: `protocolVersion`, `capabilities`, `clientInfo`, as the
    /// sealed session id holds them). `None`: this service keeps sessions in memory only, and an
    /// id it does not hold is unknown.
    fn resume(
        &self,
        _params: Value,
        _peer: Peer,
        _principal: Arc<Principal>,
        _origin: Origin,
    ) -> Option<BoxFuture<'static, Result<Arc<dyn Session>, ErrorObject>>> {
        None
    }

    /// The configuration generation new sessions get. A session of an older one is retired at
    /// its next request and taken up again under the current one ([`Service::resume`]).
    fn generation(&self) -> u64 {
        0
    }
}

pub trait Session: Send + Sync + 'static {
    /// Answer one request. `peer` is tied to the request's stream; `caller` is who sent this
    /// request (authenticated with it; `None`: the session's own principal, as on stdio).
    fn request(
        self: Arc<Self>,
        id: Id,
        method: String,
        params: Option<Value>,
        peer: Peer,
        caller: Option<Arc<Principal>>,
    ) -> BoxFuture<'static, Result<Value, ErrorObject>>;
    /// A notification from the client (`notifications/cancelled` is handled by the transport).
    fn notification(self: Arc<Self>, method: String, params: Option<Value>);
    /// The session ended (DELETE, idle timeout, stdin closed, shutdown).
    fn close(self: Arc<Self>) -> BoxFuture<'static, ()>;
    /// The `x-mcp-header` annotations of a tool, by the name its client calls it, from this
    /// session's listing (listed now if the name is not in it yet); `None`: no such tool here.
    fn header_params(
        self: Arc<Self>,
        _tool: String,
    ) -> BoxFuture<'static, Option<Vec<warden_protocol::param_headers::HeaderParam>>> {
        Box::pin(async { None })
    }
}

/// One client session after `initialize`: dispatches decoded messages, tracks requests in flight
/// (so `notifications/cancelled` can stop them) and requests to the client.
pub struct Conn {
    pub session: Arc<dyn Session>,
    out: Arc<dyn Outbound>,
    calls: Arc<Calls<()>>,
    inflight: Mutex<HashMap<Id, (AbortHandle, Option<u64>)>>,
}

impl Conn {
    pub fn new(session: Arc<dyn Session>, out: Arc<dyn Outbound>, calls: Arc<Calls<()>>) -> Arc<Conn> {
        Arc::new(Conn { session, out, calls, inflight: Mutex::new(HashMap::new()) })
    }

    pub fn peer(&self, stream: Option<u64>) -> Peer {
        Peer::new(self.out.clone(), self.calls.clone(), stream)
    }

    /// Run a request; its response (or error) goes out on `stream`. A duplicate id of a request
    /// still in flight is refused. The run is the caller's to drive ([`Running::until`]) or to
    /// drop (it then runs as a task of its own).
    pub fn request(
        self: &Arc<Self>,
        id: Id,
        method: String,
        params: Option<Value>,
        stream: Option<u64>,
        caller: Option<Arc<Principal>>,
    ) -> Running {
        let mut inflight = self.inflight.lock();
        if inflight.contains_key(&id) {
            drop(inflight);
            self.out.send(stream, Message::error(id, jsonrpc::INVALID_REQUEST, "request id already in use"));
            return Running::done();
        }
        let me = self.clone();
        let key = id.clone();
        let fut = self.session.clone().request(id.clone(), method, params, self.peer(stream), caller);
        let (run, abort) = futures::future::abortable(async move {
            // A panic in the pipeline is this request's internal error, not the connection's end
            // (the run is polled on the connection's task).
            let reply = match std::panic::AssertUnwindSafe(fut).catch_unwind().await {
                Ok(Ok(result)) => Message::Response { id: key.clone(), result },
                Ok(Err(error)) => Message::Error { id: key.clone(), error },
                Err(_) => {
                    tracing::error!(id = %key, "a request's run panicked");
                    Message::error(key.clone(), jsonrpc::INTERNAL_ERROR, "internal error")
                }
            };
            me.inflight.lock().remove(&key);
            me.out.send(stream, reply);
        });
        inflight.insert(id, (abort, stream));
        Running::new(Box::pin(async move {
            let _ = run.await;
        }))
    }

    pub fn notification(self: &Arc<Self>, method: String, params: Option<Value>) {
        if method == "notifications/cancelled" {
            if let Some(id) = jsonrpc::cancelled_request_id(params.as_ref()) {
                let entry = self.inflight.lock().remove(&id);
                if let Some((h, stream)) = entry {
                    h.abort();
                    if let Some(s) = stream {
                        self.out.close_stream(s);
                    }
                }
            }
            return;
        }
        self.session.clone().notification(method, params);
    }

    /// A client's answer to one of Warden's requests.
    pub fn response(&self, id: Id, res: Result<Value, ErrorObject>) {
        if !self.calls.complete(&id, res) {
            tracing::debug!(%id, "response to an unknown request id ignored");
        }
    }

    /// One of Warden's requests to the client, `id`, waits for its answer here.
    pub fn asked(&self, id: &Id) -> bool {
        self.calls.ctx(id).is_some()
    }

    /// The client's request `id` is in flight here.
    pub fn running(&self, id: &Id) -> bool {
        self.inflight.lock().contains_key(id)
    }

    pub fn has_inflight(&self) -> bool {
        !self.inflight.lock().is_empty()
    }

    /// Stop everything and let the session clean up.
    pub async fn close(&self) {
        for (_, (h, _)) in self.inflight.lock().drain() {
            h.abort();
        }
        self.calls.fail_all(&ErrorObject::new(jsonrpc::INTERNAL_ERROR, "client session closed"));
        self.session.clone().close().await;
    }
}
