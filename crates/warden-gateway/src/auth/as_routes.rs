//! The built-in authorization server's routes (mounted only when it is configured), and the
//! bounded read of every request body before a handler sees it.

use super::as_http::{json_response, oauth_error};
use super::authorize::{authorize_get, authorize_post};
use super::builtin::{as_metadata, server, FORM_READ_TIMEOUT, MAX_FORM_BYTES, S};
use super::{register, token, Authenticator};
use axum::body::Body;
use axum::extract::State;
use axum::http::{Response, StatusCode};
use axum::routing::{get, post};
use axum::Router;
use std::sync::Arc;

/// The built-in server's routes; only mounted when it is configured.
pub fn router(auth: Arc<Authenticator>) -> Router {
    Router::new()
        .route("/.well-known/oauth-authorization-server", get(as_metadata))
        .route("/.well-known/openid-configuration", get(as_metadata))
        .route("/jwks", get(|State(a): State<S>| async move { json_response(StatusCode::OK, server(&a).jwks.clone()) }))
        .route("/register", post(register::register))
        .route("/authorize", get(authorize_get).post(authorize_post))
        .route("/token", post(token::token))
        .layer(axum::middleware::from_fn(bounded_body))
        .with_state(auth)
}

/// Read a request body whole before a handler sees it: at most [`MAX_FORM_BYTES`] (413), within
/// [`FORM_READ_TIMEOUT`] (408), so a slow or endless form holds no handler or memory.
async fn bounded_body(req: axum::extract::Request, next: axum::middleware::Next) -> Response<Body> {
    use http_body_util::BodyExt;
    let (parts, body) = req.into_parts();
    let limited = http_body_util::Limited::new(body, MAX_FORM_BYTES);
    match tokio::time::timeout(FORM_READ_TIMEOUT, limited.collect()).await {
        Ok(Ok(c)) => next.run(axum::extract::Request::from_parts(parts, Body::from(c.to_bytes()))).await,
        Ok(Err(e)) if e.is::<http_body_util::LengthLimitError>() => {
            oauth_error(StatusCode::PAYLOAD_TOO_LARGE, "invalid_request", "request body too large")
        }
        Ok(Err(_)) => oauth_error(StatusCode::BAD_REQUEST, "invalid_request", "request body unreadable"),
        Err(_) => oauth_error(StatusCode::REQUEST_TIMEOUT, "invalid_request", "request body too slow"),
    }
}
