//! The PostgreSQL backend, for several huixin processes (on several hosts) sharing one
//! database: `[storage] url = "postgres://…"`.
//!
//! One pool of connections serves reads and writes (PostgreSQL takes concurrent writers, so
//! there is no single writer connection as on SQLite). Batches are written with one statement
//! per table, the rows passed as arrays (`UNNEST`), and rows that several processes may upsert
//! at once are written in key order, so two batches never wait for each other in a circle.
//! Every connection runs with a statement timeout (3 s by default, below WeChat's 5 s reply
//! deadline), so a stuck database fails a message's store calls instead of outlasting it.
//!
//! Connection settings come from the URL (sqlx's parameters: `sslmode`, `sslrootcert`,
//! `application_name`, `options`, …) and from huixin's own, given as `[storage]` keys or as URL
//! parameters, which win: `pool_size` and `statement_timeout_ms`.

use std::str::FromStr;
use std::sync::{Arc, Mutex, OnceLock};
use std::time::Duration;

use tokio::sync::Notify;

use async_trait::async_trait;
use sqlx::postgres::{PgConnectOptions, PgPool, PgPoolOptions, PgSslMode};

use super::{
    Backend, Batch, DedupRecord, DedupRow, Deferred, Follower, LogEntry, NewToken, Pruned,
    ReplayRecord, SessionChange, SessionRow, StoreError, TokenRow, Unhealthy,
};
use crate::support::clock::unix_now;

mod admin;
mod apps;
mod console;
mod push;

/// Connections per process, unless configured.
pub const DEFAULT_POOL_SIZE: u32 = 10;
/// The statement timeout, unless configured (milliseconds).
pub const DEFAULT_STATEMENT_TIMEOUT_MS: u64 = 3_000;
/// The LISTEN/NOTIFY channel on which processes announce changes to each other.
const CHANNEL: &str = "huixin_changes";
/// How long the health probe waits for an answer.
const PROBE_WAIT: Duration = Duration::from_secs(1);

/// How to connect, besides the URL: `[storage]` keys (the URL's own parameters win).
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Settings {
    /// `pool_size`: connections per process.
    pub pool_size: Option<u32>,
    /// `statement_timeout_ms`: 0 for none.
    pub statement_timeout_ms: Option<u64>,
    /// `sslmode`: `disable`, `prefer` (sqlx's default), `require`, `verify-ca`, `verify-full`.
    pub sslmode: Option<String>,
}

/// A store in a PostgreSQL database.
#[derive(Debug, Clone)]
pub struct PostgresBackend {
    pool: PgPool,
    /// Woken by other processes' announcements, once a serving process asked
    /// ([`Backend::wakeups`]).
    wakeups: Arc<OnceLock<Arc<Notify>>>,
    /// Why the last write failed, when for a reason the health check reports; cleared by the
    /// next write that succeeds.
    last_failure: Arc<Mutex<Option<Unhealthy>>>,
}

/// Whether `url` names a PostgreSQL database.
pub fn is_postgres_url(url: &str) -> bool {
    url.starts_with("postgres://") || url.starts_with("postgresql://")
}

/// The URL without huixin's own parameters, and the settings they and `settings` give.
fn split_url(url: &str, settings: &Settings) -> Result<(String, Settings), StoreError> {
    let bad = |why: String| StoreError::BadUrl(why);
    let mut parsed = reqwest::Url::parse(url).map_err(|e| bad(format!("{e}")))?;
    let mut merged = settings.clone();
    let mut kept: Vec<(String, String)> = Vec::new();
    for (key, value) in parsed.query_pairs() {
        match &*key {
            "pool_size" | "max_connections" => {
                merged.pool_size =
                    Some(value.parse().map_err(|_| {
                        bad(format!("{key}={value:?} is not a number of connections"))
                    })?);
            }
            "statement_timeout_ms" => {
                merged.statement_timeout_ms = Some(value.parse().map_err(|_| {
                    bad(format!("{key}={value:?} is not a number of milliseconds"))
                })?);
            }
            "sslmode" | "ssl-mode" => merged.sslmode = Some(value.into_owned()),
            _ => kept.push((key.into_owned(), value.into_owned())),
        }
    }
    if kept.is_empty() {
        parsed.set_query(None);
    } else {
        parsed.query_pairs_mut().clear().extend_pairs(kept);
    }
    if merged.pool_size == Some(0) {
        return Err(bad("pool_size must be at least 1".into()));
    }
    Ok((parsed.to_string(), merged))
}

