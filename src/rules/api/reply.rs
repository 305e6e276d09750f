//! Reply builders: `text`, `image`, `voice`, `video`, `music`, `news` (with `article`),
//! `transfer_customer_service`, `success`. A handler may also return a plain string (a text
//! reply) or nothing (try the next rule).

use rhai::{Array, Dynamic, Engine, EvalAltResult, Map};

use super::{ScriptModule, map_of, map_str};
use crate::rules::context::runtime_error;
use crate::wechat::{Article, MediaId, Music, Reply};

/// The reply builders.
pub struct Replies;

impl ScriptModule for Replies {
    fn name(&self) -> &'static str {
        "reply"
    }

    fn register(&self, engine: &mut Engine) {
        engine
            .register_type_with_name::<Reply>("Reply")
            .register_fn("to_string", |r: &mut Reply| r.describe())
            .register_fn("to_debug", |r: &mut Reply| r.describe())
            .register_fn("text", |content: &str| Reply::text(content))
            .register_fn("image", |media_id: &str| Reply::image(media_id))
            .register_fn("voice", |media_id: &str| Reply::voice(media_id))
            .register_fn("video", |media_id: &str| Reply::video(media_id, "", ""))
            .register_fn("video", |media_id: &str, title: &str, description: &str| {
                Reply::video(media_id, title, description)
            })
            .register_fn("music", music)
            .register_fn("news", news)
            .register_fn(
                "article",
                |title: &str, description: &str, url: &str, pic_url: &str| {
                    map_of([
                        ("title", Dynamic::from(title.to_owned())),
                        ("description", Dynamic::from(description.to_owned())),
                        ("url", Dynamic::from(url.to_owned())),
                        ("pic_url", Dynamic::from(pic_url.to_owned())),
                    ])
                },
            )
            .register_fn("transfer_customer_service", || {
                Reply::transfer_customer_service(None)
            })
            .register_fn("transfer_customer_service", |kf_account: &str| {
                Reply::transfer_customer_service(Some(kf_account.to_owned()))
            })
            .register_fn("success", || Reply::Success);
    }
}

/// `music(#{title, description, url, hq_url, thumb_media_id})`.
fn music(m: Map) -> Result<Reply, Box<EvalAltResult>> {
    let thumb = map_str(&m, "thumb_media_id");
    if thumb.is_empty() {
        return Err(runtime_error("music() needs thumb_media_id"));
    }
    Ok(Reply::Music(Music {
        title: map_str(&m, "title"),
        description: map_str(&m, "description"),
        music_url: map_str(&m, "url"),
        hq_music_url: map_str(&m, "hq_url"),
        thumb_media_id: MediaId(thumb),
    }))
}

/// `news([article(...), #{title, description, url, pic_url}, ...])`.
fn news(items: Array) -> Result<Reply, Box<EvalAltResult>> {
    if items.is_empty() {
        return Err(runtime_error("news() needs at least one article"));
    }
    let articles = items
        .into_iter()
        .map(|item| {
            let m = item.try_cast::<Map>().ok_or_else(|| {
                runtime_error("news() takes maps: #{title, description, url, pic_url}")
            })?;
            Ok(Article {
                title: map_str(&m, "title"),
                description: map_str(&m, "description"),
                url: map_str(&m, "url"),
                pic_url: map_str(&m, "pic_url"),
            })
        })
        .collect::<Result<Vec<_>, Box<EvalAltResult>>>()?;
    Ok(Reply::News(articles))
}
