//! [`Pushes`]: keys, topics, and accepting a push: checked, addressed, stored with every
//! recipient before the caller hears back, then handed to the delivery worker.

use std::sync::{Arc, RwLock};
use std::time::Duration;

use serde::Serialize;
use tokio::sync::Notify;

use super::commit::{Committer, Queued, committer};
use super::keys::{self, generate_key, generate_push_id, key_hash, valid_key, valid_topic};
use super::render;
use crate::config::{Config, PushConfig};
use crate::metrics::Metrics;
use crate::store::push::{KEY_PREFIX_LEN, KeyRow, PushRow, RecipientRow, Tally, Topic};
use crate::store::{Store, StoreError};
use crate::support::buckets::Buckets;
use crate::support::clock::unix_now;

/// The longest title accepted, in characters.
pub const MAX_TITLE_CHARS: usize = 256;
/// The longest summary accepted, in characters.
pub const MAX_SUMMARY_CHARS: usize = 256;
/// The longest link accepted, in bytes.
pub const MAX_URL_LEN: usize = 2048;
/// The most openids one push may list in `to`.
pub const MAX_TO: usize = 1000;
/// Keys remembered by [`Pushes::authenticate_to_push`] before the memory is cleared.
const MAX_REMEMBERED_KEYS: usize = 10_000;

/// Why a push or a key operation was refused. Each API renders these in its own error format;
/// the HTTP status is [`PushError::status`].
#[derive(Debug, thiserror::Error)]
pub enum PushError {
    /// No key in the request. HTTP 401.
    #[error("a push key is required (Authorization: Bearer KEY, or the key parameter)")]
    MissingKey,
    /// The key is unknown or revoked. HTTP 401.
    #[error("unknown or revoked push key")]
    BadKey,
    /// The key does not reach the target asked for. HTTP 403.
    #[error("{0}")]
    Forbidden(String),
    /// The request is malformed or breaks a limit. HTTP 400.
    #[error("{0}")]
    Invalid(String),
    /// A topic or push that does not exist. HTTP 404.
    #[error("{0}")]
    NotFound(String),
    /// The key pushed too often. HTTP 429.
    #[error("too many pushes with this key; retry in {} s", .0.as_secs().max(1))]
    RateLimited(Duration),
    /// The request body is over the limit. HTTP 413.
    #[error("the request body is too large")]
    TooLarge,
    /// The push service is not set up. HTTP 503.
    #[error("the push service is not configured: {0}")]
    NotConfigured(&'static str),
    /// WeChat's API refused or could not be reached. HTTP 502.
    #[error("{0}")]
    Upstream(String),
    /// Our store failed. HTTP 500.
    #[error("storage error: {0}")]
    Store(#[from] StoreError),
}

impl PushError {
    /// The HTTP status for this error.
    pub fn status(&self) -> u16 {
        match self {
            Self::MissingKey | Self::BadKey => 401,
            Self::Forbidden(_) => 403,
            Self::Invalid(_) => 400,
            Self::NotFound(_) => 404,
            Self::TooLarge => 413,
            Self::RateLimited(_) => 429,
            Self::NotConfigured(_) => 503,
            Self::Upstream(_) => 502,
            Self::Store(_) => 500,
        }
    }
}

/// What a key stands for.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(tag = "kind", content = "target", rename_all = "lowercase")]
pub enum Scope {
    /// One follower.
    User(String),
    /// A topic's members.
    Topic(String),
    /// Any follower or topic named in the request.
    Admin,
    /// An app's token: the followers bound to the app (by the app's uids) and the app's
    /// topics.
    App(i64),
}

impl Scope {
    fn kind(&self) -> &'static str {
        match self {
            Self::User(_) => "user",
            Self::Topic(_) => "topic",
            Self::Admin => "admin",
            Self::App(_) => "app",
        }
    }

    fn target(&self) -> String {
        match self {
            Self::User(t) | Self::Topic(t) => t.clone(),
            Self::Admin => String::new(),
            Self::App(id) => id.to_string(),
        }
    }

    fn from_row(kind: &str, target: &str) -> Option<Self> {
        match kind {
            "user" => Some(Self::User(target.to_owned())),
            "topic" => Some(Self::Topic(target.to_owned())),
            "admin" => Some(Self::Admin),
            "app" => target.parse().ok().map(Self::App),
            _ => None,
        }
    }

    /// `user:OPENID`, `topic:NAME` or `admin`.
    pub fn describe(&self) -> String {
        match self {
            Self::User(o) => format!("user:{o}"),
            Self::Topic(t) => format!("topic:{t}"),
            Self::Admin => "admin".into(),
            Self::App(id) => format!("app:{id}"),
        }
    }
}

/// A key that authenticated a request.
#[derive(Clone, PartialEq, Eq)]
pub struct Key {
    /// Its lookup hash.
    pub hash: String,
    /// What it stands for.
    pub scope: Scope,
}

impl std::fmt::Debug for Key {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Key")
            .field("scope", &self.scope)
            .finish_non_exhaustive()
    }
}

