//! Retry dedup. WeChat resends a message it got no answer to (3 tries, about 5 s apart, an
//! identical body). A retry must never run the rules twice, and must receive exactly what the
//! first attempt's rules produced.
//!
//! The key (reference §5) is `FromUserName` + `MsgId` for messages, and `FromUserName` +
//! `CreateTime` + `Event` + `EventKey` for events (bare `MsgId` collides across users).
//!
//! Each key is in one of these states ([`DedupState`] in the store):
//! - **running**: the first attempt's rules are at work. Every retry arriving now waits for
//!   the reply (up to `[bot] reply_deadline_ms`, then `success`); WeChat may have several
//!   tries open at once, and each one waiting gets the reply.
//! - **answered**: the reply went out passively; every retry gets the same reply again, with
//!   the same `CreateTime`, so the same XML bytes (the time is set on the [`Trail`] for the
//!   HTTP edge to render with, and stored with the record).
//! - **late**: the first attempt hit the deadline and answered `success`, and the reply came
//!   when no retry was waiting: it went to the customer-service sender, so retries get
//!   `success` (the user is not sent the reply twice).
//!
//! When the reply misses the deadline while retries wait, it rides on them as a passive reply
//! instead: one message answered once (WeChat reads one answer per message), without the
//! customer-service API's quota or window.
//!
//! Several processes on one database: records are written to the store in batches (within
//! 100 ms), and a process that is not alone looks up every message it does not know in the
//! store (one batched read for the messages arriving together) before claiming it. WeChat
//! retries 5 s apart, so a retry reaching another process is recognised, and waits for (reading
//! the owner's record again every 100 ms) or replays the owner's reply. A process alone on its
//! database ([`crate::store::peers`]) has nobody's records to read.
//!
//! Memory is bounded: a key is kept for `[bot] dedup_window_secs`, and at most
//! [`MAX_KEYS`] keys at once (the oldest answered ones go first; a retry of a key dropped that
//! way is still recognised through the store when other processes share it, and otherwise
//! runs the rules again).

use std::collections::{HashMap, VecDeque};
use std::panic::AssertUnwindSafe;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, OnceLock};
use std::time::{Duration, Instant};

use futures_util::FutureExt;
use sha1::{Digest, Sha1};
use tokio::sync::oneshot;
use tracing::Instrument;

use super::deadline::LateSink;
use crate::bot::late::LateReplies;
use crate::bot::{BotError, BoxFuture, Context, Middleware, Next, Outcome, Trail, panic_message};
use crate::metrics::Metrics;
use crate::store::{DedupRecord, DedupState, Deferred, Store};
use crate::support::clock::unix_now;
use crate::wechat::{Message, Reply};

/// How often a retry waiting on another process looks again.
const FOREIGN_POLL: Duration = Duration::from_millis(100);

/// Marks the first attempt abandoned when its request future is dropped.
struct SetOnDrop(Arc<AtomicBool>);

impl Drop for SetOnDrop {
    fn drop(&mut self) {
        self.0.store(true, Ordering::SeqCst);
    }
}

/// The dedup key of a message.
pub fn key_of(m: &Message) -> String {
    match m.msg_id {
        Some(id) => format!("msg:{}:{}", m.from, id),
        None => {
            let mut key = format!(
                "evt:{}:{}:{}:{}",
                m.from,
                m.create_time,
                m.event_name()
                    .unwrap_or_else(|| m.msg_type())
                    .to_ascii_lowercase(),
                m.raw.text_of("EventKey").unwrap_or_default().trim()
            );
            // Job reports (TEMPLATESENDJOBFINISH, MASSSENDJOBFINISH) carry the job's MsgID:
            // two pushes to one user finishing in the same second are two events.
            if let Some(job) = m
                .raw
                .text_of("MsgID")
                .map(str::trim)
                .filter(|j| !j.is_empty())
            {
                key.push(':');
                key.push_str(job);
            }
            key
        }
    }
}

/// A reply as it first went out passively: what every later try of the message gets.
#[derive(Debug, Clone)]
struct Answer {
    reply: Reply,
    /// The `CreateTime` it was rendered with; `None` when unknown (a record written by an
    /// older version), then rendered with the current time.
    create_time: Option<i64>,
    /// The reply carries a secret ([`Trail::is_secret`]): a retry given it is marked so too,
    /// so that the log does not write it.
    secret: bool,
}

