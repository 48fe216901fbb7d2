//! Warden's TOML configuration: parsed strictly (unknown keys are errors, reported as
//! `file:line:column: message`), then validated as a whole.
//!
//! Defends against: typos silently disabling a setting, secrets written into the config file
//! (secrets are only referenced: `{ env = "VAR" }` or `{ file = "/path" }`), binding a network
//! interface while nothing authenticates callers.
//! Does not defend against: a secret pasted into a plain field such as `env` or `args`; those are
//! documented as not-for-secrets.

use serde::Deserialize;
use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};

/// The whole configuration file.
#[derive(Debug, Clone, Deserialize, Default)]
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
    /// The audit trail: a hash-chained, signed record of every operation.
    #[serde(default)]
    pub audit: AuditConfig,
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

/// The client-facing listener (`/mcp`, `/healthz`, `/readyz`).
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Listen {
    /// Address to bind. Default `127.0.0.1:8931`. A non-loopback address is refused while no
    /// authentication is configured.
    #[serde(default = "default_addr")]
    pub addr: SocketAddr,
    /// Extra `Host` header values accepted (besides `localhost`, `127.0.0.1` and `[::1]` with
    /// any port, which are always accepted on a loopback bind). Exact `host[:port]` strings.
    #[serde(default)]
    pub allowed_hosts: Vec<String>,
    /// `Origin` values accepted, exact (`scheme://host[:port]`). Loopback origins are always
    /// accepted; requests without `Origin` (non-browser clients) are accepted.
    #[serde(default)]
    pub allowed_origins: Vec<String>,
    /// Largest request body, in bytes. Default 4 MiB.
    #[serde(default = "default_body")]
    pub max_body_bytes: usize,
    /// Largest request head (request line + headers), in bytes. Default 64 KiB.
    #[serde(default = "default_header")]
    pub max_header_bytes: usize,
    /// Deepest JSON nesting accepted in one message. Default 64.
    #[serde(default = "default_depth")]
    pub max_json_depth: usize,
    /// Seconds a client may take to send a request's head and body. Default 30.
    #[serde(default = "default_read_timeout")]
    pub read_timeout_secs: u64,
    /// Seconds after which a session with no traffic is closed. Default 1800.
    #[serde(default = "default_idle")]
    pub session_idle_timeout_secs: u64,
    /// Most concurrent sessions; more are refused with 503. Default 10000.
    #[serde(default = "default_max_sessions")]
    pub max_sessions: usize,
    /// Most concurrent sessions of one authenticated caller (same credential identity); more are
    /// refused with 429, so that one caller cannot take every session and the upstream processes
    /// they start. (Without `[auth]` every caller is the same `local` one: only `max_sessions`
    /// applies.) Default 64.
    #[serde(default = "default_sessions_per_principal")]
    pub max_sessions_per_principal: usize,
    /// Most open connections; more are closed at once. 0: no cap. Default 4096 (keep it below
    /// the process's descriptor limit: each connection holds two).
    #[serde(default = "default_max_connections")]
    pub max_connections: usize,
    /// Most open connections from one client address (a trusted proxy counts only against
    /// `max_connections`). 0: no cap. Default 256.
    #[serde(default = "default_connections_per_client")]
    pub max_connections_per_client: usize,
    /// Seconds a connection (HTTP/1.1 keep-alive or HTTP/2) may stay open without a request in
    /// flight before it is closed gently; an open SSE stream is a request in flight. 0: never.
    /// Default 120.
    #[serde(default = "default_connection_idle")]
    pub connection_idle_secs: u64,
    /// `retry` (ms) announced in SSE priming events. Default 1000.
    #[serde(default = "default_retry")]
    pub sse_retry_ms: u64,
    /// Milliseconds a request may take and still be answered with a single JSON body (cheaper
    /// for both sides); a request still running after this, or one that sends progress, logs or
    /// requests first, is answered with an SSE stream. 0: always SSE. Default 10.
    #[serde(default = "default_grace")]
    pub sse_grace_ms: u64,
    /// Serve HTTPS (TLS 1.3 only). Absent: plain HTTP, allowed on a non-loopback address only
    /// with `trusted_proxies` (a TLS-terminating proxy in front).
    pub tls: Option<Tls>,
    /// Addresses of TLS-terminating reverse proxies. Required for plain HTTP on a non-loopback
    /// address; `X-Forwarded-For`/`X-Forwarded-Proto` are believed only from these addresses.
    #[serde(default)]
    pub trusted_proxies: Vec<std::net::IpAddr>,
}

/// TLS for the listener: TLS 1.3 only; files are re-read when they change.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Tls {
    /// PEM certificate chain, leaf first (relative to the config file).
    pub cert_file: PathBuf,
    /// PEM private key (PKCS#8, PKCS#1 or SEC1; relative to the config file).
    pub key_file: PathBuf,
    /// PEM CA certificates for client certificates (mTLS; relative to the config file). When set, a client certificate is
    /// required and verified against these, and its subject becomes the caller's principal.
    pub client_ca_file: Option<PathBuf>,
    /// Seconds between checks for changed certificate files. Default 10.
    #[serde(default = "default_tls_reload")]
    pub reload_secs: u64,
}

/// Authentication (DESIGN.md stage 2). Every request to `/mcp` must present one accepted
/// credential: a bearer JWT from an accepted issuer (or the built-in authorization server), an
/// opaque token accepted by introspection, an API key, or a verified client certificate.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Auth {
    /// This server's canonical resource URI (RFC 8707), the MCP endpoint's public URL, e.g.
    /// `https://mcp.example.com/mcp`. Tokens must name it in `aud`. Required on a non-loopback
    /// bind; on loopback it defaults to `http://<Host header>/mcp`.
    pub resource: Option<String>,
    /// Scopes every request needs. Missing ones get 403 `insufficient_scope`. Default none.
    #[serde(default)]
    pub required_scopes: Vec<String>,
    /// Scopes announced in the protected resource metadata. Default: `required_scopes`.
    #[serde(default)]
    pub scopes_supported: Vec<String>,
    /// Authorization servers whose JWT access tokens are accepted.
    #[serde(default, rename = "jwt")]
    pub issuers: Vec<JwtIssuer>,
    /// Opaque access tokens checked by RFC 7662 introspection.
    pub introspection: Option<Introspection>,
    /// API keys for service clients (`warden apikey create` prints one with its entry).
    #[serde(default, rename = "api_key")]
    pub api_keys: Vec<ApiKeyEntry>,
    /// Scopes granted to a caller authenticated by a verified client certificate.
    #[serde(default)]
    pub mtls_scopes: Vec<String>,
    /// The built-in OAuth 2.1 authorization server.
    pub builtin: Option<BuiltinAs>,
}

/// An external authorization server whose JWTs are accepted.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct JwtIssuer {
    /// The issuer, compared exactly with `iss`. Keys are found by RFC 8414 / OIDC discovery
    /// under it unless `jwks_url` is set. `https://` (plain `http://` only to loopback).
    pub issuer: String,
    /// The JWKS URL, skipping discovery.
    pub jwks_url: Option<String>,
    /// Signature algorithms accepted (asymmetric only). Default: RS256/384/512, PS256/384/512,
    /// ES256, ES384, EdDSA.
    #[serde(default = "default_algs")]
    pub algorithms: Vec<String>,
    /// Clock leeway for `exp`/`nbf`/`iat`, seconds. Default 30.
    #[serde(default = "default_leeway")]
    pub leeway_secs: u64,
    /// Longest accepted token lifetime (`exp - iat`), seconds. Default 3600.
    #[serde(default = "default_lifetime")]
    pub max_lifetime_secs: u64,
    /// Claim holding the caller's roles (dotted path, e.g. `realm_access.roles`). Default `roles`.
    #[serde(default = "default_roles_claim")]
    pub roles_claim: String,
    /// Claim holding the caller's tenant (dotted path). Default `tenant`.
    #[serde(default = "default_tenant_claim")]
    pub tenant_claim: String,
    /// Seconds between background JWKS refreshes. Default 300.
    #[serde(default = "default_jwks_refresh")]
    pub jwks_refresh_secs: u64,
    /// Fewest seconds between JWKS fetches caused by an unknown `kid`. Default 10.
    #[serde(default = "default_kid_refresh")]
    pub unknown_kid_refresh_secs: u64,
    /// Tenants this issuer may assert; a token naming another is refused. Empty (the default):
    /// any — set it whenever several issuers or API keys share one Warden with tenants.
    #[serde(default)]
    pub tenants: Vec<String>,
    /// Whether this issuer may grant Warden's own scopes (`warden:admin`, `warden:approve`).
    /// Default false: such scopes in its tokens are ignored, so an identity provider that anyone
    /// can register scopes at cannot make its users Warden operators.
    #[serde(default)]
    pub admin_scopes: bool,
}