/// A key as listed (`huixin keys`): never the key itself, which is shown once, when made.
#[derive(Debug, Clone, Serialize)]
pub struct KeyInfo {
    /// The key's first characters.
    pub prefix: String,
    /// What it stands for.
    pub scope: Scope,
    /// A note.
    pub label: String,
    /// When it was made.
    pub created_at: i64,
    /// When it was revoked.
    pub revoked_at: Option<i64>,
}

/// A follower's personal key, as [`Pushes::personal_key`] finds it.
#[derive(Clone, PartialEq, Eq)]
pub enum PersonalKey {
    /// Made now: shown this once.
    Created(String),
    /// The follower has one; only its first characters are known.
    Exists {
        /// The key's first characters.
        prefix: String,
    },
}

impl std::fmt::Debug for PersonalKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // Never the key.
        match self {
            Self::Created(_) => f.write_str("Created(..)"),
            Self::Exists { prefix } => f.debug_struct("Exists").field("prefix", prefix).finish(),
        }
    }
}

/// Who made a push: a key, or huixin itself (a rule, the admin CLI), which may address
/// anyone.
#[derive(Debug, Clone, Copy)]
pub enum Sender<'a> {
    /// A request with a key.
    Key(&'a Key),
    /// A rule or an admin.
    Trusted,
}

/// A push as asked for, in any API's terms.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct PushRequest {
    /// OpenIDs to deliver to.
    pub to: Vec<String>,
    /// An app's uids to deliver to (with the app's token): the followers bound to them.
    pub to_uid: Vec<String>,
    /// A topic to deliver to.
    pub topic: Option<String>,
    /// Title; when empty, the start of the body.
    pub title: String,
    /// Markdown.
    pub body: String,
    /// A link for the detail page.
    pub url: Option<String>,
    /// The template card's summary; when absent, the start of the body.
    pub summary: Option<String>,
}

/// The answer to an accepted push.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Accepted {
    /// Public id.
    pub id: String,
    /// Numeric id, in acceptance order.
    #[serde(skip)]
    pub seq: i64,
    /// How many followers it goes to.
    pub recipients: usize,
    /// The detail page.
    pub detail_url: String,
    /// When it was accepted (Unix seconds).
    #[serde(skip)]
    pub created_at: i64,
}

/// A push and its delivery, as `GET /api/v1/push/{id}` shows it.
#[derive(Debug, Clone, Serialize)]
pub struct PushStatus {
    /// Public id.
    pub id: String,
    /// Title.
    pub title: String,
    /// Markdown body.
    pub body: String,
    /// Link.
    pub url: Option<String>,
    /// What it was addressed to.
    pub target: String,
    /// When it was accepted (Unix seconds).
    pub created_at: i64,
    /// The detail page.
    pub detail_url: String,
    /// Recipients by state.
    pub counts: Counts,
    /// Each recipient (without OpenIDs for a topic key).
    pub recipients: Vec<RecipientStatus>,
}

/// Recipients by state.
#[derive(Debug, Clone, Copy, Serialize)]
pub struct Counts {
    /// Waiting or being sent.
    pub pending: u64,
    /// Accepted by WeChat, outcome not yet known.
    pub sent: u64,
    /// Confirmed delivered.
    pub delivered: u64,
    /// Failed.
    pub failed: u64,
}

impl From<Tally> for Counts {
    fn from(t: Tally) -> Self {
        Self {
            pending: t.pending,
            sent: t.sent,
            delivered: t.delivered,
            failed: t.failed,
        }
    }
}

/// One recipient's delivery.
#[derive(Debug, Clone, Serialize)]
pub struct RecipientStatus {
    /// The follower: shown to an admin key and to the follower's own key only (a topic key
    /// sees each recipient's state, not who they are).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub openid: Option<String>,
    /// `pending`, `sent`, `delivered` or `failed` (`sending` shows as `pending`).
    pub status: String,
    /// Attempts so far.
    pub attempts: i64,
    /// WeChat's msgid.
    pub msgid: Option<i64>,
    /// The last error.
    pub error: Option<String>,
    /// Last change (Unix seconds).
    pub updated_at: i64,
}

impl From<RecipientRow> for RecipientStatus {
    fn from(r: RecipientRow) -> Self {
        let status = if r.state == "sending" {
            "pending".to_owned()
        } else {
            r.state
        };
        Self {
            openid: Some(r.openid),
            status,
            attempts: r.attempts,
            msgid: r.msgid,
            error: r.error.filter(|e| !e.is_empty()),
            updated_at: r.updated_at,
        }
    }
}

/// How a recipient's delivery ended for good, as [`Pushes::set_settled_hook`] hears it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Settled {
    /// `TEMPLATESENDJOBFINISH` for the recipient sent as `msgid`: delivered, or failed with
    /// WeChat's `status`.
    Finished {
        /// WeChat's msgid.
        msgid: i64,
        /// Whether it reached the follower.
        delivered: bool,
        /// WeChat's status (`success`, `failed:user block`, …).
        status: String,
    },
    /// WeChat refused the send for good, or the attempts ran out.
    Failed {
        /// The push.
        push_seq: i64,
        /// The follower.
        openid: String,
        /// Why.
        error: String,
    },
}

