//! WxPusher's API, as its SDKs, scripts and tools call it: an app's token is WxPusher's
//! `appToken`, a binding's uid its `UID_…`, a topic's number its `topicId`, a follower's
//! personal push key (with `SPT_` before it, or without) its simple-push token.
//!
//! Every answer is HTTP 200 with `{"code", "msg", "data", "success"}`: `code` 1000 and `msg`
//! `处理成功` on success (clients compare both), 1001 for the caller's mistakes, 1005 for ours.
//!
//! | route | what |
//! |---|---|
//! | `POST /api/send/message`, `GET /api/send/message[/]?…` | push to uids and topics |
//! | `GET /api/send/message/{SPT}/{content}`, `POST /api/send/message/simple-push` | push with a follower's personal key |
//! | `POST /api/fun/create/qrcode`, `GET /api/fun/scan-qrcode-uid` | a parameter QR code; who scanned it |
//! | `GET /api/fun/wxuser/v2`, `GET /api/fun/wxuser` | the app's users |
//! | `DELETE /api/fun/remove`, `PUT /api/fun/reject` | remove or block a user |
//! | `GET /api/send/query/status`, `GET /api/send/query/{id}` | a push's delivery |
//! | `DELETE /api/send/message` | delete a push and its page |
//!
//! Each uid and each topic of a send is its own push (its `sendRecordId`, also its
//! `messageId`); `messageContentId` is the first of the call's. A send counts once against
//! the key's rate limit.

use axum::extract::{Path, RawQuery, Request, State};
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{delete, get, post, put};
use serde_json::{Value, json};

use super::{Apps, events::now_ms, qr};
use crate::push::api::fields::{Fields, FieldsError, query_pairs};
use crate::push::render::text_to_markdown;
use crate::push::service::{Accepted, Key, PushError, PushRequest, Scope, Sender};
use crate::store::apps::AppRow;
use crate::support::clock::unix_now;

/// Success.
const OK: i64 = 1000;
/// The caller's mistake (bad token, bad field).
const BUSINESS: i64 = 1001;
/// Not authorized for what was asked.
const UNAUTHORIZED: i64 = 1002;
/// Our failure.
const INTERNAL: i64 = 1005;
/// WeChat refused.
const WECHAT: i64 = 1006;
/// WxPusher's success message, which its Java SDK compares.
const OK_MSG: &str = "处理成功";

/// Limits WxPusher documents.
const MAX_CONTENT_CHARS: usize = 40_000;
const MAX_SUMMARY_CHARS: usize = 100;
const MAX_URL_LEN: usize = 1000;
const MAX_UIDS: usize = 2000;
const MAX_TOPICS: usize = 5;
const MAX_SPTS: usize = 10;
const MAX_EXTRA_CHARS: usize = 64;
const DEFAULT_VALID_TIME: u32 = 1800;
const MAX_PAGE_SIZE: u32 = 100;

/// WxPusher's routes.
pub fn routes(apps: Apps) -> axum::Router {
    axum::Router::new()
        .route(
            "/api/send/message",
            post(send_json).get(send_get).delete(delete_message),
        )
        .route("/api/send/message/", get(send_get))
        .route("/api/send/message/simple-push", post(simple_push))
        .route("/api/send/message/{spt}/{content}", get(simple_get))
        .route("/api/fun/create/qrcode", post(create_qrcode))
        .route("/api/fun/qrcode/{file}", get(qrcode_image))
        .route("/api/fun/scan-qrcode-uid", get(scan_uid))
        .route("/api/fun/wxuser/v2", get(users_v2))
        .route("/api/fun/wxuser", get(users_v1))
        .route("/api/fun/remove", delete(remove_user))
        .route("/api/fun/reject", put(reject_user))
        .route("/api/send/query/status", get(query_status))
        .route("/api/send/query/{id}", get(query_legacy))
        .with_state(apps)
}

