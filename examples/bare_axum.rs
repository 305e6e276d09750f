//! huixin's protocol layer inside a plain axum handler: no router, no middleware, no store.
//! Useful when you already have an axum app and only need WeChat's verify/decrypt/parse/reply;
//! `scripts/bench.sh` also runs it as the reference point for the full server.
//!
//! Run: `cargo run --example bare_axum` (reads huixin.toml / HUIXIN_* like `huixin serve`;
//! `[wechat] token` must be set). It echoes text messages and answers `success` otherwise.

use axum::Router;
use axum::body::Bytes;
use axum::extract::{DefaultBodyLimit, Query, State};
use axum::http::StatusCode;
use axum::routing::post;
use huixin::config::Config;
use huixin::support::clock::unix_now;
use huixin::wechat::{CallbackQuery, Protocol, Reply};
use std::sync::Arc;

async fn callback(
    State(protocol): State<Arc<Protocol>>,
    Query(q): Query<CallbackQuery>,
    body: Bytes,
) -> (StatusCode, String) {
    match protocol.receive(&q, &body, unix_now()) {
        Ok(inbound) => {
            let reply = inbound
                .message
                .content()
                .map_or(Reply::Success, Reply::text);
            (
                StatusCode::OK,
                protocol.seal(&inbound, &reply, &q, unix_now()).body,
            )
        }
        Err(e) if e.is_forbidden() => (StatusCode::FORBIDDEN, e.to_string()),
        Err(e) => (StatusCode::BAD_REQUEST, e.to_string()),
    }
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let config = Config::load(None)?;
    anyhow::ensure!(
        !config.wechat.token.is_empty(),
        "set [wechat] token (or HUIXIN_WECHAT_TOKEN)"
    );
    let protocol = Arc::new(config.wechat.protocol(config.wechat.token.expose())?);
    let app = Router::new()
        .route(&config.server.path, post(callback))
        .layer(DefaultBodyLimit::max(config.server.body_limit))
        .with_state(protocol);
    let listener = tokio::net::TcpListener::bind(&config.server.listen).await?;
    println!(
        "bare_axum listening on http://{}{}",
        listener.local_addr()?,
        config.server.path
    );
    axum::serve(listener, app).await?;
    Ok(())
}
