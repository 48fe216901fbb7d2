//! Distributed tracing: W3C trace context in and out, and a span per pipeline stage.
//!
//! A request continues the trace its client started when `params._meta.traceparent` holds a
//! valid W3C `traceparent` (how MCP carries trace context, whatever the transport), and starts
//! a new one otherwise. The call to the upstream carries the context onward, as the HTTP
//! `traceparent` header and in `params._meta.traceparent` (stdio servers see it too), with the
//! upstream span as parent. The trace id is in the request's audit record.
//!
//! With `[telemetry] traces_url`, each request's spans (the request, then route, policy,
//! arguments, approval, upstream, response policy, audit) go to an OpenTelemetry collector as
//! OTLP/HTTP JSON, batched on a thread of their own behind a bounded queue: a slow or absent
//! collector costs the request path nothing, and spans that do not fit are dropped and
//! counted. Without it, nothing is recorded beyond the ids.

use rand::RngCore;
use serde_json::{json, Value};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::mpsc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

tokio::task_local! {
    /// The `traceparent` of the upstream call being made in this task, for the HTTP transport.
    pub static TRACEPARENT: String;
}

use crate::digest::hex;

fn unhex<const N: usize>(s: &str) -> Option<[u8; N]> {
    if s.len() != 2 * N || !s.bytes().all(|c| c.is_ascii_digit() || (b'a'..=b'f').contains(&c)) {
        return None;
    }
    let mut out = [0u8; N];
    for (i, o) in out.iter_mut().enumerate() {
        *o = u8::from_str_radix(&s[2 * i..2 * i + 2], 16).ok()?;
    }
    Some(out)
}

/// A W3C `traceparent` (version 00): trace id, parent span id, flags. All-zero ids are invalid.
pub fn parse_traceparent(s: &str) -> Option<([u8; 16], [u8; 8], u8)> {
    let mut parts = s.trim().split('-');
    let (v, t, p, f) = (parts.next()?, parts.next()?, parts.next()?, parts.next()?);
    if v != "00" || parts.next().is_some() {
        return None;
    }
    let (t, p, f) = (unhex::<16>(t)?, unhex::<8>(p)?, unhex::<1>(f)?);
    (t != [0; 16] && p != [0; 8]).then_some((t, p, f[0]))
}

fn span_id() -> [u8; 8] {
    let mut b = [0u8; 8];
    while b == [0; 8] {
        rand::rng().fill_bytes(&mut b);
    }
    b
}

fn nanos(t: SystemTime) -> String {
    t.duration_since(UNIX_EPOCH).map_or(0, |d| d.as_nanos()).to_string()
}

struct Span {
    name: &'static str,
    id: [u8; 8],
    start: SystemTime,
    end: Option<SystemTime>,
    /// 2 = server, 3 = client, 1 = internal (OTLP `SpanKind`).
    kind: u8,
}

/// One request's trace.
pub struct Trace {
    trace_id: [u8; 16],
    /// The client's span, when it sent one.
    parent: Option<[u8; 8]>,
    flags: u8,
    /// Index 0 is the request's own span.
    spans: Vec<Span>,
    record: bool,
}

/// A started stage, to end with [`Trace::end`].
#[derive(Clone, Copy)]
pub struct Stage(usize);

impl Trace {
    /// Continue the client's trace from `params._meta.traceparent`, or start one. `record`:
    /// keep spans for export.
    pub fn start(params: Option<&Value>, record: bool) -> Trace {
        let incoming =
            params.and_then(|p| p.pointer("/_meta/traceparent")).and_then(Value::as_str).and_then(parse_traceparent);
        let (trace_id, parent, flags) = match incoming {
            Some((t, p, f)) => (t, Some(p), f),
            None => {
                let mut t = [0u8; 16];
                while t == [0; 16] {
                    rand::rng().fill_bytes(&mut t);
                }
                (t, None, 1)
            }
        };
        let root = Span { name: "", id: span_id(), start: SystemTime::now(), end: None, kind: 2 };
        Trace { trace_id, parent, flags, spans: vec![root], record }
    }

    pub fn trace_id(&self) -> String {
        hex(&self.trace_id)
    }

    /// Start a stage (a child of the request's span). Without export only the upstream stage
    /// is kept (its id is the parent the upstream sees); the others cost nothing.
    pub fn begin(&mut self, name: &'static str) -> Stage {
        let upstream = name == "warden.upstream";
        if !self.record && !upstream {
            return Stage(usize::MAX);
        }
        let kind = if upstream { 3 } else { 1 };
        self.spans.push(Span { name, id: span_id(), start: SystemTime::now(), end: None, kind });
        Stage(self.spans.len() - 1)
    }

    pub fn end(&mut self, s: Stage) {
        if let Some(span) = self.spans.get_mut(s.0) {
            span.end.get_or_insert_with(SystemTime::now);
        }
    }

    /// The `traceparent` to send with a stage's outgoing call.
    pub fn traceparent(&self, s: Stage) -> String {
        format!("00-{}-{}-{:02x}", hex(&self.trace_id), hex(&self.spans[s.0].id), self.flags)
    }

