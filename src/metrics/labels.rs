//! Label sets, each from a bounded set of values: `&'static str`s chosen by huixin, rules as
//! `file:line` of loaded rules, errcodes, axum's route templates.

use std::fmt::{self, Write as _};
use std::hash::{Hash, Hasher};
use std::sync::Arc;

use axum::extract::MatchedPath;
use prometheus_client::encoding::{EncodeLabelSet, EncodeLabelValue, LabelValueEncoder};

use crate::wechat::message::{EVENT_NAMES, Event, MessageKind};

/// `msg_type`, `event`.
#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
pub(super) struct MessageLabels {
    pub msg_type: &'static str,
    pub event: &'static str,
}

/// `outcome`, `rule`.
#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
pub(super) struct ReplyLabels {
    pub outcome: &'static str,
    pub rule: RuleLabel,
}

/// `how`.
#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
pub(super) struct HowLabels {
    pub how: &'static str,
}

/// `way`.
#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
pub(super) struct WayLabels {
    pub way: &'static str,
}

/// `source`.
#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
pub(super) struct SourceLabels {
    pub source: &'static str,
}

/// `state`.
#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
pub(super) struct StateLabels {
    pub state: &'static str,
}

/// `result`.
#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
pub(super) struct ResultLabels {
    pub result: &'static str,
}

/// `api`.
#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
pub(super) struct ApiLabels {
    pub api: &'static str,
}

/// `api`, `errcode`.
#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
pub(super) struct ApiErrorLabels {
    pub api: &'static str,
    pub errcode: ErrCode,
}

/// `route`, `status`.
#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
pub(super) struct HttpLabels {
    pub route: RouteLabel,
    pub status: &'static str,
}

/// `route`.
#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
pub(super) struct RouteLabels {
    pub route: RouteLabel,
}

/// `version`.
#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
pub(super) struct VersionLabels {
    pub version: &'static str,
}

/// Who replied to a message, as the `rule` label.
#[derive(Debug, Clone, Hash, PartialEq, Eq)]
pub enum RuleLabel {
    /// No rule: a route of the app's own, the fallback, or `success` because nothing
    /// replied (`none`).
    None,
    /// A named replier that is not a rule (`webhook`).
    Named(&'static str),
    /// A loaded rule, `file:line` of its declaration.
    Rule {
        /// The file, relative to the rules folder.
        file: Arc<str>,
        /// The line of the declaration.
        line: usize,
    },
}

impl fmt::Display for RuleLabel {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::None => f.write_str("none"),
            Self::Named(name) => f.write_str(name),
            Self::Rule { file, line } => write!(f, "{file}:{line}"),
        }
    }
}

impl EncodeLabelValue for RuleLabel {
    fn encode(&self, encoder: &mut LabelValueEncoder) -> Result<(), fmt::Error> {
        write!(encoder, "{self}")
    }
}

/// An errcode label: WeChat's code, or what failed when WeChat gave none.
#[derive(Debug, Clone, Copy, Hash, PartialEq, Eq)]
pub enum ErrCode {
    /// WeChat's `errcode`.
    Code(i64),
    /// No answer (`network`), an HTTP error status (`http`), an answer that was not what the
    /// API documents (`decode`), or another failure (`other`).
    Other(&'static str),
}

impl fmt::Display for ErrCode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Code(code) => write!(f, "{code}"),
            Self::Other(what) => f.write_str(what),
        }
    }
}

impl EncodeLabelValue for ErrCode {
    fn encode(&self, encoder: &mut LabelValueEncoder) -> Result<(), fmt::Error> {
        write!(encoder, "{self}")
    }
}

/// The route label of a request: axum's template of the route that matched (`/m/{id}`,
/// rendered `/m/:id`),
/// never the raw path, so a scan of random paths adds no label values.
#[derive(Debug, Clone)]
pub enum RouteLabel {
    /// The template of the route that matched.
    Matched(MatchedPath),
    /// No route matched (`unmatched`).
    Unmatched,
}

impl RouteLabel {
    /// The label's value.
    pub fn as_str(&self) -> &str {
        match self {
            Self::Matched(path) => path.as_str(),
            Self::Unmatched => "unmatched",
        }
    }
}

impl PartialEq for RouteLabel {
    fn eq(&self, other: &Self) -> bool {
        self.as_str() == other.as_str()
    }
}

impl Eq for RouteLabel {}

impl Hash for RouteLabel {
    fn hash<H: Hasher>(&self, state: &mut H) {
        self.as_str().hash(state);
    }
}

impl EncodeLabelValue for RouteLabel {
    /// Parameters as `:name` (and `*name`), not axum's `{name}` (`{*name}`): braces are legal
    /// in a label value, but scrapers that find the labels with a regex (prometheus-parse, for
    /// one) end them at the first `}`. Rewritten here, at scrape time, not per request.
    fn encode(&self, encoder: &mut LabelValueEncoder) -> Result<(), fmt::Error> {
        let mut rest = self.as_str();
        while let Some(open) = rest.find('{') {
            encoder.write_str(&rest[..open])?;
            let param = &rest[open + 1..];
            let Some(close) = param.find('}') else {
                rest = &rest[open..];
                break;
            };
            let name = &param[..close];
            match name.strip_prefix('*') {
                Some(wild) => {
                    encoder.write_char('*')?;
                    encoder.write_str(wild)?;
                }
                None => {
                    encoder.write_char(':')?;
                    encoder.write_str(name)?;
                }
            }
            rest = &param[close + 1..];
        }
        encoder.write_str(rest)
    }
}

/// `2xx`, `4xx`, …
pub(super) fn status_class(status: u16) -> &'static str {
    match status / 100 {
        1 => "1xx",
        2 => "2xx",
        3 => "3xx",
        4 => "4xx",
        _ => "5xx",
    }
}

/// The `msg_type` label of a message: its canonical type, or `unknown` for a type huixin does
/// not know (whatever WeChat invents adds one label value, not one per spelling).
pub fn msg_type_label(kind: &MessageKind) -> &'static str {
    match kind {
        MessageKind::Text(_) => "text",
        MessageKind::Image(_) => "image",
        MessageKind::Voice(_) => "voice",
        MessageKind::Video(_) => "video",
        MessageKind::ShortVideo(_) => "shortvideo",
        MessageKind::Location(_) => "location",
        MessageKind::Link(_) => "link",
        MessageKind::MiniProgramPage(_) => "miniprogrampage",
        MessageKind::Event(_) => "event",
        MessageKind::Unknown { .. } => "unknown",
    }
}

/// The `event` label of a message: the event's name, `unknown` for one huixin does not know,
/// empty for a message that is not an event.
pub fn event_label(kind: &MessageKind) -> &'static str {
    match kind {
        MessageKind::Event(Event::Unknown { .. }) => "unknown",
        MessageKind::Event(event) => {
            let name = event.name();
            EVENT_NAMES
                .iter()
                .find(|known| **known == name)
                .copied()
                .unwrap_or("unknown")
        }
        _ => "",
    }
}
