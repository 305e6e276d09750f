//! What the metrics cost per message, with `[metrics] enabled` on and off in the same run.
//!
//! - **instrumentation**: alone, the recording calls one text message makes (`record`: its
//!   type at the edge, the rules' run time, the reply's outcome and rule: labelled counter
//!   lookups and a histogram observation), and the HTTP layer around a handler that does
//!   nothing (`http_layer`: the route's count and latency).
//! - **message**: one distinct, signed text message from a distinct user through the whole
//!   surface of `huixin serve` in process ([`App::router`], no socket): the default middleware,
//!   the shipped rules (echo), a fresh SQLite file; the same app built with the metrics on and
//!   off. The difference is the metrics' share of the hot path.
//!
//! Run `cargo bench --bench metrics`; figures in BENCHMARKS.md ("Metrics"). Under `cargo test
//! --bench metrics` each runs once.

use std::hint::black_box;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use axum::body::Body;
use axum::http::Request;
use axum::routing::post;
use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use huixin::app::App;
use huixin::config::Config;
use huixin::metrics::{Metrics, RuleLabel};
use huixin::support::clock::unix_now;
use huixin::wechat::signature::sign;
use tokio::runtime::Runtime;
use tower::ServiceExt;

const TOKEN: &str = "benchToken";

fn bench_instrumentation(c: &mut Criterion) {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .build()
        .unwrap();
    let mut g = c.benchmark_group("metrics/instrumentation");
    g.throughput(Throughput::Elements(1));
    for (name, metrics) in [("on", Metrics::new()), ("off", Metrics::disabled())] {
        let rule = RuleLabel::Rule {
            file: Arc::from("90-echo.rhai"),
            line: 4,
        };
        // The calls the edge and the rules route make for one text message.
        g.bench_function(format!("record/{name}"), |b| {
            b.iter(|| {
                metrics.message(black_box("text"), "");
                metrics.rule_run(black_box(Duration::from_micros(30)));
                metrics.replied("answered", rule.clone());
            })
        });
        // The HTTP layer as the app installs it, around a handler that does nothing (off:
        // the layer is not there).
        let router = huixin::metrics::http::layer(
            axum::Router::new().route("/wechat", post(|| async { "success" })),
            &metrics,
        );
        g.bench_function(format!("http_layer/{name}"), |b| {
            b.iter(|| {
                let request = Request::post("/wechat").body(Body::empty()).unwrap();
                runtime.block_on(router.clone().oneshot(request)).unwrap()
            })
        });
    }
    g.finish();
}

/// A served app's surface, and what makes each message distinct.
struct Served {
    router: axum::Router,
    next: AtomicU64,
    _app: App,
    _dir: tempfile::TempDir,
}

impl Served {
    fn start(runtime: &Runtime, metrics: bool) -> Self {
        let dir = tempfile::tempdir().unwrap();
        let mut config = Config::default();
        config.server.listen = "127.0.0.1:0".into();
        config.storage.url = format!("sqlite://{}", dir.path().join("huixin.db").display());
        config.wechat.token = huixin::config::Secret::new(TOKEN);
        // The shipped rules, built in.
        config.rules.dir = dir.path().join("no-rules-folder");
        config.metrics.enabled = metrics;
        let app = runtime.block_on(App::new(config)).unwrap();
        Self {
            router: app.router(),
            next: AtomicU64::new(1),
            _app: app,
            _dir: dir,
        }
    }

    /// A new text message from a new user, signed now.
    fn request(&self) -> Request<Body> {
        let n = self.next.fetch_add(1, Ordering::Relaxed);
        let (timestamp, nonce) = (unix_now().to_string(), format!("n{n}"));
        let signature = sign(&[TOKEN, &timestamp, &nonce]);
        let user = format!("oBenchUser{n:012}");
        let body = format!(
            "<xml><ToUserName><![CDATA[gh_bench]]></ToUserName>\
             <FromUserName><![CDATA[{user}]]></FromUserName><CreateTime>{timestamp}</CreateTime>\
             <MsgType><![CDATA[text]]></MsgType><Content><![CDATA[hello 你好]]></Content>\
             <MsgId>{n}</MsgId></xml>"
        );
        Request::post(format!(
            "/wechat?signature={signature}&timestamp={timestamp}&nonce={nonce}&openid={user}"
        ))
        .header("content-type", "text/xml")
        .body(Body::from(body))
        .unwrap()
    }
}

fn bench_message(c: &mut Criterion) {
    let runtime = runtime();
    let on = Served::start(&runtime, true);
    let off = Served::start(&runtime, false);
    let mut g = c.benchmark_group("metrics/message");
    g.throughput(Throughput::Elements(1));
    // Alternating, so that drift in the machine or the database's growth hits both alike.
    for round in 0..2 {
        for (name, served) in [("metrics_on", &on), ("metrics_off", &off)] {
            g.bench_function(format!("{name}/{round}"), |b| {
                b.iter(|| {
                    let response = runtime
                        .block_on(served.router.clone().oneshot(served.request()))
                        .unwrap();
                    assert!(response.status().is_success());
                })
            });
        }
    }
    g.finish();
}

fn runtime() -> Runtime {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap()
}

criterion_group!(benches, bench_instrumentation, bench_message);
criterion_main!(benches);
