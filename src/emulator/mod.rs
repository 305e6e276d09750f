//! A local stand-in for WeChat's platform: the outbound API, and WeChat's side of the callback.
//!
//! `huixin emulator` serves it; huixin's own tests start it in-process on port 0. It keeps
//! everything in memory: access tokens, followers and what each of them received, the menu,
//! QR codes, uploaded media, web-authorization codes, and a log of every API call.
//!
//! ## The HTTP surface ([`Emulator::app`])
//!
//! WeChat's API, answering like WeChat (HTTP 200 with `{"errcode","errmsg"}` on errors):
//! - `GET /cgi-bin/token`, `POST /cgi-bin/stable_token`: access tokens (`tokens.rs`).
//! - `POST /cgi-bin/message/template/send`, `POST /cgi-bin/message/custom/send`,
//!   `GET /cgi-bin/template/get_all_private_template` (`messages.rs`).
//! - `POST /cgi-bin/menu/create`, `GET /cgi-bin/menu/get`, `GET /cgi-bin/menu/delete`
//!   (`menu.rs`).
//! - `POST /cgi-bin/qrcode/create`, `GET /cgi-bin/showqrcode` (`qrcode.rs`).
//! - `GET /cgi-bin/user/info`, `GET /cgi-bin/user/get` (`users.rs`).
//! - `POST /cgi-bin/media/upload` (`media.rs`).
//! - `GET /connect/oauth2/authorize`, `GET /sns/oauth2/access_token`, `GET /sns/userinfo`
//!   (`oauth.rs`).
//!
//! Every API call (answered, refused or faulted) is logged as a [`CallRecord`], delayed by
//! [`Settings::latency`], and may be answered by an injected [`Fault`] (`record.rs`).
//!
//! Control endpoints for tests and for people poking at it (JSON, `control.rs`):
//! `GET /emulator`, `GET|DELETE /emulator/calls`, `GET|POST|DELETE /emulator/faults`,
//! `POST /emulator/tokens/expire`, `POST /emulator/clock`, `POST /emulator/users`,
//! `GET /emulator/users/{openid}`, `POST /emulator/templates`, `POST /emulator/oauth/code`,
//! `POST /emulator/send?from=OPENID`.
//!
//! Toward the bot (`push.rs`), the emulator plays WeChat: [`Emulator::send`] posts a signed
//! (and, in safe and compatible mode, encrypted) message to the bot's callback, waits
//! [`Settings::reply_timeout`] per attempt, retries like WeChat, and reports what the user saw.
//! A successful template send posts `TEMPLATESENDJOBFINISH` the same way.
//!
//! ## Time
//!
//! The emulator keeps its own clock: real time plus an offset that [`Emulator::advance_clock`]
//! (`POST /emulator/clock`) moves forward, so tests can step past token lifetimes, the 30 s
//! forced-refresh spacing, the 48 h customer-service window or the 24 h `client_msg_id` memory
//! without waiting.

mod api;
mod control;
mod media;
mod menu;
mod messages;
mod oauth;
mod push;
mod qrcode;
mod record;
mod state;
mod tokens;
mod users;

use std::future::Future;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use tokio::net::TcpListener;

pub use control::message_spec;
pub use push::{Attempt, Conversation, UserSaw};
pub use record::{CallRecord, Fault};
pub use state::Delivered;

use crate::config::Config;
use crate::simulator::{MessageSpec, SimError, Simulator};
use crate::wechat::{Mode, MsgCrypt};

/// The OpenID the simulator uses by default; the emulator seeds it as a follower.
pub const DEFAULT_OPENID: &str = "o_huixin_simulated_user";
/// `ToUserName` of the messages the emulator sends to the bot (the account's original id).
pub const DEFAULT_ACCOUNT_ID: &str = "gh_huixin_emulated";
/// The template every emulated account has (`{{title.DATA}}`, `{{summary.DATA}}`,
/// `{{time.DATA}}`, as huixin's pushes fill them).
pub const BUILTIN_TEMPLATE_ID: &str = "huixin_template_1";
/// What a WeChat user sees when the account's server fails to answer properly.
pub const ERROR_NOTICE: &str = "该公众号暂时无法提供服务，请稍后再试";

