//! What the listener keeps per connection: a place in the connection table (a cap in total and
//! per client address), and whether the connection is doing anything (for the idle timeout).
//!
//! Defends against: connection floods that take every descriptor or task (a cap in total, and
//! per peer address — an IPv6 /64 counts as one — so one host cannot take them all; a trusted
//! proxy's own address is counted only against the total), and idle keep-alive connections, HTTP/1.1 or HTTP/2, held open
//! without a request (closed gently after the idle time; a request in flight — an SSE stream
//! included — keeps its connection).
//! Does not defend against: many hosts (the total cap then refuses newcomers, which is the
//! point of a cap); slow requests (the header read timeout and each handler's body timeout).

use parking_lot::Mutex;
use std::collections::HashMap;
use std::net::IpAddr;
use std::pin::Pin;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

/// Open connections, in total and per peer address.
pub struct Table {
    max_total: usize,
    max_per_peer: usize,
    exempt: Vec<IpAddr>,
    per_peer: Mutex<HashMap<IpAddr, usize>>,
    total: AtomicUsize,
}

/// A place in the [`Table`], given back on drop.
pub struct Place {
    table: Arc<Table>,
    peer: IpAddr,
}

impl Table {
    /// A table of at most `max_total` connections and `max_per_peer` from one address (the
    /// `exempt` addresses, trusted proxies, only against the total).
    pub fn new(max_total: usize, max_per_peer: usize, exempt: Vec<IpAddr>) -> Arc<Table> {
        Arc::new(Table { max_total, max_per_peer, exempt, per_peer: Mutex::default(), total: AtomicUsize::new(0) })
    }

    /// A place for a connection from `peer`, or why not.
    pub fn admit(self: &Arc<Self>, peer: IpAddr) -> Result<Place, &'static str> {
        let mut m = self.per_peer.lock();
        if self.total.load(Ordering::Acquire) >= self.max_total {
            return Err("too many connections");
        }
        // One host holds a whole IPv6 /64: counted as one address.
        let peer = warden_policy::net::source_key(peer);
        if !self.exempt.contains(&peer) {
            let n = m.entry(peer).or_insert(0);
            if *n >= self.max_per_peer {
                return Err("too many connections from this address");
            }
            *n += 1;
        }
        self.total.fetch_add(1, Ordering::AcqRel);
        Ok(Place { table: self.clone(), peer })
    }

    /// Open connections now.
    pub fn open(&self) -> usize {
        self.total.load(Ordering::Acquire)
    }
}

impl Drop for Place {
    fn drop(&mut self) {
        let mut m = self.table.per_peer.lock();
        if let Some(n) = m.get_mut(&self.peer) {
            *n -= 1;
            if *n == 0 {
                m.remove(&self.peer);
            }
        }
        self.table.total.fetch_sub(1, Ordering::AcqRel);
    }
}

/// Whether one connection is busy: requests whose answer (body included) is not done yet, and
/// when the last one started or ended.
pub struct Activity {
    busy: AtomicUsize,
    since: Instant,
    last_ms: AtomicU64,
}

impl Activity {
    pub fn new() -> Arc<Activity> {
        Arc::new(Activity { busy: AtomicUsize::new(0), since: Instant::now(), last_ms: AtomicU64::new(0) })
    }

    fn touch(&self) {
        self.last_ms.store(self.since.elapsed().as_millis() as u64, Ordering::Release);
    }

    /// A request started; the guard ends it (put it in the answer's body).
    pub fn begin(self: &Arc<Self>) -> Busy {
        self.busy.fetch_add(1, Ordering::AcqRel);
        self.touch();
        Busy(self.clone())
    }

    /// Idle for at least `idle`: no request in flight, and none started or ended since.
    pub fn idle_for(&self, idle: Duration) -> bool {
        let last = Duration::from_millis(self.last_ms.load(Ordering::Acquire));
        self.busy.load(Ordering::Acquire) == 0 && self.since.elapsed().saturating_sub(last) >= idle
    }
}

/// One request in flight on a connection.
pub struct Busy(Arc<Activity>);

impl Drop for Busy {
    fn drop(&mut self) {
        self.0.touch();
        self.0.busy.fetch_sub(1, Ordering::AcqRel);
    }
}

/// A response body that keeps its request counted as in flight until it is done or dropped.
pub struct Tracked<B> {
    inner: B,
    _busy: Busy,
}

impl<B> Tracked<B> {
    pub fn new(inner: B, busy: Busy) -> Self {
        Tracked { inner, _busy: busy }
    }
}

impl<B: hyper::body::Body + Unpin> hyper::body::Body for Tracked<B> {
    type Data = B::Data;
    type Error = B::Error;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<hyper::body::Frame<Self::Data>, Self::Error>>> {
        Pin::new(&mut self.inner).poll_frame(cx)
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> hyper::body::SizeHint {
        self.inner.size_hint()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_table_caps_in_total_and_per_peer_and_gives_places_back() {
        let proxy: IpAddr = "10.0.0.1".parse().unwrap();
        let t = Table::new(5, 2, vec![proxy]);
        let a: IpAddr = "192.0.2.1".parse().unwrap();
        let b: IpAddr = "192.0.2.2".parse().unwrap();
        let p1 = t.admit(a).unwrap();
        let _p2 = t.admit(a).unwrap();
        assert!(t.admit(a).is_err(), "a third from one address");
        let _p3 = t.admit(b).unwrap();
        let _p4 = t.admit(proxy).unwrap();
        let _p5 = t.admit(proxy).unwrap();
        assert_eq!(t.open(), 5);
        assert!(t.admit(proxy).is_err(), "the total holds for the proxy too");
        drop(p1);
        assert_eq!(t.open(), 4);
        assert!(t.admit(a).is_ok(), "a place given back is free again");
        assert!(t.per_peer.lock().get(&proxy).is_none(), "the proxy is not counted per address");
        // The addresses of one IPv6 /64 are one peer.
        let t = Table::new(100, 2, vec![]);
        let _a = t.admit("2001:db8::1".parse().unwrap()).unwrap();
        let _b = t.admit("2001:db8::2".parse().unwrap()).unwrap();
        assert!(t.admit("2001:db8::3".parse().unwrap()).is_err());
        assert!(t.admit("2001:db8:0:1::3".parse().unwrap()).is_ok());
    }

    #[test]
    fn activity_is_idle_only_without_requests_in_flight() {
        let a = Activity::new();
        assert!(a.idle_for(Duration::ZERO));
        let busy = a.begin();
        assert!(!a.idle_for(Duration::ZERO), "a request in flight");
        drop(busy);
        assert!(a.idle_for(Duration::ZERO));
        assert!(!a.idle_for(Duration::from_secs(60)), "it just ended");
    }
}
