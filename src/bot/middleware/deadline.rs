//! The deadline watchdog. WeChat waits 5 s for an answer, then drops the connection and
//! retries. This layer runs everything inside it as its own task and, when no reply is ready
//! by `[bot] reply_deadline_ms`, answers `success` at once (the follower never sees WeChat's
//! error notice) while the task carries on. The reply, when it comes, goes to the [`LateSink`]
//! that `dedup` installed (which can hand it to a waiting retry), or else to the configured
//! [`LateReplies`] (the customer-service sender).

use std::sync::Arc;
use std::time::Duration;

use tracing::Instrument;

use crate::bot::late::LateReplies;
use crate::bot::{BotError, BoxFuture, Context, Middleware, Next};
use crate::wechat::Reply;

/// Receives a reply that missed the deadline (installed by `dedup`).
#[derive(Clone)]
pub struct LateSink(pub Arc<dyn Fn(Reply) -> BoxFuture<()> + Send + Sync>);

/// The `deadline` layer.
#[derive(Clone)]
pub struct Deadline {
    limit: Duration,
    late: Arc<dyn LateReplies>,
}

impl Deadline {
    /// Answers `success` after `limit`; late replies go to `late` unless `dedup` takes them.
    pub fn new(limit: Duration, late: Arc<dyn LateReplies>) -> Self {
        Self { limit, late }
    }
}

impl Middleware for Deadline {
    fn call(&self, ctx: Context, next: Next) -> BoxFuture<Result<Reply, BotError>> {
        let limit = self.limit;
        let late = Arc::clone(&self.late);
        Box::pin(async move {
            let trail = ctx.trail.clone();
            let sink = ctx.extensions.get::<LateSink>().cloned();
            let message = ctx.message.clone();
            // Its own task: it runs to the end even when we stop waiting for it.
            let mut task = tokio::spawn(next.run(ctx).in_current_span());
            match tokio::time::timeout(limit, &mut task).await {
                Ok(Ok(result)) => result,
                Ok(Err(join)) => Err(BotError::Panic(join.to_string())),
                Err(_) => {
                    trail.set_late();
                    tracing::warn!(
                        deadline_ms = limit.as_millis() as u64,
                        "reply not ready by the deadline: answered success; the reply will follow"
                    );
                    tokio::spawn(
                        async move {
                            match task.await {
                                Ok(Ok(reply)) => match sink {
                                    Some(LateSink(sink)) => sink(reply).await,
                                    None if reply == Reply::Success => {}
                                    None => late.deliver(&message, reply).await,
                                },
                                Ok(Err(e)) => tracing::error!(error = %e, "late handler failed"),
                                Err(join) => {
                                    tracing::error!(error = %join, "late handler panicked")
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
