//! Several `huixin serve` processes on one PostgreSQL database behave as one: WeChat, push
//! clients and followers cannot tell how many there are. Each test starts three real
//! processes on a fresh database (`tests/it/common/pg.rs`: skipped with a message when no
//! PostgreSQL server is configured, failing under `HUIXIN_REQUIRE_POSTGRES`), with the
//! emulator as WeChat's API.

use std::collections::HashMap;
use std::path::Path;
use std::time::{Duration, Instant};

use huixin::emulator::BotTarget;
use huixin::simulator::Simulator;
use huixin::wechat::Mode;
use serde_json::{Value, json};

use crate::common;

use common::emu::{API_APP_ID, API_SECRET, RunningEmulator, TEMPLATE, emulator_settings};
use common::pg::TestDb;
use common::process::{HUIXIN, Running, huixin, stderr, stdout};

/// Three processes on one database, an emulator, and the means to talk to each.
struct Cluster {
    em: RunningEmulator,
    runtime: tokio::runtime::Runtime,
    db: TestDb,
    dir: tempfile::TempDir,
    ports: Vec<u16>,
    servers: Vec<Option<Running>>,
    http: reqwest::Client,
}

/// A cluster of `n` processes (not started), `followers` following on the emulator, whose
/// bot (for template job reports) is process `n - 1`; `sections` is appended to the config.
fn cluster(
    test: &str,
    n: usize,
    followers: &[&str],
    sections: &str,
    latency: Duration,
) -> Option<Cluster> {
    let db = common::pg::database_blocking(test)?;
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    let ports: Vec<u16> = (0..n).map(|_| common::free_port()).collect();
    let dir = tempfile::tempdir().unwrap();
    let mut settings = emulator_settings(followers);
    settings.latency = latency;
    settings.bot = Some(BotTarget {
        callback_url: format!("http://127.0.0.1:{}/wechat", ports[n - 1]),
        token: common::TOKEN.into(),
        mode: Mode::Plain,
        encoding_aes_key: String::new(),
        app_id: API_APP_ID.into(),
        account_id: "gh_scale_test".into(),
    });
    let em = runtime.block_on(async {
        let (listener, _) = common::emu::reserve().await;
        common::emu::serve_on(listener, settings)
    });
    let config = format!(
        "[wechat]\ntoken = \"{token}\"\napp_id = \"{API_APP_ID}\"\napp_secret = \"{API_SECRET}\"\n\
         api_base = \"{base}\"\n\
         [storage]\nurl = \"{db}\"\n\
         [push]\ntemplate_id = \"{TEMPLATE}\"\nretry_backoff_ms = 100\nlease_secs = 5\n\
         rate_per_second = 0\n{sections}\n",
        token = common::TOKEN,
        base = em.base,
        db = db.url(),
    );
    std::fs::write(dir.path().join("huixin.toml"), config).unwrap();
    Some(Cluster {
        em,
        runtime,
        db,
        dir,
        servers: (0..n).map(|_| None).collect(),
        ports,
        http: reqwest::Client::new(),
    })
}

impl Cluster {
    fn dir(&self) -> &Path {
        self.dir.path()
    }

    /// Starts process `i` and waits until it serves.
    fn start(&mut self, i: usize) {
        let listen = format!("127.0.0.1:{}", self.ports[i]);
        let mut server = Running::spawn(
            Path::new(HUIXIN),
            self.dir.path(),
            &["serve"],
            &[("HUIXIN_SERVER_LISTEN", &listen)],
        );
        server.wait_for("listening on");
        self.servers[i] = Some(server);
    }

    fn start_all(&mut self) {
        for i in 0..self.ports.len() {
            self.start(i);
        }
    }

    /// Kills process `i` with SIGKILL: no shutdown at all.
    fn kill(&mut self, i: usize) {
        drop(self.servers[i].take());
    }

    fn base(&self, i: usize) -> String {
        format!("http://127.0.0.1:{}", self.ports[i])
    }

