//! `warden scan`, `warden pin`, `warden pin diff`, `warden pin keygen`: read what upstreams
//! offer, locally (nothing is sent anywhere but to the upstreams themselves), and scan, pin or
//! compare it.
use anyhow::{bail, Context};
use serde_json::{json, Value};
use std::path::{Path, PathBuf};
use warden_gateway::config::Config;
use warden_gateway::registry::{diff_definitions, instructions_definition, pin_digest, PinFile, PinKind};
use warden_gateway::signing::{self, SigningKey};
use warden_gateway::upstream::{list_definitions, Definitions, Spec};
use warden_policy::scan;

/// What to connect to: the upstreams of a config, or one command or URL.
#[derive(clap::Args)]
pub struct Target {
    /// The upstreams of this config file.
    #[arg(long, conflicts_with_all = ["url", "command"])]
    pub config: Option<PathBuf>,
    /// One Streamable HTTP server.
    #[arg(long, conflicts_with = "command")]
    pub url: Option<String>,
    /// One stdio server: the command and its arguments (after `--`). It runs in the default
    /// sandbox: system paths, the program's install prefix, and what `--read-only` adds.
    #[arg(last = true)]
    pub command: Vec<String>,
    /// With a command: also let the server read this path (directories: everything beneath);
    /// repeatable. A server outside the system paths needs its own directory here.
    #[arg(long = "read-only", value_name = "PATH", conflicts_with_all = ["config", "url"])]
    pub read_only: Vec<PathBuf>,
    /// With a command: also let the server read and write this path; repeatable.
    #[arg(long = "read-write", value_name = "PATH", conflicts_with_all = ["config", "url"])]
    pub read_write: Vec<PathBuf>,
    /// With a command: run it without the sandbox, for a one-off look at a server you trust.
    #[arg(long, conflicts_with_all = ["config", "url", "read_only", "read_write"])]
    pub no_sandbox: bool,
}

impl Target {
    fn config(&self) -> anyhow::Result<Config> {
        if let Some(c) = &self.config {
            return Config::load(c).map_err(|e| anyhow::anyhow!(e.0));
        }
        let q = |s: &str| toml::Value::String(s.to_string()).to_string();
        let up = match (&self.url, self.command.split_first()) {
            (Some(u), _) => format!("transport = \"http\"\nurl = {}", q(u)),
            (None, Some((cmd, args))) => {
                let list = |paths: &[PathBuf]| -> anyhow::Result<String> {
                    let abs: Vec<String> = paths
                        .iter()
                        .map(|p| std::path::absolute(p).map(|a| q(&a.display().to_string())))
                        .collect::<Result<_, _>>()?;
                    Ok(abs.join(", "))
                };
                // Strict: a server under inspection runs with every layer or not at all; but an
                // unpinned package launcher (`npx -y pkg`, which strict refuses) is exactly what
                // one scans before pinning, so it runs best effort (a missing layer is logged).
                let strict = warden_gateway::upstream::program::unpinned_launcher(cmd, args).is_none();
                let sandbox = if self.no_sandbox {
                    "enabled = false".to_string()
                } else {
                    format!(
                        "read_only = [{}]\nread_write = [{}]\nstrict = {strict}",
                        list(&self.read_only)?,
                        list(&self.read_write)?
                    )
                };
                format!(
                    "transport = \"stdio\"\ncommand = {}\nargs = [{}]\n[upstream.sandbox]\n{sandbox}",
                    q(cmd),
                    args.iter().map(|a| q(a)).collect::<Vec<_>>().join(", ")
                )
            }
            (None, None) => bail!("give --config FILE, --url URL, or a command after `--`"),
        };
        Config::parse(&format!("[[upstream]]\nname = \"target\"\n{up}\n"), "command line")
            .map_err(|e| anyhow::anyhow!(e.0))
    }
}

fn http_client() -> anyhow::Result<reqwest::Client> {
    Ok(reqwest::Client::builder().redirect(reqwest::redirect::Policy::none()).build()?)
}

/// Every upstream's definitions, in config order; unreachable upstreams are errors.
async fn read_all(cfg: &Config) -> anyhow::Result<Vec<(String, Definitions)>> {
    let http = http_client()?;
    let mut out = Vec::new();
    // No user's linked account is used here: an upstream of users' own accounts refuses.
    let links = warden_gateway::upstream::user::Links::new(None).map_err(|e| anyhow::anyhow!(e))?;
    for u in &cfg.upstreams {
        let spec = Spec::from_config(u, &cfg.content, &links).map_err(|e| anyhow::anyhow!(e))?;
        let d = list_definitions(&spec, &http).await.map_err(|e| anyhow::anyhow!("upstream {}: {e}", u.name))?;
        out.push((u.name.clone(), d));
    }
    Ok(out)
}

