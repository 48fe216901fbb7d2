//! Warden's TOML configuration: parsed strictly (unknown keys are errors, reported as
//! `file:line:column: message`), then validated as a whole.
//!
//! Defends against: typos silently disabling a setting, secrets written into the config file
//! (secrets are only referenced: `{ env = "VAR" }` or `{ file = "/path" }`), binding a network
//! interface while nothing authenticates callers.
//! Does not defend against: a secret pasted into a plain field such as `env` or `args`; those are
//! documented as not-for-secrets.

mod audit;
mod auth;
mod cluster;
mod content;
mod listen;
mod load;
pub mod mask;
mod rules;
mod secret;
mod upstream;
mod vault;

pub use audit::*;
pub use auth::*;
pub use cluster::*;
pub use content::*;
pub use listen::*;
pub use rules::*;
pub use secret::*;
pub use upstream::*;
pub use vault::*;

use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};

/// The whole configuration file.
#[derive(Debug, Clone, Deserialize, Serialize, Default)]
#[serde(deny_unknown_fields)]
pub struct Config {
    /// The client-facing HTTP listener.
    #[serde(default)]
    pub listen: Listen,
    /// How several upstreams are combined behind one endpoint.
    #[serde(default)]
    pub federation: Federation,
    /// The MCP servers Warden fronts. At least one.
    #[serde(default, rename = "upstream")]
    pub upstreams: Vec<Upstream>,
    /// Who may call: bearer tokens, API keys, client certificates. Absent: only a loopback bind
    /// is allowed and every caller is the anonymous `local` principal.
    pub auth: Option<Auth>,
    /// Authorization rules. Nothing is reachable without an `allow` rule that matches it; a
    /// matching `deny` rule overrides every allow.
    #[serde(default, rename = "rule")]
    pub rules: Vec<RuleConfig>,
    /// Limits that apply to every call, whichever rule allowed it.
    #[serde(default)]
    pub limits: Limits,
    /// The admin API (kill switches, approvals): its own listener and credential.
    pub admin: Option<Admin>,
    /// Where limits, kill switches and approvals are kept: this process, or Redis shared by
    /// several Wardens.
    #[serde(default)]
    pub store: StoreConfig,
    /// Human approval of calls whose rule says `approval = "user"` or `"admin"`.
    #[serde(default)]
    pub approval: ApprovalConfig,
    /// Content security: argument schemas, tool-definition scan and pins, output sanitizing,
    /// injection detection and redaction.
    #[serde(default)]
    pub content: ContentConfig,
    /// Several Wardens as one: the key that lets any replica serve any request.
    #[serde(default)]
    pub cluster: ClusterConfig,
    /// The audit trail: a hash-chained, signed record of every operation.
    #[serde(default)]
    pub audit: AuditConfig,
    /// Users' own upstream credentials, encrypted at rest.
    pub vault: Option<VaultConfig>,
    /// Traces: a span per pipeline stage sent to an OpenTelemetry collector.
    #[serde(default)]
    pub telemetry: TelemetryConfig,
    /// Argument guards: a check on one argument of one tool (paths, SQL, command-line values,
    /// URLs, free text).
    #[serde(default, rename = "guard")]
    pub guards: Vec<GuardConfig>,
    /// The directory relative paths are resolved against (the config file's).
    #[serde(skip)]
    pub base_dir: PathBuf,
}

fn default_lookups_per_client() -> String {
    "120/minute".into()
}
fn default_lookups_total() -> String {
    "50/s".into()
}

fn default_registrations_per_hour() -> u32 {
    20
}
fn default_registrations_total() -> u32 {
    200
}

fn default_unused_client_ttl() -> u64 {
    86_400
}

fn default_max_file() -> u64 {
    1 << 20
}
fn default_max_entries() -> usize {
    500
}
fn default_max_rows() -> usize {
    500
}
fn default_sql_timeout() -> u64 {
    2000
}
fn default_schema() -> String {
    "public".into()
}

fn default_pending_per_caller() -> usize {
    10
}
fn default_pending_per_tenant() -> usize {
    500
}

fn default_forward_batch() -> usize {
    500
}
fn default_forward_flush() -> u64 {
    1000
}
fn default_forward_timeout() -> u64 {
    10_000
}
fn default_forward_spool_mb() -> u64 {
    1024
}

