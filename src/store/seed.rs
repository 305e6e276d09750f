//! `huixin store seed`: fills a database with made-up traffic, for trying the operator
//! console and for its benchmark (`benches/console.rs`): followers (some unfollowed, some with
//! a QR scene), topics and their members, two apps with a few bindings, session keys, a month
//! of the inbound log, and pushes whose recipients were sent, delivered or failed.
//!
//! Everything goes through the store's own writes, the log in batches as the batch writer
//! writes it, so the hourly counts ([`super::console`]) agree with the rows as they would
//! after real traffic. The same seed makes the same data (times aside: they end now).
//!
//! No recipient is left waiting or being sent: a server started on the seeded database has
//! nothing of it to deliver (its followers are made up).

use std::collections::HashMap;
use std::time::{Duration, Instant};

use super::apps::{NewApp, NewBinding};
use super::console::FollowerFilter;
use super::push::{Attempt, GroupedPush, NewPush, Outcome};
use super::{Deferred, LogEntry, SessionChange, Store, StoreError};
use crate::support::clock::unix_now;

/// What to make.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Options {
    /// Followers.
    pub followers: u64,
    /// Rows of the inbound log.
    pub log_rows: u64,
    /// Pushes (each to one to five followers).
    pub pushes: u64,
    /// Days the log and the pushes are spread over, ending now.
    pub days: u32,
    /// Seed a database that has followers already.
    pub force: bool,
    /// The random generator's seed.
    pub seed: u64,
}

impl Default for Options {
    fn default() -> Self {
        Self {
            followers: 100_000,
            log_rows: 1_000_000,
            pushes: 10_000,
            days: 30,
            force: false,
            seed: 1,
        }
    }
}

/// What was made.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Seeded {
    /// Followers.
    pub followers: u64,
    /// Log rows.
    pub log_rows: u64,
    /// Topic memberships.
    pub members: u64,
    /// Bindings.
    pub bindings: u64,
    /// Pushes.
    pub pushes: u64,
    /// Their recipients.
    pub recipients: u64,
    /// How long it took.
    pub took: Duration,
}

/// Why seeding refused.
#[derive(Debug, thiserror::Error)]
pub enum SeedError {
    /// The database has followers and `force` was not given.
    #[error(
        "the database already has followers: seeding would mix made-up traffic into it \
         (--force to seed it anyway)"
    )]
    NotEmpty,
    /// Recipients wait for delivery: seeding pushes would claim them.
    #[error(
        "push recipients wait for delivery in this database: seeding pushes would settle them \
         (--pushes 0 to seed without pushes)"
    )]
    PushesWaiting,
    /// The store failed.
    #[error(transparent)]
    Store(#[from] StoreError),
}

/// Log rows per batch: the batch writer's largest.
const BATCH: usize = super::writer::BATCH_MAX;
/// Pushes per group.
const PUSH_GROUP: usize = 256;
/// The OpenIDs' first characters (an account's OpenIDs share a few).
pub const OPENID_PREFIX: &str = "o6_bm";
/// The topics, with the share of followers in each (per mille).
pub const TOPICS: [(&str, u64); 5] = [
    ("news", 400),
    ("deals", 120),
    ("beta", 20),
    ("ops", 3),
    ("vip", 1),
];
/// QR scenes, most common first.
const SCENES: [&str; 8] = [
    "poster_2024",
    "store_counter",
    "wechat_article",
    "event_expo",
    "partner_a",
    "partner_b",
    "invite",
    "bind:legacy",
];
/// Rules that reply, most used first.
const RULES: [&str; 12] = [
    "rules/10-greetings.rhai:4",
    "rules/10-greetings.rhai:17",
    "rules/20-faq.rhai:8",
    "rules/20-faq.rhai:31",
    "rules/20-faq.rhai:55",
    "rules/30-orders.rhai:12",
    "rules/30-orders.rhai:40",
    "rules/40-menu.rhai:6",
    "rules/40-menu.rhai:22",
    "rules/50-push.rhai:9",
    "rules/keywords.toml:3",
    "webhook",
];

