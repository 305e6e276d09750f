//! Parameter QR codes: `qrcode/create` (temporary `QR_SCENE`/`QR_STR_SCENE`, permanent
//! `QR_LIMIT_SCENE`/`QR_LIMIT_STR_SCENE`) and `showqrcode`. Each ticket remembers its
//! scene, so a simulated scan-to-follow of that scene carries the real ticket.

use std::collections::HashMap;
use std::time::Duration;

use axum::Json;
use axum::body::Bytes;
use axum::extract::{RawQuery, State};
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde_json::{Value, json};

use super::Emulator;
use super::api::{ApiError, ApiResult, json_body, parse_query, random_string};

/// Default life of a temporary code, in seconds.
const DEFAULT_EXPIRE: u64 = 30;
/// Longest life of a temporary code (30 days), in seconds.
const MAX_EXPIRE: u64 = 2_592_000;
/// Highest permanent numeric scene.
const MAX_LIMIT_SCENE_ID: u64 = 100_000;
/// Longest string scene, in characters.
const MAX_SCENE_STR: usize = 64;

/// A 1x1 PNG: what `showqrcode` answers (any valid PNG does for a stand-in).
const PNG: &[u8] = &[
    0x89, 0x50, 0x4E, 0x47, 0x0D, 0x0A, 0x1A, 0x0A, 0x00, 0x00, 0x00, 0x0D, 0x49, 0x48, 0x44, 0x52,
    0x00, 0x00, 0x00, 0x01, 0x00, 0x00, 0x00, 0x01, 0x08, 0x06, 0x00, 0x00, 0x00, 0x1F, 0x15, 0xC4,
    0x89, 0x00, 0x00, 0x00, 0x0D, 0x49, 0x44, 0x41, 0x54, 0x78, 0xDA, 0x63, 0x64, 0x60, 0xF8, 0x5F,
    0x0F, 0x00, 0x02, 0x87, 0x01, 0x80, 0xEB, 0x47, 0xBA, 0x92, 0x00, 0x00, 0x00, 0x00, 0x49, 0x45,
    0x4E, 0x44, 0xAE, 0x42, 0x60, 0x82,
];

/// One ticket.
#[derive(Debug, Clone)]
pub(crate) struct Ticket {
    /// The scene id or string.
    pub scene: String,
    /// Emulator time it expires; `None` for permanent codes.
    pub expires: Option<Duration>,
    /// Creation order, to find the newest code of a scene.
    order: u64,
}

/// Every ticket issued.
#[derive(Debug, Default)]
pub(crate) struct QrCodes {
    tickets: HashMap<String, Ticket>,
    next_order: u64,
}

impl QrCodes {
    pub fn len(&self) -> usize {
        self.tickets.len()
    }

    /// The newest ticket for `scene` still valid at `now`.
    pub fn ticket_for(&self, scene: &str, now: Duration) -> Option<String> {
        self.tickets
            .iter()
            .filter(|(_, t)| t.scene == scene && t.expires.is_none_or(|e| e > now))
            .max_by_key(|(_, t)| t.order)
            .map(|(ticket, _)| ticket.clone())
    }

    /// The scene of `ticket`: `Ok` while it is valid at `now`, `Err(true)` once it expired,
    /// `Err(false)` for a ticket never issued.
    pub fn scene_of(&self, ticket: &str, now: Duration) -> Result<String, bool> {
        match self.tickets.get(ticket) {
            Some(t) if t.expires.is_none_or(|e| e > now) => Ok(t.scene.clone()),
            Some(_) => Err(true),
            None => Err(false),
        }
    }

    fn insert(&mut self, scene: String, expires: Option<Duration>) -> String {
        let mut ticket = format!("gQ{}", random_string(54, false));
        while self.tickets.contains_key(&ticket) {
            ticket = format!("gQ{}", random_string(54, false));
        }
        self.next_order += 1;
        self.tickets.insert(
            ticket.clone(),
            Ticket {
                scene,
                expires,
                order: self.next_order,
            },
        );
        ticket
    }
}

/// The scene of a request: a positive integer id or a 1-64 character string.
fn scene(
    request: &serde_json::Map<String, Value>,
    string: bool,
    permanent: bool,
) -> Option<String> {
    let scene = request
        .get("action_info")?
        .as_object()?
        .get("scene")?
        .as_object()?;
    if string {
        let s = scene.get("scene_str")?.as_str()?;
        let chars = s.chars().count();
        return (1..=MAX_SCENE_STR).contains(&chars).then(|| s.to_owned());
    }
    let id = scene.get("scene_id")?.as_u64()?;
    let max = if permanent {
        MAX_LIMIT_SCENE_ID
    } else {
        u64::from(u32::MAX)
    };
    (1..=max).contains(&id).then(|| id.to_string())
}

/// `POST /cgi-bin/qrcode/create?access_token=`.
pub(crate) async fn create(
    State(emu): State<Emulator>,
    RawQuery(q): RawQuery,
    body: Bytes,
) -> ApiResult {
    let q = parse_query(q.as_deref());
    emu.check_token(&q)?;
    let request = json_body(&body)?;
    let invalid = || ApiError::new(40053);
    let (string, permanent) = match request.get("action_name").and_then(Value::as_str) {
        Some("QR_SCENE") => (false, false),
        Some("QR_STR_SCENE") => (true, false),
        Some("QR_LIMIT_SCENE") => (false, true),
        Some("QR_LIMIT_STR_SCENE") => (true, true),
        _ => return Err(invalid()),
    };
    let scene = scene(&request, string, permanent).ok_or_else(invalid)?;
    let expire_seconds = if permanent {
        None
    } else {
        Some(match request.get("expire_seconds") {
            None | Some(Value::Null) => DEFAULT_EXPIRE,
            Some(v) => match v.as_u64() {
                Some(0) | None => return Err(invalid()),
                // WeChat caps the life at 30 days.
                Some(s) => s.min(MAX_EXPIRE),
            },
        })
    };
    let now = emu.now();
    let ticket = emu.lock().qrcodes.insert(
        scene.clone(),
        expire_seconds.map(|s| now + Duration::from_secs(s)),
    );
    tracing::debug!(%scene, permanent, "emulator: QR code created");
    let url = format!("http://weixin.qq.com/q/{}", random_string(24, false));
    let mut answer = json!({ "ticket": ticket, "url": url });
    if let Some(s) = expire_seconds {
        answer["expire_seconds"] = json!(s);
    }
    Ok(Json(answer))
}

/// `GET /cgi-bin/showqrcode?ticket=`: the code's image; 404 for an unknown or expired ticket.
pub(crate) async fn show(State(emu): State<Emulator>, RawQuery(q): RawQuery) -> Response {
    let q = parse_query(q.as_deref());
    let now = emu.now();
    let known = q.get("ticket").is_some_and(|t| {
        emu.lock()
            .qrcodes
            .tickets
            .get(t)
            .is_some_and(|t| t.expires.is_none_or(|e| e > now))
    });
    if !known {
        let error = ApiError {
            errcode: 40097,
            errmsg: "invalid ticket".into(),
        };
        return (
            StatusCode::NOT_FOUND,
            Json(json!({ "errcode": error.errcode, "errmsg": error.errmsg })),
        )
            .into_response();
    }
    ([(header::CONTENT_TYPE, "image/png")], PNG).into_response()
}
