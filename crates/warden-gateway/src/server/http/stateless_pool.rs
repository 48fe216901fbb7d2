//! Serving MCP 2026-07-28 (stateless) requests on the `/mcp` endpoint: each request is checked
//! (`server::stateless`), then runs in its caller's pooled session — one per principal (binding
//! key: issuer, subject, tenant), never shared across principals, created on first use, bounded
//! and reaped like any session — so the upstream connections, limits and audit trail are the
//! same as for a 2025 session. What an upstream asks the client mid-call becomes a multi
//! round-trip (`input_required`, `mrtr.rs`), offered only when the request declared the
//! capability it takes (else -32021).

use super::{json_response, new_session_id, HttpResponse, HttpSession, McpEndpoint, Streams};
use crate::rpc::Calls;
use crate::server::stateless::{self, Stateless};
use crate::server::{Conn, Origin};
use http::{HeaderMap, StatusCode};
use serde_json::{json, Value};
use std::sync::atomic::AtomicU64;
use std::sync::{Arc, OnceLock};
use warden_policy::Principal;
use warden_protocol::jsonrpc::{self, ErrorObject, Id, Message};
use warden_protocol::version;

/// An error answer with `status`, unless the error carries its own (and its `Retry-After`).
fn error_response(status: StatusCode, id: Id, error: ErrorObject) -> HttpResponse {
    let http = error.http.or(Some(jsonrpc::HttpStatus { status: status.as_u16(), retry_after: None }));
    super::json_answer(bytes::Bytes::from(Message::Error { id, error }.to_json()), http)
}

impl McpEndpoint {
    /// Answer one stateless request.
    pub(super) async fn stateless(
        self: &Arc<Self>,
        msg: Message,
        h: &HeaderMap,
        principal: Arc<Principal>,
        want_sse: bool,
        client: Option<std::net::IpAddr>,
    ) -> HttpResponse {
        if let Message::Notification { .. } = msg {
            // Nothing a stateless client notifies needs an answer (cancellation is closing the
            // response stream).
            return http::Response::builder()
                .status(StatusCode::ACCEPTED)
                .body(axum::body::Body::empty())
                .expect("static");
        }
        let req = match stateless::check(msg, h) {
            Ok(r) => r,
            Err((id, r)) => return error_response(r.status, id, r.error),
        };
        let (sid, init) = match self.pooled_session(&principal, &req, client).await {
            Ok(s) => s,
            Err((status, e)) => return error_response(status, req.id, e),
        };
        if req.method == "server/discover" {
            return json_response(&Message::Response { id: req.id, result: stateless::discover(&init) });
        }
        if req.method == "subscriptions/listen" {
            return self.listen(&sid, &init, req, &principal).await;
        }
        let Some(session) = self.sessions.read().get(&sid).cloned() else {
            return error_response(
                StatusCode::SERVICE_UNAVAILABLE,
                req.id,
                ErrorObject::new(jsonrpc::INTERNAL_ERROR, "session closed meanwhile; retry"),
            );
        };
        session.last_seen.store(self.now_ms(), std::sync::atomic::Ordering::Relaxed);
        let svc = session.conn.get().expect("pooled sessions are initialized").session.clone();
        if req.method == "tools/call" {
            let annotated = match req.params.get("name").and_then(Value::as_str) {
                Some(n) => svc.clone().header_params(n.to_string()).await,
                None => None,
            };
            if let Err(r) = stateless::check_params(annotated.as_deref().unwrap_or_default(), &req.params, h) {
                return error_response(r.status, req.id, r.error);
            }
        }
        self.runs.serve(svc, req, principal, want_sse, self.opts.sse_grace.is_zero()).await
    }

