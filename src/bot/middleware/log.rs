//! The inbound message log: one row per message, with a summary, the reply (its type and
//! one line of it), the rule that made it, how long it took, and the outcome: `answered`,
//! `late` (the deadline passed; the reply followed separately), `failed`, `blocked` or
//! `limited`. WeChat's retries, answered by `dedup` before they reach this layer, are logged
//! by `dedup` (outcome `retry`) when this layer is on. Rows are written in batches, off the
//! hot path, and kept `[bot] log_retention_days`.
//!
//! A reply that carries a secret (a push key just made) is never written: its row says
//! [`WITHHELD`] instead.

use std::time::{Duration, Instant};

use crate::bot::{BotError, BoxFuture, Context, Middleware, Next, Outcome, Trail};
use crate::store::{Deferred, LogEntry, Store};
use crate::support::clock::unix_now;
use crate::wechat::message::{Event, MessageKind};
use crate::wechat::{Message, Reply};

/// Longest summary (and reply) kept, in characters.
const SUMMARY_CHARS: usize = 200;
/// What the log says for a reply that carries a secret.
pub const WITHHELD: &str = "(withheld: the reply carries a secret)";

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
            let started = Instant::now();
            let result = next.run(ctx).await;
            let took = started.elapsed();
            let outcome = match (&result, trail.outcome()) {
                (_, Some(set)) => set,
                (Err(_), None) => Outcome::Failed,
                (Ok(_), None) if trail.is_late() => Outcome::Late,
                (Ok(_), None) => Outcome::Answered,
            };
            store.defer(Deferred::Log(entry(
                &message,
                result.as_ref().ok(),
                outcome,
                &trail,
                took,
            )));
            result
        })
    }
}

/// The log row for a message answered with `reply` (`None`: it failed, and `success` went
/// out) after `took`; the rule that replied comes from the trail.
pub fn entry(
    m: &Message,
    reply: Option<&Reply>,
    outcome: Outcome,
    trail: &Trail,
    took: Duration,
) -> LogEntry {
    LogEntry {
        received_at: unix_now(),
        openid: m.from.as_str().to_owned(),
        msg_type: m.kind.msg_type().to_owned(),
        event: m.event().map(|e| e.name().to_ascii_lowercase()),
        msg_id: m.msg_id.map(|id| id.to_string()),
        summary: summary(m).map(|s| s.chars().take(SUMMARY_CHARS).collect()),
        reply_type: reply.map_or("success", Reply::msg_type).to_owned(),
        outcome: outcome.as_str().to_owned(),
        rule: trail.replied_by().map(|r| r.to_string()),
        latency_ms: Some(i64::try_from(took.as_millis()).unwrap_or(i64::MAX)),
        reply: reply.and_then(Reply::summary).map(|line| {
            if trail.is_secret() {
                WITHHELD.to_owned()
            } else {
                line.chars().take(SUMMARY_CHARS).collect()
            }
        }),
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
