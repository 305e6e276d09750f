//! Shared helpers: start the real app ([`huixin::app::App`], what `huixin serve` runs) on port 0
//! with a real SQLite file, and play WeChat against it with huixin's simulator.

#![allow(dead_code)]

pub mod browser;
pub mod emu;
pub mod nginx;
pub mod pg;
pub mod process;
pub mod receiver;
pub mod setup;
pub mod webdriver;

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU16, Ordering};

use huixin::app::App;
use huixin::bot::Router;
use huixin::config::Config;
use huixin::server::listen::Limits;
use huixin::simulator::Simulator;
use huixin::wechat::{Mode, MsgCrypt};
use tokio::sync::oneshot;

/// The test account's token.
pub const TOKEN: &str = "huixinTestToken42";
/// The test account's EncodingAESKey (43 chars).
pub const AES_KEY: &str = "kWxPEV2UEDyxWpmPdKC3F4dgPDmOvfKX1HGnEUDS1aR";
/// The test account's AppID.
pub const APP_ID: &str = "wx49f0ab532d5d035a";
/// A third-party platform's component app id, accepted as an extra id.
pub const COMPONENT_APP_ID: &str = "wxcomponent0000001";

/// The three modes.
pub const MODES: [Mode; 3] = [Mode::Plain, Mode::Compatible, Mode::Safe];

/// A running server and the simulator that talks to it.
pub struct TestServer {
    /// The callback URL.
    pub url: String,
    /// `http://ADDR`.
    pub base: String,
    /// Plays WeChat with the server's own token, key and mode.
    pub sim: Simulator,
    /// The config the server runs with.
    pub config: Config,
    shutdown: Option<oneshot::Sender<()>>,
    task: Option<tokio::task::JoinHandle<()>>,
    _dir: tempfile::TempDir,
}

impl Drop for TestServer {
    fn drop(&mut self) {
        if let Some(tx) = self.shutdown.take() {
            let _ = tx.send(());
        }
        if let Some(task) = self.task.take() {
            task.abort();
        }
    }
}

/// A config for `mode` with its database in `dir`; `extra` is appended TOML (inside
/// `[wechat]`, e.g. `max_clock_skew_secs = 0`).
pub fn config(mode: Mode, dir: &Path, extra_wechat: &str) -> Config {
    config_full(mode, dir, extra_wechat, "")
}

/// As [`config`], with whole sections (`[bot]`, `[rules]`) appended.
pub fn config_full(mode: Mode, dir: &Path, extra_wechat: &str, sections: &str) -> Config {
    let db = dir.join("huixin.db");
    let toml = format!(
        r#"
[server]
listen = "127.0.0.1:0"

[storage]
url = "sqlite://{db}"

[wechat]
token = "{TOKEN}"
app_id = "{APP_ID}"
encoding_aes_key = "{AES_KEY}"
mode = "{mode}"
extra_app_ids = ["{COMPONENT_APP_ID}"]
{extra_wechat}

{sections}
"#,
        db = db.display(),
        mode = mode.as_str(),
    );
    Config::from_toml(&toml).expect("test config is valid")
}

/// Starts the real app on port 0 with `router` as its whole bot (no configured middleware, no
/// rules).
pub async fn start(mode: Mode, router: Router) -> TestServer {
    start_with(mode, router, "").await
}

/// Starts the real app with extra `[wechat]` settings.
pub async fn start_with(mode: Mode, router: Router, extra_wechat: &str) -> TestServer {
    start_limited(mode, router, extra_wechat, Limits::default()).await
}

/// Starts the real app with given connection limits.
pub async fn start_limited(
    mode: Mode,
    router: Router,
    extra_wechat: &str,
    limits: Limits,
) -> TestServer {
    let dir = tempfile::tempdir().expect("temp dir");
    let config = config(mode, dir.path(), extra_wechat);
    let app = App::builder(config)
        .bot(router)
        .limits(limits)
        .build()
        .await
        .expect("app builds");
    launch(app, dir).await
}

/// Serves a built app on port 0 in the background until the returned handle drops.
pub async fn launch(app: App, dir: tempfile::TempDir) -> TestServer {
    let config = app.config().clone();
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("binds port 0");
    let addr = listener.local_addr().expect("bound address");
    let base = format!("http://{addr}");
    let url = format!("{base}{}", config.server.path);
    let (tx, rx) = oneshot::channel::<()>();
    let task = tokio::spawn(async move {
        let _ = app
            .serve(listener, async move {
                let _ = rx.await;
            })
            .await;
    });
    let sim = simulator(&url, config.wechat.mode, APP_ID);
    TestServer {
        url,
        base,
        sim,
        config,
        shutdown: Some(tx),
        task: Some(task),
        _dir: dir,
    }
}