/// An answer in WxPusher's envelope.
fn answer(code: i64, msg: &str, data: Value) -> Response {
    (
        StatusCode::OK,
        axum::Json(json!({"code": code, "msg": msg, "data": data, "success": code == OK})),
    )
        .into_response()
}

fn ok(data: Value) -> Response {
    answer(OK, OK_MSG, data)
}

/// A refusal in WxPusher's terms.
fn refused(e: &PushError) -> Response {
    let code = match e {
        PushError::MissingKey | PushError::BadKey => {
            return answer(BUSINESS, "appToken不正确", Value::Null);
        }
        PushError::Forbidden(_) => UNAUTHORIZED,
        PushError::Invalid(_)
        | PushError::NotFound(_)
        | PushError::RateLimited(_)
        | PushError::TooLarge => BUSINESS,
        PushError::Upstream(_) => WECHAT,
        PushError::NotConfigured(_) | PushError::Store(_) => INTERNAL,
    };
    if code == INTERNAL {
        tracing::error!(error = %e, "WxPusher request failed");
    }
    answer(code, &e.to_string(), Value::Null)
}

/// The fields of the query and the body (JSON, form).
async fn fields_of(request: Request) -> Result<Fields, PushError> {
    Fields::read(request).await.map_err(|e| match e {
        FieldsError::TooLarge => PushError::TooLarge,
        e => PushError::Invalid(e.to_string()),
    })
}

fn query_fields(raw: Option<&str>) -> Fields {
    let mut fields = Fields::default();
    for (k, v) in query_pairs(raw) {
        fields.set(&k, v);
    }
    fields
}

/// The app of the `appToken` field.
async fn app_of(apps: &Apps, fields: &Fields) -> Result<(AppRow, Key), PushError> {
    let token = fields.get("appToken").ok_or(PushError::MissingKey)?;
    let key = apps.pushes().authenticate_to_push(&token).await?;
    let Scope::App(id) = key.scope else {
        return Err(PushError::BadKey);
    };
    match apps.live_app(id) {
        Some(app) => Ok((app, key)),
        None => match apps.store().backend().app(id).await? {
            Some(app) if app.revoked_at.is_none() => Ok((app, key)),
            _ => Err(PushError::BadKey),
        },
    }
}

/// A message's content as push markdown, by `contentType` (1 text, 2 HTML, 3 markdown).
fn body_of(content: &str, content_type: i64) -> Result<String, PushError> {
    match content_type {
        1 => Ok(text_to_markdown(content)),
        // An HTML fragment: one HTML block (blank lines would end it and turn the rest into
        // markdown), sanitized when rendered like any push.
        2 => {
            let joined: Vec<&str> = content.lines().filter(|l| !l.trim().is_empty()).collect();
            Ok(format!("<div>\n{}\n</div>", joined.join("\n")))
        }
        3 => Ok(content.to_owned()),
        other => Err(PushError::Invalid(format!(
            "contentType is 1 (text), 2 (HTML) or 3 (markdown), not {other}"
        ))),
    }
}

/// What every send shares: content, summary, link.
struct Message {
    body: String,
    title: String,
    summary: Option<String>,
    url: Option<String>,
}

fn message_of(fields: &Fields, content_type: i64) -> Result<Message, PushError> {
    let content = fields.get("content").unwrap_or_default();
    if content.trim().is_empty() {
        return Err(PushError::Invalid("content is required".into()));
    }
    if content.chars().count() > MAX_CONTENT_CHARS {
        return Err(PushError::Invalid(format!(
            "content is longer than {MAX_CONTENT_CHARS} characters"
        )));
    }
    let summary = fields.get("summary").filter(|s| !s.trim().is_empty());
    if summary
        .as_ref()
        .is_some_and(|s| s.chars().count() > MAX_SUMMARY_CHARS)
    {
        return Err(PushError::Invalid(format!(
            "summary is longer than {MAX_SUMMARY_CHARS} characters"
        )));
    }
    let url = fields.get("url").filter(|u| !u.trim().is_empty());
    if url.as_ref().is_some_and(|u| u.len() > MAX_URL_LEN) {
        return Err(PushError::Invalid(format!(
            "url is longer than {MAX_URL_LEN} characters"
        )));
    }
    let body = body_of(&content, content_type)?;
    // The template card's title: the summary, else the content's first line.
    let title = match &summary {
        Some(s) => s.clone(),
        None => {
            let plain = if content_type == 2 {
                crate::push::render::plain_text(&body)
            } else {
                content.clone()
            };
            plain
                .lines()
                .map(str::trim)
                .find(|l| !l.is_empty())
                .unwrap_or_default()
                .chars()
                .take(64)
                .collect()
        }
    };
    Ok(Message {
        body,
        title,
        summary,
        url,
    })
}