    /// End the request's span as `name` with `attributes`; hand the spans to `exporter`.
    pub fn finish(mut self, name: String, attributes: &[(&str, Option<&str>)], error: bool, exporter: &Exporter) {
        let now = SystemTime::now();
        let root = hex(&self.spans[0].id);
        let trace = hex(&self.trace_id);
        let attrs: Vec<Value> =
            attributes.iter().filter_map(|(k, v)| v.map(|v| json!({"key": k, "value": {"stringValue": v}}))).collect();
        self.spans[0].end = Some(now);
        let spans: Vec<Value> = self
            .spans
            .iter()
            .enumerate()
            .map(|(i, s)| {
                let mut v = json!({
                    "traceId": trace,
                    "spanId": hex(&s.id),
                    "name": if i == 0 { name.as_str() } else { s.name },
                    "kind": s.kind,
                    "startTimeUnixNano": nanos(s.start),
                    "endTimeUnixNano": nanos(s.end.unwrap_or(now)),
                });
                if i == 0 {
                    if let Some(p) = self.parent {
                        v["parentSpanId"] = json!(hex(&p));
                    }
                    v["attributes"] = json!(attrs);
                    v["status"] = json!({"code": if error { 2 } else { 1 }});
                } else {
                    v["parentSpanId"] = json!(root);
                }
                v
            })
            .collect();
        exporter.push(spans);
    }
}

/// Sends finished spans to an OTLP/HTTP collector, a batch at a time, from its own thread.
pub struct Exporter {
    tx: mpsc::SyncSender<Vec<Value>>,
    pub dropped: AtomicU64,
}

/// Requests' traces waiting for the exporter, at most.
const QUEUE: usize = 4096;

impl Exporter {
    pub fn start(url: &str, headers: reqwest::header::HeaderMap) -> Result<Exporter, String> {
        let (tx, rx) = mpsc::sync_channel::<Vec<Value>>(QUEUE);
        let client = crate::dns::client_builder()
            .default_headers(headers)
            .timeout(Duration::from_secs(10))
            .build()
            .map_err(|e| format!("telemetry: {e}"))?;
        let url = url.to_string();
        std::thread::Builder::new()
            .name("warden-traces".into())
            .spawn(move || {
                let Ok(rt) = tokio::runtime::Builder::new_current_thread().enable_all().build() else { return };
                let mut warned = false;
                while let Ok(first) = rx.recv() {
                    // whatever else is waiting joins the batch (up to 512 traces)
                    let mut spans = first;
                    for more in rx.try_iter().take(511) {
                        spans.extend(more);
                    }
                    let body = json!({"resourceSpans": [{
                        "resource": {"attributes": [{"key": "service.name", "value": {"stringValue": "warden"}}]},
                        "scopeSpans": [{"scope": {"name": "warden.gateway"}, "spans": spans}],
                    }]});
                    let sent = rt.block_on(async { client.post(&url).json(&body).send().await });
                    match sent.map(|r| r.status()) {
                        Ok(s) if s.is_success() => warned = false,
                        other if !warned => {
                            warned = true;
                            let why = other.map_or_else(|e| e.without_url().to_string(), |s| s.to_string());
                            tracing::warn!(error = %why, "trace export failed (spans are dropped, not retried)");
                        }
                        _ => {}
                    }
                }
            })
            .map_err(|e| format!("telemetry: {e}"))?;
        Ok(Exporter { tx, dropped: AtomicU64::new(0) })
    }

    fn push(&self, spans: Vec<Value>) {
        if self.tx.try_send(spans).is_err() {
            self.dropped.fetch_add(1, Ordering::Relaxed);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn traceparent_parses_strictly() {
        let ok = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01";
        let (t, p, f) = parse_traceparent(ok).unwrap();
        assert_eq!(
            (hex(&t).as_str(), hex(&p).as_str(), f),
            ("4bf92f3577b34da6a3ce929d0e0e4736", "00f067aa0ba902b7", 1)
        );
        for bad in [
            "",
            "01-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01",
            "00-00000000000000000000000000000000-00f067aa0ba902b7-01",
            "00-4bf92f3577b34da6a3ce929d0e0e4736-0000000000000000-01",
            "00-4BF92F3577B34DA6A3CE929D0E0E4736-00f067aa0ba902b7-01",
            "00-4bf92f3577b34da6a3ce929d0e0e473-00f067aa0ba902b7-01",
            "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01-extra",
            "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-zz",
        ] {
            assert!(parse_traceparent(bad).is_none(), "{bad}");
        }
        // a request continues the client's trace and hands on its own span
        let params = json!({"_meta": {"traceparent": ok}});
        let mut tr = Trace::start(Some(&params), false);
        assert_eq!(tr.trace_id(), "4bf92f3577b34da6a3ce929d0e0e4736");
        let up = tr.begin("warden.upstream");
        let out = tr.traceparent(up);
        let (t, p, _) = parse_traceparent(&out).unwrap();
        assert_eq!(hex(&t), "4bf92f3577b34da6a3ce929d0e0e4736");
        assert_ne!(hex(&p), "00f067aa0ba902b7");
    }
}