/// How the emulator behaves: from `[emulator]` and `[wechat]` ([`Settings::from_config`]), or
/// built by tests (start from [`Settings::default`]).
#[derive(Clone)]
pub struct Settings {
    /// The AppID callers must present; empty accepts any.
    pub app_id: String,
    /// The AppSecret callers must present; empty accepts any.
    pub app_secret: String,
    /// How long an access token lives (`expires_in`).
    pub token_lifetime: Duration,
    /// How long a replaced access token keeps working.
    pub token_grace: Duration,
    /// Added to every API answer.
    pub latency: Duration,
    /// How long "WeChat" waits for the bot's answer, per attempt.
    pub reply_timeout: Duration,
    /// Where inbound messages and `TEMPLATESENDJOBFINISH` go; `None`: no bot.
    pub bot: Option<BotTarget>,
    /// Users following from the start, counted as having interacted now.
    pub followers: Vec<String>,
    /// Template ids the account has from the start, besides [`BUILTIN_TEMPLATE_ID`], each
    /// with the fields huixin's pushes fill (`title`, `summary`, `time`).
    pub templates: Vec<String>,
}

impl Default for Settings {
    /// Any credentials, WeChat's lifetimes (7200 s, 300 s grace), no latency, a 5 s reply
    /// timeout, no bot, no followers, only the built-in template.
    fn default() -> Self {
        Self {
            app_id: String::new(),
            app_secret: String::new(),
            token_lifetime: Duration::from_secs(7_200),
            token_grace: Duration::from_secs(300),
            latency: Duration::ZERO,
            reply_timeout: Duration::from_secs(5),
            bot: None,
            followers: Vec::new(),
            templates: Vec::new(),
        }
    }
}

impl std::fmt::Debug for Settings {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // Never print the secret.
        f.debug_struct("Settings")
            .field("app_id", &self.app_id)
            .field("token_lifetime", &self.token_lifetime)
            .field("token_grace", &self.token_grace)
            .field("latency", &self.latency)
            .field("reply_timeout", &self.reply_timeout)
            .field("bot", &self.bot)
            .field("followers", &self.followers.len())
            .field("templates", &self.templates)
            .finish_non_exhaustive()
    }
}

/// The bot the emulator talks to, as WeChat would: its callback URL and the account's
/// callback settings.
#[derive(Clone)]
pub struct BotTarget {
    /// The full callback URL (`http://127.0.0.1:8080/wechat`).
    pub callback_url: String,
    /// The callback Token (signs every request).
    pub token: String,
    /// Plain, compatible or safe.
    pub mode: Mode,
    /// The EncodingAESKey; may be empty in plain mode.
    pub encoding_aes_key: String,
    /// The AppID appended to encrypted messages.
    pub app_id: String,
    /// `ToUserName` of every message: the account's original id.
    pub account_id: String,
}

impl std::fmt::Debug for BotTarget {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // Never print the token or the key.
        f.debug_struct("BotTarget")
            .field("callback_url", &self.callback_url)
            .field("mode", &self.mode)
            .field("app_id", &self.app_id)
            .field("account_id", &self.account_id)
            .finish_non_exhaustive()
    }
}

