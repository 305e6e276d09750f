//! What the push service does with inbound events, ahead of the rules (which still see every
//! event): `TEMPLATESENDJOBFINISH` settles a recipient's delivery, and scanning a topic's QR
//! code (scene `topic:NAME`, to follow or as a follower) joins that topic.

use super::deliver::job_finished;
use super::service::Pushes;
use crate::bot::{Context, Flow, Router, filter};
use crate::wechat::message::{Event, MessageKind};

/// The QR scene prefix of topic invitations.
pub const TOPIC_SCENE_PREFIX: &str = "topic:";

/// Adds the push service's routes to `router` (before the rules' catch-all route).
pub fn routes(router: Router, pushes: Pushes) -> Router {
    let finished = pushes.clone();
    router
        .route(
            filter::event("TEMPLATESENDJOBFINISH"),
            move |ctx: Context| {
                let pushes = finished.clone();
                async move {
                    if let MessageKind::Event(Event::TemplateSendJobFinish(done)) =
                        &ctx.message.kind
                    {
                        job_finished(&pushes, &ctx.tasks, done.msg_id.0, done.status.clone());
                    }
                    Flow::Next
                }
            },
        )
        .route(
            filter::event("subscribe").or(filter::event("SCAN")),
            move |ctx: Context| {
                let pushes = pushes.clone();
                async move {
                    let scene = match &ctx.message.kind {
                        MessageKind::Event(Event::Subscribe(s)) => s.scene.clone(),
                        MessageKind::Event(Event::Scan(s)) => Some(s.scene.clone()),
                        _ => None,
                    };
                    if let Some(topic) = scene
                        .as_deref()
                        .and_then(|s| s.strip_prefix(TOPIC_SCENE_PREFIX))
                    {
                        let openid = ctx.message.from.as_str();
                        match pushes.join(topic, openid).await {
                            Ok(joined) => {
                                tracing::info!(topic, joined, "topic QR code scanned");
                            }
                            Err(e) => {
                                tracing::warn!(topic, error = %e, "topic QR code scanned; not joined");
                            }
                        }
                    }
                    Flow::Next
                }
            },
        )
}
