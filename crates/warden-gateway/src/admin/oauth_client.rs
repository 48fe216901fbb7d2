//! The console as an OAuth client of one authorization server (`oauth.rs` runs the flow):
//! how it reaches the server, what it knows of it (RFC 8414 metadata), and its client id.
//!
//! - The built-in server is called in process (its own routes through `tower::oneshot`: no
//!   network, no TLS trust to set up). The console is its first-party client
//!   ([`crate::auth::builtin::CONSOLE_CLIENT`]): never registered, so never pruned or counted
//!   against registration limits, shown as verified on the consent page, and the only client
//!   the built-in server grants Warden's operator scopes to.
//! - Another server is reached over HTTP (`https`, or `http` to loopback, for every endpoint its
//!   metadata names; 10 s timeouts, no redirects followed, answers of at most 64 KiB). The
//!   console registers by RFC 7591 dynamic registration with its redirect URIs, again after an
//!   hour (a server may forget unused clients). Metadata that could not be read is not asked
//!   for again for 30 s. Such a server must itself reserve the operator scopes to this client.
//!
//! The redirect URIs are the admin listener's bound address and `localhost` at its port, never
//! taken from a request's `Host` (a local process could otherwise name its own listener and
//! catch the code).

use crate::auth::builtin::CONSOLE_CLIENT;
use axum::body::Body;
use axum::http::{header, Method, Request};
use axum::Router;
use serde::Deserialize;
use serde_json::{json, Value};
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use tower::ServiceExt;

const MAX_ANSWER: usize = 64 << 10;
const TIMEOUT: Duration = Duration::from_secs(10);
/// How long a dynamically registered client id is used before registering again.
const REGISTRATION_LIFE: Duration = Duration::from_secs(3600);
/// How long a failure to read the server's metadata is remembered.
const RETRY_AFTER: Duration = Duration::from_secs(30);

/// How the console reaches the authorization server.
enum Channel {
    /// The built-in server's own routes, called in process, as `host` (its issuer's authority).
    InProcess { routes: Router, host: String, operator_scopes: Vec<String> },
    /// Another server, over HTTP.
    Remote(reqwest::Client),
}

/// RFC 8414 metadata: what the console uses of it.
#[derive(Clone, Deserialize)]
pub(super) struct Metadata {
    pub issuer: String,
    pub authorization_endpoint: String,
    pub token_endpoint: String,
    registration_endpoint: Option<String>,
    #[serde(default)]
    scopes_supported: Vec<String>,
    #[serde(default)]
    pub authorization_response_iss_parameter_supported: bool,
}

/// The console's OAuth client.
pub struct ConsoleOAuth {
    pub(super) issuer: String,
    /// Scopes asked for beside the operator scope: those every credential must carry.
    pub(super) required: Vec<String>,
    /// The callback under each name the admin listener answers to: `(host, redirect URI)`.
    redirects: Vec<(String, String)>,
    channel: Channel,
    metadata: tokio::sync::Mutex<Option<Metadata>>,
    failed: Mutex<Option<Instant>>,
    /// A dynamically registered client id, and when it was registered.
    registered: tokio::sync::Mutex<Option<(String, Instant)>>,
}

