//! The push service end to end, in one process over loopback: huixin's HTTP server and push
//! API, a real SQLite file, the delivery worker, and `huixin emulator` playing WeChat's API.
//!
//! - **Accepting**: `POST /api/v1/push` with a key, answered once the push and its recipient
//!   rows are stored. No worker runs here, so the figures show that accepting never waits on
//!   delivery: a push to a 10,000-follower topic is answered after one transaction.
//! - **Delivering**: the time from starting the worker to the last recipient recorded as
//!   sent, for one push to a 10,000-follower topic and for 10,000 pushes to one follower each.
//!   Every delivery is a template send to the emulator (token, follower, template and
//!   `client_msg_id` checks) and a write of the outcome. `[push] rate_per_second = 0` lifts
//!   the configured pacing, so the figures are what the worker can do; `concurrency` keeps its
//!   default.
//!
//! - **Reading back**: a follower's history (`GET /api/v1/push`) once all the above is stored.
//!
//! Run `cargo bench --bench push`. Under `cargo test --bench push` (a single pass to keep it
//! from rotting) the audience shrinks to 200.

use std::sync::Arc;
use std::time::{Duration, Instant};

use criterion::{Criterion, SamplingMode, Throughput, criterion_group, criterion_main};
use huixin::app::App;
use huixin::bot::Router;
use huixin::config::{Config, Secret};
use huixin::emulator::{Emulator, Settings};
use huixin::outbound::Client;
use huixin::push::{PushRequest, Pushes, Scope, Sender};
use huixin::store::Store;
use tokio::runtime::Runtime;
use tokio::task::JoinSet;

const APP_ID: &str = "wx_bench";
const APP_SECRET: &str = "bench_secret";
const TEMPLATE: &str = "huixin_template_1";
const TOPIC: &str = "bench";
const CONCURRENT: usize = 32;
const BODY: &str = "## Backup finished\n\n- host: **db-1**\n- size: 12.4 GiB\n- took: 3 min 12 s\n\n\
                    [Dashboard](https://example.com/backups)";

/// Followers, the topic's size and the number of single pushes: 10,000 when benchmarking,
/// fewer when run as a test.
fn audience() -> usize {
    if std::env::args().any(|a| a == "--bench") {
        10_000
    } else {
        200
    }
}

fn openid(i: usize) -> String {
    format!("o_bench_{i:05}")
}

struct Bench {
    runtime: Runtime,
    emulator: Emulator,
    pushes: Pushes,
    client: Client,
    http: reqwest::Client,
    api: String,
    user_key: String,
    topic_key: String,
    followers: usize,
    _dir: tempfile::TempDir,
}

impl Bench {
    fn start() -> Self {
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .enable_all()
            .build()
            .unwrap();
        let followers = audience();
        let dir = tempfile::tempdir().unwrap();
        let emulator = Emulator::new(Settings {
            app_id: APP_ID.into(),
            app_secret: APP_SECRET.into(),
            followers: (0..followers).map(openid).collect(),
            ..Settings::default()
        });
        let bound = runtime.block_on(emulator.bind("127.0.0.1:0")).unwrap();
        let mut config = Config::default();
        config.server.listen = "127.0.0.1:0".into();
        config.storage.url = format!("sqlite://{}", dir.path().join("huixin.db").display());
        config.wechat.app_id = APP_ID.into();
        config.wechat.app_secret = Secret::new(APP_SECRET);
        config.wechat.api_base = format!("http://{}", bound.local_addr());
        config.push.template_id = TEMPLATE.into();
        config.push.rate_per_second = 0;
        config.push.rate_limit_per_minute = 0;
        runtime.spawn(bound.run(std::future::pending()));

        let (pushes, client, api, user_key, topic_key) = runtime.block_on(async {
            let store = Store::open(&config.storage.url).await.unwrap();
            // The whole app serves the API; its own worker stays off (the bench starts and
            // stops workers itself, to measure accepting and delivering apart).
            let app = App::builder(config.clone())
                .store(store.clone())
                .bot(Router::new())
                .without_push_worker()
                .build()
                .await
                .unwrap();
            let pushes = app.pushes().clone();
            let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
            let addr = listener.local_addr().unwrap();
            let api = format!("http://{addr}/api/v1/push");
            pushes.set_public_base(&format!("http://{addr}"));
            tokio::spawn(app.serve(listener, std::future::pending()));
            pushes.create_topic(TOPIC, false, "").await.unwrap();
            for i in 0..followers {
                pushes.join(TOPIC, &openid(i)).await.unwrap();
            }
            let user_key = pushes
                .create_key(&Scope::User(openid(0)), "bench", None)
                .await
                .unwrap();
            let topic_key = pushes
                .create_key(&Scope::Topic(TOPIC.into()), "bench", None)
                .await
                .unwrap();
            let client = Client::new(&config.wechat, Some(store)).unwrap();
            (pushes, client, api, user_key, topic_key)
        });
        Self {
            runtime,
            emulator,
            pushes,
            client,
            http: reqwest::Client::new(),
            api,
            user_key,
            topic_key,
            followers,
            _dir: dir,
        }
    }

