//! The credential vault (issue 27): each user's own tokens for upstreams that act on the user's
//! account, kept encrypted at rest, one entry per upstream and principal: in a SQLite file on
//! the embedded default (`[vault] path`, `sqlite.rs`), or in PostgreSQL shared by replicas
//! (`[vault] url`, `pg.rs`). `warden credentials list|revoke|rotate` and the admin API read and
//! change it.
//!
//! Each token set is sealed with AES-256-GCM under the current `[vault] key`, with a fresh
//! random 96-bit nonce, and with the entry's upstream and principal as associated data: an
//! entry copied onto another user's row, or another upstream's, does not open. `previous_keys`
//! still open what they sealed; `rotate` seals every entry again under the current key.
//!
//! Defends against: a copy of the vault file (or a backup) yielding tokens (they are ciphertext;
//! the key lives elsewhere, as a secret reference); one user's token serving another (entries
//! are keyed by the principal's binding key — method, tenant, issuer, subject — and bound to it
//! by the associated data); a tampered entry (authenticated encryption: it does not open, and
//! the error says so); tokens in listings and logs (listings carry ids, owners and times only).
//! Does not defend against: someone holding both the file and the key; a process that can read
//! Warden's memory. The SQLite file is created readable by its owner only. Calls block (SQLite,
//! the synchronous PostgreSQL client), so the gateway makes them on the blocking pool.

mod pg;
mod sqlite;

use crate::config::VaultConfig;
use ring::aead::{Aad, LessSafeKey, Nonce, UnboundKey, AES_256_GCM, NONCE_LEN};
use ring::rand::{SecureRandom, SystemRandom};
use serde::{Deserialize, Serialize};
use std::path::Path;
use std::sync::Mutex;
use warden_policy::Principal;

/// One stored entry as the backends hand it over: id, upstream, binding key, key id, sealed.
pub(super) type Row = (String, String, String, String, Vec<u8>);

/// A new or replaced entry.
pub(super) struct Upsert<'a> {
    pub id: &'a str,
    pub upstream: &'a str,
    pub binding: &'a str,
    pub tenant: Option<&'a str>,
    pub subject: &'a str,
    pub now: u64,
    pub expires_at: Option<u64>,
    pub key_id: &'a str,
    pub sealed: &'a [u8],
}

/// Where entries are kept (`sqlite.rs`, `pg.rs`): the same table in both.
pub(super) trait Table: Send {
    /// The entry of `upstream` and `binding`: id, key id, sealed.
    fn find(&mut self, upstream: &str, binding: &str) -> Result<Option<(String, String, Vec<u8>)>, String>;
    /// Insert, or replace the entry of the same upstream and binding (keeping its id).
    fn upsert(&mut self, u: &Upsert) -> Result<(), String>;
    /// Entries (at most `limit`), newest first; only `binding`'s when given.
    fn list(&mut self, limit: usize, binding: Option<&str>) -> Result<Vec<Entry>, String>;
    fn delete(&mut self, id: &str) -> Result<bool, String>;
    fn delete_own(&mut self, upstream: &str, binding: &str) -> Result<bool, String>;
    /// Entries sealed under another key than `key_id`.
    fn not_under(&mut self, key_id: &str) -> Result<Vec<Row>, String>;
    /// Seal entry `id` anew, if it is still under `old_key`.
    fn reseal(&mut self, id: &str, old_key: &str, key_id: &str, sealed: &[u8]) -> Result<(), String>;
}

/// What is kept for one user and upstream: the tokens, sealed.
#[derive(Clone, Serialize, Deserialize, PartialEq)]
pub struct Secret {
    pub access_token: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub refresh_token: Option<String>,
    /// When the access token expires (Unix seconds), if known.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub expires_at: Option<u64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub scope: Option<String>,
    /// Where and as whom the tokens are refreshed (`mode = "user"`): kept with them, so that a
    /// refresh needs no discovery and survives a restart (a dynamic registration is not
    /// repeated).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub client: Option<Refresher>,
}

/// What refreshing a linked account's token needs: the token endpoint, the resource, and
/// Warden's client there (its secret, when it has one, sealed with the tokens).
#[derive(Clone, Serialize, Deserialize, PartialEq)]
pub struct Refresher {
    pub issuer: String,
    pub token_endpoint: String,
    pub resource: String,
    pub client_id: String,
    /// `none`, `client_secret_basic` or `client_secret_post`.
    pub auth_method: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub client_secret: Option<String>,
    /// When the tokens were obtained (Unix seconds): a short-lived token is refreshed at half its
    /// life, a long-lived one 30 s before it expires.
    #[serde(default)]
    pub obtained_at: u64,
}

