//! The layout every console page shares, and the small pieces pages are made of.

use axum::extract::Path;
use axum::http::{StatusCode, header};
use axum::response::{Html, IntoResponse, Response};
use maud::{DOCTYPE, Markup, html};

use super::Console;
use super::auth::Session;

/// The stylesheet, compiled in.
const CSS: &str = include_str!("assets/console.css");
/// The phone panel's and the pages' small script, compiled in.
const JS: &str = include_str!("assets/console.js");

/// `GET /admin/assets/{name}`.
pub async fn asset(Path(name): Path<String>) -> Response {
    let (body, kind) = match name.as_str() {
        "console.css" => (CSS, "text/css; charset=utf-8"),
        "console.js" => (JS, "text/javascript; charset=utf-8"),
        _ => return StatusCode::NOT_FOUND.into_response(),
    };
    (
        [
            (header::CONTENT_TYPE, kind),
            (header::CACHE_CONTROL, "public, max-age=3600"),
        ],
        body,
    )
        .into_response()
}

/// The pages in the navigation, in order.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Nav {
    Overview,
    Followers,
    Conversations,
    Pushes,
    Keys,
    Rules,
    Menu,
    Phone,
}

impl Nav {
    const ALL: [Nav; 8] = [
        Nav::Overview,
        Nav::Followers,
        Nav::Conversations,
        Nav::Pushes,
        Nav::Keys,
        Nav::Rules,
        Nav::Menu,
        Nav::Phone,
    ];

    fn label(self) -> &'static str {
        match self {
            Nav::Overview => "Overview",
            Nav::Followers => "Followers",
            Nav::Conversations => "Conversations",
            Nav::Pushes => "Pushes",
            Nav::Keys => "Keys & apps",
            Nav::Rules => "Rules",
            Nav::Menu => "Menu",
            Nav::Phone => "Phone",
        }
    }

    fn path(self) -> &'static str {
        match self {
            Nav::Overview => "",
            Nav::Followers => "/followers",
            Nav::Conversations => "/conversations",
            Nav::Pushes => "/pushes",
            Nav::Keys => "/keys",
            Nav::Rules => "/rules",
            Nav::Menu => "/menu",
            Nav::Phone => "/phone",
        }
    }
}

fn head(console: &Console, title: &str) -> Markup {
    let base = console.base();
    let v = env!("CARGO_PKG_VERSION");
    html! {
        head {
            meta charset="utf-8";
            meta name="viewport" content="width=device-width, initial-scale=1";
            meta name="robots" content="noindex";
            title { (title) " · huixin" }
            link rel="stylesheet" href={ (base) "/assets/console.css?v=" (v) };
        }
    }
}

/// A console page: the navigation, `body`, and the session's form token for the script.
pub fn page(
    console: &Console,
    session: &Session,
    title: &str,
    active: Nav,
    body: Markup,
) -> Response {
    let base = console.base();
    let v = env!("CARGO_PKG_VERSION");
    Html(
        html! {
            (DOCTYPE)
            html lang="en" {
                (head(console, title))
                body data-base=(base) {
                    meta name="csrf-token" content=(session.csrf);
                    header.top {
                        a.brand href=(base) { "回信 huixin" }
                        nav {
                            @for item in Nav::ALL {
                                a.active[item == active] href={ (base) (item.path()) } { (item.label()) }
                            }
                        }
                        form.logout method="post" action={ (base) "/logout" } {
                            (csrf_field(session))
                            button.link type="submit" { "Sign out" }
                        }
                    }
                    main {
                        h1 { (title) }
                        (body)
                    }
                    script src={ (base) "/assets/console.js?v=" (v) } {}
                }
            }
        }
        .into_string(),
    )
    .into_response()
}

/// A page without the navigation (signing in).
pub fn plain_page(console: &Console, title: &str, body: Markup) -> Html<String> {
    Html(
        html! {
            (DOCTYPE)
            html lang="en" {
                (head(console, title))
                body { (body) }
            }
        }
        .into_string(),
    )
}

/// A page with a title and a sentence, needing nothing (errors, refusals).
pub fn bare_page(title: &str, message: &str) -> Html<String> {
    Html(
        html! {
            (DOCTYPE)
            html lang="en" {
                head {
                    meta charset="utf-8";
                    meta name="viewport" content="width=device-width, initial-scale=1";
                    title { (title) " · huixin" }
                }
                body { main { h1 { (title) } p { (message) } } }
            }
        }
        .into_string(),
    )
}

/// The hidden form-token field every form carries.
pub fn csrf_field(session: &Session) -> Markup {
    html! { input type="hidden" name="_csrf" value=(session.csrf); }
}

/// A one-line notice at the top of a page.
pub fn flash(kind: &str, text: &str) -> Markup {
    html! { p class={ "flash " (kind) } role="status" { (text) } }
}

impl Console {
    /// A Unix time as `2026-11-21 14:03:05` in `[rules] timezone`.
    pub(super) fn time(&self, unix: i64) -> String {
        self.at(unix, "%Y-%m-%d %H:%M:%S")
    }

    /// A Unix time formatted with `format` in `[rules] timezone`.
    pub(super) fn at(&self, unix: i64, format: &str) -> String {
        let tz = crate::support::clock::parse_timezone(&self.config().rules.timezone)
            .unwrap_or(jiff::tz::TimeZone::UTC);
        jiff::Timestamp::from_second(unix)
            .map(|t| t.to_zoned(tz).strftime(format).to_string())
            .unwrap_or_default()
    }
}

/// A time span in words: `3 s`, `5 min`, `2 h`, `4 d`.
pub fn ago(seconds: i64) -> String {
    let s = seconds.max(0);
    match s {
        0..60 => format!("{s} s"),
        60..3_600 => format!("{} min", s / 60),
        3_600..86_400 => format!("{} h", s / 3_600),
        _ => format!("{} d", s / 86_400),
    }
}

/// A query string from pairs, leaving out empty values.
pub fn query(pairs: &[(&str, &str)]) -> String {
    let kept: Vec<(&str, &str)> = pairs
        .iter()
        .filter(|(_, v)| !v.is_empty())
        .copied()
        .collect();
    match serde_urlencoded::to_string(kept) {
        Ok(q) if !q.is_empty() => format!("?{q}"),
        _ => String::new(),
    }
}

/// A path segment, percent-encoded.
pub fn segment(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for b in text.bytes() {
        if b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.' | b'~') {
            out.push(char::from(b));
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn spans_read_naturally() {
        assert_eq!(ago(5), "5 s");
        assert_eq!(ago(125), "2 min");
        assert_eq!(ago(7_300), "2 h");
        assert_eq!(ago(200_000), "2 d");
        assert_eq!(ago(-3), "0 s");
    }

    #[test]
    fn queries_leave_out_empty_values() {
        assert_eq!(query(&[("a", "1"), ("b", ""), ("c", "x y")]), "?a=1&c=x+y");
        assert_eq!(query(&[("a", "")]), "");
        assert_eq!(segment("o_a/b?c"), "o_a%2Fb%3Fc");
    }
}
