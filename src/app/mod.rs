//! The whole of `huixin serve` as one value: an [`App`] is built from a [`Config`] and owns
//! everything it starts.
//!
//! [`App::builder`] opens the store, settles the callback token, loads the rules (with the
//! script functions of the outbound client and the push service, and any [`ScriptModule`] of
//! yours), builds the pipeline in `[bot] middleware` order, the outbound client, the push
//! service and its delivery worker, the retention and sync loops, and the HTTP surface
//! (callback, `/healthz`, push APIs, detail pages, routes of yours). Then either
//!
//! - [`App::serve`] runs it on a listener until a shutdown future completes (mini-redis style),
//!   or [`App::serve_until_signal`] binds `[server] listen` and runs until Ctrl-C or SIGTERM;
//! - or [`App::router`] hands back the axum [`axum::Router`] to mount inside an app of your
//!   own, and [`App::shutdown`] ends what the app started.
//!
//! ```no_run
//! use huixin::app::App;
//! use huixin::bot::{filter, Context};
//! use huixin::config::Config;
//! use huixin::wechat::Reply;
//!
//! # async fn run() -> Result<(), Box<dyn std::error::Error>> {
//! let app = App::builder(Config::load(None)?)
//!     // In front of the Rhai rules: answered here, the rules do not run.
//!     .route(filter::content("ping"), |_ctx: Context| async { Reply::text("pong") })
//!     .build()
//!     .await?;
//! app.serve_until_signal().await?;
//! # Ok(()) }
//! ```
//!
//! Shutdown, in order: stop accepting and let requests in flight finish; wait for work that
//! outlived its request (late replies, sends from rules); stop the push worker, which hands
//! back the recipients it claimed but did not start; stop the background loops; write what
//! the store still has queued.

pub mod metrics;
pub mod pipeline;
mod upkeep;

use std::future::Future;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::http::Extensions;
use tokio::net::TcpListener;
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

use crate::admin;
use crate::apps::{self, Apps};
use crate::bot::late::{LateReplies, LogLateReplies};
use crate::bot::tasks::Tasks;
use crate::bot::{Filter, Handler, Middleware, Router};
use crate::config::Config;
use crate::metrics::Metrics;
use crate::outbound::{self, Client};
use crate::push::{self, Pushes};
use crate::rules::api::ScriptModule;
use crate::rules::{Rules, RulesError, Source};
use crate::server::listen::{self, Limits};
use crate::server::{self, CallbackState, TokenSource};
use crate::store::{Store, StoreError};
use crate::webhooks::{self, Webhooks};
use crate::wechat::CryptoError;

/// How often the rules folder is checked for changes (`[rules] reload`).
const RULES_WATCH: Duration = Duration::from_millis(500);
/// The longest shutdown waits for the push worker's sends in flight (each bounded by its own
/// timeouts) before giving up on them; they are sent again after their lease.
const WORKER_GRACE: Duration = Duration::from_secs(35);
/// The longest shutdown waits for the background loops to notice they should stop.
const LOOPS_GRACE: Duration = Duration::from_secs(5);

