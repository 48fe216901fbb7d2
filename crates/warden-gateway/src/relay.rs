//! Warden's [`Service`]: one client session relayed to every configured upstream.
//!
//! Each client session gets its own connection to each upstream (a child process or an HTTP
//! session), opened at `initialize`, so that what an upstream asks of "its client" (sampling,
//! elicitation, roots), its log level and its subscriptions belong to exactly one client.
//! Listings are fanned out and merged; calls are routed by the exposed name or URI.

use crate::error::GatewayError;
use crate::namespace::{self, Namespaces};
use crate::pipeline::{self, Method};
use crate::policy::SessionOp;
use crate::registry::PinKind;
use crate::rpc::Peer;
use crate::server::{Initialized, Service, Session};
use crate::upstream::{Conn, Listing, ServerHandler, ServerInit, Spec};
use futures::future::{join_all, BoxFuture};
use futures::FutureExt;
use parking_lot::Mutex;
use serde_json::{json, Map, Value};
use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Weak};
use std::time::{Duration, Instant};
use warden_policy::rules::Kind;
use warden_policy::Principal;
use warden_protocol::jsonrpc::{self, ErrorObject, Message};
use warden_protocol::version;

const MAX_BACKOFF: Duration = Duration::from_secs(30);

/// What is shared by all sessions.
pub struct Shared {
    pub specs: Vec<Spec>,
    pub ns: Namespaces,
    pub http: reqwest::Client,
    /// What each upstream said to Warden's control connection, when it is up. Sessions answer
    /// `initialize` from this and connect to the upstream on first use.
    pub known: Vec<Mutex<Option<ServerInit>>>,
    /// Authorization, limits and kill switches.
    pub policy: Arc<crate::policy::Policy>,
    /// Calls held for a person's decision.
    pub approvals: Arc<crate::approval::Approvals>,
    /// Argument and output checks.
    pub content: Arc<crate::content::Content>,
    /// Pins and the poisoning scan of tool definitions.
    pub registry: Arc<crate::registry::Registry>,
    /// The audit trail and metrics.
    pub audit: Arc<crate::audit::Audit>,
    /// Where spans go (`[telemetry] traces_url`).
    pub traces: Option<Arc<crate::trace::Exporter>>,
}

/// The relay service.
pub struct Relay {
    pub shared: Arc<Shared>,
}

/// A client-visible name or URI → (upstream, upstream's own name or URI, effectively read-only).
type RouteTable = HashMap<String, (usize, String, bool)>;

#[derive(Default)]
struct Routes {
    tools: RouteTable,
    prompts: RouteTable,
    resources: RouteTable,
    /// Tools and prompts the policy hides from this session (`tools:`/`prompts:` + name), so a
    /// call to one is recorded as denied, with its rule, not as unknown.
    hidden: RouteTable,
    refreshed: Option<Instant>,
    /// Kill-switch generation at the last tools listing.
    kill_gen: u64,
    /// The vetted definition of each listed tool, by (upstream, its own name).
    vetted: HashMap<(usize, String), Arc<crate::registry::Vetted>>,
}

struct Slot {
    conn: tokio::sync::Mutex<Option<Arc<Conn>>>,
    retry_at: Mutex<Option<(Instant, Duration)>>,
}

pub struct RelaySession {
    pub shared: Arc<Shared>,
    peer: Peer,
    /// Who opened this session; the policy stages read it.
    pub principal: Arc<Principal>,
    pub client_caps: Value,
    /// A digest of the transport's session id (the id itself is not recorded) and the client's
    /// address, for audit records.
    pub session_tag: String,
    pub client_addr: Option<String>,
    upstream_init: Value,
    slots: Vec<Slot>,
    routes: Mutex<Routes>,
    closed: AtomicBool,
    /// Ends this session's background tasks.
    gone: tokio_util::sync::CancellationToken,
    me: Weak<RelaySession>,
}

