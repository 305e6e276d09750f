//! The outbound half of the protocol (reference §6): WeChat's API over `[wechat] api_base`,
//! with one access token shared by every huixin process on the same database.
//!
//! - [`token`]: the access token: cached, refreshed ahead of expiry, one refresh at a time
//!   across processes, invalidated only when it is the token a call was rejected with.
//! - [`template`], [`custom`]: template and customer-service messages.
//! - [`menu`], [`qrcode`], [`user`], [`media`], [`oauth`]: the rest of the API a backend uses.
//! - [`late`]: replies that missed the callback deadline, sent as customer-service messages.
//! - [`script`]: the functions rules use to send messages.
//!
//! Every call goes through [`Client::call`], which owns the policy: a call rejected for its token
//! (40001, 40014, 42001) invalidates exactly that token, refreshes and is retried once, never
//! in a loop; 48001 (unauthorized) and 40164 (IP not whitelisted) never touch the token; a
//! busy platform (-1), a network error or a 5xx is retried with backoff only for calls that are
//! safe to repeat (idempotent ones, and template sends, which carry a `client_msg_id`).

pub mod custom;
pub mod late;
pub mod media;
pub mod menu;
pub mod oauth;
pub mod qrcode;
pub mod script;
pub mod template;
pub mod token;
pub mod user;

use std::sync::Arc;
use std::time::Duration;

use serde::de::DeserializeOwned;
use serde_json::Value;

pub use custom::{CustomBody, CustomMessage};
pub use template::{TemplateMessage, TemplateSent};
pub use token::TokenManager;

use crate::config::WechatConfig;
use crate::metrics::{ErrCode, Metrics};
use crate::store::{Store, StoreError};

/// Token errors worth one refresh and retry: invalid credential, invalid token, expired.
const TOKEN_ERRORS: [i64; 3] = [40001, 40014, 42001];
/// Attempts for a call that may be repeated.
const MAX_ATTEMPTS: u32 = 3;

/// Why a call to WeChat's API failed.
#[derive(Debug, thiserror::Error)]
pub enum ApiError {
    /// WeChat answered with an error code.
    #[error("{endpoint}: WeChat error {errcode}: {errmsg}{}", hint(*.errcode))]
    Api {
        /// The path called.
        endpoint: String,
        /// `errcode`.
        errcode: i64,
        /// `errmsg`.
        errmsg: String,
    },
    /// The request did not reach WeChat or the answer did not come back.
    #[error("{endpoint}: {source}")]
    Network {
        /// The path called.
        endpoint: String,
        /// The transport error.
        source: reqwest::Error,
    },
    /// WeChat answered with an HTTP error status.
    #[error("{endpoint}: HTTP {status}")]
    Status {
        /// The path called.
        endpoint: String,
        /// The status.
        status: u16,
    },
    /// The answer was not what the API documents.
    #[error("{endpoint}: unexpected answer: {detail}")]
    Decode {
        /// The path called.
        endpoint: String,
        /// What did not fit.
        detail: String,
    },
    /// The request was refused before it was sent: it breaks a rule WeChat enforces.
    #[error("{endpoint}: {detail}")]
    Invalid {
        /// The path that would have been called.
        endpoint: String,
        /// What is wrong.
        detail: String,
    },
    /// No access token could be had.
    #[error("no access token: {0}")]
    Token(String),
    /// `[wechat] app_id` and `app_secret` are not set.
    #[error("[wechat] app_id and app_secret are needed to call WeChat's API")]
    NotConfigured,
    /// The shared token could not be read or written.
    #[error(transparent)]
    Store(#[from] StoreError),
}

impl ApiError {
    /// WeChat's error code, when WeChat answered with one.
    pub fn errcode(&self) -> Option<i64> {
        match self {
            Self::Api { errcode, .. } => Some(*errcode),
            _ => None,
        }
    }