/// SplitMix64: small, fast, the same everywhere.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        mix(self.0)
    }

    /// Uniform in `0..n` (`n` > 0).
    fn below(&mut self, n: u64) -> u64 {
        self.next() % n.max(1)
    }

    /// Uniform in [0, 1).
    fn unit(&mut self) -> f64 {
        (self.next() >> 11) as f64 / (1u64 << 53) as f64
    }

    /// True with `per_mille` / 1000.
    fn chance(&mut self, per_mille: u64) -> bool {
        self.below(1_000) < per_mille
    }

    /// An index in `0..n`, small ones far likelier (a few users send most messages, a few
    /// rules answer most of them).
    fn skewed(&mut self, n: u64) -> u64 {
        let u = self.unit();
        ((u * u * u) * n as f64) as u64 % n.max(1)
    }
}

fn mix(mut z: u64) -> u64 {
    z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    z ^ (z >> 31)
}

/// The OpenID of seeded follower `i`: 28 characters, as WeChat's are.
pub fn openid(seed: u64, i: u64) -> String {
    const ALPHABET: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789_-";
    let mut out = String::with_capacity(28);
    out.push_str(OPENID_PREFIX);
    // A bijection of (seed, i): the first ten characters (60 bits) differ between followers.
    let base = mix(seed.wrapping_mul(0x9e37_79b9_7f4a_7c15).wrapping_add(i));
    let mut bits = base;
    for n in 0..23u64 {
        if n > 0 && n % 10 == 0 {
            bits = mix(base ^ n);
        }
        out.push(char::from(ALPHABET[(bits & 63) as usize]));
        bits >>= 6;
    }
    out
}

/// A follower as seeded.
struct Made {
    openid: String,
    /// When they followed, if within the log's window (a subscribe event is logged then).
    followed: Option<i64>,
    /// When they unfollowed, if within the window.
    unfollowed: Option<i64>,
}

/// Seeds `store` as `options` say.
pub async fn seed(store: &Store, options: &Options) -> Result<Seeded, SeedError> {
    let started = Instant::now();
    let b = store.backend();
    let any = b
        .followers_page(&FollowerFilter {
            limit: 1,
            ..FollowerFilter::default()
        })
        .await?;
    if !any.is_empty() && !options.force {
        return Err(SeedError::NotEmpty);
    }
    if options.pushes > 0 && b.push_next_due().await?.is_some() {
        return Err(SeedError::PushesWaiting);
    }
    let mut rng = Rng(options.seed);
    let now = unix_now();
    let span = i64::from(options.days.max(1)) * 86_400;
    let start = now - span;
    let mut seeded = Seeded::default();

    // Followers: most followed before the window, some within it; some unfollowed since; a
    // few are known only from their messages (they followed before huixin was there).
    let mut made = Vec::with_capacity(usize::try_from(options.followers).unwrap_or(0));
    let mut seen_only = Vec::new();
    for i in 0..options.followers {
        let openid = openid(options.seed, i);
        let recent = rng.chance(150);
        let followed = if recent {
            start + rng.below(span as u64) as i64
        } else {
            start - 1 - rng.below(3 * 365 * 86_400) as i64
        };
        let mut follower = Made {
            openid,
            followed: recent.then_some(followed),
            unfollowed: None,
        };
        if rng.chance(50) {
            // Known from messages only: seen, never followed as far as huixin knows.
            seen_only.push(Deferred::Seen {
                openid: follower.openid.clone(),
                at: start + rng.below(span as u64) as i64,
            });
            made.push(follower);
            continue;
        }
        let scene = rng
            .chance(300)
            .then(|| SCENES[rng.skewed(SCENES.len() as u64) as usize]);
        b.follower_subscribed(&follower.openid, followed, scene)
            .await?;
        if rng.chance(120) {
            let at =
                followed.max(start) + rng.below((now - followed.max(start)).max(1) as u64) as i64;
            b.follower_unsubscribed(&follower.openid, at).await?;
            follower.unfollowed = (at >= start).then_some(at);
        }
        made.push(follower);
    }
    for chunk in seen_only.chunks(BATCH) {
        b.write_batch(chunk).await?;
    }
    seeded.followers = made.len() as u64;

    // Topics and their members.
    for (n, (topic, _)) in TOPICS.iter().enumerate() {
        b.topic_create(topic, n == 0, "seeded", start).await?;
    }
    for f in &made {
        for (topic, per_mille) in TOPICS {
            if rng.chance(per_mille) {
                b.topic_join(topic, &f.openid, start + rng.below(span as u64) as i64)
                    .await?;
                seeded.members += 1;
            }
        }
    }

    // Two apps, a few bindings each.
    for (name, share) in [("shop", 30u64), ("blog", 2)] {
        let token_hash = format!(
            "{:016x}{:016x}{:016x}{:016x}",
            rng.next(),
            rng.next(),
            rng.next(),
            rng.next()
        );
        let app_id = b
            .app_insert(&NewApp {
                name,
                callback_url: "",
                callback_format: "huixin",
                replies: false,
                secret: &format!("{:016x}", rng.next()),
                return_url: "",
                created_at: start,
                token_hash: &token_hash,
                token_prefix: &token_hash[..super::push::KEY_PREFIX_LEN],
            })
            .await?;
        for (i, f) in made.iter().enumerate() {
            if rng.chance(share) {
                b.binding_upsert(&NewBinding {
                    app_id,
                    uid: &format!("{name}-user-{i}"),
                    openid: &f.openid,
                    extra: "",
                    source: "scan",
                    now: start + rng.below(span as u64) as i64,
                })
                .await?;
                seeded.bindings += 1;
            }
        }
    }

    // Session keys for some.
    for f in &made {
        if !rng.chance(20) {
            continue;
        }
        let changes = [
            SessionChange::Set {
                key: "lang".into(),
                value: "\"zh\"".into(),
                expires_at: None,
            },
            SessionChange::Set {
                key: "step".into(),
                value: format!("{{\"order\":{}}}", rng.below(10_000)),
                expires_at: Some(now + 86_400),
            },
        ];
        b.session_apply(&f.openid, &changes, now).await?;
    }

    seeded.log_rows = seed_log(store, options, &made, &mut rng, start, now).await?;
    let (pushes, recipients) = seed_pushes(store, options, &made, &mut rng, start, now).await?;
    seeded.pushes = pushes;
    seeded.recipients = recipients;
    seeded.took = started.elapsed();
    Ok(seeded)
}

