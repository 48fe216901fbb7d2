//! Assembling and running Warden: resolve the config, start the control connection of each
//! upstream (readiness and collision reports), serve `/mcp`, `/healthz` and `/readyz` on a
//! hardened HTTP listener, or one client over stdio; shut everything down cleanly.

use crate::approval::Approvals;
use crate::auth::Authenticator;
use crate::config::{Config, StoreBackend};
pub use crate::control::Control;
use crate::killswitch::KillSwitches;
use crate::relay::{Relay, Shared};
use crate::reload::{Lasting, Reloader};
use crate::server::http::Authenticate;
use crate::server::http::{Ended, HttpOptions, McpEndpoint, SessionIds};
use crate::server::Service;
use crate::store::memory::MemoryStore;
use crate::store::redis::RedisStore;
use crate::store::Store;
use crate::tls::TlsState;
use arc_swap::ArcSwap;
use axum::body::Body;
use axum::extract::State;
use axum::response::IntoResponse;
use axum::routing::{any, get};
use axum::Router;
use http::{Request, StatusCode};
use serde_json::json;
use std::future::Future;
use std::sync::Arc;
use std::time::Duration;
use tokio::net::TcpListener;

use crate::listener::{serve_router, ListenLimits};

/// A configured, not yet running gateway.
pub struct Gateway {
    pub cfg: Config,
    /// What calls use: swapped whole by a reload (`reload.rs`).
    current: Arc<ArcSwap<Shared>>,
    /// What lasts across reloads.
    lasting: Lasting,
    /// Where the config was read from, when it may be reloaded; how often to look at it for a
    /// change (`--watch-config`).
    config_path: Option<std::path::PathBuf>,
    watch_config: Option<Duration>,
    pub auth: Option<Arc<Authenticator>>,
    /// Sealed 2025 session ids (any replica with the `[cluster] key` takes a session up).
    pub session_ids: Arc<SessionIds>,
}

/// Ended sessions, recorded in the store (shared by replicas on Redis).
struct StoreEnds(Arc<dyn Store>);

