//! Prometheus metrics: what an operator scrapes from `/metrics`, and the numbers the operator
//! console shows.
//!
//! One [`Metrics`] per [`crate::app::App`] (several apps may run in one process), cheap to
//! clone, handed to each component where the app builds it: the HTTP edge counts messages and
//! replies, the pipeline's layers their retries, deadline misses and late replies, the rules
//! route the run time and script errors, the outbound client WeChat's API calls and token
//! refreshes, the push service and worker the pushes, the webhook worker its deliveries, and
//! [`http`] every request's latency by route. The store, which can be built outside an app,
//! keeps plain counters that [`Metrics::watch_store`] reads at scrape time.
//!
//! Names start with `huixin_`; counters end in `_total`. Label values come from bounded sets
//! only: message types and events known to huixin (anything else is `unknown`), outcomes,
//! rules as `file:line` of the loaded rules, WeChat's API paths called by huixin and its
//! errcodes, axum's route templates with parameters written `:name` (`/m/:id`; never a raw
//! path; requests no route matched are `route="unmatched"`).
//!
//! With `[metrics] enabled = false` ([`Metrics::disabled`], also [`Metrics::default`], what
//! components built outside an app get), every recording method returns at its first branch
//! and the HTTP layer is not installed. The console's numbers ([`Metrics::recent_errors`],
//! [`Metrics::api_errors`], [`Metrics::token_refreshes`], [`Metrics::store_drops`]) are kept
//! either way: they are touched only when something goes wrong or rarely.
//!
//! | metric | type | labels |
//! |---|---|---|
//! | `huixin_messages_total` | counter | `msg_type`, `event` |
//! | `huixin_replies_total` | counter | `outcome`, `rule` |
//! | `huixin_rule_run_duration_seconds` | histogram | |
//! | `huixin_script_errors_total` | counter | |
//! | `huixin_dedup_retries_total` | counter | `how` (`replayed`, `waited`, `foreign`) |
//! | `huixin_deadline_misses_total` | counter | |
//! | `huixin_late_replies_total` | counter | `way` (`retry`, `sender`) |
//! | `huixin_push_accepted_total` | counter | `source` |
//! | `huixin_push_recipients_total` | counter | `state` (`accepted`, `sent`, `delivered`, `failed`) |
//! | `huixin_push_retries_total` | counter | |
//! | `huixin_push_queue_depth` | gauge | |
//! | `huixin_webhook_deliveries_total` | counter | `result` (`delivered`, `retry`, `failed`) |
//! | `huixin_wechat_api_calls_total` | counter | `api` |
//! | `huixin_wechat_api_errors_total` | counter | `api`, `errcode` |
//! | `huixin_token_refreshes_total` | counter | `result` (`ok`, `failed`) |
//! | `huixin_store_write_batches_total` | counter | |
//! | `huixin_store_writes_total` | counter | |
//! | `huixin_store_writes_lost_total` | counter | |
//! | `huixin_store_writes_dropped_total` | counter | |
//! | `huixin_store_queue_length` | gauge | |
//! | `huixin_http_requests_total` | counter | `route`, `status` (`2xx`, …) |
//! | `huixin_http_request_duration_seconds` | histogram | `route` |
//! | `huixin_build_info` | gauge | `version` |

pub mod http;
mod labels;

use std::collections::{BTreeMap, VecDeque};
use std::fmt;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use prometheus_client::collector::Collector;
use prometheus_client::encoding::{DescriptorEncoder, EncodeMetric};
use prometheus_client::metrics::counter::{ConstCounter, Counter};
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::{ConstGauge, Gauge};
use prometheus_client::metrics::histogram::Histogram;
use prometheus_client::registry::Registry;
use serde::Serialize;

use labels::{
    ApiErrorLabels, ApiLabels, HowLabels, HttpLabels, MessageLabels, ReplyLabels, RouteLabels,
    SourceLabels, StateLabels, VersionLabels,
};
pub use labels::{ErrCode, RouteLabel, RuleLabel, event_label, msg_type_label};

/// The `Content-Type` of [`Metrics::render`]: Prometheus' text format 0.0.4.
pub const CONTENT_TYPE: &str = prometheus_client::encoding::prometheus_text::CONTENT_TYPE;
/// The `Content-Type` of [`Metrics::render_openmetrics`].
pub const OPENMETRICS_CONTENT_TYPE: &str =
    "application/openmetrics-text; version=1.0.0; charset=utf-8";