fn content_type_of(fields: &Fields) -> Result<i64, PushError> {
    match fields.get("contentType") {
        None => Ok(1),
        Some(t) => t
            .trim()
            .parse()
            .map_err(|_| PushError::Invalid(format!("contentType {t:?} is not a number"))),
    }
}

/// A send's item of one target.
fn item(uid: Option<&str>, topic: Option<i64>, result: &Result<Accepted, PushError>) -> Value {
    match result {
        Ok(a) => json!({
            "uid": uid, "topicId": topic, "messageId": a.seq, "messageContentId": a.seq,
            "sendRecordId": a.seq, "code": OK, "status": "创建发送任务成功",
        }),
        Err(e) => json!({
            "uid": uid, "topicId": topic, "messageId": null, "messageContentId": null,
            "sendRecordId": null, "code": BUSINESS, "status": e.to_string(),
        }),
    }
}

/// One target of a send: (uid, topic number, the push, or why not).
type Target = (Option<String>, Option<i64>, Result<PushRequest, PushError>);

/// Sends to `uids` and `topics` of the app: one push each, stored together.
async fn send(
    apps: &Apps,
    fields: &Fields,
    uids: Vec<String>,
    topics: Vec<String>,
) -> Result<Value, PushError> {
    let (app, key) = app_of(apps, fields).await?;
    let message = message_of(fields, content_type_of(fields)?)?;
    if uids.is_empty() && topics.is_empty() {
        return Err(PushError::Invalid("name uids or topicIds".into()));
    }
    if uids.len() > MAX_UIDS {
        return Err(PushError::Invalid(format!("at most {MAX_UIDS} uids")));
    }
    if topics.len() > MAX_TOPICS {
        return Err(PushError::Invalid(format!("at most {MAX_TOPICS} topicIds")));
    }
    // Targets in request order: (uid, topic number, the push, or why not).
    let mut targets: Vec<Target> = Vec::new();
    let known: std::collections::HashSet<String> = {
        let rows = apps
            .store()
            .backend()
            .bindings_of_uids(app.id, &uids)
            .await?;
        rows.into_iter()
            .filter(|b| !b.blocked)
            .map(|b| b.uid)
            .collect()
    };
    let request = |to_uid: Vec<String>, topic: Option<String>| PushRequest {
        to_uid,
        topic,
        title: message.title.clone(),
        body: message.body.clone(),
        url: message.url.clone(),
        summary: message.summary.clone(),
        ..PushRequest::default()
    };
    for uid in uids {
        let target = if known.contains(&uid) {
            Ok(request(vec![uid.clone()], None))
        } else {
            Err(PushError::NotFound(
                "用户不存在或已取消关注 (no such uid)".into(),
            ))
        };
        targets.push((Some(uid), None, target));
    }
    for topic in topics {
        let number = topic.trim().parse::<i64>().ok();
        let name = match number {
            Some(n) => apps.store().backend().topic_by_num(n).await?,
            None => None,
        };
        let target = match name {
            Some(name) => Ok(request(Vec::new(), Some(name))),
            None => Err(PushError::NotFound(format!(
                "主题不存在 (no topic {topic})"
            ))),
        };
        targets.push((None, number, target));
    }
    let requests: Vec<PushRequest> = targets
        .iter()
        .filter_map(|(_, _, t)| t.as_ref().ok().cloned())
        .collect();
    let mut results = apps
        .pushes()
        .accept_many(Sender::Key(&key), requests, "wxpusher")
        .await?
        .into_iter();
    let mut first: Option<i64> = None;
    let mut items = Vec::with_capacity(targets.len());
    for (uid, topic, target) in targets {
        let result = match target {
            Ok(_) => results
                .next()
                .unwrap_or_else(|| Err(PushError::Invalid("not sent".into()))),
            Err(e) => Err(e),
        };
        if let Ok(a) = &result {
            first.get_or_insert(a.seq);
        }
        let mut item = item(uid.as_deref(), topic, &result);
        if let Some(first) = first {
            item["messageContentId"] = json!(first);
        }
        items.push(item);
    }
    Ok(Value::Array(items))
}

