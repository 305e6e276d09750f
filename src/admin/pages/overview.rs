//! Overview: followers now, the last 30 days drawn as SVG (follows and unfollows, messages by
//! type, pushes), replies by rule and outcomes, the access token, and the last errors.

use std::collections::BTreeMap;

use axum::Extension;
use axum::extract::State;
use maud::html;

use crate::admin::auth::Session;
use crate::admin::chart::{self, Series};
use crate::admin::html::{self as ui, Nav};
use crate::admin::{Console, Page};
use crate::store::console::CountRow;
use crate::support::clock::unix_now;

/// Days the charts cover.
const DAYS: i64 = 30;
/// Recent errors shown.
const RECENT_ERRORS: usize = 15;

/// The counts of the last [`DAYS`] local days: the day labels, and for each (dim, key) a
/// value per day.
struct Days {
    labels: Vec<String>,
    values: BTreeMap<(String, String), Vec<i64>>,
}

impl Days {
    fn of(console: &Console, rows: &[CountRow], now: i64) -> Self {
        let tz = crate::support::clock::parse_timezone(&console.config().rules.timezone)
            .unwrap_or(jiff::tz::TimeZone::UTC);
        let day_of = |unix: i64| -> Option<jiff::civil::Date> {
            jiff::Timestamp::from_second(unix)
                .ok()
                .map(|t| t.to_zoned(tz.clone()).date())
        };
        let today = day_of(now).unwrap_or_default();
        let first = today
            .checked_sub(jiff::Span::new().days(DAYS - 1))
            .unwrap_or(today);
        let labels = (0..DAYS)
            .filter_map(|i| first.checked_add(jiff::Span::new().days(i)).ok())
            .map(|d| d.strftime("%m-%d").to_string())
            .collect::<Vec<_>>();
        let mut values: BTreeMap<(String, String), Vec<i64>> = BTreeMap::new();
        for row in rows {
            let Some(day) = day_of(row.hour * 3_600) else {
                continue;
            };
            let Ok(index) = usize::try_from((day - first).get_days()) else {
                continue;
            };
            if index >= labels.len() {
                continue;
            }
            let slot = values
                .entry((row.dim.clone(), row.key.clone()))
                .or_insert_with(|| vec![0; labels.len()]);
            slot[index] += row.n;
        }
        Self { labels, values }
    }

    fn series(&self, dim: &str, key: &str) -> Vec<i64> {
        self.values
            .get(&(dim.to_owned(), key.to_owned()))
            .cloned()
            .unwrap_or_else(|| vec![0; self.labels.len()])
    }

    /// Every key of `dim`, with its total, largest first.
    fn keys(&self, dim: &str) -> Vec<(String, i64)> {
        let mut keys: Vec<(String, i64)> = self
            .values
            .iter()
            .filter(|((d, _), _)| d == dim)
            .map(|((_, k), v)| (k.clone(), v.iter().sum()))
            .collect();
        keys.sort_by(|a, b| b.1.cmp(&a.1).then_with(|| a.0.cmp(&b.0)));
        keys
    }
}

