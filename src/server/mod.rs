//! The HTTP edge (axum). [`app`] builds the whole surface without binding a socket;
//! [`Server::bind`] opens the store, settles the token, binds the listener; [`serve`] runs
//! until Ctrl-C or SIGTERM and shuts down gracefully.
//!
//! Routes:
//! - `GET {path}`: URL verification (echoes `echostr`).
//! - `POST {path}`: messages.
//! - `GET /healthz`: liveness and whether the store can take writes, as JSON (503 with a
//!   reason when it is locked, full or corrupt).

pub mod callback;
pub mod listen;
pub mod replay;

use std::future::Future;
use std::net::SocketAddr;
use std::sync::Arc;

use axum::Json;
use axum::extract::State;
use axum::http::StatusCode;
use axum::response::IntoResponse;
use axum::routing::get;
use tokio::net::TcpListener;
use tower_http::catch_panic::CatchPanicLayer;

use crate::bot::Router;
use crate::config::Config;
use crate::store::{Store, StoreError};
use crate::wechat::{CryptoError, Mode, Protocol};

/// Why the server could not start.
#[derive(Debug, thiserror::Error)]
pub enum ServerError {
    /// The configured key is unusable (validation normally catches this first).
    #[error("[wechat] encoding_aes_key: {0}")]
    Crypto(#[from] CryptoError),
    /// The store could not be opened.
    #[error(transparent)]
    Store(#[from] StoreError),
    /// The listen address could not be bound.
    #[error("cannot listen on {addr}: {source}")]
    Bind {
        /// `[server] listen`.
        addr: String,
        /// The OS error.
        source: std::io::Error,
    },
    /// The server stopped with an I/O error.
    #[error("server error: {0}")]
    Io(#[from] std::io::Error),
}

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

/// Shared state of the HTTP surface. Cheap to clone.
#[derive(Clone)]
pub struct AppState {
    inner: Arc<Shared>,
}

struct Shared {
    protocol: Protocol,
    replay: replay::ReplayGuard,
    router: Arc<Router>,
    store: Store,
    path: String,
    body_limit: usize,
}

impl AppState {
    /// State for a protocol, a router and a store, serving the callback at `path`.
    pub fn new(
        protocol: Protocol,
        router: Router,
        store: Store,
        path: &str,
        body_limit: usize,
    ) -> Self {
        let replay_window = std::time::Duration::from_secs(protocol.max_skew_secs());
        Self {
            inner: Arc::new(Shared {
                replay: replay::ReplayGuard::new(replay_window),
                protocol,
                router: Arc::new(router),
                store,
                path: path.to_owned(),
                body_limit,
            }),
        }
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
}

/// The whole HTTP surface.
///
/// Layers, outermost first:
/// - on the callback path, a panic anywhere in the request (not only in the bot, which
///   isolates its own) answers `success`, so a follower never sees WeChat's error notice;
/// - the handlers bound the body themselves (`[server] body_limit`, read with a timeout)
///   after checking the signature, so an unsigned request never costs a body read.
pub fn app(state: AppState) -> axum::Router {
    let path = state.inner.path.clone();
    let callback = get(callback::verify_url)
        .post(callback::receive)
        .layer(CatchPanicLayer::custom(callback::panic_response));
    axum::Router::new()
        .route(&path, callback)
        .route("/healthz", get(healthz))
        .with_state(state)
}

async fn healthz(State(state): State<AppState>) -> impl IntoResponse {
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

/// A bound, ready server.
pub struct Server {
    listener: TcpListener,
    app: axum::Router,
    local_addr: SocketAddr,
    path: String,
    public_url: String,
    mode: Mode,
    token: String,
    token_source: TokenSource,
    limits: listen::Limits,
    store: Store,
}

impl std::fmt::Debug for Server {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Server")
            .field("local_addr", &self.local_addr)
            .field("mode", &self.mode)
            .finish_non_exhaustive()
    }
}

impl Server {
    /// Opens the store (running migrations), settles the token, builds the protocol and binds
    /// `[server] listen`.
    pub async fn bind(config: &Config, router: Router) -> Result<Self, ServerError> {
        let store = Store::open(&config.storage.url).await?;
        Self::bind_with_store(config, store, router).await
    }

    /// As [`Server::bind`], with a store already open (the router's middleware uses it too).
    pub async fn bind_with_store(
        config: &Config,
        store: Store,
        router: Router,
    ) -> Result<Self, ServerError> {
        let (token, token_source) = resolve_token(config, &store).await?;
        let protocol = config.wechat.protocol(&token)?;
        let state = AppState::new(
            protocol,
            router,
            store.clone(),
            &config.server.path,
            config.server.body_limit,
        );
        let listener = TcpListener::bind(&config.server.listen)
            .await
            .map_err(|source| ServerError::Bind {
                addr: config.server.listen.clone(),
                source,
            })?;
        let local_addr = listener.local_addr()?;
        Ok(Self {
            listener,
            app: app(state),
            local_addr,
            path: config.server.path.clone(),
            public_url: config.server.public_url.clone(),
            mode: config.wechat.mode,
            token,
            token_source,
            limits: listen::Limits::default(),
            store,
        })
    }

    /// Adds routes beside the callback (the push APIs and the detail page).
    pub fn with_routes(mut self, routes: axum::Router) -> Self {
        self.app = self.app.merge(routes);
        self
    }

    /// Replaces the connection limits (tests use short ones).
    pub fn with_limits(mut self, limits: listen::Limits) -> Self {
        self.limits = limits;
        self
    }

    /// The bound address (useful with port 0).
    pub fn local_addr(&self) -> SocketAddr {
        self.local_addr
    }

    /// `http://ADDR{path}`.
    pub fn callback_url(&self) -> String {
        format!("http://{}{}", self.local_addr, self.path)
    }

    /// Where the token came from.
    pub fn token_source(&self) -> &TokenSource {
        &self.token_source
    }

    /// Serves until `shutdown` completes, then finishes in-flight requests (see [`listen`])
    /// and writes what the store still has queued.
    pub async fn run(
        self,
        shutdown: impl Future<Output = ()> + Send + 'static,
    ) -> Result<(), ServerError> {
        listen::serve(self.listener, self.app, shutdown, self.limits).await?;
        // Replies still being worked on (past the deadline, or whose connection WeChat
        // dropped) are delivered before the process ends.
        if !crate::bot::tasks::wait_idle(self.limits.shutdown_grace).await {
            tracing::warn!(
                tasks = crate::bot::tasks::active(),
                "late replies still in progress at shutdown are abandoned"
            );
        }
        // Write what the store still has queued (the message log, dedup records).
        if let Err(e) = self.store.flush().await {
            tracing::error!(error = %e, "queued store writes could not be flushed at shutdown");
        }
        Ok(())
    }

    /// Prints what a newcomer needs (address, mode, a freshly generated token once), then
    /// serves until Ctrl-C or SIGTERM.
    pub async fn run_until_signal(self) -> Result<(), ServerError> {
        println!(
            "huixin listening on {} ({} mode)",
            self.callback_url(),
            self.mode.as_str()
        );
        if !self.public_url.is_empty() {
            println!(
                "URL to set in the WeChat console: {}{}",
                self.public_url.trim_end_matches('/'),
                self.path
            );
        }
        match self.token_source {
            TokenSource::Generated { new: true } => println!(
                "generated callback token (shown once; set it as Token in the WeChat console, \
                 or set [wechat] token): {}",
                self.token
            ),
            TokenSource::Generated { new: false } => println!(
                "using the callback token generated on first start (`huixin token --callback` shows it)"
            ),
            TokenSource::Configured => {}
        }
        tracing::info!(addr = %self.local_addr, mode = self.mode.as_str(), "serving");
        self.run(shutdown_signal()).await?;
        tracing::info!("stopped");
        Ok(())
    }
}

/// Binds and serves `router` with `config` until Ctrl-C or SIGTERM.
pub async fn serve(config: &Config, router: Router) -> Result<(), ServerError> {
    Server::bind(config, router).await?.run_until_signal().await
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
