//! The WeChat emulator: every API endpoint and error code over HTTP, the control endpoints,
//! faults, and WeChat's side of the callback against the real huixin server.

use crate::common;

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use huixin::bot::{Context, Flow, Router, filter};
use huixin::config::Config;
use huixin::emulator::{
    BotTarget, CallRecord, DEFAULT_OPENID, ERROR_NOTICE, Emulator, EmulatorError, Fault, Settings,
    UserSaw,
};
use huixin::simulator::MessageSpec;
use huixin::wechat::message::Event;
use huixin::wechat::{Message, Mode, Reply};
use serde_json::{Value, json};
use tokio::sync::oneshot;

const APP_ID: &str = "wxemulatortest0001";
const SECRET: &str = "emulator_secret_42";
const FOLLOWER: &str = "o_follower_1";
const ACCOUNT: &str = "gh_huixin_emulated";
const TEMPLATE: &str = "huixin_template_1";
const TEMPLATE_SEND: &str = "/cgi-bin/message/template/send";
const CUSTOM_SEND: &str = "/cgi-bin/message/custom/send";

// ---------------------------------------------------------------------------------------
// Helpers
// ---------------------------------------------------------------------------------------

/// A running emulator and an HTTP client for it.
struct Running {
    emu: Emulator,
    base: String,
    http: reqwest::Client,
    _stop: oneshot::Sender<()>,
}

fn settings() -> Settings {
    Settings {
        app_id: APP_ID.into(),
        app_secret: SECRET.into(),
        followers: vec![FOLLOWER.into()],
        reply_timeout: Duration::from_millis(500),
        ..Settings::default()
    }
}

async fn start(settings: Settings) -> Running {
    let emu = Emulator::new(settings);
    let bound = emu.bind("127.0.0.1:0").await.expect("emulator binds");
    let base = format!("http://{}", bound.local_addr());
    let (tx, rx) = oneshot::channel::<()>();
    tokio::spawn(bound.run(async move {
        let _ = rx.await;
    }));
    Running {
        emu,
        base,
        http: reqwest::Client::builder()
            .redirect(reqwest::redirect::Policy::none())
            .build()
            .expect("client"),
        _stop: tx,
    }
}

fn errcode(v: &Value) -> i64 {
    v["errcode"].as_i64().unwrap_or(0)
}

impl Running {
    async fn get_raw(&self, path: &str) -> reqwest::Response {
        self.http
            .get(format!("{}{path}", self.base))
            .send()
            .await
            .expect("GET")
    }

    async fn get(&self, path: &str) -> Value {
        let r = self.get_raw(path).await;
        assert_eq!(r.status(), 200, "GET {path}");
        r.json().await.expect("JSON")
    }

    async fn post_raw(&self, path: &str, body: impl Into<reqwest::Body>) -> reqwest::Response {
        self.http
            .post(format!("{}{path}", self.base))
            .header("content-type", "application/json")
            .body(body)
            .send()
            .await
            .expect("POST")
    }

    async fn post(&self, path: &str, body: Value) -> Value {
        let r = self.post_raw(path, body.to_string()).await;
        assert_eq!(r.status(), 200, "POST {path}");
        r.json().await.expect("JSON")
    }

    async fn delete(&self, path: &str) -> Value {
        let r = self
            .http
            .delete(format!("{}{path}", self.base))
            .send()
            .await
            .expect("DELETE");
        assert_eq!(r.status(), 200, "DELETE {path}");
        r.json().await.expect("JSON")
    }

    async fn classic_token(&self) -> String {
        let v = self
            .get(&format!(
                "/cgi-bin/token?grant_type=client_credential&appid={APP_ID}&secret={SECRET}"
            ))
            .await;
        v["access_token"].as_str().expect("token").to_owned()
    }

    async fn stable_token(&self, force: bool) -> Value {
        self.post(
            "/cgi-bin/stable_token",
            json!({"grant_type": "client_credential", "appid": APP_ID, "secret": SECRET, "force_refresh": force}),
        )
        .await
    }

    /// `menu/get` with `token`: 46003 (no menu) means the token was accepted.
    async fn probe(&self, token: &str) -> i64 {
        errcode(
            &self
                .get(&format!("/cgi-bin/menu/get?access_token={token}"))
                .await,
        )
    }

    async fn api_post(&self, path: &str, token: &str, body: Value) -> Value {
        self.post(&format!("{path}?access_token={token}"), body)
            .await
    }

    async fn api_get(&self, path: &str, token: &str, query: &str) -> Value {
        self.get(&format!("{path}?access_token={token}{query}"))
            .await
    }

    fn calls_to(&self, path: &str) -> Vec<CallRecord> {
        self.emu
            .calls()
            .into_iter()
            .filter(|c| c.path == path)
            .collect()
    }
}

fn template(touser: &str) -> Value {
    json!({
        "touser": touser,
        "template_id": TEMPLATE,
        "url": "https://example.com/detail/1",
        "data": {
            "title": {"value": "Build finished"},
            "summary": {"value": "all green"},
            "time": {"value": "2024-05-01 10:00"}
        }
    })
}

fn text_message(touser: &str, content: &str) -> Value {
    json!({"touser": touser, "msgtype": "text", "text": {"content": content}})
}

// ---------------------------------------------------------------------------------------
// Access tokens
// ---------------------------------------------------------------------------------------

#[tokio::test]
async fn classic_tokens_are_new_each_call_and_the_old_one_has_a_grace_window() {
    let em = start(Settings {
        token_lifetime: Duration::from_secs(7200),
        token_grace: Duration::from_secs(300),
        ..settings()
    })
    .await;
    let v = em
        .get(&format!(
            "/cgi-bin/token?grant_type=client_credential&appid={APP_ID}&secret={SECRET}"
        ))
        .await;
    assert_eq!(v["expires_in"], 7200);
    let t1 = v["access_token"].as_str().unwrap().to_owned();
    assert!(t1.len() >= 64, "{t1}");
    assert!(
        t1.bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-')
    );
    assert_eq!(em.probe(&t1).await, 46003);

    let t2 = em.classic_token().await;
    assert_ne!(t1, t2);
    // The replaced token keeps working through the grace window…
    assert_eq!(em.probe(&t1).await, 46003);
    em.emu.advance_clock(Duration::from_secs(299));
    assert_eq!(em.probe(&t1).await, 46003);
    // …and not after it.
    em.emu.advance_clock(Duration::from_secs(2));
    assert_eq!(em.probe(&t1).await, 42001);
    assert_eq!(em.probe(&t2).await, 46003);
    // The current one lives its lifetime.
    em.emu.advance_clock(Duration::from_secs(7200));
    assert_eq!(em.probe(&t2).await, 42001);
    // Tokens are never reused.
    let mut seen = std::collections::HashSet::new();
    for _ in 0..20 {
        assert!(seen.insert(em.classic_token().await));
    }
}

#[tokio::test]
async fn a_replaced_classic_token_dies_at_its_own_expiry_when_that_comes_first() {
    let em = start(Settings {
        token_lifetime: Duration::from_secs(10),
        token_grace: Duration::from_secs(300),
        ..settings()
    })
    .await;
    let t1 = em.classic_token().await;
    em.emu.advance_clock(Duration::from_secs(5));
    let t2 = em.classic_token().await;
    assert_eq!(em.probe(&t1).await, 46003);
    em.emu.advance_clock(Duration::from_secs(6));
    assert_eq!(em.probe(&t1).await, 42001);
    assert_eq!(em.probe(&t2).await, 46003);
}

#[tokio::test]
async fn classic_token_credential_errors() {
    let em = start(settings()).await;
    let ask = |q: String| {
        let em = &em;
        async move { errcode(&em.get(&format!("/cgi-bin/token?{q}")).await) }
    };
    assert_eq!(
        ask(format!(
            "grant_type=password&appid={APP_ID}&secret={SECRET}"
        ))
        .await,
        40002
    );
    assert_eq!(ask(format!("appid={APP_ID}&secret={SECRET}")).await, 40002);
    assert_eq!(
        ask(format!(
            "grant_type=client_credential&appid=wxwrong&secret={SECRET}"
        ))
        .await,
        40013
    );
    assert_eq!(
        ask(format!(
            "grant_type=client_credential&appid={APP_ID}&secret=wrong"
        ))
        .await,
        40125
    );
    assert_eq!(
        ask(format!("grant_type=client_credential&secret={SECRET}")).await,
        41002
    );
    assert_eq!(
        ask(format!("grant_type=client_credential&appid={APP_ID}")).await,
        41004
    );
    let v = em
        .get("/cgi-bin/token?grant_type=client_credential&appid=wxwrong&secret=x")
        .await;
    assert_eq!(v["errmsg"], "invalid appid");

    // Empty settings accept any credentials.
    let open = start(Settings::default()).await;
    let v = open
        .get("/cgi-bin/token?grant_type=client_credential&appid=wxany&secret=anything")
        .await;
    assert!(v["access_token"].is_string(), "{v}");
}

#[tokio::test]
async fn stable_token_is_the_same_until_it_expires() {
    let em = start(Settings {
        token_lifetime: Duration::from_secs(7200),
        ..settings()
    })
    .await;
    let a = em.stable_token(false).await;
    assert_eq!(a["expires_in"], 7200);
    em.emu.advance_clock(Duration::from_secs(100));
    let b = em.stable_token(false).await;
    assert_eq!(a["access_token"], b["access_token"]);
    assert_eq!(b["expires_in"], 7100);
    // Independent of the classic family.
    let classic = em.classic_token().await;
    assert_ne!(Value::String(classic), b["access_token"]);
    let c = em.stable_token(false).await;
    assert_eq!(a["access_token"], c["access_token"]);
    // Once expired, a new one.
    em.emu.advance_clock(Duration::from_secs(7100));
    let stale = a["access_token"].as_str().unwrap();
    assert_eq!(em.probe(stale).await, 42001);
    let d = em.stable_token(false).await;
    assert_ne!(a["access_token"], d["access_token"]);
    assert_eq!(d["expires_in"], 7200);
    assert_eq!(em.probe(d["access_token"].as_str().unwrap()).await, 46003);
}

#[tokio::test]
async fn stable_token_force_refresh_grace_and_limits() {
    let em = start(settings()).await;
    let first = em.stable_token(false).await["access_token"]
        .as_str()
        .unwrap()
        .to_owned();
    let forced = em.stable_token(true).await;
    let second = forced["access_token"].as_str().unwrap().to_owned();
    assert_ne!(first, second);
    // The old one keeps the grace window.
    assert_eq!(em.probe(&first).await, 46003);
    // Within 30 s of the previous forced refresh: 45011.
    em.emu.advance_clock(Duration::from_secs(10));
    let v = em.stable_token(true).await;
    assert_eq!(errcode(&v), 45011, "{v}");
    assert_eq!(v["errmsg"], "api minute-quota reach limit");
    // Unforced calls still answer the current token.
    assert_eq!(
        em.stable_token(false).await["access_token"],
        second.as_str()
    );
    em.emu.advance_clock(Duration::from_secs(300));
    assert_eq!(em.probe(&first).await, 42001);
    // 20 forced refreshes a day: 1 done, 19 more, then 45009.
    for i in 0..19 {
        em.emu.advance_clock(Duration::from_secs(31));
        let v = em.stable_token(true).await;
        assert!(v["access_token"].is_string(), "refresh {i}: {v}");
    }
    em.emu.advance_clock(Duration::from_secs(31));
    let v = em.stable_token(true).await;
    assert_eq!(errcode(&v), 45009, "{v}");
    assert_eq!(v["errmsg"], "reach max api daily quota limit");
    // A day later, allowed again.
    em.emu.advance_clock(Duration::from_secs(24 * 3600));
    assert!(em.stable_token(true).await["access_token"].is_string());
}

