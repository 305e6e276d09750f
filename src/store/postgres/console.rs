//! [`ConsoleStore`] on PostgreSQL.
//!
//! PostgreSQL plans from its statistics; a followers page is still read the way
//! [`console::plan`] chose (from the followers a selective filter selects, or in order), so
//! that both backends behave alike, and a filter whose followers are all seen long ago does
//! not send the planner through the whole recency order.

use async_trait::async_trait;
use sqlx::postgres::PgConnection;
use sqlx::{Postgres, QueryBuilder};

use super::PostgresBackend;
use crate::store::console::{
    self, ConsoleStore, CountRow, DRIVER_CAP, Driver, FOLLOWER_COLUMNS, FollowerFilter,
    LOG_COLUMNS, LogFilter, LogRow, Plan, PushSummary, page_size,
};
use crate::store::push::{PUSH_COLUMNS, PushRow};
use crate::store::{Follower, StoreError};

/// Adds `counts` (hour, dimension, key, n; one row per key, sorted) to the hourly counts,
/// inside the caller's transaction. In key order, so that two processes adding to the same
/// rows take their locks in the same order and never wait for each other in a circle.
pub(super) async fn add_counts(
    conn: &mut PgConnection,
    counts: &[(i64, &str, &str, i64)],
) -> Result<(), sqlx::Error> {
    if counts.is_empty() {
        return Ok(());
    }
    sqlx::query(
        "INSERT INTO log_counts AS c (hour, dim, key, n) \
         SELECT * FROM UNNEST($1::bigint[], $2::text[], $3::text[], $4::bigint[]) \
         ON CONFLICT (hour, dim, key) DO UPDATE SET n = c.n + EXCLUDED.n",
    )
    .bind(counts.iter().map(|c| c.0).collect::<Vec<_>>())
    .bind(counts.iter().map(|c| c.1).collect::<Vec<_>>())
    .bind(counts.iter().map(|c| c.2).collect::<Vec<_>>())
    .bind(counts.iter().map(|c| c.3).collect::<Vec<_>>())
    .execute(conn)
    .await?;
    Ok(())
}

/// A `LIKE` pattern for the OpenIDs that start with `prefix` (its `%`, `_` and `\` taken
/// literally).
fn prefix_pattern(prefix: &str) -> String {
    let mut pattern = String::with_capacity(prefix.len() + 2);
    for c in prefix.chars() {
        if matches!(c, '%' | '_' | '\\') {
            pattern.push('\\');
        }
        pattern.push(c);
    }
    pattern.push('%');
    pattern
}

impl PostgresBackend {
    /// How many followers `driver` selects, counted up to [`DRIVER_CAP`].
    async fn driver_count(&self, f: &FollowerFilter, driver: Driver) -> Result<i64, StoreError> {
        let query = match driver {
            Driver::Prefix => sqlx::query_scalar(
                "SELECT COUNT(*) FROM (SELECT 1 FROM followers WHERE openid LIKE $1 LIMIT $2) c",
            )
            .bind(prefix_pattern(f.prefix().unwrap_or_default())),
            Driver::Scene => sqlx::query_scalar(
                "SELECT COUNT(*) FROM (SELECT 1 FROM followers WHERE scene = $1 LIMIT $2) c",
            )
            .bind(f.scene.as_deref()),
            Driver::Topic => sqlx::query_scalar(
                "SELECT COUNT(*) FROM (SELECT 1 FROM topic_members WHERE topic = $1 LIMIT $2) c",
            )
            .bind(f.topic.as_deref()),
            // Bindings, not followers (one may be bound under several uids): a bound above.
            Driver::App => sqlx::query_scalar(
                "SELECT COUNT(*) FROM (SELECT 1 FROM bindings WHERE app_id = $1 LIMIT $2) c",
            )
            .bind(f.app_id),
        };
        Ok(query.bind(DRIVER_CAP).fetch_one(&self.pool).await?)
    }
}

#[async_trait]
impl ConsoleStore for PostgresBackend {
    async fn log_page(&self, f: &LogFilter) -> Result<Vec<LogRow>, StoreError> {
        let Some((msg_type, event)) = f.kind() else {
            return Ok(Vec::new());
        };
        let mut q = QueryBuilder::<Postgres>::new(format!(
            "SELECT {LOG_COLUMNS} FROM inbound_log WHERE TRUE"
        ));
        if let Some(openid) = &f.openid {
            q.push(" AND openid = ").push_bind(openid);
        }
        if let Some(outcome) = &f.outcome {
            q.push(" AND outcome = ").push_bind(outcome);
            if outcome != "answered" {
                // The partial index holds the other outcomes; a generic plan uses it only
                // when the query says so itself.
                q.push(" AND outcome <> 'answered'");
            }
        }
        if let Some(event) = event {
            q.push(" AND event = ").push_bind(event);
        }
        if let Some(msg_type) = msg_type {
            q.push(" AND msg_type = ").push_bind(msg_type);
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
            "SELECT hour, dim, key, n FROM log_counts WHERE hour >= $1 ORDER BY hour, dim, key",
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
        let mut q = QueryBuilder::<Postgres>::new(format!("SELECT {FOLLOWER_COLUMNS} FROM "));
        match plan {
            Plan::Empty => return Ok(Vec::new()),
            Plan::Driven(Driver::Topic) => {
                q.push("topic_members m JOIN followers f ON f.openid = m.openid WHERE m.topic = ")
                    .push_bind(f.topic.as_deref());
            }
            Plan::Driven(Driver::App) => {
                q.push("(SELECT DISTINCT openid FROM bindings WHERE app_id = ")
                    .push_bind(f.app_id)
                    .push(") b JOIN followers f ON f.openid = b.openid WHERE TRUE");
            }
            Plan::Driven(_) | Plan::InOrder => {
                q.push("followers f WHERE TRUE");
            }
        }
        if let Some(prefix) = f.prefix() {
            q.push(" AND f.openid LIKE ")
                .push_bind(prefix_pattern(prefix));
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
            // follower's, where the first condition lets PostgreSQL seek to.
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
            "SELECT {PUSH_COLUMNS} FROM pushes WHERE seq < $1 ORDER BY seq DESC LIMIT $2"
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
             WHERE push_seq BETWEEN $1 AND $2 GROUP BY push_seq, state",
        )
        .bind(last.seq)
        .bind(first.seq)
        .fetch_all(&self.pool)
        .await?;
        Ok(console::summaries(pushes, &counts))
    }
}
