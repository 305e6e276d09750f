//! Follower bookkeeping: a subscribe or unsubscribe event updates the user's row before the
//! rules run (so a welcome rule reads the new state); every message notes when the user was
//! last seen, in the next batch.

use crate::bot::{BotError, BoxFuture, Context, Middleware, Next};
use crate::store::{Deferred, Store};
use crate::wechat::{Event, Reply};

/// The `followers` layer.
#[derive(Debug, Clone)]
pub struct Followers {
    store: Store,
}

impl Followers {
    /// Bookkeeping in `store`.
    pub fn new(store: Store) -> Self {
        Self { store }
    }
}

impl Middleware for Followers {
    fn call(&self, ctx: Context, next: Next) -> BoxFuture<Result<Reply, BotError>> {
        let store = self.store.clone();
        Box::pin(async move {
            let m = &ctx.message;
            let openid = m.from.as_str();
            let written = match m.event() {
                Some(Event::Subscribe(s)) => {
                    store
                        .backend()
                        .follower_subscribed(openid, m.create_time, s.scene.as_deref())
                        .await
                }
                Some(Event::Unsubscribe) => {
                    store
                        .backend()
                        .follower_unsubscribed(openid, m.create_time)
                        .await
                }
                _ => {
                    store.defer(Deferred::Seen {
                        openid: openid.to_owned(),
                        at: m.create_time,
                    });
                    Ok(())
                }
            };
            // Bookkeeping failing must not cost the user the reply.
            if let Err(e) = written {
                tracing::error!(error = %e, "follower bookkeeping failed");
            }
            next.run(ctx).await
        })
    }
}
