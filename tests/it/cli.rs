//! The real binaries: `huixin serve` on the embedded default and from config files,
//! `huixin simulate` against it, `huixin token`, and `examples/echo_bot`.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use crate::common;

use common::process::{HUIXIN, Running, huixin, stderr, stdout};

fn simulate_ok(dir: &Path, url: &str, args: &[&str]) -> String {
    let mut all = vec!["simulate", "--url", url];
    all.extend_from_slice(args);
    let out = huixin(dir, &all, &[]);
    assert!(
        out.status.success(),
        "simulate {args:?} failed: {}{}",
        stdout(&out),
        stderr(&out)
    );
    stdout(&out)
}

const PORT0: (&str, &str) = ("HUIXIN_SERVER_LISTEN", "127.0.0.1:0");

#[test]
fn serve_runs_on_the_embedded_default_and_simulate_talks_to_it() {
    let dir = tempfile::tempdir().unwrap();
    let mut server = Running::spawn(Path::new(HUIXIN), dir.path(), &["serve"], &[PORT0]);
    let url = server.url();
    assert!(url.ends_with("/wechat"), "{url}");
    let token_line = server.wait_for("generated callback token");
    let token = token_line.rsplit(' ').next().unwrap().to_owned();
    assert_eq!(token.len(), 32);
    assert!(
        dir.path().join("huixin.db").exists(),
        "SQLite file in the working directory"
    );

    let out = simulate_ok(dir.path(), &url, &["text", "hello 回信"]);
    assert!(out.contains("text: hello 回信"), "{out}");
    let out = simulate_ok(dir.path(), &url, &["image", "--media-id", "MEDIA_1"]);
    assert!(out.contains("image: media_id=MEDIA_1"), "{out}");
    let out = simulate_ok(dir.path(), &url, &["subscribe", "--scene", "poster_7"]);
    assert!(out.contains("poster_7"), "{out}");
    let out = simulate_ok(dir.path(), &url, &["--verify-url"]);
    assert!(out.contains("echostr echoed"), "{out}");
    let out = simulate_ok(dir.path(), &url, &["--retries", "2", "text", "again"]);
    assert_eq!(out.matches("text: again").count(), 3, "{out}");

    let out = huixin(dir.path(), &["token", "--callback"], &[]);
    assert_eq!(stdout(&out).trim(), token);
    assert!(server.terminate(), "SIGTERM stops the server cleanly");

    // A restart keeps the generated token and does not print it again.
    let mut server = Running::spawn(Path::new(HUIXIN), dir.path(), &["serve"], &[PORT0]);
    let url = server.url();
    server.wait_for("generated on first start");
    assert!(
        !server.seen.iter().any(|l| l.contains(&token)),
        "printed only once"
    );
    let out = simulate_ok(dir.path(), &url, &["text", "still here"]);
    assert!(out.contains("text: still here"), "{out}");
}

#[test]
fn safe_mode_from_a_config_file() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(
        dir.path().join("bot.toml"),
        r#"
[server]
listen = "127.0.0.1:0"
path = "/wx/callback"

[storage]
url = "sqlite://data.db"

[wechat]
token = "safeModeToken"
app_id = "wx49f0ab532d5d035a"
encoding_aes_key = "kWxPEV2UEDyxWpmPdKC3F4dgPDmOvfKX1HGnEUDS1aR"
mode = "safe"
"#,
    )
    .unwrap();
    let mut server = Running::spawn(
        Path::new(HUIXIN),
        dir.path(),
        &["serve", "--config", "bot.toml"],
        &[],
    );
    let url = server.url();
    assert!(url.ends_with("/wx/callback"), "{url}");
    assert!(server.seen.iter().any(|l| l.contains("safe mode")));
    assert!(dir.path().join("data.db").exists());

    let out = simulate_ok(
        dir.path(),
        &url,
        &["--config", "bot.toml", "-v", "text", "密文"],
    );
    assert!(out.contains("safe mode, encrypted"), "{out}");
    assert!(
        out.contains("encrypted reply, MsgSignature verified"),
        "{out}"
    );
    assert!(out.contains("text: 密文"), "{out}");

    // A simulator with the wrong key is refused, and says so.
    let out = huixin(
        dir.path(),
        &[
            "simulate", "--config", "bot.toml", "--url", &url, "text", "x",
        ],
        &[(
            "HUIXIN_WECHAT_ENCODING_AES_KEY",
            "abcdefghijklmnopqrstuvwxyz0123456789ABCDEFG",
        )],
    );
    assert!(!out.status.success());
    assert!(stdout(&out).contains("← 400"), "{}", stdout(&out));
}

