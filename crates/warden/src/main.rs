//! `warden`: the MCP security gateway.
use anyhow::Context;
use clap::{Parser, Subcommand};
use std::path::PathBuf;
use warden_gateway::config::Config;
use warden_gateway::gateway::Gateway;

mod admin_cli;
mod audit_cli;
mod bench;
mod bench_audit;
mod bench_auth;
mod bench_classifier;
mod bench_cluster;
mod bench_content;
mod bench_floor;
mod bench_policy;
mod bench_soak;
mod check;
mod client_configs;
mod client_import;
mod client_rewrite;
mod client_scan;
mod credentials_cli;
mod logwriter;
mod pins;

#[derive(Parser)]
#[command(name = "warden", version, about = "Security gateway for the Model Context Protocol")]
struct Cli {
    #[command(subcommand)]
    cmd: Cmd,
    /// Log lines as `text` (default) or `json` (one object per line, for log shippers).
    #[arg(long, global = true, default_value = "text", value_parser = ["text", "json"])]
    log_format: String,
}

#[derive(Subcommand)]
enum Cmd {
    /// Run the gateway over Streamable HTTP.
    Serve {
        #[arg(long)]
        config: PathBuf,
        /// Override listen.addr (same loopback rule applies).
        #[arg(long)]
        listen: Option<std::net::SocketAddr>,
        /// Reload when the config file's content changes (looked at every 2 s), as with SIGHUP:
        /// for a config mounted from a Kubernetes ConfigMap.
        #[arg(long)]
        watch_config: bool,
    },
    /// Validate a configuration file and exit (non-zero with a precise message on error).
    Check {
        #[arg(long)]
        config: PathBuf,
    },
    /// Serve one local client over stdin/stdout.
    Stdio {
        #[arg(long)]
        config: PathBuf,
    },
    /// Measure tools/call latency directly against the fixture and through Warden.
    Bench(bench::BenchArgs),
    /// Train or try the semantic injection classifier.
    Classifier {
        #[command(subcommand)]
        action: warden_classifier::cli::ClassifierCmd,
    },
    /// Connect to upstreams, list what they offer, and print the poisoning scan, pin changes and
    /// look-alike tool names — locally, sending nothing anywhere. Exit status 1 when anything is
    /// found. `warden scan --config FILE`, `warden scan --url URL`, `warden scan [--read-only DIR]… -- CMD
    /// ARGS…` (sandboxed; `--no-sandbox` for a one-off look), `warden scan --clients` (the servers
    /// this machine's MCP clients use; `--client-config FILE` for one file).
    Scan {
        #[command(flatten)]
        target: pins::Target,
        /// Scan the MCP servers of this machine's clients instead (Claude Desktop, Claude Code,
        /// Cursor, VS Code, Windsurf: their config files, docs/onboarding.md).
        #[arg(long, conflicts_with_all = ["config", "url", "command"])]
        clients: bool,
        /// Scan the servers of this client config file (repeatable; implies --clients).
        #[arg(long = "client-config", value_name = "FILE", conflicts_with_all = ["config", "url", "command"])]
        client_config: Vec<PathBuf>,
        /// With --clients: also start the servers of the current directory's project files
        /// (`.mcp.json`, `.cursor/mcp.json`, `.vscode/mcp.json`); otherwise they are only checked.
        #[arg(long)]
        project: bool,
        /// Print the findings as JSON.
        #[arg(long)]
        json: bool,
    },
    /// A Warden config from MCP client config files (Claude Desktop, Claude Code, Cursor, VS
    /// Code, Windsurf; default: this machine's, docs/onboarding.md): sandboxed stdio and HTTP
    /// upstreams, secrets as environment references (never copied), no rule allowing anything
    /// yet (a suggestion per server); then `warden check` on it.
    Import {
        /// Client config files (default: the known ones of this machine).
        files: Vec<PathBuf>,
        /// Where to write the config (never overwritten).
        #[arg(long, default_value = "warden.toml")]
        out: PathBuf,
        /// Then point each client file at Warden instead (each backed up to
        /// `<file>.warden-backup` first; asks unless --yes).
        #[arg(long)]
        rewrite_clients: bool,
        /// Confirm --rewrite-clients without asking.
        #[arg(long, requires = "rewrite_clients")]
        yes: bool,
        /// With --rewrite-clients: the URL clients reach Warden at (default: the config's
        /// listener, `http://127.0.0.1:8931/mcp`).
        #[arg(long, requires = "rewrite_clients", conflicts_with = "stdio")]
        url: Option<String>,
        /// With --rewrite-clients: clients run `warden stdio --config OUT` instead of HTTP.
        #[arg(long, requires = "rewrite_clients")]
        stdio: bool,
        /// Put each client file back from its backup (nothing else is done). A file changed
        /// since the rewrite is left as it is, unless --force.
        #[arg(long, conflicts_with_all = ["rewrite_clients", "out"])]
        undo: bool,
        /// With --undo: restore even a file changed since the rewrite (those changes are lost).
        #[arg(long, requires = "undo")]
        force: bool,
    },
    /// Write the pin file (content.pin_file, or --out) from the definitions the upstreams offer
    /// now; `warden pin diff` shows what changed since; `warden pin keygen` makes a signing key.
    #[command(args_conflicts_with_subcommands = true)]
    Pin {
        #[command(subcommand)]
        action: Option<PinCmd>,
        #[arg(long)]
        config: Option<PathBuf>,
        /// Where to write (default: content.pin_file).
        #[arg(long)]
        out: Option<PathBuf>,
        /// Sign the file with this Ed25519 key (writes `<file>.sig`).
        #[arg(long)]
        sign_key: Option<PathBuf>,
    },
    /// Read the audit trail: verify its hash chain and signatures, query it, tail it.
    #[command(subcommand)]
    Audit(audit_cli::AuditCmd),
    /// API keys for service clients.
    #[command(subcommand)]
    Apikey(ApikeyCmd),
    /// Users' own upstream credentials in the vault (`[vault]`): list, revoke, rotate the key.
    #[command(subcommand)]
    Credentials(credentials_cli::CredentialsCmd),
    /// Tokens of the built-in authorization server.
    #[command(subcommand)]
    Token(TokenCmd),
    /// Local users of the built-in authorization server.
    #[command(subcommand)]
    User(UserCmd),
    /// Switch off an upstream, or one of its tools, in the running gateway (admin API).
    Kill {
        #[arg(long)]
        config: PathBuf,
        /// The upstream's name.
        server: String,
        /// One tool (the upstream's own name); default: the whole upstream.
        #[arg(long)]
        tool: Option<String>,
        /// Why (recorded with who flipped it).
        #[arg(long)]
        reason: String,
        /// Also cancel the calls already running.
        #[arg(long)]
        cancel_in_flight: bool,
    },
    /// Switch an upstream or tool back on.
    Revive {
        #[arg(long)]
        config: PathBuf,
        server: String,
        #[arg(long)]
        tool: Option<String>,
    },
    /// Make the running Warden re-read its config file (as `SIGHUP` does), through the admin API:
    /// rules, limits, content settings, guards and upstreams apply to the next call; a file that
    /// does not validate, or changes what needs a restart, is refused and the old one keeps serving.
    Reload {
        #[arg(long)]
        config: PathBuf,
    },
    /// List the kill switches that are off.
    Kills {
        #[arg(long)]
        config: PathBuf,
    },
    /// List approval requests (default: the pending ones).
    Approvals {
        #[arg(long)]
        config: PathBuf,
        /// pending, approved, denied, consumed, or all.
        #[arg(long, default_value = "pending")]
        state: String,
    },
    /// Approve a held call.
    Approve {
        #[arg(long)]
        config: PathBuf,
        id: String,
        #[arg(long)]
        note: Option<String>,
    },
    /// Deny a held call.
    Deny {
        #[arg(long)]
        config: PathBuf,
        id: String,
        #[arg(long)]
        note: Option<String>,
    },
}

