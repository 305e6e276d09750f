//! ntfy's publishing API. huixin delivers to WeChat, not to ntfy subscribers, so only
//! publishing is served.
//!
//! - `PUT|POST /{topic}` (dispatched from [`super::bark`]'s `/{x}`): the raw body is the
//!   message; parameters come from headers, with or without `X-`, case-insensitive, values
//!   possibly RFC 2047 encoded (`=?UTF-8?B?…?=`), else from the query: `Title`/`t`,
//!   `Priority`/`prio`/`p`, `Tags`/`tag`/`ta`, `Click`, `Icon`, `Markdown`/`md` (or
//!   `Content-Type: text/markdown`), `Message`/`m` (instead of the body). An empty message is
//!   `triggered`, as in ntfy.
//! - `GET|POST|PUT /{topic}/publish` (also `/send`, `/trigger`): the same, for webhooks.
//! - `POST|PUT /`: JSON `{topic, title, message, priority, tags, click, markdown, icon}`
//!   (Apprise's shape). As in ntfy, the headers and query parameters above still apply to
//!   the fields the JSON leaves out (Apprise sends `?click=` as an `X-Click` header).
//! - `GET /v1/health`: `{"healthy":true}`.
//!
//! The topic is a huixin push key, unless the request carries a key in `Authorization`
//! (`Bearer KEY`, or Basic with the key as password): then the topic names the huixin topic
//! that key pushes to. `Click` becomes the push's link when it is an http(s) URL; priority
//! (validated), tags and icon only appear in the answer.
//!
//! Answers: HTTP 200 with ntfy's message object `{"id", "time", "expires", "event":"message",
//! "topic", "title", "message", "priority", "tags", "click", "icon", "content_type"}` (empty
//! fields left out, as ntfy does; `id` is the push id, `expires` is absent when pushes are
//! kept forever). Errors: `{"code":40101,"http":401,"error":"unauthorized"}`; the codes are
//! ntfy's: 40007 bad priority, 40009 bad topic, 40011 not UTF-8, 40017 bad JSON, 40000 other
//! invalid requests, 40101 unauthorized, 40301 forbidden, 40401 not found, 41301 too large,
//! 42901 rate limited (with `Retry-After`), 50001 server error, 50301 not configured.

use axum::body::Bytes;
use axum::extract::{FromRequest, Path, Request, State};
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::Response;
use axum::routing::{get, post};
use serde_json::{Map, Value, json};

use super::bark::web_link;
use super::fields::{Fields, FieldsError, bearer_or_basic, query_pairs};
use super::{json_response, log_error};
use crate::push::keys::valid_topic;
use crate::push::service::{PushError, PushRequest, Pushes, Sender};
use crate::support::routes::RESERVED;

/// Second path segments of ntfy's subscribe API, which huixin answers with 404.
pub(super) const SUBSCRIBE_SUFFIXES: &[&str] = &["json", "sse", "raw", "ws", "auth"];

/// The routes of this module (`/{topic}` itself is dispatched by [`super::bark`]).
pub(super) fn routes() -> axum::Router<Pushes> {
    let publish = get(publish_path).post(publish_path).put(publish_path);
    axum::Router::new()
        .route("/", post(publish_json).put(publish_json))
        .route("/v1/health", get(health))
        .route("/{key}/publish", publish.clone())
        .route("/{key}/send", publish.clone())
        .route("/{key}/trigger", publish)
}

/// A refusal in ntfy's format.
struct NtfyError {
    code: u32,
    http: u16,
    error: String,
    cause: Option<PushError>,
}

impl NtfyError {
    fn new(code: u32, http: u16, error: impl Into<String>) -> Self {
        Self {
            code,
            http,
            error: error.into(),
            cause: None,
        }
    }

    fn response(self) -> Response {
        if let Some(cause) = &self.cause {
            log_error("ntfy", cause);
        }
        json_response(
            self.http,
            json!({ "code": self.code, "http": self.http, "error": self.error }),
            self.cause.as_ref(),
        )
    }
}

