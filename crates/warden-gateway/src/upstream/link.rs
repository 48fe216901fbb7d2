//! Linking a user's account at an upstream (issue 27, `[upstream.oauth] mode = "user"`): Warden
//! as the OAuth 2.1 client of an upstream MCP server's authorization server, per the MCP
//! authorization spec. From the upstream's 401: its protected resource metadata (RFC 9728: the
//! challenge's `resource_metadata`, else the path-based then the root well-known URL), whose
//! `resource` must be the upstream's URL; its authorization server's metadata (RFC 8414 and
//! OpenID discovery, path insertion first), whose `issuer` must be the one asked for; the
//! client's identity (pre-registered, else a Client ID Metadata Document when the server takes
//! them, else RFC 7591 registration); the scope (the challenge's, else the resource's
//! `scopes_supported`, else none; `offline_access` added when the server offers it); PKCE S256,
//! `state`, the `resource` indicator; the answer's `iss` (RFC 9207) compared as a string with
//! the server's issuer whenever present, and required when the server advertises it; the code
//! redeemed with the client authentication the registration named.
//!
//! Used by `user/` (each user's link, kept in the vault) and `sign_in.rs` (who opens a link);
//! `warden-oauth-client` (warden-testkit) runs it against the official conformance suite's
//! client scenarios.
//!
//! Defends against: a resource that is not the upstream (resource mismatch: refused), metadata
//! of another issuer (mix-up: refused), an authorization answer from another server (`iss`),
//! code injection (`state`), code interception (PKCE), answers too large (64 KiB) or slow
//! (10 s), redirects (not followed), requests to internal addresses the upstream names
//! (`outbound.rs`, when guarded).
//! Does not defend against: a malicious authorization server the operator pointed at.

pub use super::outbound::Outbound;
use base64::engine::general_purpose::URL_SAFE_NO_PAD as B64;
use base64::Engine;
use ring::rand::{SecureRandom, SystemRandom};
use serde_json::{json, Value};

const MAX_ANSWER: usize = 64 << 10;

/// A `WWW-Authenticate: Bearer …` challenge's parameters.
#[derive(Debug, Default, Clone, PartialEq)]
pub struct Challenge {
    pub resource_metadata: Option<String>,
    pub scope: Option<String>,
    pub error: Option<String>,
}

/// Parse a Bearer challenge (quoted or token values, comma-separated).
pub fn challenge(header: &str) -> Option<Challenge> {
    let rest = header.trim().strip_prefix("Bearer").or_else(|| header.trim().strip_prefix("bearer"))?;
    let mut c = Challenge::default();
    let mut s = rest.trim();
    while !s.is_empty() {
        let (name, after) = s.split_once('=')?;
        let name = name.trim().trim_start_matches(',').trim().to_ascii_lowercase();
        let after = after.trim_start();
        let (value, tail) = if let Some(q) = after.strip_prefix('"') {
            let end = q.find('"')?;
            (q[..end].to_string(), &q[end + 1..])
        } else {
            let end = after.find(',').unwrap_or(after.len());
            (after[..end].trim().to_string(), &after[end..])
        };
        match name.as_str() {
            "resource_metadata" => c.resource_metadata = Some(value),
            "scope" => c.scope = Some(value),
            "error" => c.error = Some(value),
            _ => {}
        }
        s = tail.trim_start().trim_start_matches(',').trim_start();
    }
    Some(c)
}

/// What discovery found.
#[derive(Debug, Clone)]
pub struct Discovered {
    /// The resource the token is for (the protected resource metadata's `resource`).
    pub resource: String,
    pub resource_scopes: Vec<String>,
    pub issuer: String,
    pub meta: Value,
}

impl Discovered {
    fn endpoint(&self, name: &str) -> Result<String, String> {
        let e = self.meta.get(name).and_then(Value::as_str).ok_or(format!("the server's metadata has no {name}"))?;
        crate::config::check_remote_url(e).map_err(|m| format!("{name}: {m}"))?;
        Ok(e.to_string())
    }

