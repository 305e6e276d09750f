//! The store test suite: one set of checks, written against [`Store`] and its [`Backend`]
//! only, run against every backend. Each backend gets one `store_suite!` line naming how to
//! make a fresh, empty database; SQLite (a file in a temp dir) is the only one today.
//!
//! Times are explicit Unix seconds throughout (expiry in the past or the future), so nothing
//! sleeps.

use std::collections::BTreeSet;

use huixin::store::{
    DedupRecord, Deferred, Follower, LogEntry, Pruned, SessionChange, Store, StoreError,
};
use huixin::wechat::signature::unix_now;

/// A fresh SQLite database: the temp dir that holds it (keep it alive) and its URL.
async fn fresh_sqlite() -> (tempfile::TempDir, String) {
    let dir = tempfile::tempdir().expect("temp dir");
    let url = format!("sqlite://{}", dir.path().join("t.db").display());
    (dir, url)
}

/// Runs every function of [`suite`] as its own test, each on a fresh database made by
/// `$fresh` (an async fn returning `(guard, url)`; the guard keeps the database alive).
macro_rules! store_suite {
    ($backend:ident, $fresh:path) => {
        mod $backend {
            use super::*;

            async fn open() -> (impl Sized, String, Store) {
                let (guard, url) = $fresh().await;
                let store = Store::open(&url).await.expect("a fresh store opens");
                (guard, url, store)
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
            );
            store_suite!(@url open;
                generated_token_survives_reopen,
                generated_token_agrees_across_handles,
                migrations_are_idempotent,
            );
        }
    };
    (@store $open:ident; $($test:ident),+ $(,)?) => {
        $(
            #[tokio::test(flavor = "multi_thread")]
            async fn $test() {
                let (_guard, _url, store) = $open().await;
                suite::$test(&store).await;
            }
        )+
    };
    (@url $open:ident; $($test:ident),+ $(,)?) => {
        $(
            #[tokio::test(flavor = "multi_thread")]
            async fn $test() {
                let (_guard, url, store) = $open().await;
                suite::$test(store, &url).await;
            }
        )+
    };
}

store_suite!(sqlite, fresh_sqlite);

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
        }
    }

    fn dedup(key: &str, owner: &str, state: &str, reply: Option<&str>, at: i64) -> DedupRecord {
        DedupRecord {
            key: key.into(),
            owner: owner.into(),
            state: state.into(),
            reply: reply.map(Into::into),
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

        let pruned = b.prune(200, 60, now).await.unwrap();
        assert_eq!(
            pruned,
            Pruned {
                log: 2,
                dedup: 1,
                sessions: 3,
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
            b.prune(200, 60, now).await.unwrap(),
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
}

/// Checks that do not depend on a backend being available.
#[tokio::test]
async fn unsupported_urls_are_refused() {
    for url in ["mysql://x", "postgres://localhost/db", "", "sqlite"] {
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
    assert_eq!(versions, [1, 2, 3, 4]);
}

/// The batch writer on its own, over a backend that records each batch (and can fail or
/// stall on demand): batching, ordering, retry and the full-queue policy.
mod writer {
    use std::sync::Arc;
    use std::sync::Mutex;
    use std::sync::atomic::{AtomicUsize, Ordering};

    use async_trait::async_trait;
    use huixin::store::push::{
        Claimed, KeyRow, NewPush, Outcome, PushRow, PushStore, RecipientRow, Topic,
    };
    use huixin::store::writer::{BATCH_MAX, QUEUE_MAX, Writer};
    use huixin::store::{
        Backend, DedupRecord, Deferred, Follower, LogEntry, NewToken, Pruned, SessionChange,
        StoreError, TokenRow,
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
        async fn push_settle(&self, _: &[Outcome], _: i64) -> Result<(), StoreError> {
            unreachable!()
        }
        async fn push_finished(&self, _: i64, _: bool, _: &str, _: i64) -> Result<u64, StoreError> {
            unreachable!()
        }
        async fn push_next_due(&self) -> Result<Option<i64>, StoreError> {
            unreachable!()
        }
        async fn push_purge(&self, _: i64) -> Result<u64, StoreError> {
            unreachable!()
        }
    }

    #[async_trait]
    impl Backend for Recording {
        async fn ping(&self) -> Result<(), StoreError> {
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
        async fn session_load(&self, _: &str, _: i64) -> Result<Vec<(String, String)>, StoreError> {
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
        async fn prune(&self, _: i64, _: i64, _: i64) -> Result<Pruned, StoreError> {
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
        let total = QUEUE_MAX + 1_000;
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
