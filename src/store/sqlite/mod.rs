//! The SQLite backend: one file, WAL mode (readers never wait for the writer; several
//! processes on one host can share it), a 3 s busy timeout, `synchronous = NORMAL`.
//!
//! Reads go through a pool of connections; every write goes through one more connection of
//! its own. SQLite lets one writer in at a time anyway: writers of one process queue in order
//! for that connection instead of meeting SQLite's lock, whose busy handler sleeps between
//! tries and, with several writers, takes turns by chance (32 concurrent pushes were accepted
//! at a third of the rate of one at a time). Writers in other processes still meet the lock
//! and its busy timeout.

use std::path::{Path, PathBuf};
use std::str::FromStr;
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use async_trait::async_trait;
use sqlx::sqlite::{
    SqliteConnectOptions, SqliteConnection, SqliteJournalMode, SqlitePool, SqlitePoolOptions,
    SqliteSynchronous,
};
use sqlx::{Connection, QueryBuilder, Sqlite};

use super::{
    Backend, Batch, DedupRecord, DedupRow, Deferred, Follower, LogEntry, NewToken, Pruned,
    ReplayRecord, SessionChange, SessionRow, StoreError, TokenRow, Unhealthy,
};
use super::{padded_keys, statement_chunks};
use crate::support::clock::unix_now;

mod admin;
mod apps;
mod console;
mod push;

/// How long the health probe waits for the write lock before calling the database locked.
const PROBE_WAIT: Duration = Duration::from_secs(1);
/// How often the health probe runs `PRAGMA quick_check` (it reads the whole file).
const QUICK_CHECK_EVERY: Duration = Duration::from_secs(600);
/// SQLite's largest `max_page_count`: what lifting a page limit sets.
const NO_PAGE_LIMIT: u32 = 0x3fff_fffe;

/// A store in an SQLite file.
#[derive(Debug, Clone)]
pub struct SqliteBackend {
    /// Reads.
    pool: SqlitePool,
    /// Writes: one connection.
    writer: SqlitePool,
    /// How connections are opened (the health probe opens its own).
    options: SqliteConnectOptions,
    in_memory: bool,
    state: Arc<WriteState>,
}

/// What the writer knows about its own health.
#[derive(Debug, Default)]
struct WriteState {
    /// A page limit set by [`Backend::limit_pages`] (0: none), applied to every new writer
    /// connection.
    max_pages: AtomicU32,
    /// Why the last write failed, when it failed for a reason the health check reports; cleared
    /// by the next write that succeeds.
    last_failure: Mutex<Option<Unhealthy>>,
    /// When `PRAGMA quick_check` last ran, and what it found.
    quick_check: Mutex<Option<(Instant, Option<String>)>>,
    /// Held while a health probe runs: probes (the health endpoints answer anyone) run one at
    /// a time, so a flood of them costs one connection and one lock attempt at a time, and a
    /// due `quick_check` runs once.
    probing: tokio::sync::Mutex<()>,
}

impl SqliteBackend {
    /// Opens (creating if needed) the file named by `url` and runs pending migrations.
    ///
    /// A new file is created readable by its owner only (0600; SQLite gives the `-wal` and
    /// `-shm` files the same mode), and an existing one readable by others is restricted:
    /// it holds access tokens and push key hashes.
    pub async fn open(url: &str) -> Result<Self, StoreError> {
        let options = SqliteConnectOptions::from_str(url)?
            .create_if_missing(true)
            .journal_mode(SqliteJournalMode::Wal)
            .synchronous(SqliteSynchronous::Normal)
            // Below the reply deadline: a database locked that long fails the message's
            // store calls (which answer the fallback) instead of outlasting the deadline.
            .busy_timeout(Duration::from_secs(3))
            .foreign_keys(true);
        let in_memory = url.contains(":memory:") || url.contains("mode=memory");
        if !in_memory {
            prepare_file(options.get_filename())?;
        }
        let state = Arc::new(WriteState::default());
        // Processes starting together on a new file race to create it, switch it to WAL and
        // migrate it; SQLite answers the losers "locked" or "already exists" at once (the busy
        // timeout does not cover these). They wait a moment and try again.
        let mut attempt: u32 = 0;
        loop {
            let result = async {
                let pool = SqlitePoolOptions::new()
                    .max_connections(8)
                    .acquire_timeout(Duration::from_secs(3))
                    .connect_with(options.clone())
                    .await?;
                super::schema::SQLITE.run(&pool).await?;
                let writer = if in_memory {
                    // A second pool would open a second, empty database.
                    pool.clone()
                } else {
                    writer_pool(&options, &state).await?
                };
                Ok::<_, StoreError>((pool, writer))
            }
            .await;
            match result {
                Ok((pool, writer)) => {
                    return Ok(Self {
                        pool,
                        writer,
                        options,
                        in_memory,
                        state,
                    });
                }
                Err(e) if attempt < 8 => {
                    attempt += 1;
                    tracing::debug!(error = %e, attempt, "opening the store raced with another process; retrying");
                    tokio::time::sleep(Duration::from_millis(25 * u64::from(attempt))).await;
                }
                Err(e) => return Err(e),
            }
        }
    }

