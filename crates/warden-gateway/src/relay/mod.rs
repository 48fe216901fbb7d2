//! Warden's [`Service`]: one client session relayed to every configured upstream.
//!
//! Each client session gets its own connection to each upstream (a child process or an HTTP
//! session), opened at `initialize`, so that what an upstream asks of "its client" (sampling,
//! elicitation, roots), its log level and its subscriptions belong to exactly one client.
//! Listings are fanned out and merged; calls are routed by the exposed name or URI.
//!
//! Here: `initialize` (the merged capabilities and instructions) and the session's entry into
//! the pipeline. The session itself is in `session.rs`, its upstream connections in
//! `upstreams.rs`, its listings and route table in `list.rs`.

mod link_tool;
mod list;
pub mod session;
pub mod upstreams;

pub use list::{report_collisions, report_confusables, Unlinked};
pub use session::{RelaySession, Shared};
use session::{Routes, Slot};

use crate::error::GatewayError;
use crate::pipeline;
use crate::policy::SessionOp;
use crate::rpc::Peer;
use crate::server::{Initialized, Service, Session};
use crate::upstream::ServerInit;
use futures::future::{join_all, BoxFuture};
use futures::FutureExt;
use parking_lot::Mutex;
use serde_json::{json, Map, Value};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Instant;
use warden_policy::Principal;
use warden_protocol::jsonrpc::{self, ErrorObject};
use warden_protocol::version;

/// The relay service. New sessions use the current generation (`reload.rs` swaps it).
pub struct Relay {
    pub current: Arc<arc_swap::ArcSwap<Shared>>,
}

impl Service for Relay {
    fn initialize(
        &self,
        params: Value,
        peer: Peer,
        principal: Arc<Principal>,
        origin: crate::server::Origin,
    ) -> BoxFuture<'static, Result<Initialized, ErrorObject>> {
        let shared = self.current.load_full();
        async move {
            let started = Instant::now();
            // Each session may start every upstream the caller reaches: opened at a bounded rate.
            if let Err(refused) = shared.policy.admit_op(&principal, SessionOp::Initialize).await {
                let mut e = warden_audit::Event::new("initialize", refused.reason());
                crate::audit::Audit::principal(&mut e, &principal);
                e.client_addr = origin.client.map(|a| a.to_string());
                e.method = Some("initialize".into());
                if let GatewayError::RateLimited { limit, .. } = &refused {
                    e.detail = Some((*limit).to_string());
                }
                let _ = shared.audit.commit(e).await;
                return Err(refused.to_error_object());
            }
            let (session, negotiated) = open_session(&shared, &params, peer, principal, origin);
            session.follow_kill_switches();
            // Capabilities from the control connections; an upstream without one (not ready
            // yet, or `warden stdio`, which has none) is connected now to learn them.
            let inits: Vec<Option<ServerInit>> = join_all((0..shared.specs.len()).map(|i| {
                let s = session.clone();
                let known = shared.known[i].lock().clone();
                async move {
                    if !s.reaches(i) {
                        return None; // not even its existence is shown to other tenants
                    }
                    let link = s.shared.specs[i].for_tenant(s.principal.tenant.as_deref()).and_then(|x| x.user.clone());
                    match (known, link) {
                        (Some(k), _) => Some(k),
                        // Each user's own account, not linked yet (no flow is started here): a
                        // listing answers with the link, so tools are announced.
                        (None, Some(l)) if !l.is_linked(&s.principal).await => Some(ServerInit {
                            protocol_version: negotiated.to_string(),
                            capabilities: json!({"tools": {"listChanged": true}}),
                            server_info: json!({}),
                            instructions: None,
                        }),
                        (None, _) => s.conn(i).await.ok().and_then(|c| c.init()),
                    }
                }
            }))
            .await;
            let mut result = json!({
                "protocolVersion": negotiated,
                "capabilities": merge_capabilities(inits.iter().flatten(), &shared.extensions),
                "serverInfo": {"name": "warden", "title": "Warden MCP gateway", "version": env!("CARGO_PKG_VERSION")},
            });
            // An optional string: absent, never null, when no upstream declares instructions.
            if let Some(text) = merge_instructions(&shared, &inits) {
                result["instructions"] = Value::String(text);
            }
            let p = &session.principal;
            tracing::info!(subject = %p.subject, tenant = p.tenant.as_deref().unwrap_or("-"), method = ?p.method,
                           version = negotiated, "session opened");
            let mut e = session.event(&session.principal, "initialize", "success", Some("initialize"));
            e.detail = Some(format!("protocol {negotiated}"));
            e.latency_us = Some(started.elapsed().as_micros() as u64);
            shared.audit.commit(e).await.map_err(|e| e.to_error_object())?;
            let session: Arc<dyn Session> = session;
            Ok(Initialized { session, result })
        }
        .boxed()
    }

    fn resume(
        &self,
        params: Value,
        peer: Peer,
        principal: Arc<Principal>,
        origin: crate::server::Origin,
    ) -> Option<BoxFuture<'static, Result<Arc<dyn Session>, ErrorObject>>> {
        Some(Relay::take_up(self.current.load_full(), params, peer, principal, origin))
    }

    fn generation(&self) -> u64 {
        self.current.load().generation
    }
}

