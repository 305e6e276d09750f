//! A stand-in for WeChat's server: builds a message of any type, signs it (and encrypts it in
//! safe and compatible mode), posts it to a running huixin, verifies and decrypts the reply.
//! `huixin simulate` is its command-line face; the integration tests play WeChat with it.

use rand::RngExt;

mod spec;
pub mod trial;

pub use spec::{Header, MessageSpec};

use crate::support::clock::unix_now;
use crate::wechat::reply::ParsedReply;
use crate::wechat::signature::sign;
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
    /// The reply is one WeChat would refuse: not encrypted although the request was, or not
    /// addressed back to the sender.
    #[error("WeChat would refuse this reply: {0}")]
    Refused(String),
    /// The message file could not be read.
    #[error("cannot read {path}: {source}")]
    File {
        /// The path given.
        path: String,
        /// The OS error.
        source: std::io::Error,
    },
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
    /// `FromUserName` of the message (the reply must go back to it).
    pub from_user: String,
    /// `ToUserName` of the message (the reply must come from it).
    pub to_user: String,
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
        let header = crate::wechat::xml::parse_str(&xml).ok();
        let field = |name: &str| {
            header
                .as_ref()
                .and_then(|root| root.text_of(name))
                .unwrap_or_default()
                .to_owned()
        };
        Prepared {
            from_user: field("FromUserName"),
            to_user: field("ToUserName"),
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
        if reply.reply != Reply::Success {
            if prepared.encrypted && !encrypted {
                return Err(SimError::Refused(
                    "the request was encrypted, the reply is not".into(),
                ));
            }
            if reply.to != prepared.from_user || reply.from != prepared.to_user {
                return Err(SimError::Refused(format!(
                    "reply goes from {:?} to {:?}, expected from {:?} to {:?}",
                    reply.from, reply.to, prepared.to_user, prepared.from_user
                )));
            }
        }
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
