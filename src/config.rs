//! Configuration: one struct read from `huixin.toml` (or `--config PATH`), overridden by
//! `HUIXIN_<SECTION>_<KEY>` environment variables, which a `.env` file in the working directory
//! may supply. With nothing configured the defaults run a plain-mode server on
//! 127.0.0.1:8080 with an SQLite file in the working directory.
//!
//! The key names are fixed: tools and deployment scripts rely on them.

use std::fmt;
use std::path::{Path, PathBuf};

use figment::Figment;
use figment::providers::{Env, Format, Serialized, Toml};
use serde::{Deserialize, Deserializer, Serialize};

use crate::wechat::crypto::{CryptoError, MsgCrypt, decode_aes_key};
use crate::wechat::{Mode, Protocol};

/// The config file read when `--config` is not given (optional).
pub const DEFAULT_CONFIG_FILE: &str = "huixin.toml";
/// The environment variable naming the config file when `--config` is not given.
pub const CONFIG_ENV: &str = "HUIXIN_CONFIG";
/// Prefix of the environment variables that override the file.
pub const ENV_PREFIX: &str = "HUIXIN_";

/// Sections of the config; `HUIXIN_<SECTION>_<KEY>` maps to `[section] key`.
const SECTIONS: &[&str] = &[
    "server", "wechat", "storage", "rules", "bot", "push", "apps", "admin", "emulator", "log",
    "metrics",
];

/// The whole configuration.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Config {
    /// `[server]`: the HTTP listener.
    pub server: ServerConfig,
    /// `[wechat]`: the account.
    pub wechat: WechatConfig,
    /// `[storage]`: the database.
    pub storage: StorageConfig,
    /// `[rules]`: the bot's Rhai rules.
    pub rules: RulesConfig,
    /// `[bot]`: the message pipeline around the rules.
    pub bot: BotConfig,
    /// `[push]`: the push service.
    pub push: PushConfig,
    /// `[apps]`: apps of developers, their bindings and the webhook outbox.
    pub apps: AppsConfig,
    /// `[[webhooks]]`: receivers of followers' events named in the config (besides apps'
    /// callback URLs). Left out of the defaults when empty, so the defaults stay a table of
    /// sections.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub webhooks: Vec<ConfigWebhook>,
    /// `[admin]`: the operator console at `/admin`.
    pub admin: AdminConfig,
    /// `[emulator]`: `huixin emulator`, the local stand-in for WeChat's platform.
    pub emulator: EmulatorConfig,
    /// `[log]`: logging.
    pub log: LogConfig,
    /// `[metrics]`: Prometheus metrics at `/metrics`.
    pub metrics: MetricsConfig,
}

/// `[server]`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct ServerConfig {
    /// `listen`: address and port to bind. Default `127.0.0.1:8080`; port 0 picks a free port.
    pub listen: String,
    /// `path`: the callback path WeChat posts to. Default `/wechat`.
    pub path: String,
    /// `public_url`: the externally visible base URL (`https://bot.example.com`), used for links
    /// huixin hands out. Default empty (derived from `listen`).
    pub public_url: String,
    /// `body_limit`: largest request body accepted, in bytes. Default 262144 (256 KiB).
    pub body_limit: usize,
}

impl Default for ServerConfig {
    fn default() -> Self {
        Self {
            listen: "127.0.0.1:8080".into(),
            path: "/wechat".into(),
            public_url: String::new(),
            body_limit: 256 * 1024,
        }
    }
}

/// WeChat's API.
pub const DEFAULT_API_BASE: &str = "https://api.weixin.qq.com";

/// `[wechat]`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct WechatConfig {
    /// `token`: the Token set in the WeChat console (3-32 letters and digits). Empty: a token
    /// is generated on first start, printed once and kept in the store.
    pub token: Secret,
    /// `app_id`: the AppID (`wx…`). Required in safe and compatible mode.
    #[serde(deserialize_with = "lenient_string")]
    pub app_id: String,
    /// `app_secret`: the AppSecret, for the outbound API.
    pub app_secret: Secret,
    /// `encoding_aes_key`: the 43-character EncodingAESKey. Required in safe and compatible mode.
    pub encoding_aes_key: Secret,
    /// `mode`: `plain`, `compatible` or `safe`. Default `plain`.
    pub mode: Mode,
    /// `api_base`: base URL of the WeChat API. Default `https://api.weixin.qq.com`.
    pub api_base: String,
    /// `max_clock_skew_secs`: refuse requests whose timestamp is further than this from our
    /// clock. Default 300; 0 disables the check.
    pub max_clock_skew_secs: u64,
    /// `token_endpoint`: how access tokens are fetched: `stable` (`/cgi-bin/stable_token`, the
    /// same token while it is valid) or `classic` (`/cgi-bin/token`, every call a new one).
    /// Default `stable`.
    pub token_endpoint: TokenEndpoint,
    /// `token_refresh_margin_secs`: refresh an access token this long before it expires.
    /// Default 300.
    pub token_refresh_margin_secs: u64,
    /// `extra_app_ids`: further app ids accepted in encrypted messages (a third-party
    /// platform's component app id). A list, or one comma-separated string (handy in an
    /// environment variable). Default empty.
    #[serde(deserialize_with = "string_or_list")]
    pub extra_app_ids: Vec<String>,
}

impl Default for WechatConfig {
    fn default() -> Self {
        Self {
            token: Secret::default(),
            app_id: String::new(),
            app_secret: Secret::default(),
            encoding_aes_key: Secret::default(),
            mode: Mode::Plain,
            api_base: DEFAULT_API_BASE.into(),
            max_clock_skew_secs: 300,
            token_endpoint: TokenEndpoint::Stable,
            token_refresh_margin_secs: 300,
            extra_app_ids: Vec::new(),
        }
    }
}

