//! Followers: a search (OpenID prefix, scene, topic, the app a follower is bound to, following
//! or not), and each follower's page: what WeChat says of them (when credentials are set),
//! their topics, bindings, session keys and recent conversation; block and unblock.

use axum::Extension;
use axum::extract::{Path, Query, State};
use axum::response::{IntoResponse, Redirect};
use maud::html;
use serde::Deserialize;

use super::PAGE_ROWS;
use super::conversations::log_table;
use crate::admin::auth::Session;
use crate::admin::html::{self as ui, Nav};
use crate::admin::{AdminError, Console, Page};
use crate::store::console::{FollowerFilter, LogFilter};
use crate::support::clock::unix_now;

/// The search's fields.
#[derive(Debug, Default, Deserialize)]
pub struct Search {
    #[serde(default)]
    q: String,
    #[serde(default)]
    scene: String,
    #[serde(default)]
    topic: String,
    #[serde(default)]
    app: String,
    #[serde(default)]
    following: String,
    #[serde(default)]
    after: String,
}

/// `GET /admin/followers`.
pub async fn list(
    State(console): State<Console>,
    Extension(session): Extension<Session>,
    Query(s): Query<Search>,
) -> Page {
    let text = |v: &str| (!v.trim().is_empty()).then(|| v.trim().to_owned());
    let after = s.after.split_once(':').and_then(|(seen, openid)| {
        seen.parse::<i64>()
            .ok()
            .map(|seen| (seen, openid.to_owned()))
    });
    let filter = FollowerFilter {
        openid: text(&s.q),
        scene: text(&s.scene),
        topic: text(&s.topic),
        app_id: s.app.trim().parse().ok(),
        subscribed: match s.following.as_str() {
            "yes" => Some(true),
            "no" => Some(false),
            _ => None,
        },
        after,
        limit: PAGE_ROWS,
    };
    let backend = console.store().backend();
    let rows = backend.followers_page(&filter).await?;
    let total = backend.follower_count().await?;
    let apps = console.inner.apps.list().await?;
    let base = console.base();
    let next = (rows.len() == PAGE_ROWS as usize)
        .then(|| {
            rows.last()
                .map(|f| format!("{}:{}", f.last_seen_at.unwrap_or(0), f.openid))
        })
        .flatten();
    let now = unix_now();
    let body = html! {
        p.muted { (total) " following now." }
        form.inline.filters method="get" action={ (base) "/followers" } {
            label.grow { "OpenID" input type="search" name="q" value=(s.q) placeholder="starts with"; }
            label { "Scene" input type="text" name="scene" value=(s.scene); }
            label { "Topic" input type="text" name="topic" value=(s.topic); }
            label { "Bound to"
                select name="app" {
                    option value="" { "any app or none" }
                    @for a in &apps { option value=(a.id) selected[s.app == a.id.to_string()] { (a.name) } }
                }
            }
            label { "Following"
                select name="following" {
                    option value="" { "either" }
                    option value="yes" selected[s.following == "yes"] { "yes" }
                    option value="no" selected[s.following == "no"] { "no" }
                }
            }
            button type="submit" { "Search" }
        }
        @if rows.is_empty() {
            p.muted { "No followers match." }
        } @else {
            div.scroll { table {
                thead { tr { th { "OpenID" } th { "Following" } th { "Scene" } th { "Followed" } th { "Last seen" } } }
                tbody {
                    @for f in &rows {
                        tr {
                            td { a href={ (base) "/followers/" (ui::segment(&f.openid)) } { code { (f.openid) } } }
                            td { @if f.subscribed { "yes" } @else { span.muted { "no" } } }
                            td { (f.scene.as_deref().unwrap_or("")) }
                            td.nowrap { @if let Some(t) = f.last_subscribed_at { (console.time(t)) } }
                            td.nowrap { @if let Some(t) = f.last_seen_at { (ui::ago(now - t)) " ago" } }
                        }
                    }
                }
            } }
        }
        @if let Some(after) = next {
            p.pager { a href={ (base) "/followers" (ui::query(&[("q", s.q.as_str()), ("scene", s.scene.as_str()), ("topic", s.topic.as_str()), ("app", s.app.as_str()), ("following", s.following.as_str()), ("after", after.as_str())])) } { "More →" } }
        }
    };
    Ok(ui::page(
        &console,
        &session,
        "Followers",
        Nav::Followers,
        body,
    ))
}

