//! The dispatcher: a [`Router`] of async handlers behind filters, wrapped by middleware.
//!
//! Order, documented once:
//! 1. Middleware runs outermost-first in the order it was added; each gets the message and a
//!    [`Next`] to call (or not: a middleware may answer by itself).
//! 2. Routes are tried in the order they were added. A route whose filter matches runs its
//!    handler; a handler answers [`Flow::Reply`] (the first reply wins, later routes do not
//!    run) or [`Flow::Next`] (explicit fall-through to the next matching route).
//! 3. When no route replies, the answer is [`Reply::Success`] (no visible reply).
//!
//! A handler is any `async fn(Context) -> R` where `R` is a [`Reply`], an `Option<Reply>`
//! (`None` falls through), a [`Flow`], or a `Result` of those (an `Err` is logged and answered
//! with `success`).
//!
//! ```
//! use huixin::bot::{filter, Context, Router};
//! use huixin::wechat::Reply;
//!
//! let router = Router::new()
//!     .route(filter::content("ping"), |_ctx: Context| async { Reply::text("pong") })
//!     .route(filter::text(), |ctx: Context| async move {
//!         ctx.message.content().map(Reply::text)
//!     });
//! ```

pub mod echo;
pub mod filter;
pub mod late;
pub mod middleware;
pub mod tasks;

use std::future::Future;
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};

use axum::http::Extensions;

pub use filter::{Captures, Filter, TextMatch};

use crate::wechat::{Message, Reply};

/// A boxed, sendable future.
pub type BoxFuture<T> = Pin<Box<dyn Future<Output = T> + Send + 'static>>;
/// A boxed error from user code.
pub type BoxError = Box<dyn std::error::Error + Send + Sync + 'static>;

/// A failure inside the bot: our own fault, never the caller's. The HTTP edge answers
/// `success` and logs it with the message's ids.
#[derive(Debug, thiserror::Error)]
pub enum BotError {
    /// A handler returned an error.
    #[error("handler failed: {0}")]
    Handler(BoxError),
    /// A middleware failed.
    #[error("middleware failed: {0}")]
    Middleware(BoxError),
    /// A handler or middleware panicked.
    #[error("handler panicked: {0}")]
    Panic(String),
}

/// The text of a panic's payload, for the log.
pub fn panic_message(panic: &(dyn std::any::Any + Send)) -> String {
    if let Some(s) = panic.downcast_ref::<&str>() {
        (*s).to_owned()
    } else if let Some(s) = panic.downcast_ref::<String>() {
        s.clone()
    } else {
        "unknown panic payload".to_owned()
    }
}

/// What a handler decided.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Flow {
    /// Answer with this reply; no further route runs.
    Reply(Reply),
    /// Not handled here: try the next matching route.
    Next,
}

/// Conversion of a handler's return value into a [`Flow`].
pub trait IntoFlow {
    /// The flow, or the handler's error.
    fn into_flow(self) -> Result<Flow, BotError>;
}

impl IntoFlow for Flow {
    fn into_flow(self) -> Result<Flow, BotError> {
        Ok(self)
    }
}

impl IntoFlow for Reply {
    fn into_flow(self) -> Result<Flow, BotError> {
        Ok(Flow::Reply(self))
    }
}

impl IntoFlow for Option<Reply> {
    fn into_flow(self) -> Result<Flow, BotError> {
        Ok(self.map_or(Flow::Next, Flow::Reply))
    }
}

impl<T, E> IntoFlow for Result<T, E>
where
    T: IntoFlow,
    E: Into<BoxError>,
{
    fn into_flow(self) -> Result<Flow, BotError> {
        self.map_err(|e| BotError::Handler(e.into()))?.into_flow()
    }
}

/// What a handler and a middleware see: the message, the captures of the filter that matched
/// (empty in middleware), extensions middleware can use to pass values inward, and the
/// message's [`Trail`].
#[derive(Debug, Clone)]
pub struct Context {
    /// The inbound message.
    pub message: Arc<Message>,
    /// Regex captures from the route's filter.
    pub captures: Captures,
    /// Typed values added by middleware (e.g. a session), read by handlers.
    pub extensions: Extensions,
    /// What happened to the message so far; shared by every clone of this context.
    pub trail: Arc<Trail>,
    /// Where work that outlives the request goes (a reply past the deadline): the tasks of
    /// the app that received the message, which its shutdown waits for.
    pub tasks: tasks::Tasks,
}

