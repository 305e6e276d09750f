//! The platform's HTTP surface.
//!
//! With an app token (`Authorization: Bearer AT_…`, or a `key` field):
//! - `POST /api/v1/bindings` `{uid, extra?, return_url?, expire_seconds?}`: a binding code for
//!   one of the site's users: its QR code (WeChat's ticket and image, and huixin's own PNG) and
//!   its link. 201.
//! - `GET /api/v1/bindings/{id}`: where a code stands (`pending`, `bound`, `expired`), for a
//!   site polling while its page shows the code.
//! - `GET /api/v1/bindings?uid=&offset=&limit=`: the app's bindings; `DELETE
//!   /api/v1/bindings?uid=` removes a uid's.
//!
//! Without one (the code's id is the secret):
//! - `GET /api/v1/bindings/{id}/qrcode.png`: the code's QR image, drawn here.
//! - `GET /bind/{id}`: the link for users inside WeChat: to WeChat's web authorization, which
//!   comes back to `GET /oauth/callback?code=&state=ID`; bound, the browser goes to the
//!   return URL, or sees a page saying so.

use axum::extract::rejection::QueryRejection;
use axum::extract::{Path, Query, RawQuery, Request, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Redirect, Response};
use axum::routing::get;
use serde::Deserialize;
use serde_json::{Value, json};

use super::{Apps, Completed, qr};
use crate::outbound::oauth::Scope as OAuthScope;
use crate::push::api::fields::{Fields, FieldsError};
use crate::push::api::json_response;
use crate::push::api::native::{SITE_NAME, native_error, page_response, request_key};
use crate::push::page;
use crate::push::service::{Key, PushError};
use crate::store::apps::{AppRow, BindCode};
use crate::support::clock::unix_now;

/// The platform's routes.
pub fn routes(apps: Apps) -> axum::Router {
    axum::Router::new()
        .route(
            "/api/v1/bindings",
            get(list_bindings)
                .post(create_binding)
                .delete(delete_binding),
        )
        .route("/api/v1/bindings/{id}", get(binding_status))
        .route("/api/v1/bindings/{id}/qrcode.png", get(qrcode_png))
        .route("/bind/{id}", get(bind_link))
        .route("/oauth/callback", get(oauth_callback))
        .with_state(apps)
}

/// The app whose token the request carries (header, then query or body field), and the key
/// the token is.
async fn app_of(
    apps: &Apps,
    headers: &HeaderMap,
    fields: &Fields,
) -> Result<(AppRow, Key), PushError> {
    let token = request_key(headers, fields).ok_or(PushError::MissingKey)?;
    apps.authenticate(&token).await
}

fn query_fields(query: Option<&str>) -> Fields {
    let mut fields = Fields::default();
    for (k, v) in crate::push::api::fields::query_pairs(query) {
        fields.set(&k, v);
    }
    fields
}

fn code_json(apps: &Apps, code: &BindCode, image_url: Option<&str>) -> Value {
    let base = apps.pushes().public_base();
    let now = unix_now();
    let state = if code.uid.is_empty() {
        if code.expires_at <= now {
            "expired"
        } else {
            "open"
        }
    } else if code.used_at.is_some() {
        "bound"
    } else if code.expires_at <= now {
        "expired"
    } else {
        "pending"
    };
    let mut out = json!({
        "id": code.id,
        "uid": code.uid,
        "extra": code.extra,
        "state": state,
        "created_at": code.created_at,
        "expires_at": code.expires_at,
        "qrcode": {
            "ticket": code.ticket,
            "content": code.qr_content,
            "png": format!("{base}/api/v1/bindings/{}/qrcode.png", code.id),
        },
        "link": format!("{base}/bind/{}", code.id),
    });
    if let Some(url) = image_url {
        out["qrcode"]["url"] = json!(url);
    }
    if let Some(at) = code.used_at {
        out["bound_at"] = json!(at);
        out["bound_uid"] = json!(code.used_uid);
    }
    out
}

