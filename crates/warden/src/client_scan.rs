//! `warden scan --clients` (issue 28): every MCP server the machine's clients already use
//! (`client_configs.rs`), checked before anything is put behind Warden.
//!
//! Per server, without starting it: an unpinned package launcher (`npx -y pkg`, `uvx pkg`: it
//! runs whatever the registry serves when it starts), secrets written inline (an `env` value,
//! a header, an argument that holds a key or token in the clear). Then each server that needs
//! no secret is started as `warden scan` starts one (stdio: sandboxed, reading what its
//! arguments and environment name; HTTP: one connection) and what it offers goes through the
//! poisoning scan and the look-alike check across all of them, with each definition's pin digest
//! in the report (`--json`: `servers[].pins`). A server that
//! needs a secret (inline, from the client's own prompt, or from a variable not set here) is
//! reported, not started.
//!
//! Defends against: starting an unknown server with the user's secrets in its environment
//! (not started); a scan that runs a server unconfined (sandboxed, best effort for unpinned
//! launchers, as `warden scan -- CMD` does); a project's file (a cloned repository's) starting
//! its servers, or granting them `~/.ssh` or the home directory (its servers start only with
//! `--project`; key stores are never granted).
//! Does not defend against: what a server does while listing its tools inside the sandbox (the
//! default sandbox denies it the network, so one that fetches its package first does not start;
//! the report says so, and such a failure counts in the exit status).

use crate::client_configs::{self, Entry, Server};
use serde_json::{json, Value};
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use warden_gateway::config::Config;

/// A value that names a secret rather than holding it: `${VAR}`, `${env:VAR}`, `${input:id}`,
/// `$VAR` (`VAR` in capitals: `$abc1` is a literal that starts with a dollar).
pub fn is_reference(v: &str) -> bool {
    let v = v.trim();
    let bare = |n: &str| {
        n.starts_with(|c: char| c.is_ascii_uppercase() || c == '_')
            && n.chars().all(|c| c.is_ascii_uppercase() || c.is_ascii_digit() || c == '_')
    };
    v.is_empty() || (v.starts_with("${") && v.ends_with('}')) || v.strip_prefix('$').is_some_and(bare)
}

/// What a reference names.
pub enum Reference {
    /// An environment variable.
    Env(String),
    /// A prompt of the client (`${input:id}`).
    Input(String),
}

/// The reference `v` is (as [`is_reference`] tells; a `Bearer ` prefix allowed), if any.
pub fn reference(v: &str) -> Option<Reference> {
    let v = v.trim();
    let v = v.strip_prefix("Bearer ").unwrap_or(v).trim();
    if v.is_empty() || !is_reference(v) {
        return None;
    }
    let n = v.strip_prefix("${").and_then(|r| r.strip_suffix('}')).or_else(|| v.strip_prefix('$'))?;
    Some(match n.strip_prefix("input:") {
        Some(id) => Reference::Input(id.to_string()),
        None => Reference::Env(n.strip_prefix("env:").unwrap_or(n).to_string()),
    })
}

/// A name that says its value is a secret.
pub fn secret_name(k: &str) -> bool {
    let k = k.to_ascii_uppercase().replace('-', "_");
    [
        "TOKEN",
        "SECRET",
        "PASS",
        "API_KEY",
        "APIKEY",
        "ACCESS_KEY",
        "PRIVATE_KEY",
        "CREDENTIAL",
        "AUTH",
        "DSN",
        "COOKIE",
        "SESSION",
    ]
    .iter()
    .any(|s| k.contains(s))
        || ["_KEY", "_PAT", "DATABASE_URL", "CONNECTION_STRING"].iter().any(|s| k.ends_with(s))
}

/// A URL that carries a credential: a password, or a query parameter named like a secret.
fn url_with_secret(v: &str) -> bool {
    let Ok(u) = reqwest::Url::parse(v.trim()) else { return false };
    u.password().is_some() || u.query_pairs().any(|(k, v)| secret_name(&k) && !is_reference(&v))
}

/// A header line (`Name: value`) whose value is a secret in the clear.
fn header_with_secret(line: &str) -> bool {
    line.split_once(':').is_some_and(|(n, v)| {
        let v = v.trim();
        let v = v.strip_prefix("Bearer ").or_else(|| v.strip_prefix("Basic ")).unwrap_or(v);
        (secret_name(n) || n.trim().eq_ignore_ascii_case("authorization")) && !is_reference(v)
    })
}