/// The inbound log: `options.log_rows` rows from `start` to `now`, in time order, the
/// window's follows and unfollows among them.
async fn seed_log(
    store: &Store,
    options: &Options,
    made: &[Made],
    rng: &mut Rng,
    start: i64,
    now: i64,
) -> Result<u64, StoreError> {
    if made.is_empty() || options.log_rows == 0 {
        return Ok(0);
    }
    // The window's subscribe and unsubscribe events, by time.
    let mut events: Vec<(i64, usize, &str)> = made
        .iter()
        .enumerate()
        .flat_map(|(i, f)| {
            let followed = f.followed.map(|at| (at, i, "subscribe"));
            let unfollowed = f.unfollowed.map(|at| (at, i, "unsubscribe"));
            followed.into_iter().chain(unfollowed)
        })
        .collect();
    events.sort_unstable();
    events.truncate(usize::try_from(options.log_rows).unwrap_or(usize::MAX));
    let total = options.log_rows;
    let others = total - events.len() as u64;
    let span = (now - start).max(1);
    let mut events = events.into_iter().peekable();
    let mut batch: Vec<Deferred> = Vec::with_capacity(BATCH * 2);
    let mut msg_id: u64 = 24_470_000_000_000_000;
    let mut written = 0;
    for k in 0..others {
        let at = start + (i128::from(span) * i128::from(k) / i128::from(others.max(1))) as i64;
        while let Some(&(event_at, i, name)) = events.peek() {
            if event_at > at {
                break;
            }
            events.next();
            batch.push(Deferred::Log(event_row(
                rng,
                &made[i].openid,
                event_at,
                name,
            )));
            batch.push(Deferred::Seen {
                openid: made[i].openid.clone(),
                at: event_at,
            });
        }
        let f = &made[rng.skewed(made.len() as u64) as usize];
        msg_id += 1;
        batch.push(Deferred::Log(message_row(rng, &f.openid, at, msg_id)));
        batch.push(Deferred::Seen {
            openid: f.openid.clone(),
            at,
        });
        if batch.len() >= BATCH * 2 {
            written += flush(store, &mut batch).await?;
        }
    }
    for (at, i, name) in events {
        batch.push(Deferred::Log(event_row(rng, &made[i].openid, at, name)));
        batch.push(Deferred::Seen {
            openid: made[i].openid.clone(),
            at,
        });
    }
    written += flush(store, &mut batch).await?;
    Ok(written)
}

/// Writes a batch as the batch writer would; how many log rows it held.
async fn flush(store: &Store, batch: &mut Vec<Deferred>) -> Result<u64, StoreError> {
    let rows = batch
        .iter()
        .filter(|w| matches!(w, Deferred::Log(_)))
        .count() as u64;
    if !batch.is_empty() {
        store.backend().write_batch(batch).await?;
        batch.clear();
    }
    Ok(rows)
}