/// An upstream's definitions by pin kind (its instructions as one definition); concrete
/// resources only when the config pins them.
fn by_kind(d: &Definitions, resources: bool) -> Vec<(PinKind, Vec<Value>)> {
    let mut out = vec![(PinKind::Tool, d.tools.clone()), (PinKind::Prompt, d.prompts.clone())];
    if resources {
        out.push((PinKind::Resource, d.resources.clone()));
    }
    out.push((PinKind::Instructions, d.instructions.iter().map(|i| instructions_definition(i)).collect()));
    out
}

/// The name a definition of `kind` is pinned under.
fn pin_name(kind: PinKind, item: &Value) -> &str {
    if kind == PinKind::Instructions {
        return "instructions";
    }
    item.get(kind.key()).and_then(Value::as_str).unwrap_or("?")
}

fn pin_file_of(cfg: &Config) -> Option<PathBuf> {
    cfg.content.pin_file.as_ref().map(|p| cfg.path(p))
}

/// `warden scan`: the poisoning scan, pins and look-alike names. Returns the number of findings.
pub async fn scan(target: &Target, as_json: bool) -> anyhow::Result<usize> {
    let cfg = target.config()?;
    let all = read_all(&cfg).await?;
    let report = findings(&cfg, &all)?;
    if as_json {
        println!("{}", serde_json::to_string_pretty(&json!({"findings": report}))?);
    } else {
        for (server, d) in &all {
            println!(
                "{server}: {} tool(s), {} prompt(s), {} resource(s)",
                d.tools.len(),
                d.prompts.len(),
                d.resources.len()
            );
        }
        print_findings(&report);
        println!("{} finding(s)", report.len());
    }
    Ok(report.len())
}

/// Each finding as one line.
pub fn print_findings(report: &[Value]) {
    for f in report {
        let s = |k: &str| f[k].as_str().unwrap_or_default().to_string();
        let place = if s("place").is_empty() { String::new() } else { format!(" ({})", s("place")) };
        println!("  {} {}:{} — {}{place}", s("kind"), s("server"), s("name"), s("rule"));
    }
}

/// Every upstream's definitions, in config order, each one's or why it could not be read.
pub async fn read_each(cfg: &Config) -> anyhow::Result<Vec<(String, Result<Definitions, String>)>> {
    let http = http_client()?;
    let links = warden_gateway::upstream::user::Links::new(None).map_err(|e| anyhow::anyhow!(e))?;
    let mut out = Vec::new();
    for u in &cfg.upstreams {
        let d = match Spec::from_config(u, &cfg.content, &links) {
            Ok(spec) => list_definitions(&spec, &http).await,
            Err(e) => Err(e),
        };
        out.push((u.name.clone(), d));
    }
    Ok(out)
}

/// The poisoning scan of the definitions read, their pins (when the config has a pin file), and
/// look-alike tool names across servers.
pub fn findings(cfg: &Config, all: &[(String, Definitions)]) -> anyhow::Result<Vec<Value>> {
    let pins = match pin_file_of(cfg) {
        Some(f) if f.exists() => {
            Some(PinFile::load(&f, cfg.content.pin_public_key.as_deref()).map_err(anyhow::Error::msg)?)
        }
        _ => None,
    };
    let mut report = Vec::new();
    let mut names = Vec::new();
    for (server, d) in all {
        let items = [("tool", &d.tools), ("prompt", &d.prompts), ("resource", &d.resources)];
        for (kind, list) in items {
            for item in list.iter() {
                let name = item.get("name").and_then(Value::as_str).unwrap_or("?");
                let found = if kind == "tool" { scan::scan_tool(item) } else { scan::scan_definition(item) };
                for f in found {
                    report
                        .push(json!({"server": server, "kind": kind, "name": name, "rule": f.rule, "place": f.place}));
                }
                if kind == "tool" {
                    names.push((server.clone(), name.to_string()));
                }
            }
        }
        for (kind, list) in by_kind(d, cfg.content.pin_resources) {
            let Some(pins) = &pins else { break };
            for item in &list {
                let name = pin_name(kind, item);
                let k = kind.as_str();
                // Unpinned is reported for an upstream with pins of this kind only.
                match pins.table(kind).get(server).map(|t| t.get(name)) {
                    Some(Some(p)) if p.digest != pin_digest(kind, item) => report.push(json!({
                        "server": server, "kind": k, "name": name, "rule": "pin.changed",
                        "place": diff_definitions(&p.definition, item).join("; ")})),
                    Some(None) => report
                        .push(json!({"server": server, "kind": k, "name": name, "rule": "pin.unpinned", "place": ""})),
                    _ => {}
                }
            }
        }
        if let Some(i) = &d.instructions {
            for f in scan::scan_definition(&json!({"description": i})) {
                report.push(json!({"server": server, "kind": "server", "name": "instructions", "rule": f.rule, "place": "instructions"}));
            }
        }
    }
    for group in scan::confusable_groups(&names) {
        let (s1, t1) = &group[0];
        for (s2, t2) in group.iter().filter(|m| m.0 != *s1).take(100) {
            report.push(json!({"server": s1, "kind": "tool", "name": t1, "rule": "shadowing.look_alike", "place": format!("{s2}:{t2}")}));
        }
    }
    Ok(report)
}

