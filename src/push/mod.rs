//! The push service: scripts and monitors push markdown over HTTP; huixin stores each push,
//! delivers it to followers as template messages whose link opens a detail page, and tracks
//! every recipient's status.
//!
//! - [`keys`]: the shapes of keys, push ids and topic names.
//! - [`service`]: [`Pushes`]: keys, topics, accepting a push.
//! - `commit`: group commit: pushes accepted at the same time share one transaction.
//! - [`deliver`]: the delivery worker, and `TEMPLATESENDJOBFINISH`.
//! - [`bot`]: the push service's part in the bot: delivery reports, topic QR codes.
//! - [`api`]: the HTTP APIs and the detail page.
//! - [`script`]: pushes, topics and keys from Rhai rules.
//! - [`render`]: markdown to sanitized HTML, and the short plain texts template fields carry.
//! - [`page`]: the detail page and its 404, as HTML.

pub mod api;
pub mod bot;
mod commit;
pub mod deliver;
pub mod keys;
pub mod page;
pub mod render;
pub mod script;
pub mod service;

pub use service::{Accepted, Key, PersonalKey, PushError, PushRequest, Pushes, Scope, Sender};
