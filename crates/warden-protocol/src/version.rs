//! MCP protocol revisions Warden speaks.

/// Revisions accepted from clients and offered to upstreams, newest first.
pub const SUPPORTED: &[&str] = &["2025-11-25", "2025-06-18", "2025-03-26", "2024-11-05"];

/// The revision Warden asks for when it initializes an upstream.
pub const LATEST: &str = SUPPORTED[0];

/// Stateless revisions (no `initialize`; each request carries its version, capabilities and
/// client in `_meta`), newest first. Served beside the session revisions on the same endpoint.
pub const STATELESS: &[&str] = &["2026-07-28"];

/// Every revision Warden speaks, newest first (what `server/discover` and -32022 list).
pub const ALL: &[&str] = &["2026-07-28", "2025-11-25", "2025-06-18", "2025-03-26", "2024-11-05"];

pub fn is_stateless(v: &str) -> bool {
    STATELESS.contains(&v)
}

/// The revision a Streamable HTTP server must assume when `MCP-Protocol-Version` is absent.
pub const DEFAULT_HTTP: &str = "2025-03-26";

pub fn is_supported(v: &str) -> bool {
    SUPPORTED.contains(&v)
}

/// The revision to answer an `initialize` with: the client's if supported, else our latest.
pub fn negotiate(requested: Option<&str>) -> &'static str {
    requested.and_then(|r| SUPPORTED.iter().copied().find(|s| *s == r)).unwrap_or(LATEST)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn negotiation_echoes_supported_and_falls_back_to_latest() {
        assert_eq!(negotiate(Some("2025-06-18")), "2025-06-18");
        assert_eq!(negotiate(Some("1999-01-01")), LATEST);
        assert_eq!(negotiate(None), LATEST);
        assert!(!is_supported("2025-13-01"));
    }
}
