//! The platform for app developers: a backend in any language binds its site's users to
//! followers, pushes to them by its own user ids, and hears about them by webhook.
//!
//! - An **app** ([`Apps::create`]) has a name, a token (`AT_…`, a push key of kind `app`: it
//!   pushes to the app's users by uid and to the app's topics), an optional callback URL, and a
//!   signing secret for its webhooks.
//! - A **binding code** ([`Apps::offer`]) is a temporary parameter QR code (scene `bind:ID`)
//!   and a link (`/bind/ID`, through WeChat's web authorization) for one of the site's users.
//!   The follower who scans or opens it is bound: the app's uid stands for their OpenID
//!   ([`Apps::complete`]).
//! - **Events** of the followers bound to an app (follow, unfollow, messages), of bindings and
//!   of the app's pushes go to the app's callback and to the config's `[[webhooks]]`, through
//!   the durable outbox of [`crate::webhooks`] ([`events`]).
//!
//! [`bot`] hooks this into the message pipeline, [`api`] into the HTTP surface.

pub mod api;
pub mod bot;
pub mod events;
pub mod qr;
pub mod reply;
pub mod script;
pub mod wxpusher;

use std::sync::{Arc, RwLock};

use crate::config::Config;
use crate::outbound::Client;
use crate::outbound::qrcode::Scene;
use crate::push::keys;
use crate::push::service::{Key, PushError, Pushes, Scope};
use crate::store::apps::{AppChanges, AppRow, BindCode, BindingRow, NewApp, NewBinding};
use crate::store::push::KEY_PREFIX_LEN;
use crate::store::{Store, StoreError};
use crate::support::clock::unix_now;
use crate::webhooks::Webhooks;

/// The QR scene prefix of binding codes.
pub const BIND_SCENE_PREFIX: &str = "bind:";
/// What the uids huixin mints start with (WxPusher's clients check it).
pub const UID_PREFIX: &str = "UID_";
/// The longest uid an app may give.
pub const MAX_UID_CHARS: usize = 64;
/// The longest `extra` a binding code may carry.
pub const MAX_EXTRA_CHARS: usize = 256;
/// The longest app name.
pub const MAX_NAME_CHARS: usize = 64;
/// The length of binding code ids (about 131 bits).
pub const CODE_ID_LEN: usize = 22;
/// The length of webhook signing secrets.
const SECRET_LEN: usize = 40;
/// The length of minted uids, after [`UID_PREFIX`].
const UID_LEN: usize = 24;

/// The payload shapes an app's webhooks may take.
pub const FORMATS: [&str; 2] = ["huixin", "wxpusher"];

/// An app made by [`Apps::create`]: its row, and its token, shown this once.
#[derive(Clone)]
pub struct Created {
    /// The app.
    pub app: AppRow,
    /// Its token.
    pub token: String,
}

impl std::fmt::Debug for Created {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Created")
            .field("app", &self.app)
            .finish_non_exhaustive()
    }
}

/// What a new app is made with.
#[derive(Debug, Clone, Default)]
pub struct AppSpec {
    /// Its name.
    pub name: String,
    /// Where its webhooks go (empty: none).
    pub callback_url: String,
    /// `huixin` (default) or `wxpusher`.
    pub format: String,
    /// Whether its message webhooks may answer the passive reply.
    pub replies: bool,
    /// Where `/bind/ID` sends the browser once bound (empty: huixin's own page).
    pub return_url: String,
}

/// A binding code as offered to the app (`POST /api/v1/bindings`).
#[derive(Debug, Clone)]
pub struct Offer {
    /// The code.
    pub code: BindCode,
    /// WeChat's image of the QR code.
    pub image_url: String,
}

/// How using a binding code ended ([`Apps::complete`]).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Completed {
    /// Bound: the binding, and the app's name.
    Bound {
        /// The binding as stored.
        binding: Box<BindingRow>,
        /// The app's name.
        app: String,
        /// Where the browser should go next (the code's or the app's `return_url`), if anywhere.
        return_url: Option<String>,
    },
    /// No such code.
    Unknown,
    /// The code expired.
    Expired,
    /// The code binds one user and was used already.
    Used,
    /// The app was revoked.
    Revoked,
}

/// The platform's service. Cheap to clone.
#[derive(Clone)]
pub struct Apps {
    inner: Arc<Inner>,
}

