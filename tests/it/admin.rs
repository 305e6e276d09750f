//! The operator console at `/admin`, through the real binary (`huixin serve`) with the emulator
//! as WeChat: signing in (password, login links), the session guard on every route, CSRF,
//! the login rate limit, untrusted text escaped on every page, and a real headless Chromium
//! (over WebDriver) using the pages as an operator would, with screenshots at 1280 and 390
//! pixels in `target/admin-screenshots/`.

use crate::common;

use std::time::{Duration, Instant};

use common::process::Running;
use common::setup::{Setup, setup};
use common::webdriver;
use reqwest::StatusCode;
use reqwest::header::{COOKIE, LOCATION, SET_COOKIE};
use serde_json::json;

/// The console's password in these tests.
const PASSWORD: &str = "correct horse battery";

/// A server with the console on (its password [`PASSWORD`]) and `extra` TOML appended.
fn console(followers: &[&str], extra: &str) -> (Setup, Running) {
    let s = setup(followers, "");
    let hash = huixin::admin::hash_password(PASSWORD).unwrap();
    let path = s.dir.path().join("huixin.toml");
    let mut toml = std::fs::read_to_string(&path).unwrap();
    toml.push_str(&format!("\n[admin]\npassword = \"{hash}\"\n{extra}\n"));
    std::fs::write(&path, toml).unwrap();
    let server = s.serve();
    (s, server)
}

/// A client that follows no redirects and keeps no cookies: each test says what it sends.
fn client() -> reqwest::Client {
    reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .unwrap()
}

/// The `name=value` of a `Set-Cookie` for `name` in `response`'s headers.
fn set_cookie(headers: &reqwest::header::HeaderMap, name: &str) -> Option<(String, String)> {
    headers
        .get_all(SET_COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .find(|v| v.starts_with(&format!("{name}=")))
        .map(|v| {
            let pair = v.split(';').next().unwrap().to_owned();
            (pair, v.to_owned())
        })
}

/// The value of the first `name="…"`-named hidden input's value in `html`.
fn input_value(html: &str, name: &str) -> String {
    let at = html
        .find(&format!("name=\"{name}\""))
        .unwrap_or_else(|| panic!("no input {name} in {html}"));
    let rest = &html[at..];
    let start = rest.find("value=\"").unwrap() + 7;
    rest[start..start + rest[start..].find('"').unwrap()].to_owned()
}

/// The session's form token, from a page's `csrf-token` meta tag.
fn csrf_of(html: &str) -> String {
    let at = html.find("name=\"csrf-token\"").expect("a console page");
    let rest = &html[at..];
    let start = rest.find("content=\"").unwrap() + 9;
    rest[start..start + rest[start..].find('"').unwrap()].to_owned()
}

struct Http<'a> {
    s: &'a Setup,
    http: reqwest::Client,
    /// Where requests go: the server, or a proxy in front of it.
    base: String,
    /// The console's path there (`/admin`, or under the proxy's prefix).
    admin: String,
}

impl<'a> Http<'a> {
    fn new(s: &'a Setup) -> Self {
        Self {
            s,
            http: client(),
            base: s.base(),
            admin: "/admin".into(),
        }
    }

    fn get(
        &self,
        path: &str,
        cookie: Option<&str>,
    ) -> (StatusCode, reqwest::header::HeaderMap, String) {
        self.s.runtime.block_on(async {
            let mut r = self.http.get(format!("{}{path}", self.base));
            if let Some(c) = cookie {
                r = r.header(COOKIE, c);
            }
            let r = r.send().await.unwrap();
            let (status, headers) = (r.status(), r.headers().clone());
            (status, headers, r.text().await.unwrap())
        })
    }

