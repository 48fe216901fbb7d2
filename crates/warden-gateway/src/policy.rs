//! Stage 6 of the pipeline up to argument validation: kill switch → authorization → limits.
//! [`Policy::admit`] is the one entry for a call; [`Policy::visible`] filters listings.
//!
//! Defends against: callers reaching targets no rule allows (denied and unknown targets get the
//! same answer, so nothing can be enumerated; a target switched off by a kill switch says so only
//! to callers the rules would let use it), upstream annotations relaxing rules (the effective
//! classification comes from the operator; an upstream's `readOnlyHint` counts only with
//! `trust_annotations`), floods (GCRA per caller, per caller × tool, per tenant; daily quotas;
//! concurrency caps per caller and per upstream), hung upstreams (per-rule timeouts that cancel
//! the call), and runaway tools (kill switches, see `killswitch.rs`).
//! Limits are taken from the [`Store`] (this process, or Redis shared by replicas), all of a call's
//! at once or none; while the store is out, `[store] on_outage` decides (fail closed by default).
//! Concurrency caps are per process. Human approval is `approval.rs`.

use crate::config::{ApprovalMode, Config, Effect, OnOutage, TaintAction, ToolClass, ToolClasses, Transport};
use crate::error::GatewayError;
use crate::killswitch::KillSwitches;
use crate::store::{Check, Limit, Store};
use parking_lot::Mutex;
use serde_json::Value;
use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::{OwnedSemaphorePermit, Semaphore};
use warden_policy::limits::Rate;
use warden_policy::rules::{Condition, Decision, Facts, Glob, Kind, Rule, RuleSet, Target};
use warden_policy::Principal;

const DEFAULT_TIMEOUT: Duration = Duration::from_secs(30);

/// Why a target was refused.
enum Refused<'a> {
    /// A kill switch (of the tool, or of its whole `server`); `allowed`: the rules would allow it.
    Killed { kind: Kind, allowed: bool, server: bool },
    /// The deny rule's id, or `no allow rule`.
    Rule { kind: Kind, by: &'a str },
}

impl Refused<'_> {
    /// What refused, for the audit record and the log.
    fn by(&self) -> &str {
        match self {
            Refused::Killed { .. } => "kill_switch",
            Refused::Rule { by, .. } => by,
        }
    }

    /// The answer. Switched off, and allowed by the rules: say so (the caller may know the
    /// target; it should not retry or look for a way around). Anything else: the unknown-target
    /// answer, so that nothing can be enumerated.
    fn answer(&self) -> GatewayError {
        match *self {
            Refused::Killed { allowed: true, server, .. } => GatewayError::SwitchedOff { server },
            Refused::Killed { kind, .. } | Refused::Rule { kind, .. } => unknown(kind),
        }
    }
}

/// What an allow rule imposes on the calls it allows.
pub struct Obligation {
    rate: Option<Rate>,
    daily_quota: Option<u64>,
    timeout: Duration,
    approval: Option<ApprovalMode>,
    when_tainted: TaintAction,
}

struct Classification {
    tools: BTreeMap<String, ToolClasses>,
    trust_annotations: bool,
}

pub struct Policy {
    rules: RuleSet,
    obligations: Vec<Obligation>,
    per_principal: Option<Rate>,
    per_tenant: Option<Rate>,
    initialize_rate: Option<Rate>,
    listing_rate: Option<Rate>,
    principal_concurrency: Option<usize>,
    store: Arc<dyn Store>,
    /// `[admin]` is configured: someone can decide the approval queue.
    approvers: bool,
    on_outage: OnOutage,
    in_flight: Mutex<HashMap<String, Arc<Semaphore>>>,
    upstream_slots: Vec<Option<Arc<Semaphore>>>,
    classes: Vec<Classification>,
    names: Vec<String>,
    pub kills: Arc<KillSwitches>,
}

/// `admit` says why it refused in `denied_by` (the rule, `no allow rule` or `kill_switch`).
/// What an admitted call carries: the rule that allowed it, its timeout, and the concurrency
/// slots it holds until it is dropped.
/// Why [`Policy::admit`] refused a call: the error the client gets, and for the record the rule
/// (or kill switch) that decided and whether that is a denial.
#[derive(Debug)]
pub struct Refusal {
    pub error: GatewayError,
    pub rule: Option<String>,
    pub denied: bool,
}

