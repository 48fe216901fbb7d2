//! `warden import FILE… [--out warden.toml]` (issue 28): a Warden config from the servers of MCP
//! client config files (`client_configs.rs`), then `warden check` on it.
//!
//! - A local server becomes a sandboxed stdio upstream that may read the absolute paths its
//!   arguments and environment name (best effort when it is an unpinned package launcher, which
//!   a strict sandbox refuses to start; the finding says so).
//! - A secret is never copied: an inline one, a `${VAR}` reference or a client prompt
//!   (`${input:id}`) becomes `secret_env` / `secret_headers` `{ env = "VAR" }` (the inline
//!   value must be put in that variable where Warden runs).
//! - A remote server becomes an HTTP upstream.
//! - No rule allows anything (deny by default); each server gets a commented suggestion. When
//!   the server could be started here without a secret, the suggestion names its tools:
//!   read-only ones (by annotation, else by a reading name: `get_…`, `list_…`) allowed,
//!   destructive ones held for the user's approval.

use crate::client_configs::{self, Entry, Server};
use serde_json::Value;
use std::fmt::Write as _;
use std::path::{Path, PathBuf};

use client_configs::toml_str as q;

/// The variable a reference names: `${VAR}`, `${env:VAR}`, `$VAR` → `VAR`; `${input:id}` → `ID`
/// (upper, `-` as `_`).
fn variable(v: &str) -> Option<String> {
    use crate::client_scan::Reference;
    let n = match crate::client_scan::reference(v)? {
        Reference::Input(id) => id.to_ascii_uppercase().replace(['-', '.', ' '], "_"),
        Reference::Env(n) => n,
    };
    (!n.is_empty() && n.chars().all(|c| c.is_ascii_alphanumeric() || c == '_')).then_some(n)
}

/// The variable an inline secret of `key` moves to.
fn variable_for(upstream: &str, key: &str) -> String {
    let clean = |s: &str| s.to_ascii_uppercase().replace(|c: char| !c.is_ascii_alphanumeric(), "_");
    format!("{}_{}", clean(upstream), clean(key))
}

/// Text made safe for a `#` comment line: control characters (a newline would end the comment
/// and start configuration) become spaces.
fn comment(s: &str) -> String {
    s.chars().map(|c| if c.is_control() { ' ' } else { c }).collect()
}

/// A URL without what made it a secret: the user's password, and secret query parameters.
fn without_credentials(url: &str) -> String {
    let Ok(mut u) = reqwest::Url::parse(url) else { return url.to_string() };
    let _ = u.set_password(None);
    let kept: Vec<(String, String)> = (u.query_pairs().into_owned())
        .filter(|(k, v)| !crate::client_scan::secret_name(k) || crate::client_scan::is_reference(v))
        .collect();
    if u.query().is_some() {
        if kept.is_empty() {
            u.set_query(None);
        } else {
            u.query_pairs_mut().clear().extend_pairs(kept);
        }
    }
    u.to_string()
}

