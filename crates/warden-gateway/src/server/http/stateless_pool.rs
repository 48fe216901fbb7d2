//! Serving MCP 2026-07-28 (stateless) requests on the `/mcp` endpoint: each request is checked
//! (`server::stateless`), then runs in its caller's pooled session — one per principal (binding
//! key: issuer, subject, tenant), never shared across principals, created on first use, bounded
//! and reaped like any session — so the upstream connections, limits and audit trail are the
//! same as for a 2025 session. What an upstream asks the client mid-call becomes a multi
//! round-trip (`input_required`, `mrtr.rs`), offered only when the request declared the
//! capability it takes (else -32021).

use super::{json_response, new_session_id, HttpResponse, HttpSession, McpEndpoint, Streams, StreamsInner};
use crate::rpc::Calls;
use crate::server::stateless::{self, Stateless};
use crate::server::{Conn, Origin};
use http::{HeaderMap, StatusCode};
use serde_json::{json, Value};
use std::sync::atomic::{AtomicU64, AtomicUsize};
use std::sync::{Arc, OnceLock};
use warden_policy::Principal;
use warden_protocol::jsonrpc::{self, ErrorObject, Id, Message};
use warden_protocol::version;

fn error_response(status: StatusCode, id: Id, error: ErrorObject) -> HttpResponse {
    let mut r = json_response(&Message::Error { id, error });
    *r.status_mut() = status;
    r
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
        let Some(session) = self.sessions.read().get(&sid).cloned() else {
            return error_response(
                StatusCode::SERVICE_UNAVAILABLE,
                req.id,
                ErrorObject::new(jsonrpc::INTERNAL_ERROR, "session closed meanwhile; retry"),
            );
        };
        session.last_seen.store(self.now_ms(), std::sync::atomic::Ordering::Relaxed);
        let svc = session.conn.get().expect("pooled sessions are initialized").session.clone();
        self.runs.serve(svc, req, principal, want_sse, self.opts.sse_grace).await
    }

    /// The caller's pooled session (created on first use): its id and its `initialize` result.
    async fn pooled_session(
        self: &Arc<Self>,
        principal: &Arc<Principal>,
        req: &Stateless,
        client: Option<std::net::IpAddr>,
    ) -> Result<(String, Value), (StatusCode, ErrorObject)> {
        let key = principal.binding_key();
        if let Some((sid, init)) = self.pooled.lock().get(&key).cloned() {
            if self.sessions.read().contains_key(&sid) {
                return Ok((sid, init));
            }
        }
        let sid = new_session_id();
        let streams = Arc::new(Streams {
            inner: parking_lot::Mutex::new(StreamsInner::default()),
            retained: AtomicUsize::new(0),
            priming: false,
            retry_ms: self.opts.sse_retry_ms,
        });
        let session = Arc::new(HttpSession {
            owner: key.clone(),
            conn: OnceLock::new(),
            streams: streams.clone(),
            last_seen: AtomicU64::new(self.now_ms()),
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
        // Every client capability: whether a request may be asked for sampling, elicitation or
        // roots is decided per request, by what its `_meta` declares (`mrtr.rs`).
        let params = json!({
            "protocolVersion": version::LATEST,
            "capabilities": {"sampling": {}, "elicitation": {"form": {}, "url": {}}, "roots": {}},
            "clientInfo": req.client_info.clone().unwrap_or_else(|| json!({"name": "stateless-client", "version": "0"})),
        });
        let origin = Origin { session: sid.clone(), client };
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
                let status =
                    if e.code == crate::error::RATE_LIMITED { StatusCode::TOO_MANY_REQUESTS } else { StatusCode::OK };
                Err((status, e))
            }
        }
    }
}
