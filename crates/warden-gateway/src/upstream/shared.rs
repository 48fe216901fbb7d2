//! One connection to a stateless (2026-07-28) upstream, shared by every Warden session of the
//! same upstream spec (per tenant): no child process, `server/discover` or `subscriptions/listen`
//! stream per session. Each session is a [`Caller`] of the connection: its calls carry its own
//! `_meta` (client capabilities cut to `client_requests`, client info, log level) and its
//! questions go to its own handler; the connection's list-change notifications go to every
//! caller, a resource update only to the callers subscribed to it, progress to the call it
//! belongs to (by a progress token Warden gives each call), and a notification tied to no
//! call is dropped rather than guessed. A 2025 connection (a session per client) has one
//! caller and gets everything, as before.
//!
//! Defends against: one principal's session seeing another's progress, log messages, resource
//! updates or questions over the shared connection, and a session that leaves holding
//! subscriptions (they are released; the stream is renewed without them).
//! Does not defend against: a stateless server that keeps per-client state of its own across
//! requests anyway (it sees one client, Warden); tasks it creates are sealed to their caller
//! by Warden (`pipeline/task.rs`).

use super::modern::ClientSide;
use super::{Conn, ServerHandler};
use crate::rpc::{CallResult, Peer};
use serde_json::Value;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use warden_protocol::jsonrpc::Message;

/// One session's side of a connection.
pub struct Caller {
    pub side: ClientSide,
    /// Where what the upstream sends for this session goes (notifications, questions).
    pub handler: ServerHandler,
}

impl Caller {
    /// A new caller (ids are unique in the process).
    pub fn new(capabilities: Value, client_info: Option<Value>, handler: ServerHandler) -> Arc<Caller> {
        static NEXT: AtomicU64 = AtomicU64::new(1);
        let id = NEXT.fetch_add(1, Ordering::Relaxed);
        Arc::new(Caller { side: ClientSide { id, capabilities, client_info }, handler })
    }
}

/// The handler of a connection whose callers are registered on it.
pub fn fan_out_handler() -> ServerHandler {
    Arc::new(|conn: &Arc<Conn>, msg: Message, ctx: Option<Peer>| conn.fan_out(msg, ctx))
}

impl Conn {
    /// Another session uses this connection.
    pub fn register(&self, caller: Arc<Caller>) {
        self.callers.lock().insert(caller.side.id, caller);
    }

    /// A session stopped using this connection (its subscriptions and log level go with it);
    /// how many callers are left.
    pub fn unregister(&self, id: u64) -> usize {
        let left = {
            let mut c = self.callers.lock();
            c.remove(&id);
            c.len()
        };
        if self.modern.get().is_some_and(|m| m.forget(id)) {
            if let (Some(me), Ok(rt)) = (self.me.upgrade(), tokio::runtime::Handle::try_current()) {
                rt.spawn(async move { me.relisten().await });
            }
        }
        left
    }

    /// [`Conn::call`] for one caller of a shared connection: its `_meta`, and its questions asked
    /// through its own handler.
    pub async fn call_as(
        &self,
        caller: Option<&Caller>,
        method: &str,
        params: Option<Value>,
        ctx: Option<Peer>,
    ) -> CallResult {
        match self.modern.get() {
            None => self.call_once(method, params, ctx).await,
            Some(m) => self.call_stateless(m, caller, method, params, ctx).await,
        }
    }

    /// Route what the upstream sent on its own to the callers it concerns.
    fn fan_out(self: &Arc<Self>, msg: Message, ctx: Option<Peer>) {
        let callers: Vec<Arc<Caller>> = self.callers.lock().values().cloned().collect();
        let Some(m) = self.modern.get() else {
            // A session's own connection (2025): its one caller gets everything.
            if let Some(c) = callers.first() {
                (c.handler)(self, msg, ctx);
            }
            return;
        };
        match msg.method() {
            Some(
                "notifications/tools/list_changed"
                | "notifications/prompts/list_changed"
                | "notifications/resources/list_changed",
            ) => {
                for c in &callers {
                    (c.handler)(self, msg.clone(), None);
                }
            }
            Some("notifications/resources/updated") => {
                let uri = match &msg {
                    Message::Notification { params, .. } => {
                        params.as_ref().and_then(|p| p.get("uri")).and_then(Value::as_str).unwrap_or_default()
                    }
                    _ => "",
                };
                let wanted = m.subscribers(uri);
                for c in callers.iter().filter(|c| wanted.contains(&c.side.id)) {
                    (c.handler)(self, msg.clone(), None);
                }
            }
            // Tied to a call: any caller's handler relays it to that call's own client.
            _ if ctx.is_some() => {
                if let Some(c) = callers.first() {
                    (c.handler)(self, msg, ctx);
                }
            }
            method => {
                tracing::debug!(upstream = %self.name, method = ?method, "a notification of no call on a shared connection; dropped");
            }
        }
    }
}
