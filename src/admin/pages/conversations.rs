//! Conversations: the inbound log, newest first, with each message's reply, the rule that
//! answered, the latency and the outcome; filtered by user, type and outcome.

use axum::Extension;
use axum::extract::{Query, State};
use maud::{Markup, html};
use serde::Deserialize;

use super::PAGE_ROWS;
use crate::admin::auth::Session;
use crate::admin::html::{self as ui, Nav};
use crate::admin::{Console, Page};
use crate::simulator::trial;
use crate::store::console::{LogFilter, LogRow, MESSAGE_TYPES};

/// The outcomes a message can have.
pub const OUTCOMES: &[&str] = &["answered", "retry", "late", "failed", "blocked", "limited"];
/// The filter's fields.
#[derive(Debug, Default, Deserialize)]
pub struct Filter {
    #[serde(default)]
    user: String,
    #[serde(default, rename = "type")]
    kind: String,
    #[serde(default)]
    outcome: String,
    #[serde(default)]
    before: Option<i64>,
}

/// `GET /admin/conversations`.
pub async fn list(
    State(console): State<Console>,
    Extension(session): Extension<Session>,
    Query(f): Query<Filter>,
) -> Page {
    let filter = LogFilter {
        openid: non_empty(&f.user),
        msg_type: non_empty(&f.kind),
        outcome: non_empty(&f.outcome),
        before_id: f.before,
        limit: PAGE_ROWS,
        ..LogFilter::default()
    };
    let rows = console.store().backend().log_page(&filter).await?;
    let base = console.base();
    let next = (rows.len() == PAGE_ROWS as usize)
        .then(|| rows.last().map(|r| r.id))
        .flatten();
    let body = html! {
        form.inline.filters method="get" action={ (base) "/conversations" } {
            label.grow { "User" input type="text" name="user" value=(f.user) placeholder="OpenID"; }
            label { "Type"
                select name="type" {
                    option value="" { "any" }
                    @for t in MESSAGE_TYPES.iter().chain(trial::EVENT_KINDS) { option value=(t) selected[f.kind == *t] { (t) } }
                }
            }
            label { "Outcome"
                select name="outcome" {
                    option value="" { "any" }
                    @for o in OUTCOMES { option value=(o) selected[f.outcome == *o] { (o) } }
                }
            }
            button type="submit" { "Filter" }
        }
        (log_table(&console, &rows, true))
        @if let Some(before) = next {
            p.pager { a href={ (base) "/conversations" (ui::query(&[("user", f.user.as_str()), ("type", f.kind.as_str()), ("outcome", f.outcome.as_str()), ("before", before.to_string().as_str())])) } { "Older →" } }
        }
    };
    Ok(ui::page(
        &console,
        &session,
        "Conversations",
        Nav::Conversations,
        body,
    ))
}

fn non_empty(text: &str) -> Option<String> {
    let t = text.trim();
    (!t.is_empty()).then(|| t.to_owned())
}

/// Log rows as a table; `with_user` adds the user column.
pub fn log_table(console: &Console, rows: &[LogRow], with_user: bool) -> Markup {
    let base = console.base();
    html! {
        @if rows.is_empty() {
            p.muted { "No messages." }
        } @else {
            div.scroll { table.log {
                thead { tr {
                    th { "Time" }
                    @if with_user { th { "User" } }
                    th { "Message" } th { "Reply" } th { "Rule" } th.num { "ms" } th { "Outcome" }
                } }
                tbody {
                    @for r in rows {
                        tr {
                            td.nowrap { (console.time(r.received_at)) }
                            @if with_user {
                                td { a href={ (base) "/followers/" (ui::segment(&r.openid)) } { code { (r.openid) } } }
                            }
                            td {
                                span.tag { (r.event.as_deref().unwrap_or(&r.msg_type)) }
                                " " (r.summary.as_deref().unwrap_or(""))
                            }
                            td {
                                span.tag { (r.reply_type) }
                                " " (r.reply.as_deref().unwrap_or(""))
                            }
                            td { @if let Some(rule) = &r.rule { code { (rule) } } }
                            td.num { @if let Some(ms) = r.latency_ms { (ms) } }
                            td { span class={ "outcome " (outcome_class(&r.outcome)) } { (r.outcome) } }
                        }
                    }
                }
            } }
        }
    }
}

/// A CSS class for an outcome (only known ones; anything else is plain).
fn outcome_class(outcome: &str) -> &'static str {
    match outcome {
        "answered" => "ok",
        "retry" | "late" => "warn",
        "failed" => "bad",
        "blocked" | "limited" => "muted",
        _ => "",
    }
}
