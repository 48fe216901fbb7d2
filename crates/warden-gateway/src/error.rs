//! The gateway's errors. Each knows its JSON-RPC code; messages are safe to show a client
//! (no paths, no upstream addresses, no secrets) — details go to the log.

use warden_protocol::jsonrpc::{self, ErrorObject};

/// JSON-RPC code of a call refused by a limit; `data.retryAfterSeconds` says when to retry, and the
/// HTTP transport answers 429 with `Retry-After` when it can.
pub const RATE_LIMITED: i64 = -32029;
/// JSON-RPC code of a call cancelled by its timeout.
pub const TIMEOUT: i64 = -32001;
/// JSON-RPC code of a call held for approval and not approved: denied, or still pending
/// (`data.approvalId`, `data.state`).
pub const APPROVAL: i64 = -32030;
/// JSON-RPC code of a call refused because the shared store (limits, approvals) is out.
pub const STORE_UNAVAILABLE: i64 = -32031;
/// JSON-RPC code of a request refused because the audit trail cannot record it (queue full, or
/// the sink not storing in time); the HTTP transport answers 503.
pub const AUDIT_UNAVAILABLE: i64 = -32032;
/// JSON-RPC code of a request for a tool, prompt or resource an operator switched off (kill
/// switch); `data.scope` is `tool` or `server`. A `tools/call` gets a tool error instead.
pub const SWITCHED_OFF: i64 = -32033;
/// JSON-RPC code of a call to a sink refused because its session read untrusted content
/// (`taint.rs`, `when_tainted = "deny"`); `data.source` says what tainted it.
pub const TAINTED: i64 = -32034;

/// JSON-RPC code of a request that needs the user to open a page first (the MCP
/// `URLElicitationRequiredError`): `data.elicitations` holds the page (`mode: "url"`).
pub const URL_ELICITATION_REQUIRED: i64 = -32042;

