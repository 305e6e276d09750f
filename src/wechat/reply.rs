//! Passive replies (reference §4): what a handler answers, rendered into the XML WeChat
//! accepts, and parsed back (the simulator plays WeChat with it).
//!
//! Rendering never produces what makes WeChat show "该公众号暂时无法提供服务": an empty text
//! becomes `success`, `]]>` is split across CDATA sections, XML-illegal characters are dropped,
//! over-long text and excess news articles are cut. Each adjustment is reported as a
//! [`RenderNote`] for the caller to log.

use super::ids::MediaId;
use super::message::{Message, ParseError};
use super::xml::{self, Element, push_cdata_elem, push_num_elem, xml_safe};

/// Longest text reply WeChat reliably delivers, in bytes.
pub const MAX_TEXT_BYTES: usize = 2048;
/// News articles allowed when answering a user's message (text, image, voice, …).
pub const MAX_ARTICLES_TO_MESSAGE: usize = 1;
/// News articles allowed otherwise (events).
pub const MAX_ARTICLES: usize = 8;

/// A passive reply.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(tag = "type", content = "body", rename_all = "snake_case")]
pub enum Reply {
    /// `text`: `<Content>`. Never sent empty.
    Text {
        /// `Content`.
        content: String,
    },
    /// `image`: `<Image><MediaId/></Image>`.
    Image {
        /// `MediaId`.
        media_id: MediaId,
    },
    /// `voice`: `<Voice><MediaId/></Voice>`.
    Voice {
        /// `MediaId`.
        media_id: MediaId,
    },
    /// `video`: `<Video><MediaId/><Title/><Description/></Video>`.
    Video {
        /// `MediaId`.
        media_id: MediaId,
        /// `Title`.
        title: String,
        /// `Description`.
        description: String,
    },
    /// `music`.
    Music(Music),
    /// `news`: up to 1 article when answering a user's message, up to 8 otherwise.
    News(Vec<Article>),
    /// `transfer_customer_service`: hand the conversation to customer service.
    TransferCustomerService {
        /// `TransInfo/KfAccount`: a specific agent, if any.
        kf_account: Option<String>,
    },
    /// No reply: the body `success`.
    Success,
}

/// The body of a `music` reply.
#[derive(Debug, Clone, PartialEq, Eq, Default, serde::Serialize, serde::Deserialize)]
pub struct Music {
    /// `Title`.
    pub title: String,
    /// `Description`.
    pub description: String,
    /// `MusicUrl`.
    pub music_url: String,
    /// `HQMusicUrl`: preferred on Wi-Fi.
    pub hq_music_url: String,
    /// `ThumbMediaId`: the cover, from the media upload API.
    pub thumb_media_id: MediaId,
}

/// One news article.
#[derive(Debug, Clone, PartialEq, Eq, Default, serde::Serialize, serde::Deserialize)]
pub struct Article {
    /// `Title`.
    pub title: String,
    /// `Description`.
    pub description: String,
    /// `PicUrl`: 360x200 for the first article, 200x200 for the rest.
    pub pic_url: String,
    /// `Url`: opened on tap.
    pub url: String,
}

/// Something rendering changed so WeChat would accept the reply.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RenderNote {
    /// An empty (or whitespace-only) text was answered with `success` instead.
    EmptyText,
    /// A media reply without a media id was answered with `success` instead.
    EmptyMediaId,
    /// A news reply without articles was answered with `success` instead.
    NoArticles,
    /// A text longer than [`MAX_TEXT_BYTES`] was cut to this many bytes.
    TextTruncated {
        /// The original length in bytes.
        from: usize,
        /// The length sent.
        to: usize,
    },
    /// More articles than allowed; the first ones were kept.
    ArticlesTruncated {
        /// Articles given.
        from: usize,
        /// Articles sent.
        to: usize,
    },
}

impl std::fmt::Display for RenderNote {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::EmptyText => f.write_str("an empty text is answered `success`"),
            Self::EmptyMediaId => {
                f.write_str("a media reply without a media id is answered `success`")
            }
            Self::NoArticles => f.write_str("a news reply without articles is answered `success`"),
            Self::TextTruncated { from, to } => write!(f, "text cut from {from} to {to} bytes"),
            Self::ArticlesTruncated { from, to } => {
                write!(
                    f,
                    "only the first {to} of {from} articles (WeChat's limit here)"
                )
            }
        }
    }
}

