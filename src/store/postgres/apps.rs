//! [`AppStore`] on PostgreSQL, where several processes write at once.
//!
//! The webhook outbox sends the deliveries of one endpoint and ordering one at a time, in seq
//! order, across processes. Two things make that hold:
//!
//! - Claims take only the first waiting delivery of each ordering (no delivery of the same
//!   endpoint and ordering with a smaller seq is `pending` or `sending`), with `FOR UPDATE SKIP
//!   LOCKED`. The test reads rows whatever their locks, so a delivery another process is
//!   claiming at that moment (locked, still `pending` as this one sees it) holds back the
//!   deliveries behind it; and a process that finds a row locked skips it rather than waiting.
//!   A delivery only ever moves on from `pending` or `sending` (once `delivered` or `failed` it
//!   stays so), so a test that saw every earlier delivery finished cannot be wrong later.
//! - Seqs come from a sequence, handed out when a row is inserted, not when it is committed: a
//!   process could store d2 after another stored d1 but commit first, and d2 would be claimed
//!   before d1 exists for anyone. So storing a delivery takes a transaction-level advisory
//!   lock on its endpoint and ordering first ([`lock_orderings`]): the deliveries of one
//!   ordering are inserted and committed one transaction after another, in seq order.

use async_trait::async_trait;
use sqlx::{PgConnection, Postgres, QueryBuilder};

use super::PostgresBackend;
use crate::store::StoreError;
use crate::store::apps::{
    APP_COLUMNS, AppChanges, AppRow, AppStore, AttemptRow, BIND_CODE_COLUMNS, BINDING_COLUMNS,
    BindCode, BindingRow, DELIVERY_COLUMNS, DeliveryFilter, DeliveryOutcome, DeliveryResult,
    DeliveryRow, NewApp, NewBinding, NewDelivery,
};

/// Whether delivery `d` is the first of its endpoint and ordering still waiting (see the
/// SQLite backend).
const HEAD: &str = "(d.ordering = '' OR NOT EXISTS (SELECT 1 FROM webhook_deliveries e \
     WHERE e.endpoint = d.endpoint AND e.ordering = d.ordering AND e.seq < d.seq \
       AND e.state IN ('pending', 'sending')))";

/// The first key of the outbox's advisory locks (PostgreSQL's two-key form, whose keys never
/// meet the one-key form's, such as sqlx's migration lock); the second is [`ordering_key`].
const ORDERING_LOCKS: i32 = 0x6878_7768; // "hxwh"

/// How many times [`AppStore::binding_upsert`] tries when other processes insert and delete
/// the same binding under it.
const UPSERT_TRIES: usize = 8;

#[async_trait]
impl AppStore for PostgresBackend {
    async fn app_insert(&self, app: &NewApp<'_>) -> Result<i64, StoreError> {
        self.tracked(async {
            let mut tx = self.pool.begin().await?;
            let id: i64 = sqlx::query_scalar(
                "INSERT INTO apps \
                   (name, callback_url, callback_format, replies, secret, return_url, created_at) \
                 VALUES ($1, $2, $3, $4, $5, $6, $7) RETURNING id",
            )
            .bind(app.name)
            .bind(app.callback_url)
            .bind(app.callback_format)
            .bind(app.replies)
            .bind(app.secret)
            .bind(app.return_url)
            .bind(app.created_at)
            .fetch_one(&mut *tx)
            .await?;
            sqlx::query(
                "INSERT INTO push_keys (key_hash, key_prefix, kind, target, label, created_at) \
                 VALUES ($1, $2, 'app', $3, $4, $5)",
            )
            .bind(app.token_hash)
            .bind(app.token_prefix)
            .bind(id.to_string())
            .bind(app.name)
            .bind(app.created_at)
            .execute(&mut *tx)
            .await?;
            tx.commit().await?;
            Ok(id)
        })
        .await
    }

    async fn app(&self, id: i64) -> Result<Option<AppRow>, StoreError> {
        Ok(sqlx::query_as::<_, AppRow>(sqlx::AssertSqlSafe(format!(
            "SELECT {APP_COLUMNS} FROM apps WHERE id = $1"
        )))
        .bind(id)
        .fetch_optional(&self.pool)
        .await?)
    }

