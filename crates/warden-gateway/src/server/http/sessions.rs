//! 2025 sessions: their lifecycle (idle expiry, retirement after a reload, termination) and ids
//! that any replica can take up.
//!
//! A session id is a sealed envelope ([`crate::seal`], purpose `warden-session/v1`) of a random
//! nonce, a digest of the caller it belongs to, its expiry (`[cluster] session_max_age_secs`)
//! and what its `initialize` carried (protocol version, client capabilities and info, cut to a
//! bounded size). A replica that does not hold the session (another opened it, or this one let
//! it go idle) opens the id, checks the caller and that the session was not ended, and takes it
//! up ([`Service::resume`]): upstream connections are opened again as they are needed.
//! `DELETE` ends a session everywhere: its nonce goes into the shared store ([`Ended`]) until the
//! id expires, and replicas holding the session check the store at most once a second per
//! session.
//!
//! Defends against: forged or altered ids (the AEAD tag), another caller presenting the id (the
//! owner digest: 404, as for an unknown id), an ended session taken up again (the store; a
//! store that forgot ends under memory pressure refuses every session it may have held), ids
//! used past their expiry, a store outage letting an ended session back in (taking a session up
//! needs an answer from the store: 503 meanwhile).
//! Does not defend against: a caller holding a session on every replica at once (taking an id up
//! is not counted as opening a session — the id was, once, when it was issued —, so that a
//! client spread over N replicas does not spend N times its rate of opening sessions; what a
//! caller holds per replica stays within `max_sessions_per_principal`, checked again as each
//! session is inserted); the state a session had on the replica that lost it — subscriptions,
//! log level, requests to the client and SSE streams in flight are gone (the client sees its
//! stream end and retries; nothing waits forever); a session ended on one replica still
//! answering on another for up to a second (the check interval); with the memory store, an end
//! seen only by the replica that received the `DELETE` (shared ends need `[store] backend =
//! "redis"`); a Redis that evicts keys (`maxmemory-policy` other than `noeviction`) may forget an
//! end before the id expires.

use super::{header_str, HttpSession, McpEndpoint, Reject, Streams, SESSION_HEADER};
use crate::rpc::Calls;
use crate::seal::Sealer;
use crate::server::{Conn, Origin};
use futures::future::BoxFuture;
use http::{HeaderMap, StatusCode};
use serde_json::{json, Map, Value};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, OnceLock};
use std::time::Duration;
use warden_policy::Principal;
use warden_protocol::jsonrpc::Id;

const PURPOSE: &[u8] = b"warden-session/v1";
const PREFIX: &str = "ws1.";
/// The most a sealed id carries of the client's `initialize` (JSON bytes), so that the id stays
/// a header any proxy passes (about 2 kB of base64 at most).
const MAX_PARAMS: usize = 1024;
/// How long a retired session's calls in flight may still run before it is closed.
const RETIRE_WAIT: Duration = Duration::from_secs(600);
/// How often a replica asks the shared store whether a session it holds was ended elsewhere.
const CHECK_EVERY_MS: u64 = 1000;

/// Where ended sessions are recorded (the store).
pub trait Ended: Send + Sync + 'static {
    fn end<'a>(&'a self, nonce: &'a str, expires: u64) -> BoxFuture<'a, Result<(), String>>;
    fn ended<'a>(&'a self, nonce: &'a str, expires: u64) -> BoxFuture<'a, Result<bool, String>>;
    /// Other replicas see the ends recorded here (the check of held sessions is worth making).
    fn shared(&self) -> bool;
}

/// Issues and opens session ids.
pub struct SessionIds {
    sealer: Arc<Sealer>,
    max_age: Duration,
    ended: Arc<dyn Ended>,
}

impl std::fmt::Debug for SessionIds {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "SessionIds({:?}, max age {:?})", self.sealer, self.max_age)
    }
}

/// What a session id carries.
#[derive(Debug, Clone, PartialEq)]
pub struct Sealed {
    pub nonce: String,
    /// Digest of the owner's binding key.
    pub owner: String,
    /// Unix seconds.
    pub expires: u64,
    /// `protocolVersion`, `capabilities`, `clientInfo`.
    pub params: Value,
}

