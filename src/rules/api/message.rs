//! What a handler receives: the message as a map of its typed fields by name, plus every raw
//! field under `raw`; and the regex captures of the rule's conditions.
//!
//! Fields present for every message: `type` (`text`, `image`, …, `event`), `from`, `to`,
//! `create_time`, `raw`. User messages add `msg_id` (a string: ids exceed Rhai's integers).
//! Events add `event` (lower case: `subscribe`, `scan`, `click`), `event_raw` (as sent) and
//! `key` (the event key; for a subscribe through a QR code, the scene). Then by kind:
//!
//! | kind | fields |
//! |---|---|
//! | text | `content`, `msg_data_id`, `idx`, `menu_id` |
//! | image | `pic_url`, `media_id` |
//! | voice | `media_id`, `format`, `recognition` |
//! | video, shortvideo | `media_id`, `thumb_media_id` |
//! | location | `lat`, `lon`, `scale`, `label` |
//! | link | `title`, `description`, `url` |
//! | miniprogrampage | `app_id`, `title`, `page_path`, `thumb_url`, `thumb_media_id` |
//! | subscribe | `scene`, `ticket` |
//! | scan | `scene`, `ticket` |
//! | location event | `lat`, `lon`, `precision` |
//! | view | `url`, `menu_id` |
//! | view_miniprogram | `page_path`, `menu_id` |
//! | scancode_push / waitmsg | `scan_type`, `scan_result` |
//! | pic_* | `pics` (array of MD5 sums) |
//! | location_select | `lat`, `lon`, `scale`, `label`, `poiname` |
//! | templatesendjobfinish | `job_msg_id`, `status` |
//! | masssendjobfinish | `job_msg_id`, `status`, `total_count`, `sent_count`, `error_count` |
//! | publishjobfinish | `publish_id`, `publish_status`, `article_id`, `article_urls` |
//! | kf_* | `kf_account`, `from_kf_account`, `to_kf_account` |
//!
//! A field that does not apply is absent, and reading it gives `()`.

use rhai::{Array, Dynamic, Engine, INT, Map};

use super::{ScriptModule, map_of};
use crate::bot::Captures;
use crate::wechat::Message;
use crate::wechat::message::{Event, MessageKind, SendStatus};
use crate::wechat::xml::Element;

/// The message and captures types.
pub struct Messages;

impl ScriptModule for Messages {
    fn name(&self) -> &'static str {
        "message"
    }

    fn register(&self, engine: &mut Engine) {
        engine
            .register_type_with_name::<Captures>("Captures")
            .register_indexer_get(|c: &mut Captures, i: INT| -> Dynamic {
                usize::try_from(i)
                    .ok()
                    .and_then(|i| c.get(i))
                    .map_or(Dynamic::UNIT, |s| Dynamic::from(s.to_owned()))
            })
            .register_indexer_get(|c: &mut Captures, name: &str| -> Dynamic {
                c.name(name)
                    .map_or(Dynamic::UNIT, |s| Dynamic::from(s.to_owned()))
            })
            .register_fn("len", |c: &mut Captures| c.groups.len() as INT)
            .register_fn("to_string", |c: &mut Captures| format!("{:?}", c.groups))
            .register_fn("to_debug", |c: &mut Captures| format!("{c:?}"));
    }
}

fn s(v: impl Into<String>) -> Dynamic {
    Dynamic::from(v.into())
}

fn int(v: impl TryInto<INT>) -> Dynamic {
    v.try_into().map_or(Dynamic::UNIT, Dynamic::from_int)
}

/// The message as the map handlers receive.
pub fn message_map(msg: &Message) -> Map {
    let mut m = map_of([
        ("type", s(msg.kind.msg_type())),
        ("from", s(msg.from.as_str())),
        ("to", s(msg.to.as_str())),
        ("create_time", Dynamic::from_int(msg.create_time)),
        ("raw", element_value(&msg.raw)),
    ]);
    let mut put = |k: &str, v: Dynamic| {
        m.insert(k.into(), v);
    };
    if let Some(id) = msg.msg_id {
        put("msg_id", s(id.to_string()));
    }
    match &msg.kind {
        MessageKind::Text(t) => {
            put("content", s(t.content.as_str()));
            if let Some(id) = t.msg_data_id {
                put("msg_data_id", s(id.to_string()));
            }
            if let Some(idx) = t.idx {
                put("idx", int(idx));
            }
            if let Some(menu) = &t.biz_msg_menu_id {
                put("menu_id", s(menu.as_str()));
            }
        }
        MessageKind::Image(i) => {
            put("pic_url", s(i.pic_url.as_str()));
            put("media_id", s(i.media_id.as_str()));
        }
        MessageKind::Voice(v) => {
            put("media_id", s(v.media_id.as_str()));
            put("format", s(v.format.as_str()));
            if let Some(r) = &v.recognition {
                put("recognition", s(r.as_str()));
            }
        }
        MessageKind::Video(v) | MessageKind::ShortVideo(v) => {
            put("media_id", s(v.media_id.as_str()));
            put("thumb_media_id", s(v.thumb_media_id.as_str()));
        }
        MessageKind::Location(l) => {
            put("lat", Dynamic::from_float(l.latitude));
            put("lon", Dynamic::from_float(l.longitude));
            put("scale", int(l.scale));
            put("label", s(l.label.as_str()));
        }
        MessageKind::Link(l) => {
            put("title", s(l.title.as_str()));
            put("description", s(l.description.as_str()));
            put("url", s(l.url.as_str()));
        }
        MessageKind::MiniProgramPage(p) => {
            put("app_id", s(p.app_id.as_str()));
            put("title", s(p.title.as_str()));
            put("page_path", s(p.page_path.as_str()));
            put("thumb_url", s(p.thumb_url.as_str()));
            put("thumb_media_id", s(p.thumb_media_id.as_str()));
        }
        MessageKind::Event(e) => {
            put("event", s(e.name().to_ascii_lowercase()));
            put("event_raw", s(msg.event_name().unwrap_or_default()));
            if let Some(key) = msg.event_key() {
                put("key", s(key));
            }
            event_fields(e, &mut put);
        }
        MessageKind::Unknown { .. } => {}
    }
    m
}

