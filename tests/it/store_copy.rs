//! `huixin store copy --from sqlite://… --to postgres://…`: an SQLite store with rows in every
//! table, written through the public API, copied by the real binary into a fresh PostgreSQL
//! database and checked row for row; a second run copies nothing; the schema coverage of the
//! copy; and the mistakes an operator can make (wrong direction, missing or foreign source,
//! unreachable target), each a clear message and a non-zero exit.
//!
//! The tests that need PostgreSQL say they are skipped without one (see `common::pg`).

use crate::common;

use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;
use std::process::Output;

use huixin::store::apps::{
    BindCode, DeliveryOutcome, DeliveryResult, NewApp, NewBinding, NewDelivery,
};
use huixin::store::copy::{LEFT_OUT, TABLES};
use huixin::store::push::{Attempt, KeyRow, NewPush, Outcome};
use huixin::store::{
    DedupRecord, DedupState, Deferred, LogEntry, NewToken, ReplayRecord, SessionChange, Store,
};
use sqlx::postgres::PgPool;
use sqlx::sqlite::{SqliteConnectOptions, SqlitePool};

use common::process::{huixin, stderr, stdout};

/// Unix seconds all the rows are written at (or near).
const T: i64 = 1_700_000_000;
/// Log rows: more than two chunks of the copy's 1,000.
const LOG_ROWS: usize = 2_345;
/// The access token and the key hashes: never printed.
const ACCESS_TOKEN: &str = "ACCESS_TOKEN_never_printed_9f8e7d";
/// An app's webhook signing secret: never printed either.
const APP_SECRET: &str = "whsec_never_printed_5a4b3c";
/// The key hashes (see [`key_hash`]) of the push keys, then of the apps' tokens.
const KEYS: [u8; 5] = [0, 1, 2, 5, 6];

/// `huixin store copy --from FROM --to TO` in `dir`, off the async runtime.
async fn run_copy(dir: &Path, from: &str, to: &str) -> Output {
    let (dir, from, to) = (dir.to_owned(), from.to_owned(), to.to_owned());
    tokio::task::spawn_blocking(move || {
        huixin(&dir, &["store", "copy", "--from", &from, "--to", &to], &[])
    })
    .await
    .expect("huixin ran")
}

/// The summary's lines, by table: (read, copied, already there).
fn summary(out: &Output) -> BTreeMap<String, (u64, u64, u64)> {
    let text = stdout(out);
    let mut tables = BTreeMap::new();
    for line in text.lines() {
        let words: Vec<&str> = line.split_whitespace().collect();
        if let [
            name,
            read,
            "read",
            copied,
            "copied",
            there,
            "already",
            "there",
        ] = words[..]
        {
            let n = |s: &str| {
                s.parse::<u64>()
                    .unwrap_or_else(|_| panic!("a count: {line}"))
            };
            tables.insert(name.to_owned(), (n(read), n(copied), n(there)));
        }
    }
    tables
}

fn key_hash(n: u8) -> String {
    format!("{:02x}", 0xa0 + n).repeat(32)
}

