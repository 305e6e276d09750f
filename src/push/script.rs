//! Pushes, topics and keys from rules:
//!
//! - `push(target, title, body)`, `push(target, title, body, url)`: stores a push (delivered
//!   like any other) and returns its id. `target` is `"topic:NAME"`, `"user:OPENID"` or an
//!   OpenID.
//! - `subscribe_topic(openid, topic)`, `unsubscribe_topic(openid, topic)`: true when that
//!   changed the membership. Subscribing to a topic that does not exist is an error.
//! - `topic_info(name)`: `#{ name, open, description, members }`, or `()` when there is none.
//! - `topics()`: every topic, as such maps. `user_topics(openid)`: the names a user joined.
//! - `push_key(openid)`: the follower's personal key, made on first use:
//!   `#{ created: true, key: "…", prefix: "…" }` when made now, else
//!   `#{ created: false, prefix: "…" }` (keys are stored as hashes, so an existing key cannot
//!   be shown again; `prefix` is its first characters). `reset_push_key(openid)` revokes it
//!   and returns a new one; `create_key(target)` makes a key for `"topic:NAME"` or a user.
//! - `push_base_url()`: the base of the URLs huixin hands out (`[server] public_url`).
//!
//! Under `huixin rules test` ([`crate::outbound::script::DryRun`]), nothing is stored: pushes
//! and membership changes are reported as "would …" lines, and keys are placeholders.

use rhai::{Array, Dynamic, Engine, EvalAltResult, Map};

use super::service::{PersonalKey, PushError, PushRequest, Pushes, Scope, Sender};
use crate::outbound::script::DryRun;
use crate::rules::api::ScriptModule;
use crate::rules::context::{self, runtime_error};
use crate::store::push::{KEY_PREFIX_LEN, Topic};

/// The push functions.
pub struct PushFunctions;

impl ScriptModule for PushFunctions {
    fn name(&self) -> &'static str {
        "push"
    }

    fn register(&self, engine: &mut Engine) {
        engine
            .register_fn("push", |target: &str, title: &str, body: &str| {
                push(target, title, body, "")
            })
            .register_fn("push", push)
            .register_fn("subscribe_topic", |openid: &str, topic: &str| {
                membership(openid, topic, true)
            })
            .register_fn("unsubscribe_topic", |openid: &str, topic: &str| {
                membership(openid, topic, false)
            })
            .register_fn("topic_info", topic_info)
            .register_fn("topics", all_topics)
            .register_fn("user_topics", user_topics)
            .register_fn("push_key", personal_key)
            .register_fn("reset_push_key", reset_personal_key)
            .register_fn("create_key", create_key)
            .register_fn("push_base_url", base_url);
    }
}

/// The service, or the dry run collecting what would happen.
enum Sink {
    Live(Pushes, tokio::runtime::Handle),
    DryRun(DryRun),
}

fn sink(function: &str) -> Result<Sink, Box<EvalAltResult>> {
    context::with(|ctx| {
        if let Some(dry) = ctx.services.extensions.get::<DryRun>() {
            return Ok(Sink::DryRun(dry.clone()));
        }
        match ctx.services.extensions.get::<Pushes>() {
            Some(pushes) => Ok(Sink::Live(pushes.clone(), ctx.runtime()?.clone())),
            None => Err(runtime_error(format!(
                "{function}: the push service is not available here"
            ))),
        }
    })
}

fn script_error(function: &str, e: PushError) -> Box<EvalAltResult> {
    runtime_error(format!("{function}: {e}"))
}

fn target_of(target: &str) -> PushRequest {
    if let Some(topic) = target.strip_prefix("topic:") {
        PushRequest {
            topic: Some(topic.to_owned()),
            ..PushRequest::default()
        }
    } else {
        let openid = target.strip_prefix("user:").unwrap_or(target);
        PushRequest {
            to: vec![openid.to_owned()],
            ..PushRequest::default()
        }
    }
}

fn push(target: &str, title: &str, body: &str, url: &str) -> Result<String, Box<EvalAltResult>> {
    if target.trim().is_empty() {
        return Err(runtime_error("push: the target is empty"));
    }
    let request = PushRequest {
        title: title.to_owned(),
        body: body.to_owned(),
        url: (!url.is_empty()).then(|| url.to_owned()),
        ..target_of(target)
    };
    match sink("push")? {
        Sink::DryRun(dry) => {
            dry.record(format!("push to {target}: {title:?}"));
            Ok("dry-run".into())
        }
        Sink::Live(pushes, runtime) => runtime
            .block_on(pushes.accept(Sender::Trusted, request, "rule"))
            .map(|accepted| accepted.id)
            .map_err(|e| script_error("push", e)),
    }
}

