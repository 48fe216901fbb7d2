//! Definition pins shared by replicas (issue 23). With a shared `[store]`, every pin (trusted on
//! first use, or approved by an operator) and every changed definition waiting for an operator
//! is kept in two store maps, `pins` and `pin-changes`, that each replica follows ([`SYNC_EVERY`]):
//!
//! - A first pin is published create-only: when two replicas first see different definitions of
//!   one name, the one published first holds everywhere, and the other replica, adopting it,
//!   withholds its own as changed.
//! - An approval is published over the old pin; every replica adopts it and drops the change it
//!   held for it.
//! - A change detected on one replica waits on all: any replica's admin API lists and approves it.
//!
//! Only with `pinning = "tofu"`: the store wins over a replica's own pins (and its `pin_file`,
//! then only its local record). With `pinning = "file"` the operator's file is the truth, never
//! overridden; approvals there stay with the replica that made them. A replica reads the store's
//! pins before it serves (it does not start without them), and adopts at most as many pins per
//! upstream and kind as it may keep itself.
//!
//! Does not defend against: the window between a replica's first pin and its publication (up to
//! [`SYNC_EVERY`]) in which two replicas may serve different first definitions of one name (the
//! first published then holds, and the other replica withholds its own as changed); a store that
//! loses its data (each replica then publishes its own pins again, first come first kept: a
//! replica started after the loss may publish a changed definition first). While the store is
//! unreachable, each replica keeps the pins it has and pins new names for itself.

use super::{PendingChange, PendingKey, Pin, PinKind, Registry};
use crate::store::{Store, StoreError};
use std::collections::HashSet;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Duration;

pub const SYNC_EVERY: Duration = Duration::from_millis(500);
const PINS: &str = "pins";
const CHANGES: &str = "pin-changes";

/// A map field naming one definition: `[kind, server, name]` as JSON (unambiguous whatever the
/// name holds).
fn field(k: &PendingKey) -> String {
    serde_json::json!([k.1.as_str(), k.0, k.2]).to_string()
}

fn parse_field(f: &str) -> Option<PendingKey> {
    let [kind, server, name]: [String; 3] = serde_json::from_str(f).ok()?;
    Some((server, PinKind::parse(&kind)?, name))
}

/// What one look at the store found and what is to be written back.
#[derive(Default)]
struct Plan {
    publish_pins: Vec<(String, String)>,
    publish_changes: Vec<(String, String)>,
    stale_changes: Vec<String>,
}

impl Registry {
    /// Follow the pins of `store` (not the memory one), until the registry is dropped, after a
    /// first look at them: a replica that cannot see the store's pins does not start (as it does
    /// not start without its kill switches), so it never trusts a first definition the others
    /// have already pinned otherwise. Only with `pinning = "tofu"`: a pin file
    /// (`pinning = "file"`) is the operator's, and the store never overrides it.
    pub async fn share(self: &Arc<Self>, store: Arc<dyn Store>) -> Result<(), String> {
        if store.backend() == "memory" {
            return Ok(());
        }
        self.follow(store).await
    }

    /// [`Registry::share`], whatever the backend.
    async fn follow(self: &Arc<Self>, store: Arc<dyn Store>) -> Result<(), String> {
        if self.mode != crate::config::PinMode::Tofu {
            return Ok(());
        }
        if self.shared.set(store).is_err() {
            return Ok(());
        }
        self.dirty.store(true, Ordering::Release);
        self.sync().await.map_err(|e| format!("definition pins in the store: {e}"))?;
        crate::store::follow(
            Arc::downgrade(self),
            SYNC_EVERY,
            "definition pins: store unreachable; this replica keeps its own pins",
            |r: Arc<Registry>| Box::pin(async move { r.sync().await }),
        );
        Ok(())
    }