fn owner_digest(binding_key: &str) -> String {
    crate::digest::hex(&crate::digest::sha256(binding_key.as_bytes()))[..32].to_string()
}

/// What of `initialize`'s params a sealed id keeps, at most [`MAX_PARAMS`] bytes: the protocol
/// version always; the capabilities whole when small, else each capability whole when small and
/// as `{}` (declared, details dropped) otherwise; the client's name and version.
pub fn compact(params: &Value) -> Value {
    let mut out = Map::new();
    if let Some(v) = params.get("protocolVersion").and_then(Value::as_str).filter(|v| v.len() <= 32) {
        out.insert("protocolVersion".into(), v.into());
    }
    let info = params.get("clientInfo").and_then(Value::as_object).map(|i| {
        let keep = |k: &str| i.get(k).and_then(Value::as_str).map(|s| s.chars().take(64).collect::<String>());
        json!({"name": keep("name").unwrap_or_default(), "version": keep("version").unwrap_or_default()})
    });
    out.insert("clientInfo".into(), info.unwrap_or_else(|| json!({"name": "unknown", "version": "0"})));
    let caps = params.get("capabilities").and_then(Value::as_object).cloned().unwrap_or_default();
    let room = MAX_PARAMS.saturating_sub(Value::Object(out.clone()).to_string().len() + 20);
    let whole = Value::Object(caps.clone());
    let caps = if whole.to_string().len() <= room {
        whole
    } else {
        let mut cut = Map::new();
        let mut used = 2;
        // The capabilities Warden acts on first, then the rest in order.
        const KNOWN: [&str; 5] = ["elicitation", "sampling", "roots", "tasks", "extensions"];
        let known = KNOWN.iter().filter_map(|k| caps.get_key_value(*k));
        let rest = caps.iter().filter(|(k, _)| !KNOWN.contains(&k.as_str()) && k.len() <= 64);
        for (k, v) in known.chain(rest) {
            let small = v.to_string().len() <= 128;
            let item = if small { v.clone() } else { json!({}) };
            let cost = k.len() + item.to_string().len() + 4;
            if used + cost > room {
                break;
            }
            used += cost;
            cut.insert(k.clone(), item);
        }
        Value::Object(cut)
    };
    out.insert("capabilities".into(), caps);
    Value::Object(out)
}

impl SessionIds {
    pub fn new(sealer: Arc<Sealer>, max_age: Duration, ended: Arc<dyn Ended>) -> SessionIds {
        SessionIds { sealer, max_age, ended }
    }

    /// The sealer, for the endpoint's other envelopes (2026 `requestState`).
    pub fn sealer(&self) -> Arc<Sealer> {
        self.sealer.clone()
    }

    /// A new session id for `owner` (binding key) with `initialize`'s `params`.
    pub fn issue(&self, owner: &str, params: &Value) -> (String, Sealed) {
        let nonce: [u8; 16] = rand::random();
        let sealed = Sealed {
            nonce: crate::digest::hex(&nonce),
            owner: owner_digest(owner),
            expires: crate::clock::now_secs() + self.max_age.as_secs(),
            params: compact(params),
        };
        let plain = json!({"n": sealed.nonce, "o": sealed.owner, "e": sealed.expires, "p": sealed.params});
        let id = format!("{PREFIX}{}", self.sealer.seal(PURPOSE, serde_json::to_vec(&plain).expect("json")));
        (id, sealed)
    }

    /// What `id` carries, if one of the keys sealed it as a session id.
    pub fn open(&self, id: &str) -> Option<Sealed> {
        let plain = self.sealer.open(PURPOSE, id.strip_prefix(PREFIX)?)?;
        let v: Value = serde_json::from_slice(&plain).ok()?;
        Some(Sealed {
            nonce: v.get("n")?.as_str()?.to_string(),
            owner: v.get("o")?.as_str()?.to_string(),
            expires: v.get("e")?.as_u64()?,
            params: v.get("p")?.clone(),
        })
    }
}

/// Sessions held here of the caller `owner` (binding key). The anonymous loopback caller is
/// everyone on this machine: only `max_sessions` bounds it.
pub(super) fn owned(map: &std::collections::HashMap<String, Arc<HttpSession>>, owner: &str, p: &Principal) -> usize {
    match p.method {
        warden_policy::AuthMethod::Local => 0,
        _ => map.values().filter(|s| s.owner == owner).count(),
    }
}

