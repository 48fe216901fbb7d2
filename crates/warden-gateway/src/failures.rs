//! Authentication failures, aggregated per client address for the audit trail.
//!
//! Defends against: audit amplification before authentication. Anyone who can reach `/mcp` can
//! fail to authenticate; a record for each failure let one client write megabytes a second into
//! the trail. The first failure from an address (IPv6: a /64) in a window is recorded at once;
//! the rest of that window's failures are counted by reason and recorded as one record per
//! reason (`count`) when the window ends. Addresses are tracked in bounded memory: past
//! [`MAX_SOURCES`] at once, new addresses share one "other addresses" window, so nothing goes
//! uncounted.
//! Does not defend against: losing the counts of the last, unfinished window when Warden is
//! killed (a clean shutdown records them); metrics count every failure (at window end).

use std::collections::{BTreeMap, HashMap};
use std::net::IpAddr;
use std::time::{Duration, Instant};

/// One window per address.
pub const WINDOW: Duration = Duration::from_secs(60);
/// Addresses tracked at once.
pub const MAX_SOURCES: usize = 10_000;

struct Window {
    started: Instant,
    /// Failures after the first, by reason.
    more: BTreeMap<&'static str, u64>,
}

/// What to record: the address (None: the shared window of other addresses), the reason, and
/// how many failures the record stands for.
pub type Summary = (Option<IpAddr>, &'static str, u64);

#[derive(Default)]
pub struct Failures {
    windows: HashMap<Option<IpAddr>, Window>,
    /// Summaries of windows that ended while a new failure arrived, not yet taken.
    ready: Vec<Summary>,
}

impl Failures {
    /// Count one failure from `source`; true when it opens a window (record it at once).
    pub fn note(&mut self, source: Option<IpAddr>, reason: &'static str, now: Instant) -> bool {
        let mut key = source.map(warden_policy::net::source_key);
        if !self.windows.contains_key(&key) && self.windows.len() >= MAX_SOURCES {
            self.ready.extend(Self::close(&mut self.windows, now, false));
            if self.windows.len() >= MAX_SOURCES {
                key = None;
            }
        }
        if let Some(w) = self.windows.get(&key) {
            if now.duration_since(w.started) >= WINDOW {
                let w = self.windows.remove(&key).expect("present");
                self.ready.extend(w.more.into_iter().map(|(r, n)| (key, r, n)));
            }
        }
        match self.windows.get_mut(&key) {
            Some(w) => {
                *w.more.entry(reason).or_insert(0) += 1;
                false
            }
            None => {
                self.windows.insert(key, Window { started: now, more: BTreeMap::new() });
                true
            }
        }
    }

    /// The summaries to record now: windows that ended by `now` (every window with `all`).
    pub fn due(&mut self, now: Instant, all: bool) -> Vec<Summary> {
        let mut out = std::mem::take(&mut self.ready);
        out.extend(Self::close(&mut self.windows, now, all));
        out
    }

    fn close(windows: &mut HashMap<Option<IpAddr>, Window>, now: Instant, all: bool) -> Vec<Summary> {
        let ended: Vec<Option<IpAddr>> =
            windows.iter().filter(|(_, w)| all || now.duration_since(w.started) >= WINDOW).map(|(k, _)| *k).collect();
        let mut out = Vec::new();
        for k in ended {
            if let Some(w) = windows.remove(&k) {
                out.extend(w.more.into_iter().map(|(r, n)| (k, r, n)));
            }
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_flood_from_one_address_is_one_record_plus_one_per_reason() {
        let mut f = Failures::default();
        let t = Instant::now();
        let a: Option<IpAddr> = Some("192.0.2.1".parse().unwrap());
        assert!(f.note(a, "missing", t), "the first is recorded at once");
        for _ in 0..999 {
            assert!(!f.note(a, "missing", t));
        }
        assert!(!f.note(Some("192.0.2.1".parse().unwrap()), "invalid_token", t));
        assert!(f.note(Some("2001:db8::1".parse().unwrap()), "missing", t));
        assert!(!f.note(Some("2001:db8::2".parse().unwrap()), "missing", t), "the same /64");
        assert!(f.due(t, false).is_empty(), "windows still open");
        let mut due = f.due(t + WINDOW, false);
        due.sort();
        assert_eq!(
            due,
            [
                (Some("192.0.2.1".parse().unwrap()), "invalid_token", 1),
                (a, "missing", 999),
                (Some("2001:db8::".parse().unwrap()), "missing", 1)
            ]
        );
        assert!(f.note(a, "missing", t + WINDOW), "a new window opens");
    }

    #[test]
    fn a_window_ended_by_a_new_failure_is_not_lost() {
        let mut f = Failures::default();
        let t = Instant::now();
        let a = Some("192.0.2.1".parse().unwrap());
        f.note(a, "missing", t);
        f.note(a, "missing", t);
        assert!(f.note(a, "missing", t + WINDOW), "the old window ended: this one opens a new one");
        assert_eq!(f.due(t + WINDOW, false), [(a, "missing", 1)]);
        assert!(f.due(t + WINDOW, true).is_empty(), "the new window has nothing after its first");
    }

    #[test]
    fn many_addresses_stay_bounded_and_counted() {
        let mut f = Failures::default();
        let t = Instant::now();
        for i in 0..MAX_SOURCES as u32 {
            assert!(f.note(Some(IpAddr::from(i.to_be_bytes())), "missing", t));
        }
        assert!(f.note(Some("198.51.100.1".parse().unwrap()), "missing", t), "the shared window opens");
        assert!(!f.note(Some("198.51.100.2".parse().unwrap()), "missing", t));
        assert_eq!(f.windows.len(), MAX_SOURCES + 1);
        assert_eq!(f.due(t, true).iter().map(|s| s.2).sum::<u64>(), 1);
    }
}