impl Settings {
    /// Settings from `[emulator]` and `[wechat]`. The bot's callback is `[emulator]
    /// callback_url`, else `http://<[server] listen><[server] path>` with an unspecified host
    /// (`0.0.0.0`, `::`, empty) read as `127.0.0.1`; there is no bot when neither gives a
    /// usable address (port 0). `bot_token` (the generated token, when `[wechat] token` is
    /// empty) signs the requests, else `[wechat] token`. The followers are `[emulator]
    /// followers` plus the simulator's default user.
    pub fn from_config(config: &Config, bot_token: Option<String>) -> Settings {
        let em = &config.emulator;
        let callback_url = if em.callback_url.is_empty() {
            derive_callback(&config.server.listen, &config.server.path)
        } else {
            Some(em.callback_url.clone())
        };
        let bot = callback_url.map(|callback_url| BotTarget {
            callback_url,
            token: bot_token.unwrap_or_else(|| config.wechat.token.expose().to_owned()),
            mode: config.wechat.mode,
            encoding_aes_key: config.wechat.encoding_aes_key.expose().to_owned(),
            app_id: config.wechat.app_id.clone(),
            account_id: DEFAULT_ACCOUNT_ID.to_owned(),
        });
        let mut followers = em.followers.clone();
        if !followers.iter().any(|f| f == DEFAULT_OPENID) {
            followers.push(DEFAULT_OPENID.to_owned());
        }
        Settings {
            app_id: config.wechat.app_id.clone(),
            app_secret: config.wechat.app_secret.expose().to_owned(),
            token_lifetime: Duration::from_secs(em.token_lifetime_secs),
            token_grace: Duration::from_secs(em.token_grace_secs),
            latency: Duration::from_millis(em.latency_ms),
            reply_timeout: Duration::from_millis(em.reply_timeout_ms),
            bot,
            followers,
            // The template huixin pushes with exists in the account it plays, so pushing works
            // against the emulator as configured, without registering it by hand.
            templates: Some(config.push.template_id.trim())
                .filter(|id| !id.is_empty())
                .map(str::to_owned)
                .into_iter()
                .collect(),
        }
    }
}

/// `http://HOST:PORT/path` from `[server] listen` and `path`; `None` for port 0 or an
/// address without a port.
fn derive_callback(listen: &str, path: &str) -> Option<String> {
    let (host, port) = listen.trim().rsplit_once(':')?;
    let port: u16 = port.parse().ok()?;
    if port == 0 {
        return None;
    }
    let host = match host {
        "" | "0.0.0.0" | "[::]" | "::" => "127.0.0.1",
        other => other,
    };
    Some(format!("http://{host}:{port}{path}"))
}

/// Why the emulator could not play WeChat toward the bot.
#[derive(Debug, thiserror::Error)]
pub enum EmulatorError {
    /// No bot target is configured. `POST /emulator/send` answers HTTP 409.
    #[error(
        "no bot to send to: set [emulator] callback_url, or a [server] listen address with a port"
    )]
    NoBot,
    /// The bot target is unusable (callback URL not http(s), missing or invalid
    /// EncodingAESKey in safe or compatible mode). `POST /emulator/send` answers HTTP 409.
    #[error("bot target is unusable: {0}")]
    Bot(String),
    /// The message could not be built (a message file that cannot be read).
    /// `POST /emulator/send` answers HTTP 400.
    #[error("cannot build the message: {0}")]
    Message(#[from] SimError),
}

/// The emulator: cheap to clone, every clone shares the same state.
#[derive(Clone)]
pub struct Emulator {
    shared: Arc<Shared>,
}

impl std::fmt::Debug for Emulator {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Emulator")
            .field("settings", &self.shared.settings)
            .finish_non_exhaustive()
    }
}

struct Shared {
    settings: Settings,
    clock: Clock,
    /// The bot, ready to be played against; the error says why it is unusable.
    bot: Option<Result<Simulator, String>>,
    /// Posts to the bot.
    client: reqwest::Client,
    state: Mutex<state::State>,
}

/// The emulator's clock: real time plus an offset tests move forward. Emulator time is a
/// [`Duration`] that starts at [`Clock::BASE`], so instants before the start ("interacted
/// 49 hours ago") are representable.
struct Clock {
    start: Instant,
    start_unix_ms: u64,
    offset_ms: AtomicU64,
}