pub struct Grant {
    pub rule: String,
    pub timeout: Duration,
    /// Whose decision the call waits for, if anyone's.
    pub approval: Option<ApprovalMode>,
    /// What the call does if it is to a sink and its session is tainted.
    pub when_tainted: TaintAction,
    /// Let through without its limits: the store was out and `on_outage = "fail_open"` (the
    /// call's record says so).
    pub unlimited: bool,
    _slots: Vec<OwnedSemaphorePermit>,
}

fn globs(v: &[String]) -> Vec<Glob> {
    v.iter().map(|s| Glob::new(s)).collect()
}

/// Compile the `[[rule]]` tables (also used by `Config::validate`).
pub fn compile_rules(cfg: &Config) -> Result<(RuleSet, Vec<Obligation>), String> {
    let mut ids = std::collections::HashSet::new();
    let mut rules = Vec::new();
    let mut obligations = Vec::new();
    for (i, r) in cfg.rules.iter().enumerate() {
        let at = format!("rule[{i}]");
        if r.id.is_empty() || !ids.insert(r.id.as_str()) {
            return Err(format!("{at}.id: expected a unique, non-empty id"));
        }
        if r.tools.is_empty() && r.resources.is_empty() && r.prompts.is_empty() {
            return Err(format!("{at} ({}): names no tools, resources or prompts", r.id));
        }
        for s in &r.servers {
            if !s.contains('*') && !cfg.upstreams.iter().any(|u| &u.name == s) {
                return Err(format!("{at}.servers: no upstream is named {s:?}"));
            }
        }
        let when = r.when.as_deref().map(Condition::compile).transpose().map_err(|e| format!("{at}.when: {e}"))?;
        let rate =
            r.rate.as_deref().map(|x| Rate::parse(x, r.burst)).transpose().map_err(|e| format!("{at}.rate: {e}"))?;
        if r.burst.is_some() && r.rate.is_none() {
            return Err(format!("{at}.burst: needs rate"));
        }
        if r.timeout_secs == Some(0) || r.daily_quota == Some(0) {
            return Err(format!("{at}: timeout_secs and daily_quota must be at least 1"));
        }
        if r.effect == Effect::Deny
            && (rate.is_some() || r.daily_quota.is_some() || r.timeout_secs.is_some() || r.approval.is_some())
        {
            return Err(format!("{at}: a deny rule takes no rate, quota, timeout or approval"));
        }
        if r.approval.is_some() && cfg.admin.is_none() {
            return Err(format!("{at}.approval: approvals are decided on the admin API; configure [admin]"));
        }
        obligations.push(Obligation {
            rate,
            daily_quota: r.daily_quota,
            timeout: r.timeout_secs.map_or(DEFAULT_TIMEOUT, Duration::from_secs),
            approval: r.approval,
            when_tainted: r.when_tainted.unwrap_or_default(),
        });
        rules.push(Rule {
            id: r.id.clone(),
            deny: r.effect == Effect::Deny,
            servers: globs(&r.servers),
            tools: globs(&r.tools),
            resources: globs(&r.resources),
            prompts: globs(&r.prompts),
            scopes: r.scopes.clone(),
            roles: r.roles.clone(),
            tenants: r.tenants.clone(),
            read_only: r.read_only,
            when,
        });
    }
    Ok((RuleSet::new(rules), obligations))
}

fn limit_rate(rate: &Option<String>, burst: Option<u64>, key: &str) -> Result<Option<Rate>, String> {
    rate.as_deref().map(|r| Rate::parse(r, burst)).transpose().map_err(|e| format!("limits.{key}: {e}"))
}

/// The rates of `[limits]`.
pub struct LimitRates {
    pub per_principal: Option<Rate>,
    pub per_tenant: Option<Rate>,
    pub initialize: Option<Rate>,
    pub listings: Option<Rate>,
}