    fn post(
        &self,
        path: &str,
        cookie: Option<&str>,
        form: &[(&str, &str)],
    ) -> (StatusCode, reqwest::header::HeaderMap, String) {
        self.s.runtime.block_on(async {
            let mut r = self
                .http
                .post(format!("{}{path}", self.base))
                .header("content-type", "application/x-www-form-urlencoded")
                .body(serde_urlencoded::to_string(form).unwrap());
            if let Some(c) = cookie {
                r = r.header(COOKIE, c);
            }
            let r = r.send().await.unwrap();
            let (status, headers) = (r.status(), r.headers().clone());
            (status, headers, r.text().await.unwrap())
        })
    }

    /// Signs in with `password`: the session cookie (`huixin_admin=…`), or the failed answer.
    fn sign_in(&self, password: &str) -> Result<String, (StatusCode, String)> {
        let admin = self.admin.clone();
        let (status, headers, html) = self.get(&format!("{admin}/login"), None);
        assert_eq!(status, StatusCode::OK, "{html}");
        let (pre, _) = set_cookie(&headers, "huixin_admin_pre").expect("a pre-session cookie");
        let token = input_value(&html, "_csrf");
        let (status, headers, body) = self.post(
            &format!("{admin}/login"),
            Some(&pre),
            &[("_csrf", &token), ("password", password), ("next", &admin)],
        );
        if status != StatusCode::SEE_OTHER {
            return Err((status, body));
        }
        let (session, attributes) = set_cookie(&headers, "huixin_admin").expect("a session cookie");
        assert!(attributes.contains("HttpOnly"), "{attributes}");
        assert!(attributes.contains("SameSite=Strict"), "{attributes}");
        assert!(
            attributes.contains(&format!("Path={}", self.admin)),
            "{attributes}"
        );
        assert!(
            !attributes.contains("Secure"),
            "plain http here: {attributes}"
        );
        Ok(session)
    }
}

#[test]
fn the_console_is_off_without_a_password_and_says_how_to_turn_it_on() {
    let s = setup(&[], "");
    let _server = s.serve();
    let http = Http::new(&s);
    for path in ["/admin", "/admin/login", "/admin/followers"] {
        let (status, _, body) = http.get(path, None);
        assert_eq!(status, StatusCode::NOT_FOUND, "{path}");
        assert!(body.contains("[admin] password"), "{path}: {body}");
        assert!(
            body.contains("huixin admin hash-password"),
            "{path}: {body}"
        );
    }
}

/// Every console route, as (method, path).
const ROUTES: &[(&str, &str)] = &[
    ("GET", "/admin"),
    ("GET", "/admin/"),
    ("GET", "/admin/followers"),
    ("GET", "/admin/followers/o_someone"),
    ("POST", "/admin/followers/o_someone/block"),
    ("POST", "/admin/followers/o_someone/unblock"),
    ("GET", "/admin/conversations"),
    ("GET", "/admin/pushes"),
    ("GET", "/admin/pushes/abcdefabcdefabcdefab"),
    ("POST", "/admin/pushes/abcdefabcdefabcdefab/resend"),
    ("POST", "/admin/pushes/abcdefabcdefabcdefab/revoke"),
    ("GET", "/admin/keys"),
    ("POST", "/admin/keys"),
    ("POST", "/admin/keys/abcd/revoke"),
    ("POST", "/admin/topics"),
    ("GET", "/admin/topics/news/qrcode.png"),
    ("POST", "/admin/apps"),
    ("POST", "/admin/apps/1/revoke"),
    ("GET", "/admin/rules"),
    ("POST", "/admin/rules/test"),
    ("GET", "/admin/menu"),
    ("POST", "/admin/menu"),
    ("GET", "/admin/phone"),
    ("POST", "/admin/phone/send"),
    ("POST", "/admin/phone/upload"),
    ("GET", "/admin/phone/inbox"),
    ("POST", "/admin/logout"),
];

