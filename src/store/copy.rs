//! `huixin store copy`: moves an installation from its SQLite file to PostgreSQL, every table
//! but the live `processes`, keeping ids, so that servers started on the copy carry on where
//! the SQLite ones stopped.
//!
//! The source is brought up to date by [`Store::open`] (its migrations), then read through a
//! read-only pool of its own, in one read transaction: every table comes from the same
//! snapshot, even while a server still writes. The target gets PostgreSQL's migrations (the
//! same files the PostgreSQL backend embeds), and each table is copied in one transaction of
//! its own, in chunks of [`CHUNK`] rows, each chunk one `INSERT … SELECT FROM UNNEST(…)` with
//! `ON CONFLICT (primary key) DO NOTHING`: a row already there is kept as it is, so a second
//! run (after a failure half-way, say) copies what is missing and changes nothing else.
//! Identity sequences are then set past the copied ids. A target that holds other rows under
//! the copied ids (servers already ran on it) is refused ([`Same`]).
//!
//! What a process of the old installation held is let go: the access token's refresh lease,
//! and webhook deliveries being sent (pending again in the target). A push recipient being
//! sent keeps its lease, which runs out (see `push_recipients` in [`TABLES`]).

use std::str::FromStr;
use std::time::Duration;

use futures_util::TryStreamExt;
use sqlx::postgres::{PgConnectOptions, PgConnection, PgPool, PgPoolOptions};
use sqlx::sqlite::{SqliteConnectOptions, SqliteConnection, SqlitePoolOptions, SqliteRow};
use sqlx::{ConnectOptions, Connection, Row};

use super::{Store, StoreError, peers};

/// Rows per INSERT (one array per column, so any number fits in one statement).
pub const CHUNK: usize = 1000;

/// The source's tables that are not copied: the processes serving from it (they are alive
/// only where they run), the shared rate-limit buckets (they fill up again within a minute),
/// the console's sessions and login links (an operator signs in again after the move), and
/// sqlx's record of migrations (the target has its own).
pub const LEFT_OUT: [&str; 5] = [
    "processes",
    "rate_limits",
    "admin_sessions",
    "admin_links",
    "_sqlx_migrations",
];

/// How a column's values travel.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    /// TEXT on both sides.
    Text,
    /// INTEGER in SQLite, BIGINT in PostgreSQL.
    Int,
    /// 0 or 1 in SQLite, BOOLEAN in PostgreSQL.
    Bool,
}

/// A column of a copied table.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Column {
    /// Its name in PostgreSQL.
    pub name: &'static str,
    /// How its values travel.
    pub kind: Kind,
    /// What SQLite reads for it: the column of the same name, or another expression.
    pub source: &'static str,
}

/// A column of the same name on both sides.
const fn col(name: &'static str, kind: Kind) -> Column {
    Column {
        name,
        kind,
        source: name,
    }
}

/// A column read from another SQLite expression.
const fn from(name: &'static str, kind: Kind, source: &'static str) -> Column {
    Column { name, kind, source }
}

/// A copied table.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Table {
    /// Its name (the same on both sides).
    pub name: &'static str,
    /// Its primary key's columns, comma-separated: the `ON CONFLICT` target.
    pub key: &'static str,
    /// Every column the PostgreSQL table has.
    pub columns: &'static [Column],
    /// For a table whose key is an id handed out in order, which other rows refer to: how a
    /// row the target already has under a copied id is told to be the copied one (see
    /// [`Same`]).
    pub same: Option<Same>,
}

/// What a row the target already has under a copied id must share with the copied row: a
/// second run finds its own rows, but a target another installation wrote to has other rows
/// under the same ids, and keeping them as "already there" would hand them the copied rows
/// that refer to their ids (a push's recipients, an app's bindings and deliveries). The copy
/// stops instead.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Same {
    /// What one row is called in the message (`push`).
    pub row: &'static str,
    /// The columns (besides the key) that must be equal.
    pub columns: &'static [&'static str],
}

use Kind::{Bool, Int, Text};

