//! The call pipeline: every client request after `initialize` passes through [`handle`], in the
//! order of DESIGN.md. Stages that later issues add (authentication, request policy, response
//! policy, audit) are inserted here, in this one function, so the order stays auditable.
//!
//! Stages 1–4 (listener, authn, session, decode) run in the transport before this function.

use crate::error::GatewayError;
use crate::relay::{list_field, RelaySession};
use crate::rpc::Peer;
use serde_json::{json, Value};
use std::sync::Arc;
use std::time::Instant;

/// Where a request goes.
pub enum Route {
    /// Answered by Warden itself.
    Local(Value),
    /// A listing merged from every upstream.
    FanOut,
    /// One upstream, with the request rewritten to the upstream's own names.
    One { up: usize, params: Value },
    /// Every upstream with a capability.
    Broadcast { cap: &'static str, params: Value },
}

pub async fn handle(
    s: &Arc<RelaySession>,
    method: &str,
    params: Option<Value>,
    peer: Peer,
) -> Result<Value, GatewayError> {
    let started = Instant::now();
    // 5. route: method → handler; name/URI → (upstream, upstream's name/URI)
    let route = route(s, method, params).await;
    // 6. request policy: kill switch → authorization → limits → schema → guards → approval
    //    (added by the authorization and content-security issues)
    // 7. upstream
    let result = match route {
        Err(e) => Err(e),
        Ok(Route::Local(v)) => Ok(v),
        Ok(Route::FanOut) => s.list(method).await,
        Ok(Route::Broadcast { cap, params }) => s.broadcast(cap, method, Some(params)).await,
        Ok(Route::One { up, params }) => {
            let conn = s.conn(up).await?;
            let r = conn.call(method, Some(params), Some(peer)).await.map_err(GatewayError::from);
            if method == "resources/read" {
                r.map(|v| s.rewrite_contents(up, v))
            } else {
                r
            }
        }
    };
    // 8. response policy: size cap → sanitize → injection detection → redaction
    //    (added by the content-security issue)
    // 9. record (audit and metrics arrive with their issue; a trace event for now)
    match &result {
        Ok(_) => tracing::debug!(method, elapsed_us = started.elapsed().as_micros() as u64, "ok"),
        Err(e) => {
            tracing::info!(method, reason = e.reason(), elapsed_us = started.elapsed().as_micros() as u64, "error")
        }
    }
    result
}

fn str_param<'a>(p: &'a Value, key: &str) -> Result<&'a str, GatewayError> {
    p.get(key).and_then(Value::as_str).ok_or(GatewayError::InvalidParams("missing string parameter"))
}

/// Decide where a request goes, rewriting exposed names to the upstream's own.
pub async fn route(s: &RelaySession, method: &str, params: Option<Value>) -> Result<Route, GatewayError> {
    if list_field(method).is_some() {
        return Ok(Route::FanOut);
    }
    let mut p = params.unwrap_or_else(|| json!({}));
    if !p.is_object() {
        return Err(GatewayError::InvalidParams("params must be an object"));
    }
    match method {
        "ping" => Ok(Route::Local(json!({}))),
        "logging/setLevel" => Ok(Route::Broadcast { cap: "logging", params: p }),
        "tools/call" | "prompts/get" => {
            let kind = if method == "tools/call" { "tools" } else { "prompts" };
            let name = str_param(&p, "name")?.to_string();
            let (up, orig) = s.resolve_name(kind, &name).await.ok_or(if kind == "tools" {
                GatewayError::UnknownTool
            } else {
                GatewayError::UnknownPrompt
            })?;
            p["name"] = orig.into();
            Ok(Route::One { up, params: p })
        }
        "resources/read" | "resources/subscribe" | "resources/unsubscribe" => {
            let uri = str_param(&p, "uri")?.to_string();
            let (up, orig) = s.resolve_uri(&uri).await.ok_or(GatewayError::UnknownResource)?;
            p["uri"] = orig.into();
            Ok(Route::One { up, params: p })
        }
        "completion/complete" => {
            let r = p.get("ref").cloned().ok_or(GatewayError::InvalidParams("missing ref"))?;
            let (up, field, orig) = match r.get("type").and_then(Value::as_str) {
                Some("ref/prompt") => {
                    let (up, o) =
                        s.resolve_name("prompts", str_param(&r, "name")?).await.ok_or(GatewayError::UnknownPrompt)?;
                    (up, "name", o)
                }
                Some("ref/resource") => {
                    let (up, o) = s.resolve_uri(str_param(&r, "uri")?).await.ok_or(GatewayError::UnknownResource)?;
                    (up, "uri", o)
                }
                _ => return Err(GatewayError::InvalidParams("unknown completion ref type")),
            };
            p["ref"][field] = orig.into();
            Ok(Route::One { up, params: p })
        }
        _ => Err(GatewayError::MethodNotFound),
    }
}
