//! `huixin rules check | test | init`.

use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;

use clap::{Args, Parser, Subcommand};

use super::CliError;
use crate::config::Config;
use crate::outbound;
use crate::rules::context::Services;
use crate::rules::{self, Rules};
use crate::simulator::{Header, MessageSpec};
use crate::store::Store;
use crate::wechat::Message;

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

/// The made-up message for `huixin rules test <kind> [value]`, built like `huixin simulate`'s.
fn test_spec(kind: &str, value: Option<&str>) -> Result<MessageSpec, CliError> {
    let kind_lc = kind.to_ascii_lowercase();
    let mut argv: Vec<String> = vec!["rules-test".into()];
    let with = |flag: &str| -> Vec<String> {
        match value {
            Some(v) => vec![kind_lc.clone(), flag.into(), v.into()],
            None => vec![kind_lc.clone()],
        }
    };
    argv.extend(match kind_lc.as_str() {
        "text" => vec!["text".into(), value.unwrap_or_default().into()],
        "image" | "voice" | "video" | "shortvideo" => with("--media-id"),
        "location" => with("--label"),
        "link" => with("--url"),
        "subscribe" => with("--scene"),
        "unsubscribe" => vec!["unsubscribe".into()],
        "scan" | "click" | "view" => match value {
            Some(v) => vec![kind_lc.clone(), v.into()],
            None => {
                return Err(CliError::Usage(format!(
                    "`{kind}` needs a value (the scene, key or URL)"
                )));
            }
        },
        _ => {
            let mut v = vec!["event".into(), kind.into()];
            if let Some(key) = value {
                v.extend(["--key".into(), key.into()]);
            }
            v
        }
    });
    #[derive(Parser)]
    struct SpecOnly {
        #[command(subcommand)]
        spec: MessageSpec,
    }
    SpecOnly::try_parse_from(argv)
        .map(|s| s.spec)
        .map_err(|e| CliError::Usage(e.to_string()))
}

async fn rules_test(config: &Config, args: RulesTestArgs) -> Result<ExitCode, CliError> {
    let spec = test_spec(&args.kind, args.value.as_deref())?;
    let xml = spec.to_xml(&Header::new("gh_huixin_rules_test", &args.from))?;
    let message = Message::parse(xml.as_bytes())
        .map_err(|e| CliError::Usage(format!("cannot build that message: {e}")))?;
    let mut rules_config = config.rules.clone();
    if let Some(dir) = args.dir {
        rules_config.dir = dir;
    }
    let rules = Rules::open(&rules_config, crate::app::script_modules())?;
    // A throwaway store unless asked otherwise: trying rules must not touch real sessions.
    let scratch = Scratch::new()?;
    let store = if args.use_store {
        Store::open_config(&config.storage).await?
    } else {
        Store::open(&format!(
            "sqlite://{}",
            scratch.0.join("rules-test.db").display()
        ))
        .await?
    };
    // Sends are shown, not made.
    let dry_run = outbound::script::DryRun::default();
    let mut extensions = axum::http::Extensions::new();
    extensions.insert(dry_run.clone());
    let services = Services {
        store: Some(store),
        extensions: Arc::new(extensions),
        ..Services::default()
    };
    println!(
        "rules: {} rules from {}",
        rules.current().rules.len(),
        rules.current().source
    );
    println!("→ {} from {}", describe_message(&message), args.from);
    let message = Arc::new(message);
    let outcome = rules.run(Arc::clone(&message), services).await;
    for sent in dry_run.sent() {
        println!("⇢ would send {sent}");
    }
    if let Some(error) = &outcome.error {
        println!("✗ {error}");
    }
    for line in outcome.reply.describe().lines() {
        println!("← {line}");
    }
    // What WeChat would receive differs when rendering adjusts the reply.
    for note in outcome.reply.render_for(&message, 0).notes {
        println!("  (sent to WeChat adjusted: {note})");
    }
    match &outcome.replied_by {
        Some(origin) => println!("  (replied by {origin})"),
        None if outcome.error.is_none() => println!("  (no rule replied)"),
        None => println!("  (the [rules] fallback)"),
    }
    Ok(if outcome.error.is_some() {
        ExitCode::FAILURE
    } else {
        ExitCode::SUCCESS
    })
}

fn describe_message(m: &Message) -> String {
    match (m.content(), m.event_name(), m.event_key()) {
        (Some(text), _, _) => format!("text {text:?}"),
        (None, Some(event), Some(key)) => format!("event {event} (key {key:?})"),
        (None, Some(event), None) => format!("event {event}"),
        _ => m.msg_type().to_owned(),
    }
}

/// A fresh folder under the system's temp dir, removed when dropped (also on an error).
struct Scratch(PathBuf);

impl Scratch {
    fn new() -> Result<Self, CliError> {
        let dir = std::env::temp_dir().join(format!(
            "huixin-rules-test-{}-{:08x}",
            std::process::id(),
            rand::random::<u32>()
        ));
        std::fs::create_dir_all(&dir)
            .map_err(|e| CliError::Usage(format!("cannot create {}: {e}", dir.display())))?;
        Ok(Self(dir))
    }
}

impl Drop for Scratch {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}