    fn supports(&self, list: &str, item: &str) -> bool {
        self.meta.get(list).and_then(Value::as_array).is_some_and(|a| a.iter().any(|x| x == item))
    }
}

/// GET `url` as JSON: its status and body (`Null` when not JSON).
async fn get_json(http: &Outbound, url: &str) -> Result<(u16, Value), String> {
    let r = http.request(reqwest::Method::GET, url).await?;
    let r = r.header("accept", "application/json").send().await.map_err(|e| format!("{url}: {e}"))?;
    let status = r.status().as_u16();
    Ok((status, read_json(r).await.unwrap_or(Value::Null)))
}

async fn read_json(mut r: reqwest::Response) -> Result<Value, String> {
    let mut body = Vec::new();
    while let Some(chunk) = r.chunk().await.map_err(|e| e.to_string())? {
        if body.len() + chunk.len() > MAX_ANSWER {
            return Err(format!("answer over {MAX_ANSWER} bytes"));
        }
        body.extend_from_slice(&chunk);
    }
    serde_json::from_slice(&body).map_err(|_| "not JSON".to_string())
}

/// `origin` + `/.well-known/<name>` + `path` (RFC 8414 / RFC 9728 path insertion).
fn well_known(url: &reqwest::Url, name: &str, with_path: bool) -> String {
    let path = if with_path { url.path().trim_end_matches('/') } else { "" };
    format!("{}/.well-known/{name}{path}", url.origin().ascii_serialization())
}

/// From the upstream at `mcp_url` and its challenge: the resource and its authorization server.
pub async fn discover(http: &Outbound, mcp_url: &str, c: &Challenge) -> Result<Discovered, String> {
    let url = reqwest::Url::parse(mcp_url).map_err(|e| format!("upstream URL: {e}"))?;
    let candidates = match &c.resource_metadata {
        Some(u) => vec![u.clone()],
        None => vec![
            well_known(&url, "oauth-protected-resource", true),
            well_known(&url, "oauth-protected-resource", false),
        ],
    };
    let mut prm = None;
    for u in candidates {
        if let (200, v @ Value::Object(_)) = get_json(http, &u).await? {
            prm = Some(v);
            break;
        }
    }
    let prm = prm.ok_or("the upstream publishes no protected resource metadata")?;
    let resource = prm.get("resource").and_then(Value::as_str).ok_or("the resource metadata names no resource")?;
    if !same_resource(resource, mcp_url) {
        return Err(format!("the resource metadata is for {resource}, not this upstream ({mcp_url})"));
    }
    let issuer = (prm.get("authorization_servers").and_then(Value::as_array))
        .and_then(|a| a.first())
        .and_then(Value::as_str)
        .ok_or("the resource metadata names no authorization server")?
        .to_string();
    let meta = server_metadata(http, &issuer).await?;
    let resource_scopes = (prm.get("scopes_supported").and_then(Value::as_array))
        .map(|a| a.iter().filter_map(Value::as_str).map(String::from).collect())
        .unwrap_or_default();
    Ok(Discovered { resource: resource.to_string(), resource_scopes, issuer, meta })
}

/// An authorization server's metadata (RFC 8414, then OpenID discovery; path insertion first),
/// whose `issuer` must be `issuer` exactly.
pub async fn server_metadata(http: &Outbound, issuer: &str) -> Result<Value, String> {
    let iss = reqwest::Url::parse(issuer).map_err(|e| format!("authorization server: {e}"))?;
    let has_path = !iss.path().trim_end_matches('/').is_empty();
    let mut urls =
        vec![well_known(&iss, "oauth-authorization-server", true), well_known(&iss, "openid-configuration", true)];
    if has_path {
        urls.push(format!("{}/.well-known/openid-configuration", issuer.trim_end_matches('/')));
    }
    for u in urls {
        if let (200, meta @ Value::Object(_)) = get_json(http, &u).await? {
            // Compared as strings: metadata of another issuer is a mix-up.
            if meta.get("issuer").and_then(Value::as_str) != Some(issuer) {
                return Err(format!("the metadata at {u} names another issuer"));
            }
            return Ok(meta);
        }
    }
    Err(format!("no authorization server metadata for {issuer}"))
}

