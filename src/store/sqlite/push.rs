//! [`PushStore`] on SQLite.

use async_trait::async_trait;

use super::SqliteBackend;
use crate::store::StoreError;
use crate::store::push::{
    Attempt, Claimed, KEY_PREFIX_LEN, KeyRow, NewPush, Outcome, PushRow, PushStore, RecipientRow,
    Topic,
};

const TOPIC_COLUMNS: &str = "t.name, t.open, t.description, t.created_at, \
     (SELECT COUNT(*) FROM topic_members m WHERE m.topic = t.name) AS members";
const KEY_COLUMNS: &str = "key_hash, key_prefix, kind, target, label, created_at, revoked_at";
const PUSH_COLUMNS: &str =
    "seq, id, key_hash, target, title, body, url, summary, source, created_at";

/// Rows per INSERT when storing recipients (SQLite allows 32 766 parameters).
const RECIPIENTS_PER_INSERT: usize = 500;

#[async_trait]
impl PushStore for SqliteBackend {
    async fn topic_create(
        &self,
        name: &str,
        open: bool,
        description: &str,
        now: i64,
    ) -> Result<bool, StoreError> {
        self.tracked(async {
            let created = sqlx::query(
                "INSERT INTO topics (name, open, description, created_at) VALUES (?1, ?2, ?3, ?4) \
             ON CONFLICT (name) DO NOTHING",
            )
            .bind(name)
            .bind(open)
            .bind(description)
            .bind(now)
            .execute(&self.writer)
            .await?
            .rows_affected();
            Ok(created == 1)
        })
        .await
    }

    async fn topic_delete(&self, name: &str) -> Result<bool, StoreError> {
        self.tracked(async {
            let mut tx = self.writer.begin().await?;
            sqlx::query("DELETE FROM push_keys WHERE kind = 'topic' AND target = ?1")
                .bind(name)
                .execute(&mut *tx)
                .await?;
            let deleted = sqlx::query("DELETE FROM topics WHERE name = ?1")
                .bind(name)
                .execute(&mut *tx)
                .await?
                .rows_affected();
            tx.commit().await?;
            Ok(deleted == 1)
        })
        .await
    }

    async fn topic(&self, name: &str) -> Result<Option<Topic>, StoreError> {
        Ok(sqlx::query_as::<_, Topic>(sqlx::AssertSqlSafe(format!(
            "SELECT {TOPIC_COLUMNS} FROM topics t WHERE t.name = ?1"
        )))
        .bind(name)
        .fetch_optional(&self.pool)
        .await?)
    }

    async fn topics(&self) -> Result<Vec<Topic>, StoreError> {
        Ok(sqlx::query_as::<_, Topic>(sqlx::AssertSqlSafe(format!(
            "SELECT {TOPIC_COLUMNS} FROM topics t ORDER BY t.name"
        )))
        .fetch_all(&self.pool)
        .await?)
    }

    async fn topic_join(&self, topic: &str, openid: &str, now: i64) -> Result<bool, StoreError> {
        self.tracked(async {
            let joined = sqlx::query(
                "INSERT INTO topic_members (topic, openid, joined_at) VALUES (?1, ?2, ?3) \
             ON CONFLICT (topic, openid) DO NOTHING",
            )
            .bind(topic)
            .bind(openid)
            .bind(now)
            .execute(&self.writer)
            .await?
            .rows_affected();
            Ok(joined == 1)
        })
        .await
    }

    async fn topic_leave(&self, topic: &str, openid: &str) -> Result<bool, StoreError> {
        self.tracked(async {
            let left = sqlx::query("DELETE FROM topic_members WHERE topic = ?1 AND openid = ?2")
                .bind(topic)
                .bind(openid)
                .execute(&self.writer)
                .await?
                .rows_affected();
            Ok(left == 1)
        })
        .await
    }

    async fn topics_of(&self, openid: &str) -> Result<Vec<String>, StoreError> {
        Ok(
            sqlx::query_scalar("SELECT topic FROM topic_members WHERE openid = ?1 ORDER BY topic")
                .bind(openid)
                .fetch_all(&self.pool)
                .await?,
        )
    }

