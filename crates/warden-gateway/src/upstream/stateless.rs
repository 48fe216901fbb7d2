//! A connection to a 2026-07-28 (stateless) upstream ([`modern`] has the translation rules):
//! `server/discover`, calls with their rounds of questions put to the client, the
//! `subscriptions/listen` stream, and what such an upstream sends that the revision does not
//! allow (dropped).

use super::shared::Caller;
use super::{err, modern, Conn, ServerInit, Transport, MAX_PAGES};
use crate::config;
use crate::rpc::{cancelled_notification, CallResult, Peer};
use futures::future::join_all;
use serde_json::{json, Value};
use std::sync::atomic::Ordering;
use std::time::Duration;
use warden_protocol::jsonrpc::{self, ErrorObject, Id, Message};

impl Conn {
    /// Ask `server/discover` (the transport speaks the stateless revision meanwhile). A probe
    /// (`wait`) that gets no answer in time is forgotten without telling the server: a 2025
    /// server hears nothing before its `initialize` but the probe itself.
    pub(super) async fn discover(&self, m: &modern::Modern, wait: Option<Duration>) -> Result<ServerInit, String> {
        if let Transport::Http(t) = &self.transport {
            t.set_modern(true);
        }
        let r = self
            .request("server/discover", Some(m.discover_params()), None, wait)
            .await
            .map_err(|e| format!("server/discover failed: {e}"))?;
        modern::server_init(&r).ok_or_else(|| {
            format!("server/discover: the server does not speak {} (supportedVersions)", modern::REVISION)
        })
    }

    /// Is this a stateless (2026-07-28) upstream?
    pub fn is_modern(&self) -> bool {
        self.modern.get().is_some()
    }

    /// Open (or renew, or close) a modern upstream's `subscriptions/listen` stream for what it
    /// offers and what is subscribed.
    pub(super) async fn relisten(&self) {
        let (Some(m), Some(init)) = (self.modern.get(), self.init()) else { return };
        if !self.is_alive() {
            return;
        }
        let params = m.listen_params(&init.capabilities);
        match &self.transport {
            Transport::Http(t) => t.listen(params),
            Transport::Stdio(t) => {
                // One lock hold: two renewals at once leave one listen open.
                let mut listening = self.listening.lock();
                if let Some(old) = listening.take() {
                    let _ = t.send(&cancelled_notification(&old, "subscriptions renewed"));
                }
                if let Some(p) = params {
                    let id = Id::Str(format!("warden-listen-{}", self.made_ids.fetch_add(1, Ordering::Relaxed)));
                    *listening = Some(id.clone());
                    let _ = t.send(&Message::Request { id, method: "subscriptions/listen".into(), params: Some(p) });
                }
            }
            Transport::Builtin(_) => {}
        }
    }

    /// Put one of a modern upstream's questions to the client: the path a 2025 server's own
    /// request takes (the connection's handler), answered through [`Conn::respond`].
    async fn ask_client(
        &self,
        caller: Option<&Caller>,
        method: String,
        params: Option<Value>,
        ctx: Option<Peer>,
    ) -> CallResult {
        let Some(me) = self.me.upgrade() else {
            return Err(err(jsonrpc::INTERNAL_ERROR, format!("upstream {} closed", self.name)));
        };
        let id = Id::Str(format!("warden-input-{}", self.made_ids.fetch_add(1, Ordering::Relaxed)));
        let (tx, rx) = tokio::sync::oneshot::channel();
        self.asking.lock().insert(id.clone(), tx);
        let _forget = Asking { conn: self, id: id.clone() };
        let capability = config::ClientRequest::of(&method).map(|r| r.capability()).unwrap_or("");
        // The session that made the call answers for it (`shared.rs`), else the connection's.
        let handler = caller.map_or(&self.handler, |c| &c.handler);
        handler(&me, Message::Request { id, method: method.clone(), params }, ctx);
        // As long as the client takes (a person may be answering): the call's rule timeout
        // bounds the whole call, and the client's session ending ends the question.
        let answer = rx.await.unwrap_or_else(|_| Err(err(jsonrpc::INTERNAL_ERROR, "the client's answer was lost")));
        // The client cannot answer it: name the capability it lacks. (A question the operator
        // does not allow for this server is refused as such, not as a missing capability.)
        let by_operator =
            |e: &ErrorObject| e.data.as_ref().and_then(|d| d.get("refusedBy")) == Some(&json!("not_allowed"));
        answer.map_err(|e| match e.code {
            jsonrpc::METHOD_NOT_FOUND if !by_operator(&e) => {
                let mut m = err(
                    warden_protocol::modern::MISSING_CLIENT_CAPABILITY,
                    format!("upstream {} needs the client's {capability} capability: {}", self.name, e.message),
                );
                m.data = Some(json!({ "requiredCapabilities": { capability: {} } }));
                m
            }
            _ => e,
        })
    }

