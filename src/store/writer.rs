//! The batch writer: deferred writes queue up and are written every [`BATCH_DELAY`], in
//! transactions of up to [`BATCH_MAX`], so a burst of messages costs one commit, not one per
//! message, and queueing a write never wakes a thread.
//!
//! The queue holds [`QUEUE_MAX`] writes. Deferred writes are the log, bookkeeping and records
//! other processes read (dedup records, the replay guard's), never something a user is owed:
//! when the database falls that far behind, new writes are dropped and counted (and the count
//! logged) rather than letting memory grow or the hot path wait. A dropped dedup or replay
//! record weakens only what other processes know; this process still has it in memory.
//!
//! The writer counts what it does in plain atomics ([`WriterStats`]), which the app's metrics
//! read at scrape time; a batch given up is also told to the error hook, if one is set
//! ([`Writer::set_error_hook`]).

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, RwLock};
use std::time::Duration;

use tokio::sync::{mpsc, oneshot};

use super::{Backend, Deferred, StoreError};

/// Writes queued before new ones are dropped.
pub const QUEUE_MAX: usize = 65_536;
/// Most writes in one transaction.
pub const BATCH_MAX: usize = 4_096;
/// Longest a write waits for company.
pub const BATCH_DELAY: Duration = Duration::from_millis(100);

/// Told of every batch the writer gives up (the error, the number of writes lost).
pub type ErrorHook = Arc<dyn Fn(&StoreError, usize) + Send + Sync>;

/// What the writer counts, shared with its task.
#[derive(Default)]
struct Counters {
    batches: AtomicU64,
    writes: AtomicU64,
    lost: AtomicU64,
    dropped: AtomicU64,
}

/// The error hook, shared with the task. Kept apart from [`Counters`]: a hook holding the
/// metrics that read the counters must not make a cycle of them.
type HookSlot = Arc<RwLock<Option<ErrorHook>>>;

/// The sending side; the task ends when every clone is dropped.
#[derive(Clone)]
pub struct Writer {
    tx: mpsc::Sender<Deferred>,
    flush: mpsc::Sender<oneshot::Sender<()>>,
    counters: Arc<Counters>,
    hook: HookSlot,
}

/// A view of a writer's counters that does not keep the writer alive: batches, writes, writes
/// lost and dropped, and the queue's length now. Cheap to clone and to read.
#[derive(Clone)]
pub struct WriterStats {
    counters: Arc<Counters>,
    queue: mpsc::WeakSender<Deferred>,
}

impl std::fmt::Debug for WriterStats {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("WriterStats")
            .field("now", &self.snapshot())
            .finish()
    }
}

impl WriterStats {
    /// The counters now (the queue's length is 0 once the writer is gone).
    pub fn snapshot(&self) -> crate::metrics::StoreStats {
        let c = &self.counters;
        let queued = self
            .queue
            .upgrade()
            .map_or(0, |tx| tx.max_capacity() - tx.capacity());
        crate::metrics::StoreStats {
            batches: c.batches.load(Ordering::Relaxed),
            writes: c.writes.load(Ordering::Relaxed),
            lost: c.lost.load(Ordering::Relaxed),
            dropped: c.dropped.load(Ordering::Relaxed),
            queued: u64::try_from(queued).unwrap_or(u64::MAX),
        }
    }
}

impl Writer {
    /// Starts the writer task for `backend`.
    pub fn spawn(backend: Arc<dyn Backend>) -> Self {
        let (tx, rx) = mpsc::channel(QUEUE_MAX);
        let (flush, flushes) = mpsc::channel(64);
        let counters = Arc::new(Counters::default());
        let hook = HookSlot::default();
        let task = Task {
            backend,
            counters: Arc::clone(&counters),
            hook: Arc::clone(&hook),
        };
        tokio::spawn(run(rx, flushes, task));
        Self {
            tx,
            flush,
            counters,
            hook,
        }
    }

    /// Its counters, for metrics.
    pub fn stats(&self) -> WriterStats {
        WriterStats {
            counters: Arc::clone(&self.counters),
            queue: self.tx.downgrade(),
        }
    }

