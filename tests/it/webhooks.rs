//! The webhook outbox against a real receiver: an HTTP server on 127.0.0.1:0 that checks every
//! signature with the scheme the README documents, records each POST, and answers as each
//! delivery's body tells it (fail N times, hang N times, 410, redirect, a JSON reply after a
//! delay). Real SQLite files. Also the README's Python and Node verification snippets, run
//! against a real delivery.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use axum::body::{Body, Bytes};
use axum::extract::{Query, State};
use axum::http::{HeaderMap, Request, StatusCode};
use axum::response::{IntoResponse, Response};
use hmac::{Hmac, KeyInit, Mac};
use huixin::config::Config;
use huixin::push::{Pushes, Scope};
use huixin::store::Store;
use huixin::store::apps::{AttemptRow, DeliveryRow, NewApp};
use huixin::webhooks::{self, Answered, Call, Outgoing, Webhooks};
use serde_json::{Value, json};
use sha2::{Digest, Sha256};
use tokio_util::sync::CancellationToken;
use tower::ServiceExt;

const OPS_SECRET: &str = "ops-secret-0123456789";
const APP_SECRET: &str = "app-secret-abcdefghij";
const OTHER_SECRET: &str = "other-secret-klmnopqrs";

// ----- the receiver -----

/// One POST as the receiver saw it.
#[derive(Debug, Clone)]
struct Hit {
    delivery: String,
    event: String,
    body: Value,
    raw: Bytes,
    headers: HeaderMap,
    /// The status answered (0: hung up on).
    status: u16,
    at: Instant,
    /// When the answer was ready (after any delay).
    done: Instant,
}

#[derive(Default)]
struct Seen {
    hits: Vec<Hit>,
    per_delivery: HashMap<String, u32>,
    bad: Vec<String>,
}

#[derive(Clone)]
struct Receiver {
    base: String,
    seen: Arc<Mutex<Seen>>,
}

/// Checks a POST the way the README tells receivers to: the headers, then the signature
/// `sha256=hex(HMAC-SHA256(secret, TIMESTAMP "." BODY))` and a timestamp within 5 minutes.
fn check(secret: &str, headers: &HeaderMap, body: &[u8]) -> Result<(), String> {
    let header = |name: &str| {
        headers
            .get(name)
            .and_then(|v| v.to_str().ok())
            .unwrap_or_default()
            .to_owned()
    };
    if header("content-type") != "application/json" {
        return Err(format!("content-type {:?}", header("content-type")));
    }
    if !header("user-agent").starts_with("huixin/") {
        return Err(format!("user-agent {:?}", header("user-agent")));
    }
    if header("x-huixin-event").is_empty() || header("x-huixin-delivery").is_empty() {
        return Err("no event or delivery header".into());
    }
    let timestamp = header("x-huixin-timestamp");
    let at: i64 = timestamp
        .parse()
        .map_err(|_| format!("timestamp {timestamp:?}"))?;
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs() as i64;
    if (now - at).abs() > 300 {
        return Err(format!("stale timestamp {at}"));
    }
    let mut mac = Hmac::<Sha256>::new_from_slice(secret.as_bytes()).unwrap();
    mac.update(timestamp.as_bytes());
    mac.update(b".");
    mac.update(body);
    let expected = format!("sha256={}", hex::encode(mac.finalize().into_bytes()));
    if header("x-huixin-signature") != expected {
        return Err(format!("signature {:?}", header("x-huixin-signature")));
    }
    Ok(())
}

async fn receive(
    State(receiver): State<Receiver>,
    Query(query): Query<HashMap<String, String>>,
    headers: HeaderMap,
    raw: Bytes,
) -> Response {
    let at = Instant::now();
    let secret = match query.get("s").map(String::as_str) {
        Some("ops") => OPS_SECRET,
        Some("app") => APP_SECRET,
        Some("other") => OTHER_SECRET,
        _ => "",
    };
    let body: Value = serde_json::from_slice(&raw).unwrap_or(Value::Null);
    let delivery = headers
        .get("x-huixin-delivery")
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default()
        .to_owned();
    let event = headers
        .get("x-huixin-event")
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default()
        .to_owned();
    let n = {
        let mut seen = receiver.seen.lock().unwrap();
        if let Err(e) = check(secret, &headers, &raw) {
            seen.bad.push(format!("{delivery}: {e}"));
            return StatusCode::UNAUTHORIZED.into_response();
        }
        let n = seen.per_delivery.entry(delivery.clone()).or_default();
        *n += 1;
        *n
    };
    let times = |name: &str| body[name].as_u64().unwrap_or(0) as u32;
    let (status, answer): (u16, Response) = if n <= times("hang") {
        let hit = Hit {
            delivery,
            event,
            body: body.clone(),
            raw,
            headers,
            status: 0,
            at,
            done: at,
        };
        receiver.seen.lock().unwrap().hits.push(hit);
        tokio::time::sleep(Duration::from_secs(60)).await;
        return StatusCode::OK.into_response();
    } else if n <= times("fail") {
        (
            500,
            (StatusCode::INTERNAL_SERVER_ERROR, "boom").into_response(),
        )
    } else if body["gone"] == true {
        (410, StatusCode::GONE.into_response())
    } else if body["redirect"] == true {
        (
            302,
            (
                StatusCode::FOUND,
                [("location", "http://127.0.0.1:9/elsewhere")],
            )
                .into_response(),
        )
    } else if let Some(reply) = body.get("reply") {
        tokio::time::sleep(Duration::from_millis(
            body["delay_ms"].as_u64().unwrap_or(0),
        ))
        .await;
        (200, axum::Json(reply.clone()).into_response())
    } else if body["big"] == true {
        let big = json!({ "reply": { "type": "text", "content": "x".repeat(70 * 1024) } });
        (200, axum::Json(big).into_response())
    } else {
        (200, "ok".into_response())
    };
    receiver.seen.lock().unwrap().hits.push(Hit {
        delivery,
        event,
        body,
        raw,
        headers,
        status,
        at,
        done: Instant::now(),
    });
    answer
}