fn membership(openid: &str, topic: &str, join: bool) -> Result<bool, Box<EvalAltResult>> {
    let function = if join {
        "subscribe_topic"
    } else {
        "unsubscribe_topic"
    };
    match sink(function)? {
        Sink::DryRun(dry) => {
            let verb = if join { "join" } else { "leave" };
            dry.record(format!("{openid} would {verb} topic {topic}"));
            Ok(true)
        }
        Sink::Live(pushes, runtime) => runtime
            .block_on(async {
                if join {
                    pushes.join(topic, openid).await
                } else {
                    pushes.leave(topic, openid).await
                }
            })
            .map_err(|e| script_error(function, e)),
    }
}

fn topic_map(topic: Topic) -> Dynamic {
    let mut map = Map::new();
    map.insert("name".into(), topic.name.into());
    map.insert("open".into(), topic.open.into());
    map.insert("description".into(), topic.description.into());
    map.insert("members".into(), topic.members.into());
    map.into()
}

fn topic_info(name: &str) -> Result<Dynamic, Box<EvalAltResult>> {
    match sink("topic_info")? {
        Sink::DryRun(_) => Ok(Dynamic::UNIT),
        Sink::Live(pushes, runtime) => Ok(runtime
            .block_on(pushes.topic(name))
            .map_err(|e| script_error("topic_info", e))?
            .map_or(Dynamic::UNIT, topic_map)),
    }
}

fn all_topics() -> Result<Array, Box<EvalAltResult>> {
    match sink("topics")? {
        Sink::DryRun(_) => Ok(Array::new()),
        Sink::Live(pushes, runtime) => Ok(runtime
            .block_on(pushes.store().backend().topics())
            .map_err(|e| runtime_error(format!("topics: {e}")))?
            .into_iter()
            .map(topic_map)
            .collect()),
    }
}

fn user_topics(openid: &str) -> Result<Array, Box<EvalAltResult>> {
    match sink("user_topics")? {
        Sink::DryRun(_) => Ok(Array::new()),
        Sink::Live(pushes, runtime) => Ok(runtime
            .block_on(pushes.store().backend().topics_of(openid))
            .map_err(|e| runtime_error(format!("user_topics: {e}")))?
            .into_iter()
            .map(Dynamic::from)
            .collect()),
    }
}

fn personal_key(openid: &str) -> Result<Map, Box<EvalAltResult>> {
    let found = match sink("push_key")? {
        Sink::DryRun(dry) => {
            dry.record(format!("a personal push key for {openid}"));
            PersonalKey::Created("KEY".into())
        }
        Sink::Live(pushes, runtime) => runtime
            .block_on(pushes.personal_key(openid))
            .map_err(|e| script_error("push_key", e))?,
    };
    let mut map = Map::new();
    match found {
        PersonalKey::Created(key) => {
            context::mark_secret();
            map.insert("created".into(), true.into());
            map.insert(
                "prefix".into(),
                key.chars().take(KEY_PREFIX_LEN).collect::<String>().into(),
            );
            map.insert("key".into(), key.into());
        }
        PersonalKey::Exists { prefix } => {
            map.insert("created".into(), false.into());
            map.insert("prefix".into(), prefix.into());
        }
    }
    Ok(map)
}

fn reset_personal_key(openid: &str) -> Result<String, Box<EvalAltResult>> {
    match sink("reset_push_key")? {
        Sink::DryRun(dry) => {
            dry.record(format!("a personal push key for {openid}"));
            Ok("KEY".into())
        }
        Sink::Live(pushes, runtime) => {
            let key = runtime
                .block_on(pushes.reset_personal_key(openid))
                .map_err(|e| script_error("reset_push_key", e))?;
            context::mark_secret();
            Ok(key)
        }
    }
}

fn create_key(target: &str) -> Result<String, Box<EvalAltResult>> {
    let scope = match target.strip_prefix("topic:") {
        Some(topic) => Scope::Topic(topic.to_owned()),
        None => Scope::User(target.strip_prefix("user:").unwrap_or(target).to_owned()),
    };
    match sink("create_key")? {
        Sink::DryRun(dry) => {
            dry.record(format!("a push key for {target}"));
            Ok("KEY".into())
        }
        Sink::Live(pushes, runtime) => {
            let key = runtime
                .block_on(pushes.create_key(&scope, "rule", None))
                .map_err(|e| script_error("create_key", e))?;
            context::mark_secret();
            Ok(key)
        }
    }
}

fn base_url() -> Result<String, Box<EvalAltResult>> {
    match sink("push_base_url")? {
        Sink::DryRun(_) => Ok("http://127.0.0.1:8080".into()),
        Sink::Live(pushes, _) => Ok(pushes.public_base()),
    }
}
