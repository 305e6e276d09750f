//! [`AppStore`] on SQLite. Every write goes through the one writer connection, so a
//! transaction that reads before it writes starts with a write (SQLite then holds the write
//! lock throughout, and another process cannot slip in between the read and the write).

use async_trait::async_trait;
use sqlx::sqlite::SqliteConnection;
use sqlx::{QueryBuilder, Sqlite};

use super::SqliteBackend;
use crate::store::StoreError;
use crate::store::apps::{
    APP_COLUMNS, AppChanges, AppRow, AppStore, AttemptRow, BIND_CODE_COLUMNS, BINDING_COLUMNS,
    BindCode, BindingRow, DELIVERY_COLUMNS, DeliveryFilter, DeliveryOutcome, DeliveryResult,
    DeliveryRow, NewApp, NewBinding, NewDelivery,
};

/// Whether delivery `d` is the first of its endpoint and ordering still waiting: no delivery
/// of the same endpoint and ordering with a smaller seq is `pending` or `sending`. An empty
/// ordering orders nothing.
const HEAD: &str = "(d.ordering = '' OR NOT EXISTS (SELECT 1 FROM webhook_deliveries e \
     WHERE e.endpoint = d.endpoint AND e.ordering = d.ordering AND e.seq < d.seq \
       AND e.state IN ('pending', 'sending')))";

/// `list` as a JSON array, for `json_each`: one statement text whatever its length.
fn json_list<T: serde::Serialize>(list: &[T]) -> String {
    // Strings and numbers always serialize; an empty text would be refused as malformed JSON.
    serde_json::to_string(list).unwrap_or_default()
}

