//! Which events go to which receiver, with which body.
//!
//! Receivers are the config's `[[webhooks]]` (every follower's events they list) and the apps
//! with a callback URL (the events of the followers bound to them, of their bindings and of
//! their pushes). Every body is stored in the outbox before it is sent ([`Webhooks::enqueue`]).
//!
//! The `huixin` shape: `{"event", "time" (ms), "app": {"id", "name"} | null, "data"}`. An
//! app's `data` names the follower by the app's own uids (`uid`, the first, and `uids`), never
//! by OpenID; the config's receivers get the `openid` and the follower's `bindings`.
//!
//! The `wxpusher` shape (WxPusher's callbacks): `{"action": "app_subscribe" | "send_up_cmd",
//! "data"}`, for bindings and text messages only; other events are not sent to such receivers.

use serde_json::{Value, json};

use super::Apps;
use crate::config::WebhookFormat;
use crate::push::service::{PushError, Settled};
use crate::store::apps::{AppRow, BindCode, BindingRow};
use crate::webhooks::{Outgoing, Webhooks};
use crate::wechat::Message;
use crate::wechat::message::MessageKind;

/// A follower followed the account.
pub const FOLLOW: &str = "follow";
/// A follower unfollowed.
pub const UNFOLLOW: &str = "unfollow";
/// A follower sent a message or a menu event.
pub const MESSAGE: &str = "message";
/// A follower was bound to an app's uid.
pub const BINDING: &str = "binding";
/// A push reached a follower of the app.
pub const PUSH_DELIVERED: &str = "push.delivered";
/// A push failed for good for a follower of the app.
pub const PUSH_FAILED: &str = "push.failed";
/// Every event huixin sends, in the order the README documents them.
pub const EVENTS: [&str; 6] = [
    FOLLOW,
    UNFOLLOW,
    MESSAGE,
    BINDING,
    PUSH_DELIVERED,
    PUSH_FAILED,
];

/// Milliseconds since the Unix epoch.
pub(crate) fn now_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| i64::try_from(d.as_millis()).unwrap_or(i64::MAX))
}

/// The message as a JSON object of its typed fields, the same fields rules see (see
/// [`crate::rules::api::message`]), with every raw field under `raw`.
pub fn message_json(msg: &Message) -> Value {
    let map = crate::rules::api::message::message_map(msg);
    rhai::serde::from_dynamic::<Value>(&rhai::Dynamic::from_map(map)).unwrap_or(Value::Null)
}

/// A follower's events about to go out: who gets them.
pub(crate) struct Audience {
    /// The follower.
    pub openid: String,
    /// Their bindings, every app's.
    pub bindings: Vec<BindingRow>,
}

impl Audience {
    /// The follower and their bindings; `None` when nobody would hear of them (no config
    /// receiver of `event`, and no binding to an app with a callback).
    pub async fn of(apps: &Apps, openid: &str, event: &str) -> Result<Option<Self>, PushError> {
        let configured = !apps.webhooks().endpoints_for(event).is_empty();
        let app_callbacks = apps.live().iter().any(|a| !a.callback_url.is_empty());
        if !configured && !app_callbacks {
            return Ok(None);
        }
        let bindings = if app_callbacks {
            apps.bindings_of(openid).await?
        } else {
            Vec::new()
        };
        if !configured
            && !bindings.iter().any(|b| {
                apps.live_app(b.app_id)
                    .is_some_and(|a| !a.callback_url.is_empty())
            })
        {
            return Ok(None);
        }
        Ok(Some(Self {
            openid: openid.to_owned(),
            bindings,
        }))
    }

    /// The live apps with a callback this follower is bound to, each with its uids.
    pub fn apps(&self, apps: &Apps) -> Vec<(AppRow, Vec<String>)> {
        let mut out: Vec<(AppRow, Vec<String>)> = Vec::new();
        for b in &self.bindings {
            let Some(app) = apps.live_app(b.app_id) else {
                continue;
            };
            if app.callback_url.is_empty() {
                continue;
            }
            match out.iter_mut().find(|(a, _)| a.id == app.id) {
                Some((_, uids)) => uids.push(b.uid.clone()),
                None => out.push((app, vec![b.uid.clone()])),
            }
        }
        out
    }

    fn bindings_json(&self, apps: &Apps) -> Value {
        Value::Array(
            self.bindings
                .iter()
                .map(|b| {
                    json!({
                        "app_id": b.app_id,
                        "app": apps.live_app(b.app_id).map(|a| a.name),
                        "uid": b.uid,
                        "state": b.state,
                    })
                })
                .collect(),
        )
    }

