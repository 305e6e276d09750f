//! Replay guard. WeChat's `signature` covers (token, timestamp, nonce) but not the body, so a
//! signed URL seen once (in a proxy's access log, say) could carry any body for as long as the
//! timestamp is fresh, or drop `encrypt_type=aes` to downgrade a compatible-mode request to
//! plaintext. The guard remembers which body each (timestamp, nonce) came with: the same body
//! again is a WeChat retry and passes; a different body is refused.
//!
//! Memory is bounded: entries live for the skew window and at most [`MAX_ENTRIES`] are kept
//! (oldest dropped first). The guard is per process.

use std::collections::{HashMap, VecDeque};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use sha1::{Digest, Sha1};

/// Most (timestamp, nonce) pairs remembered at once.
pub const MAX_ENTRIES: usize = 100_000;

type Key = (String, String);

/// Remembers the body hash of each signed (timestamp, nonce).
#[derive(Debug)]
pub struct ReplayGuard {
    ttl: Duration,
    state: Mutex<State>,
}

#[derive(Debug, Default)]
struct State {
    seen: HashMap<Key, [u8; 20]>,
    order: VecDeque<(Instant, Key)>,
}

impl ReplayGuard {
    /// A guard remembering pairs for `ttl` (the skew window; at least five minutes).
    pub fn new(ttl: Duration) -> Self {
        Self {
            ttl: ttl.max(Duration::from_secs(300)),
            state: Mutex::new(State::default()),
        }
    }

    /// Records `body` for (timestamp, nonce); `false` if the pair came before with another body.
    pub fn admit(&self, timestamp: &str, nonce: &str, body: &[u8]) -> bool {
        let hash: [u8; 20] = Sha1::digest(body).into();
        let now = Instant::now();
        // A poisoned lock only means another request panicked mid-update; the map is still
        // a valid map, so keep using it.
        let mut state = self.state.lock().unwrap_or_else(|p| p.into_inner());
        state.expire(now, self.ttl);
        let key = (timestamp.to_owned(), nonce.to_owned());
        match state.seen.get(&key) {
            Some(seen) => *seen == hash,
            None => {
                state.seen.insert(key.clone(), hash);
                state.order.push_back((now, key));
                true
            }
        }
    }
}

impl State {
    fn expire(&mut self, now: Instant, ttl: Duration) {
        while let Some((at, _)) = self.order.front() {
            let expired = now.duration_since(*at) > ttl;
            if !expired && self.order.len() < MAX_ENTRIES {
                break;
            }
            if let Some((_, key)) = self.order.pop_front() {
                self.seen.remove(&key);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn same_body_passes_other_body_is_refused() {
        let guard = ReplayGuard::new(Duration::from_secs(300));
        assert!(guard.admit("1", "n", b"<xml>a</xml>"));
        assert!(guard.admit("1", "n", b"<xml>a</xml>"), "a retry");
        assert!(!guard.admit("1", "n", b"<xml>b</xml>"), "a forged body");
        assert!(guard.admit("1", "m", b"<xml>b</xml>"), "another nonce");
    }

    #[test]
    fn memory_is_bounded() {
        let guard = ReplayGuard::new(Duration::from_secs(300));
        for i in 0..(MAX_ENTRIES + 10) {
            guard.admit(&i.to_string(), "n", b"x");
        }
        let state = guard.state.lock().unwrap();
        assert!(state.seen.len() <= MAX_ENTRIES);
        assert_eq!(state.seen.len(), state.order.len());
    }
}