/// A resource URI covers the upstream's URL: the same origin, and its path the upstream's or a
/// parent of it (whole segments; a trailing slash ignored).
fn same_resource(resource: &str, mcp_url: &str) -> bool {
    let (Ok(r), Ok(m)) = (reqwest::Url::parse(resource), reqwest::Url::parse(mcp_url)) else { return false };
    let (rp, mp) = (r.path().trim_end_matches('/'), m.path().trim_end_matches('/'));
    r.origin() == m.origin() && r.query().is_none() && (mp == rp || mp.starts_with(&format!("{rp}/")))
}

fn loopback(uri: &str) -> bool {
    reqwest::Url::parse(uri).is_ok_and(|u| match u.host() {
        Some(url::Host::Domain(d)) => d.eq_ignore_ascii_case("localhost"),
        Some(url::Host::Ipv4(ip)) => ip.is_loopback(),
        Some(url::Host::Ipv6(ip)) => ip.is_loopback(),
        None => false,
    })
}

/// How Warden authenticates at the token endpoint. (`Debug` never shows the secret.)
#[derive(Clone, PartialEq)]
pub enum ClientAuth {
    None,
    Basic(String),
    Post(String),
}

impl std::fmt::Debug for ClientAuth {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            ClientAuth::None => "None",
            ClientAuth::Basic(_) => "Basic(..)",
            ClientAuth::Post(_) => "Post(..)",
        })
    }
}

/// Warden's identity at the authorization server.
#[derive(Debug, Clone)]
pub struct Identity {
    pub client_id: String,
    pub auth: ClientAuth,
}

/// Who Warden is at `d`'s server: `preregistered` (id, secret) when given; else the metadata
/// document at `cimd_url` when the server takes them; else a dynamic registration.
pub async fn identify(
    http: &Outbound,
    d: &Discovered,
    redirect_uri: &str,
    preregistered: Option<(String, Option<String>)>,
    cimd_url: Option<&str>,
) -> Result<Identity, String> {
    let basic_ok = |d: &Discovered| {
        d.meta.get("token_endpoint_auth_methods_supported").is_none()
            || d.supports("token_endpoint_auth_methods_supported", "client_secret_basic")
    };
    if let Some((id, secret)) = preregistered {
        let auth = match secret {
            None => ClientAuth::None,
            Some(s) if basic_ok(d) => ClientAuth::Basic(s),
            Some(s) => ClientAuth::Post(s),
        };
        return Ok(Identity { client_id: id, auth });
    }
    if let Some(url) = cimd_url.filter(|_| d.meta.get("client_id_metadata_document_supported") == Some(&json!(true))) {
        return Ok(Identity { client_id: url.to_string(), auth: ClientAuth::None });
    }
    let endpoint = d.endpoint("registration_endpoint")?;
    // A public client when the server takes one; else a secret, sent as the server prefers.
    let method = if d.meta.get("token_endpoint_auth_methods_supported").is_none()
        || d.supports("token_endpoint_auth_methods_supported", "none")
    {
        "none"
    } else if basic_ok(d) {
        "client_secret_basic"
    } else {
        "client_secret_post"
    };
    let body = json!({
        "client_name": "Warden",
        "redirect_uris": [redirect_uri],
        "grant_types": ["authorization_code", "refresh_token"],
        "response_types": ["code"],
        "token_endpoint_auth_method": method,
        // SEP-837: a loopback redirect is a native application's; any other, a web one.
        "application_type": if loopback(redirect_uri) { "native" } else { "web" },
    });
    let r = http.request(reqwest::Method::POST, &endpoint).await?;
    let r = r.json(&body).send().await.map_err(|e| format!("registration: {e}"))?;
    let status = r.status();
    let v = read_json(r).await.map_err(|e| format!("registration: {e}"))?;
    let id = v.get("client_id").and_then(Value::as_str).filter(|_| status.is_success());
    let id = id.ok_or(format!("registration refused ({status})"))?.to_string();
    let secret = v.get("client_secret").and_then(Value::as_str).map(String::from);
    let auth = match (v.get("token_endpoint_auth_method").and_then(Value::as_str).unwrap_or(method), secret) {
        ("client_secret_post", Some(s)) => ClientAuth::Post(s),
        (_, Some(s)) => ClientAuth::Basic(s),
        (_, None) => ClientAuth::None,
    };
    Ok(Identity { client_id: id, auth })
}