/// RFC 7662 token introspection for opaque tokens.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Introspection {
    /// The introspection endpoint (`https://`, or `http://` to loopback).
    pub endpoint: String,
    /// Warden's client id at the authorization server.
    pub client_id: String,
    /// Warden's client secret.
    pub client_secret: SecretRef,
    /// Seconds a result is cached (never past the token's `exp`). Default 30.
    #[serde(default = "default_introspect_cache")]
    pub cache_secs: u64,
    /// Introspections of tokens not in the cache, per client address (burst 20); past it the
    /// client gets 503 with `Retry-After`, so random tokens cannot turn Warden into a flood on
    /// the authorization server. Default `"120/minute"`.
    #[serde(default = "default_lookups_per_client")]
    pub lookups_per_client: String,
    /// The same over all clients (burst 100). Default `"50/s"`.
    #[serde(default = "default_lookups_total")]
    pub lookups_total: String,
}

fn default_lookups_per_client() -> String {
    "120/minute".into()
}
fn default_lookups_total() -> String {
    "50/s".into()
}

/// One API key, stored only as a hash.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ApiKeyEntry {
    /// The key's public id (the part after `wdk_`, before the next `_`).
    pub id: String,
    /// `sha256:<hex>` of the whole key.
    pub hash: String,
    /// The principal's subject.
    pub subject: String,
    #[serde(default)]
    pub scopes: Vec<String>,
    #[serde(default)]
    pub roles: Vec<String>,
    pub tenant: Option<String>,
    /// Expiry, RFC 3339 (e.g. `2027-01-31T00:00:00Z`). Absent: no expiry.
    pub expires: Option<String>,
}

/// The built-in OAuth 2.1 authorization server (for the embedded default and small teams).
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct BuiltinAs {
    /// The signing key (PKCS#8 Ed25519, created on first start). Default
    /// `warden-data/signing-key.pk8` beside the config file.
    pub key_file: Option<PathBuf>,
    /// Local users with argon2id password hashes (`warden user add`). Default
    /// `warden-data/users.toml` beside the config file.
    pub users_file: Option<PathBuf>,
    /// Access token lifetime, seconds (at most 3600). Default 900.
    #[serde(default = "default_access_ttl")]
    pub access_token_ttl_secs: u64,
    /// Refresh token lifetime, seconds. Default 86400.
    #[serde(default = "default_refresh_ttl")]
    pub refresh_token_ttl_secs: u64,
    /// Scopes clients may request. Default `["mcp"]`.
    #[serde(default = "default_as_scopes")]
    pub scopes: Vec<String>,
    /// Accept RFC 7591 dynamic client registration. Default true.
    #[serde(default = "default_true")]
    pub dynamic_registration: bool,
    /// Accept Client ID Metadata Documents: an `https` URL as `client_id`, whose JSON document
    /// the server fetches (public addresses only). Default true.
    #[serde(default = "default_true")]
    pub client_metadata_documents: bool,
    /// Development and tests only: also fetch client metadata documents from `http` loopback URLs.
    /// Default false.
    #[serde(default)]
    pub client_metadata_allow_loopback: bool,
    /// Registered clients, refresh tokens (as hashes) and revoked grants, kept across restarts.
    /// Default `warden-data/as-state.json` beside the config file.
    pub state_file: Option<PathBuf>,
    /// Failed logins for one user name before it is locked for 15 minutes. Default 5.
    #[serde(default = "default_login_attempts")]
    pub max_failed_logins: u32,
    /// Dynamic registrations accepted per client address (an IPv6 client: per /64) in an hour;
    /// more get 429. Default 20.
    #[serde(default = "default_registrations_per_hour")]
    pub registrations_per_hour: u32,
    /// Dynamic registrations accepted from all addresses together in an hour. Default 200 (with
    /// unused clients forgotten after a day, at most a day's worth of them is kept).
    #[serde(default = "default_registrations_total")]
    pub registrations_total_per_hour: u32,
    /// A registered client that has obtained no token this many seconds after registering is
    /// forgotten (one that has is forgotten when its last grant is older than
    /// `refresh_token_ttl_secs` and it holds no live refresh token). Default 86400.
    #[serde(default = "default_unused_client_ttl")]
    pub unused_client_ttl_secs: u64,
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

/// Combining several upstreams.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Federation {
    /// Placed between an upstream's namespace and a tool or prompt name. Default `__`.
    #[serde(default = "default_sep")]
    pub separator: String,
}

/// How Warden talks to an upstream.
#[derive(Debug, Clone, Copy, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "lowercase")]
pub enum Transport {
    /// A child process speaking newline-delimited JSON-RPC on stdin/stdout.
    Stdio,
    /// A remote Streamable HTTP server.
    Http,
    /// Warden's own hardened tools, in process (`[upstream.files]`, `[upstream.sql]`).
    Builtin,
}

/// One upstream MCP server.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Upstream {
    /// Unique name, `[A-Za-z0-9_-]{1,32}`; used in logs and as the default namespace.
    pub name: String,
    /// Prefix for this upstream's tools and prompts (`<namespace><separator><name>`) and resource
    /// URIs (`warden://<namespace>/<uri>`). Default: `name`. `""` exposes names unchanged.
    pub namespace: Option<String>,
    /// `stdio` or `http`.
    pub transport: Transport,
    /// stdio: the program to run.
    pub command: Option<String>,
    /// stdio: its arguments (not for secrets).
    #[serde(default)]
    pub args: Vec<String>,
    /// stdio: the SHA-256 (hex) of the program `command` names (resolved on `PATH`), checked
    /// before every start; a changed program is refused and audited. `warden check` prints it.
    pub sha256: Option<String>,
    /// stdio: working directory (relative to the config file). Default: Warden's.
    pub cwd: Option<PathBuf>,
    /// stdio: names of Warden's environment variables the child inherits. Nothing else is
    /// inherited. Default `["PATH", "HOME", "LANG"]`.
    #[serde(default = "default_env_allow")]
    pub env_allow: Vec<String>,
    /// stdio: variables set to literal values (not for secrets).
    #[serde(default)]
    pub env: BTreeMap<String, String>,
    /// stdio: variables whose values are secrets, read from Warden's environment or a file.
    #[serde(default)]
    pub secret_env: BTreeMap<String, SecretRef>,
    /// http: the server's MCP endpoint (`http://` only to loopback hosts, else `https://`).
    pub url: Option<String>,
    /// http: headers sent on every request whose values are secrets (e.g. `Authorization`).
    #[serde(default)]
    pub secret_headers: BTreeMap<String, SecretRef>,
    /// http: OAuth client credentials for this upstream (Warden's own identity there; clients'
    /// tokens are never forwarded).
    pub oauth: Option<UpstreamOAuth>,
    /// Seconds to connect and complete `initialize`. Default 30.
    #[serde(default = "default_connect")]
    pub connect_timeout_secs: u64,
    /// Operator classification of this upstream's tools, by the upstream's tool name:
    /// `"read_only"` or `"destructive"`. It wins over the tool's annotations.
    #[serde(default)]
    pub classify: BTreeMap<String, ToolClass>,
    /// Believe this upstream's `readOnlyHint` for tools not in `classify`. Default false: an
    /// unclassified tool counts as destructive, whatever it claims.
    #[serde(default)]
    pub trust_annotations: bool,
    /// Calls in flight to this upstream at once, over all sessions; more get a retryable error.
    pub max_concurrency: Option<usize>,
    /// Seconds a single request may take before it is cancelled. Default 120.
    #[serde(default = "default_call")]
    pub call_timeout_secs: u64,
    /// Per-tenant instances or credentials, by tenant: a session of a principal of that tenant
    /// connects with these settings in place of (or on top of) the ones above.
    #[serde(default)]
    pub tenants: BTreeMap<String, TenantUpstream>,
    /// Only principals whose tenant has an entry in `tenants` reach this upstream at all.
    #[serde(default)]
    pub tenant_only: bool,
    /// Requests this upstream may send to the client: `"sampling"` (the client's model writes
    /// for it), `"elicitation"` (the user types for it), `"roots"` (the client's folders).
    /// Default none: such a request is refused (`-32601`) and recorded, and the upstream is not
    /// told the client supports it. Each exchange allowed is recorded, and the client's answer
    /// is redacted (`content.redact`) before it goes upstream.
    #[serde(default)]
    pub client_requests: Vec<ClientRequest>,
    /// The MCP revision Warden speaks to this server: `"auto"` (default: ask with
    /// `server/discover`, and fall back to the `initialize` handshake of the 2025 revisions when
    /// the server does not answer it), `"2026-07-28"` (stateless only: no upstream session per
    /// client), or a 2025 revision such as `"2025-11-25"` (the `initialize` handshake only).
    #[serde(default)]
    pub protocol: UpstreamProtocol,
    /// stdio: the sandbox the server runs in (Linux). On by default.
    #[serde(default)]
    pub sandbox: SandboxConfig,
    /// builtin: the file tools (`read_file`, `list_directory`, `search_files`).
    pub files: Option<FilesConfig>,
    /// builtin: the SQL tools (`query`, and `sql` when `raw_query`).
    pub sql: Option<SqlConfig>,
}

