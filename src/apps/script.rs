//! The platform from rules:
//!
//! - `bindings()`: the current user's bindings, every app's, as maps
//!   `#{ app, app_id, uid, extra, state, source, blocked, created_at }` (oldest app first).
//! - `bind_info()`: the current user's most recent binding as such a map, or `()` when they
//!   have none; `bind_info(app)`: their binding to the app of that name (or id), or `()`.
//! - `webhook(app, event, data)`: sends `data` (a map) to the app's callback as `event`
//!   (1–64 of `[-_.a-z0-9]`), through the same durable, signed, retried outbox as huixin's own
//!   events, in order with the user's other events; returns the delivery id. `app` is the
//!   app's name or id, or `"config:NAME"` for a `[[webhooks]]` entry.
//!
//! Under `huixin rules test` nothing is sent: `webhook` reports what it would send, and the
//! user has no bindings.

use rhai::{Array, Dynamic, Engine, EvalAltResult, Map};
use serde_json::json;

use super::Apps;
use super::events::now_ms;
use crate::outbound::script::DryRun;
use crate::push::service::PushError;
use crate::rules::api::ScriptModule;
use crate::rules::context::{self, runtime_error};
use crate::store::apps::BindingRow;
use crate::webhooks::Outgoing;

/// The platform's script functions.
pub struct AppFunctions;

impl ScriptModule for AppFunctions {
    fn name(&self) -> &'static str {
        "apps"
    }

    fn register(&self, engine: &mut Engine) {
        engine
            .register_fn("bindings", bindings)
            .register_fn("bind_info", || bind_info(None))
            .register_fn("bind_info", |app: &str| bind_info(Some(app)))
            .register_fn("webhook", webhook);
    }
}

enum Sink {
    Live(Apps, tokio::runtime::Handle, String),
    DryRun(DryRun),
}

fn sink(function: &str) -> Result<Sink, Box<EvalAltResult>> {
    context::with(|ctx| {
        if let Some(dry) = ctx.services.extensions.get::<DryRun>() {
            return Ok(Sink::DryRun(dry.clone()));
        }
        match ctx.services.extensions.get::<Apps>() {
            Some(apps) => Ok(Sink::Live(
                apps.clone(),
                ctx.runtime()?.clone(),
                ctx.openid.clone(),
            )),
            None => Err(runtime_error(format!(
                "{function}: the platform is not available here"
            ))),
        }
    })
}

fn script_error(function: &str, e: PushError) -> Box<EvalAltResult> {
    runtime_error(format!("{function}: {e}"))
}

fn binding_map(apps: &Apps, b: &BindingRow) -> Map {
    let mut m = Map::new();
    let app = apps.live_app(b.app_id).map(|a| a.name).unwrap_or_default();
    m.insert("app".into(), app.into());
    m.insert("app_id".into(), Dynamic::from_int(b.app_id));
    m.insert("uid".into(), b.uid.clone().into());
    m.insert("extra".into(), b.extra.clone().into());
    m.insert("state".into(), b.state.clone().into());
    m.insert("source".into(), b.source.clone().into());
    m.insert("blocked".into(), b.blocked.into());
    m.insert("created_at".into(), Dynamic::from_int(b.created_at));
    m
}

fn user_bindings(function: &str) -> Result<Option<(Apps, Vec<BindingRow>)>, Box<EvalAltResult>> {
    match sink(function)? {
        Sink::DryRun(_) => Ok(None),
        Sink::Live(apps, runtime, openid) => {
            let rows = runtime
                .block_on(apps.bindings_of(&openid))
                .map_err(|e| script_error(function, e))?;
            Ok(Some((apps, rows)))
        }
    }
}

fn bindings() -> Result<Array, Box<EvalAltResult>> {
    Ok(match user_bindings("bindings")? {
        None => Array::new(),
        Some((apps, rows)) => rows
            .iter()
            .map(|b| Dynamic::from_map(binding_map(&apps, b)))
            .collect(),
    })
}

fn bind_info(app: Option<&str>) -> Result<Dynamic, Box<EvalAltResult>> {
    let Some((apps, rows)) = user_bindings("bind_info")? else {
        return Ok(Dynamic::UNIT);
    };
    let found = match app {
        None => rows.iter().max_by_key(|b| (b.updated_at, b.seq)),
        Some(app) => {
            let id = app
                .parse::<i64>()
                .ok()
                .or_else(|| apps.live().iter().find(|a| a.name == app).map(|a| a.id));
            rows.iter()
                .filter(|b| Some(b.app_id) == id)
                .max_by_key(|b| (b.updated_at, b.seq))
        }
    };
    Ok(found.map_or(Dynamic::UNIT, |b| Dynamic::from_map(binding_map(&apps, b))))
}

/// Whether a rule may name an event so.
fn valid_event(event: &str) -> bool {
    (1..=64).contains(&event.len())
        && event
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b"-_.".contains(&b))
}

fn webhook(app: &str, event: &str, data: Map) -> Result<String, Box<EvalAltResult>> {
    if !valid_event(event) {
        return Err(runtime_error(format!(
            "webhook: {event:?} cannot name an event (1-64 of a-z, 0-9, - _ .)"
        )));
    }
    let data: serde_json::Value = rhai::serde::from_dynamic(&Dynamic::from_map(data))
        .map_err(|e| runtime_error(format!("webhook: the data is not JSON: {e}")))?;
    let (apps, runtime, openid) = match sink("webhook")? {
        Sink::DryRun(dry) => {
            dry.record(format!("a webhook {event} to {app}: {data}"));
            return Ok("DELIVERY".into());
        }
        Sink::Live(apps, runtime, openid) => (apps, runtime, openid),
    };
    let time = now_ms();
    let outgoing = if let Some(name) = app.strip_prefix("config:") {
        let hook = apps
            .webhooks()
            .endpoints()
            .iter()
            .find(|h| h.name == name)
            .cloned()
            .ok_or_else(|| runtime_error(format!("webhook: no [[webhooks]] entry {name:?}")))?;
        let body = json!({"event": event, "time": time, "app": null,
                          "data": {"openid": openid, "data": data}});
        Outgoing::to_config(&hook, event, &openid, body)
    } else {
        let target = apps
            .live()
            .iter()
            .find(|a| a.name == app || a.id.to_string() == app)
            .cloned()
            .ok_or_else(|| runtime_error(format!("webhook: no app {app:?}")))?;
        if target.callback_url.is_empty() {
            return Err(runtime_error(format!(
                "webhook: app {:?} has no callback URL",
                target.name
            )));
        }
        // The app knows the user by its uids only.
        let uids: Vec<String> = runtime
            .block_on(apps.bindings_of(&openid))
            .map_err(|e| script_error("webhook", e))?
            .into_iter()
            .filter(|b| b.app_id == target.id)
            .map(|b| b.uid)
            .collect();
        let body = json!({"event": event, "time": time,
                          "app": {"id": target.id, "name": target.name},
                          "data": {"uid": uids.first(), "uids": uids, "data": data}});
        Outgoing::to_app(&target, event, &openid, body)
    };
    let ids = runtime
        .block_on(apps.webhooks().enqueue(vec![outgoing]))
        .map_err(|e| runtime_error(format!("webhook: not stored: {e}")))?;
    Ok(ids.into_iter().next().unwrap_or_default())
}

#[cfg(test)]
mod tests {
    #[test]
    fn event_names() {
        assert!(super::valid_event("order.paid"));
        assert!(!super::valid_event("Order"));
        assert!(!super::valid_event(""));
    }
}