/// What [`Pushes::set_settled_hook`] takes.
pub type SettledHook = Arc<dyn Fn(Settled) + Send + Sync>;

/// The push service. Cheap to clone.
#[derive(Clone)]
pub struct Pushes {
    inner: Arc<Inner>,
}

struct Inner {
    store: Store,
    config: PushConfig,
    public_base: RwLock<String>,
    limits: Option<Buckets>,
    wake: Notify,
    timezone: jiff::tz::TimeZone,
    credentials: bool,
    committer: Committer,
    /// Told when a recipient's delivery ends ([`Pushes::set_settled_hook`]).
    settled: RwLock<Option<SettledHook>>,
    /// What keys that authenticated stand for, by hash (see [`Pushes::authenticate_to_push`]).
    known_keys: std::sync::Mutex<std::collections::HashMap<String, Scope>>,
    metrics: Metrics,
}

impl std::fmt::Debug for Pushes {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Pushes").finish_non_exhaustive()
    }
}

impl Pushes {
    /// The service over `store`, configured by `[push]`; links start with `[server]
    /// public_url` (or, when that is empty, `http://` and the listen address until
    /// [`Pushes::set_public_base`] says otherwise).
    pub fn new(config: &Config, store: Store) -> Self {
        Self::with_metrics(config, store, Metrics::default())
    }

    /// [`Pushes::new`], counting pushes accepted and what became of their recipients into
    /// `metrics`.
    pub fn with_metrics(config: &Config, store: Store, metrics: Metrics) -> Self {
        let base = if config.server.public_url.is_empty() {
            format!("http://{}", config.server.listen)
        } else {
            config.server.public_url.clone()
        };
        let limits = match config.push.rate_limit_per_minute {
            0 => None,
            n => Some(Buckets::new(n)),
        };
        Self {
            inner: Arc::new(Inner {
                committer: committer(store.clone()),
                store,
                config: config.push.clone(),
                public_base: RwLock::new(base.trim_end_matches('/').to_owned()),
                limits,
                wake: Notify::new(),
                timezone: crate::support::clock::parse_timezone(&config.rules.timezone)
                    .unwrap_or(jiff::tz::TimeZone::UTC),
                credentials: !config.wechat.app_id.is_empty()
                    && !config.wechat.app_secret.is_empty(),
                known_keys: std::sync::Mutex::new(std::collections::HashMap::new()),
                settled: RwLock::new(None),
                metrics,
            }),
        }
    }

    /// Replaces the base of the links huixin hands out (once the listener is bound, when
    /// `[server] public_url` is empty).
    pub fn set_public_base(&self, base: &str) {
        *self
            .inner
            .public_base
            .write()
            .unwrap_or_else(|p| p.into_inner()) = base.trim_end_matches('/').to_owned();
    }

    /// The base of the links huixin hands out, without a trailing slash.
    pub fn public_base(&self) -> String {
        self.inner
            .public_base
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .clone()
    }

    /// The detail page of push `id`.
    pub fn detail_url(&self, id: &str) -> String {
        format!("{}/m/{id}", self.public_base())
    }

    /// Formats a Unix time as `2026-11-21 14:03` in `[rules] timezone`.
    pub fn format_time(&self, unix: i64) -> String {
        jiff::Timestamp::from_second(unix)
            .map(|t| {
                t.to_zoned(self.inner.timezone.clone())
                    .strftime("%Y-%m-%d %H:%M")
                    .to_string()
            })
            .unwrap_or_default()
    }

    /// `[push]`.
    pub fn config(&self) -> &PushConfig {
        &self.inner.config
    }

    /// The store.
    pub fn store(&self) -> &Store {
        &self.inner.store
    }

    /// The metrics pushes are counted in.
    pub fn metrics(&self) -> &Metrics {
        &self.inner.metrics
    }

    /// Calls `hook` whenever a recipient's delivery ends for good (the platform tells apps of
    /// their pushes' fates). It runs on the delivery path: it must not block.
    pub fn set_settled_hook(&self, hook: SettledHook) {
        *self
            .inner
            .settled
            .write()
            .unwrap_or_else(|p| p.into_inner()) = Some(hook);
    }

    /// Tells the settled hook, if any.
    pub(crate) fn settled(&self, event: Settled) {
        let hook = self
            .inner
            .settled
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .clone();
        if let Some(hook) = hook {
            hook(event);
        }
    }

    /// Completes when a push was accepted since the last call (the worker waits on it).
    pub(crate) async fn accepted(&self) {
        self.inner.wake.notified().await;
    }

    /// Wakes the delivery worker.
    pub(crate) fn wake(&self) {
        self.inner.wake.notify_one();
    }