    /// `subscriptions/listen`: one long SSE answer on which the caller's pooled session's
    /// change notifications arrive, of the types the request opted into and the server offers,
    /// each tagged with the subscription's id (the request's). Resource subscriptions go
    /// through the pipeline (authorized like a read) and end with the stream.
    async fn listen(
        self: &Arc<Self>,
        sid: &str,
        init: &Value,
        req: Stateless,
        principal: &Arc<Principal>,
    ) -> HttpResponse {
        let Some(session) = self.sessions.read().get(sid).cloned() else {
            return error_response(
                StatusCode::SERVICE_UNAVAILABLE,
                req.id,
                ErrorObject::new(jsonrpc::INTERNAL_ERROR, "retry"),
            );
        };
        let svc = session.conn.get().expect("pooled sessions are initialized").session.clone();
        let caps = &init["capabilities"];
        let want = &req.params["notifications"];
        let mut honored = serde_json::Map::new();
        for (flag, cap) in
            [("toolsListChanged", "tools"), ("promptsListChanged", "prompts"), ("resourcesListChanged", "resources")]
        {
            if want[flag] == true && caps[cap]["listChanged"] == true {
                honored.insert(flag.into(), true.into());
            }
        }
        let mut uris = Vec::new();
        if caps["resources"]["subscribe"] == true {
            for uri in want["resourceSubscriptions"].as_array().into_iter().flatten().filter_map(Value::as_str).take(64)
            {
                let quiet = crate::rpc::Peer::new(Arc::new(Nowhere), Arc::new(Calls::new("warden-")), None);
                let sub = svc.clone().request(
                    Id::Str(format!("listen-{uri}")),
                    "resources/subscribe".into(),
                    Some(json!({"uri": uri})),
                    quiet,
                    Some(principal.clone()),
                );
                if sub.await.is_ok() {
                    *self.listen_refs.lock().entry((sid.to_string(), uri.to_string())).or_default() += 1;
                    uris.push(uri.to_string());
                }
            }
            if !uris.is_empty() {
                honored.insert("resourceSubscriptions".into(), json!(uris));
            }
        }
        let mut notes = self.fan_out(sid, &session);
        let (me, sid_owned) = (self.clone(), sid.to_string());
        let tag = req.id.to_value();
        let (tx, out) = tokio::sync::mpsc::unbounded_channel::<bytes::Bytes>();
        let event = |m: &Message| bytes::Bytes::from(warden_protocol::sse::encode(None, &m.to_json(), None));
        let ack = Message::Notification {
            method: "notifications/subscriptions/acknowledged".into(),
            params: Some(json!({"_meta": {SUBSCRIPTION_ID: tag}, "notifications": honored})),
        };
        let _ = tx.send(event(&ack));
        tokio::spawn(async move {
            loop {
                let m = tokio::select! {
                    // The client closed the stream: the subscription ends.
                    _ = tx.closed() => break,
                    m = notes.recv() => match m {
                        Ok(m) => m,
                        Err(tokio::sync::broadcast::error::RecvError::Lagged(_)) => continue,
                        Err(_) => break,
                    },
                };
                let Message::Notification { method, params } = m else { continue };
                let opted = match method.as_str() {
                    "notifications/tools/list_changed" => honored.contains_key("toolsListChanged"),
                    "notifications/prompts/list_changed" => honored.contains_key("promptsListChanged"),
                    "notifications/resources/list_changed" => honored.contains_key("resourcesListChanged"),
                    "notifications/resources/updated" => {
                        params.as_ref().and_then(|p| p["uri"].as_str()).is_some_and(|u| uris.iter().any(|s| s == u))
                    }
                    _ => false,
                };
                if !opted {
                    continue;
                }
                // Whatever shape the upstream gave them: an object with an object `_meta`.
                let mut p = params.filter(Value::is_object).unwrap_or_else(|| json!({}));
                if !p["_meta"].is_object() {
                    p["_meta"] = json!({});
                }
                p["_meta"][SUBSCRIPTION_ID] = tag.clone();
                if tx.send(event(&Message::Notification { method, params: Some(p) })).is_err() {
                    break;
                }
            }
            for uri in uris {
                // Another listen of this session still wants it: it stays subscribed.
                let last = {
                    let mut refs = me.listen_refs.lock();
                    let key = (sid_owned.clone(), uri.clone());
                    let n = refs.get(&key).copied().unwrap_or(1).saturating_sub(1);
                    if n == 0 {
                        refs.remove(&key);
                    } else {
                        refs.insert(key, n);
                    }
                    n == 0
                };
                if !last {
                    continue;
                }
                let quiet = crate::rpc::Peer::new(Arc::new(Nowhere), Arc::new(Calls::new("warden-")), None);
                let _ = svc
                    .clone()
                    .request(
                        Id::Str(format!("unlisten-{uri}")),
                        "resources/unsubscribe".into(),
                        Some(json!({"uri": uri})),
                        quiet,
                        None,
                    )
                    .await;
            }
        });
        super::sse_response(out)
    }

