//! Running a rule set on a message. Conditions are evaluated first, in Rust (a set with a regex
//! condition evaluates them on the blocking thread, counted in `[rules] max_run_ms`, since a
//! regex on a long text may take a while); only the handlers of matching rules run, in order:
//! in place on the async worker while they neither wait nor take long, else on a blocking
//! thread where the deadline watchdog keeps running beside them (see [`super::context`]),
//! with the message's session and services in reach. The
//! first reply wins; a handler returning nothing passes to the next matching rule; a
//! keyword-table rule always replies.
//!
//! A handler that fails or hits a limit ends the run: the error is logged with its file and
//! line, session changes are dropped, and the message gets `[rules] fallback`.

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, AtomicU32, Ordering};
use std::sync::{Arc, OnceLock};
use std::time::{Duration, Instant};

use rhai::{Dynamic, EvalAltResult};

use super::api::message::message_map;
use super::api::session;
use super::context::{self, Need, ScriptContext, Services};
use super::load::{Action, Origin, RuleSet, ScriptFn};
use crate::bot::Captures;
use crate::store::SessionChange;
use crate::wechat::{Message, Reply};

/// The longest text (content and event key together, in bytes) whose regex conditions are
/// matched on the async worker. Rule regexes are capped at 1 MiB compiled (the crafted worst
/// case took about 3 µs a byte at 7 MiB), so this much text costs a millisecond at most;
/// longer texts go to the blocking thread.
const INLINE_REGEX_TEXT: usize = 512;

/// The bytes regex conditions look at: the text's content and the event key.
fn matched_text_len(message: &Message) -> usize {
    message.content().map_or(0, str::len) + message.event_key().map_or(0, str::len)
}

/// What running the rules produced.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Outcome {
    /// The reply (`success` when no rule replied).
    pub reply: Reply,
    /// The rule (or hook) that replied, if any.
    pub replied_by: Option<Origin>,
    /// A script failure, with where it happened; the reply is then the fallback.
    pub error: Option<ScriptError>,
    /// The reply may carry a secret a script function handed out (a new push key): it is
    /// answered once and never stored for replaying it to a retry.
    pub secret: bool,
}

/// A script failure at run time.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ScriptError {
    /// The file (a rule file, or an imported module).
    pub file: String,
    /// The line, when known.
    pub line: Option<usize>,
    /// What went wrong.
    pub message: String,
}

impl std::fmt::Display for ScriptError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self.line {
            Some(line) => write!(f, "{}:{}: {}", self.file, line, self.message),
            None => write!(f, "{}: {}", self.file, self.message),
        }
    }
}

/// A run's plan: the matching rules, in order, with their captures.
pub(crate) type Plan = Vec<(usize, Captures)>;

/// How one attempt at running a plan ended.
enum Attempt {
    /// The run went to its end (or failed): the outcome and the session changes to apply.
    Done(Box<Outcome>, Vec<SessionChange>),
    /// An inline run stopped for `need` in script `slot` (see [`Hints`]); nothing happened.
    Yielded { need: Need, slot: usize },
}

