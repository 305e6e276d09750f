//! The push service through the real binary against `huixin emulator`: the native API and its
//! errors, delivery to a topic confirmed by `TEMPLATESENDJOBFINISH`, transient failures
//! retried with the same `client_msg_id`, permanent ones not retried, a crash mid-delivery
//! that loses nothing and sends nothing twice, the admin commands, and the chat commands.

use crate::common;

use std::collections::HashMap;
use std::time::Duration;

use common::browser::headless;
use common::emu::TEMPLATE;
use common::process::{huixin, stderr, stdout};
use common::setup::{setup, setup_with};
use huixin::emulator::Fault;
use huixin::simulator::MessageSpec;
use huixin::wechat::Reply;
use serde_json::{Value, json};

const TEMPLATE_PATH: &str = "/cgi-bin/message/template/send";

fn recipients_by_openid(status: &Value) -> HashMap<String, Value> {
    status["recipients"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| (r["openid"].as_str().unwrap().to_owned(), r.clone()))
        .collect()
}

#[test]
fn a_push_to_a_topic_is_delivered_and_confirmed() {
    let s = setup(&["o_ops_1", "o_ops_2", "o_ops_3", "o_other"], "");
    s.run(&["topics", "add", "ops", "--description", "on-call"]);
    for member in ["o_ops_1", "o_ops_2", "o_ops_3", "o_stranger"] {
        s.run(&["topics", "join", "ops", member]);
    }
    assert!(
        s.run(&["topics"])
            .contains("ops\t#1\tclosed\t4 members\ton-call")
    );
    let key = s.admin_key();
    let _server = s.serve();

    let title = "Deploy of huixin finished on all hosts";
    let body = "**All green.**\n\n- web: ok\n- worker: ok\n\n<script>alert(1)</script>";
    let (code, accepted) = s.post(
        "/api/v1/push",
        Some(&key),
        json!({ "topic": "ops", "title": title, "body": body, "url": "https://ci.example.com/42" }),
    );
    assert_eq!(code, 200, "{accepted}");
    assert_eq!(accepted["recipients"], 4);
    let id = accepted["id"].as_str().unwrap().to_owned();
    assert_eq!(id.len(), 22);
    let detail_url = accepted["detail_url"].as_str().unwrap().to_owned();
    assert_eq!(detail_url, format!("{}/m/{id}", s.base()));

    // Three members follow: sent, then confirmed by TEMPLATESENDJOBFINISH; the stranger is
    // unknown to WeChat (40003): failed at once, not retried.
    let status = s.settle(&key, &id, |st| st["counts"]["delivered"] == 3);
    assert_eq!(status["counts"]["failed"], 1, "{status}");
    let recipients = recipients_by_openid(&status);
    let stranger = &recipients["o_stranger"];
    assert_eq!(stranger["status"], "failed");
    assert_eq!(stranger["attempts"], 1);
    assert!(
        stranger["error"].as_str().unwrap().starts_with("40003"),
        "{stranger}"
    );
    assert!(s.templates_to("o_other").is_empty());

    for member in ["o_ops_1", "o_ops_2", "o_ops_3"] {
        let got = s.templates_to(member);
        assert_eq!(got.len(), 1, "{member}: {got:?}");
        let message = &got[0];
        assert_eq!(message["template_id"], TEMPLATE);
        assert_eq!(message["url"], detail_url.as_str());
        // The 2023 rules: each field at most 20 characters, no newline.
        let title_value = message["data"]["title"]["value"].as_str().unwrap();
        assert_eq!(title_value.chars().count(), 20, "{title_value}");
        assert!(title_value.ends_with('…'));
        let summary = message["data"]["summary"]["value"].as_str().unwrap();
        assert!(summary.starts_with("All green."), "{summary}");
        assert!(!summary.contains('\n'));
        let time = message["data"]["time"]["value"].as_str().unwrap();
        assert_eq!(time.len(), "2026-11-21 14:03".len(), "{time}");
        assert_eq!(recipients[member]["status"], "delivered");
        assert!(recipients[member]["msgid"].is_i64());
    }

    // The detail page: the body rendered and sanitized.
    let (code, page) = s.get(&format!("/m/{id}"), None);
    assert_eq!(code, 200);
    assert!(page.contains(title));
    assert!(page.contains("<strong>All green.</strong>"));
    assert!(!page.to_lowercase().contains("<script"));
    assert!(page.contains("https://ci.example.com/42"));
    let (code, missing) = s.get("/m/AAAAAAAAAAAAAAAAAAAAAA", None);
    assert_eq!(code, 404);
    assert!(missing.contains("消息不存在"));

    // History for the key.
    let (code, history) = s.get("/api/v1/push?limit=10", Some(&key));
    assert_eq!(code, 200);
    let history: Value = serde_json::from_str(&history).unwrap();
    assert_eq!(history["pushes"][0]["id"], id.as_str());
    assert_eq!(history["next"], Value::Null);
}

