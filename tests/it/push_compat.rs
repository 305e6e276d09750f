//! The push APIs of other services (Bark, ntfy, Gotify, ServerChan, PushDeer) over real HTTP:
//! the app served on port 0 over a real SQLite file, driven with reqwest. Each test
//! checks the answer's exact shape, as those services' clients read it, and what was stored.

use huixin::config::Config;
use huixin::push::{Pushes, Scope};
use huixin::store::Store;
use huixin::store::push::PushRow;
use reqwest::StatusCode;
use serde_json::{Value, json};

/// The follower behind the user key.
const USER: &str = "oUserCompat0001";
/// A member of topic `ops`.
const MEMBER: &str = "oMemberCompat01";

/// A running push API with one key of each kind.
struct Harness {
    base: String,
    store: Store,
    client: reqwest::Client,
    /// Pushes to [`USER`].
    user: String,
    /// Pushes to topic `ops`.
    topic: String,
    /// Pushes anywhere it names.
    admin: String,
    /// A second user key (to [`MEMBER`]).
    other: String,
    _dir: tempfile::TempDir,
    _task: AbortOnDrop,
}

struct AbortOnDrop(tokio::task::JoinHandle<()>);

impl Drop for AbortOnDrop {
    fn drop(&mut self) {
        self.0.abort();
    }
}

/// Starts the app (push APIs beside the callback, no delivery worker: what is stored stays
/// as accepted) with `rate` pushes per key per minute.
async fn start_with(rate: u32) -> Harness {
    let dir = tempfile::tempdir().expect("temp dir");
    let db = dir.path().join("push.db");
    start_on(rate, dir, &db).await
}

/// Starts the push routes with the database at `db` (`dir` lives as long as the harness).
async fn start_on(rate: u32, dir: tempfile::TempDir, db: &std::path::Path) -> Harness {
    let url = format!("sqlite://{}?mode=rwc", db.display());
    let store = Store::open(&url).await.expect("store opens");
    let config = Config::from_toml(&format!(
        "[wechat]\napp_id = \"wx49f0ab532d5d035a\"\napp_secret = \"testsecret\"\n\
         api_base = \"http://127.0.0.1:9\"\n\
         [push]\ntemplate_id = \"tpl\"\nrate_limit_per_minute = {rate}\n"
    ))
    .expect("config");
    let app = huixin::app::App::builder(config)
        .store(store.clone())
        .without_push_worker()
        .build()
        .await
        .expect("app builds");
    let pushes = app.pushes().clone();
    let user = pushes
        .create_key(&Scope::User(USER.into()), "user", None)
        .await
        .expect("user key");
    let other = pushes
        .create_key(&Scope::User(MEMBER.into()), "other", None)
        .await
        .expect("other key");
    assert!(
        pushes
            .create_topic("ops", false, "ops")
            .await
            .expect("topic")
    );
    assert!(pushes.join("ops", MEMBER).await.expect("join"));
    let topic = pushes
        .create_key(&Scope::Topic("ops".into()), "topic", None)
        .await
        .expect("topic key");
    let admin = pushes
        .create_key(&Scope::Admin, "admin", None)
        .await
        .expect("admin key");
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("binds");
    let base = format!("http://{}", listener.local_addr().expect("addr"));
    let task = tokio::spawn(async move {
        let _ = app.serve(listener, std::future::pending()).await;
    });
    Harness {
        base,
        store,
        client: reqwest::Client::new(),
        user,
        topic,
        admin,
        other,
        _dir: dir,
        _task: AbortOnDrop(task),
    }
}

/// A harness whose rate limit no test reaches.
async fn start() -> Harness {
    start_with(1000).await
}

impl Harness {
    fn url(&self, path: &str) -> String {
        format!("{}{path}", self.base)
    }

    /// Every stored push, oldest first.
    async fn pushes(&self) -> Vec<PushRow> {
        self.store
            .backend()
            .push_history(None, 0, 0, 1000)
            .await
            .expect("history")
    }

    async fn last(&self) -> PushRow {
        self.pushes().await.pop().expect("a push was stored")
    }

    async fn count(&self) -> usize {
        self.pushes().await.len()
    }

    fn get(&self, path: &str) -> reqwest::RequestBuilder {
        self.client.get(self.url(path))
    }

    fn post(&self, path: &str) -> reqwest::RequestBuilder {
        self.client.post(self.url(path))
    }

    fn put(&self, path: &str) -> reqwest::RequestBuilder {
        self.client.put(self.url(path))
    }

    /// A form-urlencoded POST.
    fn post_form(&self, path: &str, pairs: &[(&str, &str)]) -> reqwest::RequestBuilder {
        self.post(path)
            .header("content-type", "application/x-www-form-urlencoded")
            .body(serde_urlencoded::to_string(pairs).expect("form"))
    }
}

/// Sends and returns the status and JSON answer.
async fn send(request: reqwest::RequestBuilder) -> (StatusCode, Value) {
    let response = request.send().await.expect("request");
    let status = response.status();
    let text = response.text().await.expect("body");
    let json = serde_json::from_str(&text).unwrap_or_else(|_| json!({ "text": text }));
    (status, json)
}

/// Sends and returns the status, the `Retry-After` header and the JSON answer.
async fn send_limited(request: reqwest::RequestBuilder) -> (StatusCode, Option<String>, Value) {
    let response = request.send().await.expect("request");
    let status = response.status();
    let retry = response
        .headers()
        .get("retry-after")
        .and_then(|v| v.to_str().ok())
        .map(str::to_owned);
    let json = response.json().await.unwrap_or(Value::Null);
    (status, retry, json)
}

fn keys_of(v: &Value) -> Vec<String> {
    let mut keys: Vec<String> = v.as_object().expect("an object").keys().cloned().collect();
    keys.sort();
    keys
}

fn assert_bark_ok(status: StatusCode, body: &Value) {
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["code"], 200, "{body}");
    assert_eq!(body["message"], "success", "{body}");
    assert!(body["timestamp"].is_i64(), "{body}");
}

fn assert_bark_error(status: StatusCode, body: &Value, code: u16) {
    assert_eq!(status.as_u16(), code, "{body}");
    assert_eq!(body["code"], code, "{body}");
    assert!(body["message"].is_string(), "{body}");
    assert!(body["timestamp"].is_i64(), "{body}");
}

// ----- health and ping -----

#[tokio::test]
async fn health_and_ping_answer_each_services_shape() {
    let h = start().await;
    let (status, body) = send(h.get("/ping")).await;
    assert_eq!(status, 200);
    assert_eq!(keys_of(&body), ["code", "message", "timestamp"]);
    assert_eq!(body["code"], 200);
    assert_eq!(body["message"], "pong");
    assert!(body["timestamp"].is_i64());

    let (status, body) = send(h.get("/v1/health")).await;
    assert_eq!(status, 200);
    assert_eq!(body, json!({ "healthy": true }));

    let (status, body) = send(h.get("/health")).await;
    assert_eq!(status, 200);
    assert_eq!(body, json!({ "health": "green", "database": "green" }));
    assert_eq!(h.count().await, 0);
}