fn session_rate(rate: &str, burst: u64, key: &str) -> Result<Option<Rate>, String> {
    if rate == "off" {
        return Ok(None);
    }
    limit_rate(&Some(rate.to_string()), Some(burst.max(1)), key)
}

/// Check `[limits]` (also used by `Config::validate`).
pub fn compile_limits(cfg: &Config) -> Result<LimitRates, String> {
    let l = &cfg.limits;
    if l.max_concurrent_per_principal == Some(0) || cfg.upstreams.iter().any(|u| u.max_concurrency == Some(0)) {
        return Err("max_concurrent_per_principal and max_concurrency must be at least 1".into());
    }
    Ok(LimitRates {
        per_principal: limit_rate(&l.per_principal, l.per_principal_burst, "per_principal")?,
        per_tenant: limit_rate(&l.per_tenant, l.per_tenant_burst, "per_tenant")?,
        initialize: session_rate(&l.initialize_per_principal, l.initialize_burst, "initialize_per_principal")?,
        listings: session_rate(&l.listings_per_principal, l.listings_burst, "listings_per_principal")?,
    })
}

/// A session-level operation with a rate per caller of its own.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum SessionOp {
    Initialize,
    Listing,
    /// A task's follow-up (`tasks/get`, `tasks/update`, `tasks/cancel`): charged to the caller's
    /// per-principal call rate, so polling is bounded like calling.
    TaskFollowUp,
}

/// A limit key of at most 128 bytes (longer ones by their digest), so that long subjects or
/// tenants cannot make the limiter's maps (here, or in Redis) large.
fn bounded(key: String) -> String {
    if key.len() <= 128 {
        return key;
    }
    format!("#{}", crate::digest::hex(&crate::digest::sha256(key.as_bytes())))
}

/// The answer for a target that does not exist — and for one the caller may not know exists.
pub fn unknown(kind: Kind) -> GatewayError {
    match kind {
        Kind::Tool => GatewayError::UnknownTool,
        Kind::Prompt => GatewayError::UnknownPrompt,
        Kind::Resource => GatewayError::UnknownResource,
    }
}

impl Policy {
    pub fn new(cfg: &Config, kills: Arc<KillSwitches>, store: Arc<dyn Store>) -> Result<Policy, String> {
        let (rules, obl) = compile_rules(cfg)?;
        let rates = compile_limits(cfg)?;
        Ok(Policy {
            rules,
            obligations: obl,
            per_principal: rates.per_principal,
            per_tenant: rates.per_tenant,
            initialize_rate: rates.initialize,
            listing_rate: rates.listings,
            principal_concurrency: cfg.limits.max_concurrent_per_principal,
            store,
            approvers: cfg.admin.is_some(),
            on_outage: cfg.store.on_outage,
            in_flight: Mutex::new(HashMap::new()),
            upstream_slots: cfg
                .upstreams
                .iter()
                .map(|u| u.max_concurrency.map(|n| Arc::new(Semaphore::new(n))))
                .collect(),
            classes: cfg
                .upstreams
                .iter()
                .map(|u| Classification {
                    tools: u.classify.clone(),
                    // Warden's own tools describe themselves truthfully
                    trust_annotations: u.trust_annotations || u.transport == Transport::Builtin,
                })
                .collect(),
            names: cfg.upstreams.iter().map(|u| u.name.clone()).collect(),
            kills,
        })
    }

    /// Can anyone decide the approval queue (`[admin]`)?
    pub fn approvers(&self) -> bool {
        self.approvers
    }

    /// The store of limits (and of session taint, `taint.rs`).
    pub fn store(&self) -> &dyn Store {
        self.store.as_ref()
    }

    pub fn rules(&self) -> &RuleSet {
        &self.rules
    }

