//! The admin API, on its own listener (loopback only):
//!
//! - `GET /console` — the operators' console (`console.rs`), signed in at `/console/sign-in` or
//!   through the authorization server (`/console/oauth/…`, `oauth.rs`);
//! - `GET /admin/upstreams` — each upstream's transport, health, restarts and sandbox layers,
//!   the config generation and the sessions open here;
//! - `GET /admin/timeline` — this process's last hour in 10-second slots: calls/s, p50/p99,
//!   denials by reason, errors by status (`timeline.rs`);
//! - `GET /admin/tools` — every definition with its classes, the rules naming it, scan findings
//!   and look-alike names (`definitions.rs`);
//! - `GET /admin/audit?subject=…&tool=…&decision=…&status=…&since=…` — the audit trail searched
//!   (`audit_search.rs`), newest first; `format=jsonl` exports;
//! - `GET /admin/config` — the config the current generation runs, secrets masked
//!   (`config_view.rs`), and what `warden check` finds in it:
//!   `{"generation": N, "config": {…}, "check": {"ok": bool, "generation": N, "checked_at": secs,
//!   "cached": bool, "lines": [{"level": "ok"|"warning"|"error", "text": "…"}]}}`;
//! - `GET /admin/audit/verify[?fresh=1]` — the audit trail's chains and signed checkpoints
//!   verified (`chain.rs`), the result kept 30 s: `{"ok": bool, "verified_at": secs, "cached":
//!   bool, "trail", "key_pinned", "records", "chains": [{"name", "records", "seq", "checkpoints",
//!   "signed_through", "last_checkpoint_at"?: secs}], "problems": […], "notes": […], "took_ms"}`;
//!   `{"ok": null, "reason": "…"}` (200) when no trail is verified here (audit off, PostgreSQL),
//!   202 `{"ok": null, "running": true, …}` while a long verification goes on;
//! - `GET /admin/credentials`, `DELETE /admin/credentials/{id}` — the credential vault's entries
//!   (owners and times, never tokens), and forgetting one (`credentials.rs`);
//! - `GET /admin/kill-switches` — the switches that are off;
//! - `POST /admin/kill-switches` `{server, tool?, reason, by?, cancel_in_flight?}` — switch off;
//! - `DELETE /admin/kill-switches?server=…&tool=…&by=…` — switch back on;
//! - `GET /admin/approvals[?state=pending]`, `GET /admin/approvals/{id}` — approval requests;
//! - `POST /admin/approvals/{id}/approve`, `…/deny` `{by?, note?}` — decide one;
//! - `GET /admin/pins` — tool definitions that changed since they were pinned (withheld);
//! - `POST /admin/pins/approve` `{server, kind?, name (or tool), digest, by?}` — accept a changed
//!   definition (a tool by default; or a prompt, resource, resource template or instructions): the
//!   one with `digest` (as `GET /admin/pins` showed it), never whatever is pending by then (409);
//! - `POST /admin/pins/refuse` `{server, kind?, name, digest, reason?, by?}` — refuse it (a tool
//!   is switched off).
//!
//! Optional members of the answers (`tool` of a whole-upstream switch, `tenant`, `approver`,
//! `decided_at` and `note` of an approval) are absent when unset, never `null`.
//!
//! Two kinds of caller:
//! - the admin token (`[admin] token`): everything, every tenant; `by` names the person;
//! - a principal authenticated like an MCP caller (bearer token, API key), holding the scope
//!   [`SCOPE_ADMIN`] (kill switches and approvals; kill switches only without a tenant) or
//!   [`SCOPE_APPROVE`] (approvals). A principal with a tenant sees and decides only that
//!   tenant's approvals; others' look exactly like ids that do not exist. Its identity is
//!   recorded as the approver, and it cannot approve its own calls unless configured.
//!
//! Defends against: use without a credential (the admin token is compared in constant time over
//! its SHA-256), use from other sites through a browser (no CORS, JSON bodies only; `Host` and
//! `Origin` must name this machine, so DNS rebinding gets 403), switches for
//! upstreams that do not exist, cross-tenant approval, self-approval.
//! Does not defend against: a leaked admin token — keep it in a secret file and rotate it.

mod audit_search;
mod caller;
mod chain;
mod config_view;
pub mod console;
mod credentials;
mod definitions;
mod flight;
pub mod oauth;
mod oauth_client;