/// Secrets written in the clear in one server's entry: where each is (never its value), and
/// which arguments, env keys and headers hold one.
#[derive(Default)]
pub struct Inline {
    pub places: Vec<String>,
    /// Indices of the arguments that hold a secret (the whole argument, or its `=value`).
    pub args: std::collections::BTreeSet<usize>,
    pub env: std::collections::BTreeSet<String>,
    pub headers: std::collections::BTreeSet<String>,
    /// The URL holds a password or a secret query parameter.
    pub url: bool,
}

impl Inline {
    /// `args` with each secret replaced by `mask` (after its `--flag=`, when it has one).
    pub fn masked(&self, args: &[String], mask: &str) -> Vec<String> {
        (args.iter().enumerate())
            .map(|(i, a)| match (self.args.contains(&i), a.split_once('=')) {
                (false, _) => a.clone(),
                (true, Some((f, _))) if f.starts_with('-') => format!("{f}={mask}"),
                (true, _) => mask.to_string(),
            })
            .collect()
    }
}

/// The secrets written in the clear in `s`.
pub fn inline_secrets(s: &Server) -> Inline {
    let mut out = Inline::default();
    match s {
        Server::Stdio { env, args, .. } => {
            for (k, v) in env {
                if (secret_name(k) && !is_reference(v)) || url_with_secret(v) || header_with_secret(v) {
                    out.places.push(format!("env {k}"));
                    out.env.insert(k.clone());
                }
            }
            for (i, a) in args.iter().enumerate() {
                let next = args.get(i + 1).map(String::as_str);
                let flag = a.split('=').next().unwrap_or(a).trim_start_matches('-');
                let mut hit = |at: usize, what: String| {
                    if out.args.insert(at) {
                        out.places.push(what);
                    }
                };
                if let Some(f) = a.strip_prefix('-') {
                    let f = f.trim_start_matches('-');
                    match a.split_once('=') {
                        // `--api-key=sk…`
                        Some((_, v)) if secret_name(flag) && !is_reference(v) => {
                            hit(i, format!("argument {}", a.split('=').next().unwrap_or(a)))
                        }
                        // `--api-key sk…`, `-e TOKEN=…`, `--header "Authorization: Bearer …"`
                        None => match next {
                            Some(v) if secret_name(f) && !v.starts_with('-') && !is_reference(v) => {
                                hit(i + 1, format!("argument after {a}"))
                            }
                            Some(v)
                                if matches!(f, "e" | "env")
                                    && v.split_once('=').is_some_and(|(n, x)| secret_name(n) && !is_reference(x)) =>
                            {
                                hit(i + 1, format!("argument after {a} ({})", v.split('=').next().unwrap_or_default()))
                            }
                            Some(v) if matches!(f, "H" | "header") && header_with_secret(v) => {
                                hit(i + 1, format!("argument after {a}"))
                            }
                            _ => {}
                        },
                        _ => {}
                    }
                } else if url_with_secret(a) {
                    hit(i, format!("argument {} (a URL with a credential)", i + 1));
                } else if header_with_secret(a)
                    || a.split_once('=').is_some_and(|(n, v)| secret_name(n) && !n.contains(' ') && !is_reference(v))
                {
                    hit(i, format!("argument {}", i + 1));
                }
            }
        }
        Server::Http { url, headers } => {
            for (k, v) in headers {
                let named = secret_name(k) || k.eq_ignore_ascii_case("authorization");
                let value = v.strip_prefix("Bearer ").or_else(|| v.strip_prefix("Basic ")).unwrap_or(v);
                if named && !is_reference(value) {
                    out.places.push(format!("header {k}"));
                    out.headers.insert(k.clone());
                }
            }
            if url_with_secret(url) {
                out.places.push("url (a password or a secret query parameter)".into());
                out.url = true;
            }
        }
    }
    out
}

/// What a server runs or reaches, its inline secrets masked: for reports.
pub fn shown(s: &Server) -> String {
    let secrets = inline_secrets(s);
    match s {
        Server::Stdio { command, args, .. } => {
            format!("{command} {}", secrets.masked(args, "***").join(" ")).trim().to_string()
        }
        Server::Http { url, .. } => warden_gateway::config::mask::mask_url(url),
    }
}

