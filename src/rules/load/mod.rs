//! Loading a rule set: every `*.rhai` script and `*.toml` keyword table directly in the rules
//! folder, in file-name order; within a file, rules in declaration order. (Subfolders hold
//! modules for `import`; they declare no rules of their own.)
//!
//! A script declares rules at its top level:
//!
//! ```rhai
//! rule(#{ content: ["help", "帮助"] }, |msg| text("Commands: …"));
//! rule(#{ regex: "^deploy (\\w+)$" }, |msg, caps| text(`deploying ${caps[1]}`));
//! before(|msg| if msg.content == "stop" { success() });
//! ```
//!
//! Loading compiles each file, runs its top level once (under the same limits as a handler)
//! to collect the declarations, and checks them. Every error names its file and line; a set
//! with any error is refused as a whole.
//!
//! This module reads the folder and puts the set together; `scripts` compiles Rhai files and
//! collects their declarations, `keywords` reads the TOML keyword tables.

mod keywords;
mod scripts;

use std::fmt;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use rhai::{AST, Engine, EvalAltResult};

pub use scripts::ScriptFn;

use super::api::ScriptModule;
use super::conditions;
use super::engine::{self, Limits};
use super::plan::Index;
use crate::bot::Filter;
use crate::wechat::Reply;

/// Where a rule was declared.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Origin {
    /// The file, relative to the rules folder.
    pub file: Arc<str>,
    /// The line of the declaration.
    pub line: usize,
}

impl fmt::Display for Origin {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}:{}", self.file, self.line)
    }
}

/// What a rule does when its conditions match.
#[derive(Clone)]
pub enum Action {
    /// Run a script handler: it returns a reply, or nothing to try the next rule.
    Script(ScriptFn),
    /// Answer a fixed reply (keyword tables).
    Reply(Reply),
}

/// One rule.
#[derive(Clone)]
pub struct Rule {
    /// Where it was declared.
    pub origin: Origin,
    /// When it applies.
    pub filter: Filter,
    /// The conditions, as written (for listings).
    pub conditions: String,
    /// What it does.
    pub action: Action,
}

/// A `before` hook: runs for every message before the rules; a reply short-circuits them.
#[derive(Clone)]
pub struct Hook {
    /// Where it was declared.
    pub origin: Origin,
    /// The hook.
    pub script: ScriptFn,
}

/// Rules and hooks from one file, for listings.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FileSummary {
    /// The file, relative to the rules folder.
    pub name: String,
    /// Rules it declares.
    pub rules: usize,
    /// `before` hooks it declares.
    pub hooks: usize,
}

/// A loaded, checked rule set and the engine its scripts run on.
pub struct RuleSet {
    /// The engine (sandboxed; imports resolve in this set's folder).
    pub engine: Arc<Engine>,
    /// The rules, in order.
    pub rules: Vec<Rule>,
    /// The `before` hooks, in order.
    pub hooks: Vec<Hook>,
    /// What each file declared.
    pub files: Vec<FileSummary>,
    /// Where the set came from.
    pub source: Source,
    /// The limits its scripts run under.
    pub limits: Limits,
    /// Whether a rule matches by regex: its conditions are then evaluated on the blocking
    /// thread, inside the time budget (see [`super::run`]).
    pub regex_conditions: bool,
    /// What runs learned about the scripts (see [`super::run::Hints`]).
    pub hints: super::run::Hints,
    /// Which rules may match a message, built from `rules` at load (a set whose rules are
    /// changed afterwards is matched rule by rule).
    pub(crate) index: Index,
}

impl fmt::Debug for RuleSet {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RuleSet")
            .field("source", &self.source)
            .field("rules", &self.rules.len())
            .field("hooks", &self.hooks.len())
            .finish_non_exhaustive()
    }
}

/// Where a rule set came from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Source {
    /// A rules folder.
    Dir(PathBuf),
    /// The rules built into the binary (the folder does not exist).
    Builtin,
    /// No rules: an empty set.
    Empty,
}

