//! [`PushStore`] on SQLite.

use std::collections::HashMap;

use async_trait::async_trait;
use sqlx::sqlite::SqliteConnection;

use super::SqliteBackend;
use crate::store::StoreError;
use crate::store::console::{self, push as counted};
use crate::store::push::{
    Attempt, Claimed, GroupedPush, Inserted, KEY_PREFIX_LEN, KeyRow, NewPush, Outcome, PushRow,
    PushStore, RecipientRow, Topic,
};
use crate::store::push::{KEY_COLUMNS, PUSH_COLUMNS, TOPIC_COLUMNS};

/// Rows per INSERT when storing recipients (4 parameters each; SQLite allows 32 766).
const RECIPIENTS_PER_INSERT: usize = 1000;
/// Rows per INSERT when storing pushes (9 parameters each).
const PUSHES_PER_INSERT: usize = 256;
/// Multi-row INSERTs of up to this many rows stay prepared for reuse (the sizes a busy
/// server's groups usually have); larger ones are prepared for one use, so that they do not
/// push the common statements out of the connection's cache.
const CACHED_ROWS: usize = 32;
/// Topic members who are sent to: members who unfollowed stay members (they are back if they
/// follow again) but are not sent to, as WeChat would refuse with 43004. Only an unsubscribe
/// huixin saw counts: followers from before huixin, known only from their messages, have no
/// subscribe event on record and are followers all the same. (`m` the membership, `f` the
/// follower, LEFT JOINed.)
const FOLLOWING: &str = "(f.subscribed IS NULL OR f.subscribed = 1 OR f.unsubscribed_at IS NULL)";

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
            let mut tx = self.writer.begin().await?;
            let created = sqlx::query(
                "INSERT INTO topics (name, open, description, created_at) VALUES (?1, ?2, ?3, ?4) \
             ON CONFLICT (name) DO NOTHING",
            )
            .bind(name)
            .bind(open)
            .bind(description)
            .bind(now)
            .execute(&mut *tx)
            .await?
            .rows_affected();
            if created == 1 {
                // A name keeps its number forever: a topic made again has its old one. Looked
                // up first, so that it does not use up a number (ON CONFLICT would).
                sqlx::query(
                    "INSERT INTO topic_numbers (name) SELECT ?1 \
                     WHERE NOT EXISTS (SELECT 1 FROM topic_numbers WHERE name = ?1) \
                     ON CONFLICT (name) DO NOTHING",
                )
                .bind(name)
                .execute(&mut *tx)
                .await?;
            }
            tx.commit().await?;
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
        Ok(sqlx::query_scalar(sqlx::AssertSqlSafe(format!(
            "SELECT m.openid FROM topic_members m \
             LEFT JOIN followers f ON f.openid = m.openid \
             WHERE m.topic = ?1 AND {FOLLOWING} \
             ORDER BY m.joined_at, m.openid"
        )))
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
        let stored = self
            .push_insert_group(&[GroupedPush {
                push: push.clone(),
                topic: None,
                key: None,
            }])
            .await?;
        // Without a key to check, the one push is stored or the whole call failed.
        Ok(stored
            .first()
            .copied()
            .flatten()
            .ok_or(sqlx::Error::RowNotFound)?
            .seq)
    }

    async fn push_insert_group(
        &self,
        pushes: &[GroupedPush<'_>],
    ) -> Result<Vec<Option<Inserted>>, StoreError> {
        if pushes.is_empty() {
            return Ok(Vec::new());
        }
        self.tracked(async {
            let mut tx = self.writer.begin().await?;
            match insert_group(&mut tx, pushes).await {
                Ok(stored) => {
                    tx.commit().await?;
                    Ok(stored)
                }
                Err(e) => {
                    // Rolled back here rather than when `tx` is dropped: the writer connection
                    // then goes back clean and is kept (see `writer_pool`), so a group that
                    // failed costs no reconnect before its pushes are written one by one.
                    let _ = tx.rollback().await;
                    Err(e)
                }
            }
        })
        .await
    }

    async fn pushes_by_seq(&self, seqs: &[i64]) -> Result<Vec<PushRow>, StoreError> {
        if seqs.is_empty() {
            return Ok(Vec::new());
        }
        // One statement text whatever the number of seqs (a JSON array), so it is prepared once.
        let list = format!(
            "[{}]",
            seqs.iter()
                .map(i64::to_string)
                .collect::<Vec<_>>()
                .join(",")
        );
        Ok(sqlx::query_as::<_, PushRow>(sqlx::AssertSqlSafe(format!(
            "SELECT {PUSH_COLUMNS} FROM pushes WHERE seq IN (SELECT value FROM json_each(?1))"
        )))
        .bind(list)
        .fetch_all(&self.pool)
        .await?)
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
            Some(scope) if scope.starts_with("key:") => {
                sqlx::query_as::<_, PushRow>(sqlx::AssertSqlSafe(format!(
                    "{base} AND key_hash = ?4 ORDER BY seq LIMIT ?3"
                )))
                .bind(after_seq)
                .bind(since)
                .bind(limit)
                .bind(&scope[4..])
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
            let (mut sent, mut failed) = (0, 0);
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
                let changed = query.execute(&mut *tx).await?.rows_affected();
                match attempt {
                    Attempt::Sent { .. } => sent += changed,
                    Attempt::Failed { .. } => failed += changed,
                    Attempt::Retry { .. } | Attempt::Released => {}
                }
            }
            let counts =
                console::settled_counts(now, &[(counted::SENT, sent), (counted::FAILED, failed)]);
            super::console::add_counts(&mut tx, &counts).await?;
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
                (counted::DELIVERED, None)
            } else {
                (counted::FAILED, Some(status))
            };
            let mut tx = self.writer.begin().await?;
            // The recipient that was sent is settled, and counted; one settled already (the
            // event came twice) is settled again as this one says, and not counted again.
            let settled = sqlx::query(
                "UPDATE push_recipients SET state = ?2, error = ?3, updated_at = ?4 \
                 WHERE msgid = ?1 AND state = 'sent'",
            )
            .bind(msgid)
            .bind(state)
            .bind(error)
            .bind(now)
            .execute(&mut *tx)
            .await?
            .rows_affected();
            let changed = if settled > 0 {
                let counts = console::settled_counts(now, &[(state, settled)]);
                super::console::add_counts(&mut tx, &counts).await?;
                settled
            } else {
                sqlx::query(
                    "UPDATE push_recipients SET state = ?2, error = ?3, updated_at = ?4 \
                     WHERE msgid = ?1 AND state IN ('delivered', 'failed')",
                )
                .bind(msgid)
                .bind(state)
                .bind(error)
                .bind(now)
                .execute(&mut *tx)
                .await?
                .rows_affected()
            };
            tx.commit().await?;
            Ok(changed)
        })
        .await
    }

    async fn push_recipient_by_msgid(
        &self,
        msgid: i64,
    ) -> Result<Option<(i64, String)>, StoreError> {
        Ok(
            sqlx::query_as("SELECT push_seq, openid FROM push_recipients WHERE msgid = ?1 LIMIT 1")
                .bind(msgid)
                .fetch_optional(&self.pool)
                .await?,
        )
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

    async fn push_retry_failed(&self, seq: i64, now_ms: i64, now: i64) -> Result<u64, StoreError> {
        self.tracked(async {
            // A resent recipient's client_msg_id is its first one with `-r` and the time: ids
            // are `{push id}-{index}`, so `-r` only ever starts this suffix.
            Ok(sqlx::query(
                "UPDATE push_recipients SET state = 'pending', attempts = 0, next_at = ?2, \
                   lease_owner = NULL, lease_until = 0, msgid = NULL, error = NULL, \
                   updated_at = ?3, \
                   client_msg_id = (CASE WHEN instr(client_msg_id, '-r') > 0 \
                       THEN substr(client_msg_id, 1, instr(client_msg_id, '-r') - 1) \
                       ELSE client_msg_id END) || '-r' || ?2 \
                 WHERE push_seq = ?1 AND state = 'failed'",
            )
            .bind(seq)
            .bind(now_ms)
            .bind(now)
            .execute(&self.writer)
            .await?
            .rows_affected())
        })
        .await
    }

    async fn push_queue_depth(&self) -> Result<u64, StoreError> {
        let n: i64 = sqlx::query_scalar(
            "SELECT (SELECT COUNT(*) FROM push_recipients WHERE state = 'pending') \
                  + (SELECT COUNT(*) FROM push_recipients WHERE state = 'sending')",
        )
        .fetch_one(&self.pool)
        .await?;
        Ok(u64::try_from(n).unwrap_or(0))
    }

    async fn push_delete(&self, seq: i64) -> Result<bool, StoreError> {
        self.tracked(async {
            Ok(sqlx::query("DELETE FROM pushes WHERE seq = ?1")
                .bind(seq)
                .execute(&self.writer)
                .await?
                .rows_affected()
                == 1)
        })
        .await
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

/// Writes a group of pushes and their recipients inside the open transaction `conn`.
async fn insert_group(
    conn: &mut SqliteConnection,
    all: &[GroupedPush<'_>],
) -> Result<Vec<Option<Inserted>>, StoreError> {
    // The pushes, several to a statement. A push made with a key is inserted only while that
    // key is on record, unrevoked, for the same target: checked here, inside the transaction,
    // so that a key revoked by any process before it began refuses its pushes. RETURNING
    // gives rows in no promised order: each seq is matched to its push by id.
    let mut seqs: HashMap<String, i64> = HashMap::with_capacity(all.len());
    for chunk in all.chunks(PUSHES_PER_INSERT) {
        let mut builder = sqlx::QueryBuilder::<sqlx::Sqlite>::new(
            "INSERT INTO pushes (id, key_hash, target, title, body, url, summary, source, created_at) \
             SELECT v.column1, v.column2, v.column3, v.column4, v.column5, v.column6, v.column7, \
                    v.column8, v.column9 \
             FROM (",
        );
        builder.push_values(chunk, |mut row, grouped| {
            let push = &grouped.push;
            let key = grouped.key;
            row.push_bind(push.id)
                .push_bind(push.key_hash)
                .push_bind(push.target)
                .push_bind(push.title)
                .push_bind(push.body)
                .push_bind(push.url)
                .push_bind(push.summary)
                .push_bind(push.source)
                .push_bind(push.created_at)
                .push_bind(key.map(|k| k.key_hash))
                .push_bind(key.map(|k| k.kind))
                .push_bind(key.map(|k| k.target));
        });
        builder.push(
            ") AS v WHERE v.column10 IS NULL OR EXISTS (SELECT 1 FROM push_keys k \
               WHERE k.key_hash = v.column10 AND k.kind = v.column11 AND k.target = v.column12 \
                 AND k.revoked_at IS NULL) \
             RETURNING id, seq",
        );
        let returned: Vec<(String, i64)> = builder
            .build_query_as()
            .persistent(chunk.len() <= CACHED_ROWS)
            .fetch_all(&mut *conn)
            .await?;
        seqs.extend(returned);
    }
    // Those inserted, with their seqs; `None` for those whose key is gone.
    let outcome: Vec<Option<Inserted>> = all
        .iter()
        .map(|grouped| {
            seqs.get(grouped.push.id).map(|&seq| Inserted {
                seq,
                recipients: grouped.push.recipients.len() as u64,
            })
        })
        .collect();
    let (pushes, mut stored): (Vec<&GroupedPush<'_>>, Vec<Inserted>) = all
        .iter()
        .zip(&outcome)
        .filter_map(|(grouped, inserted)| Some((grouped, (*inserted)?)))
        .unzip();

    // The listed recipients of every push in the group, several hundred to a statement.
    let listed: Vec<(i64, &str, String, i64)> = pushes
        .iter()
        .zip(&stored)
        .flat_map(|(grouped, inserted)| {
            let push = &grouped.push;
            push.recipients
                .iter()
                .enumerate()
                .map(move |(index, openid)| {
                    (
                        inserted.seq,
                        openid.as_str(),
                        client_msg_id(push.id, index),
                        push.created_at,
                    )
                })
        })
        .collect();
    for chunk in listed.chunks(RECIPIENTS_PER_INSERT) {
        let mut builder = sqlx::QueryBuilder::<sqlx::Sqlite>::new(
            "INSERT INTO push_recipients (push_seq, openid, client_msg_id, updated_at) ",
        );
        builder.push_values(chunk, |mut row, (seq, openid, client_msg_id, at)| {
            row.push_bind(*seq)
                .push_bind(*openid)
                .push_bind(client_msg_id.as_str())
                .push_bind(*at);
        });
        builder.push(" ON CONFLICT (push_seq, openid) DO NOTHING");
        builder
            .build()
            .persistent(chunk.len() <= CACHED_ROWS)
            .execute(&mut *conn)
            .await?;
    }

    // A topic's members, copied by SQLite itself: no row goes through huixin. Each is
    // numbered for its client_msg_id after the listed recipients by its membership's rowid
    // (unique, so the numbers are too, with gaps): numbering them in the order they joined
    // meant sorting the members, a third of the cost of a 10 000-member push. (Rowids stay
    // far below 10^9, so the id stays within WeChat's 32 characters.)
    for (grouped, inserted) in pushes.iter().zip(stored.iter_mut()) {
        let Some(topic) = grouped.topic else {
            continue;
        };
        let push = &grouped.push;
        let members = sqlx::query(sqlx::AssertSqlSafe(format!(
            "INSERT INTO push_recipients (push_seq, openid, client_msg_id, updated_at) \
             SELECT ?1, m.openid, \
                    ?2 || '-' || (?3 + m.rowid - 1), ?4 \
             FROM topic_members m LEFT JOIN followers f ON f.openid = m.openid \
             WHERE m.topic = ?5 AND {FOLLOWING} \
             ON CONFLICT (push_seq, openid) DO NOTHING"
        )))
        .bind(inserted.seq)
        .bind(push.id)
        .bind(push.recipients.len() as i64)
        .bind(push.created_at)
        .bind(topic)
        .execute(&mut *conn)
        .await?
        .rows_affected();
        inserted.recipients += members;
    }
    // Topic members added to the counts.
    let mut stored = stored.into_iter();
    let outcome: Vec<Option<Inserted>> = outcome
        .into_iter()
        .map(|inserted| inserted.and_then(|_| stored.next()))
        .collect();
    super::console::add_counts(conn, &console::accepted_counts(all, &outcome)).await?;
    Ok(outcome)
}

/// The `client_msg_id` of a push's `index`-th listed recipient: the same on every attempt.
fn client_msg_id(push_id: &str, index: usize) -> String {
    format!("{push_id}-{index}")
}