fn default_audit_path() -> PathBuf {
    "warden-audit.db".into()
}
fn default_audit_key() -> PathBuf {
    "warden-audit.key".into()
}
fn default_audit_queue() -> usize {
    65536
}
fn default_checkpoint_every() -> u64 {
    10_000
}
fn default_checkpoint_secs() -> u64 {
    10
}
fn default_instance() -> String {
    "warden".into()
}

fn yes() -> bool {
    true
}
fn any() -> String {
    "*".into()
}
fn default_max_string() -> u64 {
    65536
}
fn default_max_items() -> u64 {
    1000
}
fn default_max_result() -> usize {
    1 << 20
}
fn default_max_definitions() -> usize {
    1000
}
fn default_max_item() -> usize {
    256 << 10
}
fn default_suspicion() -> f32 {
    0.25
}

fn default_threshold() -> f32 {
    warden_policy::inject::DEFAULT_THRESHOLD
}
fn default_redact() -> Vec<String> {
    vec!["secrets".into(), "pii".into()]
}

fn default_store_prefix() -> String {
    "warden".into()
}
fn default_store_timeout() -> u64 {
    250
}
fn default_approval_wait() -> u64 {
    60
}
fn default_approval_ttl() -> u64 {
    3600
}

fn default_initialize_rate() -> String {
    "60/minute".into()
}
fn default_initialize_burst() -> u64 {
    20
}
fn default_listing_rate() -> String {
    "600/minute".into()
}
fn default_listing_burst() -> u64 {
    100
}

fn default_sessions_per_principal() -> usize {
    64
}
fn default_addr() -> SocketAddr {
    "127.0.0.1:8931".parse().expect("literal address")
}
fn default_body() -> usize {
    4 << 20
}
fn default_header() -> usize {
    64 << 10
}
fn default_depth() -> usize {
    warden_protocol::jsonrpc::DEFAULT_MAX_DEPTH
}
fn default_read_timeout() -> u64 {
    30
}
fn default_idle() -> u64 {
    1800
}
fn default_max_sessions() -> usize {
    10_000
}
fn default_retry() -> u64 {
    1000
}
fn default_grace() -> u64 {
    10
}
fn default_tls_reload() -> u64 {
    10
}
fn default_algs() -> Vec<String> {
    ["RS256", "RS384", "RS512", "PS256", "PS384", "PS512", "ES256", "ES384", "EdDSA"].map(String::from).to_vec()
}
fn default_leeway() -> u64 {
    30
}
fn default_lifetime() -> u64 {
    3600
}
fn default_roles_claim() -> String {
    "roles".into()
}
fn default_tenant_claim() -> String {
    "tenant".into()
}
fn default_jwks_refresh() -> u64 {
    300
}
fn default_kid_refresh() -> u64 {
    10
}
fn default_introspect_cache() -> u64 {
    30
}
fn default_access_ttl() -> u64 {
    900
}
fn default_refresh_ttl() -> u64 {
    86400
}
fn default_as_scopes() -> Vec<String> {
    vec!["mcp".into()]
}
fn default_admin_addr() -> SocketAddr {
    "127.0.0.1:8932".parse().expect("static address")
}

fn default_login_attempts() -> u32 {
    5
}

fn default_true() -> bool {
    true
}
fn default_sep() -> String {
    "__".into()
}
fn default_env_allow() -> Vec<String> {
    ["PATH", "HOME", "LANG"].iter().map(|s| s.to_string()).collect()
}
fn default_connect() -> u64 {
    30
}
fn default_call() -> u64 {
    120
}

fn default_max_connections() -> usize {
    4096
}
fn default_connections_per_client() -> usize {
    256
}
fn default_connection_idle() -> u64 {
    120
}

/// A configuration error, already formatted for a human (`file:line:col: …` where known).
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
pub struct ConfigError(pub String);