#[test]
fn every_console_route_without_a_session_is_sent_to_sign_in_or_refused() {
    let (s, _server) = console(&[], "");
    let http = Http::new(&s);
    for cookie in [None, Some("huixin_admin=planted-by-someone-else")] {
        for (method, path) in ROUTES {
            let (status, headers, body) = match *method {
                "GET" => http.get(path, cookie),
                _ => http.post(path, cookie, &[("_csrf", "x")]),
            };
            if *method == "GET" {
                assert_eq!(
                    status,
                    StatusCode::SEE_OTHER,
                    "{method} {path} {cookie:?}: {body}"
                );
                let to = headers[LOCATION].to_str().unwrap();
                assert!(to.starts_with("/admin/login?next="), "{path}: {to}");
            } else {
                assert_eq!(
                    status,
                    StatusCode::UNAUTHORIZED,
                    "{method} {path} {cookie:?}: {body}"
                );
            }
            assert!(
                !body.contains("csrf-token"),
                "{path}: no page content without a session"
            );
        }
    }
    // The assets and the sign-in pages are open, and every answer carries the policy.
    let (status, headers, _) = http.get("/admin/assets/console.css", None);
    assert_eq!(status, StatusCode::OK);
    let (_, headers_login, _) = http.get("/admin/login", None);
    for h in [&headers, &headers_login] {
        let csp = h["content-security-policy"].to_str().unwrap();
        assert!(
            csp.contains("script-src 'self'") && csp.contains("frame-ancestors 'none'"),
            "{csp}"
        );
        assert_eq!(h["x-content-type-options"], "nosniff");
    }
}

#[test]
fn signing_in_refuses_wrong_passwords_and_tokenless_forms_and_never_keeps_a_planted_session() {
    // Many sign-ins in a row here; the limit has its own test.
    let (s, _server) = console(&[], "login_attempts_per_minute = 100");
    let http = Http::new(&s);

    // No pre-session cookie, or a form without its token: refused before the password.
    let (status, _, _) = http.post("/admin/login", None, &[("password", PASSWORD)]);
    assert_eq!(status, StatusCode::FORBIDDEN);
    let (_, headers, html) = http.get("/admin/login", None);
    let (pre, _) = set_cookie(&headers, "huixin_admin_pre").unwrap();
    let (status, _, _) = http.post("/admin/login", Some(&pre), &[("password", PASSWORD)]);
    assert_eq!(status, StatusCode::FORBIDDEN);
    let (status, _, _) = http.post(
        "/admin/login",
        Some(&pre),
        &[("_csrf", "not-the-token"), ("password", PASSWORD)],
    );
    assert_eq!(status, StatusCode::FORBIDDEN);
    let token = input_value(&html, "_csrf");

    // A wrong password.
    let (status, body) = http.sign_in("wrong password").unwrap_err();
    assert_eq!(status, StatusCode::UNAUTHORIZED);
    assert!(body.contains("Wrong password"), "{body}");

    // A session planted before signing in is not what signing in gives.
    let planted = "huixin_admin=AAAAplantedAAAAplantedAAAAplantedAAAAplant";
    let (status, headers, _) = http.post(
        "/admin/login",
        Some(&format!("{pre}; {planted}")),
        &[
            ("_csrf", &token),
            ("password", PASSWORD),
            ("next", "/admin/pushes"),
        ],
    );
    assert_eq!(status, StatusCode::SEE_OTHER);
    assert_eq!(headers[LOCATION], "/admin/pushes");
    let (session, _) = set_cookie(&headers, "huixin_admin").unwrap();
    assert_ne!(session, planted);
    let (status, _, _) = http.get("/admin", Some(planted));
    assert_eq!(
        status,
        StatusCode::SEE_OTHER,
        "the planted cookie signs nothing in"
    );

    // Signed in: pages answer; `next` never leaves the console.
    let (status, _, page) = http.get("/admin", Some(&session));
    assert_eq!(status, StatusCode::OK);
    assert!(page.contains("Overview"));
    for next in [
        "https://evil.example/",
        "//evil.example/",
        "/admin/../x",
        "/elsewhere",
    ] {
        let other = http.sign_in_to(next);
        assert!(other == "/admin", "next {next:?} went to {other}");
    }

    // A form without the session's token is refused; with it, it works.
    let (status, _, _) = http.post("/admin/keys", Some(&session), &[("scope", "admin")]);
    assert_eq!(status, StatusCode::FORBIDDEN);
    let (status, _, _) = http.post(
        "/admin/keys",
        Some(&session),
        &[("_csrf", "wrong"), ("scope", "admin")],
    );
    assert_eq!(status, StatusCode::FORBIDDEN);
    let csrf = csrf_of(&page);
    let (status, _, made) = http.post(
        "/admin/keys",
        Some(&session),
        &[
            ("_csrf", &csrf),
            ("scope", "admin"),
            ("label", "from the test"),
        ],
    );
    assert_eq!(status, StatusCode::OK, "{made}");
    assert!(made.contains("cannot be shown again"), "{made}");

    // Signing out ends the session on the server, not only in the browser.
    let (status, headers, _) = http.post("/admin/logout", Some(&session), &[("_csrf", &csrf)]);
    assert_eq!(status, StatusCode::SEE_OTHER);
    let (_, cleared) = set_cookie(&headers, "huixin_admin").unwrap();
    assert!(cleared.contains("Max-Age=0"), "{cleared}");
    let (status, _, _) = http.get("/admin", Some(&session));
    assert_eq!(status, StatusCode::SEE_OTHER);
}

