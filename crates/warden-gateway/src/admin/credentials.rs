//! `GET /admin/credentials` and `DELETE /admin/credentials/{id}`: the credential vault's
//! entries (owners and times, never tokens), and forgetting one. Operators only; each
//! revocation is an audit record.

use super::caller::{operator, Presented};
use super::{admin_event, reply, AdminState};
use axum::body::Body;
use axum::extract::{Path, State};
use axum::http::{Response, StatusCode};
use serde_json::json;
use std::sync::Arc;

/// Entries one answer lists.
const MAX_LISTED: usize = 10_000;

fn no_vault() -> Response<Body> {
    reply(StatusCode::NOT_FOUND, json!({"error": "no [vault] is configured"}))
}

pub(super) async fn list(State(s): State<Arc<AdminState>>, p: Presented) -> Response<Body> {
    if let Err(r) = operator(&s, &p).await {
        return r;
    }
    let Some(v) = s.vault.clone() else { return no_vault() };
    match tokio::task::spawn_blocking(move || v.list(MAX_LISTED)).await {
        Ok(Ok(entries)) => reply(StatusCode::OK, json!({"credentials": entries})),
        Ok(Err(e)) => super::store_error(e),
        Err(e) => super::store_error(e),
    }
}

pub(super) async fn revoke(State(s): State<Arc<AdminState>>, p: Presented, Path(id): Path<String>) -> Response<Body> {
    let c = match operator(&s, &p).await {
        Ok(c) => c,
        Err(r) => return r,
    };
    let Some(v) = s.vault.clone() else { return no_vault() };
    if id.len() > 64 {
        return reply(StatusCode::NOT_FOUND, json!({"error": "no credential has that id"}));
    }
    let gone = id.clone();
    match tokio::task::spawn_blocking(move || v.revoke(&gone)).await {
        Ok(Ok(true)) => {
            let by = c.name(None);
            let recorded = admin_event(&s, "credential", "revoked", &by, "", None, json!({"id": id})).await;
            reply(StatusCode::OK, json!({"revoked": id, "recorded": recorded}))
        }
        Ok(Ok(false)) => reply(StatusCode::NOT_FOUND, json!({"error": "no credential has that id"})),
        Ok(Err(e)) => super::store_error(e),
        Err(e) => super::store_error(e),
    }
}