/// `GET /admin`.
pub async fn page(State(console): State<Console>, Extension(session): Extension<Session>) -> Page {
    let now = unix_now();
    let backend = console.store().backend();
    let followers = backend.follower_count().await?;
    // A day more than the charts show: the first local day may start before the UTC hour.
    let rows = backend.log_counts(now / 3_600 - (DAYS + 1) * 24).await?;
    let days = Days::of(&console, &rows, now);
    let follows = days.series("event", "subscribe");
    let unfollows: Vec<i64> = days
        .series("event", "unsubscribe")
        .iter()
        .map(|v| -v)
        .collect();
    let types = days.keys("type");
    let type_series: Vec<Series> = types
        .iter()
        .enumerate()
        .map(|(i, (k, _))| Series {
            name: k.clone(),
            slot: i,
            values: days.series("type", k),
        })
        .collect();
    let push_series: Vec<Series> = [("accepted", 0), ("delivered", 2), ("failed", 3)]
        .iter()
        .map(|(k, slot)| Series {
            name: (*k).to_owned(),
            slot: *slot,
            values: days.series("push", k),
        })
        .collect();
    let rules = days.keys("rule");
    let outcomes = days.keys("outcome");
    let token = match console.config().wechat.app_id.as_str() {
        "" => None,
        app_id => Some(backend.token_load(app_id).await?),
    };
    let rules_status = console.inner.rules.as_ref().map(|r| r.status());
    let metrics = &console.inner.metrics;
    let mut errors = metrics.recent_errors();
    errors.reverse();
    errors.truncate(RECENT_ERRORS);
    let mut api_errors = metrics.api_errors();
    api_errors.sort_by_key(|e| std::cmp::Reverse(e.2));
    let store = metrics.store_stats();
    let body = html! {
        div.stats {
            div.stat { strong { (followers) } span { "following now" } }
            div.stat { strong { (follows.iter().sum::<i64>()) } span { "follows, 30 days" } }
            div.stat { strong { (-unfollows.iter().sum::<i64>()) } span { "unfollows, 30 days" } }
            div.stat { strong { (types.iter().map(|(_, n)| n).sum::<i64>()) } span { "messages, 30 days" } }
        }
        section {
            h2 { "Follows and unfollows" }
            (chart::bars(&days.labels, &[
                Series { name: "follows".into(), slot: 2, values: follows },
                Series { name: "unfollows".into(), slot: 3, values: unfollows },
            ]))
        }
        section {
            h2 { "Messages by type" }
            (chart::bars(&days.labels, &type_series))
        }
        section {
            h2 { "Pushes" }
            (chart::bars(&days.labels, &push_series))
        }
        div.columns {
            section {
                h2 { "Replies by rule, 30 days" }
                @if rules.is_empty() { p.muted { "No rule has replied." } } @else { (chart::ranking(&rules)) }
            }
            section {
                h2 { "Outcomes, 30 days" }
                @if outcomes.is_empty() { p.muted { "No messages." } } @else { (chart::ranking(&outcomes)) }
            }
        }
        div.columns {
            section {
                h2 { "Access token" }
                @match &token {
                    None => { p.muted { "No [wechat] app_id: huixin does not call WeChat's API." } }
                    Some(None) => { p.muted { "None fetched yet (one is fetched at the first API call)." } }
                    Some(Some(t)) if t.expires_at > now => {
                        p { span.outcome.ok { "valid" } " until " (console.time(t.expires_at)) " (" (ui::ago(t.expires_at - now)) " left), fetched " (console.time(t.fetched_at)) ", refreshed " (t.version) " times." }
                    }
                    Some(Some(t)) => {
                        p { span.outcome.bad { "expired or invalidated" } " (fetched " (console.time(t.fetched_at)) "); the next API call fetches a new one." }
                    }
                }
            }
            section {
                h2 { "Store" }
                p {
                    (store.batches) " write batches (" (store.writes) " writes) since start, "
                    (store.queued) " queued now. "
                    @if store.dropped + store.lost > 0 {
                        strong.bad { (store.dropped) " dropped (queue full), " (store.lost) " lost (batches that failed twice)." }
                    } @else { "None dropped." }
                }
            }
        }
        div.columns {
            section {
                h2 { "Recent errors" }
                @if errors.is_empty() { p.muted { "None since start." } }
                ul.errors-list {
                    @for e in &errors {
                        li { span.muted { (console.time(e.at)) } " " span.tag { (e.kind) } " " code { (e.detail) } }
                    }
                }
            }
            section {
                h2 { "WeChat API errors by code" }
                @if api_errors.is_empty() { p.muted { "None since start." } } @else {
                    table {
                        thead { tr { th { "API" } th.num { "errcode" } th.num { "times" } } }
                        tbody { @for (api, code, n) in &api_errors { tr { td { code { (api) } } td.num { (code) } td.num { (n) } } } }
                    }
                }
            }
        }
        div.columns {
            section {
                h2 { "Rules" }
                @match &rules_status {
                    None => { p.muted { "This app runs no rules." } }
                    Some(s) if s.errors.is_empty() => { p { "Loaded " (console.time(s.loaded_at)) ", no errors." } }
                    Some(s) => {
                        p.flash.error { "The last reload failed; the previous rules are live." }
                        ul { @for e in &s.errors { li { code { (e.to_string()) } } } }
                    }
                }
            }
        }
    };
    Ok(ui::page(
        &console,
        &session,
        "Overview",
        Nav::Overview,
        body,
    ))
}