#[tokio::test]
async fn stable_token_credential_errors() {
    let em = start(settings()).await;
    let ask = |body: Value| {
        let em = &em;
        async move { errcode(&em.post("/cgi-bin/stable_token", body).await) }
    };
    assert_eq!(
        ask(json!({"grant_type": "x", "appid": APP_ID, "secret": SECRET})).await,
        40002
    );
    assert_eq!(
        ask(json!({"grant_type": "client_credential", "appid": "wxno", "secret": SECRET})).await,
        40013
    );
    assert_eq!(
        ask(json!({"grant_type": "client_credential", "appid": APP_ID, "secret": "no"})).await,
        40125
    );
    assert_eq!(
        ask(json!({"grant_type": "client_credential", "appid": APP_ID, "secret": SECRET, "force_refresh": "yes"})).await,
        47001
    );
    let r = em.post_raw("/cgi-bin/stable_token", "not json").await;
    assert_eq!(r.status(), 200);
    assert_eq!(errcode(&r.json().await.unwrap()), 47001);
}

#[tokio::test]
async fn every_api_endpoint_checks_the_access_token() {
    let em = start(settings()).await;
    let endpoints: &[(&str, &str)] = &[
        ("POST", TEMPLATE_SEND),
        ("POST", CUSTOM_SEND),
        ("GET", "/cgi-bin/template/get_all_private_template"),
        ("POST", "/cgi-bin/menu/create"),
        ("GET", "/cgi-bin/menu/get"),
        ("GET", "/cgi-bin/menu/delete"),
        ("POST", "/cgi-bin/qrcode/create"),
        ("GET", "/cgi-bin/user/info"),
        ("GET", "/cgi-bin/user/get"),
        ("POST", "/cgi-bin/media/upload"),
    ];
    let token = em.classic_token().await;
    let call = |method: &str, url: String| {
        let req = if method == "GET" {
            em.http.get(url)
        } else {
            em.http.post(url).body("{}")
        };
        async move {
            let r = req.send().await.expect("call");
            assert_eq!(r.status(), 200);
            errcode(&r.json::<Value>().await.expect("JSON"))
        }
    };
    for (method, path) in endpoints {
        let base = format!("{}{path}", em.base);
        assert_eq!(call(method, base.clone()).await, 41001, "{path} missing");
        assert_eq!(
            call(method, format!("{base}?access_token=")).await,
            41001,
            "{path} empty"
        );
        assert_eq!(
            call(method, format!("{base}?access_token=bogus_token")).await,
            40001,
            "{path} unknown"
        );
    }
    em.emu.expire_tokens();
    for (method, path) in endpoints {
        let url = format!("{}{path}?access_token={token}", em.base);
        assert_eq!(call(method, url).await, 42001, "{path} expired");
    }
    let v = em.get("/cgi-bin/menu/get?access_token=bogus").await;
    assert_eq!(
        v["errmsg"],
        "invalid credential, access_token is invalid or not latest"
    );
    let v = em.get("/cgi-bin/menu/get").await;
    assert_eq!(v["errmsg"], "access_token missing");
    let v = em
        .get(&format!("/cgi-bin/menu/get?access_token={token}"))
        .await;
    assert_eq!(v["errmsg"], "access_token expired");
}

#[tokio::test]
async fn expiring_tokens_over_http_expires_both_families() {
    let em = start(settings()).await;
    let classic = em.classic_token().await;
    let stable = em.stable_token(false).await["access_token"]
        .as_str()
        .unwrap()
        .to_owned();
    assert_eq!(
        em.post("/emulator/tokens/expire", json!({})).await["ok"],
        true
    );
    assert_eq!(em.probe(&classic).await, 42001);
    assert_eq!(em.probe(&stable).await, 42001);
    // The stable endpoint now issues a new one.
    let fresh = em.stable_token(false).await["access_token"]
        .as_str()
        .unwrap()
        .to_owned();
    assert_ne!(fresh, stable);
    assert_eq!(em.probe(&fresh).await, 46003);
}

// ---------------------------------------------------------------------------------------
// Template messages
// ---------------------------------------------------------------------------------------

#[tokio::test]
async fn template_send_delivers_and_is_recorded() {
    let em = start(settings()).await;
    let token = em.classic_token().await;
    let v = em.api_post(TEMPLATE_SEND, &token, template(FOLLOWER)).await;
    assert_eq!(errcode(&v), 0, "{v}");
    assert_eq!(v["errmsg"], "ok");
    let msgid = v["msgid"].as_u64().expect("msgid");
    assert!(msgid > 1_000_000_000, "{msgid}");
    let v2 = em.api_post(TEMPLATE_SEND, &token, template(FOLLOWER)).await;
    assert_ne!(v2["msgid"], v["msgid"]);

    let inbox = em.emu.inbox(FOLLOWER);
    assert_eq!(inbox.len(), 2);
    assert_eq!(inbox[0].kind, "template");
    assert_eq!(inbox[0].body["msgid"], msgid);
    assert_eq!(inbox[0].body["data"]["title"]["value"], "Build finished");
    assert!(inbox[0].seq < inbox[1].seq);

    let calls = em.calls_to(TEMPLATE_SEND);
    assert_eq!(calls.len(), 2);
    assert_eq!(calls[0].method, "POST");
    assert_eq!(calls[0].status, 200);
    assert_eq!(calls[0].errcode, 0);
    assert_eq!(calls[0].query["access_token"], token);
    assert_eq!(calls[0].body.as_ref().unwrap()["touser"], FOLLOWER);
    // Token calls are recorded too, their secret redacted.
    let token_calls = em.calls_to("/cgi-bin/token");
    assert_eq!(token_calls.len(), 1);
    assert_eq!(token_calls[0].query["secret"], "<redacted>");
    // The user's view over HTTP.
    let user = em.get(&format!("/emulator/users/{FOLLOWER}")).await;
    assert_eq!(user["following"], true);
    assert_eq!(user["inbox"].as_array().unwrap().len(), 2);
    assert_eq!(user["inbox"][1]["kind"], "template");
}

#[tokio::test]
async fn template_send_errors() {
    let em = start(settings()).await;
    em.emu.add_user("o_gone", false, true);
    let token = em.classic_token().await;
    let send = |body: Value| {
        let (em, token) = (&em, &token);
        async move { em.api_post(TEMPLATE_SEND, token, body).await }
    };
    let v = send(template("o_nobody")).await;
    assert_eq!(
        (errcode(&v), v["errmsg"].as_str()),
        (40003, Some("invalid openid"))
    );
    let v = send(template("o_gone")).await;
    assert_eq!(
        (errcode(&v), v["errmsg"].as_str()),
        (43004, Some("require subscribe"))
    );
    let mut body = template(FOLLOWER);
    body["template_id"] = json!("no_such_template");
    let v = send(body).await;
    assert_eq!(
        (errcode(&v), v["errmsg"].as_str()),
        (40037, Some("invalid template_id"))
    );
    for data in [
        Value::Null,
        json!("text"),
        json!([]),
        json!({"title": "not an object"}),
        json!({"title": {"color": "#000"}}),
        json!({"title": {"value": 42}}),
    ] {
        let mut body = template(FOLLOWER);
        if data.is_null() {
            body.as_object_mut().unwrap().remove("data");
        } else {
            body["data"] = data.clone();
        }
        let v = send(body).await;
        assert_eq!(errcode(&v), 47003, "data {data}: {v}");
        assert_eq!(v["errmsg"], "argument invalid");
    }
    let mut body = template(FOLLOWER);
    body["miniprogram"] = json!({"pagepath": "index"});
    assert_eq!(errcode(&send(body).await), 47003);
    let mut body = template(FOLLOWER);
    body["miniprogram"] = json!({"appid": "wxmini", "pagepath": "pages/index"});
    assert_eq!(errcode(&send(body).await), 0);
    let r = em
        .post_raw(&format!("{TEMPLATE_SEND}?access_token={token}"), "{{{")
        .await;
    assert_eq!(errcode(&r.json().await.unwrap()), 47001);
    // Nothing but the one valid send was delivered.
    assert_eq!(em.emu.inbox(FOLLOWER).len(), 1);
    assert!(em.emu.inbox("o_gone").is_empty());
}

#[tokio::test]
async fn template_client_msg_id_is_deduplicated_for_a_day() {
    let em = start(settings()).await;
    let token = em.classic_token().await;
    let mut body = template(FOLLOWER);
    body["client_msg_id"] = json!("order-1001");
    let v = em.api_post(TEMPLATE_SEND, &token, body.clone()).await;
    assert_eq!(errcode(&v), 0);
    let v = em.api_post(TEMPLATE_SEND, &token, body.clone()).await;
    assert_eq!(
        (errcode(&v), v["errmsg"].as_str()),
        (45065, Some("clientmsgid exist"))
    );
    assert_eq!(em.emu.inbox(FOLLOWER).len(), 1);
    // Another id goes through.
    let mut other = body.clone();
    other["client_msg_id"] = json!("order-1002");
    assert_eq!(errcode(&em.api_post(TEMPLATE_SEND, &token, other).await), 0);
    // After 24 h the id may be used again.
    em.emu.advance_clock(Duration::from_secs(24 * 3600 + 1));
    em.emu.expire_tokens();
    let token = em.classic_token().await;
    assert_eq!(errcode(&em.api_post(TEMPLATE_SEND, &token, body).await), 0);
    assert_eq!(em.emu.inbox(FOLLOWER).len(), 3);
}

#[tokio::test]
async fn an_after_fault_delivers_then_answers_the_error() {
    let em = start(settings()).await;
    let token = em.classic_token().await;
    em.emu.inject(Fault {
        path: TEMPLATE_SEND.into(),
        errcode: -1,
        errmsg: String::new(),
        count: 1,
        after: true,
        latency_ms: 0,
        http_status: None,
    });
    let mut body = template(FOLLOWER);
    body["client_msg_id"] = json!("retry-me");
    let v = em.api_post(TEMPLATE_SEND, &token, body.clone()).await;
    assert_eq!(
        (errcode(&v), v["errmsg"].as_str()),
        (-1, Some("system error"))
    );
    // The message went out although the caller saw an error…
    assert_eq!(em.emu.inbox(FOLLOWER).len(), 1);
    // …so a retry with the same client_msg_id is refused, and nothing is sent twice.
    let v = em.api_post(TEMPLATE_SEND, &token, body).await;
    assert_eq!(errcode(&v), 45065);
    assert_eq!(em.emu.inbox(FOLLOWER).len(), 1);
    let calls = em.calls_to(TEMPLATE_SEND);
    assert_eq!(
        calls.iter().map(|c| c.errcode).collect::<Vec<_>>(),
        [-1, 45065]
    );
}

