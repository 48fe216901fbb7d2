//! API keys for service clients: `wdk_<id>_<secret>`, presented as `Authorization: Bearer …`.
//!
//! Defends against: a leaked config file revealing keys (only SHA-256 hashes are stored; keys
//! carry 256 random bits, so a fast hash is enough), timing attacks on the comparison (constant
//! time, and the same work for an unknown id), expired keys.
//! Does not defend against: a key stolen from the client (rotate it: remove the entry).

use super::{hex, sha256};
use crate::config::ApiKeyEntry;
use base64::Engine;
use std::collections::HashMap;
use std::time::SystemTime;
use subtle::ConstantTimeEq;
use warden_policy::{AuthMethod, Principal};

pub const PREFIX: &str = "wdk_";

struct Entry {
    hash: [u8; 32],
    expires: Option<SystemTime>,
    principal: Principal,
}

/// The configured keys, by id.
#[derive(Default)]
pub struct ApiKeys {
    by_id: HashMap<String, Entry>,
}

#[derive(Debug, PartialEq, Eq)]
pub enum KeyError {
    Unknown,
    Expired,
}

fn unhex(s: &str) -> Option<[u8; 32]> {
    let mut out = [0u8; 32];
    if s.len() != 64 {
        return None;
    }
    for (i, o) in out.iter_mut().enumerate() {
        *o = u8::from_str_radix(s.get(2 * i..2 * i + 2)?, 16).ok()?;
    }
    Some(out)
}

impl ApiKeys {
    /// From validated config entries.
    pub fn new(entries: &[ApiKeyEntry]) -> ApiKeys {
        let by_id = entries
            .iter()
            .filter_map(|e| {
                let hash = unhex(e.hash.strip_prefix("sha256:")?)?;
                let expires = e.expires.as_deref().and_then(|x| humantime::parse_rfc3339(x).ok());
                let principal = Principal {
                    subject: e.subject.clone(),
                    tenant: e.tenant.clone(),
                    client_id: Some(format!("apikey:{}", e.id)),
                    scopes: e.scopes.clone(),
                    roles: e.roles.clone(),
                    claims: Default::default(),
                    method: AuthMethod::ApiKey,
                    presented: Default::default(),
                };
                Some((e.id.clone(), Entry { hash, expires, principal }))
            })
            .collect();
        ApiKeys { by_id }
    }

    pub fn is_empty(&self) -> bool {
        self.by_id.is_empty()
    }

    /// The principal of `key`, if it is a configured, unexpired key.
    pub fn check(&self, key: &str, now: SystemTime) -> Result<Principal, KeyError> {
        let id = key.strip_prefix(PREFIX).and_then(|r| r.split_once('_')).map(|(id, _)| id).unwrap_or("");
        let presented = sha256(key.as_bytes());
        let (want, entry) = match self.by_id.get(id) {
            Some(e) => (e.hash, Some(e)),
            None => ([0u8; 32], None),
        };
        let equal: bool = presented.ct_eq(&want).into();
        match entry {
            Some(e) if equal => {
                if e.expires.is_some_and(|x| x <= now) {
                    Err(KeyError::Expired)
                } else {
                    Ok(e.principal.clone())
                }
            }
            _ => Err(KeyError::Unknown),
        }
    }
}

/// A new random key and its config entry (TOML). The key is shown once; only its hash is kept.
pub fn generate(subject: &str, scopes: &[String], tenant: Option<&str>, expires: Option<&str>) -> (String, String) {
    let id: String = hex(&rand::random::<[u8; 6]>());
    let secret = base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(rand::random::<[u8; 32]>());
    let key = format!("{PREFIX}{id}_{secret}");
    let mut entry = format!(
        "[[auth.api_key]]\nid = {id:?}\nhash = \"sha256:{}\"\nsubject = {subject:?}\nscopes = {scopes:?}\n",
        hex(&sha256(key.as_bytes()))
    );
    if let Some(t) = tenant {
        entry.push_str(&format!("tenant = {t:?}\n"));
    }
    if let Some(e) = expires {
        entry.push_str(&format!("expires = {e:?}\n"));
    }
    (key, entry)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    fn keys_from(entry_toml: &str) -> ApiKeys {
        #[derive(serde::Deserialize)]
        struct W {
            auth: A,
        }
        #[derive(serde::Deserialize)]
        struct A {
            api_key: Vec<ApiKeyEntry>,
        }
        let w: W = toml::from_str(entry_toml).unwrap();
        ApiKeys::new(&w.auth.api_key)
    }

    #[test]
    fn generated_key_round_trips_and_wrong_keys_fail() {
        let (key, entry) = generate("svc", &["mcp".into()], Some("acme"), None);
        let keys = keys_from(&entry);
        let p = keys.check(&key, SystemTime::now()).unwrap();
        assert_eq!((p.subject.as_str(), p.tenant.as_deref()), ("svc", Some("acme")));
        assert_eq!(p.scopes, vec!["mcp"]);
        let mut wrong = key.clone();
        wrong.pop();
        wrong.push(if key.ends_with('A') { 'B' } else { 'A' });
        assert_eq!(keys.check(&wrong, SystemTime::now()), Err(KeyError::Unknown));
        assert_eq!(keys.check("wdk_nope_x", SystemTime::now()), Err(KeyError::Unknown));
        assert_eq!(keys.check("", SystemTime::now()), Err(KeyError::Unknown));
        assert!(!entry.contains(&key[12..]), "the config entry must not contain the key");
    }

    #[test]
    fn expired_key_is_refused() {
        let (key, entry) = generate("svc", &[], None, Some("2026-01-01T00:00:00Z"));
        let keys = keys_from(&entry);
        let before = humantime::parse_rfc3339("2025-12-31T23:59:59Z").unwrap();
        assert!(keys.check(&key, before).is_ok());
        assert_eq!(keys.check(&key, before + Duration::from_secs(2)), Err(KeyError::Expired));
    }
}
