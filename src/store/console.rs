//! What the operator console reads: pages of the inbound log, of followers and of pushes, and
//! the hourly counts its overview charts are drawn from. [`ConsoleStore`] is part of every
//! [`super::Backend`].
//!
//! Every page is read by keyset (the last row's key is where the next page starts), never by
//! offset, so a deep page costs what the first does.
//!
//! ## The hourly counts (`log_counts`)
//!
//! One row per (hour, dimension, key), with a count: the overview's charts read a month of
//! them instead of a month of log rows. They are kept in the same transaction as what they
//! count, so they always agree with it:
//!
//! - the inbound log's rows, as each batch is written ([`super::Backend::write_batch`]): every
//!   row under [`dim::OUTCOME`]; every row but WeChat's retries (which are the same message
//!   again) under [`dim::TYPE`], and for events [`dim::EVENT`]; and, when a rule replied,
//!   [`dim::RULE`];
//! - push recipients under [`dim::PUSH`]: [`push::ACCEPTED`] when a push is stored (at the
//!   hour it was accepted), [`push::SENT`] and [`push::FAILED`] when an attempt is settled,
//!   [`push::DELIVERED`] or [`push::FAILED`] when `TEMPLATESENDJOBFINISH` settles one that was
//!   sent (at the hour they settle).
//!
//! Counts outlive the rows they count: the log is pruned after `[bot] log_retention_days`,
//! pushes when they are purged, the counts after [`COUNTS_RETENTION_DAYS`] (or never, when
//! the log is kept forever).

use async_trait::async_trait;

use super::push::{GroupedPush, Inserted, PushRow};
use super::{Follower, LogEntry, StoreError};

/// How long hourly counts are kept, at least (the log's retention when that is longer).
pub const COUNTS_RETENTION_DAYS: u32 = 400;
/// Rows a page has when its filter asks for 0.
pub const DEFAULT_PAGE: u32 = 50;
/// The most rows one page has.
pub const MAX_PAGE: u32 = 1_000;

/// The dimensions of [`CountRow`].
pub mod dim {
    /// Messages by `MsgType` (`text`, `image`, …, `event`), retries left out.
    pub const TYPE: &str = "type";
    /// Events by name, lower case (`subscribe`, `unsubscribe`, `click`, …), retries left out.
    pub const EVENT: &str = "event";
    /// Messages by outcome (`answered`, `late`, `retry`, `failed`, `blocked`, `limited`).
    pub const OUTCOME: &str = "outcome";
    /// Replies by the rule that made them (`file:line`, or `webhook`).
    pub const RULE: &str = "rule";
    /// Push recipients by what became of them (keys in [`super::push`]).
    pub const PUSH: &str = "push";
}

/// The keys of [`dim::PUSH`].
pub mod push {
    /// Recipients stored with an accepted push (counted at the hour it was accepted).
    pub const ACCEPTED: &str = "accepted";
    /// Recipients whose template message WeChat took.
    pub const SENT: &str = "sent";
    /// Sent recipients `TEMPLATESENDJOBFINISH` confirmed.
    pub const DELIVERED: &str = "delivered";
    /// Recipients that failed: for good when sending, or as `TEMPLATESENDJOBFINISH` said.
    pub const FAILED: &str = "failed";
}

/// The hour a Unix time falls in: [`CountRow::hour`].
pub fn hour_of(unix_secs: i64) -> i64 {
    unix_secs.div_euclid(3_600)
}

