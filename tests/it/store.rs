//! The store test suite: one set of checks, written against [`Store`] and its [`Backend`]
//! only, run against every backend. Each backend gets one `store_suite!` line naming how to
//! make a fresh, empty database: SQLite (a file in a temp dir) and PostgreSQL (a database of its
//! own on the server `HUIXIN_TEST_POSTGRES` names; skipped with a message when none is, and
//! failing instead when `HUIXIN_REQUIRE_POSTGRES` is set).
//!
//! Times are explicit Unix seconds throughout (expiry in the past or the future), so nothing
//! sleeps. The push delivery schedule (`next_at`, `lease_until`, `now_ms`) is in milliseconds,
//! as the backend stores it; leases run out by passing a later `now_ms`.

use std::collections::BTreeSet;

use huixin::store::apps::{
    AppChanges, AppRow, AttemptRow, BindCode, BindingRow, DeliveryFilter, DeliveryOutcome,
    DeliveryResult, DeliveryRow, NewApp, NewBinding, NewDelivery,
};
use huixin::store::console::{CountRow, FollowerFilter, LogFilter, LogRow, PushSummary};
use huixin::store::push::{
    Attempt, Claimed, GroupedPush, KeyRow, NewPush, Outcome, PushRow, RecipientRow, Topic,
};
use huixin::store::{
    DedupRecord, DedupState, Deferred, Follower, LogEntry, Pruned, ReplayRecord, SessionChange,
    Store, StoreError,
};
use huixin::support::clock::unix_now;

use crate::common::pg;

/// A fresh SQLite database: the temp dir that holds it (keep it alive) and its URL.
async fn fresh_sqlite() -> (tempfile::TempDir, String) {
    let dir = tempfile::tempdir().expect("temp dir");
    let url = format!("sqlite://{}", dir.path().join("t.db").display());
    (dir, url)
}

/// [`fresh_sqlite`] for the suite, which takes databases that may be missing.
async fn suite_sqlite() -> Option<(tempfile::TempDir, String)> {
    Some(fresh_sqlite().await)
}

/// A fresh PostgreSQL database (dropped with the guard), or `None` when no server is
/// configured (see `tests/it/common/pg.rs`).
async fn fresh_postgres() -> Option<(pg::TestDb, String)> {
    let db = pg::database("the store suite on PostgreSQL").await?;
    let url = db.url().to_owned();
    Some((db, url))
}

/// Runs every function of [`suite`] as its own test, each on a fresh database made by
/// `$fresh` (an async fn returning `(guard, url)`; the guard keeps the database alive).
macro_rules! store_suite {
    ($backend:ident, $fresh:path) => {
        mod $backend {
            use super::*;

            async fn open() -> Option<(impl Sized, String, Store)> {
                let (guard, url) = $fresh().await?;
                let store = Store::open(&url).await.expect("a fresh store opens");
                Some((guard, url, store))
            }

            store_suite!(@store open;
                ping,
                generated_token_created_once,
                generated_token_concurrent_calls_agree,
                follower_subscribe_twice,
                follower_scene_kept_without_new_scene,
                follower_unsubscribe,
                follower_unsubscribe_unknown_user,
                follower_count_counts_subscribed_only,
                follower_events_out_of_order,
                seen_raises_never_lowers,
                session_set_and_delete_in_one_apply,
                session_expiry,
                session_overwrite,
                session_users_are_isolated,
                log_round_trip_newest_first,
                dedup_upsert_and_changes,
                writer_flush_makes_writes_visible,
                writer_many_writes_all_land,
                blocklist,
                prune_by_cutoffs,
                store_prune_keeps_log_when_retention_is_zero,
                store_prune_by_retention,
                push_topics_and_members,
                push_keys_lookup_and_revoke,
                replay_records_kept_until_they_expire,
                push_insert_stores_recipients_once,
                push_claim_leases_and_takes_over_expired,
                push_settle_batch_and_only_while_sending,
                push_settle_after_a_takeover,
                push_release_gives_back_the_attempt,
                push_finished_confirms_by_msgid,
                push_next_due_tracks_pending_and_leases,
                push_history_filters_and_pages,
                push_purge_removes_old_pushes_and_their_recipients,
                apps_insert_update_and_revoke,
                bind_codes_single_use_and_open,
                bindings_upsert_list_and_change,
                topic_numbers_are_kept_per_name,
                webhook_insert_and_claim_oldest_first,
                webhook_orderings_go_one_at_a_time,
                webhook_leases_settle_and_attempts,
                webhook_deliveries_listing_and_purge,
                webhook_insert_claimed_unless_one_waits,
                push_retry_failed_requeues_under_new_ids,
                admin_sessions_expire_and_end,
                admin_links_sign_in_once,
                log_counts_follow_the_batches,
                log_page_filters_and_pages_newest_first,
                followers_page_orders_filters_and_pages,
                followers_page_reads_a_large_selection_in_order,
                push_page_counts_recipients_by_state,
                push_counts_follow_acceptance_and_delivery,
                prune_removes_counts_before_their_cutoff,
                store_prune_keeps_counts_longer_than_the_log,
            );
            store_suite!(@url open;
                generated_token_survives_reopen,
                generated_token_agrees_across_handles,
                migrations_are_idempotent,
                rate_buckets_are_shared_between_handles,
                webhook_claims_from_two_handles_keep_the_order,
            );
        }
    };
    (@store $open:ident; $($test:ident),+ $(,)?) => {
        $(
            #[tokio::test(flavor = "multi_thread")]
            async fn $test() {
                let Some((_guard, _url, store)) = $open().await else { return };
                suite::$test(&store).await;
            }
        )+
    };
    (@url $open:ident; $($test:ident),+ $(,)?) => {
        $(
            #[tokio::test(flavor = "multi_thread")]
            async fn $test() {
                let Some((_guard, url, store)) = $open().await else { return };
                suite::$test(store, &url).await;
            }
        )+
    };
}

store_suite!(sqlite, suite_sqlite);
store_suite!(postgres, fresh_postgres);

/// The checks. Each takes a freshly opened, empty store (and, for the ones that reopen it,
/// its URL).
mod suite {
    use super::*;

    fn log_entry(n: i64) -> LogEntry {
        LogEntry {
            received_at: 1_700_000_000 + n,
            openid: format!("o_user_{n}"),
            msg_type: "text".into(),
            event: None,
            msg_id: Some(format!("{}", 24_470_000_000_000_000u64 + n as u64)),
            summary: Some(format!("message {n}")),
            reply_type: "text".into(),
            outcome: "answered".into(),
            rule: Some("rules/10-hello.rhai:3".into()),
            latency_ms: Some(n % 50),
            reply: Some(format!("reply {n}")),
        }
    }

    fn dedup(key: &str, owner: &str, state: &str, reply: Option<&str>, at: i64) -> DedupRecord {
        DedupRecord {
            key: key.into(),
            owner: owner.into(),
            state: DedupState::parse(state).expect("a dedup state"),
            reply: reply.map(Into::into),
            // An answered record carries its reply's CreateTime, a second before the write.
            reply_time: reply.map(|_| at - 1),
            updated_at: at,
        }
    }

    fn set(key: &str, value: &str, expires_at: Option<i64>) -> SessionChange {
        SessionChange::Set {
            key: key.into(),
            value: value.into(),
            expires_at,
        }
    }

    fn delete(key: &str) -> SessionChange {
        SessionChange::Delete { key: key.into() }
    }

    /// A user's session, sorted by key (the backend promises no order).
    async fn session(store: &Store, openid: &str, now: i64) -> Vec<(String, String)> {
        let mut rows = store
            .backend()
            .session_load(openid, now)
            .await
            .expect("session loads");
        rows.sort();
        rows
    }

    fn pairs(p: &[(&str, &str)]) -> Vec<(String, String)> {
        p.iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    async fn follower(store: &Store, openid: &str) -> Follower {
        store
            .backend()
            .follower(openid)
            .await
            .expect("follower reads")
            .unwrap_or_else(|| panic!("{openid} is known"))
    }

    async fn dedup_all(store: &Store) -> Vec<DedupRecord> {
        let mut all = store
            .backend()
            .dedup_changes(i64::MIN, "no such owner")
            .await
            .expect("dedup reads");
        all.sort_by(|a, b| a.key.cmp(&b.key));
        all
    }

    pub async fn ping(store: &Store) {
        store.ping().await.expect("the database answers");
        assert_eq!(store.meta_get("nothing here").await.unwrap(), None);
    }

    // --- meta: the generated token ---------------------------------------------------------

    pub async fn generated_token_created_once(store: &Store) {
        assert_eq!(store.generated_token().await.unwrap(), None);
        let (token, created) = store.generated_token_or_create().await.unwrap();
        assert!(created, "the first call creates the token");
        assert_eq!(token.len(), 32);
        assert!(token.chars().all(|c| c.is_ascii_alphanumeric()), "{token}");

        let (again, created_again) = store.generated_token_or_create().await.unwrap();
        assert_eq!(again, token);
        assert!(!created_again, "the second call finds it");
        assert_eq!(store.generated_token().await.unwrap(), Some(token.clone()));
        assert_eq!(
            store.meta_get("generated_token").await.unwrap(),
            Some(token)
        );
    }

    pub async fn generated_token_concurrent_calls_agree(store: &Store) {
        let tasks: Vec<_> = (0..8)
            .map(|_| {
                let store = store.clone();
                tokio::spawn(async move { store.generated_token_or_create().await.unwrap() })
            })
            .collect();
        let (a, b) = tokio::join!(
            store.generated_token_or_create(),
            store.generated_token_or_create()
        );
        let mut results = vec![a.unwrap(), b.unwrap()];
        for t in tasks {
            results.push(t.await.unwrap());
        }
        let tokens: BTreeSet<&str> = results.iter().map(|(t, _)| t.as_str()).collect();
        assert_eq!(
            tokens.len(),
            1,
            "every caller gets the same token: {results:?}"
        );
        let created = results.iter().filter(|(_, c)| *c).count();
        assert_eq!(created, 1, "exactly one caller created it: {results:?}");
        assert_eq!(
            store.generated_token().await.unwrap().as_deref(),
            tokens.first().copied()
        );
    }

    pub async fn generated_token_survives_reopen(store: Store, url: &str) {
        let (token, created) = store.generated_token_or_create().await.unwrap();
        assert!(created);
        store.flush().await.unwrap();
        drop(store);

        let reopened = Store::open(url).await.expect("reopens");
        assert_eq!(
            reopened.generated_token_or_create().await.unwrap(),
            (token, false)
        );
    }

    /// Two handles on one database (two processes sharing it) race to create the token.
    pub async fn generated_token_agrees_across_handles(store: Store, url: &str) {
        let other = Store::open(url).await.expect("a second handle opens");
        let (a, b) = tokio::join!(
            store.generated_token_or_create(),
            other.generated_token_or_create()
        );
        let (a, b) = (a.unwrap(), b.unwrap());
        assert_eq!(a.0, b.0);
        assert!(a.1 ^ b.1, "exactly one created it: {a:?} {b:?}");
    }

    // --- followers -------------------------------------------------------------------------

    pub async fn follower_subscribe_twice(store: &Store) {
        let b = store.backend();
        assert_eq!(b.follower("o_a").await.unwrap(), None);

        b.follower_subscribed("o_a", 1_000, Some("poster"))
            .await
            .unwrap();
        assert_eq!(
            follower(store, "o_a").await,
            Follower {
                openid: "o_a".into(),
                subscribed: true,
                first_subscribed_at: Some(1_000),
                last_subscribed_at: Some(1_000),
                unsubscribed_at: None,
                scene: Some("poster".into()),
                last_seen_at: Some(1_000),
            }
        );

        b.follower_subscribed("o_a", 2_000, Some("event"))
            .await
            .unwrap();
        let f = follower(store, "o_a").await;
        assert_eq!(
            f.first_subscribed_at,
            Some(1_000),
            "the first subscribe stays"
        );
        assert_eq!(f.last_subscribed_at, Some(2_000));
        assert_eq!(f.scene.as_deref(), Some("event"), "the latest scene");
        assert!(f.subscribed);
        assert_eq!(f.last_seen_at, Some(2_000));
    }

    pub async fn follower_scene_kept_without_new_scene(store: &Store) {
        let b = store.backend();
        b.follower_subscribed("o_s", 100, Some("poster"))
            .await
            .unwrap();
        b.follower_unsubscribed("o_s", 200).await.unwrap();
        b.follower_subscribed("o_s", 300, None).await.unwrap();
        let f = follower(store, "o_s").await;
        assert_eq!(f.scene.as_deref(), Some("poster"));
        assert!(f.subscribed);
        assert_eq!(f.first_subscribed_at, Some(100));
        assert_eq!(f.last_subscribed_at, Some(300));
        assert_eq!(
            f.unsubscribed_at,
            Some(200),
            "a resubscribe keeps the last unsubscribe time"
        );

        // A plain follow of a new user has no scene at all.
        b.follower_subscribed("o_plain", 100, None).await.unwrap();
        assert_eq!(follower(store, "o_plain").await.scene, None);
    }

    /// Events that arrive late (a retry, another process) never move times backwards, and
    /// `subscribed` follows the latest event by its own time.
    pub async fn follower_events_out_of_order(store: &Store) {
        let b = store.backend();
        b.follower_subscribed("o_ooo", 2_000, Some("new"))
            .await
            .unwrap();
        b.follower_unsubscribed("o_ooo", 3_000).await.unwrap();
        // An older subscribe arrives last: still unsubscribed, scene and times unchanged.
        b.follower_subscribed("o_ooo", 1_000, Some("old"))
            .await
            .unwrap();
        let f = follower(store, "o_ooo").await;
        assert!(!f.subscribed);
        assert_eq!(f.first_subscribed_at, Some(1_000));
        assert_eq!(f.last_subscribed_at, Some(2_000));
        assert_eq!(f.unsubscribed_at, Some(3_000));
        assert_eq!(f.scene.as_deref(), Some("new"));
        // An older unsubscribe arrives after a newer subscribe: still subscribed.
        b.follower_subscribed("o_ooo", 4_000, None).await.unwrap();
        b.follower_unsubscribed("o_ooo", 3_500).await.unwrap();
        let f = follower(store, "o_ooo").await;
        assert!(f.subscribed);
        assert_eq!(
            (f.last_subscribed_at, f.unsubscribed_at),
            (Some(4_000), Some(3_500))
        );
    }

    pub async fn follower_unsubscribe(store: &Store) {
        let b = store.backend();
        b.follower_subscribed("o_u", 1_000, Some("poster"))
            .await
            .unwrap();
        b.follower_unsubscribed("o_u", 1_500).await.unwrap();
        assert_eq!(
            follower(store, "o_u").await,
            Follower {
                openid: "o_u".into(),
                subscribed: false,
                first_subscribed_at: Some(1_000),
                last_subscribed_at: Some(1_000),
                unsubscribed_at: Some(1_500),
                scene: Some("poster".into()),
                last_seen_at: Some(1_500),
            }
        );
    }

    pub async fn follower_unsubscribe_unknown_user(store: &Store) {
        store
            .backend()
            .follower_unsubscribed("o_never", 700)
            .await
            .unwrap();
        assert_eq!(
            follower(store, "o_never").await,
            Follower {
                openid: "o_never".into(),
                subscribed: false,
                first_subscribed_at: None,
                last_subscribed_at: None,
                unsubscribed_at: Some(700),
                scene: None,
                last_seen_at: Some(700),
            }
        );
    }

    pub async fn follower_count_counts_subscribed_only(store: &Store) {
        let b = store.backend();
        assert_eq!(b.follower_count().await.unwrap(), 0);
        b.follower_subscribed("o_1", 10, None).await.unwrap();
        b.follower_subscribed("o_2", 10, Some("x")).await.unwrap();
        b.follower_subscribed("o_3", 10, None).await.unwrap();
        b.follower_subscribed("o_3", 20, None).await.unwrap();
        assert_eq!(
            b.follower_count().await.unwrap(),
            3,
            "a resubscribe counts once"
        );
        b.follower_unsubscribed("o_2", 30).await.unwrap();
        b.follower_unsubscribed("o_gone", 30).await.unwrap();
        b.write_batch(&[Deferred::Seen {
            openid: "o_only_seen".into(),
            at: 40,
        }])
        .await
        .unwrap();
        assert_eq!(b.follower_count().await.unwrap(), 2);
    }

    pub async fn seen_raises_never_lowers(store: &Store) {
        let b = store.backend();
        let seen = |at: i64| Deferred::Seen {
            openid: "o_seen".into(),
            at,
        };
        b.write_batch(&[seen(500)]).await.unwrap();
        let f = follower(store, "o_seen").await;
        assert_eq!(f.last_seen_at, Some(500));
        assert!(!f.subscribed, "being seen is not following");
        assert_eq!(f.first_subscribed_at, None);

        b.write_batch(&[seen(900)]).await.unwrap();
        assert_eq!(follower(store, "o_seen").await.last_seen_at, Some(900));
        b.write_batch(&[seen(100)]).await.unwrap();
        assert_eq!(follower(store, "o_seen").await.last_seen_at, Some(900));
        // Out of order within one batch too.
        b.write_batch(&[seen(1_200), seen(1_100)]).await.unwrap();
        assert_eq!(follower(store, "o_seen").await.last_seen_at, Some(1_200));

        // Subscribe and unsubscribe events older than the last sighting do not lower it.
        b.follower_subscribed("o_seen", 1_000, None).await.unwrap();
        assert_eq!(follower(store, "o_seen").await.last_seen_at, Some(1_200));
        b.follower_unsubscribed("o_seen", 1_050).await.unwrap();
        assert_eq!(follower(store, "o_seen").await.last_seen_at, Some(1_200));

        // Seen keeps the subscription fields alone.
        b.follower_subscribed("o_sub", 100, Some("poster"))
            .await
            .unwrap();
        b.write_batch(&[Deferred::Seen {
            openid: "o_sub".into(),
            at: 5_000,
        }])
        .await
        .unwrap();
        let f = follower(store, "o_sub").await;
        assert!(f.subscribed);
        assert_eq!(f.scene.as_deref(), Some("poster"));
        assert_eq!(f.first_subscribed_at, Some(100));
        assert_eq!(f.last_seen_at, Some(5_000));
    }

    // --- sessions --------------------------------------------------------------------------

    pub async fn session_set_and_delete_in_one_apply(store: &Store) {
        let b = store.backend();
        let now = 10_000;
        b.session_apply(
            "o_a",
            &[
                set("keep", "1", None),
                set("gone", "2", None),
                set("flip", "\"x\"", None),
            ],
            now,
        )
        .await
        .unwrap();
        assert_eq!(
            session(store, "o_a", now).await,
            pairs(&[("flip", "\"x\""), ("gone", "2"), ("keep", "1")])
        );

        // Changes apply in order: delete then set leaves the key, set then delete removes it.
        b.session_apply(
            "o_a",
            &[
                delete("gone"),
                delete("flip"),
                set("flip", "\"y\"", None),
                set("new", "[1,2]", None),
                delete("new"),
                delete("never-existed"),
            ],
            now,
        )
        .await
        .unwrap();
        assert_eq!(
            session(store, "o_a", now).await,
            pairs(&[("flip", "\"y\""), ("keep", "1")])
        );

        // An empty change list is fine.
        b.session_apply("o_a", &[], now).await.unwrap();
        assert_eq!(session(store, "o_a", now).await.len(), 2);
    }

    pub async fn session_expiry(store: &Store) {
        let b = store.backend();
        let now = 50_000;
        b.session_apply(
            "o_t",
            &[
                set("past", "1", Some(now - 10)),
                set("at_now", "2", Some(now)),
                set("future", "3", Some(now + 600)),
                set("forever", "4", None),
            ],
            now,
        )
        .await
        .unwrap();
        assert_eq!(
            session(store, "o_t", now).await,
            pairs(&[("forever", "4"), ("future", "3")]),
            "a key expiring now is expired"
        );
        // Earlier, the expired ones were alive; later, only the one without expiry is.
        assert_eq!(session(store, "o_t", now - 20).await.len(), 4);
        assert_eq!(
            session(store, "o_t", now + 600).await,
            pairs(&[("forever", "4")])
        );

        // Rewriting an expired key with a later expiry revives it; dropping the expiry too.
        b.session_apply(
            "o_t",
            &[set("past", "5", Some(now + 1)), set("future", "6", None)],
            now,
        )
        .await
        .unwrap();
        assert_eq!(
            session(store, "o_t", now + 1_000).await,
            pairs(&[("forever", "4"), ("future", "6")])
        );
        assert_eq!(
            session(store, "o_t", now).await,
            pairs(&[("forever", "4"), ("future", "6"), ("past", "5")])
        );
    }

    pub async fn session_overwrite(store: &Store) {
        let b = store.backend();
        b.session_apply("o_o", &[set("k", "\"first\"", Some(900))], 100)
            .await
            .unwrap();
        b.session_apply("o_o", &[set("k", "\"second\"", None)], 200)
            .await
            .unwrap();
        assert_eq!(
            session(store, "o_o", 1_000).await,
            pairs(&[("k", "\"second\"")]),
            "the overwrite replaced the value and its expiry"
        );
        // And the other way: a key without expiry gets one.
        b.session_apply("o_o", &[set("k", "\"third\"", Some(300))], 200)
            .await
            .unwrap();
        assert_eq!(
            session(store, "o_o", 299).await,
            pairs(&[("k", "\"third\"")])
        );
        assert!(session(store, "o_o", 300).await.is_empty());
    }

    pub async fn session_users_are_isolated(store: &Store) {
        let b = store.backend();
        let now = 1_000;
        b.session_apply("o_alice", &[set("k", "\"alice\"", None)], now)
            .await
            .unwrap();
        b.session_apply(
            "o_bob",
            &[set("k", "\"bob\"", None), set("b", "1", None)],
            now,
        )
        .await
        .unwrap();
        assert_eq!(
            session(store, "o_alice", now).await,
            pairs(&[("k", "\"alice\"")])
        );
        assert_eq!(
            session(store, "o_bob", now).await,
            pairs(&[("b", "1"), ("k", "\"bob\"")])
        );
        b.session_apply("o_bob", &[delete("k")], now).await.unwrap();
        assert_eq!(
            session(store, "o_alice", now).await,
            pairs(&[("k", "\"alice\"")]),
            "deleting bob's key leaves alice's"
        );
        assert!(session(store, "o_carol", now).await.is_empty());
    }

    // --- batch writes ----------------------------------------------------------------------

    pub async fn log_round_trip_newest_first(store: &Store) {
        let b = store.backend();
        assert!(b.recent_log(10).await.unwrap().is_empty());
        let first = LogEntry {
            received_at: 1_700_000_100,
            openid: "o_ev".into(),
            msg_type: "event".into(),
            event: Some("subscribe".into()),
            msg_id: None,
            summary: None,
            reply_type: "success".into(),
            outcome: "late".into(),
            rule: None,
            latency_ms: Some(5_012),
            reply: None,
        };
        let second = LogEntry {
            received_at: 1_700_000_050, // older than the first: order is arrival, not time
            openid: "o_txt".into(),
            msg_type: "text".into(),
            event: None,
            msg_id: Some(u64::MAX.to_string()),
            summary: Some("你好 <xml> & \"quotes\"".into()),
            reply_type: "news".into(),
            outcome: "answered".into(),
            rule: Some("rules/20-news.rhai:14".into()),
            latency_ms: None,
            reply: Some("Title 1 | 标题 2".into()),
        };
        let third = log_entry(3);
        b.write_batch(&[Deferred::Log(first.clone()), Deferred::Log(second.clone())])
            .await
            .unwrap();
        b.write_batch(&[Deferred::Log(third.clone())])
            .await
            .unwrap();

        assert_eq!(
            b.recent_log(10).await.unwrap(),
            vec![third.clone(), second.clone(), first]
        );
        assert_eq!(b.recent_log(2).await.unwrap(), vec![third, second]);
        assert!(b.recent_log(0).await.unwrap().is_empty());
    }

    pub async fn dedup_upsert_and_changes(store: &Store) {
        let b = store.backend();
        b.write_batch(&[
            Deferred::Dedup(dedup("k1", "proc-a", "running", None, 1_000)),
            Deferred::Dedup(dedup(
                "k2",
                "proc-b",
                "answered",
                Some("{\"type\":\"text\"}"),
                1_010,
            )),
            Deferred::Dedup(dedup("k3", "proc-b", "late", None, 900)),
        ])
        .await
        .unwrap();
        // The second write of k1 updates every field.
        b.write_batch(&[Deferred::Dedup(dedup(
            "k1",
            "proc-c",
            "answered",
            Some("{\"type\":\"success\"}"),
            1_020,
        ))])
        .await
        .unwrap();
        assert_eq!(
            dedup_all(store).await,
            vec![
                dedup(
                    "k1",
                    "proc-c",
                    "answered",
                    Some("{\"type\":\"success\"}"),
                    1_020
                ),
                dedup(
                    "k2",
                    "proc-b",
                    "answered",
                    Some("{\"type\":\"text\"}"),
                    1_010
                ),
                dedup("k3", "proc-b", "late", None, 900),
            ],
            "upserted, not duplicated"
        );
        // Looked up by key, several at once; unknown keys are left out.
        let mut found = b
            .dedup_get_many(&["k3".into(), "k1".into(), "nope".into(), "k3".into()])
            .await
            .unwrap();
        found.sort_by(|a, b| a.key.cmp(&b.key));
        found.dedup_by(|a, b| a.key == b.key);
        assert_eq!(
            found,
            vec![
                dedup(
                    "k1",
                    "proc-c",
                    "answered",
                    Some("{\"type\":\"success\"}"),
                    1_020
                ),
                dedup("k3", "proc-b", "late", None, 900),
            ]
        );
        assert_eq!(
            store.dedup_record("k2").await.unwrap().map(|r| r.owner),
            Some("proc-b".to_owned())
        );
        assert_eq!(store.dedup_record("k9").await.unwrap(), None);

        let changes = |since: i64, owner: &'static str| async move {
            let mut v = b.dedup_changes(since, owner).await.unwrap();
            v.sort_by(|a, b| a.key.cmp(&b.key));
            v.into_iter().map(|r| r.key).collect::<Vec<_>>()
        };
        // Another owner's changes at or after `since`.
        assert_eq!(changes(1_000, "proc-a").await, ["k1", "k2"]);
        assert_eq!(
            changes(1_000, "proc-c").await,
            ["k2"],
            "own records excluded"
        );
        assert_eq!(
            changes(1_010, "proc-a").await,
            ["k1", "k2"],
            "since is inclusive"
        );
        assert_eq!(changes(1_011, "proc-a").await, ["k1"]);
        assert_eq!(changes(1_021, "proc-a").await, Vec::<String>::new());
        assert_eq!(changes(0, "proc-b").await, ["k1"]);
        assert_eq!(changes(0, "proc-z").await, ["k1", "k2", "k3"]);
    }

