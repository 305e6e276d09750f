//! Callback signatures (reference §1): `signature` is SHA-1 over the sorted, concatenated
//! (token, timestamp, nonce); `msg_signature` adds the `Encrypt` payload to the sorted set.
//! Comparisons run in constant time; a skew window refuses stale timestamps.

use serde::Deserialize;
use sha1::{Digest, Sha1};
use subtle::ConstantTimeEq;

/// The query string WeChat puts on every callback request. Every field is optional here so a
/// request missing one is refused with a clear [`VerifyError`], not a framework rejection.
#[derive(Debug, Clone, Default, Deserialize)]
pub struct CallbackQuery {
    /// `signature`: SHA-1 over (token, timestamp, nonce).
    pub signature: Option<String>,
    /// `timestamp`: seconds since the epoch, as sent.
    pub timestamp: Option<String>,
    /// `nonce`: a random string.
    pub nonce: Option<String>,
    /// `echostr`: present only on the GET verification request; echoed back verbatim.
    pub echostr: Option<String>,
    /// `openid`: the sender's OpenID on POSTs (informational; the body is authoritative).
    pub openid: Option<String>,
    /// `encrypt_type`: `aes` when the body carries an `Encrypt` element to use.
    pub encrypt_type: Option<String>,
    /// `msg_signature`: SHA-1 over (token, timestamp, nonce, Encrypt) in safe and compatible mode.
    pub msg_signature: Option<String>,
}

impl CallbackQuery {
    /// Whether WeChat asks us to use the encrypted payload (`encrypt_type=aes`).
    pub fn is_encrypted(&self) -> bool {
        self.encrypt_type
            .as_deref()
            .is_some_and(|t| t.eq_ignore_ascii_case("aes"))
    }
}

/// Why a request's signature was refused. Every variant answers HTTP 403 and runs nothing.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum VerifyError {
    /// A required query parameter is absent.
    #[error("missing query parameter `{0}`")]
    Missing(&'static str),
    /// `signature` does not match (token, timestamp, nonce): wrong token, or not from WeChat.
    #[error("signature mismatch (check that [wechat] token matches the one set in WeChat)")]
    Signature,
    /// `timestamp` is not an integer.
    #[error("timestamp {0:?} is not an integer")]
    Timestamp(String),
    /// `timestamp` lies outside the allowed skew window: a replayed or delayed request.
    #[error("timestamp {timestamp} is {skew}s away from now, outside the {max}s window")]
    Stale {
        /// The request's timestamp.
        timestamp: i64,
        /// Its distance from our clock, in seconds.
        skew: u64,
        /// The configured window (`[wechat] max_clock_skew_secs`).
        max: u64,
    },
}

/// Lowercase hex SHA-1 of the parts sorted lexicographically (by bytes) and concatenated.
pub fn sign(parts: &[&str]) -> String {
    let mut sorted: Vec<&str> = parts.to_vec();
    sorted.sort_unstable();
    let mut hasher = Sha1::new();
    for part in sorted {
        hasher.update(part.as_bytes());
    }
    hex::encode(hasher.finalize())
}

/// Whether `given` equals the signature of `parts`, compared in constant time. Hex case is
/// ignored: some proxies upper-case it.
pub fn matches(parts: &[&str], given: &str) -> bool {
    let expected = sign(parts);
    let given = given.trim().to_ascii_lowercase();
    expected.as_bytes().ct_eq(given.as_bytes()).into()
}

/// Checks `signature`, then the timestamp against `now` (seconds). `max_skew_secs == 0`
/// disables the skew check.
pub fn verify_request(
    token: &str,
    query: &CallbackQuery,
    now: i64,
    max_skew_secs: u64,
) -> Result<(), VerifyError> {
    let signature = query
        .signature
        .as_deref()
        .ok_or(VerifyError::Missing("signature"))?;
    let timestamp = query
        .timestamp
        .as_deref()
        .ok_or(VerifyError::Missing("timestamp"))?;
    let nonce = query
        .nonce
        .as_deref()
        .ok_or(VerifyError::Missing("nonce"))?;
    if !matches(&[token, timestamp, nonce], signature) {
        return Err(VerifyError::Signature);
    }
    check_timestamp(timestamp, now, max_skew_secs)
}

/// Refuses a timestamp further than `max_skew_secs` from `now`; 0 disables the check.
pub fn check_timestamp(timestamp: &str, now: i64, max_skew_secs: u64) -> Result<(), VerifyError> {
    if max_skew_secs == 0 {
        return Ok(());
    }
    let ts: i64 = timestamp
        .trim()
        .parse()
        .map_err(|_| VerifyError::Timestamp(timestamp.chars().take(32).collect()))?;
    let skew = ts.abs_diff(now);
    if skew > max_skew_secs {
        return Err(VerifyError::Stale {
            timestamp: ts,
            skew,
            max: max_skew_secs,
        });
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn known_answers() {
        // V1 and V2 plain signatures from the protocol reference.
        assert_eq!(
            sign(&["123456", "1411525903", "461056294"]),
            "6c729cc5480fab0c2e594b7e25a93d2dbef6ab97"
        );
        assert_eq!(
            sign(&["pamtest", "1409304348", "xxxxxx"]),
            "76480565cbe296026c53aaacd1ad523a1ddba24f"
        );
    }

    #[test]
    fn matches_is_exact_but_case_blind() {
        let parts = ["pamtest", "1409304348", "xxxxxx"];
        assert!(matches(&parts, "76480565cbe296026c53aaacd1ad523a1ddba24f"));
        assert!(matches(&parts, "76480565CBE296026C53AAACD1AD523A1DDBA24F"));
        assert!(!matches(&parts, "76480565cbe296026c53aaacd1ad523a1ddba24e"));
        assert!(!matches(&parts, "76480565cbe296026c53aaacd1ad523a1ddba24"));
        assert!(!matches(&parts, ""));
    }

    #[test]
    fn skew_window() {
        assert!(check_timestamp("1000", 1300, 300).is_ok());
        assert!(check_timestamp("1000", 700, 300).is_ok());
        assert!(matches!(
            check_timestamp("1000", 1301, 300),
            Err(VerifyError::Stale { skew: 301, .. })
        ));
        assert!(check_timestamp("1000", 999_999, 0).is_ok());
        assert!(matches!(
            check_timestamp("soon", 1000, 300),
            Err(VerifyError::Timestamp(_))
        ));
    }

    #[test]
    fn verify_request_reports_missing_parts() {
        let q = CallbackQuery::default();
        assert_eq!(
            verify_request("t", &q, 0, 0),
            Err(VerifyError::Missing("signature"))
        );
    }
}
