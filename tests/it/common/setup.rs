//! The real binary (`huixin serve`) with the emulator as WeChat and a fresh SQLite file: the
//! setup of the push and platform tests. Blocking: each test owns a runtime for its HTTP calls.

#![allow(dead_code)]

use std::path::Path;
use std::time::Duration;

use huixin::emulator::BotTarget;
use huixin::wechat::Mode;
use serde_json::Value;

use super::emu::{API_APP_ID, API_SECRET, RunningEmulator, TEMPLATE, emulator_settings};
use super::free_port;
use super::process::{HUIXIN, Running, huixin, stderr, stdout};

/// An emulator (on its own runtime, so the test thread may block on processes) whose bot is
/// the `huixin serve` this setup starts, on a port chosen up front so that a restarted server
/// keeps it.
pub struct Setup {
    pub em: RunningEmulator,
    pub runtime: tokio::runtime::Runtime,
    pub dir: tempfile::TempDir,
    pub port: u16,
    pub http: reqwest::Client,
}

pub fn setup(followers: &[&str], push_section: &str) -> Setup {
    setup_with(followers, push_section, Duration::ZERO)
}

pub fn setup_with(followers: &[&str], push_section: &str, latency: Duration) -> Setup {
    setup_emulated(followers, push_section, |settings| {
        settings.latency = latency
    })
}

/// [`setup`] with the emulator's settings changed by `tune` (its latency, how long it waits
/// for a reply before retrying).
pub fn setup_emulated(
    followers: &[&str],
    push_section: &str,
    tune: impl FnOnce(&mut huixin::emulator::Settings),
) -> Setup {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    let port = free_port();
    let dir = tempfile::tempdir().unwrap();
    let mut settings = emulator_settings(followers);
    tune(&mut settings);
    settings.bot = Some(BotTarget {
        callback_url: format!("http://127.0.0.1:{port}/wechat"),
        token: super::TOKEN.into(),
        mode: Mode::Plain,
        encoding_aes_key: String::new(),
        app_id: API_APP_ID.into(),
        account_id: "gh_push_test".into(),
    });
    let em = runtime.block_on(async {
        let (listener, _) = super::emu::reserve().await;
        super::emu::serve_on(listener, settings)
    });
    let config = format!(
        "[server]\nlisten = \"127.0.0.1:{port}\"\n\
         [wechat]\ntoken = \"{token}\"\napp_id = \"{API_APP_ID}\"\napp_secret = \"{API_SECRET}\"\n\
         api_base = \"{base}\"\n\
         [storage]\nurl = \"{db}\"\n\
         [bot]\nrate_limit_per_minute = 0\n\
         [push]\ntemplate_id = \"{TEMPLATE}\"\nretry_backoff_ms = 100\nlease_secs = 5\n\
         rate_per_second = 0\n{push_section}\n",
        token = super::TOKEN,
        base = em.base,
        db = super::emu::sqlite_url(dir.path()),
    );
    std::fs::write(dir.path().join("huixin.toml"), config).unwrap();
    Setup {
        em,
        runtime,
        dir,
        port,
        http: reqwest::Client::new(),
    }
}

impl Setup {
    pub fn base(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }

    pub fn serve(&self) -> Running {
        let mut server = Running::spawn(Path::new(HUIXIN), self.dir.path(), &["serve"], &[]);
        server.wait_for("listening on");
        server
    }

    pub fn run(&self, args: &[&str]) -> String {
        let out = huixin(self.dir.path(), args, &[("RUST_LOG", "warn")]);
        assert!(
            out.status.success(),
            "huixin {args:?} failed: {}{}",
            stdout(&out),
            stderr(&out)
        );
        stdout(&out).trim().to_owned()
    }

    pub fn admin_key(&self) -> String {
        self.run(&["keys", "create", "--admin", "--label", "test"])
    }

    /// POSTs JSON to `path` with a bearer key; the status and the JSON answer.
    pub fn post(&self, path: &str, key: Option<&str>, body: Value) -> (u16, Value) {
        self.runtime.block_on(async {
            let mut request = self.http.post(format!("{}{path}", self.base())).json(&body);
            if let Some(key) = key {
                request = request.bearer_auth(key);
            }
            let response = request.send().await.unwrap();
            let status = response.status().as_u16();
            (status, response.json().await.unwrap_or(Value::Null))
        })
    }

    pub fn get(&self, path: &str, key: Option<&str>) -> (u16, String) {
        self.runtime.block_on(async {
            let mut request = self.http.get(format!("{}{path}", self.base()));
            if let Some(key) = key {
                request = request.bearer_auth(key);
            }
            let response = request.send().await.unwrap();
            let status = response.status().as_u16();
            (status, response.text().await.unwrap())
        })
    }

    pub fn status(&self, key: &str, id: &str) -> Value {
        let (code, body) = self.get(&format!("/api/v1/push/{id}"), Some(key));
        assert_eq!(code, 200, "{body}");
        serde_json::from_str(&body).unwrap()
    }

    /// Waits until no recipient of push `id` is pending and `done` holds.
    pub fn settle(&self, key: &str, id: &str, done: impl Fn(&Value) -> bool) -> Value {
        for _ in 0..600 {
            let status = self.status(key, id);
            if status["counts"]["pending"] == 0 && done(&status) {
                return status;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        panic!("push {id} did not settle: {}", self.status(key, id));
    }

    pub fn templates_to(&self, openid: &str) -> Vec<Value> {
        self.em.received(openid, "template")
    }
}

/// An app made with `huixin apps create`: its token and signing secret.
pub struct MadeApp {
    /// `AT_…`.
    pub token: String,
    /// The webhook signing secret.
    pub secret: String,
}

/// The token and secret in what `huixin apps create` printed.
pub fn app_credentials(out: &str) -> MadeApp {
    let field = |name: &str| {
        out.lines()
            .find_map(|l| l.strip_prefix(name))
            .map(|v| v.trim().to_owned())
            .unwrap_or_else(|| panic!("no {name} in {out}"))
    };
    MadeApp {
        token: field("token:"),
        secret: field("secret:"),
    }
}

impl Setup {
    /// `huixin apps create ARGS…`.
    pub fn create_app(&self, args: &[&str]) -> MadeApp {
        let mut full = vec!["apps", "create"];
        full.extend_from_slice(args);
        app_credentials(&self.run(&full))
    }

    /// `openid` sends `message` through the emulator (`POST /emulator/send`): the
    /// conversation.
    pub fn emulator_send(&self, openid: &str, message: Value) -> Value {
        self.emulator_post(&format!("/emulator/send?from={openid}"), message)
    }

    /// `openid` scans the QR code of `ticket` (`POST /emulator/scan`): the conversation.
    pub fn scan(&self, openid: &str, ticket: &str) -> Value {
        self.emulator_post(
            &format!("/emulator/scan?from={openid}"),
            serde_json::json!({ "ticket": ticket }),
        )
    }

    /// POSTs JSON to the emulator's control API.
    pub fn emulator_post(&self, path: &str, body: Value) -> Value {
        self.runtime.block_on(async {
            self.http
                .post(format!("{}{path}", self.em.base))
                .json(&body)
                .send()
                .await
                .unwrap()
                .json()
                .await
                .unwrap_or(Value::Null)
        })
    }
}
