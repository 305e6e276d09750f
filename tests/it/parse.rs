//! Parses every fixture under `tests/fixtures/` with [`Message::parse`] and checks the typed
//! view field by field.
//!
//! - `fixtures/messages/*.xml`: one valid body per message type and event, named after it
//!   (`event_scan.xml` is a `SCAN` event). Every file must parse, and its name must agree with
//!   what it parses as, so a fixture for an unsupported type fails here.
//! - `fixtures/adversarial/ok_*.xml` must parse, `bad_*.xml` must be refused with a specific
//!   error, `oversized.xml` is a valid text message over 256 KiB (the HTTP tests use it for the
//!   body limit). Every file there is listed in [`ADVERSARIAL`], so a new one needs a test.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

use huixin::wechat::message::{
    ArticleUrl, CopyrightCheck, CopyrightCheckItem, EVENT_NAMES, LocationReport, LocationSelect,
    MSG_TYPES, MassSendJobFinish, PublishJobFinish, PublishedArticle, Scan, ScanCode, SendPics,
    SendStatus, Subscribe, SubscribeMsgChangeItem, SubscribeMsgPopupItem, SubscribeMsgSentItem,
    TemplateSendJobFinish,
};
use huixin::wechat::xml::{self, Element, XmlError};
use huixin::wechat::{Event, MediaId, Message, MessageKind, MsgId, ParseError, TemplateId};

// ------------------------------------------------------------------------------------------
// Helpers

fn fixtures_dir(sub: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fixtures")
        .join(sub)
}

fn bytes(rel: &str) -> Vec<u8> {
    let path = fixtures_dir(rel);
    std::fs::read(&path).unwrap_or_else(|e| panic!("fixture {}: {e}", path.display()))
}

/// Every `*.xml` file name in a fixture folder, sorted.
fn names_in(sub: &str) -> Vec<String> {
    let mut names: Vec<String> = std::fs::read_dir(fixtures_dir(sub))
        .unwrap_or_else(|e| panic!("fixtures/{sub}: {e}"))
        .map(|entry| entry.expect("readable dir entry").file_name())
        .map(|name| name.to_string_lossy().into_owned())
        .filter(|name| name.ends_with(".xml"))
        .collect();
    names.sort();
    names
}

/// Parses a fixture that must parse.
fn parse(rel: &str) -> Message {
    Message::parse(&bytes(rel)).unwrap_or_else(|e| panic!("{rel} should parse: {e} ({e:?})"))
}

/// Parses a fixture under `messages/` and checks the header every such fixture shares.
fn message(name: &str) -> Message {
    let msg = parse(&format!("messages/{name}"));
    assert_eq!(msg.to, "gh_fixture_account", "{name}: ToUserName");
    assert!(
        msg.from.as_str().starts_with("oFixtureUser_"),
        "{name}: FromUserName {:?}",
        msg.from
    );
    msg
}

/// Parses a fixture under `adversarial/` that must parse.
fn ok(name: &str) -> Message {
    assert!(name.starts_with("ok_") || name == "oversized.xml");
    parse(&format!("adversarial/{name}"))
}

/// Parses a fixture under `adversarial/` that must be refused; returns the error.
fn bad(name: &str) -> ParseError {
    assert!(name.starts_with("bad_"));
    match Message::parse(&bytes(&format!("adversarial/{name}"))) {
        Ok(msg) => panic!("{name} should be refused, parsed as {:?}", msg.kind),
        Err(e) => e,
    }
}

/// The event of an event message, or a panic naming what it was instead.
fn event(msg: &Message) -> &Event {
    assert_eq!(msg.msg_id, None, "events carry no message id");
    assert!(!msg.is_user_message());
    msg.event()
        .unwrap_or_else(|| panic!("expected an event, got {:?}", msg.kind))
}

fn unexpected<T: std::fmt::Debug>(what: &T) -> ! {
    panic!("unexpected variant: {what:?}")
}

/// Canonical `MsgType`s of user messages: huixin's list without `event`.
fn msg_types() -> Vec<&'static str> {
    MSG_TYPES.into_iter().filter(|t| *t != "event").collect()
}

/// The longest name in `names` that `stem` is or starts with (followed by `_`).
fn longest_prefix<'a>(stem: &str, names: &[&'a str]) -> Option<&'a str> {
    names
        .iter()
        .copied()
        .filter(|n| {
            stem == *n
                || stem
                    .strip_prefix(n)
                    .is_some_and(|rest| rest.starts_with('_'))
        })
        .max_by_key(|n| n.len())
}

/// What a `messages/` fixture name says it is: (`MsgType`, event name).
fn expected_from_name(file: &str) -> (&'static str, Option<&'static str>) {
    let stem = file.strip_suffix(".xml").expect("an .xml file");
    match stem.strip_prefix("event_") {
        Some(rest) => {
            let name = longest_prefix(rest, &EVENT_NAMES)
                .unwrap_or_else(|| panic!("{file}: no known event named by the file"));
            ("event", Some(name))
        }
        None => {
            let ty = longest_prefix(stem, &msg_types())
                .unwrap_or_else(|| panic!("{file}: no known message type named by the file"));
            (ty, None)
        }
    }
}

// ------------------------------------------------------------------------------------------
// Every fixture under messages/

#[test]
fn every_message_fixture_parses_as_its_name_says() {
    let names = names_in("messages");
    assert!(names.len() >= 39, "only {} message fixtures", names.len());
    let mut msg_ids: BTreeMap<u64, String> = BTreeMap::new();
    let mut seen_types = BTreeSet::new();
    let mut seen_events = BTreeSet::new();
    for name in &names {
        let msg = message(name);
        let (ty, ev) = expected_from_name(name);
        assert_eq!(msg.kind.msg_type(), ty, "{name}: canonical MsgType");
        assert!(
            msg.msg_type().eq_ignore_ascii_case(ty),
            "{name}: raw MsgType {:?}",
            msg.msg_type()
        );
        assert!(
            !matches!(msg.kind, MessageKind::Unknown { .. }),
            "{name}: parsed as an unknown MsgType"
        );
        assert!(msg.create_time > 1_600_000_000, "{name}: CreateTime");
        match ev {
            Some(ev) => {
                let e = event(&msg);
                assert!(
                    !matches!(e, Event::Unknown { .. }),
                    "{name}: parsed as an unknown event {e:?}"
                );
                assert_eq!(e.name(), ev, "{name}: canonical event name");
                let raw_name = msg.event_name().expect("an event has a name");
                assert!(raw_name.eq_ignore_ascii_case(ev), "{name}: {raw_name:?}");
                seen_events.insert(ev);
            }
            None => {
                assert!(msg.is_user_message());
                assert_eq!(msg.event(), None);
                assert_eq!(msg.event_name(), None);
                assert_eq!(msg.event_key(), None);
                let id = msg
                    .msg_id
                    .unwrap_or_else(|| panic!("{name}: user message without MsgId"));
                if let Some(other) = msg_ids.insert(id.0, name.clone()) {
                    panic!("{name} and {other} share MsgId {id}");
                }
                seen_types.insert(ty);
            }
        }
    }
    let missing_types: Vec<_> = msg_types()
        .into_iter()
        .filter(|t| !seen_types.contains(*t))
        .collect();
    let missing_events: Vec<_> = EVENT_NAMES
        .iter()
        .filter(|e| !seen_events.contains(*e))
        .collect();
    assert!(
        missing_types.is_empty() && missing_events.is_empty(),
        "no fixture for {missing_types:?} {missing_events:?}"
    );
}

