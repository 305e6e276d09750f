//! Persistent state behind one interface, [`Backend`]: SQLite by default ([`sqlite`]), or
//! PostgreSQL ([`postgres`]) for several processes sharing one database. Queries are written
//! at runtime (the crate builds without a database); migrations are numbered SQL files under
//! `src/store/migrations` (PostgreSQL's under `src/store/postgres/migrations`), embedded in the
//! binary by [`schema`] and run at start.
//!
//! Hot-path writes (the inbound log, dedup records, last-seen times) go through a
//! [`writer`] that batches them into one transaction every 100 ms, so they never cap
//! throughput; writes a handler needs to read back at once (sessions, follower changes) are
//! written directly.

/// Defines a struct and reads it from a row of either backend by its fields' names (what
/// sqlx's `FromRow` derive does, without building sqlx's macros and their copy of the drivers).
macro_rules! from_row {
    (
        $(#[$meta:meta])*
        $vis:vis struct $name:ident {
            $( $(#[$field_meta:meta])* $field_vis:vis $field:ident : $ty:ty ),* $(,)?
        }
    ) => {
        $(#[$meta])*
        $vis struct $name {
            $( $(#[$field_meta])* $field_vis $field : $ty ),*
        }

        impl<'r, R: ::sqlx::Row> ::sqlx::FromRow<'r, R> for $name
        where
            &'r str: ::sqlx::ColumnIndex<R>,
            $( $ty: ::sqlx::Decode<'r, R::Database> + ::sqlx::Type<R::Database>, )*
        {
            fn from_row(row: &'r R) -> ::std::result::Result<Self, ::sqlx::Error> {
                Ok(Self {
                    $( $field: ::sqlx::Row::try_get(row, stringify!($field))?, )*
                })
            }
        }
    };
}

pub mod admin;
pub mod apps;
pub mod console;
pub mod copy;
pub mod peers;
pub mod postgres;
pub mod push;
pub mod reads;
pub mod schema;
pub mod seed;
pub mod sqlite;
pub mod writer;

use std::sync::Arc;

use async_trait::async_trait;

use crate::support::clock::unix_now;

/// Milliseconds since the Unix epoch.
fn unix_millis() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| i64::try_from(d.as_millis()).unwrap_or(i64::MAX))
}

/// The meta key holding a generated callback token.
const GENERATED_TOKEN: &str = "generated_token";

/// Why a storage operation failed. At the HTTP edge these are our own failures: the callback
/// answers `success` and logs them.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// `[storage] url` is not a URL huixin can open.
    #[error("unsupported [storage] url {0:?}: use sqlite://PATH or postgres://USER@HOST/DB")]
    UnsupportedUrl(String),
    /// The database server cannot be reached, or refused the connection.
    #[error("cannot connect to {url}: {reason}")]
    Connect {
        /// The URL, without its password.
        url: String,
        /// Why.
        reason: String,
    },
    /// `[storage] url` or a `[storage]` key is malformed.
    #[error("[storage]: {0}")]
    BadUrl(String),
    /// The database refused an operation.
    #[error("database error: {0}")]
    Database(#[from] sqlx::Error),
    /// A migration failed.
    #[error("migration failed: {0}")]
    Migrate(#[from] sqlx::migrate::MigrateError),
    /// The background writer has stopped (the server is shutting down).
    #[error("the store's writer has stopped")]
    WriterGone,
    /// The batched reader has stopped (the server is shutting down).
    #[error("the store's reader has stopped")]
    ReaderGone,
    /// A batched read failed; every lookup in the batch gets the reason.
    #[error("{0}")]
    Batch(String),
    /// `[storage] url` names a file in a folder that does not exist (huixin creates the file,
    /// never its folders).
    #[error(
        "[storage] url names the database {path:?}, but its folder {folder:?} does not exist: \
         create the folder or change [storage] url"
    )]
    MissingFolder {
        /// The database file.
        path: std::path::PathBuf,
        /// The first missing folder on its path.
        folder: std::path::PathBuf,
    },
    /// The database file could not be created or restricted to its owner.
    #[error("[storage] url: cannot restrict {path:?} to its owner: {source}")]
    Permissions {
        /// The file.
        path: std::path::PathBuf,
        /// Why.
        source: std::io::Error,
    },
    /// The backend has no such facility.
    #[error("{0} is not supported by this store")]
    Unsupported(&'static str),
    /// `huixin store copy` cannot copy as asked (see [`copy`]): a direction other than SQLite
    /// to PostgreSQL, a source that is not a huixin database, a target out of reach.
    #[error("{0}")]
    Copy(String),
}

/// Why the store cannot be relied on now ([`Store::health`]). `/healthz` answers 503 with it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Unhealthy {
    /// Another connection holds the write lock longer than the probe waits.
    Locked,
    /// The last write failed because the disk (or the database's size limit) is full; clears
    /// with the next write that succeeds.
    Full(String),
    /// The file is not a database, or fails its integrity check.
    Corrupt(String),
    /// The last write failed otherwise (I/O error, read-only file); clears with the next write
    /// that succeeds.
    WriteFailing(String),
    /// The database cannot be opened or answered an unexpected error.
    Unreachable(String),
}

impl Unhealthy {
    /// A one-word reason, for monitors (`locked`, `full`, `corrupt`, `write_failing`,
    /// `unreachable`).
    pub fn kind(&self) -> &'static str {
        match self {
            Self::Locked => "locked",
            Self::Full(_) => "full",
            Self::Corrupt(_) => "corrupt",
            Self::WriteFailing(_) => "write_failing",
            Self::Unreachable(_) => "unreachable",
        }
    }
}

impl std::fmt::Display for Unhealthy {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::Locked => f.write_str("the database is locked by another connection"),
            Self::Full(e) => write!(f, "the database or its disk is full: {e}"),
            Self::Corrupt(e) => write!(f, "the database is corrupt: {e}"),
            Self::WriteFailing(e) => write!(f, "writes are failing: {e}"),
            Self::Unreachable(e) => write!(f, "the database is unreachable: {e}"),
        }
    }
}

from_row! {
    /// What is known about a user.
    #[derive(Debug, Clone, PartialEq, Eq, Default)]
    pub struct Follower {
        /// The OpenID.
        pub openid: String,
        /// Whether the user follows the account now.
        pub subscribed: bool,
        /// The first subscribe event seen.
        pub first_subscribed_at: Option<i64>,
        /// The latest subscribe event.
        pub last_subscribed_at: Option<i64>,
        /// The latest unsubscribe event.
        pub unsubscribed_at: Option<i64>,
        /// The QR scene of the latest scan-to-follow.
        pub scene: Option<String>,
        /// The latest message or event of any kind (written in batches: may lag by a moment).
        pub last_seen_at: Option<i64>,
    }
}

from_row! {
    /// The shared access token of an app, as stored.
    #[derive(Clone, PartialEq, Eq)]
    pub struct TokenRow {
        /// The token, once one was fetched.
        pub token: Option<String>,
        /// When it expires (Unix seconds; 0 when invalidated).
        pub expires_at: i64,
        /// When to refresh it, ahead of expiry.
        pub refresh_after: i64,
        /// When it was fetched.
        pub fetched_at: i64,
        /// Incremented with every new token.
        pub version: i64,
    }
}

impl std::fmt::Debug for TokenRow {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // Never the token.
        f.debug_struct("TokenRow")
            .field("expires_at", &self.expires_at)
            .field("refresh_after", &self.refresh_after)
            .field("fetched_at", &self.fetched_at)
            .field("version", &self.version)
            .finish_non_exhaustive()
    }
}

