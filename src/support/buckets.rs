//! Token buckets by key: the per-user message limit (`[bot] rate_limit_per_minute`) and the
//! per-key push limit (`[push] rate_limit_per_minute`).

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::{Duration, Instant};

/// Buckets kept at most: beyond, full ones are forgotten, then the longest idle.
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
            // Full buckets say nothing a new one would not. When too many keys are busy at
            // once, the ones idle longest are forgotten too (they start again with a full
            // bucket): the map never holds more than MAX_BUCKETS.
            let full = self.per_minute;
            buckets.retain(|_, b| b.tokens + now.duration_since(b.at).as_secs_f64() * rate < full);
            let mut idle = Duration::from_secs(60);
            while buckets.len() >= MAX_BUCKETS * 3 / 4 && !idle.is_zero() {
                idle /= 4;
                buckets.retain(|_, b| now.duration_since(b.at) < idle);
            }
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
