//! The built-in echo bot: what `huixin serve` answers when no rules are configured, and the
//! behaviour `examples/echo_bot.rs` shows how to write. Text comes back as text, an image or a
//! voice message as the same media, a location or a link as a description, and a new follower
//! gets a welcome (naming the QR scene that brought them, if any).

use super::{Context, Router, filter};
use crate::wechat::Reply;
use crate::wechat::message::{Event, MessageKind};

/// The echo router.
pub fn router() -> Router {
    Router::new().route(filter::any(), |ctx: Context| async move { echo(&ctx) })
}

/// The echo reply to a message; `None` for messages it does not answer.
pub fn echo(ctx: &Context) -> Option<Reply> {
    let reply = match &ctx.message.kind {
        MessageKind::Text(t) => Reply::text(t.content.clone()),
        MessageKind::Image(i) => Reply::image(i.media_id.clone()),
        MessageKind::Voice(v) => Reply::voice(v.media_id.clone()),
        MessageKind::Location(l) => {
            Reply::text(describe_location(l.latitude, l.longitude, &l.label))
        }
        MessageKind::Link(l) => {
            Reply::text(format!("Link: {}\n{}\n{}", l.title, l.description, l.url))
        }
        MessageKind::Event(Event::Subscribe(s)) => Reply::text(welcome(s.scene.as_deref())),
        _ => return None,
    };
    Some(reply)
}

/// "Location: Label (lat, lon)".
pub fn describe_location(latitude: f64, longitude: f64, label: &str) -> String {
    let label = if label.trim().is_empty() {
        "(no label)"
    } else {
        label.trim()
    };
    format!("Location: {label} ({latitude:.6}, {longitude:.6})")
}

/// The welcome for a new follower.
pub fn welcome(scene: Option<&str>) -> String {
    match scene {
        Some(scene) => {
            format!("Welcome! You came from QR scene {scene}. Send any text and it comes back.")
        }
        None => "Welcome! Send any text and it comes back.".to_owned(),
    }
}
