//! The outbound half through the real binary: two `huixin serve` processes on one SQLite file
//! sharing one access token, the `token`, `menu`, `qrcode` and `user` commands against the
//! emulator, and `huixin emulator` + `huixin serve` + `huixin simulate` as the README shows.

use crate::common;

use std::path::Path;
use std::time::Duration;

use common::emu::{API_APP_ID, API_SECRET, RunningEmulator, emulator_settings, start_emulator};
use common::process::{HUIXIN, Running, huixin, stderr, stdout};
use huixin::simulator::{MessageSpec, Simulator};
use huixin::wechat::Mode;
use serde_json::{Value, json};

const USER: &str = "o_cli_user";

/// The emulator on its own runtime, so the test thread may block on child processes.
struct Background {
    em: RunningEmulator,
    runtime: tokio::runtime::Runtime,
}

fn background(followers: &[&str]) -> Background {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    let em = runtime.block_on(start_emulator(emulator_settings(followers)));
    Background { em, runtime }
}

/// The environment of a huixin process on `em`, with its database in `dir`.
fn env_for(em: &RunningEmulator, dir: &Path) -> Vec<(&'static str, String)> {
    vec![
        ("HUIXIN_WECHAT_APP_ID", API_APP_ID.to_owned()),
        ("HUIXIN_WECHAT_APP_SECRET", API_SECRET.to_owned()),
        ("HUIXIN_WECHAT_API_BASE", em.base.clone()),
        ("HUIXIN_WECHAT_TOKEN", common::TOKEN.to_owned()),
        ("HUIXIN_STORAGE_URL", common::emu::sqlite_url(dir)),
        ("HUIXIN_SERVER_LISTEN", "127.0.0.1:0".to_owned()),
        ("RUST_LOG", "warn".to_owned()),
    ]
}