    async fn app_by_name(&self, name: &str) -> Result<Option<AppRow>, StoreError> {
        Ok(sqlx::query_as::<_, AppRow>(sqlx::AssertSqlSafe(format!(
            "SELECT {APP_COLUMNS} FROM apps WHERE name = $1 AND revoked_at IS NULL"
        )))
        .bind(name)
        .fetch_optional(&self.pool)
        .await?)
    }

    async fn apps(&self) -> Result<Vec<AppRow>, StoreError> {
        Ok(sqlx::query_as::<_, AppRow>(sqlx::AssertSqlSafe(format!(
            "SELECT {APP_COLUMNS} FROM apps ORDER BY id"
        )))
        .fetch_all(&self.pool)
        .await?)
    }

    async fn app_update(&self, id: i64, changes: &AppChanges) -> Result<bool, StoreError> {
        self.tracked(async {
            let changed = sqlx::query(
                "UPDATE apps SET callback_url = COALESCE($2, callback_url), \
                   callback_format = COALESCE($3, callback_format), \
                   replies = COALESCE($4, replies), return_url = COALESCE($5, return_url) \
                 WHERE id = $1 AND revoked_at IS NULL",
            )
            .bind(id)
            .bind(changes.callback_url.as_deref())
            .bind(changes.callback_format.as_deref())
            .bind(changes.replies)
            .bind(changes.return_url.as_deref())
            .execute(&self.pool)
            .await?
            .rows_affected();
            Ok(changed == 1)
        })
        .await
    }

    async fn app_revoke(&self, id: i64, now: i64) -> Result<bool, StoreError> {
        self.tracked(async {
            let mut tx = self.pool.begin().await?;
            let revoked =
                sqlx::query("UPDATE apps SET revoked_at = $2 WHERE id = $1 AND revoked_at IS NULL")
                    .bind(id)
                    .bind(now)
                    .execute(&mut *tx)
                    .await?
                    .rows_affected();
            if revoked == 1 {
                sqlx::query(
                    "UPDATE push_keys SET revoked_at = $2 \
                     WHERE kind = 'app' AND target = $1 AND revoked_at IS NULL",
                )
                .bind(id.to_string())
                .bind(now)
                .execute(&mut *tx)
                .await?;
            }
            tx.commit().await?;
            Ok(revoked == 1)
        })
        .await
    }

    async fn bind_code_insert(&self, code: &BindCode) -> Result<(), StoreError> {
        self.tracked(async {
            sqlx::query(sqlx::AssertSqlSafe(format!(
                "INSERT INTO bind_codes ({BIND_CODE_COLUMNS}) \
                 VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12)"
            )))
            .bind(&code.id)
            .bind(code.app_id)
            .bind(&code.uid)
            .bind(&code.extra)
            .bind(&code.return_url)
            .bind(&code.ticket)
            .bind(&code.qr_content)
            .bind(code.created_at)
            .bind(code.expires_at)
            .bind(code.used_at)
            .bind(&code.used_by)
            .bind(&code.used_uid)
            .execute(&self.pool)
            .await?;
            Ok(())
        })
        .await
    }

    async fn bind_code(&self, id: &str) -> Result<Option<BindCode>, StoreError> {
        Ok(sqlx::query_as::<_, BindCode>(sqlx::AssertSqlSafe(format!(
            "SELECT {BIND_CODE_COLUMNS} FROM bind_codes WHERE id = $1"
        )))
        .bind(id)
        .fetch_optional(&self.pool)
        .await?)
    }

    async fn bind_code_set_ticket(
        &self,
        id: &str,
        ticket: &str,
        qr_content: &str,
    ) -> Result<(), StoreError> {
        self.tracked(async {
            sqlx::query("UPDATE bind_codes SET ticket = $2, qr_content = $3 WHERE id = $1")
                .bind(id)
                .bind(ticket)
                .bind(qr_content)
                .execute(&self.pool)
                .await?;
            Ok(())
        })
        .await
    }

