//! # huixin (回信)
//!
//! A self-hosted WeChat Official Account bot framework and push server. WeChat posts XML to
//! the account's callback URL; huixin verifies the signature, decrypts safe-mode messages,
//! parses every message and event into typed enums, runs them through middleware and a router
//! of handlers, and answers a correct passive reply.
//!
//! ## Layout
//!
//! - [`wechat`]: the callback protocol, pure: signatures, AES, XML parsing into typed
//!   messages, reply rendering. No I/O.
//! - [`bot`]: the dispatcher: routes of async handlers behind filters, middleware around them
//!   (dedup of retries, the deadline watchdog, followers, the message log, blocklist, rate
//!   limit), the pipeline `huixin serve` runs, and the built-in echo bot.
//! - [`rules`]: the bot's behaviour as sandboxed Rhai scripts and keyword tables, reloaded
//!   when they change.
//! - [`push`]: the push service: keys, topics, stored pushes delivered as template
//!   messages, the detail page, and the push APIs huixin speaks.
//! - [`server`]: the HTTP edge (axum): callback `GET`/`POST`, `/healthz`, startup, shutdown.
//! - [`store`]: persistent state (sqlx; SQLite by default) and its migrations.
//! - [`simulator`]: plays WeChat against a running server (`huixin simulate`, the tests).
//! - [`config`]: `huixin.toml`, `HUIXIN_*` variables and `.env`.
//! - [`cli`]: the `huixin` command line.
//! - [`telemetry`]: logging setup.
//!
//! ## A bot in a few lines
//!
//! ```no_run
//! use huixin::bot::{filter, Context, Router};
//! use huixin::config::Config;
//! use huixin::wechat::Reply;
//!
//! # async fn run() -> Result<(), Box<dyn std::error::Error>> {
//! let router = Router::new().route(filter::text(), |ctx: Context| async move {
//!     ctx.message.content().map(|text| Reply::text(format!("you said: {text}")))
//! });
//! huixin::server::serve(&Config::load(None)?, router).await?;
//! # Ok(()) }
//! ```

#![warn(missing_docs)]

pub mod bot;
pub mod cli;
pub mod config;
pub mod emulator;
pub mod outbound;
pub mod push;
pub mod rules;
pub mod server;
pub mod simulator;
pub mod store;
pub mod telemetry;
pub mod wechat;
