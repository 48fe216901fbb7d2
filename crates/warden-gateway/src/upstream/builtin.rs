//! The `builtin` upstream: Warden's own tools (`warden-tools`) behind the same connection
//! interface as a child process or a remote server, so every stage of the pipeline applies to
//! them. Requests run on the blocking pool (file and database work); a cancelled request's
//! answer is dropped.

use super::{Incoming, IncomingTx, Spec};
use crate::config;
use parking_lot::Mutex;
use std::collections::HashMap;
use std::sync::Arc;
use warden_protocol::jsonrpc::{self, ErrorObject, Id, Message};
use warden_tools::{Builtin, Database, FilesSettings, SqlSettings};

/// Build the tools from an upstream's config (roots and database must exist).
pub fn open(u: &config::Upstream) -> Result<Builtin, String> {
    let files = u.files.as_ref().map(|f| FilesSettings {
        roots: f.roots.clone(),
        writable: f.writable,
        max_file_bytes: f.max_file_bytes,
        max_entries: f.max_entries,
    });
    let sql = match &u.sql {
        Some(q) => Some(SqlSettings {
            database: match (&q.database, &q.url) {
                (Some(path), _) => Database::Sqlite(path.clone()),
                (None, Some(url)) => Database::Postgres {
                    url: url.clone(),
                    password: q
                        .password
                        .as_ref()
                        .map(|p| p.resolve())
                        .transpose()
                        .map_err(|e| format!("upstream {}: sql.password: {e}", u.name))?,
                    schema: q.schema.clone(),
                },
                (None, None) => return Err(format!("upstream {}: sql needs database or url", u.name)),
            },
            tables: q.tables.clone(),
            raw_query: q.raw_query,
            max_rows: q.max_rows,
            timeout: std::time::Duration::from_millis(q.timeout_ms),
        }),
        None => None,
    };
    Builtin::new(files, sql).map_err(|e| format!("upstream {}: {e}", u.name))
}

pub struct BuiltinTransport {
    tools: Arc<Builtin>,
    incoming: IncomingTx,
    running: Arc<Mutex<HashMap<Id, tokio::task::AbortHandle>>>,
}

impl BuiltinTransport {
    pub fn new(spec: &Spec, incoming: IncomingTx) -> Result<BuiltinTransport, String> {
        let tools = spec.builtin.clone().ok_or("builtin upstream without tools")?;
        Ok(BuiltinTransport { tools, incoming, running: Arc::default() })
    }

    pub fn send(&self, msg: Message) -> Result<(), String> {
        match msg {
            Message::Request { id, method, params } => {
                let tools = self.tools.clone();
                let incoming = self.incoming.clone();
                let running = self.running.clone();
                let key = id.clone();
                let mut map = self.running.lock();
                let task = tokio::spawn(async move {
                    let res = tokio::task::spawn_blocking(move || tools.handle(&method, params.as_ref())).await;
                    running.lock().remove(&id);
                    let msg = match res {
                        Ok(Ok(result)) => Message::Response { id, result },
                        Ok(Err((code, m))) => Message::Error { id, error: ErrorObject::new(code, m) },
                        Err(_) => {
                            Message::Error { id, error: ErrorObject::new(jsonrpc::INTERNAL_ERROR, "tool failed") }
                        }
                    };
                    incoming.send(Incoming::Message { msg, related: None });
                });
                map.insert(key, task.abort_handle());
                Ok(())
            }
            Message::Notification { method, params } if method == "notifications/cancelled" => {
                if let Some(id) = jsonrpc::cancelled_request_id(params.as_ref()) {
                    if let Some(h) = self.running.lock().remove(&id) {
                        h.abort();
                    }
                }
                Ok(())
            }
            // notifications/initialized and answers to requests it never sends
            _ => Ok(()),
        }
    }

    pub fn close(&self) {
        for (_, h) in self.running.lock().drain() {
            h.abort();
        }
        self.incoming.send(Incoming::Closed("closed".into()));
    }
}
