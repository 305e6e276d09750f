//! Group commit of accepted pushes: pushes accepted at the same time share one transaction.
//!
//! Each accept queues its push and waits. When no write is in progress, a committer task
//! starts; it takes every push queued so far (up to [`MAX_GROUP`]), stores them all with their
//! recipients in one transaction ([`PushStore::push_insert_group`]), answers each, and goes on
//! with whatever was queued meanwhile; it ends when the queue is empty. A lone push is written
//! at once, as before; under load, the pushes that arrive while one transaction runs go
//! together in the next, so a busy server commits once per group instead of once per push.
//!
//! Nobody hears back before their push is committed. When a group fails (one push breaks a
//! constraint, the disk is full), its pushes are written again one by one, each in its own
//! transaction, so that one bad push cannot fail the others; each gets its own outcome.
//!
//! [`PushStore::push_insert_group`]: crate::store::push::PushStore::push_insert_group

use std::sync::{Arc, Mutex};

use tokio::sync::oneshot;

use crate::store::push::{GroupedPush, Inserted, KeyCheck, NewPush};
use crate::store::{Store, StoreError};

/// The most pushes written in one transaction.
pub const MAX_GROUP: usize = 512;

/// A push to store, owned while it waits in the queue.
#[derive(Debug, Clone)]
pub(crate) struct Queued {
    pub id: String,
    /// The key's hash, kind and target, when a key made it: checked again in the transaction.
    pub key: Option<(String, &'static str, String)>,
    pub target: String,
    pub title: String,
    pub body: String,
    pub url: Option<String>,
    pub summary: Option<String>,
    pub source: &'static str,
    pub created_at: i64,
    /// Listed recipients, deduplicated.
    pub recipients: Vec<String>,
    /// A topic whose members are recipients too.
    pub topic: Option<String>,
}

impl Queued {
    fn grouped(&self) -> GroupedPush<'_> {
        GroupedPush {
            push: NewPush {
                id: &self.id,
                key_hash: self.key.as_ref().map(|(hash, _, _)| hash.as_str()),
                target: &self.target,
                title: &self.title,
                body: &self.body,
                url: self.url.as_deref(),
                summary: self.summary.as_deref(),
                source: self.source,
                created_at: self.created_at,
                recipients: &self.recipients,
            },
            topic: self.topic.as_deref(),
            key: self.key.as_ref().map(|(hash, kind, target)| KeyCheck {
                key_hash: hash,
                kind,
                target,
            }),
        }
    }
}

struct Job {
    push: Queued,
    done: oneshot::Sender<Result<Option<Inserted>, StoreError>>,
}

#[derive(Default)]
struct Queue {
    waiting: Vec<Job>,
    /// Whether a committer task is running (it will see anything queued).
    running: bool,
}

/// The queue of pushes waiting to be committed. Cheap to clone.
#[derive(Clone, Default)]
pub(crate) struct Committer {
    queue: Arc<Mutex<Queue>>,
}

impl Committer {
    /// Stores `push` (in a group with the pushes queued at the same time); its `seq` and
    /// recipient count once committed, or `None` when its key was revoked meanwhile.
    pub(crate) async fn commit(
        &self,
        store: &Store,
        push: Queued,
    ) -> Result<Option<Inserted>, StoreError> {
        let (done, answer) = oneshot::channel();
        let start = {
            let mut queue = self.lock();
            queue.waiting.push(Job { push, done });
            !std::mem::replace(&mut queue.running, true)
        };
        if start {
            // A task of its own, not this request's future: a caller that goes away (its
            // client hung up) must not stop the writes of the others in its group.
            tokio::spawn(self.clone().run(store.clone()));
        }
        answer.await.unwrap_or(Err(StoreError::WriterGone))
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Queue> {
        self.queue.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Writes groups until the queue is empty.
    async fn run(self, store: Store) {
        let mut running = Running {
            committer: &self,
            emptied: false,
        };
        loop {
            let group: Vec<Job> = {
                let mut queue = running.committer.lock();
                if queue.waiting.is_empty() {
                    queue.running = false;
                    running.emptied = true;
                    return;
                }
                let take = queue.waiting.len().min(MAX_GROUP);
                queue.waiting.drain(..take).collect()
            };
            write(&store, group).await;
        }
    }
}

/// Marks the committer stopped if its task ends any other way than by emptying the queue (a
/// panic, or its runtime shutting down): the pushes still queued are answered with an error
/// as their senders drop, and the next accept starts a new task instead of queueing behind
/// one that is gone.
struct Running<'a> {
    committer: &'a Committer,
    emptied: bool,
}

impl Drop for Running<'_> {
    fn drop(&mut self) {
        if !self.emptied {
            let mut queue = self.committer.lock();
            queue.running = false;
            queue.waiting.clear();
        }
    }
}

