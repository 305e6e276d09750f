//! Webhooks out: followers' events POSTed to apps' callback URLs and to the config's
//! `[[webhooks]]`, signed, stored before they are sent, retried with backoff until the
//! receiver answers 2xx, in order per follower, and visible with every attempt.
//!
//! - [`Webhooks`]: the service: [`Webhooks::enqueue`] stores deliveries for the worker;
//!   [`Webhooks::call`] sends a message webhook at once and waits a budget for its answer (the
//!   passive reply); answers that come later go to the answer hook.
//! - [`sign`]: the signature scheme, and [`verify`] for receivers written in Rust.
//! - [`worker`]: the delivery worker: claims due deliveries with a lease (several processes
//!   share the outbox), sends them, records each attempt.
//! - [`api`]: `GET /api/v1/webhooks/deliveries` and `/deliveries/{id}`.
//! - `send`: one attempt: sign, POST, read a bounded answer, decide what happens next.
//!
//! Deliveries of one endpoint with the same ordering (one follower) go one at a time, in the
//! order they were stored: a receiver that fails holds up that follower's later events, not
//! anyone else's.

pub mod api;
mod send;
pub mod sign;
pub mod worker;

use std::collections::HashMap;
use std::sync::{Arc, Mutex, RwLock};
use std::time::{Duration, Instant};

use serde_json::Value;
use tokio::sync::{Notify, oneshot};

use crate::config::{AppsConfig, Config, ConfigWebhook};
use crate::metrics::Metrics;
use crate::store::apps::{AppRow, DeliveryOutcome, DeliveryRow, NewDelivery};
use crate::store::{Store, StoreError};
use crate::support::group::{Commit, Group, Written};

pub use sign::{VerifyError, sign, verify};
pub use worker::spawn;

/// The longest answer read from a receiver; a longer one still counts as delivered, but is
/// not used.
pub const MAX_ANSWER_BYTES: usize = 64 * 1024;
/// The longest wait between two attempts.
pub const MAX_BACKOFF: Duration = Duration::from_secs(3600);
/// How long an app's secret (or that it is revoked) is remembered.
const SECRET_TTL: Duration = Duration::from_secs(5);
/// Apps remembered before the memory is cleared.
const SECRETS_KEPT: usize = 1024;
/// How often a failed outcome write is tried again, and after how long (milliseconds).
const SETTLE_RETRIES: [u64; 4] = [0, 100, 500, 2_000];

/// An event to deliver to one endpoint.
#[derive(Debug, Clone, PartialEq)]
pub struct Outgoing {
    /// The app it is for; `None` for a `[[webhooks]]` entry of the config.
    pub app_id: Option<i64>,
    /// The receiver: `app:ID` or `config:NAME`. Its secret signs the delivery.
    pub endpoint: String,
    /// Where it is POSTed.
    pub url: String,
    /// The event (`follow`, `unfollow`, `message`, `binding`, `push.delivered`,
    /// `push.failed`, or a rule's own): the `X-Huixin-Event` header.
    pub event: String,
    /// The follower's OpenID, or empty: deliveries of one endpoint with the same ordering go
    /// one at a time, in order.
    pub ordering: String,
    /// The JSON body.
    pub body: Value,
}

impl Outgoing {
    /// An event for an app's callback URL (endpoint `app:ID`).
    pub fn to_app(app: &AppRow, event: &str, ordering: &str, body: Value) -> Self {
        Self {
            app_id: Some(app.id),
            endpoint: format!("app:{}", app.id),
            url: app.callback_url.clone(),
            event: event.to_owned(),
            ordering: ordering.to_owned(),
            body,
        }
    }

    /// An event for a `[[webhooks]]` entry (endpoint `config:NAME`).
    pub fn to_config(hook: &ConfigWebhook, event: &str, ordering: &str, body: Value) -> Self {
        Self {
            app_id: None,
            endpoint: hook.endpoint(),
            url: hook.url.clone(),
            event: event.to_owned(),
            ordering: ordering.to_owned(),
            body,
        }
    }
}

