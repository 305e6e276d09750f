//! [`ConsoleStore`] on SQLite.
//!
//! SQLite plans without statistics, so each query says which index it reads: a filter that
//! should not choose the index is written `+column` (which SQLite never looks up by), and a
//! followers page names its index (`INDEXED BY`) once [`console::plan`] has chosen it.

use async_trait::async_trait;
use sqlx::sqlite::SqliteConnection;
use sqlx::{QueryBuilder, Sqlite};

use super::SqliteBackend;
use crate::store::console::{
    self, ConsoleStore, CountRow, DRIVER_CAP, Driver, FOLLOWER_COLUMNS, FollowerFilter,
    LOG_COLUMNS, LogFilter, LogRow, Plan, PushSummary, page_size,
};
use crate::store::push::{PUSH_COLUMNS, PushRow};
use crate::store::{Follower, StoreError, statement_chunks};

/// Adds `counts` (hour, dimension, key, n) to the hourly counts, inside the caller's
/// transaction.
pub(super) async fn add_counts(
    conn: &mut SqliteConnection,
    counts: &[(i64, &str, &str, i64)],
) -> Result<(), sqlx::Error> {
    for rows in statement_chunks(counts) {
        let mut insert = QueryBuilder::<Sqlite>::new("INSERT INTO log_counts (hour, dim, key, n) ");
        insert.push_values(rows, |mut row, (hour, dim, key, n)| {
            row.push_bind(*hour)
                .push_bind(*dim)
                .push_bind(*key)
                .push_bind(*n);
        });
        insert.push(" ON CONFLICT (hour, dim, key) DO UPDATE SET n = log_counts.n + excluded.n");
        insert.build().execute(&mut *conn).await?;
    }
    Ok(())
}

/// The end of the OpenIDs that start with `prefix`: every one of them sorts below it (SQLite
/// compares text byte by byte, and no OpenID holds U+10FFFF, the largest character).
fn prefix_end(prefix: &str) -> String {
    format!("{prefix}\u{10FFFF}")
}

impl SqliteBackend {
    /// How many followers `driver` selects, counted up to [`DRIVER_CAP`].
    async fn driver_count(&self, f: &FollowerFilter, driver: Driver) -> Result<i64, StoreError> {
        let query = match driver {
            Driver::Prefix => sqlx::query_scalar(
                "SELECT COUNT(*) FROM (SELECT 1 FROM followers \
                 WHERE openid >= ?1 AND openid < ?2 LIMIT ?3)",
            )
            .bind(f.prefix().unwrap_or_default())
            .bind(prefix_end(f.prefix().unwrap_or_default())),
            Driver::Scene => sqlx::query_scalar(
                "SELECT COUNT(*) FROM (SELECT 1 FROM followers WHERE scene = ?1 LIMIT ?2)",
            )
            .bind(f.scene.as_deref()),
            Driver::Topic => sqlx::query_scalar(
                "SELECT COUNT(*) FROM (SELECT 1 FROM topic_members WHERE topic = ?1 LIMIT ?2)",
            )
            .bind(f.topic.as_deref()),
            // Bindings, not followers (one may be bound under several uids): a bound above.
            Driver::App => sqlx::query_scalar(
                "SELECT COUNT(*) FROM (SELECT 1 FROM bindings WHERE app_id = ?1 LIMIT ?2)",
            )
            .bind(f.app_id),
        };
        Ok(query.bind(DRIVER_CAP).fetch_one(&self.pool).await?)
    }
}

#[async_trait]
impl ConsoleStore for SqliteBackend {
    async fn log_page(&self, f: &LogFilter) -> Result<Vec<LogRow>, StoreError> {
        let Some((msg_type, event)) = f.kind() else {
            return Ok(Vec::new());
        };
        let mut q = QueryBuilder::<Sqlite>::new(format!(
            "SELECT {LOG_COLUMNS} FROM inbound_log WHERE 1 = 1"
        ));
        // The most selective filter picks the index, the others are checked on its rows: a
        // user's conversation is short, a rare outcome or an event rarer than a type.
        let mut indexed = false;
        let mut column = |name: &str| {
            let lookup = !indexed;
            indexed = true;
            if lookup {
                format!(" AND {name} = ")
            } else {
                format!(" AND +{name} = ")
            }
        };
        if let Some(openid) = &f.openid {
            q.push(column("openid")).push_bind(openid);
        }
        if let Some(outcome) = &f.outcome {
            if outcome == "answered" {
                // Nearly every row: read from the newest.
                q.push(" AND +outcome = ").push_bind(outcome);
            } else {
                // The partial index holds the other outcomes; SQLite uses it only when the
                // query says so itself.
                q.push(column("outcome"))
                    .push_bind(outcome)
                    .push(" AND outcome <> 'answered'");
            }
        }
        if let Some(event) = event {
            q.push(column("event")).push_bind(event);
        }
        if let Some(msg_type) = msg_type {
            q.push(column("msg_type")).push_bind(msg_type);
        }
        if let Some(before) = f.before_id {
            q.push(" AND id < ").push_bind(before);
        }
        q.push(" ORDER BY id DESC LIMIT ")
            .push_bind(page_size(f.limit));
        Ok(q.build_query_as::<LogRow>().fetch_all(&self.pool).await?)
    }

