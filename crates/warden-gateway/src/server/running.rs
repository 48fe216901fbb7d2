//! A request's run, kept on the task that received it.
//!
//! A transport that waits for a request's answer (the HTTP handler) drives the run itself with
//! [`Running::until`]: the request, the upstream call and the answer all happen on one task,
//! with no hand-over to another task (and so no wake-up of another worker thread) on the way in
//! or out. Dropped before it finished (the client went away, or the answer became an SSE stream
//! the handler no longer waits on), the run goes on as a task of its own: a disconnect is not a
//! cancellation; `notifications/cancelled` is ([`futures::future::AbortHandle`]).

use futures::future::BoxFuture;
use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll};

#[must_use = "dropping a run detaches it to a task of its own; `until` keeps it on this task"]
pub struct Running(Option<BoxFuture<'static, ()>>);

impl Running {
    pub fn new(run: BoxFuture<'static, ()>) -> Running {
        Running(Some(run))
    }

    /// Nothing to run (the request was refused before it started).
    pub fn done() -> Running {
        Running(None)
    }

    /// Wait for `f`, driving the run meanwhile (the run first: it may be what `f` waits for).
    pub async fn until<F: Future>(&mut self, f: F) -> F::Output {
        let mut f = std::pin::pin!(f);
        std::future::poll_fn(|cx| {
            self.poll_run(cx);
            f.as_mut().poll(cx)
        })
        .await
    }

    fn poll_run(&mut self, cx: &mut Context<'_>) {
        if let Some(run) = self.0.as_mut() {
            if run.as_mut().poll(cx).is_ready() {
                self.0 = None;
            }
        }
    }
}

impl Future for Running {
    type Output = ();
    /// Run to the end on this task.
    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<()> {
        self.poll_run(cx);
        if self.0.is_none() {
            Poll::Ready(())
        } else {
            Poll::Pending
        }
    }
}

impl Drop for Running {
    fn drop(&mut self) {
        if let Some(run) = self.0.take() {
            match tokio::runtime::Handle::try_current() {
                Ok(rt) => {
                    rt.spawn(run);
                }
                // No runtime: the process is stopping, and the run with it.
                Err(_) => tracing::debug!("request run dropped outside a runtime"),
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::{AtomicBool, Ordering};
    use std::sync::Arc;

    #[tokio::test]
    async fn a_run_dropped_before_its_end_goes_on_as_a_task() {
        let (tx, rx) = tokio::sync::oneshot::channel::<()>();
        let finished = Arc::new(AtomicBool::new(false));
        let f = finished.clone();
        let mut run = Running::new(Box::pin(async move {
            let _ = rx.await;
            f.store(true, Ordering::SeqCst);
        }));
        // The handler waits a little, then gives up waiting (an SSE upgrade, a disconnect).
        run.until(tokio::time::sleep(std::time::Duration::from_millis(10))).await;
        drop(run);
        tx.send(()).unwrap();
        for _ in 0..100 {
            if finished.load(Ordering::SeqCst) {
                return;
            }
            tokio::time::sleep(std::time::Duration::from_millis(5)).await;
        }
        panic!("the detached run never finished");
    }

    #[tokio::test(flavor = "current_thread")]
    async fn until_drives_the_run_on_this_task() {
        let (tx, rx) = tokio::sync::oneshot::channel::<u32>();
        let mut run = Running::new(Box::pin(async move {
            tokio::task::yield_now().await;
            let _ = tx.send(7);
        }));
        // Nothing else runs the run: only `until` can make the answer arrive.
        assert_eq!(run.until(rx).await.unwrap(), 7);
        assert!(run.0.is_none(), "finished runs are let go");
    }
}
