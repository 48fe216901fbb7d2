//! `warden audit verify|export|query|tail`: read the audit trail of a config (or a log file given
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
    /// A checkpoint file to check the trail against (repeat it for the files of several
    /// instances sharing a database; best a copy kept off the host). Default: the config's, or
    /// `<log>.checkpoints`.
    #[arg(long)]
    checkpoints: Vec<PathBuf>,
    /// Where `[audit.retention]` archived old segments (default: the config's `archive_dir`):
    /// `verify` reads them first (the whole trail from its first record).
    #[arg(long)]
    archive: Option<PathBuf>,
}

/// A trail to read: where, its checkpoint files and archive, and (from a config) its `[audit]`
/// settings.
struct Trail {
    store: warden_audit::Store,
    checkpoints: Vec<PathBuf>,
    archive: Option<PathBuf>,
    audit: Option<warden_gateway::config::AuditConfig>,
}

#[derive(Subcommand)]
pub enum AuditCmd {
    /// Check every record's hash, each chain's order and every signed checkpoint; exit status 1,
    /// with where, when a record was edited, deleted, reordered or cut off, a checkpoint is
    /// missing or signed by another key, or no key is pinned.
    Verify {
        #[command(flatten)]
        which: Which,
        /// The pinned checkpoint key (base64), best from a copy kept off this host. Default: the
        /// config's `audit.public_key`. Never derived from the private key file: whoever can
        /// replace that file could then sign a rewritten trail.
        #[arg(long)]
        public_key: Option<String>,
        /// Most records a chain may end with unsigned (a running or killed Warden's tail).
        /// Default: the config's `checkpoint_every` + 4096 (10000 + 4096 without a config). Give
        /// it from off the host too: whoever edits the config can widen it.
        #[arg(long)]
        window_records: Option<u64>,
        /// … and the most seconds they may span. Default: `checkpoint_secs` + 60.
        #[arg(long)]
        window_secs: Option<u64>,
        /// The log is a `warden audit export`: its chains start where the range did, and no
        /// checkpoint file is expected.
        #[arg(long)]
        exported: bool,
    },
    /// Write the records of a time range as JSON lines to a file, for an auditor: the whole
    /// trail is verified first (nothing is written when it does not verify; with its archive,
    /// which is read too), and each chain is continued past --until to its next signed
    /// checkpoint. `warden audit verify --log FILE
    /// --exported --public-key KEY` checks the file alone.
    Export {
        #[command(flatten)]
        which: Which,
        /// The pinned checkpoint key (see `verify`). Default: the config's `audit.public_key`.
        #[arg(long)]
        public_key: Option<String>,
        /// RFC 3339 time, or a duration ago (`30d`).
        #[arg(long)]
        since: Option<String>,
        #[arg(long)]
        until: Option<String>,
        /// The file to write (created, 0600; an existing one is refused).
        #[arg(long)]
        out: PathBuf,
    },
    /// Print the public half of the config's checkpoint signing key (creating the key when
    /// absent), to pin as `[audit] public_key` and to keep off the host.
    PublicKey {
        #[arg(long)]
        config: PathBuf,
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
            checkpoints: vec![warden_audit::checkpoint_path(l)],
            archive: None,
            audit: None,
        },
        (_, _, Some(u)) => Trail {
            store: warden_audit::Store::Postgres { url: u.clone(), password: None },
            checkpoints: Vec::new(),
            archive: None,
            audit: None,
        },
        (Some(c), None, None) => {
            let cfg = audit_config(c)?;
            Trail {
                store: cfg.store().map_err(|e| anyhow::anyhow!(e))?,
                checkpoints: vec![cfg.checkpoints()],
                archive: cfg.retention.archive_dir.clone(),
                audit: Some(cfg),
            }
        }
        (None, None, None) => anyhow::bail!("give --config, --log or --url"),
    };
    let t = Trail { archive: w.archive.clone().or(t.archive), ..t };
    Ok(if w.checkpoints.is_empty() { t } else { Trail { checkpoints: w.checkpoints.clone(), ..t } })
}

fn audit_config(c: &std::path::Path) -> anyhow::Result<warden_gateway::config::AuditConfig> {
    let cfg = warden_gateway::config::Config::load(c).map_err(|e| anyhow::anyhow!(e.0))?;
    anyhow::ensure!(cfg.audit.enabled, "{}: [audit] enabled = false", c.display());
    Ok(cfg.audit)
}

