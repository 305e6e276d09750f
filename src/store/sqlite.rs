//! The SQLite backend: one file, WAL mode (readers never wait for the writer; several
//! processes on one host can share it), a 3 s busy timeout, `synchronous = NORMAL`.
//!
//! Reads go through a pool of connections; every write goes through one more connection of
//! its own. SQLite lets one writer in at a time anyway: writers of one process queue in order
//! for that connection instead of meeting SQLite's lock, whose busy handler sleeps between
//! tries and, with several writers, takes turns by chance (32 concurrent pushes were accepted
//! at a third of the rate of one at a time). Writers in other processes still meet the lock
//! and its busy timeout.

use std::str::FromStr;
use std::time::Duration;

use async_trait::async_trait;
use sqlx::migrate::Migrator;
use sqlx::sqlite::{
    SqliteConnectOptions, SqliteJournalMode, SqlitePool, SqlitePoolOptions, SqliteSynchronous,
};

use super::{
    Backend, DedupRecord, DedupState, Deferred, Follower, LogEntry, NewToken, Pruned,
    SessionChange, StoreError, TokenRow,
};
use crate::support::clock::unix_now;

mod push;

static MIGRATOR: Migrator = sqlx::migrate!("src/store/migrations");

/// A `dedup` row as stored; the state becomes a [`DedupState`] here, at the boundary.
#[derive(sqlx::FromRow)]
struct DedupRow {
    key: String,
    owner: String,
    state: String,
    reply: Option<String>,
    reply_time: Option<i64>,
    updated_at: i64,
}

