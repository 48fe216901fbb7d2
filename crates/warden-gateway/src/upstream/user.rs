//! `[upstream.oauth] mode = "user"` (issue 27): each user's own account at an upstream, linked
//! once through the upstream's OAuth flow with Warden as the OAuth client (`link.rs`), kept in
//! the credential vault (`crate::vault`), refreshed, and presented on that user's requests only.
//!
//! The life of a link: a request of a user with no link for the upstream gets
//! [`GatewayError::LinkRequired`] (a URL elicitation, `pipeline/link.rs`: a link to Warden's
//! own page, `link_pages/`). There whoever opened it confirms, signs in at the Warden user's
//! own issuer and must be that user, and is then sent to the upstream's authorization server;
//! its answer comes back to Warden's callback, the code is redeemed, and the tokens are sealed
//! into the vault under that user (binding key: method, tenant, issuer, subject). Each later
//! request reads the vault (so a revocation anywhere, by the admin API, the CLI or the user,
//! takes effect at the next request, on every replica sharing the vault), refreshes an expiring
//! token (one refresh at a time per user), and forgets a link whose refresh the server refuses.
//! Callers without a token (API keys, certificates) cannot link ([`GatewayError::CannotLink`]).
//!
//! Defends against: one user's upstream token serving another (the vault entry is the user's;
//! connections of this upstream are never shared between users, `relay/upstreams.rs`); a link
//! opened by someone else than its user (the sign-in must name the same principal, MCP's URL
//! elicitation phishing rule); the answers completed in another browser than the one that
//! confirmed (a cookie; `state` single use, ten minutes); a token endpoint or authorization
//! server of another issuer than discovery found (`link.rs`); unbounded flows (at most
//! [`MAX_FLOWS`], [`MAX_FLOWS_PER_USER`] per user, ten minutes each); scopes beyond
//! `oauth.scope` (not asked).
//! Does not defend against: a malicious authorization server the upstream names (it sees the
//! user's sign-in; Warden trusts the upstream's metadata, checked for mix-up only). Flows live
//! in the process that started them: with several replicas the browser must come back to the
//! same one (sticky routing), or the user makes the request again.

use super::link::{self, ClientAuth, Discovered, Identity, Pending};
use crate::error::GatewayError;
use crate::vault::{Refresher, Secret, Vault};
use http::HeaderValue;
use parking_lot::Mutex;
use std::collections::HashMap;
use std::sync::Arc;
use std::time::{Duration, Instant};
use warden_policy::{AuthMethod, Principal};

/// Flows waiting for their callback, in all and per user.
pub const MAX_FLOWS: usize = 1000;
pub const MAX_FLOWS_PER_USER: usize = 4;
/// How long a flow waits for the user.
pub const FLOW_TTL: Duration = Duration::from_secs(600);
/// How long what discovery found is reused.
const DISCOVERY_TTL: Duration = Duration::from_secs(600);
/// A token this close to its expiry is refreshed first (or at half its life, if shorter).
const EARLY: u64 = 30;

/// Whether `s` should be refreshed before use at `now`.
fn expiring(s: &Secret, now: u64) -> bool {
    let Some(exp) = s.expires_at else { return false };
    let life = s.client.as_ref().map_or(u64::MAX, |c| exp.saturating_sub(c.obtained_at));
    exp <= now + EARLY.min(life / 2)
}

/// The sign-in of whoever opened a link, at the Warden user's own issuer, on its way
/// (`link_pages/sign_in.rs`).
pub struct SignIn {
    pub d: Discovered,
    pub id: Identity,
    pub pending: Pending,
}

/// One link on its way: whose, where, and what the answer is checked against.
pub struct Flow {
    pub upstream: String,
    pub principal: Principal,
    pub d: Discovered,
    pub id: Identity,
    pub pending: Pending,
    pub authorization_url: String,
    /// Set by the confirmation: the secret of the cookie the callback must bring.
    pub browser: Option<String>,
    /// The sign-in that shows who opened the link, while it is on its way.
    pub sign_in: Option<SignIn>,
    /// Whoever opened the link signed in as the user it is for.
    pub verified: bool,
    pub created: Instant,
}

/// One refresh at a time: the gate its waiters queue at.
type Gate = Arc<tokio::sync::Mutex<()>>;

