//! The signature every webhook delivery carries, and its check for receivers written in Rust.
//!
//! `X-Huixin-Signature: sha256=<hex>` where `<hex>` is the lowercase hex HMAC-SHA256, keyed
//! with the endpoint's secret, of `"<timestamp>.<body>"`: the `X-Huixin-Timestamp` header's
//! text (Unix seconds of the attempt), a dot, and the body's bytes exactly as received. The
//! timestamp is signed so that a captured delivery cannot be replayed later: receivers refuse
//! timestamps too far from their clock.

use std::time::Duration;

use hmac::{Hmac, KeyInit, Mac};
use sha2::Sha256;
use subtle::ConstantTimeEq;

/// `Content-Type: application/json`.
pub const CONTENT_TYPE: &str = "application/json";
/// The event's name (`follow`, `message`, …).
pub const EVENT_HEADER: &str = "X-Huixin-Event";
/// The delivery's id, the same on every attempt: the receiver's idempotency key.
pub const DELIVERY_HEADER: &str = "X-Huixin-Delivery";
/// Unix seconds when this attempt was made; signed with the body.
pub const TIMESTAMP_HEADER: &str = "X-Huixin-Timestamp";
/// `sha256=<lowercase hex HMAC-SHA256(secret, "<timestamp>.<body>")>`.
pub const SIGNATURE_HEADER: &str = "X-Huixin-Signature";
/// What the signature header's value starts with.
pub const SIGNATURE_PREFIX: &str = "sha256=";
/// The tolerance receivers are advised to allow between a delivery's timestamp and their
/// clock.
pub const DEFAULT_TOLERANCE: Duration = Duration::from_secs(300);

/// The `X-Huixin-Signature` value of `body` sent at `timestamp` (Unix seconds):
/// `sha256=` and 64 lowercase hex digits.
pub fn sign(secret: &str, timestamp: i64, body: &[u8]) -> String {
    format!(
        "{SIGNATURE_PREFIX}{}",
        hex::encode(mac(secret, timestamp.to_string().as_bytes(), body))
    )
}

/// HMAC-SHA256 of `timestamp`, `.`, `body`.
fn mac(secret: &str, timestamp: &[u8], body: &[u8]) -> [u8; 32] {
    // HMAC takes keys of any length, so this cannot fail.
    let mut mac = <Hmac<Sha256> as KeyInit>::new_from_slice(secret.as_bytes())
        .unwrap_or_else(|_| unreachable!("HMAC accepts any key length"));
    mac.update(timestamp);
    mac.update(b".");
    mac.update(body);
    mac.finalize().into_bytes().into()
}

/// Why a delivery's signature was refused ([`verify`]).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum VerifyError {
    /// `X-Huixin-Timestamp` is not a number of seconds.
    #[error("the timestamp is not a number of seconds")]
    BadTimestamp,
    /// The timestamp is further from `now` than the tolerance: a replay, or a wrong clock.
    #[error("the timestamp is {skew_secs} s away from now (tolerance {tolerance_secs} s)")]
    Stale {
        /// How far, in seconds.
        skew_secs: u64,
        /// The tolerance, in seconds.
        tolerance_secs: u64,
    },
    /// `X-Huixin-Signature` is not `sha256=` and 64 hex digits.
    #[error("the signature header is not sha256=<64 hex digits>")]
    BadHeader,
    /// The signature does not match: another secret, or a changed body or timestamp.
    #[error("the signature does not match")]
    Mismatch,
}