    // ----- keys -----

    /// The key `secret` stands for; [`PushError::BadKey`] when it is unknown, revoked or
    /// malformed.
    pub async fn authenticate(&self, secret: &str) -> Result<Key, PushError> {
        let secret = secret.trim();
        if secret.is_empty() {
            return Err(PushError::MissingKey);
        }
        if !valid_key(secret) {
            return Err(PushError::BadKey);
        }
        let hash = key_hash(secret);
        let row = self.store().backend().key_by_hash(&hash).await?;
        match row {
            Some(row) if row.revoked_at.is_none() => {
                match Scope::from_row(&row.kind, &row.target) {
                    Some(scope) => Ok(Key { hash, scope }),
                    None => Err(PushError::BadKey),
                }
            }
            _ => Err(PushError::BadKey),
        }
    }

    /// The key `secret` stands for, to make a push with ([`Pushes::accept`]); like
    /// [`Pushes::authenticate`], but a key that authenticated before is recognised without a
    /// store read. That costs no revocation: `accept` stores a push only if its key is still
    /// on record and unrevoked when the push's transaction runs, and answers a push it refuses
    /// for any other reason only after looking the key up (so a revoked key hears 401, as
    /// before). A key revoked by any process stops working with the next push.
    pub async fn authenticate_to_push(&self, secret: &str) -> Result<Key, PushError> {
        let secret = secret.trim();
        if !secret.is_empty() && valid_key(secret) {
            let hash = key_hash(secret);
            let known = self.known_keys().get(&hash).cloned();
            if let Some(scope) = known {
                return Ok(Key { hash, scope });
            }
        }
        let key = self.authenticate(secret).await?;
        let mut known = self.known_keys();
        if known.len() >= MAX_REMEMBERED_KEYS {
            known.clear();
        }
        known.insert(key.hash.clone(), key.scope.clone());
        Ok(key)
    }

