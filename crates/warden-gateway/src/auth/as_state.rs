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
struct Persisted {
    clients: BTreeMap<String, Client>,
    refresh: BTreeMap<String, Refresh>,
    revoked_families: Vec<String>,
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
        Ok(Store {
            clients: p.clients.into_iter().collect(),
            refresh: p.refresh.into_iter().filter(|(_, r)| r.expires > now).collect(),
            revoked_families: p.revoked_families.into_iter().collect(),
            ..Store::default()
        })
    }

    /// The persistent part, serialised. Revocations are kept while a token of their family lives.
    pub fn snapshot(&mut self) -> Vec<u8> {
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
        let p = Persisted {
            clients: self.clients.iter().map(|(k, c)| (k.clone(), c.clone())).collect(),
            refresh: self.refresh.iter().map(|(k, r)| (k.clone(), r.clone())).collect(),
            revoked_families: revoked,
        };
        serde_json::to_vec_pretty(&p).expect("state serialises")
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
}
