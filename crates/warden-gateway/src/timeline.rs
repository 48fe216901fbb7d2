//! The last hour of traffic, in 10-second slots, for the console's charts: calls, their
//! latencies (in the `/metrics` histogram's buckets, so p50 and p99 are estimated the same way
//! a Prometheus query would), denials by reason and errors by status. Fed by the same audit
//! events as the metrics ([`crate::metrics::Metrics::observe`]); this process's own traffic
//! (each replica charts its own; a fleet's whole picture is Prometheus's job).
//!
//! Bounded: 360 slots, each with at most [`MAX_REASONS`] reasons (more are counted as
//! `other`); reasons are rule ids, statuses and fixed words, never anything a client chose.

use parking_lot::Mutex;
use serde::Serialize;
use std::collections::{BTreeMap, VecDeque};
use warden_audit::Event;

/// Seconds per slot.
pub const SLOT_SECS: u64 = 10;
/// Slots kept: an hour.
pub const SLOTS: usize = 360;
/// Distinct reasons (or statuses) one slot keeps.
pub const MAX_REASONS: usize = 32;
/// Upper bounds (seconds) of the latency buckets, as in `/metrics`.
pub const BUCKETS: [f64; 16] =
    [0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0];

#[derive(Clone, Default)]
struct Slot {
    /// Which 10 seconds (seconds since the epoch / [`SLOT_SECS`]).
    at: u64,
    calls: u64,
    /// Per bucket of [`BUCKETS`], and one past the last.
    latency: [u64; 17],
    denials: BTreeMap<String, u64>,
    errors: BTreeMap<String, u64>,
}

/// One slot as the console reads it.
#[derive(Serialize, Debug, PartialEq)]
pub struct Point {
    /// Start of the slot, seconds since the epoch.
    pub at: u64,
    pub calls_per_sec: f64,
    /// Estimated from the buckets (the bucket's upper bound), in milliseconds; absent without calls.
    pub p50_ms: Option<f64>,
    pub p99_ms: Option<f64>,
    pub denials: BTreeMap<String, u64>,
    pub errors: BTreeMap<String, u64>,
}

#[derive(Default)]
pub struct Timeline {
    slots: Mutex<VecDeque<Slot>>,
}

fn count(m: &mut BTreeMap<String, u64>, key: String) {
    let key = if m.len() >= MAX_REASONS && !m.contains_key(&key) { "other".to_string() } else { key };
    *m.entry(key).or_default() += 1;
}

/// Why an event was a denial, if it was one.
fn denial(e: &Event) -> Option<String> {
    if e.kind == "auth_failure" {
        return Some(format!("authentication: {}", e.detail.as_deref().unwrap_or("failed")));
    }
    if e.decision.as_deref() != Some("denied") {
        return None;
    }
    Some(match e.status.as_str() {
        "auth_denied" => match e.rule.as_deref() {
            Some("kill_switch") => "kill switch".to_string(),
            None | Some("no allow rule") => "no allow rule".to_string(),
            Some(rule) => format!("rule {rule}"),
        },
        "rate_limited" => format!("rate limited: {}", e.detail.as_deref().unwrap_or("limit")),
        other => other.to_string(),
    })
}

impl Timeline {
    /// Count one event at `now` (seconds since the epoch).
    pub fn observe_at(&self, e: &Event, now: u64) {
        let denied = denial(e);
        let call = e.method.is_some();
        if !call && denied.is_none() {
            return;
        }
        let at = now / SLOT_SECS;
        let mut slots = self.slots.lock();
        if slots.back().is_none_or(|s| s.at < at) {
            if slots.len() >= SLOTS {
                slots.pop_front();
            }
            slots.push_back(Slot { at, ..Default::default() });
        }
        // A clock that stepped back counts into the newest slot.
        let slot = slots.back_mut().expect("a slot was just ensured");
        if call {
            slot.calls += 1;
            if let Some(us) = e.latency_us {
                let secs = us as f64 / 1e6;
                let b = BUCKETS.iter().position(|&ub| secs <= ub).unwrap_or(BUCKETS.len());
                slot.latency[b] += 1;
            }
            if denied.is_none() && e.status != "success" {
                count(&mut slot.errors, e.status.clone());
            }
        }
        if let Some(reason) = denied {
            count(&mut slot.denials, reason);
        }
    }