/// The copied tables, parents before the tables that refer to them.
pub const TABLES: &[Table] = &[
    Table {
        name: "huixin_meta",
        key: "key",
        columns: &[col("key", Text), col("value", Text), col("updated_at", Int)],
        same: None,
    },
    Table {
        name: "followers",
        key: "openid",
        columns: &[
            col("openid", Text),
            col("subscribed", Bool),
            col("first_subscribed_at", Int),
            col("last_subscribed_at", Int),
            col("unsubscribed_at", Int),
            col("scene", Text),
            col("last_seen_at", Int),
        ],
        same: None,
    },
    Table {
        name: "sessions",
        key: "openid, key",
        columns: &[
            col("openid", Text),
            col("key", Text),
            col("value", Text),
            col("expires_at", Int),
            col("updated_at", Int),
        ],
        same: None,
    },
    Table {
        name: "blocked_users",
        key: "openid",
        columns: &[
            col("openid", Text),
            col("reason", Text),
            col("created_at", Int),
        ],
        same: None,
    },
    Table {
        name: "access_tokens",
        key: "app_id",
        columns: &[
            col("app_id", Text),
            col("token", Text),
            col("expires_at", Int),
            col("refresh_after", Int),
            col("fetched_at", Int),
            col("version", Int),
            // A refresh lease belongs to a process of the old installation: cleared, so the
            // new one's first process need not wait for it to run out.
            from("lease_owner", Text, "NULL"),
            from("lease_until", Int, "0"),
        ],
        same: None,
    },
    Table {
        name: "apps",
        key: "id",
        columns: &[
            col("id", Int),
            col("name", Text),
            col("callback_url", Text),
            col("callback_format", Text),
            col("replies", Bool),
            col("secret", Text),
            col("return_url", Text),
            col("created_at", Int),
            col("revoked_at", Int),
        ],
        same: Some(Same {
            row: "app",
            columns: &["name", "created_at"],
        }),
    },
    Table {
        name: "topics",
        key: "name",
        columns: &[
            col("name", Text),
            col("open", Bool),
            col("description", Text),
            col("created_at", Int),
            col("app_id", Int),
        ],
        same: None,
    },
    Table {
        name: "topic_members",
        key: "topic, openid",
        columns: &[
            col("topic", Text),
            col("openid", Text),
            col("joined_at", Int),
            // The rowid numbers a member's client_msg_id in topic pushes; PostgreSQL keeps it
            // in an identity column.
            from("id", Int, "rowid"),
        ],
        same: None,
    },
    Table {
        name: "topic_numbers",
        key: "num",
        columns: &[col("num", Int), col("name", Text)],
        same: Some(Same {
            row: "topic number",
            columns: &["name"],
        }),
    },
    Table {
        name: "push_keys",
        key: "key_hash",
        columns: &[
            col("key_hash", Text),
            col("key_prefix", Text),
            col("kind", Text),
            col("target", Text),
            col("label", Text),
            col("created_at", Int),
            col("revoked_at", Int),
            // Orders keys made in the same second, as the rowid does in SQLite.
            from("id", Int, "rowid"),
        ],
        same: None,
    },
    Table {
        name: "pushes",
        key: "seq",
        columns: &[
            col("seq", Int),
            col("id", Text),
            col("key_hash", Text),
            col("target", Text),
            col("title", Text),
            col("body", Text),
            col("url", Text),
            col("summary", Text),
            col("source", Text),
            col("created_at", Int),
        ],
        same: Some(Same {
            row: "push",
            columns: &["id"],
        }),
    },
    Table {
        name: "push_recipients",
        key: "push_seq, openid",
        columns: &[
            col("push_seq", Int),
            col("openid", Text),
            col("client_msg_id", Text),
            col("state", Text),
            col("attempts", Int),
            col("next_at", Int),
            // A recipient being sent keeps its lease: it runs out, and a new process takes the
            // recipient over as it would from a process that died.
            col("lease_owner", Text),
            col("lease_until", Int),
            col("msgid", Int),
            col("error", Text),
            col("updated_at", Int),
        ],
        same: None,
    },
    Table {
        name: "bind_codes",
        key: "id",
        columns: &[
            col("id", Text),
            col("app_id", Int),
            col("uid", Text),
            col("extra", Text),
            col("return_url", Text),
            col("ticket", Text),
            col("qr_content", Text),
            col("created_at", Int),
            col("expires_at", Int),
            col("used_at", Int),
            col("used_by", Text),
            col("used_uid", Text),
        ],
        same: None,
    },
    Table {
        name: "bindings",
        key: "seq",
        columns: &[
            col("seq", Int),
            col("app_id", Int),
            col("uid", Text),
            col("openid", Text),
            col("extra", Text),
            col("source", Text),
            col("state", Text),
            col("blocked", Bool),
            col("created_at", Int),
            col("updated_at", Int),
        ],
        same: Some(Same {
            row: "binding",
            columns: &["app_id", "uid"],
        }),
    },
    Table {
        name: "webhook_deliveries",
        key: "seq",
        columns: &[
            col("seq", Int),
            col("id", Text),
            col("app_id", Int),
            col("endpoint", Text),
            col("url", Text),
            col("event", Text),
            col("ordering", Text),
            col("body", Text),
            // A delivery being sent belongs to a process of the old installation: it is
            // pending again, its lease cleared, so the new installation's first process sends
            // it at once (its receiver may get it twice, as after any crash: the delivery id
            // tells it so). Its attempt stays counted: it may have reached the receiver.
            from(
                "state",
                Text,
                "CASE state WHEN 'sending' THEN 'pending' ELSE state END",
            ),
            col("attempts", Int),
            col("next_at", Int),
            from("lease_owner", Text, "NULL"),
            from("lease_until", Int, "0"),
            col("last_status", Int),
            col("last_error", Text),
            col("created_at", Int),
            col("updated_at", Int),
        ],
        same: Some(Same {
            row: "webhook delivery",
            columns: &["id"],
        }),
    },
    Table {
        name: "webhook_attempts",
        key: "delivery_seq, attempt",
        columns: &[
            col("delivery_seq", Int),
            col("attempt", Int),
            col("at", Int),
            col("duration_ms", Int),
            col("status", Int),
            col("error", Text),
        ],
        same: None,
    },
    Table {
        name: "dedup",
        key: "key",
        columns: &[
            col("key", Text),
            col("owner", Text),
            col("state", Text),
            col("reply", Text),
            col("reply_time", Int),
            col("updated_at", Int),
        ],
        same: None,
    },
    Table {
        name: "replay_guard",
        key: "timestamp, nonce",
        columns: &[
            col("timestamp", Text),
            col("nonce", Text),
            col("request_hash", Text),
            col("expires_at", Int),
        ],
        same: None,
    },
    Table {
        name: "inbound_log",
        key: "id",
        columns: &[
            col("id", Int),
            col("received_at", Int),
            col("openid", Text),
            col("msg_type", Text),
            col("event", Text),
            col("msg_id", Text),
            col("summary", Text),
            col("reply_type", Text),
            col("outcome", Text),
            col("rule", Text),
            col("latency_ms", Int),
            col("reply", Text),
        ],
        same: None,
    },
    Table {
        name: "log_counts",
        key: "hour, dim, key",
        columns: &[
            col("hour", Int),
            col("dim", Text),
            col("key", Text),
            col("n", Int),
        ],
        same: None,
    },
];