    /// Runs a write, noting for the health check whether it failed for a full disk, an I/O
    /// error or corruption (and clearing that note when it succeeds).
    async fn tracked<T>(
        &self,
        write: impl Future<Output = Result<T, StoreError>>,
    ) -> Result<T, StoreError> {
        let result = write.await;
        let failure = match &result {
            Ok(_) => None,
            Err(StoreError::Database(e)) => match write_failure(e) {
                Some(failure) => Some(failure),
                // A constraint or a busy lock says nothing about the database's health.
                None => return result,
            },
            Err(_) => return result,
        };
        let mut last = self
            .state
            .last_failure
            .lock()
            .unwrap_or_else(|p| p.into_inner());
        *last = failure;
        result
    }

    /// Whether `PRAGMA quick_check` is due, and its last finding.
    fn quick_check_due(&self) -> (bool, Option<String>) {
        let last = self
            .state
            .quick_check
            .lock()
            .unwrap_or_else(|p| p.into_inner());
        match &*last {
            Some((at, finding)) if at.elapsed() < QUICK_CHECK_EVERY => (false, finding.clone()),
            _ => (true, None),
        }
    }

    fn quick_check_done(&self, finding: Option<String>) {
        let mut last = self
            .state
            .quick_check
            .lock()
            .unwrap_or_else(|p| p.into_inner());
        *last = Some((Instant::now(), finding));
    }

    /// Probes `conn`: integrity when due, then whether the write lock can be taken.
    async fn probe(&self, conn: &mut SqliteConnection) -> Result<(), Unhealthy> {
        let (due, finding) = self.quick_check_due();
        if due {
            let rows: Vec<String> = sqlx::query_scalar("PRAGMA quick_check")
                .fetch_all(&mut *conn)
                .await
                .map_err(|e| probe_failure(&e))?;
            let finding = match rows.as_slice() {
                [ok] if ok == "ok" => None,
                rows => Some(rows.join("; ")),
            };
            self.quick_check_done(finding.clone());
            if let Some(finding) = finding {
                return Err(Unhealthy::Corrupt(finding));
            }
        } else if let Some(finding) = finding {
            return Err(Unhealthy::Corrupt(finding));
        }
        // Taking the write lock (and giving it back at once) is what a write would need.
        sqlx::query("BEGIN IMMEDIATE")
            .execute(&mut *conn)
            .await
            .map_err(|e| probe_failure(&e))?;
        sqlx::query("ROLLBACK")
            .execute(&mut *conn)
            .await
            .map_err(|e| probe_failure(&e))?;
        Ok(())
    }
}

/// The writer's pool: one connection, which carries any page limit, and which is closed and
/// replaced when it comes back from a failed transaction.
async fn writer_pool(
    options: &SqliteConnectOptions,
    state: &Arc<WriteState>,
) -> Result<SqlitePool, sqlx::Error> {
    let limit = Arc::clone(state);
    SqlitePoolOptions::new()
        .max_connections(1)
        .acquire_timeout(Duration::from_secs(3))
        .after_connect(move |conn, _| {
            let pages = limit.max_pages.load(Ordering::Relaxed);
            Box::pin(async move {
                if pages > 0 {
                    set_max_pages(conn, pages).await?;
                }
                Ok(())
            })
        })
        // When SQLite rolls a transaction back by itself (it does on a full disk), sqlx's
        // ROLLBACK then fails and sqlx still counts the transaction as open. Its next
        // transaction would become a SAVEPOINT inside a transaction that is never committed:
        // every later write would be answered as done, be lost, and keep the write lock from
        // other processes. A connection that comes back still counting an open transaction
        // is closed instead; the next write opens a fresh one.
        .after_release(|conn, _| {
            Box::pin(async move {
                // After a failed transaction the rollback its drop queued may not have run
                // yet, so the connection is then usually closed even when that rollback would
                // succeed: a reconnect after a failure, which is rare. A successful write has
                // finished its commit before it returns, so it never pays for this.
                let clean = !conn.is_in_transaction();
                if !clean {
                    tracing::warn!("store writer connection left mid-transaction; reopening it");
                }
                Ok(clean)
            })
        })
        .connect_with(options.clone())
        .await
}

async fn set_max_pages(conn: &mut SqliteConnection, pages: u32) -> Result<(), sqlx::Error> {
    // PRAGMA takes no bound parameters; `pages` is a number.
    sqlx::query(sqlx::AssertSqlSafe(format!(
        "PRAGMA max_page_count = {pages}"
    )))
    .execute(conn)
    .await?;
    Ok(())
}

