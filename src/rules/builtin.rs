//! The shipped rules (the repository's `rules/` folder), built into the binary: they run when
//! `[rules] dir` does not exist, so `huixin serve` answers with no setup, and
//! `huixin rules init` writes them out for editing.

use std::path::{Path, PathBuf};

use super::load::{LoadError, Loader, RuleSet, Source, SourceFile};

/// The shipped rule files, by name.
pub const FILES: &[(&str, &str)] = &[
    (
        "10-feedback.rhai",
        include_str!("../../rules/10-feedback.rhai"),
    ),
    ("20-help.rhai", include_str!("../../rules/20-help.rhai")),
    (
        "30-welcome.rhai",
        include_str!("../../rules/30-welcome.rhai"),
    ),
    ("40-push.rhai", include_str!("../../rules/40-push.rhai")),
    (
        "50-keywords.toml",
        include_str!("../../rules/50-keywords.toml"),
    ),
    ("90-echo.rhai", include_str!("../../rules/90-echo.rhai")),
    ("README.md", include_str!("../../rules/README.md")),
];

/// Loads the shipped rules.
pub fn load(loader: &Loader) -> Result<RuleSet, Vec<LoadError>> {
    let files = FILES
        .iter()
        .filter(|(name, _)| name.ends_with(".rhai") || name.ends_with(".toml"))
        .map(|(name, text)| SourceFile {
            name: (*name).to_owned(),
            text: (*text).to_owned(),
        })
        .collect();
    loader.load(files, None, Source::Builtin)
}

/// Writes the shipped rules into `dir` (created if needed). Existing files are left alone
/// unless `overwrite`; returns the files written.
pub fn write_to(dir: &Path, overwrite: bool) -> std::io::Result<Vec<PathBuf>> {
    std::fs::create_dir_all(dir)?;
    let mut written = Vec::new();
    for (name, text) in FILES {
        let path = dir.join(name);
        if path.exists() && !overwrite {
            continue;
        }
        std::fs::write(&path, text)?;
        written.push(path);
    }
    Ok(written)
}
