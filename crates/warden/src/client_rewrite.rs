//! `warden import --rewrite-clients` and `--undo` (issue 28): point each MCP client at Warden
//! instead of the servers Warden now fronts, and put them back.
//!
//! Each file (its link followed: the file itself is rewritten) is first copied to
//! `<file>.warden-backup` (an existing backup is never replaced: the rewrite is refused), then
//! its servers are replaced by one entry, `warden`: Warden's `/mcp` URL in the form the client
//! takes (Claude Desktop, whose file takes only local commands, and everyone with `--stdio`:
//! `warden stdio --config FILE`). Files with no server are left alone. Every file is planned
//! before any is written; each write goes to a temporary file renamed over the target (the old
//! content or the new, never half), keeping its permissions. The digest of what was written is
//! kept beside the backup (`<file>.warden-rewritten`). Nothing is rewritten without a
//! confirmation (`--yes` gives it). `--undo` moves each backup back over its file (the file is
//! again what it was, byte for byte), unless the file changed since the rewrite (`--force`).
//!
//! Defends against: losing a user's client configuration (the backup, never overwritten; atomic
//! writes; undo refusing to discard changes made after the rewrite).
//! Does not keep: comments in a rewritten VS Code file, or the order of its keys (JSON objects
//! are written sorted); both are in the backup. A client writing its file at the very moment of
//! the rewrite loses that write.

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

/// Where the digest of the rewritten file is kept.
fn written_of(file: &Path) -> PathBuf {
    let mut name = file.file_name().unwrap_or_default().to_os_string();
    name.push(".warden-rewritten");
    file.with_file_name(name)
}

/// Write `data` to `path` through a temporary file renamed over it, with `like`'s permissions.
fn write_atomic(path: &Path, data: &[u8], like: Option<&Path>) -> std::io::Result<()> {
    use std::io::Write;
    let mut name = path.file_name().unwrap_or_default().to_os_string();
    name.push(format!(".warden-tmp-{}", std::process::id()));
    let tmp = path.with_file_name(name);
    let mut f = std::fs::OpenOptions::new().write(true).create_new(true).open(&tmp)?;
    let done = (|| {
        f.write_all(data)?;
        if let Some(l) = like {
            std::fs::set_permissions(&tmp, std::fs::metadata(l)?.permissions())?;
        }
        f.sync_all()?;
        std::fs::rename(&tmp, path)
    })();
    if done.is_err() {
        let _ = std::fs::remove_file(&tmp);
    }
    done
}

fn digest(data: &[u8]) -> String {
    warden_gateway::digest::hex(&warden_gateway::digest::sha256(data))
}

/// Rewrite `files` to reach Warden `via` (Claude Desktop: `stdio`); `yes`: confirmed already.
pub fn rewrite(files: &[PathBuf], via: &Via, stdio: &Via, yes: bool) -> anyhow::Result<()> {
    // Everything checked before anything is written.
    let mut plans = Vec::new();
    for f in files {
        let client =
            Client::of(f).ok_or_else(|| anyhow::anyhow!("{}: not a client config file Warden knows", f.display()))?;
        let f = std::fs::canonicalize(f)?;
        let backup = backup_of(&f);
        anyhow::ensure!(
            !backup.exists(),
            "{}: a backup is already there ({}): undo first",
            f.display(),
            backup.display()
        );
        let text = crate::client_configs::read_text(&f).map_err(anyhow::Error::msg)?;
        if crate::client_configs::read(&f).map_err(anyhow::Error::msg)?.is_empty() {
            continue; // no server: nothing to point elsewhere
        }
        let new = rewritten(client, &text, via, stdio).map_err(|e| anyhow::anyhow!("{}: {e}", f.display()))?;
        plans.push((f, backup, text, new));
    }
    anyhow::ensure!(!plans.is_empty(), "no client file with servers to rewrite");
    let names: Vec<PathBuf> = plans.iter().map(|p| p.0.clone()).collect();
    anyhow::ensure!(yes || confirmed(&names), "not confirmed: nothing rewritten (--yes confirms)");
    for (f, backup, old, new) in plans {
        write_atomic(&backup, old.as_bytes(), Some(&f))?;
        write_atomic(&written_of(&f), digest(new.as_bytes()).as_bytes(), Some(&f))?;
        write_atomic(&f, new.as_bytes(), Some(&f))?;
        println!("rewrote {} (backup: {})", f.display(), backup.display());
    }
    Ok(())
}

/// Put back each file of `files` that has a backup; one changed since the rewrite only with
/// `force`. How many were restored.
pub fn undo(files: &[PathBuf], force: bool) -> anyhow::Result<usize> {
    let mut n = 0;
    for f in files {
        let Ok(f) = std::fs::canonicalize(f) else { continue };
        let backup = backup_of(&f);
        if !backup.exists() {
            continue;
        }
        let written = std::fs::read_to_string(written_of(&f)).unwrap_or_default();
        let now = std::fs::read(&f).map(|d| digest(&d)).unwrap_or_default();
        if written.trim() != now && !force {
            eprintln!(
                "{}: changed since the rewrite; not restored (its backup is {}; --force restores it, losing those changes)",
                f.display(),
                backup.display()
            );
            continue;
        }
        std::fs::rename(&backup, &f)?;
        let _ = std::fs::remove_file(written_of(&f));
        println!("restored {}", f.display());
        n += 1;
    }
    Ok(n)
}