    async fn log_counts(&self, since_hour: i64) -> Result<Vec<CountRow>, StoreError> {
        Ok(sqlx::query_as::<_, CountRow>(
            "SELECT hour, dim, key, n FROM log_counts WHERE hour >= ?1 ORDER BY hour, dim, key",
        )
        .bind(since_hour)
        .fetch_all(&self.pool)
        .await?)
    }

    async fn followers_page(&self, f: &FollowerFilter) -> Result<Vec<Follower>, StoreError> {
        let mut counts = Vec::new();
        for driver in f.drivers() {
            counts.push((driver, self.driver_count(f, driver).await?));
        }
        let plan = console::plan(&counts);
        let mut q = QueryBuilder::<Sqlite>::new(format!("SELECT {FOLLOWER_COLUMNS} FROM "));
        match plan {
            Plan::Empty => return Ok(Vec::new()),
            Plan::Driven(Driver::Topic) => {
                // CROSS JOIN: SQLite keeps this order, the members first.
                q.push(
                    "topic_members m CROSS JOIN followers f ON f.openid = m.openid \
                     WHERE m.topic = ",
                )
                .push_bind(f.topic.as_deref());
            }
            Plan::Driven(Driver::App) => {
                q.push("(SELECT DISTINCT openid FROM bindings WHERE app_id = ")
                    .push_bind(f.app_id)
                    .push(") b CROSS JOIN followers f ON f.openid = b.openid WHERE 1 = 1");
            }
            Plan::Driven(Driver::Scene) => {
                q.push("followers f INDEXED BY followers_scene WHERE 1 = 1");
            }
            Plan::Driven(Driver::Prefix) => {
                q.push("followers f INDEXED BY sqlite_autoindex_followers_1 WHERE 1 = 1");
            }
            Plan::InOrder => {
                q.push("followers f INDEXED BY followers_recent WHERE 1 = 1");
            }
        }
        if let Some(prefix) = f.prefix() {
            q.push(" AND f.openid >= ")
                .push_bind(prefix)
                .push(" AND f.openid < ")
                .push_bind(prefix_end(prefix));
        }
        if let Some(scene) = &f.scene {
            q.push(" AND f.scene = ").push_bind(scene);
        }
        if let (Some(topic), false) = (&f.topic, plan == Plan::Driven(Driver::Topic)) {
            q.push(" AND EXISTS (SELECT 1 FROM topic_members m WHERE m.topic = ")
                .push_bind(topic)
                .push(" AND m.openid = f.openid)");
        }
        if let (Some(app_id), false) = (f.app_id, plan == Plan::Driven(Driver::App)) {
            q.push(
                " AND EXISTS (SELECT 1 FROM bindings b WHERE b.openid = f.openid AND b.app_id = ",
            )
            .push_bind(app_id)
            .push(")");
        }
        if let Some(subscribed) = f.subscribed {
            q.push(" AND f.subscribed = ").push_bind(subscribed);
        }
        if plan == Plan::InOrder {
            // The index's key is (-seen, openid), ascending: the page starts past the last
            // follower's, where the first condition lets SQLite seek to.
            if let Some((seen, openid)) = &f.after {
                let key = seen.saturating_neg();
                q.push(" AND -COALESCE(f.last_seen_at, 0) >= ")
                    .push_bind(key)
                    .push(" AND (-COALESCE(f.last_seen_at, 0) > ")
                    .push_bind(key)
                    .push(" OR f.openid > ")
                    .push_bind(openid)
                    .push(")");
            }
            q.push(" ORDER BY -COALESCE(f.last_seen_at, 0), f.openid LIMIT ");
        } else {
            if let Some((seen, openid)) = &f.after {
                q.push(" AND (COALESCE(f.last_seen_at, 0) < ")
                    .push_bind(*seen)
                    .push(" OR (COALESCE(f.last_seen_at, 0) = ")
                    .push_bind(*seen)
                    .push(" AND f.openid > ")
                    .push_bind(openid)
                    .push("))");
            }
            // The same order, sorted: the few followers the filter selected.
            q.push(" ORDER BY COALESCE(f.last_seen_at, 0) DESC, f.openid LIMIT ");
        }
        q.push_bind(page_size(f.limit));
        Ok(q.build_query_as::<Follower>().fetch_all(&self.pool).await?)
    }

    async fn push_page(
        &self,
        before_seq: Option<i64>,
        limit: u32,
    ) -> Result<Vec<PushSummary>, StoreError> {
        let pushes = sqlx::query_as::<_, PushRow>(sqlx::AssertSqlSafe(format!(
            "SELECT {PUSH_COLUMNS} FROM pushes WHERE seq < ?1 ORDER BY seq DESC LIMIT ?2"
        )))
        .bind(before_seq.unwrap_or(i64::MAX))
        .bind(page_size(limit))
        .fetch_all(&self.pool)
        .await?;
        let (Some(last), Some(first)) = (pushes.last(), pushes.first()) else {
            return Ok(Vec::new());
        };
        // The page's pushes are a run of seqs: one range of the recipients' key.
        let counts: Vec<(i64, String, i64)> = sqlx::query_as(
            "SELECT push_seq, state, COUNT(*) FROM push_recipients \
             WHERE push_seq BETWEEN ?1 AND ?2 GROUP BY push_seq, state",
        )
        .bind(last.seq)
        .bind(first.seq)
        .fetch_all(&self.pool)
        .await?;
        Ok(console::summaries(pushes, &counts))
    }
}
