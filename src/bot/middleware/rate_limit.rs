//! A per-user rate limit on messages (events are not counted: WeChat sends LOCATION every few
//! seconds on its own). Each user has a bucket of `[bot] rate_limit_per_minute` tokens that
//! refills continuously; a message without a token is answered `[bot] rate_limit_reply` (or
//! `success`) and logged as `limited`.

use crate::bot::{BotError, BoxFuture, Context, Middleware, Next, Outcome};
use crate::support::buckets::Buckets;
use crate::wechat::Reply;

/// The `rate_limit` layer.
pub struct RateLimit {
    buckets: Buckets,
    reply: Reply,
}

impl RateLimit {
    /// `per_minute` messages per user; `reply` for the ones over it.
    pub fn new(per_minute: u32, reply: Reply) -> Self {
        Self {
            buckets: Buckets::new(per_minute),
            reply,
        }
    }

    /// Takes a token for `openid`; false when the user is over the limit.
    pub fn allow(&self, openid: &str) -> bool {
        self.buckets.take(openid).is_ok()
    }
}

impl Middleware for RateLimit {
    fn call(&self, ctx: Context, next: Next) -> BoxFuture<Result<Reply, BotError>> {
        if ctx.message.is_user_message() && !self.allow(ctx.message.from.as_str()) {
            ctx.trail.set_outcome(Outcome::Limited);
            tracing::info!("user over [bot] rate_limit_per_minute; message ignored");
            let reply = self.reply.clone();
            return Box::pin(async move { Ok(reply) });
        }
        next.run(ctx)
    }
}