    /// One delivery per receiver of `event`: `data` is what every receiver gets; apps get the
    /// follower's uids added, config receivers the OpenID and bindings. `wxpusher` builds the
    /// WxPusher-shaped body for such receivers (`None`: not sent to them).
    pub fn outgoing(
        &self,
        apps: &Apps,
        event: &str,
        data: &Value,
        wxpusher: impl Fn(Option<&AppRow>, &str) -> Option<Value>,
    ) -> Vec<Outgoing> {
        let time = now_ms();
        let mut out = Vec::new();
        for hook in apps.webhooks().endpoints_for(event) {
            let body = if hook.format == WebhookFormat::Wxpusher {
                match wxpusher(None, &self.openid) {
                    Some(body) => body,
                    None => continue,
                }
            } else {
                let mut data = data.clone();
                data["openid"] = json!(self.openid);
                data["bindings"] = self.bindings_json(apps);
                if let Some(message) = data.get_mut("message").and_then(Value::as_object_mut) {
                    message.insert("from".into(), json!(self.openid));
                }
                json!({"event": event, "time": time, "app": null, "data": data})
            };
            out.push(Outgoing::to_config(&hook, event, &self.openid, body));
        }
        for (app, uids) in self.apps(apps) {
            let body = if app.callback_format == "wxpusher" {
                match wxpusher(Some(&app), &uids[0]) {
                    Some(body) => body,
                    None => continue,
                }
            } else {
                let mut data = data.clone();
                data["uid"] = json!(uids[0]);
                data["uids"] = json!(uids);
                json!({"event": event, "time": time,
                       "app": {"id": app.id, "name": app.name}, "data": data})
            };
            out.push(Outgoing::to_app(&app, event, &self.openid, body));
        }
        out
    }
}

/// Stores deliveries, logging (not failing on) a store error: an event that cannot be stored
/// must not cost the follower their reply.
pub(crate) async fn send(webhooks: &Webhooks, outgoing: Vec<Outgoing>) {
    if outgoing.is_empty() {
        return;
    }
    let n = outgoing.len();
    if let Err(e) = webhooks.enqueue(outgoing).await {
        tracing::error!(error = %e, deliveries = n, "webhook deliveries not stored");
    }
}

/// A follower followed (`scene`: the QR scene they came through, if any).
pub async fn follow(
    apps: &Apps,
    openid: &str,
    scene: Option<&str>,
    ticket: Option<&str>,
) -> Result<(), PushError> {
    let Some(audience) = Audience::of(apps, openid, FOLLOW).await? else {
        return Ok(());
    };
    let data = json!({"scene": scene, "ticket": ticket});
    let outgoing = audience.outgoing(apps, FOLLOW, &data, |_, _| None);
    send(apps.webhooks(), outgoing).await;
    Ok(())
}

/// A follower unfollowed.
pub async fn unfollow(apps: &Apps, openid: &str) -> Result<(), PushError> {
    let Some(audience) = Audience::of(apps, openid, UNFOLLOW).await? else {
        return Ok(());
    };
    let outgoing = audience.outgoing(apps, UNFOLLOW, &json!({}), |_, _| None);
    send(apps.webhooks(), outgoing).await;
    Ok(())
}

/// The message as an app sees it: without the sender's OpenID (`from`, `raw.FromUserName`);
/// the app knows the follower by its uids.
fn message_for_apps(msg: &Message) -> Value {
    let mut json = message_json(msg);
    if let Some(o) = json.as_object_mut() {
        o.remove("from");
        if let Some(raw) = o.get_mut("raw").and_then(Value::as_object_mut) {
            raw.remove("FromUserName");
        }
    }
    json
}

/// The `message` deliveries of `msg`: the data, and the WxPusher `send_up_cmd` of a text.
/// Config receivers get the whole message; apps get it without the OpenID.
pub(crate) fn message_outgoing(apps: &Apps, audience: &Audience, msg: &Message) -> Vec<Outgoing> {
    let data = json!({"message": message_for_apps(msg)});
    let content = match &msg.kind {
        MessageKind::Text(t) => Some(t.content.clone()),
        _ => None,
    };
    let time = now_ms();
    audience.outgoing(apps, MESSAGE, &data, |app, uid| {
        let content = content.as_ref()?;
        Some(json!({"action": "send_up_cmd", "data": {
            "uid": uid,
            "appId": app.map_or(0, |a| a.id),
            "appName": app.map_or("", |a| a.name.as_str()),
            "time": time,
            "content": content,
        }}))
    })
}

