//! Warden's built-in hardened tools, served in process as the `builtin` upstream.
//!
//! The tools are safe by construction for the two jobs copied most from the reference servers:
//! reading files (`files`: confined beneath roots by the kernel) and querying a database (`sql`:
//! structured, bound and read-only). The gateway treats this upstream like any other, so
//! authorization, argument guards, output sanitization, redaction and audit all apply to it.
#![forbid(unsafe_code)]

pub mod files;
pub mod sql;

use serde_json::{json, Value};
use warden_protocol::version;

pub use files::{Files, FilesSettings};
pub use sql::{Database, Sql, SqlSettings};

/// JSON-RPC error codes used here.
const METHOD_NOT_FOUND: i64 = -32601;
const INVALID_PARAMS: i64 = -32602;

/// The built-in MCP server.
pub struct Builtin {
    files: Option<Files>,
    sql: Option<Sql>,
}

impl Builtin {
    pub fn new(files: Option<FilesSettings>, sql: Option<SqlSettings>) -> Result<Builtin, String> {
        Ok(Builtin { files: files.map(Files::new).transpose()?, sql: sql.map(Sql::new).transpose()? })
    }

    /// One line for logs and `warden check`.
    pub fn describe(&self) -> String {
        let names = |tools: Vec<Value>| {
            tools.iter().filter_map(|t| t["name"].as_str().map(str::to_string)).collect::<Vec<_>>().join(", ")
        };
        let mut parts = Vec::new();
        if let Some(f) = &self.files {
            parts.push(format!("files [{}] via {}", names(f.tools()), f.method()));
        }
        if let Some(s) = &self.sql {
            parts.push(format!("sql [{}] read-only, {}", names(s.tools()), s.dialect()));
        }
        parts.join("; ")
    }

    fn tools(&self) -> Vec<Value> {
        let mut t = Vec::new();
        if let Some(f) = &self.files {
            t.extend(f.tools());
        }
        if let Some(s) = &self.sql {
            t.extend(s.tools());
        }
        t
    }

    /// Answer one request. Blocking (file and database work): call it off the async runtime.
    pub fn handle(&self, method: &str, params: Option<&Value>) -> Result<Value, (i64, String)> {
        match method {
            "initialize" => {
                let asked = params.and_then(|p| p.get("protocolVersion")).and_then(Value::as_str).unwrap_or("");
                let v = if version::is_supported(asked) { asked } else { version::LATEST };
                Ok(json!({
                    "protocolVersion": v,
                    "capabilities": {"tools": {"listChanged": false}},
                    "serverInfo": {"name": "warden-builtin", "title": "Warden built-in tools", "version": env!("CARGO_PKG_VERSION")},
                    "instructions": "Warden's built-in tools: files beneath configured directories and read-only SQL over allow-listed tables."
                }))
            }
            "ping" => Ok(json!({})),
            "tools/list" => Ok(json!({"tools": self.tools()})),
            "tools/call" => {
                let p = params.ok_or((INVALID_PARAMS, "params are required".to_string()))?;
                let name =
                    p.get("name").and_then(Value::as_str).ok_or((INVALID_PARAMS, "name is required".to_string()))?;
                let empty = json!({});
                let args = p.get("arguments").unwrap_or(&empty);
                if !args.is_object() {
                    return Err((INVALID_PARAMS, "arguments must be an object".into()));
                }
                let text = |r: Result<String, String>| match r {
                    Ok(t) => json!({"content": [{"type": "text", "text": t}], "isError": false}),
                    Err(e) => json!({"content": [{"type": "text", "text": e}], "isError": true}),
                };
                if let Some(r) = self.files.as_ref().and_then(|f| f.call(name, args)) {
                    return Ok(text(r));
                }
                if let Some(r) = self.sql.as_ref().and_then(|s| s.call(name, args)) {
                    return Ok(match r {
                        Ok(v) => {
                            json!({"content": [{"type": "text", "text": v.to_string()}], "structuredContent": v, "isError": false})
                        }
                        Err(e) => text(Err(e)),
                    });
                }
                Err((INVALID_PARAMS, format!("unknown tool {name:?}")))
            }
            m => Err((METHOD_NOT_FOUND, format!("method not found: {m}"))),
        }
    }
}