/// `[upstream.sandbox]`: how a stdio server is isolated. Every layer is applied as far as the
/// kernel allows, and `warden check` and the `serve` log report what is active.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SandboxConfig {
    /// Run the server in the sandbox. Default true.
    #[serde(default = "default_true")]
    pub enabled: bool,
    /// Paths the server may read and execute (directories: everything beneath), relative to the
    /// config file. The program's own install prefix, `cwd` and the system paths are added.
    #[serde(default)]
    pub read_only: Vec<PathBuf>,
    /// Paths the server may also write, create and delete in (a server that needs a temporary
    /// directory gets a private one here, named in `env = { TMPDIR = "…" }`).
    #[serde(default)]
    pub read_write: Vec<PathBuf>,
    /// Allow reading the system paths programs need (`/usr`, `/lib*`, `/bin`, certificates,
    /// name resolution; `/etc` file by file). Default true.
    #[serde(default = "default_true")]
    pub system_paths: bool,
    /// `"deny"` (default: Unix sockets only, by seccomp and Landlock), `"isolated"` (a fresh
    /// network namespace; falls back to `deny`) or `"allow"`, which an upstream that needs the
    /// network must say (a local server with network can reach every loopback service, Redis
    /// or PostgreSQL included).
    #[serde(default)]
    pub network: SandboxNetwork,
    /// CPU seconds (RLIMIT_CPU).
    pub cpu_secs: Option<u64>,
    /// Address space in MiB (RLIMIT_AS). JavaScript runtimes reserve a lot: leave unset for Node.
    pub address_space_mb: Option<u64>,
    /// Open files (RLIMIT_NOFILE).
    pub open_files: Option<u64>,
    /// Processes and threads of the server's user (RLIMIT_NPROC). The kernel counts per uid:
    /// every server running as the same user shares the limit, and each session of a stdio
    /// upstream is one process with its threads; give an upstream its own `user` for a tight
    /// limit. Default 4096 when Warden is root.
    pub processes: Option<u64>,
    /// Largest file the server may write, in MiB (RLIMIT_FSIZE).
    pub file_size_mb: Option<u64>,
    /// When Warden runs as root: the user the server runs as (name or uid; a uid without an
    /// account works). Default `nobody`. The program and its files must be readable by that user
    /// (an interpreter installed under `/root` is not).
    pub user: Option<String>,
    /// When Warden runs as root: the group (name or gid). Default: the user's primary group.
    pub group: Option<String>,
    /// Refuse to start the server when a layer cannot be applied. Unset means false: best
    /// effort, each missing layer logged at WARN and listed under `sandbox` in `/readyz`.
    /// `warden check` warns when a sandboxed upstream leaves it unset and names the layers this
    /// machine cannot apply; the example configs set `strict = true`. Also refuses an unpinned
    /// package launcher (`npx -y pkg`).
    pub strict: Option<bool>,
}

impl Default for SandboxConfig {
    fn default() -> Self {
        SandboxConfig {
            enabled: true,
            read_only: Vec::new(),
            read_write: Vec::new(),
            system_paths: true,
            network: SandboxNetwork::Deny,
            cpu_secs: None,
            address_space_mb: None,
            open_files: None,
            processes: None,
            file_size_mb: None,
            user: None,
            group: None,
            strict: None,
        }
    }
}

/// What a sandboxed server may reach over the network.
#[derive(Debug, Clone, Copy, Deserialize, PartialEq, Eq, Default)]
#[serde(rename_all = "lowercase")]
pub enum SandboxNetwork {
    Allow,
    #[default]
    Deny,
    Isolated,
}

impl SandboxConfig {
    /// `strict`, unset meaning false.
    pub fn strict(&self) -> bool {
        self.strict.unwrap_or(false)
    }

    /// The sandbox policy for a server started in `cwd`; `None` when disabled.
    pub fn policy(&self, cwd: Option<&Path>) -> Option<warden_sandbox::Policy> {
        if !self.enabled {
            return None;
        }
        let mib = |v: Option<u64>| v.map(|m| m.saturating_mul(1 << 20));
        let root = nix::unistd::geteuid().is_root();
        let mut read_only = self.read_only.clone();
        read_only.extend(cwd.map(Path::to_path_buf));
        Some(warden_sandbox::Policy {
            read_only,
            read_write: self.read_write.clone(),
            system_paths: self.system_paths,
            network: match self.network {
                SandboxNetwork::Allow => warden_sandbox::Network::Allow,
                SandboxNetwork::Deny => warden_sandbox::Network::Deny,
                SandboxNetwork::Isolated => warden_sandbox::Network::Isolated,
            },
            limits: warden_sandbox::Limits {
                cpu_secs: self.cpu_secs,
                address_space_bytes: mib(self.address_space_mb),
                open_files: self.open_files,
                processes: self.processes.or(root.then_some(4096)),
                file_size_bytes: mib(self.file_size_mb),
            },
            user: self.user.clone(),
            group: self.group.clone(),
            strict: self.strict(),
        })
    }
}

/// `[upstream.files]`: the built-in file tools, confined to `roots`.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FilesConfig {
    /// Directories the tools may reach (relative to the config file). A path argument is
    /// resolved beneath one of them and never leaves it (no `..`, no symlink out).
    pub roots: Vec<PathBuf>,
    /// Also offer `write_file`. Default false (read-only).
    #[serde(default)]
    pub writable: bool,
    /// Largest file `read_file` returns, in bytes. Default 1 MiB.
    #[serde(default = "default_max_file")]
    pub max_file_bytes: u64,
    /// Most entries `list_directory` and `search_files` return. Default 500.
    #[serde(default = "default_max_entries")]
    pub max_entries: usize,
}

/// `[upstream.sql]`: the built-in SQL tools over one SQLite database, read-only.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SqlConfig {
    /// A SQLite database file (relative to the config file), opened read-only. Either this or
    /// `url`.
    pub database: Option<PathBuf>,
    /// A PostgreSQL server, `postgres://user@host:port/dbname`; queries run in read-only
    /// transactions. Connect as a role that can read only what `tables` exposes. TLS to the
    /// server is not supported yet: use loopback or a Unix socket (`host=/run/postgresql`).
    pub url: Option<String>,
    /// PostgreSQL: the password, kept out of the URL.
    pub password: Option<SecretRef>,
    /// PostgreSQL: the schema the tables are in. Default `public`.
    #[serde(default = "default_schema")]
    pub schema: String,
    /// Tables the `query` tool may read, each with its allowed columns (`["*"]`: all).
    pub tables: BTreeMap<String, Vec<String>>,
    /// Also offer `sql`: exactly one read-only `SELECT`, checked by a SQL parser, run on a
    /// read-only connection. Default false.
    #[serde(default)]
    pub raw_query: bool,
    /// Most rows a query returns. Default 500.
    #[serde(default = "default_max_rows")]
    pub max_rows: usize,
    /// Milliseconds a query may run. Default 2000.
    #[serde(default = "default_sql_timeout")]
    pub timeout_ms: u64,
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

/// `[upstream.tenants.<tenant>]`: what differs for one tenant. Maps are merged over the
/// upstream's own (same key: the tenant's value wins).
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TenantUpstream {
    /// http: this tenant's instance of the server.
    pub url: Option<String>,
    /// stdio: arguments replacing the upstream's.
    pub args: Option<Vec<String>>,
    /// stdio: variables set to literal values.
    #[serde(default)]
    pub env: BTreeMap<String, String>,
    /// stdio: secret variables (this tenant's credentials).
    #[serde(default)]
    pub secret_env: BTreeMap<String, SecretRef>,
    /// http: secret headers (this tenant's credentials).
    #[serde(default)]
    pub secret_headers: BTreeMap<String, SecretRef>,
}

/// How the operator classifies a tool.
#[derive(Debug, Clone, Copy, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "snake_case")]
pub enum ToolClass {
    ReadOnly,
    Destructive,
}

/// Allow or deny.
#[derive(Debug, Clone, Copy, Deserialize, PartialEq, Eq, Default)]
#[serde(rename_all = "snake_case")]
pub enum Effect {
    #[default]
    Allow,
    Deny,
}

/// One authorization rule (`[[rule]]`).
#[derive(Debug, Clone, Deserialize)]
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
    /// A CEL condition over `principal`, `target` and `args`, e.g.
    /// `args.table in ['orders', 'products']`. An error counts as false for allow, true for deny.
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
}

/// Who approves a call.
#[derive(Debug, Clone, Copy, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "snake_case")]
pub enum ApprovalMode {
    User,
    Admin,
}

