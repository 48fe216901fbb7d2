//! A session's connections to its upstreams: opened on first use with the session's client
//! capabilities cut to each upstream's `client_requests` (and its tenant's spec), reopened with
//! backoff, and what each upstream sends on its own — notifications and its requests to the
//! client — relayed to the client it belongs to (`client_requests.rs` rules the requests). A
//! stateless (2026-07-28) upstream's connection is shared by the sessions of its spec, each a
//! caller of it through its [`Lease`] (`upstream/shared.rs`).

use super::session::RelaySession;
use crate::error::GatewayError;
use crate::rpc::CallResult;
use crate::rpc::Peer;
use crate::upstream::shared::Caller;
use crate::upstream::{Conn, Listing, ServerHandler};
use serde_json::{json, Value};
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::sync::Weak;
use std::time::{Duration, Instant};
use warden_policy::rules::Kind;
use warden_policy::Principal;
use warden_protocol::jsonrpc::ErrorObject;
use warden_protocol::jsonrpc::Message;

const MAX_BACKOFF: Duration = Duration::from_secs(30);

/// A session's use of an upstream connection: the connection and the session as its caller
/// (a stateless upstream's connection is shared by sessions, `upstream/shared.rs`).
#[derive(Clone)]
pub struct Lease {
    conn: Arc<Conn>,
    caller: Arc<Caller>,
    /// The shared-connection table entry it came from (tenant spec key), when shared.
    shared_key: Option<String>,
}

impl std::ops::Deref for Lease {
    type Target = Conn;
    fn deref(&self) -> &Conn {
        &self.conn
    }
}

impl Lease {
    /// A call as this session.
    pub async fn call(&self, method: &str, params: Option<Value>, ctx: Option<Peer>) -> CallResult {
        self.conn.call_as(Some(&self.caller), method, params, ctx).await
    }

    /// Every page of a listing, as this session.
    pub async fn list_all(&self, method: &str, field: &str, limit: usize) -> Result<Listing, ErrorObject> {
        self.conn.list_all_as(Some(&self.caller), method, field, limit).await
    }
}

impl RelaySession {
    /// A name no listing knows may be behind an upstream of users' own accounts that this user
    /// has not linked yet, among those whose `kind` `p` may list: the link to open, if so (or why
    /// this caller cannot link).
    pub async fn unlinked(&self, p: &Principal, kind: Kind) -> Option<GatewayError> {
        for i in (0..self.slots.len()).filter(|&i| self.reaches(i) && self.shared.policy.may_list(p, i, kind)) {
            let spec = self.shared.specs[i].for_tenant(self.principal.tenant.as_deref());
            if let Some(link) = spec.and_then(|s| s.user.clone()) {
                if let Err(e @ (GatewayError::LinkRequired { .. } | GatewayError::CannotLink { .. })) =
                    link.ensure(&self.principal).await
                {
                    return Some(e);
                }
            }
        }
        None
    }

    /// What this session may reach changed (a link made): the next name not in the route table
    /// refreshes it at once.
    pub fn routes_stale(&self) {
        self.routes.lock().refreshed = None;
    }

    /// The live connection to upstream `i`, connecting (or reconnecting, with backoff) if needed.
    pub async fn conn(&self, i: usize) -> Result<Lease, GatewayError> {
        // An upstream of each user's own account: this user must have linked theirs (checked on
        // every request, so a revoked link stops the next one).
        if let Some(link) =
            &self.shared.specs[i].for_tenant(self.principal.tenant.as_deref()).and_then(|s| s.user.clone())
        {
            link.ensure(&self.principal).await?;
        }
        let slot = &self.slots[i];
        let mut guard = slot.conn.lock().await;
        if let Some(c) = guard.as_ref() {
            if c.is_alive() {
                return Ok(c.clone());
            }
            tracing::info!(upstream = %self.shared.specs[i].name, "reconnecting upstream for this session");
        }
        if let Some(old) = guard.take() {
            self.leave(i, old).await;
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
        let key = self.principal.tenant.as_deref().filter(|t| self.shared.specs[i].tenants.contains_key(*t));
        let mut key = key.unwrap_or_default().to_string();
        // A connection that acts for its caller (token exchange, a linked account) is never
        // shared with another.
        if spec.exchange.is_some() || spec.user.is_some() {
            key = format!("{key}\0{}", self.principal.binding_key());
        }
        // The upstream is told only of the client capabilities it may use (`client_requests`).
        let mut init = self.upstream_init.clone();
        init["capabilities"] = crate::client_requests::capabilities_for(&init["capabilities"], &spec.client_requests);
        self.shared.extensions.filter(&mut init["capabilities"]);
        let caller = Caller::new(init["capabilities"].clone(), init.get("clientInfo").cloned(), self.handler(i));
        // A stateless upstream already connected: its connection, shared.
        let pool = &self.shared.stateless[i];
        let joined = {
            let p = pool.lock();
            let live = p.get(&key).and_then(Weak::upgrade).filter(|c| c.is_alive());
            live.inspect(|c| c.register(caller.clone()))
        };
        if let Some(conn) = joined {
            let lease = Lease { conn, caller, shared_key: Some(key) };
            *guard = Some(lease.clone());
            return Ok(lease);
        }
        match Conn::connect_as(spec, init, caller.clone(), &self.principal, &self.shared.http).await {
            Ok(c) => {
                *slot.retry_at.lock() = None;
                // Found stateless: later sessions share it (unless another one got there first).
                let mut shared_key = None;
                if c.is_modern() {
                    let mut p = pool.lock();
                    if !p.get(&key).and_then(Weak::upgrade).is_some_and(|o| o.is_alive()) {
                        p.insert(key.clone(), Arc::downgrade(&c));
                        shared_key = Some(key);
                    }
                }
                let lease = Lease { conn: c, caller, shared_key };
                *guard = Some(lease.clone());
                Ok(lease)
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

    /// This session stops using a connection: a shared one is closed by its last caller.
    pub(super) async fn leave(&self, i: usize, lease: Lease) {
        if self.release(i, &lease) {
            lease.conn.close().await;
        }
    }

    /// Unregister this session from a connection; true when it was the last to use it.
    fn release(&self, i: usize, lease: &Lease) -> bool {
        match &lease.shared_key {
            Some(key) => {
                let mut p = self.shared.stateless[i].lock();
                let left = lease.conn.unregister(lease.caller.side.id);
                if left == 0 && p.get(key).is_some_and(|w| std::ptr::eq(w.as_ptr(), Arc::as_ptr(&lease.conn))) {
                    p.remove(key);
                }
                left == 0
            }
            None => {
                lease.conn.unregister(lease.caller.side.id);
                true
            }
        }
    }

    pub(super) async fn live_conn(&self, i: usize) -> Option<Lease> {
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

/// A session dropped without being closed (its connections were not left): its share of any
/// shared connection is released now (a connection nobody holds closes as it drops).
impl Drop for RelaySession {
    fn drop(&mut self) {
        for i in 0..self.slots.len() {
            let lease = self.slots[i].conn.try_lock().ok().and_then(|mut g| g.take());
            if let Some(l) = lease {
                self.release(i, &l);
            }
        }
    }
}