/// One `[[upstream]]` block for `e` named `name`, and notes for the reader. No secret written in
/// the clear in the client's file is copied: each becomes a reference or a placeholder.
fn upstream_block(name: &str, e: &Entry, out: &mut String) {
    let inline = crate::client_scan::inline_secrets(&e.server);
    let _ =
        writeln!(out, "\n# {} — {} ({})", comment(&e.name), e.client.name(), comment(&e.file.display().to_string()));
    let _ = writeln!(out, "[[upstream]]\nname = {}", q(name));
    match &e.server {
        Server::Stdio { command, args, env, cwd } => {
            let launcher = warden_gateway::upstream::program::unpinned_launcher(command, args);
            let args = inline.masked(args, "SECRET-REMOVED");
            let list = |v: &[String]| v.iter().map(|a| q(a)).collect::<Vec<_>>().join(", ");
            for w in inline.places.iter().filter(|w| w.starts_with("argument")) {
                let _ = writeln!(
                    out,
                    "# {}: a secret in the clear in the client's file, not copied (SECRET-REMOVED): give it \
                     to the server another way (an environment variable in secret_env, if it reads one)",
                    comment(w)
                );
            }
            let _ = writeln!(out, "transport = \"stdio\"\ncommand = {}\nargs = [{}]", q(command), list(&args));
            if let Some(c) = cwd {
                let _ = writeln!(out, "cwd = {}", q(c));
            }
            let mut plain = Vec::new();
            let mut secret = Vec::new();
            for (k, v) in env {
                match (variable(v), inline.env.contains(k)) {
                    (Some(var), _) => secret.push(format!("{} = {{ env = {} }}", q(k), q(&var))),
                    (None, true) => {
                        let var = variable_for(name, k);
                        let _ = writeln!(
                            out,
                            "# {} was written in the clear in the client's file: put it in ${var} where Warden runs",
                            comment(k)
                        );
                        secret.push(format!("{} = {{ env = {} }}", q(k), q(&var)));
                    }
                    (None, false) => plain.push(format!("{} = {}", q(k), q(v))),
                }
            }
            if !plain.is_empty() {
                let _ = writeln!(out, "env = {{ {} }}", plain.join(", "));
            }
            if !secret.is_empty() {
                let _ = writeln!(out, "secret_env = {{ {} }}", secret.join(", "));
            }
            let paths: Vec<String> =
                crate::client_scan::named_paths(&e.server).iter().map(|p| p.display().to_string()).collect();
            let _ = writeln!(out, "[upstream.sandbox]\nread_only = [{}]", list(&paths));
            match launcher {
                Some(why) => {
                    let _ = writeln!(
                        out,
                        "# {}; until then it runs best effort (a strict sandbox refuses it)\nstrict = false",
                        comment(&why)
                    );
                }
                None => {
                    let _ = writeln!(out, "strict = true");
                }
            }
        }
        Server::Http { url, headers } => {
            if inline.url {
                let _ = writeln!(
                    out,
                    "# the URL held a credential in the client's file: removed (give it as a secret header)"
                );
            }
            let _ = writeln!(out, "transport = \"http\"\nurl = {}", q(&without_credentials(url)));
            let mut secret = Vec::new();
            for (k, v) in headers {
                match variable(v) {
                    Some(var) if v.trim().starts_with("Bearer ") => {
                        let _ = writeln!(
                            out,
                            "# {}: \"Bearer ${var}\" in the client's file: put the whole value in ${var}_HEADER",
                            comment(k)
                        );
                        secret.push(format!("{} = {{ env = {} }}", q(k), q(&format!("{var}_HEADER"))));
                    }
                    Some(var) => secret.push(format!("{} = {{ env = {} }}", q(k), q(&var))),
                    None => {
                        let var = variable_for(name, k);
                        let _ = writeln!(
                            out,
                            "# header {} was written in the client's file: put its value in ${var}",
                            comment(k)
                        );
                        secret.push(format!("{} = {{ env = {} }}", q(k), q(&var)));
                    }
                }
            }
            if !secret.is_empty() {
                let _ = writeln!(out, "secret_headers = {{ {} }}", secret.join(", "));
            }
        }
    }
}

/// The commented rule suggestion for upstream `name`, from its tools when they are known.
fn suggestion(name: &str, tools: Option<&[Value]>, out: &mut String) {
    let _ = writeln!(out, "\n# Rules for {name}: nothing is allowed until a rule says so. A suggestion:");
    let Some(tools) = tools else {
        let _ = writeln!(
            out,
            "# [[rule]]\n# id = {}\n# servers = [{}]\n# tools = [\"*\"]",
            q(&format!("{name}-all")),
            q(name)
        );
        let _ = writeln!(out, "# (its tools were not listed here: it needs a secret, or did not start)");
        return;
    };
    let hint = |t: &Value, h: &str| t.pointer(&format!("/annotations/{h}")).and_then(Value::as_bool);
    // No annotation: a name that reads (`get_…`, `list_…`, `search…`) counts as read-only.
    let reads_by_name = |t: &Value| {
        let n = t.get("name").and_then(Value::as_str).unwrap_or_default().to_ascii_lowercase();
        ["get", "list", "read", "search", "find", "describe", "show", "query", "fetch", "view", "lookup"]
            .iter()
            .any(|p| n.strip_prefix(p).is_some_and(|r| r.is_empty() || r.starts_with(['_', '-'])))
    };
    let read_only_hint = |t: &Value| hint(t, "readOnlyHint").unwrap_or_else(|| reads_by_name(t));
    let names = |pick: &dyn Fn(&Value) -> bool| -> Vec<String> {
        (tools.iter().filter(|t| pick(t))).filter_map(|t| t.get("name").and_then(Value::as_str)).map(q).collect()
    };
    let read_only = names(&|t| read_only_hint(t));
    let destructive = names(&|t| !read_only_hint(t) && hint(t, "destructiveHint") != Some(false));
    let other = names(&|t| !read_only_hint(t) && hint(t, "destructiveHint") == Some(false));
    for (id, list, extra) in [
        ("read", &read_only, "# (read-only by its annotations, or by its name when it has none)"),
        ("write", &other, "# (changes things, not destructive by its annotations)"),
        ("destructive", &destructive, "# (may be destructive: held for the user's approval)"),
    ] {
        if list.is_empty() {
            continue;
        }
        let _ = writeln!(
            out,
            "{extra}\n# [[rule]]\n# id = {}\n# servers = [{}]\n# tools = [{}]",
            q(&format!("{name}-{id}")),
            q(name),
            list.join(", ")
        );
        if id == "destructive" {
            let _ = writeln!(out, "# approval = \"user\"");
        }
    }
}

/// This machine's known client files (`$HOME`'s and the current directory's).
pub fn known_files() -> Vec<PathBuf> {
    let home = std::env::var_os("HOME").map(PathBuf::from).unwrap_or_default();
    client_configs::known_files(&home, std::env::current_dir().ok().as_deref())
}

