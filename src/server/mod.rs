//! The HTTP edge of the callback (axum). [`routes`] builds the callback's surface without
//! binding a socket; [`listen::serve`] runs a surface on a listener with the limits a public
//! endpoint needs. The whole product's surface (push APIs, detail pages, routes of your own)
//! is put together by [`crate::app::App`].
//!
//! Routes:
//! - `GET {path}`: URL verification (echoes `echostr`).
//! - `POST {path}`: messages.
//! - `GET /healthz`: liveness and whether the store can take writes, as JSON (503 with a
//!   reason when it is locked, full or corrupt).

pub mod callback;
pub mod listen;
pub mod replay;

use std::sync::Arc;

use axum::Json;
use axum::extract::State;
use axum::http::StatusCode;
use axum::response::IntoResponse;
use axum::routing::get;
use tower_http::catch_panic::CatchPanicLayer;

use crate::bot::Router;
use crate::bot::tasks::Tasks;
use crate::config::Config;
use crate::metrics::Metrics;
use crate::store::{Store, StoreError};
use crate::wechat::Protocol;

/// Where the callback token came from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum TokenSource {
    /// `[wechat] token` (file, `HUIXIN_WECHAT_TOKEN` or `.env`).
    Configured,
    /// Generated and kept in the store; `new` on the start that created it.
    Generated {
        /// Whether this start generated it.
        new: bool,
    },
}

/// The token to sign with: the configured one, or the one generated on first start (created
/// now if there is none).
pub async fn resolve_token(
    config: &Config,
    store: &Store,
) -> Result<(String, TokenSource), StoreError> {
    let configured = config.wechat.token.expose();
    if !configured.is_empty() {
        return Ok((configured.to_owned(), TokenSource::Configured));
    }
    let (token, new) = store.generated_token_or_create().await?;
    Ok((token, TokenSource::Generated { new }))
}

/// Shared state of the callback's surface. Cheap to clone.
#[derive(Clone)]
pub struct CallbackState {
    inner: Arc<Shared>,
}

struct Shared {
    protocol: Protocol,
    replay: replay::ReplayGuard,
    router: Arc<Router>,
    store: Store,
    tasks: Tasks,
    path: String,
    body_limit: usize,
    metrics: Metrics,
}

impl CallbackState {
    /// State for a protocol, a router and a store, serving the callback at `path`. Work a
    /// message leaves running (a reply past the deadline) goes to `tasks`; every message and
    /// its outcome are counted in `metrics`.
    pub fn new(
        protocol: Protocol,
        router: Router,
        store: Store,
        tasks: Tasks,
        path: &str,
        body_limit: usize,
        metrics: Metrics,
    ) -> Self {
        let replay_window = std::time::Duration::from_secs(protocol.max_skew_secs());
        Self {
            inner: Arc::new(Shared {
                replay: replay::ReplayGuard::new(replay_window),
                protocol,
                router: Arc::new(router),
                store,
                tasks,
                path: path.to_owned(),
                body_limit,
                metrics,
            }),
        }
    }

    /// The tasks of the app this surface belongs to.
    pub fn tasks(&self) -> &Tasks {
        &self.inner.tasks
    }

    /// The callback protocol.
    pub fn protocol(&self) -> &Protocol {
        &self.inner.protocol
    }

    /// The replay guard.
    pub fn replay(&self) -> &replay::ReplayGuard {
        &self.inner.replay
    }

    /// The bot's router.
    pub fn router(&self) -> &Arc<Router> {
        &self.inner.router
    }

    /// The store.
    pub fn store(&self) -> &Store {
        &self.inner.store
    }

    /// `[server] body_limit`.
    pub fn body_limit(&self) -> usize {
        self.inner.body_limit
    }

    /// The metrics messages are counted in.
    pub fn metrics(&self) -> &Metrics {
        &self.inner.metrics
    }
}

/// The callback's HTTP surface: `GET`/`POST {path}` and `/healthz`.
///
/// Layers, outermost first:
/// - on the callback path, a panic anywhere in the request (not only in the bot, which
///   isolates its own) answers `success`, so a follower never sees WeChat's error notice;
/// - the handlers bound the body themselves (`[server] body_limit`, read with a timeout)
///   after checking the signature, so an unsigned request never costs a body read.
pub fn routes(state: CallbackState) -> axum::Router {
    let path = state.inner.path.clone();
    let callback = get(callback::verify_url)
        .post(callback::receive)
        .layer(CatchPanicLayer::custom(callback::panic_response));
    axum::Router::new()
        .route(&path, callback)
        .route("/healthz", get(healthz))
        .with_state(state)
}

async fn healthz(State(state): State<CallbackState>) -> impl IntoResponse {
    match state.store().health().await {
        Ok(()) => (
            StatusCode::OK,
            Json(serde_json::json!({ "status": "ok", "version": env!("CARGO_PKG_VERSION") })),
        ),
        Err(e) => {
            tracing::error!(reason = e.kind(), error = %e, "health check: store unhealthy");
            (
                StatusCode::SERVICE_UNAVAILABLE,
                Json(serde_json::json!({
                    "status": "unavailable", "store": e.kind(), "reason": e.to_string()
                })),
            )
        }
    }
}

/// Completes on Ctrl-C or SIGTERM.
pub async fn shutdown_signal() {
    let ctrl_c = async {
        let _ = tokio::signal::ctrl_c().await;
    };
    #[cfg(unix)]
    let term = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut s) => {
                s.recv().await;
            }
            Err(_) => std::future::pending::<()>().await,
        }
    };
    #[cfg(not(unix))]
    let term = std::future::pending::<()>();
    tokio::select! {
        () = ctrl_c => {},
        () = term => {},
    }
}