/// The copied tables SQLite keeps without a rowid (clustered by their primary key): read in
/// the key's order.
const WITHOUT_ROWID: [&str; 1] = ["log_counts"];

/// The identity columns, (table, column): their sequences are set past the copied ids.
pub const IDENTITIES: [(&str, &str); 8] = [
    ("inbound_log", "id"),
    ("pushes", "seq"),
    ("topic_members", "id"),
    ("push_keys", "id"),
    ("apps", "id"),
    ("topic_numbers", "num"),
    ("bindings", "seq"),
    ("webhook_deliveries", "seq"),
];

/// What was copied of one table.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Copied {
    /// The table.
    pub table: &'static str,
    /// Rows read from the source.
    pub read: u64,
    /// Rows the target did not have, inserted.
    pub inserted: u64,
}

impl Copied {
    /// Rows the target had already (kept as they were).
    pub fn already_there(&self) -> u64 {
        self.read.saturating_sub(self.inserted)
    }
}

/// What [`copy`] did.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Summary {
    /// Each table, in the order copied.
    pub tables: Vec<Copied>,
    /// huixin processes that were serving from the source during the copy (they beat in its
    /// `processes` table within the last [`peers::STALE_AFTER`]): what they write after the
    /// copy's snapshot is not in the target.
    pub serving: u64,
}

impl Summary {
    /// Rows read, in all.
    pub fn read(&self) -> u64 {
        self.tables.iter().map(|t| t.read).sum()
    }

    /// Rows inserted, in all.
    pub fn inserted(&self) -> u64 {
        self.tables.iter().map(|t| t.inserted).sum()
    }

