//! QR codes with a scene (`/cgi-bin/qrcode/create`). Scanning one sends the bot a `subscribe`
//! event with `EventKey` `qrscene_<scene>` (a new follower) or a `SCAN` event with the bare
//! scene (a follower).
//!
//! Temporary codes live at most 30 days and are plentiful; permanent ones are limited to
//! 100,000 per account, numeric scenes 1–100000, string scenes 1–64 characters.

use serde::{Deserialize, Serialize};
use serde_json::json;

use super::{ApiError, Call, Client};

/// The longest a temporary code lives: 30 days.
pub const MAX_EXPIRE_SECONDS: u32 = 2_592_000;
/// The default lifetime of a temporary code: 30 minutes.
pub const DEFAULT_EXPIRE_SECONDS: u32 = 1800;

/// A code's scene: what the scan event carries.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Scene {
    /// `scene_id`: 1–4294967295 (temporary), 1–100000 (permanent).
    Id(u32),
    /// `scene_str`: 1–64 characters.
    Str(String),
}

impl Scene {
    /// A scene from a command-line argument: digits make a numeric scene, anything else a
    /// string one.
    pub fn parse(text: &str) -> Self {
        match text.parse::<u32>() {
            Ok(id) if id > 0 && !text.starts_with('0') => Self::Id(id),
            _ => Self::Str(text.to_owned()),
        }
    }
}

/// A created code (`{"ticket","expire_seconds","url"}`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct QrCode {
    /// `ticket`: exchanged for the image.
    pub ticket: String,
    /// `expire_seconds`: absent for a permanent code.
    #[serde(default)]
    pub expire_seconds: Option<u64>,
    /// `url`: the content of the code, for drawing it yourself.
    #[serde(default)]
    pub url: String,
}

/// The request body of a code; `None` for `expire_seconds` makes a permanent one.
pub fn request_body(
    scene: &Scene,
    expire_seconds: Option<u32>,
) -> Result<serde_json::Value, String> {
    let (kind, scene_json) = match scene {
        Scene::Id(0) => return Err("a numeric scene starts at 1".into()),
        Scene::Id(id) if expire_seconds.is_none() && *id > 100_000 => {
            return Err(format!(
                "a permanent numeric scene is 1–100000, not {id} (use a string scene)"
            ));
        }
        Scene::Id(id) => ("SCENE", json!({"scene_id": id})),
        Scene::Str(s) if s.is_empty() || s.chars().count() > 64 => {
            return Err("a string scene is 1–64 characters".into());
        }
        Scene::Str(s) => ("STR_SCENE", json!({"scene_str": s})),
    };
    Ok(match expire_seconds {
        Some(seconds) => {
            if seconds == 0 || seconds > MAX_EXPIRE_SECONDS {
                return Err(format!(
                    "a temporary code lives 1–{MAX_EXPIRE_SECONDS} seconds (30 days), not {seconds}"
                ));
            }
            json!({"expire_seconds": seconds, "action_name": format!("QR_{kind}"),
                   "action_info": {"scene": scene_json}})
        }
        None => {
            json!({"action_name": format!("QR_LIMIT_{kind}"), "action_info": {"scene": scene_json}})
        }
    })
}

impl Client {
    /// Creates a code: temporary with `Some(seconds)` (at most 30 days), permanent with `None`.
    pub async fn create_qrcode(
        &self,
        scene: &Scene,
        expire_seconds: Option<u32>,
    ) -> Result<QrCode, ApiError> {
        let body = request_body(scene, expire_seconds).map_err(|detail| ApiError::Invalid {
            endpoint: "/cgi-bin/qrcode/create".into(),
            detail,
        })?;
        // Not repeated: a permanent code counts against a quota.
        self.call(Call::post("/cgi-bin/qrcode/create", body)).await
    }

    /// Where the image of a ticket is: WeChat's `mp.weixin.qq.com` for the real API, the
    /// emulator's own address otherwise.
    pub fn qrcode_image_url(&self, ticket: &str) -> String {
        let host = if self.base() == crate::config::DEFAULT_API_BASE {
            "https://mp.weixin.qq.com"
        } else {
            self.base()
        };
        with_query(&format!("{host}/cgi-bin/showqrcode"), &[("ticket", ticket)])
    }
}

/// `url` with the query `pairs`, percent-encoded (tickets carry `=`, `+` and `/`).
pub(crate) fn with_query(url: &str, pairs: &[(&str, &str)]) -> String {
    match reqwest::Url::parse_with_params(url, pairs) {
        Ok(url) => url.into(),
        Err(_) => url.to_owned(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bodies_match_the_reference() {
        assert_eq!(
            request_body(&Scene::Id(123), Some(1800)).unwrap(),
            json!({"expire_seconds":1800,"action_name":"QR_SCENE","action_info":{"scene":{"scene_id":123}}})
        );
        assert_eq!(
            request_body(&Scene::Str("promo".into()), Some(60)).unwrap(),
            json!({"expire_seconds":60,"action_name":"QR_STR_SCENE","action_info":{"scene":{"scene_str":"promo"}}})
        );
        assert_eq!(
            request_body(&Scene::Id(7), None).unwrap(),
            json!({"action_name":"QR_LIMIT_SCENE","action_info":{"scene":{"scene_id":7}}})
        );
        assert_eq!(
            request_body(&Scene::Str("shop".into()), None).unwrap(),
            json!({"action_name":"QR_LIMIT_STR_SCENE","action_info":{"scene":{"scene_str":"shop"}}})
        );
    }

    #[test]
    fn refuses_what_wechat_would() {
        assert!(request_body(&Scene::Id(0), None).is_err());
        assert!(
            request_body(&Scene::Id(100_001), None)
                .unwrap_err()
                .contains("1–100000")
        );
        assert!(request_body(&Scene::Str(String::new()), None).is_err());
        assert!(request_body(&Scene::Str("x".repeat(65)), None).is_err());
        assert!(
            request_body(&Scene::Id(1), Some(MAX_EXPIRE_SECONDS + 1))
                .unwrap_err()
                .contains("30 days")
        );
    }

    #[test]
    fn scene_arguments() {
        assert_eq!(Scene::parse("42"), Scene::Id(42));
        assert_eq!(Scene::parse("007"), Scene::Str("007".into()));
        assert_eq!(Scene::parse("0"), Scene::Str("0".into()));
        assert_eq!(Scene::parse("promo"), Scene::Str("promo".into()));
    }
}