/// `[wechat] token_endpoint`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum TokenEndpoint {
    /// `POST /cgi-bin/stable_token`: the same token while it is valid.
    #[default]
    Stable,
    /// `GET /cgi-bin/token`: a new token on every call (the previous one lives 5 more minutes).
    Classic,
}

/// `[emulator]`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct EmulatorConfig {
    /// `listen`: where `huixin emulator` serves WeChat's API. Default `127.0.0.1:9090`.
    pub listen: String,
    /// `callback_url`: the bot's callback URL, where the emulator posts messages and events.
    /// Default empty: `http://<[server] listen><[server] path>`.
    pub callback_url: String,
    /// `token_lifetime_secs`: how long an access token lives. Default 7200.
    pub token_lifetime_secs: u64,
    /// `token_grace_secs`: how long a replaced token keeps working. Default 300.
    pub token_grace_secs: u64,
    /// `latency_ms`: added to every API answer. Default 0.
    pub latency_ms: u64,
    /// `reply_timeout_ms`: how long WeChat waits for the bot's answer before retrying.
    /// Default 5000.
    pub reply_timeout_ms: u64,
    /// `followers`: OpenIDs that follow the account from the start (besides the simulator's
    /// default user). Default empty.
    #[serde(deserialize_with = "string_or_list")]
    pub followers: Vec<String>,
}

impl Default for EmulatorConfig {
    fn default() -> Self {
        Self {
            listen: "127.0.0.1:9090".into(),
            callback_url: String::new(),
            token_lifetime_secs: 7_200,
            token_grace_secs: 300,
            latency_ms: 0,
            reply_timeout_ms: 5_000,
            followers: Vec::new(),
        }
    }
}

impl WechatConfig {
    /// The encryption state, when an EncodingAESKey is configured.
    pub fn msg_crypt(&self, token: &str) -> Result<Option<MsgCrypt>, CryptoError> {
        let key = self.encoding_aes_key.expose();
        if key.is_empty() {
            return Ok(None);
        }
        MsgCrypt::new(token, key, &self.app_id, &self.extra_app_ids).map(Some)
    }

    /// The callback protocol for this account, signing with `token` (the configured token, or
    /// the generated one).
    pub fn protocol(&self, token: &str) -> Result<Protocol, CryptoError> {
        Ok(match self.msg_crypt(token)? {
            Some(crypt) => Protocol::with_crypt(self.mode, crypt, token, self.max_clock_skew_secs),
            None => Protocol::plain(token, self.max_clock_skew_secs),
        })
    }
}

/// `[storage]`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct StorageConfig {
    /// `url`: the database. Default `sqlite://huixin.db` (created in the working directory);
    /// `postgres://USER:PASSWORD@HOST/DB` for PostgreSQL, which several processes can share.
    pub url: String,
    /// `pool_size`: PostgreSQL connections per process. Default 10. (A `pool_size` parameter
    /// in the URL wins.)
    pub pool_size: Option<u32>,
    /// `statement_timeout_ms`: PostgreSQL's statement timeout; 0 for none. Default 3000, below
    /// WeChat's 5 s reply deadline. (A URL parameter of the same name wins.)
    pub statement_timeout_ms: Option<u64>,
    /// `sslmode`: TLS to PostgreSQL: `disable`, `prefer` (the default), `require`,
    /// `verify-ca`, `verify-full`. (An `sslmode` parameter in the URL wins.)
    pub sslmode: Option<String>,
}

impl Default for StorageConfig {
    fn default() -> Self {
        Self {
            url: "sqlite://huixin.db".into(),
            pool_size: None,
            statement_timeout_ms: None,
            sslmode: None,
        }
    }
}

/// `[rules]`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct RulesConfig {
    /// `dir`: the folder of rules (`*.rhai` scripts and `*.toml` keyword tables). Default
    /// `rules`. When it does not exist, the rules built into the binary run; a file there is
    /// an error.
    pub dir: PathBuf,
    /// `fallback`: the answer when a script fails or hits a limit: `success` (no visible
    /// reply) or a text to send. Default `success`.
    pub fallback: String,
    /// `max_operations`: Rhai operations one script call may take. Default 100000.
    pub max_operations: u64,
    /// `max_run_ms`: wall-clock time the scripts may take for one message. Default 1000.
    pub max_run_ms: u64,
    /// `timezone`: for `format_time` in scripts, an IANA name or a fixed offset (`+08:00`).
    /// Default `Asia/Shanghai`.
    pub timezone: String,
    /// `reload`: pick up edits to the folder without a restart. Default true.
    pub reload: bool,
}

impl Default for RulesConfig {
    fn default() -> Self {
        Self {
            dir: PathBuf::from("rules"),
            fallback: "success".into(),
            max_operations: 100_000,
            max_run_ms: 1_000,
            timezone: "Asia/Shanghai".into(),
            reload: true,
        }
    }
}

/// The middleware names `[bot] middleware` may list.
pub const MIDDLEWARE: &[&str] = &[
    "trace",
    "dedup",
    "deadline",
    "followers",
    "log",
    "blocklist",
    "rate_limit",
];

