//! Rhai rule files: compiling them (imports of a literal path resolved and embedded), running
//! their top level once to collect the `rule` and `before` declarations, and checking those.

use std::cell::RefCell;
use std::sync::Arc;
use std::time::{Duration, Instant};

use rhai::{AST, Dynamic, Engine, EvalAltResult, FnPtr, Map, NativeCallContext, Scope};

use super::{Action, Hook, LoadError, Origin, Rule, SourceFile, locate};
use crate::rules::api::ScriptModule;
use crate::rules::conditions;
use crate::rules::context;
use crate::rules::engine::Limits;

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
pub(super) struct Declarations;

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

/// Compiles a script, with its imports of a literal path resolved now and embedded: a module
/// with an error fails the load, and handlers do not read those modules from disk. (An import
/// of a computed path is resolved when it runs, in the rules folder.)
pub(super) fn compile(
    engine: &Engine,
    limits: &Limits,
    file: &SourceFile,
) -> Result<Arc<AST>, LoadError> {
    // Compiling runs imported modules' top-level code: under the same time limit.
    let compiling = {
        let _deadline =
            context::enter_deadline(Instant::now() + Duration::from_millis(limits.max_run_ms));
        engine.compile_into_self_contained(&Scope::new(), &file.text)
    };
    match compiling {
        Ok(mut ast) => {
            ast.set_source(file.name.as_str());
            Ok(Arc::new(ast))
        }
        Err(e) => {
            let (module, mut line, message) = locate(&e, &file.name);
            // An import that cannot be resolved: point at the line naming it.
            if let (None, EvalAltResult::ErrorModuleNotFound(path, _)) = (line, e.unwrap_inner()) {
                let quoted = format!("\"{path}\"");
                line = file
                    .text
                    .lines()
                    .position(|l| l.contains(&quoted))
                    .map(|i| i + 1);
            }
            Err(LoadError {
                file: module,
                line,
                message,
            })
        }
    }
}

/// Runs a compiled file's top level once to collect its declarations, and checks them.
pub(super) fn load_script(
    engine: &Engine,
    limits: &Limits,
    file: &SourceFile,
    ast: Arc<AST>,
    rules: &mut Vec<Rule>,
    hooks: &mut Vec<Hook>,
) -> Result<(), Vec<LoadError>> {
    // Run the top level once to collect the declarations.
    DECLARED.with(|c| *c.borrow_mut() = Some(Vec::new()));
    let run = {
        let _deadline =
            context::enter_deadline(Instant::now() + Duration::from_millis(limits.max_run_ms));
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
pub(super) fn register_top_level_imports(
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