/// How a [`Webhooks::call`] went.
#[derive(Debug, Clone, PartialEq)]
pub enum Call {
    /// The receiver answered 2xx within the budget: the JSON object it answered, if it
    /// answered one. The delivery is done.
    Answered(Option<Value>),
    /// No 2xx within the budget: the attempt goes on in the background (up to
    /// `[apps] webhook_timeout_ms`) and is retried like any delivery when it fails; its answer,
    /// whenever a 2xx comes, goes to the answer hook.
    Later,
    /// An earlier delivery of the same endpoint and ordering is still waiting: this one is
    /// stored and goes after it, through the worker; its answer goes to the answer hook.
    Queued,
    /// The delivery failed for good within the budget (a revoked app, an endpoint no longer
    /// in the config, a receiver that answered 410 Gone): nothing will answer.
    Failed(String),
}

/// A receiver's JSON object answer that the caller did not wait for ([`Webhooks::call`]
/// within its budget takes its own): every other 2xx answer that is a JSON object.
#[derive(Debug, Clone, PartialEq)]
pub struct Answered {
    /// The delivery (`X-Huixin-Delivery`).
    pub delivery_id: String,
    /// Its app, if any.
    pub app_id: Option<i64>,
    /// Its endpoint (`app:ID`, `config:NAME`).
    pub endpoint: String,
    /// Its event.
    pub event: String,
    /// Its ordering (the follower's OpenID, or empty).
    pub ordering: String,
    /// The answer: a JSON object.
    pub answer: Value,
}

/// What is called with every [`Answered`] (see [`Webhooks::set_answer_hook`]).
pub type AnswerHook = Arc<dyn Fn(Answered) + Send + Sync>;

/// The webhook service. Cheap to clone.
#[derive(Clone)]
pub struct Webhooks {
    inner: Arc<Inner>,
}

struct Inner {
    store: Store,
    /// Deliveries stored at the same time share one transaction.
    outbox: Group<OutboxWrites>,
    config: AppsConfig,
    endpoints: Vec<ConfigWebhook>,
    /// This process's name on the leases it takes.
    owner: String,
    http: reqwest::Client,
    wake: Notify,
    hook: RwLock<Option<AnswerHook>>,
    /// App id → its secret (`None`: revoked or missing), and when that was read.
    secrets: Mutex<HashMap<i64, (Option<String>, Instant)>>,
    metrics: Metrics,
}

impl std::fmt::Debug for Webhooks {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Webhooks")
            .field("owner", &self.inner.owner)
            .finish_non_exhaustive()
    }
}

/// Why an endpoint's secret is not to be had.
pub(crate) enum SecretError {
    /// For good: the delivery fails.
    Gone(String),
    /// The store failed: the delivery is tried again.
    Store(StoreError),
}

impl Webhooks {
    /// The service over `store`, configured by `[apps]` and `[[webhooks]]`.
    pub fn new(config: &Config, store: Store) -> Self {
        Self::with_metrics(config, store, Metrics::default())
    }

    /// [`Webhooks::new`], counting delivery attempts into `metrics`.
    pub fn with_metrics(config: &Config, store: Store, metrics: Metrics) -> Self {
        let apps = config.apps.clone();
        let http = reqwest::Client::builder()
            .timeout(Duration::from_millis(apps.webhook_timeout_ms))
            .connect_timeout(Duration::from_millis(apps.webhook_timeout_ms))
            // A receiver's redirect is a failure to report, never a second URL to POST to.
            .redirect(reqwest::redirect::Policy::none())
            .user_agent(concat!("huixin/", env!("CARGO_PKG_VERSION")))
            .build()
            .unwrap_or_default();
        Self {
            inner: Arc::new(Inner {
                outbox: Group::new(
                    OutboxWrites {
                        store: store.clone(),
                    },
                    MAX_GROUP,
                ),
                store,
                config: apps,
                endpoints: config.webhooks.clone(),
                owner: format!("webhooks-{}", crate::store::generate_token()),
                http,
                wake: Notify::new(),
                hook: RwLock::new(None),
                secrets: Mutex::new(HashMap::new()),
                metrics,
            }),
        }
    }

