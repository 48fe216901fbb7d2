//! `[listen]` (with `[listen.tls]`) and `[admin]`: where Warden listens and how hard.

use super::*;

/// The client-facing listener (`/mcp`, `/healthz`, `/readyz`).
#[derive(Debug, Clone, Deserialize, Serialize)]
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
    /// Threads serving connections, each connection on one of them from start to end with a
    /// single-threaded runtime (fewer cross-thread wake-ups per call). 0: one per core (or
    /// `TOKIO_WORKER_THREADS` when set). Default 0.
    #[serde(default)]
    pub threads: usize,
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
#[derive(Debug, Clone, Deserialize, Serialize)]
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

/// The admin API (`[admin]`): kill switches and approvals.
#[derive(Debug, Clone, Deserialize, Serialize)]
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

impl Default for Listen {
    fn default() -> Self {
        toml::from_str("").expect("defaults parse")
    }
}
