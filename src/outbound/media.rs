//! Temporary media (`/cgi-bin/media/upload`): files kept three days, referred to by
//! `media_id` in replies and customer-service messages. Limits: images 10 MB (bmp, png, jpeg,
//! jpg, gif), voice 2 MB and 60 s (amr, mp3), video 10 MB (mp4), thumbnails 64 KB (jpg).

use std::path::Path;

use serde::{Deserialize, Serialize};

use super::{ApiError, Body, Call, Client};

/// The kind of a temporary file.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum MediaType {
    /// `image`.
    Image,
    /// `voice`.
    Voice,
    /// `video`.
    Video,
    /// `thumb`.
    Thumb,
}

impl MediaType {
    /// The API's name.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Image => "image",
            Self::Voice => "voice",
            Self::Video => "video",
            Self::Thumb => "thumb",
        }
    }

    /// The largest file WeChat takes, in bytes.
    pub fn max_bytes(self) -> usize {
        match self {
            Self::Image | Self::Video => 10 << 20,
            Self::Voice => 2 << 20,
            Self::Thumb => 64 << 10,
        }
    }

    /// The kind named `name`.
    pub fn parse(name: &str) -> Option<Self> {
        match name {
            "image" => Some(Self::Image),
            "voice" => Some(Self::Voice),
            "video" => Some(Self::Video),
            "thumb" => Some(Self::Thumb),
            _ => None,
        }
    }
}

/// An uploaded file.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Media {
    /// `type`.
    #[serde(rename = "type")]
    pub kind: MediaType,
    /// `media_id` (`thumb_media_id` for a thumbnail).
    #[serde(alias = "thumb_media_id")]
    pub media_id: String,
    /// `created_at`: Unix seconds.
    #[serde(default)]
    pub created_at: i64,
}

impl Client {
    /// Uploads `bytes` as a temporary file named `filename` (the extension tells WeChat the
    /// format). Refused before the call when larger than WeChat takes.
    pub async fn upload_media(
        &self,
        kind: MediaType,
        filename: &str,
        bytes: Vec<u8>,
    ) -> Result<Media, ApiError> {
        let endpoint = "/cgi-bin/media/upload";
        if bytes.is_empty() || bytes.len() > kind.max_bytes() {
            return Err(ApiError::Invalid {
                endpoint: endpoint.into(),
                detail: format!(
                    "a {} file is 1–{} bytes, this one is {}",
                    kind.as_str(),
                    kind.max_bytes(),
                    bytes.len()
                ),
            });
        }
        let name = Path::new(filename)
            .file_name()
            .and_then(|n| n.to_str())
            .unwrap_or("upload")
            .to_owned();
        let mut call = Call::get(endpoint).query("type", kind.as_str());
        call.body = Body::File {
            field: "media",
            filename: name,
            bytes,
        };
        // Repeating an upload only makes a second temporary file.
        self.call(call).await
    }
}