/// `[store]`: the backend of limits, kill switches and approvals.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct StoreConfig {
    /// `"memory"` (default; this process only) or `"redis"` (shared by every Warden using it).
    #[serde(default)]
    pub backend: StoreBackend,
    /// redis: the server, `redis://host:port/db` (`rediss://` for TLS). Required for redis.
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

/// `[[upstream]] protocol`: the MCP generation Warden speaks to one upstream.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum UpstreamProtocol {
    /// Probe with `server/discover`; fall back to `initialize`.
    #[default]
    Auto,
    /// A stateless revision (`2026-07-28`): `server/discover`, then `_meta` on every request.
    Stateless(&'static str),
    /// A session revision (`2025-11-25`, …): the `initialize` handshake.
    Session(&'static str),
}

impl<'de> Deserialize<'de> for UpstreamProtocol {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = String::deserialize(d)?;
        if s == "auto" {
            return Ok(UpstreamProtocol::Auto);
        }
        match warden_protocol::version::ALL.iter().find(|v| **v == s) {
            Some(v) if warden_protocol::version::is_stateless(v) => Ok(UpstreamProtocol::Stateless(v)),
            Some(v) => Ok(UpstreamProtocol::Session(v)),
            None => Err(serde::de::Error::custom(format!(
                "unknown protocol {s:?}: \"auto\" or one of {}",
                warden_protocol::version::ALL.join(", ")
            ))),
        }
    }
}

/// A request an upstream sends to the client.
#[derive(Debug, Clone, Copy, Deserialize, serde::Serialize, PartialEq, Eq)]
#[serde(rename_all = "snake_case")]
pub enum ClientRequest {
    Sampling,
    Elicitation,
    Roots,
}

impl ClientRequest {
    /// The request of a method name, if it is one of these.
    pub fn of(method: &str) -> Option<ClientRequest> {
        match method {
            "sampling/createMessage" => Some(ClientRequest::Sampling),
            "elicitation/create" => Some(ClientRequest::Elicitation),
            "roots/list" => Some(ClientRequest::Roots),
            _ => None,
        }
    }

    /// The client capability it needs (`capabilities.<name>` in `initialize`).
    pub fn capability(self) -> &'static str {
        match self {
            ClientRequest::Sampling => "sampling",
            ClientRequest::Elicitation => "elicitation",
            ClientRequest::Roots => "roots",
        }
    }
}

#[derive(Debug, Clone, Copy, Deserialize, PartialEq, Eq, Default)]
#[serde(rename_all = "snake_case")]
pub enum StoreBackend {
    #[default]
    Memory,
    Redis,
}

#[derive(Debug, Clone, Copy, Deserialize, PartialEq, Eq, Default)]
#[serde(rename_all = "snake_case")]
pub enum OnOutage {
    #[default]
    FailClosed,
    FailOpen,
}

/// `[approval]`: how long calls wait for a decision and who may decide.
#[derive(Debug, Clone, Deserialize)]
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

fn default_pending_per_caller() -> usize {
    10
}
fn default_pending_per_tenant() -> usize {
    500
}

impl Default for ApprovalConfig {
    fn default() -> Self {
        toml::from_str("").expect("defaults parse")
    }
}

/// `[audit]`: the record of every operation (initialize, listings, calls, reads, prompts,
/// approvals, kill switches, pins, admin actions, authentication failures), hash-chained and
/// signed at checkpoints; `warden audit verify|query|tail` read it.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AuditConfig {
    /// Keep the audit trail. Default true.
    #[serde(default = "yes")]
    pub enabled: bool,
    /// The log: a SQLite database (WAL), or a JSONL file when the name ends in `.jsonl`.
    /// Relative to the config file. Default `warden-audit.db`.
    #[serde(default = "default_audit_path")]
    pub path: PathBuf,
    /// A PostgreSQL database instead of `path`, `postgres://user@host:port/dbname`, shared by
    /// several Wardens (each writes its own chain, `instance`; table `audit_events`, created
    /// when missing). TLS to the server is not supported yet: use loopback or a Unix socket.
    pub url: Option<String>,
    /// PostgreSQL: the password, kept out of the URL.
    pub password: Option<SecretRef>,
    /// Where signed checkpoints are also appended, outside the log (the anchor that reveals a
    /// truncated log). Relative to the config file. Default `<path>.checkpoints`.
    pub checkpoint_file: Option<PathBuf>,
    /// When writes are forced to disk: `"never"` (default: a record survives Warden being
    /// killed once written, not a power cut), `"batch"` (fsync per group commit) or `"event"`.
    #[serde(default)]
    pub fsync: warden_audit::Fsync,
    /// Milliseconds the writer waits for more events before writing a batch (group commit
    /// window). Default 0: a batch is whatever queued while the last one was written. At most 100.
    #[serde(default)]
    pub group_commit_ms: u64,
    /// Events waiting for the writer, at most. Default 65536.
    #[serde(default = "default_audit_queue")]
    pub queue_capacity: usize,
    /// With the queue full: `"reject"` (default: requests fail with 503 until it drains) or
    /// `"drop"` (the event is dropped and counted in metrics and checkpoints).
    #[serde(default)]
    pub on_full: warden_audit::OnFull,
    /// When a request is answered: `"stored"` (default: after its record is in the log, so
    /// every answered call has a record even if Warden is killed) or `"queued"` (at once).
    #[serde(default)]
    pub acknowledge: Acknowledge,
    /// Arguments in records: `"redacted"` (default: secrets, PII and values of secret-named
    /// keys replaced, long strings cut), `"none"` (only the digest) or `"full"`.
    #[serde(default)]
    pub arguments: AuditArguments,
    /// Ed25519 key (PKCS#8) that signs checkpoints; created, 0600, when absent. Relative to the
    /// config file. Default `warden-audit.key`.
    #[serde(default = "default_audit_key")]
    pub signing_key: PathBuf,
    /// The pinned public half of `signing_key` (base64; `warden audit public-key` prints it).
    /// Warden refuses to start when the key file does not match it (the file was replaced), and
    /// `warden audit verify --config` trusts only it. Unset: verification needs `--public-key`.
    /// Keep a copy off the host: whoever can edit this file can pin a key of their own.
    pub public_key: Option<String>,
    /// Sign a checkpoint after at least this many events. Default 10000.
    #[serde(default = "default_checkpoint_every")]
    pub checkpoint_every: u64,
    /// … or this many seconds after the last one, if there were events. Default 10.
    #[serde(default = "default_checkpoint_secs")]
    pub checkpoint_secs: u64,
    /// This instance's chain name (several Wardens may share a database). Default `warden`.
    #[serde(default = "default_instance")]
    pub instance: String,
    /// Copies of every record sent elsewhere (`[[audit.forward]]`).
    #[serde(default)]
    pub forward: Vec<ForwardConfig>,
}

/// `[telemetry]`: OpenTelemetry traces. Trace context is always propagated (from the client's
/// `params._meta.traceparent` to the upstream's `traceparent` header and `_meta`) and the trace
/// id is in each audit record; spans are recorded only when `traces_url` is set.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TelemetryConfig {
    /// The collector's OTLP/HTTP traces endpoint (`…/v1/traces`, JSON): `https://…`, or
    /// `http://` to a loopback host.
    pub traces_url: Option<String>,
    /// Headers sent with every export.
    #[serde(default)]
    pub headers: BTreeMap<String, String>,
}

