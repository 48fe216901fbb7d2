//! The in-process backend: limits in a sharded map, kill switches in memory and in a private
//! file (so a restart keeps them), approvals in memory (a restart forgets them; pending calls
//! were lost with the process anyway).

use super::records::{Map, Records};
use super::Kill;
use super::{
    kill_key, until_midnight, Approval, ApprovalState, Check, Decision, Limit, RecordKey, Redeem, Redeemed, Refusal,
    Store, StoreError,
};
use crate::clock::now_secs;
use futures::future::{ready, BoxFuture};
use futures::FutureExt;
use parking_lot::Mutex;
use std::collections::{BTreeMap, HashMap};
use std::path::PathBuf;
use std::time::{Duration, Instant};
use warden_policy::limits::{MemoryLimiter, Rate};

/// At most this many approvals are kept; the oldest decided go first, and when all are pending new
/// requests are refused.
use super::MAX_APPROVALS;

pub struct MemoryStore {
    limiter: MemoryLimiter,
    quotas: Mutex<HashMap<String, (u64, u64)>>,
    epoch: Instant,
    kills: Mutex<(u64, BTreeMap<String, Kill>)>,
    kill_file: Option<PathBuf>,
    approvals: Mutex<Approvals>,
    revoked: Mutex<Revoked>,
    records: Mutex<Records>,
    maps: Mutex<HashMap<&'static str, Map>>,
}

/// Most ended sessions remembered; past it, the soonest to expire is forgotten and every
/// session expiring no later is taken as ended (fail closed). One caller ending 100,000 sessions
/// within `session_max_age_secs` thus ends other callers' sessions that this replica does not
/// hold early (they get 404 and start a new one): a nuisance bounded by the initialize limit, not
/// a way in.
const MAX_REVOKED: usize = 100_000;

#[derive(Default)]
struct Revoked {
    /// nonce → the session id's expiry.
    by_nonce: HashMap<String, u64>,
    /// Sessions expiring at or before this are taken as ended.
    floor: u64,
}

impl Revoked {
    fn insert(&mut self, nonce: &str, expires: u64, now: u64) {
        if self.by_nonce.len() >= MAX_REVOKED {
            self.by_nonce.retain(|_, e| *e > now);
        }
        if self.by_nonce.len() >= MAX_REVOKED {
            if let Some((k, e)) = self.by_nonce.iter().min_by_key(|(_, e)| **e).map(|(k, e)| (k.clone(), *e)) {
                self.by_nonce.remove(&k);
                self.floor = self.floor.max(e);
            }
        }
        self.by_nonce.insert(nonce.to_string(), expires);
    }

    fn contains(&self, nonce: &str, expires: u64) -> bool {
        expires <= self.floor || self.by_nonce.contains_key(nonce)
    }
}

#[derive(Default)]
struct Approvals {
    by_id: HashMap<String, Approval>,
    by_digest: HashMap<String, String>,
}

impl Approvals {
    fn prune(&mut self, now: u64) {
        self.by_id.retain(|_, a| a.expires > now);
        let ids = &self.by_id;
        self.by_digest.retain(|_, id| ids.contains_key(id));
        if self.by_id.len() >= MAX_APPROVALS {
            let mut old: Vec<(u64, String)> = self
                .by_id
                .values()
                .filter(|a| a.state != ApprovalState::Pending)
                .map(|a| (a.created, a.id.clone()))
                .collect();
            old.sort();
            for (_, id) in old.into_iter().take(MAX_APPROVALS / 10) {
                self.by_id.remove(&id);
            }
        }
    }
}

impl MemoryStore {
    /// Kill switches saved at `kill_file` are loaded (none when it does not exist yet).
    pub fn new(kill_file: Option<PathBuf>) -> Result<MemoryStore, String> {
        let list: Vec<Kill> = match &kill_file {
            Some(p) => match std::fs::read_to_string(p) {
                Ok(t) => serde_json::from_str(&t).map_err(|e| format!("{}: {e}", p.display()))?,
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => vec![],
                Err(e) => return Err(format!("{}: {e}", p.display())),
            },
            None => vec![],
        };
        Ok(MemoryStore {
            limiter: MemoryLimiter::default(),
            quotas: Mutex::new(HashMap::new()),
            epoch: Instant::now(),
            kills: Mutex::new((1, list.into_iter().map(|k| (kill_key(&k.server, k.tool.as_deref()), k)).collect())),
            kill_file,
            approvals: Mutex::new(Approvals::default()),
            revoked: Mutex::new(Revoked::default()),
            records: Mutex::new(Records::default()),
            maps: Mutex::new(HashMap::new()),
        })
    }

