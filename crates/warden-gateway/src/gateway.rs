//! Assembling and running Warden: resolve the config, start the control connection of each
//! upstream (readiness and collision reports), serve `/mcp`, `/healthz` and `/readyz` on a
//! hardened HTTP listener, or one client over stdio; shut everything down cleanly.

use crate::approval::Approvals;
use crate::auth::Authenticator;
use crate::config::{Config, StoreBackend};
use crate::killswitch::KillSwitches;
use crate::namespace::Namespaces;
use crate::policy::Policy;
use crate::relay::{report_collisions, report_confusables, Relay, Shared};
use crate::server::http::Authenticate;
use crate::server::http::{HttpOptions, McpEndpoint};
use crate::server::Service;
use crate::store::memory::MemoryStore;
use crate::store::redis::RedisStore;
use crate::store::Store;
use crate::tls::TlsState;
use crate::upstream::{Conn, ServerHandler, Spec};
use axum::body::Body;
use axum::extract::State;
use axum::response::IntoResponse;
use axum::routing::{any, get};
use axum::Router;
use http::{Request, StatusCode};
use parking_lot::Mutex;
use serde_json::{json, Value};
use std::future::Future;
use std::sync::Arc;
use std::time::Duration;
use tokio::net::TcpListener;

use crate::listener::{serve_router, ListenLimits};

/// What one upstream lists: the client-visible `cap:name` entries and the tools' own names.
#[derive(Clone)]
struct Listed {
    entries: Vec<String>,
    tools: Vec<String>,
}

/// Control connections: one per upstream, Warden's own, for readiness and name collisions.
pub struct Control {
    shared: Arc<Shared>,
    conns: Vec<Mutex<Option<Arc<Conn>>>>,
    names: Mutex<Vec<Option<Listed>>>,
    collisions: Mutex<Vec<String>>,
    /// Look-alike tool names offered by different upstreams (shadowing).
    confusables: Mutex<Vec<String>>,
    /// Successful connects of each control connection (restarts + 1).
    connects: Vec<std::sync::atomic::AtomicU64>,
    /// Each upstream's name refresh: 0 idle, 1 running, 2 running with another asked for.
    refreshing: Vec<std::sync::atomic::AtomicU8>,
    /// Token issuers, whose keys readiness waits for.
    auth: Option<Arc<Authenticator>>,
}

impl Control {
    fn new(shared: Arc<Shared>, auth: Option<Arc<Authenticator>>) -> Arc<Control> {
        let n = shared.specs.len();
        Arc::new(Control {
            shared,
            conns: (0..n).map(|_| Mutex::new(None)).collect(),
            names: Mutex::new(vec![None; n]),
            collisions: Mutex::new(vec![]),
            confusables: Mutex::new(vec![]),
            connects: (0..n).map(|_| Default::default()).collect(),
            refreshing: (0..n).map(|_| Default::default()).collect(),
            auth,
        })
    }

    /// Each upstream: name, connected, restarts (reconnects after the first connect).
    pub fn health(&self) -> Vec<(String, bool, u64)> {
        self.shared
            .specs
            .iter()
            .zip(&self.conns)
            .zip(&self.connects)
            .map(|((s, c), n)| {
                let up = c.lock().as_ref().is_some_and(|c| c.is_alive());
                (s.name.clone(), up, n.load(std::sync::atomic::Ordering::Relaxed).saturating_sub(1))
            })
            .collect()
    }