/// `[[audit.forward]]`: a copy of every stored record sent to a SIEM or an OpenTelemetry
/// collector over HTTP, in batches, through a disk spool: nothing is lost while the destination
/// is down (up to `spool_max_mb`), requests are retried with backoff, and delivery resumes after
/// a restart. At least once: de-duplicate on `chain` and `seq`.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ForwardConfig {
    /// A name for logs, metrics and the spool file.
    pub name: String,
    /// Where to POST: `https://…`, or `http://` to a loopback host. For `otlp`, the collector's
    /// logs endpoint (`…/v1/logs`).
    pub url: String,
    /// `"jsonl"` (default: the records as newline-delimited JSON, as stored) or `"otlp"`
    /// (OTLP/HTTP JSON logs: one log record per audit record, its fields as attributes).
    #[serde(default)]
    pub format: ForwardFormat,
    /// Headers sent with every request.
    #[serde(default)]
    pub headers: BTreeMap<String, String>,
    /// Headers whose values are secrets (`Authorization = { env = "SIEM_TOKEN", prefix = "Splunk " }`).
    #[serde(default)]
    pub secret_headers: BTreeMap<String, SecretRef>,
    /// Most records per request. Default 500.
    #[serde(default = "default_forward_batch")]
    pub batch: usize,
    /// Milliseconds between looks at the spool while there is nothing to send. Default 1000.
    #[serde(default = "default_forward_flush")]
    pub flush_ms: u64,
    /// Milliseconds a request may take. Default 10000.
    #[serde(default = "default_forward_timeout")]
    pub timeout_ms: u64,
    /// The spool file, relative to the config file. Default `<audit.path>.<name>.spool`.
    pub spool: Option<PathBuf>,
    /// Largest undelivered backlog, in MiB; beyond it records are dropped from this copy only
    /// (counted in `warden_audit_forward_dropped`). Default 1024.
    #[serde(default = "default_forward_spool_mb")]
    pub spool_max_mb: u64,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum ForwardFormat {
    #[default]
    Jsonl,
    Otlp,
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

impl ForwardConfig {
    /// The spool file: `spool`, or `<audit path>.<name>.spool`.
    pub fn spool_path(&self, audit: &AuditConfig) -> PathBuf {
        self.spool.clone().unwrap_or_else(|| {
            let mut s = audit.path.as_os_str().to_owned();
            s.push(format!(".{}.spool", self.name));
            PathBuf::from(s)
        })
    }
}

impl ContentConfig {
    /// The largest message Warden reads from an upstream: twice the largest result any tool may
    /// return (JSON escaping can double text), plus 64 KiB of envelope.
    pub fn max_message_bytes(&self) -> usize {
        let largest = self.tools.iter().filter_map(|t| t.max_result_bytes).fold(self.max_result_bytes, usize::max);
        largest.saturating_mul(2).saturating_add(64 << 10)
    }
}

impl AuditConfig {
    /// Where the trail is kept (the password resolved now).
    pub fn store(&self) -> Result<warden_audit::Store, String> {
        Ok(match &self.url {
            Some(url) => warden_audit::Store::Postgres {
                url: url.clone(),
                password: self
                    .password
                    .as_ref()
                    .map(SecretRef::resolve)
                    .transpose()
                    .map_err(|e| format!("audit.password: {e}"))?,
            },
            None => warden_audit::Store::File(self.path.clone()),
        })
    }

    /// The checkpoint file: `checkpoint_file`, or `<path>.checkpoints`.
    pub fn checkpoints(&self) -> PathBuf {
        self.checkpoint_file.clone().unwrap_or_else(|| warden_audit::checkpoint_path(&self.path))
    }
}

impl Default for AuditConfig {
    fn default() -> Self {
        toml::from_str("").expect("defaults parse")
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Acknowledge {
    #[default]
    Stored,
    Queued,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum AuditArguments {
    None,
    #[default]
    Redacted,
    Full,
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

/// `[content]`: what Warden checks in arguments, tool definitions and outputs.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ContentConfig {
    /// Validate every `tools/call` against the tool's `inputSchema` (as pinned). Default true.
    #[serde(default = "yes")]
    pub validate_arguments: bool,
    /// Strict schemas: objects that do not say otherwise get `additionalProperties: false`, so
    /// undeclared arguments are refused. Default true.
    #[serde(default = "yes")]
    pub strict_schemas: bool,
    /// `maxLength` for string arguments whose schema sets none. Default 65536.
    #[serde(default = "default_max_string")]
    pub max_string_length: u64,
    /// `maxItems` for array arguments whose schema sets none. Default 1000.
    #[serde(default = "default_max_items")]
    pub max_array_items: u64,
    /// Tool-definition poisoning scan at listing time: `"block"` (default: a suspect tool is
    /// withheld and uncallable), `"warn"` (logged, still listed) or `"off"`.
    #[serde(default)]
    pub scan: ScanAction,
    /// Pinning of tool definitions: `"tofu"` (default: trust the first definition seen, then
    /// block a changed one until an operator approves it), `"file"` (only definitions in
    /// `pin_file` are trusted) or `"off"`.
    #[serde(default)]
    pub pinning: PinMode,
    /// The pin file `warden pin` writes. With `"tofu"` it also keeps first-seen pins across
    /// restarts.
    pub pin_file: Option<PathBuf>,
    /// Ed25519 public key (base64, printed by `warden pin keygen`) that must have signed the pin
    /// file (`<pin_file>.sig`, written by `warden pin --sign-key`). Warden refuses to start with
    /// a pin file whose signature does not verify. Requires `pinning = "file"`; approvals of
    /// changed definitions then last until restart (re-sign with `warden pin`).
    pub pin_public_key: Option<String>,
    /// Largest result (serialized bytes) returned to a client; the rest is cut with a visible
    /// marker. Default 1048576.
    #[serde(default = "default_max_result")]
    pub max_result_bytes: usize,
    /// Pin concrete resources too (their name, description, MIME type, annotations and `_meta`;
    /// not `size`), like tools, prompts, resource templates and server instructions. Turn it off
    /// for a server whose resource list follows its content (a file tree): new entries are
    /// pinned on first use and the pins kept per upstream are bounded. Default true.
    #[serde(default = "yes")]
    pub pin_resources: bool,
    /// Most tools, prompts, resources or resource templates read from one upstream's listing
    /// (each kind apart). Beyond it the rest are withheld and no further page is read, with an
    /// error in the log (once a minute per upstream and kind), an audit record (kind
    /// `definitions`) and `warden_definitions_refused_total`. It also bounds the pins kept per
    /// upstream (twice it). Default 1000.
    #[serde(default = "default_max_definitions")]
    pub max_definitions: usize,
    /// Largest single content item (text, image, audio, embedded resource). Default 262144.
    #[serde(default = "default_max_item")]
    pub max_item_bytes: usize,
    /// Strip hidden content (HTML comments, zero-width/bidi/tag characters, ANSI escapes,
    /// chat-template tokens) from outputs. Default true.
    #[serde(default = "yes")]
    pub sanitize: bool,
    /// What to do with output that reads as a prompt injection: `"wrap"` (default: enclose it
    /// in an untrusted-data boundary with a random delimiter and a one-line notice), `"flag"`
    /// (log only), `"block"` (withhold it) or `"off"`.
    #[serde(default)]
    pub injection: InjectionAction,
    /// Score (0–1) at which output counts as an injection. Default 0.5.
    #[serde(default = "default_threshold")]
    pub injection_threshold: f32,
    /// What is redacted from outputs and error messages: `"secrets"`, `"pii"`, or single
    /// classes (`"email"`, `"card"`, `"jwt"`, …). Default `["secrets", "pii"]`.
    #[serde(default = "default_redact")]
    pub redact: Vec<String>,
    /// Scrub upstream error messages of file paths, stack traces and internal addresses.
    /// Default true.
    #[serde(default = "yes")]
    pub scrub_errors: bool,
    /// Overrides for some tools.
    #[serde(default, rename = "tool")]
    pub tools: Vec<ContentOverride>,
    /// Schema overlays for one argument of some tools.
    #[serde(default, rename = "argument")]
    pub arguments: Vec<ArgumentOverlay>,
}

impl Default for ContentConfig {
    fn default() -> Self {
        toml::from_str("").expect("defaults parse")
    }
}

/// `[[content.tool]]`: output handling for some tools.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ContentOverride {
    /// Upstream name (glob). Default any.
    #[serde(default = "any")]
    pub server: String,
    /// The upstream's own tool names (globs).
    pub tools: Vec<String>,
    /// Injection action for these tools.
    pub injection: Option<InjectionAction>,
    /// Redaction classes for these tools (replaces the default list).
    pub redact: Option<Vec<String>>,
    /// Result cap for these tools.
    pub max_result_bytes: Option<usize>,
    /// A JSON Schema (as a TOML table) the result's `structuredContent` must match, for tools
    /// that declare no `outputSchema` (or to hold them to a stricter one). A result that does not
    /// match, or has none, is withheld.
    pub output_schema: Option<toml::Table>,
    /// Most bytes of text a result's content items may carry (e.g. 0 for a tool that should
    /// answer rows only); more is withheld.
    pub max_text_bytes: Option<usize>,
}

/// `[[content.argument]]`: JSON Schema keywords laid over one argument's declared schema.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ArgumentOverlay {
    /// Upstream name (glob). Default any.
    #[serde(default = "any")]
    pub server: String,
    /// The upstream's own tool names (globs).
    pub tools: Vec<String>,
    /// The top-level argument.
    pub argument: String,
    /// Keywords, e.g. `{ maxLength = 200, pattern = "^[a-z]+$" }` or `{ enum = ["a", "b"] }`.
    pub schema: toml::Table,
}

/// `[[guard]]`: one check on one argument.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct GuardConfig {
    /// Upstream name (glob). Default any.
    #[serde(default = "any")]
    pub server: String,
    /// The upstream's own tool names (globs).
    pub tools: Vec<String>,
    /// The argument: a top-level name, or a JSON pointer (`/options/path`). Arrays of strings
    /// are checked element by element.
    pub argument: String,
    /// `"path"`, `"sql"`, `"argv"`, `"url"`, `"segment"` (one URL path segment or file name:
    /// no `/`, `\\`, dot segments, percent escapes, `?`, `#`, `;`, `:`, look-alikes of dots and
    /// slashes, whitespace) or `"text"`.
    pub kind: GuardKind,
    /// path: the allowed roots (absolute).
    #[serde(default)]
    pub roots: Vec<PathBuf>,
    /// path: resolve symbolic links (Warden shares the upstream's filesystem). Default true.
    #[serde(default = "yes")]
    pub resolve_symlinks: bool,
    /// path: accept a relative path, taken from the first root; the upstream then gets the
    /// absolute path instead (it could read a relative one from another directory). Default
    /// false: a relative path is refused.
    #[serde(default)]
    pub allow_relative: bool,
    /// sql: `"generic"` (default), `"sqlite"`, `"postgres"` or `"mysql"`.
    #[serde(default)]
    pub dialect: String,
    /// sql: tables a query may read (empty: any).
    #[serde(default)]
    pub tables: Vec<String>,
    /// sql: columns a query may name (empty: any).
    #[serde(default)]
    pub columns: Vec<String>,
    /// sql: functions a query may call besides the dialect's allow-list of pure functions
    /// (aggregates, windows, strings, numbers, dates). Anything else is refused, and so is any
    /// function in `FROM`.
    #[serde(default)]
    pub functions: Vec<String>,
    /// url: also allow `http`. Default false.
    #[serde(default)]
    pub allow_http: bool,
    /// url: allowed hosts (`example.com`, `*.example.com`); empty: any public host.
    #[serde(default)]
    pub hosts: Vec<String>,
    /// url: resolve the host and refuse private addresses. Default true.
    #[serde(default = "yes")]
    pub resolve: bool,
    /// An argument that is missing is fine (the schema decides whether it is required); set
    /// true to refuse calls without it.
    #[serde(default)]
    pub required: bool,
}

#[derive(Debug, Clone, Copy, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "snake_case")]
pub enum GuardKind {
    Path,
    Sql,
    Argv,
    Url,
    Segment,
    Text,
}

#[derive(Debug, Clone, Copy, Deserialize, PartialEq, Eq, Default)]
#[serde(rename_all = "snake_case")]
pub enum ScanAction {
    #[default]
    Block,
    Warn,
    Off,
}

#[derive(Debug, Clone, Copy, Deserialize, PartialEq, Eq, Default)]
#[serde(rename_all = "snake_case")]
pub enum PinMode {
    #[default]
    Tofu,
    File,
    Off,
}

#[derive(Debug, Clone, Copy, Deserialize, PartialEq, Eq, Default)]
#[serde(rename_all = "snake_case")]
pub enum InjectionAction {
    Flag,
    #[default]
    Wrap,
    Block,
    Off,
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

/// Limits over all calls (`[limits]`).
#[derive(Debug, Clone, Deserialize)]
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

/// The admin API (`[admin]`): kill switches and approvals.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Admin {
    /// Address to bind: loopback only (reach it through SSH or a sidecar). Default `127.0.0.1:8932`.
    #[serde(default = "default_admin_addr")]
    pub addr: SocketAddr,
    /// The admin bearer token (at least 32 characters).
    pub token: SecretRef,
    /// Kill-switch state, kept across restarts. Default `warden-data/kill-switches.json`.
    pub state_file: Option<PathBuf>,
}

/// OAuth 2.1 client credentials grant against an upstream's authorization server.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct UpstreamOAuth {
    /// The token endpoint (`https://`, or `http://` to loopback).
    pub token_url: String,
    pub client_id: String,
    pub client_secret: SecretRef,
    /// Space-separated scopes to request.
    pub scope: Option<String>,
    /// RFC 8707 resource indicator to request (the upstream's canonical URI).
    pub resource: Option<String>,
}

