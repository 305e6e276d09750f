//! Pushes: the history with each push's recipients by state, a push's page with every
//! recipient, re-sending to the failed ones, and revoking (deleting the push: its detail page
//! goes, and recipients not yet sent to get nothing).

use axum::Extension;
use axum::extract::{Path, Query, State};
use axum::response::{IntoResponse, Redirect};
use maud::html;
use serde::Deserialize;

use super::PAGE_ROWS;
use crate::admin::auth::Session;
use crate::admin::html::{self as ui, Nav};
use crate::admin::{AdminError, Console, Page};
use crate::push::keys::valid_push_id;
use crate::store::push::PushRow;

#[derive(Debug, Default, Deserialize)]
pub struct ListQuery {
    #[serde(default)]
    before: Option<i64>,
    #[serde(default)]
    done: String,
}

/// `GET /admin/pushes`.
pub async fn list(
    State(console): State<Console>,
    Extension(session): Extension<Session>,
    Query(q): Query<ListQuery>,
) -> Page {
    let rows = console
        .store()
        .backend()
        .push_page(q.before, PAGE_ROWS)
        .await?;
    let base = console.base();
    let next = (rows.len() == PAGE_ROWS as usize)
        .then(|| rows.last().map(|p| p.push.seq))
        .flatten();
    let body = html! {
        @if q.done == "revoked" { (ui::flash("ok", "The push was revoked.")) }
        @if rows.is_empty() {
            p.muted { "No pushes yet." }
        } @else {
            div.scroll { table {
                thead { tr { th { "Time" } th { "Title" } th { "To" } th { "From" }
                    th.num { "pending" } th.num { "sent" } th.num { "delivered" } th.num { "failed" } } }
                tbody {
                    @for p in &rows {
                        tr {
                            td.nowrap { (console.time(p.push.created_at)) }
                            td { a href={ (base) "/pushes/" (p.push.id) } { (title(&p.push)) } }
                            td { code { (p.push.target) } }
                            td { (p.push.source) }
                            td.num { (p.pending + p.sending) }
                            td.num { (p.sent) }
                            td.num { (p.delivered) }
                            td.num { @if p.failed > 0 { strong.bad { (p.failed) } } @else { "0" } }
                        }
                    }
                }
            } }
        }
        @if let Some(before) = next {
            p.pager { a href={ (base) "/pushes" (ui::query(&[("before", before.to_string().as_str())])) } { "Older →" } }
        }
    };
    Ok(ui::page(&console, &session, "Pushes", Nav::Pushes, body))
}

fn title(p: &PushRow) -> &str {
    if p.title.is_empty() {
        "(untitled)"
    } else {
        &p.title
    }
}

async fn find(console: &Console, id: &str) -> Result<PushRow, AdminError> {
    let found = if valid_push_id(id) {
        console.store().backend().push_by_id(id).await?
    } else {
        None
    };
    found.ok_or_else(|| AdminError::NotFound(format!("no push {id:?}")))
}

/// `GET /admin/pushes/{id}`.
pub async fn show(
    State(console): State<Console>,
    Extension(session): Extension<Session>,
    Path(id): Path<String>,
    Query(q): Query<ListQuery>,
) -> Page {
    let push = find(&console, &id).await?;
    let recipients = console.store().backend().push_recipients(push.seq).await?;
    let failed = recipients.iter().filter(|r| r.state == "failed").count();
    let base = console.base();
    let me = format!("{base}/pushes/{}", push.id);
    let body = html! {
        @if q.done == "resent" { (ui::flash("ok", "The failed recipients are queued again.")) }
        dl.wide {
            dt { "Title" } dd { (title(&push)) }
            dt { "Accepted" } dd { (console.time(push.created_at)) " from " (push.source) }
            dt { "To" } dd { code { (push.target) } }
            dt { "Detail page" } dd { a href=(console.inner.pushes.detail_url(&push.id)) rel="noopener" target="_blank" { (console.inner.pushes.detail_url(&push.id)) } }
            @if let Some(url) = &push.url { dt { "Link" } dd { code { (url) } } }
        }
        details { summary { "Body (markdown)" } pre { (push.body) } }
        div.buttons {
            @if failed > 0 {
                form method="post" action={ (me) "/resend" } {
                    (ui::csrf_field(&session))
                    button type="submit" { "Re-send to the " (failed) " failed" }
                }
            }
            form method="post" action={ (me) "/revoke" } {
                (ui::csrf_field(&session))
                button.danger type="submit" { "Revoke" }
            }
        }
        h2 { "Recipients" }
        div.scroll { table #recipients {
            thead { tr { th { "OpenID" } th { "State" } th.num { "Attempts" } th { "Error" } th { "Updated" } } }
            tbody {
                @for r in &recipients {
                    tr {
                        td { a href={ (base) "/followers/" (ui::segment(&r.openid)) } { code { (r.openid) } } }
                        td { span class={ "state " (r.state) } { (r.state) } }
                        td.num { (r.attempts) }
                        td { (r.error.as_deref().unwrap_or("")) }
                        td.nowrap { (console.time(r.updated_at)) }
                    }
                }
            }
        } }
    };
    Ok(ui::page(&console, &session, "Push", Nav::Pushes, body))
}

/// `POST /admin/pushes/{id}/resend`.
pub async fn resend(State(console): State<Console>, Path(id): Path<String>) -> Page {
    let push = find(&console, &id).await?;
    let n = console.inner.pushes.retry_failed(push.seq).await?;
    tracing::info!(push = %push.id, recipients = n, "console: failed recipients re-sent");
    Ok(Redirect::to(&format!(
        "{}/pushes/{}?done=resent",
        console.base(),
        push.id
    ))
    .into_response())
}

/// `POST /admin/pushes/{id}/revoke`.
pub async fn revoke(State(console): State<Console>, Path(id): Path<String>) -> Page {
    let push = find(&console, &id).await?;
    console.store().backend().push_delete(push.seq).await?;
    tracing::info!(push = %push.id, "console: push revoked");
    Ok(Redirect::to(&format!("{}/pushes?done=revoked", console.base())).into_response())
}