use crate::approval::{Approvals, DecideError};
use crate::auth::Authenticator;
use crate::killswitch::{Kill, KillSwitches};
use crate::store::ApprovalState;
use axum::body::Body;
use axum::extract::{Path, Query, State};
use axum::http::{header, Request, Response, StatusCode};
use axum::routing::{get, post};
use axum::Router;
use caller::{approver, operator, short, Presented};
use serde::Deserialize;
use serde_json::{json, Value};
use std::sync::Arc;

/// Scope for every admin operation (kill switches need a principal without a tenant).
pub const SCOPE_ADMIN: &str = "warden:admin";
/// Scope for listing and deciding approvals.
pub const SCOPE_APPROVE: &str = "warden:approve";

pub struct AdminState {
    pub token_hash: [u8; 32],
    pub kills: Arc<KillSwitches>,
    /// The upstreams' names, from the current generation.
    pub current: Arc<arc_swap::ArcSwap<crate::relay::Shared>>,
    /// `POST /admin/reload` (present when the config came from a file).
    pub reloader: Option<Arc<crate::reload::Reloader>>,
    pub approvals: Arc<Approvals>,
    pub registry: Arc<crate::registry::Registry>,
    pub audit: Arc<crate::audit::Audit>,
    pub metrics: MetricsSource,
    pub auth: Option<Arc<Authenticator>>,
    /// The MCP resource URI principals' tokens must be issued for.
    pub resource: String,
    /// Console sessions.
    pub store: Arc<dyn crate::store::Store>,
    /// The audit trail `GET /admin/audit` searches (`None`: none is written where it can be read).
    pub audit_store: Option<warden_audit::Store>,
    /// Console sign-in through the authorization server (`oauth.rs`), when one is configured.
    pub oauth: Option<oauth::ConsoleOAuth>,
    /// Where the config was read from, as `warden check` names it (`GET /admin/config`).
    pub config_origin: String,
    /// The runs of the expensive read-only views, one at a time each.
    pub jobs: Jobs,
    /// The credential vault (`[vault]`), when configured.
    pub vault: Option<Arc<crate::vault::Vault>>,
}

/// The config check and the audit verification: one run at a time, the last result kept.
#[derive(Default)]
pub struct Jobs {
    check: Arc<flight::Flight<Vec<crate::check::CheckLine>>>,
    verify: Arc<flight::Flight<chain::Verified>>,
}

type S = Arc<AdminState>;

pub(super) fn reply(status: StatusCode, v: Value) -> Response<Body> {
    Response::builder()
        .status(status)
        .header(header::CONTENT_TYPE, "application/json")
        .header(header::CACHE_CONTROL, "no-store")
        .body(Body::from(v.to_string()))
        .expect("static response parts")
}

/// Record an admin action: what, by whom, on what, with which parameters — and wait until it is
/// stored (as a request waits for its record), so that an action is never answered without its
/// record. The action has already taken effect (a kill switch must not wait for the trail); when
/// the record cannot be stored, that is logged as an error and the answer says `recorded: false`.
pub(super) async fn admin_event(
    s: &AdminState,
    kind: &str,
    detail: &str,
    by: &str,
    server: &str,
    name: Option<&str>,
    args: Value,
) -> bool {
    let mut e = warden_audit::Event::new(kind, "success");
    e.decision = Some("allowed".into());
    e.detail = Some(detail.into());
    e.subject = Some(by.into());
    e.server = Some(server.into());
    e.name = name.map(str::to_string);
    s.audit.arguments(&mut e, &args);
    match s.audit.commit(e).await {
        Ok(()) => true,
        Err(_) => {
            tracing::error!(kind, detail, server, "an admin action took effect but its audit record was not stored");
            false
        }
    }
}

/// What `GET /metrics` reads: the metrics the audit events feed, and the session and upstream
/// gauges.
#[derive(Clone)]
pub struct MetricsSource {
    pub audit: Arc<crate::audit::Audit>,
    pub sessions: Option<Arc<crate::server::http::McpEndpoint>>,
    pub control: Option<Arc<arc_swap::ArcSwap<crate::control::Control>>>,
}