/// A secret: never written in the config, only referenced.
#[derive(Debug, Clone, Default)]
pub struct SecretRef {
    /// Read from this environment variable of Warden's.
    pub env: Option<String>,
    /// Read from this file (trailing newline trimmed); relative to the config file's directory.
    pub file: Option<PathBuf>,
    /// Text placed before the secret (for example `"Bearer "`).
    pub prefix: String,
    /// Where the reference is written: its byte span while parsing, `file:line:col` after
    /// [`Config::load`] (for `warden check`).
    at: SecretAt,
}

#[derive(Debug, Clone, Default)]
enum SecretAt {
    #[default]
    Unknown,
    Span(std::ops::Range<usize>),
    Text(String),
}

impl<'de> Deserialize<'de> for SecretRef {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        #[derive(Deserialize)]
        #[serde(deny_unknown_fields)]
        struct Raw {
            env: Option<String>,
            file: Option<PathBuf>,
            #[serde(default)]
            prefix: String,
        }
        let spanned = toml::Spanned::<Raw>::deserialize(d)?;
        let at = SecretAt::Span(spanned.span());
        let r = spanned.into_inner();
        Ok(SecretRef { env: r.env, file: r.file, prefix: r.prefix, at })
    }
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

impl Default for Listen {
    fn default() -> Self {
        toml::from_str("").expect("defaults parse")
    }
}
impl Default for Federation {
    fn default() -> Self {
        Federation { separator: default_sep() }
    }
}

/// A configuration error, already formatted for a human (`file:line:col: …` where known).
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
pub struct ConfigError(pub String);

impl Config {
    /// Read, parse and validate a file.
    pub fn load(path: &Path) -> Result<Config, ConfigError> {
        let text =
            std::fs::read_to_string(path).map_err(|e| ConfigError(format!("{}: cannot read: {e}", path.display())))?;
        let mut cfg = Config::parse(&text, &path.display().to_string())?;
        cfg.base_dir = path.parent().map(Path::to_path_buf).unwrap_or_default();
        let base = cfg.base_dir.clone();
        let origin = path.display().to_string();
        for (_, s) in cfg.secrets_mut() {
            if let Some(f) = s.file.as_mut().filter(|f| f.is_relative()) {
                *f = base.join(&*f);
            }
            if let SecretAt::Span(span) = &s.at {
                let (line, col) = line_col(&text, span.start);
                s.at = SecretAt::Text(format!("{origin}:{line}:{col}"));
            }
        }
        let rel = |p: &mut PathBuf| {
            if p.is_relative() {
                *p = base.join(&*p);
            }
        };
        if let Some(t) = &mut cfg.listen.tls {
            rel(&mut t.cert_file);
            rel(&mut t.key_file);
            t.client_ca_file.iter_mut().for_each(rel);
        }
        for u in &mut cfg.upstreams {
            u.cwd.iter_mut().for_each(rel);
            u.sandbox.read_only.iter_mut().chain(u.sandbox.read_write.iter_mut()).for_each(rel);
            if let Some(f) = &mut u.files {
                f.roots.iter_mut().for_each(rel);
            }
            if let Some(q) = &mut u.sql {
                q.database.iter_mut().for_each(rel);
            }
        }
        rel(&mut cfg.audit.path);
        cfg.audit.checkpoint_file.iter_mut().for_each(rel);
        for f in &mut cfg.audit.forward {
            f.spool.iter_mut().for_each(rel);
        }
        rel(&mut cfg.audit.signing_key);
        cfg.store.ca_file.iter_mut().for_each(rel);
        Ok(cfg)
    }