/// Every user-mode upstream's links: the vault, the flows, Warden's public origin.
pub struct Links {
    vault: Option<Arc<Vault>>,
    http: reqwest::Client,
    /// Warden's public origin (`https://host`), where the pages are: from `[auth] resource`, or
    /// the listener's address.
    base: Mutex<Option<String>>,
    /// By flow id (the page's path).
    flows: Mutex<HashMap<String, Flow>>,
    /// By upstream URL: what discovery found, Warden's identity there, the challenge.
    found: Mutex<HashMap<String, (Discovered, Identity, link::Challenge, Instant)>>,
    /// Warden's client at each issuer its users sign in at, with that issuer's metadata.
    sign_in_clients: Mutex<HashMap<String, (Discovered, Identity, Instant)>>,
    /// One refresh at a time per upstream and user.
    refreshing: Mutex<HashMap<(String, String), Gate>>,
}

fn random() -> Result<String, GatewayError> {
    use ring::rand::SecureRandom;
    let mut b = [0u8; 24];
    ring::rand::SystemRandom::new().fill(&mut b).map_err(|_| GatewayError::Unavailable)?;
    Ok(crate::digest::hex(&b))
}

impl Links {
    pub fn new(vault: Option<Arc<Vault>>) -> Result<Arc<Links>, String> {
        Ok(Arc::new(Links {
            vault,
            http: link::client()?,
            base: Mutex::new(None),
            flows: Mutex::new(HashMap::new()),
            found: Mutex::new(HashMap::new()),
            sign_in_clients: Mutex::new(HashMap::new()),
            refreshing: Mutex::new(HashMap::new()),
        }))
    }

    pub fn vault(&self) -> Option<&Arc<Vault>> {
        self.vault.as_ref()
    }

    /// Where the pages are (`https://host`, no path).
    pub fn set_base(&self, origin: String) {
        *self.base.lock() = Some(origin.trim_end_matches('/').to_string());
    }

    pub fn base(&self) -> Option<String> {
        self.base.lock().clone()
    }

    /// Warden's Client ID Metadata Document (its URL is the client id), when Warden's pages are
    /// on `https` (an authorization server fetches it; it takes no other).
    pub fn cimd_url(&self) -> Option<String> {
        self.base().filter(|b| b.starts_with("https://")).map(|b| format!("{b}{CLIENT_DOCUMENT}"))
    }

    /// The document itself (served by `link_pages/`).
    pub fn cimd(&self) -> Option<serde_json::Value> {
        let (base, id) = (self.base()?, self.cimd_url()?);
        Some(serde_json::json!({
            "client_id": id,
            "client_name": "Warden",
            "redirect_uris": [format!("{base}{CALLBACK}"), format!("{base}{SIGNED_IN}")],
            "grant_types": ["authorization_code", "refresh_token"],
            "response_types": ["code"],
            "token_endpoint_auth_method": "none",
            "application_type": "web",
        }))
    }

    /// The callback every authorization server sends the user back to.
    pub fn redirect_uri(&self) -> Option<String> {
        self.base().map(|b| format!("{b}{CALLBACK}"))
    }

    fn vault_or_fail(&self) -> Result<Arc<Vault>, GatewayError> {
        self.vault.clone().ok_or(GatewayError::Unavailable)
    }

