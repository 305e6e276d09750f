//! # huixin (回信)
//!
//! A self-hosted WeChat Official Account bot framework and push server. WeChat posts XML to
//! the account's callback URL; huixin verifies the signature, decrypts safe-mode messages,
//! parses every message and event into typed enums, runs them through middleware and a router
//! of handlers, and answers a correct passive reply.
//!
//! ## Layout
//!
//! Lowest first; a module uses only those above it in this list (`tests/it/layers.rs` checks).
//!
//! - [`support`]: the clock and time zones, token buckets, the path segments huixin keeps.
//! - [`telemetry`]: logging setup.
//! - [`wechat`]: the callback protocol, pure: signatures, AES, XML parsing into typed
//!   messages, reply rendering. No I/O.
//! - [`config`]: `huixin.toml`, `HUIXIN_*` variables and `.env`.
//! - [`metrics`]: Prometheus metrics, one set per app, rendered at `/metrics`; the recent
//!   errors and counts the operator console shows.
//! - [`store`]: persistent state (sqlx; SQLite by default) and its migrations.
//! - [`bot`]: the dispatcher: routes of async handlers behind filters, middleware around them
//!   (dedup of retries, the deadline watchdog, followers, the message log, blocklist, rate
//!   limit), the tasks an app owns, and the built-in echo bot.
//! - [`rules`]: the bot's behaviour as sandboxed Rhai scripts and keyword tables, reloaded
//!   when they change; other modules add script functions through its `ScriptModule` seam.
//! - [`server`]: the callback's HTTP edge (axum): `GET`/`POST`, `/healthz`, the replay guard,
//!   the accept loop with its limits.
//! - [`outbound`]: WeChat's API: the shared access token, template and customer-service
//!   messages, menu, QR codes, users, media, OAuth; late replies and the rules' send functions.
//! - [`push`]: the push service: keys, topics, stored pushes delivered as template
//!   messages, the detail page, and the push APIs huixin speaks.
//! - [`webhooks`]: webhooks out: followers' events stored in an outbox, signed, POSTed to
//!   apps and the config's receivers with retries, in order per follower; the deliveries' API.
//! - [`apps`]: the platform for app developers: apps, binding a site's users to followers
//!   (QR codes and web authorization), the events their webhooks hear, WxPusher's API.
//! - [`simulator`]: plays WeChat against a running server (`huixin simulate`, the tests).
//! - [`emulator`]: a local WeChat (`huixin emulator`, the tests): its API, the call log,
//!   faults, and WeChat's side of the callback.
//! - [`admin`]: the operator console at `/admin`: signing in, sessions and CSRF, pages of
//!   followers, conversations, pushes, keys, rules and the menu, and a phone panel that
//!   plays WeChat against the bot.
//! - [`app`]: the whole product as one value, [`app::App`]: what `huixin serve` runs, and
//!   what Rust users extend with their own routes, middleware and script functions.
//! - [`cli`]: the `huixin` command line, which parses arguments and calls the library.
//!
//! ## A bot in a few lines
//!
//! ```no_run
//! use huixin::app::App;
//! use huixin::bot::{filter, Context};
//! use huixin::config::Config;
//! use huixin::wechat::Reply;
//!
//! # async fn run() -> Result<(), Box<dyn std::error::Error>> {
//! // Everything `huixin serve` does, with one route of yours in front of the rules.
//! let app = App::builder(Config::load(None)?)
//!     .route(filter::text(), |ctx: Context| async move {
//!         ctx.message.content().filter(|t| t.starts_with("rust ")).map(Reply::text)
//!     })
//!     .build()
//!     .await?;
//! app.serve_until_signal().await?;
//! # Ok(()) }
//! ```

#![warn(missing_docs)]

pub mod admin;
pub mod app;
pub mod apps;
pub mod bot;
pub mod cli;
pub mod config;
pub mod emulator;
pub mod metrics;
pub mod outbound;
pub mod push;
pub mod rules;
pub mod server;
pub mod simulator;
pub mod store;
pub mod support;
pub mod telemetry;
pub mod webhooks;
pub mod wechat;
