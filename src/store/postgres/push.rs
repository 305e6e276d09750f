//! [`PushStore`] on PostgreSQL. Delivery is claimed with `FOR UPDATE SKIP LOCKED`: processes
//! claiming at once each take rows the others have not locked, and none waits for another.

use std::collections::HashMap;

use async_trait::async_trait;
use sqlx::PgConnection;

use super::PostgresBackend;
use crate::store::StoreError;
use crate::store::console::{self, push as counted};
use crate::store::push::{
    Attempt, Claimed, GroupedPush, Inserted, KEY_PREFIX_LEN, KeyRow, NewPush, Outcome, PushRow,
    PushStore, RecipientRow, Topic,
};
use crate::store::push::{KEY_COLUMNS, PUSH_COLUMNS, TOPIC_COLUMNS};

/// Topic members who are sent to (see the SQLite backend): members who unfollowed, as huixin
/// saw, are not. (`m` the membership, `f` the follower, LEFT JOINed.)
const FOLLOWING: &str = "(f.subscribed IS NULL OR f.subscribed OR f.unsubscribed_at IS NULL)";

#[async_trait]
impl PushStore for PostgresBackend {
    async fn topic_create(
        &self,
        name: &str,
        open: bool,
        description: &str,
        now: i64,
    ) -> Result<bool, StoreError> {
        self.tracked(async {
            let mut tx = self.pool.begin().await?;
            let created = sqlx::query(
                "INSERT INTO topics (name, open, description, created_at) VALUES ($1, $2, $3, $4) \
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
                // up first, so that it does not use up a number (ON CONFLICT would). Two
                // processes creating one name at once meet at the topic's row: the second
                // finds it made.
                sqlx::query(
                    "INSERT INTO topic_numbers (name) SELECT $1 \
                     WHERE NOT EXISTS (SELECT 1 FROM topic_numbers WHERE name = $1) \
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
            let mut tx = self.pool.begin().await?;
            sqlx::query("DELETE FROM push_keys WHERE kind = 'topic' AND target = $1")
                .bind(name)
                .execute(&mut *tx)
                .await?;
            let deleted = sqlx::query("DELETE FROM topics WHERE name = $1")
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
            "SELECT {TOPIC_COLUMNS} FROM topics t WHERE t.name = $1"
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
                "INSERT INTO topic_members (topic, openid, joined_at) VALUES ($1, $2, $3) \
                 ON CONFLICT (topic, openid) DO NOTHING",
            )
            .bind(topic)
            .bind(openid)
            .bind(now)
            .execute(&self.pool)
            .await?
            .rows_affected();
            Ok(joined == 1)
        })
        .await
    }

    async fn topic_leave(&self, topic: &str, openid: &str) -> Result<bool, StoreError> {
        self.tracked(async {
            let left = sqlx::query("DELETE FROM topic_members WHERE topic = $1 AND openid = $2")
                .bind(topic)
                .bind(openid)
                .execute(&self.pool)
                .await?
                .rows_affected();
            Ok(left == 1)
        })
        .await
    }

    async fn topics_of(&self, openid: &str) -> Result<Vec<String>, StoreError> {
        Ok(
            sqlx::query_scalar("SELECT topic FROM topic_members WHERE openid = $1 ORDER BY topic")
                .bind(openid)
                .fetch_all(&self.pool)
                .await?,
        )
    }

    async fn topic_members(&self, topic: &str) -> Result<Vec<String>, StoreError> {
        Ok(sqlx::query_scalar(sqlx::AssertSqlSafe(format!(
            "SELECT m.openid FROM topic_members m \
             LEFT JOIN followers f ON f.openid = m.openid \
             WHERE m.topic = $1 AND {FOLLOWING} \
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
                 VALUES ($1, $2, $3, $4, $5, $6, $7)",
            )
            .bind(&key.key_hash)
            .bind(&key.key_prefix)
            .bind(&key.kind)
            .bind(&key.target)
            .bind(&key.label)
            .bind(key.created_at)
            .bind(key.revoked_at)
            .execute(&self.pool)
            .await?;
            Ok(())
        })
        .await
    }

    async fn key_by_hash(&self, key_hash: &str) -> Result<Option<KeyRow>, StoreError> {
        Ok(sqlx::query_as::<_, KeyRow>(sqlx::AssertSqlSafe(format!(
            "SELECT {KEY_COLUMNS} FROM push_keys WHERE key_hash = $1"
        )))
        .bind(key_hash)
        .fetch_optional(&self.pool)
        .await?)
    }

    async fn key_for(&self, kind: &str, target: &str) -> Result<Option<KeyRow>, StoreError> {
        Ok(sqlx::query_as::<_, KeyRow>(sqlx::AssertSqlSafe(format!(
            "SELECT {KEY_COLUMNS} FROM push_keys \
             WHERE kind = $1 AND target = $2 AND revoked_at IS NULL \
             ORDER BY created_at DESC, id DESC LIMIT 1"
        )))
        .bind(kind)
        .bind(target)
        .fetch_optional(&self.pool)
        .await?)
    }

    async fn keys(&self) -> Result<Vec<KeyRow>, StoreError> {
        Ok(sqlx::query_as::<_, KeyRow>(sqlx::AssertSqlSafe(format!(
            "SELECT {KEY_COLUMNS} FROM push_keys ORDER BY created_at DESC, id DESC"
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
                "UPDATE push_keys SET revoked_at = $2 \
                 WHERE revoked_at IS NULL AND key_prefix = $1",
            )
            .bind(prefix)
            .bind(now)
            .execute(&self.pool)
            .await?
            .rows_affected())
        })
        .await
    }

    async fn key_revoke_hash(&self, key_hash: &str, now: i64) -> Result<u64, StoreError> {
        self.tracked(async {
            Ok(sqlx::query(
                "UPDATE push_keys SET revoked_at = $2 WHERE revoked_at IS NULL AND key_hash = $1",
            )
            .bind(key_hash)
            .bind(now)
            .execute(&self.pool)
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
            let mut tx = self.pool.begin().await?;
            let stored = insert_group(&mut tx, pushes).await?;
            tx.commit().await?;
            Ok(stored)
        })
        .await
    }

    async fn pushes_by_seq(&self, seqs: &[i64]) -> Result<Vec<PushRow>, StoreError> {
        if seqs.is_empty() {
            return Ok(Vec::new());
        }
        Ok(sqlx::query_as::<_, PushRow>(sqlx::AssertSqlSafe(format!(
            "SELECT {PUSH_COLUMNS} FROM pushes WHERE seq = ANY($1)"
        )))
        .bind(seqs)
        .fetch_all(&self.pool)
        .await?)
    }

    async fn push_by_id(&self, id: &str) -> Result<Option<PushRow>, StoreError> {
        Ok(sqlx::query_as::<_, PushRow>(sqlx::AssertSqlSafe(format!(
            "SELECT {PUSH_COLUMNS} FROM pushes WHERE id = $1"
        )))
        .bind(id)
        .fetch_optional(&self.pool)
        .await?)
    }

    async fn push_by_seq(&self, seq: i64) -> Result<Option<PushRow>, StoreError> {
        Ok(sqlx::query_as::<_, PushRow>(sqlx::AssertSqlSafe(format!(
            "SELECT {PUSH_COLUMNS} FROM pushes WHERE seq = $1"
        )))
        .bind(seq)
        .fetch_optional(&self.pool)
        .await?)
    }

    async fn push_recipients(&self, seq: i64) -> Result<Vec<RecipientRow>, StoreError> {
        Ok(sqlx::query_as::<_, RecipientRow>(
            "SELECT openid, state, attempts, msgid, error, updated_at FROM push_recipients \
             WHERE push_seq = $1 ORDER BY openid",
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
        let base = format!("SELECT {PUSH_COLUMNS} FROM pushes WHERE seq > $1 AND created_at >= $2");
        let (filter, arg) = match scope {
            None => ("", None),
            Some(scope) => {
                if let Some(openid) = scope.strip_prefix("user:") {
                    (
                        " AND seq IN (SELECT push_seq FROM push_recipients WHERE openid = $4)",
                        Some(openid),
                    )
                } else if let Some(hash) = scope.strip_prefix("key:") {
                    (" AND key_hash = $4", Some(hash))
                } else {
                    (" AND target = $4", Some(scope))
                }
            }
        };
        let sql = format!("{base}{filter} ORDER BY seq LIMIT $3");
        let mut query = sqlx::query_as::<_, PushRow>(sqlx::AssertSqlSafe(sql))
            .bind(after_seq)
            .bind(since)
            .bind(i64::from(limit));
        if let Some(arg) = arg {
            query = query.bind(arg);
        }
        Ok(query.fetch_all(&self.pool).await?)
    }

    async fn push_claim(
        &self,
        owner: &str,
        now_ms: i64,
        lease_until_ms: i64,
        limit: u32,
    ) -> Result<Vec<Claimed>, StoreError> {
        self.tracked(async {
            Ok(sqlx::query_as::<_, Claimed>(
                "UPDATE push_recipients r \
                 SET state = 'sending', lease_owner = $1, lease_until = $3, \
                     attempts = r.attempts + 1, updated_at = $4 \
                 FROM (SELECT push_seq, openid FROM push_recipients \
                       WHERE (state = 'pending' AND next_at <= $2) \
                          OR (state = 'sending' AND lease_until <= $2) \
                       LIMIT $5 FOR UPDATE SKIP LOCKED) due \
                 WHERE r.push_seq = due.push_seq AND r.openid = due.openid \
                 RETURNING r.push_seq, r.openid, r.client_msg_id, r.attempts",
            )
            .bind(owner)
            .bind(now_ms)
            .bind(lease_until_ms)
            .bind(now_ms / 1000)
            .bind(i64::from(limit))
            .fetch_all(&self.pool)
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
        // One statement per kind of outcome, the rows as arrays, in key order.
        let mut sorted: Vec<&Outcome> = outcomes.iter().collect();
        sorted.sort_unstable_by(|a, b| (a.push_seq, &a.openid).cmp(&(b.push_seq, &b.openid)));
        let mut sent = Columns::default();
        let mut retry = Columns::default();
        let mut failed = Columns::default();
        let mut released = Columns::default();
        for o in sorted {
            match &o.attempt {
                Attempt::Sent { msgid } => sent.push(o, *msgid, None),
                Attempt::Retry { next_at, error } => retry.push(o, Some(*next_at), Some(error)),
                Attempt::Failed { error } => failed.push(o, None, Some(error)),
                Attempt::Released => released.push(o, None, None),
            }
        }
        self.tracked(async {
            let mut tx = self.pool.begin().await?;
            // Only while still being sent: a recipient that a finished job already settled is
            // left as it is. A failure or a retry counts only under our own lease: another
            // process may have taken the recipient over after our lease ran out.
            let (mut sent_n, mut failed_n) = (0, 0);
            if !sent.seqs.is_empty() {
                sent_n = sqlx::query(
                    "UPDATE push_recipients r SET state = 'sent', msgid = v.n, error = NULL, \
                       lease_owner = NULL, updated_at = $4 \
                     FROM UNNEST($1::bigint[], $2::text[], $3::bigint[]) AS v(seq, openid, n) \
                     WHERE r.push_seq = v.seq AND r.openid = v.openid AND r.state = 'sending'",
                )
                .bind(&sent.seqs)
                .bind(&sent.openids)
                .bind(&sent.numbers)
                .bind(now)
                .execute(&mut *tx)
                .await?
                .rows_affected();
            }
            if !retry.seqs.is_empty() {
                sqlx::query(
                    "UPDATE push_recipients r SET state = 'pending', next_at = v.n, \
                       error = v.error, lease_owner = NULL, updated_at = $5 \
                     FROM UNNEST($1::bigint[], $2::text[], $3::bigint[], $4::text[]) \
                       AS v(seq, openid, n, error) \
                     WHERE r.push_seq = v.seq AND r.openid = v.openid AND r.state = 'sending' \
                       AND r.lease_owner = $6",
                )
                .bind(&retry.seqs)
                .bind(&retry.openids)
                .bind(&retry.numbers)
                .bind(&retry.errors)
                .bind(now)
                .bind(owner)
                .execute(&mut *tx)
                .await?;
            }
            if !failed.seqs.is_empty() {
                failed_n = sqlx::query(
                    "UPDATE push_recipients r SET state = 'failed', error = v.error, \
                       lease_owner = NULL, updated_at = $4 \
                     FROM UNNEST($1::bigint[], $2::text[], $3::text[]) AS v(seq, openid, error) \
                     WHERE r.push_seq = v.seq AND r.openid = v.openid AND r.state = 'sending' \
                       AND r.lease_owner = $5",
                )
                .bind(&failed.seqs)
                .bind(&failed.openids)
                .bind(&failed.errors)
                .bind(now)
                .bind(owner)
                .execute(&mut *tx)
                .await?
                .rows_affected();
            }
            if !released.seqs.is_empty() {
                sqlx::query(
                    "UPDATE push_recipients r SET state = 'pending', next_at = 0, \
                       attempts = GREATEST(r.attempts - 1, 0), lease_owner = NULL, updated_at = $3 \
                     FROM UNNEST($1::bigint[], $2::text[]) AS v(seq, openid) \
                     WHERE r.push_seq = v.seq AND r.openid = v.openid AND r.state = 'sending' \
                       AND r.lease_owner = $4",
                )
                .bind(&released.seqs)
                .bind(&released.openids)
                .bind(now)
                .bind(owner)
                .execute(&mut *tx)
                .await?;
            }
            // Last, as for a batch of the log: the rows every process adds to.
            let counts = console::settled_counts(
                now,
                &[(counted::SENT, sent_n), (counted::FAILED, failed_n)],
            );
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
            // One statement: the recipient settled, and counted when it was sent until now (one
            // settled already, the event come twice, is settled again as this one says and not
            // counted again).
            let changed: i64 = sqlx::query_scalar(
                "WITH was AS ( \
                     SELECT push_seq, openid, state FROM push_recipients \
                     WHERE msgid = $1 AND state IN ('sent', 'delivered', 'failed') FOR UPDATE \
                 ), settled AS ( \
                     UPDATE push_recipients r SET state = $2, error = $3, updated_at = $4 \
                     FROM was WHERE r.push_seq = was.push_seq AND r.openid = was.openid \
                     RETURNING was.state AS before \
                 ), counted AS ( \
                     INSERT INTO log_counts AS c (hour, dim, key, n) \
                     SELECT $5, $6, $2, COUNT(*) FROM settled WHERE before = 'sent' \
                     HAVING COUNT(*) > 0 \
                     ON CONFLICT (hour, dim, key) DO UPDATE SET n = c.n + EXCLUDED.n \
                 ) \
                 SELECT COUNT(*) FROM settled",
            )
            .bind(msgid)
            .bind(state)
            .bind(error)
            .bind(now)
            .bind(console::hour_of(now))
            .bind(console::dim::PUSH)
            .fetch_one(&self.pool)
            .await?;
            Ok(u64::try_from(changed).unwrap_or(0))
        })
        .await
    }

    async fn push_recipient_by_msgid(
        &self,
        msgid: i64,
    ) -> Result<Option<(i64, String)>, StoreError> {
        Ok(
            sqlx::query_as("SELECT push_seq, openid FROM push_recipients WHERE msgid = $1 LIMIT 1")
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
                 SELECT MIN(lease_until) AS t FROM push_recipients WHERE state = 'sending') due",
        )
        .fetch_one(&self.pool)
        .await?)
    }

    async fn push_retry_failed(&self, seq: i64, now_ms: i64, now: i64) -> Result<u64, StoreError> {
        self.tracked(async {
            // A resent recipient's client_msg_id is its first one with `-r` and the time: ids
            // are `{push id}-{index}`, so `-r` only ever starts this suffix.
            Ok(sqlx::query(
                "UPDATE push_recipients SET state = 'pending', attempts = 0, next_at = $2, \
                   lease_owner = NULL, lease_until = 0, msgid = NULL, error = NULL, \
                   updated_at = $3, \
                   client_msg_id = split_part(client_msg_id, '-r', 1) || '-r' || $2::TEXT \
                 WHERE push_seq = $1 AND state = 'failed'",
            )
            .bind(seq)
            .bind(now_ms)
            .bind(now)
            .execute(&self.pool)
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
            Ok(sqlx::query("DELETE FROM pushes WHERE seq = $1")
                .bind(seq)
                .execute(&self.pool)
                .await?
                .rows_affected()
                == 1)
        })
        .await
    }

    async fn push_purge(&self, before: i64) -> Result<u64, StoreError> {
        self.tracked(async {
            Ok(sqlx::query("DELETE FROM pushes WHERE created_at < $1")
                .bind(before)
                .execute(&self.pool)
                .await?
                .rows_affected())
        })
        .await
    }
}

/// Outcomes of one kind as columns, for an UPDATE over arrays.
#[derive(Default)]
struct Columns<'a> {
    seqs: Vec<i64>,
    openids: Vec<&'a str>,
    numbers: Vec<Option<i64>>,
    errors: Vec<Option<&'a str>>,
}

impl<'a> Columns<'a> {
    fn push(&mut self, o: &'a Outcome, number: Option<i64>, error: Option<&'a String>) {
        self.seqs.push(o.push_seq);
        self.openids.push(&o.openid);
        self.numbers.push(number);
        self.errors.push(error.map(String::as_str));
    }
}

/// Writes a group of pushes and their recipients inside the open transaction `conn`.
async fn insert_group<'a>(
    conn: &mut PgConnection,
    all: &[GroupedPush<'a>],
) -> Result<Vec<Option<Inserted>>, StoreError> {
    // The pushes in one statement. A push made with a key is inserted only while that key is
    // on record, unrevoked, for the same target: checked here, inside the transaction, so that
    // a key revoked by any process before it began refuses its pushes. Each seq is matched to
    // its push by id.
    let column = |f: fn(&GroupedPush<'a>) -> Option<&'a str>| all.iter().map(f).collect::<Vec<_>>();
    let returned: Vec<(String, i64)> = sqlx::query_as(
        "INSERT INTO pushes (id, key_hash, target, title, body, url, summary, source, created_at) \
         SELECT v.id, v.key_hash, v.target, v.title, v.body, v.url, v.summary, v.source, \
                v.created_at \
         FROM UNNEST($1::text[], $2::text[], $3::text[], $4::text[], $5::text[], $6::text[], \
                     $7::text[], $8::text[], $9::bigint[], $10::text[], $11::text[], $12::text[]) \
           AS v(id, key_hash, target, title, body, url, summary, source, created_at, \
                check_hash, check_kind, check_target) \
         WHERE v.check_hash IS NULL OR EXISTS (SELECT 1 FROM push_keys k \
           WHERE k.key_hash = v.check_hash AND k.kind = v.check_kind \
             AND k.target = v.check_target AND k.revoked_at IS NULL) \
         RETURNING id, seq",
    )
    .bind(column(|g| Some(g.push.id)))
    .bind(column(|g| g.push.key_hash))
    .bind(column(|g| Some(g.push.target)))
    .bind(column(|g| Some(g.push.title)))
    .bind(column(|g| Some(g.push.body)))
    .bind(column(|g| g.push.url))
    .bind(column(|g| g.push.summary))
    .bind(column(|g| Some(g.push.source)))
    .bind(all.iter().map(|g| g.push.created_at).collect::<Vec<_>>())
    .bind(column(|g| g.key.map(|k| k.key_hash)))
    .bind(column(|g| g.key.map(|k| k.kind)))
    .bind(column(|g| g.key.map(|k| k.target)))
    .fetch_all(&mut *conn)
    .await?;
    let seqs: HashMap<String, i64> = returned.into_iter().collect();
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

    // The listed recipients of every push in the group, in one statement.
    let mut seq_column = Vec::new();
    let mut openid_column = Vec::new();
    let mut id_column = Vec::new();
    let mut at_column = Vec::new();
    for (grouped, inserted) in pushes.iter().zip(&stored) {
        let push = &grouped.push;
        for (index, openid) in push.recipients.iter().enumerate() {
            seq_column.push(inserted.seq);
            openid_column.push(openid.as_str());
            id_column.push(format!("{}-{index}", push.id));
            at_column.push(push.created_at);
        }
    }
    if !seq_column.is_empty() {
        sqlx::query(
            "INSERT INTO push_recipients (push_seq, openid, client_msg_id, updated_at) \
             SELECT * FROM UNNEST($1::bigint[], $2::text[], $3::text[], $4::bigint[]) \
             ON CONFLICT (push_seq, openid) DO NOTHING",
        )
        .bind(&seq_column)
        .bind(&openid_column)
        .bind(&id_column)
        .bind(&at_column)
        .execute(&mut *conn)
        .await?;
    }

    // A topic's members, copied by PostgreSQL itself: no row goes through huixin. Each is
    // numbered for its client_msg_id after the listed recipients by its membership's id
    // (unique, so the numbers are too, with gaps).
    for (grouped, inserted) in pushes.iter().zip(stored.iter_mut()) {
        let Some(topic) = grouped.topic else {
            continue;
        };
        let push = &grouped.push;
        let members = sqlx::query(sqlx::AssertSqlSafe(format!(
            "INSERT INTO push_recipients (push_seq, openid, client_msg_id, updated_at) \
             SELECT $1::bigint, m.openid, $2::text || '-' || ($3::bigint + m.id - 1)::text, \
                    $4::bigint \
             FROM topic_members m LEFT JOIN followers f ON f.openid = m.openid \
             WHERE m.topic = $5 AND {FOLLOWING} \
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
    // Last: every process's pushes add to the same row (this hour's), whose lock is then held
    // only while the transaction commits.
    super::console::add_counts(conn, &console::accepted_counts(all, &outcome)).await?;
    Ok(outcome)
}
