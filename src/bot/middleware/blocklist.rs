//! Messages from blocked users are ignored (answered `success`, logged as `blocked`). The list
//! is `[bot] blocklist` plus the users rules block at run time (`block_user`), which are kept
//! in the store and loaded at start.

use std::collections::HashSet;
use std::sync::{Arc, RwLock};

use crate::bot::{BotError, BoxFuture, Context, Middleware, Next};
use crate::store::{Store, StoreError};
use crate::wechat::Reply;

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

    /// Adds the users blocked at run time, from the store.
    pub async fn load(&self, store: &Store) -> Result<(), StoreError> {
        let users = store.backend().blocked_users().await?;
        self.runtime
            .write()
            .unwrap_or_else(|p| p.into_inner())
            .extend(users);
        Ok(())
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

/// The `blocklist` layer.
#[derive(Debug, Clone)]
pub struct BlocklistLayer(pub Arc<Blocklist>);

impl Middleware for BlocklistLayer {
    fn call(&self, ctx: Context, next: Next) -> BoxFuture<Result<Reply, BotError>> {
        if self.0.contains(ctx.message.from.as_str()) {
            ctx.trail.set_outcome("blocked");
            tracing::debug!("message from a blocked user ignored");
            return Box::pin(async { Ok(Reply::Success) });
        }
        next.run(ctx)
    }
}
