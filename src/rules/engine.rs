//! The sandboxed Rhai engine. One function, [`build`], makes it with every limit set:
//! operations per call (so `loop {}` ends within milliseconds), wall-clock time per message,
//! call depth, expression depth, string, array and map sizes, modules, variables; `eval`
//! disabled; `import` confined to the rules folder; `print` and `debug` routed to tracing with
//! the rule's file name. Rhai itself offers scripts no file, network or process access, and
//! huixin registers none.

use std::cell::RefCell;
use std::path::{Component, Path, PathBuf};
use std::sync::Arc;

use rhai::module_resolvers::{DummyModuleResolver, FileModuleResolver};
use rhai::{
    Dynamic, Engine, EvalAltResult, INT, ImmutableString, Module, ModuleResolver,
    NativeCallContext, Position,
};

use super::api::ScriptModule;
use super::context;

/// The limits a script runs under.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Limits {
    /// Operations one call may take (`[rules] max_operations`).
    pub max_operations: u64,
    /// Wall-clock budget for one message's scripts, in milliseconds (`[rules] max_run_ms`).
    pub max_run_ms: u64,
    /// Nested function calls.
    pub max_call_levels: usize,
    /// Expression nesting (statements, functions).
    pub max_expr_depth: usize,
    /// Bytes in one string.
    pub max_string_size: usize,
    /// Items in one array.
    pub max_array_size: usize,
    /// Entries in one map.
    pub max_map_size: usize,
    /// Modules one script may import.
    pub max_modules: usize,
    /// Variables in one scope.
    pub max_variables: usize,
}

impl Default for Limits {
    fn default() -> Self {
        Self {
            max_operations: 100_000,
            max_run_ms: 1_000,
            max_call_levels: 32,
            max_expr_depth: 64,
            max_string_size: 256 * 1024,
            max_array_size: 10_000,
            max_map_size: 10_000,
            max_modules: 16,
            max_variables: 1_000,
        }
    }
}

/// Builds an engine with `limits`, `modules` and imports resolved under `rules_dir` (none
/// allowed when `None`).
pub fn build(
    limits: &Limits,
    modules: &[Arc<dyn ScriptModule>],
    rules_dir: Option<&Path>,
) -> Engine {
    let mut engine = Engine::new();
    engine
        .set_max_operations(limits.max_operations)
        .set_max_call_levels(limits.max_call_levels)
        .set_max_expr_depths(limits.max_expr_depth, limits.max_expr_depth / 2)
        .set_max_string_size(limits.max_string_size)
        .set_max_array_size(limits.max_array_size)
        .set_max_map_size(limits.max_map_size)
        .set_max_modules(limits.max_modules)
        .set_max_variables(limits.max_variables)
        .disable_symbol("eval")
        // Values curried into a function pointer escape the size limits; closures still
        // capture what they use.
        .disable_symbol("curry");
    // Wall clock, checked every 1024 operations: a script waiting on nothing but burning
    // time is stopped even if its operation budget is large.
    // An inline run (on an async worker) yields to a thread once it has had its share.
    engine.on_progress(|ops| {
        if context::inline_spent(ops) {
            return Some(context::yield_token());
        }
        if ops % 1024 == 0 && context::past_deadline() {
            Some(Dynamic::from(
                "the time limit for rules ([rules] max_run_ms) was reached",
            ))
        } else {
            None
        }
    });
    engine.on_print(context::print);
    engine.on_debug(|text, source, pos| {
        let file = source
            .map(str::to_owned)
            .or_else(|| context::current_file().map(|f| f.to_string()));
        tracing::debug!(
            rule = file.as_deref().unwrap_or("rules"),
            line = pos.line(),
            "{}",
            text.escape_debug()
        );
    });
    match rules_dir {
        Some(dir) => {
            engine.set_module_resolver(RulesDirResolver::new(dir));
        }
        None => {
            engine.set_module_resolver(DummyModuleResolver::new());
        }
    }
    register_checked_strings(&mut engine);
    for module in modules {
        module.register(&mut engine);
    }
    engine
}