    /// Bring this replica's pins and waiting changes in line with the store's, and publish what
    /// it has that the store lacks. Cheap when nothing changed on either side (two reads). One
    /// at a time: an approval is taken off the list only once it is in the store.
    pub async fn sync(&self) -> Result<(), StoreError> {
        let Some(store) = self.shared.get() else { return Ok(()) };
        let _one = self.syncing.lock().await;
        // Approvals first: adopting the store's pins must not undo them.
        let approved: Vec<(PendingKey, Pin)> = self.approved.lock().clone();
        for (k, pin) in &approved {
            let f = field(k);
            store.map_put(PINS, &f, &serde_json::to_string(pin).expect("pins serialise"), false).await?;
            store.map_remove(CHANGES, &f).await?;
            self.approved.lock().retain(|(k2, p2)| !(k2 == k && p2.digest == pin.digest));
        }
        let versions = (store.map_version(PINS).await?, store.map_version(CHANGES).await?);
        let dirty = self.dirty.swap(false, Ordering::AcqRel);
        if !dirty && approved.is_empty() && *self.versions.lock() == versions {
            return Ok(());
        }
        let result = self.full_sync(store.as_ref()).await;
        if result.is_err() {
            self.dirty.store(true, Ordering::Release);
        }
        result
    }

    async fn full_sync(&self, store: &dyn Store) -> Result<(), StoreError> {
        let (vp, pins) = store.map_all(PINS).await?;
        let (vc, changes) = store.map_all(CHANGES).await?;
        let plan = self.adopt(pins, changes);
        let mut moved = false;
        for (f, v) in &plan.publish_pins {
            moved |= store.map_put(PINS, f, v, true).await?;
        }
        for (f, v) in &plan.publish_changes {
            moved |= store.map_put(CHANGES, f, v, true).await?;
        }
        for f in &plan.stale_changes {
            store.map_remove(CHANGES, f).await?;
            moved = true;
        }
        // What this replica wrote moved the versions: look again next time (a create-only
        // publication that lost is adopted then).
        *self.versions.lock() = if moved { (0, 0) } else { (vp, vc) };
        Ok(())
    }

