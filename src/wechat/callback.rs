//! One callback exchange, start to finish, without I/O: verify the query, decrypt when the
//! mode says so, parse; then render and (if the request was encrypted) encrypt the reply.
//! The HTTP edge and the benchmarks' reference handler both call this, so they do the same
//! protocol work.

use std::sync::Arc;

use serde::{Deserialize, Serialize};

use super::crypto::{CryptoError, MsgCrypt};
use super::message::{Message, ParseError};
use super::reply::{RenderNote, Reply};
use super::signature::{self, CallbackQuery, VerifyError};
use super::xml;

/// The account's message encryption mode (`[wechat] mode`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Mode {
    /// 明文模式: plaintext bodies; no EncodingAESKey needed.
    #[default]
    Plain,
    /// 兼容模式: plaintext fields plus `<Encrypt>`; the encrypted part is used when
    /// `encrypt_type=aes`, and replies are encrypted in turn.
    Compatible,
    /// 安全模式: only `<Encrypt>`; a plaintext body is refused.
    Safe,
}

impl Mode {
    /// The mode's config spelling.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Plain => "plain",
            Self::Compatible => "compatible",
            Self::Safe => "safe",
        }
    }
}

/// Why a callback request was refused. The HTTP status each maps to is given per variant.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum CallbackError {
    /// `signature` missing, wrong or stale. HTTP 403.
    #[error("refused: {0}")]
    Verify(#[from] VerifyError),
    /// Safe mode received a request without `encrypt_type=aes`. HTTP 403.
    #[error("refused: safe mode does not accept a plaintext body (no encrypt_type=aes)")]
    PlaintextRefused,
    /// `msg_signature` missing on an encrypted request. HTTP 403.
    #[error("refused: missing query parameter `msg_signature`")]
    MissingMsgSignature,
    /// Decryption failed; `-40001` (signature) answers 403, the rest 400.
    #[error(transparent)]
    Crypto(#[from] CryptoError),
    /// The (decrypted) body is not a message. HTTP 400.
    #[error("bad message: {0}")]
    Parse(#[from] ParseError),
    /// This signature's (timestamp, nonce) came before with a different body: a replayed
    /// signature carrying a forged body. HTTP 403.
    #[error("refused: this signature was already used with a different body")]
    Replayed,
    /// The request is encrypted (`encrypt_type=aes`, no plaintext fields) but `[wechat] mode`
    /// is `plain`: a setup mistake worth naming. HTTP 400.
    #[error(
        "the request is encrypted (encrypt_type=aes) but [wechat] mode = \"plain\": set mode, \
         encoding_aes_key and app_id to match the WeChat console"
    )]
    EncryptedButPlainMode,
    /// GET without `echostr`. HTTP 400.
    #[error("missing query parameter `echostr`")]
    MissingEchostr,
}

impl CallbackError {
    /// Whether the request failed authentication (answer 403) rather than being malformed (400).
    pub fn is_forbidden(&self) -> bool {
        matches!(
            self,
            Self::Verify(_)
                | Self::Replayed
                | Self::PlaintextRefused
                | Self::MissingMsgSignature
                | Self::Crypto(CryptoError::Signature)
        )
    }
}

/// A verified, decrypted, parsed inbound message and how to answer it.
#[derive(Debug, Clone)]
pub struct Inbound {
    /// The message (shared with the handlers that see it).
    pub message: Arc<Message>,
    /// `Some(app id)` when the request was encrypted: the reply must be encrypted for it.
    pub encrypted_for: Option<String>,
}

/// A sealed reply body, ready for the wire.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Sealed {
    /// The body: reply XML, the encrypted envelope, or `success`.
    pub body: String,
    /// Whether `body` is the encrypted envelope.
    pub encrypted: bool,
    /// Adjustments rendering made, for the log.
    pub notes: Vec<RenderNote>,
}

/// The callback protocol for one account.
#[derive(Clone)]
pub struct Protocol {
    token: String,
    mode: Mode,
    crypt: Option<MsgCrypt>,
    max_skew_secs: u64,
}

impl std::fmt::Debug for Protocol {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // Never print the token.
        f.debug_struct("Protocol")
            .field("mode", &self.mode)
            .field("crypt", &self.crypt)
            .field("max_skew_secs", &self.max_skew_secs)
            .finish_non_exhaustive()
    }
}

impl Protocol {
    /// Plain mode: signatures only.
    pub fn plain(token: &str, max_skew_secs: u64) -> Self {
        Self {
            token: token.to_owned(),
            mode: Mode::Plain,
            crypt: None,
            max_skew_secs,
        }
    }

