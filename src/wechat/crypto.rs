//! Safe-mode message encryption (reference §2): AES-256-CBC keyed by the EncodingAESKey, IV =
//! the key's first 16 bytes, PKCS#7 padding to a multiple of **32** bytes, plaintext laid out as
//! `random(16) | len(4, big-endian) | xml | appid`.
//!
//! Every failure is a distinct [`CryptoError`] carrying the code Tencent's WXBizMsgCrypt uses
//! for it, so a log line names exactly what went wrong.

use aes::Aes256;
use aes::cipher::{
    BlockModeDecrypt, BlockModeEncrypt, InnerIvInit, KeyInit, block_padding::NoPadding,
};
use base64::Engine;
use base64::engine::general_purpose::STANDARD as B64;

use super::signature;

/// The block size WeChat pads to: 32 bytes, not AES's 16.
const PAD_BLOCK: usize = 32;

/// Why an encrypted message (or the key) was refused. The code mirrors WXBizMsgCrypt.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum CryptoError {
    /// -40001 ValidateSignatureError: `msg_signature` does not match. HTTP 403.
    #[error("-40001 ValidateSignatureError: msg_signature does not match the Encrypt payload")]
    Signature,
    /// -40002 ParseXmlError: the envelope has no usable `<Encrypt>`. HTTP 400.
    #[error("-40002 ParseXmlError: {0}")]
    ParseXml(String),
    /// -40004 IllegalAesKey: the EncodingAESKey is not 43 base64 characters. Config error.
    #[error("-40004 IllegalAesKey: {0}")]
    IllegalAesKey(&'static str),
    /// -40005 ValidateAppidError: the trailing app id is not one we serve. HTTP 400.
    #[error("-40005 ValidateAppidError: message is addressed to app id {found:?}")]
    AppId {
        /// The app id found after the message (truncated for the log).
        found: String,
    },
    /// -40007 DecryptAESError: bad ciphertext length or bad padding. HTTP 400.
    #[error("-40007 DecryptAESError: {0}")]
    Decrypt(&'static str),
    /// -40008 IllegalBuffer: the length prefix does not fit the decrypted buffer. HTTP 400.
    #[error("-40008 IllegalBuffer: {0}")]
    IllegalBuffer(&'static str),
    /// -40010 DecodeBase64Error: `Encrypt` is not valid base64. HTTP 400.
    #[error("-40010 DecodeBase64Error: Encrypt is not valid base64")]
    Base64,
}

impl CryptoError {
    /// The WXBizMsgCrypt error code this failure mirrors.
    pub fn code(&self) -> i32 {
        match self {
            Self::Signature => -40001,
            Self::ParseXml(_) => -40002,
            Self::IllegalAesKey(_) => -40004,
            Self::AppId { .. } => -40005,
            Self::Decrypt(_) => -40007,
            Self::IllegalBuffer(_) => -40008,
            Self::Base64 => -40010,
        }
    }
}

/// A decrypted message: the XML and the app id it was addressed to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Decrypted {
    /// The inner XML as bytes (parsed later; not trusted to be UTF-8).
    pub xml: Vec<u8>,
    /// The app id that trailed the message; one of the configured ids.
    pub app_id: String,
}

/// The account's encryption state: key schedule, IV, token and the app ids it accepts.
#[derive(Clone)]
pub struct MsgCrypt {
    token: String,
    cipher: Aes256,
    iv: [u8; 16],
    /// The configured `app_id` first, then any extra ids (third-party platforms).
    app_ids: Vec<String>,
}

impl std::fmt::Debug for MsgCrypt {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // Never print the key or the token.
        f.debug_struct("MsgCrypt")
            .field("app_ids", &self.app_ids)
            .finish_non_exhaustive()
    }
}

/// Decodes a 43-character EncodingAESKey into the 32-byte AES key.
pub fn decode_aes_key(encoding_aes_key: &str) -> Result<[u8; 32], CryptoError> {
    if encoding_aes_key.len() != 43 {
        return Err(CryptoError::IllegalAesKey(
            "EncodingAESKey must be 43 characters long",
        ));
    }
    if !encoding_aes_key.bytes().all(|b| b.is_ascii_alphanumeric()) {
        return Err(CryptoError::IllegalAesKey(
            "EncodingAESKey must be letters and digits only",
        ));
    }
    // 43 base64 chars carry 258 bits; the last char's low 2 bits are padding WeChat does not
    // keep canonical, so decode leniently about trailing bits.
    let engine = base64::engine::GeneralPurpose::new(
        &base64::alphabet::STANDARD,
        base64::engine::GeneralPurposeConfig::new().with_decode_allow_trailing_bits(true),
    );
    let bytes = engine
        .decode(format!("{encoding_aes_key}="))
        .map_err(|_| CryptoError::IllegalAesKey("EncodingAESKey is not valid base64"))?;
    bytes
        .try_into()
        .map_err(|_| CryptoError::IllegalAesKey("EncodingAESKey does not decode to 32 bytes"))
}

