//! Stage 9, record: what the stages learned about one request ([`Note`]) becomes its audit
//! event — begun when the request arrives ([`Unfinished`]: a request that ends before its
//! answer is recorded as cancelled) and finished with the outcome, in the audit vocabulary.

use crate::error::GatewayError;
use crate::relay::session::RelaySession;
use crate::trace::Trace;
use serde_json::Value;
use std::time::Instant;
use warden_protocol::jsonrpc::Id;

/// What the stages learned about one request, for its audit record.
#[derive(Default)]
pub struct Note {
    pub server: Option<String>,
    pub capability: Option<&'static str>,
    pub name: Option<String>,
    pub target: Option<String>,
    pub rule: Option<String>,
    pub denied: bool,
    /// A refusal that answers with a tool error rather than a JSON-RPC error.
    pub refused: Option<&'static str>,
    pub findings: Vec<String>,
    pub truncated: bool,
    pub approval: Option<Value>,
    pub args: Option<Value>,
    /// The arguments' digest, when the call's attempt record holds the arguments: the outcome
    /// record then refers to them by it (issue 24: each call's arguments stored once).
    pub args_in_attempt: Option<String>,
    pub read_only: Option<bool>,
    /// What tainted the session before this request (`taint.rs`).
    pub taint: Vec<String>,
    /// Which credential reached the upstream (`Conn::credential`).
    pub credential: Option<String>,
}

/// What happened, in the audit vocabulary, kept apart from what policy decided.
pub fn status_of(result: &Result<Value, GatewayError>, note: &Note) -> &'static str {
    match result {
        Ok(_) if note.refused.is_some() => note.refused.unwrap_or_default(),
        Ok(v) if v.get("isError").and_then(Value::as_bool) == Some(true) => "backend_error",
        Ok(_) => "success",
        Err(e) => match e {
            GatewayError::RateLimited { .. } => "rate_limited",
            _ if note.denied => "auth_denied",
            GatewayError::ApprovalDenied { .. }
            | GatewayError::SwitchedOff { .. }
            | GatewayError::Tainted { .. }
            | GatewayError::CannotLink { .. } => "auth_denied",
            GatewayError::Timeout => "timeout",
            GatewayError::Withheld => "blocked_by_guard",
            GatewayError::Upstream(_) | GatewayError::Unavailable => "backend_error",
            GatewayError::Cancelled => "cancelled",
            GatewayError::ApprovalPending { .. } => "approval_pending",
            GatewayError::LinkRequired { .. } => "link_required",
            GatewayError::StoreUnavailable | GatewayError::AuditUnavailable => "unavailable",
            GatewayError::MethodNotFound
            | GatewayError::UnknownTool
            | GatewayError::UnknownPrompt
            | GatewayError::UnknownResource
            | GatewayError::InvalidParams(_)
            | GatewayError::MissingCapability { .. } => "validation_error",
        },
    }
}

/// Results larger than this (JSON bytes) go through the output stages on the blocking pool.
pub const OFFLOAD_BYTES: u64 = 64 << 10;

/// The JSON size of a result, without building the text.
pub fn json_size(v: &Value) -> u64 {
    struct Count(u64);
    impl std::io::Write for Count {
        fn write(&mut self, b: &[u8]) -> std::io::Result<usize> {
            self.0 += b.len() as u64;
            Ok(b.len())
        }
        fn flush(&mut self) -> std::io::Result<()> {
            Ok(())
        }
    }
    let mut c = Count(0);
    let _ = serde_json::to_writer(&mut c, v);
    c.0
}

