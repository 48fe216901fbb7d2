//! MCP 2026-07-28 on the Streamable HTTP endpoint: telling a stateless request from a 2025
//! session's, and checking it before anything runs (issue 21, first slice).
//!
//! A request is of the stateless revision when its `_meta` names a protocol version, or when its
//! `MCP-Protocol-Version` header is one no 2025 session revision has. Its checks, in the order
//! the conformance suite probes them: the `_meta` fields it must carry (-32602, HTTP 400), the
//! version header against `_meta` (-32020, 400), a version Warden does not speak (-32022, 400,
//! with the versions it does), the `Mcp-Method` and `Mcp-Name` headers against the body (-32020,
//! 400; `=?base64?…?=` values decoded first), then methods the revision removed or never had
//! (404, -32601). Policy, limits and audit read the body only; headers are only compared.
//!
//! Not yet (later slices of issue 21): `Mcp-Param-*` headers, 2026 upstreams.

use http::{HeaderMap, StatusCode};
use serde_json::{json, Value};
use warden_protocol::jsonrpc::{self, ErrorObject, Id, Message};
use warden_protocol::param_headers::{param_value, HeaderParam};
use warden_protocol::version;

pub use warden_protocol::modern::{
    header_value, HEADER_MISMATCH, META_CAPABILITIES, META_CLIENT, META_LOG_LEVEL, META_SERVER, META_VERSION,
    MISSING_CLIENT_CAPABILITY, TASKS_EXTENSION, UNSUPPORTED_VERSION,
};

/// A refusal before the request runs: the HTTP status and the JSON-RPC error.
#[derive(Debug)]
pub struct Refused {
    pub status: StatusCode,
    pub error: ErrorObject,
}

fn refused(status: StatusCode, code: i64, message: impl Into<String>) -> Refused {
    Refused { status, error: ErrorObject::new(code, message) }
}

/// A stateless request that passed its checks.
#[derive(Debug)]
pub struct Stateless {
    pub id: Id,
    pub method: String,
    pub params: Value,
    pub version: String,
    pub client_capabilities: Value,
    pub client_info: Option<Value>,
}

/// Is `msg` (with these headers) of the stateless revision?
pub fn is_stateless(msg: &Message, h: &HeaderMap) -> bool {
    let meta_version = match msg {
        Message::Request { params, .. } | Message::Notification { params, .. } => {
            params.as_ref().and_then(|p| p.pointer(&format!("/_meta/{}", META_VERSION.replace('/', "~1")))).is_some()
        }
        _ => false,
    };
    meta_version || header(h, "mcp-protocol-version").is_some_and(|v| !version::is_supported(v))
}

fn header<'a>(h: &'a HeaderMap, name: &str) -> Option<&'a str> {
    h.get(name).and_then(|v| v.to_str().ok())
}

/// A standard header given more than once (one reader may take the first, another the last).
fn repeated(h: &HeaderMap) -> Option<&'static str> {
    ["mcp-protocol-version", "mcp-method", "mcp-name"].into_iter().find(|n| h.get_all(*n).iter().count() > 1)
}

/// Methods of the session revisions that the stateless revision removed: 404, -32601.
const REMOVED: &[&str] = &["initialize", "ping", "logging/setLevel", "resources/subscribe", "resources/unsubscribe"];

/// Methods a stateless request may name (others: 404, -32601).
const SERVED: &[&str] = &[
    "server/discover",
    "tools/list",
    "tools/call",
    "resources/list",
    "resources/templates/list",
    "resources/read",
    "prompts/list",
    "prompts/get",
    "completion/complete",
    "subscriptions/listen",
    // The tasks extension (`io.modelcontextprotocol/tasks`), for a request that declares it.
    "tasks/get",
    "tasks/update",
    "tasks/cancel",
];

