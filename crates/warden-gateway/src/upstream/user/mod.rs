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
//! confirmed (a cookie per flow; `state` single use, ten minutes); an answer for one upstream's
//! flow taken for another's (a callback per upstream); a token endpoint or authorization server
//! of another issuer than discovery found (`link.rs`), or at an internal address
//! (`outbound.rs`: only the upstream's and `oauth.issuer`'s hosts may be private); unbounded
//! flows (at most [`MAX_FLOWS`], [`MAX_FLOWS_PER_USER`] per user, ten minutes each); scopes
//! beyond `oauth.scope` (not asked, and a grant beyond them refused).
//! Does not defend against: a malicious authorization server the upstream names (it sees the
//! user's sign-in; Warden trusts the upstream's metadata, checked for mix-up only). Flows live
//! in the process that started them: with several replicas the browser must come back to the
//! same one (sticky routing), or the user makes the request again.

mod links;
mod refresh;

pub use links::{
    Flow, Links, SignIn, CALLBACKS, CLIENT_DOCUMENT, FLOW_TTL, MAX_FLOWS, MAX_FLOWS_PER_USER, PAGES, SIGNED_IN,
};

use super::link::{self, Discovered, Identity, Outbound};
use crate::error::GatewayError;
use crate::vault::Secret;
use http::HeaderValue;
use links::{bounded_insert, random, Found};
pub use refresh::digest as token_digest;
use refresh::{digest, expiring, Refresh};
use std::sync::Arc;
use std::time::{Duration, Instant};
use warden_policy::{AuthMethod, Principal};

