//! The app as a library value ([`huixin::app::App`]): the whole product with routes of your
//! own in front of the rules, mounted inside another axum app, and two apps in one process
//! that start, serve and shut down independently.

use crate::common;

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use huixin::app::App;
use huixin::bot::late::LateReplies;
use huixin::bot::{Context, filter};
use huixin::simulator::{Exchange, Header, MessageSpec};
use huixin::wechat::{Message, Mode, Reply};
use tokio::sync::oneshot;

fn text_xml(content: &str, from: &str) -> String {
    MessageSpec::Text {
        content: content.into(),
    }
    .to_xml(&Header::new("gh_app_test", from))
    .unwrap()
}

fn reply(e: &Exchange) -> Reply {
    assert_eq!(e.status, 200, "{}", e.body);
    e.reply.as_ref().expect("a reply").reply.clone()
}

fn write_rules(dir: &std::path::Path) {
    std::fs::write(
        dir.join("10-hello.rhai"),
        "rule(#{ content: \"hello\" }, |msg| text(\"hello from the rules\"));\n\
         rule(#{ content: \"order 7\" }, |msg| text(\"the rules saw an order\"));\n",
    )
    .unwrap();
}

/// Late replies, flagged when delivered.
#[derive(Default)]
struct Flag(AtomicBool);