/// Check a stateless request before it runs, in the order the revision's tests probe.
pub fn check(msg: Message, h: &HeaderMap) -> Result<Stateless, (Id, Refused)> {
    let Message::Request { id, method, params } = msg else {
        return Err((Id::Null, refused(StatusCode::BAD_REQUEST, jsonrpc::INVALID_REQUEST, "expected a request")));
    };
    let bad = |r: Refused| Err((id.clone(), r));
    let params = params.unwrap_or(Value::Null);
    let meta = params.get("_meta").and_then(Value::as_object);
    let Some(meta) = meta else {
        return bad(refused(StatusCode::BAD_REQUEST, jsonrpc::INVALID_PARAMS, "params._meta is required"));
    };
    let Some(v) = meta.get(META_VERSION).and_then(Value::as_str) else {
        return bad(refused(
            StatusCode::BAD_REQUEST,
            jsonrpc::INVALID_PARAMS,
            format!("params._meta[{META_VERSION:?}] is required"),
        ));
    };
    let Some(caps) = meta.get(META_CAPABILITIES).filter(|c| c.is_object()) else {
        return bad(refused(
            StatusCode::BAD_REQUEST,
            jsonrpc::INVALID_PARAMS,
            format!("params._meta[{META_CAPABILITIES:?}] is required"),
        ));
    };
    if let Some(n) = repeated(h) {
        return bad(refused(
            StatusCode::BAD_REQUEST,
            HEADER_MISMATCH,
            format!("Header mismatch: {n} given more than once"),
        ));
    }
    match header(h, "mcp-protocol-version").and_then(header_value) {
        Some(hv) if hv == v => {}
        Some(_) => {
            return bad(refused(
                StatusCode::BAD_REQUEST,
                HEADER_MISMATCH,
                "Header mismatch: MCP-Protocol-Version differs from the body",
            ))
        }
        None => {
            return bad(refused(
                StatusCode::BAD_REQUEST,
                HEADER_MISMATCH,
                "Header mismatch: MCP-Protocol-Version is required",
            ))
        }
    }
    if !version::is_stateless(v) {
        let mut r = refused(StatusCode::BAD_REQUEST, UNSUPPORTED_VERSION, "Unsupported protocol version");
        r.error.data = Some(json!({"supported": version::ALL, "requested": v}));
        return bad(r);
    }
    match header(h, "mcp-method").map(header_value) {
        Some(Some(m)) if m == method => {}
        Some(_) => {
            return bad(refused(
                StatusCode::BAD_REQUEST,
                HEADER_MISMATCH,
                "Header mismatch: Mcp-Method differs from the body",
            ))
        }
        None => {
            return bad(refused(StatusCode::BAD_REQUEST, HEADER_MISMATCH, "Header mismatch: Mcp-Method is required"))
        }
    }
    if let Some(name) = warden_protocol::modern::name_of(&method, Some(&params)) {
        match header(h, "mcp-name").map(header_value) {
            Some(Some(n)) if n == name => {}
            Some(_) => {
                return bad(refused(
                    StatusCode::BAD_REQUEST,
                    HEADER_MISMATCH,
                    "Header mismatch: Mcp-Name differs from the body",
                ))
            }
            None => {
                return bad(refused(StatusCode::BAD_REQUEST, HEADER_MISMATCH, "Header mismatch: Mcp-Name is required"))
            }
        }
    }
    if let Some(level) = meta.get(META_LOG_LEVEL) {
        const LEVELS: &[&str] = &["debug", "info", "notice", "warning", "error", "critical", "alert", "emergency"];
        if !level.as_str().is_some_and(|l| LEVELS.contains(&l)) {
            return bad(refused(StatusCode::BAD_REQUEST, jsonrpc::INVALID_PARAMS, "invalid log level"));
        }
    }
    if REMOVED.contains(&method.as_str()) || !SERVED.contains(&method.as_str()) {
        return bad(refused(StatusCode::NOT_FOUND, jsonrpc::METHOD_NOT_FOUND, format!("Method not found: {method}")));
    }
    if method.starts_with("tasks/") && !warden_protocol::modern::declares_tasks(caps) {
        let mut r = refused(
            StatusCode::BAD_REQUEST,
            MISSING_CLIENT_CAPABILITY,
            format!("Missing required client capability: {method} needs the {TASKS_EXTENSION} extension"),
        );
        r.error.data = Some(json!({"requiredCapabilities": {"extensions": {TASKS_EXTENSION: {}}}}));
        return bad(r);
    }
    Ok(Stateless {
        version: v.to_string(),
        client_capabilities: caps.clone(),
        client_info: meta.get(META_CLIENT).cloned(),
        id,
        method,
        params,
    })
}