    /// The metrics deliveries are counted in.
    pub fn metrics(&self) -> &Metrics {
        &self.inner.metrics
    }

    /// `[apps]`.
    pub fn config(&self) -> &AppsConfig {
        &self.inner.config
    }

    /// The store.
    pub fn store(&self) -> &Store {
        &self.inner.store
    }

    /// The `[[webhooks]]` entries.
    pub fn endpoints(&self) -> &[ConfigWebhook] {
        &self.inner.endpoints
    }

    /// The `[[webhooks]]` entries subscribed to `event`, in config order.
    pub fn endpoints_for(&self, event: &str) -> Vec<ConfigWebhook> {
        self.inner
            .endpoints
            .iter()
            .filter(|h| h.wants(event))
            .cloned()
            .collect()
    }

    /// Sets what is called with every answer no [`Webhooks::call`] waited for (replacing the
    /// one set before). It runs on the delivery's task: spawn anything slow.
    pub fn set_answer_hook(&self, hook: AnswerHook) {
        *self.inner.hook.write().unwrap_or_else(|p| p.into_inner()) = Some(hook);
    }

    /// Stores deliveries, in one transaction, before anything is sent; wakes the worker.
    /// Returns their ids (`X-Huixin-Delivery`), in order.
    pub async fn enqueue(&self, outgoing: Vec<Outgoing>) -> Result<Vec<String>, StoreError> {
        if outgoing.is_empty() {
            return Ok(Vec::new());
        }
        let now = now_ms();
        let prepared: Vec<(Prepared, i64)> = outgoing
            .into_iter()
            .map(|o| (Prepared::new(o), now))
            .collect();
        let ids: Vec<String> = prepared.iter().map(|(p, _)| p.id.clone()).collect();
        // Stored (in a group with what other requests store meanwhile) before anything is
        // sent, and before the caller answers anyone.
        for stored in self.inner.outbox.submit_all(prepared).await {
            stored?;
        }
        self.wake();
        Ok(ids)
    }

    /// Sends a message webhook that may answer the passive reply: stores it and, unless an
    /// earlier delivery of its endpoint and ordering waits ([`Call::Queued`]), POSTs it at
    /// once and waits at most `budget` (and never past the attempt's timeout) for a 2xx
    /// ([`Call::Answered`]). A slower attempt goes on in the background ([`Call::Later`]).
    pub async fn call(&self, outgoing: Outgoing, budget: Duration) -> Result<Call, StoreError> {
        let now = now_ms();
        let prepared = Prepared::new(outgoing);
        let lease_until = now.saturating_add(millis(self.lease()));
        let (seq, claimed) = self
            .store()
            .backend()
            .webhook_insert_claimed(&prepared.delivery(now), &self.inner.owner, lease_until)
            .await?;
        if !claimed {
            self.wake();
            return Ok(Call::Queued);
        }
        let row = prepared.into_row(seq, now);
        let (tx, rx) = oneshot::channel::<send::Attempted>();
        let webhooks = self.clone();
        tokio::spawn(async move {
            let attempted = send::attempt(&webhooks, &row).await;
            // Recorded first: once the caller hears "answered", the delivery is done and the
            // follower's next one may go.
            webhooks
                .settle(std::slice::from_ref(&attempted.outcome))
                .await;
            // The caller takes the answer while it waits; once it stopped waiting, the hook.
            if let Err(attempted) = tx.send(attempted) {
                webhooks.hand_over(&row, attempted.answer);
            }
        });
        let mut rx = rx;
        let attempted = match tokio::time::timeout(budget, &mut rx).await {
            Ok(Ok(attempted)) => attempted,
            // The attempt's task ended without a word: it panicked; the lease runs out and
            // the worker tries again.
            Ok(Err(_)) => return Ok(Call::Later),
            Err(_) => {
                rx.close();
                match rx.try_recv() {
                    // It came as the budget ran out: still the caller's.
                    Ok(attempted) => attempted,
                    Err(_) => return Ok(Call::Later),
                }
            }
        };
        Ok(match attempted.outcome.result {
            crate::store::apps::DeliveryResult::Delivered => Call::Answered(attempted.answer),
            crate::store::apps::DeliveryResult::Failed { error } => Call::Failed(error),
            _ => Call::Later,
        })
    }

