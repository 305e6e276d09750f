//! ServerChan's (Server酱 Turbo) send API.
//!
//! - `GET|POST /{SENDKEY}.send` (dispatched from [`super::bark`]'s `/{x}`, since a route
//!   cannot end a segment with a literal): `title` (or `text`, required), `desp` (the markdown
//!   body), `short` (the card's summary), from the query, a form or JSON. ServerChan's other
//!   fields (`channel`, `openid`, `noip`) are ignored.
//!
//! The SendKey is a huixin push key. Answers HTTP 200 `{"code":0,"message":"","data":
//! {"pushid":ID,"readkey":ID,"error":"SUCCESS","errno":0}}` with both ids the push id (its
//! detail page is `/m/ID`). Errors: `{"code":N,"message":"…","data":null}` with `N` the HTTP
//! status it is sent with: 400 (no title, a bad field), 401 (no or unknown key), 403, 404
//! (a reserved name), 413, 429 (rate limited, with `Retry-After`), 500, 503.

use axum::extract::Request;
use axum::response::Response;
use serde_json::json;

use super::fields::{Fields, FieldsError};
use super::{json_response, log_error};
use crate::push::service::{PushError, PushRequest, Pushes, Sender};
use crate::support::routes::RESERVED;

/// A refusal in ServerChan's format.
fn failure(status: u16, message: &str, error: Option<&PushError>) -> Response {
    json_response(
        status,
        json!({ "code": status, "message": message, "data": null }),
        error,
    )
}

fn push_failure(error: &PushError) -> Response {
    log_error("serverchan", error);
    failure(error.status(), &error.to_string(), Some(error))
}

/// `/{key}.send`.
pub(super) async fn send(pushes: &Pushes, key: &str, request: Request) -> Response {
    if RESERVED.contains(&key) {
        return failure(404, "not found", None);
    }
    let fields = match Fields::read(request).await {
        Ok(f) => f,
        Err(e @ FieldsError::TooLarge) => return failure(413, &e.to_string(), None),
        Err(e) => return failure(400, &e.to_string(), None),
    };
    let result = async {
        let key = pushes.authenticate(key).await?;
        let title = fields
            .first(&["title", "text"])
            .ok_or_else(|| PushError::Invalid("title is required".into()))?;
        let request = PushRequest {
            title,
            body: fields.get("desp").unwrap_or_default(),
            summary: fields.get("short"),
            ..PushRequest::default()
        };
        pushes
            .accept(Sender::Key(&key), request, "serverchan")
            .await
    }
    .await;
    match result {
        Ok(accepted) => json_response(
            200,
            json!({
                "code": 0,
                "message": "",
                "data": {
                    "pushid": accepted.id,
                    "readkey": accepted.id,
                    "error": "SUCCESS",
                    "errno": 0,
                }
            }),
            None,
        ),
        Err(e) => push_failure(&e),
    }
}