#[test]
fn the_required_message_fixtures_exist() {
    let names: BTreeSet<String> = names_in("messages").into_iter().collect();
    for required in [
        "text.xml",
        "text_from_article.xml",
        "text_menu.xml",
        "image.xml",
        "voice.xml",
        "voice_recognition.xml",
        "video.xml",
        "shortvideo.xml",
        "location.xml",
        "link.xml",
        "miniprogrampage.xml",
        "event_subscribe.xml",
        "event_subscribe_qrscene.xml",
        "event_subscribe_qrscene_0.xml",
        "event_subscribe_last_trade_no.xml",
        "event_unsubscribe.xml",
        "event_scan.xml",
        "event_location.xml",
        "event_click.xml",
        "event_view.xml",
        "event_view_miniprogram.xml",
        "event_scancode_push.xml",
        "event_scancode_waitmsg.xml",
        "event_pic_sysphoto.xml",
        "event_pic_photo_or_album.xml",
        "event_pic_weixin.xml",
        "event_location_select.xml",
        "event_templatesendjobfinish.xml",
        "event_templatesendjobfinish_user_block.xml",
        "event_templatesendjobfinish_system_failed.xml",
        "event_masssendjobfinish.xml",
        "event_publishjobfinish.xml",
        "event_publishjobfinish_failed.xml",
        "event_subscribe_msg_popup_event.xml",
        "event_subscribe_msg_change_event.xml",
        "event_subscribe_msg_sent_event.xml",
        "event_kf_create_session.xml",
        "event_kf_close_session.xml",
        "event_kf_switch_session.xml",
    ] {
        assert!(
            names.contains(required),
            "missing fixture messages/{required}"
        );
    }
}

/// Rendering `raw` back to XML and parsing it again gives the same message.
#[test]
fn every_message_fixture_survives_a_raw_round_trip() {
    for name in names_in("messages") {
        let msg = message(&name);
        let again = Message::parse(msg.raw.to_xml().as_bytes())
            .unwrap_or_else(|e| panic!("{name}: re-parse of raw.to_xml(): {e}"));
        assert_eq!(again.kind, msg.kind, "{name}");
        assert_eq!(again.msg_id, msg.msg_id, "{name}");
        assert_eq!(again.create_time, msg.create_time, "{name}");
        assert_eq!(again.from, msg.from, "{name}");
        assert_eq!(again.to, msg.to, "{name}");
    }
}

// ------------------------------------------------------------------------------------------
// User messages

#[test]
fn text() {
    let msg = message("text.xml");
    assert_eq!(msg.from, "oFixtureUser_text");
    assert_eq!(msg.create_time, 1_700_000_001);
    // Above 2^53: only an integer type holds it exactly.
    assert_eq!(msg.msg_id, Some(MsgId(24_470_000_000_000_001)));
    assert_eq!(msg.content(), Some("你好，回信 huixin!"));
    assert_eq!(msg.media_id(), None);
    let MessageKind::Text(t) = &msg.kind else {
        unexpected(&msg.kind)
    };
    assert_eq!(t.content, "你好，回信 huixin!");
    assert_eq!(t.msg_data_id, None);
    assert_eq!(t.idx, None);
    assert_eq!(t.biz_msg_menu_id, None);
}

#[test]
fn text_from_article() {
    let msg = message("text_from_article.xml");
    assert_eq!(msg.msg_id, Some(MsgId(24_470_000_000_000_002)));
    let MessageKind::Text(t) = &msg.kind else {
        unexpected(&msg.kind)
    };
    assert_eq!(t.content, "写得真好");
    assert_eq!(t.msg_data_id, Some(2_247_483_660));
    assert_eq!(t.idx, Some(2));
    assert_eq!(t.biz_msg_menu_id, None);
}

#[test]
fn text_menu() {
    let msg = message("text_menu.xml");
    assert_eq!(msg.msg_id, Some(MsgId(24_470_000_000_000_003)));
    let MessageKind::Text(t) = &msg.kind else {
        unexpected(&msg.kind)
    };
    assert_eq!(t.content, "满意");
    assert_eq!(t.biz_msg_menu_id.as_deref(), Some("101"));
    assert_eq!(t.msg_data_id, None);
    assert_eq!(t.idx, None);
}

#[test]
fn image() {
    let msg = message("image.xml");
    assert_eq!(msg.msg_id, Some(MsgId(24_470_000_000_000_004)));
    assert_eq!(msg.media_id(), Some(&MediaId::from("media_image_Fx01")));
    assert_eq!(msg.content(), None);
    let MessageKind::Image(i) = &msg.kind else {
        unexpected(&msg.kind)
    };
    assert_eq!(i.pic_url, "http://mmbiz.qpic.cn/mmbiz_jpg/fixture/0");
    assert_eq!(i.media_id, "media_image_Fx01");
}

#[test]
fn voice() {
    let msg = message("voice.xml");
    assert_eq!(msg.msg_id, Some(MsgId(24_470_000_000_000_005)));
    assert_eq!(msg.media_id(), Some(&MediaId::from("media_voice_Fx01")));
    let MessageKind::Voice(v) = &msg.kind else {
        unexpected(&msg.kind)
    };
    assert_eq!(v.media_id, "media_voice_Fx01");
    assert_eq!(v.format, "amr");
    assert_eq!(v.recognition, None);
}