    fn known_keys(&self) -> std::sync::MutexGuard<'_, std::collections::HashMap<String, Scope>> {
        self.inner
            .known_keys
            .lock()
            .unwrap_or_else(|p| p.into_inner())
    }

    /// Whether `key` is still on record, unrevoked, for the same target.
    async fn key_is_valid(&self, key: &Key) -> Result<bool, PushError> {
        Ok(match self.store().backend().key_by_hash(&key.hash).await? {
            Some(row) if row.revoked_at.is_none() => {
                Scope::from_row(&row.kind, &row.target).as_ref() == Some(&key.scope)
            }
            _ => false,
        })
    }

    /// Makes a key for `scope`: `secret` when given (to keep a key an existing client already
    /// uses), else a generated one. Returns the key.
    pub async fn create_key(
        &self,
        scope: &Scope,
        label: &str,
        secret: Option<&str>,
    ) -> Result<String, PushError> {
        match scope {
            Scope::User(openid) if !keys::valid_openid(openid) => {
                return Err(PushError::Invalid(format!("{openid:?} is not an OpenID")));
            }
            Scope::Topic(name) if self.store().backend().topic(name).await?.is_none() => {
                return Err(PushError::NotFound(format!("no topic {name:?}")));
            }
            _ => {}
        }
        let key = match secret {
            Some(s) if !valid_key(s) => {
                return Err(PushError::Invalid(format!(
                    "a key is {}-{} letters and digits",
                    keys::MIN_KEY_LEN,
                    keys::MAX_KEY_LEN
                )));
            }
            Some(s) => s.to_owned(),
            None => generate_key(),
        };
        let row = KeyRow {
            key_hash: key_hash(&key),
            key_prefix: key.chars().take(KEY_PREFIX_LEN).collect(),
            kind: scope.kind().to_owned(),
            target: scope.target(),
            label: label.to_owned(),
            created_at: unix_now(),
            revoked_at: None,
        };
        match self.store().backend().key_insert(&row).await {
            Ok(()) => Ok(key),
            Err(StoreError::Database(e)) if is_unique_violation(&e) => {
                Err(PushError::Invalid("that key is already in use".into()))
            }
            Err(e) => Err(e.into()),
        }
    }

    /// A follower's personal key: a new one when they have none; else only that they have
    /// one (keys are stored as hashes: the key itself cannot be shown again).
    pub async fn personal_key(&self, openid: &str) -> Result<PersonalKey, PushError> {
        if let Some(row) = self.store().backend().key_for("user", openid).await? {
            return Ok(PersonalKey::Exists {
                prefix: row.key_prefix,
            });
        }
        let key = self
            .create_key(&Scope::User(openid.to_owned()), "personal", None)
            .await?;
        Ok(PersonalKey::Created(key))
    }

    /// Revokes a follower's personal keys and makes a new one.
    pub async fn reset_personal_key(&self, openid: &str) -> Result<String, PushError> {
        while let Some(row) = self.store().backend().key_for("user", openid).await? {
            self.store()
                .backend()
                .key_revoke_hash(&row.key_hash, unix_now())
                .await?;
        }
        self.create_key(&Scope::User(openid.to_owned()), "personal", None)
            .await
    }

    /// Every key, newest first.
    pub async fn keys(&self) -> Result<Vec<KeyInfo>, PushError> {
        Ok(self
            .store()
            .backend()
            .keys()
            .await?
            .into_iter()
            .filter_map(|row| {
                Some(KeyInfo {
                    scope: Scope::from_row(&row.kind, &row.target)?,
                    prefix: row.key_prefix,
                    label: row.label,
                    created_at: row.created_at,
                    revoked_at: row.revoked_at,
                })
            })
            .collect())
    }

    /// Revokes a key given whole, or the keys starting with `prefix` (the first
    /// [`KEY_PREFIX_LEN`] characters, as listed); how many.
    pub async fn revoke(&self, prefix: &str) -> Result<u64, PushError> {
        let backend = self.store().backend();
        if valid_key(prefix) {
            return Ok(backend
                .key_revoke_hash(&key_hash(prefix), unix_now())
                .await?);
        }
        // Only the first characters are stored: a longer part of a key cannot be checked.
        if prefix.len() != KEY_PREFIX_LEN || !prefix.bytes().all(|b| b.is_ascii_alphanumeric()) {
            return Err(PushError::Invalid(format!(
                "give the key's first {KEY_PREFIX_LEN} characters (as `huixin keys` lists them), \
                 or the whole key"
            )));
        }
        Ok(backend.key_revoke(prefix, unix_now()).await?)
    }

    // ----- topics -----

    /// Creates a topic; false when it already exists.
    pub async fn create_topic(
        &self,
        name: &str,
        open: bool,
        description: &str,
    ) -> Result<bool, PushError> {
        check_topic(name)?;
        Ok(self
            .store()
            .backend()
            .topic_create(name, open, description, unix_now())
            .await?)
    }

    /// A topic.
    pub async fn topic(&self, name: &str) -> Result<Option<Topic>, PushError> {
        if !valid_topic(name) {
            return Ok(None);
        }
        Ok(self.store().backend().topic(name).await?)
    }

    /// Adds `openid` to an existing topic; false when already a member.
    pub async fn join(&self, topic: &str, openid: &str) -> Result<bool, PushError> {
        if self.topic(topic).await?.is_none() {
            return Err(PushError::NotFound(format!("no topic {topic:?}")));
        }
        Ok(self
            .store()
            .backend()
            .topic_join(topic, openid, unix_now())
            .await?)
    }

    /// Removes `openid` from a topic; false when not a member.
    pub async fn leave(&self, topic: &str, openid: &str) -> Result<bool, PushError> {
        Ok(self.store().backend().topic_leave(topic, openid).await?)
    }

    // ----- pushes -----

    /// Checks, addresses and stores a push, then wakes the worker. Nothing is sent before
    /// this returns; everything accepted is delivered or marked failed. A push with a key is
    /// stored only if the key is still valid when its transaction runs; any refusal of a
    /// push with a key that is no longer valid is [`PushError::BadKey`].
    pub async fn accept(
        &self,
        sender: Sender<'_>,
        request: PushRequest,
        source: &'static str,
    ) -> Result<Accepted, PushError> {
        let result = self.check_and_store(sender, request, source, true).await;
        self.refused_key(sender, result).await
    }

    /// Several pushes of one request (WxPusher's one push per uid and topic), stored together
    /// and counted as one against the key's rate limit: each one's result, in order. A request
    /// over the limit refuses them all.
    pub async fn accept_many(
        &self,
        sender: Sender<'_>,
        requests: Vec<PushRequest>,
        source: &'static str,
    ) -> Result<Vec<Result<Accepted, PushError>>, PushError> {
        if let Sender::Key(key) = sender {
            self.rate_take(key).await?;
        }
        // Accepted together, they are committed in one group.
        let accepted = futures_util::future::join_all(
            requests
                .into_iter()
                .map(|request| self.check_and_store(sender, request, source, false)),
        )
        .await;
        let mut out = Vec::with_capacity(accepted.len());
        for result in accepted {
            out.push(self.refused_key(sender, result).await);
        }
        if let Some(Err(PushError::BadKey)) = out.first() {
            return Err(PushError::BadKey);
        }
        Ok(out)
    }

    /// Takes one push from the key's rate limit (`[push] rate_limit_per_minute`, shared by
    /// the processes on one database); [`PushError::RateLimited`] when it is spent. Other
    /// costly requests made with a key (an app's binding codes) count against it too.
    pub async fn rate_take(&self, key: &Key) -> Result<(), PushError> {
        if let Some(limits) = &self.inner.limits
            && let Some(wait) = self
                .store()
                .rate_take(
                    limits,
                    &format!("push:{}", key.hash),
                    self.inner.config.rate_limit_per_minute,
                )
                .await?
        {
            return Err(PushError::RateLimited(wait));
        }
        Ok(())
    }

    /// `result`, or [`PushError::BadKey`] when it is a refusal and the key is no longer
    /// valid.
    async fn refused_key(
        &self,
        sender: Sender<'_>,
        result: Result<Accepted, PushError>,
    ) -> Result<Accepted, PushError> {
        let Sender::Key(key) = sender else {
            return result;
        };
        let refused = match &result {
            Err(PushError::BadKey) => true,
            Err(
                PushError::Forbidden(_)
                | PushError::Invalid(_)
                | PushError::NotFound(_)
                | PushError::RateLimited(_)
                | PushError::TooLarge
                | PushError::NotConfigured(_)
                | PushError::Upstream(_),
            ) => !self.key_is_valid(key).await?,
            _ => false,
        };
        if refused {
            // Looked up afresh next time (a key deleted with its topic may have been made
            // again for another target).
            self.known_keys().remove(&key.hash);
            return Err(PushError::BadKey);
        }
        result
    }

    async fn check_and_store(
        &self,
        sender: Sender<'_>,
        request: PushRequest,
        source: &'static str,
        rate_limited: bool,
    ) -> Result<Accepted, PushError> {
        if self.config().template_id.is_empty() {
            return Err(PushError::NotConfigured("set [push] template_id"));
        }
        if !self.inner.credentials {
            return Err(PushError::NotConfigured(
                "set [wechat] app_id and app_secret to deliver pushes",
            ));
        }
        let PushRequest {
            to,
            to_uid,
            topic,
            title,
            body,
            url,
            summary,
        } = request;
        let mut title = title.trim().to_owned();
        if title.is_empty() {
            title = render::plain_text(&body).chars().take(64).collect();
        }
        if title.is_empty() {
            return Err(PushError::Invalid("a title or a body is required".into()));
        }
        if title.chars().count() > MAX_TITLE_CHARS {
            return Err(PushError::Invalid(format!(
                "the title is longer than {MAX_TITLE_CHARS} characters"
            )));
        }
        if body.len() > self.config().max_body_bytes {
            return Err(PushError::Invalid(format!(
                "the body is larger than {} bytes ([push] max_body_bytes)",
                self.config().max_body_bytes
            )));
        }
        let url = url.map(|u| u.trim().to_owned()).filter(|u| !u.is_empty());
        if let Some(url) = &url {
            check_url(url)?;
        }
        let summary = summary
            .map(|s| s.trim().to_owned())
            .filter(|s| !s.is_empty());
        if summary
            .as_ref()
            .is_some_and(|s| s.chars().count() > MAX_SUMMARY_CHARS)
        {
            return Err(PushError::Invalid(format!(
                "the summary is longer than {MAX_SUMMARY_CHARS} characters"
            )));
        }
        let topic = topic.map(|t| t.trim().to_owned()).filter(|t| !t.is_empty());
        let to: Vec<String> = to
            .into_iter()
            .map(|o| o.trim().to_owned())
            .filter(|o| !o.is_empty())
            .collect();
        if to.len() > MAX_TO {
            return Err(PushError::Invalid(format!(
                "at most {MAX_TO} recipients in to"
            )));
        }
        if let Some(bad) = to.iter().find(|o| !keys::valid_openid(o)) {
            return Err(PushError::Invalid(format!("{bad:?} is not an OpenID")));
        }
        let (to, topic) = match sender {
            Sender::Key(Key {
                scope: Scope::App(app),
                ..
            }) => self.address_app(*app, to, to_uid, topic).await?,
            _ if !to_uid.is_empty() => {
                return Err(PushError::Invalid(
                    "to_uid names an app's users: push with the app's token".into(),
                ));
            }
            _ => self.address(sender, to, topic)?,
        };
        if let Sender::Key(key) = sender
            && rate_limited
        {
            self.rate_take(key).await?;
        }
        let target = match &topic {
            Some(name) => {
                if self.store().backend().topic(name).await?.is_none() {
                    return Err(PushError::NotFound(format!("no topic {name:?}")));
                }
                format!("topic:{name}")
            }
            None if to.len() == 1 => format!("user:{}", to[0]),
            None => format!("users:{}", to.len()),
        };
        let mut recipients = to;
        let mut seen = std::collections::HashSet::new();
        recipients.retain(|o| seen.insert(o.clone()));
        let id = generate_push_id();
        let created_at = unix_now();
        let key = match sender {
            Sender::Key(key) => Some((key.hash.clone(), key.scope.kind(), key.scope.target())),
            Sender::Trusted => None,
        };
        // The topic's members are copied into the push by the store, in its transaction.
        let stored = self
            .inner
            .committer
            .submit(Queued {
                id: id.clone(),
                key,
                target: target.clone(),
                title,
                body,
                url,
                summary,
                source,
                created_at,
                recipients,
                topic,
            })
            .await?;
        let Some(stored) = stored else {
            return Err(PushError::BadKey);
        };
        let recipients = usize::try_from(stored.recipients).unwrap_or(usize::MAX);
        tracing::info!(push = %id, seq = stored.seq, source, target = %target, recipients, "push accepted");
        self.metrics().push_accepted(source, stored.recipients);
        self.wake();
        Ok(Accepted {
            detail_url: self.detail_url(&id),
            id,
            seq: stored.seq,
            recipients,
            created_at,
        })
    }

    /// Who a push from `sender` goes to: the key's own target, or what an admin key (or a
    /// trusted sender) names.
    fn address(
        &self,
        sender: Sender<'_>,
        to: Vec<String>,
        topic: Option<String>,
    ) -> Result<(Vec<String>, Option<String>), PushError> {
        if let Some(t) = &topic {
            check_topic(t)?;
        }
        let scope = match sender {
            Sender::Trusted => &Scope::Admin,
            Sender::Key(key) => &key.scope,
        };
        match scope {
            Scope::Admin => {
                if to.is_empty() && topic.is_none() {
                    return Err(PushError::Invalid(
                        "name the recipients: to (OpenIDs) or topic".into(),
                    ));
                }
                Ok((to, topic))
            }
            Scope::User(openid) => {
                if topic.is_some() || to.iter().any(|o| o != openid) {
                    return Err(PushError::Forbidden(
                        "this key pushes only to its own follower".into(),
                    ));
                }
                Ok((vec![openid.clone()], None))
            }
            Scope::Topic(name) => {
                if !to.is_empty() || topic.as_ref().is_some_and(|t| t != name) {
                    return Err(PushError::Forbidden(format!(
                        "this key pushes only to topic {name:?}"
                    )));
                }
                Ok((Vec::new(), Some(name.clone())))
            }
            // Addressed by `address_app`, which needs the store.
            Scope::App(_) => Err(PushError::Forbidden(
                "an app token pushes to its users by uid (to_uid) or to its topics".into(),
            )),
        }
    }

    /// Who a push with app `app`'s token goes to: the followers bound to the uids it names,
    /// or one of the app's topics. OpenIDs are not the app's to name.
    async fn address_app(
        &self,
        app: i64,
        to: Vec<String>,
        to_uid: Vec<String>,
        topic: Option<String>,
    ) -> Result<(Vec<String>, Option<String>), PushError> {
        if !to.is_empty() {
            return Err(PushError::Forbidden(
                "an app token pushes to its users by uid (to_uid), not by OpenID".into(),
            ));
        }
        let to_uid: Vec<String> = to_uid
            .into_iter()
            .map(|u| u.trim().to_owned())
            .filter(|u| !u.is_empty())
            .collect();
        if to_uid.len() > MAX_TO {
            return Err(PushError::Invalid(format!(
                "at most {MAX_TO} recipients in to_uid"
            )));
        }
        if to_uid.is_empty() && topic.is_none() {
            return Err(PushError::Invalid(
                "name the recipients: to_uid (your users' ids) or topic".into(),
            ));
        }
        if let Some(name) = &topic {
            check_topic(name)?;
            let owned = self.store().backend().topic(name).await?;
            if owned.as_ref().and_then(|t| t.app_id) != Some(app) {
                return Err(PushError::Forbidden(format!(
                    "topic {name:?} does not belong to this app"
                )));
            }
        }
        let (openids, missing) = self.resolve_uids(app, &to_uid).await?;
        if !missing.is_empty() {
            let shown: Vec<&str> = missing.iter().take(10).map(String::as_str).collect();
            return Err(PushError::NotFound(format!(
                "no follower is bound to uid {} of this app{}",
                shown.join(", "),
                if missing.len() > shown.len() {
                    ", …"
                } else {
                    ""
                }
            )));
        }
        Ok((openids, topic))
    }

    /// The followers app `app`'s `uids` stand for, in order (one each, even when several uids
    /// stand for one follower), and the uids that stand for no one the app may push to (never
    /// bound, or the app blocked them).
    pub async fn resolve_uids(
        &self,
        app: i64,
        uids: &[String],
    ) -> Result<(Vec<String>, Vec<String>), PushError> {
        if uids.is_empty() {
            return Ok((Vec::new(), Vec::new()));
        }
        let rows = self.store().backend().bindings_of_uids(app, uids).await?;
        let by_uid: std::collections::HashMap<&str, &crate::store::apps::BindingRow> =
            rows.iter().map(|b| (b.uid.as_str(), b)).collect();
        let mut openids = Vec::new();
        let mut missing = Vec::new();
        for uid in uids {
            match by_uid.get(uid.as_str()) {
                Some(b) if !b.blocked => openids.push(b.openid.clone()),
                _ => missing.push(uid.clone()),
            }
        }
        Ok((openids, missing))
    }

    /// A push as its key may see it: pushes made with the key, or to its target (for an
    /// admin key, any). A follower's key lists only that follower among the recipients.
    pub async fn status(&self, key: &Key, id: &str) -> Result<PushStatus, PushError> {
        let not_found = || PushError::NotFound(format!("no push {id:?}"));
        if !keys::valid_push_id(id) {
            return Err(not_found());
        }
        let push = self
            .store()
            .backend()
            .push_by_id(id)
            .await?
            .ok_or_else(not_found)?;
        let mut recipients = self.store().backend().push_recipients(push.seq).await?;
        if !self.may_see(key, &push, &recipients) {
            return Err(not_found());
        }
        // A follower's key shows that follower's delivery, never who else got the push.
        if let Scope::User(openid) = &key.scope {
            recipients.retain(|r| &r.openid == openid);
        }
        // Counted from the same rows, so the counts and the list always agree.
        let counts = Tally::of(&recipients).into();
        // OpenIDs identify followers across every key and topic: only an admin key sees who
        // the members are (a follower's key sees its own row only, above).
        let show_openids = matches!(key.scope, Scope::Admin | Scope::User(_));
        let recipients = recipients
            .into_iter()
            .map(|r| {
                let mut shown = RecipientStatus::from(r);
                if !show_openids {
                    shown.openid = None;
                }
                shown
            })
            .collect();
        Ok(PushStatus {
            detail_url: self.detail_url(&push.id),
            id: push.id,
            title: push.title,
            body: push.body,
            url: push.url,
            target: push.target,
            created_at: push.created_at,
            counts,
            recipients,
        })
    }

    fn may_see(&self, key: &Key, push: &PushRow, recipients: &[RecipientRow]) -> bool {
        if push.key_hash.as_deref() == Some(key.hash.as_str()) {
            return true;
        }
        match &key.scope {
            Scope::Admin => true,
            Scope::Topic(name) => push.target == format!("topic:{name}"),
            Scope::User(openid) => recipients.iter().any(|r| &r.openid == openid),
            // An app sees the pushes made with its token (above).
            Scope::App(_) => false,
        }
    }

    /// The pushes a key's target received, oldest first: after `after_seq`, accepted at or
    /// after `since`, at most `limit` (1-1000).
    pub async fn history(
        &self,
        key: &Key,
        after_seq: i64,
        since: i64,
        limit: u32,
    ) -> Result<Vec<PushRow>, PushError> {
        let scope = match &key.scope {
            Scope::Admin => None,
            Scope::App(_) => Some(format!("key:{}", key.hash)),
            other => Some(other.describe()),
        };
        Ok(self
            .store()
            .backend()
            .push_history(scope.as_deref(), after_seq, since, limit.clamp(1, 1000))
            .await?)
    }

    /// Sends push `seq` again to its failed recipients (at once, under new message ids);
    /// how many.
    pub async fn retry_failed(&self, seq: i64) -> Result<u64, PushError> {
        let now = unix_now();
        let n = self
            .store()
            .backend()
            .push_retry_failed(seq, now.saturating_mul(1_000), now)
            .await?;
        if n > 0 {
            self.wake();
        }
        Ok(n)
    }

    /// A push by its public id, for the detail page.
    pub async fn page(&self, id: &str) -> Result<Option<PushRow>, PushError> {
        if !keys::valid_push_id(id) {
            return Ok(None);
        }
        Ok(self.store().backend().push_by_id(id).await?)
    }
}