impl Receiver {
    async fn start() -> Self {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let receiver = Receiver {
            base: format!("http://{}", listener.local_addr().unwrap()),
            seen: Arc::default(),
        };
        let app = axum::Router::new()
            .route("/hook", axum::routing::post(receive))
            .with_state(receiver.clone());
        tokio::spawn(async move {
            let _ = axum::serve(listener, app).await;
        });
        receiver
    }

    /// The URL of the receiver checking signatures with secret `s` (`ops`, `app`, `other`).
    fn url(&self, s: &str) -> String {
        format!("{}/hook?s={s}", self.base)
    }

    fn hits(&self) -> Vec<Hit> {
        self.seen.lock().unwrap().hits.clone()
    }

    fn hits_of(&self, delivery: &str) -> Vec<Hit> {
        self.hits()
            .into_iter()
            .filter(|h| h.delivery == delivery)
            .collect()
    }

    fn assert_all_signed(&self) {
        let seen = self.seen.lock().unwrap();
        assert!(seen.bad.is_empty(), "badly signed POSTs: {:?}", seen.bad);
    }
}

// ----- setup -----

struct Env {
    dir: tempfile::TempDir,
    config: Config,
    store: Store,
    webhooks: Webhooks,
    receiver: Receiver,
}

/// The test config: short timeouts, backoffs and leases (`extra` lines of `[apps]` replace
/// them); `[[webhooks]] ops` at the receiver.
fn config(receiver: &Receiver, extra: &str) -> Config {
    let mut apps: Vec<&str> = vec![
        "webhook_timeout_ms = 400",
        "webhook_retry_backoff_ms = 50",
        "webhook_max_attempts = 5",
        "webhook_lease_ms = 1000",
        "webhook_concurrency = 4",
    ];
    let key = |line: &str| line.split('=').next().unwrap_or("").trim().to_owned();
    for line in extra.lines().filter(|l| !l.trim().is_empty()) {
        apps.retain(|l| key(l) != key(line));
        apps.push(line);
    }
    Config::from_toml(&format!(
        r#"
[apps]
{}

[[webhooks]]
name = "ops"
url = "{}"
secret = "{OPS_SECRET}"
events = ["follow", "message"]
"#,
        apps.join("\n"),
        receiver.url("ops")
    ))
    .unwrap()
}

fn db_url(dir: &tempfile::TempDir) -> String {
    format!("sqlite://{}", dir.path().join("huixin.db").display())
}

async fn env_with(extra: &str) -> Env {
    let receiver = Receiver::start().await;
    let dir = tempfile::tempdir().unwrap();
    let config = config(&receiver, extra);
    let store = Store::open(&db_url(&dir)).await.unwrap();
    let webhooks = Webhooks::new(&config, store.clone());
    Env {
        dir,
        config,
        store,
        webhooks,
        receiver,
    }
}

async fn env() -> Env {
    env_with("").await
}

impl Env {
    /// Starts the worker; it stops when the token is cancelled (or the test ends).
    fn worker(&self) -> CancellationToken {
        let stop = CancellationToken::new();
        webhooks::spawn(self.webhooks.clone(), stop.clone().cancelled_owned());
        stop
    }

    /// Makes an app whose callback is the receiver with `secret` (`app`, `other`); its id and
    /// token.
    async fn app(&self, name: &str, s: &str) -> (i64, String) {
        let token = format!(
            "AT_{}",
            name.repeat(32).chars().take(32).collect::<String>()
        );
        let secret = if s == "app" { APP_SECRET } else { OTHER_SECRET };
        let hash = hex::encode(Sha256::digest(token.as_bytes()));
        let id = self
            .store
            .backend()
            .app_insert(&NewApp {
                name,
                callback_url: &self.receiver.url(s),
                callback_format: "huixin",
                replies: true,
                secret,
                return_url: "",
                created_at: 1_767_225_600,
                token_hash: &hash,
                token_prefix: &token[..6],
            })
            .await
            .unwrap();
        (id, token)
    }

    fn to_ops(&self, event: &str, ordering: &str, body: Value) -> Outgoing {
        Outgoing::to_config(&self.config.webhooks[0], event, ordering, body)
    }

    async fn to_app(&self, id: i64, event: &str, ordering: &str, body: Value) -> Outgoing {
        let app = self.store.backend().app(id).await.unwrap().unwrap();
        Outgoing::to_app(&app, event, ordering, body)
    }

    async fn delivery(&self, id: &str) -> DeliveryRow {
        self.store
            .backend()
            .webhook_delivery(id)
            .await
            .unwrap()
            .unwrap()
    }

    async fn attempts(&self, id: &str) -> Vec<AttemptRow> {
        let seq = self.delivery(id).await.seq;
        self.store.backend().webhook_attempts(&[seq]).await.unwrap()
    }

    /// Waits until delivery `id` is `delivered` or `failed`.
    async fn settled(&self, id: &str) -> DeliveryRow {
        self.settled_within(id, Duration::from_secs(15)).await
    }

