//! The custom menu (`/cgi-bin/menu/create`, `/cgi-bin/get_current_selfmenu_info` is the
//! console's; huixin uses `/cgi-bin/menu/get` and `/cgi-bin/menu/delete`).
//!
//! A menu has at most 3 buttons, each with at most 5 sub-buttons; WeChat checks the rest and
//! answers 40016–40027 for a malformed one. [`Menu::check`] catches the common mistakes before
//! the call, with a message that says which button.

use serde::{Deserialize, Serialize};

use super::{ApiError, Call, Client};

/// A menu (`{"button": [...]}`).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Menu {
    /// `button`: the top-level buttons (at most 3).
    #[serde(default)]
    pub button: Vec<Button>,
}

/// One button: a leaf with a `type`, or a group with `sub_button`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Button {
    /// `type`: `click`, `view`, `miniprogram`, `scancode_push`, `scancode_waitmsg`,
    /// `pic_sysphoto`, `pic_photo_or_album`, `pic_weixin`, `location_select`, `media_id`,
    /// `article_id`, `article_view_limited`; absent on a group.
    #[serde(rename = "type", default, skip_serializing_if = "Option::is_none")]
    pub kind: Option<String>,
    /// `name`: at most 16 bytes at the top level, 60 in a group.
    pub name: String,
    /// `key`: the EventKey of a click (and scan/picture/location) event.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub key: Option<String>,
    /// `url`: the page of a `view` button (and the fallback of a `miniprogram` one).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub url: Option<String>,
    /// `appid`: the mini program of a `miniprogram` button.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub appid: Option<String>,
    /// `pagepath`: the mini program page.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pagepath: Option<String>,
    /// `media_id`: of a `media_id` button.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub media_id: Option<String>,
    /// `article_id`: of an `article_id` button.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub article_id: Option<String>,
    /// `sub_button`: the buttons of a group (at most 5).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub sub_button: Vec<Button>,
}

const KEYED: [&str; 7] = [
    "click",
    "scancode_push",
    "scancode_waitmsg",
    "pic_sysphoto",
    "pic_photo_or_album",
    "pic_weixin",
    "location_select",
];

impl Button {
    fn check(&self, path: &str, top: bool) -> Result<(), String> {
        let limit = if top { 16 } else { 60 };
        if self.name.is_empty() {
            return Err(format!("{path}: name is empty"));
        }
        if self.name.len() > limit {
            return Err(format!(
                "{path} \"{}\": name is longer than {limit} bytes",
                self.name
            ));
        }
        if !self.sub_button.is_empty() {
            if !top {
                return Err(format!("{path}: a sub-button cannot have sub-buttons"));
            }
            if self.sub_button.len() > 5 {
                return Err(format!("{path} \"{}\": more than 5 sub-buttons", self.name));
            }
            for (i, sub) in self.sub_button.iter().enumerate() {
                sub.check(&format!("{path}.sub_button[{i}]"), false)?;
            }
            return Ok(());
        }
        let named = format!("{path} \"{}\"", self.name);
        let Some(kind) = self.kind.as_deref() else {
            return Err(format!("{named}: has neither a type nor sub-buttons"));
        };
        let need = |field: &Option<String>, what: &str| match field {
            Some(v) if !v.is_empty() => Ok(()),
            _ => Err(format!("{named}: a {kind} button needs {what}")),
        };
        match kind {
            k if KEYED.contains(&k) => {
                need(&self.key, "a key")?;
                if self.key.as_ref().is_some_and(|k| k.len() > 128) {
                    return Err(format!("{named}: key is longer than 128 bytes"));
                }
                Ok(())
            }
            "view" => need(&self.url, "a url"),
            "miniprogram" => {
                need(
                    &self.url,
                    "a url (shown where mini programs are not supported)",
                )?;
                need(&self.appid, "an appid")?;
                need(&self.pagepath, "a pagepath")
            }
            "media_id" => need(&self.media_id, "a media_id"),
            "article_id" | "article_view_limited" => need(&self.article_id, "an article_id"),
            other => Err(format!("{named}: unknown type \"{other}\"")),
        }
    }
}