    /// Runs a `huixin` command against the same config and database.
    fn run(&self, args: &[&str]) -> String {
        let out = huixin(self.dir(), args, &[("RUST_LOG", "warn")]);
        assert!(
            out.status.success(),
            "huixin {args:?} failed: {}{}",
            stdout(&out),
            stderr(&out)
        );
        stdout(&out).trim().to_owned()
    }

    /// POSTs JSON to process `i`; the status and the JSON answer.
    fn post(&self, i: usize, path: &str, key: &str, body: Value) -> (u16, Value) {
        self.runtime.block_on(async {
            let response = self
                .http
                .post(format!("{}{path}", self.base(i)))
                .bearer_auth(key)
                .json(&body)
                .send()
                .await
                .unwrap();
            let status = response.status().as_u16();
            (status, response.json().await.unwrap_or(Value::Null))
        })
    }

    /// A push's status as process `i` reports it.
    fn status(&self, i: usize, key: &str, id: &str) -> Value {
        self.runtime.block_on(async {
            let response = self
                .http
                .get(format!("{}/api/v1/push/{id}", self.base(i)))
                .bearer_auth(key)
                .send()
                .await
                .unwrap();
            assert_eq!(response.status().as_u16(), 200);
            response.json().await.unwrap()
        })
    }