impl Answer {
    /// `reply`, going out now, for the message `trail` is of.
    fn now(reply: Reply, trail: &Trail) -> Self {
        Self {
            reply,
            create_time: Some(unix_now()),
            secret: trail.is_secret(),
        }
    }

    /// `success`, which has no XML and so no time.
    fn success() -> Self {
        Self {
            reply: Reply::Success,
            create_time: None,
            secret: false,
        }
    }

    /// The reply, its time noted on the trail for the HTTP edge to render with.
    fn into_reply(self, trail: &Trail) -> Reply {
        if let Some(at) = self.create_time {
            trail.set_create_time(at);
        }
        if self.secret {
            trail.set_secret();
        }
        self.reply
    }
}

struct Waiter {
    id: u64,
    tx: oneshot::Sender<Answer>,
}

enum State {
    /// Ours, running; retries may be waiting, each on its own channel.
    Running { waiters: Vec<Waiter> },
    /// The reply went out passively.
    Answered(Answer),
    /// The reply went to the customer-service sender.
    Late,
    /// Another process's record as last read.
    Foreign {
        answered: Option<Answer>,
        late: bool,
    },
}

struct Entry {
    at: Instant,
    state: State,
}

/// Keys remembered at once, at most. At 40,000 new messages a second this still covers WeChat's
/// 5 s between tries; each takes about 100 bytes plus its reply.
pub const MAX_KEYS: usize = 200_000;

/// A key as remembered in memory: the first 16 bytes of its SHA-1 (no copy of the key per
/// message; two keys colliding, about one in 2^90 among [`MAX_KEYS`], is beyond concern).
type Slot = [u8; 16];

fn slot_of(key: &str) -> Slot {
    let digest: [u8; 20] = Sha1::digest(key.as_bytes()).into();
    let mut slot = [0; 16];
    slot.copy_from_slice(&digest[..16]);
    slot
}

#[derive(Default)]
struct Table {
    entries: HashMap<Slot, Entry>,
    order: VecDeque<(Instant, Slot)>,
}

impl Table {
    /// Forgets keys older than `window`, and the oldest beyond [`MAX_KEYS`] (a first attempt
    /// still running is kept: retries may be waiting on it).
    fn prune(&mut self, now: Instant, window: Duration) {
        // Each queued key is looked at once at most: when every key is a running first
        // attempt, there is nothing to drop.
        let mut budget = self.order.len();
        while budget > 0
            && let Some(&(at, slot)) = self.order.front()
        {
            budget -= 1;
            let old = now.duration_since(at) > window;
            if !old && self.entries.len() <= MAX_KEYS {
                break;
            }
            self.order.pop_front();
            match self.entries.get(&slot) {
                // A later insert of the key has its own place in the queue.
                Some(entry) if entry.at != at => {}
                Some(entry) if !old && matches!(entry.state, State::Running { .. }) => {
                    self.order.push_back((at, slot));
                }
                Some(_) => {
                    self.entries.remove(&slot);
                }
                None => {}
            }
        }
    }

    fn get(&self, key: &str) -> Option<&Entry> {
        self.entries.get(&slot_of(key))
    }

    fn get_mut(&mut self, key: &str) -> Option<&mut Entry> {
        self.entries.get_mut(&slot_of(key))
    }

    fn insert(&mut self, key: &str, state: State, now: Instant) {
        let slot = slot_of(key);
        self.entries.insert(slot, Entry { at: now, state });
        self.order.push_back((now, slot));
    }
}

enum Claim {
    Run,
    Replay(Answer),
    Wait(u64, oneshot::Receiver<Answer>),
    WaitForeign,
}

struct Inner {
    owner: String,
    /// Log retries (they never reach an inner `log` layer).
    log_retries: bool,
    window: Duration,
    wait: Duration,
    late: Arc<dyn LateReplies>,
    store: Option<Store>,
    table: Mutex<Table>,
    next_waiter: AtomicU64,
    /// Where retries answered and late replies are counted ([`Dedup::with_metrics`]).
    metrics: OnceLock<Metrics>,
}

/// The `dedup` layer.
#[derive(Clone)]
pub struct Dedup {
    inner: Arc<Inner>,
}