struct Inner {
    store: Store,
    pushes: Pushes,
    client: Option<Client>,
    webhooks: Webhooks,
    config: crate::config::AppsConfig,
    /// The live apps, by id (few; reread on every change made here and at each beat).
    live: RwLock<Arc<Vec<AppRow>>>,
    /// `http://HOST:PORT` and `[server] public_url`: where huixin answers, which no callback
    /// may point at.
    own: Vec<String>,
}

impl std::fmt::Debug for Apps {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Apps").finish_non_exhaustive()
    }
}

impl Apps {
    /// The service over `pushes`' store; `client` makes the QR codes and answers web
    /// authorization (without one, binding codes cannot be made).
    pub fn new(
        config: &Config,
        pushes: Pushes,
        client: Option<Client>,
        webhooks: Webhooks,
    ) -> Self {
        let mut own = vec![format!("http://{}", config.server.listen)];
        if !config.server.public_url.is_empty() {
            own.push(config.server.public_url.trim_end_matches('/').to_owned());
        }
        Self {
            inner: Arc::new(Inner {
                store: pushes.store().clone(),
                pushes,
                client,
                webhooks,
                config: config.apps.clone(),
                live: RwLock::new(Arc::new(Vec::new())),
                own,
            }),
        }
    }

    /// The store.
    pub fn store(&self) -> &Store {
        &self.inner.store
    }

    /// The push service.
    pub fn pushes(&self) -> &Pushes {
        &self.inner.pushes
    }

    /// The client for WeChat's API, when credentials are set.
    pub fn client(&self) -> Option<&Client> {
        self.inner.client.as_ref()
    }

    /// The webhook outbox.
    pub fn webhooks(&self) -> &Webhooks {
        &self.inner.webhooks
    }

    /// `[apps]`.
    pub fn config(&self) -> &crate::config::AppsConfig {
        &self.inner.config
    }

    // ----- apps -----

    /// Makes an app: checks the spec, mints its token and signing secret, stores both.
    pub async fn create(&self, spec: &AppSpec) -> Result<Created, PushError> {
        let name = spec.name.trim();
        check_name(name)?;
        let format = if spec.format.is_empty() {
            "huixin"
        } else {
            spec.format.as_str()
        };
        check_format(format)?;
        self.check_callback(&spec.callback_url)?;
        check_return_url(&spec.return_url)?;
        let token = keys::generate_app_token();
        let secret = keys::random_alphanumeric(SECRET_LEN);
        let token_hash = keys::key_hash(&token);
        let token_prefix: String = token.chars().take(KEY_PREFIX_LEN).collect();
        let new = NewApp {
            name,
            callback_url: spec.callback_url.trim(),
            callback_format: format,
            replies: spec.replies,
            secret: &secret,
            return_url: spec.return_url.trim(),
            created_at: unix_now(),
            token_hash: &token_hash,
            token_prefix: &token_prefix,
        };
        let id = match self.store().backend().app_insert(&new).await {
            Ok(id) => id,
            Err(StoreError::Database(e)) if is_unique_violation(&e) => {
                return Err(PushError::Invalid(format!("an app named {name:?} exists")));
            }
            Err(e) => return Err(e.into()),
        };
        self.reload().await?;
        let app = self
            .store()
            .backend()
            .app(id)
            .await?
            .ok_or_else(|| PushError::NotFound(format!("app {id} vanished")))?;
        tracing::info!(app = id, name, "app created");
        Ok(Created { app, token })
    }

    /// Every app, revoked ones too.
    pub async fn list(&self) -> Result<Vec<AppRow>, PushError> {
        Ok(self.store().backend().apps().await?)
    }

    /// The live app named by `name_or_id` (its name, or its numeric id).
    pub async fn find(&self, name_or_id: &str) -> Result<AppRow, PushError> {
        let backend = self.store().backend();
        let found = match name_or_id.parse::<i64>() {
            Ok(id) => backend.app(id).await?.filter(|a| a.revoked_at.is_none()),
            Err(_) => None,
        };
        let found = match found {
            Some(app) => Some(app),
            None => backend.app_by_name(name_or_id).await?,
        };
        found.ok_or_else(|| PushError::NotFound(format!("no app {name_or_id:?}")))
    }

