//! The access token, done the way the existing SDKs' users wish theirs were (reference §6, §7).
//!
//! - **Cached** with its expiry and **refreshed ahead of it** (`[wechat]
//!   token_refresh_margin_secs`): once past the refresh point, one caller refreshes while the
//!   others keep using the still-valid token.
//! - **Single flight**: callers that find no usable token wait for one fetch, not one each.
//! - **Shared**: kept in the store, so several huixin processes on one database share one token
//!   and one refresh. The refreshing process holds a lease (compare-and-set, 30 s); the others
//!   wait and read what it stored.
//! - **Compare-and-invalidate**: a call rejected for its token (40001, 40014, 42001) invalidates
//!   exactly that token, never a newer one another caller already put in place. A token
//!   rejected within seconds of being fetched is not refreshed again: the trouble is elsewhere
//!   (another environment fetching tokens with the same secret, a clock), and a refresh loop
//!   would only make it worse.
//! - `stable` (`/cgi-bin/stable_token`, default) returns the same token while it is valid, so it
//!   is refreshed at expiry rather than ahead; `classic` (`/cgi-bin/token`) issues a new token on
//!   every call and the old one keeps working a few minutes, so it is refreshed ahead.

use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use serde_json::json;

use super::{ApiError, count, errcode, errmsg, exchange};
use crate::config::{Secret, TokenEndpoint};
use crate::metrics::Metrics;
use crate::store::{NewToken, Store};
use crate::support::clock::unix_now;

/// How long a refresh lease lasts (a crashed refresher blocks the others at most this long).
const LEASE_SECS: i64 = 30;
/// How long a caller waits for another process's refresh before giving up.
const WAIT_FOR_OTHERS: Duration = Duration::from_secs(20);
/// A token that replaced a rejected one and is rejected in turn this soon is not replaced
/// again: a storm of rejections (another environment taking tokens) costs one refresh per
/// this many seconds at most, never a loop.
const FRESH_SECS: i64 = 5;

/// An access token and when it expires.
#[derive(Clone, PartialEq, Eq)]
pub struct AccessToken {
    /// The token.
    pub token: String,
    /// When it expires (Unix seconds).
    pub expires_at: i64,
}

impl std::fmt::Debug for AccessToken {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AccessToken")
            .field("token", &"<redacted>")
            .field("expires_at", &self.expires_at)
            .finish()
    }
}

#[derive(Clone)]
struct Cached {
    token: String,
    expires_at: i64,
    refresh_after: i64,
    fetched_at: i64,
    /// Obtained because the previous token was rejected.
    replaced_rejected: bool,
}

enum State {
    Fresh(String),
    /// Past the refresh point but still valid.
    Stale(String),
    Missing,
}

/// The account's access token.
pub struct TokenManager {
    http: reqwest::Client,
    base: String,
    app_id: String,
    secret: Secret,
    endpoint: TokenEndpoint,
    margin: i64,
    store: Option<Store>,
    owner: String,
    cached: Mutex<Option<Cached>>,
    flight: tokio::sync::Mutex<()>,
    fetches: AtomicU64,
    metrics: Metrics,
}

struct Fetched {
    token: String,
    expires_in: i64,
}

impl TokenManager {
    /// A manager fetching from `base` with the account's credentials.
    pub fn new(
        http: reqwest::Client,
        base: &str,
        app_id: &str,
        secret: Secret,
        endpoint: TokenEndpoint,
        margin_secs: u64,
        store: Option<Store>,
    ) -> Self {
        Self {
            http,
            base: base.trim_end_matches('/').to_owned(),
            app_id: app_id.to_owned(),
            secret,
            endpoint,
            margin: i64::try_from(margin_secs).unwrap_or(i64::MAX),
            store,
            owner: format!("{}-{:08x}", std::process::id(), rand::random::<u32>()),
            cached: Mutex::new(None),
            flight: tokio::sync::Mutex::new(()),
            fetches: AtomicU64::new(0),
            metrics: Metrics::default(),
        }
    }

    /// Counts token requests (and their errors) into `metrics`.
    pub fn with_metrics(mut self, metrics: Metrics) -> Self {
        self.metrics = metrics;
        self
    }

    /// Token requests this manager made (for diagnostics and tests).
    pub fn fetches(&self) -> u64 {
        self.fetches.load(Ordering::SeqCst)
    }

    fn cache(&self) -> std::sync::MutexGuard<'_, Option<Cached>> {
        self.cached.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn state(&self, now: i64) -> State {
        match self.cache().as_ref() {
            Some(c) if now < c.refresh_after => State::Fresh(c.token.clone()),
            Some(c) if now < c.expires_at => State::Stale(c.token.clone()),
            _ => State::Missing,
        }
    }

