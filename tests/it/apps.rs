//! The platform for app developers through the real binary, with the emulator as WeChat and a
//! receiving server that checks every webhook's signature: a site binds its users by QR code
//! and by the web-authorization link (chromium following the redirects), hears of it by
//! webhook, pushes to its own user ids; message webhooks answer the reply; bad input is
//! refused with a clear error.

use crate::common;

use std::time::Duration;

use common::browser::dom_after;
use common::receiver::{Answer, Receiver};
use common::setup::{Setup, setup, setup_emulated};
use serde_json::{Value, json};

/// Starts a receiver on the setup's runtime.
fn receiver(s: &Setup, secrets: &[&str]) -> Receiver {
    s.runtime.block_on(Receiver::start(secrets))
}

/// The follower scans the QR code of `ticket` (subscribing when they do not follow yet): the
/// final reply's text, if any.
fn scan(s: &Setup, openid: &str, ticket: &str) -> Option<String> {
    s.scan(openid, ticket)["user_saw"]["reply"]["body"]["content"]
        .as_str()
        .map(str::to_owned)
}

/// The follower sends a text: the conversation.
fn say(s: &Setup, openid: &str, text: &str) -> Value {
    s.emulator_send(openid, json!({ "type": "text", "content": text }))
}

const WAIT: Duration = Duration::from_secs(10);