    /// Changes an app's callback, format, replies or return URL.
    pub async fn update(&self, id: i64, changes: &AppChanges) -> Result<AppRow, PushError> {
        if let Some(url) = &changes.callback_url {
            self.check_callback(url)?;
        }
        if let Some(format) = &changes.callback_format {
            check_format(format)?;
        }
        if let Some(url) = &changes.return_url {
            check_return_url(url)?;
        }
        let backend = self.store().backend();
        if !backend.app_update(id, changes).await? {
            return Err(PushError::NotFound(format!("no app {id}")));
        }
        self.webhooks().forget_app(id);
        self.reload().await?;
        backend
            .app(id)
            .await?
            .ok_or_else(|| PushError::NotFound(format!("no app {id}")))
    }

    /// Revokes an app and its token; false when it was not live.
    pub async fn revoke(&self, id: i64) -> Result<bool, PushError> {
        let revoked = self.store().backend().app_revoke(id, unix_now()).await?;
        self.webhooks().forget_app(id);
        self.reload().await?;
        if revoked {
            tracing::info!(app = id, "app revoked");
        }
        Ok(revoked)
    }

    /// Rereads the live apps.
    pub async fn reload(&self) -> Result<(), StoreError> {
        let apps: Vec<AppRow> = self
            .store()
            .backend()
            .apps()
            .await?
            .into_iter()
            .filter(|a| a.revoked_at.is_none())
            .collect();
        *self.inner.live.write().unwrap_or_else(|p| p.into_inner()) = Arc::new(apps);
        Ok(())
    }

    /// The live apps, as last read.
    pub fn live(&self) -> Arc<Vec<AppRow>> {
        Arc::clone(&self.inner.live.read().unwrap_or_else(|p| p.into_inner()))
    }

    /// The live app `id`, as last read.
    pub fn live_app(&self, id: i64) -> Option<AppRow> {
        self.live().iter().find(|a| a.id == id).cloned()
    }

    /// The app a token stands for: [`PushError::BadKey`] for anything but a live app's token.
    pub async fn authenticate(&self, token: &str) -> Result<(AppRow, Key), PushError> {
        let key = self.pushes().authenticate(token).await?;
        let Scope::App(id) = key.scope else {
            return Err(PushError::Forbidden(
                "this is a push key, not an app token (AT_…)".into(),
            ));
        };
        match self.store().backend().app(id).await? {
            Some(app) if app.revoked_at.is_none() => Ok((app, key)),
            _ => Err(PushError::BadKey),
        }
    }

    /// Whether `url` may be a callback: empty, or http(s) and not huixin itself.
    pub fn check_callback(&self, url: &str) -> Result<(), PushError> {
        let url = url.trim();
        if url.is_empty() {
            return Ok(());
        }
        let parsed = reqwest::Url::parse(url)
            .map_err(|e| PushError::Invalid(format!("callback URL {url:?}: {e}")))?;
        if !matches!(parsed.scheme(), "http" | "https") || parsed.host_str().is_none() {
            return Err(PushError::Invalid(format!(
                "callback URL {url:?} is not an http(s) URL"
            )));
        }
        // The address the server bound is known once it serves (the push service's base).
        let bound = self.pushes().public_base();
        for own in self.inner.own.iter().chain([&bound]) {
            if let Ok(own) = reqwest::Url::parse(own)
                && same_origin(&own, &parsed)
            {
                return Err(PushError::Invalid(format!(
                    "callback URL {url:?} points at huixin itself ({own}); give your app's URL"
                )));
            }
        }
        Ok(())
    }

    // ----- binding codes -----

