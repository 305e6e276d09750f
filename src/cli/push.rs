//! `huixin push`, `huixin keys`, `huixin topics`.
//!
//! `push` goes through a running server's HTTP API, like any script would (the key is checked
//! and rate limited the same way); `keys` and `topics` are admin commands on the database.

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Args, Subcommand};

use super::{CliError, api_client, local_base, pretty};
use crate::config::Config;
use crate::outbound::qrcode::Scene;
use crate::push::bot::TOPIC_SCENE_PREFIX;
use crate::push::{PushError, Pushes, Scope};
use crate::store::Store;

/// `huixin push`.
#[derive(Debug, Args)]
pub struct PushArgs {
    /// The push key (or set HUIXIN_PUSH_KEY).
    #[arg(long, env = "HUIXIN_PUSH_KEY", hide_env_values = true)]
    pub key: String,
    /// The title.
    #[arg(long)]
    pub title: String,
    /// The body, as markdown.
    #[arg(long, conflicts_with = "body_file")]
    pub body: Option<String>,
    /// Read the body from FILE (`-` for standard input).
    #[arg(long, value_name = "FILE")]
    pub body_file: Option<PathBuf>,
    /// A link shown on the detail page.
    #[arg(long)]
    pub url: Option<String>,
    /// The summary on the template card (default: the start of the body).
    #[arg(long)]
    pub summary: Option<String>,
    /// An OpenID to push to (admin keys; repeatable).
    #[arg(long = "to", value_name = "OPENID")]
    pub to: Vec<String>,
    /// A topic to push to (admin keys).
    #[arg(long)]
    pub topic: Option<String>,
    /// The server (default: `[server] public_url`, else the local `[server] listen`).
    #[arg(long, value_name = "URL")]
    pub server: Option<String>,
    /// Print the server's JSON answer.
    #[arg(long)]
    pub json: bool,
}

/// `huixin keys`.
#[derive(Debug, Args)]
pub struct KeysArgs {
    /// What to do (default: list).
    #[command(subcommand)]
    pub command: Option<KeysCommand>,
    /// No longer possible: keys are stored as hashes and shown once, when made.
    #[arg(long, hide = true)]
    pub show: bool,
}

/// `huixin keys …`.
#[derive(Debug, Subcommand)]
pub enum KeysCommand {
    /// Make a key for one follower, a topic, or any target (admin); prints it.
    Create {
        /// The follower the key pushes to.
        #[arg(long, value_name = "OPENID", group = "target")]
        user: Option<String>,
        /// The topic the key pushes to.
        #[arg(long, value_name = "NAME", group = "target")]
        topic: Option<String>,
        /// A key that may push to any follower or topic named in the request.
        #[arg(long, group = "target")]
        admin: bool,
        /// A note shown in the list.
        #[arg(long, default_value = "")]
        label: String,
        /// Use this key (24-64 letters and digits) instead of a generated one, e.g. to keep
        /// the key an existing client is configured with.
        #[arg(long, value_name = "KEY")]
        key: Option<String>,
    },
    /// Revoke a key: the whole key, or its first 6 characters as the list shows them.
    Revoke {
        /// The key, or its first 6 characters.
        prefix: String,
    },
}

/// `huixin topics`.
#[derive(Debug, Args)]
pub struct TopicsArgs {
    /// What to do (default: list).
    #[command(subcommand)]
    pub command: Option<TopicsCommand>,
}