#[test]
fn environment_and_dotenv_override_the_file() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(
        dir.path().join("huixin.toml"),
        "[server]\nlisten = \"127.0.0.1:0\"\n[wechat]\ntoken = \"fromFile\"\n",
    )
    .unwrap();
    std::fs::write(
        dir.path().join(".env"),
        "HUIXIN_WECHAT_TOKEN=fromDotenv\nHUIXIN_SERVER_PATH=/from-dotenv\n",
    )
    .unwrap();
    let mut server = Running::spawn(
        Path::new(HUIXIN),
        dir.path(),
        &["serve"],
        &[("HUIXIN_WECHAT_TOKEN", "0123456789")],
    );
    let url = server.url();
    assert!(
        url.ends_with("/from-dotenv"),
        ".env sets keys the file lacks: {url}"
    );
    assert!(!server.seen.iter().any(|l| l.contains("generated")));
    // The real environment beats .env, which beats the file.
    let out = huixin(
        dir.path(),
        &["simulate", "--url", &url, "text", "x"],
        &[("HUIXIN_WECHAT_TOKEN", "0123456789")],
    );
    assert!(stdout(&out).contains("text: x"), "{}", stdout(&out));
    let out = huixin(dir.path(), &["simulate", "--url", &url, "text", "x"], &[]);
    assert!(
        stdout(&out).contains("← 403"),
        "the .env token is not the one in force: {}",
        stdout(&out)
    );
    let out = huixin(
        dir.path(),
        &["token", "--callback"],
        &[("HUIXIN_WECHAT_TOKEN", "0123456789")],
    );
    assert_eq!(stdout(&out).trim(), "0123456789");
}

#[test]
fn configuration_mistakes_are_explained() {
    let dir = tempfile::tempdir().unwrap();
    let cases: &[(&str, &str)] = &[
        ("[wechat]\napp_secert = \"typo\"\n", "app_secert"),
        ("[wechat]\nmode = \"safe\"\n", "encoding_aes_key"),
        ("[wechat]\nmode = \"paranoid\"\n", "mode"),
        ("[wechat]\ntoken = \"has space\"\n", "token"),
        (
            "[wechat]\nencoding_aes_key = \"short\"\n",
            "encoding_aes_key",
        ),
        ("[server]\npath = \"wechat\"\n", "path"),
        ("[server]\npath = \"/healthz\"\n", "path"),
        ("[server]\npath = \"/a/{x}\"\n", "path"),
        ("[server]\npath = \"/a/*rest\"\n", "path"),
        ("[server]\nbody_limit = \"lots\"\n", "body_limit"),
    ];
    for (toml, named) in cases {
        std::fs::write(dir.path().join("huixin.toml"), toml).unwrap();
        let out = huixin(dir.path(), &["serve"], &[]);
        assert!(!out.status.success(), "{toml}");
        assert!(stderr(&out).contains(named), "{toml}: {}", stderr(&out));
    }
    std::fs::remove_file(dir.path().join("huixin.toml")).unwrap();
    let out = huixin(dir.path(), &["serve", "--config", "missing.toml"], &[]);
    assert!(stderr(&out).contains("not found"), "{}", stderr(&out));
    let out = huixin(
        dir.path(),
        &["serve"],
        &[("HUIXIN_WECHAT_MAX_CLOCK_SKEW_SECS", "soon")],
    );
    assert!(
        stderr(&out).contains("max_clock_skew_secs"),
        "{}",
        stderr(&out)
    );
}

#[test]
fn a_database_in_a_missing_folder_names_the_setting_and_the_folder() {
    let dir = tempfile::tempdir().unwrap();
    let missing = dir.path().join("no-such-folder");
    let db = missing.join("deeper").join("huixin.db");
    std::fs::write(
        dir.path().join("huixin.toml"),
        format!("[storage]\nurl = \"sqlite://{}\"\n", db.display()),
    )
    .unwrap();
    let out = huixin(dir.path(), &["serve"], &[PORT0]);
    assert!(!out.status.success());
    let err = stderr(&out);
    assert!(err.contains("[storage] url"), "{err}");
    assert!(err.contains(&db.display().to_string()), "the path: {err}");
    assert!(
        err.contains(&format!("{:?}", missing.display().to_string())),
        "the first missing folder: {err}"
    );
    assert!(!missing.exists(), "no folder is created");
}