/// How long what discovery found is reused.
const DISCOVERY_TTL: Duration = Duration::from_secs(600);
/// How long a failed discovery is not tried again.
const DISCOVERY_BACKOFF: Duration = Duration::from_secs(30);
/// The most one discovery may take, all of its requests together.
const DISCOVERY_DEADLINE: Duration = Duration::from_secs(20);
/// How long Warden's identity at an authorization server is reused.
const IDENTITY_TTL: Duration = Duration::from_secs(86_400);
/// How long a flow that ended may take to become a link (its code redeemed, the vault written).
const REDEEMING: Duration = Duration::from_secs(15);
/// How often the vault is looked at while waiting for a link made elsewhere (another replica):
/// a link made here wakes the waiters at once.
const POLL: Duration = Duration::from_secs(5);

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
    /// Reaches the upstream's and `oauth.issuer`'s hosts as configured, others only at public
    /// addresses.
    http: Outbound,
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
        let http = Outbound::guarded([url].into_iter().chain(o.issuer.as_deref()))?;
        Ok(UserLink {
            upstream: u.name.clone(),
            url: url.to_string(),
            ceiling: o.scope.as_ref().map(|s| s.split_whitespace().map(String::from).collect()),
            preregistered: o.client_id.clone().map(|id| (id, secret)),
            issuer: o.issuer.clone(),
            links,
            http,
        })
    }

    fn refresh(&self, owner: &Principal, seen: String) -> Refresh {
        Refresh {
            links: self.links.clone(),
            http: self.http.clone(),
            upstream: self.upstream.clone(),
            owner: owner.clone(),
            seen,
            preregistered: self.preregistered.clone(),
        }
    }

    /// The `Authorization` value for `owner`'s requests: their linked token, refreshed first
    /// when it is about to expire.
    pub async fn header(&self, owner: &Principal) -> Result<HeaderValue, NoToken> {
        let (up, p) = (self.upstream.clone(), owner.clone());
        let got = self.links.blocking(move |v| v.get(&up, &p)).await.map_err(|e| NoToken::Failed(e.to_string()))?;
        let s: Secret = got.ok_or(NoToken::NotLinked)?;
        let s = if expiring(&s, crate::clock::now_secs()) {
            self.refresh(owner, digest(&s.access_token)).run().await?
        } else {
            s
        };
        bearer(&s.access_token).map_err(NoToken::Failed)
    }

    /// The upstream refused `owner`'s token whose [`token_digest`] is `seen`: refresh it now (or
    /// forget the link), unless another request already did.
    pub async fn refused(&self, owner: &Principal, seen: String) {
        match self.refresh(owner, seen).run().await {
            Ok(_) | Err(NoToken::NotLinked) => {}
            Err(NoToken::Failed(e)) => tracing::warn!(upstream = %self.upstream, error = %e, "refresh failed"),
        }
    }

    /// Whether a flow for `owner` is still waiting for its user.
    pub fn waiting(&self, owner: &Principal) -> bool {
        self.links.waiting(&self.upstream, &owner.binding_key())
    }

    /// Whether `owner` has a usable link (refreshed if it had to be). Starts no flow.
    pub async fn is_linked(&self, owner: &Principal) -> bool {
        self.header(owner).await.is_ok()
    }

    /// Whether `owner` may use this upstream now without linking (again): a usable link that
    /// holds what the upstream asked for. Starts no flow.
    pub async fn ready(&self, owner: &Principal) -> bool {
        self.is_linked(owner).await && self.pending_step_up(owner).await.is_none()
    }

    /// Whether `owner` could link at all (a caller with a token: not an API key or certificate).
    pub fn can_link(owner: &Principal) -> bool {
        matches!(owner.method, AuthMethod::Jwt | AuthMethod::Introspection)
    }

    /// Wait until `owner` is [`ready`](Self::ready), at most until `until`: whether they are.
    /// Gives up as soon as no flow of theirs is on its way (it ended unlinked: refused, expired).
    pub async fn until_linked(&self, owner: &Principal, until: Instant) -> bool {
        let mut linked = self.links.linked();
        let mut gone: Option<Instant> = None;
        while Instant::now() < until {
            linked.borrow_and_update();
            if self.ready(owner).await {
                return true;
            }
            // The flow ended: linked within moments (its code being redeemed), or not at all.
            if !self.waiting(owner) && gone.get_or_insert_with(Instant::now).elapsed() > REDEEMING {
                return false;
            }
            let nap = POLL.min(until.saturating_duration_since(Instant::now())).min(REDEEMING);
            let _ = tokio::time::timeout(nap, linked.changed()).await;
        }
        false
    }

    /// The upstream refused `owner`'s token for want of `scope` (403 `insufficient_scope`):
    /// what of it is within `oauth.scope` is asked for at the user's next request (step-up).
    /// Scopes beyond `oauth.scope` are never asked: the call just fails.
    pub fn step_up(&self, owner: &Principal, scope: &str) {
        let wanted: Vec<&str> = (scope.split_whitespace())
            .filter(|x| self.ceiling.as_ref().is_none_or(|c| c.iter().any(|y| y == x)))
            .collect();
        if wanted.is_empty() {
            tracing::info!(upstream = %self.upstream, scope, "the upstream asks for scopes beyond oauth.scope; not asked");
            return;
        }
        let key = format!("{}\0{}", self.upstream, owner.binding_key());
        bounded_insert(&mut self.links.step_ups.lock(), key, wanted.join(" "), |_| true);
    }

    /// Scopes to ask beyond `owner`'s link, if the upstream asked for some it does not hold.
    async fn pending_step_up(&self, owner: &Principal) -> Option<String> {
        let key = format!("{}\0{}", self.upstream, owner.binding_key());
        // Kept until a link holds it (`Links::complete` clears it).
        let wanted = self.links.step_ups.lock().get(&key).cloned()?;
        let (up, p) = (self.upstream.clone(), owner.clone());
        let granted = self.links.blocking(move |v| v.get(&up, &p)).await.ok().flatten().and_then(|s| s.scope);
        let granted: Vec<&str> = granted.as_deref().unwrap_or_default().split_whitespace().collect();
        // Already granted (the upstream wants something else): asking again would loop.
        if wanted.split_whitespace().all(|w| granted.contains(&w)) {
            self.links.step_ups.lock().remove(&key);
            return None;
        }
        let mut all: Vec<&str> = granted;
        all.extend(wanted.split_whitespace().filter(|w| !all.contains(w)).collect::<Vec<_>>());
        Some(all.join(" "))
    }

    /// `owner` may use this upstream: a usable link is kept for them (refreshed here when it
    /// expires) that holds what the upstream asked for. Otherwise the link to open.
    pub async fn ensure(&self, owner: &Principal) -> Result<(), GatewayError> {
        match self.header(owner).await {
            Ok(_) => match self.pending_step_up(owner).await {
                None => Ok(()),
                Some(scope) => {
                    let url = self.start(owner, Some(&scope)).await?;
                    Err(GatewayError::LinkRequired { upstream: self.upstream.clone(), url })
                }
            },
            Err(NoToken::NotLinked) if !Self::can_link(owner) => {
                Err(GatewayError::CannotLink { upstream: self.upstream.clone() })
            }
            Err(NoToken::NotLinked) => {
                let url = self.start(owner, None).await?;
                Err(GatewayError::LinkRequired { upstream: self.upstream.clone(), url })
            }
            Err(NoToken::Failed(e)) => {
                tracing::warn!(upstream = %self.upstream, subject = %owner.subject, error = %e, "linked account unusable");
                Err(GatewayError::Unavailable)
            }
        }
    }

    /// Start a flow for `owner` (or hand back the one already waiting): the page's URL.
    /// `step_up`: the scopes to ask for (a link again, with more).
    async fn start(&self, owner: &Principal, step_up: Option<&str>) -> Result<String, GatewayError> {
        let base = self.links.base().ok_or(GatewayError::Unavailable)?;
        let binding = owner.binding_key();
        let step_scope = step_up.map(|s| within(self.ceiling.as_deref(), s));
        {
            let mut flows = self.links.flows.lock();
            flows.retain(|_, f| f.created.elapsed() < FLOW_TTL);
            let mine = |f: &Flow| f.upstream == self.upstream && f.principal.binding_key() == binding;
            // A step-up replaces what is waiting and asks for less.
            if let Some(s) = &step_scope {
                flows.retain(|_, f| !(mine(f) && f.asked.as_ref() != Some(s)));
            }
            // A fresh one already waiting (under half its time gone) is handed out again.
            let waiting = flows.iter().find(|(_, f)| {
                mine(f)
                    && f.browser.is_none()
                    && f.created.elapsed() < FLOW_TTL / 2
                    && (step_scope.is_none() || f.asked == step_scope)
            });
            if let Some((id, _)) = waiting {
                return Ok(format!("{base}{PAGES}{id}"));
            }
        }
        let redirect_uri = self.links.callback_for(&self.upstream).ok_or(GatewayError::Unavailable)?;
        let unavailable = |e: String| {
            tracing::warn!(upstream = %self.upstream, error = %e, "cannot start a link");
            GatewayError::Unavailable
        };
        let found = self.discover(&redirect_uri).await.map_err(unavailable)?;
        // Within `oauth.scope`; when nothing asked for is, `oauth.scope` itself (no scope at
        // all would get the server's default, maybe more).
        let asked = link::scope_for(&found.d, &found.challenge).map(|s| within(self.ceiling.as_deref(), &s));
        let scope = match (step_scope.clone(), asked.filter(|s| !s.is_empty()), &self.ceiling) {
            (Some(s), ..) => Some(s),
            (None, Some(s), _) => Some(s),
            (None, None, Some(c)) => Some(c.join(" ")),
            (None, None, None) => None,
        };
        let (url, pending) =
            link::authorization_url(&found.d, &found.id, &redirect_uri, scope.as_deref()).map_err(unavailable)?;
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
                d: found.d,
                id: found.id,
                pending,
                authorization_url: url,
                asked: step_scope,
                http: self.http.clone(),
                ceiling: self.ceiling.clone(),
                browser: None,
                sign_in: None,
                verified: false,
                created: Instant::now(),
            },
        );
        Ok(format!("{base}{PAGES}{flow_id}"))
    }

    /// What the upstream's 401 and metadata say, and Warden's identity at its authorization
    /// server: reused for ten minutes; one discovery at a time; a failure remembered for 30 s;
    /// all of it within 20 s.
    async fn discover(&self, redirect_uri: &str) -> Result<Found, String> {
        let key = format!("{}\0{:?}\0{:?}", self.url, self.issuer, self.preregistered.as_ref().map(|p| &p.0));
        let cached = || self.links.found.lock().get(&key).filter(|f| f.at.elapsed() < DISCOVERY_TTL).cloned();
        let failed = || self.links.failed.lock().get(&key).is_some_and(|at| at.elapsed() < DISCOVERY_BACKOFF);
        if let Some(f) = cached() {
            return Ok(f);
        }
        if failed() {
            return Err("discovery failed moments ago; not tried again yet".into());
        }
        let gate = self.links.gate(&key);
        let r = {
            let _one = gate.lock().await;
            match (cached(), failed()) {
                (Some(f), _) => Ok(f),
                (None, true) => Err("discovery failed moments ago; not tried again yet".into()),
                (None, false) => {
                    match tokio::time::timeout(DISCOVERY_DEADLINE, self.discover_now(redirect_uri)).await {
                        Ok(Ok(f)) => {
                            let live = |f: &Found| f.at.elapsed() < DISCOVERY_TTL;
                            bounded_insert(&mut self.links.found.lock(), key.clone(), f.clone(), live);
                            Ok(f)
                        }
                        Ok(Err(e)) => Err(e),
                        Err(_) => Err("discovery took longer than 20 s".into()),
                    }
                }
            }
        };
        if r.is_err() {
            let live = |at: &Instant| at.elapsed() < DISCOVERY_BACKOFF;
            bounded_insert(&mut self.links.failed.lock(), key.clone(), Instant::now(), live);
        }
        self.links.release(&key, gate);
        r
    }

    async fn discover_now(&self, redirect_uri: &str) -> Result<Found, String> {
        // The upstream's own challenge, from a request without credentials.
        let probe = serde_json::json!({"jsonrpc": "2.0", "id": 0, "method": "ping"});
        let r = (self.http.request(reqwest::Method::POST, &self.url).await?)
            .header("accept", "application/json, text/event-stream")
            .json(&probe)
            .send()
            .await
            .map_err(|e| format!("upstream: {}", e.without_url()))?;
        let challenge = (r.headers().get_all(http::header::WWW_AUTHENTICATE).iter())
            .filter_map(|v| v.to_str().ok())
            .find_map(link::challenge)
            .unwrap_or_default();
        let d = link::discover(&self.http, &self.url, &challenge).await?;
        if self.issuer.as_ref().is_some_and(|i| *i != d.issuer) {
            return Err(format!("the upstream names {} as its authorization server, not oauth.issuer", d.issuer));
        }
        let id = self.identity(&d, redirect_uri).await?;
        Ok(Found { d: Arc::new(d), id, challenge, at: Instant::now() })
    }

    /// Warden's identity at `d`'s server for `redirect_uri`: reused for a day.
    async fn identity(&self, d: &Discovered, redirect_uri: &str) -> Result<Identity, String> {
        let key = format!("{}\0{redirect_uri}\0{:?}", d.issuer, self.preregistered.as_ref().map(|p| &p.0));
        if let Some((id, at)) = self.links.identities.lock().get(&key) {
            if at.elapsed() < IDENTITY_TTL {
                return Ok(id.clone());
            }
        }
        let cimd = self.links.cimd_url();
        let id = link::identify(&self.http, d, redirect_uri, self.preregistered.clone(), cimd.as_deref()).await?;
        let live = |(_, at): &(Identity, Instant)| at.elapsed() < IDENTITY_TTL;
        bounded_insert(&mut self.links.identities.lock(), key, (id.clone(), Instant::now()), live);
        Ok(id)
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
}