#[test]
fn a_site_binds_its_user_by_qr_code_and_pushes_to_them() {
    let s = setup(&["o_other"], "[apps]\nbind_reply = \"已绑定 {app}\"\n");
    let site = receiver(&s, &[]);
    let app = s.create_app(&["shop", "--callback", &site.url("/hook")]);
    site.add_secret(&app.secret);
    let _server = s.serve();

    let (code, offer) = s.post(
        "/api/v1/bindings",
        Some(&app.token),
        json!({ "uid": "site-user-42", "extra": "order page" }),
    );
    assert_eq!(code, 201, "{offer}");
    assert_eq!(offer["state"], "pending");
    assert!(
        offer["qrcode"]["url"]
            .as_str()
            .unwrap()
            .contains("showqrcode")
    );
    let id = offer["id"].as_str().unwrap().to_owned();
    let ticket = offer["qrcode"]["ticket"].as_str().unwrap().to_owned();

    // The site embeds huixin's own image of the code.
    let png_url = offer["qrcode"]["png"].as_str().unwrap().to_owned();
    let png = s.runtime.block_on(async {
        let r = reqwest::get(&png_url).await.unwrap();
        assert_eq!(r.status(), 200);
        assert_eq!(r.headers()["content-type"], "image/png");
        r.bytes().await.unwrap()
    });
    assert_eq!(&png[..8], b"\x89PNG\r\n\x1a\n");

    // A new follower scans it: subscribed, bound, told so.
    let reply = scan(&s, "o_site_user", &ticket);
    assert_eq!(reply.as_deref(), Some("已绑定 shop"));

    // The site hears of it, signed, with its uid and extra, never the OpenID.
    let got = site.wait(WAIT, |r| r.iter().any(|r| r.event == "binding"));
    let binding = got.iter().find(|r| r.event == "binding").unwrap();
    assert!(binding.signed, "{binding:?}");
    assert_eq!(binding.body["event"], "binding");
    assert_eq!(binding.body["app"]["name"], "shop");
    assert_eq!(binding.body["data"]["uid"], "site-user-42");
    assert_eq!(binding.body["data"]["extra"], "order page");
    assert_eq!(binding.body["data"]["source"], "scan");
    assert!(!binding.body.to_string().contains("o_site_user"));
    let follow = site.wait(WAIT, |r| r.iter().any(|r| r.event == "follow"));
    let follow = follow.iter().find(|r| r.event == "follow").unwrap();
    assert_eq!(follow.body["data"]["uid"], "site-user-42");
    assert_eq!(follow.body["data"]["scene"], format!("bind:{id}"));

    // The code says so too.
    let (code, status) = s.get(&format!("/api/v1/bindings/{id}"), Some(&app.token));
    assert_eq!(code, 200, "{status}");
    let status: Value = serde_json::from_str(&status).unwrap();
    assert_eq!(status["state"], "bound");

    // The site pushes to its uid; the follower gets the template message.
    let (code, accepted) = s.post(
        "/api/v1/push",
        Some(&app.token),
        json!({ "to_uid": ["site-user-42"], "title": "发货通知", "body": "**已发货**" }),
    );
    assert_eq!(code, 200, "{accepted}");
    assert_eq!(accepted["recipients"], 1);
    let push = accepted["id"].as_str().unwrap().to_owned();
    s.settle(&app.token, &push, |st| st["counts"]["delivered"] == 1);
    assert_eq!(s.templates_to("o_site_user").len(), 1);
    // WeChat's report of the delivery reaches the site as push.delivered, by uid.
    let got = site.wait(WAIT, |r| r.iter().any(|r| r.event == "push.delivered"));
    let fate = got.iter().find(|r| r.event == "push.delivered").unwrap();
    assert_eq!(fate.body["data"]["uid"], "site-user-42");
    assert_eq!(fate.body["data"]["push"]["id"], push.as_str());
    assert_eq!(fate.body["data"]["status"], "success");

    // An OpenID is not the app's to name; an unknown uid is refused by name.
    let (code, body) = s.post(
        "/api/v1/push",
        Some(&app.token),
        json!({ "to": ["o_other"], "title": "x" }),
    );
    assert_eq!(code, 403, "{body}");
    let (code, body) = s.post(
        "/api/v1/push",
        Some(&app.token),
        json!({ "to_uid": ["site-user-404"], "title": "x" }),
    );
    assert_eq!(code, 404, "{body}");
    assert!(body["error"].as_str().unwrap().contains("site-user-404"));

    // The code bound once: another follower scanning it is told, and nothing changes.
    let reply = scan(&s, "o_other", &ticket);
    assert!(reply.unwrap().contains("已被使用"));
    let (_, list) = s.get("/api/v1/bindings?uid=site-user-42", Some(&app.token));
    let list: Value = serde_json::from_str(&list).unwrap();
    assert_eq!(list["total"], 1, "{list}");
    assert_eq!(list["bindings"][0]["state"], "bound");

    // Unfollowing marks the binding, and the site hears of it.
    s.emulator_send("o_site_user", json!({ "type": "unsubscribe" }));
    site.wait(WAIT, |r| r.iter().any(|r| r.event == "unfollow"));
    let (_, list) = s.get("/api/v1/bindings?uid=site-user-42", Some(&app.token));
    let list: Value = serde_json::from_str(&list).unwrap();
    assert_eq!(list["bindings"][0]["state"], "unfollowed");

    // Every delivery was signed.
    assert!(site.received().iter().all(|r| r.signed));
}

#[test]
fn a_follower_binds_through_the_link_in_a_browser() {
    let s = setup(&["o_reader"], "");
    let site = receiver(&s, &[]);
    let app = s.create_app(&["blog", "--callback", &site.url("/hook")]);
    site.add_secret(&app.secret);
    let _server = s.serve();
    let (code, offer) = s.post(
        "/api/v1/bindings",
        Some(&app.token),
        json!({ "uid": "reader-7" }),
    );
    assert_eq!(code, 201, "{offer}");
    let link = offer["link"].as_str().unwrap().to_owned();

    // The reader is at the browser: /bind/ID → WeChat's authorization → /oauth/callback.
    s.emulator_post("/emulator/oauth/browser", json!({ "openid": "o_reader" }));
    let dom = dom_after(&link);
    assert!(dom.contains("绑定成功"), "{dom}");
    assert!(dom.contains("blog"), "{dom}");

    let got = site.wait(WAIT, |r| r.iter().any(|r| r.event == "binding"));
    let binding = got.iter().find(|r| r.event == "binding").unwrap();
    assert!(binding.signed);
    assert_eq!(binding.body["data"]["uid"], "reader-7");
    assert_eq!(binding.body["data"]["source"], "link");
    assert_eq!(binding.body["data"]["following"], true);

    // The link was used: opening it again says so.
    let dom = dom_after(&link);
    assert!(dom.contains("已被使用"), "{dom}");

    // With a return URL, the browser lands on the site.
    let (_, offer) = s.post(
        "/api/v1/bindings",
        Some(&app.token),
        json!({ "uid": "reader-8", "return_url": site.url("/welcome") }),
    );
    let dom = dom_after(offer["link"].as_str().unwrap());
    assert!(dom.contains("{}"), "the site's page: {dom}");
    assert!(site.received().iter().any(|r| r.path == "/welcome"));
}

