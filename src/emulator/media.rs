//! Temporary media: `POST /cgi-bin/media/upload?type=`, multipart with the file in `media`,
//! within WeChat's size limits.

use std::collections::HashMap;

use axum::Json;
use axum::extract::multipart::MultipartRejection;
use axum::extract::{Multipart, RawQuery, State};
use axum::http::StatusCode;
use serde_json::json;

use super::Emulator;
use super::api::{ApiError, ApiResult, parse_query, random_string};

/// The upload route.
pub(crate) const UPLOAD_PATH: &str = "/cgi-bin/media/upload";
/// The largest upload body read: the largest file (10 MB) plus room for the multipart
/// framing. Larger bodies answer 40006.
pub(crate) const UPLOAD_BODY_LIMIT: usize = 10 * 1024 * 1024 + 64 * 1024;

/// WeChat's limit for each media type, in bytes.
fn limit(media_type: &str) -> Option<usize> {
    Some(match media_type {
        "image" | "video" => 10 * 1024 * 1024,
        "voice" => 2 * 1024 * 1024,
        "thumb" => 64 * 1024,
        _ => return None,
    })
}

/// Every file uploaded: media id -> type (the bytes are not kept).
#[derive(Debug, Default)]
pub(crate) struct Media {
    items: HashMap<String, String>,
}

impl Media {
    pub fn len(&self) -> usize {
        self.items.len()
    }
}

/// `POST /cgi-bin/media/upload?access_token=&type=image|voice|video|thumb`.
pub(crate) async fn upload(
    State(emu): State<Emulator>,
    RawQuery(q): RawQuery,
    multipart: Result<Multipart, MultipartRejection>,
) -> ApiResult {
    let q = parse_query(q.as_deref());
    emu.check_token(&q)?;
    let media_type = q.get("type").map(String::as_str).unwrap_or_default();
    let max = limit(media_type).ok_or_else(|| ApiError::new(40004))?;
    let mut multipart = multipart.map_err(|_| ApiError::new(41005))?;
    let mut file = None;
    loop {
        match multipart.next_field().await {
            Ok(Some(field)) if field.name() == Some("media") => {
                file = Some(field.bytes().await.map_err(|e| {
                    if e.status() == StatusCode::PAYLOAD_TOO_LARGE {
                        ApiError::new(40006)
                    } else {
                        ApiError::new(41005)
                    }
                })?);
                break;
            }
            Ok(Some(_)) => continue,
            Ok(None) => break,
            Err(e) if e.status() == StatusCode::PAYLOAD_TOO_LARGE => {
                return Err(ApiError::new(40006));
            }
            Err(_) => return Err(ApiError::new(41005)),
        }
    }
    let file = file
        .filter(|f| !f.is_empty())
        .ok_or_else(|| ApiError::new(41005))?;
    if file.len() > max {
        return Err(ApiError::new(40006));
    }
    let media_id = random_string(64, true);
    emu.lock()
        .media
        .items
        .insert(media_id.clone(), media_type.to_owned());
    tracing::debug!(media_type, size = file.len(), "emulator: media uploaded");
    let created_at = emu.unix_ms() / 1000;
    let mut answer = json!({ "type": media_type, "media_id": media_id, "created_at": created_at });
    if media_type == "thumb" {
        // WeChat names a thumbnail's id `thumb_media_id`; both are given.
        answer["thumb_media_id"] = json!(media_id);
    }
    Ok(Json(answer))
}
