//! Warden as a client of a 2026-07-28 (stateless) upstream, and the translation that lets a
//! 2025 session use one (issue 21, upstream side).
//!
//! A modern upstream has no `initialize`: Warden asks `server/discover` (or, with `protocol =
//! "auto"`, tries it and falls back to the 2025 handshake), then sends the protocol version, the
//! client capabilities the upstream may use (`client_requests`) and the client's info in `_meta`
//! on every request. What the 2025 revisions had and this one removed is translated here:
//! - `ping` and `logging/setLevel` are answered by Warden (the level then rides on every
//!   request as `_meta` `io.modelcontextprotocol/logLevel`);
//! - `resources/subscribe`/`unsubscribe` become the resource list of one `subscriptions/listen`
//!   stream, which also carries the list-changed notifications (the 2025 GET stream's job);
//! - an `input_required` result becomes the upstream's questions asked of the client as 2025
//!   requests, through the same path an upstream's own requests take (`client_requests`:
//!   allow list, client capability, content stages, redaction, audit); the answers go back as
//!   `inputResponses` with the upstream's `requestState`, for at most [`MAX_ROUNDS`] rounds;
//! - results lose the fields 2025 clients do not know (`resultType`, `ttlMs`, `cacheScope`, the
//!   server's info in `_meta`), and resource-not-found (-32602 with the URI) is -32002 again.
//!
//! Defends against: an upstream that asks for input forever (rounds bounded), asks too much at
//! once (at most [`MAX_INPUT_REQUESTS`] questions a round), asks what 2026 does not allow (only
//! sampling, elicitation and roots, only on calls, reads and prompts), or subscribes Warden to
//! unbounded resource lists (at most [`MAX_SUBSCRIPTIONS`], [`MAX_SUBSCRIPTIONS_PER_CALLER`] a
//! session), and notifications Warden does not route (dropped).
//! Does not defend against: what an upstream keeps in its own `requestState` (opaque to Warden,
//! and sent back only to the upstream that issued it).

use crate::rpc::CallResult;
use parking_lot::Mutex;
use serde_json::{json, Map, Value};
use std::collections::{BTreeMap, BTreeSet, HashMap};
use warden_protocol::jsonrpc::{self, ErrorObject};
use warden_protocol::modern::{
    META_CAPABILITIES, META_CLIENT, META_LOG_LEVEL, META_SERVER, META_SUBSCRIPTION, META_VERSION, MULTI_ROUND_TRIP,
};
use warden_protocol::version;

use super::ServerInit;

/// Most rounds of `input_required` one call may take.
pub const MAX_ROUNDS: usize = 16;
/// Most questions in one `input_required` result.
pub const MAX_INPUT_REQUESTS: usize = 16;
/// Most resources one connection subscribes to.
pub const MAX_SUBSCRIPTIONS: usize = 1024;
/// Most resources one session subscribes to on a (shared) connection.
pub const MAX_SUBSCRIPTIONS_PER_CALLER: usize = 64;

/// The revision Warden speaks to a modern upstream.
pub const REVISION: &str = version::STATELESS[0];

/// Who a call on a shared connection is for: the client side of one Warden session (id 0:
/// the connection's own calls, with the capabilities it was opened with).
#[derive(Debug, Clone, Default)]
pub struct ClientSide {
    pub id: u64,
    /// The client capabilities the upstream may use (cut to `client_requests`).
    pub capabilities: Value,
    pub client_info: Option<Value>,
}

/// Per-connection state of a modern upstream, and each caller's share of it.
pub struct Modern {
    /// `_meta` fields sent on every request.
    meta: Map<String, Value>,
    /// Each caller's log level.
    log_levels: Mutex<HashMap<u64, String>>,
    /// Subscribed resources, and which callers want each.
    subscriptions: Mutex<BTreeMap<String, BTreeSet<u64>>>,
}

impl Modern {
    /// From what would have been the `initialize` params (capabilities already cut to the
    /// upstream's `client_requests`, and the client's info).
    pub fn new(init_params: &Value) -> Modern {
        let mut meta = Map::new();
        meta.insert(META_VERSION.into(), REVISION.into());
        meta.insert(META_CAPABILITIES.into(), init_params.get("capabilities").cloned().unwrap_or_else(|| json!({})));
        if let Some(c) = init_params.get("clientInfo") {
            meta.insert(META_CLIENT.into(), c.clone());
        }
        Modern { meta, log_levels: Mutex::new(HashMap::new()), subscriptions: Mutex::new(BTreeMap::new()) }
    }