/// Rhai's own `replace` and `pad` build their result first and compare it with
/// `max_string_size` after (so two strings within the limit could make a gigabyte). These
/// versions, registered over them, work out the result's size first and refuse a string over
/// the limit before allocating it. (`+` and `+=` at most double a string within the limit,
/// and Rhai checks them right after; `to_upper` and the like grow it by a small factor.)
fn register_checked_strings(engine: &mut Engine) {
    engine
        .register_fn(
            "replace",
            |ctx: NativeCallContext, s: &mut ImmutableString, find: &str, sub: &str| {
                replace(&ctx, s, find, sub)
            },
        )
        .register_fn(
            "replace",
            |ctx: NativeCallContext, s: &mut ImmutableString, find: &str, sub: char| {
                replace(&ctx, s, find, sub.encode_utf8(&mut [0; 4]))
            },
        )
        .register_fn(
            "replace",
            |ctx: NativeCallContext, s: &mut ImmutableString, find: char, sub: &str| {
                replace(&ctx, s, find.encode_utf8(&mut [0; 4]), sub)
            },
        )
        .register_fn(
            "replace",
            |ctx: NativeCallContext, s: &mut ImmutableString, find: char, sub: char| {
                replace(
                    &ctx,
                    s,
                    find.encode_utf8(&mut [0; 4]),
                    sub.encode_utf8(&mut [0; 4]),
                )
            },
        )
        .register_fn(
            "pad",
            |ctx: NativeCallContext, s: &mut ImmutableString, len: INT, padding: char| {
                pad(&ctx, s, len, padding.encode_utf8(&mut [0; 4]))
            },
        )
        .register_fn(
            "pad",
            |ctx: NativeCallContext, s: &mut ImmutableString, len: INT, padding: &str| {
                pad(&ctx, s, len, padding)
            },
        );
}

/// Refuses a string of `size` bytes about to be made by `function` when it exceeds the
/// engine's `max_string_size`.
fn check_string_size(
    ctx: &NativeCallContext,
    function: &str,
    size: usize,
) -> Result<(), Box<EvalAltResult>> {
    let max = ctx.engine().max_string_size();
    if max > 0 && size > max {
        return Err(Box::new(EvalAltResult::ErrorDataTooLarge(
            format!("String of {size} bytes made by {function} (limit {max} bytes)"),
            ctx.call_position(),
        )));
    }
    Ok(())
}

/// `string.replace(find, sub)`: every `find` replaced by `sub`, in place.
fn replace(
    ctx: &NativeCallContext,
    string: &mut ImmutableString,
    find: &str,
    sub: &str,
) -> Result<(), Box<EvalAltResult>> {
    // As Rhai's: an empty string stays empty (even with an empty `find`).
    if string.is_empty() {
        return Ok(());
    }
    let count = string.matches(find).count();
    let size = (string.len() - count * find.len()).saturating_add(count.saturating_mul(sub.len()));
    check_string_size(ctx, "replace", size)?;
    *string = string.replace(find, sub).into();
    Ok(())
}

/// `string.pad(len, padding)`: `padding` appended (the last copy cut short) until the string
/// has `len` characters, in place.
fn pad(
    ctx: &NativeCallContext,
    string: &mut ImmutableString,
    len: INT,
    padding: &str,
) -> Result<(), Box<EvalAltResult>> {
    let have = string.chars().count();
    let want = usize::try_from(len).unwrap_or(0);
    // Rhai's own loops forever on an empty padding; nothing to add is no change.
    if want <= have || padding.is_empty() {
        return Ok(());
    }
    let missing = want - have;
    let per_copy = padding.chars().count();
    let tail: String = padding.chars().take(missing % per_copy).collect();
    let size = string
        .len()
        .saturating_add((missing / per_copy).saturating_mul(padding.len()))
        .saturating_add(tail.len());
    check_string_size(ctx, "pad", size)?;
    let mut grown = String::with_capacity(size);
    grown.push_str(string);
    for _ in 0..missing / per_copy {
        grown.push_str(padding);
    }
    grown.push_str(&tail);
    *string = grown.into();
    Ok(())
}