    fn take_now(&self, checks: &[Check]) -> Result<(), Refusal> {
        let now = self.epoch.elapsed().as_nanos() as u64;
        let rates: Vec<(usize, (&str, &Rate))> = checks
            .iter()
            .enumerate()
            .filter_map(|(i, c)| match &c.limit {
                Limit::Rate(r) => Some((i, (c.key.as_str(), r))),
                Limit::Daily(_) => None,
            })
            .collect();
        let daily: Vec<&Check> = checks.iter().filter(|c| matches!(c.limit, Limit::Daily(_))).collect();
        // Quotas first (checked without taking), then rates (taken atomically), then quotas taken:
        // a refused call takes nothing.
        let secs = now_secs();
        let day = secs / 86_400;
        let mut q = self.quotas.lock();
        for c in &daily {
            let Limit::Daily(limit) = c.limit else { continue };
            let used = q.get(&c.key).filter(|(d, _)| *d == day).map_or(0, |(_, n)| *n);
            if used >= limit {
                return Err(Refusal { scope: c.scope, retry_after: until_midnight(secs) });
            }
        }
        let pairs: Vec<(&str, &Rate)> = rates.iter().map(|(_, p)| *p).collect();
        self.limiter
            .check_all(&pairs, now)
            .map_err(|(n, d)| Refusal { scope: checks[rates[n].0].scope, retry_after: d })?;
        if q.len() > 100_000 {
            q.retain(|_, (d, _)| *d == day);
        }
        for c in daily {
            let e = q.entry(c.key.clone()).or_insert((day, 0));
            if e.0 != day {
                *e = (day, 0);
            }
            e.1 += 1;
        }
        Ok(())
    }

    fn save_kills(&self, m: &BTreeMap<String, Kill>) -> Result<(), StoreError> {
        let Some(p) = &self.kill_file else { return Ok(()) };
        let bytes = serde_json::to_vec_pretty(&m.values().collect::<Vec<_>>()).expect("kills serialise");
        crate::auth::builtin::write_private(p, &bytes)
            .map_err(|e| StoreError(format!("in effect, but not saved to {}: {e}", p.display())))
    }
}

fn done<'a, T: Send + 'a>(v: T) -> BoxFuture<'a, Result<T, StoreError>> {
    ready(Ok(v)).boxed()
}

