//! Pipeline work that outlives its request: a first attempt still running when WeChat gives up
//! on the connection, a reply finishing after the deadline. Spawned through [`spawn`], it is
//! counted, and shutdown waits for it ([`wait_idle`]) before the store's queue is flushed, so
//! a reply already accepted is delivered (or its failure logged) rather than cut off.

use std::future::Future;
use std::sync::LazyLock;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use tokio::sync::Notify;
use tokio::task::JoinHandle;

struct Tracker {
    active: AtomicUsize,
    idle: Notify,
}

static TRACKER: LazyLock<Tracker> = LazyLock::new(|| Tracker {
    active: AtomicUsize::new(0),
    idle: Notify::new(),
});

/// Counts one running task; uncounts it when dropped (finished, failed or panicked).
struct Counted;

impl Drop for Counted {
    fn drop(&mut self) {
        if TRACKER.active.fetch_sub(1, Ordering::SeqCst) == 1 {
            TRACKER.idle.notify_waiters();
        }
    }
}

/// Spawns `task`, counted until it ends.
pub fn spawn<F>(task: F) -> JoinHandle<F::Output>
where
    F: Future + Send + 'static,
    F::Output: Send + 'static,
{
    TRACKER.active.fetch_add(1, Ordering::SeqCst);
    let counted = Counted;
    tokio::spawn(async move {
        let _counted = counted;
        task.await
    })
}

/// Tasks running now.
pub fn active() -> usize {
    TRACKER.active.load(Ordering::SeqCst)
}

/// Waits until no task runs, or `limit` passes; true when idle.
pub async fn wait_idle(limit: Duration) -> bool {
    let wait = async {
        loop {
            let notified = TRACKER.idle.notified();
            if active() == 0 {
                return;
            }
            notified.await;
        }
    };
    tokio::time::timeout(limit, wait).await.is_ok()
}
