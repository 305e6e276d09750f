//! A large rule set through the real binary and server: the shipped rules plus 1,000 keyword
//! entries and 100 regex rules. Matching goes through the index built at load; each message
//! must get the reply the first matching rule gives, with its captures, as rule order says.

use crate::common;

use std::path::Path;

use common::process::{huixin, stderr, stdout};
use common::start_rules;
use huixin::simulator::{Header, MessageSpec};
use huixin::wechat::{Mode, Reply};

/// 1,000 keyword entries; entry `n` is declared at line `4n - 1`. Every 25th from the 7th is
/// a `contains`, every 25th from the 13th a `prefix`, the rest exact `content`.
fn keywords() -> String {
    let mut toml = String::from("# 1,000 generated keyword entries\n");
    for n in 1..=1000 {
        let condition = match n % 25 {
            7 => format!("contains = [\"contains{n:04}\", \"包含{n:04}\"]"),
            13 => format!("prefix = [\"prefix{n:04} \", \"前缀{n:04}\"]"),
            _ => format!("content = [\"kw{n:04}\", \"关键词{n:04}\"]"),
        };
        toml.push_str(&format!(
            "\n[[reply]]\n{condition}\ntext = \"keyword {n}\"\n"
        ));
    }
    toml
}

/// 100 regex rules; rule `n` is declared at line `n + 1`. Even: a command with an argument;
/// odd: an order number anywhere in the text.
fn regex_rules() -> String {
    let mut rhai = String::from("// 100 generated regex rules\n");
    for n in 1..=100 {
        let (pattern, reply) = if n % 2 == 0 {
            (
                format!(r"^(?i:cmd{n:03})\\s+(?P<arg>[-_A-Za-z0-9]{{1,64}})$"),
                format!("`cmd {n}: ${{caps[\"arg\"]}}`"),
            )
        } else {
            (
                format!(r"(?P<year>\\d{{4}})-order{n:03}-(?P<id>\\d{{2,8}})"),
                format!("`order {n}: ${{caps[\"year\"]}}/${{caps[2]}}`"),
            )
        };
        rhai.push_str(&format!(
            "rule(#{{ regex: \"{pattern}\" }}, |msg, caps| text({reply}));\n"
        ));
    }
    rhai
}

/// The shipped rules (as `huixin rules init` writes them) plus the generated ones.
fn write_rules(work: &Path) -> std::path::PathBuf {
    let out = huixin(work, &["rules", "init", "rules"], &[]);
    assert!(out.status.success(), "{}", stderr(&out));
    let rules = work.join("rules");
    std::fs::write(rules.join("60-many.toml"), keywords()).unwrap();
    std::fs::write(rules.join("70-regex.rhai"), regex_rules()).unwrap();
    rules
}

/// `huixin rules test text <content>`: the reply line and the rule that gave it.
fn rules_test(work: &Path, content: &str) -> String {
    let out = huixin(
        work,
        &["rules", "test", "--dir", "rules", "text", content],
        &[],
    );
    assert!(out.status.success(), "{content}: {}", stderr(&out));
    stdout(&out)
}

#[test]
fn a_thousand_keywords_and_a_hundred_regexes_through_rules_test() {
    let work = tempfile::tempdir().unwrap();
    write_rules(work.path());

    let out = huixin(work.path(), &["rules", "check", "--dir", "rules"], &[]);
    let listing = stdout(&out);
    assert!(listing.contains("ok: 1118 rules in 8 files"), "{listing}");
    assert!(
        listing.contains("60-many.toml:3999  when content=[\"kw1000\", \"关键词1000\"]"),
        "{listing}"
    );

    let cases: &[(&str, &str, &str)] = &[
        ("kw1000", "← text: keyword 1000", "60-many.toml:3999"),
        ("  关键词0500 ", "← text: keyword 500", "60-many.toml:1999"),
        ("kw0001", "← text: keyword 1", "60-many.toml:3"),
        // `contains` anywhere; `prefix` after leading spaces.
        (
            "say contains0982 now",
            "← text: keyword 982",
            "60-many.toml:3927",
        ),
        ("  prefix0013 go", "← text: keyword 13", "60-many.toml:51"),
        ("xprefix0013 go", "← text: xprefix0013 go", "90-echo.rhai:4"),
        // Shipped rules keep their place before the extra ones.
        ("hours", "← text: We are open", "50-keywords.toml:5"),
        ("help", "← text: I understand:", "20-help.rhai:3"),
        (
            "sub news",
            "← text: There is no open topic \"news\"",
            "40-push.rhai:59",
        ),
        // Regex rules, with their captures.
        (
            "CMD042 deploy-1",
            "← text: cmd 42: deploy-1",
            "70-regex.rhai:43",
        ),
        (
            "ref 2026-order051-777 ok",
            "← text: order 51: 2026/777",
            "70-regex.rhai:52",
        ),
        // Nothing extra matches: the echo.
        ("hello 你好", "← text: hello 你好", "90-echo.rhai:4"),
        ("kw1001", "← text: kw1001", "90-echo.rhai:4"),
    ];
    for (content, reply, origin) in cases {
        let out = rules_test(work.path(), content);
        assert!(out.contains(reply), "{content}: {out}");
        assert!(
            out.contains(&format!("(replied by {origin})")),
            "{content}: {out}"
        );
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn a_thousand_keywords_through_the_server() {
    let work = tempfile::tempdir().unwrap();
    let rules = write_rules(work.path());
    let p = start_rules(Mode::Safe, "", &rules).await;
    let cases = [
        ("o_kw", "kw1000", "keyword 1000"),
        ("o_regex", "cmd100 x", "cmd 100: x"),
        ("o_echo", "nothing to see", "nothing to see"),
    ];
    for (from, content, expected) in cases {
        let spec = MessageSpec::Text {
            content: content.into(),
        };
        let xml = spec.to_xml(&Header::new("gh_test", from)).unwrap();
        let exchange = p.server.sim.send(xml, from).await.unwrap();
        assert_eq!(exchange.status, 200, "{}", exchange.body);
        let reply = exchange.reply.as_ref().unwrap().reply.clone();
        assert_eq!(reply, Reply::text(expected), "{content}");
    }
}
