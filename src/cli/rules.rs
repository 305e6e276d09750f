//! `huixin rules check | test | init`.

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Args, Subcommand};

use super::CliError;
use crate::config::Config;
use crate::rules::{self, Rules};
use crate::simulator::trial;
use crate::store::Store;

/// `huixin rules …`.
#[derive(Debug, Subcommand)]
pub enum RulesCommand {
    /// Compile every rule file and report each error with its file and line (exit 1 on any).
    Check {
        /// The rules folder (default: [rules] dir).
        #[arg(long, value_name = "DIR")]
        dir: Option<PathBuf>,
    },
    /// Run the rules offline on a made-up message and print the reply.
    Test(RulesTestArgs),
    /// Write the shipped rules into the rules folder (existing files are kept).
    Init {
        /// The folder (default: [rules] dir).
        dir: Option<PathBuf>,
        /// Overwrite files that exist.
        #[arg(long)]
        force: bool,
    },
}

/// `huixin rules test`.
#[derive(Debug, Args)]
pub struct RulesTestArgs {
    /// The message type or event: text, image, voice, video, shortvideo, location, link,
    /// subscribe, unsubscribe, scan, click, view, or any other event name.
    pub kind: String,
    /// The text (text), media id (image, voice, video), label (location), URL (link, view),
    /// scene (subscribe, scan) or key (click and other events).
    pub value: Option<String>,
    /// The sender's OpenID.
    #[arg(long, default_value = "o_huixin_rules_test", value_name = "OPENID")]
    pub from: String,
    /// The rules folder (default: [rules] dir).
    #[arg(long, value_name = "DIR")]
    pub dir: Option<PathBuf>,
    /// Use the configured store (real sessions and followers) instead of a throwaway one.
    #[arg(long)]
    pub use_store: bool,
}

/// Runs `huixin rules …`.
pub async fn run(config: &Config, cmd: RulesCommand) -> Result<ExitCode, CliError> {
    match cmd {
        RulesCommand::Check { dir } => {
            let dir = dir.unwrap_or_else(|| config.rules.dir.clone());
            let loader = rules::loader(&config.rules, crate::app::script_modules())?;
            if !dir.is_dir() {
                return Err(CliError::Usage(format!(
                    "{} is not a folder (`huixin rules init` writes the shipped rules there)",
                    dir.display()
                )));
            }
            match loader.load_dir(&dir) {
                Ok(set) => {
                    for f in &set.files {
                        println!("{}: {} rules, {} before hooks", f.name, f.rules, f.hooks);
                    }
                    for rule in &set.rules {
                        println!("  {}  when {}", rule.origin, rule.conditions);
                    }
                    println!("ok: {} rules in {} files", set.rules.len(), set.files.len());
                    Ok(ExitCode::SUCCESS)
                }
                Err(errors) => {
                    for e in &errors {
                        eprintln!("{e}");
                    }
                    eprintln!("{} error(s)", errors.len());
                    Ok(ExitCode::FAILURE)
                }
            }
        }
        RulesCommand::Test(args) => rules_test(config, args).await,
        RulesCommand::Init { dir, force } => {
            let dir = dir.unwrap_or_else(|| config.rules.dir.clone());
            let written = rules::builtin::write_to(&dir, force)
                .map_err(|e| CliError::Usage(format!("cannot write {}: {e}", dir.display())))?;
            for path in &written {
                println!("wrote {}", path.display());
            }
            if written.is_empty() {
                println!(
                    "{} already has every shipped file (--force overwrites)",
                    dir.display()
                );
            }
            Ok(ExitCode::SUCCESS)
        }
    }
}

async fn rules_test(config: &Config, args: RulesTestArgs) -> Result<ExitCode, CliError> {
    let spec = trial::spec_for(&args.kind, args.value.as_deref()).map_err(CliError::Usage)?;
    let message = trial::message(&spec, &args.from).map_err(CliError::Usage)?;
    let mut rules_config = config.rules.clone();
    if let Some(dir) = args.dir {
        rules_config.dir = dir;
    }
    let rules = Rules::open(&rules_config, crate::app::script_modules())?;
    // A throwaway store unless asked otherwise: trying rules must not touch real sessions.
    let (_scratch, store) = if args.use_store {
        (None, Store::open_config(&config.storage).await?)
    } else {
        let scratch = trial::Scratch::open().await?;
        let store = scratch.store().clone();
        (Some(scratch), store)
    };
    println!(
        "rules: {} rules from {}",
        rules.current().rules.len(),
        rules.current().source
    );
    println!("→ {} from {}", trial::describe(&message), args.from);
    let result = trial::run(&rules, message, Some(store)).await;
    for sent in &result.sends {
        println!("⇢ would send {sent}");
    }
    if let Some(error) = &result.error {
        println!("✗ {error}");
    }
    for line in result.reply.describe().lines() {
        println!("← {line}");
    }
    // What WeChat would receive differs when rendering adjusts the reply.
    for note in &result.notes {
        println!("  (sent to WeChat adjusted: {note})");
    }
    match &result.replied_by {
        Some(origin) => println!("  (replied by {origin})"),
        None if result.error.is_none() => println!("  (no rule replied)"),
        None => println!("  (the [rules] fallback)"),
    }
    Ok(if result.error.is_some() {
        ExitCode::FAILURE
    } else {
        ExitCode::SUCCESS
    })
}