impl Ended for StoreEnds {
    fn end<'a>(&'a self, nonce: &'a str, expires: u64) -> futures::future::BoxFuture<'a, Result<(), String>> {
        Box::pin(async move { self.0.revoke_session(nonce, expires).await.map_err(|e| e.0) })
    }
    fn ended<'a>(&'a self, nonce: &'a str, expires: u64) -> futures::future::BoxFuture<'a, Result<bool, String>> {
        Box::pin(async move { self.0.session_revoked(nonce, expires).await.map_err(|e| e.0) })
    }
    fn shared(&self) -> bool {
        self.0.backend() != "memory"
    }
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
        // Before any key is created or read: no sandboxed upstream may reach one (`build` checks
        // again, for every generation).
        let mut unsandboxed = Vec::new();
        if let Some(first) = crate::upstream::exposure::exposed_secrets(&cfg, &mut unsandboxed).first() {
            return Err(first.to_string());
        }
        let http = crate::dns::client_builder()
            .connect_timeout(Duration::from_secs(10))
            .pool_idle_timeout(Duration::from_secs(60))
            .build()
            .map_err(|e| format!("HTTP client: {e}"))?;
        let audit = crate::audit::Audit::open(&cfg)?;
        let store = open_store(&cfg)?;
        let auth =
            cfg.auth.as_ref().map(|a| Authenticator::new(a, &cfg, http.clone(), Some(store.clone()))).transpose()?;
        if let Some(a) = &auth {
            a.set_audit(audit.clone());
        }
        let sealer = Arc::new(cfg.cluster.sealer()?);
        let session_ids = Arc::new(SessionIds::new(
            sealer.clone(),
            Duration::from_secs(cfg.cluster.session_max_age_secs),
            Arc::new(StoreEnds(store.clone())),
        ));
        let kills = KillSwitches::load(store.clone()).await?;
        kills.set_audit(audit.clone());
        kills.follow();
        let approvals = Arc::new(Approvals::new(store.clone(), cfg.approval.clone()));
        let registry = Arc::new(crate::registry::Registry::new(&cfg.content, &cfg.base_dir, audit.clone())?);
        registry.share(store.clone()).await?;
        let traces = match &cfg.telemetry.traces_url {
            Some(url) => {
                let h = crate::config::header_map(&cfg.telemetry.headers, &Default::default())
                    .map_err(|e| format!("telemetry.{e}"))?;
                tracing::info!(url = %url, "exporting traces (OTLP/HTTP JSON)");
                Some(Arc::new(crate::trace::Exporter::start(url, h)?))
            }
            None => None,
        };
        // The vault opens (its key checked) at start.
        let vault = match &cfg.vault {
            Some(v) => Some(Arc::new(crate::vault::Vault::open(v, &cfg.base_dir)?)),
            None => None,
        };
        let links = crate::upstream::user::Links::new(vault)?;
        let lasting = Lasting { http, audit, store, kills, approvals, registry, traces, sealer, links };
        let shared = Arc::new(crate::reload::build(&cfg, &lasting, 0)?);
        Ok(Gateway {
            cfg,
            current: Arc::new(ArcSwap::new(shared)),
            lasting,
            auth,
            session_ids,
            config_path: None,
            watch_config: None,
        })
    }

    /// The file the config was read from: `SIGHUP` and `POST /admin/reload` re-read it.
    pub fn reload_from(mut self, path: std::path::PathBuf) -> Gateway {
        self.config_path = Some(path);
        self
    }

    /// Also reload when the config file's content changes, looked at every `every`.
    pub fn watch_config(mut self, every: Duration) -> Gateway {
        self.watch_config = Some(every);
        self
    }

    /// The generation calls use now.
    pub fn shared(&self) -> Arc<Shared> {
        self.current.load_full()
    }

    fn service(&self) -> Arc<dyn Service> {
        Arc::new(Relay { current: self.current.clone() })
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
            session_ids: Some(self.session_ids.clone()),
        }
    }

    /// Serve HTTP on `listener` until `shutdown` resolves.
    pub async fn serve(self, listener: TcpListener, shutdown: impl Future<Output = ()>) -> std::io::Result<()> {
        let first = Control::new(self.shared(), self.auth.clone());
        first.start();
        let control = Arc::new(ArcSwap::new(first));
        let authn = self.auth.clone().map(|a| {
            a.start();
            a as Arc<dyn Authenticate>
        });
        let endpoint = McpEndpoint::new(self.service(), self.http_options(), authn);
        let mut router = mcp_router(endpoint.clone(), Some(control.clone()));
        if let Some(a) = &self.auth {
            router = router.merge(auth_router(a.clone(), endpoint.clone()));
            // Users link their accounts at user-mode upstreams through pages here, found at the
            // resource's origin (configured, or this listener's address).
            let links = &self.lasting.links;
            if links.vault().is_some() {
                let resource = a.resource_for(&http::HeaderMap::new(), Some(&listener.local_addr()?.to_string()));
                if let Ok(u) = reqwest::Url::parse(&resource) {
                    links.set_base(u.origin().ascii_serialization());
                }
                let pages = crate::link_pages::router(links.clone(), a.clone(), self.lasting.audit.clone(), resource);
                router = router
                    .merge(pages.route_layer(axum::middleware::from_fn_with_state(endpoint.clone(), host_checked)));
            }
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
            threads: self.cfg.listen.threads,
        };
        let metrics = crate::admin::MetricsSource {
            audit: self.lasting.audit.clone(),
            sessions: Some(endpoint.clone()),
            control: Some(control.clone()),
        };
        // On any address: the same hardened listener as `/mcp` (header size and read time limits,
        // connection caps in total and per peer, idle connections closed), on one thread.
        let (metrics_stop, metrics_stopped) = tokio::sync::oneshot::channel::<()>();
        let metrics_listener = match self.cfg.telemetry.metrics_addr {
            Some(addr) => {
                let l = TcpListener::bind(addr).await?;
                tracing::info!(addr = %l.local_addr()?, "metrics listening (GET /metrics)");
                let app = crate::admin::metrics_router(metrics.clone());
                let limits = ListenLimits {
                    max_header_bytes: 8192,
                    read_timeout: Duration::from_secs(10),
                    tls: None,
                    trusted_proxies: vec![],
                    max_connections: 64,
                    max_connections_per_peer: 16,
                    idle_timeout: Duration::from_secs(60),
                    threads: 1,
                };
                Some(tokio::spawn(async move {
                    let threads = serve_router(l, app, limits, async move {
                        let _ = metrics_stopped.await;
                    })
                    .await;
                    drop(threads);
                }))
            }
            None => None,
        };
        let reloader = self.config_path.clone().map(|path| {
            Reloader::new(
                path,
                self.cfg.clone(),
                self.lasting.clone(),
                self.current.clone(),
                control.clone(),
                self.auth.clone(),
            )
        });
        let on_hup = reloader.as_ref().map(|r| r.on_sighup()).transpose()?;
        let on_change = reloader.as_ref().zip(self.watch_config).map(|(r, every)| r.on_file_change(every));
        let vault = self.lasting.links.vault().cloned();
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
                let l = TcpListener::bind(a.addr).await?;
                let admin_addr = l.local_addr()?;
                let oauth = self
                    .auth
                    .as_ref()
                    .and_then(|a| crate::admin::oauth::ConsoleOAuth::for_auth(a, &resource, admin_addr));
                let app = crate::admin::router(crate::admin::AdminState {
                    token_hash: crate::digest::sha256(token.as_bytes()),
                    kills: self.lasting.kills.clone(),
                    current: self.current.clone(),
                    reloader: reloader.clone(),
                    approvals: self.lasting.approvals.clone(),
                    registry: self.lasting.registry.clone(),
                    audit: self.lasting.audit.clone(),
                    metrics: metrics.clone(),
                    auth: self.auth.clone(),
                    resource: resource.clone(),
                    store: self.lasting.store.clone(),
                    audit_store: self.cfg.audit.store().ok(),
                    oauth,
                    config_origin: match &self.config_path {
                        Some(p) => p.display().to_string(),
                        None => "the config".into(),
                    },
                    jobs: Default::default(),
                    vault: vault.clone(),
                });
                tracing::info!(addr = %admin_addr, "admin API listening");
                Some(tokio::spawn(async move { axum::serve(l, app).await }))
            }
            None => None,
        };
        tracing::info!(addr = %listener.local_addr()?, "warden listening");
        let threads = serve_router(listener, router, limits, shutdown).await?;
        if let Some(a) = admin {
            a.abort();
        }
        let _ = metrics_stop.send(());
        if let Some(m) = metrics_listener {
            let _ = tokio::time::timeout(Duration::from_secs(5), m).await;
        }
        for h in on_hup.into_iter().chain(on_change) {
            h.abort();
        }
        tracing::info!("shutting down: closing sessions and upstreams");
        endpoint.shutdown().await;
        control.load_full().close().await;
        drop(threads);
        let audit = self.lasting.audit.clone();
        let _ = tokio::task::spawn_blocking(move || audit.close()).await;
        Ok(())
    }

    /// Serve one client on stdin/stdout.
    pub async fn serve_stdio(self) -> std::io::Result<()> {
        let depth = self.cfg.listen.max_json_depth;
        let r = crate::server::stdio::serve(self.service(), tokio::io::stdin(), tokio::io::stdout(), depth).await;
        let audit = self.lasting.audit.clone();
        let _ = tokio::task::spawn_blocking(move || audit.close()).await;
        r
    }
}