/// Recent errors kept for the console, at most.
pub const RECENT_ERRORS: usize = 100;
/// The longest detail of a recent error, in characters.
const DETAIL_CHARS: usize = 500;

/// Upper bounds (seconds) of the rule run time histogram: 100 µs to 5 s, the range between a
/// keyword table and `[rules] max_run_ms`.
const RULE_BUCKETS: [f64; 12] = [
    0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.1, 0.5, 1.0, 5.0,
];
/// Upper bounds (seconds) of the HTTP latency histogram: 1 ms to 10 s (WeChat waits 5 s).
const HTTP_BUCKETS: [f64; 13] = [
    0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0,
];

/// An error the console lists (the last [`RECENT_ERRORS`]). Never carries a secret: rule
/// failures are `file:line: message`, WeChat's errors `api path: errcode errmsg` (no access
/// token, no URL).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct RecentError {
    /// When (Unix seconds).
    pub at: i64,
    /// `rule`, `wechat_api`, `store`, `webhook` or `push`.
    pub kind: &'static str,
    /// What happened.
    pub detail: String,
}

/// The store writer's counters, read at scrape time (see [`Metrics::watch_store`]).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct StoreStats {
    /// Batches written.
    pub batches: u64,
    /// Writes in those batches.
    pub writes: u64,
    /// Writes in batches that failed twice and were given up.
    pub lost: u64,
    /// Writes dropped because the queue was full.
    pub dropped: u64,
    /// Writes queued now.
    pub queued: u64,
}

/// What [`Metrics::watch_store`] takes.
type StoreSource = Box<dyn Fn() -> StoreStats + Send + Sync>;

/// The app's metrics: see the [module documentation](self). Cheap to clone.
#[derive(Clone, Default)]
pub struct Metrics {
    inner: Arc<Inner>,
}

impl fmt::Debug for Metrics {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Metrics")
            .field("enabled", &self.is_enabled())
            .finish_non_exhaustive()
    }
}

