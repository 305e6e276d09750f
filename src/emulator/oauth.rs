//! Web authorization (OAuth 2.0): `connect/oauth2/authorize` redirects back with a code,
//! `sns/oauth2/access_token` exchanges it (once) for the user's OpenID and a web token,
//! `sns/userinfo` answers the profile when the scope allows.

use std::collections::HashMap;
use std::time::Duration;

use axum::Json;
use axum::extract::{RawQuery, State};
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde_json::json;

use super::Emulator;
use super::api::{ApiError, ApiResult, parse_query, random_string};

/// How long a code may be exchanged.
const CODE_LIFETIME: Duration = Duration::from_secs(300);
/// How long a web access token lives.
const TOKEN_LIFETIME: Duration = Duration::from_secs(7_200);
/// The two scopes.
pub(crate) const SCOPES: [&str; 2] = ["snsapi_base", "snsapi_userinfo"];

#[derive(Debug, Clone)]
struct Code {
    openid: String,
    scope: String,
    expires: Duration,
    used: bool,
}

#[derive(Debug, Clone)]
struct WebToken {
    openid: String,
    scope: String,
    expires: Duration,
}

/// Codes and web tokens issued.
#[derive(Debug, Default)]
pub(crate) struct OAuth {
    codes: HashMap<String, Code>,
    tokens: HashMap<String, WebToken>,
    /// Who is at the browser: the user the authorization page grants when the request names
    /// none (`POST /emulator/oauth/browser`); else the first follower.
    pub browser: Option<String>,
}

impl OAuth {
    fn code(&mut self, openid: &str, scope: &str, now: Duration) -> String {
        // Forget codes long past use, so the map stays small.
        self.codes.retain(|_, c| c.expires + CODE_LIFETIME > now);
        let code = random_string(32, false);
        self.codes.insert(
            code.clone(),
            Code {
                openid: openid.to_owned(),
                scope: scope.to_owned(),
                expires: now + CODE_LIFETIME,
                used: false,
            },
        );
        code
    }
}

fn error(errcode: i64, errmsg: &str) -> ApiError {
    ApiError {
        errcode,
        errmsg: errmsg.to_owned(),
    }
}

impl Emulator {
    /// A web-authorization code for `openid` with `scope` (`snsapi_base` or
    /// `snsapi_userinfo`), as if the user had gone through the authorization page.
    pub fn oauth_code(&self, openid: &str, scope: &str) -> Result<String, String> {
        if openid.is_empty() {
            return Err("openid is empty".into());
        }
        if !SCOPES.contains(&scope) {
            return Err(format!(
                "scope {scope:?} is not snsapi_base or snsapi_userinfo"
            ));
        }
        let now = self.now();
        Ok(self.lock().oauth.code(openid, scope, now))
    }
}

/// `GET /connect/oauth2/authorize?appid&redirect_uri&response_type=code&scope&state[&openid]`:
/// 302 to `redirect_uri?code=CODE&state=STATE`, for `openid` (an emulator extension; default
/// the user at the browser, else the first follower).
pub(crate) async fn authorize(State(emu): State<Emulator>, RawQuery(q): RawQuery) -> Response {
    match authorize_location(&emu, q.as_deref()) {
        Ok(location) => (StatusCode::FOUND, [(header::LOCATION, location)]).into_response(),
        Err(e) => e.into_response(),
    }
}