async fn create_binding(State(apps): State<Apps>, request: Request) -> Response {
    let headers = request.headers().clone();
    let result = async {
        let fields = Fields::read(request).await.map_err(|e| match e {
            FieldsError::TooLarge => PushError::TooLarge,
            e => PushError::Invalid(e.to_string()),
        })?;
        let (app, key) = app_of(&apps, &headers, &fields).await?;
        let uid = fields.get("uid").unwrap_or_default();
        super::check_uid(&uid)?;
        // Each code is a WeChat API call, which counts against the account's daily quota.
        apps.pushes().rate_take(&key).await?;
        let expire = match fields.get("expire_seconds") {
            Some(s) => Some(s.trim().parse::<u32>().map_err(|_| {
                PushError::Invalid(format!("expire_seconds {s:?} is not a number of seconds"))
            })?),
            None => None,
        };
        let offer = apps
            .offer(
                &app,
                &uid,
                &fields.get("extra").unwrap_or_default(),
                &fields.get("return_url").unwrap_or_default(),
                expire,
            )
            .await?;
        Ok::<_, PushError>(code_json(&apps, &offer.code, Some(&offer.image_url)))
    }
    .await;
    match result {
        Ok(body) => json_response(201, body, None),
        Err(e) => native_error(&e),
    }
}

async fn binding_status(
    State(apps): State<Apps>,
    headers: HeaderMap,
    Path(id): Path<String>,
    RawQuery(query): RawQuery,
) -> Response {
    let result = async {
        let (app, _) = app_of(&apps, &headers, &query_fields(query.as_deref())).await?;
        match apps.code(&id).await? {
            Some(code) if code.app_id == app.id => Ok(code_json(&apps, &code, None)),
            _ => Err(PushError::NotFound(format!("no binding code {id:?}"))),
        }
    }
    .await;
    match result {
        Ok(body) => json_response(200, body, None),
        Err(e) => native_error(&e),
    }
}

#[derive(Deserialize)]
struct ListQuery {
    uid: Option<String>,
    offset: Option<u32>,
    limit: Option<u32>,
}

async fn list_bindings(
    State(apps): State<Apps>,
    headers: HeaderMap,
    RawQuery(raw): RawQuery,
    query: Result<Query<ListQuery>, QueryRejection>,
) -> Response {
    let result = async {
        let (app, _) = app_of(&apps, &headers, &query_fields(raw.as_deref())).await?;
        let Ok(Query(q)) = query else {
            return Err(PushError::Invalid(
                "offset and limit are numbers; uid is text".into(),
            ));
        };
        let uid = q.uid.filter(|u| !u.is_empty());
        let limit = q.limit.unwrap_or(100).clamp(1, 1000);
        let offset = q.offset.unwrap_or(0);
        let backend = apps.store().backend();
        let total = backend.bindings_count(app.id, uid.as_deref(), None).await?;
        let rows = backend
            .bindings_page(app.id, uid.as_deref(), None, offset, limit)
            .await?;
        let bindings: Vec<Value> = rows
            .into_iter()
            .map(|b| {
                json!({
                    "id": b.seq, "uid": b.uid, "state": b.state, "blocked": b.blocked,
                    "extra": b.extra, "source": b.source,
                    "created_at": b.created_at, "updated_at": b.updated_at,
                })
            })
            .collect();
        Ok(json!({"total": total, "offset": offset, "limit": limit, "bindings": bindings}))
    }
    .await;
    match result {
        Ok(body) => json_response(200, body, None),
        Err(e) => native_error(&e),
    }
}

async fn delete_binding(
    State(apps): State<Apps>,
    headers: HeaderMap,
    RawQuery(raw): RawQuery,
) -> Response {
    let result = async {
        let fields = query_fields(raw.as_deref());
        let (app, key) = app_of(&apps, &headers, &fields).await?;
        let uid = fields.get("uid").unwrap_or_default();
        super::check_uid(&uid)?;
        // Each code is a WeChat API call, which counts against the account's daily quota.
        apps.pushes().rate_take(&key).await?;
        let removed = apps.unbind(app.id, &uid).await?;
        if removed == 0 {
            return Err(PushError::NotFound(format!("no binding of uid {uid:?}")));
        }
        Ok(json!({"removed": removed}))
    }
    .await;
    match result {
        Ok(body) => json_response(200, body, None),
        Err(e) => native_error(&e),
    }
}