impl MsgCrypt {
    /// Builds the crypt state. `app_id` is the account's own id; `extra_app_ids` are further
    /// ids accepted on inbound messages (a third-party platform's component app id).
    pub fn new(
        token: &str,
        encoding_aes_key: &str,
        app_id: &str,
        extra_app_ids: &[String],
    ) -> Result<Self, CryptoError> {
        let key = decode_aes_key(encoding_aes_key)?;
        let cipher = Aes256::new_from_slice(&key)
            .map_err(|_| CryptoError::IllegalAesKey("AES key must be 32 bytes"))?;
        let mut iv = [0u8; 16];
        iv.copy_from_slice(&key[..16]);
        let mut app_ids = vec![app_id.to_owned()];
        app_ids.extend(extra_app_ids.iter().filter(|id| !id.is_empty()).cloned());
        Ok(Self {
            token: token.to_owned(),
            cipher,
            iv,
            app_ids,
        })
    }

    /// The account's own app id (used when encrypting replies that answer nothing).
    pub fn app_id(&self) -> &str {
        &self.app_ids[0]
    }

    /// `msg_signature` for an `Encrypt` payload.
    pub fn msg_signature(&self, timestamp: &str, nonce: &str, encrypt: &str) -> String {
        signature::sign(&[&self.token, timestamp, nonce, encrypt])
    }

    /// Checks `msg_signature` (constant time), then decrypts. Nothing is decrypted for a
    /// request that is not signed: no padding oracle is reachable without the token.
    pub fn verify_and_decrypt(
        &self,
        timestamp: &str,
        nonce: &str,
        msg_signature: &str,
        encrypt: &str,
    ) -> Result<Decrypted, CryptoError> {
        if !signature::matches(&[&self.token, timestamp, nonce, encrypt], msg_signature) {
            return Err(CryptoError::Signature);
        }
        self.decrypt(encrypt)
    }

    /// Decrypts an `Encrypt` payload and checks padding, length prefix and app id.
    pub fn decrypt(&self, encrypt: &str) -> Result<Decrypted, CryptoError> {
        let mut buf = B64
            .decode(encrypt.trim().as_bytes())
            .map_err(|_| CryptoError::Base64)?;
        if buf.is_empty() || buf.len() % 16 != 0 {
            return Err(CryptoError::Decrypt(
                "ciphertext length is not a positive multiple of 16",
            ));
        }
        let plain_len = {
            let dec = cbc::Decryptor::<Aes256>::inner_iv_init(self.cipher.clone(), &self.iv.into());
            dec.decrypt_padded::<NoPadding>(&mut buf)
                .map_err(|_| CryptoError::Decrypt("block decryption failed"))?
                .len()
        };
        buf.truncate(plain_len);
        let unpadded = unpad32(&buf)?;
        if unpadded < 20 {
            return Err(CryptoError::IllegalBuffer(
                "plaintext shorter than its 20-byte header",
            ));
        }
        let n = u32::from_be_bytes([buf[16], buf[17], buf[18], buf[19]]) as usize;
        let rest = unpadded - 20;
        if n > rest {
            return Err(CryptoError::IllegalBuffer(
                "length prefix exceeds the decrypted data",
            ));
        }
        let app_id = &buf[20 + n..unpadded];
        let Some(found) = self.app_ids.iter().find(|id| id.as_bytes() == app_id) else {
            return Err(CryptoError::AppId {
                found: String::from_utf8_lossy(app_id).chars().take(64).collect(),
            });
        };
        let app_id = found.clone();
        buf.truncate(20 + n);
        buf.drain(..20);
        Ok(Decrypted { xml: buf, app_id })
    }

