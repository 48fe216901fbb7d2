//! The checks `warden check` performs on a config, as a list of findings: for the CLI (which
//! prints them) and for `GET /admin/config` (which answers them).
//!
//! What is checked: that every secret reference resolves (each one read now, its value kept
//! nowhere: a finding names the reference that fails and why, never a value), that no sandboxed
//! upstream can reach a key or secret file, that the pin file loads (and verifies when signed),
//! what isolates each upstream on this machine (`upstreams.rs`: the sandbox helper is run once
//! per sandboxed upstream, with `/bin/true` in the server's place), the program each stdio
//! upstream runs against its pin, and a summary of the listener, authentication, rules, store,
//! admin API and audit trail.
//!
//! The checks stop at the first error, as `warden check` does (what follows it may depend on
//! it). Defends against: a config that would fail at start or run weaker than it reads. Does
//! not defend against: what changes after the check (a secret file removed, a program
//! replaced between the check and the start; the gateway checks those again when it uses them).

mod upstreams;

use crate::config::{Config, Effect, StoreBackend};
use serde::Serialize;
use std::path::PathBuf;

/// How a finding weighs.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Level {
    /// What the config does: fine.
    Ok,
    /// Runs, but weaker than it may read (a sandbox layer missing, an unpinned program).
    Warning,
    /// `warden serve` would refuse this config (or an upstream would not start).
    Error,
}

/// One finding: a line of `warden check`'s output.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct CheckLine {
    pub level: Level,
    /// The finding, without a `warning:` prefix.
    pub text: String,
    /// What `warden check` prints before it: `WARNING: ` (a protection not in force),
    /// `warning: ` (advice), or nothing.
    #[serde(skip)]
    prefix: &'static str,
}

impl CheckLine {
    fn ok(text: impl Into<String>) -> CheckLine {
        CheckLine { level: Level::Ok, text: text.into(), prefix: "" }
    }
    /// Advice (`warning: …`).
    fn warning(text: impl Into<String>) -> CheckLine {
        CheckLine { level: Level::Warning, text: text.into(), prefix: "warning: " }
    }
    /// A protection not in force (`WARNING: …`).
    fn loud(text: impl Into<String>) -> CheckLine {
        CheckLine { level: Level::Warning, text: text.into(), prefix: "WARNING: " }
    }
    /// A warning `warden check` prints as a plain line (an upstream's program not found).
    fn plain_warning(text: impl Into<String>) -> CheckLine {
        CheckLine { level: Level::Warning, text: text.into(), prefix: "" }
    }
    pub fn error(text: impl Into<String>) -> CheckLine {
        CheckLine { level: Level::Error, text: text.into(), prefix: "" }
    }

    /// The line as `warden check` prints it (the CLI prints errors to stderr, joined).
    pub fn printed(&self) -> String {
        format!("{}{}", self.prefix, self.text)
    }
}

/// Whether the findings hold no error.
pub fn passed(lines: &[CheckLine]) -> bool {
    !lines.iter().any(|l| l.level == Level::Error)
}

/// The findings collected so far; `Err` ends the checks (its lines are errors).
struct Findings(Vec<CheckLine>);

type Step = Result<(), ()>;

impl Findings {
    fn push(&mut self, l: CheckLine) {
        self.0.push(l);
    }
    /// Errors end the checks.
    fn fail(&mut self, errors: impl IntoIterator<Item = String>) -> Step {
        self.0.extend(errors.into_iter().map(CheckLine::error));
        Err(())
    }
}

/// Check `cfg` (read from `origin`, named in the first line). `helper` is the sandbox helper
/// (Warden's own binary), or why there is none; it is needed only for a sandboxed upstream.
/// Blocking: reads every secret and file the config names and runs the helper.
pub fn run(cfg: &Config, origin: &str, helper: Result<PathBuf, String>) -> Vec<CheckLine> {
    let mut f = Findings(Vec::new());
    let _ = checks(&mut f, cfg, origin, &helper);
    f.0
}

