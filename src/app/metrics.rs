//! `GET /metrics`: the app's [`Metrics`] for Prometheus.
//!
//! - On the main listener, only with `Authorization: Bearer <[metrics] token>` (compared in
//!   constant time); without a token configured it answers 404 saying how to turn it on.
//! - On `[metrics] listen`, a listener of its own meant for a private address, without a key.
//!
//! Each scrape first reads what only the database knows (the push queue's depth, with one
//! count over the partial indexes of waiting recipients), then renders. Prometheus' text
//! format 0.0.4 by default; OpenMetrics when the scraper's `Accept` asks for it.

use std::time::Duration;

use axum::extract::State;
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use sha2::{Digest, Sha256};
use subtle::ConstantTimeEq;
use tokio::net::TcpListener;

use super::AppError;
use crate::bot::tasks::Tasks;
use crate::config::{MetricsConfig, Secret};
use crate::metrics::{CONTENT_TYPE, Metrics, OPENMETRICS_CONTENT_TYPE};
use crate::server::listen::{self, Limits};
use crate::store::Store;

/// The path, on both listeners.
pub const PATH: &str = "/metrics";
/// The longest a scrape waits for the queue's depth before rendering the last value read.
const PROBE_TIMEOUT: Duration = Duration::from_secs(2);

#[derive(Clone)]
struct Scrape {
    metrics: Metrics,
    store: Store,
    token: Secret,
}

/// `/metrics` on the main listener, behind `[metrics] token`.
pub(super) fn routes(metrics: Metrics, store: Store, config: &MetricsConfig) -> axum::Router {
    let scrape = Scrape {
        metrics,
        store,
        token: config.token.clone(),
    };
    axum::Router::new()
        .route(PATH, get(guarded))
        .with_state(scrape)
}

/// Binds `[metrics] listen` (empty: none; metrics off: none) and serves `/metrics` there
/// without a key, as one of `tasks`' loops, until they stop.
pub(super) async fn spawn_listener(
    metrics: &Metrics,
    store: &Store,
    config: &MetricsConfig,
    tasks: &Tasks,
) -> Result<Option<std::net::SocketAddr>, AppError> {
    let addr = config.listen.trim();
    if addr.is_empty() || !metrics.is_enabled() {
        return Ok(None);
    }
    let listener = TcpListener::bind(addr)
        .await
        .map_err(|source| AppError::Bind {
            addr: format!("{addr} ([metrics] listen)"),
            source,
        })?;
    let bound = listener.local_addr()?;
    let scrape = Scrape {
        metrics: metrics.clone(),
        store: store.clone(),
        token: Secret::default(),
    };
    let router = axum::Router::new()
        .route(PATH, get(open))
        .with_state(scrape);
    let stopping = tasks.stopping();
    tasks.spawn_loop("metrics listener", async move {
        if let Err(e) = listen::serve(listener, router, stopping, Limits::default()).await {
            tracing::error!(error = %e, "the [metrics] listen server stopped");
        }
    });
    tracing::info!(addr = %bound, "metrics served at /metrics without a key ([metrics] listen)");
    Ok(Some(bound))
}

/// `/metrics` with a bearer token.
async fn guarded(State(scrape): State<Scrape>, headers: HeaderMap) -> Response {
    if !scrape.metrics.is_enabled() {
        return plain(
            StatusCode::NOT_FOUND,
            "metrics are off: set [metrics] enabled = true",
        );
    }
    let token = scrape.token.expose();
    if token.is_empty() {
        return plain(
            StatusCode::NOT_FOUND,
            "metrics are not served on this listener: set [metrics] token (and send \
             Authorization: Bearer TOKEN), or [metrics] listen for a listener of their own",
        );
    }
    let given = headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "))
        .map(str::trim)
        .unwrap_or_default();
    // Hashes of equal length compared in constant time: neither the token's bytes nor its
    // length show in the time a wrong guess takes.
    let (given_hash, token_hash) = (
        Sha256::digest(given.as_bytes()),
        Sha256::digest(token.as_bytes()),
    );
    let matches: bool = given_hash.as_slice().ct_eq(token_hash.as_slice()).into();
    if given.is_empty() || !matches {
        let mut response = plain(
            StatusCode::UNAUTHORIZED,
            "a valid [metrics] token is required: Authorization: Bearer TOKEN",
        );
        response.headers_mut().insert(
            header::WWW_AUTHENTICATE,
            HeaderValue::from_static("Bearer realm=\"huixin metrics\""),
        );
        return response;
    }
    render(&scrape, &headers).await
}

/// `/metrics` on `[metrics] listen`.
async fn open(State(scrape): State<Scrape>, headers: HeaderMap) -> Response {
    render(&scrape, &headers).await
}

async fn render(scrape: &Scrape, headers: &HeaderMap) -> Response {
    let depth =
        tokio::time::timeout(PROBE_TIMEOUT, scrape.store.backend().push_queue_depth()).await;
    match depth {
        Ok(Ok(depth)) => scrape.metrics.set_push_queue_depth(depth),
        Ok(Err(e)) => tracing::warn!(error = %e, "metrics: the push queue's depth is unknown"),
        Err(_) => tracing::warn!("metrics: reading the push queue's depth took too long"),
    }
    let openmetrics = headers
        .get(header::ACCEPT)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.contains("application/openmetrics-text"));
    let (body, content_type) = if openmetrics {
        (
            scrape.metrics.render_openmetrics(),
            OPENMETRICS_CONTENT_TYPE,
        )
    } else {
        (scrape.metrics.render(), CONTENT_TYPE)
    };
    ([(header::CONTENT_TYPE, content_type)], body).into_response()
}

fn plain(status: StatusCode, text: &'static str) -> Response {
    (
        status,
        [(header::CONTENT_TYPE, "text/plain; charset=utf-8")],
        text,
    )
        .into_response()
}