    /// One push over the API; panics unless it is accepted for `recipients` followers.
    async fn post(&self, key: &str, title: &str, recipients: usize) {
        let response = self
            .http
            .post(&self.api)
            .bearer_auth(key)
            .json(&serde_json::json!({ "title": title, "body": BODY }))
            .send()
            .await
            .unwrap();
        assert_eq!(response.status(), 200, "{:?}", response.text().await);
        let accepted: serde_json::Value = response.json().await.unwrap();
        assert_eq!(accepted["recipients"], recipients);
    }

    /// Stores a push without HTTP (the delivery benches' setup).
    async fn accept(&self, to: Vec<String>, topic: Option<String>) {
        self.pushes
            .accept(
                Sender::Trusted,
                PushRequest {
                    to,
                    topic,
                    title: "Backup finished".into(),
                    body: BODY.into(),
                    ..PushRequest::default()
                },
                "bench",
            )
            .await
            .unwrap();
    }

    /// Runs a worker until no recipient is pending or being sent; the time it took.
    fn deliver_all(&self) -> Duration {
        self.runtime.block_on(async {
            let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
            let start = Instant::now();
            let worker =
                huixin::push::deliver::spawn(self.pushes.clone(), self.client.clone(), async {
                    let _ = stopped.await;
                });
            let backend = self.pushes.store().backend();
            while backend.push_next_due().await.unwrap().is_some() {
                tokio::time::sleep(Duration::from_millis(2)).await;
            }
            let took = start.elapsed();
            let _ = stop.send(());
            worker.await.unwrap();
            // The emulator keeps every call; the figures should not include a growing log.
            self.emulator.clear_calls();
            took
        })
    }
}

fn bench_push(c: &mut Criterion) {
    let bench = Arc::new(Bench::start());
    let n = bench.followers;
    // Warm the access token and the connections.
    bench.runtime.block_on(bench.accept(vec![openid(0)], None));
    bench.deliver_all();
    let sends_before = bench.client.tokens().fetches();

    let mut g = c.benchmark_group("push_delivery");
    g.sample_size(10);
    g.sampling_mode(SamplingMode::Flat);
    g.measurement_time(Duration::from_secs(20));
    g.throughput(Throughput::Elements(n as u64));
    g.bench_function(format!("one_push_to_a_{n}_follower_topic"), |b| {
        b.iter_custom(|iters| {
            let mut total = Duration::ZERO;
            for _ in 0..iters {
                bench
                    .runtime
                    .block_on(bench.accept(Vec::new(), Some(TOPIC.into())));
                total += bench.deliver_all();
            }
            total
        })
    });
    g.bench_function(format!("{n}_single_pushes"), |b| {
        b.iter_custom(|iters| {
            let mut total = Duration::ZERO;
            for _ in 0..iters {
                bench.runtime.block_on(async {
                    let mut accepting = JoinSet::new();
                    for lane in 0..8 {
                        let bench = Arc::clone(&bench);
                        accepting.spawn(async move {
                            for i in (lane..n).step_by(8) {
                                bench.accept(vec![openid(i)], None).await;
                            }
                        });
                    }
                    while let Some(done) = accepting.join_next().await {
                        done.unwrap();
                    }
                });
                total += bench.deliver_all();
            }
            total
        })
    });
    g.finish();

    // From here on no worker runs: accepted pushes stay pending.
    let mut g = c.benchmark_group("push_accept");
    g.measurement_time(Duration::from_secs(8));
    g.throughput(Throughput::Elements(1));
    g.bench_function("http_one_at_a_time", |b| {
        b.iter(|| {
            bench
                .runtime
                .block_on(bench.post(&bench.user_key, "Disk almost full", 1))
        })
    });
    g.throughput(Throughput::Elements(CONCURRENT as u64));
    g.bench_function(format!("http_{CONCURRENT}_concurrent"), |b| {
        b.iter(|| {
            bench.runtime.block_on(async {
                let mut posts = JoinSet::new();
                for _ in 0..CONCURRENT {
                    let bench = Arc::clone(&bench);
                    posts.spawn(
                        async move { bench.post(&bench.user_key, "Disk almost full", 1).await },
                    );
                }
                while let Some(done) = posts.join_next().await {
                    done.unwrap();
                }
            })
        })
    });
    g.sample_size(10);
    g.throughput(Throughput::Elements(1));
    g.bench_function(format!("http_to_a_{n}_follower_topic"), |b| {
        b.iter(|| {
            bench
                .runtime
                .block_on(bench.post(&bench.topic_key, "Release 2.4 is out", n))
        })
    });
    g.finish();

    // Reading back: a follower's newest pushes, with every push above still in the table.
    let mut g = c.benchmark_group("push_history");
    g.measurement_time(Duration::from_secs(5));
    g.sample_size(20);
    g.bench_function("http_a_followers_history", |b| {
        b.iter(|| {
            bench.runtime.block_on(async {
                let response = bench
                    .http
                    .get(format!("{}?limit=50", bench.api))
                    .bearer_auth(&bench.user_key)
                    .send()
                    .await
                    .unwrap();
                assert_eq!(response.status(), 200);
                let page: serde_json::Value = response.json().await.unwrap();
                assert!(!page["pushes"].as_array().unwrap().is_empty());
            })
        })
    });
    g.finish();
    assert_eq!(
        bench.client.tokens().fetches(),
        sends_before,
        "the token stayed warm"
    );
}

criterion_group!(benches, bench_push);
criterion_main!(benches);