/// `uids` or `topicIds` as a list: JSON arrays (of strings or numbers), `null`, or a single
/// value.
fn list(fields: &Fields, name: &str) -> Vec<String> {
    fields
        .list(name)
        .into_iter()
        .map(|v| v.trim().to_owned())
        .filter(|v| !v.is_empty() && v != "null")
        .collect()
}

async fn send_json(State(apps): State<Apps>, request: Request) -> Response {
    let result = async {
        let fields = fields_of(request).await?;
        let uids = list(&fields, "uids");
        let topics = list(&fields, "topicIds");
        send(&apps, &fields, uids, topics).await
    }
    .await;
    match result {
        Ok(data) => ok(data),
        Err(e) => refused(&e),
    }
}

async fn send_get(State(apps): State<Apps>, RawQuery(raw): RawQuery) -> Response {
    let mut fields = query_fields(raw.as_deref());
    // The GET form sends text only.
    fields.set("contentType", "1");
    let uids: Vec<String> = fields.get("uid").into_iter().collect();
    let topics: Vec<String> = fields.get("topicId").into_iter().collect();
    match send(&apps, &fields, uids, topics).await {
        Ok(data) => ok(data),
        Err(e) => refused(&e),
    }
}

/// Pushes with simple-push tokens (a follower's personal key, `SPT_` before it or not).
async fn simple(apps: &Apps, fields: &Fields, spts: Vec<String>) -> Result<Value, PushError> {
    if spts.is_empty() {
        return Err(PushError::Invalid("spt or sptList is required".into()));
    }
    if spts.len() > MAX_SPTS {
        return Err(PushError::Invalid(format!("at most {MAX_SPTS} SPTs")));
    }
    let message = message_of(fields, content_type_of(fields)?)?;
    let mut items = Vec::with_capacity(spts.len());
    for spt in spts {
        let bare = spt
            .strip_prefix(crate::push::keys::SPT_PREFIX)
            .unwrap_or(&spt);
        let result = async {
            let key = apps.pushes().authenticate_to_push(bare).await?;
            let Scope::User(openid) = &key.scope else {
                return Err(PushError::Forbidden(
                    "an SPT is a follower's personal key".into(),
                ));
            };
            let request = PushRequest {
                to: vec![openid.clone()],
                title: message.title.clone(),
                body: message.body.clone(),
                url: message.url.clone(),
                summary: message.summary.clone(),
                ..PushRequest::default()
            };
            apps.pushes()
                .accept(Sender::Key(&key), request, "wxpusher")
                .await
        }
        .await;
        let mut item = item(None, None, &result);
        item["spt"] = json!(spt);
        if let Some(obj) = item.as_object_mut() {
            obj.remove("uid");
            obj.remove("topicId");
        }
        items.push(item);
    }
    Ok(Value::Array(items))
}

async fn simple_push(State(apps): State<Apps>, request: Request) -> Response {
    let result = async {
        let fields = fields_of(request).await?;
        let mut spts = list(&fields, "sptList");
        spts.extend(fields.get("spt"));
        simple(&apps, &fields, spts).await
    }
    .await;
    match result {
        Ok(data) => ok(data),
        Err(e) => refused(&e),
    }
}