    /// Every secret reference in the config, with its key (`upstream "x".secret_env.TOKEN`). One
    /// list, so that relative paths, locations and `warden check` miss none.
    pub fn secrets_mut(&mut self) -> Vec<(String, &mut SecretRef)> {
        let mut out: Vec<(String, &mut SecretRef)> = Vec::new();
        fn map<'a>(out: &mut Vec<(String, &'a mut SecretRef)>, at: &str, m: &'a mut BTreeMap<String, SecretRef>) {
            out.extend(m.iter_mut().map(|(k, s)| (format!("{at}.{k}"), s)));
        }
        if let Some(a) = &mut self.auth {
            if let Some(i) = &mut a.introspection {
                out.push(("auth.introspection.client_secret".into(), &mut i.client_secret));
            }
        }
        for u in &mut self.upstreams {
            let at = format!("upstream {:?}", u.name);
            map(&mut out, &format!("{at}.secret_env"), &mut u.secret_env);
            map(&mut out, &format!("{at}.secret_headers"), &mut u.secret_headers);
            if let Some(p) = u.sql.as_mut().and_then(|q| q.password.as_mut()) {
                out.push((format!("{at}.sql.password"), p));
            }
            if let Some(o) = &mut u.oauth {
                out.push((format!("{at}.oauth.client_secret"), &mut o.client_secret));
            }
            for (t, o) in &mut u.tenants {
                map(&mut out, &format!("{at}.tenants.{t}.secret_env"), &mut o.secret_env);
                map(&mut out, &format!("{at}.tenants.{t}.secret_headers"), &mut o.secret_headers);
            }
        }
        if let Some(p) = &mut self.store.password {
            out.push(("store.password".into(), p));
        }
        if let Some(a) = &mut self.admin {
            out.push(("admin.token".into(), &mut a.token));
        }
        if let Some(p) = &mut self.audit.password {
            out.push(("audit.password".into(), p));
        }
        for f in &mut self.audit.forward {
            map(&mut out, &format!("audit.forward {:?}.secret_headers", f.name), &mut f.secret_headers);
        }
        out
    }

    /// Every key and secret file Warden reads, with what it is: the audit and built-in server
    /// signing keys, the built-in server's users, the TLS private key, and every secret given as
    /// a file. Paths as resolved (defaults included), whether or not they exist yet.
    pub fn secret_files(&self) -> Vec<(String, PathBuf)> {
        let mut out = Vec::new();
        if self.audit.enabled {
            out.push(("audit.signing_key".to_string(), self.audit.signing_key.clone()));
        }
        if let Some(b) = self.auth.as_ref().and_then(|a| a.builtin.as_ref()) {
            let or = |p: &Option<PathBuf>, d: &str| self.path(&p.clone().unwrap_or_else(|| d.into()));
            out.push(("auth.builtin.key_file".into(), or(&b.key_file, "warden-data/signing-key.pk8")));
            out.push(("auth.builtin.users_file".into(), or(&b.users_file, "warden-data/users.toml")));
        }
        if let Some(t) = &self.listen.tls {
            out.push(("listen.tls.key_file".into(), t.key_file.clone()));
        }
        let mut c = self.clone();
        for (key, s) in c.secrets_mut() {
            if let Some(f) = &s.file {
                out.push((key, f.clone()));
            }
        }
        out
    }

    /// Resolve every secret reference now (reading each, keeping none): one line per reference
    /// that cannot be read, `file:line:col: key: why`. For `warden check`.
    pub fn check_secrets(&mut self) -> Vec<String> {
        self.secrets_mut()
            .into_iter()
            .filter_map(|(key, s)| {
                let e = s.resolve().err()?;
                Some(match s.location() {
                    Some(at) => format!("{at}: {key}: {e}"),
                    None => format!("{key}: {e}"),
                })
            })
            .collect()
    }

    /// `p` resolved against the config file's directory.
    pub fn path(&self, p: &Path) -> PathBuf {
        if p.is_absolute() {
            p.to_path_buf()
        } else {
            self.base_dir.join(p)
        }
    }

    /// Parse and validate text; `origin` names the source in messages.
    pub fn parse(text: &str, origin: &str) -> Result<Config, ConfigError> {
        let cfg: Config = toml::from_str(text).map_err(|e| {
            let (line, col) = e.span().map(|s| line_col(text, s.start)).unwrap_or((1, 1));
            ConfigError(format!("{origin}:{line}:{col}: {}", e.message().trim()))
        })?;
        cfg.validate().map_err(|m| ConfigError(format!("{origin}: {m}")))?;
        Ok(cfg)
    }

    /// Check the configuration as a whole (after parsing, or after a CLI override).
    pub fn validate(&self) -> Result<(), String> {
        if !self.listen.addr.ip().is_loopback() {
            let Some(auth) = &self.auth else {
                return Err(format!(
                    "listen.addr: refusing to bind non-loopback address {} because no authentication \
                     is configured; add [auth] or bind 127.0.0.1 or ::1",
                    self.listen.addr
                ));
            };
            if auth.resource.is_none() {
                return Err("auth.resource: required on a non-loopback bind (the public URL of /mcp)".into());
            }
            if self.listen.tls.is_none() && self.listen.trusted_proxies.is_empty() {
                return Err(format!(
                    "listen: refusing plain HTTP on non-loopback address {}; configure [listen.tls] or, \
                     behind a TLS-terminating proxy, listen.trusted_proxies",
                    self.listen.addr
                ));
            }
        }
        if let Some(auth) = &self.auth {
            auth.validate()?;
        }
        if self.listen.max_sessions == 0 || self.listen.max_sessions_per_principal == 0 {
            return Err("listen: max_sessions and max_sessions_per_principal must be at least 1".into());
        }
        crate::policy::compile_limits(self)?;
        let a = &self.audit;
        match &a.url {
            Some(u) if !(u.starts_with("postgres://") || u.starts_with("postgresql://")) => {
                return Err("audit.url: expected postgres://user@host:port/dbname".into())
            }
            None if a.password.is_some() => return Err("audit.password: only with url (PostgreSQL)".into()),
            _ => {}
        }
        if let Some(u) = &self.telemetry.traces_url {
            check_remote_url(u).map_err(|e| format!("telemetry.traces_url: {e}"))?;
        }
        let mut names = std::collections::BTreeSet::new();
        for f in &a.forward {
            let at = format!("audit.forward {:?}", f.name);
            if !valid_name(&f.name) || !names.insert(&f.name) {
                return Err(format!("{at}: name must be unique, 1-32 of [A-Za-z0-9_-]"));
            }
            check_remote_url(&f.url).map_err(|e| format!("{at}: url: {e}"))?;
            if f.batch == 0 || f.flush_ms == 0 || f.timeout_ms == 0 || f.spool_max_mb == 0 {
                return Err(format!("{at}: batch, flush_ms, timeout_ms and spool_max_mb must be at least 1"));
            }
        }
        if a.group_commit_ms > 100 {
            return Err("audit.group_commit_ms: at most 100".into());
        }
        if let Some(k) = &a.public_key {
            warden_audit::signing::parse_public_key(k).map_err(|e| format!("audit.public_key: {e}"))?;
        }
        if a.queue_capacity == 0 || a.checkpoint_every == 0 || a.checkpoint_secs == 0 {
            return Err("audit: queue_capacity, checkpoint_every and checkpoint_secs must be positive".into());
        }
        if a.instance.is_empty() || a.instance.len() > 64 || a.instance.chars().any(|c| c.is_control()) {
            return Err("audit.instance: 1 to 64 printable characters".into());
        }
        let st = &self.store;
        match st.backend {
            StoreBackend::Memory if st.url.is_some() || st.password.is_some() => {
                return Err("store: url and password are for backend = \"redis\"".into())
            }
            StoreBackend::Redis => {
                let url = st.url.as_deref().ok_or("store.url: required for backend = \"redis\"")?;
                if !(url.starts_with("redis://") || url.starts_with("rediss://")) {
                    return Err("store.url: expected redis://host:port or rediss://host:port".into());
                }
                if st.ca_file.is_some() && !st.url.as_deref().unwrap_or_default().starts_with("rediss://") {
                    return Err("store.ca_file: only for TLS (`rediss://` url)".into());
                }
                if !valid_name(&st.prefix) || st.timeout_ms == 0 {
                    return Err("store: prefix must be 1-32 of [A-Za-z0-9_-] and timeout_ms at least 1".into());
                }
            }
            _ => {}
        }
        let ap = &self.approval;
        if ap.wait_secs == 0 || ap.ttl_secs < ap.wait_secs {
            return Err("approval: wait_secs must be at least 1 and ttl_secs at least wait_secs".into());
        }
        if let Some(a) = &self.admin {
            if !a.addr.ip().is_loopback() {
                return Err("admin.addr: the admin API binds loopback only (reach it through SSH or a sidecar)".into());
            }
            if a.addr == self.listen.addr {
                return Err("admin.addr: must differ from listen.addr".into());
            }
            if a.token.env.is_some() == a.token.file.is_some() {
                return Err("admin.token: expected exactly one of env or file".into());
            }
        }
        if self.listen.max_body_bytes < 1024 || self.listen.max_json_depth < 8 {
            return Err("listen: max_body_bytes must be ≥ 1024 and max_json_depth ≥ 8".into());
        }
        let sep = &self.federation.separator;
        if sep.is_empty() || !sep.chars().all(is_tool_char) {
            return Err("federation.separator: expected one or more of [A-Za-z0-9_.-]".into());
        }
        if self.upstreams.is_empty() {
            return Err("upstream: expected at least one [[upstream]] table".into());
        }
        let mut names = std::collections::HashSet::new();
        let mut namespaces = std::collections::HashSet::new();
        for (i, u) in self.upstreams.iter().enumerate() {
            let at = format!("upstream[{i}]");
            if !valid_name(&u.name) {
                return Err(format!("{at}.name: expected 1-32 of [A-Za-z0-9_-], got {:?}", u.name));
            }
            if !names.insert(u.name.clone()) {
                return Err(format!("{at}.name: duplicate upstream name {:?}", u.name));
            }
            let ns = u.namespace();
            if !ns.is_empty() && !valid_name(ns) {
                return Err(format!("{at}.namespace: expected \"\" or 1-32 of [A-Za-z0-9_-]"));
            }
            if !ns.is_empty() && !namespaces.insert(ns.to_string()) {
                return Err(format!("{at}.namespace: {ns:?} is used by another upstream"));
            }
            match u.transport {
                Transport::Stdio => {
                    if u.command.as_deref().unwrap_or("").is_empty() {
                        return Err(format!("{at}.command: required for transport = \"stdio\""));
                    }
                    if u.sha256.as_ref().is_some_and(|d| d.len() != 64 || !d.bytes().all(|b| b.is_ascii_hexdigit())) {
                        return Err(format!("{at}.sha256: expected 64 hex digits"));
                    }
                    if u.sandbox.strict() {
                        let cmd = u.command.as_deref().unwrap_or("");
                        if let Some(why) = crate::upstream::program::unpinned_launcher(cmd, &u.args) {
                            return Err(format!("{at}: {why} (refused: sandbox.strict)"));
                        }
                    }
                    if u.url.is_some() || !u.secret_headers.is_empty() || u.oauth.is_some() {
                        return Err(format!("{at}: url/secret_headers/oauth are for transport = \"http\""));
                    }
                }
                Transport::Http => {
                    let url = u.url.as_deref().ok_or(format!("{at}.url: required for transport = \"http\""))?;
                    check_remote_url(url).map_err(|m| format!("{at}.url: {m}"))?;
                    if let Some(o) = &u.oauth {
                        check_remote_url(&o.token_url).map_err(|m| format!("{at}.oauth.token_url: {m}"))?;
                    }
                    if u.command.is_some() || !u.args.is_empty() || !u.env.is_empty() || !u.secret_env.is_empty() {
                        return Err(format!("{at}: command/args/env/secret_env are for transport = \"stdio\""));
                    }
                }
                Transport::Builtin => {
                    if u.command.is_some() || !u.args.is_empty() || u.url.is_some() || u.oauth.is_some() {
                        return Err(format!("{at}: command/args/url/oauth are not for transport = \"builtin\""));
                    }
                    if u.files.is_none() && u.sql.is_none() {
                        return Err(format!("{at}: transport = \"builtin\" needs [upstream.files] or [upstream.sql]"));
                    }
                    if !u.tenants.is_empty() {
                        return Err(format!("{at}.tenants: not supported for transport = \"builtin\""));
                    }
                    if let Some(f) = &u.files {
                        if f.roots.is_empty() {
                            return Err(format!("{at}.files.roots: at least one directory"));
                        }
                    }
                    if let Some(q) = &u.sql {
                        if q.tables.is_empty() && !q.raw_query {
                            return Err(format!("{at}.sql.tables: at least one table (or raw_query = true)"));
                        }
                        if q.max_rows == 0 || q.timeout_ms == 0 {
                            return Err(format!("{at}.sql: max_rows and timeout_ms must be at least 1"));
                        }
                        match (&q.database, &q.url) {
                            (Some(_), None) if q.password.is_none() => {}
                            (None, Some(url)) if url.starts_with("postgres://") || url.starts_with("postgresql://") => {
                            }
                            (None, Some(_)) => {
                                return Err(format!("{at}.sql.url: expected postgres://user@host:port/dbname"))
                            }
                            (Some(_), None) => return Err(format!("{at}.sql.password: only with url (PostgreSQL)")),
                            _ => return Err(format!("{at}.sql: exactly one of database (SQLite) or url (PostgreSQL)")),
                        }
                    }
                }
            }
            if u.transport != Transport::Builtin && (u.files.is_some() || u.sql.is_some()) {
                return Err(format!("{at}: [upstream.files] and [upstream.sql] are for transport = \"builtin\""));
            }
            for (k, s) in u.secret_env.iter().chain(u.secret_headers.iter()) {
                if s.env.is_some() == s.file.is_some() {
                    return Err(format!("{at}: secret {k:?}: expected exactly one of env or file"));
                }
            }
            if u.call_timeout_secs == 0 || u.connect_timeout_secs == 0 {
                return Err(format!("{at}: timeouts must be at least 1 second"));
            }
            if u.tenant_only && u.tenants.is_empty() {
                return Err(format!("{at}.tenant_only: needs at least one [upstream.tenants.<tenant>]"));
            }
            for (t, o) in &u.tenants {
                let at = format!("{at}.tenants.{t}");
                match u.transport {
                    Transport::Stdio if o.url.is_some() || !o.secret_headers.is_empty() => {
                        return Err(format!("{at}: url/secret_headers are for transport = \"http\""));
                    }
                    Transport::Http if o.args.is_some() || !o.env.is_empty() || !o.secret_env.is_empty() => {
                        return Err(format!("{at}: args/env/secret_env are for transport = \"stdio\""));
                    }
                    _ => {}
                }
                if let Some(url) = &o.url {
                    check_remote_url(url).map_err(|m| format!("{at}.url: {m}"))?;
                }
                for (k, s) in o.secret_env.iter().chain(o.secret_headers.iter()) {
                    if s.env.is_some() == s.file.is_some() {
                        return Err(format!("{at}: secret {k:?}: expected exactly one of env or file"));
                    }
                }
            }
        }
        crate::policy::compile_rules(self)?;
        crate::content::Content::new(self)?;
        Ok(())
    }
}

