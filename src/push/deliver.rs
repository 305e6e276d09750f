//! The delivery worker: claims due recipients from the store (a lease, so several processes
//! share the work and a dead one's rows are taken over), sends each a template message with
//! its own `client_msg_id` (the same on every attempt, so WeChat never shows a recipient one
//! push twice), and records the outcome: `sent`, a retry with backoff for transient failures,
//! or `failed` for permanent ones. `TEMPLATESENDJOBFINISH` later settles `sent` recipients
//! ([`job_finished`]).

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use tokio::sync::{Semaphore, mpsc};
use tokio::task::JoinHandle;
use tokio::time::Instant;

use super::render::{TEMPLATE_FIELD_MAX_CHARS, summary, template_value};
use super::service::{Pushes, Settled};
use crate::bot::tasks::Tasks;
use crate::outbound::{ApiError, Client, TemplateMessage};
use crate::store::push::{Attempt, Claimed, Outcome, PushRow};
use crate::support::clock::unix_now;
use crate::wechat::message::SendStatus;

/// How often the worker looks for due work when nothing woke it (other processes' pushes,
/// retries coming due).
const POLL: Duration = Duration::from_secs(1);
/// How long the worker, woken by an accepted push, lets more pushes gather before it claims:
/// a busy server's pushes are then claimed many at a time instead of one claim each.
const GATHER: Duration = Duration::from_millis(5);
/// The longest wait between two tries.
const MAX_BACKOFF: Duration = Duration::from_secs(600);
/// Pushes kept in the worker's cache (each as its template message, built once for all its
/// recipients: a topic push's summary is rendered once, not once per member).
const CACHE: usize = 256;
/// Outcomes recorded in one transaction at most. Outcomes wait for the write in progress and
/// then go together, so a busy worker writes once per batch rather than once per send.
const SETTLE_BATCH: usize = 256;

/// WeChat errors worth another try later: busy, frequency limits, and token errors the
/// client's own refresh could not cure (another program holding the AppSecret).
const TRANSIENT: &[i64] = &[-1, 40001, 40014, 42001, 45011, 45047];

