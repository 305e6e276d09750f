//! `huixin store copy`: the database itself, as a whole.

use std::process::ExitCode;

use clap::{Args, Subcommand};

use super::CliError;
use crate::config::Config;
use crate::store::copy::{self, Summary};

/// `huixin store …`.
#[derive(Debug, Subcommand)]
pub enum StoreCommand {
    /// Copy an SQLite database into PostgreSQL: every table but the live processes, ids kept.
    /// Rows the target has already are kept as they are, so running it again copies only
    /// what is missing. Stop the servers on the source first.
    Copy(CopyArgs),
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
    }
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