impl Clock {
    /// Emulator time at start.
    const BASE: Duration = Duration::from_secs(365 * 24 * 3600);

    fn new() -> Self {
        let start_unix_ms = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map(|d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX))
            .unwrap_or(0);
        Self {
            start: Instant::now(),
            start_unix_ms,
            offset_ms: AtomicU64::new(0),
        }
    }

    /// Emulator time now.
    fn now(&self) -> Duration {
        Self::BASE
            + self.start.elapsed()
            + Duration::from_millis(self.offset_ms.load(Ordering::SeqCst))
    }

    /// Emulator time as Unix milliseconds.
    fn unix_ms_at(&self, at: Duration) -> u64 {
        let since_start = at.saturating_sub(Self::BASE);
        self.start_unix_ms
            .saturating_add(u64::try_from(since_start.as_millis()).unwrap_or(u64::MAX))
    }

    fn unix_ms(&self) -> u64 {
        self.unix_ms_at(self.now())
    }

    fn advance(&self, by: Duration) {
        let ms = u64::try_from(by.as_millis()).unwrap_or(u64::MAX);
        let _ = self
            .offset_ms
            .fetch_update(Ordering::SeqCst, Ordering::SeqCst, |o| {
                Some(o.saturating_add(ms))
            });
    }
}

impl Emulator {
    /// An emulator with `settings`: the built-in template and those of
    /// [`Settings::templates`], the followers seeded, no menu.
    pub fn new(settings: Settings) -> Self {
        let clock = Clock::new();
        let bot = settings.bot.as_ref().map(build_simulator);
        if let Some(Err(e)) = &bot {
            tracing::warn!(error = %e, "the emulator's bot target is unusable");
        }
        let state = state::State::new(&settings, clock.now(), clock.unix_ms());
        Self {
            shared: Arc::new(Shared {
                settings,
                clock,
                bot,
                client: http_client(),
                state: Mutex::new(state),
            }),
        }
    }

    /// The settings it runs with.
    pub fn settings(&self) -> &Settings {
        &self.shared.settings
    }

    /// The whole HTTP surface: WeChat's API and the control endpoints.
    pub fn app(&self) -> axum::Router {
        control::app(self.clone())
    }

    /// Binds `addr` (port 0 picks a free port).
    pub async fn bind(&self, addr: &str) -> std::io::Result<BoundEmulator> {
        let listener = TcpListener::bind(addr).await?;
        let local_addr = listener.local_addr()?;
        Ok(BoundEmulator {
            listener,
            app: self.app(),
            local_addr,
        })
    }

    /// Every call so far, oldest first: API calls, and the emulator's own posts to the bot
    /// (method `PUSH`, path the callback's path).
    pub fn calls(&self) -> Vec<CallRecord> {
        self.lock().calls.iter().cloned().collect()
    }

    /// Forgets the calls so far.
    pub fn clear_calls(&self) {
        self.lock().calls.clear();
    }

    /// Queues a fault (see [`Fault`]).
    pub fn inject(&self, fault: Fault) {
        self.lock().faults.push(fault.normalized());
    }

    /// The faults still queued.
    pub fn faults(&self) -> Vec<Fault> {
        self.lock().faults.clone()
    }

    /// Drops every queued fault.
    pub fn clear_faults(&self) {
        self.lock().faults.clear();
    }

    /// Makes every access token issued so far (classic and stable) expired now.
    pub fn expire_tokens(&self) {
        let now = self.now();
        self.lock().tokens.expire_all(now);
    }

    /// Moves the emulator's clock forward by `by`.
    pub fn advance_clock(&self, by: Duration) {
        self.shared.clock.advance(by);
    }

    /// Adds a user or updates one: following or not, and having interacted now or never.
    /// The inbox is kept.
    pub fn add_user(&self, openid: &str, following: bool, interacted: bool) {
        self.add_user_with(openid, following, interacted.then_some(Duration::ZERO));
    }

