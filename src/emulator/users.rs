//! Users: who follows, when each last interacted (the 48 h customer-service window), what
//! each received. `GET /cgi-bin/user/info` and `GET /cgi-bin/user/get`.

use std::collections::HashMap;
use std::time::Duration;

use axum::Json;
use axum::extract::{RawQuery, State};
use serde_json::json;

use super::Emulator;
use super::api::{ApiError, ApiResult, parse_query};
use super::state::Delivered;

/// Followers per page of `user/get`.
pub(crate) const PAGE: usize = 10_000;
/// How long after a user's last interaction customer-service messages may be sent.
pub(crate) const SERVICE_WINDOW: Duration = Duration::from_secs(48 * 3600);

/// One user.
#[derive(Debug, Clone)]
pub(crate) struct User {
    pub following: bool,
    /// Emulator time of the last message or event from the user.
    pub last_interaction: Option<Duration>,
    /// Unix seconds of the (last) follow.
    pub subscribe_time: u64,
    /// The QR scene the user followed through, if any.
    pub qr_scene: Option<String>,
    /// The nickname `user/info` answers (WeChat stopped giving nicknames in 2021; tests set
    /// one to see how it is shown).
    pub nickname: Option<String>,
    /// Creation order: the stable order of `user/get`.
    order: u64,
    pub inbox: Vec<Delivered>,
}

/// Every user the emulator knows.
#[derive(Debug, Default)]
pub(crate) struct Users {
    map: HashMap<String, User>,
    next_order: u64,
}

impl Users {
    pub fn get(&self, openid: &str) -> Option<&User> {
        self.map.get(openid)
    }

    pub fn get_mut(&mut self, openid: &str) -> Option<&mut User> {
        self.map.get_mut(openid)
    }

    pub fn len(&self) -> usize {
        self.map.len()
    }

    /// The user, created (not following, never interacted) if unknown.
    pub fn entry(&mut self, openid: &str) -> &mut User {
        let order = self.next_order;
        self.map.entry(openid.to_owned()).or_insert_with(|| {
            self.next_order += 1;
            User {
                following: false,
                last_interaction: None,
                subscribe_time: 0,
                qr_scene: None,
                nickname: None,
                order,
                inbox: Vec::new(),
            }
        })
    }

    /// Sets a user's following state and last interaction, creating the user if needed.
    pub fn upsert(
        &mut self,
        openid: &str,
        following: bool,
        last_interaction: Option<Duration>,
        unix_ms: u64,
    ) {
        let user = self.entry(openid);
        if following && !user.following {
            user.subscribe_time = unix_ms / 1000;
        }
        user.following = following;
        user.last_interaction = last_interaction;
    }

    /// Followers in a stable order (the order they became known).
    pub fn followers(&self) -> Vec<&str> {
        let mut list: Vec<(&String, &User)> =
            self.map.iter().filter(|(_, u)| u.following).collect();
        list.sort_by_key(|(_, u)| u.order);
        list.into_iter().map(|(id, _)| id.as_str()).collect()
    }

    /// The first follower, for OAuth's default user.
    pub fn first_follower(&self) -> Option<String> {
        self.followers().first().map(|s| (*s).to_owned())
    }

    /// Whether a customer-service message may reach `openid` now: 40003 unknown, 43004 not
    /// following, 45015 out of the 48 h window.
    pub fn check_reachable(&self, openid: &str, now: Duration) -> Result<(), ApiError> {
        let user = self.map.get(openid).ok_or_else(|| ApiError::new(40003))?;
        if !user.following {
            return Err(ApiError::new(43004));
        }
        match user.last_interaction {
            Some(at) if now.saturating_sub(at) <= SERVICE_WINDOW => Ok(()),
            _ => Err(ApiError::new(45015)),
        }
    }

    /// `user/get`: up to [`PAGE`] followers after `next_openid`.
    fn page(&self, next_openid: &str) -> Result<(usize, Vec<String>), ApiError> {
        let after = if next_openid.is_empty() {
            None
        } else {
            Some(
                self.map
                    .get(next_openid)
                    .ok_or_else(|| ApiError::new(40003))?
                    .order,
            )
        };
        let mut list: Vec<(&String, &User)> =
            self.map.iter().filter(|(_, u)| u.following).collect();
        list.sort_by_key(|(_, u)| u.order);
        let total = list.len();
        let page = list
            .into_iter()
            .filter(|(_, u)| after.is_none_or(|a| u.order > a))
            .take(PAGE)
            .map(|(id, _)| id.clone())
            .collect();
        Ok((total, page))
    }
}

/// `GET /cgi-bin/user/info?access_token=&openid=&lang=zh_CN`.
pub(crate) async fn info(State(emu): State<Emulator>, RawQuery(q): RawQuery) -> ApiResult {
    let q = parse_query(q.as_deref());
    emu.check_token(&q)?;
    let openid = q
        .get("openid")
        .filter(|o| !o.is_empty())
        .ok_or_else(|| ApiError::new(41009))?;
    let language = match q.get("lang").map(String::as_str) {
        Some(l @ ("zh_CN" | "zh_TW" | "en")) => l.to_owned(),
        _ => "zh_CN".to_owned(),
    };
    let state = emu.lock();
    let user = state
        .users
        .get(openid)
        .ok_or_else(|| ApiError::new(40003))?;
    if !user.following {
        return Ok(Json(json!({ "subscribe": 0, "openid": openid })));
    }
    let scene = user.qr_scene.clone().unwrap_or_default();
    let (qr_scene, qr_scene_str) = match scene.parse::<u64>() {
        Ok(id) => (id, String::new()),
        Err(_) => (0, scene),
    };
    let mut info = json!({
        "subscribe": 1,
        "openid": openid,
        "language": language,
        "subscribe_time": user.subscribe_time,
        "remark": "",
        "groupid": 0,
        "tagid_list": [],
        "subscribe_scene": "ADD_SCENE_QR_CODE",
        "qr_scene": qr_scene,
        "qr_scene_str": qr_scene_str,
    });
    if let Some(nickname) = &user.nickname {
        info["nickname"] = json!(nickname);
    }
    Ok(Json(info))
}

/// `GET /cgi-bin/user/get?access_token=&next_openid=`.
pub(crate) async fn list(State(emu): State<Emulator>, RawQuery(q): RawQuery) -> ApiResult {
    let q = parse_query(q.as_deref());
    emu.check_token(&q)?;
    let next = q.get("next_openid").map(String::as_str).unwrap_or_default();
    let (total, page) = emu.lock().users.page(next)?;
    let next_openid = page.last().cloned().unwrap_or_default();
    Ok(Json(json!({
        "total": total,
        "count": page.len(),
        "data": { "openid": page },
        "next_openid": next_openid,
    })))
}