from_row! {
    /// One row of the inbound log, as the console lists it.
    #[derive(Debug, Clone, PartialEq, Eq)]
    pub struct LogRow {
        /// The row's id, in arrival order: where the next page starts ([`LogFilter::before_id`]).
        pub id: i64,
        /// When the message arrived (Unix seconds).
        pub received_at: i64,
        /// The sender.
        pub openid: String,
        /// `MsgType`.
        pub msg_type: String,
        /// The event's name, lower case, for events.
        pub event: Option<String>,
        /// `MsgId`, as text.
        pub msg_id: Option<String>,
        /// Content, event key or media id, truncated.
        pub summary: Option<String>,
        /// The reply's type (`text`, `news`, `success`, …).
        pub reply_type: String,
        /// `answered`, `late`, `retry`, `failed`, `blocked` or `limited`.
        pub outcome: String,
        /// The rule that replied (`file:line`, or `webhook`), if one did.
        pub rule: Option<String>,
        /// How long the message took to answer, in milliseconds (rows from before it was kept
        /// have none).
        pub latency_ms: Option<i64>,
        /// The reply on one line, truncated (see [`LogEntry::reply`]).
        pub reply: Option<String>,
    }
}

/// Which log rows a page holds ([`ConsoleStore::log_page`]); every filter set must match.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct LogFilter {
    /// Only this user's.
    pub openid: Option<String>,
    /// Only of this `MsgType` (`text`, `image`, …; `event` for every event), or, for a value
    /// that is no message type huixin knows ([`MESSAGE_TYPES`]), only events of that name
    /// (`subscribe`, `click`, …). `location` is the message type; [`LogFilter::event`] asks for
    /// the event of that name.
    pub msg_type: Option<String>,
    /// Only events of this name (lower case).
    pub event: Option<String>,
    /// Only with this outcome.
    pub outcome: Option<String>,
    /// Only rows with a smaller id (the last id of the previous page); `None` from the newest.
    pub before_id: Option<i64>,
    /// At most this many rows ([`DEFAULT_PAGE`] for 0, at most [`MAX_PAGE`]).
    pub limit: u32,
}

/// The message types huixin parses (`MsgType`, lower case): a [`LogFilter::msg_type`] of one
/// of these is a type, any other value an event name.
pub use crate::wechat::message::MSG_TYPES as MESSAGE_TYPES;

impl LogFilter {
    /// The `(MsgType, event name)` that [`LogFilter::msg_type`] and [`LogFilter::event`] ask
    /// for together, with a `msg_type` that is no message type read as an event name; `None`
    /// when no row can match (two different event names).
    pub fn kind(&self) -> Option<(Option<&str>, Option<&str>)> {
        let event = self.event.as_deref();
        match self.msg_type.as_deref() {
            None => Some((None, event)),
            Some(t) if MESSAGE_TYPES.contains(&t) => Some((Some(t), event)),
            Some(name) => match event {
                Some(other) if other != name => None,
                // Only events have a name: the name alone says `event`.
                _ => Some((None, Some(name))),
            },
        }
    }
}

from_row! {
    /// One hour's count of one key of one dimension (see the module's documentation).
    #[derive(Debug, Clone, PartialEq, Eq)]
    pub struct CountRow {
        /// The hour: Unix seconds / 3600 ([`hour_of`]).
        pub hour: i64,
        /// The dimension ([`dim`]).
        pub dim: String,
        /// The key within it (a type, an event name, an outcome, a rule, a push state).
        pub key: String,
        /// How many.
        pub n: i64,
    }
}

/// Which followers a page holds ([`ConsoleStore::followers_page`]); every filter set must
/// match.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct FollowerFilter {
    /// Only OpenIDs that start with this.
    pub openid: Option<String>,
    /// Only those whose latest scan-to-follow had this scene.
    pub scene: Option<String>,
    /// Only members of this topic.
    pub topic: Option<String>,
    /// Only those bound to this app.
    pub app_id: Option<i64>,
    /// Only those who follow now (`true`) or not (`false`).
    pub subscribed: Option<bool>,
    /// Only those after this one in the page's order: `(last_seen_at or 0, openid)` of the
    /// previous page's last follower; `None` from the start.
    pub after: Option<(i64, String)>,
    /// At most this many ([`DEFAULT_PAGE`] for 0, at most [`MAX_PAGE`]).
    pub limit: u32,
}

