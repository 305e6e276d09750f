//! Messages the account sends: template messages (`message/template/send`, with the
//! `TEMPLATESENDJOBFINISH` event that follows), customer-service messages
//! (`message/custom/send`), and the template list (`template/get_all_private_template`).

use std::time::Duration;

use axum::Json;
use axum::body::Bytes;
use axum::extract::{RawQuery, State};
use serde_json::{Map, Value, json};

use super::Emulator;
use super::api::{ApiError, ApiResult, json_body, ok, parse_query, str_field};
use crate::simulator::MessageSpec;

/// How long a `client_msg_id` is remembered.
const CLIENT_MSG_ID_MEMORY: Duration = Duration::from_secs(24 * 3600);

/// `POST /cgi-bin/message/template/send?access_token=`.
pub(crate) async fn template_send(
    State(emu): State<Emulator>,
    RawQuery(q): RawQuery,
    body: Bytes,
) -> ApiResult {
    let q = parse_query(q.as_deref());
    emu.check_token(&q)?;
    let request = json_body(&body)?;
    let touser = str_field(&request, "touser").unwrap_or_default().to_owned();
    let now = emu.now();
    let at_ms = emu.unix_ms();
    let msgid = {
        let mut state = emu.lock();
        let user = state
            .users
            .get(&touser)
            .ok_or_else(|| ApiError::new(40003))?;
        if !user.following {
            return Err(ApiError::new(43004));
        }
        let template_id = str_field(&request, "template_id").unwrap_or_default();
        if !state
            .templates
            .iter()
            .any(|t| t.get("template_id").and_then(Value::as_str) == Some(template_id))
        {
            return Err(ApiError::new(40037));
        }
        check_template_fields(&request)?;
        let client_msg_id = match request.get("client_msg_id") {
            None | Some(Value::Null) => None,
            Some(Value::String(id)) if !id.is_empty() => Some(id.clone()),
            Some(_) => return Err(ApiError::new(47003)),
        };
        // WeChat deduplicates by recipient and client_msg_id.
        if let Some(id) = &client_msg_id
            && !state
                .client_msg_ids
                .insert(&format!("{touser}\n{id}"), now, CLIENT_MSG_ID_MEMORY)
        {
            return Err(ApiError::new(45065));
        }
        let msgid = state.next_msgid;
        state.next_msgid += 1;
        let mut delivered = request.clone();
        delivered.insert("msgid".into(), json!(msgid));
        state.deliver(&touser, "template", Value::Object(delivered), at_ms);
        msgid
    };
    tracing::debug!(openid = %touser, msgid, "emulator: template message delivered");
    if emu.shared.bot.is_some() {
        let emu = emu.clone();
        tokio::spawn(async move {
            let spec = MessageSpec::TemplateFinish {
                msg_id: msgid,
                status: "success".into(),
            };
            if let Err(e) = super::push::push_event(&emu, &touser, spec).await {
                tracing::warn!(error = %e, msgid, "emulator: TEMPLATESENDJOBFINISH not posted");
            }
        });
    }
    Ok(Json(
        json!({ "errcode": 0, "errmsg": "ok", "msgid": msgid }),
    ))
}

/// `data` an object of `{"value": string}` objects, `url` a string, `miniprogram` an object
/// with a string `appid`: else 47003.
fn check_template_fields(request: &Map<String, Value>) -> Result<(), ApiError> {
    let invalid = || ApiError::new(47003);
    let data = request
        .get("data")
        .and_then(Value::as_object)
        .ok_or_else(invalid)?;
    for field in data.values() {
        let value = field
            .as_object()
            .and_then(|f| f.get("value"))
            .ok_or_else(invalid)?;
        if !value.is_string() {
            return Err(invalid());
        }
    }
    match request.get("url") {
        None | Some(Value::Null | Value::String(_)) => {}
        Some(_) => return Err(invalid()),
    }
    match request.get("miniprogram") {
        None | Some(Value::Null) => {}
        Some(Value::Object(mp)) if mp.get("appid").is_some_and(Value::is_string) => {
            if !matches!(mp.get("pagepath"), None | Some(Value::String(_))) {
                return Err(invalid());
            }
        }
        Some(_) => return Err(invalid()),
    }
    Ok(())
}

/// The fields of each customer-service `msgtype`: (name, required).
fn custom_fields(msgtype: &str) -> Option<&'static [(&'static str, bool)]> {
    Some(match msgtype {
        "text" => &[("content", true)],
        "image" | "voice" | "mpnews" => &[("media_id", true)],
        "video" => &[
            ("media_id", true),
            ("thumb_media_id", true),
            ("title", false),
            ("description", false),
        ],
        "music" => &[
            ("title", false),
            ("description", false),
            ("musicurl", true),
            ("hqmusicurl", true),
            ("thumb_media_id", true),
        ],
        "news" => &[],
        "msgmenu" => &[("head_content", false), ("tail_content", false)],
        "miniprogrampage" => &[
            ("title", true),
            ("appid", true),
            ("pagepath", true),
            ("thumb_media_id", true),
        ],
        _ => return None,
    })
}