    /// Rows already there, in all.
    pub fn already_there(&self) -> u64 {
        self.tables.iter().map(Copied::already_there).sum()
    }
}

/// Copies the huixin database at `from` (`sqlite:`) into the one at `to` (`postgres:` or
/// `postgresql:`; the database must exist, its tables are created). Rows the target already
/// has (by primary key) are kept as they are.
pub async fn copy(from: &str, to: &str) -> Result<Summary, StoreError> {
    let source = source_options(from)?;
    let target = target_options(to)?;
    check_source(from, &source).await?;
    // Brings the source's schema up to date, as a server starting on it would.
    let store = Store::open(from).await?;
    let pg = connect_target(to, target).await?;
    let summary = copy_tables(from, source, &pg).await;
    pg.close().await;
    drop(store);
    summary
}

fn fail(message: String) -> StoreError {
    StoreError::Copy(message)
}

/// The source's read-only connection options; refuses anything but an SQLite file.
fn source_options(from: &str) -> Result<SqliteConnectOptions, StoreError> {
    if from.starts_with("postgres:") || from.starts_with("postgresql:") {
        return Err(fail(format!(
            "huixin copies from SQLite to PostgreSQL only: the source {} is PostgreSQL",
            redacted(from)
        )));
    }
    if !from.starts_with("sqlite:") {
        return Err(fail(format!(
            "the source {} is not an SQLite URL (sqlite://PATH)",
            redacted(from)
        )));
    }
    if from.contains(":memory:") || from.contains("mode=memory") {
        return Err(fail(format!(
            "the source {from} is an in-memory database: there is nothing to copy"
        )));
    }
    SqliteConnectOptions::from_str(from)
        // Reading a whole table is slow by sqlx's measure, and expected.
        .map(|o| o.read_only(true).disable_statement_logging())
        .map_err(|e| fail(format!("the source {from} is not an SQLite URL: {e}")))
}

/// The target's connection options; refuses anything but PostgreSQL.
fn target_options(to: &str) -> Result<PgConnectOptions, StoreError> {
    if !(to.starts_with("postgres:") || to.starts_with("postgresql:")) {
        return Err(fail(format!(
            "huixin copies from SQLite to PostgreSQL only: the target {} is not a PostgreSQL \
             URL (postgres://USER@HOST/DATABASE)",
            redacted(to)
        )));
    }
    PgConnectOptions::from_str(to).map_err(|e| {
        fail(format!(
            "the target {} is not a PostgreSQL URL: {e}",
            redacted(to)
        ))
    })
}

/// Refuses a source that does not exist (opening it would create an empty one) or is not a
/// huixin database (migrating it would add huixin's tables to someone else's file).
async fn check_source(from: &str, options: &SqliteConnectOptions) -> Result<(), StoreError> {
    let path = options.get_filename();
    if !path.exists() {
        return Err(fail(format!(
            "the source {} does not exist",
            path.display()
        )));
    }
    let not_huixin = |why: String| {
        fail(format!(
            "the source {} is not a huixin database: {why}",
            path.display()
        ))
    };
    let mut conn = SqliteConnection::connect_with(options)
        .await
        .map_err(|e| fail(format!("cannot open the source {from}: {e}")))?;
    let found: Result<i64, sqlx::Error> = sqlx::query_scalar(
        "SELECT count(*) FROM sqlite_master WHERE type = 'table' \
         AND name IN ('_sqlx_migrations', 'huixin_meta')",
    )
    .fetch_one(&mut conn)
    .await;
    let _ = conn.close().await;
    match found {
        Ok(2) => Ok(()),
        Ok(_) => Err(not_huixin("it has no huixin tables".into())),
        Err(e) => Err(not_huixin(e.to_string())),
    }
}

/// How long connecting to the target may take.
const CONNECT_WAIT: Duration = Duration::from_secs(10);