/// A rendered reply: the XML (or `None` for `success`) and what was adjusted.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Rendered {
    /// The reply XML; `None` means answer the body `success`.
    pub xml: Option<String>,
    /// Adjustments made, for the log.
    pub notes: Vec<RenderNote>,
}

/// A reply as WeChat reads it: header plus body.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ParsedReply {
    /// `ToUserName`: the user.
    pub to: String,
    /// `FromUserName`: the account.
    pub from: String,
    /// `CreateTime`.
    pub create_time: i64,
    /// The reply.
    pub reply: Reply,
}

impl Reply {
    /// A text reply.
    pub fn text(content: impl Into<String>) -> Self {
        Self::Text {
            content: content.into(),
        }
    }

    /// An image reply.
    pub fn image(media_id: impl Into<MediaId>) -> Self {
        Self::Image {
            media_id: media_id.into(),
        }
    }

    /// A voice reply.
    pub fn voice(media_id: impl Into<MediaId>) -> Self {
        Self::Voice {
            media_id: media_id.into(),
        }
    }

    /// A video reply.
    pub fn video(
        media_id: impl Into<MediaId>,
        title: impl Into<String>,
        description: impl Into<String>,
    ) -> Self {
        Self::Video {
            media_id: media_id.into(),
            title: title.into(),
            description: description.into(),
        }
    }

    /// A news reply.
    pub fn news(articles: impl IntoIterator<Item = Article>) -> Self {
        Self::News(articles.into_iter().collect())
    }

    /// Hand the conversation to customer service, optionally to one agent.
    pub fn transfer_customer_service(kf_account: Option<String>) -> Self {
        Self::TransferCustomerService { kf_account }
    }

    /// A readable description, one line per field (logs, `huixin simulate`, `rules test`).
    pub fn describe(&self) -> String {
        use std::fmt::Write as _;
        match self {
            Reply::Text { content } => format!("text: {content}"),
            Reply::Image { media_id } => format!("image: media_id={media_id}"),
            Reply::Voice { media_id } => format!("voice: media_id={media_id}"),
            Reply::Video {
                media_id,
                title,
                description,
            } => format!("video: media_id={media_id} title={title:?} description={description:?}"),
            Reply::Music(m) => format!(
                "music: {:?} ({}) url={} hq={} thumb={}",
                m.title, m.description, m.music_url, m.hq_music_url, m.thumb_media_id
            ),
            Reply::News(articles) => {
                let mut out = format!("news: {} article(s)", articles.len());
                for (i, a) in articles.iter().enumerate() {
                    let _ = write!(
                        out,
                        "\n  {}. {} | {} | {} | {}",
                        i + 1,
                        a.title,
                        a.description,
                        a.url,
                        a.pic_url
                    );
                }
                out
            }
            Reply::TransferCustomerService { kf_account } => match kf_account {
                Some(kf) => format!("transfer_customer_service to {kf}"),
                None => "transfer_customer_service".to_owned(),
            },
            Reply::Success => "success (no reply shown to the user)".to_owned(),
        }
    }

    /// What the user sees, on one line (the inbound log, the console): the text, the news
    /// titles, `image MEDIA_ID`, …; `None` for [`Reply::Success`], which shows nothing. Runs of
    /// whitespace, line breaks included, become one space.
    pub fn summary(&self) -> Option<String> {
        let line = match self {
            Reply::Text { content } => content.clone(),
            Reply::Image { media_id } => format!("image {media_id}"),
            Reply::Voice { media_id } => format!("voice {media_id}"),
            Reply::Video {
                media_id, title, ..
            } => format!("video {media_id} {title}"),
            Reply::Music(m) => format!("music {}", m.title),
            Reply::News(articles) => articles
                .iter()
                .map(|a| a.title.as_str())
                .collect::<Vec<_>>()
                .join(" | "),
            Reply::TransferCustomerService { kf_account } => match kf_account {
                Some(kf) => format!("transfer_customer_service {kf}"),
                None => "transfer_customer_service".to_owned(),
            },
            Reply::Success => return None,
        };
        Some(line.split_whitespace().collect::<Vec<_>>().join(" "))
    }