#[derive(Default)]
struct Inner {
    /// `None` when disabled: every recording method returns at once.
    families: Option<Families>,
    /// What the console reads, kept whether or not the metrics are on.
    errors: Mutex<VecDeque<RecentError>>,
    api_errors: Mutex<BTreeMap<(&'static str, i64), u64>>,
    token_refreshes: AtomicU64,
    store: Arc<Mutex<Option<StoreSource>>>,
}

struct Families {
    registry: Registry,
    messages: Family<MessageLabels, Counter>,
    replies: Family<ReplyLabels, Counter>,
    rule_run: Histogram,
    script_errors: Counter,
    dedup_retries: Family<HowLabels, Counter>,
    deadline_misses: Counter,
    late_replies: Family<labels::WayLabels, Counter>,
    push_accepted: Family<SourceLabels, Counter>,
    push_recipients: Family<StateLabels, Counter>,
    push_retries: Counter,
    push_queue_depth: Gauge,
    webhook_deliveries: Family<labels::ResultLabels, Counter>,
    api_calls: Family<ApiLabels, Counter>,
    api_errors: Family<ApiErrorLabels, Counter>,
    token_refreshes: Family<labels::ResultLabels, Counter>,
    http_requests: Family<HttpLabels, Counter>,
    http_latency: Family<RouteLabels, Histogram, fn() -> Histogram>,
}

fn http_histogram() -> Histogram {
    Histogram::new(HTTP_BUCKETS)
}

impl Families {
    fn new(store: Arc<Mutex<Option<StoreSource>>>) -> Self {
        let mut registry = Registry::default();
        let messages = Family::default();
        registry.register(
            "huixin_messages",
            "Messages and events received on the callback, by MsgType and Event",
            Family::clone(&messages),
        );
        let replies = Family::default();
        registry.register(
            "huixin_replies",
            "Messages answered, by outcome and the rule (file:line) that replied",
            Family::clone(&replies),
        );
        let rule_run = Histogram::new(RULE_BUCKETS);
        registry.register(
            "huixin_rule_run_duration_seconds",
            "Time the rules took for one message",
            rule_run.clone(),
        );
        let script_errors = Counter::default();
        registry.register(
            "huixin_script_errors",
            "Rule runs that failed (a script error or a limit); answered with [rules] fallback",
            script_errors.clone(),
        );
        let dedup_retries = Family::default();
        registry.register(
            "huixin_dedup_retries",
            "WeChat retries answered by dedup without running the rules",
            Family::clone(&dedup_retries),
        );
        let deadline_misses = Counter::default();
        registry.register(
            "huixin_deadline_misses",
            "Replies not ready by [bot] reply_deadline_ms (answered success at once)",
            deadline_misses.clone(),
        );
        let late_replies = Family::default();
        registry.register(
            "huixin_late_replies",
            "Replies that missed the deadline, by the way they went: on a waiting retry, or to \
             the late-reply sender (customer-service messages)",
            Family::clone(&late_replies),
        );
        let push_accepted = Family::default();
        registry.register(
            "huixin_push_accepted",
            "Pushes accepted, by the API that took them",
            Family::clone(&push_accepted),
        );
        let push_recipients = Family::default();
        registry.register(
            "huixin_push_recipients",
            "Push recipients by what became of them: accepted, sent (WeChat took the template \
             message), delivered or failed",
            Family::clone(&push_recipients),
        );
        let push_retries = Counter::default();
        registry.register(
            "huixin_push_retries",
            "Template sends that failed for a reason worth another try",
            push_retries.clone(),
        );
        let push_queue_depth = Gauge::default();
        registry.register(
            "huixin_push_queue_depth",
            "Push recipients waiting or being sent, read at scrape time",
            push_queue_depth.clone(),
        );
        let webhook_deliveries = Family::default();
        registry.register(
            "huixin_webhook_deliveries",
            "Webhook delivery attempts by result",
            Family::clone(&webhook_deliveries),
        );
        let api_calls = Family::default();
        registry.register(
            "huixin_wechat_api_calls",
            "Requests to WeChat's API, by path (retries included)",
            Family::clone(&api_calls),
        );
        let api_errors = Family::default();
        registry.register(
            "huixin_wechat_api_errors",
            "WeChat API requests that failed, by path and errcode (network, http or decode \
             when WeChat gave no errcode)",
            Family::clone(&api_errors),
        );
        let token_refreshes = Family::default();
        registry.register(
            "huixin_token_refreshes",
            "Access token requests, by result",
            Family::clone(&token_refreshes),
        );
        let http_requests = Family::default();
        registry.register(
            "huixin_http_requests",
            "HTTP requests by route template and status class",
            Family::clone(&http_requests),
        );
        let http_latency: Family<RouteLabels, Histogram, fn() -> Histogram> =
            Family::new_with_constructor(http_histogram);
        registry.register(
            "huixin_http_request_duration_seconds",
            "HTTP request latency by route template",
            Family::clone(&http_latency),
        );
        let build: Family<VersionLabels, Gauge> = Family::default();
        build
            .get_or_create(&VersionLabels {
                version: env!("CARGO_PKG_VERSION"),
            })
            .set(1);
        registry.register("huixin_build_info", "The running huixin's version", build);
        registry.register_collector(Box::new(StoreCollector(store)));
        Self {
            registry,
            messages,
            replies,
            rule_run,
            script_errors,
            dedup_retries,
            deadline_misses,
            late_replies,
            push_accepted,
            push_recipients,
            push_retries,
            push_queue_depth,
            webhook_deliveries,
            api_calls,
            api_errors,
            token_refreshes,
            http_requests,
            http_latency,
        }
    }
}

impl Metrics {
    /// Metrics that record (`[metrics] enabled = true`).
    pub fn new() -> Self {
        let store = Arc::new(Mutex::new(None));
        Self {
            inner: Arc::new(Inner {
                families: Some(Families::new(Arc::clone(&store))),
                store,
                ..Inner::default()
            }),
        }
    }

    /// Metrics that record nothing (`[metrics] enabled = false`); the console's numbers are
    /// still kept.
    pub fn disabled() -> Self {
        Self::default()
    }

    /// [`Metrics::new`] or [`Metrics::disabled`].
    pub fn enabled(on: bool) -> Self {
        if on { Self::new() } else { Self::disabled() }
    }

    /// Whether they record.
    #[inline]
    pub fn is_enabled(&self) -> bool {
        self.inner.families.is_some()
    }