/// Modules importing modules: how deep `import` may nest (`a` imports `b` imports `c` is 3).
/// Each level evaluates a module inside the one importing it, on the same thread's stack.
pub const MAX_IMPORT_DEPTH: usize = 8;

/// Resolves `import "name"` to `<rules dir>/name.rhai` and nothing else: no absolute paths,
/// no `..`, no symbolic link leading out of the folder, no file that is not a regular file.
/// An import cycle (`a` imports `b` imports `a`), or imports nested deeper than
/// [`MAX_IMPORT_DEPTH`], is an error at the import that closes it.
pub struct RulesDirResolver {
    root: PathBuf,
    files: FileModuleResolver,
}

impl RulesDirResolver {
    fn new(dir: &Path) -> Self {
        let root = dir.canonicalize().unwrap_or_else(|_| dir.to_path_buf());
        Self {
            files: FileModuleResolver::new_with_path(root.clone()),
            root,
        }
    }
}

fn not_found(path: &str, pos: Position) -> Box<EvalAltResult> {
    Box::new(EvalAltResult::ErrorModuleNotFound(path.to_owned(), pos))
}

impl ModuleResolver for RulesDirResolver {
    fn resolve(
        &self,
        engine: &Engine,
        _source: Option<&str>,
        path: &str,
        pos: Position,
    ) -> Result<Arc<Module>, Box<EvalAltResult>> {
        let rel = Path::new(path);
        if rel.is_absolute() || !rel.components().all(|c| matches!(c, Component::Normal(_))) {
            return Err(not_found(path, pos));
        }
        let file = self.root.join(format!("{path}.rhai"));
        let real = match file.canonicalize() {
            Ok(real) if real.starts_with(&self.root) => real,
            _ => return Err(not_found(path, pos)),
        };
        // Reading a FIFO or a device would block (or never end): only regular files.
        if !std::fs::metadata(&real).is_ok_and(|m| m.is_file()) {
            return Err(Box::new(EvalAltResult::ErrorInModule(
                path.to_owned(),
                context::runtime_error("not a regular file (a FIFO, socket or device)"),
                pos,
            )));
        }
        // Rhai evaluates an imported module inside the import, with fresh call-depth counters:
        // a cycle would recurse until the stack overflows and the process aborts.
        let _importing = Importing::enter(real, path, pos)?;
        // Resolve against the rules folder, never against the importing file's location.
        self.files.resolve(engine, None, path, pos)
    }
}

thread_local! {
    /// The modules being imported on this thread, outermost first: (file, path as written).
    static IMPORTING: RefCell<Vec<(PathBuf, String)>> = const { RefCell::new(Vec::new()) };
}

/// One module on the [`IMPORTING`] stack, taken off when its import ends (even by error).
struct Importing(());

impl Importing {
    fn enter(real: PathBuf, path: &str, pos: Position) -> Result<Self, Box<EvalAltResult>> {
        IMPORTING.with(|stack| {
            let mut stack = stack.borrow_mut();
            if let Some(start) = stack.iter().position(|(file, _)| *file == real) {
                let chain: Vec<&str> = stack[start..]
                    .iter()
                    .map(|(_, p)| p.as_str())
                    .chain([path])
                    .collect();
                return Err(context::runtime_error_at(
                    format!("import cycle: {}", chain.join(" → ")),
                    pos,
                ));
            }
            if stack.len() >= MAX_IMPORT_DEPTH {
                return Err(context::runtime_error_at(
                    format!("import \"{path}\": imports nest more than {MAX_IMPORT_DEPTH} deep"),
                    pos,
                ));
            }
            stack.push((real, path.to_owned()));
            Ok(Self(()))
        })
    }
}

impl Drop for Importing {
    fn drop(&mut self) {
        IMPORTING.with(|stack| stack.borrow_mut().pop());
    }
}
