//! What the push service keeps: topics and their members, push keys, pushes and the delivery
//! state of each recipient. [`PushStore`] is part of every [`super::Backend`].
//!
//! Delivery is claimed row by row with a lease ([`PushStore::push_claim`]), so several
//! processes on one database share the work without sending anything twice, and a process that
//! dies mid-delivery leaves its rows to be taken over once the lease runs out.

use async_trait::async_trait;

use super::StoreError;

from_row! {
    /// A topic, with its member count.
    #[derive(Debug, Clone, PartialEq, Eq)]
    pub struct Topic {
        /// The name (`[-_A-Za-z0-9]{1,64}`).
        pub name: String,
        /// Whether any follower may join with a chat command.
        pub open: bool,
        /// Shown in `topics` listings.
        pub description: String,
        /// When it was created.
        pub created_at: i64,
        /// How many followers are members (also those who unfollowed since, who stay members
        /// but are not sent to).
        pub members: i64,
        /// Its number (WxPusher's `topicId`), kept per name forever.
        pub num: i64,
        /// The app it belongs to (whose token may push to it), if any.
        pub app_id: Option<i64>,
    }
}

/// How many of a key's first characters are kept in clear.
pub const KEY_PREFIX_LEN: usize = 6;

from_row! {
    /// A push key as stored.
    #[derive(Clone, PartialEq, Eq)]
    pub struct KeyRow {
        /// SHA-256 of the key, hex: how it is looked up. The key itself is not kept: it is shown
        /// once, when made.
        pub key_hash: String,
        /// The key's first [`KEY_PREFIX_LEN`] characters, for listings and revoking.
        pub key_prefix: String,
        /// `user`, `topic` or `admin`.
        pub kind: String,
        /// The openid or topic name (empty for admin keys).
        pub target: String,
        /// A note for listings.
        pub label: String,
        /// When it was made.
        pub created_at: i64,
        /// When it was revoked, if it was.
        pub revoked_at: Option<i64>,
    }
}

impl std::fmt::Debug for KeyRow {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // Never the key.
        f.debug_struct("KeyRow")
            .field("key_prefix", &self.key_prefix)
            .field("kind", &self.kind)
            .field("target", &self.target)
            .field("label", &self.label)
            .field("revoked_at", &self.revoked_at)
            .finish_non_exhaustive()
    }
}

/// A push to store, with its recipients.
#[derive(Debug, Clone)]
pub struct NewPush<'a> {
    /// The public id.
    pub id: &'a str,
    /// The key it came with, if any.
    pub key_hash: Option<&'a str>,
    /// What it was addressed to (`topic:NAME`, `user:OPENID`, `users:N`).
    pub target: &'a str,
    /// Title.
    pub title: &'a str,
    /// Markdown body.
    pub body: &'a str,
    /// Link shown on the detail page.
    pub url: Option<&'a str>,
    /// Summary for the template card.
    pub summary: Option<&'a str>,
    /// The API it came through (`api`, `bark`, `ntfy`, …).
    pub source: &'a str,
    /// When it was accepted (Unix seconds).
    pub created_at: i64,
    /// Recipients' openids, deduplicated.
    pub recipients: &'a [String],
}

/// A push to store in a group ([`PushStore::push_insert_group`]): its own recipients, and the
/// members of a topic besides.
#[derive(Debug, Clone)]
pub struct GroupedPush<'a> {
    /// The push and its listed recipients.
    pub push: NewPush<'a>,
    /// A topic whose members (those who have not unfollowed) become recipients too, copied
    /// inside the transaction; a member already listed is stored once.
    pub topic: Option<&'a str>,
    /// The key the push was made with, as it was authenticated: the push is stored only if
    /// this key is still on record, unrevoked, when the transaction runs.
    pub key: Option<KeyCheck<'a>>,
}

/// A key as a push was authenticated with it ([`GroupedPush::key`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct KeyCheck<'a> {
    /// [`KeyRow::key_hash`].
    pub key_hash: &'a str,
    /// [`KeyRow::kind`].
    pub kind: &'a str,
    /// [`KeyRow::target`].
    pub target: &'a str,
}

/// A push as stored by [`PushStore::push_insert_group`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Inserted {
    /// Its `seq`.
    pub seq: i64,
    /// How many recipient rows it has.
    pub recipients: u64,
}

from_row! {
    /// A stored push.
    #[derive(Debug, Clone, PartialEq, Eq)]
    pub struct PushRow {
        /// Numeric id, in acceptance order.
        pub seq: i64,
        /// Public id.
        pub id: String,
        /// The key it came with.
        pub key_hash: Option<String>,
        /// What it was addressed to.
        pub target: String,
        /// Title.
        pub title: String,
        /// Markdown body.
        pub body: String,
        /// Link.
        pub url: Option<String>,
        /// Summary.
        pub summary: Option<String>,
        /// The API it came through.
        pub source: String,
        /// When it was accepted.
        pub created_at: i64,
    }
}

