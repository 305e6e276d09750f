//! Customer-service messages (`/cgi-bin/message/custom/send`): messages sent to a user outside
//! a reply, allowed within 48 hours of the user's last message to the account, with small
//! quotas (45015 out of the window, 45047 too many). Not repeated on a busy platform or a
//! network error: the API has no idempotency key, and a duplicate is worse than a failure
//! reported.

use serde::{Deserialize, Serialize};
use serde_json::{Value, json};

use super::{ApiError, Call, Client};
use crate::wechat::Reply;

/// One news article (`articles[]`): customer-service news carries exactly one.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct NewsArticle {
    /// `title`.
    pub title: String,
    /// `description`.
    pub description: String,
    /// `url`.
    pub url: String,
    /// `picurl`.
    pub picurl: String,
}

/// One option of a menu message (`list[]`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct MenuOption {
    /// `id`: echoed back in the user's text message as `bizmsgmenuid`.
    pub id: String,
    /// `content`.
    pub content: String,
}

/// The body of a customer-service message, by `msgtype`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum CustomBody {
    /// `text`.
    Text {
        /// `content`.
        content: String,
    },
    /// `image`.
    Image {
        /// `media_id`.
        media_id: String,
    },
    /// `voice`.
    Voice {
        /// `media_id`.
        media_id: String,
    },
    /// `video`.
    Video {
        /// `media_id`.
        media_id: String,
        /// `thumb_media_id`.
        thumb_media_id: String,
        /// `title`.
        title: String,
        /// `description`.
        description: String,
    },
    /// `music`.
    Music {
        /// `title`.
        title: String,
        /// `description`.
        description: String,
        /// `musicurl`.
        musicurl: String,
        /// `hqmusicurl`.
        hqmusicurl: String,
        /// `thumb_media_id`.
        thumb_media_id: String,
    },
    /// `news`: one article.
    News {
        /// `articles`.
        article: NewsArticle,
    },
    /// `mpnews`: a published article by media id.
    MpNews {
        /// `media_id`.
        media_id: String,
    },
    /// `msgmenu`: a message with tappable options.
    MsgMenu {
        /// `head_content`.
        head_content: String,
        /// `list`.
        options: Vec<MenuOption>,
        /// `tail_content`.
        tail_content: String,
    },
    /// `miniprogrampage`: a mini program card.
    MiniProgramPage {
        /// `title`.
        title: String,
        /// `appid`.
        appid: String,
        /// `pagepath`.
        pagepath: String,
        /// `thumb_media_id`.
        thumb_media_id: String,
    },
}

/// A customer-service message.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CustomMessage {
    /// `touser`.
    pub touser: String,
    /// The body.
    pub body: CustomBody,
    /// `customservice.kf_account`: send as this agent.
    pub kf_account: Option<String>,
}

impl CustomMessage {
    /// A message to `touser`.
    pub fn new(touser: impl Into<String>, body: CustomBody) -> Self {
        Self {
            touser: touser.into(),
            body,
            kf_account: None,
        }
    }

    /// A text message.
    pub fn text(touser: impl Into<String>, content: impl Into<String>) -> Self {
        Self::new(
            touser,
            CustomBody::Text {
                content: content.into(),
            },
        )
    }

    /// The customer-service form of a passive reply, for replies that missed the deadline.
    /// `None` for `success` and for a transfer to customer service (there is no such message);
    /// news keeps its first article (the limit of this API).
    pub fn from_reply(touser: &str, reply: &Reply) -> Option<Self> {
        let body = match reply {
            Reply::Text { content } => CustomBody::Text {
                content: content.clone(),
            },
            Reply::Image { media_id } => CustomBody::Image {
                media_id: media_id.to_string(),
            },
            Reply::Voice { media_id } => CustomBody::Voice {
                media_id: media_id.to_string(),
            },
            Reply::Video {
                media_id,
                title,
                description,
            } => CustomBody::Video {
                media_id: media_id.to_string(),
                thumb_media_id: media_id.to_string(),
                title: title.clone(),
                description: description.clone(),
            },
            Reply::Music(m) => CustomBody::Music {
                title: m.title.clone(),
                description: m.description.clone(),
                musicurl: m.music_url.clone(),
                hqmusicurl: m.hq_music_url.clone(),
                thumb_media_id: m.thumb_media_id.to_string(),
            },
            Reply::News(articles) => {
                let a = articles.first()?;
                CustomBody::News {
                    article: NewsArticle {
                        title: a.title.clone(),
                        description: a.description.clone(),
                        url: a.url.clone(),
                        picurl: a.pic_url.clone(),
                    },
                }
            }
            Reply::TransferCustomerService { .. } | Reply::Success => return None,
        };
        Some(Self::new(touser, body))
    }

    /// The request body, as the API documents it.
    pub fn to_json(&self) -> Value {
        let (msgtype, part) = match &self.body {
            CustomBody::Text { content } => ("text", json!({ "content": content })),
            CustomBody::Image { media_id } => ("image", json!({ "media_id": media_id })),
            CustomBody::Voice { media_id } => ("voice", json!({ "media_id": media_id })),
            CustomBody::Video {
                media_id,
                thumb_media_id,
                title,
                description,
            } => (
                "video",
                json!({ "media_id": media_id, "thumb_media_id": thumb_media_id, "title": title, "description": description }),
            ),
            CustomBody::Music {
                title,
                description,
                musicurl,
                hqmusicurl,
                thumb_media_id,
            } => (
                "music",
                json!({ "title": title, "description": description, "musicurl": musicurl, "hqmusicurl": hqmusicurl, "thumb_media_id": thumb_media_id }),
            ),
            CustomBody::News { article } => ("news", json!({ "articles": [article] })),
            CustomBody::MpNews { media_id } => ("mpnews", json!({ "media_id": media_id })),
            CustomBody::MsgMenu {
                head_content,
                options,
                tail_content,
            } => (
                "msgmenu",
                json!({ "head_content": head_content, "list": options, "tail_content": tail_content }),
            ),
            CustomBody::MiniProgramPage {
                title,
                appid,
                pagepath,
                thumb_media_id,
            } => (
                "miniprogrampage",
                json!({ "title": title, "appid": appid, "pagepath": pagepath, "thumb_media_id": thumb_media_id }),
            ),
        };
        let mut body = json!({ "touser": self.touser, "msgtype": msgtype });
        body[msgtype] = part;
        if let Some(kf) = &self.kf_account {
            body["customservice"] = json!({ "kf_account": kf });
        }
        body
    }
}

impl Client {
    /// Sends a customer-service message.
    pub async fn send_custom(&self, message: &CustomMessage) -> Result<(), ApiError> {
        self.call_value(Call::post(
            "/cgi-bin/message/custom/send",
            message.to_json(),
        ))
        .await
        .map(|_| ())
    }
}