#[test]
fn simulate_prints_signed_requests_and_sends_files() {
    let dir = tempfile::tempdir().unwrap();
    let env = [("HUIXIN_WECHAT_TOKEN", "printToken")];
    let out = huixin(
        dir.path(),
        &[
            "simulate",
            "--url",
            "http://127.0.0.1:9/wechat",
            "--print-request",
            "--count",
            "3",
            "text",
            "hi",
        ],
        &env,
    );
    assert!(out.status.success(), "{}", stderr(&out));
    let lines: Vec<serde_json::Value> = stdout(&out)
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert_eq!(lines.len(), 3);
    assert!(lines[0]["url"].as_str().unwrap().contains("signature="));
    assert_ne!(lines[0]["body"], lines[1]["body"], "consecutive MsgIds");

    let mut server = Running::spawn(Path::new(HUIXIN), dir.path(), &["serve"], &[PORT0, env[0]]);
    let url = server.url();
    let fixture = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/messages/link.xml");
    let out = huixin(
        dir.path(),
        &["simulate", "--url", &url, "file", fixture.to_str().unwrap()],
        &env,
    );
    assert!(stdout(&out).contains("text: Link:"), "{}", stdout(&out));

    let out = huixin(
        dir.path(),
        &["simulate", "--url", "not a url", "text", "x"],
        &env,
    );
    assert!(!out.status.success());
    assert!(
        stderr(&out).contains("invalid callback URL"),
        "{}",
        stderr(&out)
    );
}

/// The example binary, built on demand when the test runs alone.
fn example_binary(name: &str) -> PathBuf {
    let exe = std::env::current_exe().unwrap();
    let target_dir = exe.parent().and_then(Path::parent).unwrap().to_path_buf();
    let path = target_dir.join("examples").join(name);
    if !path.exists() {
        let status = Command::new(env!("CARGO"))
            .args(["build", "--example", name])
            .current_dir(env!("CARGO_MANIFEST_DIR"))
            .status()
            .unwrap();
        assert!(status.success());
    }
    path
}

#[test]
fn the_echo_bot_example_answers_every_kind_it_promises() {
    let dir = tempfile::tempdir().unwrap();
    let bin = example_binary("echo_bot");
    let env = [PORT0, ("HUIXIN_WECHAT_TOKEN", "exampleToken")];
    let mut server = Running::spawn(&bin, dir.path(), &[], &env);
    let url = server.url();
    let run = |args: &[&str]| {
        let mut all = vec!["simulate", "--url", url.as_str()];
        all.extend_from_slice(args);
        stdout(&huixin(dir.path(), &all, &env[1..]))
    };
    assert!(run(&["text", "echo me"]).contains("text: echo me"));
    assert!(run(&["image", "--media-id", "IMG"]).contains("image: media_id=IMG"));
    assert!(run(&["voice", "--media-id", "VOX"]).contains("voice: media_id=VOX"));
    let out = run(&[
        "location", "--lat", "31.2304", "--lon", "121.4737", "--label", "Shanghai",
    ]);
    assert!(out.contains("Shanghai (31.2304, 121.4737)"), "{out}");
    let out = run(&["link", "--title", "T", "--url", "https://e.com/a"]);
    assert!(
        out.contains("Link: T") && out.contains("https://e.com/a"),
        "{out}"
    );
    assert!(run(&["subscribe"]).contains("text: Welcome!"));
    assert!(run(&["subscribe", "--scene", "42"]).contains("Welcome, scene 42!"));
    assert!(run(&["click", "menu"]).contains("success (no reply"));
}

#[test]
fn the_full_bot_example_runs_its_route_in_front_of_the_shipped_rules() {
    let dir = tempfile::tempdir().unwrap();
    let bin = example_binary("full_bot");
    let env = [PORT0, ("HUIXIN_WECHAT_TOKEN", "exampleToken")];
    let mut server = Running::spawn(&bin, dir.path(), &[], &env);
    let url = server.url();
    assert!(
        server.seen.iter().any(|l| l.contains("built-in rules")),
        "{:?}",
        server.seen
    );
    let run = |args: &[&str]| {
        let mut all = vec!["simulate", "--url", url.as_str()];
        all.extend_from_slice(args);
        stdout(&huixin(dir.path(), &all, &env[1..]))
    };
    let out = run(&["text", "order 42"]);
    assert!(out.contains("text: Order 42: on its way."), "{out}");
    // Anything else reaches the shipped rules (their echo, at the end).
    let out = run(&["text", "something else"]);
    assert!(out.contains("something else"), "{out}");
    let base = url.trim_end_matches("/wechat");
    let page = tokio::runtime::Runtime::new().unwrap().block_on(async {
        let response = reqwest::get(format!("{base}/hello")).await.unwrap();
        response.text().await.unwrap()
    });
    assert_eq!(page, "hello\n");
}

