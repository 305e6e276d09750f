//! The whole product (`huixin serve`: the configured middleware, the Rhai rules of `rules/`,
//! push APIs and delivery) with one route of your own in Rust, in front of the rules, and one
//! HTTP route beside huixin's.
//!
//! Run: `cargo run --example full_bot`, then `cargo run -- simulate text "order 42"` (answered
//! here) or `cargo run -- simulate text help` (answered by the rules), and
//! `curl localhost:8080/hello`. Configured like `huixin serve` (huixin.toml, HUIXIN_*).
use huixin::app::App;
use huixin::bot::{Context, filter};
use huixin::config::Config;
use huixin::wechat::Reply;

/// `order 42`: looked up in Rust; the rules never see these messages.
async fn order(ctx: Context) -> Reply {
    let number = ctx.captures.get(1).unwrap_or_default();
    Reply::text(format!("Order {number}: on its way."))
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let config = Config::load(None)?;
    huixin::telemetry::init(&config.log.level);
    let app = App::builder(config)
        .route(filter::content_regex(r"^order (\d+)$")?, order)
        .http(axum::Router::new().route("/hello", axum::routing::get(|| async { "hello\n" })))
        .build()
        .await?;
    app.serve_until_signal().await?;
    Ok(())
}