/// Checks the `<msgtype>` part of a customer-service message.
fn check_custom_part(msgtype: &str, part: &Map<String, Value>) -> Result<(), ApiError> {
    let malformed = || ApiError::new(47001);
    let fields = custom_fields(msgtype).ok_or_else(|| ApiError::new(40008))?;
    for (name, required) in fields {
        match part.get(*name) {
            Some(Value::String(s)) if *required && s.trim().is_empty() => {
                return Err(if *name == "content" {
                    ApiError::new(44004)
                } else {
                    malformed()
                });
            }
            Some(Value::String(_)) => {}
            None | Some(Value::Null) if !required => {}
            _ => return Err(malformed()),
        }
    }
    match msgtype {
        "news" => {
            let articles = part
                .get("articles")
                .and_then(Value::as_array)
                .ok_or_else(malformed)?;
            if articles.len() != 1 {
                return Err(ApiError::new(45008));
            }
            for article in articles {
                let article = article.as_object().ok_or_else(malformed)?;
                for name in ["title", "description", "url", "picurl"] {
                    if !matches!(article.get(name), None | Some(Value::String(_))) {
                        return Err(malformed());
                    }
                }
                if str_field(article, "title").is_none_or(str::is_empty) {
                    return Err(malformed());
                }
            }
        }
        "msgmenu" => {
            let list = part
                .get("list")
                .and_then(Value::as_array)
                .filter(|l| !l.is_empty())
                .ok_or_else(malformed)?;
            for item in list {
                let item = item.as_object().ok_or_else(malformed)?;
                let id_ok = matches!(item.get("id"), Some(Value::String(_) | Value::Number(_)));
                if !id_ok || !item.get("content").is_some_and(Value::is_string) {
                    return Err(malformed());
                }
            }
        }
        _ => {}
    }
    Ok(())
}

/// `POST /cgi-bin/message/custom/send?access_token=`.
pub(crate) async fn custom_send(
    State(emu): State<Emulator>,
    RawQuery(q): RawQuery,
    body: Bytes,
) -> ApiResult {
    let q = parse_query(q.as_deref());
    emu.check_token(&q)?;
    let request = json_body(&body)?;
    let touser = str_field(&request, "touser").unwrap_or_default().to_owned();
    let now = emu.now();
    let at_ms = emu.unix_ms();
    let mut state = emu.lock();
    state.users.check_reachable(&touser, now)?;
    let msgtype = str_field(&request, "msgtype").ok_or_else(|| ApiError::new(40008))?;
    if custom_fields(msgtype).is_none() {
        return Err(ApiError::new(40008));
    }
    let part = request
        .get(msgtype)
        .and_then(Value::as_object)
        .ok_or_else(|| ApiError::new(47001))?;
    check_custom_part(msgtype, part)?;
    match request.get("customservice") {
        None | Some(Value::Null) => {}
        Some(Value::Object(cs)) if matches!(cs.get("kf_account"), Some(Value::String(_))) => {}
        Some(_) => return Err(ApiError::new(47001)),
    }
    state.deliver(&touser, "custom", Value::Object(request.clone()), at_ms);
    drop(state);
    tracing::debug!(openid = %touser, msgtype, "emulator: customer-service message delivered");
    Ok(ok())
}

/// `GET /cgi-bin/template/get_all_private_template?access_token=`.
pub(crate) async fn template_list(State(emu): State<Emulator>, RawQuery(q): RawQuery) -> ApiResult {
    let q = parse_query(q.as_deref());
    emu.check_token(&q)?;
    let templates = emu.lock().templates.clone();
    Ok(Json(json!({ "template_list": templates })))
}

impl Emulator {
    /// Adds a template (or replaces the one with the same `template_id`); a missing
    /// `template_id` is generated. Returns the stored template.
    pub fn add_template(&self, template: Value) -> Result<Value, String> {
        let Value::Object(mut t) = template else {
            return Err("a template is a JSON object".into());
        };
        let id = match t.get("template_id") {
            Some(Value::String(id)) if !id.trim().is_empty() => id.clone(),
            None | Some(Value::Null) => {
                format!("huixin_template_{}", super::api::random_string(16, false))
            }
            Some(_) => return Err("template_id must be a non-empty string".into()),
        };
        t.insert("template_id".into(), json!(id));
        for (key, default) in [
            ("title", ""),
            ("primary_industry", ""),
            ("deputy_industry", ""),
            ("content", ""),
            ("example", ""),
        ] {
            match t.get(key) {
                None | Some(Value::Null) => {
                    t.insert(key.into(), json!(default));
                }
                Some(Value::String(_)) => {}
                Some(_) => return Err(format!("{key} must be a string")),
            }
        }
        let template = Value::Object(t);
        let mut state = self.lock();
        state
            .templates
            .retain(|x| x.get("template_id").and_then(Value::as_str) != Some(id.as_str()));
        state.templates.push(template.clone());
        Ok(template)
    }
}
