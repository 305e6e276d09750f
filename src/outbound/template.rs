//! Template messages (`/cgi-bin/message/template/send`). Since May 2023 a template card shows
//! little: no colours, no first/remark lines, each field at most 20 characters without a
//! newline (WeChat truncates). Put the content behind the link.
//!
//! Every send carries a `client_msg_id` (one is generated when the message has none), which
//! makes a retry after a busy platform or a lost answer safe: WeChat refuses the duplicate
//! (45065) instead of delivering it twice, and the client takes that as "already sent".

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use super::{ApiError, Call, Client};

/// A template field's value (`{"value": …}`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct TemplateValue {
    /// `value`.
    pub value: String,
}

/// Opens a mini program page instead of `url`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct MiniProgram {
    /// `appid`.
    pub appid: String,
    /// `pagepath`.
    pub pagepath: String,
}

/// A template message.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct TemplateMessage {
    /// `touser`: the recipient's OpenID.
    pub touser: String,
    /// `template_id`.
    pub template_id: String,
    /// `url`: opened on tap.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub url: Option<String>,
    /// `miniprogram`: opened on tap instead of `url`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub miniprogram: Option<MiniProgram>,
    /// `client_msg_id`: makes retries safe; generated when absent.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub client_msg_id: Option<String>,
    /// `data`: the template's fields.
    pub data: BTreeMap<String, TemplateValue>,
}

impl TemplateMessage {
    /// A message of `template_id` to `touser`, without fields yet.
    pub fn new(touser: impl Into<String>, template_id: impl Into<String>) -> Self {
        Self {
            touser: touser.into(),
            template_id: template_id.into(),
            url: None,
            miniprogram: None,
            client_msg_id: None,
            data: BTreeMap::new(),
        }
    }

    /// Sets a field.
    pub fn field(mut self, key: impl Into<String>, value: impl Into<String>) -> Self {
        self.data.insert(
            key.into(),
            TemplateValue {
                value: value.into(),
            },
        );
        self
    }

    /// Sets the link.
    pub fn url(mut self, url: impl Into<String>) -> Self {
        self.url = Some(url.into());
        self
    }

    /// Sets the `client_msg_id` (at most 32 characters).
    pub fn client_msg_id(mut self, id: impl Into<String>) -> Self {
        self.client_msg_id = Some(id.into());
        self
    }
}

/// The answer to a send.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct TemplateSent {
    /// `msgid`: the id `TEMPLATESENDJOBFINISH` will carry. `None` when a retry found the
    /// message already sent (its first answer was lost).
    #[serde(default)]
    pub msgid: Option<u64>,
    /// The `client_msg_id` the message went with.
    #[serde(default)]
    pub client_msg_id: String,
}

/// One of the account's templates (`/cgi-bin/template/get_all_private_template`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct TemplateInfo {
    /// `template_id`.
    pub template_id: String,
    /// `title`.
    #[serde(default)]
    pub title: String,
    /// `primary_industry`.
    #[serde(default)]
    pub primary_industry: String,
    /// `deputy_industry`.
    #[serde(default)]
    pub deputy_industry: String,
    /// `content`: the layout, with `{{key.DATA}}` placeholders.
    #[serde(default)]
    pub content: String,
    /// `example`.
    #[serde(default)]
    pub example: String,
}

#[derive(Deserialize)]
struct TemplateList {
    #[serde(default)]
    template_list: Vec<TemplateInfo>,
}

/// A fresh `client_msg_id`: 32 hexadecimal characters.
pub fn new_client_msg_id() -> String {
    format!("{:032x}", rand::random::<u128>())
}

impl Client {
    /// Sends a template message; repeated on a busy platform or a network error with the same
    /// `client_msg_id`, so the user gets it once.
    pub async fn send_template(&self, message: &TemplateMessage) -> Result<TemplateSent, ApiError> {
        let mut message = message.clone();
        let client_msg_id = message
            .client_msg_id
            .get_or_insert_with(new_client_msg_id)
            .clone();
        let body = serde_json::to_value(&message).map_err(|e| ApiError::Decode {
            endpoint: "/cgi-bin/message/template/send".into(),
            detail: e.to_string(),
        })?;
        let mut call = Call::post("/cgi-bin/message/template/send", body).repeatable();
        call.done_if_repeated = Some(45065);
        let value = self.call_value(call).await?;
        Ok(TemplateSent {
            msgid: value.get("msgid").and_then(serde_json::Value::as_u64),
            client_msg_id,
        })
    }

    /// The account's templates.
    pub async fn templates(&self) -> Result<Vec<TemplateInfo>, ApiError> {
        let list: TemplateList = self
            .call(Call::get("/cgi-bin/template/get_all_private_template"))
            .await?;
        Ok(list.template_list)
    }
}
