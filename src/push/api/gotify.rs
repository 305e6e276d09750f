//! Gotify's message API.
//!
//! - `POST /message` (shared with the wechat-push API in [`super::native`], which hands the
//!   request here when `is_gotify` says so): the application token in `X-Gotify-Key`, the
//!   `token` query parameter or `Authorization: Bearer`; JSON or a form with `message`
//!   (required), `title`, `priority`, `extras`. The token is a huixin push key; `message` is
//!   the markdown body; `extras["client::notification"]["click"]["url"]` is the link (when
//!   http(s)). Answers HTTP 200 `{"id": SEQ, "appid": 1, "message", "title", "priority",
//!   "extras", "date": RFC3339}`, with `id` a number as Gotify's clients expect, `title` as
//!   sent and `priority` 0 when not given.
//! - `GET /message?limit=&since=`: the pushes the token's target received, newest first, with
//!   `since` returning only ids below it, in Gotify's `{"paging": {"size", "since", "limit",
//!   "next"?}, "messages": [...]}` (`limit` 1-200, default 100).
//! - `GET /health`: `{"health":"green","database":"green"}`; 503 with `orange`/`red` and a
//!   `reason` when the store cannot take writes (locked, full, corrupt: [`crate::store::Store::health`]).
//!
//! Errors: `{"error":"Unauthorized","errorCode":401,"errorDescription":"…"}`, with the HTTP
//! status's reason as `error`: 400 Bad Request, 401 Unauthorized, 403 Forbidden, 404 Not
//! Found, 413 Payload Too Large, 429 Too Many Requests (with `Retry-After`), 500, 503.

use std::collections::VecDeque;

use axum::extract::{RawQuery, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::Response;
use axum::routing::get;
use serde_json::{Value, json};

use super::bark::web_link;
use super::fields::{Fields, FieldsError, bearer_or_basic, number, query_pairs};
use super::native::rfc3339;
use super::{json_response, log_error};
use crate::push::service::{Key, PushError, PushRequest, Pushes, Sender};
use crate::store::push::PushRow;

/// The application id every answer names: a huixin key is the one application.
const APP_ID: i64 = 1;
/// `GET /message`'s default and largest page, as Gotify's.
const DEFAULT_LIMIT: usize = 100;
const MAX_LIMIT: usize = 200;
/// Rows read per store query while paging newest first.
const SCAN_PAGE: u32 = 1000;

/// The routes of this module (`/message` is [`super::native`]'s, which calls [`push`] and
/// [`list`]).
pub(super) fn routes() -> axum::Router<Pushes> {
    axum::Router::new().route("/health", get(health))
}

/// A refusal in Gotify's format.
fn failure(status: u16, description: &str, error: Option<&PushError>) -> Response {
    let reason = StatusCode::from_u16(status)
        .ok()
        .and_then(|s| s.canonical_reason())
        .unwrap_or("Error");
    json_response(
        status,
        json!({ "error": reason, "errorCode": status, "errorDescription": description }),
        error,
    )
}

fn push_failure(error: &PushError) -> Response {
    log_error("gotify", error);
    let description = match error {
        // Gotify's words for a missing or wrong token.
        PushError::MissingKey | PushError::BadKey => {
            "you need to provide a valid access token or user credentials to access this api"
                .to_owned()
        }
        e => e.to_string(),
    };
    failure(error.status(), &description, Some(error))
}

/// An unreadable body in Gotify's format.
pub(super) fn read_failure(e: FieldsError) -> Response {
    let status = match e {
        FieldsError::TooLarge => 413,
        FieldsError::Malformed(_) => 400,
    };
    failure(status, &e.to_string(), None)
}

/// The `token` query parameter of `query`.
pub(super) fn query_token(query: Option<&str>) -> Option<String> {
    serde_urlencoded::from_str::<Vec<(String, String)>>(query?)
        .ok()?
        .into_iter()
        .find(|(k, v)| k == "token" && !v.is_empty())
        .map(|(_, v)| v)
}

fn header_token(headers: &HeaderMap) -> Option<String> {
    headers
        .get("x-gotify-key")
        .and_then(|v| v.to_str().ok())
        .map(|v| v.trim().to_owned())
        .filter(|v| !v.is_empty())
}

/// Whether the request names a Gotify token explicitly (`X-Gotify-Key` or `?token=`).
pub(super) fn has_token(headers: &HeaderMap, query_token: Option<&str>) -> bool {
    header_token(headers).is_some() || query_token.is_some()
}

/// Whether a `POST /message` is Gotify's: it names a Gotify token, or its body has `message`,
/// no `receiver`, and not wechat-push's `title` + `body` pair.
pub(super) fn is_gotify(headers: &HeaderMap, query_token: Option<&str>, fields: &Fields) -> bool {
    has_token(headers, query_token)
        || (fields.get("message").is_some()
            && fields.get("receiver").is_none()
            && !(fields.get("title").is_some() && fields.get("body").is_some()))
}

/// The token, where Gotify looks for it: `X-Gotify-Key`, `?token=`, then `Authorization`.
fn token(headers: &HeaderMap, query_token: Option<String>) -> Option<String> {
    header_token(headers)
        .or(query_token)
        .or_else(|| bearer_or_basic(headers))
}

fn priority(fields: &Fields) -> Result<i64, PushError> {
    let invalid = || PushError::Invalid("Field 'priority' must be a whole number".into());
    match fields.value("priority") {
        None | Some(Value::Null) => Ok(0),
        Some(Value::Number(n)) => n.as_i64().ok_or_else(invalid),
        Some(Value::String(s)) if s.trim().is_empty() => Ok(0),
        Some(Value::String(s)) => s.trim().parse().map_err(|_| invalid()),
        Some(_) => Err(invalid()),
    }
}

/// `POST /message` with Gotify's semantics.
pub(super) async fn push(
    pushes: &Pushes,
    headers: &HeaderMap,
    query_token: Option<String>,
    fields: &Fields,
) -> Response {
    let result = async {
        let secret = token(headers, query_token).ok_or(PushError::MissingKey)?;
        let key = pushes.authenticate(&secret).await?;
        let message = fields
            .get("message")
            .ok_or_else(|| PushError::Invalid("Field 'message' is required".into()))?;
        let priority = priority(fields)?;
        let extras = match fields.value("extras") {
            None | Some(Value::Null) => None,
            Some(v @ Value::Object(_)) => Some(v.clone()),
            Some(_) => {
                return Err(PushError::Invalid(
                    "Field 'extras' must be an object".into(),
                ));
            }
        };
        let url = extras
            .as_ref()
            .and_then(|e| e.pointer("/client::notification/click/url"))
            .and_then(Value::as_str)
            .map(str::to_owned);
        let title = fields.get("title").unwrap_or_default();
        let request = PushRequest {
            title: title.clone(),
            body: message.clone(),
            url: web_link(url),
            ..PushRequest::default()
        };
        let accepted = pushes.accept(Sender::Key(&key), request, "gotify").await?;
        let mut answer = json!({
            "id": accepted.seq,
            "appid": APP_ID,
            "message": message,
            "title": title,
            "priority": priority,
            "date": rfc3339(accepted.created_at),
        });
        if let (Some(extras), Some(map)) = (extras, answer.as_object_mut()) {
            map.insert("extras".into(), extras);
        }
        Ok::<_, PushError>(answer)
    }
    .await;
    match result {
        Ok(answer) => json_response(200, answer, None),
        Err(e) => push_failure(&e),
    }
}

/// A query parameter as a whole number; `None` when absent.
/// The newest `want` pushes `key` may list with a seq below `before` (0: no bound), newest
/// first.
///
/// The store pages oldest first; this walks it in large pages and keeps the last `want`
/// rows, so one request costs one query per [`SCAN_PAGE`] pushes kept (retention bounds it).
async fn newest(
    pushes: &Pushes,
    key: &Key,
    before: i64,
    want: usize,
) -> Result<Vec<PushRow>, PushError> {
    let mut window: VecDeque<PushRow> = VecDeque::with_capacity(want + 1);
    let mut after = 0;
    'scan: loop {
        let rows = pushes.history(key, after, 0, SCAN_PAGE).await?;
        let full = rows.len() == SCAN_PAGE as usize;
        for row in rows {
            if before > 0 && row.seq >= before {
                break 'scan;
            }
            after = row.seq;
            window.push_back(row);
            if window.len() > want {
                window.pop_front();
            }
        }
        if !full {
            break;
        }
    }
    Ok(window.into_iter().rev().collect())
}