impl Context {
    /// A context for a message, with no captures or extensions.
    pub fn new(message: Message) -> Self {
        Self::from_arc(Arc::new(message))
    }

    /// A context for a shared message.
    pub fn from_arc(message: Arc<Message>) -> Self {
        Self::in_tasks(message, tasks::Tasks::default())
    }

    /// A context for a shared message whose late work goes to `tasks` (the tasks of the app
    /// that received it).
    pub fn in_tasks(message: Arc<Message>, tasks: tasks::Tasks) -> Self {
        Self {
            message,
            captures: Captures::default(),
            extensions: Extensions::new(),
            trail: Arc::new(Trail::default()),
            tasks,
        }
    }
}

/// What became of a message, as the inbound log records it (`inbound_log.outcome`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Outcome {
    /// `answered`: the reply went out passively, in time.
    Answered,
    /// `late`: the deadline passed; `success` went out and the reply followed separately.
    Late,
    /// `retry`: a WeChat retry, answered by `dedup` without running the rules.
    Retry,
    /// `failed`: a handler or middleware failed or panicked; answered `success`.
    Failed,
    /// `blocked`: the user is on the blocklist; ignored.
    Blocked,
    /// `limited`: the user sent too fast; ignored (or told so).
    Limited,
}

impl Outcome {
    /// The spelling in the log's `outcome` column.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Answered => "answered",
            Self::Late => "late",
            Self::Retry => "retry",
            Self::Failed => "failed",
            Self::Blocked => "blocked",
            Self::Limited => "limited",
        }
    }
}

impl std::fmt::Display for Outcome {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Who replied to a message, as its [`Trail`] records it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Replier {
    /// A rule, declared at `file:line` (shown so).
    Rule {
        /// The file, relative to the rules folder.
        file: Arc<str>,
        /// The line of the declaration.
        line: usize,
    },
    /// Something that is not a rule, by name (`webhook`).
    Named(&'static str),
}

impl std::fmt::Display for Replier {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::Rule { file, line } => write!(f, "{file}:{line}"),
            Self::Named(name) => f.write_str(name),
        }
    }
}

impl Replier {
    /// The `rule` label of the metrics.
    pub fn label(&self) -> crate::metrics::RuleLabel {
        match self {
            Self::Rule { file, line } => crate::metrics::RuleLabel::Rule {
                file: Arc::clone(file),
                line: *line,
            },
            Self::Named(name) => crate::metrics::RuleLabel::Named(name),
        }
    }
}

/// What happened to one message on its way through the pipeline, for the layers that report
/// on it (the inbound log) and for the HTTP edge: whether the deadline passed, whether a
/// layer answered for it, the `CreateTime` its reply must carry.
#[derive(Debug, Default)]
pub struct Trail {
    late: AtomicBool,
    outcome: Mutex<Option<Outcome>>,
    secret: AtomicBool,
    replied_by: Mutex<Option<Replier>>,
    create_time: Mutex<Option<i64>>,
}

impl Trail {
    /// The reply missed the deadline: `success` went out and the reply follows separately.
    pub fn set_late(&self) {
        self.late.store(true, Ordering::SeqCst);
    }

    /// Whether the reply missed the deadline.
    pub fn is_late(&self) -> bool {
        self.late.load(Ordering::SeqCst)
    }

    /// The reply carries a secret (a push key just made): answered once, never stored for
    /// replaying it to a retry.
    pub fn set_secret(&self) {
        self.secret.store(true, Ordering::SeqCst);
    }

    /// Whether the reply carries a secret.
    pub fn is_secret(&self) -> bool {
        self.secret.load(Ordering::SeqCst)
    }

    /// A layer answered for the message ([`Outcome::Retry`], [`Outcome::Blocked`],
    /// [`Outcome::Limited`]).
    pub fn set_outcome(&self, outcome: Outcome) {
        *self.outcome.lock().unwrap_or_else(|p| p.into_inner()) = Some(outcome);
    }

