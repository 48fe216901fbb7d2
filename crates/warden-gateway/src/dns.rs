//! The resolver of Warden's own outbound HTTP clients (HTTP upstreams, JWKS, introspection,
//! upstream OAuth token endpoints, audit forwarding, trace export).
//!
//! Defends against: a host name that resolves, now or after a DNS rebinding, to a cloud metadata
//! or link-local address (`169.254.169.254`, `fe80::/10`, `fd00:ec2::254`, `100.100.100.200`) or
//! to the unspecified address: such addresses are dropped from every answer, and a name with
//! nothing else fails to connect, so Warden's upstream credentials and requests never reach them.
//! The check runs at connect time, on the addresses actually used. Redirects are never followed
//! (the client's redirect policy), so a redirect cannot lead there either.
//! Does not defend against: a URL configured with such an IP literal (the operator's choice,
//! which needs no resolving), private and loopback addresses (upstreams often live there; use
//! the `url` guard for URLs that come from callers), what an upstream itself connects to, and
//! an HTTP(S) proxy set in Warden's environment (`HTTPS_PROXY`): the proxy then resolves names,
//! not this resolver.

use reqwest::dns::{Addrs, Name, Resolve, Resolving};
use std::net::SocketAddr;
use warden_policy::net::is_metadata_or_link_local;

/// The system resolver, without metadata and link-local addresses.
pub struct NoMetadata;

/// The builder of every outbound HTTP client of Warden's: no redirects followed, and names
/// resolved through [`NoMetadata`].
pub fn client_builder() -> reqwest::ClientBuilder {
    reqwest::Client::builder().redirect(reqwest::redirect::Policy::none()).dns_resolver(std::sync::Arc::new(NoMetadata))
}

/// The addresses a URL's host stands for, within `within`: its IP literal, or what its name
/// resolves to now (to be pinned by the caller: `ClientBuilder::resolve`, so that the request
/// goes where the check looked). Errors name the host only.
pub async fn addresses_of(u: &reqwest::Url, within: std::time::Duration) -> Result<Vec<SocketAddr>, String> {
    let host = u.host_str().unwrap_or_default().to_string();
    let port = u.port_or_known_default().unwrap_or(443);
    Ok(match u.host() {
        Some(url::Host::Ipv4(ip)) => vec![SocketAddr::new(ip.into(), port)],
        Some(url::Host::Ipv6(ip)) => vec![SocketAddr::new(ip.into(), port)],
        _ => tokio::time::timeout(within, tokio::net::lookup_host((host.as_str(), port)))
            .await
            .map_err(|_| format!("resolving {host} timed out"))?
            .map_err(|_| format!("{host} does not resolve"))?
            .collect(),
    })
}

/// The addresses of `addrs` that may be connected to.
pub fn usable(addrs: impl Iterator<Item = SocketAddr>) -> Vec<SocketAddr> {
    addrs.filter(|a| !is_metadata_or_link_local(a.ip())).collect()
}

impl Resolve for NoMetadata {
    fn resolve(&self, name: Name) -> Resolving {
        let host = name.as_str().to_string();
        Box::pin(async move {
            let found: Vec<SocketAddr> = tokio::net::lookup_host((host.as_str(), 0)).await?.collect();
            let ok = usable(found.iter().copied());
            if ok.is_empty() && !found.is_empty() {
                tracing::warn!(host = ?host, "host resolves only to metadata or link-local addresses; not connecting");
                return Err(format!("{host} resolves only to metadata or link-local addresses").into());
            }
            Ok(Box::new(ok.into_iter()) as Addrs)
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn metadata_answers_are_dropped() {
        let a = |s: &str| s.parse::<SocketAddr>().unwrap();
        let got = usable([a("169.254.169.254:0"), a("10.0.0.5:0"), a("[fe80::1]:0"), a("[::1]:0")].into_iter());
        assert_eq!(got, [a("10.0.0.5:0"), a("[::1]:0")]);
    }

    #[tokio::test]
    async fn loopback_names_still_resolve() {
        let addrs: Vec<SocketAddr> = NoMetadata.resolve("localhost".parse().unwrap()).await.unwrap().collect();
        assert!(addrs.iter().all(|a| a.ip().is_loopback()) && !addrs.is_empty(), "{addrs:?}");
    }
}
