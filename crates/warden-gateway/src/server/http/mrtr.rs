//! Multi round-trip requests for stateless (2026-07-28) clients (issue 21): what an upstream
//! asks the client mid-call (sampling, elicitation, roots — and Warden's own approval prompt)
//! cannot be a request on the response stream in this revision. The call runs as a [`Run`];
//! when something asks the client, the run is parked and the client gets `input_required`
//! (`inputRequests`, and a `requestState` Warden sealed); the client's retry carries
//! `inputResponses` and that state, the answers go to whoever asked, and the same run goes on.
//!
//! Defends against: a client-supplied `requestState` being trusted — it is an AEAD envelope
//! (AES-256-GCM, `seal.rs`: the `[cluster] key`, or a key of this process) of a random handle, bound to the principal, the digest
//! of the original request (method and params, without `_meta`, `inputResponses` and
//! `requestState`) and an expiry; a tampered, expired, foreign (another principal's) or
//! mismatched (other params) one is refused, and the parked run is never reached. Parked runs
//! are bounded (per principal and in all) and expire.
//! Does not defend against: a retry landing on another replica (the state opens there with a
//! shared key, but runs live in the process that parked them: the client gets "unknown
//! requestState" and starts over).

use super::{json_answer, HttpResponse};
use crate::rpc::{Calls, Outbound, Peer};
use crate::seal::Sealer;
use crate::server::stateless::{Stateless, MISSING_CLIENT_CAPABILITY};
use crate::server::Session;
use bytes::Bytes;
use parking_lot::Mutex;
use serde_json::{json, Value};
use std::collections::HashMap;
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio::sync::mpsc;
use warden_policy::Principal;
use warden_protocol::jsonrpc::{self, ErrorObject, Id, Message};

/// How long a parked run waits for the client's retry.
const PARK_TTL: Duration = Duration::from_secs(300);
/// Parked runs per principal, and in all.
const MAX_PARKED_PER_PRINCIPAL: usize = 16;
const MAX_PARKED: usize = 4096;

/// What a run produces, in order.
enum Event {
    /// Something asks the client (Warden's id for it, method, params).
    Ask(Id, String, Option<Value>),
    /// Progress or a log message, for the current response stream.
    Note(Message),
    /// The final answer.
    Done(Message),
}

/// The run's [`Outbound`]: everything meant for the client becomes an [`Event`].
struct Tap(mpsc::UnboundedSender<Event>, Arc<std::sync::atomic::AtomicBool>);

impl Outbound for Tap {
    fn parked(&self) -> bool {
        self.1.load(std::sync::atomic::Ordering::Acquire)
    }

    /// A question the request did not declare the capability for is -32021 (`Runs::step`).
    fn asks_per_request(&self) -> bool {
        true
    }

    fn send(&self, _stream: Option<u64>, msg: Message) -> bool {
        let ev = match msg {
            Message::Request { id, method, params } => Event::Ask(id, method, params),
            m @ Message::Notification { .. } => Event::Note(m),
            m => Event::Done(m),
        };
        self.0.send(ev).is_ok()
    }
}

/// One stateless request in progress.
struct Run {
    events: tokio::sync::Mutex<mpsc::UnboundedReceiver<Event>>,
    calls: Arc<Calls<()>>,
    task: futures::future::AbortHandle,
    /// Outstanding questions to the client: key → (Warden's id, method).
    asked: Mutex<Vec<(String, Id, String, Value)>>,
    owner: String,
    digest: String,
    /// The capabilities the client declared (what it may be asked).
    caps: Value,
    /// The least severe log message the request asked for (`_meta` logLevel); none: no logs.
    log_level: Option<usize>,
    /// Parked: waiting for the client's retry (shared with the run's [`Tap`]).
    parked: Arc<std::sync::atomic::AtomicBool>,
}

const LEVELS: &[&str] = &["debug", "info", "notice", "warning", "error", "critical", "alert", "emergency"];

fn level(l: &str) -> Option<usize> {
    LEVELS.iter().position(|x| *x == l)
}

impl Drop for Run {
    fn drop(&mut self) {
        self.task.abort();
        // Whoever waits for an answer from the client (an upstream's question) gets an error
        // now, not never.
        self.calls.fail_all(&refused(jsonrpc::REQUEST_CANCELLED, "the client's request ended"));
    }
}

/// Parked runs, and what seals their handles.
pub struct Runs {
    parked: Mutex<HashMap<String, (Arc<Run>, Instant)>>,
    sealer: Arc<Sealer>,
}

