//! The `huixin` command line: `serve`, `simulate`, `rules`, `token`, `menu`, `qrcode`, `user`,
//! `emulator`. `src/main.rs` only calls [`main`].

use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;
use std::time::Duration;

use clap::{Args, Parser, Subcommand};

mod push_commands;

use crate::bot::pipeline;
use crate::config::{Config, ConfigError};
use crate::emulator;
use crate::outbound::menu::Menu;
use crate::outbound::qrcode::Scene;
use crate::outbound::{self, ApiError};
use crate::push;
use crate::rules::context::Services;
use crate::rules::{self, Rules, RulesError, Source};
use crate::server::{self, ServerError};
use crate::simulator::{Header, MessageSpec, SimError, Simulator};
use crate::store::{Store, StoreError};
use crate::telemetry;
use crate::wechat::signature::unix_now;
use crate::wechat::{Message, Mode};

/// huixin: WeChat Official Account bot framework and push server.
#[derive(Debug, Parser)]
#[command(name = "huixin", version, about, long_about = None)]
pub struct Cli {
    /// Config file (default: ./huixin.toml when present). HUIXIN_* variables and ./.env override it.
    #[arg(
        long,
        short = 'c',
        global = true,
        env = "HUIXIN_CONFIG",
        value_name = "PATH"
    )]
    pub config: Option<PathBuf>,
    /// What to do.
    #[command(subcommand)]
    pub command: Command,
}

/// The subcommands.
#[derive(Debug, Subcommand)]
pub enum Command {
    /// Run the server (callback endpoint, health check).
    Serve,
    /// Play WeChat: send a signed (and, per mode, encrypted) message to a running server and
    /// print its reply.
    Simulate(SimulateArgs),
    /// Print the access token for WeChat's API (shared with running servers through the
    /// database); `--callback` prints the callback token instead.
    Token(TokenArgs),
    /// The custom menu: `set FILE.json`, `get`, `delete`.
    #[command(subcommand)]
    Menu(MenuCommand),
    /// Create a QR code with a scene; prints its ticket and image URL.
    Qrcode(QrcodeArgs),
    /// Print a user's profile (JSON).
    User {
        /// The user's OpenID.
        openid: String,
    },
    /// Run a local WeChat platform to develop and test against (set [wechat] api_base to it).
    Emulator(EmulatorArgs),
    /// Work with the rules: check them, try them on a made-up message, write the shipped ones.
    #[command(subcommand)]
    Rules(RulesCommand),
    /// Push a markdown message through a running server's push API.
    Push(push_commands::PushArgs),
    /// List push keys; `create` and `revoke` them.
    Keys(push_commands::KeysArgs),
    /// List topics; `add`, `remove`, `join`, `leave`, `members`, `qrcode`.
    Topics(push_commands::TopicsArgs),
}

/// `huixin token`.
#[derive(Debug, Args)]
pub struct TokenArgs {
    /// Replace the access token now (a forced refresh: WeChat allows 20 a day).
    #[arg(long)]
    pub refresh: bool,
    /// Print the callback token (configured, or generated on first start) instead.
    #[arg(long, conflicts_with = "refresh")]
    pub callback: bool,
}

/// `huixin menu …`.
#[derive(Debug, Subcommand)]
pub enum MenuCommand {
    /// Replace the menu with the one in FILE (`{"button": [...]}`; `-` reads standard input).
    Set {
        /// The menu, as JSON.
        file: PathBuf,
    },
    /// Print the menu as JSON (the shape `set` reads).
    Get,
    /// Remove the menu.
    Delete,
}

/// `huixin qrcode`.
#[derive(Debug, Args)]
pub struct QrcodeArgs {
    /// The scene: digits make a numeric scene, anything else a string scene.
    #[arg(long, value_name = "SCENE")]
    pub scene: String,
    /// A permanent code (limited to 100,000 per account) instead of a temporary one.
    #[arg(long)]
    pub permanent: bool,
    /// How long a temporary code lives (at most 2592000, 30 days).
    #[arg(long, default_value_t = crate::outbound::qrcode::DEFAULT_EXPIRE_SECONDS, value_name = "N", conflicts_with = "permanent")]
    pub expire_seconds: u32,
    /// Print the answer as JSON (with the image URL as `image_url`).
    #[arg(long)]
    pub json: bool,
}

/// `huixin emulator`.
#[derive(Debug, Args)]
pub struct EmulatorArgs {
    /// Address to listen on (default: [emulator] listen).
    #[arg(long, value_name = "ADDR")]
    pub listen: Option<String>,
    /// The bot's callback URL (default: [emulator] callback_url, else derived from [server]).
    #[arg(long, value_name = "URL")]
    pub callback_url: Option<String>,
}

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