async fn simple_get(
    State(apps): State<Apps>,
    Path((spt, content)): Path<(String, String)>,
) -> Response {
    let mut fields = Fields::default();
    fields.set("content", content);
    match simple(&apps, &fields, vec![spt]).await {
        Ok(data) => ok(data),
        Err(e) => refused(&e),
    }
}

async fn create_qrcode(State(apps): State<Apps>, request: Request) -> Response {
    let result = async {
        let fields = fields_of(request).await?;
        let (app, key) = app_of(&apps, &fields).await?;
        let extra = fields.get("extra").unwrap_or_default();
        if extra.trim().is_empty() {
            return Err(PushError::Invalid("extra is required".into()));
        }
        if extra.chars().count() > MAX_EXTRA_CHARS {
            return Err(PushError::Invalid(format!(
                "extra is longer than {MAX_EXTRA_CHARS} characters"
            )));
        }
        let valid = match fields.get("validTime") {
            None => DEFAULT_VALID_TIME,
            Some(v) => v
                .trim()
                .parse::<u32>()
                .map_err(|_| PushError::Invalid(format!("validTime {v:?} is not seconds")))?,
        };
        // Each code is a WeChat API call, which counts against the account's daily quota.
        apps.pushes().rate_take(&key).await?;
        let offer = apps.offer(&app, "", &extra, "", Some(valid)).await?;
        let base = apps.pushes().public_base();
        Ok(json!({
            "code": offer.code.id,
            "url": format!("{base}/api/fun/qrcode/{}.jpg", offer.code.id),
            "shortUrl": format!("{base}/bind/{}", offer.code.id),
            "expires": offer.code.expires_at * 1000,
            "extra": offer.code.extra,
        }))
    }
    .await;
    match result {
        Ok(data) => ok(data),
        Err(e) => refused(&e),
    }
}

/// The image of a code made by `create/qrcode` (PNG, whatever the name says: WxPusher's
/// answer names a `.jpg`).
async fn qrcode_image(State(apps): State<Apps>, Path(file): Path<String>) -> Response {
    let id = file.strip_suffix(".jpg").unwrap_or(&file);
    let code = match apps.code(id).await {
        Ok(Some(code)) if code.expires_at > unix_now() && !code.qr_content.is_empty() => code,
        Ok(_) => return (StatusCode::NOT_FOUND, "no such QR code\n").into_response(),
        Err(e) => return refused(&e),
    };
    let Some(png) = qr::png(&code.qr_content) else {
        return (StatusCode::NOT_FOUND, "no such QR code\n").into_response();
    };
    let mut response = png.into_response();
    response
        .headers_mut()
        .insert(header::CONTENT_TYPE, HeaderValue::from_static("image/png"));
    response
}

async fn scan_uid(State(apps): State<Apps>, RawQuery(raw): RawQuery) -> Response {
    let fields = query_fields(raw.as_deref());
    let id = fields.get("code").unwrap_or_default();
    match apps.code(&id).await {
        Ok(Some(code)) => match code.used_uid {
            Some(uid) => ok(json!(uid)),
            None => answer(BUSINESS, "还没有用户扫码 (not scanned yet)", Value::Null),
        },
        Ok(None) => answer(BUSINESS, "二维码不存在 (no such code)", Value::Null),
        Err(e) => refused(&e),
    }
}

fn number(fields: &Fields, name: &str, default: u32) -> Result<u32, PushError> {
    match fields.get(name) {
        None => Ok(default),
        Some(v) => v
            .trim()
            .parse()
            .map_err(|_| PushError::Invalid(format!("{name} {v:?} is not a number"))),
    }
}

