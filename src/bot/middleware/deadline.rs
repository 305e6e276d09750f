//! The deadline watchdog. WeChat waits 5 s for an answer, then drops the connection and
//! retries. This layer runs everything inside it as its own task and, when no reply is ready
//! by `[bot] reply_deadline_ms`, answers `success` at once (the follower never sees WeChat's
//! error notice) while the task carries on. The reply, when it comes, goes to the [`LateSink`]
//! that `dedup` installed (which can hand it to a waiting retry), or else to the configured
//! [`LateReplies`] (the customer-service sender).

use std::sync::Arc;
use std::time::Duration;

use futures_util::FutureExt;
use tracing::Instrument;

use crate::bot::late::LateReplies;
use crate::bot::{BotError, BoxFuture, Context, Middleware, Next, panic_message};
use crate::metrics::Metrics;
use crate::wechat::Reply;

/// Receives a reply that missed the deadline (installed by `dedup`).
#[derive(Clone)]
pub struct LateSink(pub Arc<dyn Fn(Reply) -> BoxFuture<()> + Send + Sync>);

/// The `deadline` layer.
#[derive(Clone)]
pub struct Deadline {
    limit: Duration,
    inner: Arc<Shared>,
}

/// What each message's future needs from the layer: one `Arc` to clone per message.
struct Shared {
    late: Arc<dyn LateReplies>,
    metrics: Metrics,
}

impl Deadline {
    /// Answers `success` after `limit`; late replies go to `late` unless `dedup` takes them.
    pub fn new(limit: Duration, late: Arc<dyn LateReplies>) -> Self {
        Self {
            limit,
            inner: Arc::new(Shared {
                late,
                metrics: Metrics::default(),
            }),
        }
    }

    /// Counts deadline misses and the late replies it hands on into `metrics`.
    pub fn with_metrics(self, metrics: Metrics) -> Self {
        Self {
            limit: self.limit,
            inner: Arc::new(Shared {
                late: Arc::clone(&self.inner.late),
                metrics,
            }),
        }
    }
}

impl Middleware for Deadline {
    fn call(&self, ctx: Context, next: Next) -> BoxFuture<Result<Reply, BotError>> {
        let limit = self.limit;
        let shared = Arc::clone(&self.inner);
        Box::pin(async move {
            let trail = ctx.trail.clone();
            let sink = ctx.extensions.get::<LateSink>().cloned();
            let message = ctx.message.clone();
            let tasks = ctx.tasks.clone();
            // Race the inner pipeline here; only when the deadline passes does it move into a
            // task of its own to run to the end (no task per message on the fast path).
            let mut inner = next.run(ctx);
            match tokio::time::timeout(limit, &mut inner).await {
                Ok(result) => result,
                Err(_) => {
                    trail.set_late();
                    shared.metrics.deadline_missed();
                    tracing::warn!(
                        deadline_ms = limit.as_millis() as u64,
                        "reply not ready by the deadline: answered success; the reply will follow"
                    );
                    tasks.spawn(
                        async move {
                            let outcome = std::panic::AssertUnwindSafe(inner).catch_unwind().await;
                            let reply = match outcome {
                                Ok(Ok(reply)) => reply,
                                Ok(Err(e)) => {
                                    tracing::error!(error = %e, "late handler failed");
                                    Reply::Success
                                }
                                Err(panic) => {
                                    let e = panic_message(panic.as_ref());
                                    tracing::error!(error = %e.escape_debug(), "late handler panicked");
                                    Reply::Success
                                }
                            };
                            // Always report back, `success` included: dedup settles its entry.
                            match sink {
                                Some(LateSink(sink)) => sink(reply).await,
                                None if reply == Reply::Success => {}
                                None => {
                                    shared.metrics.late_reply("sender");
                                    shared.late.deliver(&message, reply).await
                                }
                            }
                        }
                        .in_current_span(),
                    );
                    Ok(Reply::Success)
                }
            }
        })
    }
}
