//! Retention: old log rows, dedup records, expired sessions, old pushes, expired binding codes,
//! old webhook deliveries and expired console sessions are pruned a minute after start
//! (startup and the first requests go first), then every hour, as one of the app's background
//! loops.

use std::time::Duration;

use crate::bot::tasks::Tasks;
use crate::config::Config;
use crate::store::Store;
use crate::support::clock::unix_now;
use crate::webhooks::Webhooks;

/// How often the store is pruned.
const EVERY: Duration = Duration::from_secs(3600);
/// How long after start the first pruning runs.
const FIRST: Duration = Duration::from_secs(60);

/// Starts pruning `store` by `[bot] log_retention_days` and `[push] retention_days`.
pub(super) fn spawn(tasks: &Tasks, store: &Store, config: &Config, webhooks: &Webhooks) {
    let store = store.clone();
    let webhooks = webhooks.clone();
    let retention_days = config.bot.log_retention_days;
    let push_retention_days = config.push.retention_days;
    tasks.spawn_loop("pruning", async move {
        let mut tick = tokio::time::interval_at(tokio::time::Instant::now() + FIRST, EVERY);
        loop {
            tick.tick().await;
            prune(&store, retention_days, push_retention_days).await;
            prune_platform(&store, &webhooks).await;
        }
    });
}

async fn prune(store: &Store, retention_days: u32, push_retention_days: u32) {
    match store.prune(retention_days).await {
        Ok(p) => tracing::debug!(
            log = p.log,
            dedup = p.dedup,
            sessions = p.sessions,
            "pruned"
        ),
        Err(e) => tracing::warn!(error = %e, "pruning the store failed"),
    }
    if push_retention_days > 0 {
        let before = unix_now() - i64::from(push_retention_days) * 86_400;
        match store.backend().push_purge(before).await {
            Ok(0) => {}
            Ok(n) => tracing::info!(pushes = n, "old pushes purged ([push] retention_days)"),
            Err(e) => tracing::warn!(error = %e, "purging old pushes failed"),
        }
    }
}

/// Expired binding codes (a day after expiry, so a late scan is still told the code expired)
/// and old webhook deliveries (`[apps] webhook_retention_days`).
async fn prune_platform(store: &Store, webhooks: &Webhooks) {
    match store.backend().bind_codes_purge(unix_now() - 86_400).await {
        Ok(0) => {}
        Ok(n) => tracing::debug!(codes = n, "expired binding codes purged"),
        Err(e) => tracing::warn!(error = %e, "purging expired binding codes failed"),
    }
    match webhooks.purge(unix_now()).await {
        Ok(0) => {}
        Ok(n) => tracing::info!(
            deliveries = n,
            "old webhook deliveries purged ([apps] webhook_retention_days)"
        ),
        Err(e) => tracing::warn!(error = %e, "purging old webhook deliveries failed"),
    }
    match store.backend().admin_purge(unix_now()).await {
        Ok(0) => {}
        Ok(n) => tracing::debug!(rows = n, "expired console sessions and login links purged"),
        Err(e) => tracing::warn!(error = %e, "purging expired console sessions failed"),
    }
}