/// `GET /message?limit=&since=`.
pub(super) async fn list(
    State(pushes): State<Pushes>,
    headers: HeaderMap,
    RawQuery(raw): RawQuery,
) -> Response {
    let result = async {
        let query = query_pairs(raw.as_deref());
        let secret = token(&headers, query_token(raw.as_deref())).ok_or(PushError::MissingKey)?;
        let key = pushes.authenticate(&secret).await?;
        let limit = match number(&query, "limit")? {
            None => DEFAULT_LIMIT,
            Some(n) if (1..=MAX_LIMIT as i64).contains(&n) => n as usize,
            Some(_) => {
                return Err(PushError::Invalid(format!(
                    "limit must be between 1 and {MAX_LIMIT}"
                )));
            }
        };
        let since = match number(&query, "since")? {
            None => 0,
            Some(n) if n >= 0 => n,
            Some(_) => return Err(PushError::Invalid("since must not be negative".into())),
        };
        let mut rows = newest(&pushes, &key, since, limit + 1).await?;
        let more = rows.len() > limit;
        rows.truncate(limit);
        let messages: Vec<Value> = rows.iter().map(message_json).collect();
        let mut paging = json!({ "size": rows.len(), "since": 0, "limit": limit });
        if more && let (Some(last), Some(map)) = (rows.last(), paging.as_object_mut()) {
            // As Gotify: `since` is the last id returned, `next` the page after it.
            map.insert("since".into(), json!(last.seq));
            map.insert(
                "next".into(),
                json!(format!(
                    "{}/message?limit={limit}&since={}",
                    pushes.public_base(),
                    last.seq
                )),
            );
        }
        Ok::<_, PushError>(json!({ "paging": paging, "messages": messages }))
    }
    .await;
    match result {
        Ok(body) => json_response(200, body, None),
        Err(e) => push_failure(&e),
    }
}

/// A stored push as a Gotify message (its link as Gotify's click extra).
fn message_json(row: &PushRow) -> Value {
    let mut message = json!({
        "id": row.seq,
        "appid": APP_ID,
        "message": row.body,
        "title": row.title,
        "priority": 0,
        "date": rfc3339(row.created_at),
    });
    if let (Some(url), Some(map)) = (&row.url, message.as_object_mut()) {
        map.insert(
            "extras".into(),
            json!({ "client::notification": { "click": { "url": url } } }),
        );
    }
    message
}

async fn health(State(pushes): State<Pushes>) -> Response {
    match pushes.store().health().await {
        Ok(()) => json_response(200, json!({ "health": "green", "database": "green" }), None),
        Err(e) => {
            tracing::error!(reason = e.kind(), error = %e, "gotify health: store unhealthy");
            json_response(
                503,
                json!({ "health": "orange", "database": "red", "reason": e.to_string() }),
                None,
            )
        }
    }
}
