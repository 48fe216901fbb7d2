//! The built-in authorization server's state in one process (see [`super::as_store`] for the
//! shared one): clients, consent requests in progress, codes, refresh tokens, revoked grants and
//! failed logins. Clients, refresh tokens (by SHA-256 only) and revoked grants are written to a
//! private file (0600, replaced atomically) after each change, so a restart neither logs everyone
//! out nor forgets a revocation; requests in progress and codes live at most minutes and stay in
//! memory.

use super::hex;
use serde::{Deserialize, Serialize};
use std::collections::{BTreeMap, HashMap, HashSet};
use std::net::IpAddr;
use std::path::Path;
use std::time::{Duration, Instant};

/// Window and lock time for failed logins.
pub const LOCKOUT: Duration = Duration::from_secs(15 * 60);
const MAX_TRACKED_LOGINS: usize = 10_000;

#[derive(Clone, Serialize, Deserialize)]
pub struct Client {
    pub name: String,
    pub redirect_uris: Vec<String>,
    /// Hex SHA-256 of the secret for confidential clients.
    pub secret: Option<String>,
    /// When it registered (Unix seconds; 0 in state files written before this was kept: such a
    /// client counts as registered when the state was loaded).
    #[serde(default)]
    pub registered: u64,
    /// When it was last granted a token (Unix seconds); none yet: unused.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_used: Option<u64>,
}

impl Client {
    /// A public client (no secret), not registered.
    pub fn public() -> Client {
        Client { name: String::new(), redirect_uris: Vec::new(), secret: None, registered: 0, last_used: None }
    }
}

/// An authorization request waiting for the user's consent.
#[derive(Serialize, Deserialize)]
pub struct Pending {
    pub client_id: String,
    pub redirect_uri: String,
    pub scopes: Vec<String>,
    pub state: Option<String>,
    pub challenge: String,
    pub resource: String,
    pub csrf: String,
    /// Unix ms.
    pub created: u64,
    /// The requesting address.
    pub source: IpAddr,
}

#[derive(Clone, Serialize, Deserialize)]
pub struct Code {
    pub client_id: String,
    pub redirect_uri: String,
    pub scopes: Vec<String>,
    pub challenge: String,
    pub resource: String,
    pub subject: String,
    /// Unix ms.
    pub created: u64,
    pub used: bool,
    pub family: String,
}

#[derive(Clone, Serialize, Deserialize)]
pub struct Refresh {
    pub client_id: String,
    pub subject: String,
    pub scopes: Vec<String>,
    pub resource: String,
    pub expires: u64,
    pub family: String,
    pub used: bool,
}

#[derive(Default)]
pub struct Store {
    pub clients: HashMap<String, Client>,
    pub pending: HashMap<String, Pending>,
    pub codes: HashMap<[u8; 32], Code>,
    /// Keyed by the hex SHA-256 of the token.
    pub refresh: HashMap<String, Refresh>,
    pub revoked_families: HashSet<String>,
    failures: HashMap<String, (u32, Instant)>,
}

/// What survives a restart.
#[derive(Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Persisted {
    clients: BTreeMap<String, Client>,
    refresh: BTreeMap<String, Refresh>,
    revoked_families: Vec<String>,
}

impl Persisted {
    pub fn to_bytes(&self) -> Vec<u8> {
        serde_json::to_vec_pretty(self).expect("state serialises")
    }
}

use warden_policy::net::source_key;

/// The IPv6 /48 of `ip` (one site's allocation), or None for IPv4.
pub(super) fn block_key(ip: IpAddr) -> Option<IpAddr> {
    match ip.to_canonical() {
        IpAddr::V6(v6) => {
            let mut o = v6.octets();
            o[6..].fill(0);
            Some(IpAddr::from(o))
        }
        IpAddr::V4(_) => None,
    }
}

/// The key of a refresh token in the store.
pub fn refresh_key(token: &str) -> String {
    hex(&super::sha256(token.as_bytes()))
}

