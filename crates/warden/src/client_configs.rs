//! The MCP servers a machine's clients already use (issue 28): their config files, where each
//! client keeps them (per OS), and what each entry says, read into one shape.
//!
//! | client | files (user; project) | servers under |
//! |---|---|---|
//! | Claude Desktop | macOS `~/Library/Application Support/Claude/claude_desktop_config.json`, Windows `%APPDATA%\Claude\claude_desktop_config.json`, Linux `~/.config/Claude/claude_desktop_config.json` | `mcpServers` |
//! | Claude Code | `~/.claude.json` (also per project: `projects.<dir>.mcpServers`); `.mcp.json` | `mcpServers` |
//! | Cursor | `~/.cursor/mcp.json`; `.cursor/mcp.json` | `mcpServers` |
//! | VS Code | user `settings.json` (`mcp.servers`) and `mcp.json` in the user directory; `.vscode/mcp.json` | `servers` |
//! | Windsurf | `~/.codeium/windsurf/mcp_config.json` | `mcpServers` (`serverUrl` for remote) |
//!
//! Files are JSON; VS Code's are JSON with comments and trailing commas (read as such). A file
//! that does not parse is reported, not guessed at. Bounds: regular files of at most 64 MiB,
//! 1,000 servers per file.

use serde_json::{Map, Value};
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

/// `s` as a TOML string (quoted and escaped by the TOML writer).
pub fn toml_str(s: &str) -> String {
    toml::Value::String(s.to_string()).to_string()
}

/// Largest client config file read (`~/.claude.json` keeps history: it grows).
const MAX_FILE: u64 = 64 << 20;
/// Most servers taken from one file.
const MAX_SERVERS: usize = 1000;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Client {
    ClaudeDesktop,
    ClaudeCode,
    Cursor,
    VsCode,
    Windsurf,
}

impl Client {
    pub fn name(self) -> &'static str {
        match self {
            Client::ClaudeDesktop => "Claude Desktop",
            Client::ClaudeCode => "Claude Code",
            Client::Cursor => "Cursor",
            Client::VsCode => "VS Code",
            Client::Windsurf => "Windsurf",
        }
    }

    /// The client a file belongs to, from its name and place.
    pub fn of(path: &Path) -> Option<Client> {
        let name = path.file_name()?.to_str()?;
        let parent = path.parent().and_then(Path::file_name).and_then(|p| p.to_str()).unwrap_or_default();
        Some(match (name, parent) {
            ("claude_desktop_config.json", _) => Client::ClaudeDesktop,
            (".claude.json", _) | (".mcp.json", _) => Client::ClaudeCode,
            ("mcp.json", ".cursor") => Client::Cursor,
            ("mcp.json", ".vscode") | ("mcp.json", "User") | ("settings.json", _) => Client::VsCode,
            ("mcp_config.json", _) => Client::Windsurf,
            _ => return None,
        })
    }
}

/// How one server is reached.
#[derive(Debug, Clone, PartialEq)]
pub enum Server {
    Stdio { command: String, args: Vec<String>, env: BTreeMap<String, String>, cwd: Option<String> },
    Http { url: String, headers: BTreeMap<String, String> },
}

/// One server entry of one client file.
#[derive(Debug, Clone)]
pub struct Entry {
    pub client: Client,
    pub file: PathBuf,
    pub name: String,
    pub server: Server,
}

/// The known files for this OS under `home` (and the project files under `project`), as they
/// exist.
pub fn known_files(home: &Path, project: Option<&Path>) -> Vec<PathBuf> {
    let mut user: Vec<PathBuf> =
        vec![home.join(".claude.json"), home.join(".cursor/mcp.json"), home.join(".codeium/windsurf/mcp_config.json")];
    if cfg!(target_os = "macos") {
        let support = home.join("Library/Application Support");
        user.push(support.join("Claude/claude_desktop_config.json"));
        user.push(support.join("Code/User/settings.json"));
        user.push(support.join("Code/User/mcp.json"));
    } else if cfg!(windows) {
        let appdata = std::env::var_os("APPDATA").map(PathBuf::from).unwrap_or_else(|| home.join("AppData/Roaming"));
        user.push(appdata.join("Claude/claude_desktop_config.json"));
        user.push(appdata.join("Code/User/settings.json"));
        user.push(appdata.join("Code/User/mcp.json"));
    } else {
        let config = std::env::var_os("XDG_CONFIG_HOME").map(PathBuf::from).unwrap_or_else(|| home.join(".config"));
        user.push(config.join("Claude/claude_desktop_config.json"));
        user.push(config.join("Code/User/settings.json"));
        user.push(config.join("Code/User/mcp.json"));
    }
    if let Some(p) = project {
        user.extend([p.join(".mcp.json"), p.join(".cursor/mcp.json"), p.join(".vscode/mcp.json")]);
    }
    user.into_iter().filter(|p| p.is_file()).collect()
}

/// JSON with `//` and `/* */` comments and trailing commas (VS Code's files) made plain JSON:
/// comments first (a comment may follow the last comma), then the trailing commas.
pub fn plain_json(text: &str) -> String {
    trailing_commas(&without_comments(text))
}

