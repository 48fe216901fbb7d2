//! Requests an upstream sends to the client (issue 20 finding 5): `sampling/createMessage` (the
//! client's model writes for the server), `elicitation/create` (the user types for it) and
//! `roots/list` (the client's folders). Each passes, in order: the upstream's own allow list
//! (`[[upstream]] client_requests`, none by default), the client's capability, the output stages
//! on what the server asks (sanitized, injection-checked, redacted: `Content::process_message`),
//! then the client; its answer is redacted before it goes upstream, and every exchange, allowed
//! or refused, is one audit record (kind `client_request`).
//!
//! Defends against: an upstream using the client's model or user without the operator's say
//! (refused, and the upstream is not told the client could), prompt injection in what it asks
//! (refused under injection `block`), and secrets or personal data in the answer (a password a
//! user typed into a form, an API key the model repeated) reaching the upstream.
//! Does not defend against: what the client's model or user chooses to write within an allowed
//! exchange beyond what the redactor recognises; a server that asks for a secret through a
//! URL-mode elicitation (the user leaves the client for the server's page).

use crate::config::ClientRequest;
use crate::content::OutputReport;
use crate::relay::session::RelaySession;
use crate::rpc::Peer;
use crate::upstream::Conn;
use serde_json::Value;
use std::sync::Arc;
use std::time::Instant;
use warden_protocol::jsonrpc::{self, ErrorObject, Id};

/// The client capabilities an upstream is told of: the client's, without those of the
/// requests it may not send.
pub fn capabilities_for(client_caps: &Value, allowed: &[ClientRequest]) -> Value {
    let mut caps = client_caps.clone();
    if let Some(m) = caps.as_object_mut() {
        for r in [ClientRequest::Sampling, ClientRequest::Elicitation, ClientRequest::Roots] {
            if !allowed.contains(&r) {
                m.remove(r.capability());
            }
        }
    }
    caps
}

