//! Connection threads: every accepted connection is served, from its first byte to its close,
//! by one runtime with a single worker thread, one such runtime per core.
//!
//! Why: on one shared multi-threaded runtime a call wakes a second worker thread several times
//! (a request's task, the upstream's answer, the reply), and on small or virtualized machines
//! those wake-ups cost more than the work (issue 22's profiles: futex and epoll time, context
//! switches). Here a call's request, upstream exchange and answer all happen on the thread of
//! the connection that carried it, and the threads share nothing on the way. What a call starts
//! that outlives it (an SSE stream, a detached run, an upstream connection's reader) stays on
//! the same runtime. Background work of the gateway itself (the audit writer, control
//! connections, reloads) keeps the process's main runtime.
//!
//! Each runtime is multi-threaded in kind though it has one worker: CPU-heavy work
//! ([`crate::blocking::heavy`], vetting a listing of thousands of tools) then hands the runtime's
//! other connections to a stand-in thread meanwhile (`block_in_place`), so a flooding upstream
//! does not stall the clients that share its thread.
//!
//! Bounds: a runtime holds the connections the listener admitted under its caps
//! ([`crate::connections`]). A new connection goes to the runtime with the fewest open ones.
//! Not defended against: CPU work outside `heavy` (serializing a very large answer) delays the
//! other connections of its thread for that long; a connection is never moved once assigned.

use futures::future::BoxFuture;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use tokio::runtime::Runtime;

/// Most connection threads (a bound on a configured or inherited count).
pub const MAX_THREADS: usize = 256;

pub struct ConnThreads {
    runtimes: Vec<Runtime>,
    /// Connections open on each runtime.
    open: Vec<Arc<AtomicUsize>>,
    next: AtomicUsize,
}

/// Counts a connection open on its runtime until it ends (however it ends).
struct Open(Arc<AtomicUsize>);

impl Drop for Open {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::Relaxed);
    }
}

impl ConnThreads {
    /// Start `n` runtimes (0: one per core, or `TOKIO_WORKER_THREADS` when set).
    pub fn start(n: usize) -> std::io::Result<ConnThreads> {
        let n = match n {
            0 => std::env::var("TOKIO_WORKER_THREADS")
                .ok()
                .and_then(|v| v.parse().ok())
                .filter(|&n: &usize| n > 0)
                .unwrap_or_else(|| std::thread::available_parallelism().map_or(1, usize::from)),
            n => n,
        }
        .min(MAX_THREADS);
        let runtimes = (0..n)
            .map(|i| {
                tokio::runtime::Builder::new_multi_thread()
                    .worker_threads(1)
                    .thread_name(format!("warden-conn-{i}"))
                    .enable_all()
                    .build()
            })
            .collect::<std::io::Result<_>>()?;
        let open = (0..n).map(|_| Arc::new(AtomicUsize::new(0))).collect();
        Ok(ConnThreads { runtimes, open, next: AtomicUsize::new(0) })
    }

    /// Serve `conn` on the runtime with the fewest open connections, in turn among equals (it
    /// is first polled there: what it registers, a socket, a timer, belongs to that runtime).
    pub fn run(&self, conn: BoxFuture<'static, ()>) {
        let n = self.runtimes.len();
        let start = self.next.fetch_add(1, Ordering::Relaxed);
        let i = (0..n).map(|k| (start + k) % n).min_by_key(|&i| self.open[i].load(Ordering::Relaxed)).unwrap_or(0);
        self.open[i].fetch_add(1, Ordering::Relaxed);
        let open = Open(self.open[i].clone());
        self.runtimes[i].spawn(async move {
            let _open = open;
            conn.await
        });
    }
}

impl Drop for ConnThreads {
    /// Stop the runtimes, cutting what they still serve (the gateway closes its sessions first).
    fn drop(&mut self) {
        for rt in self.runtimes.drain(..) {
            rt.shutdown_background();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn connections_are_served_in_turn_each_on_its_runtime() {
        let threads = ConnThreads::start(2).unwrap();
        let (tx, rx) = std::sync::mpsc::channel();
        // All four stay open until every one is placed (so the counts are 1, 1, 2, 2).
        let (go, wait) = tokio::sync::watch::channel(false);
        for _ in 0..4 {
            let (tx, mut wait) = (tx.clone(), wait.clone());
            threads.run(Box::pin(async move {
                let _ = wait.wait_for(|&g| g).await;
                // A timer registers with the runtime it is first polled on.
                tokio::time::sleep(std::time::Duration::from_millis(1)).await;
                let _ = tx.send(std::thread::current().name().unwrap_or_default().to_string());
            }));
        }
        drop(wait);
        go.send(true).unwrap();
        let mut names: Vec<String> =
            (0..4).map(|_| rx.recv_timeout(std::time::Duration::from_secs(5)).unwrap()).collect();
        names.sort();
        assert_eq!(names, ["warden-conn-0", "warden-conn-0", "warden-conn-1", "warden-conn-1"]);
    }

    #[test]
    fn a_new_connection_goes_where_fewer_are_open() {
        let threads = ConnThreads::start(2).unwrap();
        let (tx, rx) = std::sync::mpsc::channel();
        // A long connection (an SSE stream) holds one runtime.
        let (hold, held) = tokio::sync::oneshot::channel::<()>();
        let t = tx.clone();
        threads.run(Box::pin(async move {
            let _ = t.send(std::thread::current().name().unwrap_or_default().to_string());
            let _ = held.await;
        }));
        let long = rx.recv_timeout(std::time::Duration::from_secs(5)).unwrap();
        // Short ones, one after the other, all go to the other runtime.
        for _ in 0..3 {
            let t = tx.clone();
            threads.run(Box::pin(async move {
                let _ = t.send(std::thread::current().name().unwrap_or_default().to_string());
            }));
            let got = rx.recv_timeout(std::time::Duration::from_secs(5)).unwrap();
            assert_ne!(got, long);
            std::thread::sleep(std::time::Duration::from_millis(20)); // its count is back to 0
        }
        drop(hold);
    }
}
