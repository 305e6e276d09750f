//! The migrations that build each backend's schema, compiled into the binary: SQLite's
//! (`src/store/migrations/`) and PostgreSQL's (`src/store/postgres/migrations/`), run at
//! start. A file is `NNNN_description.sql`; its checksum is the SHA-384 of the file, as sqlx
//! records it, so every database migrated by an earlier build agrees. A new migration is a new
//! file and a new line below (a test checks that every file is listed).

use std::borrow::Cow;
use std::sync::LazyLock;

use sqlx::SqlSafeStr;
use sqlx::migrate::{Migration, MigrationType, Migrator};

/// `(file name, contents)` of each named file in `dir` (relative to this file).
macro_rules! files {
    ($dir:literal: $($file:literal)*) => {
        &[$(($file, include_str!(concat!($dir, "/", $file)))),*]
    };
}

/// SQLite's migrations.
pub static SQLITE: LazyLock<Migrator> = LazyLock::new(|| {
    migrator(files!("migrations":
        "0001_meta.sql"
        "0002_bot.sql"
        "0003_access_tokens.sql"
        "0004_push.sql"
        "0005_dedup_reply_time.sql"
        "0006_replay_guard.sql"
        "0007_push_keys_hash_only.sql"
        "0008_push_due_indexes.sql"
        "0009_processes.sql"
        "0010_rate_limits.sql"
        "0011_apps.sql"
        "0012_admin.sql"
        "0013_console.sql"
    ))
});

/// PostgreSQL's migrations.
pub static POSTGRES: LazyLock<Migrator> = LazyLock::new(|| {
    migrator(files!("postgres/migrations":
        "0001_schema.sql"
        "0002_rate_limits.sql"
        "0003_apps.sql"
        "0004_admin.sql"
        "0005_console.sql"
    ))
});

/// The migrator of `files`, each read as sqlx reads a migrations directory: the version and
/// description from the name, `-- no-transaction` on the first line to run outside one.
fn migrator(files: &[(&str, &'static str)]) -> Migrator {
    Migrator::with_migrations(
        files
            .iter()
            .map(|&(file, sql)| {
                let name = file.strip_suffix(".sql").unwrap_or(file);
                let (version, description) = name.split_once('_').unwrap_or((name, ""));
                Migration::new(
                    version.parse().unwrap_or_default(),
                    Cow::Owned(description.replace('_', " ")),
                    MigrationType::Simple,
                    sql.into_sql_str(),
                    sql.starts_with("-- no-transaction"),
                )
            })
            .collect(),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Every `.sql` file of `dir` (from the crate's root), sorted.
    fn on_disk(dir: &str) -> Vec<String> {
        let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join(dir);
        let mut names: Vec<String> = std::fs::read_dir(dir)
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .filter(|n| n.ends_with(".sql"))
            .collect();
        names.sort();
        names
    }

    #[test]
    fn every_migration_file_is_listed_in_order() {
        for (migrator, dir) in [
            (&*SQLITE, "src/store/migrations"),
            (&*POSTGRES, "src/store/postgres/migrations"),
        ] {
            let files = on_disk(dir);
            assert_eq!(migrator.iter().count(), files.len(), "{dir}: {files:?}");
            for (i, (m, file)) in migrator.iter().zip(&files).enumerate() {
                assert_eq!(m.version, i64::try_from(i).unwrap() + 1, "{dir}/{file}");
                assert!(file.starts_with(&format!("{:04}_", m.version)), "{file}");
                assert!(!m.description.is_empty(), "{file}");
            }
        }
    }

    #[test]
    fn checksums_and_descriptions_are_sqlx_s() {
        // As recorded by databases that sqlx's `migrate!` built (the SHA-384 of the file).
        let first = SQLITE.iter().next().unwrap();
        assert_eq!(first.description, "meta");
        assert_eq!(
            hex::encode_upper(&first.checksum),
            "91BA7ACCF8E43DAA5ECB64051994F99544C29159E8E6383FE9B79186C418984E\
             ECC84477BA6CC486B9ACC823445D9984"
        );
        let third = SQLITE.iter().nth(2).unwrap();
        assert_eq!(third.description, "access tokens");
        assert_eq!(
            hex::encode_upper(&third.checksum),
            "70DE45C6B796393BB7816094CD2F5F4E89B065039ED4DE2A4F8415A9375A1147\
             456E7CA65D1963DFFBBC0FD857345786"
        );
    }
}