#[test]
fn the_native_api_refuses_what_it_must() {
    let s = setup(&["o_me", "o_you"], "rate_limit_per_minute = 3\n");
    s.run(&["topics", "add", "ops"]);
    let admin = s.admin_key();
    let mine = s.run(&["keys", "create", "--user", "o_me"]);
    let ops = s.run(&["keys", "create", "--topic", "ops"]);
    let _server = s.serve();
    let push = json!({ "title": "t", "body": "b" });

    let (code, body) = s.post("/api/v1/push", None, push.clone());
    assert_eq!((code, body["status"].clone()), (401, json!(401)), "{body}");
    assert!(body["error"].as_str().unwrap().contains("key"));
    let (code, _) = s.post("/api/v1/push", Some("x".repeat(32).as_str()), push.clone());
    assert_eq!(code, 401);
    // A user key reaches its own follower only; a topic key its topic only.
    let (code, body) = s.post(
        "/api/v1/push",
        Some(&mine),
        json!({ "to": ["o_you"], "title": "t" }),
    );
    assert_eq!(code, 403, "{body}");
    let (code, body) = s.post(
        "/api/v1/push",
        Some(&ops),
        json!({ "topic": "other", "title": "t" }),
    );
    assert_eq!(code, 403, "{body}");
    // An admin key must name recipients; bad fields are 400s.
    let (code, body) = s.post("/api/v1/push", Some(&admin), push.clone());
    assert_eq!(code, 400, "{body}");
    for bad in [
        json!({ "to": ["o_me"] }),
        json!({ "to": ["o_me"], "title": "t", "url": "javascript:alert(1)" }),
        json!({ "to": ["o me"], "title": "t" }),
        json!({ "topic": "no such", "title": "t" }),
        json!({ "to": ["o_me"], "title": "x".repeat(300) }),
    ] {
        let (code, body) = s.post("/api/v1/push", Some(&admin), bad.clone());
        assert_eq!(code, 400, "{bad} → {body}");
    }
    let (code, body) = s.post(
        "/api/v1/push",
        Some(&admin),
        json!({ "topic": "nosuch", "title": "t" }),
    );
    assert_eq!(code, 404, "{body}");
    let (code, body) = s.runtime.block_on(async {
        let r = s
            .http
            .post(format!("{}/api/v1/push", s.base()))
            .bearer_auth(&admin)
            .header("content-type", "application/json")
            .body("{not json")
            .send()
            .await
            .unwrap();
        (r.status().as_u16(), r.text().await.unwrap())
    });
    assert_eq!(code, 400, "{body}");

    // The key's own pushes, then the rate limit (3 a minute) with Retry-After.
    for _ in 0..3 {
        let (code, body) = s.post("/api/v1/push", Some(&mine), push.clone());
        assert_eq!(code, 200, "{body}");
        assert_eq!(body["recipients"], 1);
    }
    let (code, body) = s.post("/api/v1/push", Some(&mine), push.clone());
    assert_eq!(code, 429, "{body}");
    // Another key has its own budget; the key param works as well as the header.
    let (code, body) = s.post(&format!("/api/v1/push?key={ops}"), None, push.clone());
    assert_eq!(code, 200, "{body}");
    assert_eq!(body["recipients"], 0, "nobody is in ops yet");

    // A key sees its pushes; another user's key does not.
    let (_, history) = s.get("/api/v1/push", Some(&mine));
    let history: Value = serde_json::from_str(&history).unwrap();
    let first = history["pushes"][0]["id"].as_str().unwrap().to_owned();
    assert_eq!(history["pushes"].as_array().unwrap().len(), 3);
    let (code, _) = s.get(&format!("/api/v1/push/{first}"), Some(&ops));
    assert_eq!(code, 404);
    let (code, _) = s.get(&format!("/api/v1/push/{first}"), Some(&admin));
    assert_eq!(code, 200);

    // Revoked keys stop working. Only a key's first 6 characters are stored: more than
    // those, short of the whole key, cannot be checked and are refused.
    let out = huixin(s.dir.path(), &["keys", "revoke", &mine[..8]], &[]);
    assert!(!out.status.success());
    assert!(
        stderr(&out).contains("first 6 characters"),
        "{}",
        stderr(&out)
    );
    s.run(&["keys", "revoke", &mine[..6]]);
    let (code, _) = s.post("/api/v1/push", Some(&mine), push);
    assert_eq!(code, 401);
    s.run(&["keys", "revoke", &ops]);
    let (code, _) = s.post("/api/v1/push", Some(&ops), json!({ "title": "t" }));
    assert_eq!(code, 401, "revoked by the whole key");
    let listed = s.run(&["keys"]);
    assert!(listed.contains("revoked"), "{listed}");
    assert!(!listed.contains(&mine), "keys are never listed whole");
    let out = huixin(s.dir.path(), &["keys", "--show"], &[]);
    assert!(!out.status.success(), "whole keys cannot be shown");
    assert!(stderr(&out).contains("shown once"), "{}", stderr(&out));
}