    /// Whether the error says the call's access token was bad.
    pub fn is_token_error(&self) -> bool {
        self.errcode().is_some_and(|c| TOKEN_ERRORS.contains(&c))
    }
}

/// The metrics' errcode label of a failed request, and what to tell the console (never a URL:
/// the token endpoint's carries the secret).
fn failure(e: &ApiError) -> (ErrCode, String) {
    match e {
        ApiError::Api {
            errcode, errmsg, ..
        } => (ErrCode::Code(*errcode), errmsg.clone()),
        ApiError::Network { source, .. } => (ErrCode::Other("network"), source.to_string()),
        ApiError::Status { status, .. } => (ErrCode::Other("http"), format!("HTTP {status}")),
        ApiError::Decode { detail, .. } => (ErrCode::Other("decode"), detail.clone()),
        other => (ErrCode::Other("other"), other.to_string()),
    }
}

/// Counts one request to `api` and, when it failed, its error (a JSON answer with a non-zero
/// errcode, or no usable answer).
fn count(metrics: &Metrics, api: &'static str, answer: &Result<Value, ApiError>) {
    metrics.api_call(api);
    match answer {
        Ok(value) => match errcode(value) {
            0 => {}
            code => metrics.api_error(api, ErrCode::Code(code), &errmsg(value)),
        },
        Err(e) => {
            let (code, detail) = failure(e);
            metrics.api_error(api, code, &detail);
        }
    }
}

/// What a code means for the operator, for the codes that are not the token's fault.
fn hint(errcode: i64) -> &'static str {
    match errcode {
        -1 => " (WeChat is busy; try again)",
        40003 => " (no such user for this account)",
        40037 => " (no such template)",
        40164 => " (this server's IP is not whitelisted in the WeChat console)",
        43004 => " (the user does not follow the account)",
        45009 => " (the daily quota of this API is used up)",
        45015 => " (the user has not written to the account in the last 48 hours)",
        45047 => " (too many customer-service messages to this user)",
        45065 => " (a message with this client_msg_id was already sent)",
        47003 => " (a template field is missing or invalid)",
        48001 => " (the account is not authorized for this API; unverified accounts cannot use it)",
        48002 => " (the user has blocked messages from the account)",
        _ => "",
    }
}

/// What a call sends.
#[derive(Debug, Clone)]
pub(crate) enum Body {
    /// No body (GET).
    None,
    /// A JSON body (POST).
    Json(Value),
    /// A file upload (POST multipart).
    File {
        field: &'static str,
        filename: String,
        bytes: Vec<u8>,
    },
}

/// One call to the API.
#[derive(Debug, Clone)]
pub(crate) struct Call {
    /// The path, e.g. `/cgi-bin/message/template/send`.
    pub path: &'static str,
    /// Query parameters besides `access_token`.
    pub query: Vec<(&'static str, String)>,
    /// The body.
    pub body: Body,
    /// Whether repeating the call is harmless (it is then retried on -1 and network errors).
    pub repeatable: bool,
    /// An errcode that, on a repeated attempt, means the first attempt went through
    /// (45065 for a template with a `client_msg_id`).
    pub done_if_repeated: Option<i64>,
}

impl Call {
    pub(crate) fn get(path: &'static str) -> Self {
        Self {
            path,
            query: Vec::new(),
            body: Body::None,
            repeatable: true,
            done_if_repeated: None,
        }
    }

    pub(crate) fn post(path: &'static str, body: Value) -> Self {
        Self {
            path,
            query: Vec::new(),
            body: Body::Json(body),
            repeatable: false,
            done_if_repeated: None,
        }
    }

    pub(crate) fn query(mut self, key: &'static str, value: impl Into<String>) -> Self {
        self.query.push((key, value.into()));
        self
    }

    pub(crate) fn repeatable(mut self) -> Self {
        self.repeatable = true;
        self
    }
}

/// The shared HTTP client: bounded timeouts on every call.
pub(crate) fn http_client() -> reqwest::Client {
    reqwest::Client::builder()
        .connect_timeout(Duration::from_secs(5))
        .timeout(Duration::from_secs(15))
        .user_agent(concat!("huixin/", env!("CARGO_PKG_VERSION")))
        .build()
        .unwrap_or_default()
}

struct Inner {
    http: reqwest::Client,
    base: String,
    app_id: String,
    secret: crate::config::Secret,
    tokens: TokenManager,
    metrics: Metrics,
}

/// WeChat's API for one account. Cheap to clone.
#[derive(Clone)]
pub struct Client {
    inner: Arc<Inner>,
}

impl std::fmt::Debug for Client {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // Never the secret or a token.
        f.debug_struct("Client")
            .field("base", &self.inner.base)
            .field("app_id", &self.inner.app_id)
            .finish_non_exhaustive()
    }
}