impl fmt::Display for Source {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Dir(dir) => write!(f, "{}", dir.display()),
            Self::Builtin => f.write_str("the built-in rules"),
            Self::Empty => f.write_str("no rules"),
        }
    }
}

/// A problem in a rules file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LoadError {
    /// The file, relative to the rules folder.
    pub file: String,
    /// The line, when known.
    pub line: Option<usize>,
    /// What is wrong.
    pub message: String,
}

impl fmt::Display for LoadError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.line {
            Some(line) => write!(f, "{}:{}: {}", self.file, line, self.message),
            None => write!(f, "{}: {}", self.file, self.message),
        }
    }
}

/// A source file to load.
#[derive(Debug, Clone)]
pub struct SourceFile {
    /// Its name, relative to the rules folder.
    pub name: String,
    /// Its text.
    pub text: String,
}

/// Loads rule sets with a fixed set of script modules and limits.
#[derive(Clone)]
pub struct Loader {
    limits: Limits,
    modules: Vec<Arc<dyn ScriptModule>>,
}

impl Loader {
    /// A loader registering `modules` (plus `rule` and `before`) on every engine it builds.
    pub fn new(limits: Limits, modules: Vec<Arc<dyn ScriptModule>>) -> Self {
        Self { limits, modules }
    }

    /// The limits scripts run under.
    pub fn limits(&self) -> Limits {
        self.limits
    }

    /// Loads the folder: its `*.rhai` and `*.toml` files in name order.
    pub fn load_dir(&self, dir: &Path) -> Result<RuleSet, Vec<LoadError>> {
        let files = read_dir(dir)?;
        self.load(files, Some(dir), Source::Dir(dir.to_path_buf()))
    }

    /// Loads files given in memory (the built-in rules, tests). Imports are refused unless
    /// `dir` names a folder to resolve them in.
    pub fn load(
        &self,
        mut files: Vec<SourceFile>,
        dir: Option<&Path>,
        source: Source,
    ) -> Result<RuleSet, Vec<LoadError>> {
        files.sort_by(|a, b| a.name.cmp(&b.name));
        let mut modules = self.modules.clone();
        modules.push(Arc::new(scripts::Declarations));
        let mut engine = engine::build(&self.limits, &modules, dir);
        let mut errors = Vec::new();

        // Compile every script, with its imports of a literal path resolved now and embedded:
        // a module with an error fails the load, and handlers do not read those modules from
        // disk. (An import of a computed path is resolved when it runs, in the rules folder.)
        let mut compiled: Vec<Option<Arc<AST>>> = Vec::with_capacity(files.len());
        for file in &files {
            if file.name.ends_with(".toml") {
                compiled.push(None);
                continue;
            }
            match scripts::compile(&engine, &self.limits, file) {
                Ok(ast) => compiled.push(Some(ast)),
                Err(e) => {
                    errors.push(e);
                    compiled.push(None);
                }
            }
        }
        // A module imported at a file's top level is visible inside its handlers (which run
        // later, outside that top-level run): register it under its alias for the whole set.
        // (Files that did not compile have reported their imports already.)
        let compiled_files: Vec<SourceFile> = files
            .iter()
            .zip(&compiled)
            .filter(|(_, ast)| ast.is_some())
            .map(|(f, _)| f.clone())
            .collect();
        if let Err(mut e) = scripts::register_top_level_imports(&mut engine, &compiled_files) {
            errors.append(&mut e);
        }

        let engine = Arc::new(engine);
        let mut set = RuleSet {
            engine: Arc::clone(&engine),
            rules: Vec::new(),
            hooks: Vec::new(),
            files: Vec::new(),
            source,
            limits: self.limits,
            regex_conditions: false,
            hints: Default::default(),
            index: Index::default(),
        };
        for (file, ast) in files.iter().zip(compiled) {
            let before = (set.rules.len(), set.hooks.len());
            let result = match ast {
                None if file.name.ends_with(".toml") => keywords::load_table(file, &mut set.rules),
                // It did not compile; its error is reported already.
                None => continue,
                Some(ast) => scripts::load_script(
                    &engine,
                    &self.limits,
                    file,
                    ast,
                    &mut set.rules,
                    &mut set.hooks,
                ),
            };
            match result {
                Ok(()) => set.files.push(FileSummary {
                    name: file.name.clone(),
                    rules: set.rules.len() - before.0,
                    hooks: set.hooks.len() - before.1,
                }),
                Err(mut e) => errors.append(&mut e),
            }
        }
        set.regex_conditions = set.rules.iter().any(|r| conditions::uses_regex(&r.filter));
        if errors.is_empty() {
            set.index = Index::build(&set.rules);
            Ok(set)
        } else {
            Err(errors)
        }
    }
}

