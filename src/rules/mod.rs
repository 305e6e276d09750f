//! The bot's behaviour as Rhai scripts an operator edits without recompiling.
//!
//! - [`load`]: reading the rules folder into a checked [`RuleSet`] (scripts and keyword tables,
//!   file-name order, then declaration order).
//! - [`conditions`]: when a rule applies, as data evaluated in Rust.
//! - `plan`: which rules a message runs, found through an index built at load.
//! - [`run`]: running the matching rules on a message, on a blocking thread.
//! - [`engine`]: the sandboxed Rhai engine and its limits.
//! - [`api`]: the functions scripts call (replies, session, followers, time, random).
//! - [`context`]: what those functions reach while a rule runs.
//! - [`builtin`]: the shipped rules, built into the binary.
//!
//! [`Rules`] holds the live set and swaps it atomically when the folder changes; a folder that
//! fails to load keeps the previous set running.

pub mod api;
pub mod builtin;
pub mod conditions;
pub mod context;
pub mod engine;
pub mod load;
mod plan;
pub mod run;

use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use arc_swap::ArcSwap;
use sha1::{Digest, Sha1};

pub use load::{LoadError, Loader, Rule, RuleSet, Source};
pub use run::Outcome;

use crate::config::RulesConfig;
use crate::wechat::{Message, Reply};
use api::ScriptModule;
use context::Services;

/// Why rules could not be set up.
#[derive(Debug, thiserror::Error)]
pub enum RulesError {
    /// Files with errors; each names its file and line.
    #[error("{}", .0.iter().map(ToString::to_string).collect::<Vec<_>>().join("\n"))]
    Load(Vec<LoadError>),
    /// `[rules] timezone` is not a zone.
    #[error("[rules] timezone: {0}")]
    Timezone(String),
    /// `[rules] dir` exists but is not a folder, or cannot be read. (A missing folder means
    /// the built-in rules.)
    #[error("[rules] dir: {}: {reason}", path.display())]
    Dir {
        /// The configured path.
        path: PathBuf,
        /// What is wrong with it.
        reason: String,
    },
}

/// The outcome of a reload.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Reload {
    /// Nothing changed in the folder.
    Unchanged,
    /// The new set is live.
    Reloaded {
        /// Rules in it.
        rules: usize,
        /// Files in it.
        files: usize,
    },
    /// The folder has errors; the previous set stays live.
    Failed(Vec<LoadError>),
}

/// The live rule set of a rules folder.
pub struct Rules {
    current: ArcSwap<RuleSet>,
    loader: Loader,
    dir: PathBuf,
    fallback: Reply,
    fingerprint: Mutex<Option<[u8; 20]>>,
    status: Mutex<Status>,
}

/// When the live set was loaded, and what the last attempt to reload found.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Status {
    /// When the live set was loaded (Unix seconds).
    pub loaded_at: i64,
    /// The errors of the last reload, when it failed (the previous set stays live); empty
    /// once a reload succeeds.
    pub errors: Vec<LoadError>,
    /// When the last reload failed (Unix seconds).
    pub failed_at: Option<i64>,
}

impl std::fmt::Debug for Rules {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Rules")
            .field("dir", &self.dir)
            .field("current", &self.current.load())
            .finish_non_exhaustive()
    }
}

/// The loader for `[rules]`, with the built-in script modules plus `extra`.
pub fn loader(
    config: &RulesConfig,
    extra: Vec<Arc<dyn ScriptModule>>,
) -> Result<Loader, RulesError> {
    let timezone =
        crate::support::clock::parse_timezone(&config.timezone).map_err(RulesError::Timezone)?;
    let mut modules = api::builtin(timezone);
    modules.extend(extra);
    let limits = engine::Limits {
        max_operations: config.max_operations,
        max_run_ms: config.max_run_ms,
        ..engine::Limits::default()
    };
    Ok(Loader::new(limits, modules))
}

/// `[rules] fallback` as a reply: `success`, or a text.
pub fn fallback_reply(config: &RulesConfig) -> Reply {
    match config.fallback.trim() {
        "" | "success" => Reply::Success,
        text => Reply::text(text),
    }
}