#[async_trait]
impl AppStore for SqliteBackend {
    async fn app_insert(&self, app: &NewApp<'_>) -> Result<i64, StoreError> {
        self.tracked(async {
            let mut tx = self.writer.begin().await?;
            let id: i64 = sqlx::query_scalar(
                "INSERT INTO apps \
                   (name, callback_url, callback_format, replies, secret, return_url, created_at) \
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7) RETURNING id",
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
                 VALUES (?1, ?2, 'app', ?3, ?4, ?5)",
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
            "SELECT {APP_COLUMNS} FROM apps WHERE id = ?1"
        )))
        .bind(id)
        .fetch_optional(&self.pool)
        .await?)
    }

    async fn app_by_name(&self, name: &str) -> Result<Option<AppRow>, StoreError> {
        Ok(sqlx::query_as::<_, AppRow>(sqlx::AssertSqlSafe(format!(
            "SELECT {APP_COLUMNS} FROM apps WHERE name = ?1 AND revoked_at IS NULL"
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
                "UPDATE apps SET callback_url = COALESCE(?2, callback_url), \
                   callback_format = COALESCE(?3, callback_format), \
                   replies = COALESCE(?4, replies), return_url = COALESCE(?5, return_url) \
                 WHERE id = ?1 AND revoked_at IS NULL",
            )
            .bind(id)
            .bind(changes.callback_url.as_deref())
            .bind(changes.callback_format.as_deref())
            .bind(changes.replies)
            .bind(changes.return_url.as_deref())
            .execute(&self.writer)
            .await?
            .rows_affected();
            Ok(changed == 1)
        })
        .await
    }

    async fn app_revoke(&self, id: i64, now: i64) -> Result<bool, StoreError> {
        self.tracked(async {
            let mut tx = self.writer.begin().await?;
            let revoked =
                sqlx::query("UPDATE apps SET revoked_at = ?2 WHERE id = ?1 AND revoked_at IS NULL")
                    .bind(id)
                    .bind(now)
                    .execute(&mut *tx)
                    .await?
                    .rows_affected();
            if revoked == 1 {
                sqlx::query(
                    "UPDATE push_keys SET revoked_at = ?2 \
                     WHERE kind = 'app' AND target = ?1 AND revoked_at IS NULL",
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
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12)"
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
            .execute(&self.writer)
            .await?;
            Ok(())
        })
        .await
    }

    async fn bind_code(&self, id: &str) -> Result<Option<BindCode>, StoreError> {
        Ok(sqlx::query_as::<_, BindCode>(sqlx::AssertSqlSafe(format!(
            "SELECT {BIND_CODE_COLUMNS} FROM bind_codes WHERE id = ?1"
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
            sqlx::query("UPDATE bind_codes SET ticket = ?2, qr_content = ?3 WHERE id = ?1")
                .bind(id)
                .bind(ticket)
                .bind(qr_content)
                .execute(&self.writer)
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
            // One statement: of two followers using a single-use code at once, one takes it.
            let used = sqlx::query(
                "UPDATE bind_codes SET used_at = ?4, used_by = ?2, used_uid = ?3 \
                 WHERE id = ?1 AND expires_at > ?4 AND (uid = '' OR used_at IS NULL)",
            )
            .bind(id)
            .bind(openid)
            .bind(uid)
            .bind(now)
            .execute(&self.writer)
            .await?
            .rows_affected();
            Ok(used == 1)
        })
        .await
    }

    async fn bind_codes_purge(&self, before: i64) -> Result<u64, StoreError> {
        self.tracked(async {
            Ok(sqlx::query("DELETE FROM bind_codes WHERE expires_at < ?1")
                .bind(before)
                .execute(&self.writer)
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
            let mut tx = self.writer.begin().await?;
            let upserted = upsert_binding(&mut tx, binding).await?;
            tx.commit().await?;
            Ok(upserted)
        })
        .await
    }

    async fn binding(&self, app_id: i64, uid: &str) -> Result<Option<BindingRow>, StoreError> {
        Ok(sqlx::query_as::<_, BindingRow>(sqlx::AssertSqlSafe(format!(
            "SELECT {BINDING_COLUMNS} FROM bindings WHERE app_id = ?1 AND uid = ?2"
        )))
        .bind(app_id)
        .bind(uid)
        .fetch_optional(&self.pool)
        .await?)
    }

    async fn binding_by_seq(&self, seq: i64) -> Result<Option<BindingRow>, StoreError> {
        Ok(sqlx::query_as::<_, BindingRow>(sqlx::AssertSqlSafe(format!(
            "SELECT {BINDING_COLUMNS} FROM bindings WHERE seq = ?1"
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
            "SELECT {BINDING_COLUMNS} FROM bindings WHERE openid = ?1 AND app_id = ?2 \
             ORDER BY seq"
        )))
        .bind(openid)
        .bind(app_id)
        .fetch_all(&self.pool)
        .await?)
    }

    async fn bindings_of_openid(&self, openid: &str) -> Result<Vec<BindingRow>, StoreError> {
        Ok(sqlx::query_as::<_, BindingRow>(sqlx::AssertSqlSafe(format!(
            "SELECT {BINDING_COLUMNS} FROM bindings WHERE openid = ?1 ORDER BY app_id, seq"
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
            "SELECT {BINDING_COLUMNS} FROM bindings \
             WHERE app_id = ?1 AND uid IN (SELECT value FROM json_each(?2))"
        )))
        .bind(app_id)
        .bind(json_list(uids))
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
             WHERE app_id = ?1 AND (?2 IS NULL OR uid = ?2) AND (?3 IS NULL OR blocked = ?3) \
             ORDER BY seq LIMIT ?5 OFFSET ?4"
        )))
        .bind(app_id)
        .bind(uid)
        .bind(blocked)
        .bind(offset)
        .bind(limit)
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
             WHERE app_id = ?1 AND (?2 IS NULL OR uid = ?2) AND (?3 IS NULL OR blocked = ?3)",
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
            let deleted = sqlx::query("DELETE FROM bindings WHERE app_id = ?1 AND seq = ?2")
                .bind(app_id)
                .bind(seq)
                .execute(&self.writer)
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
                "UPDATE bindings SET blocked = ?3, updated_at = ?4 WHERE app_id = ?1 AND seq = ?2",
            )
            .bind(app_id)
            .bind(seq)
            .bind(blocked)
            .bind(now)
            .execute(&self.writer)
            .await?
            .rows_affected();
            Ok(changed == 1)
        })
        .await
    }

    async fn bindings_mark(&self, openid: &str, state: &str, now: i64) -> Result<u64, StoreError> {
        self.tracked(async {
            Ok(sqlx::query(
                "UPDATE bindings SET state = ?2, updated_at = ?3 WHERE openid = ?1 AND state <> ?2",
            )
            .bind(openid)
            .bind(state)
            .bind(now)
            .execute(&self.writer)
            .await?
            .rows_affected())
        })
        .await
    }

    async fn topic_set_app(&self, name: &str, app_id: Option<i64>) -> Result<bool, StoreError> {
        self.tracked(async {
            let changed = sqlx::query("UPDATE topics SET app_id = ?2 WHERE name = ?1")
                .bind(name)
                .bind(app_id)
                .execute(&self.writer)
                .await?
                .rows_affected();
            Ok(changed == 1)
        })
        .await
    }

    async fn topic_by_num(&self, num: i64) -> Result<Option<String>, StoreError> {
        Ok(sqlx::query_scalar(
            "SELECT t.name FROM topic_numbers n JOIN topics t ON t.name = n.name WHERE n.num = ?1",
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
            let mut tx = self.writer.begin().await?;
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
            let mut conn = self.writer.acquire().await?;
            insert_delivery(&mut conn, delivery, Some((owner, lease_until_ms))).await
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
        // Not `tracked`: a claim rewrites rows in place, and its success says nothing about
        // whether the database has room (the health check must keep reporting a full disk).
        {
            // One statement: SQLite runs it under the write lock, so two processes never claim
            // the same delivery, nor two of one ordering (each sees the other's claims). The
            // pending queue is read in seq order from its own index and the read stops once
            // `limit` heads are found, so a backlog costs a claim nothing; expired leases are
            // few. (Gathering every due delivery first made each claim as slow as the backlog
            // was long.)
            let mut claimed = sqlx::query_as::<_, DeliveryRow>(sqlx::AssertSqlSafe(format!(
                "UPDATE webhook_deliveries \
                 SET state = 'sending', lease_owner = ?1, lease_until = ?3, \
                     attempts = attempts + 1, updated_at = ?2 \
                 WHERE seq IN ( \
                     SELECT seq FROM ( \
                         SELECT d.seq FROM webhook_deliveries d \
                             INDEXED BY webhook_deliveries_queue \
                         WHERE d.state = 'pending' AND d.next_at <= ?2 AND {HEAD} \
                         ORDER BY d.seq LIMIT ?4) \
                     UNION ALL \
                     SELECT seq FROM ( \
                         SELECT d.seq FROM webhook_deliveries d \
                         WHERE d.state = 'sending' AND d.lease_until <= ?2 AND {HEAD} \
                         ORDER BY d.seq LIMIT ?4) \
                     ORDER BY seq LIMIT ?4) \
                 RETURNING {DELIVERY_COLUMNS}"
            )))
            .bind(owner)
            .bind(now_ms)
            .bind(lease_until_ms)
            .bind(limit)
            .fetch_all(&self.writer)
            .await?;
            // RETURNING promises no order.
            claimed.sort_unstable_by_key(|d| d.seq);
            Ok(claimed)
        }
    }

    async fn webhook_settle(
        &self,
        owner: &str,
        outcomes: &[DeliveryOutcome],
        now_ms: i64,
    ) -> Result<(), StoreError> {
        if outcomes.is_empty() {
            return Ok(());
        }
        self.tracked(async {
            let mut tx = self.writer.begin().await?;
            for outcome in outcomes {
                settle_delivery(&mut tx, owner, outcome, now_ms).await?;
            }
            tx.commit().await?;
            Ok(())
        })
        .await
    }

    async fn webhook_delivery(&self, id: &str) -> Result<Option<DeliveryRow>, StoreError> {
        Ok(
            sqlx::query_as::<_, DeliveryRow>(sqlx::AssertSqlSafe(format!(
                "SELECT {DELIVERY_COLUMNS} FROM webhook_deliveries WHERE id = ?1"
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
        let mut select = QueryBuilder::<Sqlite>::new(format!(
            "SELECT {DELIVERY_COLUMNS} FROM webhook_deliveries WHERE 1 = 1"
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
            .push_bind(filter.limit);
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
             WHERE delivery_seq IN (SELECT value FROM json_each(?1)) \
             ORDER BY delivery_seq, attempt",
        )
        .bind(json_list(seqs))
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
                 SELECT MIN(lease_until) AS t FROM webhook_deliveries WHERE state = 'sending')"
        )))
        .fetch_one(&self.pool)
        .await?)
    }

    async fn webhook_purge(&self, before_ms: i64) -> Result<u64, StoreError> {
        self.tracked(async {
            // Their attempts go with them (ON DELETE CASCADE).
            Ok(sqlx::query(
                "DELETE FROM webhook_deliveries \
                 WHERE state IN ('delivered', 'failed') AND created_at < ?1",
            )
            .bind(before_ms)
            .execute(&self.writer)
            .await?
            .rows_affected())
        })
        .await
    }
}

/// Binds inside the open transaction `conn` (see [`AppStore::binding_upsert`]).
async fn upsert_binding(
    conn: &mut SqliteConnection,
    b: &NewBinding<'_>,
) -> Result<(BindingRow, Option<String>), StoreError> {
    // The write first: from here the transaction holds the write lock, so the follower read
    // next is the one replaced. (Not ON CONFLICT alone: SQLite would use up a seq each time a
    // uid is bound again.)
    let inserted: Option<BindingRow> = sqlx::query_as(sqlx::AssertSqlSafe(format!(
        "INSERT INTO bindings (app_id, uid, openid, extra, source, created_at, updated_at) \
         SELECT ?1, ?2, ?3, ?4, ?5, ?6, ?6 \
         WHERE NOT EXISTS (SELECT 1 FROM bindings WHERE app_id = ?1 AND uid = ?2) \
         ON CONFLICT (app_id, uid) DO NOTHING \
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
    let before: String =
        sqlx::query_scalar("SELECT openid FROM bindings WHERE app_id = ?1 AND uid = ?2")
            .bind(b.app_id)
            .bind(b.uid)
            .fetch_one(&mut *conn)
            .await?;
    let row: BindingRow = sqlx::query_as(sqlx::AssertSqlSafe(format!(
        "UPDATE bindings SET openid = ?3, extra = ?4, source = ?5, state = 'bound', \
           updated_at = ?6 \
         WHERE app_id = ?1 AND uid = ?2 RETURNING {BINDING_COLUMNS}"
    )))
    .bind(b.app_id)
    .bind(b.uid)
    .bind(b.openid)
    .bind(b.extra)
    .bind(b.source)
    .bind(b.now)
    .fetch_one(&mut *conn)
    .await?;
    Ok((row, (before != b.openid).then_some(before)))
}

/// Stores one delivery on `conn` (in a transaction or the single writer's turn: one
/// statement), pending and due at once; or, with `claim` (owner, lease end), claimed at once
/// when no earlier delivery of its endpoint and ordering is waiting. Its seq and whether it
/// was claimed.
async fn insert_delivery(
    conn: &mut SqliteConnection,
    d: &NewDelivery<'_>,
    claim: Option<(&str, i64)>,
) -> Result<(i64, bool), StoreError> {
    let (owner, lease_until) = match claim {
        Some((owner, until)) => (Some(owner), until),
        None => (None, 0),
    };
    // Every existing delivery is earlier than this one: the head test needs no seq.
    let (seq, claimed): (i64, bool) = sqlx::query_as(
        "INSERT INTO webhook_deliveries \
           (id, app_id, endpoint, url, event, ordering, body, state, attempts, next_at, \
            lease_owner, lease_until, created_at, updated_at) \
         SELECT v.id, v.app_id, v.endpoint, v.url, v.event, v.ordering, v.body, \
                CASE WHEN v.claim THEN 'sending' ELSE 'pending' END, \
                CASE WHEN v.claim THEN 1 ELSE 0 END, v.now, \
                CASE WHEN v.claim THEN v.owner END, \
                CASE WHEN v.claim THEN v.lease_until ELSE 0 END, v.now, v.now \
         FROM (SELECT ?1 AS id, ?2 AS app_id, ?3 AS endpoint, ?4 AS url, ?5 AS event, \
                      ?6 AS ordering, ?7 AS body, ?8 AS now, ?9 AS owner, \
                      ?10 AS lease_until, \
                      ?9 IS NOT NULL AND (?6 = '' OR NOT EXISTS ( \
                          SELECT 1 FROM webhook_deliveries e \
                          WHERE e.endpoint = ?3 AND e.ordering = ?6 \
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

/// Records one attempt's outcome inside the open transaction `conn`, if `owner` still holds
/// the delivery's lease.
async fn settle_delivery(
    conn: &mut SqliteConnection,
    owner: &str,
    o: &DeliveryOutcome,
    now_ms: i64,
) -> Result<(), StoreError> {
    let (state, next_at, error) = match &o.result {
        DeliveryResult::Delivered => ("delivered", None, None),
        DeliveryResult::Retry { next_at, error } => ("pending", Some(*next_at), Some(error)),
        DeliveryResult::Failed { error } => ("failed", None, Some(error)),
        DeliveryResult::Released => {
            // Never started: due again at once, the claimed attempt taken back, the last
            // attempt's status and error left as they were.
            sqlx::query(
                "UPDATE webhook_deliveries SET state = 'pending', next_at = ?3, \
                   attempts = MAX(attempts - 1, 0), lease_owner = NULL, lease_until = 0, \
                   updated_at = ?3 \
                 WHERE seq = ?1 AND lease_owner = ?2 AND state = 'sending'",
            )
            .bind(o.seq)
            .bind(owner)
            .bind(now_ms)
            .execute(&mut *conn)
            .await?;
            return Ok(());
        }
    };
    let error = error.map(String::as_str);
    // Only under our own lease: another process may have taken the delivery over after it ran
    // out, and its attempt is the one that counts.
    let attempt: Option<i64> = sqlx::query_scalar(
        "UPDATE webhook_deliveries SET state = ?3, next_at = COALESCE(?4, next_at), \
           last_status = ?5, last_error = ?6, lease_owner = NULL, lease_until = 0, \
           updated_at = ?7 \
         WHERE seq = ?1 AND lease_owner = ?2 AND state = 'sending' \
         RETURNING attempts",
    )
    .bind(o.seq)
    .bind(owner)
    .bind(state)
    .bind(next_at)
    .bind(o.status)
    .bind(error)
    .bind(now_ms)
    .fetch_optional(&mut *conn)
    .await?;
    if let Some(attempt) = attempt {
        sqlx::query(
            "INSERT INTO webhook_attempts (delivery_seq, attempt, at, duration_ms, status, error) \
             VALUES (?1, ?2, ?3, ?4, ?5, ?6) ON CONFLICT (delivery_seq, attempt) DO NOTHING",
        )
        .bind(o.seq)
        .bind(attempt)
        .bind(o.at)
        .bind(o.duration_ms)
        .bind(o.status)
        .bind(error)
        .execute(&mut *conn)
        .await?;
    }
    Ok(())
}
