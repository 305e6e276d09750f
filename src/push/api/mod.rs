//! The push service over HTTP: huixin's own API, the detail page, and the APIs of the push
//! services existing tools already speak, each answering in its own success and error shapes.
//!
//! Routes (the callback path and `/healthz` belong to [`crate::server`]):
//! - `POST /api/v1/push`, `GET /api/v1/push/{id}`, `GET /api/v1/push`: huixin's API ([`native`]).
//! - `POST /message` (form, multipart or JSON), `GET /message/{token}`: the wechat-push API
//!   ([`native`]); `POST /message` with a Gotify token, and `GET /message`, are Gotify's.
//! - `GET /m/{id}`: the detail page ([`native`]).
//! - `GET /health`: Gotify's health ([`gotify`]).
//! - `ANY /message/push`: PushDeer ([`pushdeer`]).
//! - `POST /`, `GET|POST|PUT /{topic}/publish` (`/send`, `/trigger`), `GET /v1/health`: ntfy
//!   ([`ntfy`]).
//! - `POST /push`, `GET /ping`, `GET|POST /{key}/…` (one to three more segments): Bark
//!   ([`bark`]).
//! - `/{x}`: ServerChan when `x` ends with `.send` ([`serverchan`]), else Bark or ntfy by
//!   method and content type ([`bark`] documents the order).
//!
//! Path segments huixin uses itself ([`crate::support::routes::RESERVED`]) are never taken for a key or a topic; keys
//! are at least 24 characters, so none of these words can be one.

pub mod bark;
pub mod fields;
pub mod gotify;
pub mod native;
pub mod ntfy;
pub mod pushdeer;
pub mod serverchan;

use axum::Json;
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};

use super::service::{PushError, Pushes};
use crate::server::callback::BODY_READ_TIMEOUT;

/// Every push route, ready to merge into the server's router.
pub fn routes(pushes: Pushes, body_limit: usize) -> axum::Router {
    native::routes()
        .merge(gotify::routes())
        .merge(pushdeer::routes())
        .merge(ntfy::routes())
        .merge(bark::routes())
        .with_state(pushes)
        .layer(axum::extract::DefaultBodyLimit::max(body_limit))
        .layer(axum::middleware::map_request(body_deadline))
}

/// Gives the whole request body [`BODY_READ_TIMEOUT`] to arrive, counted from the headers: a
/// client trickling it byte by byte gets the API's own "bad request" instead of holding the
/// connection open.
async fn body_deadline(request: axum::extract::Request) -> axum::extract::Request {
    use futures_util::StreamExt;
    let deadline = tokio::time::Instant::now() + BODY_READ_TIMEOUT;
    let (parts, body) = request.into_parts();
    let chunks =
        futures_util::stream::unfold(Some(body.into_data_stream()), move |stream| async move {
            let mut stream = stream?;
            match tokio::time::timeout_at(deadline, stream.next()).await {
                Ok(Some(chunk)) => Some((chunk, Some(stream))),
                Ok(None) => None,
                // One error, then the end.
                Err(_) => Some((
                    Err(axum::Error::new(format!(
                        "the request body did not arrive within {} s",
                        BODY_READ_TIMEOUT.as_secs()
                    ))),
                    None,
                )),
            }
        });
    axum::extract::Request::from_parts(parts, axum::body::Body::from_stream(chunks))
}

/// A JSON answer with a status, and `Retry-After` when rate limited.
pub(crate) fn json_response(
    status: u16,
    body: serde_json::Value,
    error: Option<&PushError>,
) -> Response {
    let status = StatusCode::from_u16(status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
    let mut response = (status, Json(body)).into_response();
    if let Some(PushError::RateLimited(wait)) = error
        && let Ok(v) = HeaderValue::from_str(&wait.as_secs().max(1).to_string())
    {
        response.headers_mut().insert(header::RETRY_AFTER, v);
    }
    response
}

/// Logs our own failures (the caller's are theirs to see in the answer).
pub(crate) fn log_error(api: &str, error: &PushError) {
    if error.status() >= 500 {
        tracing::error!(api, error = %error, "push request failed");
    } else {
        tracing::debug!(api, error = %error, "push request refused");
    }
}
