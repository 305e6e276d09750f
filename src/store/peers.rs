//! Whether this process is alone on its database. Each serving process beats every
//! [`BEAT_EVERY`] in table `processes`, and reads which others beat within [`STALE_AFTER`].
//!
//! Alone, a process is the only writer of what the callback reads per message, so its memory
//! is as good as the database: the replay guard answers new pairs from memory, sessions are
//! served from a cache kept in step with every write, and other processes' dedup records are
//! not polled. With others beside it, each of those reads the database again.
//!
//! The switch is safe both ways:
//! - A process starts *not alone* and reads through until its first beat finds nobody.
//! - A process joining others waits (up to [`JOIN_WAIT`]) until each of them has beaten since
//!   it registered, so none still trusts its memory when the newcomer serves its first message.
//! - Every switch drops the session cache (generation counted, so a read that started before
//!   the switch does not put back what it read).
//! - Another tool writing sessions (`huixin rules test --store`) bumps a marker the beat reads:
//!   the cache is dropped within a beat.
//!
//! Most users never have a session, and every message from a user not cached would read the
//! database to find nothing. So while alone the process also knows *who holds session rows*:
//! after a switch (or a marker bump) a beat reads the distinct users of table `sessions` (up
//! to [`HOLDERS_KNOWN`]) into a set of 64-bit hashes, and every write adds its user to that set
//! before it starts and again once it ended. A user outside a complete set has no rows: the read is skipped. A hash
//! collision, or a user whose rows were all deleted, only costs a read. Beyond
//! [`HOLDERS_KNOWN`] users the set is not kept and every miss reads.

use std::collections::{HashMap, HashSet, VecDeque};
use std::hash::BuildHasher;
use std::sync::Mutex;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::Duration;

use super::SessionChange;

/// How often a serving process beats.
pub const BEAT_EVERY: Duration = Duration::from_secs(1);
/// A process that has not beaten for this long is gone.
pub const STALE_AFTER: Duration = Duration::from_secs(5);
/// Longest a joining process waits for the others to see it.
pub const JOIN_WAIT: Duration = Duration::from_secs(4);
/// Users whose sessions the cache holds; the oldest entry goes first.
pub const SESSIONS_CACHED: usize = 50_000;
/// Most users with session rows whose set is kept (a hash set of u64: about 10 MiB full).
pub const HOLDERS_KNOWN: usize = 500_000;
/// The meta key another tool bumps when it writes sessions.
pub const SESSIONS_CHANGED: &str = "sessions_changed";
/// The meta key bumped whenever the runtime blocklist changes, so that every process rereads
/// it at its next beat (at once on PostgreSQL, which announces the bump).
pub const BLOCKLIST_CHANGED: &str = "blocklist_changed";

/// A user's unexpired session rows: (key, JSON value, expires_at).
type Rows = Vec<(String, String, Option<i64>)>;

/// What this process knows about the others, and the memory it trusts while alone.
#[derive(Debug, Default)]
pub struct Peers {
    alone: AtomicBool,
    generation: AtomicU64,
    sessions: Mutex<Sessions>,
}

#[derive(Debug, Default)]
struct Sessions {
    by_user: HashMap<String, Rows>,
    order: VecDeque<String>,
    /// The last [`SESSIONS_CHANGED`] marker seen.
    marker: Option<String>,
    /// Hashes of the users who may hold session rows: every user written since the last
    /// switch, and those read by the load.
    holders: HashSet<u64>,
    /// What the load of `holders` found for the current generation.
    holders_state: Holders,
}

/// Whether the set of users holding session rows is complete.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
enum Holders {
    /// Not loaded yet in this generation: a beat loads it.
    #[default]
    Unknown,
    /// Every user with rows is in the set.
    Complete,
    /// More than [`HOLDERS_KNOWN`] users hold rows: not kept.
    TooMany,
}

impl Peers {
    /// Whether this process is the only one serving from the database.
    pub fn alone(&self) -> bool {
        self.alone.load(Ordering::Acquire)
    }

    /// Records the result of a beat: alone or not, and the sessions marker. Any change drops
    /// the session cache.
    pub fn beat(&self, alone: bool, marker: Option<String>) {
        let mut sessions = self.lock();
        let switched = self.alone.swap(alone, Ordering::AcqRel) != alone;
        let bumped = sessions.marker != marker;
        sessions.marker = marker;
        if switched || bumped {
            self.generation.fetch_add(1, Ordering::AcqRel);
            sessions.by_user.clear();
            sessions.order.clear();
            sessions.reset_holders(Holders::Unknown);
            if switched {
                tracing::info!(alone, "processes on this database changed");
            }
        }
    }