    async fn topic_members(&self, topic: &str) -> Result<Vec<String>, StoreError> {
        // Members who unfollowed stay members (they are back if they follow again) but are
        // not sent to: WeChat would refuse with 43004. Only an unsubscribe huixin saw counts:
        // followers from before huixin, known only from their messages, have no subscribe
        // event on record and are followers all the same.
        Ok(sqlx::query_scalar(
            "SELECT m.openid FROM topic_members m \
             LEFT JOIN followers f ON f.openid = m.openid \
             WHERE m.topic = ?1 \
               AND (f.subscribed IS NULL OR f.subscribed = 1 OR f.unsubscribed_at IS NULL) \
             ORDER BY m.joined_at, m.openid",
        )
        .bind(topic)
        .fetch_all(&self.pool)
        .await?)
    }

    async fn key_insert(&self, key: &KeyRow) -> Result<(), StoreError> {
        self.tracked(async {
            sqlx::query(
                "INSERT INTO push_keys \
               (key_hash, key_prefix, kind, target, label, created_at, revoked_at) \
             VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7)",
            )
            .bind(&key.key_hash)
            .bind(&key.key_prefix)
            .bind(&key.kind)
            .bind(&key.target)
            .bind(&key.label)
            .bind(key.created_at)
            .bind(key.revoked_at)
            .execute(&self.writer)
            .await?;
            Ok(())
        })
        .await
    }

    async fn key_by_hash(&self, key_hash: &str) -> Result<Option<KeyRow>, StoreError> {
        Ok(sqlx::query_as::<_, KeyRow>(sqlx::AssertSqlSafe(format!(
            "SELECT {KEY_COLUMNS} FROM push_keys WHERE key_hash = ?1"
        )))
        .bind(key_hash)
        .fetch_optional(&self.pool)
        .await?)
    }

    async fn key_for(&self, kind: &str, target: &str) -> Result<Option<KeyRow>, StoreError> {
        Ok(sqlx::query_as::<_, KeyRow>(sqlx::AssertSqlSafe(format!(
            "SELECT {KEY_COLUMNS} FROM push_keys \
             WHERE kind = ?1 AND target = ?2 AND revoked_at IS NULL \
             ORDER BY created_at DESC, rowid DESC LIMIT 1"
        )))
        .bind(kind)
        .bind(target)
        .fetch_optional(&self.pool)
        .await?)
    }

    async fn keys(&self) -> Result<Vec<KeyRow>, StoreError> {
        Ok(sqlx::query_as::<_, KeyRow>(sqlx::AssertSqlSafe(format!(
            "SELECT {KEY_COLUMNS} FROM push_keys ORDER BY created_at DESC, rowid DESC"
        )))
        .fetch_all(&self.pool)
        .await?)
    }

    async fn key_revoke(&self, prefix: &str, now: i64) -> Result<u64, StoreError> {
        self.tracked(async {
            if prefix.chars().count() != KEY_PREFIX_LEN {
                return Ok(0);
            }
            Ok(sqlx::query(
                "UPDATE push_keys SET revoked_at = ?2 \
                 WHERE revoked_at IS NULL AND key_prefix = ?1",
            )
            .bind(prefix)
            .bind(now)
            .execute(&self.writer)
            .await?
            .rows_affected())
        })
        .await
    }

    async fn key_revoke_hash(&self, key_hash: &str, now: i64) -> Result<u64, StoreError> {
        self.tracked(async {
            Ok(sqlx::query(
                "UPDATE push_keys SET revoked_at = ?2 WHERE revoked_at IS NULL AND key_hash = ?1",
            )
            .bind(key_hash)
            .bind(now)
            .execute(&self.writer)
            .await?
            .rows_affected())
        })
        .await
    }

    async fn push_insert(&self, push: &NewPush<'_>) -> Result<i64, StoreError> {
        self.tracked(async {
        let mut tx = self.writer.begin().await?;
        let seq: i64 = sqlx::query_scalar(
            "INSERT INTO pushes (id, key_hash, target, title, body, url, summary, source, created_at) \
             VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9) RETURNING seq",
        )
        .bind(push.id)
        .bind(push.key_hash)
        .bind(push.target)
        .bind(push.title)
        .bind(push.body)
        .bind(push.url)
        .bind(push.summary)
        .bind(push.source)
        .bind(push.created_at)
        .fetch_one(&mut *tx)
        .await?;
        for (chunk_index, chunk) in push.recipients.chunks(RECIPIENTS_PER_INSERT).enumerate() {
            let mut builder = sqlx::QueryBuilder::<sqlx::Sqlite>::new(
                "INSERT INTO push_recipients (push_seq, openid, client_msg_id, updated_at) ",
            );
            builder.push_values(chunk.iter().enumerate(), |mut row, (i, openid)| {
                let index = chunk_index * RECIPIENTS_PER_INSERT + i;
                row.push_bind(seq)
                    .push_bind(openid)
                    .push_bind(client_msg_id(push.id, index))
                    .push_bind(push.created_at);
            });
            builder.push(" ON CONFLICT (push_seq, openid) DO NOTHING");
            builder.build().execute(&mut *tx).await?;
        }
        tx.commit().await?;
        Ok(seq)
        }).await
    }