impl From<PushError> for NtfyError {
    fn from(e: PushError) -> Self {
        let (code, text) = match &e {
            PushError::MissingKey | PushError::BadKey => (40101, "unauthorized".to_owned()),
            PushError::Forbidden(why) => (40301, format!("forbidden; {why}")),
            PushError::Invalid(why) => (40000, format!("invalid request; {why}")),
            PushError::NotFound(why) => (40401, format!("not found; {why}")),
            PushError::RateLimited(_) => (42901, "limit reached: too many requests".to_owned()),
            PushError::TooLarge => (41301, "message too large".to_owned()),
            PushError::NotConfigured(_) => (50301, e.to_string()),
            PushError::Upstream(_) => (50201, e.to_string()),
            PushError::Store(_) => (50001, "internal server error".to_owned()),
        };
        Self {
            code,
            http: e.status(),
            error: text,
            cause: Some(e),
        }
    }
}

impl From<FieldsError> for NtfyError {
    fn from(e: FieldsError) -> Self {
        match e {
            FieldsError::TooLarge => Self::new(41301, 413, "message too large"),
            FieldsError::Malformed(_) => Self::new(
                40017,
                400,
                "invalid request: request body must be message JSON",
            ),
        }
    }
}

/// ntfy's 404.
pub(super) fn not_found() -> Response {
    NtfyError::new(40401, 404, "page not found").response()
}

async fn health() -> Response {
    json_response(200, json!({ "healthy": true }), None)
}

/// A message as published, before it is pushed.
#[derive(Debug, Default)]
struct Publish {
    topic: String,
    message: String,
    title: Option<String>,
    priority: u8,
    tags: Vec<String>,
    click: Option<String>,
    icon: Option<String>,
    markdown: bool,
}

/// ntfy's priorities: 0 when not given.
fn parse_priority(text: &str) -> Result<u8, NtfyError> {
    match text.trim().to_ascii_lowercase().as_str() {
        "" => Ok(0),
        "1" | "min" => Ok(1),
        "2" | "low" => Ok(2),
        "3" | "default" => Ok(3),
        "4" | "high" => Ok(4),
        "5" | "max" | "urgent" => Ok(5),
        _ => Err(NtfyError::new(40007, 400, "invalid priority parameter")),
    }
}

fn truthy(text: &str) -> bool {
    matches!(
        text.trim().to_ascii_lowercase().as_str(),
        "1" | "yes" | "true"
    )
}

fn split_tags(text: &str) -> Vec<String> {
    text.split(',')
        .map(|t| t.trim().to_owned())
        .filter(|t| !t.is_empty())
        .collect()
}

/// The parameters of a request: headers (decoded) first, then the query.
struct Params<'a> {
    headers: &'a HeaderMap,
    query: Vec<(String, String)>,
}