/// The scope to ask for: the challenge's, else the resource's, else none; with
/// `offline_access` when the server offers it (a refresh token to keep the link alive).
pub fn scope_for(d: &Discovered, c: &Challenge) -> Option<String> {
    let mut scopes: Vec<String> = match &c.scope {
        Some(s) => s.split_whitespace().map(String::from).collect(),
        None => d.resource_scopes.clone(),
    };
    if d.supports("scopes_supported", "offline_access") && !scopes.iter().any(|s| s == "offline_access") {
        scopes.push("offline_access".into());
    }
    (!scopes.is_empty()).then(|| scopes.join(" "))
}

/// An authorization request on its way: what the answer is checked against and redeemed with.
/// (`Debug` never shows the verifier.)
#[derive(Clone)]
pub struct Pending {
    pub state: String,
    pub verifier: String,
    pub redirect_uri: String,
}

fn random() -> Result<String, String> {
    let mut b = [0u8; 32];
    SystemRandom::new().fill(&mut b).map_err(|_| "no randomness")?;
    Ok(B64.encode(b))
}

/// The authorization URL to send the user to, and what to keep until the answer.
pub fn authorization_url(
    d: &Discovered,
    id: &Identity,
    redirect_uri: &str,
    scope: Option<&str>,
) -> Result<(String, Pending), String> {
    // A server that lists its PKCE methods must list S256 (code interception otherwise).
    if d.meta.get("code_challenge_methods_supported").is_some()
        && !d.supports("code_challenge_methods_supported", "S256")
    {
        return Err("the authorization server does not support PKCE with S256".into());
    }
    let mut u = reqwest::Url::parse(&d.endpoint("authorization_endpoint")?).map_err(|e| e.to_string())?;
    let p = Pending { state: random()?, verifier: random()?, redirect_uri: redirect_uri.to_string() };
    {
        let mut q = u.query_pairs_mut();
        q.append_pair("response_type", "code")
            .append_pair("client_id", &id.client_id)
            .append_pair("redirect_uri", redirect_uri)
            .append_pair("state", &p.state)
            .append_pair("code_challenge", &B64.encode(crate::digest::sha256(p.verifier.as_bytes())))
            .append_pair("code_challenge_method", "S256")
            .append_pair("resource", &d.resource);
        if let Some(s) = scope {
            q.append_pair("scope", s);
        }
    }
    Ok((u.to_string(), p))
}

/// The code of an authorization answer (the redirect URI's query), checked: `state`, and `iss`
/// against the server's issuer whenever present (required when the server advertises it).
pub fn code_from(d: &Discovered, p: &Pending, answer: &[(String, String)]) -> Result<String, String> {
    let get = |k: &str| answer.iter().find(|(a, _)| a == k).map(|(_, v)| v.as_str());
    if get("state") != Some(p.state.as_str()) {
        return Err("the authorization answer's state is not this request's".into());
    }
    match get("iss") {
        Some(iss) if iss != d.issuer => return Err("the authorization answer is from another issuer".into()),
        None if d.meta.get("authorization_response_iss_parameter_supported") == Some(&json!(true)) => {
            return Err("the authorization answer lacks the iss its server advertises".into())
        }
        _ => {}
    }
    if let Some(e) = get("error") {
        return Err(format!("the authorization server refused: {e}"));
    }
    get("code").map(String::from).ok_or("the authorization answer has no code".into())
}

