//! The outbound API client against the emulator on port 0: one access token per account
//! (single flight, shared through one SQLite file by independent clients), the retry policy
//! (token errors once, busy platform only where safe), every request body against the
//! reference, and the wiring: late replies and rule sends arriving as messages at the emulator.

use crate::common;

use std::path::Path;
use std::time::Duration;

use common::emu::{
    API_APP_ID, RunningEmulator, TEMPLATE, emulator_settings, reserve, serve_on, sqlite_url,
    start_emulator,
};
use huixin::emulator::{BotTarget, Fault, UserSaw};
use huixin::outbound::custom::{MenuOption, NewsArticle};
use huixin::outbound::media::MediaType;
use huixin::outbound::menu::Menu;
use huixin::outbound::oauth::Scope;
use huixin::outbound::qrcode::Scene;
use huixin::outbound::{ApiError, Client, CustomBody, CustomMessage, TemplateMessage};
use huixin::simulator::MessageSpec;
use huixin::store::{NewToken, Store};
use huixin::support::clock::unix_now;
use huixin::wechat::Mode;
use serde_json::{Value, json};

const USER: &str = "o_outbound_user";
const TEMPLATE_SEND: &str = "/cgi-bin/message/template/send";
const CUSTOM_SEND: &str = "/cgi-bin/message/custom/send";

fn notice(n: usize) -> TemplateMessage {
    TemplateMessage::new(USER, TEMPLATE)
        .field("title", format!("notice {n}"))
        .url("https://example.com/m/1")
}

async fn store_in(dir: &Path) -> Store {
    Store::open(&sqlite_url(dir)).await.expect("store")
}

/// Sends `n` template messages at once; every result.
async fn burst(client: &Client, n: usize) -> Vec<Result<huixin::outbound::TemplateSent, ApiError>> {
    let tasks: Vec<_> = (0..n)
        .map(|i| {
            let client = client.clone();
            tokio::spawn(async move { client.send_template(&notice(i)).await })
        })
        .collect();
    let mut results = Vec::new();
    for task in tasks {
        results.push(task.await.expect("no panic"));
    }
    results
}

fn all_ok(results: &[Result<huixin::outbound::TemplateSent, ApiError>]) {
    for r in results {
        if let Err(e) = r {
            panic!("a send failed: {e}");
        }
    }
}

