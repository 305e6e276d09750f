//! What the platform for app developers keeps: apps, the codes that bind a site's users to
//! followers, the bindings themselves, and the webhook outbox with each delivery's attempts.
//! [`AppStore`] is part of every [`super::Backend`].
//!
//! An app's token is a push key of kind `app` whose target is the app's id (see
//! [`super::push::KeyRow`]): it is looked up, revoked and rate-limited like any key.
//!
//! Webhook deliveries are claimed row by row with a lease ([`AppStore::webhook_claim`]), as
//! push recipients are, so several processes share the work and a process that dies leaves its
//! deliveries to be taken over. Deliveries with the same `endpoint` and `ordering` (one
//! receiver, one follower) are sent one at a time, in the order they were stored.

use async_trait::async_trait;

use super::StoreError;

from_row! {
    /// An app as stored.
    #[derive(Clone, PartialEq, Eq)]
    pub struct AppRow {
        /// Numeric id, in creation order (WxPusher's `appId`).
        pub id: i64,
        /// A name, unique among live apps.
        pub name: String,
        /// Where webhooks go (`http(s)://…`); empty for none.
        pub callback_url: String,
        /// The shape of the webhook payloads: `huixin` or `wxpusher`.
        pub callback_format: String,
        /// Whether a message webhook's answer may be the passive reply.
        pub replies: bool,
        /// The HMAC-SHA256 key webhook signatures are made with. Kept in clear: it signs.
        pub secret: String,
        /// Where `/bind/{id}` sends the browser once bound, unless the binding names its own.
        pub return_url: String,
        /// When it was made (Unix seconds).
        pub created_at: i64,
        /// When it was revoked, if it was.
        pub revoked_at: Option<i64>,
    }
}

impl std::fmt::Debug for AppRow {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // Never the secret.
        f.debug_struct("AppRow")
            .field("id", &self.id)
            .field("name", &self.name)
            .field("callback_url", &self.callback_url)
            .field("callback_format", &self.callback_format)
            .field("replies", &self.replies)
            .field("return_url", &self.return_url)
            .field("created_at", &self.created_at)
            .field("revoked_at", &self.revoked_at)
            .finish_non_exhaustive()
    }
}

/// An app to store ([`AppStore::app_insert`]).
#[derive(Clone, PartialEq, Eq)]
pub struct NewApp<'a> {
    /// [`AppRow::name`].
    pub name: &'a str,
    /// [`AppRow::callback_url`].
    pub callback_url: &'a str,
    /// [`AppRow::callback_format`].
    pub callback_format: &'a str,
    /// [`AppRow::replies`].
    pub replies: bool,
    /// [`AppRow::secret`].
    pub secret: &'a str,
    /// [`AppRow::return_url`].
    pub return_url: &'a str,
    /// When (Unix seconds).
    pub created_at: i64,
    /// SHA-256 (hex) of the app token, stored as a push key of kind `app`.
    pub token_hash: &'a str,
    /// The token's first characters ([`super::push::KEY_PREFIX_LEN`]).
    pub token_prefix: &'a str,
}

/// Changes to an app ([`AppStore::app_update`]); `None` leaves a field as it is.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct AppChanges {
    /// [`AppRow::callback_url`].
    pub callback_url: Option<String>,
    /// [`AppRow::callback_format`].
    pub callback_format: Option<String>,
    /// [`AppRow::replies`].
    pub replies: Option<bool>,
    /// [`AppRow::return_url`].
    pub return_url: Option<String>,
}

