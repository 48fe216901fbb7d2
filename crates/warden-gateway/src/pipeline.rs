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
use warden_policy::rules::Kind;

/// Where a request goes.
pub enum Route {
    /// Answered by Warden itself.
    Local(Value),
    /// A listing merged from every upstream.
    FanOut,
    /// One upstream, with the request rewritten to the upstream's own names; `target` is what
    /// the request uses, by the upstream's own name, and whether it is effectively read-only.
    One { up: usize, params: Value, target: (Kind, String, bool) },
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
    // 6. request policy: kill switch → authorization → limits (policy.rs) → argument schema →
    //    guards (content.rs) → approval (approval.rs); listings are filtered by the same rules,
    //    pins and the poisoning scan in `RelaySession::list` (registry.rs).
    // 7. upstream, within the rule's timeout, cancelled by a kill switch that says so
    // 8. response policy: size cap → sanitize → injection detection → redaction, and scrubbed
    //    upstream errors (content.rs), inside `call_one`, where the target is known
    let result = match route {
        Err(e) => Err(e),
        Ok(Route::Local(v)) => Ok(v),
        Ok(Route::FanOut) => s.list(method).await,
        Ok(Route::Broadcast { cap, params }) => s.broadcast(cap, method, Some(params)).await,
        Ok(Route::One { up, params, target: (kind, name, read_only) }) => {
            call_one(s, up, method, params, kind, &name, read_only, peer).await
        }
    };
    // 9. record (audit and metrics arrive with their issue; a trace event for now)
    match &result {
        Ok(_) => tracing::debug!(method, elapsed_us = started.elapsed().as_micros() as u64, "ok"),
        Err(e) => {
            tracing::info!(method, reason = e.reason(), elapsed_us = started.elapsed().as_micros() as u64, "error")
        }
    }
    result
}

#[allow(clippy::too_many_arguments)]
async fn call_one(
    s: &Arc<RelaySession>,
    up: usize,
    method: &str,
    params: Value,
    kind: Kind,
    name: &str,
    read_only: bool,
    peer: Peer,
) -> Result<Value, GatewayError> {
    let policy = &s.shared.policy;
    if !s.reaches(up) {
        return Err(crate::policy::unknown(kind));
    }
    let args = matches!(method, "tools/call" | "prompts/get").then(|| params.get("arguments")).flatten();
    let grant = policy.admit(&s.principal, up, kind, name, read_only, args).await?;
    let server = &s.shared.specs[up].name;
    let content = &s.shared.content;
    if method == "tools/call" {
        let empty = json!({});
        let vetted = s.vetted(up, name);
        let schema = vetted.as_ref().map(|v| &v.schema);
        if let Err(why) = content.check_arguments(server, name, schema, args.unwrap_or(&empty)).await {
            tracing::info!(server = %server, tool = name, reason = %why, "arguments refused");
            return Ok(
                json!({"content": [{"type": "text", "text": format!("Warden refused this call: {why}")}], "isError": true}),
            );
        }
    }
    if let Some(mode) = grant.approval {
        let elicit = s.client_caps.get("elicitation").is_some().then_some(&peer);
        let empty = json!({});
        let args = args.unwrap_or(if method == "tools/call" || method == "prompts/get" { &empty } else { &params });
        s.shared.approvals.require(mode, &s.principal, server, name, args, elicit).await?;
    }
    let conn = s.conn(up).await?;
    let tool = (kind == Kind::Tool).then_some(name);
    let r = tokio::select! {
        r = tokio::time::timeout(grant.timeout, conn.call(method, Some(params), Some(peer))) => match r {
            Ok(r) => r.map_err(GatewayError::from),
            Err(_) => {
                tracing::info!(server = %server, name, rule = %grant.rule, "call timed out; cancelled upstream");
                Err(GatewayError::Timeout)
            }
        },
        _ = policy.kills.cancelled(server, tool) => Err(GatewayError::Cancelled),
    };
    let r = if method == "resources/read" { r.map(|v| s.rewrite_contents(up, v)) } else { r };
    match r {
        Ok(mut v) => {
            if method != "resources/subscribe" && method != "resources/unsubscribe" {
                let rep = content.process_output(server, name, &mut v);
                if rep.injection.is_injection(content.config().injection_threshold)
                    || rep.removed.any()
                    || !rep.redacted.is_empty()
                    || rep.truncated
                {
                    let rules: Vec<&str> = rep.injection.findings.iter().map(|f| f.rule).collect();
                    let redacted: Vec<&str> = rep.redacted.iter().map(|c| c.name()).collect();
                    tracing::warn!(server = %server, name, score = rep.injection.score, rules = ?rules, blocked = rep.blocked,
                        hidden = ?rep.removed, redacted = ?redacted, truncated = rep.truncated, "output policy acted");
                }
                if rep.blocked && method != "tools/call" {
                    return Err(GatewayError::Withheld);
                }
            }
            Ok(v)
        }
        Err(GatewayError::Upstream(mut e)) => {
            content.process_error(server, name, &mut e);
            Err(GatewayError::Upstream(e))
        }
        Err(e) => Err(e),
    }
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
            let (up, orig, ro) = s.resolve_name(kind, &name).await.ok_or(if kind == "tools" {
                GatewayError::UnknownTool
            } else {
                GatewayError::UnknownPrompt
            })?;
            p["name"] = orig.clone().into();
            let k = if kind == "tools" { Kind::Tool } else { Kind::Prompt };
            Ok(Route::One { up, params: p, target: (k, orig, ro) })
        }
        "resources/read" | "resources/subscribe" | "resources/unsubscribe" => {
            let uri = str_param(&p, "uri")?.to_string();
            let (up, orig) = s.resolve_uri(&uri).await.ok_or(GatewayError::UnknownResource)?;
            p["uri"] = orig.clone().into();
            Ok(Route::One { up, params: p, target: (Kind::Resource, orig, true) })
        }
        "completion/complete" => {
            let r = p.get("ref").cloned().ok_or(GatewayError::InvalidParams("missing ref"))?;
            let (up, field, orig) = match r.get("type").and_then(Value::as_str) {
                Some("ref/prompt") => {
                    let (up, o, _) =
                        s.resolve_name("prompts", str_param(&r, "name")?).await.ok_or(GatewayError::UnknownPrompt)?;
                    (up, "name", o)
                }
                Some("ref/resource") => {
                    let (up, o) = s.resolve_uri(str_param(&r, "uri")?).await.ok_or(GatewayError::UnknownResource)?;
                    (up, "uri", o)
                }
                _ => return Err(GatewayError::InvalidParams("unknown completion ref type")),
            };
            p["ref"][field] = orig.clone().into();
            let kind = if field == "name" { Kind::Prompt } else { Kind::Resource };
            Ok(Route::One { up, params: p, target: (kind, orig, true) })
        }
        _ => Err(GatewayError::MethodNotFound),
    }
}