    /// A receiver of the pooled session's session-wide notifications. The first listen attaches
    /// the session's standalone stream and pumps it into a broadcast; the pump (and with it the
    /// attachment, so the session can be reaped) ends when no listen is left.
    fn fan_out(self: &Arc<Self>, sid: &str, session: &Arc<HttpSession>) -> tokio::sync::broadcast::Receiver<Message> {
        let mut listens = self.listens.lock();
        if let Some(tx) = listens.get(sid) {
            return tx.subscribe();
        }
        let (btx, brx) = tokio::sync::broadcast::channel(256);
        if let Some(mut rx) = session.streams.attach_standalone(false) {
            listens.insert(sid.to_string(), btx.clone());
            let (me, sid) = (self.clone(), sid.to_string());
            tokio::spawn(async move {
                loop {
                    let b = tokio::select! {
                        b = rx.recv() => b,
                        // Nobody listens any more: let the session go (checked now and then).
                        _ = tokio::time::sleep(std::time::Duration::from_secs(5)) => {
                            if btx.receiver_count() == 0 {
                                break;
                            }
                            continue;
                        }
                    };
                    let Some(b) = b else { break };
                    let Some(m) = decode(&b) else { continue };
                    if btx.send(m).is_err() {
                        break;
                    }
                }
                me.listens.lock().remove(&sid);
            });
        }
        brx
    }

    /// The caller's pooled session, if it is still there.
    /// One of an older configuration generation is retired (a new one is made for the caller).
    fn live_pooled(self: &Arc<Self>, key: &str) -> Option<(String, Value)> {
        let (sid, init) = self.pooled.lock().get(key).cloned()?;
        let s = self.sessions.read().get(&sid).cloned()?;
        if s.generation != self.svc.generation() {
            self.retire(&sid, &s);
            return None;
        }
        Some((sid, init))
    }

    /// The caller's pooled session (created on first use): its id and its `initialize` result.
    async fn pooled_session(
        self: &Arc<Self>,
        principal: &Arc<Principal>,
        req: &Stateless,
        client: Option<std::net::IpAddr>,
    ) -> Result<(String, Value), (StatusCode, ErrorObject)> {
        // One pooled session per caller and set of client capabilities it may be asked for, so
        // a 2025 upstream is told (in `initialize`) exactly what this request declared.
        let caps = capability_class(&req.client_capabilities);
        let owner = principal.binding_key();
        let key = format!("{owner}|{caps}");
        if let Some(found) = self.live_pooled(&key) {
            return Ok(found);
        }
        // One creation per caller at a time: concurrent first requests share the session, and
        // the count of the caller's pooled sessions below holds.
        let lock = {
            let mut creating = self.creating.lock();
            if creating.len() > 4096 {
                creating.retain(|_, l| Arc::strong_count(l) > 1);
            }
            creating.entry(owner.clone()).or_default().clone()
        };
        let _creating = lock.lock().await;
        if let Some(found) = self.live_pooled(&key) {
            return Ok(found);
        }
        let classes = self.sessions.read().values().filter(|s| s.streams.pooled && s.owner == owner).count();
        if classes >= MAX_CAPABILITY_SETS {
            return Err((
                StatusCode::TOO_MANY_REQUESTS,
                ErrorObject::new(
                    jsonrpc::SERVER_ERROR,
                    format!("at most {MAX_CAPABILITY_SETS} different sets of client capabilities at a time"),
                ),
            ));
        }
        let sid = new_session_id();
        let streams = Arc::new(Streams::new(false, self.opts.sse_retry_ms, true));
        let session = Arc::new(HttpSession {
            owner: owner.clone(),
            conn: OnceLock::new(),
            streams: streams.clone(),
            last_seen: AtomicU64::new(self.now_ms()),
            checked: AtomicU64::new(0),
            sealed: None,
            generation: self.svc.generation(),
        });
        {
            let mut map = self.sessions.write();
            if map.len() >= self.opts.max_sessions {
                return Err((
                    StatusCode::SERVICE_UNAVAILABLE,
                    ErrorObject::new(jsonrpc::SERVER_ERROR, "Too many sessions"),
                ));
            }
            map.insert(sid.clone(), session.clone());
        }
        let calls = Arc::new(Calls::new("warden-"));
        let peer = crate::rpc::Peer::new(streams.clone(), calls.clone(), None);
        // The request's capabilities (what a question needs is checked again per request, by
        // what its `_meta` declares: `mrtr.rs`).
        let params = json!({
            "protocolVersion": version::LATEST,
            "capabilities": caps,
            "clientInfo": req.client_info.clone().unwrap_or_else(|| json!({"name": "stateless-client", "version": "0"})),
        });
        let origin = Origin { session: sid.clone(), client, stateless: true };
        match self.svc.initialize(params, peer, principal.clone(), origin).await {
            Ok(init) => {
                let _ = session.conn.set(Conn::new(init.session, streams, calls));
                let mut pooled = self.pooled.lock();
                // Bounded by the sessions themselves; forget entries whose session was reaped.
                if pooled.len() >= self.opts.max_sessions {
                    let live = self.sessions.read();
                    pooled.retain(|_, (s, _)| live.contains_key(s));
                }
                pooled.insert(key, (sid.clone(), init.result.clone()));
                Ok((sid, init.result))
            }
            Err(e) => {
                self.sessions.write().remove(&sid);
                let status = e.http.and_then(|h| StatusCode::from_u16(h.status).ok()).unwrap_or(StatusCode::OK);
                Err((status, e))
            }
        }
    }
}

