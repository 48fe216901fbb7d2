//! `warden audit verify|query|tail`: read the audit trail of a config (or a log file given
//! directly), without the gateway running or while it runs.

use anyhow::Context;
use clap::{Args, Subcommand};
use std::collections::VecDeque;
use std::path::PathBuf;
use std::time::{Duration, SystemTime};
use warden_audit::Filter;

#[derive(Args)]
pub struct Which {
    /// The config whose `[audit]` log to read.
    #[arg(long, conflicts_with = "log")]
    config: Option<PathBuf>,
    /// A log file directly (`.jsonl`, or a SQLite database).
    #[arg(long, conflicts_with = "url")]
    log: Option<PathBuf>,
    /// A PostgreSQL trail directly, `postgres://user[:password]@host:port/dbname`.
    #[arg(long, conflicts_with = "config")]
    url: Option<String>,
    /// The checkpoint file to check the end of the trail against. Default: the config's, or
    /// `<log>.checkpoints`.
    #[arg(long)]
    checkpoints: Option<PathBuf>,
}

/// A trail to read: where, its checkpoint file, and (from a config) the signing key file.
struct Trail {
    store: warden_audit::Store,
    checkpoints: Option<PathBuf>,
    key_file: Option<PathBuf>,
}

#[derive(Subcommand)]
pub enum AuditCmd {
    /// Check every record's hash, each chain's order and every signed checkpoint; exit status 1,
    /// with where, when a record was edited, deleted, reordered or cut off.
    Verify {
        #[command(flatten)]
        which: Which,
        /// The trusted checkpoint key (base64). Default: the public half of the config's
        /// `audit.signing_key`, when readable.
        #[arg(long)]
        public_key: Option<String>,
    },
    /// Print matching records, oldest first, as JSON lines.
    Query {
        #[command(flatten)]
        which: Which,
        #[command(flatten)]
        filter: FilterArgs,
        /// At most this many records (0: all).
        #[arg(long, default_value = "1000")]
        limit: usize,
    },
    /// Print the last records, and with --follow, new ones as they are written.
    Tail {
        #[command(flatten)]
        which: Which,
        #[arg(short = 'n', long, default_value = "10")]
        lines: usize,
        #[arg(short, long)]
        follow: bool,
    },
}

#[derive(Args)]
pub struct FilterArgs {
    /// The principal's subject.
    #[arg(long)]
    subject: Option<String>,
    #[arg(long)]
    tenant: Option<String>,
    #[arg(long)]
    server: Option<String>,
    /// Tool or prompt name (the upstream's own).
    #[arg(long)]
    tool: Option<String>,
    /// allowed or denied.
    #[arg(long)]
    decision: Option<String>,
    /// success, validation_error, auth_denied, rate_limited, backend_error, timeout, blocked_by_guard, …
    #[arg(long)]
    status: Option<String>,
    /// call, list, read, prompt, initialize, auth_failure, approval, kill_switch, pin, checkpoint, …
    #[arg(long)]
    kind: Option<String>,
    /// RFC 3339 time, or a duration ago (`15m`, `2h`).
    #[arg(long)]
    since: Option<String>,
    #[arg(long)]
    until: Option<String>,
}

/// An RFC 3339 time or a duration before now, in the records' form.
fn time_bound(s: &str) -> anyhow::Result<String> {
    let t = match humantime::parse_rfc3339_weak(s) {
        Ok(t) => t,
        Err(_) => {
            let ago =
                humantime::parse_duration(s).with_context(|| format!("{s:?}: expected RFC 3339 or a duration"))?;
            SystemTime::now() - ago
        }
    };
    Ok(humantime::format_rfc3339_micros(t).to_string())
}

impl FilterArgs {
    fn filter(self) -> anyhow::Result<Filter> {
        Ok(Filter {
            subject: self.subject,
            tenant: self.tenant,
            server: self.server,
            tool: self.tool,
            decision: self.decision,
            status: self.status,
            kind: self.kind,
            since: self.since.as_deref().map(time_bound).transpose()?,
            until: self.until.as_deref().map(time_bound).transpose()?,
        })
    }
}