    /// Run a vault call on the blocking pool (SQLite and the PostgreSQL client block).
    async fn blocking<T: Send + 'static>(
        &self,
        f: impl FnOnce(&Vault) -> Result<T, String> + Send + 'static,
    ) -> Result<T, GatewayError> {
        let v = self.vault_or_fail()?;
        match tokio::task::spawn_blocking(move || f(&v)).await {
            Ok(Ok(t)) => Ok(t),
            Ok(Err(e)) => {
                tracing::error!(error = %e, "credential vault unavailable");
                Err(GatewayError::Unavailable)
            }
            Err(_) => Err(GatewayError::Unavailable),
        }
    }

    /// The flow whose sign-in had `state`, its sign-in taken (single use): its id.
    pub fn by_sign_in(&self, state: &str) -> Option<(String, SignIn)> {
        let mut flows = self.flows.lock();
        let (id, f) = flows.iter_mut().find(|(_, f)| f.sign_in.as_ref().is_some_and(|s| s.pending.state == state))?;
        let s = f.sign_in.take()?;
        (f.created.elapsed() < FLOW_TTL).then(|| (id.clone(), s))
    }

    /// Forget flow `id`.
    pub fn drop_flow(&self, id: &str) {
        self.flows.lock().remove(id);
    }

    /// Warden's client at `issuer` for signing users in, as registered (reused for an hour).
    pub fn sign_in_client(&self, issuer: &str) -> Option<(Discovered, Identity)> {
        let c = self.sign_in_clients.lock();
        c.get(issuer)
            .filter(|(_, _, at)| at.elapsed() < Duration::from_secs(3600))
            .map(|(d, i, _)| (d.clone(), i.clone()))
    }

    pub fn keep_sign_in_client(&self, issuer: &str, d: Discovered, id: Identity) {
        let mut c = self.sign_in_clients.lock();
        if c.len() >= 64 {
            c.clear();
        }
        c.insert(issuer.to_string(), (d, id, Instant::now()));
    }

    pub fn http(&self) -> &reqwest::Client {
        &self.http
    }

    /// Take the flow whose authorization request had `state` (single use).
    pub fn take_by_state(&self, state: &str) -> Option<Flow> {
        let mut flows = self.flows.lock();
        let id = flows.iter().find(|(_, f)| f.pending.state == state).map(|(k, _)| k.clone())?;
        flows.remove(&id).filter(|f| f.created.elapsed() < FLOW_TTL)
    }

    /// Look at flow `id` (for its page), if it is still waiting.
    pub fn with_flow<T>(&self, id: &str, f: impl FnOnce(&mut Flow) -> T) -> Option<T> {
        let mut flows = self.flows.lock();
        let flow = flows.get_mut(id).filter(|f| f.created.elapsed() < FLOW_TTL)?;
        Some(f(flow))
    }

    /// Redeem the code of a completed flow and keep the tokens for its user.
    pub async fn complete(&self, flow: Flow, code: &str) -> Result<(), String> {
        let t = link::token(
            &self.http,
            &flow.d,
            &flow.id,
            &[
                ("grant_type", "authorization_code"),
                ("code", code),
                ("redirect_uri", &flow.pending.redirect_uri),
                ("code_verifier", &flow.pending.verifier),
            ],
        )
        .await?;
        let refresher = Refresher {
            issuer: flow.d.issuer.clone(),
            token_endpoint: flow.d.meta.get("token_endpoint").and_then(|v| v.as_str()).unwrap_or_default().into(),
            resource: flow.d.resource.clone(),
            client_id: flow.id.client_id.clone(),
            auth_method: auth_method(&flow.id.auth).into(),
            client_secret: secret_of(&flow.id.auth),
            obtained_at: 0,
        };
        let secret = secret_from(t, refresher);
        let (up, p) = (flow.upstream.clone(), flow.principal.clone());
        self.blocking(move |v| v.put(&up, &p, &secret)).await.map_err(|_| "the credential vault is unavailable")?;
        tracing::info!(upstream = %flow.upstream, subject = %flow.principal.subject, "account linked");
        Ok(())
    }
}

/// The callback's path.
pub const CALLBACK: &str = "/oauth/upstream/callback";
/// Where the sign-in of whoever opened a link comes back.
pub const SIGNED_IN: &str = "/oauth/upstream/signed-in";
/// Warden's Client ID Metadata Document.
pub const CLIENT_DOCUMENT: &str = "/oauth/upstream/client";
/// The flows' pages are under this path.
pub const PAGES: &str = "/oauth/upstream/";

fn auth_method(a: &ClientAuth) -> &'static str {
    match a {
        ClientAuth::None => "none",
        ClientAuth::Basic(_) => "client_secret_basic",
        ClientAuth::Post(_) => "client_secret_post",
    }
}

fn secret_of(a: &ClientAuth) -> Option<String> {
    match a {
        ClientAuth::None => None,
        ClientAuth::Basic(s) | ClientAuth::Post(s) => Some(s.clone()),
    }
}

fn secret_from(t: link::Tokens, mut client: Refresher) -> Secret {
    let now = crate::clock::now_secs();
    client.obtained_at = now;
    Secret {
        access_token: t.access_token,
        refresh_token: t.refresh_token,
        expires_at: t.expires_in.map(|s| now + s.min(366 * 86_400)),
        scope: t.scope,
        client: Some(client),
    }
}

/// One user-mode upstream.
pub struct UserLink {
    upstream: String,
    url: String,
    /// The most a link asks for (`oauth.scope`), if limited.
    ceiling: Option<Vec<String>>,
    preregistered: Option<(String, Option<String>)>,
    /// The authorization server the upstream must name (`oauth.issuer`), if set.
    issuer: Option<String>,
    links: Arc<Links>,
}