    // --- the batch writer ------------------------------------------------------------------

    pub async fn writer_flush_makes_writes_visible(store: &Store) {
        store.flush().await.expect("flushing nothing is fine");
        store.defer(Deferred::Log(log_entry(1)));
        store.defer(Deferred::Dedup(dedup("wk", "me", "running", None, 77)));
        store.defer(Deferred::Seen {
            openid: "o_deferred".into(),
            at: 88,
        });
        store.flush().await.expect("flush");
        assert_eq!(
            store.backend().recent_log(10).await.unwrap(),
            vec![log_entry(1)]
        );
        assert_eq!(
            dedup_all(store).await,
            vec![dedup("wk", "me", "running", None, 77)]
        );
        assert_eq!(follower(store, "o_deferred").await.last_seen_at, Some(88));

        // And again: the writer keeps going after a flush.
        store.defer(Deferred::Log(log_entry(2)));
        store.flush().await.unwrap();
        assert_eq!(
            store.backend().recent_log(10).await.unwrap(),
            vec![log_entry(2), log_entry(1)]
        );
    }

    pub async fn writer_many_writes_all_land(store: &Store) {
        const N: i64 = 2_000;
        for n in 0..N {
            store.defer(Deferred::Log(log_entry(n)));
            if n % 3 == 0 {
                store.defer(Deferred::Seen {
                    openid: "o_busy".into(),
                    at: n,
                });
            }
        }
        store.flush().await.unwrap();
        let log = store.backend().recent_log(10_000).await.unwrap();
        assert_eq!(log.len(), N as usize);
        let expected: Vec<LogEntry> = (0..N).rev().map(log_entry).collect();
        assert!(log == expected, "every write landed, in order");
        assert_eq!(
            follower(store, "o_busy").await.last_seen_at,
            Some((N - 1) / 3 * 3)
        );

        // From several tasks at once, too.
        let tasks: Vec<_> = (0..4)
            .map(|t| {
                let store = store.clone();
                tokio::spawn(async move {
                    for n in 0..250 {
                        store.defer(Deferred::Log(log_entry(N + t * 1_000 + n)));
                    }
                    store.flush().await.unwrap();
                })
            })
            .collect();
        for t in tasks {
            t.await.unwrap();
        }
        store.flush().await.unwrap();
        assert_eq!(
            store.backend().recent_log(10_000).await.unwrap().len(),
            N as usize + 1_000
        );
    }

    // --- blocklist -------------------------------------------------------------------------

    pub async fn blocklist(store: &Store) {
        let b = store.backend();
        let blocked = || async {
            let mut v = b.blocked_users().await.unwrap();
            v.sort();
            v
        };
        assert!(blocked().await.is_empty());
        b.block_user("o_spam", "spam", 100).await.unwrap();
        b.block_user("o_abuse", "", 100).await.unwrap();
        assert_eq!(blocked().await, ["o_abuse", "o_spam"]);

        b.block_user("o_spam", "more spam", 200).await.unwrap();
        assert_eq!(
            blocked().await,
            ["o_abuse", "o_spam"],
            "re-blocking adds no row"
        );

        b.unblock_user("o_spam").await.unwrap();
        assert_eq!(blocked().await, ["o_abuse"]);
        b.unblock_user("o_spam")
            .await
            .expect("unblocking twice is fine");
        b.unblock_user("o_never")
            .await
            .expect("unblocking a stranger is fine");
        assert_eq!(blocked().await, ["o_abuse"]);
        b.block_user("o_spam", "back", 300).await.unwrap();
        assert_eq!(blocked().await, ["o_abuse", "o_spam"]);
    }

    // --- prune -----------------------------------------------------------------------------

    pub async fn prune_by_cutoffs(store: &Store) {
        let b = store.backend();
        let at = |t: i64| {
            let mut e = log_entry(t);
            e.received_at = t;
            e
        };
        b.write_batch(&[
            Deferred::Log(at(100)),
            Deferred::Log(at(199)),
            Deferred::Log(at(200)),
            Deferred::Log(at(300)),
            Deferred::Dedup(dedup("old", "p", "answered", None, 50)),
            Deferred::Dedup(dedup("edge", "p", "answered", None, 60)),
            Deferred::Dedup(dedup("new", "p", "running", None, 61)),
        ])
        .await
        .unwrap();
        let now = 1_000;
        b.session_apply(
            "o_p",
            &[
                set("expired", "1", Some(now - 1)),
                set("expiring_now", "2", Some(now)),
                set("alive", "3", Some(now + 1)),
                set("forever", "4", None),
            ],
            now,
        )
        .await
        .unwrap();
        b.session_apply("o_q", &[set("expired", "1", Some(10))], now)
            .await
            .unwrap();

        let pruned = b.prune(200, 60, i64::MIN, now).await.unwrap();
        assert_eq!(
            pruned,
            Pruned {
                log: 2,
                dedup: 1,
                sessions: 3,
                replay: 0,
                counts: 0,
            }
        );
        let times: Vec<i64> = b
            .recent_log(10)
            .await
            .unwrap()
            .iter()
            .map(|e| e.received_at)
            .collect();
        assert_eq!(times, [300, 200], "rows at the cutoff stay");
        let keys: Vec<String> = dedup_all(store).await.into_iter().map(|r| r.key).collect();
        assert_eq!(keys, ["edge", "new"]);
        // Expired rows are gone from the table itself, not just hidden: an early `now` sees
        // only what is left.
        assert_eq!(
            session(store, "o_p", 0).await,
            pairs(&[("alive", "3"), ("forever", "4")])
        );
        assert!(session(store, "o_q", 0).await.is_empty());

        assert_eq!(
            b.prune(200, 60, i64::MIN, now).await.unwrap(),
            Pruned::default(),
            "pruning twice removes nothing more"
        );
    }

    pub async fn store_prune_keeps_log_when_retention_is_zero(store: &Store) {
        let now = unix_now();
        let mut ancient = log_entry(1);
        ancient.received_at = 1;
        let mut minimal = log_entry(2);
        minimal.received_at = i64::MIN + 1;
        store
            .backend()
            .write_batch(&[
                Deferred::Log(ancient.clone()),
                Deferred::Log(minimal.clone()),
                Deferred::Dedup(dedup("stale", "p", "answered", None, now - 3_601)),
            ])
            .await
            .unwrap();
        let pruned = store.prune(0).await.unwrap();
        assert_eq!(pruned.log, 0, "0 keeps the log forever");
        assert_eq!(pruned.dedup, 1, "dedup records still go");
        assert_eq!(
            store.backend().recent_log(10).await.unwrap(),
            vec![minimal, ancient]
        );
    }

    pub async fn store_prune_by_retention(store: &Store) {
        let now = unix_now();
        let day = 86_400;
        let mut old = log_entry(1);
        old.received_at = now - 8 * day;
        let mut recent = log_entry(2);
        recent.received_at = now - 6 * day;
        let mut fresh = log_entry(3);
        fresh.received_at = now;
        store
            .backend()
            .write_batch(&[
                Deferred::Log(old),
                Deferred::Log(recent.clone()),
                Deferred::Log(fresh.clone()),
                Deferred::Dedup(dedup("two_hours", "p", "answered", None, now - 7_200)),
                Deferred::Dedup(dedup("minute", "p", "running", None, now - 60)),
            ])
            .await
            .unwrap();
        store
            .backend()
            .session_apply(
                "o_r",
                &[
                    set("expired", "1", Some(now - 60)),
                    set("alive", "2", Some(now + 3_600)),
                    set("forever", "3", None),
                ],
                now,
            )
            .await
            .unwrap();

        let pruned = store.prune(7).await.unwrap();
        assert_eq!(
            pruned,
            Pruned {
                log: 1,
                dedup: 1,
                sessions: 1,
                replay: 0,
                counts: 0,
            }
        );
        assert_eq!(
            store.backend().recent_log(10).await.unwrap(),
            vec![fresh, recent]
        );
        let keys: Vec<String> = dedup_all(store).await.into_iter().map(|r| r.key).collect();
        assert_eq!(keys, ["minute"]);
        assert_eq!(
            session(store, "o_r", 0).await,
            pairs(&[("alive", "2"), ("forever", "3")])
        );
    }

    // --- push: topics, keys, pushes and their delivery -------------------------------------

    /// The push tests' clock: `T` in seconds (`created_at`, `now`), `T_MS` the same instant in
    /// milliseconds (`next_at`, `lease_until`, `now_ms`).
    const T: i64 = 1_700_000_000;
    const T_MS: i64 = T * 1_000;

    fn strings(s: &[&str]) -> Vec<String> {
        s.iter().map(|s| s.to_string()).collect()
    }

    fn key_row(key_hash: &str, key: &str, kind: &str, target: &str, created_at: i64) -> KeyRow {
        KeyRow {
            key_hash: key_hash.into(),
            key_prefix: key.chars().take(6).collect(),
            kind: kind.into(),
            target: target.into(),
            label: format!("{kind} key"),
            created_at,
            revoked_at: None,
        }
    }