impl PostgresBackend {
    /// Connects to the database named by `url` and runs pending migrations (one process at a
    /// time: sqlx's migrator holds an advisory lock while it runs).
    pub async fn open(url: &str, settings: &Settings) -> Result<Self, StoreError> {
        let (url, settings) = split_url(url, settings)?;
        let mut options = PgConnectOptions::from_str(&url)?;
        if let Some(mode) = &settings.sslmode {
            let mode = PgSslMode::from_str(mode).map_err(|_| {
                StoreError::BadUrl(format!(
                    "sslmode {mode:?}: use disable, allow, prefer, require, verify-ca or verify-full"
                ))
            })?;
            options = options.ssl_mode(mode);
        }
        let timeout = settings
            .statement_timeout_ms
            .unwrap_or(DEFAULT_STATEMENT_TIMEOUT_MS);
        options = options.options([("statement_timeout", format!("{timeout}ms"))]);
        // One connection first: the pool would only say it timed out, where this says why
        // (refused, unknown host, authentication, no such database).
        match <sqlx::PgConnection as sqlx::Connection>::connect_with(&options).await {
            Ok(conn) => {
                let _ = sqlx::Connection::close(conn).await;
            }
            Err(e) => {
                return Err(StoreError::Connect {
                    url: super::shown_url(&url),
                    reason: e.to_string(),
                });
            }
        }
        let pool = PgPoolOptions::new()
            .max_connections(settings.pool_size.unwrap_or(DEFAULT_POOL_SIZE))
            .acquire_timeout(Duration::from_secs(3))
            .connect_with(options)
            .await?;
        super::schema::POSTGRES.run(&pool).await?;
        Ok(Self {
            pool,
            wakeups: Arc::default(),
            last_failure: Arc::default(),
        })
    }

    /// The pool, for tools that work on the tables directly (`huixin store copy`).
    pub fn pool(&self) -> &PgPool {
        &self.pool
    }

    /// Runs a write, noting for the health check whether it failed for a full disk or a
    /// read-only database (and clearing that note when it succeeds).
    async fn tracked<T>(
        &self,
        write: impl Future<Output = Result<T, StoreError>>,
    ) -> Result<T, StoreError> {
        let result = write.await;
        let failure = match &result {
            Ok(_) => None,
            Err(StoreError::Database(e)) => match write_failure(e) {
                Some(failure) => Some(failure),
                None => return result,
            },
            Err(_) => return result,
        };
        *self.last_failure.lock().unwrap_or_else(|p| p.into_inner()) = failure;
        result
    }
}

/// Listens on [`CHANNEL`] on a connection of its own and wakes `wake` with every
/// announcement, and whenever the connection was lost (announcements may have been missed
/// meanwhile; the beat reads the markers anyway). Runs as long as the runtime does.
async fn listen(pool: PgPool, wake: Arc<Notify>) {
    loop {
        match listen_once(&pool, &wake).await {
            Err(sqlx::Error::PoolClosed) => return,
            Err(e) => {
                tracing::warn!(error = %e, "listening for other processes failed; retrying");
            }
        }
        tokio::time::sleep(Duration::from_secs(1)).await;
    }
}

async fn listen_once(
    pool: &PgPool,
    wake: &Notify,
) -> Result<std::convert::Infallible, sqlx::Error> {
    let mut listener = sqlx::postgres::PgListener::connect_with(pool).await?;
    listener.listen(CHANNEL).await?;
    loop {
        if listener.try_recv().await?.is_none() {
            tracing::debug!("the connection listening for other processes was lost");
        }
        wake.notify_one();
    }
}

/// What a failed write says about the database's health, by SQLSTATE: class 53 (insufficient
/// resources: disk full, out of memory), 25006 (a read-only transaction: a standby), class 58
/// and XX (I/O errors, corruption).
fn write_failure(e: &sqlx::Error) -> Option<Unhealthy> {
    let code = e.as_database_error()?.code()?;
    let message = e.to_string();
    if code == "53100" {
        Some(Unhealthy::Full(message))
    } else if code == "XX001" || code == "XX002" {
        Some(Unhealthy::Corrupt(message))
    } else if code.starts_with("53") || code.starts_with("58") || code == "25006" {
        Some(Unhealthy::WriteFailing(message))
    } else {
        None
    }
}