/// A pool on the target, migrated.
async fn connect_target(to: &str, options: PgConnectOptions) -> Result<PgPool, StoreError> {
    let unreachable = |why: String| {
        fail(format!(
            "cannot connect to the target {}: {why}",
            redacted(to)
        ))
    };
    // PostgreSQL's notices (a migration's "already exists, skipping") are no news here.
    let options = options
        .options([("client_min_messages", "warning")])
        .disable_statement_logging();
    // One connection first: the pool would only say it timed out, not why.
    match tokio::time::timeout(CONNECT_WAIT, PgConnection::connect_with(&options)).await {
        Ok(Ok(probe)) => {
            let _ = probe.close().await;
        }
        Ok(Err(e)) => {
            let missing = e
                .as_database_error()
                .is_some_and(|d| d.code().as_deref() == Some("3D000"));
            return Err(unreachable(if missing {
                format!("{e} (create it first: createdb, or CREATE DATABASE)")
            } else {
                e.to_string()
            }));
        }
        Err(_) => return Err(unreachable(format!("no answer within {CONNECT_WAIT:?}"))),
    }
    let pg = PgPoolOptions::new()
        .max_connections(1)
        .acquire_timeout(CONNECT_WAIT)
        .connect_with(options)
        .await
        .map_err(|e| unreachable(e.to_string()))?;
    if let Err(e) = super::schema::POSTGRES.run(&pg).await {
        pg.close().await;
        return Err(fail(format!(
            "cannot create huixin's tables in the target {}: {e}",
            redacted(to)
        )));
    }
    Ok(pg)
}

/// Copies every table from one snapshot of the source, then sets the identity sequences.
async fn copy_tables(
    from: &str,
    source: SqliteConnectOptions,
    pg: &PgPool,
) -> Result<Summary, StoreError> {
    let sqlite = SqlitePoolOptions::new()
        .max_connections(1)
        .connect_with(source)
        .await
        .map_err(|e| fail(format!("cannot open the source {from}: {e}")))?;
    let mut conn = sqlite.acquire().await?;
    // One read transaction: every table from the same snapshot (WAL lets a server keep
    // writing meanwhile).
    let mut snapshot = conn.begin().await?;
    let stale = i64::try_from(peers::STALE_AFTER.as_millis()).unwrap_or(i64::MAX);
    let serving: i64 = sqlx::query_scalar("SELECT count(*) FROM processes WHERE beat_ms >= ?1")
        .bind(super::unix_millis() - stale)
        .fetch_one(&mut *snapshot)
        .await?;
    let mut summary = Summary {
        tables: Vec::with_capacity(TABLES.len()),
        serving: u64::try_from(serving).unwrap_or(0),
    };
    for table in TABLES {
        let copied = copy_table(&mut snapshot, pg, table)
            .await
            .map_err(|e| fail(format!("copying {}: {e}", table.name)))?;
        tracing::debug!(
            table = table.name,
            read = copied.read,
            inserted = copied.inserted,
            "copied"
        );
        summary.tables.push(copied);
    }
    snapshot.rollback().await?;
    drop(conn);
    sqlite.close().await;
    for (table, column) in IDENTITIES {
        set_sequence(pg, table, column)
            .await
            .map_err(|e| fail(format!("setting the sequence of {table}.{column}: {e}")))?;
    }
    Ok(summary)
}

/// One column's values of a chunk.
enum Values {
    Text(Vec<Option<String>>),
    Int(Vec<Option<i64>>),
    Bool(Vec<Option<bool>>),
}

impl Values {
    fn of(kind: Kind) -> Self {
        match kind {
            Kind::Text => Self::Text(Vec::with_capacity(CHUNK)),
            Kind::Int => Self::Int(Vec::with_capacity(CHUNK)),
            Kind::Bool => Self::Bool(Vec::with_capacity(CHUNK)),
        }
    }

    /// Appends column `index` of `row`.
    fn push(&mut self, row: &SqliteRow, index: usize) -> Result<(), sqlx::Error> {
        match self {
            Self::Text(v) => v.push(row.try_get(index)?),
            Self::Int(v) => v.push(row.try_get(index)?),
            // SQLite keeps booleans as integers.
            Self::Bool(v) => v.push(row.try_get::<Option<i64>, _>(index)?.map(|n| n != 0)),
        }
        Ok(())
    }

    fn len(&self) -> usize {
        match self {
            Self::Text(v) => v.len(),
            Self::Int(v) => v.len(),
            Self::Bool(v) => v.len(),
        }
    }

    /// The values so far, leaving the column empty.
    fn take(&mut self) -> Self {
        match self {
            Self::Text(v) => Self::Text(std::mem::replace(v, Vec::with_capacity(CHUNK))),
            Self::Int(v) => Self::Int(std::mem::replace(v, Vec::with_capacity(CHUNK))),
            Self::Bool(v) => Self::Bool(std::mem::replace(v, Vec::with_capacity(CHUNK))),
        }
    }
}

