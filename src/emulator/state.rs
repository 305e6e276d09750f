//! The emulator's memory: one struct behind one lock, never held across an `.await`.

use std::collections::{HashMap, VecDeque};
use std::time::Duration;

use serde::{Deserialize, Serialize};
use serde_json::{Value, json};

use super::media::Media;
use super::oauth::OAuth;
use super::qrcode::QrCodes;
use super::record::{CallRecord, Fault};
use super::tokens::Tokens;
use super::users::Users;
use super::{BUILTIN_TEMPLATE_ID, Settings};

/// Most calls remembered; older ones are dropped first.
pub(crate) const MAX_CALLS: usize = 100_000;

/// Something a user received.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq)]
pub struct Delivered {
    /// Increases with every delivery (across users).
    pub seq: u64,
    /// When, in Unix milliseconds (emulator clock).
    pub at_ms: u64,
    /// `passive` (a reply to the user's message), `custom` (customer-service API) or
    /// `template` (template message API).
    pub kind: String,
    /// The passive reply as [`crate::wechat::Reply`] JSON; for the APIs, the request body
    /// (plus `msgid` for template messages).
    pub body: Value,
}

/// Everything the emulator knows.
pub(crate) struct State {
    pub calls: VecDeque<CallRecord>,
    pub next_call: u64,
    pub faults: Vec<Fault>,
    pub tokens: Tokens,
    pub users: Users,
    pub next_delivery: u64,
    /// `template_list` entries.
    pub templates: Vec<Value>,
    /// `client_msg_id` of recent template sends.
    pub client_msg_ids: RecentIds,
    /// The next template `msgid`.
    pub next_msgid: u64,
    /// `{"button": [...]}` as created.
    pub menu: Option<Value>,
    pub qrcodes: QrCodes,
    pub media: Media,
    pub oauth: OAuth,
}

impl State {
    pub fn new(settings: &Settings, now: Duration, unix_ms: u64) -> Self {
        let mut users = Users::default();
        for openid in &settings.followers {
            users.upsert(openid, true, Some(now), unix_ms);
        }
        let mut templates = vec![push_template(BUILTIN_TEMPLATE_ID)];
        for id in &settings.templates {
            if !templates
                .iter()
                .any(|t| t.get("template_id").and_then(Value::as_str) == Some(id.as_str()))
            {
                templates.push(push_template(id));
            }
        }
        Self {
            calls: VecDeque::new(),
            next_call: 1,
            faults: Vec::new(),
            tokens: Tokens::default(),
            users,
            next_delivery: 1,
            templates,
            client_msg_ids: RecentIds::default(),
            // Real msgids are large; start somewhere random so ids differ between runs.
            next_msgid: 2_000_000_000_000_000 + rand::random::<u32>() as u64 * 1_000,
            menu: None,
            qrcodes: QrCodes::default(),
            media: Media::default(),
            oauth: OAuth::default(),
        }
    }

    /// Appends a call to the log, numbering it.
    pub fn record(&mut self, mut call: CallRecord) {
        call.seq = self.next_call;
        self.next_call += 1;
        if self.calls.len() >= MAX_CALLS {
            self.calls.pop_front();
        }
        self.calls.push_back(call);
    }

    /// Puts something in `openid`'s inbox (the user must exist; unknown users get nothing).
    pub fn deliver(&mut self, openid: &str, kind: &str, body: Value, at_ms: u64) {
        let seq = self.next_delivery;
        if let Some(user) = self.users.get_mut(openid) {
            self.next_delivery += 1;
            user.inbox.push(Delivered {
                seq,
                at_ms,
                kind: kind.to_owned(),
                body,
            });
        }
    }

    /// Takes the first queued fault for `path` (one use of it).
    pub fn take_fault(&mut self, path: &str) -> Option<Fault> {
        let index = self.faults.iter().position(|f| f.path == path)?;
        let fault = &mut self.faults[index];
        let taken = fault.clone();
        fault.count = fault.count.saturating_sub(1);
        if fault.count == 0 {
            self.faults.remove(index);
        }
        Some(taken)
    }
}

/// A template with the fields huixin's pushes fill, as `template_list` lists it.
fn push_template(id: &str) -> Value {
    json!({
        "template_id": id,
        "title": "huixin notice",
        "primary_industry": "IT",
        "deputy_industry": "Internet",
        "content": "{{title.DATA}}\n{{summary.DATA}}\n{{time.DATA}}",
        "example": "",
    })
}

/// Ids remembered for a while, forgotten oldest first (constant time per send, however many).
#[derive(Default)]
pub(crate) struct RecentIds {
    seen: HashMap<String, Duration>,
    order: VecDeque<(Duration, String)>,
}

impl RecentIds {
    /// Remembers `id` at `now` after forgetting those older than `memory`; false when it was
    /// already remembered.
    pub fn insert(&mut self, id: &str, now: Duration, memory: Duration) -> bool {
        while let Some((at, old)) = self.order.front() {
            if now.saturating_sub(*at) < memory {
                break;
            }
            if self.seen.get(old) == Some(at) {
                self.seen.remove(old);
            }
            self.order.pop_front();
        }
        if self.seen.contains_key(id) {
            return false;
        }
        self.seen.insert(id.to_owned(), now);
        self.order.push_back((now, id.to_owned()));
        true
    }
}
