//! Signing in to the console, and the guard in front of every page.
//!
//! - **Password**: `[admin] password` holds an argon2 hash; a sign-in verifies against it on
//!   a blocking thread (argon2 is slow on purpose), after the login rate limit
//!   (`[admin] login_attempts_per_minute` per client address, five times that from all).
//! - **Login links**: `huixin admin login-link` stores the SHA-256 of a random token; the link
//!   opens a page whose button posts the token back (a link previewer that fetches the page
//!   does not use it up), and each token signs in once, before `[admin] login_link_minutes`.
//! - **Sessions**: a random 256-bit secret in the `huixin_admin` cookie (HttpOnly,
//!   SameSite=Strict, Secure when `public_url` is https, scoped to the console's path), its
//!   hash in the store. A new secret at every sign-in: a cookie planted before signing in is
//!   never promoted (no session fixation).
//! - **CSRF**: every state-changing request carries the session's form token (a hash of the
//!   session secret, so it needs no storage): the `_csrf` field of a form, or the
//!   `X-CSRF-Token` header of the phone panel's requests. The sign-in forms, before any
//!   session, use a double-submit token: a random cookie that the form repeats.

use std::net::SocketAddr;

use axum::body::Bytes;
use axum::extract::{ConnectInfo, Query, Request, State};
use axum::http::{HeaderMap, Method, StatusCode, header};
use axum::middleware::Next;
use axum::response::{IntoResponse, Redirect, Response};
use base64::Engine;
use maud::html;
use serde::Deserialize;
use sha2::{Digest, Sha256};
use subtle::ConstantTimeEq;

use super::{AdminError, Console, html as ui};
use crate::config::Config;
use crate::store::admin::AdminSession;
use crate::store::{Store, StoreError};
use crate::support::clock::unix_now;

/// The client's address, when the server knows it (the accept loop records it).
pub struct Peer(Option<std::net::IpAddr>);

impl<S: Send + Sync> axum::extract::FromRequestParts<S> for Peer {
    type Rejection = std::convert::Infallible;

    async fn from_request_parts(
        parts: &mut axum::http::request::Parts,
        _: &S,
    ) -> Result<Self, Self::Rejection> {
        Ok(Self(
            parts
                .extensions
                .get::<ConnectInfo<SocketAddr>>()
                .map(|ConnectInfo(a)| a.ip()),
        ))
    }
}

impl Peer {
    fn key(&self) -> String {
        self.0
            .map_or_else(|| "unknown".to_owned(), |ip| ip.to_string())
    }
}

/// The session cookie.
const SESSION_COOKIE: &str = "huixin_admin";
/// The sign-in forms' double-submit cookie.
const PRE_COOKIE: &str = "huixin_admin_pre";
/// The largest form body the guard reads to find its `_csrf` field.
const FORM_LIMIT: usize = 256 * 1024;

/// A signed-in session, put in the request's extensions by [`guard`].
#[derive(Debug, Clone)]
pub struct Session {
    /// The hash the store keys it by.
    pub id_hash: String,
    /// The token its forms carry.
    pub csrf: String,
}

/// A fresh random secret, URL-safe (256 bits).
fn secret() -> String {
    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(rand::random::<[u8; 32]>())
}

fn sha256_hex(text: &str) -> String {
    hex::encode(Sha256::digest(text.as_bytes()))
}

/// The form token of the session whose cookie holds `secret`.
fn csrf_of(secret: &str) -> String {
    sha256_hex(&format!("huixin-admin-csrf\0{secret}"))[..40].to_owned()
}

fn equal(a: &str, b: &str) -> bool {
    a.len() == b.len() && bool::from(a.as_bytes().ct_eq(b.as_bytes()))
}

/// A cookie's value from the request's `Cookie` headers.
fn cookie<'h>(headers: &'h HeaderMap, name: &str) -> Option<&'h str> {
    headers
        .get_all(header::COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(';'))
        .filter_map(|pair| pair.trim().split_once('='))
        .find(|(k, _)| *k == name)
        .map(|(_, v)| v.trim())
        .filter(|v| !v.is_empty())
}

