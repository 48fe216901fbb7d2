//! Assembling and running Warden: resolve the config, start the control connection of each
//! upstream (readiness and collision reports), serve `/mcp`, `/healthz` and `/readyz` on a
//! hardened HTTP listener, or one client over stdio; shut everything down cleanly.

use crate::config::Config;
use crate::namespace::Namespaces;
use crate::relay::{report_collisions, Relay, Shared};
use crate::server::http::{HttpOptions, McpEndpoint};
use crate::server::Service;
use crate::upstream::{Conn, ServerHandler, Spec};
use axum::body::Body;
use axum::extract::State;
use axum::routing::{any, get};
use axum::Router;
use http::{Request, StatusCode};
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use hyper_util::service::TowerToHyperService;
use parking_lot::Mutex;
use serde_json::{json, Value};
use std::future::Future;
use std::sync::Arc;
use std::time::Duration;
use tokio::net::TcpListener;

/// Control connections: one per upstream, Warden's own, for readiness and name collisions.
pub struct Control {
    shared: Arc<Shared>,
    conns: Vec<Mutex<Option<Arc<Conn>>>>,
    names: Mutex<Vec<Option<Vec<String>>>>,
    collisions: Mutex<Vec<String>>,
}

impl Control {
    fn new(shared: Arc<Shared>) -> Arc<Control> {
        let n = shared.specs.len();
        Arc::new(Control {
            shared,
            conns: (0..n).map(|_| Mutex::new(None)).collect(),
            names: Mutex::new(vec![None; n]),
            collisions: Mutex::new(vec![]),
        })
    }