    async fn bind_code_use(
        &self,
        id: &str,
        openid: &str,
        uid: &str,
        now: i64,
    ) -> Result<bool, StoreError> {
        self.tracked(async {
            // One statement: of two followers using a single-use code at once, the second
            // waits for the first's row lock, then finds the code used.
            let used = sqlx::query(
                "UPDATE bind_codes SET used_at = $4, used_by = $2, used_uid = $3 \
                 WHERE id = $1 AND expires_at > $4 AND (uid = '' OR used_at IS NULL)",
            )
            .bind(id)
            .bind(openid)
            .bind(uid)
            .bind(now)
            .execute(&self.pool)
            .await?
            .rows_affected();
            Ok(used == 1)
        })
        .await
    }

    async fn bind_codes_purge(&self, before: i64) -> Result<u64, StoreError> {
        self.tracked(async {
            Ok(sqlx::query("DELETE FROM bind_codes WHERE expires_at < $1")
                .bind(before)
                .execute(&self.pool)
                .await?
                .rows_affected())
        })
        .await
    }

    async fn binding_upsert(
        &self,
        binding: &NewBinding<'_>,
    ) -> Result<(BindingRow, Option<String>), StoreError> {
        self.tracked(async {
            let mut tx = self.pool.begin().await?;
            let upserted = upsert_binding(&mut tx, binding).await?;
            tx.commit().await?;
            Ok(upserted)
        })
        .await
    }

    async fn binding(&self, app_id: i64, uid: &str) -> Result<Option<BindingRow>, StoreError> {
        Ok(sqlx::query_as::<_, BindingRow>(sqlx::AssertSqlSafe(format!(
            "SELECT {BINDING_COLUMNS} FROM bindings WHERE app_id = $1 AND uid = $2"
        )))
        .bind(app_id)
        .bind(uid)
        .fetch_optional(&self.pool)
        .await?)
    }

    async fn binding_by_seq(&self, seq: i64) -> Result<Option<BindingRow>, StoreError> {
        Ok(sqlx::query_as::<_, BindingRow>(sqlx::AssertSqlSafe(format!(
            "SELECT {BINDING_COLUMNS} FROM bindings WHERE seq = $1"
        )))
        .bind(seq)
        .fetch_optional(&self.pool)
        .await?)
    }

    async fn bindings_of_follower(
        &self,
        app_id: i64,
        openid: &str,
    ) -> Result<Vec<BindingRow>, StoreError> {
        Ok(sqlx::query_as::<_, BindingRow>(sqlx::AssertSqlSafe(format!(
            "SELECT {BINDING_COLUMNS} FROM bindings WHERE openid = $1 AND app_id = $2 \
             ORDER BY seq"
        )))
        .bind(openid)
        .bind(app_id)
        .fetch_all(&self.pool)
        .await?)
    }

    async fn bindings_of_openid(&self, openid: &str) -> Result<Vec<BindingRow>, StoreError> {
        Ok(sqlx::query_as::<_, BindingRow>(sqlx::AssertSqlSafe(format!(
            "SELECT {BINDING_COLUMNS} FROM bindings WHERE openid = $1 ORDER BY app_id, seq"
        )))
        .bind(openid)
        .fetch_all(&self.pool)
        .await?)
    }

    async fn bindings_of_uids(
        &self,
        app_id: i64,
        uids: &[String],
    ) -> Result<Vec<BindingRow>, StoreError> {
        if uids.is_empty() {
            return Ok(Vec::new());
        }
        Ok(sqlx::query_as::<_, BindingRow>(sqlx::AssertSqlSafe(format!(
            "SELECT {BINDING_COLUMNS} FROM bindings WHERE app_id = $1 AND uid = ANY($2)"
        )))
        .bind(app_id)
        .bind(uids)
        .fetch_all(&self.pool)
        .await?)
    }

