//! The custom menu: `menu/create` (validated as WeChat does), `menu/get`, `menu/delete`.

use axum::Json;
use axum::body::Bytes;
use axum::extract::{RawQuery, State};
use serde_json::{Map, Value, json};

use super::Emulator;
use super::api::{ApiError, ApiResult, json_body, ok, parse_query};

/// Top-level buttons allowed.
const MAX_TOP: usize = 3;
/// Sub-buttons allowed under one button.
const MAX_SUB: usize = 5;
/// Longest top-level button name, in bytes.
const MAX_TOP_NAME: usize = 16;
/// Longest sub-button name, in bytes.
const MAX_SUB_NAME: usize = 60;

/// The fields each button type needs.
fn required_fields(button_type: &str) -> Option<&'static [&'static str]> {
    Some(match button_type {
        "click" | "scancode_push" | "scancode_waitmsg" | "pic_sysphoto" | "pic_photo_or_album"
        | "pic_weixin" | "location_select" => &["key"],
        "view" => &["url"],
        "miniprogram" => &["url", "appid", "pagepath"],
        "media_id" | "view_limited" => &["media_id"],
        "article_id" | "article_view_limited" => &["article_id"],
        _ => return None,
    })
}

/// 40016 wrong number of buttons, 40017 bad type (or missing what the type needs), 40018
/// bad name length.
fn check_button(button: &Value, top: bool) -> Result<(), ApiError> {
    let button: &Map<String, Value> = button.as_object().ok_or_else(|| ApiError::new(40017))?;
    let name = button
        .get("name")
        .and_then(Value::as_str)
        .ok_or_else(|| ApiError::new(40018))?;
    let max_name = if top { MAX_TOP_NAME } else { MAX_SUB_NAME };
    if name.trim().is_empty() || name.len() > max_name {
        return Err(ApiError::new(40018));
    }
    match button.get("sub_button") {
        Some(Value::Array(subs)) if top && !subs.is_empty() => {
            if subs.len() > MAX_SUB {
                return Err(ApiError::new(40016));
            }
            return subs.iter().try_for_each(|b| check_button(b, false));
        }
        Some(Value::Array(subs)) if subs.is_empty() => {}
        None | Some(Value::Null) => {}
        // A sub-button with sub-buttons, or sub_button that is not a list.
        Some(_) => return Err(ApiError::new(40017)),
    }
    let button_type = button
        .get("type")
        .and_then(Value::as_str)
        .ok_or_else(|| ApiError::new(40017))?;
    let fields = required_fields(button_type).ok_or_else(|| ApiError::new(40017))?;
    for field in fields {
        if button
            .get(*field)
            .and_then(Value::as_str)
            .is_none_or(|v| v.trim().is_empty())
        {
            return Err(ApiError::new(40017));
        }
    }
    Ok(())
}

/// `POST /cgi-bin/menu/create?access_token=` with `{"button":[...]}`.
pub(crate) async fn create(
    State(emu): State<Emulator>,
    RawQuery(q): RawQuery,
    body: Bytes,
) -> ApiResult {
    let q = parse_query(q.as_deref());
    emu.check_token(&q)?;
    let request = json_body(&body)?;
    let buttons = request
        .get("button")
        .and_then(Value::as_array)
        .ok_or_else(|| ApiError::new(40016))?;
    if buttons.is_empty() || buttons.len() > MAX_TOP {
        return Err(ApiError::new(40016));
    }
    buttons.iter().try_for_each(|b| check_button(b, true))?;
    emu.lock().menu = Some(json!({ "button": buttons }));
    tracing::debug!(buttons = buttons.len(), "emulator: menu created");
    Ok(ok())
}

/// `GET /cgi-bin/menu/get?access_token=`.
pub(crate) async fn get(State(emu): State<Emulator>, RawQuery(q): RawQuery) -> ApiResult {
    let q = parse_query(q.as_deref());
    emu.check_token(&q)?;
    let menu = emu
        .lock()
        .menu
        .clone()
        .ok_or_else(|| ApiError::new(46003))?;
    Ok(Json(json!({ "menu": menu })))
}

/// `GET /cgi-bin/menu/delete?access_token=`.
pub(crate) async fn delete(State(emu): State<Emulator>, RawQuery(q): RawQuery) -> ApiResult {
    let q = parse_query(q.as_deref());
    emu.check_token(&q)?;
    emu.lock().menu = None;
    Ok(ok())
}
