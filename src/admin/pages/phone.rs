//! The phone panel: a chat view that plays WeChat against the bot, through the real callback.
//!
//! A message goes one of two ways, both signed (and in safe mode encrypted) as WeChat signs
//! them:
//!
//! - When `[wechat] api_base` is a huixin emulator that plays WeChat toward a callback
//!   (`huixin serve --dev` starts one in the process; `huixin emulator` is one), through the
//!   emulator's `POST /emulator/send`: the emulator retries like WeChat, keeps the follower's
//!   48-hour window open, and its inbox has the customer-service and template messages the bot
//!   sends meanwhile, which the panel polls.
//! - Otherwise straight to this server's own callback with the simulator (only the passive
//!   reply is seen).
//!
//! Images chosen in the panel are kept in memory (the last [`SHELF`]) and served at
//! `/admin/media/{id}` for the message's `PicUrl`.

use std::collections::VecDeque;
use std::sync::Mutex;

use axum::Extension;
use axum::body::Bytes;
use axum::extract::{Multipart, Path, Query, State};
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use maud::html;
use serde::Deserialize;
use serde_json::{Value, json};

use crate::admin::auth::Session;
use crate::admin::html::{self as ui, Nav};
use crate::admin::{Console, Page};
use crate::outbound::menu::Button;
use crate::simulator::{Header, Simulator};

/// Images kept for the panel's messages.
const SHELF: usize = 32;
/// The largest image the panel takes.
const MAX_IMAGE: usize = 2 * 1024 * 1024;
/// The OpenID the panel plays by default.
const DEFAULT_FROM: &str = "o_console_phone";

/// Images uploaded in the panel: (id, content type, bytes), newest last.
#[derive(Default)]
pub struct MediaShelf(Mutex<VecDeque<(String, String, Bytes)>>);

impl MediaShelf {
    fn put(&self, kind: String, bytes: Bytes) -> String {
        let id = format!("{:032x}", rand::random::<u128>());
        let mut shelf = self.0.lock().unwrap_or_else(|p| p.into_inner());
        if shelf.len() >= SHELF {
            shelf.pop_front();
        }
        shelf.push_back((id.clone(), kind, bytes));
        id
    }

    fn get(&self, id: &str) -> Option<(String, Bytes)> {
        let shelf = self.0.lock().unwrap_or_else(|p| p.into_inner());
        shelf
            .iter()
            .find(|(i, _, _)| i == id)
            .map(|(_, k, b)| (k.clone(), b.clone()))
    }
}

