//! The delivery worker: claims due deliveries from the outbox with a lease (so several
//! processes share the work, and a dead one's deliveries are taken over once its lease runs
//! out), sends up to `[apps] webhook_concurrency` at once, and records each attempt.
//!
//! It claims only as many deliveries as it can start at once, so a claimed delivery never
//! waits for a free slot: its attempt always ends (within `webhook_timeout_ms`) inside its
//! lease. It wakes when deliveries are stored or settled, when the next retry or expired lease
//! is due, and at least every second (other processes on one database store deliveries too).

use std::sync::Arc;
use std::time::Duration;

use tokio::sync::{OwnedSemaphorePermit, Semaphore, mpsc};
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

use super::{Webhooks, millis, now_ms, send};
use crate::store::apps::{DeliveryOutcome, DeliveryResult, DeliveryRow};

/// How often the worker looks for due work when nothing woke it.
const POLL: Duration = Duration::from_secs(1);
/// Outcomes recorded in one transaction at most.
const SETTLE_BATCH: usize = 256;
/// How long shutdown waits, beyond an attempt's timeout, for the attempts in flight.
const FINISH_GRACE: Duration = Duration::from_secs(5);

/// Starts the worker; it runs until `shutdown` completes, then lets the attempts in flight
/// finish (each within its timeout), records them, and hands back what it claimed but did not
/// start.
pub fn spawn(
    webhooks: Webhooks,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> JoinHandle<()> {
    let stop = CancellationToken::new();
    let stopper = stop.clone();
    tokio::spawn(async move {
        shutdown.await;
        stopper.cancel();
    });
    let worker = Worker::new(webhooks, stop);
    tokio::spawn(worker.run())
}

struct Worker {
    webhooks: Webhooks,
    stop: CancellationToken,
    sends: Arc<Semaphore>,
    concurrency: usize,
    outcomes: mpsc::UnboundedSender<DeliveryOutcome>,
    settler: JoinHandle<()>,
}

impl Worker {
    fn new(webhooks: Webhooks, stop: CancellationToken) -> Self {
        let concurrency = webhooks.config().webhook_concurrency.max(1) as usize;
        let (outcomes, pending) = mpsc::unbounded_channel();
        let settler = tokio::spawn(settler(webhooks.clone(), pending));
        Self {
            webhooks,
            stop,
            sends: Arc::new(Semaphore::new(concurrency)),
            concurrency,
            outcomes,
            settler,
        }
    }

    async fn run(self) {
        // Nothing is claimed before something is due: a claim is a write, and an idle
        // process writes nothing.
        if self.wait().await.is_break() {
            self.finish().await;
            return;
        }
        loop {
            // A free slot first: what is claimed starts at once.
            let first = tokio::select! {
                biased;
                () = self.stop.cancelled() => break,
                permit = Arc::clone(&self.sends).acquire_owned() => match permit {
                    Ok(p) => p,
                    Err(_) => break,
                },
            };
            let mut permits = vec![first];
            while permits.len() < self.concurrency {
                match Arc::clone(&self.sends).try_acquire_owned() {
                    Ok(p) => permits.push(p),
                    Err(_) => break,
                }
            }
            let asked = permits.len();
            // Not raced against the shutdown: a claim the database made must be used or
            // handed back, never dropped half-way.
            let Some(claimed) = self.claim(asked).await else {
                drop(permits);
                // The store failed (logged): again after a pause, not in a tight loop.
                tokio::select! {
                    () = self.stop.cancelled() => break,
                    () = tokio::time::sleep(POLL) => {}
                }
                continue;
            };
            if self.stop.is_cancelled() {
                self.release(&claimed);
                break;
            }
            // Fewer than asked for: nothing else is due now.
            let caught_up = claimed.len() < asked;
            for row in claimed {
                let Some(permit) = permits.pop() else {
                    // Never: the claim asks for no more than the permits held.
                    self.release(std::slice::from_ref(&row));
                    continue;
                };
                self.start(row, permit);
            }
            drop(permits);
            if caught_up && self.wait().await.is_break() {
                break;
            }
        }
        self.finish().await;
    }

    /// Claims up to `limit` due deliveries; `None` when the store failed.
    async fn claim(&self, limit: usize) -> Option<Vec<DeliveryRow>> {
        let now = now_ms();
        let lease_until = now.saturating_add(millis(self.webhooks.lease()));
        let limit = u32::try_from(limit).unwrap_or(u32::MAX);
        match self
            .webhooks
            .store()
            .backend()
            .webhook_claim(self.webhooks.owner(), now, lease_until, limit)
            .await
        {
            Ok(claimed) => Some(claimed),
            Err(e) => {
                tracing::error!(error = %e, "webhooks: cannot claim deliveries; retrying");
                None
            }
        }
    }

    /// Sends one claimed delivery on its own task.
    fn start(&self, row: DeliveryRow, permit: OwnedSemaphorePermit) {
        let webhooks = self.webhooks.clone();
        let outcomes = self.outcomes.clone();
        tokio::spawn(async move {
            let attempted = send::attempt(&webhooks, &row).await;
            // The settler outlives every sender, so this cannot fail while the worker runs.
            let _ = outcomes.send(attempted.outcome);
            drop(permit);
            webhooks.hand_over(&row, attempted.answer);
        });
    }

    /// Sleeps until woken (deliveries stored, attempts recorded) or until a delivery is due
    /// (a retry, an expired lease, one another process stored), looking at least every
    /// [`POLL`]; `Break` at shutdown. Only a read while nothing is due: claiming is a write,
    /// and an idle worker must not write (nor mask a failing disk by writing nothing
    /// successfully).
    async fn wait(&self) -> std::ops::ControlFlow<()> {
        loop {
            let wait = match self.webhooks.store().backend().webhook_next_due().await {
                Ok(Some(at)) if at <= now_ms() => return std::ops::ControlFlow::Continue(()),
                Ok(Some(at)) => {
                    let ms = (at - now_ms()).clamp(10, millis(POLL));
                    Duration::from_millis(u64::try_from(ms).unwrap_or(10))
                }
                _ => POLL,
            };
            tokio::select! {
                () = self.stop.cancelled() => return std::ops::ControlFlow::Break(()),
                () = self.webhooks.woken() => return std::ops::ControlFlow::Continue(()),
                () = tokio::time::sleep(wait) => {}
            }
        }
    }

    /// Hands back claimed deliveries that were not started (at shutdown).
    fn release(&self, unstarted: &[DeliveryRow]) {
        for row in unstarted {
            let _ = self.outcomes.send(DeliveryOutcome {
                seq: row.seq,
                at: now_ms(),
                duration_ms: 0,
                status: None,
                result: DeliveryResult::Released,
            });
        }
    }

    /// Waits for the attempts in flight (each ends within its timeout), then for their
    /// outcomes to be written.
    async fn finish(self) {
        let all = u32::try_from(self.concurrency).unwrap_or(u32::MAX);
        let grace = Duration::from_millis(self.webhooks.config().webhook_timeout_ms) + FINISH_GRACE;
        let in_flight = Arc::clone(&self.sends).acquire_many_owned(all);
        if tokio::time::timeout(grace, in_flight).await.is_err() {
            tracing::warn!("webhook attempts still in flight at shutdown are abandoned");
        }
        // The settler ends once every sender is gone: ours here, the attempts' as they ended.
        drop(self.outcomes);
        let _ = tokio::time::timeout(FINISH_GRACE, self.settler).await;
    }
}

/// Writes outcomes as they come, in batches, until every sender is gone.
async fn settler(webhooks: Webhooks, mut pending: mpsc::UnboundedReceiver<DeliveryOutcome>) {
    let mut batch = Vec::with_capacity(SETTLE_BATCH);
    while pending.recv_many(&mut batch, SETTLE_BATCH).await > 0 {
        webhooks.settle(&batch).await;
        batch.clear();
    }
}