impl McpEndpoint {
    /// Close idle sessions; keep standalone streams alive with a comment (and notice dead ones).
    pub(super) async fn housekeeping(self: &Arc<Self>) {
        let now = self.now_ms();
        let idle_ms = self.opts.idle_timeout.as_millis() as u64;
        let mut expired = Vec::new();
        let mut stale = Vec::new();
        let generation = self.svc.generation();
        {
            let sessions = self.sessions.read();
            for (id, s) in sessions.iter() {
                let live = s.streams.keepalive();
                let busy = s.conn.get().map(|c| c.has_inflight()).unwrap_or(false);
                // Of a configuration a reload replaced, and idle but for its streams: retired
                // (the streams end; the client's next request or GET gets the new generation).
                if !busy && s.generation != generation && (s.sealed.is_some() || s.streams.pooled) {
                    stale.push((id.clone(), s.clone()));
                    continue;
                }
                if !live && !busy && now.saturating_sub(s.last_seen.load(Ordering::Relaxed)) > idle_ms {
                    expired.push(id.clone());
                }
            }
        }
        for id in expired {
            tracing::info!("closing idle session");
            self.terminate(&id).await;
        }
        for (id, s) in stale {
            self.retire(&id, &s);
        }
    }

    pub(super) async fn terminate(&self, id: &str) -> bool {
        let s = self.sessions.write().remove(id);
        match s {
            Some(s) => {
                s.streams.close_all();
                if let Some(c) = s.conn.get() {
                    c.close().await;
                }
                true
            }
            None => false,
        }
    }

    /// Close every session (shutdown).
    pub async fn shutdown(&self) {
        let ids: Vec<String> = self.sessions.read().keys().cloned().collect();
        for id in ids {
            self.terminate(&id).await;
        }
    }

    /// The `Host` check alone (DNS rebinding protection for the OAuth endpoints, which browsers
    /// reach from other origins).
    /// Whether `sessions` has room for one more session of `owner` (as at `initialize`: ids a
    /// caller keeps from sessions that went idle here are no way around its cap).
    fn room_for(
        &self,
        sessions: &std::collections::HashMap<String, Arc<HttpSession>>,
        owner: &str,
        who: &Principal,
    ) -> Result<(), Reject> {
        if sessions.len() >= self.opts.max_sessions {
            return Err((StatusCode::SERVICE_UNAVAILABLE, "Too many sessions"));
        }
        if owned(sessions, owner, who) >= self.opts.max_sessions_per_principal {
            return Err((StatusCode::TOO_MANY_REQUESTS, "Too many sessions for this caller"));
        }
        Ok(())
    }

    /// A new session id (sealed when session ids are configured, else 256 random bits).
    pub(super) fn issue_id(&self, owner: &str, params: &Value) -> (String, Option<Sealed>) {
        match &self.opts.session_ids {
            Some(ids) => {
                let (id, s) = ids.issue(owner, params);
                (id, Some(s))
            }
            None => (super::new_session_id(), None),
        }
    }

    /// The caller's session named by the request's `Mcp-Session-Id`: held here, or taken up
    /// from its sealed id. 404 for an unknown, expired, ended or another caller's session.
    /// `client` is the request's address (recorded for a session taken up here).
    pub(super) async fn session_of(
        self: &Arc<Self>,
        h: &HeaderMap,
        who: &Arc<Principal>,
        client: Option<std::net::IpAddr>,
    ) -> Result<(String, Arc<HttpSession>), Reject> {
        const NOT_FOUND: Reject = (StatusCode::NOT_FOUND, "Session not found");
        let Some(id) = header_str(h, SESSION_HEADER) else {
            return Err((StatusCode::BAD_REQUEST, "Bad Request: Mcp-Session-Id header is required"));
        };
        let held = self.sessions.read().get(id).cloned();
        let s = match held {
            Some(s) if s.conn.get().is_some() && s.owner == who.binding_key() => s,
            Some(_) => return Err(NOT_FOUND),
            None => return self.take_up(id, who, client).await.map(|s| (id.to_string(), s)),
        };
        if let (Some(ids), Some(sealed)) = (&self.opts.session_ids, &s.sealed) {
            if sealed.expires <= crate::clock::now_secs() {
                self.terminate(id).await;
                return Err(NOT_FOUND);
            }
            let now = self.now_ms();
            let last = s.checked.load(Ordering::Relaxed);
            if ids.ended.shared() && now.saturating_sub(last) >= CHECK_EVERY_MS {
                s.checked.store(now, Ordering::Relaxed);
                // A store out of reach keeps what this replica knows (as for kill switches).
                if let Ok(true) = ids.ended.ended(&sealed.nonce, sealed.expires).await {
                    tracing::info!("session ended on another replica");
                    self.terminate(id).await;
                    return Err(NOT_FOUND);
                }
            }
        }
        // The configuration was reloaded since it was opened: the next request runs in a
        // session of the new generation (`reload.rs`); this one finishes what it started.
        if s.sealed.is_some() && s.generation != self.svc.generation() {
            self.retire(id, &s);
            return self.take_up(id, who, client).await.map(|n| (id.to_string(), n));
        }
        s.last_seen.store(self.now_ms(), Ordering::Relaxed);
        Ok((id.to_string(), s))
    }