/// SQLite's primary result code of a database error.
fn primary_code(e: &sqlx::Error) -> Option<i32> {
    let code = e.as_database_error()?.code()?;
    code.parse::<i32>().ok().map(|c| c & 0xff)
}

const SQLITE_BUSY: i32 = 5;
const SQLITE_LOCKED: i32 = 6;
const SQLITE_READONLY: i32 = 8;
const SQLITE_IOERR: i32 = 10;
const SQLITE_CORRUPT: i32 = 11;
const SQLITE_FULL: i32 = 13;
const SQLITE_CANTOPEN: i32 = 14;
const SQLITE_NOTADB: i32 = 26;

/// What a failed write says about the database's health, if anything.
fn write_failure(e: &sqlx::Error) -> Option<Unhealthy> {
    match primary_code(e)? {
        SQLITE_FULL => Some(Unhealthy::Full(e.to_string())),
        SQLITE_CORRUPT | SQLITE_NOTADB => Some(Unhealthy::Corrupt(e.to_string())),
        SQLITE_IOERR | SQLITE_READONLY | SQLITE_CANTOPEN => {
            Some(Unhealthy::WriteFailing(e.to_string()))
        }
        _ => None,
    }
}

/// What a failed health probe says.
fn probe_failure(e: &sqlx::Error) -> Unhealthy {
    match primary_code(e) {
        Some(SQLITE_BUSY | SQLITE_LOCKED) => Unhealthy::Locked,
        Some(SQLITE_CORRUPT | SQLITE_NOTADB) => Unhealthy::Corrupt(e.to_string()),
        Some(SQLITE_FULL) => Unhealthy::Full(e.to_string()),
        _ => Unhealthy::Unreachable(e.to_string()),
    }
}

/// Checks the database's folder exists (naming the missing one), creates the file readable by
/// its owner only when it is new, and restricts an existing one (and its `-wal` and `-shm`)
/// that others can read.
fn prepare_file(path: &Path) -> Result<(), StoreError> {
    if let Some(folder) = path.parent().filter(|p| !p.as_os_str().is_empty())
        && !folder.exists()
    {
        let mut missing = folder;
        while let Some(up) = missing.parent().filter(|p| !p.as_os_str().is_empty()) {
            if up.exists() {
                break;
            }
            missing = up;
        }
        return Err(StoreError::MissingFolder {
            path: path.to_owned(),
            folder: missing.to_owned(),
        });
    }
    restrict(path)
}

#[cfg(unix)]
fn restrict(path: &Path) -> Result<(), StoreError> {
    use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
    let failed = |source| StoreError::Permissions {
        path: path.to_owned(),
        source,
    };
    // Created here, not by SQLite, so it never exists with the umask's wider mode. Another
    // process may win the race to create it: then it is checked like any existing file.
    match std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(path)
    {
        Ok(_) => {}
        Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => {}
        Err(e) => return Err(failed(e)),
    }
    for file in [
        path.to_owned(),
        sibling(path, "-wal"),
        sibling(path, "-shm"),
    ] {
        let Ok(meta) = std::fs::metadata(&file) else {
            continue;
        };
        let mode = meta.permissions().mode();
        if mode & 0o077 != 0 {
            // A file this user does not own cannot be changed; it still opens (another
            // account set it up), with a warning.
            match std::fs::set_permissions(&file, std::fs::Permissions::from_mode(mode & 0o700)) {
                Ok(()) => {
                    tracing::warn!(file = %file.display(), "database file was readable by others; restricted to its owner (0600)");
                }
                Err(e) => {
                    tracing::warn!(file = %file.display(), error = %e, "database file is readable by others and cannot be restricted");
                }
            }
        }
    }
    Ok(())
}

#[cfg(not(unix))]
fn restrict(_path: &Path) -> Result<(), StoreError> {
    Ok(())
}

/// `path` with `suffix` appended to its file name (`huixin.db-wal`).
fn sibling(path: &Path, suffix: &str) -> PathBuf {
    let mut name = path.as_os_str().to_owned();
    name.push(suffix);
    PathBuf::from(name)
}

#[async_trait]
impl Backend for SqliteBackend {
    async fn ping(&self) -> Result<(), StoreError> {
        sqlx::query("SELECT 1").execute(&self.pool).await?;
        Ok(())
    }

    async fn health(&self) -> Result<(), Unhealthy> {
        let _one_at_a_time = self.state.probing.lock().await;
        if self.in_memory {
            let mut conn = self.pool.acquire().await.map_err(|e| probe_failure(&e))?;
            self.probe(&mut conn).await?;
        } else {
            // A connection of its own: it reads the file as it is now (a pooled one may hold
            // pages read before), waits briefly for the lock, and never creates the file.
            let options = self
                .options
                .clone()
                .create_if_missing(false)
                .busy_timeout(PROBE_WAIT);
            let mut conn = SqliteConnection::connect_with(&options)
                .await
                .map_err(|e| probe_failure(&e))?;
            let probed = self.probe(&mut conn).await;
            let _ = conn.close().await;
            probed?;
        }
        let last = self
            .state
            .last_failure
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .clone();
        match last {
            Some(failure) => Err(failure),
            None => Ok(()),
        }
    }