/// Starts the worker; it runs until `shutdown` completes, then lets sends in flight finish
/// and hands back the recipients it claimed but did not start.
pub fn spawn(
    pushes: Pushes,
    client: Client,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> tokio::task::JoinHandle<()> {
    let worker = Worker::new(pushes, client);
    tokio::spawn(worker.run(shutdown))
}

struct Worker {
    pushes: Pushes,
    client: Client,
    owner: String,
    sends: Arc<Semaphore>,
    concurrency: u32,
    claim_size: u32,
    interval: Option<Duration>,
    cache: HashMap<i64, Arc<TemplateMessage>>,
    outcomes: mpsc::UnboundedSender<Outcome>,
    settler: JoinHandle<()>,
}

impl Worker {
    fn new(pushes: Pushes, client: Client) -> Self {
        let config = pushes.config();
        let concurrency = config.concurrency;
        let interval = match config.rate_per_second {
            0 => None,
            n => Some(Duration::from_secs_f64(1.0 / f64::from(n))),
        };
        let (outcomes, pending) = mpsc::unbounded_channel();
        let owner = format!("push-{}", crate::store::generate_token());
        let settler = tokio::spawn(settler(pushes.clone(), owner.clone(), pending));
        Self {
            outcomes,
            settler,
            owner,
            sends: Arc::new(Semaphore::new(concurrency as usize)),
            concurrency,
            claim_size: claim_size(config),
            interval,
            cache: HashMap::new(),
            pushes,
            client,
        }
    }

    async fn run(mut self, shutdown: impl Future<Output = ()> + Send + 'static) {
        tokio::pin!(shutdown);
        let mut next_start = Instant::now();
        loop {
            let claimed = tokio::select! {
                biased;
                () = &mut shutdown => break,
                claimed = self.claim() => claimed,
            };
            let Some(claimed) = claimed else {
                // The store failed (logged): try again after a pause, not in a tight loop.
                tokio::select! {
                    () = &mut shutdown => break,
                    () = tokio::time::sleep(POLL) => {}
                }
                continue;
            };
            // Fewer than asked for: nothing else is due now, so the next claim waits for a
            // push, a retry or a lease coming due instead of finding nothing at once.
            let caught_up = claimed.len() < self.claim_size as usize;
            if claimed.is_empty() {
                if self.wait(&mut shutdown).await.is_break() {
                    break;
                }
                continue;
            }
            self.prefetch(&claimed).await;
            for (i, recipient) in claimed.iter().enumerate() {
                // The rate: starts spaced by the interval.
                if let Some(interval) = self.interval {
                    let now = Instant::now();
                    if next_start > now {
                        tokio::select! {
                            () = &mut shutdown => {
                                self.release(&claimed[i..]);
                                return self.finish().await;
                            }
                            () = tokio::time::sleep_until(next_start) => {}
                        }
                    }
                    next_start = next_start.max(now) + interval;
                }
                let permit = tokio::select! {
                    () = &mut shutdown => {
                        self.release(&claimed[i..]);
                        return self.finish().await;
                    }
                    permit = Arc::clone(&self.sends).acquire_owned() => match permit {
                        Ok(p) => p,
                        Err(_) => return,
                    },
                };
                let push = match self.push(recipient.push_seq).await {
                    Ok(Some(push)) => push,
                    Ok(None) => {
                        // Purged while waiting: nothing to send.
                        record(
                            &self.outcomes,
                            recipient,
                            Attempt::Failed {
                                error: "the push was deleted before delivery".into(),
                            },
                        );
                        continue;
                    }
                    Err(e) => {
                        // The store is busy or away: the recipient waits and is tried again.
                        tracing::error!(error = %e, seq = recipient.push_seq, "push delivery: cannot read the push");
                        let retry_ms = i64::try_from(self.pushes.config().retry_backoff_ms)
                            .unwrap_or(i64::MAX);
                        record(
                            &self.outcomes,
                            recipient,
                            Attempt::Retry {
                                next_at: now_ms().saturating_add(retry_ms),
                                error: format!("store: {e}"),
                            },
                        );
                        continue;
                    }
                };
                let mut message = TemplateMessage::clone(&push);
                message.touser.clone_from(&recipient.openid);
                message.client_msg_id = Some(recipient.client_msg_id.clone());
                let pushes = self.pushes.clone();
                let client = self.client.clone();
                let outcomes = self.outcomes.clone();
                let recipient = recipient.clone();
                tokio::spawn(async move {
                    let outcome = client.send_template(&message).await;
                    let attempt = classify(&pushes, &recipient, outcome);
                    record(&outcomes, &recipient, attempt);
                    drop(permit);
                });
            }
            if caught_up && self.wait(&mut shutdown).await.is_break() {
                break;
            }
        }
        self.finish().await;
    }

    /// Sleeps until a push is accepted (then a moment more, [`GATHER`], so that pushes
    /// accepted together are claimed together), or until the next retry or lease is due;
    /// `Break` at shutdown.
    async fn wait(
        &self,
        shutdown: &mut std::pin::Pin<&mut impl Future<Output = ()>>,
    ) -> std::ops::ControlFlow<()> {
        let wait = self.idle_wait().await;
        tokio::select! {
            () = shutdown.as_mut() => return std::ops::ControlFlow::Break(()),
            () = self.pushes.accepted() => {
                tokio::select! {
                    () = shutdown.as_mut() => return std::ops::ControlFlow::Break(()),
                    () = tokio::time::sleep(GATHER) => {}
                }
            }
            () = tokio::time::sleep(wait) => {}
        }
        std::ops::ControlFlow::Continue(())
    }

    /// Reads the claimed recipients' pushes that are not cached, in one query.
    async fn prefetch(&mut self, claimed: &[Claimed]) {
        let mut missing: Vec<i64> = claimed
            .iter()
            .map(|c| c.push_seq)
            .filter(|seq| !self.cache.contains_key(seq))
            .collect();
        missing.sort_unstable();
        missing.dedup();
        if missing.is_empty() {
            return;
        }
        match self.pushes.store().backend().pushes_by_seq(&missing).await {
            Ok(rows) => {
                if self.cache.len() + rows.len() > CACHE {
                    self.cache.clear();
                }
                for row in rows {
                    let message = self.message(&row);
                    self.cache.insert(row.seq, Arc::new(message));
                }
            }
            // Each push is then read on its own, where a failure is handled per recipient.
            Err(e) => tracing::warn!(error = %e, "push delivery: cannot read the claimed pushes"),
        }
    }

    /// Claims a batch: enough to keep the sends busy for a moment.
    async fn claim(&self) -> Option<Vec<Claimed>> {
        let now = now_ms();
        let lease = i64::try_from(self.pushes.config().lease_secs * 1000).unwrap_or(30_000);
        match self
            .pushes
            .store()
            .backend()
            .push_claim(&self.owner, now, now + lease, self.claim_size)
            .await
        {
            Ok(claimed) => Some(claimed),
            Err(e) => {
                tracing::error!(error = %e, "push delivery: cannot claim recipients; retrying");
                None
            }
        }
    }

    /// How long to sleep when nothing is due: until the next retry or lease expiry, at most
    /// [`POLL`].
    async fn idle_wait(&self) -> Duration {
        match self.pushes.store().backend().push_next_due().await {
            Ok(Some(at)) => {
                let ms = (at - now_ms()).clamp(10, POLL.as_millis() as i64);
                Duration::from_millis(ms as u64)
            }
            _ => POLL,
        }
    }

    /// The template message of push `seq`, addressed to nobody yet; `Ok(None)` when the push
    /// was purged.
    async fn push(
        &mut self,
        seq: i64,
    ) -> Result<Option<Arc<TemplateMessage>>, crate::store::StoreError> {
        if let Some(message) = self.cache.get(&seq) {
            return Ok(Some(Arc::clone(message)));
        }
        let Some(push) = self.pushes.store().backend().push_by_seq(seq).await? else {
            return Ok(None);
        };
        let message = Arc::new(self.message(&push));
        if self.cache.len() >= CACHE {
            self.cache.clear();
        }
        self.cache.insert(seq, Arc::clone(&message));
        Ok(Some(message))
    }

    /// A push's template message, without its recipient and `client_msg_id`.
    fn message(&self, push: &PushRow) -> TemplateMessage {
        let config = self.pushes.config();
        let mut message =
            TemplateMessage::new("", &config.template_id).url(self.pushes.detail_url(&push.id));
        if !config.title_field.is_empty() {
            message = message.field(
                &config.title_field,
                template_value(&push.title, TEMPLATE_FIELD_MAX_CHARS),
            );
        }
        if !config.summary_field.is_empty() {
            let text = match &push.summary {
                Some(s) => template_value(s, TEMPLATE_FIELD_MAX_CHARS),
                None => summary(&push.body, TEMPLATE_FIELD_MAX_CHARS),
            };
            // An empty field shows as a blank line; a dash reads better.
            let text = if text.is_empty() { "-".into() } else { text };
            message = message.field(&config.summary_field, text);
        }
        if !config.time_field.is_empty() {
            message = message.field(&config.time_field, self.pushes.format_time(push.created_at));
        }
        message
    }

    /// Gives back claimed recipients that were not started (at shutdown).
    fn release(&self, unstarted: &[Claimed]) {
        for recipient in unstarted {
            record(&self.outcomes, recipient, Attempt::Released);
        }
    }

    /// Waits for the sends in flight (bounded: their own timeouts end them), then for their
    /// outcomes to be written.
    async fn finish(self) {
        let all = self.concurrency;
        let _ = tokio::time::timeout(
            Duration::from_secs(30),
            Arc::clone(&self.sends).acquire_many_owned(all),
        )
        .await;
        // The settler ends once every sender is gone: ours here, the sends' as they finished.
        drop(self.outcomes);
        let _ = self.settler.await;
    }
}

/// What an attempt's answer means for the recipient.
fn classify(
    pushes: &Pushes,
    recipient: &Claimed,
    outcome: Result<crate::outbound::TemplateSent, ApiError>,
) -> Attempt {
    let error = match outcome {
        Ok(sent) => {
            return Attempt::Sent {
                msgid: sent.msgid.and_then(|m| i64::try_from(m).ok()),
            };
        }
        // An earlier attempt got through, and its answer was lost (a crash, a timeout).
        Err(ApiError::Api { errcode: 45065, .. }) => return Attempt::Sent { msgid: None },
        Err(e) => e,
    };
    let transient = match &error {
        ApiError::Api { errcode, .. } => TRANSIENT.contains(errcode),
        ApiError::Network { .. } | ApiError::Status { .. } | ApiError::Token(_) => true,
        ApiError::Store(_) => true,
        ApiError::Decode { .. } | ApiError::Invalid { .. } | ApiError::NotConfigured => false,
    };
    let text = match &error {
        ApiError::Api {
            errcode, errmsg, ..
        } => format!("{errcode} {errmsg}"),
        other => other.to_string(),
    };
    let config = pushes.config();
    let attempts = u32::try_from(recipient.attempts).unwrap_or(u32::MAX);
    if transient && attempts < config.max_attempts {
        let backoff = Duration::from_millis(config.retry_backoff_ms)
            .saturating_mul(1 << (attempts.saturating_sub(1)).min(16))
            .min(MAX_BACKOFF);
        tracing::warn!(openid = %recipient.openid, attempts, error = %text, retry_in_ms = backoff.as_millis() as u64, "push delivery: transient failure");
        Attempt::Retry {
            next_at: now_ms() + backoff.as_millis() as i64,
            error: text,
        }
    } else {
        tracing::warn!(openid = %recipient.openid, attempts, error = %text, "push delivery failed");
        Attempt::Failed { error: text }
    }
}

/// How many recipients to claim at once: enough to keep the sends busy, and no more than the
/// rate starts in half a lease, so that a slow rate never leaves claimed recipients waiting
/// past their lease (when another process could take them over).
fn claim_size(config: &crate::config::PushConfig) -> u32 {
    let busy = config.concurrency.saturating_mul(4);
    match config.rate_per_second {
        0 => busy,
        rate => {
            let lease = u32::try_from(config.lease_secs).unwrap_or(u32::MAX);
            busy.min(rate.saturating_mul(lease) / 2).max(1)
        }
    }
}

/// Queues an outcome for the settler.
fn record(outcomes: &mpsc::UnboundedSender<Outcome>, recipient: &Claimed, attempt: Attempt) {
    // The settler outlives every sender, so this cannot fail while the worker runs.
    let _ = outcomes.send(Outcome {
        push_seq: recipient.push_seq,
        openid: recipient.openid.clone(),
        attempt,
    });
}

/// Writes outcomes as they come, in batches, until every sender is gone.
async fn settler(pushes: Pushes, owner: String, mut pending: mpsc::UnboundedReceiver<Outcome>) {
    let mut batch = Vec::with_capacity(SETTLE_BATCH);
    while pending.recv_many(&mut batch, SETTLE_BATCH).await > 0 {
        settle(&pushes, &owner, &batch).await;
        batch.clear();
    }
}

async fn settle(pushes: &Pushes, owner: &str, batch: &[Outcome]) {
    // A failed write is retried a few times: the store may be busy with another process.
    for delay in [0u64, 100, 500, 2_000] {
        if delay > 0 {
            tokio::time::sleep(Duration::from_millis(delay)).await;
        }
        match pushes
            .store()
            .backend()
            .push_settle(owner, batch, unix_now())
            .await
        {
            Ok(()) => {
                count(pushes, batch);
                for outcome in batch {
                    if let Attempt::Failed { error } = &outcome.attempt {
                        pushes.metrics().record_error(
                            "push",
                            format_args!(
                                "push #{} to {}: {error}",
                                outcome.push_seq, outcome.openid
                            ),
                        );
                        pushes.settled(Settled::Failed {
                            push_seq: outcome.push_seq,
                            openid: outcome.openid.clone(),
                            error: error.clone(),
                        });
                    }
                }
                return;
            }
            Err(e) => {
                tracing::error!(error = %e, outcomes = batch.len(), "push delivery: cannot record outcomes");
            }
        }
    }
    // The recipients stay `sending`; once the lease runs out they are tried again with the
    // same client_msg_id, which WeChat recognises.
}

/// Counts a batch of recorded outcomes by kind.
fn count(pushes: &Pushes, batch: &[Outcome]) {
    let metrics = pushes.metrics();
    if !metrics.is_enabled() {
        return;
    }
    let (mut sent, mut retried, mut failed) = (0, 0, 0);
    for outcome in batch {
        match outcome.attempt {
            Attempt::Sent { .. } => sent += 1,
            Attempt::Retry { .. } => retried += 1,
            Attempt::Failed { .. } => failed += 1,
            Attempt::Released => {}
        }
    }
    metrics.push_recipients("sent", sent);
    metrics.push_recipients("failed", failed);
    if retried > 0 {
        metrics.push_retries(retried);
    }
}

/// Applies a `TEMPLATESENDJOBFINISH` event: a recipient is delivered on
/// [`SendStatus::Success`], else failed with WeChat's spelling of the status as its error.
/// When it arrives before the send's answer was recorded, it is applied again a little later,
/// as work of `tasks` (the app that received the event waits for it at shutdown).
pub fn job_finished(pushes: &Pushes, tasks: &Tasks, msgid: u64, status: SendStatus) {
    let Ok(msgid) = i64::try_from(msgid) else {
        return;
    };
    let delivered = status.is_success();
    let pushes = pushes.clone();
    tasks.spawn(async move {
        for delay in [0u64, 200, 1_000, 3_000, 10_000] {
            tokio::time::sleep(Duration::from_millis(delay)).await;
            match pushes
                .store()
                .backend()
                .push_finished(msgid, delivered, status.as_str(), unix_now())
                .await
            {
                Ok(0) => continue,
                Ok(n) => {
                    tracing::debug!(msgid, status = %status, "push delivery confirmed");
                    pushes
                        .metrics()
                        .push_recipients(if delivered { "delivered" } else { "failed" }, n);
                    pushes.settled(Settled::Finished {
                        msgid,
                        delivered,
                        status: status.as_str().to_owned(),
                    });
                    return;
                }
                Err(e) => tracing::error!(error = %e, msgid, "cannot record TEMPLATESENDJOBFINISH"),
            }
        }
        tracing::debug!(
            msgid,
            "TEMPLATESENDJOBFINISH for a message that is not a push"
        );
    });
}

fn now_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_millis() as i64)
        .unwrap_or(0)
}

#[cfg(test)]
mod tests {
    use super::claim_size;
    use crate::config::PushConfig;

    fn config(concurrency: u32, rate_per_second: u32, lease_secs: u64) -> PushConfig {
        PushConfig {
            concurrency,
            rate_per_second,
            lease_secs,
            ..PushConfig::default()
        }
    }

    #[test]
    fn claims_keep_the_sends_busy_when_unpaced() {
        assert_eq!(claim_size(&config(8, 0, 30)), 32);
        assert_eq!(claim_size(&config(8, 50, 30)), 32);
    }

    #[test]
    fn a_slow_rate_claims_what_it_starts_in_half_a_lease() {
        // One a second with a 30 s lease: the last of 15 starts at 14 s, well inside it.
        assert_eq!(claim_size(&config(8, 1, 30)), 15);
        assert_eq!(claim_size(&config(8, 1, 5)), 2);
        assert_eq!(claim_size(&config(256, 1, 1)), 1, "never nothing");
    }
}
