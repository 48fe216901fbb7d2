//! The wire vocabulary of MCP 2026-07-28 (stateless): the per-request `_meta` keys, the error
//! codes it added, and the value encoding of its standard HTTP headers. Shared by the endpoint
//! that serves 2026 clients and the connection that calls 2026 upstreams.

use base64::Engine;
use serde_json::Value;

pub const META_VERSION: &str = "io.modelcontextprotocol/protocolVersion";
pub const META_CAPABILITIES: &str = "io.modelcontextprotocol/clientCapabilities";
pub const META_CLIENT: &str = "io.modelcontextprotocol/clientInfo";
pub const META_LOG_LEVEL: &str = "io.modelcontextprotocol/logLevel";
pub const META_SERVER: &str = "io.modelcontextprotocol/serverInfo";
pub const META_SUBSCRIPTION: &str = "io.modelcontextprotocol/subscriptionId";
/// The tasks extension (SEP-2663): a `tools/call` may answer with a task handle.
pub const TASKS_EXTENSION: &str = "io.modelcontextprotocol/tasks";

/// Whether a capabilities object declares the tasks extension.
pub fn declares_tasks(caps: &serde_json::Value) -> bool {
    caps.get("extensions").and_then(|e| e.get(TASKS_EXTENSION)).is_some()
}

/// A standard header does not match the body (HTTP 400).
pub const HEADER_MISMATCH: i64 = -32020;
/// The request needs a client capability the request did not declare (HTTP 400).
pub const MISSING_CLIENT_CAPABILITY: i64 = -32021;
/// The request's protocol version is not spoken here (HTTP 400).
pub const UNSUPPORTED_VERSION: i64 = -32022;

/// The request methods that may answer `input_required`.
pub const MULTI_ROUND_TRIP: &[&str] = &["tools/call", "prompts/get", "resources/read"];

/// Warden's own `_meta` key on a question it relays: the key a 2026 upstream gave it in
/// `inputRequests`, so a 2026 client sees the upstream's key (taken off before anything else
/// sees the question).
pub const META_INPUT_KEY: &str = "warden/inputKey";

/// Take Warden's input key off a question's params (`None`: none, or not a usable key: at most
/// 64 characters of letters, digits and `_-.:#/`).
pub fn take_input_key(params: &mut Option<Value>) -> Option<String> {
    let meta = params.as_mut()?.get_mut("_meta")?.as_object_mut()?;
    let key = meta.remove(META_INPUT_KEY)?;
    if meta.is_empty() {
        if let Some(p) = params.as_mut().and_then(Value::as_object_mut) {
            p.remove("_meta");
        }
    }
    let k = key.as_str()?;
    let ok = !k.is_empty() && k.len() <= 64 && k.bytes().all(|b| b.is_ascii_alphanumeric() || b"_-.:#/".contains(&b));
    ok.then(|| k.to_string())
}

/// Put Warden's input key on a question's params (see [`META_INPUT_KEY`]).
pub fn put_input_key(params: &mut Option<Value>, key: &str) {
    if let Some(m) = params.get_or_insert_with(|| Value::Object(Default::default())).as_object_mut() {
        let meta = m.entry("_meta").or_insert_with(|| Value::Object(Default::default()));
        if let Some(meta) = meta.as_object_mut() {
            meta.insert(META_INPUT_KEY.into(), key.into());
        }
    }
}

/// What `Mcp-Name` carries for `method`: the tool or prompt name, the resource URI, or the task id.
pub fn name_of<'a>(method: &str, params: Option<&'a Value>) -> Option<&'a str> {
    let field = match method {
        "tools/call" | "prompts/get" => "name",
        "resources/read" => "uri",
        // Routing intermediaries find a task's holder by its id (SEP-2663).
        "tasks/get" | "tasks/update" | "tasks/cancel" => "taskId",
        _ => return None,
    };
    params?.get(field)?.as_str()
}

const B64_START: &str = "=?base64?";
const B64_END: &str = "?=";

/// A standard header's value as the sender meant it: optional whitespace trimmed, and a
/// `=?base64?…?=` value decoded (invalid base64 or UTF-8: `None`, a mismatch).
pub fn header_value(raw: &str) -> Option<String> {
    let t = raw.trim_matches([' ', '\t']);
    match t.strip_prefix(B64_START).and_then(|r| r.strip_suffix(B64_END)) {
        Some(b64) => {
            let bytes = base64::engine::general_purpose::STANDARD.decode(b64).ok()?;
            String::from_utf8(bytes).ok()
        }
        None => Some(t.to_string()),
    }
}

/// A value as a standard header carries it: literal when it is visible ASCII without leading
/// or trailing space and not itself in the sentinel form, else `=?base64?…?=`.
pub fn encode_header_value(v: &str) -> String {
    let sentinel = v.starts_with(B64_START) && v.ends_with(B64_END);
    let literal = v.bytes().all(|b| (0x20..0x7f).contains(&b)) && !v.starts_with(' ') && !v.ends_with(' ') && !sentinel;
    if literal {
        v.to_string()
    } else {
        format!("{B64_START}{}{B64_END}", base64::engine::general_purpose::STANDARD.encode(v))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn header_values_round_trip() {
        for v in ["get_weather", "café", " padded", "=?base64?x?=", "tab\there", "file:///a b"] {
            let enc = encode_header_value(v);
            assert!(enc.is_ascii() && !enc.contains('\t'), "{enc}");
            assert_eq!(header_value(&enc).as_deref(), Some(v), "{v}");
        }
        assert_eq!(encode_header_value("plain"), "plain");
        assert_eq!(encode_header_value("café"), "=?base64?Y2Fmw6k=?=");
        assert_eq!(header_value("=?base64?SGVsbG8?="), None, "bad padding");
    }

    #[test]
    fn input_keys_are_taken_off_and_checked() {
        let mut p = Some(serde_json::json!({"message": "m"}));
        put_input_key(&mut p, "user_name");
        assert_eq!(take_input_key(&mut p).as_deref(), Some("user_name"));
        assert_eq!(p, Some(serde_json::json!({"message": "m"})), "nothing of Warden's stays");
        let mut p = Some(serde_json::json!({"_meta": {META_INPUT_KEY: "a b", "x": 1}}));
        assert_eq!(take_input_key(&mut p), None);
        assert_eq!(p, Some(serde_json::json!({"_meta": {"x": 1}})));
        assert_eq!(take_input_key(&mut None), None);
    }

    #[test]
    fn names_come_from_the_params_the_method_names() {
        let p = serde_json::json!({"name": "t", "uri": "file:///x"});
        assert_eq!(name_of("tools/call", Some(&p)), Some("t"));
        assert_eq!(name_of("resources/read", Some(&p)), Some("file:///x"));
        assert_eq!(name_of("tools/list", Some(&p)), None);
    }
}