#[test]
fn voice_recognition() {
    let msg = message("voice_recognition.xml");
    assert_eq!(msg.msg_id, Some(MsgId(24_470_000_000_000_006)));
    let MessageKind::Voice(v) = &msg.kind else {
        unexpected(&msg.kind)
    };
    assert_eq!(v.media_id, "media_voice_Fx02");
    assert_eq!(v.format, "speex");
    assert_eq!(v.recognition.as_deref(), Some("腾讯微信团队"));
}

#[test]
fn video() {
    let msg = message("video.xml");
    assert_eq!(msg.msg_id, Some(MsgId(24_470_000_000_000_007)));
    assert_eq!(msg.media_id(), Some(&MediaId::from("media_video_Fx01")));
    let MessageKind::Video(v) = &msg.kind else {
        unexpected(&msg.kind)
    };
    assert_eq!(v.media_id, "media_video_Fx01");
    assert_eq!(v.thumb_media_id, "thumb_video_Fx01");
}

#[test]
fn shortvideo() {
    let msg = message("shortvideo.xml");
    assert_eq!(msg.msg_id, Some(MsgId(24_470_000_000_000_008)));
    assert_eq!(
        msg.media_id(),
        Some(&MediaId::from("media_shortvideo_Fx01"))
    );
    let MessageKind::ShortVideo(v) = &msg.kind else {
        unexpected(&msg.kind)
    };
    assert_eq!(v.media_id, "media_shortvideo_Fx01");
    assert_eq!(v.thumb_media_id, "thumb_shortvideo_Fx01");
}

#[test]
fn location() {
    let msg = message("location.xml");
    assert_eq!(msg.msg_id, Some(MsgId(24_470_000_000_000_009)));
    let MessageKind::Location(l) = &msg.kind else {
        unexpected(&msg.kind)
    };
    assert_eq!(l.latitude, 23.134521);
    assert_eq!(l.longitude, 113.358803);
    assert_eq!(l.scale, 20);
    assert_eq!(l.label, "广州市海珠区新港中路397号");
}

#[test]
fn link() {
    let msg = message("link.xml");
    assert_eq!(msg.msg_id, Some(MsgId(24_470_000_000_000_010)));
    let MessageKind::Link(l) = &msg.kind else {
        unexpected(&msg.kind)
    };
    assert_eq!(l.title, "公众平台官网链接");
    assert_eq!(l.description, "公众平台官网链接 & more");
    assert_eq!(
        l.url,
        "https://mp.weixin.qq.com/s?__biz=MzFixture&mid=1&idx=1"
    );
}

#[test]
fn miniprogrampage() {
    let msg = message("miniprogrampage.xml");
    assert_eq!(msg.msg_id, Some(MsgId(24_470_000_000_000_011)));
    assert_eq!(msg.media_id(), None);
    let MessageKind::MiniProgramPage(p) = &msg.kind else {
        unexpected(&msg.kind)
    };
    assert_eq!(p.app_id, "wx0fixture0appid0");
    assert_eq!(p.title, "小程序卡片");
    assert_eq!(p.page_path, "pages/index/index?id=42");
    assert_eq!(p.thumb_url, "http://mmbiz.qpic.cn/mmbiz_jpg/fixture/thumb");
    assert_eq!(p.thumb_media_id, "thumb_mp_Fx01");
}

// ------------------------------------------------------------------------------------------
// Events

#[test]
fn event_subscribe_plain() {
    let msg = message("event_subscribe.xml");
    assert_eq!(msg.event_name(), Some("subscribe"));
    // The empty `<EventKey><![CDATA[]]></EventKey>` of a plain follow reads as absent.
    assert_eq!(
        event(&msg),
        &Event::Subscribe(Subscribe {
            event_key: None,
            scene: None,
            ticket: None,
        })
    );
    assert_eq!(msg.event_key(), None);
}

#[test]
fn event_subscribe_qrscene() {
    let msg = message("event_subscribe_qrscene.xml");
    assert_eq!(
        event(&msg),
        &Event::Subscribe(Subscribe {
            event_key: Some("qrscene_123".into()),
            scene: Some("123".into()),
            ticket: Some("gQFx8DwAAAAAAAAAAS5odHRwOi8vd2VpeGluLnFxLmNvbS9xLzAyZml4dHVyZQ==".into()),
        })
    );
    // Normalised: the same key a later SCAN of this code carries.
    assert_eq!(msg.event_key(), Some("123"));
}

#[test]
fn event_subscribe_qrscene_0() {
    let msg = message("event_subscribe_qrscene_0.xml");
    let Event::Subscribe(s) = event(&msg) else {
        unexpected(&msg.kind)
    };
    assert_eq!(s.event_key.as_deref(), Some("qrscene_0"));
    assert_eq!(s.scene.as_deref(), Some("0"), "scene 0 is a real scene");
    assert!(s.ticket.is_some());
    assert_eq!(msg.event_key(), Some("0"));
}

#[test]
fn event_subscribe_last_trade_no() {
    let msg = message("event_subscribe_last_trade_no.xml");
    assert_eq!(
        event(&msg),
        &Event::Subscribe(Subscribe {
            event_key: Some("last_trade_no_4200001234202401011234567890".into()),
            scene: None,
            ticket: None,
        })
    );
    assert_eq!(
        msg.event_key(),
        Some("last_trade_no_4200001234202401011234567890")
    );
}

#[test]
fn event_unsubscribe() {
    let msg = message("event_unsubscribe.xml");
    assert_eq!(event(&msg), &Event::Unsubscribe);
    assert_eq!(msg.event_key(), None);
}

#[test]
fn event_scan() {
    let msg = message("event_scan.xml");
    assert_eq!(msg.event_name(), Some("SCAN"));
    assert_eq!(
        event(&msg),
        &Event::Scan(Scan {
            scene: "123".into(),
            ticket: Some("gQFx8DwAAAAAAAAAAS5odHRwOi8vd2VpeGluLnFxLmNvbS9xLzAyc2Nhbg==".into()),
        })
    );
    assert_eq!(msg.event_key(), Some("123"));
}

#[test]
fn event_location() {
    let msg = message("event_location.xml");
    assert_eq!(msg.event_name(), Some("LOCATION"));
    assert_eq!(
        event(&msg),
        &Event::Location(LocationReport {
            latitude: 23.137466,
            longitude: 113.352425,
            precision: 119.385040,
        })
    );
}

