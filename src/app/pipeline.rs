//! The bot an [`super::App`] runs: the middleware listed in `[bot] middleware` (outermost
//! first, see [`crate::bot::middleware`]), then the routes of the push service and of the
//! app's builder, then a catch-all route that runs the Rhai rules.

use std::sync::Arc;
use std::time::Duration;

use axum::http::Extensions;

use crate::apps::{self, Apps};
use crate::bot::late::LateReplies;
use crate::bot::middleware::Blocklist;
use crate::bot::middleware::blocklist::BlocklistLayer;
use crate::bot::middleware::deadline::Deadline;
use crate::bot::middleware::dedup::Dedup;
use crate::bot::middleware::followers::Followers;
use crate::bot::middleware::log::InboundLog;
use crate::bot::middleware::rate_limit::RateLimit;
use crate::bot::middleware::trace::Trace;
use crate::bot::tasks::Tasks;
use crate::bot::{Context, Flow, Replier, Router, filter};
use crate::config::Config;
use crate::metrics::Metrics;
use crate::rules::Rules;
use crate::rules::context::Services;
use crate::store::{Store, StoreError};
use crate::wechat::Reply;

/// How often the runtime blocklist is reread (blocks made by other processes).
const BLOCKLIST_REFRESH: Duration = Duration::from_secs(10);

/// The middleware of `[bot] middleware`, in order, with no routes yet. Returns the router and
/// the services rules use (the store, the blocklist the `blocklist` layer consults, the
/// `extensions` other modules give their script functions, the app's tasks). Background loops
/// (the blocklist's and dedup's readers of other processes' writes) run as `tasks`' loops.
/// `dedup` and `deadline` count retries, misses and late replies into `metrics`.
pub async fn layers(
    config: &Config,
    store: &Store,
    late: Arc<dyn LateReplies>,
    extensions: Extensions,
    tasks: &Tasks,
    metrics: &Metrics,
) -> Result<(Router, Services), StoreError> {
    let bot = &config.bot;
    let deadline = Duration::from_millis(bot.reply_deadline_ms);
    let blocklist = Arc::new(Blocklist::new(bot.blocklist.iter().cloned()));
    blocklist.load(store).await?;
    blocklist.spawn_refresh(store.clone(), BLOCKLIST_REFRESH, tasks);
    let mut router = Router::new();
    for name in &bot.middleware {
        router = match name.as_str() {
            "trace" => router.layer(Trace),
            "dedup" => {
                let window = Duration::from_secs(bot.dedup_window_secs);
                let log_retries = bot.middleware.iter().any(|m| m == "log");
                let dedup = Dedup::with_log(
                    window,
                    deadline,
                    Arc::clone(&late),
                    Some(store.clone()),
                    log_retries,
                )
                .with_metrics(metrics.clone());
                router.layer(dedup)
            }
            "deadline" => router
                .layer(Deadline::new(deadline, Arc::clone(&late)).with_metrics(metrics.clone())),
            "followers" => router.layer(Followers::new(store.clone())),
            "log" => router.layer(InboundLog::new(store.clone())),
            "blocklist" => router.layer(BlocklistLayer(Arc::clone(&blocklist))),
            "rate_limit" if bot.rate_limit_per_minute > 0 => {
                let reply = match bot.rate_limit_reply.trim() {
                    "" => Reply::Success,
                    text => Reply::text(text),
                };
                router.layer(RateLimit::new(bot.rate_limit_per_minute, reply))
            }
            // Validation rejects unknown names; a disabled rate limit adds nothing.
            _ => router,
        };
    }
    let services = Services {
        store: Some(store.clone()),
        blocklist: Some(blocklist),
        extensions: Arc::new(extensions),
        tasks: tasks.clone(),
        ..Services::default()
    };
    Ok((router, services))
}

/// Adds the route that runs `rules` (a catch-all: routes added after it never run). With
/// `platform`, the message then goes to the webhooks, and when no rule replied a webhook that
/// may answer is asked for the reply ([`apps::bot::after_rules`]). Each run's time, and its
/// failure, go to `metrics`.
pub fn with_rules(
    router: Router,
    rules: Arc<Rules>,
    services: Services,
    platform: Option<Apps>,
    metrics: Metrics,
) -> Router {
    router.route(filter::any(), move |ctx: Context| {
        let rules = Arc::clone(&rules);
        let services = services.clone();
        let platform = platform.clone();
        let metrics = metrics.clone();
        async move {
            // No clock read when the metrics are off.
            let started = metrics.is_enabled().then(std::time::Instant::now);
            let outcome = rules.run(Arc::clone(&ctx.message), services).await;
            if let Some(started) = started {
                metrics.rule_run(started.elapsed());
            }
            if let Some(error) = &outcome.error {
                metrics.script_error(error);
            }
            if let Some(origin) = &outcome.replied_by {
                // The rule's own `Arc`: no string made per message.
                ctx.trail.set_replied_by(Replier::Rule {
                    file: Arc::clone(&origin.file),
                    line: origin.line,
                });
            }
            if outcome.secret {
                ctx.trail.set_secret();
            }
            let replied = outcome.replied_by.is_some();
            if let Some(platform) = &platform
                && let Some(reply) = apps::bot::after_rules(platform, &ctx.message, replied).await
            {
                ctx.trail.set_replied_by(Replier::Named("webhook"));
                return Flow::Reply(reply);
            }
            Flow::Reply(outcome.reply)
        }
    })
}