/// Request headers from plain and secret values (secrets resolved now), all marked sensitive.
/// The error names the header, never a value.
pub fn header_map(
    plain: &BTreeMap<String, String>,
    secret: &BTreeMap<String, SecretRef>,
) -> Result<reqwest::header::HeaderMap, String> {
    let mut out = reqwest::header::HeaderMap::new();
    let resolved = secret.iter().map(|(k, r)| r.resolve().map(|v| (k, v)).map_err(|e| format!("header {k}: {e}")));
    for kv in plain.iter().map(|(k, v)| Ok((k, v.clone()))).chain(resolved) {
        let (k, v) = kv?;
        let name =
            reqwest::header::HeaderName::from_bytes(k.as_bytes()).map_err(|_| format!("bad header name {k:?}"))?;
        let mut value = reqwest::header::HeaderValue::from_str(&v).map_err(|_| format!("bad value for header {k}"))?;
        value.set_sensitive(true);
        out.insert(name, value);
    }
    Ok(out)
}

/// Characters the spec allows in tool names.
pub fn is_tool_char(c: char) -> bool {
    c.is_ascii_alphanumeric() || matches!(c, '_' | '-' | '.')
}

fn valid_name(s: &str) -> bool {
    (1..=32).contains(&s.len()) && s.chars().all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-')
}

/// `https://`, or `http://` to a loopback host.
pub fn check_remote_url(url: &str) -> Result<(), String> {
    let u = reqwest::Url::parse(url).map_err(|e| format!("not a URL: {e}"))?;
    match u.scheme() {
        "https" => Ok(()),
        "http" => match u.host() {
            Some(url::Host::Domain("localhost")) => Ok(()),
            Some(url::Host::Ipv4(ip)) if ip.is_loopback() => Ok(()),
            Some(url::Host::Ipv6(ip)) if ip.is_loopback() => Ok(()),
            _ => Err("plain http is allowed only to loopback hosts; use https".into()),
        },
        s => Err(format!("unsupported scheme {s:?}; expected https (or http to loopback)")),
    }
}

fn line_col(text: &str, offset: usize) -> (usize, usize) {
    let before = &text[..offset.min(text.len())];
    let line = before.matches('\n').count() + 1;
    let col = before.rsplit('\n').next().map(|l| l.chars().count()).unwrap_or(0) + 1;
    (line, col)
}