#[test]
fn transient_failures_are_retried_with_the_same_client_msg_id() {
    let s = setup(&["o_busy", "o_lost"], "max_attempts = 4\n");
    let key = s.admin_key();
    let _server = s.serve();
    // Six busy answers: the client's own three tries fail twice, the worker's third attempt
    // gets through.
    s.em.emu.inject(Fault {
        path: TEMPLATE_PATH.into(),
        errcode: -1,
        errmsg: String::new(),
        count: 6,
        after: false,
        latency_ms: 0,
        http_status: None,
    });
    let (code, accepted) = s.post(
        "/api/v1/push",
        Some(&key),
        json!({ "to": ["o_busy"], "title": "retry me" }),
    );
    assert_eq!(code, 200, "{accepted}");
    let id = accepted["id"].as_str().unwrap();
    let status = s.settle(&key, id, |st| st["counts"]["delivered"] == 1);
    assert_eq!(status["recipients"][0]["attempts"], 3, "{status}");
    let calls = s.em.calls_to(TEMPLATE_PATH);
    assert_eq!(calls.len(), 7, "6 refused + 1 delivered");
    let ids: std::collections::HashSet<String> = calls
        .iter()
        .map(|c| {
            c.body.as_ref().unwrap()["client_msg_id"]
                .as_str()
                .unwrap()
                .to_owned()
        })
        .collect();
    assert_eq!(ids.len(), 1, "one client_msg_id on every try: {ids:?}");
    assert_eq!(s.templates_to("o_busy").len(), 1);

    // WeChat did the work but its answer was lost: the retry is recognised, one message.
    s.em.emu.inject(Fault {
        path: TEMPLATE_PATH.into(),
        errcode: -1,
        errmsg: String::new(),
        count: 1,
        after: true,
        latency_ms: 0,
        http_status: None,
    });
    let (_, accepted) = s.post(
        "/api/v1/push",
        Some(&key),
        json!({ "to": ["o_lost"], "title": "answer lost" }),
    );
    let id = accepted["id"].as_str().unwrap();
    s.settle(&key, id, |st| {
        st["counts"]["sent"].as_u64().unwrap() + st["counts"]["delivered"].as_u64().unwrap() == 1
    });
    assert_eq!(s.templates_to("o_lost").len(), 1);
}

