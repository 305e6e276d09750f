//! Reading a push request whatever its shape: query parameters, then a JSON, form or
//! multipart body (later sources win), into one map of fields, plus the key wherever a
//! client puts it.

use std::collections::HashMap;

use axum::body::Bytes;
use axum::extract::{FromRequest, Request};
use axum::http::{HeaderMap, header};
use serde_json::Value;

use crate::push::service::PushError;

/// The fields of a request: strings, except JSON arrays and objects, kept as JSON.
#[derive(Debug, Clone, Default)]
pub struct Fields {
    map: HashMap<String, Value>,
    /// The body, when it was neither JSON, a form nor multipart (ntfy's raw message).
    pub raw: Option<String>,
    /// The body was JSON.
    pub json: bool,
}

/// Why the fields could not be read: always the caller's doing (HTTP 400 or 413).
#[derive(Debug, thiserror::Error)]
pub enum FieldsError {
    /// The body is larger than allowed.
    #[error("the request body is too large")]
    TooLarge,
    /// The body does not parse as its content type says.
    #[error("{0}")]
    Malformed(String),
}

impl Fields {
    /// A field as text (numbers and booleans in JSON as their text); empty strings count as
    /// absent.
    pub fn get(&self, name: &str) -> Option<String> {
        let text = match self.map.get(name)? {
            Value::String(s) => s.clone(),
            Value::Number(n) => n.to_string(),
            Value::Bool(b) => b.to_string(),
            _ => return None,
        };
        (!text.is_empty()).then_some(text)
    }

    /// The first present of `names`.
    pub fn first(&self, names: &[&str]) -> Option<String> {
        names.iter().find_map(|n| self.get(n))
    }

    /// A field as JSON, as sent.
    pub fn value(&self, name: &str) -> Option<&Value> {
        self.map.get(name)
    }

    /// A field that is a list: a JSON array of strings (or numbers, as text), or a
    /// comma-separated string.
    pub fn list(&self, name: &str) -> Vec<String> {
        match self.map.get(name) {
            Some(Value::Array(items)) => items
                .iter()
                .filter_map(|v| match v {
                    Value::String(s) => Some(s.clone()),
                    Value::Number(n) => Some(n.to_string()),
                    _ => None,
                })
                .collect(),
            Some(Value::String(s)) => s
                .split(',')
                .map(|p| p.trim().to_owned())
                .filter(|p| !p.is_empty())
                .collect(),
            _ => Vec::new(),
        }
    }

    /// Sets a field (path segments override the rest).
    pub fn set(&mut self, name: &str, value: impl Into<String>) {
        self.map
            .insert(name.to_owned(), Value::String(value.into()));
    }

    fn merge_pairs(&mut self, pairs: impl IntoIterator<Item = (String, String)>) {
        for (k, v) in pairs {
            self.map.insert(k, Value::String(v));
        }
    }

    /// Reads the query string, then the body as its `Content-Type` says; a body that is not
    /// JSON, a form or multipart is kept as [`Fields::raw`].
    pub async fn read(request: Request) -> Result<Self, FieldsError> {
        let mut fields = Self::default();
        if let Some(query) = request.uri().query() {
            fields.merge_pairs(form_urlencoded(query.as_bytes()));
        }
        let content_type = request
            .headers()
            .get(header::CONTENT_TYPE)
            .and_then(|v| v.to_str().ok())
            .unwrap_or("")
            .to_ascii_lowercase();
        if content_type.starts_with("multipart/form-data") {
            let mut multipart = axum::extract::Multipart::from_request(request, &())
                .await
                .map_err(|e| FieldsError::Malformed(e.body_text()))?;
            while let Some(field) = multipart.next_field().await.map_err(multipart_error)? {
                let Some(name) = field.name().map(str::to_owned) else {
                    continue;
                };
                let text = field.text().await.map_err(multipart_error)?;
                fields.map.insert(name, Value::String(text));
            }
            return Ok(fields);
        }
        let body = read_body(request).await?;
        if body.is_empty() {
            return Ok(fields);
        }
        if content_type.starts_with("application/json") || looks_like_json(&content_type, &body) {
            let value: Value = serde_json::from_slice(&body)
                .map_err(|e| FieldsError::Malformed(format!("the body is not valid JSON: {e}")))?;
            let Value::Object(object) = value else {
                return Err(FieldsError::Malformed(
                    "the JSON body must be an object".into(),
                ));
            };
            fields.map.extend(object);
            fields.json = true;
        } else if content_type.starts_with("application/x-www-form-urlencoded") {
            fields.merge_pairs(form_urlencoded(&body));
        } else {
            fields.raw = Some(String::from_utf8_lossy(&body).into_owned());
        }
        Ok(fields)
    }
}