    /// A token to call with.
    pub async fn get(&self) -> Result<String, ApiError> {
        match self.state(unix_now()) {
            State::Fresh(token) => return Ok(token),
            State::Stale(token) => {
                // One caller refreshes; the others go on with the valid token.
                let Ok(_flight) = self.flight.try_lock() else {
                    return Ok(token);
                };
                return match self.obtain(false, None).await {
                    Ok(t) => Ok(t.token),
                    Err(e) => {
                        tracing::warn!(error = %e, "refreshing the access token ahead of expiry failed; using it until it expires");
                        Ok(token)
                    }
                };
            }
            State::Missing => {}
        }
        let _flight = self.flight.lock().await;
        // Someone may have fetched while we waited.
        if let State::Fresh(token) | State::Stale(token) = self.state(unix_now()) {
            return Ok(token);
        }
        self.obtain(false, None).await.map(|t| t.token)
    }

    /// The token in use, fetching one if needed.
    pub async fn current(&self) -> Result<AccessToken, ApiError> {
        let token = self.get().await?;
        let expires_at = self.cache().as_ref().map_or(0, |c| c.expires_at);
        Ok(AccessToken { token, expires_at })
    }

    /// Replaces the token now (a forced `stable_token` refresh: WeChat allows 20 a day).
    pub async fn force_refresh(&self) -> Result<AccessToken, ApiError> {
        let _flight = self.flight.lock().await;
        self.obtain(true, None).await
    }

    /// The call made with `token` was rejected for it: forget exactly that token and get
    /// another (unless it itself replaced a rejected token moments ago: a refresh would not
    /// cure that).
    pub async fn invalidate(&self, token: &str) -> Result<(), ApiError> {
        let now = unix_now();
        if let Some(c) = self.cache().as_ref().filter(|c| c.token == token)
            && c.replaced_rejected
            && now - c.fetched_at < FRESH_SECS
        {
            return Err(ApiError::Token(format!(
                "WeChat rejected the access token that replaced a rejected one {}s ago; \
                 not refreshing again (is another environment fetching tokens with the \
                 same AppSecret?)",
                now - c.fetched_at
            )));
        }
        // The store first, then the cache: a caller finding the cache empty must not read the
        // rejected token back from the store.
        if let Some(store) = &self.store {
            store
                .backend()
                .token_invalidate(&self.app_id, token)
                .await?;
        }
        {
            let mut cache = self.cache();
            if cache.as_ref().is_some_and(|c| c.token == token) {
                *cache = None;
            }
        }
        let _flight = self.flight.lock().await;
        // Someone replaced it while we waited.
        if let State::Fresh(current) | State::Stale(current) = self.state(unix_now())
            && current != token
        {
            return Ok(());
        }
        // With `stable_token` a plain fetch could hand the same token back.
        self.obtain(false, Some(token)).await.map(|_| ())
    }