/// Commits one group and answers each of its pushes.
async fn write(store: &Store, group: Vec<Job>) {
    let backend = store.backend();
    let grouped: Vec<GroupedPush<'_>> = group.iter().map(|job| job.push.grouped()).collect();
    let result = backend.push_insert_group(&grouped).await;
    drop(grouped);
    match result {
        Ok(stored) => {
            let mut stored = stored.into_iter();
            for job in group {
                // The store answers for every push; one it did not is not taken as stored.
                let _ = job.done.send(
                    stored
                        .next()
                        .ok_or(StoreError::Database(sqlx::Error::RowNotFound)),
                );
            }
        }
        Err(e) if group.len() == 1 => {
            if let Some(job) = group.into_iter().next() {
                let _ = job.done.send(Err(e));
            }
        }
        Err(e) => {
            tracing::warn!(error = %e, pushes = group.len(), "a group of pushes could not be committed together; writing them one by one");
            one_by_one(store, group).await;
        }
    }
}

/// Writes each push of a failed group in its own transaction.
async fn one_by_one(store: &Store, group: Vec<Job>) {
    let backend = store.backend();
    for job in group {
        let result = backend
            .push_insert_group(&[job.push.grouped()])
            .await
            .and_then(|stored| {
                stored
                    .first()
                    .copied()
                    .ok_or(StoreError::Database(sqlx::Error::RowNotFound))
            });
        let _ = job.done.send(result);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn queued(id: &str, title: &str, openid: &str, key: Option<&str>) -> Queued {
        Queued {
            id: id.into(),
            key: key.map(|hash| (hash.to_owned(), "user", openid.to_owned())),
            target: format!("user:{openid}"),
            title: title.into(),
            body: String::new(),
            url: None,
            summary: None,
            source: "test",
            created_at: 1,
            recipients: vec![openid.into()],
            topic: None,
        }
    }

    async fn write_group(
        store: &Store,
        pushes: Vec<Queued>,
    ) -> Vec<Result<Option<Inserted>, StoreError>> {
        let mut answers = Vec::new();
        let mut group = Vec::new();
        for push in pushes {
            let (done, answer) = oneshot::channel();
            group.push(Job { push, done });
            answers.push(answer);
        }
        write(store, group).await;
        let mut results = Vec::new();
        for answer in answers {
            results.push(answer.await.expect("answered"));
        }
        results
    }

    #[tokio::test]
    async fn a_push_that_fails_its_group_fails_alone() {
        let dir = tempfile::tempdir().expect("temp dir");
        let url = format!("sqlite://{}", dir.path().join("t.db").display());
        let store = Store::open(&url).await.expect("opens");
        let pool = sqlx::SqlitePool::connect(&url).await.expect("connects");
        sqlx::query(
            "CREATE TRIGGER refuse_poison BEFORE INSERT ON pushes WHEN NEW.title = 'poison' \
             BEGIN SELECT RAISE(ABORT, 'poisoned push'); END",
        )
        .execute(&pool)
        .await
        .expect("trigger");

        let results = write_group(
            &store,
            vec![
                queued("p1", "fine", "o_1", None),
                queued("p2", "poison", "o_2", None),
                queued("p3", "fine too", "o_3", None),
            ],
        )
        .await;
        assert!(matches!(
            results[0],
            Ok(Some(Inserted { recipients: 1, .. }))
        ));
        assert!(results[1].is_err(), "{:?}", results[1]);
        assert!(matches!(
            results[2],
            Ok(Some(Inserted { recipients: 1, .. }))
        ));
        let backend = store.backend();
        for (id, stored) in [("p1", true), ("p2", false), ("p3", true)] {
            let push = backend.push_by_id(id).await.expect("read");
            assert_eq!(push.is_some(), stored, "{id}");
            if let Some(push) = push {
                assert_eq!(
                    backend.push_recipients(push.seq).await.expect("read").len(),
                    1
                );
            }
        }
    }

    #[tokio::test]
    async fn a_push_whose_key_is_gone_is_refused_and_the_others_stored() {
        let dir = tempfile::tempdir().expect("temp dir");
        let url = format!("sqlite://{}", dir.path().join("t.db").display());
        let store = Store::open(&url).await.expect("opens");
        let backend = store.backend();
        for (hash, revoked_at) in [("h_live", None), ("h_revoked", Some(5))] {
            backend
                .key_insert(&crate::store::push::KeyRow {
                    key_hash: hash.into(),
                    key_prefix: "abcdef".into(),
                    kind: "user".into(),
                    target: "o_1".into(),
                    label: String::new(),
                    created_at: 1,
                    revoked_at,
                })
                .await
                .expect("key stored");
        }
        let results = write_group(
            &store,
            vec![
                queued("p1", "live key", "o_1", Some("h_live")),
                queued("p2", "revoked key", "o_1", Some("h_revoked")),
                queued("p3", "unknown key", "o_1", Some("h_unknown")),
                // The right hash for another target: the key is not the one authenticated.
                queued("p4", "other target", "o_2", Some("h_live")),
                queued("p5", "no key", "o_1", None),
            ],
        )
        .await;
        let stored: Vec<bool> = results
            .iter()
            .map(|r| r.as_ref().expect("no store error").is_some())
            .collect();
        assert_eq!(stored, [true, false, false, false, true]);
        for (id, expected) in [("p1", true), ("p2", false), ("p3", false), ("p4", false)] {
            assert_eq!(
                backend.push_by_id(id).await.expect("read").is_some(),
                expected,
                "{id}"
            );
        }
    }
}