impl Default for Runs {
    fn default() -> Self {
        Runs::new(Arc::new(Sealer::random()))
    }
}

/// What a request is, for binding a retry to it: method and params without the round-trip
/// fields and `_meta`.
fn request_digest(method: &str, params: &Value) -> String {
    let mut p = params.clone();
    if let Some(m) = p.as_object_mut() {
        for k in ["_meta", "inputResponses", "requestState"] {
            m.remove(k);
        }
    }
    crate::digest::hex(&crate::digest::sha256(
        format!("{method}\n{}", warden_policy::canonical::to_string(&p)).as_bytes(),
    ))
}

fn refused(code: i64, msg: &str) -> ErrorObject {
    ErrorObject::new(code, msg)
}

const STATE_AAD: &[u8] = b"warden-request-state/v1";

impl Runs {
    pub fn new(sealer: Arc<Sealer>) -> Runs {
        Runs { parked: Mutex::new(HashMap::new()), sealer }
    }

    fn seal(&self, handle: &str, owner: &str, digest: &str, expires: u64) -> String {
        let data = serde_json::to_vec(&json!({"h": handle, "p": owner, "d": digest, "e": expires})).expect("json");
        self.sealer.seal(STATE_AAD, data)
    }

    /// The handle of a sealed state, if it is ours, unexpired, the caller's and this request's.
    fn open(&self, state: &str, owner: &str, digest: &str) -> Result<String, ErrorObject> {
        let bad = || refused(jsonrpc::INVALID_PARAMS, "invalid requestState: not issued by this server, or altered");
        let plain = self.sealer.open(STATE_AAD, state).ok_or_else(bad)?;
        let v: Value = serde_json::from_slice(&plain).map_err(|_| bad())?;
        if v["p"] != owner {
            return Err(refused(jsonrpc::INVALID_PARAMS, "invalid requestState: issued to another caller"));
        }
        if v["d"] != digest {
            return Err(refused(jsonrpc::INVALID_PARAMS, "invalid requestState: issued for another request"));
        }
        if v["e"].as_u64().is_none_or(|e| e < crate::clock::now_secs()) {
            return Err(refused(
                jsonrpc::INVALID_PARAMS,
                "invalid requestState: expired; send the request again without it",
            ));
        }
        v["h"].as_str().map(str::to_string).ok_or_else(bad)
    }

    fn park(&self, run: Arc<Run>) -> Result<String, ErrorObject> {
        run.parked.store(true, std::sync::atomic::Ordering::Release);
        let mut parked = self.parked.lock();
        parked.retain(|_, (_, at)| at.elapsed() < PARK_TTL);
        let own = parked.values().filter(|(r, _)| r.owner == run.owner).count();
        if own >= MAX_PARKED_PER_PRINCIPAL || parked.len() >= MAX_PARKED {
            return Err(refused(
                crate::error::RATE_LIMITED,
                "too many requests waiting for input; answer or drop some",
            ));
        }
        let handle = format!("{:032x}", rand::random::<u128>());
        parked.insert(handle.clone(), (run, Instant::now()));
        Ok(handle)
    }