    /// Keep each control connection up (reconnecting with backoff) for the life of `self`.
    fn start(self: &Arc<Self>) {
        for i in 0..self.shared.specs.len() {
            let me = Arc::downgrade(self);
            tokio::spawn(async move {
                let mut backoff = Duration::from_millis(500);
                // A refused program is audited once per streak of refusals, not per retry.
                let mut refused = false;
                loop {
                    let Some(c) = me.upgrade() else { return };
                    let alive = c.conns[i].lock().as_ref().is_some_and(|c| c.is_alive());
                    if !alive {
                        let spec = &c.shared.specs[i];
                        let init = json!({"protocolVersion": warden_protocol::version::LATEST, "capabilities": {},
                                          "clientInfo": {"name": "warden-control", "version": env!("CARGO_PKG_VERSION")}});
                        let me2 = me.clone();
                        let handler: ServerHandler = Arc::new(move |conn: &Arc<Conn>, msg, _| {
                            if let Some(m) = msg.method() {
                                if m.ends_with("/list_changed") {
                                    if let Some(c) = me2.upgrade() {
                                        c.schedule_refresh(i, conn.clone());
                                    }
                                }
                            }
                        });
                        match Conn::connect(spec, init, handler, &c.shared.http).await {
                            Ok(conn) => {
                                tracing::info!(upstream = %spec.name, protocol = %conn.init().map(|i| i.protocol_version).unwrap_or_default(), "upstream ready");
                                c.connects[i].fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                                *c.conns[i].lock() = Some(conn.clone());
                                *c.shared.known[i].lock() = conn.init();
                                if let Some(text) = conn.init().and_then(|i| i.instructions) {
                                    c.shared.registry.vet_instructions(&spec.name, &text);
                                }
                                c.refresh_names(i, &conn).await;
                                backoff = Duration::from_millis(500);
                                refused = false;
                            }
                            Err(e) => {
                                tracing::warn!(upstream = %spec.name, error = %e, retry_in = ?backoff, "upstream not ready");
                                if e.starts_with(crate::upstream::program::CHANGED) && !refused {
                                    refused = true;
                                    let mut ev = warden_audit::Event::new("supply_chain", "blocked_by_guard");
                                    ev.decision = Some("denied".into());
                                    ev.server = Some(spec.name.clone());
                                    ev.detail = Some(e.clone());
                                    c.shared.audit.emit(ev);
                                }
                                *c.conns[i].lock() = None;
                                drop(c);
                                tokio::time::sleep(backoff).await;
                                backoff = (backoff * 2).min(Duration::from_secs(30));
                                continue;
                            }
                        }
                    }
                    drop(c);
                    tokio::time::sleep(Duration::from_secs(2)).await;
                }
            });
        }
    }

    /// A `list_changed` from upstream `i`: refresh its names, debounced. At most one refresh
    /// runs per upstream, at most one more is queued however many notifications arrive meanwhile
    /// (a storm costs one listing per `REFRESH_GAP`, not one per notification), and refreshes
    /// of one upstream are `REFRESH_GAP` apart.
    fn schedule_refresh(self: Arc<Self>, i: usize, mut conn: Arc<Conn>) {
        use std::sync::atomic::Ordering::AcqRel;
        const REFRESH_GAP: Duration = Duration::from_secs(1);
        let state = &self.refreshing[i];
        if state.fetch_update(AcqRel, std::sync::atomic::Ordering::Acquire, |s| Some(if s == 0 { 1 } else { 2 }))
            != Ok(0)
        {
            return;
        }
        tokio::spawn(async move {
            loop {
                // The connection of now: it may have been replaced since the notification.
                if let Some(c) = self.conns[i].lock().as_ref().filter(|c| c.is_alive()) {
                    conn = c.clone();
                }
                self.refresh_names(i, &conn).await;
                tokio::time::sleep(REFRESH_GAP).await;
                // 1 → 0: nothing more was asked for; 2 → 1: once more.
                if self.refreshing[i].compare_exchange(1, 0, AcqRel, std::sync::atomic::Ordering::Acquire).is_ok() {
                    return;
                }
                self.refreshing[i].store(1, std::sync::atomic::Ordering::Release);
            }
        });
    }

    /// Re-read upstream `i`'s tool and prompt names and re-check collisions and look-alikes.
    async fn refresh_names(&self, i: usize, conn: &Arc<Conn>) {
        let mut names = Vec::new();
        let mut tools = Vec::new();
        for (cap, method, field) in [("tools", "tools/list", "tools"), ("prompts", "prompts/list", "prompts")] {
            if !conn.has_capability(cap) {
                continue;
            }
            // A listing that fails keeps what was known (a dead connection must not empty the
            // collision and look-alike reports).
            let Ok(l) = conn.list_all(method, field, self.shared.content.max_definitions()).await else { return };
            if l.dropped > 0 || l.more {
                self.shared.registry.over_cap(&self.shared.specs[i].name, field, l.dropped.max(1));
            }
            let items = l.items;
            for it in &items {
                if let Some(n) = it.get("name").and_then(Value::as_str) {
                    names.push(format!("{cap}:{}", self.shared.ns.name(i, n)));
                    if cap == "tools" {
                        tools.push(n.to_string());
                    }
                }
            }
        }
        let mut all = Vec::new();
        let mut all_tools = Vec::new();
        // The reports are written while the listings are held: two upstreams refreshing at once
        // cannot leave the report of the one that saw less (a stale, empty one) as the last.
        let mut g = self.names.lock();
        g[i] = Some(Listed { entries: names, tools });
        for (s, l) in self.shared.specs.iter().zip(g.iter()).filter_map(|(s, l)| Some((s, l.as_ref()?))) {
            all.push((s.name.clone(), l.entries.clone()));
            all_tools.extend(l.tools.iter().map(|t| (s.name.clone(), t.clone())));
        }
        let big = all_tools.len() > 1000;
        let (collisions, confusables) =
            crate::blocking::heavy(big, || (report_collisions(&all), report_confusables(&all_tools)));
        *self.collisions.lock() = collisions;
        *self.confusables.lock() = confusables;
        drop(g);
    }