from_row! {
    /// One recipient's delivery.
    #[derive(Debug, Clone, PartialEq, Eq)]
    pub struct RecipientRow {
        /// The follower.
        pub openid: String,
        /// `pending`, `sending`, `sent`, `delivered` or `failed`.
        pub state: String,
        /// Send attempts so far.
        pub attempts: i64,
        /// WeChat's msgid, once accepted.
        pub msgid: Option<i64>,
        /// The last error (`43004 require subscribe`, …).
        pub error: Option<String>,
        /// Last change (Unix seconds).
        pub updated_at: i64,
    }
}

from_row! {
    /// A recipient claimed for delivery.
    #[derive(Debug, Clone, PartialEq, Eq)]
    pub struct Claimed {
        /// The push.
        pub push_seq: i64,
        /// The follower.
        pub openid: String,
        /// The same on every attempt.
        pub client_msg_id: String,
        /// Attempts including this one.
        pub attempts: i64,
    }
}

/// How one delivery attempt ended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Attempt {
    /// WeChat accepted it (`msgid` unknown when an earlier attempt had already got through).
    Sent {
        /// WeChat's msgid.
        msgid: Option<i64>,
    },
    /// A transient failure: try again from `next_at` (milliseconds).
    Retry {
        /// When.
        next_at: i64,
        /// What went wrong.
        error: String,
    },
    /// A permanent failure.
    Failed {
        /// What went wrong.
        error: String,
    },
    /// Never started (the worker is stopping): due again at once, and the attempt the claim
    /// counted is taken back.
    Released,
}

/// How one recipient's attempt ended, to be recorded.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Outcome {
    /// The push.
    pub push_seq: i64,
    /// The follower.
    pub openid: String,
    /// The result.
    pub attempt: Attempt,
}

/// Counts of recipients by state.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Tally {
    /// Waiting or being sent.
    pub pending: u64,
    /// Accepted by WeChat.
    pub sent: u64,
    /// Confirmed by `TEMPLATESENDJOBFINISH`.
    pub delivered: u64,
    /// Failed.
    pub failed: u64,
}

impl Tally {
    /// The counts of these recipients' states (`sending` counts as pending).
    pub fn of(recipients: &[RecipientRow]) -> Self {
        let mut tally = Self::default();
        for r in recipients {
            match r.state.as_str() {
                "sent" => tally.sent += 1,
                "delivered" => tally.delivered += 1,
                "failed" => tally.failed += 1,
                _ => tally.pending += 1,
            }
        }
        tally
    }
}

/// The columns of a [`Topic`] selected from `topics t` (the same SQL on every backend).
pub(crate) const TOPIC_COLUMNS: &str = "t.name, t.open, t.description, t.created_at, \
     (SELECT COUNT(*) FROM topic_members m WHERE m.topic = t.name) AS members, \
     COALESCE((SELECT n.num FROM topic_numbers n WHERE n.name = t.name), 0) AS num, t.app_id";
/// The columns of a [`KeyRow`].
pub(crate) const KEY_COLUMNS: &str =
    "key_hash, key_prefix, kind, target, label, created_at, revoked_at";
/// The columns of a [`PushRow`].
pub(crate) const PUSH_COLUMNS: &str =
    "seq, id, key_hash, target, title, body, url, summary, source, created_at";

/// The push service's storage.
#[async_trait]
pub trait PushStore: Send + Sync {
    /// Creates a topic, and its number unless its name had one; false when it exists
    /// (unchanged).
    async fn topic_create(
        &self,
        name: &str,
        open: bool,
        description: &str,
        now: i64,
    ) -> Result<bool, StoreError>;
    /// Deletes a topic, its memberships and its keys; false when there was none.
    async fn topic_delete(&self, name: &str) -> Result<bool, StoreError>;
    /// One topic.
    async fn topic(&self, name: &str) -> Result<Option<Topic>, StoreError>;
    /// Every topic, by name.
    async fn topics(&self) -> Result<Vec<Topic>, StoreError>;
    /// Adds a member; false when already one.
    async fn topic_join(&self, topic: &str, openid: &str, now: i64) -> Result<bool, StoreError>;
    /// Removes a member; false when not one.
    async fn topic_leave(&self, topic: &str, openid: &str) -> Result<bool, StoreError>;
    /// The topics a user is a member of.
    async fn topics_of(&self, openid: &str) -> Result<Vec<String>, StoreError>;
    /// A topic's members who have not unfollowed the account.
    async fn topic_members(&self, topic: &str) -> Result<Vec<String>, StoreError>;