/// `GET /admin/phone`.
pub async fn page(State(console): State<Console>, Extension(session): Extension<Session>) -> Page {
    let menu = match &console.inner.client {
        Some(client) => client.menu().await.ok().flatten(),
        None => None,
    };
    let via = if emulator(&console).await.is_some() {
        "the emulator at [wechat] api_base (replies, customer-service and template messages)"
    } else {
        "this server's callback (passive replies only; point [wechat] api_base at an emulator, or run huixin serve --dev, to see the rest)"
    };
    let leaf = |b: &Button| -> Option<(String, String, String)> {
        match b.kind.as_deref() {
            Some("view") => Some((
                "view".into(),
                b.url.clone().unwrap_or_default(),
                b.name.clone(),
            )),
            Some(_) => Some((
                "click".into(),
                b.key.clone().unwrap_or_default(),
                b.name.clone(),
            )),
            None => None,
        }
    };
    let buttons: Vec<(String, String, String)> = menu
        .iter()
        .flat_map(|m| m.button.iter())
        .flat_map(|b| {
            if b.sub_button.is_empty() {
                leaf(b).into_iter().collect::<Vec<_>>()
            } else {
                b.sub_button.iter().filter_map(leaf).collect()
            }
        })
        .collect();
    let body = html! {
        p.muted { "Messages go through " (via) "." }
        div.phone-layout {
            div.phone {
                div.phone-bar {
                    label { "From " input #from type="text" value=(DEFAULT_FROM) aria-label="the follower's OpenID"; }
                }
                div #chat .chat role="log" aria-live="polite" {}
                form #composer .composer {
                    input #text type="text" placeholder="Message" autocomplete="off" aria-label="message text";
                    button type="submit" { "Send" }
                }
                @if !buttons.is_empty() {
                    div.phone-menu {
                        @for (kind, value, name) in &buttons {
                            button.menu-click type="button" data-type=(kind) data-value=(value) { (name) }
                        }
                    }
                }
            }
            div.phone-tools {
                h2 { "Events" }
                form #subscribe .inline {
                    label { "Scene" input #scene type="text" placeholder="optional"; }
                    button type="submit" { "Follow" }
                }
                button #unsubscribe type="button" { "Unfollow" }
                h2 { "Location" }
                form #location .inline {
                    label { "Lat" input #lat type="number" step="any" value="39.9087"; }
                    label { "Lon" input #lon type="number" step="any" value="116.3975"; }
                    label { "Label" input #label type="text" value="Tiananmen"; }
                    button type="submit" { "Send location" }
                }
                h2 { "Image" }
                form #image .inline {
                    input #file type="file" accept="image/*" aria-label="an image";
                    button type="submit" { "Send image" }
                }
            }
        }
    };
    Ok(ui::page(&console, &session, "Phone", Nav::Phone, body))
}

/// The emulator at `[wechat] api_base`, when it is one that plays WeChat toward a callback.
async fn emulator(console: &Console) -> Option<String> {
    let base = console
        .config()
        .wechat
        .api_base
        .trim_end_matches('/')
        .to_owned();
    if base == crate::config::DEFAULT_API_BASE.trim_end_matches('/') {
        return None;
    }
    let summary: Value = http()
        .get(format!("{base}/emulator"))
        .send()
        .await
        .ok()?
        .json()
        .await
        .ok()?;
    summary.get("bot")?.get("callback_url")?.as_str()?;
    Some(base)
}

fn http() -> reqwest::Client {
    reqwest::Client::builder()
        .timeout(std::time::Duration::from_secs(20))
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .unwrap_or_default()
}

fn json_error(status: StatusCode, message: impl Into<String>) -> Response {
    (status, axum::Json(json!({ "error": message.into() }))).into_response()
}

#[derive(Deserialize)]
pub struct FromQuery {
    #[serde(default)]
    from: String,
    #[serde(default)]
    since: u64,
}

fn sender(from: &str) -> Result<String, String> {
    let from = from.trim();
    let from = if from.is_empty() { DEFAULT_FROM } else { from };
    if !crate::push::keys::valid_openid(from) {
        return Err(format!(
            "{from:?} is not an OpenID (letters, digits, - and _)"
        ));
    }
    Ok(from.to_owned())
}

/// `POST /admin/phone/send?from=OPENID` with a message as the emulator's
/// `POST /emulator/send` takes it: what the user saw.
pub async fn send(
    State(console): State<Console>,
    Query(q): Query<FromQuery>,
    body: Bytes,
) -> Response {
    let from = match sender(&q.from) {
        Ok(f) => f,
        Err(e) => return json_error(StatusCode::BAD_REQUEST, e),
    };
    let spec = match crate::emulator::message_spec(&body) {
        Ok(s) => s,
        Err(e) => return json_error(StatusCode::BAD_REQUEST, format!("message: {e}")),
    };
    if let Some(base) = emulator(&console).await {
        let answer = http()
            .post(format!("{base}/emulator/send"))
            .query(&[("from", from.as_str())])
            .header(header::CONTENT_TYPE, "application/json")
            .body(body)
            .send()
            .await;
        return match answer {
            Ok(r) => {
                let status = r.status();
                let value: Value = r.json().await.unwrap_or(Value::Null);
                if status.is_success() {
                    axum::Json(json!({ "via": "emulator", "user_saw": value["user_saw"], "attempts": value["attempts"] }))
                        .into_response()
                } else {
                    json_error(
                        StatusCode::BAD_GATEWAY,
                        format!("the emulator answered {status}: {value}"),
                    )
                }
            }
            Err(e) => json_error(
                StatusCode::BAD_GATEWAY,
                format!("the emulator did not answer: {e}"),
            ),
        };
    }
    let Some(self_base) = console.self_base() else {
        return json_error(
            StatusCode::CONFLICT,
            "the server's own address is not known yet; set [server] public_url",
        );
    };
    let config = console.config();
    let token = match config.wechat.token.expose() {
        "" => match console.store().generated_token().await {
            Ok(Some(t)) => t,
            _ => return json_error(StatusCode::CONFLICT, "no callback token is known yet"),
        },
        t => t.to_owned(),
    };
    let crypt = match config.wechat.msg_crypt(&token) {
        Ok(c) => c,
        Err(e) => {
            return json_error(
                StatusCode::CONFLICT,
                format!("[wechat] encoding_aes_key: {e}"),
            );
        }
    };
    let url = format!("{self_base}{}", config.server.path);
    let sim = match Simulator::new(&url, &token, config.wechat.mode, crypt) {
        Ok(s) => s,
        Err(e) => return json_error(StatusCode::CONFLICT, e.to_string()),
    };
    let account = if config.wechat.app_id.is_empty() {
        "gh_huixin"
    } else {
        config.wechat.app_id.as_str()
    };
    let xml = match spec.to_xml(&Header::new(account, &from)) {
        Ok(x) => x,
        Err(e) => return json_error(StatusCode::BAD_REQUEST, e.to_string()),
    };
    match sim.send(&xml, &from).await {
        Ok(exchange) => {
            let user_saw = match (&exchange.reply, exchange.status) {
                (Some(parsed), 200) => json!({ "kind": "reply", "reply": parsed.reply }),
                (None, 200) => json!({ "kind": "nothing" }),
                (_, status) => json!({ "kind": "error_notice", "text": format!("HTTP {status}") }),
            };
            axum::Json(json!({ "via": "callback", "user_saw": user_saw })).into_response()
        }
        Err(e) => json_error(StatusCode::BAD_GATEWAY, e.to_string()),
    }
}

/// `GET /admin/phone/inbox?from=OPENID&since=SEQ`: the customer-service and template messages
/// the follower received after `since`, from the emulator.
pub async fn inbox(State(console): State<Console>, Query(q): Query<FromQuery>) -> Response {
    let from = match sender(&q.from) {
        Ok(f) => f,
        Err(e) => return json_error(StatusCode::BAD_REQUEST, e),
    };
    let Some(base) = emulator(&console).await else {
        return axum::Json(json!({ "available": false, "items": [] })).into_response();
    };
    let user: Value = match http()
        .get(format!("{base}/emulator/users/{}", ui::segment(&from)))
        .send()
        .await
    {
        Ok(r) if r.status().is_success() => r.json().await.unwrap_or(Value::Null),
        Ok(_) => Value::Null,
        Err(e) => {
            return json_error(
                StatusCode::BAD_GATEWAY,
                format!("the emulator did not answer: {e}"),
            );
        }
    };
    let items: Vec<&Value> = user["inbox"]
        .as_array()
        .map(|list| {
            list.iter()
                .filter(|d| {
                    d["kind"] != "passive" && d["seq"].as_u64().is_some_and(|s| s > q.since)
                })
                .collect()
        })
        .unwrap_or_default();
    axum::Json(json!({ "available": true, "items": items })).into_response()
}

/// `POST /admin/phone/upload` (multipart, field `file`): keeps an image for a message.
pub async fn upload(State(console): State<Console>, mut multipart: Multipart) -> Response {
    loop {
        let field = match multipart.next_field().await {
            Ok(Some(f)) => f,
            Ok(None) => return json_error(StatusCode::BAD_REQUEST, "no file in the form"),
            Err(e) => return json_error(StatusCode::BAD_REQUEST, e.to_string()),
        };
        if field.name() != Some("file") {
            continue;
        }
        let kind = field
            .content_type()
            .unwrap_or("application/octet-stream")
            .to_owned();
        if !kind.starts_with("image/") || kind.contains("svg") {
            return json_error(
                StatusCode::UNSUPPORTED_MEDIA_TYPE,
                "choose a PNG, JPEG or GIF image",
            );
        }
        let bytes = match field.bytes().await {
            Ok(b) if b.len() <= MAX_IMAGE => b,
            Ok(_) => return json_error(StatusCode::PAYLOAD_TOO_LARGE, "images up to 2 MiB"),
            Err(e) => return json_error(StatusCode::BAD_REQUEST, e.to_string()),
        };
        let id = console.inner.media.put(kind, bytes);
        let base = console
            .self_base()
            .map(|b| format!("{b}{}", console.inner.prefix))
            .unwrap_or_default();
        return axum::Json(json!({
            "media_id": format!("console_{id}"),
            "pic_url": format!("{base}/admin/media/{id}"),
            "path": format!("{}/media/{id}", console.base()),
        }))
        .into_response();
    }
}

/// `GET /admin/media/{id}`: an image uploaded in the panel (ids are unguessable; the bot and
/// WeChat fetch them without a session).
pub async fn media(State(console): State<Console>, Path(id): Path<String>) -> Response {
    match console.inner.media.get(&id) {
        Some((kind, bytes)) => ([(header::CONTENT_TYPE, kind)], bytes).into_response(),
        None => StatusCode::NOT_FOUND.into_response(),
    }
}
