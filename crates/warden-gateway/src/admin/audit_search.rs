//! `GET /admin/audit`: the audit trail searched by subject, tenant, server, tool, decision,
//! status, kind and time (`since`, `until`: RFC 3339 or a duration ago such as `15m`), newest
//! first; `format=jsonl` answers the matching records as JSON lines (an export). Operators only.
//!
//! Bounded: at most `limit` records kept (100 by default, 500 at most; 10,000 for an export)
//! and 3 seconds of scanning, after which the answer says `truncated` (the oldest part of a
//! large trail was not read). It reads the trail the way `warden audit query` does: the file's
//! segments, or the PostgreSQL table, on the blocking pool.

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
        let (mut last, mut matched, mut truncated) = (VecDeque::with_capacity(limit), 0usize, false);
        let r = warden_audit::scan_all(&store, Some(&filter), |stored| {
            matched += 1;
            if last.len() == limit {
                last.pop_front();
            }
            last.push_back(stored.line.clone());
            truncated = start.elapsed() >= SCAN_BUDGET;
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