/// Writes rows into every table of `store`, as a server would. Returns the generated callback
/// token (a secret, like the access token and the key hashes).
async fn fill(store: &Store) -> String {
    let b = store.backend();
    let (callback_token, created) = store.generated_token_or_create().await.unwrap();
    assert!(created);
    b.meta_set("some_setting", "值 with unicode").await.unwrap();

    for i in 0..30 {
        let openid = format!("o_user_{i:02}");
        let scene = (i % 3 == 0).then(|| format!("qrscene_{i}"));
        b.follower_subscribed(&openid, T + i, scene.as_deref())
            .await
            .unwrap();
        if i % 5 == 0 {
            b.follower_unsubscribed(&openid, T + 100 + i).await.unwrap();
        }
    }
    for i in 0..12 {
        let changes = [
            SessionChange::Set {
                key: "step".into(),
                value: format!("{{\"n\":{i}}}"),
                expires_at: (i % 2 == 0).then_some(T + 3_600),
            },
            SessionChange::Set {
                key: "lang".into(),
                value: "\"zh\"".into(),
                expires_at: None,
            },
        ];
        b.session_apply(&format!("o_user_{i:02}"), &changes, T)
            .await
            .unwrap();
    }

    let mut batch: Vec<Deferred> = (0..LOG_ROWS)
        .map(|i| {
            Deferred::Log(LogEntry {
                received_at: T + i as i64,
                openid: format!("o_user_{:02}", i % 30),
                msg_type: if i % 7 == 0 { "event" } else { "text" }.into(),
                event: (i % 7 == 0).then(|| "subscribe".into()),
                msg_id: (i % 7 != 0).then(|| format!("{}", 24_000_000_000_000_000u64 + i as u64)),
                summary: (i % 7 != 0).then(|| format!("hello {i} 你好")),
                reply_type: "text".into(),
                outcome: "answered".into(),
                rule: (i % 7 != 0).then(|| format!("rules/{}.rhai:{}", i % 3, i % 11)),
                latency_ms: (i % 5 != 0).then_some(i as i64 % 40),
                reply: (i % 7 != 0).then(|| format!("reply {i} 回复")),
            })
        })
        .collect();
    batch.push(Deferred::Dedup(DedupRecord {
        key: "msg:1:o_user_01".into(),
        owner: "1234-abcdef".into(),
        state: DedupState::Answered,
        reply: Some("{\"text\":\"hi\"}".into()),
        reply_time: Some(T + 1),
        updated_at: T + 1,
    }));
    batch.push(Deferred::Dedup(DedupRecord {
        key: "msg:2:o_user_02".into(),
        owner: "1234-abcdef".into(),
        state: DedupState::Running,
        reply: None,
        reply_time: None,
        updated_at: T + 2,
    }));
    for i in 0..4 {
        batch.push(Deferred::Replay(ReplayRecord {
            timestamp: format!("{}", T + i),
            nonce: format!("nonce{i}"),
            request_hash: format!("{:040x}", i + 1),
            expires_at: T + 300 + i,
        }));
    }
    for i in 0..30 {
        batch.push(Deferred::Seen {
            openid: format!("o_user_{i:02}"),
            at: T + 500 + i,
        });
    }
    b.write_batch(&batch).await.unwrap();

    b.block_user("o_user_07", "spam", T + 7).await.unwrap();
    b.block_user("o_user_08", "", T + 8).await.unwrap();

    // A token, and a refresh lease a process of the old installation still holds.
    assert!(
        b.token_try_lease("wxapp", "old-1", 0, T, T + 60)
            .await
            .unwrap()
    );
    let token = NewToken {
        token: ACCESS_TOKEN,
        expires_at: T + 7_200,
        refresh_after: T + 6_000,
        fetched_at: T,
    };
    assert!(b.token_store("wxapp", "old-1", &token).await.unwrap());
    assert!(
        b.token_try_lease("wxapp", "old-2", 1, T + 10, T + 70)
            .await
            .unwrap()
    );

    assert!(b.topic_create("news", true, "每日新闻", T).await.unwrap());
    assert!(b.topic_create("ops", false, "", T).await.unwrap());
    for i in 0..10 {
        b.topic_join("news", &format!("o_user_{i:02}"), T + i)
            .await
            .unwrap();
    }
    for i in 0..4 {
        b.topic_join("ops", &format!("o_user_{i:02}"), T + 20 + i)
            .await
            .unwrap();
    }
    // Gaps in the rowids, which the copy keeps.
    assert!(b.topic_leave("news", "o_user_03").await.unwrap());
    assert!(b.topic_leave("ops", "o_user_03").await.unwrap());

    for (n, (kind, target)) in [("user", "o_user_01"), ("topic", "news"), ("admin", "")]
        .into_iter()
        .enumerate()
    {
        let n = n as u8;
        b.key_insert(&KeyRow {
            key_hash: key_hash(n),
            key_prefix: format!("k{n}abcd"),
            kind: kind.into(),
            target: target.into(),
            label: format!("{kind} key"),
            // Made in the same second: only their ids order them.
            created_at: T,
            revoked_at: None,
        })
        .await
        .unwrap();
    }
    assert_eq!(b.key_revoke_hash(&key_hash(0), T + 50).await.unwrap(), 1);

    let recipients: Vec<String> = (0..5).map(|i| format!("o_user_{i:02}")).collect();
    let hash = key_hash(2);
    for (i, id) in ["pAAAA1", "pBBBB2", "pCCCC3"].into_iter().enumerate() {
        b.push_insert(&NewPush {
            id,
            key_hash: (i == 1).then_some(hash.as_str()),
            target: "users:5",
            title: "标题",
            body: "**body**",
            url: (i == 0).then_some("https://example.com/a"),
            summary: (i == 2).then_some("summary"),
            source: "api",
            created_at: T + i as i64,
            recipients: &recipients,
        })
        .await
        .unwrap();
    }
    // Deliveries in every state: sent with a msgid, failed, retrying, still being sent.
    let now_ms = T * 1000;
    let claimed = b
        .push_claim("worker-1", now_ms, now_ms + 30_000, 9)
        .await
        .unwrap();
    assert_eq!(claimed.len(), 9);
    let outcomes: Vec<Outcome> = claimed
        .iter()
        .take(6)
        .enumerate()
        .map(|(i, c)| Outcome {
            push_seq: c.push_seq,
            openid: c.openid.clone(),
            attempt: match i % 3 {
                0 => Attempt::Sent {
                    msgid: Some(2_000_000 + i as i64),
                },
                1 => Attempt::Failed {
                    error: "43004 require subscribe".into(),
                },
                _ => Attempt::Retry {
                    next_at: now_ms + 5_000,
                    error: "-1 system busy".into(),
                },
            },
        })
        .collect();
    b.push_settle("worker-1", &outcomes, T + 1).await.unwrap();

    // The platform: two apps (one revoked), a topic of one, binding codes (one used), bindings
    // (one blocked), and webhook deliveries in every state, with their attempts.
    let shop_hash = key_hash(5);
    let app = NewApp {
        name: "shop",
        callback_url: "https://shop.example/hook",
        callback_format: "huixin",
        replies: true,
        secret: APP_SECRET,
        return_url: "https://shop.example/bound",
        created_at: T,
        token_hash: &shop_hash,
        token_prefix: "AT_sho",
    };
    let shop = b.app_insert(&app).await.unwrap();
    let old_hash = key_hash(6);
    let old = b
        .app_insert(&NewApp {
            name: "old",
            callback_format: "wxpusher",
            replies: false,
            return_url: "",
            token_hash: &old_hash,
            token_prefix: "AT_old",
            ..app
        })
        .await
        .unwrap();
    assert!(b.app_revoke(old, T + 60).await.unwrap());
    assert!(b.topic_set_app("news", Some(shop)).await.unwrap());
    for (id, uid) in [("bcOne", "site-user-1"), ("bcAny", "")] {
        b.bind_code_insert(&BindCode {
            id: id.into(),
            app_id: shop,
            uid: uid.into(),
            extra: "来源=copy".into(),
            return_url: "".into(),
            ticket: format!("ticket-{id}"),
            qr_content: format!("http://weixin.qq.com/q/{id}"),
            created_at: T,
            expires_at: T + 600,
            used_at: None,
            used_by: None,
            used_uid: None,
        })
        .await
        .unwrap();
    }
    assert!(
        b.bind_code_use("bcOne", "o_user_01", "site-user-1", T + 1)
            .await
            .unwrap()
    );
    for (app_id, uid, openid) in [
        (shop, "site-user-1", "o_user_01"),
        (shop, "site-user-2", "o_user_02"),
        (old, "UID_abcdef", "o_user_01"),
    ] {
        b.binding_upsert(&NewBinding {
            app_id,
            uid,
            openid,
            extra: "",
            source: "scan",
            now: T + 2,
        })
        .await
        .unwrap();
    }
    let blocked = b.binding(shop, "site-user-2").await.unwrap().unwrap();
    assert!(
        b.binding_block(shop, blocked.seq, true, T + 3)
            .await
            .unwrap()
    );
    let endpoint = format!("app:{shop}");
    let deliveries: Vec<NewDelivery<'_>> = ["o_user_01", "o_user_02", "o_user_03", ""]
        .into_iter()
        .enumerate()
        .map(|(i, ordering)| NewDelivery {
            id: ["dDone", "dFailed", "dRetry", "dSending"][i],
            app_id: (i < 3).then_some(shop),
            endpoint: if i < 3 { &endpoint } else { "config:ops" },
            url: "https://shop.example/hook",
            event: "message",
            ordering,
            body: "{\"text\":\"你好\"}",
            now_ms,
        })
        .collect();
    let seqs = b.webhook_insert(&deliveries).await.unwrap();
    let claimed = b
        .webhook_claim("old-worker", now_ms, now_ms + 30_000, 10)
        .await
        .unwrap();
    assert_eq!(claimed.len(), 4);
    let outcome = |seq, status, result| DeliveryOutcome {
        seq,
        at: now_ms,
        duration_ms: 40,
        status,
        result,
    };
    b.webhook_settle(
        "old-worker",
        &[
            outcome(seqs[0], Some(200), DeliveryResult::Delivered),
            outcome(
                seqs[1],
                Some(410),
                DeliveryResult::Failed {
                    error: "HTTP 410".into(),
                },
            ),
            outcome(
                seqs[2],
                None,
                DeliveryResult::Retry {
                    next_at: now_ms + 5_000,
                    error: "timed out".into(),
                },
            ),
        ],
        now_ms + 100,
    )
    .await
    .unwrap();

    // A process serving from the file as the copy starts.
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_millis() as i64;
    b.peers_beat("4321-serving", now, now, 5_000).await.unwrap();
    callback_token
}