/// Why an app could not be built or stopped with an error.
#[derive(Debug, thiserror::Error)]
pub enum AppError {
    /// The store could not be opened (or the token settled in it).
    #[error(transparent)]
    Store(#[from] StoreError),
    /// The rules have errors (each with its file and line).
    #[error("the rules have errors:\n{0}")]
    Rules(#[from] RulesError),
    /// The configured key is unusable (validation normally catches this first).
    #[error("[wechat] encoding_aes_key: {0}")]
    Crypto(#[from] CryptoError),
    /// The listen address could not be bound.
    #[error("cannot listen on {addr}: {source}")]
    Bind {
        /// `[server] listen`.
        addr: String,
        /// The OS error.
        source: std::io::Error,
    },
    /// The server stopped with an I/O error.
    #[error("server error: {0}")]
    Io(#[from] std::io::Error),
}

/// The script functions the product adds to the rules' own: sending through WeChat's API
/// ([`outbound::script`]) and pushes, topics and keys ([`push::script`]). `huixin rules check`
/// and `huixin rules test` load the rules with the same functions.
pub fn script_modules() -> Vec<Arc<dyn ScriptModule>> {
    vec![
        Arc::new(outbound::script::Sending),
        Arc::new(push::script::PushFunctions),
        Arc::new(apps::script::AppFunctions),
    ]
}

/// What goes into an [`App`]: a config, and what you add to the product. Made by
/// [`App::builder`].
pub struct Builder {
    config: Config,
    store: Option<Store>,
    user: Router,
    replace_bot: Option<Router>,
    rules: bool,
    modules: Vec<Arc<dyn ScriptModule>>,
    http: axum::Router,
    late: Option<Arc<dyn LateReplies>>,
    rules_watch: Duration,
    limits: Limits,
    push_worker: bool,
    dev: bool,
}

impl std::fmt::Debug for Builder {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Builder")
            .field("user", &self.user)
            .field("rules", &self.rules)
            .finish_non_exhaustive()
    }
}

impl Builder {
    /// Adds a route in front of the rules (after the push service's own, which only look at
    /// template reports and topic QR scans and let every message pass on). A route that
    /// replies ends the message's way: the rules do not run.
    pub fn route(mut self, filter: Filter, handler: impl Handler) -> Self {
        self.user = self.user.route(filter, handler);
        self
    }

    /// Adds a middleware inside the configured ones (`[bot] middleware`), around the routes.
    pub fn layer(mut self, middleware: impl Middleware) -> Self {
        self.user = self.user.layer(middleware);
        self
    }

    /// Adds a router's middleware (as [`Builder::layer`]) and routes (as [`Builder::route`]).
    pub fn merge(mut self, router: Router) -> Self {
        self.user = self.user.merge(router);
        self
    }

    /// Replaces the whole bot with `router`: none of the configured middleware, no push
    /// routes (template reports do not settle pushes), no rules (so no [`Builder::module`]).
    /// For a bot written entirely in Rust; the store, push APIs and worker still run. What
    /// [`Builder::route`] and [`Builder::layer`] add goes after `router`'s own.
    pub fn bot(mut self, router: Router) -> Self {
        self.replace_bot = Some(router);
        self
    }

    /// Leaves out the Rhai rules: a message no route answers gets `success`.
    pub fn without_rules(mut self) -> Self {
        self.rules = false;
        self
    }

    /// Adds script functions for the rules (registered after the built-in ones).
    pub fn module(mut self, module: Arc<dyn ScriptModule>) -> Self {
        self.modules.push(module);
        self
    }

    /// Adds HTTP routes beside huixin's own (merged into the surface [`App::router`] gives).
    pub fn http(mut self, routes: axum::Router) -> Self {
        self.http = self.http.merge(routes);
        self
    }

    /// Uses a store already open (on the same database as `[storage] url`, or another).
    pub fn store(mut self, store: Store) -> Self {
        self.store = Some(store);
        self
    }

    /// Where replies that missed the deadline go; by default the customer-service API when
    /// `[wechat] app_id` and `app_secret` are set, else the log.
    pub fn late_replies(mut self, late: Arc<dyn LateReplies>) -> Self {
        self.late = Some(late);
        self
    }

    /// How often the rules folder is checked for changes when `[rules] reload` is on
    /// (default 500 ms).
    pub fn rules_watch(mut self, every: Duration) -> Self {
        self.rules_watch = every;
        self
    }

    /// Accepts pushes without delivering them here: another process on the same database
    /// delivers (each claims recipients under a lease), or you run
    /// [`push::deliver::spawn`] yourself.
    pub fn without_push_worker(mut self) -> Self {
        self.push_worker = false;
        self
    }

    /// Connection limits of [`App::serve`].
    pub fn limits(mut self, limits: Limits) -> Self {
        self.limits = limits;
        self
    }

    /// Development mode (`huixin serve --dev`): the console at `/admin` is on without
    /// `[admin] password` (login links sign in).
    pub fn dev(mut self) -> Self {
        self.dev = true;
        self
    }

    /// Opens the store, loads the rules, builds the pipeline and the surface, and starts the
    /// app's background work (rules watcher, readers of other processes' writes, pruning, the
    /// push delivery worker). Needs a Tokio runtime.
    pub async fn build(self) -> Result<App, AppError> {
        let config = self.config;
        let store = match self.store {
            Some(store) => store,
            None => Store::open_config(&config.storage).await?,
        };
        let (token, token_source) = server::resolve_token(&config, &store).await?;
        let protocol = config.wechat.protocol(&token)?;
        let tasks = Tasks::new();
        let metrics = Metrics::enabled(config.metrics.enabled);
        watch_store(&metrics, &store);
        let pushes = Pushes::with_metrics(&config, store.clone(), metrics.clone());
        // Without credentials there is no client: late replies are logged, and the rules'
        // send functions say what is missing.
        let client =
            Client::with_metrics(&config.wechat, Some(store.clone()), metrics.clone()).ok();
        let webhooks = Webhooks::with_metrics(&config, store.clone(), metrics.clone());
        let platform = Apps::new(&config, pushes.clone(), client.clone(), webhooks.clone());
        platform.reload().await?;
        webhooks.set_answer_hook(apps::bot::answer_hook(client.clone()));
        pushes.set_settled_hook(apps::events::settled_hook(platform.clone()));
        let late = self.late.unwrap_or_else(|| match &client {
            Some(client) => Arc::new(outbound::late::CustomerServiceLate::new(client.clone())),
            None => Arc::new(LogLateReplies),
        });

        let (bot, rules) = match self.replace_bot {
            Some(router) => (router.merge(self.user), None),
            None => {
                let rules = if self.rules {
                    let mut modules = script_modules();
                    modules.extend(self.modules);
                    let rules = Arc::new(Rules::open(&config.rules, modules)?);
                    if config.rules.reload {
                        rules.spawn_watcher(self.rules_watch, &tasks);
                    }
                    Some(rules)
                } else {
                    None
                };
                let mut extensions = Extensions::new();
                if let Some(client) = &client {
                    extensions.insert(client.clone());
                }
                extensions.insert(pushes.clone());
                extensions.insert(platform.clone());
                let (layers, services) =
                    pipeline::layers(&config, &store, late, extensions, &tasks, &metrics).await?;
                let router = push::bot::routes(layers, pushes.clone());
                let router = apps::bot::routes(router, platform.clone()).merge(self.user);
                let router = match &rules {
                    Some(rules) => pipeline::with_rules(
                        router,
                        Arc::clone(rules),
                        services,
                        Some(platform.clone()),
                        metrics.clone(),
                    ),
                    None => router,
                };
                (router, rules)
            }
        };

        tasks.spawn_loop("peers", store.join().await);
        upkeep::spawn(&tasks, &store, &config, &webhooks);
        tasks.spawn_loop("apps", apps_reload(platform.clone()));
        let state = CallbackState::new(
            protocol,
            bot,
            store.clone(),
            tasks.clone(),
            &config.server.path,
            config.server.body_limit,
            metrics.clone(),
        );
        state.replay().preload(&store).await;
        let console = admin::Console::new(admin::Parts {
            config: config.clone(),
            store: store.clone(),
            rules: rules.clone(),
            pushes: pushes.clone(),
            apps: platform.clone(),
            client: client.clone(),
            metrics: metrics.clone(),
            dev: self.dev,
        });
        let router = server::routes(state)
            .merge(admin::routes(console.clone()))
            .merge(push::api::routes(pushes.clone(), config.server.body_limit))
            .merge(apps::api::routes(platform.clone()))
            .merge(apps::wxpusher::routes(platform.clone()))
            .merge(webhooks::api::routes(webhooks.clone(), pushes.clone()))
            .merge(metrics::routes(
                metrics.clone(),
                store.clone(),
                &config.metrics,
            ))
            .merge(self.http);
        // Last, so that it measures every route above, the user's included.
        let router = crate::metrics::http::layer(router, &metrics);
        let metrics_addr =
            metrics::spawn_listener(&metrics, &store, &config.metrics, &tasks).await?;
        let outbox = {
            let stop = CancellationToken::new();
            let worker = webhooks::spawn(webhooks.clone(), stop.clone().cancelled_owned());
            Worker { stop, worker }
        };
        let worker = match &client {
            Some(client) if self.push_worker && !config.push.template_id.is_empty() => {
                let stop = CancellationToken::new();
                let worker = push::deliver::spawn(
                    pushes.clone(),
                    client.clone(),
                    stop.clone().cancelled_owned(),
                );
                Some(Worker { stop, worker })
            }
            _ => None,
        };
        Ok(App {
            config,
            store,
            console,
            pushes,
            apps: platform,
            outbox: Mutex::new(Some(outbox)),
            client,
            rules,
            tasks,
            router,
            token,
            token_source,
            limits: self.limits,
            worker: Mutex::new(worker),
            metrics,
            metrics_addr,
        })
    }
}

/// Reads `store`'s writer counters at every scrape, and lists the batches it gives up among
/// the recent errors.
fn watch_store(metrics: &Metrics, store: &Store) {
    let stats = store.writer_stats();
    metrics.watch_store(move || stats.snapshot());
    let errors = metrics.clone();
    store.set_error_hook(Arc::new(move |error: &StoreError, writes: usize| {
        errors.record_error(
            "store",
            format_args!("a batch of {writes} writes was lost: {error}"),
        );
    }));
}

/// The product, built: see the [module documentation](self).
pub struct App {
    config: Config,
    store: Store,
    console: admin::Console,
    pushes: Pushes,
    apps: Apps,
    /// The webhook worker.
    outbox: Mutex<Option<Worker>>,
    client: Option<Client>,
    rules: Option<Arc<Rules>>,
    tasks: Tasks,
    router: axum::Router,
    token: String,
    token_source: TokenSource,
    limits: Limits,
    worker: Mutex<Option<Worker>>,
    metrics: Metrics,
    metrics_addr: Option<SocketAddr>,
}

/// How often the live apps are reread (apps made or changed by the CLI or another process).
const APPS_RELOAD: Duration = Duration::from_secs(2);

/// Rereads the live apps every [`APPS_RELOAD`].
async fn apps_reload(platform: Apps) {
    let mut tick = tokio::time::interval(APPS_RELOAD);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tick.tick().await;
        if let Err(e) = platform.reload().await {
            tracing::warn!(error = %e, "apps not reread");
        }
    }
}

/// A delivery worker (pushes, webhooks) and what tells it to stop.
struct Worker {
    stop: CancellationToken,
    worker: JoinHandle<()>,
}

/// An app dropped without [`App::shutdown`] (a mounted router's app going away, a test
/// ending) still stops what it started: its loops end at their next step, and the push worker
/// hands back what it claimed. Nothing is waited for, and the store's queue is written only if
/// the runtime lives on long enough.
impl Drop for App {
    fn drop(&mut self) {
        self.tasks.stop();
        if let Some(worker) = self
            .worker
            .get_mut()
            .unwrap_or_else(|p| p.into_inner())
            .take()
        {
            worker.stop.cancel();
        }
        if let Some(outbox) = self
            .outbox
            .get_mut()
            .unwrap_or_else(|p| p.into_inner())
            .take()
        {
            outbox.stop.cancel();
        }
    }
}

impl std::fmt::Debug for App {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("App")
            .field("mode", &self.config.wechat.mode)
            .field("rules", &self.rules)
            .finish_non_exhaustive()
    }
}

impl App {
    /// Starts describing an app for `config`; [`Builder::build`] builds it.
    pub fn builder(config: Config) -> Builder {
        Builder {
            config,
            store: None,
            user: Router::new(),
            replace_bot: None,
            rules: true,
            modules: Vec::new(),
            http: axum::Router::new(),
            late: None,
            rules_watch: RULES_WATCH,
            limits: Limits::default(),
            push_worker: true,
            dev: false,
        }
    }

