//! The pipeline around the rules, each layer a [`Middleware`](super::Middleware). The order is
//! `[bot] middleware`, outermost first; the default and the reason for it:
//!
//! 1. [`trace`]: a tracing span per message, with its ids, around everything below.
//! 2. [`dedup`]: WeChat's retries never run the rules twice and get exactly the reply of the
//!    first attempt (it must sit outside `deadline`).
//! 3. [`deadline`]: when the reply is not ready by `[bot] reply_deadline_ms`, answer `success`
//!    at once; the reply, when it comes, rides on a waiting retry or goes to the
//!    customer-service sender.
//! 4. [`followers`]: subscribe and unsubscribe bookkeeping, last-seen times.
//! 5. [`log`]: the inbound message log, with what was answered.
//! 6. [`blocklist`]: messages from blocked users are ignored.
//! 7. [`rate_limit`]: a user sending too fast is ignored (or told so).
//!
//! Followers and the log come before the blocklist and the rate limit so that ignored
//! messages are still recorded.
//!
//! ## How `dedup` and `deadline` share a message
//!
//! WeChat waits 5 s for an answer, then drops the connection and sends the identical request
//! again (three tries in all). The two layers split the work:
//!
//! - **The first try** finds no record: `dedup` marks the key *running*, installs a
//!   [`LateSink`](deadline::LateSink) on the context and runs everything inside it as a task
//!   of its own (so a dropped connection or a panic still settles the record).
//! - **In time**: the reply comes back through `deadline` unchanged; `dedup` records it as
//!   *answered* with the `CreateTime` it stamps now, sets that time on the
//!   [`Trail`](crate::bot::Trail) (the HTTP edge renders with it) and hands the reply to every
//!   retry already waiting.
//! - **At the deadline**: `deadline`, and only `deadline`, answers `success` for the try it
//!   holds (marking the trail late), and lets the rules run on. When the reply comes, it
//!   goes to the `LateSink`, never to the customer-service sender directly: `dedup` gives it
//!   to the retries waiting on the running key, each of which answers it passively (the
//!   record becomes *answered*); when none waits, `dedup` marks the record *late* and hands
//!   the reply to the customer-service sender. It goes out one way, once. A `success` reply
//!   needs neither and is recorded *answered*.
//! - **A retry** never runs the rules. On an *answered* key it gets the stored reply with the
//!   stored `CreateTime`, so the same XML bytes; on a *late* key it gets `success` (the user
//!   has the reply already); on a *running* key it waits, beside any other waiting retry, up
//!   to `[bot] reply_deadline_ms` for the reply, and answers `success` if none comes by then.
//!   Records are shared through the store, so a retry reaching another process behaves the
//!   same, watching the owner's record instead of a channel.

pub mod blocklist;
pub mod deadline;
pub mod dedup;
pub mod followers;
pub mod log;
pub mod rate_limit;
pub mod trace;

pub use blocklist::Blocklist;
