//! What the platform does with inbound messages.
//!
//! Ahead of the rules ([`routes`]): scanning a binding code (scene `bind:ID`, to follow or as
//! a follower) binds the follower and answers the `[apps] bind_reply` confirmation; a follow
//! or an unfollow marks the follower's bindings and goes to the webhooks.
//!
//! After the rules ([`after_rules`]): every user message and menu event goes to the webhooks.
//! When no rule replied and a receiver may answer the reply (`reply = true` in the config, an
//! app made with `--reply`), that receiver is called at once and its answer within `[apps]
//! reply_budget_ms` is the passive reply; a later answer goes out as a customer-service
//! message ([`answer_hook`]). Retries never reach this far: the dedup middleware answers them.

use std::sync::Arc;
use std::time::Duration;

use super::{Apps, BIND_SCENE_PREFIX, Completed, events, reply};
use crate::bot::{Context, Flow, Router, filter};
use crate::outbound::Client;
use crate::outbound::custom::CustomMessage;
use crate::webhooks::{Answered, Call};
use crate::wechat::message::{Event, MessageKind};
use crate::wechat::{Message, Reply};

/// Adds the platform's routes to `router` (before the rules' catch-all route).
pub fn routes(router: Router, apps: Apps) -> Router {
    let unfollowed = apps.clone();
    router
        .route(
            filter::event("subscribe").or(filter::event("SCAN")),
            move |ctx: Context| {
                let apps = apps.clone();
                async move { scanned(&apps, &ctx).await }
            },
        )
        .route(filter::event("unsubscribe"), move |ctx: Context| {
            let apps = unfollowed.clone();
            async move {
                let openid = ctx.message.from.as_str();
                if !apps.live().is_empty() {
                    let now = crate::support::clock::unix_now();
                    if let Err(e) = apps
                        .store()
                        .backend()
                        .bindings_mark(openid, "unfollowed", now)
                        .await
                    {
                        tracing::error!(error = %e, "bindings not marked unfollowed");
                    }
                }
                if let Err(e) = events::unfollow(&apps, openid).await {
                    tracing::error!(error = %e, "unfollow not sent to the webhooks");
                }
                Flow::Next
            }
        })
}

/// A follow, or a scan of a QR code by a follower.
async fn scanned(apps: &Apps, ctx: &Context) -> Flow {
    let openid = ctx.message.from.as_str();
    let (scene, ticket, follow) = match &ctx.message.kind {
        MessageKind::Event(Event::Subscribe(s)) => (s.scene.clone(), s.ticket.clone(), true),
        MessageKind::Event(Event::Scan(s)) => (Some(s.scene.clone()), s.ticket.clone(), false),
        _ => return Flow::Next,
    };
    if follow && !apps.live().is_empty() {
        let now = crate::support::clock::unix_now();
        if let Err(e) = apps
            .store()
            .backend()
            .bindings_mark(openid, "bound", now)
            .await
        {
            tracing::error!(error = %e, "bindings not marked bound again");
        }
    }
    let code = scene
        .as_deref()
        .and_then(|s| s.strip_prefix(BIND_SCENE_PREFIX));
    let answer = match code {
        Some(code) => Some(bind(apps, code, openid).await),
        None => None,
    };
    if follow
        && let Err(e) = events::follow(apps, openid, scene.as_deref(), ticket.as_deref()).await
    {
        tracing::error!(error = %e, "follow not sent to the webhooks");
    }
    match answer {
        Some(Some(text)) => Flow::Reply(Reply::text(text)),
        _ => Flow::Next,
    }
}

/// Binds through code `id`; what to tell the follower (`None`: nothing, the rules answer).
async fn bind(apps: &Apps, id: &str, openid: &str) -> Option<String> {
    let outcome = match apps.complete(id, openid, "scan").await {
        Ok(outcome) => outcome,
        Err(e) => {
            tracing::error!(error = %e, code = %id, "binding code scanned; not bound");
            return Some("绑定失败，请稍后重试。".into());
        }
    };
    match outcome {
        Completed::Bound { app, .. } => {
            let text = apps.config().bind_reply.replace("{app}", &app);
            (!text.trim().is_empty()).then_some(text)
        }
        Completed::Expired => Some("这个二维码已过期，请在网页上刷新后重新扫描。".into()),
        Completed::Used => Some("这个二维码已被使用，请在网页上刷新后重新扫描。".into()),
        Completed::Unknown | Completed::Revoked => Some("这个二维码已失效。".into()),
    }
}