    /// `server/discover`'s params.
    pub fn discover_params(&self) -> Value {
        json!({ "_meta": self.meta })
    }

    /// `params` with this connection's `_meta` fields (they win over the caller's).
    pub fn with_meta(&self, params: Option<Value>) -> Value {
        self.with_meta_for(None, params)
    }

    /// `params` with the `_meta` fields of the connection, or of `who` on a shared one: its
    /// capabilities, client info and log level.
    pub fn with_meta_for(&self, who: Option<&ClientSide>, params: Option<Value>) -> Value {
        let mut p = match params {
            Some(Value::Object(m)) => m,
            _ => Map::new(),
        };
        let meta = p.entry("_meta").or_insert_with(|| json!({}));
        if !meta.is_object() {
            *meta = json!({});
        }
        if let Some(m) = meta.as_object_mut() {
            m.extend(self.meta.clone());
            if let Some(w) = who {
                m.insert(META_CAPABILITIES.into(), w.capabilities.clone());
                match &w.client_info {
                    Some(c) => m.insert(META_CLIENT.into(), c.clone()),
                    None => m.remove(META_CLIENT),
                };
            }
            if let Some(l) = self.log_levels.lock().get(&who.map_or(0, |w| w.id)).cloned() {
                m.insert(META_LOG_LEVEL.into(), l.into());
            }
        }
        Value::Object(p)
    }

    /// What Warden answers itself of a method the revision removed; `None`: send it upstream.
    /// `Some(true)` for subscriptions: the listen stream must be renewed.
    pub fn local(&self, method: &str, params: Option<&Value>) -> Option<Result<bool, ErrorObject>> {
        self.local_for(0, method, params)
    }

    /// [`Modern::local`] for caller `who` of a shared connection: its log level, its share of
    /// the subscriptions (the stream is renewed when the set of resources changes).
    pub fn local_for(&self, who: u64, method: &str, params: Option<&Value>) -> Option<Result<bool, ErrorObject>> {
        let uri = || {
            params
                .and_then(|p| p.get("uri"))
                .and_then(Value::as_str)
                .map(str::to_string)
                .ok_or_else(|| ErrorObject::new(jsonrpc::INVALID_PARAMS, "uri is required"))
        };
        Some(match method {
            "ping" => Ok(false),
            "logging/setLevel" => {
                let level = params.and_then(|p| p.get("level")).and_then(Value::as_str);
                match level {
                    Some(l) if LEVELS.contains(&l) => {
                        self.log_levels.lock().insert(who, l.to_string());
                        Ok(false)
                    }
                    _ => Err(ErrorObject::new(jsonrpc::INVALID_PARAMS, "level must be a logging level")),
                }
            }
            "resources/subscribe" => uri().and_then(|u| {
                let mut s = self.subscriptions.lock();
                // A share per caller, and a bound in all: one caller cannot take them all.
                let own = s.values().filter(|w| w.contains(&who)).count();
                let full = s.len() >= MAX_SUBSCRIPTIONS && !s.contains_key(&u);
                if full || (own >= MAX_SUBSCRIPTIONS_PER_CALLER && !s.get(&u).is_some_and(|w| w.contains(&who))) {
                    return Err(ErrorObject::new(
                        jsonrpc::INVALID_PARAMS,
                        format!(
                            "too many resource subscriptions on this upstream (limit {MAX_SUBSCRIPTIONS_PER_CALLER} \
                             per session, {MAX_SUBSCRIPTIONS} in all)"
                        ),
                    ));
                }
                let new = !s.contains_key(&u);
                s.entry(u).or_default().insert(who);
                Ok(new)
            }),
            "resources/unsubscribe" => uri().map(|u| {
                let mut s = self.subscriptions.lock();
                let Some(w) = s.get_mut(&u) else { return false };
                w.remove(&who);
                let last = w.is_empty();
                if last {
                    s.remove(&u);
                }
                last
            }),
            _ => return None,
        })
    }

    /// Forget a caller that left: its log level and subscriptions. True when the set of
    /// subscribed resources changed (the stream is to be renewed).
    pub fn forget(&self, who: u64) -> bool {
        self.log_levels.lock().remove(&who);
        let mut s = self.subscriptions.lock();
        let before = s.len();
        s.retain(|_, w| {
            w.remove(&who);
            !w.is_empty()
        });
        s.len() != before
    }