impl Http<'_> {
    /// Signs in with `next`; where the answer sends the browser.
    fn sign_in_to(&self, next: &str) -> String {
        let (_, headers, html) = self.get("/admin/login", None);
        let (pre, _) = set_cookie(&headers, "huixin_admin_pre").unwrap();
        let token = input_value(&html, "_csrf");
        let (status, headers, body) = self.post(
            "/admin/login",
            Some(&pre),
            &[("_csrf", &token), ("password", PASSWORD), ("next", next)],
        );
        assert_eq!(status, StatusCode::SEE_OTHER, "{body}");
        headers[LOCATION].to_str().unwrap().to_owned()
    }
}

#[test]
fn password_attempts_are_rate_limited() {
    let (s, _server) = console(&[], "login_attempts_per_minute = 3");
    let http = Http::new(&s);
    for _ in 0..3 {
        let (status, _) = http.sign_in("nope").unwrap_err();
        assert_eq!(status, StatusCode::UNAUTHORIZED);
    }
    let (status, body) = http.sign_in(PASSWORD).unwrap_err();
    assert_eq!(
        status,
        StatusCode::TOO_MANY_REQUESTS,
        "even the right password waits"
    );
    assert!(body.contains("Too many attempts"), "{body}");
}

#[test]
fn a_login_link_signs_in_once() {
    let (s, _server) = console(&[], "");
    let http = Http::new(&s);
    let link = s.run(&["admin", "login-link"]);
    let path = link
        .strip_prefix(&s.base())
        .unwrap_or_else(|| panic!("{link} under {}", s.base()));
    assert!(path.starts_with("/admin/login/link?token="), "{path}");
    let token = path.split("token=").nth(1).unwrap();
    // Opening the link does not use it (a link preview must not sign anyone in).
    let (status, headers, html) = http.get(path, None);
    assert_eq!(status, StatusCode::OK);
    let (status, _, _) = http.get(path, None);
    assert_eq!(status, StatusCode::OK);
    let (pre, _) = set_cookie(&headers, "huixin_admin_pre").unwrap();
    let csrf = input_value(&html, "_csrf");
    let (status, headers, body) = http.post(
        "/admin/login/link",
        Some(&pre),
        &[("_csrf", &csrf), ("token", token)],
    );
    assert_eq!(status, StatusCode::SEE_OTHER, "{body}");
    let (session, _) = set_cookie(&headers, "huixin_admin").unwrap();
    let (status, _, _) = http.get("/admin/rules", Some(&session));
    assert_eq!(status, StatusCode::OK);
    let (status, _, body) = http.post(
        "/admin/login/link",
        Some(&pre),
        &[("_csrf", &csrf), ("token", token)],
    );
    assert_eq!(status, StatusCode::UNAUTHORIZED, "used already: {body}");
    assert!(body.contains("used already"), "{body}");
    // `huixin admin logout-all` ends the session.
    s.run(&["admin", "logout-all"]);
    let (status, _, _) = http.get("/admin/rules", Some(&session));
    assert_eq!(status, StatusCode::SEE_OTHER);
}

