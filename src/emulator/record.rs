//! The layer around every API route: it logs the call ([`CallRecord`]), adds the configured
//! latency, and answers injected [`Fault`]s.

use std::collections::BTreeMap;
use std::time::Instant;

use axum::body::{Body, Bytes};
use axum::extract::{Request, State};
use axum::http::{HeaderValue, StatusCode, header};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use serde::{Deserialize, Serialize};
use serde_json::Value;

use super::Emulator;
use super::api::{ApiError, errmsg, parse_query};
use super::media;

/// Largest request body read on API routes other than media upload.
pub(crate) const API_BODY_LIMIT: usize = 1024 * 1024;
/// Past a route's limit, the rest of a body is read and dropped up to this many bytes.
const DRAIN_LIMIT: usize = 64 * 1024 * 1024;

/// One call, as the emulator saw it.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq)]
pub struct CallRecord {
    /// Increases with every call.
    pub seq: u64,
    /// When it arrived, in Unix milliseconds (emulator clock).
    pub at_ms: u64,
    /// `GET`, `POST`…; `PUSH` for the emulator's own posts to the bot.
    pub method: String,
    /// The request path (`/cgi-bin/token`); for `PUSH`, the callback's path.
    pub path: String,
    /// The query parameters (`secret` redacted). For `PUSH`: `from`, `msg_type`, `event`,
    /// `event_key`, `scene`, `ticket`, `msg_id` as they apply.
    pub query: BTreeMap<String, String>,
    /// The JSON body, when there was one (`secret` redacted); for `PUSH`, the
    /// [`super::Conversation`].
    pub body: Option<Value>,
    /// The HTTP status answered (for `PUSH`: the bot's last status, 0 if none).
    pub status: u16,
    /// The `errcode` answered (0 for success and for non-JSON answers).
    pub errcode: i64,
    /// How long the answer took, latency and faults included, in milliseconds.
    #[serde(default)]
    pub elapsed_ms: u64,
}

fn one() -> u32 {
    1
}

/// An error to answer instead of (or after) doing the work, for the next `count` calls to
/// `path`.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq)]
pub struct Fault {
    /// The request path it applies to (`/cgi-bin/message/template/send`).
    pub path: String,
    /// The `errcode` to answer (e.g. -1 system busy, 40001, 45009).
    pub errcode: i64,
    /// The `errmsg`; empty: WeChat's message for the code.
    #[serde(default)]
    pub errmsg: String,
    /// How many calls it answers (default 1).
    #[serde(default = "one")]
    pub count: u32,
    /// `true`: do the work (deliver the message, issue the token), then answer the error,
    /// as when WeChat's answer is lost.
    #[serde(default)]
    pub after: bool,
    /// Extra delay before answering, in milliseconds.
    #[serde(default)]
    pub latency_ms: u64,
    /// Answer this HTTP status with a plain-text body instead of the JSON error (502…).
    #[serde(default)]
    pub http_status: Option<u16>,
}

impl Fault {
    /// `count` at least 1, an `http_status` that is a valid status.
    pub(crate) fn normalized(mut self) -> Self {
        self.count = self.count.max(1);
        if let Some(s) = self.http_status
            && !(100..=999).contains(&s)
        {
            self.http_status = Some(502);
        }
        self
    }

    /// Why the fault cannot be queued, for `POST /emulator/faults`.
    pub(crate) fn problem(&self) -> Option<String> {
        if !self.path.starts_with('/') {
            return Some(format!("path {:?} must start with '/'", self.path));
        }
        if self.count == 0 {
            return Some("count must be at least 1".into());
        }
        if let Some(s) = self.http_status
            && StatusCode::from_u16(s).is_err()
        {
            return Some(format!("http_status {s} is not an HTTP status"));
        }
        None
    }

    fn response(&self) -> Response {
        if let Some(status) = self.http_status {
            let status = StatusCode::from_u16(status).unwrap_or(StatusCode::BAD_GATEWAY);
            let text = if self.errmsg.is_empty() {
                status.canonical_reason().unwrap_or("emulated failure")
            } else {
                &self.errmsg
            };
            return (status, text.to_owned()).into_response();
        }
        ApiError {
            errcode: self.errcode,
            errmsg: if self.errmsg.is_empty() {
                errmsg(self.errcode).to_owned()
            } else {
                self.errmsg.clone()
            },
        }
        .into_response()
    }
}

