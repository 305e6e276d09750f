//! A per-user rate limit on messages (events are not counted: WeChat sends LOCATION every few
//! seconds on its own). Each user has a bucket of `[bot] rate_limit_per_minute` tokens that
//! refills continuously; a message without a token is answered `[bot] rate_limit_reply` (or
//! `success`) and logged as `limited`.

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use crate::bot::{BotError, BoxFuture, Context, Middleware, Next, Outcome};
use crate::wechat::Reply;

/// Buckets kept before idle full ones are forgotten.
const MAX_BUCKETS: usize = 100_000;

struct Bucket {
    tokens: f64,
    at: Instant,
}

/// Token buckets by key, each holding up to `per_minute` tokens and refilling continuously:
/// a burst of `per_minute` at once, then `per_minute` a minute. The push service limits keys
/// with it too.
pub struct Buckets {
    per_minute: f64,
    buckets: Mutex<HashMap<String, Bucket>>,
}

impl Buckets {
    /// Buckets of `per_minute` tokens (at least 1).
    pub fn new(per_minute: u32) -> Self {
        Self {
            per_minute: f64::from(per_minute.max(1)),
            buckets: Mutex::new(HashMap::new()),
        }
    }

    /// Takes a token from `key`'s bucket: `Ok`, or `Err` with how long until one is there.
    pub fn take(&self, key: &str) -> Result<(), Duration> {
        let now = Instant::now();
        let rate = self.per_minute / 60.0;
        let mut buckets = self.buckets.lock().unwrap_or_else(|p| p.into_inner());
        if buckets.len() >= MAX_BUCKETS {
            let full = self.per_minute;
            buckets.retain(|_, b| b.tokens + now.duration_since(b.at).as_secs_f64() * rate < full);
        }
        let bucket = buckets.entry(key.to_owned()).or_insert(Bucket {
            tokens: self.per_minute,
            at: now,
        });
        bucket.tokens = (bucket.tokens + now.duration_since(bucket.at).as_secs_f64() * rate)
            .min(self.per_minute);
        bucket.at = now;
        if bucket.tokens >= 1.0 {
            bucket.tokens -= 1.0;
            Ok(())
        } else {
            Err(Duration::from_secs_f64((1.0 - bucket.tokens) / rate))
        }
    }
}

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