#[test]
fn event_click() {
    let msg = message("event_click.xml");
    assert_eq!(
        event(&msg),
        &Event::Click {
            key: "V1001_TODAY_MUSIC".into()
        }
    );
    assert_eq!(msg.event_key(), Some("V1001_TODAY_MUSIC"));
}

#[test]
fn event_view() {
    let msg = message("event_view.xml");
    assert_eq!(
        event(&msg),
        &Event::View {
            url: "https://www.example.com/fixture?from=menu".into(),
            menu_id: Some(416_592_808),
        }
    );
}

#[test]
fn event_view_miniprogram() {
    let msg = message("event_view_miniprogram.xml");
    assert_eq!(
        event(&msg),
        &Event::ViewMiniprogram {
            page_path: "pages/index/index".into(),
            menu_id: Some(416_592_809),
        }
    );
}

#[test]
fn event_scancode_push() {
    let msg = message("event_scancode_push.xml");
    assert_eq!(
        event(&msg),
        &Event::ScancodePush(ScanCode {
            key: "rselfmenu_0_1".into(),
            scan_type: "qrcode".into(),
            scan_result: "https://example.com/qr/1".into(),
        })
    );
}

#[test]
fn event_scancode_waitmsg() {
    let msg = message("event_scancode_waitmsg.xml");
    assert_eq!(
        event(&msg),
        &Event::ScancodeWaitmsg(ScanCode {
            key: "rselfmenu_0_0".into(),
            scan_type: "barcode".into(),
            scan_result: "EAN_13,6901234567892".into(),
        })
    );
}

#[test]
fn event_pic_sysphoto() {
    let msg = message("event_pic_sysphoto.xml");
    assert_eq!(
        event(&msg),
        &Event::PicSysphoto(SendPics {
            key: "rselfmenu_1_0".into(),
            count: 1,
            pic_md5_sums: vec!["1b5f7c23b5bf75682a53e7b6d163e185".into()],
        })
    );
}

#[test]
fn event_pic_photo_or_album() {
    let msg = message("event_pic_photo_or_album.xml");
    assert_eq!(
        event(&msg),
        &Event::PicPhotoOrAlbum(SendPics {
            key: "rselfmenu_1_1".into(),
            count: 2,
            pic_md5_sums: vec![
                "5a75aaca956d97be686719218f275c6b".into(),
                "ec9e9b4be7d4e7fcd0e4e0ac6c6a7e1b".into(),
            ],
        })
    );
}

#[test]
fn event_pic_weixin() {
    let msg = message("event_pic_weixin.xml");
    let Event::PicWeixin(pics) = event(&msg) else {
        unexpected(&msg.kind)
    };
    assert_eq!(pics.key, "rselfmenu_1_2");
    assert_eq!(pics.count, 3);
    assert_eq!(pics.pic_md5_sums.len(), 3);
    assert_eq!(
        pics.pic_md5_sums,
        [
            "00000000000000000000000000000001",
            "00000000000000000000000000000002",
            "00000000000000000000000000000003",
        ]
    );
}

#[test]
fn event_location_select() {
    let msg = message("event_location_select.xml");
    assert_eq!(
        event(&msg),
        &Event::LocationSelect(LocationSelect {
            key: "rselfmenu_2_0".into(),
            latitude: 23.1366,
            longitude: 113.3248,
            scale: 15,
            // Leading space as WeChat's own sample sends it: text is never trimmed.
            label: " 广州市海珠区客村艺苑路 106号".into(),
            poiname: Some("广州塔".into()),
        })
    );
}

#[test]
fn event_templatesendjobfinish() {
    let msg = message("event_templatesendjobfinish.xml");
    assert_eq!(msg.event_name(), Some("TEMPLATESENDJOBFINISH"));
    // The event's MsgID belongs to the event, not to the message.
    assert_eq!(msg.msg_id, None);
    assert_eq!(msg.raw.text_of("MsgID"), Some("200163836"));
    assert_eq!(
        event(&msg),
        &Event::TemplateSendJobFinish(TemplateSendJobFinish {
            msg_id: MsgId(200_163_836),
            status: SendStatus::Success,
        })
    );
}

#[test]
fn event_templatesendjobfinish_user_block() {
    let msg = message("event_templatesendjobfinish_user_block.xml");
    assert_eq!(
        event(&msg),
        &Event::TemplateSendJobFinish(TemplateSendJobFinish {
            msg_id: MsgId(200_163_840),
            status: SendStatus::UserBlock,
        })
    );
}

#[test]
fn event_templatesendjobfinish_system_failed() {
    let msg = message("event_templatesendjobfinish_system_failed.xml");
    assert_eq!(
        event(&msg),
        &Event::TemplateSendJobFinish(TemplateSendJobFinish {
            msg_id: MsgId(200_163_841),
            status: SendStatus::SystemFailed,
        })
    );
}

#[test]
fn event_masssendjobfinish() {
    let msg = message("event_masssendjobfinish.xml");
    assert_eq!(msg.msg_id, None);
    let item = |idx, url: &str, can_reprint, need_replace_content| CopyrightCheckItem {
        article_idx: idx,
        user_declare_state: 0,
        audit_state: 2,
        original_article_url: url.into(),
        original_article_type: 1,
        can_reprint,
        need_replace_content,
        need_show_reprint_source: true,
    };
    assert_eq!(
        event(&msg),
        &Event::MassSendJobFinish(MassSendJobFinish {
            msg_id: MsgId(1_000_001_625),
            status: "send success".into(),
            total_count: 120,
            filter_count: 118,
            sent_count: 117,
            error_count: 1,
            copyright_check: Some(CopyrightCheck {
                count: 2,
                check_state: 2,
                items: vec![item(1, "Url_1", true, true), item(2, "Url_2", false, false)],
            }),
            article_urls: vec![ArticleUrl {
                article_idx: 1,
                url: "https://mp.weixin.qq.com/s/fixture_mass_1".into(),
            }],
        })
    );
}

#[test]
fn event_publishjobfinish() {
    let msg = message("event_publishjobfinish.xml");
    assert_eq!(
        event(&msg),
        &Event::PublishJobFinish(PublishJobFinish {
            publish_id: 2_247_503_051,
            publish_status: 0,
            article_id: Some("b5O2OUs25HBxRceL7hfReg-U9QGeq9zQjiDvyWP4Hq4".into()),
            articles: vec![
                PublishedArticle {
                    idx: 1,
                    url: "https://mp.weixin.qq.com/s/fixture_publish_1".into(),
                },
                PublishedArticle {
                    idx: 2,
                    url: "https://mp.weixin.qq.com/s/fixture_publish_2".into(),
                },
            ],
            fail_idx: vec![],
        })
    );
}