#[test]
fn a_message_webhook_answers_the_reply() {
    let s = setup(
        &[],
        "[apps]\nreply_budget_ms = 1500\n[rules]\ndir = \"no-rules\"\n",
    );
    let bot = receiver(&s, &[]);
    let app = s.create_app(&["bot", "--callback", &bot.url("/bot"), "--reply"]);
    bot.add_secret(&app.secret);
    // No rules at all: the app is the bot.
    std::fs::create_dir(s.dir.path().join("no-rules")).unwrap();
    let _server = s.serve();
    let (_, offer) = s.post("/api/v1/bindings", Some(&app.token), json!({ "uid": "u1" }));
    scan(&s, "o_chat", offer["qrcode"]["ticket"].as_str().unwrap());
    // The binding and the follow are delivered before the receiver's answers are scripted.
    bot.wait(WAIT, |r| r.len() == 2);

    // Within the budget: the passive reply.
    bot.script(
        "/bot",
        [Answer::Json(
            Duration::ZERO,
            json!({ "reply": { "type": "text", "content": "来自网站的回答" } }),
        )],
    );
    let conversation = say(&s, "o_chat", "你好");
    assert_eq!(
        conversation["user_saw"]["reply"]["body"]["content"],
        "来自网站的回答",
        "{conversation} {:?}",
        bot.received()
    );
    let messages = bot.events("/bot", "message");
    assert_eq!(messages.len(), 1);
    assert_eq!(messages[0].body["data"]["message"]["content"], "你好");
    assert_eq!(messages[0].body["data"]["uid"], "u1");
    assert!(
        !messages[0].body.to_string().contains("o_chat"),
        "an app never sees the OpenID: {:?}",
        messages[0].body
    );

    // Slower than the budget: nothing passive, then a customer-service message.
    bot.script(
        "/bot",
        [Answer::Json(
            Duration::from_millis(2500),
            json!({ "reply": "晚到的回答" }),
        )],
    );
    let conversation = say(&s, "o_chat", "慢一点");
    assert_eq!(
        conversation["user_saw"]["kind"], "nothing",
        "{conversation}"
    );
    let start = std::time::Instant::now();
    while s.em.received("o_chat", "custom").is_empty() && start.elapsed() < WAIT {
        std::thread::sleep(Duration::from_millis(50));
    }
    let custom = s.em.received("o_chat", "custom");
    assert_eq!(custom.len(), 1, "{custom:?}");
    assert_eq!(custom[0]["text"]["content"], "晚到的回答");

    // A WeChat retry is answered by dedup: the webhook was called once per message.
    assert_eq!(bot.events("/bot", "message").len(), 2);
}