    /// Serve a stateless request in `session`: a new run, or (with `requestState`) the parked
    /// run it continues.
    pub async fn serve(
        self: &Arc<Self>,
        session: Arc<dyn Session>,
        req: Stateless,
        principal: Arc<Principal>,
        want_sse: bool,
        always_sse: bool,
    ) -> HttpResponse {
        let owner = principal.binding_key();
        let digest = request_digest(&req.method, &req.params);
        let id = req.id.clone();
        // A retry names its state as a string. Answers without a state answer nothing asked
        // here: the request runs afresh, and the round-trip fields never reach an upstream.
        let retry = req.params.get("requestState").map(|s| s.as_str().map(str::to_string));
        if retry == Some(None) {
            return answer(Message::Error {
                id,
                error: refused(jsonrpc::INVALID_PARAMS, "requestState must be a string"),
            });
        }
        let mut req = req;
        // (`tasks/update` carries its answers in `inputResponses` too: to a task, not a run.)
        if retry.is_none() && req.method != "tasks/update" {
            if let Some(p) = req.params.as_object_mut() {
                p.remove("inputResponses");
            }
        }
        let mut running = crate::server::Running::done();
        let run = match retry.flatten() {
            Some(state) => {
                let handle = match self.open(&state, &owner, &digest) {
                    Ok(h) => h,
                    Err(e) => return answer(Message::Error { id, error: e }),
                };
                let resumed = self.parked.lock().remove(&handle);
                if let Some((run, _)) = &resumed {
                    run.parked.store(false, std::sync::atomic::Ordering::Release);
                }
                let Some((run, _)) = resumed else {
                    return answer(Message::Error {
                        id,
                        error: refused(
                            jsonrpc::INVALID_PARAMS,
                            "unknown requestState (answered already, expired, or another server's); send the request again",
                        ),
                    });
                };
                if let Err(e) = deliver(&run, req.params.get("inputResponses")) {
                    // Malformed: the run waits on, parked, for a proper retry (with a new state).
                    let again = self.ask(&run, &id);
                    return answer(match again {
                        Message::Response { .. } => Message::Error { id, error: e },
                        refusal => refusal,
                    });
                }
                // Questions left open (their answers missing or malformed): ask them again.
                if !run.asked.lock().is_empty() {
                    return answer(self.ask(&run, &id));
                }
                run
            }
            None => {
                let (tx, rx) = mpsc::unbounded_channel();
                let calls = Arc::new(Calls::new("warden-"));
                let parked = Arc::new(std::sync::atomic::AtomicBool::new(false));
                let peer = Peer::new(Arc::new(Tap(tx.clone(), parked.clone())), calls.clone(), None);
                let fut =
                    session.request(id.clone(), req.method.clone(), Some(req.params.clone()), peer, Some(principal));
                let key = id.clone();
                let (fut, task) = futures::future::abortable(async move {
                    let reply = match fut.await {
                        Ok(result) => Message::Response { id: key, result },
                        Err(error) => Message::Error { id: key, error },
                    };
                    let _ = tx.send(Event::Done(reply));
                });
                // Driven by this request's handler while it waits (`pump`); a task of its own after.
                running = crate::server::Running::new(Box::pin(async move {
                    let _ = fut.await;
                }));
                Arc::new(Run {
                    events: tokio::sync::Mutex::new(rx),
                    calls,
                    task,
                    asked: Mutex::new(Vec::new()),
                    owner,
                    digest,
                    caps: req.client_capabilities.clone(),
                    log_level: req.params["_meta"][crate::server::stateless::META_LOG_LEVEL].as_str().and_then(level),
                    parked,
                })
            }
        };
        self.pump(run, running, id, want_sse, always_sse).await
    }

    /// Park `run` and say what it asks: `input_required` with a sealed state for the retry.
    fn ask(&self, run: &Arc<Run>, id: &Id) -> Message {
        match self.park(run.clone()) {
            Ok(h) => {
                let mut r = input_required_result(run);
                r["requestState"] =
                    self.seal(&h, &run.owner, &run.digest, crate::clock::now_secs() + PARK_TTL.as_secs()).into();
                Message::Response { id: id.clone(), result: r }
            }
            Err(e) => {
                run.task.abort();
                Message::Error { id: id.clone(), error: e }
            }
        }
    }

    /// Answer the current HTTP request from the run: its final answer, or `input_required`
    /// when it asks the client. A notification first (progress, a log message) makes the
    /// answer an SSE stream, read on a task of its own; without one the answer is JSON, so that
    /// the errors this revision gives a status (-32021: 400) get it however long the call took.
    /// `always_sse` (`sse_grace_ms = 0`) streams every answer a client accepts as SSE.
    async fn pump(
        self: &Arc<Self>,
        run: Arc<Run>,
        mut running: crate::server::Running,
        id: Id,
        want_sse: bool,
        always_sse: bool,
    ) -> HttpResponse {
        if want_sse && always_sse {
            return self.stream(run, id, None);
        }
        let mut events = run.events.lock().await;
        loop {
            let Some(ev) = running.until(events.recv()).await else { return answer(ended(&id)) };
            match self.step(&run, ev, &id) {
                Some(Ok(m)) => return answer(m),
                Some(Err(note)) if want_sse => {
                    drop(events);
                    return self.stream(run, id, Some(note));
                }
                None if !run.asked.lock().is_empty() => {
                    return answer(self.gather(&run, &mut events, &id, &mut running).await)
                }
                _ => {}
            }
        }
    }