/// A new access token to store.
#[derive(Clone, PartialEq, Eq)]
pub struct NewToken<'a> {
    /// The token.
    pub token: &'a str,
    /// When it expires.
    pub expires_at: i64,
    /// When to refresh it.
    pub refresh_after: i64,
    /// When it was fetched.
    pub fetched_at: i64,
}

/// A change to one session key.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SessionChange {
    /// Set `key` to a JSON value, expiring at the given time (Unix seconds) if any.
    Set {
        /// The key.
        key: String,
        /// The value as JSON.
        value: String,
        /// When it expires.
        expires_at: Option<i64>,
    },
    /// Remove `key`.
    Delete {
        /// The key.
        key: String,
    },
}

from_row! {
    /// One row of the inbound log.
    #[derive(Debug, Clone, PartialEq, Eq)]
    pub struct LogEntry {
        /// When the message arrived.
        pub received_at: i64,
        /// The sender.
        pub openid: String,
        /// `MsgType`.
        pub msg_type: String,
        /// The event's canonical name, for events.
        pub event: Option<String>,
        /// `MsgId`, as text (u64).
        pub msg_id: Option<String>,
        /// Content, event key or media id, truncated.
        pub summary: Option<String>,
        /// The reply's type (`text`, `news`, `success`, …).
        pub reply_type: String,
        /// `answered`, `late`, `retry`, `failed`, `limited` or `blocked`.
        pub outcome: String,
        /// The rule that replied (`file:line`, or `webhook` when an app's webhook did), if one
        /// did.
        pub rule: Option<String>,
        /// How long the message took, from reaching the log layer to its reply, in
        /// milliseconds (for a retry: from its arrival to the reply it was given).
        pub latency_ms: Option<i64>,
        /// The reply on one line, at most 200 characters: the text, the news titles,
        /// `image MEDIA_ID`, …; `None` for `success` (nothing shown to the user).
        pub reply: Option<String>,
    }
}

/// Where the message of a dedup record stands (`dedup.state`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum DedupState {
    /// `running`: the first attempt's rules are at work.
    Running,
    /// `answered`: the reply went out passively; retries get it again.
    Answered,
    /// `late`: the reply went to the customer-service sender; retries get `success`.
    Late,
}

impl DedupState {
    /// The stored spelling.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Running => "running",
            Self::Answered => "answered",
            Self::Late => "late",
        }
    }

    /// The state a stored spelling names; `None` for one this version does not know.
    pub fn parse(text: &str) -> Option<Self> {
        match text {
            "running" => Some(Self::Running),
            "answered" => Some(Self::Answered),
            "late" => Some(Self::Late),
            _ => None,
        }
    }
}

