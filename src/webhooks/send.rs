//! One attempt of a delivery: sign it, POST it (the client has the attempt's timeout and
//! follows no redirect), read a bounded answer, and decide what the attempt means: delivered
//! on 2xx; failed for good on 410 Gone, a revoked app, an endpoint gone from the config, or
//! the last attempt; otherwise tried again after the backoff.

use std::time::{Duration, Instant};

use reqwest::header::{CONTENT_TYPE, LOCATION};
use serde_json::Value;

use super::sign::{self, DELIVERY_HEADER, EVENT_HEADER, SIGNATURE_HEADER, TIMESTAMP_HEADER, sign};
use super::{MAX_ANSWER_BYTES, MAX_BACKOFF, SecretError, Webhooks, millis, now_ms};
use crate::config::AppsConfig;
use crate::store::apps::{DeliveryOutcome, DeliveryResult, DeliveryRow};
use crate::support::clock::unix_now;

/// How much of an error answer is kept in the delivery's `last_error`.
const ERROR_ANSWER_CHARS: usize = 200;

/// What one attempt came to.
pub(crate) struct Attempted {
    /// What to record.
    pub outcome: DeliveryOutcome,
    /// The JSON object a 2xx answer carried, if it did.
    pub answer: Option<Value>,
}

/// How the POST went.
enum Posted {
    /// A 2xx answer, and the JSON object it carried, if any.
    Delivered { status: u16, answer: Option<Value> },
    /// No 2xx: the status, if the receiver answered; why; whether another attempt may help.
    Failed {
        status: Option<u16>,
        error: String,
        retry: bool,
    },
}

/// Makes one attempt of `row` (claimed by this process, `row.attempts` counting this one).
pub(crate) async fn attempt(webhooks: &Webhooks, row: &DeliveryRow) -> Attempted {
    let at = now_ms();
    let started = Instant::now();
    let posted = post(webhooks, row).await;
    let duration_ms = millis(started.elapsed());
    let config = webhooks.config();
    let (status, result, answer) = match posted {
        Posted::Delivered { status, answer } => {
            tracing::debug!(
                delivery = %row.id,
                event = %row.event,
                endpoint = %row.endpoint,
                status,
                attempt = row.attempts,
                duration_ms,
                "webhook delivered"
            );
            webhooks.metrics().webhook_delivery("delivered");
            (Some(status), DeliveryResult::Delivered, answer)
        }
        Posted::Failed {
            status,
            error,
            retry,
        } => {
            let result = if retry && row.attempts < i64::from(config.webhook_max_attempts) {
                let wait = backoff(config, row.attempts);
                tracing::warn!(
                    delivery = %row.id,
                    event = %row.event,
                    endpoint = %row.endpoint,
                    status,
                    attempt = row.attempts,
                    error = %loggable(status, &error),
                    retry_in_ms = millis(wait),
                    "webhook attempt failed; retrying"
                );
                webhooks.metrics().webhook_delivery("retry");
                DeliveryResult::Retry {
                    next_at: now_ms().saturating_add(millis(wait)),
                    error,
                }
            } else {
                let error = if retry {
                    format!("{error} (gave up after {} attempts)", row.attempts)
                } else {
                    error
                };
                tracing::warn!(
                    delivery = %row.id,
                    event = %row.event,
                    endpoint = %row.endpoint,
                    status,
                    attempt = row.attempts,
                    error = %loggable(status, &error),
                    "webhook delivery failed"
                );
                webhooks.metrics().webhook_delivery("failed");
                // The endpoint stays out: a receiver's URL may carry a token of its own.
                webhooks.metrics().record_error(
                    "webhook",
                    format_args!(
                        "{} delivery {}: {}",
                        row.event,
                        row.id,
                        loggable(status, &error)
                    ),
                );
                DeliveryResult::Failed { error }
            };
            (status, result, None)
        }
    };
    Attempted {
        outcome: DeliveryOutcome {
            seq: row.seq,
            at,
            duration_ms,
            status: status.map(i64::from),
            result,
        },
        answer,
    }
}