    /// Stores a key.
    async fn key_insert(&self, key: &KeyRow) -> Result<(), StoreError>;
    /// The key with this hash, revoked or not.
    async fn key_by_hash(&self, key_hash: &str) -> Result<Option<KeyRow>, StoreError>;
    /// The newest unrevoked key of this kind and target.
    async fn key_for(&self, kind: &str, target: &str) -> Result<Option<KeyRow>, StoreError>;
    /// Every key, newest first.
    async fn keys(&self) -> Result<Vec<KeyRow>, StoreError>;
    /// Revokes the unrevoked keys whose first [`KEY_PREFIX_LEN`] characters are `prefix`;
    /// how many.
    async fn key_revoke(&self, prefix: &str, now: i64) -> Result<u64, StoreError>;
    /// Revokes the key with this hash unless it is revoked; how many (0 or 1).
    async fn key_revoke_hash(&self, key_hash: &str, now: i64) -> Result<u64, StoreError>;

    /// Stores a push and its recipients in one transaction; its `seq`.
    async fn push_insert(&self, push: &NewPush<'_>) -> Result<i64, StoreError>;
    /// Stores pushes and all their recipients in one transaction (multi-row INSERTs): for each
    /// push in order, its `seq` and recipient count, or `None` when its [`GroupedPush::key`]
    /// is no longer valid (nothing of it is stored). All or nothing otherwise: when one push
    /// cannot be stored (an id used twice), none is.
    ///
    /// A backend without it cannot accept pushes (the push service stores every push this
    /// way).
    async fn push_insert_group(
        &self,
        _pushes: &[GroupedPush<'_>],
    ) -> Result<Vec<Option<Inserted>>, StoreError> {
        Err(StoreError::Unsupported("storing pushes in groups"))
    }
    /// The pushes with these `seq`s (those that still exist), in no particular order. By
    /// default one [`PushStore::push_by_seq`] each.
    async fn pushes_by_seq(&self, seqs: &[i64]) -> Result<Vec<PushRow>, StoreError> {
        let mut rows = Vec::with_capacity(seqs.len());
        for &seq in seqs {
            rows.extend(self.push_by_seq(seq).await?);
        }
        Ok(rows)
    }
    /// A push by public id.
    async fn push_by_id(&self, id: &str) -> Result<Option<PushRow>, StoreError>;
    /// A push by seq.
    async fn push_by_seq(&self, seq: i64) -> Result<Option<PushRow>, StoreError>;
    /// A push's recipients, by openid.
    async fn push_recipients(&self, seq: i64) -> Result<Vec<RecipientRow>, StoreError>;
    /// Pushes after `after_seq`, oldest first, at most `limit`: all of them (`scope` None),
    /// those addressed to `topic:NAME`, those addressed to a user, whatever their delivery
    /// state (`user:OPENID`), or those made with a key (`key:HASH`).
    async fn push_history(
        &self,
        scope: Option<&str>,
        after_seq: i64,
        since: i64,
        limit: u32,
    ) -> Result<Vec<PushRow>, StoreError>;
    /// Claims up to `limit` recipients that are due (`pending` from `next_at`, or `sending`
    /// under an expired lease) for `owner` until `lease_until`; times in milliseconds.
    async fn push_claim(
        &self,
        owner: &str,
        now_ms: i64,
        lease_until_ms: i64,
        limit: u32,
    ) -> Result<Vec<Claimed>, StoreError>;
    /// Records how `owner`'s attempts ended, in one transaction, each only while its recipient
    /// is still being sent. `Sent` counts whoever holds the lease (WeChat took the message);
    /// `Retry` and `Failed` only while `owner` still does, so a worker whose lease ran out and
    /// was taken over cannot undo the new holder's delivery.
    async fn push_settle(
        &self,
        owner: &str,
        outcomes: &[Outcome],
        now: i64,
    ) -> Result<(), StoreError>;
    /// Applies `TEMPLATESENDJOBFINISH`: the recipient sent as `msgid` becomes `delivered`, or
    /// `failed` with `status`; how many rows changed.
    async fn push_finished(
        &self,
        msgid: i64,
        delivered: bool,
        status: &str,
        now: i64,
    ) -> Result<u64, StoreError>;
    /// The recipient sent as WeChat's `msgid`: (push seq, OpenID).
    async fn push_recipient_by_msgid(
        &self,
        msgid: i64,
    ) -> Result<Option<(i64, String)>, StoreError>;
    /// When the next recipient is due (milliseconds), if any is waiting.
    async fn push_next_due(&self) -> Result<Option<i64>, StoreError>;
    /// Sends a push again to its `failed` recipients: each is `pending` from `now_ms` with
    /// its attempts reset, under a new `client_msg_id` (WeChat would take the old one for the
    /// same message and drop it); how many.
    async fn push_retry_failed(&self, seq: i64, now_ms: i64, now: i64) -> Result<u64, StoreError>;
    /// Recipients waiting or being sent (`pending` and `sending`): the delivery queue's depth,
    /// counted through the partial indexes that hold only those rows.
    async fn push_queue_depth(&self) -> Result<u64, StoreError>;
    /// Deletes one push (with its recipients, and so its detail page); false when there was
    /// none.
    async fn push_delete(&self, seq: i64) -> Result<bool, StoreError>;
    /// Deletes pushes accepted before `before` (with their recipients); how many.
    async fn push_purge(&self, before: i64) -> Result<u64, StoreError>;
}
