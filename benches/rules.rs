//! Per-message cost of the Rhai rules: the shipped rules answering a text message (conditions
//! in Rust, the feedback rule's check and the echo rule in Rhai, the hop to the blocking pool)
//! and the conditions alone for a message no script matches. Run `cargo bench --bench rules`.
//!
//! The `rules_extras` group measures what a large rule set adds: the shipped rules alone
//! against the shipped rules plus 1,000 keyword entries (`60-extra-keywords.toml`, mostly
//! exact `content`, some `contains` and `prefix`) and 100 Rhai rules with regex conditions
//! (`70-extra-regex.rhai`) that the messages do not match, each `RuleSet::run` end to end on a
//! SQLite store in a temporary folder: a text no extra rule matches (it falls to the echo
//! rule), the 1,000th keyword, and a subscribe event. The `rules_matching` group times the
//! matching alone for the same messages: the plan through the index built at load
//! (`RuleSet::plan`, what `run` uses) against the walk over every rule (`plan_linear`).

use std::hint::black_box;
use std::sync::Arc;

use criterion::{Criterion, criterion_group, criterion_main};
use huixin::config::RulesConfig;
use huixin::rules::context::Services;
use huixin::rules::load::SourceFile;
use huixin::rules::{RuleSet, Source, builtin, loader};
use huixin::simulator::{Header, MessageSpec};
use huixin::store::Store;
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
    // Built once, as the app does: a default `Services` asks the OS for the core count (cgroup
    // files), tens of microseconds that are no part of a message's cost.
    let services = Services::default();

    let mut g = c.benchmark_group("rules");
    g.bench_function("shipped_rules_text_echo", |b| {
        b.iter(|| {
            let outcome = runtime.block_on(set.run(
                black_box(text.clone()),
                services.clone(),
                &Reply::Success,
            ));
            assert!(matches!(outcome.reply, Reply::Text { .. }));
        })
    });
    g.bench_function("shipped_rules_no_match", |b| {
        b.iter(|| {
            runtime.block_on(set.run(
                black_box(unsubscribe.clone()),
                services.clone(),
                &Reply::Success,
            ))
        })
    });
    g.bench_function("shipped_rules_keyword_table", |b| {
        b.iter(|| {
            runtime.block_on(set.run(
                black_box(keyword.clone()),
                services.clone(),
                &Reply::Success,
            ))
        })
    });
    g.finish();
}

/// 1,000 keyword entries: `content = ["kw0001", "关键词0001"]`, every 25th from the 7th a
/// `contains` and every 25th from the 13th a `prefix` instead. Entry 1000 is a `content`.
fn extra_keywords() -> String {
    let mut toml = String::from("# 1,000 generated keyword entries\n");
    for n in 1..=1000 {
        let condition = match n % 25 {
            7 => format!("contains = [\"contains{n:04}\", \"包含{n:04}\"]"),
            13 => format!("prefix = [\"prefix{n:04} \", \"前缀{n:04}\"]"),
            _ => format!("content = [\"kw{n:04}\", \"关键词{n:04}\"]"),
        };
        toml.push_str(&format!(
            "\n[[reply]]\n{condition}\ntext = \"keyword {n}\"\n"
        ));
    }
    toml
}

/// 100 Rhai rules with regex conditions, half anchored commands, half unanchored patterns.
fn extra_regex_rules() -> String {
    let mut rhai = String::from("// 100 generated regex rules\n");
    for n in 1..=100 {
        let pattern = if n % 2 == 0 {
            format!(r"^(?i:cmd{n:03})\\s+(?P<arg>[-_A-Za-z0-9]{{1,64}})$")
        } else {
            format!(r"(?P<year>\\d{{4}})-order{n:03}-(?P<id>\\d{{2,8}})")
        };
        rhai.push_str(&format!(
            "rule(#{{ regex: \"{pattern}\" }}, |msg, caps| text(`rule {n}: ${{caps[1]}}`));\n"
        ));
    }
    rhai
}

