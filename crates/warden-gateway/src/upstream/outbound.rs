//! How Warden's OAuth client (`link.rs`) reaches URLs that others named: the protected resource
//! metadata an upstream's challenge points at, the authorization server it lists, and the
//! endpoints that server's metadata names (registration, token). No redirects are followed, each
//! request has 10 s, and the resolver drops metadata and link-local addresses (`dns.rs`).
//!
//! Guarded ([`Outbound::guarded`], how `user/` and the link pages use it): a host the operator
//! named (the upstream's own, `oauth.issuer`'s, a configured issuer's) is reached as configured;
//! any other must resolve to public addresses only, and the request goes to the address checked
//! (no second lookup that could answer differently).
//!
//! Defends against: a hostile or compromised upstream (or its authorization server) making
//! Warden send requests to loopback, private or internal addresses (SSRF): Warden's admin
//! listener, a cloud metadata service, services on the internal network.
//! Does not defend against: what a public host the upstream names does with what it is sent
//! (Warden's registration, the user's code at the token endpoint that discovery found).

use std::time::Duration;

const TIMEOUT: Duration = Duration::from_secs(10);

#[derive(Clone)]
pub struct Outbound {
    client: reqwest::Client,
    /// Hosts reached as configured; `None`: every host is (the conformance adapter's client,
    /// which talks to a test server on loopback).
    trusted: Option<Vec<String>>,
}

fn builder() -> reqwest::ClientBuilder {
    crate::dns::client_builder().timeout(TIMEOUT)
}

impl Outbound {
    /// Every host reached (for a client whose every URL is trusted).
    pub fn open() -> Result<Outbound, String> {
        let client = builder().build().map_err(|e| format!("HTTP client: {e}"))?;
        Ok(Outbound { client, trusted: None })
    }

    /// Hosts of `trusted` URLs reached as configured; any other only at public addresses.
    pub fn guarded<'a>(trusted: impl IntoIterator<Item = &'a str>) -> Result<Outbound, String> {
        let hosts = trusted
            .into_iter()
            .filter_map(|u| reqwest::Url::parse(u).ok()?.host_str().map(str::to_ascii_lowercase))
            .collect();
        let client = builder().build().map_err(|e| format!("HTTP client: {e}"))?;
        Ok(Outbound { client, trusted: Some(hosts) })
    }

    /// A request to `url`, refused when it is not `https` (or `http` to loopback), or when its
    /// host is neither trusted nor public.
    pub async fn request(&self, method: reqwest::Method, url: &str) -> Result<reqwest::RequestBuilder, String> {
        crate::config::check_remote_url(url).map_err(|m| format!("{url}: {m}"))?;
        let u = reqwest::Url::parse(url).map_err(|e| format!("{url}: {e}"))?;
        let host = u.host_str().unwrap_or_default().to_ascii_lowercase();
        let Some(trusted) = &self.trusted else { return Ok(self.client.request(method, u)) };
        if trusted.contains(&host) {
            return Ok(self.client.request(method, u));
        }
        let addrs = crate::dns::addresses_of(&u, TIMEOUT).await?;
        if addrs.is_empty() || !addrs.iter().all(|a| warden_policy::net::is_public_ip(a.ip())) {
            return Err(format!("{host}: not a public address, and not a host the configuration names"));
        }
        let pinned = builder().resolve(&host, addrs[0]).build().map_err(|e| format!("HTTP client: {e}"))?;
        Ok(pinned.request(method, u))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn a_guarded_client_reaches_only_named_hosts_and_public_addresses() {
        let o = Outbound::guarded(["http://127.0.0.1:9/mcp", "https://as.example.com"]).unwrap();
        for ok in ["http://127.0.0.1:1/x", "https://as.example.com/token", "https://8.8.8.8/x"] {
            assert!(o.request(reqwest::Method::GET, ok).await.is_ok(), "{ok}");
        }
        for refused in [
            "https://10.0.0.1/x",
            "https://192.168.1.1/register",
            "https://[::1]/x",
            "https://169.254.169.254/latest",
            "http://localhost:8080/admin",
            "https://[fd00::1]/x",
        ] {
            let e = o.request(reqwest::Method::GET, refused).await.unwrap_err();
            assert!(e.contains("not a public address") || e.contains("https"), "{refused}: {e}");
        }
        // Not https: refused whatever the host.
        assert!(o.request(reqwest::Method::GET, "http://as.example.com/x").await.is_err());
        // The open client reaches loopback (the conformance adapter).
        assert!(Outbound::open().unwrap().request(reqwest::Method::GET, "http://localhost:1/x").await.is_ok());
    }
}
