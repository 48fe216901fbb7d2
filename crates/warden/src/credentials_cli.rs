//! `warden credentials list|revoke|rotate`: the credential vault (`[vault]`), read and changed
//! from the command line. Listings show owners and times, never tokens.

use anyhow::Context;
use clap::Subcommand;
use std::path::{Path, PathBuf};
use warden_gateway::vault::Vault;

#[derive(Subcommand)]
pub enum CredentialsCmd {
    /// Every kept credential: id, upstream, tenant, subject, when linked and updated, expiry.
    List {
        #[arg(long)]
        config: PathBuf,
        /// JSON lines instead of a table.
        #[arg(long)]
        json: bool,
    },
    /// Forget one credential (its id from `list`): its user links the account again.
    Revoke {
        #[arg(long)]
        config: PathBuf,
        id: String,
    },
    /// Seal every credential again under the current `[vault] key` (after a key change, before
    /// the old key is removed from `previous_keys`).
    Rotate {
        #[arg(long)]
        config: PathBuf,
    },
}

fn open(config: &Path) -> anyhow::Result<Vault> {
    let cfg = warden_gateway::config::Config::load(config).map_err(|e| anyhow::anyhow!(e.0))?;
    let v = cfg.vault.as_ref().context("no [vault] in this config")?;
    Vault::open(v, &cfg.base_dir).map_err(|e| anyhow::anyhow!(e))
}

fn when(secs: u64) -> String {
    humantime::format_rfc3339_seconds(std::time::UNIX_EPOCH + std::time::Duration::from_secs(secs)).to_string()
}

pub fn run(cmd: CredentialsCmd) -> anyhow::Result<()> {
    match cmd {
        CredentialsCmd::List { config, json } => {
            let entries = open(&config)?.list(100_000).map_err(|e| anyhow::anyhow!(e))?;
            for e in &entries {
                if json {
                    println!("{}", serde_json::to_string(e)?);
                } else {
                    println!(
                        "{}  {}  {}{}  linked {}  updated {}  expires {}",
                        e.id,
                        e.upstream,
                        e.tenant.as_deref().map(|t| format!("{t}/")).unwrap_or_default(),
                        e.subject,
                        when(e.created),
                        when(e.updated),
                        e.expires_at.map(when).unwrap_or_else(|| "-".into())
                    );
                }
            }
            if !json {
                eprintln!("{} credential(s)", entries.len());
            }
        }
        CredentialsCmd::Revoke { config, id } => {
            anyhow::ensure!(open(&config)?.revoke(&id).map_err(|e| anyhow::anyhow!(e))?, "no credential has id {id}");
            println!("revoked {id}");
        }
        CredentialsCmd::Rotate { config } => {
            let (done, failed) = open(&config)?.rotate().map_err(|e| anyhow::anyhow!(e))?;
            println!("{done} credential(s) sealed again under the current key");
            for f in &failed {
                eprintln!("{f}");
            }
            anyhow::ensure!(
                failed.is_empty(),
                "{} credential(s) could not be opened: a key missing from the config (add it to previous_keys), \
                 or a damaged entry (revoke it)",
                failed.len()
            );
        }
    }
    Ok(())
}