impl std::fmt::Debug for Secret {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Secret(..)")
    }
}

/// One entry as listed: whose, for which upstream, when — never the tokens.
#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct Entry {
    pub id: String,
    pub upstream: String,
    pub tenant: Option<String>,
    pub subject: String,
    pub created: u64,
    pub updated: u64,
    pub expires_at: Option<u64>,
    /// Which key sealed it (a short digest of the key).
    pub key_id: String,
}

struct Key {
    id: String,
    key: LessSafeKey,
}

pub struct Vault {
    /// The current key first, then the previous ones.
    keys: Vec<Key>,
    db: Mutex<Box<dyn Table>>,
    /// Where it is (a path, or the PostgreSQL URL without its password), for messages.
    place: String,
}

fn key_of(raw: &[u8; 32]) -> Key {
    let id = crate::digest::hex(&crate::digest::sha256(raw))[..12].to_string();
    Key { id, key: LessSafeKey::new(UnboundKey::new(&AES_256_GCM, raw).expect("32-byte key")) }
}

/// What an entry is bound to: its upstream and owner (unique together). Not its id: two
/// replicas storing one user's first token at once pick different ids, and the row keeps one.
fn aad(upstream: &str, binding: &str) -> Vec<u8> {
    format!("warden-vault\0{upstream}\0{binding}").into_bytes()
}

/// Whom an entry belongs to: the SHA-256 (hex) of the principal's binding key (method, tenant,
/// issuer, subject), which holds separators a PostgreSQL text column cannot.
fn binding_of(p: &Principal) -> String {
    crate::digest::hex(&crate::digest::sha256(p.binding_key().as_bytes()))
}

fn now() -> u64 {
    crate::clock::now_secs()
}

impl Vault {
    /// Open (or create) the vault `cfg` names, relative paths from `base`.
    pub fn open(cfg: &VaultConfig, base: &Path) -> Result<Vault, String> {
        let parse = |at: &str, s: &crate::config::SecretRef| {
            crate::seal::Sealer::parse_key(&s.resolve().map_err(|e| format!("{at}: {e}"))?)
                .map_err(|e| format!("{at}: {e}"))
        };
        let mut keys = vec![key_of(&parse("vault.key", &cfg.key)?)];
        for (i, k) in cfg.previous_keys.iter().enumerate() {
            keys.push(key_of(&parse(&format!("vault.previous_keys[{i}]"), k)?));
        }
        if let Some(url) = &cfg.url {
            let password =
                cfg.password.as_ref().map(|p| p.resolve().map_err(|e| format!("vault.password: {e}"))).transpose()?;
            // On a thread of its own: the driver blocks on a runtime of its own, which it may
            // not start on one of the server's (Warden opens the vault at start, on one).
            let url = url.clone();
            let (table, place) =
                std::thread::spawn(move || pg::open(&url, password.as_deref())).join().map_err(|p| {
                    let why =
                        p.downcast_ref::<String>().cloned().or_else(|| p.downcast_ref::<&str>().map(|s| s.to_string()));
                    format!("vault: opening PostgreSQL failed: {}", why.unwrap_or_default())
                })??;
            return Ok(Vault { keys, db: Mutex::new(Box::new(table)), place });
        }
        let path = match &cfg.path {
            Some(p) if p.is_absolute() => p.clone(),
            Some(p) => base.join(p),
            None => base.join("warden-data/vault.sqlite"),
        };
        Vault::at(keys, &path)
    }

    fn at(keys: Vec<Key>, path: &Path) -> Result<Vault, String> {
        let table = sqlite::open(path)?;
        Ok(Vault { keys, db: Mutex::new(Box::new(table)), place: path.display().to_string() })
    }

    /// Where the entries are kept, for messages.
    pub fn place(&self) -> &str {
        &self.place
    }