/// `GET /admin/followers/{openid}`.
pub async fn show(
    State(console): State<Console>,
    Extension(session): Extension<Session>,
    Path(openid): Path<String>,
) -> Page {
    let backend = console.store().backend();
    let follower = backend.follower(&openid).await?;
    let recent = backend
        .log_page(&LogFilter {
            openid: Some(openid.clone()),
            limit: 30,
            ..LogFilter::default()
        })
        .await?;
    if follower.is_none() && recent.is_empty() {
        return Err(AdminError::NotFound(format!(
            "huixin has never heard from {openid:?}"
        )));
    }
    let topics = backend.topics_of(&openid).await?;
    let bindings = console.inner.apps.bindings_of(&openid).await?;
    let apps = console.inner.apps.list().await?;
    let app_name = |id: i64| {
        apps.iter()
            .find(|a| a.id == id)
            .map_or_else(|| format!("#{id}"), |a| a.name.clone())
    };
    let session_keys = console.store().session(&openid).await?;
    let blocked = backend.blocked_users().await?.contains(&openid)
        || console.config().bot.blocklist.contains(&openid);
    let profile = match &console.inner.client {
        Some(client) => Some(client.user_info(&openid).await.map_err(|e| e.to_string())),
        None => None,
    };
    let base = console.base();
    let me = format!("{base}/followers/{}", ui::segment(&openid));
    let body = html! {
        p { code { (openid) } }
        div.cards {
            div.card {
                h2 { "Here" }
                @if let Some(f) = &follower {
                    dl {
                        dt { "Following" } dd { @if f.subscribed { "yes" } @else { "no" } }
                        dt { "Scene" } dd { (f.scene.as_deref().unwrap_or("—")) }
                        dt { "First followed" } dd { (f.first_subscribed_at.map(|t| console.time(t)).unwrap_or_default()) }
                        dt { "Last followed" } dd { (f.last_subscribed_at.map(|t| console.time(t)).unwrap_or_default()) }
                        dt { "Unfollowed" } dd { (f.unsubscribed_at.map(|t| console.time(t)).unwrap_or_default()) }
                        dt { "Last seen" } dd { (f.last_seen_at.map(|t| console.time(t)).unwrap_or_default()) }
                    }
                }
                form method="post" action={ (me) @if blocked { "/unblock" } @else { "/block" } } {
                    (ui::csrf_field(&session))
                    @if blocked {
                        p.flash.error { "Blocked: their messages are ignored." }
                        button type="submit" { "Unblock" }
                    } @else {
                        button.danger type="submit" { "Block" }
                    }
                }
            }
            div.card {
                h2 { "WeChat's profile" }
                @match &profile {
                    None => { p.muted { "Needs [wechat] app_id and app_secret." } }
                    Some(Err(e)) => { p.flash.error { (e) } }
                    Some(Ok(u)) => {
                        dl {
                            dt { "Nickname" } dd { (u.nickname.as_deref().unwrap_or("—")) }
                            dt { "Remark" } dd { (u.remark.as_deref().unwrap_or("—")) }
                            dt { "Language" } dd { (u.language.as_deref().unwrap_or("—")) }
                            dt { "Subscribed" } dd { @if u.subscribe == 1 { "yes" } @else { "no" } }
                            dt { "UnionID" } dd { (u.unionid.as_deref().unwrap_or("—")) }
                        }
                    }
                }
            }
            div.card {
                h2 { "Topics" }
                @if topics.is_empty() { p.muted { "None." } }
                ul { @for t in &topics { li { a href={ (base) "/followers" (ui::query(&[("topic", t)])) } { (t) } } } }
                h2 { "Bindings" }
                @if bindings.is_empty() { p.muted { "None." } }
                ul { @for b in &bindings { li { (app_name(b.app_id)) ": " code { (b.uid) } " " span.tag { (b.state) } } } }
                h2 { "Session" }
                @if session_keys.is_empty() { p.muted { "No keys." } }
                dl { @for (k, v) in &session_keys { dt { code { (k) } } dd { code { (v) } } } }
            }
        }
        h2 { "Recent conversation" }
        (log_table(&console, &recent, false))
        p { a href={ (base) "/conversations" (ui::query(&[("user", &openid)])) } { "All their messages →" } }
    };
    Ok(ui::page(
        &console,
        &session,
        "Follower",
        Nav::Followers,
        body,
    ))
}

/// `POST /admin/followers/{openid}/block`.
pub async fn block(State(console): State<Console>, Path(openid): Path<String>) -> Page {
    console
        .store()
        .block_user(&openid, "blocked in the console", unix_now())
        .await?;
    tracing::info!(openid = %openid, "console: user blocked");
    Ok(Redirect::to(&format!(
        "{}/followers/{}",
        console.base(),
        ui::segment(&openid)
    ))
    .into_response())
}

/// `POST /admin/followers/{openid}/unblock`.
pub async fn unblock(State(console): State<Console>, Path(openid): Path<String>) -> Page {
    console.store().unblock_user(&openid).await?;
    tracing::info!(openid = %openid, "console: user unblocked");
    Ok(Redirect::to(&format!(
        "{}/followers/{}",
        console.base(),
        ui::segment(&openid)
    ))
    .into_response())
}