    async fn bindings_page(
        &self,
        app_id: i64,
        uid: Option<&str>,
        blocked: Option<bool>,
        offset: u32,
        limit: u32,
    ) -> Result<Vec<BindingRow>, StoreError> {
        Ok(sqlx::query_as::<_, BindingRow>(sqlx::AssertSqlSafe(format!(
            "SELECT {BINDING_COLUMNS} FROM bindings \
             WHERE app_id = $1 AND ($2::text IS NULL OR uid = $2) \
               AND ($3::boolean IS NULL OR blocked = $3) \
             ORDER BY seq LIMIT $5 OFFSET $4"
        )))
        .bind(app_id)
        .bind(uid)
        .bind(blocked)
        .bind(i64::from(offset))
        .bind(i64::from(limit))
        .fetch_all(&self.pool)
        .await?)
    }

    async fn bindings_count(
        &self,
        app_id: i64,
        uid: Option<&str>,
        blocked: Option<bool>,
    ) -> Result<u64, StoreError> {
        let n: i64 = sqlx::query_scalar(
            "SELECT COUNT(*) FROM bindings \
             WHERE app_id = $1 AND ($2::text IS NULL OR uid = $2) \
               AND ($3::boolean IS NULL OR blocked = $3)",
        )
        .bind(app_id)
        .bind(uid)
        .bind(blocked)
        .fetch_one(&self.pool)
        .await?;
        Ok(u64::try_from(n).unwrap_or(0))
    }

    async fn binding_delete(&self, app_id: i64, seq: i64) -> Result<bool, StoreError> {
        self.tracked(async {
            let deleted = sqlx::query("DELETE FROM bindings WHERE app_id = $1 AND seq = $2")
                .bind(app_id)
                .bind(seq)
                .execute(&self.pool)
                .await?
                .rows_affected();
            Ok(deleted == 1)
        })
        .await
    }

    async fn binding_block(
        &self,
        app_id: i64,
        seq: i64,
        blocked: bool,
        now: i64,
    ) -> Result<bool, StoreError> {
        self.tracked(async {
            let changed = sqlx::query(
                "UPDATE bindings SET blocked = $3, updated_at = $4 WHERE app_id = $1 AND seq = $2",
            )
            .bind(app_id)
            .bind(seq)
            .bind(blocked)
            .bind(now)
            .execute(&self.pool)
            .await?
            .rows_affected();
            Ok(changed == 1)
        })
        .await
    }

    async fn bindings_mark(&self, openid: &str, state: &str, now: i64) -> Result<u64, StoreError> {
        self.tracked(async {
            // The follower's rows locked in key order: a follow and an unfollow marking at
            // once never wait for each other in a circle.
            Ok(sqlx::query(
                "UPDATE bindings b SET state = $2, updated_at = $3 \
                 FROM (SELECT seq FROM bindings WHERE openid = $1 AND state <> $2 \
                       ORDER BY seq FOR UPDATE) mine \
                 WHERE b.seq = mine.seq AND b.state <> $2",
            )
            .bind(openid)
            .bind(state)
            .bind(now)
            .execute(&self.pool)
            .await?
            .rows_affected())
        })
        .await
    }

    async fn topic_set_app(&self, name: &str, app_id: Option<i64>) -> Result<bool, StoreError> {
        self.tracked(async {
            let changed = sqlx::query("UPDATE topics SET app_id = $2 WHERE name = $1")
                .bind(name)
                .bind(app_id)
                .execute(&self.pool)
                .await?
                .rows_affected();
            Ok(changed == 1)
        })
        .await
    }

    async fn topic_by_num(&self, num: i64) -> Result<Option<String>, StoreError> {
        Ok(sqlx::query_scalar(
            "SELECT t.name FROM topic_numbers n JOIN topics t ON t.name = n.name WHERE n.num = $1",
        )
        .bind(num)
        .fetch_optional(&self.pool)
        .await?)
    }

