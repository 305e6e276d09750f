//! `/metrics` through the real binary against `huixin emulator`: traffic of every kind (a text,
//! an event, a WeChat retry, a reply past the deadline, a failing rule, a push through the API,
//! a request no route matches), then the metrics read with a Prometheus text parser
//! (`prometheus-parse`) and the counters checked to have moved by what was sent. The token
//! guards the main listener; `[metrics] listen` serves without one; histograms have buckets;
//! routes are templates. In-process: a scan of random paths adds no label values, `/metrics`
//! says how to turn it on, the switch turns it off, and a taken `[metrics] listen` fails the
//! start with a clear error. The Grafana dashboard names only metrics huixin renders.

use crate::common;

use std::collections::BTreeSet;
use std::path::Path;
use std::time::Duration;

use common::process::{HUIXIN, Running};
use common::setup::setup;
use huixin::app::App;
use huixin::simulator::{Header, MessageSpec};
use huixin::wechat::Mode;
use prometheus_parse::{Sample, Scrape, Value};
use serde_json::json;
use tower::ServiceExt;

const TOKEN: &str = "metrics-token-0123456789";
const FOLLOWER: &str = "o_metrics_1";

/// The test rules: a failing rule, a slow one, and an echo (its line is [`ECHO_LINE`]).
const RULES: &str = r#"rule(#{ content: "boom" }, |msg| { throw "boom on purpose"; });
rule(#{ content: "slow" }, |msg| {
    let start = now_ms();
    while now_ms() - start < 700 {}
    text("slow, but here")
});
rule(#{ type: "text" }, |msg| text(msg.content));
"#;
const ECHO_LINE: usize = 7;

fn parse(body: &str) -> Scrape {
    Scrape::parse(body.lines().map(|l| Ok(l.to_owned()))).expect("a Prometheus text document")
}

/// The value of the sample `name` whose labels include `labels` (0 when there is none).
fn value(scrape: &Scrape, name: &str, labels: &[(&str, &str)]) -> f64 {
    scrape
        .samples
        .iter()
        .filter(|s| s.metric == name && has(s, labels))
        .map(|s| match &s.value {
            Value::Counter(v) | Value::Gauge(v) | Value::Untyped(v) => *v,
            _ => 0.0,
        })
        .sum()
}

fn has(sample: &Sample, labels: &[(&str, &str)]) -> bool {
    labels.iter().all(|(k, v)| sample.labels.get(k) == Some(*v))
}

/// The values of label `label` across the samples of `name`.
fn label_values(scrape: &Scrape, name: &str, label: &str) -> BTreeSet<String> {
    scrape
        .samples
        .iter()
        .filter(|s| s.metric == name)
        .filter_map(|s| s.labels.get(label).map(str::to_owned))
        .collect()
}

/// A histogram's buckets (upper bound, count) and its count.
fn histogram(scrape: &Scrape, name: &str, labels: &[(&str, &str)]) -> (Vec<(f64, f64)>, f64) {
    let mut buckets = Vec::new();
    let mut count = 0.0;
    for s in scrape
        .samples
        .iter()
        .filter(|s| s.metric == name && has(s, labels))
    {
        if let Value::Histogram(hs) = &s.value {
            buckets.extend(hs.iter().map(|b| (b.less_than, b.count)));
            count += hs.iter().map(|b| b.count).fold(0.0, f64::max);
        }
    }
    (buckets, count)
}

#[test]
fn counters_move_with_traffic_and_parse_as_prometheus_text() {
    let metrics_port = common::free_port();
    let s = setup(
        &[FOLLOWER, "o_metrics_2"],
        &format!(
            "\n[metrics]\ntoken = \"{TOKEN}\"\nlisten = \"127.0.0.1:{metrics_port}\"\n\
             [rules]\nmax_operations = 1000000000000\nmax_run_ms = 5000\n"
        ),
    );
    write_rules(&s.dir.path().join("rules"));
    let key = s.admin_key();
    let mut server = Running::spawn(
        Path::new(HUIXIN),
        s.dir.path(),
        &["serve"],
        &[("HUIXIN_BOT_REPLY_DEADLINE_MS", "300")],
    );
    let banner = server.wait_for("metrics:");
    assert!(
        banner.contains(&format!("127.0.0.1:{metrics_port}/metrics")),
        "{banner}"
    );
    server.wait_for("listening on");

    let sim = common::simulator(&format!("{}/wechat", s.base()), Mode::Plain, common::APP_ID);
    let xml =
        |spec: MessageSpec, from: &str| spec.to_xml(&Header::new("gh_push_test", from)).unwrap();
    let text = |content: &str| MessageSpec::Text {
        content: content.into(),
    };
    s.runtime.block_on(async {
        // A text, then WeChat's retry of it (the same request again).
        let hello = sim.prepare(xml(text("hello"), FOLLOWER), FOLLOWER);
        for _ in 0..2 {
            let exchange = sim.send_prepared(&hello).await.unwrap();
            assert!(exchange.body.contains("hello"), "{}", exchange.body);
        }
        // An event, a failing rule, and a rule past the 300 ms deadline.
        let subscribe = xml(MessageSpec::Subscribe { scene: None }, "o_metrics_2");
        sim.send(subscribe, "o_metrics_2").await.unwrap();
        let boom = sim
            .send(xml(text("boom"), FOLLOWER), FOLLOWER)
            .await
            .unwrap();
        assert_eq!(boom.body, "success", "the fallback answers a failed rule");
        let slow = sim
            .send(xml(text("slow"), FOLLOWER), FOLLOWER)
            .await
            .unwrap();
        assert_eq!(slow.body, "success", "the deadline answered");
    });

    // A push through the API, delivered and confirmed by TEMPLATESENDJOBFINISH.
    let (code, accepted) = s.post(
        "/api/v1/push",
        Some(&key),
        json!({ "to": [FOLLOWER], "title": "metrics test" }),
    );
    assert_eq!(code, 200, "{accepted}");
    let id = accepted["id"].as_str().unwrap().to_owned();
    s.settle(&key, &id, |st| st["counts"]["delivered"] == 1);
    // The detail page (a route with a parameter) and a path no route has.
    assert_eq!(s.get(&format!("/m/{id}"), None).0, 200);
    assert_eq!(s.get("/no/such/path/at/all/xyz123", None).0, 404);

    // Refused without the token or with a wrong one; the late reply and the confirmation
    // arrive on their own time, so the scrape is retried until they show.
    let (code, body) = s.get("/metrics", None);
    assert_eq!(code, 401, "{body}");
    let (code, _) = s.get("/metrics", Some("metrics-token-wrong-guess"));
    assert_eq!(code, 401);
    let scrape = scrape_until(&s, |m| {
        value(m, "huixin_late_replies_total", &[("way", "sender")]) >= 1.0
            && value(m, "huixin_push_recipients_total", &[("state", "delivered")]) >= 1.0
    });

    // Messages by type: hello twice (the retry is a message too), boom, slow; the events.
    let text_labels = [("msg_type", "text"), ("event", "")];
    assert_eq!(value(&scrape, "huixin_messages_total", &text_labels), 4.0);
    assert_eq!(
        value(
            &scrape,
            "huixin_messages_total",
            &[("msg_type", "event"), ("event", "subscribe")]
        ),
        1.0
    );
    assert_eq!(
        value(
            &scrape,
            "huixin_messages_total",
            &[("msg_type", "event"), ("event", "templatesendjobfinish")]
        ),
        1.0
    );
    // Replies by outcome and rule.
    let echo = format!("10-metrics.rhai:{ECHO_LINE}");
    assert_eq!(
        value(
            &scrape,
            "huixin_replies_total",
            &[("outcome", "answered"), ("rule", &echo)]
        ),
        1.0
    );
    assert_eq!(
        value(&scrape, "huixin_replies_total", &[("outcome", "retry")]),
        1.0
    );
    assert_eq!(
        value(&scrape, "huixin_replies_total", &[("outcome", "late")]),
        1.0
    );
    assert_eq!(value(&scrape, "huixin_script_errors_total", &[]), 1.0);
    assert_eq!(
        value(
            &scrape,
            "huixin_dedup_retries_total",
            &[("how", "replayed")]
        ),
        1.0
    );
    assert_eq!(value(&scrape, "huixin_deadline_misses_total", &[]), 1.0);
    assert_eq!(
        value(&scrape, "huixin_late_replies_total", &[("way", "sender")]),
        1.0
    );
    // The rule run time: a histogram with buckets, one observation per run of the rules
    // (hello, subscribe, boom, slow, the job report; not the retry).
    let (buckets, runs) = histogram(&scrape, "huixin_rule_run_duration_seconds", &[]);
    assert!(buckets.len() > 5, "{buckets:?}");
    assert!(buckets.iter().any(|(le, _)| le.is_infinite()));
    assert_eq!(runs, 5.0, "{buckets:?}");
    let slow_runs = buckets
        .iter()
        .filter(|(le, _)| *le >= 0.5)
        .map(|(_, n)| *n)
        .fold(f64::MAX, f64::min);
    assert!(slow_runs >= 1.0, "the slow run is in the upper buckets");

    // The push: accepted, sent, delivered; the queue empty again.
    assert_eq!(
        value(&scrape, "huixin_push_accepted_total", &[("source", "api")]),
        1.0
    );
    for state in ["accepted", "sent", "delivered"] {
        assert_eq!(
            value(&scrape, "huixin_push_recipients_total", &[("state", state)]),
            1.0,
            "{state}"
        );
    }
    assert_eq!(value(&scrape, "huixin_push_queue_depth", &[]), 0.0);
    // WeChat's API: the template send, the late reply as a customer-service message, a token.
    for api in [
        "/cgi-bin/message/template/send",
        "/cgi-bin/message/custom/send",
    ] {
        assert_eq!(
            value(&scrape, "huixin_wechat_api_calls_total", &[("api", api)]),
            1.0,
            "{api}"
        );
    }
    assert!(value(&scrape, "huixin_token_refreshes_total", &[("result", "ok")]) >= 1.0);
    assert_eq!(
        value(
            &scrape,
            "huixin_token_refreshes_total",
            &[("result", "failed")]
        ),
        0.0
    );
    // The store writer wrote batches.
    assert!(value(&scrape, "huixin_store_write_batches_total", &[]) >= 1.0);
    assert!(value(&scrape, "huixin_store_writes_total", &[]) >= 5.0);
    assert_eq!(
        value(&scrape, "huixin_store_writes_dropped_total", &[]),
        0.0
    );

    // HTTP: route templates only.
    let routes = label_values(&scrape, "huixin_http_requests_total", "route");
    for route in [
        "/wechat",
        "/api/v1/push",
        "/api/v1/push/:id",
        "/m/:id",
        "unmatched",
    ] {
        assert!(routes.contains(route), "{route} in {routes:?}");
    }
    assert!(
        routes.iter().all(|r| r == "unmatched"
            || (r.starts_with('/') && !r.contains(&id) && !r.contains("xyz123"))),
        "{routes:?}"
    );
    assert_eq!(
        value(
            &scrape,
            "huixin_http_requests_total",
            &[("route", "unmatched"), ("status", "4xx")]
        ),
        1.0
    );
    let (buckets, count) = histogram(
        &scrape,
        "huixin_http_request_duration_seconds",
        &[("route", "/wechat")],
    );
    assert!(buckets.len() > 5 && count >= 5.0, "{buckets:?}");
    assert!(value(&scrape, "huixin_build_info", &[]) == 1.0);

    // `[metrics] listen`: the same metrics, without a key.
    let (code, body) = s.runtime.block_on(async {
        let response = s
            .http
            .get(format!("http://127.0.0.1:{metrics_port}/metrics"))
            .send()
            .await
            .unwrap();
        (response.status().as_u16(), response.text().await.unwrap())
    });
    assert_eq!(code, 200, "{body}");
    let private = parse(&body);
    assert_eq!(value(&private, "huixin_messages_total", &text_labels), 4.0);
    // OpenMetrics for a scraper that asks for it.
    let openmetrics = s.runtime.block_on(async {
        s.http
            .get(format!("http://127.0.0.1:{metrics_port}/metrics"))
            .header("accept", "application/openmetrics-text; version=1.0.0")
            .send()
            .await
            .unwrap()
            .text()
            .await
            .unwrap()
    });
    assert!(openmetrics.trim_end().ends_with("# EOF"), "{openmetrics}");

    // The secrets are nowhere in what is rendered.
    for secret in [TOKEN, common::emu::API_SECRET, key.as_str()] {
        assert!(!body.contains(secret));
    }
    assert!(
        server.terminate(),
        "stops cleanly with the metrics listener"
    );
}

/// Scrapes `/metrics` with the token until `ready` holds (or ten seconds pass).
fn scrape_until(s: &common::setup::Setup, ready: impl Fn(&Scrape) -> bool) -> Scrape {
    let mut last = String::new();
    for _ in 0..200 {
        let (code, body) = s.get("/metrics", Some(TOKEN));
        assert_eq!(code, 200, "{body}");
        let scrape = parse(&body);
        if ready(&scrape) {
            return scrape;
        }
        last = body;
        std::thread::sleep(Duration::from_millis(50));
    }
    panic!("the metrics did not settle:\n{last}");
}

fn write_rules(dir: &Path) {
    std::fs::create_dir_all(dir).unwrap();
    std::fs::write(dir.join("10-metrics.rhai"), RULES).unwrap();
}

/// An app on a fresh SQLite file with `sections` appended to the test config.
async fn app(dir: &Path, sections: &str) -> Result<App, huixin::app::AppError> {
    let config = common::config_full(Mode::Plain, dir, "", sections);
    App::builder(config).without_rules().build().await
}

async fn get(router: &axum::Router, path: &str, bearer: Option<&str>) -> (u16, String) {
    let mut request = axum::http::Request::get(path);
    if let Some(token) = bearer {
        request = request.header("authorization", format!("Bearer {token}"));
    }
    let response = router
        .clone()
        .oneshot(request.body(axum::body::Body::empty()).unwrap())
        .await
        .unwrap();
    let status = response.status().as_u16();
    let bytes = axum::body::to_bytes(response.into_body(), 1 << 20)
        .await
        .unwrap();
    (status, String::from_utf8_lossy(&bytes).into_owned())
}

#[tokio::test]
async fn unmatched_and_parameterised_paths_add_no_label_values() {
    let dir = tempfile::tempdir().unwrap();
    let app = app(dir.path(), &format!("[metrics]\ntoken = \"{TOKEN}\""))
        .await
        .unwrap();
    let router = app.router();
    for i in 0..50 {
        get(&router, &format!("/scan/{i}/a/b/c/admin.php"), None).await;
        get(&router, &format!("/m/{i:022}"), None).await;
        get(&router, &format!("/healthz?x={i}"), None).await;
    }
    let (code, body) = get(&router, "/metrics", Some(TOKEN)).await;
    assert_eq!(code, 200, "{body}");
    let scrape = parse(&body);
    let routes = label_values(&scrape, "huixin_http_requests_total", "route");
    assert_eq!(
        routes,
        BTreeSet::from([
            "/healthz".to_owned(),
            "/m/:id".to_owned(),
            "unmatched".to_owned()
        ]),
        "one label value per route, whatever the paths"
    );
    assert_eq!(
        value(
            &scrape,
            "huixin_http_requests_total",
            &[("route", "unmatched")]
        ),
        50.0
    );
    let latency_routes = label_values(
        &scrape,
        "huixin_http_request_duration_seconds_count",
        "route",
    );
    assert!(latency_routes.len() <= 3, "{latency_routes:?}");
    app.shutdown().await;
}

#[tokio::test]
async fn without_a_token_metrics_say_how_to_turn_them_on_and_the_switch_turns_them_off() {
    let dir = tempfile::tempdir().unwrap();
    let app = app(dir.path(), "").await.unwrap();
    let (code, body) = get(&app.router(), "/metrics", Some("anything-at-all-here")).await;
    assert_eq!(code, 404);
    assert!(body.contains("[metrics] token"), "{body}");
    assert!(app.metrics().is_enabled());
    app.shutdown().await;

    let dir = tempfile::tempdir().unwrap();
    let app = app_off(dir.path()).await;
    let router = app.router();
    let (code, body) = get(&router, "/metrics", Some(TOKEN)).await;
    assert_eq!(code, 404);
    assert!(body.contains("enabled"), "{body}");
    get(&router, "/healthz", None).await;
    assert!(!app.metrics().is_enabled());
    assert_eq!(app.metrics().render(), "", "nothing counted");
    app.shutdown().await;
}

async fn app_off(dir: &Path) -> App {
    app(
        dir,
        &format!("[metrics]\nenabled = false\ntoken = \"{TOKEN}\"\nlisten = \"127.0.0.1:0\""),
    )
    .await
    .unwrap()
}

#[tokio::test]
async fn a_taken_metrics_listen_address_is_a_clear_error() {
    let taken = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = taken.local_addr().unwrap();
    let dir = tempfile::tempdir().unwrap();
    let err = app(dir.path(), &format!("[metrics]\nlisten = \"{addr}\""))
        .await
        .unwrap_err();
    let text = err.to_string();
    assert!(
        text.contains("[metrics] listen") && text.contains(&addr.to_string()),
        "{text}"
    );
}

#[test]
fn every_dashboard_expression_names_a_metric_huixin_renders() {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("examples/deploy/grafana-huixin.json");
    let dashboard: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(path).unwrap()).unwrap();
    let mut exprs = Vec::new();
    collect_exprs(&dashboard, &mut exprs);
    assert!(exprs.len() > 10, "{exprs:?}");

    // Every family huixin renders (a family shows once it has a series: one of each), with
    // the suffixes Prometheus gives their series.
    let metrics = huixin::metrics::Metrics::new();
    metrics.watch_store(Default::default);
    metrics.message("text", "");
    metrics.replied("answered", huixin::metrics::RuleLabel::None);
    metrics.dedup_retry("replayed");
    metrics.late_reply("sender");
    metrics.push_accepted("api", 1);
    metrics.webhook_delivery("delivered");
    metrics.api_call("/cgi-bin/message/template/send");
    metrics.api_error(
        "/cgi-bin/message/template/send",
        huixin::metrics::ErrCode::Code(43004),
        "require subscribe",
    );
    metrics.token_refresh(true);
    metrics.http_request(
        huixin::metrics::RouteLabel::Unmatched,
        404,
        Duration::from_millis(1),
    );
    let rendered = metrics.render();
    let mut names = BTreeSet::new();
    for line in rendered.lines() {
        if let Some(rest) = line.strip_prefix("# TYPE ") {
            let mut parts = rest.split_whitespace();
            let (name, kind) = (parts.next().unwrap(), parts.next().unwrap());
            names.insert(name.to_owned());
            if kind == "histogram" {
                for suffix in ["_bucket", "_sum", "_count"] {
                    names.insert(format!("{name}{suffix}"));
                }
            }
        }
    }
    let metric = regex::Regex::new(r"\bhuixin_[a-z_]+").unwrap();
    for expr in &exprs {
        let used: Vec<&str> = metric.find_iter(expr).map(|m| m.as_str()).collect();
        assert!(
            !used.is_empty(),
            "an expression without a huixin metric: {expr}"
        );
        for name in used {
            assert!(
                names.contains(name),
                "{name} (in {expr}) is not rendered; known: {names:?}"
            );
        }
    }
}

fn collect_exprs(value: &serde_json::Value, out: &mut Vec<String>) {
    match value {
        serde_json::Value::Object(map) => {
            for (k, v) in map {
                match (k.as_str(), v) {
                    ("expr", serde_json::Value::String(e)) => out.push(e.clone()),
                    _ => collect_exprs(v, out),
                }
            }
        }
        serde_json::Value::Array(items) => items.iter().for_each(|v| collect_exprs(v, out)),
        _ => {}
    }
}