impl Params<'_> {
    /// The first of `names` present, as a header (any case, RFC 2047 decoded) or else as a
    /// query parameter.
    fn get(&self, names: &[&str]) -> Option<String> {
        let from_header = names.iter().find_map(|name| {
            let value = self.headers.get(*name)?;
            // Raw UTF-8 in headers is common (curl -H "Title: 你好"); `to_str` refuses it.
            let text = String::from_utf8_lossy(value.as_bytes()).trim().to_owned();
            (!text.is_empty()).then(|| decode_words(&text))
        });
        from_header.or_else(|| {
            names.iter().find_map(|name| {
                self.query
                    .iter()
                    .find(|(k, v)| k.eq_ignore_ascii_case(name) && !v.is_empty())
                    .map(|(_, v)| v.clone())
            })
        })
    }

    /// `Title`.
    fn title(&self) -> Option<String> {
        self.get(&["x-title", "title", "t"])
    }

    /// `Priority`; 0 when not given.
    fn priority(&self) -> Result<u8, NtfyError> {
        match self.get(&["x-priority", "priority", "prio", "p"]) {
            // A browser's RFC 9218 `Priority: u=1, i` header is not ntfy's.
            Some(p) if p.contains('=') => Ok(0),
            Some(p) => parse_priority(&p),
            None => Ok(0),
        }
    }

    /// `Tags`, comma-separated.
    fn tags(&self) -> Vec<String> {
        split_tags(
            &self
                .get(&["x-tags", "tags", "tag", "ta"])
                .unwrap_or_default(),
        )
    }

    /// `Click`.
    fn click(&self) -> Option<String> {
        self.get(&["x-click", "click"])
    }

    /// `Icon`.
    fn icon(&self) -> Option<String> {
        self.get(&["x-icon", "icon"])
    }

    /// `Markdown`, or a `text/markdown` content type.
    fn markdown(&self) -> bool {
        let content_markdown = self
            .headers
            .get(header::CONTENT_TYPE)
            .and_then(|v| v.to_str().ok())
            .is_some_and(|v| v.trim().to_ascii_lowercase().starts_with("text/markdown"));
        content_markdown
            || self
                .get(&["x-markdown", "markdown", "md"])
                .is_some_and(|m| truthy(&m))
    }
}

/// `PUT|POST /{topic}`: the body is the message.
pub(super) async fn publish_raw(pushes: &Pushes, topic: &str, request: Request) -> Response {
    match read_raw(topic, request).await {
        Ok((auth, publish)) => publish_one(pushes, auth, publish).await,
        Err(e) => e.response(),
    }
}

async fn publish_path(
    State(pushes): State<Pushes>,
    Path(topic): Path<String>,
    request: Request,
) -> Response {
    publish_raw(&pushes, &topic, request).await
}

async fn read_raw(topic: &str, request: Request) -> Result<(Option<String>, Publish), NtfyError> {
    let headers = request.headers().clone();
    let query = query_pairs(request.uri().query());
    let body = Bytes::from_request(request, &()).await.map_err(|e| {
        if e.status() == StatusCode::PAYLOAD_TOO_LARGE {
            NtfyError::from(FieldsError::TooLarge)
        } else {
            NtfyError::new(40000, 400, "invalid request")
        }
    })?;
    let body = String::from_utf8(body.to_vec()).map_err(|_| {
        NtfyError::new(40011, 400, "invalid message: message must be UTF-8 encoded")
    })?;
    let params = Params {
        headers: &headers,
        query,
    };
    let message = match params.get(&["x-message", "message", "m"]) {
        // As ntfy: a literal `\n` in a parameter is a line break.
        Some(m) => m.replace("\\n", "\n"),
        None => body.trim_end().to_owned(),
    };
    let publish = Publish {
        topic: topic.to_owned(),
        message,
        title: params.title(),
        priority: params.priority()?,
        tags: params.tags(),
        click: params.click(),
        icon: params.icon(),
        markdown: params.markdown(),
    };
    Ok((bearer_or_basic(&headers), publish))
}

/// `POST /`: Apprise's JSON. A field the JSON leaves out (or empty) comes from the headers
/// and query, as in ntfy, which turns the JSON's fields into headers over the request's own.
async fn publish_json(State(pushes): State<Pushes>, request: Request) -> Response {
    let headers = request.headers().clone();
    let params = Params {
        headers: &headers,
        query: query_pairs(request.uri().query()),
    };
    let auth = bearer_or_basic(&headers);
    let result = async {
        let fields = Fields::read(request).await.map_err(NtfyError::from)?;
        if !fields.json {
            return Err(NtfyError::from(FieldsError::Malformed(String::new())));
        }
        let priority = match fields.value("priority") {
            Some(Value::Number(n)) => parse_priority(&n.to_string())?,
            _ => parse_priority(&fields.get("priority").unwrap_or_default())?,
        };
        let priority = match priority {
            0 => params.priority()?,
            given => given,
        };
        let tags = match fields.list("tags") {
            tags if tags.is_empty() => params.tags(),
            tags => tags,
        };
        Ok(Publish {
            topic: fields.get("topic").unwrap_or_default(),
            message: fields.get("message").unwrap_or_default(),
            title: fields.get("title").or_else(|| params.title()),
            priority,
            tags,
            click: fields.get("click").or_else(|| params.click()),
            icon: fields.get("icon").or_else(|| params.icon()),
            // As every field: the JSON's own value, `false` included, wins over a header.
            markdown: fields
                .get("markdown")
                .map_or_else(|| params.markdown(), |m| truthy(&m)),
        })
    }
    .await;
    match result {
        Ok(publish) => publish_one(&pushes, auth, publish).await,
        Err(e) => e.response(),
    }
}

