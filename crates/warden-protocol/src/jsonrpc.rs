//! The JSON-RPC 2.0 envelope. Only the envelope is typed: `params`, `result` and `error.data`
//! stay raw JSON so fields from newer spec revisions pass through untouched.

use serde_json::{Map, Value};
use std::fmt;

/// Standard JSON-RPC error codes.
pub const PARSE_ERROR: i64 = -32700;
pub const INVALID_REQUEST: i64 = -32600;
pub const METHOD_NOT_FOUND: i64 = -32601;
pub const INVALID_PARAMS: i64 = -32602;
pub const INTERNAL_ERROR: i64 = -32603;
/// MCP: resource not found.
pub const RESOURCE_NOT_FOUND: i64 = -32002;
/// Implementation-defined server errors (-32000..-32099).
pub const SERVER_ERROR: i64 = -32000;
pub const REQUEST_CANCELLED: i64 = -32800;

/// Default maximum nesting of arrays/objects accepted in one message.
pub const DEFAULT_MAX_DEPTH: usize = 64;

/// A request id: a string or an integer (JSON-RPC also allows null only in error responses).
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub enum Id {
    Num(i64),
    Str(String),
    Null,
}

impl Id {
    pub fn to_value(&self) -> Value {
        match self {
            Id::Num(n) => Value::from(*n),
            Id::Str(s) => Value::from(s.as_str()),
            Id::Null => Value::Null,
        }
    }
    /// An id from JSON: a string or an integer (null too; callers decide if it is allowed).
    pub fn from_value(v: &Value) -> Option<Id> {
        match v {
            Value::String(s) => Some(Id::Str(s.clone())),
            Value::Number(n) => n.as_i64().map(Id::Num),
            Value::Null => Some(Id::Null),
            _ => None,
        }
    }
}

impl fmt::Display for Id {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Id::Num(n) => write!(f, "{n}"),
            Id::Str(s) => write!(f, "{s:?}"),
            Id::Null => f.write_str("null"),
        }
    }
}

#[derive(Clone, Debug, PartialEq)]
pub struct ErrorObject {
    pub code: i64,
    pub message: String,
    pub data: Option<Value>,
    /// How an HTTP transport answers with it, when not with 200 (never serialized: the error
    /// carries its status from where it is made to where the response is written).
    pub http: Option<HttpStatus>,
}

/// An HTTP status for an error answer, and `Retry-After` seconds.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct HttpStatus {
    pub status: u16,
    pub retry_after: Option<u64>,
}

/// The `requestId` named by a `notifications/cancelled`.
pub fn cancelled_request_id(params: Option<&Value>) -> Option<Id> {
    params?.get("requestId").and_then(Id::from_value).filter(|id| *id != Id::Null)
}

impl ErrorObject {
    pub fn new(code: i64, message: impl Into<String>) -> Self {
        ErrorObject { code, message: message.into(), data: None, http: None }
    }
    /// The same error, answered over HTTP with `status` (and `Retry-After`).
    pub fn with_http(mut self, status: u16, retry_after: Option<u64>) -> Self {
        self.http = Some(HttpStatus { status, retry_after });
        self
    }
    pub fn to_value(&self) -> Value {
        let mut m = Map::new();
        m.insert("code".into(), self.code.into());
        m.insert("message".into(), self.message.clone().into());
        if let Some(d) = &self.data {
            m.insert("data".into(), d.clone());
        }
        Value::Object(m)
    }
    /// An error object from JSON (`code` and `message` required).
    pub fn from_value(v: &Value) -> Option<Self> {
        let o = v.as_object()?;
        Some(ErrorObject {
            code: o.get("code")?.as_i64()?,
            message: o.get("message")?.as_str()?.to_string(),
            data: o.get("data").cloned(),
            http: None,
        })
    }
}

impl fmt::Display for ErrorObject {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} ({})", self.message, self.code)
    }
}

/// One JSON-RPC message.
#[derive(Clone, Debug, PartialEq)]
pub enum Message {
    Request { id: Id, method: String, params: Option<Value> },
    Notification { method: String, params: Option<Value> },
    Response { id: Id, result: Value },
    Error { id: Id, error: ErrorObject },
}