    async fn settled_within(&self, id: &str, limit: Duration) -> DeliveryRow {
        let start = Instant::now();
        loop {
            let row = self.delivery(id).await;
            if row.state == "delivered" || row.state == "failed" {
                return row;
            }
            assert!(start.elapsed() < limit, "not settled in time: {row:?}");
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }
}

fn statuses(attempts: &[AttemptRow]) -> Vec<Option<i64>> {
    attempts.iter().map(|a| a.status).collect()
}

// ----- delivery -----

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_flaky_receiver_gets_each_event_once_in_order_and_other_followers_do_not_wait() {
    // Backoffs long enough that "u2 did not wait" is not a matter of scheduling luck.
    let env = env_with("webhook_retry_backoff_ms = 200").await;
    let _stop = env.worker();
    // u1's receiver fails each of its events twice before taking it; u2's are taken at once.
    let mut outgoing = Vec::new();
    for n in 1..=3 {
        outgoing.push(env.to_ops(
            "message",
            "u1",
            json!({ "openid": "u1", "n": n, "fail": 2 }),
        ));
    }
    for n in 1..=2 {
        outgoing.push(env.to_ops("message", "u2", json!({ "openid": "u2", "n": n })));
    }
    let ids = env.webhooks.enqueue(outgoing).await.unwrap();
    assert_eq!(ids.len(), 5);
    // Stored before anything is sent: every id is on record at once.
    for id in &ids {
        let row = env.delivery(id).await;
        assert_eq!(row.endpoint, "config:ops");
        assert_eq!(row.app_id, None);
    }
    for id in &ids {
        let row = env.settled(id).await;
        assert_eq!(row.state, "delivered", "{row:?}");
        assert_eq!(row.last_status, Some(200));
    }
    env.receiver.assert_all_signed();

    // Each taken (2xx) exactly once, by delivery id; every attempt with the same id.
    let hits = env.receiver.hits();
    for id in &ids {
        let taken: Vec<&Hit> = hits
            .iter()
            .filter(|h| &h.delivery == id && h.status == 200)
            .collect();
        assert_eq!(taken.len(), 1, "{id}: {taken:?}");
        assert_eq!(taken[0].event, "message");
        assert_eq!(
            taken[0].headers["x-huixin-event"].to_str().unwrap(),
            "message"
        );
    }
    // u1: three attempts each (500, 500, 200), recorded; strictly one after another.
    for id in &ids[..3] {
        let attempts = env.attempts(id).await;
        assert_eq!(
            statuses(&attempts),
            [Some(500), Some(500), Some(200)],
            "{attempts:?}"
        );
        assert_eq!(
            attempts.iter().map(|a| a.attempt).collect::<Vec<_>>(),
            [1, 2, 3]
        );
        assert_eq!(attempts[0].error.as_deref(), Some("HTTP 500: boom"));
        assert_eq!(attempts[2].error, None);
        assert_eq!(env.delivery(id).await.attempts, 3);
    }
    let u1: Vec<&Hit> = hits.iter().filter(|h| h.body["openid"] == "u1").collect();
    let order: Vec<u64> = u1.iter().map(|h| h.body["n"].as_u64().unwrap()).collect();
    assert_eq!(
        order,
        [1, 1, 1, 2, 2, 2, 3, 3, 3],
        "u1 in order, one at a time"
    );
    for pair in u1.windows(2) {
        assert!(
            pair[1].at >= pair[0].done,
            "an attempt started before the previous one ended"
        );
    }
    // u2 did not wait for u1's retries: both taken before u1's first event was.
    let u1_first_taken = u1.iter().find(|h| h.status == 200).unwrap().done;
    let u2: Vec<&Hit> = hits.iter().filter(|h| h.body["openid"] == "u2").collect();
    assert_eq!(
        u2.iter()
            .map(|h| h.body["n"].as_u64().unwrap())
            .collect::<Vec<_>>(),
        [1, 2]
    );
    assert!(
        u2.iter()
            .all(|h| h.status == 200 && h.done <= u1_first_taken)
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_hanging_receiver_times_out_is_retried_and_loses_nothing() {
    let env = env().await;
    let _stop = env.worker();
    let ids = env
        .webhooks
        .enqueue(vec![
            env.to_ops("message", "u1", json!({ "openid": "u1", "hang": 2 })),
            env.to_ops("message", "u1", json!({ "openid": "u1", "n": 2 })),
            env.to_ops("follow", "u9", json!({ "openid": "u9" })),
        ])
        .await
        .unwrap();
    for id in &ids {
        assert_eq!(env.settled(id).await.state, "delivered");
    }
    let attempts = env.attempts(&ids[0]).await;
    assert_eq!(statuses(&attempts), [None, None, Some(200)]);
    for a in &attempts[..2] {
        assert_eq!(
            a.error.as_deref(),
            Some("timed out after 400 ms (webhook_timeout_ms)")
        );
        assert!((350..2_000).contains(&a.duration_ms), "{}", a.duration_ms);
    }
    // The follower's next event went after; another follower's did not wait.
    let first_taken = env
        .receiver
        .hits_of(&ids[0])
        .into_iter()
        .find(|h| h.status == 200)
        .unwrap();
    assert!(env.receiver.hits_of(&ids[1])[0].at >= first_taken.done);
    assert!(env.receiver.hits_of(&ids[2])[0].done < first_taken.at);
    env.receiver.assert_all_signed();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn gone_redirects_exhausted_attempts_and_lost_secrets_fail() {
    let env = env_with("webhook_max_attempts = 3").await;
    let (revoked, _) = env.app("revoked", "app").await;
    let revoked_app = env.to_app(revoked, "follow", "u1", json!({ "n": 1 })).await;
    assert!(
        env.store
            .backend()
            .app_revoke(revoked, 1_767_225_700)
            .await
            .unwrap()
    );
    let mut removed = env.to_ops("follow", "u1", json!({}));
    removed.endpoint = "config:removed".into();
    let _stop = env.worker();
    let ids = env
        .webhooks
        .enqueue(vec![
            env.to_ops("follow", "a", json!({ "gone": true })),
            env.to_ops("follow", "b", json!({ "fail": 100 })),
            env.to_ops("follow", "c", json!({ "redirect": true })),
            revoked_app,
            removed,
        ])
        .await
        .unwrap();
    let rows = futures_util::future::join_all(ids.iter().map(|id| env.settled(id))).await;
    for row in &rows {
        assert_eq!(row.state, "failed", "{row:?}");
    }

    // 410: failed after one attempt.
    assert_eq!(rows[0].attempts, 1);
    assert_eq!(rows[0].last_status, Some(410));
    assert_eq!(
        rows[0].last_error.as_deref(),
        Some("HTTP 410 Gone: the receiver wants no more deliveries")
    );
    assert_eq!(env.receiver.hits_of(&ids[0]).len(), 1);

    // Always 500: failed once the attempts ran out.
    assert_eq!(rows[1].attempts, 3);
    assert_eq!(
        statuses(&env.attempts(&ids[1]).await),
        [Some(500), Some(500), Some(500)]
    );
    assert_eq!(
        rows[1].last_error.as_deref(),
        Some("HTTP 500: boom (gave up after 3 attempts)")
    );

    // A redirect is not followed: a failure naming where it pointed.
    assert_eq!(rows[2].attempts, 3);
    assert_eq!(rows[2].last_status, Some(302));
    let error = rows[2].last_error.as_deref().unwrap();
    assert!(
        error.starts_with("HTTP 302: redirect to http://127.0.0.1:9/elsewhere not followed"),
        "{error}"
    );
    assert_eq!(env.receiver.hits_of(&ids[2]).len(), 3);

    // A revoked app's delivery and a removed entry's fail without a POST.
    assert_eq!(rows[3].last_error.as_deref(), Some("app revoked"));
    assert_eq!(rows[3].attempts, 1);
    assert_eq!(
        rows[4].last_error.as_deref(),
        Some("no webhook removed in the config")
    );
    assert!(env.receiver.hits_of(&ids[3]).is_empty());
    assert!(env.receiver.hits_of(&ids[4]).is_empty());
    env.receiver.assert_all_signed();

    // Retention: kept 7 days, then purged with their attempts.
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs() as i64;
    assert_eq!(env.webhooks.purge(now).await.unwrap(), 0);
    assert_eq!(env.webhooks.purge(now + 8 * 86_400).await.unwrap(), 5);
    assert!(
        env.store
            .backend()
            .webhook_delivery(&ids[0])
            .await
            .unwrap()
            .is_none()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_app_delivery_is_signed_with_its_secret_and_config_entries_are_found_by_event() {
    let env = env().await;
    let (a, _) = env.app("shop", "app").await;
    let (b, _) = env.app("blog", "other").await;
    let _stop = env.worker();
    let ids = env
        .webhooks
        .enqueue(vec![
            env.to_app(a, "binding", "u1", json!({ "uid": "site-1" }))
                .await,
            env.to_app(b, "binding", "u1", json!({ "uid": "blog-1" }))
                .await,
        ])
        .await
        .unwrap();
    for id in &ids {
        assert_eq!(env.settled(id).await.state, "delivered");
    }
    // Each receiver checks its own secret: a wrong one would have been refused with 401.
    env.receiver.assert_all_signed();
    let row = env.delivery(&ids[0]).await;
    assert_eq!((row.app_id, row.endpoint.as_str()), (Some(a), "app:1"));

    let names = |event: &str| -> Vec<String> {
        env.webhooks
            .endpoints_for(event)
            .into_iter()
            .map(|h| h.name)
            .collect()
    };
    assert_eq!(names("follow"), ["ops"]);
    assert_eq!(names("message"), ["ops"]);
    assert!(names("unfollow").is_empty());
}

// ----- calls that may answer the reply -----

fn recorder() -> (Arc<Mutex<Vec<Answered>>>, webhooks::AnswerHook) {
    let got: Arc<Mutex<Vec<Answered>>> = Arc::default();
    let sink = Arc::clone(&got);
    (
        got,
        Arc::new(move |answered: Answered| sink.lock().unwrap().push(answered)),
    )
}

async fn wait_answers(got: &Arc<Mutex<Vec<Answered>>>, n: usize) -> Vec<Answered> {
    let start = Instant::now();
    loop {
        let answers = got.lock().unwrap().clone();
        if answers.len() >= n {
            return answers;
        }
        assert!(
            start.elapsed() < Duration::from_secs(15),
            "the hook got {answers:?}"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_call_is_answered_within_its_budget_or_later_through_the_hook() {
    let env = env_with("webhook_timeout_ms = 3000\nwebhook_lease_ms = 5000").await;
    let (app, _) = env.app("shop", "app").await;
    let (got, hook) = recorder();
    env.webhooks.set_answer_hook(hook);
    let _stop = env.worker();
    let reply = json!({ "reply": { "type": "text", "content": "hello" } });

    // Within the budget: the answer is the caller's, the delivery done.
    let out = env
        .to_app(app, "message", "u1", json!({ "reply": reply }))
        .await;
    let started = Instant::now();
    let call = env
        .webhooks
        .call(out, Duration::from_secs(2))
        .await
        .unwrap();
    assert!(started.elapsed() < Duration::from_secs(2));
    assert_eq!(call, Call::Answered(Some(reply.clone())));
    let hits = env.receiver.hits();
    assert_eq!(hits.len(), 1);
    let row = env.delivery(&hits[0].delivery).await;
    assert_eq!((row.state.as_str(), row.attempts), ("delivered", 1));

    // A 2xx without a JSON object, and an answer over 64 KiB: answered, nothing to use.
    let out = env.to_app(app, "message", "u2", json!({})).await;
    let call = env
        .webhooks
        .call(out, Duration::from_secs(2))
        .await
        .unwrap();
    assert_eq!(call, Call::Answered(None));
    let out = env
        .to_app(app, "message", "u3", json!({ "big": true }))
        .await;
    let call = env
        .webhooks
        .call(out, Duration::from_secs(2))
        .await
        .unwrap();
    assert_eq!(call, Call::Answered(None));

    // Slower than the budget: Later at the budget, and the hook gets the answer.
    let slow = json!({ "reply": { "type": "text", "content": "slow" } });
    let out = env
        .to_app(
            app,
            "message",
            "u1",
            json!({ "reply": slow, "delay_ms": 700 }),
        )
        .await;
    let started = Instant::now();
    let call = env
        .webhooks
        .call(out, Duration::from_millis(150))
        .await
        .unwrap();
    let waited = started.elapsed();
    assert_eq!(call, Call::Later);
    assert!(
        (Duration::from_millis(140)..Duration::from_millis(600)).contains(&waited),
        "{waited:?}"
    );
    let answers = wait_answers(&got, 1).await;
    assert_eq!(answers.len(), 1, "only the late answer goes to the hook");
    let late = &answers[0];
    assert_eq!(late.answer, slow);
    assert_eq!(late.app_id, Some(app));
    assert_eq!(late.endpoint, format!("app:{app}"));
    assert_eq!(
        (late.event.as_str(), late.ordering.as_str()),
        ("message", "u1")
    );
    assert_eq!(
        env.settled(&late.delivery_id).await.state,
        "delivered",
        "settled like any"
    );

    // A failing receiver: Later, retried by the worker, its answer to the hook.
    let out = env
        .to_app(
            app,
            "message",
            "u4",
            json!({ "reply": { "type": "text", "content": "retried" }, "fail": 1 }),
        )
        .await;
    let call = env
        .webhooks
        .call(out, Duration::from_secs(2))
        .await
        .unwrap();
    assert_eq!(call, Call::Later);
    let answers = wait_answers(&got, 2).await;
    assert_eq!(answers[1].answer["content"], "retried");
    assert_eq!(
        statuses(&env.attempts(&answers[1].delivery_id).await),
        [Some(500), Some(200)]
    );

    // A receiver that wants no more: failed at once.
    let out = env
        .to_app(app, "message", "u5", json!({ "gone": true }))
        .await;
    let call = env
        .webhooks
        .call(out, Duration::from_secs(2))
        .await
        .unwrap();
    assert_eq!(
        call,
        Call::Failed("HTTP 410 Gone: the receiver wants no more deliveries".into())
    );
    env.receiver.assert_all_signed();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_call_behind_a_waiting_delivery_is_queued_and_answers_through_the_hook() {
    let env = env().await;
    let (app, _) = env.app("shop", "app").await;
    let (revoked, _) = env.app("gone", "other").await;
    let (got, hook) = recorder();
    env.webhooks.set_answer_hook(hook);
    // No worker yet: the follow waits.
    let first = env
        .webhooks
        .enqueue(vec![
            env.to_app(app, "follow", "u1", json!({ "n": 1 })).await,
        ])
        .await
        .unwrap();
    let out = env
        .to_app(
            app,
            "message",
            "u1",
            json!({ "n": 2, "reply": { "type": "text", "content": "in turn" } }),
        )
        .await;
    let call = env
        .webhooks
        .call(out, Duration::from_secs(1))
        .await
        .unwrap();
    assert_eq!(call, Call::Queued);
    assert!(env.receiver.hits().is_empty(), "nothing sent out of turn");

    // Another follower's message is not held up.
    let out = env
        .to_app(
            app,
            "message",
            "u2",
            json!({ "reply": { "type": "text", "content": "now" } }),
        )
        .await;
    let call = env
        .webhooks
        .call(out, Duration::from_secs(2))
        .await
        .unwrap();
    assert_eq!(
        call,
        Call::Answered(Some(json!({ "type": "text", "content": "now" })))
    );

    // The worker sends them in turn; the queued answer goes to the hook.
    let _stop = env.worker();
    let answers = wait_answers(&got, 1).await;
    assert_eq!(answers[0].answer["content"], "in turn");
    assert_eq!(answers[0].event, "message");
    let hits: Vec<Hit> = env
        .receiver
        .hits()
        .into_iter()
        .filter(|h| h.body.get("n").is_some())
        .collect();
    assert_eq!(
        hits.iter()
            .map(|h| h.body["n"].as_u64().unwrap())
            .collect::<Vec<_>>(),
        [1, 2]
    );
    assert_eq!(env.settled(&first[0]).await.state, "delivered");

    // A revoked app's call fails at once.
    assert!(
        env.store
            .backend()
            .app_revoke(revoked, 1_767_225_700)
            .await
            .unwrap()
    );
    let out = env.to_app(revoked, "message", "u1", json!({})).await;
    let call = env
        .webhooks
        .call(out, Duration::from_secs(1))
        .await
        .unwrap();
    assert_eq!(call, Call::Failed("app revoked".into()));
    env.receiver.assert_all_signed();
}

// ----- restarts -----

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_claim_of_a_process_that_died_is_delivered_after_its_lease() {
    let receiver = Receiver::start().await;
    let dir = tempfile::tempdir().unwrap();
    let config = config(&receiver, "");
    let url = db_url(&dir);

    // The first process, on a runtime of its own: it claims the delivery, the receiver hangs,
    // and the process dies (its runtime is dropped) holding the claim.
    let (first_url, first_config, first_receiver) = (url.clone(), config.clone(), receiver.clone());
    let id = std::thread::spawn(move || {
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(1)
            .enable_all()
            .build()
            .unwrap();
        let id = runtime.block_on(async {
            let store = Store::open(&first_url).await.unwrap();
            let webhooks = Webhooks::new(&first_config, store);
            webhooks::spawn(webhooks.clone(), std::future::pending());
            let ids = webhooks
                .enqueue(vec![Outgoing::to_config(
                    &first_config.webhooks[0],
                    "follow",
                    "u1",
                    json!({ "openid": "u1", "hang": 1 }),
                )])
                .await
                .unwrap();
            let start = Instant::now();
            while first_receiver.hits_of(&ids[0]).is_empty() {
                assert!(start.elapsed() < Duration::from_secs(10), "never sent");
                tokio::time::sleep(Duration::from_millis(10)).await;
            }
            ids[0].clone()
        });
        runtime.shutdown_background();
        id
    })
    .join()
    .unwrap();
    let died = Instant::now();

    // A new process on the same file takes it over once the lease (1 s) ran out.
    let store = Store::open(&url).await.unwrap();
    let row = store
        .backend()
        .webhook_delivery(&id)
        .await
        .unwrap()
        .unwrap();
    assert_eq!((row.state.as_str(), row.attempts), ("sending", 1));
    let webhooks = Webhooks::new(&config, store.clone());
    let stop = CancellationToken::new();
    webhooks::spawn(webhooks.clone(), stop.clone().cancelled_owned());
    let env = Env {
        dir,
        config,
        store,
        webhooks,
        receiver,
    };
    let row = env.settled(&id).await;
    assert_eq!(row.state, "delivered");
    assert_eq!(row.attempts, 2);
    let hits = env.receiver.hits_of(&id);
    assert_eq!(hits.len(), 2, "the same delivery id again");
    assert_eq!(hits[0].status, 0);
    assert_eq!(hits[1].status, 200);
    assert!(
        hits[1].at.duration_since(hits[0].at) >= Duration::from_millis(900),
        "taken over before the lease ran out"
    );
    assert!(died.elapsed() < Duration::from_secs(10));
    // The dead attempt was never recorded; the one that delivered was.
    let attempts = env.attempts(&id).await;
    assert_eq!(attempts.len(), 1);
    assert_eq!((attempts[0].attempt, attempts[0].status), (2, Some(200)));
    stop.cancel();
    drop(env.dir);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stopping_worker_finishes_its_attempts() {
    let env = env().await;
    let stop = CancellationToken::new();
    let worker = webhooks::spawn(env.webhooks.clone(), stop.clone().cancelled_owned());
    let ids = env
        .webhooks
        .enqueue(vec![env.to_ops(
            "follow",
            "u1",
            json!({ "reply": {}, "delay_ms": 200 }),
        )])
        .await
        .unwrap();
    let start = Instant::now();
    while env.receiver.seen.lock().unwrap().per_delivery.is_empty() {
        assert!(start.elapsed() < Duration::from_secs(10));
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    stop.cancel();
    tokio::time::timeout(Duration::from_secs(5), worker)
        .await
        .unwrap()
        .unwrap();
    // Recorded before the worker ended.
    let row = env.delivery(&ids[0]).await;
    assert_eq!(row.state, "delivered");
}

// ----- the deliveries' API -----

async fn get(router: &axum::Router, uri: &str, key: Option<&str>) -> (u16, Value) {
    let mut request = Request::get(uri);
    if let Some(key) = key {
        request = request.header("authorization", format!("Bearer {key}"));
    }
    let response = router
        .clone()
        .oneshot(request.body(Body::empty()).unwrap())
        .await
        .unwrap();
    let status = response.status().as_u16();
    let bytes = axum::body::to_bytes(response.into_body(), 1 << 20)
        .await
        .unwrap();
    (
        status,
        serde_json::from_slice(&bytes).unwrap_or(Value::Null),
    )
}

fn listed_ids(page: &Value) -> Vec<String> {
    page["deliveries"]
        .as_array()
        .unwrap()
        .iter()
        .map(|d| d["id"].as_str().unwrap().to_owned())
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_listing_shows_an_app_its_own_deliveries_only() {
    let env = env().await;
    let (a, token_a) = env.app("shop", "app").await;
    let (b, token_b) = env.app("blog", "other").await;
    let pushes = Pushes::new(&env.config, env.store.clone());
    let admin = pushes.create_key(&Scope::Admin, "ops", None).await.unwrap();
    let user = pushes
        .create_key(&Scope::User("o_user_1".into()), "me", None)
        .await
        .unwrap();
    let router = webhooks::api::routes(env.webhooks.clone(), pushes);
    let _stop = env.worker();
    let ids = env
        .webhooks
        .enqueue(vec![
            env.to_app(a, "follow", "u1", json!({ "n": 1, "fail": 1 }))
                .await,
            env.to_app(a, "message", "u1", json!({ "n": 2 })).await,
            env.to_app(b, "follow", "u1", json!({ "n": 3 })).await,
            env.to_ops("follow", "u1", json!({ "n": 4 })),
        ])
        .await
        .unwrap();
    for id in &ids {
        assert_eq!(env.settled(id).await.state, "delivered");
    }

    // App A: its two, newest first, with their attempts.
    let (code, page) = get(&router, "/api/v1/webhooks/deliveries", Some(&token_a)).await;
    assert_eq!(code, 200, "{page}");
    assert_eq!(listed_ids(&page), [ids[1].clone(), ids[0].clone()]);
    assert_eq!(page["next_before"], Value::Null);
    let first = &page["deliveries"][1];
    assert_eq!(first["event"], "follow");
    assert_eq!(first["endpoint"], format!("app:{a}"));
    assert_eq!(first["url"], env.receiver.url("app"));
    assert_eq!(first["state"], "delivered");
    assert_eq!(first["attempts"], 2);
    assert_eq!(first["last_status"], 200);
    assert!(first["created_at"].as_i64().unwrap() > 1_700_000_000_000);
    let log = first["attempts_log"].as_array().unwrap();
    assert_eq!(log.len(), 2);
    assert_eq!(log[0]["attempt"], 1);
    assert_eq!(log[0]["status"], 500);
    assert_eq!(log[0]["error"], "HTTP 500: boom");
    assert_eq!(log[1]["status"], 200);
    assert!(log[1]["duration_ms"].is_i64());
    assert!(first.get("body").is_none(), "bodies only one at a time");

    // Paging.
    let (_, page) = get(
        &router,
        "/api/v1/webhooks/deliveries?limit=1",
        Some(&token_a),
    )
    .await;
    assert_eq!(listed_ids(&page), [ids[1].clone()]);
    let before = page["next_before"].as_i64().unwrap();
    let (_, page) = get(
        &router,
        &format!("/api/v1/webhooks/deliveries?limit=1&before={before}"),
        Some(&token_a),
    )
    .await;
    assert_eq!(listed_ids(&page), [ids[0].clone()]);
    // Filters.
    let (_, page) = get(
        &router,
        "/api/v1/webhooks/deliveries?event=message&state=delivered",
        Some(&token_a),
    )
    .await;
    assert_eq!(listed_ids(&page), [ids[1].clone()]);
    let (_, page) = get(
        &router,
        "/api/v1/webhooks/deliveries?state=failed",
        Some(&token_a),
    )
    .await;
    assert!(listed_ids(&page).is_empty());

    // App B: only its own; not A's, by listing or by id.
    let (_, page) = get(&router, "/api/v1/webhooks/deliveries", Some(&token_b)).await;
    assert_eq!(listed_ids(&page), [ids[2].clone()]);
    let (code, body) = get(
        &router,
        &format!("/api/v1/webhooks/deliveries?app={a}"),
        Some(&token_b),
    )
    .await;
    assert_eq!(code, 403, "{body}");
    assert!(body["error"].as_str().unwrap().contains("own app"));
    let (code, body) = get(
        &router,
        &format!("/api/v1/webhooks/deliveries/{}", ids[0]),
        Some(&token_b),
    )
    .await;
    assert_eq!((code, body["status"].as_i64()), (404, Some(404)), "{body}");

    // One delivery, with its body, to its app (the key as a parameter works too).
    let (code, one) = get(
        &router,
        &format!("/api/v1/webhooks/deliveries/{}?key={token_a}", ids[0]),
        None,
    )
    .await;
    assert_eq!(code, 200, "{one}");
    assert_eq!(one["body"], json!({ "n": 1, "fail": 1 }));
    assert_eq!(one["attempts_log"].as_array().unwrap().len(), 2);

    // An admin key sees all, or one app's, or the config's.
    let (_, page) = get(&router, "/api/v1/webhooks/deliveries", Some(&admin)).await;
    assert_eq!(listed_ids(&page).len(), 4);
    let (_, page) = get(
        &router,
        &format!("/api/v1/webhooks/deliveries?app={b}"),
        Some(&admin),
    )
    .await;
    assert_eq!(listed_ids(&page), [ids[2].clone()]);
    let (_, page) = get(
        &router,
        "/api/v1/webhooks/deliveries?app=config",
        Some(&admin),
    )
    .await;
    assert_eq!(listed_ids(&page), [ids[3].clone()]);
    let (code, _) = get(
        &router,
        &format!("/api/v1/webhooks/deliveries/{}", ids[2]),
        Some(&admin),
    )
    .await;
    assert_eq!(code, 200);

    // Refusals.
    let (code, body) = get(&router, "/api/v1/webhooks/deliveries", Some(&user)).await;
    assert_eq!(code, 403, "{body}");
    let (code, body) = get(&router, "/api/v1/webhooks/deliveries", None).await;
    assert_eq!(code, 401, "{body}");
    let (code, _) = get(
        &router,
        "/api/v1/webhooks/deliveries",
        Some("AT_unknownunknownunknownunknown00"),
    )
    .await;
    assert_eq!(code, 401);
    for query in ["state=lost", "limit=many", "before=x", "app=shop"] {
        let (code, body) = get(
            &router,
            &format!("/api/v1/webhooks/deliveries?{query}"),
            Some(&admin),
        )
        .await;
        assert_eq!(code, 400, "{query}: {body}");
        assert!(body["error"].is_string());
    }
    let (code, _) = get(&router, "/api/v1/webhooks/deliveries/nope", Some(&admin)).await;
    assert_eq!(code, 404);
}

// ----- the README's verification snippets -----

/// The code block between `<!-- NAME -->` and `<!-- /NAME -->` in README.md.
fn readme_snippet(name: &str) -> String {
    let readme =
        std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/README.md")).unwrap();
    let start = readme
        .find(&format!("<!-- {name} -->"))
        .unwrap_or_else(|| panic!("README lacks <!-- {name} -->"));
    let end = readme[start..]
        .find(&format!("<!-- /{name} -->"))
        .unwrap_or_else(|| panic!("README lacks <!-- /{name} -->"))
        + start;
    let block = &readme[start..end];
    let code_start = block.find("```").unwrap();
    let code = &block[code_start..];
    let code = &code[code.find('\n').unwrap() + 1..];
    code[..code.rfind("```").unwrap()].to_owned()
}

const PYTHON_HARNESS: &str = r#"
import json, sys
_headers = json.load(open(sys.argv[1]))
_body = open(sys.argv[2], "rb").read()
print("ok" if verify(sys.argv[3], _headers, _body) else "bad")
"#;

const NODE_HARNESS: &str = r#"
const _fs = require("node:fs");
const _headers = JSON.parse(_fs.readFileSync(process.argv[2], "utf8"));
const _body = _fs.readFileSync(process.argv[3]);
console.log(verify(process.argv[4], _headers, _body) ? "ok" : "bad");
"#;

/// Runs a snippet with its harness on (headers, body, secret); its answer, or `None` when the
/// interpreter is missing.
fn run_snippet(
    dir: &std::path::Path,
    interpreter: &str,
    script: &str,
    headers: &Value,
    body: &[u8],
    secret: &str,
) -> Option<String> {
    let extension = if interpreter == "node" { "js" } else { "py" };
    let script_path = dir.join(format!("verify.{extension}"));
    let headers_path = dir.join("headers.json");
    let body_path = dir.join("body.json");
    std::fs::write(&script_path, script).unwrap();
    std::fs::write(&headers_path, headers.to_string()).unwrap();
    std::fs::write(&body_path, body).unwrap();
    let output = std::process::Command::new(interpreter)
        .arg(&script_path)
        .arg(&headers_path)
        .arg(&body_path)
        .arg(secret)
        .output();
    match output {
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => None,
        Err(e) => panic!("{interpreter}: {e}"),
        Ok(out) => {
            assert!(
                out.status.success(),
                "{interpreter} failed: {}",
                String::from_utf8_lossy(&out.stderr)
            );
            Some(String::from_utf8_lossy(&out.stdout).trim().to_owned())
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_readme_snippets_verify_a_real_delivery() {
    let env = env().await;
    let _stop = env.worker();
    let ids = env
        .webhooks
        .enqueue(vec![env.to_ops(
            "message",
            "u1",
            json!({ "openid": "u1", "text": "你好, \"world\" ✓" }),
        )])
        .await
        .unwrap();
    env.settled(&ids[0]).await;
    env.receiver.assert_all_signed();
    let hit = env.receiver.hits_of(&ids[0]).remove(0);
    let header = |name: &str| hit.headers[name].to_str().unwrap().to_owned();

    // Rust receivers' own check agrees.
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs() as i64;
    webhooks::verify(
        OPS_SECRET,
        &header("x-huixin-timestamp"),
        &hit.raw,
        &header("x-huixin-signature"),
        now,
        webhooks::sign::DEFAULT_TOLERANCE,
    )
    .unwrap();

    let dir = tempfile::tempdir().unwrap();
    let python = format!(
        "{}{PYTHON_HARNESS}",
        readme_snippet("webhook-verify-python")
    );
    let node = format!("{}{NODE_HARNESS}", readme_snippet("webhook-verify-node"));
    // Python's frameworks give headers by their names; Node's in lower case.
    let headers_as = |lower: bool, timestamp: &str, signature: &str| {
        let (t, s) = if lower {
            ("x-huixin-timestamp", "x-huixin-signature")
        } else {
            ("X-Huixin-Timestamp", "X-Huixin-Signature")
        };
        json!({ t: timestamp, s: signature })
    };
    let stale_ts = (now - 600).to_string();
    let stale_sig = webhooks::sign(OPS_SECRET, now - 600, &hit.raw);
    let (timestamp, signature) = (header("x-huixin-timestamp"), header("x-huixin-signature"));
    let mut tampered = hit.raw.to_vec();
    tampered.push(b' ');
    for (interpreter, script, lower) in [("python3", &python, false), ("node", &node, true)] {
        let run = |headers: Value, body: &[u8], secret: &str| {
            run_snippet(dir.path(), interpreter, script, &headers, body, secret)
        };
        let Some(answer) = run(
            headers_as(lower, &timestamp, &signature),
            &hit.raw,
            OPS_SECRET,
        ) else {
            println!("SKIPPED: {interpreter} is not installed; its README snippet was not run");
            continue;
        };
        assert_eq!(answer, "ok", "{interpreter}: a real delivery");
        let cases: [(&str, Value, &[u8], &str); 4] = [
            (
                "a changed body",
                headers_as(lower, &timestamp, &signature),
                &tampered,
                OPS_SECRET,
            ),
            (
                "another secret",
                headers_as(lower, &timestamp, &signature),
                &hit.raw,
                APP_SECRET,
            ),
            (
                "a stale timestamp, correctly signed",
                headers_as(lower, &stale_ts, &stale_sig),
                &hit.raw,
                OPS_SECRET,
            ),
            (
                "no signature",
                headers_as(lower, &timestamp, ""),
                &hit.raw,
                OPS_SECRET,
            ),
        ];
        for (what, headers, body, secret) in cases {
            assert_eq!(
                run(headers, body, secret).as_deref(),
                Some("bad"),
                "{interpreter}: {what}"
            );
        }
    }
}

// ----- the config -----

#[test]
fn the_config_checks_apps_and_webhooks() {
    let base = |extra: &str| {
        Config::from_toml(extra)
            .map(|_| ())
            .map_err(|e| e.to_string())
    };
    assert_eq!(base(""), Ok(()));
    let hook = |fields: &str| {
        base(&format!(
            "[[webhooks]]\nname = \"ops\"\nurl = \"https://example.com/h\"\nsecret = \"0123456789abcdef\"\n{fields}"
        ))
    };
    assert_eq!(hook(""), Ok(()));
    let c = Config::from_toml(
        "[[webhooks]]\nname = \"ops\"\nurl = \"https://example.com/h\"\nsecret = \"0123456789abcdef\"\n",
    )
    .unwrap();
    assert_eq!(
        c.webhooks[0].events,
        ["follow", "unfollow", "message", "binding"],
        "all but the pushes' fates by default"
    );
    assert!(
        !format!("{c:?}").contains("0123456789abcdef"),
        "the secret never prints"
    );
    for (fields, wanted) in [
        ("events = [\"follow\", \"folow\"]", "unknown \"folow\""),
        ("events = []", "events is empty"),
        ("format = \"xml\"", "format"),
        ("reply = \"maybe\"", "reply"),
        ("colour = \"red\"", "colour"),
    ] {
        let e = hook(fields).unwrap_err();
        assert!(e.contains(wanted), "{fields}: {e}");
    }
    for (toml, wanted) in [
        (
            "[[webhooks]]\nname = \"a b\"\nurl = \"https://x/h\"\nsecret = \"0123456789abcdef\"",
            "name must be",
        ),
        (
            "[[webhooks]]\nname = \"a\"\nurl = \"ftp://x/h\"\nsecret = \"0123456789abcdef\"",
            "must be an http(s) URL",
        ),
        (
            "[[webhooks]]\nname = \"a\"\nurl = \"https://x/h\"\nsecret = \"short\"",
            "at least 16 characters",
        ),
        (
            "[[webhooks]]\nname = \"a\"\nurl = \"https://x/h\"\n",
            "secret is required",
        ),
        (
            "[[webhooks]]\nname = \"a\"\nurl = \"https://x/h\"\nsecret = \"0123456789abcdef\"\n\
             [[webhooks]]\nname = \"a\"\nurl = \"https://y/h\"\nsecret = \"0123456789abcdef\"",
            "used twice",
        ),
        ("[apps]\nwebhook_max_attempts = 0", "webhook_max_attempts"),
        ("[apps]\nwebhook_concurrency = 0", "webhook_concurrency"),
        ("[apps]\nwebhook_timeout_ms = 50", "webhook_timeout_ms"),
        (
            "[apps]\nwebhook_retry_backoff_ms = 0",
            "webhook_retry_backoff_ms",
        ),
        ("[apps]\nbind_expire_secs = 10", "bind_expire_secs"),
        ("[apps]\nwebhook_lease_ms = 5000", "longer than"),
        ("[apps]\nwebhook_lease = 5000", "webhook_lease"),
    ] {
        let e = base(toml).unwrap_err();
        assert!(e.contains(wanted), "{toml}: {e}");
    }
    // A budget past the deadline is no error: the deadline answers first, the reply goes late.
    assert_eq!(base("[apps]\nreply_budget_ms = 4800"), Ok(()));
    let c = Config::from_toml("[apps]\nwebhook_timeout_ms = 2000").unwrap();
    assert_eq!(c.apps.webhook_lease(), Duration::from_millis(32_000));
    let c =
        Config::from_toml("[apps]\nwebhook_timeout_ms = 2000\nwebhook_lease_ms = 2500").unwrap();
    assert_eq!(c.apps.webhook_lease(), Duration::from_millis(2_500));
}

#[test]
fn apps_keys_come_from_the_environment_too() {
    let dir = tempfile::tempdir().unwrap();
    let serve = |var: &str, value: &str| {
        let out = std::process::Command::new(env!("CARGO_BIN_EXE_huixin"))
            .arg("serve")
            .current_dir(dir.path())
            .env_remove("HUIXIN_CONFIG")
            .env("HUIXIN_SERVER_LISTEN", "127.0.0.1:0")
            .env(var, value)
            .output()
            .unwrap();
        assert!(!out.status.success(), "{var}={value} was accepted");
        String::from_utf8_lossy(&out.stderr).into_owned()
    };
    let e = serve("HUIXIN_APPS_WEBHOOK_MAX_ATTEMPTS", "0");
    assert!(
        e.contains("[apps] webhook_max_attempts must be between 1 and 100"),
        "{e}"
    );
    let e = serve("HUIXIN_APPS_BIND_EXPIRE_SECS", "10");
    assert!(e.contains("[apps] bind_expire_secs must be between"), "{e}");
    let e = serve("HUIXIN_APPS_WEBHOOK_CONCURRENCY", "many");
    assert!(
        e.contains("environment variable HUIXIN_APPS_WEBHOOK_CONCURRENCY"),
        "{e}"
    );
}