const SUBSCRIPTION_ID: &str = "io.modelcontextprotocol/subscriptionId";

/// The MCP Apps HTML profile.
const APP_HTML: &str = "text/html;profile=mcp-app";

/// Pooled sessions of one caller at a time (one per set of client capabilities).
const MAX_CAPABILITY_SETS: usize = 8;

/// The client capabilities an upstream may use, reduced to what changes what it may ask
/// (a bounded set of shapes: a caller cannot mint sessions with made-up capabilities).
fn capability_class(caps: &Value) -> Value {
    let mut out = serde_json::Map::new();
    for (cap, modes) in
        [("sampling", &["tools", "context"][..]), ("elicitation", &["form", "url"][..]), ("roots", &[][..])]
    {
        if let Some(c) = caps.get(cap).filter(|c| c.is_object()) {
            let kept: serde_json::Map<String, Value> =
                modes.iter().filter(|m| c.get(**m).is_some()).map(|m| (m.to_string(), json!({}))).collect();
            out.insert(cap.into(), Value::Object(kept));
        }
    }
    // The extensions Warden relays that change what an upstream answers: tasks (a call may
    // become a task) and MCP Apps (the HTML profile the host renders), in known shapes only.
    let mut ext = serde_json::Map::new();
    if warden_protocol::modern::declares_tasks(caps) {
        ext.insert(warden_protocol::modern::TASKS_EXTENSION.into(), json!({}));
    }
    if let Some(ui) = caps.pointer(&format!("/extensions/{}", crate::extensions::UI.replace('/', "~1"))) {
        let known = ui.get("mimeTypes").and_then(Value::as_array).is_some_and(|m| m.iter().any(|t| t == APP_HTML));
        ext.insert(crate::extensions::UI.into(), if known { json!({"mimeTypes": [APP_HTML]}) } else { json!({}) });
    }
    if !ext.is_empty() {
        out.insert("extensions".into(), Value::Object(ext));
    }
    Value::Object(out)
}

/// Where the internal subscribe calls' own messages go: nowhere.
struct Nowhere;

impl crate::rpc::Outbound for Nowhere {
    fn send(&self, _stream: Option<u64>, _msg: Message) -> bool {
        false
    }
}

/// The JSON-RPC message of one encoded SSE event.
fn decode(b: &[u8]) -> Option<Message> {
    let text = std::str::from_utf8(b).ok()?;
    let data: String =
        text.lines().filter_map(|l| l.strip_prefix("data:")).map(str::trim_start).collect::<Vec<_>>().join("\n");
    if data.is_empty() {
        return None;
    }
    Message::parse(data.as_bytes(), jsonrpc::DEFAULT_MAX_DEPTH).ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn capability_classes_keep_known_shapes_only() {
        let caps = json!({"sampling": {"tools": {}, "made-up": {}}, "elicitation": {"form": {}}, "experimental": {"x": 1},
            "extensions": {"io.modelcontextprotocol/tasks": {"x": 1}, "io.modelcontextprotocol/ui": {"mimeTypes":
                ["text/html;profile=mcp-app", "application/x-made-up"]}, "com.example/other": {}}});
        assert_eq!(
            capability_class(&caps),
            json!({"sampling": {"tools": {}}, "elicitation": {"form": {}}, "extensions": {
                "io.modelcontextprotocol/tasks": {}, "io.modelcontextprotocol/ui": {"mimeTypes": ["text/html;profile=mcp-app"]}}})
        );
        assert_eq!(capability_class(&json!({"roots": {"listChanged": true}})), json!({"roots": {}}));
    }
}
