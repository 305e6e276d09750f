//! The bot `huixin serve` runs: the middleware listed in `[bot] middleware` (outermost
//! first, see [`super::middleware`]) around a handler that runs the Rhai rules. Rust users can
//! take [`layers`] and add their own middleware and routes to it, or use [`bot`] whole.

use std::sync::Arc;
use std::time::Duration;

use axum::http::Extensions;

use super::late::LateReplies;
use super::middleware::Blocklist;
use super::middleware::blocklist::BlocklistLayer;
use super::middleware::deadline::Deadline;
use super::middleware::dedup::Dedup;
use super::middleware::followers::Followers;
use super::middleware::log::InboundLog;
use super::middleware::rate_limit::RateLimit;
use super::middleware::trace::Trace;
use super::{Context, Flow, Router, filter};
use crate::config::Config;
use crate::rules::Rules;
use crate::rules::context::Services;
use crate::store::{Store, StoreError};
use crate::wechat::Reply;

/// How often the runtime blocklist is reread (blocks made by other processes).
const BLOCKLIST_REFRESH: Duration = Duration::from_secs(10);

/// The middleware of `[bot] middleware`, in order, with no routes yet. Returns the router and
/// the services rules use (the store, the blocklist the `blocklist` layer consults).
pub async fn layers(
    config: &Config,
    store: &Store,
    late: Arc<dyn LateReplies>,
) -> Result<(Router, Services), StoreError> {
    layers_with(config, store, late, Extensions::new()).await
}

/// As [`layers`], with `extensions` handed to rules: how other modules (outbound messages,
/// pushes) give their script functions the handles they need
/// ([`crate::rules::context::Services::extensions`]).
pub async fn layers_with(
    config: &Config,
    store: &Store,
    late: Arc<dyn LateReplies>,
    extensions: Extensions,
) -> Result<(Router, Services), StoreError> {
    let bot = &config.bot;
    let deadline = Duration::from_millis(bot.reply_deadline_ms);
    let blocklist = Arc::new(Blocklist::new(bot.blocklist.iter().cloned()));
    blocklist.load(store).await?;
    blocklist.spawn_refresh(store.clone(), BLOCKLIST_REFRESH);
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
                );
                dedup.spawn_sync();
                router.layer(dedup)
            }
            "deadline" => router.layer(Deadline::new(deadline, Arc::clone(&late))),
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
    };
    Ok((router, services))
}

/// The configured middleware around the rules: what `huixin serve` runs.
pub async fn bot(
    config: &Config,
    store: &Store,
    rules: Arc<Rules>,
    late: Arc<dyn LateReplies>,
) -> Result<Router, StoreError> {
    bot_with(config, store, rules, late, Extensions::new()).await
}

/// As [`bot`], with `extensions` for the script functions of other modules (register the
/// functions themselves with [`Rules::open`]).
pub async fn bot_with(
    config: &Config,
    store: &Store,
    rules: Arc<Rules>,
    late: Arc<dyn LateReplies>,
    extensions: Extensions,
) -> Result<Router, StoreError> {
    let (router, services) = layers_with(config, store, late, extensions).await?;
    Ok(with_rules(router, rules, services))
}

/// Adds the route that runs `rules` (a catch-all: routes added after it never run).
pub fn with_rules(router: Router, rules: Arc<Rules>, services: Services) -> Router {
    router.route(filter::any(), move |ctx: Context| {
        let rules = Arc::clone(&rules);
        let services = services.clone();
        async move {
            let outcome = rules.run(Arc::clone(&ctx.message), services).await;
            if let Some(origin) = &outcome.replied_by {
                ctx.trail.set_replied_by(origin.to_string());
            }
            Flow::Reply(outcome.reply)
        }
    })
}
