//! A stand-in for WeChat's server: builds a message of any type, signs it (and encrypts it in
//! safe and compatible mode), posts it to a running huixin, verifies and decrypts the reply.
//! `huixin simulate` is its command-line face; the integration tests play WeChat with it.

use std::fmt::Write as _;

use rand::RngExt;

use crate::wechat::reply::ParsedReply;
use crate::wechat::signature::{sign, unix_now};
use crate::wechat::xml::Element;
use crate::wechat::{CryptoError, Mode, MsgCrypt, ParseError, Reply};

/// Why a simulated exchange failed.
#[derive(Debug, thiserror::Error)]
pub enum SimError {
    /// The request could not be sent or the response not read.
    #[error("HTTP request failed: {0}")]
    Http(#[from] reqwest::Error),
    /// The encrypted reply's `MsgSignature` is wrong (or the envelope is incomplete).
    #[error("reply envelope is invalid: {0}")]
    Envelope(String),
    /// The encrypted reply would not decrypt.
    #[error("reply does not decrypt: {0}")]
    Decrypt(#[from] CryptoError),
    /// The reply is not a reply WeChat would accept.
    #[error("reply is not valid: {0}")]
    Reply(#[from] ParseError),
    /// The callback URL is not a valid http(s) URL.
    #[error("invalid callback URL {0:?}")]
    Url(String),
    /// The message file could not be read.
    #[error("cannot read {path}: {source}")]
    File {
        /// The path given.
        path: String,
        /// The OS error.
        source: std::io::Error,
    },
}

/// The sender and addressee of a simulated message.
#[derive(Debug, Clone)]
pub struct Header {
    /// `ToUserName`: the account's original id.
    pub to: String,
    /// `FromUserName`: the simulated follower's OpenID.
    pub from: String,
    /// `CreateTime`.
    pub create_time: i64,
    /// `MsgId` for user messages.
    pub msg_id: u64,
}

impl Header {
    /// A header from `from` to `to`, created now, with a random message id.
    pub fn new(to: &str, from: &str) -> Self {
        Self {
            to: to.to_owned(),
            from: from.to_owned(),
            create_time: unix_now(),
            msg_id: rand::rng().random_range(1u64 << 60..u64::MAX),
        }
    }
}

/// A message to simulate: every user message type and the common events. Also the
/// subcommands of `huixin simulate`.
#[derive(Debug, Clone, clap::Subcommand)]
pub enum MessageSpec {
    /// A text message.
    Text {
        /// The text.
        content: String,
    },
    /// An image message.
    Image {
        /// `MediaId`.
        #[arg(long, default_value = "media_image_simulated")]
        media_id: String,
        /// `PicUrl`.
        #[arg(long, default_value = "http://mmbiz.qpic.cn/simulated.jpg")]
        pic_url: String,
    },
    /// A voice message.
    Voice {
        /// `MediaId`.
        #[arg(long, default_value = "media_voice_simulated")]
        media_id: String,
        /// `Format`.
        #[arg(long, default_value = "amr")]
        format: String,
        /// `Recognition`: speech-to-text result.
        #[arg(long)]
        recognition: Option<String>,
    },
    /// A video message.
    Video {
        /// `MediaId`.
        #[arg(long, default_value = "media_video_simulated")]
        media_id: String,
        /// `ThumbMediaId`.
        #[arg(long, default_value = "media_thumb_simulated")]
        thumb_media_id: String,
    },
    /// A short video message.
    Shortvideo {
        /// `MediaId`.
        #[arg(long, default_value = "media_shortvideo_simulated")]
        media_id: String,
        /// `ThumbMediaId`.
        #[arg(long, default_value = "media_thumb_simulated")]
        thumb_media_id: String,
    },
    /// A location message.
    Location {
        /// `Location_X`: latitude.
        #[arg(long, default_value_t = 39.9042, allow_negative_numbers = true)]
        lat: f64,
        /// `Location_Y`: longitude.
        #[arg(long, default_value_t = 116.4074, allow_negative_numbers = true)]
        lon: f64,
        /// `Scale`.
        #[arg(long, default_value_t = 15)]
        scale: u32,
        /// `Label`.
        #[arg(long, default_value = "Tiananmen Square, Beijing")]
        label: String,
    },
    /// A link message.
    Link {
        /// `Title`.
        #[arg(long, default_value = "huixin")]
        title: String,
        /// `Description`.
        #[arg(long, default_value = "A letter in reply")]
        description: String,
        /// `Url`.
        #[arg(long, default_value = "https://example.com/article")]
        url: String,
    },
    /// A `subscribe` event: a new follower, optionally through a parameter QR code.
    Subscribe {
        /// The QR scene (sent as `EventKey = qrscene_<scene>` with a `Ticket`).
        #[arg(long)]
        scene: Option<String>,
    },
    /// An `unsubscribe` event.
    Unsubscribe,
    /// A `SCAN` event: a follower scanned a parameter QR code.
    Scan {
        /// The scene id or string.
        scene: String,
    },
    /// A `LOCATION` event (periodic location report).
    LocationEvent {
        /// `Latitude`.
        #[arg(long, default_value_t = 39.9042, allow_negative_numbers = true)]
        lat: f64,
        /// `Longitude`.
        #[arg(long, default_value_t = 116.4074, allow_negative_numbers = true)]
        lon: f64,
        /// `Precision`.
        #[arg(long, default_value_t = 30.0)]
        precision: f64,
    },
    /// A `CLICK` event (menu button).
    Click {
        /// The button's key.
        key: String,
    },
    /// A `VIEW` event (menu link).
    View {
        /// The URL.
        url: String,
    },
    /// Any other event, by name, with an optional `EventKey`.
    Event {
        /// The `Event` value, sent as given.
        name: String,
        /// `EventKey`.
        #[arg(long)]
        key: Option<String>,
    },
    /// Send an XML file as the message body (its header fields are used as they are).
    File {
        /// The file, e.g. one of `tests/fixtures/*.xml`.
        path: std::path::PathBuf,
    },
}

fn leaf(name: &str, value: impl ToString) -> Element {
    Element::leaf(name, value.to_string())
}

impl MessageSpec {
    /// Whether this is a user message (carries a `MsgId`).
    fn is_user_message(&self) -> bool {
        matches!(
            self,
            Self::Text { .. }
                | Self::Image { .. }
                | Self::Voice { .. }
                | Self::Video { .. }
                | Self::Shortvideo { .. }
                | Self::Location { .. }
                | Self::Link { .. }
        )
    }

    /// The message XML. [`MessageSpec::File`] is read from disk.
    pub fn to_xml(&self, header: &Header) -> Result<String, SimError> {
        if let Self::File { path } = self {
            return std::fs::read_to_string(path).map_err(|source| SimError::File {
                path: path.display().to_string(),
                source,
            });
        }
        Ok(self.to_element(header).to_xml())
    }

    /// The message as an element tree ([`MessageSpec::File`] gives an empty `<xml/>`).
    pub fn to_element(&self, header: &Header) -> Element {
        let mut f = vec![
            leaf("ToUserName", &header.to),
            leaf("FromUserName", &header.from),
            leaf("CreateTime", header.create_time),
        ];
        let event = |f: &mut Vec<Element>, name: &str| {
            f.push(leaf("MsgType", "event"));
            f.push(leaf("Event", name));
        };
        match self {
            Self::Text { content } => {
                f.push(leaf("MsgType", "text"));
                f.push(leaf("Content", content));
            }
            Self::Image { media_id, pic_url } => {
                f.push(leaf("MsgType", "image"));
                f.push(leaf("PicUrl", pic_url));
                f.push(leaf("MediaId", media_id));
            }
            Self::Voice {
                media_id,
                format,
                recognition,
            } => {
                f.push(leaf("MsgType", "voice"));
                f.push(leaf("MediaId", media_id));
                f.push(leaf("Format", format));
                if let Some(r) = recognition {
                    f.push(leaf("Recognition", r));
                }
            }
            Self::Video {
                media_id,
                thumb_media_id,
            }
            | Self::Shortvideo {
                media_id,
                thumb_media_id,
            } => {
                let t = if matches!(self, Self::Video { .. }) {
                    "video"
                } else {
                    "shortvideo"
                };
                f.push(leaf("MsgType", t));
                f.push(leaf("MediaId", media_id));
                f.push(leaf("ThumbMediaId", thumb_media_id));
            }
            Self::Location {
                lat,
                lon,
                scale,
                label,
            } => {
                f.push(leaf("MsgType", "location"));
                f.push(leaf("Location_X", lat));
                f.push(leaf("Location_Y", lon));
                f.push(leaf("Scale", scale));
                f.push(leaf("Label", label));
            }
            Self::Link {
                title,
                description,
                url,
            } => {
                f.push(leaf("MsgType", "link"));
                f.push(leaf("Title", title));
                f.push(leaf("Description", description));
                f.push(leaf("Url", url));
            }
            Self::Subscribe { scene } => {
                event(&mut f, "subscribe");
                if let Some(scene) = scene {
                    f.push(leaf("EventKey", format!("qrscene_{scene}")));
                    f.push(leaf("Ticket", "gQsimulatedticket"));
                }
            }
            Self::Unsubscribe => event(&mut f, "unsubscribe"),
            Self::Scan { scene } => {
                event(&mut f, "SCAN");
                f.push(leaf("EventKey", scene));
                f.push(leaf("Ticket", "gQsimulatedticket"));
            }
            Self::LocationEvent {
                lat,
                lon,
                precision,
            } => {
                event(&mut f, "LOCATION");
                f.push(leaf("Latitude", lat));
                f.push(leaf("Longitude", lon));
                f.push(leaf("Precision", precision));
            }
            Self::Click { key } => {
                event(&mut f, "CLICK");
                f.push(leaf("EventKey", key));
            }
            Self::View { url } => {
                event(&mut f, "VIEW");
                f.push(leaf("EventKey", url));
            }
            Self::Event { name, key } => {
                event(&mut f, name);
                if let Some(key) = key {
                    f.push(leaf("EventKey", key));
                }
            }
            Self::File { .. } => return Element::node("xml", Vec::new()),
        }
        if self.is_user_message() {
            f.push(leaf("MsgId", header.msg_id));
        }
        Element::node("xml", f)
    }
}

/// A signed (and possibly encrypted) request, ready to send or to replay.
#[derive(Debug, Clone, serde::Serialize)]
pub struct Prepared {
    /// The full URL with the signed query.
    pub url: String,
    /// The body (bytes as sent; not always UTF-8 in adversarial tests).
    #[serde(serialize_with = "lossy")]
    pub body: Vec<u8>,
    /// `timestamp`.
    pub timestamp: String,
    /// `nonce`.
    pub nonce: String,
    /// Whether the body is the encrypted envelope.
    pub encrypted: bool,
}

/// The outcome of one exchange.
#[derive(Debug, Clone)]
pub struct Exchange {
    /// HTTP status.
    pub status: u16,
    /// The raw response body.
    pub body: String,
    /// Whether the reply came encrypted (and its signature checked out).
    pub encrypted: bool,
    /// The reply XML after decryption; `None` for `success` and for non-200 answers.
    pub reply_xml: Option<String>,
    /// The reply as WeChat reads it, for 200 answers.
    pub reply: Option<ParsedReply>,
}

/// Plays WeChat against one callback URL.
#[derive(Clone)]
pub struct Simulator {
    endpoint: reqwest::Url,
    token: String,
    mode: Mode,
    crypt: Option<MsgCrypt>,
    client: reqwest::Client,
}

impl std::fmt::Debug for Simulator {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // Never print the token.
        f.debug_struct("Simulator")
            .field("endpoint", &self.endpoint.as_str())
            .field("mode", &self.mode)
            .finish_non_exhaustive()
    }
}

impl Simulator {
    /// A simulator posting to `endpoint` (the full callback URL) with `token`; `crypt` is
    /// required for safe and compatible mode.
    pub fn new(
        endpoint: &str,
        token: &str,
        mode: Mode,
        crypt: Option<MsgCrypt>,
    ) -> Result<Self, SimError> {
        let endpoint = reqwest::Url::parse(endpoint)
            .ok()
            .filter(|u| matches!(u.scheme(), "http" | "https"))
            .ok_or_else(|| SimError::Url(endpoint.to_owned()))?;
        Ok(Self {
            endpoint,
            token: token.to_owned(),
            mode,
            crypt,
            client: reqwest::Client::new(),
        })
    }

    /// The callback URL.
    pub fn endpoint(&self) -> &str {
        self.endpoint.as_str()
    }

    /// The mode messages are sent in.
    pub fn mode(&self) -> Mode {
        self.mode
    }

    /// The endpoint with a signed query plus `extra` parameters.
    fn signed_url(&self, timestamp: &str, nonce: &str, extra: &[(&str, &str)]) -> String {
        let signature = sign(&[&self.token, timestamp, nonce]);
        let mut url = self.endpoint.clone();
        url.query_pairs_mut()
            .append_pair("signature", &signature)
            .append_pair("timestamp", timestamp)
            .append_pair("nonce", nonce)
            .extend_pairs(extra);
        url.into()
    }

    /// Signs `xml` as WeChat would now, encrypting it in safe and compatible mode. The bytes
    /// are sent (or encrypted) exactly as given, even when they are not valid UTF-8.
    pub fn prepare(&self, xml: impl AsRef<[u8]>, openid: &str) -> Prepared {
        self.prepare_at(xml, openid, &unix_now().to_string(), &random_nonce())
    }

    /// Signs with a given timestamp and nonce.
    pub fn prepare_at(
        &self,
        xml: impl AsRef<[u8]>,
        openid: &str,
        timestamp: &str,
        nonce: &str,
    ) -> Prepared {
        let bytes = xml.as_ref();
        let xml = String::from_utf8_lossy(bytes);
        let (body, encrypted, msg_signature) = match (&self.crypt, self.mode) {
            (Some(crypt), Mode::Safe | Mode::Compatible) => {
                let encrypt = crypt.encrypt(bytes, crypt.app_id());
                let msg_signature = crypt.msg_signature(timestamp, nonce, &encrypt);
                let body = if self.mode == Mode::Safe {
                    let mut body = String::from("<xml><ToUserName><![CDATA[");
                    body.push_str(&to_user_name(&xml));
                    body.push_str("]]></ToUserName><Encrypt><![CDATA[");
                    body.push_str(&encrypt);
                    body.push_str("]]></Encrypt></xml>");
                    body
                } else {
                    // Compatible mode: the plaintext fields plus <Encrypt>.
                    let inner = xml.trim_end();
                    match inner.rfind("</xml>") {
                        Some(pos) => format!(
                            "{}<Encrypt><![CDATA[{encrypt}]]></Encrypt></xml>",
                            &inner[..pos]
                        ),
                        None => inner.to_owned(),
                    }
                };
                (body.into_bytes(), true, Some(msg_signature))
            }
            _ => (bytes.to_vec(), false, None),
        };
        let mut extra = vec![("openid", openid)];
        if let Some(msg_signature) = &msg_signature {
            extra.push(("encrypt_type", "aes"));
            extra.push(("msg_signature", msg_signature));
        }
        Prepared {
            url: self.signed_url(timestamp, nonce, &extra),
            body,
            timestamp: timestamp.to_owned(),
            nonce: nonce.to_owned(),
            encrypted,
        }
    }

    /// Signs and sends `xml`, then verifies and decrypts the reply.
    pub async fn send(&self, xml: impl AsRef<[u8]>, openid: &str) -> Result<Exchange, SimError> {
        let prepared = self.prepare(xml, openid);
        self.send_prepared(&prepared).await
    }

    /// Sends a prepared request (send it again to play a WeChat retry).
    pub async fn send_prepared(&self, prepared: &Prepared) -> Result<Exchange, SimError> {
        let response = self
            .client
            .post(&prepared.url)
            .header("content-type", "text/xml")
            .body(prepared.body.clone())
            .send()
            .await?;
        let status = response.status().as_u16();
        let body = response.text().await?;
        if status != 200 {
            return Ok(Exchange {
                status,
                body,
                encrypted: false,
                reply_xml: None,
                reply: None,
            });
        }
        let (reply_xml, encrypted) = self.open_reply(&body)?;
        let reply = Reply::parse(reply_xml.as_deref().unwrap_or("success"))?;
        Ok(Exchange {
            status,
            body,
            encrypted,
            reply_xml,
            reply: Some(reply),
        })
    }

    /// Verifies the URL as WeChat does when the server is configured: GET with `echostr`.
    /// Returns the status and whether the body echoed `echostr` exactly.
    pub async fn verify_url(&self) -> Result<(u16, bool), SimError> {
        let echostr = format!("{}", rand::rng().random::<u64>());
        let url = self.signed_url(
            &unix_now().to_string(),
            &random_nonce(),
            &[("echostr", &echostr)],
        );
        let response = self.client.get(url).send().await?;
        let status = response.status().as_u16();
        let body = response.text().await?;
        Ok((status, body == echostr))
    }

    /// The reply XML inside a response body: decrypted and signature-checked when it is an
    /// envelope; `None` for `success`.
    pub fn open_reply(&self, body: &str) -> Result<(Option<String>, bool), SimError> {
        let trimmed = body.trim();
        if trimmed.is_empty() || trimmed == "success" {
            return Ok((None, false));
        }
        let root = crate::wechat::xml::parse_str(trimmed).map_err(ParseError::from)?;
        let Some(encrypt) = root.text_of("Encrypt") else {
            return Ok((Some(trimmed.to_owned()), false));
        };
        let crypt = self.crypt.as_ref().ok_or_else(|| {
            SimError::Envelope("encrypted reply but no EncodingAESKey configured".into())
        })?;
        let field = |name: &str| {
            root.text_of(name)
                .map(str::to_owned)
                .ok_or_else(|| SimError::Envelope(format!("missing <{name}>")))
        };
        let signature = field("MsgSignature")?;
        let timestamp = field("TimeStamp")?;
        let nonce = field("Nonce")?;
        let decrypted = crypt
            .verify_and_decrypt(&timestamp, &nonce, &signature, encrypt)
            .map_err(|e| match e {
                CryptoError::Signature => SimError::Envelope("MsgSignature does not match".into()),
                other => SimError::Decrypt(other),
            })?;
        let xml = String::from_utf8(decrypted.xml)
            .map_err(|_| SimError::Envelope("decrypted reply is not UTF-8".into()))?;
        Ok((Some(xml), true))
    }
}

/// A readable one-line-per-field description of a reply.
pub fn describe_reply(reply: &Reply) -> String {
    match reply {
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

fn lossy<S: serde::Serializer>(body: &[u8], s: S) -> Result<S::Ok, S::Error> {
    s.serialize_str(&String::from_utf8_lossy(body))
}

fn random_nonce() -> String {
    rand::rng()
        .random_range(100_000_000u64..10_000_000_000)
        .to_string()
}

/// `ToUserName` of a message XML, for the safe-mode envelope.
fn to_user_name(xml: &str) -> String {
    crate::wechat::xml::parse_str(xml)
        .ok()
        .and_then(|root| root.text_of("ToUserName").map(str::to_owned))
        .unwrap_or_default()
}