    /// The reply's `MsgType`; `success` for [`Reply::Success`].
    pub fn msg_type(&self) -> &'static str {
        match self {
            Self::Text { .. } => "text",
            Self::Image { .. } => "image",
            Self::Voice { .. } => "voice",
            Self::Video { .. } => "video",
            Self::Music(_) => "music",
            Self::News(_) => "news",
            Self::TransferCustomerService { .. } => "transfer_customer_service",
            Self::Success => "success",
        }
    }

    /// Renders the reply to `msg`: header fields swapped from the message, the article limit
    /// chosen by the message's kind.
    pub fn render_for(&self, msg: &Message, create_time: i64) -> Rendered {
        let max_articles = if msg.is_user_message() {
            MAX_ARTICLES_TO_MESSAGE
        } else {
            MAX_ARTICLES
        };
        self.render(msg.from.as_str(), &msg.to, create_time, max_articles)
    }

    /// Renders the reply addressed to user `to` from account `from`.
    pub fn render(&self, to: &str, from: &str, create_time: i64, max_articles: usize) -> Rendered {
        let mut notes = Vec::new();
        let mut out = String::with_capacity(256);
        let header = |out: &mut String, msg_type: &str| {
            out.push_str("<xml>");
            push_cdata_elem(out, "ToUserName", to);
            push_cdata_elem(out, "FromUserName", from);
            push_num_elem(out, "CreateTime", create_time);
            push_cdata_elem(out, "MsgType", msg_type);
        };
        let success = |notes: Vec<RenderNote>| Rendered { xml: None, notes };
        match self {
            Self::Success => return success(notes),
            Self::Text { content } => {
                // Judge emptiness and length on what will actually be sent.
                let clean = xml_safe(content);
                if clean.trim().is_empty() {
                    return success(vec![RenderNote::EmptyText]);
                }
                let cut = truncate_at_char(&clean, MAX_TEXT_BYTES);
                if cut.len() < clean.len() {
                    notes.push(RenderNote::TextTruncated {
                        from: clean.len(),
                        to: cut.len(),
                    });
                }
                header(&mut out, "text");
                push_cdata_elem(&mut out, "Content", cut);
            }
            Self::Image { media_id } | Self::Voice { media_id } => {
                if xml_safe(media_id.as_str()).trim().is_empty() {
                    return success(vec![RenderNote::EmptyMediaId]);
                }
                let (msg_type, wrapper) = match self {
                    Self::Image { .. } => ("image", "Image"),
                    _ => ("voice", "Voice"),
                };
                header(&mut out, msg_type);
                out.push_str(&format!("<{wrapper}>"));
                push_cdata_elem(&mut out, "MediaId", media_id.as_str());
                out.push_str(&format!("</{wrapper}>"));
            }
            Self::Video {
                media_id,
                title,
                description,
            } => {
                if xml_safe(media_id.as_str()).trim().is_empty() {
                    return success(vec![RenderNote::EmptyMediaId]);
                }
                header(&mut out, "video");
                out.push_str("<Video>");
                push_cdata_elem(&mut out, "MediaId", media_id.as_str());
                push_cdata_elem(&mut out, "Title", title);
                push_cdata_elem(&mut out, "Description", description);
                out.push_str("</Video>");
            }
            Self::Music(m) => {
                header(&mut out, "music");
                out.push_str("<Music>");
                push_cdata_elem(&mut out, "Title", &m.title);
                push_cdata_elem(&mut out, "Description", &m.description);
                push_cdata_elem(&mut out, "MusicUrl", &m.music_url);
                push_cdata_elem(&mut out, "HQMusicUrl", &m.hq_music_url);
                push_cdata_elem(&mut out, "ThumbMediaId", m.thumb_media_id.as_str());
                out.push_str("</Music>");
            }
            Self::News(articles) => {
                if articles.is_empty() {
                    return success(vec![RenderNote::NoArticles]);
                }
                let keep = articles.len().min(max_articles.max(1));
                if keep < articles.len() {
                    notes.push(RenderNote::ArticlesTruncated {
                        from: articles.len(),
                        to: keep,
                    });
                }
                header(&mut out, "news");
                push_num_elem(&mut out, "ArticleCount", keep);
                out.push_str("<Articles>");
                for a in &articles[..keep] {
                    out.push_str("<item>");
                    push_cdata_elem(&mut out, "Title", &a.title);
                    push_cdata_elem(&mut out, "Description", &a.description);
                    push_cdata_elem(&mut out, "PicUrl", &a.pic_url);
                    push_cdata_elem(&mut out, "Url", &a.url);
                    out.push_str("</item>");
                }
                out.push_str("</Articles>");
            }
            Self::TransferCustomerService { kf_account } => {
                header(&mut out, "transfer_customer_service");
                if let Some(account) = kf_account.as_deref().filter(|a| !a.is_empty()) {
                    out.push_str("<TransInfo>");
                    push_cdata_elem(&mut out, "KfAccount", account);
                    out.push_str("</TransInfo>");
                }
            }
        }
        out.push_str("</xml>");
        Rendered {
            xml: Some(out),
            notes,
        }
    }

    /// Parses a reply body as WeChat would: `success` or an empty body is [`Reply::Success`].
    pub fn parse(body: &str) -> Result<ParsedReply, ParseError> {
        let trimmed = body.trim();
        if trimmed.is_empty() || trimmed == "success" {
            return Ok(ParsedReply {
                to: String::new(),
                from: String::new(),
                create_time: 0,
                reply: Reply::Success,
            });
        }
        let root = xml::parse_str(trimmed)?;
        let get = |el: &Element, name: &str| el.text_of(name).unwrap_or_default().to_owned();
        let required = |name: &'static str| {
            root.text_of(name)
                .filter(|v| !v.trim().is_empty())
                .map(str::to_owned)
                .ok_or(ParseError::Missing(name))
        };
        let to = required("ToUserName")?;
        let from = required("FromUserName")?;
        let create_time_text = required("CreateTime")?;
        let create_time = create_time_text
            .trim()
            .parse()
            .map_err(|_| ParseError::Invalid {
                field: "CreateTime",
                value: create_time_text.clone(),
            })?;
        let msg_type = required("MsgType")?;
        let nested = |name: &str| root.child(name).cloned().unwrap_or_default();
        // WeChat shows "this account cannot provide service" for these, so they are errors.
        let non_empty = |value: String, field: &'static str| {
            if value.trim().is_empty() {
                Err(ParseError::Missing(field))
            } else {
                Ok(value)
            }
        };
        let reply = match msg_type.as_str() {
            "text" => Reply::text(non_empty(get(&root, "Content"), "Content")?),
            "image" => Reply::image(non_empty(get(&nested("Image"), "MediaId"), "MediaId")?),
            "voice" => Reply::voice(non_empty(get(&nested("Voice"), "MediaId"), "MediaId")?),
            "video" => {
                let v = nested("Video");
                let media_id = non_empty(get(&v, "MediaId"), "MediaId")?;
                Reply::video(media_id, get(&v, "Title"), get(&v, "Description"))
            }
            "music" => {
                let m = nested("Music");
                Reply::Music(Music {
                    title: get(&m, "Title"),
                    description: get(&m, "Description"),
                    music_url: get(&m, "MusicUrl"),
                    hq_music_url: get(&m, "HQMusicUrl"),
                    thumb_media_id: MediaId(get(&m, "ThumbMediaId")),
                })
            }
            "news" if nested("Articles").children_named("item").next().is_none() => {
                return Err(ParseError::Missing("Articles/item"));
            }
            "news" => Reply::News(
                nested("Articles")
                    .children_named("item")
                    .map(|i| Article {
                        title: get(i, "Title"),
                        description: get(i, "Description"),
                        pic_url: get(i, "PicUrl"),
                        url: get(i, "Url"),
                    })
                    .collect(),
            ),
            "transfer_customer_service" => Reply::TransferCustomerService {
                kf_account: nested("TransInfo")
                    .text_of("KfAccount")
                    .filter(|a| !a.is_empty())
                    .map(str::to_owned),
            },
            other => {
                return Err(ParseError::Invalid {
                    field: "MsgType",
                    value: other.chars().take(64).collect(),
                });
            }
        };
        Ok(ParsedReply {
            to,
            from,
            create_time,
            reply,
        })
    }
}