/// Pushes a published message: the topic is the key, unless `auth` carries one.
async fn publish_one(pushes: &Pushes, auth: Option<String>, publish: Publish) -> Response {
    if !valid_topic(&publish.topic) {
        return NtfyError::new(40009, 400, "invalid request: topic invalid").response();
    }
    if RESERVED.contains(&publish.topic.as_str()) {
        return not_found();
    }
    let result = async {
        let (key, topic) = match &auth {
            Some(secret) => (secret.as_str(), Some(publish.topic.clone())),
            None => (publish.topic.as_str(), None),
        };
        let key = pushes.authenticate_to_push(key).await?;
        let message = if publish.message.trim().is_empty() {
            // ntfy's text for a message without one.
            "triggered".to_owned()
        } else {
            publish.message.clone()
        };
        let request = PushRequest {
            topic,
            title: publish.title.clone().unwrap_or_default(),
            body: message.clone(),
            url: web_link(publish.click.clone()),
            ..PushRequest::default()
        };
        let accepted = pushes.accept(Sender::Key(&key), request, "ntfy").await?;
        Ok::<_, PushError>((accepted, message))
    }
    .await;
    let (accepted, message) = match result {
        Ok(r) => r,
        Err(e) => return NtfyError::from(e).response(),
    };
    let mut answer = Map::new();
    answer.insert("id".into(), json!(accepted.id));
    answer.insert("time".into(), json!(accepted.created_at));
    let retention = i64::from(pushes.config().retention_days) * 86_400;
    if retention > 0 {
        answer.insert("expires".into(), json!(accepted.created_at + retention));
    }
    answer.insert("event".into(), json!("message"));
    answer.insert("topic".into(), json!(publish.topic));
    if let Some(title) = publish.title.filter(|t| !t.is_empty()) {
        answer.insert("title".into(), json!(title));
    }
    answer.insert("message".into(), json!(message));
    if publish.priority > 0 {
        answer.insert("priority".into(), json!(publish.priority));
    }
    if !publish.tags.is_empty() {
        answer.insert("tags".into(), json!(publish.tags));
    }
    if let Some(click) = publish.click.filter(|c| !c.is_empty()) {
        answer.insert("click".into(), json!(click));
    }
    if let Some(icon) = publish.icon.filter(|i| !i.is_empty()) {
        answer.insert("icon".into(), json!(icon));
    }
    if publish.markdown {
        answer.insert("content_type".into(), json!("text/markdown"));
    }
    json_response(200, Value::Object(answer), None)
}

/// Decodes the RFC 2047 encoded words (`=?UTF-8?B?5L2g5aW9?=`, `=?utf-8?Q?caf=C3=A9?=`) in a
/// header value; whitespace between two encoded words is dropped, and anything that does not
/// decode (an unknown charset, bad base64) is kept as written.
pub(super) fn decode_words(input: &str) -> String {
    let mut out = String::with_capacity(input.len());
    let mut rest = input;
    let mut after_word = false;
    while let Some(start) = rest.find("=?") {
        let (before, candidate) = rest.split_at(start);
        match decode_word(candidate) {
            Some((text, used)) => {
                if !(after_word && before.chars().all(char::is_whitespace)) {
                    out.push_str(before);
                }
                out.push_str(&text);
                rest = &candidate[used..];
                after_word = true;
            }
            None => {
                out.push_str(before);
                out.push_str("=?");
                rest = &candidate[2..];
                after_word = false;
            }
        }
    }
    out.push_str(rest);
    out
}