impl RuleSet {
    /// Runs the rules on `message`. `fallback` answers a failed run.
    ///
    /// Conditions first, in Rust; a plan without scripts answers at once. Scripts then run in
    /// place on this async worker, with the user's session loaded first when the rules are
    /// known to read it; a run that must wait on something, or takes long, yields and runs
    /// again on a blocking thread (see [`super::context`]).
    pub async fn run(
        self: &Arc<Self>,
        message: Arc<Message>,
        services: Services,
        fallback: &Reply,
    ) -> Outcome {
        // Conditions in Rust. Without a regex, or on a short text, they take microseconds:
        // evaluated here, and a set that needs no script answers without leaving the async
        // worker. A regex is linear in the text but can still take long on a long message, so
        // a set with one evaluates a long message's conditions on the blocking thread, inside
        // the run's time budget, where the reply deadline's watchdog still answers on time.
        let plan = if self.regex_conditions && matched_text_len(&message) > INLINE_REGEX_TEXT {
            None
        } else {
            let plan = self.plan(&message);
            if self.hooks.is_empty() {
                match plan.first() {
                    None => return no_reply(),
                    Some((i, _)) => {
                        if let Action::Reply(reply) = &self.rules[*i].action {
                            return Outcome {
                                reply: reply.clone(),
                                replied_by: Some(self.rules[*i].origin.clone()),
                                error: None,
                                secret: false,
                            };
                        }
                    }
                }
            }
            Some(plan)
        };

        let mut session = None;
        if let Some(plan) = &plan
            && self.hints.inline_first(self.slots(plan))
        {
            if self.hints.wants_session(self.slots(plan)) {
                session = prefetch(&services, &message).await;
            }
            loop {
                let ctx = self.context(&message, &services, session.clone());
                match self.attempt(&message, Some(plan), ctx, true) {
                    Attempt::Done(outcome, changes) => {
                        let outcome = *outcome;
                        self.hints.ran_inline(self.slots(plan));
                        return self
                            .settle(outcome, changes, &message, &services, fallback)
                            .await;
                    }
                    Attempt::Yielded { need, slot } => {
                        self.hints
                            .note(self.hooks.len() + self.rules.len(), slot, need);
                        if need == Need::Session && session.is_none() {
                            session = prefetch(&services, &message).await;
                            if session.is_some() {
                                continue;
                            }
                        }
                        break;
                    }
                }
            }
        }

        // At most a few scripts at once on threads: bounds the memory and threads runaway
        // scripts can take together. A message waiting for a slot is still covered by the
        // deadline.
        let slots = Arc::clone(&services.script_slots.0);
        let Ok(_slot) = slots.acquire().await else {
            return failed(
                ScriptError {
                    file: "rules".into(),
                    line: None,
                    message: "the rules are shutting down".into(),
                },
                fallback,
            );
        };
        let set = Arc::clone(self);
        let ctx = self.context(&message, &services, session);
        let ran_on = Arc::clone(&message);
        // Not in place with `block_in_place`: this task must stay free to notice the reply
        // deadline while a script takes long, or the watchdog could not answer in time.
        let ran = tokio::task::spawn_blocking(move || {
            match set.attempt(&ran_on, plan.as_deref(), ctx, false) {
                Attempt::Done(outcome, changes) => (*outcome, changes),
                // Only inline runs yield.
                Attempt::Yielded { .. } => (no_reply(), Vec::new()),
            }
        })
        .await
        .map_err(|join| format!("the rules panicked: {join}"));
        let (outcome, changes) = match ran {
            Ok(result) => result,
            Err(message) => {
                let error = ScriptError {
                    file: "rules".into(),
                    line: None,
                    message,
                };
                (failed(error, fallback), Vec::new())
            }
        };
        self.settle(outcome, changes, &message, &services, fallback)
            .await
    }

    /// The end of a run: a failure logged and answered with the fallback; the session changes
    /// written before the reply goes out.
    async fn settle(
        &self,
        outcome: Outcome,
        changes: Vec<SessionChange>,
        message: &Message,
        services: &Services,
        fallback: &Reply,
    ) -> Outcome {
        let outcome = match outcome.error {
            Some(error) => {
                tracing::error!(rule = %error, "rule failed; answered the fallback");
                failed(error, fallback)
            }
            None => outcome,
        };
        // A reply that says "recorded" must not go out when the recording failed.
        if !changes.is_empty()
            && let Some(store) = &services.store
            && let Err(e) = store
                .session_apply(
                    message.from.as_str(),
                    &changes,
                    crate::support::clock::unix_now(),
                )
                .await
        {
            let error = ScriptError {
                file: outcome
                    .replied_by
                    .as_ref()
                    .map_or_else(|| "rules".to_owned(), |o| o.file.to_string()),
                line: outcome.replied_by.as_ref().map(|o| o.line),
                message: format!("the session could not be saved: {e}"),
            };
            tracing::error!(rule = %error, "session not saved; answered the fallback");
            return failed(error, fallback);
        }
        outcome
    }

    /// A fresh context for a run on `message`, starting from `session` when it was loaded.
    fn context(
        &self,
        message: &Message,
        services: &Services,
        session: Option<HashMap<String, Dynamic>>,
    ) -> ScriptContext {
        ScriptContext {
            openid: message.from.as_str().to_owned(),
            file: Arc::from(""),
            services: services.clone(),
            handle: tokio::runtime::Handle::current(),
            session,
            session_changes: Vec::new(),
            deadline: Instant::now() + Duration::from_millis(self.limits.max_run_ms),
            secret: false,
            printed: Vec::new(),
        }
    }