/// Reads a request body up to `limit` bytes; `true` when it was longer. A longer body is
/// still read (and dropped) up to [`DRAIN_LIMIT`], so the client gets the error answer
/// rather than a reset connection.
async fn read_body(mut body: Body, limit: usize) -> (Bytes, bool) {
    use http_body_util::BodyExt;
    let mut buf = Vec::new();
    let mut total = 0usize;
    while let Some(frame) = body.frame().await {
        let Ok(frame) = frame else {
            break;
        };
        let Ok(data) = frame.into_data() else {
            continue;
        };
        total = total.saturating_add(data.len());
        if total <= limit {
            buf.extend_from_slice(&data);
        } else if total > DRAIN_LIMIT {
            break;
        }
    }
    if total > limit {
        (Bytes::new(), true)
    } else {
        (Bytes::from(buf), false)
    }
}

/// Replaces the value of every `secret` key in a JSON value.
fn redact(value: &mut Value) {
    match value {
        Value::Object(map) => {
            for (key, v) in map.iter_mut() {
                if key == "secret" {
                    *v = Value::String("<redacted>".into());
                } else {
                    redact(v);
                }
            }
        }
        Value::Array(items) => items.iter_mut().for_each(redact),
        _ => {}
    }
}

/// The layer: record, delay, fault.
pub(crate) async fn layer(State(emu): State<Emulator>, request: Request, next: Next) -> Response {
    let started = Instant::now();
    let at_ms = emu.unix_ms();
    let (parts, body) = request.into_parts();
    let path = parts.uri.path().to_owned();
    let method = parts.method.to_string();
    let mut query = parse_query(parts.uri.query());
    if let Some(secret) = query.get_mut("secret") {
        *secret = "<redacted>".into();
    }
    let limit = if path == media::UPLOAD_PATH {
        media::UPLOAD_BODY_LIMIT
    } else {
        API_BODY_LIMIT
    };
    let (bytes, too_large) = read_body(body, limit).await;
    let mut recorded_body = if bytes.is_empty() {
        None
    } else {
        serde_json::from_slice::<Value>(&bytes).ok()
    };
    if let Some(body) = &mut recorded_body {
        redact(body);
    }

    let (fault, latency) = {
        let fault = emu.lock().take_fault(&path);
        let extra = fault.as_ref().map_or(0, |f| f.latency_ms);
        (
            fault,
            emu.shared.settings.latency + std::time::Duration::from_millis(extra),
        )
    };
    if !latency.is_zero() {
        tokio::time::sleep(latency).await;
    }

    let request = Request::from_parts(parts, Body::from(bytes));
    let response = match (&fault, too_large) {
        (Some(f), _) if !f.after => f.response(),
        (_, true) => {
            // A body past the limit: the upload answers "invalid media size", other routes
            // "content size out of limit".
            let code = if path == media::UPLOAD_PATH {
                40006
            } else {
                45002
            };
            ApiError::new(code).into_response()
        }
        (Some(f), false) => {
            let _ = next.run(request).await;
            f.response()
        }
        (None, false) => next.run(request).await,
    };

    let (mut parts, body) = response.into_parts();
    // Our own answers are small (JSON, a tiny PNG); read them back to log the errcode.
    let bytes = axum::body::to_bytes(body, usize::MAX)
        .await
        .unwrap_or_default();
    let is_json = parts
        .headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.starts_with("application/json"));
    let errcode = if is_json {
        serde_json::from_slice::<Value>(&bytes)
            .ok()
            .and_then(|v| v.get("errcode").and_then(Value::as_i64))
            .unwrap_or(0)
    } else {
        0
    };
    let status = parts.status.as_u16();
    if let Ok(len) = HeaderValue::from_str(&bytes.len().to_string()) {
        parts.headers.insert(header::CONTENT_LENGTH, len);
    }
    let elapsed_ms = u64::try_from(started.elapsed().as_millis()).unwrap_or(u64::MAX);
    tracing::debug!(%method, %path, status, errcode, elapsed_ms, "emulator: API call");
    emu.lock().record(CallRecord {
        seq: 0,
        at_ms,
        method,
        path,
        query,
        body: recorded_body,
        status,
        errcode,
        elapsed_ms,
    });
    Response::from_parts(parts, Body::from(bytes))
}