impl ConsoleOAuth {
    /// The server the console signs in through: the built-in one when configured, else the first
    /// JWT issuer trusted with Warden's own scopes (`admin_scopes`). `admin` is the admin
    /// listener's bound address.
    pub fn for_auth(auth: &Arc<crate::auth::Authenticator>, resource: &str, admin: SocketAddr) -> Option<ConsoleOAuth> {
        let port = admin.port();
        let redirects: Vec<(String, String)> = [admin.to_string(), format!("localhost:{port}")]
            .into_iter()
            .map(|host| (host.clone(), format!("http://{host}/console/oauth/callback")))
            .collect();
        let channel = match &auth.builtin {
            Some(b) => {
                b.set_console(redirects.iter().map(|(_, uri)| uri.clone()).collect());
                let issuer = crate::auth::builtin::issuer_for(resource);
                let host = reqwest::Url::parse(&issuer).ok()?.authority().to_string();
                let routes = crate::auth::as_routes::router(auth.clone());
                (issuer, Channel::InProcess { routes, host, operator_scopes: b.operator_scopes() })
            }
            None => {
                let client = reqwest::Client::builder()
                    .redirect(reqwest::redirect::Policy::none())
                    .timeout(TIMEOUT)
                    .build()
                    .map_err(|e| tracing::warn!(error = %e, "console: no OAuth client"))
                    .ok()?;
                (auth.admin_issuer()?, Channel::Remote(client))
            }
        };
        Some(ConsoleOAuth {
            issuer: channel.0,
            required: auth.required_scopes().to_vec(),
            redirects,
            channel: channel.1,
            metadata: tokio::sync::Mutex::new(None),
            failed: Mutex::new(None),
            registered: tokio::sync::Mutex::new(None),
        })
    }

    /// The redirect URI for a browser that reached the console as `host`, when that is one of
    /// the admin listener's own names.
    pub(super) fn redirect_for(&self, host: &str) -> Option<&str> {
        self.redirects.iter().find(|(h, _)| h.eq_ignore_ascii_case(host)).map(|(_, uri)| uri.as_str())
    }

    /// One request to the server: its status and JSON answer.
    pub(super) async fn call(
        &self,
        method: Method,
        url: &str,
        body: Option<Vec<u8>>,
        json: bool,
    ) -> Result<(u16, Value), String> {
        let content_type = if json { "application/json" } else { "application/x-www-form-urlencoded" };
        let (status, body) = match &self.channel {
            Channel::InProcess { routes, host, .. } => {
                let u = reqwest::Url::parse(url).map_err(|e| e.to_string())?;
                let path = match u.query() {
                    Some(q) => format!("{}?{q}", u.path()),
                    None => u.path().to_string(),
                };
                let mut req = Request::builder().method(method).uri(path).header(header::HOST, host);
                if body.is_some() {
                    req = req.header(header::CONTENT_TYPE, content_type);
                }
                let req = req
                    .extension(crate::caller::ClientAddr(std::net::IpAddr::from([127, 0, 0, 1])))
                    .body(Body::from(body.unwrap_or_default()))
                    .map_err(|e| e.to_string())?;
                let r = routes.clone().oneshot(req).await.map_err(|e| e.to_string())?;
                let status = r.status().as_u16();
                (status, axum::body::to_bytes(r.into_body(), MAX_ANSWER).await.map_err(|e| e.to_string())?.to_vec())
            }
            Channel::Remote(client) => {
                crate::config::check_remote_url(url).map_err(|e| format!("{url}: {e}"))?;
                let mut req = client.request(method, url).header(header::ACCEPT, "application/json");
                if let Some(b) = body {
                    req = req.header(header::CONTENT_TYPE, content_type).body(b);
                }
                let mut r = req.send().await.map_err(|e| format!("{url}: {e}"))?;
                let status = r.status().as_u16();
                let mut got = Vec::new();
                while let Some(chunk) = r.chunk().await.map_err(|e| format!("{url}: {e}"))? {
                    if got.len() + chunk.len() > MAX_ANSWER {
                        return Err(format!("{url}: answer over {MAX_ANSWER} bytes"));
                    }
                    got.extend_from_slice(&chunk);
                }
                (status, got)
            }
        };
        let v = serde_json::from_slice(&body).map_err(|_| format!("{url}: answered {status} without JSON"))?;
        Ok((status, v))
    }