impl Client {
    /// A client for the account of `config`, sharing its token through `store` (several
    /// processes on one database then share one token and one refresh).
    pub fn new(config: &WechatConfig, store: Option<Store>) -> Result<Self, ApiError> {
        Self::with_metrics(config, store, Metrics::default())
    }

    /// [`Client::new`], counting every request, error and token refresh into `metrics`.
    pub fn with_metrics(
        config: &WechatConfig,
        store: Option<Store>,
        metrics: Metrics,
    ) -> Result<Self, ApiError> {
        if config.app_id.is_empty() || config.app_secret.is_empty() {
            return Err(ApiError::NotConfigured);
        }
        let http = http_client();
        let base = config.api_base.trim_end_matches('/').to_owned();
        let tokens = TokenManager::new(
            http.clone(),
            &base,
            &config.app_id,
            config.app_secret.clone(),
            config.token_endpoint,
            config.token_refresh_margin_secs,
            store,
        )
        .with_metrics(metrics.clone());
        Ok(Self {
            inner: Arc::new(Inner {
                http,
                base,
                app_id: config.app_id.clone(),
                secret: config.app_secret.clone(),
                tokens,
                metrics,
            }),
        })
    }

    /// The metrics its requests are counted in.
    pub fn metrics(&self) -> &Metrics {
        &self.inner.metrics
    }

    /// The account's app id.
    pub fn app_id(&self) -> &str {
        &self.inner.app_id
    }

    /// `[wechat] api_base`, without a trailing slash.
    pub fn base(&self) -> &str {
        &self.inner.base
    }

    /// The access token manager.
    pub fn tokens(&self) -> &TokenManager {
        &self.inner.tokens
    }

    /// Calls the API with the shared access token, under the retry policy above, and decodes
    /// the answer.
    pub(crate) async fn call<T: DeserializeOwned>(&self, call: Call) -> Result<T, ApiError> {
        let value = self.call_value(call.clone()).await?;
        decode(call.path, value)
    }

    pub(crate) async fn call_value(&self, call: Call) -> Result<Value, ApiError> {
        let mut refreshed = false;
        let mut attempt = 0;
        loop {
            attempt += 1;
            let token = self.inner.tokens.get().await?;
            let mut query = vec![("access_token", token.clone())];
            query.extend(call.query.iter().map(|(k, v)| (*k, v.clone())));
            let result = self.send(&call, &query).await;
            let retry_transient = call.repeatable && attempt < MAX_ATTEMPTS;
            match &result {
                // Not an error: the earlier attempt went through (below).
                Ok(value) if attempt > 1 && call.done_if_repeated == Some(errcode(value)) => {
                    self.inner.metrics.api_call(call.path);
                }
                _ => count(&self.inner.metrics, call.path, &result),
            }
            match result {
                Ok(value) => match errcode(&value) {
                    0 => return Ok(value),
                    code if attempt > 1 && call.done_if_repeated == Some(code) => {
                        // The earlier attempt went through; its answer was lost.
                        tracing::info!(endpoint = call.path, "a repeated call was already done");
                        return Ok(value);
                    }
                    code if TOKEN_ERRORS.contains(&code) && !refreshed => {
                        refreshed = true;
                        tracing::info!(
                            endpoint = call.path,
                            errcode = code,
                            "access token rejected; refreshing it once"
                        );
                        match self.inner.tokens.invalidate(&token).await {
                            Ok(()) => {}
                            // Not refreshed again: the rejection is the answer.
                            Err(ApiError::Token(reason)) => {
                                return Err(ApiError::Api {
                                    endpoint: call.path.to_owned(),
                                    errcode: code,
                                    errmsg: format!("{}; {reason}", errmsg(&value)),
                                });
                            }
                            Err(e) => return Err(e),
                        }
                    }
                    -1 if retry_transient => backoff(call.path, attempt).await,
                    code => {
                        return Err(ApiError::Api {
                            endpoint: call.path.to_owned(),
                            errcode: code,
                            errmsg: errmsg(&value),
                        });
                    }
                },
                Err(e) if retry_transient && transient(&e) => backoff(call.path, attempt).await,
                Err(e) => return Err(e),
            }
        }
    }