/// `warden pin`: write the pin file from what the upstreams offer now.
pub async fn pin(config: &Path, out: Option<PathBuf>, sign_key: Option<PathBuf>) -> anyhow::Result<()> {
    let cfg = Config::load(config).map_err(|e| anyhow::anyhow!(e.0))?;
    let path = out.or_else(|| pin_file_of(&cfg)).context("no --out and no content.pin_file in the config")?;
    let key = sign_key.map(|k| SigningKey::load(&k)).transpose().map_err(anyhow::Error::msg)?;
    if let (Some(k), Some(want)) = (&key, &cfg.content.pin_public_key) {
        anyhow::ensure!(
            k.public_key() == want.trim(),
            "--sign-key does not match content.pin_public_key: the gateway would refuse the file"
        );
    }
    let all = read_all(&cfg).await?;
    let mut pins = PinFile { version: 1, ..Default::default() };
    for (server, d) in &all {
        for (kind, list) in by_kind(d, cfg.content.pin_resources) {
            pins.pin_all(kind, server, &list);
        }
        pins.pin_instructions(server, d.instructions.as_deref());
        for t in &d.tools {
            let found = scan::scan_tool(t);
            if !found.is_empty() {
                let rules: Vec<String> = found.iter().map(|f| format!("{}@{}", f.rule, f.place)).collect();
                eprintln!("warning: {server}:{} looks poisoned ({}); pinned all the same", t["name"], rules.join(", "));
            }
        }
        println!(
            "{server}: {} tool(s), {} prompt(s), {} resource(s){} pinned",
            d.tools.len(),
            d.prompts.len(),
            if cfg.content.pin_resources { d.resources.len() } else { 0 },
            if d.instructions.is_some() { " and its instructions" } else { "" }
        );
    }
    pins.save(&path, key.as_ref()).map_err(anyhow::Error::msg)?;
    match key {
        Some(_) => println!("wrote {} and {}", path.display(), signing::signature_path(&path).display()),
        None => println!("wrote {}", path.display()),
    }
    Ok(())
}

/// `warden pin diff`: what changed between the pin file and what the upstreams offer now.
/// Returns the number of differences.
pub async fn diff(config: &Path) -> anyhow::Result<usize> {
    let cfg = Config::load(config).map_err(|e| anyhow::anyhow!(e.0))?;
    let path = pin_file_of(&cfg).context("the config has no content.pin_file")?;
    let pins = PinFile::load(&path, cfg.content.pin_public_key.as_deref()).map_err(anyhow::Error::msg)?;
    let all = read_all(&cfg).await?;
    let mut n = 0;
    let empty = Default::default();
    for (server, d) in &all {
        for (kind, list) in by_kind(d, cfg.content.pin_resources) {
            let pinned = pins.table(kind).get(server).unwrap_or(&empty);
            let k = kind.as_str();
            for item in &list {
                let name = pin_name(kind, item);
                match pinned.get(name) {
                    None => {
                        n += 1;
                        println!("+ {k} {server}:{name} (not pinned)");
                    }
                    Some(p) if p.digest != pin_digest(kind, item) => {
                        n += 1;
                        let now = pin_digest(kind, item);
                        println!("~ {k} {server}:{name} (pinned {}…, now {}…)", &p.digest[..12], &now[..12]);
                        for line in diff_definitions(&p.definition, item) {
                            println!("    {line}");
                        }
                    }
                    Some(_) => {}
                }
            }
            for name in pinned.keys() {
                if !list.iter().any(|t| pin_name(kind, t) == name) {
                    n += 1;
                    println!("- {k} {server}:{name} (pinned, no longer offered)");
                }
            }
        }
    }
    println!("{n} difference(s)");
    Ok(n)
}

/// `warden pin keygen`: a new signing key; prints the public key for the config.
pub fn keygen(out: &Path) -> anyhow::Result<()> {
    let k = SigningKey::generate(out).map_err(anyhow::Error::msg)?;
    println!("{}", k.public_key());
    eprintln!(
        "Private key written to {} (keep it off the gateway host). Add to the config:\n\n[content]\npinning = \"file\"\npin_public_key = \"{}\"",
        out.display(),
        k.public_key()
    );
    Ok(())
}