#[test]
fn event_publishjobfinish_failed() {
    let msg = message("event_publishjobfinish_failed.xml");
    assert_eq!(
        event(&msg),
        &Event::PublishJobFinish(PublishJobFinish {
            publish_id: 2_247_503_052,
            publish_status: 2,
            article_id: None,
            articles: vec![],
            fail_idx: vec![1, 3],
        })
    );
}

#[test]
fn event_subscribe_msg_popup_event() {
    let msg = message("event_subscribe_msg_popup_event.xml");
    assert_eq!(
        event(&msg),
        &Event::SubscribeMsgPopup(vec![
            SubscribeMsgPopupItem {
                template_id: TemplateId::from("VRR0UEO9VJOLs0MHlU0OilqX6MVFDwH3_3gz3Oc0NIc"),
                status: "accept".into(),
                popup_scene: Some(2),
            },
            SubscribeMsgPopupItem {
                template_id: TemplateId::from("9nLIlbOQZC5Y89AZteFEux3WCXRRRG5Wfzkpssu4bLI"),
                status: "reject".into(),
                popup_scene: Some(2),
            },
        ])
    );
}

#[test]
fn event_subscribe_msg_change_event() {
    let msg = message("event_subscribe_msg_change_event.xml");
    assert_eq!(
        event(&msg),
        &Event::SubscribeMsgChange(vec![SubscribeMsgChangeItem {
            template_id: TemplateId::from("VRR0UEO9VJOLs0MHlU0OilqX6MVFDwH3_3gz3Oc0NIc"),
            status: "reject".into(),
        }])
    );
}

#[test]
fn event_subscribe_msg_sent_event() {
    let msg = message("event_subscribe_msg_sent_event.xml");
    assert_eq!(msg.msg_id, None);
    assert_eq!(
        event(&msg),
        &Event::SubscribeMsgSent(vec![
            SubscribeMsgSentItem {
                template_id: TemplateId::from("VRR0UEO9VJOLs0MHlU0OilqX6MVFDwH3_3gz3Oc0NIc"),
                msg_id: MsgId(1_700_827_132_819_554_304),
                error_code: 0,
                error_status: "success".into(),
            },
            SubscribeMsgSentItem {
                template_id: TemplateId::from("9nLIlbOQZC5Y89AZteFEux3WCXRRRG5Wfzkpssu4bLI"),
                msg_id: MsgId(1_700_827_132_819_554_305),
                error_code: 20004,
                error_status: "failed:user block".into(),
            },
        ])
    );
}

#[test]
fn event_kf_create_session() {
    let msg = message("event_kf_create_session.xml");
    assert_eq!(
        event(&msg),
        &Event::KfCreateSession {
            kf_account: "agent1@gh_fixture".into()
        }
    );
}

#[test]
fn event_kf_close_session() {
    let msg = message("event_kf_close_session.xml");
    assert_eq!(
        event(&msg),
        &Event::KfCloseSession {
            kf_account: "agent1@gh_fixture".into()
        }
    );
}

#[test]
fn event_kf_switch_session() {
    let msg = message("event_kf_switch_session.xml");
    assert_eq!(
        event(&msg),
        &Event::KfSwitchSession {
            from_kf_account: "agent1@gh_fixture".into(),
            to_kf_account: "agent2@gh_fixture".into(),
        }
    );
}

// ------------------------------------------------------------------------------------------
// Adversarial inputs

/// Every file under `adversarial/`, each with its own test below.
const ADVERSARIAL: &[&str] = &[
    "bad_createtime_not_number.xml",
    "bad_deep_nesting.xml",
    "bad_doctype_billion_laughs.xml",
    "bad_doctype_external_entity.xml",
    "bad_doctype_internal_entity.xml",
    "bad_empty.xml",
    "bad_mismatched_tags.xml",
    "bad_missing_fromusername.xml",
    "bad_missing_msgtype.xml",
    "bad_msgid_negative.xml",
    "bad_msgid_not_number.xml",
    "bad_msgid_overflow.xml",
    "bad_trailing_root.xml",
    "bad_truncated_mid_text.xml",
    "bad_truncated_xml.xml",
    "bad_unknown_entity.xml",
    "ok_cdata_terminator.xml",
    "ok_control_chars.xml",
    "ok_createtime_past_2_32.xml",
    "ok_crlf.xml",
    "ok_degraded_fail_idx_not_number.xml",
    "ok_degraded_location_nan.xml",
    "ok_empty_elements.xml",
    "ok_empty_poiname.xml",
    "ok_entities_and_decl.xml",
    "ok_event_case.xml",
    "ok_event_case_lower.xml",
    "ok_event_case_upper.xml",
    "ok_missing_optional_fields.xml",
    "ok_missing_optional_fields_text.xml",
    "ok_msgid_max.xml",
    "ok_msgtype_case.xml",
    "ok_nesting_at_limit.xml",
    "ok_repeated_list.xml",
    "ok_truncated_utf8.xml",
    "ok_unknown_children.xml",
    "ok_unknown_event.xml",
    "ok_unknown_msgtype.xml",
    "oversized.xml",
];

#[test]
fn every_adversarial_fixture_is_classified_and_has_a_test() {
    let names = names_in("adversarial");
    assert_eq!(
        names, ADVERSARIAL,
        "adversarial/ changed: give every new file a test and list it in ADVERSARIAL"
    );
    for name in &names {
        let result = Message::parse(&bytes(&format!("adversarial/{name}")));
        if name.starts_with("bad_") {
            assert!(result.is_err(), "{name} should be refused: {result:?}");
        } else if name.starts_with("ok_") || name == "oversized.xml" {
            assert!(result.is_ok(), "{name} should parse: {result:?}");
        } else {
            panic!("{name}: adversarial fixtures are named ok_* or bad_*");
        }
    }
}

#[test]
fn ok_cdata_terminator() {
    let raw = bytes("adversarial/ok_cdata_terminator.xml");
    assert!(
        raw.windows(32)
            .any(|w| w == b"<![CDATA[a]]]]><![CDATA[>b]]></C".as_slice())
    );
    let msg = ok("ok_cdata_terminator.xml");
    assert_eq!(msg.content(), Some("a]]>b"));
    assert_eq!(msg.msg_id, Some(MsgId(24_470_000_000_000_201)));
}