    /// Makes a binding code for `uid` of `app` (empty `uid`: a code anyone may scan, each
    /// follower bound as a minted uid), living `expire_secs` (default `[apps]
    /// bind_expire_secs`): stores it, then asks WeChat for its temporary QR code.
    pub async fn offer(
        &self,
        app: &AppRow,
        uid: &str,
        extra: &str,
        return_url: &str,
        expire_secs: Option<u32>,
    ) -> Result<Offer, PushError> {
        if !uid.is_empty() {
            check_uid(uid)?;
        }
        if extra.chars().count() > MAX_EXTRA_CHARS {
            return Err(PushError::Invalid(format!(
                "extra is longer than {MAX_EXTRA_CHARS} characters"
            )));
        }
        check_return_url(return_url)?;
        let expire = expire_secs
            .unwrap_or_else(|| u32::try_from(self.config().bind_expire_secs).unwrap_or(u32::MAX));
        if expire == 0 || expire > crate::outbound::qrcode::MAX_EXPIRE_SECONDS {
            return Err(PushError::Invalid(format!(
                "a binding code lives 1–{} seconds (30 days), not {expire}",
                crate::outbound::qrcode::MAX_EXPIRE_SECONDS
            )));
        }
        let Some(client) = &self.inner.client else {
            return Err(PushError::NotConfigured(
                "set [wechat] app_id and app_secret to make binding codes",
            ));
        };
        let now = unix_now();
        let mut code = BindCode {
            id: keys::random_alphanumeric(CODE_ID_LEN),
            app_id: app.id,
            uid: uid.to_owned(),
            extra: extra.to_owned(),
            return_url: return_url.trim().to_owned(),
            ticket: String::new(),
            qr_content: String::new(),
            created_at: now,
            expires_at: now + i64::from(expire),
            used_at: None,
            used_by: None,
            used_uid: None,
        };
        let scene = Scene::Str(format!("{BIND_SCENE_PREFIX}{}", code.id));
        let qr = client
            .create_qrcode(&scene, Some(expire))
            .await
            .map_err(|e| {
                tracing::warn!(app = app.id, error = %e, "binding code: WeChat made no QR code");
                PushError::Upstream(format!("WeChat made no QR code: {e}"))
            })?;
        code.ticket = qr.ticket;
        code.qr_content = qr.url;
        self.store().backend().bind_code_insert(&code).await?;
        let image_url = client.qrcode_image_url(&code.ticket);
        tracing::info!(app = app.id, code = %code.id, "binding code made");
        Ok(Offer { code, image_url })
    }

    /// A binding code by id.
    pub async fn code(&self, id: &str) -> Result<Option<BindCode>, PushError> {
        if !valid_code_id(id) {
            return Ok(None);
        }
        Ok(self.store().backend().bind_code(id).await?)
    }

    /// The follower `openid` used binding code `id` (by scanning it: `scan`; through the link:
    /// `link`): binds them and tells the app. With a uid the code binds that uid, once; without
    /// one the follower is bound as the uid the app already knows them by, or a new one.
    pub async fn complete(
        &self,
        id: &str,
        openid: &str,
        source: &str,
    ) -> Result<Completed, PushError> {
        let Some(code) = self.code(id).await? else {
            return Ok(Completed::Unknown);
        };
        let now = unix_now();
        if code.expires_at <= now {
            return Ok(Completed::Expired);
        }
        let backend = self.store().backend();
        let app = match backend.app(code.app_id).await? {
            Some(app) if app.revoked_at.is_none() => app,
            _ => return Ok(Completed::Revoked),
        };
        let uid = if code.uid.is_empty() {
            self.minted_uid(app.id, openid).await?
        } else {
            code.uid.clone()
        };
        if !backend.bind_code_use(&code.id, openid, &uid, now).await? {
            // Raced with its expiry, or another follower used a single-use code first.
            return Ok(if code.uid.is_empty() {
                Completed::Expired
            } else {
                Completed::Used
            });
        }
        let (binding, previous) = backend
            .binding_upsert(&NewBinding {
                app_id: app.id,
                uid: &uid,
                openid,
                extra: &code.extra,
                source,
                now,
            })
            .await?;
        if let Some(previous) = &previous {
            tracing::info!(app = app.id, uid = %uid, previous = %previous, "uid bound to another follower");
        }
        tracing::info!(app = app.id, uid = %uid, source, "bound");
        let following = self.follows(openid).await?;
        events::binding_done(self, &app, &binding, &code, following).await?;
        let return_url = [code.return_url.as_str(), app.return_url.as_str()]
            .into_iter()
            .find(|u| !u.is_empty())
            .map(str::to_owned);
        Ok(Completed::Bound {
            binding: Box::new(binding),
            app: app.name,
            return_url,
        })
    }

    /// Whether `openid` follows the account: as huixin saw (a follow, or messages from before
    /// huixin, without an unfollow since), else as WeChat says (a user who authorized a link
    /// may never have written).
    pub async fn follows(&self, openid: &str) -> Result<bool, PushError> {
        if let Some(f) = self.store().backend().follower(openid).await? {
            return Ok(f.subscribed || f.unsubscribed_at.is_none());
        }
        let Some(client) = self.client() else {
            return Ok(false);
        };
        match client.user_info(openid).await {
            Ok(info) => Ok(info.subscribe == 1),
            Err(e) => {
                tracing::debug!(error = %e, "whether a user follows: WeChat did not say");
                Ok(false)
            }
        }
    }

