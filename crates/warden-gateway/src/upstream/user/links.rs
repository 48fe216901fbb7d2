//! What every user-mode upstream shares (`Links`): the vault, Warden's public origin, the flows
//! on their way (`Flow`, with the sign-in of whoever opened one), and what discovery found.

use super::super::link::{self, ClientAuth, Discovered, Identity, Outbound, Pending};
use crate::error::GatewayError;
use crate::vault::{Refresher, Secret, Vault};
use parking_lot::Mutex;
use std::collections::HashMap;
use std::sync::Arc;
use std::time::{Duration, Instant};
use warden_policy::Principal;

/// Flows waiting for their callback, in all and per user.
pub const MAX_FLOWS: usize = 1000;
pub const MAX_FLOWS_PER_USER: usize = 4;
/// How long a flow waits for the user.
pub const FLOW_TTL: Duration = Duration::from_secs(600);
/// Upstream callbacks are under this path, one per upstream (`callback/{upstream}`: an answer
/// for one upstream's flow cannot be taken for another's, RFC 9700 §4.4.2).
pub const CALLBACKS: &str = "/oauth/upstream/callback/";
/// Where the sign-in of whoever opened a link comes back.
pub const SIGNED_IN: &str = "/oauth/upstream/signed-in";
/// Warden's Client ID Metadata Document.
pub const CLIENT_DOCUMENT: &str = "/oauth/upstream/client";
/// The flows' pages are under this path.
pub const PAGES: &str = "/oauth/upstream/";
/// Most entries of each cache.
const MAX_CACHED: usize = 256;

/// The sign-in of whoever opened a link, at the Warden user's own issuer, on its way
/// (`link_pages/sign_in.rs`).
pub struct SignIn {
    pub d: Arc<Discovered>,
    pub id: Identity,
    pub pending: Pending,
}

/// One link on its way: whose, where, and what the answer is checked against.
pub struct Flow {
    pub upstream: String,
    pub principal: Principal,
    pub d: Arc<Discovered>,
    pub id: Identity,
    pub pending: Pending,
    pub authorization_url: String,
    /// A step-up's scopes (a link again, asking for more), if it is one.
    pub asked: Option<String>,
    /// How the upstream's authorization server is reached (`outbound.rs`, guarded).
    pub http: Outbound,
    /// The most the link may be granted (`oauth.scope`), if limited.
    pub ceiling: Option<Vec<String>>,
    /// Set by the confirmation: the secret of the cookie the answers must bring.
    pub browser: Option<String>,
    /// The sign-in that shows who opened the link, while it is on its way.
    pub sign_in: Option<SignIn>,
    /// Whoever opened the link signed in as the user it is for.
    pub verified: bool,
    pub created: Instant,
}

/// Warden's client at an issuer its users sign in at: the issuer's metadata, the identity, when.
type SignInClient = (Arc<Discovered>, Identity, Instant);

/// One refresh (or discovery) at a time: the gate its waiters queue at.
pub(super) type Gate = Arc<tokio::sync::Mutex<()>>;

/// What discovery found for one upstream (and config): reused for ten minutes.
#[derive(Clone)]
pub(super) struct Found {
    pub d: Arc<Discovered>,
    pub id: Identity,
    pub challenge: link::Challenge,
    pub at: Instant,
}

/// Every user-mode upstream's links: the vault, the flows, Warden's public origin.
pub struct Links {
    vault: Option<Arc<Vault>>,
    /// Warden's public origin (`https://host`), where the pages are: from `[auth] resource`, or
    /// the listener's address.
    base: Mutex<Option<String>>,
    /// The user-mode upstreams, for the redirect URIs Warden's client metadata lists.
    upstreams: Mutex<Vec<String>>,
    /// By flow id (the page's path).
    pub(super) flows: Mutex<HashMap<String, Flow>>,
    /// By upstream URL and config: what discovery found; and when it last failed.
    pub(super) found: Mutex<HashMap<String, Found>>,
    pub(super) failed: Mutex<HashMap<String, Instant>>,
    /// Warden's identity at each upstream's authorization server (by issuer, redirect URI and
    /// configured client): reused for a day, so that Warden does not register itself again
    /// and again.
    pub(super) identities: Mutex<HashMap<String, (Identity, Instant)>>,
    /// Warden's client at each issuer its users sign in at, with that issuer's metadata.
    sign_in_clients: Mutex<HashMap<String, SignInClient>>,
    /// Scopes an upstream asked for beyond a user's link (403 `insufficient_scope`), by
    /// upstream and binding key: the user's next request asks them to link again with them.
    pub(super) step_ups: Mutex<HashMap<String, String>>,
    /// One discovery, and one refresh, at a time per key.
    pub(super) gates: Mutex<HashMap<String, Gate>>,
    /// Counts the links made here: waiters for a link wake at each.
    linked: tokio::sync::watch::Sender<u64>,
}