#[test]
fn permanent_failures_are_marked_and_not_retried() {
    let s = setup(&["o_fine"], "");
    s.em.emu.add_user_with("o_left", false, None);
    let key = s.admin_key();
    let _server = s.serve();
    let (_, accepted) = s.post(
        "/api/v1/push",
        Some(&key),
        json!({ "to": ["o_left", "o_fine"], "title": "hello" }),
    );
    let id = accepted["id"].as_str().unwrap();
    let status = s.settle(&key, id, |st| st["counts"]["delivered"] == 1);
    let recipients = recipients_by_openid(&status);
    assert_eq!(recipients["o_left"]["status"], "failed");
    assert!(
        recipients["o_left"]["error"]
            .as_str()
            .unwrap()
            .starts_with("43004")
    );
    let to_left =
        s.em.calls_to(TEMPLATE_PATH)
            .into_iter()
            .filter(|c| c.body.as_ref().is_some_and(|b| b["touser"] == "o_left"))
            .count();
    assert_eq!(to_left, 1, "43004 is not retried");

    // A later TEMPLATESENDJOBFINISH saying the user blocked it marks the recipient failed.
    let msgid = recipients["o_fine"]["msgid"].as_u64().unwrap();
    // In a later second: the same event in the same second is a retry of the first.
    std::thread::sleep(Duration::from_millis(1100));
    let conversation = s.runtime.block_on(async {
        s.em.emu
            .send(
                "o_fine",
                MessageSpec::TemplateFinish {
                    msg_id: msgid,
                    status: "failed:user block".into(),
                },
            )
            .await
            .unwrap()
    });
    assert_eq!(conversation.attempts.len(), 1, "{conversation:?}");
    let status = s.settle(&key, id, |st| st["counts"]["failed"] == 2);
    let recipients = recipients_by_openid(&status);
    assert_eq!(recipients["o_fine"]["error"], "failed:user block");
}

#[test]
fn a_crash_mid_delivery_loses_nothing_and_sends_nothing_twice() {
    let members: Vec<String> = (0..40).map(|i| format!("o_member_{i:02}")).collect();
    let refs: Vec<&str> = members.iter().map(String::as_str).collect();
    let s = setup_with(&refs, "concurrency = 2\n", Duration::from_millis(40));
    s.run(&["topics", "add", "all"]);
    for m in &members {
        s.run(&["topics", "join", "all", m]);
    }
    let key = s.admin_key();
    let server = s.serve();
    let (code, accepted) = s.post(
        "/api/v1/push",
        Some(&key),
        json!({ "topic": "all", "title": "crash test" }),
    );
    assert_eq!(code, 200, "{accepted}");
    let id = accepted["id"].as_str().unwrap().to_owned();
    // Let part of the delivery happen, then kill the server (SIGKILL: no shutdown at all).
    let delivered = || {
        members
            .iter()
            .filter(|m| !s.templates_to(m).is_empty())
            .count()
    };
    for _ in 0..400 {
        if delivered() >= 8 {
            break;
        }
        std::thread::sleep(Duration::from_millis(10));
    }
    drop(server);
    let before = delivered();
    assert!(
        before < members.len(),
        "the kill came mid-delivery ({before})"
    );

    // Started again, it takes the rest over (the dead process's claims after their lease).
    let _server = s.serve();
    s.settle(&key, &id, |st| st["counts"]["failed"] == 0);
    for m in &members {
        assert_eq!(s.templates_to(m).len(), 1, "{m} got the push exactly once");
    }
}