    async fn push_by_id(&self, id: &str) -> Result<Option<PushRow>, StoreError> {
        Ok(sqlx::query_as::<_, PushRow>(sqlx::AssertSqlSafe(format!(
            "SELECT {PUSH_COLUMNS} FROM pushes WHERE id = ?1"
        )))
        .bind(id)
        .fetch_optional(&self.pool)
        .await?)
    }

    async fn push_by_seq(&self, seq: i64) -> Result<Option<PushRow>, StoreError> {
        Ok(sqlx::query_as::<_, PushRow>(sqlx::AssertSqlSafe(format!(
            "SELECT {PUSH_COLUMNS} FROM pushes WHERE seq = ?1"
        )))
        .bind(seq)
        .fetch_optional(&self.pool)
        .await?)
    }

    async fn push_recipients(&self, seq: i64) -> Result<Vec<RecipientRow>, StoreError> {
        Ok(sqlx::query_as::<_, RecipientRow>(
            "SELECT openid, state, attempts, msgid, error, updated_at FROM push_recipients \
             WHERE push_seq = ?1 ORDER BY openid",
        )
        .bind(seq)
        .fetch_all(&self.pool)
        .await?)
    }

    async fn push_history(
        &self,
        scope: Option<&str>,
        after_seq: i64,
        since: i64,
        limit: u32,
    ) -> Result<Vec<PushRow>, StoreError> {
        let base = format!("SELECT {PUSH_COLUMNS} FROM pushes WHERE seq > ?1 AND created_at >= ?2");
        let rows = match scope {
            None => {
                sqlx::query_as::<_, PushRow>(sqlx::AssertSqlSafe(format!(
                    "{base} ORDER BY seq LIMIT ?3"
                )))
                .bind(after_seq)
                .bind(since)
                .bind(limit)
                .fetch_all(&self.pool)
                .await?
            }
            Some(scope) => match scope.strip_prefix("user:") {
                // No index leads from an OpenID to its pushes: one cost an accept about five
                // times as much for a 10 000-recipient push (random inserts into a large index),
                // for a listing followers rarely ask for. This scans the recipients instead.
                Some(openid) => sqlx::query_as::<_, PushRow>(sqlx::AssertSqlSafe(format!(
                    "{base} AND seq IN (SELECT push_seq FROM push_recipients WHERE openid = ?4) \
                         ORDER BY seq LIMIT ?3"
                )))
                .bind(after_seq)
                .bind(since)
                .bind(limit)
                .bind(openid)
                .fetch_all(&self.pool)
                .await?,
                None => {
                    sqlx::query_as::<_, PushRow>(sqlx::AssertSqlSafe(format!(
                        "{base} AND target = ?4 ORDER BY seq LIMIT ?3"
                    )))
                    .bind(after_seq)
                    .bind(since)
                    .bind(limit)
                    .bind(scope)
                    .fetch_all(&self.pool)
                    .await?
                }
            },
        };
        Ok(rows)
    }

    async fn push_claim(
        &self,
        owner: &str,
        now_ms: i64,
        lease_until_ms: i64,
        limit: u32,
    ) -> Result<Vec<Claimed>, StoreError> {
        self.tracked(async {
            // One statement: SQLite runs it under the write lock, so two processes never claim
            // the same row.
            Ok(sqlx::query_as::<_, Claimed>(
                "UPDATE push_recipients \
             SET state = 'sending', lease_owner = ?1, lease_until = ?3, attempts = attempts + 1, \
                 updated_at = ?4 \
             WHERE rowid IN ( \
                 SELECT rowid FROM push_recipients WHERE state = 'pending' AND next_at <= ?2 \
                 UNION ALL \
                 SELECT rowid FROM push_recipients WHERE state = 'sending' AND lease_until <= ?2 \
                 LIMIT ?5) \
             RETURNING push_seq, openid, client_msg_id, attempts",
            )
            .bind(owner)
            .bind(now_ms)
            .bind(lease_until_ms)
            .bind(now_ms / 1000)
            .bind(limit)
            .fetch_all(&self.writer)
            .await?)
        })
        .await
    }

