//! Stage 8, response policy, on the answer of a request routed to one upstream: a tool's
//! result must have the shape it declared (or the operator set), then every answer goes through
//! the output stages (size caps → sanitize → injection detection → redaction, `content/`, on the
//! blocking pool when large), and upstream errors are scrubbed. What the stages found is noted
//! for the record.

use super::method::Method;
use super::record::{json_size, Note, OFFLOAD_BYTES};
use super::route::Target;
use crate::error::GatewayError;
use crate::relay::session::RelaySession;
use serde_json::{json, Value};

/// The answer as the client may see it.
pub async fn respond(
    s: &RelaySession,
    target: &Target,
    method: Method,
    r: Result<Value, GatewayError>,
    note: &mut Note,
) -> Result<Value, GatewayError> {
    let (up, name) = (target.up, target.name.as_str());
    let server = &s.shared.specs[up].name;
    let content = &s.shared.content;
    match r {
        Ok(mut v) => {
            // A result that is not the shape the tool declared (or the operator set) is withheld.
            if method == Method::ToolsCall {
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
            if !method.is_subscription() {
                let rep = if content.classifies() || json_size(&v) > OFFLOAD_BYTES {
                    // Large outputs, and every output the classifier reads, are processed on the
                    // blocking pool, not on an async worker that other sessions' requests are
                    // waiting for.
                    let (c, srv, nm) = (content.clone(), server.clone(), name.to_string());
                    let done = tokio::task::spawn_blocking(move || {
                        let rep = c.process_output_classified(&srv, &nm, &mut v);
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
                if let Some(cut) = rep.classifier_cut {
                    note.findings.push(format!("classifier.limit:{cut}"));
                }
                taint(s, target, method, rep.injection.score, note).await;
                note.findings.extend(rep.redacted.iter().map(|c| format!("redact.{}:redacted", c.name())));
                note.truncated = rep.truncated;
                if !note.findings.is_empty() || rep.truncated {
                    tracing::warn!(server = %server, name, score = rep.injection.score, findings = ?note.findings,
                        blocked = rep.blocked, hidden = ?rep.removed, truncated = rep.truncated, "output policy acted");
                }
                if rep.blocked && method != Method::ToolsCall {
                    return Err(GatewayError::Withheld);
                }
                if rep.blocked {
                    note.refused = Some("blocked_by_guard");
                }
            }
            Ok(v)
        }
        Err(GatewayError::Upstream(mut e)) => {
            // An error from an untrusted source (a fetched page's body in a 404) taints as its
            // answer would; so does one that reads as an attempt.
            let text = format!("{} {}", e.message, e.data.as_ref().map(Value::to_string).unwrap_or_default());
            taint(s, target, method, warden_policy::inject::scan(&text).score, note).await;
            content.process_error(server, name, &mut e);
            Err(GatewayError::Upstream(e))
        }
        Err(e) => Err(e),
    }
}

/// What other people wrote (a tool that is an untrusted source), or what reads as an attempt
/// (`score` at `[content] suspicion_threshold` or over), taints the session that reads it
/// (`taint.rs`).
async fn taint(s: &RelaySession, target: &Target, method: Method, score: f32, note: &mut Note) {
    let (up, name) = (target.up, target.name.as_str());
    // The definition is looked up only for an unclassified tool of a trusted upstream.
    let open_world = || s.vetted(up, name).is_none_or(|v| v.open_world);
    let untrusted =
        method == Method::ToolsCall && s.shared.policy.untrusted_source(up, name, target.read_only, open_world);
    if !untrusted && score < s.shared.content.config().suspicion_threshold {
        return;
    }
    let why = if untrusted { "untrusted_source" } else { "suspicion" };
    let server = &s.shared.specs[up].name;
    s.taint.mark(s.shared.policy.store(), crate::taint::source(server, name, why)).await;
    note.findings.push(format!("taint:{why}"));
}
