//! Authorization: which principal may use which tool, resource or prompt of which server.
//!
//! Deny by default: a target is usable only when an `allow` rule matches it, and any matching
//! `deny` rule overrides every allow. A rule matches when its server and name patterns match the
//! target, the principal holds all its scopes, one of its roles (if it lists any) and one of its
//! tenants (if it lists any), the target is classified read-only when the rule says
//! `read_only`, and its CEL condition (over `principal`, `target` and `args`) is true.
//!
//! Defends against: callers reaching what no rule grants (including new tools an upstream adds
//! later), conditions that fail to evaluate (a missing argument, a type error): they count as false
//! for an allow and as true for a deny, so an error never grants access; upstreams relaxing rules
//! through annotations (the caller passes the *effective* classification, in which an untrusted
//! upstream's `readOnlyHint` does not count).
//! Does not defend against: a rule that is simply too broad — `warden check` prints what each
//! rule covers, but the operator writes them.
//!
//! Rules are indexed by exact name per kind, so a decision with 1,000 rules looks at the few that
//! name the target plus the wildcard rules (see BENCHMARKS.md).

use crate::Principal;
use cel::{Context, Program};
use serde_json::Value;
use std::collections::HashMap;

/// What is being reached.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    Tool,
    Resource,
    Prompt,
}

impl Kind {
    fn slot(self) -> usize {
        self as usize
    }

    pub fn as_str(self) -> &'static str {
        match self {
            Kind::Tool => "tool",
            Kind::Resource => "resource",
            Kind::Prompt => "prompt",
        }
    }
}

/// A tool, resource (URI or URI template) or prompt of an upstream, by the upstream's own name.
#[derive(Debug, Clone, Copy)]
pub struct Target<'a> {
    pub kind: Kind,
    pub server: &'a str,
    pub name: &'a str,
    /// The effective classification: the operator's, else the upstream's hint when trusted.
    pub read_only: bool,
}

/// A name pattern: `*` matches any run of characters (including none); everything else literally.
#[derive(Debug, Clone)]
pub struct Glob(String);

impl Glob {
    pub fn new(p: &str) -> Glob {
        Glob(p.to_string())
    }

    fn is_exact(&self) -> bool {
        !self.0.contains('*')
    }

    pub fn matches(&self, s: &str) -> bool {
        glob_match(self.0.as_bytes(), s.as_bytes())
    }
}

/// Iterative wildcard match, linear in practice (backtracks only to the last `*`).
fn glob_match(p: &[u8], s: &[u8]) -> bool {
    let (mut pi, mut si) = (0, 0);
    let mut star: Option<(usize, usize)> = None;
    while si < s.len() {
        if pi < p.len() && p[pi] == b'*' {
            star = Some((pi, si));
            pi += 1;
        } else if pi < p.len() && p[pi] == s[si] {
            pi += 1;
            si += 1;
        } else if let Some((sp, ss)) = star {
            pi = sp + 1;
            si = ss + 1;
            star = Some((sp, ss + 1));
        } else {
            return false;
        }
    }
    p[pi..].iter().all(|&c| c == b'*')
}

/// What a call brings besides its caller and target: its arguments (`None` for calls without
/// arguments) and what its session has read (the sources of its taint, empty when clean).
#[derive(Debug, Clone, Copy, Default)]
pub struct Facts<'a> {
    pub args: Option<&'a Value>,
    pub taint: &'a [String],
}

/// A compiled CEL condition.
pub struct Condition {
    pub source: String,
    program: Program,
    /// Which of `principal`, `target`, `args`, `session` it reads (only those are converted per
    /// call).
    reads: [bool; 4],
}

impl std::fmt::Debug for Condition {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Condition({:?})", self.source)
    }
}