impl std::fmt::Debug for Pending {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Pending").field("redirect_uri", &self.redirect_uri).finish_non_exhaustive()
    }
}

/// Tokens from the token endpoint. (`Debug` never shows them.)
#[derive(Clone)]
pub struct Tokens {
    pub access_token: String,
    pub refresh_token: Option<String>,
    pub expires_in: Option<u64>,
    pub scope: Option<String>,
}

impl std::fmt::Debug for Tokens {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Tokens")
            .field("expires_in", &self.expires_in)
            .field("scope", &self.scope)
            .finish_non_exhaustive()
    }
}

/// Why the token endpoint gave no token.
#[derive(Debug)]
pub enum TokenError {
    /// The server answered and refused: its status and `error` (`invalid_grant`, …).
    Refused { status: u16, error: Option<String> },
    /// No answer that says: unreachable, too large, not JSON, not allowed.
    Failed(String),
}

impl TokenError {
    /// The grant itself is no good (revoked, expired, used): the user must authorize again.
    /// Anything else (the client refused, the server down) says nothing about the grant.
    pub fn grant_refused(&self) -> bool {
        matches!(self, TokenError::Refused { error: Some(e), .. } if e == "invalid_grant")
    }
}

impl std::fmt::Display for TokenError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            TokenError::Refused { status, error } => {
                write!(f, "token request refused ({status}): {}", error.as_deref().unwrap_or("no error named"))
            }
            TokenError::Failed(e) => f.write_str(e),
        }
    }
}

impl From<TokenError> for String {
    fn from(e: TokenError) -> String {
        e.to_string()
    }
}

