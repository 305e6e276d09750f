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

use std::cell::RefCell;
use std::fmt;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};

use rhai::{AST, Dynamic, Engine, EvalAltResult, FnPtr, Map, NativeCallContext, Scope};

use super::api::ScriptModule;
use super::conditions;
use super::context;
use super::engine::{self, Limits};
use crate::bot::Filter;
use crate::wechat::{Article, Reply};

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

/// A script function to call: a closure or a named function of the file.
#[derive(Clone)]
pub struct ScriptFn {
    /// The file's compiled script (the function lives in it).
    pub ast: Arc<AST>,
    /// The function.
    pub handler: FnPtr,
    /// How many arguments it takes besides captured variables: 0, 1 (msg) or 2 (msg, caps).
    pub arity: usize,
}

impl ScriptFn {
    /// The handler with its own copy of the values it captured: what one call changes, the
    /// next never sees (no state leaks between users or survives a failed run).
    pub fn fresh(&self) -> FnPtr {
        let mut handler = self.handler.clone();
        let owned: Vec<Dynamic> = handler.curry().iter().map(owned_copy).collect();
        handler.set_curry(owned);
        handler
    }
}

/// A deep copy with every shared value (a captured variable) replaced by its contents.
fn owned_copy(value: &Dynamic) -> Dynamic {
    let value = value.flatten_clone();
    if value.is_array() {
        let items = value.into_array().unwrap_or_default();
        return Dynamic::from_array(items.iter().map(owned_copy).collect());
    }
    if value.is_map() {
        let map = value.cast::<Map>();
        return Dynamic::from_map(
            map.iter()
                .map(|(k, v)| (k.clone(), owned_copy(v)))
                .collect(),
        );
    }
    value
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

/// Declarations collected while a file's top level runs.
enum Declared {
    Rule {
        conditions: Map,
        handler: FnPtr,
        line: usize,
    },
    Before {
        handler: FnPtr,
        line: usize,
    },
}

thread_local! {
    static DECLARED: RefCell<Option<Vec<Declared>>> = const { RefCell::new(None) };
}

fn declare(d: Declared) -> Result<(), Box<EvalAltResult>> {
    DECLARED.with(|c| match c.borrow_mut().as_mut() {
        Some(list) => {
            list.push(d);
            Ok(())
        }
        None => Err(context::runtime_error(
            "rule() and before() declare rules: call them at the top level of a rules file",
        )),
    })
}

/// The declaration functions, `rule` and `before`.
struct Declarations;

impl ScriptModule for Declarations {
    fn name(&self) -> &'static str {
        "declarations"
    }

    fn register(&self, engine: &mut Engine) {
        engine
            .register_fn(
                "rule",
                |ctx: NativeCallContext, conditions: Map, handler: FnPtr| {
                    let line = ctx.call_position().line().unwrap_or(0);
                    declare(Declared::Rule {
                        conditions,
                        handler,
                        line,
                    })
                },
            )
            .register_fn("rule", |ctx: NativeCallContext, handler: FnPtr| {
                let line = ctx.call_position().line().unwrap_or(0);
                declare(Declared::Rule {
                    conditions: Map::new(),
                    handler,
                    line,
                })
            })
            .register_fn("before", |ctx: NativeCallContext, handler: FnPtr| {
                let line = ctx.call_position().line().unwrap_or(0);
                declare(Declared::Before { handler, line })
            });
    }
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
        let files = read_dir(dir).map_err(|e| {
            vec![LoadError {
                file: dir.display().to_string(),
                line: None,
                message: e,
            }]
        })?;
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
        modules.push(Arc::new(Declarations));
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
            // Compiling runs imported modules' top-level code: under the same time limit.
            let compiling = {
                let _deadline = context::enter_deadline(
                    Instant::now() + Duration::from_millis(self.limits.max_run_ms),
                );
                engine.compile_into_self_contained(&Scope::new(), &file.text)
            };
            match compiling {
                Ok(mut ast) => {
                    ast.set_source(file.name.as_str());
                    compiled.push(Some(Arc::new(ast)));
                }
                Err(e) => {
                    let (module, mut line, message) = locate(&e, &file.name);
                    // An import that cannot be resolved: point at the line naming it.
                    if let (None, EvalAltResult::ErrorModuleNotFound(path, _)) =
                        (line, e.unwrap_inner())
                    {
                        let quoted = format!("\"{path}\"");
                        line = file
                            .text
                            .lines()
                            .position(|l| l.contains(&quoted))
                            .map(|i| i + 1);
                    }
                    errors.push(LoadError {
                        file: module,
                        line,
                        message,
                    });
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
        if let Err(mut e) = register_top_level_imports(&mut engine, &compiled_files) {
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
        };
        for (file, ast) in files.iter().zip(compiled) {
            let before = (set.rules.len(), set.hooks.len());
            let result = match ast {
                None if file.name.ends_with(".toml") => load_table(file, &mut set.rules),
                // It did not compile; its error is reported already.
                None => continue,
                Some(ast) => self.load_script(&engine, file, ast, &mut set.rules, &mut set.hooks),
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
        if errors.is_empty() {
            Ok(set)
        } else {
            Err(errors)
        }
    }

    fn load_script(
        &self,
        engine: &Engine,
        file: &SourceFile,
        ast: Arc<AST>,
        rules: &mut Vec<Rule>,
        hooks: &mut Vec<Hook>,
    ) -> Result<(), Vec<LoadError>> {
        // Run the top level once to collect the declarations.
        DECLARED.with(|c| *c.borrow_mut() = Some(Vec::new()));
        let run = {
            let _deadline = context::enter_deadline(
                Instant::now() + Duration::from_millis(self.limits.max_run_ms),
            );
            engine.run_ast_with_scope(&mut Scope::new(), &ast)
        };
        let declared = DECLARED.with(|c| c.borrow_mut().take()).unwrap_or_default();
        if let Err(e) = run {
            let (module, line, message) = locate(&e, &file.name);
            return Err(vec![LoadError {
                file: module,
                line,
                message,
            }]);
        }

        let file_name: Arc<str> = Arc::from(file.name.as_str());
        let mut errors = Vec::new();
        for d in declared {
            let (handler, line) = match &d {
                Declared::Rule { handler, line, .. } | Declared::Before { handler, line } => {
                    (handler.clone(), *line)
                }
            };
            let origin = Origin {
                file: Arc::clone(&file_name),
                line,
            };
            let script = match script_fn(&ast, handler) {
                Ok(s) => s,
                Err(message) => {
                    errors.push(LoadError {
                        file: file.name.clone(),
                        line: Some(line),
                        message,
                    });
                    continue;
                }
            };
            match d {
                Declared::Before { .. } => {
                    if script.arity > 1 {
                        errors.push(LoadError {
                            file: file.name.clone(),
                            line: Some(line),
                            message: "a before hook takes at most one parameter (msg)".into(),
                        });
                        continue;
                    }
                    hooks.push(Hook { origin, script });
                }
                Declared::Rule { conditions, .. } => {
                    match rhai_conditions(&conditions).and_then(|p| conditions::build(&p)) {
                        Ok((filter, summary)) => rules.push(Rule {
                            origin,
                            filter,
                            conditions: summary,
                            action: Action::Script(script),
                        }),
                        Err(message) => errors.push(LoadError {
                            file: file.name.clone(),
                            line: Some(line),
                            message,
                        }),
                    }
                }
            }
        }
        if errors.is_empty() {
            Ok(())
        } else {
            Err(errors)
        }
    }
}

/// The handler as a callable script function, with its arity checked.
fn script_fn(ast: &Arc<AST>, handler: FnPtr) -> Result<ScriptFn, String> {
    let name = handler.fn_name();
    let curried = handler.curry().len();
    let arities: Vec<usize> = ast
        .iter_functions()
        .filter(|f| f.name == name && f.params.len() >= curried)
        .map(|f| f.params.len() - curried)
        .collect();
    let arity = arities
        .iter()
        .copied()
        .filter(|a| *a <= 2)
        .max()
        .ok_or_else(|| match arities.is_empty() {
            true => format!("the handler `{name}` is not a function of this file (use a closure |msg| … or a fn defined here)"),
            false => "a handler takes at most two parameters (msg, caps)".to_owned(),
        })?;
    Ok(ScriptFn {
        ast: Arc::clone(ast),
        handler,
        arity,
    })
}

/// `import "path" as alias;` on a line of its own: a file's imports with a literal path.
/// (One inside a function is made visible everywhere too, which does no harm.)
fn top_level_imports(text: &str) -> Vec<(String, String)> {
    static IMPORT: std::sync::LazyLock<regex::Regex> = std::sync::LazyLock::new(|| {
        regex::Regex::new(r#"(?m)^\s*import\s+"([^"]+)"\s+as\s+([A-Za-z_][A-Za-z0-9_]*)\s*;"#)
            .expect("a valid pattern")
    });
    IMPORT
        .captures_iter(text)
        .map(|c| (c[1].to_owned(), c[2].to_owned()))
        .collect()
}

/// Registers every file's top-level imports as modules visible everywhere in the set.
fn register_top_level_imports(
    engine: &mut Engine,
    files: &[SourceFile],
) -> Result<(), Vec<LoadError>> {
    let mut aliases: std::collections::BTreeMap<String, (String, String)> = Default::default();
    let mut errors = Vec::new();
    for file in files.iter().filter(|f| f.name.ends_with(".rhai")) {
        for (path, alias) in top_level_imports(&file.text) {
            match aliases.get(&alias) {
                Some((other_path, other_file)) if *other_path != path => errors.push(LoadError {
                    file: file.name.clone(),
                    line: file.text.lines().position(|l| l.contains(&format!("as {alias}"))).map(|i| i + 1),
                    message: format!(
                        "`{alias}` already names \"{other_path}\" (imported in {other_file}); use another name"
                    ),
                }),
                Some(_) => {}
                None => {
                    let module = engine
                        .module_resolver()
                        .resolve(engine, None, &path, rhai::Position::NONE)
                        .map_err(|e| {
                            let (_, _, message) = locate(&e, &file.name);
                            LoadError { file: file.name.clone(), line: None, message }
                        });
                    match module {
                        Ok(module) => {
                            aliases.insert(alias.clone(), (path, file.name.clone()));
                            engine.register_static_module(alias.as_str(), module);
                        }
                        Err(e) => errors.push(e),
                    }
                }
            }
        }
    }
    if errors.is_empty() {
        Ok(())
    } else {
        Err(errors)
    }
}

/// Conditions from a Rhai map: each value a string (or number) or an array of them.
fn rhai_conditions(map: &Map) -> Result<Vec<(String, Vec<String>)>, String> {
    map.iter()
        .map(|(k, v)| {
            let values = if v.is_array() {
                v.clone()
                    .into_array()
                    .unwrap_or_default()
                    .into_iter()
                    .map(|x| scalar(k, &x))
                    .collect::<Result<Vec<_>, _>>()?
            } else {
                vec![scalar(k, v)?]
            };
            Ok((k.to_string(), values))
        })
        .collect()
}

fn scalar(key: &str, v: &Dynamic) -> Result<String, String> {
    if v.is_string() || v.is_int() || v.is_char() {
        Ok(v.to_string())
    } else {
        Err(format!(
            "condition `{key}` takes text or a list of texts, not {}",
            v.type_name()
        ))
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

/// The rule files directly in `dir`, read.
fn read_dir(dir: &Path) -> Result<Vec<SourceFile>, String> {
    let entries =
        std::fs::read_dir(dir).map_err(|e| format!("cannot read the rules folder: {e}"))?;
    let mut files = Vec::new();
    for entry in entries.flatten() {
        let path = entry.path();
        let is_rule =
            path.is_file() && path.extension().is_some_and(|x| x == "rhai" || x == "toml");
        if !is_rule {
            continue;
        }
        let name = entry.file_name().to_string_lossy().into_owned();
        let text = std::fs::read_to_string(&path).map_err(|e| format!("{name}: {e}"))?;
        files.push(SourceFile { name, text });
    }
    Ok(files)
}

/// Keys of a keyword-table entry that give its reply.
const REPLY_KEYS: &[&str] = &[
    "text",
    "image",
    "voice",
    "news",
    "transfer_customer_service",
    "success",
];

/// A keyword file: `[[reply]]` entries and nothing else.
#[derive(serde::Deserialize)]
#[serde(deny_unknown_fields)]
struct TableFile {
    #[serde(default)]
    reply: Vec<toml::Spanned<toml::Table>>,
}

/// Loads a keyword table: `[[reply]]` entries, each with conditions and one reply.
fn load_table(file: &SourceFile, rules: &mut Vec<Rule>) -> Result<(), Vec<LoadError>> {
    let err = |line: Option<usize>, message: String| LoadError {
        file: file.name.clone(),
        line,
        message,
    };
    let table: TableFile = toml::from_str(&file.text).map_err(|e| {
        let line = e.span().map(|s| line_of(&file.text, s.start));
        let message = e.message().trim();
        // Serde's words for the two structural mistakes, in the file's own terms.
        let message = if let Some(rest) = message.strip_prefix("unknown field ") {
            let name = rest.split(',').next().unwrap_or(rest);
            format!("unknown table {name}: a keyword file holds [[reply]] entries only")
        } else if message.contains("expected a sequence") {
            "`reply` must be written [[reply]], one table per entry".to_owned()
        } else {
            message.to_owned()
        };
        vec![err(line, message)]
    })?;
    let mut errors = Vec::new();
    let file_name: Arc<str> = Arc::from(file.name.as_str());
    for entry in &table.reply {
        let line = line_of(&file.text, entry.span().start);
        match table_rule(entry.get_ref()) {
            Ok((filter, conditions, reply)) => rules.push(Rule {
                origin: Origin {
                    file: Arc::clone(&file_name),
                    line,
                },
                filter,
                conditions,
                action: Action::Reply(reply),
            }),
            Err(message) => errors.push(err(Some(line), message)),
        }
    }
    if errors.is_empty() {
        Ok(())
    } else {
        Err(errors)
    }
}

fn table_rule(entry: &toml::Table) -> Result<(Filter, String, Reply), String> {
    let mut conditions = Vec::new();
    let mut replies = Vec::new();
    for (key, value) in entry {
        if REPLY_KEYS.contains(&key.as_str()) {
            replies.push((key.as_str(), value));
            continue;
        }
        let values = match value {
            toml::Value::String(s) => vec![s.clone()],
            toml::Value::Integer(n) => vec![n.to_string()],
            toml::Value::Array(a) => a
                .iter()
                .map(|v| match v {
                    toml::Value::String(s) => Ok(s.clone()),
                    toml::Value::Integer(n) => Ok(n.to_string()),
                    _ => Err(format!("condition `{key}` takes text or a list of texts")),
                })
                .collect::<Result<_, _>>()?,
            _ => return Err(format!("condition `{key}` takes text or a list of texts")),
        };
        conditions.push((key.clone(), values));
    }
    let (filter, summary) = conditions::build(&conditions).map_err(|e| {
        if e.starts_with("unknown condition") {
            format!("{e}; or a reply: {}", REPLY_KEYS.join(", "))
        } else {
            e
        }
    })?;
    let [(kind, value)] = replies.as_slice() else {
        return Err(format!(
            "an entry needs exactly one reply ({}); this one has {}",
            REPLY_KEYS.join(", "),
            replies.len()
        ));
    };
    let text = |v: &toml::Value| {
        v.as_str()
            .map(str::to_owned)
            .ok_or_else(|| format!("`{kind}` takes text"))
    };
    let reply = match *kind {
        "text" => {
            let t = text(value)?;
            if t.trim().is_empty() {
                return Err("`text` is empty (use success = true to answer nothing)".into());
            }
            Reply::text(t)
        }
        "image" => Reply::image(text(value)?),
        "voice" => Reply::voice(text(value)?),
        "transfer_customer_service" => match value {
            toml::Value::Boolean(true) => Reply::transfer_customer_service(None),
            toml::Value::String(kf) => Reply::transfer_customer_service(Some(kf.clone())),
            _ => return Err("`transfer_customer_service` takes true or an agent account".into()),
        },
        "success" => Reply::Success,
        "news" => {
            let items = value.as_array().ok_or("`news` takes a list of articles")?;
            let articles = items
                .iter()
                .map(|item| {
                    let t = item
                        .as_table()
                        .ok_or("each article is a table {title, description, url, pic_url}")?;
                    let field = |k: &str| {
                        t.get(k)
                            .and_then(|v| v.as_str())
                            .unwrap_or_default()
                            .to_owned()
                    };
                    Ok(Article {
                        title: field("title"),
                        description: field("description"),
                        url: field("url"),
                        pic_url: field("pic_url"),
                    })
                })
                .collect::<Result<Vec<_>, String>>()?;
            if articles.is_empty() {
                return Err("`news` needs at least one article".into());
            }
            Reply::News(articles)
        }
        _ => return Err(format!("unknown reply `{kind}`")),
    };
    Ok((filter, summary, reply))
}

/// The 1-based line of byte `offset`.
fn line_of(text: &str, offset: usize) -> usize {
    text[..offset.min(text.len())].matches('\n').count() + 1
}