impl std::fmt::Display for DedupState {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A dedup record as shared between processes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DedupRecord {
    /// The message key.
    pub key: String,
    /// The process that ran the rules.
    pub owner: String,
    /// Where the message stands.
    pub state: DedupState,
    /// The reply as JSON, once known.
    pub reply: Option<String>,
    /// The `CreateTime` the reply was first rendered with, once it went out passively.
    pub reply_time: Option<i64>,
    /// Last change, Unix seconds.
    pub updated_at: i64,
}

from_row! {
    /// A `dedup` row as stored; the state becomes a [`DedupState`] here, at the boundary.
    pub(crate) struct DedupRow {
        key: String,
        owner: String,
        state: String,
        reply: Option<String>,
        reply_time: Option<i64>,
        updated_at: i64,
    }
}

impl DedupRow {
    /// The record; `None` for a state this version does not know (a newer process's).
    pub(crate) fn into_record(self) -> Option<DedupRecord> {
        let Some(state) = DedupState::parse(&self.state) else {
            tracing::warn!(key = %self.key, state = %self.state.escape_debug(), "dedup record in an unknown state; ignored");
            return None;
        };
        Some(DedupRecord {
            key: self.key,
            owner: self.owner,
            state,
            reply: self.reply,
            reply_time: self.reply_time,
            updated_at: self.updated_at,
        })
    }
}

/// A write that can wait for the next batch.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Deferred {
    /// Append to the inbound log.
    Log(LogEntry),
    /// Insert or update a dedup record.
    Dedup(DedupRecord),
    /// Note that a user was seen.
    Seen {
        /// The user.
        openid: String,
        /// When.
        at: i64,
    },
    /// Remember which request a signed (timestamp, nonce) came with, for the replay guard.
    Replay(ReplayRecord),
}

/// One session entry as read: (openid, key, JSON value, expiry in Unix seconds).
pub type SessionRow = (String, String, String, Option<i64>);

/// A batch of deferred writes, by table, with what a later write in the batch makes moot
/// left out: a dedup key's last record, a user's latest sighting, a (timestamp, nonce)'s first
/// record. Every backend writes a batch from this, so all agree on what a batch means.
#[derive(Debug, Default)]
pub struct Batch<'a> {
    /// Log rows, in order.
    pub log: Vec<&'a LogEntry>,
    /// The last record of each dedup key.
    pub dedup: Vec<&'a DedupRecord>,
    /// The latest sighting of each user.
    pub seen: Vec<(&'a str, i64)>,
    /// The first record of each (timestamp, nonce).
    pub replay: Vec<&'a ReplayRecord>,
    /// What the log rows add to the hourly counts: (hour, dimension, key, n), one per key,
    /// sorted (see [`console::log_counts_of`]).
    pub counts: Vec<(i64, &'static str, &'a str, i64)>,
}

impl<'a> Batch<'a> {
    /// Sorts `writes` by table and drops the moot ones.
    pub fn of(writes: &'a [Deferred]) -> Self {
        use std::collections::HashMap;
        use std::collections::hash_map::Entry;
        let mut batch = Batch::default();
        let mut dedup: HashMap<&str, usize> = HashMap::new();
        let mut seen: HashMap<&str, usize> = HashMap::new();
        let mut replay: HashMap<(&str, &str), ()> = HashMap::new();
        for write in writes {
            match write {
                Deferred::Log(e) => batch.log.push(e),
                Deferred::Dedup(r) => match dedup.entry(&r.key) {
                    Entry::Occupied(at) => batch.dedup[*at.get()] = r,
                    Entry::Vacant(slot) => {
                        slot.insert(batch.dedup.len());
                        batch.dedup.push(r);
                    }
                },
                Deferred::Seen { openid, at } => match seen.entry(openid) {
                    Entry::Occupied(i) => {
                        let latest = &mut batch.seen[*i.get()].1;
                        *latest = (*latest).max(*at);
                    }
                    Entry::Vacant(slot) => {
                        slot.insert(batch.seen.len());
                        batch.seen.push((openid, *at));
                    }
                },
                Deferred::Replay(r) => {
                    if replay.insert((&r.timestamp, &r.nonce), ()).is_none() {
                        batch.replay.push(r);
                    }
                }
            }
        }
        batch.counts = console::log_counts_of(&batch.log);
        batch
    }
}

/// Rows per multi-row statement, largest first: a batch of any size is written with a few
/// statements of these sizes, so each table needs at most this many prepared statements.
pub const ROWS_PER_STATEMENT: [usize; 5] = [256, 64, 16, 4, 1];

/// `keys` for one `IN (…)` read of at most 256 keys, padded (by repeating the last, which
/// changes nothing in an `IN` list) to the next size in [`ROWS_PER_STATEMENT`]: one statement
/// per batch, and a few prepared statements in all.
pub fn padded_keys<T>(keys: &[T]) -> impl Iterator<Item = &T> {
    let size = ROWS_PER_STATEMENT
        .into_iter()
        .rev()
        .find(|&n| n >= keys.len())
        .unwrap_or(keys.len());
    keys.iter()
        .chain(std::iter::repeat_n(keys.last(), size - keys.len()).flatten())
}