/// Copies one table in one target transaction.
async fn copy_table(
    source: &mut SqliteConnection,
    pg: &PgPool,
    table: &Table,
) -> Result<Copied, StoreError> {
    let order = if WITHOUT_ROWID.contains(&table.name) {
        table.key
    } else {
        "rowid"
    };
    let select = format!(
        "SELECT {} FROM {} ORDER BY {order}",
        table
            .columns
            .iter()
            .map(|c| c.source)
            .collect::<Vec<_>>()
            .join(", "),
        table.name
    );
    let insert = insert_statement(table);
    let mut copied = Copied {
        table: table.name,
        read: 0,
        inserted: 0,
    };
    let mut columns: Vec<Values> = table.columns.iter().map(|c| Values::of(c.kind)).collect();
    let mut tx = pg.begin().await?;
    let mut rows = sqlx::query(sqlx::AssertSqlSafe(select)).fetch(&mut *source);
    loop {
        let row = rows.try_next().await?;
        if let Some(row) = &row {
            for (index, values) in columns.iter_mut().enumerate() {
                values.push(row, index)?;
            }
        }
        let pending = columns.first().map_or(0, Values::len);
        if pending == CHUNK || (row.is_none() && pending > 0) {
            let chunk: Vec<Values> = columns.iter_mut().map(Values::take).collect();
            if let Some(same) = &table.same {
                check_same(&mut tx, table, same, &chunk).await?;
            }
            let mut query = sqlx::query(sqlx::AssertSqlSafe(insert.clone()));
            for values in chunk {
                query = match values {
                    Values::Text(v) => query.bind(v),
                    Values::Int(v) => query.bind(v),
                    Values::Bool(v) => query.bind(v),
                };
            }
            copied.read += pending as u64;
            copied.inserted += query.execute(&mut *tx).await?.rows_affected();
        }
        if row.is_none() {
            break;
        }
    }
    drop(rows);
    tx.commit().await?;
    Ok(copied)
}

/// `INSERT INTO t (a, b) SELECT * FROM UNNEST($1::text[], $2::bigint[]) ON CONFLICT (key) DO
/// NOTHING`: one statement for any number of rows.
fn insert_statement(table: &Table) -> String {
    let names: Vec<&str> = table.columns.iter().map(|c| c.name).collect();
    let arrays: Vec<String> = table
        .columns
        .iter()
        .enumerate()
        .map(|(i, c)| {
            let ty = match c.kind {
                Kind::Text => "text",
                Kind::Int => "bigint",
                Kind::Bool => "boolean",
            };
            format!("${}::{ty}[]", i + 1)
        })
        .collect();
    format!(
        "INSERT INTO {} ({}) SELECT * FROM UNNEST({}) ON CONFLICT ({}) DO NOTHING",
        table.name,
        names.join(", "),
        arrays.join(", "),
        table.key
    )
}

/// Refuses rows whose id the target gives another row (see [`Same`]).
async fn check_same(
    tx: &mut sqlx::PgConnection,
    table: &Table,
    same: &Same,
    chunk: &[Values],
) -> Result<(), StoreError> {
    // The key and the columns compared, as arrays of the chunk's values.
    let mut names = vec![table.key];
    names.extend_from_slice(same.columns);
    let mut arrays = Vec::with_capacity(names.len());
    let mut values = Vec::with_capacity(names.len());
    for (i, name) in names.iter().enumerate() {
        let Some(index) = table.columns.iter().position(|c| c.name == *name) else {
            return Err(fail(format!("{}: no column {name} to compare", table.name)));
        };
        let ty = match table.columns[index].kind {
            Kind::Text => "text",
            Kind::Int => "bigint",
            Kind::Bool => "boolean",
        };
        arrays.push(format!("${}::{ty}[]", i + 1));
        values.push(&chunk[index]);
    }
    let compared = |alias: &str| {
        same.columns
            .iter()
            .map(|c| format!("{alias}.{c}"))
            .collect::<Vec<_>>()
            .join(", ")
    };
    let statement = format!(
        "SELECT t.{key}::text FROM {table} t JOIN UNNEST({arrays}) AS c ({names}) \
         ON t.{key} = c.{key} WHERE ({t}) IS DISTINCT FROM ({c}) LIMIT 1",
        key = table.key,
        table = table.name,
        arrays = arrays.join(", "),
        names = names.join(", "),
        t = compared("t"),
        c = compared("c"),
    );
    let mut query = sqlx::query_scalar::<_, String>(sqlx::AssertSqlSafe(statement));
    for v in values {
        query = match v {
            Values::Text(v) => query.bind(v),
            Values::Int(v) => query.bind(v),
            Values::Bool(v) => query.bind(v),
        };
    }
    match query.fetch_optional(&mut *tx).await? {
        Some(id) => Err(fail(format!(
            "the target already holds another {} with {} {id}: copy into a new database",
            same.row, table.key
        ))),
        None => Ok(()),
    }
}

