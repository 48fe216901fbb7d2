//! Prometheus metrics, served on the admin listener at `/metrics`.
//!
//! Almost every metric is derived from the audit events as they are recorded
//! ([`Metrics::observe`]), so the metrics and the audit trail count the same things. Labels only
//! ever hold configured names (servers, rules), fixed vocabularies (methods, statuses, reasons)
//! or names of tools the upstream listed and the caller reached: never argument values, tokens,
//! subjects or anything a client chose freely (an unknown tool is counted under `tool=""`).

use prometheus_client::encoding::text::encode;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::Histogram;
use prometheus_client::registry::Registry;
use warden_audit::Event;

type Labels = Vec<(&'static str, String)>;

pub struct Metrics {
    registry: Registry,
    requests: Family<Labels, Counter>,
    latency: Family<Labels, Histogram>,
    auth_failures: Family<Labels, Counter>,
    denials: Family<Labels, Counter>,
    rate_limited: Family<Labels, Counter>,
    findings: Family<Labels, Counter>,
    result_bytes: Family<Labels, Histogram>,
    truncations: Family<Labels, Counter>,
    approvals: Family<Labels, Counter>,
    kill_switch: Family<Labels, Counter>,
    pins: Family<Labels, Counter>,
    definitions_refused: Family<Labels, Counter>,
    destructive: Family<Labels, Counter>,
    reloads: Family<Labels, Counter>,
    /// Set at scrape time.
    pub upstream_up: Family<Labels, Gauge>,
    pub upstream_restarts: Family<Labels, Gauge>,
    pub sessions: Gauge,
    pub audit_queue: Gauge,
    pub audit_dropped: Gauge,
    pub audit_rejected: Counter,
    pub audit_written: Gauge,
    pub audit_failing: Gauge,
    pub audit_disk_free: Gauge,
    pub audit_disk_low: Gauge,
    pub forward_pending: Family<Labels, Gauge>,
    pub forward_dropped: Family<Labels, Gauge>,
    /// The last hour in 10-second slots, for the console's charts.
    pub timeline: crate::timeline::Timeline,
}

fn latency_buckets() -> impl Iterator<Item = f64> {
    [0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0].into_iter()
}

fn size_buckets() -> impl Iterator<Item = f64> {
    prometheus_client::metrics::histogram::exponential_buckets(64.0, 4.0, 10)
}

impl Default for Metrics {
    fn default() -> Self {
        Self::new()
    }
}

impl Metrics {
    pub fn new() -> Metrics {
        let mut r = Registry::with_prefix("warden");
        let m = Metrics {
            requests: Family::default(),
            latency: Family::new_with_constructor(|| Histogram::new(latency_buckets())),
            auth_failures: Family::default(),
            denials: Family::default(),
            rate_limited: Family::default(),
            findings: Family::default(),
            result_bytes: Family::new_with_constructor(|| Histogram::new(size_buckets())),
            truncations: Family::default(),
            approvals: Family::default(),
            kill_switch: Family::default(),
            pins: Family::default(),
            definitions_refused: Family::default(),
            destructive: Family::default(),
            reloads: Family::default(),
            upstream_up: Family::default(),
            upstream_restarts: Family::default(),
            sessions: Gauge::default(),
            audit_queue: Gauge::default(),
            audit_dropped: Gauge::default(),
            audit_rejected: Counter::default(),
            audit_written: Gauge::default(),
            audit_failing: Gauge::default(),
            audit_disk_free: Gauge::default(),
            audit_disk_low: Gauge::default(),
            forward_pending: Family::default(),
            forward_dropped: Family::default(),
            timeline: Default::default(),
            registry: Registry::default(),
        };
        r.register("requests", "MCP requests by method, server, tool and status", m.requests.clone());
        r.register("request_duration_seconds", "Time to answer MCP requests", m.latency.clone());
        r.register("auth_failures", "Authentication failures by reason", m.auth_failures.clone());
        r.register("authz_denials", "Authorization denials by rule", m.denials.clone());
        r.register("rate_limited", "Calls refused by a limit, by limit", m.rate_limited.clone());
        r.register(
            "guard_findings",
            "Argument guard and output detector findings, by guard and action",
            m.findings.clone(),
        );
        r.register("result_bytes", "Size of results returned to clients", m.result_bytes.clone());
        r.register("truncations", "Results cut to the size cap", m.truncations.clone());
        r.register("approvals", "Approval decisions by outcome", m.approvals.clone());
        r.register("kill_switch_flips", "Kill switches turned off or on", m.kill_switch.clone());
        r.register("pin_changes", "Tool definitions that changed against their pin, and pin approvals", m.pins.clone());
        r.register(
            "definitions_refused",
            "Definitions an upstream listed beyond content.max_definitions (or the pins kept for it), withheld; by server and kind",
            m.definitions_refused.clone(),
        );
        r.register(
            "destructive_calls",
            "Calls to tools not classified read-only, that ran (success or tool error)",
            m.destructive.clone(),
        );
        r.register("config_reloads", "Config reloads, by result (success or refused)", m.reloads.clone());
        r.register("upstream_up", "Whether each upstream is connected (1) or not (0)", m.upstream_up.clone());
        r.register("upstream_restarts", "Reconnects or restarts of each upstream", m.upstream_restarts.clone());
        r.register("sessions_active", "Open client sessions", m.sessions.clone());
        r.register("audit_queue_depth", "Audit events waiting for the writer", m.audit_queue.clone());
        r.register(
            "audit_dropped",
            "Audit events dropped with the queue full (on_full = drop)",
            m.audit_dropped.clone(),
        );
        r.register("audit_rejected", "Requests refused because the audit queue was full", m.audit_rejected.clone());
        r.register("audit_written", "Audit events written by this process", m.audit_written.clone());
        r.register("audit_sink_failing", "Whether the audit sink is failing (1) or not (0)", m.audit_failing.clone());
        r.register(
            "audit_disk_free_bytes",
            "Free space on the disk of a file audit trail (looked at every second)",
            m.audit_disk_free.clone(),
        );
        r.register(
            "audit_disk_low",
            "Whether the audit trail's disk is under [audit] min_free_mb (1) or not (0)",
            m.audit_disk_low.clone(),
        );
        r.register(
            "audit_forward_pending_bytes",
            "Audit records spooled for a forward destination and not yet delivered, in bytes",
            m.forward_pending.clone(),
        );
        r.register(
            "audit_forward_dropped",
            "Audit records dropped from a forward copy (spool full), by forward",
            m.forward_dropped.clone(),
        );
        Metrics { registry: r, ..m }
    }

    /// Count definitions of `kind` from `server` withheld beyond the caps (counted as they
    /// happen; their log line and audit record come at most once a minute).
    pub fn definitions_refused(&self, server: &str, kind: &str, n: usize) {
        self.definitions_refused
            .get_or_create(&vec![("server", server.to_string()), ("kind", kind.to_string())])
            .inc_by(n as u64);
    }

    /// Count what one audit event says.
    pub fn observe(&self, e: &Event) {
        self.timeline.observe(e);
        let s = |o: &Option<String>| o.clone().unwrap_or_default();
        match e.kind.as_str() {
            "auth_failure" => {
                self.auth_failures.get_or_create(&vec![("reason", s(&e.detail))]).inc_by(e.count.unwrap_or(1));
            }
            "kill_switch" => {
                self.kill_switch.get_or_create(&vec![("server", s(&e.server)), ("action", s(&e.detail))]).inc();
            }
            "config_reload" => {
                self.reloads.get_or_create(&vec![("result", e.status.clone())]).inc();
            }
            "pin" => {
                self.pins.get_or_create(&vec![("server", s(&e.server)), ("change", s(&e.detail))]).inc();
            }
            _ => {}
        }
        if let Some(m) = &e.method {
            let labels = vec![("method", m.clone()), ("server", s(&e.server)), ("tool", s(&e.name))];
            if let Some(us) = e.latency_us {
                self.latency.get_or_create(&labels).observe(us as f64 / 1e6);
            }
            let mut with_status = labels;
            with_status.push(("status", e.status.clone()));
            self.requests.get_or_create(&with_status).inc();
        }
        if let Some(o) = e.approval.as_ref().and_then(|a| a.get("outcome")).and_then(|o| o.as_str()) {
            self.approvals.get_or_create(&vec![("outcome", o.to_string()), ("via", e.kind.clone())]).inc();
        }
        if e.decision.as_deref() == Some("denied") && e.status == "auth_denied" && e.kind != "auth_failure" {
            self.denials.get_or_create(&vec![("rule", s(&e.rule))]).inc();
        }
        if e.kind == "call" && e.read_only == Some(false) && matches!(e.status.as_str(), "success" | "backend_error") {
            self.destructive.get_or_create(&vec![("server", s(&e.server)), ("tool", s(&e.name))]).inc();
        }
        if e.status == "rate_limited" {
            self.rate_limited.get_or_create(&vec![("limit", s(&e.detail))]).inc();
        }
        for f in &e.findings {
            let (guard, action) = f.rsplit_once(':').unwrap_or((f, ""));
            self.findings.get_or_create(&vec![("guard", guard.to_string()), ("action", action.to_string())]).inc();
        }
        if let Some(n) = e.result_bytes {
            self.result_bytes.get_or_create(&vec![("server", s(&e.server))]).observe(n as f64);
        }
        if e.truncated {
            self.truncations.get_or_create(&vec![("server", s(&e.server))]).inc();
        }
    }

    /// The text exposition.
    pub fn render(&self) -> String {
        let mut out = String::new();
        encode(&mut out, &self.registry).expect("writing to a String");
        out
    }
}