/// `start`..`end` of `html`: the text between the first `start` and the next `end`.
fn between<'h>(html: &'h str, start: &str, end: &str) -> &'h str {
    let at = html
        .find(start)
        .unwrap_or_else(|| panic!("no {start} in {html}"));
    let rest = &html[at..];
    &rest[..rest
        .find(end)
        .unwrap_or_else(|| panic!("no {end} after {start}"))]
}

#[test]
fn a_seeded_database_opens_on_every_page() {
    let s = setup(&[], "");
    let hash = huixin::admin::hash_password(PASSWORD).unwrap();
    let path = s.dir.path().join("huixin.toml");
    let mut toml = std::fs::read_to_string(&path).unwrap();
    toml.push_str(&format!("\n[admin]\npassword = \"{hash}\"\n"));
    std::fs::write(&path, toml).unwrap();
    let seeded = s.run(&[
        "store",
        "seed",
        "--followers",
        "300",
        "--log-rows",
        "3000",
        "--pushes",
        "20",
    ]);
    assert!(seeded.contains("300 followers"), "{seeded}");
    let _server = s.serve();
    let http = Http::new(&s);
    let session = http.sign_in(PASSWORD).unwrap();
    let open = |path: &str| {
        let (status, _, html) = http.get(path, Some(&session));
        assert_eq!(status, StatusCode::OK, "{path}: {html}");
        html
    };
    // The overview twice: the second draws the past days from what the first kept, and
    // must show the same.
    let first = open("/admin");
    let second = open("/admin");
    let charts = |html: &str| between(html, "<div class=\"stats\">", "<h2>Access token").to_owned();
    assert_eq!(charts(&first), charts(&second));
    assert!(charts(&first).contains("<svg"), "{first}");
    for path in ["/admin/followers", "/admin/conversations", "/admin/keys"] {
        open(path);
    }
    // Every seeded push opens.
    let pushes = open("/admin/pushes");
    let links: Vec<&str> = pushes
        .split("href=\"/admin/pushes/")
        .skip(1)
        .map(|rest| &rest[..rest.find('"').unwrap()])
        .collect();
    assert_eq!(links.len(), 20, "{pushes}");
    for id in links {
        let page = open(&format!("/admin/pushes/{id}"));
        assert!(page.contains("Backup #"), "{page}");
    }
}

/// Untrusted text that would run as script or break out of an attribute if a page did not
/// escape it.
const PAYLOADS: &[&str] = &[
    "<script>alert('xss')</script>",
    "\"><img src=x onerror=alert(1)>",
    "'><svg onload=alert(1)>",
    "</textarea><script>alert(2)</script>",
    "<a href=\"javascript:alert(3)\">click</a>",
];

