//! The gateway's errors. Each knows its JSON-RPC code; messages are safe to show a client
//! (no paths, no upstream addresses, no secrets) — details go to the log.

use warden_protocol::jsonrpc::{self, ErrorObject};

#[derive(Debug, thiserror::Error)]
pub enum GatewayError {
    #[error("Method not found")]
    MethodNotFound,
    #[error("Unknown tool")]
    UnknownTool,
    #[error("Unknown prompt")]
    UnknownPrompt,
    #[error("Resource not found")]
    UnknownResource,
    #[error("Invalid params: {0}")]
    InvalidParams(&'static str),
    #[error("Upstream unavailable")]
    Unavailable,
    /// The upstream's own JSON-RPC error, passed through.
    #[error("{0}")]
    Upstream(ErrorObject),
}

impl GatewayError {
    pub fn to_error_object(&self) -> ErrorObject {
        match self {
            GatewayError::Upstream(e) => e.clone(),
            e => ErrorObject::new(e.code(), e.to_string()),
        }
    }
    pub fn code(&self) -> i64 {
        match self {
            GatewayError::MethodNotFound => jsonrpc::METHOD_NOT_FOUND,
            GatewayError::UnknownTool | GatewayError::UnknownPrompt | GatewayError::InvalidParams(_) => {
                jsonrpc::INVALID_PARAMS
            }
            GatewayError::UnknownResource => jsonrpc::RESOURCE_NOT_FOUND,
            GatewayError::Unavailable => jsonrpc::INTERNAL_ERROR,
            GatewayError::Upstream(e) => e.code,
        }
    }
    /// A short label for logs and (later) metrics.
    pub fn reason(&self) -> &'static str {
        match self {
            GatewayError::MethodNotFound => "method_not_found",
            GatewayError::UnknownTool | GatewayError::UnknownPrompt | GatewayError::UnknownResource => "unknown_target",
            GatewayError::InvalidParams(_) => "invalid_params",
            GatewayError::Unavailable => "upstream_unavailable",
            GatewayError::Upstream(_) => "upstream_error",
        }
    }
}

impl From<ErrorObject> for GatewayError {
    fn from(e: ErrorObject) -> Self {
        GatewayError::Upstream(e)
    }
}
