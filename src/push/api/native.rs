//! huixin's own push API, the wechat-push `/message` API, and the detail page.
//!
//! - `POST /api/v1/push`: JSON (or a form) `{to?, topic?, title, body, url?, summary?}` with
//!   the key as `Authorization: Bearer KEY` or a `key` parameter; answers
//!   `{"id", "recipients", "detail_url"}`. Errors: the HTTP status and
//!   `{"error": "…", "status": N}`.
//! - `GET /api/v1/push/{id}`: the push and each recipient's status (OpenIDs to an admin key
//!   only; a follower's key sees its own row).
//! - `GET /api/v1/push?since=UNIX&after=SEQ&limit=N`: the pushes the key's target received,
//!   oldest first, with `next` to continue from.
//! - `POST /message`: `receiver`, `title`, `body`, `url` as a form, multipart or JSON; answers
//!   `{"success": true, "msg": null, "data": {"errcode": 0, "errmsg": "ok", "msgid": null,
//!   "token": ID}}`, or `{"success": false, "msg": "…"}` with 400 (missing fields), 401/403
//!   (key), 429 (rate limit). `GET /message/{token}` answers the push's title, body, time and
//!   link. With a Gotify token (`X-Gotify-Key`, `token`), or a `message` field and no
//!   `receiver`, `POST /message` is Gotify's.
//! - `GET /m/{id}`: the detail page.