    /// The script slots ([`Hints`]) a plan runs: every hook, then the planned rules.
    fn slots<'a>(&'a self, plan: &'a [(usize, Captures)]) -> impl Iterator<Item = usize> + 'a {
        let hooks = self.hooks.len();
        (0..hooks).chain(
            plan.iter()
                .filter(|(i, _)| matches!(self.rules[*i].action, Action::Script(_)))
                .map(move |(i, _)| hooks + i),
        )
    }

    /// One run of the hooks and the plan (made here when `None`), in `ctx`: in place on an
    /// async worker (`inline`, which may yield) or on a blocking thread.
    fn attempt(
        &self,
        message: &Message,
        plan: Option<&[(usize, Captures)]>,
        ctx: ScriptContext,
        inline: bool,
    ) -> Attempt {
        let _entered = if inline {
            context::enter_inline(ctx)
        } else {
            context::enter(ctx)
        };
        // The deadline is set: time spent matching counts against the scripts' budget.
        let made;
        let plan = match plan {
            Some(plan) => plan,
            None => {
                made = self.plan(message);
                &made
            }
        };
        let msg = Dynamic::from_map(message_map(message));
        let (mut outcome, slot) = self.run_plan(&msg, plan);
        if let Some(need) = context::yielded() {
            return Attempt::Yielded { need, slot };
        }
        let changes = match context::take() {
            Some(mut ctx) => {
                ctx.flush_printed();
                if outcome.error.is_none() {
                    outcome.secret = ctx.secret;
                    ctx.session_changes
                } else {
                    Vec::new()
                }
            }
            None => Vec::new(),
        };
        Attempt::Done(Box::new(outcome), changes)
    }

    /// Runs the hooks, then the planned rules; with the slot of the last script called.
    fn run_plan(&self, msg: &Dynamic, plan: &[(usize, Captures)]) -> (Outcome, usize) {
        for (slot, hook) in self.hooks.iter().enumerate() {
            match self.call(&hook.script, &hook.origin, msg, None) {
                Ok(None) => {}
                Ok(Some(reply)) => {
                    let outcome = Outcome {
                        reply,
                        replied_by: Some(hook.origin.clone()),
                        error: None,
                        secret: false,
                    };
                    return (outcome, slot);
                }
                Err(error) => return (errored(error), slot),
            }
        }
        let mut last = 0;
        for (i, caps) in plan {
            let rule = &self.rules[*i];
            let result = match &rule.action {
                Action::Reply(reply) => Ok(Some(reply.clone())),
                Action::Script(script) => {
                    last = self.hooks.len() + i;
                    self.call(script, &rule.origin, msg, Some(caps.clone()))
                }
            };
            match result {
                Ok(None) => {}
                Ok(Some(reply)) => {
                    let outcome = Outcome {
                        reply,
                        replied_by: Some(rule.origin.clone()),
                        error: None,
                        secret: false,
                    };
                    return (outcome, last);
                }
                Err(error) => return (errored(error), last),
            }
        }
        (no_reply(), last)
    }

    /// Calls one handler and reads what it returned.
    fn call(
        &self,
        script: &ScriptFn,
        origin: &Origin,
        msg: &Dynamic,
        caps: Option<Captures>,
    ) -> Result<Option<Reply>, ScriptError> {
        context::set_file(&origin.file);
        let mut args: Vec<Dynamic> = Vec::with_capacity(2);
        if script.arity >= 1 {
            args.push(msg.clone());
        }
        if script.arity >= 2 {
            args.push(Dynamic::from(caps.unwrap_or_default()));
        }
        let value: Dynamic = script
            .fresh()
            .call(&self.engine, &script.ast, args)
            .map_err(|e| script_error(&e, origin))?;
        interpret(value).map_err(|message| ScriptError {
            file: origin.file.to_string(),
            line: Some(origin.line),
            message,
        })
    }
}