    /// Read a modern HTTP upstream's tool list again, for its `x-mcp-header` annotations.
    async fn relearn_tools(&self, m: &modern::Modern) {
        let Transport::Http(t) = &self.transport else { return };
        let mut cursor: Option<Value> = None;
        for _ in 0..MAX_PAGES {
            let params = m.with_meta(cursor.take().map(|c| json!({ "cursor": c })));
            let Ok(page) = self.call_once("tools/list", Some(params), None).await else { return };
            if let Some(tools) = page.get("tools").and_then(Value::as_array) {
                t.learn_tools(tools);
            }
            match page.get("nextCursor") {
                Some(c) if !c.is_null() => cursor = Some(c.clone()),
                _ => return,
            }
        }
    }

    /// A call to a 2026 upstream: Warden's own answers to what the revision removed, else the
    /// request with this connection's `_meta`, and each `input_required` round's questions asked
    /// of `ctx` (at most [`modern::MAX_ROUNDS`] rounds).
    pub(super) async fn call_stateless(
        &self,
        m: &modern::Modern,
        caller: Option<&Caller>,
        method: &str,
        params: Option<Value>,
        ctx: Option<Peer>,
    ) -> CallResult {
        if let Some(local) = m.local_for(caller.map_or(0, |c| c.side.id), method, params.as_ref()) {
            if local? {
                self.relisten().await;
            }
            return Ok(json!({}));
        }
        // Answers and state come only from Warden's own rounds: a client's would skip the
        // allow list, redaction and the record of each question.
        // (A task's answers, `tasks/update`, are vetted by Warden's task stage and go on.)
        let params = if method == "tasks/update" { params } else { modern::without_round_trip(params) };
        let mut params = m.with_meta_for(caller.map(|c| &c.side), params);
        let mut relisted = false;
        for _ in 0..modern::MAX_ROUNDS {
            let result = match self.call_once(method, Some(params.clone()), ctx.clone()).await {
                // The tool's `x-mcp-header` annotations changed (or were never listed here):
                // list the tools again and retry once, as the revision advises.
                Err(e) if e.code == warden_protocol::modern::HEADER_MISMATCH && method == "tools/call" && !relisted => {
                    relisted = true;
                    self.relearn_tools(m).await;
                    continue;
                }
                r => r.map_err(|e| modern::clean_error(method, e))?,
            };
            if method == "tools/list" {
                if let (Transport::Http(t), Some(tools)) =
                    (&self.transport, result.get("tools").and_then(Value::as_array))
                {
                    t.learn_tools(tools);
                }
            }
            let Some((questions, state)) = modern::input_required(&self.name, method, &result)? else {
                // A task handle and a task's own answers keep the extension's fields (Warden's
                // task stage rebuilds them: `pipeline/task.rs`).
                let task = result.get("resultType").and_then(Value::as_str) == Some("task");
                if method.starts_with("tasks/") || (task && method == "tools/call") {
                    return Ok(result);
                }
                if task {
                    return Err(err(
                        jsonrpc::INTERNAL_ERROR,
                        format!("upstream {} answered {method} with a task, which only tools/call may", self.name),
                    ));
                }
                return Ok(modern::clean_result(result));
            };
            let gathered = join_all(questions.into_iter().map(|(key, q, mut p)| {
                let ctx = ctx.clone();
                // The upstream's key rides along, for a 2026 client to see (`mrtr.rs`).
                warden_protocol::modern::put_input_key(&mut p, &key);
                async move { (key, self.ask_client(caller, q, p, ctx).await) }
            }))
            .await;
            params = modern::retry_params(params, modern::answers(gathered)?, state);
        }
        Err(err(
            jsonrpc::INTERNAL_ERROR,
            format!("upstream {} asked for input more than {} times", self.name, modern::MAX_ROUNDS),
        ))
    }
}

/// A modern upstream's message as a 2025 session expects it (false: drop it). The revision
/// has no server requests: one is dropped (its questions come only in `input_required`).
pub(super) fn modern_message(name: &str, msg: &mut Message) -> bool {
    match msg {
        Message::Notification { method, params } => modern::clean_notification(method, params),
        Message::Request { method, .. } => {
            tracing::warn!(upstream = %name, method = %method, "a 2026 upstream sent a request of its own; dropped");
            false
        }
        _ => true,
    }
}

/// Forgets a question put to the client when its call ends (answered, failed or dropped), and
/// stops the task still asking.
pub(super) struct Asking<'a> {
    conn: &'a Conn,
    id: Id,
}

impl Drop for Asking<'_> {
    fn drop(&mut self) {
        self.conn.asking.lock().remove(&self.id);
        if let Some(h) = self.conn.serving.lock().remove(&self.id) {
            h.abort();
        }
    }
}