    /// Waits until no recipient of push `id` waits for a send, nor failed.
    fn settle(&self, i: usize, key: &str, id: &str) -> Value {
        for _ in 0..600 {
            let status = self.status(i, key, id);
            if status["counts"]["pending"] == 0 && status["counts"]["failed"] == 0 {
                return status;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        panic!("push {id} did not settle: {}", self.status(i, key, id));
    }

    /// Pushes to topic `topic` through process `i`; the push's id.
    fn push_topic(&self, i: usize, key: &str, topic: &str, title: &str) -> String {
        let (code, accepted) = self.post(
            i,
            "/api/v1/push",
            key,
            json!({ "topic": topic, "title": title }),
        );
        assert_eq!(code, 200, "{accepted}");
        accepted["id"].as_str().unwrap().to_owned()
    }

    fn simulator(&self, i: usize) -> Simulator {
        Simulator::new(
            &format!("{}/wechat", self.base(i)),
            common::TOKEN,
            Mode::Plain,
            None,
        )
        .unwrap()
    }

    /// Sends `text` from `user` to process `i` as WeChat would; the status and the raw body.
    fn say(&self, i: usize, user: &str, text: &str) -> (u16, String) {
        let xml = text_xml(user, text, next_msg_id());
        let exchange = self
            .runtime
            .block_on(self.simulator(i).send(&xml, user))
            .unwrap();
        (exchange.status, exchange.body)
    }

    /// The text values a query on the cluster's database returns.
    fn sql_strings(&self, sql: &str) -> Vec<String> {
        let url = self.db.url().to_owned();
        let sql = sql.to_owned();
        self.runtime.block_on(async move {
            use sqlx::Connection;
            let mut conn = sqlx::PgConnection::connect(&url).await.unwrap();
            sqlx::query_scalar::<_, String>(sqlx::AssertSqlSafe(sql))
                .fetch_all(&mut conn)
                .await
                .unwrap()
        })
    }

    /// Runs a query on the cluster's database.
    fn sql_count(&self, sql: &str) -> i64 {
        let url = self.db.url().to_owned();
        let sql = sql.to_owned();
        self.runtime.block_on(async move {
            use sqlx::Connection;
            let mut conn = sqlx::PgConnection::connect(&url).await.unwrap();
            sqlx::query_scalar::<_, i64>(sqlx::AssertSqlSafe(sql))
                .fetch_one(&mut conn)
                .await
                .unwrap()
        })
    }
}

fn next_msg_id() -> u64 {
    use std::sync::atomic::{AtomicU64, Ordering};
    static NEXT: AtomicU64 = AtomicU64::new(0);
    let base = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_micros() as u64;
    base * 16 + NEXT.fetch_add(1, Ordering::Relaxed) % 16
}

fn text_xml(from: &str, content: &str, msg_id: u64) -> String {
    let now = huixin::support::clock::unix_now();
    format!(
        "<xml><ToUserName><![CDATA[gh_scale_test]]></ToUserName>\
         <FromUserName><![CDATA[{from}]]></FromUserName><CreateTime>{now}</CreateTime>\
         <MsgType><![CDATA[text]]></MsgType><Content><![CDATA[{content}]]></Content>\
         <MsgId>{msg_id}</MsgId></xml>"
    )
}

/// The text of a passive reply's `Content`, or the body as it is.
fn content(body: &str) -> String {
    match (body.find("<Content><![CDATA["), body.find("]]></Content>")) {
        (Some(start), Some(end)) => body[start + 18..end].to_owned(),
        _ => body.to_owned(),
    }
}

fn members(n: usize, prefix: &str) -> Vec<String> {
    (0..n).map(|i| format!("o_{prefix}_{i:03}")).collect()
}

/// Makes topic `name` with `members` in it, through the CLI on the shared database.
fn topic_with(c: &Cluster, name: &str, members: &[String]) {
    c.run(&["topics", "add", name]);
    for m in members {
        c.run(&["topics", "join", name, m]);
    }
}

/// Three running processes whose `people` follow and are in topic `all`, and an admin key.
fn pushing_cluster(
    test: &str,
    people: &[String],
    push: &str,
    latency: Duration,
) -> Option<(Cluster, String)> {
    let refs: Vec<&str> = people.iter().map(String::as_str).collect();
    let mut c = cluster(test, 3, &refs, push, latency)?;
    topic_with(&c, "all", people);
    let key = c.run(&["keys", "create", "--admin", "--label", "test"]);
    c.start_all();
    Some((c, key))
}

#[test]
fn three_processes_fetch_one_access_token_and_one_more_when_wechat_refuses_it() {
    let people = members(12, "tok");
    let Some((c, key)) = pushing_cluster(
        "three_processes_fetch_one_access_token",
        &people,
        "",
        Duration::from_millis(20),
    ) else {
        return;
    };

    // Each process accepts a push at once; all three deliver, and need the token together.
    let ids: Vec<String> = (0..3)
        .map(|i| c.push_topic(i, &key, "all", &format!("round one, {i}")))
        .collect();
    for id in &ids {
        c.settle(0, &key, id);
    }
    assert_eq!(
        c.em.token_requests(),
        1,
        "one token fetch among three processes"
    );

    // WeChat refuses the token mid-traffic (40001 on the next calls): one process refreshes,
    // the others use its token.
    c.em.emu.expire_tokens();
    let ids: Vec<String> = (0..3)
        .map(|i| c.push_topic(i, &key, "all", &format!("round two, {i}")))
        .collect();
    for id in &ids {
        c.settle(1, &key, id);
    }
    assert_eq!(
        c.em.token_requests(),
        2,
        "one more fetch after the refusal, not one per process"
    );
    for p in &people {
        assert_eq!(
            c.em.received(p, "template").len(),
            6,
            "{p} got each of the six pushes once"
        );
    }
}

#[test]
fn a_push_is_shared_out_and_a_process_killed_mid_delivery_loses_nothing_and_sends_nothing_twice() {
    // Enough work, slow enough, that the three processes are all claiming before it is done,
    // however busy the machine (a process starting its worker late must still find some).
    let people = members(240, "kill");
    let Some((mut c, key)) = pushing_cluster(
        "a_process_killed_mid_delivery",
        &people,
        "concurrency = 2\n",
        Duration::from_millis(60),
    ) else {
        return;
    };
    let id = c.push_topic(0, &key, "all", "shared out");

    // Three processes claim from the same recipients; let part of it go out, then kill one.
    let delivered = |c: &Cluster| {
        people
            .iter()
            .filter(|p| !c.em.received(p, "template").is_empty())
            .count()
    };
    // Every process holds claims of its own meanwhile (the recipients it is sending to).
    let mut owners = std::collections::HashSet::new();
    let until = Instant::now() + Duration::from_secs(20);
    while (delivered(&c) < 15 || owners.len() < 3) && Instant::now() < until {
        owners.extend(c.sql_strings(
            "SELECT DISTINCT lease_owner FROM push_recipients WHERE state = 'sending'",
        ));
        std::thread::sleep(Duration::from_millis(5));
    }
    assert_eq!(owners.len(), 3, "all three processes delivered: {owners:?}");
    c.kill(0);
    let before = delivered(&c);
    assert!(
        before < people.len(),
        "the kill came mid-delivery ({before})"
    );

    // The others take over its claims once their lease runs out.
    let status = c.settle(2, &key, &id);
    assert_eq!(status["counts"]["failed"], 0, "{status}");
    for p in &people {
        assert_eq!(
            c.em.received(p, "template").len(),
            1,
            "{p} got the push exactly once"
        );
    }
    // Sends WeChat refused as repeats (45065: the same client_msg_id) are the killed
    // process's claims taken over after it sent them; none reached a follower twice.
    let repeats =
        c.em.calls_to("/cgi-bin/message/template/send")
            .iter()
            .filter(|call| call.errcode == 45065)
            .count();
    assert!(
        repeats <= 2,
        "at most the killed process's sends in flight: {repeats}"
    );
}

/// A rule that takes `ms` milliseconds, then answers with a number drawn for that run.
fn slow_rules(dir: &Path, ms: u64) {
    let rules = dir.join("rules");
    std::fs::create_dir_all(&rules).unwrap();
    std::fs::write(
        rules.join("10-slow.rhai"),
        format!(
            "rule(#{{ content: \"slow\" }}, |msg| {{\n\
               let start = now_ms();\n\
               while now_ms() - start < {ms} {{}}\n\
               text(`slow ${{random_float()}}`)\n\
             }});\n\
             rule(#{{ type: \"text\" }}, |msg| text(`quick ${{random_float()}}`));\n"
        ),
    )
    .unwrap();
}

#[test]
fn a_retry_reaching_another_process_gets_the_first_reply_and_the_rules_run_once() {
    let Some(mut c) = cluster(
        "a_retry_reaching_another_process",
        3,
        &[],
        "[rules]\ndir = \"rules\"\nmax_run_ms = 5000\nmax_operations = 1000000000\n",
        Duration::ZERO,
    ) else {
        return;
    };
    slow_rules(c.dir(), 3_000);
    c.start_all();

    // The first attempt is still running on process 0 when WeChat's retry reaches process 1.
    let user = "o_retry_user";
    let xml = text_xml(user, "slow", next_msg_id());
    let prepared = c.simulator(0).prepare(&xml, user);
    let first = {
        let sim = c.simulator(0);
        let prepared = prepared.clone();
        c.runtime
            .spawn(async move { sim.send_prepared(&prepared).await.unwrap() })
    };
    std::thread::sleep(Duration::from_millis(2_000));
    let mut retry = prepared.clone();
    retry.url = retry.url.replace(&c.base(0), &c.base(1));
    let on_other = c
        .runtime
        .block_on(c.simulator(1).send_prepared(&retry))
        .unwrap();
    let first = c.runtime.block_on(first).unwrap();
    assert_eq!(first.status, 200);
    assert!(content(&first.body).starts_with("slow "), "{}", first.body);
    assert_eq!(
        on_other.body, first.body,
        "the retry on another process got the first reply, byte for byte"
    );

    // Once answered, a later retry on the third process gets the same bytes again.
    let mut late = prepared.clone();
    late.url = late.url.replace(&c.base(0), &c.base(2));
    let third = c
        .runtime
        .block_on(c.simulator(2).send_prepared(&late))
        .unwrap();
    assert_eq!(third.body, first.body);

    // The rules ran once: one answered row in the log, the others retries.
    std::thread::sleep(Duration::from_millis(500));
    let answered = c.sql_count(&format!(
        "SELECT COUNT(*) FROM inbound_log WHERE openid = '{user}' AND outcome = 'answered'"
    ));
    let retries = c.sql_count(&format!(
        "SELECT COUNT(*) FROM inbound_log WHERE openid = '{user}' AND outcome = 'retry'"
    ));
    assert_eq!((answered, retries), (1, 2));
}

#[test]
fn a_session_written_on_one_process_is_read_on_the_next_message_by_another() {
    let Some(mut c) = cluster("a_session_across_processes", 3, &[], "", Duration::ZERO) else {
        return;
    };
    c.start_all();
    // Each process reports the shared database healthy.
    for i in 0..3 {
        let status = c.runtime.block_on(async {
            c.http
                .get(format!("{}/healthz", c.base(i)))
                .send()
                .await
                .unwrap()
                .status()
                .as_u16()
        });
        assert_eq!(status, 200, "process {i}");
    }
    const ASKED: &str = "Please send your feedback";
    const THANKED: &str = "Thank you! Your feedback is recorded.";
    for round in 0..6 {
        let user = format!("o_session_{round}");
        let (ask, answer) = (round % 3, (round + 1) % 3);
        let (_, body) = c.say(ask, &user, "feedback");
        assert!(content(&body).contains(ASKED), "round {round}: {body}");
        let (_, body) = c.say(answer, &user, &format!("note {round}"));
        assert!(
            content(&body).contains(THANKED),
            "round {round}: process {answer} read the session process {ask} wrote: {body}"
        );
        // The question is answered: the third process echoes.
        let (_, body) = c.say((round + 2) % 3, &user, "after");
        assert_eq!(content(&body), "after", "round {round}");
    }
}

#[test]
fn the_replay_guard_and_the_per_key_limit_hold_across_processes() {
    let Some(mut c) = cluster(
        "the_replay_guard_and_the_per_key_limit",
        3,
        &["o_limit_user"],
        "rate_limit_per_minute = 4\n",
        Duration::ZERO,
    ) else {
        return;
    };
    let key = c.run(&[
        "keys",
        "create",
        "--user",
        "o_limit_user",
        "--label",
        "limited",
    ]);
    c.start_all();

    // A signed query accepted by one process is refused by another with another body.
    let user = "o_replayed";
    let first = c
        .simulator(0)
        .prepare(text_xml(user, "one", next_msg_id()), user);
    let exchange = c
        .runtime
        .block_on(c.simulator(0).send_prepared(&first))
        .unwrap();
    assert_eq!(exchange.status, 200);
    std::thread::sleep(Duration::from_millis(400));
    for i in 1..3 {
        let mut forged = c.simulator(0).prepare_at(
            text_xml(user, "another body", next_msg_id()),
            user,
            &first.timestamp,
            &first.nonce,
        );
        forged.url = forged.url.replace(&c.base(0), &c.base(i));
        let refused = c
            .runtime
            .block_on(c.simulator(i).send_prepared(&forged))
            .unwrap();
        assert_eq!(refused.status, 403, "process {i}: {}", refused.body);
    }

    // Four pushes a minute for the key, wherever they land: the fifth is refused.
    let mut codes = Vec::new();
    for n in 0..6 {
        let (code, _) = c.post(
            n % 3,
            "/api/v1/push",
            &key,
            json!({ "title": format!("p{n}") }),
        );
        codes.push(code);
    }
    assert_eq!(codes, [200, 200, 200, 200, 429, 429], "{codes:?}");
}

#[test]
fn blocks_rules_and_revoked_keys_reach_every_process_within_a_second() {
    let Some(mut c) = cluster(
        "blocks_rules_and_revoked_keys",
        3,
        &["o_key_user"],
        "[rules]\ndir = \"rules\"\n",
        Duration::ZERO,
    ) else {
        return;
    };
    let rules = c.dir().join("rules");
    std::fs::create_dir_all(&rules).unwrap();
    std::fs::write(
        rules.join("10-block.rhai"),
        "rule(#{ content: \"block me\" }, |msg| { block_user(msg.from, \"asked\"); text(\"blocked\") });\n\
         rule(#{ type: \"text\" }, |msg| text(`v1 ${msg.content}`));\n",
    )
    .unwrap();
    let key = c.run(&[
        "keys",
        "create",
        "--user",
        "o_key_user",
        "--label",
        "revoked",
    ]);
    c.start_all();

    // A user blocked by a rule on process 0 is ignored by the others within a second.
    assert_eq!(content(&c.say(1, "o_blocked", "hi").1), "v1 hi");
    assert_eq!(content(&c.say(0, "o_blocked", "block me").1), "blocked");
    let blocked_at = Instant::now();
    for i in 1..3 {
        loop {
            let (_, body) = c.say(i, "o_blocked", "still there?");
            if body == "success" {
                break;
            }
            assert!(
                blocked_at.elapsed() < Duration::from_secs(1),
                "process {i} still answers the blocked user after {:?}: {body}",
                blocked_at.elapsed()
            );
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    // A rules file changed on disk (the same folder for all three) is live everywhere within
    // a second.
    std::fs::write(
        rules.join("10-block.rhai"),
        "rule(#{ type: \"text\" }, |msg| text(`v2 ${msg.content}`));\n",
    )
    .unwrap();
    let changed_at = Instant::now();
    let mut live: HashMap<usize, Duration> = HashMap::new();
    let mut n = 0;
    while live.len() < 3 {
        for i in 0..3 {
            n += 1;
            let reader = format!("o_reader_{n}");
            if !live.contains_key(&i) && content(&c.say(i, &reader, "x").1) == "v2 x" {
                live.insert(i, changed_at.elapsed());
            }
        }
        assert!(
            changed_at.elapsed() < Duration::from_secs(1),
            "new rules not live everywhere within a second: {live:?}"
        );
    }

    // A key revoked from the CLI stops working on every process at once.
    for i in 0..3 {
        let (code, body) = c.post(i, "/api/v1/push", &key, json!({ "title": "before" }));
        assert_eq!(code, 200, "{body}");
    }
    c.run(&["keys", "revoke", &key[..6]]);
    for i in 0..3 {
        let (code, body) = c.post(i, "/api/v1/push", &key, json!({ "title": "after" }));
        assert_eq!(code, 401, "process {i}: {body}");
    }
}

#[test]
fn behind_nginx_the_three_processes_answer_as_one_and_a_users_limit_holds() {
    let Some(mut c) = cluster(
        "behind_nginx",
        3,
        &["o_nginx_key_user"],
        "rate_limit_per_minute = 6\n[bot]\nrate_limit_per_minute = 3\n",
        Duration::ZERO,
    ) else {
        return;
    };
    let key = c.run(&[
        "keys",
        "create",
        "--user",
        "o_nginx_key_user",
        "--label",
        "lb",
    ]);
    c.start_all();
    let upstreams: Vec<String> = c.ports.iter().map(|p| format!("127.0.0.1:{p}")).collect();
    let Some(lb) = common::nginx::balancer("behind_nginx", &upstreams) else {
        return;
    };
    let sim = Simulator::new(
        &format!("{}/wechat", lb.url()),
        common::TOKEN,
        Mode::Plain,
        None,
    )
    .unwrap();

    // Thirty users, five messages each: nginx keeps each user on one process, whose count of
    // the user's messages is the whole count, so each user gets exactly three answers.
    for u in 0..30 {
        let user = format!("o_nginx_{u:02}");
        let mut answered = 0;
        for n in 0..5 {
            let text = format!("m{n}");
            let exchange = c
                .runtime
                .block_on(sim.send(text_xml(&user, &text, next_msg_id()), &user))
                .unwrap();
            assert_eq!(exchange.status, 200, "{}", exchange.body);
            if content(&exchange.body) == text {
                answered += 1;
            } else {
                assert_eq!(exchange.body, "success", "over the limit: ignored");
            }
        }
        assert_eq!(answered, 3, "{user}: three a minute, whichever process");
    }
    // The conversations spread over all three processes: each logged some of them.
    // (The log does not say which process wrote a row; the processes' dedup records do.)
    std::thread::sleep(Duration::from_millis(300));
    let owners = c.sql_count("SELECT COUNT(DISTINCT owner) FROM dedup");
    assert_eq!(owners, 3, "nginx spread the users over the three processes");

    // The push APIs are balanced round-robin: one key's limit of six a minute holds in all.
    let mut codes = Vec::new();
    for n in 0..8 {
        let code = c.runtime.block_on(async {
            c.http
                .post(format!("{}/api/v1/push", lb.url()))
                .bearer_auth(&key)
                .json(&json!({ "title": format!("through nginx {n}") }))
                .send()
                .await
                .unwrap()
                .status()
                .as_u16()
        });
        codes.push(code);
    }
    assert_eq!(codes, [200, 200, 200, 200, 200, 200, 429, 429], "{codes:?}");
}

#[test]
fn a_followers_webhooks_arrive_once_and_in_order_whichever_process_took_the_message() {
    let Some(mut c) = cluster(
        "webhooks across processes",
        3,
        &[],
        "[apps]\nwebhook_retry_backoff_ms = 100\n",
        Duration::ZERO,
    ) else {
        return;
    };
    let site = c.runtime.block_on(common::receiver::Receiver::start(&[]));
    let common::setup::MadeApp { token, secret } = common::setup::app_credentials(&c.run(&[
        "apps",
        "create",
        "site",
        "--callback",
        &site.url("/hook"),
    ]));
    site.add_secret(&secret);
    // The receiver fails its first two requests: later events wait for the earlier ones.
    site.script(
        "/hook",
        [
            common::receiver::Answer::Status(500),
            common::receiver::Answer::Status(503),
        ],
    );
    c.start_all();
    let (code, offer) = c.post(0, "/api/v1/bindings", &token, json!({ "uid": "u-1" }));
    assert_eq!(code, 201, "{offer}");
    let ticket = offer["qrcode"]["ticket"].as_str().unwrap().to_owned();
    c.runtime.block_on(async {
        c.http
            .post(format!("{}/emulator/scan?from=o_many", c.em.base))
            .json(&json!({ "ticket": ticket }))
            .send()
            .await
            .unwrap();
    });
    for i in 0..30 {
        let (status, _) = c.say(i % 3, "o_many", &format!("m{i:02}"));
        assert_eq!(status, 200);
    }
    let received = site.wait(Duration::from_secs(30), |r| {
        r.iter().filter(|r| r.event == "message").count() >= 30
            && r.iter()
                .filter(|r| r.event == "message")
                .map(|r| r.delivery.clone())
                .collect::<std::collections::HashSet<_>>()
                .len()
                == 30
    });
    assert!(received.iter().all(|r| r.signed));
    // After the two failures, every delivery was answered 200: none may come twice.
    let after: Vec<&str> = received[2..].iter().map(|r| r.delivery.as_str()).collect();
    let unique: std::collections::HashSet<&str> = after.iter().copied().collect();
    assert_eq!(unique.len(), after.len(), "a delivery arrived twice");
    // In order: binding and follow first, then the messages as the follower sent them.
    let mut order: Vec<String> = Vec::new();
    for r in &received {
        let label = match r.event.as_str() {
            "message" => r.body["data"]["message"]["content"]
                .as_str()
                .unwrap()
                .to_owned(),
            other => other.to_owned(),
        };
        if !order.contains(&label) {
            order.push(label);
        }
    }
    let messages: Vec<String> = order
        .iter()
        .filter(|l| l.starts_with('m'))
        .cloned()
        .collect();
    assert_eq!(
        messages,
        (0..30).map(|i| format!("m{i:02}")).collect::<Vec<_>>()
    );
    c.kill(0);
}