from_row! {
    /// A code that binds: a parameter QR code and a web link, made by an app for one of its site's
    /// users (`uid` set, used once), or for anyone who scans it (`uid` empty: WxPusher's parameter
    /// QR codes, which give each follower who scans the app's own opaque uid).
    #[derive(Debug, Clone, PartialEq, Eq)]
    pub struct BindCode {
        /// Public, unguessable id: the QR scene is `bind:ID`, the link `/bind/ID`.
        pub id: String,
        /// The app.
        pub app_id: i64,
        /// The site's user id the code binds, or empty for a code anyone may scan.
        pub uid: String,
        /// The app's own data, handed back in the binding and its webhook (at most 64 characters
        /// for WxPusher's codes).
        pub extra: String,
        /// Where the browser goes once bound through the link (empty: the app's, else huixin's
        /// page).
        pub return_url: String,
        /// WeChat's ticket for the QR code (empty until made).
        pub ticket: String,
        /// The QR code's content (WeChat's `url`), what the image encodes.
        pub qr_content: String,
        /// When it was made (Unix seconds).
        pub created_at: i64,
        /// When it stops binding (Unix seconds).
        pub expires_at: i64,
        /// When it was last used, if it was.
        pub used_at: Option<i64>,
        /// The OpenID of the last follower who used it.
        pub used_by: Option<String>,
        /// The uid that follower was bound as (WxPusher's `scan-qrcode-uid`).
        pub used_uid: Option<String>,
    }
}

from_row! {
    /// A binding: the app's `uid` stands for the follower `openid`.
    #[derive(Debug, Clone, PartialEq, Eq)]
    pub struct BindingRow {
        /// Numeric id (WxPusher's user record `id`).
        pub seq: i64,
        /// The app.
        pub app_id: i64,
        /// The app's id for the user: the site's, or a minted `UID_…`. At most 64 characters.
        pub uid: String,
        /// The follower.
        pub openid: String,
        /// The binding code's `extra`.
        pub extra: String,
        /// How it was made: `scan`, `link`, `command` or `admin`.
        pub source: String,
        /// `bound`, or `unfollowed` while the follower does not follow the account.
        pub state: String,
        /// Whether the app refuses to push to the follower (WxPusher's `reject`).
        pub blocked: bool,
        /// When it was made (Unix seconds).
        pub created_at: i64,
        /// Last change (Unix seconds).
        pub updated_at: i64,
    }
}

/// A binding to store ([`AppStore::binding_upsert`]).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NewBinding<'a> {
    /// The app.
    pub app_id: i64,
    /// The app's id for the user.
    pub uid: &'a str,
    /// The follower.
    pub openid: &'a str,
    /// The code's `extra`.
    pub extra: &'a str,
    /// `scan`, `link`, `command` or `admin`.
    pub source: &'a str,
    /// When (Unix seconds).
    pub now: i64,
}

/// A webhook delivery to store.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NewDelivery<'a> {
    /// Public id (the `X-Huixin-Delivery` header): the receiver's idempotency key.
    pub id: &'a str,
    /// The app it is for; `None` for a `[[webhooks]]` entry of the config.
    pub app_id: Option<i64>,
    /// The receiver: `app:ID` or `config:NAME`. With `ordering`, what orders deliveries.
    pub endpoint: &'a str,
    /// Where it is POSTed.
    pub url: &'a str,
    /// `follow`, `unfollow`, `message`, `binding`, `push.delivered`, `push.failed`, or a
    /// rule's own event name.
    pub event: &'a str,
    /// Deliveries of one endpoint with the same ordering go one at a time, in the order they
    /// were stored (the follower's OpenID; empty orders nothing).
    pub ordering: &'a str,
    /// The JSON body, exactly as sent.
    pub body: &'a str,
    /// When (milliseconds).
    pub now_ms: i64,
}