/// `huixin topics …`.
#[derive(Debug, Subcommand)]
pub enum TopicsCommand {
    /// Create a topic.
    Add {
        /// The name: 1-64 letters, digits, - and _.
        name: String,
        /// Any follower may join with `sub NAME` (otherwise only by the topic's QR code, or
        /// `huixin topics join`).
        #[arg(long)]
        open: bool,
        /// Shown in listings.
        #[arg(long, default_value = "")]
        description: String,
    },
    /// Delete a topic, its memberships and its keys.
    Remove {
        /// The topic.
        name: String,
    },
    /// Add a follower to a topic.
    Join {
        /// The topic.
        name: String,
        /// The follower.
        openid: String,
    },
    /// Remove a follower from a topic.
    Leave {
        /// The topic.
        name: String,
        /// The follower.
        openid: String,
    },
    /// List a topic's members.
    Members {
        /// The topic.
        name: String,
    },
    /// Create the QR code that joins a topic when scanned (scene `topic:NAME`).
    Qrcode {
        /// The topic.
        name: String,
        /// A permanent code instead of one valid for 30 days.
        #[arg(long)]
        permanent: bool,
    },
}

fn push_error(e: PushError) -> CliError {
    CliError::Usage(e.to_string())
}

async fn service(config: &Config) -> Result<Pushes, CliError> {
    let store = Store::open_config(&config.storage).await?;
    Ok(Pushes::new(config, store))
}

/// `huixin push`: POSTs to `/api/v1/push`.
pub async fn push(config: &Config, args: PushArgs) -> Result<ExitCode, CliError> {
    let body = match &args.body_file {
        Some(path) if path.as_os_str() == "-" => {
            let mut text = String::new();
            std::io::Read::read_to_string(&mut std::io::stdin(), &mut text)
                .map_err(|e| CliError::Usage(format!("cannot read standard input: {e}")))?;
            text
        }
        Some(path) => std::fs::read_to_string(path)
            .map_err(|e| CliError::Usage(format!("cannot read {}: {e}", path.display())))?,
        None => args.body.clone().unwrap_or_default(),
    };
    let base = match &args.server {
        Some(s) => s.trim_end_matches('/').to_owned(),
        None if !config.server.public_url.is_empty() => {
            config.server.public_url.trim_end_matches('/').to_owned()
        }
        None => local_base(config)?,
    };
    let mut request = serde_json::json!({ "title": args.title, "body": body });
    if let Some(url) = &args.url {
        request["url"] = url.as_str().into();
    }
    if let Some(summary) = &args.summary {
        request["summary"] = summary.as_str().into();
    }
    if !args.to.is_empty() {
        request["to"] = args.to.clone().into();
    }
    if let Some(topic) = &args.topic {
        request["topic"] = topic.as_str().into();
    }
    let endpoint = format!("{base}/api/v1/push");
    let response = reqwest::Client::new()
        .post(&endpoint)
        .bearer_auth(&args.key)
        .json(&request)
        .send()
        .await
        .map_err(|e| CliError::Usage(format!("cannot reach {endpoint}: {e}")))?;
    let status = response.status();
    let answer: serde_json::Value = response.json().await.unwrap_or_default();
    if !status.is_success() {
        let message = answer["error"].as_str().unwrap_or("no explanation");
        return Err(CliError::Usage(format!(
            "the server refused the push (HTTP {}): {message}",
            status.as_u16()
        )));
    }
    if args.json {
        println!("{}", pretty(&answer));
    } else {
        println!("id: {}", answer["id"].as_str().unwrap_or_default());
        println!("recipients: {}", answer["recipients"]);
        println!(
            "detail: {}",
            answer["detail_url"].as_str().unwrap_or_default()
        );
    }
    Ok(ExitCode::SUCCESS)
}

fn scope_text(scope: &Scope) -> String {
    scope.describe()
}

