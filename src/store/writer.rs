//! The batch writer: deferred writes queue up and are written in one transaction when
//! [`BATCH_MAX`] are waiting or [`BATCH_DELAY`] after the first, so a burst of messages costs
//! one commit, not one per message.
//!
//! The queue holds [`QUEUE_MAX`] writes. Deferred writes are the log and bookkeeping, never
//! something a user is owed, so when the database falls that far behind, new writes are dropped
//! and counted (and the count logged) rather than letting memory grow or the hot path wait.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use tokio::sync::{mpsc, oneshot};

use super::{Backend, Deferred, StoreError};

/// Writes queued before new ones are dropped.
pub const QUEUE_MAX: usize = 65_536;
/// Most writes in one transaction.
pub const BATCH_MAX: usize = 512;
/// Longest a write waits for company.
pub const BATCH_DELAY: Duration = Duration::from_millis(100);

enum Op {
    Write(Deferred),
    Flush(oneshot::Sender<()>),
}

/// The sending side; the task ends when every clone is dropped.
#[derive(Clone)]
pub struct Writer {
    tx: mpsc::Sender<Op>,
    dropped: Arc<AtomicU64>,
}

impl Writer {
    /// Starts the writer task for `backend`.
    pub fn spawn(backend: Arc<dyn Backend>) -> Self {
        let (tx, rx) = mpsc::channel(QUEUE_MAX);
        tokio::spawn(run(rx, backend));
        Self {
            tx,
            dropped: Arc::new(AtomicU64::new(0)),
        }
    }

    /// Queues a write without waiting.
    pub fn defer(&self, write: Deferred) {
        if self.tx.try_send(Op::Write(write)).is_err() {
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
        self.tx
            .send(Op::Flush(ack))
            .await
            .map_err(|_| StoreError::WriterGone)?;
        done.await.map_err(|_| StoreError::WriterGone)
    }

    /// Writes dropped because the queue was full.
    pub fn dropped(&self) -> u64 {
        self.dropped.load(Ordering::Relaxed)
    }
}

async fn run(mut rx: mpsc::Receiver<Op>, backend: Arc<dyn Backend>) {
    let mut batch: Vec<Deferred> = Vec::with_capacity(BATCH_MAX);
    while let Some(first) = rx.recv().await {
        let mut acks = Vec::new();
        match first {
            Op::Write(w) => batch.push(w),
            Op::Flush(ack) => acks.push(ack),
        }
        let deadline = tokio::time::Instant::now() + BATCH_DELAY;
        // Gather company until the batch is full, the delay is over, or someone waits on it.
        while acks.is_empty() && batch.len() < BATCH_MAX {
            tokio::select! {
                op = rx.recv() => match op {
                    Some(Op::Write(w)) => batch.push(w),
                    Some(Op::Flush(ack)) => acks.push(ack),
                    None => break,
                },
                () = tokio::time::sleep_until(deadline) => break,
            }
        }
        if !batch.is_empty() {
            write(backend.as_ref(), &batch).await;
            batch.clear();
        }
        for ack in acks {
            let _ = ack.send(());
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