/// A simulator for `url` that encrypts for `app_id`.
pub fn simulator(url: &str, mode: Mode, app_id: &str) -> Simulator {
    let crypt = MsgCrypt::new(TOKEN, AES_KEY, app_id, &[]).expect("key is valid");
    Simulator::new(url, TOKEN, mode, Some(crypt)).expect("url is valid")
}

/// The fixtures folder.
pub fn fixtures() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures")
}

/// A fixture's bytes.
pub fn fixture(rel: &str) -> Vec<u8> {
    std::fs::read(fixtures().join(rel)).unwrap_or_else(|e| panic!("fixture {rel}: {e}"))
}

/// Every fixture under `dir` (relative to the fixtures folder), sorted, as (file name, bytes).
pub fn fixtures_in(dir: &str) -> Vec<(String, Vec<u8>)> {
    let mut out: Vec<(String, Vec<u8>)> = std::fs::read_dir(fixtures().join(dir))
        .unwrap_or_else(|e| panic!("fixtures/{dir}: {e}"))
        .filter_map(Result::ok)
        .filter(|e| e.path().extension().is_some_and(|x| x == "xml"))
        .map(|e| {
            let name = e.file_name().to_string_lossy().into_owned();
            let bytes = std::fs::read(e.path()).expect("readable fixture");
            (name, bytes)
        })
        .collect();
    out.sort();
    out
}

/// Late replies, recorded instead of sent.
#[derive(Default)]
pub struct Recorded {
    /// (openid, reply) in arrival order.
    pub replies: std::sync::Mutex<Vec<(String, huixin::wechat::Reply)>>,
}

#[async_trait::async_trait]
impl huixin::bot::late::LateReplies for Recorded {
    async fn deliver(&self, message: &huixin::wechat::Message, reply: huixin::wechat::Reply) {
        self.replies
            .lock()
            .unwrap()
            .push((message.from.as_str().to_owned(), reply));
    }
}

/// A server running the configured pipeline.
pub struct Pipeline {
    /// The server.
    pub server: TestServer,
    /// Its store.
    pub store: huixin::store::Store,
    /// Late replies that went to the customer-service path.
    pub late: std::sync::Arc<Recorded>,
}

/// Starts the real app with the middleware of `[bot]` (from `sections`) and, in place of the
/// rules, the routes `routes` adds to an empty router. `db` names a shared database file, or
/// `None` for a fresh one.
pub async fn start_pipeline(
    mode: Mode,
    sections: &str,
    db: Option<&Path>,
    routes: impl FnOnce(Router) -> Router,
) -> Pipeline {
    let dir = tempfile::tempdir().expect("temp dir");
    let mut config = config_full(mode, dir.path(), "", sections);
    if let Some(db) = db {
        config.storage.url = format!("sqlite://{}", db.display());
    }
    let late = std::sync::Arc::new(Recorded::default());
    let app = App::builder(config)
        .without_rules()
        .merge(routes(Router::new()))
        .late_replies(late.clone())
        .build()
        .await
        .expect("app builds");
    serve_pipeline(app, late, dir).await
}

/// Serves `app` in the background, keeping its store and recorded late replies at hand.
async fn serve_pipeline(
    app: App,
    late: std::sync::Arc<Recorded>,
    dir: tempfile::TempDir,
) -> Pipeline {
    let store = app.store().clone();
    Pipeline {
        server: launch(app, dir).await,
        store,
        late,
    }
}

/// Starts the real app as `huixin serve` runs it: the pipeline around the rules of
/// `rules_dir` (reloaded every 50 ms), with extra config `sections`; late replies recorded.
pub async fn start_rules(mode: Mode, sections: &str, rules_dir: &Path) -> Pipeline {
    let dir = tempfile::tempdir().expect("temp dir");
    let mut config = config_full(mode, dir.path(), "", sections);
    config.rules.dir = rules_dir.to_path_buf();
    let late = std::sync::Arc::new(Recorded::default());
    let app = App::builder(config)
        .late_replies(late.clone())
        .rules_watch(std::time::Duration::from_millis(50))
        .build()
        .await
        .expect("app builds");
    serve_pipeline(app, late, dir).await
}

/// A loopback port nobody listens on now, for a server started later (a child process, nginx)
/// whose port must be known first. Taken from 20000–32767, below the range the kernel hands
/// out for port 0 and for outgoing connections, and in turn between the test binaries' and
/// the tests' own picks, so that two tests do not pick one port while neither listens yet.
pub fn free_port() -> u16 {
    static NEXT: AtomicU16 = AtomicU16::new(0);
    // Each test binary starts at its own place (its process id), then takes ports in turn.
    let start = std::process::id() % 12_000 * 97 % 12_000;
    for _ in 0..12_000 {
        let next = u32::from(NEXT.fetch_add(1, Ordering::Relaxed));
        let port = u16::try_from(20_000 + (start + next) % 12_000).expect("below 32768");
        if std::net::TcpListener::bind(("127.0.0.1", port)).is_ok() {
            return port;
        }
    }
    panic!("no free loopback port in 20000-32767")
}