    /// Gets a usable token from the store or from WeChat; called with the flight lock held.
    async fn obtain(&self, force: bool, rejected: Option<&str>) -> Result<AccessToken, ApiError> {
        let Some(store) = &self.store else {
            let fetched = self.fetch_avoiding(force, rejected).await?;
            return Ok(self.remember(fetched, unix_now(), rejected.is_some()));
        };
        let backend = store.backend();
        let give_up = tokio::time::Instant::now() + WAIT_FOR_OTHERS;
        loop {
            let now = unix_now();
            let stored = backend.token_load(&self.app_id).await?;
            if !force
                && let Some(row) = &stored
                && let Some(token) = row.token.as_deref()
                && now < row.refresh_after
                && Some(token) != rejected
            {
                return Ok(self.adopt(
                    token,
                    row.expires_at,
                    row.refresh_after,
                    row.fetched_at,
                    rejected.is_some(),
                ));
            }
            if backend
                .token_try_lease(
                    &self.app_id,
                    &self.owner,
                    stored.as_ref().map_or(0, |row| row.version),
                    now,
                    now + LEASE_SECS,
                )
                .await?
            {
                let fetched = match self.fetch_avoiding(force, rejected).await {
                    Ok(fetched) => fetched,
                    Err(e) => {
                        backend.token_release(&self.app_id, &self.owner).await?;
                        return Err(e);
                    }
                };
                let now = unix_now();
                let token = self.remember(fetched, now, rejected.is_some());
                let cached = self.cache().clone();
                if let Some(c) = cached {
                    let stored = backend
                        .token_store(
                            &self.app_id,
                            &self.owner,
                            &NewToken {
                                token: &c.token,
                                expires_at: c.expires_at,
                                refresh_after: c.refresh_after,
                                fetched_at: c.fetched_at,
                            },
                        )
                        .await?;
                    if !stored {
                        tracing::warn!(
                            "the token lease expired during the fetch; the token is used but not shared"
                        );
                    }
                }
                return Ok(token);
            }
            // Another process is refreshing: wait for what it stores.
            if tokio::time::Instant::now() >= give_up {
                if let Some(row) = stored
                    && let Some(token) = row.token
                    && now < row.expires_at
                    && Some(token.as_str()) != rejected
                {
                    return Ok(self.adopt(
                        &token,
                        row.expires_at,
                        row.refresh_after,
                        row.fetched_at,
                        rejected.is_some(),
                    ));
                }
                return Err(ApiError::Token(
                    "another huixin process holds the token refresh and has not finished".into(),
                ));
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    fn adopt(
        &self,
        token: &str,
        expires_at: i64,
        refresh_after: i64,
        fetched_at: i64,
        replaced_rejected: bool,
    ) -> AccessToken {
        *self.cache() = Some(Cached {
            token: token.to_owned(),
            expires_at,
            refresh_after,
            fetched_at,
            replaced_rejected,
        });
        AccessToken {
            token: token.to_owned(),
            expires_at,
        }
    }

    /// Caches a fetched token with its refresh point.
    fn remember(&self, fetched: Fetched, now: i64, replaced_rejected: bool) -> AccessToken {
        let expires_at = now + fetched.expires_in;
        let same_as_before = self
            .cache()
            .as_ref()
            .is_some_and(|c| c.token == fetched.token);
        let refresh_after = match self.endpoint {
            // The same stable token again: asking earlier would only return it again.
            TokenEndpoint::Stable if same_as_before => expires_at,
            _ => expires_at - self.margin.min(fetched.expires_in / 2),
        };
        self.adopt(
            &fetched.token,
            expires_at,
            refresh_after,
            now,
            replaced_rejected,
        )
    }

    /// Fetches, and when WeChat hands back the token just rejected, forces a new one.
    async fn fetch_avoiding(
        &self,
        force: bool,
        rejected: Option<&str>,
    ) -> Result<Fetched, ApiError> {
        let fetched = self.fetch(force).await?;
        if !force
            && self.endpoint == TokenEndpoint::Stable
            && Some(fetched.token.as_str()) == rejected
        {
            tracing::info!("stable_token returned the rejected token; forcing a new one");
            return self.fetch(true).await;
        }
        Ok(fetched)
    }

    /// One token request (retried on a busy platform or a network error: it is harmless),
    /// counted as a refresh, good or failed.
    async fn fetch(&self, force: bool) -> Result<Fetched, ApiError> {
        let fetched = self.fetch_once(force).await;
        self.metrics.token_refresh(fetched.is_ok());
        fetched
    }

    async fn fetch_once(&self, force: bool) -> Result<Fetched, ApiError> {
        let mut attempt: u32 = 0;
        loop {
            attempt += 1;
            self.fetches.fetch_add(1, Ordering::SeqCst);
            let (path, request) = match self.endpoint {
                TokenEndpoint::Classic => {
                    let path = "/cgi-bin/token";
                    let request = self.http.get(format!("{}{path}", self.base)).query(&[
                        ("grant_type", "client_credential"),
                        ("appid", self.app_id.as_str()),
                        ("secret", self.secret.expose()),
                    ]);
                    (path, request)
                }
                TokenEndpoint::Stable => {
                    let path = "/cgi-bin/stable_token";
                    let request = self.http.post(format!("{}{path}", self.base)).json(&json!({
                        "grant_type": "client_credential",
                        "appid": self.app_id,
                        "secret": self.secret.expose(),
                        "force_refresh": force,
                    }));
                    (path, request)
                }
            };
            let answer = exchange(path, request).await;
            count(&self.metrics, path, &answer);
            let retry = attempt < 3;
            match answer {
                Ok(value) if errcode(&value) == 0 => {
                    let token = value
                        .get("access_token")
                        .and_then(|v| v.as_str())
                        .unwrap_or_default();
                    let expires_in = value
                        .get("expires_in")
                        .and_then(|v| v.as_i64())
                        .unwrap_or(0);
                    if token.is_empty() || expires_in <= 0 {
                        return Err(ApiError::Decode {
                            endpoint: path.to_owned(),
                            detail: "no access_token or expires_in".into(),
                        });
                    }
                    tracing::info!(endpoint = path, expires_in, "access token fetched");
                    return Ok(Fetched {
                        token: token.to_owned(),
                        expires_in,
                    });
                }
                Ok(value) if errcode(&value) == -1 && retry => {}
                Ok(value) => {
                    return Err(ApiError::Api {
                        endpoint: path.to_owned(),
                        errcode: errcode(&value),
                        errmsg: errmsg(&value),
                    });
                }
                Err(ApiError::Network { .. }) if retry => {}
                Err(ApiError::Status { status, .. }) if status >= 500 && retry => {}
                Err(e) => return Err(e),
            }
            tokio::time::sleep(Duration::from_millis(200 * u64::from(attempt))).await;
        }
    }
}