use axum::extract::{Path, RawQuery, Request, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{Html, IntoResponse, Response};
use axum::routing::{get, post};
use serde_json::{Value, json};

use super::fields::{Fields, FieldsError, bearer_or_basic, number, query_pairs};
use super::{gotify, json_response, log_error};
use crate::push::page::{self, PageView};
use crate::push::render::markdown_to_html;
use crate::push::service::{PushError, PushRequest, Pushes, Sender};

/// The routes of this module.
pub fn routes() -> axum::Router<Pushes> {
    axum::Router::new()
        .route("/api/v1/push", post(api_push).get(api_history))
        .route("/api/v1/push/{id}", get(api_status))
        .route("/message", post(message_post).get(gotify::list))
        .route("/message/{token}", get(message_get))
        .route("/m/{id}", get(detail_page))
}

/// The key of a request: the Authorization header, else a `key` field.
pub(crate) fn request_key(headers: &HeaderMap, fields: &Fields) -> Option<String> {
    bearer_or_basic(headers).or_else(|| fields.get("key"))
}

pub(crate) fn native_error(error: &PushError) -> Response {
    log_error("api", error);
    json_response(
        error.status(),
        json!({ "error": error.to_string(), "status": error.status() }),
        Some(error),
    )
}

fn fields_error(e: FieldsError) -> PushError {
    PushError::Invalid(e.to_string())
}

async fn api_push(State(pushes): State<Pushes>, request: Request) -> Response {
    let headers = request.headers().clone();
    let result = async {
        let fields = Fields::read(request).await.map_err(|e| match e {
            FieldsError::TooLarge => PushError::TooLarge,
            e => fields_error(e),
        })?;
        let key = request_key(&headers, &fields).ok_or(PushError::MissingKey)?;
        let key = pushes.authenticate_to_push(&key).await?;
        let request = PushRequest {
            to: fields.list("to"),
            to_uid: fields.list("to_uid"),
            topic: fields.get("topic"),
            title: fields.get("title").unwrap_or_default(),
            body: fields.get("body").unwrap_or_default(),
            url: fields.get("url"),
            summary: fields.get("summary"),
        };
        pushes.accept(Sender::Key(&key), request, "api").await
    }
    .await;
    match result {
        Ok(accepted) => json_response(200, json!(accepted), None),
        Err(e) => native_error(&e),
    }
}

pub(crate) async fn authenticated(
    pushes: &Pushes,
    headers: &HeaderMap,
    query: Option<&str>,
) -> Result<crate::push::service::Key, PushError> {
    let from_query = query.and_then(|q| {
        serde_urlencoded::from_str::<Vec<(String, String)>>(q)
            .ok()?
            .into_iter()
            .find(|(k, _)| k == "key")
            .map(|(_, v)| v)
    });
    let key = bearer_or_basic(headers)
        .or(from_query)
        .ok_or(PushError::MissingKey)?;
    pushes.authenticate(&key).await
}

async fn api_status(
    State(pushes): State<Pushes>,
    Path(id): Path<String>,
    headers: HeaderMap,
    RawQuery(query): RawQuery,
) -> Response {
    let result = async {
        let key = authenticated(&pushes, &headers, query.as_deref()).await?;
        pushes.status(&key, &id).await
    }
    .await;
    match result {
        Ok(status) => json_response(200, json!(status), None),
        Err(e) => native_error(&e),
    }
}

async fn api_history(
    State(pushes): State<Pushes>,
    headers: HeaderMap,
    RawQuery(raw): RawQuery,
) -> Response {
    let result = async {
        let query = query_pairs(raw.as_deref());
        let key = authenticated(&pushes, &headers, raw.as_deref()).await?;
        let since = number(&query, "since")?.unwrap_or(0);
        let after = number(&query, "after")?.unwrap_or(0);
        let limit = number(&query, "limit")?.unwrap_or(50).clamp(1, 1000) as u32;
        let rows = pushes.history(&key, after, since, limit).await?;
        let next = (rows.len() == limit as usize)
            .then(|| rows.last().map(|r| r.seq))
            .flatten();
        let items: Vec<Value> = rows
            .into_iter()
            .map(|r| {
                json!({
                    "id": r.id,
                    "seq": r.seq,
                    "title": r.title,
                    "body": r.body,
                    "url": r.url,
                    "summary": r.summary,
                    "target": r.target,
                    "source": r.source,
                    "created_at": r.created_at,
                    "detail_url": pushes.detail_url(&r.id),
                })
            })
            .collect();
        Ok::<_, PushError>(json!({ "pushes": items, "next": next }))
    }
    .await;
    match result {
        Ok(body) => json_response(200, body, None),
        Err(e) => native_error(&e),
    }
}

/// The wechat-push error envelope.
fn message_error(error: &PushError) -> Response {
    log_error("message", error);
    json_response(
        error.status(),
        json!({ "success": false, "msg": error.to_string() }),
        Some(error),
    )
}

async fn message_post(State(pushes): State<Pushes>, request: Request) -> Response {
    let headers = request.headers().clone();
    let gotify_token = gotify::query_token(request.uri().query());
    let fields = match Fields::read(request).await {
        Ok(f) => f,
        Err(e) if gotify::has_token(&headers, gotify_token.as_deref()) => {
            return gotify::read_failure(e);
        }
        Err(e) => return message_error(&fields_error(e)),
    };
    if gotify::is_gotify(&headers, gotify_token.as_deref(), &fields) {
        return gotify::push(&pushes, &headers, gotify_token, &fields).await;
    }
    let result = async {
        let key = request_key(&headers, &fields).ok_or(PushError::MissingKey)?;
        let key = pushes.authenticate(&key).await?;
        let title = fields.get("title").unwrap_or_default();
        if title.trim().is_empty() {
            return Err(PushError::Invalid("title is required".into()));
        }
        let to: Vec<String> = fields.get("receiver").into_iter().collect();
        let request = PushRequest {
            to,
            title,
            body: fields.get("body").unwrap_or_default(),
            url: fields.get("url"),
            ..PushRequest::default()
        };
        pushes.accept(Sender::Key(&key), request, "message").await
    }
    .await;
    match result {
        Ok(accepted) => json_response(
            200,
            json!({
                "success": true,
                "msg": null,
                "data": { "errcode": 0, "errmsg": "ok", "msgid": null, "token": accepted.id }
            }),
            None,
        ),
        Err(e) => message_error(&e),
    }
}

async fn message_get(State(pushes): State<Pushes>, Path(token): Path<String>) -> Response {
    match pushes.page(&token).await {
        Ok(Some(push)) => json_response(
            200,
            json!({
                "success": true,
                "data": {
                    "title": push.title,
                    "body": push.body,
                    "created_time": rfc3339(push.created_at),
                    "url": push.url,
                }
            }),
            None,
        ),
        Ok(None) => message_error(&PushError::NotFound("no such message".into())),
        Err(e) => message_error(&e),
    }
}

/// A Unix time as RFC 3339 in UTC.
pub(crate) fn rfc3339(unix: i64) -> String {
    jiff::Timestamp::from_second(unix)
        .map(|t| t.to_string())
        .unwrap_or_default()
}

/// The detail page's headers: no scripts can run, nothing is sniffed or referred.
pub(crate) fn page_response(status: StatusCode, html: String) -> Response {
    let mut response = (status, Html(html)).into_response();
    let headers = response.headers_mut();
    headers.insert(
        header::CONTENT_SECURITY_POLICY,
        HeaderValue::from_static(page::CONTENT_SECURITY_POLICY),
    );
    headers.insert(
        header::X_CONTENT_TYPE_OPTIONS,
        HeaderValue::from_static("nosniff"),
    );
    headers.insert(
        header::REFERRER_POLICY,
        HeaderValue::from_static("no-referrer"),
    );
    headers.insert(
        header::CACHE_CONTROL,
        HeaderValue::from_static("private, max-age=60"),
    );
    response
}

/// The site name shown at the bottom of pages.
pub(crate) const SITE_NAME: &str = "huixin";

async fn detail_page(State(pushes): State<Pushes>, Path(id): Path<String>) -> Response {
    match pushes.page(&id).await {
        Ok(Some(push)) => {
            let body_html = markdown_to_html(&push.body);
            let time = pushes.format_time(push.created_at);
            let html = page::detail_page(&PageView {
                title: &push.title,
                time: &time,
                body_html: &body_html,
                url: push.url.as_deref(),
                site_name: SITE_NAME,
            });
            page_response(StatusCode::OK, html)
        }
        Ok(None) => page_response(StatusCode::NOT_FOUND, page::not_found_page(SITE_NAME)),
        Err(e) => {
            log_error("page", &e);
            page_response(
                StatusCode::SERVICE_UNAVAILABLE,
                page::not_found_page(SITE_NAME),
            )
        }
    }
}