impl Dedup {
    /// Remembers keys for `window`; a retry waits at most `wait` for a running first attempt;
    /// late replies nobody waits for go to `late`; records are shared through `store`.
    pub fn new(
        window: Duration,
        wait: Duration,
        late: Arc<dyn LateReplies>,
        store: Option<Store>,
    ) -> Self {
        Self::with_log(window, wait, late, store, false)
    }

    /// As [`Dedup::new`]; with `log_retries`, every retry answered here adds an inbound log
    /// row (outcome `retry`), which an inner `log` layer never sees.
    pub fn with_log(
        window: Duration,
        wait: Duration,
        late: Arc<dyn LateReplies>,
        store: Option<Store>,
        log_retries: bool,
    ) -> Self {
        let owner = format!("{}-{:08x}", std::process::id(), rand::random::<u32>());
        Self {
            inner: Arc::new(Inner {
                owner,
                log_retries,
                window,
                wait,
                late,
                store,
                table: Mutex::new(Table::default()),
                next_waiter: AtomicU64::new(1),
                metrics: OnceLock::new(),
            }),
        }
    }

    /// Counts the retries it answers and the late replies it hands on into `metrics` (the
    /// first call wins; clones share it).
    pub fn with_metrics(self, metrics: Metrics) -> Self {
        let _ = self.inner.metrics.set(metrics);
        self
    }
}

impl Inner {
    /// The metrics, when set.
    fn metrics(&self) -> Option<&Metrics> {
        self.metrics.get()
    }

    fn table(&self) -> std::sync::MutexGuard<'_, Table> {
        self.table.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// A log row for a retry answered here, `took` after it arrived.
    fn log_retry(&self, message: &Message, reply: &Reply, trail: &Trail, took: Duration) {
        if let (true, Some(store)) = (self.log_retries, &self.store) {
            store.defer(Deferred::Log(super::log::entry(
                message,
                Some(reply),
                Outcome::Retry,
                trail,
                took,
            )));
        }
    }

    /// Records an answered key for the other processes. A reply carrying a secret (a push key
    /// just made) is kept in this process's memory only: the store says `late`, so a retry
    /// reaching another process gets `success` rather than the secret from the database.
    fn persist_answer(&self, key: &str, answer: &Answer, trail: &Trail) {
        if trail.is_secret() {
            self.persist(key, DedupState::Late, None);
        } else {
            self.persist(key, DedupState::Answered, Some(answer));
        }
    }

    fn persist(&self, key: &str, state: DedupState, answer: Option<&Answer>) {
        if let Some(store) = &self.store {
            store.defer(Deferred::Dedup(DedupRecord {
                key: key.to_owned(),
                owner: self.owner.clone(),
                state,
                reply: answer.and_then(|a| serde_json::to_string(&a.reply).ok()),
                reply_time: answer.and_then(|a| a.create_time),
                updated_at: unix_now(),
            }));
        }
    }

    fn claim(&self, key: &str) -> Claim {
        let now = Instant::now();
        let mut table = self.table();
        table.prune(now, self.window);
        let Some(entry) = table.get_mut(key) else {
            table.insert(
                key,
                State::Running {
                    waiters: Vec::new(),
                },
                now,
            );
            return Claim::Run;
        };
        match &mut entry.state {
            State::Answered(answer) => Claim::Replay(answer.clone()),
            State::Late => Claim::Replay(Answer::success()),
            State::Running { waiters } => {
                // Every try WeChat still has open gets the reply: which of them WeChat reads
                // is its choice, not ours.
                let (tx, rx) = oneshot::channel();
                let id = self.next_waiter.fetch_add(1, Ordering::Relaxed);
                waiters.push(Waiter { id, tx });
                Claim::Wait(id, rx)
            }
            State::Foreign {
                answered: Some(answer),
                ..
            } => Claim::Replay(answer.clone()),
            State::Foreign { late: true, .. } => Claim::Replay(Answer::success()),
            State::Foreign { .. } => Claim::WaitForeign,
        }
    }

    /// The first attempt answered in time: every waiting retry gets the same reply, and so
    /// does every later one. Returns the reply's `CreateTime`.
    fn settle(&self, key: &str, reply: &Reply, trail: &Trail) -> Option<i64> {
        let answer = Answer::now(reply.clone(), trail);
        let mut table = self.table();
        if let Some(entry) = table.get_mut(key) {
            if let State::Running { waiters } = &mut entry.state {
                for w in waiters.drain(..) {
                    let _ = w.tx.send(answer.clone());
                }
            }
            entry.state = State::Answered(answer.clone());
        }
        drop(table);
        self.persist_answer(key, &answer, trail);
        answer.create_time
    }