/// Check a `tools/call`'s `Mcp-Param-*` headers against its arguments, for the annotations of
/// the tool the caller's session listed: each argument present needs its header, decoded equal
/// (integers numerically); a header without an argument, given twice, or not decodable is a
/// mismatch. Headers of no annotation are ignored, as the revision says.
pub fn check_params(annotated: &[HeaderParam], params: &Value, h: &HeaderMap) -> Result<(), Refused> {
    let mismatch =
        |what: String| Err(refused(StatusCode::BAD_REQUEST, HEADER_MISMATCH, format!("Header mismatch: {what}")));
    let args = params.get("arguments");
    for p in annotated {
        let name = p.header();
        let sent: Vec<_> = h.get_all(name.as_str()).iter().collect();
        let body = match param_value(args, &p.path) {
            Ok(b) => b,
            // Not a value a header can carry: the schema check refuses the call.
            Err(_) => continue,
        };
        match (sent.as_slice(), body) {
            ([], None) => {}
            ([], Some(_)) => return mismatch(format!("Mcp-Param-{} is required", p.name)),
            ([v], Some(b)) => match v.to_str().ok().and_then(header_value) {
                Some(decoded) if b.matches(&decoded) => {}
                _ => return mismatch(format!("Mcp-Param-{} differs from the body", p.name)),
            },
            ([_], None) => return mismatch(format!("Mcp-Param-{} has no argument in the body", p.name)),
            _ => return mismatch(format!("Mcp-Param-{} is given more than once", p.name)),
        }
    }
    Ok(())
}

/// The `server/discover` result, from what the merged upstreams offer (an `initialize`
/// result of the caller's pooled session).
pub fn discover(init: &Value) -> Value {
    let mut r = json!({
        "resultType": "complete",
        "supportedVersions": version::ALL,
        "capabilities": init.get("capabilities").cloned().unwrap_or_else(|| json!({})),
        // What a caller may see is filtered per caller: never cacheable for another one.
        "ttlMs": 0,
        "cacheScope": "private",
        "_meta": {META_SERVER: {"name": "warden", "title": "Warden MCP gateway", "version": env!("CARGO_PKG_VERSION")}},
    });
    // Capabilities keep their 2026 meaning: `resources.subscribe` says `subscriptions/listen`
    // takes resource subscriptions, `logging` that log messages come to a request that sets
    // `logLevel` (the methods the revision removed are refused in `check`).
    if let Some(i) = init.get("instructions") {
        r["instructions"] = i.clone();
    }
    r
}

/// Shape a result for a stateless client: `resultType`, and on listings and reads `ttlMs` and
/// `cacheScope` (`private`: Warden filters what each caller sees).
pub fn shape_result(method: &str, result: &mut Value) {
    let Some(m) = result.as_object_mut() else { return };
    // A 2025 upstream's answer is complete, whatever it says: an `input_required` of its own
    // would ask the client past `client_requests`, redaction and the audit trail (only Warden
    // turns an upstream's questions into `input_required`, in `mrtr.rs`).
    m.remove("requestState");
    // A task's questions come through Warden's task stage (`pipeline/task.rs`), vetted.
    if method != "tasks/get" {
        m.remove("inputRequests");
    }
    // A task Warden sealed (`pipeline/task.rs`: nothing else reaches here as one).
    if method == "tools/call" && m.get("resultType").and_then(Value::as_str) == Some("task") {
        return;
    }
    m.insert("resultType".into(), "complete".into());
    if matches!(
        method,
        "tools/list" | "prompts/list" | "resources/list" | "resources/templates/list" | "resources/read"
    ) {
        m.insert("ttlMs".into(), 0.into());
        m.insert("cacheScope".into(), "private".into());
    }
}

