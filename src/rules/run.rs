//! Running a rule set on a message. Conditions are evaluated first, in Rust (a set with a regex
//! condition evaluates them on the blocking thread, counted in `[rules] max_run_ms`, since a
//! regex on a long text may take a while); only the handlers of matching rules run, in order,
//! on a blocking thread (scripts never stall the async workers, and the deadline watchdog
//! keeps running while they work), with the message's session and services in reach. The
//! first reply wins; a handler returning nothing passes to the next matching rule; a
//! keyword-table rule always replies.
//!
//! A handler that fails or hits a limit ends the run: the error is logged with its file and
//! line, session changes are dropped, and the message gets `[rules] fallback`.

use std::sync::Arc;
use std::time::{Duration, Instant};

use rhai::{Dynamic, EvalAltResult};

use super::api::message::message_map;
use super::context::{self, ScriptContext, Services};
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

impl RuleSet {
    /// Runs the rules on `message`. `fallback` answers a failed run.
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

        // At most a few scripts at once: bounds the memory and threads runaway scripts can
        // take together. A message waiting for a slot is still covered by the deadline.
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
        let store = services.store.clone();
        let openid = message.from.as_str().to_owned();
        let runtime = tokio::runtime::Handle::current();
        // Scripts block (they may wait on the store), so they run on the blocking pool. Not
        // in place with `block_in_place`: this task must stay free to notice the reply
        // deadline while a script takes long, or the watchdog could not answer in time.
        let ran = tokio::task::spawn_blocking(move || {
            set.run_blocking(&message, plan, services, runtime)
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
        let outcome = match outcome.error {
            Some(error) => {
                tracing::error!(rule = %error, "rule failed; answered the fallback");
                failed(error, fallback)
            }
            None => outcome,
        };
        // A reply that says "recorded" must not go out when the recording failed.
        if !changes.is_empty()
            && let Some(store) = store
            && let Err(e) = store
                .backend()
                .session_apply(&openid, &changes, crate::support::clock::unix_now())
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

    /// The rules whose conditions match `message`, in order, up to the first that always
    /// replies; with their captures.
    fn plan(&self, message: &Message) -> Vec<(usize, Captures)> {
        let mut plan = Vec::new();
        for (i, rule) in self.rules.iter().enumerate() {
            if let Some(caps) = rule.filter.matches(message) {
                let last = matches!(rule.action, Action::Reply(_));
                plan.push((i, caps));
                if last {
                    break;
                }
            }
        }
        plan
    }

    /// The blocking part: the conditions (unless `plan` was made already), hooks, then the
    /// planned rules.
    fn run_blocking(
        &self,
        message: &Message,
        plan: Option<Vec<(usize, Captures)>>,
        services: Services,
        runtime: tokio::runtime::Handle,
    ) -> (Outcome, Vec<SessionChange>) {
        let _entered = context::enter(ScriptContext {
            openid: message.from.as_str().to_owned(),
            file: Arc::from(""),
            services,
            runtime,
            session: None,
            session_changes: Vec::new(),
            deadline: Instant::now() + Duration::from_millis(self.limits.max_run_ms),
            secret: false,
        });
        // The deadline is set: time spent matching counts against the scripts' budget.
        let plan = plan.unwrap_or_else(|| self.plan(message));
        let msg = Dynamic::from_map(message_map(message));
        let mut outcome = self.run_plan(&msg, plan);
        let changes = match (&outcome.error, context::take()) {
            (None, Some(ctx)) => {
                outcome.secret = ctx.secret;
                ctx.session_changes
            }
            _ => Vec::new(),
        };
        (outcome, changes)
    }

    fn run_plan(&self, msg: &Dynamic, plan: Vec<(usize, Captures)>) -> Outcome {
        for hook in &self.hooks {
            match self.call(&hook.script, &hook.origin, msg, None) {
                Ok(None) => {}
                Ok(Some(reply)) => {
                    return Outcome {
                        reply,
                        replied_by: Some(hook.origin.clone()),
                        error: None,
                        secret: false,
                    };
                }
                Err(error) => return errored(error),
            }
        }
        for (i, caps) in plan {
            let rule = &self.rules[i];
            let result = match &rule.action {
                Action::Reply(reply) => Ok(Some(reply.clone())),
                Action::Script(script) => self.call(script, &rule.origin, msg, Some(caps)),
            };
            match result {
                Ok(None) => {}
                Ok(Some(reply)) => {
                    return Outcome {
                        reply,
                        replied_by: Some(rule.origin.clone()),
                        error: None,
                        secret: false,
                    };
                }
                Err(error) => return errored(error),
            }
        }
        no_reply()
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
