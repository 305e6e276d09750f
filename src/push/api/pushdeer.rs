//! PushDeer's push API.
//!
//! - `GET|POST /message/push` (any method): `pushkey` (a comma list: one push per key, at
//!   most 100), `text` (required: the title, or the image's URL),
//!   `desp` (the markdown body), `type` (`text`, `markdown` or `image`: an image becomes the
//!   body `![](text)` under the title `Image`); from the query, a form or JSON.
//!
//! Each pushkey is a huixin push key. Answers HTTP 200 `{"code":0,"content":{"result":[…]}}`
//! with one JSON-encoded string per key, in order: `{"counts":1,"logs":[],"success":"ok"}`,
//! or for a key that failed `{"counts":0,"logs":[],"success":"error","error":"…"}`. When
//! every key fails, or the request itself is wrong, the answer is `{"code":N,"error":"…"}`
//! with `N` = 80000 + the HTTP status it is sent with (that of the first key's error): 80400
//! (no text, a bad field), 80401 (no or unknown key), 80403, 80404, 80413, 80429 (rate
//! limited, with `Retry-After`), 80500, 80503.

use axum::extract::{Request, State};
use axum::response::Response;
use axum::routing::any;
use serde_json::json;

use super::bark::MAX_KEYS_PER_REQUEST;
use super::fields::{Fields, FieldsError};
use super::{json_response, log_error};
use crate::push::service::{PushError, PushRequest, Pushes, Sender};

/// The routes of this module.
pub(super) fn routes() -> axum::Router<Pushes> {
    axum::Router::new().route("/message/push", any(push))
}

/// A refusal in PushDeer's format.
fn failure(status: u16, message: &str, error: Option<&PushError>) -> Response {
    json_response(
        status,
        json!({ "code": 80_000 + u32::from(status), "error": message }),
        error,
    )
}

fn push_failure(error: &PushError) -> Response {
    log_error("pushdeer", error);
    failure(error.status(), &error.to_string(), Some(error))
}

/// The push a PushDeer request asks for.
fn pushdeer_request(fields: &Fields) -> Result<PushRequest, PushError> {
    let text = fields
        .get("text")
        .ok_or_else(|| PushError::Invalid("text is required".into()))?;
    let kind = fields.get("type").unwrap_or_else(|| "text".into());
    match kind.as_str() {
        "image" => Ok(PushRequest {
            title: "Image".into(),
            body: format!("![]({})", text.trim()),
            ..PushRequest::default()
        }),
        "text" | "markdown" => Ok(PushRequest {
            title: text,
            body: fields.get("desp").unwrap_or_default(),
            ..PushRequest::default()
        }),
        other => Err(PushError::Invalid(format!(
            "type {other:?} is not text, markdown or image"
        ))),
    }
}

/// `/message/push`.
async fn push(State(pushes): State<Pushes>, request: Request) -> Response {
    let fields = match Fields::read(request).await {
        Ok(f) => f,
        Err(e @ FieldsError::TooLarge) => return failure(413, &e.to_string(), None),
        Err(e) => return failure(400, &e.to_string(), None),
    };
    let keys = fields.list("pushkey");
    if keys.is_empty() {
        return failure(401, "pushkey is required", None);
    }
    if keys.len() > MAX_KEYS_PER_REQUEST {
        return failure(
            400,
            &format!("at most {MAX_KEYS_PER_REQUEST} pushkeys in one request"),
            None,
        );
    }
    let request = match pushdeer_request(&fields) {
        Ok(r) => r,
        Err(e) => return push_failure(&e),
    };
    let mut results = Vec::with_capacity(keys.len());
    let mut first_error = None;
    let mut succeeded = 0;
    for secret in &keys {
        let outcome = async {
            let key = pushes.authenticate_to_push(secret).await?;
            pushes
                .accept(Sender::Key(&key), request.clone(), "pushdeer")
                .await
        }
        .await;
        let result = match outcome {
            Ok(_) => {
                succeeded += 1;
                json!({ "counts": 1, "logs": [], "success": "ok" })
            }
            Err(e) => {
                log_error("pushdeer", &e);
                let result =
                    json!({ "counts": 0, "logs": [], "success": "error", "error": e.to_string() });
                first_error.get_or_insert(e);
                result
            }
        };
        results.push(result.to_string());
    }
    match first_error {
        Some(e) if succeeded == 0 => failure(e.status(), &e.to_string(), Some(&e)),
        _ => json_response(
            200,
            json!({ "code": 0, "content": { "result": results } }),
            None,
        ),
    }
}
