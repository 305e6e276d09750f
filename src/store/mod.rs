//! Persistent state, through sqlx with runtime queries (the crate builds without a database).
//! The default backend is an SQLite file in WAL mode with a busy timeout, so several huixin
//! processes on one host can share it. Migrations are numbered SQL files under
//! `src/store/migrations`, embedded in the binary and run at start.

use std::str::FromStr;
use std::time::Duration;

use sqlx::migrate::Migrator;
use sqlx::sqlite::{
    SqliteConnectOptions, SqliteJournalMode, SqlitePool, SqlitePoolOptions, SqliteSynchronous,
};

use crate::wechat::signature::unix_now;

static MIGRATOR: Migrator = sqlx::migrate!("src/store/migrations");

/// The meta key holding a generated callback token.
const GENERATED_TOKEN: &str = "generated_token";

/// Why a storage operation failed. At the HTTP edge these are our own failures: the callback
/// answers `success` and logs them.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// `[storage] url` is not a URL huixin can open.
    #[error("unsupported [storage] url {0:?}: use sqlite://PATH")]
    UnsupportedUrl(String),
    /// The database refused an operation.
    #[error("database error: {0}")]
    Database(#[from] sqlx::Error),
    /// A migration failed.
    #[error("migration failed: {0}")]
    Migrate(#[from] sqlx::migrate::MigrateError),
}

/// A handle on the database. Cheap to clone.
#[derive(Debug, Clone)]
pub struct Store {
    pool: SqlitePool,
}

impl Store {
    /// Opens (creating if needed) the database at `url` and runs pending migrations.
    pub async fn open(url: &str) -> Result<Self, StoreError> {
        if !url.starts_with("sqlite:") {
            return Err(StoreError::UnsupportedUrl(url.to_owned()));
        }
        let options = SqliteConnectOptions::from_str(url)?
            .create_if_missing(true)
            .journal_mode(SqliteJournalMode::Wal)
            .synchronous(SqliteSynchronous::Normal)
            .busy_timeout(Duration::from_secs(5))
            .foreign_keys(true);
        let pool = SqlitePoolOptions::new()
            .max_connections(8)
            .connect_with(options)
            .await?;
        MIGRATOR.run(&pool).await?;
        Ok(Self { pool })
    }

    /// Checks the database answers (for `/healthz`).
    pub async fn ping(&self) -> Result<(), StoreError> {
        sqlx::query("SELECT 1").execute(&self.pool).await?;
        Ok(())
    }

    /// A value from huixin's settings table.
    pub async fn meta_get(&self, key: &str) -> Result<Option<String>, StoreError> {
        let value = sqlx::query_scalar::<_, String>("SELECT value FROM huixin_meta WHERE key = ?")
            .bind(key)
            .fetch_optional(&self.pool)
            .await?;
        Ok(value)
    }

    /// Stores `value` under `key` unless a value is there already; returns the value that
    /// is stored afterwards. Two processes racing get the same answer.
    pub async fn meta_get_or_insert(&self, key: &str, value: &str) -> Result<String, StoreError> {
        sqlx::query("INSERT OR IGNORE INTO huixin_meta (key, value, updated_at) VALUES (?, ?, ?)")
            .bind(key)
            .bind(value)
            .bind(unix_now())
            .execute(&self.pool)
            .await?;
        let stored = self.meta_get(key).await?;
        Ok(stored.unwrap_or_else(|| value.to_owned()))
    }

    /// The token generated on first start, if any.
    pub async fn generated_token(&self) -> Result<Option<String>, StoreError> {
        self.meta_get(GENERATED_TOKEN).await
    }

    /// The generated token, creating it now if there is none. Returns `(token, created)`.
    pub async fn generated_token_or_create(&self) -> Result<(String, bool), StoreError> {
        if let Some(token) = self.generated_token().await? {
            return Ok((token, false));
        }
        let fresh = generate_token();
        let stored = self.meta_get_or_insert(GENERATED_TOKEN, &fresh).await?;
        let created = stored == fresh;
        Ok((stored, created))
    }

    /// The connection pool, for modules that own their own tables.
    pub fn pool(&self) -> &SqlitePool {
        &self.pool
    }
}

/// A fresh 32-character alphanumeric token (the longest WeChat accepts).
pub fn generate_token() -> String {
    use rand::RngExt;
    use rand::distr::Alphanumeric;
    rand::rng()
        .sample_iter(Alphanumeric)
        .take(32)
        .map(char::from)
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn token_is_generated_once_and_kept() {
        let dir = tempfile::tempdir().unwrap();
        let url = format!("sqlite://{}", dir.path().join("t.db").display());
        let store = Store::open(&url).await.unwrap();
        let (first, created) = store.generated_token_or_create().await.unwrap();
        assert!(created);
        assert!(crate::config::valid_token(&first));
        drop(store);
        let store = Store::open(&url).await.unwrap();
        let (again, created) = store.generated_token_or_create().await.unwrap();
        assert!(!created);
        assert_eq!(first, again);
    }

    #[tokio::test]
    async fn refuses_unknown_schemes() {
        assert!(matches!(
            Store::open("mysql://x").await,
            Err(StoreError::UnsupportedUrl(_))
        ));
    }
}
