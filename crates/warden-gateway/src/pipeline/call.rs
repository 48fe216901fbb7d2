//! Stages 6 and 7 for a request routed to one upstream: request policy (kill switch →
//! authorization → concurrency and limits, `policy.rs`; then for a tool call its arguments:
//! schema and guards, `content/`; then approval, `approval.rs`), the attempt on record, and the
//! upstream call within the rule's timeout, cancelled by a kill switch that says so. Its answer
//! goes on to stage 8 (`output.rs`).

use super::method::Method;
use super::record::{Note, StageGuard};
use super::route::Target;
use crate::approval::Held;
use crate::config::{ApprovalMode, TaintAction};
use crate::error::GatewayError;
use crate::relay::session::RelaySession;
use crate::rpc::Peer;
use crate::trace::Trace;
use crate::upstream::oauth::ON_BEHALF;
use serde_json::{json, Value};
use std::sync::Arc;
use warden_policy::rules::{Facts, Kind};
use warden_policy::Principal;
use warden_protocol::jsonrpc::Id;

/// Stages 6 to 8 for a request routed to one upstream's target.
#[allow(clippy::too_many_arguments)]
pub async fn call_one(
    s: &Arc<RelaySession>,
    p: &Principal,
    target: &Target,
    method: Method,
    mut params: Value,
    peer: Peer,
    note: &mut Note,
    tr: &mut Trace,
    id: &Id,
) -> Result<Value, GatewayError> {
    let Target { up, kind, ref name, read_only } = *target;
    let name = name.as_str();
    let policy = &s.shared.policy;
    if !s.reaches(up) {
        return Err(crate::policy::unknown(kind));
    }
    let server = &s.shared.specs[up].name;
    note.server = Some(server.clone());
    note.capability = Some(kind.as_str());
    if kind == Kind::Resource {
        note.target = Some(name.to_string());
    } else {
        note.name = Some(name.to_string());
    }
    if kind == Kind::Tool {
        note.read_only = Some(read_only);
    }
    let args = method.has_arguments().then(|| params.get("arguments")).flatten();
    note.args = args.cloned();
    // What tainted the session (`taint.rs`): rules' conditions read it (`session.tainted`),
    // and a sink call follows `when_tainted`. The store is asked only for a sink call.
    let sink = method == Method::ToolsCall && policy.sink(up, name, read_only);
    note.taint = if sink { s.taint.sources(policy.store()).await } else { s.taint.known() };
    let stage = tr.begin("warden.policy");
    let admitted = policy.admit(p, up, kind, name, read_only, &Facts { args, taint: &note.taint }).await;
    tr.end(stage);
    let grant = match admitted {
        Ok(g) => g,
        Err(refusal) => {
            note.rule = refusal.rule;
            note.denied = refusal.denied;
            return Err(refusal.error);
        }
    };
    note.rule = Some(grant.rule.clone());
    if grant.unlimited {
        note.findings.push("limits:fail_open".into());
    }
    let content = &s.shared.content;
    if method == Method::ToolsCall {
        let empty = json!({});
        let vetted = s.vetted(up, name);
        let schema = vetted.as_ref().map(|v| &v.schema);
        let stage = tr.begin("warden.arguments");
        let checked = content.check_arguments(server, name, schema, args.unwrap_or(&empty)).await;
        tr.end(stage);
        let rewrites = match checked {
            Ok(r) => r,
            Err((by, why)) => {
                tracing::info!(server = %server, tool = name, reason = %why, "arguments refused");
                note.refused = Some(if by == "schema" { "validation_error" } else { "blocked_by_guard" });
                note.findings.push(format!("{by}:refused"));
                return Ok(super::tool_error(&why));
            }
        };
        // What the guards checked is what the upstream gets (a relative path, made absolute).
        if let Some(a) = params.get_mut("arguments").filter(|_| !rewrites.is_empty()) {
            rewrites.into_iter().for_each(|r| r.apply(a));
        }
    }
    let args = method.has_arguments().then(|| params.get("arguments")).flatten();
    // A session that read untrusted content: its calls to sinks follow `when_tainted`.
    let elicits = s.client_caps.get("elicitation").is_some();
    let (approval, why) = match note.taint.first().filter(|_| sink) {
        None => (grant.approval, None),
        Some(from) => match grant.when_tainted {
            TaintAction::Allow => {
                note.findings.push("taint:allowed".into());
                (grant.approval, None)
            }
            // Someone other than the tainted client decides, unless the rule asks the user: an
            // operator on the admin queue (the client's own answer could be the injection's).
            TaintAction::Approval if grant.approval.is_some() || policy.approvers() => {
                note.findings.push("taint:approval".into());
                let why = format!(
                    "This session read untrusted content ({from}), and this tool can send data out or change things."
                );
                (Some(grant.approval.unwrap_or(ApprovalMode::Admin)), Some(why))
            }
            action => {
                note.findings.push("taint:denied".into());
                note.denied = true;
                let why = if action == TaintAction::Deny { "" } else { " (and no one can approve it here)" };
                return Err(GatewayError::Tainted { from: crate::taint::shown(from), why });
            }
        },
    };
    if let Some(mode) = approval {
        let elicit = elicits.then_some(&peer);
        let empty = json!({});
        let args = args.unwrap_or(if method.has_arguments() { &empty } else { &params });
        let stage = tr.begin("warden.approval");
        let tool = (kind == Kind::Tool).then_some(name);
        // A kill switch flipped while the call waits for a person ends the wait.
        let r = tokio::select! {
            r = s.shared.approvals.require(mode, p, Held { server, tool: name, args, why: why.as_deref() }, elicit) => r,
            _ = policy.kills.switched_off(server, tool) => {
                Err(GatewayError::SwitchedOff { server: policy.kills.killed(server, None) })
            }
        };
        tr.end(stage);
        let mode = format!("{mode:?}").to_lowercase();
        note.approval = Some(match &r {
            Ok(g) => {
                let mut a = json!({"mode": mode, "outcome": "approved", "by_elicitation": elicit.is_some()});
                if let Some(id) = &g.id {
                    a["id"] = id.clone().into();
                }
                if let Some(by) = &g.approver {
                    a["approver"] = by.clone().into();
                }
                a
            }
            Err(GatewayError::ApprovalDenied { id, reason }) => {
                json!({"mode": mode, "outcome": "denied", "id": id, "reason": reason})
            }
            Err(GatewayError::ApprovalPending { id }) => json!({"mode": mode, "outcome": "pending", "id": id}),
            Err(e) => json!({"mode": mode, "outcome": "error", "reason": e.reason()}),
        });
        r.map(drop)?;
    }
    // The caller's own token goes with everything this request sends upstream, the connect
    // included (an upstream that takes each caller's identity: `[upstream.oauth] mode`).
    let offered = crate::upstream::oauth::presented(p);
    let conn = ON_BEHALF.scope(offered.clone(), s.conn(up)).await?;
    conn.on_behalf_of(p);
    // The attempt is on record before the upstream gets the call (fail closed on a full queue):
    // a call whose outcome is never recorded (Warden killed, the request aborted) still shows.
    let mut attempt = s.event(p, "attempt", "attempted", None);
    attempt.request_id = Some(super::record::request_id(id));
    attempt.detail = Some(method.as_str().to_string());
    attempt.server = Some(server.clone());
    attempt.capability = Some(kind.as_str().to_string());
    attempt.name.clone_from(&note.name);
    attempt.target.clone_from(&note.target);
    attempt.rule.clone_from(&note.rule);
    attempt.read_only = note.read_only;
    attempt.credential = ON_BEHALF.sync_scope(offered.clone(), || conn.credential());
    if let Some(a) = params.get("arguments") {
        s.shared.audit.arguments(&mut attempt, a);
    }
    let digest = attempt.args_digest.clone();
    // The outcome's record refers to the arguments by their digest when this one holds them
    // (not when it was dropped with the queue full: the outcome then carries them).
    if s.shared.audit.accept(attempt)? {
        note.args_in_attempt = digest;
    }
    let tool = (kind == Kind::Tool).then_some(name);
    // 7. the upstream call carries the trace on: HTTP header and `_meta.traceparent`
    let stage = tr.begin("warden.upstream");
    let traceparent = tr.traceparent(stage);
    if let Some(p) = params.as_object_mut() {
        let meta = p.entry("_meta").or_insert_with(|| json!({}));
        if let Some(m) = meta.as_object_mut() {
            m.insert("traceparent".into(), Value::String(traceparent.clone()));
        }
    }
    let call = crate::trace::TRACEPARENT.scope(traceparent, conn.call(method.as_str(), Some(params), Some(peer)));
    let call = ON_BEHALF.scope(offered.clone(), call);
    let r = tokio::select! {
        r = tokio::time::timeout(grant.timeout, call) => match r {
            Ok(r) => r.map_err(GatewayError::from),
            Err(_) => {
                tracing::info!(server = %server, name, rule = %grant.rule, "call timed out; cancelled upstream");
                Err(GatewayError::Timeout)
            }
        },
        _ = policy.kills.cancelled(server, tool) => Err(GatewayError::Cancelled),
    };
    tr.end(stage);
    note.credential = ON_BEHALF.sync_scope(offered, || conn.credential());
    let r = if method == Method::ResourcesRead { r.map(|v| s.rewrite_contents(up, v)) } else { r };
    // A task handle instead of the result (the tasks extension): sealed to the caller; its
    // result is vetted when a `tasks/get` brings it.
    if let Ok(v) = &r {
        if method == Method::ToolsCall && super::task::is_task(v) {
            return super::task::created(s, p, target, v, note, &conn);
        }
    }
    // 8. response policy, ended however this returns
    let _response = StageGuard::begin(tr, "warden.response_policy");
    super::output::respond(s, target, method, r, note).await
}