    /// The callers subscribed to `uri`.
    pub fn subscribers(&self, uri: &str) -> Vec<u64> {
        self.subscriptions.lock().get(uri).map(|w| w.iter().copied().collect()).unwrap_or_default()
    }

    /// `subscriptions/listen` params for what the server offers and what is subscribed;
    /// `None` when there is nothing to listen to.
    pub fn listen_params(&self, caps: &Value) -> Option<Value> {
        let mut n = Map::new();
        for (cap, key) in
            [("tools", "toolsListChanged"), ("prompts", "promptsListChanged"), ("resources", "resourcesListChanged")]
        {
            if caps.pointer(&format!("/{cap}/listChanged")) == Some(&Value::Bool(true)) {
                n.insert(key.into(), true.into());
            }
        }
        let subs = self.subscriptions.lock();
        if caps.pointer("/resources/subscribe") == Some(&Value::Bool(true)) && !subs.is_empty() {
            n.insert("resourceSubscriptions".into(), subs.keys().cloned().collect::<Vec<_>>().into());
        }
        drop(subs);
        (!n.is_empty()).then(|| self.with_meta(Some(json!({ "notifications": n }))))
    }
}

const LEVELS: &[&str] = &["debug", "info", "notice", "warning", "error", "critical", "alert", "emergency"];

/// The connection's view of a `server/discover` result: `None` when it is not one of a revision
/// Warden speaks.
pub fn server_init(result: &Value) -> Option<ServerInit> {
    let speaks = result.get("supportedVersions")?.as_array()?.iter().any(|v| v.as_str() == Some(REVISION));
    let mut capabilities = result.get("capabilities").filter(|c| c.is_object()).cloned().unwrap_or_else(|| json!({}));
    // Log messages come to a request that names a level, whatever the server declares (the
    // capability is deprecated): Warden answers `logging/setLevel` and sends the level along.
    capabilities["logging"] = json!({});
    speaks.then(|| ServerInit {
        protocol_version: REVISION.to_string(),
        capabilities,
        server_info: result
            .pointer(&format!("/_meta/{}", META_SERVER.replace('/', "~1")))
            .cloned()
            .unwrap_or(Value::Null),
        instructions: result.get("instructions").and_then(Value::as_str).map(str::to_string),
    })
}

/// One question of an `input_required` result: its key, method and params.
pub type InputRequest = (String, String, Option<Value>);

/// An `input_required` result's questions and the upstream's `requestState`.
pub type Asked = (Vec<InputRequest>, Option<Value>);

/// What a result asks: `Ok(None)` when it is complete; else its questions and its state.
pub fn input_required(upstream: &str, method: &str, result: &Value) -> Result<Option<Asked>, ErrorObject> {
    if result.get("resultType").and_then(Value::as_str) != Some("input_required") {
        return Ok(None);
    }
    let bad = |why: String| Err(ErrorObject::new(jsonrpc::INTERNAL_ERROR, format!("upstream {upstream}: {why}")));
    if !MULTI_ROUND_TRIP.contains(&method) {
        return bad(format!("asked for input on {method}, which cannot"));
    }
    let state = result.get("requestState").cloned();
    if state.as_ref().is_some_and(|s| !s.is_string()) {
        return bad("requestState is not a string".into());
    }
    let mut out = Vec::new();
    match result.get("inputRequests") {
        None | Some(Value::Null) if state.is_some() => {}
        Some(Value::Object(m)) if !m.is_empty() => {
            if m.len() > MAX_INPUT_REQUESTS {
                return bad(format!("asked {} questions at once (at most {MAX_INPUT_REQUESTS})", m.len()));
            }
            for (k, r) in m {
                let Some(q) = r.get("method").and_then(Value::as_str) else {
                    return bad(format!("input request {k:?} names no method"));
                };
                if crate::config::ClientRequest::of(q).is_none() {
                    return bad(format!("input request {k:?} is {q}, which is not a client request"));
                }
                out.push((k.clone(), q.to_string(), r.get("params").cloned()));
            }
        }
        _ => return bad("input_required without inputRequests or requestState".into()),
    }
    Ok(Some((out, state)))
}

/// A request's params without the round-trip fields (`inputResponses`, `requestState`).
pub fn without_round_trip(mut params: Option<Value>) -> Option<Value> {
    if let Some(p) = params.as_mut().and_then(Value::as_object_mut) {
        p.remove("inputResponses");
        p.remove("requestState");
    }
    params
}