#[derive(Clone)]
struct AppState {
    endpoint: Arc<McpEndpoint>,
    control: Option<Arc<ArcSwap<Control>>>,
}

/// `/mcp` (+ `/healthz`, `/readyz`) for an endpoint; `control` drives readiness when present.
pub fn mcp_router(endpoint: Arc<McpEndpoint>, control: Option<Arc<ArcSwap<Control>>>) -> Router {
    Router::new()
        .route("/mcp", any(|State(s): State<AppState>, req: Request<Body>| async move { s.endpoint.handle(req).await }))
        .route("/healthz", get(|| async { axum::Json(json!({"status": "ok"})) }))
        .route(
            "/readyz",
            get(|State(s): State<AppState>| async move {
                let (ready, body) =
                    s.control.as_ref().map(|c| c.load().status()).unwrap_or((true, json!({"ready": true})));
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
        r = r.merge(crate::auth::as_routes::router(auth));
    }
    r.route_layer(axum::middleware::from_fn_with_state(endpoint, host_checked))
}

/// The `Host` check of `/mcp`, for the other routes of its listener.
async fn host_checked(
    State(endpoint): State<Arc<McpEndpoint>>,
    req: Request<Body>,
    next: axum::middleware::Next,
) -> axum::response::Response {
    let authority = req.uri().authority().map(|a| a.as_str().to_string());
    match endpoint.check_host(req.headers(), authority.as_deref()) {
        Ok(()) => next.run(req).await,
        Err((status, msg)) => (status, msg).into_response(),
    }
}
