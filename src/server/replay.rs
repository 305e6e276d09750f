//! Replay guard. WeChat's `signature` covers (token, timestamp, nonce) but not the body, so a
//! signed URL seen once (in a proxy's access log, say) could carry any body for as long as the
//! timestamp is fresh, or drop `encrypt_type=aes` to downgrade a compatible-mode request to
//! plaintext. The guard remembers which request each (timestamp, nonce) came with: the same
//! body again is a WeChat retry and passes; a different body is refused, and so is any `POST`
//! with the signed query of a `GET` (URL verification), whose URL is as easily seen.
//!
//! A pair is remembered until its timestamp leaves the skew window (`timestamp +
//! max_clock_skew_secs`, at least five minutes from now), in memory and in the store (table
//! `replay_guard`), so a restarted process, or another one on the same database, refuses it
//! too. The hot path stays in memory: a pair this process has seen is answered there; its
//! record is written with the next batch of deferred writes (within
//! [`crate::store::writer::BATCH_DELAY`], and at shutdown). At start the store's unexpired
//! records are loaded ([`ReplayGuard::preload`]). A new pair then costs no read while the
//! process is alone on its database ([`crate::store::peers`]): memory holds everything the
//! store does. With other processes, or for a pair older than what memory still holds, it
//! costs one indexed read, shared with the other lookups waiting ([`crate::store::reads`]).
//!
//! What is not covered: a process that crashes loses the records of its last batch (up to
//! 100 ms of requests); two processes that see the same pair within one batch delay of each
//! other both admit it (the first record stored wins); and when the store cannot be read, the
//! guard falls back to this process's memory (and logs it) rather than refuse WeChat.
//!
//! Memory is bounded: at most [`MAX_ENTRIES`] pairs are kept in memory (those expiring first
//! are dropped first; the store still has them).

use std::cmp::Reverse;
use std::collections::{BinaryHeap, HashMap};
use std::sync::Mutex;
use std::time::Duration;

use sha1::{Digest, Sha1};

use crate::store::{Deferred, ReplayRecord, Store};
use crate::support::clock::unix_now;

/// Most (timestamp, nonce) pairs remembered in memory at once.
pub const MAX_ENTRIES: usize = 100_000;

/// The shortest time a pair is remembered.
const MIN_WINDOW_SECS: i64 = 300;

/// A pair as remembered in memory: the first 16 bytes of SHA-1(timestamp, NUL, nonce). No
/// allocation per request, and a collision between two pairs (about one in 2^64 among a
/// hundred thousand) is beyond concern.
type Key = [u8; 16];
type Hash = [u8; 20];

fn key_of(timestamp: &str, nonce: &str) -> Key {
    let digest: [u8; 20] = Sha1::new()
        .chain_update(timestamp)
        .chain_update([0])
        .chain_update(nonce)
        .finalize()
        .into();
    let mut key = [0; 16];
    key.copy_from_slice(&digest[..16]);
    key
}

/// What a signed query came with.
#[derive(Debug, Clone, Copy)]
pub enum Request<'a> {
    /// A `GET` (URL verification): no body.
    Get,
    /// A `POST` with this body.
    Post(&'a [u8]),
}

impl Request<'_> {
    fn hash(self) -> Hash {
        match self {
            // No body hashes to all zeros (SHA-1 preimage), so a POST never matches a GET.
            Self::Get => [0; 20],
            Self::Post(body) => Sha1::digest(body).into(),
        }
    }
}

/// Remembers the request of each signed (timestamp, nonce).
#[derive(Debug)]
pub struct ReplayGuard {
    window: i64,
    state: Mutex<State>,
}

#[derive(Debug)]
struct State {
    seen: HashMap<Key, (Hash, i64)>,
    /// Pairs by expiry, soonest first.
    order: BinaryHeap<Reverse<(i64, Key)>>,
    /// Memory holds every pair this process admitted, or loaded at start, that expires after
    /// this: one expiring sooner may have been dropped to stay within [`MAX_ENTRIES`], or not
    /// loaded. Until [`ReplayGuard::preload`] ran, nothing is covered.
    floor: i64,
}

impl Default for State {
    fn default() -> Self {
        Self {
            seen: HashMap::new(),
            order: BinaryHeap::new(),
            floor: i64::MAX,
        }
    }
}

/// What memory says of a pair.
enum Local {
    /// Seen before: with the same request or not.
    Seen(bool),
    /// Not seen by this process.
    New,
}