impl FollowerFilter {
    /// The keyset of `follower` in the page's order: its [`FollowerFilter::after`] for the
    /// page after it.
    pub fn key_of(follower: &Follower) -> (i64, String) {
        (follower.last_seen_at.unwrap_or(0), follower.openid.clone())
    }
}

/// A push with how many of its recipients are in each state.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PushSummary {
    /// The push.
    pub push: PushRow,
    /// Recipients waiting.
    pub pending: i64,
    /// Recipients being sent.
    pub sending: i64,
    /// Recipients WeChat took, not yet confirmed.
    pub sent: i64,
    /// Recipients confirmed delivered.
    pub delivered: i64,
    /// Recipients that failed.
    pub failed: i64,
}

/// A page size: `limit` with 0 read as [`DEFAULT_PAGE`], at most [`MAX_PAGE`].
pub fn page_size(limit: u32) -> i64 {
    i64::from(match limit {
        0 => DEFAULT_PAGE,
        n => n.min(MAX_PAGE),
    })
}

/// The hourly counts a batch of log rows adds, one per (hour, dimension, key), sorted by it
/// (the order PostgreSQL upserts them in, so that two processes never wait for each other in
/// a circle).
pub fn log_counts_of<'a>(rows: &[&'a LogEntry]) -> Vec<(i64, &'static str, &'a str, i64)> {
    let mut counts: std::collections::BTreeMap<(i64, &'static str, &'a str), i64> =
        std::collections::BTreeMap::new();
    for row in rows {
        let hour = hour_of(row.received_at);
        let mut add = |dim: &'static str, key: &'a str| {
            *counts.entry((hour, dim, key)).or_default() += 1;
        };
        add(dim::OUTCOME, &row.outcome);
        // A retry is the same message again: counted once, as the first attempt.
        if row.outcome == "retry" {
            continue;
        }
        add(dim::TYPE, &row.msg_type);
        if let Some(event) = &row.event {
            add(dim::EVENT, event);
        }
        if let Some(rule) = &row.rule {
            add(dim::RULE, rule);
        }
    }
    counts
        .into_iter()
        .map(|((hour, dim, key), n)| (hour, dim, key, n))
        .collect()
}

/// The console's reads.
#[async_trait]
pub trait ConsoleStore: Send + Sync {
    /// A page of the inbound log, newest first, as `filter` says.
    async fn log_page(&self, filter: &LogFilter) -> Result<Vec<LogRow>, StoreError>;
    /// The hourly counts from `since_hour` on ([`hour_of`]), by hour, dimension and key.
    async fn log_counts(&self, since_hour: i64) -> Result<Vec<CountRow>, StoreError>;
    /// A page of followers, most recently seen first (never seen last), then by OpenID, as
    /// `filter` says.
    async fn followers_page(&self, filter: &FollowerFilter) -> Result<Vec<Follower>, StoreError>;
    /// A page of pushes, newest first: those with `seq` below `before_seq` (`None`: from the
    /// newest), at most `limit` ([`DEFAULT_PAGE`] for 0, at most [`MAX_PAGE`]), each with its
    /// recipients counted by state.
    async fn push_page(
        &self,
        before_seq: Option<i64>,
        limit: u32,
    ) -> Result<Vec<PushSummary>, StoreError>;
}

/// The columns of a [`LogRow`].
pub(crate) const LOG_COLUMNS: &str = "id, received_at, openid, msg_type, event, msg_id, summary, \
     reply_type, outcome, rule, latency_ms, reply";
/// The columns of a [`Follower`] selected from `followers f`.
pub(crate) const FOLLOWER_COLUMNS: &str = "f.openid, f.subscribed, f.first_subscribed_at, \
     f.last_subscribed_at, f.unsubscribed_at, f.scene, f.last_seen_at";

/// How many followers a filter may select for a page to be read from them and sorted; past
/// this many, the page is read in order from the recency index, skipping those that do not
/// match (which, with that many matching, finds a page soon).
pub(crate) const DRIVER_CAP: i64 = 4_000;

