//! The routes: WeChat's API behind the recording layer, and the emulator's own control
//! endpoints (JSON; errors are `{"error": "..."}` with a 4xx status).

use std::time::Duration;

use axum::Json;
use axum::body::Bytes;
use axum::extract::{DefaultBodyLimit, Path, RawQuery, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use serde::Deserialize;
use serde::de::DeserializeOwned;
use serde_json::{Value, json};

use super::api::{ApiError, parse_query};
use super::{
    DEFAULT_OPENID, Emulator, EmulatorError, Fault, media, menu, messages, oauth, qrcode, record,
    tokens, users,
};
use crate::simulator::MessageSpec;

/// The whole surface.
///
/// Layers: the API routes (and the fallback) sit behind [`record::layer`], which logs,
/// delays and faults them; the upload route raises axum's body limit to WeChat's largest
/// file. The control routes have no layer.
pub(crate) fn app(emu: Emulator) -> axum::Router {
    let api = axum::Router::new()
        .route("/cgi-bin/token", get(tokens::classic))
        .route("/cgi-bin/stable_token", post(tokens::stable))
        .route(
            "/cgi-bin/message/template/send",
            post(messages::template_send),
        )
        .route("/cgi-bin/message/custom/send", post(messages::custom_send))
        .route(
            "/cgi-bin/template/get_all_private_template",
            get(messages::template_list),
        )
        .route("/cgi-bin/menu/create", post(menu::create))
        .route("/cgi-bin/menu/get", get(menu::get))
        .route("/cgi-bin/menu/delete", get(menu::delete).post(menu::delete))
        .route("/cgi-bin/qrcode/create", post(qrcode::create))
        .route("/cgi-bin/showqrcode", get(qrcode::show))
        .route("/cgi-bin/user/info", get(users::info))
        .route("/cgi-bin/user/get", get(users::list))
        .route(
            media::UPLOAD_PATH,
            post(media::upload).layer(DefaultBodyLimit::max(media::UPLOAD_BODY_LIMIT)),
        )
        .route("/connect/oauth2/authorize", get(oauth::authorize))
        .route("/sns/oauth2/access_token", get(oauth::access_token))
        .route("/sns/userinfo", get(oauth::userinfo))
        .fallback(unknown)
        .layer(axum::middleware::from_fn_with_state(
            emu.clone(),
            record::layer,
        ));
    let control = axum::Router::new()
        .route("/emulator", get(summary))
        .route("/emulator/calls", get(calls).delete(clear_calls))
        .route(
            "/emulator/faults",
            get(faults).post(add_fault).delete(clear_faults),
        )
        .route("/emulator/tokens/expire", post(expire_tokens))
        .route("/emulator/clock", post(advance_clock))
        .route("/emulator/users", post(add_user))
        .route("/emulator/users/{openid}", get(user))
        .route("/emulator/templates", post(add_template))
        .route("/emulator/oauth/code", post(oauth_code))
        .route("/emulator/oauth/browser", post(oauth_browser))
        .route("/emulator/scan", post(scan))
        .route("/emulator/send", post(send));
    api.merge(control).with_state(emu)
}

/// Any other path: 404 with WeChat's "invalid url".
async fn unknown() -> Response {
    let e = ApiError::new(40066);
    (
        StatusCode::NOT_FOUND,
        Json(json!({ "errcode": e.errcode, "errmsg": e.errmsg })),
    )
        .into_response()
}

/// A control endpoint's error: a 4xx status with `{"error": "..."}`.
#[derive(Debug, thiserror::Error)]
#[error("{message}")]
struct ControlError {
    status: StatusCode,
    message: String,
}

impl ControlError {
    fn bad_request(message: impl Into<String>) -> Self {
        Self {
            status: StatusCode::BAD_REQUEST,
            message: message.into(),
        }
    }
}

impl IntoResponse for ControlError {
    fn into_response(self) -> Response {
        (self.status, Json(json!({ "error": self.message }))).into_response()
    }
}

impl From<EmulatorError> for ControlError {
    fn from(e: EmulatorError) -> Self {
        let status = match e {
            EmulatorError::NoBot | EmulatorError::Bot(_) => StatusCode::CONFLICT,
            EmulatorError::Message(_) => StatusCode::BAD_REQUEST,
        };
        Self {
            status,
            message: e.to_string(),
        }
    }
}

type ControlResult = Result<Json<Value>, ControlError>;

fn parse<T: DeserializeOwned>(body: &[u8]) -> Result<T, ControlError> {
    serde_json::from_slice(body).map_err(|e| ControlError::bad_request(format!("body: {e}")))
}

fn ok() -> Json<Value> {
    Json(json!({ "ok": true }))
}

/// `GET /emulator`: what the emulator holds.
async fn summary(State(emu): State<Emulator>) -> Json<Value> {
    let settings = &emu.shared.settings;
    let bot = settings.bot.as_ref().map(|b| {
        json!({
            "callback_url": b.callback_url,
            "mode": b.mode.as_str(),
            "account_id": b.account_id,
            "error": emu.shared.bot.as_ref().and_then(|r| r.as_ref().err()),
        })
    });
    let now = emu.now();
    let state = emu.lock();
    Json(json!({
        "app_id": settings.app_id,
        "bot": bot,
        "users": state.users.len(),
        "followers": state.users.followers().len(),
        "calls": state.calls.len(),
        "faults": state.faults.len(),
        "valid_tokens": state.tokens.valid(now),
        "templates": state.templates.len(),
        "menu": state.menu.is_some(),
        "media": state.media.len(),
        "qrcodes": state.qrcodes.len(),
        "clock_unix_ms": emu.shared.clock.unix_ms_at(now),
    }))
}

/// `GET /emulator/calls[?path=]`.
async fn calls(State(emu): State<Emulator>, RawQuery(q): RawQuery) -> Json<Value> {
    let q = parse_query(q.as_deref());
    let path = q.get("path");
    let state = emu.lock();
    let list: Vec<&record::CallRecord> = state
        .calls
        .iter()
        .filter(|c| path.is_none_or(|p| &c.path == p))
        .collect();
    Json(json!(list))
}

/// `DELETE /emulator/calls`.
async fn clear_calls(State(emu): State<Emulator>) -> Json<Value> {
    emu.clear_calls();
    ok()
}

/// `GET /emulator/faults`.
async fn faults(State(emu): State<Emulator>) -> Json<Value> {
    Json(json!(emu.faults()))
}

/// `POST /emulator/faults` with a [`Fault`].
async fn add_fault(State(emu): State<Emulator>, body: Bytes) -> ControlResult {
    let fault: Fault = parse(&body)?;
    if let Some(problem) = fault.problem() {
        return Err(ControlError::bad_request(problem));
    }
    emu.inject(fault);
    Ok(Json(json!({ "ok": true, "queued": emu.faults().len() })))
}

/// `DELETE /emulator/faults`.
async fn clear_faults(State(emu): State<Emulator>) -> Json<Value> {
    emu.clear_faults();
    ok()
}

/// `POST /emulator/tokens/expire`.
async fn expire_tokens(State(emu): State<Emulator>) -> Json<Value> {
    emu.expire_tokens();
    ok()
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct Advance {
    advance_ms: u64,
}

/// `POST /emulator/clock` with `{"advance_ms": N}`.
async fn advance_clock(State(emu): State<Emulator>, body: Bytes) -> ControlResult {
    let advance: Advance = parse(&body)?;
    emu.advance_clock(Duration::from_millis(advance.advance_ms));
    Ok(Json(
        json!({ "ok": true, "clock_unix_ms": emu.shared.clock.unix_ms() }),
    ))
}

fn yes() -> bool {
    true
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct NewUser {
    openid: String,
    #[serde(default = "yes")]
    following: bool,
    #[serde(default = "yes")]
    interacted: bool,
    /// When given, the last interaction was this long ago (overrides `interacted`).
    #[serde(default)]
    last_interaction_ms_ago: Option<u64>,
    /// The nickname `user/info` answers.
    #[serde(default)]
    nickname: Option<String>,
}

/// `POST /emulator/users` with `{openid, following, interacted, last_interaction_ms_ago?,
/// nickname?}`.
async fn add_user(State(emu): State<Emulator>, body: Bytes) -> Result<Response, ControlError> {
    let new: NewUser = parse(&body)?;
    if new.openid.trim().is_empty() {
        return Err(ControlError::bad_request("openid is empty"));
    }
    let ago = match new.last_interaction_ms_ago {
        Some(ms) => Some(Duration::from_millis(ms)),
        None => new.interacted.then_some(Duration::ZERO),
    };
    emu.add_user_with(&new.openid, new.following, ago);
    if let Some(nickname) = new.nickname
        && let Some(user) = emu.lock().users.get_mut(&new.openid)
    {
        user.nickname = Some(nickname);
    }
    Ok(user_view(&emu, &new.openid).into_response())
}

/// `GET /emulator/users/{openid}`.
async fn user(State(emu): State<Emulator>, Path(openid): Path<String>) -> Response {
    user_view(&emu, &openid).into_response()
}

fn user_view(emu: &Emulator, openid: &str) -> Result<Json<Value>, ControlError> {
    let now = emu.now();
    let state = emu.lock();
    let user = state.users.get(openid).ok_or_else(|| ControlError {
        status: StatusCode::NOT_FOUND,
        message: format!("unknown user {openid:?}"),
    })?;
    Ok(Json(json!({
        "openid": openid,
        "following": user.following,
        "last_interaction_ms_ago": user
            .last_interaction
            .map(|at| u64::try_from(now.saturating_sub(at).as_millis()).unwrap_or(u64::MAX)),
        "subscribe_time": user.subscribe_time,
        "qr_scene": user.qr_scene,
        "inbox": user.inbox,
    })))
}

/// `POST /emulator/templates` with a template (`template_id` generated when missing).
async fn add_template(State(emu): State<Emulator>, body: Bytes) -> ControlResult {
    let template: Value = parse(&body)?;
    emu.add_template(template)
        .map(Json)
        .map_err(ControlError::bad_request)
}

fn snsapi_base() -> String {
    oauth::SCOPES[0].to_owned()
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct CodeRequest {
    openid: String,
    #[serde(default = "snsapi_base")]
    scope: String,
}

/// `POST /emulator/oauth/code` with `{openid, scope}`: `{"code"}`.
async fn oauth_code(State(emu): State<Emulator>, body: Bytes) -> ControlResult {
    let request: CodeRequest = parse(&body)?;
    let code = emu
        .oauth_code(&request.openid, &request.scope)
        .map_err(ControlError::bad_request)?;
    Ok(Json(json!({ "code": code })))
}

/// The user of a request's `from` parameter (default [`DEFAULT_OPENID`]).
fn sender(query: Option<&str>) -> String {
    parse_query(query)
        .get("from")
        .filter(|f| !f.trim().is_empty())
        .map_or(DEFAULT_OPENID, String::as_str)
        .to_owned()
}

/// `POST /emulator/oauth/browser` `{"openid"}`: the user at the browser, whom the
/// authorization page grants when the request names nobody (`{"openid": null}`: the first
/// follower again).
async fn oauth_browser(State(emu): State<Emulator>, body: Bytes) -> ControlResult {
    #[derive(Deserialize)]
    struct Browser {
        openid: Option<String>,
    }
    let request: Browser = parse(&body)?;
    emu.lock().oauth.browser = request.openid.filter(|o| !o.trim().is_empty());
    Ok(ok())
}

/// `POST /emulator/scan?from=OPENID` `{"ticket"}`: the user scans a parameter QR code, as
/// WeChat tells the account: a `subscribe` with the code's scene when they do not follow yet,
/// a `SCAN` when they do. 400 for a ticket never issued or expired.
async fn scan(State(emu): State<Emulator>, RawQuery(q): RawQuery, body: Bytes) -> ControlResult {
    #[derive(Deserialize)]
    struct Scan {
        ticket: String,
    }
    let from = sender(q.as_deref());
    let request: Scan = parse(&body)?;
    let now = emu.now();
    let scene = emu
        .lock()
        .qrcodes
        .scene_of(&request.ticket, now)
        .map_err(|expired| {
            ControlError::bad_request(if expired {
                "this QR code expired"
            } else {
                "no QR code has this ticket"
            })
        })?;
    let following = emu.lock().users.get(&from).is_some_and(|u| u.following);
    let spec = if following {
        MessageSpec::Scan { scene }
    } else {
        MessageSpec::Subscribe { scene: Some(scene) }
    };
    let conversation = emu.send(&from, spec).await?;
    Ok(Json(json!(conversation)))
}

/// `POST /emulator/send?from=OPENID` with a message ([`SendBody`]): the [`super::Conversation`].
async fn send(State(emu): State<Emulator>, RawQuery(q): RawQuery, body: Bytes) -> ControlResult {
    let from = sender(q.as_deref());
    let message: SendBody = parse(&body)?;
    let conversation = emu.send(&from, message.into_spec()).await?;
    Ok(Json(json!(conversation)))
}

/// A scene given as a string or a number.
fn scene<'de, D: serde::Deserializer<'de>>(d: D) -> Result<String, D::Error> {
    #[derive(Deserialize)]
    #[serde(untagged)]
    enum Scene {
        S(String),
        N(u64),
    }
    Ok(match Scene::deserialize(d)? {
        Scene::S(s) => s,
        Scene::N(n) => n.to_string(),
    })
}

fn optional_scene<'de, D: serde::Deserializer<'de>>(d: D) -> Result<Option<String>, D::Error> {
    scene(d).map(Some)
}

/// A message in the JSON `POST /emulator/send` takes (`{"type": "text", "content": "hi"}`,
/// …); the console's phone panel takes the same.
pub fn message_spec(body: &[u8]) -> Result<MessageSpec, String> {
    serde_json::from_slice::<SendBody>(body)
        .map(SendBody::into_spec)
        .map_err(|e| e.to_string())
}

/// The messages `POST /emulator/send` takes, by `type`; omitted fields take the simulator's
/// defaults.
#[derive(Deserialize)]
#[serde(tag = "type", rename_all = "snake_case", deny_unknown_fields)]
enum SendBody {
    Text {
        content: String,
    },
    Image {
        #[serde(default)]
        media_id: Option<String>,
        #[serde(default)]
        pic_url: Option<String>,
    },
    Voice {
        #[serde(default)]
        media_id: Option<String>,
        #[serde(default)]
        format: Option<String>,
        #[serde(default)]
        recognition: Option<String>,
    },
    Video {
        #[serde(default)]
        media_id: Option<String>,
        #[serde(default)]
        thumb_media_id: Option<String>,
    },
    Shortvideo {
        #[serde(default)]
        media_id: Option<String>,
        #[serde(default)]
        thumb_media_id: Option<String>,
    },
    Location {
        lat: f64,
        lon: f64,
        #[serde(default)]
        scale: Option<u32>,
        #[serde(default)]
        label: Option<String>,
    },
    Link {
        title: String,
        url: String,
        #[serde(default)]
        description: Option<String>,
    },
    Subscribe {
        #[serde(default, deserialize_with = "optional_scene")]
        scene: Option<String>,
    },
    Unsubscribe,
    Scan {
        #[serde(deserialize_with = "scene")]
        scene: String,
    },
    Click {
        key: String,
    },
    View {
        url: String,
        #[serde(default)]
        menu_id: Option<i64>,
    },
    LocationEvent {
        lat: f64,
        lon: f64,
        #[serde(default)]
        precision: Option<f64>,
    },
    Event {
        name: String,
        #[serde(default)]
        key: Option<String>,
    },
}

impl SendBody {
    fn into_spec(self) -> MessageSpec {
        let or = |v: Option<String>, d: &str| v.unwrap_or_else(|| d.to_owned());
        match self {
            Self::Text { content } => MessageSpec::Text { content },
            Self::Image { media_id, pic_url } => MessageSpec::Image {
                media_id: or(media_id, "media_image_simulated"),
                pic_url: or(pic_url, "http://mmbiz.qpic.cn/simulated.jpg"),
            },
            Self::Voice {
                media_id,
                format,
                recognition,
            } => MessageSpec::Voice {
                media_id: or(media_id, "media_voice_simulated"),
                format: or(format, "amr"),
                recognition,
            },
            Self::Video {
                media_id,
                thumb_media_id,
            } => MessageSpec::Video {
                media_id: or(media_id, "media_video_simulated"),
                thumb_media_id: or(thumb_media_id, "media_thumb_simulated"),
            },
            Self::Shortvideo {
                media_id,
                thumb_media_id,
            } => MessageSpec::Shortvideo {
                media_id: or(media_id, "media_shortvideo_simulated"),
                thumb_media_id: or(thumb_media_id, "media_thumb_simulated"),
            },
            Self::Location {
                lat,
                lon,
                scale,
                label,
            } => MessageSpec::Location {
                lat,
                lon,
                scale: scale.unwrap_or(15),
                label: label.unwrap_or_default(),
            },
            Self::Link {
                title,
                url,
                description,
            } => MessageSpec::Link {
                title,
                description: description.unwrap_or_default(),
                url,
            },
            Self::Subscribe { scene } => MessageSpec::Subscribe { scene },
            Self::Unsubscribe => MessageSpec::Unsubscribe,
            Self::Scan { scene } => MessageSpec::Scan { scene },
            Self::Click { key } => MessageSpec::Click { key },
            Self::View { url, menu_id } => MessageSpec::View { url, menu_id },
            Self::LocationEvent {
                lat,
                lon,
                precision,
            } => MessageSpec::LocationEvent {
                lat,
                lon,
                precision: precision.unwrap_or(30.0),
            },
            Self::Event { name, key } => MessageSpec::Event { name, key },
        }
    }
}