// ----- Bark -----

#[tokio::test]
async fn bark_json_push_maps_fields() {
    let h = start().await;
    let (status, body) = send(h.post("/push").json(&json!({
        "device_key": h.user,
        "title": "Deploy",
        "subtitle": "prod",
        "body": "ignored because markdown wins",
        "markdown": "**done** in 3 min",
        "url": "https://ci.example.com/run/7",
        "group": "ci",
        "level": "active",
        "sound": "bell",
    })))
    .await;
    assert_bark_ok(status, &body);
    assert_eq!(keys_of(&body), ["code", "message", "timestamp"]);
    let push = h.last().await;
    assert_eq!(push.title, "Deploy");
    assert_eq!(push.body, "prod\n\n**done** in 3 min");
    assert_eq!(push.url.as_deref(), Some("https://ci.example.com/run/7"));
    assert_eq!(push.source, "bark");
    assert_eq!(push.target, format!("user:{USER}"));
}

#[tokio::test]
async fn bark_apprise_json_with_basic_auth_uses_the_device_key() {
    let h = start().await;
    // Apprise: one JSON POST per key, optional Basic auth that means nothing to huixin.
    let (status, body) = send(
        h.post("/push")
            .basic_auth("someone", Some("not-a-key"))
            .json(&json!({
                "device_key": h.user,
                "title": "Apprise",
                "body": "hello",
                "url": "weixin://dl/chat",
                "group": "apprise",
                "level": "passive",
            })),
    )
    .await;
    assert_bark_ok(status, &body);
    let push = h.last().await;
    assert_eq!(
        (push.title.as_str(), push.body.as_str()),
        ("Apprise", "hello")
    );
    // An app URL scheme is not a link the detail page can open.
    assert_eq!(push.url, None);
}

#[tokio::test]
async fn bark_batch_answers_per_key() {
    let h = start().await;
    let bogus = "A".repeat(32);
    let (status, body) = send(h.post("/push").json(&json!({
        "device_keys": [h.user, bogus],
        "title": "Batch",
        "body": "to two",
    })))
    .await;
    assert_bark_ok(status, &body);
    let data = body["data"].as_array().expect("data");
    assert_eq!(data.len(), 2);
    assert_eq!(data[0], json!({ "code": 200, "device_key": h.user }));
    assert_eq!(data[1]["code"], 401);
    assert_eq!(data[1]["device_key"], bogus);
    assert!(data[1]["message"].is_string());
    assert_eq!(h.count().await, 1);

    // A comma string works too.
    let (status, body) = send(h.post("/push").json(&json!({
        "device_keys": format!("{},{}", h.user, h.other),
        "body": "comma",
    })))
    .await;
    assert_bark_ok(status, &body);
    assert_eq!(body["data"][0]["code"], 200);
    assert_eq!(body["data"][1]["code"], 200);
    assert_eq!(h.count().await, 3);
}

#[tokio::test]
async fn bark_refusals() {
    let h = start().await;
    let (status, body) = send(h.post("/push").json(&json!({ "title": "t", "body": "b" }))).await;
    assert_bark_error(status, &body, 400);
    assert_eq!(body["message"], "device key is empty");

    let (status, body) = send(h.post("/push").json(&json!({
        "device_key": "B".repeat(30), "body": "b"
    })))
    .await;
    assert_bark_error(status, &body, 401);

    let (status, body) = send(h.get(&format!("/{}/nothing/x", "short"))).await;
    assert_bark_error(status, &body, 401);

    // Neither title nor body.
    let (status, body) = send(h.post("/push").json(&json!({ "device_key": h.user }))).await;
    assert_bark_error(status, &body, 400);

    let (status, body) = send(
        h.post("/push")
            .header("content-type", "application/json")
            .body("{not json"),
    )
    .await;
    assert_bark_error(status, &body, 400);
    assert_eq!(h.count().await, 0);
}

#[tokio::test]
async fn bark_path_forms_decode_and_win_over_query_and_form() {
    let h = start().await;
    let (status, body) = send(h.get(&format!("/{}/only%20a%20body", h.user))).await;
    assert_bark_ok(status, &body);
    let push = h.last().await;
    assert_eq!(push.body, "only a body");
    assert_eq!(push.title, "only a body");

    let (status, body) = send(h.get(&format!(
        "/{}/%E4%BD%A0%E5%A5%BD/a%2Fb?title=query&body=query&url=https://example.com/q",
        h.user
    )))
    .await;
    assert_bark_ok(status, &body);
    let push = h.last().await;
    assert_eq!(push.title, "你好");
    assert_eq!(push.body, "a/b");
    assert_eq!(push.url.as_deref(), Some("https://example.com/q"));

    let (status, body) = send(h.post_form(
        &format!("/{}/Title/Sub/Body?title=query", h.user),
        &[
            ("title", "form"),
            ("body", "form"),
            ("url", "https://example.com/f"),
        ],
    ))
    .await;
    assert_bark_ok(status, &body);
    let push = h.last().await;
    assert_eq!(push.title, "Title");
    assert_eq!(push.body, "Sub\n\nBody");
    assert_eq!(push.url.as_deref(), Some("https://example.com/f"));

    // The form wins over the query where the path says nothing.
    let (status, body) = send(h.post_form(
        &format!("/{}/Body?title=query", h.user),
        &[("title", "form")],
    ))
    .await;
    assert_bark_ok(status, &body);
    assert_eq!(h.last().await.title, "form");
    assert_eq!(h.count().await, 4);
}

#[tokio::test]
async fn bark_paths_accept_a_trailing_slash() {
    let h = start().await;
    // qinglong posts its JSON to `BARK_PUSH=https://host/KEY/`.
    let (status, body) = send(
        h.post(&format!("/{}/", h.user))
            .json(&json!({ "title": "ql", "body": "task done" })),
    )
    .await;
    assert_bark_ok(status, &body);
    let push = h.last().await;
    assert_eq!(
        (push.title.as_str(), push.body.as_str()),
        ("ql", "task done")
    );

    let (status, body) = send(h.get(&format!("/{}/?title=q&body=from%20query", h.user))).await;
    assert_bark_ok(status, &body);
    assert_eq!(h.last().await.body, "from query");

    let (status, body) = send(h.get(&format!("/{}/only%20body/", h.user))).await;
    assert_bark_ok(status, &body);
    assert_eq!(h.last().await.body, "only body");

    let (status, body) = send(h.post(&format!("/{}/T2/B2/", h.user))).await;
    assert_bark_ok(status, &body);
    let push = h.last().await;
    assert_eq!((push.title.as_str(), push.body.as_str()), ("T2", "B2"));

    let (status, body) = send(h.get(&format!("/{}/T3/Sub/B3/", h.user))).await;
    assert_bark_ok(status, &body);
    let push = h.last().await;
    assert_eq!(
        (push.title.as_str(), push.body.as_str()),
        ("T3", "Sub\n\nB3")
    );

    let (status, body) = send(h.post_form(
        &format!("/{}/T4/Sub/B4/", h.user),
        &[("url", "https://example.com/4")],
    ))
    .await;
    assert_bark_ok(status, &body);
    assert_eq!(h.last().await.url.as_deref(), Some("https://example.com/4"));
    assert_eq!(h.count().await, 6);

    // The slash changes nothing else: an unknown key is still refused in Bark's shape.
    let (status, body) = send(h.get("/nosuchkeynosuchkeynosuchkey/body/")).await;
    assert_bark_error(status, &body, 401);

    // Bark's own endpoints take the slash too.
    let (status, body) = send(h.post("/push/").json(&json!({
        "device_key": h.user,
        "title": "slash",
        "body": "to /push/",
    })))
    .await;
    assert_bark_ok(status, &body);
    assert_eq!(h.last().await.body, "to /push/");
    let (status, body) = send(h.get("/ping/")).await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["message"], "pong");
}