/// `huixin simulate`.
#[derive(Debug, Args)]
#[command(args_conflicts_with_subcommands = false)]
pub struct SimulateArgs {
    /// Callback URL (default: http://<[server] listen><[server] path>).
    #[arg(long, value_name = "URL")]
    pub url: Option<String>,
    /// The follower's OpenID (FromUserName).
    #[arg(long, default_value = "o_huixin_simulated_user", value_name = "OPENID")]
    pub from: String,
    /// The account's original id (ToUserName).
    #[arg(long, default_value = "gh_huixin_simulated", value_name = "GH_ID")]
    pub to: String,
    /// Add a field to the message (repeatable), e.g. `--field NewField=value`.
    #[arg(long = "field", value_name = "NAME=VALUE", value_parser = parse_field)]
    pub fields: Vec<(String, String)>,
    /// Send the identical request this many more times, as WeChat does when a reply is late.
    #[arg(long, default_value_t = 0, value_name = "N")]
    pub retries: u32,
    /// Print the signed request(s) as JSON lines instead of sending them.
    #[arg(long)]
    pub print_request: bool,
    /// With --print-request: this many requests, with consecutive MsgIds.
    #[arg(long, default_value_t = 1, value_name = "N")]
    pub count: u32,
    /// Also print the request XML and the raw response.
    #[arg(long, short)]
    pub verbose: bool,
    /// Check URL verification (GET with echostr) instead of sending a message.
    #[arg(long)]
    pub verify_url: bool,
    /// The message to send.
    #[command(subcommand)]
    pub message: Option<MessageSpec>,
}

fn parse_field(s: &str) -> Result<(String, String), String> {
    match s.split_once('=') {
        Some((name, value)) if !name.is_empty() => Ok((name.to_owned(), value.to_owned())),
        _ => Err(format!("{s:?} is not NAME=VALUE")),
    }
}