impl Store for MemoryStore {
    fn backend(&self) -> &'static str {
        "memory"
    }

    fn take<'a>(&'a self, checks: &'a [Check]) -> BoxFuture<'a, Result<Result<(), Refusal>, StoreError>> {
        done(self.take_now(checks))
    }

    fn kills(&self) -> BoxFuture<'_, Result<(u64, Vec<Kill>), StoreError>> {
        let k = self.kills.lock();
        done((k.0, k.1.values().cloned().collect()))
    }

    fn kills_version<'a>(&'a self, _claim: &'a str) -> BoxFuture<'a, Result<(u64, String), StoreError>> {
        // One process's memory (and file): it cannot lose its switches while it runs.
        done((self.kills.lock().0, "memory".to_string()))
    }

    fn put_kill<'a>(&'a self, k: &'a Kill) -> BoxFuture<'a, Result<(), StoreError>> {
        let mut g = self.kills.lock();
        g.1.insert(kill_key(&k.server, k.tool.as_deref()), k.clone());
        g.0 += 1;
        ready(self.save_kills(&g.1)).boxed()
    }

    fn remove_kill<'a>(&'a self, server: &'a str, tool: Option<&'a str>) -> BoxFuture<'a, Result<bool, StoreError>> {
        let mut g = self.kills.lock();
        if g.1.remove(&kill_key(server, tool)).is_none() {
            return done(false);
        }
        g.0 += 1;
        ready(self.save_kills(&g.1).map(|()| true)).boxed()
    }

    fn open_approval<'a>(&'a self, a: &'a Approval) -> BoxFuture<'a, Result<Approval, StoreError>> {
        let mut g = self.approvals.lock();
        g.prune(now_secs());
        if let Some(live) = g.by_digest.get(&a.digest).and_then(|id| g.by_id.get(id)) {
            if matches!(live.state, ApprovalState::Pending | ApprovalState::Approved) {
                return done(live.clone());
            }
        }
        if g.by_id.len() >= MAX_APPROVALS {
            // Every slot holds a live pending request: refuse rather than grow without bound.
            return ready(Err(StoreError(format!("approval queue full ({MAX_APPROVALS} pending)")))).boxed();
        }
        g.by_digest.insert(a.digest.clone(), a.id.clone());
        g.by_id.insert(a.id.clone(), a.clone());
        done(a.clone())
    }

    fn approval<'a>(&'a self, id: &'a str) -> BoxFuture<'a, Result<Option<Approval>, StoreError>> {
        let now = now_secs();
        done(self.approvals.lock().by_id.get(id).filter(|a| a.expires > now).cloned())
    }

    fn approvals(&self, limit: usize) -> BoxFuture<'_, Result<Vec<Approval>, StoreError>> {
        let mut g = self.approvals.lock();
        g.prune(now_secs());
        let mut v: Vec<Approval> = g.by_id.values().cloned().collect();
        v.sort_by(|a, b| b.created.cmp(&a.created).then_with(|| a.id.cmp(&b.id)));
        v.truncate(limit);
        done(v)
    }

    fn decide<'a>(&'a self, id: &'a str, d: &'a Decision) -> BoxFuture<'a, Result<Option<Approval>, StoreError>> {
        let now = now_secs();
        let mut g = self.approvals.lock();
        let out = match g.by_id.get_mut(id) {
            Some(a) if a.state == ApprovalState::Pending && a.expires > now => {
                a.state = if d.approve { ApprovalState::Approved } else { ApprovalState::Denied };
                a.approver = Some(d.approver.clone());
                a.decided_at = Some(d.at);
                a.note = d.note.clone();
                Some(a.clone())
            }
            _ => None,
        };
        done(out)
    }

    fn consume<'a>(&'a self, id: &'a str) -> BoxFuture<'a, Result<bool, StoreError>> {
        let now = now_secs();
        let mut g = self.approvals.lock();
        let out = match g.by_id.get_mut(id) {
            Some(a) if a.state == ApprovalState::Approved && a.expires > now => {
                a.state = ApprovalState::Consumed;
                true
            }
            _ => false,
        };
        done(out)
    }

    fn revoke_session<'a>(&'a self, nonce: &'a str, expires: u64) -> BoxFuture<'a, Result<(), StoreError>> {
        self.revoked.lock().insert(nonce, expires, now_secs());
        done(())
    }

    fn session_revoked<'a>(&'a self, nonce: &'a str, expires: u64) -> BoxFuture<'a, Result<bool, StoreError>> {
        done(self.revoked.lock().contains(nonce, expires))
    }

    fn put_record<'a>(
        &'a self,
        r: RecordKey<'a>,
        value: &'a [u8],
        ttl: Duration,
        only_new: bool,
    ) -> BoxFuture<'a, Result<bool, StoreError>> {
        ready(self.records.lock().put(r, value, ttl, only_new)).boxed()
    }

    fn record<'a>(&'a self, r: RecordKey<'a>) -> BoxFuture<'a, Result<Option<Vec<u8>>, StoreError>> {
        done(self.records.lock().get(r))
    }

    fn take_record<'a>(&'a self, r: RecordKey<'a>) -> BoxFuture<'a, Result<Option<Vec<u8>>, StoreError>> {
        done(self.records.lock().take(r))
    }

    fn delete_record<'a>(&'a self, r: RecordKey<'a>) -> BoxFuture<'a, Result<(), StoreError>> {
        self.records.lock().delete(r);
        done(())
    }

    fn count_record<'a>(&'a self, r: RecordKey<'a>, ttl: Duration) -> BoxFuture<'a, Result<u64, StoreError>> {
        ready(self.records.lock().count(r, ttl)).boxed()
    }

    fn redeem<'a>(&'a self, r: &'a Redeem<'a>) -> BoxFuture<'a, Result<Redeemed, StoreError>> {
        ready(self.records.lock().redeem(r)).boxed()
    }

    fn map_put<'a>(
        &'a self,
        map: &'static str,
        field: &'a str,
        value: &'a str,
        only_new: bool,
    ) -> BoxFuture<'a, Result<bool, StoreError>> {
        ready(self.maps.lock().entry(map).or_default().put(field, value, only_new)).boxed()
    }

    fn map_remove<'a>(&'a self, map: &'static str, field: &'a str) -> BoxFuture<'a, Result<(), StoreError>> {
        self.maps.lock().entry(map).or_default().remove(field);
        done(())
    }

    fn map_all(&self, map: &'static str) -> BoxFuture<'_, Result<super::MapFields, StoreError>> {
        let maps = self.maps.lock();
        let m = maps.get(map);
        let fields = m.map(|m| m.fields.iter().map(|(k, v)| (k.clone(), v.clone())).collect()).unwrap_or_default();
        done((m.map_or(0, |m| m.version), fields))
    }

    fn map_version(&self, map: &'static str) -> BoxFuture<'_, Result<u64, StoreError>> {
        done(self.maps.lock().get(map).map_or(0, |m| m.version))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ended_sessions_stay_ended_when_the_list_is_full() {
        let mut r = Revoked::default();
        for i in 0..MAX_REVOKED as u64 {
            r.insert(&format!("s{i}"), 1_000 + i, 10);
        }
        assert!(r.contains("s0", 1_000) && !r.contains("live", 5_000));
        r.insert("new", 9_000, 10);
        assert_eq!(r.by_nonce.len(), MAX_REVOKED, "bounded");
        assert!(r.contains("s0", 1_000), "the forgotten one is still refused (by the floor)");
        assert!(r.contains("other", 999), "as is any session expiring no later");
        assert!(!r.contains("live", 5_000) && r.contains("new", 9_000));
        // Expired entries go first.
        r.insert("later", 9_500, 2_000);
        assert!(r.by_nonce.len() < MAX_REVOKED && r.contains("later", 9_500));
    }
    use futures::FutureExt;
    use serde_json::json;
    use std::time::Duration;

    fn now<T>(f: BoxFuture<'_, Result<T, StoreError>>) -> T {
        f.now_or_never().expect("memory store answers at once").expect("no store error")
    }

    fn approval(id: &str, digest: &str) -> Approval {
        let t = now_secs();
        Approval {
            id: id.into(),
            digest: digest.into(),
            requester: "r".into(),
            subject: "s".into(),
            tenant: None,
            server: "fx".into(),
            tool: "echo".into(),
            arguments: json!({}),
            summary: String::new(),
            created: t,
            expires: t + 60,
            state: ApprovalState::Pending,
            approver: None,
            decided_at: None,
            note: None,
        }
    }

    #[test]
    fn a_refused_call_takes_from_no_limit() {
        let s = MemoryStore::new(None).unwrap();
        let rate = Rate::parse("100/s", Some(100)).unwrap();
        let checks = vec![
            Check { key: "p".into(), limit: Limit::Rate(rate), scope: "principal" },
            Check { key: "q".into(), limit: Limit::Daily(2), scope: "daily_quota" },
        ];
        assert_eq!(now(s.take(&checks)), Ok(()));
        assert_eq!(now(s.take(&checks)), Ok(()));
        let r = now(s.take(&checks)).unwrap_err();
        assert_eq!(r.scope, "daily_quota");
        assert!(r.retry_after <= Duration::from_secs(86_400));
        // "p" gave 2 of its 100, not 3.
        let only_p = &checks[..1];
        for _ in 0..98 {
            assert_eq!(now(s.take(only_p)), Ok(()));
        }
        assert_eq!(now(s.take(only_p)).unwrap_err().scope, "principal");
    }

    #[test]
    fn approvals_are_decided_once_and_consumed_once() {
        let s = MemoryStore::new(None).unwrap();
        let a = now(s.open_approval(&approval("one", "d")));
        assert_eq!(a.id, "one");
        assert_eq!(now(s.open_approval(&approval("two", "d"))).id, "one", "same digest joins the live one");
        assert!(!now(s.consume("one")), "pending is not consumable");
        let d = Decision { approve: true, approver: "admin-token:x".into(), at: 1, note: None };
        assert_eq!(now(s.decide("one", &d)).unwrap().state, ApprovalState::Approved);
        assert!(now(s.decide("one", &d)).is_none(), "decided once");
        assert!(now(s.consume("one")));
        assert!(!now(s.consume("one")), "consumed once");
        assert_eq!(now(s.open_approval(&approval("three", "d"))).id, "three", "a used approval covers nothing");
        assert!(now(s.decide("nope", &d)).is_none());
    }

    #[test]
    fn kill_switches_survive_a_restart_through_their_file() {
        let dir = std::env::temp_dir().join(format!("warden-memstore-{}", std::process::id()));
        let file = dir.join("kills.json");
        let _ = std::fs::remove_file(&file);
        let s = MemoryStore::new(Some(file.clone())).unwrap();
        let k = Kill {
            server: "fx".into(),
            tool: Some("echo".into()),
            reason: "r".into(),
            by: "b".into(),
            at: 1,
            cancel_in_flight: false,
        };
        now(s.put_kill(&k));
        let (v1, list) = now(s.kills());
        assert_eq!(list, vec![k.clone()]);
        let again = MemoryStore::new(Some(file.clone())).unwrap();
        assert_eq!(now(again.kills()).1, vec![k]);
        assert!(now(again.remove_kill("fx", Some("echo"))));
        assert!(!now(again.remove_kill("fx", Some("echo"))));
        assert!(now(again.kills_version("x")).0 != v1 || now(again.kills()).1.is_empty());
        assert!(MemoryStore::new(Some(file)).unwrap().kills().now_or_never().unwrap().unwrap().1.is_empty());
    }
}
