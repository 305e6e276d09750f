//! Keys, topics and apps: create them (a new key or app token is shown once, on the page that
//! answers the form, never again), revoke them, and a topic's join QR code as an image.

use axum::Extension;
use axum::extract::{Path, Query, State};
use axum::http::header;
use axum::response::{IntoResponse, Redirect};
use maud::{Markup, html};
use serde::Deserialize;

use crate::admin::auth::Session;
use crate::admin::html::{self as ui, Nav};
use crate::admin::{AdminError, Console, Page};
use crate::apps::AppSpec;
use crate::outbound::qrcode::Scene;
use crate::push::Scope;
use crate::push::bot::TOPIC_SCENE_PREFIX;

#[derive(Debug, Default, Deserialize)]
pub struct Done {
    #[serde(default)]
    done: String,
}

/// `GET /admin/keys`.
pub async fn page(
    State(console): State<Console>,
    Extension(session): Extension<Session>,
    Query(done): Query<Done>,
) -> Page {
    let notice = match done.done.as_str() {
        "revoked" => Some(ui::flash("ok", "Revoked.")),
        "topic" => Some(ui::flash("ok", "Topic created.")),
        "app-revoked" => Some(ui::flash("ok", "App revoked: its token stopped working.")),
        _ => None,
    };
    render(&console, &session, notice).await
}

async fn render(console: &Console, session: &Session, notice: Option<Markup>) -> Page {
    let keys = console.inner.pushes.keys().await?;
    let topics = console.store().backend().topics().await?;
    let apps = console.inner.apps.list().await?;
    let base = console.base();
    let body = html! {
        @if let Some(n) = notice { (n) }
        section {
            h2 { "Push keys" }
            form.inline method="post" action={ (base) "/keys" } {
                (ui::csrf_field(session))
                label { "For"
                    select name="scope" {
                        option value="admin" { "any follower or topic (admin)" }
                        option value="user" { "one follower" }
                        option value="topic" { "a topic" }
                    }
                }
                label.grow { "OpenID or topic" input type="text" name="target" placeholder="for one follower or a topic"; }
                label.grow { "Label" input type="text" name="label" maxlength="100"; }
                button type="submit" { "Create key" }
            }
            div.scroll { table {
                thead { tr { th { "Key" } th { "For" } th { "Label" } th { "Created" } th { "" } } }
                tbody {
                    @for k in &keys {
                        tr.revoked[k.revoked_at.is_some()] {
                            td { code { (k.prefix) "…" } }
                            td { code { (k.scope.describe()) } }
                            td { (k.label) }
                            td { (console.time(k.created_at)) }
                            td {
                                @if let Some(at) = k.revoked_at { "revoked " (console.time(at)) }
                                @else if !matches!(k.scope, Scope::App(_)) {
                                    form method="post" action={ (base) "/keys/" (ui::segment(&k.prefix)) "/revoke" } {
                                        (ui::csrf_field(session))
                                        button.danger type="submit" { "Revoke" }
                                    }
                                }
                            }
                        }
                    }
                }
            } }
        }
        section {
            h2 { "Topics" }
            form.inline method="post" action={ (base) "/topics" } {
                (ui::csrf_field(session))
                label { "Name" input type="text" name="name" pattern="[-_A-Za-z0-9]{1,64}" required; }
                label.grow { "Description" input type="text" name="description" maxlength="200"; }
                label.check { input type="checkbox" name="open" value="1"; " open (joined by chat command)" }
                button type="submit" { "Create topic" }
            }
            div.scroll { table {
                thead { tr { th { "Topic" } th { "#" } th { "Members" } th { "Open" } th { "Description" } th { "Join code" } } }
                tbody {
                    @for t in &topics {
                        tr {
                            td { a href={ (base) "/followers" (ui::query(&[("topic", &t.name)])) } { (t.name) } }
                            td { (t.num) }
                            td { (t.members) }
                            td { @if t.open { "yes" } @else { "no" } }
                            td { (t.description) }
                            td { a href={ (base) "/topics/" (ui::segment(&t.name)) "/qrcode.png" } { "QR code" } }
                        }
                    }
                }
            } }
        }
        section {
            h2 { "Apps" }
            form.inline method="post" action={ (base) "/apps" } {
                (ui::csrf_field(session))
                label { "Name" input type="text" name="name" required maxlength="64"; }
                label.grow { "Callback URL" input type="url" name="callback_url" placeholder="https://example.com/huixin"; }
                label { "Format"
                    select name="format" { option value="huixin" { "huixin" } option value="wxpusher" { "WxPusher" } }
                }
                label.check { input type="checkbox" name="reply" value="1"; " answers messages" }
                button type="submit" { "Create app" }
            }
            div.scroll { table {
                thead { tr { th { "App" } th { "Callback" } th { "Format" } th { "Created" } th { "" } } }
                tbody {
                    @for a in &apps {
                        tr.revoked[a.revoked_at.is_some()] {
                            td { (a.name) " " span.muted { "#" (a.id) } }
                            td { code { (a.callback_url) } }
                            td { (a.callback_format) @if a.replies { ", answers" } }
                            td { (console.time(a.created_at)) }
                            td {
                                @if let Some(at) = a.revoked_at { "revoked " (console.time(at)) }
                                @else {
                                    form method="post" action={ (base) "/apps/" (a.id) "/revoke" } {
                                        (ui::csrf_field(session))
                                        button.danger type="submit" { "Revoke" }
                                    }
                                }
                            }
                        }
                    }
                }
            } }
        }
    };
    Ok(ui::page(
        console,
        session,
        "Keys, topics and apps",
        Nav::Keys,
        body,
    ))
}