    /// A plain push (no key, url or summary) of `id` to `target`, accepted at `created_at`.
    fn new_push<'a>(
        id: &'a str,
        target: &'a str,
        created_at: i64,
        recipients: &'a [String],
    ) -> NewPush<'a> {
        NewPush {
            id,
            key_hash: None,
            target,
            title: "title",
            body: "body",
            url: None,
            summary: None,
            source: "api",
            created_at,
            recipients,
        }
    }

    /// Stores a plain push; its seq.
    async fn push(store: &Store, id: &str, target: &str, created_at: i64, to: &[&str]) -> i64 {
        let recipients = strings(to);
        store
            .backend()
            .push_insert(&new_push(id, target, created_at, &recipients))
            .await
            .unwrap_or_else(|e| panic!("push {id} is stored: {e}"))
    }

    async fn recipients(store: &Store, seq: i64) -> Vec<RecipientRow> {
        store
            .backend()
            .push_recipients(seq)
            .await
            .expect("recipients read")
    }

    async fn recipient(store: &Store, seq: i64, openid: &str) -> RecipientRow {
        recipients(store, seq)
            .await
            .into_iter()
            .find(|r| r.openid == openid)
            .unwrap_or_else(|| panic!("{openid} is a recipient of push {seq}"))
    }

    /// A push's recipients as `(openid, state)`, by openid.
    async fn states(store: &Store, seq: i64) -> Vec<(String, String)> {
        recipients(store, seq)
            .await
            .into_iter()
            .map(|r| (r.openid, r.state))
            .collect()
    }

    /// Claims for `owner`, sorted by push and openid (the backend promises no order).
    async fn claim(
        store: &Store,
        owner: &str,
        now_ms: i64,
        lease_until_ms: i64,
        limit: u32,
    ) -> Vec<Claimed> {
        let mut claimed = store
            .backend()
            .push_claim(owner, now_ms, lease_until_ms, limit)
            .await
            .expect("claim");
        claimed.sort_by(|a, b| (a.push_seq, &a.openid).cmp(&(b.push_seq, &b.openid)));
        claimed
    }

    fn openids(claimed: &[Claimed]) -> Vec<&str> {
        claimed.iter().map(|c| c.openid.as_str()).collect()
    }

    fn outcome(push_seq: i64, openid: &str, attempt: Attempt) -> Outcome {
        Outcome {
            push_seq,
            openid: openid.into(),
            attempt,
        }
    }

    fn sent(msgid: i64) -> Attempt {
        Attempt::Sent { msgid: Some(msgid) }
    }

    fn retry(next_at: i64, error: &str) -> Attempt {
        Attempt::Retry {
            next_at,
            error: error.into(),
        }
    }

    fn failed(error: &str) -> Attempt {
        Attempt::Failed {
            error: error.into(),
        }
    }

    async fn settle(store: &Store, owner: &str, outcomes: &[Outcome], now: i64) {
        store
            .backend()
            .push_settle(owner, outcomes, now)
            .await
            .expect("outcomes recorded");
    }

    async fn queue_depth(store: &Store) -> u64 {
        store
            .backend()
            .push_queue_depth()
            .await
            .expect("queue depth reads")
    }

    async fn next_due(store: &Store) -> Option<i64> {
        store
            .backend()
            .push_next_due()
            .await
            .expect("next due reads")
    }

    pub async fn push_topics_and_members(store: &Store) {
        let b = store.backend();
        assert_eq!(b.topic("news").await.unwrap(), None);
        assert!(b.topics().await.unwrap().is_empty());

        assert!(
            b.topic_create("news", true, "Daily news ✓", T)
                .await
                .unwrap()
        );
        assert!(
            !b.topic_create("news", false, "changed", T + 1)
                .await
                .unwrap(),
            "a second create finds it"
        );
        assert!(b.topic_create("alerts", false, "", T + 2).await.unwrap());
        let news = Topic {
            name: "news".into(),
            open: true,
            description: "Daily news ✓".into(),
            created_at: T,
            members: 0,
            num: 1,
            app_id: None,
        };
        assert_eq!(
            b.topic("news").await.unwrap(),
            Some(news.clone()),
            "the second create changed nothing"
        );
        let alerts = Topic {
            name: "alerts".into(),
            open: false,
            description: "".into(),
            created_at: T + 2,
            members: 0,
            num: 2,
            app_id: None,
        };
        assert_eq!(
            b.topics().await.unwrap(),
            vec![alerts.clone(), news.clone()],
            "by name"
        );

        // Members.
        assert!(b.topic_join("news", "o_a", T + 10).await.unwrap());
        assert!(
            !b.topic_join("news", "o_a", T + 11).await.unwrap(),
            "joining twice adds no member"
        );
        assert!(b.topic_join("news", "o_b", T + 12).await.unwrap());
        assert!(b.topic_join("news", "o_c", T + 13).await.unwrap());
        assert!(b.topic_join("alerts", "o_a", T + 14).await.unwrap());
        assert_eq!(
            b.topics_of("o_a").await.unwrap(),
            ["alerts", "news"],
            "sorted, not in joining order"
        );
        assert!(b.topics_of("o_nobody").await.unwrap().is_empty());
        assert_eq!(b.topic("news").await.unwrap().unwrap().members, 3);
        assert_eq!(b.topic("alerts").await.unwrap().unwrap().members, 1);
        let members = |topic: &'static str| async move {
            let mut m = b.topic_members(topic).await.unwrap();
            m.sort();
            m
        };
        assert_eq!(members("news").await, ["o_a", "o_b", "o_c"]);
        assert!(members("no_such_topic").await.is_empty());

        // A member who unfollows stays a member but is not sent to; following again brings
        // them back. (o_a, never seen as a follower, has not unfollowed.)
        b.follower_subscribed("o_b", T, None).await.unwrap();
        b.follower_subscribed("o_c", T, None).await.unwrap();
        b.follower_unsubscribed("o_c", T + 20).await.unwrap();
        assert_eq!(members("news").await, ["o_a", "o_b"]);
        assert_eq!(b.topics_of("o_c").await.unwrap(), ["news"]);
        b.follower_subscribed("o_c", T + 30, None).await.unwrap();
        assert_eq!(members("news").await, ["o_a", "o_b", "o_c"]);
        // A follower from before huixin, known only from a message (no subscribe event on
        // record), is a follower all the same.
        b.write_batch(&[Deferred::Seen {
            openid: "o_a".into(),
            at: T + 31,
        }])
        .await
        .unwrap();
        assert_eq!(members("news").await, ["o_a", "o_b", "o_c"]);

        // Leaving.
        assert!(b.topic_leave("news", "o_b").await.unwrap());
        assert!(
            !b.topic_leave("news", "o_b").await.unwrap(),
            "leaving twice"
        );
        assert!(!b.topic_leave("news", "o_nobody").await.unwrap());
        assert!(
            !b.topic_leave("alerts", "o_c").await.unwrap(),
            "not a member there"
        );
        assert_eq!(members("news").await, ["o_a", "o_c"]);
        assert!(b.topics_of("o_b").await.unwrap().is_empty());
        assert_eq!(b.topic("news").await.unwrap().unwrap().members, 2);

        // Deleting takes the topic's members and keys with it, and nothing else.
        let news_key = key_row("h_news", "tkNews0001", "topic", "news", T);
        let alerts_key = key_row("h_alerts", "tkAlrt0001", "topic", "alerts", T);
        let user_key = key_row("h_user", "ukUser0001", "user", "news", T);
        for key in [&news_key, &alerts_key, &user_key] {
            b.key_insert(key).await.unwrap();
        }
        assert!(b.topic_delete("news").await.unwrap());
        assert!(!b.topic_delete("news").await.unwrap(), "deleting twice");
        assert!(!b.topic_delete("never").await.unwrap());
        assert_eq!(b.topic("news").await.unwrap(), None);
        assert_eq!(
            b.topics().await.unwrap(),
            vec![Topic {
                members: 1,
                ..alerts
            }]
        );
        assert!(members("news").await.is_empty(), "the members are gone");
        assert_eq!(b.topics_of("o_a").await.unwrap(), ["alerts"]);
        assert!(b.topics_of("o_c").await.unwrap().is_empty());
        assert_eq!(
            b.key_by_hash("h_news").await.unwrap(),
            None,
            "its key is gone"
        );
        assert_eq!(b.key_by_hash("h_alerts").await.unwrap(), Some(alerts_key));
        assert_eq!(
            b.key_by_hash("h_user").await.unwrap(),
            Some(user_key),
            "a user key whose target looks like the topic's name stays"
        );

        // A topic of the same name later starts empty.
        assert!(
            b.topic_create("news", false, "again", T + 100)
                .await
                .unwrap()
        );
        assert_eq!(b.topic("news").await.unwrap().unwrap().members, 0);
        assert!(members("news").await.is_empty());
    }

    pub async fn replay_records_kept_until_they_expire(store: &Store) {
        let b = store.backend();
        let record = ReplayRecord {
            timestamp: T.to_string(),
            nonce: "n1".into(),
            request_hash: "ab".repeat(20),
            expires_at: T + 300,
        };
        store.defer(Deferred::Replay(record.clone()));
        // The first request stored keeps the pair.
        store.defer(Deferred::Replay(ReplayRecord {
            request_hash: "cd".repeat(20),
            ..record.clone()
        }));
        store.flush().await.unwrap();
        let ts = T.to_string();
        assert_eq!(
            b.replay_get(&ts, "n1", T + 300).await.unwrap(),
            Some(record.clone())
        );
        assert_eq!(b.replay_get(&ts, "n2", T).await.unwrap(), None);
        assert_eq!(
            b.replay_get(&ts, "n1", T + 301).await.unwrap(),
            None,
            "expired"
        );
        assert_eq!(b.prune(0, 0, i64::MIN, T + 300).await.unwrap().replay, 0);
        assert_eq!(b.prune(0, 0, i64::MIN, T + 301).await.unwrap().replay, 1);
        assert_eq!(b.replay_get(&ts, "n1", T).await.unwrap(), None, "pruned");
    }

    pub async fn push_keys_lookup_and_revoke(store: &Store) {
        let b = store.backend();
        assert!(b.keys().await.unwrap().is_empty());
        assert_eq!(b.key_for("user", "o_a").await.unwrap(), None);

        let user_old = key_row("h_u1", "uk7Qp2aaaa", "user", "o_a", T + 100);
        let user_new = key_row("h_u2", "uk7Qp2bbbb", "user", "o_a", T + 200);
        let topic = key_row("h_t", "tk9Zx4cccc", "topic", "news", T + 150);
        let admin = key_row("h_adm", "ak3Lm8dddd", "admin", "", T + 120);
        let revoked = KeyRow {
            revoked_at: Some(T + 95),
            ..key_row("h_u0", "uk7Qp2zzzz", "user", "o_b", T + 90)
        };
        for key in [&user_old, &user_new, &topic, &admin, &revoked] {
            b.key_insert(key).await.unwrap();
        }

        assert_eq!(b.key_by_hash("h_t").await.unwrap(), Some(topic.clone()));
        assert_eq!(
            b.key_by_hash("h_u0").await.unwrap(),
            Some(revoked.clone()),
            "revoked or not"
        );
        assert_eq!(b.key_by_hash("h_missing").await.unwrap(), None);

        assert_eq!(
            b.key_for("user", "o_a").await.unwrap(),
            Some(user_new.clone()),
            "the newest of two"
        );
        assert_eq!(
            b.key_for("topic", "news").await.unwrap(),
            Some(topic.clone())
        );
        assert_eq!(b.key_for("admin", "").await.unwrap(), Some(admin.clone()));
        assert_eq!(
            b.key_for("user", "o_b").await.unwrap(),
            None,
            "its only key is revoked"
        );
        assert_eq!(
            b.key_for("topic", "o_a").await.unwrap(),
            None,
            "the kind must match"
        );

        let hashes =
            |keys: Vec<KeyRow>| -> Vec<String> { keys.into_iter().map(|k| k.key_hash).collect() };
        assert_eq!(
            hashes(b.keys().await.unwrap()),
            ["h_u2", "h_t", "h_adm", "h_u1", "h_u0"],
            "newest first, revoked ones too"
        );

        // A hash is stored once.
        assert!(
            b.key_insert(&key_row("h_t", "other00000", "user", "o_z", T + 300))
                .await
                .is_err(),
            "a second key with the same hash is refused"
        );
        assert_eq!(b.key_by_hash("h_t").await.unwrap(), Some(topic.clone()));
        assert_eq!(b.keys().await.unwrap().len(), 5);

        // Revoking by prefix: at least 6 characters, taken literally, case and all.
        let now = T + 500;
        assert_eq!(
            b.key_revoke("uk7Qp", now).await.unwrap(),
            0,
            "5 characters are too few"
        );
        assert_eq!(b.key_revoke("", now).await.unwrap(), 0);
        assert_eq!(
            b.key_revoke("______", now).await.unwrap(),
            0,
            "no wildcards"
        );
        assert_eq!(
            b.key_revoke("uk7Qp%", now).await.unwrap(),
            0,
            "no wildcards"
        );
        assert_eq!(
            b.key_revoke("UK7QP2", now).await.unwrap(),
            0,
            "case matters"
        );
        assert_eq!(
            b.key_revoke("uk7Qp2a", now).await.unwrap(),
            0,
            "only the first 6 characters are stored: 7 cannot be checked"
        );
        assert_eq!(
            b.key_for("user", "o_a").await.unwrap(),
            Some(user_new.clone())
        );

        assert_eq!(
            b.key_revoke("uk7Qp2", now).await.unwrap(),
            2,
            "both of o_a's keys; o_b's was revoked already"
        );
        assert_eq!(b.key_for("user", "o_a").await.unwrap(), None);
        for key in [&user_old, &user_new] {
            assert_eq!(
                b.key_by_hash(&key.key_hash).await.unwrap(),
                Some(KeyRow {
                    revoked_at: Some(now),
                    ..key.clone()
                })
            );
        }
        assert_eq!(
            b.key_by_hash("h_u0").await.unwrap().unwrap().revoked_at,
            Some(T + 95),
            "an earlier revocation keeps its time"
        );
        assert_eq!(
            b.key_revoke("uk7Qp2", now + 1).await.unwrap(),
            0,
            "revoking twice"
        );
        assert_eq!(
            b.key_by_hash("h_u1").await.unwrap().unwrap().revoked_at,
            Some(now)
        );

        // By hash (a key given whole); the others are untouched.
        assert_eq!(b.key_revoke_hash("h_t", now + 2).await.unwrap(), 1);
        assert_eq!(
            b.key_revoke_hash("h_t", now + 3).await.unwrap(),
            0,
            "revoking twice"
        );
        assert_eq!(b.key_for("topic", "news").await.unwrap(), None);
        assert_eq!(b.key_for("admin", "").await.unwrap(), Some(admin));
        let revoked_at: Vec<Option<i64>> = b
            .keys()
            .await
            .unwrap()
            .into_iter()
            .map(|k| k.revoked_at)
            .collect();
        assert_eq!(
            revoked_at,
            [Some(now), Some(now + 2), None, Some(now), Some(T + 95)],
            "h_u2, h_t, h_adm, h_u1, h_u0: still listed"
        );

        // A new key for the target is found again.
        let fresh = key_row("h_u3", "uk5Rr1eeee", "user", "o_a", T + 600);
        b.key_insert(&fresh).await.unwrap();
        assert_eq!(b.key_for("user", "o_a").await.unwrap(), Some(fresh));
    }

    pub async fn push_insert_stores_recipients_once(store: &Store) {
        let b = store.backend();
        let to = strings(&["o_b", "o_a", "o_b", "o_c", "o_a"]);
        let full = NewPush {
            id: "pAbC123",
            key_hash: Some("h_key"),
            target: "topic:news",
            title: "Deploy finished ✓",
            body: "**main** <b>is</b> live & \"green\"\n\n- one\n- two",
            url: Some("https://example.com/build?id=7&x=y"),
            summary: Some("main is live"),
            source: "bark",
            created_at: T,
            recipients: &to,
        };
        let seq = b.push_insert(&full).await.unwrap();
        let row = PushRow {
            seq,
            id: "pAbC123".into(),
            key_hash: Some("h_key".into()),
            target: "topic:news".into(),
            title: "Deploy finished ✓".into(),
            body: "**main** <b>is</b> live & \"green\"\n\n- one\n- two".into(),
            url: Some("https://example.com/build?id=7&x=y".into()),
            summary: Some("main is live".into()),
            source: "bark".into(),
            created_at: T,
        };
        assert_eq!(b.push_by_id("pAbC123").await.unwrap(), Some(row.clone()));
        assert_eq!(b.push_by_seq(seq).await.unwrap(), Some(row));

        let pending = |openid: &str| RecipientRow {
            openid: openid.into(),
            state: "pending".into(),
            attempts: 0,
            msgid: None,
            error: None,
            updated_at: T,
        };
        assert_eq!(
            recipients(store, seq).await,
            vec![pending("o_a"), pending("o_b"), pending("o_c")],
            "each recipient once, by openid, all pending"
        );

        // Without the optional fields, and without recipients.
        let seq2 = b
            .push_insert(&new_push("pEmpty1", "users:0", T + 5, &[]))
            .await
            .unwrap();
        assert!(seq2 > seq, "seq follows acceptance: {seq} then {seq2}");
        let row2 = b.push_by_seq(seq2).await.unwrap().expect("stored");
        assert_eq!(
            (row2.key_hash, row2.url, row2.summary),
            (None, None, None),
            "absent stays absent"
        );
        assert_eq!((row2.id.as_str(), row2.created_at), ("pEmpty1", T + 5));
        assert!(recipients(store, seq2).await.is_empty());
        assert_eq!(b.push_by_id("pNothing").await.unwrap(), None);
        assert_eq!(b.push_by_seq(seq2 + 1_000).await.unwrap(), None);

        // A public id is used once; the first push keeps its recipients.
        let others = strings(&["o_z"]);
        assert!(
            b.push_insert(&new_push("pAbC123", "user:o_z", T + 6, &others))
                .await
                .is_err(),
            "a second push with the same id is refused"
        );
        assert_eq!(states(store, seq).await.len(), 3);

        // Many recipients (more than one insert statement's worth), with repeats near and far.
        let mut many: Vec<String> = (0..1_200).map(|i| format!("o_{i:04}")).collect();
        many[10] = many[9].clone();
        many[1_100] = many[2].clone();
        let seq3 = b
            .push_insert(&new_push("pMany01", "users:1200", T + 7, &many))
            .await
            .unwrap();
        let stored = recipients(store, seq3).await;
        assert_eq!(stored.len(), 1_198, "each repeat stored once");
        assert!(
            stored
                .iter()
                .all(|r| r.state == "pending" && r.attempts == 0)
        );

        // Every recipient has its own client_msg_id, `{id}-{index}` of its first place in the
        // list.
        let claimed = claim(store, "w", T_MS, T_MS + 30_000, 5_000).await;
        assert_eq!(claimed.len(), 3 + 1_198);
        let ids_of = |seq: i64| -> std::collections::BTreeMap<String, String> {
            claimed
                .iter()
                .filter(|c| c.push_seq == seq)
                .map(|c| (c.openid.clone(), c.client_msg_id.clone()))
                .collect()
        };
        let expected = |id: &str, list: &[String]| {
            let mut m = std::collections::BTreeMap::new();
            for (i, openid) in list.iter().enumerate() {
                m.entry(openid.clone()).or_insert(format!("{id}-{i}"));
            }
            m
        };
        assert_eq!(ids_of(seq), expected("pAbC123", &to));
        assert_eq!(
            ids_of(seq),
            [
                ("o_a", "pAbC123-1"),
                ("o_b", "pAbC123-0"),
                ("o_c", "pAbC123-3")
            ]
            .into_iter()
            .map(|(o, c)| (o.to_string(), c.to_string()))
            .collect()
        );
        assert_eq!(ids_of(seq3), expected("pMany01", &many));
        let distinct: BTreeSet<&str> = claimed.iter().map(|c| c.client_msg_id.as_str()).collect();
        assert_eq!(distinct.len(), claimed.len(), "client_msg_ids are distinct");
    }

    pub async fn push_claim_leases_and_takes_over_expired(store: &Store) {
        let seq = push(
            store,
            "pClaim1",
            "users:5",
            T,
            &["o_1", "o_2", "o_3", "o_4", "o_5"],
        )
        .await;
        let lease = T_MS + 30_000;

        assert!(
            claim(store, "w0", T_MS, lease, 0).await.is_empty(),
            "a limit of 0 claims nothing"
        );
        let first = claim(store, "w1", T_MS, lease, 2).await;
        assert_eq!(first.len(), 2, "at most the limit: {first:?}");
        let second = claim(store, "w2", T_MS + 1, lease, 10).await;
        assert_eq!(second.len(), 3, "the rest: {second:?}");
        let mut all: Vec<&str> = openids(&first);
        all.extend(openids(&second));
        all.sort();
        assert_eq!(
            all,
            ["o_1", "o_2", "o_3", "o_4", "o_5"],
            "each row claimed by exactly one owner"
        );
        assert!(
            first
                .iter()
                .chain(&second)
                .all(|c| c.push_seq == seq && c.attempts == 1),
            "first attempts: {first:?} {second:?}"
        );
        assert!(
            claim(store, "w3", T_MS + 2, lease, 10).await.is_empty(),
            "everything is leased"
        );
        for r in recipients(store, seq).await {
            assert_eq!(
                (r.state.as_str(), r.attempts, r.updated_at),
                ("sending", 1, T),
                "{}",
                r.openid
            );
        }

        // w1 finishes its rows: one accepted, one to retry in a minute. w2 goes quiet.
        let (done, again) = (&first[0].openid, &first[1].openid);
        settle(
            store,
            "w1",
            &[
                outcome(seq, done, sent(1_001)),
                outcome(seq, again, retry(T_MS + 60_000, "-1 system busy")),
            ],
            T + 1,
        )
        .await;
        assert!(
            claim(store, "w3", T_MS + 29_999, T_MS + 90_000, 10)
                .await
                .is_empty(),
            "w2's lease has not run out and the retry is not due"
        );

        // From the end of w2's lease its rows are anyone's, with the same client_msg_id.
        let taken = claim(store, "w3", lease, T_MS + 90_000, 10).await;
        let before: Vec<(&str, &str)> = second
            .iter()
            .map(|c| (c.openid.as_str(), c.client_msg_id.as_str()))
            .collect();
        let after: Vec<(&str, &str)> = taken
            .iter()
            .map(|c| (c.openid.as_str(), c.client_msg_id.as_str()))
            .collect();
        assert_eq!(after, before, "w2's unsettled rows, nothing else");
        assert!(taken.iter().all(|c| c.attempts == 2), "{taken:?}");
        assert!(
            claim(store, "w4", lease + 1, T_MS + 90_000, 10)
                .await
                .is_empty(),
            "w3 holds them now"
        );

        // The retry is due at its next_at.
        let retried = claim(store, "w4", T_MS + 60_000, T_MS + 90_000, 10).await;
        assert_eq!(openids(&retried), [again.as_str()]);
        assert_eq!(retried[0].attempts, 2);
        assert_eq!(retried[0].client_msg_id, first[1].client_msg_id);

        // A row that was sent is never claimed again, however late.
        let late = claim(store, "w5", T_MS + 1_000_000, T_MS + 1_030_000, 10).await;
        let mut late_ids = openids(&late);
        late_ids.sort();
        let mut expected: Vec<&str> = second.iter().map(|c| c.openid.as_str()).collect();
        expected.push(again);
        expected.sort();
        assert_eq!(late_ids, expected, "all but the sent one, {done}");
        let sent_row = recipient(store, seq, done).await;
        assert_eq!(
            (sent_row.state.as_str(), sent_row.attempts, sent_row.msgid),
            ("sent", 1, Some(1_001))
        );
        for c in &late {
            assert_eq!(
                recipient(store, seq, &c.openid).await.attempts,
                c.attempts,
                "the claim returns the stored count"
            );
        }
        assert!(late.iter().all(|c| c.attempts == 3), "{late:?}");
    }

    pub async fn push_release_gives_back_the_attempt(store: &Store) {
        let seq = push(store, "pRelease", "users:2", T, &["o_1", "o_2"]).await;
        assert_eq!(claim(store, "w", T_MS, T_MS + 30_000, 10).await.len(), 2);
        // Stopping: o_1 was sent, o_2 never started.
        settle(
            store,
            "w",
            &[
                outcome(seq, "o_1", sent(1_001)),
                outcome(seq, "o_2", Attempt::Released),
            ],
            T + 1,
        )
        .await;
        let o_2 = recipient(store, seq, "o_2").await;
        assert_eq!(
            (o_2.state.as_str(), o_2.attempts, o_2.error.as_deref()),
            ("pending", 0, None),
            "back where it was, the attempt not counted"
        );
        let again = claim(store, "w2", T_MS + 1, T_MS + 30_000, 10).await;
        assert_eq!(openids(&again), ["o_2"], "due at once");
        assert_eq!(again[0].attempts, 1);
        // A release under a lease that is no longer ours changes nothing.
        settle(store, "w", &[outcome(seq, "o_2", Attempt::Released)], T + 2).await;
        assert_eq!(recipient(store, seq, "o_2").await.state, "sending");
    }

    pub async fn push_settle_after_a_takeover(store: &Store) {
        let seq = push(store, "pTakeover", "users:3", T, &["o_1", "o_2", "o_3"]).await;
        assert_eq!(claim(store, "old", T_MS, T_MS + 30_000, 10).await.len(), 3);
        // The lease runs out and another worker takes every row over.
        assert_eq!(
            claim(store, "new", T_MS + 30_000, T_MS + 60_000, 10)
                .await
                .len(),
            3
        );

        // The old worker's late failure and retry no longer count...
        settle(
            store,
            "old",
            &[
                outcome(seq, "o_1", failed("timed out")),
                outcome(seq, "o_2", retry(T_MS + 90_000, "-1 system busy")),
            ],
            T + 31,
        )
        .await;
        for openid in ["o_1", "o_2"] {
            let r = recipient(store, seq, openid).await;
            assert_eq!(
                (
                    r.state.as_str(),
                    r.attempts,
                    r.error.as_deref(),
                    r.updated_at
                ),
                ("sending", 2, None, T + 30),
                "{openid} stays with the new holder"
            );
        }
        // ...but a message WeChat took counts, whoever sent it.
        settle(store, "old", &[outcome(seq, "o_3", sent(3_001))], T + 32).await;

        // The new holder's outcomes apply; its answer for o_3 (a 45065: WeChat already had
        // it, no msgid) leaves the recorded msgid alone.
        settle(
            store,
            "new",
            &[
                outcome(seq, "o_1", sent(1_002)),
                outcome(seq, "o_2", failed("43004 require subscribe")),
                outcome(seq, "o_3", Attempt::Sent { msgid: None }),
            ],
            T + 33,
        )
        .await;
        let states: Vec<_> = recipients(store, seq)
            .await
            .into_iter()
            .map(|r| (r.openid, r.state, r.msgid, r.error, r.updated_at))
            .collect();
        assert_eq!(
            states,
            vec![
                ("o_1".into(), "sent".into(), Some(1_002), None, T + 33),
                (
                    "o_2".into(),
                    "failed".into(),
                    None,
                    Some("43004 require subscribe".into()),
                    T + 33
                ),
                ("o_3".into(), "sent".into(), Some(3_001), None, T + 32),
            ]
        );
    }

    pub async fn push_settle_batch_and_only_while_sending(store: &Store) {
        let b = store.backend();
        let seq = push(
            store,
            "pSettle",
            "users:5",
            T,
            &["o_1", "o_2", "o_3", "o_4", "o_5"],
        )
        .await;
        assert_eq!(claim(store, "w", T_MS, T_MS + 30_000, 10).await.len(), 5);

        settle(
            store,
            "w",
            &[
                outcome(seq, "o_1", sent(1_001)),
                outcome(seq, "o_2", Attempt::Sent { msgid: None }),
                outcome(seq, "o_3", retry(T_MS + 5_000, "-1 system busy")),
                outcome(seq, "o_4", failed("43004 require subscribe")),
            ],
            T + 1,
        )
        .await;
        let row =
            |openid: &str, state: &str, msgid: Option<i64>, error: Option<&str>| RecipientRow {
                openid: openid.into(),
                state: state.into(),
                attempts: 1,
                msgid,
                error: error.map(Into::into),
                updated_at: T + 1,
            };
        assert_eq!(
            recipients(store, seq).await,
            vec![
                row("o_1", "sent", Some(1_001), None),
                row("o_2", "sent", None, None),
                row("o_3", "pending", None, Some("-1 system busy")),
                row("o_4", "failed", None, Some("43004 require subscribe")),
                RecipientRow {
                    updated_at: T,
                    ..row("o_5", "sending", None, None)
                },
            ],
            "one batch, each outcome applied; o_5 had none"
        );

        // The retry is claimable from its next_at on, not before.
        assert!(
            claim(store, "w", T_MS + 4_999, T_MS + 40_000, 10)
                .await
                .is_empty(),
            "not yet due (and o_5 is still leased)"
        );
        let again = claim(store, "w", T_MS + 5_000, T_MS + 40_000, 10).await;
        assert_eq!(openids(&again), ["o_3"]);
        assert_eq!(again[0].attempts, 2);
        settle(store, "w", &[outcome(seq, "o_3", sent(1_003))], T + 6).await;
        let o_3 = recipient(store, seq, "o_3").await;
        assert_eq!(
            (o_3.state.as_str(), o_3.attempts, o_3.msgid, o_3.updated_at),
            ("sent", 2, Some(1_003), T + 6)
        );

        // A lease that ran out but was not taken over: the late outcome still counts.
        settle(
            store,
            "w",
            &[outcome(seq, "o_5", failed("45009 api limit"))],
            T + 40,
        )
        .await;
        assert_eq!(recipient(store, seq, "o_5").await.state, "failed");

        // Outcomes for rows that are not being sent change nothing: sent, delivered, failed,
        // pending (never claimed), and rows that do not exist.
        assert_eq!(
            b.push_finished(1_001, true, "success", T + 50)
                .await
                .unwrap(),
            1
        );
        let fresh = push(store, "pFresh1", "user:o_6", T + 60, &["o_6"]).await;
        let settled = recipients(store, seq).await;
        let untouched = recipients(store, fresh).await;
        settle(
            store,
            "w",
            &[
                outcome(seq, "o_1", failed("too late")),
                outcome(seq, "o_2", retry(T_MS + 99_000, "too late")),
                outcome(seq, "o_3", sent(9_003)),
                outcome(seq, "o_4", sent(9_004)),
                outcome(seq, "o_5", retry(T_MS + 99_000, "too late")),
                outcome(fresh, "o_6", sent(9_006)),
                outcome(seq, "o_nobody", sent(9_007)),
                outcome(fresh + 1_000, "o_1", failed("no such push")),
            ],
            T + 100,
        )
        .await;
        assert_eq!(
            recipients(store, seq).await,
            settled,
            "settled rows stay as they are"
        );
        assert_eq!(
            recipients(store, fresh).await,
            untouched,
            "a pending row stays pending"
        );
        assert_eq!(recipient(store, seq, "o_1").await.state, "delivered");

        // An empty batch is fine.
        settle(store, "w", &[], T + 200).await;
        assert_eq!(recipients(store, seq).await, settled);
    }

    pub async fn push_finished_confirms_by_msgid(store: &Store) {
        let b = store.backend();
        let seq = push(
            store,
            "pFinish",
            "users:5",
            T,
            &["o_1", "o_2", "o_3", "o_4", "o_5"],
        )
        .await;
        assert_eq!(claim(store, "w", T_MS, T_MS + 30_000, 10).await.len(), 5);
        settle(
            store,
            "w",
            &[
                outcome(seq, "o_1", sent(1_001)),
                outcome(seq, "o_2", sent(1_002)),
                outcome(seq, "o_3", Attempt::Sent { msgid: None }),
                outcome(seq, "o_5", failed("43004 require subscribe")),
            ],
            T + 1,
        )
        .await;

        assert_eq!(
            b.push_finished(1_001, true, "success", T + 10)
                .await
                .unwrap(),
            1
        );
        let o_1 = recipient(store, seq, "o_1").await;
        assert_eq!(
            (o_1.state.as_str(), o_1.msgid, o_1.error, o_1.updated_at),
            ("delivered", Some(1_001), None, T + 10)
        );

        assert_eq!(
            b.push_finished(1_002, false, "failed:user block", T + 11)
                .await
                .unwrap(),
            1
        );
        let o_2 = recipient(store, seq, "o_2").await;
        assert_eq!(
            (
                o_2.state.as_str(),
                o_2.msgid,
                o_2.error.as_deref(),
                o_2.updated_at
            ),
            ("failed", Some(1_002), Some("failed:user block"), T + 11),
            "failed, with the status as the error"
        );

        assert_eq!(
            b.push_finished(9_999, true, "success", T + 12)
                .await
                .unwrap(),
            0,
            "an unknown msgid (not a push)"
        );

        // The event can come before the send's answer is recorded: the row is still being
        // sent and has no msgid yet, so nothing changes until it is.
        let sending = recipient(store, seq, "o_4").await;
        assert_eq!(
            b.push_finished(1_004, true, "success", T + 13)
                .await
                .unwrap(),
            0,
            "not yet recorded as sent"
        );
        assert_eq!(recipient(store, seq, "o_4").await, sending);
        settle(store, "w", &[outcome(seq, "o_4", sent(1_004))], T + 14).await;
        assert_eq!(
            b.push_finished(1_004, true, "success", T + 15)
                .await
                .unwrap(),
            1
        );
        assert_eq!(recipient(store, seq, "o_4").await.state, "delivered");

        // The rest are untouched.
        let o_3 = recipient(store, seq, "o_3").await;
        assert_eq!((o_3.state.as_str(), o_3.msgid), ("sent", None));
        let o_5 = recipient(store, seq, "o_5").await;
        assert_eq!(
            (o_5.state.as_str(), o_5.error.as_deref(), o_5.updated_at),
            ("failed", Some("43004 require subscribe"), T + 1)
        );
        assert_eq!(
            recipient(store, seq, "o_1").await.updated_at,
            T + 10,
            "other msgids leave o_1 alone"
        );
    }

    pub async fn push_next_due_tracks_pending_and_leases(store: &Store) {
        assert_eq!(next_due(store).await, None, "an empty store");
        assert_eq!(queue_depth(store).await, 0);
        let seq = push(store, "pDue001", "users:2", T, &["o_1", "o_2"]).await;
        assert_eq!(queue_depth(store).await, 2, "both pending");
        let due = next_due(store).await;
        assert!(
            matches!(due, Some(t) if t <= T_MS),
            "new recipients are due at once: {due:?}"
        );

        // All being sent: the earliest end of a lease.
        let long = claim(store, "w1", T_MS, T_MS + 30_000, 1).await;
        let short = claim(store, "w2", T_MS, T_MS + 20_000, 1).await;
        let (long, short) = (long[0].openid.clone(), short[0].openid.clone());
        assert_ne!(long, short);
        assert_eq!(next_due(store).await, Some(T_MS + 20_000));

        // A retry later than a lease, then one earlier.
        settle(
            store,
            "w1",
            &[outcome(seq, &long, retry(T_MS + 50_000, "busy"))],
            T + 1,
        )
        .await;
        assert_eq!(
            next_due(store).await,
            Some(T_MS + 20_000),
            "the lease ends before the retry"
        );
        settle(
            store,
            "w2",
            &[outcome(seq, &short, retry(T_MS + 10_000, "busy"))],
            T + 2,
        )
        .await;
        assert_eq!(
            next_due(store).await,
            Some(T_MS + 10_000),
            "both pending: the earlier"
        );

        // The earlier one taken again until +40 s; the other waits until +50 s.
        let again = claim(store, "w1", T_MS + 10_000, T_MS + 40_000, 10).await;
        assert_eq!(openids(&again), [short.as_str()]);
        assert_eq!(next_due(store).await, Some(T_MS + 40_000), "its lease");

        assert_eq!(queue_depth(store).await, 2, "one sending, one pending");
        // Settled for good: nothing is waiting.
        settle(store, "w1", &[outcome(seq, &short, sent(1))], T + 3).await;
        assert_eq!(
            queue_depth(store).await,
            1,
            "a sent recipient left the queue"
        );
        assert_eq!(
            next_due(store).await,
            Some(T_MS + 50_000),
            "the other's retry"
        );
        assert_eq!(
            claim(store, "w2", T_MS + 50_000, T_MS + 80_000, 10)
                .await
                .len(),
            1
        );
        assert_eq!(next_due(store).await, Some(T_MS + 80_000));
        settle(store, "w2", &[outcome(seq, &long, failed("43004"))], T + 4).await;
        assert_eq!(
            next_due(store).await,
            None,
            "sent and failed rows are not waiting"
        );
        store
            .backend()
            .push_finished(1, true, "success", T + 5)
            .await
            .unwrap();
        assert_eq!(next_due(store).await, None, "nor delivered ones");
    }

    pub async fn push_history_filters_and_pages(store: &Store) {
        let b = store.backend();
        let s1 = push(store, "pHist01", "topic:news", T, &["o_a", "o_b"]).await;
        let s2 = push(store, "pHist02", "user:o_a", T + 10, &["o_a"]).await;
        let s3 = push(store, "pHist03", "topic:sports", T + 20, &["o_b"]).await;
        let s4 = push(store, "pHist04", "topic:news", T + 30, &["o_a"]).await;
        let s5 = push(store, "pHist05", "users:2", T + 40, &["o_a", "o_c"]).await;
        let history = |scope: Option<&'static str>, after_seq: i64, since: i64, limit: u32| async move {
            b.push_history(scope, after_seq, since, limit)
                .await
                .unwrap()
                .into_iter()
                .map(|p| p.seq)
                .collect::<Vec<i64>>()
        };

        // Oldest first, whole rows.
        assert_eq!(history(None, 0, 0, 100).await, [s1, s2, s3, s4, s5]);
        let all = b.push_history(None, 0, 0, 100).await.unwrap();
        assert_eq!(Some(&all[2]), b.push_by_seq(s3).await.unwrap().as_ref());

        // By topic, and by what a user received (addressed to them, a topic, or a list).
        assert_eq!(history(Some("topic:news"), 0, 0, 100).await, [s1, s4]);
        assert_eq!(history(Some("topic:sports"), 0, 0, 100).await, [s3]);
        assert!(history(Some("topic:none"), 0, 0, 100).await.is_empty());
        assert_eq!(history(Some("user:o_a"), 0, 0, 100).await, [s1, s2, s4, s5]);
        assert_eq!(history(Some("user:o_b"), 0, 0, 100).await, [s1, s3]);
        assert_eq!(history(Some("user:o_c"), 0, 0, 100).await, [s5]);
        assert!(history(Some("user:o_nobody"), 0, 0, 100).await.is_empty());

        // After a seq.
        assert_eq!(history(None, s2, 0, 100).await, [s3, s4, s5]);
        assert_eq!(history(Some("user:o_a"), s2, 0, 100).await, [s4, s5]);
        assert_eq!(history(Some("topic:news"), s1, 0, 100).await, [s4]);
        assert!(history(None, s5, 0, 100).await.is_empty());

        // Accepted at or after `since`.
        assert_eq!(
            history(None, 0, T + 20, 100).await,
            [s3, s4, s5],
            "since is inclusive"
        );
        assert_eq!(history(None, 0, T + 21, 100).await, [s4, s5]);
        assert_eq!(history(Some("user:o_b"), 0, T + 1, 100).await, [s3]);
        assert!(history(None, 0, T + 41, 100).await.is_empty());

        // At most `limit`, the oldest: pages by the last seq seen.
        assert_eq!(history(None, 0, 0, 2).await, [s1, s2]);
        assert_eq!(history(None, s2, 0, 2).await, [s3, s4]);
        assert_eq!(history(None, s4, 0, 2).await, [s5]);
        assert_eq!(history(Some("user:o_a"), 0, 0, 3).await, [s1, s2, s4]);
        assert_eq!(history(Some("user:o_a"), s4, 0, 3).await, [s5]);
        assert!(history(None, 0, 0, 0).await.is_empty(), "a limit of 0");
    }

    pub async fn push_purge_removes_old_pushes_and_their_recipients(store: &Store) {
        let b = store.backend();
        let old = push(store, "pOld001", "users:2", T, &["o_1", "o_2"]).await;
        let edge = push(store, "pEdge01", "user:o_1", T + 100, &["o_1"]).await;
        let new = push(store, "pNew001", "user:o_2", T + 200, &["o_2"]).await;
        // The old push waits for a retry; the others are sent.
        assert_eq!(claim(store, "w", T_MS, T_MS + 30_000, 10).await.len(), 4);
        settle(
            store,
            "w",
            &[
                outcome(old, "o_1", retry(T_MS + 60_000, "busy")),
                outcome(old, "o_2", retry(T_MS + 70_000, "busy")),
                outcome(edge, "o_1", sent(1)),
                outcome(new, "o_2", sent(2)),
            ],
            T + 1,
        )
        .await;
        assert_eq!(next_due(store).await, Some(T_MS + 60_000));

        assert_eq!(
            b.push_purge(T + 100).await.unwrap(),
            1,
            "accepted before, not at"
        );
        assert_eq!(b.push_by_seq(old).await.unwrap(), None);
        assert_eq!(b.push_by_id("pOld001").await.unwrap(), None);
        assert!(
            recipients(store, old).await.is_empty(),
            "its recipients went with it"
        );
        assert_eq!(
            next_due(store).await,
            None,
            "nothing of it is left to deliver"
        );
        assert!(
            claim(store, "w", T_MS + 1_000_000, T_MS + 1_030_000, 10)
                .await
                .is_empty(),
            "nor to claim"
        );
        assert_eq!(states(store, edge).await, pairs(&[("o_1", "sent")]));
        assert_eq!(states(store, new).await, pairs(&[("o_2", "sent")]));
        let left: Vec<i64> = b
            .push_history(None, 0, 0, 100)
            .await
            .unwrap()
            .into_iter()
            .map(|p| p.seq)
            .collect();
        assert_eq!(left, [edge, new]);

        assert_eq!(b.push_purge(T + 100).await.unwrap(), 0, "purging twice");
        assert_eq!(b.push_purge(T + 201).await.unwrap(), 2);
        assert!(b.push_history(None, 0, 0, 100).await.unwrap().is_empty());
        assert!(recipients(store, edge).await.is_empty());
        assert!(recipients(store, new).await.is_empty());
        assert_eq!(
            b.push_finished(1, true, "success", T + 300).await.unwrap(),
            0
        );
    }

    // --- the platform: apps, binding codes, bindings, topic numbers, the webhook outbox ----

    /// An app to store, made at `T`, its token stored as the key hash `token_hash`.
    fn new_app<'a>(name: &'a str, token_hash: &'a str) -> NewApp<'a> {
        NewApp {
            name,
            callback_url: "https://app.example/hook",
            callback_format: "huixin",
            replies: true,
            secret: "whsec_0123456789",
            return_url: "",
            created_at: T,
            token_hash,
            token_prefix: "AT_abc",
        }
    }

    /// Stores an app named `name` (token hash `h_NAME`); its id.
    async fn insert_app(store: &Store, name: &str) -> i64 {
        let hash = format!("h_{name}");
        store
            .backend()
            .app_insert(&new_app(name, &hash))
            .await
            .unwrap_or_else(|e| panic!("app {name} is stored: {e}"))
    }

    fn new_binding<'a>(app_id: i64, uid: &'a str, openid: &'a str, now: i64) -> NewBinding<'a> {
        NewBinding {
            app_id,
            uid,
            openid,
            extra: "",
            source: "scan",
            now,
        }
    }

    /// Binds; the binding and the follower the uid stood for before.
    async fn bind(store: &Store, binding: &NewBinding<'_>) -> (BindingRow, Option<String>) {
        store
            .backend()
            .binding_upsert(binding)
            .await
            .expect("binding stored")
    }

    fn uids(rows: &[BindingRow]) -> Vec<&str> {
        rows.iter().map(|b| b.uid.as_str()).collect()
    }

    /// A `message` delivery to `endpoint`, ordered by `ordering`, stored at `now_ms`.
    fn delivery<'a>(
        id: &'a str,
        app_id: Option<i64>,
        endpoint: &'a str,
        ordering: &'a str,
        now_ms: i64,
    ) -> NewDelivery<'a> {
        NewDelivery {
            id,
            app_id,
            endpoint,
            url: "https://app.example/hook",
            event: "message",
            ordering,
            body: "{\"event\":\"message\",\"text\":\"你好\"}",
            now_ms,
        }
    }

    /// Stores deliveries of the config's endpoint `config:ops` (`(id, ordering)`), at
    /// `now_ms`; their seqs.
    async fn outbox(store: &Store, deliveries: &[(&str, &str)], now_ms: i64) -> Vec<i64> {
        let new: Vec<NewDelivery<'_>> = deliveries
            .iter()
            .map(|(id, ordering)| delivery(id, None, "config:ops", ordering, now_ms))
            .collect();
        store
            .backend()
            .webhook_insert(&new)
            .await
            .expect("deliveries stored")
    }

    async fn wh_claim(
        store: &Store,
        owner: &str,
        now_ms: i64,
        lease_until_ms: i64,
        limit: u32,
    ) -> Vec<DeliveryRow> {
        store
            .backend()
            .webhook_claim(owner, now_ms, lease_until_ms, limit)
            .await
            .expect("claim")
    }

    fn wh_ids(rows: &[DeliveryRow]) -> Vec<&str> {
        rows.iter().map(|d| d.id.as_str()).collect()
    }

    /// An attempt of delivery `seq` that started at `at`, took 15 ms and got `status`.
    fn wh_outcome(
        seq: i64,
        at: i64,
        status: Option<i64>,
        result: DeliveryResult,
    ) -> DeliveryOutcome {
        DeliveryOutcome {
            seq,
            at,
            duration_ms: 15,
            status,
            result,
        }
    }

    fn delivered(seq: i64, at: i64) -> DeliveryOutcome {
        wh_outcome(seq, at, Some(200), DeliveryResult::Delivered)
    }

    async fn wh_settle(store: &Store, owner: &str, outcomes: &[DeliveryOutcome], now_ms: i64) {
        store
            .backend()
            .webhook_settle(owner, outcomes, now_ms)
            .await
            .expect("outcomes recorded");
    }

    async fn wh(store: &Store, id: &str) -> DeliveryRow {
        store
            .backend()
            .webhook_delivery(id)
            .await
            .expect("delivery reads")
            .unwrap_or_else(|| panic!("delivery {id} is stored"))
    }

    async fn wh_next_due(store: &Store) -> Option<i64> {
        store
            .backend()
            .webhook_next_due()
            .await
            .expect("next due reads")
    }

    pub async fn apps_insert_update_and_revoke(store: &Store) {
        let b = store.backend();
        assert!(b.apps().await.unwrap().is_empty());
        assert_eq!(b.app(1).await.unwrap(), None);

        let shop = b.app_insert(&new_app("shop", "h_shop")).await.unwrap();
        let stored = AppRow {
            id: shop,
            name: "shop".into(),
            callback_url: "https://app.example/hook".into(),
            callback_format: "huixin".into(),
            replies: true,
            secret: "whsec_0123456789".into(),
            return_url: "".into(),
            created_at: T,
            revoked_at: None,
        };
        assert_eq!(b.app(shop).await.unwrap(), Some(stored.clone()));
        assert_eq!(b.app_by_name("shop").await.unwrap(), Some(stored.clone()));
        assert_eq!(b.app_by_name("Shop").await.unwrap(), None);
        // Its token is a push key of kind app, whose target is the app's id.
        let token = b
            .key_by_hash("h_shop")
            .await
            .unwrap()
            .expect("the token is a key");
        assert_eq!(
            (
                token.key_prefix.as_str(),
                token.kind.as_str(),
                token.target.as_str(),
                token.label.as_str(),
                token.created_at,
                token.revoked_at
            ),
            ("AT_abc", "app", shop.to_string().as_str(), "shop", T, None)
        );

        // A live name is unique; nothing of the refused app is stored.
        match b.app_insert(&new_app("shop", "h_shop_2")).await {
            Err(StoreError::Database(_)) => {}
            other => panic!("a second live shop: {other:?}"),
        }
        assert_eq!(b.key_by_hash("h_shop_2").await.unwrap(), None);
        let blog = b.app_insert(&new_app("blog", "h_blog")).await.unwrap();
        assert!(blog > shop, "ids in creation order: {shop}, {blog}");
        let names: Vec<String> = b
            .apps()
            .await
            .unwrap()
            .into_iter()
            .map(|a| a.name)
            .collect();
        assert_eq!(names, ["shop", "blog"], "by id");

        // Changes: only the fields given.
        let changes = AppChanges {
            callback_url: Some("https://shop.example/v2".into()),
            replies: Some(false),
            ..AppChanges::default()
        };
        assert!(b.app_update(shop, &changes).await.unwrap());
        let changed = AppRow {
            callback_url: "https://shop.example/v2".into(),
            replies: false,
            ..stored.clone()
        };
        assert_eq!(b.app(shop).await.unwrap(), Some(changed.clone()));
        let more = AppChanges {
            callback_format: Some("wxpusher".into()),
            return_url: Some("https://shop.example/welcome".into()),
            ..AppChanges::default()
        };
        assert!(b.app_update(shop, &more).await.unwrap());
        let changed = AppRow {
            callback_format: "wxpusher".into(),
            return_url: "https://shop.example/welcome".into(),
            ..changed
        };
        assert_eq!(b.app(shop).await.unwrap(), Some(changed.clone()));
        assert!(
            b.app_update(shop, &AppChanges::default()).await.unwrap(),
            "no change still finds the app"
        );
        assert!(!b.app_update(blog + 100, &changes).await.unwrap());

        // Revoking takes its tokens, and no other key: another app's, or a user key whose
        // target looks like the app's id.
        let lookalike = key_row("h_user", "ukUser0001", "user", &shop.to_string(), T);
        b.key_insert(&lookalike).await.unwrap();
        assert!(b.app_revoke(shop, T + 10).await.unwrap());
        assert!(!b.app_revoke(shop, T + 11).await.unwrap(), "revoking twice");
        assert!(!b.app_revoke(blog + 100, T + 11).await.unwrap());
        assert_eq!(
            b.app(shop).await.unwrap(),
            Some(AppRow {
                revoked_at: Some(T + 10),
                ..changed.clone()
            }),
            "kept for the record"
        );
        assert_eq!(b.app_by_name("shop").await.unwrap(), None);
        assert_eq!(
            b.key_by_hash("h_shop").await.unwrap().unwrap().revoked_at,
            Some(T + 10)
        );
        assert_eq!(
            b.key_by_hash("h_blog").await.unwrap().unwrap().revoked_at,
            None
        );
        assert_eq!(b.key_by_hash("h_user").await.unwrap(), Some(lookalike));
        assert!(
            !b.app_update(shop, &changes).await.unwrap(),
            "a revoked app does not change"
        );

        // The name of a revoked app is free again.
        let again = b.app_insert(&new_app("shop", "h_shop_3")).await.unwrap();
        assert!(again > blog);
        assert_eq!(b.app_by_name("shop").await.unwrap().unwrap().id, again);
        let ids: Vec<(i64, bool)> = b
            .apps()
            .await
            .unwrap()
            .into_iter()
            .map(|a| (a.id, a.revoked_at.is_some()))
            .collect();
        assert_eq!(ids, [(shop, true), (blog, false), (again, false)]);
    }

    pub async fn bind_codes_single_use_and_open(store: &Store) {
        let b = store.backend();
        let app = insert_app(store, "shop").await;
        let single = BindCode {
            id: "bc_single".into(),
            app_id: app,
            uid: "site-user-42".into(),
            extra: "campaign=7".into(),
            return_url: "https://shop.example/bound".into(),
            ticket: "".into(),
            qr_content: "".into(),
            created_at: T,
            expires_at: T + 600,
            used_at: None,
            used_by: None,
            used_uid: None,
        };
        b.bind_code_insert(&single).await.unwrap();
        assert_eq!(
            b.bind_code("bc_single").await.unwrap(),
            Some(single.clone())
        );
        assert_eq!(b.bind_code("bc_nothing").await.unwrap(), None);
        assert!(
            b.bind_code_insert(&single).await.is_err(),
            "an id is used once"
        );
        b.bind_code_set_ticket(
            "bc_single",
            "gQH47joAAAAAAAAAASxo",
            "http://weixin.qq.com/q/x1",
        )
        .await
        .unwrap();
        let single = BindCode {
            ticket: "gQH47joAAAAAAAAAASxo".into(),
            qr_content: "http://weixin.qq.com/q/x1".into(),
            ..single
        };
        assert_eq!(
            b.bind_code("bc_single").await.unwrap(),
            Some(single.clone())
        );

        // With a uid: used once.
        assert!(
            b.bind_code_use("bc_single", "o_a", "site-user-42", T + 10)
                .await
                .unwrap()
        );
        assert!(
            !b.bind_code_use("bc_single", "o_b", "site-user-42", T + 20)
                .await
                .unwrap(),
            "a second use is refused"
        );
        let used = BindCode {
            used_at: Some(T + 10),
            used_by: Some("o_a".into()),
            used_uid: Some("site-user-42".into()),
            ..single
        };
        assert_eq!(
            b.bind_code("bc_single").await.unwrap(),
            Some(used.clone()),
            "the refused use changed nothing"
        );

        // Without one: every use before it expires, each recorded over the last.
        let open = BindCode {
            id: "bc_open".into(),
            uid: "".into(),
            extra: "".into(),
            return_url: "".into(),
            ticket: "".into(),
            qr_content: "".into(),
            used_at: None,
            used_by: None,
            used_uid: None,
            ..used.clone()
        };
        b.bind_code_insert(&open).await.unwrap();
        assert!(
            b.bind_code_use("bc_open", "o_a", "UID_aaaa", T + 1)
                .await
                .unwrap()
        );
        assert!(
            b.bind_code_use("bc_open", "o_b", "UID_bbbb", T + 599)
                .await
                .unwrap()
        );
        let last = BindCode {
            used_at: Some(T + 599),
            used_by: Some("o_b".into()),
            used_uid: Some("UID_bbbb".into()),
            ..open.clone()
        };
        assert_eq!(b.bind_code("bc_open").await.unwrap(), Some(last.clone()));
        assert!(
            !b.bind_code_use("bc_open", "o_c", "UID_cccc", T + 600)
                .await
                .unwrap(),
            "expired: it binds until expires_at"
        );
        assert_eq!(b.bind_code("bc_open").await.unwrap(), Some(last));

        // An unused single-use code that expired binds no one.
        let late = BindCode {
            id: "bc_late".into(),
            expires_at: T + 5,
            used_at: None,
            used_by: None,
            used_uid: None,
            ..used.clone()
        };
        b.bind_code_insert(&late).await.unwrap();
        assert!(
            !b.bind_code_use("bc_late", "o_a", "site-user-42", T + 5)
                .await
                .unwrap()
        );
        assert_eq!(b.bind_code("bc_late").await.unwrap(), Some(late));
        assert!(!b.bind_code_use("bc_nothing", "o_a", "u", T).await.unwrap());

        // Purging: codes that expired before the cutoff.
        assert_eq!(b.bind_codes_purge(T + 5).await.unwrap(), 0);
        assert_eq!(b.bind_codes_purge(T + 6).await.unwrap(), 1);
        assert_eq!(b.bind_code("bc_late").await.unwrap(), None);
        assert!(b.bind_code("bc_single").await.unwrap().is_some());
        assert_eq!(b.bind_codes_purge(T + 601).await.unwrap(), 2);
        assert_eq!(b.bind_code("bc_open").await.unwrap(), None);
    }

    pub async fn bindings_upsert_list_and_change(store: &Store) {
        let b = store.backend();
        let shop = insert_app(store, "shop").await;
        let blog = insert_app(store, "blog").await;

        let (first, previous) = bind(
            store,
            &NewBinding {
                extra: "x1",
                ..new_binding(shop, "site-1", "o_a", T)
            },
        )
        .await;
        assert_eq!(previous, None);
        let expected = BindingRow {
            seq: first.seq,
            app_id: shop,
            uid: "site-1".into(),
            openid: "o_a".into(),
            extra: "x1".into(),
            source: "scan".into(),
            state: "bound".into(),
            blocked: false,
            created_at: T,
            updated_at: T,
        };
        assert_eq!(first, expected);
        assert_eq!(
            b.binding(shop, "site-1").await.unwrap(),
            Some(expected.clone())
        );
        assert_eq!(
            b.binding_by_seq(first.seq).await.unwrap(),
            Some(expected.clone())
        );
        assert_eq!(b.binding(blog, "site-1").await.unwrap(), None);
        assert_eq!(b.binding(shop, "site-9").await.unwrap(), None);
        assert_eq!(b.binding_by_seq(first.seq + 100).await.unwrap(), None);

        // The same follower again: made over, no previous follower.
        let (again, previous) = bind(
            store,
            &NewBinding {
                extra: "x2",
                source: "link",
                ..new_binding(shop, "site-1", "o_a", T + 1)
            },
        )
        .await;
        assert_eq!(previous, None);
        assert_eq!(
            again,
            BindingRow {
                extra: "x2".into(),
                source: "link".into(),
                updated_at: T + 1,
                ..expected.clone()
            }
        );

        // Several uids for one follower, one follower in several apps.
        let (site2, _) = bind(store, &new_binding(shop, "site-2", "o_a", T + 2)).await;
        let (minted, _) = bind(store, &new_binding(blog, "UID_abcdef", "o_a", T + 3)).await;
        let (site3, _) = bind(store, &new_binding(shop, "site-3", "o_b", T + 4)).await;
        assert_eq!(
            [site2.seq, minted.seq, site3.seq],
            [first.seq + 1, first.seq + 2, first.seq + 3],
            "binding a uid again used up no seq"
        );
        assert_eq!(
            uids(&b.bindings_of_follower(shop, "o_a").await.unwrap()),
            ["site-1", "site-2"]
        );
        assert_eq!(
            uids(&b.bindings_of_follower(blog, "o_a").await.unwrap()),
            ["UID_abcdef"]
        );
        assert!(
            b.bindings_of_follower(blog, "o_b")
                .await
                .unwrap()
                .is_empty()
        );
        let everywhere: Vec<(i64, String)> = b
            .bindings_of_openid("o_a")
            .await
            .unwrap()
            .into_iter()
            .map(|b| (b.app_id, b.uid))
            .collect();
        assert_eq!(
            everywhere,
            [
                (shop, "site-1".to_owned()),
                (shop, "site-2".to_owned()),
                (blog, "UID_abcdef".to_owned())
            ]
        );
        assert!(b.bindings_of_openid("o_nobody").await.unwrap().is_empty());
        let mut of = uids(
            &b.bindings_of_uids(
                shop,
                &strings(&["site-3", "site-1", "nobody", "UID_abcdef"]),
            )
            .await
            .unwrap(),
        )
        .into_iter()
        .map(str::to_owned)
        .collect::<Vec<_>>();
        of.sort();
        assert_eq!(of, ["site-1", "site-3"], "this app's, those that exist");
        assert!(b.bindings_of_uids(shop, &[]).await.unwrap().is_empty());
        assert!(
            b.bindings_of_uids(blog, &strings(&["site-1", "it's \"quoted\""]))
                .await
                .unwrap()
                .is_empty()
        );

        // Blocking, then the uid bound to another follower: the previous one is named, and
        // the block and creation time stay.
        assert!(b.binding_block(shop, first.seq, true, T + 5).await.unwrap());
        assert!(
            !b.binding_block(blog, first.seq, true, T + 5).await.unwrap(),
            "another app's binding"
        );
        assert!(
            !b.binding_block(shop, site3.seq + 100, true, T + 5)
                .await
                .unwrap()
        );
        assert!(b.binding_block(shop, site3.seq, true, T + 5).await.unwrap());
        let (moved, previous) = bind(
            store,
            &NewBinding {
                extra: "x3",
                ..new_binding(shop, "site-1", "o_c", T + 6)
            },
        )
        .await;
        assert_eq!(previous.as_deref(), Some("o_a"));
        assert_eq!(
            moved,
            BindingRow {
                openid: "o_c".into(),
                extra: "x3".into(),
                source: "scan".into(),
                blocked: true,
                updated_at: T + 6,
                ..expected.clone()
            }
        );
        assert_eq!(
            uids(&b.bindings_of_follower(shop, "o_a").await.unwrap()),
            ["site-2"]
        );

        // Unfollowing marks every binding of the follower, in every app; following again
        // brings them back.
        assert_eq!(
            b.bindings_mark("o_a", "unfollowed", T + 7).await.unwrap(),
            2
        );
        assert_eq!(
            b.bindings_mark("o_a", "unfollowed", T + 8).await.unwrap(),
            0,
            "already marked"
        );
        let marked = b.binding(blog, "UID_abcdef").await.unwrap().unwrap();
        assert_eq!(
            (marked.state.as_str(), marked.updated_at),
            ("unfollowed", T + 7)
        );
        assert_eq!(
            b.binding(shop, "site-1").await.unwrap().unwrap().state,
            "bound"
        );
        assert_eq!(b.bindings_mark("o_a", "bound", T + 9).await.unwrap(), 2);
        assert_eq!(
            b.binding(shop, "site-2").await.unwrap().unwrap().state,
            "bound"
        );
        // Binding again makes an unfollowed binding bound.
        b.bindings_mark("o_b", "unfollowed", T + 9).await.unwrap();
        let (rebound, _) = bind(store, &new_binding(shop, "site-3", "o_b", T + 10)).await;
        assert_eq!((rebound.state.as_str(), rebound.blocked), ("bound", true));

        // Pages and counts: site-1 (blocked), site-2, site-3 (blocked).
        let page = |uid: Option<&'static str>, blocked: Option<bool>, offset: u32, limit: u32| async move {
            uids(
                &b.bindings_page(shop, uid, blocked, offset, limit)
                    .await
                    .unwrap(),
            )
            .into_iter()
            .map(str::to_owned)
            .collect::<Vec<_>>()
        };
        assert_eq!(page(None, None, 0, 2).await, ["site-1", "site-2"]);
        assert_eq!(page(None, None, 2, 2).await, ["site-3"]);
        assert!(page(None, None, 3, 2).await.is_empty());
        assert!(page(None, None, 0, 0).await.is_empty());
        assert_eq!(page(None, Some(true), 0, 10).await, ["site-1", "site-3"]);
        assert_eq!(page(None, Some(false), 0, 10).await, ["site-2"]);
        assert_eq!(page(Some("site-3"), None, 0, 10).await, ["site-3"]);
        assert!(page(Some("site-2"), Some(true), 0, 10).await.is_empty());
        assert_eq!(
            uids(&b.bindings_page(blog, None, None, 0, 10).await.unwrap()),
            ["UID_abcdef"]
        );
        let count =
            |uid, blocked| async move { b.bindings_count(shop, uid, blocked).await.unwrap() };
        assert_eq!(count(None, None).await, 3);
        assert_eq!(count(None, Some(true)).await, 2);
        assert_eq!(count(None, Some(false)).await, 1);
        assert_eq!(count(Some("site-1"), None).await, 1);
        assert_eq!(count(Some("site-1"), Some(false)).await, 0);
        assert_eq!(count(Some("nobody"), None).await, 0);
        assert_eq!(b.bindings_count(blog, None, None).await.unwrap(), 1);

        // Unblocking, deleting.
        assert!(
            b.binding_block(shop, site3.seq, false, T + 11)
                .await
                .unwrap()
        );
        assert_eq!(count(None, Some(true)).await, 1);
        assert!(
            !b.binding_delete(blog, site2.seq).await.unwrap(),
            "another app's"
        );
        assert!(b.binding_delete(shop, site2.seq).await.unwrap());
        assert!(
            !b.binding_delete(shop, site2.seq).await.unwrap(),
            "deleting twice"
        );
        assert_eq!(b.binding(shop, "site-2").await.unwrap(), None);
        assert_eq!(count(None, None).await, 2);
        assert_eq!(page(None, None, 0, 10).await, ["site-1", "site-3"]);
    }

    pub async fn topic_numbers_are_kept_per_name(store: &Store) {
        let b = store.backend();
        let num = |name: &'static str| async move {
            b.topic(name)
                .await
                .unwrap()
                .unwrap_or_else(|| panic!("{name}"))
                .num
        };
        assert!(b.topic_create("news", true, "", T).await.unwrap());
        assert!(b.topic_create("alerts", false, "", T).await.unwrap());
        let (news, alerts) = (num("news").await, num("alerts").await);
        assert!(0 < news && news < alerts, "increasing: {news}, {alerts}");
        assert!(!b.topic_create("news", false, "", T + 1).await.unwrap());
        assert_eq!(num("news").await, news, "a second create keeps the number");
        let listed: Vec<(String, i64)> = b
            .topics()
            .await
            .unwrap()
            .into_iter()
            .map(|t| (t.name, t.num))
            .collect();
        assert_eq!(
            listed,
            [("alerts".to_owned(), alerts), ("news".to_owned(), news)]
        );
        assert_eq!(b.topic_by_num(news).await.unwrap().as_deref(), Some("news"));
        assert_eq!(
            b.topic_by_num(alerts).await.unwrap().as_deref(),
            Some("alerts")
        );
        assert_eq!(b.topic_by_num(alerts + 100).await.unwrap(), None);

        // Deleted, its number names no topic; made again, it has its old number, and new
        // names still get new ones.
        assert!(b.topic_delete("news").await.unwrap());
        assert_eq!(b.topic_by_num(news).await.unwrap(), None);
        assert!(b.topic_create("sports", true, "", T + 2).await.unwrap());
        let sports = num("sports").await;
        assert!(sports > alerts);
        assert!(b.topic_create("news", true, "again", T + 3).await.unwrap());
        assert_eq!(num("news").await, news);
        assert_eq!(b.topic_by_num(news).await.unwrap().as_deref(), Some("news"));
        assert!(b.topic_create("weather", true, "", T + 4).await.unwrap());
        assert_eq!(
            num("weather").await,
            sports + 1,
            "making a topic again used up no number"
        );

        // A topic of an app.
        let app = insert_app(store, "shop").await;
        assert_eq!(b.topic("news").await.unwrap().unwrap().app_id, None);
        assert!(b.topic_set_app("news", Some(app)).await.unwrap());
        assert_eq!(
            b.topic("news").await.unwrap(),
            Some(Topic {
                name: "news".into(),
                open: true,
                description: "again".into(),
                created_at: T + 3,
                members: 0,
                num: news,
                app_id: Some(app),
            })
        );
        assert_eq!(b.topic("sports").await.unwrap().unwrap().app_id, None);
        assert!(!b.topic_set_app("nothing", Some(app)).await.unwrap());
        assert!(b.topic_set_app("news", None).await.unwrap());
        assert_eq!(b.topic("news").await.unwrap().unwrap().app_id, None);
    }

    pub async fn webhook_insert_and_claim_oldest_first(store: &Store) {
        let b = store.backend();
        let app = insert_app(store, "shop").await;
        assert_eq!(wh_next_due(store).await, None);
        assert!(b.webhook_insert(&[]).await.unwrap().is_empty());
        let endpoint = format!("app:{app}");
        let seqs = b
            .webhook_insert(&[
                delivery("d1", Some(app), &endpoint, "o_a", T_MS),
                delivery("d2", Some(app), &endpoint, "o_b", T_MS),
                delivery("d3", None, "config:ops", "o_a", T_MS + 5),
            ])
            .await
            .unwrap();
        assert_eq!(seqs.len(), 3);
        assert!(seqs[0] < seqs[1] && seqs[1] < seqs[2], "{seqs:?}");
        assert_eq!(
            wh(store, "d1").await,
            DeliveryRow {
                seq: seqs[0],
                id: "d1".into(),
                app_id: Some(app),
                endpoint: endpoint.clone(),
                url: "https://app.example/hook".into(),
                event: "message".into(),
                ordering: "o_a".into(),
                body: "{\"event\":\"message\",\"text\":\"你好\"}".into(),
                state: "pending".into(),
                attempts: 0,
                next_at: T_MS,
                last_status: None,
                last_error: None,
                created_at: T_MS,
                updated_at: T_MS,
            }
        );
        assert_eq!(wh(store, "d3").await.app_id, None);
        assert_eq!(b.webhook_delivery("d9").await.unwrap(), None);
        assert!(
            b.webhook_insert(&[delivery("d1", None, "config:ops", "", T_MS)])
                .await
                .is_err(),
            "a public id is used once"
        );
        assert_eq!(wh_next_due(store).await, Some(T_MS), "due at once");

        let lease = T_MS + 30_000;
        assert!(
            wh_claim(store, "w0", T_MS - 1, lease, 10).await.is_empty(),
            "not yet due"
        );
        assert!(
            wh_claim(store, "w0", T_MS, lease, 0).await.is_empty(),
            "a limit of 0"
        );
        let first = wh_claim(store, "w1", T_MS, lease, 1).await;
        assert_eq!(wh_ids(&first), ["d1"], "oldest first");
        assert_eq!(
            (
                first[0].state.as_str(),
                first[0].attempts,
                first[0].updated_at
            ),
            ("sending", 1, T_MS)
        );
        assert_eq!(
            wh(store, "d1").await,
            first[0],
            "the claim returns the stored row"
        );
        let rest = wh_claim(store, "w2", T_MS + 10, lease, 10).await;
        assert_eq!(
            wh_ids(&rest),
            ["d2", "d3"],
            "oldest first, each claimed once"
        );
        assert!(wh_claim(store, "w3", T_MS + 20, lease, 10).await.is_empty());
        assert_eq!(
            wh_next_due(store).await,
            Some(lease),
            "when the first lease runs out"
        );
    }

    pub async fn webhook_orderings_go_one_at_a_time(store: &Store) {
        let lease = T_MS + 30_000;
        // d1, d2: one follower of config:ops. d3: another follower. d4: the same follower at
        // another endpoint. d5, d6: no ordering.
        let seqs = outbox(store, &[("d1", "o_a"), ("d2", "o_a"), ("d3", "o_b")], T_MS).await;
        store
            .backend()
            .webhook_insert(&[
                delivery("d4", None, "config:audit", "o_a", T_MS),
                delivery("d5", None, "config:ops", "", T_MS),
                delivery("d6", None, "config:ops", "", T_MS),
            ])
            .await
            .unwrap();
        let claimed = wh_claim(store, "w1", T_MS, lease, 10).await;
        assert_eq!(
            wh_ids(&claimed),
            ["d1", "d3", "d4", "d5", "d6"],
            "d2 waits for d1"
        );
        let by_id = |id: &str| claimed.iter().find(|d| d.id == id).unwrap().seq;
        wh_settle(
            store,
            "w1",
            &["d3", "d4", "d5", "d6"].map(|id| delivered(by_id(id), T_MS + 1)),
            T_MS + 2,
        )
        .await;
        assert!(
            wh_claim(store, "w2", T_MS + 3, lease, 10).await.is_empty(),
            "d1 is being sent"
        );

        // d1 fails and is to be retried: d2 still waits, and is not due before d1 is.
        wh_settle(
            store,
            "w1",
            &[wh_outcome(
                seqs[0],
                T_MS + 1,
                Some(503),
                DeliveryResult::Retry {
                    next_at: T_MS + 60_000,
                    error: "HTTP 503".into(),
                },
            )],
            T_MS + 4,
        )
        .await;
        assert!(
            wh_claim(store, "w2", T_MS + 5, lease, 10).await.is_empty(),
            "d2 waits"
        );
        assert_eq!(
            wh_next_due(store).await,
            Some(T_MS + 60_000),
            "d1's retry, not d2"
        );
        let retried = wh_claim(store, "w2", T_MS + 60_000, T_MS + 90_000, 10).await;
        assert_eq!(wh_ids(&retried), ["d1"]);
        assert_eq!(retried[0].attempts, 2);

        // d1 delivered: d2's turn.
        wh_settle(
            store,
            "w2",
            &[delivered(seqs[0], T_MS + 60_001)],
            T_MS + 60_002,
        )
        .await;
        assert_eq!(wh_next_due(store).await, Some(T_MS), "d2 was due all along");
        let next = wh_claim(store, "w3", T_MS + 60_003, T_MS + 90_000, 10).await;
        assert_eq!(wh_ids(&next), ["d2"]);

        // A delivery that failed for good lets the next one go too.
        let more = outbox(store, &[("d7", "o_c"), ("d8", "o_c")], T_MS + 70_000).await;
        assert_eq!(
            wh_ids(&wh_claim(store, "w4", T_MS + 70_000, T_MS + 99_000, 10).await),
            ["d7"]
        );
        wh_settle(
            store,
            "w4",
            &[wh_outcome(
                more[0],
                T_MS + 70_000,
                Some(410),
                DeliveryResult::Failed {
                    error: "HTTP 410".into(),
                },
            )],
            T_MS + 70_001,
        )
        .await;
        assert_eq!(
            wh_ids(&wh_claim(store, "w4", T_MS + 70_002, T_MS + 99_000, 10).await),
            ["d8"]
        );
    }

    pub async fn webhook_leases_settle_and_attempts(store: &Store) {
        let b = store.backend();
        let seqs = outbox(store, &[("d1", "o_a"), ("d2", "o_a")], T_MS).await;
        let (d1, d2) = (seqs[0], seqs[1]);
        assert_eq!(
            wh_ids(&wh_claim(store, "w1", T_MS, T_MS + 30_000, 10).await),
            ["d1"]
        );
        assert!(
            wh_claim(store, "w2", T_MS + 29_999, T_MS + 60_000, 10)
                .await
                .is_empty(),
            "leased, and d2 waits"
        );
        // The lease runs out: another owner takes d1 over (d2 still waits).
        let taken = wh_claim(store, "w2", T_MS + 30_000, T_MS + 60_000, 10).await;
        assert_eq!(wh_ids(&taken), ["d1"]);
        assert_eq!(taken[0].attempts, 2);

        // The first owner's late outcome changes nothing.
        wh_settle(store, "w1", &[delivered(d1, T_MS)], T_MS + 30_001).await;
        assert_eq!(wh(store, "d1").await, taken[0]);
        assert!(b.webhook_attempts(&[d1]).await.unwrap().is_empty());

        // The holder's retry is recorded, with its attempt.
        wh_settle(
            store,
            "w2",
            &[wh_outcome(
                d1,
                T_MS + 30_000,
                Some(500),
                DeliveryResult::Retry {
                    next_at: T_MS + 40_000,
                    error: "HTTP 500".into(),
                },
            )],
            T_MS + 30_100,
        )
        .await;
        assert_eq!(
            wh(store, "d1").await,
            DeliveryRow {
                state: "pending".into(),
                next_at: T_MS + 40_000,
                last_status: Some(500),
                last_error: Some("HTTP 500".into()),
                updated_at: T_MS + 30_100,
                ..taken[0].clone()
            }
        );
        let first_attempt = AttemptRow {
            delivery_seq: d1,
            attempt: 2,
            at: T_MS + 30_000,
            duration_ms: 15,
            status: Some(500),
            error: Some("HTTP 500".into()),
        };
        assert_eq!(
            b.webhook_attempts(&[d1]).await.unwrap(),
            std::slice::from_ref(&first_attempt)
        );

        // Released (the owner stops before sending): due at once, the attempt given back,
        // nothing recorded. A release by someone else changes nothing.
        assert_eq!(
            wh_claim(store, "w3", T_MS + 40_000, T_MS + 70_000, 10).await[0].attempts,
            3
        );
        let released = wh_outcome(d1, T_MS + 40_001, None, DeliveryResult::Released);
        wh_settle(store, "w2", std::slice::from_ref(&released), T_MS + 40_002).await;
        assert_eq!(wh(store, "d1").await.state, "sending");
        wh_settle(store, "w3", std::slice::from_ref(&released), T_MS + 40_003).await;
        let back = wh(store, "d1").await;
        assert_eq!(
            (
                back.state.as_str(),
                back.attempts,
                back.next_at,
                back.last_status,
                back.last_error.as_deref()
            ),
            ("pending", 2, T_MS + 40_003, Some(500), Some("HTTP 500")),
        );
        assert_eq!(b.webhook_attempts(&[d1]).await.unwrap().len(), 1);
        assert_eq!(wh_next_due(store).await, Some(T_MS + 40_003));

        // Delivered at the next attempt, which is numbered 3 again.
        let again = wh_claim(store, "w4", T_MS + 40_004, T_MS + 70_000, 10).await;
        assert_eq!((wh_ids(&again), again[0].attempts), (vec!["d1"], 3));
        wh_settle(
            store,
            "w4",
            &[wh_outcome(
                d1,
                T_MS + 40_005,
                Some(204),
                DeliveryResult::Delivered,
            )],
            T_MS + 40_020,
        )
        .await;
        let done = wh(store, "d1").await;
        assert_eq!(
            (
                done.state.as_str(),
                done.attempts,
                done.last_status,
                done.last_error.as_deref(),
                done.updated_at
            ),
            ("delivered", 3, Some(204), None, T_MS + 40_020)
        );
        // Settled once: a second outcome, even the owner's, changes nothing.
        wh_settle(store, "w4", std::slice::from_ref(&released), T_MS + 40_030).await;
        assert_eq!(wh(store, "d1").await, done);

        // d2 fails for good, without an answer.
        assert_eq!(
            wh_ids(&wh_claim(store, "w5", T_MS + 40_040, T_MS + 70_000, 10).await),
            ["d2"]
        );
        wh_settle(
            store,
            "w5",
            &[wh_outcome(
                d2,
                T_MS + 40_041,
                None,
                DeliveryResult::Failed {
                    error: "connection refused".into(),
                },
            )],
            T_MS + 40_050,
        )
        .await;
        let failed = wh(store, "d2").await;
        assert_eq!(
            (
                failed.state.as_str(),
                failed.last_status,
                failed.last_error.as_deref()
            ),
            ("failed", None, Some("connection refused"))
        );
        assert_eq!(
            b.webhook_attempts(&[d2, d1]).await.unwrap(),
            [
                first_attempt,
                AttemptRow {
                    delivery_seq: d1,
                    attempt: 3,
                    at: T_MS + 40_005,
                    duration_ms: 15,
                    status: Some(204),
                    error: None,
                },
                AttemptRow {
                    delivery_seq: d2,
                    attempt: 1,
                    at: T_MS + 40_041,
                    duration_ms: 15,
                    status: None,
                    error: Some("connection refused".into()),
                },
            ],
            "by delivery, then attempt"
        );
        assert!(b.webhook_attempts(&[]).await.unwrap().is_empty());
        assert_eq!(wh_next_due(store).await, None, "nothing waits");
    }

    pub async fn webhook_deliveries_listing_and_purge(store: &Store) {
        let b = store.backend();
        let shop = insert_app(store, "shop").await;
        let blog = insert_app(store, "blog").await;
        let (shop_end, blog_end) = (format!("app:{shop}"), format!("app:{blog}"));
        let mut seqs = Vec::new();
        for (i, (id, app, endpoint, event)) in [
            ("e1", Some(shop), shop_end.as_str(), "message"),
            ("e2", Some(shop), shop_end.as_str(), "message"),
            ("e3", Some(blog), blog_end.as_str(), "follow"),
            ("e4", None, "config:ops", "message"),
            ("e5", Some(shop), shop_end.as_str(), "binding"),
        ]
        .into_iter()
        .enumerate()
        {
            let new = NewDelivery {
                event,
                ..delivery(id, app, endpoint, "", T_MS + i as i64)
            };
            seqs.extend(b.webhook_insert(&[new]).await.unwrap());
        }
        let list = |filter: DeliveryFilter| async move {
            wh_ids(&b.webhook_deliveries(&filter).await.unwrap())
                .into_iter()
                .map(str::to_owned)
                .collect::<Vec<_>>()
        };
        let all = DeliveryFilter {
            limit: 10,
            ..DeliveryFilter::default()
        };
        assert_eq!(
            list(all.clone()).await,
            ["e5", "e4", "e3", "e2", "e1"],
            "newest first"
        );
        assert_eq!(
            list(DeliveryFilter {
                app_id: Some(Some(shop)),
                ..all.clone()
            })
            .await,
            ["e5", "e2", "e1"]
        );
        assert_eq!(
            list(DeliveryFilter {
                app_id: Some(None),
                ..all.clone()
            })
            .await,
            ["e4"],
            "the config's"
        );
        assert_eq!(
            list(DeliveryFilter {
                event: Some("message".into()),
                ..all.clone()
            })
            .await,
            ["e4", "e2", "e1"]
        );
        assert_eq!(
            list(DeliveryFilter {
                app_id: Some(Some(shop)),
                event: Some("message".into()),
                ..all.clone()
            })
            .await,
            ["e2", "e1"]
        );
        // Paging back from the newest.
        let page = DeliveryFilter {
            limit: 2,
            ..all.clone()
        };
        assert_eq!(list(page.clone()).await, ["e5", "e4"]);
        assert_eq!(
            list(DeliveryFilter {
                before_seq: Some(seqs[3]),
                ..page.clone()
            })
            .await,
            ["e3", "e2"]
        );
        assert_eq!(
            list(DeliveryFilter {
                before_seq: Some(seqs[1]),
                ..page.clone()
            })
            .await,
            ["e1"]
        );
        assert!(
            list(DeliveryFilter {
                limit: 0,
                ..all.clone()
            })
            .await
            .is_empty()
        );

        // e1 delivered, e2 failed, e3 being sent, e4 and e5 pending.
        let claimed = wh_claim(store, "w", T_MS + 10, T_MS + 30_000, 3).await;
        assert_eq!(wh_ids(&claimed), ["e1", "e2", "e3"]);
        wh_settle(
            store,
            "w",
            &[
                delivered(seqs[0], T_MS + 10),
                wh_outcome(
                    seqs[1],
                    T_MS + 10,
                    Some(404),
                    DeliveryResult::Failed {
                        error: "HTTP 404".into(),
                    },
                ),
            ],
            T_MS + 20,
        )
        .await;
        let state = |state: &str| DeliveryFilter {
            state: Some(state.into()),
            ..all.clone()
        };
        assert_eq!(list(state("delivered")).await, ["e1"]);
        assert_eq!(list(state("failed")).await, ["e2"]);
        assert_eq!(list(state("sending")).await, ["e3"]);
        assert_eq!(list(state("pending")).await, ["e5", "e4"]);
        assert_eq!(
            wh_next_due(store).await,
            Some(T_MS + 3),
            "e4, stored at T_MS + 3"
        );

        // Purging takes finished deliveries stored before the cutoff, with their attempts;
        // waiting ones stay however old.
        assert_eq!(b.webhook_purge(T_MS).await.unwrap(), 0);
        assert_eq!(b.webhook_purge(T_MS + 1).await.unwrap(), 1);
        assert_eq!(b.webhook_delivery("e1").await.unwrap(), None);
        assert!(b.webhook_attempts(&[seqs[0]]).await.unwrap().is_empty());
        assert_eq!(b.webhook_attempts(&[seqs[1]]).await.unwrap().len(), 1);
        assert_eq!(b.webhook_purge(T_MS + 1_000).await.unwrap(), 1);
        assert_eq!(list(all.clone()).await, ["e5", "e4", "e3"]);
        assert!(b.webhook_attempts(&[seqs[1]]).await.unwrap().is_empty());
    }

    pub async fn push_retry_failed_requeues_under_new_ids(store: &Store) {
        let b = store.backend();
        let seq = push(store, "pRetry", "users:3", T, &["o_1", "o_2", "o_3"]).await;
        let first = claim(store, "w", T_MS, T_MS + 30_000, 10).await;
        settle(
            store,
            "w",
            &[
                outcome(seq, "o_1", sent(1_001)),
                outcome(seq, "o_2", failed("43004 require subscribe")),
                outcome(seq, "o_3", failed("40003 invalid openid")),
            ],
            T + 1,
        )
        .await;
        assert_eq!(
            b.push_retry_failed(seq, T_MS + 10_000, T + 10)
                .await
                .unwrap(),
            2
        );
        assert_eq!(
            b.push_retry_failed(seq, T_MS + 10_000, T + 10)
                .await
                .unwrap(),
            0,
            "none failed now"
        );
        let rows = recipients(store, seq).await;
        assert_eq!(
            rows.iter()
                .map(|r| (r.openid.as_str(), r.state.as_str(), r.attempts))
                .collect::<Vec<_>>(),
            [
                ("o_1", "sent", 1),
                ("o_2", "pending", 0),
                ("o_3", "pending", 0)
            ]
        );
        assert!(rows[1].error.is_none());
        let again = claim(store, "w", T_MS + 10_000, T_MS + 40_000, 10).await;
        assert_eq!(openids(&again), ["o_2", "o_3"]);
        let old = |openid: &str| {
            first
                .iter()
                .find(|c| c.openid == openid)
                .unwrap()
                .client_msg_id
                .clone()
        };
        for c in &again {
            assert_ne!(c.client_msg_id, old(&c.openid), "a new message id");
            assert!(
                c.client_msg_id.starts_with(&old(&c.openid)),
                "{}",
                c.client_msg_id
            );
        }
        // A second resend replaces the suffix instead of growing it.
        settle(
            store,
            "w",
            &[outcome(seq, "o_2", failed("43004 require subscribe"))],
            T + 11,
        )
        .await;
        assert_eq!(
            b.push_retry_failed(seq, T_MS + 20_000, T + 20)
                .await
                .unwrap(),
            1
        );
        let third = claim(store, "w", T_MS + 20_000, T_MS + 50_000, 10).await;
        assert_eq!(
            third[0].client_msg_id,
            format!("{}-r{}", old("o_2"), T_MS + 20_000)
        );
    }

    // --- the console: sessions and login links --------------------------------------------

    pub async fn admin_sessions_expire_and_end(store: &Store) {
        use huixin::store::admin::AdminSession;
        let b = store.backend();
        let session = |id: &str, expires_at| AdminSession {
            id_hash: id.into(),
            via: "password".into(),
            created_at: 1_000,
            expires_at,
        };
        b.admin_session_insert(&session("a", 2_000)).await.unwrap();
        b.admin_session_insert(&session("b", 5_000)).await.unwrap();
        assert_eq!(
            b.admin_session("a", 1_999).await.unwrap(),
            Some(session("a", 2_000))
        );
        assert_eq!(b.admin_session("a", 2_000).await.unwrap(), None, "expired");
        assert_eq!(b.admin_session("nobody", 1_000).await.unwrap(), None);
        assert!(
            b.admin_session_insert(&session("b", 9_000)).await.is_err(),
            "a session id is never reused"
        );
        assert!(b.admin_session_delete("b").await.unwrap());
        assert!(!b.admin_session_delete("b").await.unwrap());
        assert_eq!(b.admin_session("b", 1_000).await.unwrap(), None);
        b.admin_session_insert(&session("c", 9_000)).await.unwrap();
        assert_eq!(b.admin_purge(3_000).await.unwrap(), 1, "a went, c stays");
        assert!(b.admin_session("c", 3_000).await.unwrap().is_some());
        assert_eq!(b.admin_sessions_clear().await.unwrap(), 1);
        assert_eq!(b.admin_session("c", 3_000).await.unwrap(), None);
    }

    pub async fn admin_links_sign_in_once(store: &Store) {
        let b = store.backend();
        b.admin_link_insert("l1", 1_000, 1_900).await.unwrap();
        b.admin_link_insert("l2", 1_000, 1_900).await.unwrap();
        assert!(!b.admin_link_use("unknown", 1_100).await.unwrap());
        assert!(b.admin_link_use("l1", 1_100).await.unwrap());
        assert!(!b.admin_link_use("l1", 1_101).await.unwrap(), "once");
        assert!(!b.admin_link_use("l2", 1_900).await.unwrap(), "expired");
        b.admin_link_insert("l3", 1_000, 1_900).await.unwrap();
        // Two handles racing for one link: exactly one signs in.
        let (x, y) = tokio::join!(b.admin_link_use("l3", 1_200), b.admin_link_use("l3", 1_200));
        assert!(x.unwrap() ^ y.unwrap());
        assert_eq!(b.admin_purge(2_000).await.unwrap(), 3);
    }

    pub async fn webhook_insert_claimed_unless_one_waits(store: &Store) {
        let b = store.backend();
        let lease = T_MS + 30_000;
        let (s1, claimed) = b
            .webhook_insert_claimed(
                &delivery("d1", None, "config:ops", "o_a", T_MS),
                "w1",
                lease,
            )
            .await
            .unwrap();
        assert!(claimed, "nothing before it");
        let d1 = wh(store, "d1").await;
        assert_eq!(
            (
                d1.seq,
                d1.state.as_str(),
                d1.attempts,
                d1.next_at,
                d1.updated_at
            ),
            (s1, "sending", 1, T_MS, T_MS)
        );
        assert_eq!(wh_next_due(store).await, Some(lease), "its lease counts");
        let (s2, claimed) = b
            .webhook_insert_claimed(
                &delivery("d2", None, "config:ops", "o_a", T_MS + 1),
                "w1",
                lease,
            )
            .await
            .unwrap();
        assert!(!claimed, "d1 is being sent");
        assert!(s2 > s1);
        assert_eq!(
            (
                wh(store, "d2").await.state.as_str(),
                wh(store, "d2").await.attempts
            ),
            ("pending", 0)
        );
        // Other followers, other endpoints and no ordering go at once.
        for (id, endpoint, ordering) in [
            ("d3", "config:ops", "o_b"),
            ("d4", "config:audit", "o_a"),
            ("d5", "config:ops", ""),
            ("d6", "config:ops", ""),
        ] {
            let (_, claimed) = b
                .webhook_insert_claimed(
                    &delivery(id, None, endpoint, ordering, T_MS + 2),
                    "w1",
                    lease,
                )
                .await
                .unwrap();
            assert!(claimed, "{id}");
        }
        assert!(
            wh_claim(store, "w2", T_MS + 3, lease, 10).await.is_empty(),
            "d2 waits for d1"
        );
        // The owner settles what it claimed on insert.
        wh_settle(store, "w1", &[delivered(s1, T_MS)], T_MS + 4).await;
        assert_eq!(wh(store, "d1").await.state, "delivered");
        // A delivery stored while an earlier one is pending (d2) waits too.
        let (_, claimed) = b
            .webhook_insert_claimed(
                &delivery("d7", None, "config:ops", "o_a", T_MS + 5),
                "w1",
                lease,
            )
            .await
            .unwrap();
        assert!(!claimed, "d2 is pending");
        assert_eq!(
            wh_ids(&wh_claim(store, "w2", T_MS + 6, lease, 10).await),
            ["d2"]
        );
        let (_, claimed) = b
            .webhook_insert_claimed(
                &delivery("d8", None, "config:ops", "o_a", T_MS + 7),
                "w1",
                lease,
            )
            .await
            .unwrap();
        assert!(!claimed, "d2 is being sent, d7 pending");
        assert!(
            b.webhook_insert_claimed(
                &delivery("d8", None, "config:ops", "", T_MS + 8),
                "w1",
                lease
            )
            .await
            .is_err(),
            "a public id is used once"
        );
    }

    // --- opening ---------------------------------------------------------------------------

    pub async fn migrations_are_idempotent(store: Store, url: &str) {
        store
            .backend()
            .follower_subscribed("o_m", 5, Some("kept"))
            .await
            .unwrap();
        // A second open while the first is live (another process), then after it closes.
        let second = Store::open(url).await.expect("opens again while open");
        assert_eq!(
            follower(&second, "o_m").await.scene.as_deref(),
            Some("kept")
        );
        drop(store);
        drop(second);
        let third = Store::open(url).await.expect("opens a third time");
        third.ping().await.unwrap();
        assert_eq!(follower(&third, "o_m").await.scene.as_deref(), Some("kept"));
    }

    /// Two handles (two processes) take from one bucket: 3 a minute in all, refilling
    /// continuously, and an idle bucket is pruned.
    pub async fn rate_buckets_are_shared_between_handles(store: Store, url: &str) {
        let other = Store::open(url).await.expect("opens again");
        let t = 1_700_000_000_000_i64;
        let take = |s: &Store, at: i64| {
            let s = s.clone();
            async move { s.backend().rate_take("push:k1", 3, at).await.unwrap() }
        };
        assert_eq!(take(&store, t).await, None);
        assert_eq!(take(&other, t).await, None);
        assert_eq!(take(&store, t + 1).await, None);
        let wait = take(&other, t + 2)
            .await
            .expect("the fourth in a minute waits");
        assert!(
            (19_000..=20_000).contains(&(wait.as_millis() as i64)),
            "a token every 20 s: {wait:?}"
        );
        // Another key has its own bucket.
        assert_eq!(
            other
                .backend()
                .rate_take("push:k2", 3, t + 2)
                .await
                .unwrap(),
            None
        );
        // 20 s later one token is back, for whichever process comes first.
        assert_eq!(take(&other, t + 20_001).await, None);
        assert!(take(&store, t + 20_002).await.is_some());
        // A clock behind the last take refills nothing, and never more than the bucket holds.
        assert!(take(&store, t).await.is_some());
        assert_eq!(take(&store, t + 600_000).await, None);
        assert_eq!(take(&store, t + 600_000).await, None);
        assert_eq!(take(&store, t + 600_000).await, None);
        assert!(take(&store, t + 600_000).await.is_some());
        // Pruning drops buckets idle for an hour.
        let later = (t + 600_000) / 1000 + 3_601;
        store.backend().prune(0, 0, i64::MIN, later).await.unwrap();
        for _ in 0..3 {
            assert_eq!(take(&other, t + 600_001).await, None, "a fresh bucket");
        }
    }

    /// Two handles (two processes) claim from one outbox at once while two more store
    /// deliveries: no delivery is claimed twice, and each follower's deliveries are sent one at
    /// a time, in the order they were stored.
    pub async fn webhook_claims_from_two_handles_keep_the_order(store: Store, url: &str) {
        use std::sync::atomic::{AtomicUsize, Ordering};
        use std::sync::{Arc, Mutex};

        let other = Store::open(url).await.expect("opens again");
        let lease = T_MS + 3_600_000;

        // Two claims at the same moment, of one follower's two deliveries: one of them takes
        // the first, neither the second.
        for round in 0..10 {
            let (first, second) = (format!("r{round}a"), format!("r{round}b"));
            let ordering = format!("o_round_{round}");
            let seqs = outbox(
                &store,
                &[
                    (first.as_str(), ordering.as_str()),
                    (second.as_str(), ordering.as_str()),
                ],
                T_MS,
            )
            .await;
            let (x, y) = tokio::join!(
                wh_claim(&store, "x", T_MS, lease, 10),
                wh_claim(&other, "y", T_MS, lease, 10)
            );
            let mut got = wh_ids(&x);
            got.extend(wh_ids(&y));
            assert_eq!(got, [first.as_str()], "round {round}");
            let owner = if x.is_empty() { "y" } else { "x" };
            wh_settle(&store, owner, &[delivered(seqs[0], T_MS)], T_MS).await;
            let next = wh_claim(&other, "y", T_MS, lease, 10).await;
            assert_eq!(wh_ids(&next), [second.as_str()], "round {round}");
            wh_settle(&store, "y", &[delivered(seqs[1], T_MS)], T_MS).await;
        }

        // Then many at once: two writers per handle store deliveries of a few followers (half
        // of them claimed on insert, and settled by the writer), two claimers per handle send
        // what is due. Each notes a claim once it has it and a settlement before making it, so
        // the log shows every claim after the settlement of the delivery before it.
        const ORDERINGS: usize = 5;
        const PER_WRITER: usize = 30;
        const TOTAL: usize = 4 * PER_WRITER;
        #[derive(Debug, Clone, Copy, PartialEq, Eq)]
        enum Event {
            Claimed,
            Settled,
        }
        let log: Arc<Mutex<Vec<(Event, i64)>>> = Arc::default();
        let settled = Arc::new(AtomicUsize::new(0));
        let note = |log: &Mutex<Vec<(Event, i64)>>, event, seq| {
            log.lock().unwrap().push((event, seq));
        };
        let mut tasks = Vec::new();
        for (w, handle) in [&store, &other, &store, &other].into_iter().enumerate() {
            let (handle, log, settled) = (handle.clone(), Arc::clone(&log), Arc::clone(&settled));
            tasks.push(tokio::spawn(async move {
                let owner = format!("writer{w}");
                for i in 0..PER_WRITER {
                    let id = format!("w{w}-{i}");
                    let ordering = format!("o_{}", (i + w) % ORDERINGS);
                    let new = delivery(&id, None, "config:ops", &ordering, T_MS);
                    let b = handle.backend();
                    if i % 2 == 0 {
                        b.webhook_insert(&[new]).await.expect("stored");
                        continue;
                    }
                    let (seq, claimed) = b
                        .webhook_insert_claimed(&new, &owner, lease)
                        .await
                        .expect("stored");
                    if claimed {
                        note(&log, Event::Claimed, seq);
                        note(&log, Event::Settled, seq);
                        wh_settle(&handle, &owner, &[delivered(seq, T_MS)], T_MS).await;
                        settled.fetch_add(1, Ordering::SeqCst);
                    }
                }
            }));
        }
        for (c, handle) in [&store, &other, &store, &other].into_iter().enumerate() {
            let (handle, log, settled) = (handle.clone(), Arc::clone(&log), Arc::clone(&settled));
            tasks.push(tokio::spawn(async move {
                let owner = format!("claimer{c}");
                let deadline = std::time::Instant::now() + std::time::Duration::from_secs(60);
                while settled.load(Ordering::SeqCst) < TOTAL {
                    assert!(std::time::Instant::now() < deadline, "{owner} gave up");
                    let claimed = wh_claim(&handle, &owner, T_MS, lease, 4).await;
                    if claimed.is_empty() {
                        tokio::time::sleep(std::time::Duration::from_millis(2)).await;
                        continue;
                    }
                    for d in &claimed {
                        note(&log, Event::Claimed, d.seq);
                    }
                    for d in &claimed {
                        note(&log, Event::Settled, d.seq);
                    }
                    let outcomes: Vec<DeliveryOutcome> =
                        claimed.iter().map(|d| delivered(d.seq, T_MS)).collect();
                    wh_settle(&handle, &owner, &outcomes, T_MS).await;
                    settled.fetch_add(claimed.len(), Ordering::SeqCst);
                }
            }));
        }
        for task in tasks {
            task.await.expect("no task failed");
        }

        let log = log.lock().unwrap().clone();
        let stored = store
            .backend()
            .webhook_deliveries(&DeliveryFilter {
                limit: 1_000,
                ..DeliveryFilter::default()
            })
            .await
            .unwrap();
        let stored: Vec<&DeliveryRow> = stored.iter().filter(|d| d.id.starts_with('w')).collect();
        assert_eq!(stored.len(), TOTAL);
        assert!(
            stored
                .iter()
                .all(|d| d.state == "delivered" && d.attempts == 1),
            "each delivered at its one attempt"
        );
        let claims: Vec<i64> = log
            .iter()
            .filter(|(e, _)| *e == Event::Claimed)
            .map(|(_, seq)| *seq)
            .collect();
        assert_eq!(
            claims.iter().collect::<BTreeSet<_>>().len(),
            claims.len(),
            "no delivery claimed twice"
        );
        assert_eq!(claims.len(), TOTAL);
        let at = |event: Event, seq: i64| {
            log.iter()
                .position(|&(e, s)| e == event && s == seq)
                .unwrap_or_else(|| panic!("{event:?} {seq}"))
        };
        for n in 0..ORDERINGS {
            let ordering = format!("o_{n}");
            let mut seqs: Vec<i64> = stored
                .iter()
                .filter(|d| d.ordering == ordering)
                .map(|d| d.seq)
                .collect();
            seqs.sort_unstable();
            for pair in seqs.windows(2) {
                assert!(
                    at(Event::Settled, pair[0]) < at(Event::Claimed, pair[1]),
                    "{ordering}: {} claimed before {} was settled",
                    pair[1],
                    pair[0]
                );
            }
        }
    }

    // --- the console: pages of the log, followers and pushes; the hourly counts ------------

    /// A log row at `at` from `openid`.
    fn log_row(
        at: i64,
        openid: &str,
        msg_type: &str,
        event: Option<&str>,
        outcome: &str,
        rule: Option<&str>,
    ) -> LogEntry {
        LogEntry {
            received_at: at,
            openid: openid.into(),
            msg_type: msg_type.into(),
            event: event.map(Into::into),
            msg_id: (msg_type != "event").then(|| format!("{at}")),
            summary: Some(format!("summary {at}")),
            reply_type: if rule.is_some() { "text" } else { "success" }.into(),
            outcome: outcome.into(),
            rule: rule.map(Into::into),
            latency_ms: Some(at % 97),
            reply: rule.map(|r| format!("answered by {r}")),
        }
    }

    /// A log page's row without its id.
    fn entry_of(row: &LogRow) -> LogEntry {
        LogEntry {
            received_at: row.received_at,
            openid: row.openid.clone(),
            msg_type: row.msg_type.clone(),
            event: row.event.clone(),
            msg_id: row.msg_id.clone(),
            summary: row.summary.clone(),
            reply_type: row.reply_type.clone(),
            outcome: row.outcome.clone(),
            rule: row.rule.clone(),
            latency_ms: row.latency_ms,
            reply: row.reply.clone(),
        }
    }

    fn count(hour: i64, dim: &str, key: &str, n: i64) -> CountRow {
        CountRow {
            hour,
            dim: dim.into(),
            key: key.into(),
            n,
        }
    }

    /// The hourly counts of dimension `dim` from `since_hour` on.
    async fn counts_of(store: &Store, since_hour: i64, dim: &str) -> Vec<CountRow> {
        store
            .backend()
            .log_counts(since_hour)
            .await
            .expect("counts read")
            .into_iter()
            .filter(|c| c.dim == dim)
            .collect()
    }

    pub async fn log_counts_follow_the_batches(store: &Store) {
        let b = store.backend();
        let h = T / 3_600;
        let rule_a = Some("rules/a.rhai:1");
        b.write_batch(&[
            Deferred::Log(log_row(T, "o_a", "text", None, "answered", rule_a)),
            Deferred::Seen {
                openid: "o_a".into(),
                at: T,
            },
            Deferred::Log(log_row(T + 1, "o_b", "text", None, "answered", rule_a)),
            Deferred::Log(log_row(
                T + 2,
                "o_a",
                "event",
                Some("subscribe"),
                "answered",
                Some("rules/b.rhai:9"),
            )),
            // A retry is the same message again: counted only as an outcome.
            Deferred::Log(log_row(T + 3, "o_a", "text", None, "retry", rule_a)),
            Deferred::Log(log_row(T + 3_600, "o_c", "image", None, "failed", None)),
        ])
        .await
        .unwrap();
        // A later batch adds to the same hour.
        b.write_batch(&[Deferred::Log(log_row(
            T + 5,
            "o_d",
            "text",
            None,
            "limited",
            None,
        ))])
        .await
        .unwrap();
        // And the batch writer's batches count too.
        store.defer(Deferred::Log(log_row(
            T + 6,
            "o_e",
            "text",
            None,
            "blocked",
            None,
        )));
        store.flush().await.unwrap();

        assert_eq!(
            b.log_counts(h).await.unwrap(),
            vec![
                count(h, "event", "subscribe", 1),
                count(h, "outcome", "answered", 3),
                count(h, "outcome", "blocked", 1),
                count(h, "outcome", "limited", 1),
                count(h, "outcome", "retry", 1),
                count(h, "rule", "rules/a.rhai:1", 2),
                count(h, "rule", "rules/b.rhai:9", 1),
                count(h, "type", "event", 1),
                count(h, "type", "text", 4),
                count(h + 1, "outcome", "failed", 1),
                count(h + 1, "type", "image", 1),
            ]
        );
        assert_eq!(
            b.log_counts(h + 1).await.unwrap(),
            vec![
                count(h + 1, "outcome", "failed", 1),
                count(h + 1, "type", "image", 1)
            ],
            "from the hour asked for"
        );
        assert!(b.log_counts(h + 2).await.unwrap().is_empty());
    }

    pub async fn log_page_filters_and_pages_newest_first(store: &Store) {
        let b = store.backend();
        // 30 rows: three users in turn; text, image, a click, a location message and a
        // location event in turn; a few rare outcomes.
        let rows: Vec<LogEntry> = (0..30)
            .map(|i| {
                let (msg_type, event) = match i % 5 {
                    0 => ("text", None),
                    1 => ("image", None),
                    2 => ("event", Some("click")),
                    3 => ("location", None),
                    _ => ("event", Some("location")),
                };
                let outcome = match i {
                    9 | 19 => "failed",
                    14 => "blocked",
                    _ => "answered",
                };
                let rule = (outcome == "answered" && i % 2 == 0).then_some("rules/x.rhai:2");
                log_row(
                    T + i,
                    &format!("o_{}", i % 3),
                    msg_type,
                    event,
                    outcome,
                    rule,
                )
            })
            .collect();
        let batch: Vec<Deferred> = rows.iter().cloned().map(Deferred::Log).collect();
        b.write_batch(&batch).await.unwrap();

        let page = |filter: LogFilter| async move { b.log_page(&filter).await.unwrap() };
        let expect = |keep: &dyn Fn(&LogEntry) -> bool| -> Vec<LogEntry> {
            rows.iter().rev().filter(|e| keep(e)).cloned().collect()
        };
        let entries = |page: Vec<LogRow>| page.iter().map(entry_of).collect::<Vec<_>>();

        let all = page(LogFilter {
            limit: 100,
            ..LogFilter::default()
        })
        .await;
        assert_eq!(entries(all.clone()), expect(&|_| true), "every column kept");
        assert!(all.windows(2).all(|w| w[0].id > w[1].id), "newest first");
        assert_eq!(
            page(LogFilter::default()).await,
            all,
            "a limit of 0 is the default page"
        );

        // Page by page, each starting below the last id of the one before.
        let mut paged = Vec::new();
        let mut before_id = None;
        loop {
            let next = page(LogFilter {
                before_id,
                limit: 7,
                ..LogFilter::default()
            })
            .await;
            assert!(next.len() <= 7);
            let Some(last) = next.last() else { break };
            before_id = Some(last.id);
            paged.extend(next);
        }
        assert_eq!(paged, all);

        let by = |f: LogFilter| async move { entries(page(LogFilter { limit: 100, ..f }).await) };
        let some = |s: &str| Some(s.to_owned());
        assert_eq!(
            by(LogFilter {
                openid: some("o_1"),
                ..LogFilter::default()
            })
            .await,
            expect(&|e| e.openid == "o_1")
        );
        assert_eq!(
            by(LogFilter {
                msg_type: some("image"),
                ..LogFilter::default()
            })
            .await,
            expect(&|e| e.msg_type == "image")
        );
        assert_eq!(
            by(LogFilter {
                msg_type: some("event"),
                ..LogFilter::default()
            })
            .await,
            expect(&|e| e.msg_type == "event"),
            "every event"
        );
        let clicks = expect(&|e| e.event.as_deref() == Some("click"));
        assert_eq!(clicks.len(), 6);
        assert_eq!(
            by(LogFilter {
                msg_type: some("click"),
                ..LogFilter::default()
            })
            .await,
            clicks,
            "a type that is no message type names an event"
        );
        assert_eq!(
            by(LogFilter {
                event: some("click"),
                ..LogFilter::default()
            })
            .await,
            clicks
        );
        assert_eq!(
            by(LogFilter {
                msg_type: some("location"),
                ..LogFilter::default()
            })
            .await,
            expect(&|e| e.msg_type == "location"),
            "location is the message type"
        );
        assert_eq!(
            by(LogFilter {
                event: some("location"),
                ..LogFilter::default()
            })
            .await,
            expect(&|e| e.event.as_deref() == Some("location")),
            "the event asked for by name"
        );
        assert!(
            by(LogFilter {
                msg_type: some("click"),
                event: some("location"),
                ..LogFilter::default()
            })
            .await
            .is_empty(),
            "two event names match nothing"
        );
        assert_eq!(
            by(LogFilter {
                outcome: some("failed"),
                ..LogFilter::default()
            })
            .await,
            expect(&|e| e.outcome == "failed")
        );
        assert_eq!(
            by(LogFilter {
                outcome: some("answered"),
                ..LogFilter::default()
            })
            .await,
            expect(&|e| e.outcome == "answered")
        );
        assert_eq!(
            by(LogFilter {
                openid: some("o_0"),
                outcome: some("failed"),
                msg_type: some("event"),
                ..LogFilter::default()
            })
            .await,
            expect(&|e| e.openid == "o_0" && e.outcome == "failed" && e.msg_type == "event")
        );
        let user_images = expect(&|e| e.openid == "o_2" && e.msg_type == "image");
        assert!(!user_images.is_empty());
        assert_eq!(
            by(LogFilter {
                openid: some("o_2"),
                msg_type: some("image"),
                ..LogFilter::default()
            })
            .await,
            user_images
        );
        assert!(
            by(LogFilter {
                openid: some("o_nobody"),
                ..LogFilter::default()
            })
            .await
            .is_empty()
        );
        // A filtered page also starts below the id it is given.
        let failed = page(LogFilter {
            outcome: some("failed"),
            limit: 1,
            ..LogFilter::default()
        })
        .await;
        assert_eq!(failed.len(), 1);
        let older = page(LogFilter {
            outcome: some("failed"),
            before_id: Some(failed[0].id),
            ..LogFilter::default()
        })
        .await;
        assert_eq!(entries(older), expect(&|e| e.outcome == "failed")[1..]);
    }

    /// Every follower of `openids`, in the console's order: most recently seen first (never
    /// seen last), then by OpenID.
    async fn in_console_order(store: &Store, openids: &[String]) -> Vec<Follower> {
        let mut all = Vec::new();
        for openid in openids {
            if let Some(f) = store.backend().follower(openid).await.unwrap() {
                all.push(f);
            }
        }
        all.sort_by(|a, b| {
            (std::cmp::Reverse(a.last_seen_at.unwrap_or(0)), &a.openid)
                .cmp(&(std::cmp::Reverse(b.last_seen_at.unwrap_or(0)), &b.openid))
        });
        all
    }

    /// Every follower `filter` selects, read `limit` at a time.
    async fn every_page(store: &Store, filter: &FollowerFilter, limit: u32) -> Vec<Follower> {
        let mut all = Vec::new();
        let mut after = None;
        loop {
            let page = store
                .backend()
                .followers_page(&FollowerFilter {
                    after: after.clone(),
                    limit,
                    ..filter.clone()
                })
                .await
                .expect("page read");
            assert!(page.len() <= limit as usize);
            let Some(last) = page.last() else {
                return all;
            };
            after = Some(FollowerFilter::key_of(last));
            all.extend(page);
        }
    }

    pub async fn followers_page_orders_filters_and_pages(store: &Store) {
        let b = store.backend();
        let openids: Vec<String> = (0..12).map(|i| format!("o_f{i:02}")).collect();
        // o_f00..o_f08 follow (a scene for every third), o_f04 unfollowed since; o_f09..o_f11
        // are known from their messages only.
        for (i, openid) in openids.iter().enumerate().take(9) {
            let scene = (i % 3 == 0).then_some("poster");
            b.follower_subscribed(openid, T - 100 + i as i64, scene)
                .await
                .unwrap();
        }
        b.follower_unsubscribed("o_f04", T - 50).await.unwrap();
        // Seen in a shuffled order, o_f05 and o_f06 at the same time.
        let seen: Vec<Deferred> = openids
            .iter()
            .enumerate()
            .map(|(i, openid)| Deferred::Seen {
                openid: openid.clone(),
                at: match i {
                    5 | 6 => T + 500,
                    i => T + (i as i64 * 7 % 12) * 10,
                },
            })
            .collect();
        b.write_batch(&seen).await.unwrap();
        for openid in ["o_f01", "o_f02", "o_f05", "o_ghost"] {
            b.topic_create("news", true, "", T).await.unwrap();
            b.topic_join("news", openid, T).await.unwrap();
        }
        let shop = insert_app(store, "shop").await;
        for (uid, openid) in [("u1", "o_f02"), ("u2", "o_f03"), ("u3", "o_f03")] {
            bind(store, &new_binding(shop, uid, openid, T)).await;
        }

        let everyone = in_console_order(store, &openids).await;
        assert_eq!(everyone.len(), 12);
        let page = |filter: FollowerFilter| async move {
            b.followers_page(&FollowerFilter {
                limit: 100,
                ..filter
            })
            .await
            .unwrap()
        };
        let expect = |keep: &dyn Fn(&Follower) -> bool| -> Vec<Follower> {
            everyone.iter().filter(|f| keep(f)).cloned().collect()
        };
        let some = |s: &str| Some(s.to_owned());

        assert_eq!(page(FollowerFilter::default()).await, everyone);
        assert_eq!(
            b.followers_page(&FollowerFilter::default()).await.unwrap(),
            everyone,
            "a limit of 0 is the default page"
        );
        assert_eq!(
            every_page(store, &FollowerFilter::default(), 5).await,
            everyone,
            "page by page"
        );
        let ties: Vec<&str> = everyone
            .iter()
            .filter(|f| f.last_seen_at == Some(T + 500))
            .map(|f| f.openid.as_str())
            .collect();
        assert_eq!(ties, ["o_f05", "o_f06"], "seen together: by OpenID");

        assert_eq!(
            page(FollowerFilter {
                openid: some("o_f0"),
                ..FollowerFilter::default()
            })
            .await,
            expect(&|f| f.openid.starts_with("o_f0"))
        );
        assert_eq!(
            page(FollowerFilter {
                openid: some(""),
                ..FollowerFilter::default()
            })
            .await,
            everyone,
            "an empty prefix asks for nothing"
        );
        assert!(
            page(FollowerFilter {
                openid: some("o_f%"),
                ..FollowerFilter::default()
            })
            .await
            .is_empty(),
            "a prefix is taken literally"
        );
        assert_eq!(
            page(FollowerFilter {
                scene: some("poster"),
                ..FollowerFilter::default()
            })
            .await,
            expect(&|f| f.scene.as_deref() == Some("poster"))
        );
        let news = expect(&|f| ["o_f01", "o_f02", "o_f05"].contains(&f.openid.as_str()));
        assert_eq!(
            page(FollowerFilter {
                topic: some("news"),
                ..FollowerFilter::default()
            })
            .await,
            news,
            "members who are followers"
        );
        assert_eq!(
            every_page(
                store,
                &FollowerFilter {
                    topic: some("news"),
                    ..FollowerFilter::default()
                },
                1
            )
            .await,
            news
        );
        assert_eq!(
            page(FollowerFilter {
                app_id: Some(shop),
                ..FollowerFilter::default()
            })
            .await,
            expect(&|f| ["o_f02", "o_f03"].contains(&f.openid.as_str())),
            "each once, however many uids"
        );
        assert_eq!(
            page(FollowerFilter {
                subscribed: Some(true),
                ..FollowerFilter::default()
            })
            .await,
            expect(&|f| f.subscribed)
        );
        assert_eq!(
            page(FollowerFilter {
                subscribed: Some(false),
                ..FollowerFilter::default()
            })
            .await,
            expect(&|f| !f.subscribed)
        );
        assert_eq!(
            page(FollowerFilter {
                openid: some("o_f0"),
                scene: some("poster"),
                subscribed: Some(true),
                ..FollowerFilter::default()
            })
            .await,
            expect(&|f| {
                f.openid.starts_with("o_f0") && f.scene.as_deref() == Some("poster") && f.subscribed
            })
        );
        assert_eq!(
            page(FollowerFilter {
                topic: some("news"),
                app_id: Some(shop),
                ..FollowerFilter::default()
            })
            .await,
            expect(&|f| f.openid == "o_f02")
        );
        for empty in [
            FollowerFilter {
                topic: some("nope"),
                ..FollowerFilter::default()
            },
            FollowerFilter {
                scene: some("nope"),
                subscribed: Some(true),
                ..FollowerFilter::default()
            },
            FollowerFilter {
                app_id: Some(shop + 1),
                ..FollowerFilter::default()
            },
            FollowerFilter {
                openid: some("o_x"),
                ..FollowerFilter::default()
            },
        ] {
            assert!(page(empty.clone()).await.is_empty(), "{empty:?}");
        }
    }

    /// Past `DRIVER_CAP` (4,000) followers a filter selects, the page is read in order instead
    /// of sorted: the same followers either way.
    pub async fn followers_page_reads_a_large_selection_in_order(store: &Store) {
        let b = store.backend();
        const N: usize = 4_200;
        let openids: Vec<String> = (0..N).map(|i| format!("o_d{i:04}")).collect();
        let seen: Vec<Deferred> = openids
            .iter()
            .enumerate()
            .map(|(i, openid)| Deferred::Seen {
                openid: openid.clone(),
                // Many seen at the same time.
                at: T + (i as i64 * 37 % 1_000),
            })
            .collect();
        for chunk in seen.chunks(1_000) {
            b.write_batch(chunk).await.unwrap();
        }
        b.topic_create("big", true, "", T).await.unwrap();
        for openid in openids.iter().skip(100) {
            b.topic_join("big", openid, T).await.unwrap();
        }
        let everyone = in_console_order(store, &openids).await;
        let expect = |keep: &dyn Fn(&Follower) -> bool| -> Vec<Follower> {
            everyone.iter().filter(|f| keep(f)).cloned().collect()
        };
        let some = |s: &str| Some(s.to_owned());
        let in_big = |f: &Follower| f.openid.as_str() >= "o_d0100";

        // A prefix of everyone, a topic of nearly everyone: in order.
        assert_eq!(
            every_page(
                store,
                &FollowerFilter {
                    openid: some("o_d"),
                    ..FollowerFilter::default()
                },
                1_000
            )
            .await,
            everyone
        );
        assert_eq!(
            every_page(
                store,
                &FollowerFilter {
                    topic: some("big"),
                    ..FollowerFilter::default()
                },
                1_000
            )
            .await,
            expect(&in_big)
        );
        // A prefix of a thousand: sorted, with the large topic checked on each.
        assert_eq!(
            every_page(
                store,
                &FollowerFilter {
                    openid: some("o_d00"),
                    topic: some("big"),
                    ..FollowerFilter::default()
                },
                30
            )
            .await,
            expect(&|f| f.openid.starts_with("o_d00") && in_big(f))
        );
        assert_eq!(
            every_page(
                store,
                &FollowerFilter {
                    openid: some("o_d1"),
                    ..FollowerFilter::default()
                },
                250
            )
            .await,
            expect(&|f| f.openid.starts_with("o_d1"))
        );
    }

    pub async fn push_page_counts_recipients_by_state(store: &Store) {
        let b = store.backend();
        let a = push(store, "pA", "users:3", T, &["o_1", "o_2", "o_3"]).await;
        let bb = push(store, "pB", "users:2", T + 1, &["o_1", "o_2"]).await;
        assert_eq!(claim(store, "w", T_MS, T_MS + 30_000, 10).await.len(), 5);
        settle(
            store,
            "w",
            &[
                outcome(a, "o_1", sent(501)),
                outcome(a, "o_2", failed("43004 require subscribe")),
                outcome(bb, "o_1", retry(T_MS + 60_000, "-1 busy")),
                outcome(bb, "o_2", sent(502)),
            ],
            T + 2,
        )
        .await;
        assert_eq!(
            b.push_finished(501, true, "success", T + 3).await.unwrap(),
            1
        );
        let c = push(store, "pC", "user:o_1", T + 4, &["o_1"]).await;

        let summary = |s: &PushSummary| {
            (
                s.push.id.clone(),
                [s.pending, s.sending, s.sent, s.delivered, s.failed],
            )
        };
        let page = b.push_page(None, 10).await.unwrap();
        assert_eq!(
            page.iter().map(summary).collect::<Vec<_>>(),
            [
                ("pC".to_owned(), [1, 0, 0, 0, 0]),
                ("pB".to_owned(), [1, 0, 1, 0, 0]),
                ("pA".to_owned(), [0, 1, 0, 1, 1]),
            ]
        );
        assert_eq!(page[0].push, b.push_by_seq(c).await.unwrap().unwrap());
        assert_eq!(b.push_page(None, 0).await.unwrap(), page, "0: the default");
        let first = b.push_page(None, 1).await.unwrap();
        assert_eq!(first, page[..1]);
        assert_eq!(b.push_page(Some(c), 1).await.unwrap(), page[1..2]);
        assert_eq!(b.push_page(Some(bb), 10).await.unwrap(), page[2..]);
        assert!(b.push_page(Some(a), 10).await.unwrap().is_empty());
    }

    pub async fn push_counts_follow_acceptance_and_delivery(store: &Store) {
        let b = store.backend();
        let h = T / 3_600;
        let one = push(store, "p1", "users:3", T, &["o_1", "o_2", "o_3"]).await;
        b.topic_create("t", true, "", T).await.unwrap();
        b.topic_join("t", "o_4", T).await.unwrap();
        b.topic_join("t", "o_5", T).await.unwrap();
        let listed = strings(&["o_4", "o_6"]);
        let stored = b
            .push_insert_group(&[GroupedPush {
                push: new_push("p2", "topic:t", T + 3_600, &listed),
                topic: Some("t"),
                key: None,
            }])
            .await
            .unwrap();
        let two = stored[0].expect("stored").seq;
        assert_eq!(
            counts_of(store, 0, "push").await,
            [
                count(h, "push", "accepted", 3),
                count(h + 1, "push", "accepted", 3)
            ],
            "each recipient once, at the hour the push was accepted"
        );

        assert_eq!(claim(store, "w", T_MS, T_MS + 30_000, 10).await.len(), 6);
        let settled = [
            outcome(one, "o_1", sent(701)),
            outcome(one, "o_2", sent(702)),
            outcome(one, "o_3", failed("43004 require subscribe")),
            outcome(two, "o_4", retry(T_MS + 60_000, "-1 busy")),
            outcome(two, "o_5", Attempt::Released),
            outcome(two, "o_6", sent(706)),
        ];
        settle(store, "w", &settled, T + 7_200).await;
        // Settled again (a worker whose lease ran out): nothing is being sent any more.
        settle(store, "w", &settled, T + 7_200).await;
        assert_eq!(
            counts_of(store, h + 2, "push").await,
            [
                count(h + 2, "push", "failed", 1),
                count(h + 2, "push", "sent", 3)
            ]
        );

        assert_eq!(
            b.push_finished(701, true, "success", T + 10_800)
                .await
                .unwrap(),
            1
        );
        assert_eq!(
            b.push_finished(702, false, "failed:user block", T + 10_800)
                .await
                .unwrap(),
            1
        );
        // The same event again, and one that changes its mind: settled again, not counted.
        assert_eq!(
            b.push_finished(701, true, "success", T + 10_801)
                .await
                .unwrap(),
            1
        );
        assert_eq!(
            b.push_finished(702, true, "success", T + 10_802)
                .await
                .unwrap(),
            1
        );
        assert_eq!(
            b.push_finished(9_999, true, "success", T + 10_802)
                .await
                .unwrap(),
            0
        );
        assert_eq!(recipient(store, one, "o_2").await.state, "delivered");
        assert_eq!(
            counts_of(store, h + 3, "push").await,
            [
                count(h + 3, "push", "delivered", 1),
                count(h + 3, "push", "failed", 1)
            ]
        );
    }

    pub async fn prune_removes_counts_before_their_cutoff(store: &Store) {
        let b = store.backend();
        let old = T - 500 * 86_400;
        b.write_batch(&[
            Deferred::Log(log_row(old, "o_a", "text", None, "answered", Some("r:1"))),
            Deferred::Log(log_row(T, "o_a", "text", None, "answered", None)),
        ])
        .await
        .unwrap();
        let pruned = b
            .prune(i64::MIN, i64::MIN, T - 400 * 86_400, T)
            .await
            .unwrap();
        assert_eq!(pruned.counts, 3, "the old hour's outcome, type and rule");
        assert_eq!(pruned.log, 0);
        assert_eq!(
            b.log_counts(0).await.unwrap(),
            [
                count(T / 3_600, "outcome", "answered", 1),
                count(T / 3_600, "type", "text", 1)
            ]
        );
    }

    pub async fn store_prune_keeps_counts_longer_than_the_log(store: &Store) {
        let now = unix_now();
        let day = 86_400;
        let at = |days: i64| log_row(now - days * day, "o_a", "text", None, "answered", None);
        store
            .backend()
            .write_batch(&[
                Deferred::Log(at(600)),
                Deferred::Log(at(450)),
                Deferred::Log(at(10)),
            ])
            .await
            .unwrap();
        let hours = |counts: Vec<CountRow>| {
            counts
                .into_iter()
                .filter(|c| c.dim == "type")
                .map(|c| c.hour)
                .collect::<Vec<_>>()
        };
        let hour = |days: i64| (now - days * day).div_euclid(3_600);
        // A log kept 500 days: its counts too.
        let pruned = store.prune(500).await.unwrap();
        assert_eq!((pruned.log, pruned.counts), (1, 2));
        assert_eq!(
            hours(store.backend().log_counts(0).await.unwrap()),
            [hour(450), hour(10)]
        );
        // A log kept a week: counts 400 days.
        let pruned = store.prune(7).await.unwrap();
        assert_eq!((pruned.log, pruned.counts), (2, 2));
        assert_eq!(
            hours(store.backend().log_counts(0).await.unwrap()),
            [hour(10)]
        );
        assert_eq!(
            store.prune(0).await.unwrap().counts,
            0,
            "0 keeps them forever"
        );
    }
}

