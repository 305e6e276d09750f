//! The simulator builds every message and event type in the shape huixin parses fully, and
//! checks replies as WeChat would.

use crate::common;

use clap::Parser;
use common::{MODES, start};
use huixin::bot::echo;
use huixin::cli::{Cli, Command};
use huixin::simulator::{Header, MessageSpec};
use huixin::wechat::{Message, MessageKind, Reply};

/// Every subcommand with its defaults, and the type or event it must parse as.
const CASES: &[(&[&str], &str)] = &[
    (&["text", "hi"], "text"),
    (&["image"], "image"),
    (&["voice", "--recognition", "你好"], "voice"),
    (&["video"], "video"),
    (&["shortvideo"], "shortvideo"),
    (&["location"], "location"),
    (&["link"], "link"),
    (&["miniprogram"], "miniprogrampage"),
    (&["subscribe"], "subscribe"),
    (&["subscribe", "--scene", "7"], "subscribe"),
    (&["unsubscribe"], "unsubscribe"),
    (&["scan", "7"], "scan"),
    (&["location-event"], "location"),
    (&["click", "menu_1"], "click"),
    (&["view", "https://example.com", "--menu-id", "3"], "view"),
    (&["view-miniprogram", "pages/a/a"], "view_miniprogram"),
    (&["scancode-push", "scan_1"], "scancode_push"),
    (&["scancode-waitmsg", "scan_2"], "scancode_waitmsg"),
    (&["pics", "p1", "--md5", "a", "--md5", "b"], "pic_sysphoto"),
    (
        &["pics", "--event", "pic_photo_or_album", "p2"],
        "pic_photo_or_album",
    ),
    (&["pics", "--event", "pic_weixin", "p3"], "pic_weixin"),
    (&["location-select", "loc_1"], "location_select"),
    (
        &["template-finish", "--status", "failed:user block"],
        "templatesendjobfinish",
    ),
    (&["mass-finish"], "masssendjobfinish"),
    (&["publish-finish"], "publishjobfinish"),
    (
        &[
            "publish-finish",
            "--status",
            "2",
            "--fail-idx",
            "1",
            "--fail-idx",
            "2",
        ],
        "publishjobfinish",
    ),
    (
        &["subscribe-msg", "--template", "t1", "--template", "t2"],
        "subscribe_msg_popup_event",
    ),
    (
        &["subscribe-msg", "--kind", "change"],
        "subscribe_msg_change_event",
    ),
    (
        &["subscribe-msg", "--kind", "sent"],
        "subscribe_msg_sent_event",
    ),
    (&["kf"], "kf_create_session"),
    (&["kf", "--kind", "close"], "kf_close_session"),
    (&["kf", "--kind", "switch"], "kf_switch_session"),
    (
        &["event", "user_teleported", "--key", "k"],
        "user_teleported",
    ),
];

fn spec(args: &[&str]) -> MessageSpec {
    let mut argv = vec!["huixin", "simulate"];
    argv.extend_from_slice(args);
    match Cli::try_parse_from(argv).unwrap().command {
        Command::Simulate(s) => s.message.unwrap(),
        other => panic!("{other:?}"),
    }
}

fn type_name(msg: &Message) -> String {
    match &msg.kind {
        MessageKind::Event(e) => e.name().to_owned(),
        kind => kind.msg_type().to_owned(),
    }
}

#[test]
fn every_spec_parses_as_its_type_without_degrading() {
    for (args, expected) in CASES {
        let xml = spec(args)
            .to_xml(&Header::new("gh_test", "o_user"))
            .unwrap();
        let msg = Message::parse(xml.as_bytes()).unwrap_or_else(|e| panic!("{args:?}: {e}\n{xml}"));
        assert_eq!(type_name(&msg), *expected, "{args:?}");
        assert_eq!(msg.degraded, None, "{args:?}: {xml}");
        assert_eq!(msg.msg_id.is_some(), msg.is_user_message(), "{args:?}");
    }
}

#[test]
fn extra_fields_ride_along() {
    let mut header = Header::new("gh_test", "o_user");
    header.extra = vec![("NewField".into(), "new value".into())];
    let xml = spec(&["text", "hi"]).to_xml(&header).unwrap();
    let msg = Message::parse(xml.as_bytes()).unwrap();
    assert_eq!(msg.raw.text_of("NewField"), Some("new value"));
}

#[tokio::test]
async fn every_spec_is_answered_in_every_mode() {
    for mode in MODES {
        let server = start(mode, echo::router()).await;
        for (args, _) in CASES {
            let xml = spec(args)
                .to_xml(&Header::new("gh_test", "o_user"))
                .unwrap();
            let exchange = server.sim.send(&xml, "o_user").await.unwrap();
            assert_eq!(exchange.status, 200, "{mode:?} {args:?}: {}", exchange.body);
        }
    }
}

#[tokio::test]
async fn replies_wechat_would_refuse_are_reported() {
    use axum::routing::post;
    // A misbehaving server: answers an encrypted request in plaintext, and swaps nothing.
    let app = axum::Router::new().route(
        "/wechat",
        post(|| async {
            "<xml><ToUserName>gh_test</ToUserName><FromUserName>o_user</FromUserName>\
             <CreateTime>1</CreateTime><MsgType>text</MsgType><Content>hi</Content></xml>"
        }),
    );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}/wechat", listener.local_addr().unwrap());
    tokio::spawn(async move { axum::serve(listener, app).await });
    let xml = spec(&["text", "hi"])
        .to_xml(&Header::new("gh_test", "o_user"))
        .unwrap();

    let safe = common::simulator(&url, huixin::wechat::Mode::Safe, common::APP_ID);
    let err = safe.send(&xml, "o_user").await.unwrap_err();
    assert!(err.to_string().contains("not"), "{err}");

    let plain = common::simulator(&url, huixin::wechat::Mode::Plain, common::APP_ID);
    let err = plain.send(&xml, "o_user").await.unwrap_err();
    assert!(err.to_string().contains("expected from"), "{err}");

    // A correct reply passes.
    let server = start(huixin::wechat::Mode::Safe, echo::router()).await;
    let exchange = server.sim.send(&xml, "o_user").await.unwrap();
    assert_eq!(exchange.reply.unwrap().reply, Reply::text("hi"));
}
