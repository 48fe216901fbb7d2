//! Stages 6–8 for the tasks extension (SEP-2663, `io.modelcontextprotocol/tasks`): a tool call
//! that an upstream answers with a task handle, and the task's follow-ups.
//!
//! - **Creation** (from `call.rs`, after the call passed every request stage): the upstream's
//!   task id is sealed to the caller, the upstream and the tool (`task_handle.rs`); the client
//!   gets the `Task` fields only (no `requestState`, result or questions), `ttlMs` at most
//!   Warden's handle lifetime, the status message through the output stages. An upstream that
//!   answers a task to a client that did not take the extension is refused.
//! - **Follow-ups** (`tasks/get`, `tasks/update`, `tasks/cancel`, routed by the sealed id in
//!   `route.rs`): the kill switch of the tool and its upstream is checked again (a switched-off
//!   task can still be cancelled); the upstream gets a request rebuilt from the task id and the
//!   answers (`inputResponses`, redacted); a `tasks/get` answer is rebuilt — its result, cut to
//!   a complete tool result, through stage 8 as the tool's (declared shape, sanitizing,
//!   injection detection, redaction), its error scrubbed, its questions (`inputRequests`) put
//!   through what an upstream's own request to the client goes through (`client_requests`: the
//!   operator's allow list, the client's capability, the output stages). A question the
//!   operator refuses cancels the task upstream and the client sees it failed, with why; one the
//!   polling request lacks the capability for is -32021 (the task waits).
//!
//! Defends against: reaching another caller's task or another upstream's by its id (sealed),
//! a result or question that would have been refused on a direct call arriving later through
//! a task instead, a task kept running past a kill switch, and upstream fields riding along
//! on the task (dropped).
//! Polls count against the caller's per-principal call rate. A task answered to a client that
//! did not take the extension is refused and cancelled upstream.
//!
//! Does not defend against: a rule changed after the call (the task keeps the decision its call
//! got, like a call in flight; the kill switch stops its follow-ups but does not cancel it), or
//! an upstream that keeps working on a task Warden cancelled (cancellation is cooperative in the
//! extension). Limits: a 2025 upstream's task lives in the upstream session of the Warden
//! session that created it, so only that session (for a 2026 client: the same set of declared
//! capabilities) reaches it; a 2026 upstream's one connection serves every session.

use super::method::Method;
use super::record::Note;
use super::route::Target;
use crate::client_requests::{self, Refusal};
use crate::error::GatewayError;
use crate::policy::SessionOp;
use crate::relay::session::RelaySession;
use crate::relay::upstreams::Lease;
use crate::task_handle::{Handle, MAX_TTL_SECS, MAX_UPSTREAM_ID};
use crate::trace::Trace;
use serde_json::{json, Map, Value};
use std::sync::Arc;
use std::time::Duration;
use warden_policy::Principal;
use warden_protocol::jsonrpc::{self, ErrorObject};
use warden_protocol::modern::declares_tasks;

/// How long a follow-up may take upstream (they report; the work runs on its own).
const FOLLOW_UP_TIMEOUT: Duration = Duration::from_secs(30);
/// Most questions one `tasks/get` may carry (as in one `input_required` round).
const MAX_QUESTIONS: usize = crate::upstream::modern::MAX_INPUT_REQUESTS;
const STATUSES: [&str; 5] = ["working", "input_required", "completed", "failed", "cancelled"];

/// Is an upstream's result a task handle?
pub fn is_task(v: &Value) -> bool {
    v.get("resultType").and_then(Value::as_str) == Some("task")
}

fn fault(why: &str) -> GatewayError {
    GatewayError::Upstream(ErrorObject::new(jsonrpc::INTERNAL_ERROR, format!("upstream error: {why}")))
}

/// The client's task for an upstream's `CreateTaskResult` (`conn`: the connection it came on).
pub fn created(
    s: &RelaySession,
    p: &Principal,
    target: &Target,
    v: &Value,
    note: &mut Note,
    conn: &Lease,
) -> Result<Value, GatewayError> {
    let server = &s.shared.specs[target.up].name;
    let upstream_id = match v.get("taskId").and_then(Value::as_str) {
        Some(t) if !t.is_empty() && t.len() <= MAX_UPSTREAM_ID => t.to_string(),
        _ => return Err(fault("a task without a usable taskId")),
    };
    note.target = Some(correlation(server, &upstream_id));
    if !declares_tasks(&s.client_caps) {
        // The work would go on unseen (and a retry would do it twice): it is cancelled.
        tracing::warn!(server = %server, tool = %target.name, "a task answered to a client without the tasks extension; refused and cancelled");
        note.findings.push("task:unasked".into());
        let (conn, cancel) = (conn.clone(), json!({ "taskId": upstream_id }));
        tokio::spawn(async move {
            let _ = tokio::time::timeout(FOLLOW_UP_TIMEOUT, conn.call("tasks/cancel", Some(cancel), None)).await;
        });
        return Err(fault("a task, to a client that did not take the tasks extension"));
    }
    let handle = Handle {
        server: server.clone(),
        task: upstream_id,
        owner: p.binding_key(),
        tool: target.name.clone(),
        read_only: target.read_only,
        expires: crate::clock::now_secs() + MAX_TTL_SECS,
    };
    let id = s.shared.tasks.seal(&handle);
    let mut out = envelope(s, target, v, &id, note)?;
    out.insert("resultType".into(), "task".into());
    note.findings.push("task:created".into());
    Ok(Value::Object(out))
}