    pub fn status(&self) -> (bool, Value) {
        let mut ready = true;
        let mut ups = serde_json::Map::new();
        for (s, c) in self.shared.specs.iter().zip(&self.conns) {
            let ok = c.lock().as_ref().is_some_and(|c| c.is_alive());
            ready &= ok;
            ups.insert(s.name.clone(), (if ok { "ready" } else { "unavailable" }).into());
        }
        // An issuer without keys is reported, but does not make the replica unready: API keys,
        // other issuers and mTLS still work, and every replica shares the issuer's outage.
        let mut issuers = serde_json::Map::new();
        for (iss, st) in self.auth.iter().flat_map(|a| a.key_status()) {
            let state = match (st.keys, st.failures) {
                (0, 0) => "no keys yet".to_string(),
                (0, n) => format!("no keys: {n} failed fetch(es), retrying"),
                (k, 0) => format!("{k} key(s)"),
                (k, n) => format!("{k} key(s); refresh failing ({n} failed fetch(es))"),
            };
            issuers.insert(iss, state.into());
        }
        // Each started stdio upstream's sandbox layers that are not in force: reported, never a
        // reason to be unready (`strict` is the setting that refuses to run without them).
        let mut sandbox = serde_json::Map::new();
        for (s, c) in self.shared.specs.iter().zip(&self.conns) {
            if let Some(r) = c.lock().as_ref().and_then(|c| c.sandbox_report()) {
                sandbox.insert(s.name.clone(), json!({"missing": r.missing(), "partial": r.partial()}));
            }
        }
        let mut body = json!({"ready": ready, "upstreams": ups, "collisions": *self.collisions.lock(),
                              "confusable_tools": *self.confusables.lock()});
        if !issuers.is_empty() {
            body["issuers"] = issuers.into();
        }
        if !sandbox.is_empty() {
            body["sandbox"] = sandbox.into();
        }
        (ready, body)
    }

    async fn close(&self) {
        let conns: Vec<Arc<Conn>> = self.conns.iter().filter_map(|c| c.lock().take()).collect();
        futures::future::join_all(conns.iter().map(|c| c.close())).await;
    }
}

/// A configured, not yet running gateway.
pub struct Gateway {
    pub cfg: Config,
    pub shared: Arc<Shared>,
    pub auth: Option<Arc<Authenticator>>,
}

/// Where kill-switch state is kept (memory store).
pub fn kill_switch_path(a: &crate::config::Admin, cfg: &Config) -> std::path::PathBuf {
    cfg.path(&a.state_file.clone().unwrap_or_else(|| "warden-data/kill-switches.json".into()))
}

/// The `[store]` backend.
pub fn open_store(cfg: &Config) -> Result<Arc<dyn Store>, String> {
    let st = &cfg.store;
    Ok(match st.backend {
        StoreBackend::Memory => Arc::new(MemoryStore::new(cfg.admin.as_ref().map(|a| kill_switch_path(a, cfg)))?),
        StoreBackend::Redis => {
            let mut url = st.url.clone().unwrap_or_default();
            if let Some(pw) = &st.password {
                let pw = pw.resolve().map_err(|e| format!("store.password: {e}"))?;
                let mut u = reqwest::Url::parse(&url).map_err(|e| format!("store.url: {e}"))?;
                u.set_password(Some(&pw)).map_err(|_| "store.url: cannot carry a password".to_string())?;
                url = u.to_string();
            }
            let ca = st
                .ca_file
                .as_ref()
                .map(|f| std::fs::read(f).map_err(|e| format!("store.ca_file {}: {e}", f.display())))
                .transpose()?;
            Arc::new(RedisStore::new(&url, &st.prefix, Duration::from_millis(st.timeout_ms), ca)?)
        }
    })
}

