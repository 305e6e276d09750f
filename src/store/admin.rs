//! The operator console's state ([`AdminStore`]): signed-in sessions and one-time login
//! links, shared by every process on the database (a browser signed in through one process is
//! signed in on all of them). Only SHA-256 hashes of the secrets are stored.

use async_trait::async_trait;

use super::StoreError;

from_row! {
    /// A signed-in console session.
    #[derive(Debug, Clone, PartialEq, Eq)]
    pub struct AdminSession {
        /// SHA-256 (hex) of the cookie's secret.
        pub id_hash: String,
        /// How it signed in: `password` or `link`.
        pub via: String,
        /// When (Unix seconds).
        pub created_at: i64,
        /// When it ends (Unix seconds).
        pub expires_at: i64,
    }
}

/// The console's sessions and login links.
#[async_trait]
pub trait AdminStore {
    /// Stores a new session.
    async fn admin_session_insert(&self, session: &AdminSession) -> Result<(), StoreError>;
    /// The session with this hash, unless it has expired by `now`.
    async fn admin_session(
        &self,
        id_hash: &str,
        now: i64,
    ) -> Result<Option<AdminSession>, StoreError>;
    /// Ends a session (signing out); whether it existed.
    async fn admin_session_delete(&self, id_hash: &str) -> Result<bool, StoreError>;
    /// Ends every session; how many there were.
    async fn admin_sessions_clear(&self) -> Result<u64, StoreError>;
    /// Stores a login link's hash, usable until `expires_at`.
    async fn admin_link_insert(
        &self,
        token_hash: &str,
        created_at: i64,
        expires_at: i64,
    ) -> Result<(), StoreError>;
    /// Uses a login link: true exactly once per link, and only before it expires. Two
    /// processes using the same link at once: one of them gets true.
    async fn admin_link_use(&self, token_hash: &str, now: i64) -> Result<bool, StoreError>;
    /// Deletes expired sessions and links; how many rows went.
    async fn admin_purge(&self, now: i64) -> Result<u64, StoreError>;
}