#[tokio::test]
async fn ntfy_json_markdown_false_wins_over_a_header() {
    let h = start().await;
    let (status, body) = send(
        h.post("/")
            .header("X-Markdown", "yes")
            .json(&json!({ "topic": h.user, "message": "plain *text*", "markdown": false })),
    )
    .await;
    assert_eq!(status, 200, "{body}");
    assert_ne!(body["content_type"], "text/markdown", "{body}");
}

#[tokio::test]
async fn bark_rate_limit() {
    let h = start_with(2).await;
    for _ in 0..2 {
        let (status, body) = send(h.get(&format!("/{}/hi", h.user))).await;
        assert_bark_ok(status, &body);
    }
    let (status, retry, body) = send_limited(h.get(&format!("/{}/hi", h.user))).await;
    assert_eq!(status, 429);
    assert_eq!(body["code"], 429);
    assert!(body["timestamp"].is_i64());
    assert!(retry.is_some_and(|r| r.parse::<u64>().is_ok_and(|s| s >= 1)));
    assert_eq!(h.count().await, 2);
}

// ----- reserved segments and the single-segment dispatch -----

#[tokio::test]
async fn reserved_segments_are_never_keys_or_topics() {
    let h = start().await;
    let (status, body) = send(h.get("/api/anything")).await;
    assert_bark_error(status, &body, 404);
    let (status, body) = send(h.get("/admin/a/b")).await;
    assert_bark_error(status, &body, 404);
    let (status, body) = send(h.get("/static?body=x")).await;
    assert_bark_error(status, &body, 404);
    // `/metrics` and `/admin` are huixin's own routes (GET only, the console behind its
    // session): a push posted there is refused by them, never taken as a key or a topic.
    let (status, body) = send(
        h.post("/metrics")
            .json(&json!({ "title": "t", "body": "b" })),
    )
    .await;
    assert_eq!(status, 405, "{body}");
    // With a key in Authorization, ntfy's topic would name a huixin topic: never a reserved one.
    let (status, body) = send(
        h.post("/admin")
            .bearer_auth(&h.admin)
            .header("content-type", "text/plain")
            .body("x"),
    )
    .await;
    assert!(
        status == 401 || status == 404,
        "the console's answer, not a push: {status} {body}"
    );
    let (status, body) = send(h.get("/api.send?title=x")).await;
    assert_eq!(status, 404);
    assert_eq!(body["code"], 404);
    assert_eq!(body["data"], Value::Null);
    assert_eq!(h.count().await, 0);
}

#[tokio::test]
async fn single_segment_dispatch_by_method_and_content_type() {
    let h = start().await;
    let path = format!("/{}", h.user);

    // JSON: Bark.
    let (status, body) = send(h.post(&path).json(&json!({ "title": "J", "body": "json" }))).await;
    assert_bark_ok(status, &body);
    assert_eq!(h.last().await.source, "bark");

    // A form with Bark's fields: Bark.
    let (status, body) = send(h.post_form(&path, &[("title", "F"), ("body", "form")])).await;
    assert_bark_ok(status, &body);
    let push = h.last().await;
    assert_eq!(
        (
            push.title.as_str(),
            push.body.as_str(),
            push.source.as_str()
        ),
        ("F", "form", "bark")
    );

    // Multipart: Bark.
    let form = reqwest::multipart::Form::new()
        .text("title", "M")
        .text("body", "multipart");
    let (status, body) = send(h.post(&path).multipart(form)).await;
    assert_bark_ok(status, &body);
    assert_eq!(h.last().await.body, "multipart");

    // text/plain: ntfy.
    let (status, body) = send(
        h.post(&path)
            .header("content-type", "text/plain; charset=utf-8")
            .body("plain text"),
    )
    .await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["event"], "message");
    assert_eq!(body["message"], "plain text");
    assert_eq!(h.last().await.source, "ntfy");

    // No content type: ntfy.
    let (status, body) = send(h.post(&path).body("no type")).await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["message"], "no type");

    // curl -d "text" says form, but it is ntfy's message.
    let (status, body) = send(
        h.post(&path)
            .header("content-type", "application/x-www-form-urlencoded")
            .body("Backup finished"),
    )
    .await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["message"], "Backup finished");
    assert_eq!(h.last().await.body, "Backup finished");

    // PUT: ntfy.
    let (status, body) = send(h.put(&path).body("put")).await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["message"], "put");

    // GET without content: Bark's 404; with Bark's fields: a push.
    let before = h.count().await;
    let (status, body) = send(h.get(&path)).await;
    assert_bark_error(status, &body, 404);
    assert_eq!(h.count().await, before);
    let (status, body) = send(h.get(&format!("{path}?title=Q&body=query"))).await;
    assert_bark_ok(status, &body);
    assert_eq!(h.last().await.body, "query");
    assert_eq!(h.count().await, before + 1);
}

// ----- ntfy -----

fn assert_ntfy_message(body: &Value, topic: &str) {
    assert!(body["id"].is_string(), "{body}");
    assert!(body["time"].is_i64(), "{body}");
    let expires = body["expires"].as_i64().expect("expires");
    assert_eq!(expires - body["time"].as_i64().unwrap_or(0), 30 * 86_400);
    assert_eq!(body["event"], "message");
    assert_eq!(body["topic"], topic);
}

fn assert_ntfy_error(status: StatusCode, body: &Value, code: u32) {
    assert_eq!(status.as_u16() as u32, code / 100, "{body}");
    assert_eq!(body["code"], code, "{body}");
    assert_eq!(body["http"], code / 100, "{body}");
    assert!(body["error"].is_string(), "{body}");
}