    /// What a layer set, if any.
    pub fn outcome(&self) -> Option<Outcome> {
        *self.outcome.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// The rule (or the webhook) that replied.
    pub fn set_replied_by(&self, replier: Replier) {
        *self.replied_by.lock().unwrap_or_else(|p| p.into_inner()) = Some(replier);
    }

    /// The rule (or the webhook) that replied, if one did.
    pub fn replied_by(&self) -> Option<Replier> {
        self.replied_by
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .clone()
    }

    /// The reply must be rendered with this `CreateTime` (Unix seconds): `dedup` sets it so
    /// that every try of one message is answered with the same bytes.
    pub fn set_create_time(&self, create_time: i64) {
        *self.create_time.lock().unwrap_or_else(|p| p.into_inner()) = Some(create_time);
    }

    /// The `CreateTime` set for the reply; `None`: render it with the current time.
    pub fn create_time(&self) -> Option<i64> {
        *self.create_time.lock().unwrap_or_else(|p| p.into_inner())
    }
}

/// An async message handler. Implemented for `Fn(Context) -> impl Future<Output: IntoFlow>`.
pub trait Handler: Send + Sync + 'static {
    /// Handles one message.
    fn call(&self, ctx: Context) -> BoxFuture<Result<Flow, BotError>>;
}

impl<F, Fut, R> Handler for F
where
    F: Fn(Context) -> Fut + Send + Sync + 'static,
    Fut: Future<Output = R> + Send + 'static,
    R: IntoFlow,
{
    fn call(&self, ctx: Context) -> BoxFuture<Result<Flow, BotError>> {
        let fut = self(ctx);
        Box::pin(async move { fut.await.into_flow() })
    }
}

/// Wraps dispatch: runs before and after the inner layers and routes, and may answer alone.
pub trait Middleware: Send + Sync + 'static {
    /// Handles one message; call `next.run(ctx)` to continue inward.
    fn call(&self, ctx: Context, next: Next) -> BoxFuture<Result<Reply, BotError>>;
}

/// Middleware from an async function `(Context, Next) -> Result<Reply, BotError>`.
pub fn from_fn<F, Fut>(f: F) -> impl Middleware
where
    F: Fn(Context, Next) -> Fut + Send + Sync + 'static,
    Fut: Future<Output = Result<Reply, BotError>> + Send + 'static,
{
    struct FnMiddleware<F>(F);
    impl<F, Fut> Middleware for FnMiddleware<F>
    where
        F: Fn(Context, Next) -> Fut + Send + Sync + 'static,
        Fut: Future<Output = Result<Reply, BotError>> + Send + 'static,
    {
        fn call(&self, ctx: Context, next: Next) -> BoxFuture<Result<Reply, BotError>> {
            Box::pin((self.0)(ctx, next))
        }
    }
    FnMiddleware(f)
}

/// The rest of the pipeline after a middleware.
#[derive(Clone)]
pub struct Next {
    router: Arc<Router>,
    index: usize,
}

impl Next {
    /// Runs the inner middleware and then the routes.
    pub fn run(self, ctx: Context) -> BoxFuture<Result<Reply, BotError>> {
        match self.router.middleware.get(self.index) {
            Some(layer) => {
                let layer = Arc::clone(layer);
                let next = Next {
                    router: self.router,
                    index: self.index + 1,
                };
                layer.call(ctx, next)
            }
            None => Box::pin(async move { self.router.route_message(ctx).await }),
        }
    }
}

struct Route {
    filter: Filter,
    handler: Arc<dyn Handler>,
}

/// Routes and middleware. Build it, then hand it to [`crate::app::Builder`] (or call
/// [`Router::dispatch`] yourself).
#[derive(Default)]
pub struct Router {
    routes: Vec<Route>,
    middleware: Vec<Arc<dyn Middleware>>,
}

impl std::fmt::Debug for Router {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Router")
            .field(
                "routes",
                &self.routes.iter().map(|r| &r.filter).collect::<Vec<_>>(),
            )
            .field("middleware", &self.middleware.len())
            .finish()
    }
}

impl Router {
    /// An empty router: every message is answered `success`.
    pub fn new() -> Self {
        Self::default()
    }