    async fn limit_pages(&self, pages: Option<u32>) -> Result<(), StoreError> {
        let pages = pages.unwrap_or(0);
        self.state.max_pages.store(pages, Ordering::Relaxed);
        let mut conn = self.writer.acquire().await?;
        set_max_pages(&mut conn, if pages == 0 { NO_PAGE_LIMIT } else { pages }).await?;
        Ok(())
    }

    async fn replay_get_many(
        &self,
        pairs: &[(String, String)],
        now: i64,
    ) -> Result<Vec<ReplayRecord>, StoreError> {
        let mut found = Vec::new();
        for pairs in pairs.chunks(256) {
            let mut select = QueryBuilder::<Sqlite>::new(
                "SELECT timestamp, nonce, request_hash, expires_at FROM replay_guard \
                 WHERE expires_at >= ",
            );
            select
                .push_bind(now)
                .push(" AND (timestamp, nonce) IN (VALUES ");
            let mut values = select.separated(", ");
            for (timestamp, nonce) in padded_keys(pairs) {
                values
                    .push("(")
                    .push_bind_unseparated(timestamp)
                    .push_unseparated(", ")
                    .push_bind_unseparated(nonce)
                    .push_unseparated(")");
            }
            select.push(")");
            found.extend(
                select
                    .build_query_as::<ReplayRecord>()
                    .fetch_all(&self.pool)
                    .await?,
            );
        }
        Ok(found)
    }

    async fn peers_beat(
        &self,
        owner: &str,
        started_ms: i64,
        now_ms: i64,
        stale_ms: i64,
    ) -> Result<Vec<(String, i64)>, StoreError> {
        // Not `tracked`: a beat rewrites a row in place, and its success says nothing about
        // whether the database has room (the health check must keep reporting a full disk).
        sqlx::query(
            "INSERT INTO processes (owner, started_ms, beat_ms) VALUES (?1, ?2, ?3) \
             ON CONFLICT (owner) DO UPDATE SET beat_ms = excluded.beat_ms",
        )
        .bind(owner)
        .bind(started_ms)
        .bind(now_ms)
        .execute(&self.writer)
        .await?;
        // Rows of processes long gone (killed, so they never left) are cleared.
        sqlx::query("DELETE FROM processes WHERE beat_ms < ?1")
            .bind(now_ms.saturating_sub(3_600_000))
            .execute(&self.writer)
            .await?;
        Ok(sqlx::query_as::<_, (String, i64)>(
            "SELECT owner, beat_ms FROM processes WHERE owner <> ?1 AND beat_ms >= ?2",
        )
        .bind(owner)
        .bind(now_ms.saturating_sub(stale_ms))
        .fetch_all(&self.pool)
        .await?)
    }

    async fn peers_leave(&self, owner: &str) -> Result<(), StoreError> {
        sqlx::query("DELETE FROM processes WHERE owner = ?1")
            .bind(owner)
            .execute(&self.writer)
            .await?;
        Ok(())
    }

    async fn replay_recent(&self, limit: u32, now: i64) -> Result<Vec<ReplayRecord>, StoreError> {
        Ok(sqlx::query_as::<_, ReplayRecord>(
            "SELECT timestamp, nonce, request_hash, expires_at FROM replay_guard \
             WHERE expires_at >= ?1 ORDER BY expires_at DESC LIMIT ?2",
        )
        .bind(now)
        .bind(limit)
        .fetch_all(&self.pool)
        .await?)
    }

    async fn rate_take(
        &self,
        key: &str,
        per_minute: u32,
        now_ms: i64,
    ) -> Result<Option<Duration>, StoreError> {
        let cap = f64::from(per_minute.max(1));
        self.tracked(async {
            // One statement takes the token when the refilled bucket has one, under the write
            // lock: processes taking at once never both take the last token.
            let taken: Option<f64> = sqlx::query_scalar(
                "INSERT INTO rate_limits (key, tokens, at_ms) VALUES (?1, ?2 - 1, ?3) \
                 ON CONFLICT (key) DO UPDATE SET \
                   tokens = MIN(?2, rate_limits.tokens \
                                + MAX(0, ?3 - rate_limits.at_ms) * ?2 / 60000.0) - 1, \
                   at_ms = MAX(rate_limits.at_ms, ?3) \
                 WHERE MIN(?2, rate_limits.tokens \
                           + MAX(0, ?3 - rate_limits.at_ms) * ?2 / 60000.0) >= 1 \
                 RETURNING tokens",
            )
            .bind(key)
            .bind(cap)
            .bind(now_ms)
            .fetch_optional(&self.writer)
            .await?;
            if taken.is_some() {
                return Ok(None);
            }
            let (tokens, at_ms): (f64, i64) =
                sqlx::query_as("SELECT tokens, at_ms FROM rate_limits WHERE key = ?1")
                    .bind(key)
                    .fetch_one(&self.writer)
                    .await?;
            Ok(Some(super::buckets_wait(cap, tokens, now_ms - at_ms)))
        })
        .await
    }

