//! Overview: followers now, the last 30 days drawn as SVG (follows and unfollows, messages by
//! type, pushes), replies by rule and outcomes, the access token, and the last errors.

use std::collections::BTreeMap;
use std::sync::Arc;

use axum::Extension;
use axum::extract::State;
use maud::html;

use crate::admin::auth::Session;
use crate::admin::chart::{self, Series};
use crate::admin::html::{self as ui, Nav};
use crate::admin::{Console, Page};
use crate::store::StoreError;
use crate::store::console::CountRow;
use crate::support::clock::unix_now;

/// Days the charts cover.
const DAYS: usize = 30;
/// Recent errors shown.
const RECENT_ERRORS: usize = 15;
/// How long after midnight the day before is still written to (a log batch of its last
/// messages, a settle): until then it is not kept as final.
const SETTLE_SECS: i64 = 300;

/// Counts per (dim, key), a value per day.
type Values = BTreeMap<(String, String), Vec<i64>>;

/// The counts of the last [`DAYS`] local days: the day labels, and for each (dim, key) a
/// value per day.
struct Days {
    labels: Vec<String>,
    values: Values,
}

/// The local days the charts show, as the hours each starts at (`hour_of` of its first
/// second, rounded up): an hourly count belongs to the day its hour starts in.
struct Window {
    today: jiff::civil::Date,
    labels: Vec<String>,
    /// [`DAYS`] + 1 bounds: day `i` holds the hours from `starts[i]` up to `starts[i + 1]`.
    starts: Vec<i64>,
}

impl Window {
    fn at(timezone: &str, now: i64) -> Self {
        let tz = crate::support::clock::parse_timezone(timezone).unwrap_or(jiff::tz::TimeZone::UTC);
        let today = jiff::Timestamp::from_second(now)
            .map(|t| t.to_zoned(tz.clone()).date())
            .unwrap_or_default();
        let day = |i: usize| {
            let back = i64::try_from(DAYS).unwrap_or(0) - 1 - i64::try_from(i).unwrap_or(0);
            today
                .checked_sub(jiff::Span::new().days(back))
                .unwrap_or(today)
        };
        let labels = (0..DAYS)
            .map(|i| day(i).strftime("%m-%d").to_string())
            .collect();
        // Day DAYS is tomorrow: where today ends.
        let starts = (0..=DAYS)
            .map(|i| {
                let start = day(i)
                    .to_zoned(tz.clone())
                    .map_or(now, |z| z.timestamp().as_second());
                start.div_euclid(3_600) + i64::from(start.rem_euclid(3_600) > 0)
            })
            .collect();
        Self {
            today,
            labels,
            starts,
        }
    }

    /// The hour today starts at.
    fn today_start(&self) -> i64 {
        self.starts[DAYS - 1]
    }

    /// Adds `rows` into `values`, each on its day (rows outside the window left out).
    fn fold(&self, values: &mut Values, rows: &[CountRow]) {
        for row in rows {
            let index = self.starts.partition_point(|&start| start <= row.hour);
            if index == 0 || index > DAYS {
                continue;
            }
            let slot = values
                .entry((row.dim.clone(), row.key.clone()))
                .or_insert_with(|| vec![0; DAYS]);
            slot[index - 1] += row.n;
        }
    }
}

/// The past days' counts, which no longer change, kept between requests so that the
/// overview reads only today's hours from the store.
#[derive(Default)]
pub struct PastDays(std::sync::Mutex<Option<(jiff::civil::Date, Arc<Values>)>>);

impl PastDays {
    fn get(&self, today: jiff::civil::Date) -> Option<Arc<Values>> {
        let kept = self
            .0
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        kept.as_ref()
            .filter(|(day, _)| *day == today)
            .map(|(_, values)| values.clone())
    }

    fn keep(&self, today: jiff::civil::Date, values: Values) {
        *self
            .0
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner) = Some((today, Arc::new(values)));
    }
}

impl Days {
    /// The last [`DAYS`] local days' counts: the past days from `past` when it has them (else
    /// read, and kept there once they are final), today's read from the store.
    async fn read(console: &Console, now: i64) -> Result<Self, StoreError> {
        let window = Window::at(&console.config().rules.timezone, now);
        let backend = console.store().backend();
        let past = &console.inner.past_days;
        let values = match past.get(window.today) {
            Some(kept) => {
                let mut values = (*kept).clone();
                window.fold(
                    &mut values,
                    &backend.log_counts(window.today_start()).await?,
                );
                values
            }
            None => {
                let rows = backend.log_counts(window.starts[0]).await?;
                let (before, today): (Vec<CountRow>, Vec<CountRow>) = rows
                    .into_iter()
                    .partition(|row| row.hour < window.today_start());
                let mut values = Values::new();
                window.fold(&mut values, &before);
                if now >= window.today_start() * 3_600 + SETTLE_SECS {
                    past.keep(window.today, values.clone());
                }
                window.fold(&mut values, &today);
                values
            }
        };
        Ok(Self {
            labels: window.labels,
            values,
        })
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
    let days = Days::read(&console, now).await?;
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

#[cfg(test)]
mod tests {
    use super::*;

    fn row(hour: i64, n: i64) -> CountRow {
        CountRow {
            hour,
            dim: "type".into(),
            key: "text".into(),
            n,
        }
    }

    #[test]
    fn hours_fall_on_their_local_day() {
        // 2026-12-04 10:00 in Shanghai (02:00 UTC).
        let now = 1_796_349_600;
        let w = Window::at("Asia/Shanghai", now);
        assert_eq!(w.labels.len(), DAYS);
        assert_eq!(w.labels[DAYS - 1], "12-04");
        assert_eq!(w.labels[0], "11-05");
        // Local midnight is 16:00 UTC the day before.
        assert_eq!(w.today_start() * 3_600, 1_796_313_600);
        assert!(w.starts.windows(2).all(|p| p[1] - p[0] == 24));
        let mut values = Values::new();
        let today = w.today_start();
        w.fold(
            &mut values,
            &[
                row(today, 1),
                row(today - 1, 10),
                row(w.starts[0], 100),
                row(w.starts[0] - 1, 1_000),
                row(w.starts[DAYS], 10_000),
            ],
        );
        let text = &values[&("type".to_owned(), "text".to_owned())];
        assert_eq!(text[DAYS - 1], 1);
        assert_eq!(text[DAYS - 2], 10);
        assert_eq!(text[0], 100);
        assert_eq!(
            text.iter().sum::<i64>(),
            111,
            "outside the window: left out"
        );
    }

    #[test]
    fn days_around_a_clock_change_have_their_own_length() {
        // 2026-11-20 12:00 in New York (17:00 UTC); clocks went back on 11-01.
        let now = 1_795_194_000;
        let w = Window::at("America/New_York", now);
        let lengths: Vec<i64> = w.starts.windows(2).map(|p| p[1] - p[0]).collect();
        assert_eq!(
            lengths.iter().filter(|&&l| l == 25).count(),
            1,
            "{lengths:?}"
        );
        assert!(lengths.iter().all(|&l| l == 24 || l == 25));
        let kept = PastDays::default();
        assert!(kept.get(w.today).is_none());
        kept.keep(w.today, Values::new());
        assert!(kept.get(w.today).is_some());
        let tomorrow = w.today.tomorrow().unwrap();
        assert!(kept.get(tomorrow).is_none(), "a new day reads again");
    }
}