impl MetricsSource {
    /// Prometheus text exposition (OpenMetrics). No metric carries a secret; label values are
    /// upstream names, tool names and outcomes.
    fn render(&self) -> Response<Body> {
        let m = &self.audit.metrics;
        self.audit.refresh_gauges();
        if let Some(e) = &self.sessions {
            m.sessions.set(e.session_count() as i64);
        }
        if let Some(c) = &self.control {
            for (name, up, restarts) in c.load().health() {
                m.upstream_up.get_or_create(&vec![("server", name.clone())]).set(up as i64);
                m.upstream_restarts.get_or_create(&vec![("server", name)]).set(restarts as i64);
            }
        }
        Response::builder()
            .status(StatusCode::OK)
            .header(header::CONTENT_TYPE, "application/openmetrics-text; version=1.0.0; charset=utf-8")
            .body(Body::from(m.render()))
            .expect("static response parts")
    }
}

/// `GET /metrics` on the admin listener (no credential: it is loopback).
async fn metrics(State(s): State<S>) -> Response<Body> {
    s.metrics.render()
}

/// The metrics listener (`[telemetry] metrics_addr`): `GET /metrics` and nothing else, on any
/// address, for a scraper outside the host (a Kubernetes ServiceMonitor). Read-only; what it
/// shows is what the admin listener's `/metrics` shows.
pub fn metrics_router(src: MetricsSource) -> Router {
    Router::new()
        .route("/metrics", get(|State(s): State<MetricsSource>| async move { s.render() }))
        .fallback(|| async { reply(StatusCode::NOT_FOUND, json!({"error": "not found"})) })
        .with_state(src)
}

pub fn router(state: AdminState) -> Router {
    let state = Arc::new(state);
    Router::new()
        .route("/console", get(console::page))
        .route("/console/app.js", get(console::script))
        .route("/console/app.css", get(console::style))
        .route("/console/sign-in", post(console::sign_in))
        .route("/console/sign-out", post(console::sign_out))
        .route("/console/session", get(console::current))
        .route("/console/oauth", get(oauth::offered))
        .route("/console/oauth/start", post(oauth::start))
        .route("/console/oauth/callback", get(oauth::callback))
        .route("/admin/upstreams", get(upstreams))
        .route("/admin/timeline", get(timeline))
        .route("/admin/audit", get(audit_search::search))
        .route("/admin/audit/verify", get(chain::verify))
        .route("/admin/config", get(config_view::config))
        .route("/admin/credentials", get(credentials::list))
        .route("/admin/credentials/{id}", axum::routing::delete(credentials::revoke))
        .route("/admin/kill-switches", get(list).post(kill).delete(revive))
        .route("/admin/approvals", get(approvals))
        .route("/admin/approvals/{id}", get(approval))
        .route("/admin/approvals/{id}/{verdict}", post(decide))
        .route("/admin/tools", get(definitions::inventory))
        .route("/admin/pins", get(definitions::pins))
        .route("/admin/pins/approve", post(definitions::approve_pin))
        .route("/admin/pins/refuse", post(definitions::refuse_pin))
        .route("/metrics", get(metrics))
        .route("/admin/reload", post(reload))
        .route_layer(axum::middleware::from_fn_with_state(state.clone(), console::session_layer))
        .with_state(state)
        .route_layer(axum::middleware::from_fn(loopback_only))
        .layer(axum::middleware::from_fn(console::security_headers))
}

/// The admin listener binds loopback only: a request whose `Host` or `Origin` names anything
/// else reached it through DNS rebinding (a web page in the operator's browser) or a proxy.
async fn loopback_only(req: Request<Body>, next: axum::middleware::Next) -> Response<Body> {
    if crate::host::loopback_request(req.headers(), req.uri().authority().map(|a| a.as_str())) {
        next.run(req).await
    } else {
        reply(StatusCode::FORBIDDEN, json!({"error": "Host or Origin not allowed on the admin listener"}))
    }
}

/// `POST /admin/reload`: re-read the config file (`reload.rs`). 200 with what was applied, 409
/// with why it was refused (the running config keeps serving).
async fn reload(State(s): State<S>, p: Presented) -> Response<Body> {
    let c = match operator(&s, &p).await {
        Ok(c) => c,
        Err(r) => return r,
    };
    let Some(r) = &s.reloader else {
        return reply(StatusCode::NOT_FOUND, json!({"error": "this Warden was not started from a config file"}));
    };
    match r.reload(&c.name(None)).await {
        Ok(applied) => reply(StatusCode::OK, json!({"reloaded": applied})),
        Err(why) => reply(StatusCode::CONFLICT, json!({"error": why, "reloaded": false})),
    }
}