    /// The generation of the cache now: pass it back to [`Peers::cache`].
    pub fn generation(&self) -> u64 {
        self.generation.load(Ordering::Acquire)
    }

    /// A user's cached session as (key, JSON) pairs, unexpired at `now`: empty for a user
    /// known to hold no rows; `None` when not cached or not alone.
    pub fn cached(&self, openid: &str, now: i64) -> Option<Vec<(String, String)>> {
        if !self.alone() {
            return None;
        }
        let sessions = self.lock();
        if let Some(rows) = sessions.by_user.get(openid) {
            return Some(
                rows.iter()
                    .filter(|(_, _, expires)| expires.is_none_or(|at| at > now))
                    .map(|(k, v, _)| (k.clone(), v.clone()))
                    .collect(),
            );
        }
        (sessions.holders_state == Holders::Complete
            && !sessions.holders.contains(&holder_hash(openid)))
        .then(Vec::new)
    }

    /// Whether a beat should load the set of users holding rows: alone, and not loaded in
    /// this generation. Returns the generation to pass to [`Peers::holders_loaded`].
    pub fn holders_wanted(&self) -> Option<u64> {
        if !self.alone() {
            return None;
        }
        let sessions = self.lock();
        (sessions.holders_state == Holders::Unknown).then(|| self.generation())
    }

    /// The users holding rows as read at `generation` (`None`: more than
    /// [`HOLDERS_KNOWN`]). Added to those written meanwhile, unless something switched.
    pub fn holders_loaded(&self, generation: u64, openids: Option<Vec<String>>) {
        let mut sessions = self.lock();
        if self.generation() != generation || !self.alone() {
            return;
        }
        match openids {
            Some(openids) => {
                sessions
                    .holders
                    .extend(openids.iter().map(|o| holder_hash(o)));
                sessions.holders_state = Holders::Complete;
            }
            None => sessions.reset_holders(Holders::TooMany),
        }
    }

    /// A user's session is being written: they may hold rows from now on. The store calls
    /// this before the write starts, so no read can miss rows it committed, and again once it
    /// ended, for a set a switch started meanwhile.
    pub fn holding(&self, openid: &str) {
        let mut sessions = self.lock();
        if sessions.holders_state == Holders::TooMany {
            return;
        }
        sessions.holders.insert(holder_hash(openid));
        if sessions.holders.len() > HOLDERS_KNOWN {
            sessions.reset_holders(Holders::TooMany);
        }
    }

    /// Caches a user's session as read from the database at `generation`, when still alone
    /// and nothing switched since.
    pub fn cache(&self, openid: &str, rows: Rows, generation: u64) {
        if !self.alone() {
            return;
        }
        let mut sessions = self.lock();
        if self.generation() != generation {
            return;
        }
        sessions.insert(openid, rows);
    }

    /// A user's session was written: the cache follows (or forgets the user when it cannot).
    pub fn written(&self, openid: &str, changes: &[SessionChange]) {
        let mut sessions = self.lock();
        let Some(rows) = sessions.by_user.get_mut(openid) else {
            return;
        };
        for change in changes {
            match change {
                SessionChange::Set {
                    key,
                    value,
                    expires_at,
                } => {
                    rows.retain(|(k, _, _)| k != key);
                    rows.push((key.clone(), value.clone(), *expires_at));
                }
                SessionChange::Delete { key } => rows.retain(|(k, _, _)| k != key),
            }
        }
    }

    /// Forgets a user's cached session (a write whose outcome is unknown).
    pub fn forget(&self, openid: &str) {
        self.lock().by_user.remove(openid);
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Sessions> {
        self.sessions.lock().unwrap_or_else(|p| p.into_inner())
    }
}

/// The 64-bit hash a user is known by in the holders set (keys random per process: the set
/// lives in one process, and a collision only costs a read).
fn holder_hash(openid: &str) -> u64 {
    static STATE: std::sync::OnceLock<std::collections::hash_map::RandomState> =
        std::sync::OnceLock::new();
    STATE.get_or_init(Default::default).hash_one(openid)
}

impl Sessions {
    /// Empties the holders set (freeing its memory) and notes why.
    fn reset_holders(&mut self, state: Holders) {
        self.holders = HashSet::new();
        self.holders_state = state;
    }

