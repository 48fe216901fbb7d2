//! `[[audit.forward]]`: copies of the audit trail sent to a SIEM (newline-delimited JSON) or an
//! OpenTelemetry collector (OTLP/HTTP JSON logs). Each forwarder reads its disk spool (filled
//! by the audit writer, see `warden_audit::spool`), POSTs a batch, and commits the offset only
//! on a 2xx answer; failures are retried with exponential backoff (0.5 s up to 30 s), so a
//! destination that is down delays delivery and loses nothing, across restarts too.
//!
//! Runs on a thread of its own with its own small runtime: a slow or hanging destination never
//! touches the request path or the audit writer (bounded by `timeout_ms` per request).

use crate::config::{ForwardConfig, ForwardFormat};
use serde_json::{json, Value};
use std::sync::Arc;
use std::time::Duration;
use warden_audit::spool::Spool;

/// Start forwarding `spool` per `cfg`, on its own thread. `chain` names this instance.
pub fn start(cfg: &ForwardConfig, chain: &str, spool: Arc<Spool>) -> Result<(), String> {
    let headers = crate::config::header_map(&cfg.headers, &cfg.secret_headers)
        .map_err(|e| format!("audit.forward {}: {e}", cfg.name))?;
    let client = crate::dns::client_builder()
        .default_headers(headers)
        .timeout(Duration::from_millis(cfg.timeout_ms))
        .build()
        .map_err(|e| format!("audit.forward {}: {e}", cfg.name))?;
    let f = Forwarder { cfg: cfg.clone(), chain: chain.to_string(), spool, client };
    std::thread::Builder::new()
        .name(format!("warden-forward-{}", cfg.name))
        .spawn(move || match tokio::runtime::Builder::new_current_thread().enable_all().build() {
            Ok(rt) => rt.block_on(f.run()),
            Err(e) => tracing::error!(forward = %f.cfg.name, error = %e, "audit forwarder cannot start"),
        })
        .map_err(|e| format!("audit.forward {}: {e}", cfg.name))?;
    Ok(())
}

struct Forwarder {
    cfg: ForwardConfig,
    chain: String,
    spool: Arc<Spool>,
    client: reqwest::Client,
}

impl Forwarder {
    async fn run(self) {
        let idle = Duration::from_millis(self.cfg.flush_ms);
        let mut backoff = Duration::from_millis(500);
        let mut failing = false;
        loop {
            let (lines, next) = match self.spool.read(self.cfg.batch) {
                Ok(r) => r,
                Err(e) => {
                    tracing::error!(forward = %self.cfg.name, error = %e, "cannot read the audit forward spool");
                    tokio::time::sleep(backoff).await;
                    continue;
                }
            };
            if lines.is_empty() {
                tokio::time::sleep(idle).await;
                continue;
            }
            match self.send(&lines).await {
                Ok(()) => {
                    if failing {
                        tracing::warn!(forward = %self.cfg.name, "audit forward destination recovered");
                        failing = false;
                    }
                    backoff = Duration::from_millis(500);
                    if let Err(e) = self.spool.commit(next) {
                        tracing::error!(forward = %self.cfg.name, error = %e, "cannot commit the audit forward offset");
                    }
                }
                Err(e) => {
                    if !failing {
                        tracing::error!(forward = %self.cfg.name, error = %e, pending_bytes = self.spool.pending(), "audit forward failed; retrying (records stay spooled)");
                        failing = true;
                    }
                    tokio::time::sleep(backoff).await;
                    backoff = (backoff * 2).min(Duration::from_secs(30));
                }
            }
        }
    }

    async fn send(&self, lines: &[String]) -> Result<(), String> {
        let (content_type, body) = match self.cfg.format {
            ForwardFormat::Jsonl => ("application/x-ndjson", (lines.join("\n") + "\n").into_bytes()),
            ForwardFormat::Otlp => ("application/json", otlp_logs(&self.chain, lines).to_string().into_bytes()),
        };
        let r = self
            .client
            .post(&self.cfg.url)
            .header(reqwest::header::CONTENT_TYPE, content_type)
            .body(body)
            .send()
            .await
            .map_err(|e| e.without_url().to_string())?;
        if r.status().is_success() {
            Ok(())
        } else {
            Err(format!("answered {}", r.status()))
        }
    }
}

/// Audit records as an OTLP/HTTP JSON `ExportLogsServiceRequest`: one log record per audit
/// record, the record itself as the body, its main fields as `warden.*` attributes, and
/// `WARN` severity for denials and failures.
pub fn otlp_logs(chain: &str, lines: &[String]) -> Value {
    let s = |v: &str| json!({ "stringValue": v });
    let records: Vec<Value> = lines
        .iter()
        .map(|line| {
            let r: Value = serde_json::from_str(line).unwrap_or(Value::Null);
            let nanos = r["ts"]
                .as_str()
                .and_then(|t| humantime::parse_rfc3339(t).ok())
                .and_then(|t| t.duration_since(std::time::UNIX_EPOCH).ok())
                .map_or(0, |d| d.as_nanos());
            let mut attributes = Vec::new();
            for k in [
                "chain",
                "kind",
                "status",
                "decision",
                "rule",
                "server",
                "name",
                "subject",
                "tenant",
                "request_id",
                "hash",
            ] {
                if let Some(v) = r[k].as_str() {
                    attributes.push(json!({"key": format!("warden.{k}"), "value": s(v)}));
                }
            }
            if let Some(n) = r["seq"].as_u64() {
                attributes.push(json!({"key": "warden.seq", "value": {"intValue": n.to_string()}}));
            }
            let warn = r["decision"] == "denied" || !matches!(r["status"].as_str(), Some("success") | None);
            json!({
                "timeUnixNano": nanos.to_string(),
                "observedTimeUnixNano": nanos.to_string(),
                "severityNumber": if warn { 13 } else { 9 },
                "severityText": if warn { "WARN" } else { "INFO" },
                "body": s(line),
                "attributes": attributes,
            })
        })
        .collect();
    json!({"resourceLogs": [{
        "resource": {"attributes": [
            {"key": "service.name", "value": s("warden")},
            {"key": "service.instance.id", "value": s(chain)},
        ]},
        "scopeLogs": [{"scope": {"name": "warden.audit"}, "logRecords": records}],
    }]})
}