    async fn push_settle(
        &self,
        owner: &str,
        outcomes: &[Outcome],
        now: i64,
    ) -> Result<(), StoreError> {
        self.tracked(async {
            let mut tx = self.writer.begin().await?;
            for Outcome {
                push_seq,
                openid,
                attempt,
            } in outcomes
            {
                // Only while still being sent: a recipient that a finished job already settled is
                // left as it is. A failure or a retry counts only under our own lease: another
                // process may have taken the recipient over after our lease ran out.
                let query = match attempt {
                    Attempt::Sent { msgid } => sqlx::query(
                        "UPDATE push_recipients SET state = 'sent', msgid = ?3, error = NULL, \
                       lease_owner = NULL, updated_at = ?4 \
                     WHERE push_seq = ?1 AND openid = ?2 AND state = 'sending'",
                    )
                    .bind(push_seq)
                    .bind(openid)
                    .bind(*msgid)
                    .bind(now),
                    Attempt::Retry { next_at, error } => sqlx::query(
                        "UPDATE push_recipients SET state = 'pending', next_at = ?3, error = ?5, \
                       lease_owner = NULL, updated_at = ?4 \
                     WHERE push_seq = ?1 AND openid = ?2 AND state = 'sending' \
                       AND lease_owner = ?6",
                    )
                    .bind(push_seq)
                    .bind(openid)
                    .bind(*next_at)
                    .bind(now)
                    .bind(error.as_str())
                    .bind(owner),
                    Attempt::Failed { error } => sqlx::query(
                        "UPDATE push_recipients SET state = 'failed', error = ?3, \
                       lease_owner = NULL, updated_at = ?4 \
                     WHERE push_seq = ?1 AND openid = ?2 AND state = 'sending' \
                       AND lease_owner = ?5",
                    )
                    .bind(push_seq)
                    .bind(openid)
                    .bind(error.as_str())
                    .bind(now)
                    .bind(owner),
                    Attempt::Released => sqlx::query(
                        "UPDATE push_recipients SET state = 'pending', next_at = 0, \
                       attempts = MAX(attempts - 1, 0), lease_owner = NULL, updated_at = ?3 \
                     WHERE push_seq = ?1 AND openid = ?2 AND state = 'sending' \
                       AND lease_owner = ?4",
                    )
                    .bind(push_seq)
                    .bind(openid)
                    .bind(now)
                    .bind(owner),
                };
                query.execute(&mut *tx).await?;
            }
            tx.commit().await?;
            Ok(())
        })
        .await
    }

    async fn push_finished(
        &self,
        msgid: i64,
        delivered: bool,
        status: &str,
        now: i64,
    ) -> Result<u64, StoreError> {
        self.tracked(async {
            let (state, error) = if delivered {
                ("delivered", None)
            } else {
                ("failed", Some(status))
            };
            Ok(sqlx::query(
                "UPDATE push_recipients SET state = ?2, error = ?3, updated_at = ?4 \
             WHERE msgid = ?1 AND state IN ('sent', 'delivered', 'failed')",
            )
            .bind(msgid)
            .bind(state)
            .bind(error)
            .bind(now)
            .execute(&self.writer)
            .await?
            .rows_affected())
        })
        .await
    }

    async fn push_next_due(&self) -> Result<Option<i64>, StoreError> {
        Ok(sqlx::query_scalar(
            "SELECT MIN(t) FROM ( \
                 SELECT MIN(next_at) AS t FROM push_recipients WHERE state = 'pending' \
                 UNION ALL \
                 SELECT MIN(lease_until) AS t FROM push_recipients WHERE state = 'sending')",
        )
        .fetch_one(&self.pool)
        .await?)
    }

    async fn push_purge(&self, before: i64) -> Result<u64, StoreError> {
        self.tracked(async {
            Ok(sqlx::query("DELETE FROM pushes WHERE created_at < ?1")
                .bind(before)
                .execute(&self.writer)
                .await?
                .rows_affected())
        })
        .await
    }
}

/// The `client_msg_id` of a push's `index`-th recipient: the same on every attempt.
fn client_msg_id(push_id: &str, index: usize) -> String {
    format!("{push_id}-{index}")
}
