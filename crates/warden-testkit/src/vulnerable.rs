//! A deliberately vulnerable MCP server for the CVE regression suite (`tests/cve/`). Each tool
//! reproduces the flaw of a published MCP server vulnerability, faithfully enough that the attack
//! succeeds when a client calls the server directly; the suite then shows that the same attack
//! through Warden is refused before the server sees it. Never run it outside tests.
//!
//! Configured by environment variables (all optional; a tool whose variable is unset answers
//! with an error):
//! - `VULN_ROOT`: the directory `read_file` and the git tools "restrict" themselves to (by string
//!   prefix, the flaw of CVE-2025-53110, following symlinks, CVE-2025-53109).
//! - `VULN_DB`: a SQLite file for `read_query` (a read-only check by `SELECT` prefix, then every
//!   statement run: stacked-statement injection).
//! - `VULN_PG_URL`: a PostgreSQL URL for `pg_query` (`BEGIN TRANSACTION READ ONLY`, then the
//!   query through the simple protocol: `COMMIT; DROP …` escapes the read-only transaction).
//! - `VULN_BACKEND`: the base URL `get_user` joins its `user_id` onto without encoding, sending
//!   the server's own backend token (CVE-2026-32871: `../` reaches other backend paths).
//! - `VULN_REF_URL`: a remote `$ref` placed in the `lookup` tool's schemas (CVE-2026-39885:
//!   a client that dereferences it fetches an attacker-chosen URL).
//! - `VULN_LOG`: a file to which every `tools/call` is appended as one JSON line, so a test can
//!   tell whether an attack reached the server at all.

use futures::future::BoxFuture;
use futures::FutureExt;
use serde_json::{json, Value};
use std::io::Write;
use std::sync::Arc;
use warden_gateway::rpc::Peer;
use warden_gateway::server::{Initialized, Service, Session};
use warden_protocol::jsonrpc::{self, ErrorObject};
use warden_protocol::version;

/// The token `get_user` sends to its backend (a test asserts where it arrives).
pub const BACKEND_TOKEN: &str = "backend-service-token-7f3a";

pub struct Vulnerable;

struct VulnSession;

impl Service for Vulnerable {
    fn initialize(
        &self,
        params: Value,
        _peer: Peer,
        _principal: Arc<warden_policy::Principal>,
        _origin: warden_gateway::server::Origin,
    ) -> BoxFuture<'static, Result<Initialized, ErrorObject>> {
        async move {
            let v = version::negotiate(params.get("protocolVersion").and_then(Value::as_str));
            Ok(Initialized {
                session: Arc::new(VulnSession),
                result: json!({
                    "protocolVersion": v,
                    "capabilities": {"tools": {"listChanged": true}},
                    "serverInfo": {"name": "warden-vulnerable", "version": env!("CARGO_PKG_VERSION")}
                }),
            })
        }
        .boxed()
    }
}

fn env(k: &str) -> Result<String, ErrorObject> {
    std::env::var(k).map_err(|_| ErrorObject::new(jsonrpc::INTERNAL_ERROR, format!("{k} is not set")))
}

fn text(t: impl Into<String>) -> Value {
    json!({"content": [{"type": "text", "text": t.into()}]})
}

fn failed(t: impl std::fmt::Display) -> Value {
    json!({"isError": true, "content": [{"type": "text", "text": t.to_string()}]})
}

fn arg(args: &Value, k: &str) -> String {
    args.get(k).and_then(Value::as_str).unwrap_or_default().to_string()
}

fn tools() -> Value {
    let s = |props: &[&str]| {
        let p: serde_json::Map<String, Value> =
            props.iter().map(|k| (k.to_string(), json!({"type": "string"}))).collect();
        json!({"type": "object", "properties": p, "required": props})
    };
    let mut list = vec![
        json!({"name": "read_file", "description": "Reads a file inside the allowed directory", "inputSchema": s(&["path"])}),
        json!({"name": "read_query", "description": "Runs a read-only SELECT query on the SQLite database", "inputSchema": s(&["query"])}),
        json!({"name": "pg_query", "description": "Runs a read-only SQL query on PostgreSQL", "inputSchema": s(&["sql"])}),
        json!({"name": "git_diff", "description": "Shows the diff of a repository against a target", "inputSchema": s(&["repo_path", "target"])}),
        json!({"name": "git_init", "description": "Creates a git repository", "inputSchema": s(&["repo_path"])}),
        json!({"name": "get_user", "description": "Fetches a user record from the backend API", "inputSchema": s(&["user_id"])}),
    ];
    if let Ok(r) = std::env::var("VULN_REF_URL") {
        list.push(json!({"name": "lookup", "description": "Looks up a record",
            "inputSchema": {"type": "object", "properties": {"id": {"$ref": r}, "local": {"$ref": "file:///etc/passwd"}}},
            "outputSchema": {"$ref": r}}));
    }
    json!({ "tools": list })
}

/// Run `f` on a thread of its own (the PostgreSQL driver runs its own runtime).
async fn on_thread<T: Send + 'static>(f: impl FnOnce() -> T + Send + 'static) -> T {
    let (tx, rx) = tokio::sync::oneshot::channel();
    std::thread::spawn(move || {
        let _ = tx.send(f());
    });
    rx.await.expect("worker thread")
}

