//! `[[upstream]]` and `[federation]`: the servers behind Warden, how each is reached, sandboxed and spoken to.

use super::*;

/// Combining several upstreams.
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct Federation {
    /// Placed between an upstream's namespace and a tool or prompt name. Default `__`.
    #[serde(default = "default_sep")]
    pub separator: String,
    /// Protocol extensions (2026-07-28 `extensions` capability) relayed besides those Warden
    /// understands (`io.modelcontextprotocol/ui`, MCP Apps: its `ui://` resources are
    /// namespaced and authorized like any other). Any other extension is withheld from the
    /// capabilities announced to clients and from the client capabilities told to upstreams.
    #[serde(default)]
    pub extensions: Vec<String>,
}

/// How Warden talks to an upstream.
#[derive(Debug, Clone, Copy, Deserialize, Serialize, PartialEq, Eq)]
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
#[derive(Debug, Clone, Deserialize, Serialize)]
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
    #[serde(default, serialize_with = "mask::values")]
    pub env: BTreeMap<String, String>,
    /// stdio: variables whose values are secrets, read from Warden's environment or a file.
    #[serde(default)]
    pub secret_env: BTreeMap<String, SecretRef>,
    /// http: the server's MCP endpoint (`http://` only to loopback hosts, else `https://`).
    #[serde(serialize_with = "mask::opt_url")]
    pub url: Option<String>,
    /// http: headers sent on every request whose values are secrets (e.g. `Authorization`).
    #[serde(default)]
    pub secret_headers: BTreeMap<String, SecretRef>,
    /// http: OAuth for this upstream: Warden's own client credentials, or each caller's token
    /// exchanged for one of this upstream's (`mode = "exchange"`: the caller's token then goes to
    /// the upstream's authorization server, for the issuers in `subject_issuers` only). Clients'
    /// tokens never reach the upstream itself.
    pub oauth: Option<UpstreamOAuth>,
    /// Seconds to connect and complete `initialize`. Default 30.
    #[serde(default = "default_connect")]
    pub connect_timeout_secs: u64,
    /// Operator classification of this upstream's tools, by the upstream's tool name: one
    /// class or a list of them. `"read_only"` or `"destructive"` (it wins over the tool's
    /// annotations); `"untrusted_source"`: what it returns comes from people other than the
    /// caller (web pages, email, issues), and taints the session that reads it;
    /// `"exfiltration"`: it sends data out (network, email, shared places). A tainted
    /// session's calls to sinks (`exfiltration` or `destructive`) follow the rule's
    /// `when_tainted`. A web fetch: `["read_only", "untrusted_source", "exfiltration"]`.
    #[serde(default)]
    pub classify: BTreeMap<String, ToolClasses>,
    /// Believe this upstream's `readOnlyHint` for tools not in `classify`. Default false: an
    /// unclassified tool counts as destructive, whatever it claims. With it, session taint
    /// also goes by annotations: a read-only tool reaching the open world (`openWorldHint`,
    /// true unless it says otherwise) taints the session, and a tool not read-only is a sink.
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
#[derive(Debug, Clone, Deserialize, Serialize)]
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
#[derive(Debug, Clone, Copy, Deserialize, Serialize, PartialEq, Eq, Default)]
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
#[derive(Debug, Clone, Deserialize, Serialize)]
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
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct SqlConfig {
    /// A SQLite database file (relative to the config file), opened read-only. Either this or
    /// `url`.
    pub database: Option<PathBuf>,
    /// A PostgreSQL server, `postgres://user@host:port/dbname`; queries run in read-only
    /// transactions. Connect as a role that can read only what `tables` exposes. TLS as the
    /// URL's `sslmode` and `sslrootcert` say, as libpq's (default `prefer`; across a network,
    /// `verify-full` with `sslrootcert`).
    #[serde(serialize_with = "mask::opt_url")]
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

/// `[upstream.tenants.<tenant>]`: what differs for one tenant. Maps are merged over the
/// upstream's own (same key: the tenant's value wins).
#[derive(Debug, Clone, Default, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct TenantUpstream {
    /// http: this tenant's instance of the server.
    #[serde(serialize_with = "mask::opt_url")]
    pub url: Option<String>,
    /// stdio: arguments replacing the upstream's.
    pub args: Option<Vec<String>>,
    /// stdio: variables set to literal values.
    #[serde(default, serialize_with = "mask::values")]
    pub env: BTreeMap<String, String>,
    /// stdio: secret variables (this tenant's credentials).
    #[serde(default)]
    pub secret_env: BTreeMap<String, SecretRef>,
    /// http: secret headers (this tenant's credentials).
    #[serde(default)]
    pub secret_headers: BTreeMap<String, SecretRef>,
}

