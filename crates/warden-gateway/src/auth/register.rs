//! RFC 7591 dynamic client registration for the built-in authorization server, and the checks
//! that registration and Client ID Metadata Documents share.
//!
//! Defends against: unauthenticated exhaustion of the client table. Registrations are limited per
//! client address (an IPv6 client per /64, since one host holds a whole /64) to
//! `registrations_per_hour` and in total to `registrations_total_per_hour` (so that addresses
//! from a large IPv6 block cannot fill the table either), and the table of addresses is itself
//! bounded; a client that obtains
//! no token within `unused_client_ttl_secs` is forgotten, and so is one whose last grant is older
//! than the refresh token lifetime and that holds no live refresh token (see
//! [`super::as_state::Store::prune_clients`]; with a shared store, records expire by themselves, see [`super::as_shared`]). Metadata is bounded: 1 to 10 redirect URIs of at most 2,000 bytes, a name
//! of at most 100 characters, only the code flow.
//! Does not defend against: a flood that uses up the hourly total: new registrations are then
//! refused (429) until the hour ends — registered clients, and clients named by a metadata
//! document, keep working, and clients in use are never evicted for a newcomer. A proxy that is
//! not in `trusted_proxies` makes every client look like the proxy.

use super::as_http::{json_response, oauth_error, random_token, valid_redirect};
use super::as_state::Client;
use super::as_store::Refused;
use super::Authenticator;
use super::{hex, now_secs, sha256};
use crate::caller::ClientAddr;
use axum::body::Body;
use axum::extract::State;
use axum::http::{Response, StatusCode};
use axum::Extension;
use serde_json::{json, Value};
use std::collections::HashMap;
use std::net::IpAddr;
use std::time::{Duration, Instant};

/// Registered clients kept at most.
pub const MAX_CLIENTS: usize = 10_000;
/// Client addresses whose registrations are counted at most.
const MAX_SOURCES: usize = 10_000;
const WINDOW: Duration = Duration::from_secs(3600);

pub use warden_policy::net::source_key;

/// Registrations per client address and in total in the current hour, in bounded memory.
#[derive(Default)]
pub struct Registrations {
    by_source: HashMap<IpAddr, (u32, Instant)>,
    total: Option<(u32, Instant)>,
}

impl Registrations {
    /// Count one registration from `ip`, or say which limit refuses it: `per_hour` from the
    /// address, `total_per_hour` from everyone (which bounds the client table: with clients
    /// unused for a day forgotten, a flood from any number of addresses holds at most a day of
    /// the total), or a table of addresses full of live windows (fail closed).
    pub fn admit(&mut self, ip: IpAddr, per_hour: u32, total_per_hour: u32) -> Result<(), &'static str> {
        let total = self.total.get_or_insert((0, Instant::now()));
        if total.1.elapsed() >= WINDOW {
            *total = (0, Instant::now());
        }
        if total.0 >= total_per_hour {
            return Err("too many registrations; try again later");
        }
        let key = source_key(ip);
        if self.by_source.len() >= MAX_SOURCES && !self.by_source.contains_key(&key) {
            self.by_source.retain(|_, (_, since)| since.elapsed() < WINDOW);
            if self.by_source.len() >= MAX_SOURCES {
                return Err("too many registrations; try again later");
            }
        }
        let e = self.by_source.entry(key).or_insert((0, Instant::now()));
        if e.1.elapsed() >= WINDOW {
            *e = (0, Instant::now());
        }
        if e.0 >= per_hour {
            return Err("too many registrations from this address");
        }
        e.0 += 1;
        if let Some(t) = &mut self.total {
            t.0 += 1;
        }
        Ok(())
    }
}

/// `POST /register`.
pub async fn register(
    State(a): State<std::sync::Arc<Authenticator>>,
    addr: Option<Extension<ClientAddr>>,
    body: axum::body::Bytes,
) -> Response<Body> {
    let s = a.builtin_server();
    if !s.cfg.dynamic_registration {
        return oauth_error(StatusCode::FORBIDDEN, "access_denied", "dynamic registration is disabled");
    }
    let Ok(m) = serde_json::from_slice::<Value>(&body) else {
        return oauth_error(StatusCode::BAD_REQUEST, "invalid_client_metadata", "expected a JSON object");
    };
    let ClientMeta { name, redirect_uris: uris, auth_method: method } = match check_client_metadata(&m) {
        Ok(c) => c,
        Err((error, desc)) => return oauth_error(StatusCode::BAD_REQUEST, error, desc),
    };
    let ip = addr.map_or(IpAddr::from([0, 0, 0, 0]), |Extension(ClientAddr(ip))| ip);
    let client_id = random_token();
    let secret = (method != "none").then(random_token);
    let now = now_secs();
    let client = Client {
        name: name.clone(),
        redirect_uris: uris.clone(),
        secret: secret.as_ref().map(|x| hex(&sha256(x.as_bytes()))),
        registered: now,
        last_used: None,
    };
    match s.state.register(&client_id, client, ip).await {
        Ok(()) => {}
        Err(Refused::Limited(why)) => {
            tracing::warn!(%ip, "built-in authorization server: registration refused ({why})");
            let mut r = oauth_error(StatusCode::TOO_MANY_REQUESTS, "temporarily_unavailable", why);
            r.headers_mut().insert(http::header::RETRY_AFTER, http::HeaderValue::from_static("3600"));
            return r;
        }
        Err(Refused::Unavailable(why)) => {
            return oauth_error(StatusCode::SERVICE_UNAVAILABLE, "temporarily_unavailable", why)
        }
    }
    tracing::info!(client = ?name, "client registered");
    let mut out = json!({
        "client_id": client_id,
        "client_id_issued_at": now,
        "client_name": name,
        "redirect_uris": uris,
        "token_endpoint_auth_method": method,
        "grant_types": ["authorization_code", "refresh_token"],
        "response_types": ["code"],
    });
    if let Some(sec) = secret {
        out["client_secret"] = sec.into();
        out["client_secret_expires_at"] = 0.into();
    }
    json_response(StatusCode::CREATED, out)
}

