//! Batched reads for the callback's hot path: the replay guard's lookup of a new (timestamp,
//! nonce), a user's session before the rules read it, and (with other processes on the
//! database) a message's dedup record. Each message needs one small indexed
//! read, and what costs is not the read but reaching the database's connection (for SQLite, a
//! hop to the thread that owns it and back). So concurrent lookups of one kind share one query:
//! a task takes every lookup queued while the previous query ran and answers them all from
//! one `IN (…)` read. One message alone waits for one query, as before; a hundred at once wait
//! for a few, and the database is reached a few times, not a hundred.
//!
//! Reads stay reads of the database as it is now (no cache): what another process wrote is
//! seen by the next query.

use std::collections::HashMap;
use std::future::Future;
use std::hash::Hash;
use std::pin::Pin;
use std::sync::Arc;

use tokio::sync::{mpsc, oneshot};

use super::{Backend, DedupRecord, ReplayRecord, StoreError};

/// A user's session rows as read: (key, JSON value, expiry).
pub type Rows = Vec<(String, String, Option<i64>)>;
use crate::support::clock::unix_now;

/// Most lookups answered by one query.
pub const BATCH_MAX: usize = 256;

/// Times a batch yields to let running tasks add lookups, while they keep coming.
const YIELDS: usize = 4;

/// Lookups waiting for a query before new ones wait to be queued.
const QUEUE: usize = 4_096;

type Answer<V> = oneshot::Sender<Result<V, Arc<StoreError>>>;
type Run<K, V> = Box<
    dyn Fn(Vec<K>) -> Pin<Box<dyn Future<Output = Result<HashMap<K, V>, StoreError>> + Send>>
        + Send
        + Sync,
>;

/// Lookups of one kind, answered in batches by one task.
pub struct Batched<K, V> {
    tx: mpsc::Sender<(K, Answer<V>)>,
}

impl<K, V> Clone for Batched<K, V> {
    fn clone(&self) -> Self {
        Self {
            tx: self.tx.clone(),
        }
    }
}

impl<K, V> Batched<K, V>
where
    K: Eq + Hash + Clone + Send + 'static,
    V: Clone + Default + Send + 'static,
{
    /// Starts the task answering lookups with `run`, which reads the values of up to
    /// [`BATCH_MAX`] keys at once (a key it leaves out has the default value). The task ends
    /// when every handle is dropped.
    fn spawn(run: Run<K, V>) -> Self {
        let (tx, mut rx) = mpsc::channel::<(K, Answer<V>)>(QUEUE);
        tokio::spawn(async move {
            let mut batch = Vec::with_capacity(BATCH_MAX);
            while rx.recv_many(&mut batch, BATCH_MAX).await > 0 {
                // Let the tasks already running queue their lookups too: under load one query
                // then answers several messages (each query costs the database a wake-up and a
                // transaction, whatever it reads); alone, a message waits one yield.
                for _ in 0..YIELDS {
                    if batch.len() >= BATCH_MAX {
                        break;
                    }
                    tokio::task::yield_now().await;
                    let before = batch.len();
                    while batch.len() < BATCH_MAX {
                        match rx.try_recv() {
                            Ok(lookup) => batch.push(lookup),
                            Err(_) => break,
                        }
                    }
                    if batch.len() == before {
                        break;
                    }
                }
                // A key asked twice (one user's two messages) is read once all the same.
                let keys: Vec<K> = batch.iter().map(|(k, _)| k.clone()).collect();
                match run(keys).await {
                    Ok(found) => {
                        for (key, answer) in batch.drain(..) {
                            let _ = answer.send(Ok(found.get(&key).cloned().unwrap_or_default()));
                        }
                    }
                    Err(e) => {
                        let e = Arc::new(e);
                        for (_, answer) in batch.drain(..) {
                            let _ = answer.send(Err(Arc::clone(&e)));
                        }
                    }
                }
            }
        });
        Self { tx }
    }

    /// The value of `key`, read with whatever other lookups are waiting.
    pub async fn get(&self, key: K) -> Result<V, StoreError> {
        let (answer, answered) = oneshot::channel();
        self.tx
            .send((key, answer))
            .await
            .map_err(|_| StoreError::ReaderGone)?;
        match answered.await {
            Ok(Ok(value)) => Ok(value),
            Ok(Err(e)) => Err(StoreError::Batch(e.to_string())),
            Err(_) => Err(StoreError::ReaderGone),
        }
    }
}

/// The batched reads of one store.
#[derive(Clone)]
pub struct Reads {
    /// The replay guard's record of a (timestamp, nonce), if it has one that has not expired.
    pub replay: Batched<(String, String), Option<ReplayRecord>>,
    /// A user's session: its unexpired (key, JSON value, expiry) rows.
    pub session: Batched<String, Rows>,
    /// The dedup record of a message key, when processes share the database.
    pub dedup: Batched<String, Option<DedupRecord>>,
}

impl Reads {
    /// Starts the reading tasks for `backend` (inside a Tokio runtime).
    pub fn spawn(backend: &Arc<dyn Backend>) -> Self {
        let on = Arc::clone(backend);
        let replay = Batched::spawn(Box::new(move |keys: Vec<(String, String)>| {
            let backend = Arc::clone(&on);
            Box::pin(async move {
                let records = backend.replay_get_many(&keys, unix_now()).await?;
                Ok(records
                    .into_iter()
                    .map(|r| ((r.timestamp.clone(), r.nonce.clone()), Some(r)))
                    .collect())
            })
        }));
        let on = Arc::clone(backend);
        let session = Batched::spawn(Box::new(move |openids: Vec<String>| {
            let backend = Arc::clone(&on);
            Box::pin(async move {
                let rows = backend.sessions_load(&openids, unix_now()).await?;
                let mut sessions: HashMap<String, Rows> = HashMap::new();
                for (openid, key, value, expires) in rows {
                    sessions
                        .entry(openid)
                        .or_default()
                        .push((key, value, expires));
                }
                Ok(sessions)
            })
        }));
        let on = Arc::clone(backend);
        let dedup = Batched::spawn(Box::new(move |keys: Vec<String>| {
            let backend = Arc::clone(&on);
            Box::pin(async move {
                let records = backend.dedup_get_many(&keys).await?;
                Ok(records
                    .into_iter()
                    .map(|r| (r.key.clone(), Some(r)))
                    .collect())
            })
        }));
        Self {
            replay,
            session,
            dedup,
        }
    }
}