    /// The app as `huixin serve` runs it: [`App::builder`] with nothing added.
    pub async fn new(config: Config) -> Result<Self, AppError> {
        Self::builder(config).build().await
    }

    /// The whole HTTP surface, without binding a socket: mount it in an axum app of your own
    /// (then call [`App::shutdown`] when that app stops).
    pub fn router(&self) -> axum::Router {
        self.router.clone()
    }

    /// The config it was built from.
    pub fn config(&self) -> &Config {
        &self.config
    }

    /// Its store.
    pub fn store(&self) -> &Store {
        &self.store
    }

    /// Its push service.
    pub fn pushes(&self) -> &Pushes {
        &self.pushes
    }

    /// The platform for app developers.
    pub fn apps(&self) -> &Apps {
        &self.apps
    }

    /// The client for WeChat's API, when `[wechat] app_id` and `app_secret` are set.
    pub fn client(&self) -> Option<&Client> {
        self.client.as_ref()
    }

    /// The live rules (none when the bot was replaced or built without rules).
    pub fn rules(&self) -> Option<&Arc<Rules>> {
        self.rules.as_ref()
    }

    /// Its metrics: what `/metrics` renders, and the recent errors and counts the operator
    /// console shows.
    pub fn metrics(&self) -> &Metrics {
        &self.metrics
    }

