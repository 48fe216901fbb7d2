//! Client ID Metadata Documents (MCP 2025-11-25; draft-ietf-oauth-client-id-metadata-document):
//! a client names itself with an `https` URL, and the built-in authorization server fetches the
//! JSON document at that URL instead of asking the client to register first.
//!
//! Defends against: server-side request forgery through the URL (https only, the host's addresses
//! must all be public — loopback, private, link-local and metadata addresses refused — and the
//! connection is pinned to the address that was checked; no redirects; 5 s; at most 5 KiB read),
//! impersonation (the document's `client_id` must equal the URL exactly, and the consent page shows
//! the URL's host so the user sees who is asking), confidential-client confusion (documents may not
//! carry secrets or ask for secret-based authentication: these clients are public, bound by PKCE),
//! and fetch floods (documents are cached for their `max-age`, clamped to 1 min – 1 h, and failures
//! for 1 min).
//! Does not defend against: a legitimate public site hosting a document for a malicious client —
//! the user's consent is the control, exactly as with dynamic registration.

use super::{now_secs, sha256, TtlCache};
use futures::StreamExt;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

const MAX_DOCUMENT: usize = 5 * 1024;
const FETCH_TIMEOUT: Duration = Duration::from_secs(5);

/// A client as its metadata document describes it.
#[derive(Debug, Clone)]
pub struct ClientMetadata {
    pub name: String,
    pub redirect_uris: Vec<String>,
    /// The URL's host, shown on the consent page.
    pub host: String,
}

pub struct Documents {
    allow_loopback: bool,
    cache: TtlCache<Result<Arc<ClientMetadata>, String>>,
}

/// The checked form of a URL client ID: `https`, a host, a path other than `/`, no user info,
/// fragment or dot segments, and already in normal form (so one client has one ID).
pub fn parse_client_id(id: &str, allow_loopback: bool) -> Result<reqwest::Url, String> {
    let u = reqwest::Url::parse(id).map_err(|_| "client_id is not a URL".to_string())?;
    let loopback_http = allow_loopback && u.scheme() == "http" && crate::config::check_remote_url(id).is_ok();
    if u.scheme() != "https" && !loopback_http {
        return Err("a URL client_id must use https".into());
    }
    if u.host_str().is_none() || !u.username().is_empty() || u.password().is_some() {
        return Err("a URL client_id needs a host and no user information".into());
    }
    if u.fragment().is_some() || u.path() == "/" || u.as_str() != id || id.len() > 2000 {
        return Err("a URL client_id needs a path, no fragment, and must be in normal form".into());
    }
    Ok(u)
}

/// True when a client ID is meant as a metadata document URL rather than a registered ID.
pub fn is_url(id: &str) -> bool {
    id.starts_with("https://") || id.starts_with("http://")
}

impl Documents {
    pub fn new(allow_loopback: bool) -> Documents {
        Documents { allow_loopback, cache: TtlCache::default() }
    }

    /// The client that `id` names, fetched or cached.
    pub async fn get(&self, id: &str) -> Result<Arc<ClientMetadata>, String> {
        let key = sha256(id.as_bytes());
        if let Some(r) = self.cache.get(&key) {
            return r;
        }
        let (result, ttl) = match self.fetch(id).await {
            Ok((m, ttl)) => (Ok(Arc::new(m)), ttl),
            Err(e) => {
                tracing::info!(client_id = %id, error = %e, "client metadata document refused");
                (Err(e), 60)
            }
        };
        self.cache.put(key, now_secs() + ttl, result.clone());
        result
    }