/// `warden import`: write the config from `files` (`files_were_found`: this machine's known
/// files, not named by the user).
pub async fn import(files: &[PathBuf], out_path: &Path, files_were_found: bool) -> anyhow::Result<()> {
    anyhow::ensure!(!out_path.exists(), "{} exists: not overwritten (choose another --out)", out_path.display());
    let mut entries: Vec<Entry> = Vec::new();
    for f in files {
        match client_configs::read(f) {
            Ok(e) => entries.extend(e),
            Err(e) => eprintln!("skipped: {e}"),
        }
    }
    anyhow::ensure!(!entries.is_empty(), "no MCP server in {} file(s)", files.len());
    let mut text = String::from(
        "# Written by `warden import` from MCP client config files. Review it: every server is\n\
         # hidden until a [[rule]] allows its tools (suggestions below each server).\n\n\
         [listen]\naddr = \"127.0.0.1:8931\"\n",
    );
    let mut taken = Vec::new();
    let mut named = Vec::new();
    for e in &entries {
        let name = crate::client_scan::upstream_name(&e.name, &mut taken);
        upstream_block(&name, e, &mut text);
        named.push(name);
    }
    // The tools of the servers that start without a secret, for the suggestions (not those of
    // a project file found in the current directory: a cloned repository's are not started).
    let cwd = std::env::current_dir().ok();
    let found = files_were_found;
    let startable: String = (entries.iter().zip(&named))
        .filter(|(e, _)| !(found && cwd.as_ref().is_some_and(|d| e.file.starts_with(d))))
        .filter(|(e, _)| crate::client_scan::startable(&e.server))
        .filter(|(e, n)| {
            warden_gateway::config::Config::parse(&crate::client_scan::upstream_toml(n, &e.server), "-").is_ok()
        })
        .map(|(e, n)| crate::client_scan::upstream_toml(n, &e.server))
        .collect();
    let mut tools: std::collections::BTreeMap<String, Vec<Value>> = Default::default();
    if !startable.is_empty() {
        let cfg =
            warden_gateway::config::Config::parse(&startable, "client configs").map_err(|e| anyhow::anyhow!(e.0))?;
        for (n, d) in crate::pins::read_each(&cfg).await? {
            if let Ok(d) = d {
                tools.insert(n, d.tools);
            }
        }
    }
    for n in &named {
        suggestion(n, tools.get(n).map(Vec::as_slice), &mut text);
    }
    // Never over an existing file or through a link; readable by its owner only.
    {
        use std::io::Write;
        #[cfg(unix)]
        use std::os::unix::fs::OpenOptionsExt;
        let mut o = std::fs::OpenOptions::new();
        o.write(true).create_new(true);
        #[cfg(unix)]
        o.mode(0o600);
        o.open(out_path)?.write_all(text.as_bytes())?;
    }
    println!("wrote {} ({} server(s) from {} file(s))", out_path.display(), entries.len(), files.len());
    // `warden check` on the result.
    let cfg = warden_gateway::config::Config::load(out_path).map_err(|e| anyhow::anyhow!(e.0))?;
    let helper = std::env::current_exe().map_err(|e| format!("the sandbox helper (warden's own binary): {e}"));
    crate::check::print(&warden_gateway::check::run(&cfg, &out_path.display().to_string(), helper))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn references_become_variables() {
        assert_eq!(variable("${GITHUB_TOKEN}").as_deref(), Some("GITHUB_TOKEN"));
        assert_eq!(variable("${env:X}").as_deref(), Some("X"));
        assert_eq!(variable("Bearer ${T}").as_deref(), Some("T"));
        assert_eq!(variable("${input:api-key}").as_deref(), Some("API_KEY"));
        assert_eq!(variable("ghp_literal"), None);
        assert_eq!(variable("${a b}"), None);
        assert_eq!(variable_for("my-gh", "GITHUB_TOKEN"), "MY_GH_GITHUB_TOKEN");
    }

    #[test]
    fn suggestions_follow_annotations_then_names() {
        let tools = serde_json::json!([
            {"name": "get_issue"},
            {"name": "getaway"},
            {"name": "stats", "annotations": {"readOnlyHint": true}},
            {"name": "create_issue", "annotations": {"readOnlyHint": false, "destructiveHint": false}},
            {"name": "delete_repo", "annotations": {"destructiveHint": true}},
        ]);
        let mut out = String::new();
        suggestion("gh", tools.as_array().map(Vec::as_slice), &mut out);
        let rule = |id: &str| out.split("# id = ").find(|r| r.starts_with(&format!("\"gh-{id}\""))).unwrap_or_default();
        assert!(rule("read").contains("[\"get_issue\", \"stats\"]"), "{out}");
        assert!(rule("write").contains("[\"create_issue\"]"), "{out}");
        assert!(rule("destructive").contains("[\"getaway\", \"delete_repo\"]"), "{out}");
        assert!(rule("destructive").contains("approval = \"user\""), "{out}");
        let mut none = String::new();
        suggestion("gh", None, &mut none);
        assert!(none.contains("servers = [\"gh\"]") && none.contains("not listed here"), "{none}");
    }
}
