//! `huixin token`, `menu`, `qrcode`, `user`: WeChat's API through [`crate::outbound`], with
//! the access token the servers on the same database share.

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Args, Subcommand};

use super::{CliError, api_client, existing_token, pretty};
use crate::config::Config;
use crate::outbound::menu::Menu;
use crate::outbound::qrcode::Scene;

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

/// `huixin token`: the access token on standard output (for `$(huixin token)`), its expiry on
/// standard error.
pub async fn token(config: &Config, args: TokenArgs) -> Result<ExitCode, CliError> {
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
    let left = token.expires_at - crate::support::clock::unix_now();
    eprintln!("expires in {left} s");
    Ok(ExitCode::SUCCESS)
}

/// Runs `huixin menu set | get | delete`.
pub async fn menu(config: &Config, cmd: MenuCommand) -> Result<ExitCode, CliError> {
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

/// Runs `huixin qrcode`: prints the ticket and image URL (or JSON).
pub async fn qrcode(config: &Config, args: QrcodeArgs) -> Result<ExitCode, CliError> {
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