    /// Calls `hook` whenever a batch is given up (after its retry failed). It runs on the
    /// writer's task: it must not block. The last hook set wins.
    pub fn set_error_hook(&self, hook: ErrorHook) {
        *self.hook.write().unwrap_or_else(|p| p.into_inner()) = Some(hook);
    }

    /// Queues a write without waiting (and without waking the writer: it drains the queue on
    /// its own schedule, so a busy server pays no thread switch per write).
    pub fn defer(&self, write: Deferred) {
        if self.tx.try_send(write).is_err() {
            let n = self.counters.dropped.fetch_add(1, Ordering::Relaxed) + 1;
            if n == 1 || n.is_power_of_two() {
                tracing::warn!(
                    dropped = n,
                    "store writer queue full: deferred writes dropped"
                );
            }
        }
    }

    /// Writes what is queued and waits until it is written (or failed and logged).
    pub async fn flush(&self) -> Result<(), StoreError> {
        let (ack, done) = oneshot::channel();
        self.flush
            .send(ack)
            .await
            .map_err(|_| StoreError::WriterGone)?;
        done.await.map_err(|_| StoreError::WriterGone)
    }

    /// Writes dropped because the queue was full.
    pub fn dropped(&self) -> u64 {
        self.counters.dropped.load(Ordering::Relaxed)
    }
}

/// Every [`BATCH_DELAY`], or at once when someone waits on a flush, drains the queue in
/// transactions of at most [`BATCH_MAX`] writes. Stops when every sender is gone.
/// What the writer's task works with.
struct Task {
    backend: Arc<dyn Backend>,
    counters: Arc<Counters>,
    hook: HookSlot,
}

async fn run(
    mut rx: mpsc::Receiver<Deferred>,
    mut flushes: mpsc::Receiver<oneshot::Sender<()>>,
    task: Task,
) {
    let mut tick = tokio::time::interval(BATCH_DELAY);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut batch: Vec<Deferred> = Vec::with_capacity(BATCH_MAX);
    loop {
        let mut acks = Vec::new();
        tokio::select! {
            _ = tick.tick() => {}
            ack = flushes.recv() => match ack {
                Some(ack) => acks.push(ack),
                // No handle left to flush through: the store was dropped. Write what is
                // left and stop.
                None => {
                    drain(&mut rx, &mut batch, &task).await;
                    return;
                }
            },
        }
        let closed = drain(&mut rx, &mut batch, &task).await;
        for ack in acks {
            let _ = ack.send(());
        }
        if closed {
            return;
        }
    }
}

/// Writes everything queued, in batches; true when the queue is closed.
async fn drain(rx: &mut mpsc::Receiver<Deferred>, batch: &mut Vec<Deferred>, task: &Task) -> bool {
    loop {
        let closed = loop {
            match rx.try_recv() {
                Ok(w) => {
                    batch.push(w);
                    if batch.len() >= BATCH_MAX {
                        break false;
                    }
                }
                Err(mpsc::error::TryRecvError::Empty) => break false,
                Err(mpsc::error::TryRecvError::Disconnected) => break true,
            }
        };
        if batch.is_empty() {
            return closed;
        }
        let full = batch.len() >= BATCH_MAX;
        write(task, batch).await;
        batch.clear();
        if closed || !full {
            return closed;
        }
    }
}

/// Writes a batch, retrying once after a pause (a locked database, a full disk being freed).
async fn write(task: &Task, batch: &[Deferred]) {
    let (backend, counters) = (task.backend.as_ref(), &task.counters);
    let writes = u64::try_from(batch.len()).unwrap_or(u64::MAX);
    counters.batches.fetch_add(1, Ordering::Relaxed);
    counters.writes.fetch_add(writes, Ordering::Relaxed);
    if let Err(first) = backend.write_batch(batch).await {
        tracing::warn!(error = %first, writes = batch.len(), "batch write failed; retrying");
        tokio::time::sleep(Duration::from_millis(500)).await;
        if let Err(e) = backend.write_batch(batch).await {
            tracing::error!(error = %e, writes = batch.len(), "batch write failed twice; these writes are lost");
            counters.lost.fetch_add(writes, Ordering::Relaxed);
            let hook = task.hook.read().unwrap_or_else(|p| p.into_inner()).clone();
            if let Some(hook) = hook {
                hook(&e, batch.len());
            }
        }
    }
}