impl Console {
    /// A `Set-Cookie` value for the console's path.
    fn set_cookie(&self, name: &str, value: &str, max_age: i64) -> String {
        let secure = if self.config().server.public_url.starts_with("https://") {
            "; Secure"
        } else {
            ""
        };
        format!(
            "{name}={value}; Path={}; Max-Age={max_age}; HttpOnly; SameSite=Strict{secure}",
            self.base()
        )
    }

    fn off_page(&self) -> Response {
        (
            StatusCode::NOT_FOUND,
            ui::bare_page(
                "The console is off",
                "Set [admin] password to the hash `huixin admin hash-password` prints \
                 (HUIXIN_ADMIN_PASSWORD works too) and restart, then sign in here; or run \
                 `huixin serve --dev` on a development machine.",
            ),
        )
            .into_response()
    }
}

/// Hashes a password for `[admin] password` (argon2id, a random salt).
pub fn hash_password(password: &str) -> Result<String, String> {
    use argon2::password_hash::PasswordHasher;
    if password.chars().count() < 8 {
        return Err("a console password has at least 8 characters".into());
    }
    argon2::Argon2::default()
        .hash_password(password.as_bytes())
        .map(|h| h.to_string())
        .map_err(|e| e.to_string())
}

fn verify_password(password: &str, hash: &str) -> bool {
    use argon2::password_hash::PasswordVerifier;
    use argon2::password_hash::phc::PasswordHash;
    PasswordHash::new(hash).is_ok_and(|parsed| {
        argon2::Argon2::default()
            .verify_password(password.as_bytes(), &parsed)
            .is_ok()
    })
}

/// A login link made by [`login_link`].
#[derive(Debug, Clone)]
pub struct LoginLink {
    /// The link (the console's address under `[server] public_url`, else the listen address).
    pub url: String,
    /// When it stops working (Unix seconds).
    pub expires_at: i64,
}

/// Makes a one-time login link (`huixin admin login-link`, `huixin serve --dev`) to the
/// console at `base` (default: `[server] public_url`, else `http://` and the listen address).
pub async fn login_link(
    config: &Config,
    store: &Store,
    base: Option<&str>,
) -> Result<LoginLink, StoreError> {
    let token = secret();
    let now = unix_now();
    let expires_at = now + i64::from(config.admin.login_link_minutes) * 60;
    store
        .backend()
        .admin_link_insert(&sha256_hex(&token), now, expires_at)
        .await?;
    let base = match (base, config.server.public_url.as_str()) {
        (Some(base), _) => base.trim_end_matches('/').to_owned(),
        (None, "") => format!("http://{}", config.server.listen),
        (None, public) => public.trim_end_matches('/').to_owned(),
    };
    Ok(LoginLink {
        url: format!("{base}/admin/login/link?token={token}"),
        expires_at,
    })
}

/// Where to go after signing in: a console path, never elsewhere (no open redirect).
fn next_target(console: &Console, next: Option<&str>) -> String {
    let base = console.base();
    match next {
        Some(n)
            if (n == base || n.starts_with(&format!("{base}/")))
                && !n.contains("//")
                && !n.contains('\\')
                && !n.contains("/login")
                // A browser resolves `..` (and `%2e%2e`) before asking: out of the console.
                && !n.contains("..")
                && !n.to_ascii_lowercase().contains("%2e") =>
        {
            n.to_owned()
        }
        _ => base,
    }
}