/// The client metadata that registration and metadata documents share.
pub struct ClientMeta {
    pub name: String,
    pub redirect_uris: Vec<String>,
    pub auth_method: String,
}

/// Check client metadata (RFC 7591 §2): 1–10 acceptable redirect URIs, an authentication method
/// this server supports, and only the code flow with refresh tokens. Errors are (code, reason).
pub fn check_client_metadata(m: &Value) -> Result<ClientMeta, (&'static str, &'static str)> {
    let uris: Vec<String> = match m.get("redirect_uris").and_then(Value::as_array) {
        Some(a) if !a.is_empty() && a.len() <= 10 => a.iter().filter_map(|v| v.as_str().map(String::from)).collect(),
        _ => return Err(("invalid_redirect_uri", "expected 1 to 10 redirect_uris")),
    };
    if uris.len() != m["redirect_uris"].as_array().map_or(0, |a| a.len()) || !uris.iter().all(|u| valid_redirect(u)) {
        return Err(("invalid_redirect_uri", "a redirect URI is not acceptable"));
    }
    let method = m.get("token_endpoint_auth_method").and_then(Value::as_str).unwrap_or("client_secret_basic");
    if !matches!(method, "none" | "client_secret_basic" | "client_secret_post") {
        return Err(("invalid_client_metadata", "unsupported token_endpoint_auth_method"));
    }
    for (field, allowed) in
        [("grant_types", &["authorization_code", "refresh_token"][..]), ("response_types", &["code"][..])]
    {
        if let Some(v) = m.get(field).and_then(Value::as_array) {
            if v.iter().any(|g| !g.as_str().is_some_and(|g| allowed.contains(&g))) {
                return Err(("invalid_client_metadata", "unsupported grant or response type"));
            }
        }
    }
    let name = m.get("client_name").and_then(Value::as_str).unwrap_or("unnamed client").chars().take(100).collect();
    Ok(ClientMeta { name, redirect_uris: uris, auth_method: method.to_string() })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn registrations_are_counted_per_address_and_per_ipv6_64() {
        let mut r = Registrations::default();
        let a: IpAddr = "192.0.2.7".parse().unwrap();
        for _ in 0..3 {
            assert!(r.admit(a, 3, 1000).is_ok());
        }
        assert!(r.admit(a, 3, 1000).is_err(), "the fourth in the hour is refused");
        assert!(r.admit("192.0.2.8".parse().unwrap(), 3, 1000).is_ok(), "another address is not");
        // Rotating through one /64 is one source.
        for i in 0..3 {
            assert!(r.admit(format!("2001:db8::{i}").parse().unwrap(), 3, 1000).is_ok());
        }
        assert!(r.admit("2001:db8::ffff:1".parse().unwrap(), 3, 1000).is_err());
        assert!(r.admit("2001:db8:0:1::1".parse().unwrap(), 3, 1000).is_ok(), "the next /64 is another source");
        // IPv4-mapped IPv6 is the IPv4 address.
        assert!(r.admit("::ffff:192.0.2.7".parse().unwrap(), 3, 1000).is_err());
        // The total: whatever the addresses.
        let mut r = Registrations::default();
        for i in 0..5u32 {
            assert!(r.admit(IpAddr::from((i + 1).to_be_bytes()), 3, 5).is_ok());
        }
        assert!(r.admit("198.51.100.9".parse().unwrap(), 3, 5).is_err(), "the sixth from anyone");
    }

    #[test]
    fn the_table_of_addresses_is_bounded_and_fails_closed() {
        let mut r = Registrations::default();
        for i in 0..MAX_SOURCES as u32 {
            assert!(r.admit(IpAddr::from(i.to_be_bytes()), 5, u32::MAX).is_ok());
        }
        assert!(
            r.admit("198.51.100.1".parse().unwrap(), 5, u32::MAX).is_err(),
            "a new address waits while every window is live"
        );
        assert!(r.admit(IpAddr::from(7u32.to_be_bytes()), 5, u32::MAX).is_ok(), "a known address is still counted");
        assert_eq!(r.by_source.len(), MAX_SOURCES);
    }
}