    #[inline]
    fn on(&self) -> Option<&Families> {
        self.inner.families.as_ref()
    }

    /// Everything, in Prometheus' text format 0.0.4 ([`CONTENT_TYPE`]); empty when disabled.
    pub fn render(&self) -> String {
        let mut out = String::new();
        if let Some(f) = self.on()
            && prometheus_client::encoding::prometheus_text::encode(&mut out, &f.registry).is_err()
        {
            // Writing to a String cannot fail; an encoder error would be a bug of ours.
            tracing::error!("metrics could not be encoded");
        }
        out
    }

    /// Everything, in the OpenMetrics text format ([`OPENMETRICS_CONTENT_TYPE`]); empty when
    /// disabled.
    pub fn render_openmetrics(&self) -> String {
        let mut out = String::new();
        if let Some(f) = self.on()
            && prometheus_client::encoding::text::encode(&mut out, &f.registry).is_err()
        {
            tracing::error!("metrics could not be encoded");
        }
        out
    }

    // ----- the console's numbers -----

    /// The last [`RECENT_ERRORS`] errors, oldest first.
    pub fn recent_errors(&self) -> Vec<RecentError> {
        lock(&self.inner.errors).iter().cloned().collect()
    }

    /// WeChat's API errors with an errcode since start: (api path, errcode, count), by path
    /// and code.
    pub fn api_errors(&self) -> Vec<(String, i64, u64)> {
        lock(&self.inner.api_errors)
            .iter()
            .map(|((api, code), n)| ((*api).to_owned(), *code, *n))
            .collect()
    }

    /// Writes the store dropped because its queue was full (0 when no store is watched).
    pub fn store_drops(&self) -> u64 {
        self.store_stats().dropped
    }

    /// The watched store's counters (zeros when none is watched).
    pub fn store_stats(&self) -> StoreStats {
        lock(&self.inner.store)
            .as_ref()
            .map(|source| source())
            .unwrap_or_default()
    }

    /// Access tokens obtained from WeChat since start.
    pub fn token_refreshes(&self) -> u64 {
        self.inner.token_refreshes.load(Ordering::Relaxed)
    }

    /// Adds an error to the console's list (cut to a bounded length).
    pub fn record_error(&self, kind: &'static str, detail: impl fmt::Display) {
        let mut detail = detail.to_string();
        if let Some((cut, _)) = detail.char_indices().nth(DETAIL_CHARS) {
            detail.truncate(cut);
            detail.push('…');
        }
        let mut errors = lock(&self.inner.errors);
        if errors.len() >= RECENT_ERRORS {
            errors.pop_front();
        }
        errors.push_back(RecentError {
            at: crate::support::clock::unix_now(),
            kind,
            detail,
        });
    }

    // ----- the store -----

    /// Reads the store's counters from `source` at every scrape (the store keeps them itself,
    /// since it can be built outside an app). The last call wins.
    pub fn watch_store(&self, source: impl Fn() -> StoreStats + Send + Sync + 'static) {
        *lock(&self.inner.store) = Some(Box::new(source));
    }

    // ----- messages -----

    /// A message arrived on the callback: `msg_type` and `event` are labels from
    /// [`msg_type_label`] and [`event_label`].
    #[inline]
    pub fn message(&self, msg_type: &'static str, event: &'static str) {
        if let Some(f) = self.on() {
            f.messages
                .get_or_create(&MessageLabels { msg_type, event })
                .inc();
        }
    }

    /// A message was answered: its outcome (`answered`, `late`, `retry`, …) and who replied.
    #[inline]
    pub fn replied(&self, outcome: &'static str, rule: RuleLabel) {
        if let Some(f) = self.on() {
            f.replies
                .get_or_create(&ReplyLabels { outcome, rule })
                .inc();
        }
    }

    /// The rules ran on a message for `took`.
    #[inline]
    pub fn rule_run(&self, took: Duration) {
        if let Some(f) = self.on() {
            f.rule_run.observe(took.as_secs_f64());
        }
    }

    /// A rule run failed: `detail` is `file:line: message`.
    pub fn script_error(&self, detail: impl fmt::Display) {
        if let Some(f) = self.on() {
            f.script_errors.inc();
        }
        self.record_error("rule", detail);
    }