#[tokio::test]
async fn ntfy_headers_with_and_without_x() {
    let h = start().await;
    let (status, body) = send(
        h.put(&format!("/{}", h.user))
            .header("X-Title", "Disk full")
            .header("priority", "urgent")
            .header("Tags", "warning, skull")
            .header("X-Click", "https://grafana.example.com/d/1")
            .header("Icon", "https://example.com/i.png")
            .header("md", "yes")
            .body("**/var** at 99%\n"),
    )
    .await;
    assert_eq!(status, 200, "{body}");
    assert_ntfy_message(&body, &h.user);
    assert_eq!(body["title"], "Disk full");
    assert_eq!(body["message"], "**/var** at 99%");
    assert_eq!(body["priority"], 5);
    assert_eq!(body["tags"], json!(["warning", "skull"]));
    assert_eq!(body["click"], "https://grafana.example.com/d/1");
    assert_eq!(body["icon"], "https://example.com/i.png");
    assert_eq!(body["content_type"], "text/markdown");
    let push = h.last().await;
    assert_eq!(push.id, body["id"].as_str().unwrap_or(""));
    assert_eq!(push.title, "Disk full");
    assert_eq!(push.body, "**/var** at 99%");
    assert_eq!(push.url.as_deref(), Some("https://grafana.example.com/d/1"));
    assert_eq!(push.source, "ntfy");

    // Short names, an RFC 2047 title, and no optional fields.
    let (status, body) = send(
        h.post(&format!("/{}", h.user))
            .header("t", "=?UTF-8?B?5aSH5Lu95a6M5oiQ?=")
            .header("content-type", "text/plain")
            .body("ok"),
    )
    .await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["title"], "备份完成");
    assert_eq!(
        keys_of(&body),
        [
            "event", "expires", "id", "message", "time", "title", "topic"
        ]
    );
    assert_eq!(h.last().await.title, "备份完成");

    // Q encoding, query parameters, and an empty body.
    let (status, body) = send(
        h.put(&format!(
            "/{}?p=high&ta=a,b&click=https://example.com/c",
            h.user
        ))
        .header("Title", "=?utf-8?Q?caf=C3=A9_ok?="),
    )
    .await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["title"], "café ok");
    assert_eq!(body["priority"], 4);
    assert_eq!(body["tags"], json!(["a", "b"]));
    assert_eq!(body["message"], "triggered");
    let push = h.last().await;
    assert_eq!(push.url.as_deref(), Some("https://example.com/c"));
    assert_eq!(push.body, "triggered");
}

#[tokio::test]
async fn ntfy_json_with_bearer_names_a_topic() {
    let h = start().await;
    let (status, body) = send(h.post("/").bearer_auth(&h.admin).json(&json!({
        "topic": "ops",
        "title": "From Apprise",
        "message": "all **green**",
        "priority": 2,
        "tags": ["ok"],
        "click": "https://status.example.com",
        "markdown": true,
    })))
    .await;
    assert_eq!(status, 200, "{body}");
    assert_ntfy_message(&body, "ops");
    assert_eq!(body["priority"], 2);
    assert_eq!(body["tags"], json!(["ok"]));
    assert_eq!(body["content_type"], "text/markdown");
    let push = h.last().await;
    assert_eq!(push.target, "topic:ops");
    assert_eq!(push.title, "From Apprise");
    assert_eq!(push.body, "all **green**");
    assert_eq!(push.url.as_deref(), Some("https://status.example.com"));
    let recipients = h
        .store
        .backend()
        .push_recipients(push.seq)
        .await
        .expect("recipients");
    assert_eq!(recipients.len(), 1);
    assert_eq!(recipients[0].openid, MEMBER);

    // Basic auth with the key as password; the topic key may push to its own topic.
    let (status, body) = send(
        h.post("/")
            .basic_auth("apprise", Some(&h.topic))
            .json(&json!({ "topic": "ops", "message": "basic" })),
    )
    .await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(h.last().await.target, "topic:ops");

    // Without Authorization, the topic is the key.
    let (status, body) = send(
        h.post("/")
            .json(&json!({ "topic": h.user, "message": "m" })),
    )
    .await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["topic"], h.user);
    assert_eq!(h.last().await.target, format!("user:{USER}"));

    // A user key may not push to a topic.
    let (status, body) = send(
        h.post("/")
            .bearer_auth(&h.user)
            .json(&json!({ "topic": "ops", "message": "m" })),
    )
    .await;
    assert_ntfy_error(status, &body, 40301);

    // An admin naming a topic that does not exist.
    let (status, body) = send(
        h.post("/")
            .bearer_auth(&h.admin)
            .json(&json!({ "topic": "nope", "message": "m" })),
    )
    .await;
    assert_ntfy_error(status, &body, 40401);
    assert_eq!(h.count().await, 3);
}

#[tokio::test]
async fn ntfy_json_takes_the_fields_it_leaves_out_from_headers() {
    let h = start().await;
    // Apprise's `ntfy://…?click=URL`: a JSON body, the link (and more) as headers.
    let (status, body) = send(
        h.post("/")
            .header("X-Click", "https://example.com/from-header")
            .header("X-Title", "Header title")
            .header("X-Priority", "high")
            .header("X-Tags", "a, b")
            .header("X-Icon", "https://example.com/i.png")
            .header("X-Markdown", "yes")
            .json(&json!({ "topic": h.user, "message": "from **apprise**" })),
    )
    .await;
    assert_eq!(status, 200, "{body}");
    assert_ntfy_message(&body, &h.user);
    assert_eq!(body["click"], "https://example.com/from-header");
    assert_eq!(body["title"], "Header title");
    assert_eq!(body["priority"], 4);
    assert_eq!(body["tags"], json!(["a", "b"]));
    assert_eq!(body["icon"], "https://example.com/i.png");
    assert_eq!(body["content_type"], "text/markdown");
    let push = h.last().await;
    assert_eq!(push.url.as_deref(), Some("https://example.com/from-header"));
    assert_eq!(push.title, "Header title");
    assert_eq!(push.body, "from **apprise**");

    // What the JSON sets wins; headers without `X-`, short names and the query fill the rest.
    let (status, body) = send(
        h.post("/?tags=q1")
            .header("Click", "https://example.com/header")
            .header("t", "header")
            .header("prio", "min")
            .json(&json!({
                "topic": h.user,
                "message": "m",
                "title": "json",
                "click": "https://example.com/json",
                "priority": 5,
            })),
    )
    .await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["title"], "json");
    assert_eq!(body["click"], "https://example.com/json");
    assert_eq!(body["priority"], 5);
    assert_eq!(body["tags"], json!(["q1"]));
    assert_eq!(
        h.last().await.url.as_deref(),
        Some("https://example.com/json")
    );

    // A bad priority header is refused as in the raw form.
    let (status, body) = send(
        h.post("/")
            .header("X-Priority", "loud")
            .json(&json!({ "topic": h.user, "message": "m" })),
    )
    .await;
    assert_ntfy_error(status, &body, 40007);
    assert_eq!(h.count().await, 2);
}

#[tokio::test]
async fn ntfy_publish_alias_for_webhooks() {
    let h = start().await;
    for alias in ["publish", "send", "trigger"] {
        let (status, body) = send(h.get(&format!(
            "/{}/{alias}?message=hook%20{alias}&title=Hook",
            h.user
        )))
        .await;
        assert_eq!(status, 200, "{body}");
        assert_eq!(body["message"], format!("hook {alias}"));
        assert_eq!(h.last().await.title, "Hook");
    }
    // Subscribing is not served, and is not a Bark push with the body "json".
    let (status, body) = send(h.get(&format!("/{}/json", h.user))).await;
    assert_ntfy_error(status, &body, 40401);
    assert_eq!(h.count().await, 3);
}

