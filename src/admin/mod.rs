//! The operator console at `/admin`: server-rendered pages to see and run the account from a
//! browser.
//!
//! - `auth`: signing in (the `[admin] password`'s argon2 hash, or a one-time link from
//!   `huixin admin login-link`), sessions in the store (so every process behind a load
//!   balancer knows them), CSRF tokens on every form, the login rate limit, and the guard in
//!   front of every page.
//! - `html`: the layout and small pieces every page uses; `chart`: SVG charts drawn on the
//!   server.
//! - `pages`: one file per page: overview, followers, conversations, pushes, keys/topics/apps,
//!   rules, menu, and the phone panel that plays WeChat against the bot.
//!
//! Nothing is fetched from elsewhere: the stylesheet and the phone panel's script are compiled
//! into the binary (`assets/`), so the console works offline. Every response forbids inline
//! scripts and framing (Content-Security-Policy), and every untrusted text (nicknames, message
//! contents, rule files, push titles) is escaped by the templates (maud).
//!
//! The console is off until `[admin] password` is set (or `huixin serve --dev` turns it on);
//! while off, `/admin` says how to turn it on. Behind a reverse proxy under a path prefix, the
//! prefix is taken from `[server] public_url`'s path.

mod auth;
mod chart;
mod html;
mod pages;

use std::sync::{Arc, RwLock};

use axum::Router;
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};

use crate::apps::Apps;
use crate::config::Config;
use crate::metrics::Metrics;
use crate::outbound::Client;
use crate::push::Pushes;
use crate::rules::Rules;
use crate::store::{Store, StoreError};
use crate::support::buckets::Buckets;

pub use auth::{LoginLink, hash_password, login_link};

/// What the console reaches: the app's services. Cheap to clone.
#[derive(Clone)]
pub struct Console {
    inner: Arc<Inner>,
}

struct Inner {
    config: Config,
    store: Store,
    rules: Option<Arc<Rules>>,
    pushes: Pushes,
    apps: Apps,
    client: Option<Client>,
    metrics: Metrics,
    /// Whether anyone may sign in: a password is set, or dev mode.
    enabled: bool,
    /// `[server] public_url`'s path, without a trailing slash (empty at the root).
    prefix: String,
    /// Password attempts per client address.
    attempts: Buckets,
    /// Password attempts from all addresses together.
    attempts_all: Buckets,
    /// Where the server itself answers (`http://ADDR`), once bound: the phone panel posts to
    /// the callback there.
    self_base: RwLock<Option<String>>,
    /// Images uploaded in the phone panel, by media id (the last few, in memory).
    media: pages::phone::MediaShelf,
    /// The overview's counts of past days.
    past_days: pages::overview::PastDays,
    /// The content of each topic's join QR code, once WeChat made it.
    topic_codes: std::sync::Mutex<std::collections::HashMap<String, String>>,
}

impl std::fmt::Debug for Console {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Console")
            .field("enabled", &self.inner.enabled)
            .field("prefix", &self.inner.prefix)
            .finish_non_exhaustive()
    }
}

/// The services a [`Console`] shows and runs.
pub struct Parts {
    /// The configuration.
    pub config: Config,
    /// The store.
    pub store: Store,
    /// The live rules, when the app runs rules.
    pub rules: Option<Arc<Rules>>,
    /// The push service.
    pub pushes: Pushes,
    /// The platform for app developers.
    pub apps: Apps,
    /// WeChat's API, when credentials are set.
    pub client: Option<Client>,
    /// The app's metrics (the overview shows the recent errors and the store's drops).
    pub metrics: Metrics,
    /// Dev mode (`huixin serve --dev`): the console is on without a password.
    pub dev: bool,
}

impl Console {
    /// A console over the app's services.
    pub fn new(parts: Parts) -> Self {
        let admin = &parts.config.admin;
        let enabled = parts.dev || !admin.password.is_empty();
        let prefix = prefix_of(&parts.config.server.public_url);
        let per_minute = admin.login_attempts_per_minute;
        Self {
            inner: Arc::new(Inner {
                attempts: Buckets::new(per_minute),
                attempts_all: Buckets::new(per_minute.saturating_mul(5)),
                topic_codes: std::sync::Mutex::default(),
                past_days: pages::overview::PastDays::default(),
                media: pages::phone::MediaShelf::default(),
                self_base: RwLock::new(None),
                enabled,
                prefix,
                config: parts.config,
                store: parts.store,
                rules: parts.rules,
                pushes: parts.pushes,
                apps: parts.apps,
                client: parts.client,
                metrics: parts.metrics,
            }),
        }
    }

    /// Tells the console where the server answers, once its listener is bound (the phone
    /// panel posts messages to the callback there).
    pub fn set_self_base(&self, base: &str) {
        *self
            .inner
            .self_base
            .write()
            .unwrap_or_else(|p| p.into_inner()) = Some(base.trim_end_matches('/').to_owned());
    }

    /// Whether the console can be signed in to.
    pub fn enabled(&self) -> bool {
        self.inner.enabled
    }

    /// The console's own path under the public URL: `PREFIX/admin`.
    fn base(&self) -> String {
        format!("{}/admin", self.inner.prefix)
    }

    fn config(&self) -> &Config {
        &self.inner.config
    }

    fn store(&self) -> &Store {
        &self.inner.store
    }

    /// The base the phone panel posts to: the bound address, else `[server] public_url`.
    fn self_base(&self) -> Option<String> {
        let bound = self
            .inner
            .self_base
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .clone();
        bound.or_else(|| {
            let public = self.config().server.public_url.trim_end_matches('/');
            (!public.is_empty()).then(|| public.to_owned())
        })
    }
}