fn without_comments(text: &str) -> String {
    let b: Vec<char> = text.chars().collect();
    let mut out = String::with_capacity(text.len());
    let (mut i, mut in_str) = (0, false);
    while i < b.len() {
        let c = b[i];
        if in_str {
            out.push(c);
            if c == '\\' && i + 1 < b.len() {
                out.push(b[i + 1]);
                i += 1;
            } else if c == '"' {
                in_str = false;
            }
        } else if c == '"' {
            in_str = true;
            out.push(c);
        } else if c == '/' && b.get(i + 1) == Some(&'/') {
            while i < b.len() && b[i] != '\n' {
                i += 1;
            }
            continue;
        } else if c == '/' && b.get(i + 1) == Some(&'*') {
            i += 2;
            while i + 1 < b.len() && !(b[i] == '*' && b[i + 1] == '/') {
                i += 1;
            }
            i += 2;
            out.push(' ');
            continue;
        } else {
            out.push(c);
        }
        i += 1;
    }
    out
}

fn trailing_commas(text: &str) -> String {
    let b: Vec<char> = text.chars().collect();
    let mut out = String::with_capacity(text.len());
    let mut in_str = false;
    let mut i = 0;
    while i < b.len() {
        let c = b[i];
        if in_str {
            if c == '\\' && i + 1 < b.len() {
                out.push(c);
                out.push(b[i + 1]);
                i += 2;
                continue;
            }
            in_str = c != '"';
        } else if c == '"' {
            in_str = true;
        } else if c == ',' && matches!(b[i + 1..].iter().find(|c| !c.is_whitespace()), Some('}') | Some(']')) {
            i += 1;
            continue;
        }
        out.push(c);
        i += 1;
    }
    out
}

/// The text of `path`, a regular file of at most [`MAX_FILE`] bytes (read so: a file that grows
/// meanwhile is cut at the bound and refused).
pub fn read_text(path: &Path) -> Result<String, String> {
    use std::io::Read;
    let meta = std::fs::metadata(path).map_err(|e| format!("{}: {e}", path.display()))?;
    if !meta.is_file() {
        return Err(format!("{}: not a regular file", path.display()));
    }
    let mut text = String::new();
    let f = std::fs::File::open(path).map_err(|e| format!("{}: {e}", path.display()))?;
    f.take(MAX_FILE + 1).read_to_string(&mut text).map_err(|e| format!("{}: {e}", path.display()))?;
    if text.len() as u64 > MAX_FILE {
        return Err(format!("{}: larger than {MAX_FILE} bytes", path.display()));
    }
    Ok(text)
}

/// Read `path` (a client config file): its servers.
pub fn read(path: &Path) -> Result<Vec<Entry>, String> {
    let client =
        Client::of(path).ok_or_else(|| format!("{}: not a client config file Warden knows", path.display()))?;
    let text = read_text(path)?;
    let doc: Value = serde_json::from_str(&text)
        .or_else(|_| serde_json::from_str(&plain_json(&text)))
        .map_err(|e| format!("{}: not JSON ({e})", path.display()))?;
    let mut tables: Vec<&Map<String, Value>> = Vec::new();
    match client {
        Client::VsCode => {
            tables.extend(doc.get("servers").and_then(Value::as_object));
            tables.extend(doc.pointer("/mcp/servers").and_then(Value::as_object));
        }
        Client::ClaudeCode => {
            tables.extend(doc.get("mcpServers").and_then(Value::as_object));
            // `~/.claude.json` also keeps servers per project.
            for p in doc.get("projects").and_then(Value::as_object).into_iter().flat_map(|m| m.values()) {
                tables.extend(p.get("mcpServers").and_then(Value::as_object));
            }
        }
        _ => tables.extend(doc.get("mcpServers").and_then(Value::as_object)),
    }
    let mut out = Vec::new();
    for (name, v) in tables.into_iter().flat_map(|t| t.iter()) {
        if out.len() >= MAX_SERVERS {
            return Err(format!("{}: more than {MAX_SERVERS} servers", path.display()));
        }
        // A server the client has switched off is still listed (it may be switched on).
        let Some(server) = server_of(v) else { continue };
        out.push(Entry { client, file: path.to_path_buf(), name: name.clone(), server });
    }
    Ok(out)
}

fn strings(v: Option<&Value>) -> BTreeMap<String, String> {
    (v.and_then(Value::as_object).into_iter().flatten())
        .filter_map(|(k, v)| Some((k.clone(), v.as_str()?.to_string())))
        .collect()
}

fn server_of(v: &Value) -> Option<Server> {
    let s = |k: &str| v.get(k).and_then(Value::as_str).map(str::to_string);
    if let Some(command) = s("command") {
        let args = (v.get("args").and_then(Value::as_array).into_iter().flatten())
            .filter_map(|a| a.as_str().map(str::to_string))
            .collect();
        return Some(Server::Stdio { command, args, env: strings(v.get("env")), cwd: s("cwd") });
    }
    let url = s("url").or_else(|| s("serverUrl"))?;
    Some(Server::Http { url, headers: strings(v.get("headers")) })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn vs_code_files_with_comments_and_trailing_commas_are_read() {
        let plain = plain_json("{\n // a comment\n \"a\": \"x // not, a comment,}\", /* b */ \"c\": [1, 2,],\n}");
        let v: Value = serde_json::from_str(&plain).unwrap();
        assert_eq!(v, serde_json::json!({"a": "x // not, a comment,}", "c": [1, 2]}));
        // A commented-out last setting after the last comma (common in settings.json).
        let v: Value = serde_json::from_str(&plain_json("{\"a\": 1,\n // \"b\": 2\n}")).unwrap();
        assert_eq!(v, serde_json::json!({"a": 1}));
        let v: Value = serde_json::from_str(&plain_json("{\"a\": \"q\\\"/*\", /* unterminated")).unwrap_or(Value::Null);
        assert_eq!(v, Value::Null, "an unterminated comment: not JSON, and no panic");
    }
}
