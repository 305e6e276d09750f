//! WxPusher's API through the real binary, with the emulator as WeChat: the seed-002 story
//! (a parameter QR code with `extra`, the `app_subscribe` callback carrying it, a send to the
//! returned UID in each content type, the status query), the `send_up_cmd` callback, the
//! simple push with a follower's SPT, and WxPusher's own Python client pointed at huixin.

use crate::common;

use std::time::Duration;

use common::receiver::Receiver;
use common::setup::{Setup, setup};
use serde_json::{Value, json};

const WAIT: Duration = Duration::from_secs(10);

/// WxPusher's envelope: HTTP 200 always.
fn get_json(s: &Setup, path: &str) -> Value {
    let (code, body) = s.get(path, None);
    assert_eq!(code, 200, "{path}: {body}");
    serde_json::from_str(&body).unwrap()
}

fn assert_ok(answer: &Value) {
    assert_eq!(answer["code"], 1000, "{answer}");
    assert_eq!(answer["msg"], "处理成功", "{answer}");
    assert_eq!(answer["success"], true, "{answer}");
}

/// The app's follower through a WxPusher parameter QR code: (their uid, the code).
fn follow_through_qrcode(s: &Setup, token: &str, openid: &str, extra: &str) -> (String, String) {
    let (status, answer) = s.post(
        "/api/fun/create/qrcode",
        None,
        json!({ "appToken": token, "extra": extra, "validTime": 600 }),
    );
    assert_eq!(status, 200);
    assert_ok(&answer);
    let code = answer["data"]["code"].as_str().unwrap().to_owned();
    assert_eq!(answer["data"]["extra"], extra);
    assert!(answer["data"]["url"].as_str().unwrap().ends_with(".jpg"));
    assert!(answer["data"]["expires"].as_i64().unwrap() > 1_700_000_000_000);
    // Nobody scanned it yet.
    let before = get_json(s, &format!("/api/fun/scan-qrcode-uid?code={code}"));
    assert_eq!(before["code"], 1001, "{before}");
    // The follower scans it to follow (the emulator attaches the code's ticket).
    s.emulator_send(
        openid,
        json!({ "type": "subscribe", "scene": format!("bind:{code}") }),
    );
    let after = get_json(s, &format!("/api/fun/scan-qrcode-uid?code={code}"));
    assert_ok(&after);
    let uid = after["data"].as_str().unwrap().to_owned();
    assert!(uid.starts_with("UID_"), "{uid}");
    (uid, code)
}