fn script_error(e: &EvalAltResult, origin: &Origin) -> ScriptError {
    let (file, line, message) = super::load::locate(e, &origin.file);
    match line {
        Some(line) => ScriptError {
            file,
            line: Some(line),
            message,
        },
        // Limits (operations, time, sizes) stop a script without a position of their own.
        None => ScriptError {
            file,
            line: Some(origin.line),
            message: format!("{message} (in the rule declared at this line)"),
        },
    }
}

/// A handler's return value: a reply, a string (a text reply), or nothing (next rule).
fn interpret(value: Dynamic) -> Result<Option<Reply>, String> {
    if value.is_unit() {
        return Ok(None);
    }
    if value.is::<Reply>() {
        return Ok(value.try_cast::<Reply>());
    }
    if value.is_string() {
        return Ok(Some(Reply::text(value.to_string())));
    }
    Err(format!(
        "a rule returns a reply (text(…), image(…), news(…), success(), …), a string, or nothing; this one returned {}",
        value.type_name()
    ))
}

/// The user's session for a run about to read it; `None` when there is no store to read, or
/// it could not be read (the run then reads it itself, on a thread, and reports the error at
/// the script's line).
async fn prefetch(services: &Services, message: &Message) -> Option<HashMap<String, Dynamic>> {
    let store = services.store.as_ref()?;
    session::load(store, message.from.as_str()).await.ok()
}

/// Inline runs of a rule that yields to a thread: one in this many still tries in place, in
/// case what needed the thread was rare.
const RETRY_INLINE: u32 = 64;

/// What a rule set learned about its scripts from earlier runs, so a message takes the right
/// way at once: scripts that read the session have it loaded before an inline run, and scripts
/// that yielded to a thread go to one directly. One slot per hook, then one per rule.
#[derive(Debug, Default)]
pub struct Hints(OnceLock<Box<[Hint]>>);

#[derive(Debug, Default)]
struct Hint {
    session: AtomicBool,
    thread: AtomicBool,
    skipped: AtomicU32,
}

impl Hints {
    /// Whether one of `slots` reads the session.
    fn wants_session(&self, slots: impl Iterator<Item = usize>) -> bool {
        let Some(hints) = self.0.get() else {
            return false;
        };
        slots
            .filter_map(|s| hints.get(s))
            .any(|h| h.session.load(Ordering::Relaxed))
    }

    /// Whether to try `slots` in place first: none yielded to a thread lately.
    fn inline_first(&self, slots: impl Iterator<Item = usize>) -> bool {
        let Some(hints) = self.0.get() else {
            return true;
        };
        let mut inline = true;
        for hint in slots.filter_map(|s| hints.get(s)) {
            if hint.thread.load(Ordering::Relaxed) {
                let n = hint.skipped.fetch_add(1, Ordering::Relaxed);
                inline &= n % RETRY_INLINE == RETRY_INLINE - 1;
            }
        }
        inline
    }

    /// `slots` ran in place to their end.
    fn ran_inline(&self, slots: impl Iterator<Item = usize>) {
        let Some(hints) = self.0.get() else {
            return;
        };
        for hint in slots.filter_map(|s| hints.get(s)) {
            if hint.thread.load(Ordering::Relaxed) {
                hint.thread.store(false, Ordering::Relaxed);
            }
        }
    }

    /// The script in `slot` of `slots` yielded for `need`.
    fn note(&self, slots: usize, slot: usize, need: Need) {
        // Made on the first yield: a set whose scripts never yield keeps none.
        let hints = self
            .0
            .get_or_init(|| (0..slots).map(|_| Hint::default()).collect());
        if let Some(hint) = hints.get(slot) {
            match need {
                Need::Session => hint.session.store(true, Ordering::Relaxed),
                Need::Thread => hint.thread.store(true, Ordering::Relaxed),
            }
        }
    }
}

fn no_reply() -> Outcome {
    Outcome {
        reply: Reply::Success,
        replied_by: None,
        error: None,
        secret: false,
    }
}

fn errored(error: ScriptError) -> Outcome {
    Outcome {
        reply: Reply::Success,
        replied_by: None,
        error: Some(error),
        secret: false,
    }
}

fn failed(error: ScriptError, fallback: &Reply) -> Outcome {
    Outcome {
        reply: fallback.clone(),
        replied_by: None,
        error: Some(error),
        secret: false,
    }
}
