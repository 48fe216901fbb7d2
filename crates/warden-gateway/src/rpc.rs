//! Outgoing JSON-RPC calls: id allocation, waiting for the matching response, and cancellation.
//!
//! A call is a future; dropping it before its response arrives (client went away, timeout,
//! the enclosing task was cancelled) removes it and sends `notifications/cancelled` to the peer.
//! The same machinery serves Warden-as-server (requests to clients: sampling, elicitation, roots)
//! and Warden-as-client (requests to upstreams).

use parking_lot::Mutex;
use serde_json::{json, Value};
use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use tokio::sync::oneshot;
use warden_protocol::jsonrpc::{self, ErrorObject, Id, Message};

pub type CallResult = Result<Value, ErrorObject>;

/// Where messages *to the peer* go. Implemented by each transport.
pub trait Outbound: Send + Sync + 'static {
    /// Deliver one message. `stream` ties it to the stream of a request being answered
    /// (Streamable HTTP), `None` means "no particular request". Returns false when the message
    /// could not be delivered anywhere.
    fn send(&self, stream: Option<u64>, msg: Message) -> bool;
    /// The request a stream answers was cancelled: end the stream without a response.
    fn close_stream(&self, _stream: u64) {}
    /// Whether this peer's request is parked, waiting for its client (a stateless multi
    /// round-trip): a message that names no request is not meant for it.
    fn parked(&self) -> bool {
        false
    }
    /// Whether this peer decides per request what the client may be asked (a stateless
    /// request's `_meta` capabilities), rather than by the session's `initialize`.
    fn asks_per_request(&self) -> bool {
        false
    }
}

struct Pending<C> {
    tx: oneshot::Sender<CallResult>,
    ctx: C,
    progress: Option<Value>,
}

/// The table of calls in flight towards one peer. `C` is what related inbound traffic is
/// routed to (for upstreams: the downstream peer of the request that caused the call).
pub struct Calls<C> {
    next: AtomicU64,
    prefix: &'static str,
    map: Mutex<HashMap<Id, Pending<C>>>,
}

impl<C: Clone> Calls<C> {
    /// `prefix` non-empty gives string ids (`"<prefix><n>"`), empty gives integer ids.
    pub fn new(prefix: &'static str) -> Self {
        Calls::starting_at(prefix, 1)
    }

    /// Ids from `first` on (a session taken up again after a reload numbers its requests past
    /// those of the session it replaces, whose requests may still be answered).
    pub fn starting_at(prefix: &'static str, first: u64) -> Self {
        Calls { next: AtomicU64::new(first), prefix, map: Mutex::new(HashMap::new()) }
    }

    /// Register a call; returns its id and the receiver of its outcome.
    pub fn start(&self, ctx: C, progress: Option<Value>) -> (Id, oneshot::Receiver<CallResult>) {
        let n = self.next.fetch_add(1, Ordering::Relaxed);
        let id = if self.prefix.is_empty() { Id::Num(n as i64) } else { Id::Str(format!("{}{n}", self.prefix)) };
        let (tx, rx) = oneshot::channel();
        self.map.lock().insert(id.clone(), Pending { tx, ctx, progress });
        (id, rx)
    }

    /// Deliver a response. Returns false for an id nobody waits for (late or forged).
    pub fn complete(&self, id: &Id, res: CallResult) -> bool {
        match self.map.lock().remove(id) {
            Some(p) => {
                let _ = p.tx.send(res);
                true
            }
            None => false,
        }
    }

    /// Forget a call (it was cancelled). Returns true when it was still pending.
    pub fn forget(&self, id: &Id) -> bool {
        self.map.lock().remove(id).is_some()
    }

    pub fn ctx(&self, id: &Id) -> Option<C> {
        self.map.lock().get(id).map(|p| p.ctx.clone())
    }

    /// The context of the one call in flight that `eligible` admits, when there is exactly one:
    /// what a message from a peer that cannot name the call it belongs to (stdio) most likely
    /// belongs to.
    pub fn sole_ctx(&self, eligible: impl Fn(&C) -> bool) -> Option<C> {
        let map = self.map.lock();
        let mut it = map.values().filter(|p| eligible(&p.ctx));
        match (it.next(), it.next()) {
            (Some(one), None) => Some(one.ctx.clone()),
            _ => None,
        }
    }

    /// The context of the call that carried this progress token.
    pub fn ctx_for_progress(&self, token: &Value) -> Option<C> {
        self.map.lock().values().find(|p| p.progress.as_ref() == Some(token)).map(|p| p.ctx.clone())
    }

    /// Fail every pending call (the peer is gone).
    pub fn fail_all(&self, err: &ErrorObject) {
        for (_, p) in self.map.lock().drain() {
            let _ = p.tx.send(Err(err.clone()));
        }
    }

