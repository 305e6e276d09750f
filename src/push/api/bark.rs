//! Bark's API (bark-server v2), and the single-segment routes Bark shares with ntfy and
//! ServerChan.
//!
//! - `POST /push`: JSON (or a form) with `device_key`, or `device_keys` (a JSON array or a
//!   comma string: one push per key, answered as a batch), `title`, `subtitle`, `body`,
//!   `markdown` (overrides `body`), `url`; Bark's other fields (`group`, `level`, `sound`, …)
//!   are accepted and ignored. Without a device key, the key of `Authorization` is used.
//! - `GET|POST /{key}/{body}`, `/{key}/{title}/{body}`, `/{key}/{title}/{subtitle}/{body}`:
//!   path parts are URL-decoded; query < form < path. Each form may end with a slash
//!   (`/{key}/`, `/{key}/{body}/`, …), as bark-server accepts, and qinglong documents
//!   `BARK_PUSH=https://host/KEY/`.
//! - `GET /ping`: `{"code":200,"message":"pong","timestamp":…}`.
//!
//! The device key is a huixin push key. `subtitle` becomes the first line of the body. A `url`
//! that is not http(s) (an app's URL scheme) is dropped, since the detail page can only link
//! to the web. Answers: HTTP 200 `{"code":200,"message":"success","timestamp":UNIX}`; a batch
//! adds `"data":[{"code":200,"device_key":"k1"},{"code":401,"device_key":"k2","message":"…"}]`.
//! Errors use HTTP status = `code`: 400 `device key is empty` (as bark-server), 401 for an
//! unknown key, 400 for a bad field, 429 when rate limited (with `Retry-After`).
//!
//! The single-segment route `/{x}` dispatches, in this order:
//! 1. `x` ends with `.send`: ServerChan, with the rest of `x` the SendKey ([`super::serverchan`]).
//! 2. `PUT`: ntfy, with `x` the topic ([`super::ntfy`]).
//! 3. `POST` with a JSON or multipart body: Bark, with `x` the key.
//! 4. `POST` with a form: Bark, when the form has one of Bark's content fields; otherwise the
//!    form is really ntfy's raw text (`curl -d "text" host/topic` says it is a form), so ntfy.
//! 5. `POST` with `text/*` or no content type: ntfy.
//! 6. `GET` with Bark's content fields in the query: Bark (bark-server's `/:device_key`).
//! 7. Anything else: 404 in Bark's format.
//!
//! A reserved first segment ([`crate::support::routes::RESERVED`]) is never a key or a topic: 404.

use axum::body::{Body, Bytes};
use axum::extract::{FromRequest, Path, Request, State};
use axum::http::{Method, header};
use axum::response::Response;
use axum::routing::{get, post};
use serde_json::{Value, json};

use super::fields::{Fields, FieldsError, bearer_or_basic};
use super::{json_response, log_error, ntfy, serverchan};
use crate::push::service::{Accepted, PushError, PushRequest, Pushes, Sender};
use crate::support::clock::unix_now;
use crate::support::routes::RESERVED;

/// The most keys one request may push to (Bark's `device_keys`, PushDeer's `pushkey`).
pub(super) const MAX_KEYS_PER_REQUEST: usize = 100;

/// Bark's fields that carry content: a form with none of them is not a Bark request.
const CONTENT_FIELDS: &[&str] = &[
    "title",
    "subtitle",
    "body",
    "markdown",
    "device_key",
    "device_keys",
];

/// The routes of this module, including the `/{x}` catch-alls.
pub(super) fn routes() -> axum::Router<Pushes> {
    axum::Router::new()
        .route("/ping", get(ping))
        .route("/push", post(push))
        .route("/{key}", get(single).post(single).put(single))
        .route("/{key}/{p1}", get(path2).post(path2))
        .route("/{key}/{p1}/{p2}", get(path3).post(path3))
        .route("/{key}/{p1}/{p2}/{p3}", get(path4).post(path4))
        // bark-server's router ignores a trailing slash; `/{key}/` is `/{key}` in every way.
        .route("/ping/", get(ping))
        .route("/push/", post(push))
        .route("/{key}/", get(single).post(single).put(single))
        .route("/{key}/{p1}/", get(path2).post(path2))
        .route("/{key}/{p1}/{p2}/", get(path3).post(path3))
        .route("/{key}/{p1}/{p2}/{p3}/", get(path4).post(path4))
}

