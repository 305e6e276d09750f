//! The WeChat callback protocol, pure: signatures, encryption, message parsing and reply
//! rendering. Nothing here does I/O; the HTTP edge ([`crate::server`]) and the simulator
//! ([`crate::simulator`]) drive it.
//!
//! - [`signature`]: `signature` / `msg_signature`, constant-time checks, the skew window.
//! - [`crypto`]: AES-256-CBC with 32-byte PKCS#7, app id checks, the encrypted envelope.
//! - [`xml`]: the raw element tree (DTD refused) and the CDATA writer.
//! - [`message`]: typed messages and events with Unknown variants.
//! - [`reply`]: passive replies, rendered and parsed.
//! - [`callback`]: one request end to end in a given [`Mode`].
//! - [`ids`]: identifier newtypes.

pub mod callback;
pub mod crypto;
pub mod ids;
pub mod message;
pub mod reply;
pub mod signature;
pub mod xml;

pub use callback::{CallbackError, Inbound, Mode, Protocol, Sealed};
pub use crypto::{CryptoError, MsgCrypt};
pub use ids::{MediaId, MsgId, OpenId, TemplateId};
pub use message::{Event, Message, MessageKind, ParseError};
pub use reply::{Article, Music, Reply};
pub use signature::{CallbackQuery, VerifyError};