    /// One HTTP exchange; the JSON answer (errcode not yet looked at).
    pub(crate) async fn send(
        &self,
        call: &Call,
        query: &[(&str, String)],
    ) -> Result<Value, ApiError> {
        let url = format!("{}{}", self.inner.base, call.path);
        let request = match &call.body {
            Body::None => self.inner.http.get(&url),
            Body::Json(value) => self.inner.http.post(&url).json(value),
            Body::File {
                field,
                filename,
                bytes,
            } => {
                let part =
                    reqwest::multipart::Part::bytes(bytes.clone()).file_name(filename.clone());
                self.inner
                    .http
                    .post(&url)
                    .multipart(reqwest::multipart::Form::new().part(*field, part))
            }
        };
        exchange(call.path, request.query(query)).await
    }

    /// Calls an endpoint that takes no access token (OAuth); no retry (codes are single use).
    pub(crate) async fn call_plain<T: DeserializeOwned>(
        &self,
        path: &'static str,
        query: &[(&str, String)],
    ) -> Result<T, ApiError> {
        let url = format!("{}{}", self.inner.base, path);
        let answer = exchange(path, self.inner.http.get(&url).query(query)).await;
        count(&self.inner.metrics, path, &answer);
        let value = answer?;
        match errcode(&value) {
            0 => decode(path, value),
            code => Err(ApiError::Api {
                endpoint: path.to_owned(),
                errcode: code,
                errmsg: errmsg(&value),
            }),
        }
    }

    pub(crate) fn secret(&self) -> &str {
        self.inner.secret.expose()
    }
}

/// Sends a request and reads a JSON answer.
pub(crate) async fn exchange(
    endpoint: &str,
    request: reqwest::RequestBuilder,
) -> Result<Value, ApiError> {
    // Never the URL in an error: the token endpoint carries the secret in its query.
    let network = |source: reqwest::Error| ApiError::Network {
        endpoint: endpoint.to_owned(),
        source: source.without_url(),
    };
    let response = request.send().await.map_err(network)?;
    let status = response.status();
    if !status.is_success() {
        return Err(ApiError::Status {
            endpoint: endpoint.to_owned(),
            status: status.as_u16(),
        });
    }
    let bytes = response.bytes().await.map_err(network)?;
    serde_json::from_slice(&bytes).map_err(|e| ApiError::Decode {
        endpoint: endpoint.to_owned(),
        detail: format!("not JSON ({e})"),
    })
}

fn decode<T: DeserializeOwned>(endpoint: &str, value: Value) -> Result<T, ApiError> {
    serde_json::from_value(value).map_err(|e| ApiError::Decode {
        endpoint: endpoint.to_owned(),
        detail: e.to_string(),
    })
}

/// `errcode` of an answer; absent means success.
pub(crate) fn errcode(value: &Value) -> i64 {
    value.get("errcode").and_then(Value::as_i64).unwrap_or(0)
}

pub(crate) fn errmsg(value: &Value) -> String {
    value
        .get("errmsg")
        .and_then(Value::as_str)
        .unwrap_or_default()
        .chars()
        .take(200)
        .collect()
}

/// Errors worth another try of a repeatable call.
fn transient(e: &ApiError) -> bool {
    match e {
        ApiError::Network { .. } => true,
        ApiError::Status { status, .. } => *status >= 500,
        _ => false,
    }
}

/// 200 ms, then 800 ms, with jitter.
async fn backoff(endpoint: &str, attempt: u32) {
    use rand::RngExt;
    let base = 200u64 * 4u64.pow(attempt.saturating_sub(1));
    let wait = Duration::from_millis(base + rand::rng().random_range(0..base / 2 + 1));
    tracing::info!(
        endpoint,
        attempt,
        wait_ms = wait.as_millis() as u64,
        "WeChat busy or unreachable; retrying"
    );
    tokio::time::sleep(wait).await;
}