impl Condition {
    /// Compile `src`; it may read only `principal`, `target`, `args` and `session`. A trial run
    /// against an empty call catches misspelt variables that the evaluation reaches.
    pub fn compile(src: &str) -> Result<Condition, String> {
        let program = Program::compile(src).map_err(|e| format!("invalid CEL condition: {e}"))?;
        let refs = program.references();
        let reads = ["principal", "target", "args", "session"].map(|v| refs.has_variable(v));
        let sample = Principal::local();
        let t = Target { kind: Kind::Tool, server: "", name: "", read_only: false };
        if let Err(cel::ExecutionError::UndeclaredReference(v)) =
            program.execute(&context([true; 4], &sample, &t, &Facts::default()))
        {
            return Err(format!("unknown variable {v:?} in condition (use principal, target, args or session)"));
        }
        Ok(Condition { source: src.to_string(), program, reads })
    }

    /// Evaluate; `None` when it does not evaluate to a boolean (missing key, type error, …).
    fn eval(&self, p: &Principal, t: &Target, f: &Facts) -> Option<bool> {
        match self.program.execute(&context(self.reads, p, t, f)) {
            Ok(cel::Value::Bool(b)) => Some(b),
            _ => None,
        }
    }
}

/// One rule, as the operator wrote it (after parsing).
#[derive(Debug)]
pub struct Rule {
    pub id: String,
    pub deny: bool,
    /// Upstream names; empty: every upstream.
    pub servers: Vec<Glob>,
    pub tools: Vec<Glob>,
    pub resources: Vec<Glob>,
    pub prompts: Vec<Glob>,
    /// All required.
    pub scopes: Vec<String>,
    /// Any one required, when not empty.
    pub roles: Vec<String>,
    /// The principal's tenant must be one of these, when not empty.
    pub tenants: Vec<String>,
    /// Only targets classified read-only.
    pub read_only: bool,
    pub when: Option<Condition>,
}

impl Rule {
    fn names(&self, kind: Kind) -> &[Glob] {
        match kind {
            Kind::Tool => &self.tools,
            Kind::Resource => &self.resources,
            Kind::Prompt => &self.prompts,
        }
    }

    fn matches_target(&self, t: &Target) -> bool {
        (self.servers.is_empty() || self.servers.iter().any(|g| g.matches(t.server)))
            && self.names(t.kind).iter().any(|g| g.matches(t.name))
            && (!self.read_only || t.read_only)
    }

    fn matches_principal(&self, p: &Principal) -> bool {
        self.scopes.iter().all(|s| p.has_scope(s))
            && (self.roles.is_empty() || self.roles.iter().any(|r| p.roles.contains(r)))
            && (self.tenants.is_empty() || p.tenant.as_ref().is_some_and(|t| self.tenants.contains(t)))
    }
}

/// The outcome of a decision, naming the deciding rule (by index and id) for audit and logs.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Decision {
    Allow {
        rule: usize,
    },
    /// `None`: no rule allowed it (the default).
    Deny {
        rule: Option<usize>,
    },
}

impl Decision {
    pub fn allowed(&self) -> bool {
        matches!(self, Decision::Allow { .. })
    }
}

#[derive(Default)]
struct KindIndex {
    exact: HashMap<String, Vec<u32>>,
    wild: Vec<u32>,
}

/// The rules, indexed.
#[derive(Default)]
pub struct RuleSet {
    rules: Vec<Rule>,
    index: [KindIndex; 3],
}

impl RuleSet {
    pub fn new(rules: Vec<Rule>) -> RuleSet {
        let mut index: [KindIndex; 3] = Default::default();
        for (i, r) in rules.iter().enumerate() {
            for kind in [Kind::Tool, Kind::Resource, Kind::Prompt] {
                let ix = &mut index[kind.slot()];
                let names = r.names(kind);
                if names.iter().any(|g| !g.is_exact()) {
                    ix.wild.push(i as u32);
                } else {
                    for g in names {
                        let v = ix.exact.entry(g.0.clone()).or_default();
                        if v.last() != Some(&(i as u32)) {
                            v.push(i as u32);
                        }
                    }
                }
            }
        }
        RuleSet { rules, index }
    }

