//! The free space of a file audit trail's disk (`[audit] min_free_mb`), looked at every second.
//! Under the watermark Warden says so before any write fails: the gauges
//! `warden_audit_disk_free_bytes` and `warden_audit_disk_low` (the alert rule `WardenAuditDiskLow`
//! fires on it), `/readyz` answers 503 with the reason (a load balancer sends the calls to other
//! replicas), a WARN and an audit record (`audit`/`disk_low`) — once per crossing, and again
//! (`disk_ok`) when space is back. Calls keep being served and recorded meanwhile.
//!
//! At the limit (the disk full): a record that cannot be written is retried with backoff and
//! stays queued; a call whose record is not stored within 10 s fails (503), and so does every call
//! once the queue is full (`on_full = "reject"`, the default): nothing is answered unrecorded.
//! `[audit.retention]` removes old segments; a disk at the watermark is the operator's to free.
//!
//! Back to normal once a tenth of the watermark (at least 16 MiB) above it, so readiness does not
//! flap around it.
//!
//! Does not defend against: another process filling the disk faster than one look a second
//! sees; a PostgreSQL trail's disk (the database's own monitoring covers it); limits that
//! `statvfs` does not show (a Kubernetes emptyDir `sizeLimit`, quotas): set `min_free_mb`
//! against those yourself.

use prometheus_client::metrics::gauge::Gauge;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Weak};
use std::time::Duration;

pub const EVERY: Duration = Duration::from_secs(1);

pub struct DiskWatch {
    dir: PathBuf,
    min_free: u64,
    free: AtomicU64,
    low: AtomicBool,
    /// The free space could not be read (logged once per streak).
    unreadable: AtomicBool,
}

/// Back to normal only this far above the watermark (a tenth of it, at least 16 MiB), so that
/// readiness does not flap around it.
fn recovered(min_free: u64) -> u64 {
    min_free.saturating_add((min_free / 10).max(16 << 20))
}

/// Bytes an unprivileged writer may still use on the filesystem holding `dir`.
pub fn free_bytes(dir: &Path) -> std::io::Result<u64> {
    let st = nix::sys::statvfs::statvfs(dir).map_err(std::io::Error::from)?;
    Ok((st.blocks_available() as u64).saturating_mul(st.fragment_size() as u64))
}

impl DiskWatch {
    /// Watch the disk holding `dir` (looked at once now, then every [`EVERY`] while the watch
    /// lives); `changed(low, free)` is told of each crossing.
    pub fn start(
        dir: PathBuf,
        min_free: u64,
        gauges: (Gauge, Gauge),
        changed: impl Fn(bool, u64) + Send + 'static,
    ) -> Arc<DiskWatch> {
        let w = Arc::new(DiskWatch {
            dir,
            min_free,
            free: AtomicU64::new(u64::MAX),
            low: AtomicBool::new(false),
            unreadable: AtomicBool::new(false),
        });
        w.look(&gauges, &changed);
        let weak: Weak<DiskWatch> = Arc::downgrade(&w);
        let _ = std::thread::Builder::new().name("audit-disk".into()).spawn(move || loop {
            std::thread::sleep(EVERY);
            let Some(w) = weak.upgrade() else { return };
            w.look(&gauges, &changed);
        });
        w
    }

    fn look(&self, (free_gauge, low_gauge): &(Gauge, Gauge), changed: &impl Fn(bool, u64)) {
        let free = match free_bytes(&self.dir) {
            Ok(f) => f,
            Err(e) => {
                if !self.unreadable.swap(true, Ordering::Relaxed) {
                    tracing::warn!(dir = %self.dir.display(), error = %e, "audit: cannot read the trail disk's free space");
                }
                return;
            }
        };
        self.unreadable.store(false, Ordering::Relaxed);
        self.free.store(free, Ordering::Relaxed);
        free_gauge.set(free.min(i64::MAX as u64) as i64);
        let was = self.low.load(Ordering::Acquire);
        let low = if was { free < recovered(self.min_free) } else { free < self.min_free };
        low_gauge.set(i64::from(low));
        if self.low.swap(low, Ordering::AcqRel) != low {
            changed(low, free);
        }
    }

    /// `(free, watermark)` in bytes while the disk is under the watermark.
    pub fn low(&self) -> Option<(u64, u64)> {
        self.low.load(Ordering::Acquire).then(|| (self.free.load(Ordering::Relaxed), self.min_free))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Mutex;

    #[test]
    fn a_watermark_over_the_free_space_is_low_and_told_once() {
        let dir = std::env::temp_dir();
        let free = free_bytes(&dir).unwrap();
        assert!(free > 0);
        let told = Arc::new(Mutex::new(Vec::new()));
        let t = told.clone();
        let gauges = (Gauge::default(), Gauge::default());
        let w = DiskWatch::start(dir.clone(), u64::MAX, gauges.clone(), move |low, _| t.lock().unwrap().push(low));
        assert!(w.low().is_some_and(|(f, min)| f > 0 && min == u64::MAX));
        assert_eq!(gauges.1.get(), 1);
        assert!(gauges.0.get() > 0);
        w.look(&gauges, &|_, _| panic!("not a crossing"));
        assert_eq!(*told.lock().unwrap(), [true]);
        let ok = DiskWatch::start(dir, 0, gauges.clone(), |_, _| panic!("never low"));
        assert!(ok.low().is_none());
        assert_eq!(gauges.1.get(), 0);
    }

    #[test]
    fn it_is_back_to_normal_only_well_above_the_watermark() {
        assert_eq!(recovered(1024 << 20), (1024 << 20) + (1024 << 20) / 10);
        assert_eq!(recovered(4 << 20), (4 << 20) + (16 << 20), "at least 16 MiB above");
        assert_eq!(recovered(u64::MAX), u64::MAX);
    }
}