    /// Encrypts `xml` for `app_id` with a fresh random 16-byte prefix.
    pub fn encrypt(&self, xml: &[u8], app_id: &str) -> String {
        let mut random = [0u8; 16];
        rand::fill(&mut random);
        self.encrypt_with_prefix(&random, xml, app_id)
    }

    /// Encrypts with a given prefix: deterministic, for known-answer tests.
    pub fn encrypt_with_prefix(&self, random: &[u8; 16], xml: &[u8], app_id: &str) -> String {
        let body_len = 16 + 4 + xml.len() + app_id.len();
        let pad = PAD_BLOCK - body_len % PAD_BLOCK;
        let mut buf = Vec::with_capacity(body_len + pad);
        buf.extend_from_slice(random);
        // The protocol's length field is 32 bits; a body limit far below 4 GiB keeps this exact.
        buf.extend_from_slice(&(xml.len() as u32).to_be_bytes());
        buf.extend_from_slice(xml);
        buf.extend_from_slice(app_id.as_bytes());
        buf.resize(body_len + pad, pad as u8);
        let enc = cbc::Encryptor::<Aes256>::inner_iv_init(self.cipher.clone(), &self.iv.into());
        let len = buf.len();
        let ct = enc
            .encrypt_padded::<NoPadding>(&mut buf, len)
            .expect("the buffer is padded to a multiple of 32, so NoPadding cannot fail");
        B64.encode(ct)
    }

    /// The encrypted reply envelope for `reply_xml`:
    /// `<xml><Encrypt/><MsgSignature/><TimeStamp/><Nonce/></xml>`.
    pub fn encrypt_reply(
        &self,
        reply_xml: &str,
        app_id: &str,
        timestamp: &str,
        nonce: &str,
    ) -> String {
        let encrypt = self.encrypt(reply_xml.as_bytes(), app_id);
        self.envelope(&encrypt, timestamp, nonce)
    }

    /// Wraps an `Encrypt` payload with its signature, timestamp and nonce.
    pub fn envelope(&self, encrypt: &str, timestamp: &str, nonce: &str) -> String {
        let sig = self.msg_signature(timestamp, nonce, encrypt);
        let mut out = String::with_capacity(encrypt.len() + 200);
        out.push_str("<xml><Encrypt>");
        super::xml::push_cdata(&mut out, encrypt);
        out.push_str("</Encrypt><MsgSignature>");
        super::xml::push_cdata(&mut out, &sig);
        out.push_str("</MsgSignature><TimeStamp>");
        super::xml::push_cdata(&mut out, timestamp);
        out.push_str("</TimeStamp><Nonce>");
        super::xml::push_cdata(&mut out, nonce);
        out.push_str("</Nonce></xml>");
        out
    }
}

/// Length of `buf` without its PKCS#7 padding, block size 32. Every pad byte must equal the
/// pad length, which must be 1..=32.
fn unpad32(buf: &[u8]) -> Result<usize, CryptoError> {
    let Some(&last) = buf.last() else {
        return Err(CryptoError::Decrypt("empty plaintext"));
    };
    let pad = last as usize;
    if pad == 0 || pad > PAD_BLOCK || pad > buf.len() {
        return Err(CryptoError::Decrypt("invalid PKCS#7 pad length"));
    }
    if buf[buf.len() - pad..].iter().any(|&b| b != last) {
        return Err(CryptoError::Decrypt("PKCS#7 pad bytes are inconsistent"));
    }
    Ok(buf.len() - pad)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn unpad_checks_every_byte() {
        let mut block = vec![b'a'; 28];
        block.extend_from_slice(&[4, 4, 4, 4]);
        assert_eq!(unpad32(&block), Ok(28));
        block[29] = 3;
        assert!(matches!(unpad32(&block), Err(CryptoError::Decrypt(_))));
        assert!(unpad32(&[0u8; 32]).is_err());
        assert!(unpad32(&[33u8; 64]).is_err());
        assert_eq!(unpad32(&[32u8; 32]), Ok(0));
    }

    #[test]
    fn bad_keys_are_named() {
        assert!(matches!(
            decode_aes_key("short"),
            Err(CryptoError::IllegalAesKey(_))
        ));
        assert!(matches!(
            decode_aes_key("abcdefghijklmnopqrstuvwxyz0123456789ABCDEF+"),
            Err(CryptoError::IllegalAesKey(_))
        ));
        assert!(decode_aes_key("abcdefghijklmnopqrstuvwxyz0123456789ABCDEFG").is_ok());
    }
}