    /// Admit one session-level operation of `p` (`[limits] initialize_per_principal`,
    /// `listings_per_principal`): each opens or asks every upstream the caller reaches, so a
    /// caller with nothing to call could otherwise start processes without end. The anonymous
    /// loopback caller is everyone on its machine and is not limited here.
    pub async fn admit_op(&self, p: &Principal, op: SessionOp) -> Result<(), GatewayError> {
        let (rate, tag, scope) = match op {
            SessionOp::Initialize => (self.initialize_rate, "i", "initialize"),
            SessionOp::Listing => (self.listing_rate, "l", "listing"),
            SessionOp::TaskFollowUp => (self.per_principal, "p", "principal"),
        };
        let Some(rate) = rate.filter(|_| p.method != warden_policy::AuthMethod::Local) else { return Ok(()) };
        let checks = [Check { key: bounded(format!("{tag}\0{}", p.binding_key())), limit: Limit::Rate(rate), scope }];
        match self.store.take(&checks).await {
            Ok(Ok(())) => Ok(()),
            Ok(Err(r)) => {
                tracing::info!(subject = ?p.subject, limit = r.scope, "rate limited");
                Err(GatewayError::RateLimited { retry_after: r.retry_after, limit: r.scope })
            }
            Err(e) if self.on_outage == OnOutage::FailOpen => {
                tracing::warn!(error = %e, limit = scope, "limit store out; allowed (fail_open)");
                Ok(())
            }
            Err(e) => {
                tracing::error!(error = %e, limit = scope, "limit store out; refused (fail_closed)");
                Err(GatewayError::StoreUnavailable)
            }
        }
    }

    /// The effective classification of upstream `up`'s tool: the operator's, else (only when the
    /// upstream is trusted) its `readOnlyHint`. Resources and prompts are reads.
    pub fn read_only(&self, up: usize, kind: Kind, name: &str, tool: Option<&Value>) -> bool {
        if kind != Kind::Tool {
            return true;
        }
        let c = &self.classes[up];
        match c.tools.get(name) {
            Some(class) => class.has(ToolClass::ReadOnly),
            None => {
                c.trust_annotations
                    && tool.and_then(|t| t.pointer("/annotations/readOnlyHint")).and_then(Value::as_bool) == Some(true)
            }
        }
    }

    /// Does what upstream `up`'s tool `name` returns come from people other than the caller?
    /// Classified `untrusted_source`; unclassified on an upstream whose annotations are
    /// trusted: a read-only tool that reaches the open world (`openWorldHint`, true unless said
    /// otherwise; asked only then). Reading it taints the session.
    pub fn untrusted_source(&self, up: usize, name: &str, read_only: bool, open_world: impl FnOnce() -> bool) -> bool {
        let c = &self.classes[up];
        match c.tools.get(name) {
            Some(classes) => classes.has(ToolClass::UntrustedSource),
            None => c.trust_annotations && read_only && open_world(),
        }
    }

    /// Is a call to this tool a sink a tainted session may not use freely? Classified
    /// `exfiltration` or `destructive`; unclassified on an upstream whose annotations are
    /// trusted: anything not read-only (posting a comment destroys nothing, and sends data out).
    pub fn sink(&self, up: usize, name: &str, read_only: bool) -> bool {
        let c = &self.classes[up];
        match c.tools.get(name) {
            Some(classes) => classes.has(ToolClass::Exfiltration) || classes.has(ToolClass::Destructive),
            None => c.trust_annotations && !read_only,
        }
    }

    /// Has the operator classified upstream `up`'s tool `name` (`classify`)?
    pub fn classified(&self, up: usize, name: &str) -> bool {
        self.classes[up].tools.contains_key(name)
    }

    /// Does upstream `up`'s own `readOnlyHint` count for its unclassified tools?
    pub fn trusts_annotations(&self, up: usize) -> bool {
        self.classes[up].trust_annotations
    }

    /// Whose decision a call allowed by rule `rule` waits for, if anyone's.
    pub fn approval_of(&self, rule: usize) -> Option<ApprovalMode> {
        self.obligations.get(rule).and_then(|o| o.approval)
    }

    fn target<'a>(&'a self, up: usize, kind: Kind, name: &'a str, read_only: bool) -> Target<'a> {
        Target { kind, server: &self.names[up], name, read_only }
    }

    /// Could a listing of upstream `up` show `p` anything of `kind`? Not when no allow rule for
    /// `p` names it: then it is not connected for the listing. (A switched-off upstream is still
    /// listed, so that its targets answer "switched off", not "unknown".)
    pub fn may_list(&self, p: &Principal, up: usize, kind: Kind) -> bool {
        self.rules.may_list(p, &self.names[up], kind)
    }