/// Checks that do not depend on a backend being available.
#[tokio::test]
async fn unsupported_urls_are_refused() {
    for url in ["mysql://x", "redis://localhost/db", "", "sqlite"] {
        match Store::open(url).await {
            Err(StoreError::UnsupportedUrl(u)) => assert_eq!(u, url),
            other => panic!("{url:?}: expected UnsupportedUrl, got {other:?}"),
        }
    }
    let message = Store::open("mysql://x").await.unwrap_err().to_string();
    assert!(message.contains("mysql://x"), "{message}");
    assert!(message.contains("sqlite://"), "{message}");
}

/// The Backend trait cannot read a block's reason; SQLite's table shows re-blocking updates
/// it in place.
#[tokio::test]
async fn sqlite_reblock_updates_the_reason() {
    use sqlx::sqlite::SqlitePoolOptions;

    let (_dir, url) = fresh_sqlite().await;
    let store = Store::open(&url).await.unwrap();
    let b = store.backend();
    b.block_user("o_x", "first", 100).await.unwrap();
    b.block_user("o_x", "second", 200).await.unwrap();

    let pool = SqlitePoolOptions::new()
        .max_connections(1)
        .connect(&url)
        .await
        .unwrap();
    let rows: Vec<(String, String, i64)> =
        sqlx::query_as("SELECT openid, reason, created_at FROM blocked_users")
            .fetch_all(&pool)
            .await
            .unwrap();
    assert_eq!(
        rows,
        [("o_x".to_string(), "second".to_string(), 100)],
        "one row, the new reason, the first block's time"
    );
}

