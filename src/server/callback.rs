//! The callback endpoint: `GET` answers WeChat's URL verification, `POST` carries messages.
//!
//! Outcomes: a bad or missing signature is 403 and runs nothing; a malformed body is 400; a
//! body over `[server] body_limit` is 413; anything that fails on our side (a handler error or
//! panic) answers `success` and is logged with the message's ids, so the follower never sees
//! "该公众号暂时无法提供服务" because of us.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use axum::body::{Body, to_bytes};
use axum::extract::rejection::QueryRejection;
use axum::extract::{ConnectInfo, FromRequestParts, Query, Request, State};
use axum::http::request::Parts;
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use futures_util::FutureExt;
use tracing::{debug, error, warn};

use super::CallbackState;
use crate::bot::{BotError, Context, Outcome, panic_message};
use crate::metrics::{RuleLabel, event_label, msg_type_label};
use crate::support::clock::unix_now;
use crate::wechat::{CallbackError, CallbackQuery, Inbound, Reply};

/// The peer address when the server was started with connect info; never rejects, so the
/// surface also works without it (in-process tests, other embedders).
pub struct Peer(pub Option<SocketAddr>);

impl<S: Send + Sync> FromRequestParts<S> for Peer {
    type Rejection = std::convert::Infallible;

    async fn from_request_parts(parts: &mut Parts, _state: &S) -> Result<Self, Self::Rejection> {
        Ok(Self(
            parts
                .extensions
                .get::<ConnectInfo<SocketAddr>>()
                .map(|ConnectInfo(addr)| *addr),
        ))
    }
}

/// `GET {path}`: echo `echostr` when the signature is valid.
pub async fn verify_url(
    State(state): State<CallbackState>,
    peer: Peer,
    query: Result<Query<CallbackQuery>, QueryRejection>,
) -> Response {
    let Ok(Query(query)) = query else {
        return plain(StatusCode::BAD_REQUEST, "malformed query string".into());
    };
    match state.protocol().verify_echo(&query, unix_now()) {
        Ok(echostr) => {
            // The signed query of a verification, as seen in a log, must not carry a POST.
            let timestamp = query.timestamp.as_deref().unwrap_or_default();
            let nonce = query.nonce.as_deref().unwrap_or_default();
            let request = super::replay::Request::Get;
            if !state
                .replay()
                .admit(state.store(), timestamp, nonce, request)
                .await
            {
                return refuse(CallbackError::Replayed, peer);
            }
            tracing::info!("URL verification succeeded");
            plain(StatusCode::OK, echostr.to_owned())
        }
        Err(e) => refuse(e, peer),
    }
}

/// `POST {path}`: verify, read, decrypt, parse, dispatch, reply.
pub async fn receive(
    State(state): State<CallbackState>,
    peer: Peer,
    query: Result<Query<CallbackQuery>, QueryRejection>,
    request: Request,
) -> Response {
    let Ok(Query(query)) = query else {
        return plain(StatusCode::BAD_REQUEST, "malformed query string".into());
    };
    let protocol = state.protocol();
    // The signature covers only the query, so check it before reading a byte of the body.
    if let Err(e) = protocol.verify_query(&query, unix_now()) {
        return refuse(e, peer);
    }
    let body = match read_body(request.into_body(), state.body_limit()).await {
        Ok(body) => body,
        Err(response) => return response,
    };
    // verify_query ran, so timestamp and nonce are present.
    let timestamp = query.timestamp.as_deref().unwrap_or_default();
    let nonce = query.nonce.as_deref().unwrap_or_default();
    let request = super::replay::Request::Post(&body);
    if !state
        .replay()
        .admit(state.store(), timestamp, nonce, request)
        .await
    {
        return refuse(CallbackError::Replayed, peer);
    }
    let inbound = match protocol.open(&query, &body) {
        Ok(inbound) => inbound,
        Err(e) => return refuse(e, peer),
    };

    // The `trace` middleware opens the per-message span; this layer's own lines name the ids.
    if let Some(reason) = &inbound.message.degraded {
        let m = &inbound.message;
        warn!(
            openid = %m.from,
            msg_id = m.msg_id.map(|id| id.0),
            msg_type = %m.kind.msg_type(),
            error = %reason.to_string().escape_debug(),
            "a known message type with a field that does not parse; handled as Unknown"
        );
    }
    answer(&state, &query, &inbound).await
}