/// Sets the sequence of `table.column` past the highest id in the table and the highest the
/// sequence gave out, so that the next insert takes a fresh one (and an empty table starts
/// at 1).
async fn set_sequence(pg: &PgPool, table: &str, column: &str) -> Result<(), sqlx::Error> {
    let statement = format!(
        "SELECT setval(seq, COALESCE(high, 1), high IS NOT NULL) FROM ( \
             SELECT pg_get_serial_sequence('{table}', '{column}') AS seq \
         ) s, LATERAL ( \
             SELECT GREATEST( \
                 (SELECT max({column}) FROM {table}), \
                 (SELECT last_value FROM pg_sequences \
                  WHERE format('%I.%I', schemaname, sequencename) = s.seq) \
             ) AS high \
         ) h"
    );
    sqlx::query(sqlx::AssertSqlSafe(statement))
        .execute(pg)
        .await?;
    Ok(())
}

/// `url` with any password replaced by `***`, for messages.
pub fn redacted(url: &str) -> String {
    let Ok(mut parsed) = reqwest::Url::parse(url) else {
        // Unparsable: show no more than the scheme, in case it holds a password.
        return match url.split_once(':') {
            Some((scheme, _)) => format!("{scheme}:…"),
            None => "…".into(),
        };
    };
    if parsed.password().is_some() {
        let _ = parsed.set_password(Some("***"));
    }
    if parsed.query_pairs().any(|(k, _)| k.contains("password")) {
        let pairs: Vec<(String, String)> = parsed
            .query_pairs()
            .map(|(k, v)| {
                let v = if k.contains("password") {
                    "***".to_owned()
                } else {
                    v.into_owned()
                };
                (k.into_owned(), v)
            })
            .collect();
        parsed.query_pairs_mut().clear().extend_pairs(pairs);
    }
    parsed.to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn redacted_hides_passwords() {
        assert_eq!(
            redacted("postgres://huixin:s3cret@db.example:5432/huixin?sslmode=require"),
            "postgres://huixin:***@db.example:5432/huixin?sslmode=require"
        );
        assert_eq!(
            redacted("postgres://huixin@db/huixin?password=s3cret&sslmode=disable"),
            "postgres://huixin@db/huixin?password=***&sslmode=disable"
        );
        assert_eq!(
            redacted("postgres://huixin@db/huixin"),
            "postgres://huixin@db/huixin"
        );
        assert!(!redacted("postgres://u:s3cret@[bad").contains("s3cret"));
    }

    #[test]
    fn rows_under_copied_ids_are_compared_by_columns_they_have() {
        for table in TABLES {
            let Some(same) = table.same else { continue };
            assert!(
                !table.key.contains(','),
                "{}: a key of one column",
                table.name
            );
            for name in same.columns.iter().chain([&table.key]) {
                assert!(
                    table.columns.iter().any(|c| c.name == *name),
                    "{}.{name}",
                    table.name
                );
            }
        }
    }

    #[test]
    fn statements_name_every_column() {
        assert_eq!(
            insert_statement(&TABLES[0]),
            "INSERT INTO huixin_meta (key, value, updated_at) SELECT * FROM \
             UNNEST($1::text[], $2::text[], $3::bigint[]) ON CONFLICT (key) DO NOTHING"
        );
        for (table, column) in IDENTITIES {
            let t = TABLES.iter().find(|t| t.name == table).expect("copied");
            assert!(
                t.columns
                    .iter()
                    .any(|c| c.name == column && c.kind == Kind::Int)
            );
        }
    }
}
