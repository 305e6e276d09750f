//! The rule engine, offline: rule sets loaded from memory or a folder and run on parsed
//! messages, with a temp SQLite store where sessions are involved. No server, no sleeping.

use crate::common;

use std::path::Path;
use std::sync::Arc;

use huixin::config::RulesConfig;
use huixin::rules::builtin;
use huixin::rules::context::Services;
use huixin::rules::load::SourceFile;
use huixin::rules::run::ScriptError;
use huixin::rules::{
    LoadError, Loader, Outcome, Reload, RuleSet, Rules, RulesError, Source, fallback_reply,
};
use huixin::simulator::{Header, MessageSpec};
use huixin::store::{SessionChange, Store};
use huixin::support::clock::unix_now;
use huixin::wechat::{Article, MediaId, Message, Music, Reply};

// --- helpers -------------------------------------------------------------------------------

fn loader_with(config: &RulesConfig) -> Loader {
    huixin::rules::loader(config, huixin::app::script_modules()).expect("the config is valid")
}

/// `errors` is one error, at `file` and `line`, whose message contains `needle`.
fn assert_one_error(errors: &[LoadError], file: &str, line: Option<usize>, needle: &str) {
    assert_eq!(errors.len(), 1, "{errors:?}");
    assert_eq!(
        (errors[0].file.as_str(), errors[0].line),
        (file, line),
        "{}",
        errors[0]
    );
    assert!(errors[0].message.contains(needle), "{}", errors[0]);
}

fn loader() -> Loader {
    loader_with(&RulesConfig::default())
}

fn sources(files: &[(&str, &str)]) -> Vec<SourceFile> {
    files
        .iter()
        .map(|(name, text)| SourceFile {
            name: (*name).to_owned(),
            text: (*text).to_owned(),
        })
        .collect()
}

fn try_load_with(config: &RulesConfig, files: &[(&str, &str)]) -> Result<RuleSet, Vec<LoadError>> {
    loader_with(config).load(sources(files), None, Source::Builtin)
}

fn try_load(files: &[(&str, &str)]) -> Result<RuleSet, Vec<LoadError>> {
    try_load_with(&RulesConfig::default(), files)
}

fn load_with(config: &RulesConfig, files: &[(&str, &str)]) -> Arc<RuleSet> {
    Arc::new(try_load_with(config, files).unwrap_or_else(|e| panic!("rules load: {e:#?}")))
}

fn load(files: &[(&str, &str)]) -> Arc<RuleSet> {
    load_with(&RulesConfig::default(), files)
}

/// One script file, `r.rhai`.
fn script(text: &str) -> Arc<RuleSet> {
    load(&[("r.rhai", text)])
}

/// The load errors of files that must not load.
fn load_errors(files: &[(&str, &str)]) -> Vec<LoadError> {
    match try_load(files) {
        Ok(set) => panic!("expected load errors, loaded {set:?}"),
        Err(errors) => errors,
    }
}

/// The single load error of one script file `r.rhai`.
fn load_error(text: &str) -> LoadError {
    let errors = load_errors(&[("r.rhai", text)]);
    assert_eq!(errors.len(), 1, "{errors:#?}");
    errors.into_iter().next().unwrap()
}

fn header(from: &str) -> Header {
    Header {
        to: "gh_test".into(),
        from: from.into(),
        create_time: 1_700_000_000,
        msg_id: 24_470_000_000_000_042,
        extra: Vec::new(),
    }
}

fn parse(xml: &[u8]) -> Arc<Message> {
    Arc::new(Message::parse(xml).expect("the message parses"))
}

/// A message built by the simulator, from `from`.
fn msg_from(from: &str, spec: MessageSpec) -> Arc<Message> {
    let xml = spec.to_xml(&header(from)).expect("builds");
    let msg = parse(xml.as_bytes());
    assert!(msg.degraded.is_none(), "{spec:?} parsed fully");
    msg
}

fn msg(spec: MessageSpec) -> Arc<Message> {
    msg_from("o_alice", spec)
}

fn text_from(from: &str, content: &str) -> Arc<Message> {
    msg_from(
        from,
        MessageSpec::Text {
            content: content.into(),
        },
    )
}

fn text(content: &str) -> Arc<Message> {
    text_from("o_alice", content)
}

fn image() -> Arc<Message> {
    msg(MessageSpec::Image {
        media_id: "media_img".into(),
        pic_url: "http://mmbiz.qpic.cn/x.jpg".into(),
    })
}

fn voice() -> Arc<Message> {
    msg(MessageSpec::Voice {
        media_id: "media_voice".into(),
        format: "amr".into(),
        recognition: None,
    })
}

fn subscribe(scene: Option<&str>) -> Arc<Message> {
    msg(MessageSpec::Subscribe {
        scene: scene.map(Into::into),
    })
}

fn scan(scene: &str) -> Arc<Message> {
    msg(MessageSpec::Scan {
        scene: scene.into(),
    })
}

fn click(key: &str) -> Arc<Message> {
    msg(MessageSpec::Click { key: key.into() })
}

fn view(url: &str) -> Arc<Message> {
    msg(MessageSpec::View {
        url: url.into(),
        menu_id: Some(7),
    })
}

/// A message fixture from `tests/fixtures/messages/`.
fn fixture(name: &str) -> Arc<Message> {
    parse(&common::fixture(&format!("messages/{name}")))
}

async fn run_with(set: &Arc<RuleSet>, msg: Arc<Message>, services: Services) -> Outcome {
    set.run(msg, services, &Reply::Success).await
}

/// Runs without a store, answering `success` on failure.
async fn run(set: &Arc<RuleSet>, msg: Arc<Message>) -> Outcome {
    run_with(set, msg, Services::default()).await
}

/// Runs, expecting no error; the reply.
async fn reply(set: &Arc<RuleSet>, msg: Arc<Message>) -> Reply {
    let outcome = run(set, msg).await;
    assert_eq!(outcome.error, None, "{outcome:?}");
    outcome.reply
}

/// Runs, expecting a script error; the error.
async fn script_error(set: &Arc<RuleSet>, msg: Arc<Message>) -> ScriptError {
    let outcome = run(set, msg).await;
    assert_eq!(outcome.reply, Reply::Success, "the fallback answered");
    assert_eq!(outcome.replied_by, None);
    outcome.error.expect("the run failed")
}

fn origin_of(outcome: &Outcome) -> Option<String> {
    outcome.replied_by.as_ref().map(ToString::to_string)
}

fn t(s: &str) -> Reply {
    Reply::text(s)
}

async fn temp_store() -> (tempfile::TempDir, Store) {
    let dir = tempfile::tempdir().expect("temp dir");
    let url = format!("sqlite://{}", dir.path().join("t.db").display());
    let store = Store::open(&url).await.expect("store opens");
    (dir, store)
}

fn services(store: &Store) -> Services {
    Services {
        store: Some(store.clone()),
        ..Services::default()
    }
}

/// A user's stored session, sorted.
async fn stored_session(store: &Store, openid: &str) -> Vec<(String, String)> {
    let mut rows = store
        .backend()
        .session_load(openid, unix_now())
        .await
        .unwrap();
    rows.sort();
    rows
}

fn write(dir: &Path, name: &str, text: &str) {
    let path = dir.join(name);
    if let Some(parent) = path.parent() {
        std::fs::create_dir_all(parent).unwrap();
    }
    std::fs::write(path, text).unwrap();
}

// --- ordering ------------------------------------------------------------------------------