fn resolve(w: &Which) -> anyhow::Result<Trail> {
    let t = match (&w.config, &w.log, &w.url) {
        (_, Some(l), _) => Trail {
            store: warden_audit::Store::File(l.clone()),
            checkpoints: Some(warden_audit::checkpoint_path(l)),
            key_file: None,
        },
        (_, _, Some(u)) => Trail {
            store: warden_audit::Store::Postgres { url: u.clone(), password: None },
            checkpoints: None,
            key_file: None,
        },
        (Some(c), None, None) => {
            let cfg = warden_gateway::config::Config::load(c).map_err(|e| anyhow::anyhow!(e.0))?;
            anyhow::ensure!(cfg.audit.enabled, "{}: [audit] enabled = false", c.display());
            Trail {
                store: cfg.audit.store().map_err(|e| anyhow::anyhow!(e))?,
                checkpoints: Some(cfg.audit.checkpoints()),
                key_file: Some(cfg.audit.signing_key),
            }
        }
        (None, None, None) => anyhow::bail!("give --config, --log or --url"),
    };
    Ok(Trail { checkpoints: w.checkpoints.clone().or(t.checkpoints), ..t })
}

fn print(line: &str) -> bool {
    use std::io::Write;
    let mut out = std::io::stdout().lock();
    writeln!(out, "{line}").is_ok()
}

pub fn run(cmd: AuditCmd) -> anyhow::Result<bool> {
    match cmd {
        AuditCmd::Verify { which, public_key } => {
            let Trail { store, checkpoints, key_file } = resolve(&which)?;
            let key = match public_key {
                Some(k) => Some(k),
                None => key_file
                    .filter(|k| k.exists())
                    .map(|k| warden_audit::signing::SigningKey::load(&k).map(|k| k.public_key()))
                    .transpose()
                    .map_err(|e| anyhow::anyhow!(e))?,
            };
            let r =
                warden_audit::verify(&store, checkpoints.as_deref(), key.as_deref()).map_err(|e| anyhow::anyhow!(e))?;
            for (name, c) in &r.chains {
                println!(
                    "chain {name}: {} record(s), seq 1..{}, {} signed checkpoint(s), signed through seq {}",
                    c.records, c.seq, c.checkpoints, c.signed_through
                );
            }
            for n in &r.notes {
                println!("note: {n}");
            }
            for p in &r.problems {
                println!("PROBLEM: {p}");
            }
            if r.ok() {
                println!("{}: {} record(s) verified", store.describe(), r.records);
            } else {
                println!("{}: {} problem(s) found", store.describe(), r.problems.len());
            }
            Ok(!r.ok())
        }
        AuditCmd::Query { which, filter, limit } => {
            let store = resolve(&which)?.store;
            let f = filter.filter()?;
            let mut n = 0usize;
            warden_audit::scan(&store, 0, Some(&f), |s| {
                n += 1;
                print(&s.line) && (limit == 0 || n < limit)
            })
            .map_err(|e| anyhow::anyhow!(e))?;
            Ok(false)
        }
        AuditCmd::Tail { which, lines, follow } => tail(&resolve(&which)?.store, lines, follow),
    }
}

fn tail(log: &warden_audit::Store, n: usize, follow: bool) -> anyhow::Result<bool> {
    let mut last: VecDeque<String> = VecDeque::with_capacity(n + 1);
    let mut cursor = warden_audit::scan(log, 0, None, |s| {
        last.push_back(s.line.clone());
        if last.len() > n {
            last.pop_front();
        }
        true
    })
    .map_err(|e| anyhow::anyhow!(e))?;
    for l in &last {
        if !print(l) {
            return Ok(false);
        }
    }
    if !follow {
        return Ok(false);
    }
    loop {
        std::thread::sleep(Duration::from_millis(500));
        let mut open = true;
        cursor = warden_audit::scan(log, cursor, None, |s| {
            open = print(&s.line);
            open
        })
        .map_err(|e| anyhow::anyhow!(e))?;
        if !open {
            break;
        }
    }
    Ok(false)
}