fn authorize_location(emu: &Emulator, query: Option<&str>) -> Result<String, ApiError> {
    let q = parse_query(query);
    let appid = q
        .get("appid")
        .filter(|a| !a.is_empty())
        .ok_or_else(|| ApiError::new(41002))?;
    let configured = &emu.shared.settings.app_id;
    if !configured.is_empty() && appid != configured {
        return Err(ApiError::new(40013));
    }
    let mut redirect = q
        .get("redirect_uri")
        .and_then(|u| reqwest::Url::parse(u).ok())
        .filter(|u| matches!(u.scheme(), "http" | "https"))
        .ok_or_else(|| error(10003, "redirect_uri parameter error"))?;
    if q.get("response_type").map(String::as_str) != Some("code") {
        return Err(error(40097, "invalid args, response_type must be code"));
    }
    let scope = q
        .get("scope")
        .filter(|s| SCOPES.contains(&s.as_str()))
        .ok_or_else(|| error(10005, "invalid scope"))?;
    let openid = match q.get("openid").filter(|o| !o.is_empty()) {
        Some(openid) => openid.clone(),
        None => {
            let state = emu.lock();
            state
                .oauth
                .browser
                .clone()
                .or_else(|| state.users.first_follower())
                .ok_or_else(|| ApiError::new(40003))?
        }
    };
    let code = emu
        .oauth_code(&openid, scope)
        .map_err(|_| ApiError::new(40097))?;
    redirect
        .query_pairs_mut()
        .append_pair("code", &code)
        .append_pair(
            "state",
            q.get("state").map(String::as_str).unwrap_or_default(),
        );
    tracing::debug!(openid = %openid, scope = %scope, "emulator: web authorization granted");
    Ok(redirect.into())
}

/// `GET /sns/oauth2/access_token?appid&secret&code&grant_type=authorization_code`.
pub(crate) async fn access_token(State(emu): State<Emulator>, RawQuery(q): RawQuery) -> ApiResult {
    let q = parse_query(q.as_deref());
    emu.check_credentials(
        q.get("appid").map(String::as_str),
        q.get("secret").map(String::as_str),
    )?;
    let code = q
        .get("code")
        .filter(|c| !c.is_empty())
        .ok_or_else(|| ApiError::new(41008))?;
    if q.get("grant_type").map(String::as_str) != Some("authorization_code") {
        return Err(ApiError::new(40002));
    }
    let now = emu.now();
    let mut state = emu.lock();
    let entry = state
        .oauth
        .codes
        .get_mut(code)
        .filter(|c| c.expires > now)
        .ok_or_else(|| ApiError::new(40029))?;
    if entry.used {
        return Err(ApiError::new(40163));
    }
    entry.used = true;
    let (openid, scope) = (entry.openid.clone(), entry.scope.clone());
    let token = random_string(88, true);
    let refresh_token = random_string(88, true);
    state
        .oauth
        .tokens
        .retain(|_, t| t.expires + TOKEN_LIFETIME > now);
    state.oauth.tokens.insert(
        token.clone(),
        WebToken {
            openid: openid.clone(),
            scope: scope.clone(),
            expires: now + TOKEN_LIFETIME,
        },
    );
    Ok(Json(json!({
        "access_token": token,
        "expires_in": TOKEN_LIFETIME.as_secs(),
        "refresh_token": refresh_token,
        "openid": openid,
        "scope": scope,
    })))
}

/// `GET /sns/userinfo?access_token&openid&lang`.
pub(crate) async fn userinfo(State(emu): State<Emulator>, RawQuery(q): RawQuery) -> ApiResult {
    let q = parse_query(q.as_deref());
    let token = q
        .get("access_token")
        .filter(|t| !t.is_empty())
        .ok_or_else(|| ApiError::new(41001))?;
    let now = emu.now();
    let web = emu
        .lock()
        .oauth
        .tokens
        .get(token)
        .cloned()
        .ok_or_else(|| ApiError::new(40001))?;
    if web.expires <= now {
        return Err(ApiError::new(42001));
    }
    let openid = q
        .get("openid")
        .filter(|o| !o.is_empty())
        .ok_or_else(|| ApiError::new(41009))?;
    if *openid != web.openid {
        return Err(ApiError::new(40003));
    }
    if web.scope != "snsapi_userinfo" {
        return Err(ApiError::new(48001));
    }
    let tail: String = openid
        .chars()
        .rev()
        .take(4)
        .collect::<Vec<_>>()
        .into_iter()
        .rev()
        .collect();
    Ok(Json(json!({
        "openid": openid,
        "nickname": format!("huixin user {tail}"),
        "sex": 0,
        "province": "Guangdong",
        "city": "Shenzhen",
        "country": "CN",
        "headimgurl": "https://thirdwx.qlogo.cn/mmopen/huixin_emulated/132",
        "privilege": [],
    })))
}