/// A filter of a followers page that selects its followers through an index of its own.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Driver {
    /// [`FollowerFilter::openid`]: a range of the OpenIDs.
    Prefix,
    /// [`FollowerFilter::scene`].
    Scene,
    /// [`FollowerFilter::topic`]: the topic's members.
    Topic,
    /// [`FollowerFilter::app_id`]: the app's bindings.
    App,
}

impl FollowerFilter {
    /// The prefix asked for, if any (an empty one asks for nothing).
    pub(crate) fn prefix(&self) -> Option<&str> {
        self.openid.as_deref().filter(|p| !p.is_empty())
    }

    /// The filters set that could select the page's followers through an index.
    pub(crate) fn drivers(&self) -> Vec<Driver> {
        let mut drivers = Vec::new();
        if self.prefix().is_some() {
            drivers.push(Driver::Prefix);
        }
        if self.scene.is_some() {
            drivers.push(Driver::Scene);
        }
        if self.topic.is_some() {
            drivers.push(Driver::Topic);
        }
        if self.app_id.is_some() {
            drivers.push(Driver::App);
        }
        drivers
    }
}

/// How a followers page is read.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Plan {
    /// A filter selects nobody: the page is empty.
    Empty,
    /// From the followers this filter selects, sorted.
    Driven(Driver),
    /// In order from the recency index, skipping those that do not match.
    InOrder,
}

/// The plan for a page from each driver's count of followers (capped at [`DRIVER_CAP`]): the
/// driver with the fewest, when below the cap.
pub(crate) fn plan(counts: &[(Driver, i64)]) -> Plan {
    if counts.iter().any(|(_, n)| *n == 0) {
        return Plan::Empty;
    }
    counts
        .iter()
        .filter(|(_, n)| *n < DRIVER_CAP)
        .min_by_key(|(_, n)| *n)
        .map_or(Plan::InOrder, |(d, _)| Plan::Driven(*d))
}