/// Verify a trail, printing what the verifier found; the report and whether it is clean.
fn verified(
    t: &Trail,
    public_key: Option<String>,
    window_records: Option<u64>,
    window_secs: Option<u64>,
    exported: bool,
) -> anyhow::Result<(warden_audit::verify::Report, bool)> {
    let key = public_key.or_else(|| t.audit.as_ref().and_then(|a| a.public_key.clone()));
    if let Some(k) = &key {
        warden_audit::signing::parse_public_key(k).map_err(|e| anyhow::anyhow!("--public-key: {e}"))?;
    }
    let mut expect = match &t.audit {
        Some(a) => warden_audit::verify::Expect::new(key.as_deref(), a.checkpoint_every, a.checkpoint_secs),
        None => warden_audit::verify::Expect::new(key.as_deref(), 10_000, 10),
    };
    expect.tail_records = window_records.unwrap_or(expect.tail_records);
    expect.tail_secs = window_secs.unwrap_or(expect.tail_secs);
    expect.exported = exported;
    let archive = t.archive.as_deref();
    if let Some(a) = archive.filter(|a| !a.is_dir()) {
        anyhow::bail!(
            "{}: the archive directory is not there (give --archive, or remove archive_dir from the config)",
            a.display()
        );
    }
    let r = warden_audit::verify_archived(&t.store, archive, &t.checkpoints, expect).map_err(|e| anyhow::anyhow!(e))?;
    for (name, c) in &r.chains {
        println!(
            "chain {name}: {} record(s) through seq {}, {} signed checkpoint(s), signed through seq {}",
            c.records, c.seq, c.checkpoints, c.signed_through
        );
    }
    for n in &r.notes {
        println!("note: {n}");
    }
    for p in &r.problems {
        println!("PROBLEM: {p}");
    }
    if key.is_none() {
        if let Some(k) = t.audit.as_ref().and_then(|a| warden_audit::signing::SigningKey::load(&a.signing_key).ok()) {
            println!(
                "hint: this host's key file signs as {}; pin that (--public-key, or [audit] public_key) only if you trust the file",
                k.public_key()
            );
        }
    }
    let ok = r.ok();
    Ok((r, ok))
}

fn print(line: &str) -> bool {
    use std::io::Write;
    let mut out = std::io::stdout().lock();
    writeln!(out, "{line}").is_ok()
}

pub fn run(cmd: AuditCmd) -> anyhow::Result<bool> {
    match cmd {
        AuditCmd::PublicKey { config } => {
            let a = audit_config(&config)?;
            let key =
                warden_audit::signing::SigningKey::load_or_generate(&a.signing_key).map_err(|e| anyhow::anyhow!(e))?;
            println!("{}", key.public_key());
            Ok(false)
        }
        AuditCmd::Verify { which, public_key, window_records, window_secs, exported } => {
            let mut trail = resolve(&which)?;
            if exported && which.checkpoints.is_empty() {
                trail.checkpoints.clear();
            }
            let (r, ok) = verified(&trail, public_key, window_records, window_secs, exported)?;
            if ok {
                println!("{}: {} record(s) verified", trail.store.describe(), r.records);
            } else {
                println!("{}: {} problem(s) found", trail.store.describe(), r.problems.len());
            }
            Ok(!ok)
        }
        AuditCmd::Export { which, public_key, since, until, out } => {
            let trail = resolve(&which)?;
            let (r, ok) = verified(&trail, public_key, None, None, false)?;
            if !ok {
                println!("{}: {} problem(s) found; nothing exported", trail.store.describe(), r.problems.len());
                return Ok(true);
            }
            let (since, until) =
                (since.as_deref().map(time_bound).transpose()?, until.as_deref().map(time_bound).transpose()?);
            let file = {
                use std::os::unix::fs::OpenOptionsExt;
                std::fs::OpenOptions::new().write(true).create_new(true).mode(0o600).open(&out)
            }
            .with_context(|| format!("{}", out.display()))?;
            let mut w = std::io::BufWriter::new(file);
            let (from, to) = (since.as_deref(), until.as_deref());
            let done = warden_audit::export_archived(&trail.store, trail.archive.as_deref(), from, to, |line| {
                use std::io::Write;
                writeln!(w, "{line}").map_err(|e| e.to_string())
            })
            .map_err(|e| anyhow::anyhow!(e))?;
            std::io::Write::flush(&mut w).with_context(|| format!("{}", out.display()))?;
            for (chain, x) in &done {
                println!("chain {chain}: {} record(s), seq {}..{}", x.records, x.first, x.last);
            }
            println!("{}: exported to {}", trail.store.describe(), out.display());
            Ok(false)
        }
        AuditCmd::Query { which, filter, limit } => {
            let store = resolve(&which)?.store;
            let f = filter.filter()?;
            let mut n = 0usize;
            warden_audit::scan_all(&store, Some(&f), |s| {
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
    let mut at = warden_audit::Following::default();
    // Where the active file starts before it is read: a rotation meanwhile is seen next time.
    if let warden_audit::Store::File(p) = log {
        let mut first = None;
        let _ = warden_audit::scan(&warden_audit::Store::File(p.clone()), 0, None, |s| {
            first = Some(s.line.clone());
            false
        });
        at.first = first;
    }
    at.cursor = warden_audit::scan_all(log, None, |s| {
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
        warden_audit::follow(log, &mut at, |s| {
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
