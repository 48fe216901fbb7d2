//! A user's own links, for the user (issue 27: "a user can revoke their own link"), on the MCP
//! listener and authenticated as `/mcp` is (the same bearer token):
//!
//! - `GET /oauth/upstream/links`: the caller's linked accounts (upstream, when linked,
//!   refreshed and expiring; never a token);
//! - `DELETE /oauth/upstream/links/{upstream}`: unlink one; the next request to that upstream
//!   asks for a new link. On record (`credential`, `revoked`, by the user).
//!
//! Defends against: one user seeing or revoking another's (only the caller's own binding key is
//! read or deleted); an unauthenticated request (refused as `/mcp` refuses it).

use super::Pages;
use axum::extract::{Path, Request, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::Json;
use serde_json::json;
use std::sync::Arc;
use warden_policy::Principal;

/// Most links listed.
const MAX_LISTED: usize = 1000;

async fn caller(pg: &Pages, req: Request) -> Result<Arc<Principal>, Response> {
    let (parts, _) = req.into_parts();
    pg.auth.authenticate(&parts, &pg.resource).await.map_err(|e| pg.auth.reject(&e, &pg.resource))
}

fn unavailable() -> Response {
    (StatusCode::SERVICE_UNAVAILABLE, Json(json!({"error": "the credential vault is unavailable"}))).into_response()
}

pub(super) async fn list(State(pg): State<Pages>, req: Request) -> Response {
    let p = match caller(&pg, req).await {
        Ok(p) => p,
        Err(r) => return r,
    };
    let Some(v) = pg.links.vault().cloned() else { return unavailable() };
    match tokio::task::spawn_blocking(move || v.list_own(&p, MAX_LISTED)).await {
        Ok(Ok(entries)) => {
            let links: Vec<_> = entries
                .into_iter()
                .map(|e| json!({"upstream": e.upstream, "linked": e.created, "updated": e.updated, "expires_at": e.expires_at}))
                .collect();
            Json(json!({"links": links})).into_response()
        }
        _ => unavailable(),
    }
}

pub(super) async fn revoke(State(pg): State<Pages>, Path(upstream): Path<String>, req: Request) -> Response {
    let p = match caller(&pg, req).await {
        Ok(p) => p,
        Err(r) => return r,
    };
    let Some(v) = pg.links.vault().cloned() else { return unavailable() };
    let (up, who) = (upstream.clone(), p.clone());
    match tokio::task::spawn_blocking(move || v.revoke_own(&up, &who)).await {
        Ok(Ok(true)) => {
            let mut e = warden_audit::Event::new("credential", "success");
            crate::audit::Audit::principal(&mut e, &p);
            e.decision = Some("allowed".into());
            e.detail = Some("revoked".into());
            e.server = Some(upstream.clone());
            let recorded = pg.audit.commit(e).await.is_ok();
            tracing::info!(upstream = %upstream, subject = %p.subject, "link revoked by its user");
            Json(json!({"revoked": upstream, "recorded": recorded})).into_response()
        }
        Ok(Ok(false)) => (StatusCode::NOT_FOUND, Json(json!({"error": "no link to that upstream"}))).into_response(),
        _ => unavailable(),
    }
}