/// Dispatches the message and seals the reply. Our own failures become `success`.
async fn answer(state: &CallbackState, query: &CallbackQuery, inbound: &Inbound) -> Response {
    let metrics = state.metrics();
    if metrics.is_enabled() {
        let kind = &inbound.message.kind;
        metrics.message(msg_type_label(kind), event_label(kind));
    }
    let ctx = Context::in_tasks(Arc::clone(&inbound.message), state.tasks().clone());
    let trail = Arc::clone(&ctx.trail);
    let mut failed = false;
    let reply = match std::panic::AssertUnwindSafe(state.router().dispatch(ctx))
        .catch_unwind()
        .await
    {
        Ok(Ok(reply)) => reply,
        Ok(Err(e)) => {
            failed = true;
            let m = &inbound.message;
            error!(openid = %m.from, msg_id = m.msg_id.map(|id| id.0), msg_type = %m.kind.msg_type(), error = %e, "bot failed; answered success");
            Reply::Success
        }
        Err(panic) => {
            failed = true;
            let m = &inbound.message;
            let e = BotError::Panic(panic_message(panic.as_ref()));
            error!(openid = %m.from, msg_id = m.msg_id.map(|id| id.0), msg_type = %m.kind.msg_type(), error = %e, "bot panicked; answered success");
            Reply::Success
        }
    };
    if metrics.is_enabled() {
        // The outcome as the inbound log records it.
        let outcome = match trail.outcome() {
            Some(set) => set,
            None if failed => Outcome::Failed,
            None if trail.is_late() => Outcome::Late,
            None => Outcome::Answered,
        };
        let rule = trail
            .replied_by()
            .map_or(RuleLabel::None, |replier| replier.label());
        metrics.replied(outcome.as_str(), rule);
    }
    // A retry answered by `dedup` carries the first answer's CreateTime: the same bytes again.
    let create_time = trail.create_time().unwrap_or_else(unix_now);
    let sealed = state.protocol().seal(inbound, &reply, query, create_time);
    for note in &sealed.notes {
        warn!(
            %note,
            reply = reply.msg_type(),
            "reply adjusted so WeChat accepts it"
        );
    }
    debug!(
        reply = reply.msg_type(),
        encrypted = sealed.encrypted,
        "answered"
    );
    let content_type = if sealed.encrypted || sealed.body != "success" {
        "application/xml; charset=utf-8"
    } else {
        "text/plain; charset=utf-8"
    };
    let mut response = Response::new(Body::from(sealed.body));
    response
        .headers_mut()
        .insert(header::CONTENT_TYPE, HeaderValue::from_static(content_type));
    response
}

/// Longest a client may take to send the body once its headers are in.
pub const BODY_READ_TIMEOUT: Duration = Duration::from_secs(10);

/// Reads the body up to `limit` bytes: 413 beyond it, 408 if it trickles in slower than
/// [`BODY_READ_TIMEOUT`], 400 if the client breaks off.
async fn read_body(body: Body, limit: usize) -> Result<axum::body::Bytes, Response> {
    let read = match tokio::time::timeout(BODY_READ_TIMEOUT, to_bytes(body, limit)).await {
        Ok(read) => read,
        Err(_) => {
            warn!("refused callback: body not received within {BODY_READ_TIMEOUT:?}");
            return Err(plain(
                StatusCode::REQUEST_TIMEOUT,
                "body not received in time".into(),
            ));
        }
    };
    match read {
        Ok(bytes) => Ok(bytes),
        Err(e) => {
            let too_large = e
                .into_inner()
                .downcast_ref::<http_body_util::LengthLimitError>()
                .is_some();
            if too_large {
                warn!(limit, "refused callback: body over [server] body_limit");
                Err(plain(
                    StatusCode::PAYLOAD_TOO_LARGE,
                    format!("body exceeds {limit} bytes"),
                ))
            } else {
                Err(plain(
                    StatusCode::BAD_REQUEST,
                    "could not read the body".into(),
                ))
            }
        }
    }
}

/// 403 for authentication failures, 400 for malformed input.
impl IntoResponse for CallbackError {
    fn into_response(self) -> Response {
        let status = if self.is_forbidden() {
            StatusCode::FORBIDDEN
        } else {
            StatusCode::BAD_REQUEST
        };
        plain(status, self.to_string())
    }
}

/// Logs why a request was refused (request bytes escaped: no forged log lines) and answers.
fn refuse(e: CallbackError, peer: Peer) -> Response {
    let peer = peer.0.map(|addr| addr.to_string()).unwrap_or_default();
    let reason = e.to_string();
    warn!(%peer, forbidden = e.is_forbidden(), error = %reason.escape_debug(), "refused callback");
    e.into_response()
}

/// What the callback answers when something panicked outside the bot: `success`.
pub fn panic_response(panic: Box<dyn std::any::Any + Send>) -> Response {
    error!(panic = %panic_message(panic.as_ref()).escape_debug(), "callback panicked; answered success");
    plain(StatusCode::OK, "success".into())
}

fn plain(status: StatusCode, body: String) -> Response {
    (
        status,
        [(header::CONTENT_TYPE, "text/plain; charset=utf-8")],
        body,
    )
        .into_response()
}