#[derive(Subcommand)]
enum PinCmd {
    /// Show what differs between the pin file and what the upstreams offer now (exit status 1
    /// when anything does).
    Diff {
        #[arg(long)]
        config: PathBuf,
    },
    /// Make an Ed25519 signing key for pin files; prints its public key.
    Keygen {
        #[arg(long)]
        out: PathBuf,
    },
}

#[derive(Subcommand)]
enum ApikeyCmd {
    /// Print a new key (shown once) and the `[[auth.api_key]]` entry (its hash) to add to the config.
    Create {
        #[arg(long)]
        subject: String,
        /// Comma-separated scopes.
        #[arg(long, value_delimiter = ',')]
        scopes: Vec<String>,
        #[arg(long)]
        tenant: Option<String>,
        /// Expiry, RFC 3339 (e.g. 2027-01-31T00:00:00Z).
        #[arg(long)]
        expires: Option<String>,
    },
}

#[derive(Subcommand)]
enum TokenCmd {
    /// Mint an access token with the built-in server's key (development and service tokens).
    Mint {
        #[arg(long)]
        config: PathBuf,
        #[arg(long)]
        sub: String,
        /// Comma-separated scopes.
        #[arg(long, value_delimiter = ',')]
        scopes: Vec<String>,
        /// Lifetime, e.g. 15m or 1h (at most 1h).
        #[arg(long, default_value = "15m")]
        ttl: humantime::Duration,
        /// The resource (audience). Default: auth.resource, else http://<listen.addr>/mcp.
        #[arg(long)]
        resource: Option<String>,
        #[arg(long, default_value = "warden-cli")]
        client_id: String,
    },
}