/// `GET /admin/upstreams`: each upstream's name, transport, health and restarts, and the
/// config generation serving.
async fn upstreams(State(s): State<S>, p: Presented) -> Response<Body> {
    if let Err(r) = operator(&s, &p).await {
        return r;
    }
    let current = s.current.load();
    let control = s.metrics.control.as_ref().map(|c| c.load_full());
    let health: std::collections::HashMap<String, (bool, u64)> = match &control {
        Some(c) => c.health().into_iter().map(|(n, up, restarts)| (n, (up, restarts))).collect(),
        None => Default::default(),
    };
    let layers = control.map(|c| c.sandbox_summaries()).unwrap_or_default();
    let list: Vec<Value> = current
        .specs
        .iter()
        .map(|u| {
            let (up, restarts) = health.get(&u.name).copied().unwrap_or((false, 0));
            let transport = match u.kind {
                crate::config::Transport::Stdio => "stdio",
                crate::config::Transport::Http => "http",
                crate::config::Transport::Builtin => "builtin",
            };
            json!({"name": u.name, "transport": transport, "sandboxed": u.sandbox.is_some(), "up": up,
                   "restarts": restarts, "sandbox_layers": layers.get(&u.name)})
        })
        .collect();
    let sessions = s.metrics.sessions.as_ref().map(|e| e.session_count());
    reply(StatusCode::OK, json!({"upstreams": list, "generation": current.generation, "sessions": sessions}))
}

/// `GET /admin/timeline`: this process's last hour in 10-second slots (`timeline.rs`).
async fn timeline(State(s): State<S>, p: Presented) -> Response<Body> {
    if let Err(r) = operator(&s, &p).await {
        return r;
    }
    let points = s.audit.metrics.timeline.points();
    reply(StatusCode::OK, json!({"slot_secs": crate::timeline::SLOT_SECS, "points": points}))
}