    /// RFC 8414's metadata URL of an issuer: the well-known path inserted before the issuer's
    /// own path.
    fn metadata_url(&self) -> Result<String, String> {
        let mut u = reqwest::Url::parse(&self.issuer).map_err(|e| format!("issuer: {e}"))?;
        let path = u.path().trim_end_matches('/').to_string();
        u.set_path(&format!("/.well-known/oauth-authorization-server{path}"));
        Ok(u.to_string())
    }

    pub(super) async fn metadata(&self) -> Result<Metadata, String> {
        let mut known = self.metadata.lock().await;
        if let Some(m) = known.as_ref() {
            return Ok(m.clone());
        }
        if self.failed.lock().expect("failed lock").is_some_and(|t| t.elapsed() < RETRY_AFTER) {
            return Err("the authorization server's metadata could not be read a moment ago".into());
        }
        let read = async {
            let url = self.metadata_url()?;
            let (status, v) = self.call(Method::GET, &url, None, false).await?;
            if status != 200 {
                return Err(format!("{url}: {status}"));
            }
            let m: Metadata = serde_json::from_value(v).map_err(|e| format!("{url}: {e}"))?;
            if m.issuer != self.issuer {
                return Err(format!("{url}: names issuer {:?}", m.issuer));
            }
            Ok(m)
        };
        match read.await {
            Ok(m) => Ok(known.insert(m).clone()),
            Err(e) => {
                *self.failed.lock().expect("failed lock") = Some(Instant::now());
                Err(e)
            }
        }
    }

    /// The console's client id at the server.
    pub(super) async fn client_id(&self, m: &Metadata) -> Result<String, String> {
        if let Channel::InProcess { .. } = self.channel {
            return Ok(CONSOLE_CLIENT.into());
        }
        let mut registered = self.registered.lock().await;
        if let Some((id, _)) = registered.as_ref().filter(|(_, at)| at.elapsed() < REGISTRATION_LIFE) {
            return Ok(id.clone());
        }
        let Some(endpoint) = &m.registration_endpoint else {
            return Err("the authorization server offers no dynamic registration".into());
        };
        let body = json!({
            "client_name": "Warden console",
            "redirect_uris": self.redirects.iter().map(|(_, uri)| uri).collect::<Vec<_>>(),
            "token_endpoint_auth_method": "none",
            "grant_types": ["authorization_code"],
            "response_types": ["code"],
        });
        let (status, v) = self.call(Method::POST, endpoint, Some(body.to_string().into_bytes()), true).await?;
        let id = v.get("client_id").and_then(Value::as_str).filter(|_| status == 201 || status == 200);
        let Some(id) = id else {
            return Err(format!("registration refused ({status}): {}", v.get("error").unwrap_or(&v)));
        };
        *registered = Some((id.to_string(), Instant::now()));
        Ok(id.to_string())
    }

    /// The operator scopes the server offers.
    pub(super) async fn offered(&self) -> Result<Vec<&'static str>, String> {
        let offered = match &self.channel {
            Channel::InProcess { operator_scopes, .. } => operator_scopes.clone(),
            Channel::Remote(_) => self.metadata().await?.scopes_supported,
        };
        Ok([super::SCOPE_ADMIN, super::SCOPE_APPROVE].into_iter().filter(|s| offered.iter().any(|x| x == s)).collect())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn metadata_urls_insert_the_well_known_path() {
        let o = |issuer: &str| ConsoleOAuth {
            issuer: issuer.into(),
            required: vec![],
            redirects: vec![],
            channel: Channel::Remote(reqwest::Client::new()),
            metadata: tokio::sync::Mutex::new(None),
            failed: Mutex::new(None),
            registered: tokio::sync::Mutex::new(None),
        };
        assert_eq!(
            o("https://idp.example").metadata_url().unwrap(),
            "https://idp.example/.well-known/oauth-authorization-server"
        );
        assert_eq!(
            o("https://idp.example/tenant/1/").metadata_url().unwrap(),
            "https://idp.example/.well-known/oauth-authorization-server/tenant/1"
        );
    }
}