    /// As [`Emulator::add_user`], with the last interaction `ago` before now (`None`: never).
    pub fn add_user_with(&self, openid: &str, following: bool, ago: Option<Duration>) {
        let now = self.now();
        let unix_ms = self.shared.clock.unix_ms();
        let interaction = ago.map(|ago| now.saturating_sub(ago));
        self.lock()
            .users
            .upsert(openid, following, interaction, unix_ms);
    }

    /// What `openid` received so far (passive replies, customer-service and template
    /// messages), oldest first; empty for an unknown user.
    pub fn inbox(&self, openid: &str) -> Vec<Delivered> {
        self.lock()
            .users
            .get(openid)
            .map(|u| u.inbox.clone())
            .unwrap_or_default()
    }

    /// Plays WeChat toward the bot: `from` sends the message `spec` (`ToUserName` is the
    /// target's `account_id`), signed, and encrypted in safe and compatible mode. Each
    /// attempt waits at most [`Settings::reply_timeout`]; no answer in time (or no
    /// connection) retries the identical request, 3 attempts in all. An HTTP status other
    /// than 200 or an answer WeChat would refuse shows the error notice at once; `success`
    /// or an empty body shows nothing; a valid reply is shown and lands in the inbox as
    /// `passive`. The user counts as having interacted now; a subscribe makes them a
    /// follower (a user never seen before becomes one too), an unsubscribe ends it. The
    /// exchange is logged as a `PUSH` call.
    pub async fn send(&self, from: &str, spec: MessageSpec) -> Result<Conversation, EmulatorError> {
        push::send(self, from, spec).await
    }

    fn lock(&self) -> MutexGuard<'_, state::State> {
        // A poisoned lock only means a handler panicked mid-update; the state is still usable.
        self.shared.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn now(&self) -> Duration {
        self.shared.clock.now()
    }

    fn unix_ms(&self) -> u64 {
        self.shared.clock.unix_ms()
    }
}

/// The client the emulator posts to the bot with.
fn http_client() -> reqwest::Client {
    reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .unwrap_or_else(|e| {
            tracing::warn!(error = %e, "emulator HTTP client: falling back to defaults");
            reqwest::Client::new()
        })
}

fn build_simulator(bot: &BotTarget) -> Result<Simulator, String> {
    let crypt = if bot.encoding_aes_key.is_empty() {
        if bot.mode != Mode::Plain {
            return Err(format!(
                "{} mode needs an EncodingAESKey",
                bot.mode.as_str()
            ));
        }
        None
    } else {
        Some(
            MsgCrypt::new(&bot.token, &bot.encoding_aes_key, &bot.app_id, &[])
                .map_err(|e| format!("EncodingAESKey: {e}"))?,
        )
    };
    Simulator::new(&bot.callback_url, &bot.token, bot.mode, crypt).map_err(|e| e.to_string())
}

/// A bound emulator, ready to serve.
pub struct BoundEmulator {
    listener: TcpListener,
    app: axum::Router,
    local_addr: SocketAddr,
}

impl std::fmt::Debug for BoundEmulator {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("BoundEmulator")
            .field("local_addr", &self.local_addr)
            .finish_non_exhaustive()
    }
}

impl BoundEmulator {
    /// The bound address (useful with port 0).
    pub fn local_addr(&self) -> SocketAddr {
        self.local_addr
    }

    /// Serves until `shutdown` completes, then lets in-flight requests finish (the same
    /// accept loop and limits as the bot's server, [`crate::server::listen`]).
    pub async fn run(
        self,
        shutdown: impl Future<Output = ()> + Send + 'static,
    ) -> std::io::Result<()> {
        crate::server::listen::serve(
            self.listener,
            self.app,
            shutdown,
            crate::server::listen::Limits::default(),
        )
        .await
    }
}