    /// Compatible or safe mode (or plain with a key, which then only signs).
    pub fn with_crypt(mode: Mode, crypt: MsgCrypt, token: &str, max_skew_secs: u64) -> Self {
        Self {
            token: token.to_owned(),
            mode,
            crypt: Some(crypt),
            max_skew_secs,
        }
    }

    /// The configured mode.
    pub fn mode(&self) -> Mode {
        self.mode
    }

    /// `[wechat] max_clock_skew_secs`.
    pub fn max_skew_secs(&self) -> u64 {
        self.max_skew_secs
    }

    /// The crypt state, when a key is configured.
    pub fn crypt(&self) -> Option<&MsgCrypt> {
        self.crypt.as_ref()
    }

    /// GET verification: the `echostr` to answer, verbatim.
    pub fn verify_echo<'q>(
        &self,
        query: &'q CallbackQuery,
        now: i64,
    ) -> Result<&'q str, CallbackError> {
        signature::verify_request(&self.token, query, now, self.max_skew_secs)?;
        query
            .echostr
            .as_deref()
            .ok_or(CallbackError::MissingEchostr)
    }

    /// Verifies the query signature only: cheap, done before the body is read.
    pub fn verify_query(&self, query: &CallbackQuery, now: i64) -> Result<(), CallbackError> {
        signature::verify_request(&self.token, query, now, self.max_skew_secs)?;
        if self.mode == Mode::Safe && !query.is_encrypted() {
            return Err(CallbackError::PlaintextRefused);
        }
        Ok(())
    }

    /// Opens a POST body whose query already passed [`Protocol::verify_query`].
    pub fn open(&self, query: &CallbackQuery, body: &[u8]) -> Result<Inbound, CallbackError> {
        let crypt = match (&self.crypt, self.mode) {
            (Some(crypt), Mode::Safe | Mode::Compatible) if query.is_encrypted() => crypt,
            (_, Mode::Safe) => return Err(CallbackError::PlaintextRefused),
            _ => {
                let message = match Message::parse(body) {
                    Ok(message) => message,
                    // A safe-mode envelope reaching a plain-mode server: say so.
                    Err(ParseError::Missing(_))
                        if self.mode == Mode::Plain && query.is_encrypted() =>
                    {
                        return Err(CallbackError::EncryptedButPlainMode);
                    }
                    Err(e) => return Err(e.into()),
                };
                return Ok(Inbound {
                    message: Arc::new(message),
                    encrypted_for: None,
                });
            }
        };
        let msg_signature = query
            .msg_signature
            .as_deref()
            .ok_or(CallbackError::MissingMsgSignature)?;
        let envelope = xml::parse(body).map_err(|e| CryptoError::ParseXml(e.to_string()))?;
        let encrypt = envelope
            .text_of("Encrypt")
            .map(str::trim)
            .filter(|e| !e.is_empty())
            .ok_or_else(|| CryptoError::ParseXml("the body has no <Encrypt> element".into()))?;
        // verify_query ran, so these are present.
        let timestamp = query.timestamp.as_deref().unwrap_or_default();
        let nonce = query.nonce.as_deref().unwrap_or_default();
        let decrypted = crypt.verify_and_decrypt(timestamp, nonce, msg_signature, encrypt)?;
        Ok(Inbound {
            message: Arc::new(Message::parse(&decrypted.xml)?),
            encrypted_for: Some(decrypted.app_id),
        })
    }

    /// Verifies and opens in one step (the benchmark and simple embedders).
    pub fn receive(
        &self,
        query: &CallbackQuery,
        body: &[u8],
        now: i64,
    ) -> Result<Inbound, CallbackError> {
        self.verify_query(query, now)?;
        self.open(query, body)
    }

    /// Renders `reply` to `inbound` and encrypts it when the request was encrypted. `success`
    /// is never encrypted (WeChat accepts it bare in every mode).
    pub fn seal(
        &self,
        inbound: &Inbound,
        reply: &Reply,
        query: &CallbackQuery,
        now: i64,
    ) -> Sealed {
        let rendered = reply.render_for(&inbound.message, now);
        let Some(xml) = rendered.xml else {
            return Sealed {
                body: "success".to_owned(),
                encrypted: false,
                notes: rendered.notes,
            };
        };
        match (&self.crypt, &inbound.encrypted_for) {
            (Some(crypt), Some(app_id)) => {
                // Reusing the request's timestamp and nonce is accepted by WeChat.
                let timestamp = query.timestamp.as_deref().unwrap_or_default();
                let nonce = query.nonce.as_deref().unwrap_or_default();
                Sealed {
                    body: crypt.encrypt_reply(&xml, app_id, timestamp, nonce),
                    encrypted: true,
                    notes: rendered.notes,
                }
            }
            _ => Sealed {
                body: xml,
                encrypted: false,
                notes: rendered.notes,
            },
        }
    }
}