    async fn fetch(&self, id: &str) -> Result<(ClientMetadata, u64), String> {
        let url = parse_client_id(id, self.allow_loopback)?;
        let host = url.host_str().unwrap_or_default().to_string();
        let addrs =
            crate::dns::addresses_of(&url, FETCH_TIMEOUT).await.map_err(|e| format!("the client_id host: {e}"))?;
        let allowed =
            |a: &SocketAddr| warden_policy::net::is_public_ip(a.ip()) || (self.allow_loopback && a.ip().is_loopback());
        if addrs.is_empty() || !addrs.iter().all(allowed) {
            return Err("the client_id host resolves to a non-public address".into());
        }
        let http = reqwest::Client::builder()
            .redirect(reqwest::redirect::Policy::none())
            .no_proxy()
            .timeout(FETCH_TIMEOUT)
            .resolve(&host, addrs[0])
            .build()
            .map_err(|e| e.to_string())?;
        let resp = http
            .get(url)
            .header("accept", "application/json")
            .send()
            .await
            .map_err(|_| "the client metadata document could not be fetched".to_string())?;
        if resp.status() != reqwest::StatusCode::OK {
            return Err(format!("the client metadata document answered {}", resp.status().as_u16()));
        }
        let ttl = max_age(resp.headers()).unwrap_or(300).clamp(60, 3600);
        let mut body = Vec::new();
        let mut stream = resp.bytes_stream();
        while let Some(chunk) = stream.next().await {
            let chunk = chunk.map_err(|_| "reading the client metadata document failed".to_string())?;
            if body.len() + chunk.len() > MAX_DOCUMENT {
                return Err("the client metadata document is larger than 5 KiB".into());
            }
            body.extend_from_slice(&chunk);
        }
        let doc: serde_json::Value =
            serde_json::from_slice(&body).map_err(|_| "the client metadata document is not JSON".to_string())?;
        Ok((check_document(&doc, id, &host)?, ttl))
    }
}

fn max_age(h: &reqwest::header::HeaderMap) -> Option<u64> {
    let cc = h.get(reqwest::header::CACHE_CONTROL)?.to_str().ok()?;
    if cc.split(',').any(|d| matches!(d.trim(), "no-store" | "no-cache")) {
        return Some(0);
    }
    cc.split(',').find_map(|d| d.trim().strip_prefix("max-age=")?.parse().ok())
}

/// The document's rules beyond those every client's metadata follows.
pub fn check_document(doc: &serde_json::Value, id: &str, host: &str) -> Result<ClientMetadata, String> {
    if doc.get("client_id").and_then(|v| v.as_str()) != Some(id) {
        return Err("the document's client_id is not its own URL".into());
    }
    if doc.get("client_secret").is_some() || doc.get("client_secret_expires_at").is_some() {
        return Err("a client metadata document may not carry a secret".into());
    }
    let meta = super::register::check_client_metadata(doc).map_err(|(_, d)| d.to_string())?;
    if meta.auth_method != "none" {
        return Err("clients identified by URL are public: token_endpoint_auth_method must be none".into());
    }
    let name = if doc.get("client_name").is_some() { meta.name } else { host.to_string() };
    Ok(ClientMetadata { name, redirect_uris: meta.redirect_uris, host: host.to_string() })
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn url_client_ids_are_strict() {
        for bad in [
            "http://client.example/meta.json",
            "https://client.example",
            "https://client.example/",
            "https://user@client.example/meta.json",
            "https://client.example/a/../meta.json",
            "https://client.example/meta.json#x",
            "https://CLIENT.example/meta.json",
            "ftp://client.example/meta.json",
        ] {
            assert!(parse_client_id(bad, false).is_err(), "{bad}");
        }
        assert!(parse_client_id("https://client.example/meta.json", false).is_ok());
        assert!(parse_client_id("http://127.0.0.1:8/meta.json", false).is_err());
        assert!(parse_client_id("http://127.0.0.1:8/meta.json", true).is_ok());
        assert!(parse_client_id("http://client.example/meta.json", true).is_err());
    }

    #[tokio::test]
    async fn internal_hosts_are_never_fetched() {
        let d = Documents::new(false);
        for id in ["https://127.0.0.1/meta.json", "https://[::1]/meta.json", "https://169.254.169.254/latest/meta-data"]
        {
            let e = d.get(id).await.unwrap_err();
            assert!(e.contains("non-public"), "{id}: {e}");
        }
    }

    #[test]
    fn documents_must_name_themselves_and_stay_public() {
        let id = "https://client.example/meta.json";
        let good = json!({"client_id": id, "redirect_uris": ["https://client.example/cb"], "token_endpoint_auth_method": "none"});
        let m = check_document(&good, id, "client.example").unwrap();
        assert_eq!((m.name.as_str(), m.redirect_uris.len()), ("client.example", 1));
        let mut other = good.clone();
        other["client_id"] = "https://evil.example/meta.json".into();
        assert!(check_document(&other, id, "client.example").is_err());
        let mut secret = good.clone();
        secret["client_secret"] = "s".into();
        assert!(check_document(&secret, id, "client.example").is_err());
        let mut basic = good.clone();
        basic["token_endpoint_auth_method"] = "client_secret_basic".into();
        assert!(check_document(&basic, id, "client.example").is_err());
        let mut js = good;
        js["redirect_uris"] = json!(["javascript:alert(1)"]);
        assert!(check_document(&js, id, "client.example").is_err());
    }
}
