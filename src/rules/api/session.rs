//! Per-user session key-values: `session_get(key)`, `session_get(key, default)`,
//! `session_set(key, value)`, `session_set(key, value, ttl_secs)`, `session_delete(key)`,
//! `session_keys()`. Always the current user's. Values are anything JSON can hold (strings,
//! numbers, booleans, arrays, maps); they are loaded on first use and written when the
//! message's rules finish without error, so a failed run leaves the session as it was.

use std::collections::HashMap;

use rhai::{Array, Dynamic, Engine, EvalAltResult, INT};

use super::ScriptModule;
use crate::rules::context::{self, ScriptContext, runtime_error};
use crate::store::{SessionChange, Store, StoreError};
use crate::support::clock::unix_now;

/// Longest key.
pub const MAX_KEY_LEN: usize = 128;
/// Largest value, as JSON.
pub const MAX_VALUE_BYTES: usize = 64 * 1024;
/// Most keys one user's session holds.
pub const MAX_KEYS: usize = 256;

/// The session functions.
pub struct Sessions;

impl ScriptModule for Sessions {
    fn name(&self) -> &'static str {
        "session"
    }

    fn register(&self, engine: &mut Engine) {
        engine
            .register_fn("session_get", |key: &str| get(key, Dynamic::UNIT))
            .register_fn("session_get", get)
            .register_fn("session_set", |key: &str, value: Dynamic| {
                set(key, value, None)
            })
            .register_fn("session_set", |key: &str, value: Dynamic, ttl_secs: INT| {
                if ttl_secs <= 0 {
                    return Err(runtime_error("session_set: ttl_secs must be positive"));
                }
                set(key, value, Some(ttl_secs))
            })
            .register_fn("session_delete", delete)
            .register_fn("session_keys", keys);
    }
}

fn check_key(key: &str) -> Result<(), Box<EvalAltResult>> {
    if key.is_empty() || key.len() > MAX_KEY_LEN {
        return Err(runtime_error(format!(
            "session keys are 1 to {MAX_KEY_LEN} bytes"
        )));
    }
    Ok(())
}

/// The user's session as stored now (expired keys left out): what a run starts from. Loaded
/// before a run whose rules read it, or on first use.
pub async fn load(store: &Store, openid: &str) -> Result<HashMap<String, Dynamic>, StoreError> {
    let rows = store.session(openid).await?;
    Ok(rows
        .into_iter()
        .filter_map(|(k, json)| serde_json::from_str::<Dynamic>(&json).ok().map(|v| (k, v)))
        .collect())
}

/// The user's session, loading it on first use (an inline run yields for it instead).
fn loaded(ctx: &mut ScriptContext) -> Result<&mut HashMap<String, Dynamic>, Box<EvalAltResult>> {
    if ctx.session.is_none() {
        let map = match &ctx.services.store {
            Some(store) => {
                if context::inline() {
                    return Err(context::yield_for(context::Need::Session));
                }
                ctx.runtime()?
                    .block_on(load(store, &ctx.openid))
                    .map_err(|e| runtime_error(format!("session unavailable: {e}")))?
            }
            None => HashMap::new(),
        };
        ctx.session = Some(map);
    }
    Ok(ctx.session.get_or_insert_with(HashMap::new))
}

fn get(key: &str, default: Dynamic) -> Result<Dynamic, Box<EvalAltResult>> {
    check_key(key)?;
    context::with(|ctx| Ok(loaded(ctx)?.get(key).cloned().unwrap_or(default)))
}

fn set(key: &str, value: Dynamic, ttl_secs: Option<INT>) -> Result<(), Box<EvalAltResult>> {
    check_key(key)?;
    if value.is_unit() {
        return delete(key);
    }
    if !json_safe(&value, 0) {
        return Err(runtime_error(
            "session values must be strings, numbers, booleans, arrays or maps of those",
        ));
    }
    let json = serde_json::to_string(&value).map_err(|_| {
        runtime_error("session values must be strings, numbers, booleans, arrays or maps of those")
    })?;
    if json.len() > MAX_VALUE_BYTES {
        return Err(runtime_error(format!(
            "session value too large ({} bytes; at most {MAX_VALUE_BYTES})",
            json.len()
        )));
    }
    let expires_at = ttl_secs.map(|ttl| unix_now().saturating_add(ttl));
    context::with(|ctx| {
        let session = loaded(ctx)?;
        if !session.contains_key(key) && session.len() >= MAX_KEYS {
            return Err(runtime_error(format!(
                "a session holds at most {MAX_KEYS} keys; delete some first"
            )));
        }
        session.insert(key.to_owned(), value);
        forget_change(ctx, key);
        ctx.session_changes.push(SessionChange::Set {
            key: key.to_owned(),
            value: json,
            expires_at,
        });
        Ok(())
    })
}

/// Whether `value` survives JSON and back unchanged: no replies, function pointers or other
/// custom types (they would serialize as their names), no NaN or infinity (they become null).
fn json_safe(value: &Dynamic, depth: usize) -> bool {
    if depth > 64 {
        return false;
    }
    if value.is_unit() || value.is_bool() || value.is_int() || value.is_string() || value.is_char()
    {
        return true;
    }
    if let Ok(f) = value.as_float() {
        return f.is_finite();
    }
    if let Some(array) = value.read_lock::<rhai::Array>() {
        return array.iter().all(|v| json_safe(v, depth + 1));
    }
    if let Some(map) = value.read_lock::<rhai::Map>() {
        return map.values().all(|v| json_safe(v, depth + 1));
    }
    false
}

fn delete(key: &str) -> Result<(), Box<EvalAltResult>> {
    check_key(key)?;
    context::with(|ctx| {
        loaded(ctx)?.remove(key);
        forget_change(ctx, key);
        ctx.session_changes.push(SessionChange::Delete {
            key: key.to_owned(),
        });
        Ok(())
    })
}

/// Drops an earlier change to `key` in this run: only the last one is written.
fn forget_change(ctx: &mut ScriptContext, key: &str) {
    ctx.session_changes.retain(|c| match c {
        SessionChange::Set { key: k, .. } | SessionChange::Delete { key: k } => k != key,
    });
}

fn keys() -> Result<Array, Box<EvalAltResult>> {
    context::with(|ctx| {
        let mut keys: Vec<String> = loaded(ctx)?.keys().cloned().collect();
        keys.sort();
        Ok(keys.into_iter().map(Dynamic::from).collect())
    })
}