fn run(dir: &Path, env: &[(&'static str, String)], args: &[&str]) -> std::process::Output {
    let env: Vec<(&str, &str)> = env.iter().map(|(k, v)| (*k, v.as_str())).collect();
    huixin(dir, args, &env)
}

fn run_ok(dir: &Path, env: &[(&'static str, String)], args: &[&str]) -> String {
    let out = run(dir, env, args);
    assert!(
        out.status.success(),
        "huixin {args:?} failed: {}{}",
        stdout(&out),
        stderr(&out)
    );
    stdout(&out)
}

fn spawn(dir: &Path, env: &[(&'static str, String)], args: &[&str]) -> Running {
    let env: Vec<(&str, &str)> = env.iter().map(|(k, v)| (*k, v.as_str())).collect();
    Running::spawn(Path::new(HUIXIN), dir, args, &env)
}

#[test]
fn two_serve_processes_on_one_database_refresh_the_token_once() {
    let users: Vec<String> = (0..16).map(|i| format!("o_user_{i:02}")).collect();
    let user_refs: Vec<&str> = users.iter().map(String::as_str).collect();
    let bg = background(&user_refs);
    let dir = tempfile::tempdir().unwrap();
    std::fs::create_dir(dir.path().join("rules")).unwrap();
    std::fs::write(
        dir.path().join("rules/push.rhai"),
        r#"rule(#{ content: "push" }, |msg| { send_text(msg.from, "pushed to " + msg.from); "queued" });"#,
    )
    .unwrap();
    let env = env_for(&bg.em, dir.path());
    let mut first = spawn(dir.path(), &env, &["serve"]);
    let mut second = spawn(dir.path(), &env, &["serve"]);
    let urls = [first.url(), second.url()];
    assert!(
        first
            .seen
            .iter()
            .any(|l| l.starts_with("outbound: late replies and rule sends go through")),
        "{:?}",
        first.seen
    );

    // Both processes need the token at the same moment: 16 users, half on each.
    let conversations: Vec<String> = bg.runtime.block_on(async {
        let tasks: Vec<_> = users
            .iter()
            .enumerate()
            .map(|(i, user)| {
                let sim = Simulator::new(&urls[i % 2], common::TOKEN, Mode::Plain, None).unwrap();
                let user = user.clone();
                tokio::spawn(async move {
                    let header = huixin::simulator::Header::new("gh_cli_test", &user);
                    let spec = MessageSpec::Text {
                        content: "push".into(),
                    };
                    let xml = spec.to_xml(&header).unwrap();
                    sim.send(xml, &user).await.unwrap().body
                })
            })
            .collect();
        let mut bodies = Vec::new();
        for t in tasks {
            bodies.push(t.await.unwrap());
        }
        bodies
    });
    for body in &conversations {
        assert!(body.contains("queued"), "{body}");
    }
    // The sends happen after the replies: wait for all of them.
    for user in &users {
        let mut tries = 0;
        while bg.em.received(user, "custom").is_empty() {
            tries += 1;
            assert!(
                tries < 500,
                "{user} got nothing; calls: {:?}",
                bg.em.emu.calls()
            );
            std::thread::sleep(Duration::from_millis(20));
        }
        assert_eq!(
            bg.em.received(user, "custom")[0]["text"]["content"],
            format!("pushed to {user}")
        );
    }
    assert_eq!(bg.em.token_requests(), 1, "one token between two processes");
    assert_eq!(bg.em.calls_to("/cgi-bin/message/custom/send").len(), 16);

    // `huixin token`, a third process, reads the same token.
    let token = run_ok(dir.path(), &env, &["token"]).trim().to_owned();
    let used = bg.em.calls_to("/cgi-bin/message/custom/send")[0].query["access_token"].clone();
    assert_eq!(token, used);
    assert_eq!(bg.em.token_requests(), 1);
    assert!(first.terminate() && second.terminate());
}

#[test]
fn token_menu_qrcode_and_user_commands() {
    let bg = background(&[USER]);
    let dir = tempfile::tempdir().unwrap();
    let env = env_for(&bg.em, dir.path());

    // token: the access token on stdout, its expiry on stderr.
    let out = run(dir.path(), &env, &["token"]);
    assert!(out.status.success(), "{}", stderr(&out));
    let token = stdout(&out).trim().to_owned();
    assert!(token.len() >= 32, "{token}");
    assert!(stderr(&out).contains("expires in"), "{}", stderr(&out));
    assert_eq!(
        run_ok(dir.path(), &env, &["token"]).trim(),
        token,
        "kept in the database"
    );
    assert_eq!(bg.em.token_requests(), 1);
    let refreshed = run_ok(dir.path(), &env, &["token", "--refresh"])
        .trim()
        .to_owned();
    assert_ne!(refreshed, token);
    let last = bg.em.calls_to("/cgi-bin/stable_token").pop().unwrap();
    assert_eq!(last.body.unwrap()["force_refresh"], true);
    assert_eq!(run_ok(dir.path(), &env, &["token"]).trim(), refreshed);
    assert_eq!(
        run_ok(dir.path(), &env, &["token", "--callback"]).trim(),
        common::TOKEN
    );

    // menu set | get | delete.
    let menu = json!({"button": [
        {"type": "click", "name": "Today", "key": "TODAY"},
        {"name": "More", "sub_button": [{"type": "view", "name": "Site", "url": "https://example.com/"}]}
    ]});
    std::fs::write(dir.path().join("menu.json"), menu.to_string()).unwrap();
    let out = run_ok(dir.path(), &env, &["menu", "set", "menu.json"]);
    assert!(out.contains("menu set: 2 buttons"), "{out}");
    let got: Value = serde_json::from_str(&run_ok(dir.path(), &env, &["menu", "get"])).unwrap();
    assert_eq!(got, menu, "get prints what set takes");
    run_ok(dir.path(), &env, &["menu", "delete"]);
    let out = run(dir.path(), &env, &["menu", "get"]);
    assert_eq!(out.status.code(), Some(3), "no menu");
    assert!(stderr(&out).contains("no menu"));
    // A malformed menu is refused before any call, naming the button.
    std::fs::write(
        dir.path().join("bad.json"),
        r#"{"button":[{"type":"view","name":"Site"}]}"#,
    )
    .unwrap();
    let calls = bg.em.calls_to("/cgi-bin/menu/create").len();
    let out = run(dir.path(), &env, &["menu", "set", "bad.json"]);
    assert!(!out.status.success());
    assert!(
        stderr(&out).contains("button[0] \"Site\": a view button needs a url"),
        "{}",
        stderr(&out)
    );
    assert_eq!(bg.em.calls_to("/cgi-bin/menu/create").len(), calls);

    // qrcode: temporary numeric, permanent string.
    let out = run_ok(dir.path(), &env, &["qrcode", "--scene", "42"]);
    let ticket = out
        .lines()
        .find_map(|l| l.strip_prefix("ticket: "))
        .expect("ticket line")
        .to_owned();
    let image = out
        .lines()
        .find_map(|l| l.strip_prefix("image: "))
        .expect("image line")
        .to_owned();
    assert!(image.starts_with(&format!("{}/cgi-bin/showqrcode?ticket=", bg.em.base)));
    assert!(out.contains("expires in: 1800 s"), "{out}");
    let body = bg
        .em
        .calls_to("/cgi-bin/qrcode/create")
        .pop()
        .unwrap()
        .body
        .unwrap();
    assert_eq!(body["action_name"], "QR_SCENE");
    assert_eq!(body["action_info"]["scene"]["scene_id"], 42);
    let png = bg
        .runtime
        .block_on(async { reqwest::get(&image).await.unwrap().bytes().await.unwrap() });
    assert!(png.starts_with(b"\x89PNG"), "the image URL serves the code");
    assert!(!ticket.is_empty());
    let out = run_ok(
        dir.path(),
        &env,
        &["qrcode", "--scene", "shop", "--permanent", "--json"],
    );
    let code: Value = serde_json::from_str(&out).unwrap();
    assert!(code["ticket"].as_str().is_some_and(|t| !t.is_empty()));
    assert!(code["image_url"].as_str().unwrap().contains("showqrcode"));
    let body = bg
        .em
        .calls_to("/cgi-bin/qrcode/create")
        .pop()
        .unwrap()
        .body
        .unwrap();
    assert_eq!(
        body,
        json!({"action_name": "QR_LIMIT_STR_SCENE", "action_info": {"scene": {"scene_str": "shop"}}})
    );
    let out = run(
        dir.path(),
        &env,
        &["qrcode", "--scene", "1", "--expire-seconds", "9999999"],
    );
    assert!(!out.status.success());
    assert!(stderr(&out).contains("30 days"), "{}", stderr(&out));

    // user.
    let user: Value = serde_json::from_str(&run_ok(dir.path(), &env, &["user", USER])).unwrap();
    assert_eq!(user["openid"], USER);
    assert_eq!(user["subscribe"], 1);
    let out = run(dir.path(), &env, &["user", "o_stranger"]);
    assert!(!out.status.success());
    assert!(
        stderr(&out).contains("40003") && stderr(&out).contains("no such user"),
        "{}",
        stderr(&out)
    );

    // Without credentials: a clear error, no call.
    let calls = bg.em.emu.calls().len();
    let bare: Vec<(&'static str, String)> = env
        .iter()
        .filter(|(k, _)| *k != "HUIXIN_WECHAT_APP_SECRET")
        .cloned()
        .collect();
    let out = run(dir.path(), &bare, &["token"]);
    assert!(!out.status.success());
    assert!(
        stderr(&out).contains("app_id and app_secret"),
        "{}",
        stderr(&out)
    );
    assert_eq!(bg.em.emu.calls().len(), calls);
    // No secret or token in any output.
    assert!(!stderr(&out).contains(API_SECRET));
}

#[test]
fn emulator_serve_and_simulate_work_together() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::create_dir(dir.path().join("rules")).unwrap();
    std::fs::write(
        dir.path().join("rules/ops.rhai"),
        r#"rule(#{ content: "deploy status" }, |msg| {
            send_template(msg.from, "huixin_template_1", #{ title: "All green" });
            "sent you the status"
        });"#,
    )
    .unwrap();
    let base_env = [
        ("HUIXIN_WECHAT_APP_ID", "wx_dev".to_owned()),
        ("HUIXIN_WECHAT_APP_SECRET", "dev_secret".to_owned()),
        ("HUIXIN_WECHAT_TOKEN", common::TOKEN.to_owned()),
        ("RUST_LOG", "warn".to_owned()),
    ];

    let mut env = base_env.to_vec();
    env.push(("HUIXIN_EMULATOR_LISTEN", "127.0.0.1:0".to_owned()));
    env.push(("HUIXIN_SERVER_LISTEN", "127.0.0.1:0".to_owned()));
    let mut emulator = spawn(dir.path(), &env, &["emulator"]);
    let line = emulator.wait_for("emulator: http://");
    let base = line
        .split_whitespace()
        .find(|w| w.starts_with("http://"))
        .unwrap()
        .to_owned();

    let mut env = base_env.to_vec();
    env.push(("HUIXIN_WECHAT_API_BASE", base.clone()));
    env.push(("HUIXIN_SERVER_LISTEN", "127.0.0.1:0".to_owned()));
    let mut server = spawn(dir.path(), &env, &["serve"]);
    let url = server.url();

    let out = run_ok(
        dir.path(),
        &env,
        &["simulate", "--url", &url, "text", "deploy status"],
    );
    assert!(out.contains("sent you the status"), "{out}");

    let runtime = tokio::runtime::Runtime::new().unwrap();
    let inbox = runtime.block_on(async {
        let user = format!("{base}/emulator/users/{}", huixin::emulator::DEFAULT_OPENID);
        for _ in 0..500 {
            let v: Value = reqwest::get(&user).await.unwrap().json().await.unwrap();
            if v["inbox"].as_array().is_some_and(|a| !a.is_empty()) {
                return v["inbox"].clone();
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        panic!("nothing arrived at the emulator");
    });
    assert_eq!(inbox[0]["kind"], "template");
    assert_eq!(inbox[0]["body"]["data"]["title"]["value"], "All green");
    assert!(server.terminate());
    assert!(emulator.terminate());
}
