//! The `huixin` command line: it parses arguments and calls the library. `src/main.rs` only
//! calls [`main`].
//!
//! - `serve`: [`crate::app::App`], as built from the config; `serve --dev` beside a local
//!   WeChat ([`admin`]).
//! - `admin` ([`admin`]): the console's password hash, login links and sessions.
//! - `token`, `menu`, `qrcode`, `user` ([`wechat`]): WeChat's API through [`crate::outbound`].
//! - `emulator` ([`emulator`]): a local WeChat ([`crate::emulator`]).
//! - `rules` ([`rules`]): check, try and write the rules.
//! - `simulate` ([`simulate`]): play WeChat against a running server.
//! - `push`, `keys`, `topics` ([`push`]): the push service.
//! - `store` ([`store`]): the database as a whole (`store copy` moves it to PostgreSQL,
//!   `store seed` fills one with made-up traffic).
//! - `apps` ([`apps`]): the platform's apps, their bindings and topics.

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Parser, Subcommand};

pub mod admin;
pub mod apps;
pub mod emulator;
pub mod push;
pub mod rules;
pub mod simulate;
pub mod store;
pub mod wechat;

use crate::app::{App, AppError};
use crate::config::{Config, ConfigError};
use crate::outbound::{self, ApiError};
use crate::rules::RulesError;
use crate::simulator::SimError;
use crate::store::{Store, StoreError};
use crate::telemetry;

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
    /// Run the server (callback endpoint, health check, push APIs, console).
    Serve(admin::ServeArgs),
    /// The operator console: `hash-password`, `login-link`, `logout-all`.
    #[command(subcommand)]
    Admin(admin::AdminCommand),
    /// Play WeChat: send a signed (and, per mode, encrypted) message to a running server and
    /// print its reply.
    Simulate(simulate::SimulateArgs),
    /// Print the access token for WeChat's API (shared with running servers through the
    /// database); `--callback` prints the callback token instead.
    Token(wechat::TokenArgs),
    /// The custom menu: `set FILE.json`, `get`, `delete`.
    #[command(subcommand)]
    Menu(wechat::MenuCommand),
    /// Create a QR code with a scene; prints its ticket and image URL.
    Qrcode(wechat::QrcodeArgs),
    /// Print a user's profile (JSON).
    User {
        /// The user's OpenID.
        openid: String,
    },
    /// Run a local WeChat platform to develop and test against (set [wechat] api_base to it).
    Emulator(emulator::EmulatorArgs),
    /// Work with the rules: check them, try them on a made-up message, write the shipped ones.
    #[command(subcommand)]
    Rules(rules::RulesCommand),
    /// Push a markdown message through a running server's push API.
    Push(push::PushArgs),
    /// List push keys; `create` and `revoke` them.
    Keys(push::KeysArgs),
    /// List topics; `add`, `remove`, `join`, `leave`, `members`, `qrcode`.
    Topics(push::TopicsArgs),
    /// The platform's apps: list them; `create`, `set`, `show`, `revoke`; their `bindings`,
    /// `unbind`, `topic`.
    Apps(apps::AppsArgs),
    /// The database as a whole: `copy` it from SQLite into PostgreSQL, `seed` it with made-up
    /// traffic.
    #[command(subcommand)]
    Store(store::StoreCommand),
}

/// Everything a command can fail with.
#[derive(Debug, thiserror::Error)]
pub enum CliError {
    /// Configuration could not be loaded.
    #[error(transparent)]
    Config(#[from] ConfigError),
    /// The app could not start, or stopped with an error.
    #[error(transparent)]
    App(#[from] AppError),
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
        Command::Serve(args) if args.dev => admin::serve_dev(config).await,
        Command::Serve(_) => {
            App::new(config).await?.serve_until_signal().await?;
            Ok(ExitCode::SUCCESS)
        }
        Command::Admin(cmd) => admin::run(&config, cmd).await,
        Command::Rules(cmd) => rules::run(&config, cmd).await,
        Command::Token(args) => wechat::token(&config, args).await,
        Command::Menu(cmd) => wechat::menu(&config, cmd).await,
        Command::Qrcode(args) => wechat::qrcode(&config, args).await,
        Command::User { openid } => {
            let user = api_client(&config).await?.user_info(&openid).await?;
            println!("{}", pretty(&user));
            Ok(ExitCode::SUCCESS)
        }
        Command::Emulator(args) => emulator::run(&config, args).await,
        Command::Simulate(args) => simulate::run(&config, args).await,
        Command::Push(args) => push::push(&config, args).await,
        Command::Keys(args) => push::keys(&config, args).await,
        Command::Topics(args) => push::topics(&config, args).await,
        Command::Store(cmd) => store::run(&config, cmd).await,
        Command::Apps(args) => apps::run(&config, args).await,
    }
}

/// A client for WeChat's API sharing the token of the servers on the same database.
async fn api_client(config: &Config) -> Result<outbound::Client, CliError> {
    let store = Store::open_config(&config.storage).await?;
    Ok(outbound::Client::new(&config.wechat, Some(store))?)
}

fn pretty<T: serde::Serialize>(value: &T) -> String {
    serde_json::to_string_pretty(value).unwrap_or_default()
}

/// The token a running server signs with, without creating one.
async fn existing_token(config: &Config) -> Result<String, CliError> {
    let configured = config.wechat.token.expose();
    if !configured.is_empty() {
        return Ok(configured.to_owned());
    }
    let store = Store::open_config(&config.storage).await?;
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