    /// Take `s` (named `id`) out of the sessions; once its requests in flight are answered (at
    /// most [`RETIRE_WAIT`]), close its streams and upstream connections.
    pub(super) fn retire(self: &Arc<Self>, id: &str, s: &Arc<HttpSession>) {
        {
            let mut map = self.sessions.write();
            if !map.get(id).is_some_and(|held| Arc::ptr_eq(held, s)) {
                return; // retired already
            }
            map.remove(id);
        }
        tracing::info!(generation = s.generation, "session retired: the configuration was reloaded");
        let busy = s.conn.get().is_some_and(|c| c.has_inflight());
        if busy {
            self.retired.lock().entry(id.to_string()).or_default().push(s.clone());
        }
        let (s, id, me) = (s.clone(), id.to_string(), Arc::downgrade(self));
        tokio::spawn(async move {
            let started = std::time::Instant::now();
            while s.conn.get().is_some_and(|c| c.has_inflight()) && started.elapsed() < RETIRE_WAIT {
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
            if let Some(me) = me.upgrade() {
                let mut retired = me.retired.lock();
                if let Some(list) = retired.get_mut(&id) {
                    list.retain(|r| !Arc::ptr_eq(r, &s));
                    if list.is_empty() {
                        retired.remove(&id);
                    }
                }
            }
            s.streams.close_all();
            if let Some(c) = s.conn.get() {
                c.close().await;
            }
        });
    }

    /// Where the client's answer `id` goes: the session that asked it, which may be one a reload
    /// retired while the question was open.
    pub(super) fn conn_asking(&self, sid: &str, s: &HttpSession, id: &Id) -> Arc<Conn> {
        let current = s.conn.get().expect("an initialized session").clone();
        if current.asked(id) {
            return current;
        }
        self.retired_conn(sid, |c| c.asked(id)).unwrap_or(current)
    }

    /// Where a notification goes: `notifications/cancelled` to the session running the request
    /// it names (a retired one included), anything else to the current session.
    pub(super) fn conn_for_notification(
        &self,
        sid: &str,
        s: &HttpSession,
        method: &str,
        params: Option<&Value>,
    ) -> Arc<Conn> {
        let current = s.conn.get().expect("an initialized session").clone();
        let named =
            (method == "notifications/cancelled").then(|| warden_protocol::jsonrpc::cancelled_request_id(params));
        match named.flatten() {
            Some(id) if !current.running(&id) => self.retired_conn(sid, |c| c.running(&id)).unwrap_or(current),
            _ => current,
        }
    }

    fn retired_conn(&self, sid: &str, f: impl Fn(&Conn) -> bool) -> Option<Arc<Conn>> {
        let retired = self.retired.lock();
        retired.get(sid)?.iter().filter_map(|r| r.conn.get()).find(|c| f(c)).cloned()
    }

    /// Take up the session of a sealed id this replica does not hold (any more: a reload may
    /// have retired it), for `who` at address `client`.
    async fn take_up(
        self: &Arc<Self>,
        id: &str,
        who: &Arc<Principal>,
        client: Option<std::net::IpAddr>,
    ) -> Result<Arc<HttpSession>, Reject> {
        const NOT_FOUND: Reject = (StatusCode::NOT_FOUND, "Session not found");
        let Some(ids) = &self.opts.session_ids else { return Err(NOT_FOUND) };
        let sealed = ids.open(id).ok_or(NOT_FOUND)?;
        let owner = who.binding_key();
        if sealed.owner != owner_digest(&owner) || sealed.expires <= crate::clock::now_secs() {
            return Err(NOT_FOUND);
        }
        match ids.ended.ended(&sealed.nonce, sealed.expires).await {
            Ok(false) => {}
            Ok(true) => return Err(NOT_FOUND),
            Err(e) => {
                tracing::warn!(error = %e, "cannot take up a session: the store does not answer");
                return Err((StatusCode::SERVICE_UNAVAILABLE, "Service Unavailable: session store unreachable"));
            }
        }
        // Checked now (before any work) and again when the session is inserted (requests for
        // many ids at once all pass the first check).
        self.room_for(&self.sessions.read(), &owner, who)?;
        let version = sealed.params.get("protocolVersion").and_then(Value::as_str).unwrap_or("2025-03-26");
        let negotiated = warden_protocol::version::negotiate(Some(version));
        let streams = Arc::new(Streams::new(negotiated >= "2025-11-25", self.opts.sse_retry_ms, false));
        // Past the ids of the sessions it may replace (answers to those still reach them).
        let calls = Arc::new(Calls::starting_at("warden-", (self.svc.generation() << 32) + 1));
        let peer = crate::rpc::Peer::new(streams.clone(), calls.clone(), None);
        let origin = Origin { session: id.to_string(), client, stateless: false };
        let generation = self.svc.generation();
        let resumed = self.svc.resume(sealed.params.clone(), peer, who.clone(), origin).ok_or(NOT_FOUND)?;
        let session = resumed.await.map_err(|e| {
            tracing::info!(error = %e.message, "session not taken up");
            match e.http.map(|h| h.status) {
                Some(429) => (StatusCode::TOO_MANY_REQUESTS, "Too Many Requests: sessions opened too fast"),
                _ => (StatusCode::SERVICE_UNAVAILABLE, "Service Unavailable: the session could not be taken up"),
            }
        })?;
        let (nonce, expires) = (sealed.nonce.clone(), sealed.expires);
        let s = Arc::new(HttpSession {
            owner,
            conn: OnceLock::new(),
            streams: streams.clone(),
            last_seen: AtomicU64::new(self.now_ms()),
            checked: AtomicU64::new(self.now_ms()),
            sealed: Some(sealed),
            generation,
        });
        let _ = s.conn.set(Conn::new(session, streams, calls));
        let raced = {
            let mut map = self.sessions.write();
            match map.get(id) {
                // Taken up by a request of the same client meanwhile: that one stays.
                Some(other) => Ok(Some(other.clone())),
                None => self.room_for(&map, &s.owner, who).map(|()| {
                    map.insert(id.to_string(), s.clone());
                    None
                }),
            }
        };
        let drop_ours = || async {
            if let Some(c) = s.conn.get() {
                c.close().await;
            }
        };
        match raced {
            Ok(Some(other)) if other.conn.get().is_some() => {
                drop_ours().await;
                Ok(other)
            }
            Ok(Some(_)) => {
                drop_ours().await;
                Err(NOT_FOUND)
            }
            Err(refused) => {
                drop_ours().await;
                Err(refused)
            }
            Ok(None) => {
                // A DELETE on another request may have ended it while it was being taken up.
                if let Ok(true) = ids.ended.ended(&nonce, expires).await {
                    self.terminate(id).await;
                    return Err(NOT_FOUND);
                }
                tracing::info!(subject = %who.subject, "session taken up on this replica");
                Ok(s)
            }
        }
    }

    /// End, through the store, a session this replica does not hold (`DELETE`): the caller's own,
    /// unexpired; else 404 as for any unknown id.
    pub(super) async fn end_unheld(&self, id: &str, who: &Principal) -> Result<(), Reject> {
        const NOT_FOUND: Reject = (StatusCode::NOT_FOUND, "Session not found");
        let ids = self.opts.session_ids.as_ref().ok_or(NOT_FOUND)?;
        let sealed = ids.open(id).ok_or(NOT_FOUND)?;
        if sealed.owner != owner_digest(&who.binding_key()) || sealed.expires <= crate::clock::now_secs() {
            return Err(NOT_FOUND);
        }
        if let Ok(true) = ids.ended.ended(&sealed.nonce, sealed.expires).await {
            return Err(NOT_FOUND);
        }
        ids.ended.end(&sealed.nonce, sealed.expires).await.map_err(|e| {
            tracing::warn!(error = %e, "cannot end a session: the store does not answer");
            (StatusCode::SERVICE_UNAVAILABLE, "Service Unavailable: session store unreachable")
        })
    }

    /// End the session named by `DELETE` here and, through the store, on every replica.
    pub(super) async fn end(&self, id: &str, s: &HttpSession) -> Result<(), Reject> {
        if let (Some(ids), Some(sealed)) = (&self.opts.session_ids, &s.sealed) {
            if let Err(e) = ids.ended.end(&sealed.nonce, sealed.expires).await {
                tracing::warn!(error = %e, "cannot end a session: the store does not answer");
                return Err((StatusCode::SERVICE_UNAVAILABLE, "Service Unavailable: session store unreachable"));
            }
        }
        self.terminate(id).await;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    struct NoEnds;
    impl Ended for NoEnds {
        fn end<'a>(&'a self, _: &'a str, _: u64) -> BoxFuture<'a, Result<(), String>> {
            Box::pin(async { Ok(()) })
        }
        fn ended<'a>(&'a self, _: &'a str, _: u64) -> BoxFuture<'a, Result<bool, String>> {
            Box::pin(async { Ok(false) })
        }
        fn shared(&self) -> bool {
            false
        }
    }

    fn ids(key: u8) -> SessionIds {
        SessionIds::new(Arc::new(Sealer::with_keys(&[key; 32], &[])), Duration::from_secs(60), Arc::new(NoEnds))
    }

    #[test]
    fn an_id_opens_on_any_replica_with_the_key_and_carries_its_session() {
        let params = json!({"protocolVersion": "2025-11-25", "capabilities": {"sampling": {}, "elicitation": {"form": {}}},
                            "clientInfo": {"name": "c", "version": "1", "title": "dropped"}});
        let (id, sealed) = ids(1).issue("alice-key", &params);
        assert!(id.starts_with(PREFIX) && id.bytes().all(|b| (0x21..=0x7e).contains(&b)), "a visible-ASCII header");
        let opened = ids(1).open(&id).expect("another replica, same key");
        assert_eq!(opened, sealed);
        assert_eq!(opened.owner, owner_digest("alice-key"));
        assert_eq!(opened.params["capabilities"], params["capabilities"]);
        assert_eq!(opened.params["clientInfo"], json!({"name": "c", "version": "1"}));
        assert!(ids(2).open(&id).is_none(), "another key");
        assert!(ids(1).open(&id[PREFIX.len()..]).is_none() && ids(1).open("ws1.AAAA").is_none());
        assert_ne!(ids(1).issue("alice-key", &params).1.nonce, sealed.nonce);
    }

    #[test]
    fn huge_initialize_params_are_cut_to_a_bounded_id() {
        let big = "x".repeat(100_000);
        let mut caps = Map::new();
        caps.insert("sampling".into(), json!({}));
        caps.insert("experimental".into(), json!({"blob": big}));
        for i in 0..500 {
            caps.insert(format!("k{i:03}"), json!({"v": i}));
        }
        let params = json!({"protocolVersion": "2025-06-18", "capabilities": caps,
                            "clientInfo": {"name": big, "version": big}});
        let (id, sealed) = ids(1).issue("o", &params);
        assert!(id.len() < 2_000, "{} bytes", id.len());
        let c = &sealed.params["capabilities"];
        assert_eq!(c["experimental"], json!({}), "declared, details dropped");
        assert_eq!(c["sampling"], json!({}), "what Warden acts on is kept first");
        assert_eq!(sealed.params["protocolVersion"], "2025-06-18");
        assert_eq!(sealed.params["clientInfo"]["name"].as_str().unwrap().len(), 64);
        assert!(compact(&json!(null))["capabilities"].is_object());
    }
}