#[tokio::test]
async fn a_before_fault_does_nothing_and_counts_down() {
    let em = start(settings()).await;
    let token = em.classic_token().await;
    em.emu.inject(Fault {
        path: TEMPLATE_SEND.into(),
        errcode: 45047,
        errmsg: "custom words".into(),
        count: 2,
        after: false,
        latency_ms: 0,
        http_status: None,
    });
    for _ in 0..2 {
        let v = em.api_post(TEMPLATE_SEND, &token, template(FOLLOWER)).await;
        assert_eq!(
            (errcode(&v), v["errmsg"].as_str()),
            (45047, Some("custom words"))
        );
    }
    assert!(em.emu.inbox(FOLLOWER).is_empty());
    assert!(em.emu.faults().is_empty());
    let v = em.api_post(TEMPLATE_SEND, &token, template(FOLLOWER)).await;
    assert_eq!(errcode(&v), 0);
    // A fault for another path does not touch this one.
    em.emu.inject(Fault {
        path: "/cgi-bin/menu/get".into(),
        errcode: -1,
        errmsg: String::new(),
        count: 1,
        after: false,
        latency_ms: 0,
        http_status: None,
    });
    let v = em.api_post(TEMPLATE_SEND, &token, template(FOLLOWER)).await;
    assert_eq!(errcode(&v), 0);
    assert_eq!(em.probe(&token).await, -1);
    assert_eq!(em.probe(&token).await, 46003);
}

#[tokio::test]
async fn http_status_faults_answer_plain_text() {
    let em = start(settings()).await;
    let token = em.classic_token().await;
    let fault: Fault = serde_json::from_value(json!({
        "path": TEMPLATE_SEND, "errcode": 0, "http_status": 502
    }))
    .unwrap();
    assert_eq!(fault.count, 1);
    assert!(!fault.after);
    em.emu.inject(fault);
    let r = em
        .post_raw(
            &format!("{TEMPLATE_SEND}?access_token={token}"),
            template(FOLLOWER).to_string(),
        )
        .await;
    assert_eq!(r.status(), 502);
    assert!(
        !r.headers()
            .get("content-type")
            .and_then(|v| v.to_str().ok())
            .unwrap_or_default()
            .contains("json")
    );
    assert!(serde_json::from_str::<Value>(&r.text().await.unwrap()).is_err());
    assert!(em.emu.inbox(FOLLOWER).is_empty());
    let calls = em.calls_to(TEMPLATE_SEND);
    assert_eq!(calls[0].status, 502);
    // An after-fault with a status: delivered, then the 5xx.
    em.emu.inject(Fault {
        path: TEMPLATE_SEND.into(),
        errcode: 0,
        errmsg: "upstream timeout".into(),
        count: 1,
        after: true,
        latency_ms: 0,
        http_status: Some(504),
    });
    let r = em
        .post_raw(
            &format!("{TEMPLATE_SEND}?access_token={token}"),
            template(FOLLOWER).to_string(),
        )
        .await;
    assert_eq!(r.status(), 504);
    assert_eq!(r.text().await.unwrap(), "upstream timeout");
    assert_eq!(em.emu.inbox(FOLLOWER).len(), 1);
}

#[tokio::test]
async fn latency_is_added_and_recorded() {
    let em = start(Settings {
        latency: Duration::from_millis(40),
        ..settings()
    })
    .await;
    let token = em.classic_token().await;
    em.emu.inject(Fault {
        path: TEMPLATE_SEND.into(),
        errcode: -1,
        errmsg: String::new(),
        count: 1,
        after: false,
        latency_ms: 120,
        http_status: None,
    });
    let v = em.api_post(TEMPLATE_SEND, &token, template(FOLLOWER)).await;
    assert_eq!(errcode(&v), -1);
    let calls = em.emu.calls();
    assert_eq!(calls.len(), 2);
    // Lower bounds only: the sleeps guarantee them.
    assert!(calls[0].elapsed_ms >= 40, "{:?}", calls[0]);
    assert!(calls[1].elapsed_ms >= 160, "{:?}", calls[1]);
    assert!(calls[0].seq < calls[1].seq);
    assert!(calls[0].at_ms <= calls[1].at_ms);
}

#[tokio::test]
async fn faults_over_http() {
    let em = start(settings()).await;
    let v = em
        .post(
            "/emulator/faults",
            json!({"path": "/cgi-bin/token", "errcode": -1, "count": 2}),
        )
        .await;
    assert_eq!(v["ok"], true);
    let list = em.get("/emulator/faults").await;
    assert_eq!(list.as_array().unwrap().len(), 1);
    assert_eq!(list[0]["count"], 2);
    assert_eq!(list[0]["after"], false);
    let v = em
        .get(&format!(
            "/cgi-bin/token?grant_type=client_credential&appid={APP_ID}&secret={SECRET}"
        ))
        .await;
    assert_eq!(errcode(&v), -1);
    assert_eq!(em.get("/emulator/faults").await[0]["count"], 1);
    em.delete("/emulator/faults").await;
    assert_eq!(em.get("/emulator/faults").await, json!([]));
    em.classic_token().await;
    for bad in [
        json!({"path": "no-slash", "errcode": 1}),
        json!({"path": "/x", "errcode": 1, "count": 0}),
        json!({"path": "/x", "errcode": 1, "http_status": 1000}),
        json!({"path": "/x"}),
        json!([1, 2]),
    ] {
        let r = em.post_raw("/emulator/faults", bad.to_string()).await;
        assert_eq!(r.status(), 400, "{bad}");
        assert!(r.json::<Value>().await.unwrap()["error"].is_string());
    }
}

// ---------------------------------------------------------------------------------------
// Customer-service messages
// ---------------------------------------------------------------------------------------

#[tokio::test]
async fn custom_send_accepts_every_message_type() {
    let em = start(settings()).await;
    let token = em.classic_token().await;
    let parts = [
        ("text", json!({"content": "hello"})),
        ("image", json!({"media_id": "MEDIA_1"})),
        ("voice", json!({"media_id": "MEDIA_2"})),
        (
            "video",
            json!({"media_id": "MEDIA_3", "thumb_media_id": "THUMB_1", "title": "t", "description": "d"}),
        ),
        (
            "music",
            json!({"title": "song", "description": "d", "musicurl": "http://m/1.mp3", "hqmusicurl": "http://m/1hq.mp3", "thumb_media_id": "THUMB_2"}),
        ),
        (
            "news",
            json!({"articles": [{"title": "A", "description": "B", "url": "https://e.com", "picurl": "https://e.com/p.jpg"}]}),
        ),
        ("mpnews", json!({"media_id": "MEDIA_4"})),
        (
            "msgmenu",
            json!({"head_content": "pick", "list": [{"id": "101", "content": "yes"}, {"id": "102", "content": "no"}], "tail_content": "thanks"}),
        ),
        (
            "miniprogrampage",
            json!({"title": "mini", "appid": "wxmini", "pagepath": "pages/index", "thumb_media_id": "THUMB_3"}),
        ),
    ];
    for (msgtype, part) in &parts {
        let mut body = json!({"touser": FOLLOWER, "msgtype": msgtype});
        body[*msgtype] = part.clone();
        let v = em.api_post(CUSTOM_SEND, &token, body).await;
        assert_eq!(v, json!({"errcode": 0, "errmsg": "ok"}), "{msgtype}");
    }
    let body = json!({"touser": FOLLOWER, "msgtype": "text", "text": {"content": "via kf"}, "customservice": {"kf_account": "kf01@gh"}});
    assert_eq!(errcode(&em.api_post(CUSTOM_SEND, &token, body).await), 0);
    let inbox = em.emu.inbox(FOLLOWER);
    assert_eq!(inbox.len(), parts.len() + 1);
    assert!(inbox.iter().all(|d| d.kind == "custom"));
    assert_eq!(inbox[5].body["msgtype"], "news");
    assert_eq!(inbox[0].body["text"]["content"], "hello");
}

#[tokio::test]
async fn custom_send_errors() {
    let em = start(settings()).await;
    let token = em.classic_token().await;
    em.emu.add_user("o_unfollowed", false, true);
    let send = |body: Value| {
        let (em, token) = (&em, &token);
        async move { em.api_post(CUSTOM_SEND, token, body).await }
    };
    let v = send(text_message("o_nobody", "hi")).await;
    assert_eq!(errcode(&v), 40003);
    let v = send(text_message("o_unfollowed", "hi")).await;
    assert_eq!(errcode(&v), 43004);
    let v = send(json!({"touser": FOLLOWER, "msgtype": "hologram", "hologram": {}})).await;
    assert_eq!(
        (errcode(&v), v["errmsg"].as_str()),
        (40008, Some("invalid message type"))
    );
    let v = send(json!({"touser": FOLLOWER, "text": {"content": "x"}})).await;
    assert_eq!(errcode(&v), 40008);
    let malformed = [
        json!({"touser": FOLLOWER, "msgtype": "text"}),
        json!({"touser": FOLLOWER, "msgtype": "text", "text": "hi"}),
        json!({"touser": FOLLOWER, "msgtype": "text", "text": {"body": "hi"}}),
        json!({"touser": FOLLOWER, "msgtype": "image", "image": {}}),
        json!({"touser": FOLLOWER, "msgtype": "video", "video": {"media_id": "M"}}),
        json!({"touser": FOLLOWER, "msgtype": "music", "music": {"title": "x"}}),
        json!({"touser": FOLLOWER, "msgtype": "news", "news": {}}),
        json!({"touser": FOLLOWER, "msgtype": "msgmenu", "msgmenu": {"list": []}}),
        json!({"touser": FOLLOWER, "msgtype": "miniprogrampage", "miniprogrampage": {"title": "t"}}),
        json!({"touser": FOLLOWER, "msgtype": "text", "text": {"content": "x"}, "customservice": "kf"}),
    ];
    for body in malformed {
        let v = send(body.clone()).await;
        assert_eq!(errcode(&v), 47001, "{body}: {v}");
        assert_eq!(v["errmsg"], "data format error");
    }
    for articles in [json!([]), json!([{"title": "a"}, {"title": "b"}])] {
        let v =
            send(json!({"touser": FOLLOWER, "msgtype": "news", "news": {"articles": articles}}))
                .await;
        assert_eq!(
            (errcode(&v), v["errmsg"].as_str()),
            (45008, Some("article size out of limit"))
        );
    }
    let r = em
        .post_raw(&format!("{CUSTOM_SEND}?access_token={token}"), "")
        .await;
    assert_eq!(errcode(&r.json().await.unwrap()), 44002);
    assert!(em.emu.inbox(FOLLOWER).is_empty());
}