/// `huixin keys`.
pub async fn keys(config: &Config, args: KeysArgs) -> Result<ExitCode, CliError> {
    let pushes = service(config).await?;
    match args.command {
        None if args.show => {
            return Err(CliError::Usage(
                "keys are shown once, when made: huixin keeps only their hash (and first 6 \
                 characters, which `huixin keys` lists)"
                    .into(),
            ));
        }
        None => {
            let keys = pushes.keys().await.map_err(push_error)?;
            if keys.is_empty() {
                println!("no keys (`huixin keys create --user OPENID | --topic NAME | --admin`)");
            }
            for key in keys {
                let shown = format!("{}…", key.prefix);
                let state = match key.revoked_at {
                    Some(_) => "revoked",
                    None => "active",
                };
                println!(
                    "{shown}\t{}\t{state}\t{}\t{}",
                    scope_text(&key.scope),
                    pushes.format_time(key.created_at),
                    key.label
                );
            }
        }
        Some(KeysCommand::Create {
            user,
            topic,
            admin,
            label,
            key,
        }) => {
            let scope = match (user, topic, admin) {
                (Some(openid), None, false) => Scope::User(openid),
                (None, Some(topic), false) => Scope::Topic(topic),
                (None, None, true) => Scope::Admin,
                _ => {
                    return Err(CliError::Usage(
                        "name the target: --user OPENID, --topic NAME or --admin".into(),
                    ));
                }
            };
            let key = pushes
                .create_key(&scope, &label, key.as_deref())
                .await
                .map_err(push_error)?;
            println!("{key}");
        }
        Some(KeysCommand::Revoke { prefix }) => {
            let n = pushes.revoke(&prefix).await.map_err(push_error)?;
            if n == 0 {
                return Err(CliError::Usage(format!(
                    "no active key starts with {prefix:?}"
                )));
            }
            println!("revoked {n} key(s)");
        }
    }
    Ok(ExitCode::SUCCESS)
}

/// `huixin topics`.
pub async fn topics(config: &Config, args: TopicsArgs) -> Result<ExitCode, CliError> {
    let pushes = service(config).await?;
    let backend = pushes.store().backend();
    match args.command {
        None => {
            let topics = backend.topics().await?;
            if topics.is_empty() {
                println!("no topics (`huixin topics add NAME [--open]`)");
            }
            for t in topics {
                let access = if t.open { "open" } else { "closed" };
                let app = t.app_id.map(|a| format!("\tapp {a}")).unwrap_or_default();
                println!(
                    "{}\t#{}\t{access}\t{} members{app}\t{}",
                    t.name, t.num, t.members, t.description
                );
            }
        }
        Some(TopicsCommand::Add {
            name,
            open,
            description,
        }) => {
            if !pushes
                .create_topic(&name, open, &description)
                .await
                .map_err(push_error)?
            {
                return Err(CliError::Usage(format!("topic {name:?} already exists")));
            }
            println!("created topic {name}");
        }
        Some(TopicsCommand::Remove { name }) => {
            if !backend.topic_delete(&name).await? {
                return Err(CliError::Usage(format!("no topic {name:?}")));
            }
            println!("removed topic {name}");
        }
        Some(TopicsCommand::Join { name, openid }) => {
            let joined = pushes.join(&name, &openid).await.map_err(push_error)?;
            println!(
                "{openid} {} {name}",
                if joined { "joined" } else { "was already in" }
            );
        }
        Some(TopicsCommand::Leave { name, openid }) => {
            let left = pushes.leave(&name, &openid).await.map_err(push_error)?;
            println!(
                "{openid} {} {name}",
                if left { "left" } else { "was not in" }
            );
        }
        Some(TopicsCommand::Members { name }) => {
            if pushes.topic(&name).await.map_err(push_error)?.is_none() {
                return Err(CliError::Usage(format!("no topic {name:?}")));
            }
            for openid in backend.topic_members(&name).await? {
                println!("{openid}");
            }
        }
        Some(TopicsCommand::Qrcode { name, permanent }) => {
            if pushes.topic(&name).await.map_err(push_error)?.is_none() {
                return Err(CliError::Usage(format!(
                    "no topic {name:?} (`huixin topics add {name}`)"
                )));
            }
            let client = api_client(config).await?;
            let scene = Scene::parse(&format!("{TOPIC_SCENE_PREFIX}{name}"));
            let expire = (!permanent).then_some(2_592_000);
            let code = client.create_qrcode(&scene, expire).await?;
            println!("ticket: {}", code.ticket);
            println!("image: {}", client.qrcode_image_url(&code.ticket));
            println!("content: {}", code.url);
        }
    }
    Ok(ExitCode::SUCCESS)
}