/// The guard in front of every page: a session, and for a state-changing request its form
/// token. Without a session a page request is sent to the sign-in page (303) and anything
/// else answers 401; a missing or wrong token answers 403.
pub async fn guard(State(console): State<Console>, request: Request, next: Next) -> Response {
    if !console.enabled() {
        return console.off_page();
    }
    let secret = cookie(request.headers(), SESSION_COOKIE).map(str::to_owned);
    let session = match &secret {
        Some(secret) => match console
            .store()
            .backend()
            .admin_session(&sha256_hex(secret), unix_now())
            .await
        {
            Ok(found) => found.map(|s| Session {
                id_hash: s.id_hash,
                csrf: csrf_of(secret),
            }),
            Err(e) => return AdminError::Store(e).into_response(),
        },
        None => None,
    };
    let Some(session) = session else {
        let reads = matches!(*request.method(), Method::GET | Method::HEAD);
        let wants_page = request
            .headers()
            .get(header::ACCEPT)
            .and_then(|v| v.to_str().ok())
            .is_none_or(|a| a.contains("text/html") || a.contains("*/*"));
        if reads && wants_page {
            let next = request
                .uri()
                .path_and_query()
                .map(|p| format!("{}{}", console.inner.prefix, p.as_str()))
                .unwrap_or_default();
            let location = format!(
                "{}/login?next={}",
                console.base(),
                url_encode(&next_target(&console, Some(&next)))
            );
            return Redirect::to(&location).into_response();
        }
        return (
            StatusCode::UNAUTHORIZED,
            ui::bare_page("Sign in first", "This needs a signed-in console session."),
        )
            .into_response();
    };
    let mut request = request;
    if !matches!(*request.method(), Method::GET | Method::HEAD) {
        let from_header = request
            .headers()
            .get("x-csrf-token")
            .and_then(|v| v.to_str().ok())
            .map(str::to_owned);
        let is_form = request
            .headers()
            .get(header::CONTENT_TYPE)
            .and_then(|v| v.to_str().ok())
            .is_some_and(|t| t.starts_with("application/x-www-form-urlencoded"));
        let token = match from_header {
            Some(t) => Some(t),
            None if is_form => {
                let (parts, body) = request.into_parts();
                let bytes = match axum::body::to_bytes(body, FORM_LIMIT).await {
                    Ok(b) => b,
                    Err(_) => {
                        return (
                            StatusCode::PAYLOAD_TOO_LARGE,
                            ui::bare_page("Too large", "The form is too large."),
                        )
                            .into_response();
                    }
                };
                let token = form_field(&bytes, "_csrf");
                request = Request::from_parts(parts, axum::body::Body::from(bytes));
                token
            }
            None => None,
        };
        if !token.is_some_and(|t| equal(&t, &session.csrf)) {
            return forbidden();
        }
    }
    request.extensions_mut().insert(session);
    next.run(request).await
}

fn forbidden() -> Response {
    (
        StatusCode::FORBIDDEN,
        ui::bare_page(
            "Refused",
            "The form's security token is missing or wrong. Reload the page and try again.",
        ),
    )
        .into_response()
}

/// A field of a URL-encoded form.
fn form_field(body: &Bytes, name: &str) -> Option<String> {
    serde_urlencoded::from_bytes::<Vec<(String, String)>>(body)
        .ok()?
        .into_iter()
        .find(|(k, _)| k == name)
        .map(|(_, v)| v)
}

fn url_encode(text: &str) -> String {
    serde_urlencoded::to_string([("", text)])
        .map(|s| s.trim_start_matches('=').to_owned())
        .unwrap_or_default()
}

#[derive(Deserialize)]
pub struct NextQuery {
    next: Option<String>,
}

/// The pre-session token of this browser, and a `Set-Cookie` when it needs a new one.
fn pre_token(console: &Console, headers: &HeaderMap) -> (String, Option<String>) {
    match cookie(headers, PRE_COOKIE) {
        Some(t) if t.len() >= 32 && t.len() <= 64 => (t.to_owned(), None),
        _ => {
            let t = secret();
            let set = console.set_cookie(PRE_COOKIE, &t, 3_600);
            (t, Some(set))
        }
    }
}

fn with_cookies(mut response: Response, cookies: impl IntoIterator<Item = String>) -> Response {
    for c in cookies {
        if let Ok(v) = c.parse() {
            response.headers_mut().append(header::SET_COOKIE, v);
        }
    }
    response
}

/// `GET /admin/login`.
pub async fn login_page(
    State(console): State<Console>,
    Query(q): Query<NextQuery>,
    headers: HeaderMap,
) -> Response {
    if !console.enabled() {
        return console.off_page();
    }
    let (pre, set) = pre_token(&console, &headers);
    let next = next_target(&console, q.next.as_deref());
    with_cookies(login_form(&console, &pre, &next, None, StatusCode::OK), set)
}

