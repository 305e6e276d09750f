//! Group commit through the real binary against an in-process emulator: many pushes accepted
//! at once are all committed and each delivered exactly once; a push the database refuses
//! fails alone, not the pushes committed with it; a key remembered by the server stops
//! working as soon as another process revokes it.

use crate::common;

use std::collections::{HashMap, HashSet};
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use common::emu::{API_APP_ID, API_SECRET, RunningEmulator, TEMPLATE, emulator_settings};
use common::process::{HUIXIN, Running, huixin, stderr, stdout};
use serde_json::{Value, json};

const TEMPLATE_PATH: &str = "/cgi-bin/message/template/send";
const FOLLOWERS: usize = 20;

fn follower(i: usize) -> String {
    format!("o_group_{i:02}")
}

struct Setup {
    em: RunningEmulator,
    runtime: tokio::runtime::Runtime,
    dir: tempfile::TempDir,
    port: u16,
    http: reqwest::Client,
}

fn setup() -> Setup {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let dir = tempfile::tempdir().unwrap();
    let followers: Vec<String> = (0..FOLLOWERS).map(follower).collect();
    let followers: Vec<&str> = followers.iter().map(String::as_str).collect();
    let em = runtime.block_on(async {
        let (listener, _) = common::emu::reserve().await;
        common::emu::serve_on(listener, emulator_settings(&followers))
    });
    let config = format!(
        "[server]\nlisten = \"127.0.0.1:{port}\"\n\
         [wechat]\ntoken = \"{token}\"\napp_id = \"{API_APP_ID}\"\napp_secret = \"{API_SECRET}\"\n\
         api_base = \"{base}\"\n\
         [storage]\nurl = \"{db}\"\n\
         [push]\ntemplate_id = \"{TEMPLATE}\"\nrate_per_second = 0\nrate_limit_per_minute = 0\n",
        token = common::TOKEN,
        base = em.base,
        db = common::emu::sqlite_url(dir.path()),
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
    fn api(&self) -> String {
        format!("http://127.0.0.1:{}/api/v1/push", self.port)
    }

    fn serve(&self) -> Running {
        let mut server = Running::spawn(Path::new(HUIXIN), self.dir.path(), &["serve"], &[]);
        server.wait_for("listening on");
        server
    }

    fn run(&self, args: &[&str]) -> String {
        let out = huixin(self.dir.path(), args, &[("RUST_LOG", "warn")]);
        assert!(
            out.status.success(),
            "huixin {args:?} failed: {}{}",
            stdout(&out),
            stderr(&out)
        );
        stdout(&out).trim().to_owned()
    }

    /// A topic `all` with every follower, and an admin key.
    fn topic_and_admin_key(&self) -> String {
        self.run(&["topics", "add", "all"]);
        for i in 0..FOLLOWERS {
            self.run(&["topics", "join", "all", &follower(i)]);
        }
        self.run(&["keys", "create", "--admin"])
    }

    fn post(&self, key: &str, body: Value) -> (u16, Value) {
        self.runtime
            .block_on(post(self.http.clone(), self.api(), key.to_owned(), body))
    }

    fn status(&self, key: &str, id: &str) -> Value {
        self.runtime.block_on(async {
            let response = self
                .http
                .get(format!("{}/{id}", self.api()))
                .bearer_auth(key)
                .send()
                .await
                .unwrap();
            assert_eq!(response.status(), 200);
            response.json().await.unwrap()
        })
    }

    /// Sends `pushes` from 16 tasks at once (each task its share, one after another); the
    /// answers in the order of `pushes`.
    fn post_concurrently(&self, key: &str, pushes: Vec<Value>) -> Vec<(u16, Value)> {
        let pushes = Arc::new(pushes);
        self.runtime.block_on(async {
            let mut tasks = tokio::task::JoinSet::new();
            for lane in 0..16 {
                let (http, api, key, pushes) = (
                    self.http.clone(),
                    self.api(),
                    key.to_owned(),
                    Arc::clone(&pushes),
                );
                tasks.spawn(async move {
                    let mut answers = Vec::new();
                    for i in (lane..pushes.len()).step_by(16) {
                        let answer =
                            post(http.clone(), api.clone(), key.clone(), pushes[i].clone()).await;
                        answers.push((i, answer));
                    }
                    answers
                });
            }
            let mut answers: Vec<(usize, (u16, Value))> = Vec::new();
            while let Some(done) = tasks.join_next().await {
                answers.extend(done.unwrap());
            }
            answers.sort_by_key(|(i, _)| *i);
            answers.into_iter().map(|(_, a)| a).collect()
        })
    }

    /// Waits until WeChat was asked for `expected` template messages; every `client_msg_id`
    /// asked for, with how many times.
    fn template_sends(&self, expected: usize) -> HashMap<String, usize> {
        for _ in 0..600 {
            if self.em.calls_to(TEMPLATE_PATH).len() >= expected {
                break;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        // A moment more: a second send of anything would show now.
        std::thread::sleep(Duration::from_millis(300));
        let mut sends = HashMap::new();
        for call in self.em.calls_to(TEMPLATE_PATH) {
            let id = call.body.as_ref().unwrap()["client_msg_id"]
                .as_str()
                .unwrap()
                .to_owned();
            *sends.entry(id).or_insert(0) += 1;
        }
        sends
    }

    /// Asserts push `id` reached each of its `recipients` once and is no longer pending.
    fn assert_delivered_once(&self, key: &str, id: &str, recipients: usize) {
        let status = self.status(key, id);
        assert_eq!(status["counts"]["pending"], 0, "{status}");
        assert_eq!(status["counts"]["failed"], 0, "{status}");
        let rows = status["recipients"].as_array().unwrap();
        assert_eq!(rows.len(), recipients, "{status}");
        for row in rows {
            assert_eq!(row["attempts"], 1, "{status}");
            let openid = row["openid"].as_str().unwrap();
            let got: Vec<Value> = self
                .em
                .received(openid, "template")
                .into_iter()
                .filter(|m| m["url"].as_str().is_some_and(|u| u.ends_with(id)))
                .collect();
            assert_eq!(got.len(), 1, "{openid} got push {id} {} times", got.len());
        }
    }
}

async fn post(http: reqwest::Client, api: String, key: String, body: Value) -> (u16, Value) {
    let response = http
        .post(api)
        .bearer_auth(key)
        .json(&body)
        .send()
        .await
        .unwrap();
    let status = response.status().as_u16();
    (status, response.json().await.unwrap_or(Value::Null))
}

#[test]
fn many_pushes_at_once_are_all_committed_and_each_delivered_once() {
    let s = setup();
    let key = s.topic_and_admin_key();
    let _server = s.serve();

    // 200 pushes from 16 clients at once: 196 to one follower each, 4 to the whole topic,
    // mixed in the same groups.
    let pushes: Vec<Value> = (0..200)
        .map(|i| {
            if i % 50 == 7 {
                json!({ "topic": "all", "title": format!("Topic push {i}") })
            } else {
                json!({ "to": follower(i % FOLLOWERS), "title": format!("Push {i}"), "body": "**ok**" })
            }
        })
        .collect();
    let answers = s.post_concurrently(&key, pushes.clone());
    let mut expected_sends = 0;
    let mut ids = Vec::new();
    for (push, (code, answer)) in pushes.iter().zip(&answers) {
        assert_eq!(*code, 200, "{push} -> {answer}");
        let recipients = if push["topic"].is_string() {
            FOLLOWERS
        } else {
            1
        };
        assert_eq!(answer["recipients"], recipients, "{push} -> {answer}");
        expected_sends += recipients;
        ids.push((answer["id"].as_str().unwrap().to_owned(), recipients));
    }
    let distinct: HashSet<&str> = ids.iter().map(|(id, _)| id.as_str()).collect();
    assert_eq!(distinct.len(), 200, "every push has its own id");

    // Every push is on record, in the history too.
    let (code, history) = s.runtime.block_on(async {
        let r = s
            .http
            .get(format!("{}?limit=1000", s.api()))
            .bearer_auth(&key)
            .send()
            .await
            .unwrap();
        (r.status().as_u16(), r.json::<Value>().await.unwrap())
    });
    assert_eq!(code, 200);
    let listed: HashSet<&str> = history["pushes"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| p["id"].as_str().unwrap())
        .collect();
    assert_eq!(listed, distinct);

    // Each recipient is sent each push once: one send per client_msg_id, and no more sends
    // than recipients.
    let sends = s.template_sends(expected_sends);
    assert_eq!(
        sends.len(),
        expected_sends,
        "one client_msg_id per recipient"
    );
    assert!(
        sends.values().all(|&n| n == 1),
        "nothing sent twice: {sends:?}"
    );
    for (id, recipients) in &ids {
        s.assert_delivered_once(&key, id, *recipients);
    }
}

#[test]
fn a_push_the_database_refuses_fails_alone_not_its_group() {
    let s = setup();
    let key = s.topic_and_admin_key();
    // The database itself refuses pushes titled "poison" (the file is made by the commands
    // above): a stand-in for any push one transaction cannot store.
    let db = common::emu::sqlite_url(s.dir.path());
    s.runtime.block_on(async {
        let pool = sqlx::SqlitePool::connect(&db).await.unwrap();
        sqlx::query(
            "CREATE TRIGGER refuse_poison BEFORE INSERT ON pushes WHEN NEW.title = 'poison' \
             BEGIN SELECT RAISE(ABORT, 'poisoned push'); END",
        )
        .execute(&pool)
        .await
        .unwrap();
        pool.close().await;
    });
    let _server = s.serve();

    // Bursts of 32 pushes at once (committed in groups), one poisoned in each.
    let mut accepted = Vec::new();
    let mut expected_sends = 0;
    for burst in 0..5 {
        let pushes: Vec<Value> = (0..32)
            .map(|i| {
                let title = if i == 13 {
                    "poison".to_owned()
                } else {
                    format!("Push {burst}.{i}")
                };
                if i == 20 {
                    json!({ "topic": "all", "title": title })
                } else {
                    json!({ "to": follower(i % FOLLOWERS), "title": title })
                }
            })
            .collect();
        for (push, (code, answer)) in pushes.iter().zip(s.post_concurrently(&key, pushes.clone())) {
            if push["title"] == "poison" {
                assert_eq!(code, 500, "{answer}");
                assert!(
                    answer["error"].as_str().unwrap().contains("storage error"),
                    "{answer}"
                );
                continue;
            }
            assert_eq!(code, 200, "{push} -> {answer}");
            let recipients = if push["topic"].is_string() {
                FOLLOWERS
            } else {
                1
            };
            assert_eq!(answer["recipients"], recipients, "{answer}");
            expected_sends += recipients;
            accepted.push((answer["id"].as_str().unwrap().to_owned(), recipients));
        }
    }
    assert_eq!(accepted.len(), 5 * 31);
    let sends = s.template_sends(expected_sends);
    assert_eq!(sends.len(), expected_sends);
    assert!(sends.values().all(|&n| n == 1), "{sends:?}");
    for (id, recipients) in &accepted {
        s.assert_delivered_once(&key, id, *recipients);
    }
}

#[test]
fn a_remembered_key_stops_working_once_another_process_revokes_it() {
    let s = setup();
    let admin = s.topic_and_admin_key();
    let user_key = s.run(&["keys", "create", "--user", &follower(1)]);
    let _server = s.serve();

    // Used once: the server now knows the key.
    let (code, answer) = s.post(&user_key, json!({ "title": "first" }));
    assert_eq!(code, 200, "{answer}");

    // Revoked by another process: the next push is refused, and nothing is stored.
    s.run(&["keys", "revoke", &user_key]);
    let (code, answer) = s.post(&user_key, json!({ "title": "second" }));
    assert_eq!(code, 401, "{answer}");
    // A push refused for another reason says the key is revoked, as it did before keys
    // were remembered.
    let (code, answer) = s.post(&user_key, json!({ "to": follower(2), "title": "x" }));
    assert_eq!(code, 401, "{answer}");
    let (code, answer) = s.post(&user_key, json!({ "body": "" }));
    assert_eq!(code, 401, "{answer}");
    let history = s.runtime.block_on(async {
        let r = s
            .http
            .get(s.api())
            .bearer_auth(&admin)
            .send()
            .await
            .unwrap();
        r.json::<Value>().await.unwrap()
    });
    let titles: Vec<&str> = history["pushes"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| p["title"].as_str().unwrap())
        .collect();
    assert_eq!(titles, ["first"]);

    // A topic's key, remembered, then deleted with its topic and made again (the same
    // secret) for one follower: it pushes to that follower only, never to the old topic.
    let secret = "TopicKeyMadeAgain0123456789";
    s.run(&["topics", "add", "ops"]);
    s.run(&["topics", "join", "ops", &follower(3)]);
    s.run(&["topics", "join", "ops", &follower(4)]);
    s.run(&["keys", "create", "--topic", "ops", "--key", secret]);
    let (code, answer) = s.post(secret, json!({ "title": "to ops" }));
    assert_eq!(code, 200, "{answer}");
    assert_eq!(answer["recipients"], 2);
    s.run(&["topics", "remove", "ops"]);
    s.run(&["keys", "create", "--user", &follower(5), "--key", secret]);
    let (code, answer) = s.post(secret, json!({ "title": "to one follower" }));
    assert_eq!(code, 401, "the key as the server knew it is gone: {answer}");
    let (code, answer) = s.post(secret, json!({ "title": "to one follower" }));
    assert_eq!(code, 200, "looked up afresh: {answer}");
    assert_eq!(answer["recipients"], 1);
    let status = s.status(&admin, answer["id"].as_str().unwrap());
    assert_eq!(status["target"], format!("user:{}", follower(5)));
}