    fn table(&self) -> Result<std::sync::MutexGuard<'_, Box<dyn Table>>, String> {
        self.db.lock().map_err(|_| "vault: lock poisoned".to_string())
    }

    fn seal(&self, upstream: &str, binding: &str, s: &Secret) -> Result<Vec<u8>, String> {
        let mut nonce = [0u8; NONCE_LEN];
        SystemRandom::new().fill(&mut nonce).map_err(|_| "vault: no randomness")?;
        let mut data = serde_json::to_vec(s).map_err(|e| e.to_string())?;
        let k = &self.keys[0];
        k.key
            .seal_in_place_append_tag(Nonce::assume_unique_for_key(nonce), Aad::from(aad(upstream, binding)), &mut data)
            .map_err(|_| "vault: sealing failed")?;
        let mut out = nonce.to_vec();
        out.extend(data);
        Ok(out)
    }

    fn open_sealed(
        &self,
        id: &str,
        upstream: &str,
        binding: &str,
        key_id: &str,
        sealed: &[u8],
    ) -> Result<Secret, String> {
        let k = self.keys.iter().find(|k| k.id == key_id).ok_or_else(|| {
            format!(
                "vault: entry {id} was sealed with key {key_id}, which is neither vault.key nor one of \
                 vault.previous_keys (check the config: add the key it was sealed with)"
            )
        })?;
        if sealed.len() < NONCE_LEN {
            return Err(format!("vault: entry {id} is damaged"));
        }
        let (nonce, ct) = sealed.split_at(NONCE_LEN);
        let nonce = Nonce::try_assume_unique_for_key(nonce).map_err(|_| format!("vault: entry {id} is damaged"))?;
        let mut ct = ct.to_vec();
        let plain = k
            .key
            .open_in_place(nonce, Aad::from(aad(upstream, binding)), &mut ct)
            .map_err(|_| format!("vault: entry {id} does not open (tampered, or moved to another row)"))?;
        serde_json::from_slice(plain).map_err(|_| format!("vault: entry {id} is damaged"))
    }

    /// Keep `s` for `p` at `upstream` (replacing what was kept); the entry's id.
    pub fn put(&self, upstream: &str, p: &Principal, s: &Secret) -> Result<String, String> {
        let binding = binding_of(p);
        let mut db = self.table()?;
        let id = match db.find(upstream, &binding)? {
            Some((id, _, _)) => id,
            None => crate::digest::random_hex(16).ok_or("vault: no randomness")?,
        };
        let sealed = self.seal(upstream, &binding, s)?;
        db.upsert(&Upsert {
            id: &id,
            upstream,
            binding: &binding,
            tenant: p.tenant.as_deref(),
            subject: &p.subject,
            now: now(),
            expires_at: s.expires_at,
            key_id: &self.keys[0].id,
            sealed: &sealed,
        })?;
        Ok(id)
    }

    /// What is kept for `p` at `upstream`.
    pub fn get(&self, upstream: &str, p: &Principal) -> Result<Option<Secret>, String> {
        let binding = binding_of(p);
        let row = self.table()?.find(upstream, &binding)?;
        row.map(|(id, key_id, sealed)| self.open_sealed(&id, upstream, &binding, &key_id, &sealed)).transpose()
    }

    /// Every entry (at most `limit`), newest first: owners and times, never tokens.
    pub fn list(&self, limit: usize) -> Result<Vec<Entry>, String> {
        self.table()?.list(limit, None)
    }

    /// `p`'s own entries (at most `limit`), newest first.
    pub fn list_own(&self, p: &Principal, limit: usize) -> Result<Vec<Entry>, String> {
        self.table()?.list(limit, Some(&binding_of(p)))
    }

    /// Forget entry `id`; whether there was one.
    pub fn revoke(&self, id: &str) -> Result<bool, String> {
        self.table()?.delete(id)
    }

    /// Forget what is kept for `p` at `upstream` (a user unlinking their own account).
    pub fn revoke_own(&self, upstream: &str, p: &Principal) -> Result<bool, String> {
        self.table()?.delete_own(upstream, &binding_of(p))
    }

    /// Seal every entry not under the current key again under it: how many were, and why each
    /// one that could not be was not (it does not open: revoke it).
    pub fn rotate(&self) -> Result<(usize, Vec<String>), String> {
        let mut db = self.table()?;
        let rows = db.not_under(&self.keys[0].id)?;
        let (mut done, mut failed) = (0, Vec::new());
        for (id, upstream, binding, key_id, sealed) in &rows {
            let s = match self.open_sealed(id, upstream, binding, key_id, sealed) {
                Ok(s) => s,
                Err(e) => {
                    failed.push(e);
                    continue;
                }
            };
            let again = self.seal(upstream, binding, &s)?;
            // Only if it is still what was read: a token stored meanwhile is not overwritten.
            db.reseal(id, key_id, &self.keys[0].id, &again)?;
            done += 1;
        }
        Ok((done, failed))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A fresh directory for one test.
    fn tempdir(name: &str) -> std::path::PathBuf {
        let d = std::env::temp_dir().join(format!("warden-vault-{name}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&d);
        std::fs::create_dir_all(&d).unwrap();
        d
    }

    fn vault(dir: &Path, keys: &[[u8; 32]]) -> Vault {
        Vault::at(keys.iter().map(key_of).collect(), &dir.join("vault.sqlite")).unwrap()
    }

    fn who(subject: &str, tenant: Option<&str>) -> Principal {
        let mut claims = serde_json::Map::new();
        claims.insert("iss".into(), "https://idp.example".into());
        Principal {
            subject: subject.into(),
            tenant: tenant.map(String::from),
            method: warden_policy::AuthMethod::Jwt,
            claims,
            ..Principal::local()
        }
    }

    fn secret(t: &str) -> Secret {
        Secret {
            access_token: t.into(),
            refresh_token: Some(format!("{t}-refresh")),
            expires_at: Some(9),
            scope: None,
            client: None,
        }
    }

    #[test]
    fn tokens_are_kept_encrypted_per_principal_and_tenant() {
        let dir = tempdir("kept");
        let v = vault(&dir, &[[7; 32]]);
        let (alice, alice_b, bob) = (who("alice", Some("a")), who("alice", Some("b")), who("bob", Some("a")));
        let id = v.put("github", &alice, &secret("gho_alice_SECRET")).unwrap();
        v.put("github", &bob, &secret("gho_bob_SECRET")).unwrap();
        assert_eq!(v.get("github", &alice).unwrap(), Some(secret("gho_alice_SECRET")));
        assert_eq!(v.get("github", &bob).unwrap(), Some(secret("gho_bob_SECRET")));
        assert_eq!(v.get("github", &alice_b).unwrap(), None, "another tenant's alice is another user");
        assert_eq!(v.get("slack", &alice).unwrap(), None);
        // Replacing keeps the id; the file holds no token in the clear.
        assert_eq!(v.put("github", &alice, &secret("gho_alice_NEW")).unwrap(), id);
        drop(v);
        let raw = std::fs::read(dir.join("vault.sqlite")).unwrap();
        let wal = std::fs::read(dir.join("vault.sqlite-wal")).unwrap_or_default();
        for bytes in [&raw, &wal] {
            assert!(!bytes.windows(6).any(|w| w == b"SECRET" || w == b"_NEW\0\0"), "plaintext in the vault file");
            assert!(!String::from_utf8_lossy(bytes).contains("gho_"), "plaintext in the vault file");
        }
        let v = vault(&dir, &[[7; 32]]);
        let listed = v.list(10).unwrap();
        assert_eq!(listed.len(), 2);
        assert!(!format!("{listed:?}").contains("gho_"));
        // Revoking one user's entry leaves the other's.
        assert!(v.revoke(&id).unwrap());
        assert_eq!(v.get("github", &alice).unwrap(), None);
        assert_eq!(v.get("github", &bob).unwrap(), Some(secret("gho_bob_SECRET")));
        assert!(v.revoke_own("github", &bob).unwrap());
        assert!(v.list(10).unwrap().is_empty());
    }

    #[test]
    fn a_moved_or_tampered_entry_does_not_open_and_keys_rotate() {
        let dir = tempdir("moved");
        let v = vault(&dir, &[[1; 32]]);
        let (alice, bob) = (who("alice", None), who("bob", None));
        v.put("gh", &alice, &secret("a")).unwrap();
        v.put("gh", &bob, &secret("b")).unwrap();
        // Alice's ciphertext copied onto Bob's row: it does not open as Bob's.
        {
            let db = rusqlite::Connection::open(dir.join("vault.sqlite")).unwrap();
            db.execute(
                "UPDATE credentials SET sealed = (SELECT sealed FROM credentials WHERE subject = 'alice') WHERE subject = 'bob'",
                [],
            )
            .unwrap();
        }
        let e = v.get("gh", &bob).unwrap_err();
        assert!(e.contains("does not open"), "{e}");
        drop(v);
        // A new key, the old one kept as previous: old entries still open; rotate reseals them.
        let v = vault(&dir, &[[2; 32], [1; 32]]);
        assert_eq!(v.get("gh", &alice).unwrap(), Some(secret("a")));
        let (done, failed) = v.rotate().unwrap();
        assert_eq!((done, failed), (1, vec![v.get("gh", &bob).unwrap_err()]), "a damaged entry is named, not resealed");
        v.revoke_own("gh", &bob).unwrap();
        assert_eq!(v.rotate().unwrap(), (0, vec![]));
        drop(v);
        let v = vault(&dir, &[[2; 32]]);
        assert_eq!(v.get("gh", &alice).unwrap(), Some(secret("a")), "opens under the new key alone");
        let v = vault(&dir, &[[3; 32]]);
        let e = v.get("gh", &alice).unwrap_err();
        assert!(e.contains("neither vault.key nor one of vault.previous_keys"), "{e}");
    }
}