/// Secrets the server would need from elsewhere: references to variables not set here, and
/// the client's own prompts (`${input:…}`).
fn needed(s: &Server) -> Vec<String> {
    let values: Vec<&String> = match s {
        Server::Stdio { env, .. } => env.values().collect(),
        Server::Http { headers, .. } => headers.values().collect(),
    };
    let mut out = Vec::new();
    for v in values {
        match reference(v) {
            Some(Reference::Input(id)) => out.push(format!("the client's prompt input:{id}")),
            Some(Reference::Env(var)) if std::env::var_os(&var).is_none() => out.push(format!("${var}")),
            _ => {}
        }
    }
    out
}

/// A name Warden's config takes (1–32 of `[A-Za-z0-9_-]`), unique among `taken`.
pub fn upstream_name(name: &str, taken: &mut Vec<String>) -> String {
    let mut base: String =
        name.chars().map(|c| if c.is_ascii_alphanumeric() || c == '-' || c == '_' { c } else { '-' }).collect();
    base.truncate(28);
    if base.is_empty() {
        base = "server".into();
    }
    let mut n = base.clone();
    let mut i = 2;
    while taken.contains(&n) {
        n = format!("{base}-{i}");
        i += 1;
    }
    taken.push(n.clone());
    n
}

/// Where keys live: never granted to a server because its entry names them.
const SENSITIVE: &[&str] =
    &[".ssh", ".aws", ".gnupg", ".kube", ".docker", ".netrc", ".password-store", ".config/gcloud", ".azure"];

/// Paths a stdio server's arguments and environment name that exist here: what it may read.
/// Never `/`, the home directory itself or one of its key stores (`~/.ssh`, `~/.aws`, …): an
/// entry (a project's `.mcp.json` from a cloned repository, say) does not grant those.
pub fn named_paths(s: &Server) -> Vec<PathBuf> {
    let Server::Stdio { args, env, cwd, .. } = s else { return vec![] };
    let home = std::env::var_os("HOME").map(PathBuf::from);
    let sensitive = |p: &Path| {
        p.parent().is_none()
            || home.as_ref().is_some_and(|h| h.starts_with(p) || SENSITIVE.iter().any(|k| p.starts_with(h.join(k))))
    };
    let mut out: Vec<PathBuf> = Vec::new();
    for v in args.iter().chain(env.values()).chain(cwd.iter()) {
        let v = v.split_once('=').map_or(v.as_str(), |(_, r)| r);
        let Ok(p) = Path::new(v).canonicalize() else { continue };
        if Path::new(v).is_absolute() && !sensitive(&p) && !out.contains(&p) {
            out.push(p);
        }
    }
    out
}

/// The `[[upstream]]` a server is scanned as (no secret in it: only servers that need none are
/// started).
pub fn upstream_toml(name: &str, s: &Server) -> String {
    let q = crate::client_configs::toml_str;
    match s {
        Server::Http { url, .. } => {
            format!("[[upstream]]\nname = {}\ntransport = \"http\"\nurl = {}\n", q(name), q(url))
        }
        Server::Stdio { command, args, env, cwd } => {
            let strict = warden_gateway::upstream::program::unpinned_launcher(command, args).is_none();
            let list = |v: &[String]| v.iter().map(|a| q(a)).collect::<Vec<_>>().join(", ");
            let env: Vec<String> = env.iter().map(|(k, v)| format!("{} = {}", q(k), q(v))).collect();
            let paths: Vec<String> = named_paths(s).iter().map(|p| p.display().to_string()).collect();
            let cwd = cwd.as_ref().map(|c| format!("cwd = {}\n", q(c))).unwrap_or_default();
            format!(
                "[[upstream]]\nname = {}\ntransport = \"stdio\"\ncommand = {}\nargs = [{}]\n{cwd}env = {{ {} }}\n\
                 [upstream.sandbox]\nread_only = [{}]\nstrict = {strict}\n",
                q(name),
                q(command),
                list(args),
                env.join(", "),
                list(&paths)
            )
        }
    }
}

/// Whether a server starts here without a secret (none inline, none to be found elsewhere).
pub fn startable(s: &Server) -> bool {
    inline_secrets(s).places.is_empty() && needed(s).is_empty()
}