#[tokio::test]
async fn custom_send_only_within_48_hours_of_the_last_interaction() {
    let em = start(settings()).await;
    let token = em.classic_token().await;
    em.emu.add_user("o_silent", true, false);
    em.emu
        .add_user_with("o_recent", true, Some(Duration::from_secs(47 * 3600)));
    em.emu
        .add_user_with("o_stale", true, Some(Duration::from_secs(49 * 3600)));
    let send = |to: &'static str| {
        let (em, token) = (&em, &token);
        async move {
            errcode(
                &em.api_post(CUSTOM_SEND, token, text_message(to, "hi"))
                    .await,
            )
        }
    };
    assert_eq!(send("o_silent").await, 45015);
    assert_eq!(send("o_stale").await, 45015);
    assert_eq!(send("o_recent").await, 0);
    assert_eq!(send(FOLLOWER).await, 0);
    // Over HTTP, with a given age.
    let user = em
        .post(
            "/emulator/users",
            json!({"openid": "o_http", "following": true, "last_interaction_ms_ago": 50u64 * 3600 * 1000}),
        )
        .await;
    assert_eq!(user["following"], true);
    assert!(user["last_interaction_ms_ago"].as_u64().unwrap() >= 50 * 3600 * 1000);
    assert_eq!(send("o_http").await, 45015);
    // Time passes: everyone falls out of the window.
    em.emu.advance_clock(Duration::from_secs(48 * 3600 + 1));
    let token = em.classic_token().await;
    let v = em
        .api_post(CUSTOM_SEND, &token, text_message(FOLLOWER, "hi"))
        .await;
    assert_eq!(
        (errcode(&v), v["errmsg"].as_str()),
        (
            45015,
            Some("response out of time limit or subscription is canceled")
        )
    );
    // A new interaction reopens it.
    em.post(
        "/emulator/users",
        json!({"openid": FOLLOWER, "following": true, "interacted": true}),
    )
    .await;
    let v = em
        .api_post(CUSTOM_SEND, &token, text_message(FOLLOWER, "hi"))
        .await;
    assert_eq!(errcode(&v), 0);
}

// ---------------------------------------------------------------------------------------
// Menu
// ---------------------------------------------------------------------------------------

#[tokio::test]
async fn menu_create_get_delete() {
    let em = start(settings()).await;
    let token = em.classic_token().await;
    assert_eq!(
        em.api_get("/cgi-bin/menu/get", &token, "").await["errmsg"],
        "menu no exist"
    );
    let menu = json!({"button": [
        {"type": "click", "name": "今日歌曲", "key": "V1001_TODAY_MUSIC"},
        {"name": "菜单", "sub_button": [
            {"type": "view", "name": "搜索", "url": "http://www.soso.com/"},
            {"type": "miniprogram", "name": "wxa", "url": "http://mp.weixin.qq.com", "appid": "wx286b93c14bbf93aa", "pagepath": "pages/lunar/index"},
            {"type": "scancode_push", "name": "扫码", "key": "rselfmenu_0_1"},
            {"type": "location_select", "name": "发送位置", "key": "rselfmenu_2_0"},
            {"type": "media_id", "name": "图片", "media_id": "MEDIA_ID1"}
        ]},
        {"type": "pic_weixin", "name": "相册", "key": "rselfmenu_1_2"}
    ]});
    let v = em
        .api_post("/cgi-bin/menu/create", &token, menu.clone())
        .await;
    assert_eq!(v, json!({"errcode": 0, "errmsg": "ok"}));
    let got = em.api_get("/cgi-bin/menu/get", &token, "").await;
    assert_eq!(got["menu"], menu);
    assert_eq!(
        em.api_get("/cgi-bin/menu/delete", &token, "").await,
        json!({"errcode": 0, "errmsg": "ok"})
    );
    assert_eq!(
        errcode(&em.api_get("/cgi-bin/menu/get", &token, "").await),
        46003
    );
}

#[tokio::test]
async fn menu_validation() {
    let em = start(settings()).await;
    let token = em.classic_token().await;
    let click = |name: &str| json!({"type": "click", "name": name, "key": "K"});
    let cases = [
        (json!({"button": []}), 40016),
        (json!({"buttons": [click("a")]}), 40016),
        (
            json!({"button": [click("a"), click("b"), click("c"), click("d")]}),
            40016,
        ),
        (
            json!({"button": [{"name": "sub", "sub_button": [click("1"), click("2"), click("3"), click("4"), click("5"), click("6")]}]}),
            40016,
        ),
        (
            json!({"button": [{"type": "teleport", "name": "x", "key": "K"}]}),
            40017,
        ),
        (json!({"button": [{"type": "click", "name": "x"}]}), 40017),
        (json!({"button": [{"type": "view", "name": "x"}]}), 40017),
        (
            json!({"button": [{"type": "miniprogram", "name": "x", "url": "http://a"}]}),
            40017,
        ),
        (json!({"button": [{"name": "x"}]}), 40017),
        (json!({"button": ["click"]}), 40017),
        (
            json!({"button": [{"name": "x", "sub_button": [{"name": "y", "sub_button": [click("z")]}]}]}),
            40017,
        ),
        (json!({"button": [click("")]}), 40018),
        (json!({"button": [click("一二三四五六")]}), 40018),
        (json!({"button": [{"type": "click", "key": "K"}]}), 40018),
        (
            json!({"button": [{"name": "x", "sub_button": [click(&"很".repeat(21))]}]}),
            40018,
        ),
    ];
    for (menu, code) in cases {
        let v = em
            .api_post("/cgi-bin/menu/create", &token, menu.clone())
            .await;
        assert_eq!(errcode(&v), code, "{menu}: {v}");
    }
    let v = em
        .api_post(
            "/cgi-bin/menu/create",
            &token,
            json!({"button": [click("x")]}),
        )
        .await;
    assert_eq!(v["errmsg"], "ok");
    // A sub-button name may be longer than a top-level one.
    let v = em
        .api_post(
            "/cgi-bin/menu/create",
            &token,
            json!({"button": [{"name": "x", "sub_button": [click(&"很".repeat(20))]}]}),
        )
        .await;
    assert_eq!(errcode(&v), 0);
    let v = em
        .api_post(
            "/cgi-bin/menu/create",
            &token,
            json!({"button": [click("一二三四五六")]}),
        )
        .await;
    assert_eq!(v["errmsg"], "invalid button name size");
}

// ---------------------------------------------------------------------------------------
// QR codes
// ---------------------------------------------------------------------------------------

#[tokio::test]
async fn qrcodes_of_every_kind_and_their_images() {
    let em = start(settings()).await;
    let token = em.classic_token().await;
    let create = |body: Value| {
        let (em, token) = (&em, &token);
        async move { em.api_post("/cgi-bin/qrcode/create", token, body).await }
    };
    let temp = create(json!({"expire_seconds": 600, "action_name": "QR_SCENE", "action_info": {"scene": {"scene_id": 123}}})).await;
    assert_eq!(temp["expire_seconds"], 600);
    assert!(temp["ticket"].as_str().unwrap().len() > 20);
    assert!(
        temp["url"]
            .as_str()
            .unwrap()
            .starts_with("http://weixin.qq.com/q/")
    );
    let default = create(
        json!({"action_name": "QR_STR_SCENE", "action_info": {"scene": {"scene_str": "promo"}}}),
    )
    .await;
    assert_eq!(default["expire_seconds"], 30);
    let capped = create(json!({"expire_seconds": 9_999_999, "action_name": "QR_SCENE", "action_info": {"scene": {"scene_id": 7}}})).await;
    assert_eq!(capped["expire_seconds"], 2_592_000);
    let permanent = create(
        json!({"action_name": "QR_LIMIT_SCENE", "action_info": {"scene": {"scene_id": 100000}}}),
    )
    .await;
    assert!(permanent["ticket"].is_string());
    assert!(permanent.get("expire_seconds").is_none(), "{permanent}");
    let permanent_str = create(json!({"action_name": "QR_LIMIT_STR_SCENE", "action_info": {"scene": {"scene_str": "x".repeat(64)}}})).await;
    assert!(permanent_str["ticket"].is_string());
    assert_ne!(permanent["ticket"], permanent_str["ticket"]);

    for bad in [
        json!({"action_name": "QR_LIMIT_SCENE", "action_info": {"scene": {"scene_id": 100001}}}),
        json!({"action_name": "QR_LIMIT_SCENE", "action_info": {"scene": {"scene_id": 0}}}),
        json!({"action_name": "QR_SCENE", "action_info": {"scene": {"scene_id": -5}}}),
        json!({"action_name": "QR_SCENE", "action_info": {"scene": {"scene_str": "abc"}}}),
        json!({"action_name": "QR_STR_SCENE", "action_info": {"scene": {"scene_str": ""}}}),
        json!({"action_name": "QR_LIMIT_STR_SCENE", "action_info": {"scene": {"scene_str": "x".repeat(65)}}}),
        json!({"action_name": "QR_FANCY", "action_info": {"scene": {"scene_id": 1}}}),
        json!({"action_name": "QR_SCENE"}),
        json!({"action_name": "QR_SCENE", "expire_seconds": 0, "action_info": {"scene": {"scene_id": 1}}}),
        json!({"action_name": "QR_SCENE", "expire_seconds": "long", "action_info": {"scene": {"scene_id": 1}}}),
    ] {
        let v = create(bad.clone()).await;
        assert_eq!(errcode(&v), 40053, "{bad}: {v}");
        assert_eq!(v["errmsg"], "invalid action info");
    }

    // Every ticket resolves to a PNG.
    for ticket in [&temp, &default, &permanent, &permanent_str] {
        let t = ticket["ticket"].as_str().unwrap();
        let r = em
            .http
            .get(format!("{}/cgi-bin/showqrcode", em.base))
            .query(&[("ticket", t)])
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 200);
        assert_eq!(r.headers()["content-type"], "image/png");
        let png = r.bytes().await.unwrap();
        assert_eq!(&png[..8], b"\x89PNG\r\n\x1a\n");
        assert_eq!(&png[12..16], b"IHDR");
        assert_eq!(&png[png.len() - 8..png.len() - 4], b"IEND");
    }
    let r = em.get_raw("/cgi-bin/showqrcode?ticket=gQnope").await;
    assert_eq!(r.status(), 404);
    let r = em.get_raw("/cgi-bin/showqrcode").await;
    assert_eq!(r.status(), 404);
    // A temporary code expires; a permanent one does not.
    em.emu.advance_clock(Duration::from_secs(31));
    let t = default["ticket"].as_str().unwrap();
    assert_eq!(
        em.get_raw(&format!("/cgi-bin/showqrcode?ticket={t}"))
            .await
            .status(),
        404
    );
    let t = permanent["ticket"].as_str().unwrap();
    assert_eq!(
        em.get_raw(&format!("/cgi-bin/showqrcode?ticket={t}"))
            .await
            .status(),
        200
    );
}

// ---------------------------------------------------------------------------------------
// Users
// ---------------------------------------------------------------------------------------

