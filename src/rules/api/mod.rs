//! The functions rules can call, one module each. Every module implements [`ScriptModule`];
//! later parts of huixin (outbound messages, pushes, topics) add theirs the same way, and find
//! their services at run time in [`super::context::Services::extensions`].
//!
//! - [`reply`]: builders for every passive reply type.
//! - [`message`]: the message map handlers receive, and regex captures.
//! - [`session`]: per-user key-values, persisted, with optional expiry.
//! - [`follower`]: what is known about users; the runtime blocklist.
//! - [`time`]: the clock and date formatting in `[rules] timezone`.
//! - [`random`]: random numbers and choices.
//!
//! Modules above the rules add theirs through the same seam, without the rules knowing them:
//! [`crate::app::script_modules`] registers sending (outbound) and pushes.

pub mod follower;
pub mod message;
pub mod random;
pub mod reply;
pub mod session;
pub mod time;

use std::sync::Arc;

use rhai::{Dynamic, Engine, Map};

/// A set of functions for rules.
pub trait ScriptModule: Send + Sync + 'static {
    /// A short name, for diagnostics.
    fn name(&self) -> &'static str;
    /// Registers the module's types and functions.
    fn register(&self, engine: &mut Engine);
}

/// The modules every rule engine has.
pub fn builtin(timezone: jiff::tz::TimeZone) -> Vec<Arc<dyn ScriptModule>> {
    vec![
        Arc::new(reply::Replies),
        Arc::new(message::Messages),
        Arc::new(session::Sessions),
        Arc::new(follower::Followers),
        Arc::new(time::Clock { timezone }),
        Arc::new(random::Randomness),
    ]
}

/// A map's string value (`()` and missing read as empty; other values as their text form).
pub(crate) fn map_str(map: &Map, key: &str) -> String {
    match map.get(key) {
        None => String::new(),
        Some(v) if v.is_unit() => String::new(),
        Some(v) => v.to_string(),
    }
}

/// A map from pairs.
pub(crate) fn map_of<'a, I>(pairs: I) -> Map
where
    I: IntoIterator<Item = (&'a str, Dynamic)>,
{
    pairs.into_iter().map(|(k, v)| (k.into(), v)).collect()
}