impl JwtIssuer {
    /// The default rules for `issuer`.
    pub fn with_defaults(issuer: &str) -> JwtIssuer {
        toml::from_str(&format!("issuer = {issuer:?}")).expect("defaults parse")
    }
}

impl Auth {
    fn validate(&self) -> Result<(), String> {
        if let Some(r) = &self.resource {
            let u = reqwest::Url::parse(r).map_err(|e| format!("auth.resource: not a URL: {e}"))?;
            if u.fragment().is_some() || !matches!(u.scheme(), "https" | "http") {
                return Err("auth.resource: expected an http(s) URL without a fragment".into());
            }
        }
        if self.issuers.is_empty()
            && self.introspection.is_none()
            && self.api_keys.is_empty()
            && self.builtin.is_none()
            && self.mtls_scopes.is_empty()
        {
            return Err("auth: no credential is accepted; configure jwt, introspection, api_key, builtin or \
                        mtls_scopes"
                .into());
        }
        for (i, j) in self.issuers.iter().enumerate() {
            check_remote_url(&j.issuer).map_err(|m| format!("auth.jwt[{i}].issuer: {m}"))?;
            if let Some(u) = &j.jwks_url {
                check_remote_url(u).map_err(|m| format!("auth.jwt[{i}].jwks_url: {m}"))?;
            }
            for a in &j.algorithms {
                if !default_algs().contains(a) {
                    return Err(format!(
                        "auth.jwt[{i}].algorithms: {a:?} is not accepted (asymmetric algorithms only: {})",
                        default_algs().join(", ")
                    ));
                }
            }
            if j.max_lifetime_secs == 0 || j.leeway_secs > 300 {
                return Err(format!("auth.jwt[{i}]: max_lifetime_secs must be ≥ 1 and leeway_secs ≤ 300"));
            }
        }
        if let Some(x) = &self.introspection {
            check_remote_url(&x.endpoint).map_err(|m| format!("auth.introspection.endpoint: {m}"))?;
        }
        let mut ids = std::collections::HashSet::new();
        for (i, k) in self.api_keys.iter().enumerate() {
            if !ids.insert(&k.id) {
                return Err(format!("auth.api_key[{i}].id: duplicate id {:?}", k.id));
            }
            let hex = k.hash.strip_prefix("sha256:").unwrap_or("");
            if hex.len() != 64 || !hex.bytes().all(|b| b.is_ascii_hexdigit()) {
                return Err(format!("auth.api_key[{i}].hash: expected sha256:<64 hex digits>"));
            }
            if let Some(e) = &k.expires {
                humantime::parse_rfc3339(e).map_err(|e| format!("auth.api_key[{i}].expires: {e}"))?;
            }
        }
        if let Some(b) = &self.builtin {
            if b.access_token_ttl_secs == 0 || b.access_token_ttl_secs > 3600 {
                return Err("auth.builtin.access_token_ttl_secs: expected 1..=3600".into());
            }
            if b.max_failed_logins == 0 {
                return Err("auth.builtin.max_failed_logins: expected at least 1".into());
            }
        }
        Ok(())
    }
}

impl Upstream {
    /// The namespace used for prefixing (`name` unless set).
    pub fn namespace(&self) -> &str {
        self.namespace.as_deref().unwrap_or(&self.name)
    }
}

impl SecretRef {
    /// Where the reference is written (`file:line:col`), when it came from a config file.
    pub fn location(&self) -> Option<&str> {
        match &self.at {
            SecretAt::Text(t) => Some(t),
            _ => None,
        }
    }

    /// Resolve the secret now. The error names the reference, never the value.
    pub fn resolve(&self) -> Result<String, String> {
        let raw = match (&self.env, &self.file) {
            (Some(var), _) => std::env::var(var).map_err(|_| format!("environment variable {var} is not set"))?,
            (_, Some(p)) => std::fs::read_to_string(p)
                .map_err(|e| format!("secret file {}: {e}", p.display()))?
                .trim_end_matches(['\n', '\r'])
                .to_string(),
            _ => return Err("empty secret reference".into()),
        };
        Ok(format!("{}{raw}", self.prefix))
    }
}

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
    let src = include_str!("config.rs");
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
        ("ContentConfig", "[content]"),
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