    async fn meta_set(&self, key: &str, value: &str) -> Result<(), StoreError> {
        self.tracked(async {
            sqlx::query(
                "INSERT INTO huixin_meta (key, value, updated_at) VALUES (?1, ?2, ?3) \
                 ON CONFLICT (key) DO UPDATE SET value = excluded.value, \
                   updated_at = excluded.updated_at",
            )
            .bind(key)
            .bind(value)
            .bind(unix_now())
            .execute(&self.writer)
            .await?;
            Ok(())
        })
        .await
    }

    async fn meta_get(&self, key: &str) -> Result<Option<String>, StoreError> {
        Ok(
            sqlx::query_scalar::<_, String>("SELECT value FROM huixin_meta WHERE key = ?1")
                .bind(key)
                .fetch_optional(&self.pool)
                .await?,
        )
    }

    async fn meta_get_or_insert(&self, key: &str, value: &str) -> Result<String, StoreError> {
        self.tracked(async {
            sqlx::query(
                "INSERT INTO huixin_meta (key, value, updated_at) VALUES (?1, ?2, ?3) \
             ON CONFLICT (key) DO NOTHING",
            )
            .bind(key)
            .bind(value)
            .bind(unix_now())
            .execute(&self.writer)
            .await?;
            Ok(self
                .meta_get(key)
                .await?
                .unwrap_or_else(|| value.to_owned()))
        })
        .await
    }

    async fn follower_subscribed(
        &self,
        openid: &str,
        at: i64,
        scene: Option<&str>,
    ) -> Result<(), StoreError> {
        self.tracked(async {
        sqlx::query(
            "INSERT INTO followers \
               (openid, subscribed, first_subscribed_at, last_subscribed_at, scene, last_seen_at) \
             VALUES (?1, 1, ?2, ?2, ?3, ?2) \
             ON CONFLICT (openid) DO UPDATE SET \
               subscribed = (MAX(COALESCE(followers.last_subscribed_at, 0), excluded.last_subscribed_at) \
                             >= COALESCE(followers.unsubscribed_at, 0)), \
               first_subscribed_at = MIN(COALESCE(followers.first_subscribed_at, excluded.first_subscribed_at), \
                                         excluded.first_subscribed_at), \
               scene = CASE WHEN excluded.last_subscribed_at >= COALESCE(followers.last_subscribed_at, 0) \
                            THEN COALESCE(excluded.scene, followers.scene) ELSE followers.scene END, \
               last_subscribed_at = MAX(COALESCE(followers.last_subscribed_at, 0), excluded.last_subscribed_at), \
               last_seen_at = MAX(COALESCE(followers.last_seen_at, 0), excluded.last_seen_at)",
        )
        .bind(openid)
        .bind(at)
        .bind(scene)
        .execute(&self.writer)
        .await?;
        Ok(())
        }).await
    }

    async fn follower_unsubscribed(&self, openid: &str, at: i64) -> Result<(), StoreError> {
        self.tracked(async {
        sqlx::query(
            "INSERT INTO followers (openid, subscribed, unsubscribed_at, last_seen_at) \
             VALUES (?1, 0, ?2, ?2) \
             ON CONFLICT (openid) DO UPDATE SET \
               subscribed = (COALESCE(followers.last_subscribed_at, 0) \
                             > MAX(COALESCE(followers.unsubscribed_at, 0), excluded.unsubscribed_at)), \
               unsubscribed_at = MAX(COALESCE(followers.unsubscribed_at, 0), excluded.unsubscribed_at), \
               last_seen_at = MAX(COALESCE(followers.last_seen_at, 0), excluded.last_seen_at)",
        )
        .bind(openid)
        .bind(at)
        .execute(&self.writer)
        .await?;
        Ok(())
        }).await
    }

    async fn follower(&self, openid: &str) -> Result<Option<Follower>, StoreError> {
        Ok(sqlx::query_as::<_, Follower>(
            "SELECT openid, subscribed, first_subscribed_at, last_subscribed_at, \
                    unsubscribed_at, scene, last_seen_at \
             FROM followers WHERE openid = ?1",
        )
        .bind(openid)
        .fetch_optional(&self.pool)
        .await?)
    }

    async fn follower_count(&self) -> Result<u64, StoreError> {
        let n: i64 = sqlx::query_scalar("SELECT COUNT(*) FROM followers WHERE subscribed = 1")
            .fetch_one(&self.pool)
            .await?;
        Ok(n.max(0) as u64)
    }