/// A task's follow-up, to the upstream that holds it.
#[allow(clippy::too_many_arguments)]
pub async fn follow_up(
    s: &Arc<RelaySession>,
    p: &Principal,
    target: &Target,
    method: Method,
    task_id: &str,
    client: Value,
    note: &mut Note,
    tr: &mut Trace,
) -> Result<Value, GatewayError> {
    let (up, name) = (target.up, target.name.as_str());
    if !s.reaches(up) {
        return Err(GatewayError::InvalidParams("unknown task"));
    }
    let server = s.shared.specs[up].name.clone();
    let upstream_id = client["taskId"].as_str().unwrap_or_default().to_string();
    note.server = Some(server.clone());
    note.capability = Some("tool");
    note.name = Some(name.to_string());
    note.target = Some(correlation(&server, &upstream_id));
    // A poll counts as a call against the caller's per-principal rate.
    s.shared.policy.admit_op(p, SessionOp::TaskFollowUp).await?;
    // Switched off: nothing more of the task reaches the client; cancelling it still does.
    let kills = &s.shared.policy.kills;
    if kills.killed(&server, Some(name)) && method != Method::TasksCancel {
        note.refused = Some("auth_denied");
        return Err(GatewayError::SwitchedOff { server: kills.killed(&server, None) });
    }
    // What the upstream gets is rebuilt: its own task id and, for an update, the answers
    // (redacted); nothing else of the client's request rides along.
    let mut params = json!({ "taskId": upstream_id });
    if method == Method::TasksUpdate {
        let Some(answers) = client.get("inputResponses").and_then(Value::as_object) else {
            return Err(GatewayError::InvalidParams("inputResponses must be an object"));
        };
        if answers.len() > MAX_QUESTIONS {
            return Err(GatewayError::InvalidParams("too many inputResponses"));
        }
        let mut vetted = Map::new();
        for (k, a) in answers {
            let mut a = a.clone();
            let report = s.shared.content.process_client_answer(&server, name, &mut a);
            note.findings.extend(report.redacted.iter().map(|c| format!("answer_redacted.{}:redacted", c.name())));
            vetted.insert(k.clone(), a);
        }
        params["inputResponses"] = Value::Object(vetted);
    }
    let offered = crate::upstream::oauth::presented(p);
    let conn = crate::upstream::oauth::ON_BEHALF.scope(offered.clone(), s.conn(up)).await?;
    conn.on_behalf_of(p);
    let stage = tr.begin("warden.upstream");
    let call = conn.call(method.as_str(), Some(params), None);
    let r = crate::upstream::oauth::ON_BEHALF.scope(offered, tokio::time::timeout(FOLLOW_UP_TIMEOUT, call)).await;
    tr.end(stage);
    let v = match r {
        Err(_) => return Err(GatewayError::Timeout),
        Ok(Err(mut e)) => {
            s.shared.content.process_error(&server, name, &mut e);
            return Err(GatewayError::Upstream(e));
        }
        Ok(Ok(v)) => v,
    };
    if method != Method::TasksGet {
        // An acknowledgement: nothing of the upstream's rides along.
        return Ok(json!({}));
    }
    if v.get("taskId").is_some_and(|t| t.as_str() != Some(upstream_id.as_str())) {
        return Err(fault("tasks/get answered for another task"));
    }
    let mut out = envelope(s, target, &v, task_id, note)?;
    match v["status"].as_str() {
        Some("completed") => {
            let result = v.get("result").filter(|r| r.is_object()).cloned();
            let result = result.ok_or_else(|| fault("a completed task without its result"))?;
            // The tool's result, as a direct call's would be: complete, in the client's shape.
            if result.get("resultType").is_some_and(|t| t != "complete") {
                return Err(fault("a completed task whose result is not complete"));
            }
            let mut result = crate::upstream::modern::clean_result(result);
            if let Some(m) = result.as_object_mut() {
                m.remove("requestState");
                m.remove("inputRequests");
            }
            let vetted = super::output::respond(s, target, Method::ToolsCall, Ok(result), note).await?;
            out.insert("result".into(), vetted);
        }
        Some("failed") => {
            let mut e = ErrorObject::from_value(&v["error"])
                .unwrap_or_else(|| ErrorObject::new(jsonrpc::INTERNAL_ERROR, "the task failed"));
            s.shared.content.process_error(&server, name, &mut e);
            out.insert("error".into(), e.to_value());
        }
        Some("input_required") => match questions(s, target, &v, note) {
            Ok(q) => {
                out.insert("inputRequests".into(), q);
            }
            // The client can answer once it declares what is asked: the task waits.
            Err(Refused::Client(capability)) => {
                note.findings.push("task:question_needs_capability".into());
                return Err(GatewayError::MissingCapability {
                    what: "a capability the task's question needs",
                    required: json!({ capability: {} }),
                });
            }
            Err(Refused::Operator(why)) => {
                // The question never reaches the client, and the task would wait for it forever.
                tracing::warn!(server = %server, tool = name, reason = %why, "a task's question refused; task cancelled upstream");
                note.findings.push("task:question_refused".into());
                let cancel = json!({ "taskId": upstream_id });
                let _ = tokio::time::timeout(FOLLOW_UP_TIMEOUT, conn.call("tasks/cancel", Some(cancel), None)).await;
                out.insert("status".into(), "failed".into());
                out.remove("statusMessage");
                let e = ErrorObject::new(jsonrpc::INTERNAL_ERROR, format!("Warden refused the task's question: {why}"));
                out.insert("error".into(), e.to_value());
            }
        },
        _ => {}
    }
    Ok(Value::Object(out))
}