/// The `access_token` a recorded call carried.
fn token_of(call: &huixin::emulator::CallRecord) -> String {
    call.query.get("access_token").cloned().unwrap_or_default()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_hundred_calls_on_an_expired_token_make_one_token_request() {
    let em = start_emulator(emulator_settings(&[USER])).await;
    let dir = tempfile::tempdir().unwrap();
    let store = store_in(dir.path()).await;

    // An earlier run left a token in the database that has since expired.
    let now = unix_now();
    let backend = store.backend();
    assert!(
        backend
            .token_try_lease(API_APP_ID, "earlier-run", 0, now, now + 30)
            .await
            .unwrap()
    );
    let stale = NewToken {
        token: "token-of-an-earlier-run",
        expires_at: now - 60,
        refresh_after: now - 360,
        fetched_at: now - 7_260,
    };
    assert!(
        backend
            .token_store(API_APP_ID, "earlier-run", &stale)
            .await
            .unwrap()
    );

    let client = Client::new(&em.wechat(), Some(store.clone())).unwrap();
    let results = burst(&client, 100).await;
    all_ok(&results);
    assert_eq!(em.token_requests(), 1, "one token request for 100 calls");
    let sends = em.calls_to(TEMPLATE_SEND);
    assert_eq!(sends.len(), 100, "no call was rejected and repeated");
    assert!(
        sends
            .iter()
            .all(|c| token_of(c) != "token-of-an-earlier-run")
    );
    assert_eq!(em.received(USER, "template").len(), 100);

    // Another client on the same database (another process) uses the stored token.
    let other = Client::new(&em.wechat(), Some(store_in(dir.path()).await)).unwrap();
    all_ok(&burst(&other, 10).await);
    assert_eq!(em.token_requests(), 1, "the second client fetched nothing");

    // Without a database: still one request for 100 concurrent calls on a cold start.
    let alone = Client::new(&em.wechat(), None).unwrap();
    all_ok(&burst(&alone, 100).await);
    assert_eq!(em.token_requests(), 2);
    assert_eq!(alone.tokens().fetches(), 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn clients_sharing_one_database_refresh_once_between_them() {
    let em = start_emulator(emulator_settings(&[USER])).await;
    let dir = tempfile::tempdir().unwrap();
    // Three clients with their own connection pools on one SQLite file, as three processes.
    let mut clients = Vec::new();
    for _ in 0..3 {
        clients.push(Client::new(&em.wechat(), Some(store_in(dir.path()).await)).unwrap());
    }
    let bursts: Vec<_> = clients
        .iter()
        .map(|c| {
            let c = c.clone();
            tokio::spawn(async move { burst(&c, 40).await })
        })
        .collect();
    for b in bursts {
        all_ok(&b.await.unwrap());
    }
    assert_eq!(em.token_requests(), 1, "one refresh between three clients");
    let fetched: u64 = clients.iter().map(|c| c.tokens().fetches()).sum();
    assert_eq!(fetched, 1);
    let tokens: std::collections::BTreeSet<String> =
        em.calls_to(TEMPLATE_SEND).iter().map(token_of).collect();
    assert_eq!(tokens.len(), 1, "every call used the one token");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_token_expiring_mid_traffic_costs_one_refresh_and_no_send() {
    let em = start_emulator(emulator_settings(&[USER])).await;
    let dir = tempfile::tempdir().unwrap();
    let client = Client::new(&em.wechat(), Some(store_in(dir.path()).await)).unwrap();
    all_ok(&burst(&client, 20).await);
    assert_eq!(em.token_requests(), 1);

    // WeChat drops the token (expiry ahead of schedule, a refresh elsewhere…) while 50
    // calls are under way.
    let traffic = {
        let client = client.clone();
        tokio::spawn(async move { burst(&client, 50).await })
    };
    em.emu.expire_tokens();
    let r = traffic.await.unwrap();
    if r.iter().any(Result::is_err) {
        for c in em.emu.calls() {
            eprintln!(
                "{} {} {} tok={}",
                c.seq,
                c.path,
                c.errcode,
                &token_of(&c).get(..8).unwrap_or("")
            );
        }
    }
    all_ok(&r);
    // And the traffic after it.
    all_ok(&burst(&client, 30).await);

    assert_eq!(
        em.received(USER, "template").len(),
        100,
        "every send arrived once"
    );
    assert!(
        em.token_requests() <= 2,
        "at most one refresh: {}",
        em.token_requests()
    );
    let rejected = em
        .calls_to(TEMPLATE_SEND)
        .iter()
        .filter(|c| c.errcode != 0)
        .count();
    if rejected > 0 {
        assert_eq!(
            em.token_requests(),
            2,
            "a rejection is answered by one refresh"
        );
    }
    // The 30 sends after the expiry certainly used a new token.
    let last = em.calls_to(TEMPLATE_SEND).last().map(token_of).unwrap();
    let first = em.calls_to(TEMPLATE_SEND).first().map(token_of).unwrap();
    assert_ne!(first, last);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_40001_storm_ends_in_bounded_retries_with_a_clear_error() {
    let em = start_emulator(emulator_settings(&[USER])).await;
    let dir = tempfile::tempdir().unwrap();
    let client = Client::new(&em.wechat(), Some(store_in(dir.path()).await)).unwrap();
    client.send_template(&notice(0)).await.unwrap();
    assert_eq!(em.token_requests(), 1);

    em.emu.inject(Fault {
        path: TEMPLATE_SEND.into(),
        errcode: 40001,
        errmsg: String::new(),
        count: 10_000,
        after: false,
        latency_ms: 0,
        http_status: None,
    });
    let err = client.send_template(&notice(1)).await.unwrap_err();
    assert_eq!(err.errcode(), Some(40001), "{err}");
    assert!(err.to_string().contains(TEMPLATE_SEND), "{err}");
    assert_eq!(em.calls_to(TEMPLATE_SEND).len(), 3, "one retry, not a loop");
    // One refresh: stable_token hands the rejected token back (WeChat still deems it valid),
    // so the refresh forces a new one.
    let stable = em.calls_to("/cgi-bin/stable_token");
    assert_eq!(stable.len(), 3, "the first token, then one refresh");
    assert_eq!(stable[2].body.as_ref().unwrap()["force_refresh"], true);

    // Twenty more sends in the storm: the token that replaced a rejected one is rejected in
    // turn, so nobody refreshes again; each send is tried once and fails with the reason.
    let results = burst(&client, 20).await;
    for r in &results {
        let e = r.as_ref().unwrap_err();
        assert_eq!(e.errcode(), Some(40001), "{e}");
        assert!(e.to_string().contains("not refreshing again"), "{e}");
    }
    assert_eq!(em.calls_to(TEMPLATE_SEND).len(), 23);
    assert_eq!(em.token_requests(), 3, "no refresh during the storm");
    assert_eq!(em.received(USER, "template").len(), 1);

    // When the storm ends, sending works again.
    em.emu.clear_faults();
    client.send_template(&notice(2)).await.unwrap();
    assert_eq!(em.received(USER, "template").len(), 2);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unauthorized_and_ip_errors_never_touch_the_token() {
    let em = start_emulator(emulator_settings(&[USER])).await;
    let client = Client::new(&em.wechat(), None).unwrap();
    client.send_template(&notice(0)).await.unwrap();
    for (path, code, words) in [
        (CUSTOM_SEND, 48001, "not authorized"),
        ("/cgi-bin/menu/get", 40164, "not whitelisted"),
    ] {
        em.emu.inject(Fault {
            path: path.into(),
            errcode: code,
            errmsg: String::new(),
            count: 1,
            after: false,
            latency_ms: 0,
            http_status: None,
        });
        let err = match path {
            CUSTOM_SEND => client
                .send_custom(&CustomMessage::text(USER, "hi"))
                .await
                .unwrap_err(),
            _ => client.menu().await.unwrap_err(),
        };
        assert_eq!(err.errcode(), Some(code));
        assert!(!err.is_token_error());
        assert!(err.to_string().contains(words), "{err}");
        assert_eq!(em.calls_to(path).len(), 1, "{path}: not retried");
    }
    assert_eq!(em.token_requests(), 1, "no refresh for 48001 or 40164");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_busy_template_send_is_retried_with_its_client_msg_id_and_arrives_once() {
    let em = start_emulator(emulator_settings(&[USER])).await;
    let client = Client::new(&em.wechat(), None).unwrap();
    let fault = |errcode, after, http_status| Fault {
        path: TEMPLATE_SEND.into(),
        errcode,
        errmsg: String::new(),
        count: 1,
        after,
        latency_ms: 0,
        http_status,
    };

    // WeChat delivered the message but answered -1 (the answer that matters was lost).
    em.emu.inject(fault(-1, true, None));
    let sent = client.send_template(&notice(1)).await.unwrap();
    let calls = em.calls_to(TEMPLATE_SEND);
    assert_eq!(calls.len(), 2, "retried once");
    let ids: Vec<&str> = calls
        .iter()
        .map(|c| c.body.as_ref().unwrap()["client_msg_id"].as_str().unwrap())
        .collect();
    assert_eq!(ids[0], ids[1], "the retry carries the same client_msg_id");
    assert_eq!(ids[0], sent.client_msg_id);
    assert_eq!(calls[1].errcode, 45065, "WeChat refused the duplicate");
    assert_eq!(
        em.received(USER, "template").len(),
        1,
        "the user got it once"
    );

    // Busy before doing anything, and a 502 from a proxy: retried, delivered once each.
    em.emu.inject(fault(-1, false, None));
    let sent = client.send_template(&notice(2)).await.unwrap();
    assert!(sent.msgid.is_some());
    em.emu.inject(fault(-1, false, Some(502)));
    client.send_template(&notice(3)).await.unwrap();
    assert_eq!(em.received(USER, "template").len(), 3);
    assert_eq!(em.calls_to(TEMPLATE_SEND).len(), 6);

    // Busy the whole time: bounded attempts, then the error.
    em.emu.inject(Fault {
        count: 100,
        ..fault(-1, false, None)
    });
    let err = client.send_template(&notice(4)).await.unwrap_err();
    assert_eq!(err.errcode(), Some(-1));
    assert_eq!(em.calls_to(TEMPLATE_SEND).len(), 9, "three attempts");
    em.emu.clear_faults();

    // A customer-service message has no idempotency key: never repeated.
    em.emu.inject(Fault {
        path: CUSTOM_SEND.into(),
        ..fault(-1, true, None)
    });
    let err = client
        .send_custom(&CustomMessage::text(USER, "once"))
        .await
        .unwrap_err();
    assert_eq!(err.errcode(), Some(-1));
    assert_eq!(em.calls_to(CUSTOM_SEND).len(), 1);
    assert_eq!(
        em.received(USER, "custom").len(),
        1,
        "delivered once, not twice"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_request_matches_the_reference() {
    let em = start_emulator(emulator_settings(&[USER])).await;
    let client = Client::new(&em.wechat(), None).unwrap();
    let last_body = |path: &str| em.calls_to(path).last().unwrap().body.clone().unwrap();
    let last_query = |path: &str| em.calls_to(path).last().unwrap().query.clone();

    // Token: stable_token by default.
    client.tokens().current().await.unwrap();
    assert_eq!(
        last_body("/cgi-bin/stable_token"),
        json!({"grant_type": "client_credential", "appid": API_APP_ID, "secret": "<redacted>", "force_refresh": false})
    );
    client.tokens().force_refresh().await.unwrap();
    assert_eq!(last_body("/cgi-bin/stable_token")["force_refresh"], true);
    // Classic by config.
    let mut classic = em.wechat();
    classic.token_endpoint = huixin::config::TokenEndpoint::Classic;
    Client::new(&classic, None)
        .unwrap()
        .tokens()
        .current()
        .await
        .unwrap();
    let q = last_query("/cgi-bin/token");
    assert_eq!(q["grant_type"], "client_credential");
    assert_eq!(q["appid"], API_APP_ID);
    assert_eq!(q["secret"], "<redacted>");

    // Template message.
    let message = TemplateMessage::new(USER, TEMPLATE)
        .field("title", "Deploy finished")
        .field("time", "12:00")
        .url("https://example.com/m/7")
        .client_msg_id("deploy-7");
    let sent = client.send_template(&message).await.unwrap();
    assert_eq!(
        last_body(TEMPLATE_SEND),
        json!({"touser": USER, "template_id": TEMPLATE, "url": "https://example.com/m/7",
               "client_msg_id": "deploy-7",
               "data": {"time": {"value": "12:00"}, "title": {"value": "Deploy finished"}}})
    );
    assert_eq!(sent.client_msg_id, "deploy-7");
    assert!(sent.msgid.is_some());
    let mut mini = TemplateMessage::new(USER, TEMPLATE).field("title", "t");
    mini.miniprogram = Some(huixin::outbound::template::MiniProgram {
        appid: "wxmini".into(),
        pagepath: "pages/index".into(),
    });
    client.send_template(&mini).await.unwrap();
    let body = last_body(TEMPLATE_SEND);
    assert_eq!(
        body["miniprogram"],
        json!({"appid": "wxmini", "pagepath": "pages/index"})
    );
    assert_eq!(
        body["client_msg_id"].as_str().unwrap().len(),
        32,
        "generated"
    );

    // Customer-service messages, every type.
    let cases: Vec<(CustomBody, Value)> = vec![
        (
            CustomBody::Text {
                content: "hi".into(),
            },
            json!({"msgtype": "text", "text": {"content": "hi"}}),
        ),
        (
            CustomBody::Image {
                media_id: "M1".into(),
            },
            json!({"msgtype": "image", "image": {"media_id": "M1"}}),
        ),
        (
            CustomBody::Voice {
                media_id: "M2".into(),
            },
            json!({"msgtype": "voice", "voice": {"media_id": "M2"}}),
        ),
        (
            CustomBody::Video {
                media_id: "M3".into(),
                thumb_media_id: "T3".into(),
                title: "v".into(),
                description: "d".into(),
            },
            json!({"msgtype": "video", "video": {"media_id": "M3", "thumb_media_id": "T3", "title": "v", "description": "d"}}),
        ),
        (
            CustomBody::Music {
                title: "m".into(),
                description: "d".into(),
                musicurl: "http://x/m.mp3".into(),
                hqmusicurl: "http://x/hq.mp3".into(),
                thumb_media_id: "T4".into(),
            },
            json!({"msgtype": "music", "music": {"title": "m", "description": "d", "musicurl": "http://x/m.mp3", "hqmusicurl": "http://x/hq.mp3", "thumb_media_id": "T4"}}),
        ),
        (
            CustomBody::News {
                article: NewsArticle {
                    title: "n".into(),
                    description: "d".into(),
                    url: "https://example.com/a".into(),
                    picurl: "https://example.com/p.png".into(),
                },
            },
            json!({"msgtype": "news", "news": {"articles": [{"title": "n", "description": "d", "url": "https://example.com/a", "picurl": "https://example.com/p.png"}]}}),
        ),
        (
            CustomBody::MpNews {
                media_id: "M5".into(),
            },
            json!({"msgtype": "mpnews", "mpnews": {"media_id": "M5"}}),
        ),
        (
            CustomBody::MsgMenu {
                head_content: "Rate us".into(),
                options: vec![
                    MenuOption {
                        id: "101".into(),
                        content: "Good".into(),
                    },
                    MenuOption {
                        id: "102".into(),
                        content: "Bad".into(),
                    },
                ],
                tail_content: "Thanks".into(),
            },
            json!({"msgtype": "msgmenu", "msgmenu": {"head_content": "Rate us", "list": [{"id": "101", "content": "Good"}, {"id": "102", "content": "Bad"}], "tail_content": "Thanks"}}),
        ),
        (
            CustomBody::MiniProgramPage {
                title: "p".into(),
                appid: "wxmini".into(),
                pagepath: "pages/a".into(),
                thumb_media_id: "T6".into(),
            },
            json!({"msgtype": "miniprogrampage", "miniprogrampage": {"title": "p", "appid": "wxmini", "pagepath": "pages/a", "thumb_media_id": "T6"}}),
        ),
    ];
    for (body, expected) in cases {
        client
            .send_custom(&CustomMessage::new(USER, body))
            .await
            .unwrap();
        let mut expected = expected;
        expected["touser"] = json!(USER);
        assert_eq!(last_body(CUSTOM_SEND), expected);
    }
    let mut as_agent = CustomMessage::text(USER, "from an agent");
    as_agent.kf_account = Some("agent1@gh_test".into());
    client.send_custom(&as_agent).await.unwrap();
    assert_eq!(
        last_body(CUSTOM_SEND),
        json!({"touser": USER, "msgtype": "text", "text": {"content": "from an agent"},
               "customservice": {"kf_account": "agent1@gh_test"}})
    );
    assert_eq!(em.received(USER, "custom").len(), 10);

    // Menu.
    let menu_json = json!({"button": [
        {"type": "click", "name": "Today", "key": "TODAY"},
        {"name": "More", "sub_button": [
            {"type": "view", "name": "Site", "url": "https://example.com/"},
            {"type": "miniprogram", "name": "App", "url": "https://example.com/", "appid": "wxmini", "pagepath": "pages/i"}
        ]}
    ]});
    let menu = Menu::from_json(&menu_json.to_string()).unwrap();
    assert_eq!(client.menu().await.unwrap(), None, "no menu yet");
    client.create_menu(&menu).await.unwrap();
    assert_eq!(last_body("/cgi-bin/menu/create"), menu_json);
    assert_eq!(client.menu().await.unwrap(), Some(menu));
    client.delete_menu().await.unwrap();
    assert_eq!(client.menu().await.unwrap(), None);

    // QR codes: temporary and permanent, numeric and string scenes.
    for (scene, expire, expected) in [
        (
            Scene::Id(42),
            Some(600),
            json!({"expire_seconds": 600, "action_name": "QR_SCENE", "action_info": {"scene": {"scene_id": 42}}}),
        ),
        (
            Scene::Str("promo".into()),
            Some(1800),
            json!({"expire_seconds": 1800, "action_name": "QR_STR_SCENE", "action_info": {"scene": {"scene_str": "promo"}}}),
        ),
        (
            Scene::Id(7),
            None,
            json!({"action_name": "QR_LIMIT_SCENE", "action_info": {"scene": {"scene_id": 7}}}),
        ),
        (
            Scene::Str("shop".into()),
            None,
            json!({"action_name": "QR_LIMIT_STR_SCENE", "action_info": {"scene": {"scene_str": "shop"}}}),
        ),
    ] {
        let code = client.create_qrcode(&scene, expire).await.unwrap();
        assert_eq!(last_body("/cgi-bin/qrcode/create"), expected);
        assert!(!code.ticket.is_empty());
        assert_eq!(code.expire_seconds, expire.map(u64::from));
        let image = reqwest::get(client.qrcode_image_url(&code.ticket))
            .await
            .unwrap();
        assert_eq!(image.status(), 200, "the image URL works");
        assert_eq!(image.headers()["content-type"], "image/png");
    }

    // Users.
    let user = client.user_info(USER).await.unwrap();
    assert!(user.follows());
    assert_eq!(user.openid, USER);
    let q = last_query("/cgi-bin/user/info");
    assert_eq!((q["openid"].as_str(), q["lang"].as_str()), (USER, "zh_CN"));
    let err = client.user_info("o_nobody").await.unwrap_err();
    assert_eq!(err.errcode(), Some(40003));
    let all = client.all_followers().await.unwrap();
    assert!(all.iter().any(|o| o == USER));
    let page = client.followers(USER).await.unwrap();
    assert_eq!(last_query("/cgi-bin/user/get")["next_openid"], USER);
    assert!(page.openids.iter().all(|o| o != USER));

    // Temporary media: multipart field `media`, the type in the query.
    let png = include_bytes!("../../src/emulator/qrcode.rs").to_vec(); // any bytes will do
    let media = client
        .upload_media(MediaType::Image, "shot.png", png)
        .await
        .unwrap();
    assert_eq!(media.kind, MediaType::Image);
    assert!(!media.media_id.is_empty());
    assert_eq!(last_query("/cgi-bin/media/upload")["type"], "image");
    let too_big = client
        .upload_media(MediaType::Thumb, "t.jpg", vec![0; 65 * 1024])
        .await
        .unwrap_err();
    assert!(matches!(too_big, ApiError::Invalid { .. }), "{too_big}");

    // Templates.
    let templates = client.templates().await.unwrap();
    assert!(templates.iter().any(|t| t.template_id == TEMPLATE));

    // Web OAuth: the authorize URL (the emulator redirects with a code), the exchange, the
    // profile.
    let url = client.authorize_url("https://example.com/back", Scope::UserInfo, "xyz");
    assert!(url.starts_with(&format!("{}/connect/oauth2/authorize?appid={API_APP_ID}&redirect_uri=https%3A%2F%2Fexample.com%2Fback&response_type=code&scope=snsapi_userinfo&state=xyz", em.base)), "{url}");
    assert!(url.ends_with("#wechat_redirect"));
    let no_redirects = reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .unwrap();
    let answer = no_redirects
        .get(format!("{url}&openid={USER}").replace("#wechat_redirect&", "&"))
        .send()
        .await
        .unwrap();
    assert_eq!(answer.status(), 302);
    let location = answer.headers()["location"].to_str().unwrap().to_owned();
    let location = reqwest::Url::parse(&location).unwrap();
    let code = location
        .query_pairs()
        .find(|(k, _)| k == "code")
        .map(|(_, v)| v.into_owned())
        .expect("code");
    let state = location
        .query_pairs()
        .find(|(k, _)| k == "state")
        .unwrap()
        .1;
    assert_eq!(state, "xyz");
    let token = client.oauth_exchange(&code).await.unwrap();
    assert_eq!(token.openid, USER);
    let q = last_query("/sns/oauth2/access_token");
    assert_eq!(q["grant_type"], "authorization_code");
    assert_eq!(q["code"], code);
    assert_eq!(q["secret"], "<redacted>");
    assert!(
        !format!("{token:?}").contains(&token.access_token),
        "tokens stay out of Debug"
    );
    let profile = client.oauth_user(&token).await.unwrap();
    assert_eq!(profile.openid, USER);
    let again = client.oauth_exchange(&code).await.unwrap_err();
    assert!(again.errcode().is_some(), "a code works once: {again}");
}

/// A bot (`huixin serve`'s pipeline, safe mode, rules from `rules`) wired to an emulator that
/// is both its API and its WeChat.
struct Wired {
    em: RunningEmulator,
    _server: common::TestServer,
    _rules: tempfile::TempDir,
}

async fn wired(rules: &[(&str, &str)], sections: &str) -> Wired {
    let (listener, base) = reserve().await;
    let rules_dir = tempfile::tempdir().unwrap();
    for (name, text) in rules {
        std::fs::write(rules_dir.path().join(name), text).unwrap();
    }
    let dir = tempfile::tempdir().unwrap();
    let extra = format!(
        "api_base = \"{base}\"\napp_secret = \"{}\"",
        common::emu::API_SECRET
    );
    let mut config = common::config_full(Mode::Safe, dir.path(), &extra, sections);
    config.rules.dir = rules_dir.path().to_path_buf();
    let app = huixin::app::App::new(config).await.unwrap();
    assert!(app.client().is_some(), "credentials set: outbound on");
    let server = common::launch(app, dir).await;
    let callback_url = server.url.clone();
    let mut settings = emulator_settings(&[USER, "o_ops_1"]);
    settings.bot = Some(BotTarget {
        callback_url,
        token: common::TOKEN.into(),
        mode: Mode::Safe,
        encoding_aes_key: common::AES_KEY.into(),
        app_id: common::APP_ID.into(),
        account_id: "gh_outbound_test".into(),
    });
    Wired {
        em: serve_on(listener, settings),
        _server: server,
        _rules: rules_dir,
    }
}

/// Waits (patiently) until `openid` received `n` messages of `kind`.
async fn wait_for(em: &RunningEmulator, openid: &str, kind: &str, n: usize) -> Vec<Value> {
    for _ in 0..300 {
        let got = em.received(openid, kind);
        if got.len() >= n {
            return got;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    panic!(
        "{openid} did not receive {n} {kind} message(s): {:?}",
        em.emu.inbox(openid)
    );
}

fn text(content: &str) -> MessageSpec {
    MessageSpec::Text {
        content: content.into(),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_late_reply_arrives_as_a_customer_service_message() {
    // A rule slower than the deadline: it works for 800 ms, the deadline is 200 ms.
    let slow = r#"
        rule(#{ content: "slow" }, |msg| {
            let end_at = now_ms() + 800;
            while now_ms() < end_at {}
            text("the slow answer")
        });
        rule(#{ type: "text" }, |msg| text("quick: " + msg.content));
    "#;
    let w = wired(
        &[("slow.rhai", slow)],
        "[bot]\nreply_deadline_ms = 200\n[rules]\nmax_run_ms = 5000\nmax_operations = 100000000\n",
    )
    .await;

    let quick = w.em.emu.send(USER, text("hello")).await.unwrap();
    assert!(
        matches!(&quick.user_saw, UserSaw::Reply { reply } if reply.to_string().contains("quick: hello")),
        "{quick:?}"
    );

    let conversation = w.em.emu.send(USER, text("slow")).await.unwrap();
    assert_eq!(
        conversation.user_saw,
        UserSaw::Nothing,
        "`success` in time: {conversation:?}"
    );
    assert_eq!(
        conversation.attempts.len(),
        1,
        "answered before WeChat's retry"
    );
    let late = wait_for(&w.em, USER, "custom", 1).await;
    assert_eq!(
        late[0],
        json!({"touser": USER, "msgtype": "text", "text": {"content": "the slow answer"}})
    );
    assert_eq!(w.em.token_requests(), 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn rules_send_customer_service_and_template_messages() {
    let ops = r#"
        rule(#{ content: "deploy status" }, |msg| {
            send_template("o_ops_1", "huixin_template_1",
                #{ title: "Deploy status asked", summary: msg.from }, "https://example.com/d");
            send_text("o_ops_1", "asked by " + msg.from);
            send(msg.from, news([article("Status", "all green", "https://example.com/s", "")]));
            "on its way"
        });
        rule(#{ content: "bad" }, |msg| { send_text("", "x"); "unreachable" });
    "#;
    let w = wired(&[("ops.rhai", ops)], "").await;
    let c = w.em.emu.send(USER, text("deploy status")).await.unwrap();
    assert!(
        matches!(&c.user_saw, UserSaw::Reply { reply } if reply.to_string().contains("on its way")),
        "{c:?}"
    );
    let templates = wait_for(&w.em, "o_ops_1", "template", 1).await;
    assert_eq!(
        templates[0]["data"]["title"],
        json!({"value": "Deploy status asked"})
    );
    assert_eq!(templates[0]["data"]["summary"], json!({"value": USER}));
    assert_eq!(templates[0]["url"], "https://example.com/d");
    let texts = wait_for(&w.em, "o_ops_1", "custom", 1).await;
    assert_eq!(texts[0]["text"]["content"], format!("asked by {USER}"));
    let news = wait_for(&w.em, USER, "custom", 1).await;
    assert_eq!(news[0]["msgtype"], "news");
    assert_eq!(news[0]["news"]["articles"][0]["title"], "Status");

    // A bad argument is the rule's error: the fallback (`success`), nothing sent.
    let c = w.em.emu.send(USER, text("bad")).await.unwrap();
    assert_eq!(c.user_saw, UserSaw::Nothing, "{c:?}");
    assert_eq!(w.em.calls_to(CUSTOM_SEND).len(), 2);
}