#[test]
fn bad_input_is_refused_clearly() {
    let s = setup(&[], "");
    let app = s.create_app(&["site"]);
    // A callback that is not http(s), or is huixin itself.
    for (url, why) in [
        ("ftp://example.com/hook", "not an http(s) URL"),
        (
            &format!("http://localhost:{}/hook", s.port) as &str,
            "huixin itself",
        ),
    ] {
        let out = common::process::huixin(
            s.dir.path(),
            &["apps", "create", "bad", "--callback", url],
            &[],
        );
        assert!(!out.status.success());
        let err = common::process::stderr(&out);
        assert!(err.contains(why), "{url}: {err}");
    }
    let _server = s.serve();
    // An unknown token.
    let (code, body) = s.post(
        "/api/v1/bindings",
        Some("AT_unknownunknownunknownunknown"),
        json!({ "uid": "x" }),
    );
    assert_eq!(code, 401, "{body}");
    // A push key is not an app token.
    let admin = s.admin_key();
    let (code, body) = s.post("/api/v1/bindings", Some(&admin), json!({ "uid": "x" }));
    assert_eq!(code, 403, "{body}");
    // A uid over 64 characters, or none.
    let (code, body) = s.post(
        "/api/v1/bindings",
        Some(&app.token),
        json!({ "uid": "u".repeat(65) }),
    );
    assert_eq!(code, 400, "{body}");
    assert!(body["error"].as_str().unwrap().contains("64"));
    let (code, _) = s.post("/api/v1/bindings", Some(&app.token), json!({}));
    assert_eq!(code, 400);
    // An expired code: the scan says so, the link shows the page, nothing is bound.
    let (code, offer) = s.post(
        "/api/v1/bindings",
        Some(&app.token),
        json!({ "uid": "late", "expire_seconds": 1 }),
    );
    assert_eq!(code, 201, "{offer}");
    std::thread::sleep(Duration::from_millis(2100));
    let (code, page) = s.get(&format!("/bind/{}", offer["id"].as_str().unwrap()), None);
    assert_eq!(code, 410);
    assert!(page.contains("链接已过期"));
    let (_, list) = s.get("/api/v1/bindings", Some(&app.token));
    let list: Value = serde_json::from_str(&list).unwrap();
    assert_eq!(list["total"], 0);
}

#[test]
fn rules_see_bindings_and_fire_webhooks_through_the_outbox() {
    let s = setup(&[], "[rules]\ndir = \"rules\"\n");
    let site = receiver(&s, &[]);
    let app = s.create_app(&["crm", "--callback", &site.url("/crm")]);
    site.add_secret(&app.secret);
    let rules = s.dir.path().join("rules");
    std::fs::create_dir(&rules).unwrap();
    std::fs::write(
        rules.join("10-bind.rhai"),
        r#"
rule(#{ content: "whoami" }, |msg| {
    let b = bind_info();
    if b == () { return text("not bound"); }
    text(`${b.app}:${b.uid}:${bindings().len()}:${bind_info("crm").uid}`)
});
rule(#{ prefix: "order " }, |msg| {
    let id = webhook("crm", "order.created", #{ item: msg.content.sub_string(6), qty: 2 });
    text(`sent ${id.len()}`)
});
"#,
    )
    .unwrap();
    let _server = s.serve();
    let reply =
        |text: &str| say(&s, "o_rhai", text)["user_saw"]["reply"]["body"]["content"].clone();
    assert_eq!(reply("whoami"), "not bound");
    let (_, offer) = s.post(
        "/api/v1/bindings",
        Some(&app.token),
        json!({ "uid": "c-1" }),
    );
    scan(&s, "o_rhai", offer["qrcode"]["ticket"].as_str().unwrap());
    assert_eq!(reply("whoami"), "crm:c-1:1:c-1");
    assert_eq!(reply("order 茶叶"), "sent 32");
    let got = site.wait(WAIT, |r| r.iter().any(|r| r.event == "order.created"));
    let order = got.iter().find(|r| r.event == "order.created").unwrap();
    assert!(order.signed);
    assert_eq!(order.body["data"]["uid"], "c-1");
    assert_eq!(order.body["data"]["data"]["item"], "茶叶");
    assert_eq!(order.body["data"]["data"]["qty"], 2);
}

