//! A tracing span per message, carrying its ids, so every log line below names the message.

use tracing::Instrument;

use crate::bot::{BotError, BoxFuture, Context, Middleware, Next, Outcome};
use crate::wechat::Reply;

/// The `trace` layer.
#[derive(Debug, Default, Clone, Copy)]
pub struct Trace;

impl Middleware for Trace {
    fn call(&self, ctx: Context, next: Next) -> BoxFuture<Result<Reply, BotError>> {
        let m = &ctx.message;
        let span = tracing::info_span!(
            "message",
            openid = %m.from,
            msg_type = %m.kind.msg_type(),
            msg_id = m.msg_id.map(|id| id.0),
            event = m.event_name(),
            create_time = m.create_time,
        );
        Box::pin(
            async move {
                let trail = ctx.trail.clone();
                let result = next.run(ctx).await;
                if let Ok(reply) = &result {
                    tracing::debug!(
                        reply = reply.msg_type(),
                        late = trail.is_late(),
                        outcome = trail.outcome().map(Outcome::as_str),
                        rule = trail.replied_by().map(tracing::field::display),
                        "handled"
                    );
                }
                result
            }
            .instrument(span),
        )
    }
}
