//! Push keys, push ids and topic names: what they look like and how they are made.
//!
//! A key is a secret of letters and digits (the strictest client checks in use accept only
//! `[A-Za-z0-9]`), at least [`MIN_KEY_LEN`] long. It is looked up by its SHA-256, so the
//! lookup does not compare the secret itself.

use rand::RngExt;
use rand::distr::Alphanumeric;
use sha2::{Digest, Sha256};

/// The shortest key accepted.
pub const MIN_KEY_LEN: usize = 24;
/// The longest key accepted.
pub const MAX_KEY_LEN: usize = 64;
/// The length of generated keys.
pub const KEY_LEN: usize = 32;
/// The length of push ids (about 131 bits).
pub const PUSH_ID_LEN: usize = 22;
/// What app tokens start with (WxPusher's `appToken`s do, and its clients check it).
pub const APP_TOKEN_PREFIX: &str = "AT_";
/// What a follower's personal key may be prefixed with where WxPusher's simple push
/// (`SPT_…`) is spoken; the key itself has no prefix.
pub const SPT_PREFIX: &str = "SPT_";

/// A fresh key: [`KEY_LEN`] letters and digits.
pub fn generate_key() -> String {
    random_alphanumeric(KEY_LEN)
}

/// A fresh, unguessable push id (also the detail page's address).
pub fn generate_push_id() -> String {
    random_alphanumeric(PUSH_ID_LEN)
}

/// A fresh app token: [`APP_TOKEN_PREFIX`] and [`KEY_LEN`] letters and digits.
pub fn generate_app_token() -> String {
    format!("{APP_TOKEN_PREFIX}{}", random_alphanumeric(KEY_LEN))
}

/// `len` random letters and digits.
pub fn random_alphanumeric(len: usize) -> String {
    rand::rng()
        .sample_iter(Alphanumeric)
        .take(len)
        .map(char::from)
        .collect()
}

/// Whether `key` has the shape of a key: letters and digits, or an app token
/// ([`APP_TOKEN_PREFIX`] and letters and digits).
pub fn valid_key(key: &str) -> bool {
    let bare = key.strip_prefix(APP_TOKEN_PREFIX).unwrap_or(key);
    (MIN_KEY_LEN..=MAX_KEY_LEN).contains(&bare.len())
        && bare.bytes().all(|b| b.is_ascii_alphanumeric())
}

/// Whether `id` has the shape of a push id.
pub fn valid_push_id(id: &str) -> bool {
    id.len() == PUSH_ID_LEN && id.bytes().all(|b| b.is_ascii_alphanumeric())
}

/// The stored lookup hash of a key.
pub fn key_hash(key: &str) -> String {
    hex::encode(Sha256::digest(key.as_bytes()))
}

/// Whether `name` can name a topic: 1-64 of `[-_A-Za-z0-9]` (the topic names ntfy clients
/// accept).
pub fn valid_topic(name: &str) -> bool {
    (1..=64).contains(&name.len())
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
}

/// Whether `openid` looks like an OpenID (WeChat's are 28 characters of `[-_A-Za-z0-9]`;
/// the emulator's and test accounts' vary, so only the alphabet and a bound are checked).
pub fn valid_openid(openid: &str) -> bool {
    (1..=128).contains(&openid.len())
        && openid
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn generated_keys_and_ids_have_their_shape() {
        let key = generate_key();
        assert!(valid_key(&key), "{key}");
        assert_ne!(key, generate_key());
        let id = generate_push_id();
        assert!(valid_push_id(&id), "{id}");
        let token = generate_app_token();
        assert!(token.starts_with("AT_") && valid_key(&token), "{token}");
    }

    #[test]
    fn key_shape() {
        assert!(!valid_key("short"));
        assert!(!valid_key(&"a".repeat(23)));
        assert!(valid_key(&"a".repeat(24)));
        assert!(!valid_key(&format!("{}-", "a".repeat(24))));
        assert!(!valid_key(&"a".repeat(65)));
        assert_eq!(key_hash("abc").len(), 64);
    }

    #[test]
    fn topic_and_openid_shape() {
        assert!(valid_topic("ops"));
        assert!(valid_topic("deploy-status_2"));
        assert!(!valid_topic(""));
        assert!(!valid_topic("a b"));
        assert!(!valid_topic("运维"));
        assert!(!valid_topic(&"a".repeat(65)));
        assert!(valid_openid("oXyZ-_123"));
        assert!(!valid_openid("o 1"));
    }
}