#[async_trait::async_trait]
impl LateReplies for Flag {
    async fn deliver(&self, _message: &Message, _reply: Reply) {
        self.0.store(true, Ordering::SeqCst);
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn a_rust_route_answers_in_front_of_the_rules() {
    let dir = tempfile::tempdir().unwrap();
    let rules = tempfile::tempdir().unwrap();
    write_rules(rules.path());
    let mut config = common::config(Mode::Safe, dir.path(), "");
    config.rules.dir = rules.path().to_path_buf();
    let app = App::builder(config)
        .route(
            filter::content_regex(r"^order (\d+)$").unwrap(),
            |ctx: Context| async move {
                Reply::text(format!(
                    "order {} found in Rust",
                    ctx.captures.get(1).unwrap()
                ))
            },
        )
        .http(axum::Router::new().route("/mine", axum::routing::get(|| async { "mine\n" })))
        .build()
        .await
        .unwrap();
    assert_eq!(app.rules().unwrap().current().rules.len(), 2);
    let server = common::launch(app, dir).await;

    let sim = &server.sim;
    let e = sim
        .send(text_xml("order 7", "o_app_1"), "o_app_1")
        .await
        .unwrap();
    assert_eq!(reply(&e), Reply::text("order 7 found in Rust"));
    let e = sim
        .send(text_xml("hello", "o_app_1"), "o_app_1")
        .await
        .unwrap();
    assert_eq!(reply(&e), Reply::text("hello from the rules"));

    // huixin's own routes and the added one share the surface.
    let http = reqwest::Client::new();
    let mine = http
        .get(format!("{}/mine", server.base))
        .send()
        .await
        .unwrap();
    assert_eq!(mine.text().await.unwrap(), "mine\n");
    let health = http
        .get(format!("{}/healthz", server.base))
        .send()
        .await
        .unwrap();
    assert_eq!(health.status(), 200);
    let push = http
        .post(format!("{}/api/v1/push", server.base))
        .json(&serde_json::json!({ "title": "no key" }))
        .send()
        .await
        .unwrap();
    assert_eq!(push.status(), 401, "the push API is served, behind a key");
}

#[tokio::test(flavor = "multi_thread")]
async fn the_router_mounts_inside_another_axum_app() {
    let dir = tempfile::tempdir().unwrap();
    let rules = tempfile::tempdir().unwrap();
    write_rules(rules.path());
    let mut config = common::config(Mode::Plain, dir.path(), "");
    config.rules.dir = rules.path().to_path_buf();
    let app = App::new(config).await.unwrap();
    let site = axum::Router::new()
        .route("/", axum::routing::get(|| async { "the site\n" }))
        .nest("/bot", app.router());
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let base = format!("http://{}", listener.local_addr().unwrap());
    let (tx, rx) = oneshot::channel::<()>();
    let server = tokio::spawn(async move {
        axum::serve(listener, site)
            .with_graceful_shutdown(async move {
                let _ = rx.await;
            })
            .await
    });

    let sim = common::simulator(&format!("{base}/bot/wechat"), Mode::Plain, common::APP_ID);
    let e = sim
        .send(text_xml("hello", "o_app_2"), "o_app_2")
        .await
        .unwrap();
    assert_eq!(reply(&e), Reply::text("hello from the rules"));
    let page = reqwest::get(format!("{base}/")).await.unwrap();
    assert_eq!(page.text().await.unwrap(), "the site\n");

    tx.send(()).unwrap();
    server.await.unwrap().unwrap();
    let tasks = app.tasks().clone();
    app.shutdown().await;
    assert!(
        tasks.is_stopping(),
        "the app's background loops were told to stop"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn two_apps_in_one_process_shut_down_independently() {
    let flag_a = Arc::new(Flag::default());
    let build = |late: Arc<Flag>| async move {
        let dir = tempfile::tempdir().unwrap();
        let config = common::config_full(
            Mode::Plain,
            dir.path(),
            "",
            "[bot]\nreply_deadline_ms = 300",
        );
        let app = App::builder(config)
            .without_rules()
            .route(filter::content("slow"), |_ctx: Context| async {
                tokio::time::sleep(Duration::from_millis(1500)).await;
                Reply::text("finally")
            })
            .route(filter::any(), |_ctx: Context| async { Reply::text("fast") })
            .late_replies(late)
            .build()
            .await
            .unwrap();
        (app, dir)
    };
    let (a, dir_a) = build(flag_a.clone()).await;
    let (b, dir_b) = build(Arc::new(Flag::default())).await;
    let (tasks_a, tasks_b) = (a.tasks().clone(), b.tasks().clone());

    // A by hand, to watch its shutdown end; B as the tests run it.
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url_a = format!("http://{}/wechat", listener.local_addr().unwrap());
    let (stop_a, stopped) = oneshot::channel::<()>();
    let served_a = tokio::spawn(a.serve(listener, async move {
        let _ = stopped.await;
    }));
    let b = common::launch(b, dir_b).await;
    let sim_a = common::simulator(&url_a, Mode::Plain, common::APP_ID);

    // A's reply misses the deadline: `success` now, the reply later, as A's own work.
    let e = sim_a
        .send(text_xml("slow", "o_two_a"), "o_two_a")
        .await
        .unwrap();
    assert_eq!(reply(&e), Reply::Success);
    assert_eq!(tasks_a.active(), 1, "A's late reply is A's work");
    assert_eq!(tasks_b.active(), 0, "B has none of it");

    // A shuts down: it waits for its late reply, then stops its loops.
    stop_a.send(()).unwrap();
    served_a.await.unwrap().unwrap();
    assert!(
        flag_a.0.load(Ordering::SeqCst),
        "A delivered its late reply before it stopped"
    );
    assert!(tasks_a.is_stopping());
    assert_eq!(tasks_a.active(), 0);

    // B was not touched: it still answers, and its loops still run.
    assert!(!tasks_b.is_stopping());
    let e = b
        .sim
        .send(text_xml("hi", "o_two_b"), "o_two_b")
        .await
        .unwrap();
    assert_eq!(reply(&e), Reply::text("fast"));
    assert!(
        reqwest::get(&url_a).await.is_err(),
        "A no longer accepts connections"
    );
    drop(dir_a);
}

/// Script functions of the app's user, next to the built-in ones.
struct Shout;

impl huixin::rules::api::ScriptModule for Shout {
    fn name(&self) -> &'static str {
        "shout"
    }

    fn register(&self, engine: &mut rhai::Engine) {
        engine.register_fn("shout", |s: &str| format!("{}!", s.to_uppercase()));
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn the_rules_call_script_functions_the_builder_adds() {
    let dir = tempfile::tempdir().unwrap();
    let rules = tempfile::tempdir().unwrap();
    std::fs::write(
        rules.path().join("10-shout.rhai"),
        "rule(#{ prefix: \"shout \" }, |msg| text(shout(msg.content.sub_string(6))));\n",
    )
    .unwrap();
    let mut config = common::config(Mode::Plain, dir.path(), "");
    config.rules.dir = rules.path().to_path_buf();
    let app = App::builder(config)
        .module(Arc::new(Shout))
        .build()
        .await
        .unwrap();
    let server = common::launch(app, dir).await;
    let e = server
        .sim
        .send(text_xml("shout hello", "o_app_3"), "o_app_3")
        .await
        .unwrap();
    assert_eq!(reply(&e), Reply::text("HELLO!"));
}