    async fn sessions_load(
        &self,
        openids: &[String],
        now: i64,
    ) -> Result<Vec<SessionRow>, StoreError> {
        let mut found = Vec::new();
        for openids in openids.chunks(256) {
            let mut select = QueryBuilder::<Sqlite>::new(
                "SELECT openid, key, value, expires_at FROM sessions \
                 WHERE (expires_at IS NULL OR expires_at > ",
            );
            select.push_bind(now).push(") AND openid IN (");
            let mut values = select.separated(", ");
            for openid in padded_keys(openids) {
                values.push_bind(openid);
            }
            select.push(")");
            found.extend(
                select
                    .build_query_as::<SessionRow>()
                    .fetch_all(&self.pool)
                    .await?,
            );
        }
        Ok(found)
    }

    async fn session_holders(&self, limit: usize) -> Result<Option<Vec<String>>, StoreError> {
        let openids: Vec<String> =
            sqlx::query_scalar("SELECT DISTINCT openid FROM sessions LIMIT ?")
                .bind(i64::try_from(limit).unwrap_or(i64::MAX).saturating_add(1))
                .fetch_all(&self.pool)
                .await?;
        Ok((openids.len() <= limit).then_some(openids))
    }

    async fn session_apply(
        &self,
        openid: &str,
        changes: &[SessionChange],
        now: i64,
    ) -> Result<(), StoreError> {
        self.tracked(async {
            let mut tx = self.writer.begin().await?;
            for change in changes {
                match change {
                    SessionChange::Set {
                        key,
                        value,
                        expires_at,
                    } => {
                        sqlx::query(
                            "INSERT INTO sessions (openid, key, value, expires_at, updated_at) \
                         VALUES (?1, ?2, ?3, ?4, ?5) \
                         ON CONFLICT (openid, key) DO UPDATE SET \
                           value = excluded.value, expires_at = excluded.expires_at, \
                           updated_at = excluded.updated_at",
                        )
                        .bind(openid)
                        .bind(key)
                        .bind(value)
                        .bind(expires_at)
                        .bind(now)
                        .execute(&mut *tx)
                        .await?;
                    }
                    SessionChange::Delete { key } => {
                        sqlx::query("DELETE FROM sessions WHERE openid = ?1 AND key = ?2")
                            .bind(openid)
                            .bind(key)
                            .execute(&mut *tx)
                            .await?;
                    }
                }
            }
            tx.commit().await?;
            Ok(())
        })
        .await
    }

    async fn write_batch(&self, batch: &[Deferred]) -> Result<(), StoreError> {
        let batch = Batch::of(batch);
        self.tracked(async {
            let mut tx = self.writer.begin().await?;
            for rows in statement_chunks(&batch.log) {
                let mut insert = QueryBuilder::<Sqlite>::new(
                    "INSERT INTO inbound_log \
                       (received_at, openid, msg_type, event, msg_id, summary, reply_type, \
                        outcome, rule, latency_ms, reply) ",
                );
                insert.push_values(rows, |mut row, e| {
                    row.push_bind(e.received_at)
                        .push_bind(&e.openid)
                        .push_bind(&e.msg_type)
                        .push_bind(&e.event)
                        .push_bind(&e.msg_id)
                        .push_bind(&e.summary)
                        .push_bind(&e.reply_type)
                        .push_bind(&e.outcome)
                        .push_bind(&e.rule)
                        .push_bind(e.latency_ms)
                        .push_bind(&e.reply);
                });
                insert.build().execute(&mut *tx).await?;
            }
            console::add_counts(&mut tx, &batch.counts).await?;
            for rows in statement_chunks(&batch.dedup) {
                let mut insert = QueryBuilder::<Sqlite>::new(
                    "INSERT INTO dedup (key, owner, state, reply, reply_time, updated_at) ",
                );
                insert.push_values(rows, |mut row, r| {
                    row.push_bind(&r.key)
                        .push_bind(&r.owner)
                        .push_bind(r.state.as_str())
                        .push_bind(&r.reply)
                        .push_bind(r.reply_time)
                        .push_bind(r.updated_at);
                });
                insert.push(
                    " ON CONFLICT (key) DO UPDATE SET owner = excluded.owner, \
                       state = excluded.state, reply = excluded.reply, \
                       reply_time = excluded.reply_time, updated_at = excluded.updated_at",
                );
                insert.build().execute(&mut *tx).await?;
            }
            for rows in statement_chunks(&batch.replay) {
                // The first request seen keeps the record: another process may have stored
                // the pair since this one looked.
                let mut insert = QueryBuilder::<Sqlite>::new(
                    "INSERT INTO replay_guard (timestamp, nonce, request_hash, expires_at) ",
                );
                insert.push_values(rows, |mut row, r| {
                    row.push_bind(&r.timestamp)
                        .push_bind(&r.nonce)
                        .push_bind(&r.request_hash)
                        .push_bind(r.expires_at);
                });
                insert.push(" ON CONFLICT (timestamp, nonce) DO NOTHING");
                insert.build().execute(&mut *tx).await?;
            }
            for rows in statement_chunks(&batch.seen) {
                let mut insert =
                    QueryBuilder::<Sqlite>::new("INSERT INTO followers (openid, last_seen_at) ");
                insert.push_values(rows, |mut row, (openid, at)| {
                    row.push_bind(*openid).push_bind(*at);
                });
                insert.push(
                    " ON CONFLICT (openid) DO UPDATE SET \
                       last_seen_at = MAX(COALESCE(followers.last_seen_at, 0), excluded.last_seen_at)",
                );
                insert.build().execute(&mut *tx).await?;
            }
            tx.commit().await?;
            Ok(())
        })
        .await
    }