#[test]
fn followers_use_the_chat_commands() {
    let s = setup(&["o_chat"], "");
    s.run(&[
        "topics",
        "add",
        "news",
        "--open",
        "--description",
        "daily news",
    ]);
    s.run(&["topics", "add", "secret"]);
    let _server = s.serve();
    let say = |text: &str| -> String {
        s.runtime.block_on(async {
            let conversation =
                s.em.emu
                    .send(
                        "o_chat",
                        MessageSpec::Text {
                            content: text.into(),
                        },
                    )
                    .await
                    .unwrap();
            match conversation.reply() {
                Some(Reply::Text { content }) => content,
                other => panic!("{text}: {other:?} ({conversation:?})"),
            }
        })
    };
    let answer = say("key");
    let key = answer
        .lines()
        .nth(1)
        .unwrap_or_else(|| panic!("the key on the second line: {answer:?}"))
        .trim()
        .to_owned();
    assert_eq!(key.len(), 32, "{answer}");
    assert!(
        answer.contains(&format!("{}/{key}/Title/Body", s.base())),
        "{answer}"
    );
    // Only the key's hash is kept: asked again, huixin says there is one, never shows it.
    let again = say("key");
    assert!(!again.contains(&key), "the key is shown once: {again}");
    assert!(again.contains(&key[..6]), "its first characters: {again}");
    assert!(again.contains("key reset"), "{again}");
    let listed = s.run(&["keys"]);
    assert!(
        !listed.contains(&key),
        "listings never show a key: {listed}"
    );
    assert!(listed.contains(&format!("{}…", &key[..6])), "{listed}");

    let topics = say("topics");
    assert!(topics.contains("· news daily news"), "{topics}");
    assert!(
        !topics.contains("secret"),
        "closed topics are not listed: {topics}"
    );
    assert!(say("sub news").starts_with("Joined \"news\""));
    assert!(say("sub news").contains("already"));
    assert!(say("sub secret").contains("no open topic"));
    assert!(say("topics").contains("✓ news"));

    // The personal key pushes to its owner only.
    let (code, body) = s.post(
        "/api/v1/push",
        Some(&key),
        json!({ "title": "to myself", "body": "from a script" }),
    );
    assert_eq!(code, 200, "{body}");
    for _ in 0..200 {
        if !s.templates_to("o_chat").is_empty() {
            break;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    assert_eq!(s.templates_to("o_chat").len(), 1);

    assert!(say("unsub news").starts_with("Left"));
    assert!(say("unsub news").contains("not in"));
    let fresh = say("key reset");
    let new_key = fresh.lines().nth(1).unwrap().trim().to_owned();
    assert_ne!(new_key, key);
    let (code, _) = s.post("/api/v1/push", Some(&key), json!({ "title": "old key" }));
    assert_eq!(code, 401, "the old key no longer works");
}

#[test]
fn the_detail_page_renders_in_a_browser() {
    let s = setup(&["o_reader"], "");
    let key = s.admin_key();
    let _server = s.serve();
    let body = "## 部署报告\n\nAll **green**: see the [log](https://ci.example.com/log).\n\n\
                | host | state |\n|---|---|\n| web-1 | ok |\n\n\
                <img src=x onerror=\"document.title='pwned'\">\n\n\
                <script>document.title = 'pwned'</script>\n\n\
                [click](javascript:document.title='pwned')";
    let (code, accepted) = s.post(
        "/api/v1/push",
        Some(&key),
        json!({ "to": ["o_reader"], "title": "Nightly build 夜间构建", "body": body,
                "url": "https://ci.example.com/42" }),
    );
    assert_eq!(code, 200, "{accepted}");
    let url = accepted["detail_url"].as_str().unwrap().to_owned();

    let profile = tempfile::tempdir().unwrap();
    // The DOM after the page loaded and any script had its chance to run.
    let out = headless(
        profile.path(),
        &["--virtual-time-budget=2000", "--dump-dom"],
        &url,
    );
    assert!(out.status.success(), "{}", stderr(&out));
    let dom = stdout(&out);
    assert!(
        dom.contains("<title>Nightly build 夜间构建</title>"),
        "no script changed the title: {dom}"
    );
    assert!(dom.contains("Nightly build 夜间构建</h1>"), "{dom}");
    assert!(dom.contains("部署报告"));
    assert!(dom.contains("<strong>green</strong>"));
    assert!(dom.contains("web-1"));
    assert!(dom.contains("https://ci.example.com/42"));
    let lower = dom.to_lowercase();
    assert!(!lower.contains("<script"), "{dom}");
    assert!(!lower.contains("onerror"), "{dom}");
    assert!(!lower.contains("javascript:"), "{dom}");

    // Rendered at a phone's width: a real picture, not an empty page.
    let shot = profile.path().join("page.png");
    let out = headless(
        profile.path(),
        &[&format!("--screenshot={}", shot.display())],
        &url,
    );
    assert!(out.status.success(), "{}", stderr(&out));
    let png = std::fs::read(&shot).expect("a screenshot");
    assert_eq!(&png[1..4], b"PNG");
    assert!(
        png.len() > 5_000,
        "the page has content ({} bytes)",
        png.len()
    );

    // An unknown id: the friendly page, in the browser too.
    let out = headless(
        profile.path(),
        &["--dump-dom"],
        &format!("{}/m/AAAAAAAAAAAAAAAAAAAAAA", s.base()),
    );
    assert!(stdout(&out).contains("消息不存在或已过期"));
}