/// Why bytes are not a JSON-RPC message. `id` is the request id when it could be read, so the
/// error reply can name it.
#[derive(Debug, thiserror::Error, PartialEq)]
pub enum ParseError {
    #[error("message is not valid UTF-8")]
    Utf8,
    #[error("message nests deeper than {0} levels")]
    TooDeep(usize),
    #[error("invalid JSON: {0}")]
    Json(String),
    #[error("invalid JSON-RPC message: {reason}")]
    Invalid { reason: &'static str, id: Option<Id> },
    #[error("JSON-RPC batches are not supported")]
    Batch,
}

impl ParseError {
    pub fn code(&self) -> i64 {
        match self {
            ParseError::Utf8 | ParseError::Json(_) | ParseError::TooDeep(_) => PARSE_ERROR,
            ParseError::Invalid { .. } | ParseError::Batch => INVALID_REQUEST,
        }
    }
    pub fn id(&self) -> Id {
        match self {
            ParseError::Invalid { id: Some(id), .. } => id.clone(),
            _ => Id::Null,
        }
    }
    /// The error reply to send for this parse failure.
    pub fn to_reply(&self) -> Message {
        Message::Error { id: self.id(), error: ErrorObject::new(self.code(), self.to_string()) }
    }
}

/// Reject input that nests deeper than `max`, without building it. Linear, no allocation.
pub fn check_depth(bytes: &[u8], max: usize) -> Result<(), ParseError> {
    let (mut depth, mut in_str, mut esc) = (0usize, false, false);
    for &b in bytes {
        if in_str {
            if esc {
                esc = false;
            } else if b == b'\\' {
                esc = true;
            } else if b == b'"' {
                in_str = false;
            }
            continue;
        }
        match b {
            b'"' => in_str = true,
            b'[' | b'{' => {
                depth += 1;
                if depth > max {
                    return Err(ParseError::TooDeep(max));
                }
            }
            b']' | b'}' => depth = depth.saturating_sub(1),
            _ => {}
        }
    }
    Ok(())
}

impl serde::Serialize for Id {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        match self {
            Id::Num(n) => s.serialize_i64(*n),
            Id::Str(v) => s.serialize_str(v),
            Id::Null => s.serialize_unit(),
        }
    }
}

impl serde::Serialize for ErrorObject {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        use serde::ser::SerializeMap;
        let mut m = s.serialize_map(None)?;
        m.serialize_entry("code", &self.code)?;
        m.serialize_entry("message", &self.message)?;
        if let Some(d) = &self.data {
            m.serialize_entry("data", d)?;
        }
        m.end()
    }
}

impl serde::Serialize for Message {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        use serde::ser::SerializeMap;
        let mut m = s.serialize_map(None)?;
        m.serialize_entry("jsonrpc", "2.0")?;
        match self {
            Message::Request { id, method, params } => {
                m.serialize_entry("id", id)?;
                m.serialize_entry("method", method)?;
                if let Some(p) = params {
                    m.serialize_entry("params", p)?;
                }
            }
            Message::Notification { method, params } => {
                m.serialize_entry("method", method)?;
                if let Some(p) = params {
                    m.serialize_entry("params", p)?;
                }
            }
            Message::Response { id, result } => {
                m.serialize_entry("id", id)?;
                m.serialize_entry("result", result)?;
            }
            Message::Error { id, error } => {
                // An unknown id (parse errors) is left out, not `null`: MCP's schema makes the
                // error's `id` optional, and the official TypeScript SDK rejects `null` there.
                if *id != Id::Null {
                    m.serialize_entry("id", id)?;
                }
                m.serialize_entry("error", error)?;
            }
        }
        m.end()
    }
}

impl Message {
    /// Parse one message from bytes with a nesting limit.
    pub fn parse(bytes: &[u8], max_depth: usize) -> Result<Message, ParseError> {
        std::str::from_utf8(bytes).map_err(|_| ParseError::Utf8)?;
        check_depth(bytes, max_depth)?;
        let v: Value = serde_json::from_slice(bytes).map_err(|e| ParseError::Json(e.to_string()))?;
        if v.is_array() {
            return Err(ParseError::Batch);
        }
        Message::from_value(v)
    }

    /// Validate and type an already-parsed JSON value.
    pub fn from_value(v: Value) -> Result<Message, ParseError> {
        let Value::Object(mut o) = v else {
            return Err(ParseError::Invalid { reason: "not a JSON object", id: None });
        };
        let id = match o.get("id") {
            None => None,
            Some(raw) => Some(
                Id::from_value(raw)
                    .ok_or(ParseError::Invalid { reason: "id must be a string or an integer", id: None })?,
            ),
        };
        let bad = |reason| ParseError::Invalid { reason, id: id.clone() };
        if o.get("jsonrpc").and_then(Value::as_str) != Some("2.0") {
            return Err(bad("jsonrpc must be \"2.0\""));
        }
        if let Some(m) = o.remove("method") {
            let Value::String(method) = m else {
                return Err(bad("method must be a string"));
            };
            let params = o.remove("params");
            if matches!(params, Some(ref p) if !p.is_object() && !p.is_array()) {
                return Err(bad("params must be an object or an array"));
            }
            return Ok(match id {
                None => Message::Notification { method, params },
                Some(Id::Null) => return Err(bad("request id must not be null")),
                Some(id) => Message::Request { id, method, params },
            });
        }
        // An error may leave out the id it could not read (MCP); it is `Id::Null` here.
        let id = match id.clone() {
            Some(id) => id,
            None if o.contains_key("error") => Id::Null,
            None => return Err(bad("a response needs an id")),
        };
        match (o.remove("result"), o.remove("error")) {
            (Some(result), None) => {
                if id == Id::Null {
                    return Err(bad("a result needs a non-null id"));
                }
                Ok(Message::Response { id, result })
            }
            (None, Some(e)) => {
                let error = ErrorObject::from_value(&e).ok_or_else(|| bad("malformed error object"))?;
                Ok(Message::Error { id, error })
            }
            _ => Err(bad("a response needs exactly one of result and error")),
        }
    }