impl DedupRow {
    /// The record; `None` for a state this version does not know (a newer process's).
    fn into_record(self) -> Option<DedupRecord> {
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

/// A store in an SQLite file.
#[derive(Debug, Clone)]
pub struct SqliteBackend {
    /// Reads.
    pool: SqlitePool,
    /// Writes: one connection.
    writer: SqlitePool,
}

impl SqliteBackend {
    /// Opens (creating if needed) the file named by `url` and runs pending migrations.
    pub async fn open(url: &str) -> Result<Self, StoreError> {
        let options = SqliteConnectOptions::from_str(url)?
            .create_if_missing(true)
            .journal_mode(SqliteJournalMode::Wal)
            .synchronous(SqliteSynchronous::Normal)
            // Below the reply deadline: a database locked that long fails the message's
            // store calls (which answer the fallback) instead of outlasting the deadline.
            .busy_timeout(Duration::from_secs(3))
            .foreign_keys(true);
        // Processes starting together on a new file race to create it, switch it to WAL and
        // migrate it; SQLite answers the losers "locked" or "already exists" at once (the busy
        // timeout does not cover these). They wait a moment and try again.
        let in_memory = url.contains(":memory:") || url.contains("mode=memory");
        let mut attempt: u32 = 0;
        loop {
            let result = async {
                let pool = SqlitePoolOptions::new()
                    .max_connections(8)
                    .acquire_timeout(Duration::from_secs(3))
                    .connect_with(options.clone())
                    .await?;
                MIGRATOR.run(&pool).await?;
                let writer = if in_memory {
                    // A second pool would open a second, empty database.
                    pool.clone()
                } else {
                    SqlitePoolOptions::new()
                        .max_connections(1)
                        .acquire_timeout(Duration::from_secs(3))
                        .connect_with(options.clone())
                        .await?
                };
                Ok::<_, StoreError>((pool, writer))
            }
            .await;
            match result {
                Ok((pool, writer)) => return Ok(Self { pool, writer }),
                Err(e) if attempt < 8 => {
                    attempt += 1;
                    tracing::debug!(error = %e, attempt, "opening the store raced with another process; retrying");
                    tokio::time::sleep(Duration::from_millis(25 * u64::from(attempt))).await;
                }
                Err(e) => return Err(e),
            }
        }
    }
}

#[async_trait]
impl Backend for SqliteBackend {
    async fn ping(&self) -> Result<(), StoreError> {
        sqlx::query("SELECT 1").execute(&self.pool).await?;
        Ok(())
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
    }

    async fn follower_subscribed(
        &self,
        openid: &str,
        at: i64,
        scene: Option<&str>,
    ) -> Result<(), StoreError> {
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
    }

    async fn follower_unsubscribed(&self, openid: &str, at: i64) -> Result<(), StoreError> {
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

    async fn session_load(
        &self,
        openid: &str,
        now: i64,
    ) -> Result<Vec<(String, String)>, StoreError> {
        Ok(sqlx::query_as::<_, (String, String)>(
            "SELECT key, value FROM sessions \
             WHERE openid = ?1 AND (expires_at IS NULL OR expires_at > ?2)",
        )
        .bind(openid)
        .bind(now)
        .fetch_all(&self.pool)
        .await?)
    }

    async fn session_apply(
        &self,
        openid: &str,
        changes: &[SessionChange],
        now: i64,
    ) -> Result<(), StoreError> {
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
    }

    async fn write_batch(&self, batch: &[Deferred]) -> Result<(), StoreError> {
        let mut tx = self.writer.begin().await?;
        for write in batch {
            match write {
                Deferred::Log(e) => {
                    sqlx::query(
                        "INSERT INTO inbound_log \
                           (received_at, openid, msg_type, event, msg_id, summary, reply_type, outcome) \
                         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8)",
                    )
                    .bind(e.received_at)
                    .bind(&e.openid)
                    .bind(&e.msg_type)
                    .bind(&e.event)
                    .bind(&e.msg_id)
                    .bind(&e.summary)
                    .bind(&e.reply_type)
                    .bind(&e.outcome)
                    .execute(&mut *tx)
                    .await?;
                }
                Deferred::Dedup(r) => {
                    sqlx::query(
                        "INSERT INTO dedup (key, owner, state, reply, reply_time, updated_at) \
                         VALUES (?1, ?2, ?3, ?4, ?5, ?6) \
                         ON CONFLICT (key) DO UPDATE SET owner = excluded.owner, \
                           state = excluded.state, reply = excluded.reply, \
                           reply_time = excluded.reply_time, updated_at = excluded.updated_at",
                    )
                    .bind(&r.key)
                    .bind(&r.owner)
                    .bind(r.state.as_str())
                    .bind(&r.reply)
                    .bind(r.reply_time)
                    .bind(r.updated_at)
                    .execute(&mut *tx)
                    .await?;
                }
                Deferred::Seen { openid, at } => {
                    sqlx::query(
                        "INSERT INTO followers (openid, last_seen_at) VALUES (?1, ?2) \
                         ON CONFLICT (openid) DO UPDATE SET \
                           last_seen_at = MAX(COALESCE(followers.last_seen_at, 0), excluded.last_seen_at)",
                    )
                    .bind(openid)
                    .bind(at)
                    .execute(&mut *tx)
                    .await?;
                }
            }
        }
        tx.commit().await?;
        Ok(())
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
            "SELECT received_at, openid, msg_type, event, msg_id, summary, reply_type, outcome \
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
    }

    async fn unblock_user(&self, openid: &str) -> Result<(), StoreError> {
        sqlx::query("DELETE FROM blocked_users WHERE openid = ?1")
            .bind(openid)
            .execute(&self.writer)
            .await?;
        Ok(())
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
    }

    async fn token_store(
        &self,
        app_id: &str,
        owner: &str,
        token: &NewToken<'_>,
    ) -> Result<bool, StoreError> {
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
    }

    async fn token_release(&self, app_id: &str, owner: &str) -> Result<(), StoreError> {
        sqlx::query(
            "UPDATE access_tokens SET lease_owner = NULL, lease_until = 0 \
             WHERE app_id = ?1 AND lease_owner = ?2",
        )
        .bind(app_id)
        .bind(owner)
        .execute(&self.writer)
        .await?;
        Ok(())
    }

    async fn token_invalidate(&self, app_id: &str, token: &str) -> Result<bool, StoreError> {
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
    }

    async fn prune(
        &self,
        log_before: i64,
        dedup_before: i64,
        now: i64,
    ) -> Result<Pruned, StoreError> {
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
        let sessions =
            sqlx::query("DELETE FROM sessions WHERE expires_at IS NOT NULL AND expires_at <= ?1")
                .bind(now)
                .execute(&self.writer)
                .await?
                .rows_affected();
        Ok(Pruned {
            log,
            dedup,
            sessions,
        })
    }
}