/// Two processes starting together on a new database file (the SQLite backend says several
/// processes on one host can share it) must both come up.
#[tokio::test(flavor = "multi_thread")]
async fn sqlite_concurrent_first_opens_all_succeed() {
    for round in 0..10 {
        let (_dir, url) = fresh_sqlite().await;
        let opens: Vec<_> = (0..4)
            .map(|_| {
                let url = url.clone();
                tokio::spawn(async move { Store::open(&url).await.map(drop) })
            })
            .collect();
        for open in opens {
            if let Err(e) = open.await.unwrap() {
                panic!("round {round}: {e}");
            }
        }
    }
}

/// The SQLite file is set up as documented: WAL, and the migrations recorded once each.
#[tokio::test]
async fn sqlite_file_is_wal_with_each_migration_once() {
    use sqlx::sqlite::SqlitePoolOptions;

    let (_dir, url) = fresh_sqlite().await;
    drop(Store::open(&url).await.unwrap());
    drop(Store::open(&url).await.unwrap());
    let pool = SqlitePoolOptions::new()
        .max_connections(1)
        .connect(&url)
        .await
        .unwrap();
    let mode: String = sqlx::query_scalar("PRAGMA journal_mode")
        .fetch_one(&pool)
        .await
        .unwrap();
    assert_eq!(mode, "wal");
    let versions: Vec<i64> =
        sqlx::query_scalar("SELECT version FROM _sqlx_migrations ORDER BY version")
            .fetch_all(&pool)
            .await
            .unwrap();
    // Every numbered file under src/store/migrations, once.
    let mut files: Vec<i64> = std::fs::read_dir(
        std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("src/store/migrations"),
    )
    .unwrap()
    .filter_map(|e| {
        e.ok()?
            .file_name()
            .to_str()?
            .split('_')
            .next()?
            .parse()
            .ok()
    })
    .collect();
    files.sort();
    assert_eq!(versions, files);
}

