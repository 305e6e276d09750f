//! What a script function can reach while a rule runs: the user, the store, the session, the
//! services later modules add. Scripts run on a blocking thread (never an async worker), one
//! message at a time per thread, so the context is a thread-local set for the duration of the
//! run by [`enter`] and read by the API functions through [`with`].

use std::cell::RefCell;
use std::collections::HashMap;
use std::sync::Arc;
use std::time::Instant;

use rhai::{Dynamic, EvalAltResult, Position};

use crate::bot::middleware::Blocklist;
use crate::bot::tasks::Tasks;
use crate::store::{SessionChange, Store};

/// Services scripts may use, shared by every run. Later modules (outbound, push) put their
/// handles in `extensions` and read them back in their script functions.
#[derive(Clone, Default)]
pub struct Services {
    /// How many scripts may run at once (one app's runs share them).
    pub script_slots: ScriptSlots,
    /// The store (sessions, followers). `None` in offline checks without a database.
    pub store: Option<Store>,
    /// The runtime blocklist, when the blocklist middleware is on.
    pub blocklist: Option<Arc<Blocklist>>,
    /// Typed handles added by other modules.
    pub extensions: Arc<axum::http::Extensions>,
    /// Where work a script starts and does not wait for (a send) runs: the app's tasks, which
    /// its shutdown waits for.
    pub tasks: Tasks,
}

/// Scripts that may run at once, shared by the runs of one app: twice the cores, at least 4.
/// Bounds the memory and threads runaway scripts can take together.
#[derive(Debug, Clone)]
pub struct ScriptSlots(pub Arc<tokio::sync::Semaphore>);

impl Default for ScriptSlots {
    fn default() -> Self {
        let cores = std::thread::available_parallelism().map_or(2, std::num::NonZero::get);
        Self(Arc::new(tokio::sync::Semaphore::new((cores * 2).max(4))))
    }
}

impl std::fmt::Debug for Services {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Services")
            .field("store", &self.store.is_some())
            .field("blocklist", &self.blocklist.is_some())
            .finish_non_exhaustive()
    }
}

/// The state of one run.
pub struct ScriptContext {
    /// The user the message came from.
    pub openid: String,
    /// The rule file running now (for `print` and errors).
    pub file: Arc<str>,
    /// Shared services.
    pub services: Services,
    /// The runtime, to wait on the store from the blocking thread.
    pub runtime: tokio::runtime::Handle,
    /// The user's session, loaded on first use.
    pub session: Option<HashMap<String, Dynamic>>,
    /// Session changes, written when the run ends without error.
    pub session_changes: Vec<SessionChange>,
    /// When the run must stop (`[rules] max_run_ms`).
    pub deadline: Instant,
    /// A function put a secret within reach of the reply (a new push key): the reply must
    /// not be stored for replaying it ([`mark_secret`]).
    pub secret: bool,
}

/// Marks the current run's reply as carrying a secret (a script function that hands out a
/// new key calls it): answered once, never written to the store for retries.
pub fn mark_secret() {
    CURRENT.with(|c| {
        if let Some(ctx) = c.borrow_mut().as_mut() {
            ctx.secret = true;
        }
    });
}

thread_local! {
    static CURRENT: RefCell<Option<ScriptContext>> = const { RefCell::new(None) };
    static DEADLINE: RefCell<Option<Instant>> = const { RefCell::new(None) };
}

/// Clears the context when the run ends, even by panic.
pub struct Entered(());

impl Drop for Entered {
    fn drop(&mut self) {
        CURRENT.with(|c| c.borrow_mut().take());
        DEADLINE.with(|d| d.borrow_mut().take());
    }
}

/// Makes `ctx` current on this thread until the guard drops.
pub fn enter(ctx: ScriptContext) -> Entered {
    DEADLINE.with(|d| *d.borrow_mut() = Some(ctx.deadline));
    CURRENT.with(|c| *c.borrow_mut() = Some(ctx));
    Entered(())
}

/// Sets only a deadline (loading files runs top-level code, which has no user).
pub fn enter_deadline(deadline: Instant) -> Entered {
    DEADLINE.with(|d| *d.borrow_mut() = Some(deadline));
    Entered(())
}

/// Whether the current run is past its deadline (checked by the engine's progress hook).
pub fn past_deadline() -> bool {
    DEADLINE.with(|d| d.borrow().is_some_and(|t| Instant::now() > t))
}

/// Runs `f` on the current context; a script error when no rule is running (top-level code
/// at load time, or `huixin rules check`).
pub fn with<R>(
    f: impl FnOnce(&mut ScriptContext) -> Result<R, Box<EvalAltResult>>,
) -> Result<R, Box<EvalAltResult>> {
    CURRENT.with(|c| match c.borrow_mut().as_mut() {
        Some(ctx) => f(ctx),
        None => Err(runtime_error(
            "this function is only available while a rule handles a message",
        )),
    })
}

/// Takes the context out (at the end of a run, to read the session changes).
pub fn take() -> Option<ScriptContext> {
    CURRENT.with(|c| c.borrow_mut().take())
}

/// The rule file running now, if any.
pub fn current_file() -> Option<Arc<str>> {
    CURRENT.with(|c| c.borrow().as_ref().map(|ctx| Arc::clone(&ctx.file)))
}

/// Switches the current file (as the run moves from rule to rule).
pub fn set_file(file: &Arc<str>) {
    CURRENT.with(|c| {
        if let Some(ctx) = c.borrow_mut().as_mut() {
            ctx.file = Arc::clone(file);
        }
    });
}

/// A script runtime error with a message.
pub fn runtime_error(message: impl Into<String>) -> Box<EvalAltResult> {
    runtime_error_at(message, Position::NONE)
}

/// A script runtime error with a message, at `pos` in the script.
pub fn runtime_error_at(message: impl Into<String>, pos: Position) -> Box<EvalAltResult> {
    Box::new(EvalAltResult::ErrorRuntime(
        Dynamic::from(message.into()),
        pos,
    ))
}
