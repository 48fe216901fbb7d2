//! Wire-level MCP: the JSON-RPC 2.0 envelope, protocol revisions, stdio framing limits and the
//! Server-Sent Events codec.
//!
//! Defends against: malformed or hostile frames (wrong `jsonrpc`, bad ids, over-deep nesting,
//! oversized input) reaching later stages; every such frame becomes a typed error.
//! Does not defend against: hostile *content* inside well-formed params (later policy stages).
#![forbid(unsafe_code)]

pub mod jsonrpc;
pub mod modern;
pub mod param_headers;
pub mod sse;
pub mod version;

pub use jsonrpc::{ErrorObject, Id, Message, ParseError};