#[tokio::test]
async fn ntfy_refusals() {
    let h = start().await;
    let bogus = "C".repeat(30);
    let (status, body) = send(h.put(&format!("/{bogus}")).body("x")).await;
    assert_ntfy_error(status, &body, 40101);
    assert_eq!(body["error"], "unauthorized");

    let (status, body) = send(
        h.put(&format!("/{}", h.user))
            .header("X-Priority", "loud")
            .body("x"),
    )
    .await;
    assert_ntfy_error(status, &body, 40007);

    let (status, body) = send(h.post("/").json(&json!({ "topic": "a b", "message": "x" }))).await;
    assert_ntfy_error(status, &body, 40009);
    let (status, body) = send(h.post("/").json(&json!({ "message": "no topic" }))).await;
    assert_ntfy_error(status, &body, 40009);

    let (status, body) = send(h.post("/").header("content-type", "text/plain").body("x")).await;
    assert_ntfy_error(status, &body, 40017);

    let (status, body) = send(h.put(&format!("/{}", h.user)).body(vec![0xff, 0xfe])).await;
    assert_ntfy_error(status, &body, 40011);

    let (status, body) = send(h.put(&format!("/{}", h.user)).body("x".repeat(300_000))).await;
    assert_ntfy_error(status, &body, 41301);
    assert_eq!(h.count().await, 0);
}

#[tokio::test]
async fn ntfy_rate_limit() {
    let h = start_with(1).await;
    let (status, _) = send(h.put(&format!("/{}", h.user)).body("one")).await;
    assert_eq!(status, 200);
    let (status, retry, body) = send_limited(h.put(&format!("/{}", h.user)).body("two")).await;
    assert_eq!(status, 429);
    assert_eq!(body["code"], 42901);
    assert_eq!(body["http"], 429);
    assert!(
        body["error"]
            .as_str()
            .is_some_and(|e| e.starts_with("limit reached"))
    );
    assert!(retry.is_some());
    assert_eq!(h.count().await, 1);
}

// ----- Gotify -----

fn assert_gotify_error(status: StatusCode, body: &Value, code: u16, error: &str) {
    assert_eq!(status.as_u16(), code, "{body}");
    assert_eq!(keys_of(body), ["error", "errorCode", "errorDescription"]);
    assert_eq!(body["error"], error);
    assert_eq!(body["errorCode"], code);
    assert!(body["errorDescription"].is_string());
}

#[tokio::test]
async fn gotify_apprise_json_with_header_key() {
    let h = start().await;
    let extras = json!({
        "client::display": { "contentType": "text/markdown" },
        "client::notification": { "click": { "url": "https://example.com/build/9" } },
    });
    let (status, body) = send(
        h.post("/message")
            .header("X-Gotify-Key", &h.user)
            .json(&json!({
                "title": "Build",
                "message": "## passed",
                "priority": 5,
                "extras": extras,
            })),
    )
    .await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(
        keys_of(&body),
        [
            "appid", "date", "extras", "id", "message", "priority", "title"
        ]
    );
    let push = h.last().await;
    assert_eq!(
        body["id"].as_i64(),
        Some(push.seq),
        "the id is a number: {body}"
    );
    assert_eq!(body["appid"], 1);
    assert_eq!(body["message"], "## passed");
    assert_eq!(body["title"], "Build");
    assert_eq!(body["priority"], 5);
    assert_eq!(body["extras"], extras);
    assert!(body["date"].as_str().is_some_and(|d| d.contains('T')));
    assert_eq!(push.title, "Build");
    assert_eq!(push.body, "## passed");
    assert_eq!(push.url.as_deref(), Some("https://example.com/build/9"));
    assert_eq!(push.source, "gotify");
}

#[tokio::test]
async fn gotify_form_with_query_token_and_bearer() {
    let h = start().await;
    let (status, body) = send(h.post_form(
        &format!("/message?token={}", h.user),
        &[("message", "form body"), ("priority", "3")],
    ))
    .await;
    assert_eq!(status, 200, "{body}");
    assert!(body["id"].is_i64());
    assert_eq!(body["priority"], 3);
    assert_eq!(body["title"], "");
    assert!(body.get("extras").is_none());
    let push = h.last().await;
    assert_eq!(push.body, "form body");
    assert_eq!(push.title, "form body");

    // A body with `message` and no receiver is Gotify's, with the key as a Bearer token.
    let (status, body) = send(
        h.post("/message")
            .bearer_auth(&h.user)
            .json(&json!({ "message": "bearer" })),
    )
    .await;
    assert_eq!(status, 200, "{body}");
    assert!(body["id"].is_i64());

    // The wechat-push API keeps `/message` with receiver/title/body.
    let (status, body) = send(h.post_form(
        "/message",
        &[
            ("key", h.user.as_str()),
            ("receiver", USER),
            ("title", "Native"),
            ("body", "b"),
        ],
    ))
    .await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["success"], true);
    assert_eq!(h.last().await.source, "message");
}

#[tokio::test]
async fn gotify_refusals() {
    let h = start().await;
    let (status, body) = send(h.post("/message").json(&json!({ "message": "no token" }))).await;
    assert_gotify_error(status, &body, 401, "Unauthorized");

    let (status, body) = send(
        h.post("/message")
            .header("X-Gotify-Key", "D".repeat(30))
            .json(&json!({ "message": "bad token" })),
    )
    .await;
    assert_gotify_error(status, &body, 401, "Unauthorized");

    let (status, body) = send(
        h.post("/message")
            .header("X-Gotify-Key", &h.user)
            .json(&json!({ "title": "no message" })),
    )
    .await;
    assert_gotify_error(status, &body, 400, "Bad Request");

    let (status, body) = send(
        h.post("/message")
            .header("X-Gotify-Key", &h.user)
            .json(&json!({ "message": "m", "priority": "high" })),
    )
    .await;
    assert_gotify_error(status, &body, 400, "Bad Request");

    let (status, body) = send(
        h.post(&format!("/message?token={}", h.user))
            .header("content-type", "application/json")
            .body("{broken"),
    )
    .await;
    assert_gotify_error(status, &body, 400, "Bad Request");

    // An admin key must name a target, which Gotify cannot: 400 in Gotify's words.
    let (status, body) = send(
        h.post("/message")
            .header("X-Gotify-Key", &h.admin)
            .json(&json!({ "message": "m" })),
    )
    .await;
    assert_gotify_error(status, &body, 400, "Bad Request");
    assert_eq!(h.count().await, 0);
}

#[tokio::test]
async fn gotify_rate_limit() {
    let h = start_with(1).await;
    let push = || {
        h.post("/message")
            .header("X-Gotify-Key", &h.user)
            .json(&json!({ "message": "m" }))
    };
    let (status, _) = send(push()).await;
    assert_eq!(status, 200);
    let (status, retry, body) = send_limited(push()).await;
    assert_gotify_error(status, &body, 429, "Too Many Requests");
    assert!(retry.is_some());
}

