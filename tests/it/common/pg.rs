//! PostgreSQL for tests. `HUIXIN_TEST_POSTGRES` names a server where the tests may create
//! databases (`scripts/test.sh` starts a throwaway one with `scripts/postgres.sh` when
//! PostgreSQL is installed); each test gets a fresh database of its own, dropped when the
//! [`TestDb`] is. Without the variable the PostgreSQL tests print that they were skipped, and
//! pass; with `HUIXIN_REQUIRE_POSTGRES` set (CI sets it) they fail instead.

#![allow(dead_code)]

use sqlx::Connection;

/// Where the server is.
pub const ENV: &str = "HUIXIN_TEST_POSTGRES";
/// Set (to anything) when a missing server must fail the tests.
pub const REQUIRE: &str = "HUIXIN_REQUIRE_POSTGRES";

/// A fresh database, dropped (with its connections) when this is.
pub struct TestDb {
    admin: String,
    name: String,
    url: String,
}

impl TestDb {
    /// `postgres://…/NAME` of the database.
    pub fn url(&self) -> &str {
        &self.url
    }
}

impl std::fmt::Debug for TestDb {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TestDb").field("url", &self.url).finish()
    }
}

/// The server's URL, or `None` (having said the test is skipped) when none is configured.
/// Panics when none is configured and [`REQUIRE`] is set.
pub fn server(test: &str) -> Option<String> {
    match std::env::var(ENV) {
        Ok(url) if !url.trim().is_empty() => Some(url.trim().to_owned()),
        _ if std::env::var_os(REQUIRE).is_some() => {
            panic!(
                "{test}: {REQUIRE} is set but {ENV} is not: no PostgreSQL server to test against"
            )
        }
        _ => {
            eprintln!(
                "SKIPPED {test}: no PostgreSQL server ({ENV} is not set; scripts/test.sh starts \
                 one with scripts/postgres.sh when Debian's postgresql package is installed)"
            );
            None
        }
    }
}

/// A fresh database on the configured server; `None` when there is none (see [`server`]).
pub async fn database(test: &str) -> Option<TestDb> {
    let admin = server(test)?;
    let name = format!("huixin_t_{}_{:08x}", std::process::id(), rand_suffix());
    let mut conn = sqlx::PgConnection::connect(&admin)
        .await
        .unwrap_or_else(|e| panic!("{test}: cannot connect to {ENV}={admin}: {e}"));
    sqlx::query(sqlx::AssertSqlSafe(format!("CREATE DATABASE {name}")))
        .execute(&mut conn)
        .await
        .unwrap_or_else(|e| panic!("{test}: cannot create a database on {admin}: {e}"));
    let _ = conn.close().await;
    let mut url = reqwest::Url::parse(&admin).expect("HUIXIN_TEST_POSTGRES is a URL");
    url.set_path(&format!("/{name}"));
    Some(TestDb {
        admin,
        name,
        url: url.to_string(),
    })
}

/// [`database`] from synchronous code (tests that drive `huixin` processes).
pub fn database_blocking(test: &str) -> Option<TestDb> {
    let test = test.to_owned();
    std::thread::spawn(move || {
        tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .expect("runtime")
            .block_on(database(&test))
    })
    .join()
    .expect("creating a test database")
}

fn rand_suffix() -> u32 {
    use std::hash::{BuildHasher, Hasher};
    let mut h = std::collections::hash_map::RandomState::new().build_hasher();
    h.write_u128(
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_nanos()),
    );
    h.finish() as u32
}

impl Drop for TestDb {
    fn drop(&mut self) {
        let admin = self.admin.clone();
        let name = self.name.clone();
        // Its own thread and runtime: a drop may run inside a runtime, or outside any.
        let _ = std::thread::spawn(move || {
            let Ok(rt) = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
            else {
                return;
            };
            rt.block_on(async {
                if let Ok(mut conn) = sqlx::PgConnection::connect(&admin).await {
                    let _ = sqlx::query(sqlx::AssertSqlSafe(format!(
                        "DROP DATABASE IF EXISTS {name} WITH (FORCE)"
                    )))
                    .execute(&mut conn)
                    .await;
                    let _ = conn.close().await;
                }
            });
        })
        .join();
    }
}