/// A JSON object body sent without a JSON content type (curl's `-d '{…}'` says form).
fn looks_like_json(content_type: &str, body: &[u8]) -> bool {
    (content_type.is_empty() || content_type.starts_with("application/x-www-form-urlencoded"))
        && body.first() == Some(&b'{')
        && serde_json::from_slice::<serde_json::Map<String, Value>>(body).is_ok()
}

fn multipart_error(e: axum::extract::multipart::MultipartError) -> FieldsError {
    if e.status() == axum::http::StatusCode::PAYLOAD_TOO_LARGE {
        FieldsError::TooLarge
    } else {
        FieldsError::Malformed(format!("malformed multipart body: {}", e.body_text()))
    }
}

async fn read_body(request: Request) -> Result<Bytes, FieldsError> {
    Bytes::from_request(request, &()).await.map_err(|e| {
        if e.status() == axum::http::StatusCode::PAYLOAD_TOO_LARGE {
            FieldsError::TooLarge
        } else {
            FieldsError::Malformed(e.body_text())
        }
    })
}

fn form_urlencoded(input: &[u8]) -> Vec<(String, String)> {
    serde_urlencoded::from_bytes::<Vec<(String, String)>>(input).unwrap_or_default()
}

/// A query string's pairs, in order; none when it is absent or malformed.
pub fn query_pairs(raw: Option<&str>) -> Vec<(String, String)> {
    raw.map(|q| form_urlencoded(q.as_bytes()))
        .unwrap_or_default()
}

/// The whole number in the first non-empty `name` pair, if any.
pub fn number(query: &[(String, String)], name: &str) -> Result<Option<i64>, PushError> {
    match query
        .iter()
        .find(|(k, v)| k == name && !v.trim().is_empty())
    {
        None => Ok(None),
        Some((_, v)) => v
            .trim()
            .parse()
            .map(Some)
            .map_err(|_| PushError::Invalid(format!("{name} must be a whole number"))),
    }
}

/// The key a request carries: `Authorization: Bearer KEY`, Basic auth (the password, or the
/// user name when there is no password), or a `key` field. `None` when there is none.
pub fn bearer_or_basic(headers: &HeaderMap) -> Option<String> {
    let value = headers.get(header::AUTHORIZATION)?.to_str().ok()?.trim();
    let (scheme, rest) = value.split_once(' ')?;
    let rest = rest.trim();
    if scheme.eq_ignore_ascii_case("bearer") {
        return (!rest.is_empty()).then(|| rest.to_owned());
    }
    if scheme.eq_ignore_ascii_case("basic") {
        use base64::Engine;
        let decoded = base64::engine::general_purpose::STANDARD
            .decode(rest)
            .ok()?;
        let decoded = String::from_utf8(decoded).ok()?;
        let (user, password) = decoded.split_once(':').unwrap_or((&decoded, ""));
        let secret = if password.is_empty() { user } else { password };
        return (!secret.is_empty()).then(|| secret.to_owned());
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_from_authorization() {
        let mut h = HeaderMap::new();
        h.insert(header::AUTHORIZATION, "Bearer abc".parse().unwrap());
        assert_eq!(bearer_or_basic(&h).as_deref(), Some("abc"));
        // "user:KEY" and "KEY:" both give the key.
        h.insert(header::AUTHORIZATION, "Basic dXNlcjpLRVk=".parse().unwrap());
        assert_eq!(bearer_or_basic(&h).as_deref(), Some("KEY"));
        h.insert(header::AUTHORIZATION, "Basic S0VZOg==".parse().unwrap());
        assert_eq!(bearer_or_basic(&h).as_deref(), Some("KEY"));
        h.insert(header::AUTHORIZATION, "Digest x".parse().unwrap());
        assert_eq!(bearer_or_basic(&h), None);
    }

    #[test]
    fn lists_from_arrays_and_commas() {
        let mut f = Fields::default();
        f.map.insert("a".into(), serde_json::json!(["x", "y"]));
        f.map.insert("b".into(), serde_json::json!("x, y,,z"));
        assert_eq!(f.list("a"), ["x", "y"]);
        assert_eq!(f.list("b"), ["x", "y", "z"]);
        assert_eq!(f.list("c"), Vec::<String>::new());
    }
}