const ORDER_10: &str = r#"rule(#{ content: "pass" }, |msg| ());
rule(#{ content: ["pass", "order"] }, |msg| text("10 second rule"));
rule(#{ content: "order" }, |msg| text("10 third rule"));
rule(#{ content: "stop" }, |msg| success());
rule(#{ content: "kw" }, |msg| ());
"#;

const ORDER_20: &str = r#"# keywords
[[reply]]
content = ["kw", "stop", "order"]
text = "from the table"
"#;

const ORDER_30: &str = r#"rule(|msg| text("30 catch-all"));
"#;

fn ordered_set() -> Arc<RuleSet> {
    // Given out of order: the loader sorts by name.
    load(&[
        ("30-last.rhai", ORDER_30),
        ("20-table.toml", ORDER_20),
        ("10-first.rhai", ORDER_10),
    ])
}

#[tokio::test(flavor = "multi_thread")]
async fn files_in_name_order_rules_in_declaration_order() {
    let set = ordered_set();
    let names: Vec<&str> = set.files.iter().map(|f| f.name.as_str()).collect();
    assert_eq!(names, ["10-first.rhai", "20-table.toml", "30-last.rhai"]);
    let counts: Vec<usize> = set.files.iter().map(|f| f.rules).collect();
    assert_eq!(counts, [5, 1, 1]);
    let origins: Vec<String> = set.rules.iter().map(|r| r.origin.to_string()).collect();
    assert_eq!(
        origins,
        [
            "10-first.rhai:1",
            "10-first.rhai:2",
            "10-first.rhai:3",
            "10-first.rhai:4",
            "10-first.rhai:5",
            "20-table.toml:2",
            "30-last.rhai:1",
        ]
    );

    // The first reply wins over later matching rules, in the same file and after it.
    let o = run(&set, text("order")).await;
    assert_eq!(o.reply, t("10 second rule"));
    assert_eq!(origin_of(&o).as_deref(), Some("10-first.rhai:2"));

    // `()` falls through to the next matching rule.
    let o = run(&set, text("pass")).await;
    assert_eq!(o.reply, t("10 second rule"));
    assert_eq!(origin_of(&o).as_deref(), Some("10-first.rhai:2"));

    // success() stops the run with no reply: neither the table nor the catch-all answer.
    let o = run(&set, text("stop")).await;
    assert_eq!(o.reply, Reply::Success);
    assert_eq!(origin_of(&o).as_deref(), Some("10-first.rhai:4"));
    assert_eq!(o.error, None);

    // The keyword table sits between 10- and 30- by its name.
    let o = run(&set, text("kw")).await;
    assert_eq!(o.reply, t("from the table"));
    assert_eq!(origin_of(&o).as_deref(), Some("20-table.toml:2"));

    let o = run(&set, text("anything else")).await;
    assert_eq!(o.reply, t("30 catch-all"));
    assert_eq!(origin_of(&o).as_deref(), Some("30-last.rhai:1"));
    assert_eq!(reply(&set, image()).await, t("30 catch-all"));
}

#[tokio::test(flavor = "multi_thread")]
async fn no_matching_rule_means_no_reply() {
    let set = script(
        r#"rule(#{ content: "a" }, |msg| text("a"));
rule(#{ type: "text" }, |msg| ());
"#,
    );
    let o = run(&set, text("b")).await;
    assert_eq!(o, run(&set, image()).await);
    assert_eq!(o.reply, Reply::Success);
    assert_eq!(o.replied_by, None);
    assert_eq!(o.error, None);

    let empty = load(&[]);
    let o = run(&empty, text("x")).await;
    assert_eq!(
        (o.reply, o.replied_by, o.error),
        (Reply::Success, None, None)
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn a_table_only_set_answers_without_scripts() {
    let set = load(&[("k.toml", ORDER_20)]);
    let o = run(&set, text("stop")).await;
    assert_eq!(o.reply, t("from the table"));
    assert_eq!(origin_of(&o).as_deref(), Some("k.toml:2"));
    assert_eq!(reply(&set, text("other")).await, Reply::Success);
}

#[tokio::test(flavor = "multi_thread")]
async fn before_hooks_run_first_and_may_answer() {
    let set = load(&[
        (
            "10-rules.rhai",
            r#"rule(|msg| text("rule"));
"#,
        ),
        (
            "20-hooks.rhai",
            r#"
before(|msg| if msg.content == "stop" { success() });
before(|msg| if msg.content == "hooked" { text("from the hook") });
"#,
        ),
    ]);
    assert_eq!(set.hooks.len(), 2);
    let o = run(&set, text("hooked")).await;
    assert_eq!(o.reply, t("from the hook"));
    assert_eq!(origin_of(&o).as_deref(), Some("20-hooks.rhai:3"));
    let o = run(&set, text("stop")).await;
    assert_eq!(o.reply, Reply::Success);
    assert_eq!(origin_of(&o).as_deref(), Some("20-hooks.rhai:2"));
    assert_eq!(reply(&set, text("x")).await, t("rule"));
    assert_eq!(reply(&set, click("k")).await, t("rule"));
}

// --- conditions ----------------------------------------------------------------------------

/// Whether a rule with `conditions` (a Rhai map) runs for `msg`.
async fn hits(conditions: &str, msg: &Arc<Message>) -> bool {
    let set = script(&format!("rule({conditions}, |msg| text(\"hit\"));"));
    match reply(&set, Arc::clone(msg)).await {
        Reply::Success => false,
        r if r == t("hit") => true,
        other => panic!("unexpected reply {other:?}"),
    }
}

/// Checks each `(conditions, message, expected)`.
async fn check_hits(cases: Vec<(&str, Arc<Message>, bool)>) {
    for (conditions, msg, expected) in cases {
        assert_eq!(
            hits(conditions, &msg).await,
            expected,
            "{conditions} on {:?} {:?}",
            msg.kind.msg_type(),
            msg.raw
        );
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn condition_type() {
    check_hits(vec![
        (r#"#{ type: "text" }"#, text("x"), true),
        (r#"#{ type: "text" }"#, image(), false),
        (r#"#{ type: "text" }"#, click("x"), false),
        (r#"#{ type: "TEXT" }"#, text("x"), true),
        (r#"#{ type: ["image", "voice"] }"#, voice(), true),
        (r#"#{ type: ["image", "voice"] }"#, image(), true),
        (r#"#{ type: ["image", "voice"] }"#, text("x"), false),
        (r#"#{ type: "event" }"#, click("x"), true),
        (r#"#{ type: "event" }"#, subscribe(None), true),
        (r#"#{ type: "event" }"#, text("event"), false),
        (r#"#{ type: "location" }"#, fixture("location.xml"), true),
        (
            r#"#{ type: "location" }"#,
            fixture("event_location.xml"),
            false,
        ),
    ])
    .await;
}

#[tokio::test(flavor = "multi_thread")]
async fn condition_event_is_case_insensitive() {
    check_hits(vec![
        (r#"#{ event: "subscribe" }"#, subscribe(None), true),
        (
            r#"#{ event: "subscribe" }"#,
            subscribe(Some("poster")),
            true,
        ),
        (r#"#{ event: "SUBSCRIBE" }"#, subscribe(None), true),
        (
            r#"#{ event: "subscribe" }"#,
            msg(MessageSpec::Unsubscribe),
            false,
        ),
        (r#"#{ event: "subscribe" }"#, text("subscribe"), false),
        (r#"#{ event: "SCAN" }"#, scan("1"), true),
        (r#"#{ event: "scan" }"#, scan("1"), true),
        (r#"#{ event: "Click" }"#, click("k"), true),
        (r#"#{ event: "click" }"#, view("https://x"), false),
        (r#"#{ event: ["click", "view"] }"#, view("https://x"), true),
        (r#"#{ event: ["click", "view"] }"#, scan("1"), false),
        (
            r#"#{ event: "templatesendjobfinish" }"#,
            fixture("event_templatesendjobfinish.xml"),
            true,
        ),
        (
            r#"#{ event: "location" }"#,
            fixture("event_location.xml"),
            true,
        ),
        (r#"#{ event: "location" }"#, fixture("location.xml"), false),
    ])
    .await;
}

#[tokio::test(flavor = "multi_thread")]
async fn condition_key_and_key_regex() {
    check_hits(vec![
        (r#"#{ key: "menu_about" }"#, click("menu_about"), true),
        (r#"#{ key: "menu_about" }"#, click("menu_about_2"), false),
        (r#"#{ key: "menu_about" }"#, text("menu_about"), false),
        // A subscribe's scene is its key, so one rule serves scan-to-follow and later scans.
        (r#"#{ key: "poster" }"#, subscribe(Some("poster")), true),
        (r#"#{ key: "poster" }"#, scan("poster"), true),
        (r#"#{ key: "poster" }"#, subscribe(None), false),
        (r#"#{ key: ["a", "b"] }"#, click("b"), true),
        (r#"#{ key: ["a", "b"] }"#, click("c"), false),
        (r#"#{ key: 42 }"#, scan("42"), true),
        (r#"#{ key_regex: "^item_\\d+$" }"#, click("item_17"), true),
        (r#"#{ key_regex: "^item_\\d+$" }"#, click("item_x"), false),
        (r#"#{ key_regex: "^item_\\d+$" }"#, text("item_17"), false),
        (r#"#{ key_regex: "^https://" }"#, view("https://x"), true),
    ])
    .await;
}

#[tokio::test(flavor = "multi_thread")]
async fn condition_content_contains_prefix_regex() {
    check_hits(vec![
        (r#"#{ content: "help" }"#, text("help"), true),
        (r#"#{ content: "help" }"#, text("  help \n"), true),
        (r#"#{ content: "help" }"#, text("Help"), false),
        (r#"#{ content: "help" }"#, text("help me"), false),
        (r#"#{ content: "help" }"#, click("help"), false),
        (r#"#{ content: ["help", "帮助"] }"#, text("帮助"), true),
        (r#"#{ content: 42 }"#, text("42"), true),
        (
            r#"#{ contains: "price" }"#,
            text("what is the price?"),
            true,
        ),
        (r#"#{ contains: "price" }"#, text("prices"), true),
        (r#"#{ contains: "price" }"#, text("PRICE"), false),
        (
            r#"#{ contains: ["价格", "price"] }"#,
            text("多少价格"),
            true,
        ),
        (r#"#{ prefix: "go " }"#, text("go home"), true),
        (r#"#{ prefix: "go " }"#, text("  go home"), true),
        (r#"#{ prefix: "go " }"#, text("ago home"), false),
        (r#"#{ prefix: "go " }"#, text("go"), false),
        (r#"#{ prefix: ["go ", "run "] }"#, text("run fast"), true),
        (r#"#{ regex: "^\\d{3}$" }"#, text("123"), true),
        (r#"#{ regex: "^\\d{3}$" }"#, text("1234"), false),
        (r#"#{ regex: "(?i)^hello" }"#, text("HELLO there"), true),
        (r#"#{ regex: "." }"#, click("x"), false),
    ])
    .await;
}

#[tokio::test(flavor = "multi_thread")]
async fn condition_user_and_combinations() {
    check_hits(vec![
        (r#"#{ user: "o_alice" }"#, text_from("o_alice", "x"), true),
        (r#"#{ user: "o_alice" }"#, text_from("o_bob", "x"), false),
        (
            r#"#{ user: "o_alice" }"#,
            msg_from("o_alice", MessageSpec::Unsubscribe),
            true,
        ),
        (
            r#"#{ user: ["o_alice", "o_bob"] }"#,
            text_from("o_bob", "x"),
            true,
        ),
        (
            r#"#{ user: ["o_alice", "o_bob"] }"#,
            text_from("o_carol", "x"),
            false,
        ),
        // Several keys: all must match.
        (
            r#"#{ type: "text", user: "o_alice", prefix: "go" }"#,
            text_from("o_alice", "go"),
            true,
        ),
        (
            r#"#{ type: "text", user: "o_alice", prefix: "go" }"#,
            text_from("o_bob", "go"),
            false,
        ),
        (
            r#"#{ type: "text", user: "o_alice", prefix: "go" }"#,
            text_from("o_alice", "stop"),
            false,
        ),
        (r#"#{ event: "click", key: "k1" }"#, click("k1"), true),
        (r#"#{ event: "click", key: "k1" }"#, click("k2"), false),
        (r#"#{ event: "view", key: "k1" }"#, click("k1"), false),
        (
            r#"#{ content: ["a", "b"], user: ["o_x", "o_alice"] }"#,
            text("b"),
            true,
        ),
        (
            r#"#{ content: ["a", "b"], user: ["o_x", "o_alice"] }"#,
            text("c"),
            false,
        ),
        // No keys: every message.
        ("#{}", text("x"), true),
        ("#{}", click("x"), true),
        ("#{}", fixture("event_templatesendjobfinish.xml"), true),
    ])
    .await;
}

#[tokio::test(flavor = "multi_thread")]
async fn regex_captures_numbered_and_named() {
    let set = script(
        r#"rule(#{ regex: "^deploy (\\w+)(?: to (?<env>\\w+))?$" }, |msg, caps| {
    text(`${caps[0]}|${caps[1]}|${caps["env"]}|${type_of(caps[2])}|${caps.len()}|${type_of(caps[9])}|${type_of(caps["nope"])}`)
});
rule(#{ key_regex: "^item_(?<id>\\d+)$" }, |msg, caps| text(`item ${caps[1]} ${caps["id"]}`));
rule(#{ content: "plain" }, |msg, caps| text(`${caps.len()} ${type_of(caps[0])}`));
rule(#{ type: "text", user: "o_alice", regex: "^n(\\d)$" }, |msg, caps| text(`n=${caps[1]}`));
"#,
    );
    assert_eq!(
        reply(&set, text("deploy api to prod")).await,
        t("deploy api to prod|api|prod|string|3|()|()")
    );
    // A group that took no part reads as ().
    assert_eq!(
        reply(&set, text("deploy api")).await,
        t("deploy api|api||()|3|()|()")
    );
    assert_eq!(reply(&set, click("item_17")).await, t("item 17 17"));
    assert_eq!(reply(&set, text("plain")).await, t("0 ()"));
    // Captures survive combination with other conditions.
    assert_eq!(reply(&set, text("n7")).await, t("n=7"));
    assert_eq!(reply(&set, text_from("o_bob", "n7")).await, Reply::Success);
}

#[tokio::test(flavor = "multi_thread")]
async fn a_rule_that_does_not_match_never_runs() {
    let set = script(
        r#"rule(#{ content: "boom" }, |msg| throw "the boom rule ran");
rule(#{ type: "image" }, |msg| 1 / 0);
rule(#{ event: "click" }, |msg| { loop {} });
rule(#{ user: "o_mallory" }, |msg| session_set("k", text("not json")));
rule(|msg| text("ok"));
"#,
    );
    let o = run(&set, text("not boom")).await;
    assert_eq!(o.error, None);
    assert_eq!(o.reply, t("ok"));
    assert_eq!(origin_of(&o).as_deref(), Some("r.rhai:5"));
    // ...while a matching one does.
    let err = script_error(&set, text("boom")).await;
    assert!(err.message.contains("the boom rule ran"), "{err}");
    assert_eq!((err.file.as_str(), err.line), ("r.rhai", Some(1)));
}

// --- the message map -----------------------------------------------------------------------

/// What `rule(|msg| text(EXPR))` answers for `msg`.
async fn show(expr: &str, msg: Arc<Message>) -> String {
    let set = script(&format!("rule(|msg| text({expr}));"));
    match reply(&set, msg).await {
        Reply::Text { content } => content,
        other => panic!("{other:?}"),
    }
}

/// An expression listing the type of each field, `()` for absent ones.
fn types_of(fields: &[&str]) -> String {
    let parts: Vec<String> = fields
        .iter()
        .map(|f| format!("${{type_of(msg.{f})}}"))
        .collect();
    format!("`{}`", parts.join(","))
}

async fn assert_absent(fields: &[&str], msg: Arc<Message>) {
    let units = vec!["()"; fields.len()].join(",");
    assert_eq!(show(&types_of(fields), msg).await, units, "{fields:?}");
}

#[tokio::test(flavor = "multi_thread")]
async fn message_map_text() {
    let m = fixture("text.xml");
    assert_eq!(
        show(
            "`${msg.type}|${msg.from}|${msg.to}|${msg.create_time}|${msg.msg_id}|${msg.content}`",
            Arc::clone(&m)
        )
        .await,
        "text|oFixtureUser_text|gh_fixture_account|1700000001|24470000000000001|你好，回信 huixin!"
    );
    assert_eq!(
        show(
            types_of(&["msg_id", "create_time", "content", "raw"]).as_str(),
            Arc::clone(&m)
        )
        .await,
        "string,i64,string,map"
    );
    assert_eq!(
        show(
            "`${msg.raw.Content}|${msg.raw.MsgId}|${msg.raw.MsgType}`",
            Arc::clone(&m)
        )
        .await,
        "你好，回信 huixin!|24470000000000001|text"
    );
    assert_absent(
        &[
            "media_id",
            "event",
            "event_raw",
            "key",
            "scene",
            "lat",
            "menu_id",
            "nope",
            "raw.Event",
            "raw.Nope",
        ],
        m,
    )
    .await;
}

#[tokio::test(flavor = "multi_thread")]
async fn message_map_media() {
    assert_eq!(
        show(
            "`${msg.type}|${msg.media_id}|${msg.pic_url}|${msg.msg_id}`",
            fixture("image.xml")
        )
        .await,
        "image|media_image_Fx01|http://mmbiz.qpic.cn/mmbiz_jpg/fixture/0|24470000000000004"
    );
    assert_absent(&["content", "format"], fixture("image.xml")).await;
    assert_eq!(
        show(
            "`${msg.type}|${msg.media_id}|${msg.format}`",
            fixture("voice.xml")
        )
        .await,
        "voice|media_voice_Fx01|amr"
    );
    assert_absent(&["recognition", "pic_url"], fixture("voice.xml")).await;
    assert_eq!(
        show(
            "`${msg.recognition}`",
            msg(MessageSpec::Voice {
                media_id: "m".into(),
                format: "amr".into(),
                recognition: Some("你好".into()),
            })
        )
        .await,
        "你好"
    );
    assert_eq!(
        show(
            "`${msg.type}|${msg.media_id}|${msg.thumb_media_id}`",
            msg(MessageSpec::Video {
                media_id: "vid".into(),
                thumb_media_id: "thumb".into(),
            })
        )
        .await,
        "video|vid|thumb"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn message_map_location_and_link() {
    assert_eq!(
        show(
            "`${msg.type}|${msg.lat}|${msg.lon}|${msg.scale}|${msg.label}|${type_of(msg.lat)}|${type_of(msg.scale)}`",
            fixture("location.xml")
        )
        .await,
        "location|23.134521|113.358803|20|广州市海珠区新港中路397号|f64|i64"
    );
    assert_eq!(
        show("`${msg.raw.Location_X}`", fixture("location.xml")).await,
        "23.134521"
    );
    assert_eq!(
        show(
            "`${msg.type}|${msg.title}|${msg.description}|${msg.url}`",
            fixture("link.xml")
        )
        .await,
        "link|公众平台官网链接|公众平台官网链接 & more|https://mp.weixin.qq.com/s?__biz=MzFixture&mid=1&idx=1"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn message_map_subscribe_scan_click_view() {
    let all = "`${msg.type}|${msg.event}|${msg.event_raw}|${msg.key}|${msg.scene}|${msg.ticket}`";
    assert_eq!(
        show(all, fixture("event_subscribe_qrscene.xml")).await,
        "event|subscribe|subscribe|123|123|gQFx8DwAAAAAAAAAAS5odHRwOi8vd2VpeGluLnFxLmNvbS9xLzAyZml4dHVyZQ=="
    );
    assert_eq!(
        show(
            "`${msg.key}|${msg.scene}|${msg.raw.EventKey}`",
            subscribe(Some("poster"))
        )
        .await,
        "poster|poster|qrscene_poster"
    );
    assert_eq!(
        show("`${msg.event}|${msg.from}`", fixture("event_subscribe.xml")).await,
        "subscribe|oFixtureUser_subscribe"
    );
    assert_absent(
        &["scene", "key", "ticket", "msg_id", "content"],
        fixture("event_subscribe.xml"),
    )
    .await;

    assert_eq!(
        show(all, fixture("event_scan.xml")).await,
        "event|scan|SCAN|123|123|gQFx8DwAAAAAAAAAAS5odHRwOi8vd2VpeGluLnFxLmNvbS9xLzAyc2Nhbg=="
    );
    assert_eq!(
        show(
            "`${msg.event}|${msg.event_raw}|${msg.key}`",
            fixture("event_click.xml")
        )
        .await,
        "click|CLICK|V1001_TODAY_MUSIC"
    );
    assert_absent(&["scene", "msg_id", "url"], fixture("event_click.xml")).await;
    assert_eq!(
        show(
            "`${msg.event}|${msg.event_raw}|${msg.key}|${msg.url}|${msg.menu_id}|${type_of(msg.menu_id)}|${msg.raw.MenuId}`",
            fixture("event_view.xml")
        )
        .await,
        "view|VIEW|https://www.example.com/fixture?from=menu|https://www.example.com/fixture?from=menu|416592808|i64|416592808"
    );
    assert_eq!(
        show(
            "`${msg.event}|${msg.event_raw}`",
            msg(MessageSpec::Unsubscribe)
        )
        .await,
        "unsubscribe|unsubscribe"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn message_map_location_event_and_job_finish() {
    assert_eq!(
        show(
            "`${msg.event}|${msg.event_raw}|${msg.lat}|${msg.lon}|${msg.precision}`",
            fixture("event_location.xml")
        )
        .await,
        "location|LOCATION|23.137466|113.352425|119.38504"
    );
    assert_absent(&["label", "scale", "key"], fixture("event_location.xml")).await;

    assert_eq!(
        show(
            "`${msg.event}|${msg.event_raw}|${msg.job_msg_id}|${msg.status}|${msg.raw.MsgID}|${msg.raw.Status}`",
            fixture("event_templatesendjobfinish.xml")
        )
        .await,
        "templatesendjobfinish|TEMPLATESENDJOBFINISH|200163836|success|200163836|success"
    );
    // An event's MsgID is the job's, not a message id.
    assert_absent(
        &["msg_id", "key"],
        fixture("event_templatesendjobfinish.xml"),
    )
    .await;
    assert_eq!(
        show(
            "msg.status",
            fixture("event_templatesendjobfinish_user_block.xml")
        )
        .await,
        "user_block"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn message_map_nested_raw_fields() {
    let m = msg(MessageSpec::ScancodePush {
        key: "scan_1".into(),
        scan_type: "qrcode".into(),
        scan_result: "https://example.com/r".into(),
    });
    assert_eq!(
        show(
            "`${msg.key}|${msg.scan_type}|${msg.scan_result}|${msg.raw.ScanCodeInfo.ScanType}`",
            m
        )
        .await,
        "scan_1|qrcode|https://example.com/r|qrcode"
    );
    let pics = msg(MessageSpec::Pics {
        event: "pic_weixin".into(),
        key: "p".into(),
        md5: vec!["aa".into(), "bb".into()],
    });
    assert_eq!(
        show(
            "`${msg.pics.len()}|${msg.pics[1]}|${msg.raw.SendPicsInfo.PicList.item.len()}|${msg.raw.SendPicsInfo.PicList.item[0].PicMd5Sum}`",
            pics
        )
        .await,
        "2|bb|2|aa"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn every_message_fixture_gives_a_map() {
    // The map never fails to build: a rule touching common fields runs for every fixture.
    let set = script("rule(|msg| text(`${msg.type}|${msg.from}|${msg.create_time}`));");
    for (name, bytes) in common::fixtures_in("messages") {
        let m = parse(&bytes);
        let expected = format!(
            "{}|{}|{}",
            m.kind.msg_type(),
            m.from.as_str(),
            m.create_time
        );
        assert_eq!(reply(&set, m).await, t(&expected), "{name}");
    }
}

// --- reply builders ------------------------------------------------------------------------

/// What `rule(|msg| EXPR)` answers.
async fn reply_of(expr: &str) -> Reply {
    reply(&script(&format!("rule(|msg| {expr});")), text("x")).await
}

#[tokio::test(flavor = "multi_thread")]
async fn reply_builders() {
    assert_eq!(reply_of(r#"text("hi")"#).await, t("hi"));
    assert_eq!(reply_of(r#""plain string""#).await, t("plain string"));
    assert_eq!(reply_of(r#"`x${1 + 1}`"#).await, t("x2"));
    assert_eq!(reply_of(r#"image("m_img")"#).await, Reply::image("m_img"));
    assert_eq!(
        reply_of(r#"voice("m_voice")"#).await,
        Reply::voice("m_voice")
    );
    assert_eq!(
        reply_of(r#"video("m_vid")"#).await,
        Reply::Video {
            media_id: MediaId::from("m_vid"),
            title: String::new(),
            description: String::new(),
        }
    );
    assert_eq!(
        reply_of(r#"video("m_vid", "Title", "About it")"#).await,
        Reply::video("m_vid", "Title", "About it")
    );
    assert_eq!(
        reply_of(
            r#"music(#{ title: "Song", description: "A song", url: "http://m/1.mp3", hq_url: "http://m/1hq.mp3", thumb_media_id: "thumb1" })"#
        )
        .await,
        Reply::Music(Music {
            title: "Song".into(),
            description: "A song".into(),
            music_url: "http://m/1.mp3".into(),
            hq_music_url: "http://m/1hq.mp3".into(),
            thumb_media_id: MediaId::from("thumb1"),
        })
    );
    assert_eq!(
        reply_of(r#"music(#{ thumb_media_id: "thumb2" })"#).await,
        Reply::Music(Music {
            thumb_media_id: MediaId::from("thumb2"),
            ..Music::default()
        })
    );
    assert_eq!(
        reply_of(r#"news([article("T", "D", "https://u", "https://p.jpg")])"#).await,
        Reply::News(vec![Article {
            title: "T".into(),
            description: "D".into(),
            url: "https://u".into(),
            pic_url: "https://p.jpg".into(),
        }])
    );
    assert_eq!(
        reply_of(
            r#"news([#{ title: "One", url: "https://1" }, article("Two", "", "https://2", ""), #{ title: "Three", description: "d", pic_url: "https://p3", extra: 1 }])"#
        )
        .await,
        Reply::News(vec![
            Article {
                title: "One".into(),
                url: "https://1".into(),
                ..Article::default()
            },
            Article {
                title: "Two".into(),
                url: "https://2".into(),
                ..Article::default()
            },
            Article {
                title: "Three".into(),
                description: "d".into(),
                pic_url: "https://p3".into(),
                ..Article::default()
            },
        ])
    );
    assert_eq!(
        reply_of("transfer_customer_service()").await,
        Reply::TransferCustomerService { kf_account: None }
    );
    assert_eq!(
        reply_of(r#"transfer_customer_service("kf2001@gh_test")"#).await,
        Reply::TransferCustomerService {
            kf_account: Some("kf2001@gh_test".into())
        }
    );
    assert_eq!(reply_of("success()").await, Reply::Success);
    // A reply kept in a variable, or built conditionally, is still a reply.
    assert_eq!(
        reply_of(r#"{ let r = image("a"); if msg.content == "x" { r } else { text("no") } }"#)
            .await,
        Reply::image("a")
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn a_reply_that_is_not_a_reply_is_an_error() {
    let set = script(
        r#"// line 1
rule(#{ content: "number" }, |msg| 42);
rule(#{ content: "map" }, |msg| #{ text: "no" });
rule(#{ content: "array" }, |msg| [text("a")]);
rule(#{ content: "bool" }, |msg| true);
"#,
    );
    let err = script_error(&set, text("number")).await;
    assert_eq!((err.file.as_str(), err.line), ("r.rhai", Some(2)), "{err}");
    assert!(err.message.contains("returned i64"), "{err}");
    assert!(err.to_string().starts_with("r.rhai:2: "), "{err}");
    for (content, line, type_name) in [
        ("map", 3, "map"),
        ("array", 4, "array"),
        ("bool", 5, "bool"),
    ] {
        let err = script_error(&set, text(content)).await;
        assert_eq!(err.line, Some(line), "{err}");
        assert!(err.message.contains(type_name), "{err}");
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn reply_builder_misuse_is_an_error_at_its_line() {
    let set = script(
        r#"rule(#{ content: "news" }, |msg| {
    let x = 1;
    news([])
});
rule(#{ content: "music" }, |msg| {
    music(#{ title: "no thumb", url: "http://m" })
});
rule(#{ content: "news of strings" }, |msg| news(["not a map"]));
"#,
    );
    let err = script_error(&set, text("news")).await;
    assert_eq!((err.file.as_str(), err.line), ("r.rhai", Some(3)), "{err}");
    assert!(
        err.message.contains("news() needs at least one article"),
        "{err}"
    );
    let err = script_error(&set, text("music")).await;
    assert_eq!((err.file.as_str(), err.line), ("r.rhai", Some(6)), "{err}");
    assert!(
        err.message.contains("music() needs thumb_media_id"),
        "{err}"
    );
    let err = script_error(&set, text("news of strings")).await;
    assert_eq!(err.line, Some(8), "{err}");
    assert!(err.message.contains("news() takes maps"), "{err}");
}

// --- sessions ------------------------------------------------------------------------------

const SESSION_RULES: &str = r#"rule(#{ regex: "^set (\\w+) (.+)$" }, |msg, caps| { session_set(caps[1], caps[2]); text("ok") });
rule(#{ regex: "^get (\\w+)$" }, |msg, caps| text(`${session_get(caps[1], "<none>")}`));
rule(#{ regex: "^ttl (\\w+) (.+)$" }, |msg, caps| { session_set(caps[1], caps[2], 600); text("ok") });
rule(#{ regex: "^del (\\w+)$" }, |msg, caps| { session_delete(caps[1]); text("deleted") });
rule(#{ content: "keys" }, |msg| text(`${session_keys()}`));
rule(#{ content: "unit" }, |msg| text(`${type_of(session_get("missing"))}`));
rule(#{ regex: "^boom (\\w+) (.+)$" }, |msg, caps| { session_set(caps[1], caps[2]); session_delete("keep"); throw "boom"; });
"#;

#[tokio::test(flavor = "multi_thread")]
async fn sessions_persist_per_user() {
    let (_dir, store) = temp_store().await;
    let set = script(SESSION_RULES);
    let svc = || services(&store);
    let say = |from: &'static str, content: &'static str| {
        let set = Arc::clone(&set);
        let svc = svc();
        async move {
            let o = run_with(&set, text_from(from, content), svc).await;
            assert_eq!(o.error, None, "{o:?}");
            o.reply
        }
    };

    assert_eq!(say("o_alice", "get fruit").await, t("<none>"));
    assert_eq!(say("o_alice", "unit").await, t("()"));
    assert_eq!(say("o_alice", "set fruit apple").await, t("ok"));
    assert_eq!(
        say("o_alice", "get fruit").await,
        t("apple"),
        "a later run sees it"
    );
    assert_eq!(
        say("o_bob", "get fruit").await,
        t("<none>"),
        "bob has his own"
    );
    assert_eq!(say("o_bob", "set fruit banana").await, t("ok"));
    assert_eq!(say("o_alice", "get fruit").await, t("apple"));
    assert_eq!(say("o_bob", "get fruit").await, t("banana"));
    assert_eq!(say("o_alice", "set animal cat").await, t("ok"));
    assert_eq!(say("o_alice", "keys").await, t(r#"["animal", "fruit"]"#));
    assert_eq!(say("o_alice", "del fruit").await, t("deleted"));
    assert_eq!(say("o_alice", "get fruit").await, t("<none>"));
    assert_eq!(say("o_bob", "get fruit").await, t("banana"));

    assert_eq!(
        stored_session(&store, "o_alice").await,
        [("animal".to_string(), "\"cat\"".to_string())]
    );
    assert_eq!(
        stored_session(&store, "o_bob").await,
        [("fruit".to_string(), "\"banana\"".to_string())]
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn sessions_without_a_store_last_one_run() {
    let set = script(
        r#"rule(|msg| { session_set("k", "v"); text(`${session_get("k")}`) });
"#,
    );
    assert_eq!(reply(&set, text("a")).await, t("v"));
    let other = script(r#"rule(|msg| text(`${session_get("k", "gone")}`));"#);
    assert_eq!(reply(&other, text("b")).await, t("gone"));
}

#[tokio::test(flavor = "multi_thread")]
async fn session_ttl_expires() {
    let (_dir, store) = temp_store().await;
    let set = script(SESSION_RULES);
    let say = |content: &'static str| {
        let set = Arc::clone(&set);
        let svc = services(&store);
        async move {
            let o = run_with(&set, text_from("o_ttl", content), svc).await;
            assert_eq!(o.error, None, "{o:?}");
            o.reply
        }
    };
    assert_eq!(say("ttl code 1234").await, t("ok"));
    assert_eq!(say("get code").await, t("1234"));
    let now = unix_now();
    // Stored with an expiry about ten minutes out.
    let load_at = |at: i64| {
        let store = store.clone();
        async move { store.backend().session_load("o_ttl", at).await.unwrap() }
    };
    assert_eq!(load_at(now + 590).await.len(), 1);
    assert!(load_at(now + 601).await.is_empty());

    // Move the expiry into the past directly; the next run no longer sees the key.
    store
        .backend()
        .session_apply(
            "o_ttl",
            &[SessionChange::Set {
                key: "code".into(),
                value: "\"1234\"".into(),
                expires_at: Some(now - 1),
            }],
            now,
        )
        .await
        .unwrap();
    assert_eq!(say("get code").await, t("<none>"));
    assert_eq!(say("keys").await, t("[]"));

    // A ttl must be positive.
    let bad = script(r#"rule(|msg| { session_set("k", 1, 0); "unreachable" });"#);
    let o = run_with(&bad, text_from("o_ttl", "x"), services(&store)).await;
    let err = o.error.expect("ttl 0 is refused");
    assert!(err.message.contains("ttl_secs must be positive"), "{err}");
}

#[tokio::test(flavor = "multi_thread")]
async fn session_values_round_trip_as_json() {
    let (_dir, store) = temp_store().await;
    let set = script(
        r#"rule(#{ content: "write" }, |msg| {
    session_set("s", "str");
    session_set("i", 42);
    session_set("neg", -7);
    session_set("f", 1.5);
    session_set("b", true);
    session_set("a", [1, "two", [3.5, false]]);
    session_set("m", #{ x: 1, y: #{ z: "deep" } });
    session_set("c", 'c');
    "written"
});
rule(#{ content: "read" }, |msg| {
    let out = [];
    for k in ["s", "i", "neg", "f", "b", "a", "m"] {
        let v = session_get(k);
        out.push(`${k}:${type_of(v)}=${v}`);
    }
    let a = session_get("a");
    let m = session_get("m");
    out.push(`${session_get("i") + 1} ${session_get("f") * 2.0} ${!session_get("b")} ${a[2][0]} ${m.y.z}`);
    out.push(`${session_get("c")}`);
    text(out.reduce(|acc, v| if acc == () { v } else { acc + "\n" + v }))
});
"#,
    );
    let w = run_with(&set, text_from("o_json", "write"), services(&store)).await;
    assert_eq!((w.reply, w.error), (t("written"), None));
    let r = run_with(&set, text_from("o_json", "read"), services(&store)).await;
    assert_eq!(r.error, None);
    assert_eq!(
        r.reply,
        t(r#"s:string=str
i:i64=42
neg:i64=-7
f:f64=1.5
b:bool=true
a:array=[1, "two", [3.5, false]]
m:map=#{"x": 1, "y": #{"z": "deep"}}
43 3.0 false 3.5 deep
c"#)
    );
    let stored: Vec<(String, String)> = stored_session(&store, "o_json").await;
    let expected: Vec<(String, String)> = [
        ("a", r#"[1,"two",[3.5,false]]"#),
        ("b", "true"),
        ("c", r#""c""#),
        ("f", "1.5"),
        ("i", "42"),
        ("m", r#"{"x":1,"y":{"z":"deep"}}"#),
        ("neg", "-7"),
        ("s", r#""str""#),
    ]
    .iter()
    .map(|(k, v)| (k.to_string(), v.to_string()))
    .collect();
    assert_eq!(stored, expected);

    // Setting () deletes the key.
    let unset = script(r#"rule(|msg| { session_set("s", ()); "ok" });"#);
    assert_eq!(
        run_with(&unset, text_from("o_json", "x"), services(&store))
            .await
            .error,
        None
    );
    assert!(
        !stored_session(&store, "o_json")
            .await
            .iter()
            .any(|(k, _)| k == "s")
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn a_non_json_session_value_is_an_error() {
    let (_dir, store) = temp_store().await;
    for value in [
        r#"text("x")"#,
        "[1, image(\"m\")]",
        "#{ r: success() }",
        "Fn(\"f\")",
        "0.0 / 0.0",
        "[1.0 / 0.0]",
    ] {
        let set = script(&format!(
            r#"fn f() {{ 1 }}
rule(|msg| {{ session_set("bad", {value}); "stored" }});"#
        ));
        let o = run_with(&set, text_from("o_bad", "x"), services(&store)).await;
        let err = o
            .error
            .unwrap_or_else(|| panic!("{value}: accepted, reply {:?}", o.reply));
        assert!(
            err.message.contains("session values must be"),
            "{value}: {err}"
        );
        assert!(stored_session(&store, "o_bad").await.is_empty(), "{value}");
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn a_failed_run_leaves_the_session_unchanged() {
    let (_dir, store) = temp_store().await;
    let set = script(SESSION_RULES);
    let say = |content: &'static str| {
        let set = Arc::clone(&set);
        let svc = services(&store);
        async move { run_with(&set, text_from("o_f", content), svc).await }
    };
    assert_eq!(say("set k original").await.error, None);
    assert_eq!(say("set keep yes").await.error, None);
    let before = stored_session(&store, "o_f").await;

    let o = say("boom k changed").await;
    let err = o.error.expect("the rule throws");
    assert!(err.message.contains("boom"), "{err}");
    assert_eq!(stored_session(&store, "o_f").await, before);
    assert_eq!(say("get k").await.reply, t("original"));
    assert_eq!(say("get keep").await.reply, t("yes"));

    // A failure in a later rule drops the changes of an earlier, passing one too.
    let two = script(
        r#"rule(|msg| { session_set("k", "from the first rule"); });
rule(|msg| { let x = [1][5]; "unreachable" });
"#,
    );
    let o = run_with(&two, text_from("o_f", "x"), services(&store)).await;
    assert!(o.error.is_some());
    assert_eq!(stored_session(&store, "o_f").await, before);
}

// --- the shipped rules ---------------------------------------------------------------------

fn shipped() -> Arc<RuleSet> {
    Arc::new(builtin::load(&loader()).expect("the shipped rules load"))
}

const HELP: &str = "I understand:\n\
    • help / 帮助: this list\n\
    • feedback / 反馈: send us a note\n\
    • hours / 营业时间, address / 地址: quick answers\n\
    • key / 密钥: your push key, to push to yourself from scripts\n\
    • topics / 主题, sub NAME, unsub NAME: topics you can join\n\
    Anything else comes back to you as an echo.";

#[tokio::test(flavor = "multi_thread")]
async fn shipped_rules_load_as_builtin() {
    let set = shipped();
    assert_eq!(set.source, Source::Builtin);
    let files: Vec<(&str, usize)> = set
        .files
        .iter()
        .map(|f| (f.name.as_str(), f.rules))
        .collect();
    assert_eq!(
        files,
        [
            ("10-feedback.rhai", 2),
            ("20-help.rhai", 1),
            ("30-welcome.rhai", 1),
            ("40-push.rhai", 6),
            ("50-keywords.toml", 3),
            ("90-echo.rhai", 5),
        ]
    );
    assert!(set.hooks.is_empty());
}

#[tokio::test(flavor = "multi_thread")]
async fn shipped_help_keywords_and_menu() {
    let set = shipped();
    for word in ["help", "帮助", "?", "？", " help "] {
        let o = run(&set, text(word)).await;
        assert_eq!(o.reply, t(HELP), "{word:?}");
        assert_eq!(origin_of(&o).as_deref(), Some("20-help.rhai:3"));
    }
    let hours = t("We are open Monday to Friday, 9:00-18:00.\n周一至周五 9:00-18:00 营业。");
    let address = t("1 Example Road, Shanghai.\n上海市示例路 1 号。");
    assert_eq!(reply(&set, text("hours")).await, hours);
    assert_eq!(reply(&set, text("营业时间")).await, hours);
    assert_eq!(reply(&set, text("address")).await, address);
    assert_eq!(reply(&set, text("地址")).await, address);
    let o = run(&set, click("menu_about")).await;
    assert_eq!(
        o.reply,
        Reply::News(vec![Article {
            title: "About us".into(),
            description: "Who we are and what we do".into(),
            url: "https://example.com/about".into(),
            pic_url: "https://example.com/about.jpg".into(),
        }])
    );
    assert_eq!(origin_of(&o).as_deref(), Some("50-keywords.toml:13"));
    // Other menu keys and other events get nothing.
    for m in [
        click("menu_other"),
        view("https://x"),
        msg(MessageSpec::Unsubscribe),
        scan("poster"),
        fixture("event_templatesendjobfinish.xml"),
    ] {
        let o = run(&set, m).await;
        assert_eq!(
            (o.reply, o.replied_by, o.error),
            (Reply::Success, None, None)
        );
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn shipped_welcome_by_scene() {
    let set = shipped();
    let tail = " Send help to see what I can do.";
    for (scene, greeting) in [
        (
            Some("poster"),
            "Welcome! Thanks for scanning our poster.".to_owned(),
        ),
        (Some("event"), "Welcome to the event!".to_owned()),
        (
            Some("spring_fair"),
            r#"Welcome! You came through QR code "spring_fair"."#.to_owned(),
        ),
        (None, "Welcome!".to_owned()),
    ] {
        let o = run(&set, subscribe(scene)).await;
        assert_eq!(o.reply, t(&format!("{greeting}{tail}")), "{scene:?}");
        assert_eq!(origin_of(&o).as_deref(), Some("30-welcome.rhai:9"));
    }
    assert_eq!(
        reply(&set, fixture("event_subscribe_qrscene_0.xml")).await,
        t(&format!(r#"Welcome! You came through QR code "0".{tail}"#))
    );
    // After WeChat Pay the key is not a scene: a plain welcome.
    assert_eq!(
        reply(&set, fixture("event_subscribe_last_trade_no.xml")).await,
        t(&format!("Welcome!{tail}"))
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn shipped_echo() {
    let set = shipped();
    let o = run(&set, text("hello there")).await;
    assert_eq!(o.reply, t("hello there"));
    assert_eq!(origin_of(&o).as_deref(), Some("90-echo.rhai:4"));
    assert_eq!(
        reply(&set, fixture("image.xml")).await,
        Reply::image("media_image_Fx01")
    );
    assert_eq!(
        reply(&set, fixture("voice.xml")).await,
        Reply::voice("media_voice_Fx01")
    );
    assert_eq!(
        reply(&set, fixture("location.xml")).await,
        t("Location: 广州市海珠区新港中路397号 (23.134521, 113.358803)")
    );
    let o = run(&set, fixture("link.xml")).await;
    assert_eq!(origin_of(&o).as_deref(), Some("90-echo.rhai:8"));
    assert!(matches!(o.reply, Reply::Text { .. }));
    // Video has no echo rule.
    let o = run(&set, fixture("video.xml")).await;
    assert_eq!(
        (o.reply, o.replied_by, o.error),
        (Reply::Success, None, None)
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn shipped_echo_of_a_link_has_three_lines() {
    assert_eq!(
        reply(&shipped(), fixture("link.xml")).await,
        t(
            "Link: 公众平台官网链接\n公众平台官网链接 & more\nhttps://mp.weixin.qq.com/s?__biz=MzFixture&mid=1&idx=1"
        )
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn shipped_feedback_two_steps() {
    let (_dir, store) = temp_store().await;
    let set = shipped();
    let say = |from: &'static str, content: &'static str| {
        let set = Arc::clone(&set);
        let svc = services(&store);
        async move {
            let o = run_with(&set, text_from(from, content), svc).await;
            assert_eq!(o.error, None, "{o:?}");
            o
        }
    };
    let ask = t("Please send your feedback as your next message.\n请直接回复您的意见。");
    let thanks = t("Thank you! Your feedback is recorded.\n感谢您的反馈！");

    let o = say("o_fb", "feedback").await;
    assert_eq!(o.reply, ask);
    assert_eq!(origin_of(&o).as_deref(), Some("10-feedback.rhai:5"));
    assert_eq!(
        stored_session(&store, "o_fb").await,
        [("awaiting_feedback".to_string(), "true".to_string())]
    );
    let now = unix_now();
    let at = |t: i64| {
        let store = store.clone();
        async move { store.backend().session_load("o_fb", t).await.unwrap() }
    };
    assert_eq!(
        at(now + 590).await.len(),
        1,
        "the question waits ten minutes"
    );
    assert!(at(now + 601).await.is_empty());

    // Another user's text is echoed meanwhile.
    assert_eq!(say("o_other", "great app").await.reply, t("great app"));

    let o = say("o_fb", "great app").await;
    assert_eq!(o.reply, thanks);
    assert_eq!(origin_of(&o).as_deref(), Some("10-feedback.rhai:11"));
    assert_eq!(
        stored_session(&store, "o_fb").await,
        [(
            "feedback".to_string(),
            r#"[{"at":1700000000,"text":"great app"}]"#.to_string()
        )]
    );
    // The next text is echoed again; a second round appends.
    assert_eq!(say("o_fb", "great app").await.reply, t("great app"));
    assert_eq!(say("o_fb", "反馈").await.reply, ask);
    assert_eq!(say("o_fb", "second note").await.reply, thanks);
    assert_eq!(
        stored_session(&store, "o_fb").await,
        [(
            "feedback".to_string(),
            r#"[{"at":1700000000,"text":"great app"},{"at":1700000000,"text":"second note"}]"#
                .to_string()
        )]
    );
    assert!(stored_session(&store, "o_other").await.is_empty());
}

#[test]
fn builtin_files_match_the_rules_folder() {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("rules");
    let mut on_disk: Vec<(String, Vec<u8>)> = std::fs::read_dir(&dir)
        .unwrap()
        .map(|e| e.unwrap())
        .filter(|e| e.path().is_file())
        .map(|e| {
            (
                e.file_name().to_string_lossy().into_owned(),
                std::fs::read(e.path()).unwrap(),
            )
        })
        .collect();
    on_disk.sort();
    let mut built_in: Vec<(String, Vec<u8>)> = builtin::FILES
        .iter()
        .map(|(name, text)| (name.to_string(), text.as_bytes().to_vec()))
        .collect();
    built_in.sort();
    let names = |v: &[(String, Vec<u8>)]| v.iter().map(|(n, _)| n.clone()).collect::<Vec<_>>();
    assert_eq!(names(&built_in), names(&on_disk), "the same files");
    for ((name, a), (_, b)) in built_in.iter().zip(&on_disk) {
        assert!(a == b, "{name} differs from rules/{name}");
    }
}

// --- the sandbox ---------------------------------------------------------------------------

/// One script file, `r.rhai`, with the default operation budget but a wall clock so generous
/// that on a busy test machine the operation and size limits, not the time limit, end a run.
fn unhurried(text: &str) -> Arc<RuleSet> {
    let config = RulesConfig {
        max_run_ms: 60_000,
        ..RulesConfig::default()
    };
    load_with(&config, &[("r.rhai", text)])
}

#[tokio::test(flavor = "multi_thread")]
async fn an_endless_loop_runs_out_of_operations() {
    let set = unhurried("rule(|msg| {\n    loop {}\n});");
    let err = script_error(&set, text("x")).await;
    assert!(err.message.to_lowercase().contains("operations"), "{err}");
    assert_eq!(err.file, "r.rhai");
    assert!(err.line.is_some(), "{err}");
}

#[tokio::test(flavor = "multi_thread")]
async fn endless_recursion_is_stopped() {
    let set = unhurried("fn down(n) { down(n + 1) }\nrule(|msg| down(0));");
    let err = script_error(&set, text("x")).await;
    assert!(err.message.contains("Stack overflow"), "{err}");
    assert_eq!(err.file, "r.rhai");
}

#[tokio::test(flavor = "multi_thread")]
async fn a_string_doubling_forever_hits_the_size_limit() {
    let set = unhurried(r#"rule(|msg| { let s = "x"; loop { s += s; } });"#);
    let err = script_error(&set, text("x")).await;
    assert!(err.message.contains("too large"), "{err}");
    assert!(err.message.to_lowercase().contains("string"), "{err}");
}

#[tokio::test(flavor = "multi_thread")]
async fn an_array_growing_forever_hits_the_size_limit() {
    // Enough operations that the array limit, not the operation limit, ends it.
    let config = RulesConfig {
        max_operations: 10_000_000,
        // Generous wall clock: on a busy test machine the time limit must not win.
        max_run_ms: 60_000,
        ..RulesConfig::default()
    };
    let set = load_with(
        &config,
        &[(
            "r.rhai",
            "rule(|msg| { let a = []; loop { a.push(a.len()); } });",
        )],
    );
    let err = script_error(&set, text("x")).await;
    assert!(err.message.contains("too large"), "{err}");
    assert!(err.message.to_lowercase().contains("array"), "{err}");

    // Rhai checks a map's size when the map is used as a value, not on each indexed insert,
    // so a map filled in place is bounded by the operation limit instead.
    let maps =
        unhurried("rule(|msg| { let m = #{}; let i = 0; loop { m[`k${i}`] = i; i += 1; } });");
    let err = script_error(&maps, text("x")).await;
    assert!(err.message.contains("Too many operations"), "{err}");
    let maps = load_with(
        &config,
        &[(
            "r.rhai",
            "rule(|msg| { let m = #{}; for i in 0..20000 { m[`k${i}`] = i; } m.len() });",
        )],
    );
    let err = script_error(&maps, text("x")).await;
    assert!(err.message.contains("too large"), "{err}");
    assert!(err.message.contains("map"), "{err}");
}

#[tokio::test(flavor = "multi_thread")]
async fn the_time_limit_error_names_max_run_ms() {
    let config = RulesConfig {
        max_operations: 1_000_000_000_000,
        max_run_ms: 50,
        ..RulesConfig::default()
    };
    let set = load_with(&config, &[("r.rhai", "rule(|msg| { loop {} });")]);
    let err = script_error(&set, text("x")).await;
    assert!(err.message.contains("max_run_ms"), "{err}");
}

#[tokio::test(flavor = "multi_thread")]
async fn the_time_limit_ends_a_script_with_operations_to_spare() {
    // Whatever the message says, the run ends in an error rather than running on.
    let config = RulesConfig {
        max_operations: 1_000_000_000_000,
        max_run_ms: 50,
        ..RulesConfig::default()
    };
    let set = load_with(&config, &[("r.rhai", "rule(|msg| { loop {} });")]);
    let err = script_error(&set, text("x")).await;
    assert!(!err.message.contains("operations"), "{err}");
    // The top level at load time runs under the same limit.
    let errors = try_load_with(&config, &[("top.rhai", "let i = 0;\nloop { i += 1; }")])
        .expect_err("an endless top level does not load");
    assert_eq!(errors[0].file, "top.rhai");
    assert_eq!(errors[0].line, Some(2));
}

#[tokio::test(flavor = "multi_thread")]
async fn eval_is_refused_at_load_time() {
    let err = load_error("rule(|msg| {\n    let x = 1;\n    eval(\"x + 1\")\n});");
    assert_eq!((err.file.as_str(), err.line), ("r.rhai", Some(3)), "{err}");
    assert!(err.to_string().starts_with("r.rhai:3: "), "{err}");
    assert!(err.message.contains("eval"), "{err}");
    let err = load_error("// top\nlet y = eval(\"1\");");
    assert_eq!(err.line, Some(2), "{err}");
}

#[tokio::test(flavor = "multi_thread")]
async fn imports_stay_inside_the_rules_folder() {
    let root = tempfile::tempdir().unwrap();
    let rules = root.path().join("rules");
    write(
        &rules,
        "lib/util.rhai",
        "fn greet(name) { `hello ${name}` }\n",
    );
    write(
        root.path(),
        "outside.rhai",
        "fn greet(name) { \"escaped\" }\n",
    );
    write(
        &rules,
        "10-ok.rhai",
        r#"rule(|msg| {
    import "lib/util" as util;
    text(util::greet(msg.from))
});
"#,
    );
    let set = Arc::new(
        loader()
            .load_dir(&rules)
            .expect("an import inside the folder works"),
    );
    assert_eq!(set.source, Source::Dir(rules.clone()));
    assert_eq!(reply(&set, text("x")).await, t("hello o_alice"));

    // Imported at the top level, its functions run at load time; handlers see the results.
    let top = root.path().join("top");
    write(&top, "lib/util.rhai", "fn greet(name) { `hi ${name}` }\n");
    write(
        &top,
        "a.rhai",
        "import \"lib/util\" as util;\nlet greeting = util::greet(\"all\");\nrule(|msg| text(greeting));\n",
    );
    let set = Arc::new(loader().load_dir(&top).expect("loads"));
    assert_eq!(reply(&set, text("x")).await, t("hi all"));

    // Escapes are refused, whether or not the target exists.
    let outside = root.path().join("outside");
    for path in [
        "../outside".to_owned(),
        "lib/../../outside".to_owned(),
        "/etc/passwd".to_owned(),
        outside.display().to_string(),
    ] {
        let bad = root.path().join("bad");
        let _ = std::fs::remove_dir_all(&bad);
        write(&bad, "lib/util.rhai", "fn greet(name) { name }\n");
        write(
            &bad,
            "a.rhai",
            &format!("// line 1\nimport {path:?} as x;\n"),
        );
        let errors = loader()
            .load_dir(&bad)
            .expect_err(&format!("import {path:?} is refused"));
        assert_eq!(errors.len(), 1, "{errors:?}");
        assert_eq!(errors[0].file, "a.rhai");
        assert_eq!(errors[0].line, Some(2), "{path}: {}", errors[0]);
        assert!(
            errors[0].message.contains("Module not found"),
            "{}",
            errors[0]
        );
    }

    // A symbolic link leading out of the folder is refused too.
    #[cfg(unix)]
    {
        let linked = root.path().join("linked");
        write(&linked, "a.rhai", "import \"lib/link\" as x;\n");
        std::fs::create_dir_all(linked.join("lib")).unwrap();
        std::os::unix::fs::symlink(
            root.path().join("outside.rhai"),
            linked.join("lib/link.rhai"),
        )
        .unwrap();
        // (A rule file directly in the folder that links out is refused as a file: see
        // `rule_files_leading_out_of_the_folder_are_refused`.)
        let errors = loader().load_dir(&linked).expect_err("the link is refused");
        assert_eq!(errors.len(), 1, "{errors:?}");
        assert_eq!(errors[0].file, "a.rhai");
        assert!(
            errors[0].message.contains("Module not found"),
            "{}",
            errors[0]
        );
    }

    // Inside a handler too: imports are resolved when the file loads, not per message.
    let runtime = root.path().join("runtime");
    write(
        &runtime,
        "a.rhai",
        "// line 1\nrule(|msg| { import \"../outside\" as x; x::greet(1) });\n",
    );
    let errors = loader().load_dir(&runtime).expect_err("refused at load");
    assert_one_error(&errors, "a.rhai", Some(2), "Module not found");

    // Rules loaded from memory have no folder: every import is refused.
    let err = load_error("import \"lib/util\" as util;");
    assert_eq!(err.line, Some(1), "{err}");
}

/// A rules folder whose module `lib/bad.rhai` fails on its line 3.
fn folder_with_a_failing_module() -> tempfile::TempDir {
    let root = tempfile::tempdir().unwrap();
    write(
        root.path(),
        "lib/bad.rhai",
        "// 1\nfn f() {\n    1 / 0\n}\n",
    );
    write(
        root.path(),
        "a.rhai",
        "rule(#{ content: \"f\" }, |msg| { import \"lib/bad\" as b; b::f() });\n",
    );
    root
}

#[tokio::test(flavor = "multi_thread")]
async fn errors_inside_a_module_name_the_module() {
    let root = folder_with_a_failing_module();
    let set = Arc::new(loader().load_dir(root.path()).unwrap());
    let err = script_error(&set, text("f")).await;
    assert!(err.file.starts_with("lib/bad"), "{err}");
    assert_eq!(err.line, Some(3), "{err}");
    assert!(err.message.contains("Division by zero"), "{err}");

    // A module that does not compile fails the load, naming the module.
    write(root.path(), "lib/syntax.rhai", "fn g( {\n");
    write(
        root.path(),
        "c.rhai",
        "rule(#{ content: \"g\" }, |msg| { import \"lib/syntax\" as s; 1 });\n",
    );
    let errors = loader()
        .load_dir(root.path())
        .expect_err("the module is broken");
    assert_one_error(&errors, "lib/syntax.rhai", Some(1), "Syntax error");
}

#[tokio::test(flavor = "multi_thread")]
async fn load_errors_inside_a_module_name_the_module() {
    let root = folder_with_a_failing_module();
    write(root.path(), "b.rhai", "import \"lib/bad\" as b;\nb::f();\n");
    let errors = loader().load_dir(root.path()).expect_err("b.rhai fails");
    assert_eq!(errors.len(), 1, "{errors:?}");
    assert!(errors[0].file.starts_with("lib/bad"), "{}", errors[0]);
    assert_eq!(errors[0].line, Some(3), "{}", errors[0]);
}

#[tokio::test(flavor = "multi_thread")]
async fn a_top_level_import_is_usable_from_handlers() {
    let root = tempfile::tempdir().unwrap();
    write(
        root.path(),
        "lib/util.rhai",
        "fn greet(name) { `hi ${name}` }\n",
    );
    write(
        root.path(),
        "a.rhai",
        "import \"lib/util\" as util;\nrule(|msg| text(util::greet(msg.from)));\n",
    );
    match loader().load_dir(root.path()) {
        Ok(set) => assert_eq!(reply(&Arc::new(set), text("x")).await, t("hi o_alice")),
        Err(errors) => {
            // Refusing it at load time, with the line, would be fine too.
            assert_eq!(errors[0].line, Some(2), "{errors:?}");
        }
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn declarations_only_at_the_top_level() {
    let set = script(
        r#"rule(#{ content: "declare" }, |msg| {
    rule(|m| text("sneaky"));
    text("unreachable")
});
rule(#{ content: "hook" }, |msg| { before(|m| ()); "unreachable" });
"#,
    );
    let err = script_error(&set, text("declare")).await;
    assert!(err.message.contains("top level"), "{err}");
    assert_eq!(err.line, Some(2), "{err}");
    let err = script_error(&set, text("hook")).await;
    assert!(err.message.contains("top level"), "{err}");
    // Nothing was added.
    assert_eq!(set.rules.len(), 2);
    assert!(set.hooks.is_empty());
}

#[tokio::test(flavor = "multi_thread")]
async fn run_time_functions_are_refused_at_load_time() {
    let err = load_error("// line 1\nlet last = session_get(\"k\");\nrule(|msg| text(\"x\"));");
    assert_eq!((err.file.as_str(), err.line), ("r.rhai", Some(2)), "{err}");
    assert!(
        err.message
            .contains("only available while a rule handles a message"),
        "{err}"
    );
    let err = load_error("session_set(\"k\", 1);");
    assert_eq!(err.line, Some(1), "{err}");
    let err = load_error("let n = follower_count();");
    assert!(err.message.contains("only available"), "{err}");
}

// --- load errors ---------------------------------------------------------------------------

#[tokio::test(flavor = "multi_thread")]
async fn script_load_errors_name_file_and_line() {
    let cases: &[(&str, usize, &str)] = &[
        // A syntax error.
        ("rule(|msg| text(\"x\"));\nlet = 1;\n", 2, ""),
        ("rule(|msg| {\n    text(\"x\"\n});\n", 3, ""),
        // An unknown condition key.
        (
            "// a comment\n\nrule(#{ contnet: \"x\" }, |msg| text(\"x\"));\n",
            3,
            "unknown condition `contnet`",
        ),
        // A bad regex.
        (
            "rule(#{ content: \"a\" }, |msg| ());\nrule(#{ regex: \"(\" }, |msg| ());\n",
            2,
            "invalid regex",
        ),
        (
            "rule(#{ key_regex: \"[\" }, |msg| ());\n",
            1,
            "invalid regex",
        ),
        (
            "rule(#{ regex: [\"a\", \"b\"] }, |msg| ());\n",
            1,
            "one regex",
        ),
        ("rule(#{ content: 1.5 }, |msg| ());\n", 1, "takes text"),
        ("rule(#{ content: [] }, |msg| ());\n", 1, "has no value"),
        // A handler with three parameters.
        (
            "\nrule(#{}, |a, b, c| text(\"x\"));\n",
            2,
            "at most two parameters",
        ),
        (
            "fn three(a, b, c) { () }\nrule(Fn(\"three\"));\n",
            2,
            "at most two parameters",
        ),
        // A handler that is not a function of the file.
        (
            "rule(#{ content: \"x\" }, Fn(\"nowhere\"));\n",
            1,
            "not a function of this file",
        ),
        (
            "\n\nrule(Fn(\"text\"));\n",
            3,
            "not a function of this file",
        ),
        // A hook with two parameters.
        (
            "before(|msg, caps| ());\n",
            1,
            "a before hook takes at most one parameter",
        ),
        // A run-time error in the top level.
        ("let x = 1;\nlet y = x / 0;\n", 2, "Division by zero"),
        // rule() with the wrong arguments.
        ("rule(\"not a map\", |msg| ());\n", 1, "rule"),
    ];
    for (text, line, message) in cases {
        let err = load_error(text);
        assert_eq!(err.file, "r.rhai", "{text:?}");
        assert_eq!(err.line, Some(*line), "{text:?}: {err}");
        assert!(err.message.contains(message), "{text:?}: {err}");
        assert!(
            err.to_string().starts_with(&format!("r.rhai:{line}: ")),
            "{err}"
        );
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn every_bad_declaration_of_a_file_is_reported() {
    let errors = load_errors(&[(
        "r.rhai",
        r#"rule(#{ contnet: "x" }, |msg| ());
rule(#{ content: "fine" }, |msg| ());
rule(#{ regex: "(" }, |msg| ());
rule(#{}, |a, b, c| ());
"#,
    )]);
    let lines: Vec<Option<usize>> = errors.iter().map(|e| e.line).collect();
    assert_eq!(lines, [Some(1), Some(3), Some(4)], "{errors:#?}");
}

const BAD_TABLE: &str = r#"# line 1
[[reply]]
content = "two replies"
text = "a"
image = "m"

[[reply]]
content = "no reply"

[[reply]]
contnet = "typo"
text = "x"

[[reply]]
content = "fine"
text = "ok"

[[reply]]
content = "empty"
text = "   "

[[reply]]
content = "bad news"
news = []
"#;

#[tokio::test(flavor = "multi_thread")]
async fn table_load_errors_name_file_and_line() {
    let errors = load_errors(&[("k.toml", BAD_TABLE)]);
    let got: Vec<(&str, Option<usize>)> =
        errors.iter().map(|e| (e.file.as_str(), e.line)).collect();
    assert_eq!(
        got,
        [
            ("k.toml", Some(2)),
            ("k.toml", Some(7)),
            ("k.toml", Some(10)),
            ("k.toml", Some(18)),
            ("k.toml", Some(22)),
        ],
        "{errors:#?}"
    );
    assert!(
        errors[0].message.contains("exactly one reply"),
        "{}",
        errors[0]
    );
    assert!(errors[0].message.contains("has 2"), "{}", errors[0]);
    assert!(errors[1].message.contains("has 0"), "{}", errors[1]);
    assert!(
        errors[2].message.contains("unknown condition `contnet`"),
        "{}",
        errors[2]
    );
    assert!(errors[2].message.contains("or a reply"), "{}", errors[2]);
    assert!(
        errors[3].message.contains("`text` is empty"),
        "{}",
        errors[3]
    );
    assert!(
        errors[4].message.contains("at least one article"),
        "{}",
        errors[4]
    );

    let others: &[(&str, Option<usize>, &str)] = &[
        // TOML syntax.
        (
            "[[reply]]\ncontent = \"x\"\ntext = \"unterminated\n",
            Some(3),
            "",
        ),
        (
            "[[reply]]\ncontent = \"x\"\ntext = 5\n",
            Some(1),
            "`text` takes text",
        ),
        ("[other]\nx = 1\n", Some(1), "unknown table `other`"),
        ("reply = 1\n", Some(1), "[[reply]]"),
        (
            "\n[[reply]]\ncontent = 1.5\ntext = \"x\"\n",
            Some(2),
            "takes text",
        ),
        (
            "[[reply]]\ncontent = \"x\"\ntransfer_customer_service = 3\n",
            Some(1),
            "transfer_customer_service",
        ),
    ];
    for (text, line, message) in others {
        let errors = load_errors(&[("k.toml", text)]);
        assert_eq!(errors.len(), 1, "{text:?}: {errors:#?}");
        assert_eq!(errors[0].file, "k.toml");
        assert_eq!(errors[0].line, *line, "{text:?}: {}", errors[0]);
        assert!(
            errors[0].message.contains(message),
            "{text:?}: {}",
            errors[0]
        );
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn table_lines_follow_the_toml_not_the_text() {
    let errors = load_errors(&[("k.toml", "# 1\n[[ reply ]]\ncontent = \"x\"\n")]);
    assert_eq!(errors[0].line, Some(2), "{errors:?}");
    let errors = load_errors(&[(
        "k.toml",
        "[[reply]]\ncontent = \"a\"\ntext = \"\"\"\n[[reply]] is how\"\"\"\n\n[[reply]]\ncontent = \"b\"\n",
    )]);
    assert_eq!(errors[0].line, Some(6), "{errors:?}");
}

#[tokio::test(flavor = "multi_thread")]
async fn table_replies_of_every_kind() {
    let set = load(&[(
        "k.toml",
        r#"[[reply]]
content = "img"
image = "m_img"

[[reply]]
content = "voc"
voice = "m_voice"

[[reply]]
content = ["kf", "人工"]
transfer_customer_service = true

[[reply]]
content = "kf2"
transfer_customer_service = "kf1@gh"

[[reply]]
content = "quiet"
success = true

[[reply]]
type = "event"
event = "click"
key_regex = "^a_"
text = "a menu"
"#,
    )]);
    assert_eq!(reply(&set, text("img")).await, Reply::image("m_img"));
    assert_eq!(reply(&set, text("voc")).await, Reply::voice("m_voice"));
    assert_eq!(
        reply(&set, text("人工")).await,
        Reply::transfer_customer_service(None)
    );
    assert_eq!(
        reply(&set, text("kf2")).await,
        Reply::transfer_customer_service(Some("kf1@gh".into()))
    );
    let o = run(&set, text("quiet")).await;
    assert_eq!(o.reply, Reply::Success);
    assert_eq!(origin_of(&o).as_deref(), Some("k.toml:17"));
    assert_eq!(reply(&set, click("a_1")).await, t("a menu"));
    assert_eq!(reply(&set, click("b_1")).await, Reply::Success);
}

#[tokio::test(flavor = "multi_thread")]
async fn every_error_of_a_folder_is_reported_together() {
    let dir = common::fixtures().join("rules/broken");
    let errors = loader().load_dir(&dir).expect_err("the folder has errors");
    let got: Vec<String> = errors.iter().map(ToString::to_string).collect();
    let mut files: Vec<&str> = errors.iter().map(|e| e.file.as_str()).collect();
    files.dedup();
    assert_eq!(
        files,
        ["10-syntax.rhai", "20-keys.rhai", "30-table.toml"],
        "{got:#?}"
    );
    let located: Vec<(&str, Option<usize>)> =
        errors.iter().map(|e| (e.file.as_str(), e.line)).collect();
    assert_eq!(
        located,
        [
            ("10-syntax.rhai", Some(4)),
            ("20-keys.rhai", Some(3)),
            ("20-keys.rhai", Some(5)),
            ("30-table.toml", Some(6)),
        ],
        "{got:#?}"
    );
    // Through Rules::open, the same errors.
    let config = RulesConfig {
        dir: dir.clone(),
        ..RulesConfig::default()
    };
    match Rules::open(&config, vec![]) {
        Err(RulesError::Load(e)) => assert_eq!(e, errors),
        other => panic!("expected load errors, got {other:?}"),
    }
}

// --- fallback ------------------------------------------------------------------------------

#[tokio::test(flavor = "multi_thread")]
async fn a_failing_script_answers_the_fallback() {
    let config = RulesConfig {
        fallback: "Sorry".into(),
        ..RulesConfig::default()
    };
    let fallback = fallback_reply(&config);
    assert_eq!(fallback, t("Sorry"));
    let set = load_with(
        &config,
        &[(
            "f.rhai",
            r#"rule(#{ content: "ok" }, |msg| text("fine"));
rule(#{ content: "fail" }, |msg| {
    let items = [1, 2];
    items[10]
});
"#,
        )],
    );
    let o = set.run(text("fail"), Services::default(), &fallback).await;
    assert_eq!(o.reply, t("Sorry"));
    assert_eq!(o.replied_by, None);
    let err = o.error.expect("the error is reported");
    assert_eq!((err.file.as_str(), err.line), ("f.rhai", Some(4)), "{err}");
    assert!(err.message.contains("out of bounds"), "{err}");

    // A passing run is untouched by the fallback.
    let o = set.run(text("ok"), Services::default(), &fallback).await;
    assert_eq!((o.reply, o.error), (t("fine"), None));

    for (setting, expected) in [
        ("success", Reply::Success),
        ("", Reply::Success),
        ("  success  ", Reply::Success),
        ("  Try later  ", t("Try later")),
    ] {
        let config = RulesConfig {
            fallback: setting.into(),
            ..RulesConfig::default()
        };
        assert_eq!(fallback_reply(&config), expected, "{setting:?}");
    }
}

// --- Rules: open and reload ----------------------------------------------------------------

fn rule_answering(answer: &str) -> String {
    format!("rule(#{{ content: \"ping\" }}, |msg| text(\"{answer}\"));\n")
}

#[tokio::test(flavor = "multi_thread")]
async fn rules_reload_when_the_folder_changes() {
    let root = tempfile::tempdir().unwrap();
    let dir = root.path().join("rules");
    write(&dir, "a.rhai", &rule_answering("v1"));
    let config = RulesConfig {
        dir: dir.clone(),
        ..RulesConfig::default()
    };
    let rules = Rules::open(&config, vec![]).expect("opens");
    assert_eq!(rules.dir(), dir.as_path());
    assert_eq!(rules.current().source, Source::Dir(dir.clone()));
    let ping = || async {
        let o = rules.run(text("ping"), Services::default()).await;
        assert_eq!(o.error, None);
        o.reply
    };
    assert_eq!(ping().await, t("v1"));

    assert_eq!(rules.reload(), Reload::Unchanged);
    assert_eq!(rules.reload(), Reload::Unchanged);

    write(&dir, "a.rhai", &rule_answering("v2"));
    assert_eq!(rules.reload(), Reload::Reloaded { rules: 1, files: 1 });
    assert_eq!(ping().await, t("v2"));
    assert_eq!(rules.reload(), Reload::Unchanged);

    // A broken edit: the previous set stays live.
    let live = rules.current();
    write(
        &dir,
        "a.rhai",
        "rule(#{ content: \"ping\" }, |msg| text(\"v3\");\n",
    );
    match rules.reload() {
        Reload::Failed(errors) => {
            assert_eq!(errors.len(), 1, "{errors:?}");
            assert_eq!(errors[0].file, "a.rhai");
            assert_eq!(errors[0].line, Some(1));
        }
        other => panic!("expected Failed, got {other:?}"),
    }
    assert!(
        Arc::ptr_eq(&live, &rules.current()),
        "the set was not swapped"
    );
    assert_eq!(ping().await, t("v2"));
    assert_eq!(
        rules.reload(),
        Reload::Unchanged,
        "a failed folder is not retried"
    );

    // Fixed.
    write(&dir, "a.rhai", &rule_answering("v3"));
    assert_eq!(rules.reload(), Reload::Reloaded { rules: 1, files: 1 });
    assert_eq!(ping().await, t("v3"));

    // A new file, and a keyword table.
    write(
        &dir,
        "0-first.toml",
        "[[reply]]\ncontent = \"ping\"\ntext = \"table\"\n",
    );
    write(
        &dir,
        "b.rhai",
        "rule(|msg| text(\"b\"));\nrule(|msg| ());\n",
    );
    assert_eq!(rules.reload(), Reload::Reloaded { rules: 4, files: 3 });
    assert_eq!(ping().await, t("table"));

    // A module the rules import counts as part of the folder.
    std::fs::remove_file(dir.join("0-first.toml")).unwrap();
    write(&dir, "lib/m.rhai", "fn answer() { \"from m\" }\n");
    write(
        &dir,
        "a.rhai",
        "rule(#{ content: \"ping\" }, |msg| { import \"lib/m\" as m; text(m::answer()) });\n",
    );
    assert!(matches!(rules.reload(), Reload::Reloaded { .. }));
    assert_eq!(ping().await, t("from m"));
    write(&dir, "lib/m.rhai", "fn answer() { \"from m, edited\" }\n");
    assert!(matches!(rules.reload(), Reload::Reloaded { .. }));
    assert_eq!(ping().await, t("from m, edited"));

    // The folder disappearing keeps the loaded rules.
    write(&dir, "a.rhai", &rule_answering("final"));
    assert!(matches!(rules.reload(), Reload::Reloaded { .. }));
    assert_eq!(ping().await, t("final"));
    std::fs::remove_dir_all(&dir).unwrap();
    assert_eq!(rules.reload(), Reload::Unchanged);
    assert_eq!(ping().await, t("final"));
    assert_eq!(rules.reload(), Reload::Unchanged);
}

#[tokio::test(flavor = "multi_thread")]
async fn a_missing_folder_runs_the_builtin_rules() {
    let root = tempfile::tempdir().unwrap();
    let dir = root.path().join("no-such-rules");
    let config = RulesConfig {
        dir: dir.clone(),
        ..RulesConfig::default()
    };
    let rules = Rules::open(&config, vec![]).expect("opens");
    assert_eq!(rules.current().source, Source::Builtin);
    assert_eq!(
        rules.run(text("help"), Services::default()).await.reply,
        t(HELP)
    );
    assert_eq!(rules.reload(), Reload::Unchanged);

    // Creating the folder later switches to it.
    write(&dir, "a.rhai", &rule_answering("mine"));
    assert_eq!(rules.reload(), Reload::Reloaded { rules: 1, files: 1 });
    assert_eq!(rules.current().source, Source::Dir(dir.clone()));
    assert_eq!(
        rules.run(text("ping"), Services::default()).await.reply,
        t("mine")
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn rules_open_refuses_a_bad_timezone() {
    let config = RulesConfig {
        timezone: "Mars/Olympus".into(),
        ..RulesConfig::default()
    };
    assert!(matches!(
        Rules::open(&config, vec![]),
        Err(RulesError::Timezone(_))
    ));
}

#[tokio::test(flavor = "multi_thread")]
async fn captured_values_are_a_fresh_copy_for_every_message() {
    // A handler changing what it captured changes its own copy only: nothing one user's
    // message does reaches another's, and a failed run leaves no trace.
    let set = script(
        r#"let notes = [];
        rule(#{ content: "fail" }, |msg| { notes.push("fail"); throw "boom" });
        rule(|msg| { notes.push(msg.content); text(`${notes}`) });"#,
    );
    assert_eq!(
        reply(&set, text_from("o_alice", "alice secret")).await,
        t(r#"["alice secret"]"#)
    );
    let _ = script_error(&set, text_from("o_carol", "fail")).await;
    assert_eq!(reply(&set, text_from("o_bob", "hi")).await, t(r#"["hi"]"#));
}

#[test]
fn curry_is_refused() {
    let err = load_error("rule(|msg| { let f = Fn(\"g\"); f.curry(1); () });\nfn g(a, m) { () }\n");
    assert_eq!(err.line, Some(1), "{err}");
}

#[tokio::test(flavor = "multi_thread")]
async fn a_session_that_cannot_be_saved_answers_the_fallback() {
    let dir = tempfile::tempdir().unwrap();
    let url = format!("sqlite://{}", dir.path().join("locked.db").display());
    let store = Store::open(&url).await.unwrap();
    let config = RulesConfig {
        fallback: "Sorry, try again.".into(),
        ..RulesConfig::default()
    };
    let fallback = huixin::rules::fallback_reply(&config);
    let set = load_with(
        &config,
        &[(
            "a.rhai",
            "rule(|msg| { session_set(\"note\", msg.content); text(\"recorded\") });",
        )],
    );
    // Another process holds the write lock longer than the busy timeout.
    use sqlx::Connection;
    let mut other = sqlx::SqliteConnection::connect(&url).await.unwrap();
    sqlx::query("BEGIN IMMEDIATE")
        .execute(&mut other)
        .await
        .unwrap();
    let services = Services {
        store: Some(store.clone()),
        ..Services::default()
    };
    let outcome = set
        .run(text("important"), services.clone(), &fallback)
        .await;
    assert_eq!(
        outcome.reply,
        t("Sorry, try again."),
        "never \"recorded\" when it was not: {outcome:?}"
    );
    let error = outcome.error.expect("the failure is reported");
    assert!(
        error.message.contains("session could not be saved"),
        "{error}"
    );
    sqlx::query("ROLLBACK").execute(&mut other).await.unwrap();
    // Once the lock is gone, it works.
    assert_eq!(
        set.run(text("again"), services, &fallback).await.reply,
        t("recorded")
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn a_session_holds_a_bounded_number_of_keys() {
    let (_dir, store) = temp_store().await;
    let set = script(
        r#"rule(|msg| {
            for i in 0..300 { session_set(`k${i}`, i); }
            text("too many")
        });"#,
    );
    let services = Services {
        store: Some(store.clone()),
        ..Services::default()
    };
    let outcome = run_with(&set, text("x"), services).await;
    let error = outcome.error.expect("the 257th key is refused");
    assert!(error.message.contains("at most 256 keys"), "{error}");
    let saved = store
        .backend()
        .session_load("o_user", huixin::support::clock::unix_now())
        .await
        .unwrap();
    assert!(saved.is_empty(), "a failed run saves nothing");
}

#[tokio::test(flavor = "multi_thread")]
async fn indented_top_level_imports_are_visible_to_handlers() {
    let root = tempfile::tempdir().unwrap();
    write(
        root.path(),
        "lib/util.rhai",
        "fn greet(name) { `hi ${name}` }\n",
    );
    write(
        root.path(),
        "a.rhai",
        "    import \"lib/util\" as util;\nrule(|msg| text(util::greet(\"you\")));\n",
    );
    let set = Arc::new(loader().load_dir(root.path()).unwrap());
    assert_eq!(reply(&set, text("x")).await, t("hi you"));
}

// --- the rules folder: cycles, odd files, confinement ---------------------------------------

/// A rules folder whose `lib/a` and `lib/b` import each other, imported by `10-main.rhai`.
fn write_import_cycle(dir: &Path) {
    write(dir, "lib/a.rhai", "import \"lib/b\" as b;\nfn f() { 1 }\n");
    write(
        dir,
        "lib/b.rhai",
        "// b\nimport \"lib/a\" as a;\nfn g() { 2 }\n",
    );
    write(
        dir,
        "10-main.rhai",
        "import \"lib/a\" as a;\nrule(#{ content: \"ping\" }, |msg| text(\"cycle\"));\n",
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn an_import_cycle_is_a_load_error_and_a_reload_keeps_the_live_rules() {
    let root = tempfile::tempdir().unwrap();
    let dir = root.path().join("rules");
    write(&dir, "a.rhai", &rule_answering("v1"));
    let config = RulesConfig {
        dir: dir.clone(),
        ..RulesConfig::default()
    };
    let rules = Rules::open(&config, vec![]).expect("opens");
    let live = rules.current();

    // Before cycles were caught, this reload overflowed the stack and aborted the process.
    write_import_cycle(&dir);
    match rules.reload() {
        Reload::Failed(errors) => {
            assert_one_error(
                &errors,
                "lib/b.rhai",
                Some(2),
                "import cycle: lib/a → lib/b → lib/a",
            );
        }
        other => panic!("expected Failed, got {other:?}"),
    }
    assert!(
        Arc::ptr_eq(&live, &rules.current()),
        "the set was not swapped"
    );
    let o = rules.run(text("ping"), Services::default()).await;
    assert_eq!(o.reply, t("v1"));

    // The same folder at start is an error, not a crash.
    match Rules::open(&config, vec![]) {
        Err(RulesError::Load(errors)) => {
            assert!(errors[0].message.contains("import cycle"), "{errors:?}")
        }
        other => panic!("expected a load error, got {other:?}"),
    }

    // A module importing itself, imported from a handler; and a rule file importing itself.
    let selfish = root.path().join("self");
    write(
        &selfish,
        "lib/me.rhai",
        "fn f() { 1 }\nimport \"lib/me\" as me;\n",
    );
    write(
        &selfish,
        "a.rhai",
        "rule(|msg| { import \"lib/me\" as m; text(\"x\") });\n",
    );
    let errors = loader().load_dir(&selfish).expect_err("a cycle");
    assert_one_error(
        &errors,
        "lib/me.rhai",
        Some(2),
        "import cycle: lib/me → lib/me",
    );
    write(&selfish, "a.rhai", "// a\nimport \"a\" as a;\n");
    std::fs::remove_file(selfish.join("lib/me.rhai")).unwrap();
    let errors = loader().load_dir(&selfish).expect_err("a cycle");
    assert!(
        errors[0].message.contains("import cycle: a → a"),
        "{errors:?}"
    );
    assert_eq!(errors[0].file, "a.rhai", "{errors:?}");
}

#[tokio::test(flavor = "multi_thread")]
async fn imports_nest_a_bounded_number_of_levels() {
    let root = tempfile::tempdir().unwrap();
    let depth = huixin::rules::engine::MAX_IMPORT_DEPTH;
    // lib/m1 imports lib/m2 … up to the deepest allowed: loads.
    for i in 1..=depth {
        let next = if i < depth {
            format!(
                "import \"lib/m{}\" as next;\nfn f() {{ next::f() + 1 }}\n",
                i + 1
            )
        } else {
            "fn f() { 1 }\n".to_owned()
        };
        write(root.path(), &format!("lib/m{i}.rhai"), &next);
    }
    write(
        root.path(),
        "a.rhai",
        "import \"lib/m1\" as m;\nrule(|msg| text(`${m::f()}`));\n",
    );
    let set = Arc::new(loader().load_dir(root.path()).expect("within the depth"));
    assert_eq!(reply(&set, text("x")).await, t(&depth.to_string()));

    // One more level is refused, at the import that goes too deep.
    write(
        root.path(),
        &format!("lib/m{depth}.rhai"),
        &format!("import \"lib/m{}\" as next;\nfn f() {{ 1 }}\n", depth + 1),
    );
    write(
        root.path(),
        &format!("lib/m{}.rhai", depth + 1),
        "fn f() { 1 }\n",
    );
    let errors = loader().load_dir(root.path()).expect_err("too deep");
    assert_eq!(errors.len(), 1, "{errors:?}");
    assert_eq!(errors[0].file, format!("lib/m{depth}.rhai"), "{errors:?}");
    assert!(errors[0].message.contains("nest more than"), "{errors:?}");
}

/// Runs `f` on a thread of its own and waits for it: a hang fails the test instead of
/// stalling it.
fn without_hanging<T: Send + 'static>(what: &str, f: impl FnOnce() -> T + Send + 'static) -> T {
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        let _ = tx.send(f());
    });
    rx.recv_timeout(std::time::Duration::from_secs(60))
        .unwrap_or_else(|_| panic!("{what} hung"))
}

#[cfg(unix)]
fn mkfifo(path: &Path) {
    use std::os::unix::ffi::OsStrExt;
    let c = std::ffi::CString::new(path.as_os_str().as_bytes()).unwrap();
    // SAFETY: a valid NUL-terminated path.
    assert_eq!(unsafe { libc::mkfifo(c.as_ptr(), 0o644) }, 0, "mkfifo");
}

#[cfg(unix)]
#[test]
fn a_fifo_in_the_rules_folder_is_an_error_not_a_hang() {
    let root = tempfile::tempdir().unwrap();
    let dir = root.path().join("rules");
    write(&dir, "a.rhai", &rule_answering("v1"));
    mkfifo(&dir.join("b.rhai"));
    let config = RulesConfig {
        dir: dir.clone(),
        ..RulesConfig::default()
    };
    let opened = without_hanging("Rules::open", {
        let config = config.clone();
        move || Rules::open(&config, vec![]).map(|_| ())
    });
    match opened {
        Err(RulesError::Load(errors)) => {
            assert_eq!(errors.len(), 1, "{errors:?}");
            assert_eq!(errors[0].file, "b.rhai", "{errors:?}");
            assert!(
                errors[0].message.contains("not a regular file"),
                "{errors:?}"
            );
        }
        other => panic!("expected a load error, got {other:?}"),
    }

    // A FIFO among the modules: harmless until imported; imported, an error.
    std::fs::remove_file(dir.join("b.rhai")).unwrap();
    std::fs::create_dir_all(dir.join("lib")).unwrap();
    mkfifo(&dir.join("lib/f.rhai"));
    let rules = without_hanging("Rules::open", {
        let config = config.clone();
        move || Rules::open(&config, vec![]).map(|r| r.current().rules.len())
    });
    assert_eq!(rules.expect("loads"), 1);
    write(
        &dir,
        "c.rhai",
        "// c\nrule(|msg| { import \"lib/f\" as f; text(\"x\") });\n",
    );
    let errors = without_hanging("loading", {
        let dir = dir.clone();
        move || loader().load_dir(&dir).map(|_| ())
    })
    .expect_err("the FIFO is refused");
    assert_eq!(errors.len(), 1, "{errors:?}");
    assert_eq!(errors[0].file, "lib/f.rhai", "{errors:?}");
    assert!(
        errors[0].message.contains("not a regular file"),
        "{errors:?}"
    );
}

#[test]
fn a_rules_dir_that_is_a_file_is_an_error() {
    let root = tempfile::tempdir().unwrap();
    let file = root.path().join("rules.rhai");
    write(root.path(), "rules.rhai", &rule_answering("v1"));
    let config = RulesConfig {
        dir: file.clone(),
        ..RulesConfig::default()
    };
    let err = Rules::open(&config, vec![]).expect_err("not a folder");
    let text = err.to_string();
    assert!(text.contains("[rules] dir"), "{text}");
    assert!(text.contains(&file.display().to_string()), "{text}");
    assert!(text.contains("not a folder"), "{text}");
}

#[cfg(unix)]
#[test]
fn rule_files_leading_out_of_the_folder_are_refused() {
    let root = tempfile::tempdir().unwrap();
    let dir = root.path().join("rules");
    write(root.path(), "outside.rhai", &rule_answering("outside"));
    write(
        root.path(),
        "outside.toml",
        "[[reply]]\ncontent = \"ping\"\ntext = \"outside\"\n",
    );
    write(&dir, "lib/inside.rhai", &rule_answering("inside"));
    std::os::unix::fs::symlink(root.path().join("outside.rhai"), dir.join("a.rhai")).unwrap();
    std::os::unix::fs::symlink(root.path().join("outside.toml"), dir.join("b.toml")).unwrap();
    // A link that stays inside the folder is fine.
    std::os::unix::fs::symlink(dir.join("lib/inside.rhai"), dir.join("c.rhai")).unwrap();
    let errors = loader().load_dir(&dir).expect_err("links out are refused");
    let mut named: Vec<(&str, bool)> = errors
        .iter()
        .map(|e| {
            (
                e.file.as_str(),
                e.message.contains("outside the rules folder"),
            )
        })
        .collect();
    named.sort();
    assert_eq!(named, [("a.rhai", true), ("b.toml", true)], "{errors:?}");

    std::fs::remove_file(dir.join("a.rhai")).unwrap();
    std::fs::remove_file(dir.join("b.toml")).unwrap();
    let set = loader().load_dir(&dir).expect("a link inside loads");
    assert_eq!(set.rules.len(), 1);
}

// --- the sandbox: strings and regexes ---------------------------------------------------------

#[tokio::test(flavor = "multi_thread")]
async fn replace_and_pad_refuse_a_string_over_the_limit_before_making_it() {
    // 1000 × 100 000 bytes: Rhai's own replace built all 100 MB, then found it too large.
    let set = unhurried(
        r#"rule(|msg| {
    let s = "";
    s.pad(1000, "x");
    let big = "";
    big.pad(100000, "y");
    s.replace("x", big);
    text(`${s.len()}`)
});"#,
    );
    let err = script_error(&set, text("x")).await;
    assert!(err.message.contains("too large"), "{err}");
    assert!(err.message.contains("replace"), "{err}");
    assert!(err.message.contains("100000000 bytes"), "{err}");

    // Every form of replace is checked; within the limit, replace works as before.
    for (call, expected) in [
        (r#"s.replace('a', big)"#, "replace"),
        (r#"s.replace("a", big)"#, "replace"),
        (r#"s.pad(200000, "汉")"#, "pad"),
        (r#"s.pad(200000, '汉')"#, "pad"),
    ] {
        let set = unhurried(&format!(
            "rule(|msg| {{\n    let s = \"\"; s.pad(1000, 'a');\n    let big = \"\"; big.pad(1000, 'b');\n    {call};\n    text(`${{s.len()}}`)\n}});"
        ));
        let err = script_error(&set, text("x")).await;
        assert!(err.message.contains(expected), "{call}: {err}");
        assert!(err.message.contains("too large"), "{call}: {err}");
    }
    for (expr, expected) in [
        (r#"let s = "hello"; s.replace("l", "LL"); s"#, "heLLLLo"),
        (r#"let s = "hello"; s.replace('l', "-"); s"#, "he--o"),
        (r#"let s = "hello"; s.replace("l", '_'); s"#, "he__o"),
        (r#"let s = "hello"; s.replace('l', 'L'); s"#, "heLLo"),
        (r#"let s = "ab"; s.replace("", "-"); s"#, "-a-b-"),
        (r#"let s = ""; s.replace("", "-"); s"#, ""),
        (r#"let s = "hi"; s.pad(7, "abc"); s"#, "hiabcab"),
        (r#"let s = "hi"; s.pad(4, '汉'); s"#, "hi汉汉"),
        (r#"let s = "hello"; s.pad(2, '!'); s"#, "hello"),
        (r#"let s = "hi"; s.pad(-1, '!'); s"#, "hi"),
    ] {
        assert_eq!(
            show(&format!("{{ {expr} }}"), text("x")).await,
            expected,
            "{expr}"
        );
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn pad_with_nothing_leaves_the_string_alone() {
    // Rhai's own pad looped forever on an empty padding.
    assert_eq!(
        show(r#"{ let s = "hi"; s.pad(5, ""); s }"#, text("x")).await,
        "hi"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn a_regex_too_large_to_match_quickly_is_refused_at_load() {
    // About 7 MiB compiled: most of a second (many seconds unoptimised) on a 250 KB message,
    // on an async worker.
    let err =
        load_error("// slow\nrule(#{ regex: \"(?:\\\\w+\\\\s*){100}x\" }, |msg| text(\"y\"));");
    assert_eq!((err.file.as_str(), err.line), ("r.rhai", Some(2)), "{err}");
    assert!(err.message.contains("too large"), "{err}");
    let errors = load_errors(&[(
        "k.toml",
        "[[reply]]\nkey_regex = '(?:\\w+\\s*){100}x'\ntext = \"y\"\n",
    )]);
    assert!(errors[0].message.contains("too large"), "{errors:?}");
    // Ordinary patterns are well within the limit.
    let set = script(
        "rule(#{ regex: \"^(?i:sub|订阅)\\\\s+(?P<topic>[-_A-Za-z0-9]{1,64})$\" }, |msg, caps| text(caps[\"topic\"]));",
    );
    assert_eq!(reply(&set, text("sub news")).await, t("news"));
    let long = format!("{} x", "word ".repeat(50_000));
    assert_eq!(run(&set, text(&long)).await.replied_by, None);
}