#[test]
fn untrusted_text_is_escaped_on_every_page() {
    let dir = tempfile::tempdir().unwrap();
    let rules = dir.path().join("rules");
    std::fs::create_dir(&rules).unwrap();
    // A rule whose conditions (shown on the rules page) carry a payload.
    std::fs::write(
        rules.join("10-xss.rhai"),
        format!(
            "rule(#{{ content: {:?} }}, |msg| text(msg.content));\nrule(#{{ type: \"text\" }}, |msg| text(msg.content));\n",
            PAYLOADS[0]
        ),
    )
    .unwrap();
    let (s, _server) = console(
        &["o_xss_user"],
        &format!("[rules]\ndir = \"{}\"\n", rules.display()),
    );
    // A nickname from WeChat, messages, a push title: all the follower's or a caller's text.
    s.emulator_post(
        "/emulator/users",
        json!({ "openid": "o_xss_user", "nickname": PAYLOADS[1] }),
    );
    s.emulator_send(
        "o_xss_user",
        json!({ "type": "subscribe", "scene": PAYLOADS[2] }),
    );
    for p in PAYLOADS {
        s.emulator_send("o_xss_user", json!({ "type": "text", "content": p }));
    }
    let key = s.admin_key();
    let (status, pushed) = s.post(
        "/api/v1/push",
        Some(&key),
        json!({ "to": ["o_xss_user"], "title": PAYLOADS[3], "body": PAYLOADS[4] }),
    );
    assert!(status < 300, "{status} {pushed}");
    let id = pushed["id"].as_str().unwrap().to_owned();

    let http = Http::new(&s);
    let session = http.sign_in(PASSWORD).unwrap();
    let pages = [
        "/admin".to_owned(),
        "/admin/followers".to_owned(),
        format!("/admin/followers?scene={}", urlencode(PAYLOADS[2])),
        "/admin/followers/o_xss_user".to_owned(),
        "/admin/conversations".to_owned(),
        format!("/admin/conversations?user={}", urlencode(PAYLOADS[0])),
        "/admin/rules".to_owned(),
        "/admin/pushes".to_owned(),
        format!("/admin/pushes/{id}"),
        "/admin/keys".to_owned(),
    ];
    let mut escaped_seen = 0;
    for page in &pages {
        // The log is written in batches: a moment for the last messages to land.
        let deadline = Instant::now() + Duration::from_secs(5);
        let body = loop {
            let (status, _, body) = http.get(page, Some(&session));
            assert_eq!(status, StatusCode::OK, "{page}: {body}");
            if !page.starts_with("/admin/conversations")
                || body.contains("&lt;/textarea&gt;")
                || Instant::now() > deadline
            {
                break body;
            }
            std::thread::sleep(Duration::from_millis(200));
        };
        for p in PAYLOADS {
            assert!(!body.contains(p), "{page} shows {p:?} unescaped");
        }
        assert!(!body.contains("<script>alert"), "{page}");
        assert!(!body.contains("onerror=alert(1)>"), "{page}");
        escaped_seen += usize::from(
            body.contains("&lt;script&gt;") || body.contains("&lt;img") || body.contains("&lt;svg"),
        );
    }
    assert!(
        escaped_seen >= 6,
        "the payloads are shown, escaped, on most pages ({escaped_seen})"
    );
}

fn urlencode(text: &str) -> String {
    serde_urlencoded::to_string([("", text)]).unwrap()[1..].to_owned()
}

