//! Rules: the files in order with each rule's conditions, the last reload's errors with
//! file:line, when the live set was loaded, and a box that tries the rules on a made-up
//! message (as `huixin rules test`: a throwaway store, sends shown instead of made).

use axum::Extension;
use axum::extract::State;
use axum::response::Response;
use maud::{Markup, html};
use serde::Deserialize;

use crate::admin::auth::Session;
use crate::admin::html::{self as ui, Nav};
use crate::admin::{AdminError, Console, Page};
use crate::rules::Source;
use crate::simulator::trial;
use crate::support::clock::unix_now;

/// Longest rule file shown on the page.
const SHOWN_FILE: u64 = 64 * 1024;

/// `GET /admin/rules`.
pub async fn page(State(console): State<Console>, Extension(session): Extension<Session>) -> Page {
    Ok(render(&console, &session, &TestForm::default(), None))
}

fn render(
    console: &Console,
    session: &Session,
    form: &TestForm,
    result: Option<Markup>,
) -> Response {
    let body = match &console.inner.rules {
        None => html! { p { "This app runs no rules." } },
        Some(rules) => {
            let set = rules.current();
            let status = rules.status();
            let now = unix_now();
            let dir = match &set.source {
                Source::Dir(dir) => Some(dir.clone()),
                _ => None,
            };
            html! {
                p.muted {
                    (set.rules.len()) " rules and " (set.hooks.len()) " before hooks from " (set.source.to_string())
                    ", loaded " (console.time(status.loaded_at)) " (" (ui::ago(now - status.loaded_at)) " ago)."
                    @if console.config().rules.reload { " The folder is watched: a saved file is live within a second." }
                }
                @if !status.errors.is_empty() {
                    section.errors {
                        h2 { "The last reload failed" }
                        p { "At " (status.failed_at.map(|t| console.time(t)).unwrap_or_default())
                            ". The rules listed below stay live until the files load again." }
                        ul {
                            @for e in &status.errors {
                                li.error {
                                    code.where { (e.file) @if let Some(line) = e.line { ":" (line) } }
                                    " " (e.message)
                                }
                            }
                        }
                    }
                }
                section {
                    h2 { "Try a message" }
                    (test_form(console, session, form))
                    @if let Some(result) = result { (result) }
                }
                section {
                    h2 { "Files" }
                    @for file in &set.files {
                        details.file open {
                            summary {
                                code { (file.name) } " — " (file.rules) " rules"
                                @if file.hooks > 0 { ", " (file.hooks) " before hooks" }
                            }
                            @let rules_of_file: Vec<_> = set.rules.iter().filter(|r| *r.origin.file == *file.name).collect();
                            @if !rules_of_file.is_empty() {
                                table {
                                    thead { tr { th { "Where" } th { "When" } } }
                                    tbody {
                                        @for rule in rules_of_file {
                                            tr {
                                                td { code { (rule.origin.to_string()) } }
                                                td { code { (rule.conditions) } }
                                            }
                                        }
                                    }
                                }
                            }
                            @if let Some(text) = dir.as_ref().and_then(|d| read_small(&d.join(&file.name))) {
                                details.source { summary { "Source" } pre { code { (text) } } }
                            }
                        }
                    }
                    @for hook in &set.hooks {
                        p.muted { "before hook at " code { (hook.origin.to_string()) } }
                    }
                }
            }
        }
    };
    ui::page(console, session, "Rules", Nav::Rules, body)
}

fn read_small(path: &std::path::Path) -> Option<String> {
    let meta = std::fs::metadata(path).ok()?;
    (meta.is_file() && meta.len() <= SHOWN_FILE)
        .then(|| std::fs::read_to_string(path).ok())
        .flatten()
}

/// The test box's fields.
#[derive(Debug, Default, Deserialize)]
pub struct TestForm {
    #[serde(default)]
    kind: String,
    #[serde(default)]
    value: String,
    #[serde(default)]
    from: String,
}

fn test_form(console: &Console, session: &Session, form: &TestForm) -> Markup {
    let kind = if form.kind.is_empty() {
        "text"
    } else {
        form.kind.as_str()
    };
    let from = if form.from.is_empty() {
        "o_console_test"
    } else {
        form.from.as_str()
    };
    html! {
        form.inline method="post" action={ (console.base()) "/rules/test" } {
            (ui::csrf_field(session))
            label { "Kind"
                select name="kind" {
                    @for k in trial::kinds() { option value=(k) selected[k == kind] { (k) } }
                }
            }
            label.grow { "Text, key, scene or URL" input type="text" name="value" value=(form.value); }
            label { "From" input type="text" name="from" value=(from); }
            button type="submit" { "Run the rules" }
        }
    }
}

/// `POST /admin/rules/test`.
pub async fn test(
    State(console): State<Console>,
    Extension(session): Extension<Session>,
    axum::Form(form): axum::Form<TestForm>,
) -> Page {
    let Some(rules) = console.inner.rules.clone() else {
        return Err(AdminError::Invalid("this app runs no rules".into()));
    };
    let value = (!form.value.is_empty()).then_some(form.value.as_str());
    let from = if form.from.trim().is_empty() {
        "o_console_test"
    } else {
        form.from.trim()
    };
    let result = match trial::spec_for(&form.kind, value)
        .and_then(|spec| trial::message(&spec, from))
    {
        Err(e) => html! { p.flash.error role="alert" { (e) } },
        Ok(message) => {
            let scratch = trial::Scratch::open().await?;
            let t = trial::run(&rules, message, Some(scratch.store().clone())).await;
            html! {
                div.trial {
                    p { "→ " (t.message) " from " code { (from) } }
                    @for send in &t.sends { p { "⇢ would send " (send) } }
                    @if let Some(error) = &t.error { p.flash.error role="alert" { "✗ " (error) } }
                    pre.reply { (t.reply.describe()) }
                    @for note in &t.notes { p.muted { "(sent to WeChat adjusted: " (note) ")" } }
                    p.muted {
                        @match (&t.replied_by, &t.error) {
                            (Some(origin), _) => { "replied by " code { (origin) } }
                            (None, None) => { "no rule replied" }
                            (None, Some(_)) => { "the [rules] fallback" }
                        }
                    }
                }
            }
        }
    };
    Ok(render(&console, &session, &form, Some(result)))
}