#[derive(Subcommand)]
enum UserCmd {
    /// Add a user or set a user's password (read from stdin, first line).
    Add {
        #[arg(long)]
        config: PathBuf,
        name: String,
        /// Comma-separated scopes the user may grant (default: all).
        #[arg(long, value_delimiter = ',')]
        scopes: Vec<String>,
    },
}

fn builtin(cfg: &Config) -> anyhow::Result<&warden_gateway::config::BuiltinAs> {
    cfg.auth.as_ref().and_then(|a| a.builtin.as_ref()).context("the config has no [auth.builtin] section")
}

fn load(path: &std::path::Path, listen: Option<std::net::SocketAddr>) -> anyhow::Result<Config> {
    let mut cfg = Config::load(path).map_err(|e| anyhow::anyhow!(e.0))?;
    if let Some(addr) = listen {
        cfg.listen.addr = addr;
        cfg.validate().map_err(|e| anyhow::anyhow!("--listen: {e}"))?;
    }
    Ok(cfg)
}

async fn shutdown_signal() {
    let mut term = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()).expect("SIGTERM handler");
    tokio::select! {
        _ = tokio::signal::ctrl_c() => {},
        _ = term.recv() => {},
    }
}

fn main() -> std::process::ExitCode {
    // The sandbox helper: before anything else (it must still be single-threaded).
    if std::env::args_os().nth(1).is_some_and(|a| a == warden_sandbox::HELPER_ARG) {
        let code = warden_sandbox::run_helper(std::env::args_os().collect());
        return std::process::ExitCode::from(code.clamp(0, 255) as u8);
    }
    if let Ok(exe) = std::env::current_exe() {
        warden_gateway::upstream::stdio::set_sandbox_helper(exe);
    }
    let cli = Cli::parse();
    let filter = tracing_subscriber::EnvFilter::try_from_default_env().unwrap_or_else(|_| "info".into());
    let logs = tracing_subscriber::fmt().with_env_filter(filter);
    if cli.log_format == "json" {
        logs.with_writer(std::io::stderr).json().flatten_event(true).with_current_span(false).init();
    } else {
        // No colours: every control character a field carries is escaped, ESC included, so that
        // nothing a client or upstream says can forge or hide a line (logwriter.rs).
        logs.with_writer(logwriter::stderr).with_ansi(false).init();
    }
    let rt = tokio::runtime::Builder::new_multi_thread().enable_all().build().expect("tokio runtime");
    // Set by commands whose answer is a status (scan, pin diff: 1 when something was found).
    let mut found = false;
    let res: anyhow::Result<()> = rt.block_on(async {
        match cli.cmd {
            Cmd::Check { config } => {
                let cfg = load(&config, None)?;
                let helper =
                    std::env::current_exe().map_err(|e| format!("the sandbox helper (warden's own binary): {e}"));
                let lines = warden_gateway::check::run(&cfg, &config.display().to_string(), helper);
                check::print(&lines)
            }
            Cmd::Serve { config, listen, watch_config } => {
                let cfg = load(&config, listen)?;
                let addr = cfg.listen.addr;
                let mut gw = Gateway::new(cfg).await.map_err(|e| anyhow::anyhow!(e))?.reload_from(config.clone());
                if watch_config {
                    gw = gw.watch_config(std::time::Duration::from_secs(2));
                }
                let listener = tokio::net::TcpListener::bind(addr).await.with_context(|| format!("bind {addr}"))?;
                gw.serve(listener, shutdown_signal()).await?;
                Ok(())
            }
            Cmd::Stdio { config } => {
                let cfg = load(&config, None)?;
                let gw = Gateway::new(cfg).await.map_err(|e| anyhow::anyhow!(e))?;
                gw.serve_stdio().await?;
                Ok(())
            }
            Cmd::Bench(args) => bench::run(args).await,
            Cmd::Classifier { action } => warden_classifier::cli::run(action),
            Cmd::Scan { clients, client_config, json, project, .. } if clients || !client_config.is_empty() => {
                found = client_scan::scan(&client_config, json, project).await? > 0;
                Ok(())
            }
            Cmd::Import { files, undo: true, force, .. } => {
                let files = if files.is_empty() { client_import::known_files() } else { files };
                let n = client_rewrite::undo(&files, force)?;
                println!("{n} client file(s) restored");
                Ok(())
            }
            Cmd::Import { files, out, rewrite_clients, yes, url, stdio, .. } => {
                let found = files.is_empty();
                let files = if found { client_import::known_files() } else { files };
                client_import::import(&files, &out, found).await?;
                if rewrite_clients {
                    let warden = std::env::current_exe()?;
                    let config = std::path::absolute(&out)?;
                    let local = client_rewrite::Via::Stdio { warden, config };
                    let via = match (stdio, url) {
                        (true, _) => None,
                        (false, u) => {
                            Some(client_rewrite::Via::Http(u.unwrap_or_else(|| "http://127.0.0.1:8931/mcp".into())))
                        }
                    };
                    client_rewrite::rewrite(&files, via.as_ref().unwrap_or(&local), &local, yes)?;
                }
                Ok(())
            }
            Cmd::Scan { target, json, .. } => {
                found = pins::scan(&target, json).await? > 0;
                Ok(())
            }
            Cmd::Pin { action: Some(PinCmd::Diff { config }), .. } => {
                found = pins::diff(&config).await? > 0;
                Ok(())
            }
            Cmd::Pin { action: Some(PinCmd::Keygen { out }), .. } => pins::keygen(&out),
            Cmd::Pin { action: None, config, out, sign_key } => {
                pins::pin(&config.context("--config is required")?, out, sign_key).await
            }
            Cmd::Kill { config, server, tool, reason, cancel_in_flight } => {
                admin_cli::kill(&load(&config, None)?, &server, tool.as_deref(), &reason, cancel_in_flight).await
            }
            Cmd::Revive { config, server, tool } => {
                admin_cli::revive(&load(&config, None)?, &server, tool.as_deref()).await
            }
            Cmd::Kills { config } => admin_cli::list(&load(&config, None)?).await,
            Cmd::Reload { config } => admin_cli::reload(&load(&config, None)?).await,
            Cmd::Approvals { config, state } => admin_cli::approvals(&load(&config, None)?, &state).await,
            Cmd::Approve { config, id, note } => admin_cli::decide(&load(&config, None)?, &id, true, note).await,
            Cmd::Deny { config, id, note } => admin_cli::decide(&load(&config, None)?, &id, false, note).await,
            Cmd::Credentials(cmd) => tokio::task::spawn_blocking(move || credentials_cli::run(cmd)).await?,
            Cmd::Audit(cmd) => {
                found = tokio::task::spawn_blocking(move || audit_cli::run(cmd)).await??;
                Ok(())
            }
            Cmd::Apikey(ApikeyCmd::Create { subject, scopes, tenant, expires }) => {
                if let Some(e) = &expires {
                    humantime::parse_rfc3339(e).context("--expires")?;
                }
                let (key, entry) =
                    warden_gateway::auth::apikey::generate(&subject, &scopes, tenant.as_deref(), expires.as_deref());
                println!("{key}");
                eprintln!("The key above is shown once. Add this entry to the config:\n\n{entry}");
                Ok(())
            }
            Cmd::Token(TokenCmd::Mint { config, sub, scopes, ttl, resource, client_id }) => {
                let cfg = load(&config, None)?;
                let b = builtin(&cfg)?;
                let ttl = ttl.as_secs();
                anyhow::ensure!((1..=3600).contains(&ttl), "--ttl: expected 1s to 1h");
                let auth = cfg.auth.as_ref().expect("checked by builtin()");
                let resource = resource
                    .or_else(|| auth.resource.clone())
                    .unwrap_or_else(|| format!("http://{}/mcp", cfg.listen.addr));
                let server = warden_gateway::auth::builtin::AuthServer::new(b, auth, &cfg, None)
                    .map_err(|e| anyhow::anyhow!(e))?;
                println!("{}", server.mint(&sub, &scopes, &client_id, &resource, ttl));
                Ok(())
            }
            Cmd::User(UserCmd::Add { config, name, scopes }) => {
                let max = warden_gateway::auth::builtin::MAX_USER_NAME;
                anyhow::ensure!(
                    !name.is_empty() && name.len() <= max && !name.chars().any(char::is_control),
                    "a user name has 1 to {max} bytes and no control characters"
                );
                let cfg = load(&config, None)?;
                let users_path = warden_gateway::auth::builtin::paths(builtin(&cfg)?, &cfg).users;
                let mut line = String::new();
                std::io::stdin().read_line(&mut line).context("reading the password from stdin")?;
                let password = line.trim_end_matches(['\n', '\r']);
                anyhow::ensure!(password.chars().count() >= 8, "the password must have at least 8 characters");
                let mut users =
                    warden_gateway::auth::builtin::UsersFile::load(&users_path).map_err(|e| anyhow::anyhow!(e))?;
                users.set(&name, password, scopes).map_err(|e| anyhow::anyhow!(e))?;
                users.save(&users_path).map_err(|e| anyhow::anyhow!(e))?;
                println!("user {name} saved in {}", users_path.display());
                Ok(())
            }
        }
    });
    rt.shutdown_timeout(std::time::Duration::from_secs(3));
    match res {
        Ok(()) if found => std::process::ExitCode::FAILURE,
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e:#}");
            std::process::ExitCode::FAILURE
        }
    }
}
