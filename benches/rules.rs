//! Per-message cost of the Rhai rules: the shipped rules answering a text message (conditions
//! in Rust, the feedback rule's check and the echo rule in Rhai, the hop to the blocking pool)
//! and the conditions alone for a message no script matches. Run `cargo bench --bench rules`.

use std::hint::black_box;
use std::sync::Arc;

use criterion::{Criterion, criterion_group, criterion_main};
use huixin::config::RulesConfig;
use huixin::rules::context::Services;
use huixin::rules::{builtin, loader};
use huixin::simulator::{Header, MessageSpec};
use huixin::wechat::{Message, Reply};

fn message(spec: MessageSpec) -> Arc<Message> {
    let xml = spec.to_xml(&Header::new("gh_bench", "oBenchUser")).unwrap();
    Arc::new(Message::parse(xml.as_bytes()).unwrap())
}

fn bench_rules(c: &mut Criterion) {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .enable_all()
        .build()
        .unwrap();
    let set =
        Arc::new(builtin::load(&loader(&RulesConfig::default(), Vec::new()).unwrap()).unwrap());
    let text = message(MessageSpec::Text {
        content: "hello 你好".into(),
    });
    let unsubscribe = message(MessageSpec::Unsubscribe);
    let keyword = message(MessageSpec::Text {
        content: "hours".into(),
    });

    let mut g = c.benchmark_group("rules");
    g.bench_function("shipped_rules_text_echo", |b| {
        b.iter(|| {
            let outcome = runtime.block_on(set.run(
                black_box(text.clone()),
                Services::default(),
                &Reply::Success,
            ));
            assert!(matches!(outcome.reply, Reply::Text { .. }));
        })
    });
    g.bench_function("shipped_rules_no_match", |b| {
        b.iter(|| {
            runtime.block_on(set.run(
                black_box(unsubscribe.clone()),
                Services::default(),
                &Reply::Success,
            ))
        })
    });
    g.bench_function("shipped_rules_keyword_table", |b| {
        b.iter(|| {
            runtime.block_on(set.run(
                black_box(keyword.clone()),
                Services::default(),
                &Reply::Success,
            ))
        })
    });
    g.finish();
}

criterion_group!(benches, bench_rules);
criterion_main!(benches);