#[tokio::test]
async fn gotify_lists_history_newest_first() {
    let h = start().await;
    for i in 1..=3 {
        let (status, _) = send(
            h.post("/message")
                .header("X-Gotify-Key", &h.user)
                .json(&json!({ "title": format!("T{i}"), "message": format!("m{i}") })),
        )
        .await;
        assert_eq!(status, 200);
    }
    // Someone else's push is not listed.
    let (status, _) = send(h.put(&format!("/{}", h.other)).body("other")).await;
    assert_eq!(status, 200);

    let (status, body) = send(h.get("/message?limit=2").header("X-Gotify-Key", &h.user)).await;
    assert_eq!(status, 200, "{body}");
    let messages = body["messages"].as_array().expect("messages");
    assert_eq!(messages.len(), 2);
    assert_eq!(messages[0]["title"], "T3");
    assert_eq!(messages[1]["title"], "T2");
    assert_eq!(
        keys_of(&messages[0]),
        ["appid", "date", "id", "message", "priority", "title"]
    );
    let second = messages[1]["id"].as_i64().expect("numeric id");
    assert_eq!(body["paging"]["size"], 2);
    assert_eq!(body["paging"]["limit"], 2);
    assert_eq!(body["paging"]["since"], second);
    let next = body["paging"]["next"].as_str().expect("next");
    assert_eq!(next, h.url(&format!("/message?limit=2&since={second}")));

    let (status, body) = send(h.client.get(next).header("X-Gotify-Key", &h.user)).await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["messages"].as_array().map(Vec::len), Some(1));
    assert_eq!(body["messages"][0]["title"], "T1");
    assert_eq!(body["messages"][0]["message"], "m1");
    assert_eq!(body["paging"], json!({ "size": 1, "since": 0, "limit": 2 }));

    let (status, body) = send(h.get(&format!("/message?token={}&limit=500", h.user))).await;
    assert_gotify_error(status, &body, 400, "Bad Request");
    let (status, body) = send(h.get("/message")).await;
    assert_gotify_error(status, &body, 401, "Unauthorized");
}

// ----- ServerChan -----

fn assert_serverchan_ok(status: StatusCode, body: &Value, id: &str) {
    assert_eq!(status, 200, "{body}");
    assert_eq!(
        *body,
        json!({
            "code": 0,
            "message": "",
            "data": { "pushid": id, "readkey": id, "error": "SUCCESS", "errno": 0 }
        })
    );
}

#[tokio::test]
async fn serverchan_get_post_and_json() {
    let h = start().await;
    let (status, body) = send(h.get(&format!(
        "/{}.send?title=%E6%8A%A5%E8%AD%A6&desp=**cpu**%20high&short=cpu",
        h.user
    )))
    .await;
    let push = h.last().await;
    assert_serverchan_ok(status, &body, &push.id);
    assert_eq!(push.title, "报警");
    assert_eq!(push.body, "**cpu** high");
    assert_eq!(push.summary.as_deref(), Some("cpu"));
    assert_eq!(push.source, "serverchan");

    let (status, body) = send(h.post_form(
        &format!("/{}.send", h.user),
        &[("text", "form title"), ("desp", "form desp")],
    ))
    .await;
    let push = h.last().await;
    assert_serverchan_ok(status, &body, &push.id);
    assert_eq!(
        (push.title.as_str(), push.body.as_str()),
        ("form title", "form desp")
    );

    let (status, body) = send(
        h.post(&format!("/{}.send", h.user))
            .json(&json!({ "title": "json", "desp": "d", "channel": "9" })),
    )
    .await;
    let push = h.last().await;
    assert_serverchan_ok(status, &body, &push.id);
    assert_eq!(push.title, "json");
}

#[tokio::test]
async fn serverchan_refusals() {
    let h = start_with(1).await;
    let check = |status: StatusCode, body: &Value, code: u16| {
        assert_eq!(status.as_u16(), code, "{body}");
        assert_eq!(keys_of(body), ["code", "data", "message"]);
        assert_eq!(body["code"], code);
        assert_eq!(body["data"], Value::Null);
    };
    let (status, body) = send(h.get(&format!("/{}.send?desp=only", h.user))).await;
    check(status, &body, 400);
    let (status, body) = send(h.get(&format!("/{}.send?title=t", "E".repeat(30)))).await;
    check(status, &body, 401);
    let (status, body) = send(h.get("/.send?title=t")).await;
    check(status, &body, 401);
    let (status, _) = send(h.get(&format!("/{}.send?title=1", h.user))).await;
    assert_eq!(status, 200);
    let (status, retry, body) = send_limited(h.get(&format!("/{}.send?title=2", h.user))).await;
    check(status, &body, 429);
    assert!(retry.is_some());
    assert_eq!(h.count().await, 1);
}

// ----- PushDeer -----

fn pushdeer_results(body: &Value) -> Vec<Value> {
    body["content"]["result"]
        .as_array()
        .expect("result")
        .iter()
        .map(|r| serde_json::from_str(r.as_str().expect("a string")).expect("JSON inside"))
        .collect()
}

#[tokio::test]
async fn pushdeer_two_keys_and_types() {
    let h = start().await;
    let (status, body) = send(h.post_form(
        "/message/push",
        &[
            ("pushkey", &format!("{},{}", h.user, h.other)),
            ("text", "Hello"),
            ("desp", "**world**"),
            ("type", "markdown"),
        ],
    ))
    .await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(keys_of(&body), ["code", "content"]);
    assert_eq!(body["code"], 0);
    let results = pushdeer_results(&body);
    assert_eq!(results.len(), 2);
    for r in &results {
        assert_eq!(*r, json!({ "counts": 1, "logs": [], "success": "ok" }));
    }
    let pushes = h.pushes().await;
    assert_eq!(pushes.len(), 2);
    assert_eq!(pushes[0].target, format!("user:{USER}"));
    assert_eq!(pushes[1].target, format!("user:{MEMBER}"));
    for p in &pushes {
        assert_eq!(
            (p.title.as_str(), p.body.as_str(), p.source.as_str()),
            ("Hello", "**world**", "pushdeer")
        );
    }

    // JSON, an image, and one bad key among good ones.
    let bogus = "F".repeat(30);
    let (status, body) = send(h.post("/message/push").json(&json!({
        "pushkey": format!("{},{bogus}", h.user),
        "text": "https://example.com/cat.png",
        "type": "image",
    })))
    .await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["code"], 0);
    let results = pushdeer_results(&body);
    assert_eq!(results[0]["success"], "ok");
    assert_eq!(results[1]["success"], "error");
    assert_eq!(results[1]["counts"], 0);
    assert!(results[1]["error"].is_string());
    assert_eq!(h.last().await.body, "![](https://example.com/cat.png)");

    // GET with the query.
    let (status, body) = send(h.get(&format!("/message/push?pushkey={}&text=q", h.user))).await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(pushdeer_results(&body)[0]["success"], "ok");
    assert_eq!(h.count().await, 4);
}