    pub fn rules(&self) -> &[Rule] {
        &self.rules
    }

    pub fn is_empty(&self) -> bool {
        self.rules.is_empty()
    }

    /// The rules that could match `t`, in config order.
    fn candidates(&self, t: &Target) -> impl Iterator<Item = (usize, &Rule)> + '_ {
        let ix = &self.index[t.kind.slot()];
        let exact: &[u32] = ix.exact.get(t.name).map_or(&[], Vec::as_slice);
        merge_sorted(exact, &ix.wild).map(move |i| (i as usize, &self.rules[i as usize]))
    }

    /// The rules that name `t` (its server, its kind and name, its classification), in config
    /// order, whoever asks: what an operator reads to see who may reach it and on what terms.
    pub fn naming(&self, t: &Target) -> Vec<(usize, &Rule)> {
        self.candidates(t).filter(|(_, r)| r.matches_target(t)).collect()
    }

    /// May `p` use `t` with these arguments (`None` for calls without arguments), from a
    /// clean session?
    pub fn decide(&self, p: &Principal, t: &Target, args: Option<&Value>) -> Decision {
        self.decide_with(p, t, &Facts { args, taint: &[] })
    }

    /// May `p` use `t` in this call?
    pub fn decide_with(&self, p: &Principal, t: &Target, f: &Facts) -> Decision {
        let mut allow: Option<usize> = None;
        for (idx, r) in self.candidates(t) {
            if !r.matches_target(t) || !r.matches_principal(p) {
                continue;
            }
            if !r.deny && allow.is_some() {
                continue; // only a deny can change the outcome now
            }
            let holds = match &r.when {
                None => true,
                // Fail closed both ways: an error never allows and always denies.
                Some(c) => c.eval(p, t, f).unwrap_or(r.deny),
            };
            if !holds {
                continue;
            }
            if r.deny {
                return Decision::Deny { rule: Some(idx) };
            }
            allow = Some(idx);
        }
        match allow {
            Some(rule) => Decision::Allow { rule },
            None => Decision::Deny { rule: None },
        }
    }

    /// Could any `kind` target of `server` be shown to `p`: is there an allow rule for `p` that
    /// names that server (or any) and some target of that kind? `false` means a listing of that
    /// server would show `p` nothing, so it need not even be asked (or started).
    pub fn may_list(&self, p: &Principal, server: &str, kind: Kind) -> bool {
        self.rules.iter().any(|r| {
            !r.deny
                && !r.names(kind).is_empty()
                && (r.servers.is_empty() || r.servers.iter().any(|g| g.matches(server)))
                && r.matches_principal(p)
        })
    }

    /// Should a listing show `t` to `p`? Conditions may depend on arguments a listing does not
    /// have, so a conditional allow shows the target (the call is checked again) and a
    /// conditional deny does not hide it.
    pub fn visible(&self, p: &Principal, t: &Target) -> bool {
        let mut allowed = false;
        for (_, r) in self.candidates(t) {
            if !r.matches_target(t) || !r.matches_principal(p) {
                continue;
            }
            match (r.deny, &r.when) {
                (true, None) => return false,
                (true, Some(_)) => {}
                (false, _) => allowed = true,
            }
        }
        allowed
    }
}

fn merge_sorted<'a>(a: &'a [u32], b: &'a [u32]) -> impl Iterator<Item = u32> + 'a {
    let (mut i, mut j) = (0, 0);
    std::iter::from_fn(move || {
        let next = match (a.get(i), b.get(j)) {
            (Some(&x), Some(&y)) if x <= y => {
                i += 1;
                if x == y {
                    j += 1;
                }
                x
            }
            (_, Some(&y)) => {
                j += 1;
                y
            }
            (Some(&x), None) => {
                i += 1;
                x
            }
            (None, None) => return None,
        };
        Some(next)
    })
}