    /// `dedup` answered a retry: `replayed` (the stored answer), `waited` (for the running
    /// first attempt), `foreign` (for another process's attempt).
    #[inline]
    pub fn dedup_retry(&self, how: &'static str) {
        if let Some(f) = self.on() {
            f.dedup_retries.get_or_create(&HowLabels { how }).inc();
        }
    }

    /// The deadline passed before the reply was ready.
    #[inline]
    pub fn deadline_missed(&self) {
        if let Some(f) = self.on() {
            f.deadline_misses.inc();
        }
    }

    /// A late reply went out: `retry` (on a waiting retry, passively) or `sender` (to the
    /// late-reply sender, the customer-service API).
    #[inline]
    pub fn late_reply(&self, way: &'static str) {
        if let Some(f) = self.on() {
            f.late_replies
                .get_or_create(&labels::WayLabels { way })
                .inc();
        }
    }

    // ----- pushes -----

    /// A push from `source` was accepted for `recipients`.
    pub fn push_accepted(&self, source: &'static str, recipients: u64) {
        if let Some(f) = self.on() {
            f.push_accepted
                .get_or_create(&SourceLabels { source })
                .inc();
            f.push_recipients
                .get_or_create(&StateLabels { state: "accepted" })
                .inc_by(recipients);
        }
    }

    /// `n` push recipients reached `state` (`sent`, `delivered`, `failed`).
    pub fn push_recipients(&self, state: &'static str, n: u64) {
        if let Some(f) = self.on()
            && n > 0
        {
            f.push_recipients
                .get_or_create(&StateLabels { state })
                .inc_by(n);
        }
    }

    /// `n` template sends failed for a reason worth another try.
    pub fn push_retries(&self, n: u64) {
        if let Some(f) = self.on() {
            f.push_retries.inc_by(n);
        }
    }

    /// The push queue's depth, as last read.
    pub fn set_push_queue_depth(&self, depth: u64) {
        if let Some(f) = self.on() {
            f.push_queue_depth
                .set(i64::try_from(depth).unwrap_or(i64::MAX));
        }
    }

    // ----- webhooks -----

    /// A webhook delivery attempt ended: `delivered`, `retry` or `failed`.
    pub fn webhook_delivery(&self, result: &'static str) {
        if let Some(f) = self.on() {
            f.webhook_deliveries
                .get_or_create(&labels::ResultLabels { result })
                .inc();
        }
    }

    // ----- WeChat's API -----

    /// A request to WeChat's API `api` (its path) is going out.
    #[inline]
    pub fn api_call(&self, api: &'static str) {
        if let Some(f) = self.on() {
            f.api_calls.get_or_create(&ApiLabels { api }).inc();
        }
    }

    /// A request to `api` failed with `errcode`; `detail` (WeChat's errmsg, or what went
    /// wrong) goes to the console's list as `api: errcode detail`.
    pub fn api_error(&self, api: &'static str, errcode: ErrCode, detail: &str) {
        if let Some(f) = self.on() {
            f.api_errors
                .get_or_create(&ApiErrorLabels { api, errcode })
                .inc();
        }
        if let ErrCode::Code(code) = errcode {
            *lock(&self.inner.api_errors).entry((api, code)).or_default() += 1;
        }
        self.record_error("wechat_api", format_args!("{api}: {errcode} {detail}"));
    }

    /// An access token request ended.
    pub fn token_refresh(&self, ok: bool) {
        if ok {
            self.inner.token_refreshes.fetch_add(1, Ordering::Relaxed);
        }
        if let Some(f) = self.on() {
            let result = if ok { "ok" } else { "failed" };
            f.token_refreshes
                .get_or_create(&labels::ResultLabels { result })
                .inc();
        }
    }

    // ----- HTTP -----

    /// A request to `route` ended with `status` after `took`.
    #[inline]
    pub fn http_request(&self, route: RouteLabel, status: u16, took: Duration) {
        if let Some(f) = self.on() {
            let status = labels::status_class(status);
            f.http_requests
                .get_or_create(&HttpLabels {
                    route: route.clone(),
                    status,
                })
                .inc();
            f.http_latency
                .get_or_create(&RouteLabels { route })
                .observe(took.as_secs_f64());
        }
    }
}

/// A mutex's guard, poisoned or not (what is inside stays consistent: each update is one
/// statement).
fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

/// The store's counters, read at each scrape.
struct StoreCollector(Arc<Mutex<Option<StoreSource>>>);

impl fmt::Debug for StoreCollector {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("StoreCollector")
    }
}