/// Bark's answer envelope.
fn envelope(code: u16, message: &str) -> Value {
    json!({ "code": code, "message": message, "timestamp": unix_now() })
}

/// A refusal in Bark's format.
fn failure(error: &PushError) -> Response {
    log_error("bark", error);
    let (status, message) = match error {
        // bark-server's words and status for a request without a device key.
        PushError::MissingKey => (400, "device key is empty".to_owned()),
        e => (e.status(), e.to_string()),
    };
    json_response(status, envelope(status, &message), Some(error))
}

/// An unreadable body in Bark's format.
fn read_failure(e: FieldsError) -> Response {
    let status = match e {
        FieldsError::TooLarge => 413,
        FieldsError::Malformed(_) => 400,
    };
    json_response(status, envelope(status, &e.to_string()), None)
}

fn not_found() -> Response {
    json_response(404, envelope(404, "not found"), None)
}

/// `link` when it is an http(s) URL (the only kind the detail page can open); `None` for
/// app URL schemes, `mailto:` and the like, which the original services accept.
pub(super) fn web_link(link: Option<String>) -> Option<String> {
    link.map(|l| l.trim().to_owned()).filter(|l| {
        let lower = l.to_ascii_lowercase();
        lower.starts_with("http://") || lower.starts_with("https://")
    })
}

async fn ping() -> Response {
    json_response(200, envelope(200, "pong"), None)
}

/// The push a Bark request asks for.
fn bark_request(fields: &Fields) -> PushRequest {
    let body = fields
        .get("markdown")
        .or_else(|| fields.get("body"))
        .unwrap_or_default();
    let body = match fields.get("subtitle") {
        Some(subtitle) if body.is_empty() => subtitle,
        Some(subtitle) => format!("{subtitle}\n\n{body}"),
        None => body,
    };
    PushRequest {
        title: fields.get("title").unwrap_or_default(),
        body,
        url: web_link(fields.get("url")),
        ..PushRequest::default()
    }
}

async fn push_one(pushes: &Pushes, key: &str, fields: &Fields) -> Result<Accepted, PushError> {
    let key = pushes.authenticate_to_push(key).await?;
    pushes
        .accept(Sender::Key(&key), bark_request(fields), "bark")
        .await
}

/// `POST /push`.
async fn push(State(pushes): State<Pushes>, request: Request) -> Response {
    let headers = request.headers().clone();
    let fields = match Fields::read(request).await {
        Ok(f) => f,
        Err(e) => return read_failure(e),
    };
    let batch = fields.list("device_keys");
    if batch.is_empty() {
        // Apprise may add Basic auth; the device key in the body wins over it.
        let Some(key) = fields
            .get("device_key")
            .or_else(|| bearer_or_basic(&headers))
        else {
            return failure(&PushError::MissingKey);
        };
        return match push_one(&pushes, &key, &fields).await {
            Ok(_) => json_response(200, envelope(200, "success"), None),
            Err(e) => failure(&e),
        };
    }
    if batch.len() > MAX_KEYS_PER_REQUEST {
        return failure(&PushError::Invalid(format!(
            "at most {MAX_KEYS_PER_REQUEST} device keys in one request"
        )));
    }
    let mut data = Vec::with_capacity(batch.len());
    for key in &batch {
        data.push(match push_one(&pushes, key, &fields).await {
            Ok(_) => json!({ "code": 200, "device_key": key }),
            Err(e) => {
                log_error("bark", &e);
                json!({ "code": e.status(), "device_key": key, "message": e.to_string() })
            }
        });
    }
    json_response(
        200,
        json!({ "code": 200, "message": "success", "data": data, "timestamp": unix_now() }),
        None,
    )
}

/// A push to `key` from the path parts `(name, value)`, which win over query and form.
async fn push_path(
    pushes: &Pushes,
    key: &str,
    parts: &[(&str, String)],
    request: Request,
) -> Response {
    if RESERVED.contains(&key) {
        return not_found();
    }
    let mut fields = match Fields::read(request).await {
        Ok(f) => f,
        Err(e) => return read_failure(e),
    };
    for (name, value) in parts {
        fields.set(name, value.as_str());
    }
    if key.is_empty() {
        return failure(&PushError::MissingKey);
    }
    match push_one(pushes, key, &fields).await {
        Ok(_) => json_response(200, envelope(200, "success"), None),
        Err(e) => failure(&e),
    }
}

