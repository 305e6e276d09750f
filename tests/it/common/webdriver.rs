//! Debian's chromium, headless, driven over WebDriver (chromedriver, with the fantoccini
//! client): pages clicked and typed into like a person would, and screenshots.

#![allow(dead_code)]

use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use fantoccini::{Client, ClientBuilder, Locator};

/// Debian's chromedriver (`.ci/run` installs it); `CHROMEDRIVER` overrides the path.
fn chromedriver() -> String {
    std::env::var("CHROMEDRIVER").unwrap_or_else(|_| "chromedriver".into())
}

/// A chromedriver process and a browser session on it; both end on drop.
pub struct Browser {
    pub client: Client,
    driver: Child,
    _profile: tempfile::TempDir,
}

impl Drop for Browser {
    fn drop(&mut self) {
        let _ = self.driver.kill();
        let _ = self.driver.wait();
    }
}

/// Starts chromedriver on a free port and a headless session `width` × `height`.
pub async fn start(width: u32, height: u32) -> Browser {
    let port = super::free_port();
    let driver = Command::new(chromedriver())
        .arg(format!("--port={port}"))
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("chromedriver runs (apt-get install chromium-driver; .ci/run does)");
    let profile = tempfile::tempdir().unwrap();
    let mut caps = serde_json::Map::new();
    caps.insert(
        "goog:chromeOptions".into(),
        serde_json::json!({
            "binary": super::browser::chromium_path(),
            "args": [
                "--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage",
                "--no-first-run", "--disable-background-networking", "--disable-component-update",
                "--disable-sync", "--disable-quic", "--hide-scrollbars",
                format!("--window-size={width},{height}"),
                format!("--user-data-dir={}", profile.path().display()),
            ],
        }),
    );
    let url = format!("http://127.0.0.1:{port}");
    let deadline = Instant::now() + Duration::from_secs(20);
    let client = loop {
        let attempt = ClientBuilder::rustls()
            .expect("TLS roots")
            .capabilities(caps.clone())
            .connect(&url)
            .await;
        match attempt {
            Ok(client) => break client,
            Err(e) if Instant::now() > deadline => panic!("no WebDriver session: {e}"),
            Err(_) => tokio::time::sleep(Duration::from_millis(200)).await,
        }
    };
    client.set_window_size(width, height).await.unwrap();
    Browser {
        client,
        driver,
        _profile: profile,
    }
}

impl Browser {
    /// Waits (up to 15 s) until the element matching `css` has text containing `needle`,
    /// reloading the page every second when `reload`; panics with the page's text otherwise.
    pub async fn wait_text(&self, css: &str, needle: &str, reload: bool) -> String {
        let deadline = Instant::now() + Duration::from_secs(15);
        let mut last_reload = Instant::now();
        loop {
            if let Ok(elements) = self.client.find_all(Locator::Css(css)).await {
                for e in elements {
                    if let Ok(text) = e.text().await
                        && text.contains(needle)
                    {
                        return text;
                    }
                }
            }
            if Instant::now() > deadline {
                let body = self.text("body").await;
                panic!("no {css} containing {needle:?}; the page says:\n{body}");
            }
            if reload && last_reload.elapsed() > Duration::from_secs(1) {
                self.client.refresh().await.unwrap();
                last_reload = Instant::now();
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    /// The text of the first element matching `css` (empty when none).
    pub async fn text(&self, css: &str) -> String {
        match self.client.find(Locator::Css(css)).await {
            Ok(e) => e.text().await.unwrap_or_default(),
            Err(_) => String::new(),
        }
    }

    /// Types into the element matching `css`.
    pub async fn fill(&self, css: &str, text: &str) {
        let e = self
            .client
            .find(Locator::Css(css))
            .await
            .unwrap_or_else(|e| panic!("{css}: {e}"));
        e.clear().await.unwrap();
        e.send_keys(text).await.unwrap();
    }

    /// Clicks the element matching `css`.
    pub async fn click(&self, css: &str) {
        self.client
            .find(Locator::Css(css))
            .await
            .unwrap_or_else(|e| panic!("{css}: {e}"))
            .click()
            .await
            .unwrap();
    }

    /// Saves a screenshot of the window at `width` to `target/admin-screenshots/NAME.png`.
    pub async fn screenshot(&self, name: &str, width: u32, height: u32) -> PathBuf {
        self.client.set_window_size(width, height).await.unwrap();
        tokio::time::sleep(Duration::from_millis(150)).await;
        let png = self.client.screenshot().await.unwrap();
        assert_eq!(&png[..8], b"\x89PNG\r\n\x1a\n", "a PNG");
        let dir = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("target/admin-screenshots");
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join(format!("{name}.png"));
        std::fs::write(&path, png).unwrap();
        path
    }
}