/// `[bot]`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct BotConfig {
    /// `reply_deadline_ms`: when the reply is not ready by then, answer `success` at once and
    /// hand the reply, when it comes, to the customer-service sender (WeChat gives up at
    /// 5000 ms). Default 4500.
    pub reply_deadline_ms: u64,
    /// `middleware`: the pipeline around the rules, outermost first; leave one out to turn it
    /// off. Default `["trace", "dedup", "deadline", "followers", "log", "blocklist",
    /// "rate_limit"]`.
    #[serde(deserialize_with = "string_or_list")]
    pub middleware: Vec<String>,
    /// `dedup_window_secs`: how long a message is remembered to recognise WeChat's retries
    /// (they come within 15 s). Default 60.
    pub dedup_window_secs: u64,
    /// `rate_limit_per_minute`: messages one user may send per minute before being ignored
    /// (events are not counted); 0 disables. Default 30.
    pub rate_limit_per_minute: u32,
    /// `rate_limit_reply`: what an over-limit user is told; empty answers `success`.
    /// Default empty.
    pub rate_limit_reply: String,
    /// `blocklist`: OpenIDs whose messages are ignored (scripts can add more at runtime).
    /// Default empty.
    #[serde(deserialize_with = "string_or_list")]
    pub blocklist: Vec<String>,
    /// `log_retention_days`: how long the inbound message log is kept; 0 keeps it forever.
    /// Default 30.
    pub log_retention_days: u32,
}

impl Default for BotConfig {
    fn default() -> Self {
        Self {
            reply_deadline_ms: 4_500,
            middleware: MIDDLEWARE.iter().map(|m| (*m).to_owned()).collect(),
            dedup_window_secs: 60,
            rate_limit_per_minute: 30,
            rate_limit_reply: String::new(),
            blocklist: Vec::new(),
            log_retention_days: 30,
        }
    }
}

/// `[push]`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct PushConfig {
    /// `template_id`: the template message pushes are delivered as. Default empty: the push
    /// APIs answer 503 until it is set.
    pub template_id: String,
    /// `title_field`: the template field that carries the title. Default `title`; empty leaves
    /// it out.
    pub title_field: String,
    /// `summary_field`: the field that carries the summary (or the start of the body).
    /// Default `summary`; empty leaves it out.
    pub summary_field: String,
    /// `time_field`: the field that carries the time of the push, in `[rules] timezone`.
    /// Default `time`; empty leaves it out.
    pub time_field: String,
    /// `concurrency`: template sends in flight at once, per process. Default 8.
    pub concurrency: u32,
    /// `rate_per_second`: template sends started per second, per process; 0 means no limit.
    /// Default 50.
    pub rate_per_second: u32,
    /// `max_attempts`: tries per recipient before a transient failure counts as failed.
    /// Default 5.
    pub max_attempts: u32,
    /// `retry_backoff_ms`: wait before the second try; it doubles for each later one (at most
    /// ten minutes). Default 2000.
    pub retry_backoff_ms: u64,
    /// `lease_secs`: how long a recipient claimed by a process stays claimed; when that
    /// process dies, another (or the same, restarted) takes it over after this. Default 30.
    pub lease_secs: u64,
    /// `rate_limit_per_minute`: pushes one key may make per minute (bursts up to that many);
    /// 0 disables. Default 60.
    pub rate_limit_per_minute: u32,
    /// `retention_days`: how long pushes and their detail pages are kept; 0 keeps them
    /// forever. Default 30.
    pub retention_days: u32,
    /// `max_body_bytes`: the largest markdown body accepted. Default 65536.
    pub max_body_bytes: usize,
}

impl Default for PushConfig {
    fn default() -> Self {
        Self {
            template_id: String::new(),
            title_field: "title".into(),
            summary_field: "summary".into(),
            time_field: "time".into(),
            concurrency: 8,
            rate_per_second: 50,
            max_attempts: 5,
            retry_backoff_ms: 2_000,
            lease_secs: 30,
            rate_limit_per_minute: 60,
            retention_days: 30,
            max_body_bytes: 64 * 1024,
        }
    }
}

/// `[apps]`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct AppsConfig {
    /// `reply_budget_ms`: how long a message webhook that may answer the passive reply is
    /// waited for; a later answer goes out as a customer-service message (as does one past
    /// `[bot] reply_deadline_ms`, which still answers first). Default 3000.
    pub reply_budget_ms: u64,
    /// `bind_reply`: what a follower is told once bound (`{app}` stands for the app's name).
    /// Default `已绑定 {app}`.
    pub bind_reply: String,
    /// `bind_expire_secs`: the default life of a binding code (60-2592000, WeChat's longest
    /// temporary QR code). Default 1800.
    pub bind_expire_secs: u64,
    /// `webhook_timeout_ms`: one attempt's limit, from connecting to the end of the answer
    /// (100-120000). Default 10000.
    pub webhook_timeout_ms: u64,
    /// `webhook_max_attempts`: attempts per delivery before it counts as failed (1-100).
    /// Default 12.
    pub webhook_max_attempts: u32,
    /// `webhook_retry_backoff_ms`: the wait before the second attempt; it doubles for each
    /// later one, at most one hour, each wait ±20% at random (10-3600000). Default 2000.
    pub webhook_retry_backoff_ms: u64,
    /// `webhook_concurrency`: attempts in flight at once, per process (1-1024). Default 16.
    pub webhook_concurrency: u32,
    /// `webhook_retention_days`: how long delivered and failed deliveries are kept, with their
    /// attempts; 0 keeps them forever. Default 7.
    pub webhook_retention_days: u32,
    /// `webhook_lease_ms`: how long a delivery claimed by a process stays claimed; when that
    /// process dies, another (or the same, restarted) sends it again after this. 0: the
    /// attempt's timeout and 30 s more. Else more than `webhook_timeout_ms`. Default 0.
    pub webhook_lease_ms: u64,
}

