//! Several `huixin serve` processes on one database behave as one: a user's session written by
//! one process is what the next process reads on that user's next message, also when one of
//! them served alone (trusting its memory) before the other joined, and a restarted process
//! still refuses a signed query replayed with another body, and still finds the sessions it
//! wrote before it restarted.

use std::path::Path;

use crate::common;

use common::process::{HUIXIN, Running, huixin, stderr, stdout};

const CONFIG: &str = r#"
[server]
listen = "127.0.0.1:0"

[storage]
url = "sqlite://shared.db"

[wechat]
token = "processesToken"

[bot]
rate_limit_per_minute = 0
"#;

fn serve(dir: &Path) -> (Running, String) {
    let mut server = Running::spawn(
        Path::new(HUIXIN),
        dir,
        &["serve", "--config", "huixin.toml"],
        &[],
    );
    let url = server.url();
    (server, url)
}

/// Sends a text from `user` to the server at `url` and returns what came back.
fn say(dir: &Path, url: &str, user: &str, text: &str) -> String {
    let out = huixin(
        dir,
        &[
            "simulate",
            "--config",
            "huixin.toml",
            "--url",
            url,
            "--from",
            user,
            "text",
            text,
        ],
        &[],
    );
    assert!(out.status.success(), "{}{}", stdout(&out), stderr(&out));
    stdout(&out)
}

const ASKED: &str = "Please send your feedback";
const THANKED: &str = "Thank you! Your feedback is recorded.";

#[test]
fn a_session_written_by_one_process_is_read_by_the_next() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("huixin.toml"), CONFIG).unwrap();
    let d = dir.path();

    // A serves alone first: it caches what it reads of the user's session.
    let (a, url_a) = serve(d);
    assert!(say(d, &url_a, "o_user_1", "hello").contains("text: hello"));
    assert!(say(d, &url_a, "o_user_2", "feedback").contains(ASKED));

    // B joins. From now on the user's messages alternate between the two.
    let (b, url_b) = serve(d);
    assert!(say(d, &url_b, "o_user_1", "feedback").contains(ASKED));
    let out = say(d, &url_a, "o_user_1", "the note, on A");
    assert!(out.contains(THANKED), "A read the session B wrote: {out}");
    // The question is answered: the next text is echoed, on either process.
    assert!(say(d, &url_b, "o_user_1", "after").contains("text: after"));

    // A wrote o_user_2's question while alone; B reads it.
    let out = say(d, &url_b, "o_user_2", "the note, on B");
    assert!(out.contains(THANKED), "B read the session A wrote: {out}");

    for round in 0..3 {
        let (ask, answer) = if round % 2 == 0 {
            (&url_a, &url_b)
        } else {
            (&url_b, &url_a)
        };
        assert!(say(d, ask, "o_user_3", "feedback").contains(ASKED));
        let out = say(d, answer, "o_user_3", &format!("note {round}"));
        assert!(out.contains(THANKED), "round {round}: {out}");
    }

    // B stops: A is alone again and serves from its own reads once more.
    assert!(b.terminate());
    assert!(say(d, &url_a, "o_user_4", "feedback").contains(ASKED));
    assert!(say(d, &url_a, "o_user_4", "note").contains(THANKED));
    assert!(a.terminate());
}

#[test]
fn a_tool_writing_sessions_reaches_a_serving_process() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("huixin.toml"), CONFIG).unwrap();
    let d = dir.path();
    let (a, url) = serve(d);
    // A caches the user's (empty) session.
    assert!(say(d, &url, "o_user_9", "hello").contains("text: hello"));
    // `huixin rules test --store` runs the rules on the real store: the question is stored.
    let out = huixin(
        d,
        &[
            "rules",
            "test",
            "--config",
            "huixin.toml",
            "--use-store",
            "--from",
            "o_user_9",
            "text",
            "feedback",
        ],
        &[],
    );
    assert!(out.status.success(), "{}{}", stdout(&out), stderr(&out));
    assert!(stdout(&out).contains(ASKED), "{}", stdout(&out));
    // Within a beat the server drops what it cached.
    let mut answered = String::new();
    for _ in 0..30 {
        std::thread::sleep(std::time::Duration::from_millis(200));
        answered = say(d, &url, "o_user_9", "a note");
        if answered.contains(THANKED) {
            break;
        }
    }
    assert!(answered.contains(THANKED), "{answered}");
    assert!(a.terminate());
}

#[test]
fn a_lone_process_knows_who_holds_a_session_across_a_restart() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("huixin.toml"), CONFIG).unwrap();
    let d = dir.path();
    let (a, url) = serve(d);
    assert!(say(d, &url, "o_user_5", "feedback").contains(ASKED));
    assert!(a.terminate());

    // The restarted process reads who holds session rows at its first beats, then skips the
    // read for everyone else: o_user_5's question must still be found.
    let (b, url) = serve(d);
    std::thread::sleep(std::time::Duration::from_millis(2500));
    assert!(say(d, &url, "o_user_6", "hello").contains("text: hello"));
    let out = say(d, &url, "o_user_5", "the note after a restart");
    assert!(out.contains(THANKED), "{out}");
    // A user who gains a session now (not cached, written by this process) is read back.
    assert!(say(d, &url, "o_user_6", "feedback").contains(ASKED));
    assert!(say(d, &url, "o_user_6", "a note").contains(THANKED));
    assert!(b.terminate());
}