#[async_trait]
impl Backend for PostgresBackend {
    async fn ping(&self) -> Result<(), StoreError> {
        sqlx::query("SELECT 1").execute(&self.pool).await?;
        Ok(())
    }

    async fn health(&self) -> Result<(), Unhealthy> {
        let probe = async {
            let mut tx = self.pool.begin().await?;
            // A write would need a read-write transaction: a standby answers read-only.
            let read_only: String = sqlx::query_scalar("SHOW transaction_read_only")
                .fetch_one(&mut *tx)
                .await?;
            tx.rollback().await?;
            Ok::<_, sqlx::Error>(read_only == "on")
        };
        match tokio::time::timeout(PROBE_WAIT, probe).await {
            Err(_) => return Err(Unhealthy::Unreachable("no answer within 1 s".into())),
            Ok(Err(e)) => return Err(Unhealthy::Unreachable(e.to_string())),
            Ok(Ok(true)) => {
                return Err(Unhealthy::WriteFailing(
                    "the database is read-only (a standby?)".into(),
                ));
            }
            Ok(Ok(false)) => {}
        }
        let last = self
            .last_failure
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .clone();
        match last {
            Some(failure) => Err(failure),
            None => Ok(()),
        }
    }

    async fn replay_get_many(
        &self,
        pairs: &[(String, String)],
        now: i64,
    ) -> Result<Vec<ReplayRecord>, StoreError> {
        let (timestamps, nonces): (Vec<&str>, Vec<&str>) =
            pairs.iter().map(|(t, n)| (t.as_str(), n.as_str())).unzip();
        // One primary-key lookup per pair, whatever the table held when the connection
        // planned the statement: written as a join, a plan cached while the table was empty
        // (a fresh install) hashes the pairs and scans the whole table for every read.
        Ok(sqlx::query_as::<_, ReplayRecord>(
            "SELECT r.timestamp, r.nonce, r.request_hash, r.expires_at \
             FROM UNNEST($2::text[], $3::text[]) AS k(t, n) \
             CROSS JOIN LATERAL (SELECT * FROM replay_guard g \
                 WHERE g.timestamp = k.t AND g.nonce = k.n AND g.expires_at >= $1 LIMIT 1) r",
        )
        .bind(now)
        .bind(timestamps)
        .bind(nonces)
        .fetch_all(&self.pool)
        .await?)
    }

    async fn peers_beat(
        &self,
        owner: &str,
        started_ms: i64,
        now_ms: i64,
        stale_ms: i64,
    ) -> Result<Vec<(String, i64)>, StoreError> {
        // One round trip: record this beat, clear rows of processes long gone (killed, so
        // they never left), list the others.
        Ok(sqlx::query_as::<_, (String, i64)>(
            "WITH beat AS ( \
                 INSERT INTO processes (owner, started_ms, beat_ms) VALUES ($1, $2, $3) \
                 ON CONFLICT (owner) DO UPDATE SET beat_ms = EXCLUDED.beat_ms), \
             gone AS (DELETE FROM processes WHERE beat_ms < $3 - 3600000) \
             SELECT owner, beat_ms FROM processes WHERE owner <> $1 AND beat_ms >= $4",
        )
        .bind(owner)
        .bind(started_ms)
        .bind(now_ms)
        .bind(now_ms.saturating_sub(stale_ms))
        .fetch_all(&self.pool)
        .await?)
    }

    async fn peers_leave(&self, owner: &str) -> Result<(), StoreError> {
        sqlx::query("DELETE FROM processes WHERE owner = $1")
            .bind(owner)
            .execute(&self.pool)
            .await?;
        Ok(())
    }