pub(super) fn random() -> Result<String, GatewayError> {
    crate::digest::random_hex(24).ok_or(GatewayError::Unavailable)
}

/// Insert into a bounded cache: when full, the expired go, then everything (rebuilt on use).
pub(super) fn bounded_insert<V>(map: &mut HashMap<String, V>, k: String, v: V, live: impl Fn(&V) -> bool) {
    if map.len() >= MAX_CACHED {
        map.retain(|_, v| live(v));
        if map.len() >= MAX_CACHED {
            map.clear();
        }
    }
    map.insert(k, v);
}

impl Links {
    pub fn new(vault: Option<Arc<Vault>>) -> Result<Arc<Links>, String> {
        Ok(Arc::new(Links {
            vault,
            base: Mutex::new(None),
            upstreams: Mutex::new(Vec::new()),
            flows: Mutex::new(HashMap::new()),
            found: Mutex::new(HashMap::new()),
            failed: Mutex::new(HashMap::new()),
            identities: Mutex::new(HashMap::new()),
            step_ups: Mutex::new(HashMap::new()),
            sign_in_clients: Mutex::new(HashMap::new()),
            gates: Mutex::new(HashMap::new()),
            linked: tokio::sync::watch::Sender::new(0),
        }))
    }

    /// Changes each time a link is made here.
    pub(super) fn linked(&self) -> tokio::sync::watch::Receiver<u64> {
        self.linked.subscribe()
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

    /// The user-mode upstreams of the current config.
    pub fn set_upstreams(&self, names: Vec<String>) {
        *self.upstreams.lock() = names;
    }

    /// Where `upstream`'s authorization server sends the user back.
    pub fn callback_for(&self, upstream: &str) -> Option<String> {
        let name: String = url::form_urlencoded::byte_serialize(upstream.as_bytes()).collect();
        self.base().map(|b| format!("{b}{CALLBACKS}{name}"))
    }

    /// Warden's Client ID Metadata Document (its URL is the client id), when Warden's pages are
    /// on `https` (an authorization server fetches it; it takes no other).
    pub fn cimd_url(&self) -> Option<String> {
        self.base().filter(|b| b.starts_with("https://")).map(|b| format!("{b}{CLIENT_DOCUMENT}"))
    }

    /// The document itself (served by `link_pages/`).
    pub fn cimd(&self) -> Option<serde_json::Value> {
        let (base, id) = (self.base()?, self.cimd_url()?);
        let mut redirects: Vec<String> = self.upstreams.lock().iter().filter_map(|u| self.callback_for(u)).collect();
        redirects.push(format!("{base}{SIGNED_IN}"));
        Some(serde_json::json!({
            "client_id": id,
            "client_name": "Warden",
            "redirect_uris": redirects,
            "grant_types": ["authorization_code", "refresh_token"],
            "response_types": ["code"],
            "token_endpoint_auth_method": "none",
            "application_type": "web",
        }))
    }

    /// Run a vault call on the blocking pool (SQLite and the PostgreSQL client block).
    pub(super) async fn blocking<T: Send + 'static>(
        &self,
        f: impl FnOnce(&Vault) -> Result<T, String> + Send + 'static,
    ) -> Result<T, GatewayError> {
        let v = self.vault.clone().ok_or(GatewayError::Unavailable)?;
        match tokio::task::spawn_blocking(move || f(&v)).await {
            Ok(Ok(t)) => Ok(t),
            Ok(Err(e)) => {
                tracing::error!(error = %e, "credential vault unavailable");
                Err(GatewayError::Unavailable)
            }
            Err(_) => Err(GatewayError::Unavailable),
        }
    }

    /// The gate of `key` (one discovery or refresh at a time).
    pub(super) fn gate(&self, key: &str) -> Gate {
        let mut gates = self.gates.lock();
        if gates.len() >= 10 * MAX_CACHED {
            gates.retain(|_, g| Arc::strong_count(g) > 1);
        }
        gates.entry(key.to_string()).or_default().clone()
    }

    /// Done with `gate`: dropped from the map unless someone else waits at it.
    pub(super) fn release(&self, key: &str, gate: Gate) {
        let mut gates = self.gates.lock();
        // Held by the map and by this caller only: no one waits.
        if gates.get(key).is_some_and(|g| Arc::ptr_eq(g, &gate)) && Arc::strong_count(&gate) == 2 {
            gates.remove(key);
        }
    }

