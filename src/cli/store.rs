//! `huixin store copy` and `huixin store seed`: the database itself, as a whole.

use std::process::ExitCode;

use clap::{Args, Subcommand};

use super::CliError;
use crate::config::Config;
use crate::store::Store;
use crate::store::copy::{self, Summary};
use crate::store::seed;

/// `huixin store …`.
#[derive(Debug, Subcommand)]
pub enum StoreCommand {
    /// Copy an SQLite database into PostgreSQL: every table but the live processes, ids kept.
    /// Rows the target has already are kept as they are, so running it again copies only
    /// what is missing. Stop the servers on the source first.
    Copy(CopyArgs),
    /// Fill a database with made-up traffic to try the console on (and benchmark it):
    /// followers, topics, bindings, a month of the inbound log, pushes. Refuses a database
    /// that has followers unless --force.
    Seed(SeedArgs),
}

/// `huixin store seed`.
#[derive(Debug, Args)]
pub struct SeedArgs {
    /// The database to fill (default: [storage] url).
    #[arg(long, value_name = "URL")]
    pub url: Option<String>,
    /// Followers to make.
    #[arg(long, default_value_t = 100_000, value_name = "N")]
    pub followers: u64,
    /// Rows of the inbound log to make.
    #[arg(long, default_value_t = 1_000_000, value_name = "N")]
    pub log_rows: u64,
    /// Pushes to make, each to a few followers.
    #[arg(long, default_value_t = 10_000, value_name = "N")]
    pub pushes: u64,
    /// Days the traffic is spread over, ending now.
    #[arg(long, default_value_t = 30, value_name = "N")]
    pub days: u32,
    /// The random generator's seed (the same seed makes the same traffic).
    #[arg(long, default_value_t = 1)]
    pub seed: u64,
    /// Seed a database that has followers already.
    #[arg(long)]
    pub force: bool,
}

/// `huixin store copy`.
#[derive(Debug, Args)]
pub struct CopyArgs {
    /// The SQLite database to copy, `sqlite://PATH` (default: [storage] url, when it is
    /// SQLite).
    #[arg(long, value_name = "URL")]
    pub from: Option<String>,
    /// The PostgreSQL database to copy into, `postgres://USER@HOST/DATABASE` (it must exist;
    /// huixin creates its tables). The password may come from PGPASSWORD or ~/.pgpass.
    #[arg(long, value_name = "URL")]
    pub to: String,
}

/// Runs `huixin store …`.
pub async fn run(config: &Config, cmd: StoreCommand) -> Result<ExitCode, CliError> {
    match cmd {
        StoreCommand::Copy(args) => {
            let from = match args.from {
                Some(from) => from,
                None if config.storage.url.starts_with("sqlite:") => config.storage.url.clone(),
                None => {
                    return Err(CliError::Usage(format!(
                        "[storage] url is {}, not SQLite: pass --from sqlite://PATH",
                        copy::redacted(&config.storage.url)
                    )));
                }
            };
            let summary = copy::copy(&from, &args.to).await?;
            print!("{}", report(&summary));
            println!(
                "copied {} to {}",
                copy::redacted(&from),
                copy::redacted(&args.to)
            );
            if summary.serving > 0 {
                eprintln!(
                    "warning: {} huixin process(es) were serving from {} during the copy; what \
                     they wrote since is not in the target: stop them and run the copy again",
                    summary.serving,
                    copy::redacted(&from)
                );
            }
            Ok(ExitCode::SUCCESS)
        }
        StoreCommand::Seed(args) => seed(config, args).await,
    }
}

/// Runs `huixin store seed`.
async fn seed(config: &Config, args: SeedArgs) -> Result<ExitCode, CliError> {
    let (url, store) = match args.url {
        Some(url) => {
            let store = Store::open(&url).await?;
            (url, store)
        }
        None => (
            config.storage.url.clone(),
            Store::open_config(&config.storage).await?,
        ),
    };
    let options = seed::Options {
        followers: args.followers,
        log_rows: args.log_rows,
        pushes: args.pushes,
        days: args.days,
        force: args.force,
        seed: args.seed,
    };
    let seeded = seed::seed(&store, &options).await.map_err(|e| match e {
        seed::SeedError::Store(e) => CliError::Store(e),
        refused => CliError::Usage(refused.to_string()),
    })?;
    println!(
        "seeded {}: {} followers, {} topic memberships, {} bindings, {} log rows, {} pushes \
         to {} recipients, in {:.1} s",
        copy::redacted(&url),
        seeded.followers,
        seeded.members,
        seeded.bindings,
        seeded.log_rows,
        seeded.pushes,
        seeded.recipients,
        seeded.took.as_secs_f64()
    );
    Ok(ExitCode::SUCCESS)
}

/// One aligned line per table, then the totals:
/// `followers        1200 read    1200 copied       0 already there`.
pub fn report(summary: &Summary) -> String {
    let name = summary
        .tables
        .iter()
        .map(|t| t.table.len())
        .max()
        .unwrap_or(0)
        .max("total".len());
    let width = summary.read().to_string().len();
    let line = |label: &str, read: u64, inserted: u64, there: u64| {
        format!(
            "{label:<name$}  {read:>width$} read  {inserted:>width$} copied  {there:>width$} already there\n"
        )
    };
    let mut out = String::new();
    for t in &summary.tables {
        out.push_str(&line(t.table, t.read, t.inserted, t.already_there()));
    }
    out.push_str(&line(
        "total",
        summary.read(),
        summary.inserted(),
        summary.already_there(),
    ));
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::copy::Copied;

    #[test]
    fn report_aligns_columns() {
        let summary = Summary {
            tables: vec![
                Copied {
                    table: "followers",
                    read: 1200,
                    inserted: 1200,
                },
                Copied {
                    table: "push_recipients",
                    read: 7,
                    inserted: 5,
                },
            ],
            serving: 0,
        };
        assert_eq!(
            report(&summary),
            "followers        1200 read  1200 copied     0 already there\n\
             push_recipients     7 read     5 copied     2 already there\n\
             total            1207 read  1205 copied     2 already there\n"
        );
    }
}