fn login_form(
    console: &Console,
    pre: &str,
    next: &str,
    error: Option<&str>,
    status: StatusCode,
) -> Response {
    let has_password = !console.config().admin.password.is_empty();
    let body = html! {
        main.login {
            h1 { "huixin" }
            @if let Some(error) = error { p.flash.error role="alert" { (error) } }
            @if has_password {
                form method="post" action={ (console.base()) "/login" } {
                    input type="hidden" name="_csrf" value=(pre);
                    input type="hidden" name="next" value=(next);
                    label { "Password" input type="password" name="password" autocomplete="current-password" autofocus required; }
                    button type="submit" { "Sign in" }
                }
            } @else {
                p { "Sign in with a link from " code { "huixin admin login-link" } "." }
            }
            p.muted { "A one-time link: " code { "huixin admin login-link" } }
        }
    };
    (status, ui::plain_page(console, "Sign in", body)).into_response()
}

#[derive(Deserialize)]
pub struct LoginForm {
    #[serde(default)]
    _csrf: String,
    #[serde(default)]
    password: String,
    #[serde(default)]
    next: Option<String>,
}

/// `POST /admin/login`.
pub async fn login(
    State(console): State<Console>,
    headers: HeaderMap,
    peer: Peer,
    body: Bytes,
) -> Response {
    let (form, pre) = match sign_in_form(&console, &headers, &body, |f: &LoginForm| &f._csrf) {
        Ok(checked) => checked,
        Err(refused) => return refused.answer(&console),
    };
    let next = next_target(&console, form.next.as_deref());
    if !attempt_allowed(&console, &peer) {
        return login_form(
            &console,
            pre,
            &next,
            Some("Too many attempts. Wait a minute and try again."),
            StatusCode::TOO_MANY_REQUESTS,
        );
    }
    let hash = console.config().admin.password.expose().to_owned();
    let password = form.password;
    let ok = !hash.is_empty()
        && tokio::task::spawn_blocking(move || verify_password(&password, &hash))
            .await
            .unwrap_or(false);
    if !ok {
        tracing::warn!(client = %peer.key(), "console: wrong password");
        return login_form(
            &console,
            pre,
            &next,
            Some("Wrong password."),
            StatusCode::UNAUTHORIZED,
        );
    }
    start_session(&console, "password", &next).await
}

/// Why a sign-in form was refused before its contents were looked at.
enum Refused {
    /// The console is off.
    Off,
    /// The form did not parse, or its token did not match the pre-session cookie.
    Forbidden,
}

impl Refused {
    fn answer(self, console: &Console) -> Response {
        match self {
            Self::Off => console.off_page(),
            Self::Forbidden => forbidden(),
        }
    }
}

/// What both sign-in forms check first: the console is on, the form parses, and its
/// double-submit token matches the pre-session cookie. The form and that cookie's value.
fn sign_in_form<'h, F: serde::de::DeserializeOwned>(
    console: &Console,
    headers: &'h HeaderMap,
    body: &[u8],
    csrf: impl Fn(&F) -> &str,
) -> Result<(F, &'h str), Refused> {
    if !console.enabled() {
        return Err(Refused::Off);
    }
    let form: F = serde_urlencoded::from_bytes(body).map_err(|_| Refused::Forbidden)?;
    match cookie(headers, PRE_COOKIE) {
        Some(pre) if equal(pre, csrf(&form)) => Ok((form, pre)),
        _ => Err(Refused::Forbidden),
    }
}

/// Takes a sign-in attempt from the client's and the overall budget
/// (`[admin] login_attempts_per_minute`); false, logged, when either is spent.
fn attempt_allowed(console: &Console, peer: &Peer) -> bool {
    let client = peer.key();
    let allowed = console.inner.attempts.take(&client).is_ok()
        && console.inner.attempts_all.take("all").is_ok();
    if !allowed {
        tracing::warn!(client = %client, "console: too many sign-in attempts");
    }
    allowed
}

