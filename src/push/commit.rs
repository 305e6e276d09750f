//! Group commit of accepted pushes ([`crate::support::group`]): pushes accepted at the same
//! time are stored with all their recipients in one transaction
//! ([`PushStore::push_insert_group`]), up to [`MAX_GROUP`] at a time. Nobody hears back
//! before their push is committed; a push that fails its group is written again alone.
//!
//! [`PushStore::push_insert_group`]: crate::store::push::PushStore::push_insert_group

use crate::store::push::{GroupedPush, Inserted, KeyCheck, NewPush};
use crate::store::{Store, StoreError};
use crate::support::group::{Commit, Group, Written};

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

/// How pushes are written in groups ([`PushStore::push_insert_group`]).
///
/// [`PushStore::push_insert_group`]: crate::store::push::PushStore::push_insert_group
#[derive(Clone)]
pub(crate) struct PushWrites {
    store: Store,
}

impl Commit for PushWrites {
    type Item = Queued;
    type Output = Option<Inserted>;
    type Error = StoreError;

    fn write<'a>(&'a self, items: &'a [Queued]) -> Written<'a, Option<Inserted>, StoreError> {
        Box::pin(async move {
            let grouped: Vec<GroupedPush<'_>> = items.iter().map(Queued::grouped).collect();
            self.store.backend().push_insert_group(&grouped).await
        })
    }

    fn lost() -> StoreError {
        StoreError::WriterGone
    }

    fn what() -> &'static str {
        "pushes"
    }
}

/// The queue of pushes waiting to be committed. Cheap to clone.
pub(crate) type Committer = Group<PushWrites>;

/// The committer of pushes into `store`.
pub(crate) fn committer(store: Store) -> Committer {
    Group::new(PushWrites { store }, MAX_GROUP)
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
        committer(store.clone()).write_now(pushes).await
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