/// A fresh SQLite store in `dir`, its URL.
async fn filled_sqlite(dir: &Path) -> (String, String) {
    let url = format!("sqlite://{}", dir.join("huixin.db").display());
    let store = Store::open(&url).await.expect("store opens");
    let token = fill(&store).await;
    store.flush().await.unwrap();
    (url, token)
}

/// Rows of a query on both sides, sorted (the two databases sort text differently), equal.
macro_rules! same_rows {
    ($lite:expr, $pg:expr, $ty:ty, $sql:expr) => {
        same_rows!($lite, $pg, $ty, $sql, $sql)
    };
    ($lite:expr, $pg:expr, $ty:ty, $lite_sql:expr, $pg_sql:expr) => {{
        let mut a: Vec<$ty> = sqlx::query_as($lite_sql).fetch_all($lite).await.unwrap();
        let mut b: Vec<$ty> = sqlx::query_as($pg_sql).fetch_all($pg).await.unwrap();
        a.sort();
        b.sort();
        assert!(!a.is_empty(), "no rows in the source: {}", $lite_sql);
        assert_eq!(a, b, "{}", $pg_sql);
        a
    }};
}

type Opt = Option<String>;

/// Checks every copied table row for row.
async fn check_rows(lite: &SqlitePool, pg: &PgPool) {
    same_rows!(
        lite,
        pg,
        (String, String, i64),
        "SELECT key, value, updated_at FROM huixin_meta"
    );
    let followers = same_rows!(
        lite,
        pg,
        (
            String,
            bool,
            Option<i64>,
            Option<i64>,
            Option<i64>,
            Opt,
            Option<i64>
        ),
        "SELECT openid, subscribed, first_subscribed_at, last_subscribed_at, unsubscribed_at, \
         scene, last_seen_at FROM followers"
    );
    // Both booleans made it across.
    assert!(followers.iter().any(|f| f.1) && followers.iter().any(|f| !f.1));
    same_rows!(
        lite,
        pg,
        (String, String, String, Option<i64>, i64),
        "SELECT openid, key, value, expires_at, updated_at FROM sessions"
    );
    same_rows!(
        lite,
        pg,
        (String, String, i64),
        "SELECT openid, reason, created_at FROM blocked_users"
    );
    same_rows!(
        lite,
        pg,
        (String, Opt, i64, i64, i64, i64),
        "SELECT app_id, token, expires_at, refresh_after, fetched_at, version FROM access_tokens"
    );
    let topics = same_rows!(
        lite,
        pg,
        (String, bool, String, i64, Option<i64>),
        "SELECT name, open, description, created_at, app_id FROM topics"
    );
    assert_eq!(
        topics.iter().map(|t| t.1).collect::<Vec<_>>(),
        [true, false]
    );
    assert!(topics.iter().any(|t| t.4.is_some()), "a topic of an app");
    same_rows!(
        lite,
        pg,
        (i64, String),
        "SELECT num, name FROM topic_numbers"
    );
    let apps = same_rows!(
        lite,
        pg,
        (
            i64,
            String,
            String,
            String,
            bool,
            String,
            String,
            i64,
            Option<i64>
        ),
        "SELECT id, name, callback_url, callback_format, replies, secret, return_url, \
         created_at, revoked_at FROM apps"
    );
    assert!(apps.iter().any(|a| a.4) && apps.iter().any(|a| !a.4));
    assert!(apps.iter().any(|a| a.8.is_some()), "a revoked app");
    same_rows!(
        lite,
        pg,
        (
            String,
            i64,
            String,
            String,
            String,
            String,
            String,
            i64,
            i64,
            Option<i64>,
            Opt,
            Opt
        ),
        "SELECT id, app_id, uid, extra, return_url, ticket, qr_content, created_at, \
         expires_at, used_at, used_by, used_uid FROM bind_codes"
    );
    let bindings = same_rows!(
        lite,
        pg,
        (
            i64, i64, String, String, String, String, String, bool, i64, i64
        ),
        "SELECT seq, app_id, uid, openid, extra, source, state, blocked, created_at, \
         updated_at FROM bindings"
    );
    assert!(bindings.iter().any(|b| b.7) && bindings.iter().any(|b| !b.7));
    same_rows!(
        lite,
        pg,
        (
            i64,
            String,
            Option<i64>,
            String,
            String,
            String,
            String,
            String
        ),
        "SELECT seq, id, app_id, endpoint, url, event, ordering, body FROM webhook_deliveries"
    );
    // A delivery the old installation was sending is pending again, and no lease is left.
    let deliveries = same_rows!(
        lite,
        pg,
        (i64, String, i64, i64, Opt, i64, Option<i64>, Opt, i64, i64),
        "SELECT seq, CASE state WHEN 'sending' THEN 'pending' ELSE state END, attempts, \
         next_at, NULL, 0, last_status, last_error, created_at, updated_at \
         FROM webhook_deliveries",
        "SELECT seq, state, attempts, next_at, lease_owner, lease_until, last_status, \
         last_error, created_at, updated_at FROM webhook_deliveries"
    );
    let states: BTreeSet<&str> = deliveries.iter().map(|d| d.1.as_str()).collect();
    assert_eq!(states, BTreeSet::from(["delivered", "failed", "pending"]));
    let sending: Vec<(String, Opt)> =
        sqlx::query_as("SELECT state, lease_owner FROM webhook_deliveries WHERE id = 'dSending'")
            .fetch_all(lite)
            .await
            .unwrap();
    assert_eq!(
        sending,
        [("sending".to_owned(), Some("old-worker".to_owned()))],
        "the source is left as it was"
    );
    same_rows!(
        lite,
        pg,
        (i64, i64, i64, i64, Option<i64>, Opt),
        "SELECT delivery_seq, attempt, at, duration_ms, status, error FROM webhook_attempts"
    );
    let members = same_rows!(
        lite,
        pg,
        (i64, String, String, i64),
        "SELECT rowid, topic, openid, joined_at FROM topic_members",
        "SELECT id, topic, openid, joined_at FROM topic_members"
    );
    let ids: Vec<i64> = members.iter().map(|m| m.0).collect();
    assert!(
        ids.windows(2).any(|w| w[1] > w[0] + 1),
        "the memberships' ids keep their gaps: {ids:?}"
    );
    same_rows!(
        lite,
        pg,
        (
            i64,
            String,
            String,
            String,
            String,
            String,
            i64,
            Option<i64>
        ),
        "SELECT rowid, key_hash, key_prefix, kind, target, label, created_at, revoked_at \
         FROM push_keys",
        "SELECT id, key_hash, key_prefix, kind, target, label, created_at, revoked_at \
         FROM push_keys"
    );
    same_rows!(
        lite,
        pg,
        (
            i64, String, Opt, String, String, String, Opt, Opt, String, i64
        ),
        "SELECT seq, id, key_hash, target, title, body, url, summary, source, created_at \
         FROM pushes"
    );
    let recipients = same_rows!(
        lite,
        pg,
        (
            i64,
            String,
            String,
            String,
            i64,
            i64,
            Opt,
            i64,
            Option<i64>,
            Opt,
            i64
        ),
        "SELECT push_seq, openid, client_msg_id, state, attempts, next_at, lease_owner, \
         lease_until, msgid, error, updated_at FROM push_recipients"
    );
    let states: BTreeSet<&str> = recipients.iter().map(|r| r.3.as_str()).collect();
    assert_eq!(
        states,
        BTreeSet::from(["failed", "pending", "sending", "sent"])
    );
    same_rows!(
        lite,
        pg,
        (String, String, String, Opt, Option<i64>, i64),
        "SELECT key, owner, state, reply, reply_time, updated_at FROM dedup"
    );
    same_rows!(
        lite,
        pg,
        (String, String, String, i64),
        "SELECT timestamp, nonce, request_hash, expires_at FROM replay_guard"
    );
    let log = same_rows!(
        lite,
        pg,
        (i64, i64, String, String, Opt, Opt, Opt, String, String),
        "SELECT id, received_at, openid, msg_type, event, msg_id, summary, reply_type, outcome \
         FROM inbound_log"
    );
    assert_eq!(log.len(), LOG_ROWS);
    let replies = same_rows!(
        lite,
        pg,
        (i64, Opt, Option<i64>, Opt),
        "SELECT id, rule, latency_ms, reply FROM inbound_log"
    );
    assert!(
        replies
            .iter()
            .any(|r| r.1.is_some() && r.2.is_some() && r.3.is_some())
    );
    assert!(replies.iter().any(|r| r.1.is_none() && r.2.is_none()));
    let counts = same_rows!(
        lite,
        pg,
        (i64, String, String, i64),
        "SELECT hour, dim, key, n FROM log_counts"
    );
    let dims: BTreeSet<&str> = counts.iter().map(|c| c.1.as_str()).collect();
    assert_eq!(
        dims,
        BTreeSet::from(["event", "outcome", "push", "rule", "type"])
    );
}