/// `rows` cut into chunks of [`ROWS_PER_STATEMENT`] sizes.
pub fn statement_chunks<T>(mut rows: &[T]) -> impl Iterator<Item = &[T]> {
    std::iter::from_fn(move || {
        let size = ROWS_PER_STATEMENT.into_iter().find(|&n| n <= rows.len())?;
        let (chunk, rest) = rows.split_at(size);
        rows = rest;
        Some(chunk)
    })
}

from_row! {
    /// What the replay guard remembers of one signed (timestamp, nonce).
    #[derive(Debug, Clone, PartialEq, Eq)]
    pub struct ReplayRecord {
        /// The query's `timestamp`, as sent.
        pub timestamp: String,
        /// The query's `nonce`.
        pub nonce: String,
        /// Hex SHA-1 of what it came with (the POST body, or a marker for a `GET`).
        pub request_hash: String,
        /// When the timestamp leaves the skew window, and the record can go (Unix seconds).
        pub expires_at: i64,
    }
}

/// Rows removed by [`Store::prune`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Pruned {
    /// Inbound log rows.
    pub log: u64,
    /// Dedup records.
    pub dedup: u64,
    /// Expired session keys.
    pub sessions: u64,
    /// Expired replay guard records.
    pub replay: u64,
    /// Hourly counts ([`console`]).
    pub counts: u64,
}