    /// The reply came after the deadline: hand it to the waiting retries, else to `late`.
    async fn deliver_late(&self, key: &str, message: &Message, reply: Reply, trail: &Trail) {
        let answer = Answer::now(reply, trail);
        let handed = {
            let mut table = self.table();
            match table.get_mut(key) {
                // Forgotten (the window passed): nobody can be waiting for it.
                None => false,
                Some(entry) => {
                    let waiters = match &mut entry.state {
                        State::Running { waiters } => std::mem::take(waiters),
                        _ => Vec::new(),
                    };
                    let mut handed = false;
                    for w in waiters {
                        handed |= w.tx.send(answer.clone()).is_ok();
                    }
                    entry.state = if handed || answer.reply == Reply::Success {
                        State::Answered(answer.clone())
                    } else {
                        State::Late
                    };
                    handed
                }
            }
        };
        if handed || answer.reply == Reply::Success {
            if handed {
                tracing::info!("late reply handed to WeChat's waiting retry");
                if let Some(m) = self.metrics() {
                    m.late_reply("retry");
                }
            }
            self.persist_answer(key, &answer, trail);
        } else {
            self.persist(key, DedupState::Late, None);
            if let Some(m) = self.metrics() {
                m.late_reply("sender");
            }
            self.late.deliver(message, answer.reply).await;
        }
    }

    /// A retry waiting for our own running first attempt.
    async fn wait(&self, key: &str, id: u64, mut rx: oneshot::Receiver<Answer>) -> Answer {
        match tokio::time::timeout(self.wait, &mut rx).await {
            Ok(Ok(answer)) => answer,
            Ok(Err(_)) => Answer::success(),
            Err(_) => {
                let mut table = self.table();
                let still_mine = match table.get_mut(key).map(|e| &mut e.state) {
                    Some(State::Running { waiters }) => {
                        let before = waiters.len();
                        waiters.retain(|w| w.id != id);
                        waiters.len() < before
                    }
                    _ => false,
                };
                drop(table);
                if still_mine {
                    Answer::success()
                } else {
                    // The reply was handed over just as we gave up: it is in the channel.
                    rx.try_recv().unwrap_or_else(|_| Answer::success())
                }
            }
        }
    }

    /// A retry whose first attempt runs in another process: watch its record.
    async fn wait_foreign(&self, key: &str) -> Answer {
        let until = Instant::now() + self.wait;
        loop {
            {
                let table = self.table();
                match table.get(key).map(|e| &e.state) {
                    Some(State::Foreign {
                        answered: Some(a), ..
                    })
                    | Some(State::Answered(a)) => return a.clone(),
                    Some(State::Foreign { late: true, .. }) | Some(State::Late) | None => {
                        return Answer::success();
                    }
                    _ => {}
                }
            }
            if Instant::now() >= until {
                return Answer::success();
            }
            tokio::time::sleep(FOREIGN_POLL).await;
            self.look_up(key, true).await;
        }
    }

    /// Takes in another process's record of `key` from the store, when processes share it and
    /// this one does not know the key (or, with `again`, knows it as another's). A failed read
    /// is logged and the message handled as new: a retry may then run the rules again, which
    /// beats leaving WeChat without an answer.
    async fn look_up(&self, key: &str, again: bool) {
        let Some(store) = &self.store else { return };
        if store.alone() {
            return;
        }
        match self.table().get(key).map(|e| &e.state) {
            None => {}
            Some(State::Foreign { .. }) if again => {}
            Some(_) => return,
        }
        match store.dedup_record(key).await {
            Ok(Some(record)) if record.owner != self.owner => self.merge(vec![record]),
            Ok(_) => {}
            Err(e) => tracing::warn!(error = %e, "reading the dedup record failed"),
        }
    }