/// Why no token can be presented.
#[derive(Debug)]
pub enum NoToken {
    /// The user has no (usable) link: they must link first.
    NotLinked,
    /// The vault or the authorization server failed; the link may still be good.
    Failed(String),
}

impl UserLink {
    /// For upstream `u` at `url` (a tenant's own instance has its own).
    pub fn new(u: &crate::config::Upstream, url: &str, links: Arc<Links>) -> Result<UserLink, String> {
        let o = u.oauth.as_ref().ok_or("no oauth")?;
        let secret = (o.client_secret.as_ref())
            .map(|s| s.resolve().map_err(|e| format!("upstream {}: oauth.client_secret: {e}", u.name)))
            .transpose()?;
        Ok(UserLink {
            upstream: u.name.clone(),
            url: url.to_string(),
            ceiling: o.scope.as_ref().map(|s| s.split_whitespace().map(String::from).collect()),
            preregistered: o.client_id.clone().map(|id| (id, secret)),
            issuer: o.issuer.clone(),
            links,
        })
    }

    /// The `Authorization` value for `owner`'s requests: their linked token, refreshed first
    /// when it is about to expire.
    pub async fn header(&self, owner: &Principal) -> Result<HeaderValue, NoToken> {
        let got = self.get(owner).await.map_err(|e| NoToken::Failed(e.to_string()))?;
        let s = got.ok_or(NoToken::NotLinked)?;
        let now = crate::clock::now_secs();
        let s = if expiring(&s, now) { self.refresh(owner, Some(s)).await? } else { s };
        bearer(&s.access_token).map_err(NoToken::Failed)
    }

    /// The upstream refused `owner`'s token: refresh it now (or forget the link).
    pub async fn refused(&self, owner: &Principal) {
        match self.refresh(owner, None).await {
            Ok(_) | Err(NoToken::NotLinked) => {}
            Err(NoToken::Failed(e)) => tracing::warn!(upstream = %self.upstream, error = %e, "refresh failed"),
        }
    }

    async fn get(&self, owner: &Principal) -> Result<Option<Secret>, GatewayError> {
        let (up, p) = (self.upstream.clone(), owner.clone());
        self.links.blocking(move |v| v.get(&up, &p)).await
    }

    /// Refresh `owner`'s token (one refresh at a time per user: a second caller takes the
    /// first one's). `seen`: the entry the caller found expiring (none: refused upstream).
    async fn refresh(&self, owner: &Principal, seen: Option<Secret>) -> Result<Secret, NoToken> {
        let key = (self.upstream.clone(), owner.binding_key());
        let gate = self.links.refreshing.lock().entry(key.clone()).or_default().clone();
        let _one = gate.lock().await;
        let r = self.refresh_now(owner, seen).await;
        self.links.refreshing.lock().remove(&key);
        r
    }

    async fn refresh_now(&self, owner: &Principal, seen: Option<Secret>) -> Result<Secret, NoToken> {
        let failed = |e: GatewayError| NoToken::Failed(e.to_string());
        let current = self.get(owner).await.map_err(failed)?.ok_or(NoToken::NotLinked)?;
        // Another request refreshed it meanwhile.
        if seen.is_some_and(|s| s.access_token != current.access_token) {
            return Ok(current);
        }
        let (Some(rt), Some(c)) = (current.refresh_token.clone(), current.client.clone()) else {
            self.forget(owner).await;
            return Err(NoToken::NotLinked);
        };
        let d = Discovered {
            resource: c.resource.clone(),
            resource_scopes: vec![],
            issuer: c.issuer.clone(),
            meta: serde_json::json!({"token_endpoint": c.token_endpoint}),
        };
        let auth = match (c.auth_method.as_str(), c.client_secret.clone()) {
            ("client_secret_post", Some(s)) => ClientAuth::Post(s),
            ("client_secret_basic", Some(s)) => ClientAuth::Basic(s),
            _ => ClientAuth::None,
        };
        let id = Identity { client_id: c.client_id.clone(), auth };
        match link::token(&self.links.http, &d, &id, &[("grant_type", "refresh_token"), ("refresh_token", &rt)]).await {
            Ok(mut t) => {
                // A server that does not rotate refresh tokens keeps the old one good.
                t.refresh_token = t.refresh_token.or(Some(rt));
                let s = secret_from(t, c);
                let (up, p, kept) = (self.upstream.clone(), owner.clone(), s.clone());
                self.links.blocking(move |v| v.put(&up, &p, &kept)).await.map_err(failed)?;
                tracing::info!(upstream = %self.upstream, subject = %owner.subject, "linked token refreshed");
                Ok(s)
            }
            // The server refused the grant (revoked, expired): the user links again.
            Err(e) if e.contains("refused (400") || e.contains("refused (401") => {
                tracing::info!(upstream = %self.upstream, subject = %owner.subject, error = %e, "link refused; forgotten");
                self.forget(owner).await;
                Err(NoToken::NotLinked)
            }
            Err(e) => Err(NoToken::Failed(e)),
        }
    }