#[test]
fn rules_check_reports_every_error_with_file_and_line() {
    let dir = tempfile::tempdir().unwrap();
    let rules = dir.path().join("rules");
    let out = huixin(dir.path(), &["rules", "init"], &[]);
    assert!(out.status.success(), "{}", stderr(&out));
    assert!(stdout(&out).contains("90-echo.rhai"));
    let out = huixin(dir.path(), &["rules", "check"], &[]);
    assert!(out.status.success(), "{}", stderr(&out));
    assert!(
        stdout(&out).contains("ok: 18 rules in 6 files"),
        "{}",
        stdout(&out)
    );
    assert!(
        stdout(&out).contains("20-help.rhai:3  when content="),
        "{}",
        stdout(&out)
    );

    std::fs::write(rules.join("40-bad.rhai"), "rule(#{ contnet: \"x\" }, |msg| text(\"x\"));\n\nrule(#{ regex: \"(\" }, |msg| text(\"y\"));\n").unwrap();
    std::fs::write(rules.join("60-bad.toml"), "[[reply]]\ncontent = \"a\"\n\n[[reply]]\ncontent = \"b\"\ntext = \"one\"\nimage = \"two\"\n").unwrap();
    std::fs::write(rules.join("70-syntax.rhai"), "let x = ;\n").unwrap();
    let out = huixin(dir.path(), &["rules", "check"], &[]);
    assert!(!out.status.success());
    let err = stderr(&out);
    assert!(
        err.contains("40-bad.rhai:1: unknown condition `contnet`"),
        "{err}"
    );
    assert!(err.contains("40-bad.rhai:3: invalid regex"), "{err}");
    assert!(
        err.contains("60-bad.toml:1: an entry needs exactly one reply"),
        "{err}"
    );
    assert!(
        err.contains("60-bad.toml:4: an entry needs exactly one reply"),
        "{err}"
    );
    assert!(err.contains("70-syntax.rhai:1:"), "{err}");
    assert!(err.contains("5 error(s)"), "{err}");

    // `init` keeps edited files; a broken folder refuses to serve, naming the error.
    let out = huixin(dir.path(), &["rules", "init"], &[]);
    assert!(
        stdout(&out).contains("already has every shipped file"),
        "{}",
        stdout(&out)
    );
    let out = huixin(dir.path(), &["serve"], &[PORT0]);
    assert!(!out.status.success());
    assert!(stderr(&out).contains("40-bad.rhai:1"), "{}", stderr(&out));
}

#[test]
fn rules_check_and_serve_refuse_an_import_cycle() {
    // Rhai evaluates an imported module inside the import: before cycles were caught, these
    // folders overflowed the stack and aborted the process.
    let dir = tempfile::tempdir().unwrap();
    let rules = dir.path().join("rules");
    std::fs::create_dir_all(rules.join("lib")).unwrap();
    std::fs::write(
        rules.join("lib/a.rhai"),
        "import \"lib/b\" as b;\nfn f() { 1 }\n",
    )
    .unwrap();
    std::fs::write(
        rules.join("lib/b.rhai"),
        "// b\nimport \"lib/a\" as a;\nfn g() { 2 }\n",
    )
    .unwrap();
    std::fs::write(
        rules.join("10-main.rhai"),
        "import \"lib/a\" as a;\nrule(|msg| text(\"hi\"));\n",
    )
    .unwrap();
    let out = huixin(dir.path(), &["rules", "check"], &[]);
    assert_eq!(
        out.status.code(),
        Some(1),
        "{}{}",
        stdout(&out),
        stderr(&out)
    );
    let err = stderr(&out);
    assert!(
        err.contains("lib/b.rhai:2: ") && err.contains("import cycle: lib/a → lib/b → lib/a"),
        "{err}"
    );

    let out = huixin(dir.path(), &["serve"], &[PORT0]);
    assert_eq!(
        out.status.code(),
        Some(1),
        "{}{}",
        stdout(&out),
        stderr(&out)
    );
    assert!(stderr(&out).contains("import cycle"), "{}", stderr(&out));

    // A module importing itself.
    std::fs::write(
        rules.join("10-main.rhai"),
        "rule(|msg| { import \"lib/self\" as s; text(\"hi\") });\n",
    )
    .unwrap();
    std::fs::write(rules.join("lib/self.rhai"), "import \"lib/self\" as me;\n").unwrap();
    let out = huixin(dir.path(), &["rules", "check"], &[]);
    assert_eq!(
        out.status.code(),
        Some(1),
        "{}{}",
        stdout(&out),
        stderr(&out)
    );
    let err = stderr(&out);
    assert!(
        err.contains("lib/self.rhai:1: ") && err.contains("import cycle: lib/self → lib/self"),
        "{err}"
    );
}