#[tokio::test]
async fn user_info_for_followers_others_and_strangers() {
    let em = start(settings()).await;
    let token = em.classic_token().await;
    em.emu.add_user("o_left", false, false);
    let v = em
        .api_get(
            "/cgi-bin/user/info",
            &token,
            &format!("&openid={FOLLOWER}&lang=zh_CN"),
        )
        .await;
    assert_eq!(v["subscribe"], 1);
    assert_eq!(v["openid"], FOLLOWER);
    assert_eq!(v["language"], "zh_CN");
    assert!(v["subscribe_time"].as_u64().unwrap() > 1_600_000_000);
    assert_eq!(v["remark"], "");
    assert_eq!(v["groupid"], 0);
    assert_eq!(v["tagid_list"], json!([]));
    assert_eq!(v["subscribe_scene"], "ADD_SCENE_QR_CODE");
    assert_eq!(v["qr_scene"], 0);
    assert_eq!(v["qr_scene_str"], "");
    let v = em
        .api_get("/cgi-bin/user/info", &token, "&openid=o_left")
        .await;
    assert_eq!(v, json!({"subscribe": 0, "openid": "o_left"}));
    let v = em
        .api_get("/cgi-bin/user/info", &token, "&openid=o_stranger")
        .await;
    assert_eq!(errcode(&v), 40003);
    let v = em.api_get("/cgi-bin/user/info", &token, "").await;
    assert_eq!(errcode(&v), 41009);
}

#[tokio::test]
async fn user_list_pages_by_ten_thousand_in_a_stable_order() {
    let em = start(settings()).await;
    let token = em.classic_token().await;
    for i in 0..10_005 {
        em.emu.add_user(&format!("o_user_{i:05}"), true, false);
    }
    em.emu.add_user("o_user_00003", false, false);
    let first = em.api_get("/cgi-bin/user/get", &token, "").await;
    assert_eq!(first["total"], 10_005);
    assert_eq!(first["count"], 10_000);
    let ids = first["data"]["openid"].as_array().unwrap();
    assert_eq!(ids.len(), 10_000);
    assert_eq!(ids[0], FOLLOWER);
    assert_eq!(ids[1], "o_user_00000");
    assert!(!ids.contains(&json!("o_user_00003")));
    let next = first["next_openid"].as_str().unwrap();
    assert_eq!(next, ids[9_999].as_str().unwrap());
    let again = em.api_get("/cgi-bin/user/get", &token, "").await;
    assert_eq!(again, first);
    let second = em
        .api_get("/cgi-bin/user/get", &token, &format!("&next_openid={next}"))
        .await;
    assert_eq!(second["total"], 10_005);
    assert_eq!(second["count"], 5);
    assert_eq!(second["data"]["openid"][4], "o_user_10004");
    let last = second["next_openid"].as_str().unwrap();
    assert_eq!(last, "o_user_10004");
    let end = em
        .api_get("/cgi-bin/user/get", &token, &format!("&next_openid={last}"))
        .await;
    assert_eq!(end["count"], 0);
    assert_eq!(end["next_openid"], "");
    let v = em
        .api_get("/cgi-bin/user/get", &token, "&next_openid=o_never_seen")
        .await;
    assert_eq!(errcode(&v), 40003);
}

// ---------------------------------------------------------------------------------------
// Media
// ---------------------------------------------------------------------------------------

async fn upload(em: &Running, token: &str, media_type: &str, field: &str, size: usize) -> Value {
    let form = reqwest::multipart::Form::new().part(
        field.to_owned(),
        reqwest::multipart::Part::bytes(vec![7u8; size]).file_name("file.bin"),
    );
    let r = em
        .http
        .post(format!(
            "{}/cgi-bin/media/upload?access_token={token}&type={media_type}",
            em.base
        ))
        .multipart(form)
        .send()
        .await
        .expect("upload");
    assert_eq!(r.status(), 200);
    r.json().await.expect("JSON")
}

#[tokio::test]
async fn media_upload_and_its_limits() {
    const MB: usize = 1024 * 1024;
    let em = start(settings()).await;
    let token = em.classic_token().await;
    let v = upload(&em, &token, "image", "media", 1024).await;
    assert_eq!(v["type"], "image");
    assert!(v["media_id"].as_str().unwrap().len() >= 32);
    assert!(v["created_at"].as_u64().unwrap() > 1_600_000_000);
    let again = upload(&em, &token, "image", "media", 1024).await;
    assert_ne!(again["media_id"], v["media_id"]);
    let thumb = upload(&em, &token, "thumb", "media", 64 * 1024).await;
    assert_eq!(thumb["type"], "thumb");
    assert_eq!(thumb["thumb_media_id"], thumb["media_id"]);
    assert_eq!(
        errcode(&upload(&em, &token, "voice", "media", 2 * MB).await),
        0
    );
    assert_eq!(
        errcode(&upload(&em, &token, "video", "media", 10 * MB).await),
        0
    );

    for (media_type, size) in [
        ("thumb", 64 * 1024 + 1),
        ("voice", 2 * MB + 1),
        ("image", 10 * MB + 1),
        ("video", 10 * MB + 1),
        ("image", 12 * MB),
    ] {
        let v = upload(&em, &token, media_type, "media", size).await;
        assert_eq!(errcode(&v), 40006, "{media_type} {size}");
        assert_eq!(v["errmsg"], "invalid meida size");
    }
    let v = upload(&em, &token, "gif", "media", 10).await;
    assert_eq!(
        (errcode(&v), v["errmsg"].as_str()),
        (40004, Some("invalid media type"))
    );
    let v = upload(&em, &token, "image", "file", 10).await;
    assert_eq!(
        (errcode(&v), v["errmsg"].as_str()),
        (41005, Some("media data missing"))
    );
    let v = upload(&em, &token, "image", "media", 0).await;
    assert_eq!(errcode(&v), 41005);
    let r = em
        .post_raw(
            &format!("/cgi-bin/media/upload?access_token={token}&type=image"),
            "not multipart",
        )
        .await;
    assert_eq!(errcode(&r.json().await.unwrap()), 41005);
    assert_eq!(em.get("/emulator").await["media"], 5);
}

// ---------------------------------------------------------------------------------------
// Templates
// ---------------------------------------------------------------------------------------

#[tokio::test]
async fn template_list_and_added_templates() {
    let em = start(settings()).await;
    let token = em.classic_token().await;
    let v = em
        .api_get("/cgi-bin/template/get_all_private_template", &token, "")
        .await;
    assert_eq!(
        v,
        json!({"template_list": [{
            "template_id": "huixin_template_1",
            "title": "huixin notice",
            "primary_industry": "IT",
            "deputy_industry": "Internet",
            "content": "{{title.DATA}}\n{{summary.DATA}}\n{{time.DATA}}",
            "example": ""
        }]})
    );
    let added = em
        .post(
            "/emulator/templates",
            json!({"template_id": "alarm_2", "title": "alarm", "content": "{{what.DATA}}"}),
        )
        .await;
    assert_eq!(added["template_id"], "alarm_2");
    assert_eq!(added["example"], "");
    let generated = em
        .post("/emulator/templates", json!({"title": "generated"}))
        .await;
    assert!(generated["template_id"].is_string());
    let v = em
        .api_get("/cgi-bin/template/get_all_private_template", &token, "")
        .await;
    assert_eq!(v["template_list"].as_array().unwrap().len(), 3);
    let mut body = template(FOLLOWER);
    body["template_id"] = json!("alarm_2");
    body["data"] = json!({"what": {"value": "disk full"}});
    assert_eq!(errcode(&em.api_post(TEMPLATE_SEND, &token, body).await), 0);
    let r = em.post_raw("/emulator/templates", "[]").await;
    assert_eq!(r.status(), 400);
    let r = em
        .post_raw("/emulator/templates", json!({"template_id": 5}).to_string())
        .await;
    assert_eq!(r.status(), 400);
}

// ---------------------------------------------------------------------------------------
// Web authorization
// ---------------------------------------------------------------------------------------

fn authorize_path(scope: &str, extra: &str) -> String {
    format!(
        "/connect/oauth2/authorize?appid={APP_ID}&redirect_uri=https%3A%2F%2Fshop.example.com%2Fcb%3Fx%3D1&response_type=code&scope={scope}&state=st42{extra}"
    )
}

async fn authorize(em: &Running, scope: &str, extra: &str) -> reqwest::Url {
    let r = em.get_raw(&authorize_path(scope, extra)).await;
    assert_eq!(r.status(), 302);
    let location = r.headers()["location"].to_str().unwrap().to_owned();
    reqwest::Url::parse(&location).expect("redirect URL")
}

fn code_of(url: &reqwest::Url) -> String {
    url.query_pairs()
        .find(|(k, _)| k == "code")
        .map(|(_, v)| v.into_owned())
        .expect("code")
}

async fn exchange(em: &Running, code: &str) -> Value {
    em.get(&format!(
        "/sns/oauth2/access_token?appid={APP_ID}&secret={SECRET}&code={code}&grant_type=authorization_code"
    ))
    .await
}

#[tokio::test]
async fn oauth_authorize_exchange_and_userinfo() {
    let em = start(settings()).await;
    let url = authorize(&em, "snsapi_userinfo", "").await;
    assert_eq!(url.host_str(), Some("shop.example.com"));
    assert_eq!(url.path(), "/cb");
    let pairs: Vec<(String, String)> = url.query_pairs().into_owned().collect();
    assert!(pairs.contains(&("x".into(), "1".into())));
    assert!(pairs.contains(&("state".into(), "st42".into())));
    let code = code_of(&url);

    let v = exchange(&em, &code).await;
    assert_eq!(v["openid"], FOLLOWER);
    assert_eq!(v["scope"], "snsapi_userinfo");
    assert_eq!(v["expires_in"], 7200);
    assert!(v["refresh_token"].is_string());
    let web_token = v["access_token"].as_str().unwrap().to_owned();

    let again = exchange(&em, &code).await;
    assert_eq!(
        (errcode(&again), again["errmsg"].as_str()),
        (40163, Some("code been used"))
    );
    let unknown = exchange(&em, "nope").await;
    assert_eq!(
        (errcode(&unknown), unknown["errmsg"].as_str()),
        (40029, Some("invalid code"))
    );

    let info = em
        .get(&format!(
            "/sns/userinfo?access_token={web_token}&openid={FOLLOWER}&lang=zh_CN"
        ))
        .await;
    assert_eq!(info["openid"], FOLLOWER);
    assert!(info["nickname"].is_string());
    assert_eq!(info["sex"], 0);
    for key in ["province", "city", "country", "headimgurl"] {
        assert!(info[key].is_string(), "{key}");
    }
    assert_eq!(info["privilege"], json!([]));
    let v = em
        .get(&format!(
            "/sns/userinfo?access_token={web_token}&openid=o_other"
        ))
        .await;
    assert_eq!(errcode(&v), 40003);
    let v = em
        .get(&format!(
            "/sns/userinfo?access_token=unknown&openid={FOLLOWER}"
        ))
        .await;
    assert_eq!(errcode(&v), 40001);
    // A web token is not an API token.
    assert_eq!(em.probe(&web_token).await, 40001);
}