/// The longest prefix of `s` of at most `max` bytes ending on a character boundary.
fn truncate_at_char(s: &str, max: usize) -> &str {
    if s.len() <= max {
        return s;
    }
    let mut end = max;
    while !s.is_char_boundary(end) {
        end -= 1;
    }
    &s[..end]
}

#[cfg(test)]
mod tests {
    use super::*;

    fn render(reply: &Reply) -> Rendered {
        reply.render("o_user", "gh_account", 1_700_000_000, MAX_ARTICLES)
    }

    #[test]
    fn a_summary_is_one_line_of_what_the_user_sees() {
        let summary = |r: Reply| r.summary();
        assert_eq!(
            summary(Reply::text("hello\n  world\t!")).as_deref(),
            Some("hello world !")
        );
        assert_eq!(summary(Reply::image("m1")).as_deref(), Some("image m1"));
        assert_eq!(summary(Reply::voice("m2")).as_deref(), Some("voice m2"));
        assert_eq!(
            summary(Reply::video("m3", "A film", "d")).as_deref(),
            Some("video m3 A film")
        );
        assert_eq!(
            summary(Reply::news((1..=2).map(|i| Article {
                title: format!("Title {i}"),
                ..Article::default()
            })))
            .as_deref(),
            Some("Title 1 | Title 2")
        );
        assert_eq!(
            summary(Reply::transfer_customer_service(Some("kf@x".into()))).as_deref(),
            Some("transfer_customer_service kf@x")
        );
        assert_eq!(summary(Reply::Success), None);
    }