/// Row counts of every copied table in the target.
async fn counts(pg: &PgPool) -> BTreeMap<&'static str, i64> {
    let mut counts = BTreeMap::new();
    for table in TABLES {
        let n: i64 = sqlx::query_scalar(sqlx::AssertSqlSafe(format!(
            "SELECT count(*) FROM {}",
            table.name
        )))
        .fetch_one(pg)
        .await
        .unwrap();
        counts.insert(table.name, n);
    }
    counts
}

#[tokio::test(flavor = "multi_thread")]
async fn copies_every_table_then_nothing_the_second_time() {
    let Some(db) = common::pg::database("copies_every_table_then_nothing_the_second_time").await
    else {
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    let (from, callback_token) = filled_sqlite(dir.path()).await;

    let first = run_copy(dir.path(), &from, db.url()).await;
    assert!(
        first.status.success(),
        "stdout: {}\nstderr: {}",
        stdout(&first),
        stderr(&first)
    );
    let lite = SqlitePool::connect_with(
        from.parse::<SqliteConnectOptions>()
            .unwrap()
            .read_only(true),
    )
    .await
    .unwrap();
    let pg = PgPool::connect(db.url()).await.unwrap();

    // The summary: every table, each row read and copied.
    let tables = summary(&first);
    assert_eq!(
        tables.keys().cloned().collect::<BTreeSet<_>>(),
        TABLES
            .iter()
            .map(|t| t.name.to_owned())
            .chain(["total".to_owned()])
            .collect::<BTreeSet<_>>(),
        "{}",
        stdout(&first)
    );
    let copied = counts(&pg).await;
    for (table, &n) in &copied {
        let source: i64 =
            sqlx::query_scalar(sqlx::AssertSqlSafe(format!("SELECT count(*) FROM {table}")))
                .fetch_one(&lite)
                .await
                .unwrap();
        assert!(source > 0, "{table} has rows to copy");
        assert_eq!(n, source, "{table}");
        assert_eq!(tables[*table], (n as u64, n as u64, 0), "{table}");
    }
    assert!(stdout(&first).contains("copied sqlite://"));
    // The process that beat a moment ago: not copied, and the operator is warned.
    let processes: i64 = sqlx::query_scalar("SELECT count(*) FROM processes")
        .fetch_one(&pg)
        .await
        .unwrap();
    assert_eq!(processes, 0);
    assert!(
        stderr(&first).contains("were serving from"),
        "{}",
        stderr(&first)
    );

    check_rows(&lite, &pg).await;

    // The lease of the old installation's process is cleared; the token is the same.
    let lease: (Option<String>, i64) =
        sqlx::query_as("SELECT lease_owner, lease_until FROM access_tokens")
            .fetch_one(&pg)
            .await
            .unwrap();
    assert_eq!(lease, (None, 0));
    let old_lease: Option<String> = sqlx::query_scalar("SELECT lease_owner FROM access_tokens")
        .fetch_one(&lite)
        .await
        .unwrap();
    assert_eq!(old_lease.as_deref(), Some("old-2"));

    // No secret in what it printed.
    let printed = format!("{}{}", stdout(&first), stderr(&first));
    assert!(!printed.contains(ACCESS_TOKEN));
    assert!(!printed.contains(&callback_token));
    for n in KEYS {
        assert!(!printed.contains(&key_hash(n)));
    }
    assert!(!printed.contains(APP_SECRET));

    // Again: nothing copied, everything already there, nothing changed.
    let second = run_copy(dir.path(), &from, db.url()).await;
    assert!(second.status.success(), "{}", stderr(&second));
    let again = summary(&second);
    for (table, &n) in &copied {
        assert_eq!(again[*table], (n as u64, 0, n as u64), "{table}");
    }
    let total = copied.values().sum::<i64>() as u64;
    assert_eq!(again["total"], (total, 0, total));
    assert_eq!(counts(&pg).await, copied);
    check_rows(&lite, &pg).await;

    // The identity sequences moved past the copied ids: new rows take fresh ones.
    let max = |table: &str, column: &str| {
        let sql = format!("SELECT max({column}) FROM {table}");
        let lite = lite.clone();
        async move {
            sqlx::query_scalar::<_, i64>(sqlx::AssertSqlSafe(sql))
                .fetch_one(&lite)
                .await
                .unwrap()
        }
    };
    let log_id: i64 = sqlx::query_scalar(
        "INSERT INTO inbound_log (received_at, openid, msg_type, reply_type, outcome) \
         VALUES (1, 'o_new', 'text', 'text', 'answered') RETURNING id",
    )
    .fetch_one(&pg)
    .await
    .unwrap();
    assert_eq!(log_id, max("inbound_log", "id").await + 1);
    let seq: i64 = sqlx::query_scalar(
        "INSERT INTO pushes (id, target, title, body, source, created_at) \
         VALUES ('pNEW', 'users:1', 't', 'b', 'api', 1) RETURNING seq",
    )
    .fetch_one(&pg)
    .await
    .unwrap();
    assert_eq!(seq, max("pushes", "seq").await + 1);
    let member: i64 = sqlx::query_scalar(
        "INSERT INTO topic_members (topic, openid, joined_at) VALUES ('news', 'o_new', 1) \
         RETURNING id",
    )
    .fetch_one(&pg)
    .await
    .unwrap();
    assert_eq!(member, max("topic_members", "rowid").await + 1);
    let key: i64 = sqlx::query_scalar(
        "INSERT INTO push_keys (key_hash, kind, created_at) VALUES ('h_new', 'admin', 1) \
         RETURNING id",
    )
    .fetch_one(&pg)
    .await
    .unwrap();
    assert_eq!(key, max("push_keys", "rowid").await + 1);
    let app: i64 = sqlx::query_scalar(
        "INSERT INTO apps (name, secret, created_at) VALUES ('new', 's', 1) RETURNING id",
    )
    .fetch_one(&pg)
    .await
    .unwrap();
    assert_eq!(app, max("apps", "id").await + 1);
    let num: i64 =
        sqlx::query_scalar("INSERT INTO topic_numbers (name) VALUES ('new') RETURNING num")
            .fetch_one(&pg)
            .await
            .unwrap();
    assert_eq!(num, max("topic_numbers", "num").await + 1);
    let binding: i64 = sqlx::query_scalar(
        "INSERT INTO bindings (app_id, uid, openid, source, created_at, updated_at) \
         VALUES ($1, 'site-new', 'o_new', 'admin', 1, 1) RETURNING seq",
    )
    .bind(app)
    .fetch_one(&pg)
    .await
    .unwrap();
    assert_eq!(binding, max("bindings", "seq").await + 1);
    let delivery: i64 = sqlx::query_scalar(
        "INSERT INTO webhook_deliveries (id, endpoint, url, event, body, created_at, updated_at) \
         VALUES ('dNEW', 'config:ops', 'u', 'e', '{}', 1, 1) RETURNING seq",
    )
    .fetch_one(&pg)
    .await
    .unwrap();
    assert_eq!(delivery, max("webhook_deliveries", "seq").await + 1);

    // A third run after those inserts keeps them, and the sequences do not move back.
    let third = run_copy(dir.path(), &from, db.url()).await;
    assert!(third.status.success(), "{}", stderr(&third));
    let next: i64 = sqlx::query_scalar(
        "INSERT INTO inbound_log (received_at, openid, msg_type, reply_type, outcome) \
         VALUES (2, 'o_new', 'text', 'text', 'answered') RETURNING id",
    )
    .fetch_one(&pg)
    .await
    .unwrap();
    assert_eq!(next, log_id + 1);
    pg.close().await;
}

/// Every table of a fresh SQLite store is copied or deliberately left out, with every column;
/// the PostgreSQL tables have exactly the copied columns. A new migration on either side
/// fails here until the copy knows of it.
#[tokio::test(flavor = "multi_thread")]
async fn the_copy_covers_every_table_and_column() {
    let dir = tempfile::tempdir().unwrap();
    let from = format!("sqlite://{}", dir.path().join("empty.db").display());
    drop(Store::open(&from).await.unwrap());
    let lite = SqlitePool::connect(&from).await.unwrap();
    let tables: BTreeSet<String> = sqlx::query_scalar(
        "SELECT name FROM sqlite_master WHERE type = 'table' AND name NOT LIKE 'sqlite_%'",
    )
    .fetch_all(&lite)
    .await
    .unwrap()
    .into_iter()
    .collect();
    let known: BTreeSet<String> = TABLES
        .iter()
        .map(|t| t.name)
        .chain(LEFT_OUT)
        .map(str::to_owned)
        .collect();
    assert_eq!(tables, known);
    for table in TABLES {
        let columns: BTreeSet<String> = sqlx::query_scalar(sqlx::AssertSqlSafe(format!(
            "SELECT name FROM pragma_table_info('{}')",
            table.name
        )))
        .fetch_all(&lite)
        .await
        .unwrap()
        .into_iter()
        .collect();
        // The rowid is no column of its own in SQLite.
        let copied: BTreeSet<String> = table
            .columns
            .iter()
            .filter(|c| c.source != "rowid")
            .map(|c| c.name.to_owned())
            .collect();
        assert_eq!(columns, copied, "{}", table.name);
    }
    lite.close().await;

    let Some(db) = common::pg::database("the_copy_covers_every_table_and_column").await else {
        return;
    };
    // An empty store copies too (and creates the target's tables).
    let out = run_copy(dir.path(), &from, db.url()).await;
    assert!(out.status.success(), "{}", stderr(&out));
    let lines = summary(&out);
    assert_eq!(lines["total"], (0, 0, 0), "{}", stdout(&out));
    let pg = PgPool::connect(db.url()).await.unwrap();
    for table in TABLES {
        let columns: BTreeSet<String> = sqlx::query_scalar(
            "SELECT column_name::text FROM information_schema.columns \
             WHERE table_schema = current_schema() AND table_name = $1",
        )
        .bind(table.name)
        .fetch_all(&pg)
        .await
        .unwrap()
        .into_iter()
        .collect();
        let copied: BTreeSet<String> = table.columns.iter().map(|c| c.name.to_owned()).collect();
        assert_eq!(columns, copied, "{}", table.name);
    }
    let pg_tables: BTreeSet<String> = sqlx::query_scalar(
        "SELECT table_name::text FROM information_schema.tables \
         WHERE table_schema = current_schema()",
    )
    .fetch_all(&pg)
    .await
    .unwrap()
    .into_iter()
    .collect();
    assert_eq!(pg_tables, known);
    pg.close().await;
}

/// Runs `huixin store copy` with `args` in `dir`; asserts it fails and returns its stderr.
fn fails(dir: &Path, args: &[&str], env: &[(&str, &str)]) -> String {
    let mut argv = vec!["store", "copy"];
    argv.extend_from_slice(args);
    let out = huixin(dir, &argv, env);
    assert!(
        !out.status.success(),
        "{args:?} succeeded: {}",
        stdout(&out)
    );
    stderr(&out)
}

#[tokio::test(flavor = "multi_thread")]
async fn mistakes_fail_with_a_clear_message() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path().to_owned();
    let good = format!("sqlite://{}", d.join("huixin.db").display());
    drop(Store::open(&good).await.unwrap());
    // Someone else's database, and a file that is no database.
    let foreign = format!("sqlite://{}", d.join("foreign.db").display());
    let pool = SqlitePool::connect_with(
        foreign
            .parse::<SqliteConnectOptions>()
            .unwrap()
            .create_if_missing(true),
    )
    .await
    .unwrap();
    sqlx::query("CREATE TABLE orders (id INTEGER PRIMARY KEY, total INTEGER)")
        .execute(&pool)
        .await
        .unwrap();
    pool.close().await;
    let junk = d.join("junk.db");
    std::fs::write(&junk, "not a database, just text. ".repeat(20)).unwrap();
    let junk = format!("sqlite://{}", junk.display());
    let missing = d.join("typo.db");

    let foreign_url = foreign.clone();
    tokio::task::spawn_blocking(move || {
        let d = d.as_path();
        let target = "postgres://huixin@127.0.0.1:1/huixin";

        // Wrong directions and schemes.
        let e = fails(
            d,
            &["--from", &good, "--to", "mysql://localhost/huixin"],
            &[],
        );
        assert!(e.contains("SQLite to PostgreSQL only"), "{e}");
        assert!(e.contains("mysql://localhost/huixin"), "{e}");
        let e = fails(d, &["--from", target, "--to", target], &[]);
        assert!(e.contains("SQLite to PostgreSQL only"), "{e}");
        let e = fails(d, &["--from", "sqlite::memory:", "--to", target], &[]);
        assert!(e.contains("in-memory"), "{e}");
        let e = fails(d, &["--to", target], &[("HUIXIN_STORAGE_URL", target)]);
        assert!(e.contains("pass --from"), "{e}");

        // A source that does not exist is not created.
        let typo = format!("sqlite://{}", missing.display());
        let e = fails(d, &["--from", &typo, "--to", target], &[]);
        assert!(e.contains("does not exist"), "{e}");
        assert!(!missing.exists());

        let e = fails(d, &["--from", &junk, "--to", target], &[]);
        assert!(e.contains("is not a huixin database"), "{e}");
        let e = fails(d, &["--from", &foreign, "--to", target], &[]);
        assert!(e.contains("is not a huixin database"), "{e}");

        // An unreachable target, its password never shown.
        let started = std::time::Instant::now();
        let unreachable = "postgres://huixin:hunter2@127.0.0.1:1/huixin";
        let e = fails(d, &["--from", &good, "--to", unreachable], &[]);
        assert!(e.contains("cannot connect to the target"), "{e}");
        assert!(
            e.contains("postgres://huixin:***@127.0.0.1:1/huixin"),
            "{e}"
        );
        assert!(!e.contains("hunter2"), "{e}");
        assert!(started.elapsed() < std::time::Duration::from_secs(20));
    })
    .await
    .unwrap();

    let pool = SqlitePool::connect(&foreign_url).await.unwrap();
    let tables: Vec<String> =
        sqlx::query_scalar("SELECT name FROM sqlite_master WHERE type = 'table'")
            .fetch_all(&pool)
            .await
            .unwrap();
    assert_eq!(tables, ["orders"], "the foreign database is left as it was");
    pool.close().await;
}