/// A message's log row: mostly text, answered, often by a rule.
fn message_row(rng: &mut Rng, openid: &str, at: i64, msg_id: u64) -> LogEntry {
    let roll = rng.below(1_000);
    let (msg_type, event, summary): (&str, Option<&str>, Option<String>) = match roll {
        0..=629 => ("text", None, Some(format!("hello #{}", rng.below(100_000)))),
        630..=679 => ("image", None, Some(format!("media_{:x}", rng.next() >> 16))),
        680..=709 => ("voice", None, Some(format!("media_{:x}", rng.next() >> 16))),
        710..=714 => ("video", None, Some(format!("media_{:x}", rng.next() >> 16))),
        715..=729 => ("location", None, Some("Shanghai (31.23, 121.47)".into())),
        730..=734 => ("link", None, Some("https://example.com/post".into())),
        735..=869 => (
            "event",
            Some("click"),
            Some(format!("MENU_{}", rng.below(9))),
        ),
        870..=919 => (
            "event",
            Some("view"),
            Some("https://example.com/shop".into()),
        ),
        920..=949 => ("event", Some("location"), None),
        950..=969 => ("event", Some("scan"), Some("poster_2024".into())),
        _ => ("event", Some("templatesendjobfinish"), None),
    };
    let outcome = match rng.below(1_000) {
        0..=959 => "answered",
        960..=964 => "late",
        965..=979 => "retry",
        980..=982 => "failed",
        983..=984 => "blocked",
        _ => "limited",
    };
    let replied = matches!(outcome, "answered" | "late" | "retry")
        && event != Some("templatesendjobfinish")
        && event != Some("location")
        && rng.chance(700);
    let rule = (replied && outcome != "retry")
        .then(|| RULES[rng.skewed(RULES.len() as u64) as usize].to_owned());
    let (reply_type, reply) = if !replied {
        ("success", None)
    } else if rng.chance(150) {
        ("news", Some("This week's offers | How to order".to_owned()))
    } else {
        (
            "text",
            Some(format!("Thanks! Reply {} for more.", rng.below(10))),
        )
    };
    let latency_ms = match outcome {
        "late" => 4_500 + rng.below(2_000) as i64,
        "retry" => rng.below(3_000) as i64,
        _ => 1 + rng.skewed(200) as i64,
    };
    LogEntry {
        received_at: at,
        openid: openid.to_owned(),
        msg_type: msg_type.to_owned(),
        event: event.map(str::to_owned),
        msg_id: (msg_type != "event").then(|| msg_id.to_string()),
        summary,
        reply_type: reply_type.to_owned(),
        outcome: outcome.to_owned(),
        rule,
        latency_ms: Some(latency_ms),
        reply,
    }
}

/// A follow or unfollow's log row; a follow is greeted by the first rule.
fn event_row(rng: &mut Rng, openid: &str, at: i64, name: &str) -> LogEntry {
    let greeted = name == "subscribe";
    LogEntry {
        received_at: at,
        openid: openid.to_owned(),
        msg_type: "event".to_owned(),
        event: Some(name.to_owned()),
        msg_id: None,
        summary: None,
        reply_type: if greeted { "text" } else { "success" }.to_owned(),
        outcome: "answered".to_owned(),
        rule: greeted.then(|| RULES[0].to_owned()),
        latency_ms: Some(1 + rng.skewed(50) as i64),
        reply: greeted.then(|| "Welcome! Send 'help' to see what I can do.".to_owned()),
    }
}

