//! `warden import --rewrite-clients` and `--undo` (issue 28): point each MCP client at Warden
//! instead of the servers Warden now fronts, and put them back.
//!
//! Each file is first copied to `<file>.warden-backup` (an existing backup is never replaced:
//! the rewrite of that file is refused), then its servers are replaced by one entry, `warden`:
//! Warden's `/mcp` URL in the form the client takes (Claude Desktop, whose file takes only
//! local commands, and everyone with `--stdio`: `warden stdio --config FILE`). Nothing is
//! rewritten without a confirmation (`--yes` gives it). `--undo` moves each backup back over
//! its file: the file is again what it was, byte for byte.
//!
//! Defends against: losing a user's client configuration (the backup, never overwritten; the
//! rewrite stops at the first file it cannot back up). Does not keep: comments in a VS Code file
//! that is rewritten (they are in the backup).

use crate::client_configs::Client;
use serde_json::{json, Map, Value};
use std::path::{Path, PathBuf};

/// Where a file's backup is.
pub fn backup_of(file: &Path) -> PathBuf {
    let mut name = file.file_name().unwrap_or_default().to_os_string();
    name.push(".warden-backup");
    file.with_file_name(name)
}

/// How clients reach Warden.
pub enum Via {
    Http(String),
    Stdio { warden: PathBuf, config: PathBuf },
}

/// The one entry that replaces a client's servers. Claude Desktop's file takes local commands
/// only: it reaches Warden over stdio from the same config (`stdio`).
fn entry(client: Client, via: &Via, stdio: &Via) -> Value {
    let via = if client == Client::ClaudeDesktop { stdio } else { via };
    match via {
        Via::Stdio { warden, config } => {
            let mut e = json!({"command": warden, "args": ["stdio", "--config", config]});
            if matches!(client, Client::ClaudeCode | Client::VsCode) {
                e["type"] = json!("stdio");
            }
            e
        }
        Via::Http(url) => match client {
            Client::Windsurf => json!({"serverUrl": url}),
            Client::Cursor | Client::ClaudeDesktop => json!({"url": url}),
            Client::ClaudeCode | Client::VsCode => json!({"type": "http", "url": url}),
        },
    }
}

fn only_warden(table: &mut Value, e: &Value) {
    let mut m = Map::new();
    m.insert("warden".into(), e.clone());
    *table = Value::Object(m);
}

/// `file` (of `client`) with its servers replaced by Warden's entry.
fn rewritten(client: Client, text: &str, via: &Via, stdio: &Via) -> Result<String, String> {
    let mut doc: Value = serde_json::from_str(text)
        .or_else(|_| serde_json::from_str(&crate::client_configs::plain_json(text)))
        .map_err(|e| format!("not JSON ({e})"))?;
    let e = entry(client, via, stdio);
    match client {
        Client::VsCode => {
            if let Some(t) = doc.get_mut("servers") {
                only_warden(t, &e);
            }
            if let Some(t) = doc.pointer_mut("/mcp/servers") {
                only_warden(t, &e);
            }
        }
        _ => {
            if let Some(t) = doc.get_mut("mcpServers") {
                only_warden(t, &e);
            }
            // Claude Code keeps servers per project too.
            if let Some(projects) = doc.get_mut("projects").and_then(Value::as_object_mut) {
                for p in projects.values_mut() {
                    if let Some(t) = p.get_mut("mcpServers").filter(|t| t.as_object().is_some_and(|m| !m.is_empty())) {
                        only_warden(t, &e);
                    }
                }
            }
        }
    }
    let mut out = serde_json::to_string_pretty(&doc).map_err(|e| e.to_string())?;
    out.push('\n');
    Ok(out)
}

/// Ask on the terminal (refused when there is none).
fn confirmed(files: &[PathBuf]) -> bool {
    use std::io::{BufRead, IsTerminal, Write};
    if !std::io::stdin().is_terminal() {
        return false;
    }
    println!("These client files will point at Warden instead of their servers (each backed up first):");
    for f in files {
        println!("  {}", f.display());
    }
    print!("Rewrite them? [y/N] ");
    let _ = std::io::stdout().flush();
    let mut line = String::new();
    std::io::stdin().lock().read_line(&mut line).is_ok() && matches!(line.trim(), "y" | "Y" | "yes")
}

/// Rewrite `files` to reach Warden `via` (Claude Desktop: `stdio`); `yes`: confirmed already.
pub fn rewrite(files: &[PathBuf], via: &Via, stdio: &Via, yes: bool) -> anyhow::Result<()> {
    anyhow::ensure!(yes || confirmed(files), "not confirmed: nothing rewritten (--yes confirms)");
    // Everything checked before anything is written.
    let mut plans = Vec::new();
    for f in files {
        let client =
            Client::of(f).ok_or_else(|| anyhow::anyhow!("{}: not a client config file Warden knows", f.display()))?;
        let backup = backup_of(f);
        anyhow::ensure!(
            !backup.exists(),
            "{}: a backup is already there ({}): undo first",
            f.display(),
            backup.display()
        );
        let text = std::fs::read_to_string(f)?;
        let new = rewritten(client, &text, via, stdio).map_err(|e| anyhow::anyhow!("{}: {e}", f.display()))?;
        plans.push((f, backup, new));
    }
    for (f, backup, new) in plans {
        std::fs::copy(f, &backup)?;
        std::fs::write(f, new)?;
        println!("rewrote {} (backup: {})", f.display(), backup.display());
    }
    Ok(())
}

/// Put back each file of `files` that has a backup.
pub fn undo(files: &[PathBuf]) -> anyhow::Result<usize> {
    let mut n = 0;
    for f in files {
        let backup = backup_of(f);
        if backup.exists() {
            std::fs::rename(&backup, f)?;
            println!("restored {}", f.display());
            n += 1;
        }
    }
    Ok(n)
}