    /// Where `[metrics] listen` serves `/metrics`, once bound (none when it is empty).
    pub fn metrics_addr(&self) -> Option<SocketAddr> {
        self.metrics_addr
    }

    /// The work and background loops it started.
    pub fn tasks(&self) -> &Tasks {
        &self.tasks
    }

    /// Whether the push delivery worker runs (credentials and `[push] template_id` set).
    pub fn delivers_pushes(&self) -> bool {
        self.worker
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .is_some()
    }

    /// The callback token in use, and where it came from.
    pub fn token(&self) -> (&str, &TokenSource) {
        (&self.token, &self.token_source)
    }

    /// Binds `[server] listen`.
    pub async fn bind(&self) -> Result<TcpListener, AppError> {
        let addr = &self.config.server.listen;
        TcpListener::bind(addr)
            .await
            .map_err(|source| AppError::Bind {
                addr: addr.clone(),
                source,
            })
    }

    /// Serves on `listener` until `shutdown` completes, then shuts down in order (see the
    /// [module documentation](self)). With `[server] public_url` empty, links to detail
    /// pages use the listener's address.
    pub async fn serve(
        self,
        listener: TcpListener,
        shutdown: impl Future<Output = ()> + Send + 'static,
    ) -> Result<(), AppError> {
        self.use_address(listener.local_addr()?);
        let served = listen::serve(listener, self.router.clone(), shutdown, self.limits).await;
        self.shutdown().await;
        served.map_err(AppError::Io)
    }