impl Default for AppsConfig {
    fn default() -> Self {
        Self {
            reply_budget_ms: 3_000,
            bind_reply: "已绑定 {app}".into(),
            bind_expire_secs: 1_800,
            webhook_timeout_ms: 10_000,
            webhook_max_attempts: 12,
            webhook_retry_backoff_ms: 2_000,
            webhook_concurrency: 16,
            webhook_retention_days: 7,
            webhook_lease_ms: 0,
        }
    }
}

impl AppsConfig {
    /// How long a claimed delivery stays claimed: `webhook_lease_ms`, or when that is 0 the
    /// attempt's timeout and 30 s more (so an attempt always ends within its lease).
    pub fn webhook_lease(&self) -> std::time::Duration {
        std::time::Duration::from_millis(match self.webhook_lease_ms {
            0 => self.webhook_timeout_ms.saturating_add(30_000),
            ms => ms,
        })
    }
}

/// `[admin]`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct AdminConfig {
    /// `password`: the console's password as an argon2 hash (`$argon2id$…`, printed by
    /// `huixin admin hash-password`); never the password itself. Empty: only links from
    /// `huixin admin login-link` sign in, and with neither the console is off. Default empty.
    pub password: Secret,
    /// `session_hours`: how long a sign-in lasts (1-720). Default 12.
    pub session_hours: u32,
    /// `login_link_minutes`: how long a link from `huixin admin login-link` can be used
    /// (1-1440); each signs in once. Default 15.
    pub login_link_minutes: u32,
    /// `login_attempts_per_minute`: password attempts allowed per client address, and five
    /// times as many from all addresses together, per process (1-1000). Default 5.
    pub login_attempts_per_minute: u32,
}

impl Default for AdminConfig {
    fn default() -> Self {
        Self {
            password: Secret::default(),
            session_hours: 12,
            login_link_minutes: 15,
            login_attempts_per_minute: 5,
        }
    }
}

/// The events a webhook may subscribe to (`[[webhooks]] events`).
pub const WEBHOOK_EVENTS: &[&str] = &[
    "follow",
    "unfollow",
    "message",
    "binding",
    "push.delivered",
    "push.failed",
];

/// The shape of a webhook's payloads (`[[webhooks]] format`, an app's `callback_format`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum WebhookFormat {
    /// huixin's own JSON.
    #[default]
    Huixin,
    /// WxPusher's callbacks (`app_subscribe`, `send_up_cmd`).
    Wxpusher,
}

impl WebhookFormat {
    /// `huixin` or `wxpusher`.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Huixin => "huixin",
            Self::Wxpusher => "wxpusher",
        }
    }
}

/// One `[[webhooks]]` entry: a receiver of the listed events of every follower. Its
/// deliveries' endpoint is `config:NAME`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct ConfigWebhook {
    /// `name`: 1-32 of `[-_A-Za-z0-9]`, unique among the entries. Required.
    pub name: String,
    /// `url`: where deliveries are POSTed, `http://` or `https://`. Required.
    pub url: String,
    /// `secret`: the HMAC-SHA256 key of the signatures, at least 16 characters. Required.
    pub secret: Secret,
    /// `events`: what it receives (see [`WEBHOOK_EVENTS`]). Default all but the pushes'
    /// fates (`push.delivered`, `push.failed`: one per recipient, so a topic push makes as
    /// many), which are asked for by name.
    #[serde(deserialize_with = "string_or_list")]
    pub events: Vec<String>,
    /// `format`: `huixin` or `wxpusher`. Default `huixin`.
    pub format: WebhookFormat,
    /// `reply`: whether its answers to `message` events may be the passive reply. Default
    /// false.
    pub reply: bool,
}

impl Default for ConfigWebhook {
    fn default() -> Self {
        Self {
            name: String::new(),
            url: String::new(),
            secret: Secret::default(),
            events: WEBHOOK_EVENTS
                .iter()
                .filter(|e| !e.starts_with("push."))
                .map(|e| (*e).to_owned())
                .collect(),
            format: WebhookFormat::Huixin,
            reply: false,
        }
    }
}

impl ConfigWebhook {
    /// `config:NAME`, its deliveries' endpoint.
    pub fn endpoint(&self) -> String {
        format!("config:{}", self.name)
    }

    /// Whether it receives `event`.
    pub fn wants(&self, event: &str) -> bool {
        self.events.iter().any(|e| e == event)
    }
}

/// The shortest webhook secret accepted.
pub const MIN_WEBHOOK_SECRET_LEN: usize = 16;

/// `[log]`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct LogConfig {
    /// `level`: a tracing filter (`info`, `huixin=debug,info`). Default `info`. `RUST_LOG`,
    /// when set, wins.
    pub level: String,
}

impl Default for LogConfig {
    fn default() -> Self {
        Self {
            level: "info".into(),
        }
    }
}

/// The shortest `[metrics] token` accepted.
pub const MIN_METRICS_TOKEN_LEN: usize = 16;

/// `[metrics]`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct MetricsConfig {
    /// `enabled`: count what happens, for `/metrics`. Off, the instrumentation costs nothing
    /// and `/metrics` answers 404. Default true.
    pub enabled: bool,
    /// `token`: `/metrics` on the main listener answers only requests with `Authorization:
    /// Bearer <token>` (at least 16 characters). Default empty: not served there.
    pub token: Secret,
    /// `listen`: a second listener serving `/metrics` without a token, meant for a private
    /// address (`127.0.0.1:9464`). Default empty: none.
    pub listen: String,
}

impl Default for MetricsConfig {
    fn default() -> Self {
        Self {
            enabled: true,
            token: Secret::default(),
            listen: String::new(),
        }
    }
}

/// A secret string: never printed by `Debug`, so a logged config leaks nothing.
#[derive(Clone, Default, PartialEq, Eq, Serialize)]
#[serde(transparent)]
pub struct Secret(String);

