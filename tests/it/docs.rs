//! The docs match the code: the README's library quick start is `examples/echo_bot.rs`, its
//! whole-product example is `examples/full_bot.rs`, and every config key is in the README's
//! table.

use std::path::Path;

fn read(rel: &str) -> String {
    std::fs::read_to_string(Path::new(env!("CARGO_MANIFEST_DIR")).join(rel)).unwrap()
}

/// Everything after an example's header comment: what the README shows verbatim.
fn example_body(example: &str) -> String {
    example
        .lines()
        .skip_while(|l| l.starts_with("//!"))
        .collect::<Vec<_>>()
        .join("\n")
}

#[test]
fn readme_shows_the_full_bot_example() {
    let readme = read("README.md");
    let body = example_body(&read("examples/full_bot.rs"));
    assert!(
        readme.contains(body.trim()),
        "README's whole-product example differs from examples/full_bot.rs"
    );
}

#[test]
fn readme_quick_start_is_the_echo_bot_example() {
    let readme = read("README.md");
    let example = read("examples/echo_bot.rs");
    let body = example_body(&example);
    assert!(
        readme.contains(body.trim()),
        "README's Rust quick start differs from examples/echo_bot.rs"
    );
    assert!(
        example.lines().count() < 40,
        "the quick start stays under 40 lines"
    );
}

#[test]
fn every_config_key_is_documented() {
    let readme = read("README.md");
    let defaults = toml::Value::try_from(huixin::config::Config::default()).unwrap();
    for (section, table) in defaults.as_table().unwrap() {
        for key in table.as_table().unwrap().keys() {
            let row = format!(
                "| `[{section}] {key}` | `HUIXIN_{}_{}` |",
                section.to_uppercase(),
                key.to_uppercase()
            );
            assert!(
                readme.contains(&row),
                "README lacks the row for [{section}] {key}"
            );
        }
    }
}

#[test]
fn readme_rule_examples_load() {
    let readme = read("README.md");
    let block = |marker: &str| -> String {
        let start = readme
            .find(marker)
            .unwrap_or_else(|| panic!("README lacks {marker}"));
        let rest = &readme[start..];
        rest[..rest.find("```").unwrap()].to_owned()
    };
    let loader = huixin::rules::loader(
        &huixin::config::RulesConfig::default(),
        huixin::app::script_modules(),
    )
    .unwrap();
    let files = vec![
        huixin::rules::load::SourceFile {
            name: "40-deploy.rhai".into(),
            text: block("// rules/40-deploy.rhai"),
        },
        huixin::rules::load::SourceFile {
            name: "45-ops.rhai".into(),
            text: block("// rules/45-ops.rhai"),
        },
        huixin::rules::load::SourceFile {
            name: "50-keywords.toml".into(),
            text: block("# rules/50-keywords.toml"),
        },
    ];
    let set = loader
        .load(files, None, huixin::rules::Source::Builtin)
        .unwrap_or_else(|e| panic!("README examples fail to load: {e:?}"));
    assert_eq!(set.rules.len(), 4);
}