impl Service for Relay {
    fn initialize(
        &self,
        params: Value,
        peer: Peer,
        principal: Arc<Principal>,
        origin: crate::server::Origin,
    ) -> BoxFuture<'static, Result<Initialized, ErrorObject>> {
        let shared = self.shared.clone();
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
            let negotiated = version::negotiate(params.get("protocolVersion").and_then(Value::as_str));
            let client_caps = params.get("capabilities").cloned().unwrap_or_else(|| json!({}));
            let client_info =
                params.get("clientInfo").cloned().unwrap_or_else(|| json!({"name": "unknown", "version": "0"}));
            let upstream_init = json!({
                "protocolVersion": negotiated,
                "capabilities": client_caps,
                "clientInfo": client_info,
            });
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
                session_tag: warden_audit::event::digest(&Value::String(origin.session))[..16].to_string(),
                client_addr: origin.client.map(|a| a.to_string()),
                upstream_init,
                routes: Mutex::new(Routes::default()),
                closed: AtomicBool::new(false),
                gone: tokio_util::sync::CancellationToken::new(),
                me: me.clone(),
            });
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
                    match known {
                        Some(k) => Some(k),
                        None => s.conn(i).await.ok().and_then(|c| c.init()),
                    }
                }
            }))
            .await;
            let mut result = json!({
                "protocolVersion": negotiated,
                "capabilities": merge_capabilities(inits.iter().flatten()),
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
}

/// The capabilities Warden announces: the union of the upstreams'.
pub fn merge_capabilities<'a>(inits: impl Iterator<Item = &'a ServerInit>) -> Value {
    let mut caps = Map::new();
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
    fn header_params(&self, tool: &str) -> Option<Vec<warden_protocol::param_headers::HeaderParam>> {
        let routes = self.routes.lock();
        let (i, orig, _) = routes.tools.get(tool)?;
        routes.vetted.get(&(*i, orig.clone())).map(|v| v.header_params.clone())
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
                    m.retain(|k, _| !k.starts_with("io.modelcontextprotocol/"));
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
            let conns: Vec<Arc<Conn>> = {
                let mut v = Vec::new();
                for s in &self.slots {
                    if let Some(c) = s.conn.lock().await.take() {
                        v.push(c);
                    }
                }
                v
            };
            join_all(conns.iter().map(|c| c.close())).await;
        }
        .boxed()
    }
}

impl RelaySession {
    /// An audit event of this session: who, from where, which method.
    /// An audit event of this session, as `p` (the request's caller).
    pub fn event(&self, p: &Principal, kind: &str, status: &str, method: Option<&str>) -> warden_audit::Event {
        let mut e = warden_audit::Event::new(kind, status);
        crate::audit::Audit::principal(&mut e, p);
        e.session = Some(self.session_tag.clone());
        e.client_addr.clone_from(&self.client_addr);
        e.method = method.map(str::to_string);
        e
    }

    /// May this session's principal reach upstream `i` at all (per-tenant upstreams)?
    pub fn reaches(&self, i: usize) -> bool {
        self.shared.specs[i].for_tenant(self.principal.tenant.as_deref()).is_some()
    }

    /// A kill switch flipped (here or on another replica): what this session may list changed.
    fn follow_kill_switches(&self) {
        let mut rx = self.shared.policy.kills.subscribe();
        let me = self.me.clone();
        let gone = self.gone.clone();
        tokio::spawn(async move {
            loop {
                tokio::select! {
                    _ = gone.cancelled() => return,
                    r = rx.changed() => if r.is_err() { return },
                }
                let Some(s) = me.upgrade() else { return };
                s.routes.lock().refreshed = None;
                let peer = s.peer.session_level();
                for kind in ["tools", "prompts", "resources"] {
                    peer.notify(&format!("notifications/{kind}/list_changed"), None);
                }
            }
        });
    }

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