fn checks(f: &mut Findings, cfg: &Config, origin: &str, helper: &Result<PathBuf, String>) -> Step {
    // Every secret reference is read now (never kept), so `serve` cannot fail on one.
    let missing = cfg.clone().check_secrets();
    if !missing.is_empty() {
        return f.fail(missing);
    }
    // No sandboxed upstream may reach a key or secret file (serve refuses to start).
    let mut unsandboxed = Vec::new();
    let exposed = crate::upstream::exposure::exposed_secrets(cfg, &mut unsandboxed);
    for w in unsandboxed {
        f.push(CheckLine::loud(w));
    }
    if !exposed.is_empty() {
        return f.fail(exposed);
    }
    let registry = match crate::registry::Registry::new(&cfg.content, &cfg.base_dir, crate::audit::Audit::disabled()) {
        Ok(r) => r,
        Err(e) => return f.fail([e]),
    };
    f.push(CheckLine::ok(format!("{origin}: ok ({} upstream(s))", cfg.upstreams.len())));
    f.push(CheckLine::ok(registry.describe()));
    upstreams::describe(f, cfg, helper)?;
    summary(f, cfg);
    databases(f, cfg);
    Ok(())
}

/// PostgreSQL on another host reached without a verified certificate: a warning each.
fn databases(f: &mut Findings, cfg: &Config) {
    let mut urls: Vec<(String, &str)> = Vec::new();
    if let Some(u) = cfg.audit.url.as_deref().filter(|_| cfg.audit.enabled) {
        urls.push(("audit.url".into(), u));
    }
    if let Some(u) = cfg.vault.as_ref().and_then(|v| v.url.as_deref()) {
        urls.push(("vault.url".into(), u));
    }
    for u in &cfg.upstreams {
        if let Some(url) = u.sql.as_ref().and_then(|s| s.url.as_deref()) {
            urls.push((format!("upstream {}: sql.url", u.name), url));
        }
    }
    for (at, url) in urls {
        if let Some(w) = warden_audit::pg_tls::unverified(url) {
            f.push(CheckLine::warning(format!("{at}: {w}")));
        }
    }
}

/// The listener, authentication, rules, store, admin API and audit trail, a line each.
fn summary(f: &mut Findings, cfg: &Config) {
    let tls = match &cfg.listen.tls {
        Some(t) if t.client_ca_file.is_some() => "TLS 1.3 with client certificates (mTLS)",
        Some(_) => "TLS 1.3",
        None if !cfg.listen.trusted_proxies.is_empty() => "plain HTTP behind trusted proxies",
        None => "plain HTTP (loopback)",
    };
    f.push(CheckLine::ok(format!("listener: {} — {tls}", cfg.listen.addr)));
    f.push(CheckLine::ok(match &cfg.auth {
        None => "authentication: none (loopback only; every caller is `local`)".to_string(),
        Some(a) => format!(
            "authentication: {} JWT issuer(s), introspection {}, {} API key(s), built-in authorization server {}, required scopes [{}]",
            a.issuers.len(),
            if a.introspection.is_some() { "on" } else { "off" },
            a.api_keys.len(),
            if a.builtin.is_some() { "on" } else { "off" },
            a.required_scopes.join(" ")
        ),
    }));
    let deny = cfg.rules.iter().filter(|r| r.effect == Effect::Deny).count();
    f.push(CheckLine::ok(format!(
        "authorization: {} allow rule(s), {deny} deny rule(s){}",
        cfg.rules.len() - deny,
        if cfg.rules.is_empty() { " — nothing is reachable until a [[rule]] allows it" } else { "" }
    )));
    let held = cfg.rules.iter().filter(|r| r.approval.is_some()).count();
    f.push(CheckLine::ok(format!(
        "store: {:?}{}; {held} rule(s) hold calls for approval",
        cfg.store.backend,
        if cfg.store.backend == StoreBackend::Redis {
            format!(" (on outage: {:?})", cfg.store.on_outage)
        } else {
            String::new()
        }
    )));
    f.push(CheckLine::ok(match &cfg.admin {
        Some(a) => format!("admin API: {} (kill switches, approvals, /metrics)", a.addr),
        None => "admin API: off (no /metrics)".to_string(),
    }));
    let a = &cfg.audit;
    f.push(CheckLine::ok(if a.enabled {
        let settings = format!(
            "fsync {:?}, acknowledge {:?}, arguments {:?}, on_full {:?}",
            a.fsync, a.acknowledge, a.arguments, a.on_full
        )
        .to_lowercase();
        let lifecycle = a.store().map(|st| crate::audit::lifecycle(a, &st)).unwrap_or_default();
        format!(
            "audit: {} (chain {}, {settings}); checkpoint key {}{lifecycle}",
            a.path.display(),
            a.instance,
            a.signing_key.display()
        )
    } else {
        "audit: off — nothing is recorded".to_string()
    }));
}