    async fn dedup_get_many(&self, keys: &[String]) -> Result<Vec<DedupRecord>, StoreError> {
        let mut found = Vec::new();
        for keys in keys.chunks(256) {
            let mut select = QueryBuilder::<Sqlite>::new(
                "SELECT key, owner, state, reply, reply_time, updated_at FROM dedup WHERE key IN (",
            );
            let mut values = select.separated(", ");
            for key in padded_keys(keys) {
                values.push_bind(key);
            }
            select.push(")");
            let rows = select
                .build_query_as::<DedupRow>()
                .fetch_all(&self.pool)
                .await?;
            found.extend(rows.into_iter().filter_map(DedupRow::into_record));
        }
        Ok(found)
    }

    async fn dedup_changes(&self, since: i64, owner: &str) -> Result<Vec<DedupRecord>, StoreError> {
        let rows = sqlx::query_as::<_, DedupRow>(
            "SELECT key, owner, state, reply, reply_time, updated_at FROM dedup \
             WHERE updated_at >= ?1 AND owner <> ?2",
        )
        .bind(since)
        .bind(owner)
        .fetch_all(&self.pool)
        .await?;
        Ok(rows.into_iter().filter_map(DedupRow::into_record).collect())
    }

    async fn recent_log(&self, limit: u32) -> Result<Vec<LogEntry>, StoreError> {
        Ok(sqlx::query_as::<_, LogEntry>(
            "SELECT received_at, openid, msg_type, event, msg_id, summary, reply_type, outcome, \
                    rule, latency_ms, reply \
             FROM inbound_log ORDER BY id DESC LIMIT ?1",
        )
        .bind(i64::from(limit))
        .fetch_all(&self.pool)
        .await?)
    }

    async fn blocked_users(&self) -> Result<Vec<String>, StoreError> {
        Ok(sqlx::query_scalar("SELECT openid FROM blocked_users")
            .fetch_all(&self.pool)
            .await?)
    }

    async fn block_user(&self, openid: &str, reason: &str, at: i64) -> Result<(), StoreError> {
        self.tracked(async {
            sqlx::query(
                "INSERT INTO blocked_users (openid, reason, created_at) VALUES (?1, ?2, ?3) \
             ON CONFLICT (openid) DO UPDATE SET reason = excluded.reason",
            )
            .bind(openid)
            .bind(reason)
            .bind(at)
            .execute(&self.writer)
            .await?;
            Ok(())
        })
        .await
    }

    async fn unblock_user(&self, openid: &str) -> Result<(), StoreError> {
        self.tracked(async {
            sqlx::query("DELETE FROM blocked_users WHERE openid = ?1")
                .bind(openid)
                .execute(&self.writer)
                .await?;
            Ok(())
        })
        .await
    }

    async fn token_load(&self, app_id: &str) -> Result<Option<TokenRow>, StoreError> {
        Ok(sqlx::query_as::<_, TokenRow>(
            "SELECT token, expires_at, refresh_after, fetched_at, version \
             FROM access_tokens WHERE app_id = ?1",
        )
        .bind(app_id)
        .fetch_optional(&self.pool)
        .await?)
    }

    async fn token_try_lease(
        &self,
        app_id: &str,
        owner: &str,
        seen: i64,
        now: i64,
        until: i64,
    ) -> Result<bool, StoreError> {
        self.tracked(async {
            sqlx::query(
                "INSERT INTO access_tokens (app_id) VALUES (?1) ON CONFLICT (app_id) DO NOTHING",
            )
            .bind(app_id)
            .execute(&self.writer)
            .await?;
            let taken = sqlx::query(
                "UPDATE access_tokens SET lease_owner = ?2, lease_until = ?5 \
             WHERE app_id = ?1 AND version = ?3 \
               AND (lease_owner IS NULL OR lease_until <= ?4 OR lease_owner = ?2)",
            )
            .bind(app_id)
            .bind(owner)
            .bind(seen)
            .bind(now)
            .bind(until)
            .execute(&self.writer)
            .await?
            .rows_affected();
            Ok(taken == 1)
        })
        .await
    }

