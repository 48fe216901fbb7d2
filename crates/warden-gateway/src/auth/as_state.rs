//! The built-in authorization server's state: clients, consent requests in progress, codes,
//! refresh tokens, revoked grants and failed logins. Clients, refresh tokens (by SHA-256 only) and
//! revoked grants are written to a private file (0600, replaced atomically) after each change, so a
//! restart neither logs everyone out nor forgets a revocation; requests in progress and codes live
//! at most minutes and stay in memory.

use super::hex;
use serde::{Deserialize, Serialize};
use std::collections::{BTreeMap, HashMap, HashSet};
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

pub struct Pending {
    pub client_id: String,
    pub redirect_uri: String,
    pub scopes: Vec<String>,
    pub state: Option<String>,
    pub challenge: String,
    pub resource: String,
    pub csrf: String,
    pub created: Instant,
    /// The requesting address, counted as [`super::register::source_key`].
    pub source: std::net::IpAddr,
}

pub struct Code {
    pub client_id: String,
    pub redirect_uri: String,
    pub scopes: Vec<String>,
    pub challenge: String,
    pub resource: String,
    pub subject: String,
    pub created: Instant,
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
        let now = super::now_secs();
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

    /// Authorization requests in progress for `client_id`, and from `source` (as counted by
    /// [`super::register::source_key`]); expired ones are dropped first.
    pub fn pending_counts(&mut self, client_id: &str, source: std::net::IpAddr, ttl: Duration) -> (usize, usize) {
        self.pending.retain(|_, p| p.created.elapsed() < ttl);
        let key = super::register::source_key(source);
        self.pending.values().fold((0, 0), |(c, s), p| {
            (c + usize::from(p.client_id == client_id), s + usize::from(super::register::source_key(p.source) == key))
        })
    }

    /// The persistent part (a copy, to serialise and write without the lock). Revocations are
    /// kept while a token of their family lives.
    pub fn snapshot(&mut self) -> Persisted {
        let now = super::now_secs();
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

    /// True while `user` is locked out after `max` failures within [`LOCKOUT`].
    pub fn locked(&self, user: &str, max: u32) -> bool {
        self.failures.get(user).is_some_and(|(n, since)| *n >= max && since.elapsed() < LOCKOUT)
    }

    /// Count a failed login for `user`; true when this failure locks the name.
    pub fn failed_login(&mut self, user: &str, max: u32) -> bool {
        if self.failures.len() >= MAX_TRACKED_LOGINS && !self.failures.contains_key(user) {
            self.failures.retain(|_, (_, since)| since.elapsed() < LOCKOUT);
            if self.failures.len() >= MAX_TRACKED_LOGINS {
                // Still full (a flood of names): forget the tenth with the fewest failures, oldest
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
        e.0 == max
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
        for _ in 0..3 {
            assert!(!st.locked("alice", 3));
            st.failed_login("alice", 3);
        }
        assert!(st.locked("alice", 3));
        for i in 0..MAX_TRACKED_LOGINS + 500 {
            st.failed_login(&format!("name-{i}"), 3);
        }
        assert!(st.failures.len() <= MAX_TRACKED_LOGINS, "{}", st.failures.len());
        assert!(st.locked("alice", 3), "the name under attack is still locked");
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
    fn pending_requests_are_counted_per_client_and_per_address() {
        let mut st = Store::default();
        let p = |client: &str, source: &str| Pending {
            client_id: client.into(),
            redirect_uri: String::new(),
            scopes: vec![],
            state: None,
            challenge: String::new(),
            resource: String::new(),
            csrf: String::new(),
            created: Instant::now(),
            source: source.parse().unwrap(),
        };
        st.pending.insert("1".into(), p("a", "2001:db8::1"));
        st.pending.insert("2".into(), p("a", "2001:db8::2"));
        st.pending.insert("3".into(), p("b", "192.0.2.1"));
        assert_eq!(st.pending_counts("a", "2001:db8::99".parse().unwrap(), LOCKOUT), (2, 2));
        assert_eq!(st.pending_counts("b", "192.0.2.2".parse().unwrap(), LOCKOUT), (1, 0));
        assert_eq!(st.pending_counts("a", "192.0.2.1".parse().unwrap(), Duration::ZERO), (0, 0), "expired ones go");
    }
}
