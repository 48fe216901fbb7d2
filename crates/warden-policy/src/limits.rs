//! Rate limits as GCRA (the generic cell rate algorithm): one stored number per key, the
//! theoretical arrival time (TAT) of the next request. A request at `now` conforms when
//! `TAT - burst × interval ≤ now`; it then moves TAT to `max(TAT, now) + interval`. A rejected
//! request learns exactly when it would conform. The same arithmetic runs in memory here and as
//! one Lua script in Redis.

use std::collections::HashMap;
use std::hash::BuildHasher;
use std::time::Duration;

/// `count` requests per `per`, with up to `burst` at once.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Rate {
    pub count: u64,
    pub per: Duration,
    pub burst: u64,
}

impl Rate {
    /// Parse `"10/hour"`, `"5/s"`, `"100/minute"`, `"1000/day"`; the burst defaults to 1.
    pub fn parse(s: &str, burst: Option<u64>) -> Result<Rate, String> {
        let (n, unit) =
            s.split_once('/').ok_or_else(|| format!("rate {s:?}: expected COUNT/UNIT, like \"10/hour\""))?;
        let count: u64 = n.trim().parse().map_err(|_| format!("rate {s:?}: COUNT must be a positive integer"))?;
        let per = match unit.trim() {
            "s" | "sec" | "second" => 1,
            "m" | "min" | "minute" => 60,
            "h" | "hour" => 3600,
            "d" | "day" => 86_400,
            _ => return Err(format!("rate {s:?}: UNIT must be second, minute, hour or day")),
        };
        let burst = burst.unwrap_or(1);
        if count == 0 || burst == 0 {
            return Err(format!("rate {s:?}: count and burst must be at least 1"));
        }
        Ok(Rate { count, per: Duration::from_secs(per), burst })
    }

    /// Nanoseconds between conforming requests.
    pub fn interval_ns(&self) -> u64 {
        (self.per.as_nanos() / self.count as u128).max(1) as u64
    }
}

/// One GCRA step: the new TAT if `now_ns` conforms, else how long to wait.
pub fn gcra(tat_ns: Option<u64>, now_ns: u64, rate: &Rate) -> Result<u64, Duration> {
    let interval = rate.interval_ns();
    let tolerance = interval.saturating_mul(rate.burst - 1);
    let tat = tat_ns.unwrap_or(now_ns).max(now_ns);
    let allow_at = tat.saturating_sub(tolerance);
    if now_ns < allow_at {
        return Err(Duration::from_nanos(allow_at - now_ns));
    }
    Ok(tat + interval)
}

const SHARDS: usize = 16;
const MAX_KEYS_PER_SHARD: usize = 100_000;

/// In-memory GCRA state, sharded to keep lock contention low.
pub struct MemoryLimiter {
    shards: Vec<parking_lot::Mutex<HashMap<String, u64>>>,
    hasher: std::collections::hash_map::RandomState,
}

impl Default for MemoryLimiter {
    fn default() -> Self {
        MemoryLimiter {
            shards: (0..SHARDS).map(|_| parking_lot::Mutex::new(HashMap::new())).collect(),
            hasher: Default::default(),
        }
    }
}

impl MemoryLimiter {
    /// Take one request for `key` at `now_ns` (monotonic nanoseconds).
    pub fn check(&self, key: &str, rate: &Rate, now_ns: u64) -> Result<(), Duration> {
        self.check_all(&[(key, rate)], now_ns).map_err(|(_, d)| d)
    }

    fn shard_of(&self, key: &str) -> usize {
        self.hasher.hash_one(key) as usize % SHARDS
    }

    /// Take one request from every `(key, rate)` at once, or from none: the first that does not
    /// conform is returned by index with its wait. Keys must be distinct.
    pub fn check_all(&self, checks: &[(&str, &Rate)], now_ns: u64) -> Result<(), (usize, Duration)> {
        let idx: Vec<usize> = checks.iter().map(|(k, _)| self.shard_of(k)).collect();
        let mut order = idx.clone();
        order.sort_unstable();
        order.dedup();
        // Shards are locked in ascending order, so concurrent callers cannot deadlock.
        let mut guards: Vec<(usize, parking_lot::MutexGuard<'_, HashMap<String, u64>>)> =
            order.iter().map(|&i| (i, self.shards[i].lock())).collect();
        let mut next = Vec::with_capacity(checks.len());
        for (n, (key, rate)) in checks.iter().enumerate() {
            let shard = &guards.iter().find(|(i, _)| *i == idx[n]).expect("locked above").1;
            next.push(gcra(shard.get(*key).copied(), now_ns, rate).map_err(|d| (n, d))?);
        }
        for (n, (key, _)) in checks.iter().enumerate() {
            let shard = &mut guards.iter_mut().find(|(i, _)| *i == idx[n]).expect("locked above").1;
            if shard.len() >= MAX_KEYS_PER_SHARD && !shard.contains_key(*key) {
                // Keys whose TAT has passed carry no state worth keeping.
                shard.retain(|_, tat| *tat > now_ns);
            }
            shard.insert(key.to_string(), next[n]);
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const S: u64 = 1_000_000_000;

    #[test]
    fn parses_rates() {
        assert_eq!(Rate::parse("10/hour", None).unwrap(), Rate { count: 10, per: Duration::from_secs(3600), burst: 1 });
        assert_eq!(Rate::parse("5/s", Some(3)).unwrap().burst, 3);
        for bad in ["10", "0/s", "x/s", "10/week", "10/hour/2"] {
            assert!(Rate::parse(bad, None).is_err(), "{bad}");
        }
        assert!(Rate::parse("1/s", Some(0)).is_err());
    }

    #[test]
    fn burst_then_steady_rate_with_exact_retry_times() {
        let l = MemoryLimiter::default();
        let r = Rate::parse("2/s", Some(3)).unwrap(); // one every 0.5 s, 3 at once
        let t0 = 100 * S;
        for _ in 0..3 {
            assert!(l.check("k", &r, t0).is_ok());
        }
        assert_eq!(l.check("k", &r, t0), Err(Duration::from_millis(500)));
        assert!(l.check("other", &r, t0).is_ok(), "keys are independent");
        assert!(l.check("k", &r, t0 + S / 2).is_ok());
        assert!(l.check("k", &r, t0 + S / 2).is_err());
        // After a long pause the full burst is back, no more.
        let later = t0 + 60 * S;
        for _ in 0..3 {
            assert!(l.check("k", &r, later).is_ok());
        }
        assert!(l.check("k", &r, later).is_err());
    }

    #[test]
    fn check_all_takes_from_every_limit_or_from_none() {
        let l = MemoryLimiter::default();
        let wide = Rate::parse("100/s", Some(100)).unwrap();
        let narrow = Rate::parse("1/s", None).unwrap();
        let t = 5 * S;
        assert!(l.check_all(&[("p", &wide), ("tool", &narrow)], t).is_ok());
        let (which, _) = l.check_all(&[("p", &wide), ("tool", &narrow)], t).unwrap_err();
        assert_eq!(which, 1);
        // The refused call took nothing from "p": 98 more fit in its burst, not 97.
        for _ in 0..99 {
            assert!(l.check("p", &wide, t).is_ok());
        }
        assert!(l.check("p", &wide, t).is_err());
    }
}