/// Shape an error for a stateless client: resource-not-found is -32602 with the URI; the
/// revision's own errors (from an upstream too) are HTTP 400.
pub fn shape_error(params: &Value, e: &mut ErrorObject) {
    if matches!(e.code, HEADER_MISMATCH | MISSING_CLIENT_CAPABILITY | UNSUPPORTED_VERSION) {
        e.http = Some(jsonrpc::HttpStatus { status: 400, retry_after: None });
    }
    if e.code == jsonrpc::RESOURCE_NOT_FOUND {
        e.code = jsonrpc::INVALID_PARAMS;
        e.message = "Resource not found".into();
        e.data = Some(json!({"uri": params.get("uri").cloned().unwrap_or(Value::Null)}));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn req(method: &str, params: Value) -> Message {
        Message::Request { id: Id::Num(7), method: method.into(), params: Some(params) }
    }

    fn meta() -> Value {
        json!({META_VERSION: "2026-07-28", META_CAPABILITIES: {}})
    }

    fn headers(pairs: &[(&str, &str)]) -> HeaderMap {
        let mut h = HeaderMap::new();
        for (k, v) in pairs {
            h.append(http::HeaderName::from_bytes(k.as_bytes()).unwrap(), v.parse().unwrap());
        }
        h
    }

    fn code(r: Result<Stateless, (Id, Refused)>) -> (u16, i64) {
        let (id, r) = r.unwrap_err();
        assert_eq!(id, Id::Num(7), "every refusal keeps the request id");
        (r.status.as_u16(), r.error.code)
    }

    #[test]
    fn eras_are_told_apart() {
        let legacy = req("tools/list", json!({}));
        assert!(!is_stateless(&legacy, &headers(&[])));
        assert!(!is_stateless(&legacy, &headers(&[("mcp-protocol-version", "2025-11-25")])));
        assert!(is_stateless(&legacy, &headers(&[("mcp-protocol-version", "2026-07-28")])));
        assert!(is_stateless(&req("tools/list", json!({"_meta": meta()})), &headers(&[])));
    }

    /// Issue 21: each header that is missing, malformed or does not match the body is HTTP 400
    /// with -32020; the checks run in the order the conformance suite probes.
    #[test]
    fn checks_run_in_order_and_headers_must_match_the_body() {
        let good = [("mcp-protocol-version", "2026-07-28"), ("mcp-method", "tools/call"), ("mcp-name", "echo")];
        let call = |p: Value| req("tools/call", p);
        let ok = check(call(json!({"name": "echo", "_meta": meta()})), &headers(&good)).unwrap();
        assert_eq!((ok.method.as_str(), ok.version.as_str()), ("tools/call", "2026-07-28"));
        // 1. _meta fields
        assert_eq!(code(check(call(json!({"name": "echo"})), &headers(&good))), (400, -32602));
        assert_eq!(
            code(check(call(json!({"name": "echo", "_meta": {META_VERSION: "2026-07-28"}})), &headers(&good))),
            (400, -32602)
        );
        // 2. version header against _meta (before the version itself)
        let v999 = json!({"name": "echo", "_meta": {META_VERSION: "v999.0.0", META_CAPABILITIES: {}}});
        assert_eq!(code(check(call(v999.clone()), &headers(&good))), (400, -32020));
        assert_eq!(code(check(call(json!({"name": "echo", "_meta": meta()})), &headers(&good[1..]))), (400, -32020));
        // 3. unsupported version, with what is supported
        let h999 = headers(&[("mcp-protocol-version", "v999.0.0"), ("mcp-method", "tools/call"), ("mcp-name", "echo")]);
        let (_, r) = check(call(v999), &h999).unwrap_err();
        assert_eq!((r.status.as_u16(), r.error.code), (400, -32022));
        assert_eq!(r.error.data.unwrap()["requested"], "v999.0.0");
        // 4. Mcp-Method and Mcp-Name: missing, different, different case
        for h in [
            vec![("mcp-protocol-version", "2026-07-28"), ("mcp-name", "echo")],
            vec![("mcp-protocol-version", "2026-07-28"), ("mcp-method", "tools/list"), ("mcp-name", "echo")],
            vec![("mcp-protocol-version", "2026-07-28"), ("mcp-method", "TOOLS/CALL"), ("mcp-name", "echo")],
            vec![("mcp-protocol-version", "2026-07-28"), ("mcp-method", "tools/call")],
            vec![("mcp-protocol-version", "2026-07-28"), ("mcp-method", "tools/call"), ("mcp-name", "other")],
            vec![
                ("mcp-protocol-version", "2026-07-28"),
                ("mcp-method", "tools/call"),
                ("mcp-name", "=?base64?SGVsbG8?="),
            ],
        ] {
            assert_eq!(
                code(check(call(json!({"name": "echo", "_meta": meta()})), &headers(&h))),
                (400, -32020),
                "{h:?}"
            );
        }
        // A standard header twice (a proxy may read the other one): refused.
        let twice = headers(&[
            ("mcp-protocol-version", "2026-07-28"),
            ("mcp-method", "tools/call"),
            ("mcp-method", "tools/list"),
            ("mcp-name", "echo"),
        ]);
        assert_eq!(code(check(call(json!({"name": "echo", "_meta": meta()})), &twice)), (400, -32020));
        // Padded and base64 names are what the client meant.
        let padded = [
            ("mcp-protocol-version", "2026-07-28"),
            ("Mcp-Method", " tools/call "),
            ("mcp-name", "=?base64?w6ljaG8=?="),
        ];
        assert!(check(call(json!({"name": "écho", "_meta": meta()})), &headers(&padded)).is_ok());
        // 5. removed and unknown methods: 404
        for m in ["initialize", "ping", "logging/setLevel", "resources/subscribe", "unknown/method"] {
            let h = headers(&[("mcp-protocol-version", "2026-07-28"), ("mcp-method", m)]);
            assert_eq!(code(check(req(m, json!({"_meta": meta()})), &h)), (404, -32601), "{m}");
        }
    }

    #[test]
    fn results_carry_their_type_and_cache_scope() {
        let mut r = json!({"tools": []});
        shape_result("tools/list", &mut r);
        assert_eq!(r, json!({"tools": [], "resultType": "complete", "ttlMs": 0, "cacheScope": "private"}));
        let mut r = json!({"content": []});
        shape_result("tools/call", &mut r);
        assert_eq!(r, json!({"content": [], "resultType": "complete"}));
        // Review finding: an upstream's own `input_required` would ask the client past
        // `client_requests`, redaction and audit. A 2025 upstream's answer is complete.
        let mut r = json!({"content": [], "resultType": "input_required", "requestState": "x",
                           "inputRequests": {"q": {"method": "sampling/createMessage", "params": {}}}});
        shape_result("tools/call", &mut r);
        assert_eq!(r, json!({"content": [], "resultType": "complete"}));
        let mut e = ErrorObject::new(jsonrpc::RESOURCE_NOT_FOUND, "x");
        shape_error(&json!({"uri": "test://nope"}), &mut e);
        assert_eq!((e.code, e.data.unwrap()["uri"].as_str()), (-32602, Some("test://nope")));
        let d = discover(&json!({"capabilities": {"tools": {}, "logging": {}, "resources": {"subscribe": true}}}));
        assert_eq!(d["capabilities"], json!({"tools": {}, "logging": {}, "resources": {"subscribe": true}}));
        assert!(d["supportedVersions"].as_array().unwrap().iter().any(|v| v == "2026-07-28"));
        assert_eq!(d["_meta"][META_SERVER]["name"], "warden");
    }
}