    async fn live_conn(&self, i: usize) -> Option<Arc<Conn>> {
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

    /// Fan a listing out to every upstream that has the capability, rename, and merge.
    /// Colliding names are withheld from the answer and from routing.
    pub async fn list(&self, method: Method, p: &Principal) -> Result<Value, GatewayError> {
        let (cap, field) = method.listing().ok_or(GatewayError::MethodNotFound)?;
        let ns = &self.shared.ns;
        let kind = match cap {
            "tools" => Kind::Tool,
            "prompts" => Kind::Prompt,
            _ => Kind::Resource,
        };
        // An upstream that could show this caller nothing is not asked, so not started either.
        let ups: Vec<usize> =
            (0..self.slots.len()).filter(|&i| self.reaches(i) && self.shared.policy.may_list(p, i, kind)).collect();
        let pages = join_all(ups.iter().map(|&i| async move {
            match self.conn(i).await {
                Ok(c) if c.has_capability(cap) => (
                    i,
                    c.list_all(method.as_str(), field, self.shared.content.max_definitions()).await.map_err(GatewayError::from),
                ),
                Ok(_) => (i, Ok(Listing::default())),
                Err(e) => (i, Err(e)),
            }
        }))
        .await;
        let key = if field == "resourceTemplates" {
            "uriTemplate"
        } else if cap == "resources" {
            "uri"
        } else {
            "name"
        };
        let mut entries: Vec<(String, usize, String, Value)> = Vec::new();
        for (i, res) in pages {
            let items = match res {
                Ok(l) => {
                    if l.dropped > 0 || l.more {
                        self.shared.registry.over_cap(&self.shared.specs[i].name, field, l.dropped.max(1));
                    }
                    l.items
                }
                Err(e) => {
                    tracing::warn!(upstream = %self.shared.specs[i].name, method = method.as_str(), error = %e, "listing failed; upstream left out");
                    continue;
                }
            };
            for item in items {
                let Some(orig) = item.get(key).and_then(Value::as_str).map(str::to_string) else {
                    continue;
                };
                let exposed = match cap {
                    "tools" => match ns.tool_name(i, &orig) {
                        Some(n) => n,
                        None => {
                            tracing::warn!(upstream = %self.shared.specs[i].name, "tool with an invalid name withheld");
                            continue;
                        }
                    },
                    "prompts" => ns.name(i, &orig),
                    _ => ns.uri(i, &orig),
                };
                entries.push((exposed, i, orig, item));
            }
        }
        let mut count: HashMap<&str, usize> = HashMap::new();
        for (e, ..) in &entries {
            *count.entry(e.as_str()).or_default() += 1;
        }
        let dup: std::collections::HashSet<String> =
            count.into_iter().filter(|(_, n)| *n > 1).map(|(e, _)| e.to_string()).collect();
        let mut out: Vec<Value> = Vec::with_capacity(entries.len());
        let mut table: RouteTable = HashMap::new();
        let mut vetted = HashMap::new();
        let mut hidden: RouteTable = HashMap::new();
        let policy = &self.shared.policy;
        let pin_kind = match key {
            "uri" => PinKind::Resource,
            "uriTemplate" => PinKind::ResourceTemplate,
            _ if kind == Kind::Tool => PinKind::Tool,
            _ => PinKind::Prompt,
        };
        // Vetting (scan, schema compile, pins) of a big listing is CPU work: off the async worker.
        let big = entries.len() > 64;
        crate::blocking::heavy(big, || {
            for (exposed, i, orig, mut item) in entries {
                if dup.contains(&exposed) {
                    tracing::warn!(name = %exposed, upstream = %self.shared.specs[i].name, "name collision; withheld");
                    continue;
                }
                let read_only = policy.read_only(i, kind, &orig, Some(&item));
                if !policy.visible(p, i, kind, &orig, read_only) {
                    if kind != Kind::Resource && hidden.len() < 10_000 {
                        hidden.insert(format!("{cap}:{exposed}"), (i, orig, read_only));
                    }
                    continue;
                }
                let server = &self.shared.specs[i].name;
                match kind {
                    Kind::Tool => match self.shared.registry.vet(&self.shared.content, server, &orig, &item) {
                        Ok(v) => {
                            vetted.insert((i, orig.clone()), v);
                        }
                        Err(_) => continue, // logged by the registry
                    },
                    _ if !self.shared.registry.vet_other(pin_kind, server, &orig, &item) => continue,
                    _ => {}
                }
                if kind == Kind::Tool {
                    // Clients see the effective classification, not the upstream's claim.
                    if !item.get("annotations").is_some_and(Value::is_object) {
                        item["annotations"] = json!({});
                    }
                    item["annotations"]["readOnlyHint"] = read_only.into();
                    if !read_only {
                        item["annotations"]["destructiveHint"] = true.into();
                    }
                }
                item[key] = Value::String(exposed.clone());
                table.insert(exposed, (i, orig, read_only));
                out.push(item);
            }
            self.shared.registry.settle();
        });
        {
            let mut r = self.routes.lock();
            if cap != "resources" {
                r.hidden.retain(|k, _| !k.starts_with(cap));
                r.hidden.extend(hidden);
            }
            match cap {
                "tools" => r.tools = table,
                "prompts" => r.prompts = table,
                _ if key == "uri" => r.resources = table,
                _ => {}
            }
            if cap == "tools" {
                r.vetted = vetted;
                r.refreshed = Some(Instant::now());
                r.kill_gen = policy.kills.generation();
            }
        }
        Ok(json!({ field: out }))
    }

    /// Resolve a tool or prompt name, refreshing the listing at most once a second on a miss:
    /// (upstream, its own name, effectively read-only).
    pub async fn resolve_name(&self, kind: &str, name: &str) -> Option<(usize, String, bool)> {
        let lookup = |r: &Routes| {
            if kind == "tools" {
                r.tools.get(name).cloned()
            } else {
                r.prompts.get(name).cloned()
            }
        };
        if let Some(hit) = lookup(&self.routes.lock()) {
            return Some(hit);
        }
        let stale = {
            let r = self.routes.lock();
            r.refreshed.is_none_or(|t| t.elapsed() > Duration::from_secs(1))
                || r.kill_gen != self.shared.policy.kills.generation()
                || (kind == "prompts" && r.prompts.is_empty())
        };
        if stale {
            let _ = self.list(if kind == "tools" { Method::ToolsList } else { Method::PromptsList }, &self.principal).await;
        }
        lookup(&self.routes.lock())
    }

    /// A tool or prompt (`kind` `tools` or `prompts`) the policy hides from this session, as of
    /// the last listing: (upstream, its own name, effectively read-only).
    pub fn hidden(&self, kind: &str, name: &str) -> Option<(usize, String, bool)> {
        self.routes.lock().hidden.get(&format!("{kind}:{name}")).cloned()
    }

    /// The vetted definition of upstream `up`'s tool `name` (its own name), from the last listing.
    pub fn vetted(&self, up: usize, name: &str) -> Option<Arc<crate::registry::Vetted>> {
        self.routes.lock().vetted.get(&(up, name.to_string())).cloned()
    }

    /// Resolve a client-visible resource URI.
    pub async fn resolve_uri(&self, uri: &str) -> Option<(usize, String)> {
        if let Some(hit) = self.shared.ns.resolve_uri(uri) {
            return Some(hit);
        }
        if let Some((up, orig, _)) = self.routes.lock().resources.get(uri).cloned() {
            return Some((up, orig));
        }
        let unprefixed: Vec<usize> = self.shared.ns.unprefixed().collect();
        match unprefixed.as_slice() {
            [one] => Some((*one, uri.to_string())),
            [] => None,
            _ => {
                let _ = self.list(Method::ResourcesList, &self.principal).await;
                self.routes.lock().resources.get(uri).map(|(up, orig, _)| (*up, orig.clone()))
            }
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

    /// Rewrite URIs in a `resources/read` result to the client-visible form.
    pub fn rewrite_contents(&self, i: usize, mut result: Value) -> Value {
        if let Some(Value::Array(items)) = result.get_mut("contents") {
            for it in items {
                if let Some(u) = it.get("uri").and_then(Value::as_str) {
                    let n = self.shared.ns.uri(i, u);
                    it["uri"] = n.into();
                }
            }
        }
        result
    }
}

/// Reports beyond this many are counted, not listed (a hostile upstream can make thousands).
const MAX_REPORTS: usize = 100;

/// Report names claimed by more than one upstream (startup and on change).
pub fn report_collisions(names: &[(String, Vec<String>)]) -> Vec<String> {
    let mut c = namespace::collisions(names.iter().map(|(u, n)| (u.as_str(), n.clone())));
    cap_reports(&mut c, "collisions");
    for m in &c {
        tracing::error!(collision = %m, "federation name collision: both entries are withheld from clients");
    }
    c
}

/// Report tool names of different upstreams that look alike (`send_email` and `send-emai1`): a
/// server shadowing another's tool to catch calls meant for it. Both stay listed; operators
/// decide (a kill switch or a deny rule). One line per group of look-alikes.
pub fn report_confusables(tools: &[(String, String)]) -> Vec<String> {
    let mut out: Vec<String> = warden_policy::scan::confusable_groups(tools)
        .into_iter()
        .map(|g| {
            let shown: Vec<String> = g[1..].iter().take(4).map(|(s, t)| format!("{s}:{t}")).collect();
            let more = if g.len() > 5 { format!(" (and {} more)", g.len() - 5) } else { String::new() };
            format!("{}:{} looks like {}{more}", g[0].0, g[0].1, shown.join(", "))
        })
        .collect();
    cap_reports(&mut out, "look-alike groups");
    for m in &out {
        tracing::warn!(confusable = %m, "tool names of two upstreams look alike (shadowing?)");
    }
    out
}

fn cap_reports(v: &mut Vec<String>, what: &str) {
    if v.len() > MAX_REPORTS {
        let n = v.len() - MAX_REPORTS;
        v.truncate(MAX_REPORTS);
        v.push(format!("… and {n} more {what}"));
    }
}