/// A page of the app's users: (total, page, page size, bindings).
async fn users_page(
    apps: &Apps,
    fields: &Fields,
) -> Result<(AppRow, u64, u32, u32, Vec<crate::store::apps::BindingRow>), PushError> {
    let (app, _) = app_of(apps, fields).await?;
    let page = number(fields, "page", 1)?.max(1);
    let size = number(fields, "pageSize", 10)?.clamp(1, MAX_PAGE_SIZE);
    let uid = fields.get("uid");
    let blocked = match fields.get("isBlock").as_deref() {
        None => None,
        Some("true" | "1") => Some(true),
        Some("false" | "0") => Some(false),
        Some(other) => {
            return Err(PushError::Invalid(format!(
                "isBlock is true or false, not {other:?}"
            )));
        }
    };
    let backend = apps.store().backend();
    let total = backend
        .bindings_count(app.id, uid.as_deref(), blocked)
        .await?;
    let rows = backend
        .bindings_page(app.id, uid.as_deref(), blocked, (page - 1) * size, size)
        .await?;
    Ok((app, total, page, size, rows))
}

async fn users_v2(State(apps): State<Apps>, RawQuery(raw): RawQuery) -> Response {
    let fields = query_fields(raw.as_deref());
    let result = async {
        if fields.get("type").is_some_and(|t| t != "0") {
            return Err(PushError::Invalid(
                "type 1 (a topic's followers) is not listed: huixin lists an app's bound users \
                 (type 0)"
                    .into(),
            ));
        }
        let (app, total, page, size, rows) = users_page(&apps, &fields).await?;
        let records: Vec<Value> = rows
            .into_iter()
            .map(|b| {
                json!({
                    "id": b.seq, "uid": b.uid, "appOrTopicId": app.id, "type": 0,
                    "target": app.name, "reject": b.blocked,
                    "createTime": b.created_at * 1000, "nickName": "", "headImg": "",
                    "payEndTime": 0,
                })
            })
            .collect();
        Ok(json!({"total": total, "page": page, "pageSize": size, "records": records}))
    }
    .await;
    match result {
        Ok(data) => ok(data),
        Err(e) => refused(&e),
    }
}

async fn users_v1(State(apps): State<Apps>, RawQuery(raw): RawQuery) -> Response {
    let fields = query_fields(raw.as_deref());
    match users_page(&apps, &fields).await {
        Ok((_, total, page, size, rows)) => {
            let records: Vec<Value> = rows
                .into_iter()
                .map(|b| {
                    json!({
                        "uid": b.uid, "enable": !b.blocked && b.state == "bound",
                        "createTime": b.created_at * 1000, "nickName": "", "headImg": "",
                    })
                })
                .collect();
            ok(json!({"total": total, "page": page, "pageSize": size, "records": records}))
        }
        Err(e) => refused(&e),
    }
}

/// The `id` of a user record (a binding's seq).
fn user_id(fields: &Fields) -> Result<i64, PushError> {
    fields
        .get("id")
        .and_then(|i| i.trim().parse::<i64>().ok())
        .ok_or_else(|| PushError::Invalid("id (a user record's number) is required".into()))
}

async fn remove_user(State(apps): State<Apps>, RawQuery(raw): RawQuery) -> Response {
    let fields = query_fields(raw.as_deref());
    let result = async {
        let (app, _) = app_of(&apps, &fields).await?;
        let id = user_id(&fields)?;
        if !apps.store().backend().binding_delete(app.id, id).await? {
            return Err(PushError::NotFound(format!("no user {id}")));
        }
        Ok(json!("删除成功"))
    }
    .await;
    match result {
        Ok(data) => ok(data),
        Err(e) => refused(&e),
    }
}

async fn reject_user(State(apps): State<Apps>, RawQuery(raw): RawQuery) -> Response {
    let fields = query_fields(raw.as_deref());
    let result = async {
        let (app, _) = app_of(&apps, &fields).await?;
        let id = user_id(&fields)?;
        let reject = match fields.get("reject").as_deref() {
            Some("true" | "1") => true,
            Some("false" | "0") => false,
            _ => return Err(PushError::Invalid("reject is true or false".into())),
        };
        if !apps
            .store()
            .backend()
            .binding_block(app.id, id, reject, unix_now())
            .await?
        {
            return Err(PushError::NotFound(format!("no user {id}")));
        }
        Ok(json!(if reject {
            "拉黑成功"
        } else {
            "取消拉黑成功"
        }))
    }
    .await;
    match result {
        Ok(data) => ok(data),
        Err(e) => refused(&e),
    }
}

