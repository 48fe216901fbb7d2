//! A session's connections to its upstreams: opened on first use with the session's client
//! capabilities cut to each upstream's `client_requests` (and its tenant's spec), reopened with
//! backoff, and what each upstream sends on its own — notifications and its requests to the
//! client — relayed to the client it belongs to (`client_requests.rs` rules the requests).

use super::session::RelaySession;
use crate::error::GatewayError;
use crate::rpc::Peer;
use crate::upstream::{Conn, ServerHandler};
use serde_json::{json, Value};
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::{Duration, Instant};
use warden_protocol::jsonrpc::Message;

const MAX_BACKOFF: Duration = Duration::from_secs(30);

impl RelaySession {
    /// The live connection to upstream `i`, connecting (or reconnecting, with backoff) if needed.
    pub async fn conn(&self, i: usize) -> Result<Arc<Conn>, GatewayError> {
        let slot = &self.slots[i];
        let mut guard = slot.conn.lock().await;
        if let Some(c) = guard.as_ref() {
            if c.is_alive() {
                return Ok(c.clone());
            }
            tracing::info!(upstream = %self.shared.specs[i].name, "reconnecting upstream for this session");
        }
        if self.closed.load(Ordering::Relaxed) {
            return Err(GatewayError::Unavailable);
        }
        if let Some((at, _)) = *slot.retry_at.lock() {
            if Instant::now() < at {
                return Err(GatewayError::Unavailable);
            }
        }
        let Some(spec) = self.shared.specs[i].for_tenant(self.principal.tenant.as_deref()) else {
            return Err(GatewayError::Unavailable);
        };
        // The upstream is told only of the client capabilities it may use (`client_requests`).
        let mut init = self.upstream_init.clone();
        init["capabilities"] = crate::client_requests::capabilities_for(&init["capabilities"], &spec.client_requests);
        self.shared.extensions.filter(&mut init["capabilities"]);
        match Conn::connect(spec, init, self.handler(i), &self.shared.http).await {
            Ok(c) => {
                *slot.retry_at.lock() = None;
                *guard = Some(c.clone());
                Ok(c)
            }
            Err(e) => {
                let mut r = slot.retry_at.lock();
                let delay = r.map(|(_, d)| (d * 2).min(MAX_BACKOFF)).unwrap_or(Duration::from_millis(500));
                *r = Some((Instant::now() + delay, delay));
                tracing::warn!(upstream = %spec.name, error = %e, retry_in = ?delay, "upstream connection failed");
                Err(GatewayError::Unavailable)
            }
        }
    }

    pub(super) async fn live_conn(&self, i: usize) -> Option<Arc<Conn>> {
        self.slots[i].conn.lock().await.clone().filter(|c| c.is_alive())
    }

    pub fn upstream_count(&self) -> usize {
        self.slots.len()
    }

    fn handler(&self, i: usize) -> ServerHandler {
        let me = self.me.clone();
        Arc::new(move |conn: &Arc<Conn>, msg: Message, ctx: Option<Peer>| {
            if let Some(s) = me.upgrade() {
                s.on_upstream_message(i, conn, msg, ctx);
            }
        })
    }

    /// Something an upstream sent on its own: relay it to the client it belongs to.
    fn on_upstream_message(&self, i: usize, conn: &Arc<Conn>, msg: Message, ctx: Option<Peer>) {
        // Changes to lists and resources concern the session, not the call that caused them.
        let session_wide = matches!(
            msg.method(),
            Some(
                "notifications/tools/list_changed"
                    | "notifications/prompts/list_changed"
                    | "notifications/resources/list_changed"
                    | "notifications/resources/updated"
            )
        );
        let peer = match ctx {
            Some(c) if !session_wide => c,
            _ => self.peer.clone(),
        };
        match msg {
            Message::Notification { method, mut params } => {
                match method.as_str() {
                    "notifications/resources/updated" => {
                        if let Some(uri) = params.as_mut().and_then(|p| p.get_mut("uri")) {
                            if let Some(u) = uri.as_str() {
                                *uri = self.shared.ns.uri(i, u).into();
                            }
                        }
                    }
                    "notifications/tools/list_changed"
                    | "notifications/prompts/list_changed"
                    | "notifications/resources/list_changed" => {
                        self.routes.lock().refreshed = None;
                    }
                    "notifications/progress" | "notifications/message" => {
                        if let Some(p) = params.as_mut() {
                            let server = &self.shared.specs[i].name;
                            if self.shared.content.process_message(server, &method, p).blocked {
                                tracing::warn!(upstream = %server, method, "notification reads as a prompt injection; dropped");
                                return;
                            }
                        }
                    }
                    _ => {}
                }
                peer.notify(&method, params);
            }
            Message::Request { id, method, params } => {
                if method == "ping" {
                    let c = conn.clone();
                    tokio::spawn(async move { c.respond(id, Ok(json!({}))).await });
                    return;
                }
                crate::client_requests::serve(self, i, conn, id, method, params, peer);
            }
            Message::Response { .. } | Message::Error { .. } => {}
        }
    }

    /// Send `method` to every connected upstream declaring `cap`.
    pub async fn broadcast(&self, cap: &str, method: &str, params: Option<Value>) -> Result<Value, GatewayError> {
        let mut any = false;
        for i in (0..self.slots.len()).filter(|&i| self.reaches(i)) {
            if let Ok(c) = self.conn(i).await {
                if c.has_capability(cap) {
                    any = true;
                    if let Err(e) = c.call(method, params.clone(), None).await {
                        tracing::warn!(upstream = %self.shared.specs[i].name, method, error = %e, "broadcast failed for one upstream");
                    }
                }
            }
        }
        if any {
            Ok(json!({}))
        } else {
            Err(GatewayError::MethodNotFound)
        }
    }
}
