//! `[[rule]]`, `[limits]`, `[store]` and `[approval]`: what the request policy decides with.

use super::*;

/// Allow or deny.
#[derive(Debug, Clone, Copy, Deserialize, Serialize, PartialEq, Eq, Default)]
#[serde(rename_all = "snake_case")]
pub enum Effect {
    #[default]
    Allow,
    Deny,
}

/// One authorization rule (`[[rule]]`).
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct RuleConfig {
    /// A name for logs, audit and errors. Unique.
    pub id: String,
    /// `"allow"` (default) or `"deny"`.
    #[serde(default)]
    pub effect: Effect,
    /// Upstream names (`*` wildcards). Default: every upstream.
    #[serde(default)]
    pub servers: Vec<String>,
    /// Tool names as the upstream names them (`*` wildcards).
    #[serde(default)]
    pub tools: Vec<String>,
    /// Resource URIs or URI templates as the upstream names them (`*` wildcards).
    #[serde(default)]
    pub resources: Vec<String>,
    /// Prompt names as the upstream names them (`*` wildcards).
    #[serde(default)]
    pub prompts: Vec<String>,
    /// Scopes the caller must all hold.
    #[serde(default)]
    pub scopes: Vec<String>,
    /// Roles of which the caller must hold one (when not empty).
    #[serde(default)]
    pub roles: Vec<String>,
    /// Tenants the caller must belong to one of (when not empty).
    #[serde(default)]
    pub tenants: Vec<String>,
    /// Match only tools classified read-only (by `classify`, or trusted annotations).
    #[serde(default)]
    pub read_only: bool,
    /// A CEL condition over `principal`, `target`, `args` and `session` (`session.tainted`,
    /// `session.taint_sources`: what untrusted content it read, as `server/tool at <time> (why)`),
    /// e.g. `args.table in ['orders', 'products']`. An error counts as false for allow, true for
    /// deny.
    pub when: Option<String>,
    /// Rate per caller and tool, like `"10/hour"` (units second, minute, hour, day).
    pub rate: Option<String>,
    /// Calls allowed at once before `rate` applies. Default 1.
    pub burst: Option<u64>,
    /// Calls per caller and tool per UTC day.
    pub daily_quota: Option<u64>,
    /// Seconds before the upstream call is cancelled. Default 30.
    pub timeout_secs: Option<u64>,
    /// Hold each call for a person's decision: `"user"` asks the calling client's user through
    /// MCP elicitation when the client supports it, else the admin queue; `"admin"` always uses
    /// the admin approval queue (someone other than the caller decides).
    pub approval: Option<ApprovalMode>,
    /// What a call to a sink (a tool classified `exfiltration` or `destructive`) does when
    /// its session has read untrusted content (`classify … "untrusted_source"`, or an output
    /// scoring over `[content] suspicion_threshold`): `"approval"` (default: held for a
    /// person, as the rule's `approval` says, else on the admin queue; refused without
    /// `[admin]`), `"deny"`, or `"allow"`.
    pub when_tainted: Option<TaintAction>,
}

/// What a tainted session's call to a sink does.
#[derive(Debug, Clone, Copy, Deserialize, Serialize, PartialEq, Eq, Default)]
#[serde(rename_all = "snake_case")]
pub enum TaintAction {
    #[default]
    Approval,
    Deny,
    Allow,
}

/// Who approves a call.
#[derive(Debug, Clone, Copy, Deserialize, Serialize, PartialEq, Eq)]
#[serde(rename_all = "snake_case")]
pub enum ApprovalMode {
    User,
    Admin,
}

/// `[store]`: the backend of limits, kill switches and approvals.
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct StoreConfig {
    /// `"memory"` (default; this process only) or `"redis"` (shared by every Warden using it).
    #[serde(default)]
    pub backend: StoreBackend,
    /// redis: the server, `redis://host:port/db` (`rediss://` for TLS). Required for redis.
    #[serde(serialize_with = "mask::opt_url")]
    pub url: Option<String>,
    /// redis: a password, when the server requires one.
    pub password: Option<SecretRef>,
    /// redis over TLS (`rediss://`): the CA certificate (PEM) that signs the server's
    /// certificate, for a private CA. Default: the system's trust store. Relative to the config
    /// file.
    pub ca_file: Option<PathBuf>,
    /// redis: prefix of every key. Default `"warden"`.
    #[serde(default = "default_store_prefix")]
    pub prefix: String,
    /// redis: milliseconds to wait for any answer before counting Redis as out. Default 250.
    #[serde(default = "default_store_timeout")]
    pub timeout_ms: u64,
    /// What a call that needs a limit does while the store is out: `"fail_closed"` (default:
    /// refused with a clear error) or `"fail_open"` (allowed without the shared limit, logged).
    #[serde(default)]
    pub on_outage: OnOutage,
}