/// WxPusher's delivery status of a push: (status code, text). 0 waiting, 1 sent to WeChat,
/// 2 delivered, -1 failed (a push to a topic counts its recipients: delivered once none waits).
fn status_of(counts: &crate::push::service::Counts) -> (i64, &'static str) {
    if counts.pending > 0 {
        (0, "发送中")
    } else if counts.sent > 0 {
        (1, "已发送")
    } else if counts.delivered > 0 {
        (2, "已送达")
    } else if counts.failed > 0 {
        (-1, "发送失败")
    } else {
        (0, "发送中")
    }
}

/// A push's counts by seq: only the state, never its content or recipients (the ids are
/// numbers, and WxPusher's clients ask without a token).
async fn counts_of(apps: &Apps, seq: i64) -> Result<crate::push::service::Counts, PushError> {
    let backend = apps.store().backend();
    if backend.push_by_seq(seq).await?.is_none() {
        return Err(PushError::NotFound(format!("no message {seq}")));
    }
    let recipients = backend.push_recipients(seq).await?;
    Ok(crate::store::push::Tally::of(&recipients).into())
}

async fn query_status(State(apps): State<Apps>, RawQuery(raw): RawQuery) -> Response {
    let fields = query_fields(raw.as_deref());
    let result = async {
        let seq = fields
            .get("sendRecordId")
            .and_then(|i| i.trim().parse::<i64>().ok())
            .ok_or_else(|| PushError::Invalid("sendRecordId is required".into()))?;
        let counts = counts_of(&apps, seq).await?;
        let (status, text) = status_of(&counts);
        Ok(json!({
            "sendRecordId": seq, "status": status, "statusText": text,
            "pending": counts.pending, "sent": counts.sent,
            "delivered": counts.delivered, "failed": counts.failed,
            "queryTime": now_ms(),
        }))
    }
    .await;
    match result {
        Ok(data) => ok(data),
        Err(e) => refused(&e),
    }
}

/// The legacy query: `data` is the status as an integer (the Java SDK reads an integer).
async fn query_legacy(State(apps): State<Apps>, Path(id): Path<String>) -> Response {
    let Ok(seq) = id.trim().parse::<i64>() else {
        return refused(&PushError::Invalid(format!("{id:?} is not a message id")));
    };
    match counts_of(&apps, seq).await {
        Ok(counts) => ok(json!(status_of(&counts).0)),
        Err(e) => refused(&e),
    }
}

async fn delete_message(State(apps): State<Apps>, RawQuery(raw): RawQuery) -> Response {
    let fields = query_fields(raw.as_deref());
    let result = async {
        let (_, key) = app_of(&apps, &fields).await?;
        let seq = fields
            .get("messageContentId")
            .and_then(|i| i.trim().parse::<i64>().ok())
            .ok_or_else(|| PushError::Invalid("messageContentId is required".into()))?;
        let backend = apps.store().backend();
        let first = match backend.push_by_seq(seq).await? {
            Some(push) if push.key_hash.as_deref() == Some(key.hash.as_str()) => push,
            _ => return Err(PushError::NotFound(format!("no message {seq}"))),
        };
        // The other pushes of the same send: same token, same second, same content.
        let siblings = backend
            .push_history(
                Some(&format!("key:{}", key.hash)),
                seq,
                first.created_at,
                (MAX_UIDS + MAX_TOPICS) as u32,
            )
            .await?;
        backend.push_delete(seq).await?;
        for push in siblings {
            if push.created_at == first.created_at && push.body == first.body {
                backend.push_delete(push.seq).await?;
            }
        }
        Ok(json!(true))
    }
    .await;
    match result {
        Ok(data) => ok(data),
        Err(e) => refused(&e),
    }
}