/// A secret shown once, above the page.
fn shown_once(what: &str, secret: &str) -> Markup {
    html! {
        div.flash.ok.secret role="status" {
            p { (what) " Copy it now: it is stored only as a hash and cannot be shown again." }
            input.secret type="text" readonly value=(secret) aria-label="the new secret";
        }
    }
}

#[derive(Debug, Deserialize)]
pub struct KeyForm {
    #[serde(default)]
    scope: String,
    #[serde(default)]
    target: String,
    #[serde(default)]
    label: String,
}

/// `POST /admin/keys`.
pub async fn create_key(
    State(console): State<Console>,
    Extension(session): Extension<Session>,
    axum::Form(form): axum::Form<KeyForm>,
) -> Page {
    let target = form.target.trim().to_owned();
    let scope = match form.scope.as_str() {
        "admin" => Scope::Admin,
        "user" if !target.is_empty() => Scope::User(target),
        "topic" if !target.is_empty() => Scope::Topic(target),
        "user" | "topic" => {
            return Err(AdminError::Invalid(format!(
                "a {} key needs the {}",
                form.scope,
                if form.scope == "user" {
                    "follower's OpenID"
                } else {
                    "topic's name"
                }
            )));
        }
        other => return Err(AdminError::Invalid(format!("unknown key scope {other:?}"))),
    };
    let label = form.label.chars().take(100).collect::<String>();
    let key = console
        .inner
        .pushes
        .create_key(&scope, &label, None)
        .await?;
    tracing::info!(scope = %scope.describe(), "console: push key created");
    render(
        &console,
        &session,
        Some(shown_once(
            &format!("New key for {}.", scope.describe()),
            &key,
        )),
    )
    .await
}

/// `POST /admin/keys/{prefix}/revoke`.
pub async fn revoke_key(State(console): State<Console>, Path(prefix): Path<String>) -> Page {
    let n = console.inner.pushes.revoke(&prefix).await?;
    if n == 0 {
        return Err(AdminError::NotFound(format!(
            "no live key starts with {prefix:?}"
        )));
    }
    tracing::info!(keys = n, "console: push key revoked");
    Ok(Redirect::to(&format!("{}/keys?done=revoked", console.base())).into_response())
}