    pub fn len(&self) -> usize {
        self.map.lock().len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

/// Cancels a call when dropped before completion.
pub struct CancelGuard<C: Clone, F: FnOnce(Id)> {
    calls: Arc<Calls<C>>,
    id: Option<Id>,
    on_cancel: Option<F>,
}

impl<C: Clone, F: FnOnce(Id)> CancelGuard<C, F> {
    pub fn new(calls: Arc<Calls<C>>, id: Id, on_cancel: F) -> Self {
        CancelGuard { calls, id: Some(id), on_cancel: Some(on_cancel) }
    }
    pub fn disarm(&mut self) {
        self.id = None;
    }
}

impl<C: Clone, F: FnOnce(Id)> Drop for CancelGuard<C, F> {
    fn drop(&mut self) {
        if let (Some(id), Some(f)) = (self.id.take(), self.on_cancel.take()) {
            if self.calls.forget(&id) {
                f(id);
            }
        }
    }
}

pub fn cancelled_notification(id: &Id, reason: &str) -> Message {
    Message::Notification {
        method: "notifications/cancelled".into(),
        params: Some(json!({ "requestId": id.to_value(), "reason": reason })),
    }
}

/// Warden's handle on a connected client: notifications and requests to it, tied to the stream
/// of one request when `stream` is set.
#[derive(Clone)]
pub struct Peer {
    out: Arc<dyn Outbound>,
    calls: Arc<Calls<()>>,
    stream: Option<u64>,
}

impl Peer {
    pub fn new(out: Arc<dyn Outbound>, calls: Arc<Calls<()>>, stream: Option<u64>) -> Self {
        Peer { out, calls, stream }
    }

    /// See [`Outbound::parked`].
    pub fn parked(&self) -> bool {
        self.out.parked()
    }

    /// See [`Outbound::asks_per_request`].
    pub fn asks_per_request(&self) -> bool {
        self.out.asks_per_request()
    }

    /// The same client, not tied to any request's stream.
    pub fn session_level(&self) -> Peer {
        Peer { stream: None, ..self.clone() }
    }

    pub fn send(&self, msg: Message) -> bool {
        self.out.send(self.stream, msg)
    }

    pub fn notify(&self, method: &str, params: Option<Value>) -> bool {
        self.send(Message::Notification { method: method.into(), params })
    }

    /// Send a request to the client and wait for its answer. Dropping the future cancels it.
    pub async fn request(&self, method: &str, params: Option<Value>) -> CallResult {
        let (id, rx) = self.calls.start((), None);
        let out = self.out.clone();
        let stream = self.stream;
        let mut guard = CancelGuard::new(self.calls.clone(), id.clone(), move |id| {
            out.send(stream, cancelled_notification(&id, "cancelled by upstream"));
        });
        let msg = Message::Request { id: id.clone(), method: method.into(), params };
        if !self.out.send(self.stream, msg) {
            guard.disarm();
            self.calls.forget(&id);
            return Err(ErrorObject::new(jsonrpc::INTERNAL_ERROR, "client has no open stream to receive requests"));
        }
        let res = rx.await;
        guard.disarm();
        res.unwrap_or_else(|_| Err(ErrorObject::new(jsonrpc::INTERNAL_ERROR, "client session closed")))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(Default)]
    struct Sink(Mutex<Vec<(Option<u64>, Message)>>);
    impl Outbound for Sink {
        fn send(&self, s: Option<u64>, m: Message) -> bool {
            self.0.lock().push((s, m));
            true
        }
    }

    #[tokio::test]
    async fn request_completes_and_drop_cancels() {
        let sink = Arc::new(Sink::default());
        let calls = Arc::new(Calls::new("w"));
        let peer = Peer::new(sink.clone(), calls.clone(), Some(7));
        let p2 = peer.clone();
        let h = tokio::spawn(async move { p2.request("roots/list", None).await });
        tokio::task::yield_now().await;
        while calls.is_empty() {
            tokio::task::yield_now().await;
        }
        assert!(calls.complete(&Id::Str("w1".into()), Ok(json!({"roots": []}))));
        assert_eq!(h.await.unwrap().unwrap(), json!({"roots": []}));
        // a forged or late response is refused
        assert!(!calls.complete(&Id::Str("w1".into()), Ok(json!({}))));

        let p3 = peer.clone();
        let h = tokio::spawn(async move { p3.request("sampling/createMessage", None).await });
        while calls.is_empty() {
            tokio::task::yield_now().await;
        }
        h.abort();
        let _ = h.await;
        let sent = sink.0.lock();
        let last = &sent.last().unwrap().1;
        assert_eq!(last.method(), Some("notifications/cancelled"));
        assert_eq!(sent.last().unwrap().0, Some(7));
        assert!(calls.is_empty());
    }
}