impl ReplayGuard {
    /// A guard remembering each pair until its timestamp is `window` old (the skew window;
    /// at least five minutes).
    pub fn new(window: Duration) -> Self {
        let window = i64::try_from(window.as_secs()).unwrap_or(i64::MAX / 2);
        Self {
            window: window.max(MIN_WINDOW_SECS),
            state: Mutex::new(State::default()),
        }
    }

    /// Records `request` for (timestamp, nonce); `false` if the pair came before, here, in an
    /// earlier run or in another process, with another request.
    pub async fn admit(
        &self,
        store: &Store,
        timestamp: &str,
        nonce: &str,
        request: Request<'_>,
    ) -> bool {
        self.admit_at(store, timestamp, nonce, request, unix_now())
            .await
    }

    async fn admit_at(
        &self,
        store: &Store,
        timestamp: &str,
        nonce: &str,
        request: Request<'_>,
        now: i64,
    ) -> bool {
        let hash = request.hash();
        let key = key_of(timestamp, nonce);
        let covered = match self.local(&key, &hash, now) {
            Local::Seen(same) => return same,
            Local::New => self.covered(timestamp, now) && store.alone(),
        };
        // Alone on the database, with the pair in the span memory covers: nobody else can
        // have seen it, and the store would say nothing memory does not.
        let stored = if covered {
            Ok(None)
        } else {
            store.replay_record(timestamp, nonce).await
        };
        match stored {
            Ok(Some(record)) => {
                let same = record.request_hash == hex::encode(hash);
                let stored = decode(&record.request_hash).unwrap_or([0xff; 20]);
                let _ = self.remember(key, stored, record.expires_at, now);
                return same;
            }
            Ok(None) => {}
            Err(e) => {
                tracing::warn!(error = %e, "replay guard: the store cannot be read; this process's memory decides");
            }
        }
        let expires_at = self.expiry(timestamp, now);
        // Another request with the pair may have been remembered while the store was asked.
        match self.remember(key, hash, expires_at, now) {
            Local::Seen(same) => same,
            Local::New => {
                store.defer(Deferred::Replay(ReplayRecord {
                    timestamp: timestamp.to_owned(),
                    nonce: nonce.to_owned(),
                    request_hash: hex::encode(hash),
                    expires_at,
                }));
                true
            }
        }
    }

    /// Loads the unexpired pairs the store has (an earlier run's, up to [`MAX_ENTRIES`]), after
    /// which memory covers every pair this process sees.
    pub async fn preload(&self, store: &Store) {
        let now = unix_now();
        let limit = u32::try_from(MAX_ENTRIES + 1).unwrap_or(u32::MAX);
        let mut records = match store.backend().replay_recent(limit, now).await {
            Ok(records) => records,
            Err(e) => {
                tracing::warn!(error = %e, "replay guard: the store's records cannot be read; each new pair is looked up");
                return;
            }
        };
        let mut state = self.lock();
        state.floor = if records.len() > MAX_ENTRIES {
            records.truncate(MAX_ENTRIES + 1);
            records.pop().map_or(i64::MIN, |r| r.expires_at)
        } else {
            i64::MIN
        };
        for r in records {
            let Some(hash) = decode(&r.request_hash) else {
                continue;
            };
            let key = key_of(&r.timestamp, &r.nonce);
            if state.seen.insert(key, (hash, r.expires_at)).is_none() {
                state.order.push(Reverse((r.expires_at, key)));
            }
        }
    }

    /// Whether memory holds the pair if anyone saw it: the earliest it could expire, had it
    /// been seen (at its own timestamp, at the soonest), is after the span memory may have
    /// dropped.
    fn covered(&self, timestamp: &str, now: i64) -> bool {
        let ts = timestamp.trim().parse::<i64>().unwrap_or(now);
        ts.saturating_add(self.window) > self.lock().floor
    }