    /// Binds `[server] listen`, prints what a newcomer needs (address, mode, a freshly
    /// generated token once, what is on and off), then serves until Ctrl-C or SIGTERM.
    pub async fn serve_until_signal(self) -> Result<(), AppError> {
        let listener = self.bind().await?;
        self.serve_listener_until_signal(listener).await
    }

    /// [`App::serve_until_signal`] on a listener bound already (`huixin serve --dev` binds
    /// first, to point its emulator at the address).
    pub async fn serve_listener_until_signal(self, listener: TcpListener) -> Result<(), AppError> {
        let addr = listener.local_addr()?;
        self.use_address(addr);
        self.print_banner(addr);
        tracing::info!(%addr, mode = self.config.wechat.mode.as_str(), "serving");
        self.serve(listener, server::shutdown_signal()).await?;
        tracing::info!("stopped");
        Ok(())
    }

    /// Ends what the app started, in order: late replies and sends from rules (up to the
    /// shutdown grace of its [`Limits`]), the push worker (which hands back what it claimed),
    /// the background loops, and the store's queue. [`App::serve`] calls it; call it yourself
    /// when you mounted [`App::router`] elsewhere.
    pub async fn shutdown(&self) {
        if !self.tasks.wait_idle(self.limits.shutdown_grace).await {
            tracing::warn!(
                tasks = self.tasks.active(),
                "late replies still in progress at shutdown are abandoned"
            );
        }
        let worker = self.worker.lock().unwrap_or_else(|p| p.into_inner()).take();
        if let Some(Worker { stop, worker }) = worker {
            // It lets sends in flight finish and hands back what it claimed but did not start.
            stop.cancel();
            if tokio::time::timeout(WORKER_GRACE, worker).await.is_err() {
                tracing::warn!("push sends still in flight at shutdown are abandoned");
            }
        }
        let outbox = self.outbox.lock().unwrap_or_else(|p| p.into_inner()).take();
        if let Some(Worker { stop, worker }) = outbox {
            stop.cancel();
            if tokio::time::timeout(WORKER_GRACE, worker).await.is_err() {
                tracing::warn!("webhook deliveries still in flight at shutdown are abandoned");
            }
        }
        if !self.tasks.stop_loops(LOOPS_GRACE).await {
            tracing::warn!("background tasks did not stop in time");
        }
        self.store.leave().await;
        if let Err(e) = self.store.flush().await {
            tracing::error!(error = %e, "queued store writes could not be flushed at shutdown");
        }
    }