/// The wait after attempt `attempts` failed: `webhook_retry_backoff_ms` doubled for each
/// attempt after the first, ±20% at random, at most [`MAX_BACKOFF`].
pub(crate) fn backoff(config: &AppsConfig, attempts: i64) -> Duration {
    let doublings = u32::try_from(attempts.saturating_sub(1).clamp(0, 30)).unwrap_or(30);
    let base = Duration::from_millis(config.webhook_retry_backoff_ms)
        .saturating_mul(1u32 << doublings)
        .min(MAX_BACKOFF);
    // Receivers that failed together are not all retried at the same instant.
    let jitter: f64 = rand::random_range(0.8..=1.2);
    base.mul_f64(jitter).min(MAX_BACKOFF)
}

async fn post(webhooks: &Webhooks, row: &DeliveryRow) -> Posted {
    let secret = match webhooks.secret(row).await {
        Ok(secret) => secret,
        Err(SecretError::Gone(error)) => {
            return Posted::Failed {
                status: None,
                error,
                retry: false,
            };
        }
        Err(SecretError::Store(e)) => {
            return Posted::Failed {
                status: None,
                error: format!("store: {e}"),
                retry: true,
            };
        }
    };
    let timestamp = unix_now();
    let request = webhooks
        .http()
        .post(&row.url)
        .header(CONTENT_TYPE, sign::CONTENT_TYPE)
        .header(EVENT_HEADER, &row.event)
        .header(DELIVERY_HEADER, &row.id)
        .header(TIMESTAMP_HEADER, timestamp.to_string())
        .header(
            SIGNATURE_HEADER,
            sign(&secret, timestamp, row.body.as_bytes()),
        )
        .body(row.body.clone());
    let response = match request.send().await {
        Ok(response) => response,
        Err(e) => return request_failed(e, webhooks.config()),
    };
    let status = response.status();
    let code = status.as_u16();
    if status.is_success() {
        let answer = match read_limited(response, MAX_ANSWER_BYTES).await {
            Ok((bytes, false)) => json_object(&bytes),
            Ok((_, true)) => {
                tracing::warn!(
                    delivery = %row.id,
                    event = %row.event,
                    endpoint = %row.endpoint,
                    status = code,
                    limit = MAX_ANSWER_BYTES,
                    "webhook answer over the limit: delivered, the answer is not used"
                );
                None
            }
            Err(e) => {
                // The receiver took the event (2xx); only its answer was lost.
                tracing::warn!(
                    delivery = %row.id,
                    event = %row.event,
                    endpoint = %row.endpoint,
                    status = code,
                    error = %error_chain(&e.without_url()),
                    "webhook answer could not be read: delivered, the answer is not used"
                );
                None
            }
        };
        return Posted::Delivered {
            status: code,
            answer,
        };
    }
    if status.is_redirection() {
        let location = response
            .headers()
            .get(LOCATION)
            .and_then(|v| v.to_str().ok())
            .unwrap_or("")
            .to_owned();
        let target = if location.is_empty() {
            "no Location".to_owned()
        } else {
            location
        };
        return Posted::Failed {
            status: Some(code),
            error: format!(
                "HTTP {code}: redirect to {target} not followed (webhook URLs must answer \
                 themselves; configure the final URL)"
            ),
            retry: true,
        };
    }
    if code == 410 {
        return Posted::Failed {
            status: Some(code),
            error: "HTTP 410 Gone: the receiver wants no more deliveries".into(),
            retry: false,
        };
    }
    let snippet = match read_limited(response, 1024).await {
        Ok((bytes, _)) => one_line(&String::from_utf8_lossy(&bytes)),
        Err(_) => String::new(),
    };
    Posted::Failed {
        status: Some(code),
        error: if snippet.is_empty() {
            format!("HTTP {code}")
        } else {
            format!("HTTP {code}: {snippet}")
        },
        retry: true,
    }
}

/// What of an attempt's error goes to the log: all of it when the receiver did not answer;
/// only the status when it did, since the stored error quotes the receiver's answer, which
/// may echo the body.
fn loggable(status: Option<u16>, error: &str) -> String {
    match status {
        None => error.to_owned(),
        Some(code) => format!("HTTP {code}"),
    }
}