impl Secret {
    /// Wraps a value.
    pub fn new(value: impl Into<String>) -> Self {
        Self(value.into())
    }

    /// The secret value. Call only where it is used, never to log it.
    pub fn expose(&self) -> &str {
        &self.0
    }

    /// Whether no value is set.
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }
}

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(if self.0.is_empty() {
            "\"\""
        } else {
            "\"<redacted>\""
        })
    }
}

impl<'de> Deserialize<'de> for Secret {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        lenient_string(d).map(Self)
    }
}

/// Accepts a string or a number as a string: `HUIXIN_WECHAT_TOKEN=123456` arrives as a number.
fn lenient_string<'de, D: Deserializer<'de>>(d: D) -> Result<String, D::Error> {
    #[derive(Deserialize)]
    #[serde(untagged)]
    enum Lenient {
        S(String),
        I(i64),
        U(u64),
        F(f64),
        B(bool),
    }
    Ok(match Lenient::deserialize(d)? {
        Lenient::S(s) => s,
        Lenient::I(i) => i.to_string(),
        Lenient::U(u) => u.to_string(),
        Lenient::F(f) => f.to_string(),
        Lenient::B(b) => b.to_string(),
    })
}

/// Accepts `["a", "b"]` or `"a,b"`.
fn string_or_list<'de, D: Deserializer<'de>>(d: D) -> Result<Vec<String>, D::Error> {
    #[derive(Deserialize)]
    #[serde(untagged)]
    enum OneOrMany {
        One(String),
        Many(Vec<String>),
    }
    Ok(match OneOrMany::deserialize(d)? {
        OneOrMany::One(s) => s
            .split(',')
            .map(str::trim)
            .filter(|s| !s.is_empty())
            .map(str::to_owned)
            .collect(),
        OneOrMany::Many(v) => v,
    })
}

/// Why the configuration could not be loaded.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    /// `--config PATH` names a file that does not exist.
    #[error("config file {0} not found")]
    NotFound(PathBuf),
    /// The `.env` file could not be read.
    #[error("cannot read .env: {0}")]
    DotEnv(String),
    /// The file or an environment variable holds an unknown key or a value of the wrong type;
    /// one line per problem, naming where it came from.
    #[error("{0}")]
    Parse(String),
    /// A value is out of range or inconsistent with another.
    #[error("invalid configuration: {0}")]
    Invalid(String),
}

impl Config {
    /// Loads `.env`, then `path` (else `$HUIXIN_CONFIG`, else `huixin.toml` if present), then
    /// `HUIXIN_*` variables, and validates the result.
    pub fn load(path: Option<&Path>) -> Result<Self, ConfigError> {
        load_dotenv()?;
        let from_env = std::env::var_os(CONFIG_ENV)
            .filter(|v| !v.is_empty())
            .map(PathBuf::from);
        let file = match path.or(from_env.as_deref()) {
            Some(p) if !p.is_file() => return Err(ConfigError::NotFound(p.to_owned())),
            Some(p) => Some(p.to_owned()),
            None => Some(PathBuf::from(DEFAULT_CONFIG_FILE)).filter(|p| p.is_file()),
        };
        Self::from_figment(file.as_deref())
    }

    fn from_figment(file: Option<&Path>) -> Result<Self, ConfigError> {
        let mut figment = Figment::from(Serialized::defaults(Config::default()));
        if let Some(file) = file {
            figment = figment.merge(Toml::file_exact(file));
        }
        figment = figment.merge(env_provider());
        // String keys come verbatim: figment would read `HUIXIN_WECHAT_TOKEN=0123456` as the
        // number 123456 and lose the zero.
        for (section, key) in STRING_KEYS {
            if let Ok(value) = std::env::var(env_name(section, key)) {
                figment = figment.merge(Serialized::default(&format!("{section}.{key}"), value));
            }
        }
        let config: Config = figment.extract().map_err(explain)?;
        config.validate()?;
        Ok(config)
    }

    /// Parses a TOML document (no environment): for tests and embedders.
    pub fn from_toml(toml: &str) -> Result<Self, ConfigError> {
        let config: Config = Figment::from(Serialized::defaults(Config::default()))
            .merge(Toml::string(toml))
            .extract()
            .map_err(explain)?;
        config.validate()?;
        Ok(config)
    }

    /// Checks values and their combinations; the error names the key.
    pub fn validate(&self) -> Result<(), ConfigError> {
        let invalid = |msg: String| Err(ConfigError::Invalid(msg));
        let path = &self.server.path;
        if !path.starts_with('/') {
            return invalid(format!("[server] path {path:?} must start with '/'"));
        }
        if path.contains(['{', '}', '*', '?', '#', ' ']) {
            return invalid(format!(
                "[server] path {path:?} must be a plain path (no {{ }} * ? # or spaces)"
            ));
        }
        let first = path.trim_start_matches('/').split('/').next().unwrap_or("");
        if first.is_empty()
            || (first != "wechat" && crate::support::routes::RESERVED.contains(&first))
        {
            return invalid(format!(
                "[server] path {path:?} collides with huixin's own routes; use a path whose \
                 first segment is not one of: {}",
                crate::support::routes::RESERVED.join(", ")
            ));
        }
        let public_url = &self.server.public_url;
        let is_http = |u: &str| u.starts_with("http://") || u.starts_with("https://");
        if !public_url.is_empty() && !is_http(public_url) {
            return invalid(format!(
                "[server] public_url {public_url:?} must be an http(s) URL"
            ));
        }
        if self.server.body_limit < 1024 {
            return invalid("[server] body_limit must be at least 1024 bytes".into());
        }
        let token = self.wechat.token.expose();
        if !token.is_empty() && !valid_token(token) {
            return invalid("[wechat] token must be 3-32 letters and digits".into());
        }
        let key = self.wechat.encoding_aes_key.expose();
        if !key.is_empty()
            && let Err(e) = decode_aes_key(key)
        {
            return invalid(format!("[wechat] encoding_aes_key: {e}"));
        }
        if self.wechat.mode != Mode::Plain {
            let mode = self.wechat.mode.as_str();
            if key.is_empty() {
                return invalid(format!("[wechat] mode = \"{mode}\" needs encoding_aes_key"));
            }
            if self.wechat.app_id.is_empty() {
                return invalid(format!("[wechat] mode = \"{mode}\" needs app_id"));
            }
        }
        if !(self.wechat.api_base.starts_with("http://")
            || self.wechat.api_base.starts_with("https://"))
        {
            return invalid("[wechat] api_base must be an http(s) URL".into());
        }
        self.admin.validate()?;
        self.validate_metrics()?;
        self.validate_rules_and_bot()
    }