/// A dedup record in a state this version does not know (a newer process's) is left out of
/// the changes, not an error that would hide the others.
#[tokio::test]
async fn sqlite_dedup_records_in_an_unknown_state_are_left_out() {
    use sqlx::sqlite::SqlitePoolOptions;

    let (_dir, url) = fresh_sqlite().await;
    let store = Store::open(&url).await.unwrap();
    let pool = SqlitePoolOptions::new()
        .max_connections(1)
        .connect(&url)
        .await
        .unwrap();
    sqlx::query(
        "INSERT INTO dedup (key, owner, state, reply, reply_time, updated_at) VALUES \
         ('known', 'p', 'answered', '{\"type\":\"success\"}', 99, 100), \
         ('future', 'p', 'frozen', NULL, NULL, 100)",
    )
    .execute(&pool)
    .await
    .unwrap();
    let changes = store.backend().dedup_changes(0, "me").await.unwrap();
    assert_eq!(
        changes,
        [DedupRecord {
            key: "known".into(),
            owner: "p".into(),
            state: DedupState::Answered,
            reply: Some("{\"type\":\"success\"}".into()),
            reply_time: Some(99),
            updated_at: 100,
        }]
    );
}

/// The batch writer on its own, over a backend that records each batch (and can fail or
/// stall on demand): batching, ordering, retry and the full-queue policy.
mod writer {
    use std::sync::Arc;
    use std::sync::Mutex;
    use std::sync::atomic::{AtomicUsize, Ordering};