    /// When the pair's timestamp leaves the window: `timestamp + window`, and never sooner
    /// than `window` from now (a timestamp in the past, or one the skew check did not read).
    fn expiry(&self, timestamp: &str, now: i64) -> i64 {
        let ts = timestamp.trim().parse::<i64>().unwrap_or(now);
        ts.max(now).saturating_add(self.window)
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, State> {
        // A poisoned lock only means another request panicked mid-update; the map is still
        // a valid map, so keep using it.
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn local(&self, key: &Key, hash: &Hash, now: i64) -> Local {
        let mut state = self.lock();
        state.expire(now);
        match state.seen.get(key) {
            Some((seen, _)) => Local::Seen(seen == hash),
            None => Local::New,
        }
    }

    /// Remembers the pair unless it is known; what was known.
    fn remember(&self, key: Key, hash: Hash, expires_at: i64, now: i64) -> Local {
        let mut state = self.lock();
        state.expire(now);
        if let Some((seen, _)) = state.seen.get(&key) {
            return Local::Seen(*seen == hash);
        }
        state.seen.insert(key, (hash, expires_at));
        state.order.push(Reverse((expires_at, key)));
        Local::New
    }
}

impl State {
    /// Drops expired pairs, and the soonest to expire while over [`MAX_ENTRIES`].
    fn expire(&mut self, now: i64) {
        while let Some(Reverse((at, _))) = self.order.peek() {
            if *at >= now && self.order.len() < MAX_ENTRIES {
                break;
            }
            if let Some(Reverse((at, key))) = self.order.pop() {
                self.seen.remove(&key);
                if at >= now {
                    // Dropped for room, not expired: memory no longer covers its span.
                    self.floor = self.floor.max(at);
                }
            }
        }
    }
}

fn decode(hex_hash: &str) -> Option<Hash> {
    hex::decode(hex_hash).ok()?.try_into().ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    async fn store() -> Store {
        Store::open("sqlite::memory:").await.expect("store")
    }

    #[tokio::test]
    async fn same_body_passes_other_body_is_refused() {
        let store = store().await;
        let guard = ReplayGuard::new(Duration::from_secs(300));
        let post = |b: &'static [u8]| Request::Post(b);
        assert!(guard.admit(&store, "1", "n", post(b"<xml>a</xml>")).await);
        assert!(
            guard.admit(&store, "1", "n", post(b"<xml>a</xml>")).await,
            "a retry"
        );
        assert!(
            !guard.admit(&store, "1", "n", post(b"<xml>b</xml>")).await,
            "a forged body"
        );
        assert!(
            guard.admit(&store, "1", "m", post(b"<xml>b</xml>")).await,
            "another nonce"
        );
    }

    #[tokio::test]
    async fn a_get_query_carries_no_body() {
        let store = store().await;
        let guard = ReplayGuard::new(Duration::from_secs(300));
        assert!(guard.admit(&store, "1", "n", Request::Get).await);
        assert!(
            guard.admit(&store, "1", "n", Request::Get).await,
            "verified again"
        );
        assert!(
            !guard
                .admit(&store, "1", "n", Request::Post(b"<xml/>"))
                .await,
            "a POST on a GET's signed query"
        );
    }

    #[tokio::test]
    async fn a_future_timestamp_is_remembered_until_it_leaves_the_window() {
        let store = store().await;
        let guard = ReplayGuard::new(Duration::from_secs(300));
        let now = 1_000_000;
        let ts = (now + 200).to_string();
        assert!(
            guard
                .admit_at(&store, &ts, "n", Request::Post(b"a"), now)
                .await
        );
        // Five minutes after it was first seen, the timestamp is still in the window.
        assert!(
            !guard
                .admit_at(&store, &ts, "n", Request::Post(b"b"), now + 301)
                .await
        );
        assert!(
            !guard
                .admit_at(&store, &ts, "n", Request::Post(b"b"), now + 500)
                .await
        );
        // The store keeps it as long.
        store.flush().await.expect("flushed");
        let record = store
            .backend()
            .replay_get(&ts, "n", now + 500)
            .await
            .expect("read")
            .expect("still stored");
        assert_eq!(record.expires_at, now + 500);
    }

    #[tokio::test]
    async fn another_guard_on_the_same_store_refuses_another_body() {
        let store = store().await;
        let first = ReplayGuard::new(Duration::from_secs(300));
        assert!(first.admit(&store, "1", "n", Request::Post(b"a")).await);
        store.flush().await.expect("flushed");
        let restarted = ReplayGuard::new(Duration::from_secs(300));
        assert!(
            restarted.admit(&store, "1", "n", Request::Post(b"a")).await,
            "a retry"
        );
        assert!(!restarted.admit(&store, "1", "n", Request::Post(b"b")).await);
    }

    #[test]
    fn memory_is_bounded() {
        let guard = ReplayGuard::new(Duration::from_secs(300));
        for i in 0..(MAX_ENTRIES + 10) {
            let _ = guard.remember(key_of(&i.to_string(), "n"), [1; 20], 10_000, 0);
        }
        let state = guard.state.lock().unwrap();
        assert!(state.seen.len() <= MAX_ENTRIES);
        assert_eq!(state.seen.len(), state.order.len());
    }
}
