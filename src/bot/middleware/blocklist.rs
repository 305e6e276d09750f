//! Messages from blocked users are ignored (answered `success`, logged as `blocked`); WeChat's
//! reports on the account's own sends still pass. The list
//! is `[bot] blocklist` plus the users rules block at run time (`block_user`, written to the
//! store at once and not undone if the rule later fails), reread from the store whenever any
//! process on the same database changes it (learnt at the next beat, within a second; at once
//! on PostgreSQL) and every 10 s besides.

use std::collections::HashSet;
use std::sync::{Arc, RwLock};

use crate::bot::{BotError, BoxFuture, Context, Middleware, Next, Outcome};
use crate::store::{Store, StoreError};
use crate::wechat::{Event, Reply};

/// The blocked users.
#[derive(Debug, Default)]
pub struct Blocklist {
    fixed: HashSet<String>,
    runtime: RwLock<HashSet<String>>,
}

impl Blocklist {
    /// A list of the configured users.
    pub fn new(fixed: impl IntoIterator<Item = String>) -> Self {
        Self {
            fixed: fixed.into_iter().collect(),
            runtime: RwLock::default(),
        }
    }

    /// Replaces the users blocked at run time with the store's list (which other processes
    /// on the same database share).
    pub async fn load(&self, store: &Store) -> Result<(), StoreError> {
        let users: HashSet<String> = store.backend().blocked_users().await?.into_iter().collect();
        *self.runtime.write().unwrap_or_else(|p| p.into_inner()) = users;
        Ok(())
    }

    /// Rereads the store's list when any process changes it, and every `every`, so a block
    /// made in another process applies here too; one of `tasks`' background loops, it also stops when the list is dropped.
    pub fn spawn_refresh(
        self: &Arc<Self>,
        store: Store,
        every: std::time::Duration,
        tasks: &crate::bot::tasks::Tasks,
    ) {
        let weak = Arc::downgrade(self);
        let mut changes = store.blocklist_changes();
        tasks.spawn_loop("blocklist refresh", async move {
            let mut tick = tokio::time::interval(every);
            tick.tick().await;
            loop {
                tokio::select! {
                    _ = tick.tick() => {}
                    changed = changes.changed() => {
                        if changed.is_err() {
                            break;
                        }
                    }
                }
                let Some(list) = weak.upgrade() else { break };
                if let Err(e) = list.load(&store).await {
                    tracing::warn!(error = %e, "rereading the blocklist failed");
                }
            }
        });
    }

    /// Whether `openid` is blocked.
    pub fn contains(&self, openid: &str) -> bool {
        self.fixed.contains(openid)
            || self
                .runtime
                .read()
                .unwrap_or_else(|p| p.into_inner())
                .contains(openid)
    }

    /// Blocks `openid` (the caller records it in the store).
    pub fn add(&self, openid: &str) {
        self.runtime
            .write()
            .unwrap_or_else(|p| p.into_inner())
            .insert(openid.to_owned());
    }

    /// Unblocks `openid` (a user in `[bot] blocklist` stays blocked).
    pub fn remove(&self, openid: &str) {
        self.runtime
            .write()
            .unwrap_or_else(|p| p.into_inner())
            .remove(openid);
    }
}

/// WeChat's reports on the account's own sends (a template message's final status, a mass
/// send, a publication) carry the user as `FromUserName` but are not the user's doing: they
/// pass, so a push to someone blocked since still gets its final status.
fn is_job_report(ctx: &Context) -> bool {
    matches!(
        ctx.message.event(),
        Some(
            Event::TemplateSendJobFinish(_)
                | Event::MassSendJobFinish(_)
                | Event::PublishJobFinish(_)
        )
    )
}

/// The `blocklist` layer.
#[derive(Debug, Clone)]
pub struct BlocklistLayer(pub Arc<Blocklist>);

impl Middleware for BlocklistLayer {
    fn call(&self, ctx: Context, next: Next) -> BoxFuture<Result<Reply, BotError>> {
        if self.0.contains(ctx.message.from.as_str()) && !is_job_report(&ctx) {
            ctx.trail.set_outcome(Outcome::Blocked);
            tracing::debug!("message from a blocked user ignored");
            return Box::pin(async { Ok(Reply::Success) });
        }
        next.run(ctx)
    }
}