/// The retry's params: the original with the answers and the upstream's state.
pub fn retry_params(mut params: Value, answers: Map<String, Value>, state: Option<Value>) -> Value {
    if let Some(p) = params.as_object_mut() {
        p.insert("inputResponses".into(), Value::Object(answers));
        match state {
            Some(s) => p.insert("requestState".into(), s),
            None => p.remove("requestState"),
        };
    }
    params
}

/// A complete result as a 2025 session expects it.
pub fn clean_result(mut result: Value) -> Value {
    if let Some(m) = result.as_object_mut() {
        for k in ["resultType", "ttlMs", "cacheScope"] {
            m.remove(k);
        }
        let empty = match m.get_mut("_meta").and_then(Value::as_object_mut) {
            Some(meta) => {
                meta.remove(META_SERVER);
                meta.is_empty()
            }
            None => false,
        };
        if empty {
            m.remove("_meta");
        }
    }
    result
}

/// An error as a 2025 session expects it: resource-not-found is -32002.
pub fn clean_error(method: &str, mut e: ErrorObject) -> ErrorObject {
    if method == "resources/read"
        && e.code == jsonrpc::INVALID_PARAMS
        && e.data.as_ref().is_some_and(|d| d.get("uri").is_some())
    {
        e.code = jsonrpc::RESOURCE_NOT_FOUND;
    }
    e
}

/// A notification from a modern upstream as a 2025 session expects it: the listen stream's
/// acknowledgement is Warden's own business (`None`), and the subscription id is dropped.
pub fn clean_notification(method: &str, params: &mut Option<Value>) -> bool {
    // Only what Warden routes and vets: progress, log messages and the changes it listens for
    // (an upstream's `notifications/tasks`, say, would carry a raw task past `pipeline/task.rs`).
    const RELAYED: &[&str] = &[
        "notifications/progress",
        "notifications/message",
        "notifications/tools/list_changed",
        "notifications/prompts/list_changed",
        "notifications/resources/list_changed",
        "notifications/resources/updated",
    ];
    if !RELAYED.contains(&method) {
        return false;
    }
    if let Some(meta) = params.as_mut().and_then(|p| p.get_mut("_meta")).and_then(Value::as_object_mut) {
        meta.remove(META_SUBSCRIPTION);
    }
    true
}