    async fn replay_recent(&self, limit: u32, now: i64) -> Result<Vec<ReplayRecord>, StoreError> {
        Ok(sqlx::query_as::<_, ReplayRecord>(
            "SELECT timestamp, nonce, request_hash, expires_at FROM replay_guard \
             WHERE expires_at >= $1 ORDER BY expires_at DESC LIMIT $2",
        )
        .bind(now)
        .bind(i64::from(limit))
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
            // One statement takes the token when the refilled bucket has one, on the row's
            // latest version: processes taking at once never both take the last token.
            let taken: Option<f64> = sqlx::query_scalar(
                "INSERT INTO rate_limits AS rate_limits (key, tokens, at_ms) VALUES ($1, $2 - 1, $3) \
                 ON CONFLICT (key) DO UPDATE SET \
                   tokens = LEAST($2, rate_limits.tokens \
                                + GREATEST(0, $3 - rate_limits.at_ms) * $2 / 60000.0) - 1, \
                   at_ms = GREATEST(rate_limits.at_ms, $3) \
                 WHERE LEAST($2, rate_limits.tokens \
                           + GREATEST(0, $3 - rate_limits.at_ms) * $2 / 60000.0) >= 1 \
                 RETURNING tokens",
            )
            .bind(key)
            .bind(cap)
            .bind(now_ms)
            .fetch_optional(&self.pool)
            .await?;
            if taken.is_some() {
                return Ok(None);
            }
            let (tokens, at_ms): (f64, i64) =
                sqlx::query_as("SELECT tokens, at_ms FROM rate_limits WHERE key = $1")
                    .bind(key)
                    .fetch_one(&self.pool)
                    .await?;
            Ok(Some(super::buckets_wait(cap, tokens, now_ms - at_ms)))
        })
        .await
    }

    async fn meta_set(&self, key: &str, value: &str) -> Result<(), StoreError> {
        self.tracked(async {
            sqlx::query(
                "INSERT INTO huixin_meta (key, value, updated_at) VALUES ($1, $2, $3) \
                 ON CONFLICT (key) DO UPDATE SET value = EXCLUDED.value, \
                   updated_at = EXCLUDED.updated_at",
            )
            .bind(key)
            .bind(value)
            .bind(unix_now())
            .execute(&self.pool)
            .await?;
            Ok(())
        })
        .await
    }

    async fn announce(&self, key: &str, value: &str) -> Result<(), StoreError> {
        self.tracked(async {
            let mut tx = self.pool.begin().await?;
            sqlx::query(
                "INSERT INTO huixin_meta (key, value, updated_at) VALUES ($1, $2, $3) \
                 ON CONFLICT (key) DO UPDATE SET value = EXCLUDED.value, \
                   updated_at = EXCLUDED.updated_at",
            )
            .bind(key)
            .bind(value)
            .bind(unix_now())
            .execute(&mut *tx)
            .await?;
            // Delivered to the listeners when the transaction commits, with the marker.
            sqlx::query("SELECT pg_notify($1, $2)")
                .bind(CHANNEL)
                .bind(key)
                .execute(&mut *tx)
                .await?;
            tx.commit().await?;
            Ok(())
        })
        .await
    }

    fn wakeups(&self) -> Option<Arc<Notify>> {
        let wake = self.wakeups.get_or_init(|| {
            let wake = Arc::new(Notify::new());
            tokio::spawn(listen(self.pool.clone(), Arc::clone(&wake)));
            wake
        });
        Some(Arc::clone(wake))
    }

    async fn meta_get(&self, key: &str) -> Result<Option<String>, StoreError> {
        Ok(
            sqlx::query_scalar::<_, String>("SELECT value FROM huixin_meta WHERE key = $1")
                .bind(key)
                .fetch_optional(&self.pool)
                .await?,
        )
    }

    async fn meta_get_or_insert(&self, key: &str, value: &str) -> Result<String, StoreError> {
        self.tracked(async {
            sqlx::query(
                "INSERT INTO huixin_meta (key, value, updated_at) VALUES ($1, $2, $3) \
                 ON CONFLICT (key) DO NOTHING",
            )
            .bind(key)
            .bind(value)
            .bind(unix_now())
            .execute(&self.pool)
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
                "INSERT INTO followers AS f \
                   (openid, subscribed, first_subscribed_at, last_subscribed_at, scene, last_seen_at) \
                 VALUES ($1, TRUE, $2, $2, $3, $2) \
                 ON CONFLICT (openid) DO UPDATE SET \
                   subscribed = (GREATEST(COALESCE(f.last_subscribed_at, 0), EXCLUDED.last_subscribed_at) \
                                 >= COALESCE(f.unsubscribed_at, 0)), \
                   first_subscribed_at = LEAST(COALESCE(f.first_subscribed_at, EXCLUDED.first_subscribed_at), \
                                               EXCLUDED.first_subscribed_at), \
                   scene = CASE WHEN EXCLUDED.last_subscribed_at >= COALESCE(f.last_subscribed_at, 0) \
                                THEN COALESCE(EXCLUDED.scene, f.scene) ELSE f.scene END, \
                   last_subscribed_at = GREATEST(COALESCE(f.last_subscribed_at, 0), EXCLUDED.last_subscribed_at), \
                   last_seen_at = GREATEST(COALESCE(f.last_seen_at, 0), EXCLUDED.last_seen_at)",
            )
            .bind(openid)
            .bind(at)
            .bind(scene)
            .execute(&self.pool)
            .await?;
            Ok(())
        })
        .await
    }

    async fn follower_unsubscribed(&self, openid: &str, at: i64) -> Result<(), StoreError> {
        self.tracked(async {
            sqlx::query(
                "INSERT INTO followers AS f (openid, subscribed, unsubscribed_at, last_seen_at) \
                 VALUES ($1, FALSE, $2, $2) \
                 ON CONFLICT (openid) DO UPDATE SET \
                   subscribed = (COALESCE(f.last_subscribed_at, 0) \
                                 > GREATEST(COALESCE(f.unsubscribed_at, 0), EXCLUDED.unsubscribed_at)), \
                   unsubscribed_at = GREATEST(COALESCE(f.unsubscribed_at, 0), EXCLUDED.unsubscribed_at), \
                   last_seen_at = GREATEST(COALESCE(f.last_seen_at, 0), EXCLUDED.last_seen_at)",
            )
            .bind(openid)
            .bind(at)
            .execute(&self.pool)
            .await?;
            Ok(())
        })
        .await
    }

    async fn follower(&self, openid: &str) -> Result<Option<Follower>, StoreError> {
        Ok(sqlx::query_as::<_, Follower>(
            "SELECT openid, subscribed, first_subscribed_at, last_subscribed_at, \
                    unsubscribed_at, scene, last_seen_at \
             FROM followers WHERE openid = $1",
        )
        .bind(openid)
        .fetch_optional(&self.pool)
        .await?)
    }

    async fn follower_count(&self) -> Result<u64, StoreError> {
        let n: i64 = sqlx::query_scalar("SELECT COUNT(*) FROM followers WHERE subscribed")
            .fetch_one(&self.pool)
            .await?;
        Ok(n.max(0) as u64)
    }

    async fn sessions_load(
        &self,
        openids: &[String],
        now: i64,
    ) -> Result<Vec<SessionRow>, StoreError> {
        Ok(sqlx::query_as::<_, SessionRow>(
            "SELECT openid, key, value, expires_at FROM sessions \
             WHERE (expires_at IS NULL OR expires_at > $1) AND openid = ANY($2)",
        )
        .bind(now)
        .bind(openids)
        .fetch_all(&self.pool)
        .await?)
    }

    async fn session_holders(&self, limit: usize) -> Result<Option<Vec<String>>, StoreError> {
        let openids: Vec<String> =
            sqlx::query_scalar("SELECT DISTINCT openid FROM sessions LIMIT $1")
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
        // Sets and deletes, each as one statement over arrays; in the order given, so a key
        // set then deleted (or the reverse) ends as the last change says.
        let mut last: std::collections::HashMap<&str, &SessionChange> = Default::default();
        for change in changes {
            let key = match change {
                SessionChange::Set { key, .. } | SessionChange::Delete { key } => key.as_str(),
            };
            last.insert(key, change);
        }
        let mut set_keys = Vec::new();
        let mut set_values = Vec::new();
        let mut set_expiry = Vec::new();
        let mut deleted = Vec::new();
        for (key, change) in last {
            match change {
                SessionChange::Set {
                    value, expires_at, ..
                } => {
                    set_keys.push(key);
                    set_values.push(value.as_str());
                    set_expiry.push(*expires_at);
                }
                SessionChange::Delete { .. } => deleted.push(key),
            }
        }
        self.tracked(async {
            let mut tx = self.pool.begin().await?;
            if !deleted.is_empty() {
                sqlx::query("DELETE FROM sessions WHERE openid = $1 AND key = ANY($2)")
                    .bind(openid)
                    .bind(&deleted)
                    .execute(&mut *tx)
                    .await?;
            }
            if !set_keys.is_empty() {
                sqlx::query(
                    "INSERT INTO sessions (openid, key, value, expires_at, updated_at) \
                     SELECT $1, k, v, e, $5 FROM UNNEST($2::text[], $3::text[], $4::bigint[]) \
                       AS s(k, v, e) ORDER BY k \
                     ON CONFLICT (openid, key) DO UPDATE SET \
                       value = EXCLUDED.value, expires_at = EXCLUDED.expires_at, \
                       updated_at = EXCLUDED.updated_at",
                )
                .bind(openid)
                .bind(&set_keys)
                .bind(&set_values)
                .bind(&set_expiry)
                .bind(now)
                .execute(&mut *tx)
                .await?;
            }
            tx.commit().await?;
            Ok(())
        })
        .await
    }

    async fn write_batch(&self, batch: &[Deferred]) -> Result<(), StoreError> {
        let mut batch = Batch::of(batch);
        // Upserted rows in key order: batches of several processes then lock shared rows in
        // the same order and never deadlock.
        batch.dedup.sort_unstable_by(|a, b| a.key.cmp(&b.key));
        batch.seen.sort_unstable_by(|a, b| a.0.cmp(b.0));
        self.tracked(async {
            let mut tx = self.pool.begin().await?;
            if !batch.log.is_empty() {
                let log = &batch.log;
                sqlx::query(
                    "INSERT INTO inbound_log \
                       (received_at, openid, msg_type, event, msg_id, summary, reply_type, \
                        outcome, rule, latency_ms, reply) \
                     SELECT * FROM UNNEST($1::bigint[], $2::text[], $3::text[], $4::text[], \
                                          $5::text[], $6::text[], $7::text[], $8::text[], \
                                          $9::text[], $10::bigint[], $11::text[])",
                )
                .bind(log.iter().map(|e| e.received_at).collect::<Vec<_>>())
                .bind(log.iter().map(|e| e.openid.as_str()).collect::<Vec<_>>())
                .bind(log.iter().map(|e| e.msg_type.as_str()).collect::<Vec<_>>())
                .bind(log.iter().map(|e| e.event.as_deref()).collect::<Vec<_>>())
                .bind(log.iter().map(|e| e.msg_id.as_deref()).collect::<Vec<_>>())
                .bind(log.iter().map(|e| e.summary.as_deref()).collect::<Vec<_>>())
                .bind(
                    log.iter()
                        .map(|e| e.reply_type.as_str())
                        .collect::<Vec<_>>(),
                )
                .bind(log.iter().map(|e| e.outcome.as_str()).collect::<Vec<_>>())
                .bind(log.iter().map(|e| e.rule.as_deref()).collect::<Vec<_>>())
                .bind(log.iter().map(|e| e.latency_ms).collect::<Vec<_>>())
                .bind(log.iter().map(|e| e.reply.as_deref()).collect::<Vec<_>>())
                .execute(&mut *tx)
                .await?;
            }
            if !batch.dedup.is_empty() {
                let dedup = &batch.dedup;
                sqlx::query(
                    "INSERT INTO dedup (key, owner, state, reply, reply_time, updated_at) \
                     SELECT * FROM UNNEST($1::text[], $2::text[], $3::text[], $4::text[], \
                                          $5::bigint[], $6::bigint[]) \
                     ON CONFLICT (key) DO UPDATE SET owner = EXCLUDED.owner, \
                       state = EXCLUDED.state, reply = EXCLUDED.reply, \
                       reply_time = EXCLUDED.reply_time, updated_at = EXCLUDED.updated_at",
                )
                .bind(dedup.iter().map(|r| r.key.as_str()).collect::<Vec<_>>())
                .bind(dedup.iter().map(|r| r.owner.as_str()).collect::<Vec<_>>())
                .bind(dedup.iter().map(|r| r.state.as_str()).collect::<Vec<_>>())
                .bind(dedup.iter().map(|r| r.reply.as_deref()).collect::<Vec<_>>())
                .bind(dedup.iter().map(|r| r.reply_time).collect::<Vec<_>>())
                .bind(dedup.iter().map(|r| r.updated_at).collect::<Vec<_>>())
                .execute(&mut *tx)
                .await?;
            }
            if !batch.replay.is_empty() {
                // The first request seen keeps the record: another process may have stored
                // the pair since this one looked.
                let replay = &batch.replay;
                sqlx::query(
                    "INSERT INTO replay_guard (timestamp, nonce, request_hash, expires_at) \
                     SELECT * FROM UNNEST($1::text[], $2::text[], $3::text[], $4::bigint[]) \
                     ON CONFLICT (timestamp, nonce) DO NOTHING",
                )
                .bind(
                    replay
                        .iter()
                        .map(|r| r.timestamp.as_str())
                        .collect::<Vec<_>>(),
                )
                .bind(replay.iter().map(|r| r.nonce.as_str()).collect::<Vec<_>>())
                .bind(
                    replay
                        .iter()
                        .map(|r| r.request_hash.as_str())
                        .collect::<Vec<_>>(),
                )
                .bind(replay.iter().map(|r| r.expires_at).collect::<Vec<_>>())
                .execute(&mut *tx)
                .await?;
            }
            if !batch.seen.is_empty() {
                let seen = &batch.seen;
                sqlx::query(
                    "INSERT INTO followers AS f (openid, last_seen_at) \
                     SELECT * FROM UNNEST($1::text[], $2::bigint[]) \
                     ON CONFLICT (openid) DO UPDATE SET \
                       last_seen_at = GREATEST(COALESCE(f.last_seen_at, 0), EXCLUDED.last_seen_at)",
                )
                .bind(seen.iter().map(|(openid, _)| *openid).collect::<Vec<_>>())
                .bind(seen.iter().map(|(_, at)| *at).collect::<Vec<_>>())
                .execute(&mut *tx)
                .await?;
            }
            // Last: every process's batches add to the same few rows (this hour's), whose locks
            // are then held only while this transaction commits.
            console::add_counts(&mut tx, &batch.counts).await?;
            tx.commit().await?;
            Ok(())
        })
        .await
    }

    async fn dedup_get_many(&self, keys: &[String]) -> Result<Vec<DedupRecord>, StoreError> {
        // One primary-key probe per key (see `replay_get_many`).
        let rows = sqlx::query_as::<_, DedupRow>(
            "SELECT d.key, d.owner, d.state, d.reply, d.reply_time, d.updated_at \
             FROM UNNEST($1::text[]) AS k(key) \
             CROSS JOIN LATERAL (SELECT * FROM dedup WHERE dedup.key = k.key LIMIT 1) d",
        )
        .bind(keys)
        .fetch_all(&self.pool)
        .await?;
        Ok(rows.into_iter().filter_map(DedupRow::into_record).collect())
    }

    async fn dedup_changes(&self, since: i64, owner: &str) -> Result<Vec<DedupRecord>, StoreError> {
        let rows = sqlx::query_as::<_, DedupRow>(
            "SELECT key, owner, state, reply, reply_time, updated_at FROM dedup \
             WHERE updated_at >= $1 AND owner <> $2",
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
             FROM inbound_log ORDER BY id DESC LIMIT $1",
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
                "INSERT INTO blocked_users (openid, reason, created_at) VALUES ($1, $2, $3) \
                 ON CONFLICT (openid) DO UPDATE SET reason = EXCLUDED.reason",
            )
            .bind(openid)
            .bind(reason)
            .bind(at)
            .execute(&self.pool)
            .await?;
            Ok(())
        })
        .await
    }

    async fn unblock_user(&self, openid: &str) -> Result<(), StoreError> {
        self.tracked(async {
            sqlx::query("DELETE FROM blocked_users WHERE openid = $1")
                .bind(openid)
                .execute(&self.pool)
                .await?;
            Ok(())
        })
        .await
    }

    async fn token_load(&self, app_id: &str) -> Result<Option<TokenRow>, StoreError> {
        Ok(sqlx::query_as::<_, TokenRow>(
            "SELECT token, expires_at, refresh_after, fetched_at, version \
             FROM access_tokens WHERE app_id = $1",
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
                "INSERT INTO access_tokens (app_id) VALUES ($1) ON CONFLICT (app_id) DO NOTHING",
            )
            .bind(app_id)
            .execute(&self.pool)
            .await?;
            // One UPDATE: PostgreSQL rechecks the condition on the row's latest version when
            // another process changed it meanwhile, so two never both take the lease.
            let taken = sqlx::query(
                "UPDATE access_tokens SET lease_owner = $2, lease_until = $5 \
                 WHERE app_id = $1 AND version = $3 \
                   AND (lease_owner IS NULL OR lease_until <= $4 OR lease_owner = $2)",
            )
            .bind(app_id)
            .bind(owner)
            .bind(seen)
            .bind(now)
            .bind(until)
            .execute(&self.pool)
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
                "UPDATE access_tokens SET token = $3, expires_at = $4, refresh_after = $5, \
                   fetched_at = $6, version = version + 1, lease_owner = NULL, lease_until = 0 \
                 WHERE app_id = $1 AND lease_owner = $2",
            )
            .bind(app_id)
            .bind(owner)
            .bind(token.token)
            .bind(token.expires_at)
            .bind(token.refresh_after)
            .bind(token.fetched_at)
            .execute(&self.pool)
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
                 WHERE app_id = $1 AND lease_owner = $2",
            )
            .bind(app_id)
            .bind(owner)
            .execute(&self.pool)
            .await?;
            Ok(())
        })
        .await
    }

    async fn token_invalidate(&self, app_id: &str, token: &str) -> Result<bool, StoreError> {
        self.tracked(async {
            let changed = sqlx::query(
                "UPDATE access_tokens SET expires_at = 0, refresh_after = 0 \
                 WHERE app_id = $1 AND token = $2 AND expires_at > 0",
            )
            .bind(app_id)
            .bind(token)
            .execute(&self.pool)
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
            let mut tx = self.pool.begin().await?;
            // Pruning a large log may take longer than one message's statements may.
            sqlx::query("SET LOCAL statement_timeout = 0")
                .execute(&mut *tx)
                .await?;
            let log = sqlx::query("DELETE FROM inbound_log WHERE received_at < $1")
                .bind(log_before)
                .execute(&mut *tx)
                .await?
                .rows_affected();
            let dedup = sqlx::query("DELETE FROM dedup WHERE updated_at < $1")
                .bind(dedup_before)
                .execute(&mut *tx)
                .await?
                .rows_affected();
            let sessions = sqlx::query(
                "DELETE FROM sessions WHERE expires_at IS NOT NULL AND expires_at <= $1",
            )
            .bind(now)
            .execute(&mut *tx)
            .await?
            .rows_affected();
            let replay = sqlx::query("DELETE FROM replay_guard WHERE expires_at < $1")
                .bind(now)
                .execute(&mut *tx)
                .await?
                .rows_affected();
            // A bucket idle for an hour is full again: its row says nothing.
            sqlx::query("DELETE FROM rate_limits WHERE at_ms < $1")
                .bind(now.saturating_sub(3_600).saturating_mul(1_000))
                .execute(&mut *tx)
                .await?;
            let counts = sqlx::query("DELETE FROM log_counts WHERE hour < $1")
                .bind(crate::store::console::hour_of(counts_before))
                .execute(&mut *tx)
                .await?
                .rows_affected();
            tx.commit().await?;
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

    #[test]
    fn huixins_parameters_leave_the_url_and_win_over_the_keys() {
        let keys = Settings {
            pool_size: Some(4),
            statement_timeout_ms: Some(1_000),
            sslmode: Some("disable".into()),
        };
        let (url, settings) = split_url(
            "postgres://u:p@db:5432/huixin?pool_size=20&sslmode=require&application_name=hx",
            &keys,
        )
        .expect("a good URL");
        assert_eq!(url, "postgres://u:p@db:5432/huixin?application_name=hx");
        assert_eq!(settings.pool_size, Some(20));
        assert_eq!(settings.statement_timeout_ms, Some(1_000));
        assert_eq!(settings.sslmode.as_deref(), Some("require"));
        let (url, _) =
            split_url("postgres://db/huixin?statement_timeout_ms=0", &keys).expect("a good URL");
        assert_eq!(url, "postgres://db/huixin");
    }

    #[test]
    fn bad_parameters_are_named() {
        let none = Settings::default();
        for url in [
            "postgres://db/h?pool_size=many",
            "postgres://db/h?pool_size=0",
            "postgres://db/h?statement_timeout_ms=-1",
        ] {
            let e = split_url(url, &none).expect_err(url).to_string();
            assert!(
                e.contains("pool_size") || e.contains("statement_timeout_ms"),
                "{e}"
            );
        }
    }
}
