//! `huixin apps`: the platform's apps, their bindings and their topics.

use std::process::ExitCode;

use clap::{Args, Subcommand};

use super::CliError;
use crate::apps::{AppSpec, Apps};
use crate::config::Config;
use crate::push::service::{PushError, Pushes};
use crate::store::Store;
use crate::store::apps::AppChanges;
use crate::webhooks::Webhooks;

/// `huixin apps`.
#[derive(Debug, Args)]
pub struct AppsArgs {
    /// What to do (default: list).
    #[command(subcommand)]
    pub command: Option<AppsCommand>,
}

/// `huixin apps …`.
#[derive(Debug, Subcommand)]
pub enum AppsCommand {
    /// Make an app; prints its token (shown this once) and its webhook signing secret.
    Create {
        /// Its name.
        name: String,
        /// Where its webhooks go (http or https).
        #[arg(long, value_name = "URL")]
        callback: Option<String>,
        /// The shape of its webhook bodies: huixin or wxpusher.
        #[arg(long, default_value = "huixin")]
        format: String,
        /// Its message webhooks may answer the passive reply.
        #[arg(long)]
        reply: bool,
        /// Where the binding link sends the browser once bound.
        #[arg(long, value_name = "URL")]
        return_url: Option<String>,
    },
    /// Change an app's callback, format, replies or return URL.
    Set {
        /// The app's name or id.
        app: String,
        /// Where its webhooks go (empty: nowhere).
        #[arg(long, value_name = "URL")]
        callback: Option<String>,
        /// huixin or wxpusher.
        #[arg(long)]
        format: Option<String>,
        /// Whether its message webhooks may answer the passive reply.
        #[arg(long, value_name = "BOOL")]
        reply: Option<bool>,
        /// Where the binding link sends the browser once bound (empty: huixin's page).
        #[arg(long, value_name = "URL")]
        return_url: Option<String>,
    },
    /// Show an app, with its webhook signing secret.
    Show {
        /// The app's name or id.
        app: String,
    },
    /// Revoke an app and its token; its bindings stay on record.
    Revoke {
        /// The app's name or id.
        app: String,
    },
    /// List an app's bindings (uid, state, source).
    Bindings {
        /// The app's name or id.
        app: String,
        /// Only this uid's.
        #[arg(long)]
        uid: Option<String>,
    },
    /// Remove the binding of one of an app's uids.
    Unbind {
        /// The app's name or id.
        app: String,
        /// The uid.
        uid: String,
    },
    /// Give a topic to an app (its token may then push to it), or take it back.
    Topic {
        /// The app's name or id.
        app: String,
        /// The topic.
        topic: String,
        /// Take the topic back from the app.
        #[arg(long)]
        remove: bool,
    },
}

fn usage(e: PushError) -> CliError {
    CliError::Usage(e.to_string())
}

/// Runs `huixin apps`.
pub async fn run(config: &Config, args: AppsArgs) -> Result<ExitCode, CliError> {
    let store = Store::open_config(&config.storage).await?;
    let pushes = Pushes::new(config, store.clone());
    let webhooks = Webhooks::new(config, store.clone());
    let apps = Apps::new(config, pushes.clone(), None, webhooks);
    apps.reload().await?;
    match args.command {
        None => {
            let list = apps.list().await.map_err(usage)?;
            if list.is_empty() {
                println!("no apps (`huixin apps create NAME [--callback URL]`)");
            }
            for app in list {
                let state = if app.revoked_at.is_some() {
                    "revoked"
                } else {
                    "active"
                };
                let callback = if app.callback_url.is_empty() {
                    "-".to_owned()
                } else {
                    format!("{} ({})", app.callback_url, app.callback_format)
                };
                let bound = store.backend().bindings_count(app.id, None, None).await?;
                println!(
                    "{}\t{}\t{state}\t{bound} bound\t{callback}{}",
                    app.id,
                    app.name,
                    if app.replies { "\treplies" } else { "" }
                );
            }
        }
        Some(AppsCommand::Create {
            name,
            callback,
            format,
            reply,
            return_url,
        }) => {
            let created = apps
                .create(&AppSpec {
                    name,
                    callback_url: callback.unwrap_or_default(),
                    format,
                    replies: reply,
                    return_url: return_url.unwrap_or_default(),
                })
                .await
                .map_err(usage)?;
            println!("app:    {} (id {})", created.app.name, created.app.id);
            println!("token:  {}", created.token);
            println!("secret: {}", created.app.secret);
            eprintln!(
                "The token is shown this once: keep it. The secret signs the app's webhooks \
                 (`huixin apps show` prints it again)."
            );
        }
        Some(AppsCommand::Set {
            app,
            callback,
            format,
            reply,
            return_url,
        }) => {
            let found = apps.find(&app).await.map_err(usage)?;
            let changes = AppChanges {
                callback_url: callback,
                callback_format: format,
                replies: reply,
                return_url,
            };
            if changes == AppChanges::default() {
                return Err(CliError::Usage(
                    "nothing to change: give --callback, --format, --reply or --return-url".into(),
                ));
            }
            let updated = apps.update(found.id, &changes).await.map_err(usage)?;
            println!("updated app {} (id {})", updated.name, updated.id);
        }
        Some(AppsCommand::Show { app }) => {
            let app = apps.find(&app).await.map_err(usage)?;
            println!("id:         {}", app.id);
            println!("name:       {}", app.name);
            println!("callback:   {}", app.callback_url);
            println!("format:     {}", app.callback_format);
            println!("replies:    {}", app.replies);
            println!("return url: {}", app.return_url);
            println!("secret:     {}", app.secret);
            println!("created:    {}", pushes.format_time(app.created_at));
        }
        Some(AppsCommand::Revoke { app }) => {
            let found = apps.find(&app).await.map_err(usage)?;
            apps.revoke(found.id).await.map_err(usage)?;
            println!("revoked app {} (id {})", found.name, found.id);
        }
        Some(AppsCommand::Bindings { app, uid }) => {
            let app = apps.find(&app).await.map_err(usage)?;
            let rows = store
                .backend()
                .bindings_page(app.id, uid.as_deref(), None, 0, u32::MAX)
                .await?;
            if rows.is_empty() {
                println!("no bindings");
            }
            for b in rows {
                println!(
                    "{}\t{}\t{}{}\t{}\t{}",
                    b.uid,
                    b.openid,
                    b.state,
                    if b.blocked { " (blocked)" } else { "" },
                    b.source,
                    pushes.format_time(b.created_at)
                );
            }
        }
        Some(AppsCommand::Unbind { app, uid }) => {
            let app = apps.find(&app).await.map_err(usage)?;
            if apps.unbind(app.id, &uid).await.map_err(usage)? == 0 {
                return Err(CliError::Usage(format!(
                    "app {} has no binding of uid {uid:?}",
                    app.name
                )));
            }
            println!("unbound {uid}");
        }
        Some(AppsCommand::Topic { app, topic, remove }) => {
            let app = apps.find(&app).await.map_err(usage)?;
            let owner = if remove { None } else { Some(app.id) };
            if !store.backend().topic_set_app(&topic, owner).await? {
                return Err(CliError::Usage(format!("no topic {topic:?}")));
            }
            if remove {
                println!("topic {topic} no longer belongs to {}", app.name);
            } else {
                println!("topic {topic} belongs to {} now", app.name);
            }
        }
    }
    Ok(ExitCode::SUCCESS)
}