/// Why a question an upstream puts to the client does not reach it.
pub enum Refusal {
    /// Not a request a client serves.
    Unknown,
    /// Not in the upstream's `client_requests`.
    NotAllowed,
    /// The client did not declare this capability.
    NoCapability(&'static str),
    /// What it asks reads as a prompt injection (injection action `block`).
    Injection(OutputReport),
}

/// The checks every question from upstream `server` passes before the client sees it, in order:
/// a request a client serves, the operator's allow list, the client's capability (`caps`; `None`:
/// the request's own, checked by its run), then the output stages on what it asks (`params`
/// sanitized, injection-checked, redacted in place). Its kind and the stages' report.
pub fn vet(
    s: &RelaySession,
    server: &str,
    allowed: &[ClientRequest],
    caps: Option<&Value>,
    method: &str,
    params: Option<&mut Value>,
) -> Result<(ClientRequest, Option<OutputReport>), Refusal> {
    let kind = ClientRequest::of(method).ok_or(Refusal::Unknown)?;
    if !allowed.contains(&kind) {
        return Err(Refusal::NotAllowed);
    }
    if caps.is_some_and(|c| c.get(kind.capability()).is_none()) {
        return Err(Refusal::NoCapability(kind.capability()));
    }
    let report = match (params, kind) {
        (Some(p), ClientRequest::Sampling | ClientRequest::Elicitation) => {
            let report = s.shared.content.process_message(server, method, p);
            if report.blocked {
                return Err(Refusal::Injection(report));
            }
            Some(report)
        }
        _ => None,
    };
    Ok((kind, report))
}

/// Serve a request upstream `i` sent (not `ping`, answered by the relay): refuse it, or relay
/// it to the client and its redacted answer back; one audit record either way.
pub fn serve(
    s: &RelaySession,
    i: usize,
    conn: &Arc<Conn>,
    id: Id,
    method: String,
    mut params: Option<Value>,
    peer: Peer,
) {
    let spec = &s.shared.specs[i];
    let server = spec.name.clone();
    let mut e = s.event(&s.principal, "client_request", "success", Some(&method));
    e.server = Some(server.clone());
    e.request_id = Some(id.to_string());
    let c = conn.clone();
    let refuse = |code: i64, msg: String, status: &str, detail: &str, mut e: warden_audit::Event| {
        e.status = status.into();
        e.decision = Some("denied".into());
        e.detail = Some(detail.into());
        s.shared.audit.emit(e);
        let (c, id) = (c.clone(), id.clone());
        // What refused it, for Warden's own use (a 2026 upstream's question, `upstream/modern.rs`).
        let mut error = ErrorObject::new(code, msg);
        error.data = Some(serde_json::json!({ "refusedBy": detail }));
        tokio::spawn(async move { c.respond(id, Err(error)).await });
    };
    // The key a 2026 upstream gave this question: kept only for a stateless client's run.
    let input_key = warden_protocol::modern::take_input_key(&mut params);
    let caps = (!peer.asks_per_request()).then_some(&s.client_caps);
    match vet(s, &server, &spec.client_requests, caps, &method, params.as_mut()) {
        Ok((_, report)) => {
            if let Some(r) = report {
                e.findings.extend(r.injection.findings.iter().map(|f| format!("injection:{}", f.rule)));
                e.findings.extend(r.redacted.iter().map(|c| format!("redacted:{}", c.name())));
            }
        }
        Err(Refusal::Unknown) => {
            return refuse(
                jsonrpc::METHOD_NOT_FOUND,
                format!("client does not support {method}"),
                "validation_error",
                "unknown_method",
                e,
            )
        }
        Err(Refusal::NotAllowed) => {
            tracing::warn!(upstream = %server, method, "upstream request to the client refused: not in its client_requests");
            return refuse(
                jsonrpc::METHOD_NOT_FOUND,
                format!("client does not support {method} (refused by Warden: not allowed for this server)"),
                "auth_denied",
                "not_allowed",
                e,
            );
        }
        // A stateless request's own `_meta` decides (its run answers -32021 when it lacks it).
        Err(Refusal::NoCapability(_)) => {
            return refuse(
                jsonrpc::METHOD_NOT_FOUND,
                format!("client does not support {method}"),
                "validation_error",
                "client_unsupported",
                e,
            )
        }
        Err(Refusal::Injection(r)) => {
            e.findings.extend(r.injection.findings.iter().map(|f| format!("injection:{}", f.rule)));
            e.findings.extend(r.redacted.iter().map(|c| format!("redacted:{}", c.name())));
            tracing::warn!(upstream = %server, method, "request reads as a prompt injection; refused");
            return refuse(
                jsonrpc::INVALID_PARAMS,
                "refused by Warden: reads as a prompt injection".into(),
                "blocked_by_guard",
                "injection",
                e,
            );
        }
    }
    if let Some(k) = input_key.filter(|_| peer.asks_per_request()) {
        warden_protocol::modern::put_input_key(&mut params, &k);
    }
    e.decision = Some("allowed".into());
    let shared = s.shared.clone();
    let key = id.clone();
    let started = Instant::now();
    let task = tokio::spawn(async move {
        // Its record even when the call it serves ends first (the task is then stopped).
        let mut unanswered = Unanswered { audit: shared.audit.clone(), event: Some(e), started };
        let mut res = peer.request(&method, params).await;
        let Some(mut e) = unanswered.event.take() else { return };
        match &mut res {
            Ok(answer) => {
                let report = shared.content.process_client_answer(&server, &method, answer);
                e.findings.extend(report.redacted.iter().map(|c| format!("answer_redacted:{}", c.name())));
                // What the user did with a form (accept, decline, cancel): a fixed vocabulary.
                if let Some(a) = answer.get("action").and_then(Value::as_str).filter(|a| a.len() <= 16) {
                    e.detail = Some(a.to_string());
                }
                e.result_bytes = Some(answer.to_string().len() as u64);
            }
            Err(err) => {
                e.status = "error".into();
                e.detail = Some(
                    if err.code == jsonrpc::INTERNAL_ERROR { "client_unreachable" } else { "client_error" }.into(),
                );
            }
        }
        e.latency_us = Some(started.elapsed().as_micros() as u64);
        shared.audit.emit(e);
        c.respond(id, res).await;
    });
    conn.track_serving(key, task.abort_handle());
}

/// The record of a question put to the client, emitted as cancelled if its task is stopped
/// before the answer (the call that asked ended: cancelled, timed out, killed).
struct Unanswered {
    audit: Arc<crate::audit::Audit>,
    event: Option<warden_audit::Event>,
    started: Instant,
}

impl Drop for Unanswered {
    fn drop(&mut self) {
        if let Some(mut e) = self.event.take() {
            e.status = "cancelled".into();
            e.detail = Some("the call ended before the client answered".into());
            e.latency_us = Some(self.started.elapsed().as_micros() as u64);
            self.audit.emit(e);
        }
    }
}
