//! The memory backend's records (small values with a lifetime, in one bounded map) and shared
//! maps (fields with a version).
//!
//! Bounded: at most [`MAX_RECORDS`] records; when full, expired records are swept, and when it
//! is still full a new record is refused (an error: its caller fails closed, as on a store
//! outage). At most [`MAX_FIELDS`] fields per map, past which a new field is refused.

use super::{RecordKey, Redeem, Redeemed, StoreError};
use std::collections::HashMap;
use std::time::{Duration, Instant};

pub const MAX_RECORDS: usize = 200_000;
pub const MAX_FIELDS: usize = 100_000;

/// One shared map: its version and fields.
#[derive(Default)]
pub struct Map {
    pub version: u64,
    pub fields: std::collections::BTreeMap<String, String>,
}

impl Map {
    pub fn put(&mut self, field: &str, value: &str, only_new: bool) -> Result<bool, StoreError> {
        if only_new && self.fields.contains_key(field) {
            return Ok(false);
        }
        if self.fields.len() >= MAX_FIELDS && !self.fields.contains_key(field) {
            return Err(StoreError(format!("map full ({MAX_FIELDS} fields)")));
        }
        self.fields.insert(field.to_string(), value.to_string());
        self.version += 1;
        Ok(true)
    }

    pub fn remove(&mut self, field: &str) {
        if self.fields.remove(field).is_some() {
            self.version += 1;
        }
    }
}

#[derive(Default)]
pub struct Records {
    map: HashMap<String, (Vec<u8>, Instant)>,
}

impl Records {
    fn live(&self, k: &str, now: Instant) -> Option<&Vec<u8>> {
        self.map.get(k).filter(|(_, until)| *until > now).map(|(v, _)| v)
    }

    fn room(&mut self, k: &str, now: Instant) -> Result<(), StoreError> {
        if self.map.len() >= MAX_RECORDS && !self.map.contains_key(k) {
            self.map.retain(|_, (_, until)| *until > now);
            if self.map.len() >= MAX_RECORDS {
                return Err(StoreError(format!("record table full ({MAX_RECORDS})")));
            }
        }
        Ok(())
    }

    pub fn put(&mut self, r: RecordKey, value: &[u8], ttl: Duration, only_new: bool) -> Result<bool, StoreError> {
        let (k, now) = (r.joined(), Instant::now());
        if only_new && self.live(&k, now).is_some() {
            return Ok(false);
        }
        self.room(&k, now)?;
        self.map.insert(k, (value.to_vec(), now + ttl));
        Ok(true)
    }

    pub fn get(&self, r: RecordKey) -> Option<Vec<u8>> {
        self.live(&r.joined(), Instant::now()).cloned()
    }

    pub fn take(&mut self, r: RecordKey) -> Option<Vec<u8>> {
        let now = Instant::now();
        self.map.remove(&r.joined()).filter(|(_, until)| *until > now).map(|(v, _)| v)
    }

    pub fn delete(&mut self, r: RecordKey) {
        self.map.remove(&r.joined());
    }

    pub fn redeem(&mut self, r: &Redeem) -> Result<Redeemed, StoreError> {
        let now = Instant::now();
        if let Some((claim, ttl)) = r.claim {
            if self.live(&claim.joined(), now).is_some() {
                return Ok(Redeemed::Claimed);
            }
            self.room(&claim.joined(), now)?;
            self.room(&r.put.0.joined(), now)?;
            self.map.insert(claim.joined(), (b"1".to_vec(), now + ttl));
        }
        if self.live(&r.unless.joined(), now).is_some() {
            return Ok(Redeemed::Blocked);
        }
        let (put, value, ttl) = r.put;
        self.room(&put.joined(), now)?;
        self.map.insert(put.joined(), (value.to_vec(), now + ttl));
        if let Some((k, ttl)) = r.extend {
            if let Some((_, until)) = self.map.get_mut(&k.joined()).filter(|(_, until)| *until > now) {
                *until = (*until).max(now + ttl);
            }
        }
        Ok(Redeemed::Done)
    }

    pub fn count(&mut self, r: RecordKey, ttl: Duration) -> Result<u64, StoreError> {
        let (k, now) = (r.joined(), Instant::now());
        let (n, until) = match self.map.get(&k).filter(|(_, until)| *until > now) {
            Some((v, until)) => (std::str::from_utf8(v).ok().and_then(|s| s.parse::<u64>().ok()).unwrap_or(0), *until),
            None => (0, now + ttl),
        };
        self.room(&k, now)?;
        self.map.insert(k, ((n + 1).to_string().into_bytes(), until));
        Ok(n + 1)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key(key: &str) -> RecordKey<'_> {
        RecordKey { kind: "test", key }
    }

    #[test]
    fn records_expire_are_taken_once_and_stay_bounded() {
        let mut r = Records::default();
        assert!(r.put(key("a"), b"1", Duration::from_secs(60), true).unwrap());
        assert!(!r.put(key("a"), b"2", Duration::from_secs(60), true).unwrap(), "only_new: the first wins");
        assert_eq!(r.get(key("a")).as_deref(), Some(&b"1"[..]));
        assert_eq!(r.take(key("a")).as_deref(), Some(&b"1"[..]));
        assert_eq!(r.take(key("a")), None, "taken once");
        assert!(r.put(key("gone"), b"x", Duration::ZERO, false).unwrap());
        assert_eq!(r.get(key("gone")), None, "expired");
        assert!(r.put(key("gone"), b"y", Duration::from_secs(1), true).unwrap(), "an expired record is not live");
        assert_eq!(
            (r.count(key("n"), Duration::from_secs(60)).unwrap(), r.count(key("n"), Duration::ZERO).unwrap()),
            (1, 2)
        );
        for i in 0..MAX_RECORDS {
            let k = i.to_string();
            let _ = r.put(key(&k), b"", Duration::from_secs(60), false);
        }
        assert!(r.map.len() <= MAX_RECORDS);
        assert!(r.put(key("one more"), b"", Duration::from_secs(60), false).is_err(), "full: refused");
    }
}