impl Collector for StoreCollector {
    fn encode(&self, mut encoder: DescriptorEncoder) -> Result<(), fmt::Error> {
        let Some(stats) = lock(&self.0).as_ref().map(|source| source()) else {
            return Ok(());
        };
        let counters = [
            (
                "huixin_store_write_batches",
                "Batches (transactions) the store writer wrote",
                stats.batches,
            ),
            (
                "huixin_store_writes",
                "Deferred writes (log rows, records) in those batches",
                stats.writes,
            ),
            (
                "huixin_store_writes_lost",
                "Deferred writes in batches that failed twice and were given up",
                stats.lost,
            ),
            (
                "huixin_store_writes_dropped",
                "Deferred writes dropped because the writer's queue was full",
                stats.dropped,
            ),
        ];
        for (name, help, value) in counters {
            let counter = ConstCounter::new(value);
            counter.encode(encoder.encode_descriptor(
                name,
                help,
                None,
                counter.metric_type(),
            )?)?;
        }
        let queued = ConstGauge::new(i64::try_from(stats.queued).unwrap_or(i64::MAX));
        queued.encode(encoder.encode_descriptor(
            "huixin_store_queue_length",
            "Deferred writes waiting for the store writer",
            None,
            queued.metric_type(),
        )?)?;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn disabled_metrics_render_nothing_and_keep_the_consoles_numbers() {
        let m = Metrics::disabled();
        m.message("text", "");
        m.api_error("/cgi-bin/user/info", ErrCode::Code(40003), "invalid openid");
        m.token_refresh(true);
        assert_eq!(m.render(), "");
        assert_eq!(
            m.api_errors(),
            [("/cgi-bin/user/info".to_owned(), 40003, 1)]
        );
        assert_eq!(m.token_refreshes(), 1);
        assert_eq!(m.recent_errors().len(), 1);
        assert_eq!(
            m.recent_errors()[0].detail,
            "/cgi-bin/user/info: 40003 invalid openid"
        );
    }

    #[test]
    fn counters_render_with_total_and_labels() {
        let m = Metrics::new();
        m.message("text", "");
        m.message("text", "");
        m.message("event", "subscribe");
        m.replied(
            "answered",
            RuleLabel::Rule {
                file: Arc::from("90-echo.rhai"),
                line: 4,
            },
        );
        let text = m.render();
        assert!(
            text.contains(r#"huixin_messages_total{msg_type="text",event=""} 2"#),
            "{text}"
        );
        assert!(
            text.contains(r#"huixin_replies_total{outcome="answered",rule="90-echo.rhai:4"} 1"#),
            "{text}"
        );
        assert!(text.contains("# TYPE huixin_rule_run_duration_seconds histogram"));
        assert!(text.contains(r#"huixin_build_info{version=""#));
    }

    #[test]
    fn the_error_list_is_bounded_and_details_are_cut() {
        let m = Metrics::disabled();
        for i in 0..RECENT_ERRORS + 5 {
            m.record_error("store", format!("error {i}"));
        }
        let errors = m.recent_errors();
        assert_eq!(errors.len(), RECENT_ERRORS);
        assert_eq!(errors[0].detail, "error 5");
        m.record_error("push", "x".repeat(DETAIL_CHARS * 2));
        let last = m.recent_errors().pop().unwrap();
        assert_eq!(last.detail.chars().count(), DETAIL_CHARS + 1);
    }

    #[test]
    fn the_store_is_read_at_scrape_time() {
        let m = Metrics::new();
        assert!(!m.render().contains("huixin_store_writes_total"));
        m.watch_store(|| StoreStats {
            batches: 2,
            writes: 7,
            lost: 0,
            dropped: 3,
            queued: 1,
        });
        let text = m.render();
        assert!(text.contains("huixin_store_writes_total 7"), "{text}");
        assert!(
            text.contains("huixin_store_writes_dropped_total 3"),
            "{text}"
        );
        assert!(text.contains("huixin_store_queue_length 1"), "{text}");
        assert_eq!(m.store_drops(), 3);
    }
}
