//! Kill switches: an operator turns off a whole upstream or one of its tools at runtime. A killed
//! target disappears from listings and its calls are refused from the next call on; with
//! `cancel_in_flight` the calls already running are cancelled too (the upstream gets
//! `notifications/cancelled`). Sessions are told `notifications/tools/list_changed`.
//!
//! The switches live in the [`Store`](crate::store::Store): a private file with the memory
//! backend, Redis with the Redis backend. Each process keeps a copy for the hot path (one atomic
//! load when nothing is off) and, with a shared store, re-reads it when its version changes,
//! polled every [`SYNC_EVERY`]: a flip on one replica is in effect on all within a second. While
//! the store is out, the last copy stays in effect. Every flip is logged with who did it and why.
//!
//! A store that lost its data (Redis `FLUSHALL`, a failover to an empty replica: issue 20
//! finding 8) would revive every switch on every replica at the next poll. It is recognised by
//! the store's epoch (a token set when absent) changing, or its version going backwards; then
//! each replica keeps its copy in effect, writes every switch it holds back to the store, logs
//! an error and records an audit event (`kill_switch`, detail `store_reset`). A switch revived
//! on one replica just before the loss may come back off (re-asserted by a replica that had not
//! seen the revival yet): the safe side.

use crate::store::{kill_key, Store, StoreError};
use parking_lot::RwLock;
use std::collections::BTreeMap;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

/// How often a replica checks a shared store for flips made elsewhere.
pub const SYNC_EVERY: Duration = Duration::from_millis(400);

pub use crate::store::Kill;

pub struct KillSwitches {
    map: RwLock<BTreeMap<String, Kill>>,
    any: AtomicBool,
    version: AtomicU64,
    /// The store's epoch as last seen (see the module comment).
    epoch: parking_lot::Mutex<String>,
    store: Arc<dyn Store>,
    changed: tokio::sync::watch::Sender<u64>,
    audit: std::sync::OnceLock<Arc<crate::audit::Audit>>,
}

/// A fresh epoch token to claim a store with.
fn new_epoch() -> String {
    format!("{:032x}", rand::random::<u128>())
}

impl KillSwitches {
    /// The switches in `store` now.
    pub async fn load(store: Arc<dyn Store>) -> Result<Arc<KillSwitches>, String> {
        let (_, epoch) = store.kills_version(&new_epoch()).await.map_err(|e| format!("kill switches: {e}"))?;
        let (version, list) = store.kills().await.map_err(|e| format!("kill switches: {e}"))?;
        for k in &list {
            tracing::warn!(server = %k.server, tool = ?k.tool, reason = %k.reason, by = %k.by, "kill switch active");
        }
        let k = Arc::new(KillSwitches {
            any: AtomicBool::new(!list.is_empty()),
            map: RwLock::new(list.into_iter().map(|k| (kill_key(&k.server, k.tool.as_deref()), k)).collect()),
            version: AtomicU64::new(version),
            epoch: parking_lot::Mutex::new(epoch),
            store,
            changed: tokio::sync::watch::channel(0).0,
            audit: std::sync::OnceLock::new(),
        });
        Ok(k)
    }

    /// Where a store reset is recorded.
    pub fn set_audit(&self, audit: Arc<crate::audit::Audit>) {
        let _ = self.audit.set(audit);
    }

    /// With a shared store, follow flips made by other replicas (until `self` is dropped).
    pub fn follow(self: &Arc<Self>) {
        if self.store.backend() == "memory" {
            return;
        }
        crate::store::follow(
            Arc::downgrade(self),
            SYNC_EVERY,
            "kill switches: store unreachable; last known switches stay in effect",
            |k: Arc<KillSwitches>| Box::pin(async move { k.sync().await }),
        );
    }

    /// Re-read the store if its version moved; write the switches held here back if it lost
    /// them.
    async fn sync(&self) -> Result<(), StoreError> {
        // Read before the await: a local flip meanwhile raises it, never looks like a reset.
        let ours = self.version.load(Ordering::Acquire);
        let (v, epoch) = self.store.kills_version(&new_epoch()).await?;
        if epoch != *self.epoch.lock() || v < ours {
            return self.reassert(epoch, v, ours, None).await;
        }
        if v == ours {
            return Ok(());
        }
        let (v, list) = self.store.kills().await?;
        self.replace(v, list);
        Ok(())
    }

