//! The operator console's reads, on a seeded SQLite file (`huixin store seed`): 100,000
//! followers, 1,000,000 rows of the inbound log and 10,000 pushes over 30 days. Each query is
//! what one page of the console asks (50 rows):
//!
//! - the inbound log: unfiltered, by user, by type, by event, by a rare outcome, a page deep
//!   in the middle of the log;
//! - the hourly counts of 30 days (the overview's charts) and the follower count;
//! - followers: unfiltered, by an OpenID prefix (a rare one, and the one every OpenID of the
//!   account shares), by a common and a rare scene, by a large and a small topic, by app;
//! - pushes with their recipients counted by state.
//!
//! Run `cargo bench --bench console` (seeding takes about a minute). Under
//! `cargo test --bench console` (a single pass to keep it from rotting) the database shrinks
//! to 2,000 followers and 20,000 log rows.

use std::time::Duration;

use criterion::{Criterion, criterion_group, criterion_main};
use huixin::store::Store;
use huixin::store::console::{FollowerFilter, LogFilter, hour_of};
use huixin::store::seed::{self, Options};
use huixin::support::clock::unix_now;

/// What to seed: the sizes when benchmarking, a small database when run as a test.
fn options() -> Options {
    if std::env::args().any(|a| a == "--bench") {
        Options::default()
    } else {
        Options {
            followers: 2_000,
            log_rows: 20_000,
            pushes: 200,
            ..Options::default()
        }
    }
}

fn console(c: &mut Criterion) {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .unwrap();
    let dir = tempfile::tempdir().unwrap();
    let url = format!("sqlite://{}", dir.path().join("huixin.db").display());
    let options = options();
    let store = runtime.block_on(Store::open(&url)).unwrap();
    let seeded = runtime.block_on(seed::seed(&store, &options)).unwrap();
    eprintln!(
        "seeded {} followers, {} log rows, {} pushes ({} recipients) in {:.1} s",
        seeded.followers,
        seeded.log_rows,
        seeded.pushes,
        seeded.recipients,
        seeded.took.as_secs_f64()
    );
    let size = std::fs::metadata(dir.path().join("huixin.db")).map_or(0, |m| m.len());
    eprintln!("database: {:.0} MB", size as f64 / 1e6);

    let b = store.backend();
    // The middle of the log, for a deep page.
    let newest = runtime
        .block_on(b.log_page(&LogFilter {
            limit: 1,
            ..LogFilter::default()
        }))
        .unwrap();
    let middle = newest.first().map_or(0, |r| r.id / 2);
    // A user who wrote often (seeded traffic favours the first followers), and one of them
    // whose OpenID's first seven characters few others share.
    let busy = seed::openid(options.seed, 3);
    let rare_prefix: String = seed::openid(options.seed, 1_234 % options.followers)
        .chars()
        .take(7)
        .collect();

    let mut group = c.benchmark_group("console");
    group.sample_size(20);
    group.warm_up_time(Duration::from_millis(500));
    group.measurement_time(Duration::from_secs(3));
    let some = |s: &str| Some(s.to_owned());

    let log_pages = [
        ("log_page/unfiltered", LogFilter::default()),
        (
            "log_page/by_user",
            LogFilter {
                openid: Some(busy.clone()),
                ..LogFilter::default()
            },
        ),
        (
            "log_page/by_type_image",
            LogFilter {
                msg_type: some("image"),
                ..LogFilter::default()
            },
        ),
        (
            "log_page/by_type_video",
            LogFilter {
                msg_type: some("video"),
                ..LogFilter::default()
            },
        ),
        (
            "log_page/by_event_subscribe",
            LogFilter {
                msg_type: some("subscribe"),
                ..LogFilter::default()
            },
        ),
        (
            "log_page/by_outcome_failed",
            LogFilter {
                outcome: some("failed"),
                ..LogFilter::default()
            },
        ),
        (
            "log_page/by_outcome_answered",
            LogFilter {
                outcome: some("answered"),
                ..LogFilter::default()
            },
        ),
        (
            "log_page/deep",
            LogFilter {
                before_id: Some(middle),
                ..LogFilter::default()
            },
        ),
        (
            "log_page/deep_by_type_image",
            LogFilter {
                msg_type: some("image"),
                before_id: Some(middle),
                ..LogFilter::default()
            },
        ),
    ];
    for (name, filter) in log_pages {
        let rows = runtime.block_on(b.log_page(&filter)).unwrap().len();
        eprintln!("{name}: {rows} rows");
        group.bench_function(name, |bench| {
            bench.iter(|| runtime.block_on(b.log_page(&filter)).unwrap())
        });
    }

    let since = hour_of(unix_now()) - 30 * 24;
    let counts = runtime.block_on(b.log_counts(since)).unwrap().len();
    eprintln!("log_counts/30_days: {counts} rows");
    group.bench_function("log_counts/30_days", |bench| {
        bench.iter(|| runtime.block_on(b.log_counts(since)).unwrap())
    });
    group.bench_function("follower_count", |bench| {
        bench.iter(|| runtime.block_on(b.follower_count()).unwrap())
    });

    let follower_pages = [
        ("followers_page/unfiltered", FollowerFilter::default()),
        (
            "followers_page/by_rare_prefix",
            FollowerFilter {
                openid: Some(rare_prefix),
                ..FollowerFilter::default()
            },
        ),
        (
            "followers_page/by_common_prefix",
            FollowerFilter {
                openid: some(seed::OPENID_PREFIX),
                ..FollowerFilter::default()
            },
        ),
        (
            "followers_page/by_common_scene",
            FollowerFilter {
                scene: some("poster_2024"),
                ..FollowerFilter::default()
            },
        ),
        (
            "followers_page/by_rare_scene",
            FollowerFilter {
                scene: some("bind:legacy"),
                ..FollowerFilter::default()
            },
        ),
        (
            "followers_page/by_large_topic",
            FollowerFilter {
                topic: some("news"),
                ..FollowerFilter::default()
            },
        ),
        (
            "followers_page/by_small_topic",
            FollowerFilter {
                topic: some("ops"),
                ..FollowerFilter::default()
            },
        ),
        (
            "followers_page/by_app",
            FollowerFilter {
                app_id: Some(1),
                ..FollowerFilter::default()
            },
        ),
        (
            "followers_page/unsubscribed",
            FollowerFilter {
                subscribed: Some(false),
                ..FollowerFilter::default()
            },
        ),
    ];
    for (name, filter) in follower_pages {
        let rows = runtime.block_on(b.followers_page(&filter)).unwrap();
        // The next page: where paging costs what the first page did, or not.
        let after = rows.last().map(FollowerFilter::key_of);
        eprintln!("{name}: {} rows", rows.len());
        group.bench_function(name, |bench| {
            bench.iter(|| runtime.block_on(b.followers_page(&filter)).unwrap())
        });
        let next = FollowerFilter {
            after,
            ..filter.clone()
        };
        group.bench_function(format!("{name}/next"), |bench| {
            bench.iter(|| runtime.block_on(b.followers_page(&next)).unwrap())
        });
    }

    group.bench_function("push_page", |bench| {
        bench.iter(|| runtime.block_on(b.push_page(None, 50)).unwrap())
    });
    group.finish();
    drop(store);
    drop(dir);
}

criterion_group!(benches, console);
criterion_main!(benches);
