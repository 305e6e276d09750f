//! What a script function can reach while a rule runs: the user, the store, the session, the
//! services later modules add. A run is synchronous and one message's at a time on its thread,
//! so the context is a thread-local set for the duration of the run by [`enter`] and read by
//! the API functions through [`with`].
//!
//! A run starts **in place**, on the async worker that handles the message ([`enter_inline`]):
//! most rules read the message and answer, which takes microseconds, and a hop to another
//! thread would cost more than the script. An inline run may not wait on anything, so it
//! *yields* ([`Need`]) the moment it would: a function that needs the runtime (the store, a
//! send: [`ScriptContext::runtime`]), the session when it was not loaded before the run, or a
//! script past [`INLINE_OPS`] operations or [`INLINE_TIME`]. A yielded run has changed nothing
//! (session changes are applied after a run, output is held until it ends), so it is dropped
//! and run again from the start: with the session loaded, or on a blocking thread where it
//! may wait and the deadline watchdog keeps running beside it.

use std::cell::{Cell, RefCell};
use std::collections::HashMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

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
    /// The runtime, to wait on the store from the blocking thread ([`Self::runtime`]).
    pub handle: tokio::runtime::Handle,
    /// The user's session, loaded on first use.
    pub session: Option<HashMap<String, Dynamic>>,
    /// Session changes, written when the run ends without error.
    pub session_changes: Vec<SessionChange>,
    /// When the run must stop (`[rules] max_run_ms`).
    pub deadline: Instant,
    /// A function put a secret within reach of the reply (a new push key): the reply must
    /// not be stored for replaying it ([`mark_secret`]).
    pub secret: bool,
    /// What `print` wrote, held until the run ends: a yielded inline run prints nothing.
    pub printed: Vec<(Arc<str>, String)>,
}

impl ScriptContext {
    /// The runtime, to wait on the store or start a send. An inline run yields here
    /// ([`Need::Thread`]): it is run again on a blocking thread, where waiting is allowed.
    pub fn runtime(&self) -> Result<&tokio::runtime::Handle, Box<EvalAltResult>> {
        if inline() {
            return Err(yield_for(Need::Thread));
        }
        Ok(&self.handle)
    }

    /// Logs what the run printed (once it ran to its end, failed or not).
    pub fn flush_printed(&mut self) {
        for (file, text) in self.printed.drain(..) {
            tracing::info!(rule = &*file, "{}", text.escape_debug());
        }
    }
}

/// Operations an inline run may take (in each call) before it moves to a blocking thread.
pub const INLINE_OPS: u64 = 5_000;
/// Wall-clock time an inline run may take before it moves to a blocking thread: the async
/// worker it runs on serves other requests and timers.
pub const INLINE_TIME: Duration = Duration::from_micros(500);

/// Why an inline run stopped before its end.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Need {
    /// The user's session, not loaded before the run.
    Session,
    /// A blocking thread: the run waits on something, or takes long.
    Thread,
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
    /// Set while an inline run is current: when its time is up.
    static INLINE: Cell<Option<Instant>> = const { Cell::new(None) };
    /// What the current inline run yielded for, if it did.
    static YIELDED: Cell<Option<Need>> = const { Cell::new(None) };
}

/// Clears the context when the run ends, even by panic.
pub struct Entered(());

impl Drop for Entered {
    fn drop(&mut self) {
        CURRENT.with(|c| c.borrow_mut().take());
        DEADLINE.with(|d| d.borrow_mut().take());
        INLINE.with(|i| i.set(None));
        YIELDED.with(|y| y.set(None));
    }
}

/// Makes `ctx` current on this thread until the guard drops.
pub fn enter(ctx: ScriptContext) -> Entered {
    DEADLINE.with(|d| *d.borrow_mut() = Some(ctx.deadline));
    CURRENT.with(|c| *c.borrow_mut() = Some(ctx));
    Entered(())
}

/// Makes `ctx` current for an inline run on an async worker: it yields rather than wait.
pub fn enter_inline(ctx: ScriptContext) -> Entered {
    INLINE.with(|i| i.set(Some(Instant::now() + INLINE_TIME)));
    YIELDED.with(|y| y.set(None));
    enter(ctx)
}

/// Whether an inline run is current.
pub fn inline() -> bool {
    INLINE.with(|i| i.get().is_some())
}

/// Stops the current inline run for `need`: the error ends it (scripts cannot catch it), and
/// the run records why, even if the error is lost on its way out.
pub fn yield_for(need: Need) -> Box<EvalAltResult> {
    YIELDED.with(|y| y.set(Some(y.get().map_or(need, |was| was.max(need)))));
    Box::new(EvalAltResult::ErrorTerminated(
        Dynamic::from("moved off the async worker"),
        Position::NONE,
    ))
}

/// For the engine's progress hook: the token that stops an inline run past its share,
/// recorded as a yield for [`Need::Thread`].
pub fn yield_token() -> Dynamic {
    YIELDED.with(|y| y.set(Some(Need::Thread)));
    Dynamic::from("moved off the async worker")
}

/// What the current inline run yielded for.
pub fn yielded() -> Option<Need> {
    YIELDED.with(Cell::get)
}

/// For the engine's progress hook: whether an inline run at `ops` operations has had its
/// share and must move to a thread.
pub fn inline_spent(ops: u64) -> bool {
    INLINE.with(|i| {
        i.get().is_some_and(|until| {
            ops > INLINE_OPS || (ops.is_multiple_of(128) && Instant::now() > until)
        })
    })
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

/// Logs a script's `print`, or holds it until the run ends when one is current.
pub fn print(text: &str) {
    let held = CURRENT.with(|c| match c.borrow_mut().as_mut() {
        Some(ctx) => {
            let file = Arc::clone(&ctx.file);
            ctx.printed.push((file, text.to_owned()));
            true
        }
        None => false,
    });
    if !held {
        tracing::info!(rule = "rules", "{}", text.escape_debug());
    }
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
