//! Keys within a sandboxed server's reach (issue 20 finding 14): Warden refuses to start when a
//! stdio upstream's sandbox would let it read one of Warden's own keys or secret files — the
//! audit signing key (it forges checkpoints), the built-in authorization server's key (it mints
//! `warden:admin` tokens), its users, the TLS key, and every secret given as a file.
//!
//! The default key files sit beside the config, so a server started from that directory (`cwd`),
//! or whose program lives there (its install prefix is granted), or a `read_only` grant over it,
//! would reach them when Warden is not root (the server runs as the same user).
//! Defends against: a compromised or malicious stdio server reading Warden's keys through the
//! paths its sandbox grants. Does not defend against: a server with the sandbox off (warned, not
//! refused: the operator chose it), secrets outside files (environment variables are not passed
//! to the server unless allowed), or writable grants over Warden's state (the pin file, the
//! audit log), which the operator's `read_write` declares.

use crate::config::{Config, Transport};

/// One line per (upstream, secret file) a sandboxed upstream could read; empty when none.
/// `warnings` gets one line per stdio upstream that runs without a sandbox.
pub fn exposed_secrets(cfg: &Config, warnings: &mut Vec<String>) -> Vec<String> {
    let secrets = cfg.secret_files();
    let files: Vec<std::path::PathBuf> = secrets.iter().map(|(_, p)| p.clone()).collect();
    let mut out = Vec::new();
    for u in cfg.upstreams.iter().filter(|u| u.transport == Transport::Stdio) {
        let Some(policy) = u.sandbox.policy(u.cwd.as_deref()) else {
            warnings.push(format!(
                "upstream {}: runs without a sandbox, so it can read every key and secret file Warden can",
                u.name
            ));
            continue;
        };
        let command = u.command.as_deref().unwrap_or_default();
        // The program as the child finds it: on the child's own PATH (its `env`, a tenant's
        // `env`, or Warden's when `env_allow` passes it), from its `cwd`; each variant checked.
        let inherited = u.env_allow.iter().any(|k| k == "PATH").then(|| std::env::var("PATH").ok()).flatten();
        let base = u.env.get("PATH").cloned().or(inherited);
        let mut paths = vec![base.clone()];
        paths.extend(u.tenants.values().filter_map(|t| t.env.get("PATH").cloned()).map(Some));
        let mut found = Vec::new();
        for path in paths {
            let program =
                super::program::resolve_for(command, path.as_deref().map(std::ffi::OsStr::new), u.cwd.as_deref())
                    .map(|p| p.display().to_string())
                    .unwrap_or_else(|| command.to_string());
            for real in warden_sandbox::exposed(&policy, &program, &files) {
                if !found.contains(&real) {
                    found.push(real);
                }
            }
        }
        for real in found {
            let what = secrets
                .iter()
                .find(|(_, p)| std::fs::canonicalize(p).unwrap_or_else(|_| p.clone()) == real || *p == real)
                .map_or("a secret file", |(k, _)| k.as_str());
            out.push(format!(
                "upstream {}: its sandbox can read {what} {} (its cwd, install prefix or a read_only/read_write grant \
                 contains it): move the file out of the server's readable paths, or the server out of its directory",
                u.name,
                real.display()
            ));
        }
    }
    out
}
