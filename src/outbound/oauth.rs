//! Web OAuth2 (网页授权): a page opened inside WeChat learns who the user is.
//!
//! 1. Send the user to [`Client::authorize_url`]; WeChat (or the emulator) redirects back to
//!    `redirect_uri?code=…&state=…`.
//! 2. Exchange the code with [`Client::oauth_exchange`] for the user's OpenID (a code works
//!    once, within five minutes; it is never retried).
//! 3. With scope `snsapi_userinfo`, [`Client::oauth_user`] reads the profile.
//!
//! These endpoints take the app secret, not the access token.

use serde::{Deserialize, Serialize};

use super::{ApiError, Client};
use crate::outbound::qrcode::with_query;

/// What the page asks for.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum Scope {
    /// `snsapi_base`: the OpenID only, silently.
    #[serde(rename = "snsapi_base")]
    Base,
    /// `snsapi_userinfo`: the profile too, after the user agrees.
    #[serde(rename = "snsapi_userinfo")]
    UserInfo,
}

impl Scope {
    /// The API's name.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Base => "snsapi_base",
            Self::UserInfo => "snsapi_userinfo",
        }
    }
}

/// The answer to a code exchange.
#[derive(Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct OAuthToken {
    /// `access_token`: the user's web token (not the account's access token).
    pub access_token: String,
    /// `expires_in`: seconds.
    #[serde(default)]
    pub expires_in: u64,
    /// `refresh_token`.
    #[serde(default)]
    pub refresh_token: String,
    /// `openid`: who the user is.
    pub openid: String,
    /// `scope`.
    #[serde(default)]
    pub scope: String,
    /// `unionid`, when the account is bound to an Open Platform account.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub unionid: Option<String>,
}

impl std::fmt::Debug for OAuthToken {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // Never the tokens.
        f.debug_struct("OAuthToken")
            .field("openid", &self.openid)
            .field("scope", &self.scope)
            .field("expires_in", &self.expires_in)
            .finish_non_exhaustive()
    }
}

/// A profile from `/sns/userinfo`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct OAuthUser {
    /// `openid`.
    pub openid: String,
    /// `nickname`.
    #[serde(default)]
    pub nickname: String,
    /// `sex` (WeChat now sends 0).
    #[serde(default)]
    pub sex: i64,
    /// `province`.
    #[serde(default)]
    pub province: String,
    /// `city`.
    #[serde(default)]
    pub city: String,
    /// `country`.
    #[serde(default)]
    pub country: String,
    /// `headimgurl`.
    #[serde(default)]
    pub headimgurl: String,
    /// `privilege`.
    #[serde(default)]
    pub privilege: Vec<String>,
    /// `unionid`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub unionid: Option<String>,
}

impl Client {
    /// Where to send the user: WeChat's `open.weixin.qq.com` for the real API, the emulator's
    /// own authorize page otherwise. `state` comes back untouched (at most 128 bytes; use it
    /// against CSRF).
    pub fn authorize_url(&self, redirect_uri: &str, scope: Scope, state: &str) -> String {
        let host = if self.base() == crate::config::DEFAULT_API_BASE {
            "https://open.weixin.qq.com"
        } else {
            self.base()
        };
        let url = with_query(
            &format!("{host}/connect/oauth2/authorize"),
            &[
                ("appid", self.app_id()),
                ("redirect_uri", redirect_uri),
                ("response_type", "code"),
                ("scope", scope.as_str()),
                ("state", state),
            ],
        );
        format!("{url}#wechat_redirect")
    }

    /// Exchanges the code WeChat redirected with for the user's OpenID and web token.
    pub async fn oauth_exchange(&self, code: &str) -> Result<OAuthToken, ApiError> {
        self.call_plain(
            "/sns/oauth2/access_token",
            &[
                ("appid", self.app_id().to_owned()),
                ("secret", self.secret().to_owned()),
                ("code", code.to_owned()),
                ("grant_type", "authorization_code".to_owned()),
            ],
        )
        .await
    }

    /// The profile of the user of `token` (scope `snsapi_userinfo`).
    pub async fn oauth_user(&self, token: &OAuthToken) -> Result<OAuthUser, ApiError> {
        self.call_plain(
            "/sns/userinfo",
            &[
                ("access_token", token.access_token.clone()),
                ("openid", token.openid.clone()),
                ("lang", "zh_CN".to_owned()),
            ],
        )
        .await
    }
}