impl Gateway {
    pub async fn new(cfg: Config) -> Result<Gateway, String> {
        // Before any key is created or read: no sandboxed upstream may reach one.
        let mut unsandboxed = Vec::new();
        let exposed = crate::upstream::exposure::exposed_secrets(&cfg, &mut unsandboxed);
        for w in &unsandboxed {
            tracing::warn!("{w}");
        }
        if let Some(first) = exposed.first() {
            return Err(format!(
                "{first}{}",
                if exposed.len() > 1 { format!(" (and {} more)", exposed.len() - 1) } else { String::new() }
            ));
        }
        let specs = cfg.upstreams.iter().map(|u| Spec::from_config(u, &cfg.content)).collect::<Result<Vec<_>, _>>()?;
        let ns = Namespaces::new(
            &cfg.federation.separator,
            cfg.upstreams.iter().map(|u| u.namespace().to_string()).collect(),
        );
        let http = crate::dns::client_builder()
            .connect_timeout(Duration::from_secs(10))
            .pool_idle_timeout(Duration::from_secs(60))
            .build()
            .map_err(|e| format!("HTTP client: {e}"))?;
        let known = specs.iter().map(|_| Mutex::new(None)).collect();
        let audit = crate::audit::Audit::open(&cfg)?;
        let auth = cfg.auth.as_ref().map(|a| Authenticator::new(a, &cfg, http.clone())).transpose()?;
        if let Some(a) = &auth {
            a.set_audit(audit.clone());
        }
        let store = open_store(&cfg)?;
        let kills = KillSwitches::load(store.clone()).await?;
        kills.set_audit(audit.clone());
        kills.follow();
        let policy = Arc::new(Policy::new(&cfg, kills, store.clone())?);
        let approvals = Arc::new(Approvals::new(store, cfg.approval.clone()));
        if policy.rules().is_empty() {
            tracing::warn!("no [[rule]] allows anything: every tool, resource and prompt is hidden and refused");
        }
        let content = Arc::new(crate::content::Content::new(&cfg)?);
        let registry = Arc::new(crate::registry::Registry::new(&cfg.content, &cfg.base_dir, audit.clone())?);
        let traces = match &cfg.telemetry.traces_url {
            Some(url) => {
                let h = crate::config::header_map(&cfg.telemetry.headers, &Default::default())
                    .map_err(|e| format!("telemetry.{e}"))?;
                tracing::info!(url = %url, "exporting traces (OTLP/HTTP JSON)");
                Some(Arc::new(crate::trace::Exporter::start(url, h)?))
            }
            None => None,
        };
        Ok(Gateway {
            cfg,
            shared: Arc::new(Shared { specs, ns, http, known, policy, approvals, content, registry, audit, traces }),
            auth,
        })
    }

    fn service(&self) -> Arc<dyn Service> {
        Arc::new(Relay { shared: self.shared.clone() })
    }

    pub fn http_options(&self) -> HttpOptions {
        let l = &self.cfg.listen;
        HttpOptions {
            max_body_bytes: l.max_body_bytes,
            max_json_depth: l.max_json_depth,
            read_timeout: Duration::from_secs(l.read_timeout_secs),
            idle_timeout: Duration::from_secs(l.session_idle_timeout_secs),
            max_sessions: l.max_sessions,
            max_sessions_per_principal: l.max_sessions_per_principal,
            sse_retry_ms: l.sse_retry_ms,
            sse_grace: Duration::from_millis(l.sse_grace_ms),
            allowed_hosts: l.allowed_hosts.clone(),
            allowed_origins: l.allowed_origins.clone(),
        }
    }

