//! The `huixin` command line: `serve`, `simulate`, `token`. `src/main.rs` only calls [`main`].

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Args, Parser, Subcommand};

use crate::config::{Config, ConfigError};
use crate::server::{self, ServerError};
use crate::simulator::{Header, MessageSpec, SimError, Simulator, describe_reply};
use crate::store::{Store, StoreError};
use crate::telemetry;
use crate::wechat::Mode;

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
    /// Print the callback token in use (configured, or generated on first start).
    Token,
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
        Command::Serve => {
            // Until rules are configured, the server runs the built-in echo bot.
            server::serve(&config, crate::bot::echo::router()).await?;
            Ok(ExitCode::SUCCESS)
        }
        Command::Token => {
            println!("{}", existing_token(&config).await?);
            Ok(ExitCode::SUCCESS)
        }
        Command::Simulate(args) => simulate(&config, args).await,
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
    Ok(format!("http://{host}:{port}{}", config.server.path))
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
            for line in describe_reply(&reply.reply).lines() {
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
