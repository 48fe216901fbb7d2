//! Who calls the admin API, and what they may do: the admin token, a principal authenticated
//! like an MCP caller (bearer token, API key) with an operator scope, or an operator signed in
//! to the console (a session cookie; `console.rs` checks its CSRF token before a handler runs).

use super::console::{Session, Signer};
use super::{reply, AdminState, SCOPE_ADMIN, SCOPE_APPROVE};
use crate::approval::Approver;
use crate::digest::sha256;
use axum::body::Body;
use axum::extract::FromRequestParts;
use axum::http::request::Parts;
use axum::http::{header, HeaderMap, Request, Response, StatusCode};
use serde_json::json;
use std::sync::Arc;
use subtle::ConstantTimeEq;
use warden_policy::Principal;

/// What a request presented: its headers, and the console session its cookie names (resolved,
/// and CSRF-checked for state changes, by `console::session_layer`).
pub struct Presented {
    pub headers: HeaderMap,
    pub console: Option<Session>,
}

impl<S: Send + Sync> FromRequestParts<S> for Presented {
    type Rejection = std::convert::Infallible;

    async fn from_request_parts(parts: &mut Parts, _: &S) -> Result<Self, Self::Rejection> {
        Ok(Presented { headers: parts.headers.clone(), console: parts.extensions.get::<Session>().cloned() })
    }
}

pub(super) fn unauthorized() -> Response<Body> {
    let mut r = reply(StatusCode::UNAUTHORIZED, json!({"error": "admin token or an admin principal required"}));
    r.headers_mut().insert(header::WWW_AUTHENTICATE, header::HeaderValue::from_static("Bearer realm=\"warden-admin\""));
    r
}

pub(super) fn forbidden() -> Response<Body> {
    reply(StatusCode::FORBIDDEN, json!({"error": "this credential may not do that"}))
}

pub(super) enum Caller {
    Token,
    Principal(Arc<Principal>),
    /// Signed in to the console with the admin token: the token's rights, under the name given.
    Console(Box<Session>),
}

impl Caller {
    pub(super) fn name(&self, declared: Option<String>) -> String {
        match self {
            Caller::Token => {
                format!("admin-token:{}", declared.filter(|b| short(b, 100)).unwrap_or_else(|| "admin".into()))
            }
            Caller::Principal(p) => format!("principal:{}", p.subject),
            Caller::Console(s) => format!("console:{}", s.name),
        }
    }
    fn may_kill(&self) -> bool {
        match self {
            Caller::Token | Caller::Console(_) => true,
            Caller::Principal(p) => p.has_scope(SCOPE_ADMIN) && p.tenant.is_none(),
        }
    }
    fn approver(&self, declared: Option<String>) -> Option<Approver> {
        match self {
            Caller::Token | Caller::Console(_) => {
                Some(Approver { name: self.name(declared), requester_key: None, tenant: None })
            }
            Caller::Principal(p) if p.has_scope(SCOPE_ADMIN) || p.has_scope(SCOPE_APPROVE) => {
                Some(Approver::principal(p))
            }
            Caller::Principal(_) => None,
        }
    }
}

/// Whether `presented` is the admin token (compared in constant time over its SHA-256).
pub(super) fn is_admin_token(s: &AdminState, presented: &str) -> bool {
    bool::from(sha256(presented.as_bytes()).ct_eq(&s.token_hash))
}

/// The caller: a bearer credential when one is presented (it wins over a cookie), else the
/// console session.
async fn caller(s: &AdminState, p: &Presented) -> Option<Caller> {
    let bearer =
        p.headers.get(header::AUTHORIZATION).and_then(|v| v.to_str().ok()).and_then(|v| v.strip_prefix("Bearer "));
    let Some(presented) = bearer else {
        return p.console.clone().map(|s| match s.signer {
            Signer::Principal(principal) => Caller::Principal(Arc::new(principal)),
            Signer::AdminToken { .. } => Caller::Console(Box::new(s)),
        });
    };
    if is_admin_token(s, presented) {
        return Some(Caller::Token);
    }
    let auth = s.auth.as_ref()?;
    let mut req = Request::new(());
    *req.headers_mut() = p.headers.clone();
    let (parts, ()) = req.into_parts();
    auth.authenticate(&parts, &s.resource).await.ok().map(Caller::Principal)
}

/// Record a refused admin credential.
pub(super) fn refused(s: &AdminState, reason: &str) {
    let mut e = warden_audit::Event::new("auth_failure", "auth_denied");
    e.decision = Some("denied".into());
    e.detail = Some(reason.into());
    s.audit.emit(e);
}

/// A caller allowed to operate the gateway (kill switches, pins): the admin token (or a console
/// session signed in with it), or a principal with [`SCOPE_ADMIN`] and no tenant. Otherwise the
/// 401 or 403 to send.
pub(super) async fn operator(s: &AdminState, p: &Presented) -> Result<Caller, Response<Body>> {
    match caller(s, p).await {
        None => {
            refused(s, "admin_credentials");
            Err(unauthorized())
        }
        Some(c) if !c.may_kill() => {
            refused(s, "admin_forbidden");
            Err(forbidden())
        }
        Some(c) => Ok(c),
    }
}

/// A caller allowed to see and decide approvals, as the approver it decides as.
pub(super) async fn approver(
    s: &AdminState,
    p: &Presented,
    declared: Option<String>,
) -> Result<Approver, Response<Body>> {
    match caller(s, p).await {
        None => {
            refused(s, "admin_credentials");
            Err(unauthorized())
        }
        Some(c) => c.approver(declared).ok_or_else(|| {
            refused(s, "admin_forbidden");
            forbidden()
        }),
    }
}

pub(super) fn short(s: &str, max: usize) -> bool {
    !s.trim().is_empty() && s.len() <= max && !s.chars().any(char::is_control)
}
