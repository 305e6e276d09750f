//! Outbound template sends against the emulator on loopback, with a warm access token: one send
//! at a time (the round trip: JSON, HTTP, the emulator's bookkeeping) and 64 at once (the
//! rate one process reaches). Client and emulator share the machine's cores, so the rate is a
//! floor for huixin against a remote API. Run `cargo bench --bench outbound`.

use std::time::Duration;

use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use huixin::config::{Secret, WechatConfig};
use huixin::emulator::{Emulator, Settings};
use huixin::outbound::{Client, TemplateMessage};

const USER: &str = "o_bench_user";
const CONCURRENT: usize = 64;

fn bench_outbound(c: &mut Criterion) {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .unwrap();
    let emulator = Emulator::new(Settings {
        app_id: "wx_bench".into(),
        app_secret: "bench_secret".into(),
        followers: vec![USER.into()],
        ..Settings::default()
    });
    let bound = runtime.block_on(emulator.bind("127.0.0.1:0")).unwrap();
    let base = format!("http://{}", bound.local_addr());
    runtime.spawn(bound.run(std::future::pending()));
    let client = Client::new(
        &WechatConfig {
            app_id: "wx_bench".into(),
            app_secret: Secret::new("bench_secret"),
            api_base: base,
            ..WechatConfig::default()
        },
        None,
    )
    .unwrap();
    let message = TemplateMessage::new(USER, "huixin_template_1")
        .field("title", "Deploy finished")
        .field("time", "12:00")
        .url("https://example.com/m/1");
    // Warm the token.
    runtime.block_on(client.send_template(&message)).unwrap();

    let mut g = c.benchmark_group("outbound");
    g.measurement_time(Duration::from_secs(8));
    g.throughput(Throughput::Elements(1));
    g.bench_function("template_send_one_at_a_time", |b| {
        b.iter(|| {
            runtime.block_on(client.send_template(&message)).unwrap();
        })
    });
    g.throughput(Throughput::Elements(CONCURRENT as u64));
    g.bench_function("template_send_64_concurrent", |b| {
        b.iter(|| {
            runtime.block_on(async {
                let sends: Vec<_> = (0..CONCURRENT)
                    .map(|_| {
                        let client = client.clone();
                        let message = message.clone();
                        tokio::spawn(async move { client.send_template(&message).await })
                    })
                    .collect();
                for send in sends {
                    send.await.unwrap().unwrap();
                }
            })
        })
    });
    g.finish();
    // Keep the emulator's memory in check between runs.
    emulator.clear_calls();
    assert_eq!(client.tokens().fetches(), 1, "the token stayed warm");
}

criterion_group!(benches, bench_outbound);
criterion_main!(benches);