/// CEL's built-in functions, registered once (building them costs ~20 µs).
static ROOT: std::sync::OnceLock<Context<'static, 'static>> = std::sync::OnceLock::new();

#[derive(serde::Serialize)]
struct PrincipalView<'a> {
    subject: &'a str,
    tenant: Option<&'a str>,
    client_id: Option<&'a str>,
    scopes: &'a [String],
    roles: &'a [String],
    claims: &'a serde_json::Map<String, Value>,
}

#[derive(serde::Serialize)]
struct TargetView<'a> {
    kind: &'static str,
    server: &'a str,
    name: &'a str,
    read_only: bool,
}

/// The variables a condition reads, on top of the shared built-ins.
#[derive(serde::Serialize)]
struct SessionView<'a> {
    tainted: bool,
    taint_sources: &'a [String],
}

fn context(reads: [bool; 4], p: &Principal, t: &Target, f: &Facts) -> Context<'static, 'static> {
    let mut ctx = ROOT.get_or_init(Context::default).new_inner_scope();
    if reads[0] {
        let v = PrincipalView {
            subject: &p.subject,
            tenant: p.tenant.as_deref(),
            client_id: p.client_id.as_deref(),
            scopes: &p.scopes,
            roles: &p.roles,
            claims: &p.claims,
        };
        if let Ok(v) = cel::to_value(v) {
            ctx.add_variable_from_value("principal", v);
        }
    }
    if reads[1] {
        let v = TargetView { kind: t.kind.as_str(), server: t.server, name: t.name, read_only: t.read_only };
        if let Ok(v) = cel::to_value(v) {
            ctx.add_variable_from_value("target", v);
        }
    }
    if reads[2] {
        let empty = Value::Object(Default::default());
        if let Ok(v) = cel::to_value(f.args.unwrap_or(&empty)) {
            ctx.add_variable_from_value("args", v);
        }
    }
    if reads[3] {
        if let Ok(v) = cel::to_value(SessionView { tainted: !f.taint.is_empty(), taint_sources: f.taint }) {
            ctx.add_variable_from_value("session", v);
        }
    }
    ctx
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn rule(id: &str, tools: &[&str]) -> Rule {
        Rule {
            id: id.into(),
            deny: false,
            servers: vec![],
            tools: tools.iter().map(|t| Glob::new(t)).collect(),
            resources: vec![],
            prompts: vec![],
            scopes: vec![],
            roles: vec![],
            tenants: vec![],
            read_only: false,
            when: None,
        }
    }

    fn tool<'a>(server: &'a str, name: &'a str) -> Target<'a> {
        Target { kind: Kind::Tool, server, name, read_only: false }
    }

    fn who(scopes: &[&str], roles: &[&str], tenant: Option<&str>) -> Principal {
        let mut p = Principal::local();
        p.scopes = scopes.iter().map(|s| s.to_string()).collect();
        p.roles = roles.iter().map(|s| s.to_string()).collect();
        p.tenant = tenant.map(String::from);
        p
    }

    /// The console's "rules that allow it" (issue 26): every rule naming the target, whoever it
    /// is for, and none that names another server, another name or only read-only tools.
    #[test]
    fn the_rules_naming_a_target_are_found_whoever_they_are_for() {
        let mut scoped = rule("ops-only", &["deploy"]);
        scoped.scopes = vec!["ops".into()];
        let mut other_server = rule("elsewhere", &["deploy"]);
        other_server.servers = vec![Glob::new("db")];
        let mut reads = rule("reads", &["*"]);
        reads.read_only = true;
        let mut deny = rule("no-prod", &["dep*"]);
        deny.deny = true;
        let set = RuleSet::new(vec![scoped, other_server, reads, deny, rule("echo", &["echo"])]);
        let ids = |t: &Target| set.naming(t).into_iter().map(|(_, r)| r.id.clone()).collect::<Vec<_>>();
        assert_eq!(ids(&tool("ci", "deploy")), ["ops-only", "no-prod"]);
        assert_eq!(
            ids(&Target { read_only: true, ..tool("db", "deploy") }),
            ["ops-only", "elsewhere", "reads", "no-prod"]
        );
        assert!(ids(&tool("ci", "nothing")).is_empty());
    }

    #[test]
    fn globs() {
        for (p, s, want) in [
            ("*", "", true),
            ("get_*", "get_x", true),
            ("get_*", "get_", true),
            ("get_*", "xget_", false),
            ("*_file", "read_file", true),
            ("a*b*c", "aXbYc", true),
            ("a*b*c", "aXbY", false),
            ("file:///data/*", "file:///data/x/y", true),
            ("echo", "echo2", false),
        ] {
            assert_eq!(Glob::new(p).matches(s), want, "{p} ~ {s}");
        }
    }

    #[test]
    fn nothing_is_allowed_without_a_rule_and_deny_overrides() {
        let p = who(&[], &[], None);
        assert_eq!(RuleSet::default().decide(&p, &tool("fx", "echo"), None), Decision::Deny { rule: None });
        let mut deny = rule("no-delete", &["delete_*"]);
        deny.deny = true;
        let set = RuleSet::new(vec![rule("all", &["*"]), deny]);
        assert_eq!(set.decide(&p, &tool("fx", "echo"), None), Decision::Allow { rule: 0 });
        assert_eq!(set.decide(&p, &tool("fx", "delete_all"), None), Decision::Deny { rule: Some(1) });
        assert!(!set.visible(&p, &tool("fx", "delete_all")));
        // Other kinds are not covered by a tools rule.
        let r = Target { kind: Kind::Resource, server: "fx", name: "echo", read_only: false };
        assert!(!set.decide(&p, &r, None).allowed());
    }

    #[test]
    fn servers_scopes_roles_tenants_and_classification() {
        let mut r = rule("ops", &["restart"]);
        r.servers = vec![Glob::new("infra")];
        r.scopes = vec!["mcp".into(), "ops".into()];
        r.roles = vec!["sre".into(), "admin".into()];
        r.tenants = vec!["acme".into()];
        let set = RuleSet::new(vec![r]);
        let good = who(&["mcp", "ops"], &["sre"], Some("acme"));
        assert!(set.decide(&good, &tool("infra", "restart"), None).allowed());
        assert!(!set.decide(&good, &tool("other", "restart"), None).allowed());
        for bad in [
            who(&["mcp"], &["sre"], Some("acme")),
            who(&["mcp", "ops"], &["dev"], Some("acme")),
            who(&["mcp", "ops"], &["sre"], Some("globex")),
            who(&["mcp", "ops"], &["sre"], None),
        ] {
            assert!(!set.decide(&bad, &tool("infra", "restart"), None).allowed(), "{bad:?}");
        }
        let mut ro = rule("readers", &["*"]);
        ro.read_only = true;
        let set = RuleSet::new(vec![ro]);
        let p = who(&[], &[], None);
        assert!(!set.decide(&p, &tool("fx", "write"), None).allowed());
        assert!(set.decide(&p, &Target { read_only: true, ..tool("fx", "read") }, None).allowed());
    }

    /// Issue 25: conditions read the session's taint (`session.tainted`, `session.taint_sources`).
    #[test]
    fn conditions_read_the_session_taint() {
        let mut d = rule("no-send-when-tainted", &["send"]);
        d.deny = true;
        d.when = Some(Condition::compile("session.tainted").unwrap());
        let mut a = rule("send-unless-from-web", &["send"]);
        a.when = Some(Condition::compile("!('web/fetch' in session.taint_sources)").unwrap());
        let p = who(&[], &[], None);
        let t = tool("mail", "send");
        let set = RuleSet::new(vec![a]);
        assert!(set.decide(&p, &t, None).allowed(), "clean");
        let from_web = ["web/fetch".to_string()];
        assert!(!set.decide_with(&p, &t, &Facts { args: None, taint: &from_web }).allowed());
        let from_issues = ["issues/get".to_string()];
        assert!(set.decide_with(&p, &t, &Facts { args: None, taint: &from_issues }).allowed());
        let set = RuleSet::new(vec![rule("send", &["send"]), d]);
        assert!(set.decide(&p, &t, None).allowed());
        assert_eq!(
            set.decide_with(&p, &t, &Facts { args: None, taint: &from_issues }),
            Decision::Deny { rule: Some(1) }
        );
        assert!(Condition::compile("sessions.tainted").is_err(), "a misspelt variable is a config error");
    }

    #[test]
    fn conditions_over_arguments_fail_closed() {
        let mut r = rule("tables", &["query"]);
        r.when = Some(Condition::compile("args.table in ['orders', 'products']").unwrap());
        let mut d = rule("no-big", &["query"]);
        d.deny = true;
        d.when = Some(Condition::compile("args.limit > 1000").unwrap());
        let set = RuleSet::new(vec![r, d]);
        let p = who(&[], &[], None);
        let t = tool("db", "query");
        let ok = json!({"table": "orders", "limit": 10});
        assert!(set.decide(&p, &t, Some(&ok)).allowed());
        assert!(!set.decide(&p, &t, Some(&json!({"table": "users", "limit": 1}))).allowed());
        assert_eq!(
            set.decide(&p, &t, Some(&json!({"table": "orders", "limit": 5000}))),
            Decision::Deny { rule: Some(1) }
        );
        // A missing argument: the allow does not hold, and the deny's error counts as a deny.
        assert!(!set.decide(&p, &t, Some(&json!({"limit": 1}))).allowed());
        assert_eq!(set.decide(&p, &t, Some(&json!({"table": "orders"}))), Decision::Deny { rule: Some(1) });
        // Listings show conditionally allowed targets.
        assert!(set.visible(&p, &t));
        // Conditions on the principal.
        let mut byrole = rule("admins", &["*"]);
        byrole.when = Some(Condition::compile("'admin' in principal.roles && target.server == 'db'").unwrap());
        let set = RuleSet::new(vec![byrole]);
        assert!(set.decide(&who(&[], &["admin"], None), &t, None).allowed());
        assert!(!set.decide(&who(&[], &["dev"], None), &t, None).allowed());
    }

    #[test]
    fn bad_conditions_are_config_errors() {
        assert!(Condition::compile("args.x ==").unwrap_err().contains("invalid CEL"));
        assert!(Condition::compile("principl.subject == 'a'").unwrap_err().contains("principl"));
        assert!(Condition::compile("args.items.all(x, x > 0)").is_ok());
    }

    #[test]
    fn the_index_finds_the_same_rules_as_a_scan() {
        let mut rules: Vec<Rule> = (0..1000).map(|i| rule(&format!("r{i}"), &[&format!("tool_{i}")])).collect();
        rules[500].deny = true;
        rules.push(rule("prefix", &["tool_9*"]));
        let set = RuleSet::new(rules);
        let p = who(&[], &[], None);
        assert_eq!(set.decide(&p, &tool("fx", "tool_7"), None), Decision::Allow { rule: 7 });
        assert_eq!(set.decide(&p, &tool("fx", "tool_500"), None), Decision::Deny { rule: Some(500) });
        assert_eq!(set.decide(&p, &tool("fx", "tool_9x"), None), Decision::Allow { rule: 1000 });
        assert_eq!(set.decide(&p, &tool("fx", "tool_99"), None), Decision::Allow { rule: 99 });
        assert!(!set.decide(&p, &tool("fx", "other"), None).allowed());
    }
}