/// A target whose push `seq` names another push (servers already ran on it) is refused:
/// keeping it as "already there" would hand the copied push's recipients to the other one.
#[tokio::test(flavor = "multi_thread")]
async fn a_target_with_other_pushes_is_refused() {
    let Some(db) = common::pg::database("a_target_with_other_pushes_is_refused").await else {
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    let from = format!("sqlite://{}", dir.path().join("huixin.db").display());
    let store = Store::open(&from).await.unwrap();
    let recipients = ["o_a".to_owned()];
    store
        .backend()
        .push_insert(&NewPush {
            id: "pMINE1",
            key_hash: None,
            target: "user:o_a",
            title: "t",
            body: "b",
            url: None,
            summary: None,
            source: "api",
            created_at: T,
            recipients: &recipients,
        })
        .await
        .unwrap();
    drop(store);
    let pg = PgPool::connect(db.url()).await.unwrap();
    huixin::store::schema::POSTGRES.run(&pg).await.unwrap();
    sqlx::query(
        "INSERT INTO pushes (id, target, title, body, source, created_at) \
         VALUES ('pOTHER', 'users:1', 't', 'b', 'api', 1)",
    )
    .execute(&pg)
    .await
    .unwrap();

    let out = run_copy(dir.path(), &from, db.url()).await;
    assert!(!out.status.success(), "{}", stdout(&out));
    let e = stderr(&out);
    assert!(e.contains("copying pushes"), "{e}");
    assert!(e.contains("another push with seq 1"), "{e}");
    let recipients: i64 = sqlx::query_scalar("SELECT count(*) FROM push_recipients")
        .fetch_one(&pg)
        .await
        .unwrap();
    assert_eq!(recipients, 0);
    pg.close().await;
}

/// The same for an app: the target's app 1 is another one, which would receive the copied
/// app's bindings (and its token, a key naming app 1).
#[tokio::test(flavor = "multi_thread")]
async fn a_target_with_other_apps_is_refused() {
    let Some(db) = common::pg::database("a_target_with_other_apps_is_refused").await else {
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    let from = format!("sqlite://{}", dir.path().join("huixin.db").display());
    let store = Store::open(&from).await.unwrap();
    let hash = key_hash(7);
    let app = store
        .backend()
        .app_insert(&NewApp {
            name: "shop",
            callback_url: "",
            callback_format: "huixin",
            replies: false,
            secret: APP_SECRET,
            return_url: "",
            created_at: T,
            token_hash: &hash,
            token_prefix: "AT_sho",
        })
        .await
        .unwrap();
    store
        .backend()
        .binding_upsert(&NewBinding {
            app_id: app,
            uid: "site-user-1",
            openid: "o_a",
            extra: "",
            source: "scan",
            now: T,
        })
        .await
        .unwrap();
    drop(store);
    let pg = PgPool::connect(db.url()).await.unwrap();
    huixin::store::schema::POSTGRES.run(&pg).await.unwrap();
    sqlx::query("INSERT INTO apps (name, secret, created_at) VALUES ('theirs', 's', 1)")
        .execute(&pg)
        .await
        .unwrap();

    let out = run_copy(dir.path(), &from, db.url()).await;
    assert!(!out.status.success(), "{}", stdout(&out));
    let e = stderr(&out);
    assert!(e.contains("copying apps"), "{e}");
    assert!(e.contains("another app with id 1"), "{e}");
    let bindings: i64 = sqlx::query_scalar("SELECT count(*) FROM bindings")
        .fetch_one(&pg)
        .await
        .unwrap();
    assert_eq!(bindings, 0);
    pg.close().await;
}