/// A follower was bound: the app hears of it (`binding`, or WxPusher's `app_subscribe`), and
/// so do the config's receivers of `binding`.
pub async fn binding_done(
    apps: &Apps,
    app: &AppRow,
    binding: &BindingRow,
    code: &BindCode,
    following: bool,
) -> Result<(), PushError> {
    let time = now_ms();
    let mut outgoing = Vec::new();
    let data = json!({
        "uid": binding.uid,
        "extra": binding.extra,
        "source": binding.source,
        "code": code.id,
        "following": following,
        "created_at": binding.created_at,
    });
    // WxPusher's callback of a follow through the app's QR code or link.
    let app_subscribe = json!({"action": "app_subscribe", "data": {
        "appId": app.id,
        "appName": app.name,
        "source": if binding.source == "link" { "link" } else { "scan" },
        "userName": "",
        "userHeadImg": "",
        "time": time,
        "uid": binding.uid,
        "extra": binding.extra,
    }});
    if !app.callback_url.is_empty() {
        let body = if app.callback_format == "wxpusher" {
            app_subscribe.clone()
        } else {
            json!({"event": BINDING, "time": time,
                   "app": {"id": app.id, "name": app.name}, "data": data})
        };
        outgoing.push(Outgoing::to_app(app, BINDING, &binding.openid, body));
    }
    for hook in apps.webhooks().endpoints_for(BINDING) {
        let body = if hook.format == WebhookFormat::Wxpusher {
            app_subscribe.clone()
        } else {
            let mut data = data.clone();
            data["openid"] = json!(binding.openid);
            json!({"event": BINDING, "time": time,
                   "app": {"id": app.id, "name": app.name}, "data": data})
        };
        outgoing.push(Outgoing::to_config(&hook, BINDING, &binding.openid, body));
    }
    send(apps.webhooks(), outgoing).await;
    Ok(())
}

/// What becomes of pushes' fates: the app whose token made a push hears `push.delivered` or
/// `push.failed` for each of its followers (by uid). Pushes made otherwise cost one lookup
/// (remembered) and send nothing.
pub fn settled_hook(apps: Apps) -> crate::push::service::SettledHook {
    let owners: std::sync::Arc<std::sync::Mutex<std::collections::HashMap<i64, Option<i64>>>> =
        std::sync::Arc::default();
    std::sync::Arc::new(move |settled: Settled| {
        let listened = apps.live().iter().any(|a| !a.callback_url.is_empty())
            || !apps.webhooks().endpoints_for(PUSH_DELIVERED).is_empty()
            || !apps.webhooks().endpoints_for(PUSH_FAILED).is_empty();
        if !listened {
            return;
        }
        let apps = apps.clone();
        let owners = std::sync::Arc::clone(&owners);
        tokio::spawn(async move {
            if let Err(e) = push_settled(&apps, &owners, settled).await {
                tracing::warn!(error = %e, "a push's fate not sent to its app");
            }
        });
    })
}

/// The apps that made pushes, by push seq (`None`: not an app's), remembered up to this many.
const OWNERS_KEPT: usize = 10_000;

async fn push_settled(
    apps: &Apps,
    owners: &std::sync::Mutex<std::collections::HashMap<i64, Option<i64>>>,
    settled: Settled,
) -> Result<(), PushError> {
    let backend = apps.store().backend();
    let (seq, openid, delivered, status) = match settled {
        Settled::Finished {
            msgid,
            delivered,
            status,
        } => match backend.push_recipient_by_msgid(msgid).await? {
            Some((seq, openid)) => (seq, openid, delivered, status),
            None => return Ok(()),
        },
        Settled::Failed {
            push_seq,
            openid,
            error,
        } => (push_seq, openid, false, error),
    };
    let known = owners
        .lock()
        .unwrap_or_else(|p| p.into_inner())
        .get(&seq)
        .copied();
    let Some(push) = backend.push_by_seq(seq).await? else {
        return Ok(());
    };
    let owner = match known {
        Some(owner) => owner,
        None => {
            let owner = match &push.key_hash {
                Some(hash) => backend
                    .key_by_hash(hash)
                    .await?
                    .filter(|k| k.kind == "app")
                    .and_then(|k| k.target.parse::<i64>().ok()),
                None => None,
            };
            let mut map = owners.lock().unwrap_or_else(|p| p.into_inner());
            if map.len() >= OWNERS_KEPT {
                map.clear();
            }
            map.insert(seq, owner);
            owner
        }
    };
    let event = if delivered {
        PUSH_DELIVERED
    } else {
        PUSH_FAILED
    };
    let time = now_ms();
    let push_json = json!({"id": push.id, "seq": push.seq, "title": push.title,
                           "target": push.target, "created_at": push.created_at});
    let mut outgoing = Vec::new();
    let app = owner
        .and_then(|id| apps.live_app(id))
        .filter(|a| !a.callback_url.is_empty() && a.callback_format == "huixin");
    if let Some(app) = app {
        let uids: Vec<String> = backend
            .bindings_of_follower(app.id, &openid)
            .await?
            .into_iter()
            .map(|b| b.uid)
            .collect();
        let body = json!({
            "event": event, "time": time, "app": {"id": app.id, "name": app.name},
            "data": {"push": push_json, "uid": uids.first(), "uids": uids, "status": status},
        });
        outgoing.push(Outgoing::to_app(&app, event, &openid, body));
    }
    for hook in apps.webhooks().endpoints_for(event) {
        if hook.format == WebhookFormat::Wxpusher {
            continue;
        }
        let body = json!({
            "event": event, "time": time, "app": null,
            "data": {"push": push_json, "openid": openid, "status": status},
        });
        outgoing.push(Outgoing::to_config(&hook, event, &openid, body));
    }
    send(apps.webhooks(), outgoing).await;
    Ok(())
}
