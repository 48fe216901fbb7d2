//! One run at a time of an expensive read-only job behind an admin endpoint (the config check,
//! which runs the sandbox helper; the audit trail's verification, which reads all of it), and
//! its last result kept for a while.
//!
//! A request finds the last result if it is recent enough (and of the same key: the config
//! generation), else joins the run in progress, else starts one on the blocking pool. It waits
//! for the run at most a given time; a run that takes longer goes on (it cannot be stopped) and
//! keeps its result for the next request. So however many requests come, at most one run of
//! each job is under way, and one result is kept.
//!
//! Defends against: an operator's page (or a loop) that asks again and again piling up runs of
//! a job that takes seconds and a process each. Does not defend against: a job that never ends
//! (the one run stays under way; the next requests join it and time out).

use parking_lot::Mutex;
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio::sync::watch;

/// A finished run: its result, and when it finished.
pub struct Done<T> {
    pub value: T,
    /// Seconds since the epoch.
    pub at: u64,
    finished: Instant,
    /// The key it was run for (a request joining a run under way gets its result, whatever
    /// its key).
    pub key: u64,
}

/// What a request gets.
pub enum Got<T> {
    /// A result: `cached` when it was there before the request.
    Ready { done: Arc<Done<T>>, cached: bool },
    /// The run did not finish in the time the request waits; it goes on.
    Running,
    /// The run failed (the job panicked); the next request starts another.
    Failed,
}

type Slot<T> = watch::Receiver<Option<Arc<Done<T>>>>;

struct State<T> {
    last: Option<Arc<Done<T>>>,
    running: Option<Slot<T>>,
}

pub struct Flight<T> {
    state: Mutex<State<T>>,
}

impl<T> Default for Flight<T> {
    fn default() -> Self {
        Flight { state: Mutex::new(State { last: None, running: None }) }
    }
}

/// How a request wants its result.
pub struct Want {
    /// The result must be of this key (a config generation); another key's is not reused.
    pub key: u64,
    /// A result older than this is run again.
    pub max_age: Duration,
    /// How long the request waits for a run.
    pub wait: Duration,
}

impl<T: Send + Sync + 'static> Flight<T> {
    /// The last result if it is young enough, else the result of the run under way or of a new
    /// one running `job` on the blocking pool.
    pub async fn get(self: &Arc<Self>, want: Want, job: impl FnOnce() -> T + Send + 'static) -> Got<T> {
        let mut slot = {
            let mut st = self.state.lock();
            if let Some(d) = st.last.as_ref().filter(|d| d.key == want.key && d.finished.elapsed() < want.max_age) {
                return Got::Ready { done: d.clone(), cached: true };
            }
            match &st.running {
                Some(slot) => slot.clone(),
                None => {
                    let (tx, slot) = watch::channel(None);
                    st.running = Some(slot.clone());
                    let (me, key) = (self.clone(), want.key);
                    tokio::spawn(async move {
                        let r = tokio::task::spawn_blocking(job).await;
                        let mut st = me.state.lock();
                        st.running = None;
                        if let Ok(value) = r {
                            let at = crate::clock::now_secs();
                            let d = Arc::new(Done { value, at, finished: Instant::now(), key });
                            st.last = Some(d.clone());
                            drop(st);
                            let _ = tx.send(Some(d));
                        }
                    });
                    slot
                }
            }
        };
        let waited = match tokio::time::timeout(want.wait, slot.wait_for(Option::is_some)).await {
            Ok(Ok(d)) => match d.clone() {
                Some(done) => Got::Ready { done, cached: false },
                None => Got::Failed,
            },
            Ok(Err(_)) => Got::Failed,
            Err(_) => Got::Running,
        };
        waited
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::{AtomicUsize, Ordering};

    fn want(key: u64, max_age: u64, wait_ms: u64) -> Want {
        Want { key, max_age: Duration::from_secs(max_age), wait: Duration::from_millis(wait_ms) }
    }

    #[tokio::test]
    async fn concurrent_requests_share_one_run_and_its_result_is_kept() {
        let f = Arc::new(Flight::<usize>::default());
        let runs = Arc::new(AtomicUsize::new(0));
        let job = |runs: Arc<AtomicUsize>| {
            move || {
                std::thread::sleep(Duration::from_millis(200));
                runs.fetch_add(1, Ordering::SeqCst) + 1
            }
        };
        let (a, b) =
            tokio::join!(f.get(want(1, 60, 5000), job(runs.clone())), f.get(want(1, 60, 5000), job(runs.clone())));
        for g in [a, b] {
            assert!(matches!(g, Got::Ready { ref done, cached: false } if done.value == 1));
        }
        assert!(matches!(f.get(want(1, 60, 5000), job(runs.clone())).await, Got::Ready { cached: true, .. }));
        // Another generation's result is not reused; a slow run is left running.
        assert!(matches!(f.get(want(2, 60, 10), job(runs.clone())).await, Got::Running));
        assert!(
            matches!(f.get(want(2, 60, 5000), job(runs.clone())).await, Got::Ready { ref done, .. } if done.value == 2)
        );
        assert_eq!(runs.load(Ordering::SeqCst), 2);
    }
}