/// Redeem `code` (or a refresh token) at the token endpoint.
pub async fn token(
    http: &Outbound,
    d: &Discovered,
    id: &Identity,
    grant: &[(&str, &str)],
) -> Result<Tokens, TokenError> {
    let endpoint = d.endpoint("token_endpoint").map_err(TokenError::Failed)?;
    let mut form: Vec<(&str, &str)> = grant.to_vec();
    form.push(("resource", &d.resource));
    let req = http.request(reqwest::Method::POST, &endpoint).await.map_err(TokenError::Failed)?;
    let mut req = req.header("accept", "application/json");
    match &id.auth {
        ClientAuth::None => form.push(("client_id", &id.client_id)),
        ClientAuth::Basic(secret) => req = req.basic_auth(&id.client_id, Some(secret)),
        ClientAuth::Post(secret) => {
            form.push(("client_id", &id.client_id));
            form.push(("client_secret", secret));
        }
    }
    let r =
        req.form(&form).send().await.map_err(|e| TokenError::Failed(format!("token request: {}", e.without_url())))?;
    let status = r.status();
    let v = read_json(r).await.map_err(|e| TokenError::Failed(format!("token answer: {e}")))?;
    let access = v.get("access_token").and_then(Value::as_str).filter(|_| status.is_success());
    let Some(access) = access else {
        let error = v.get("error").and_then(Value::as_str).map(|e| e.chars().take(64).collect());
        return Err(TokenError::Refused { status: status.as_u16(), error });
    };
    Ok(Tokens {
        access_token: access.to_string(),
        refresh_token: v.get("refresh_token").and_then(Value::as_str).map(String::from),
        expires_in: v.get("expires_in").and_then(Value::as_u64),
        scope: v.get("scope").and_then(Value::as_str).map(String::from),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn challenges_parse_quoted_and_bare_values() {
        let c = challenge(r#"Bearer resource_metadata="https://r.example/.well-known/oauth-protected-resource", scope="a b", error=insufficient_scope"#).unwrap();
        assert_eq!(c.resource_metadata.as_deref(), Some("https://r.example/.well-known/oauth-protected-resource"));
        assert_eq!(c.scope.as_deref(), Some("a b"));
        assert_eq!(c.error.as_deref(), Some("insufficient_scope"));
        assert_eq!(challenge("Bearer"), Some(Challenge::default()));
        assert_eq!(challenge("Basic realm=x"), None);
    }

    #[test]
    fn a_resource_covers_its_own_url_and_those_under_it_only() {
        assert!(same_resource("http://LOCALHOST:9/mcp/", "http://localhost:9/mcp"));
        assert!(same_resource("http://localhost:9", "http://localhost:9/mcp"));
        assert!(!same_resource("http://localhost:9/other", "http://localhost:9/mcp"));
        assert!(!same_resource("http://localhost:9/mc", "http://localhost:9/mcp"));
        assert!(!same_resource("http://localhost:10/mcp", "http://localhost:9/mcp"));
        assert!(!same_resource("https://localhost:9/mcp", "http://localhost:9/mcp"));
    }

    #[test]
    fn an_authorization_answer_is_checked_for_state_and_issuer() {
        let d = |advertised: bool| Discovered {
            resource: "http://localhost:9/mcp".into(),
            resource_scopes: vec![],
            issuer: "http://localhost:9/as".into(),
            meta: json!({"authorization_response_iss_parameter_supported": advertised}),
        };
        let p = Pending { state: "s1".into(), verifier: "v".into(), redirect_uri: "http://localhost/cb".into() };
        let q = |pairs: &[(&str, &str)]| pairs.iter().map(|(a, b)| (a.to_string(), b.to_string())).collect::<Vec<_>>();
        let ok = q(&[("code", "c"), ("state", "s1"), ("iss", "http://localhost:9/as")]);
        assert_eq!(code_from(&d(true), &p, &ok), Ok("c".into()));
        assert!(code_from(&d(true), &p, &q(&[("code", "c"), ("state", "other"), ("iss", "http://localhost:9/as")]))
            .is_err());
        assert!(code_from(&d(true), &p, &q(&[("code", "c"), ("state", "s1")])).is_err(), "advertised, missing");
        assert_eq!(code_from(&d(false), &p, &q(&[("code", "c"), ("state", "s1")])), Ok("c".into()));
        // Compared as strings, advertised or not: no normalization.
        for iss in ["http://localhost:9/as/", "HTTP://localhost:9/as", "http://evil.example/as"] {
            assert!(code_from(&d(false), &p, &q(&[("code", "c"), ("state", "s1"), ("iss", iss)])).is_err(), "{iss}");
        }
    }

    #[test]
    fn secrets_never_print_and_a_server_without_s256_is_refused() {
        let t = Tokens {
            access_token: "AT-SECRET".into(),
            refresh_token: Some("RT-SECRET".into()),
            expires_in: None,
            scope: None,
        };
        let id = Identity { client_id: "c".into(), auth: ClientAuth::Basic("CLIENT-SECRET".into()) };
        let p = Pending { state: "s".into(), verifier: "VERIFIER-SECRET".into(), redirect_uri: "r".into() };
        let shown = format!("{t:?} {id:?} {p:?}");
        assert!(!shown.contains("SECRET"), "{shown}");
        let d = Discovered {
            resource: "http://localhost:9/mcp".into(),
            resource_scopes: vec![],
            issuer: "http://localhost:9".into(),
            meta: json!({"authorization_endpoint": "http://localhost:9/authorize", "code_challenge_methods_supported": ["plain"]}),
        };
        let e = authorization_url(&d, &id, "http://localhost/cb", None).unwrap_err();
        assert!(e.contains("S256"), "{e}");
    }
}