#[tokio::test]
async fn oauth_base_scope_other_users_and_errors() {
    let em = start(settings()).await;
    let url = authorize(&em, "snsapi_base", "&openid=o_visitor").await;
    let v = exchange(&em, &code_of(&url)).await;
    assert_eq!(v["openid"], "o_visitor");
    assert_eq!(v["scope"], "snsapi_base");
    let token = v["access_token"].as_str().unwrap();
    let v = em
        .get(&format!(
            "/sns/userinfo?access_token={token}&openid=o_visitor"
        ))
        .await;
    assert_eq!(
        (errcode(&v), v["errmsg"].as_str()),
        (48001, Some("api unauthorized"))
    );

    // Codes for tests, without the redirect.
    let v = em
        .post(
            "/emulator/oauth/code",
            json!({"openid": "o_direct", "scope": "snsapi_userinfo"}),
        )
        .await;
    let v = exchange(&em, v["code"].as_str().unwrap()).await;
    assert_eq!(v["openid"], "o_direct");
    let r = em
        .post_raw(
            "/emulator/oauth/code",
            json!({"openid": "o_x", "scope": "snsapi_all"}).to_string(),
        )
        .await;
    assert_eq!(r.status(), 400);

    // Codes expire after 5 minutes.
    let code = em.emu.oauth_code("o_late", "snsapi_base").unwrap();
    em.emu.advance_clock(Duration::from_secs(301));
    assert_eq!(errcode(&exchange(&em, &code).await), 40029);

    // Exchange errors.
    let code = em.emu.oauth_code("o_y", "snsapi_base").unwrap();
    let v = em
        .get(&format!(
            "/sns/oauth2/access_token?appid={APP_ID}&secret=wrong&code={code}&grant_type=authorization_code"
        ))
        .await;
    assert_eq!(errcode(&v), 40125);
    let v = em
        .get(&format!(
            "/sns/oauth2/access_token?appid={APP_ID}&secret={SECRET}&code={code}&grant_type=client_credential"
        ))
        .await;
    assert_eq!(errcode(&v), 40002);
    let v = em
        .get(&format!(
            "/sns/oauth2/access_token?appid={APP_ID}&secret={SECRET}&grant_type=authorization_code"
        ))
        .await;
    assert_eq!(errcode(&v), 41008);
    // The failed attempts did not use the code up.
    assert_eq!(exchange(&em, &code).await["openid"], "o_y");

    // Authorize errors are JSON, not redirects.
    for (path, code) in [
        (
            authorize_path("snsapi_base", "").replace(APP_ID, "wxwrong"),
            40013,
        ),
        (authorize_path("snsapi_everything", ""), 10005),
        (
            authorize_path("snsapi_base", "").replace("response_type=code", "response_type=token"),
            40097,
        ),
        (
            authorize_path("snsapi_base", "").replace("https%3A%2F%2Fshop", "ftp%3A%2F%2Fshop"),
            10003,
        ),
    ] {
        let r = em.get_raw(&path).await;
        assert_eq!(r.status(), 200, "{path}");
        assert_eq!(errcode(&r.json().await.unwrap()), code, "{path}");
    }
    // No follower to default to.
    let empty = start(Settings {
        followers: Vec::new(),
        ..settings()
    })
    .await;
    let r = empty.get_raw(&authorize_path("snsapi_base", "")).await;
    assert_eq!(errcode(&r.json().await.unwrap()), 40003);
}

// ---------------------------------------------------------------------------------------
// Control endpoints and robustness
// ---------------------------------------------------------------------------------------

#[tokio::test]
async fn control_endpoints() {
    let em = start(settings()).await;
    let summary = em.get("/emulator").await;
    assert_eq!(summary["app_id"], APP_ID);
    assert_eq!(summary["bot"], Value::Null);
    assert_eq!(summary["followers"], 1);
    assert_eq!(summary["templates"], 1);
    let token = em.classic_token().await;
    em.probe(&token).await;
    em.probe("bogus").await;
    let all = em.get("/emulator/calls").await;
    assert_eq!(all.as_array().unwrap().len(), 3);
    let menu = em.get("/emulator/calls?path=/cgi-bin/menu/get").await;
    let menu = menu.as_array().unwrap();
    assert_eq!(menu.len(), 2);
    assert_eq!(menu[0]["errcode"], 46003);
    assert_eq!(menu[1]["errcode"], 40001);
    assert_eq!(menu[1]["method"], "GET");
    let record: CallRecord = serde_json::from_value(menu[1].clone()).unwrap();
    assert_eq!(record.query["access_token"], "bogus");
    // Control calls are not recorded.
    assert_eq!(em.get("/emulator/calls").await.as_array().unwrap().len(), 3);
    em.delete("/emulator/calls").await;
    assert_eq!(em.get("/emulator/calls").await, json!([]));
    assert!(em.emu.calls().is_empty());

    let v = em
        .post(
            "/emulator/users",
            json!({"openid": "o_new", "following": false, "interacted": false}),
        )
        .await;
    assert_eq!(v["following"], false);
    assert_eq!(v["last_interaction_ms_ago"], Value::Null);
    let v = em.get("/emulator/users/o_new").await;
    assert_eq!(v["openid"], "o_new");
    assert_eq!(v["inbox"], json!([]));
    let r = em.get_raw("/emulator/users/o_missing").await;
    assert_eq!(r.status(), 404);
    assert!(r.json::<Value>().await.unwrap()["error"].is_string());

    let v = em
        .post("/emulator/clock", json!({"advance_ms": 3_600_000}))
        .await;
    assert!(v["clock_unix_ms"].as_u64().unwrap() > summary["clock_unix_ms"].as_u64().unwrap());
    // Unknown API paths are recorded 404s.
    let r = em.get_raw("/cgi-bin/does/not/exist").await;
    assert_eq!(r.status(), 404);
    assert_eq!(errcode(&r.json().await.unwrap()), 40066);
    assert_eq!(em.calls_to("/cgi-bin/does/not/exist").len(), 1);
}

#[tokio::test]
async fn nothing_a_caller_sends_causes_a_server_error() {
    let em = start(settings()).await;
    let token = em.classic_token().await;
    let paths = [
        "/cgi-bin/token",
        "/cgi-bin/stable_token",
        TEMPLATE_SEND,
        CUSTOM_SEND,
        "/cgi-bin/template/get_all_private_template",
        "/cgi-bin/menu/create",
        "/cgi-bin/menu/get",
        "/cgi-bin/menu/delete",
        "/cgi-bin/qrcode/create",
        "/cgi-bin/showqrcode",
        "/cgi-bin/user/info",
        "/cgi-bin/user/get",
        "/cgi-bin/media/upload",
        "/connect/oauth2/authorize",
        "/sns/oauth2/access_token",
        "/sns/userinfo",
        "/emulator",
        "/emulator/calls",
        "/emulator/faults",
        "/emulator/tokens/expire",
        "/emulator/clock",
        "/emulator/users",
        "/emulator/users/%FF%FE",
        "/emulator/templates",
        "/emulator/oauth/code",
        "/emulator/send",
    ];
    let bodies: Vec<Vec<u8>> = vec![
        Vec::new(),
        b"{".to_vec(),
        b"null".to_vec(),
        b"[1,2,3]".to_vec(),
        b"\xff\xfe\x00garbage".to_vec(),
        json!({"touser": FOLLOWER, "msgtype": "text", "text": {"content": 1e300}, "button": [[[[]]]], "data": {"a": {"value": {"nested": true}}}, "action_name": "QR_SCENE", "action_info": {"scene": {"scene_id": u64::MAX}}, "expire_seconds": -1, "type": "text", "openid": "", "path": "/x", "errcode": "x"}).to_string().into_bytes(),
        "a".repeat(2 * 1024 * 1024).into_bytes(),
    ];
    let queries = [
        String::new(),
        format!("?access_token={token}&openid=%00&next_openid=%FF&type=%zz&lang=xx"),
        format!(
            "?access_token={token}&ticket=&code=&from=&path=&appid=&redirect_uri=javascript:alert(1)"
        ),
    ];
    for path in paths {
        for query in &queries {
            for method in ["GET", "POST", "DELETE", "PUT"] {
                for body in &bodies {
                    let method = reqwest::Method::from_bytes(method.as_bytes()).unwrap();
                    let r = em
                        .http
                        .request(method.clone(), format!("{}{path}{query}", em.base))
                        .header("content-type", "application/json")
                        .body(body.clone())
                        .send()
                        .await
                        .expect("answered");
                    assert!(
                        r.status().as_u16() < 500,
                        "{method} {path}{query} with {} bytes: {}",
                        body.len(),
                        r.status()
                    );
                }
            }
        }
    }
    // And it still works.
    assert_eq!(em.probe(&em.classic_token().await).await, 46003);
}

#[test]
fn settings_from_config() {
    let config = Config::from_toml(
        r#"
[server]
listen = "0.0.0.0:8081"
path = "/wx"

[wechat]
token = "configuredToken1"
app_id = "wxconfigured"
app_secret = "shh"
encoding_aes_key = "kWxPEV2UEDyxWpmPdKC3F4dgPDmOvfKX1HGnEUDS1aR"
mode = "safe"

[emulator]
token_lifetime_secs = 60
token_grace_secs = 5
latency_ms = 7
reply_timeout_ms = 1234
followers = ["o_a", "o_b"]
"#,
    )
    .unwrap();
    let s = Settings::from_config(&config, None);
    assert_eq!(s.app_id, "wxconfigured");
    assert_eq!(s.app_secret, "shh");
    assert_eq!(s.token_lifetime, Duration::from_secs(60));
    assert_eq!(s.token_grace, Duration::from_secs(5));
    assert_eq!(s.latency, Duration::from_millis(7));
    assert_eq!(s.reply_timeout, Duration::from_millis(1234));
    assert_eq!(s.followers, ["o_a", "o_b", DEFAULT_OPENID]);
    let bot = s.bot.as_ref().expect("bot");
    assert_eq!(bot.callback_url, "http://127.0.0.1:8081/wx");
    assert_eq!(bot.token, "configuredToken1");
    assert_eq!(bot.mode, Mode::Safe);
    assert_eq!(bot.app_id, "wxconfigured");
    assert_eq!(bot.account_id, "gh_huixin_emulated");
    assert!(!format!("{s:?}").contains("shh"));
    assert!(!format!("{s:?}").contains("configuredToken1"));

    let s = Settings::from_config(&config, Some("generatedToken9".into()));
    assert_eq!(s.bot.unwrap().token, "generatedToken9");

    let config = Config::from_toml("[server]\nlisten = \"127.0.0.1:0\"").unwrap();
    let s = Settings::from_config(&config, None);
    assert!(s.bot.is_none());
    assert_eq!(s.followers, [DEFAULT_OPENID]);

    let config = Config::from_toml(
        "[server]\nlisten = \"127.0.0.1:0\"\n[emulator]\ncallback_url = \"http://bot.local:9000/hook\"",
    )
    .unwrap();
    let s = Settings::from_config(&config, None);
    assert_eq!(s.bot.unwrap().callback_url, "http://bot.local:9000/hook");

    let config = Config::from_toml("[server]\nlisten = \"10.0.0.5:8080\"").unwrap();
    let s = Settings::from_config(&config, None);
    assert_eq!(s.bot.unwrap().callback_url, "http://10.0.0.5:8080/wechat");
}