/// Stage 9, record: the request's audit event from what the stages noted (metrics are derived
/// from it), its span when traces are exported; the answer waits for the event to be stored
/// unless `[audit] acknowledge = "queued"`.
pub async fn record(
    s: &RelaySession,
    method: &str,
    result: Result<Value, GatewayError>,
    note: Note,
    mut record: Unfinished<'_>,
    mut tr: Trace,
    started: Instant,
) -> Result<Value, GatewayError> {
    let audit = &s.shared.audit;
    let status = status_of(&result, &note);
    let mut e = record.finish();
    e.status = status.to_string();
    e.latency_us = Some(started.elapsed().as_micros() as u64);
    e.server = note.server;
    e.capability = note.capability.map(str::to_string);
    e.name = note.name;
    e.target = note.target;
    // What policy finally decided: a call held for approval is pending, and one the approver
    // refused is denied, whatever rule allowed it to be asked.
    e.decision = match (&note.rule, note.denied, &result) {
        (_, _, Err(GatewayError::ApprovalPending { .. })) => Some("pending".into()),
        (_, _, Err(GatewayError::ApprovalDenied { .. })) => Some("denied".into()),
        (_, true, _) => Some("denied".into()),
        (Some(_), false, _) => Some("allowed".into()),
        (None, false, _) => None,
    };
    e.rule = note.rule;
    e.credential = note.credential;
    e.findings = note.findings;
    e.taint = note.taint;
    e.truncated = note.truncated;
    e.approval = note.approval;
    e.read_only = note.read_only;
    match (note.args_in_attempt, &note.args) {
        (Some(digest), _) => e.args_digest = Some(digest),
        (None, Some(a)) => audit.arguments(&mut e, a),
        (None, None) => {}
    }
    match &result {
        Ok(v) if matches!(e.kind.as_str(), "call" | "read" | "prompt") => e.result_bytes = Some(json_size(v)),
        Ok(_) => {}
        Err(err) => {
            e.detail = Some(match err {
                GatewayError::RateLimited { limit, .. } => (*limit).to_string(),
                other => other.reason().to_string(),
            });
            tracing::info!(method, reason = err.reason(), elapsed_us = started.elapsed().as_micros() as u64, "error");
        }
    }
    e.trace_id = Some(tr.trace_id());
    // what the request's span is named and says, only when spans are exported
    let exported = s.shared.traces.as_deref().map(|x| (x, e.server.clone(), e.name.clone(), e.decision.clone()));
    let stage = tr.begin("warden.audit");
    let committed = audit.commit(e).await;
    tr.end(stage);
    if let Some((exporter, server, name, decision)) = exported {
        let span = match &name {
            Some(n) => format!("{method} {n}"),
            None => method.to_string(),
        };
        let attributes = [
            ("mcp.method.name", Some(method)),
            ("warden.server", server.as_deref()),
            ("warden.name", name.as_deref()),
            ("warden.decision", decision.as_deref()),
            ("warden.status", Some(status)),
        ];
        tr.finish(span, &attributes, status != "success", exporter);
    }
    committed?;
    result
}

/// A request id as recorded.
pub fn request_id(id: &Id) -> String {
    match id {
        Id::Str(x) => x.clone(),
        other => other.to_string(),
    }
}

/// A request's audit event from its start; recorded as `cancelled` if dropped unfinished.
pub struct Unfinished<'a> {
    audit: &'a crate::audit::Audit,
    event: Option<warden_audit::Event>,
    started: Instant,
}

impl<'a> Unfinished<'a> {
    pub fn new(audit: &'a crate::audit::Audit, mut e: warden_audit::Event, id: &Id, started: Instant) -> Self {
        e.request_id = Some(request_id(id));
        Unfinished { audit, event: Some(e), started }
    }

    /// The event, for the request's own record: the guard has nothing left to do.
    fn finish(&mut self) -> warden_audit::Event {
        self.event.take().expect("finished once")
    }
}

impl Drop for Unfinished<'_> {
    fn drop(&mut self) {
        if let Some(mut e) = self.event.take() {
            e.latency_us = Some(self.started.elapsed().as_micros() as u64);
            e.detail =
                Some("the request ended before its answer (cancelled by the client, or its session closed)".into());
            self.audit.emit(e);
        }
    }
}

/// A stage that ends when dropped (for stages with several exits).
pub struct StageGuard<'a>(&'a mut Trace, crate::trace::Stage);

impl<'a> StageGuard<'a> {
    pub fn begin(tr: &'a mut Trace, name: &'static str) -> StageGuard<'a> {
        let s = tr.begin(name);
        StageGuard(tr, s)
    }
}

impl Drop for StageGuard<'_> {
    fn drop(&mut self) {
        self.0.end(self.1);
    }
}
