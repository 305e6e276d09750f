//! Trying the rules offline on a made-up message, with sends shown instead of made: what
//! `huixin rules test` prints and the console's rules page shows.

use std::path::PathBuf;
use std::sync::Arc;

use clap::Parser;

use super::{Header, MessageSpec};
use crate::outbound::script::DryRun;
use crate::rules::Rules;
use crate::rules::context::Services;
use crate::store::{Store, StoreError};
use crate::wechat::{Message, Reply};

/// The message kinds a trial takes, as `huixin rules test` names them.
pub fn kinds() -> impl Iterator<Item = &'static str> {
    crate::wechat::message::MSG_TYPES
        .into_iter()
        .filter(|t| !matches!(*t, "miniprogrampage" | "event"))
        .chain(EVENT_KINDS.iter().copied())
}

/// The events among [`kinds`].
pub const EVENT_KINDS: &[&str] = &["subscribe", "unsubscribe", "scan", "click", "view"];

/// The made-up message for `kind` and `value` (as `huixin rules test <kind> [value]`): the
/// text, a media id, a location's label, a URL, a scene or an event key. Any other kind is an
/// event of that name with `value` as its key.
pub fn spec_for(kind: &str, value: Option<&str>) -> Result<MessageSpec, String> {
    let kind_lc = kind.to_ascii_lowercase();
    let mut argv: Vec<String> = vec!["rules-test".into()];
    let with = |flag: &str| -> Vec<String> {
        match value {
            Some(v) => vec![kind_lc.clone(), flag.into(), v.into()],
            None => vec![kind_lc.clone()],
        }
    };
    argv.extend(match kind_lc.as_str() {
        "text" => vec!["text".into(), value.unwrap_or_default().into()],
        "image" | "voice" | "video" | "shortvideo" => with("--media-id"),
        "location" => with("--label"),
        "link" => with("--url"),
        "subscribe" => with("--scene"),
        "unsubscribe" => vec!["unsubscribe".into()],
        "scan" | "click" | "view" => match value {
            Some(v) => vec![kind_lc.clone(), v.into()],
            None => return Err(format!("`{kind}` needs a value (the scene, key or URL)")),
        },
        _ => {
            let mut v = vec!["event".into(), kind.into()];
            if let Some(key) = value {
                v.extend(["--key".into(), key.into()]);
            }
            v
        }
    });
    #[derive(Parser)]
    struct SpecOnly {
        #[command(subcommand)]
        spec: MessageSpec,
    }
    SpecOnly::try_parse_from(argv)
        .map(|s| s.spec)
        .map_err(|e| e.to_string())
}

/// The message `spec` would be, from `from`.
pub fn message(spec: &MessageSpec, from: &str) -> Result<Message, String> {
    let xml = spec
        .to_xml(&Header::new("gh_huixin_rules_test", from))
        .map_err(|e| e.to_string())?;
    Message::parse(xml.as_bytes()).map_err(|e| format!("cannot build that message: {e}"))
}

/// What a trial produced.
#[derive(Debug, Clone)]
pub struct Trial {
    /// The message, described in a few words.
    pub message: String,
    /// The reply (`success` when no rule replied).
    pub reply: Reply,
    /// The rule that replied (`file:line`).
    pub replied_by: Option<String>,
    /// A script failure (`file:line: message`); the reply is then the fallback.
    pub error: Option<String>,
    /// The sends the rules would have made, one line each.
    pub sends: Vec<String>,
    /// How rendering for WeChat would adjust the reply.
    pub notes: Vec<String>,
}

/// Runs `rules` on `message` with `store` (a throwaway one, normally: see [`Scratch`]); sends
/// are recorded, not made.
pub async fn run(rules: &Rules, message: Message, store: Option<Store>) -> Trial {
    let dry_run = DryRun::default();
    let mut extensions = axum::http::Extensions::new();
    extensions.insert(dry_run.clone());
    let services = Services {
        store,
        extensions: Arc::new(extensions),
        ..Services::default()
    };
    let described = describe(&message);
    let message = Arc::new(message);
    let outcome = rules.run(Arc::clone(&message), services).await;
    let notes = outcome
        .reply
        .render_for(&message, 0)
        .notes
        .iter()
        .map(ToString::to_string)
        .collect();
    Trial {
        message: described,
        replied_by: outcome.replied_by.map(|o| o.to_string()),
        error: outcome.error.map(|e| e.to_string()),
        sends: dry_run.sent(),
        notes,
        reply: outcome.reply,
    }
}

/// A message in a few words: `text "hi"`, `event CLICK (key "K")`.
pub fn describe(m: &Message) -> String {
    match (m.content(), m.event_name(), m.event_key()) {
        (Some(text), _, _) => format!("text {text:?}"),
        (None, Some(event), Some(key)) => format!("event {event} (key {key:?})"),
        (None, Some(event), None) => format!("event {event}"),
        _ => m.msg_type().to_owned(),
    }
}

/// A throwaway store in a fresh folder under the system's temp dir, removed when dropped:
/// trying rules must not touch real sessions.
pub struct Scratch {
    dir: PathBuf,
    store: Store,
}

impl Scratch {
    /// Opens one.
    pub async fn open() -> Result<Self, StoreError> {
        let dir = std::env::temp_dir().join(format!(
            "huixin-rules-test-{}-{:016x}",
            std::process::id(),
            rand::random::<u64>()
        ));
        std::fs::create_dir_all(&dir).map_err(|source| StoreError::Permissions {
            path: dir.clone(),
            source,
        })?;
        let url = format!("sqlite://{}", dir.join("rules-test.db").display());
        match Store::open(&url).await {
            Ok(store) => Ok(Self { dir, store }),
            Err(e) => {
                let _ = std::fs::remove_dir_all(&dir);
                Err(e)
            }
        }
    }

    /// The store.
    pub fn store(&self) -> &Store {
        &self.store
    }
}

impl Drop for Scratch {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn kinds_make_messages() {
        for kind in kinds() {
            let value = match kind {
                "scan" | "click" => Some("k"),
                "view" => Some("https://example.com/"),
                _ => None,
            };
            let spec = spec_for(kind, value).unwrap_or_else(|e| panic!("{kind}: {e}"));
            message(&spec, "o_user").unwrap_or_else(|e| panic!("{kind}: {e}"));
        }
        assert!(spec_for("click", None).is_err());
        let custom = spec_for("WeAppAuditSuccess", Some("x")).unwrap();
        let m = message(&custom, "o_user").unwrap();
        assert_eq!(describe(&m), "event WeAppAuditSuccess (key \"x\")");
    }
}