    use async_trait::async_trait;
    use huixin::store::admin::{AdminSession, AdminStore};
    use huixin::store::apps::{
        AppChanges, AppRow, AppStore, AttemptRow, BindCode, BindingRow, DeliveryFilter,
        DeliveryOutcome, DeliveryRow, NewApp, NewBinding, NewDelivery,
    };
    use huixin::store::console::{
        ConsoleStore, CountRow, FollowerFilter, LogFilter, LogRow, PushSummary,
    };
    use huixin::store::push::{
        Claimed, KeyRow, NewPush, Outcome, PushRow, PushStore, RecipientRow, Topic,
    };
    use huixin::store::writer::{BATCH_MAX, QUEUE_MAX, Writer};
    use huixin::store::{
        Backend, DedupRecord, Deferred, Follower, LogEntry, NewToken, Pruned, ReplayRecord,
        SessionChange, StoreError, TokenRow, Unhealthy,
    };
    use tokio::sync::RwLock;

    #[derive(Default)]
    struct Recording {
        batches: Mutex<Vec<Vec<Deferred>>>,
        calls: AtomicUsize,
        /// write_batch calls still to fail.
        fail: AtomicUsize,
        /// write_batch waits while the test holds this for writing.
        gate: RwLock<()>,
    }

    impl Recording {
        fn written(&self) -> Vec<Deferred> {
            self.batches.lock().unwrap().concat()
        }
    }