    pub fn observe(&self, e: &Event) {
        self.observe_at(e, crate::clock::now_secs());
    }

    /// The last hour before `now`, oldest first, one point per slot (empty slots included).
    pub fn points_at(&self, now: u64) -> Vec<Point> {
        let last = now / SLOT_SECS;
        let first = (last + 1).saturating_sub(SLOTS as u64);
        let slots = self.slots.lock();
        (first..=last)
            .map(|at| match slots.iter().find(|s| s.at == at) {
                Some(s) => point(s),
                None => point(&Slot { at, ..Default::default() }),
            })
            .collect()
    }

    pub fn points(&self) -> Vec<Point> {
        self.points_at(crate::clock::now_secs())
    }
}

fn quantile(latency: &[u64; 17], q: f64) -> Option<f64> {
    let total: u64 = latency.iter().sum();
    if total == 0 {
        return None;
    }
    let want = (q * total as f64).ceil().max(1.0) as u64;
    let mut seen = 0;
    for (i, n) in latency.iter().enumerate() {
        seen += n;
        if seen >= want {
            // Past the last bound: that bound is all that is known.
            return Some(BUCKETS[i.min(BUCKETS.len() - 1)] * 1000.0);
        }
    }
    None
}

fn point(s: &Slot) -> Point {
    Point {
        at: s.at * SLOT_SECS,
        calls_per_sec: s.calls as f64 / SLOT_SECS as f64,
        p50_ms: quantile(&s.latency, 0.5),
        p99_ms: quantile(&s.latency, 0.99),
        denials: s.denials.clone(),
        errors: s.errors.clone(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn call(status: &str, ms: u64) -> Event {
        let mut e = Event::new("call", status);
        e.method = Some("tools/call".into());
        e.latency_us = Some(ms * 1000);
        e.decision = Some("allowed".into());
        e
    }

    #[test]
    fn an_hour_of_slots_with_rates_quantiles_denials_and_errors() {
        let t = Timeline::default();
        let now = 1_000_000;
        for i in 0..100 {
            t.observe_at(&call("success", if i < 98 { 3 } else { 700 }), now);
        }
        t.observe_at(&call("timeout", 30_000), now);
        let mut denied = call("auth_denied", 1);
        denied.decision = Some("denied".into());
        denied.rule = Some("no-prod".into());
        t.observe_at(&denied, now);
        let mut failed = Event::new("auth_failure", "auth_denied");
        failed.detail = Some("invalid_token".into());
        t.observe_at(&failed, now);
        let p = t.points_at(now + 5);
        assert_eq!(p.len(), SLOTS);
        let last = p.last().unwrap();
        assert_eq!(last.at, now / SLOT_SECS * SLOT_SECS);
        assert_eq!(last.calls_per_sec, 10.2);
        assert_eq!(last.p50_ms, Some(5.0), "3 ms is in the ≤ 5 ms bucket");
        assert_eq!(last.p99_ms, Some(1000.0), "the 99th of 102 is a 700 ms call");
        assert_eq!(last.errors, BTreeMap::from([("timeout".to_string(), 1)]));
        assert_eq!(
            last.denials,
            BTreeMap::from([("rule no-prod".to_string(), 1), ("authentication: invalid_token".to_string(), 1)])
        );
        assert!(p[..SLOTS - 1].iter().all(|x| x.calls_per_sec == 0.0 && x.p50_ms.is_none()));
        // An hour later it has scrolled away; the ring never holds more than an hour.
        assert!(t.points_at(now + 3600).iter().all(|x| x.calls_per_sec == 0.0));
        for s in 0..(SLOTS as u64 + 50) {
            t.observe_at(&call("success", 1), now + s * SLOT_SECS);
        }
        assert_eq!(t.slots.lock().len(), SLOTS);
    }

    #[test]
    fn reasons_per_slot_are_bounded() {
        let t = Timeline::default();
        for i in 0..100 {
            let mut e = call("auth_denied", 1);
            e.decision = Some("denied".into());
            e.rule = Some(format!("rule-{i}"));
            t.observe_at(&e, 50);
        }
        let p = t.points_at(50);
        let d = &p.last().unwrap().denials;
        assert_eq!(d.len(), MAX_REASONS + 1);
        assert_eq!(d["other"], 100 - MAX_REASONS as u64);
    }
}