#[test]
fn webhooks_pending_at_a_kill_are_delivered_after_the_restart() {
    let s = setup(
        &[],
        "[apps]\nwebhook_retry_backoff_ms = 200\nwebhook_timeout_ms = 1000\n",
    );
    let site = receiver(&s, &[]);
    let app = s.create_app(&["site", "--callback", &site.url("/hook")]);
    site.add_secret(&app.secret);
    // The receiver is down (500) for a while: events pile up in the outbox.
    site.script("/hook", (0..1000).map(|_| Answer::Status(500)));
    let server = s.serve();
    let (_, offer) = s.post(
        "/api/v1/bindings",
        Some(&app.token),
        json!({ "uid": "k-1" }),
    );
    scan(&s, "o_kill", offer["qrcode"]["ticket"].as_str().unwrap());
    for i in 0..5 {
        say(&s, "o_kill", &format!("message {i}"));
    }
    site.wait(WAIT, |r| !r.is_empty());
    // kill -9 (dropping the child kills it): nothing is flushed, nothing handed back.
    drop(server);
    // The receiver recovers; a new process delivers everything, each once, in order, once
    // the dead process's leases ran out.
    site.clear_script("/hook");
    let _server = s.serve();
    let got = site.wait(Duration::from_secs(60), |r| {
        r.iter()
            .filter(|r| r.event == "message")
            .map(|r| &r.delivery)
            .collect::<std::collections::HashSet<_>>()
            .len()
            == 5
    });
    // Delivered once each after recovery: every id answered 200 exactly once.
    let messages: Vec<String> = got
        .iter()
        .filter(|r| r.event == "message")
        .map(|r| {
            r.body["data"]["message"]["content"]
                .as_str()
                .unwrap()
                .to_owned()
        })
        .collect();
    let mut firsts = Vec::new();
    for m in &messages {
        if !firsts.contains(m) {
            firsts.push(m.clone());
        }
    }
    assert_eq!(
        firsts,
        (0..5).map(|i| format!("message {i}")).collect::<Vec<_>>(),
        "in order per follower"
    );
    let (code, list) = s.get("/api/v1/webhooks/deliveries?limit=200", Some(&app.token));
    assert_eq!(code, 200, "{list}");
    let list: Value = serde_json::from_str(&list).unwrap();
    let deliveries = list["deliveries"].as_array().unwrap();
    assert_eq!(
        deliveries.len(),
        7,
        "binding, follow and five messages: {list}"
    );
    assert!(
        deliveries.iter().all(|d| d["state"] == "delivered"),
        "{list}"
    );
}

#[test]
fn a_wechat_retry_does_not_call_the_webhook_twice() {
    // WeChat gives up on an answer after 1 s and retries; the webhook takes 1.5 s to answer.
    let s = setup_emulated(
        &[],
        "[apps]\nreply_budget_ms = 2500\n[rules]\ndir = \"no-rules\"\n",
        |settings| settings.reply_timeout = Duration::from_millis(1000),
    );
    std::fs::create_dir(s.dir.path().join("no-rules")).unwrap();
    let bot = receiver(&s, &[]);
    let app = s.create_app(&["slowbot", "--callback", &bot.url("/bot"), "--reply"]);
    bot.add_secret(&app.secret);
    let _server = s.serve();
    let (_, offer) = s.post("/api/v1/bindings", Some(&app.token), json!({ "uid": "r1" }));
    scan(&s, "o_retry", offer["qrcode"]["ticket"].as_str().unwrap());
    bot.wait(WAIT, |r| r.len() == 2);
    bot.script(
        "/bot",
        [Answer::Json(
            Duration::from_millis(1500),
            json!({ "reply": "慢但只一次" }),
        )],
    );
    let conversation = say(&s, "o_retry", "hello");
    let attempts = conversation["attempts"].as_array().unwrap().len();
    assert!(attempts >= 2, "WeChat retried: {conversation}");
    assert_eq!(
        conversation["user_saw"]["reply"]["body"]["content"], "慢但只一次",
        "the retry got the first attempt's reply: {conversation}"
    );
    std::thread::sleep(Duration::from_millis(500));
    assert_eq!(
        bot.events("/bot", "message").len(),
        1,
        "one call for one message"
    );
}