#[tokio::test]
async fn the_configured_push_template_exists_without_registering_it() {
    // The README's path: one config for the emulator and huixin, `[push] template_id` set.
    let config = Config::from_toml(&format!(
        "[server]\nlisten = \"127.0.0.1:0\"\n\
         [wechat]\napp_id = \"{APP_ID}\"\napp_secret = \"{SECRET}\"\n\
         [push]\ntemplate_id = \"TEMPLATE_ID\"\n"
    ))
    .unwrap();
    let em = start(Settings::from_config(&config, None)).await;
    let token = em.classic_token().await;
    let mut body = template(DEFAULT_OPENID);
    body["template_id"] = json!("TEMPLATE_ID");
    let v = em.api_post(TEMPLATE_SEND, &token, body).await;
    assert_eq!(errcode(&v), 0, "{v}");
    assert!(v["msgid"].is_u64(), "{v}");
    // The built-in template is still there, beside it.
    assert_eq!(template_ids(&em).await, [TEMPLATE, "TEMPLATE_ID"]);

    // Without a template configured, only the built-in one.
    let config = Config::from_toml(&format!(
        "[server]\nlisten = \"127.0.0.1:0\"\n\
         [wechat]\napp_id = \"{APP_ID}\"\napp_secret = \"{SECRET}\"\n"
    ))
    .unwrap();
    let em = start(Settings::from_config(&config, None)).await;
    assert_eq!(template_ids(&em).await, [TEMPLATE]);
}

/// The ids of `get_all_private_template`, in order.
async fn template_ids(em: &Running) -> Vec<String> {
    let token = em.classic_token().await;
    let v = em
        .api_get("/cgi-bin/template/get_all_private_template", &token, "")
        .await;
    v["template_list"]
        .as_array()
        .expect("template_list")
        .iter()
        .filter_map(|t| t["template_id"].as_str().map(str::to_owned))
        .collect()
}

// ---------------------------------------------------------------------------------------
// Playing WeChat toward the real huixin server
// ---------------------------------------------------------------------------------------

/// What the bot received.
type Seen = Arc<Mutex<Vec<Message>>>;

/// A bot that records every message and answers by content: `slow` sleeps past the reply
/// timeout, `slow once` only the first time, `quiet` answers `success`, other texts are
/// echoed, anything else is named.
fn bot_router(seen: Seen) -> Router {
    let first = Arc::new(AtomicBool::new(true));
    Router::new()
        .route(filter::any(), move |ctx: Context| {
            let seen = seen.clone();
            async move {
                seen.lock().unwrap().push((*ctx.message).clone());
                Flow::Next
            }
        })
        .route(filter::content("slow"), |_ctx: Context| async {
            tokio::time::sleep(Duration::from_millis(2_000)).await;
            Reply::text("too late")
        })
        .route(filter::content("slow once"), move |_ctx: Context| {
            let first = first.clone();
            async move {
                if first.swap(false, Ordering::SeqCst) {
                    tokio::time::sleep(Duration::from_millis(2_000)).await;
                }
                Reply::text("made it")
            }
        })
        .route(filter::content("quiet"), |_ctx: Context| async {
            Reply::Success
        })
        .route(filter::text(), |ctx: Context| async move {
            Reply::text(format!(
                "echo: {}",
                ctx.message.content().unwrap_or_default()
            ))
        })
        .route(filter::any(), |ctx: Context| async move {
            let name = ctx.message.event_name().unwrap_or_default().to_owned();
            Reply::text(format!("{}:{name}", ctx.message.msg_type()))
        })
}

fn target(url: &str, mode: Mode) -> BotTarget {
    BotTarget {
        callback_url: url.to_owned(),
        token: common::TOKEN.into(),
        mode,
        encoding_aes_key: common::AES_KEY.into(),
        app_id: common::APP_ID.into(),
        account_id: ACCOUNT.into(),
    }
}

async fn with_bot(mode: Mode) -> (Running, common::TestServer, Seen) {
    let seen: Seen = Arc::default();
    let server = common::start(mode, bot_router(seen.clone())).await;
    let em = start(Settings {
        bot: Some(target(&server.url, mode)),
        ..settings()
    })
    .await;
    (em, server, seen)
}

fn text(content: &str) -> MessageSpec {
    MessageSpec::Text {
        content: content.into(),
    }
}

fn reply_text(saw: &UserSaw) -> Option<String> {
    match saw {
        UserSaw::Reply { reply } => match serde_json::from_value::<Reply>(reply.clone()).ok()? {
            Reply::Text { content } => Some(content),
            _ => None,
        },
        _ => None,
    }
}

#[tokio::test]
async fn send_plays_wechat_in_every_mode() {
    for mode in common::MODES {
        let (em, _server, seen) = with_bot(mode).await;
        let c = em.emu.send(FOLLOWER, text("hello")).await.expect("sent");
        assert_eq!(c.outcomes(), ["reply"], "{mode:?}");
        assert_eq!(c.attempts[0].status, Some(200));
        assert_eq!(reply_text(&c.user_saw).as_deref(), Some("echo: hello"));
        assert_eq!(c.reply(), Some(Reply::text("echo: hello")));
        if mode != Mode::Plain {
            assert!(c.attempts[0].body.contains("<Encrypt>"), "{mode:?}");
        }
        let inbox = em.emu.inbox(FOLLOWER);
        assert_eq!(inbox.len(), 1);
        assert_eq!(inbox[0].kind, "passive");
        assert_eq!(
            serde_json::from_value::<Reply>(inbox[0].body.clone()).unwrap(),
            Reply::text("echo: hello")
        );
        let got = seen.lock().unwrap().clone();
        assert_eq!(got.len(), 1);
        assert_eq!(got[0].from.as_str(), FOLLOWER);
        assert_eq!(got[0].to, ACCOUNT);
        assert_eq!(got[0].content(), Some("hello"));

        let c = em.emu.send(FOLLOWER, text("quiet")).await.unwrap();
        assert_eq!(c.outcomes(), ["success"]);
        assert_eq!(c.user_saw, UserSaw::Nothing);
        assert_eq!(em.emu.inbox(FOLLOWER).len(), 1);

        let pushes = em.calls_to("/wechat");
        assert_eq!(pushes.len(), 2);
        assert_eq!(pushes[0].method, "PUSH");
        assert_eq!(pushes[0].query["msg_type"], "text");
        assert_eq!(pushes[0].status, 200);
    }
}

#[tokio::test]
async fn a_slow_bot_gets_three_attempts_then_the_user_sees_the_notice() {
    let (em, _server, seen) = with_bot(Mode::Safe).await;
    let c = em.emu.send(FOLLOWER, text("slow")).await.unwrap();
    assert_eq!(c.outcomes(), ["timeout", "timeout", "timeout"]);
    assert!(c.attempts.iter().all(|a| a.status.is_none()));
    assert_eq!(
        c.user_saw,
        UserSaw::ErrorNotice {
            text: ERROR_NOTICE.into()
        }
    );
    // The bot saw the identical message three times (WeChat's retries).
    let got = seen.lock().unwrap().clone();
    assert_eq!(got.len(), 3);
    assert!(got.iter().all(|m| m.msg_id == got[0].msg_id));
    assert!(em.emu.inbox(FOLLOWER).is_empty());

    let c = em.emu.send(FOLLOWER, text("slow once")).await.unwrap();
    assert_eq!(c.outcomes(), ["timeout", "reply"]);
    assert_eq!(reply_text(&c.user_saw).as_deref(), Some("made it"));
}

/// A callback that answers `status` and `body` to everything.
async fn stub(status: u16, body: &'static str) -> (String, oneshot::Sender<()>) {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}/wechat", listener.local_addr().unwrap());
    let app = axum::Router::new().route(
        "/wechat",
        axum::routing::post(move || async move {
            (
                axum::http::StatusCode::from_u16(status).unwrap(),
                body.to_owned(),
            )
        }),
    );
    let (tx, rx) = oneshot::channel::<()>();
    tokio::spawn(async move {
        let _ = axum::serve(listener, app)
            .with_graceful_shutdown(async move {
                let _ = rx.await;
            })
            .await;
    });
    (url, tx)
}

async fn emulator_for(url: &str, mode: Mode) -> Running {
    start(Settings {
        bot: Some(target(url, mode)),
        ..settings()
    })
    .await
}