fn event_fields(e: &Event, put: &mut impl FnMut(&str, Dynamic)) {
    match e {
        Event::Subscribe(sub) => {
            if let Some(scene) = &sub.scene {
                put("scene", s(scene.as_str()));
            }
            if let Some(ticket) = &sub.ticket {
                put("ticket", s(ticket.as_str()));
            }
        }
        Event::Scan(scan) => {
            put("scene", s(scan.scene.as_str()));
            if let Some(ticket) = &scan.ticket {
                put("ticket", s(ticket.as_str()));
            }
        }
        Event::Location(l) => {
            put("lat", Dynamic::from_float(l.latitude));
            put("lon", Dynamic::from_float(l.longitude));
            put("precision", Dynamic::from_float(l.precision));
        }
        Event::View { url, menu_id } => {
            put("url", s(url.as_str()));
            if let Some(id) = menu_id {
                put("menu_id", Dynamic::from_int(*id));
            }
        }
        Event::ViewMiniprogram { page_path, menu_id } => {
            put("page_path", s(page_path.as_str()));
            if let Some(id) = menu_id {
                put("menu_id", Dynamic::from_int(*id));
            }
        }
        Event::ScancodePush(c) | Event::ScancodeWaitmsg(c) => {
            put("scan_type", s(c.scan_type.as_str()));
            put("scan_result", s(c.scan_result.as_str()));
        }
        Event::PicSysphoto(p) | Event::PicPhotoOrAlbum(p) | Event::PicWeixin(p) => {
            let pics: Array = p.pic_md5_sums.iter().map(|m| s(m.as_str())).collect();
            put("pics", Dynamic::from_array(pics));
        }
        Event::LocationSelect(l) => {
            put("lat", Dynamic::from_float(l.latitude));
            put("lon", Dynamic::from_float(l.longitude));
            put("scale", int(l.scale));
            put("label", s(l.label.as_str()));
            if let Some(poi) = &l.poiname {
                put("poiname", s(poi.as_str()));
            }
        }
        Event::TemplateSendJobFinish(t) => {
            put("job_msg_id", s(t.msg_id.to_string()));
            let status = match &t.status {
                SendStatus::Success => "success".to_owned(),
                SendStatus::UserBlock => "user_block".to_owned(),
                SendStatus::SystemFailed => "system_failed".to_owned(),
                SendStatus::Unknown(other) => other.clone(),
            };
            put("status", s(status));
        }
        Event::MassSendJobFinish(m) => {
            put("job_msg_id", s(m.msg_id.to_string()));
            put("status", s(m.status.as_str()));
            put("total_count", int(m.total_count));
            put("sent_count", int(m.sent_count));
            put("error_count", int(m.error_count));
        }
        Event::PublishJobFinish(p) => {
            put("publish_id", s(p.publish_id.to_string()));
            put("publish_status", int(p.publish_status));
            if let Some(id) = &p.article_id {
                put("article_id", s(id.as_str()));
            }
            let urls: Array = p.articles.iter().map(|a| s(a.url.as_str())).collect();
            put("article_urls", Dynamic::from_array(urls));
        }
        Event::KfCreateSession { kf_account } | Event::KfCloseSession { kf_account } => {
            put("kf_account", s(kf_account.as_str()));
        }
        Event::KfSwitchSession {
            from_kf_account,
            to_kf_account,
        } => {
            put("from_kf_account", s(from_kf_account.as_str()));
            put("to_kf_account", s(to_kf_account.as_str()));
        }
        Event::Unsubscribe
        | Event::Click { .. }
        | Event::SubscribeMsgPopup(_)
        | Event::SubscribeMsgChange(_)
        | Event::SubscribeMsgSent(_)
        | Event::Unknown { .. } => {}
    }
}

/// A raw element as a value: a leaf is its text; an element with children a map of them (a
/// name that repeats becomes an array).
pub fn element_value(el: &Element) -> Dynamic {
    if el.children.is_empty() {
        return s(el.text.as_str());
    }
    let mut map = Map::new();
    for child in &el.children {
        let value = element_value(child);
        match map.get_mut(child.name.as_str()) {
            None => {
                map.insert(child.name.as_str().into(), value);
            }
            Some(existing) if existing.is_array() => {
                if let Some(mut arr) = existing.write_lock::<Array>() {
                    arr.push(value);
                }
            }
            Some(existing) => {
                let first = std::mem::take(existing);
                *existing = Dynamic::from_array(vec![first, value]);
            }
        }
    }
    Dynamic::from_map(map)
}