#[test]
fn ok_control_chars() {
    let raw = bytes("adversarial/ok_control_chars.xml");
    assert!(raw.contains(&0x02) && raw.contains(&0x1d), "raw bytes lost");
    let msg = ok("ok_control_chars.xml");
    assert_eq!(msg.content(), Some("a\u{2}b\u{1d}c"));
    assert_eq!(msg.raw.text_of("Content"), Some("a\u{2}b\u{1d}c"));
}

#[test]
fn ok_truncated_utf8() {
    let raw = bytes("adversarial/ok_truncated_utf8.xml");
    // "你" in full, then "好" (E5 A5 BD) without its last byte, then the CDATA end.
    assert!(
        raw.windows(8)
            .any(|w| w == b"\xe4\xbd\xa0\xe5\xa5]]>".as_slice())
    );
    assert!(
        std::str::from_utf8(&raw).is_err(),
        "fixture must not be UTF-8"
    );
    let msg = ok("ok_truncated_utf8.xml");
    let content = msg.content().expect("a text message");
    assert_eq!(content, "huixin 你\u{FFFD}");
    assert!(content.ends_with('\u{FFFD}'));
    assert_eq!(content.matches('\u{FFFD}').count(), 1);
}

#[test]
fn bad_doctype_internal_entity() {
    assert_eq!(
        bad("bad_doctype_internal_entity.xml"),
        ParseError::Xml(XmlError::Dtd)
    );
}

#[test]
fn bad_doctype_external_entity() {
    let body = bytes("adversarial/bad_doctype_external_entity.xml");
    let err = Message::parse(&body).expect_err("an external entity must be refused");
    assert_eq!(err, ParseError::Xml(XmlError::Dtd));
    assert!(!err.to_string().contains("root:"), "{err}");
    assert_eq!(xml::parse(&body), Err(XmlError::Dtd));
    // Without its DOCTYPE the reference is merely undeclared: still never resolved.
    let text = String::from_utf8(body).expect("UTF-8");
    let start = text.find("<!DOCTYPE").expect("has a DOCTYPE");
    let end = text[start..].find("]>").expect("DOCTYPE ends") + start + 2;
    let stripped = format!("{}{}", &text[..start], &text[end..]);
    assert_eq!(
        Message::parse(stripped.as_bytes()),
        Err(ParseError::Xml(XmlError::Entity("xxe".into())))
    );
}

#[test]
fn bad_doctype_billion_laughs() {
    assert_eq!(
        bad("bad_doctype_billion_laughs.xml"),
        ParseError::Xml(XmlError::Dtd)
    );
}

#[test]
fn ok_msgid_max() {
    let msg = ok("ok_msgid_max.xml");
    assert_eq!(msg.msg_id, Some(MsgId(u64::MAX)));
    assert_eq!(msg.msg_id.unwrap().to_string(), "18446744073709551615");
}

#[test]
fn bad_msgid_overflow() {
    assert_eq!(
        bad("bad_msgid_overflow.xml"),
        ParseError::Invalid {
            field: "MsgId",
            value: "18446744073709551616".into()
        }
    );
}

#[test]
fn bad_msgid_negative() {
    assert_eq!(
        bad("bad_msgid_negative.xml"),
        ParseError::Invalid {
            field: "MsgId",
            value: "-1".into()
        }
    );
}

#[test]
fn ok_createtime_past_2_32() {
    let msg = ok("ok_createtime_past_2_32.xml");
    assert_eq!(msg.create_time, 4_294_967_297);
    assert!(msg.create_time > i64::from(u32::MAX));
    assert_eq!(msg.content(), Some("from the future"));
}

#[test]
fn bad_createtime_not_number() {
    assert_eq!(
        bad("bad_createtime_not_number.xml"),
        ParseError::Invalid {
            field: "CreateTime",
            value: "yesterday".into()
        }
    );
}

#[test]
fn ok_missing_optional_fields() {
    let msg = ok("ok_missing_optional_fields.xml");
    let MessageKind::Voice(v) = &msg.kind else {
        unexpected(&msg.kind)
    };
    assert_eq!(v.media_id, "media_voice_Fx09");
    assert_eq!(v.format, "amr");
    assert_eq!(v.recognition, None);
}

#[test]
fn ok_missing_optional_fields_text() {
    let msg = ok("ok_missing_optional_fields_text.xml");
    let MessageKind::Text(t) = &msg.kind else {
        unexpected(&msg.kind)
    };
    assert_eq!(t.content, "no MsgDataId, no Idx, no menu");
    assert_eq!(
        (t.msg_data_id, t.idx, &t.biz_msg_menu_id),
        (None, None, &None)
    );
}

#[test]
fn ok_empty_elements() {
    // `<Content/>`: a text field that is present but empty reads as empty.
    let msg = ok("ok_empty_elements.xml");
    assert_eq!(msg.content(), Some(""));
    assert_eq!(msg.msg_id, Some(MsgId(24_470_000_000_000_236)));
}

#[test]
fn ok_empty_poiname() {
    let msg = ok("ok_empty_poiname.xml");
    assert_eq!(
        event(&msg),
        &Event::LocationSelect(LocationSelect {
            key: "rselfmenu_2_0".into(),
            latitude: 23.0,
            longitude: 113.0,
            scale: 15,
            label: " 广州市海珠区客村艺苑路 106号".into(),
            poiname: None,
        })
    );
}

#[test]
fn ok_repeated_list() {
    let msg = ok("ok_repeated_list.xml");
    let Event::SubscribeMsgPopup(items) = event(&msg) else {
        unexpected(&msg.kind)
    };
    assert_eq!(items.len(), 3);
    let summary: Vec<(&str, &str, Option<u32>)> = items
        .iter()
        .map(|i| (i.template_id.as_str(), i.status.as_str(), i.popup_scene))
        .collect();
    assert_eq!(
        summary,
        [
            ("tmpl_fixture_A", "accept", Some(0)),
            ("tmpl_fixture_B", "reject", Some(1)),
            ("tmpl_fixture_C", "accept", Some(2)),
        ]
    );
}