/// Signs a browser in: a new session secret, whatever cookie it had.
async fn start_session(console: &Console, via: &str, next: &str) -> Response {
    let secret = secret();
    let now = unix_now();
    let max_age = i64::from(console.config().admin.session_hours) * 3_600;
    let session = AdminSession {
        id_hash: sha256_hex(&secret),
        via: via.to_owned(),
        created_at: now,
        expires_at: now + max_age,
    };
    if let Err(e) = console
        .store()
        .backend()
        .admin_session_insert(&session)
        .await
    {
        return AdminError::Store(e).into_response();
    }
    tracing::info!(via, "console: signed in");
    with_cookies(
        Redirect::to(next).into_response(),
        [
            console.set_cookie(SESSION_COOKIE, &secret, max_age),
            console.set_cookie(PRE_COOKIE, "", 0),
        ],
    )
}

#[derive(Deserialize)]
pub struct LinkQuery {
    #[serde(default)]
    token: String,
}

/// `GET /admin/login/link?token=…`: a page whose button signs in (the token is used only by
/// the button's post).
pub async fn link_page(
    State(console): State<Console>,
    Query(q): Query<LinkQuery>,
    headers: HeaderMap,
) -> Response {
    if !console.enabled() {
        return console.off_page();
    }
    let (pre, set) = pre_token(&console, &headers);
    let body = html! {
        main.login {
            h1 { "huixin" }
            form method="post" action={ (console.base()) "/login/link" } {
                input type="hidden" name="_csrf" value=(pre);
                input type="hidden" name="token" value=(q.token);
                button type="submit" autofocus { "Sign in to the console" }
            }
        }
    };
    with_cookies(
        ui::plain_page(&console, "Sign in", body).into_response(),
        set,
    )
}

#[derive(Deserialize)]
pub struct LinkForm {
    #[serde(default)]
    _csrf: String,
    #[serde(default)]
    token: String,
}

/// `POST /admin/login/link`.
pub async fn link_login(
    State(console): State<Console>,
    headers: HeaderMap,
    peer: Peer,
    body: Bytes,
) -> Response {
    let (form, _) = match sign_in_form(&console, &headers, &body, |f: &LinkForm| &f._csrf) {
        Ok(checked) => checked,
        Err(refused) => return refused.answer(&console),
    };
    if !attempt_allowed(&console, &peer) {
        return (
            StatusCode::TOO_MANY_REQUESTS,
            ui::bare_page("Too many attempts", "Wait a minute and try again."),
        )
            .into_response();
    }
    match console
        .store()
        .backend()
        .admin_link_use(&sha256_hex(&form.token), unix_now())
        .await
    {
        Ok(true) => start_session(&console, "link", &console.base()).await,
        Ok(false) => (
            StatusCode::UNAUTHORIZED,
            ui::bare_page(
                "This link does not sign in",
                "It was used already or has expired. `huixin admin login-link` prints a new one.",
            ),
        )
            .into_response(),
        Err(e) => AdminError::Store(e).into_response(),
    }
}

/// `POST /admin/logout`.
pub async fn logout(
    State(console): State<Console>,
    axum::Extension(session): axum::Extension<Session>,
) -> Response {
    if let Err(e) = console
        .store()
        .backend()
        .admin_session_delete(&session.id_hash)
        .await
    {
        return AdminError::Store(e).into_response();
    }
    with_cookies(
        Redirect::to(&format!("{}/login", console.base())).into_response(),
        [console.set_cookie(SESSION_COOKIE, "", 0)],
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn passwords_verify_against_their_hash_only() {
        let hash = hash_password("correct horse").unwrap();
        assert!(hash.starts_with("$argon2id$"));
        assert!(verify_password("correct horse", &hash));
        assert!(!verify_password("correct horsf", &hash));
        assert!(!verify_password("correct horse", "not a hash"));
        assert!(hash_password("short").is_err());
    }

    #[test]
    fn cookies_are_found_by_name() {
        let mut h = HeaderMap::new();
        h.append(header::COOKIE, "a=1; huixin_admin=xyz".parse().unwrap());
        h.append(header::COOKIE, "b=2".parse().unwrap());
        assert_eq!(cookie(&h, "huixin_admin"), Some("xyz"));
        assert_eq!(cookie(&h, "b"), Some("2"));
        assert_eq!(cookie(&h, "huixin"), None);
    }

    #[test]
    fn the_form_token_depends_on_the_secret() {
        assert_ne!(csrf_of("a"), csrf_of("b"));
        assert_eq!(csrf_of("a").len(), 40);
    }
}
