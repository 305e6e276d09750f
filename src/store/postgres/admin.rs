//! [`AdminStore`] on PostgreSQL.

use async_trait::async_trait;

use super::PostgresBackend;
use crate::store::StoreError;
use crate::store::admin::{AdminSession, AdminStore};

#[async_trait]
impl AdminStore for PostgresBackend {
    async fn admin_session_insert(&self, s: &AdminSession) -> Result<(), StoreError> {
        self.tracked(async {
            sqlx::query(
                "INSERT INTO admin_sessions (id_hash, via, created_at, expires_at) \
                 VALUES ($1, $2, $3, $4)",
            )
            .bind(&s.id_hash)
            .bind(&s.via)
            .bind(s.created_at)
            .bind(s.expires_at)
            .execute(&self.pool)
            .await?;
            Ok(())
        })
        .await
    }

    async fn admin_session(
        &self,
        id_hash: &str,
        now: i64,
    ) -> Result<Option<AdminSession>, StoreError> {
        Ok(sqlx::query_as(
            "SELECT id_hash, via, created_at, expires_at FROM admin_sessions \
             WHERE id_hash = $1 AND expires_at > $2",
        )
        .bind(id_hash)
        .bind(now)
        .fetch_optional(&self.pool)
        .await?)
    }

    async fn admin_session_delete(&self, id_hash: &str) -> Result<bool, StoreError> {
        self.tracked(async {
            let n = sqlx::query("DELETE FROM admin_sessions WHERE id_hash = $1")
                .bind(id_hash)
                .execute(&self.pool)
                .await?
                .rows_affected();
            Ok(n > 0)
        })
        .await
    }

    async fn admin_sessions_clear(&self) -> Result<u64, StoreError> {
        self.tracked(async {
            Ok(sqlx::query("DELETE FROM admin_sessions")
                .execute(&self.pool)
                .await?
                .rows_affected())
        })
        .await
    }

    async fn admin_link_insert(
        &self,
        token_hash: &str,
        created_at: i64,
        expires_at: i64,
    ) -> Result<(), StoreError> {
        self.tracked(async {
            sqlx::query(
                "INSERT INTO admin_links (token_hash, created_at, expires_at) VALUES ($1, $2, $3)",
            )
            .bind(token_hash)
            .bind(created_at)
            .bind(expires_at)
            .execute(&self.pool)
            .await?;
            Ok(())
        })
        .await
    }

    async fn admin_link_use(&self, token_hash: &str, now: i64) -> Result<bool, StoreError> {
        self.tracked(async {
            // One statement: the check and the mark cannot be split by another process.
            let n = sqlx::query(
                "UPDATE admin_links SET used_at = $2 \
                 WHERE token_hash = $1 AND used_at IS NULL AND expires_at > $2",
            )
            .bind(token_hash)
            .bind(now)
            .execute(&self.pool)
            .await?
            .rows_affected();
            Ok(n == 1)
        })
        .await
    }

    async fn admin_purge(&self, now: i64) -> Result<u64, StoreError> {
        self.tracked(async {
            let sessions = sqlx::query("DELETE FROM admin_sessions WHERE expires_at <= $1")
                .bind(now)
                .execute(&self.pool)
                .await?
                .rows_affected();
            let links = sqlx::query("DELETE FROM admin_links WHERE expires_at <= $1")
                .bind(now)
                .execute(&self.pool)
                .await?
                .rows_affected();
            Ok(sessions + links)
        })
        .await
    }
}
