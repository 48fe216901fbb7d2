//! `GET /admin/audit`: the audit trail searched by subject, tenant, server, tool, decision,
//! status, kind and time (`since`, `until`: RFC 3339 or a duration ago such as `15m`), newest
//! first; `format=jsonl` answers the matching records as JSON lines (an export). Operators only.
//!
//! Bounded: at most `limit` records kept (100 by default, 500 at most; 10,000 for an export),
//! 32 MiB of them (a record over 256 KiB is shown as a stub naming its time, kind and size), and
//! 3 seconds of scanning, counted on every record read (a JSONL trail is filtered here, record by
//! record; SQLite and PostgreSQL filter in their queries). The scan runs oldest first, so a cut
//! leaves out the newest records: the answer then says `truncated`, and the page asks for a
//! narrower search. It reads the trail the way `warden audit query` does, on the blocking pool.

use super::caller::{operator, Presented};
use super::{reply, AdminState};
use axum::body::Body;
use axum::extract::{Query, State};
use axum::http::{header, Response, StatusCode};
use serde::Deserialize;
use serde_json::{json, Value};
use std::collections::VecDeque;
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime};

const SCAN_BUDGET: Duration = Duration::from_secs(3);
/// Bytes of records kept for one answer, and the largest record kept whole.
const KEPT_BYTES: usize = 32 << 20;
const LARGEST_RECORD: usize = 256 << 10;

/// A record too large to show: its time, kind and size.
fn stub(line: &str) -> String {
    let e = serde_json::from_str::<warden_audit::Event>(line).ok();
    json!({"ts": e.as_ref().map(|e| e.ts.clone()), "kind": e.map(|e| e.kind),
           "detail": format!("record of {} bytes not shown: read it with warden audit query", line.len())})
    .to_string()
}

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
pub struct SearchQuery {
    subject: Option<String>,
    tenant: Option<String>,
    server: Option<String>,
    tool: Option<String>,
    decision: Option<String>,
    status: Option<String>,
    kind: Option<String>,
    since: Option<String>,
    until: Option<String>,
    limit: Option<usize>,
    /// `json` (default) or `jsonl`.
    format: Option<String>,
}

/// An RFC 3339 time or a duration before now, in the records' form.
fn time_bound(s: &str) -> Option<String> {
    let t = humantime::parse_rfc3339_weak(s)
        .ok()
        .or_else(|| humantime::parse_duration(s).ok().and_then(|ago| SystemTime::now().checked_sub(ago)))?;
    Some(humantime::format_rfc3339_micros(t).to_string())
}

fn bad(what: &str) -> Response<Body> {
    reply(StatusCode::BAD_REQUEST, json!({"error": what}))
}

pub async fn search(State(s): State<Arc<AdminState>>, p: Presented, Query(q): Query<SearchQuery>) -> Response<Body> {
    if let Err(r) = operator(&s, &p).await {
        return r;
    }
    let Some(store) = s.audit_store.clone() else {
        return reply(StatusCode::NOT_FOUND, json!({"error": "this Warden writes no searchable audit trail"}));
    };
    let export = match q.format.as_deref() {
        None | Some("json") => false,
        Some("jsonl") => true,
        Some(_) => return bad("format: json or jsonl"),
    };
    let fields = [&q.subject, &q.tenant, &q.server, &q.tool, &q.decision, &q.status, &q.kind, &q.since, &q.until];
    if fields.iter().any(|f| f.as_ref().is_some_and(|v| v.len() > 256)) {
        return bad("each filter: at most 256 bytes");
    }
    let max = if export { 10_000 } else { 500 };
    let limit = q.limit.unwrap_or(100);
    if limit == 0 || limit > max {
        return bad(&format!("limit: 1 to {max}"));
    }
    // Err: which bound did not parse.
    let bound = |v: &Option<String>, what: &'static str| match v.as_deref().filter(|v| !v.is_empty()) {
        None => Ok(None),
        Some(v) => time_bound(v).map(Some).ok_or(what),
    };
    let (since, until) = match (bound(&q.since, "since"), bound(&q.until, "until")) {
        (Ok(a), Ok(b)) => (a, b),
        (Err(what), _) | (_, Err(what)) => return bad(&format!("{what}: an RFC 3339 time or a duration (15m, 2h)")),
    };
    let nonempty = |v: Option<String>| v.filter(|v| !v.is_empty());
    let filter = warden_audit::Filter {
        subject: nonempty(q.subject),
        tenant: nonempty(q.tenant),
        server: nonempty(q.server),
        tool: nonempty(q.tool),
        decision: nonempty(q.decision),
        status: nonempty(q.status),
        kind: nonempty(q.kind),
        since,
        until,
    };
    let scanned = tokio::task::spawn_blocking(move || {
        let start = Instant::now();
        // A JSONL trail is filtered here, so that the time budget counts every record read.
        let here = matches!(&store, warden_audit::Store::File(p) if warden_audit::sink::is_jsonl(p));
        let (mut last, mut kept, mut matched, mut truncated) = (VecDeque::with_capacity(limit), 0usize, 0usize, false);
        let r = warden_audit::scan_all(&store, (!here).then_some(&filter), |stored| {
            truncated = start.elapsed() >= SCAN_BUDGET;
            let keep =
                !here || serde_json::from_str::<warden_audit::Event>(&stored.line).is_ok_and(|e| filter.matches(&e));
            if keep {
                matched += 1;
                let line = if stored.line.len() > LARGEST_RECORD { stub(&stored.line) } else { stored.line.clone() };
                kept += line.len();
                last.push_back(line);
                while last.len() > limit || (kept > KEPT_BYTES && last.len() > 1) {
                    kept -= last.pop_front().map_or(0, |l| l.len());
                }
            }
            !truncated
        });
        r.map(|_| (last, matched, truncated))
    })
    .await;
    let (last, matched, truncated) = match scanned {
        Ok(Ok(x)) => x,
        Ok(Err(e)) => {
            tracing::error!(error = %e, "admin: the audit trail could not be read");
            return reply(
                StatusCode::SERVICE_UNAVAILABLE,
                json!({"error": "the audit trail could not be read; see the log"}),
            );
        }
        Err(_) => return reply(StatusCode::INTERNAL_SERVER_ERROR, json!({"error": "the search failed"})),
    };
    if export {
        let mut body = String::new();
        for line in &last {
            body.push_str(line);
            body.push('\n');
        }
        return Response::builder()
            .header(header::CONTENT_TYPE, "application/x-ndjson")
            .header(header::CONTENT_DISPOSITION, "attachment; filename=\"warden-audit.jsonl\"")
            .body(Body::from(body))
            .expect("static response parts");
    }
    let records: Vec<Value> = last.iter().rev().filter_map(|l| serde_json::from_str(l).ok()).collect();
    reply(StatusCode::OK, json!({"records": records, "matched": matched, "truncated": truncated}))
}