/// The console in a real browser: signing in, a follower appearing, the phone panel, the
/// rules page following the folder, a push turning delivered, a key revoked in the console
/// refused by the API; screenshots at both widths.
#[test]
fn the_console_in_a_browser() {
    let dir = tempfile::tempdir().unwrap();
    let rules = dir.path().join("rules");
    std::fs::create_dir(&rules).unwrap();
    std::fs::write(
        rules.join("90-echo.rhai"),
        "rule(#{ type: \"text\" }, |msg| text(msg.content));\n",
    )
    .unwrap();
    let (s, _server) = console(
        &["o_browser_fan"],
        &format!("[rules]\ndir = \"{}\"\n", rules.display()),
    );
    let base = s.base();
    let runtime = &s.runtime;
    let b = runtime.block_on(webdriver::start(1280, 900));
    let shot = |name: &str| {
        runtime.block_on(async {
            b.screenshot(&format!("{name}-1280"), 1280, 900).await;
            b.screenshot(&format!("{name}-390"), 390, 844).await;
            b.client.set_window_size(1280, 900).await.unwrap();
        })
    };

    runtime.block_on(async {
        // Signing in: sent to the sign-in page, a wrong password refused, then in.
        b.client
            .goto(&format!("{base}/admin/followers"))
            .await
            .unwrap();
        b.wait_text("h1", "huixin", false).await;
        b.fill("input[name=password]", "not it").await;
        b.click("form button[type=submit]").await;
        b.wait_text(".flash.error", "Wrong password", false).await;
    });
    shot("login");
    runtime.block_on(async {
        b.fill("input[name=password]", PASSWORD).await;
        b.click("form button[type=submit]").await;
        b.wait_text("h1", "Followers", false).await;
    });

    // A follower appears after a (simulated) subscribe.
    s.emulator_send(
        "o_browser_fan",
        json!({ "type": "subscribe", "scene": "poster" }),
    );
    runtime.block_on(b.wait_text("table", "o_browser_fan", true));
    shot("followers");

    // The phone panel: `hello` comes back as a bubble.
    runtime.block_on(async {
        b.client.goto(&format!("{base}/admin/phone")).await.unwrap();
        b.fill("#from", "o_browser_fan").await;
        b.fill("#text", "hello").await;
        b.click("#composer button").await;
        b.wait_text(".bubble.me", "hello", false).await;
        b.wait_text(".bubble.bot", "hello", false).await;
    });
    shot("phone");

    // The rules page follows the folder: a new file's rule, then a broken file's error.
    std::fs::write(
        rules.join("20-hours.rhai"),
        "rule(#{ content: \"hours\" }, |msg| text(\"9-5\"));\n",
    )
    .unwrap();
    runtime.block_on(async {
        b.client.goto(&format!("{base}/admin/rules")).await.unwrap();
        b.wait_text("details.file", "20-hours.rhai", true).await;
    });
    std::fs::write(
        rules.join("30-broken.rhai"),
        "// fine\nrule(#{ content: \"x\" }, |msg| text(\"y\"));\nrule(#{ content: \"z\" } |msg| oops);\n",
    )
    .unwrap();
    runtime.block_on(async {
        let error = b
            .wait_text("section.errors", "30-broken.rhai:3", true)
            .await;
        assert!(error.contains("30-broken.rhai:3"), "{error}");
        // The test box runs the live rules.
        b.fill("input[name=value]", "hours").await;
        b.click("form[action$='/rules/test'] button").await;
        b.wait_text(".trial", "9-5", false).await;
    });
    shot("rules");

    // A push from the API: its recipient turns delivered on the push's page.
    let key = s.admin_key();
    let (status, pushed) = s.post(
        "/api/v1/push",
        Some(&key),
        json!({ "to": ["o_browser_fan"], "title": "Build finished", "body": "**green**" }),
    );
    assert!(status < 300, "{status} {pushed}");
    let id = pushed["id"].as_str().unwrap().to_owned();
    runtime.block_on(async {
        b.client
            .goto(&format!("{base}/admin/pushes"))
            .await
            .unwrap();
        b.wait_text("table", "Build finished", false).await;
        b.client
            .goto(&format!("{base}/admin/pushes/{id}"))
            .await
            .unwrap();
        b.wait_text("#recipients", "delivered", true).await;
    });
    shot("push");

    // A key made in the console works on the API until it is revoked in the console.
    let made = runtime.block_on(async {
        b.client.goto(&format!("{base}/admin/keys")).await.unwrap();
        b.fill(
            "form[action$='/admin/keys'] input[name=label]",
            "console key",
        )
        .await;
        b.click("form[action$='/admin/keys'] button").await;
        // The key is on the page the form's post answers with: wait for it to load.
        b.client
            .wait()
            .at_most(Duration::from_secs(10))
            .for_element(fantoccini::Locator::Css("input.secret"))
            .await
            .unwrap()
            .prop("value")
            .await
            .unwrap()
            .unwrap()
    });
    let push = |key: &str| {
        s.post(
            "/api/v1/push",
            Some(key),
            json!({ "to": ["o_browser_fan"], "title": "t", "body": "b" }),
        )
        .0
    };
    assert!(push(&made) < 300, "the new key pushes");
    shot("keys");
    runtime.block_on(async {
        b.client.goto(&format!("{base}/admin/keys")).await.unwrap();
        let prefix: String = made.chars().take(6).collect();
        let rows = b
            .client
            .find_all(fantoccini::Locator::Css("tr"))
            .await
            .unwrap();
        let mut clicked = false;
        for row in rows {
            if row.text().await.unwrap().contains(&prefix)
                && let Ok(button) = row.find(fantoccini::Locator::Css("button.danger")).await
            {
                button.click().await.unwrap();
                clicked = true;
                break;
            }
        }
        assert!(clicked, "the key's row has a Revoke button");
        b.wait_text(".flash", "Revoked", false).await;
    });
    assert_eq!(push(&made), 401, "a key revoked in the console is refused");

    // The overview draws its charts.
    runtime.block_on(async {
        b.client.goto(&format!("{base}/admin")).await.unwrap();
        b.wait_text("h1", "Overview", false).await;
        let charts = b
            .client
            .find_all(fantoccini::Locator::Css("figure.chart svg"))
            .await
            .unwrap();
        assert!(charts.len() >= 3, "charts: {}", charts.len());
    });
    shot("overview");
}