#[derive(Debug, Deserialize)]
pub struct TopicForm {
    #[serde(default)]
    name: String,
    #[serde(default)]
    description: String,
    #[serde(default)]
    open: Option<String>,
}

/// `POST /admin/topics`.
pub async fn create_topic(
    State(console): State<Console>,
    axum::Form(form): axum::Form<TopicForm>,
) -> Page {
    let created = console
        .inner
        .pushes
        .create_topic(
            form.name.trim(),
            form.open.is_some(),
            form.description.trim(),
        )
        .await?;
    if !created {
        return Err(AdminError::Invalid(format!(
            "a topic {:?} exists",
            form.name.trim()
        )));
    }
    Ok(Redirect::to(&format!("{}/keys?done=topic", console.base())).into_response())
}

/// `GET /admin/topics/{name}/qrcode.png`: the permanent code that joins the topic (scene
/// `topic:NAME`), drawn by huixin; WeChat makes it once per process and topic.
pub async fn topic_qrcode(State(console): State<Console>, Path(name): Path<String>) -> Page {
    if console.inner.pushes.topic(&name).await?.is_none() {
        return Err(AdminError::NotFound(format!("no topic {name:?}")));
    }
    let known = console
        .inner
        .topic_codes
        .lock()
        .unwrap_or_else(|p| p.into_inner())
        .get(&name)
        .cloned();
    let content = match known {
        Some(c) => c,
        None => {
            let Some(client) = &console.inner.client else {
                return Err(AdminError::Invalid(
                    "a join code needs WeChat's API: set [wechat] app_id and app_secret".into(),
                ));
            };
            let scene = Scene::Str(format!("{TOPIC_SCENE_PREFIX}{name}"));
            let code = client.create_qrcode(&scene, None).await.map_err(|e| {
                AdminError::Service(axum::http::StatusCode::BAD_GATEWAY, e.to_string())
            })?;
            console
                .inner
                .topic_codes
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .insert(name.clone(), code.url.clone());
            code.url
        }
    };
    let png = crate::apps::qr::png(&content)
        .ok_or_else(|| AdminError::Invalid("the code's content is too long to draw".into()))?;
    Ok(([(header::CONTENT_TYPE, "image/png")], png).into_response())
}

#[derive(Debug, Deserialize)]
pub struct AppForm {
    #[serde(default)]
    name: String,
    #[serde(default)]
    callback_url: String,
    #[serde(default)]
    format: String,
    #[serde(default)]
    reply: Option<String>,
}

/// `POST /admin/apps`.
pub async fn create_app(
    State(console): State<Console>,
    Extension(session): Extension<Session>,
    axum::Form(form): axum::Form<AppForm>,
) -> Page {
    let spec = AppSpec {
        name: form.name.trim().to_owned(),
        callback_url: form.callback_url.trim().to_owned(),
        format: if form.format.is_empty() {
            "huixin".into()
        } else {
            form.format
        },
        replies: form.reply.is_some(),
        return_url: String::new(),
    };
    let created = console.inner.apps.create(&spec).await?;
    tracing::info!(app = created.app.id, "console: app created");
    render(
        &console,
        &session,
        Some(html! {
            (shown_once(&format!("App {} created; its token:", created.app.name), &created.token))
            p.muted { "Its webhook signing secret: " code { (created.app.secret) } }
        }),
    )
    .await
}

/// `POST /admin/apps/{id}/revoke`.
pub async fn revoke_app(State(console): State<Console>, Path(id): Path<i64>) -> Page {
    if !console.inner.apps.revoke(id).await? {
        return Err(AdminError::NotFound(format!("no live app #{id}")));
    }
    Ok(Redirect::to(&format!("{}/keys?done=app-revoked", console.base())).into_response())
}
