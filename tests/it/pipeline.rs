//! The pipeline `huixin serve` runs, end to end through the real server: the shipped rules,
//! retry dedup (after, during and past the deadline, across processes), the deadline
//! watchdog, follower bookkeeping, the inbound log, the blocklist, the rate limit, hot reload
//! and the fallback. Sleeps below only stage the order of events; assertions are on behaviour.

use crate::common;

use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use common::{MODES, Pipeline, start_pipeline, start_rules};
use huixin::bot::{Context, Flow, Router, filter};
use huixin::simulator::{Exchange, Header, MessageSpec, Prepared};
use huixin::wechat::{Mode, Reply};

fn xml(spec: &MessageSpec, from: &str) -> String {
    spec.to_xml(&Header::new("gh_test", from)).unwrap()
}

fn text(content: &str) -> MessageSpec {
    MessageSpec::Text {
        content: content.into(),
    }
}

async fn say(p: &Pipeline, content: &str, from: &str) -> Reply {
    reply(
        &p.server
            .sim
            .send(xml(&text(content), from), from)
            .await
            .unwrap(),
    )
}

fn reply(e: &Exchange) -> Reply {
    assert_eq!(e.status, 200, "{}", e.body);
    e.reply.as_ref().unwrap().reply.clone()
}

/// The late replies recorded, once there is one (or after five seconds).
async fn late_replies(p: &Pipeline) -> Vec<(String, Reply)> {
    for _ in 0..100 {
        let delivered = p.late.replies.lock().unwrap().clone();
        if !delivered.is_empty() {
            return delivered;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    Vec::new()
}

fn write_rules(dir: &Path, files: &[(&str, &str)]) {
    std::fs::create_dir_all(dir).unwrap();
    for (name, text) in files {
        std::fs::write(dir.join(name), text).unwrap();
    }
}

/// A pipeline whose only route sleeps `delay` then answers `answer`, counting runs.
async fn slow(
    sections: &str,
    delay: Duration,
    answer: &'static str,
) -> (Pipeline, Arc<AtomicUsize>) {
    slow_in(Mode::Plain, sections, delay, answer).await
}

/// As [`slow`], in `mode`.
async fn slow_in(
    mode: Mode,
    sections: &str,
    delay: Duration,
    answer: &'static str,
) -> (Pipeline, Arc<AtomicUsize>) {
    let runs = Arc::new(AtomicUsize::new(0));
    let r = runs.clone();
    let p = start_pipeline(mode, sections, None, move |layers: Router| {
        layers.route(filter::any(), move |_ctx: Context| {
            let r = r.clone();
            async move {
                r.fetch_add(1, Ordering::SeqCst);
                tokio::time::sleep(delay).await;
                Flow::Reply(Reply::text(answer))
            }
        })
    })
    .await;
    (p, runs)
}

#[tokio::test(flavor = "multi_thread")]
async fn the_shipped_rules_answer_end_to_end_in_every_mode() {
    for mode in MODES {
        // A folder that does not exist: the rules built into the binary run.
        let missing = tempfile::tempdir().unwrap().path().join("no-rules-here");
        let p = start_rules(mode, "", &missing).await;
        let sim = &p.server.sim;
        let to = |spec: MessageSpec| {
            let x = xml(&spec, "o_user");
            async move { reply(&sim.send(x, "o_user").await.unwrap()) }
        };
        let Reply::Text { content } = to(text("help")).await else {
            panic!()
        };
        assert!(content.contains("feedback"), "{content}");
        let Reply::Text { content } = to(MessageSpec::Subscribe {
            scene: Some("poster".into()),
        })
        .await
        else {
            panic!()
        };
        assert!(
            content.starts_with("Welcome! Thanks for scanning our poster."),
            "{content}"
        );
        let Reply::Text { content } = to(text("营业时间")).await else {
            panic!()
        };
        assert!(content.contains("9:00-18:00"));
        let Reply::News(articles) = to(MessageSpec::Click {
            key: "menu_about".into(),
        })
        .await
        else {
            panic!()
        };
        assert_eq!(articles[0].title, "About us");
        assert_eq!(
            to(MessageSpec::Image {
                media_id: "IMG".into(),
                pic_url: String::new()
            })
            .await,
            Reply::image("IMG")
        );
        // The two-step conversation keeps its state in the session, across requests.
        let Reply::Text { content } = to(text("feedback")).await else {
            panic!()
        };
        assert!(content.contains("next message"));
        let Reply::Text { content } = to(text("More dark mode please")).await else {
            panic!()
        };
        assert!(content.starts_with("Thank you"), "{content}");
        assert_eq!(to(text("echo again")).await, Reply::text("echo again"));
        let stored = p
            .store
            .backend()
            .session_load("o_user", huixin::support::clock::unix_now())
            .await
            .unwrap();
        let notes = stored
            .iter()
            .find(|(k, _)| k == "feedback")
            .expect("feedback stored");
        assert!(notes.1.contains("More dark mode please"), "{mode:?}");
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn a_retry_gets_the_first_reply_and_never_runs_the_rules_again() {
    let dir = tempfile::tempdir().unwrap();
    write_rules(
        dir.path(),
        &[(
            "10-count.rhai",
            r#"rule(#{ type: "text" }, |msg| {
                let n = session_get("runs", 0) + 1;
                session_set("runs", n);
                text(`run ${n}: ${msg.content}`)
            });"#,
        )],
    );
    for mode in MODES {
        let p = start_rules(mode, "", dir.path()).await;
        let prepared = p.server.sim.prepare(xml(&text("x"), "o_count"), "o_count");
        for _ in 0..3 {
            let exchange = p.server.sim.send_prepared(&prepared).await.unwrap();
            assert_eq!(reply(&exchange), Reply::text("run 1: x"), "{mode:?}");
        }
        // A new message runs the rules again.
        assert_eq!(say(&p, "y", "o_count").await, Reply::text("run 2: y"));
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn a_retry_during_the_first_attempt_waits_for_its_reply() {
    let (p, runs) = slow("", Duration::from_millis(800), "slow reply").await;
    let prepared = p.server.sim.prepare(xml(&text("hi"), "o_wait"), "o_wait");
    let sim = p.server.sim.clone();
    let first = {
        let prepared = prepared.clone();
        tokio::spawn(async move { sim.send_prepared(&prepared).await.unwrap() })
    };
    tokio::time::sleep(Duration::from_millis(200)).await;
    let second = p.server.sim.send_prepared(&prepared).await.unwrap();
    let first = first.await.unwrap();
    assert_eq!(reply(&first), Reply::text("slow reply"));
    assert_eq!(reply(&second), Reply::text("slow reply"));
    assert_eq!(runs.load(Ordering::SeqCst), 1);
}

#[tokio::test(flavor = "multi_thread")]
async fn every_try_waiting_at_once_gets_the_reply() {
    // WeChat can have several tries of one message open at once; each one that waits for the
    // first attempt gets its reply, and the rules run once. Several rounds: the tries race.
    for mode in MODES {
        let (p, runs) = slow_in(mode, "", Duration::from_millis(400), "one for all").await;
        for round in 0..4 {
            let from = format!("o_many_{round}");
            let prepared = p.server.sim.prepare(xml(&text("hi"), &from), &from);
            let tries: Vec<_> = (0..3)
                .map(|_| {
                    let sim = p.server.sim.clone();
                    let prepared = prepared.clone();
                    tokio::spawn(async move { sim.send_prepared(&prepared).await.unwrap() })
                })
                .collect();
            for (i, attempt) in tries.into_iter().enumerate() {
                let exchange = attempt.await.unwrap();
                assert_eq!(
                    reply(&exchange),
                    Reply::text("one for all"),
                    "{mode:?}, round {round}, try {i}"
                );
            }
        }
        assert_eq!(runs.load(Ordering::SeqCst), 4, "{mode:?}");
    }
}

/// `prepared`, sent to the callback of `to` instead (the same signed request).
fn aimed_at(prepared: &Prepared, from: &Pipeline, to: &Pipeline) -> Prepared {
    let query = prepared
        .url
        .strip_prefix(&from.server.url)
        .expect("prepared for `from`");
    Prepared {
        url: format!("{}{query}", to.server.url),
        ..prepared.clone()
    }
}

/// The reply XML of an exchange, decrypted when it came encrypted.
fn reply_xml(e: &Exchange) -> String {
    assert_eq!(e.status, 200, "{}", e.body);
    e.reply_xml.clone().expect("a reply, not `success`")
}

#[tokio::test(flavor = "multi_thread")]
async fn a_retry_is_answered_with_the_first_replys_exact_bytes() {
    // A second passes between the tries: a reply rendered again would carry a new CreateTime.
    let pause = Duration::from_millis(1100);
    for mode in MODES {
        let (p, runs) = slow_in(mode, "", Duration::ZERO, "same bytes").await;
        let prepared = p.server.sim.prepare(xml(&text("hi"), "o_bytes"), "o_bytes");
        let first = reply_xml(&p.server.sim.send_prepared(&prepared).await.unwrap());
        tokio::time::sleep(pause).await;
        let retry = reply_xml(&p.server.sim.send_prepared(&prepared).await.unwrap());
        assert_eq!(retry, first, "{mode:?}");
        assert_eq!(runs.load(Ordering::SeqCst), 1);
    }

    // A late reply that rode on a waiting retry is what a later try gets, byte for byte.
    let (p, _) = slow(
        "[bot]\nreply_deadline_ms = 1000",
        Duration::from_millis(1600),
        "late, then again",
    )
    .await;
    let prepared = p.server.sim.prepare(xml(&text("hi"), "o_bytes"), "o_bytes");
    assert_eq!(
        p.server.sim.send_prepared(&prepared).await.unwrap().body,
        "success"
    );
    let ridden = reply_xml(&p.server.sim.send_prepared(&prepared).await.unwrap());
    tokio::time::sleep(pause).await;
    let again = reply_xml(&p.server.sim.send_prepared(&prepared).await.unwrap());
    assert_eq!(again, ridden);

    // Another process answers a retry from the stored record, with the same bytes.
    let db = tempfile::tempdir().unwrap();
    let db = db.path().join("shared.db");
    let route = |name: &'static str| {
        move |layers: Router| {
            layers.route(filter::any(), move |_ctx: Context| async move {
                Flow::Reply(Reply::text(format!("from {name}")))
            })
        }
    };
    for mode in MODES {
        let a = start_pipeline(mode, "", Some(&db), route("A")).await;
        let b = start_pipeline(mode, "", Some(&db), route("B")).await;
        let from = format!("o_bytes_{}", mode.as_str());
        let prepared = a.server.sim.prepare(xml(&text("shared"), &from), &from);
        let first = reply_xml(&a.server.sim.send_prepared(&prepared).await.unwrap());
        // The records sync every second; give them two.
        tokio::time::sleep(Duration::from_millis(2200)).await;
        let to_b = aimed_at(&prepared, &a, &b);
        let retry = reply_xml(&b.server.sim.send_prepared(&to_b).await.unwrap());
        assert_eq!(retry, first, "{mode:?}: B replays A's reply as A sent it");
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn a_reply_past_the_deadline_rides_on_the_waiting_retry() {
    // Deadline 1 s, the handler needs 1.6 s; the retry comes when the first attempt is
    // answered `success` and waits up to 1 s more, by which time the reply is ready.
    let (p, runs) = slow(
        "[bot]\nreply_deadline_ms = 1000",
        Duration::from_millis(1600),
        "late but passive",
    )
    .await;
    let prepared = p.server.sim.prepare(xml(&text("hi"), "o_ride"), "o_ride");
    let first = p.server.sim.send_prepared(&prepared).await.unwrap();
    assert_eq!(
        first.body, "success",
        "the deadline answered for the first attempt"
    );
    let retry = p.server.sim.send_prepared(&prepared).await.unwrap();
    assert_eq!(reply(&retry), Reply::text("late but passive"));
    // Delivered once, passively: nothing went to the customer-service path.
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert!(p.late.replies.lock().unwrap().is_empty());
    // A third try gets the same reply again (the second answer may have been lost).
    assert_eq!(
        reply(&p.server.sim.send_prepared(&prepared).await.unwrap()),
        Reply::text("late but passive")
    );
    assert_eq!(runs.load(Ordering::SeqCst), 1);
}

#[tokio::test(flavor = "multi_thread")]
async fn a_late_reply_nobody_waits_for_goes_to_customer_service_once() {
    let (p, runs) = slow(
        "[bot]\nreply_deadline_ms = 300",
        Duration::from_millis(900),
        "via customer service",
    )
    .await;
    let prepared = p.server.sim.prepare(xml(&text("hi"), "o_late"), "o_late");
    let first = p.server.sim.send_prepared(&prepared).await.unwrap();
    assert_eq!(first.body, "success");
    let delivered = late_replies(&p).await;
    assert_eq!(
        delivered,
        vec![("o_late".to_owned(), Reply::text("via customer service"))]
    );
    // A retry now gets `success`: the user has the reply already.
    let retry = p.server.sim.send_prepared(&prepared).await.unwrap();
    assert_eq!(retry.body, "success");
    assert_eq!(runs.load(Ordering::SeqCst), 1);
    assert_eq!(p.late.replies.lock().unwrap().len(), 1);
}

#[tokio::test(flavor = "multi_thread")]
async fn dedup_keys_follow_the_reference() {
    let (p, runs) = slow("", Duration::ZERO, "ok").await;
    // The same MsgId from two users is two messages.
    let mut header = Header::new("gh_test", "o_a");
    header.msg_id = 42;
    let a = text("same id").to_xml(&header).unwrap();
    header.from = "o_b".into();
    let b = text("same id").to_xml(&header).unwrap();
    p.server.sim.send(&a, "o_a").await.unwrap();
    p.server.sim.send(&b, "o_b").await.unwrap();
    assert_eq!(runs.load(Ordering::SeqCst), 2);
    // An event retried (same user, time, event, key) is one event, even re-signed.
    let click = xml(&MessageSpec::Click { key: "k".into() }, "o_a");
    p.server.sim.send(&click, "o_a").await.unwrap();
    p.server.sim.send(&click, "o_a").await.unwrap();
    assert_eq!(runs.load(Ordering::SeqCst), 3);
    // The same key clicked again later is a new event.
    let later = MessageSpec::Click { key: "k".into() }
        .to_xml(&Header {
            create_time: Header::new("", "").create_time + 7,
            ..Header::new("gh_test", "o_a")
        })
        .unwrap();
    p.server.sim.send(&later, "o_a").await.unwrap();
    assert_eq!(runs.load(Ordering::SeqCst), 4);
}

#[tokio::test(flavor = "multi_thread")]
async fn without_dedup_a_retry_runs_again() {
    let (p, runs) = slow(
        "[bot]\nmiddleware = [\"trace\", \"deadline\", \"log\"]",
        Duration::ZERO,
        "ok",
    )
    .await;
    let prepared = p
        .server
        .sim
        .prepare(xml(&text("x"), "o_nodedup"), "o_nodedup");
    p.server.sim.send_prepared(&prepared).await.unwrap();
    p.server.sim.send_prepared(&prepared).await.unwrap();
    assert_eq!(runs.load(Ordering::SeqCst), 2);
}

#[tokio::test(flavor = "multi_thread")]
async fn two_processes_on_one_database_share_dedup() {
    let db = tempfile::tempdir().unwrap();
    let db = db.path().join("shared.db");
    let (runs_a, runs_b) = (Arc::new(AtomicUsize::new(0)), Arc::new(AtomicUsize::new(0)));
    let route = |runs: Arc<AtomicUsize>, name: &'static str| {
        move |layers: Router| {
            layers.route(filter::any(), move |_ctx: Context| {
                let runs = runs.clone();
                async move {
                    runs.fetch_add(1, Ordering::SeqCst);
                    Flow::Reply(Reply::text(format!("from {name}")))
                }
            })
        }
    };
    let a = start_pipeline(Mode::Plain, "", Some(&db), route(runs_a.clone(), "A")).await;
    let b = start_pipeline(Mode::Plain, "", Some(&db), route(runs_b.clone(), "B")).await;
    let prepared: Prepared = a
        .server
        .sim
        .prepare(xml(&text("shared"), "o_shared"), "o_shared");
    assert_eq!(
        reply(&a.server.sim.send_prepared(&prepared).await.unwrap()),
        Reply::text("from A")
    );
    // WeChat's retry comes 5 s later; the records sync every second. Give them two.
    tokio::time::sleep(Duration::from_millis(2200)).await;
    let retry = b
        .server
        .sim
        .send_prepared(&aimed_at(&prepared, &a, &b))
        .await
        .unwrap();
    assert_eq!(reply(&retry), Reply::text("from A"), "B replays A's reply");
    assert_eq!(
        (runs_a.load(Ordering::SeqCst), runs_b.load(Ordering::SeqCst)),
        (1, 0)
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn followers_are_kept_and_rules_can_read_them() {
    let dir = tempfile::tempdir().unwrap();
    write_rules(
        dir.path(),
        &[(
            "10.rhai",
            r#"rule(#{ event: "subscribe" }, |msg| {
                let f = follower();
                text(`subscribed=${f.subscribed} scene=${f.scene} count=${follower_count()}`)
            });
            rule(#{ content: "me" }, |msg| text(`${follower().subscribed}`));"#,
        )],
    );
    let p = start_rules(Mode::Safe, "", dir.path()).await;
    let sub = xml(
        &MessageSpec::Subscribe {
            scene: Some("poster_9".into()),
        },
        "o_f",
    );
    assert_eq!(
        reply(&p.server.sim.send(&sub, "o_f").await.unwrap()),
        Reply::text("subscribed=true scene=poster_9 count=1")
    );
    let f = p.store.backend().follower("o_f").await.unwrap().unwrap();
    assert!(f.subscribed);
    assert_eq!(f.scene.as_deref(), Some("poster_9"));
    assert!(f.first_subscribed_at.is_some());
    p.server
        .sim
        .send(xml(&MessageSpec::Unsubscribe, "o_f"), "o_f")
        .await
        .unwrap();
    let f = p.store.backend().follower("o_f").await.unwrap().unwrap();
    assert!(!f.subscribed);
    assert!(f.unsubscribed_at.is_some());
    assert_eq!(say(&p, "me", "o_f").await, Reply::text("false"));
    p.store.flush().await.unwrap();
    let f = p.store.backend().follower("o_f").await.unwrap().unwrap();
    assert!(
        f.last_seen_at.is_some(),
        "last seen is written in the next batch"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn blocklist_rate_limit_and_the_log() {
    let dir = tempfile::tempdir().unwrap();
    write_rules(
        dir.path(),
        &[(
            "10.rhai",
            r#"rule(#{ content: "block me" }, |msg| { block_user(msg.from, "asked for it"); text("bye") });
            rule(#{ type: "text" }, |msg| text(msg.content));"#,
        )],
    );
    let p = start_rules(
        Mode::Plain,
        "[bot]\nblocklist = [\"o_banned\"]\nrate_limit_per_minute = 3\nrate_limit_reply = \"Slow down\"",
        dir.path(),
    )
    .await;
    // Configured blocklist.
    assert_eq!(say(&p, "hello", "o_banned").await, Reply::Success);
    // Blocked by a rule, at run time, and kept in the store.
    assert_eq!(say(&p, "block me", "o_rude").await, Reply::text("bye"));
    assert_eq!(say(&p, "hello?", "o_rude").await, Reply::Success);
    assert_eq!(
        p.store.backend().blocked_users().await.unwrap(),
        vec!["o_rude".to_owned()]
    );
    // Three messages a minute, then the limit.
    for i in 0..3 {
        assert_eq!(
            say(&p, &format!("m{i}"), "o_fast").await,
            Reply::text(format!("m{i}"))
        );
    }
    assert_eq!(say(&p, "m3", "o_fast").await, Reply::text("Slow down"));
    // Events are not counted.
    let click = xml(&MessageSpec::Click { key: "k".into() }, "o_fast");
    assert_eq!(
        p.server.sim.send(&click, "o_fast").await.unwrap().status,
        200
    );

    p.store.flush().await.unwrap();
    let log = p.store.backend().recent_log(100).await.unwrap();
    let outcome = |who: &str, summary: &str| {
        log.iter()
            .find(|e| e.openid == who && e.summary.as_deref() == Some(summary))
            .map(|e| (e.outcome.clone(), e.reply_type.clone()))
    };
    assert_eq!(
        outcome("o_banned", "hello"),
        Some(("blocked".into(), "success".into()))
    );
    assert_eq!(
        outcome("o_rude", "block me"),
        Some(("answered".into(), "text".into()))
    );
    assert_eq!(
        outcome("o_rude", "hello?"),
        Some(("blocked".into(), "success".into()))
    );
    assert_eq!(
        outcome("o_fast", "m3"),
        Some(("limited".into(), "text".into()))
    );
    assert_eq!(
        outcome("o_fast", "m0"),
        Some(("answered".into(), "text".into()))
    );
    assert!(
        log.iter()
            .any(|e| e.openid == "o_fast" && e.event.as_deref() == Some("click"))
    );
    // WeChat's report on a template sent to a blocked user still passes (a push's final
    // status), where the user's own messages do not.
    let report = xml(
        &MessageSpec::TemplateFinish {
            msg_id: 2_001,
            status: "success".into(),
        },
        "o_banned",
    );
    assert_eq!(
        p.server.sim.send(&report, "o_banned").await.unwrap().status,
        200
    );
    p.store.flush().await.unwrap();
    let log = p.store.backend().recent_log(100).await.unwrap();
    let report = log
        .iter()
        .find(|e| e.openid == "o_banned" && e.event.as_deref() == Some("templatesendjobfinish"))
        .expect("the report is logged");
    assert_ne!(report.outcome, "blocked");
}

#[tokio::test(flavor = "multi_thread")]
async fn late_messages_are_logged_late() {
    let (p, _) = slow(
        "[bot]\nreply_deadline_ms = 200",
        Duration::from_millis(500),
        "late",
    )
    .await;
    let exchange = p
        .server
        .sim
        .send(xml(&text("slow one"), "o_slow"), "o_slow")
        .await
        .unwrap();
    assert_eq!(exchange.body, "success");
    tokio::time::sleep(Duration::from_millis(600)).await;
    p.store.flush().await.unwrap();
    let log = p.store.backend().recent_log(10).await.unwrap();
    let entry = log.iter().find(|e| e.openid == "o_slow").expect("logged");
    assert_eq!(
        (entry.outcome.as_str(), entry.reply_type.as_str()),
        ("late", "text")
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn edits_to_the_rules_are_picked_up_and_broken_ones_keep_the_last_good_set() {
    let dir = tempfile::tempdir().unwrap();
    let rule = |answer: &str| format!(r#"rule(#{{ content: "ping" }}, |msg| text("{answer}"));"#);
    write_rules(dir.path(), &[("10-ping.rhai", &rule("v1"))]);
    let p = start_rules(Mode::Plain, "", dir.path()).await;
    assert_eq!(say(&p, "ping", "o_r").await, Reply::text("v1"));

    let until = |expected: &'static str| {
        let p = &p;
        async move {
            for _ in 0..200 {
                if say(p, "ping", "o_r").await == Reply::text(expected) {
                    return true;
                }
                tokio::time::sleep(Duration::from_millis(25)).await;
            }
            false
        }
    };
    write_rules(dir.path(), &[("10-ping.rhai", &rule("v2"))]);
    assert!(until("v2").await, "an edit is picked up without a restart");

    // A broken edit: the previous set stays live.
    write_rules(
        dir.path(),
        &[(
            "10-ping.rhai",
            "rule(#{ content: \"ping\" }, |msg| text(\"v3\")",
        )],
    );
    tokio::time::sleep(Duration::from_millis(400)).await;
    assert_eq!(say(&p, "ping", "o_r").await, Reply::text("v2"));

    // A new file joins; the fix lands.
    write_rules(
        dir.path(),
        &[
            ("10-ping.rhai", &rule("v3")),
            (
                "20-pong.rhai",
                r#"rule(#{ content: "pong" }, |msg| text("new file"));"#,
            ),
        ],
    );
    assert!(until("v3").await);
    // The two files are written one after the other: a reload may land between them.
    let mut pong = Reply::Success;
    for _ in 0..200 {
        pong = say(&p, "pong", "o_r").await;
        if pong != Reply::Success {
            break;
        }
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
    assert_eq!(pong, Reply::text("new file"));
}

#[tokio::test(flavor = "multi_thread")]
async fn a_failing_script_answers_the_fallback_and_the_server_keeps_serving() {
    let dir = tempfile::tempdir().unwrap();
    write_rules(
        dir.path(),
        &[(
            "10.rhai",
            r#"rule(#{ content: "crash" }, |msg| { let x = (); x.nope() });
            rule(#{ content: "spin" }, |msg| { loop {} });
            rule(#{ type: "text" }, |msg| text("fine"));"#,
        )],
    );
    for (sections, expected) in [
        ("", Reply::Success),
        (
            "[rules]\nfallback = \"Sorry, something went wrong.\"",
            Reply::text("Sorry, something went wrong."),
        ),
    ] {
        let p = start_rules(Mode::Compatible, sections, dir.path()).await;
        assert_eq!(say(&p, "crash", "o_x").await, expected);
        assert_eq!(say(&p, "spin", "o_x").await, expected);
        assert_eq!(say(&p, "other", "o_x").await, Reply::text("fine"));
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn a_slow_rule_does_not_hold_up_the_deadline() {
    // A rule that works past the deadline: the watchdog still answers in time, and the reply
    // goes the late way (no retry is waiting, so to the customer-service sender).
    let dir = tempfile::tempdir().unwrap();
    write_rules(
        dir.path(),
        &[(
            "10.rhai",
            r#"rule(#{ content: "slow" }, |msg| {
                let start = now_ms();
                while now_ms() - start < 900 {}
                text("done at last")
            });"#,
        )],
    );
    let p = start_rules(
        Mode::Plain,
        "[bot]\nreply_deadline_ms = 200\n[rules]\nmax_operations = 1000000000000\nmax_run_ms = 5000",
        dir.path(),
    )
    .await;
    let exchange = p
        .server
        .sim
        .send(xml(&text("slow"), "o_slowrule"), "o_slowrule")
        .await
        .unwrap();
    assert_eq!(
        exchange.body, "success",
        "the watchdog answered before the rule finished"
    );
    let delivered = late_replies(&p).await;
    assert_eq!(
        delivered,
        vec![("o_slowrule".to_owned(), Reply::text("done at last"))]
    );
}

/// Sends a prepared request but gives up after `patience`, as a client that drops the
/// connection.
async fn send_and_give_up(prepared: &Prepared, patience: Duration) {
    let client = reqwest::Client::builder()
        .timeout(patience)
        .build()
        .unwrap();
    let result = client
        .post(&prepared.url)
        .body(prepared.body.clone())
        .send()
        .await;
    assert!(result.is_err(), "the server answered within {patience:?}");
}

#[tokio::test(flavor = "multi_thread")]
async fn a_first_attempt_whose_connection_drops_still_finishes_once() {
    // No retry comes: the reply goes the late way.
    let (p, runs) = slow("", Duration::from_millis(600), "finished anyway").await;
    let prepared = p.server.sim.prepare(xml(&text("hi"), "o_drop"), "o_drop");
    send_and_give_up(&prepared, Duration::from_millis(150)).await;
    let delivered = late_replies(&p).await;
    assert_eq!(
        delivered,
        vec![("o_drop".to_owned(), Reply::text("finished anyway"))]
    );
    // A retry now is not answered twice.
    assert_eq!(
        p.server.sim.send_prepared(&prepared).await.unwrap().body,
        "success"
    );
    assert_eq!(runs.load(Ordering::SeqCst), 1);

    // A retry arriving while the abandoned attempt still runs carries its reply.
    let prepared = p
        .server
        .sim
        .prepare(xml(&text("again"), "o_drop2"), "o_drop2");
    send_and_give_up(&prepared, Duration::from_millis(150)).await;
    let retry = p.server.sim.send_prepared(&prepared).await.unwrap();
    assert_eq!(reply(&retry), Reply::text("finished anyway"));
    assert_eq!(runs.load(Ordering::SeqCst), 2);
    assert_eq!(
        p.late.replies.lock().unwrap().len(),
        1,
        "nothing more went the late way"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn a_panicking_first_attempt_does_not_leave_retries_waiting() {
    let runs = Arc::new(AtomicUsize::new(0));
    let r = runs.clone();
    // A deadline longer than the retry client's patience: a retry left waiting on the dead
    // attempt would time out instead of being answered.
    let p = start_pipeline(
        Mode::Plain,
        "[bot]\nreply_deadline_ms = 4900",
        None,
        move |layers: Router| {
            layers.route(filter::any(), move |_ctx: Context| {
                let r = r.clone();
                async move {
                    r.fetch_add(1, Ordering::SeqCst);
                    if r.load(Ordering::SeqCst) > 0 {
                        panic!("handler bug");
                    }
                    Flow::Next
                }
            })
        },
    )
    .await;
    let prepared = p
        .server
        .sim
        .prepare(xml(&text("boom"), "o_panic"), "o_panic");
    assert_eq!(
        p.server.sim.send_prepared(&prepared).await.unwrap().body,
        "success"
    );
    let patient = reqwest::Client::builder()
        .timeout(Duration::from_secs(3))
        .build()
        .unwrap();
    let retry = patient
        .post(&prepared.url)
        .body(prepared.body.clone())
        .send()
        .await;
    let retry = retry.expect("the retry is answered from the settled record, not left waiting");
    assert_eq!(retry.text().await.unwrap(), "success");
    assert_eq!(runs.load(Ordering::SeqCst), 1);
}

#[tokio::test(flavor = "multi_thread")]
async fn retries_are_logged_as_retries() {
    let (p, runs) = slow("", Duration::ZERO, "once").await;
    let prepared = p
        .server
        .sim
        .prepare(xml(&text("log me"), "o_logretry"), "o_logretry");
    for _ in 0..3 {
        assert_eq!(
            reply(&p.server.sim.send_prepared(&prepared).await.unwrap()),
            Reply::text("once")
        );
    }
    assert_eq!(runs.load(Ordering::SeqCst), 1);
    p.store.flush().await.unwrap();
    let mut outcomes: Vec<String> = p
        .store
        .backend()
        .recent_log(10)
        .await
        .unwrap()
        .into_iter()
        .filter(|e| e.openid == "o_logretry")
        .map(|e| format!("{}:{}", e.outcome, e.reply_type))
        .collect();
    outcomes.sort();
    assert_eq!(outcomes, ["answered:text", "retry:text", "retry:text"]);
}

#[tokio::test(flavor = "multi_thread")]
async fn a_new_push_key_is_answered_but_never_stored_for_retries() {
    let shipped = Path::new(env!("CARGO_MANIFEST_DIR")).join("rules");
    let p = start_rules(Mode::Plain, "", &shipped).await;
    let prepared = p
        .server
        .sim
        .prepare(xml(&text("key"), "o_secret"), "o_secret");
    let first = reply(&p.server.sim.send_prepared(&prepared).await.unwrap());
    let Reply::Text { content } = &first else {
        panic!("a text with the key: {first:?}");
    };
    let key = content
        .lines()
        .nth(1)
        .expect("the key on its own line")
        .to_owned();
    assert!(key.len() >= 24, "{content}");
    // A retry reaching this process gets the same answer, from memory.
    let again = reply(&p.server.sim.send_prepared(&prepared).await.unwrap());
    assert_eq!(again, first);
    // What the other processes read has no key in it.
    p.store.flush().await.unwrap();
    let records = p
        .store
        .backend()
        .dedup_changes(0, "another process")
        .await
        .unwrap();
    assert!(!records.is_empty());
    for r in &records {
        assert!(
            !r.reply.as_deref().unwrap_or_default().contains(&key),
            "{r:?}"
        );
    }
}