    async fn forget(&self, owner: &Principal) {
        let (up, p) = (self.upstream.clone(), owner.clone());
        let _ = self.links.blocking(move |v| v.revoke_own(&up, &p)).await;
    }

    /// Whether `owner` has a usable link (refreshed if it had to be).
    pub async fn is_linked(&self, owner: &Principal) -> bool {
        self.header(owner).await.is_ok()
    }

    /// `owner` may use this upstream: a usable link is kept for them (refreshed here when it
    /// expires). Otherwise the link to open.
    pub async fn ensure(&self, owner: &Principal) -> Result<(), GatewayError> {
        match self.header(owner).await {
            Ok(_) => Ok(()),
            Err(NoToken::NotLinked) if !matches!(owner.method, AuthMethod::Jwt | AuthMethod::Introspection) => {
                Err(GatewayError::CannotLink { upstream: self.upstream.clone() })
            }
            Err(NoToken::NotLinked) => {
                let url = self.start(owner).await?;
                Err(GatewayError::LinkRequired { upstream: self.upstream.clone(), url })
            }
            Err(NoToken::Failed(e)) => {
                tracing::warn!(upstream = %self.upstream, subject = %owner.subject, error = %e, "linked account unusable");
                Err(GatewayError::Unavailable)
            }
        }
    }

    /// Start a flow for `owner` (or hand back the one already waiting): the page's URL.
    async fn start(&self, owner: &Principal) -> Result<String, GatewayError> {
        let base = self.links.base().ok_or(GatewayError::Unavailable)?;
        let binding = owner.binding_key();
        {
            let mut flows = self.links.flows.lock();
            flows.retain(|_, f| f.created.elapsed() < FLOW_TTL);
            // A fresh one already waiting (under half its time gone) is handed out again.
            let waiting = flows.iter().find(|(_, f)| {
                f.upstream == self.upstream
                    && f.principal.binding_key() == binding
                    && f.browser.is_none()
                    && f.created.elapsed() < FLOW_TTL / 2
            });
            if let Some((id, _)) = waiting {
                return Ok(format!("{base}{PAGES}{id}"));
            }
        }
        let redirect_uri = format!("{base}{CALLBACK}");
        let (d, id, challenge) = self.discover(&redirect_uri).await.map_err(|e| {
            tracing::warn!(upstream = %self.upstream, error = %e, "cannot start a link");
            GatewayError::Unavailable
        })?;
        let scope =
            link::scope_for(&d, &challenge).map(|s| within(self.ceiling.as_deref(), &s)).filter(|s| !s.is_empty());
        let (url, pending) = link::authorization_url(&d, &id, &redirect_uri, scope.as_deref()).map_err(|e| {
            tracing::warn!(upstream = %self.upstream, error = %e, "cannot start a link");
            GatewayError::Unavailable
        })?;
        let flow_id = random()?;
        let mut flows = self.links.flows.lock();
        let mine = flows.values().filter(|f| f.principal.binding_key() == binding).count();
        if flows.len() >= MAX_FLOWS || mine >= MAX_FLOWS_PER_USER {
            return Err(GatewayError::RateLimited {
                retry_after: FLOW_TTL / 10,
                limit: if mine >= MAX_FLOWS_PER_USER { "links_per_user" } else { "links" },
            });
        }
        flows.insert(
            flow_id.clone(),
            Flow {
                upstream: self.upstream.clone(),
                principal: owner.clone(),
                d,
                id,
                pending,
                authorization_url: url,
                browser: None,
                sign_in: None,
                verified: false,
                created: Instant::now(),
            },
        );
        Ok(format!("{base}{PAGES}{flow_id}"))
    }