    /// Should a listing show this target to `p`?
    pub fn visible(&self, p: &Principal, up: usize, kind: Kind, name: &str, read_only: bool) -> bool {
        let tool = (kind == Kind::Tool).then_some(name);
        !self.kills.killed(&self.names[up], tool) && self.rules.visible(p, &self.target(up, kind, name, read_only))
    }

    /// Kill switch, then rules: the index of the allowing rule, or what refused.
    fn decide(
        &self,
        p: &Principal,
        up: usize,
        kind: Kind,
        name: &str,
        read_only: bool,
        f: &Facts,
    ) -> Result<usize, Refused<'_>> {
        let server = &self.names[up];
        let tool = (kind == Kind::Tool).then_some(name);
        let ruled = self.rules.decide_with(p, &self.target(up, kind, name, read_only), f);
        if self.kills.killed(server, tool) {
            let allowed = matches!(ruled, Decision::Allow { .. });
            return Err(Refused::Killed { kind, allowed, server: self.kills.killed(server, None) });
        }
        match ruled {
            Decision::Allow { rule } => Ok(rule),
            Decision::Deny { rule } => {
                Err(Refused::Rule { kind, by: rule.map_or("no allow rule", |i| self.rules.rules()[i].id.as_str()) })
            }
        }
    }

    /// For the audit record: the id of the rule that allows `p` this target, or why it is
    /// refused — `kill_switch`, the deny rule, or `no allow rule` — and the answer.
    pub fn ruling(
        &self,
        p: &Principal,
        up: usize,
        kind: Kind,
        name: &str,
        read_only: bool,
        args: Option<&Value>,
    ) -> Result<String, (String, GatewayError)> {
        match self.decide(p, up, kind, name, read_only, &Facts { args, taint: &[] }) {
            Ok(rule) => Ok(self.rules.rules()[rule].id.clone()),
            Err(r) => Err((r.by().to_string(), r.answer())),
        }
    }

    /// Kill switch → authorization → limits, for one call, decided once. A refusal by a rule is
    /// the same error as an unknown target to the client; the [`Refusal`] says which rule (or
    /// switch) decided, for the audit record.
    pub async fn admit(
        &self,
        p: &Principal,
        up: usize,
        kind: Kind,
        name: &str,
        read_only: bool,
        f: &Facts<'_>,
    ) -> Result<Grant, Refusal> {
        let server = &self.names[up];
        let rule = match self.decide(p, up, kind, name, read_only, f) {
            Ok(rule) => rule,
            Err(r) => {
                tracing::info!(subject = %p.subject, server = %server, kind = kind.as_str(), name, rule = r.by(), "denied");
                return Err(Refusal { rule: Some(r.by().to_string()), denied: true, error: r.answer() });
            }
        };
        let id = &self.rules.rules()[rule].id;
        // A limit refuses what a rule allowed: denied, with that rule; an outage is neither.
        let limited_by = |error: GatewayError| Refusal { rule: Some(id.clone()), denied: true, error };
        let outage = |error: GatewayError| Refusal { rule: None, denied: false, error };
        let o = &self.obligations[rule];
        let who = p.binding_key();
        let limited = |scope: &'static str| {
            tracing::info!(subject = %p.subject, server = %server, name, limit = scope, "concurrency limited");
            GatewayError::RateLimited { retry_after: Duration::from_secs(1), limit: scope }
        };
        // Concurrency slots first: they are local and given back on refusal; limits are not.
        let mut slots = Vec::new();
        if let Some(n) = self.principal_concurrency {
            let sem = {
                let mut m = self.in_flight.lock();
                if m.len() >= 10_000 {
                    m.retain(|_, s| s.available_permits() < n); // keep only callers with calls running
                }
                m.entry(who.clone()).or_insert_with(|| Arc::new(Semaphore::new(n))).clone()
            };
            slots.push(sem.try_acquire_owned().map_err(|_| limited_by(limited("principal_concurrency")))?);
        }
        if let Some(sem) = &self.upstream_slots[up] {
            slots.push(sem.clone().try_acquire_owned().map_err(|_| limited_by(limited("upstream_concurrency")))?);
        }
        let mut checks = Vec::new();
        if let Some(r) = self.per_principal {
            checks.push(Check { key: bounded(format!("p\0{who}")), limit: Limit::Rate(r), scope: "principal" });
        }
        if let (Some(r), Some(t)) = (self.per_tenant, &p.tenant) {
            checks.push(Check { key: bounded(format!("t\0{t}")), limit: Limit::Rate(r), scope: "tenant" });
        }
        // Tools and prompts are named from the caller's listing; a resource URI is the caller's
        // own choice, so its limits count per rule and server (a fresh URI would start afresh).
        let target = if kind == Kind::Resource { "" } else { name };
        if let Some(r) = o.rate {
            checks.push(Check {
                key: bounded(format!("r\0{who}\0{id}\0{server}\0{target}")),
                limit: Limit::Rate(r),
                scope: "tool",
            });
        }
        if let Some(q) = o.daily_quota {
            checks.push(Check {
                key: bounded(format!("q\0{who}\0{id}\0{server}\0{target}")),
                limit: Limit::Daily(q),
                scope: "daily_quota",
            });
        }
        let mut unlimited = false;
        if !checks.is_empty() {
            match self.store.take(&checks).await {
                Ok(Ok(())) => {}
                Ok(Err(r)) => {
                    tracing::info!(subject = %p.subject, server = %server, name, limit = r.scope, "rate limited");
                    return Err(limited_by(GatewayError::RateLimited { retry_after: r.retry_after, limit: r.scope }));
                }
                Err(e) if self.on_outage == OnOutage::FailOpen => {
                    tracing::warn!(error = %e, server = %server, name, "limit store out; call allowed (fail_open)");
                    unlimited = true;
                }
                Err(e) => {
                    tracing::error!(error = %e, server = %server, name, "limit store out; call refused (fail_closed)");
                    return Err(outage(GatewayError::StoreUnavailable));
                }
            }
        }
        Ok(Grant {
            rule: id.clone(),
            timeout: o.timeout,
            approval: o.approval,
            when_tainted: o.when_tainted,
            unlimited,
            _slots: slots,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use futures::FutureExt;

    fn policy(upstream: &str) -> Policy {
        let text = format!(
            "[[upstream]]\nname = \"u\"\ntransport = \"stdio\"\ncommand = \"x\"\n{upstream}\n[[rule]]\nid = \"all\"\ntools = [\"*\"]\n"
        );
        let cfg = Config::parse(&text, "t").unwrap();
        let store: Arc<dyn Store> = Arc::new(crate::store::memory::MemoryStore::new(None).unwrap());
        let kills = KillSwitches::load(store.clone()).now_or_never().unwrap().unwrap();
        Policy::new(&cfg, kills, store).unwrap()
    }

    /// Issue 25: sinks and untrusted sources, by the operator's classes, and by trusted
    /// annotations with MCP's defaults; untrusted annotations make neither.
    #[test]
    fn sinks_and_untrusted_sources_by_class_and_by_trusted_annotations() {
        let classified = policy(
            "classify = { fetch = [\"read_only\", \"untrusted_source\", \"exfiltration\"], wipe = \"destructive\", get = \"read_only\" }",
        );
        assert!(classified.untrusted_source(0, "fetch", true, || false) && classified.sink(0, "fetch", true));
        assert!(classified.sink(0, "wipe", false) && !classified.untrusted_source(0, "wipe", false, || true));
        assert!(!classified.sink(0, "get", true) && !classified.untrusted_source(0, "get", true, || true));
        // Unclassified, annotations not trusted: neither, whatever the tool says.
        assert!(!classified.sink(0, "post", false) && !classified.untrusted_source(0, "search", true, || true));
        let trusted = policy("trust_annotations = true");
        assert!(trusted.sink(0, "post", false), "not read-only: a sink");
        assert!(!trusted.sink(0, "search", true));
        assert!(trusted.untrusted_source(0, "search", true, || true), "read-only, open world: untrusted");
        assert!(!trusted.untrusted_source(0, "lookup", true, || false), "openWorldHint false: its own data");
    }
}
