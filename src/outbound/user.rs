//! Followers: one user's profile (`/cgi-bin/user/info`) and the follower list
//! (`/cgi-bin/user/get`, 10,000 OpenIDs a page).
//!
//! Since December 2021 WeChat no longer returns a follower's nickname or avatar here; the
//! fields stay in the type for the accounts and emulators that still send them.

use serde::{Deserialize, Serialize};

use super::{ApiError, Call, Client};

/// A user's profile as the account sees it.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct UserInfo {
    /// `subscribe`: 1 while the user follows the account, 0 otherwise (the rest is then absent).
    #[serde(default)]
    pub subscribe: u8,
    /// `openid`.
    #[serde(default)]
    pub openid: String,
    /// `nickname` (no longer sent by WeChat).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub nickname: Option<String>,
    /// `headimgurl` (no longer sent by WeChat).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub headimgurl: Option<String>,
    /// `language`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub language: Option<String>,
    /// `subscribe_time`: Unix seconds of the latest follow.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub subscribe_time: Option<i64>,
    /// `unionid`: when the account is bound to an Open Platform account.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub unionid: Option<String>,
    /// `remark`: the operator's note on the user.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub remark: Option<String>,
    /// `groupid`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub groupid: Option<i64>,
    /// `tagid_list`.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub tagid_list: Vec<i64>,
    /// `subscribe_scene`: how the user came, e.g. `ADD_SCENE_QR_CODE`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub subscribe_scene: Option<String>,
    /// `qr_scene`: the numeric scene of the code the user followed through.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub qr_scene: Option<i64>,
    /// `qr_scene_str`: the string scene.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub qr_scene_str: Option<String>,
}

impl UserInfo {
    /// Whether the user follows the account.
    pub fn follows(&self) -> bool {
        self.subscribe == 1
    }
}

/// One page of the follower list.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct FollowerPage {
    /// `total`: followers in all.
    #[serde(default)]
    pub total: u64,
    /// `count`: OpenIDs on this page.
    #[serde(default)]
    pub count: u64,
    /// `data.openid`: this page's OpenIDs.
    #[serde(default, rename = "data", with = "openids")]
    pub openids: Vec<String>,
    /// `next_openid`: where the next page starts; empty after the last page.
    #[serde(default)]
    pub next_openid: String,
}

mod openids {
    use serde::{Deserialize, Deserializer, Serialize, Serializer};

    #[derive(Serialize, Deserialize, Default)]
    struct Data {
        #[serde(default)]
        openid: Vec<String>,
    }

    pub fn serialize<S: Serializer>(ids: &[String], s: S) -> Result<S::Ok, S::Error> {
        Data {
            openid: ids.to_vec(),
        }
        .serialize(s)
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Vec<String>, D::Error> {
        // An empty page has no `data` at all, or `data: {}`.
        Ok(Option::<Data>::deserialize(d)?.unwrap_or_default().openid)
    }
}

impl Client {
    /// A user's profile (`lang=zh_CN`).
    pub async fn user_info(&self, openid: &str) -> Result<UserInfo, ApiError> {
        self.call(
            Call::get("/cgi-bin/user/info")
                .query("openid", openid)
                .query("lang", "zh_CN"),
        )
        .await
    }

    /// A page of followers, from the start (`next_openid` empty) or after `next_openid`.
    pub async fn followers(&self, next_openid: &str) -> Result<FollowerPage, ApiError> {
        let mut call = Call::get("/cgi-bin/user/get");
        if !next_openid.is_empty() {
            call = call.query("next_openid", next_openid);
        }
        self.call(call).await
    }

    /// Every follower, page by page.
    pub async fn all_followers(&self) -> Result<Vec<String>, ApiError> {
        let mut all = Vec::new();
        let mut next = String::new();
        loop {
            let page = self.followers(&next).await?;
            let done = page.count == 0 || page.next_openid.is_empty() || page.next_openid == next;
            all.extend(page.openids);
            if done || all.len() as u64 >= page.total {
                return Ok(all);
            }
            next = page.next_openid;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_pages_with_and_without_data() {
        let page: FollowerPage = serde_json::from_str(
            r#"{"total":2,"count":2,"data":{"openid":["a","b"]},"next_openid":"b"}"#,
        )
        .unwrap();
        assert_eq!(page.openids, ["a", "b"]);
        let last: FollowerPage =
            serde_json::from_str(r#"{"total":2,"count":0,"next_openid":""}"#).unwrap();
        assert!(last.openids.is_empty());
    }

    #[test]
    fn reads_a_user_who_left() {
        let user: UserInfo = serde_json::from_str(r#"{"subscribe":0,"openid":"o1"}"#).unwrap();
        assert!(!user.follows());
    }
}