    /// Deletes delivered and failed deliveries stored more than `[apps]
    /// webhook_retention_days` before `now` (Unix seconds), with their attempts; how many.
    /// Nothing when the retention is 0 (forever).
    pub async fn purge(&self, now: i64) -> Result<u64, StoreError> {
        let days = i64::from(self.config().webhook_retention_days);
        if days == 0 {
            return Ok(0);
        }
        let before_ms = now.saturating_sub(days * 86_400).saturating_mul(1000);
        self.store().backend().webhook_purge(before_ms).await
    }

    /// Forgets what is remembered of app `id` (its secret, or that it is revoked), so the
    /// next delivery reads it again. Revoking through this process's own code should call
    /// it; otherwise a change is seen within a few seconds.
    pub fn forget_app(&self, id: i64) {
        self.secrets().remove(&id);
    }

    // ----- for the worker and the attempts -----

    /// This process's lease owner name.
    pub(crate) fn owner(&self) -> &str {
        &self.inner.owner
    }

    /// How long a claim lasts.
    pub(crate) fn lease(&self) -> Duration {
        self.config().webhook_lease()
    }

    /// The HTTP client: the attempt's timeout, no redirects.
    pub(crate) fn http(&self) -> &reqwest::Client {
        &self.inner.http
    }

    /// Wakes the worker.
    pub(crate) fn wake(&self) {
        self.inner.wake.notify_one();
    }

    /// Completes when the worker was woken since it last waited.
    pub(crate) async fn woken(&self) {
        self.inner.wake.notified().await;
    }

    /// The secret that signs `row`'s deliveries.
    pub(crate) async fn secret(&self, row: &DeliveryRow) -> Result<String, SecretError> {
        if let Some(name) = row.endpoint.strip_prefix("config:") {
            return self
                .inner
                .endpoints
                .iter()
                .find(|h| h.name == name)
                .map(|h| h.secret.expose().to_owned())
                .ok_or_else(|| SecretError::Gone(format!("no webhook {name} in the config")));
        }
        let id = match row.app_id {
            Some(id) => id,
            None => match row.endpoint.strip_prefix("app:").map(str::parse::<i64>) {
                Some(Ok(id)) => id,
                _ => {
                    return Err(SecretError::Gone(format!(
                        "unknown endpoint {:?}",
                        row.endpoint
                    )));
                }
            },
        };
        let cached = self
            .secrets()
            .get(&id)
            .filter(|(_, at)| at.elapsed() < SECRET_TTL)
            .map(|(secret, _)| secret.clone());
        let secret = match cached {
            Some(secret) => secret,
            None => {
                let app = self
                    .store()
                    .backend()
                    .app(id)
                    .await
                    .map_err(SecretError::Store)?;
                let secret = app.filter(|a| a.revoked_at.is_none()).map(|a| a.secret);
                let mut secrets = self.secrets();
                if secrets.len() >= SECRETS_KEPT {
                    secrets.clear();
                }
                secrets.insert(id, (secret.clone(), Instant::now()));
                secret
            }
        };
        secret.ok_or_else(|| SecretError::Gone("app revoked".into()))
    }

    /// Gives an answer no caller waits for to the hook.
    pub(crate) fn hand_over(&self, row: &DeliveryRow, answer: Option<Value>) {
        let Some(answer) = answer else { return };
        let hook = self
            .inner
            .hook
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .clone();
        match hook {
            Some(hook) => hook(Answered {
                delivery_id: row.id.clone(),
                app_id: row.app_id,
                endpoint: row.endpoint.clone(),
                event: row.event.clone(),
                ordering: row.ordering.clone(),
                answer,
            }),
            None => tracing::debug!(
                delivery = %row.id,
                event = %row.event,
                endpoint = %row.endpoint,
                "webhook answer unused: no answer hook"
            ),
        }
    }