#[test]
fn config_receivers_hear_every_follower_with_openids() {
    let s = setup(&[], "");
    let ops = receiver(&s, &["ops-secret-0123456789"]);
    let config = std::fs::read_to_string(s.dir.path().join("huixin.toml")).unwrap();
    std::fs::write(
        s.dir.path().join("huixin.toml"),
        format!(
            "{config}\n[[webhooks]]\nname = \"ops\"\nurl = \"{}\"\n\
             secret = \"ops-secret-0123456789\"\nevents = [\"follow\", \"message\"]\n\
             [[webhooks]]\nname = \"fates\"\nurl = \"{}\"\n\
             secret = \"ops-secret-0123456789\"\nevents = [\"push.delivered\", \"push.failed\"]\n",
            ops.url("/ops"),
            ops.url("/fates")
        ),
    )
    .unwrap();
    let admin = s.admin_key();
    let _server = s.serve();
    s.emulator_send("o_any", json!({ "type": "subscribe" }));
    say(&s, "o_any", "hi there");
    let got = ops.wait(WAIT, |r| r.len() >= 2);
    assert!(got.iter().all(|r| r.signed), "{got:?}");
    let follow = got.iter().find(|r| r.event == "follow").unwrap();
    assert_eq!(follow.body["data"]["openid"], "o_any");
    assert_eq!(follow.body["app"], Value::Null);
    let message = got.iter().find(|r| r.event == "message").unwrap();
    assert_eq!(message.body["data"]["message"]["content"], "hi there");
    assert_eq!(message.body["data"]["message"]["from"], "o_any");
    // Not subscribed to unfollow: nothing comes.
    s.emulator_send("o_any", json!({ "type": "unsubscribe" }));
    std::thread::sleep(Duration::from_millis(300));
    assert!(ops.events("/ops", "unfollow").is_empty());
    // The admin key lists the config's deliveries.
    let (code, list) = s.get("/api/v1/webhooks/deliveries?app=config", Some(&admin));
    assert_eq!(code, 200, "{list}");
    let list: Value = serde_json::from_str(&list).unwrap();
    assert_eq!(list["deliveries"].as_array().unwrap().len(), 2, "{list}");
    // A push to the follower who left fails for good: the receiver that named push.failed
    // hears it, with the OpenID.
    let (code, _) = s.post(
        "/api/v1/push",
        Some(&admin),
        json!({ "to": ["o_any"], "title": "gone" }),
    );
    assert_eq!(code, 200);
    let got = ops.wait(WAIT, |r| r.iter().any(|r| r.event == "push.failed"));
    let failed = got.iter().find(|r| r.event == "push.failed").unwrap();
    assert_eq!(failed.path, "/fates");
    assert_eq!(failed.body["data"]["openid"], "o_any");
    assert!(
        ops.events("/ops", "push.failed").is_empty(),
        "not named, not sent"
    );
}