    /// The store lost its switches: keep this copy in effect, write it back, say so.
    async fn reassert(&self, epoch: String, seen: u64, ours: u64, revived: Option<&str>) -> Result<(), StoreError> {
        let held: Vec<Kill> =
            self.map.read().iter().filter(|(k, _)| Some(k.as_str()) != revived).map(|(_, v)| v.clone()).collect();
        tracing::error!(
            version = seen,
            known_version = ours,
            switches = held.len(),
            "kill switches: the store lost its state (data loss, FLUSHALL or failover?); the switches this replica holds stay in effect and are written back"
        );
        for k in &held {
            self.store.put_kill(k).await?;
        }
        if let Some(a) = self.audit.get() {
            let mut e = warden_audit::Event::new("kill_switch", "error");
            e.decision = Some("denied".into());
            e.detail = Some("store_reset".into());
            e.count = Some(held.len() as u64);
            e.args = Some(serde_json::json!({"version_seen": seen, "version_known": ours,
                "reasserted": held.iter().map(|k| kill_key(&k.server, k.tool.as_deref()).replace('\0', ":")).collect::<Vec<_>>()}));
            a.emit(e);
        }
        *self.epoch.lock() = epoch;
        // What the store holds now: ours, and whatever other replicas wrote back.
        let (v, mut list) = self.store.kills().await?;
        for k in held {
            if !list.iter().any(|l| l.server == k.server && l.tool == k.tool) {
                list.push(k);
            }
        }
        self.replace(v, list);
        Ok(())
    }

    fn replace(&self, version: u64, list: Vec<Kill>) {
        {
            let mut m = self.map.write();
            let next: BTreeMap<String, Kill> =
                list.into_iter().map(|k| (kill_key(&k.server, k.tool.as_deref()), k)).collect();
            if *m == next {
                self.version.store(version, Ordering::Release);
                return;
            }
            *m = next;
            self.any.store(!m.is_empty(), Ordering::Release);
            self.version.store(version, Ordering::Release);
        }
        self.changed.send_modify(|n| *n += 1);
    }

    /// Is this upstream, or this tool of it, switched off?
    pub fn killed(&self, server: &str, tool: Option<&str>) -> bool {
        self.find(server, tool).is_some()
    }

    fn find(&self, server: &str, tool: Option<&str>) -> Option<Kill> {
        if !self.any.load(Ordering::Acquire) {
            return None;
        }
        let m = self.map.read();
        m.get(&kill_key(server, None)).or_else(|| tool.and_then(|t| m.get(&kill_key(server, Some(t))))).cloned()
    }

    /// Counts changes seen by this process; listings cached before a change are stale.
    pub fn generation(&self) -> u64 {
        *self.changed.borrow()
    }

    /// Resolves at the next change (for telling sessions their listings changed).
    pub fn subscribe(&self) -> tokio::sync::watch::Receiver<u64> {
        self.changed.subscribe()
    }

    pub fn list(&self) -> Vec<Kill> {
        self.map.read().values().cloned().collect()
    }

    /// Switch off. Written to the store first; on an error the switch may still be in effect
    /// (the memory backend could not save its file) — the copy here follows the store either way.
    pub async fn kill(&self, k: Kill) -> Result<(), StoreError> {
        let put = self.store.put_kill(&k).await;
        tracing::warn!(server = %k.server, tool = ?k.tool, reason = %k.reason, by = %k.by,
            cancel_in_flight = k.cancel_in_flight, stored = put.is_ok(), "kill switch flipped: off");
        let reloaded = self.reload(None).await;
        put.and(reloaded)
    }

    /// Switch back on; false when it was not off.
    pub async fn revive(&self, server: &str, tool: Option<&str>, by: &str) -> Result<bool, StoreError> {
        let was = self.store.remove_kill(server, tool).await?;
        if was {
            tracing::warn!(server, tool = ?tool, by, "kill switch flipped: revived");
        }
        self.reload(Some(&kill_key(server, tool))).await?;
        Ok(was)
    }

    /// Read the store back after a local flip; if it lost its state meanwhile, write back what
    /// is held here first (but `revived`, the switch just turned back on).
    async fn reload(&self, revived: Option<&str>) -> Result<(), StoreError> {
        let ours = self.version.load(Ordering::Acquire);
        let (v, epoch) = self.store.kills_version(&new_epoch()).await?;
        if epoch != *self.epoch.lock() {
            return self.reassert(epoch, v, ours, revived).await;
        }
        let (v, list) = self.store.kills().await?;
        self.replace(v, list);
        Ok(())
    }

    /// Resolves when a switch covering this call is flipped with `cancel_in_flight`.
    pub async fn cancelled(&self, server: &str, tool: Option<&str>) {
        self.until(server, tool, |k| k.cancel_in_flight).await
    }

    /// Resolves once any switch covering `server` (or its `tool`) is off: a call that has not
    /// reached the upstream yet (held for approval) ends then, whatever `cancel_in_flight` says.
    pub async fn switched_off(&self, server: &str, tool: Option<&str>) {
        self.until(server, tool, |_| true).await
    }

    async fn until(&self, server: &str, tool: Option<&str>, applies: impl Fn(&Kill) -> bool) {
        let mut rx = self.changed.subscribe();
        loop {
            if self.find(server, tool).is_some_and(|k| applies(&k)) {
                return;
            }
            if rx.changed().await.is_err() {
                std::future::pending::<()>().await;
            }
        }
    }
}