    async fn webhook_insert(&self, deliveries: &[NewDelivery<'_>]) -> Result<Vec<i64>, StoreError> {
        if deliveries.is_empty() {
            return Ok(Vec::new());
        }
        self.tracked(async {
            let mut tx = self.pool.begin().await?;
            lock_orderings(&mut tx, deliveries).await?;
            let mut seqs = Vec::with_capacity(deliveries.len());
            for delivery in deliveries {
                seqs.push(insert_delivery(&mut tx, delivery, None).await?.0);
            }
            tx.commit().await?;
            Ok(seqs)
        })
        .await
    }

    async fn webhook_insert_claimed(
        &self,
        delivery: &NewDelivery<'_>,
        owner: &str,
        lease_until_ms: i64,
    ) -> Result<(i64, bool), StoreError> {
        self.tracked(async {
            let mut tx = self.pool.begin().await?;
            lock_orderings(&mut tx, std::slice::from_ref(delivery)).await?;
            let inserted =
                insert_delivery(&mut tx, delivery, Some((owner, lease_until_ms))).await?;
            tx.commit().await?;
            Ok(inserted)
        })
        .await
    }

    async fn webhook_claim(
        &self,
        owner: &str,
        now_ms: i64,
        lease_until_ms: i64,
        limit: u32,
    ) -> Result<Vec<DeliveryRow>, StoreError> {
        self.tracked(async {
            // See the module's comment for why this keeps each ordering's deliveries one at a
            // time across processes.
            let mut claimed = sqlx::query_as::<_, DeliveryRow>(sqlx::AssertSqlSafe(format!(
                "UPDATE webhook_deliveries w \
                 SET state = 'sending', lease_owner = $1, lease_until = $3, \
                     attempts = w.attempts + 1, updated_at = $2 \
                 FROM (SELECT d.seq FROM webhook_deliveries d \
                       WHERE ((d.state = 'pending' AND d.next_at <= $2) \
                           OR (d.state = 'sending' AND d.lease_until <= $2)) \
                         AND {HEAD} \
                       ORDER BY d.seq LIMIT $4 FOR UPDATE SKIP LOCKED) due \
                 WHERE w.seq = due.seq \
                 RETURNING {}",
                qualified("w", DELIVERY_COLUMNS)
            )))
            .bind(owner)
            .bind(now_ms)
            .bind(lease_until_ms)
            .bind(i64::from(limit))
            .fetch_all(&self.pool)
            .await?;
            // RETURNING promises no order.
            claimed.sort_unstable_by_key(|d| d.seq);
            Ok(claimed)
        })
        .await
    }

    async fn webhook_settle(
        &self,
        owner: &str,
        outcomes: &[DeliveryOutcome],
        now_ms: i64,
    ) -> Result<(), StoreError> {
        // One statement per kind of change, the rows as arrays, in key order.
        let mut sorted: Vec<&DeliveryOutcome> = outcomes.iter().collect();
        sorted.sort_unstable_by_key(|o| o.seq);
        let mut settled = Settled::default();
        let mut released: Vec<i64> = Vec::new();
        for o in sorted {
            match &o.result {
                DeliveryResult::Delivered => settled.push(o, "delivered", None, None),
                DeliveryResult::Retry { next_at, error } => {
                    settled.push(o, "pending", Some(*next_at), Some(error));
                }
                DeliveryResult::Failed { error } => settled.push(o, "failed", None, Some(error)),
                DeliveryResult::Released => released.push(o.seq),
            }
        }
        if settled.seqs.is_empty() && released.is_empty() {
            return Ok(());
        }
        self.tracked(async {
            let mut tx = self.pool.begin().await?;
            // Only under our own lease: another process may have taken a delivery over after
            // it ran out, and its attempt is the one that counts. Each change recorded is an
            // attempt, numbered as the claim counted it.
            if !settled.seqs.is_empty() {
                sqlx::query(
                    "WITH settled AS ( \
                       UPDATE webhook_deliveries d SET state = v.state, \
                         next_at = COALESCE(v.next_at, d.next_at), last_status = v.status, \
                         last_error = v.error, lease_owner = NULL, lease_until = 0, \
                         updated_at = $8 \
                       FROM UNNEST($1::bigint[], $2::text[], $3::bigint[], $4::bigint[], \
                                   $5::text[], $6::bigint[], $7::bigint[]) \
                         AS v(seq, state, next_at, status, error, at, duration_ms) \
                       WHERE d.seq = v.seq AND d.lease_owner = $9 AND d.state = 'sending' \
                       RETURNING d.seq, d.attempts, v.at, v.duration_ms, v.status, v.error) \
                     INSERT INTO webhook_attempts \
                       (delivery_seq, attempt, at, duration_ms, status, error) \
                     SELECT seq, attempts, at, duration_ms, status, error FROM settled \
                     ON CONFLICT (delivery_seq, attempt) DO NOTHING",
                )
                .bind(&settled.seqs)
                .bind(&settled.states)
                .bind(&settled.next_ats)
                .bind(&settled.statuses)
                .bind(&settled.errors)
                .bind(&settled.ats)
                .bind(&settled.durations)
                .bind(now_ms)
                .bind(owner)
                .execute(&mut *tx)
                .await?;
            }
            if !released.is_empty() {
                // Never started: due again at once, the claimed attempt taken back, the last
                // attempt's status and error left as they were.
                sqlx::query(
                    "UPDATE webhook_deliveries SET state = 'pending', next_at = $2, \
                       attempts = GREATEST(attempts - 1, 0), lease_owner = NULL, \
                       lease_until = 0, updated_at = $2 \
                     WHERE seq = ANY($1) AND lease_owner = $3 AND state = 'sending'",
                )
                .bind(&released)
                .bind(now_ms)
                .bind(owner)
                .execute(&mut *tx)
                .await?;
            }
            tx.commit().await?;
            Ok(())
        })
        .await
    }

    async fn webhook_delivery(&self, id: &str) -> Result<Option<DeliveryRow>, StoreError> {
        Ok(
            sqlx::query_as::<_, DeliveryRow>(sqlx::AssertSqlSafe(format!(
                "SELECT {DELIVERY_COLUMNS} FROM webhook_deliveries WHERE id = $1"
            )))
            .bind(id)
            .fetch_optional(&self.pool)
            .await?,
        )
    }

    async fn webhook_deliveries(
        &self,
        filter: &DeliveryFilter,
    ) -> Result<Vec<DeliveryRow>, StoreError> {
        let mut select = QueryBuilder::<Postgres>::new(format!(
            "SELECT {DELIVERY_COLUMNS} FROM webhook_deliveries WHERE TRUE"
        ));
        match filter.app_id {
            None => {}
            Some(None) => {
                select.push(" AND app_id IS NULL");
            }
            Some(Some(app_id)) => {
                select.push(" AND app_id = ").push_bind(app_id);
            }
        }
        if let Some(state) = &filter.state {
            select.push(" AND state = ").push_bind(state.as_str());
        }
        if let Some(event) = &filter.event {
            select.push(" AND event = ").push_bind(event.as_str());
        }
        if let Some(before) = filter.before_seq {
            select.push(" AND seq < ").push_bind(before);
        }
        select
            .push(" ORDER BY seq DESC LIMIT ")
            .push_bind(i64::from(filter.limit));
        Ok(select
            .build_query_as::<DeliveryRow>()
            .fetch_all(&self.pool)
            .await?)
    }

    async fn webhook_attempts(&self, seqs: &[i64]) -> Result<Vec<AttemptRow>, StoreError> {
        if seqs.is_empty() {
            return Ok(Vec::new());
        }
        Ok(sqlx::query_as::<_, AttemptRow>(
            "SELECT delivery_seq, attempt, at, duration_ms, status, error FROM webhook_attempts \
             WHERE delivery_seq = ANY($1) ORDER BY delivery_seq, attempt",
        )
        .bind(seqs)
        .fetch_all(&self.pool)
        .await?)
    }

    async fn webhook_next_due(&self) -> Result<Option<i64>, StoreError> {
        // A pending delivery behind an earlier one of its ordering is not due, whatever its
        // next_at: it waits for that one (whose own time is counted).
        Ok(sqlx::query_scalar(sqlx::AssertSqlSafe(format!(
            "SELECT MIN(t) FROM ( \
                 SELECT MIN(d.next_at) AS t FROM webhook_deliveries d \
                 WHERE d.state = 'pending' AND {HEAD} \
                 UNION ALL \
                 SELECT MIN(lease_until) AS t FROM webhook_deliveries WHERE state = 'sending' \
             ) due"
        )))
        .fetch_one(&self.pool)
        .await?)
    }

    async fn webhook_purge(&self, before_ms: i64) -> Result<u64, StoreError> {
        self.tracked(async {
            // Their attempts go with them (ON DELETE CASCADE).
            Ok(sqlx::query(
                "DELETE FROM webhook_deliveries \
                 WHERE state IN ('delivered', 'failed') AND created_at < $1",
            )
            .bind(before_ms)
            .execute(&self.pool)
            .await?
            .rows_affected())
        })
        .await
    }
}

/// `columns` (comma-separated) each prefixed with `alias.`.
fn qualified(alias: &str, columns: &str) -> String {
    columns
        .split(',')
        .map(|c| format!("{alias}.{}", c.trim()))
        .collect::<Vec<_>>()
        .join(", ")
}

/// The second key of the advisory lock of an endpoint and ordering: FNV-1a of both, so every
/// process (and every version of huixin) computes the same.
fn ordering_key(endpoint: &str, ordering: &str) -> i32 {
    let mut hash: u32 = 0x811c_9dc5;
    for byte in endpoint.bytes().chain([0]).chain(ordering.bytes()) {
        hash ^= u32::from(byte);
        hash = hash.wrapping_mul(0x0100_0193);
    }
    i32::from_ne_bytes(hash.to_ne_bytes())
}

/// Takes the advisory locks of the deliveries' endpoints and orderings (those with one) for
/// the rest of the transaction, in key order, so two transactions never wait for each other
/// in a circle. Keys that collide only make unrelated orderings wait for each other.
async fn lock_orderings(
    conn: &mut PgConnection,
    deliveries: &[NewDelivery<'_>],
) -> Result<(), StoreError> {
    let mut keys: Vec<i32> = deliveries
        .iter()
        .filter(|d| !d.ordering.is_empty())
        .map(|d| ordering_key(d.endpoint, d.ordering))
        .collect();
    if keys.is_empty() {
        return Ok(());
    }
    keys.sort_unstable();
    keys.dedup();
    sqlx::query("SELECT pg_advisory_xact_lock($1, k) FROM UNNEST($2::integer[]) AS u(k)")
        .bind(ORDERING_LOCKS)
        .bind(&keys)
        .execute(&mut *conn)
        .await?;
    Ok(())
}

/// Binds inside the open transaction `conn` (see [`AppStore::binding_upsert`]): the binding
/// of the uid, locked, made over; or, when there is none, a new one. Another process may
/// insert the same uid in between (then it is made over) or delete it (then it is inserted).
async fn upsert_binding(
    conn: &mut PgConnection,
    b: &NewBinding<'_>,
) -> Result<(BindingRow, Option<String>), StoreError> {
    for _ in 0..UPSERT_TRIES {
        let before: Option<String> = sqlx::query_scalar(
            "SELECT openid FROM bindings WHERE app_id = $1 AND uid = $2 FOR UPDATE",
        )
        .bind(b.app_id)
        .bind(b.uid)
        .fetch_optional(&mut *conn)
        .await?;
        if let Some(before) = before {
            let row: BindingRow = sqlx::query_as(sqlx::AssertSqlSafe(format!(
                "UPDATE bindings SET openid = $3, extra = $4, source = $5, state = 'bound', \
                   updated_at = $6 \
                 WHERE app_id = $1 AND uid = $2 RETURNING {BINDING_COLUMNS}"
            )))
            .bind(b.app_id)
            .bind(b.uid)
            .bind(b.openid)
            .bind(b.extra)
            .bind(b.source)
            .bind(b.now)
            .fetch_one(&mut *conn)
            .await?;
            return Ok((row, (before != b.openid).then_some(before)));
        }
        // Looked up first, so that binding a uid again does not use up a seq.
        let inserted: Option<BindingRow> = sqlx::query_as(sqlx::AssertSqlSafe(format!(
            "INSERT INTO bindings (app_id, uid, openid, extra, source, created_at, updated_at) \
             VALUES ($1, $2, $3, $4, $5, $6, $6) ON CONFLICT (app_id, uid) DO NOTHING \
             RETURNING {BINDING_COLUMNS}"
        )))
        .bind(b.app_id)
        .bind(b.uid)
        .bind(b.openid)
        .bind(b.extra)
        .bind(b.source)
        .bind(b.now)
        .fetch_optional(&mut *conn)
        .await?;
        if let Some(row) = inserted {
            return Ok((row, None));
        }
    }
    Err(StoreError::Database(sqlx::Error::RowNotFound))
}

/// Stores one delivery inside the open transaction `conn`, which holds its ordering's lock:
/// pending and due at once; or, with `claim` (owner, lease end), claimed at once when no
/// earlier delivery of its endpoint and ordering is waiting. Its seq and whether it was
/// claimed.
async fn insert_delivery(
    conn: &mut PgConnection,
    d: &NewDelivery<'_>,
    claim: Option<(&str, i64)>,
) -> Result<(i64, bool), StoreError> {
    let (owner, lease_until) = match claim {
        Some((owner, until)) => (Some(owner), until),
        None => (None, 0),
    };
    // Every delivery of the ordering that exists is earlier than this one (its lock is held):
    // the head test needs no seq.
    let (seq, claimed): (i64, bool) = sqlx::query_as(
        "INSERT INTO webhook_deliveries \
           (id, app_id, endpoint, url, event, ordering, body, state, attempts, next_at, \
            lease_owner, lease_until, created_at, updated_at) \
         SELECT $1, $2, $3, $4, $5, $6, $7, \
                CASE WHEN v.claim THEN 'sending' ELSE 'pending' END, \
                CASE WHEN v.claim THEN 1 ELSE 0 END, $8, \
                CASE WHEN v.claim THEN $9 END, \
                CASE WHEN v.claim THEN $10 ELSE 0 END, $8, $8 \
         FROM (SELECT $9::text IS NOT NULL AND ($6 = '' OR NOT EXISTS ( \
                   SELECT 1 FROM webhook_deliveries e \
                   WHERE e.endpoint = $3 AND e.ordering = $6 \
                     AND e.state IN ('pending', 'sending'))) AS claim) v \
         RETURNING seq, state = 'sending'",
    )
    .bind(d.id)
    .bind(d.app_id)
    .bind(d.endpoint)
    .bind(d.url)
    .bind(d.event)
    .bind(d.ordering)
    .bind(d.body)
    .bind(d.now_ms)
    .bind(owner)
    .bind(lease_until)
    .fetch_one(&mut *conn)
    .await?;
    Ok((seq, claimed))
}

/// Settled outcomes as columns, for an UPDATE over arrays.
#[derive(Default)]
struct Settled<'a> {
    seqs: Vec<i64>,
    states: Vec<&'static str>,
    next_ats: Vec<Option<i64>>,
    statuses: Vec<Option<i64>>,
    errors: Vec<Option<&'a str>>,
    ats: Vec<i64>,
    durations: Vec<i64>,
}

impl<'a> Settled<'a> {
    fn push(
        &mut self,
        o: &'a DeliveryOutcome,
        state: &'static str,
        next_at: Option<i64>,
        error: Option<&'a String>,
    ) {
        self.seqs.push(o.seq);
        self.states.push(state);
        self.next_ats.push(next_at);
        self.statuses.push(o.status);
        self.errors.push(error.map(String::as_str));
        self.ats.push(o.at);
        self.durations.push(o.duration_ms);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ordering_keys_are_stable_and_tell_endpoints_apart() {
        // Processes of different builds take the same lock for the same ordering.
        assert_eq!(
            ordering_key("", ""),
            i32::from_ne_bytes(0x050c_5d1f_u32.to_ne_bytes())
        );
        assert_eq!(ordering_key("app:1", "o_a"), ordering_key("app:1", "o_a"));
        assert_ne!(ordering_key("app:1", "o_a"), ordering_key("app:1", "o_b"));
        assert_ne!(ordering_key("app:1o", "_a"), ordering_key("app:1", "o_a"));
    }

    #[test]
    fn columns_are_qualified() {
        assert_eq!(qualified("w", "seq, id,\n state"), "w.seq, w.id, w.state");
    }
}
