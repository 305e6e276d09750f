//! Sending from rules: `send_text(openid, text)`, `send(openid, reply)` (any reply built with
//! `text`, `image`, `news`, …), `send_template(openid, template_id, data)` and
//! `send_template(openid, template_id, data, url)`, where `data` is a map of field to text
//! (`#{ thing1: "Deploy finished", time2: "12:00" }`).
//!
//! A send does not hold up the rule or the reply: the function checks its arguments (a bad
//! one is a script error, reported with the rule's file), then the message goes out in the
//! background, and its failure is logged with WeChat's error code. Customer-service messages
//! reach users who wrote to the account in the last 48 hours; template messages reach any
//! follower. Without `[wechat] app_id` and `app_secret`, the functions are script errors.
//!
//! Offline (`huixin rules test`) a [`DryRun`] in the extensions collects what would be sent.

use std::sync::{Arc, Mutex};

use rhai::{Dynamic, Engine, EvalAltResult, Map};

use super::{Client, CustomMessage, TemplateMessage};
use crate::rules::api::ScriptModule;
use crate::rules::context::{self, ScriptContext, runtime_error};
use crate::wechat::Reply;

/// The send functions.
pub struct Sending;

impl ScriptModule for Sending {
    fn name(&self) -> &'static str {
        "send"
    }

    fn register(&self, engine: &mut Engine) {
        engine
            .register_fn("send_text", |openid: &str, text: &str| {
                if text.is_empty() {
                    return Err(runtime_error("send_text: the text is empty"));
                }
                send(openid, &Reply::text(text))
            })
            .register_fn("send", |openid: &str, reply: Reply| send(openid, &reply))
            .register_fn(
                "send_template",
                |openid: &str, template_id: &str, data: Map| {
                    send_template(openid, template_id, data, "")
                },
            )
            .register_fn("send_template", send_template);
    }
}

/// Collects sends instead of making them (put it in the extensions instead of a [`Client`]).
#[derive(Debug, Clone, Default)]
pub struct DryRun(Arc<Mutex<Vec<String>>>);

impl DryRun {
    /// What would have been sent, one line each, in order.
    pub fn sent(&self) -> Vec<String> {
        self.0.lock().unwrap_or_else(|p| p.into_inner()).clone()
    }

    pub(crate) fn record(&self, line: String) {
        self.0.lock().unwrap_or_else(|p| p.into_inner()).push(line);
    }
}

/// Where a send goes: the client, or a dry run.
enum Sink {
    Client(Client),
    DryRun(DryRun),
}

fn sink(ctx: &ScriptContext, function: &str) -> Result<Sink, Box<EvalAltResult>> {
    if let Some(dry) = ctx.services.extensions.get::<DryRun>() {
        return Ok(Sink::DryRun(dry.clone()));
    }
    client(ctx, function).map(Sink::Client)
}

fn client(ctx: &ScriptContext, function: &str) -> Result<Client, Box<EvalAltResult>> {
    ctx.services
        .extensions
        .get::<Client>()
        .cloned()
        .ok_or_else(|| {
            runtime_error(format!(
                "{function}: sending needs [wechat] app_id and app_secret"
            ))
        })
}

fn check_openid(function: &str, openid: &str) -> Result<(), Box<EvalAltResult>> {
    if openid.is_empty() || openid.len() > 64 || openid.chars().any(char::is_whitespace) {
        return Err(runtime_error(format!(
            "{function}: \"{openid}\" is not an OpenID"
        )));
    }
    Ok(())
}

fn send(openid: &str, reply: &Reply) -> Result<(), Box<EvalAltResult>> {
    check_openid("send", openid)?;
    let Some(message) = CustomMessage::from_reply(openid, reply) else {
        return Err(runtime_error(format!(
            "send: a {} reply cannot be sent as a message",
            reply.msg_type()
        )));
    };
    context::with(|ctx| {
        let client = match sink(ctx, "send")? {
            Sink::Client(client) => client,
            Sink::DryRun(dry) => {
                dry.record(format!(
                    "customer-service message to {openid}: {}",
                    reply.describe()
                ));
                return Ok(());
            }
        };
        let file = ctx.file.clone();
        let _entered = ctx.runtime()?.enter();
        ctx.services.tasks.spawn(async move {
            if let Err(e) = client.send_custom(&message).await {
                tracing::warn!(rule = %file, openid = %message.touser, error = %e, "send from a rule failed");
            }
        });
        Ok(())
    })
}

fn send_template(
    openid: &str,
    template_id: &str,
    data: Map,
    url: &str,
) -> Result<(), Box<EvalAltResult>> {
    check_openid("send_template", openid)?;
    if template_id.is_empty() {
        return Err(runtime_error("send_template: the template id is empty"));
    }
    let mut message = TemplateMessage::new(openid, template_id);
    for (key, value) in &data {
        message = message.field(key.as_str(), field_text(value));
    }
    if !url.is_empty() {
        message = message.url(url);
    }
    context::with(|ctx| {
        let client = match sink(ctx, "send_template")? {
            Sink::Client(client) => client,
            Sink::DryRun(dry) => {
                let fields: Vec<String> = message
                    .data
                    .iter()
                    .map(|(k, v)| format!("{k}={:?}", v.value))
                    .collect();
                let link = message
                    .url
                    .as_deref()
                    .map(|u| format!(" → {u}"))
                    .unwrap_or_default();
                dry.record(format!(
                    "template {template_id} to {openid}: {}{link}",
                    fields.join(", ")
                ));
                return Ok(());
            }
        };
        let file = ctx.file.clone();
        let _entered = ctx.runtime()?.enter();
        ctx.services.tasks.spawn(async move {
            if let Err(e) = client.send_template(&message).await {
                tracing::warn!(rule = %file, openid = %message.touser, error = %e, "template send from a rule failed");
            }
        });
        Ok(())
    })
}

/// A field's text: a string, any value's text form, or the `value` of `#{ value: … }`.
fn field_text(value: &Dynamic) -> String {
    if let Some(inner) = value
        .read_lock::<Map>()
        .and_then(|map| map.get("value").cloned())
    {
        return inner.to_string();
    }
    value.to_string()
}