#[test]
fn ok_unknown_msgtype() {
    let msg = ok("ok_unknown_msgtype.xml");
    assert_eq!(msg.msg_type(), "hologram");
    assert_eq!(msg.kind.msg_type(), "hologram");
    assert!(msg.is_user_message());
    assert_eq!(msg.msg_id, Some(MsgId(24_470_000_000_000_212)));
    let MessageKind::Unknown { msg_type, fields } = &msg.kind else {
        unexpected(&msg.kind)
    };
    assert_eq!(msg_type, "hologram");
    assert_eq!(
        fields.text_of("HologramUrl"),
        Some("https://example.com/holo/1")
    );
    assert_eq!(fields.text_of("Frames"), Some("240"));
    assert_eq!(fields.text_of("Codec"), Some("hvc1"));
    assert_eq!(fields.text_of("ToUserName"), Some("gh_fixture_account"));
    assert_eq!(fields, &msg.raw);
}

#[test]
fn ok_unknown_event() {
    let msg = ok("ok_unknown_event.xml");
    assert_eq!(msg.event_name(), Some("user_teleported"));
    assert_eq!(msg.event_key(), Some("portal_7"));
    let Event::Unknown {
        event: name,
        fields,
    } = event(&msg)
    else {
        unexpected(&msg.kind)
    };
    assert_eq!(name, "user_teleported");
    assert_eq!(event(&msg).name(), "user_teleported");
    assert_eq!(fields.text_of("Destination"), Some("Mars"));
    assert_eq!(fields.text_of("EventKey"), Some("portal_7"));
    let coords = fields.child("Coordinates").expect("nested element kept");
    assert_eq!(coords.text_of("X"), Some("1.5"));
    assert_eq!(coords.text_of("Y"), Some("-2.25"));
    assert_eq!(coords.children.len(), 2);
}

#[test]
fn ok_unknown_children() {
    let msg = ok("ok_unknown_children.xml");
    let MessageKind::Text(t) = &msg.kind else {
        unexpected(&msg.kind)
    };
    assert_eq!(t.content, "hello");
    assert_eq!(msg.msg_id, Some(MsgId(24_470_000_000_000_214)));
}

#[test]
fn raw_keeps_unknown_children_and_original_case() {
    let msg = ok("ok_unknown_children.xml");
    assert_eq!(msg.raw.name, "xml");
    assert_eq!(msg.raw.text_of("FutureField"), Some("kept in raw"));
    let block = msg.raw.child("FutureBlock").expect("unknown block kept");
    assert_eq!(block.name, "FutureBlock");
    assert_eq!(block.text_of("Count"), Some("2"));
    let inner = block.child("Inner").expect("nested unknown kept");
    assert_eq!(inner.text_of("Leaf"), Some("deep value"));
    let order: Vec<&str> = msg.raw.children.iter().map(|c| c.name.as_str()).collect();
    assert_eq!(
        order,
        [
            "ToUserName",
            "FromUserName",
            "CreateTime",
            "MsgType",
            "Content",
            "MsgId",
            "FutureField",
            "FutureBlock"
        ]
    );

    let scan = ok("ok_event_case.xml");
    assert_eq!(scan.raw.text_of("Event"), Some("Scan"));
    assert_eq!(scan.event_name(), Some("Scan"));
    assert_eq!(event(&scan).name(), "scan");

    let upper = message("event_scan.xml");
    assert_eq!(upper.raw.text_of("Event"), Some("SCAN"));
    assert_eq!(upper.event_name(), Some("SCAN"));
}

#[test]
fn ok_event_case() {
    let msg = ok("ok_event_case.xml");
    assert_eq!(msg.event_name(), Some("Scan"));
    assert_eq!(
        event(&msg),
        &Event::Scan(Scan {
            scene: "777".into(),
            ticket: Some("gQFx8DwAAAAAAAAAAS5odHRwOi8vd2VpeGluLnFxLmNvbS9xLzAyY2FzZQ==".into()),
        })
    );
    assert_eq!(msg.event_key(), Some("777"));
}

#[test]
fn ok_event_case_lower() {
    let msg = ok("ok_event_case_lower.xml");
    assert_eq!(msg.event_name(), Some("templatesendjobfinish"));
    assert_eq!(
        event(&msg),
        &Event::TemplateSendJobFinish(TemplateSendJobFinish {
            msg_id: MsgId(200_163_850),
            status: SendStatus::Success,
        })
    );
}

#[test]
fn ok_event_case_upper() {
    let msg = ok("ok_event_case_upper.xml");
    assert_eq!(msg.event_name(), Some("VIEW_MINIPROGRAM"));
    assert_eq!(event(&msg).name(), "view_miniprogram");
    assert_eq!(
        event(&msg),
        &Event::ViewMiniprogram {
            page_path: "pages/upper/index".into(),
            menu_id: Some(1),
        }
    );
}

#[test]
fn ok_msgtype_case() {
    let msg = ok("ok_msgtype_case.xml");
    assert_eq!(msg.msg_type(), "TEXT");
    assert_eq!(msg.kind.msg_type(), "text");
    assert_eq!(msg.content(), Some("shouting type"));
}

#[test]
fn ok_entities_and_decl() {
    let msg = ok("ok_entities_and_decl.xml");
    assert_eq!(msg.content(), Some("<b> & \"q\" 'a' 你好"));
}

#[test]
fn ok_crlf() {
    let raw = bytes("adversarial/ok_crlf.xml");
    assert!(raw.windows(2).any(|w| w == b"\r\n"), "CRLF lost");
    let msg = ok("ok_crlf.xml");
    // XML 1.0 end-of-line handling: CRLF inside text (CDATA included) reads as LF.
    assert_eq!(msg.content(), Some("line1\nline2"));
    assert_eq!(msg.from, "oFixtureUser_adv");
}

#[test]
fn ok_nesting_at_limit() {
    let msg = ok("ok_nesting_at_limit.xml");
    assert_eq!(msg.content(), Some("deep but allowed"));
    // The root is level 1; L0..L30 take it to level 32, the limit.
    let mut depth = 1;
    let mut el = &msg.raw;
    while let Some(next) = el.children.last() {
        depth += 1;
        el = next;
    }
    assert_eq!(depth, xml::MAX_DEPTH);
    assert_eq!(el.text, "x");
}

#[test]
fn bad_deep_nesting() {
    assert_eq!(
        bad("bad_deep_nesting.xml"),
        ParseError::Xml(XmlError::TooDeep)
    );
}

#[test]
fn bad_truncated_xml() {
    // Cut inside a CDATA section.
    let err = bad("bad_truncated_xml.xml");
    assert!(
        matches!(&err, ParseError::Xml(XmlError::Syntax(m)) if m.contains("CDATA")),
        "{err:?}"
    );
}