impl Store {
    /// The state saved at `path`, or an empty one when there is none yet. Expired refresh tokens
    /// are dropped.
    pub fn load(path: &Path) -> Result<Store, String> {
        let text = match std::fs::read_to_string(path) {
            Ok(t) => t,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Store::default()),
            Err(e) => return Err(format!("{}: {e}", path.display())),
        };
        let p: Persisted = serde_json::from_str(&text).map_err(|e| format!("{}: {e}", path.display()))?;
        let now = crate::clock::now_secs();
        let clients = p.clients.into_iter().map(|(k, mut c)| {
            if c.registered == 0 {
                c.registered = now;
            }
            (k, c)
        });
        Ok(Store {
            clients: clients.collect(),
            refresh: p.refresh.into_iter().filter(|(_, r)| r.expires > now).collect(),
            revoked_families: p.revoked_families.into_iter().collect(),
            ..Store::default()
        })
    }

    /// Forget clients that are of no more use: registered more than `unused_ttl` seconds ago and
    /// never granted a token, or last granted one more than `refresh_ttl` seconds ago (every
    /// refresh token they got has expired by then) and holding no live refresh token.
    pub fn prune_clients(&mut self, now: u64, unused_ttl: u64, refresh_ttl: u64) {
        let live: HashSet<&str> =
            self.refresh.values().filter(|r| r.expires > now).map(|r| r.client_id.as_str()).collect();
        let expired = |c: &Client| match c.last_used {
            None => now.saturating_sub(c.registered) > unused_ttl,
            Some(t) => now.saturating_sub(t) > refresh_ttl,
        };
        let gone: Vec<String> = self
            .clients
            .iter()
            .filter(|(id, c)| expired(c) && !live.contains(id.as_str()))
            .map(|(id, _)| id.clone())
            .collect();
        for id in gone {
            self.clients.remove(&id);
        }
    }

    /// Make room for one more authorization request from `source`: expired requests are
    /// dropped; past `per_source` from its address (IPv6: its /64) or `per_block` from its IPv6
    /// /48, that address's (or block's) oldest request is dropped for it — so a flood from one
    /// place only ever displaces its own requests, and no client can be locked out by someone
    /// else's. False when the whole table (`max`) is still full: fail closed.
    pub fn admit_pending(
        &mut self,
        source: IpAddr,
        ttl: Duration,
        per_source: usize,
        per_block: usize,
        max: usize,
    ) -> bool {
        let now = crate::clock::now_ms();
        self.pending.retain(|_, p| now.saturating_sub(p.created) < ttl.as_millis() as u64);
        let key = source_key(source);
        let block = block_key(source);
        for (limit, same) in [
            (per_source, &(|p: &Pending| source_key(p.source) == key) as &dyn Fn(&Pending) -> bool),
            (per_block, &|p: &Pending| block.is_some() && block_key(p.source) == block),
        ] {
            let mut mine: Vec<(u64, String)> =
                self.pending.iter().filter(|(_, p)| same(p)).map(|(k, p)| (p.created, k.clone())).collect();
            if mine.len() >= limit {
                mine.sort();
                let over = mine.len() + 1 - limit.max(1);
                for (_, k) in mine.into_iter().take(over) {
                    self.pending.remove(&k);
                }
            }
        }
        self.pending.len() < max
    }

    /// The persistent part (a copy, to serialise and write without the lock). Revocations are
    /// kept while a token of their family lives.
    pub fn snapshot(&mut self) -> Persisted {
        let now = crate::clock::now_secs();
        self.refresh.retain(|_, r| r.expires > now);
        let live: HashSet<&str> = self
            .refresh
            .values()
            .map(|r| r.family.as_str())
            .chain(self.codes.values().map(|c| c.family.as_str()))
            .collect();
        let revoked: Vec<String> =
            self.revoked_families.iter().filter(|f| live.contains(f.as_str())).cloned().collect();
        Persisted {
            clients: self.clients.iter().map(|(k, c)| (k.clone(), c.clone())).collect(),
            refresh: self.refresh.iter().map(|(k, r)| (k.clone(), r.clone())).collect(),
            revoked_families: revoked,
        }
    }

    /// Count one login attempt for `user`, before its password is checked: the number of
    /// attempts within [`LOCKOUT`] of the first (a successful login starts again at zero).
    /// Past `max_failed_logins` the name is locked: no attempt is checked until the window ends.
    pub fn attempt(&mut self, user: &str) -> u32 {
        if self.failures.len() >= MAX_TRACKED_LOGINS && !self.failures.contains_key(user) {
            self.failures.retain(|_, (_, since)| since.elapsed() < LOCKOUT);
            if self.failures.len() >= MAX_TRACKED_LOGINS {
                // Still full (a flood of names): forget the tenth with the fewest attempts, oldest
                // first, so the map stays bounded and the names under real attack stay counted.
                let mut by_weight: Vec<(u32, Instant, String)> =
                    self.failures.iter().map(|(k, (n, t))| (*n, *t, k.clone())).collect();
                by_weight.sort();
                for (_, _, k) in by_weight.into_iter().take(MAX_TRACKED_LOGINS / 10) {
                    self.failures.remove(&k);
                }
            }
        }
        let e = self.failures.entry(user.to_string()).or_insert((0, Instant::now()));
        if e.1.elapsed() >= LOCKOUT {
            *e = (0, Instant::now());
        }
        e.0 += 1;
        e.0
    }

    pub fn login_succeeded(&mut self, user: &str) {
        self.failures.remove(user);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A flood of failed logins under ever new names keeps the map bounded (the oldest are
    /// forgotten), and a name under attack stays counted.
    #[test]
    fn failed_logins_are_tracked_in_bounded_memory() {
        let mut st = Store::default();
        for i in 1..=4 {
            assert_eq!(st.attempt("alice"), i);
        }
        for i in 0..MAX_TRACKED_LOGINS + 500 {
            st.attempt(&format!("name-{i}"));
        }
        assert!(st.failures.len() <= MAX_TRACKED_LOGINS, "{}", st.failures.len());
        assert_eq!(st.attempt("alice"), 5, "the name under attack is still counted");
        st.login_succeeded("alice");
        assert_eq!(st.attempt("alice"), 1);
    }

    fn client(registered: u64, last_used: Option<u64>) -> Client {
        Client { name: "c".into(), redirect_uris: vec![], secret: None, registered, last_used }
    }

    /// Registered clients do not live forever: unused ones go after `unused_ttl`, used ones when
    /// their last grant is older than the refresh lifetime and no refresh token of theirs lives.
    #[test]
    fn clients_expire() {
        let mut st = Store::default();
        let now = 1_000_000;
        st.clients.insert("fresh".into(), client(now - 10, None));
        st.clients.insert("unused".into(), client(now - 200, None));
        st.clients.insert("recent".into(), client(now - 10_000, Some(now - 50)));
        st.clients.insert("stale".into(), client(now - 10_000, Some(now - 5_000)));
        st.clients.insert("stale-but-holding".into(), client(now - 10_000, Some(now - 5_000)));
        st.refresh.insert(
            "k".into(),
            Refresh {
                client_id: "stale-but-holding".into(),
                subject: "s".into(),
                scopes: vec![],
                resource: "r".into(),
                expires: now + 10,
                family: "f".into(),
                used: false,
            },
        );
        st.prune_clients(now, 100, 1_000);
        let mut left: Vec<&str> = st.clients.keys().map(String::as_str).collect();
        left.sort();
        assert_eq!(left, ["fresh", "recent", "stale-but-holding"]);
    }

    #[test]
    fn a_flood_of_authorization_requests_only_displaces_its_own() {
        let mut st = Store::default();
        let p = |client: &str, source: &str| Pending {
            client_id: client.into(),
            redirect_uri: String::new(),
            scopes: vec![],
            state: None,
            challenge: String::new(),
            resource: String::new(),
            csrf: String::new(),
            created: crate::clock::now_ms(),
            source: source.parse().unwrap(),
        };
        let put = |st: &mut Store, id: &str, client: &str, source: &str| {
            let ok = st.admit_pending(source.parse().unwrap(), LOCKOUT, 3, 5, 9);
            if ok {
                st.pending.insert(id.into(), p(client, source));
            }
            ok
        };
        assert!(put(&mut st, "victim", "popular", "192.0.2.1"));
        // A flood for the same client from one address displaces only its own requests.
        for i in 0..20 {
            assert!(put(&mut st, &format!("a{i}"), "popular", "198.51.100.1"));
        }
        assert!(st.pending.contains_key("victim"), "another address's request stays");
        assert_eq!(st.pending.len(), 4, "the victim and the flooder's newest three");
        // Rotating through one IPv6 /48 is bounded per /48.
        for i in 0..20 {
            assert!(put(&mut st, &format!("b{i}"), "popular", &format!("2001:db8:0:{i:x}::1")));
        }
        assert_eq!(st.pending.len(), 4 + 5);
        assert!(st.pending.contains_key("victim"));
        // The whole table is full (9): fail closed for a newcomer.
        assert!(!st.admit_pending("203.0.113.9".parse().unwrap(), LOCKOUT, 3, 5, 9));
        assert!(st.admit_pending("203.0.113.9".parse().unwrap(), Duration::ZERO, 3, 5, 9), "expired ones go");
    }
}