fn check_topic(name: &str) -> Result<(), PushError> {
    if !valid_topic(name) {
        return Err(PushError::Invalid(format!(
            "{name:?} is not a topic name (1-64 letters, digits, - and _)"
        )));
    }
    if crate::support::routes::RESERVED.contains(&name) {
        // ntfy addresses topics by path, where these names are huixin's own routes.
        return Err(PushError::Invalid(format!(
            "{name:?} is reserved for huixin's own routes; choose another topic name"
        )));
    }
    Ok(())
}

fn check_url(url: &str) -> Result<(), PushError> {
    let lower = url.to_ascii_lowercase();
    if url.len() > MAX_URL_LEN || !(lower.starts_with("http://") || lower.starts_with("https://")) {
        return Err(PushError::Invalid(format!(
            "url must be an http(s) URL of at most {MAX_URL_LEN} bytes"
        )));
    }
    if reqwest::Url::parse(url).is_err() {
        return Err(PushError::Invalid(format!(
            "url {url:?} is not a valid URL"
        )));
    }
    Ok(())
}

fn is_unique_violation(e: &sqlx::Error) -> bool {
    matches!(e, sqlx::Error::Database(d) if d.is_unique_violation())
}

#[cfg(test)]
mod tests {
    use super::check_topic;

    #[test]
    fn topic_names_are_checked_and_huixins_routes_are_reserved() {
        assert!(check_topic("ops").is_ok());
        assert!(check_topic("deploy-status_2").is_ok());
        for bad in ["", "has space", "a/b", &"x".repeat(65)] {
            assert!(check_topic(bad).is_err(), "{bad:?}");
        }
        for reserved in ["push", "message", "health", "m", "api", "v1"] {
            let error = check_topic(reserved).expect_err(reserved).to_string();
            assert!(error.contains("reserved"), "{reserved}: {error}");
        }
    }
}