    fn insert(&mut self, openid: &str, rows: Rows) {
        if self.by_user.insert(openid.to_owned(), rows).is_none() {
            self.order.push_back(openid.to_owned());
        }
        while self.by_user.len() > SESSIONS_CACHED {
            match self.order.pop_front() {
                Some(oldest) => {
                    self.by_user.remove(&oldest);
                }
                None => break,
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn set(key: &str, value: &str) -> SessionChange {
        SessionChange::Set {
            key: key.into(),
            value: value.into(),
            expires_at: None,
        }
    }

    #[test]
    fn the_cache_is_used_only_alone() {
        let peers = Peers::default();
        peers.cache(
            "u",
            vec![("k".into(), "1".into(), None)],
            peers.generation(),
        );
        assert_eq!(
            peers.cached("u", 0),
            None,
            "not alone before the first beat"
        );
        peers.beat(true, None);
        peers.cache(
            "u",
            vec![("k".into(), "1".into(), None)],
            peers.generation(),
        );
        assert_eq!(peers.cached("u", 0), Some(vec![("k".into(), "1".into())]));
        peers.beat(false, None);
        assert_eq!(peers.cached("u", 0), None);
        peers.beat(true, None);
        assert_eq!(peers.cached("u", 0), None, "dropped at the switch");
    }

    #[test]
    fn a_read_from_before_a_switch_is_not_cached() {
        let peers = Peers::default();
        peers.beat(true, None);
        let generation = peers.generation();
        peers.beat(false, None);
        peers.beat(true, None);
        peers.cache("u", Vec::new(), generation);
        assert_eq!(peers.cached("u", 0), None);
    }

    #[test]
    fn writes_and_expiry_and_markers() {
        let peers = Peers::default();
        peers.beat(true, None);
        peers.cache(
            "u",
            vec![("a".into(), "1".into(), Some(10))],
            peers.generation(),
        );
        peers.written(
            "u",
            &[set("b", "2"), SessionChange::Delete { key: "x".into() }],
        );
        assert_eq!(peers.cached("u", 5).map(|r| r.len()), Some(2));
        assert_eq!(peers.cached("u", 10), Some(vec![("b".into(), "2".into())]));
        peers.beat(true, Some("1".into()));
        assert_eq!(peers.cached("u", 0), None, "another tool wrote sessions");
    }

    #[test]
    fn the_cache_is_bounded() {
        let peers = Peers::default();
        peers.beat(true, None);
        for i in 0..SESSIONS_CACHED + 10 {
            peers.cache(&i.to_string(), Vec::new(), peers.generation());
        }
        assert_eq!(peers.cached("0", 0), None, "the oldest went first");
        assert!(
            peers
                .cached(&(SESSIONS_CACHED + 9).to_string(), 0)
                .is_some()
        );
        assert_eq!(peers.lock().by_user.len(), SESSIONS_CACHED);
    }

    #[test]
    fn users_outside_a_complete_holders_set_have_no_session() {
        let peers = Peers::default();
        assert_eq!(peers.holders_wanted(), None, "not alone: nothing to load");
        peers.beat(true, None);
        assert_eq!(peers.cached("new", 0), None, "not loaded yet: read");
        let generation = peers.holders_wanted().expect("alone and not loaded");
        peers.holding("written-meanwhile");
        peers.holders_loaded(generation, Some(vec!["stored".into()]));
        assert_eq!(peers.holders_wanted(), None, "loaded");
        assert_eq!(peers.cached("new", 0), Some(Vec::new()));
        assert_eq!(peers.cached("stored", 0), None, "holds rows: read");
        assert_eq!(peers.cached("written-meanwhile", 0), None);
        peers.holding("new");
        assert_eq!(peers.cached("new", 0), None, "written since: read");

        // A load from before a switch, or a switch, leaves the set unknown again.
        let stale = peers.generation();
        peers.beat(true, Some("bumped".into()));
        peers.holders_loaded(stale, Some(Vec::new()));
        assert_eq!(peers.cached("other", 0), None);
        assert!(peers.holders_wanted().is_some());
        peers.beat(false, None);
        assert_eq!(peers.cached("other", 0), None);
    }

    #[test]
    fn too_many_holders_are_not_kept() {
        let peers = Peers::default();
        peers.beat(true, None);
        let generation = peers.holders_wanted().expect("alone");
        peers.holders_loaded(generation, None);
        assert_eq!(peers.holders_wanted(), None, "not loaded again");
        assert_eq!(peers.cached("new", 0), None);
        peers.holding("new");
        assert!(peers.lock().holders.is_empty());

        let peers = Peers::default();
        peers.beat(true, None);
        let generation = peers.holders_wanted().expect("alone");
        peers.holders_loaded(generation, Some(Vec::new()));
        for i in 0..=HOLDERS_KNOWN {
            peers.holding(&i.to_string());
        }
        assert_eq!(peers.lock().holders_state, Holders::TooMany);
        assert_eq!(peers.cached("new", 0), None);
    }
}