    /// The rest of a run as an SSE response: notifications as they come, then the final answer
    /// (or `input_required`). The client closing the stream ends the run (the task drops it).
    fn stream(self: &Arc<Self>, run: Arc<Run>, id: Id, first: Option<Message>) -> HttpResponse {
        let (tx, rx) = mpsc::unbounded_channel::<Bytes>();
        let send = |tx: &mpsc::UnboundedSender<Bytes>, m: &Message| {
            tx.send(Bytes::from(warden_protocol::sse::encode(None, &m.to_json(), None))).is_ok()
        };
        if let Some(m) = &first {
            send(&tx, m);
        }
        let me = self.clone();
        tokio::spawn(async move {
            let mut events = run.events.lock().await;
            loop {
                let Some(ev) = events.recv().await else {
                    send(&tx, &ended(&id));
                    return;
                };
                match me.step(&run, ev, &id) {
                    Some(Ok(m)) => {
                        send(&tx, &m);
                        return;
                    }
                    // The client closed the stream: the run ends (dropped with this task).
                    Some(Err(note)) if !send(&tx, &note) => return,
                    None if !run.asked.lock().is_empty() => {
                        // The run is a task of its own here (or driven by another request).
                        let m = me.gather(&run, &mut events, &id, &mut crate::server::Running::done()).await;
                        send(&tx, &m);
                        return;
                    }
                    _ => {}
                }
            }
        });
        super::sse_response(rx)
    }

    /// One event of a run, for the request answered now: `Ok` the final message (the answer, or
    /// -32021 when the client did not declare what it is asked for), `Err` a notification to
    /// pass on, `None` nothing (a question is recorded in `asked`: [`Runs::gather`] follows).
    fn step(&self, run: &Arc<Run>, ev: Event, id: &Id) -> Option<Result<Message, Message>> {
        match ev {
            Event::Done(Message::Response { result, .. }) => Some(Ok(Message::Response { id: id.clone(), result })),
            Event::Done(Message::Error { error, .. }) => Some(Ok(Message::Error { id: id.clone(), error })),
            Event::Done(_) => None,
            // Log messages only for a request that asked for them, at its level or above.
            Event::Note(m) if m.method() == Some("notifications/message") => {
                let Message::Notification { params, .. } = &m else { return None };
                let lvl = params.as_ref().and_then(|p| p["level"].as_str()).and_then(level).unwrap_or(0);
                run.log_level.is_some_and(|want| lvl >= want).then_some(Err(m))
            }
            Event::Note(m) => Some(Err(m)),
            Event::Ask(wid, method, mut params) => {
                let upstream_key = warden_protocol::modern::take_input_key(&mut params);
                let cap = match method.as_str() {
                    "sampling/createMessage" => "sampling",
                    "elicitation/create" => "elicitation",
                    "roots/list" => "roots",
                    _ => "",
                };
                if cap.is_empty() || run.caps.get(cap).is_none() {
                    run.calls.complete(
                        &wid,
                        Err(refused(jsonrpc::METHOD_NOT_FOUND, &format!("client does not support {method}"))),
                    );
                    run.task.abort();
                    let mut e = refused(
                        MISSING_CLIENT_CAPABILITY,
                        &format!("this request needs the client capability {cap:?}, which it did not declare"),
                    );
                    e.data = Some(json!({"requiredCapabilities": {cap: {}}}));
                    let e = e.with_http(400, None);
                    return Some(Ok(Message::Error { id: id.clone(), error: e }));
                }
                {
                    let mut asked = run.asked.lock();
                    // The 2026 upstream's own key when it has one (and it is not taken).
                    let taken = |k: &str| asked.iter().any(|(a, ..)| a == k);
                    let key = match upstream_key {
                        Some(k) if !taken(&k) => k,
                        _ => (1..).map(|n| format!("{cap}-{n}")).find(|k| !taken(k)).expect("a free key"),
                    };
                    asked.push((key, wid, method, params.unwrap_or(Value::Null)));
                }
                None
            }
        }
    }

    /// After a question: the others asked at about the same time (a server asking several
    /// things at once) join it, then the run is parked and the client gets them all.
    async fn gather(
        &self,
        run: &Arc<Run>,
        events: &mut mpsc::UnboundedReceiver<Event>,
        id: &Id,
        running: &mut crate::server::Running,
    ) -> Message {
        loop {
            match running.until(tokio::time::timeout(GATHER, events.recv())).await {
                Ok(Some(ev @ Event::Ask(..))) => {
                    if let Some(Ok(m)) = self.step(run, ev, id) {
                        return m; // a capability the request lacks: -32021
                    }
                }
                // The run ended meanwhile (its questions no longer matter).
                Ok(Some(ev @ Event::Done(_))) => {
                    if let Some(Ok(m)) = self.step(run, ev, id) {
                        run.asked.lock().clear();
                        return m;
                    }
                }
                Ok(Some(Event::Note(_))) => {}
                Ok(None) => return ended(id),
                Err(_) => return self.ask(run, id),
            }
        }
    }
}

