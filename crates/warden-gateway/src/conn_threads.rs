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
//! ([`crate::connections`]). Not defended against: CPU work outside `heavy` (serializing a very
//! large answer) delays the other connections of its thread for that long; connections are
//! assigned in turn and never rebalanced.

use futures::future::BoxFuture;
use std::sync::atomic::{AtomicUsize, Ordering};
use tokio::runtime::Runtime;

/// Most connection threads (a bound on a configured or inherited count).
pub const MAX_THREADS: usize = 256;

pub struct ConnThreads {
    runtimes: Vec<Runtime>,
    next: AtomicUsize,
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
        Ok(ConnThreads { runtimes, next: AtomicUsize::new(0) })
    }

    pub fn len(&self) -> usize {
        self.runtimes.len()
    }

    pub fn is_empty(&self) -> bool {
        self.runtimes.is_empty()
    }

    /// Serve `conn` on the next runtime in turn (it is first polled there: what it registers,
    /// a socket, a timer, belongs to that runtime).
    pub fn run(&self, conn: BoxFuture<'static, ()>) {
        let i = self.next.fetch_add(1, Ordering::Relaxed) % self.runtimes.len();
        self.runtimes[i].spawn(conn);
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
        for _ in 0..4 {
            let tx = tx.clone();
            threads.run(Box::pin(async move {
                // A timer registers with the runtime it is first polled on.
                tokio::time::sleep(std::time::Duration::from_millis(1)).await;
                let _ = tx.send(std::thread::current().name().unwrap_or_default().to_string());
            }));
        }
        let mut names: Vec<String> =
            (0..4).map(|_| rx.recv_timeout(std::time::Duration::from_secs(5)).unwrap()).collect();
        names.sort();
        assert_eq!(names, ["warden-conn-0", "warden-conn-0", "warden-conn-1", "warden-conn-1"]);
    }
}