    async fn token_store(
        &self,
        app_id: &str,
        owner: &str,
        token: &NewToken<'_>,
    ) -> Result<bool, StoreError> {
        self.tracked(async {
            let stored = sqlx::query(
                "UPDATE access_tokens SET token = ?3, expires_at = ?4, refresh_after = ?5, \
               fetched_at = ?6, version = version + 1, lease_owner = NULL, lease_until = 0 \
             WHERE app_id = ?1 AND lease_owner = ?2",
            )
            .bind(app_id)
            .bind(owner)
            .bind(token.token)
            .bind(token.expires_at)
            .bind(token.refresh_after)
            .bind(token.fetched_at)
            .execute(&self.writer)
            .await?
            .rows_affected();
            Ok(stored == 1)
        })
        .await
    }

    async fn token_release(&self, app_id: &str, owner: &str) -> Result<(), StoreError> {
        self.tracked(async {
            sqlx::query(
                "UPDATE access_tokens SET lease_owner = NULL, lease_until = 0 \
             WHERE app_id = ?1 AND lease_owner = ?2",
            )
            .bind(app_id)
            .bind(owner)
            .execute(&self.writer)
            .await?;
            Ok(())
        })
        .await
    }

    async fn token_invalidate(&self, app_id: &str, token: &str) -> Result<bool, StoreError> {
        self.tracked(async {
            let changed = sqlx::query(
                "UPDATE access_tokens SET expires_at = 0, refresh_after = 0 \
             WHERE app_id = ?1 AND token = ?2 AND expires_at > 0",
            )
            .bind(app_id)
            .bind(token)
            .execute(&self.writer)
            .await?
            .rows_affected();
            Ok(changed == 1)
        })
        .await
    }

    async fn prune(
        &self,
        log_before: i64,
        dedup_before: i64,
        counts_before: i64,
        now: i64,
    ) -> Result<Pruned, StoreError> {
        self.tracked(async {
            let log = sqlx::query("DELETE FROM inbound_log WHERE received_at < ?1")
                .bind(log_before)
                .execute(&self.writer)
                .await?
                .rows_affected();
            let dedup = sqlx::query("DELETE FROM dedup WHERE updated_at < ?1")
                .bind(dedup_before)
                .execute(&self.writer)
                .await?
                .rows_affected();
            let sessions = sqlx::query(
                "DELETE FROM sessions WHERE expires_at IS NOT NULL AND expires_at <= ?1",
            )
            .bind(now)
            .execute(&self.writer)
            .await?
            .rows_affected();
            let replay = sqlx::query("DELETE FROM replay_guard WHERE expires_at < ?1")
                .bind(now)
                .execute(&self.writer)
                .await?
                .rows_affected();
            // A bucket idle for an hour is full again: its row says nothing.
            sqlx::query("DELETE FROM rate_limits WHERE at_ms < ?1")
                .bind(now.saturating_sub(3_600).saturating_mul(1_000))
                .execute(&self.writer)
                .await?;
            let counts = sqlx::query("DELETE FROM log_counts WHERE hour < ?1")
                .bind(crate::store::console::hour_of(counts_before))
                .execute(&self.writer)
                .await?
                .rows_affected();
            Ok(Pruned {
                log,
                dedup,
                sessions,
                replay,
                counts,
            })
        })
        .await
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::push::{NewPush, PushStore};

    #[tokio::test]
    async fn a_transaction_sqlite_ended_itself_does_not_swallow_later_writes() {
        let dir = tempfile::tempdir().expect("temp dir");
        let url = format!("sqlite://{}", dir.path().join("t.db").display());
        let b = SqliteBackend::open(&url).await.expect("opens");
        // On a full disk SQLite rolls the transaction back by itself, so sqlx's own ROLLBACK
        // fails and sqlx still counts the transaction as open.
        {
            let mut tx = b.writer.begin().await.expect("begin");
            sqlx::query("ROLLBACK")
                .execute(&mut *tx)
                .await
                .expect("rollback");
        }
        // A write whose statement fails inside its transaction (a push id used twice), then
        // writes that must be committed and seen by other connections.
        let recipients = ["o1".to_owned()];
        let push = NewPush {
            id: "p1",
            key_hash: None,
            target: "user:o1",
            title: "t",
            body: "b",
            url: None,
            summary: None,
            source: "api",
            created_at: 1,
            recipients: &recipients,
        };
        b.push_insert(&push).await.expect("stored");
        assert!(b.push_insert(&push).await.is_err(), "the same id twice");
        let again = NewPush { id: "p2", ..push };
        b.push_insert(&again).await.expect("stored");
        assert!(b.topic_create("t", true, "", 1).await.expect("created"));
        assert!(
            b.push_by_id("p2").await.expect("read").is_some(),
            "committed: the read connections see it"
        );
        assert!(b.topic("t").await.expect("read").is_some());
    }
}
