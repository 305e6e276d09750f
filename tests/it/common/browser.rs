//! Debian's chromium, headless, for pages: what they render, where redirects end.

#![allow(dead_code)]

use std::path::Path;
use std::process::Output;

/// Debian's chromium (`.ci/run` installs it); `CHROMIUM` overrides the path.
pub fn chromium() -> String {
    std::env::var("CHROMIUM").unwrap_or_else(|_| "chromium".into())
}

/// [`chromium`] as a full path (WebDriver wants the binary itself).
pub fn chromium_path() -> String {
    let name = chromium();
    if name.contains('/') {
        return name;
    }
    std::env::var_os("PATH")
        .and_then(|paths| {
            std::env::split_paths(&paths)
                .map(|dir| dir.join(&name))
                .find(|p| p.is_file())
        })
        .map_or(name, |p| p.display().to_string())
}

/// Runs headless Chromium at a phone's size with `args`, then `url`.
pub fn headless(profile: &Path, args: &[&str], url: &str) -> Output {
    std::process::Command::new(chromium())
        .args([
            "--headless",
            "--no-sandbox",
            "--disable-gpu",
            "--disable-dev-shm-usage",
            "--no-first-run",
            "--window-size=390,844",
        ])
        .arg(format!("--user-data-dir={}", profile.display()))
        .args(args)
        .arg(url)
        .output()
        .expect("chromium runs (apt-get install chromium; .ci/run does)")
}

/// The DOM a fresh profile ends on after following `url`'s redirects and letting scripts run.
pub fn dom_after(url: &str) -> String {
    let profile = tempfile::tempdir().unwrap();
    let out = headless(
        profile.path(),
        &["--virtual-time-budget=3000", "--dump-dom"],
        url,
    );
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}
