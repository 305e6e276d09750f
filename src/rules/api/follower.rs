//! Users: `follower()` (the current user) and `follower(openid)` give a map with `openid`,
//! `subscribed`, `first_subscribed_at`, `last_subscribed_at`, `unsubscribed_at`, `scene` and
//! `last_seen_at` (times in Unix seconds, `()` when unknown), or `()` for a user never seen;
//! `follower_count()`; and the runtime blocklist: `block_user(openid)`,
//! `block_user(openid, reason)`, `unblock_user(openid)`, `is_blocked(openid)`.

use rhai::{Dynamic, Engine, EvalAltResult, INT, Map};

use super::{ScriptModule, map_of};
use crate::rules::context::{self, ScriptContext, runtime_error};
use crate::store::{Follower, Store};
use crate::support::clock::unix_now;

/// The follower and blocklist functions.
pub struct Followers;

impl ScriptModule for Followers {
    fn name(&self) -> &'static str {
        "follower"
    }

    fn register(&self, engine: &mut Engine) {
        engine
            .register_fn("follower", || {
                context::with(|ctx| lookup(ctx, &ctx.openid.clone()))
            })
            .register_fn("follower", |openid: &str| {
                context::with(|ctx| lookup(ctx, openid))
            })
            .register_fn("follower_count", || {
                context::with(|ctx| {
                    let store = store(ctx)?;
                    let n = ctx
                        .runtime()?
                        .block_on(store.backend().follower_count())
                        .map_err(|e| runtime_error(format!("followers unavailable: {e}")))?;
                    Ok(INT::try_from(n).unwrap_or(INT::MAX))
                })
            })
            .register_fn("block_user", |openid: &str| block(openid, ""))
            .register_fn("block_user", block)
            .register_fn("unblock_user", unblock)
            .register_fn("is_blocked", |openid: &str| {
                context::with(|ctx| {
                    Ok(ctx
                        .services
                        .blocklist
                        .as_ref()
                        .is_some_and(|b| b.contains(openid)))
                })
            });
    }
}

fn store(ctx: &ScriptContext) -> Result<Store, Box<EvalAltResult>> {
    ctx.services
        .store
        .clone()
        .ok_or_else(|| runtime_error("no store available"))
}

fn lookup(ctx: &mut ScriptContext, openid: &str) -> Result<Dynamic, Box<EvalAltResult>> {
    let Some(store) = ctx.services.store.clone() else {
        return Ok(Dynamic::UNIT);
    };
    let follower = ctx
        .runtime()?
        .block_on(store.backend().follower(openid))
        .map_err(|e| runtime_error(format!("followers unavailable: {e}")))?;
    Ok(follower.map_or(Dynamic::UNIT, |f| Dynamic::from_map(follower_map(&f))))
}

fn time(t: Option<i64>) -> Dynamic {
    t.map_or(Dynamic::UNIT, Dynamic::from_int)
}

fn follower_map(f: &Follower) -> Map {
    map_of([
        ("openid", Dynamic::from(f.openid.clone())),
        ("subscribed", Dynamic::from_bool(f.subscribed)),
        ("first_subscribed_at", time(f.first_subscribed_at)),
        ("last_subscribed_at", time(f.last_subscribed_at)),
        ("unsubscribed_at", time(f.unsubscribed_at)),
        (
            "scene",
            f.scene.clone().map_or(Dynamic::UNIT, Dynamic::from),
        ),
        ("last_seen_at", time(f.last_seen_at)),
    ])
}

fn block(openid: &str, reason: &str) -> Result<(), Box<EvalAltResult>> {
    if openid.is_empty() {
        return Err(runtime_error("block_user: empty openid"));
    }
    context::with(|ctx| {
        let store = store(ctx)?;
        ctx.runtime()?
            .block_on(store.block_user(openid, reason, unix_now()))
            .map_err(|e| runtime_error(format!("blocklist unavailable: {e}")))?;
        if let Some(list) = &ctx.services.blocklist {
            list.add(openid);
        }
        tracing::info!(%openid, %reason, "user blocked by a rule");
        Ok(())
    })
}

fn unblock(openid: &str) -> Result<(), Box<EvalAltResult>> {
    context::with(|ctx| {
        let store = store(ctx)?;
        ctx.runtime()?
            .block_on(store.unblock_user(openid))
            .map_err(|e| runtime_error(format!("blocklist unavailable: {e}")))?;
        if let Some(list) = &ctx.services.blocklist {
            list.remove(openid);
        }
        tracing::info!(%openid, "user unblocked by a rule");
        Ok(())
    })
}
