//! The WeChat emulator in-process on port 0, and API clients pointed at it.

use std::path::Path;

use huixin::config::{Secret, WechatConfig};
use huixin::emulator::{CallRecord, Emulator, Settings};
use huixin::server::listen::{self, Limits};
use tokio::net::TcpListener;
use tokio::sync::oneshot;

/// The AppID the emulator accepts in these tests.
pub const API_APP_ID: &str = super::APP_ID;
/// The AppSecret it accepts.
pub const API_SECRET: &str = "huixin_test_app_secret";
/// The template the emulator knows from the start.
pub const TEMPLATE: &str = "huixin_template_1";

/// A running emulator; stopped on drop.
pub struct RunningEmulator {
    /// The emulator (calls, inbox, faults).
    pub emu: Emulator,
    /// `http://ADDR`: the `api_base` to use.
    pub base: String,
    _stop: oneshot::Sender<()>,
}

/// A port for an emulator whose settings are not known yet (they may need the address of a
/// bot that needs the emulator's address).
pub async fn reserve() -> (TcpListener, String) {
    let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let base = format!("http://{}", listener.local_addr().expect("addr"));
    (listener, base)
}

/// Serves `settings` on `listener` in the background.
pub fn serve_on(listener: TcpListener, settings: Settings) -> RunningEmulator {
    let emu = Emulator::new(settings);
    let base = format!("http://{}", listener.local_addr().expect("addr"));
    let (tx, rx) = oneshot::channel::<()>();
    let app = emu.app();
    tokio::spawn(async move {
        let _ = listen::serve(
            listener,
            app,
            async move {
                let _ = rx.await;
            },
            Limits::default(),
        )
        .await;
    });
    RunningEmulator {
        emu,
        base,
        _stop: tx,
    }
}

/// The test credentials, no bot, and `followers` following.
pub fn emulator_settings(followers: &[&str]) -> Settings {
    Settings {
        app_id: API_APP_ID.into(),
        app_secret: API_SECRET.into(),
        followers: followers.iter().map(|s| (*s).to_owned()).collect(),
        ..Settings::default()
    }
}

/// Starts an emulator on port 0.
pub async fn start_emulator(settings: Settings) -> RunningEmulator {
    let (listener, _) = reserve().await;
    serve_on(listener, settings)
}

impl RunningEmulator {
    /// `[wechat]` for an account on this emulator.
    pub fn wechat(&self) -> WechatConfig {
        WechatConfig {
            app_id: API_APP_ID.into(),
            app_secret: Secret::new(API_SECRET),
            api_base: self.base.clone(),
            ..WechatConfig::default()
        }
    }

    /// The API calls to `path` so far.
    pub fn calls_to(&self, path: &str) -> Vec<CallRecord> {
        self.emu
            .calls()
            .into_iter()
            .filter(|c| c.path == path && c.method != "PUSH")
            .collect()
    }

    /// Token requests so far (either endpoint).
    pub fn token_requests(&self) -> usize {
        self.calls_to("/cgi-bin/stable_token").len() + self.calls_to("/cgi-bin/token").len()
    }

    /// Messages of `kind` (`custom`, `template`, `passive`) `openid` received.
    pub fn received(&self, openid: &str, kind: &str) -> Vec<serde_json::Value> {
        self.emu
            .inbox(openid)
            .into_iter()
            .filter(|d| d.kind == kind)
            .map(|d| d.body)
            .collect()
    }
}

/// A shared SQLite file URL in `dir`.
pub fn sqlite_url(dir: &Path) -> String {
    format!("sqlite://{}", dir.join("huixin.db").display())
}