/// A database huixin can keep its state in.
#[async_trait]
pub trait Backend:
    push::PushStore + apps::AppStore + admin::AdminStore + console::ConsoleStore + Send + Sync + 'static
{
    /// Checks the database answers.
    async fn ping(&self) -> Result<(), StoreError>;
    /// Checks the database can be written now: not locked, corrupt or full; `Ok(())` when
    /// healthy.
    async fn health(&self) -> Result<(), Unhealthy>;
    /// Caps the database at `pages` pages as a full disk would (SQLite's `max_page_count`,
    /// on every connection that writes), or lifts the cap (`None`). For tests and drills.
    #[doc(hidden)]
    async fn limit_pages(&self, _pages: Option<u32>) -> Result<(), StoreError> {
        Err(StoreError::Unsupported("a page limit"))
    }
    /// The replay guard's record of (timestamp, nonce), if unexpired at `now`.
    async fn replay_get(
        &self,
        timestamp: &str,
        nonce: &str,
        now: i64,
    ) -> Result<Option<ReplayRecord>, StoreError> {
        let pair = [(timestamp.to_owned(), nonce.to_owned())];
        Ok(self.replay_get_many(&pair, now).await?.pop())
    }
    /// The unexpired records of any of `pairs` (timestamp, nonce), in one read.
    async fn replay_get_many(
        &self,
        pairs: &[(String, String)],
        now: i64,
    ) -> Result<Vec<ReplayRecord>, StoreError>;
    /// A value from huixin's settings table.
    async fn meta_get(&self, key: &str) -> Result<Option<String>, StoreError>;
    /// Stores `value` under `key` unless a value is there; returns the stored value.
    async fn meta_get_or_insert(&self, key: &str, value: &str) -> Result<String, StoreError>;

    /// Records a subscribe event.
    async fn follower_subscribed(
        &self,
        openid: &str,
        at: i64,
        scene: Option<&str>,
    ) -> Result<(), StoreError>;
    /// Records an unsubscribe event.
    async fn follower_unsubscribed(&self, openid: &str, at: i64) -> Result<(), StoreError>;
    /// What is known about a user.
    async fn follower(&self, openid: &str) -> Result<Option<Follower>, StoreError>;
    /// How many users follow the account now.
    async fn follower_count(&self) -> Result<u64, StoreError>;

    /// A user's unexpired session keys, values as JSON.
    async fn session_load(
        &self,
        openid: &str,
        now: i64,
    ) -> Result<Vec<(String, String)>, StoreError> {
        let rows = self.sessions_load(&[openid.to_owned()], now).await?;
        Ok(rows.into_iter().map(|(_, k, v, _)| (k, v)).collect())
    }
    /// The unexpired session entries of any of `openids`, in one read: (openid, key, JSON,
    /// expiry).
    async fn sessions_load(
        &self,
        openids: &[String],
        now: i64,
    ) -> Result<Vec<SessionRow>, StoreError>;
    /// The distinct users with session rows (expired ones included), or `None` when there are
    /// more than `limit`.
    async fn session_holders(&self, limit: usize) -> Result<Option<Vec<String>>, StoreError>;
    /// Records that process `owner` (started at `started_ms`) is alive at `now_ms`, and lists
    /// the other processes that beat since `now_ms - stale_ms`: (owner, last beat).
    async fn peers_beat(
        &self,
        owner: &str,
        started_ms: i64,
        now_ms: i64,
        stale_ms: i64,
    ) -> Result<Vec<(String, i64)>, StoreError>;
    /// Removes process `owner` (it stops).
    async fn peers_leave(&self, owner: &str) -> Result<(), StoreError>;
    /// The replay guard's unexpired records, latest expiry first, at most `limit`.
    async fn replay_recent(&self, limit: u32, now: i64) -> Result<Vec<ReplayRecord>, StoreError>;
    /// Sets a value in huixin's settings table.
    async fn meta_set(&self, key: &str, value: &str) -> Result<(), StoreError>;
    /// Sets a marker in huixin's settings table that other processes read at their beat
    /// ([`peers`]), and tells them at once where the database can ([`Backend::wakeups`]).
    async fn announce(&self, key: &str, value: &str) -> Result<(), StoreError> {
        self.meta_set(key, value).await
    }
    /// Woken whenever another process announced a change, where the database can tell
    /// (PostgreSQL's LISTEN/NOTIFY); `None` where the beat's reading every second is all.
    fn wakeups(&self) -> Option<Arc<tokio::sync::Notify>> {
        None
    }
    /// Takes a token from the bucket `key` shared by every process on the database: buckets
    /// of `per_minute` tokens refilling continuously, as [`crate::support::buckets`] keeps
    /// them in memory. `None` when taken; else how long until a token is there.
    async fn rate_take(
        &self,
        key: &str,
        per_minute: u32,
        now_ms: i64,
    ) -> Result<Option<std::time::Duration>, StoreError>;
    /// Applies changes to a user's session in one transaction.
    async fn session_apply(
        &self,
        openid: &str,
        changes: &[SessionChange],
        now: i64,
    ) -> Result<(), StoreError>;

    /// Writes a batch of deferred writes in one transaction.
    async fn write_batch(&self, batch: &[Deferred]) -> Result<(), StoreError>;
    /// The dedup records of any of `keys`, in one read (records in a state this version does
    /// not know are left out).
    async fn dedup_get_many(&self, keys: &[String]) -> Result<Vec<DedupRecord>, StoreError>;
    /// Dedup records changed at or after `since` by other processes than `owner` (records
    /// in a state this version does not know are left out).
    async fn dedup_changes(&self, since: i64, owner: &str) -> Result<Vec<DedupRecord>, StoreError>;
    /// The latest inbound log rows, newest first.
    async fn recent_log(&self, limit: u32) -> Result<Vec<LogEntry>, StoreError>;

    /// The runtime blocklist.
    async fn blocked_users(&self) -> Result<Vec<String>, StoreError>;
    /// Adds a user to the runtime blocklist.
    async fn block_user(&self, openid: &str, reason: &str, at: i64) -> Result<(), StoreError>;
    /// Removes a user from the runtime blocklist.
    async fn unblock_user(&self, openid: &str) -> Result<(), StoreError>;

    /// The stored access token of `app_id`, if any.
    async fn token_load(&self, app_id: &str) -> Result<Option<TokenRow>, StoreError>;
    /// Takes the refresh lease for `app_id` until `until` when it is free (or already ours)
    /// and the stored token is still version `seen` (compare-and-set: a token stored since
    /// the caller looked means there is nothing to refresh); true when `owner` holds it now.
    async fn token_try_lease(
        &self,
        app_id: &str,
        owner: &str,
        seen: i64,
        now: i64,
        until: i64,
    ) -> Result<bool, StoreError>;
    /// Stores a new token and releases the lease, only while `owner` holds it; true when
    /// stored.
    async fn token_store(
        &self,
        app_id: &str,
        owner: &str,
        token: &NewToken<'_>,
    ) -> Result<bool, StoreError>;
    /// Releases `owner`'s lease without a new token (the fetch failed).
    async fn token_release(&self, app_id: &str, owner: &str) -> Result<(), StoreError>;
    /// Marks `token` expired, only if it is still the stored one (compare-and-invalidate);
    /// true when it was.
    async fn token_invalidate(&self, app_id: &str, token: &str) -> Result<bool, StoreError>;

    /// Removes log rows, dedup records and hourly counts older than the given times (counts
    /// by their hour's start), and expired sessions and replay records.
    async fn prune(
        &self,
        log_before: i64,
        dedup_before: i64,
        counts_before: i64,
        now: i64,
    ) -> Result<Pruned, StoreError>;
}

/// A handle on the store: the backend plus its batch writer. Cheap to clone.
#[derive(Clone)]
pub struct Store {
    backend: Arc<dyn Backend>,
    writer: writer::Writer,
    reads: reads::Reads,
    peers: Arc<peers::Peers>,
    /// Set once a serving app joined ([`Store::join`]); other handles (the CLI) tell serving
    /// processes when they write sessions.
    serving: Arc<std::sync::atomic::AtomicBool>,
    /// This process's row in the processes table, once joined.
    owner: Arc<std::sync::OnceLock<String>>,
    /// The last [`peers::BLOCKLIST_CHANGED`] marker a beat read (`Some(None)`: none set yet).
    blocklist: Arc<tokio::sync::watch::Sender<Option<Option<String>>>>,
}

impl std::fmt::Debug for Store {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Store").finish_non_exhaustive()
    }
}

