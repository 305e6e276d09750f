//! Filters decide which handler sees a message. They are data evaluated in Rust: message type,
//! event (case-insensitive), event key, content (exact, contains, prefix, regex with captures),
//! user, and their combinations. A regex is compiled once, when the filter is built.

use std::collections::{BTreeMap, HashSet};
use std::fmt;
use std::sync::Arc;

use regex::Regex;

use crate::wechat::Message;

/// Regex capture groups from the filter that matched: group 0 is the whole match.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Captures {
    /// Numbered groups; `None` where a group did not take part in the match.
    pub groups: Vec<Option<String>>,
    /// Named groups that matched.
    pub named: BTreeMap<String, String>,
}

impl Captures {
    /// Group `i` (0 = the whole match).
    pub fn get(&self, i: usize) -> Option<&str> {
        self.groups.get(i).and_then(|g| g.as_deref())
    }

    /// A named group.
    pub fn name(&self, name: &str) -> Option<&str> {
        self.named.get(name).map(String::as_str)
    }

    /// Whether nothing was captured.
    pub fn is_empty(&self) -> bool {
        self.groups.is_empty() && self.named.is_empty()
    }

    fn from_regex(re: &Regex, caps: &regex::Captures<'_>) -> Self {
        let groups = caps
            .iter()
            .map(|m| m.map(|m| m.as_str().to_owned()))
            .collect();
        let named = re
            .capture_names()
            .flatten()
            .filter_map(|n| caps.name(n).map(|m| (n.to_owned(), m.as_str().to_owned())))
            .collect();
        Self { groups, named }
    }

    fn merge(&mut self, other: Captures) {
        if self.groups.is_empty() {
            self.groups = other.groups;
        }
        self.named.extend(other.named);
    }
}

/// How a text (content, event key) is matched.
#[derive(Clone)]
pub enum TextMatch {
    /// Equal after trimming surrounding whitespace.
    Exact(String),
    /// Contains the substring.
    Contains(String),
    /// Starts with the prefix (after trimming leading whitespace).
    Prefix(String),
    /// Matches the regex; its captures are handed to the handler.
    Regex(Regex),
}

impl TextMatch {
    /// A regex match; the pattern is compiled now.
    pub fn regex(pattern: &str) -> Result<Self, regex::Error> {
        Regex::new(pattern).map(Self::Regex)
    }

    /// Matches `text`, returning captures (empty unless a regex).
    pub fn matches(&self, text: &str) -> Option<Captures> {
        let hit = match self {
            Self::Exact(s) => text.trim() == s,
            Self::Contains(s) => text.contains(s.as_str()),
            Self::Prefix(s) => text.trim_start().starts_with(s.as_str()),
            Self::Regex(re) => return re.captures(text).map(|c| Captures::from_regex(re, &c)),
        };
        hit.then(Captures::default)
    }
}

impl fmt::Debug for TextMatch {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Exact(s) => write!(f, "exact({s:?})"),
            Self::Contains(s) => write!(f, "contains({s:?})"),
            Self::Prefix(s) => write!(f, "prefix({s:?})"),
            Self::Regex(re) => write!(f, "regex({:?})", re.as_str()),
        }
    }
}

/// A predicate on a message.
#[derive(Clone)]
pub enum Filter {
    /// Every message.
    Any,
    /// `MsgType` equals this (case-insensitive), e.g. `text`, `event`.
    MsgType(String),
    /// An event of this name (case-insensitive): `subscribe`, `SCAN`, `click`, …
    Event(String),
    /// The event key (see [`Message::event_key`]) matches.
    EventKey(TextMatch),
    /// A text message whose content matches.
    Content(TextMatch),
    /// From one of these OpenIDs.
    User(Arc<HashSet<String>>),
    /// All of these (captures merged, first regex's groups kept).
    All(Vec<Filter>),
    /// The first of these that matches.
    AnyOf(Vec<Filter>),
    /// Not this one.
    Not(Box<Filter>),
    /// A custom predicate.
    Custom(Arc<dyn Fn(&Message) -> bool + Send + Sync>),
}

impl fmt::Debug for Filter {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Any => write!(f, "any"),
            Self::MsgType(t) => write!(f, "msg_type({t:?})"),
            Self::Event(e) => write!(f, "event({e:?})"),
            Self::EventKey(m) => write!(f, "event_key({m:?})"),
            Self::Content(m) => write!(f, "content({m:?})"),
            Self::User(u) => write!(f, "user({} ids)", u.len()),
            Self::All(v) => f.debug_tuple("all").field(v).finish(),
            Self::AnyOf(v) => f.debug_tuple("any_of").field(v).finish(),
            Self::Not(x) => f.debug_tuple("not").field(x).finish(),
            Self::Custom(_) => write!(f, "custom"),
        }
    }
}

