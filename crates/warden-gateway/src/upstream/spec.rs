//! What Warden needs to (re)connect one upstream: its configured transport, secrets already
//! resolved, per-tenant variants, sandbox and limits.

use super::{builtin, oauth};
use crate::config::{self, Transport as Kind};
use parking_lot::Mutex;
use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

/// Everything needed to (re)connect an upstream, secrets already resolved.
#[derive(Clone)]
pub struct Spec {
    pub name: String,
    pub kind: Kind,
    pub command: String,
    pub args: Vec<String>,
    pub cwd: Option<std::path::PathBuf>,
    pub env: Vec<(String, String)>,
    pub url: String,
    pub headers: Vec<(String, String)>,
    /// OAuth client credentials (shared by all connections to this upstream).
    pub oauth: Option<Arc<oauth::ClientCredentials>>,
    /// `[upstream.oauth] mode = "exchange"`: each caller's token exchanged for this upstream's.
    pub exchange: Option<Arc<oauth::Exchanger>>,
    /// `[upstream.oauth] mode = "user"`: each user's own linked account (set by `reload.rs`,
    /// which holds the vault).
    pub user: Option<Arc<super::user::UserLink>>,
    pub connect_timeout: Duration,
    pub call_timeout: Duration,
    /// Per-tenant variants of this spec (their own instance or credentials).
    pub tenants: BTreeMap<String, Arc<Spec>>,
    /// Only tenants in `tenants` reach this upstream.
    pub tenant_only: bool,
    /// stdio: the sandbox the child runs in (`None`: none).
    pub sandbox: Option<warden_sandbox::Policy>,
    /// builtin: Warden's own tools (shared by every connection).
    pub builtin: Option<Arc<warden_tools::Builtin>>,
    /// Largest single message read from the upstream (a JSON body, an SSE event, a stdio line):
    /// bigger ones fail the call they answer instead of filling memory.
    pub max_message_bytes: usize,
    /// stdio: the pinned SHA-256 of the program, checked before every start.
    pub program_sha256: Option<String>,
    /// Requests it may send to the client (`client_requests`).
    pub client_requests: Vec<config::ClientRequest>,
    /// The revision spoken to it (`protocol`).
    pub protocol: config::UpstreamProtocol,
    /// `protocol = "auto"`: what the last successful connection found (true: stateless) and
    /// when, so later connections to a 2025 server skip the probe for [`DETECTED_TTL`].
    pub detected: Arc<Mutex<Option<(bool, std::time::Instant)>>>,
}

impl Spec {
    /// Resolve an upstream's config (reads secrets; the error names the missing reference only).
    /// `content` bounds what is read from it ([`config::ContentConfig::max_message_bytes`]).
    /// `links`: where user-mode upstreams keep each user's link.
    pub fn from_config(
        u: &config::Upstream,
        content: &config::ContentConfig,
        links: &Arc<super::user::Links>,
    ) -> Result<Spec, String> {
        let mut env: Vec<(String, String)> =
            u.env_allow.iter().filter_map(|k| std::env::var(k).ok().map(|v| (k.clone(), v))).collect();
        env.extend(u.env.iter().map(|(k, v)| (k.clone(), v.clone())));
        for (k, s) in &u.secret_env {
            env.push((k.clone(), s.resolve().map_err(|e| format!("upstream {}: {k}: {e}", u.name))?));
        }
        let mut headers = Vec::new();
        for (k, s) in &u.secret_headers {
            headers.push((k.clone(), s.resolve().map_err(|e| format!("upstream {}: header {k}: {e}", u.name))?));
        }
        Ok(Spec {
            name: u.name.clone(),
            kind: u.transport,
            command: u.command.clone().unwrap_or_default(),
            args: u.args.clone(),
            cwd: u.cwd.clone(),
            env,
            url: u.url.clone().unwrap_or_default(),
            headers,
            oauth: (u.oauth.as_ref())
                .filter(|o| o.mode != config::OAuthMode::User)
                .map(|o| oauth::ClientCredentials::new(o, &u.name).map(Arc::new))
                .transpose()?,
            exchange: (u.oauth.as_ref())
                .filter(|o| o.mode == config::OAuthMode::Exchange)
                .map(|o| oauth::Exchanger::new(o, &u.name).map(Arc::new))
                .transpose()?,
            user: (u.oauth.as_ref())
                .filter(|o| o.mode == config::OAuthMode::User)
                .map(|_| {
                    super::user::UserLink::new(u, u.url.as_deref().unwrap_or_default(), links.clone()).map(Arc::new)
                })
                .transpose()?,
            connect_timeout: Duration::from_secs(u.connect_timeout_secs),
            call_timeout: Duration::from_secs(u.call_timeout_secs),
            tenants: BTreeMap::new(),
            tenant_only: u.tenant_only,
            client_requests: u.client_requests.clone(),
            protocol: u.protocol,
            detected: Arc::new(Mutex::new(None)),
            sandbox: match u.transport {
                Kind::Stdio => u.sandbox.policy(u.cwd.as_deref()),
                _ => None,
            },
            builtin: match u.transport {
                Kind::Builtin => Some(Arc::new(builtin::open(u)?)),
                _ => None,
            },
            max_message_bytes: content.max_message_bytes(),
            program_sha256: u.sha256.clone(),
        })
        .and_then(|mut base| {
            let mut tenants = BTreeMap::new();
            for (t, o) in &u.tenants {
                let mut s = Spec { tenants: BTreeMap::new(), detected: Arc::new(Mutex::new(None)), ..base.clone() };
                let set = |list: &mut Vec<(String, String)>, k: &str, v: String| {
                    list.retain(|(x, _)| x != k);
                    list.push((k.to_string(), v));
                };
                for (k, v) in &o.env {
                    set(&mut s.env, k, v.clone());
                }
                for (k, r) in &o.secret_env {
                    set(&mut s.env, k, r.resolve().map_err(|e| format!("upstream {} tenant {t}: {k}: {e}", u.name))?);
                }
                for (k, r) in &o.secret_headers {
                    let v = r.resolve().map_err(|e| format!("upstream {} tenant {t}: header {k}: {e}", u.name))?;
                    set(&mut s.headers, k, v);
                }
                if let Some(a) = &o.args {
                    s.args = a.clone();
                }
                if let Some(url) = &o.url {
                    s.url = url.clone();
                    if s.user.is_some() {
                        s.user = Some(Arc::new(super::user::UserLink::new(u, url, links.clone())?));
                    }
                }
                tenants.insert(t.clone(), Arc::new(s));
            }
            base.tenants = tenants;
            Ok(base)
        })
    }

    /// The spec a principal of `tenant` connects with; `None` when it may not reach this upstream.
    pub fn for_tenant(&self, tenant: Option<&str>) -> Option<&Spec> {
        match tenant.and_then(|t| self.tenants.get(t)) {
            Some(s) => Some(s),
            None if self.tenant_only => None,
            None => Some(self),
        }
    }
}