    /// Serve HTTP on `listener` until `shutdown` resolves.
    pub async fn serve(self, listener: TcpListener, shutdown: impl Future<Output = ()>) -> std::io::Result<()> {
        let control = Control::new(self.shared.clone(), self.auth.clone());
        control.start();
        let authn = self.auth.clone().map(|a| {
            a.start();
            a as Arc<dyn Authenticate>
        });
        let endpoint = McpEndpoint::new(self.service(), self.http_options(), authn);
        let mut router = mcp_router(endpoint.clone(), Some(control.clone()));
        if let Some(a) = &self.auth {
            router = router.merge(auth_router(a.clone(), endpoint.clone()));
        }
        let tls = match &self.cfg.listen.tls {
            Some(t) => {
                let scopes = self.cfg.auth.as_ref().map(|a| a.mtls_scopes.clone()).unwrap_or_default();
                let state = TlsState::new(t, scopes).map_err(std::io::Error::other)?;
                state.start_reload();
                Some(state)
            }
            None => None,
        };
        let limits = ListenLimits {
            max_header_bytes: self.cfg.listen.max_header_bytes,
            read_timeout: Duration::from_secs(self.cfg.listen.read_timeout_secs),
            tls,
            trusted_proxies: self.cfg.listen.trusted_proxies.clone(),
            max_connections: self.cfg.listen.max_connections,
            max_connections_per_peer: self.cfg.listen.max_connections_per_client,
            idle_timeout: Duration::from_secs(self.cfg.listen.connection_idle_secs),
        };
        let admin = match &self.cfg.admin {
            Some(a) => {
                let token = a.token.resolve().map_err(|e| std::io::Error::other(format!("admin.token: {e}")))?;
                if token.len() < 32 {
                    return Err(std::io::Error::other("admin.token: at least 32 characters"));
                }
                let resource = match &self.auth {
                    Some(auth) => auth.resource_for(&http::HeaderMap::new(), Some(&listener.local_addr()?.to_string())),
                    None => String::new(),
                };
                let app = crate::admin::router(crate::admin::AdminState {
                    token_hash: crate::digest::sha256(token.as_bytes()),
                    kills: self.shared.policy.kills.clone(),
                    servers: self.cfg.upstreams.iter().map(|u| u.name.clone()).collect(),
                    approvals: self.shared.approvals.clone(),
                    registry: self.shared.registry.clone(),
                    audit: self.shared.audit.clone(),
                    sessions: Some(endpoint.clone()),
                    control: Some(control.clone()),
                    auth: self.auth.clone(),
                    resource,
                });
                let l = TcpListener::bind(a.addr).await?;
                tracing::info!(addr = %l.local_addr()?, "admin API listening");
                Some(tokio::spawn(async move { axum::serve(l, app).await }))
            }
            None => None,
        };
        tracing::info!(addr = %listener.local_addr()?, "warden listening");
        serve_router(listener, router, limits, shutdown).await;
        if let Some(a) = admin {
            a.abort();
        }
        tracing::info!("shutting down: closing sessions and upstreams");
        endpoint.shutdown().await;
        control.close().await;
        let audit = self.shared.audit.clone();
        let _ = tokio::task::spawn_blocking(move || audit.close()).await;
        Ok(())
    }

    /// Serve one client on stdin/stdout.
    pub async fn serve_stdio(self) -> std::io::Result<()> {
        let depth = self.cfg.listen.max_json_depth;
        let r = crate::server::stdio::serve(self.service(), tokio::io::stdin(), tokio::io::stdout(), depth).await;
        let audit = self.shared.audit.clone();
        let _ = tokio::task::spawn_blocking(move || audit.close()).await;
        r
    }
}

#[derive(Clone)]
struct AppState {
    endpoint: Arc<McpEndpoint>,
    control: Option<Arc<Control>>,
}

/// `/mcp` (+ `/healthz`, `/readyz`) for an endpoint; `control` drives readiness when present.
pub fn mcp_router(endpoint: Arc<McpEndpoint>, control: Option<Arc<Control>>) -> Router {
    Router::new()
        .route("/mcp", any(|State(s): State<AppState>, req: Request<Body>| async move { s.endpoint.handle(req).await }))
        .route("/healthz", get(|| async { axum::Json(json!({"status": "ok"})) }))
        .route(
            "/readyz",
            get(|State(s): State<AppState>| async move {
                let (ready, body) = s.control.as_ref().map(|c| c.status()).unwrap_or((true, json!({"ready": true})));
                let code = if ready { StatusCode::OK } else { StatusCode::SERVICE_UNAVAILABLE };
                (code, axum::Json(body))
            }),
        )
        .fallback(|| async { (StatusCode::NOT_FOUND, axum::Json(json!({"error": "not found"}))) })
        .with_state(AppState { endpoint, control })
}

/// Protected resource metadata (RFC 9728) and, when configured, the built-in authorization
/// server; behind the same `Host` check as `/mcp`.
pub fn auth_router(auth: Arc<Authenticator>, endpoint: Arc<McpEndpoint>) -> Router {
    let prm = |State(a): State<Arc<Authenticator>>, req: Request<Body>| async move {
        let resource = a.resource_for(req.headers(), req.uri().authority().map(|x| x.as_str()));
        let mut r = axum::Json(a.metadata(&resource)).into_response();
        r.headers_mut().insert(http::header::ACCESS_CONTROL_ALLOW_ORIGIN, http::HeaderValue::from_static("*"));
        r
    };
    let mut r = Router::new()
        .route("/.well-known/oauth-protected-resource", get(prm))
        .route("/.well-known/oauth-protected-resource/mcp", get(prm))
        .with_state(auth.clone());
    if auth.builtin.is_some() {
        r = r.merge(crate::auth::builtin::router(auth));
    }
    r.route_layer(axum::middleware::from_fn(move |req: Request<Body>, next: axum::middleware::Next| {
        let endpoint = endpoint.clone();
        async move {
            let authority = req.uri().authority().map(|a| a.as_str().to_string());
            match endpoint.check_host(req.headers(), authority.as_deref()) {
                Ok(()) => next.run(req).await,
                Err((status, msg)) => (status, msg).into_response(),
            }
        }
    }))
}