async fn list(State(s): State<S>, p: Presented) -> Response<Body> {
    match operator(&s, &p).await {
        Ok(_) => reply(StatusCode::OK, json!({"kill_switches": s.kills.list()})),
        Err(r) => r,
    }
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct KillRequest {
    server: String,
    tool: Option<String>,
    reason: String,
    by: Option<String>,
    #[serde(default)]
    cancel_in_flight: bool,
}

pub(super) fn store_error(e: impl std::fmt::Display) -> Response<Body> {
    tracing::error!(error = %e, "admin: store error");
    reply(StatusCode::SERVICE_UNAVAILABLE, json!({"error": "the store is unavailable; see the log"}))
}

async fn kill(State(s): State<S>, p: Presented, body: axum::body::Bytes) -> Response<Body> {
    let c = match operator(&s, &p).await {
        Ok(c) => c,
        Err(r) => return r,
    };
    let Ok(k) = serde_json::from_slice::<KillRequest>(&body) else {
        return reply(
            StatusCode::BAD_REQUEST,
            json!({"error": "expected {server, tool?, reason, by?, cancel_in_flight?}"}),
        );
    };
    if !s.current.load().specs.iter().any(|u| u.name == k.server) {
        return reply(StatusCode::NOT_FOUND, json!({"error": "no upstream has that name"}));
    }
    if !short(&k.reason, 500) || k.tool.as_deref().is_some_and(|t| !short(t, 128)) {
        return reply(StatusCode::BAD_REQUEST, json!({"error": "reason (≤ 500 characters) is required; tool ≤ 128"}));
    }
    let entry = Kill {
        server: k.server,
        tool: k.tool,
        reason: k.reason,
        by: c.name(k.by),
        at: crate::clock::now_secs(),
        cancel_in_flight: k.cancel_in_flight,
    };
    match s.kills.kill(entry.clone()).await {
        Ok(()) => {
            let args = json!({"reason": entry.reason, "cancel_in_flight": entry.cancel_in_flight});
            let recorded =
                admin_event(&s, "kill_switch", "off", &entry.by, &entry.server, entry.tool.as_deref(), args).await;
            reply(StatusCode::OK, json!({"killed": entry, "recorded": recorded}))
        }
        Err(e) => store_error(e),
    }
}

#[derive(Deserialize)]
struct ReviveQuery {
    server: String,
    tool: Option<String>,
    by: Option<String>,
}

async fn revive(State(s): State<S>, p: Presented, Query(q): Query<ReviveQuery>) -> Response<Body> {
    let c = match operator(&s, &p).await {
        Ok(c) => c,
        Err(r) => return r,
    };
    let by = c.name(q.by);
    match s.kills.revive(&q.server, q.tool.as_deref(), &by).await {
        Ok(true) => {
            let recorded = admin_event(&s, "kill_switch", "on", &by, &q.server, q.tool.as_deref(), json!({})).await;
            let mut revived = json!({"server": q.server});
            if let Some(t) = q.tool {
                revived["tool"] = t.into();
            }
            reply(StatusCode::OK, json!({ "revived": revived, "recorded": recorded }))
        }
        Ok(false) => reply(StatusCode::NOT_FOUND, json!({"error": "that switch is not off"})),
        Err(e) => store_error(e),
    }
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct StateQuery {
    state: Option<String>,
}

async fn approvals(State(s): State<S>, p: Presented, Query(q): Query<StateQuery>) -> Response<Body> {
    let who = match approver(&s, &p, None).await {
        Ok(w) => w,
        Err(r) => return r,
    };
    let state = match q.state {
        None => None,
        Some(x) => match ApprovalState::parse(&x) {
            Some(st) => Some(st),
            None => {
                return reply(StatusCode::BAD_REQUEST, json!({"error": "state: pending, approved, denied or consumed"}))
            }
        },
    };
    match s.approvals.list(&who, state).await {
        Ok(v) => reply(StatusCode::OK, json!({"approvals": v})),
        Err(e) => store_error(e),
    }
}

fn not_found() -> Response<Body> {
    reply(StatusCode::NOT_FOUND, json!({"error": "no such approval"}))
}

async fn approval(State(s): State<S>, p: Presented, Path(id): Path<String>) -> Response<Body> {
    let who = match approver(&s, &p, None).await {
        Ok(w) => w,
        Err(r) => return r,
    };
    match s.approvals.get(&who, &id).await {
        Ok(Some(a)) => reply(StatusCode::OK, json!({"approval": a})),
        Ok(None) => not_found(),
        Err(e) => store_error(e),
    }
}

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct DecideRequest {
    by: Option<String>,
    note: Option<String>,
}

async fn decide(
    State(s): State<S>,
    p: Presented,
    Path((id, verdict)): Path<(String, String)>,
    body: axum::body::Bytes,
) -> Response<Body> {
    let approve = match verdict.as_str() {
        "approve" => true,
        "deny" => false,
        _ => return reply(StatusCode::NOT_FOUND, json!({"error": "expected approve or deny"})),
    };
    let req: DecideRequest = if body.is_empty() {
        DecideRequest::default()
    } else {
        match serde_json::from_slice(&body) {
            Ok(r) => r,
            Err(_) => return reply(StatusCode::BAD_REQUEST, json!({"error": "expected {by?, note?}"})),
        }
    };
    if req.note.as_deref().is_some_and(|n| n.len() > 500) {
        return reply(StatusCode::BAD_REQUEST, json!({"error": "note: at most 500 characters"}));
    }
    let who = match approver(&s, &p, req.by).await {
        Ok(w) => w,
        Err(r) => return r,
    };
    match s.approvals.decide(&who, &id, approve, req.note.clone()).await {
        Ok(a) => {
            let outcome = if approve { "approved" } else { "denied" };
            let mut e = warden_audit::Event::new("approval", "success");
            e.decision = Some(if approve { "allowed" } else { "denied" }.into());
            e.detail = Some(outcome.into());
            e.subject = Some(who.name.clone());
            e.approval = Some(json!({"id": id, "outcome": outcome, "by": who.name, "note": req.note}));
            let recorded = s.audit.commit(e).await.is_ok();
            if !recorded {
                tracing::error!(outcome, "an approval decision took effect but its audit record was not stored");
            }
            reply(StatusCode::OK, json!({"approval": a, "recorded": recorded}))
        }
        Err(DecideError::NotFound) => not_found(),
        Err(DecideError::NotPending) => reply(StatusCode::CONFLICT, json!({"error": "that approval is not pending"})),
        Err(DecideError::SelfApproval) => {
            reply(StatusCode::FORBIDDEN, json!({"error": "a caller cannot approve its own call"}))
        }
        Err(DecideError::Store(e)) => store_error(e),
    }
}