/// The configuration reference (docs/config.md), generated from the `///` comments of the config
/// structs in this file. `cargo test` fails when docs/config.md is stale; regenerate with
/// `WARDEN_BLESS=1 cargo test -p warden-gateway config_reference`.
pub fn reference_markdown() -> String {
    let src = [
        include_str!("mod.rs"),
        include_str!("listen.rs"),
        include_str!("auth.rs"),
        include_str!("upstream.rs"),
        include_str!("secret.rs"),
        include_str!("rules.rs"),
        include_str!("audit.rs"),
        include_str!("content.rs"),
        include_str!("cluster.rs"),
        include_str!("vault.rs"),
    ]
    .concat();
    let sections = [
        ("Config", "top level"),
        ("Listen", "[listen]"),
        ("Tls", "[listen.tls]"),
        ("Auth", "[auth]"),
        ("JwtIssuer", "[[auth.jwt]]"),
        ("Introspection", "[auth.introspection]"),
        ("ApiKeyEntry", "[[auth.api_key]]"),
        ("BuiltinAs", "[auth.builtin]"),
        ("Federation", "[federation]"),
        ("Upstream", "[[upstream]]"),
        ("UpstreamOAuth", "[upstream.oauth]"),
        ("RuleConfig", "[[rule]]"),
        ("Limits", "[limits]"),
        ("Admin", "[admin]"),
        ("StoreConfig", "[store]"),
        ("ApprovalConfig", "[approval]"),
        ("ClusterConfig", "[cluster]"),
        ("ContentConfig", "[content]"),
        ("ClassifierConfig", "[content.classifier]"),
        ("ContentOverride", "[[content.tool]]"),
        ("ArgumentOverlay", "[[content.argument]]"),
        ("GuardConfig", "[[guard]]"),
        ("TenantUpstream", "[upstream.tenants.<tenant>]"),
        ("SandboxConfig", "[upstream.sandbox]"),
        ("FilesConfig", "[upstream.files]"),
        ("SqlConfig", "[upstream.sql]"),
        ("AuditConfig", "[audit]"),
        ("TelemetryConfig", "[telemetry]"),
        ("ForwardConfig", "[[audit.forward]]"),
        ("VaultConfig", "[vault]"),
        ("SecretRef", "secret reference: `{ env = \"VAR\" }` or `{ file = \"/path\" }`"),
    ];
    let mut out = String::from("# Configuration reference\n\nGenerated from `crates/warden-gateway/src/config.rs`; do not edit by hand.\nUnknown keys are errors (`warden check` reports `file:line:column`).\n\nEvery relative path (files, directories, `cwd`, secret files) resolves from the config file's\ndirectory, wherever Warden is started. Only `command` is looked up as a shell would: on `PATH`,\nor (with a `/`) from Warden's working directory.\n");
    for (name, title) in sections {
        let start = src.find(&format!("pub struct {name} {{")).expect("struct in config.rs");
        let body = &src[start..start + src[start..].find("\n}\n").expect("struct end")];
        out.push_str(&format!("\n## {title}\n\n| key | type | meaning |\n|---|---|---|\n"));
        let mut doc = Vec::new();
        let mut rename: Option<String> = None;
        for line in body.lines().skip(1) {
            let t = line.trim();
            if let Some(d) = t.strip_prefix("///") {
                doc.push(d.trim().to_string());
            } else if let Some(r) = t.strip_prefix("#[serde(").and_then(|a| a.split("rename = \"").nth(1)) {
                rename = r.split('"').next().map(str::to_string);
            } else if let Some(f) = t.strip_prefix("pub ") {
                let (field, ty) = f.split_once(": ").expect("field: type");
                let key = rename.take().unwrap_or_else(|| field.to_string());
                out.push_str(&format!(
                    "| `{key}` | `{}` | {} |\n",
                    ty.trim_end_matches(','),
                    doc.join(" ").replace('|', "\\|")
                ));
                doc.clear();
            }
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    const OK: &str = r#"
[listen]
addr = "127.0.0.1:0"

[[upstream]]
name = "fix"
transport = "stdio"
command = "warden-fixture"
args = ["--stdio"]
secret_env = { TOKEN = { env = "FIX_TOKEN" } }

[[upstream]]
name = "remote"
transport = "http"
url = "http://127.0.0.1:9/mcp"
"#;

    /// Issue 23: a Deployment's pods name their audit chains by an environment variable.
    #[test]
    fn audit_instance_from_the_environment() {
        let with = |v: &str| Config::parse(&format!("{OK}\n[audit]\ninstance = {v}\n"), "t.toml");
        assert_eq!(with("\"r1\"").unwrap().audit.instance, "r1");
        // Cargo sets this variable for every test it runs.
        assert_eq!(with("{ env = \"CARGO_PKG_NAME\" }").unwrap().audit.instance, "warden-gateway");
        assert!(with("{ env = \"WARDEN_TEST_NOT_SET_ANYWHERE\" }").is_err());
        assert!(with("{ file = \"x\" }").is_err());
    }

    #[test]
    fn valid_config_parses_with_defaults() {
        let c = Config::parse(OK, "t.toml").unwrap();
        assert_eq!(c.upstreams.len(), 2);
        assert_eq!(c.listen.max_body_bytes, 4 << 20);
        assert_eq!(c.federation.separator, "__");
        assert_eq!(c.upstreams[0].namespace(), "fix");
    }

    #[test]
    fn unknown_key_is_an_error_with_position_and_expectation() {
        let bad = OK.replace("args = [", "argz = [");
        let e = Config::parse(&bad, "t.toml").unwrap_err().0;
        assert!(e.starts_with("t.toml:9:1: unknown field `argz`, expected one of"), "{e}");
        assert!(e.contains("`args`"), "{e}");
    }

    #[test]
    fn wrong_type_names_the_line() {
        let bad = OK.replace("addr = \"127.0.0.1:0\"", "addr = 5");
        let e = Config::parse(&bad, "t.toml").unwrap_err().0;
        assert!(e.starts_with("t.toml:3:8:"), "{e}");
    }

    #[test]
    fn semantic_errors_name_the_key() {
        for (from, to, want) in [
            ("127.0.0.1:0", "0.0.0.0:0", "listen.addr: refusing to bind non-loopback"),
            ("name = \"remote\"", "name = \"fix\"", "upstream[1].name: duplicate"),
            ("http://127.0.0.1:9/mcp", "http://example.com/mcp", "upstream[1].url: plain http"),
            ("command = \"warden-fixture\"", "", "upstream[0].command: required"),
            ("{ env = \"FIX_TOKEN\" }", "{ env = \"A\", file = \"/b\" }", "exactly one of env or file"),
        ] {
            let e = Config::parse(&OK.replace(from, to), "t.toml").unwrap_err().0;
            assert!(e.contains(want), "{e}");
        }
    }

    #[test]
    fn config_reference_is_current() {
        let path = concat!(env!("CARGO_MANIFEST_DIR"), "/../../docs/config.md");
        let want = reference_markdown();
        if std::env::var_os("WARDEN_BLESS").is_some() {
            std::fs::write(path, &want).unwrap();
        }
        let have = std::fs::read_to_string(path).unwrap_or_default();
        assert!(
            have == want,
            "docs/config.md is stale: run WARDEN_BLESS=1 cargo test -p warden-gateway config_reference"
        );
        for key in ["`addr`", "`sse_grace_ms`", "`secret_env`", "`separator`", "`upstream`", "`prefix`"] {
            assert!(want.contains(key), "{key} missing from the reference");
        }
    }

    #[test]
    fn secrets_resolve_from_env_and_file_without_echoing_values() {
        let dir = std::env::temp_dir().join(format!("warden-secret-{}", std::process::id()));
        std::fs::write(&dir, "s3cret\n").unwrap();
        let f = SecretRef { env: None, file: Some(dir.clone()), prefix: "Bearer ".into(), ..Default::default() };
        assert_eq!(f.resolve().unwrap(), "Bearer s3cret");
        let e = SecretRef {
            env: Some("WARDEN_TEST_UNSET_VAR".into()),
            file: None,
            prefix: String::new(),
            ..Default::default()
        };
        assert_eq!(e.resolve().unwrap_err(), "environment variable WARDEN_TEST_UNSET_VAR is not set");
        std::fs::remove_file(dir).ok();
    }

    /// Every relative path resolves from the config file's directory, whoever starts Warden
    /// where: TLS files and `cwd` included, and secret files in every section (tenants, store).
    /// Each secret reference knows its `file:line:col` for `warden check`.
    #[test]
    fn relative_paths_resolve_from_the_config_file_everywhere() {
        let dir = std::env::temp_dir().join(format!("warden-paths-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let text = r#"
[listen]
addr = "127.0.0.1:0"
[listen.tls]
cert_file = "srv.pem"
key_file = "tls/srv.key"
client_ca_file = "ca.pem"
[[upstream]]
name = "fix"
transport = "stdio"
command = "warden-fixture"
cwd = "work"
[upstream.tenants.t1]
secret_env = { TOKEN = { file = "t1.token" } }
[store]
backend = "redis"
url = "redis://127.0.0.1:6379"
password = { file = "redis.pw" }
"#;
        let path = dir.join("w.toml");
        std::fs::write(&path, text).unwrap();
        let mut c = Config::load(&path).unwrap();
        let tls = c.listen.tls.as_ref().unwrap();
        assert_eq!(tls.cert_file, dir.join("srv.pem"));
        assert_eq!(tls.key_file, dir.join("tls/srv.key"));
        assert_eq!(tls.client_ca_file.as_deref(), Some(dir.join("ca.pem").as_path()));
        assert_eq!(c.upstreams[0].cwd.as_deref(), Some(dir.join("work").as_path()));
        assert_eq!(
            c.upstreams[0].tenants["t1"].secret_env["TOKEN"].file.as_deref(),
            Some(dir.join("t1.token").as_path())
        );
        assert_eq!(c.store.password.as_ref().unwrap().file.as_deref(), Some(dir.join("redis.pw").as_path()));
        let missing = c.check_secrets();
        let p = path.display();
        assert_eq!(missing.len(), 2, "{missing:?}");
        assert!(
            missing[0].starts_with(&format!("{p}:14:24: upstream \"fix\".tenants.t1.secret_env.TOKEN: secret file ")),
            "{missing:?}"
        );
        assert!(missing[1].starts_with(&format!("{p}:18:12: store.password: secret file ")), "{missing:?}");
        std::fs::write(dir.join("t1.token"), "x").unwrap();
        std::fs::write(dir.join("redis.pw"), "y").unwrap();
        assert!(c.check_secrets().is_empty());
        std::fs::remove_dir_all(dir).ok();
    }
}
