//! Where the built-in authorization server keeps its state, behind the few operations its
//! endpoints need, in the order of a login (register, authorize, consent, code, refresh):
//!
//! - [`AsStore::Local`] (the default, and with `[store] backend = "memory"`): this process's
//!   memory ([`as_state::Store`]); clients, refresh tokens (hashed) and revocations are saved to
//!   the state file before the answer.
//! - [`AsStore::Shared`] (`[store] backend = "redis"`): records in the shared store
//!   ([`super::as_shared`]), so that replicas behind a load balancer act as one server — a client
//!   registered on one, its consent page shown by another, the form posted to a third, the code
//!   and each refresh redeemed anywhere.
//!
//! Both hold the same guarantees: a code and a refresh token are redeemed once (the second
//! redemption revokes the whole grant family, on every replica), revocations outlive every token of
//! their family, a locked login name is locked everywhere. A store that cannot answer is
//! [`Unavailable`]: the endpoint answers 503 and hands out nothing.

use super::as_shared::Shared;
use super::as_state::{self, Client, Code, Pending, Refresh, Store};
use super::builtin::{write_private, CODE_TTL};
use super::register::{Registrations, MAX_CLIENTS};
use crate::clock::{now_ms, now_secs};
use crate::config::BuiltinAs;
use parking_lot::Mutex;
use std::net::IpAddr;
use std::path::PathBuf;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

/// Consent requests wait at most this long.
pub const PENDING_TTL: Duration = Duration::from_secs(600);
const MAX_PENDING: usize = 10_000;
/// Authorization requests in progress at once from one address (IPv6: /64) and one IPv6 /48;
/// past them the address's own oldest request makes way (shared: it waits).
pub const MAX_PENDING_PER_SOURCE: usize = 50;
pub const MAX_PENDING_PER_BLOCK: usize = 200;

/// The state could not be read or written (logged where it happened).
#[derive(Debug)]
pub struct Unavailable;

