//! What every API handler shares: WeChat's error answer, the error messages WeChat uses,
//! the access-token and credential checks, JSON body parsing.

use std::collections::BTreeMap;

use axum::Json;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use serde_json::{Value, json};

use super::Emulator;

/// A WeChat API error: HTTP 200 with `{"errcode","errmsg"}`, as WeChat answers.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{errcode} {errmsg}")]
pub(crate) struct ApiError {
    /// `errcode`.
    pub errcode: i64,
    /// `errmsg`.
    pub errmsg: String,
}

impl ApiError {
    /// The error with WeChat's message for `errcode`.
    pub fn new(errcode: i64) -> Self {
        Self {
            errcode,
            errmsg: errmsg(errcode).to_owned(),
        }
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        (
            StatusCode::OK,
            Json(json!({ "errcode": self.errcode, "errmsg": self.errmsg })),
        )
            .into_response()
    }
}

/// What an API handler returns.
pub(crate) type ApiResult = Result<Json<Value>, ApiError>;

/// `{"errcode":0,"errmsg":"ok"}`.
pub(crate) fn ok() -> Json<Value> {
    Json(json!({ "errcode": 0, "errmsg": "ok" }))
}

/// WeChat's `errmsg` for the codes the emulator answers.
pub(crate) fn errmsg(errcode: i64) -> &'static str {
    match errcode {
        -1 => "system error",
        0 => "ok",
        40001 => "invalid credential, access_token is invalid or not latest",
        40002 => "invalid grant_type",
        40003 => "invalid openid",
        40004 => "invalid media type",
        40006 => "invalid meida size",
        40007 => "invalid media_id",
        40008 => "invalid message type",
        40013 => "invalid appid",
        40014 => "invalid access_token",
        40016 => "invalid button size",
        40017 => "invalid button type",
        40018 => "invalid button name size",
        40029 => "invalid code",
        40037 => "invalid template_id",
        40053 => "invalid action info",
        40066 => "invalid url",
        40097 => "invalid args",
        40125 => "invalid appsecret",
        40163 => "code been used",
        40164 => "invalid ip, not in whitelist",
        41001 => "access_token missing",
        41002 => "appid missing",
        41004 => "appsecret missing",
        41005 => "media data missing",
        41008 => "missing code",
        41009 => "missing openid",
        42001 => "access_token expired",
        43004 => "require subscribe",
        44002 => "empty post data",
        44004 => "empty content",
        45002 => "content size out of limit",
        45008 => "article size out of limit",
        45009 => "reach max api daily quota limit",
        45011 => "api minute-quota reach limit",
        45015 => "response out of time limit or subscription is canceled",
        45047 => "out of response count limit",
        45065 => "clientmsgid exist",
        46003 => "menu no exist",
        47001 => "data format error",
        47003 => "argument invalid",
        48001 => "api unauthorized",
        48002 => "api block",
        _ => "emulated error",
    }
}

/// The query string as a map (the last value of a repeated key wins).
pub(crate) fn parse_query(query: Option<&str>) -> BTreeMap<String, String> {
    query
        .map(|q| {
            url_decode_pairs(q)
                .into_iter()
                .collect::<BTreeMap<String, String>>()
        })
        .unwrap_or_default()
}

fn url_decode_pairs(query: &str) -> Vec<(String, String)> {
    reqwest::Url::parse(&format!("http://q/?{query}"))
        .map(|u| u.query_pairs().into_owned().collect())
        .unwrap_or_default()
}

/// The body as a JSON object; 44002 when empty, 47001 when not a JSON object.
pub(crate) fn json_body(body: &[u8]) -> Result<serde_json::Map<String, Value>, ApiError> {
    if body.iter().all(u8::is_ascii_whitespace) {
        return Err(ApiError::new(44002));
    }
    match serde_json::from_slice::<Value>(body) {
        Ok(Value::Object(map)) => Ok(map),
        _ => Err(ApiError::new(47001)),
    }
}

/// A string field of a JSON object, if it is one.
pub(crate) fn str_field<'a>(
    map: &'a serde_json::Map<String, Value>,
    name: &str,
) -> Option<&'a str> {
    map.get(name).and_then(Value::as_str)
}

/// A random opaque string of `len` characters from `[A-Za-z0-9_-]` (or without `_-`).
pub(crate) fn random_string(len: usize, url_safe_symbols: bool) -> String {
    use rand::RngExt;
    const ALPHABET: &[u8] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789_-";
    let n = if url_safe_symbols { 64 } else { 62 };
    let mut rng = rand::rng();
    (0..len)
        .map(|_| char::from(ALPHABET[rng.random_range(0..n)]))
        .collect()
}

impl Emulator {
    /// Checks `access_token` in the query: 41001 missing, 40001 unknown, 42001 expired.
    pub(crate) fn check_token(&self, query: &BTreeMap<String, String>) -> Result<(), ApiError> {
        let token = query
            .get("access_token")
            .filter(|t| !t.is_empty())
            .ok_or_else(|| ApiError::new(41001))?;
        let now = self.now();
        self.lock().tokens.check(token, now)
    }

    /// Checks an appid and secret against the settings: 41002/41004 missing, 40013 wrong
    /// appid, 40125 wrong secret (each only checked when configured).
    pub(crate) fn check_credentials(
        &self,
        appid: Option<&str>,
        secret: Option<&str>,
    ) -> Result<(), ApiError> {
        let settings = &self.shared.settings;
        let appid = appid
            .filter(|a| !a.is_empty())
            .ok_or_else(|| ApiError::new(41002))?;
        if !settings.app_id.is_empty() && appid != settings.app_id {
            return Err(ApiError::new(40013));
        }
        let secret = secret
            .filter(|s| !s.is_empty())
            .ok_or_else(|| ApiError::new(41004))?;
        if !settings.app_secret.is_empty() && secret != settings.app_secret {
            return Err(ApiError::new(40125));
        }
        Ok(())
    }
}
