//! `Host` and `Origin` values: the host part of an authority, and whether it names this
//! machine. A leaf: it imports nothing of the crate.

/// The host of `host[:port]` (an IPv6 literal keeps its brackets).
pub fn host_part(authority: &str) -> &str {
    if authority.starts_with('[') {
        return authority.split(']').next().map(|h| &authority[..h.len() + 1]).unwrap_or(authority);
    }
    authority.rsplit_once(':').map(|(h, _)| h).unwrap_or(authority)
}

/// `localhost`, `[::1]` or an IPv4 loopback address.
pub fn is_loopback_name(host: &str) -> bool {
    let h = host.to_ascii_lowercase();
    h == "localhost" || h == "[::1]" || h.parse::<std::net::Ipv4Addr>().map(|ip| ip.is_loopback()).unwrap_or(false)
}

/// A request's `Host` (or URI authority) and `Origin`, if sent, both name this machine.
pub fn loopback_request(headers: &http::HeaderMap, authority: Option<&str>) -> bool {
    let host = headers.get(http::header::HOST).and_then(|v| v.to_str().ok()).or(authority);
    let origin_ok = match headers.get(http::header::ORIGIN) {
        None => true,
        Some(o) => o
            .to_str()
            .ok()
            .and_then(|o| o.split_once("://"))
            .is_some_and(|(scheme, rest)| matches!(scheme, "http" | "https") && is_loopback_name(host_part(rest))),
    };
    host.is_some_and(|h| is_loopback_name(host_part(h))) && origin_ok
}