/// Behind nginx under `/bot/` (the prefix stripped), with `[server] public_url` naming it: the
/// console's links, redirects and cookies carry the prefix.
#[test]
fn the_console_works_under_a_path_prefix_behind_a_proxy() {
    let s = setup(&[], "");
    let http_block = format!(
        r#"
    server {{
        listen 127.0.0.1:{{PORT}};
        location /bot/ {{
            proxy_pass http://127.0.0.1:{port}/;
            proxy_set_header Host $host;
        }}
        location = /.nginx-up {{
            return 204;
        }}
    }}
"#,
        port = s.port
    );
    let Some(nginx) = common::nginx::start("the console under a prefix", &http_block) else {
        return;
    };
    let public = format!("{}/bot", nginx.url());
    let path = s.dir.path().join("huixin.toml");
    let hash = huixin::admin::hash_password(PASSWORD).unwrap();
    let toml = std::fs::read_to_string(&path).unwrap().replacen(
        "[server]\n",
        &format!("[server]\npublic_url = \"{public}\"\n"),
        1,
    );
    std::fs::write(&path, format!("{toml}\n[admin]\npassword = \"{hash}\"\n")).unwrap();
    let _server = s.serve();
    let http = Http {
        s: &s,
        http: client(),
        base: nginx.url(),
        admin: "/bot/admin".into(),
    };
    let (status, headers, _) = http.get("/bot/admin/pushes", None);
    assert_eq!(status, StatusCode::SEE_OTHER);
    let to = headers[LOCATION].to_str().unwrap();
    assert!(
        to.starts_with("/bot/admin/login?next=%2Fbot%2Fadmin%2Fpushes"),
        "{to}"
    );
    let session = http.sign_in(PASSWORD).unwrap();
    let (status, _, page) = http.get("/bot/admin/followers", Some(&session));
    assert_eq!(status, StatusCode::OK, "{page}");
    for link in [
        "href=\"/bot/admin/keys\"",
        "/bot/admin/assets/console.css",
        "action=\"/bot/admin/followers\"",
    ] {
        assert!(page.contains(link), "{link} in {page}");
    }
    let (status, _, css) = http.get("/bot/admin/assets/console.css", None);
    assert_eq!(status, StatusCode::OK);
    assert!(css.contains(".phone"));
}