/// The shipped rules plus 1,000 keyword entries and 100 regex rules.
fn extended_set() -> RuleSet {
    let loader = loader(&RulesConfig::default(), Vec::new()).unwrap();
    let mut files: Vec<SourceFile> = builtin::FILES
        .iter()
        .filter(|(name, _)| name.ends_with(".rhai") || name.ends_with(".toml"))
        .map(|(name, text)| SourceFile {
            name: (*name).to_owned(),
            text: (*text).to_owned(),
        })
        .collect();
    files.push(SourceFile {
        name: "60-extra-keywords.toml".into(),
        text: extra_keywords(),
    });
    files.push(SourceFile {
        name: "70-extra-regex.rhai".into(),
        text: extra_regex_rules(),
    });
    loader.load(files, None, Source::Builtin).unwrap()
}

fn bench_extras(c: &mut Criterion) {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .enable_all()
        .build()
        .unwrap();
    let dir = tempfile::tempdir().unwrap();
    let url = format!("sqlite://{}", dir.path().join("bench.db").display());
    let store = runtime.block_on(Store::open(&url)).unwrap();
    let services = Services {
        store: Some(store),
        ..Services::default()
    };
    let shipped =
        Arc::new(builtin::load(&loader(&RulesConfig::default(), Vec::new()).unwrap()).unwrap());
    let extended = Arc::new(extended_set());
    assert_eq!(extended.rules.len(), shipped.rules.len() + 1100);

    let cases = [
        (
            "text_echo",
            message(MessageSpec::Text {
                content: "hello 你好".into(),
            }),
            "hello 你好",
            "hello 你好",
        ),
        (
            "keyword_1000",
            message(MessageSpec::Text {
                content: "kw1000".into(),
            }),
            "kw1000",
            "keyword 1000",
        ),
        (
            "subscribe",
            message(MessageSpec::Subscribe {
                scene: Some("poster".into()),
            }),
            "poster",
            "poster",
        ),
    ];

    let mut g = c.benchmark_group("rules_extras");
    for (name, msg, shipped_reply, extended_reply) in &cases {
        for (label, set, expect) in [
            ("shipped", &shipped, shipped_reply),
            ("extended", &extended, extended_reply),
        ] {
            // Each set answers as expected before it is timed.
            let outcome = runtime.block_on(set.run(msg.clone(), services.clone(), &Reply::Success));
            let Reply::Text { content } = &outcome.reply else {
                panic!("{label}/{name}: {:?}", outcome.reply);
            };
            assert!(content.contains(*expect), "{label}/{name}: {content}");
            g.bench_function(format!("{label}/{name}"), |b| {
                b.iter(|| {
                    runtime.block_on(set.run(
                        black_box(msg.clone()),
                        services.clone(),
                        &Reply::Success,
                    ))
                })
            });
        }
    }
    g.finish();
}

/// The matching alone (no script, no thread hop): the plan through the index against the walk
/// over every rule, for the shipped and the extended set.
fn bench_matching(c: &mut Criterion) {
    let shipped = builtin::load(&loader(&RulesConfig::default(), Vec::new()).unwrap()).unwrap();
    let extended = extended_set();
    let messages = [
        (
            "text_echo",
            message(MessageSpec::Text {
                content: "hello 你好".into(),
            }),
        ),
        (
            "keyword_1000",
            message(MessageSpec::Text {
                content: "kw1000".into(),
            }),
        ),
        (
            "subscribe",
            message(MessageSpec::Subscribe {
                scene: Some("poster".into()),
            }),
        ),
    ];
    let mut g = c.benchmark_group("rules_matching");
    g.warm_up_time(std::time::Duration::from_secs(1));
    g.measurement_time(std::time::Duration::from_secs(3));
    for (name, msg) in &messages {
        for (label, set) in [("shipped", &shipped), ("extended", &extended)] {
            assert_eq!(set.plan(msg), set.plan_linear(msg), "{label}/{name}");
            g.bench_function(format!("{label}/{name}/index"), |b| {
                b.iter(|| set.plan(black_box(msg)))
            });
            g.bench_function(format!("{label}/{name}/linear"), |b| {
                b.iter(|| set.plan_linear(black_box(msg)))
            });
        }
    }
    g.finish();
}

criterion_group!(benches, bench_rules, bench_extras, bench_matching);
criterion_main!(benches);