/// Why a request got no answer.
fn request_failed(e: reqwest::Error, config: &AppsConfig) -> Posted {
    let e = e.without_url();
    let (error, retry) = if e.is_builder() {
        // A URL or header that cannot be sent at all: no later attempt differs.
        (
            format!("cannot make the request: {}", error_chain(&e)),
            false,
        )
    } else if e.is_timeout() {
        (
            format!(
                "timed out after {} ms (webhook_timeout_ms)",
                config.webhook_timeout_ms
            ),
            true,
        )
    } else if e.is_connect() {
        (format!("cannot connect: {}", error_chain(&e)), true)
    } else {
        (format!("request failed: {}", error_chain(&e)), true)
    };
    Posted::Failed {
        status: None,
        error,
        retry,
    }
}

/// An error and its sources, `: `-separated (reqwest's own text says little).
fn error_chain(e: &dyn std::error::Error) -> String {
    let mut text = e.to_string();
    let mut source = e.source();
    while let Some(s) = source {
        let next = s.to_string();
        if !text.contains(&next) {
            text.push_str(": ");
            text.push_str(&next);
        }
        source = s.source();
    }
    text
}

/// Reads at most `limit` bytes of the answer; true when there was more (the rest is not
/// read).
async fn read_limited(
    mut response: reqwest::Response,
    limit: usize,
) -> Result<(Vec<u8>, bool), reqwest::Error> {
    let mut bytes = Vec::new();
    while let Some(chunk) = response.chunk().await? {
        if bytes.len() + chunk.len() > limit {
            let room = limit - bytes.len();
            bytes.extend_from_slice(&chunk[..room]);
            return Ok((bytes, true));
        }
        bytes.extend_from_slice(&chunk);
    }
    Ok((bytes, false))
}

/// The answer when it is a JSON object.
fn json_object(bytes: &[u8]) -> Option<Value> {
    match serde_json::from_slice::<Value>(bytes) {
        Ok(value @ Value::Object(_)) => Some(value),
        _ => None,
    }
}

/// The start of an error answer on one line, for `last_error`.
fn one_line(text: &str) -> String {
    let joined = text.split_whitespace().collect::<Vec<_>>().join(" ");
    match joined.char_indices().nth(ERROR_ANSWER_CHARS) {
        Some((at, _)) => format!("{}…", &joined[..at]),
        None => joined,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn config(backoff_ms: u64) -> AppsConfig {
        AppsConfig {
            webhook_retry_backoff_ms: backoff_ms,
            ..AppsConfig::default()
        }
    }

    #[test]
    fn backoff_doubles_within_the_jitter_and_stops_at_an_hour() {
        let c = config(2_000);
        for (attempts, base) in [(1, 2_000.0), (2, 4_000.0), (3, 8_000.0), (6, 64_000.0)] {
            for _ in 0..50 {
                let ms = backoff(&c, attempts).as_millis() as f64;
                assert!(
                    (base * 0.8 - 1.0..=base * 1.2 + 1.0).contains(&ms),
                    "attempt {attempts}: {ms} ms"
                );
            }
        }
        for attempts in [12, 40, i64::MAX] {
            let wait = backoff(&c, attempts);
            assert!(wait <= MAX_BACKOFF, "{wait:?}");
            assert!(wait >= MAX_BACKOFF.mul_f64(0.8), "{wait:?}");
        }
    }

    #[test]
    fn answers_are_used_only_when_json_objects() {
        assert_eq!(
            json_object(br#"{"reply":{"type":"text"}}"#),
            Some(serde_json::json!({"reply": {"type": "text"}}))
        );
        assert_eq!(json_object(b"[1]"), None);
        assert_eq!(json_object(b"ok"), None);
        assert_eq!(json_object(b""), None);
    }

    #[test]
    fn error_answers_are_shortened_to_one_line() {
        assert_eq!(one_line("  internal\n error \t"), "internal error");
        let long = "é".repeat(300);
        let short = one_line(&long);
        assert_eq!(short.chars().count(), ERROR_ANSWER_CHARS + 1);
        assert!(short.ends_with('…'));
    }
}
