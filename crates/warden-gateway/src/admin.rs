//! The admin API, on its own listener (loopback by default) with its own bearer token:
//!
//! - `GET /admin/kill-switches` — the switches that are off;
//! - `POST /admin/kill-switches` `{server, tool?, reason, by?, cancel_in_flight?}` — switch off;
//! - `DELETE /admin/kill-switches?server=…&tool=…&by=…` — switch back on.
//!
//! Defends against: use by anyone without the admin token (compared in constant time over its
//! SHA-256; MCP tokens and API keys are not accepted here), use from other sites through a browser
//! (no CORS, JSON bodies only), switches for targets that do not exist (the server must be
//! configured).
//! Does not defend against: a leaked admin token — keep it in a secret file and rotate it.

use crate::auth::sha256;
use crate::killswitch::{Kill, KillSwitches};
use axum::body::Body;
use axum::extract::{Query, State};
use axum::http::{header, HeaderMap, Response, StatusCode};
use axum::routing::get;
use axum::Router;
use serde::Deserialize;
use serde_json::{json, Value};
use std::sync::Arc;
use subtle::ConstantTimeEq;

pub struct AdminState {
    token_hash: [u8; 32],
    kills: Arc<KillSwitches>,
    servers: Vec<String>,
}

type S = Arc<AdminState>;

fn reply(status: StatusCode, v: Value) -> Response<Body> {
    Response::builder()
        .status(status)
        .header(header::CONTENT_TYPE, "application/json")
        .header(header::CACHE_CONTROL, "no-store")
        .body(Body::from(v.to_string()))
        .expect("static response parts")
}

fn authorized(s: &AdminState, h: &HeaderMap) -> bool {
    let presented = h.get(header::AUTHORIZATION).and_then(|v| v.to_str().ok()).and_then(|v| v.strip_prefix("Bearer "));
    presented.is_some_and(|t| bool::from(sha256(t.as_bytes()).ct_eq(&s.token_hash)))
}

pub fn router(token: &str, kills: Arc<KillSwitches>, servers: Vec<String>) -> Router {
    let state = Arc::new(AdminState { token_hash: sha256(token.as_bytes()), kills, servers });
    Router::new().route("/admin/kill-switches", get(list).post(kill).delete(revive)).with_state(state)
}

async fn list(State(s): State<S>, h: HeaderMap) -> Response<Body> {
    if !authorized(&s, &h) {
        return unauthorized();
    }
    reply(StatusCode::OK, json!({"kill_switches": s.kills.list()}))
}

fn unauthorized() -> Response<Body> {
    let mut r = reply(StatusCode::UNAUTHORIZED, json!({"error": "admin token required"}));
    r.headers_mut().insert(header::WWW_AUTHENTICATE, header::HeaderValue::from_static("Bearer realm=\"warden-admin\""));
    r
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

fn short(s: &str, max: usize) -> bool {
    !s.trim().is_empty() && s.len() <= max && !s.chars().any(char::is_control)
}

async fn kill(State(s): State<S>, h: HeaderMap, body: axum::body::Bytes) -> Response<Body> {
    if !authorized(&s, &h) {
        return unauthorized();
    }
    let Ok(k) = serde_json::from_slice::<KillRequest>(&body) else {
        return reply(
            StatusCode::BAD_REQUEST,
            json!({"error": "expected {server, tool?, reason, by?, cancel_in_flight?}"}),
        );
    };
    if !s.servers.contains(&k.server) {
        return reply(StatusCode::NOT_FOUND, json!({"error": "no upstream has that name"}));
    }
    if !short(&k.reason, 500) || k.tool.as_deref().is_some_and(|t| !short(t, 128)) {
        return reply(StatusCode::BAD_REQUEST, json!({"error": "reason (≤ 500 characters) is required; tool ≤ 128"}));
    }
    let by = k.by.filter(|b| short(b, 100)).unwrap_or_else(|| "admin".into());
    let entry = Kill {
        server: k.server,
        tool: k.tool,
        reason: k.reason,
        by,
        at: crate::auth::now_secs(),
        cancel_in_flight: k.cancel_in_flight,
    };
    match s.kills.kill(entry.clone()) {
        Ok(()) => reply(StatusCode::OK, json!({"killed": entry})),
        Err(e) => {
            tracing::error!(error = %e, "kill switch in effect but not saved");
            reply(StatusCode::INTERNAL_SERVER_ERROR, json!({"error": "in effect, but not saved; see the log"}))
        }
    }
}

#[derive(Deserialize)]
struct ReviveQuery {
    server: String,
    tool: Option<String>,
    by: Option<String>,
}

async fn revive(State(s): State<S>, h: HeaderMap, Query(q): Query<ReviveQuery>) -> Response<Body> {
    if !authorized(&s, &h) {
        return unauthorized();
    }
    let by = q.by.filter(|b| short(b, 100)).unwrap_or_else(|| "admin".into());
    match s.kills.revive(&q.server, q.tool.as_deref(), &by) {
        Ok(true) => reply(StatusCode::OK, json!({"revived": {"server": q.server, "tool": q.tool}})),
        Ok(false) => reply(StatusCode::NOT_FOUND, json!({"error": "that switch is not off"})),
        Err(e) => {
            tracing::error!(error = %e, "revival in effect but not saved");
            reply(StatusCode::INTERNAL_SERVER_ERROR, json!({"error": "in effect, but not saved; see the log"}))
        }
    }
}