/// Whether a message goes to the webhooks as a `message` event: user messages and the events
/// a follower causes, not follows (their own events) nor WeChat's reports.
fn is_user_message(msg: &Message) -> bool {
    match &msg.kind {
        MessageKind::Event(e) => !matches!(
            e,
            Event::Subscribe(_)
                | Event::Unsubscribe
                | Event::TemplateSendJobFinish(_)
                | Event::MassSendJobFinish(_)
                | Event::PublishJobFinish(_)
                | Event::SubscribeMsgSent(_)
                | Event::KfCreateSession { .. }
                | Event::KfCloseSession { .. }
        ),
        _ => true,
    }
}

/// After the rules ran (`replied`: whether one answered): sends the message to the webhooks,
/// and when no rule replied, asks a receiver that may answer for the reply.
pub async fn after_rules(apps: &Apps, message: &Message, replied: bool) -> Option<Reply> {
    if !is_user_message(message) {
        return None;
    }
    let openid = message.from.as_str();
    let audience = match events::Audience::of(apps, openid, events::MESSAGE).await {
        Ok(Some(audience)) => audience,
        Ok(None) => return None,
        Err(e) => {
            tracing::error!(error = %e, "message not sent to the webhooks");
            return None;
        }
    };
    let mut outgoing = events::message_outgoing(apps, &audience, message);
    let replier = if replied {
        None
    } else {
        outgoing
            .iter()
            .position(|o| may_reply(apps, &o.endpoint))
            .map(|i| outgoing.remove(i))
    };
    events::send(apps.webhooks(), outgoing).await;
    let replier = replier?;
    let budget = Duration::from_millis(apps.config().reply_budget_ms);
    match apps.webhooks().call(replier, budget).await {
        Ok(Call::Answered(Some(answer))) => match reply::from_answer(&answer) {
            Ok(reply) => reply,
            Err(why) => {
                tracing::warn!(why, "a webhook answered a malformed reply; ignored");
                None
            }
        },
        Ok(_) => None,
        Err(e) => {
            tracing::error!(error = %e, "message webhook not stored");
            None
        }
    }
}

/// Whether the receiver `endpoint` may answer the passive reply.
fn may_reply(apps: &Apps, endpoint: &str) -> bool {
    if let Some(name) = endpoint.strip_prefix("config:") {
        return apps
            .webhooks()
            .endpoints_for(events::MESSAGE)
            .iter()
            .any(|h| h.name == name && h.reply);
    }
    endpoint
        .strip_prefix("app:")
        .and_then(|id| id.parse().ok())
        .and_then(|id| apps.live_app(id))
        .is_some_and(|a| a.replies)
}

/// What becomes of answers that came after the reply budget (or from a retried delivery): a
/// message webhook's `{"reply": …}` goes to the follower as a customer-service message.
pub fn answer_hook(client: Option<Client>) -> Arc<dyn Fn(Answered) + Send + Sync> {
    Arc::new(move |answered: Answered| {
        if answered.event != events::MESSAGE || answered.ordering.is_empty() {
            return;
        }
        let reply = match reply::from_answer(&answered.answer) {
            Ok(Some(reply)) => reply,
            Ok(None) => return,
            Err(why) => {
                tracing::warn!(why, delivery = %answered.delivery_id, "a webhook answered a malformed reply; ignored");
                return;
            }
        };
        let Some(client) = client.clone() else {
            tracing::warn!(delivery = %answered.delivery_id, "a late webhook reply not sent: no [wechat] credentials");
            return;
        };
        let Some(message) = CustomMessage::from_reply(&answered.ordering, &reply) else {
            return;
        };
        tokio::spawn(async move {
            match client.send_custom(&message).await {
                Ok(()) => {
                    tracing::info!(delivery = %answered.delivery_id, "late webhook reply sent")
                }
                Err(e) => {
                    tracing::warn!(error = %e, delivery = %answered.delivery_id, "late webhook reply not sent")
                }
            }
        });
    })
}