    /// With `[server] public_url` empty, links to detail pages use the bound address.
    fn use_address(&self, addr: SocketAddr) {
        self.console.set_self_base(&format!("http://{addr}"));
        if self.config.server.public_url.is_empty() {
            self.pushes.set_public_base(&format!("http://{addr}"));
        }
    }

    fn print_banner(&self, addr: SocketAddr) {
        let config = &self.config;
        // What is on first; the address last but the token, as scripts wait for that line.
        match &self.client {
            Some(_) => println!(
                "outbound: late replies and rule sends go through {}",
                config.wechat.api_base
            ),
            None => println!(
                "outbound: off ([wechat] app_id and app_secret are not set); late replies are logged"
            ),
        }
        println!(
            "store: {}{}",
            crate::store::shown_url(&config.storage.url),
            if self.store.alone() {
                ""
            } else {
                " (shared with other processes)"
            }
        );
        if let Some(rules) = &self.rules {
            let current = rules.current();
            match &current.source {
                Source::Builtin => println!(
                    "rules: {} built-in rules ({} does not exist; `huixin rules init` writes editable copies)",
                    current.rules.len(),
                    config.rules.dir.display()
                ),
                source => println!("rules: {} rules from {source}", current.rules.len()),
            }
        }
        match (&self.client, self.delivers_pushes()) {
            (_, true) => println!(
                "push: API at {}/api/v1/push; deliveries as template {}",
                self.pushes.public_base(),
                config.push.template_id
            ),
            (Some(_), false) if config.push.template_id.is_empty() => {
                println!("push: off (set [push] template_id to deliver pushes)")
            }
            (Some(_), false) => println!("push: accepting; no delivery worker in this process"),
            (None, false) => {}
        }
        if self.console.enabled() {
            let base = match config.server.public_url.as_str() {
                "" => format!("http://{addr}"),
                url => url.trim_end_matches('/').to_owned(),
            };
            println!("console: {base}/admin");
        } else {
            println!("console: off (set [admin] password; `huixin admin hash-password` makes one)");
        }
        match (
            self.metrics.is_enabled(),
            self.metrics_addr,
            config.metrics.token.is_empty(),
        ) {
            (false, _, _) => println!("metrics: off ([metrics] enabled = false)"),
            (true, Some(at), _) => {
                println!("metrics: http://{at}/metrics (no key: keep it private)")
            }
            (true, None, false) => {
                println!("metrics: /metrics with Authorization: Bearer <[metrics] token>")
            }
            (true, None, true) => {
                println!("metrics: counted, not served (set [metrics] token or [metrics] listen)")
            }
        }
        println!(
            "huixin listening on http://{addr}{} ({} mode)",
            config.server.path,
            config.wechat.mode.as_str()
        );
        if !config.server.public_url.is_empty() {
            println!(
                "URL to set in the WeChat console: {}{}",
                config.server.public_url.trim_end_matches('/'),
                config.server.path
            );
        }
        match self.token_source {
            TokenSource::Generated { new: true } => println!(
                "generated callback token (shown once; set it as Token in the WeChat console, \
                 or set [wechat] token): {}",
                self.token
            ),
            TokenSource::Generated { new: false } => println!(
                "using the callback token generated on first start (`huixin token --callback` shows it)"
            ),
            TokenSource::Configured => {}
        }
    }
}