    /// Adds a route after the existing ones.
    pub fn route(mut self, filter: Filter, handler: impl Handler) -> Self {
        self.routes.push(Route {
            filter,
            handler: Arc::new(handler),
        });
        self
    }

    /// Adds a middleware inside the existing ones (the first added runs outermost).
    pub fn layer(mut self, middleware: impl Middleware) -> Self {
        self.middleware.push(Arc::new(middleware));
        self
    }

    /// Adds `other`'s middleware inside this router's, and its routes after this router's.
    pub fn merge(mut self, other: Router) -> Self {
        self.middleware.extend(other.middleware);
        self.routes.extend(other.routes);
        self
    }

    /// Whether the router has neither routes nor middleware.
    pub fn is_empty(&self) -> bool {
        self.routes.is_empty() && self.middleware.is_empty()
    }

    /// Runs a message through middleware and routes.
    pub fn dispatch(self: &Arc<Self>, ctx: Context) -> BoxFuture<Result<Reply, BotError>> {
        Next {
            router: Arc::clone(self),
            index: 0,
        }
        .run(ctx)
    }

    async fn route_message(&self, ctx: Context) -> Result<Reply, BotError> {
        for route in &self.routes {
            let Some(captures) = route.filter.matches(&ctx.message) else {
                continue;
            };
            let mut route_ctx = ctx.clone();
            route_ctx.captures = captures;
            match route.handler.call(route_ctx).await? {
                Flow::Reply(reply) => return Ok(reply),
                Flow::Next => continue,
            }
        }
        Ok(Reply::Success)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::{AtomicUsize, Ordering};

    fn text(content: &str) -> Context {
        let xml = format!(
            "<xml><ToUserName>gh</ToUserName><FromUserName>u1</FromUserName><CreateTime>1</CreateTime>\
             <MsgType>text</MsgType><Content><![CDATA[{content}]]></Content><MsgId>1</MsgId></xml>"
        );
        Context::new(Message::parse(xml.as_bytes()).unwrap())
    }

    #[tokio::test]
    async fn first_reply_wins_and_next_falls_through() {
        let seen = Arc::new(AtomicUsize::new(0));
        let s = seen.clone();
        let router = Arc::new(
            Router::new()
                .route(filter::text(), move |_ctx: Context| {
                    let s = s.clone();
                    async move {
                        s.fetch_add(1, Ordering::SeqCst);
                        Flow::Next
                    }
                })
                .route(
                    filter::content_regex(r"^deploy (?P<env>\w+)$").unwrap(),
                    |ctx: Context| async move {
                        Reply::text(format!(
                            "deploying {}",
                            ctx.captures.name("env").unwrap_or("?")
                        ))
                    },
                )
                .route(filter::any(), |_ctx: Context| async {
                    Reply::text("fallback")
                }),
        );
        let reply = router.dispatch(text("deploy prod")).await.unwrap();
        assert_eq!(reply, Reply::text("deploying prod"));
        assert_eq!(
            router.dispatch(text("hi")).await.unwrap(),
            Reply::text("fallback")
        );
        assert_eq!(seen.load(Ordering::SeqCst), 2);
    }

    #[tokio::test]
    async fn middleware_wraps_and_can_short_circuit() {
        let router = Arc::new(
            Router::new()
                .layer(from_fn(|ctx: Context, next: Next| async move {
                    if ctx.message.content() == Some("blocked") {
                        return Ok(Reply::Success);
                    }
                    let reply = next.run(ctx).await?;
                    Ok(match reply {
                        Reply::Text { content } => Reply::text(format!("[{content}]")),
                        other => other,
                    })
                }))
                .route(filter::text(), |ctx: Context| async move {
                    ctx.message.content().map(Reply::text)
                }),
        );
        assert_eq!(
            router.dispatch(text("a")).await.unwrap(),
            Reply::text("[a]")
        );
        assert_eq!(
            router.dispatch(text("blocked")).await.unwrap(),
            Reply::Success
        );
    }

    #[tokio::test]
    async fn handler_errors_surface() {
        let router = Arc::new(Router::new().route(filter::any(), |_ctx: Context| async {
            Err::<Reply, _>("boom")
        }));
        assert!(matches!(
            router.dispatch(text("x")).await,
            Err(BotError::Handler(_))
        ));
    }
}