    fn validate_metrics(&self) -> Result<(), ConfigError> {
        let metrics = &self.metrics;
        let token = metrics.token.expose();
        if !token.is_empty() && token.chars().count() < MIN_METRICS_TOKEN_LEN {
            return Err(ConfigError::Invalid(format!(
                "[metrics] token must be at least {MIN_METRICS_TOKEN_LEN} characters (it is \
                 all that guards /metrics on the public listener)"
            )));
        }
        let listen = metrics.listen.trim();
        // Port 0 picks a free port for each: the same text is then two addresses.
        if !listen.is_empty() && listen == self.server.listen.trim() && !listen.ends_with(":0") {
            return Err(ConfigError::Invalid(
                "[metrics] listen must differ from [server] listen (leave it empty to serve \
                 /metrics on the main listener, with [metrics] token)"
                    .into(),
            ));
        }
        Ok(())
    }
}

impl AdminConfig {
    fn validate(&self) -> Result<(), ConfigError> {
        let invalid = |msg: &str| Err(ConfigError::Invalid(msg.into()));
        let password = self.password.expose();
        // Never echo the value: it may be a password typed where its hash belongs.
        if !password.is_empty() {
            let hash = argon2::password_hash::phc::PasswordHash::new(password);
            if !hash.is_ok_and(|h| h.algorithm.as_str().starts_with("argon2")) {
                return invalid(
                    "[admin] password must be an argon2 hash ($argon2id$...), not the password \
                     itself: `huixin admin hash-password` prints one",
                );
            }
        }
        if !(1..=720).contains(&self.session_hours) {
            return invalid("[admin] session_hours must be between 1 and 720");
        }
        if !(1..=1_440).contains(&self.login_link_minutes) {
            return invalid("[admin] login_link_minutes must be between 1 and 1440");
        }
        if !(1..=1_000).contains(&self.login_attempts_per_minute) {
            return invalid("[admin] login_attempts_per_minute must be between 1 and 1000");
        }
        Ok(())
    }
}

impl Config {
    fn validate_rules_and_bot(&self) -> Result<(), ConfigError> {
        let invalid = |msg: String| Err(ConfigError::Invalid(msg));
        let bot = &self.bot;
        if !(100..=4_900).contains(&bot.reply_deadline_ms) {
            return invalid(
                "[bot] reply_deadline_ms must be between 100 and 4900 (WeChat gives up at 5000)"
                    .into(),
            );
        }
        if bot.dedup_window_secs < 20 {
            return invalid(
                "[bot] dedup_window_secs must be at least 20 (WeChat retries for 15 s)".into(),
            );
        }
        let mut seen = Vec::new();
        for name in &bot.middleware {
            if !MIDDLEWARE.contains(&name.as_str()) {
                return invalid(format!(
                    "[bot] middleware: unknown {name:?} (known: {})",
                    MIDDLEWARE.join(", ")
                ));
            }
            if seen.contains(&name) {
                return invalid(format!("[bot] middleware: {name:?} is listed twice"));
            }
            seen.push(name);
        }
        let position = |name: &str| bot.middleware.iter().position(|m| m == name);
        if let (Some(dedup), Some(deadline)) = (position("dedup"), position("deadline"))
            && deadline < dedup
        {
            return invalid(
                "[bot] middleware: \"dedup\" must come before \"deadline\", or a retry of a late \
                 message would be answered twice"
                    .into(),
            );
        }
        let rules = &self.rules;
        if rules.max_operations < 1_000 {
            return invalid("[rules] max_operations must be at least 1000".into());
        }
        if !(10..=60_000).contains(&rules.max_run_ms) {
            return invalid("[rules] max_run_ms must be between 10 and 60000".into());
        }
        if let Err(e) = crate::support::clock::parse_timezone(&rules.timezone) {
            return invalid(format!("[rules] timezone: {e}"));
        }
        let push = &self.push;
        if !(1..=256).contains(&push.concurrency) {
            return invalid("[push] concurrency must be between 1 and 256".into());
        }
        if !(1..=100).contains(&push.max_attempts) {
            return invalid("[push] max_attempts must be between 1 and 100".into());
        }
        if !(5..=3_600).contains(&push.lease_secs) {
            return invalid("[push] lease_secs must be between 5 and 3600".into());
        }
        if push.max_body_bytes < 1024 {
            return invalid("[push] max_body_bytes must be at least 1024".into());
        }
        self.validate_apps()
    }