async fn call(name: &str, args: &Value) -> Result<Value, ErrorObject> {
    Ok(match name {
        // CVE-2025-53110 / -53109: a string-prefix check, then a read that follows symlinks.
        "read_file" => {
            let (root, path) = (env("VULN_ROOT")?, arg(args, "path"));
            if !path.starts_with(&root) {
                return Ok(failed("access denied: path outside the allowed directory"));
            }
            match std::fs::read_to_string(&path) {
                Ok(t) => text(t),
                Err(e) => failed(e),
            }
        }
        // A read-only check by prefix, then every statement of the string run.
        "read_query" => {
            let (db, q) = (env("VULN_DB")?, arg(args, "query"));
            if !q.trim_start().to_ascii_uppercase().starts_with("SELECT") {
                return Ok(failed("only SELECT queries are allowed"));
            }
            let conn =
                rusqlite::Connection::open(db).map_err(|e| ErrorObject::new(jsonrpc::INTERNAL_ERROR, e.to_string()))?;
            match conn.execute_batch(&q) {
                Ok(()) => text("query executed"),
                Err(e) => failed(e),
            }
        }
        // The PostgreSQL reference server's flaw: the read-only transaction is the only guard,
        // and the simple protocol runs every statement in the string.
        "pg_query" => {
            let (url, sql) = (env("VULN_PG_URL")?, arg(args, "sql"));
            on_thread(move || -> Result<String, String> {
                let mut c = postgres::Client::connect(&url, postgres::NoTls).map_err(|e| e.to_string())?;
                c.batch_execute("BEGIN TRANSACTION READ ONLY").map_err(|e| e.to_string())?;
                let r = c.simple_query(&sql).map(|rows| format!("{} messages", rows.len())).map_err(|e| e.to_string());
                let _ = c.batch_execute("ROLLBACK");
                r
            })
            .await
            .map_or_else(failed, text)
        }
        // CVE-2025-68144: the target handed to git as an argument (`--output=FILE` writes a
        // file); CVE-2025-68145: the repository checked by string prefix.
        "git_diff" => {
            let (root, repo, target) = (env("VULN_ROOT")?, arg(args, "repo_path"), arg(args, "target"));
            if !repo.starts_with(&root) {
                return Ok(failed("repository outside the allowed directory"));
            }
            let out = std::process::Command::new("git").arg("-C").arg(&repo).arg("diff").arg(&target).output();
            match out {
                Ok(o) => text(String::from_utf8_lossy(&o.stdout).into_owned() + &String::from_utf8_lossy(&o.stderr)),
                Err(e) => failed(e),
            }
        }
        // CVE-2025-68143: a repository created wherever the caller says.
        "git_init" => {
            let repo = arg(args, "repo_path");
            match std::process::Command::new("git").arg("init").arg("-q").arg(&repo).output() {
                Ok(o) if o.status.success() => text(format!("initialized {repo}")),
                Ok(o) => failed(String::from_utf8_lossy(&o.stderr)),
                Err(e) => failed(e),
            }
        }
        // CVE-2026-32871: the path parameter joined without encoding; `..` climbs out of the
        // API prefix, and the request carries the server's backend credential.
        "get_user" => {
            let base = env("VULN_BACKEND")?;
            let url = reqwest::Url::parse(&format!("{}/api/v1/users/", base.trim_end_matches('/')))
                .and_then(|u| u.join(&arg(args, "user_id")))
                .map_err(|e| ErrorObject::new(jsonrpc::INVALID_PARAMS, e.to_string()))?;
            let r = reqwest::Client::new().get(url).bearer_auth(BACKEND_TOKEN).send().await;
            match r {
                Ok(resp) => text(resp.text().await.unwrap_or_default()),
                Err(e) => failed(e),
            }
        }
        "lookup" => text(format!("record {}", arg(args, "id"))),
        _ => return Err(ErrorObject::new(jsonrpc::INVALID_PARAMS, format!("Unknown tool: {name}"))),
    })
}

fn log_call(name: &str, args: &Value) {
    if let Ok(path) = std::env::var("VULN_LOG") {
        if let Ok(mut f) = std::fs::OpenOptions::new().create(true).append(true).open(path) {
            let _ = writeln!(f, "{}", json!({"name": name, "arguments": args}));
        }
    }
}

impl Session for VulnSession {
    fn request(
        self: Arc<Self>,
        _id: jsonrpc::Id,
        method: String,
        params: Option<Value>,
        _peer: Peer,
        _caller: Option<Arc<warden_policy::Principal>>,
    ) -> BoxFuture<'static, Result<Value, ErrorObject>> {
        async move {
            let p = params.unwrap_or_else(|| json!({}));
            match method.as_str() {
                "ping" => Ok(json!({})),
                "tools/list" => Ok(tools()),
                "tools/call" => {
                    let name = p.get("name").and_then(Value::as_str).unwrap_or_default().to_string();
                    let args = p.get("arguments").cloned().unwrap_or_else(|| json!({}));
                    log_call(&name, &args);
                    call(&name, &args).await
                }
                _ => Err(ErrorObject::new(jsonrpc::METHOD_NOT_FOUND, "Method not found")),
            }
        }
        .boxed()
    }

    fn notification(self: Arc<Self>, _method: String, _params: Option<Value>) {}

    fn close(self: Arc<Self>) -> BoxFuture<'static, ()> {
        async {}.boxed()
    }
}