from_row! {
    /// A stored webhook delivery.
    #[derive(Debug, Clone, PartialEq, Eq)]
    pub struct DeliveryRow {
        /// Order of storing.
        pub seq: i64,
        /// Public id.
        pub id: String,
        /// The app, if any.
        pub app_id: Option<i64>,
        /// The receiver (`app:ID`, `config:NAME`).
        pub endpoint: String,
        /// Where it is POSTed.
        pub url: String,
        /// The event.
        pub event: String,
        /// What orders it among the endpoint's deliveries.
        pub ordering: String,
        /// The JSON body.
        pub body: String,
        /// `pending`, `sending`, `delivered` or `failed`.
        pub state: String,
        /// Attempts so far.
        pub attempts: i64,
        /// When it is due (milliseconds).
        pub next_at: i64,
        /// The HTTP status of the last attempt, if one answered.
        pub last_status: Option<i64>,
        /// What went wrong last.
        pub last_error: Option<String>,
        /// When it was stored (milliseconds).
        pub created_at: i64,
        /// Last change (milliseconds).
        pub updated_at: i64,
    }
}

from_row! {
    /// One attempt of a delivery.
    #[derive(Debug, Clone, PartialEq, Eq)]
    pub struct AttemptRow {
        /// The delivery.
        pub delivery_seq: i64,
        /// 1, 2, …
        pub attempt: i64,
        /// When it started (milliseconds).
        pub at: i64,
        /// How long it took (milliseconds).
        pub duration_ms: i64,
        /// The HTTP status, if the receiver answered.
        pub status: Option<i64>,
        /// What went wrong, if it did.
        pub error: Option<String>,
    }
}

/// How one delivery attempt ended, to be recorded ([`AppStore::webhook_settle`]).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DeliveryOutcome {
    /// The delivery's `seq`.
    pub seq: i64,
    /// When the attempt started (milliseconds).
    pub at: i64,
    /// How long it took (milliseconds).
    pub duration_ms: i64,
    /// The HTTP status, if the receiver answered.
    pub status: Option<i64>,
    /// The result.
    pub result: DeliveryResult,
}

/// The result of one attempt.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum DeliveryResult {
    /// A 2xx answer.
    Delivered,
    /// Failed; try again from `next_at` (milliseconds).
    Retry {
        /// When.
        next_at: i64,
        /// What went wrong.
        error: String,
    },
    /// Failed for good (too many attempts, too old).
    Failed {
        /// What went wrong.
        error: String,
    },
    /// Never started (stopping): due again at once, the claimed attempt taken back, no
    /// attempt recorded.
    Released,
}

/// Which deliveries to list ([`AppStore::webhook_deliveries`]).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct DeliveryFilter {
    /// Only this app's (`Some(None)`: only the config's).
    pub app_id: Option<Option<i64>>,
    /// Only in this state.
    pub state: Option<String>,
    /// Only this event.
    pub event: Option<String>,
    /// Only with `seq` below this (paging newest first); `None` from the newest.
    pub before_seq: Option<i64>,
    /// At most this many (newest first).
    pub limit: u32,
}

/// The columns of an [`AppRow`].
pub(crate) const APP_COLUMNS: &str = "id, name, callback_url, callback_format, replies, secret, \
     return_url, created_at, revoked_at";
/// The columns of a [`BindCode`].
pub(crate) const BIND_CODE_COLUMNS: &str = "id, app_id, uid, extra, return_url, ticket, \
     qr_content, created_at, expires_at, used_at, used_by, used_uid";
/// The columns of a [`BindingRow`].
pub(crate) const BINDING_COLUMNS: &str =
    "seq, app_id, uid, openid, extra, source, state, blocked, created_at, updated_at";
/// The columns of a [`DeliveryRow`].
pub(crate) const DELIVERY_COLUMNS: &str = "seq, id, app_id, endpoint, url, event, ordering, body, \
     state, attempts, next_at, last_status, last_error, created_at, updated_at";

/// The platform's storage.
#[async_trait]
pub trait AppStore: Send + Sync {
    // ----- apps -----