    /// What the upstream's 401 and metadata say (reused for ten minutes), and Warden's identity
    /// at its authorization server.
    async fn discover(&self, redirect_uri: &str) -> Result<(Discovered, Identity, link::Challenge), String> {
        if let Some((d, i, c, at)) = self.links.found.lock().get(&self.url) {
            if at.elapsed() < DISCOVERY_TTL {
                return Ok((d.clone(), i.clone(), c.clone()));
            }
        }
        let http = &self.links.http;
        // The upstream's own challenge, from a request without credentials.
        let probe = serde_json::json!({"jsonrpc": "2.0", "id": 0, "method": "ping"});
        crate::config::check_remote_url(&self.url)?;
        let r = http
            .post(&self.url)
            .header("accept", "application/json, text/event-stream")
            .json(&probe)
            .send()
            .await
            .map_err(|e| format!("upstream: {}", e.without_url()))?;
        let challenge = (r.headers().get_all(http::header::WWW_AUTHENTICATE).iter())
            .filter_map(|v| v.to_str().ok())
            .find_map(link::challenge)
            .unwrap_or_default();
        let d = link::discover(http, &self.url, &challenge).await?;
        if self.issuer.as_ref().is_some_and(|i| *i != d.issuer) {
            return Err(format!("the upstream names {} as its authorization server, not oauth.issuer", d.issuer));
        }
        let cimd = self.links.cimd_url();
        let id = link::identify(http, &d, redirect_uri, self.preregistered.clone(), cimd.as_deref()).await?;
        self.links.found.lock().insert(self.url.clone(), (d.clone(), id.clone(), challenge.clone(), Instant::now()));
        Ok((d, id, challenge))
    }
}

/// The scopes of `s` within `ceiling` (`oauth.scope`; all of them when it is not set), with
/// `offline_access` (a refresh token keeps the link alive).
fn within(ceiling: Option<&[String]>, s: &str) -> String {
    let ok = |x: &&str| ceiling.is_none_or(|c| c.iter().any(|y| y == x) || *x == "offline_access");
    s.split_whitespace().filter(ok).collect::<Vec<_>>().join(" ")
}

fn bearer(token: &str) -> Result<HeaderValue, String> {
    let mut v =
        HeaderValue::from_str(&format!("Bearer {token}")).map_err(|_| "the linked token is not a valid header")?;
    v.set_sensitive(true);
    Ok(v)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_link_asks_no_scope_beyond_the_ceiling() {
        let ceiling = vec!["repo:read".to_string()];
        assert_eq!(within(Some(&ceiling), "repo:read repo:write admin offline_access"), "repo:read offline_access");
        assert_eq!(within(None, "a b"), "a b");
        assert_eq!(within(Some(&ceiling), "admin"), "");
    }

    #[test]
    fn tokens_are_refreshed_at_half_their_life_or_thirty_seconds_before_expiry() {
        let at = |obtained: u64, expires: Option<u64>| Secret {
            access_token: "t".into(),
            refresh_token: None,
            expires_at: expires,
            scope: None,
            client: Some(Refresher {
                issuer: "i".into(),
                token_endpoint: "t".into(),
                resource: "r".into(),
                client_id: "c".into(),
                auth_method: "none".into(),
                client_secret: None,
                obtained_at: obtained,
            }),
        };
        // An hour-long token: 30 s before it ends.
        assert!(!expiring(&at(1000, Some(4600)), 4569));
        assert!(expiring(&at(1000, Some(4600)), 4570));
        // A 4 s token: at half its life.
        assert!(!expiring(&at(1000, Some(1004)), 1001));
        assert!(expiring(&at(1000, Some(1004)), 1002));
        // No expiry said: never refreshed ahead.
        assert!(!expiring(&at(1000, None), u64::MAX / 2));
    }

    #[test]
    fn the_client_metadata_document_is_offered_on_https_only() {
        let links = Links::new(None).unwrap();
        assert!(links.cimd().is_none(), "no base yet");
        links.set_base("http://127.0.0.1:8080".into());
        assert!(links.cimd_url().is_none() && links.cimd().is_none());
        links.set_base("https://mcp.example.com/".into());
        let doc = links.cimd().unwrap();
        assert_eq!(doc["client_id"], "https://mcp.example.com/oauth/upstream/client");
        assert_eq!(doc["redirect_uris"][0], "https://mcp.example.com/oauth/upstream/callback");
        assert_eq!(doc["token_endpoint_auth_method"], "none");
    }
}