impl Relay {
    /// The relay's half of [`Service::resume`] (see the trait): the session as `initialize` made
    /// it, without the answer (the client has it) and without connecting upstreams (each is
    /// connected when first used). Recorded as an `initialize` "taken up".
    fn take_up(
        shared: Arc<Shared>,
        params: Value,
        peer: Peer,
        principal: Arc<Principal>,
        origin: crate::server::Origin,
    ) -> BoxFuture<'static, Result<Arc<dyn Session>, ErrorObject>> {
        async move {
            let (session, negotiated) = open_session(&shared, &params, peer, principal, origin);
            session.follow_kill_switches();
            let mut e = session.event(&session.principal, "initialize", "success", Some("initialize"));
            e.detail = Some(format!("session taken up, protocol {negotiated}"));
            shared.audit.commit(e).await.map_err(|e| e.to_error_object())?;
            let session: Arc<dyn Session> = session;
            Ok(session)
        }
        .boxed()
    }
}

/// A session of `principal` with what its `initialize` carried, and the version negotiated.
fn open_session(
    shared: &Arc<Shared>,
    params: &Value,
    peer: Peer,
    principal: Arc<Principal>,
    origin: crate::server::Origin,
) -> (Arc<RelaySession>, &'static str) {
    let negotiated = version::negotiate(params.get("protocolVersion").and_then(Value::as_str));
    let client_caps = params.get("capabilities").cloned().unwrap_or_else(|| json!({}));
    let client_info = params.get("clientInfo").cloned().unwrap_or_else(|| json!({"name": "unknown", "version": "0"}));
    let upstream_init = json!({
        "protocolVersion": negotiated,
        "capabilities": client_caps,
        "clientInfo": client_info,
    });
    let session_tag = warden_audit::event::digest(&Value::String(origin.session))[..16].to_string();
    let taint = crate::taint::Taint::new(&session_tag, origin.stateless.then(|| principal.binding_key()).as_deref());
    let session = Arc::new_cyclic(|me| RelaySession {
        slots: shared
            .specs
            .iter()
            .map(|_| Slot { conn: tokio::sync::Mutex::new(None), retry_at: Mutex::new(None) })
            .collect(),
        shared: shared.clone(),
        peer,
        principal,
        client_caps,
        taint,
        session_tag,
        client_addr: origin.client.map(|a| a.to_string()),
        stateless: origin.stateless,
        upstream_init,
        routes: Mutex::new(Routes::default()),
        closed: AtomicBool::new(false),
        gone: tokio_util::sync::CancellationToken::new(),
        me: me.clone(),
    });
    (session, negotiated)
}

/// The capabilities Warden announces: the union of the upstreams'.
pub fn merge_capabilities<'a>(
    inits: impl Iterator<Item = &'a ServerInit> + Clone,
    extensions: &crate::extensions::Extensions,
) -> Value {
    let mut caps = Map::new();
    if let Some(e) = extensions.merge(inits.clone().map(|i| &i.capabilities)) {
        caps.insert("extensions".into(), e);
    }
    let flag = |v: &Value, k: &str| v.get(k).and_then(Value::as_bool).unwrap_or(false);
    for i in inits {
        let c = &i.capabilities;
        for (cap, flags) in [
            ("tools", &["listChanged"][..]),
            ("prompts", &["listChanged"]),
            ("resources", &["subscribe", "listChanged"]),
        ] {
            if let Some(v) = c.get(cap) {
                // Warden's own listings change when a kill switch flips, whatever the upstream says.
                let e = caps.entry(cap).or_insert_with(|| json!({"listChanged": true}));
                for f in flags {
                    if flag(v, f) {
                        e[*f] = true.into();
                    }
                }
            }
        }
        for cap in ["logging", "completions"] {
            if c.get(cap).is_some() {
                caps.entry(cap).or_insert_with(|| json!({}));
            }
        }
    }
    Value::Object(caps)
}