    #[async_trait]
    impl PushStore for Recording {
        async fn topic_create(
            &self,
            _: &str,
            _: bool,
            _: &str,
            _: i64,
        ) -> Result<bool, StoreError> {
            unreachable!()
        }
        async fn topic_delete(&self, _: &str) -> Result<bool, StoreError> {
            unreachable!()
        }
        async fn topic(&self, _: &str) -> Result<Option<Topic>, StoreError> {
            unreachable!()
        }
        async fn topics(&self) -> Result<Vec<Topic>, StoreError> {
            unreachable!()
        }
        async fn topic_join(&self, _: &str, _: &str, _: i64) -> Result<bool, StoreError> {
            unreachable!()
        }
        async fn topic_leave(&self, _: &str, _: &str) -> Result<bool, StoreError> {
            unreachable!()
        }
        async fn topics_of(&self, _: &str) -> Result<Vec<String>, StoreError> {
            unreachable!()
        }
        async fn topic_members(&self, _: &str) -> Result<Vec<String>, StoreError> {
            unreachable!()
        }
        async fn key_insert(&self, _: &KeyRow) -> Result<(), StoreError> {
            unreachable!()
        }
        async fn key_by_hash(&self, _: &str) -> Result<Option<KeyRow>, StoreError> {
            unreachable!()
        }
        async fn key_for(&self, _: &str, _: &str) -> Result<Option<KeyRow>, StoreError> {
            unreachable!()
        }
        async fn keys(&self) -> Result<Vec<KeyRow>, StoreError> {
            unreachable!()
        }
        async fn key_revoke(&self, _: &str, _: i64) -> Result<u64, StoreError> {
            unreachable!()
        }
        async fn key_revoke_hash(&self, _: &str, _: i64) -> Result<u64, StoreError> {
            unreachable!()
        }
        async fn push_insert(&self, _: &NewPush<'_>) -> Result<i64, StoreError> {
            unreachable!()
        }
        async fn push_by_id(&self, _: &str) -> Result<Option<PushRow>, StoreError> {
            unreachable!()
        }
        async fn push_by_seq(&self, _: i64) -> Result<Option<PushRow>, StoreError> {
            unreachable!()
        }
        async fn push_recipients(&self, _: i64) -> Result<Vec<RecipientRow>, StoreError> {
            unreachable!()
        }
        async fn push_history(
            &self,
            _: Option<&str>,
            _: i64,
            _: i64,
            _: u32,
        ) -> Result<Vec<PushRow>, StoreError> {
            unreachable!()
        }
        async fn push_claim(
            &self,
            _: &str,
            _: i64,
            _: i64,
            _: u32,
        ) -> Result<Vec<Claimed>, StoreError> {
            unreachable!()
        }
        async fn push_settle(&self, _: &str, _: &[Outcome], _: i64) -> Result<(), StoreError> {
            unreachable!()
        }
        async fn push_finished(&self, _: i64, _: bool, _: &str, _: i64) -> Result<u64, StoreError> {
            unreachable!()
        }
        async fn push_queue_depth(&self) -> Result<u64, StoreError> {
            unreachable!()
        }
        async fn push_next_due(&self) -> Result<Option<i64>, StoreError> {
            unreachable!()
        }
        async fn push_retry_failed(&self, _: i64, _: i64, _: i64) -> Result<u64, StoreError> {
            unreachable!()
        }
        async fn push_delete(&self, _: i64) -> Result<bool, StoreError> {
            unreachable!()
        }
        async fn push_recipient_by_msgid(
            &self,
            _: i64,
        ) -> Result<Option<(i64, String)>, StoreError> {
            unreachable!()
        }
        async fn push_purge(&self, _: i64) -> Result<u64, StoreError> {
            unreachable!()
        }
    }

    #[async_trait]
    impl AppStore for Recording {
        async fn app_insert(&self, _: &NewApp<'_>) -> Result<i64, StoreError> {
            unreachable!()
        }
        async fn app(&self, _: i64) -> Result<Option<AppRow>, StoreError> {
            unreachable!()
        }
        async fn app_by_name(&self, _: &str) -> Result<Option<AppRow>, StoreError> {
            unreachable!()
        }
        async fn apps(&self) -> Result<Vec<AppRow>, StoreError> {
            unreachable!()
        }
        async fn app_update(&self, _: i64, _: &AppChanges) -> Result<bool, StoreError> {
            unreachable!()
        }
        async fn app_revoke(&self, _: i64, _: i64) -> Result<bool, StoreError> {
            unreachable!()
        }
        async fn bind_code_insert(&self, _: &BindCode) -> Result<(), StoreError> {
            unreachable!()
        }
        async fn bind_code(&self, _: &str) -> Result<Option<BindCode>, StoreError> {
            unreachable!()
        }
        async fn bind_code_set_ticket(&self, _: &str, _: &str, _: &str) -> Result<(), StoreError> {
            unreachable!()
        }
        async fn bind_code_use(
            &self,
            _: &str,
            _: &str,
            _: &str,
            _: i64,
        ) -> Result<bool, StoreError> {
            unreachable!()
        }
        async fn bind_codes_purge(&self, _: i64) -> Result<u64, StoreError> {
            unreachable!()
        }
        async fn binding_upsert(
            &self,
            _: &NewBinding<'_>,
        ) -> Result<(BindingRow, Option<String>), StoreError> {
            unreachable!()
        }
        async fn binding(&self, _: i64, _: &str) -> Result<Option<BindingRow>, StoreError> {
            unreachable!()
        }
        async fn binding_by_seq(&self, _: i64) -> Result<Option<BindingRow>, StoreError> {
            unreachable!()
        }
        async fn bindings_of_follower(
            &self,
            _: i64,
            _: &str,
        ) -> Result<Vec<BindingRow>, StoreError> {
            unreachable!()
        }
        async fn bindings_of_openid(&self, _: &str) -> Result<Vec<BindingRow>, StoreError> {
            unreachable!()
        }
        async fn bindings_of_uids(
            &self,
            _: i64,
            _: &[String],
        ) -> Result<Vec<BindingRow>, StoreError> {
            unreachable!()
        }
        async fn bindings_page(
            &self,
            _: i64,
            _: Option<&str>,
            _: Option<bool>,
            _: u32,
            _: u32,
        ) -> Result<Vec<BindingRow>, StoreError> {
            unreachable!()
        }
        async fn bindings_count(
            &self,
            _: i64,
            _: Option<&str>,
            _: Option<bool>,
        ) -> Result<u64, StoreError> {
            unreachable!()
        }
        async fn binding_delete(&self, _: i64, _: i64) -> Result<bool, StoreError> {
            unreachable!()
        }
        async fn binding_block(&self, _: i64, _: i64, _: bool, _: i64) -> Result<bool, StoreError> {
            unreachable!()
        }
        async fn bindings_mark(&self, _: &str, _: &str, _: i64) -> Result<u64, StoreError> {
            unreachable!()
        }
        async fn topic_set_app(&self, _: &str, _: Option<i64>) -> Result<bool, StoreError> {
            unreachable!()
        }
        async fn topic_by_num(&self, _: i64) -> Result<Option<String>, StoreError> {
            unreachable!()
        }
        async fn webhook_insert(&self, _: &[NewDelivery<'_>]) -> Result<Vec<i64>, StoreError> {
            unreachable!()
        }
        async fn webhook_insert_claimed(
            &self,
            _: &NewDelivery<'_>,
            _: &str,
            _: i64,
        ) -> Result<(i64, bool), StoreError> {
            unreachable!()
        }
        async fn webhook_claim(
            &self,
            _: &str,
            _: i64,
            _: i64,
            _: u32,
        ) -> Result<Vec<DeliveryRow>, StoreError> {
            unreachable!()
        }
        async fn webhook_settle(
            &self,
            _: &str,
            _: &[DeliveryOutcome],
            _: i64,
        ) -> Result<(), StoreError> {
            unreachable!()
        }
        async fn webhook_delivery(&self, _: &str) -> Result<Option<DeliveryRow>, StoreError> {
            unreachable!()
        }
        async fn webhook_deliveries(
            &self,
            _: &DeliveryFilter,
        ) -> Result<Vec<DeliveryRow>, StoreError> {
            unreachable!()
        }
        async fn webhook_attempts(&self, _: &[i64]) -> Result<Vec<AttemptRow>, StoreError> {
            unreachable!()
        }
        async fn webhook_next_due(&self) -> Result<Option<i64>, StoreError> {
            unreachable!()
        }
        async fn webhook_purge(&self, _: i64) -> Result<u64, StoreError> {
            unreachable!()
        }
    }

    #[async_trait]
    impl AdminStore for Recording {
        async fn admin_session_insert(&self, _: &AdminSession) -> Result<(), StoreError> {
            unreachable!()
        }
        async fn admin_session(&self, _: &str, _: i64) -> Result<Option<AdminSession>, StoreError> {
            unreachable!()
        }
        async fn admin_session_delete(&self, _: &str) -> Result<bool, StoreError> {
            unreachable!()
        }
        async fn admin_sessions_clear(&self) -> Result<u64, StoreError> {
            unreachable!()
        }
        async fn admin_link_insert(&self, _: &str, _: i64, _: i64) -> Result<(), StoreError> {
            unreachable!()
        }
        async fn admin_link_use(&self, _: &str, _: i64) -> Result<bool, StoreError> {
            unreachable!()
        }
        async fn admin_purge(&self, _: i64) -> Result<u64, StoreError> {
            unreachable!()
        }
    }

    #[async_trait]
    impl ConsoleStore for Recording {
        async fn log_page(&self, _: &LogFilter) -> Result<Vec<LogRow>, StoreError> {
            unreachable!()
        }
        async fn log_counts(&self, _: i64) -> Result<Vec<CountRow>, StoreError> {
            unreachable!()
        }
        async fn followers_page(&self, _: &FollowerFilter) -> Result<Vec<Follower>, StoreError> {
            unreachable!()
        }
        async fn push_page(&self, _: Option<i64>, _: u32) -> Result<Vec<PushSummary>, StoreError> {
            unreachable!()
        }
    }

    #[async_trait]
    impl Backend for Recording {
        async fn ping(&self) -> Result<(), StoreError> {
            Ok(())
        }
        async fn health(&self) -> Result<(), Unhealthy> {
            Ok(())
        }
        async fn meta_get(&self, _: &str) -> Result<Option<String>, StoreError> {
            unreachable!()
        }
        async fn meta_get_or_insert(&self, _: &str, _: &str) -> Result<String, StoreError> {
            unreachable!()
        }
        async fn follower_subscribed(
            &self,
            _: &str,
            _: i64,
            _: Option<&str>,
        ) -> Result<(), StoreError> {
            unreachable!()
        }
        async fn follower_unsubscribed(&self, _: &str, _: i64) -> Result<(), StoreError> {
            unreachable!()
        }
        async fn follower(&self, _: &str) -> Result<Option<Follower>, StoreError> {
            unreachable!()
        }
        async fn follower_count(&self) -> Result<u64, StoreError> {
            unreachable!()
        }
        async fn sessions_load(
            &self,
            _: &[String],
            _: i64,
        ) -> Result<Vec<huixin::store::SessionRow>, StoreError> {
            unreachable!()
        }
        async fn replay_get_many(
            &self,
            _: &[(String, String)],
            _: i64,
        ) -> Result<Vec<ReplayRecord>, StoreError> {
            unreachable!()
        }
        async fn peers_beat(
            &self,
            _: &str,
            _: i64,
            _: i64,
            _: i64,
        ) -> Result<Vec<(String, i64)>, StoreError> {
            unreachable!()
        }
        async fn session_holders(&self, _: usize) -> Result<Option<Vec<String>>, StoreError> {
            Ok(Some(Vec::new()))
        }
        async fn peers_leave(&self, _: &str) -> Result<(), StoreError> {
            unreachable!()
        }
        async fn replay_recent(&self, _: u32, _: i64) -> Result<Vec<ReplayRecord>, StoreError> {
            unreachable!()
        }
        async fn meta_set(&self, _: &str, _: &str) -> Result<(), StoreError> {
            unreachable!()
        }
        async fn rate_take(
            &self,
            _: &str,
            _: u32,
            _: i64,
        ) -> Result<Option<std::time::Duration>, StoreError> {
            unreachable!()
        }
        async fn session_apply(
            &self,
            _: &str,
            _: &[SessionChange],
            _: i64,
        ) -> Result<(), StoreError> {
            unreachable!()
        }
        async fn write_batch(&self, batch: &[Deferred]) -> Result<(), StoreError> {
            let _open = self.gate.read().await;
            self.calls.fetch_add(1, Ordering::SeqCst);
            let failing = self
                .fail
                .fetch_update(Ordering::SeqCst, Ordering::SeqCst, |n| n.checked_sub(1))
                .is_ok();
            if failing {
                return Err(StoreError::WriterGone);
            }
            self.batches.lock().unwrap().push(batch.to_vec());
            Ok(())
        }
        async fn dedup_changes(&self, _: i64, _: &str) -> Result<Vec<DedupRecord>, StoreError> {
            unreachable!()
        }
        async fn dedup_get_many(&self, _: &[String]) -> Result<Vec<DedupRecord>, StoreError> {
            unreachable!()
        }
        async fn recent_log(&self, _: u32) -> Result<Vec<LogEntry>, StoreError> {
            unreachable!()
        }
        async fn blocked_users(&self) -> Result<Vec<String>, StoreError> {
            unreachable!()
        }
        async fn block_user(&self, _: &str, _: &str, _: i64) -> Result<(), StoreError> {
            unreachable!()
        }
        async fn unblock_user(&self, _: &str) -> Result<(), StoreError> {
            unreachable!()
        }
        async fn prune(&self, _: i64, _: i64, _: i64, _: i64) -> Result<Pruned, StoreError> {
            unreachable!()
        }
        async fn token_load(&self, _: &str) -> Result<Option<TokenRow>, StoreError> {
            unreachable!()
        }
        async fn token_try_lease(
            &self,
            _: &str,
            _: &str,
            _: i64,
            _: i64,
            _: i64,
        ) -> Result<bool, StoreError> {
            unreachable!()
        }
        async fn token_store(
            &self,
            _: &str,
            _: &str,
            _: &NewToken<'_>,
        ) -> Result<bool, StoreError> {
            unreachable!()
        }
        async fn token_release(&self, _: &str, _: &str) -> Result<(), StoreError> {
            unreachable!()
        }
        async fn token_invalidate(&self, _: &str, _: &str) -> Result<bool, StoreError> {
            unreachable!()
        }
    }

    fn seen(n: usize) -> Deferred {
        Deferred::Seen {
            openid: "o".into(),
            at: n as i64,
        }
    }

    fn spawn() -> (Arc<Recording>, Writer) {
        let backend = Arc::new(Recording::default());
        let writer = Writer::spawn(Arc::clone(&backend) as Arc<dyn Backend>);
        (backend, writer)
    }

    #[tokio::test(flavor = "multi_thread")]
    async fn batches_keep_order_and_stay_under_the_maximum() {
        let (backend, writer) = spawn();
        const N: usize = 2_000;
        for n in 0..N {
            writer.defer(seen(n));
        }
        writer.flush().await.unwrap();
        assert_eq!(backend.written(), (0..N).map(seen).collect::<Vec<_>>());
        let sizes: Vec<usize> = backend
            .batches
            .lock()
            .unwrap()
            .iter()
            .map(Vec::len)
            .collect();
        assert!(sizes.iter().all(|&s| 0 < s && s <= BATCH_MAX), "{sizes:?}");
        assert!(sizes.len() >= N.div_ceil(BATCH_MAX), "{sizes:?}");
        assert_eq!(writer.dropped(), 0);

        // A flush with nothing queued writes nothing.
        let calls = backend.calls.load(Ordering::SeqCst);
        writer.flush().await.unwrap();
        assert_eq!(backend.calls.load(Ordering::SeqCst), calls);
    }

    #[tokio::test(flavor = "multi_thread")]
    async fn a_failed_batch_is_retried_once() {
        let (backend, writer) = spawn();
        backend.fail.store(1, Ordering::SeqCst);
        writer.defer(seen(1));
        writer.defer(seen(2));
        writer.flush().await.unwrap();
        assert_eq!(backend.written(), [seen(1), seen(2)]);
        assert_eq!(backend.calls.load(Ordering::SeqCst), 2);

        // Failing twice loses the batch, and the writer carries on.
        backend.fail.store(2, Ordering::SeqCst);
        writer.defer(seen(3));
        writer.flush().await.unwrap();
        writer.defer(seen(4));
        writer.flush().await.unwrap();
        assert_eq!(backend.written(), [seen(1), seen(2), seen(4)]);
        assert_eq!(backend.calls.load(Ordering::SeqCst), 5);
    }

    #[tokio::test(flavor = "multi_thread")]
    async fn a_full_queue_drops_and_counts() {
        let (backend, writer) = spawn();
        let stalled = backend.gate.write().await;
        let total = QUEUE_MAX + BATCH_MAX + 1_000;
        for n in 0..total {
            writer.defer(seen(n));
        }
        let dropped = writer.dropped() as usize;
        // The queue holds QUEUE_MAX; the stalled writer holds at most one batch.
        assert!(
            dropped >= total - QUEUE_MAX - BATCH_MAX,
            "dropped {dropped} of {total}"
        );
        drop(stalled);
        writer.flush().await.unwrap();
        let written = backend.written();
        assert_eq!(
            written.len() + dropped,
            total,
            "each write landed or was counted"
        );
        // What landed is in order: the oldest writes, the newest dropped.
        assert_eq!(written, (0..written.len()).map(seen).collect::<Vec<_>>());
    }
}

// ----- the SQLite file itself -----

#[cfg(unix)]
fn mode(path: &std::path::Path) -> u32 {
    use std::os::unix::fs::PermissionsExt;
    std::fs::metadata(path)
        .expect("exists")
        .permissions()
        .mode()
        & 0o777
}

#[cfg(unix)]
#[tokio::test]
async fn the_database_and_its_wal_are_readable_by_their_owner_only() {
    let dir = tempfile::tempdir().expect("temp dir");
    let db = dir.path().join("huixin.db");
    let store = Store::open(&format!("sqlite://{}", db.display()))
        .await
        .expect("opens");
    store
        .backend()
        .meta_get_or_insert("k", "v")
        .await
        .expect("a write, so the WAL exists");
    for file in ["huixin.db", "huixin.db-wal", "huixin.db-shm"] {
        assert_eq!(mode(&dir.path().join(file)), 0o600, "{file}");
    }
    drop(store);

    // A file made before (or by another tool) that others can read is restricted.
    let old = dir.path().join("old.db");
    std::fs::write(&old, b"").expect("an empty file");
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(&old, std::fs::Permissions::from_mode(0o644)).expect("chmod");
    Store::open(&format!("sqlite://{}", old.display()))
        .await
        .expect("opens");
    assert_eq!(mode(&old), 0o600);
}

#[tokio::test]
async fn upgrading_drops_clear_push_keys_and_keeps_them_working() {
    let dir = tempfile::tempdir().expect("temp dir");
    let db = dir.path().join("huixin.db");
    let url = format!("sqlite://{}", db.display());
    // The schema as it was, with a key stored in clear.
    let old = dir.path().join("migrations");
    std::fs::create_dir(&old).expect("folder");
    for name in [
        "0001_meta.sql",
        "0002_bot.sql",
        "0003_access_tokens.sql",
        "0004_push.sql",
    ] {
        std::fs::copy(
            std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
                .join("src/store/migrations")
                .join(name),
            old.join(name),
        )
        .expect("copied");
    }
    let key = "Abc123xyzXYZ789defDEF456ghiGHI00";
    {
        use sqlx::sqlite::SqliteConnectOptions;
        let options = SqliteConnectOptions::new()
            .filename(&db)
            .create_if_missing(true);
        let pool = sqlx::SqlitePool::connect_with(options).await.expect("pool");
        sqlx::migrate::Migrator::new(old.as_path())
            .await
            .expect("migrator")
            .run(&pool)
            .await
            .expect("old schema");
        sqlx::query(
            "INSERT INTO push_keys (key_hash, key, kind, target, created_at) \
             VALUES (?1, ?2, 'user', 'o_old', 1)",
        )
        .bind(huixin::push::keys::key_hash(key))
        .bind(key)
        .execute(&pool)
        .await
        .expect("a clear key");
        pool.close().await;
    }
    let store = Store::open(&url).await.expect("upgrades");
    let row = store
        .backend()
        .key_by_hash(&huixin::push::keys::key_hash(key))
        .await
        .expect("read")
        .expect("the key still works");
    assert_eq!(row.key_prefix, "Abc123");
    drop(store);
    let columns: Vec<String> = {
        let pool = sqlx::SqlitePool::connect(&url).await.expect("pool");
        sqlx::query_scalar("SELECT name FROM pragma_table_info('push_keys')")
            .fetch_all(&pool)
            .await
            .expect("columns")
    };
    assert!(!columns.iter().any(|c| c == "key"), "{columns:?}");
}

/// A database made before topics had numbers: the migrations up to `before` from `folder`
/// (under src/store), run by sqlx itself on `pool`, then three topics made in two seconds.
async fn topics_before_numbers<DB: sqlx::Database>(
    folder: &str,
    before: &str,
    pool: &sqlx::Pool<DB>,
) where
    <DB as sqlx::Database>::Connection: sqlx::migrate::Migrate,
    for<'c> &'c mut <DB as sqlx::Database>::Connection: sqlx::Executor<'c, Database = DB>,
{
    let dir = tempfile::tempdir().expect("temp dir");
    let source = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("src/store")
        .join(folder);
    for entry in std::fs::read_dir(&source).expect("migrations") {
        let name = entry.expect("entry").file_name();
        if name.to_string_lossy().as_ref() < before {
            std::fs::copy(source.join(&name), dir.path().join(&name)).expect("copied");
        }
    }
    sqlx::migrate::Migrator::new(dir.path())
        .await
        .expect("migrator")
        .run(pool)
        .await
        .expect("the schema as it was");
    sqlx::raw_sql(
        "INSERT INTO topics (name, description, created_at) \
         VALUES ('zeta', '', 5), ('alpha', '', 9), ('beta', '', 5)",
    )
    .execute(pool)
    .await
    .expect("topics");
}

/// Upgrading numbers the topics there are in the order they were made (by name within a
/// second); topics made later follow.
async fn check_upgraded_topic_numbers(url: &str) {
    let store = Store::open(url).await.expect("upgrades");
    let b = store.backend();
    assert!(b.topic_create("gamma", true, "", 10).await.unwrap());
    let numbers: Vec<(String, i64, Option<i64>)> = b
        .topics()
        .await
        .unwrap()
        .into_iter()
        .map(|t| (t.name, t.num, t.app_id))
        .collect();
    assert_eq!(
        numbers,
        [
            ("alpha".to_owned(), 3, None),
            ("beta".to_owned(), 1, None),
            ("gamma".to_owned(), 4, None),
            ("zeta".to_owned(), 2, None),
        ]
    );
    assert_eq!(b.topic_by_num(1).await.unwrap().as_deref(), Some("beta"));
}

#[tokio::test]
async fn sqlite_upgrading_numbers_the_topics_there_are() {
    let (_dir, url) = fresh_sqlite().await;
    {
        use sqlx::sqlite::SqliteConnectOptions;
        let options = url
            .parse::<SqliteConnectOptions>()
            .expect("url")
            .create_if_missing(true);
        let pool = sqlx::SqlitePool::connect_with(options).await.expect("pool");
        topics_before_numbers("migrations", "0011", &pool).await;
        pool.close().await;
    }
    check_upgraded_topic_numbers(&url).await;
}

#[tokio::test(flavor = "multi_thread")]
async fn postgres_upgrading_numbers_the_topics_there_are() {
    let Some(db) = pg::database("postgres_upgrading_numbers_the_topics_there_are").await else {
        return;
    };
    {
        let pool = sqlx::PgPool::connect(db.url()).await.expect("pool");
        topics_before_numbers("postgres/migrations", "0003", &pool).await;
        pool.close().await;
    }
    check_upgraded_topic_numbers(db.url()).await;
}

/// PostgreSQL's connection settings reach the connections: the statement timeout (from the
/// URL, over the key) cancels a statement that runs too long, the pool has the size asked.
#[tokio::test(flavor = "multi_thread")]
async fn postgres_settings_reach_the_connections() {
    use huixin::store::postgres::{PostgresBackend, Settings};
    let Some(db) = pg::database("postgres_settings_reach_the_connections").await else {
        return;
    };
    let keys = Settings {
        pool_size: Some(2),
        statement_timeout_ms: Some(60_000),
        sslmode: Some("disable".into()),
    };
    let url = format!("{}?statement_timeout_ms=300&pool_size=3", db.url());
    let backend = PostgresBackend::open(&url, &keys).await.expect("opens");
    assert_eq!(backend.pool().options().get_max_connections(), 3);
    let shown: String = sqlx::query_scalar("SHOW statement_timeout")
        .fetch_one(backend.pool())
        .await
        .unwrap();
    assert_eq!(shown, "300ms");
    let slow = sqlx::query("SELECT pg_sleep(2)")
        .execute(backend.pool())
        .await
        .expect_err("cancelled by the statement timeout");
    assert_eq!(
        slow.as_database_error().and_then(|e| e.code()).as_deref(),
        Some("57014"),
        "{slow}"
    );
    // A bad setting is named.
    for bad in ["?pool_size=0", "?statement_timeout_ms=soon"] {
        let e = PostgresBackend::open(&format!("{}{bad}", db.url()), &Settings::default())
            .await
            .expect_err(bad)
            .to_string();
        assert!(e.contains("[storage]"), "{e}");
    }
    let e = PostgresBackend::open(
        db.url(),
        &Settings {
            sslmode: Some("sometimes".into()),
            ..Settings::default()
        },
    )
    .await
    .expect_err("a bad sslmode")
    .to_string();
    assert!(e.contains("sslmode"), "{e}");
}