/// Everything a command can fail with.
#[derive(Debug, thiserror::Error)]
pub enum CliError {
    /// Configuration could not be loaded.
    #[error(transparent)]
    Config(#[from] ConfigError),
    /// The server failed.
    #[error(transparent)]
    Server(#[from] ServerError),
    /// The store failed.
    #[error(transparent)]
    Store(#[from] StoreError),
    /// The simulation failed.
    #[error(transparent)]
    Simulate(#[from] SimError),
    /// The rules have errors.
    #[error("the rules have errors:\n{0}")]
    Rules(#[from] RulesError),
    /// WeChat's API refused or could not be reached.
    #[error(transparent)]
    Api(#[from] ApiError),
    /// A usage problem, explained.
    #[error("{0}")]
    Usage(String),
}

/// Parses the command line and runs it.
pub fn main() -> ExitCode {
    let cli = Cli::parse();
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("error: cannot start the async runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    match runtime.block_on(run(cli)) {
        Ok(code) => code,
        Err(e) => {
            eprintln!("error: {e}");
            ExitCode::FAILURE
        }
    }
}

/// Runs a parsed command.
pub async fn run(cli: Cli) -> Result<ExitCode, CliError> {
    let config = Config::load(cli.config.as_deref())?;
    telemetry::init(&config.log.level);
    match cli.command {
        Command::Serve => serve(&config).await,
        Command::Rules(cmd) => rules_command(&config, cmd).await,
        Command::Token(args) => token(&config, args).await,
        Command::Menu(cmd) => menu(&config, cmd).await,
        Command::Qrcode(args) => qrcode(&config, args).await,
        Command::User { openid } => {
            let user = api_client(&config).await?.user_info(&openid).await?;
            println!("{}", pretty(&user));
            Ok(ExitCode::SUCCESS)
        }
        Command::Emulator(args) => emulator(&config, args).await,
        Command::Simulate(args) => simulate(&config, args).await,
        Command::Push(args) => push_commands::push(&config, args).await,
        Command::Keys(args) => push_commands::keys(&config, args).await,
        Command::Topics(args) => push_commands::topics(&config, args).await,
    }
}

/// `huixin serve`: the store, the rules (reloaded on change), the configured pipeline, the
/// push APIs and their delivery worker.
async fn serve(config: &Config) -> Result<ExitCode, CliError> {
    let store = Store::open(&config.storage.url).await?;
    let rules = Arc::new(Rules::open(&config.rules, Vec::new())?);
    let pushes = push::Pushes::new(config, store.clone());
    let (late, mut extensions) = outbound::wiring(config, &store);
    let client = extensions.get::<outbound::Client>().cloned();
    extensions.insert(pushes.clone());
    if client.is_some() {
        println!(
            "outbound: late replies and rule sends go through {}",
            config.wechat.api_base
        );
    } else {
        println!(
            "outbound: off ([wechat] app_id and app_secret are not set); late replies are logged"
        );
    }
    let current = rules.current();
    match &current.source {
        Source::Builtin => println!(
            "rules: {} built-in rules ({} does not exist; `huixin rules init` writes editable copies)",
            current.rules.len(),
            config.rules.dir.display()
        ),
        source => println!("rules: {} rules from {source}", current.rules.len()),
    }
    if config.rules.reload {
        rules.spawn_watcher(Duration::from_millis(500));
    }
    let (router, services) = pipeline::layers_with(config, &store, late, extensions).await?;
    let router = push::bot::routes(router, pushes.clone());
    let router = pipeline::with_rules(router, rules, services);
    spawn_pruning(
        store.clone(),
        config.bot.log_retention_days,
        config.push.retention_days,
    );
    let server = server::Server::bind_with_store(config, store, router)
        .await?
        .with_routes(push::api::routes(pushes.clone(), config.server.body_limit));
    if config.server.public_url.is_empty() {
        pushes.set_public_base(&format!("http://{}", server.local_addr()));
    }
    let worker = match client {
        Some(client) if !config.push.template_id.is_empty() => {
            println!(
                "push: API at {}/api/v1/push; deliveries as template {}",
                pushes.public_base(),
                config.push.template_id
            );
            Some(push::deliver::spawn(
                pushes,
                client,
                server::shutdown_signal(),
            ))
        }
        Some(_) => {
            println!("push: off (set [push] template_id to deliver pushes)");
            None
        }
        None => None,
    };
    server.run_until_signal().await?;
    if let Some(worker) = worker {
        // Sends in flight finish (bounded by their own timeouts); unstarted ones are handed back.
        let _ = tokio::time::timeout(Duration::from_secs(35), worker).await;
    }
    Ok(ExitCode::SUCCESS)
}

/// A client for WeChat's API sharing the token of the servers on the same database.
async fn api_client(config: &Config) -> Result<outbound::Client, CliError> {
    let store = Store::open(&config.storage.url).await?;
    Ok(outbound::Client::new(&config.wechat, Some(store))?)
}

fn pretty<T: serde::Serialize>(value: &T) -> String {
    serde_json::to_string_pretty(value).unwrap_or_default()
}

/// `huixin token`: the access token on standard output (for `$(huixin token)`), its expiry on
/// standard error.
async fn token(config: &Config, args: TokenArgs) -> Result<ExitCode, CliError> {
    if args.callback {
        println!("{}", existing_token(config).await?);
        return Ok(ExitCode::SUCCESS);
    }
    let client = api_client(config).await?;
    let token = if args.refresh {
        client.tokens().force_refresh().await?
    } else {
        client.tokens().current().await?
    };
    println!("{}", token.token);
    let left = token.expires_at - crate::wechat::signature::unix_now();
    eprintln!("expires in {left} s");
    Ok(ExitCode::SUCCESS)
}

async fn menu(config: &Config, cmd: MenuCommand) -> Result<ExitCode, CliError> {
    let client = api_client(config).await?;
    match cmd {
        MenuCommand::Set { file } => {
            let text = if file.as_os_str() == "-" {
                std::io::read_to_string(std::io::stdin())
            } else {
                std::fs::read_to_string(&file)
            }
            .map_err(|e| CliError::Usage(format!("cannot read {}: {e}", file.display())))?;
            let menu = Menu::from_json(&text)
                .map_err(|e| CliError::Usage(format!("{}: {e}", file.display())))?;
            client.create_menu(&menu).await?;
            println!("menu set: {} buttons", menu.button.len());
        }
        MenuCommand::Get => match client.menu().await? {
            Some(menu) => println!("{}", pretty(&menu)),
            None => {
                eprintln!("the account has no menu");
                return Ok(ExitCode::from(3));
            }
        },
        MenuCommand::Delete => {
            client.delete_menu().await?;
            println!("menu deleted");
        }
    }
    Ok(ExitCode::SUCCESS)
}

async fn qrcode(config: &Config, args: QrcodeArgs) -> Result<ExitCode, CliError> {
    let client = api_client(config).await?;
    let scene = Scene::parse(&args.scene);
    let expire = (!args.permanent).then_some(args.expire_seconds);
    let code = client.create_qrcode(&scene, expire).await?;
    let image = client.qrcode_image_url(&code.ticket);
    if args.json {
        let mut value = serde_json::to_value(&code).unwrap_or_default();
        value["image_url"] = image.into();
        println!("{}", pretty(&value));
    } else {
        println!("ticket: {}", code.ticket);
        println!("image: {image}");
        println!("content: {}", code.url);
        match code.expire_seconds {
            Some(s) => println!("expires in: {s} s"),
            None => println!("permanent"),
        }
    }
    Ok(ExitCode::SUCCESS)
}

/// `huixin emulator`: serves until interrupted.
async fn emulator(config: &Config, args: EmulatorArgs) -> Result<ExitCode, CliError> {
    // The bot's generated callback token, when it has one: the emulator signs with it.
    let bot_token = match config.wechat.token.expose() {
        "" => match Store::open(&config.storage.url).await {
            Ok(store) => store.generated_token().await.ok().flatten(),
            Err(_) => None,
        },
        _ => None,
    };
    let mut config = config.clone();
    if let Some(url) = args.callback_url {
        config.emulator.callback_url = url;
    }
    let settings = emulator::Settings::from_config(&config, bot_token);
    if settings.app_id.is_empty() || settings.app_secret.is_empty() {
        return Err(CliError::Usage(
            "the emulator needs [wechat] app_id and app_secret (the credentials it accepts; any \
             values will do, e.g. HUIXIN_WECHAT_APP_ID=wx_dev HUIXIN_WECHAT_APP_SECRET=dev)"
                .into(),
        ));
    }
    let listen = args
        .listen
        .unwrap_or_else(|| config.emulator.listen.clone());
    let bound = emulator::Emulator::new(settings.clone())
        .bind(&listen)
        .await
        .map_err(|e| CliError::Usage(format!("cannot listen on {listen}: {e}")))?;
    println!(
        "emulator: http://{} (point [wechat] api_base here)",
        bound.local_addr()
    );
    match &settings.bot {
        Some(bot) if bot.token.is_empty() => println!(
            "emulator: plays WeChat toward {}, but no callback token is known yet: set [wechat] \
             token, or run `huixin serve` here once and restart the emulator",
            bot.callback_url
        ),
        Some(bot) => println!("emulator: plays WeChat toward {}", bot.callback_url),
        None => println!("emulator: no bot callback; set [emulator] callback_url to send messages"),
    }
    if !bound.local_addr().ip().is_loopback() {
        println!(
            "emulator: WARNING: listening beyond this machine; the emulator has no access control \
             (its /emulator endpoints change its state), keep it on a development network"
        );
    }
    println!(
        "emulator: calls at http://{}/emulator/calls",
        bound.local_addr()
    );
    bound
        .run(server::shutdown_signal())
        .await
        .map_err(|e| CliError::Usage(format!("emulator stopped: {e}")))?;
    Ok(ExitCode::SUCCESS)
}

/// Prunes old log rows, dedup records, expired sessions and old pushes every hour.
fn spawn_pruning(store: Store, retention_days: u32, push_retention_days: u32) {
    tokio::spawn(async move {
        let mut tick = tokio::time::interval(Duration::from_secs(3600));
        loop {
            tick.tick().await;
            match store.prune(retention_days).await {
                Ok(p) => tracing::debug!(
                    log = p.log,
                    dedup = p.dedup,
                    sessions = p.sessions,
                    "pruned"
                ),
                Err(e) => tracing::warn!(error = %e, "pruning the store failed"),
            }
            if push_retention_days > 0 {
                let before = unix_now() - i64::from(push_retention_days) * 86_400;
                match store.backend().push_purge(before).await {
                    Ok(0) => {}
                    Ok(n) => {
                        tracing::info!(pushes = n, "old pushes purged ([push] retention_days)")
                    }
                    Err(e) => tracing::warn!(error = %e, "purging old pushes failed"),
                }
            }
        }
    });
}

async fn rules_command(config: &Config, cmd: RulesCommand) -> Result<ExitCode, CliError> {
    match cmd {
        RulesCommand::Check { dir } => {
            let dir = dir.unwrap_or_else(|| config.rules.dir.clone());
            let loader = rules::loader(&config.rules, Vec::new())?;
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
    let rules = Rules::open(&rules_config, Vec::new())?;
    // A throwaway store unless asked otherwise: trying rules must not touch real sessions.
    let scratch = Scratch::new()?;
    let url = if args.use_store {
        config.storage.url.clone()
    } else {
        format!("sqlite://{}", scratch.0.join("rules-test.db").display())
    };
    let store = Store::open(&url).await?;
    // Sends are shown, not made.
    let dry_run = outbound::script::DryRun::default();
    let mut extensions = axum::http::Extensions::new();
    extensions.insert(dry_run.clone());
    let services = Services {
        store: Some(store),
        blocklist: None,
        extensions: Arc::new(extensions),
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

/// The token a running server signs with, without creating one.
async fn existing_token(config: &Config) -> Result<String, CliError> {
    let configured = config.wechat.token.expose();
    if !configured.is_empty() {
        return Ok(configured.to_owned());
    }
    let store = Store::open(&config.storage.url).await?;
    store.generated_token().await?.ok_or_else(|| {
        CliError::Usage(
            "no [wechat] token is configured and none was generated yet: run `huixin serve` once, \
             or set HUIXIN_WECHAT_TOKEN"
                .into(),
        )
    })
}

/// The callback URL derived from `[server] listen` and `path`.
fn default_url(config: &Config) -> Result<String, CliError> {
    Ok(format!("{}{}", local_base(config)?, config.server.path))
}

/// `http://HOST:PORT` of the server `[server] listen` describes, as a local client reaches it.
fn local_base(config: &Config) -> Result<String, CliError> {
    let listen = &config.server.listen;
    let (host, port) = listen.rsplit_once(':').ok_or_else(|| {
        CliError::Usage(format!(
            "cannot derive a URL from [server] listen {listen:?}; pass --url"
        ))
    })?;
    if port == "0" {
        return Err(CliError::Usage(
            "[server] listen uses port 0; pass --url with the port the server printed".into(),
        ));
    }
    let host = match host {
        "0.0.0.0" | "" => "127.0.0.1",
        "[::]" => "[::1]",
        h => h,
    };
    Ok(format!("http://{host}:{port}"))
}

async fn simulate(config: &Config, args: SimulateArgs) -> Result<ExitCode, CliError> {
    let token = existing_token(config).await?;
    let url = match &args.url {
        Some(url) => url.clone(),
        None => default_url(config)?,
    };
    let crypt = config
        .wechat
        .msg_crypt(&token)
        .map_err(|e| CliError::Usage(format!("[wechat] encoding_aes_key: {e}")))?;
    let mode = config.wechat.mode;
    let sim = Simulator::new(&url, &token, mode, crypt)?;

    if args.verify_url {
        let (status, echoed) = sim.verify_url().await?;
        println!(
            "GET {url} (URL verification): {status}, echostr {}",
            if echoed { "echoed" } else { "NOT echoed" }
        );
        return Ok(if status == 200 && echoed {
            ExitCode::SUCCESS
        } else {
            ExitCode::FAILURE
        });
    }
    let Some(spec) = args.message else {
        return Err(CliError::Usage(
            "name a message to send, e.g. `huixin simulate text hello` (see --help)".into(),
        ));
    };
    let mut header = Header::new(&args.to, &args.from);
    header.extra = args.fields.clone();

    if args.print_request {
        for _ in 0..args.count.max(1) {
            let xml = spec.to_xml(&header)?;
            let prepared = sim.prepare(&xml, &args.from);
            println!("{}", serde_json::to_string(&prepared).unwrap_or_default());
            header.msg_id = header.msg_id.wrapping_add(1);
        }
        return Ok(ExitCode::SUCCESS);
    }

    let xml = spec.to_xml(&header)?;
    let prepared = sim.prepare(&xml, &args.from);
    let how = match (mode, prepared.encrypted) {
        (Mode::Plain, _) | (_, false) => "plaintext".to_owned(),
        (m, true) => format!("{} mode, encrypted", m.as_str()),
    };
    println!("→ POST {url} ({how})");
    if args.verbose {
        println!("{xml}");
    }
    let mut ok = true;
    for attempt in 0..=args.retries {
        if attempt > 0 {
            println!("→ retry {attempt}: identical request");
        }
        let exchange = sim.send_prepared(&prepared).await?;
        if exchange.status != 200 {
            println!("← {} {}", exchange.status, exchange.body.trim());
            ok = false;
            continue;
        }
        let how = if exchange.encrypted {
            ", encrypted reply, MsgSignature verified"
        } else {
            ""
        };
        println!("← 200 OK{how}");
        if args.verbose {
            println!(
                "{}",
                exchange
                    .reply_xml
                    .as_deref()
                    .unwrap_or(exchange.body.as_str())
            );
        }
        if let Some(reply) = &exchange.reply {
            for line in reply.reply.describe().lines() {
                println!("  {line}");
            }
        }
    }
    Ok(if ok {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    })
}