#[test]
fn rules_test_runs_a_made_up_message_offline() {
    let dir = tempfile::tempdir().unwrap();
    // No rules folder: the built-in rules.
    let out = huixin(dir.path(), &["rules", "test", "text", "help"], &[]);
    assert!(out.status.success(), "{}", stderr(&out));
    let s = stdout(&out);
    assert!(s.contains("built-in rules"), "{s}");
    assert!(s.contains("← text: I understand:"), "{s}");
    assert!(s.contains("(replied by 20-help.rhai:3)"), "{s}");
    let s = stdout(&huixin(
        dir.path(),
        &["rules", "test", "subscribe", "poster"],
        &[],
    ));
    assert!(s.contains("Thanks for scanning our poster"), "{s}");
    let s = stdout(&huixin(
        dir.path(),
        &["rules", "test", "click", "menu_about"],
        &[],
    ));
    assert!(
        s.contains("news: 1 article(s)") && s.contains("50-keywords.toml:13"),
        "{s}"
    );
    let s = stdout(&huixin(
        dir.path(),
        &["rules", "test", "image", "MEDIA_9"],
        &[],
    ));
    assert!(s.contains("image: media_id=MEDIA_9"), "{s}");
    let s = stdout(&huixin(dir.path(), &["rules", "test", "unsubscribe"], &[]));
    assert!(s.contains("(no rule replied)"), "{s}");
    let s = stdout(&huixin(
        dir.path(),
        &["rules", "test", "weird_new_event", "k1"],
        &[],
    ));
    assert!(s.contains("event weird_new_event"), "{s}");

    // A failing rule: file:line, the fallback, exit 1.
    let rules = dir.path().join("mine");
    std::fs::create_dir_all(&rules).unwrap();
    std::fs::write(
        rules.join("a.rhai"),
        "rule(#{ content: \"boom\" }, |msg| {\n    throw \"no luck\";\n});\n",
    )
    .unwrap();
    let out = huixin(
        dir.path(),
        &["rules", "test", "--dir", "mine", "text", "boom"],
        &[("HUIXIN_RULES_FALLBACK", "Oops")],
    );
    assert!(!out.status.success());
    let s = stdout(&out);
    assert!(s.contains("✗ a.rhai:2: Runtime error: no luck"), "{s}");
    assert!(s.contains("← text: Oops"), "{s}");
}

#[test]
fn serve_runs_the_rules_folder_and_reloads_edits() {
    let dir = tempfile::tempdir().unwrap();
    let rules = dir.path().join("rules");
    std::fs::create_dir_all(&rules).unwrap();
    std::fs::write(
        rules.join("10.rhai"),
        "rule(#{ content: \"ver\" }, |msg| text(\"one\"));\n",
    )
    .unwrap();
    let env = [PORT0, ("HUIXIN_WECHAT_TOKEN", "rulesToken")];
    let mut server = Running::spawn(Path::new(HUIXIN), dir.path(), &["serve"], &env);
    let url = server.url();
    assert!(
        server
            .seen
            .iter()
            .any(|l| l.contains("rules: 1 rules from rules")),
        "{:?}",
        server.seen
    );
    let ask = || {
        stdout(&huixin(
            dir.path(),
            &["simulate", "--url", &url, "text", "ver"],
            &env[1..],
        ))
    };
    assert!(ask().contains("text: one"));
    std::fs::write(
        rules.join("10.rhai"),
        "rule(#{ content: \"ver\" }, |msg| text(\"two\"));\n",
    )
    .unwrap();
    let mut reloaded = false;
    for _ in 0..100 {
        if ask().contains("text: two") {
            reloaded = true;
            break;
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    assert!(reloaded, "the edit was not picked up");
}