/// Whole seconds to wait, rounded up, at least 1.
pub fn retry_after_secs(d: std::time::Duration) -> u64 {
    (d.as_nanos().div_ceil(1_000_000_000) as u64).max(1)
}

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
    /// Over a limit; `limit` names which (principal, tenant, tool, daily_quota, …).
    #[error("Rate limit exceeded ({limit}); retry after {} s", retry_after_secs(*.retry_after))]
    RateLimited { retry_after: std::time::Duration, limit: &'static str },
    #[error("Request timed out")]
    Timeout,
    #[error("Call cancelled by the operator")]
    Cancelled,
    /// A kill switch is off for this tool (`server: false`) or its whole server. The operator's
    /// reason is not shown (it may be internal).
    #[error("{}", if *server {
        "Server switched off by an operator for now: this server's tools, prompts and resources cannot be used until it is switched back on; do not retry now"
    } else {
        "Tool switched off by an operator for now: this tool cannot be called until it is switched back on; do not retry now"
    })]
    SwitchedOff { server: bool },
    /// A call to a sink from a session that read untrusted content (`taint.rs`).
    #[error("Call refused: this session read untrusted content ({from}), and this tool can send data out or change things{why}")]
    Tainted { from: String, why: &'static str },
    #[error("Call not approved: {reason}")]
    ApprovalDenied { id: Option<String>, reason: &'static str },
    /// Held for approval longer than `[approval] wait_secs`; the same call goes through once
    /// the approval is given.
    #[error("Call waiting for approval {id}; retry the same call once it is approved")]
    ApprovalPending { id: String },
    /// The store of limits or approvals is out and the outage policy is to fail closed.
    #[error("Limits cannot be checked right now (store unavailable); call refused, retry later")]
    StoreUnavailable,
    /// The audit trail cannot record the request; it is refused rather than left unrecorded.
    #[error("Audit trail unavailable; request refused, retry later")]
    AuditUnavailable,
    /// The output read as a prompt injection and the policy for it is `block`.
    #[error("Output withheld by Warden: it reads as a prompt injection")]
    Withheld,
    /// The request needs a client capability it did not declare (MCP 2026-07-28 -32021; a
    /// stateless client gets it with HTTP 400, `server::stateless::shape_error`); `required` is
    /// what `requiredCapabilities` names, shaped like client capabilities.
    #[error("Missing required client capability: {what}")]
    MissingCapability { what: &'static str, required: serde_json::Value },
    /// The upstream acts on each user's own account (`mode = "user"`) and this user has not
    /// linked theirs: `url` is Warden's page that links it.
    #[error("Your account at {upstream} is not linked to Warden yet: open {url} to link it, then retry")]
    LinkRequired { upstream: String, url: String },
    /// The upstream acts on each user's own account, and this caller is not a user who signs in
    /// with a token (an API key, a certificate): it has no account to link.
    #[error("{upstream} acts on each user's own account: sign in to Warden as a user (with an OAuth token) to link yours; API keys and certificates cannot")]
    CannotLink { upstream: String },
    /// The upstream's own JSON-RPC error, passed through (scrubbed and redacted).
    #[error("{0}")]
    Upstream(ErrorObject),
}

impl GatewayError {
    pub fn to_error_object(&self) -> ErrorObject {
        if let GatewayError::Upstream(e) = self {
            return e.clone();
        }
        let mut e = ErrorObject::new(self.code(), self.to_string());
        e.data = self.data();
        e.http = match self {
            GatewayError::RateLimited { retry_after, .. } => {
                Some(jsonrpc::HttpStatus { status: 429, retry_after: Some(retry_after_secs(*retry_after)) })
            }
            GatewayError::AuditUnavailable => Some(jsonrpc::HttpStatus { status: 503, retry_after: Some(1) }),
            _ => None,
        };
        e
    }
    /// What a client can act on: when to retry, or which approval to wait for.
    fn data(&self) -> Option<serde_json::Value> {
        use serde_json::json;
        match self {
            GatewayError::RateLimited { retry_after, limit } => {
                Some(json!({"retryAfterSeconds": retry_after_secs(*retry_after), "limit": limit}))
            }
            GatewayError::ApprovalPending { id } => Some(json!({"approvalId": id, "state": "pending"})),
            GatewayError::ApprovalDenied { id: Some(id), .. } => Some(json!({"approvalId": id, "state": "denied"})),
            GatewayError::SwitchedOff { server } => {
                Some(json!({"reason": "switched_off", "scope": if *server { "server" } else { "tool" }}))
            }
            GatewayError::MissingCapability { required, .. } => Some(json!({"requiredCapabilities": required})),
            GatewayError::Tainted { from, .. } => Some(json!({"reason": "tainted", "source": from})),
            GatewayError::LinkRequired { upstream, url } => Some(json!({"elicitations": [{
                "mode": "url",
                "elicitationId": url.rsplit('/').next().unwrap_or_default(),
                "url": url,
                "message": format!("Link your account at {upstream} to Warden to use it."),
            }]})),
            _ => None,
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
            GatewayError::RateLimited { .. } => RATE_LIMITED,
            GatewayError::Timeout => TIMEOUT,
            GatewayError::Cancelled | GatewayError::Withheld => jsonrpc::INTERNAL_ERROR,
            GatewayError::ApprovalDenied { .. } | GatewayError::ApprovalPending { .. } => APPROVAL,
            GatewayError::StoreUnavailable => STORE_UNAVAILABLE,
            GatewayError::AuditUnavailable => AUDIT_UNAVAILABLE,
            GatewayError::SwitchedOff { .. } => SWITCHED_OFF,
            GatewayError::Tainted { .. } => TAINTED,
            GatewayError::MissingCapability { .. } => warden_protocol::modern::MISSING_CLIENT_CAPABILITY,
            GatewayError::LinkRequired { .. } => URL_ELICITATION_REQUIRED,
            GatewayError::CannotLink { .. } => jsonrpc::INVALID_REQUEST,
            GatewayError::Upstream(e) => e.code,
        }
    }
    /// A short label for logs, audit records and metrics.
    pub fn reason(&self) -> &'static str {
        match self {
            GatewayError::MethodNotFound => "method_not_found",
            GatewayError::UnknownTool | GatewayError::UnknownPrompt | GatewayError::UnknownResource => "unknown_target",
            GatewayError::InvalidParams(_) => "invalid_params",
            GatewayError::Unavailable => "upstream_unavailable",
            GatewayError::RateLimited { .. } => "rate_limited",
            GatewayError::Timeout => "timeout",
            GatewayError::Cancelled => "killed",
            GatewayError::SwitchedOff { .. } => "switched_off",
            GatewayError::Tainted { .. } => "tainted",
            GatewayError::ApprovalDenied { .. } => "approval_denied",
            GatewayError::ApprovalPending { .. } => "approval_pending",
            GatewayError::StoreUnavailable => "store_unavailable",
            GatewayError::AuditUnavailable => "audit_unavailable",
            GatewayError::Withheld => "blocked_by_guard",
            GatewayError::MissingCapability { .. } => "client_unsupported",
            GatewayError::LinkRequired { .. } => "link_required",
            GatewayError::CannotLink { .. } => "cannot_link",
            GatewayError::Upstream(_) => "upstream_error",
        }
    }
}

impl From<ErrorObject> for GatewayError {
    fn from(e: ErrorObject) -> Self {
        GatewayError::Upstream(e)
    }
}