#[test]
fn the_seed_story_qrcode_callback_send_and_status() {
    let s = setup(&[], "");
    let site = s.runtime.block_on(Receiver::start(&[]));
    let made = s.create_app(&["wx", "--format", "wxpusher", "--callback", &site.url("/wx")]);
    let token = made.token;
    assert!(token.starts_with("AT_"), "{token}");
    site.add_secret(&made.secret);
    let _server = s.serve();

    let (uid, code) = follow_through_qrcode(&s, &token, "o_fan", "user-9");
    let got = site.wait(WAIT, |r| {
        r.iter().any(|r| r.body["action"] == "app_subscribe")
    });
    let subscribe = got
        .iter()
        .find(|r| r.body["action"] == "app_subscribe")
        .unwrap();
    assert!(subscribe.signed);
    assert_eq!(subscribe.body["data"]["uid"], uid.as_str());
    assert_eq!(subscribe.body["data"]["extra"], "user-9");
    assert_eq!(subscribe.body["data"]["source"], "scan");
    assert_eq!(subscribe.body["data"]["appName"], "wx");
    assert!(
        !subscribe.body.to_string().contains("o_fan"),
        "never the OpenID"
    );
    // The code's image.
    let (status, _) = s.get(&format!("/api/fun/qrcode/{code}.jpg"), None);
    assert_eq!(status, 200);

    // A send in each content type, to the returned UID.
    let mut records = Vec::new();
    for (content_type, content) in [
        (1, "纯文本 *not bold*\n第二行"),
        (2, "<h1>标题</h1><p>段落</p><script>alert(1)</script>"),
        (3, "## 标题\n\n**粗体**"),
    ] {
        let (status, answer) = s.post(
            "/api/send/message",
            None,
            json!({ "appToken": token, "content": content, "contentType": content_type,
                    "uids": [uid], "topicIds": null, "summary": null, "url": null }),
        );
        assert_eq!(status, 200);
        assert_ok(&answer);
        let item = &answer["data"][0];
        assert_eq!(item["code"], 1000, "{answer}");
        assert_eq!(item["uid"], uid.as_str());
        records.push(item["sendRecordId"].as_i64().unwrap());
    }
    // The GET form.
    let answer = get_json(
        &s,
        &format!("/api/send/message/?appToken={token}&content=GET%20form&uid={uid}"),
    );
    assert_ok(&answer);
    // Delivered: four template messages, and the status says so.
    let start = std::time::Instant::now();
    while s.templates_to("o_fan").len() < 4 && start.elapsed() < WAIT {
        std::thread::sleep(Duration::from_millis(50));
    }
    assert_eq!(s.templates_to("o_fan").len(), 4);
    for record in &records {
        let start = std::time::Instant::now();
        loop {
            let status = get_json(&s, &format!("/api/send/query/status?sendRecordId={record}"));
            assert_ok(&status);
            if status["data"]["status"] == 2 || start.elapsed() > WAIT {
                assert_eq!(status["data"]["status"], 2, "{status}");
                break;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        let legacy = get_json(&s, &format!("/api/send/query/{record}"));
        assert_ok(&legacy);
        assert!(legacy["data"].is_i64(), "{legacy}");
    }

    // An unknown uid: the call succeeds, its item says why.
    let (_, answer) = s.post(
        "/api/send/message",
        None,
        json!({ "appToken": token, "content": "x", "uids": [uid, "UID_nobody"] }),
    );
    assert_ok(&answer);
    assert_eq!(answer["data"][0]["code"], 1000);
    assert_eq!(answer["data"][1]["code"], 1001);
    // A bad token.
    let (_, answer) = s.post(
        "/api/send/message",
        None,
        json!({ "appToken": "AT_wrongwrongwrongwrongwrongwrong", "content": "x", "uids": [uid] }),
    );
    assert_eq!(answer["code"], 1001);
    assert_eq!(answer["msg"], "appToken不正确");
    assert_eq!(answer["success"], false);

    // The user list, both versions.
    let v2 = get_json(
        &s,
        &format!("/api/fun/wxuser/v2?appToken={token}&page=1&pageSize=10"),
    );
    assert_ok(&v2);
    assert_eq!(v2["data"]["total"], 1);
    assert_eq!(v2["data"]["records"][0]["uid"], uid.as_str());
    let v1 = get_json(
        &s,
        &format!("/api/fun/wxuser?appToken={token}&page=1&pageSize=10"),
    );
    assert_ok(&v1);
    assert_eq!(v1["data"]["records"][0]["enable"], true);

    // What the follower writes goes to the app as send_up_cmd.
    s.emulator_send("o_fan", json!({ "type": "text", "content": "上行消息" }));
    let got = site.wait(WAIT, |r| {
        r.iter().any(|r| r.body["action"] == "send_up_cmd")
    });
    let up = got
        .iter()
        .find(|r| r.body["action"] == "send_up_cmd")
        .unwrap();
    assert_eq!(up.body["data"]["content"], "上行消息");
    assert_eq!(up.body["data"]["uid"], uid.as_str());
}

#[test]
fn simple_push_with_a_followers_spt() {
    let s = setup(&["o_me"], "");
    let key = s.run(&["keys", "create", "--user", "o_me"]);
    let _server = s.serve();
    for spt in [format!("SPT_{key}"), key.clone()] {
        let answer = get_json(&s, &format!("/api/send/message/{spt}/hello%20world"));
        assert_ok(&answer);
        assert_eq!(answer["data"][0]["code"], 1000, "{answer}");
    }
    let (_, answer) = s.post(
        "/api/send/message/simple-push",
        None,
        json!({ "content": "# 标题", "contentType": 3, "sptList": [format!("SPT_{key}")] }),
    );
    assert_ok(&answer);
    let start = std::time::Instant::now();
    while s.templates_to("o_me").len() < 3 && start.elapsed() < WAIT {
        std::thread::sleep(Duration::from_millis(50));
    }
    assert_eq!(s.templates_to("o_me").len(), 3);
    let answer = get_json(&s, "/api/send/message/SPT_wrongwrongwrongwrongwrongwrong/x");
    assert_eq!(answer["data"][0]["code"], 1001, "{answer}");
}

/// A Python that has WxPusher's client (`pip install wxpusher`): `HUIXIN_TEST_PYTHON`
/// (`.ci/run` makes one), else `python3` when it has the package. `None` (the test prints
/// that it skipped) without one, unless `HUIXIN_REQUIRE_WXPUSHER` is set.
fn python_with_wxpusher() -> Option<String> {
    let candidates = std::env::var("HUIXIN_TEST_PYTHON")
        .into_iter()
        .chain(["python3".to_owned()]);
    for python in candidates {
        let ok = std::process::Command::new(&python)
            .args(["-c", "import wxpusher"])
            .output()
            .is_ok_and(|o| o.status.success());
        if ok {
            return Some(python);
        }
    }
    assert!(
        std::env::var_os("HUIXIN_REQUIRE_WXPUSHER").is_none(),
        "HUIXIN_REQUIRE_WXPUSHER is set but no Python has the wxpusher package"
    );
    println!("SKIPPED: no Python with the wxpusher package (pip install wxpusher)");
    None
}

#[test]
fn wxpushers_own_python_client_sends_through_huixin() {
    let Some(python) = python_with_wxpusher() else {
        return;
    };
    let s = setup(&[], "");
    let token = s.create_app(&["py", "--format", "wxpusher"]).token;
    let _server = s.serve();
    let (uid, _) = follow_through_qrcode(&s, &token, "o_py", "from-python");
    let script = format!(
        r#"
import json, wxpusher.wxpusher as w
from wxpusher import WxPusher
w.BASEURL = "{base}/api"
sent = WxPusher.send_message("来自 Python 客户端", uids=["{uid}"], token="{token}")
assert sent["code"] == 1000 and sent["success"], sent
record = sent["data"][0]["messageId"]
status = WxPusher.query_message(record)
assert status["code"] == 1000, status
qr = WxPusher.create_qrcode("py-extra", 600, token="{token}")
assert qr["code"] == 1000 and qr["data"]["extra"] == "py-extra", qr
users = WxPusher.query_user(1, 10, token="{token}")
assert users["code"] == 1000 and users["data"]["records"][0]["uid"] == "{uid}", users
print(json.dumps({{"ok": True}}))
"#,
        base = s.base(),
    );
    let out = std::process::Command::new(&python)
        .args(["-c", &script])
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    let start = std::time::Instant::now();
    while s.templates_to("o_py").is_empty() && start.elapsed() < WAIT {
        std::thread::sleep(Duration::from_millis(50));
    }
    assert_eq!(s.templates_to("o_py").len(), 1);
}

#[test]
fn an_apps_topic_is_sent_to_by_its_number() {
    let s = setup(&[], "");
    let token = s.create_app(&["news-app", "--format", "wxpusher"]).token;
    s.run(&["topics", "add", "news"]);
    s.run(&["topics", "add", "elsewhere"]);
    s.run(&["apps", "topic", "news-app", "news"]);
    let listing = s.run(&["topics"]);
    let number = |name: &str| -> i64 {
        let line = listing.lines().find(|l| l.starts_with(name)).unwrap();
        line.split('\t')
            .nth(1)
            .unwrap()
            .trim_start_matches('#')
            .parse()
            .unwrap()
    };
    let (news, elsewhere) = (number("news"), number("elsewhere"));
    let _server = s.serve();
    // A follower joins the topic by scanning its QR code.
    s.emulator_send(
        "o_reader",
        json!({ "type": "subscribe", "scene": "topic:news" }),
    );
    let (_, answer) = s.post(
        "/api/send/message",
        None,
        json!({ "appToken": token, "content": "头条", "topicIds": [news, elsewhere.to_string()] }),
    );
    assert_ok(&answer);
    assert_eq!(answer["data"][0]["topicId"], news);
    assert_eq!(answer["data"][0]["code"], 1000, "{answer}");
    assert_eq!(
        answer["data"][1]["code"], 1001,
        "another app's topic: {answer}"
    );
    let start = std::time::Instant::now();
    while s.templates_to("o_reader").is_empty() && start.elapsed() < WAIT {
        std::thread::sleep(Duration::from_millis(50));
    }
    assert_eq!(s.templates_to("o_reader").len(), 1);
}
