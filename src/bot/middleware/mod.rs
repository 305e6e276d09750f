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

pub mod blocklist;
pub mod deadline;
pub mod dedup;
pub mod followers;
pub mod log;
pub mod rate_limit;
pub mod trace;

pub use blocklist::Blocklist;