impl Rules {
    /// Loads `[rules] dir` (or the built-in rules when the folder does not exist).
    pub fn open(
        config: &RulesConfig,
        extra: Vec<Arc<dyn ScriptModule>>,
    ) -> Result<Self, RulesError> {
        let loader = loader(config, extra)?;
        let dir = config.dir.clone();
        let fingerprint = fingerprint(&dir);
        let set = match std::fs::metadata(&dir) {
            Ok(meta) if meta.is_dir() => loader.load_dir(&dir).map_err(RulesError::Load)?,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                builtin::load(&loader).map_err(RulesError::Load)?
            }
            // A file where the folder should be is a mistake, not a request for the built-in
            // rules.
            Ok(_) => {
                return Err(RulesError::Dir {
                    path: dir,
                    reason: "not a folder (point it at a folder of rules, or at none for the \
                             built-in rules)"
                        .into(),
                });
            }
            Err(e) => {
                return Err(RulesError::Dir {
                    path: dir,
                    reason: e.to_string(),
                });
            }
        };
        Ok(Self {
            current: ArcSwap::from_pointee(set),
            loader,
            dir,
            fallback: fallback_reply(config),
            fingerprint: Mutex::new(fingerprint),
            status: Mutex::new(Status {
                loaded_at: crate::support::clock::unix_now(),
                ..Status::default()
            }),
        })
    }

    /// The live set.
    pub fn current(&self) -> Arc<RuleSet> {
        self.current.load_full()
    }

    /// The rules folder.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// When the live set was loaded and the last reload's errors.
    pub fn status(&self) -> Status {
        self.status
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .clone()
    }

    /// Runs the live set on a message.
    pub async fn run(&self, message: Arc<Message>, services: Services) -> Outcome {
        self.current().run(message, services, &self.fallback).await
    }

    /// Reloads when the folder changed. CPU work: call it off the async workers.
    pub fn reload(&self) -> Reload {
        let now = fingerprint(&self.dir);
        {
            let mut last = self.fingerprint.lock().unwrap_or_else(|p| p.into_inner());
            if *last == now {
                return Reload::Unchanged;
            }
            *last = now;
        }
        if now.is_none() {
            tracing::warn!(dir = %self.dir.display(), "the rules folder is gone; the loaded rules stay live");
            return Reload::Unchanged;
        }
        match self.loader.load_dir(&self.dir) {
            Ok(set) => {
                let (rules, files) = (set.rules.len(), set.files.len());
                self.current.store(Arc::new(set));
                *self.status.lock().unwrap_or_else(|p| p.into_inner()) = Status {
                    loaded_at: crate::support::clock::unix_now(),
                    ..Status::default()
                };
                tracing::info!(rules, files, dir = %self.dir.display(), "rules reloaded");
                Reload::Reloaded { rules, files }
            }
            Err(errors) => {
                for e in &errors {
                    tracing::error!(error = %e, "rules not reloaded; the previous rules stay live");
                }
                {
                    let mut status = self.status.lock().unwrap_or_else(|p| p.into_inner());
                    status.errors.clone_from(&errors);
                    status.failed_at = Some(crate::support::clock::unix_now());
                }
                Reload::Failed(errors)
            }
        }
    }

    /// Checks the folder for changes every `every`, as one of `tasks`' background loops,
    /// until they stop or `self` is dropped.
    pub fn spawn_watcher(self: &Arc<Self>, every: Duration, tasks: &crate::bot::tasks::Tasks) {
        let weak = Arc::downgrade(self);
        tasks.spawn_loop("rules watcher", async move {
            let mut tick = tokio::time::interval(every);
            tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            loop {
                tick.tick().await;
                let Some(rules) = weak.upgrade() else { break };
                if tokio::task::spawn_blocking(move || rules.reload())
                    .await
                    .is_err()
                {
                    tracing::error!("reloading rules panicked; the previous rules stay live");
                }
            }
        });
    }
}

/// A hash of every rule and module file under `dir` (names and contents); `None` when the
/// folder does not exist.
fn fingerprint(dir: &Path) -> Option<[u8; 20]> {
    if !dir.is_dir() {
        return None;
    }
    let mut files = Vec::new();
    collect(dir, dir, 0, &mut files);
    files.sort();
    let mut hasher = Sha1::new();
    for (name, contents) in files {
        hasher.update(name.as_bytes());
        hasher.update([0]);
        hasher.update(&contents);
        hasher.update([0]);
    }
    Some(hasher.finalize().into())
}

fn collect(root: &Path, dir: &Path, depth: usize, out: &mut Vec<(String, Vec<u8>)>) {
    const MAX_DEPTH: usize = 4;
    const MAX_FILES: usize = 1_000;
    let Ok(entries) = std::fs::read_dir(dir) else {
        return;
    };
    for entry in entries.flatten() {
        if out.len() >= MAX_FILES {
            return;
        }
        let path = entry.path();
        let Ok(meta) = std::fs::metadata(&path) else {
            continue;
        };
        if meta.is_dir() {
            if depth < MAX_DEPTH {
                collect(root, &path, depth + 1, out);
            }
        } else if path.extension().is_some_and(|x| x == "rhai" || x == "toml") {
            let name = path
                .strip_prefix(root)
                .unwrap_or(&path)
                .display()
                .to_string();
            // Reading a FIFO or a device would block: such a file counts by its name only
            // (the loader refuses it, or its import).
            let contents = if meta.is_file() {
                std::fs::read(&path).unwrap_or_default()
            } else {
                b"\0not a regular file".to_vec()
            };
            out.push((name, contents));
        }
    }
}