/// The path of `public_url` (`https://example.com/bot/` → `/bot`), or empty.
fn prefix_of(public_url: &str) -> String {
    let rest = public_url
        .strip_prefix("https://")
        .or_else(|| public_url.strip_prefix("http://"))
        .unwrap_or("");
    match rest.find('/') {
        Some(i) => rest[i..].trim_end_matches('/').to_owned(),
        None => String::new(),
    }
}

/// The console's routes, under `/admin`. Every page but the sign-in ones and the assets sits
/// behind the session guard, and every response carries the console's security headers.
pub fn routes(console: Console) -> Router {
    use pages::{conversations, followers, keys, menu, overview, phone, pushes, rules};
    let guarded = Router::new()
        .route("/admin", get(overview::page))
        .route("/admin/", get(overview::page))
        .route("/admin/followers", get(followers::list))
        .route("/admin/followers/{openid}", get(followers::show))
        .route("/admin/followers/{openid}/block", post(followers::block))
        .route(
            "/admin/followers/{openid}/unblock",
            post(followers::unblock),
        )
        .route("/admin/conversations", get(conversations::list))
        .route("/admin/pushes", get(pushes::list))
        .route("/admin/pushes/{id}", get(pushes::show))
        .route("/admin/pushes/{id}/resend", post(pushes::resend))
        .route("/admin/pushes/{id}/revoke", post(pushes::revoke))
        .route("/admin/keys", get(keys::page).post(keys::create_key))
        .route("/admin/keys/{prefix}/revoke", post(keys::revoke_key))
        .route("/admin/topics", post(keys::create_topic))
        .route("/admin/topics/{name}/qrcode.png", get(keys::topic_qrcode))
        .route("/admin/apps", post(keys::create_app))
        .route("/admin/apps/{id}/revoke", post(keys::revoke_app))
        .route("/admin/rules", get(rules::page))
        .route("/admin/rules/test", post(rules::test))
        .route("/admin/menu", get(menu::page).post(menu::submit))
        .route("/admin/phone", get(phone::page))
        .route("/admin/phone/send", post(phone::send))
        .route("/admin/phone/upload", post(phone::upload))
        .route("/admin/phone/inbox", get(phone::inbox))
        .route("/admin/logout", post(auth::logout))
        .layer(axum::middleware::from_fn_with_state(
            console.clone(),
            auth::guard,
        ));
    let open = Router::new()
        .route("/admin/login", get(auth::login_page).post(auth::login))
        .route(
            "/admin/login/link",
            get(auth::link_page).post(auth::link_login),
        )
        .route("/admin/assets/{name}", get(html::asset))
        .route("/admin/media/{id}", get(phone::media));
    guarded
        .merge(open)
        .layer(axum::middleware::from_fn(security_headers))
        .with_state(console)
}

/// The console's headers on every response: no inline script or style, no framing, no
/// caching, no referrer (a login link's token must not leak), no sniffing.
async fn security_headers(
    request: axum::extract::Request,
    next: axum::middleware::Next,
) -> Response {
    let is_asset = request.uri().path().contains("/admin/assets/");
    let mut response = next.run(request).await;
    let headers = response.headers_mut();
    headers.insert(
        header::CONTENT_SECURITY_POLICY,
        HeaderValue::from_static(
            "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data:; \
             connect-src 'self'; form-action 'self'; frame-ancestors 'none'; base-uri 'none'",
        ),
    );
    headers.insert(
        header::X_CONTENT_TYPE_OPTIONS,
        HeaderValue::from_static("nosniff"),
    );
    headers.insert(header::X_FRAME_OPTIONS, HeaderValue::from_static("DENY"));
    headers.insert(
        header::REFERRER_POLICY,
        HeaderValue::from_static("no-referrer"),
    );
    if !is_asset {
        headers.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    }
    response
}

/// Why a console request failed: each answers a page saying so.
#[derive(Debug, thiserror::Error)]
pub enum AdminError {
    /// The store failed (500: our own failure).
    #[error("the database failed: {0}")]
    Store(#[from] StoreError),
    /// Something the operator asked cannot be done (400, with why).
    #[error("{0}")]
    Invalid(String),
    /// No such thing (404).
    #[error("{0}")]
    NotFound(String),
    /// A service refused (the status and the reason it gave).
    #[error("{1}")]
    Service(StatusCode, String),
}

impl From<crate::push::PushError> for AdminError {
    fn from(e: crate::push::PushError) -> Self {
        let status = StatusCode::from_u16(e.status()).unwrap_or(StatusCode::BAD_REQUEST);
        Self::Service(status, e.to_string())
    }
}

impl IntoResponse for AdminError {
    fn into_response(self) -> Response {
        let status = match &self {
            Self::Store(e) => {
                tracing::error!(error = %e, "console: the store failed");
                StatusCode::INTERNAL_SERVER_ERROR
            }
            Self::Invalid(_) => StatusCode::BAD_REQUEST,
            Self::NotFound(_) => StatusCode::NOT_FOUND,
            Self::Service(status, _) => *status,
        };
        (status, html::bare_page("Error", &self.to_string())).into_response()
    }
}

/// What console handlers return.
type Page = Result<Response, AdminError>;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_prefix_is_the_public_urls_path() {
        assert_eq!(prefix_of(""), "");
        assert_eq!(prefix_of("https://example.com"), "");
        assert_eq!(prefix_of("https://example.com/"), "");
        assert_eq!(prefix_of("https://example.com/bot/"), "/bot");
        assert_eq!(prefix_of("http://h:8080/a/b"), "/a/b");
    }
}