    /// Stores an app and its token (a push key of kind `app`, target the new id, label the
    /// name) in one transaction; the new id. A live app of the same name is a unique
    /// violation ([`StoreError::Database`]).
    async fn app_insert(&self, app: &NewApp<'_>) -> Result<i64, StoreError>;
    /// An app by id, revoked or not.
    async fn app(&self, id: i64) -> Result<Option<AppRow>, StoreError>;
    /// The live app of this name.
    async fn app_by_name(&self, name: &str) -> Result<Option<AppRow>, StoreError>;
    /// Every app, revoked ones too, by id.
    async fn apps(&self) -> Result<Vec<AppRow>, StoreError>;
    /// Changes a live app; false when there is none.
    async fn app_update(&self, id: i64, changes: &AppChanges) -> Result<bool, StoreError>;
    /// Revokes a live app and its tokens (its push keys of kind `app`) in one transaction;
    /// false when there was none. Its bindings and deliveries stay for the record.
    async fn app_revoke(&self, id: i64, now: i64) -> Result<bool, StoreError>;

    // ----- binding codes -----

    /// Stores a code.
    async fn bind_code_insert(&self, code: &BindCode) -> Result<(), StoreError>;
    /// A code by id, expired or not.
    async fn bind_code(&self, id: &str) -> Result<Option<BindCode>, StoreError>;
    /// Sets a code's ticket and QR content once WeChat made the QR code.
    async fn bind_code_set_ticket(
        &self,
        id: &str,
        ticket: &str,
        qr_content: &str,
    ) -> Result<(), StoreError>;
    /// Records that `openid` used the code at `now`, bound as `uid`. A code with a `uid` is
    /// used once: true when this use took it (it was unused and unexpired at `now`), false
    /// otherwise, and nothing changes. A code without one is taken by every use before it
    /// expires.
    async fn bind_code_use(
        &self,
        id: &str,
        openid: &str,
        uid: &str,
        now: i64,
    ) -> Result<bool, StoreError>;
    /// Deletes codes that expired before `before`; how many.
    async fn bind_codes_purge(&self, before: i64) -> Result<u64, StoreError>;

    // ----- bindings -----

    /// Binds `uid` of the app to the follower: a new binding, or the app's binding of that
    /// uid made over (another follower, the new extra and source, state `bound`, `blocked`
    /// kept, `created_at` kept). Returns the binding as stored and, when the uid stood for
    /// another follower before, that follower's OpenID.
    async fn binding_upsert(
        &self,
        binding: &NewBinding<'_>,
    ) -> Result<(BindingRow, Option<String>), StoreError>;
    /// The app's binding of `uid`.
    async fn binding(&self, app_id: i64, uid: &str) -> Result<Option<BindingRow>, StoreError>;
    /// A binding by its numeric id.
    async fn binding_by_seq(&self, seq: i64) -> Result<Option<BindingRow>, StoreError>;
    /// The app's bindings of the follower (several uids may stand for one follower), by seq.
    async fn bindings_of_follower(
        &self,
        app_id: i64,
        openid: &str,
    ) -> Result<Vec<BindingRow>, StoreError>;
    /// Every app's bindings of the follower, by app then seq.
    async fn bindings_of_openid(&self, openid: &str) -> Result<Vec<BindingRow>, StoreError>;
    /// The app's bindings of these uids (those that exist), in no particular order.
    async fn bindings_of_uids(
        &self,
        app_id: i64,
        uids: &[String],
    ) -> Result<Vec<BindingRow>, StoreError>;
    /// A page of the app's bindings by seq: the first `offset` skipped, at most `limit`; only
    /// `uid`'s when given; only blocked (or unblocked) ones when `blocked` is given.
    async fn bindings_page(
        &self,
        app_id: i64,
        uid: Option<&str>,
        blocked: Option<bool>,
        offset: u32,
        limit: u32,
    ) -> Result<Vec<BindingRow>, StoreError>;
    /// How many bindings the app has (with the same filters as [`AppStore::bindings_page`]).
    async fn bindings_count(
        &self,
        app_id: i64,
        uid: Option<&str>,
        blocked: Option<bool>,
    ) -> Result<u64, StoreError>;
    /// Removes the binding with this seq of the app; false when there was none.
    async fn binding_delete(&self, app_id: i64, seq: i64) -> Result<bool, StoreError>;
    /// Sets whether the app refuses to push to the binding with this seq; false when there is
    /// none.
    async fn binding_block(
        &self,
        app_id: i64,
        seq: i64,
        blocked: bool,
        now: i64,
    ) -> Result<bool, StoreError>;
    /// Sets the state of every binding of the follower (`unfollowed` when they unfollow,
    /// `bound` when they follow again); how many changed.
    async fn bindings_mark(&self, openid: &str, state: &str, now: i64) -> Result<u64, StoreError>;

    // ----- topics of apps -----

    /// Gives a topic to an app (`None`: to no app); false when there is no such topic.
    async fn topic_set_app(&self, name: &str, app_id: Option<i64>) -> Result<bool, StoreError>;
    /// The name of the topic with this number, if that topic exists now (topic numbers are
    /// kept per name, forever: a topic deleted and made again has its old number).
    async fn topic_by_num(&self, num: i64) -> Result<Option<String>, StoreError>;

    // ----- webhook outbox -----

    /// Stores deliveries, pending and due at once, in one transaction; their seqs, in order.
    async fn webhook_insert(&self, deliveries: &[NewDelivery<'_>]) -> Result<Vec<i64>, StoreError>;
    /// Stores one delivery and, when no earlier delivery of its endpoint and ordering is
    /// waiting, claims it for `owner` until `lease_until_ms` (its first attempt counted), so
    /// the caller can send it at once. Returns its seq and whether it was claimed (if not, it
    /// is pending and the worker sends it in turn).
    async fn webhook_insert_claimed(
        &self,
        delivery: &NewDelivery<'_>,
        owner: &str,
        lease_until_ms: i64,
    ) -> Result<(i64, bool), StoreError>;
    /// Claims up to `limit` deliveries for `owner` until `lease_until_ms`: those due
    /// (`pending` from `next_at`, or `sending` under an expired lease) that have no earlier
    /// delivery of the same endpoint and ordering still `pending` or `sending` (an empty
    /// ordering orders nothing), so at most one of each ordering. Oldest first; each claim
    /// counts an attempt.
    async fn webhook_claim(
        &self,
        owner: &str,
        now_ms: i64,
        lease_until_ms: i64,
        limit: u32,
    ) -> Result<Vec<DeliveryRow>, StoreError>;
    /// Records how `owner`'s attempts ended, in one transaction, each only while `owner`
    /// still holds its lease (the delivery is `sending`, leased to `owner`); an attempt row for
    /// each outcome but `Released`, numbered by the delivery's `attempts`.
    async fn webhook_settle(
        &self,
        owner: &str,
        outcomes: &[DeliveryOutcome],
        now_ms: i64,
    ) -> Result<(), StoreError>;
    /// A delivery by public id.
    async fn webhook_delivery(&self, id: &str) -> Result<Option<DeliveryRow>, StoreError>;
    /// Deliveries, newest first, as `filter` says.
    async fn webhook_deliveries(
        &self,
        filter: &DeliveryFilter,
    ) -> Result<Vec<DeliveryRow>, StoreError>;
    /// The attempts of these deliveries, by delivery then attempt.
    async fn webhook_attempts(&self, seqs: &[i64]) -> Result<Vec<AttemptRow>, StoreError>;
    /// When the next delivery is due (milliseconds), if any is waiting: the earliest `next_at`
    /// of a pending delivery that no earlier delivery of its endpoint and ordering holds back,
    /// or the lease end of one being sent. (One held back is due when the one before it is done,
    /// whatever its own `next_at`.)
    async fn webhook_next_due(&self) -> Result<Option<i64>, StoreError>;
    /// Deletes delivered and failed deliveries (with their attempts) stored before
    /// `before_ms`; how many.
    async fn webhook_purge(&self, before_ms: i64) -> Result<u64, StoreError>;
}