    /// Takes in other processes' records.
    fn merge(&self, records: Vec<DedupRecord>) {
        let now = Instant::now();
        let mut table = self.table();
        for r in records {
            let foreign = State::Foreign {
                answered: match r.state {
                    DedupState::Answered => r
                        .reply
                        .as_deref()
                        .and_then(|j| serde_json::from_str(j).ok())
                        .map(|reply| Answer {
                            reply,
                            create_time: r.reply_time,
                            // A reply with a secret is never stored as answered.
                            secret: false,
                        }),
                    DedupState::Running | DedupState::Late => None,
                },
                late: r.state == DedupState::Late,
            };
            match table.get_mut(&r.key) {
                Some(entry) if matches!(entry.state, State::Foreign { .. }) => {
                    entry.state = foreign
                }
                Some(_) => {}
                None => table.insert(&r.key, foreign, now),
            }
        }
    }
}

impl Middleware for Dedup {
    fn call(&self, mut ctx: Context, next: Next) -> BoxFuture<Result<Reply, BotError>> {
        let inner = Arc::clone(&self.inner);
        Box::pin(async move {
            let arrived = Instant::now();
            let key = key_of(&ctx.message);
            inner.look_up(&key, false).await;
            match inner.claim(&key) {
                Claim::Run => {
                    inner.persist(&key, DedupState::Running, None);
                    let sink_inner = Arc::clone(&inner);
                    let sink_key = key.clone();
                    let message = ctx.message.clone();
                    let sink_trail = ctx.trail.clone();
                    ctx.extensions.insert(LateSink(Arc::new(move |reply| {
                        let inner = Arc::clone(&sink_inner);
                        let key = sink_key.clone();
                        let message = message.clone();
                        let trail = sink_trail.clone();
                        Box::pin(
                            async move { inner.deliver_late(&key, &message, reply, &trail).await },
                        )
                    })));
                    // The first attempt runs to its end even if WeChat drops the connection (it
                    // then continues as a task of its own), and a handler's panic is caught:
                    // the rules finish once and the entry is settled; a retry is never left
                    // waiting on a dead attempt.
                    let trail = ctx.trail.clone();
                    let message = ctx.message.clone();
                    let abandoned = Arc::new(AtomicBool::new(false));
                    let attempt = {
                        let inner = Arc::clone(&inner);
                        let key = key.clone();
                        let abandoned = Arc::clone(&abandoned);
                        let tasks = ctx.tasks.clone();
                        tasks.finish_if_dropped(
                            async move {
                                let result =
                                    match AssertUnwindSafe(next.run(ctx)).catch_unwind().await {
                                        Ok(result) => result,
                                        Err(panic) => {
                                            Err(BotError::Panic(panic_message(panic.as_ref())))
                                        }
                                    };
                                // Past the deadline the reply comes back through the sink.
                                if !trail.is_late() {
                                    let reply =
                                        result.as_ref().map_or(Reply::Success, Clone::clone);
                                    if abandoned.load(Ordering::SeqCst) {
                                        // Nobody holds this attempt's connection any more.
                                        inner.deliver_late(&key, &message, reply, &trail).await;
                                    } else if let Some(at) = inner.settle(&key, &reply, &trail) {
                                        trail.set_create_time(at);
                                    }
                                }
                                result
                            }
                            .in_current_span(),
                        )
                    };
                    // Dropped before `attempt` (declared after it): an attempt finishing on
                    // its own knows nobody waits for it.
                    let _abandon = SetOnDrop(abandoned);
                    attempt.await
                }
                claim => {
                    ctx.trail.set_outcome(Outcome::Retry);
                    if let Some(m) = inner.metrics() {
                        m.dedup_retry(match claim {
                            Claim::Replay(_) => "replayed",
                            Claim::Wait(..) => "waited",
                            _ => "foreign",
                        });
                    }
                    let answer = match claim {
                        Claim::Replay(answer) => {
                            tracing::info!(
                                reply = answer.reply.msg_type(),
                                "retry of a handled message: same reply, rules not run"
                            );
                            answer
                        }
                        Claim::Wait(id, rx) => {
                            tracing::info!(
                                "retry while the first attempt runs: waiting for its reply"
                            );
                            inner.wait(&key, id, rx).await
                        }
                        _ => {
                            tracing::info!(
                                "retry of a message another process handles: waiting for its reply"
                            );
                            inner.wait_foreign(&key).await
                        }
                    };
                    let reply = answer.into_reply(&ctx.trail);
                    inner.log_retry(&ctx.message, &reply, &ctx.trail, arrived.elapsed());
                    Ok(reply)
                }
            }
        })
    }
}