/// Each tool's and prompt's pin digest (what `warden pin` would pin; a later scan shows a
/// changed definition as a changed digest).
fn pins_of(d: &warden_gateway::upstream::Definitions) -> Value {
    use warden_gateway::registry::{pin_digest, PinKind};
    let of = |kind: PinKind, list: &[Value]| -> serde_json::Map<String, Value> {
        (list.iter())
            .filter_map(|item| Some((item.get("name")?.as_str()?.to_string(), json!(pin_digest(kind, item)))))
            .collect()
    };
    json!({"tools": of(PinKind::Tool, &d.tools), "prompts": of(PinKind::Prompt, &d.prompts)})
}

/// `warden scan --clients` / `--client-config FILE…`: the number of findings, unreadable files
/// and servers that did not start. `project`: also start the servers of the current directory's
/// project files (a cloned repository's `.mcp.json` is someone else's: listed and checked, not
/// started, unless asked).
pub async fn scan(files: &[PathBuf], as_json: bool, project: bool) -> anyhow::Result<usize> {
    let cwd = std::env::current_dir().ok();
    // Files named on the command line are the user's choice; found ones may be a project's.
    let files_were_found = files.is_empty();
    let files = if files.is_empty() { crate::client_import::known_files() } else { files.to_vec() };
    let mut errors: Vec<String> = Vec::new();
    let mut entries: Vec<Entry> = Vec::new();
    for f in &files {
        match client_configs::read(f) {
            Ok(e) => entries.extend(e),
            Err(e) => errors.push(e),
        }
    }
    let mut report: Vec<Value> = Vec::new();
    let mut servers: Vec<Value> = Vec::new();
    let mut taken = Vec::new();
    let mut started = String::new();
    let mut by_name: BTreeMap<String, usize> = BTreeMap::new();
    for (i, e) in entries.iter().enumerate() {
        let name = upstream_name(&e.name, &mut taken);
        let mut finding = |rule: &str, place: String| {
            report.push(json!({"server": name, "kind": "server", "name": e.name, "rule": rule, "place": place}));
        };
        if let Server::Stdio { command, args, .. } = &e.server {
            if let Some(why) = warden_gateway::upstream::program::unpinned_launcher(command, args) {
                finding("supply_chain.unpinned_launcher", why);
            }
        }
        let inline = inline_secrets(&e.server).places;
        for w in &inline {
            finding("secret.inline", format!("{w} holds a secret in the clear in {}", e.file.display()));
        }
        let mut needs = needed(&e.server);
        let of_project = cwd.as_ref().is_some_and(|d| e.file.starts_with(d)) && files_were_found;
        if of_project && !project && needs.is_empty() {
            needs.push("--project (a project's own file: its servers start only when asked)".into());
        }
        let start = inline.is_empty() && needs.is_empty();
        let transport = if matches!(e.server, Server::Stdio { .. }) { "stdio" } else { "http" };
        let target = shown(&e.server);
        servers.push(json!({"client": e.client.name(), "file": e.file, "name": e.name, "upstream": name,
                            "transport": transport, "target": target.trim(),
                            "started": start, "needs": needs, "inline_secrets": inline}));
        if start {
            // Each entry checked alone: one that Warden's config refuses is reported, the others go on.
            let one = upstream_toml(&name, &e.server);
            match Config::parse(&one, "client configs") {
                Ok(_) => {
                    started.push_str(&one);
                    by_name.insert(name, i);
                }
                Err(err) => {
                    if let Some(s) = servers.last_mut() {
                        s["error"] = json!(err.0);
                    }
                }
            }
        }
    }
    // The servers that need no secret, as `warden scan --config` would read them.
    if !started.is_empty() {
        let cfg = Config::parse(&started, "client configs").map_err(|e| anyhow::anyhow!(e.0))?;
        let read = crate::pins::read_each(&cfg).await?;
        let mut ok = Vec::new();
        for (name, d) in read {
            let at = by_name.get(&name).copied();
            match d {
                Ok(d) => {
                    if let Some(s) = at.and_then(|i| servers.get_mut(i)) {
                        s["offers"] =
                            json!({"tools": d.tools.len(), "prompts": d.prompts.len(), "resources": d.resources.len()});
                        s["pins"] = pins_of(&d);
                    }
                    ok.push((name, d));
                }
                Err(e) => {
                    if let Some(s) = at.and_then(|i| servers.get_mut(i)) {
                        s["error"] = json!(e);
                    }
                }
            }
        }
        report.extend(crate::pins::findings(&cfg, &ok)?);
    }
    if as_json {
        let out = json!({"files": files, "servers": servers, "findings": report, "errors": errors});
        println!("{}", serde_json::to_string_pretty(&out)?);
    } else {
        println!("{} client config file(s), {} server(s)", files.len(), servers.len());
        println!("| client | server | transport | target | scanned |");
        println!("|---|---|---|---|---|");
        for s in &servers {
            let t = |k: &str| s[k].as_str().unwrap_or_default().to_string();
            let scanned = match (&s["offers"], &s["error"], s["started"].as_bool()) {
                (Value::Object(o), _, _) => format!("{} tool(s)", o["tools"]),
                (_, Value::String(e), _) => format!("did not start: {e}"),
                (_, _, Some(false)) => {
                    let list = |k: &str| {
                        s[k].as_array().map(|a| a.iter().filter_map(Value::as_str).collect::<Vec<_>>().join(", "))
                    };
                    match (list("inline_secrets").filter(|l| !l.is_empty()), list("needs")) {
                        (Some(inline), _) => format!("not started: a secret is written inline ({inline})"),
                        (None, needs) => format!("not started: needs {}", needs.unwrap_or_default()),
                    }
                }
                _ => String::new(),
            };
            println!("| {} | {} | {} | {} | {scanned} |", t("client"), t("name"), t("transport"), t("target"));
        }
        for e in &errors {
            println!("unreadable: {e}");
        }
        crate::pins::print_findings(&report);
        println!("{} finding(s)", report.len());
    }
    let failed = servers.iter().filter(|s| s["error"].is_string()).count();
    Ok(report.len() + errors.len() + failed)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn secrets_in_the_clear_are_told_from_references() {
        let stdio = |env: &[(&str, &str)], args: &[&str]| Server::Stdio {
            command: "x".into(),
            args: args.iter().map(|a| a.to_string()).collect(),
            env: env.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect(),
            cwd: None,
        };
        let s = stdio(
            &[
                ("GITHUB_PERSONAL_ACCESS_TOKEN", "ghp_abc"),
                ("API_KEY", "${input:key}"),
                ("OPENAI_API_KEY", "$OPENAI"),
                ("LOG_LEVEL", "debug"),
            ],
            &["--api-key=sk-123", "--token", "t0k", "--port", "1"],
        );
        assert_eq!(
            inline_secrets(&s).places,
            vec!["env GITHUB_PERSONAL_ACCESS_TOKEN", "argument --api-key", "argument after --token"]
        );
        assert_eq!(shown(&s), "x --api-key=*** --token *** --port 1");
        // Other shapes: docker's `-e NAME=value`, a header argument, a URL with a password, a
        // literal that starts with a dollar.
        let more = stdio(
            &[("DB_PASS", "$abc123"), ("DATABASE_URL", "${DB}")],
            &["-e", "GITHUB_TOKEN=ghp_x", "-H", "Authorization: Bearer abc", "mysql://u:p@h/db", "-e", "LOG=1"],
        );
        let found = inline_secrets(&more);
        assert_eq!(found.args.iter().copied().collect::<Vec<_>>(), vec![1, 3, 4], "{:?}", found.places);
        assert!(found.env.contains("DB_PASS") && !found.env.contains("DATABASE_URL"));
        let h = Server::Http {
            url: "https://x".into(),
            headers: [
                ("Authorization".to_string(), "Bearer ${env:T}".to_string()),
                ("X-Api-Key".to_string(), "k1".to_string()),
            ]
            .into(),
        };
        assert_eq!(inline_secrets(&h).places, vec!["header X-Api-Key"]);
        assert!(needed(&stdio(&[("K", "${input:key}")], &[]))[0].contains("input:key"));
    }

    #[test]
    fn names_become_unique_config_names() {
        let mut taken = vec![];
        assert_eq!(upstream_name("my server", &mut taken), "my-server");
        assert_eq!(upstream_name("my server", &mut taken), "my-server-2");
        assert_eq!(upstream_name("", &mut taken), "server");
    }
}