#[tokio::test]
async fn bad_answers_show_the_error_notice_at_once() {
    let notice = UserSaw::ErrorNotice {
        text: ERROR_NOTICE.into(),
    };
    // Garbage.
    let (url, _stop) = stub(200, "this is not xml").await;
    let em = emulator_for(&url, Mode::Plain).await;
    let c = em.emu.send(FOLLOWER, text("hi")).await.unwrap();
    assert_eq!(c.outcomes(), ["invalid"]);
    assert_eq!(c.attempts[0].body, "this is not xml");
    assert!(c.attempts[0].detail.is_some());
    assert_eq!(c.user_saw, notice);
    // JSON.
    let (url, _stop2) = stub(200, r#"{"reply":"hi"}"#).await;
    let em = emulator_for(&url, Mode::Plain).await;
    assert_eq!(
        em.emu.send(FOLLOWER, text("hi")).await.unwrap().outcomes(),
        ["invalid"]
    );
    // An HTTP error, even with a good body.
    let (url, _stop3) = stub(500, "success").await;
    let em = emulator_for(&url, Mode::Plain).await;
    let c = em.emu.send(FOLLOWER, text("hi")).await.unwrap();
    assert_eq!(c.outcomes(), ["http_error"]);
    assert_eq!(c.attempts[0].status, Some(500));
    assert_eq!(c.user_saw, notice);
    // An empty body is a silent success.
    let (url, _stop4) = stub(200, "").await;
    let em = emulator_for(&url, Mode::Plain).await;
    let c = em.emu.send(FOLLOWER, text("hi")).await.unwrap();
    assert_eq!(c.outcomes(), ["success"]);
    assert_eq!(c.user_saw, UserSaw::Nothing);
    // A reply addressed to someone else.
    let (url, _stop5) = stub(
        200,
        "<xml><ToUserName>o_other</ToUserName><FromUserName>gh_huixin_emulated</FromUserName><CreateTime>1</CreateTime><MsgType>text</MsgType><Content>hi</Content></xml>",
    )
    .await;
    let em = emulator_for(&url, Mode::Plain).await;
    let c = em.emu.send(FOLLOWER, text("hi")).await.unwrap();
    assert_eq!(c.outcomes(), ["invalid"]);
    // A plaintext reply to an encrypted request.
    let (url, _stop6) = stub(
        200,
        "<xml><ToUserName>o_follower_1</ToUserName><FromUserName>gh_huixin_emulated</FromUserName><CreateTime>1</CreateTime><MsgType>text</MsgType><Content>hi</Content></xml>",
    )
    .await;
    let em = emulator_for(&url, Mode::Safe).await;
    let c = em.emu.send(FOLLOWER, text("hi")).await.unwrap();
    assert_eq!(c.outcomes(), ["invalid"]);
    assert!(
        c.attempts[0]
            .detail
            .as_deref()
            .unwrap()
            .contains("encrypted")
    );
    // …which is fine in plain mode.
    let em = emulator_for(&url, Mode::Plain).await;
    let c = em.emu.send(FOLLOWER, text("hi")).await.unwrap();
    assert_eq!(c.outcomes(), ["reply"]);
    // Two news articles in answer to a user's message.
    let (url, _stop7) = stub(
        200,
        "<xml><ToUserName>o_follower_1</ToUserName><FromUserName>gh_huixin_emulated</FromUserName><CreateTime>1</CreateTime><MsgType>news</MsgType><ArticleCount>2</ArticleCount><Articles><item><Title>a</Title></item><item><Title>b</Title></item></Articles></xml>",
    )
    .await;
    let em = emulator_for(&url, Mode::Plain).await;
    assert_eq!(
        em.emu.send(FOLLOWER, text("hi")).await.unwrap().outcomes(),
        ["invalid"]
    );
    let c = em
        .emu
        .send(FOLLOWER, MessageSpec::Click { key: "k".into() })
        .await
        .unwrap();
    assert_eq!(c.outcomes(), ["reply"]);
}

#[tokio::test]
async fn an_unreachable_bot_is_three_timeouts() {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let url = format!("http://{}/wechat", listener.local_addr().unwrap());
    drop(listener);
    let em = emulator_for(&url, Mode::Plain).await;
    let c = em.emu.send(FOLLOWER, text("hi")).await.unwrap();
    assert_eq!(c.outcomes(), ["timeout", "timeout", "timeout"]);
    assert!(c.attempts.iter().all(|a| a.detail.is_some()));
    assert!(matches!(c.user_saw, UserSaw::ErrorNotice { .. }));
}

#[tokio::test]
async fn no_bot_is_an_error() {
    let em = start(settings()).await;
    let err = em.emu.send(FOLLOWER, text("hi")).await.unwrap_err();
    assert!(matches!(err, EmulatorError::NoBot), "{err}");
    let r = em
        .post_raw(
            "/emulator/send?from=o_x",
            json!({"type": "text", "content": "hi"}).to_string(),
        )
        .await;
    assert_eq!(r.status(), 409);
    // An unusable target is reported, not a panic.
    let em = start(Settings {
        bot: Some(BotTarget {
            encoding_aes_key: String::new(),
            ..target("http://127.0.0.1:1/wechat", Mode::Safe)
        }),
        ..settings()
    })
    .await;
    assert!(matches!(
        em.emu.send(FOLLOWER, text("hi")).await,
        Err(EmulatorError::Bot(_))
    ));
    let em = emulator_for("ftp://nowhere", Mode::Plain).await;
    assert!(matches!(
        em.emu.send(FOLLOWER, text("hi")).await,
        Err(EmulatorError::Bot(_))
    ));
}

async fn wait_for_template_finish(seen: &Seen, msgid: u64) -> Message {
    for _ in 0..200 {
        let found = seen.lock().unwrap().iter().find_map(|m| match m.event() {
            Some(Event::TemplateSendJobFinish(f)) if f.msg_id.0 == msgid => Some(m.clone()),
            _ => None,
        });
        if let Some(m) = found {
            return m;
        }
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
    panic!("TEMPLATESENDJOBFINISH {msgid} never arrived");
}

#[tokio::test]
async fn template_sends_are_followed_by_templatesendjobfinish() {
    for mode in [Mode::Plain, Mode::Safe] {
        let (em, _server, seen) = with_bot(mode).await;
        let token = em.classic_token().await;
        let v = em.api_post(TEMPLATE_SEND, &token, template(FOLLOWER)).await;
        let msgid = v["msgid"].as_u64().expect("msgid");
        let m = wait_for_template_finish(&seen, msgid).await;
        assert_eq!(m.from.as_str(), FOLLOWER);
        assert_eq!(m.to, ACCOUNT);
        assert_eq!(m.event_name(), Some("TEMPLATESENDJOBFINISH"));
        match m.event() {
            Some(Event::TemplateSendJobFinish(f)) => {
                assert_eq!(f.status, huixin::wechat::message::SendStatus::Success)
            }
            other => panic!("{other:?}"),
        }
        // The event is not the user's doing: no passive reply lands in the inbox.
        let inbox = em.emu.inbox(FOLLOWER);
        assert_eq!(inbox.len(), 1);
        assert_eq!(inbox[0].kind, "template");
        // The post is in the log.
        let mut pushes = Vec::new();
        for _ in 0..200 {
            pushes = em.calls_to("/wechat");
            if !pushes.is_empty() {
                break;
            }
            tokio::time::sleep(Duration::from_millis(25)).await;
        }
        assert_eq!(pushes.len(), 1, "{mode:?}");
        assert_eq!(pushes[0].query["event"], "TEMPLATESENDJOBFINISH");
        assert_eq!(pushes[0].query["msg_id"], msgid.to_string());
    }
}

#[tokio::test]
async fn sending_updates_followers_and_carries_qr_tickets() {
    let (em, _server, _seen) = with_bot(Mode::Plain).await;
    let token = em.classic_token().await;
    let qr = em
        .api_post(
            "/cgi-bin/qrcode/create",
            &token,
            json!({"action_name": "QR_LIMIT_STR_SCENE", "action_info": {"scene": {"scene_str": "promo"}}}),
        )
        .await;
    let ticket = qr["ticket"].as_str().unwrap();
    let c = em
        .emu
        .send(
            "o_newbie",
            MessageSpec::Subscribe {
                scene: Some("promo".into()),
            },
        )
        .await
        .unwrap();
    assert_eq!(reply_text(&c.user_saw).as_deref(), Some("event:subscribe"));
    let push = em.calls_to("/wechat").pop().unwrap();
    assert_eq!(push.query["event"], "subscribe");
    assert_eq!(push.query["scene"], "promo");
    assert_eq!(push.query["ticket"], ticket);
    assert_eq!(push.query["event_key"], "qrscene_promo");
    let info = em
        .api_get("/cgi-bin/user/info", &token, "&openid=o_newbie")
        .await;
    assert_eq!(info["subscribe"], 1);
    assert_eq!(info["qr_scene_str"], "promo");
    // Following and just interacted: both APIs reach the user.
    assert_eq!(
        errcode(
            &em.api_post(CUSTOM_SEND, &token, text_message("o_newbie", "welcome"))
                .await
        ),
        0
    );
    // A scan of a numeric scene.
    let qr = em
        .api_post(
            "/cgi-bin/qrcode/create",
            &token,
            json!({"action_name": "QR_SCENE", "action_info": {"scene": {"scene_id": 77}}}),
        )
        .await;
    em.emu
        .send("o_newbie", MessageSpec::Scan { scene: "77".into() })
        .await
        .unwrap();
    let push = em.calls_to("/wechat").pop().unwrap();
    assert_eq!(push.query["event"], "SCAN");
    assert_eq!(push.query["ticket"], qr["ticket"]);

    em.emu
        .send("o_newbie", MessageSpec::Unsubscribe)
        .await
        .unwrap();
    let info = em
        .api_get("/cgi-bin/user/info", &token, "&openid=o_newbie")
        .await;
    assert_eq!(info["subscribe"], 0);
    assert_eq!(
        errcode(
            &em.api_post(TEMPLATE_SEND, &token, template("o_newbie"))
                .await
        ),
        43004
    );
    // A user who was silent for days speaks: the window reopens.
    em.emu.add_user("o_quiet", true, false);
    assert_eq!(
        errcode(
            &em.api_post(CUSTOM_SEND, &token, text_message("o_quiet", "x"))
                .await
        ),
        45015
    );
    em.emu.send("o_quiet", text("hi")).await.unwrap();
    assert_eq!(
        errcode(
            &em.api_post(CUSTOM_SEND, &token, text_message("o_quiet", "x"))
                .await
        ),
        0
    );
    let user = em.get("/emulator/users/o_quiet").await;
    assert!(user["last_interaction_ms_ago"].is_u64());
    let kinds: Vec<&str> = user["inbox"]
        .as_array()
        .unwrap()
        .iter()
        .map(|d| d["kind"].as_str().unwrap())
        .collect();
    assert_eq!(kinds, ["passive", "custom"]);
}

#[tokio::test]
async fn send_over_http_maps_every_message_type() {
    let (em, _server, seen) = with_bot(Mode::Compatible).await;
    let cases = [
        (json!({"type": "text", "content": "hi"}), "echo: hi"),
        (json!({"type": "image", "media_id": "M1"}), "image:"),
        (json!({"type": "voice", "media_id": "M2"}), "voice:"),
        (
            json!({"type": "location", "lat": 23.1, "lon": 113.3, "label": "Canton"}),
            "location:",
        ),
        (
            json!({"type": "link", "title": "T", "url": "https://e.com"}),
            "link:",
        ),
        (json!({"type": "subscribe"}), "event:subscribe"),
        (json!({"type": "subscribe", "scene": 42}), "event:subscribe"),
        (json!({"type": "scan", "scene": "abc"}), "event:SCAN"),
        (json!({"type": "click", "key": "MENU_1"}), "event:CLICK"),
        (
            json!({"type": "view", "url": "https://e.com/v"}),
            "event:VIEW",
        ),
        (json!({"type": "unsubscribe"}), "event:unsubscribe"),
    ];
    for (body, expected) in &cases {
        let v = em
            .post("/emulator/send?from=o_http_user", body.clone())
            .await;
        assert_eq!(v["user_saw"]["kind"], "reply", "{body}: {v}");
        assert_eq!(
            v["user_saw"]["reply"]["body"]["content"], *expected,
            "{body}"
        );
        assert_eq!(v["attempts"][0]["outcome"], "reply");
    }
    let got = seen.lock().unwrap().clone();
    assert_eq!(got.len(), cases.len());
    assert!(got.iter().all(|m| m.from.as_str() == "o_http_user"));
    match got[3].kind {
        huixin::wechat::MessageKind::Location(ref l) => assert_eq!(l.label, "Canton"),
        ref other => panic!("{other:?}"),
    }
    assert_eq!(got[6].event_key(), Some("42"));
    assert_eq!(got[8].event_key(), Some("MENU_1"));
    // The user unsubscribed last.
    let user = em.get("/emulator/users/o_http_user").await;
    assert_eq!(user["following"], false);
    // Without `from`, the simulator's default user.
    let v = em
        .post("/emulator/send", json!({"type": "text", "content": "who"}))
        .await;
    assert_eq!(v["user_saw"]["reply"]["body"]["content"], "echo: who");
    assert_eq!(
        seen.lock().unwrap().last().unwrap().from.as_str(),
        DEFAULT_OPENID
    );
    // Bad message bodies are 400s.
    for bad in [
        json!({"type": "telepathy"}),
        json!({"type": "text"}),
        json!({"content": "x"}),
        json!({"type": "location", "lat": "north"}),
    ] {
        let r = em.post_raw("/emulator/send", bad.to_string()).await;
        assert_eq!(r.status(), 400, "{bad}");
    }
}