    /// Take the store's pins over this replica's (but not over approvals not yet published),
    /// hold the store's waiting changes, drop the ones the pins now settle; say what the store
    /// lacks.
    fn adopt(&self, pins: Vec<(String, String)>, changes: Vec<(String, String)>) -> Plan {
        let mut plan = Plan::default();
        let mut local = self.pins.lock();
        let unpublished: HashSet<PendingKey> = self.approved.lock().iter().map(|(k, _)| k.clone()).collect();
        let mut pending = self.pending.lock();
        let mut in_store: HashSet<PendingKey> = HashSet::new();
        let mut rewritten = false;
        for (f, v) in pins {
            let (Some(k), Ok(pin)) = (parse_field(&f), serde_json::from_str::<Pin>(&v)) else {
                tracing::error!(field = %f, "definition pins: unreadable pin in the store; ignored");
                continue;
            };
            in_store.insert(k.clone());
            if unpublished.contains(&k) || local.get(k.1, &k.0, &k.2).is_some_and(|p| p.digest == pin.digest) {
                continue;
            }
            let names = local.table_mut(k.1).entry(k.0.clone()).or_default();
            if !names.contains_key(&k.2) && names.len() >= self.max_pins {
                continue; // as many pins as an upstream may keep: as for its own first pins
            }
            names.insert(k.2.clone(), pin.clone());
            if pending.get(&k).is_some_and(|c| c.seen.digest == pin.digest) {
                pending.remove(&k);
            } else if let Some(c) = pending.get_mut(&k) {
                c.pinned = pin;
            }
            rewritten = true;
        }
        for (kind, table) in PinKind::ALL.iter().map(|k| (*k, local.table(*k))) {
            for (server, names) in table {
                for (name, pin) in names {
                    let k = (server.clone(), kind, name.clone());
                    if !in_store.contains(&k) {
                        plan.publish_pins.push((field(&k), serde_json::to_string(pin).expect("pins serialise")));
                    }
                }
            }
        }
        let mut waiting: HashSet<PendingKey> = HashSet::new();
        for (f, v) in changes {
            let (Some(k), Ok(c)) = (parse_field(&f), serde_json::from_str::<PendingChange>(&v)) else {
                plan.stale_changes.push(f);
                continue;
            };
            let current = local.get(k.1, &k.0, &k.2).map(|p| p.digest.clone());
            if current.as_deref() == Some(c.seen.digest.as_str()) || unpublished.contains(&k) {
                plan.stale_changes.push(f); // settled by a pin
                continue;
            }
            waiting.insert(k.clone());
            if let std::collections::btree_map::Entry::Vacant(e) = pending.entry(k) {
                let (server, kind, name) = e.key();
                tracing::warn!(server = %server, kind = kind.as_str(), name = %name, "definition changed (seen by another replica); withheld until an operator approves it");
                e.insert(c);
            }
        }
        for (k, c) in pending.iter() {
            if !waiting.contains(k) {
                plan.publish_changes.push((field(k), serde_json::to_string(c).expect("changes serialise")));
            }
        }
        if rewritten {
            if let Some(w) = &self.writer {
                w.submit(local.clone());
            }
        }
        plan
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::content::Content;
    use crate::store::memory::MemoryStore;
    use serde_json::json;
    use std::path::Path;

    fn setup(content: &str) -> (Content, Arc<Registry>) {
        let cfg = crate::config::Config::parse(
            &format!("[[upstream]]\nname = \"a\"\ntransport = \"stdio\"\ncommand = \"x\"\n{content}"),
            "t",
        )
        .unwrap();
        let r = Registry::new(&cfg.content, Path::new("/"), crate::audit::Audit::disabled()).unwrap();
        (Content::new(&cfg).unwrap(), Arc::new(r))
    }

    /// A replica following `store`, after its first look at it.
    async fn replica(store: &Arc<dyn Store>) -> (Content, Arc<Registry>) {
        let (c, r) = setup("");
        r.follow(store.clone()).await.unwrap();
        (c, r)
    }

    /// Two replicas that first see different definitions of one tool agree on the first one
    /// published; the change waits on both; an approval on one settles it on the other.
    #[tokio::test]
    async fn replicas_share_first_pins_changes_and_approvals() {
        let store: Arc<dyn Store> = Arc::new(MemoryStore::new(None).unwrap());
        let ((ca, a), (cb, b)) = (replica(&store).await, replica(&store).await);
        let v1 = json!({"name": "t", "description": "Adds numbers"});
        let v2 = json!({"name": "t", "description": "Adds numbers and fractions."});
        assert!(a.vet(&ca, "a", "t", &v1).is_ok());
        a.sync().await.unwrap();
        // B first saw the other definition and pinned it for itself; the store's pin wins.
        assert!(b.vet(&cb, "a", "t", &v2).is_ok());
        b.sync().await.unwrap();
        assert!(matches!(b.vet(&cb, "a", "t", &v2), Err(super::super::Withheld::Changed { .. })), "withheld");
        assert!(b.vet(&cb, "a", "t", &v1).is_ok());
        b.sync().await.unwrap();
        // The change B saw waits on A too, where an operator approves it.
        a.sync().await.unwrap();
        let waiting = a.pending();
        assert_eq!(waiting.len(), 1, "{waiting:?}");
        assert!(a.approve("a", PinKind::Tool, "t", &waiting[0].seen.digest).is_ok());
        a.sync().await.unwrap();
        b.sync().await.unwrap();
        assert!(b.pending().is_empty(), "settled on B");
        assert!(b.vet(&cb, "a", "t", &v2).is_ok(), "the approved definition, on B");
        assert!(matches!(b.vet(&cb, "a", "t", &v1), Err(super::super::Withheld::Changed { .. })));
        let (_, fields) = store.map_all(PINS).await.unwrap();
        assert_eq!(fields.len(), 1);
        assert_eq!(parse_field(&fields[0].0), Some(("a".to_string(), PinKind::Tool, "t".to_string())));
        // Nothing new on either side: a look at two versions, no rewrite.
        let before = store.map_version(PINS).await.unwrap();
        a.sync().await.unwrap();
        b.sync().await.unwrap();
        assert_eq!(store.map_version(PINS).await.unwrap(), before);
    }

    /// Review finding: an approval must survive a sync that adopts the store's pins before the
    /// approval reached the store.
    #[tokio::test]
    async fn an_approval_survives_an_adopt_before_it_is_published() {
        let store: Arc<dyn Store> = Arc::new(MemoryStore::new(None).unwrap());
        let (ca, a) = replica(&store).await;
        let v1 = json!({"name": "t", "description": "Adds numbers"});
        let v2 = json!({"name": "t", "description": "Adds numbers and fractions."});
        assert!(a.vet(&ca, "a", "t", &v1).is_ok());
        a.sync().await.unwrap();
        assert!(a.vet(&ca, "a", "t", &v2).is_err());
        a.sync().await.unwrap();
        let d = a.pending()[0].seen.digest.clone();
        assert!(a.approve("a", PinKind::Tool, "t", &d).is_ok());
        // Another look at the store (which still has v1) before the approval is published.
        a.full_sync(store.as_ref()).await.unwrap();
        assert!(a.vet(&ca, "a", "t", &v2).is_ok(), "not reverted");
        a.sync().await.unwrap();
        a.full_sync(store.as_ref()).await.unwrap();
        assert!(a.vet(&ca, "a", "t", &v2).is_ok(), "published, and kept");
        assert!(a.approved.lock().is_empty());
    }

    /// Review finding: a replica that starts after the others pinned a definition never
    /// trusts another one first: it reads the store's pins before it serves.
    #[tokio::test]
    async fn a_new_replica_knows_the_pins_before_it_serves() {
        let store: Arc<dyn Store> = Arc::new(MemoryStore::new(None).unwrap());
        let (ca, a) = replica(&store).await;
        assert!(a.vet(&ca, "a", "t", &json!({"name": "t", "description": "Adds numbers"})).is_ok());
        a.sync().await.unwrap();
        let (cb, b) = replica(&store).await;
        let v2 = json!({"name": "t", "description": "Adds numbers and fractions."});
        assert!(matches!(b.vet(&cb, "a", "t", &v2), Err(super::super::Withheld::Changed { .. })));
    }

    /// Review finding: with `pinning = "file"` the operator's file is the truth: the store's
    /// pins never override it.
    #[tokio::test]
    async fn a_pin_file_is_never_overridden_by_the_store() {
        let store: Arc<dyn Store> = Arc::new(MemoryStore::new(None).unwrap());
        let (ca, a) = replica(&store).await;
        let bad = json!({"name": "t", "description": "Adds numbers and fractions."});
        assert!(a.vet(&ca, "a", "t", &bad).is_ok());
        a.sync().await.unwrap();
        let dir = std::env::temp_dir().join(format!("warden-pins-file-shared-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let f = dir.join("pins.json");
        let good = json!({"name": "t", "description": "Adds numbers"});
        let mut file = super::super::PinFile { version: 1, ..Default::default() };
        file.pin_server("a", std::slice::from_ref(&good));
        file.save(&f, None).unwrap();
        let (c, r) = setup(&format!("[content]\npinning = \"file\"\npin_file = {:?}", f.display().to_string()));
        r.follow(store.clone()).await.unwrap();
        assert!(r.shared.get().is_none(), "not shared");
        assert!(r.vet(&c, "a", "t", &good).is_ok());
        assert!(r.vet(&c, "a", "t", &bad).is_err());
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
