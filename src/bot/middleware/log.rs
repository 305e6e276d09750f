//! The inbound message log: one row per message, with a summary, the reply's type and the
//! outcome: `answered`, `late` (the deadline passed; the reply followed separately),
//! `failed`, `blocked` or `limited`. WeChat's retries, answered by `dedup` before they reach
//! this layer, are logged by `dedup` (outcome `retry`) when this layer is on. Rows are written
//! in batches, off the hot path, and kept `[bot] log_retention_days`.

use crate::bot::{BotError, BoxFuture, Context, Middleware, Next, Outcome};
use crate::store::{Deferred, LogEntry, Store};
use crate::support::clock::unix_now;
use crate::wechat::message::{Event, MessageKind};
use crate::wechat::{Message, Reply};

/// Longest summary kept, in characters.
const SUMMARY_CHARS: usize = 200;

/// The `log` layer.
#[derive(Debug, Clone)]
pub struct InboundLog {
    store: Store,
}

impl InboundLog {
    /// Logs to `store`.
    pub fn new(store: Store) -> Self {
        Self { store }
    }
}

impl Middleware for InboundLog {
    fn call(&self, ctx: Context, next: Next) -> BoxFuture<Result<Reply, BotError>> {
        let store = self.store.clone();
        Box::pin(async move {
            let message = ctx.message.clone();
            let trail = ctx.trail.clone();
            let result = next.run(ctx).await;
            let outcome = match (&result, trail.outcome()) {
                (_, Some(set)) => set,
                (Err(_), None) => Outcome::Failed,
                (Ok(_), None) if trail.is_late() => Outcome::Late,
                (Ok(_), None) => Outcome::Answered,
            };
            let reply_type = match &result {
                Ok(reply) => reply.msg_type(),
                Err(_) => "success",
            };
            store.defer(Deferred::Log(entry(&message, reply_type, outcome)));
            result
        })
    }
}

/// The log row for a message.
pub fn entry(m: &Message, reply_type: &str, outcome: Outcome) -> LogEntry {
    LogEntry {
        received_at: unix_now(),
        openid: m.from.as_str().to_owned(),
        msg_type: m.kind.msg_type().to_owned(),
        event: m.event().map(|e| e.name().to_ascii_lowercase()),
        msg_id: m.msg_id.map(|id| id.to_string()),
        summary: summary(m).map(|s| s.chars().take(SUMMARY_CHARS).collect()),
        reply_type: reply_type.to_owned(),
        outcome: outcome.as_str().to_owned(),
    }
}

fn summary(m: &Message) -> Option<String> {
    match &m.kind {
        MessageKind::Text(t) => Some(t.content.clone()),
        MessageKind::Location(l) => Some(format!("{} ({}, {})", l.label, l.latitude, l.longitude)),
        MessageKind::Link(l) => Some(l.url.clone()),
        MessageKind::Event(Event::View { url, .. }) => Some(url.clone()),
        MessageKind::Event(_) => m.event_key().map(str::to_owned),
        _ => m.media_id().map(|id| id.to_string()),
    }
}
