//! Menu: the custom menu WeChat shows now, an editor (JSON, checked as WeChat would check it,
//! with a preview of the phone's menu bar) and publishing.

use axum::Extension;
use axum::extract::State;
use maud::{Markup, html};
use serde::Deserialize;

use crate::admin::auth::Session;
use crate::admin::html::{self as ui, Nav};
use crate::admin::{Console, Page};
use crate::outbound::menu::{Button, Menu};

/// `GET /admin/menu`.
pub async fn page(State(console): State<Console>, Extension(session): Extension<Session>) -> Page {
    let (text, notice) = match &console.inner.client {
        None => (String::new(), Some(needs_client())),
        Some(client) => match client.menu().await {
            Ok(Some(menu)) => (pretty(&menu), None),
            Ok(None) => (
                String::new(),
                Some(ui::flash("info", "The account has no custom menu.")),
            ),
            Err(e) => (
                String::new(),
                Some(ui::flash(
                    "error",
                    &format!("WeChat did not give the menu: {e}"),
                )),
            ),
        },
    };
    let parsed = Menu::from_json(&text).ok();
    Ok(render(&console, &session, &text, parsed.as_ref(), notice))
}

fn needs_client() -> Markup {
    ui::flash(
        "error",
        "The menu needs WeChat's API: set [wechat] app_id and app_secret (or run huixin serve --dev).",
    )
}

fn pretty(menu: &Menu) -> String {
    serde_json::to_string_pretty(menu).unwrap_or_default()
}

/// A menu as the phone shows it: up to three buttons, groups opened below.
pub fn preview(menu: &Menu) -> Markup {
    html! {
        div.menu-preview {
            @for b in &menu.button {
                div.menu-button {
                    span { (b.name) }
                    @if !b.sub_button.is_empty() {
                        ul { @for sub in &b.sub_button { li { (sub.name) " " small.muted { (describe(sub)) } } } }
                    } @else {
                        small.muted { (describe(b)) }
                    }
                }
            }
        }
    }
}

fn describe(b: &Button) -> String {
    match (b.kind.as_deref(), &b.key, &b.url) {
        (Some("view"), _, Some(url)) => format!("opens {url}"),
        (Some(kind), Some(key), _) => format!("{kind} {key}"),
        (Some(kind), _, _) => kind.to_owned(),
        (None, _, _) => String::new(),
    }
}

fn render(
    console: &Console,
    session: &Session,
    text: &str,
    menu: Option<&Menu>,
    notice: Option<Markup>,
) -> axum::response::Response {
    let body = html! {
        @if let Some(n) = notice { (n) }
        div.columns {
            form.menu-editor method="post" action={ (console.base()) "/menu" } {
                (ui::csrf_field(session))
                label { "Menu JSON (" code { "{\"button\": [...]}" } ")"
                    textarea name="menu" rows="18" spellcheck="false" { (text) }
                }
                div.buttons {
                    button type="submit" name="action" value="check" { "Check and preview" }
                    button.primary type="submit" name="action" value="publish" { "Publish" }
                }
            }
            div {
                h2 { "Preview" }
                @match menu {
                    Some(menu) => { (preview(menu)) }
                    None => { p.muted { "Nothing to preview." } }
                }
            }
        }
    };
    ui::page(console, session, "Menu", Nav::Menu, body)
}

#[derive(Debug, Deserialize)]
pub struct MenuForm {
    #[serde(default)]
    menu: String,
    #[serde(default)]
    action: String,
}

/// `POST /admin/menu`: check (and preview) or publish.
pub async fn submit(
    State(console): State<Console>,
    Extension(session): Extension<Session>,
    axum::Form(form): axum::Form<MenuForm>,
) -> Page {
    let menu = match Menu::from_json(&form.menu).and_then(|m| m.check().map(|()| m)) {
        Ok(m) => m,
        Err(e) => {
            let notice = ui::flash("error", &e);
            return Ok(render(&console, &session, &form.menu, None, Some(notice)));
        }
    };
    if form.action != "publish" {
        let notice = ui::flash(
            "ok",
            "The menu is valid. Publish it to show it to followers.",
        );
        return Ok(render(
            &console,
            &session,
            &form.menu,
            Some(&menu),
            Some(notice),
        ));
    }
    let Some(client) = &console.inner.client else {
        return Ok(render(
            &console,
            &session,
            &form.menu,
            Some(&menu),
            Some(needs_client()),
        ));
    };
    let notice = match client.create_menu(&menu).await {
        Ok(()) => {
            tracing::info!(buttons = menu.button.len(), "console: menu published");
            ui::flash(
                "ok",
                "Published: followers see the new menu (WeChat may take a few minutes).",
            )
        }
        Err(e) => ui::flash("error", &format!("WeChat refused the menu: {e}")),
    };
    Ok(render(
        &console,
        &session,
        &pretty(&menu),
        Some(&menu),
        Some(notice),
    ))
}
