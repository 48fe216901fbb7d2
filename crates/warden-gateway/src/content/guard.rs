//! Argument guards: one check on one argument of the matching tools (paths, SQL, command-line
//! values, URLs, URL path segments, free text), compiled once from `[[guard]]` and run after the schema. What each
//! check defends against is in `warden_policy::guards`.

use super::globs;
use crate::config::{GuardConfig, GuardKind};
use std::path::{Path, PathBuf};
use std::time::Duration;
use warden_policy::guards::{self, Refusal, SqlPolicy, UrlPolicy};
use warden_policy::rules::Glob;

pub(super) struct Guard {
    pub server: Glob,
    pub tools: Vec<Glob>,
    pub pointer: String,
    pub required: bool,
    check: Check,
    /// `guard.path`, `guard.sql`, … (audit findings, metrics).
    pub label: &'static str,
}

enum Check {
    Path { roots: Vec<PathBuf>, resolve: bool, relative: bool },
    Sql(SqlPolicy),
    Argv,
    Url { policy: UrlPolicy, resolve: bool },
    Segment,
    Text(f32),
}

pub(super) fn guard(g: &GuardConfig, threshold: f32, base: &std::path::Path) -> Result<Guard, String> {
    if g.tools.is_empty() {
        return Err("tools: at least one tool name (or glob)".into());
    }
    let pointer = if g.argument.starts_with('/') { g.argument.clone() } else { format!("/{}", g.argument) };
    let check = match g.kind {
        GuardKind::Path => {
            if g.roots.is_empty() {
                return Err("roots: a path guard needs at least one root".into());
            }
            let mut roots = Vec::new();
            for r in &g.roots {
                let r = if r.is_absolute() { r.clone() } else { base.join(r) };
                // Canonical when it exists, so symlinked roots (/tmp on some systems) compare.
                roots.push(std::fs::canonicalize(&r).unwrap_or(r));
            }
            Check::Path { roots, resolve: g.resolve_symlinks, relative: g.allow_relative }
        }
        GuardKind::Sql => {
            if !["", "generic", "sqlite", "postgres", "postgresql", "mysql"].contains(&g.dialect.as_str()) {
                return Err(format!("dialect: unknown {:?}", g.dialect));
            }
            let lower = |v: &[String]| v.iter().map(|s| s.to_lowercase()).collect();
            Check::Sql(SqlPolicy {
                dialect: g.dialect.clone(),
                tables: lower(&g.tables),
                columns: lower(&g.columns),
                functions: lower(&g.functions),
            })
        }
        GuardKind::Argv => Check::Argv,
        GuardKind::Url => Check::Url {
            policy: UrlPolicy { allow_http: g.allow_http, hosts: g.hosts.iter().map(|h| h.to_lowercase()).collect() },
            resolve: g.resolve,
        },
        GuardKind::Segment => Check::Segment,
        GuardKind::Text => Check::Text(threshold),
    };
    let label = match g.kind {
        GuardKind::Path => "guard.path",
        GuardKind::Sql => "guard.sql",
        GuardKind::Argv => "guard.argv",
        GuardKind::Url => "guard.url",
        GuardKind::Segment => "guard.segment",
        GuardKind::Text => "guard.text",
    };
    Ok(Guard { server: Glob::new(&g.server), tools: globs(&g.tools), pointer, required: g.required, check, label })
}

impl Guard {
    /// Check one value; `Some` is the value to forward instead (a relative path made absolute).
    pub async fn run(&self, v: &str) -> Result<Option<String>, Refusal> {
        match &self.check {
            Check::Path { roots, resolve, relative } => {
                let p = if *relative { guards::path_or_relative(v, roots)? } else { guards::path(v, roots)? };
                if *resolve {
                    guards::resolve_links(&p, roots)?;
                }
                Ok((!Path::new(v).is_absolute()).then(|| p.display().to_string()))
            }
            Check::Sql(p) => guards::sql(v, p).map(|()| None),
            Check::Argv => guards::argv(v).map(|()| None),
            Check::Segment => guards::segment(v).map(|()| None),
            Check::Text(t) => guards::text(v, *t).map(|()| None),
            Check::Url { policy, resolve } => {
                let Some(host) = guards::url(v, policy)? else { return Ok(None) };
                if !resolve {
                    return Ok(None);
                }
                let addrs = tokio::time::timeout(Duration::from_secs(3), tokio::net::lookup_host((host.as_str(), 443)))
                    .await
                    .map_err(|_| Refusal("URL host did not resolve in time"))?
                    .map_err(|_| Refusal("URL host does not resolve"))?;
                let mut any = false;
                for a in addrs {
                    any = true;
                    if !warden_policy::net::is_public_ip(a.ip()) {
                        return Err(Refusal("URL host resolves to a private, loopback or link-local address"));
                    }
                }
                if any {
                    Ok(None)
                } else {
                    Err(Refusal("URL host does not resolve"))
                }
            }
        }
    }
}
