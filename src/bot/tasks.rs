//! Work an app started that outlives the request or call that started it, owned by that app:
//!
//! - **work** ([`Tasks::spawn`]): a first attempt still running when WeChat gives up on the
//!   connection, a reply finishing after the deadline, a send a rule asked for. Shutdown waits
//!   for it ([`Tasks::wait_idle`]) before the store's queue is flushed, so a reply already
//!   accepted is delivered (or its failure logged) rather than cut off.
//! - **background loops** ([`Tasks::spawn_loop`]): the rules watcher, the blocklist and dedup
//!   readers, pruning. They run until [`Tasks::stop_loops`], which shutdown calls once the
//!   work is done, and then end between two iterations.
//!
//! Each app has its own [`Tasks`]; two apps in one process (tests start many) never wait for
//! each other's work. A [`Tasks`] made with [`Tasks::default`] (a router dispatched by hand, a
//! rule run in a test) tracks its work the same way; nobody has to wait for it.

use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::Duration;

use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

/// The work and background loops of one app. Cheap to clone; clones share the same tasks.
#[derive(Debug, Clone, Default)]
pub struct Tasks {
    work: TaskTracker,
    loops: TaskTracker,
    stop: CancellationToken,
}

impl Tasks {
    /// A new, empty set.
    pub fn new() -> Self {
        Self::default()
    }

    /// Spawns `task` as work: counted until it ends, and waited for at shutdown.
    pub fn spawn<F>(&self, task: F) -> JoinHandle<F::Output>
    where
        F: Future + Send + 'static,
        F::Output: Send + 'static,
    {
        self.work.spawn(task)
    }

    /// Runs `task` in place, as part of the awaiting future; if that future is dropped before
    /// `task` ends (WeChat closed the connection), what is left of `task` is spawned as work
    /// and runs to its end. The same guarantee as [`Tasks::spawn`] without a task per call
    /// when it ends in time.
    pub fn finish_if_dropped<F>(&self, task: F) -> Finish<F>
    where
        F: Future + Send + 'static,
        F::Output: Send + 'static,
    {
        Finish {
            task: Some(Box::pin(task)),
            tasks: self.clone(),
        }
    }

    /// Work running now.
    pub fn active(&self) -> usize {
        self.work.len()
    }

    /// Waits until no work runs, or `limit` passes; true when idle. Work spawned while it
    /// waits (a late reply's own send) is waited for too.
    pub async fn wait_idle(&self, limit: Duration) -> bool {
        self.work.close();
        let idle = tokio::time::timeout(limit, self.work.wait()).await.is_ok();
        // Still usable afterwards (a router dispatched again by hand).
        self.work.reopen();
        idle
    }

    /// Spawns a background loop: `task` is dropped at its next `.await` once
    /// [`Tasks::stop_loops`] is called.
    pub fn spawn_loop<F>(&self, name: &'static str, task: F)
    where
        F: Future<Output = ()> + Send + 'static,
    {
        let stop = self.stop.clone();
        self.loops.spawn(async move {
            tokio::select! {
                () = stop.cancelled() => tracing::debug!(task = name, "background task stopped"),
                () = task => {}
            }
        });
    }

    /// A future that completes when the loops are told to stop (for loops that stop on
    /// their own terms, like the push worker handing back its claims).
    pub fn stopping(&self) -> impl Future<Output = ()> + Send + 'static {
        self.stop.clone().cancelled_owned()
    }

    /// Whether [`Tasks::stop_loops`] was called.
    pub fn is_stopping(&self) -> bool {
        self.stop.is_cancelled()
    }

    /// Tells the background loops (and whatever waits on [`Tasks::stopping`]) to stop.
    pub fn stop(&self) {
        self.stop.cancel();
        self.loops.close();
    }

    /// Stops the background loops and waits (up to `limit`) until they ended; true when
    /// they did.
    pub async fn stop_loops(&self, limit: Duration) -> bool {
        self.stop();
        tokio::time::timeout(limit, self.loops.wait()).await.is_ok()
    }
}

/// A task run in place that finishes as work if dropped early ([`Tasks::finish_if_dropped`]).
pub struct Finish<F>
where
    F: Future + Send + 'static,
    F::Output: Send + 'static,
{
    task: Option<Pin<Box<F>>>,
    tasks: Tasks,
}

impl<F> Future for Finish<F>
where
    F: Future + Send + 'static,
    F::Output: Send + 'static,
{
    type Output = F::Output;

    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<F::Output> {
        let Some(task) = self.task.as_mut() else {
            panic!("`Finish` polled after it completed");
        };
        let output = std::task::ready!(task.as_mut().poll(cx));
        self.task = None;
        Poll::Ready(output)
    }
}

impl<F> Drop for Finish<F>
where
    F: Future + Send + 'static,
    F::Output: Send + 'static,
{
    fn drop(&mut self) {
        if let Some(task) = self.task.take() {
            // Outside a runtime (it is being torn down) nothing can run it any more.
            if tokio::runtime::Handle::try_current().is_ok() {
                self.tasks.spawn(async move {
                    task.await;
                });
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn two_sets_wait_only_for_their_own_work() {
        let a = Tasks::new();
        let b = Tasks::new();
        let (tx, rx) = tokio::sync::oneshot::channel::<()>();
        a.spawn(async move {
            let _ = rx.await;
        });
        assert_eq!(a.active(), 1);
        assert!(
            b.wait_idle(Duration::from_millis(10)).await,
            "b has no work"
        );
        assert!(
            !a.wait_idle(Duration::from_millis(10)).await,
            "a still works"
        );
        tx.send(()).unwrap();
        assert!(a.wait_idle(Duration::from_secs(5)).await);
        assert_eq!(a.active(), 0);
    }

    #[tokio::test]
    async fn loops_end_when_stopped() {
        let tasks = Tasks::new();
        tasks.spawn_loop("forever", std::future::pending());
        let stopping = tasks.stopping();
        assert!(!tasks.is_stopping());
        assert!(tasks.stop_loops(Duration::from_secs(5)).await);
        stopping.await;
    }
}