/// What storing `pushes` adds to the hourly counts: their recipients, [`push::ACCEPTED`] at
/// the hour each push was accepted (`stored` says which were stored, with how many).
pub(crate) fn accepted_counts(
    pushes: &[GroupedPush<'_>],
    stored: &[Option<Inserted>],
) -> Vec<(i64, &'static str, &'static str, i64)> {
    let mut hours: std::collections::BTreeMap<i64, i64> = std::collections::BTreeMap::new();
    for (grouped, inserted) in pushes.iter().zip(stored) {
        if let Some(inserted) = inserted.filter(|i| i.recipients > 0) {
            *hours.entry(hour_of(grouped.push.created_at)).or_default() +=
                i64::try_from(inserted.recipients).unwrap_or(i64::MAX);
        }
    }
    hours
        .into_iter()
        .map(|(hour, n)| (hour, dim::PUSH, push::ACCEPTED, n))
        .collect()
}

/// What settling push recipients at `now` adds to the hourly counts: `n` under each key of
/// [`dim::PUSH`], sorted, those with none left out.
pub(crate) fn settled_counts(
    now: i64,
    counts: &[(&'static str, u64)],
) -> Vec<(i64, &'static str, &'static str, i64)> {
    let mut rows: Vec<_> = counts
        .iter()
        .filter(|(_, n)| *n > 0)
        .map(|(key, n)| {
            (
                hour_of(now),
                dim::PUSH,
                *key,
                i64::try_from(*n).unwrap_or(i64::MAX),
            )
        })
        .collect();
    rows.sort_unstable();
    rows
}

/// Adds each push's recipient counts to `pushes`, from (push seq, state, count) rows.
pub(crate) fn summaries(pushes: Vec<PushRow>, counts: &[(i64, String, i64)]) -> Vec<PushSummary> {
    pushes
        .into_iter()
        .map(|push| {
            let mut summary = PushSummary {
                push,
                pending: 0,
                sending: 0,
                sent: 0,
                delivered: 0,
                failed: 0,
            };
            for (_, state, n) in counts.iter().filter(|(seq, ..)| *seq == summary.push.seq) {
                match state.as_str() {
                    "pending" => summary.pending += n,
                    "sending" => summary.sending += n,
                    "sent" => summary.sent += n,
                    "delivered" => summary.delivered += n,
                    "failed" => summary.failed += n,
                    // A state a newer version wrote: counted nowhere rather than misread.
                    _ => {}
                }
            }
            summary
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn row(
        hour: i64,
        msg_type: &str,
        event: Option<&str>,
        outcome: &str,
        rule: Option<&str>,
    ) -> LogEntry {
        LogEntry {
            received_at: hour * 3_600 + 59,
            openid: "o".into(),
            msg_type: msg_type.into(),
            event: event.map(Into::into),
            msg_id: None,
            summary: None,
            reply_type: "text".into(),
            outcome: outcome.into(),
            rule: rule.map(Into::into),
            latency_ms: Some(3),
            reply: None,
        }
    }

    #[test]
    fn a_batch_is_counted_by_hour_dimension_and_key_in_order() {
        let rows = [
            row(10, "text", None, "answered", Some("rules/a.rhai:3")),
            row(10, "text", None, "answered", Some("rules/a.rhai:3")),
            row(9, "event", Some("subscribe"), "answered", None),
            // A retry counts only as an outcome.
            row(10, "text", None, "retry", Some("rules/a.rhai:3")),
            row(10, "image", None, "failed", None),
        ];
        let refs: Vec<&LogEntry> = rows.iter().collect();
        assert_eq!(
            log_counts_of(&refs),
            vec![
                (9, "event", "subscribe", 1),
                (9, "outcome", "answered", 1),
                (9, "type", "event", 1),
                (10, "outcome", "answered", 2),
                (10, "outcome", "failed", 1),
                (10, "outcome", "retry", 1),
                (10, "rule", "rules/a.rhai:3", 2),
                (10, "type", "image", 1),
                (10, "type", "text", 2),
            ]
        );
        assert_eq!(hour_of(-1), -1, "before 1970 too, hours start on the hour");
    }

    #[test]
    fn a_type_filter_that_is_no_type_names_an_event() {
        let f = |msg_type: Option<&str>, event: Option<&str>| LogFilter {
            msg_type: msg_type.map(Into::into),
            event: event.map(Into::into),
            ..LogFilter::default()
        };
        assert_eq!(f(Some("text"), None).kind(), Some((Some("text"), None)));
        assert_eq!(f(Some("event"), None).kind(), Some((Some("event"), None)));
        assert_eq!(f(Some("click"), None).kind(), Some((None, Some("click"))));
        assert_eq!(
            f(Some("location"), None).kind(),
            Some((Some("location"), None)),
            "the message type"
        );
        assert_eq!(
            f(None, Some("location")).kind(),
            Some((None, Some("location")))
        );
        assert_eq!(
            f(Some("click"), Some("click")).kind(),
            Some((None, Some("click")))
        );
        assert_eq!(f(Some("click"), Some("view")).kind(), None);
        assert_eq!(f(None, None).kind(), Some((None, None)));
    }

    #[test]
    fn the_fewest_candidates_drive_unless_too_many() {
        use Driver::*;
        assert_eq!(plan(&[]), Plan::InOrder);
        assert_eq!(plan(&[(Scene, 30), (Topic, 10)]), Plan::Driven(Topic));
        assert_eq!(
            plan(&[(Scene, DRIVER_CAP), (Topic, 10)]),
            Plan::Driven(Topic)
        );
        assert_eq!(
            plan(&[(Scene, DRIVER_CAP), (App, DRIVER_CAP)]),
            Plan::InOrder
        );
        assert_eq!(plan(&[(Scene, DRIVER_CAP), (Prefix, 0)]), Plan::Empty);
        assert_eq!(page_size(0), i64::from(DEFAULT_PAGE));
        assert_eq!(page_size(7), 7);
        assert_eq!(page_size(u32::MAX), i64::from(MAX_PAGE));
    }
}