    fn validate_apps(&self) -> Result<(), ConfigError> {
        let invalid = |msg: String| Err(ConfigError::Invalid(msg));
        let apps = &self.apps;
        // A budget past [bot] reply_deadline_ms is no error: the deadline answers `success`
        // first, and the webhook's reply goes out as a late one (customer service), as a slow
        // rule's does.
        if !(60..=2_592_000).contains(&apps.bind_expire_secs) {
            return invalid(
                "[apps] bind_expire_secs must be between 60 and 2592000 (30 days, WeChat's \
                 longest temporary QR code)"
                    .into(),
            );
        }
        if !(100..=120_000).contains(&apps.webhook_timeout_ms) {
            return invalid("[apps] webhook_timeout_ms must be between 100 and 120000".into());
        }
        if !(1..=100).contains(&apps.webhook_max_attempts) {
            return invalid("[apps] webhook_max_attempts must be between 1 and 100".into());
        }
        if !(10..=3_600_000).contains(&apps.webhook_retry_backoff_ms) {
            return invalid(
                "[apps] webhook_retry_backoff_ms must be between 10 and 3600000 (one hour)".into(),
            );
        }
        if !(1..=1_024).contains(&apps.webhook_concurrency) {
            return invalid("[apps] webhook_concurrency must be between 1 and 1024".into());
        }
        if apps.webhook_lease_ms != 0 && apps.webhook_lease_ms <= apps.webhook_timeout_ms {
            return invalid(format!(
                "[apps] webhook_lease_ms ({}) must be 0 (automatic) or longer than \
                 webhook_timeout_ms ({}), or an attempt could outlive its claim and be sent twice",
                apps.webhook_lease_ms, apps.webhook_timeout_ms
            ));
        }
        let mut names: Vec<&str> = Vec::new();
        for (i, hook) in self.webhooks.iter().enumerate() {
            let at = match hook.name.as_str() {
                "" => format!("[[webhooks]] entry {}", i + 1),
                name => format!("[[webhooks]] {name:?}"),
            };
            let name = &hook.name;
            if !valid_webhook_name(name) {
                return invalid(format!(
                    "{at}: name must be 1-32 letters, digits, '-' or '_' (it names the \
                     endpoint config:NAME)"
                ));
            }
            if names.contains(&name.as_str()) {
                return invalid(format!("{at}: the name is used twice"));
            }
            names.push(name);
            if !valid_http_url(&hook.url) {
                return invalid(format!("{at}: url {:?} must be an http(s) URL", hook.url));
            }
            if hook.secret.expose().chars().count() < MIN_WEBHOOK_SECRET_LEN {
                return invalid(format!(
                    "{at}: secret is required, at least {MIN_WEBHOOK_SECRET_LEN} characters \
                     (it signs the deliveries)"
                ));
            }
            if hook.events.is_empty() {
                return invalid(format!(
                    "{at}: events is empty; leave it out for all ({})",
                    WEBHOOK_EVENTS.join(", ")
                ));
            }
            for (j, event) in hook.events.iter().enumerate() {
                if !WEBHOOK_EVENTS.contains(&event.as_str()) {
                    return invalid(format!(
                        "{at}: events: unknown {event:?} (known: {})",
                        WEBHOOK_EVENTS.join(", ")
                    ));
                }
                if hook.events[..j].contains(event) {
                    return invalid(format!("{at}: events: {event:?} is listed twice"));
                }
            }
        }
        Ok(())
    }
}

/// Whether `name` can name a `[[webhooks]]` entry: 1-32 of `[-_A-Za-z0-9]`.
pub fn valid_webhook_name(name: &str) -> bool {
    (1..=32).contains(&name.len())
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
}

/// Whether `url` is an absolute `http://` or `https://` URL with a host.
fn valid_http_url(url: &str) -> bool {
    let rest = url
        .strip_prefix("http://")
        .or_else(|| url.strip_prefix("https://"));
    match rest {
        Some(rest) => {
            let host = rest.split(['/', '?', '#']).next().unwrap_or("");
            !host.is_empty() && !url.contains(char::is_whitespace)
        }
        None => false,
    }
}

/// Whether `token` is acceptable to WeChat: 3-32 ASCII letters and digits.
pub fn valid_token(token: &str) -> bool {
    (3..=32).contains(&token.len()) && token.bytes().all(|b| b.is_ascii_alphanumeric())
}

/// Keys whose values are strings, read from the environment without interpretation.
const STRING_KEYS: &[(&str, &str)] = &[
    ("server", "listen"),
    ("server", "path"),
    ("server", "public_url"),
    ("wechat", "token"),
    ("wechat", "app_id"),
    ("wechat", "app_secret"),
    ("wechat", "encoding_aes_key"),
    ("wechat", "mode"),
    ("wechat", "token_endpoint"),
    ("wechat", "api_base"),
    ("storage", "url"),
    ("storage", "sslmode"),
    ("push", "template_id"),
    ("push", "title_field"),
    ("push", "summary_field"),
    ("push", "time_field"),
    ("apps", "bind_reply"),
    ("admin", "password"),
    ("rules", "dir"),
    ("rules", "fallback"),
    ("rules", "timezone"),
    ("bot", "rate_limit_reply"),
    ("emulator", "listen"),
    ("emulator", "callback_url"),
    ("log", "level"),
    ("metrics", "token"),
    ("metrics", "listen"),
];

/// `HUIXIN_WECHAT_APP_ID` for `[wechat] app_id`.
fn env_name(section: &str, key: &str) -> String {
    format!("{ENV_PREFIX}{section}_{key}").to_ascii_uppercase()
}

