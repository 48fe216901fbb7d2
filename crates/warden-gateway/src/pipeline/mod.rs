//! The call pipeline: every client request after `initialize` (a 2025 session's, or a 2026
//! stateless request run in its caller's pooled session) passes through [`handle`], one file
//! per stage in the order the defences apply:
//!
//! - `route.rs` (5): method and exposed name → Warden, every upstream, or one upstream's target;
//! - `link.rs` (5½): a request that needs the user's own account at an upstream not linked yet:
//!   the user asked to link it (URL elicitation), the request run again once linked;
//! - `call.rs` (6–7): request policy (kill switch → rules → limits → arguments → approval), then
//!   the upstream, within the rule's timeout;
//! - `output.rs` (8): response policy on what came back;
//! - `record.rs` (9): the audit event, from what the stages noted;
//! - `task.rs` (6–8 for the tasks extension): a call's task handle sealed to its caller, and a
//!   task's follow-ups (`tasks/get`, `tasks/update`, `tasks/cancel`) checked and vetted.
//!
//! Listings (`RelaySession::list`) are filtered by the same rules, pins and scan. Stages 1–4
//! (listener, authentication, session, decode) run in the transport before this function.

mod call;
mod link;
pub mod method;
mod output;
mod record;
mod route;
mod task;

pub use method::Method;
pub use route::{route, Route, Target};

use crate::error::GatewayError;
use crate::policy::SessionOp;
use crate::relay::session::RelaySession;
use crate::relay::Unlinked;
use crate::rpc::Peer;
use crate::trace::Trace;
use record::{Note, Unfinished};
use serde_json::{json, Value};
use std::sync::Arc;
use std::time::Instant;
use warden_policy::rules::Kind;
use warden_policy::Principal;
use warden_protocol::jsonrpc::Id;

/// Run one client request through the stages, in order. A request that needs the user to link
/// their account at an upstream first runs again once they have (`link.rs`).
pub async fn handle(
    s: &Arc<RelaySession>,
    p: &Arc<Principal>,
    id: &Id,
    method: &str,
    params: Option<Value>,
    peer: Peer,
) -> Result<Value, GatewayError> {
    let m = Method::parse(method);
    let again = s.shared.specs.iter().any(|x| x.user.is_some()) && link::may_ask(s, m);
    let kept = again.then(|| params.clone());
    let unlinked = link::unlinked(s, m);
    match run(s, p, id, method, params, peer.clone(), unlinked).await {
        Err(e @ GatewayError::LinkRequired { .. }) if again => {
            if link::ask(s, &peer, &e).await {
                s.routes_stale();
                run(s, p, id, method, kept.flatten(), peer, unlinked).await
            } else if m.is_some_and(|m| m.listing().is_some()) {
                // Declined: the listing goes on without that upstream.
                run(s, p, id, method, kept.flatten(), peer, Unlinked::LeaveOut).await
            } else {
                Err(e)
            }
        }
        other => other,
    }
}

/// The walk; `unlinked`: what a listing does with upstreams the user has not linked.
async fn run(
    s: &Arc<RelaySession>,
    p: &Arc<Principal>,
    id: &Id,
    method: &str,
    params: Option<Value>,
    peer: Peer,
    unlinked: Unlinked,
) -> Result<Value, GatewayError> {
    let started = Instant::now();
    let m = Method::parse(method);
    let audit = &s.shared.audit;
    // Nothing runs that could not be recorded (`[audit] on_full = "reject"`).
    if !audit.admits() {
        return Err(GatewayError::AuditUnavailable);
    }
    let mut note = Note::default();
    // The request's record, begun now: if the request ends before its answer (the client
    // cancels it, its session is deleted), the guard records it as cancelled.
    let kind = m.map_or("request", Method::audit_kind);
    let record = Unfinished::new(audit, s.event(p, kind, "cancelled", Some(method)), id, started);
    let mut tr = Trace::start(params.as_ref(), s.shared.traces.is_some());
    let params_name = params.as_ref().and_then(|p| p.get("name")).and_then(Value::as_str).map(str::to_string);
    // 5. route: method → handler; name/URI → (upstream, upstream's name/URI)
    let stage = tr.begin("warden.route");
    let route = match m {
        Some(m) => route(s, p, m, params).await,
        None => Err(GatewayError::MethodNotFound),
    };
    tr.end(stage);
    // 6. request policy: kill switch → authorization → limits (policy.rs) → argument schema →
    //    guards (content.rs) → approval (approval.rs); listings are filtered by the same rules,
    //    pins and the poisoning scan in `RelaySession::list` (registry.rs).
    // 7. upstream, within the rule's timeout, cancelled by a kill switch that says so
    // 8. response policy: size cap → sanitize → injection detection → redaction, and scrubbed
    //    upstream errors (content.rs), inside `call_one`, where the target is known
    let result = match (m, route) {
        (_, Err(e @ (GatewayError::UnknownTool | GatewayError::UnknownPrompt))) => {
            // Hidden by policy rather than absent: recorded as denied, with the rule.
            let (cap, kind) =
                if m == Some(Method::ToolsCall) { ("tools", Kind::Tool) } else { ("prompts", Kind::Prompt) };
            let name = params_name.as_deref().unwrap_or_default();
            match s.hidden(cap, name) {
                Some((up, orig, ro)) => {
                    let refused = s.shared.policy.ruling(p, up, kind, &orig, ro, None).err();
                    note.denied = refused.is_some();
                    note.server = Some(s.shared.specs[up].name.clone());
                    note.capability = Some(kind.as_str());
                    note.name = Some(orig);
                    let (rule, answer) = refused.map_or((None, e), |(r, a)| (Some(r), a));
                    note.rule = rule;
                    Err(answer)
                }
                None => Err(e),
            }
        }
        (_, Err(e)) => Err(e),
        (_, Ok(Route::Local(v))) => Ok(v),
        (Some(m), Ok(Route::FanOut)) => match s.shared.policy.admit_op(p, SessionOp::Listing).await {
            Ok(()) => s.list(m, p, unlinked).await,
            Err(e) => Err(e),
        },
        (_, Ok(Route::Broadcast { cap, params })) => s.broadcast(cap, method, Some(params)).await,
        (Some(m), Ok(Route::One { target, params })) => {
            call::call_one(s, p, &target, m, params, peer, &mut note, &mut tr, id).await
        }
        (Some(m), Ok(Route::Task { target, task_id, params })) => {
            task::follow_up(s, p, &target, m, &task_id, params, &mut note, &mut tr).await
        }
        // Only known methods are routed.
        (None, Ok(_)) => Err(GatewayError::MethodNotFound),
    };
    // A tool switched off by an operator answers as a tool error, which the agent's model reads:
    // it learns the tool is off for now instead of "unknown tool".
    let result = match result {
        Err(e @ GatewayError::SwitchedOff { .. }) if m == Some(Method::ToolsCall) => {
            note.refused = Some("auth_denied");
            Ok(tool_error(&e.to_string()))
        }
        other => other,
    };
    record::record(s, method, result, note, record, tr, started).await
}

/// A tool result that tells the model Warden refused the call, and why.
pub(crate) fn tool_error(why: &str) -> Value {
    json!({"content": [{"type": "text", "text": format!("Warden refused this call: {why}")}], "isError": true})
}
