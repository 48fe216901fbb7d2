//! The call pipeline: every client request after `initialize` passes through [`handle`], in the
//! order of DESIGN.md. Stages that later issues add (authentication, request policy, response
//! policy, audit) are inserted here, in this one function, so the order stays auditable.
//!
//! Stages 1–4 (listener, authn, session, decode) run in the transport before this function.

use crate::error::GatewayError;
use crate::policy::SessionOp;
use crate::relay::{list_field, RelaySession};
use crate::rpc::Peer;
use crate::trace::Trace;
use serde_json::{json, Value};
use std::sync::Arc;
use std::time::Instant;
use warden_policy::rules::Kind;
use warden_policy::Principal;
use warden_protocol::jsonrpc::Id;

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

/// What the stages learned about one request, for its audit record.
#[derive(Default)]
pub struct Note {
    server: Option<String>,
    capability: Option<&'static str>,
    name: Option<String>,
    target: Option<String>,
    rule: Option<String>,
    denied: bool,
    /// A refusal that answers with a tool error rather than a JSON-RPC error.
    refused: Option<&'static str>,
    findings: Vec<String>,
    truncated: bool,
    approval: Option<Value>,
    args: Option<Value>,
    read_only: Option<bool>,
}

/// The audit kind of a method.
fn kind_of(method: &str) -> &'static str {
    match method {
        "tools/call" => "call",
        "resources/read" => "read",
        "prompts/get" => "prompt",
        "completion/complete" => "complete",
        "resources/subscribe" | "resources/unsubscribe" => "subscribe",
        "ping" => "ping",
        "logging/setLevel" => "logging",
        m if list_field(m).is_some() => "list",
        _ => "request",
    }
}

/// What happened, in the audit vocabulary, kept apart from what policy decided.
fn status_of(result: &Result<Value, GatewayError>, note: &Note) -> &'static str {
    match result {
        Ok(_) if note.refused.is_some() => note.refused.unwrap_or_default(),
        Ok(v) if v.get("isError").and_then(Value::as_bool) == Some(true) => "backend_error",
        Ok(_) => "success",
        Err(e) => match e {
            GatewayError::RateLimited { .. } => "rate_limited",
            _ if note.denied => "auth_denied",
            GatewayError::ApprovalDenied { .. } | GatewayError::SwitchedOff { .. } => "auth_denied",
            GatewayError::Timeout => "timeout",
            GatewayError::Withheld => "blocked_by_guard",
            GatewayError::Upstream(_) | GatewayError::Unavailable => "backend_error",
            GatewayError::Cancelled => "cancelled",
            GatewayError::ApprovalPending { .. } => "approval_pending",
            GatewayError::StoreUnavailable | GatewayError::AuditUnavailable => "unavailable",
            GatewayError::MethodNotFound
            | GatewayError::UnknownTool
            | GatewayError::UnknownPrompt
            | GatewayError::UnknownResource
            | GatewayError::InvalidParams(_) => "validation_error",
        },
    }
}

/// Results larger than this (JSON bytes) go through the output stages on the blocking pool.
const OFFLOAD_BYTES: u64 = 64 << 10;