impl Store {
    /// Opens (creating if needed) the database at `url`, runs pending migrations and starts
    /// the batch writer (so it must be called inside a Tokio runtime).
    pub async fn open(url: &str) -> Result<Self, StoreError> {
        Self::open_with(url, &postgres::Settings::default()).await
    }

    /// [`Store::open`] with the `[storage]` section's settings.
    pub async fn open_config(config: &crate::config::StorageConfig) -> Result<Self, StoreError> {
        let settings = postgres::Settings {
            pool_size: config.pool_size,
            statement_timeout_ms: config.statement_timeout_ms,
            sslmode: config.sslmode.clone(),
        };
        Self::open_with(&config.url, &settings).await
    }

    /// [`Store::open`], with PostgreSQL's connection settings.
    pub async fn open_with(url: &str, settings: &postgres::Settings) -> Result<Self, StoreError> {
        let backend: Arc<dyn Backend> = if url.starts_with("sqlite:") {
            Arc::new(sqlite::SqliteBackend::open(url).await?)
        } else if postgres::is_postgres_url(url) {
            Arc::new(postgres::PostgresBackend::open(url, settings).await?)
        } else {
            return Err(StoreError::UnsupportedUrl(shown_url(url)));
        };
        let writer = writer::Writer::spawn(Arc::clone(&backend));
        let reads = reads::Reads::spawn(&backend);
        Ok(Self {
            backend,
            writer,
            reads,
            peers: Arc::default(),
            serving: Arc::default(),
            owner: Arc::default(),
            blocklist: Arc::new(tokio::sync::watch::Sender::new(None)),
        })
    }