    /// Whether a flow of `upstream` for `binding` is still waiting for its user.
    pub fn waiting(&self, upstream: &str, binding: &str) -> bool {
        (self.flows.lock().values())
            .any(|f| f.upstream == upstream && f.principal.binding_key() == binding && f.created.elapsed() < FLOW_TTL)
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
    pub fn sign_in_client(&self, issuer: &str) -> Option<(Arc<Discovered>, Identity)> {
        let c = self.sign_in_clients.lock();
        c.get(issuer)
            .filter(|(_, _, at)| at.elapsed() < Duration::from_secs(3600))
            .map(|(d, i, _)| (d.clone(), i.clone()))
    }

    pub fn keep_sign_in_client(&self, issuer: &str, d: Arc<Discovered>, id: Identity) {
        let live = |(_, _, at): &SignInClient| at.elapsed() < Duration::from_secs(3600);
        bounded_insert(&mut self.sign_in_clients.lock(), issuer.to_string(), (d, id, Instant::now()), live);
    }

    /// Take the flow of `upstream` whose authorization request had `state` (single use): its
    /// id and the flow.
    pub fn take_by_state(&self, upstream: &str, state: &str) -> Option<(String, Flow)> {
        let mut flows = self.flows.lock();
        let id =
            (flows.iter()).find(|(_, f)| f.pending.state == state && f.upstream == upstream).map(|(k, _)| k.clone())?;
        let f = flows.remove(&id).filter(|f| f.created.elapsed() < FLOW_TTL)?;
        Some((id, f))
    }

    /// Look at flow `id` (for its page), if it is still waiting.
    pub fn with_flow<T>(&self, id: &str, f: impl FnOnce(&mut Flow) -> T) -> Option<T> {
        let mut flows = self.flows.lock();
        let flow = flows.get_mut(id).filter(|f| f.created.elapsed() < FLOW_TTL)?;
        Some(f(flow))
    }

    /// Redeem the code of a completed flow and keep the tokens for its user. Refused when the
    /// server granted more than `oauth.scope` allows.
    pub async fn complete(&self, flow: Flow, code: &str) -> Result<(), String> {
        let t = link::token(
            &flow.http,
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
        if let (Some(ceiling), Some(granted)) = (&flow.ceiling, &t.scope) {
            let beyond: Vec<&str> = (granted.split_whitespace())
                .filter(|g| *g != "offline_access" && !ceiling.iter().any(|c| c == g))
                .collect();
            if !beyond.is_empty() {
                return Err(format!("the server granted scopes beyond oauth.scope: {}", beyond.join(" ")));
            }
        }
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
        self.step_ups.lock().remove(&format!("{}\0{}", flow.upstream, flow.principal.binding_key()));
        self.linked.send_modify(|n| *n = n.wrapping_add(1));
        tracing::info!(upstream = %flow.upstream, subject = %flow.principal.subject, "account linked");
        Ok(())
    }
}

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

pub(super) fn secret_from(t: link::Tokens, mut client: Refresher) -> Secret {
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_client_metadata_document_is_offered_on_https_only() {
        let links = Links::new(None).unwrap();
        links.set_upstreams(vec!["github".into(), "a b".into()]);
        assert!(links.cimd().is_none(), "no base yet");
        links.set_base("http://127.0.0.1:8080".into());
        assert!(links.cimd_url().is_none() && links.cimd().is_none());
        links.set_base("https://mcp.example.com/".into());
        let doc = links.cimd().unwrap();
        assert_eq!(doc["client_id"], "https://mcp.example.com/oauth/upstream/client");
        assert_eq!(
            doc["redirect_uris"],
            serde_json::json!([
                "https://mcp.example.com/oauth/upstream/callback/github",
                "https://mcp.example.com/oauth/upstream/callback/a+b",
                "https://mcp.example.com/oauth/upstream/signed-in"
            ])
        );
        assert_eq!(doc["token_endpoint_auth_method"], "none");
    }

    #[tokio::test]
    async fn a_gate_stays_while_someone_waits_at_it() {
        let links = Links::new(None).unwrap();
        let first = links.gate("k");
        let waiter = links.gate("k");
        assert!(Arc::ptr_eq(&first, &waiter));
        links.release("k", first);
        // The waiter still holds it: a newcomer queues at the same gate.
        assert!(Arc::ptr_eq(&links.gate("k"), &waiter));
        links.release("k", waiter);
        assert!(links.gates.lock().is_empty());
    }
}