impl Menu {
    /// Reads a menu from JSON: `{"button": [...]}` (the API's shape, also what `get` prints),
    /// or `{"menu": {"button": [...]}}` (the answer of `/cgi-bin/menu/get`).
    pub fn from_json(text: &str) -> Result<Self, String> {
        #[derive(Deserialize)]
        #[serde(untagged)]
        enum Shape {
            Wrapped { menu: Menu },
            Plain(Menu),
        }
        let value: serde_json::Value =
            serde_json::from_str(text).map_err(|e| format!("not JSON: {e}"))?;
        if value.get("button").is_none() && value.get("menu").is_none() {
            return Err("expected an object with \"button\" (or \"menu\": {\"button\": …})".into());
        }
        let menu = match serde_json::from_value::<Shape>(value).map_err(|e| e.to_string())? {
            Shape::Wrapped { menu } | Shape::Plain(menu) => menu,
        };
        menu.check()?;
        Ok(menu)
    }

    /// Checks the limits WeChat enforces, naming the offending button.
    pub fn check(&self) -> Result<(), String> {
        if self.button.is_empty() {
            return Err("the menu has no buttons (use `huixin menu delete` to remove it)".into());
        }
        if self.button.len() > 3 {
            return Err(format!(
                "a menu has at most 3 buttons, this one has {}",
                self.button.len()
            ));
        }
        for (i, button) in self.button.iter().enumerate() {
            button.check(&format!("button[{i}]"), true)?;
        }
        Ok(())
    }
}

#[derive(Deserialize)]
struct MenuAnswer {
    menu: Menu,
}

impl Client {
    /// Replaces the menu. Checked first ([`Menu::check`]); repeating it is harmless.
    pub async fn create_menu(&self, menu: &Menu) -> Result<(), ApiError> {
        menu.check().map_err(|detail| ApiError::Invalid {
            endpoint: "/cgi-bin/menu/create".into(),
            detail,
        })?;
        let body = serde_json::to_value(menu).unwrap_or_default();
        self.call_value(Call::post("/cgi-bin/menu/create", body).repeatable())
            .await?;
        Ok(())
    }

    /// The current menu; `None` when the account has none (46003).
    pub async fn menu(&self) -> Result<Option<Menu>, ApiError> {
        match self
            .call::<MenuAnswer>(Call::get("/cgi-bin/menu/get"))
            .await
        {
            Ok(answer) => Ok(Some(answer.menu)),
            Err(e) if e.errcode() == Some(46003) => Ok(None),
            Err(e) => Err(e),
        }
    }

    /// Removes the menu.
    pub async fn delete_menu(&self) -> Result<(), ApiError> {
        self.call_value(Call::get("/cgi-bin/menu/delete")).await?;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_both_shapes_and_writes_the_api_shape() {
        let plain = r#"{"button":[{"type":"click","name":"今日","key":"TODAY"},
            {"name":"更多","sub_button":[{"type":"view","name":"官网","url":"https://example.com/"}]}]}"#;
        let menu = Menu::from_json(plain).unwrap();
        assert_eq!(menu.button.len(), 2);
        assert_eq!(
            menu.button[1].sub_button[0].url.as_deref(),
            Some("https://example.com/")
        );
        let wrapped = format!(r#"{{"menu":{plain}}}"#);
        assert_eq!(Menu::from_json(&wrapped).unwrap(), menu);
        let json = serde_json::to_value(&menu).unwrap();
        assert_eq!(
            json,
            serde_json::json!({"button":[{"type":"click","name":"今日","key":"TODAY"},
                {"name":"更多","sub_button":[{"type":"view","name":"官网","url":"https://example.com/"}]}]})
        );
    }

    #[test]
    fn names_the_offending_button() {
        let cases = [
            (r#"{"button":[]}"#, "no buttons"),
            (
                r#"{"button":[{"type":"click","name":"a","key":"k"},{"type":"click","name":"b","key":"k"},{"type":"click","name":"c","key":"k"},{"type":"click","name":"d","key":"k"}]}"#,
                "at most 3",
            ),
            (
                r#"{"button":[{"type":"click","name":"a"}]}"#,
                "button[0] \"a\": a click button needs a key",
            ),
            (
                r#"{"button":[{"name":"g","sub_button":[{"type":"view","name":"v"}]}]}"#,
                "button[0].sub_button[0] \"v\": a view button needs a url",
            ),
            (
                r#"{"button":[{"type":"teleport","name":"t","key":"k"}]}"#,
                "unknown type \"teleport\"",
            ),
            (
                r#"{"button":[{"name":"x"}]}"#,
                "neither a type nor sub-buttons",
            ),
            (
                r#"{"button":[{"type":"click","name":"一二三四五六","key":"k"}]}"#,
                "longer than 16 bytes",
            ),
            (r#"[1,2]"#, "expected an object"),
            (r#"{"button":"#, "not JSON"),
        ];
        for (json, expected) in cases {
            let err = Menu::from_json(json).unwrap_err();
            assert!(err.contains(expected), "{json}: {err}");
        }
    }
}