    #[test]
    fn every_kind_round_trips() {
        let replies = [
            Reply::text("你好 ]]> world"),
            Reply::image("m1"),
            Reply::voice("m2"),
            Reply::video("m3", "t", "d"),
            Reply::Music(Music {
                title: "t".into(),
                description: "d".into(),
                music_url: "http://a".into(),
                hq_music_url: "http://b".into(),
                thumb_media_id: "m4".into(),
            }),
            Reply::news((0..8).map(|i| Article {
                title: format!("t{i}"),
                ..Article::default()
            })),
            Reply::transfer_customer_service(None),
            Reply::transfer_customer_service(Some("kf@x".into())),
        ];
        for reply in replies {
            let xml = render(&reply).xml.expect("rendered");
            let parsed = Reply::parse(&xml).expect("parses back");
            assert_eq!(parsed.reply, reply);
            assert_eq!(parsed.to, "o_user");
            assert_eq!(parsed.from, "gh_account");
            assert_eq!(parsed.create_time, 1_700_000_000);
        }
    }

    #[test]
    fn never_sends_an_empty_text() {
        assert_eq!(render(&Reply::text("")).xml, None);
        // Only characters XML forbids: empty once cleaned.
        assert_eq!(render(&Reply::text("\u{2}\u{1d}")).xml, None);
        assert_eq!(render(&Reply::image("\u{2}")).xml, None);
        assert!(Reply::parse("<xml><ToUserName>a</ToUserName><FromUserName>b</FromUserName><CreateTime>1</CreateTime><MsgType>text</MsgType><Content></Content></xml>").is_err());
        assert_eq!(
            render(&Reply::text(" \n")).notes,
            vec![RenderNote::EmptyText]
        );
        assert_eq!(render(&Reply::image("")).xml, None);
        assert_eq!(render(&Reply::News(vec![])).xml, None);
        assert_eq!(render(&Reply::Success).xml, None);
    }

    #[test]
    fn limits_are_enforced() {
        let long = "字".repeat(1000); // 3000 bytes
        let r = render(&Reply::text(long));
        let parsed = Reply::parse(r.xml.as_deref().unwrap()).unwrap();
        let Reply::Text { content } = parsed.reply else {
            panic!()
        };
        assert_eq!(content.len(), 2046);
        assert!(matches!(
            r.notes[0],
            RenderNote::TextTruncated {
                from: 3000,
                to: 2046
            }
        ));

        let nine = Reply::news((0..9).map(|_| Article::default()));
        assert!(
            render(&nine)
                .xml
                .unwrap()
                .contains("<ArticleCount>8</ArticleCount>")
        );
        let one = nine.render("u", "a", 0, MAX_ARTICLES_TO_MESSAGE);
        assert!(one.xml.unwrap().contains("<ArticleCount>1</ArticleCount>"));
    }

    #[test]
    fn success_bodies_parse() {
        assert_eq!(Reply::parse("success").unwrap().reply, Reply::Success);
        assert_eq!(Reply::parse("").unwrap().reply, Reply::Success);
    }
}