/// One encoded word at the start of `s` (which starts with `=?`): its text and its length.
fn decode_word(s: &str) -> Option<(String, usize)> {
    let inner = s.get(2..)?;
    let charset_end = inner.find('?')?;
    let charset = inner[..charset_end].to_ascii_lowercase();
    // RFC 2231 lets a language follow the charset: `UTF-8*en`.
    let charset = charset.split('*').next().unwrap_or_default();
    let after_charset = &inner[charset_end + 1..];
    let bytes = after_charset.as_bytes();
    if bytes.len() < 2 || bytes[1] != b'?' {
        return None;
    }
    let encoding = bytes[0].to_ascii_uppercase();
    let text = &after_charset[2..];
    let end = text.find("?=")?;
    let encoded = &text[..end];
    if encoded.contains(char::is_whitespace) {
        return None;
    }
    let raw = match encoding {
        b'B' => {
            use base64::Engine;
            use base64::engine::general_purpose::{STANDARD, STANDARD_NO_PAD};
            STANDARD
                .decode(encoded)
                .or_else(|_| STANDARD_NO_PAD.decode(encoded))
                .ok()?
        }
        b'Q' => decode_q(encoded)?,
        _ => return None,
    };
    let decoded = match charset {
        "utf-8" | "utf8" | "us-ascii" => String::from_utf8(raw).ok()?,
        "iso-8859-1" | "latin1" => raw.iter().map(|&b| char::from(b)).collect(),
        _ => return None,
    };
    let used = 2 + charset_end + 1 + 2 + end + 2;
    Some((decoded, used))
}

/// RFC 2047's Q encoding: `_` is a space, `=XX` a byte.
fn decode_q(encoded: &str) -> Option<Vec<u8>> {
    let bytes = encoded.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        match bytes[i] {
            b'_' => out.push(b' '),
            b'=' => {
                let hex = encoded.get(i + 1..i + 3)?;
                out.push(u8::from_str_radix(hex, 16).ok()?);
                i += 2;
            }
            b => out.push(b),
        }
        i += 1;
    }
    Some(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn encoded_words_decode() {
        assert_eq!(decode_words("=?UTF-8?B?5L2g5aW9?="), "你好");
        assert_eq!(
            decode_words("=?utf-8?q?caf=C3=A9_au_lait?="),
            "café au lait"
        );
        assert_eq!(decode_words("=?UTF-8?B?5L2g?= =?UTF-8?B?5aW9?="), "你好");
        assert_eq!(decode_words("a =?UTF-8?B?5L2g?= b"), "a 你 b");
        assert_eq!(decode_words("=?ISO-8859-1?Q?caf=E9?="), "café");
        assert_eq!(decode_words("plain =? text"), "plain =? text");
        assert_eq!(decode_words("=?x-unknown?B?5L2g?="), "=?x-unknown?B?5L2g?=");
        assert_eq!(decode_words("=?UTF-8?Q?bad=Z?="), "=?UTF-8?Q?bad=Z?=");
        assert_eq!(decode_words("=?UTF-8?"), "=?UTF-8?");
    }

    #[test]
    fn priorities() {
        assert_eq!(parse_priority("").ok(), Some(0));
        assert_eq!(parse_priority("Urgent").ok(), Some(5));
        assert_eq!(parse_priority("min").ok(), Some(1));
        assert_eq!(parse_priority("4").ok(), Some(4));
        assert!(parse_priority("6").is_err());
        assert!(parse_priority("loud").is_err());
    }
}