#[tokio::test]
async fn pushdeer_refusals() {
    let h = start_with(1).await;
    let check = |status: StatusCode, body: &Value, code: u16| {
        assert_eq!(status.as_u16(), code, "{body}");
        assert_eq!(keys_of(body), ["code", "error"]);
        assert_eq!(body["code"], 80_000 + u32::from(code));
    };
    let (status, body) = send(h.post_form("/message/push", &[("text", "t")])).await;
    check(status, &body, 401);
    let (status, body) = send(h.post_form("/message/push", &[("pushkey", &h.user)])).await;
    check(status, &body, 400);
    let (status, body) = send(h.post_form(
        "/message/push",
        &[("pushkey", &"G".repeat(30)), ("text", "t")],
    ))
    .await;
    check(status, &body, 401);
    let (status, body) = send(h.post_form(
        "/message/push",
        &[("pushkey", &h.user), ("text", "t"), ("type", "video")],
    ))
    .await;
    check(status, &body, 400);
    let (status, _) =
        send(h.post_form("/message/push", &[("pushkey", &h.user), ("text", "1")])).await;
    assert_eq!(status, 200);
    let (status, retry, body) =
        send_limited(h.post_form("/message/push", &[("pushkey", &h.user), ("text", "2")])).await;
    check(status, &body, 429);
    assert!(retry.is_some());
    assert_eq!(h.count().await, 1);
}

// ----- beside the callback -----

#[tokio::test]
async fn the_app_serves_push_routes_beside_the_callback_and_healthz() {
    let dir = tempfile::tempdir().expect("temp dir");
    let url = format!("sqlite://{}?mode=rwc", dir.path().join("full.db").display());
    let store = Store::open(&url).await.expect("store opens");
    let config = Config::from_toml(
        "[server]\nlisten = \"127.0.0.1:0\"\n\
         [wechat]\ntoken = \"huixinTestToken42\"\napp_id = \"wx49f0ab532d5d035a\"\n\
         app_secret = \"testsecret\"\n\
         api_base = \"http://127.0.0.1:9\"\n\
         [push]\ntemplate_id = \"tpl\"\n",
    )
    .expect("config");
    let pushes = Pushes::new(&config, store.clone());
    let key = pushes
        .create_key(&Scope::User(USER.into()), "user", None)
        .await
        .expect("key");
    drop(pushes);
    let app = huixin::app::App::builder(config)
        .store(store.clone())
        .build()
        .await
        .expect("app builds");
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("binds");
    let base = format!("http://{}", listener.local_addr().expect("addr"));
    let task = AbortOnDrop(tokio::spawn(async move {
        let _ = app.serve(listener, std::future::pending()).await;
    }));
    let client = reqwest::Client::new();

    // The server keeps its own JSON `/healthz`; the callback path is not a key.
    let (status, body) = send(client.get(format!("{base}/healthz"))).await;
    assert_eq!(status, 200);
    assert_eq!(body["status"], "ok");
    let response = client
        .get(format!("{base}/wechat?body=x"))
        .send()
        .await
        .expect("request");
    assert_ne!(response.status(), 200);
    let (status, body) = send(client.get(format!("{base}/ping"))).await;
    assert_eq!(status, 200);
    assert_eq!(body["message"], "pong");
    let (status, body) = send(client.get(format!("{base}/{key}/beside"))).await;
    assert_bark_ok(status, &body);
    let rows = store
        .backend()
        .push_history(None, 0, 0, 10)
        .await
        .expect("history");
    assert_eq!(rows.len(), 1);
    drop(task);
}

#[tokio::test]
async fn native_push_answers_413_for_an_oversized_body() {
    let h = start().await;
    let (status, body) = send(
        h.client
            .post(h.url("/api/v1/push"))
            .bearer_auth(&h.user)
            .json(&json!({ "title": "big", "body": "x".repeat(300_000) })),
    )
    .await;
    assert_eq!(status, 413, "{body}");
    assert_eq!(body["status"], 413);
    assert!(h.pushes().await.is_empty());
}

#[tokio::test]
async fn a_followers_key_sees_only_its_own_delivery_of_a_topic_push() {
    let h = start().await;
    h.store
        .backend()
        .topic_join("ops", "oSecondMember01", 1)
        .await
        .expect("join");
    let (status, accepted) = send(
        h.client
            .post(h.url("/api/v1/push"))
            .bearer_auth(&h.topic)
            .json(&json!({ "title": "Deploy", "body": "done" })),
    )
    .await;
    assert_eq!(status, 200, "{accepted}");
    assert_eq!(accepted["recipients"], 2);
    let id = accepted["id"].as_str().expect("id");

    let openids = |status: &Value| -> Vec<String> {
        status["recipients"]
            .as_array()
            .expect("recipients")
            .iter()
            .map(|r| r["openid"].as_str().expect("openid").to_owned())
            .collect()
    };
    // The member's personal key: their own row only, and counts to match.
    let (status, seen) = send(
        h.client
            .get(h.url(&format!("/api/v1/push/{id}")))
            .bearer_auth(&h.other),
    )
    .await;
    assert_eq!(status, 200, "{seen}");
    assert_eq!(openids(&seen), [MEMBER]);
    assert_eq!(seen["counts"]["pending"], 1, "{seen}");
    // The topic's key sees both deliveries, not who the members are; an admin key sees them.
    let (_, topic) = send(
        h.client
            .get(h.url(&format!("/api/v1/push/{id}")))
            .bearer_auth(&h.topic),
    )
    .await;
    let rows = topic["recipients"].as_array().expect("recipients");
    assert_eq!(rows.len(), 2, "{topic}");
    assert!(rows.iter().all(|r| r.get("openid").is_none()), "{topic}");
    let (_, all) = send(
        h.client
            .get(h.url(&format!("/api/v1/push/{id}")))
            .bearer_auth(&h.admin),
    )
    .await;
    let mut all = openids(&all);
    all.sort();
    assert_eq!(all, [MEMBER, "oSecondMember01"]);
}

#[tokio::test]
async fn a_body_trickling_past_the_deadline_is_refused() {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let h = start().await;
    let addr = h.base.trim_start_matches("http://").to_owned();
    let mut stream = tokio::net::TcpStream::connect(&addr)
        .await
        .expect("connects");
    let head = format!(
        "POST /api/v1/push HTTP/1.1\r\nHost: {addr}\r\nAuthorization: Bearer {}\r\n\
         Content-Type: application/json\r\nContent-Length: 100\r\n\r\n{{\"title\": ",
        h.user
    );
    stream.write_all(head.as_bytes()).await.expect("writes");
    // The rest of the body never comes; the answer does, once the deadline has passed.
    let mut answer = Vec::new();
    let read = tokio::time::timeout(
        huixin::server::callback::BODY_READ_TIMEOUT * 3,
        stream.read_to_end(&mut answer),
    )
    .await;
    let answer = String::from_utf8_lossy(&answer);
    assert!(
        read.is_ok() || answer.contains("\r\n\r\n"),
        "no answer after three times the deadline"
    );
    assert!(answer.starts_with("HTTP/1.1 400"), "{answer}");
    assert!(answer.contains("did not arrive within"), "{answer}");
    assert!(h.pushes().await.is_empty());
}

// ----- the store's failures -----

