//! Echo bot, the library quick start, all in Rust: `cargo run --example echo_bot`.
use huixin::app::App;
use huixin::bot::{Context, Router, filter};
use huixin::config::Config;
use huixin::wechat::{Event, MessageKind, Reply};

/// Text, image and voice come back as they came; a location or a link is described.
async fn echo(ctx: Context) -> Option<Reply> {
    Some(match &ctx.message.kind {
        MessageKind::Text(t) => Reply::text(t.content.clone()),
        MessageKind::Image(i) => Reply::image(i.media_id.clone()),
        MessageKind::Voice(v) => Reply::voice(v.media_id.clone()),
        MessageKind::Location(l) => {
            Reply::text(format!("{} ({}, {})", l.label, l.latitude, l.longitude))
        }
        MessageKind::Link(l) => Reply::text(format!("Link: {}\n{}", l.title, l.url)),
        _ => return None, // fall through: no reply
    })
}

/// New followers are greeted, by QR scene when they came through one.
async fn welcome(ctx: Context) -> Reply {
    let scene = match ctx.message.event() {
        Some(Event::Subscribe(s)) => s.scene.clone(),
        _ => None,
    };
    Reply::text(scene.map_or("Welcome!".into(), |s| format!("Welcome, scene {s}!")))
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let config = Config::load(None)?;
    huixin::telemetry::init(&config.log.level);
    let router = Router::new()
        .route(filter::event("subscribe"), welcome)
        .route(filter::any(), echo);
    let app = App::builder(config).bot(router).build().await?;
    Ok(app.serve_until_signal().await?)
}