    /// Records outcomes of this process's attempts, trying a few times when the store is
    /// busy; then wakes the worker (a delivery done lets the next of its ordering go).
    pub(crate) async fn settle(&self, outcomes: &[DeliveryOutcome]) {
        for delay in SETTLE_RETRIES {
            if delay > 0 {
                tokio::time::sleep(Duration::from_millis(delay)).await;
            }
            match self
                .store()
                .backend()
                .webhook_settle(&self.inner.owner, outcomes, now_ms())
                .await
            {
                Ok(()) => {
                    self.wake();
                    return;
                }
                Err(e) => tracing::error!(
                    error = %e,
                    outcomes = outcomes.len(),
                    "webhooks: cannot record attempts"
                ),
            }
        }
        // The deliveries stay `sending`; once the lease runs out they are sent again with
        // the same delivery id, which the receiver recognises.
    }

    fn secrets(&self) -> std::sync::MutexGuard<'_, HashMap<i64, (Option<String>, Instant)>> {
        self.inner.secrets.lock().unwrap_or_else(|p| p.into_inner())
    }
}

/// The most deliveries stored in one transaction.
const MAX_GROUP: usize = 512;

/// How deliveries are stored in groups ([`crate::store::apps::AppStore::webhook_insert`]).
#[derive(Clone)]
struct OutboxWrites {
    store: Store,
}

impl Commit for OutboxWrites {
    type Item = (Prepared, i64);
    type Output = i64;
    type Error = StoreError;

    fn write<'a>(&'a self, items: &'a [(Prepared, i64)]) -> Written<'a, i64, StoreError> {
        Box::pin(async move {
            let rows: Vec<NewDelivery<'_>> =
                items.iter().map(|(p, now)| p.delivery(*now)).collect();
            self.store.backend().webhook_insert(&rows).await
        })
    }

    fn lost() -> StoreError {
        StoreError::WriterGone
    }

    fn what() -> &'static str {
        "webhook deliveries"
    }
}

/// An [`Outgoing`] with its id and its body as text, ready to store.
struct Prepared {
    id: String,
    body: String,
    outgoing: Outgoing,
}

impl Prepared {
    fn new(outgoing: Outgoing) -> Self {
        Self {
            id: crate::store::generate_token(),
            // A `Value` always serializes.
            body: serde_json::to_string(&outgoing.body).unwrap_or_else(|_| "null".into()),
            outgoing,
        }
    }

    fn delivery(&self, now_ms: i64) -> NewDelivery<'_> {
        let o = &self.outgoing;
        NewDelivery {
            id: &self.id,
            app_id: o.app_id,
            endpoint: &o.endpoint,
            url: &o.url,
            event: &o.event,
            ordering: &o.ordering,
            body: &self.body,
            now_ms,
        }
    }

    /// The row as [`crate::store::apps::AppStore::webhook_insert_claimed`] stored and
    /// claimed it: sending, its first attempt counted.
    fn into_row(self, seq: i64, now_ms: i64) -> DeliveryRow {
        let o = self.outgoing;
        DeliveryRow {
            seq,
            id: self.id,
            app_id: o.app_id,
            endpoint: o.endpoint,
            url: o.url,
            event: o.event,
            ordering: o.ordering,
            body: self.body,
            state: "sending".into(),
            attempts: 1,
            next_at: now_ms,
            last_status: None,
            last_error: None,
            created_at: now_ms,
            updated_at: now_ms,
        }
    }
}

/// Milliseconds since the Unix epoch.
pub(crate) fn now_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| i64::try_from(d.as_millis()).unwrap_or(i64::MAX))
}

/// A duration in whole milliseconds, as stored.
pub(crate) fn millis(d: Duration) -> i64 {
    i64::try_from(d.as_millis()).unwrap_or(i64::MAX)
}