/// Pushes from `start` to `now`, each to one to five followers, then delivered as the push
/// worker would record it (sent, then delivered or failed; some failed when sent). Returns
/// (pushes, recipients).
async fn seed_pushes(
    store: &Store,
    options: &Options,
    made: &[Made],
    rng: &mut Rng,
    start: i64,
    now: i64,
) -> Result<(u64, u64), StoreError> {
    if made.is_empty() || options.pushes == 0 {
        return Ok((0, 0));
    }
    let b = store.backend();
    let span = (now - start).max(1);
    let total = options.pushes;
    // seq -> when it was accepted.
    let mut accepted: HashMap<i64, i64> = HashMap::new();
    let mut recipients_total = 0;
    let mut k = 0;
    while k < total {
        let n = (total - k).min(PUSH_GROUP as u64);
        let mut owned = Vec::with_capacity(n as usize);
        for j in k..k + n {
            let at = start + (i128::from(span) * i128::from(j) / i128::from(total)) as i64;
            let count = 1 + rng.skewed(5) as usize;
            let recipients: Vec<String> = (0..count)
                .map(|_| made[rng.below(made.len() as u64) as usize].openid.clone())
                .collect::<std::collections::BTreeSet<_>>()
                .into_iter()
                .collect();
            let source = ["api", "api", "bark", "ntfy", "wxpusher"][rng.below(5) as usize];
            owned.push((
                // 22 letters and digits, like the ids huixin gives pushes.
                format!("seed{:010x}{j:08}", rng.next() >> 24),
                format!("Backup #{j} finished"),
                at,
                recipients,
                source,
            ));
        }
        let targets: Vec<String> = owned
            .iter()
            .map(|(.., recipients, _)| match recipients.as_slice() {
                [one] => format!("user:{one}"),
                many => format!("users:{}", many.len()),
            })
            .collect();
        let group: Vec<GroupedPush<'_>> = owned
            .iter()
            .zip(&targets)
            .map(
                |((id, title, at, recipients, source), target)| GroupedPush {
                    push: NewPush {
                        id,
                        key_hash: None,
                        target,
                        title,
                        body: "- host: **db-1**\n- size: 12 GiB",
                        url: None,
                        summary: None,
                        source,
                        created_at: *at,
                        recipients,
                    },
                    topic: None,
                    key: None,
                },
            )
            .collect();
        let stored = b.push_insert_group(&group).await?;
        for ((.., at, _, _), inserted) in owned.iter().zip(stored) {
            if let Some(inserted) = inserted {
                accepted.insert(inserted.seq, *at);
                recipients_total += inserted.recipients;
            }
        }
        k += n;
    }

    // Delivery, as the worker records it: claimed, settled at the hour after the push, and
    // most of those sent confirmed by TEMPLATESENDJOBFINISH a little later.
    let owner = format!("seed-{:08x}", rng.next() >> 32);
    let mut msgid: i64 = 3_000_000_000;
    let mut finishes: Vec<(i64, bool, i64)> = Vec::new();
    loop {
        let claimed = b
            .push_claim(&owner, now * 1_000, (now + 3_600) * 1_000, 5_000)
            .await?;
        if claimed.is_empty() {
            break;
        }
        // Settled by the hour each push was accepted in, as a worker keeping up would.
        let mut by_time: std::collections::BTreeMap<i64, Vec<Outcome>> = Default::default();
        for c in claimed {
            let Some(&at) = accepted.get(&c.push_seq) else {
                // Not one of ours (another process stored it meanwhile): given back.
                by_time.entry(now).or_default().push(Outcome {
                    push_seq: c.push_seq,
                    openid: c.openid,
                    attempt: Attempt::Released,
                });
                continue;
            };
            let settled_at = (at + 2).min(now);
            let attempt = if rng.chance(40) {
                Attempt::Failed {
                    error: "43004 require subscribe".into(),
                }
            } else {
                msgid += 1;
                match rng.below(1_000) {
                    0..=119 => {}
                    120..=159 => finishes.push((msgid, false, (at + 20).min(now))),
                    _ => finishes.push((msgid, true, (at + 20).min(now))),
                }
                Attempt::Sent { msgid: Some(msgid) }
            };
            by_time.entry(settled_at).or_default().push(Outcome {
                push_seq: c.push_seq,
                openid: c.openid,
                attempt,
            });
        }
        for (at, outcomes) in by_time {
            b.push_settle(&owner, &outcomes, at).await?;
        }
    }
    for (msgid, delivered, at) in finishes {
        let status = if delivered {
            "success"
        } else {
            "failed:user block"
        };
        b.push_finished(msgid, delivered, status, at).await?;
    }
    Ok((accepted.len() as u64, recipients_total))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn openids_look_like_wechats_and_differ() {
        let a = openid(1, 0);
        assert_eq!(a.len(), 28);
        assert!(a.starts_with(OPENID_PREFIX));
        let all: std::collections::HashSet<String> = (0..10_000).map(|i| openid(1, i)).collect();
        assert_eq!(all.len(), 10_000);
        assert_eq!(openid(1, 7), openid(1, 7));
        assert_ne!(openid(1, 7), openid(2, 7));
    }
}