#[test]
fn bad_truncated_mid_text() {
    assert_eq!(
        bad("bad_truncated_mid_text.xml"),
        ParseError::Xml(XmlError::Unclosed("Content".into()))
    );
}

#[test]
fn bad_msgid_not_number() {
    assert_eq!(
        bad("bad_msgid_not_number.xml"),
        ParseError::Invalid {
            field: "MsgId",
            value: "not-a-number".into()
        }
    );
}

#[test]
fn bad_unknown_entity() {
    assert_eq!(
        bad("bad_unknown_entity.xml"),
        ParseError::Xml(XmlError::Entity("nbsp".into()))
    );
}

#[test]
fn bad_empty() {
    assert_eq!(bad("bad_empty.xml"), ParseError::Xml(XmlError::Empty));
}

#[test]
fn bad_missing_msgtype() {
    assert_eq!(
        bad("bad_missing_msgtype.xml"),
        ParseError::Missing("MsgType")
    );
}

#[test]
fn bad_missing_fromusername() {
    assert_eq!(
        bad("bad_missing_fromusername.xml"),
        ParseError::Missing("FromUserName")
    );
}

#[test]
fn ok_degraded_location_nan() {
    let msg = ok("ok_degraded_location_nan.xml");
    // A known type whose field does not parse degrades to Unknown, keeping every raw field.
    let MessageKind::Unknown { msg_type, fields } = &msg.kind else {
        unexpected(&msg.kind)
    };
    assert_eq!(msg_type, "location");
    assert_eq!(fields.text_of("Location_X"), Some("NaN"));
    assert_eq!(fields.text_of("Label"), Some("nowhere"));
    assert_eq!(
        msg.degraded,
        Some(ParseError::Invalid {
            field: "Location_X",
            value: "NaN".into()
        })
    );
    // The header stays typed.
    assert_eq!(msg.msg_id, Some(MsgId(24470000000000228)));
    assert_eq!(msg.from.as_str(), "oFixtureUser_adv");
}

#[test]
fn ok_degraded_fail_idx_not_number() {
    let msg = ok("ok_degraded_fail_idx_not_number.xml");
    let Event::Unknown { event, fields } = event(&msg) else {
        unexpected(&msg.kind)
    };
    assert_eq!(event, "PUBLISHJOBFINISH");
    assert!(fields.child("PublishEventInfo").is_some());
    assert_eq!(
        msg.degraded,
        Some(ParseError::Invalid {
            field: "fail_idx",
            value: "first".into()
        })
    );
    assert_eq!(msg.event_name(), Some("PUBLISHJOBFINISH"));
}

#[test]
fn fully_typed_messages_are_not_degraded() {
    for name in names_in("messages") {
        assert_eq!(message(&name).degraded, None, "{name}");
    }
}

#[test]
fn bad_trailing_root() {
    assert_eq!(
        bad("bad_trailing_root.xml"),
        ParseError::Xml(XmlError::Trailing)
    );
}

#[test]
fn bad_mismatched_tags() {
    let err = bad("bad_mismatched_tags.xml");
    assert!(
        matches!(&err, ParseError::Xml(XmlError::Syntax(m)) if m.contains("</Contents>")),
        "{err:?}"
    );
}

#[test]
fn oversized_is_a_valid_text_message_over_256_kib() {
    let raw = bytes("adversarial/oversized.xml");
    assert!(raw.len() > 262_144, "only {} bytes", raw.len());
    let msg = ok("oversized.xml");
    let content = msg.content().expect("a text message");
    assert!(content.len() > 262_144 - 1024, "{}", content.len());
    assert!(content.chars().all(|c| matches!(c, '回' | '信' | '\n')));
    assert_eq!(msg.msg_id, Some(MsgId(24_470_000_000_000_300)));
}

// ------------------------------------------------------------------------------------------
// Rules that need no file of their own

#[test]
fn raw_element_of_a_fixture_is_the_whole_tree() {
    let msg = message("event_masssendjobfinish.xml");
    let results = msg
        .raw
        .child("CopyrightCheckResult")
        .and_then(|c| c.child("ResultList"))
        .expect("nested list kept");
    assert_eq!(results.children_named("item").count(), 2);
    assert_eq!(
        results.children[1].text_of("OriginalArticleUrl"),
        Some("Url_2")
    );
    let _: &Element = &msg.raw;
}

fn subscribe_with_key(key: &str) -> Message {
    let xml = format!(
        "<xml><ToUserName>gh</ToUserName><FromUserName>o</FromUserName><CreateTime>1</CreateTime>\
         <MsgType>event</MsgType><Event>subscribe</Event><EventKey><![CDATA[{key}]]></EventKey></xml>"
    );
    Message::parse(xml.as_bytes()).unwrap()
}

#[test]
fn subscribe_key_edge_cases() {
    let scene = |m: &Message| match m.event() {
        Some(Event::Subscribe(s)) => s.scene.clone(),
        other => panic!("subscribe expected, got {other:?}"),
    };
    // A bare prefix is no scene; surrounding whitespace is not part of the key.
    let bare = subscribe_with_key("qrscene_");
    assert_eq!(scene(&bare), None);
    assert_eq!(bare.event_key(), Some("qrscene_"));
    let padded = subscribe_with_key(" qrscene_5 ");
    assert_eq!(scene(&padded), Some("5".to_owned()));
    assert_eq!(padded.event_key(), Some("5"));
    let empty = subscribe_with_key("  ");
    assert_eq!(scene(&empty), None);
    assert_eq!(empty.event_key(), None);
}

#[test]
fn auxiliary_numbers_tolerate_other_spellings() {
    let xml = "<xml><ToUserName>gh</ToUserName><FromUserName>o</FromUserName><CreateTime>1</CreateTime>\
               <MsgType>location</MsgType><Location_X>23.1</Location_X><Location_Y>113.2</Location_Y>\
               <Scale>16.000000</Scale><Label>x</Label><MsgId>9</MsgId></xml>";
    let msg = Message::parse(xml.as_bytes()).unwrap();
    let MessageKind::Location(l) = &msg.kind else {
        panic!()
    };
    assert_eq!(l.scale, 16);
    let bad = xml.replace("16.000000", "wide");
    let degraded = Message::parse(bad.as_bytes()).unwrap();
    assert!(matches!(degraded.kind, MessageKind::Unknown { .. }));
    assert!(matches!(
        degraded.degraded,
        Some(ParseError::Invalid { field: "Scale", .. })
    ));
}
