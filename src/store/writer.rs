//! The batch writer: deferred writes queue up and are written every [`BATCH_DELAY`], in
//! transactions of up to [`BATCH_MAX`], so a burst of messages costs one commit, not one per
//! message, and queueing a write never wakes a thread.
//!
//! The queue holds [`QUEUE_MAX`] writes. Deferred writes are the log, bookkeeping and records
//! other processes read (dedup records, the replay guard's), never something a user is owed:
//! when the database falls that far behind, new writes are dropped and counted (and the count
//! logged) rather than letting memory grow or the hot path wait. A dropped dedup or replay
//! record weakens only what other processes know; this process still has it in memory.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use tokio::sync::{mpsc, oneshot};

use super::{Backend, Deferred, StoreError};

/// Writes queued before new ones are dropped.
pub const QUEUE_MAX: usize = 65_536;
/// Most writes in one transaction.
pub const BATCH_MAX: usize = 4_096;
/// Longest a write waits for company.
pub const BATCH_DELAY: Duration = Duration::from_millis(100);

/// The sending side; the task ends when every clone is dropped.
#[derive(Clone)]
pub struct Writer {
    tx: mpsc::Sender<Deferred>,
    flush: mpsc::Sender<oneshot::Sender<()>>,
    dropped: Arc<AtomicU64>,
}

impl Writer {
    /// Starts the writer task for `backend`.
    pub fn spawn(backend: Arc<dyn Backend>) -> Self {
        let (tx, rx) = mpsc::channel(QUEUE_MAX);
        let (flush, flushes) = mpsc::channel(64);
        tokio::spawn(run(rx, flushes, backend));
        Self {
            tx,
            flush,
            dropped: Arc::new(AtomicU64::new(0)),
        }
    }

    /// Queues a write without waiting (and without waking the writer: it drains the queue on
    /// its own schedule, so a busy server pays no thread switch per write).
    pub fn defer(&self, write: Deferred) {
        if self.tx.try_send(write).is_err() {
            let n = self.dropped.fetch_add(1, Ordering::Relaxed) + 1;
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
        self.dropped.load(Ordering::Relaxed)
    }
}

/// Every [`BATCH_DELAY`], or at once when someone waits on a flush, drains the queue in
/// transactions of at most [`BATCH_MAX`] writes. Stops when every sender is gone.
async fn run(
    mut rx: mpsc::Receiver<Deferred>,
    mut flushes: mpsc::Receiver<oneshot::Sender<()>>,
    backend: Arc<dyn Backend>,
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
                    drain(&mut rx, &mut batch, backend.as_ref()).await;
                    return;
                }
            },
        }
        let closed = drain(&mut rx, &mut batch, backend.as_ref()).await;
        for ack in acks {
            let _ = ack.send(());
        }
        if closed {
            return;
        }
    }
}

/// Writes everything queued, in batches; true when the queue is closed.
async fn drain(
    rx: &mut mpsc::Receiver<Deferred>,
    batch: &mut Vec<Deferred>,
    backend: &dyn Backend,
) -> bool {
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
        write(backend, batch).await;
        batch.clear();
        if closed || !full {
            return closed;
        }
    }
}

/// Writes a batch, retrying once after a pause (a locked database, a full disk being freed).
async fn write(backend: &dyn Backend, batch: &[Deferred]) {
    if let Err(first) = backend.write_batch(batch).await {
        tracing::warn!(error = %first, writes = batch.len(), "batch write failed; retrying");
        tokio::time::sleep(Duration::from_millis(500)).await;
        if let Err(e) = backend.write_batch(batch).await {
            tracing::error!(error = %e, writes = batch.len(), "batch write failed twice; these writes are lost");
        }
    }
}