    /// The uid app `app` knows `openid` by from an earlier code without uid, or a new one.
    async fn minted_uid(&self, app: i64, openid: &str) -> Result<String, PushError> {
        let known = self
            .store()
            .backend()
            .bindings_of_follower(app, openid)
            .await?;
        Ok(known
            .into_iter()
            .map(|b| b.uid)
            .find(|u| u.starts_with(UID_PREFIX))
            .unwrap_or_else(|| format!("{UID_PREFIX}{}", keys::random_alphanumeric(UID_LEN))))
    }

    /// The follower's bindings, every app's (for rules and the webhooks of their events).
    pub async fn bindings_of(&self, openid: &str) -> Result<Vec<BindingRow>, PushError> {
        Ok(self.store().backend().bindings_of_openid(openid).await?)
    }

    /// Removes the app's bindings of `uid`; how many.
    pub async fn unbind(&self, app: i64, uid: &str) -> Result<u64, PushError> {
        let backend = self.store().backend();
        let Some(binding) = backend.binding(app, uid).await? else {
            return Ok(0);
        };
        Ok(u64::from(backend.binding_delete(app, binding.seq).await?))
    }
}

/// Whether `id` has the shape of a binding code id.
pub fn valid_code_id(id: &str) -> bool {
    id.len() == CODE_ID_LEN && id.bytes().all(|b| b.is_ascii_alphanumeric())
}

/// Checks an app's uid for a user: 1–64 characters, no control characters.
pub fn check_uid(uid: &str) -> Result<(), PushError> {
    if uid.trim().is_empty() {
        return Err(PushError::Invalid("uid is required".into()));
    }
    if uid.chars().count() > MAX_UID_CHARS {
        return Err(PushError::Invalid(format!(
            "uid is longer than {MAX_UID_CHARS} characters"
        )));
    }
    if uid.chars().any(char::is_control) {
        return Err(PushError::Invalid("uid has control characters".into()));
    }
    Ok(())
}

fn check_name(name: &str) -> Result<(), PushError> {
    if name.is_empty() || name.chars().count() > MAX_NAME_CHARS {
        return Err(PushError::Invalid(format!(
            "an app's name is 1–{MAX_NAME_CHARS} characters"
        )));
    }
    if name.chars().any(char::is_control) || name.parse::<i64>().is_ok() {
        return Err(PushError::Invalid(format!(
            "{name:?} cannot name an app (no control characters, not a number)"
        )));
    }
    Ok(())
}

fn check_format(format: &str) -> Result<(), PushError> {
    if FORMATS.contains(&format) {
        Ok(())
    } else {
        Err(PushError::Invalid(format!(
            "the webhook format is huixin or wxpusher, not {format:?}"
        )))
    }
}

fn check_return_url(url: &str) -> Result<(), PushError> {
    let url = url.trim();
    if url.is_empty() {
        return Ok(());
    }
    match reqwest::Url::parse(url) {
        Ok(u) if matches!(u.scheme(), "http" | "https") => Ok(()),
        _ => Err(PushError::Invalid(format!(
            "return_url {url:?} is not an http(s) URL"
        ))),
    }
}

/// Whether two URLs name the same scheme, host and port.
fn same_origin(a: &reqwest::Url, b: &reqwest::Url) -> bool {
    let host = |u: &reqwest::Url| {
        let h = u.host_str().unwrap_or_default().to_ascii_lowercase();
        match h.as_str() {
            "localhost" | "127.0.0.1" | "[::1]" | "0.0.0.0" | "[::]" => "loopback".to_owned(),
            _ => h,
        }
    };
    host(a) == host(b) && a.port_or_known_default() == b.port_or_known_default()
}

fn is_unique_violation(e: &sqlx::Error) -> bool {
    e.as_database_error()
        .is_some_and(|d| d.kind() == sqlx::error::ErrorKind::UniqueViolation)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn uids_are_checked() {
        assert!(check_uid("site-user-42").is_ok());
        assert!(check_uid("用户").is_ok());
        assert!(check_uid("").is_err());
        assert!(check_uid(&"u".repeat(65)).is_err());
        assert!(check_uid("a\nb").is_err());
    }

    #[test]
    fn loopback_names_are_one_origin() {
        let a = reqwest::Url::parse("http://127.0.0.1:8080/x").unwrap();
        let b = reqwest::Url::parse("http://localhost:8080/hook").unwrap();
        let c = reqwest::Url::parse("http://localhost:9090/hook").unwrap();
        assert!(same_origin(&a, &b));
        assert!(!same_origin(&a, &c));
    }
}