/// Checks a delivery: `timestamp` and `header` are the `X-Huixin-Timestamp` and
/// `X-Huixin-Signature` headers as received, `body` the raw body, `now` the receiver's clock
/// (Unix seconds). The signature is compared in constant time.
///
/// ```
/// use std::time::Duration;
/// use huixin::webhooks::sign::{sign, verify};
///
/// let header = sign("whsec_test_0123456789", 1_700_000_000, b"{}");
/// let ok = verify("whsec_test_0123456789", "1700000000", b"{}", &header, 1_700_000_010,
///                 Duration::from_secs(300));
/// assert!(ok.is_ok());
/// ```
pub fn verify(
    secret: &str,
    timestamp: &str,
    body: &[u8],
    header: &str,
    now: i64,
    tolerance: Duration,
) -> Result<(), VerifyError> {
    let text = timestamp.trim();
    if text.is_empty() || !text.bytes().all(|b| b.is_ascii_digit()) {
        return Err(VerifyError::BadTimestamp);
    }
    let at: i64 = text.parse().map_err(|_| VerifyError::BadTimestamp)?;
    let skew_secs = now.abs_diff(at);
    if skew_secs > tolerance.as_secs() {
        return Err(VerifyError::Stale {
            skew_secs,
            tolerance_secs: tolerance.as_secs(),
        });
    }
    let hex_part = header
        .trim()
        .strip_prefix(SIGNATURE_PREFIX)
        .ok_or(VerifyError::BadHeader)?;
    let mut given = [0u8; 32];
    hex::decode_to_slice(hex_part, &mut given).map_err(|_| VerifyError::BadHeader)?;
    // The timestamp's own text is what was signed.
    let expected = mac(secret, text.as_bytes(), body);
    if bool::from(expected.ct_eq(&given)) {
        Ok(())
    } else {
        Err(VerifyError::Mismatch)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const SECRET: &str = "whsec_test_0123456789";
    const BODY: &[u8] = br#"{"event":"follow"}"#;

    #[test]
    fn known_answer() {
        // python3 -c 'import hmac, hashlib; print(hmac.new(b"whsec_test_0123456789",
        //   b"1700000000.{\"event\":\"follow\"}", hashlib.sha256).hexdigest())'
        // 68b59777e8cbc53a15a9842ddac20b0cc6cb8f3bda5b75ab698036365dc519a2
        assert_eq!(
            sign(SECRET, 1_700_000_000, BODY),
            "sha256=68b59777e8cbc53a15a9842ddac20b0cc6cb8f3bda5b75ab698036365dc519a2"
        );
    }

    #[test]
    fn a_signed_delivery_verifies_within_the_tolerance() {
        let header = sign(SECRET, 1_700_000_000, BODY);
        let tol = DEFAULT_TOLERANCE;
        assert_eq!(
            verify(SECRET, "1700000000", BODY, &header, 1_700_000_000, tol),
            Ok(())
        );
        assert_eq!(
            verify(SECRET, "1700000000", BODY, &header, 1_700_000_300, tol),
            Ok(())
        );
        assert_eq!(
            verify(SECRET, "1700000000", BODY, &header, 1_699_999_700, tol),
            Ok(())
        );
        // Upper-case hex is the same signature.
        let upper = format!("sha256={}", header["sha256=".len()..].to_uppercase());
        assert_eq!(
            verify(SECRET, "1700000000", BODY, &upper, 1_700_000_000, tol),
            Ok(())
        );
    }

    #[test]
    fn refusals_say_why() {
        let header = sign(SECRET, 1_700_000_000, BODY);
        let tol = DEFAULT_TOLERANCE;
        let check = |secret: &str, ts: &str, body: &[u8], header: &str, now: i64| {
            verify(secret, ts, body, header, now, tol)
        };
        assert_eq!(
            check(SECRET, "1700000000", BODY, &header, 1_700_000_301),
            Err(VerifyError::Stale {
                skew_secs: 301,
                tolerance_secs: 300
            })
        );
        assert_eq!(
            check(SECRET, "1700000000", b"{}", &header, 1_700_000_000),
            Err(VerifyError::Mismatch)
        );
        assert_eq!(
            check(
                "another_secret_0000",
                "1700000000",
                BODY,
                &header,
                1_700_000_000
            ),
            Err(VerifyError::Mismatch)
        );
        // The timestamp is signed: moving it breaks the signature.
        assert_eq!(
            check(SECRET, "1700000001", BODY, &header, 1_700_000_000),
            Err(VerifyError::Mismatch)
        );
        for ts in ["", "-1700000000", "17e8", "1700000000.5", "abc"] {
            assert_eq!(
                check(SECRET, ts, BODY, &header, 1_700_000_000),
                Err(VerifyError::BadTimestamp),
                "{ts:?}"
            );
        }
        for bad in [
            "",
            "68b59777e8cbc53a15a9842ddac20b0cc6cb8f3bda5b75ab698036365dc519a2",
            "sha1=68b59777e8cbc53a15a9842ddac20b0cc6cb8f3bda5b75ab698036365dc519a2",
            "sha256=68b5",
            "sha256=zz",
        ] {
            assert_eq!(
                check(SECRET, "1700000000", BODY, bad, 1_700_000_000),
                Err(VerifyError::BadHeader),
                "{bad:?}"
            );
        }
    }
}
