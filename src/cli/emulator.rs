//! `huixin emulator`: a local WeChat to develop and test against.

use std::process::ExitCode;

use clap::Args;

use super::CliError;
use crate::config::Config;
use crate::store::Store;
use crate::{emulator, server};

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

/// `huixin emulator`: serves until interrupted.
pub async fn run(config: &Config, args: EmulatorArgs) -> Result<ExitCode, CliError> {
    // The bot's generated callback token, when it has one: the emulator signs with it.
    let bot_token = match config.wechat.token.expose() {
        "" => match Store::open_config(&config.storage).await {
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