    /// Keep each control connection up (reconnecting with backoff) for the life of `self`.
    fn start(self: &Arc<Self>) {
        for i in 0..self.shared.specs.len() {
            let me = Arc::downgrade(self);
            tokio::spawn(async move {
                let mut backoff = Duration::from_millis(500);
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
                                        let conn = conn.clone();
                                        tokio::spawn(async move { c.refresh_names(i, &conn).await });
                                    }
                                }
                            }
                        });
                        match Conn::connect(spec, init, handler, &c.shared.http).await {
                            Ok(conn) => {
                                tracing::info!(upstream = %spec.name, "upstream ready");
                                *c.conns[i].lock() = Some(conn.clone());
                                *c.shared.known[i].lock() = conn.init();
                                c.refresh_names(i, &conn).await;
                                backoff = Duration::from_millis(500);
                            }
                            Err(e) => {
                                tracing::warn!(upstream = %spec.name, error = %e, retry_in = ?backoff, "upstream not ready");
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

    /// Re-read upstream `i`'s tool and prompt names and re-check collisions.
    async fn refresh_names(&self, i: usize, conn: &Arc<Conn>) {
        let mut names = Vec::new();
        for (cap, method, field) in [("tools", "tools/list", "tools"), ("prompts", "prompts/list", "prompts")] {
            if !conn.has_capability(cap) {
                continue;
            }
            let Ok(items) = conn.list_all(method, field).await else { continue };
            for it in &items {
                if let Some(n) = it.get("name").and_then(Value::as_str) {
                    names.push(format!("{cap}:{}", self.shared.ns.name(i, n)));
                }
            }
        }
        let all: Vec<(String, Vec<String>)> = {
            let mut g = self.names.lock();
            g[i] = Some(names);
            self.shared.specs.iter().zip(g.iter()).filter_map(|(s, n)| Some((s.name.clone(), n.clone()?))).collect()
        };
        *self.collisions.lock() = report_collisions(&all);
    }

    pub fn status(&self) -> (bool, Value) {
        let mut ready = true;
        let mut ups = serde_json::Map::new();
        for (s, c) in self.shared.specs.iter().zip(&self.conns) {
            let ok = c.lock().as_ref().is_some_and(|c| c.is_alive());
            ready &= ok;
            ups.insert(s.name.clone(), (if ok { "ready" } else { "unavailable" }).into());
        }
        (ready, json!({"ready": ready, "upstreams": ups, "collisions": *self.collisions.lock()}))
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
}

impl Gateway {
    pub fn new(cfg: Config) -> Result<Gateway, String> {
        let specs = cfg.upstreams.iter().map(Spec::from_config).collect::<Result<Vec<_>, _>>()?;
        let ns = Namespaces::new(
            &cfg.federation.separator,
            cfg.upstreams.iter().map(|u| u.namespace().to_string()).collect(),
        );
        let http = reqwest::Client::builder()
            .connect_timeout(Duration::from_secs(10))
            .redirect(reqwest::redirect::Policy::none())
            .pool_idle_timeout(Duration::from_secs(60))
            .build()
            .map_err(|e| format!("HTTP client: {e}"))?;
        let known = specs.iter().map(|_| Mutex::new(None)).collect();
        Ok(Gateway { cfg, shared: Arc::new(Shared { specs, ns, http, known }) })
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
            sse_retry_ms: l.sse_retry_ms,
            sse_grace: Duration::from_millis(l.sse_grace_ms),
            allowed_hosts: l.allowed_hosts.clone(),
            allowed_origins: l.allowed_origins.clone(),
        }
    }

    /// Serve HTTP on `listener` until `shutdown` resolves.
    pub async fn serve(self, listener: TcpListener, shutdown: impl Future<Output = ()>) -> std::io::Result<()> {
        let control = Control::new(self.shared.clone());
        control.start();
        let endpoint = McpEndpoint::new(self.service(), self.http_options());
        let router = mcp_router(endpoint.clone(), Some(control.clone()));
        let limits = ListenLimits {
            max_header_bytes: self.cfg.listen.max_header_bytes,
            read_timeout: Duration::from_secs(self.cfg.listen.read_timeout_secs),
        };
        tracing::info!(addr = %listener.local_addr()?, "warden listening");
        serve_router(listener, router, limits, shutdown).await;
        tracing::info!("shutting down: closing sessions and upstreams");
        endpoint.shutdown().await;
        control.close().await;
        Ok(())
    }

    /// Serve one client on stdin/stdout.
    pub async fn serve_stdio(self) -> std::io::Result<()> {
        let depth = self.cfg.listen.max_json_depth;
        crate::server::stdio::serve(self.service(), tokio::io::stdin(), tokio::io::stdout(), depth).await
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

/// Listener-level limits.
#[derive(Clone, Copy)]
pub struct ListenLimits {
    pub max_header_bytes: usize,
    pub read_timeout: Duration,
}

/// Accept connections until `shutdown`; HTTP/1.1 and HTTP/2 with header size and header read
/// time limits (over-large heads get 431, slow heads are dropped).
pub async fn serve_router(
    listener: TcpListener,
    router: Router,
    limits: ListenLimits,
    shutdown: impl Future<Output = ()>,
) {
    let mut builder = hyper_util::server::conn::auto::Builder::new(TokioExecutor::new());
    builder
        .http1()
        .timer(TokioTimer::new())
        .max_buf_size(limits.max_header_bytes.max(8192))
        .header_read_timeout(limits.read_timeout);
    builder.http2().max_header_list_size(limits.max_header_bytes as u32);
    let builder = Arc::new(builder);
    tokio::pin!(shutdown);
    loop {
        let (stream, _peer) = tokio::select! {
            _ = &mut shutdown => break,
            r = listener.accept() => match r {
                Ok(s) => s,
                Err(e) => {
                    tracing::warn!(error = %e, "accept failed");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    continue;
                }
            },
        };
        let _ = stream.set_nodelay(true);
        let svc = TowerToHyperService::new(router.clone());
        let b = builder.clone();
        tokio::spawn(async move {
            let _ = b.serve_connection(TokioIo::new(stream), svc).await;
        });
    }
}
