//! A bare JSON-RPC loop over stdin and stdout, with no SDK, for the test servers that must show
//! plainly what they do (`warden-hostile`, `warden-flood`): each request line goes to a handler,
//! whose result (or "method not found") is written back, followed by any notifications it adds.

use serde_json::{json, Value};
use std::io::{BufRead, Write};

/// What the handler makes of one request: its result (`None`: method not found) and the
/// notifications to write after the answer.
pub struct Reply {
    pub result: Option<Value>,
    pub then: Vec<Value>,
}

impl From<Option<Value>> for Reply {
    fn from(result: Option<Value>) -> Reply {
        Reply { result, then: Vec::new() }
    }
}

/// Serve requests from stdin until it closes; lines that are not requests are skipped.
pub fn serve_stdio(mut handle: impl FnMut(&str, &Value) -> Reply) {
    let stdin = std::io::stdin();
    let mut stdout = std::io::stdout();
    for line in stdin.lock().lines() {
        let Ok(line) = line else { break };
        let Ok(msg) = serde_json::from_str::<Value>(&line) else { continue };
        let Some(id) = msg.get("id").cloned() else { continue };
        let reply = handle(msg["method"].as_str().unwrap_or(""), &msg);
        let answer = match reply.result {
            Some(result) => json!({"jsonrpc": "2.0", "id": id, "result": result}),
            None => json!({"jsonrpc": "2.0", "id": id, "error": {"code": -32601, "message": "method not found"}}),
        };
        let _ = writeln!(stdout, "{answer}");
        for n in reply.then {
            let _ = writeln!(stdout, "{n}");
        }
        let _ = stdout.flush();
    }
}
