//! `huixin admin …` (the console's password hash, login links, sessions) and
//! `huixin serve --dev` (the server beside a local WeChat, the console on).

use std::io::{BufRead, IsTerminal};
use std::process::ExitCode;

use clap::{Args, Subcommand};

use super::CliError;
use crate::admin;
use crate::app::App;
use crate::config::Config;
use crate::store::Store;
use crate::{emulator, server};

/// `huixin serve`.
#[derive(Debug, Default, Args)]
pub struct ServeArgs {
    /// Development mode: start a local WeChat (the emulator) in the process, point
    /// [wechat] api_base at it, and turn the console on with a printed login link.
    #[arg(long)]
    pub dev: bool,
}

/// `huixin admin …`.
#[derive(Debug, Subcommand)]
pub enum AdminCommand {
    /// Read a password (from the terminal, or a line of standard input) and print its argon2
    /// hash for [admin] password.
    HashPassword,
    /// Print a one-time link that signs a browser in to the console.
    LoginLink,
    /// Sign every browser out of the console.
    LogoutAll,
}

/// Runs `huixin admin …`.
pub async fn run(config: &Config, cmd: AdminCommand) -> Result<ExitCode, CliError> {
    match cmd {
        AdminCommand::HashPassword => {
            let password = read_password()?;
            let hash = admin::hash_password(&password).map_err(CliError::Usage)?;
            println!("{hash}");
            eprintln!("set it as [admin] password in huixin.toml (or HUIXIN_ADMIN_PASSWORD)");
            Ok(ExitCode::SUCCESS)
        }
        AdminCommand::LoginLink => {
            let store = Store::open_config(&config.storage).await?;
            let link = admin::login_link(config, &store, None).await?;
            println!("{}", link.url);
            eprintln!(
                "signs one browser in once, within {} minutes{}",
                config.admin.login_link_minutes,
                if config.admin.password.is_empty() {
                    " (the console is on only with [admin] password set, or under `huixin serve --dev`)"
                } else {
                    ""
                }
            );
            Ok(ExitCode::SUCCESS)
        }
        AdminCommand::LogoutAll => {
            let store = Store::open_config(&config.storage).await?;
            let n = store.backend().admin_sessions_clear().await?;
            println!("signed out {n} session(s)");
            Ok(ExitCode::SUCCESS)
        }
    }
}

/// The password: asked twice on a terminal (not echoed), else the first line of standard
/// input.
fn read_password() -> Result<String, CliError> {
    let failed = |e: std::io::Error| CliError::Usage(format!("cannot read the password: {e}"));
    if std::io::stdin().is_terminal() {
        let first = rpassword::prompt_password("console password: ").map_err(failed)?;
        let again = rpassword::prompt_password("again: ").map_err(failed)?;
        if first != again {
            return Err(CliError::Usage("the two passwords differ".into()));
        }
        return Ok(first);
    }
    let mut line = String::new();
    std::io::stdin()
        .lock()
        .read_line(&mut line)
        .map_err(failed)?;
    Ok(line.trim_end_matches(['\r', '\n']).to_owned())
}

/// `huixin serve --dev`: binds the server first, starts the emulator in the process playing
/// WeChat toward it (the credentials `wx_dev`/`dev_secret` when none are set, a template for
/// pushes), points `[wechat] api_base` at the emulator, and prints a login link.
pub async fn serve_dev(mut config: Config) -> Result<ExitCode, CliError> {
    let store = Store::open_config(&config.storage).await?;
    let (token, _) = server::resolve_token(&config, &store).await?;
    if config.wechat.app_id.is_empty() {
        config.wechat.app_id = "wx_dev".into();
    }
    if config.wechat.app_secret.is_empty() {
        config.wechat.app_secret = crate::config::Secret::new("dev_secret");
    }
    if config.push.template_id.is_empty() {
        config.push.template_id = emulator::BUILTIN_TEMPLATE_ID.into();
    }
    let listener = tokio::net::TcpListener::bind(&config.server.listen)
        .await
        .map_err(|e| CliError::Usage(format!("cannot listen on {}: {e}", config.server.listen)))?;
    let addr = listener
        .local_addr()
        .map_err(|e| CliError::Usage(e.to_string()))?;
    let host = if addr.ip().is_unspecified() {
        format!("127.0.0.1:{}", addr.port())
    } else {
        addr.to_string()
    };
    config.emulator.callback_url = format!("http://{host}{}", config.server.path);
    let settings = emulator::Settings::from_config(&config, Some(token));
    let bound = emulator::Emulator::new(settings)
        .bind("127.0.0.1:0")
        .await
        .map_err(|e| CliError::Usage(format!("cannot start the emulator: {e}")))?;
    config.wechat.api_base = format!("http://{}", bound.local_addr());
    println!(
        "dev: a local WeChat at {} plays toward {} ([wechat] api_base points at it)",
        config.wechat.api_base, config.emulator.callback_url
    );
    tokio::spawn(async move {
        if let Err(e) = bound.run(std::future::pending()).await {
            tracing::error!(error = %e, "the dev emulator stopped");
        }
    });
    let link = admin::login_link(&config, &store, Some(&format!("http://{host}"))).await?;
    println!("dev: sign in to the console: {}", link.url);
    let app = App::builder(config).store(store).dev().build().await?;
    app.serve_listener_until_signal(listener).await?;
    Ok(ExitCode::SUCCESS)
}