/// Why a registration was refused.
pub enum Refused {
    /// A registration limit (429).
    Limited(&'static str),
    /// The client table is full, or the state is unavailable (503).
    Unavailable(&'static str),
}

/// What issuing the next refresh token found.
#[derive(Debug, PartialEq, Eq)]
pub enum Rotated {
    Issued,
    /// The token it replaces was redeemed before: a reuse (its family is to be revoked).
    Reused,
    /// The grant family was revoked.
    Revoked,
}

/// A code or refresh token presented at the token endpoint.
pub enum Redeemed<T> {
    /// Never issued, issued to another client, or forgotten.
    Unknown,
    Expired,
    /// Redeemed before: the grant family to revoke.
    Again(String),
    /// Live (a code: redeemed now, by this caller; a refresh token: only looked at).
    First(T),
}

pub enum AsStore {
    Local(Box<Local>),
    Shared(Shared),
}

/// One process's state, saved to the state file.
pub struct Local {
    store: Mutex<Store>,
    registrations: Mutex<Registrations>,
    /// The state file; the generation of the last change, and a lock that orders writes and
    /// holds the generation last written.
    path: Option<PathBuf>,
    changes: AtomicU64,
    written: Arc<tokio::sync::Mutex<u64>>,
    cfg: BuiltinAs,
}

impl Local {
    pub fn new(cfg: &BuiltinAs, store: Store, path: Option<PathBuf>) -> Local {
        Local {
            store: Mutex::new(store),
            registrations: Mutex::new(Registrations::default()),
            path,
            changes: AtomicU64::new(0),
            written: Arc::new(tokio::sync::Mutex::new(0)),
            cfg: cfg.clone(),
        }
    }

    /// Write the persistent state after a change, off the async workers (the copy is taken under
    /// the lock; serialising and writing happen on the blocking pool, without it). Writes are
    /// ordered, and one that a later write already covered is skipped, so a burst of changes
    /// costs a few writes, not one each. The write owns the order lock until it is done, so a
    /// request dropped meanwhile (its client went away) cannot let a newer snapshot be overtaken
    /// by an older one. An error when the state could not be saved: the change is in effect in
    /// memory, and the next successful write carries it, but the caller must not promise
    /// durability (a rotated refresh token would come back after a restart).
    async fn persist(&self) -> Result<(), Unavailable> {
        let Some(path) = self.path.clone() else { return Ok(()) };
        let mine = self.changes.fetch_add(1, Ordering::AcqRel) + 1;
        let mut written = self.written.clone().lock_owned().await;
        if *written >= mine {
            return Ok(());
        }
        let (snapshot, upto) = {
            let mut st = self.store.lock();
            st.prune_clients(now_secs(), self.cfg.unused_client_ttl_secs, self.cfg.refresh_token_ttl_secs);
            (st.snapshot(), self.changes.load(Ordering::Acquire))
        };
        let wrote = tokio::task::spawn_blocking(move || {
            if let Some(d) = path.parent() {
                let _ = std::fs::create_dir_all(d);
            }
            let r = write_private(&path, &snapshot.to_bytes());
            if r.is_ok() {
                *written = upto;
            }
            r
        })
        .await;
        let e = match wrote {
            Ok(Ok(())) => return Ok(()),
            Ok(Err(e)) => e,
            Err(e) => e.to_string(),
        };
        tracing::error!(error = %e, "cannot save the authorization server's state");
        Err(Unavailable)
    }
}

impl AsStore {
    /// A registered client.
    pub async fn client(&self, id: &str) -> Result<Option<Client>, Unavailable> {
        match self {
            AsStore::Local(l) => Ok(l.store.lock().clients.get(id).cloned()),
            AsStore::Shared(s) => s.client(id).await,
        }
    }

    /// Register `c` as `id` for a request from `ip`, within the registration limits.
    pub async fn register(&self, id: &str, c: Client, ip: IpAddr) -> Result<(), Refused> {
        let l = match self {
            AsStore::Local(l) => l,
            AsStore::Shared(s) => return s.register(id, c, ip).await,
        };
        {
            let mut st = l.store.lock();
            if st.clients.len() >= MAX_CLIENTS {
                let before = st.clients.len();
                st.prune_clients(now_secs(), l.cfg.unused_client_ttl_secs, l.cfg.refresh_token_ttl_secs);
                tracing::info!(
                    forgotten = before - st.clients.len(),
                    "built-in authorization server: expired clients forgotten"
                );
            }
            if st.clients.len() >= MAX_CLIENTS {
                return Err(Refused::Unavailable("too many clients"));
            }
            // Counted only when it can be served.
            let admitted =
                l.registrations.lock().admit(ip, l.cfg.registrations_per_hour, l.cfg.registrations_total_per_hour);
            admitted.map_err(Refused::Limited)?;
            st.clients.insert(id.to_string(), c);
        }
        if l.persist().await.is_err() {
            l.store.lock().clients.remove(id);
            return Err(Refused::Unavailable("the registration could not be saved"));
        }
        Ok(())
    }

    /// Keep an authorization request until the user decides; false when too many are in
    /// progress (from its source, or in all).
    pub async fn start_pending(&self, id: &str, p: Pending) -> Result<bool, Unavailable> {
        let l = match self {
            AsStore::Local(l) => l,
            AsStore::Shared(s) => return s.start_pending(id, &p).await,
        };
        let mut st = l.store.lock();
        if !st.admit_pending(p.source, PENDING_TTL, MAX_PENDING_PER_SOURCE, MAX_PENDING_PER_BLOCK, MAX_PENDING) {
            return Ok(false);
        }
        st.pending.insert(id.to_string(), p);
        Ok(true)
    }

    /// The request `id`, removed (once, for one caller) when it is live and `ok` accepts it; a
    /// request `ok` refuses stays.
    pub async fn take_pending(&self, id: &str, ok: impl Fn(&Pending) -> bool) -> Result<Option<Pending>, Unavailable> {
        let l = match self {
            AsStore::Local(l) => l,
            AsStore::Shared(s) => return s.take_pending(id, ok).await,
        };
        let mut st = l.store.lock();
        let live = |p: &Pending| now_ms().saturating_sub(p.created) < PENDING_TTL.as_millis() as u64;
        if !st.pending.get(id).is_some_and(|p| live(p) && ok(p)) {
            return Ok(None);
        }
        Ok(st.pending.remove(id))
    }

    /// Count a login attempt for `user` before its password is checked (so that attempts in
    /// flight on every replica count): the attempts within the lockout window.
    pub async fn attempt_login(&self, user: &str) -> Result<u32, Unavailable> {
        match self {
            AsStore::Local(l) => Ok(l.store.lock().attempt(user)),
            AsStore::Shared(s) => s.attempt_login(user).await,
        }
    }

    pub async fn login_succeeded(&self, user: &str) -> Result<(), Unavailable> {
        match self {
            AsStore::Local(l) => {
                l.store.lock().login_succeeded(user);
                Ok(())
            }
            AsStore::Shared(s) => s.login_succeeded(user).await,
        }
    }

    /// Keep a code issued (by its SHA-256).
    pub async fn put_code(&self, key: &[u8; 32], c: Code) -> Result<(), Unavailable> {
        match self {
            AsStore::Local(l) => {
                let mut st = l.store.lock();
                let now = now_ms();
                let keep = CODE_TTL.as_millis() as u64 * 10;
                st.codes.retain(|_, c| now.saturating_sub(c.created) < keep);
                st.codes.insert(*key, c);
                Ok(())
            }
            AsStore::Shared(s) => s.put_code(key, &c).await,
        }
    }

    /// Redeem a code: the first redemption gets it, any later one its grant family.
    pub async fn use_code(&self, key: &[u8; 32]) -> Result<Redeemed<Code>, Unavailable> {
        let l = match self {
            AsStore::Local(l) => l,
            AsStore::Shared(s) => return s.use_code(key).await,
        };
        let mut st = l.store.lock();
        let Some(c) = st.codes.get_mut(key) else { return Ok(Redeemed::Unknown) };
        if c.used {
            return Ok(Redeemed::Again(c.family.clone()));
        }
        c.used = true;
        Ok(code_age(c))
    }

    /// The refresh token `key` of `client`, if it lives: looked at, not redeemed (a token of
    /// another client is unknown).
    pub async fn refresh(&self, key: &str, client: &str) -> Result<Redeemed<Refresh>, Unavailable> {
        let l = match self {
            AsStore::Local(l) => l,
            AsStore::Shared(s) => return s.refresh(key, client).await,
        };
        let st = l.store.lock();
        Ok(match st.refresh.get(key).filter(|r| r.client_id == client) {
            None => Redeemed::Unknown,
            Some(r) if r.expires <= now_secs() => Redeemed::Expired,
            Some(r) => Redeemed::First(r.clone()),
        })
    }

    /// Issue the refresh token `key` (`next`), in one step with redeeming `presented` (the key of
    /// the refresh token it replaces, when it does) and checking that the grant family was not
    /// revoked; the client then lives as long as the new token. Saved before it is handed out.
    pub async fn rotate(&self, presented: Option<&str>, key: &str, next: Refresh) -> Result<Rotated, Unavailable> {
        let l = match self {
            AsStore::Local(l) => l,
            AsStore::Shared(s) => return s.rotate(presented, key, &next).await,
        };
        {
            let mut st = l.store.lock();
            if let Some(p) = presented {
                let Some(r) = st.refresh.get_mut(p) else { return Ok(Rotated::Reused) };
                if r.used {
                    return Ok(Rotated::Reused);
                }
                r.used = true;
            }
            if st.revoked_families.contains(&next.family) {
                return Ok(Rotated::Revoked);
            }
            let now = now_secs();
            st.refresh.retain(|_, r| r.expires > now);
            if let Some(c) = st.clients.get_mut(&next.client_id) {
                c.last_used = Some(now);
            }
            st.refresh.insert(key.to_string(), next);
        }
        l.persist().await.map(|()| Rotated::Issued)
    }

    /// Revoke every token of a grant family (a replayed code or reused refresh token) whose
    /// presented token lived until `expires` (unix seconds).
    pub async fn revoke_family(&self, family: &str, expires: u64) -> Result<(), Unavailable> {
        match self {
            AsStore::Local(l) => {
                l.store.lock().revoked_families.insert(family.to_string());
                // Revoked in memory at once; when it cannot be saved, the next write carries it.
                let _ = l.persist().await;
                Ok(())
            }
            AsStore::Shared(s) => s.revoke_family(family, expires).await,
        }
    }
}

/// A code just marked used: expired, or good for this redemption.
pub(super) fn code_age(c: &Code) -> Redeemed<Code> {
    if now_ms().saturating_sub(c.created) > CODE_TTL.as_millis() as u64 {
        return Redeemed::Expired;
    }
    Redeemed::First(c.clone())
}

/// The state for `cfg`: shared when `store` is (not memory), else this process's, loaded from
/// `path`.
pub fn open(cfg: &BuiltinAs, path: PathBuf, store: Option<Arc<dyn crate::store::Store>>) -> Result<AsStore, String> {
    match store.filter(|s| s.backend() != "memory") {
        Some(s) => Ok(AsStore::Shared(Shared::new(s, cfg))),
        None => Ok(AsStore::Local(Box::new(Local::new(cfg, as_state::Store::load(&path)?, Some(path))))),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::memory::MemoryStore;

    fn both() -> [AsStore; 2] {
        let cfg: BuiltinAs = toml::from_str("").unwrap();
        let shared = Arc::new(MemoryStore::new(None).unwrap());
        [AsStore::Local(Box::new(Local::new(&cfg, Store::default(), None))), AsStore::Shared(Shared::new(shared, &cfg))]
    }

    fn refresh(client: &str, family: &str, expires: u64) -> Refresh {
        Refresh {
            client_id: client.into(),
            subject: "alice".into(),
            scopes: vec!["mcp".into()],
            resource: "r".into(),
            expires,
            family: family.into(),
            used: false,
        }
    }

    fn code(created: u64) -> Code {
        Code {
            client_id: "c".into(),
            redirect_uri: "u".into(),
            scopes: vec![],
            challenge: "x".into(),
            resource: "r".into(),
            subject: "alice".into(),
            created,
            used: false,
            family: "f-code".into(),
        }
    }

    /// The two backends keep the same promises: single use, reuse detection, a refused consent
    /// form leaves the request, a token presented by another client is not burned, lockout.
    #[tokio::test]
    async fn local_and_shared_state_keep_the_same_promises() {
        for st in both() {
            let c = Client {
                name: "n".into(),
                redirect_uris: vec![],
                secret: None,
                registered: now_secs(),
                last_used: None,
            };
            st.register("c", c, "192.0.2.1".parse().unwrap()).await.map_err(|_| "register").unwrap();
            assert!(st.client("c").await.unwrap().is_some());
            assert!(st.client("other").await.unwrap().is_none());

            let p = Pending {
                client_id: "c".into(),
                redirect_uri: "u".into(),
                scopes: vec![],
                state: None,
                challenge: "x".into(),
                resource: "r".into(),
                csrf: "good".into(),
                created: now_ms(),
                source: "192.0.2.1".parse().unwrap(),
            };
            assert!(st.start_pending("req", p).await.unwrap());
            assert!(st.take_pending("req", |p| p.csrf == "bad").await.unwrap().is_none());
            assert!(st.take_pending("req", |p| p.csrf == "good").await.unwrap().is_some(), "a refused form left it");
            assert!(st.take_pending("req", |_| true).await.unwrap().is_none(), "taken once");

            st.put_code(&[1; 32], code(now_ms())).await.unwrap();
            assert!(matches!(st.use_code(&[1; 32]).await.unwrap(), Redeemed::First(_)));
            assert!(matches!(st.use_code(&[1; 32]).await.unwrap(), Redeemed::Again(f) if f == "f-code"));
            assert!(matches!(st.use_code(&[2; 32]).await.unwrap(), Redeemed::Unknown));
            st.put_code(&[3; 32], code(now_ms() - 61_000)).await.unwrap();
            assert!(matches!(st.use_code(&[3; 32]).await.unwrap(), Redeemed::Expired));

            let later = now_secs() + 60;
            assert_eq!(st.rotate(None, "k", refresh("c", "fam", later)).await.unwrap(), Rotated::Issued);
            assert!(matches!(st.refresh("k", "mallory").await.unwrap(), Redeemed::Unknown));
            assert!(matches!(st.refresh("k", "c").await.unwrap(), Redeemed::First(_)), "looked at, not redeemed");
            assert_eq!(st.rotate(Some("k"), "k2", refresh("c", "fam", later)).await.unwrap(), Rotated::Issued);
            assert_eq!(st.rotate(Some("k"), "k3", refresh("c", "fam", later)).await.unwrap(), Rotated::Reused);
            assert!(matches!(st.refresh("k3", "c").await.unwrap(), Redeemed::Unknown), "nothing issued on a reuse");
            if let AsStore::Local(l) = &st {
                assert!(l.store.lock().clients["c"].last_used.is_some(), "the client was used");
            }
            st.revoke_family("fam", later).await.unwrap();
            assert_eq!(st.rotate(Some("k2"), "k4", refresh("c", "fam", later)).await.unwrap(), Rotated::Revoked);
            assert_eq!(st.rotate(Some("k2"), "k5", refresh("c", "fam", later)).await.unwrap(), Rotated::Reused);

            for i in 1..=4 {
                assert_eq!(st.attempt_login("alice").await.unwrap(), i);
            }
            st.login_succeeded("alice").await.unwrap();
            assert_eq!(st.attempt_login("alice").await.unwrap(), 1, "a login starts the count again");
        }
    }

    /// Shared: registrations and authorization requests are limited across replicas.
    #[tokio::test]
    async fn shared_state_limits_registrations_and_requests() {
        let cfg: BuiltinAs = toml::from_str("registrations_per_hour = 2").unwrap();
        let store: Arc<dyn crate::store::Store> = Arc::new(MemoryStore::new(None).unwrap());
        let (a, b) = (Shared::new(store.clone(), &cfg), Shared::new(store, &cfg));
        let c = || Client { name: "n".into(), redirect_uris: vec![], secret: None, registered: 0, last_used: None };
        let ip: IpAddr = "192.0.2.1".parse().unwrap();
        assert!(a.register("1", c(), ip).await.is_ok());
        assert!(b.register("2", c(), ip).await.is_ok());
        assert!(matches!(a.register("3", c(), ip).await, Err(Refused::Limited(_))), "two per hour, on either replica");
        assert!(b.register("3", c(), "192.0.2.2".parse().unwrap()).await.is_ok(), "another address");
        let p = |src: &str| Pending {
            client_id: "1".into(),
            redirect_uri: "u".into(),
            scopes: vec![],
            state: None,
            challenge: "x".into(),
            resource: "r".into(),
            csrf: "c".into(),
            created: now_ms(),
            source: src.parse().unwrap(),
        };
        for i in 0..MAX_PENDING_PER_SOURCE {
            let on = if i % 2 == 0 { &a } else { &b };
            assert!(on.start_pending(&format!("r{i}"), &p("198.51.100.1")).await.unwrap());
        }
        assert!(!a.start_pending("one more", &p("198.51.100.1")).await.unwrap(), "per source, across replicas");
        assert!(b.start_pending("elsewhere", &p("198.51.100.2")).await.unwrap(), "another source is not held up");
    }

    /// Review finding: single use holds on a real Redis with many replicas redeeming at once
    /// (separate connections, a multi-threaded runtime): one code exchange and one rotation win.
    #[tokio::test(flavor = "multi_thread", worker_threads = 4)]
    async fn redemptions_race_on_redis_and_one_wins() {
        let port = {
            let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
            l.local_addr().unwrap().port()
        };
        let Ok(mut redis) = std::process::Command::new("redis-server")
            .args(["--port", &port.to_string(), "--save", "", "--appendonly", "no"])
            .stdout(std::process::Stdio::null())
            .spawn()
        else {
            panic!("redis-server is needed (scripts/setup.sh installs it)");
        };
        let deadline = std::time::Instant::now() + Duration::from_secs(10);
        while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
            assert!(std::time::Instant::now() < deadline, "redis-server did not start");
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        let cfg: BuiltinAs = toml::from_str("").unwrap();
        let url = format!("redis://127.0.0.1:{port}");
        let replicas: Vec<Arc<AsStore>> = (0..8)
            .map(|_| {
                let s: Arc<dyn crate::store::Store> =
                    Arc::new(crate::store::redis::RedisStore::new(&url, "race", Duration::from_secs(2), None).unwrap());
                Arc::new(AsStore::Shared(Shared::new(s, &cfg)))
            })
            .collect();
        let later = now_secs() + 60;
        for round in 0..10u8 {
            replicas[0].put_code(&[round; 32], code(now_ms())).await.unwrap();
            let presented = format!("r{round}");
            replicas[0].rotate(None, &presented, refresh("c", "fam", later)).await.unwrap();
            let mut tasks = vec![];
            for (i, r) in replicas.iter().enumerate() {
                for j in 0..4 {
                    let (r, presented) = (r.clone(), presented.clone());
                    tasks.push(tokio::spawn(async move {
                        let code = matches!(r.use_code(&[round; 32]).await.unwrap(), Redeemed::First(_));
                        let next = format!("{presented}-{i}-{j}");
                        let rotated = r.rotate(Some(&presented), &next, refresh("c", "fam", later)).await.unwrap();
                        (u32::from(code), u32::from(rotated == Rotated::Issued))
                    }));
                }
            }
            let mut won = (0, 0);
            for t in tasks {
                let (c, r) = t.await.unwrap();
                won = (won.0 + c, won.1 + r);
            }
            assert_eq!(won, (1, 1), "round {round}: one code exchange and one rotation");
        }
        let _ = redis.kill();
        let _ = redis.wait();
    }
}