/// The upstreams' `instructions`, each pinned and scanned like a definition and put through the
/// output stages (issue 20, finding 4: they reach the model's context raw otherwise), labelled
/// with its upstream; `None` when none is left. Instructions that changed since pinned (until an
/// operator approves them), that are poisoned under `scan = "block"` or that read as an
/// injection under `injection = "block"` are left out, logged and recorded.
fn merge_instructions(shared: &Shared, inits: &[Option<ServerInit>]) -> Option<String> {
    let mut parts = Vec::new();
    for (spec, init) in shared.specs.iter().zip(inits) {
        let Some(text) = init.as_ref().and_then(|i| i.instructions.as_deref()) else { continue };
        // Pinned and scanned like a definition (changed or poisoned: left out; the registry
        // logs and records why), then through the output stages.
        if !shared.registry.vet_instructions(&spec.name, text) {
            tracing::warn!(upstream = %spec.name, "server instructions withheld (changed since pinned, unpinned or poisoned)");
            continue;
        }
        let (kept, report) = shared.content.process_instructions(&spec.name, text);
        let findings: Vec<String> = report.injection.findings.iter().map(|f| format!("injection:{}", f.rule)).collect();
        match kept {
            Some(t) => parts.push(format!("[{}] {t}", spec.name)),
            None => {
                tracing::warn!(upstream = %spec.name, findings = ?findings, "server instructions withheld: they read as a prompt injection");
                let mut e = warden_audit::Event::new("scan", "blocked_by_guard");
                e.decision = Some("denied".into());
                e.detail = Some("instructions".into());
                e.server = Some(spec.name.clone());
                e.name = Some("instructions".into());
                e.findings = findings;
                shared.audit.emit(e);
            }
        }
    }
    (!parts.is_empty()).then(|| parts.join("\n\n"))
}

impl Session for RelaySession {
    fn header_params(
        self: Arc<Self>,
        tool: String,
    ) -> BoxFuture<'static, Option<Vec<warden_protocol::param_headers::HeaderParam>>> {
        async move {
            // As routing does: a name not in the last listing refreshes it (at most once a second).
            let (i, orig, _) = self.resolve_name("tools", &tool).await?;
            self.vetted(i, &orig).map(|v| v.header_params.clone())
        }
        .boxed()
    }

    fn request(
        self: Arc<Self>,
        id: jsonrpc::Id,
        method: String,
        params: Option<Value>,
        peer: Peer,
        caller: Option<Arc<Principal>>,
    ) -> BoxFuture<'static, Result<Value, ErrorObject>> {
        async move {
            // Each request is authorized as whoever sent it (its own token's scopes and roles),
            // not as whoever opened the session; the transport has checked it is the same caller.
            let p = caller.unwrap_or_else(|| self.principal.clone());
            // A stateless (2026-07-28) request says so in its `_meta`; its answer gets that
            // revision's shape (`resultType`, cache fields, resource-not-found as -32602).
            let stateless = params
                .as_ref()
                .and_then(|p| p.get("_meta"))
                .is_some_and(|m| m.get(crate::server::stateless::META_VERSION).is_some());
            let uri = stateless.then(|| params.as_ref().and_then(|p| p.get("uri")).cloned()).flatten();
            // Those `_meta` fields describe the client's hop to Warden, not Warden's to the
            // upstream (a 2025 upstream on HTTP would even take the request for a stateless one).
            let mut params = params;
            if stateless {
                if let Some(m) = params.as_mut().and_then(|p| p.get_mut("_meta")).and_then(Value::as_object_mut) {
                    // (The log level stays: a 2026 upstream sends log messages only to a request that
                    // names one; `mrtr.rs` filters what reaches the client by it too.)
                    m.retain(|k, _| {
                        !k.starts_with("io.modelcontextprotocol/") || k == crate::server::stateless::META_LOG_LEVEL
                    });
                }
            }
            let mut r = pipeline::handle(&self, &p, &id, &method, params, peer).await.map_err(|e| e.to_error_object());
            if stateless {
                match &mut r {
                    Ok(v) => crate::server::stateless::shape_result(&method, v),
                    Err(e) => crate::server::stateless::shape_error(&json!({ "uri": uri }), e),
                }
            }
            r
        }
        .boxed()
    }

    fn notification(self: Arc<Self>, method: String, params: Option<Value>) {
        match method.as_str() {
            "notifications/initialized" => {}
            "notifications/roots/list_changed" => {
                tokio::spawn(async move {
                    for i in 0..self.slots.len() {
                        if let Some(c) = self.live_conn(i).await {
                            c.notify(&method, params.clone()).await;
                        }
                    }
                });
            }
            other => tracing::debug!(method = other, "client notification not relayed"),
        }
    }

    fn close(self: Arc<Self>) -> BoxFuture<'static, ()> {
        async move {
            self.closed.store(true, Ordering::Relaxed);
            self.gone.cancel();
            let mut leases = Vec::new();
            for (i, s) in self.slots.iter().enumerate() {
                if let Some(c) = s.conn.lock().await.take() {
                    leases.push((i, c));
                }
            }
            join_all(leases.into_iter().map(|(i, c)| self.leave(i, c))).await;
        }
        .boxed()
    }
}