impl Filter {
    /// Evaluates the filter; `Some(captures)` when it matches.
    pub fn matches(&self, msg: &Message) -> Option<Captures> {
        match self {
            Self::Any => Some(Captures::default()),
            Self::MsgType(t) => msg
                .kind
                .msg_type()
                .eq_ignore_ascii_case(t)
                .then(Captures::default),
            Self::Event(name) => msg
                .event()
                .filter(|e| e.name().eq_ignore_ascii_case(name))
                .map(|_| Captures::default()),
            Self::EventKey(m) => msg.event_key().and_then(|k| m.matches(k)),
            Self::Content(m) => msg.content().and_then(|c| m.matches(c)),
            Self::User(ids) => ids.contains(msg.from.as_str()).then(Captures::default),
            Self::All(filters) => {
                let mut caps = Captures::default();
                for f in filters {
                    caps.merge(f.matches(msg)?);
                }
                Some(caps)
            }
            Self::AnyOf(filters) => filters.iter().find_map(|f| f.matches(msg)),
            Self::Not(f) => match f.matches(msg) {
                Some(_) => None,
                None => Some(Captures::default()),
            },
            Self::Custom(pred) => pred(msg).then(Captures::default),
        }
    }

    /// Both this and `other`.
    pub fn and(self, other: Filter) -> Filter {
        match self {
            Self::All(mut v) => {
                v.push(other);
                Self::All(v)
            }
            f => Self::All(vec![f, other]),
        }
    }

    /// This or `other`.
    pub fn or(self, other: Filter) -> Filter {
        match self {
            Self::AnyOf(mut v) => {
                v.push(other);
                Self::AnyOf(v)
            }
            f => Self::AnyOf(vec![f, other]),
        }
    }

    /// The negation.
    #[allow(clippy::should_implement_trait)]
    pub fn not(self) -> Filter {
        Self::Not(Box::new(self))
    }
}

/// Every message.
pub fn any() -> Filter {
    Filter::Any
}

/// Messages of a `MsgType` (`text`, `image`, `voice`, `video`, `shortvideo`, `location`,
/// `link`, `miniprogrampage`, `event`, or any type WeChat adds).
pub fn msg_type(t: &str) -> Filter {
    Filter::MsgType(t.to_owned())
}

/// Text messages.
pub fn text() -> Filter {
    msg_type("text")
}

/// Events named `name`, case-insensitively (`subscribe`, `SCAN`, `CLICK`, …).
pub fn event(name: &str) -> Filter {
    Filter::Event(name.to_owned())
}

/// Events whose key equals `key`. A subscribe's key is its QR scene without `qrscene_`.
pub fn event_key(key: &str) -> Filter {
    Filter::EventKey(TextMatch::Exact(key.to_owned()))
}

/// Events whose key matches the regex.
pub fn event_key_regex(pattern: &str) -> Result<Filter, regex::Error> {
    TextMatch::regex(pattern).map(Filter::EventKey)
}

/// Text messages whose content, trimmed, equals `s`.
pub fn content(s: &str) -> Filter {
    Filter::Content(TextMatch::Exact(s.to_owned()))
}

/// Text messages containing `s`.
pub fn content_contains(s: &str) -> Filter {
    Filter::Content(TextMatch::Contains(s.to_owned()))
}

/// Text messages starting with `s`.
pub fn content_prefix(s: &str) -> Filter {
    Filter::Content(TextMatch::Prefix(s.to_owned()))
}

/// Text messages matching the regex; captures reach the handler.
pub fn content_regex(pattern: &str) -> Result<Filter, regex::Error> {
    TextMatch::regex(pattern).map(Filter::Content)
}

/// Messages from any of these OpenIDs.
pub fn user<I, S>(ids: I) -> Filter
where
    I: IntoIterator<Item = S>,
    S: Into<String>,
{
    Filter::User(Arc::new(ids.into_iter().map(Into::into).collect()))
}

/// A custom predicate.
pub fn custom(pred: impl Fn(&Message) -> bool + Send + Sync + 'static) -> Filter {
    Filter::Custom(Arc::new(pred))
}