/// A push body that needs new pages in the database.
fn large_body() -> String {
    "0123456789abcdef".repeat(3 * 1024)
}

#[tokio::test]
async fn a_full_database_refuses_pushes_and_recovers_without_losing_one() {
    let h = start().await;
    let db = h._dir.path().join("push.db");
    // As a full disk would: every write that needs a page fails.
    full_then_freed(
        &h,
        &db,
        || async { h.store.limit_pages(Some(1)).await.expect("page limit") },
        || async { h.store.limit_pages(None).await.expect("limit lifted") },
    )
    .await;
}

/// A tmpfs of 2 MiB mounted on a temporary folder, unmounted on drop; None (with a note)
/// where mounting is not allowed.
struct Tmpfs(tempfile::TempDir);

impl Tmpfs {
    fn mount() -> Option<Self> {
        let dir = tempfile::tempdir().expect("temp dir");
        let mounted = std::process::Command::new("mount")
            .args(["-t", "tmpfs", "-o", "size=2m", "tmpfs"])
            .arg(dir.path())
            .output()
            .is_ok_and(|o| o.status.success());
        if mounted {
            Some(Self(dir))
        } else {
            println!("note: cannot mount a tmpfs here (not root?); the full-disk test is skipped");
            None
        }
    }
}

impl Drop for Tmpfs {
    fn drop(&mut self) {
        let _ = std::process::Command::new("umount")
            .arg("-l")
            .arg(self.0.path())
            .status();
    }
}

#[tokio::test]
async fn a_full_disk_refuses_pushes_and_recovers_without_losing_one() {
    let Some(fs) = Tmpfs::mount() else {
        return;
    };
    let db = fs.0.path().join("push.db");
    let filler = fs.0.path().join("filler");
    let h = start_on(1000, tempfile::tempdir().expect("temp dir"), &db).await;
    full_then_freed(
        &h,
        &db,
        || async {
            use std::io::Write;
            let mut file = std::fs::File::create(&filler).expect("filler");
            let chunk = vec![0u8; 4096];
            while file.write_all(&chunk).and_then(|()| file.flush()).is_ok() {}
        },
        || async { std::fs::remove_file(&filler).expect("filler removed") },
    )
    .await;
    drop(h);
}

/// Pushes once, fills the database (`fill`), checks pushes are refused and the health check
/// says so, frees it (`free`), and checks a push accepted then is stored for good.
async fn full_then_freed<F, G>(
    h: &Harness,
    db: &std::path::Path,
    fill: impl FnOnce() -> F,
    free: impl FnOnce() -> G,
) where
    F: std::future::Future<Output = ()>,
    G: std::future::Future<Output = ()>,
{
    let push = |title: &str| {
        h.post("/api/v1/push")
            .bearer_auth(&h.user)
            .json(&json!({ "title": title, "body": large_body() }))
    };
    let (status, _) = send(push("before")).await;
    assert_eq!(status, 200);

    // Several failures in a row, as on a real full disk (the second one used to wedge the
    // writer's connection).
    fill().await;
    // A large push, then one to many followers (its recipients fail to fit, not its body),
    // then a large one again.
    let many: Vec<String> = (0..1000)
        .map(|i| format!("oManyFollowersOfTheAccount{i:06}"))
        .collect();
    let to_many = h
        .post("/api/v1/push")
        .bearer_auth(&h.admin)
        .json(&json!({ "to": many, "title": "to many", "body": "short" }));
    for request in [push("while full 1"), to_many, push("while full 2")] {
        let (status, body) = send(request).await;
        assert!(
            status.is_server_error(),
            "a push that was not stored is not accepted: {status} {body}"
        );
    }
    let (status, body) = send(h.get("/health")).await;
    assert_eq!(status, 503, "{body}");
    assert_eq!(body["database"], "red", "{body}");

    let session = |value: &str| {
        vec![huixin::store::SessionChange::Set {
            key: "step".into(),
            value: format!("\"{value}{}\"", "-".repeat(8 * 1024)),
            expires_at: None,
        }]
    };
    assert!(
        h.store
            .backend()
            .session_apply(USER, &session("while full"), 1)
            .await
            .is_err(),
        "a session write that was not stored is an error"
    );
    free().await;
    // Session writes go through the same connection: stored for good once there is room.
    h.store
        .backend()
        .session_apply(USER, &session("after"), 1)
        .await
        .expect("stored");
    let stored = h.store.backend().session_load(USER, 1).await.expect("read");
    assert!(
        stored[0].1.starts_with("\"after"),
        "{:?}",
        &stored[0].1[..10]
    );
    let (status, body) = send(push("after")).await;
    assert_eq!(status, 200, "{body}");
    let id = body["id"].as_str().expect("an id").to_owned();

    // Stored and committed: readable on the read connections, on its page, and by another
    // process, which can also still write.
    assert!(
        h.store
            .backend()
            .push_by_id(&id)
            .await
            .expect("read")
            .is_some()
    );
    let (status, _) = send(h.get(&format!("/m/{id}"))).await;
    assert_eq!(
        status, 200,
        "the detail page of the push accepted after the disk was freed"
    );
    let titles: Vec<String> = h.pushes().await.into_iter().map(|p| p.title).collect();
    assert_eq!(titles, ["before", "after"]);
    let url = format!("sqlite://{}", db.display());
    let other = Store::open(&url).await.expect("another process opens it");
    assert!(
        other
            .backend()
            .push_by_id(&id)
            .await
            .expect("read")
            .is_some()
    );
    assert!(
        other
            .backend()
            .topic_create("elsewhere", true, "", 1)
            .await
            .expect("another process can write: the lock is not held")
    );
    let (status, body) = send(h.get("/health")).await;
    assert_eq!(status, 200, "{body}");
}

#[tokio::test]
async fn a_topic_key_sees_the_delivery_but_not_who_the_members_are() {
    let h = start().await;
    let (status, body) = send(
        h.post("/api/v1/push")
            .bearer_auth(&h.topic)
            .json(&json!({ "title": "to ops", "body": "b" })),
    )
    .await;
    assert_eq!(status, 200, "{body}");
    let id = body["id"].as_str().expect("an id").to_owned();
    let path = format!("/api/v1/push/{id}");

    let (status, seen) = send(h.get(&path).bearer_auth(&h.topic)).await;
    assert_eq!(status, 200, "{seen}");
    assert_eq!(seen["counts"]["pending"], 1, "{seen}");
    assert_eq!(seen["recipients"][0]["status"], "pending", "{seen}");
    assert!(
        !seen.to_string().contains(MEMBER),
        "no OpenID for a topic key: {seen}"
    );

    let (status, seen) = send(h.get(&path).bearer_auth(&h.admin)).await;
    assert_eq!(status, 200, "{seen}");
    assert_eq!(
        seen["recipients"][0]["openid"], MEMBER,
        "an admin key sees who"
    );

    let (status, seen) = send(h.get(&path).bearer_auth(&h.other)).await;
    assert_eq!(status, 200, "{seen}");
    assert_eq!(
        seen["recipients"][0]["openid"], MEMBER,
        "the member's own key sees its own row"
    );
}