/// What ties a task's records together: a digest of its upstream and the upstream's id (the
/// client's id is a fresh envelope each time; the upstream's is kept out of the trail).
fn correlation(server: &str, upstream_id: &str) -> String {
    let d = crate::digest::sha256(format!("{server}\n{upstream_id}").as_bytes());
    format!("task:{}", &crate::digest::hex(&d)[..16])
}

/// The `Task` fields of an upstream's task as the client sees it: its id the sealed one, the
/// lifetime at most the handle's, the status message through the output stages.
fn envelope(
    s: &RelaySession,
    target: &Target,
    v: &Value,
    task_id: &str,
    note: &mut Note,
) -> Result<Map<String, Value>, GatewayError> {
    let server = &s.shared.specs[target.up].name;
    let status = v.get("status").and_then(Value::as_str).filter(|st| STATUSES.contains(st));
    let status = status.ok_or_else(|| fault("a task without a known status"))?;
    let mut out = Map::new();
    out.insert("taskId".into(), task_id.into());
    out.insert("status".into(), status.into());
    for k in ["createdAt", "lastUpdatedAt"] {
        if let Some(t) = v.get(k).and_then(Value::as_str).filter(|t| t.len() <= 64) {
            out.insert(k.into(), t.into());
        }
    }
    let most = MAX_TTL_SECS * 1000;
    let ttl = v.get("ttlMs").and_then(Value::as_u64).map_or(most, |t| t.min(most));
    out.insert("ttlMs".into(), ttl.into());
    if let Some(poll) = v.get("pollIntervalMs").and_then(Value::as_u64) {
        out.insert("pollIntervalMs".into(), poll.min(3_600_000).into());
    }
    if let Some(m) = v.get("statusMessage").and_then(Value::as_str) {
        let mut r = json!({"content": [{"type": "text", "text": m}]});
        let report = s.shared.content.process_output(server, &target.name, &mut r);
        note.findings.extend(report.redacted.iter().map(|c| format!("redact.{}:redacted", c.name())));
        if report.blocked {
            note.findings.push("task:status_message_withheld".into());
        } else if let Some(t) = r.pointer("/content/0/text").and_then(Value::as_str) {
            out.insert("statusMessage".into(), t.into());
        }
    }
    Ok(out)
}

/// Why a task's question does not reach the client.
enum Refused {
    /// The operator's rules (or the upstream's question itself): the task cannot go on.
    Operator(String),
    /// The client did not declare this capability (it may, on its next poll).
    Client(&'static str),
}

/// A task's questions as the client may see them, or why one is refused.
fn questions(s: &RelaySession, target: &Target, v: &Value, note: &mut Note) -> Result<Value, Refused> {
    let spec = &s.shared.specs[target.up];
    let refuse = |why: String| Refused::Operator(why);
    let asked = v.get("inputRequests").and_then(Value::as_object);
    let asked = asked.ok_or_else(|| refuse("an input_required task without questions".into()))?;
    if asked.len() > MAX_QUESTIONS {
        return Err(refuse(format!("more than {MAX_QUESTIONS} questions at once")));
    }
    let mut out = Map::new();
    for (key, q) in asked {
        let method = q.get("method").and_then(Value::as_str).unwrap_or_default();
        let mut params = q.get("params").cloned().unwrap_or_else(|| json!({}));
        let allowed = &spec.client_requests;
        match client_requests::vet(s, &spec.name, allowed, Some(&s.client_caps), method, Some(&mut params)) {
            Ok((_, report)) => {
                let redacted = report.iter().flat_map(|r| r.redacted.iter());
                note.findings.extend(redacted.map(|c| format!("redact.{}:redacted", c.name())));
            }
            Err(Refusal::Unknown) => return Err(refuse(format!("{method:?} is not a question a task may ask"))),
            Err(Refusal::NotAllowed) => return Err(refuse(format!("{method} is not allowed for this server"))),
            Err(Refusal::NoCapability(c)) => return Err(Refused::Client(c)),
            Err(Refusal::Injection(_)) => return Err(refuse(format!("{method} reads as a prompt injection"))),
        }
        out.insert(key.clone(), json!({"method": method, "params": params}));
    }
    Ok(Value::Object(out))
}