/// The JSON size of a result, without building the text.
fn json_size(v: &Value) -> u64 {
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

pub async fn handle(
    s: &Arc<RelaySession>,
    p: &Arc<Principal>,
    id: &Id,
    method: &str,
    params: Option<Value>,
    peer: Peer,
) -> Result<Value, GatewayError> {
    let started = Instant::now();
    let audit = &s.shared.audit;
    // Nothing runs that could not be recorded (`[audit] on_full = "reject"`).
    if !audit.admits() {
        return Err(GatewayError::AuditUnavailable);
    }
    let mut note = Note::default();
    // The request's record, begun now: if the request ends before its answer (the client
    // cancels it, its session is deleted), the guard records it as cancelled.
    let mut record = Unfinished::new(audit, s.event(p, kind_of(method), "cancelled", Some(method)), id, started);
    let mut tr = Trace::start(params.as_ref(), s.shared.traces.is_some());
    let params_name = params.as_ref().and_then(|p| p.get("name")).and_then(Value::as_str).map(str::to_string);
    // 5. route: method → handler; name/URI → (upstream, upstream's name/URI)
    let stage = tr.begin("warden.route");
    let route = route(s, method, params).await;
    tr.end(stage);
    // 6. request policy: kill switch → authorization → limits (policy.rs) → argument schema →
    //    guards (content.rs) → approval (approval.rs); listings are filtered by the same rules,
    //    pins and the poisoning scan in `RelaySession::list` (registry.rs).
    // 7. upstream, within the rule's timeout, cancelled by a kill switch that says so
    // 8. response policy: size cap → sanitize → injection detection → redaction, and scrubbed
    //    upstream errors (content.rs), inside `call_one`, where the target is known
    let result = match route {
        Err(e @ (GatewayError::UnknownTool | GatewayError::UnknownPrompt)) => {
            // Hidden by policy rather than absent: recorded as denied, with the rule.
            let (cap, kind) = if method == "tools/call" { ("tools", Kind::Tool) } else { ("prompts", Kind::Prompt) };
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
        Err(e) => Err(e),
        Ok(Route::Local(v)) => Ok(v),
        Ok(Route::FanOut) => match s.shared.policy.admit_op(p, SessionOp::Listing).await {
            Ok(()) => s.list(method, p).await,
            Err(e) => Err(e),
        },
        Ok(Route::Broadcast { cap, params }) => s.broadcast(cap, method, Some(params)).await,
        Ok(Route::One { up, params, target: (kind, name, read_only) }) => {
            call_one(s, p, up, method, params, kind, &name, read_only, peer, &mut note, &mut tr, id).await
        }
    };
    // A tool switched off by an operator answers as a tool error, which the agent's model reads:
    // it learns the tool is off for now instead of "unknown tool".
    let result = match result {
        Err(e @ GatewayError::SwitchedOff { .. }) if method == "tools/call" => {
            note.refused = Some("auth_denied");
            Ok(tool_error(&e.to_string()))
        }
        other => other,
    };
    // 9. record: the audit event (metrics are derived from it); the answer waits for it to be
    //    stored unless `[audit] acknowledge = "queued"`.
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
    e.findings = note.findings;
    e.truncated = note.truncated;
    e.approval = note.approval;
    e.read_only = note.read_only;
    if let Some(a) = &note.args {
        audit.arguments(&mut e, a);
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

#[allow(clippy::too_many_arguments)]
async fn call_one(
    s: &Arc<RelaySession>,
    p: &Principal,
    up: usize,
    method: &str,
    mut params: Value,
    kind: Kind,
    name: &str,
    read_only: bool,
    peer: Peer,
    note: &mut Note,
    tr: &mut Trace,
    id: &Id,
) -> Result<Value, GatewayError> {
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
    let args = matches!(method, "tools/call" | "prompts/get").then(|| params.get("arguments")).flatten();
    note.args = args.cloned();
    let stage = tr.begin("warden.policy");
    let admitted = policy.admit(p, up, kind, name, read_only, args).await;
    tr.end(stage);
    let grant = match admitted {
        Ok(g) => g,
        Err(e) => {
            if matches!(
                e,
                GatewayError::UnknownTool
                    | GatewayError::UnknownPrompt
                    | GatewayError::UnknownResource
                    | GatewayError::SwitchedOff { .. }
            ) {
                note.rule = policy.ruling(p, up, kind, name, read_only, args).err().map(|(r, _)| r);
                note.denied = note.rule.is_some();
            }
            // A limit refused what a rule allowed: recorded as denied, with that rule.
            if matches!(e, GatewayError::RateLimited { .. }) {
                note.rule = policy.ruling(p, up, kind, name, read_only, args).ok();
                note.denied = true;
            }
            return Err(e);
        }
    };
    note.rule = Some(grant.rule.clone());
    if grant.unlimited {
        note.findings.push("limits:fail_open".into());
    }
    let content = &s.shared.content;
    if method == "tools/call" {
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
                return Ok(tool_error(&why));
            }
        };
        // What the guards checked is what the upstream gets (a relative path, made absolute).
        if let Some(a) = params.get_mut("arguments").filter(|_| !rewrites.is_empty()) {
            rewrites.into_iter().for_each(|r| r.apply(a));
        }
    }
    let args = matches!(method, "tools/call" | "prompts/get").then(|| params.get("arguments")).flatten();
    if let Some(mode) = grant.approval {
        let elicit = s.client_caps.get("elicitation").is_some().then_some(&peer);
        let empty = json!({});
        let args = args.unwrap_or(if method == "tools/call" || method == "prompts/get" { &empty } else { &params });
        let stage = tr.begin("warden.approval");
        let tool = (kind == Kind::Tool).then_some(name);
        // A kill switch flipped while the call waits for a person ends the wait.
        let r = tokio::select! {
            r = s.shared.approvals.require(mode, p, server, name, args, elicit) => r,
            _ = policy.kills.switched_off(server, tool) => {
                Err(GatewayError::SwitchedOff { server: policy.kills.killed(server, None) })
            }
        };
        tr.end(stage);
        let mode = format!("{mode:?}").to_lowercase();
        note.approval = Some(match &r {
            Ok(()) => json!({"mode": mode, "outcome": "approved", "by_elicitation": elicit.is_some()}),
            Err(GatewayError::ApprovalDenied { id, reason }) => {
                json!({"mode": mode, "outcome": "denied", "id": id, "reason": reason})
            }
            Err(GatewayError::ApprovalPending { id }) => json!({"mode": mode, "outcome": "pending", "id": id}),
            Err(e) => json!({"mode": mode, "outcome": "error", "reason": e.reason()}),
        });
        r?;
    }
    let conn = s.conn(up).await?;
    // The attempt is on record before the upstream gets the call (fail closed on a full queue):
    // a call whose outcome is never recorded (Warden killed, the request aborted) still shows.
    let mut attempt = s.event(p, "attempt", "attempted", None);
    attempt.request_id = Some(request_id(id));
    attempt.detail = Some(method.to_string());
    attempt.server = Some(server.clone());
    attempt.capability = Some(kind.as_str().to_string());
    attempt.name.clone_from(&note.name);
    attempt.target.clone_from(&note.target);
    attempt.rule.clone_from(&note.rule);
    attempt.read_only = note.read_only;
    if let Some(a) = params.get("arguments") {
        s.shared.audit.arguments(&mut attempt, a);
    }
    s.shared.audit.accept(attempt)?;
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
    let call = crate::trace::TRACEPARENT.scope(traceparent, conn.call(method, Some(params), Some(peer)));
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
    let r = if method == "resources/read" { r.map(|v| s.rewrite_contents(up, v)) } else { r };
    // 8. response policy, ended however this returns
    let _response = StageGuard::begin(tr, "warden.response_policy");
    match r {
        Ok(mut v) => {
            // A result that is not the shape the tool declared (or the operator set) is withheld.
            if method == "tools/call" {
                let vetted = s.vetted(up, name);
                let declared = vetted.as_ref().and_then(|d| d.output.as_ref());
                if let Err(why) = content.check_output(server, name, declared, &v) {
                    tracing::warn!(server = %server, tool = name, reason = %why, "output withheld: not the declared shape");
                    note.findings.push("output_schema:withheld".into());
                    note.refused = Some("blocked_by_guard");
                    return Ok(
                        json!({"content": [{"type": "text", "text": format!("Warden withheld this output: {why}")}], "isError": true}),
                    );
                }
            }
            if method != "resources/subscribe" && method != "resources/unsubscribe" {
                let rep = if json_size(&v) > OFFLOAD_BYTES {
                    // Large outputs are processed on the blocking pool, not on an async worker
                    // that other sessions' requests are waiting for.
                    let (c, srv, nm) = (content.clone(), server.clone(), name.to_string());
                    let done = tokio::task::spawn_blocking(move || {
                        let rep = c.process_output(&srv, &nm, &mut v);
                        (v, rep)
                    });
                    let (processed, rep) = done.await.map_err(|_| GatewayError::Unavailable)?;
                    v = processed;
                    rep
                } else {
                    content.process_output(server, name, &mut v)
                };
                let action = format!("{:?}", content.config().injection).to_lowercase();
                if rep.injection.is_injection(content.config().injection_threshold) {
                    note.findings
                        .extend(rep.injection.findings.iter().map(|f| format!("injection.{}:{action}", f.rule)));
                }
                if rep.removed.any() {
                    note.findings.push("sanitize:removed".into());
                }
                note.findings.extend(rep.redacted.iter().map(|c| format!("redact.{}:redacted", c.name())));
                note.truncated = rep.truncated;
                if !note.findings.is_empty() || rep.truncated {
                    tracing::warn!(server = %server, name, score = rep.injection.score, findings = ?note.findings,
                        blocked = rep.blocked, hidden = ?rep.removed, truncated = rep.truncated, "output policy acted");
                }
                if rep.blocked && method != "tools/call" {
                    return Err(GatewayError::Withheld);
                }
                if rep.blocked {
                    note.refused = Some("blocked_by_guard");
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

/// A request id as recorded.
fn request_id(id: &Id) -> String {
    match id {
        Id::Str(x) => x.clone(),
        other => other.to_string(),
    }
}

/// A request's audit event from its start; recorded as `cancelled` if dropped unfinished.
struct Unfinished<'a> {
    audit: &'a crate::audit::Audit,
    event: Option<warden_audit::Event>,
    started: Instant,
}

impl<'a> Unfinished<'a> {
    fn new(audit: &'a crate::audit::Audit, mut e: warden_audit::Event, id: &Id, started: Instant) -> Self {
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

/// A tool result that tells the model Warden refused the call, and why.
fn tool_error(why: &str) -> Value {
    json!({"content": [{"type": "text", "text": format!("Warden refused this call: {why}")}], "isError": true})
}

/// A stage that ends when dropped (for stages with several exits).
struct StageGuard<'a>(&'a mut Trace, crate::trace::Stage);

impl<'a> StageGuard<'a> {
    fn begin(tr: &'a mut Trace, name: &'static str) -> StageGuard<'a> {
        let s = tr.begin(name);
        StageGuard(tr, s)
    }
}

impl Drop for StageGuard<'_> {
    fn drop(&mut self) {
        self.0.end(self.1);
    }
}

fn str_param<'a>(p: &'a Value, key: &str) -> Result<&'a str, GatewayError> {
    p.get(key).and_then(Value::as_str).ok_or(GatewayError::InvalidParams("missing string parameter"))
}

/// The upstream's URI in canonical form: what the rules match and what the upstream gets
/// (`warden_policy::uri`), so that `../`, `%2e`, `//` or `file://localhost/` cannot slip past
/// a resource rule.
fn canonical_uri(uri: &str) -> Result<String, GatewayError> {
    warden_policy::uri::normalize(uri).map_err(|e| {
        tracing::info!(reason = %e, "resource URI refused");
        GatewayError::InvalidParams(
            "resource URI cannot be normalized (encoded separator, `..` above the root, or malformed)",
        )
    })
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
            let (up, listed) = s.resolve_uri(&uri).await.ok_or(GatewayError::UnknownResource)?;
            let orig = canonical_uri(&listed)?;
            // A resource withheld from listings because it changed since pinned is not read by URI
            // either (it looks unknown, like any refused target).
            let registry = &s.shared.registry;
            let server = &s.shared.specs[up].name;
            if [&listed, &orig].iter().any(|u| registry.is_pending(crate::registry::PinKind::Resource, server, u)) {
                return Err(GatewayError::UnknownResource);
            }
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
                    (up, "uri", canonical_uri(&o)?)
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
