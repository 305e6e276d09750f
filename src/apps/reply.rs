//! The reply a message webhook answers with: `{"reply": …}` in the receiver's 2xx answer.
//!
//! | `reply` | passive reply |
//! |---|---|
//! | `"text"` (a string) | a text |
//! | `{"type": "text", "content"}` | a text |
//! | `{"type": "image" \| "voice", "media_id"}` | an image or voice message |
//! | `{"type": "video", "media_id", "title"?, "description"?}` | a video |
//! | `{"type": "music", "title"?, "description"?, "music_url"?, "hq_music_url"?, "thumb_media_id"}` | music |
//! | `{"type": "news", "articles": [{"title", "description"?, "url"?, "pic_url"?}]}` | news |
//! | `{"type": "transfer_customer_service", "kf_account"?}` | hand over to customer service |
//! | `null`, absent, `{"type": "success"}` | none (`success`) |

use serde_json::Value;

use crate::wechat::{Article, Music, Reply};

/// The reply in a receiver's answer: `Ok(None)` when it names none, `Err` with the reason when
/// `reply` is there but malformed.
pub fn from_answer(answer: &Value) -> Result<Option<Reply>, String> {
    match answer.get("reply") {
        None | Some(Value::Null) => Ok(None),
        Some(reply) => parse(reply).map(|r| match r {
            Reply::Success => None,
            r => Some(r),
        }),
    }
}

/// One reply value (see the [module documentation](self)).
pub fn parse(reply: &Value) -> Result<Reply, String> {
    let object = match reply {
        Value::String(text) => return Ok(Reply::text(text.as_str())),
        Value::Object(o) => o,
        other => return Err(format!("reply is a string or an object, not {other}")),
    };
    let text = |name: &str| -> String {
        object
            .get(name)
            .and_then(Value::as_str)
            .unwrap_or_default()
            .to_owned()
    };
    let required = |name: &str| -> Result<String, String> {
        match object.get(name).and_then(Value::as_str) {
            Some(v) if !v.is_empty() => Ok(v.to_owned()),
            _ => Err(format!("a {} reply needs {name}", text("type"))),
        }
    };
    let kind = object.get("type").and_then(Value::as_str).unwrap_or("text");
    Ok(match kind {
        "text" => Reply::text(required("content")?),
        "image" => Reply::image(required("media_id")?),
        "voice" => Reply::voice(required("media_id")?),
        "video" => Reply::video(required("media_id")?, text("title"), text("description")),
        "music" => Reply::Music(Music {
            title: text("title"),
            description: text("description"),
            music_url: text("music_url"),
            hq_music_url: text("hq_music_url"),
            thumb_media_id: required("thumb_media_id")?.into(),
        }),
        "news" => {
            let articles = object
                .get("articles")
                .and_then(Value::as_array)
                .filter(|a| !a.is_empty())
                .ok_or("a news reply needs articles")?;
            let mut out = Vec::with_capacity(articles.len());
            for a in articles {
                let field = |name: &str| {
                    a.get(name)
                        .and_then(Value::as_str)
                        .unwrap_or_default()
                        .to_owned()
                };
                out.push(Article {
                    title: field("title"),
                    description: field("description"),
                    pic_url: field("pic_url"),
                    url: field("url"),
                });
            }
            Reply::news(out)
        }
        "transfer_customer_service" => Reply::TransferCustomerService {
            kf_account: object
                .get("kf_account")
                .and_then(Value::as_str)
                .filter(|k| !k.is_empty())
                .map(str::to_owned),
        },
        "success" => Reply::Success,
        other => return Err(format!("unknown reply type {other:?}")),
    })
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    #[test]
    fn shapes() {
        assert_eq!(
            from_answer(&json!({"reply": "hi"})),
            Ok(Some(Reply::text("hi")))
        );
        assert_eq!(
            from_answer(&json!({"reply": {"type": "text", "content": "hi"}})),
            Ok(Some(Reply::text("hi")))
        );
        assert_eq!(from_answer(&json!({"ok": true})), Ok(None));
        assert_eq!(from_answer(&json!({"reply": null})), Ok(None));
        assert_eq!(
            from_answer(&json!({"reply": {"type": "success"}})),
            Ok(None)
        );
        let news = from_answer(&json!({"reply": {"type": "news", "articles": [
            {"title": "T", "url": "https://example.com"}]}}))
        .unwrap()
        .unwrap();
        assert!(matches!(news, Reply::News(a) if a.len() == 1 && a[0].title == "T"));
        assert!(from_answer(&json!({"reply": {"type": "image"}})).is_err());
        assert!(from_answer(&json!({"reply": {"type": "dance"}})).is_err());
        assert!(from_answer(&json!({"reply": 3})).is_err());
    }
}