/// The file and line an error points at, and its message without the position.
pub fn locate(err: &EvalAltResult, file: &str) -> (String, Option<usize>, String) {
    match err {
        EvalAltResult::ErrorInFunctionCall(_, src, inner, _) => {
            let file = if src.is_empty() { file } else { src.as_str() };
            locate(inner, file)
        }
        EvalAltResult::ErrorInModule(name, inner, _) => {
            let module = if name.is_empty() {
                file.to_owned()
            } else {
                format!("{name}.rhai")
            };
            locate(inner, &module)
        }
        EvalAltResult::ErrorTerminated(reason, pos) => {
            (file.to_owned(), pos.line(), reason.to_string())
        }
        other => {
            let line = other.position().line();
            // The message without Rhai's " (line N, position M)": the caller prints file:line.
            let text = other.to_string();
            let message = match text.rfind(" (line ") {
                Some(i) if text.ends_with(')') => text[..i].to_owned(),
                _ => text,
            };
            (file.to_owned(), line, message)
        }
    }
}

/// The rule files directly in `dir`, read. Each must be a regular file inside the folder: a
/// FIFO or a device would block the read (or never end it), and a symbolic link leading out
/// of the folder would escape the confinement imports have.
fn read_dir(dir: &Path) -> Result<Vec<SourceFile>, Vec<LoadError>> {
    let unreadable = |e: std::io::Error| {
        vec![LoadError {
            file: dir.display().to_string(),
            line: None,
            message: format!("cannot read the rules folder: {e}"),
        }]
    };
    let root = dir.canonicalize().map_err(unreadable)?;
    let entries = std::fs::read_dir(dir).map_err(unreadable)?;
    let mut files = Vec::new();
    let mut errors = Vec::new();
    for entry in entries.flatten() {
        let path = entry.path();
        if !path.extension().is_some_and(|x| x == "rhai" || x == "toml") {
            continue;
        }
        let name = entry.file_name().to_string_lossy().into_owned();
        let mut refuse = |message: String| {
            errors.push(LoadError {
                file: name.clone(),
                line: None,
                message,
            });
        };
        // Follows symbolic links: what matters is the file read.
        let meta = match std::fs::metadata(&path) {
            Ok(meta) => meta,
            // A dangling link (an editor's lock file, `.#a.rhai`) is no rule file.
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => continue,
            Err(e) => {
                refuse(format!("cannot read: {e}"));
                continue;
            }
        };
        if meta.is_dir() {
            continue;
        }
        if !meta.is_file() {
            refuse("not a regular file (a FIFO, socket or device cannot hold rules)".into());
            continue;
        }
        if !path
            .canonicalize()
            .is_ok_and(|real| real.starts_with(&root))
        {
            refuse(
                "a symbolic link leading outside the rules folder; rule files must be inside it"
                    .into(),
            );
            continue;
        }
        match std::fs::read_to_string(&path) {
            Ok(text) => files.push(SourceFile {
                name: name.clone(),
                text,
            }),
            Err(e) => refuse(format!("cannot read: {e}")),
        }
    }
    if errors.is_empty() {
        Ok(files)
    } else {
        errors.sort_by(|a, b| a.file.cmp(&b.file));
        Err(errors)
    }
}