#[test]
fn a_hanging_receiver_holds_up_nothing_and_loses_nothing() {
    let s = setup(
        &[],
        "[apps]\nwebhook_timeout_ms = 400\nwebhook_retry_backoff_ms = 100\n",
    );
    let site = receiver(&s, &[]);
    let app = s.create_app(&["stuck", "--callback", &site.url("/hook")]);
    site.add_secret(&app.secret);
    site.script("/hook", [Answer::Hang, Answer::Hang]);
    let _server = s.serve();
    let (_, offer) = s.post(
        "/api/v1/bindings",
        Some(&app.token),
        json!({ "uid": "h-1" }),
    );
    let started = std::time::Instant::now();
    let reply = scan(&s, "o_hang", offer["qrcode"]["ticket"].as_str().unwrap());
    assert!(reply.unwrap().contains("stuck"));
    assert!(
        started.elapsed() < Duration::from_millis(1500),
        "the follower's answer did not wait for the receiver"
    );
    // Two attempts time out; the third is answered: delivered once, the attempts on record.
    site.wait(WAIT, |r| {
        r.iter().filter(|r| r.event == "binding").count() >= 3
    });
    let start = std::time::Instant::now();
    let binding = loop {
        let (_, list) = s.get(
            "/api/v1/webhooks/deliveries?event=binding",
            Some(&app.token),
        );
        let list: Value = serde_json::from_str(&list).unwrap();
        let d = list["deliveries"][0].clone();
        if d["state"] == "delivered" || start.elapsed() > WAIT {
            break d;
        }
        std::thread::sleep(Duration::from_millis(50));
    };
    assert_eq!(binding["state"], "delivered", "{binding}");
    let log = binding["attempts_log"].as_array().unwrap();
    assert_eq!(log.len(), 3, "{binding}");
    assert!(
        log[0]["error"]
            .as_str()
            .unwrap_or_default()
            .contains("time"),
        "a timeout is named: {binding}"
    );
    assert_eq!(log[2]["status"], 200);
}

#[test]
fn the_apps_command_lists_changes_and_revokes() {
    let s = setup(&[], "");
    let app = s.create_app(&["one", "--callback", "https://one.example.com/hook"]);
    assert!(
        app.token.starts_with("AT_") && app.token.len() == 35,
        "{}",
        app.token
    );
    let list = s.run(&["apps"]);
    assert!(
        list.contains("one\tactive\t0 bound\thttps://one.example.com/hook (huixin)"),
        "{list}"
    );
    s.run(&[
        "apps", "set", "one", "--reply", "true", "--format", "wxpusher",
    ]);
    let shown = s.run(&["apps", "show", "one"]);
    assert!(shown.contains("replies:    true"), "{shown}");
    assert!(shown.contains("format:     wxpusher"), "{shown}");
    assert!(shown.contains(&app.secret), "{shown}");
    // A second app of the same name is refused while the first is live.
    let out = common::process::huixin(s.dir.path(), &["apps", "create", "one"], &[]);
    assert!(!out.status.success());
    assert!(common::process::stderr(&out).contains("exists"));
    let _server = s.serve();
    let (code, _) = s.post("/api/v1/bindings", Some(&app.token), json!({ "uid": "x" }));
    assert_eq!(code, 201);
    s.run(&["apps", "revoke", "one"]);
    let (code, body) = s.post("/api/v1/bindings", Some(&app.token), json!({ "uid": "x" }));
    assert_eq!(code, 401, "a revoked app's token stops at once: {body}");
    assert!(s.run(&["apps"]).contains("one\trevoked"));
    // The name is free again.
    s.create_app(&["one"]);
}

#[test]
fn binding_codes_count_against_the_tokens_rate_limit() {
    // Each code is a WeChat API call: a token makes them no faster than it may push.
    let s = setup(&[], "rate_limit_per_minute = 2\n");
    let app = s.create_app(&["busy", "--format", "wxpusher"]);
    let _server = s.serve();
    for uid in ["a", "b"] {
        let (code, body) = s.post("/api/v1/bindings", Some(&app.token), json!({ "uid": uid }));
        assert_eq!(code, 201, "{body}");
    }
    let (code, body) = s.post("/api/v1/bindings", Some(&app.token), json!({ "uid": "c" }));
    assert_eq!(code, 429, "{body}");
    let (_, answer) = s.post(
        "/api/fun/create/qrcode",
        None,
        json!({ "appToken": app.token, "extra": "x" }),
    );
    assert_eq!(answer["code"], 1001, "{answer}");
    assert!(
        answer["msg"].as_str().unwrap().contains("too many"),
        "{answer}"
    );
}