/// Answers gathered for one round, in key order.
pub fn answers(gathered: Vec<(String, CallResult)>) -> Result<Map<String, Value>, ErrorObject> {
    gathered.into_iter().map(|(k, r)| r.map(|v| (k, v))).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn meta_rides_on_every_request_and_wins() {
        let m = Modern::new(&json!({"capabilities": {"elicitation": {}}, "clientInfo": {"name": "c", "version": "1"}}));
        let p = m.with_meta(Some(json!({"name": "t", "_meta": {META_VERSION: "1999", "progressToken": 3}})));
        assert_eq!(p["_meta"][META_VERSION], REVISION);
        assert_eq!(p["_meta"]["progressToken"], 3);
        assert_eq!(p["_meta"][META_CAPABILITIES], json!({"elicitation": {}}));
        assert!(p["_meta"].get(META_LOG_LEVEL).is_none());
        assert!(matches!(m.local("logging/setLevel", Some(&json!({"level": "info"}))), Some(Ok(false))));
        assert_eq!(m.with_meta(None)["_meta"][META_LOG_LEVEL], "info");
        assert!(matches!(m.local("logging/setLevel", Some(&json!({"level": "loud"}))), Some(Err(_))));
        assert!(m.local("tools/call", None).is_none());
    }

    #[test]
    fn subscriptions_shape_the_listen_request() {
        let m = Modern::new(&json!({}));
        let caps = json!({"tools": {"listChanged": true}, "resources": {"subscribe": true}});
        assert_eq!(m.listen_params(&caps).unwrap()["notifications"], json!({"toolsListChanged": true}));
        assert!(matches!(m.local("resources/subscribe", Some(&json!({"uri": "a://1"}))), Some(Ok(true))));
        assert!(matches!(m.local("resources/subscribe", Some(&json!({"uri": "a://1"}))), Some(Ok(false))));
        assert_eq!(m.listen_params(&caps).unwrap()["notifications"]["resourceSubscriptions"], json!(["a://1"]));
        assert!(matches!(m.local("resources/unsubscribe", Some(&json!({"uri": "a://1"}))), Some(Ok(true))));
        assert!(m.listen_params(&json!({})).is_none());
        assert!(matches!(m.local("resources/subscribe", Some(&json!({}))), Some(Err(_))));
    }

    #[test]
    fn callers_of_a_shared_connection_keep_their_own_meta_levels_and_subscriptions() {
        let m = Modern::new(&json!({"capabilities": {}}));
        let a = ClientSide { id: 1, capabilities: json!({"sampling": {}}), client_info: Some(json!({"name": "a"})) };
        let b = ClientSide { id: 2, capabilities: json!({}), client_info: None };
        assert!(matches!(m.local_for(1, "logging/setLevel", Some(&json!({"level": "debug"}))), Some(Ok(false))));
        let pa = m.with_meta_for(Some(&a), None);
        let pb = m.with_meta_for(Some(&b), None);
        assert_eq!(pa["_meta"][META_CAPABILITIES], json!({"sampling": {}}));
        assert_eq!((pa["_meta"][META_LOG_LEVEL].as_str(), pb["_meta"].get(META_LOG_LEVEL)), (Some("debug"), None));
        assert_eq!(pb["_meta"][META_CAPABILITIES], json!({}));
        assert!(pb["_meta"].get(META_CLIENT).is_none());
        // Both want one resource: the stream changes with the first and the last only.
        let sub = |who, method| m.local_for(who, method, Some(&json!({"uri": "r://1"}))).unwrap().unwrap();
        assert!(sub(1, "resources/subscribe"));
        assert!(!sub(2, "resources/subscribe"));
        assert_eq!(m.subscribers("r://1"), vec![1, 2]);
        assert!(!sub(1, "resources/unsubscribe"));
        assert_eq!(m.subscribers("r://1"), vec![2]);
        assert!(m.forget(2), "the last one left: the stream is renewed");
        assert!(m.subscribers("r://1").is_empty());
        assert!(!m.forget(1));
    }

    #[test]
    fn input_required_is_checked_before_anything_is_asked() {
        let ir = |v: Value| input_required("u", "tools/call", &v);
        assert!(ir(json!({"resultType": "complete", "content": []})).unwrap().is_none());
        let (q, s) = ir(json!({"resultType": "input_required", "requestState": "s",
            "inputRequests": {"a": {"method": "elicitation/create", "params": {"message": "m"}}}}))
        .unwrap()
        .unwrap();
        assert_eq!((q[0].0.as_str(), q[0].1.as_str(), s), ("a", "elicitation/create", Some(json!("s"))));
        for bad in [
            json!({"resultType": "input_required"}),
            json!({"resultType": "input_required", "inputRequests": {"a": {"method": "tools/call"}}}),
            json!({"resultType": "input_required", "inputRequests": {"a": {}}}),
            json!({"resultType": "input_required", "requestState": 5}),
            json!({"resultType": "input_required", "inputRequests": (0..17).map(|i| (i.to_string(), json!({"method": "roots/list"}))).collect::<Map<_, _>>()}),
        ] {
            assert!(ir(bad.clone()).is_err(), "{bad}");
        }
        let only_state = json!({"resultType": "input_required", "requestState": "s"});
        assert!(input_required("u", "tools/list", &only_state).is_err(), "lists never ask");
    }

    #[test]
    fn results_and_errors_read_as_2025() {
        let r = clean_result(json!({"resultType": "complete", "ttlMs": 5, "cacheScope": "public", "tools": [],
                                    "_meta": {META_SERVER: {"name": "s"}}}));
        assert_eq!(r, json!({"tools": []}));
        let mut e = ErrorObject::new(-32602, "Resource not found");
        e.data = Some(json!({"uri": "x"}));
        let e = clean_error("resources/read", e);
        assert_eq!(e.code, jsonrpc::RESOURCE_NOT_FOUND);
        let mut p = Some(json!({"_meta": {META_SUBSCRIPTION: 1}, "uri": "x"}));
        assert!(clean_notification("notifications/resources/updated", &mut p));
        assert_eq!(p, Some(json!({"_meta": {}, "uri": "x"})));
        assert!(!clean_notification("notifications/subscriptions/acknowledged", &mut None));
        let init = server_init(&json!({"supportedVersions": [REVISION], "capabilities": {"tools": {}},
                                       "_meta": {META_SERVER: {"name": "s"}}}))
        .unwrap();
        assert_eq!(init.server_info["name"], "s");
        assert_eq!(init.capabilities, json!({"tools": {}, "logging": {}}));
        assert!(server_init(&json!({"supportedVersions": ["2099-01-01"]})).is_none());
    }
}
