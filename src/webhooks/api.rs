//! The deliveries over HTTP, with a key (`Authorization: Bearer KEY`, Basic, or `?key=`):
//!
//! - `GET /api/v1/webhooks/deliveries`: newest first. An app token sees its app's
//!   deliveries; an admin key sees all, or one app's (`app=ID`), or the config's
//!   (`app=config`); any other key is refused (403). Filters: `state` (`pending`, `sending`,
//!   `delivered`, `failed`), `event`; paging: `before` (a `seq`; `next_before` of the last
//!   page), `limit` (default 50, at most 200). Answers `{"deliveries": [ITEM…],
//!   "next_before": SEQ|null}`, each item `{id, seq, event, endpoint, url, state, attempts,
//!   next_at, last_status, last_error, created_at, updated_at, attempts_log: [{attempt, at,
//!   duration_ms, status, error}]}` (times in Unix milliseconds).
//! - `GET /api/v1/webhooks/deliveries/{id}`: one delivery, the same item plus its `body`
//!   (404 for another app's).
//!
//! Errors as the native push API renders them: the HTTP status and `{"error": "…",
//! "status": N}` (400, 401, 403, 404; 500 when the store fails).

use std::collections::HashMap;

use axum::Json;
use axum::extract::{Path, RawQuery, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use serde_json::{Value, json};

use super::Webhooks;
use crate::push::api::fields::{bearer_or_basic, number, query_pairs};
use crate::push::{PushError, Pushes, Scope};
use crate::store::apps::{AttemptRow, DeliveryFilter, DeliveryRow};

/// The page size when `limit` is not given.
pub const DEFAULT_LIMIT: u32 = 50;
/// The largest page.
pub const MAX_LIMIT: u32 = 200;
/// The states a delivery can be in.
pub const STATES: &[&str] = &["pending", "sending", "delivered", "failed"];

#[derive(Clone)]
struct ApiState {
    webhooks: Webhooks,
    pushes: Pushes,
}

/// The routes of the deliveries' API, ready to merge into the server's router.
pub fn routes(webhooks: Webhooks, pushes: Pushes) -> axum::Router {
    axum::Router::new()
        .route("/api/v1/webhooks/deliveries", get(list))
        .route("/api/v1/webhooks/deliveries/{id}", get(one))
        .with_state(ApiState { webhooks, pushes })
}

/// Whose deliveries a key may see.
enum Viewer {
    /// Every delivery.
    Admin,
    /// This app's.
    App(i64),
}

/// Why a request was refused; rendered like the native push API's errors.
struct ApiError(PushError);

impl From<PushError> for ApiError {
    fn from(e: PushError) -> Self {
        Self(e)
    }
}

impl From<crate::store::StoreError> for ApiError {
    fn from(e: crate::store::StoreError) -> Self {
        Self(PushError::Store(e))
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let status = self.0.status();
        if status >= 500 {
            tracing::error!(error = %self.0, "webhook deliveries request failed");
        } else {
            tracing::debug!(error = %self.0, "webhook deliveries request refused");
        }
        let code = StatusCode::from_u16(status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
        (
            code,
            Json(json!({ "error": self.0.to_string(), "status": status })),
        )
            .into_response()
    }
}

/// The key's viewer: an app token or an admin key.
async fn viewer(
    pushes: &Pushes,
    headers: &HeaderMap,
    query: &[(String, String)],
) -> Result<Viewer, ApiError> {
    let from_query = query
        .iter()
        .find(|(k, v)| k == "key" && !v.is_empty())
        .map(|(_, v)| v.clone());
    let key = bearer_or_basic(headers)
        .or(from_query)
        .ok_or(PushError::MissingKey)?;
    match pushes.authenticate(&key).await?.scope {
        Scope::Admin => Ok(Viewer::Admin),
        Scope::App(id) => Ok(Viewer::App(id)),
        _ => Err(PushError::Forbidden(
            "only an app token or an admin key can see webhook deliveries".into(),
        )
        .into()),
    }
}

async fn list(
    State(state): State<ApiState>,
    headers: HeaderMap,
    RawQuery(raw): RawQuery,
) -> Result<Json<Value>, ApiError> {
    let query = query_pairs(raw.as_deref());
    let viewer = viewer(&state.pushes, &headers, &query).await?;
    let param = |name: &str| {
        query
            .iter()
            .find(|(k, v)| k == name && !v.trim().is_empty())
            .map(|(_, v)| v.trim().to_owned())
    };
    let app = match (param("app"), &viewer) {
        (None, Viewer::Admin) => None,
        (None, Viewer::App(id)) => Some(Some(*id)),
        (Some(app), viewer) => {
            let wanted = if app == "config" {
                None
            } else {
                Some(app.parse::<i64>().map_err(|_| {
                    PushError::Invalid("app must be an app's id or \"config\"".into())
                })?)
            };
            if let Viewer::App(id) = viewer
                && wanted != Some(*id)
            {
                return Err(PushError::Forbidden(
                    "an app token sees its own app's deliveries only".into(),
                )
                .into());
            }
            Some(wanted)
        }
    };
    let delivery_state = param("state");
    if let Some(s) = &delivery_state
        && !STATES.contains(&s.as_str())
    {
        return Err(
            PushError::Invalid(format!("state must be one of: {}", STATES.join(", "))).into(),
        );
    }
    let limit = number(&query, "limit")?
        .unwrap_or(i64::from(DEFAULT_LIMIT))
        .clamp(1, i64::from(MAX_LIMIT));
    let limit = u32::try_from(limit).unwrap_or(DEFAULT_LIMIT);
    let filter = DeliveryFilter {
        app_id: app,
        state: delivery_state,
        event: param("event"),
        before_seq: number(&query, "before")?,
        limit,
    };
    let backend = state.webhooks.store().backend();
    let rows = backend.webhook_deliveries(&filter).await?;
    let seqs: Vec<i64> = rows.iter().map(|r| r.seq).collect();
    let mut attempts = attempts_by_delivery(backend.webhook_attempts(&seqs).await?);
    let next_before = (rows.len() == limit as usize)
        .then(|| rows.last().map(|r| r.seq))
        .flatten();
    let items: Vec<Value> = rows
        .iter()
        .map(|r| item(r, attempts.remove(&r.seq).unwrap_or_default()))
        .collect();
    Ok(Json(
        json!({ "deliveries": items, "next_before": next_before }),
    ))
}

async fn one(
    State(state): State<ApiState>,
    Path(id): Path<String>,
    headers: HeaderMap,
    RawQuery(raw): RawQuery,
) -> Result<Json<Value>, ApiError> {
    let query = query_pairs(raw.as_deref());
    let viewer = viewer(&state.pushes, &headers, &query).await?;
    let backend = state.webhooks.store().backend();
    let row = backend
        .webhook_delivery(&id)
        .await?
        .filter(|row| match viewer {
            Viewer::Admin => true,
            // Another app's delivery does not exist for this one.
            Viewer::App(app) => row.app_id == Some(app),
        })
        .ok_or_else(|| PushError::NotFound(format!("no delivery {id:?}")))?;
    let attempts = backend.webhook_attempts(&[row.seq]).await?;
    let mut item = item(&row, attempts);
    // Stored as the JSON text that was sent.
    let body = serde_json::from_str::<Value>(&row.body).unwrap_or(Value::String(row.body));
    if let Value::Object(map) = &mut item {
        map.insert("body".into(), body);
    }
    Ok(Json(item))
}

fn attempts_by_delivery(rows: Vec<AttemptRow>) -> HashMap<i64, Vec<AttemptRow>> {
    let mut by: HashMap<i64, Vec<AttemptRow>> = HashMap::new();
    for row in rows {
        by.entry(row.delivery_seq).or_default().push(row);
    }
    by
}

/// A delivery as listed.
fn item(row: &DeliveryRow, mut attempts: Vec<AttemptRow>) -> Value {
    attempts.sort_by_key(|a| a.attempt);
    let log: Vec<Value> = attempts
        .iter()
        .map(|a| {
            json!({
                "attempt": a.attempt,
                "at": a.at,
                "duration_ms": a.duration_ms,
                "status": a.status,
                "error": a.error,
            })
        })
        .collect();
    json!({
        "id": row.id,
        "seq": row.seq,
        "event": row.event,
        "endpoint": row.endpoint,
        "url": row.url,
        "state": row.state,
        "attempts": row.attempts,
        "next_at": row.next_at,
        "last_status": row.last_status,
        "last_error": row.last_error,
        "created_at": row.created_at,
        "updated_at": row.updated_at,
        "attempts_log": log,
    })
}