async fn qrcode_png(State(apps): State<Apps>, Path(id): Path<String>) -> Response {
    let code = match apps.code(&id).await {
        Ok(Some(code)) => code,
        Ok(None) => return (StatusCode::NOT_FOUND, "no such binding code\n").into_response(),
        Err(e) => return native_error(&e),
    };
    if code.expires_at <= unix_now() {
        return (StatusCode::GONE, "this binding code expired\n").into_response();
    }
    let Some(png) = qr::png(&code.qr_content).filter(|_| !code.qr_content.is_empty()) else {
        return (StatusCode::NOT_FOUND, "this binding code has no QR code\n").into_response();
    };
    let mut response = png.into_response();
    let headers = response.headers_mut();
    headers.insert(header::CONTENT_TYPE, HeaderValue::from_static("image/png"));
    headers.insert(
        header::CACHE_CONTROL,
        HeaderValue::from_static("private, max-age=300"),
    );
    headers.insert(
        header::X_CONTENT_TYPE_OPTIONS,
        HeaderValue::from_static("nosniff"),
    );
    response
}

fn notice(status: StatusCode, title: &str, message: &str) -> Response {
    page_response(status, page::notice_page(title, message, SITE_NAME))
}

/// Why a code cannot bind, as a page.
fn unusable(outcome: &Completed) -> Response {
    match outcome {
        Completed::Expired => notice(
            StatusCode::GONE,
            "链接已过期",
            "请回到网页刷新后重新绑定。This link has expired.",
        ),
        Completed::Used => notice(
            StatusCode::GONE,
            "链接已被使用",
            "请回到网页刷新后重新绑定。This link was used already.",
        ),
        _ => notice(
            StatusCode::NOT_FOUND,
            "链接无效",
            "这个绑定链接不存在或已失效。This link is not valid.",
        ),
    }
}

async fn bind_link(State(apps): State<Apps>, Path(id): Path<String>) -> Response {
    let code = match apps.code(&id).await {
        Ok(Some(code)) => code,
        Ok(None) => return unusable(&Completed::Unknown),
        Err(e) => return native_error(&e),
    };
    if code.expires_at <= unix_now() {
        return unusable(&Completed::Expired);
    }
    if !code.uid.is_empty() && code.used_at.is_some() {
        return unusable(&Completed::Used);
    }
    let Some(client) = apps.client() else {
        return notice(
            StatusCode::SERVICE_UNAVAILABLE,
            "暂时无法绑定",
            "huixin has no [wechat] credentials for web authorization.",
        );
    };
    let redirect_uri = format!("{}/oauth/callback", apps.pushes().public_base());
    let url = client.authorize_url(&redirect_uri, OAuthScope::Base, &code.id);
    Redirect::to(&url).into_response()
}

#[derive(Deserialize)]
struct CallbackQuery {
    code: Option<String>,
    state: Option<String>,
}

async fn oauth_callback(
    State(apps): State<Apps>,
    query: Result<Query<CallbackQuery>, QueryRejection>,
) -> Response {
    let (Some(code), Some(state)) = query
        .map(|Query(q)| (q.code.filter(|c| !c.is_empty()), q.state))
        .unwrap_or_default()
    else {
        // WeChat leaves out `code` when the user refused.
        return notice(
            StatusCode::BAD_REQUEST,
            "未授权",
            "没有收到微信的授权，绑定未完成。WeChat sent no authorization.",
        );
    };
    let Some(client) = apps.client() else {
        return notice(
            StatusCode::SERVICE_UNAVAILABLE,
            "暂时无法绑定",
            "huixin has no [wechat] credentials for web authorization.",
        );
    };
    let token = match client.oauth_exchange(&code).await {
        Ok(token) => token,
        Err(e) => {
            tracing::warn!(error = %e, "web authorization code not exchanged");
            return notice(
                StatusCode::BAD_REQUEST,
                "授权失败",
                "微信授权已失效，请重新打开绑定链接。The authorization expired; open the link again.",
            );
        }
    };
    let outcome = match apps.complete(&state, &token.openid, "link").await {
        Ok(outcome) => outcome,
        Err(e) => return native_error(&e),
    };
    let Completed::Bound {
        app, return_url, ..
    } = &outcome
    else {
        return unusable(&outcome);
    };
    if let Some(url) = return_url {
        return Redirect::to(url).into_response();
    }
    let following = apps.follows(&token.openid).await.unwrap_or(false);
    let message = if following {
        format!("已与 {app} 绑定，可以关闭这个页面了。Bound to {app}.")
    } else {
        format!(
            "已与 {app} 绑定。请关注公众号，才能收到消息。Bound to {app}: follow the account to receive its messages."
        )
    };
    notice(StatusCode::OK, "绑定成功", &message)
}