    /// Registers this process as one serving from the database (see [`peers`]); waits, when
    /// other processes serve, until they have seen this one (at most [`peers::JOIN_WAIT`]).
    /// Returns the loop that beats every [`peers::BEAT_EVERY`] from now on: run it beside the
    /// server, and call [`Store::leave`] when it stops.
    pub async fn join(&self) -> impl Future<Output = ()> + Send + 'static {
        use std::sync::atomic::Ordering;
        self.serving.store(true, Ordering::Release);
        let owner = format!("{}-{:016x}", std::process::id(), rand::random::<u64>());
        let started = unix_millis();
        let stale = i64::try_from(peers::STALE_AFTER.as_millis()).unwrap_or(i64::MAX);
        if let Ok(others) = self.beat(&owner, started, stale).await
            && !others.is_empty()
        {
            // The others trust their memory until they see this process: wait for each to
            // beat once more.
            let until = std::time::Instant::now() + peers::JOIN_WAIT;
            loop {
                tokio::time::sleep(peers::BEAT_EVERY / 4).await;
                match self.beat(&owner, started, stale).await {
                    Ok(others) if others.iter().all(|(_, beat)| *beat > started) => break,
                    Err(_) => break,
                    Ok(_) if std::time::Instant::now() >= until => {
                        tracing::warn!(
                            "another process on the database did not beat within {:?}; serving anyway",
                            peers::JOIN_WAIT
                        );
                        break;
                    }
                    Ok(_) => {}
                }
            }
        }
        let _ = self.owner.set(owner.clone());
        let store = self.clone();
        let wakeups = self.backend.wakeups();
        async move {
            let mut tick = tokio::time::interval(peers::BEAT_EVERY);
            tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            loop {
                // Every second, and at once when another process announces a change.
                match &wakeups {
                    Some(wake) => tokio::select! {
                        _ = tick.tick() => {}
                        () = wake.notified() => {}
                    },
                    None => {
                        tick.tick().await;
                    }
                }
                if let Err(e) = store.beat(&owner, started, stale).await {
                    tracing::warn!(error = %e, "beating in the processes table failed");
                }
            }
        }
    }

    /// Takes this process out of the processes table (at shutdown, once the loops stopped).
    pub async fn leave(&self) {
        if let Some(owner) = self.owner.get() {
            self.peers.beat(false, None);
            if let Err(e) = self.backend.peers_leave(owner).await {
                tracing::warn!(error = %e, "leaving the processes table failed");
            }
        }
    }

    /// One beat: records this process, reads the others and the sessions marker.
    async fn beat(
        &self,
        owner: &str,
        started: i64,
        stale: i64,
    ) -> Result<Vec<(String, i64)>, StoreError> {
        let result = async {
            let others = self
                .backend
                .peers_beat(owner, started, unix_millis(), stale)
                .await?;
            let marker = self.backend.meta_get(peers::SESSIONS_CHANGED).await?;
            let blocklist = self.backend.meta_get(peers::BLOCKLIST_CHANGED).await?;
            Ok::<_, StoreError>((others, marker, blocklist))
        }
        .await;
        match result {
            Ok((others, marker, blocklist)) => {
                self.peers.beat(others.is_empty(), marker);
                self.blocklist.send_if_modified(|seen| {
                    let changed = seen.as_ref() != Some(&blocklist);
                    *seen = Some(blocklist);
                    changed
                });
                if let Some(generation) = self.peers.holders_wanted() {
                    match self.backend.session_holders(peers::HOLDERS_KNOWN).await {
                        Ok(openids) => self.peers.holders_loaded(generation, openids),
                        Err(e) => {
                            tracing::warn!(error = %e, "reading who holds sessions failed")
                        }
                    }
                }
                Ok(others)
            }
            Err(e) => {
                // Unsure who else is there: trust nothing in memory.
                self.peers.beat(false, None);
                Err(e)
            }
        }
    }

    /// Whether this process serves alone from the database (see [`peers`]).
    pub fn alone(&self) -> bool {
        self.peers.alone()
    }

    /// The backend, for reads and direct writes.
    pub fn backend(&self) -> &dyn Backend {
        self.backend.as_ref()
    }

    /// The dedup record of message `key`, whichever process wrote it, read together with the
    /// other lookups waiting ([`reads`]).
    pub async fn dedup_record(&self, key: &str) -> Result<Option<DedupRecord>, StoreError> {
        self.reads.dedup.get(key.to_owned()).await
    }

    /// The replay guard's unexpired record of (timestamp, nonce), read together with the
    /// other lookups waiting ([`reads`]).
    pub async fn replay_record(
        &self,
        timestamp: &str,
        nonce: &str,
    ) -> Result<Option<ReplayRecord>, StoreError> {
        self.reads
            .replay
            .get((timestamp.to_owned(), nonce.to_owned()))
            .await
    }

    /// A user's unexpired session entries (key, JSON value): from the cache while this
    /// process is alone ([`peers`]), else read together with the other lookups waiting
    /// ([`reads`]).
    pub async fn session(&self, openid: &str) -> Result<Vec<(String, String)>, StoreError> {
        let now = unix_now();
        if let Some(rows) = self.peers.cached(openid, now) {
            return Ok(rows);
        }
        let generation = self.peers.generation();
        let rows = self.reads.session.get(openid.to_owned()).await?;
        let session = rows
            .iter()
            .filter(|(_, _, expires)| expires.is_none_or(|at| at > now))
            .map(|(k, v, _)| (k.clone(), v.clone()))
            .collect();
        self.peers.cache(openid, rows, generation);
        Ok(session)
    }

    /// Applies changes to a user's session in one transaction (the cache follows).
    pub async fn session_apply(
        &self,
        openid: &str,
        changes: &[SessionChange],
        now: i64,
    ) -> Result<(), StoreError> {
        self.peers.holding(openid);
        let applied = self.backend.session_apply(openid, changes, now).await;
        // Again once it ended: a switch meanwhile started a new set, whose load may have read
        // the table before this write committed.
        self.peers.holding(openid);
        match applied {
            Ok(()) => self.peers.written(openid, changes),
            Err(e) => {
                self.peers.forget(openid);
                return Err(e);
            }
        }
        if !self.serving.load(std::sync::atomic::Ordering::Acquire) {
            // Serving processes cache sessions: tell them this one changed under them.
            self.announce(peers::SESSIONS_CHANGED).await?;
        }
        Ok(())
    }

    /// Bumps the marker `key` that every process reads at its beat ([`peers`]).
    async fn announce(&self, key: &str) -> Result<(), StoreError> {
        let marker = format!("{}-{:08x}", unix_millis(), rand::random::<u32>());
        self.backend.announce(key, &marker).await
    }

    /// Adds a user to the runtime blocklist, and tells every process on the database.
    pub async fn block_user(&self, openid: &str, reason: &str, at: i64) -> Result<(), StoreError> {
        self.backend.block_user(openid, reason, at).await?;
        self.announce(peers::BLOCKLIST_CHANGED).await
    }

    /// Removes a user from the runtime blocklist, and tells every process on the database.
    pub async fn unblock_user(&self, openid: &str) -> Result<(), StoreError> {
        self.backend.unblock_user(openid).await?;
        self.announce(peers::BLOCKLIST_CHANGED).await
    }

    /// Changes to the runtime blocklist made by any process (this one included), as its beat
    /// learns of them: the value changes with each.
    pub fn blocklist_changes(&self) -> tokio::sync::watch::Receiver<Option<Option<String>>> {
        self.blocklist.subscribe()
    }

    /// Takes a token from `key`'s bucket of `per_minute` (see [`crate::support::buckets`]):
    /// from `local` while this process is alone on the database, else from the bucket all
    /// processes share in it. `None` when taken; else how long until a token is there.
    pub async fn rate_take(
        &self,
        local: &crate::support::buckets::Buckets,
        key: &str,
        per_minute: u32,
    ) -> Result<Option<std::time::Duration>, StoreError> {
        if self.alone() {
            return Ok(local.take(key).err());
        }
        self.backend.rate_take(key, per_minute, unix_millis()).await
    }

    /// Queues a write for the next batch. Never waits; see [`writer`] for what happens when the
    /// queue is full.
    pub fn defer(&self, write: Deferred) {
        self.writer.defer(write);
    }

    /// The batch writer's counters (batches, writes, drops, the queue's length), for metrics.
    pub fn writer_stats(&self) -> writer::WriterStats {
        self.writer.stats()
    }

    /// Calls `hook` whenever the batch writer gives up a batch (see
    /// [`writer::Writer::set_error_hook`]).
    pub fn set_error_hook(&self, hook: writer::ErrorHook) {
        self.writer.set_error_hook(hook);
    }

    /// Writes everything queued so far, and waits for it.
    pub async fn flush(&self) -> Result<(), StoreError> {
        self.writer.flush().await
    }

    /// Checks the database answers.
    pub async fn ping(&self) -> Result<(), StoreError> {
        self.backend.ping().await
    }

    /// Checks the database can be written now (for `/healthz`): not locked by another
    /// connection, not corrupt, and the last write did not fail for a full disk or an I/O
    /// error.
    pub async fn health(&self) -> Result<(), Unhealthy> {
        self.backend.health().await
    }

    /// Caps the database at `pages` pages, as a full disk would, or lifts the cap (`None`):
    /// writes that need more pages fail with SQLite's "database or disk is full". For tests
    /// and drills.
    #[doc(hidden)]
    pub async fn limit_pages(&self, pages: Option<u32>) -> Result<(), StoreError> {
        self.backend.limit_pages(pages).await
    }

    /// A value from huixin's settings table.
    pub async fn meta_get(&self, key: &str) -> Result<Option<String>, StoreError> {
        self.backend.meta_get(key).await
    }

    /// The token generated on first start, if any.
    pub async fn generated_token(&self) -> Result<Option<String>, StoreError> {
        self.backend.meta_get(GENERATED_TOKEN).await
    }

    /// The generated token, creating it now if there is none. Returns `(token, created)`;
    /// two processes racing get the same token.
    pub async fn generated_token_or_create(&self) -> Result<(String, bool), StoreError> {
        if let Some(token) = self.generated_token().await? {
            return Ok((token, false));
        }
        let fresh = generate_token();
        let stored = self
            .backend
            .meta_get_or_insert(GENERATED_TOKEN, &fresh)
            .await?;
        let created = stored == fresh;
        Ok((stored, created))
    }

    /// Removes old log rows, dedup records and hourly counts, and expired sessions and replay
    /// records.
    pub async fn prune(&self, log_retention_days: u32) -> Result<Pruned, StoreError> {
        let now = unix_now();
        // 0 keeps the log forever, and so its counts.
        let (log_before, counts_before) = match log_retention_days {
            0 => (i64::MIN, i64::MIN),
            days => (
                now - i64::from(days) * 86_400,
                // The counts outlive the log: the overview charts a year back where the log
                // keeps a month; and never less than the log they count.
                now - i64::from(days.max(console::COUNTS_RETENTION_DAYS)) * 86_400,
            ),
        };
        // Dedup records only matter while WeChat may still retry (15 s); keep an hour.
        self.backend
            .prune(log_before, now - 3_600, counts_before, now)
            .await
    }
}