/// How the operator classifies a tool.
#[derive(Debug, Clone, Copy, Deserialize, Serialize, PartialEq, Eq)]
#[serde(rename_all = "snake_case")]
pub enum ToolClass {
    ReadOnly,
    Destructive,
    UntrustedSource,
    Exfiltration,
}

/// One class, or several (`classify`).
#[derive(Debug, Clone, Deserialize, Serialize, PartialEq, Eq)]
#[serde(untagged)]
pub enum ToolClasses {
    One(ToolClass),
    Many(Vec<ToolClass>),
}

impl ToolClasses {
    pub fn has(&self, c: ToolClass) -> bool {
        match self {
            ToolClasses::One(one) => *one == c,
            ToolClasses::Many(v) => v.contains(&c),
        }
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

impl Serialize for UpstreamProtocol {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        match self {
            UpstreamProtocol::Auto => s.serialize_str("auto"),
            UpstreamProtocol::Stateless(v) | UpstreamProtocol::Session(v) => s.serialize_str(v),
        }
    }
}

/// A request an upstream sends to the client.
#[derive(Debug, Clone, Copy, Deserialize, Serialize, PartialEq, Eq)]
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

/// Whose identity Warden presents to an HTTP upstream (`[upstream.oauth] mode`).
#[derive(Debug, Clone, Copy, Deserialize, Serialize, PartialEq, Eq, Default)]
#[serde(rename_all = "snake_case")]
pub enum OAuthMode {
    /// Warden's own: the client credentials grant, one token for every caller.
    #[default]
    Service,
    /// Each caller's own account at the upstream, linked once through the upstream's own OAuth
    /// flow (Warden the OAuth client, the user's browser signing in), kept in the `[vault]` and
    /// refreshed. A call before the link gets the link to open.
    User,
    /// Each caller's: its validated token exchanged (RFC 8693) at `token_url` for a token for
    /// this upstream, cached per caller until it expires. Warden's own connection (readiness,
    /// look-alike names) uses the client credentials grant of the same client.
    Exchange,
}

/// OAuth 2.1 against an upstream's authorization server: Warden's own client credentials, or
/// each caller's token exchanged (`mode`).
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct UpstreamOAuth {
    /// `"service"` (default), `"exchange"`, or `"user"`.
    #[serde(default)]
    pub mode: OAuthMode,
    /// The token endpoint (`https://`, or `http://` to loopback). Required for `service` and
    /// `exchange`; `user` finds it from the upstream (RFC 9728, RFC 8414) and takes none.
    #[serde(default, serialize_with = "mask::opt_url")]
    pub token_url: Option<String>,
    /// Warden's client id at the upstream's authorization server. Required for `service` and
    /// `exchange`; for `user`, a pre-registered client (else Warden registers itself).
    pub client_id: Option<String>,
    /// The client's secret (required with `client_id` for `service` and `exchange`; for `user`,
    /// absent for a public client).
    pub client_secret: Option<SecretRef>,
    /// Space-separated scopes to request. For `user`, the most a link asks for: scopes the
    /// upstream's challenge or metadata names beyond these are not asked (default: what the
    /// upstream names).
    pub scope: Option<String>,
    /// RFC 8707 resource indicator to request (the upstream's canonical URI).
    #[serde(serialize_with = "mask::opt_url")]
    pub resource: Option<String>,
    /// `mode = "user"`: the authorization server the upstream must name (its issuer, compared
    /// exactly). Required with `client_secret`, so that the secret only ever goes to it; without
    /// it, whichever server the upstream's metadata names is used.
    #[serde(default, serialize_with = "mask::opt_url")]
    pub issuer: Option<String>,
    /// `mode = "exchange"`: the issuers (`iss`) whose callers' tokens may be sent to
    /// `token_url` to be exchanged (required): the upstream's authorization server sees them,
    /// and a token of another issuer is refused rather than handed to it.
    #[serde(default)]
    pub subject_issuers: Vec<String>,
}

impl Default for Federation {
    fn default() -> Self {
        Federation { separator: default_sep(), extensions: Vec::new() }
    }
}

impl Upstream {
    /// The namespace used for prefixing (`name` unless set).
    pub fn namespace(&self) -> &str {
        self.namespace.as_deref().unwrap_or(&self.name)
    }
}

#[cfg(test)]
mod tests {
    /// An HTTP upstream to hang `[upstream.oauth]` on.
    const OK: &str = "[listen]\naddr = \"127.0.0.1:0\"\n[[upstream]]\nname = \"fix\"\ntransport = \"stdio\"\n\
                      command = \"f\"\n[[upstream]]\nname = \"remote\"\ntransport = \"http\"\n\
                      url = \"http://127.0.0.1:9/mcp\"\n";