/// How long questions asked together are gathered into one `input_required`.
const GATHER: Duration = Duration::from_millis(25);

fn ended(id: &Id) -> Message {
    Message::Error { id: id.clone(), error: refused(jsonrpc::INTERNAL_ERROR, "the request ended without an answer") }
}

/// The `input_required` result for what the run has asked and not yet had answered.
fn input_required_result(run: &Arc<Run>) -> Value {
    let mut reqs = serde_json::Map::new();
    for (key, _, method, params) in run.asked.lock().iter() {
        let mut r = json!({ "method": method });
        if !params.is_null() {
            r["params"] = params.clone();
        }
        reqs.insert(key.clone(), r);
    }
    json!({"resultType": "input_required", "inputRequests": reqs})
}

/// The client's answers to what the run asked, each delivered to whoever asked. Answers to
/// keys not asked are ignored; a question whose answer is missing or not an object stays open
/// (and is asked again).
fn deliver(run: &Arc<Run>, responses: Option<&Value>) -> Result<(), ErrorObject> {
    let Some(map) = responses.and_then(Value::as_object) else {
        return Err(refused(jsonrpc::INVALID_PARAMS, "inputResponses must be an object"));
    };
    let mut asked = run.asked.lock();
    let open: Vec<_> = asked
        .drain(..)
        .filter(|(key, wid, method, _)| match map.get(key).filter(|r| answers(method, r)) {
            Some(r) => {
                run.calls.complete(wid, Ok(r.clone()));
                false
            }
            None => true,
        })
        .collect();
    *asked = open;
    Ok(())
}

/// Whether `r` has the shape of an answer to `method` (else the question stays open).
fn answers(method: &str, r: &Value) -> bool {
    match method {
        "elicitation/create" => r.get("action").is_some_and(Value::is_string),
        "sampling/createMessage" => r.get("content").is_some_and(|c| c.is_object() || c.is_array()),
        "roots/list" => r.get("roots").is_some_and(Value::is_array),
        _ => r.is_object(),
    }
}

/// A JSON answer, with the status its error carries.
fn answer(m: Message) -> HttpResponse {
    let status = match &m {
        Message::Error { error, .. } => error.http,
        _ => None,
    };
    json_answer(Bytes::from(m.to_json()), status)
}

#[cfg(test)]
mod tests {
    use super::*;
    use base64::Engine;

    /// Issue 21: a `requestState` is refused when altered, another caller's, another request's
    /// or expired; only the one issued opens.
    #[test]
    fn request_state_is_sealed_and_bound() {
        let runs = Runs::default();
        let now = crate::clock::now_secs();
        let s = runs.seal("h1", "alice", "d1", now + 60);
        assert_eq!(runs.open(&s, "alice", "d1").unwrap(), "h1");
        let mut raw = base64::engine::general_purpose::URL_SAFE_NO_PAD.decode(&s).unwrap();
        let last = raw.len() - 1;
        raw[last] ^= 1;
        let tampered = base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(&raw);
        assert!(runs.open(&tampered, "alice", "d1").unwrap_err().message.contains("altered"));
        assert!(runs.open(&format!("{s}-TAMPERED"), "alice", "d1").is_err());
        assert!(runs.open("", "alice", "d1").is_err());
        assert!(runs.open(&s, "bob", "d1").unwrap_err().message.contains("another caller"));
        assert!(runs.open(&s, "alice", "d2").unwrap_err().message.contains("another request"));
        let old = runs.seal("h1", "alice", "d1", now - 1);
        assert!(runs.open(&old, "alice", "d1").unwrap_err().message.contains("expired"));
        // Another process's key: not ours.
        assert!(Runs::default().open(&s, "alice", "d1").is_err());
    }

    #[test]
    fn the_digest_ignores_only_the_round_trip_fields() {
        let a = json!({"name": "t", "arguments": {"x": 1}, "_meta": {"k": 1}});
        let b = json!({"name": "t", "arguments": {"x": 1}, "inputResponses": {}, "requestState": "s"});
        assert_eq!(request_digest("tools/call", &a), request_digest("tools/call", &b));
        assert_ne!(
            request_digest("tools/call", &a),
            request_digest("tools/call", &json!({"name": "t", "arguments": {"x": 2}}))
        );
        assert_ne!(request_digest("tools/call", &a), request_digest("prompts/get", &a));
    }
}