/// How long until a shared bucket of `cap` tokens, holding `tokens` when taken from
/// `elapsed_ms` ago, has a token again ([`Backend::rate_take`]).
fn buckets_wait(cap: f64, tokens: f64, elapsed_ms: i64) -> std::time::Duration {
    let per_ms = cap / 60_000.0;
    let now = (tokens + elapsed_ms.max(0) as f64 * per_ms).min(cap);
    std::time::Duration::from_millis(((1.0 - now).max(0.0) / per_ms).ceil() as u64)
}

/// `url` as it may be shown or logged: without its password.
pub fn shown_url(url: &str) -> String {
    match reqwest::Url::parse(url) {
        Ok(mut parsed) if parsed.password().is_some() => {
            let _ = parsed.set_password(Some("***"));
            parsed.to_string()
        }
        _ => url.to_owned(),
    }
}

/// A fresh 32-character alphanumeric token (the longest WeChat accepts).
pub fn generate_token() -> String {
    use rand::RngExt;
    use rand::distr::Alphanumeric;
    rand::rng()
        .sample_iter(Alphanumeric)
        .take(32)
        .map(char::from)
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_shown_url_has_no_password() {
        assert_eq!(
            shown_url("postgres://huixin:s3cret@db.internal:5432/huixin?sslmode=require"),
            "postgres://huixin:***@db.internal:5432/huixin?sslmode=require"
        );
        assert_eq!(shown_url("postgres://db/huixin"), "postgres://db/huixin");
        assert_eq!(shown_url("sqlite://huixin.db"), "sqlite://huixin.db");
    }

    #[tokio::test]
    async fn an_unsupported_url_is_named_without_its_password() {
        let e = Store::open("mysql://root:hunter2@db/app")
            .await
            .expect_err("mysql is not supported")
            .to_string();
        assert!(e.contains("mysql://root:***@db/app"), "{e}");
        assert!(!e.contains("hunter2"), "{e}");
    }

    #[tokio::test]
    async fn an_unreachable_postgres_says_why_without_its_password() {
        let e = Store::open("postgres://huixin:hunter2@127.0.0.1:1/huixin")
            .await
            .expect_err("nothing listens on port 1")
            .to_string();
        assert!(
            e.starts_with("cannot connect to postgres://huixin:***@127.0.0.1:1/huixin: "),
            "{e}"
        );
        assert!(e.contains("refused"), "{e}");
        assert!(!e.contains("hunter2"), "{e}");
    }
}
