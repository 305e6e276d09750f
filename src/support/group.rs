//! Group commit: writes submitted at the same time share one transaction.
//!
//! Each submitter queues its items and waits. When no write is in progress, a committer task
//! starts; it takes every item queued so far (up to the group's maximum), writes them all with
//! one [`Commit::write`], answers each, and goes on with whatever was queued meanwhile; it
//! ends when the queue is empty. A lone item is written at once; under load, the items that
//! arrive while one transaction runs go together in the next, so a busy server commits once
//! per group instead of once per item.
//!
//! Nobody hears back before their item is committed. When a group fails (one item breaks a
//! constraint, the disk is full), its items are written again one by one, each in its own
//! transaction, so that one bad item cannot fail the others; each gets its own outcome.

use std::future::Future;
use std::pin::Pin;
use std::sync::{Arc, Mutex};

use tokio::sync::oneshot;

/// What [`Commit::write`] returns: the outputs of a group, one per item, once written.
pub type Written<'a, O, E> = Pin<Box<dyn Future<Output = Result<Vec<O>, E>> + Send + 'a>>;

/// What a group writes, and how.
pub trait Commit: Clone + Send + Sync + 'static {
    /// One thing to write.
    type Item: Send + Sync + 'static;
    /// What writing one item answers.
    type Output: Send + 'static;
    /// Why a write failed.
    type Error: std::fmt::Display + Send + 'static;

    /// Writes `items` in one transaction: one output for each, in order.
    fn write<'a>(&'a self, items: &'a [Self::Item]) -> Written<'a, Self::Output, Self::Error>;

    /// The answer for an item the write answered nothing for, or whose committer is gone.
    fn lost() -> Self::Error;

    /// What the items are, for the log line of a group written one by one (`pushes`).
    fn what() -> &'static str;
}

type Answer<C> = Result<<C as Commit>::Output, <C as Commit>::Error>;

struct Job<C: Commit> {
    item: C::Item,
    done: oneshot::Sender<Answer<C>>,
}

struct Queue<C: Commit> {
    waiting: Vec<Job<C>>,
    /// Whether a committer task is running (it will see anything queued).
    running: bool,
}

/// The queue of items waiting to be committed. Cheap to clone.
pub struct Group<C: Commit> {
    commit: C,
    max: usize,
    queue: Arc<Mutex<Queue<C>>>,
}

impl<C: Commit> Clone for Group<C> {
    fn clone(&self) -> Self {
        Self {
            commit: self.commit.clone(),
            max: self.max,
            queue: Arc::clone(&self.queue),
        }
    }
}

impl<C: Commit> Group<C> {
    /// A group committing through `commit`, at most `max` items per transaction.
    pub fn new(commit: C, max: usize) -> Self {
        Self {
            commit,
            max: max.max(1),
            queue: Arc::new(Mutex::new(Queue {
                waiting: Vec::new(),
                running: false,
            })),
        }
    }

    /// Writes `item` (in a group with the items queued at the same time).
    pub async fn submit(&self, item: C::Item) -> Answer<C> {
        self.submit_all(vec![item])
            .await
            .pop()
            .unwrap_or_else(|| Err(C::lost()))
    }

    /// Writes `items`, queued together (so they go in one group unless it is full); each
    /// one's answer, in order.
    pub async fn submit_all(&self, items: Vec<C::Item>) -> Vec<Answer<C>> {
        let mut answers = Vec::with_capacity(items.len());
        let start = {
            let mut queue = self.lock();
            for item in items {
                let (done, answer) = oneshot::channel();
                queue.waiting.push(Job { item, done });
                answers.push(answer);
            }
            !std::mem::replace(&mut queue.running, true)
        };
        if start {
            // A task of its own, not this request's future: a caller that goes away (its
            // client hung up) must not stop the writes of the others in its group.
            tokio::spawn(self.clone().run());
        }
        let mut out = Vec::with_capacity(answers.len());
        for answer in answers {
            out.push(answer.await.unwrap_or_else(|_| Err(C::lost())));
        }
        out
    }

    /// Writes `items` as one group, now, without queueing (for tests of a group's fate).
    pub async fn write_now(&self, items: Vec<C::Item>) -> Vec<Answer<C>> {
        let mut answers = Vec::with_capacity(items.len());
        let mut group = Vec::with_capacity(items.len());
        for item in items {
            let (done, answer) = oneshot::channel();
            group.push(Job { item, done });
            answers.push(answer);
        }
        write(&self.commit, group).await;
        let mut out = Vec::with_capacity(answers.len());
        for answer in answers {
            out.push(answer.await.unwrap_or_else(|_| Err(C::lost())));
        }
        out
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Queue<C>> {
        self.queue.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Writes groups until the queue is empty.
    async fn run(self) {
        let mut running = Running {
            group: &self,
            emptied: false,
        };
        loop {
            let group: Vec<Job<C>> = {
                let mut queue = running.group.lock();
                if queue.waiting.is_empty() {
                    queue.running = false;
                    running.emptied = true;
                    return;
                }
                let take = queue.waiting.len().min(running.group.max);
                queue.waiting.drain(..take).collect()
            };
            write(&running.group.commit, group).await;
        }
    }
}

/// Marks the committer stopped if its task ends any other way than by emptying the queue (a
/// panic, or its runtime shutting down): the items still queued are answered with an error as
/// their senders drop, and the next submit starts a new task instead of queueing behind one
/// that is gone.
struct Running<'a, C: Commit> {
    group: &'a Group<C>,
    emptied: bool,
}

impl<C: Commit> Drop for Running<'_, C> {
    fn drop(&mut self) {
        if !self.emptied {
            let mut queue = self.group.lock();
            queue.running = false;
            queue.waiting.clear();
        }
    }
}

/// Commits one group and answers each of its items.
async fn write<C: Commit>(commit: &C, group: Vec<Job<C>>) {
    let (items, dones): (Vec<C::Item>, Vec<_>) =
        group.into_iter().map(|job| (job.item, job.done)).unzip();
    match commit.write(&items).await {
        Ok(outputs) => {
            let mut outputs = outputs.into_iter();
            for done in dones {
                // The write answers for every item; one it did not is not taken as written.
                let _ = done.send(outputs.next().ok_or_else(C::lost));
            }
        }
        Err(e) if items.len() == 1 => {
            if let Some(done) = dones.into_iter().next() {
                let _ = done.send(Err(e));
            }
        }
        Err(e) => {
            tracing::warn!(error = %e, items = items.len(), what = C::what(), "a group could not be committed together; writing its items one by one");
            for (item, done) in items.iter().zip(dones) {
                let result = commit
                    .write(std::slice::from_ref(item))
                    .await
                    .and_then(|outputs| outputs.into_iter().next().ok_or_else(C::lost));
                let _ = done.send(result);
            }
        }
    }
}