async fn path2(
    State(pushes): State<Pushes>,
    Path((key, body)): Path<(String, String)>,
    request: Request,
) -> Response {
    // ntfy subscribers poll `/{topic}/json` and friends; huixin does not serve them, and
    // they must not become pushes with the body "json".
    if request.method() == Method::GET && ntfy::SUBSCRIBE_SUFFIXES.contains(&body.as_str()) {
        return ntfy::not_found();
    }
    push_path(&pushes, &key, &[("body", body)], request).await
}

async fn path3(
    State(pushes): State<Pushes>,
    Path((key, title, body)): Path<(String, String, String)>,
    request: Request,
) -> Response {
    push_path(&pushes, &key, &[("title", title), ("body", body)], request).await
}

async fn path4(
    State(pushes): State<Pushes>,
    Path((key, title, subtitle, body)): Path<(String, String, String, String)>,
    request: Request,
) -> Response {
    let parts = [("title", title), ("subtitle", subtitle), ("body", body)];
    push_path(&pushes, &key, &parts, request).await
}

/// What the body of a `POST /{x}` is.
enum BodyKind {
    Json,
    Multipart,
    Form,
    Text,
}

fn body_kind(request: &Request) -> BodyKind {
    let content_type = request
        .headers()
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("")
        .trim()
        .to_ascii_lowercase();
    if content_type.starts_with("application/json") || content_type.ends_with("+json") {
        BodyKind::Json
    } else if content_type.starts_with("multipart/form-data") {
        BodyKind::Multipart
    } else if content_type.starts_with("application/x-www-form-urlencoded") {
        BodyKind::Form
    } else {
        // `text/*`, none, or anything else: ntfy publishes any body as the message.
        BodyKind::Text
    }
}

/// `/{x}`: see the module's documentation for the order.
async fn single(State(pushes): State<Pushes>, Path(x): Path<String>, request: Request) -> Response {
    if let Some(key) = x.strip_suffix(".send") {
        return serverchan::send(&pushes, key, request).await;
    }
    let method = request.method().clone();
    if method == Method::PUT {
        return ntfy::publish_raw(&pushes, &x, request).await;
    }
    if method == Method::GET {
        let wants_push = request.uri().query().is_some_and(|q| {
            serde_urlencoded::from_str::<Vec<(String, String)>>(q)
                .unwrap_or_default()
                .iter()
                .any(|(k, v)| !v.is_empty() && CONTENT_FIELDS.contains(&k.as_str()))
        });
        if !wants_push || RESERVED.contains(&x.as_str()) {
            return not_found();
        }
        return push_path(&pushes, &x, &[], request).await;
    }
    match body_kind(&request) {
        BodyKind::Json | BodyKind::Multipart => push_path(&pushes, &x, &[], request).await,
        BodyKind::Text => ntfy::publish_raw(&pushes, &x, request).await,
        BodyKind::Form => {
            let (parts, body) = request.into_parts();
            let bytes =
                match Bytes::from_request(Request::from_parts(parts.clone(), body), &()).await {
                    Ok(b) => b,
                    Err(e) if e.status() == axum::http::StatusCode::PAYLOAD_TOO_LARGE => {
                        return read_failure(FieldsError::TooLarge);
                    }
                    Err(e) => return read_failure(FieldsError::Malformed(e.body_text())),
                };
            let is_bark = serde_urlencoded::from_bytes::<Vec<(String, String)>>(&bytes)
                .unwrap_or_default()
                .iter()
                .any(|(k, _)| CONTENT_FIELDS.contains(&k.as_str()));
            let request = Request::from_parts(parts, Body::from(bytes));
            if is_bark {
                push_path(&pushes, &x, &[], request).await
            } else {
                ntfy::publish_raw(&pushes, &x, request).await
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn subtitle_leads_and_markdown_wins() {
        let mut f = Fields::default();
        f.set("title", "T");
        f.set("subtitle", "S");
        f.set("body", "plain");
        f.set("markdown", "**md**");
        f.set("url", "https://example.com/x");
        let r = bark_request(&f);
        assert_eq!(r.title, "T");
        assert_eq!(r.body, "S\n\n**md**");
        assert_eq!(r.url.as_deref(), Some("https://example.com/x"));
    }

    #[test]
    fn only_web_links_are_kept() {
        assert_eq!(web_link(Some("weixin://x".into())), None);
        assert_eq!(web_link(Some(" ".into())), None);
        assert_eq!(
            web_link(Some("HTTPS://a.example".into())).as_deref(),
            Some("HTTPS://a.example")
        );
    }
}