    /// Issue 27: each mode's keys are checked at load, naming the key: `user` needs the vault,
    /// callers who sign in, and the issuer its secret may go to; `exchange` needs callers with
    /// tokens to exchange.
    #[test]
    fn upstream_oauth_modes_are_checked_at_load() {
        let oauth = |mode: &str| {
            format!(
                "{OK}[upstream.oauth]\nmode = {mode:?}\ntoken_url = \"http://127.0.0.1:9/token\"\nclient_id = \"w\"\n\
                 client_secret = {{ env = \"FIX_TOKEN\" }}\n"
            )
        };
        let e = super::Config::parse(&oauth("user"), "t.toml").unwrap_err().0;
        assert!(e.contains("token_url and subject_issuers are not for mode = \"user\""), "{e}");
        let user = |more: &str| format!("{OK}[upstream.oauth]\nmode = \"user\"\n{more}");
        let e = super::Config::parse(&user(""), "t.toml").unwrap_err().0;
        assert!(e.contains("[vault] with a key is required"), "{e}");
        let vault = "\n[vault]\nkey = { env = \"FIX_TOKEN\" }\n";
        let e = super::Config::parse(&format!("{}{vault}", user("")), "t.toml").unwrap_err().0;
        assert!(e.contains("[auth] is required"), "{e}");
        let auth = "[auth]\n[[auth.jwt]]\nissuer = \"https://idp.example\"\n";
        assert!(super::Config::parse(&format!("{}{vault}{auth}", user("")), "t.toml").is_ok());
        // A pre-registered secret goes only to the issuer named.
        let secret = "client_id = \"w\"\nclient_secret = { env = \"FIX_TOKEN\" }\n";
        let e = super::Config::parse(&format!("{}{vault}{auth}", user(secret)), "t.toml").unwrap_err().0;
        assert!(e.contains("oauth.issuer: required with client_secret"), "{e}");
        let named = format!("{secret}issuer = \"https://as.example\"\n");
        assert!(super::Config::parse(&format!("{}{vault}{auth}", user(&named)), "t.toml").is_ok());
        let e = super::Config::parse(&oauth("exchange"), "t.toml").unwrap_err().0;
        assert!(e.contains("needs callers with tokens to exchange"), "{e}");
        let with_issuer = format!("{}\n[auth]\n[[auth.jwt]]\nissuer = \"https://idp.example\"\n", oauth("exchange"));
        let e = super::Config::parse(&with_issuer, "t.toml").unwrap_err().0;
        assert!(e.contains("upstream[1].oauth.subject_issuers: required"), "{e}");
        let listed =
            with_issuer.replace("client_id = \"w\"", "client_id = \"w\"\nsubject_issuers = [\"https://idp.example\"]");
        assert!(super::Config::parse(&listed, "t.toml").is_ok());
        assert!(super::Config::parse(&oauth("service"), "t.toml").is_ok());
    }
}