impl Default for StoreConfig {
    fn default() -> Self {
        toml::from_str("").expect("defaults parse")
    }
}

#[derive(Debug, Clone, Copy, Deserialize, Serialize, PartialEq, Eq, Default)]
#[serde(rename_all = "snake_case")]
pub enum StoreBackend {
    #[default]
    Memory,
    Redis,
}

#[derive(Debug, Clone, Copy, Deserialize, Serialize, PartialEq, Eq, Default)]
#[serde(rename_all = "snake_case")]
pub enum OnOutage {
    #[default]
    FailClosed,
    FailOpen,
}

/// `[approval]`: how long calls wait for a decision and who may decide.
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct ApprovalConfig {
    /// Seconds a call is held waiting for a decision. After that the caller gets an error naming
    /// the pending approval; once approved, the same call (same arguments) goes through. Default 60.
    #[serde(default = "default_approval_wait")]
    pub wait_secs: u64,
    /// Seconds an approval request lives, pending or approved-but-unused. Default 3600.
    #[serde(default = "default_approval_ttl")]
    pub ttl_secs: u64,
    /// Let a principal approve its own calls through the admin API. Default false.
    #[serde(default)]
    pub allow_self_approval: bool,
    /// Most calls of one caller waiting in the admin queue at once; more are refused. Default 10.
    #[serde(default = "default_pending_per_caller")]
    pub max_pending_per_caller: usize,
    /// Most calls of one tenant (or of callers without a tenant) waiting at once. Default 500.
    #[serde(default = "default_pending_per_tenant")]
    pub max_pending_per_tenant: usize,
}

impl Default for ApprovalConfig {
    fn default() -> Self {
        toml::from_str("").expect("defaults parse")
    }
}

/// Limits over all calls (`[limits]`).
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct Limits {
    /// Sessions opened (`initialize`) per authenticated caller, like `"60/minute"`; `"off"`: no
    /// limit. The anonymous loopback caller (no `[auth]`) is not limited: it is everyone on the
    /// machine. Default `"60/minute"` with a burst of 20.
    #[serde(default = "default_initialize_rate")]
    pub initialize_per_principal: String,
    /// Burst for `initialize_per_principal`. Default 20.
    #[serde(default = "default_initialize_burst")]
    pub initialize_burst: u64,
    /// Listings (`tools/list`, `prompts/list`, `resources/list`, `resources/templates/list`) per
    /// authenticated caller; `"off"`: no limit. Each may start upstreams and fans out to all of
    /// them. Default `"600/minute"` with a burst of 100.
    #[serde(default = "default_listing_rate")]
    pub listings_per_principal: String,
    /// Burst for `listings_per_principal`. Default 100.
    #[serde(default = "default_listing_burst")]
    pub listings_burst: u64,
    /// Rate per caller, like `"600/minute"`.
    pub per_principal: Option<String>,
    /// Burst for `per_principal`. Default 1.
    pub per_principal_burst: Option<u64>,
    /// Rate per tenant.
    pub per_tenant: Option<String>,
    /// Burst for `per_tenant`. Default 1.
    pub per_tenant_burst: Option<u64>,
    /// Calls in flight at once per caller.
    pub max_concurrent_per_principal: Option<usize>,
}

impl Default for Limits {
    fn default() -> Limits {
        Limits {
            initialize_per_principal: default_initialize_rate(),
            initialize_burst: default_initialize_burst(),
            listings_per_principal: default_listing_rate(),
            listings_burst: default_listing_burst(),
            per_principal: None,
            per_principal_burst: None,
            per_tenant: None,
            per_tenant_burst: None,
            max_concurrent_per_principal: None,
        }
    }
}