    pub fn to_value(&self) -> Value {
        let mut m = Map::new();
        m.insert("jsonrpc".into(), "2.0".into());
        match self {
            Message::Request { id, method, params } => {
                m.insert("id".into(), id.to_value());
                m.insert("method".into(), method.clone().into());
                if let Some(p) = params {
                    m.insert("params".into(), p.clone());
                }
            }
            Message::Notification { method, params } => {
                m.insert("method".into(), method.clone().into());
                if let Some(p) = params {
                    m.insert("params".into(), p.clone());
                }
            }
            Message::Response { id, result } => {
                m.insert("id".into(), id.to_value());
                m.insert("result".into(), result.clone());
            }
            Message::Error { id, error } => {
                if *id != Id::Null {
                    m.insert("id".into(), id.to_value());
                }
                m.insert("error".into(), error.to_value());
            }
        }
        Value::Object(m)
    }

    /// Serialize without copying params/result (the relay's hot path).
    pub fn to_json(&self) -> String {
        serde_json::to_string(self).expect("a Message always serializes")
    }

    pub fn method(&self) -> Option<&str> {
        match self {
            Message::Request { method, .. } | Message::Notification { method, .. } => Some(method),
            _ => None,
        }
    }

    pub fn error(id: Id, code: i64, message: impl Into<String>) -> Message {
        Message::Error { id, error: ErrorObject::new(code, message) }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn p(s: &str) -> Result<Message, ParseError> {
        Message::parse(s.as_bytes(), DEFAULT_MAX_DEPTH)
    }

    #[test]
    fn parses_the_four_kinds_and_round_trips() {
        let cases = [
            r#"{"jsonrpc":"2.0","id":1,"method":"tools/list","params":{"cursor":"x","newField":[1]}}"#,
            r#"{"jsonrpc":"2.0","method":"notifications/initialized"}"#,
            r#"{"jsonrpc":"2.0","id":"a","result":{"tools":[]}}"#,
            r#"{"jsonrpc":"2.0","id":2,"error":{"code":-32601,"message":"nope","data":{"k":1}}}"#,
            // no id to name (a parse error): absent, never null
            r#"{"jsonrpc":"2.0","error":{"code":-32700,"message":"invalid JSON"}}"#,
        ];
        for c in cases {
            let m = p(c).unwrap();
            let back: Value = serde_json::from_str(c).unwrap();
            assert_eq!(m.to_value(), back, "{c}");
            assert_eq!(serde_json::from_str::<Value>(&m.to_json()).unwrap(), back, "{c}");
        }
    }

    #[test]
    fn rejects_hostile_frames_with_precise_errors() {
        assert_eq!(Message::parse(b"{\"a\":\"\xff\"}", 64), Err(ParseError::Utf8));
        assert!(matches!(p("{"), Err(ParseError::Json(_))));
        assert_eq!(p("[]"), Err(ParseError::Batch));
        assert!(matches!(
            p(r#"{"jsonrpc":"1.0","id":1,"method":"x"}"#),
            Err(ParseError::Invalid { id: Some(Id::Num(1)), .. })
        ));
        assert!(matches!(p(r#"{"jsonrpc":"2.0","id":{},"method":"x"}"#), Err(ParseError::Invalid { .. })));
        assert!(matches!(p(r#"{"jsonrpc":"2.0","id":null,"method":"x"}"#), Err(ParseError::Invalid { .. })));
        assert!(matches!(p(r#"{"jsonrpc":"2.0","id":1,"method":"x","params":3}"#), Err(ParseError::Invalid { .. })));
        assert!(matches!(p(r#"{"jsonrpc":"2.0","id":1}"#), Err(ParseError::Invalid { .. })));
        assert!(matches!(p("42"), Err(ParseError::Invalid { .. })));
        let deep = format!("{}{}", "[".repeat(100), "]".repeat(100));
        assert_eq!(p(&deep), Err(ParseError::TooDeep(64)));
        // brackets inside strings do not count
        let s = json!({"jsonrpc":"2.0","method":"m","params":{"x":"[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[["}});
        assert!(p(&s.to_string()).is_ok());
    }

    #[test]
    fn error_reply_names_the_request_when_known() {
        let e = p(r#"{"jsonrpc":"1.0","id":"q","method":"x"}"#).unwrap_err();
        let Message::Error { id, error } = e.to_reply() else { panic!() };
        assert_eq!(id, Id::Str("q".into()));
        assert_eq!(error.code, INVALID_REQUEST);
    }
}
