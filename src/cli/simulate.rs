//! `huixin simulate`: play WeChat against a running server.

use std::process::ExitCode;

use clap::Args;

use super::{CliError, default_url, existing_token};
use crate::config::Config;
use crate::simulator::{Header, MessageSpec, Simulator};
use crate::wechat::Mode;

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

/// Runs `huixin simulate`: sends the message (or checks URL verification) and prints the reply.
pub async fn run(config: &Config, args: SimulateArgs) -> Result<ExitCode, CliError> {
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