/// `HUIXIN_WECHAT_MODE` -> `wechat.mode` for the keys that are not plain strings (those are
/// read verbatim, see [`STRING_KEYS`]). Variables outside the known sections (such as
/// `HUIXIN_CONFIG`) are not config keys and are skipped.
fn env_provider() -> Env {
    Env::prefixed(ENV_PREFIX).filter_map(|key| {
        let key = key.as_str().to_ascii_lowercase();
        SECTIONS.iter().find_map(|section| {
            let rest = key.strip_prefix(section)?.strip_prefix('_')?;
            if rest.is_empty() || STRING_KEYS.contains(&(*section, rest)) {
                return None;
            }
            Some(format!("{section}.{rest}").into())
        })
    })
}

/// Turns figment's errors into lines like
/// `environment variable HUIXIN_WECHAT_MAX_CLOCK_SKEW_SECS: [wechat] max_clock_skew_secs: invalid type…`.
fn explain(error: figment::Error) -> ConfigError {
    let lines: Vec<String> = error
        .into_iter()
        .map(|e| {
            let path: Vec<&str> = e.path.iter().map(String::as_str).collect();
            let key = match path.as_slice() {
                [] => String::new(),
                [section] => format!("[{section}]: "),
                [section, rest @ ..] => format!("[{section}] {}: ", rest.join(".")),
            };
            let place = match e.metadata.as_ref() {
                Some(m) => match &m.source {
                    Some(figment::Source::File(file)) => file.display().to_string(),
                    _ if m.name.contains("environment") => match path.as_slice() {
                        [section, rest @ ..] => {
                            format!(
                                "environment variable {}",
                                env_name(section, &rest.join("_"))
                            )
                        }
                        [] => format!("{ENV_PREFIX}* environment variables"),
                    },
                    _ => m.name.to_string(),
                },
                None => "configuration".to_owned(),
            };
            format!("{place}: {key}{}", e.kind)
        })
        .collect();
    ConfigError::Parse(lines.join("\n"))
}

/// Loads `./.env` into the environment; variables already set win.
fn load_dotenv() -> Result<(), ConfigError> {
    match dotenvy::from_path(".env") {
        Ok(()) => Ok(()),
        Err(e) if e.not_found() => Ok(()),
        Err(e) => Err(ConfigError::DotEnv(e.to_string())),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_are_valid() {
        let c = Config::from_toml("").unwrap();
        assert_eq!(c.server.listen, "127.0.0.1:8080");
        assert_eq!(c.server.path, "/wechat");
        assert_eq!(c.server.body_limit, 262_144);
        assert_eq!(c.wechat.api_base, "https://api.weixin.qq.com");
        assert_eq!(c.wechat.max_clock_skew_secs, 300);
        assert_eq!(c.wechat.mode, Mode::Plain);
        assert_eq!(c.storage.url, "sqlite://huixin.db");
        assert_eq!(c.rules.dir, PathBuf::from("rules"));
    }

    #[test]
    fn unknown_keys_and_bad_values_are_named() {
        let err = Config::from_toml("[wechat]\napp_secert = \"x\"").unwrap_err();
        assert!(err.to_string().contains("app_secert"), "{err}");
        let err = Config::from_toml("[wechat]\ntoken = \"a b\"").unwrap_err();
        assert!(err.to_string().contains("token"), "{err}");
        let err = Config::from_toml("[wechat]\nmode = \"safe\"").unwrap_err();
        assert!(err.to_string().contains("encoding_aes_key"), "{err}");
        let err = Config::from_toml("[wechat]\nmode = \"secret\"").unwrap_err();
        assert!(err.to_string().contains("mode"), "{err}");
    }

    #[test]
    fn numbers_are_accepted_as_strings() {
        let c = Config::from_toml("[wechat]\ntoken = 123456\napp_id = 42").unwrap();
        assert_eq!(c.wechat.token.expose(), "123456");
        assert_eq!(c.wechat.app_id, "42");
    }

    #[test]
    fn extra_app_ids_take_a_list_or_a_comma_separated_string() {
        let c = Config::from_toml("[wechat]\nextra_app_ids = \"wxa, wxb\"").unwrap();
        assert_eq!(c.wechat.extra_app_ids, ["wxa", "wxb"]);
        let c = Config::from_toml("[wechat]\nextra_app_ids = [\"wxa\"]").unwrap();
        assert_eq!(c.wechat.extra_app_ids, ["wxa"]);
    }

    #[test]
    fn every_string_key_is_read_verbatim_from_the_environment() {
        let defaults = toml::Value::try_from(Config::default()).unwrap();
        for (section, table) in defaults.as_table().unwrap() {
            for (key, value) in table.as_table().unwrap() {
                let listed = STRING_KEYS.contains(&(section.as_str(), key.as_str()));
                assert_eq!(
                    value.is_str(),
                    listed,
                    "[{section}] {key} and STRING_KEYS disagree"
                );
            }
        }
    }

    #[test]
    fn metrics_are_on_by_default_and_a_token_must_be_long() {
        let c = Config::from_toml("").unwrap();
        assert!(c.metrics.enabled);
        assert!(c.metrics.token.is_empty() && c.metrics.listen.is_empty());
        let err = Config::from_toml("[metrics]\ntoken = \"short\"").unwrap_err();
        assert!(err.to_string().contains("[metrics] token"), "{err}");
        let err = Config::from_toml("[metrics]\nlisten = \"127.0.0.1:8080\"").unwrap_err();
        assert!(err.to_string().contains("[metrics] listen"), "{err}");
        let c = Config::from_toml("[metrics]\ntoken = \"0123456789abcdef\"").unwrap();
        assert!(!format!("{c:?}").contains("0123456789abcdef"));
    }

    #[test]
    fn secrets_do_not_print() {
        let c = Config::from_toml("[wechat]\ntoken = \"hunter2abc\"").unwrap();
        assert!(!format!("{c:?}").contains("hunter2abc"));
    }
}
