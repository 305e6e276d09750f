//! `print` and `debug` in rules go to the server log, tagged with the rule's file (and, for
//! `debug`, the line). Its own test binary: it installs the global subscriber.

use std::io::Write;
use std::sync::{Arc, Mutex};

use huixin::config::RulesConfig;
use huixin::rules::context::Services;
use huixin::rules::load::SourceFile;
use huixin::rules::{Source, loader};
use huixin::simulator::{Header, MessageSpec};
use huixin::wechat::{Message, Reply};

#[derive(Clone, Default)]
struct Captured(Arc<Mutex<Vec<u8>>>);

impl Write for Captured {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0.lock().unwrap().extend_from_slice(buf);
        Ok(buf.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

impl<'a> tracing_subscriber::fmt::MakeWriter<'a> for Captured {
    type Writer = Captured;
    fn make_writer(&'a self) -> Self::Writer {
        self.clone()
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn print_and_debug_reach_the_log_with_the_rule_file() {
    let captured = Captured::default();
    tracing_subscriber::fmt()
        .with_writer(captured.clone())
        .with_max_level(tracing::Level::DEBUG)
        .with_ansi(false)
        .init();

    let set = loader(&RulesConfig::default(), Vec::new())
        .unwrap()
        .load(
            vec![SourceFile {
                name: "30-chatty.rhai".into(),
                text: "rule(|msg| {\n    print(`hello from print: ${msg.content}`);\n    debug(\"hello from debug\");\n    text(\"ok\")\n});\n".into(),
            }],
            None,
            Source::Builtin,
        )
        .unwrap();
    let xml = MessageSpec::Text {
        content: "hi\nforged line".into(),
    }
    .to_xml(&Header::new("gh", "o_user"))
    .unwrap();
    let message = Arc::new(Message::parse(xml.as_bytes()).unwrap());
    let outcome = Arc::new(set)
        .run(message, Services::default(), &Reply::Success)
        .await;
    assert_eq!(outcome.reply, Reply::text("ok"));

    let log = String::from_utf8(captured.0.lock().unwrap().clone()).unwrap();
    let print_line = log
        .lines()
        .find(|l| l.contains("hello from print"))
        .unwrap_or_else(|| panic!("print reached the log: {log}"));
    assert!(
        print_line.contains("INFO") && print_line.contains("rule=\"30-chatty.rhai\""),
        "{print_line}"
    );
    // Text from a user cannot forge a log line: the newline is escaped.
    assert!(print_line.contains("hi\\nforged line"), "{print_line}");
    let debug_line = log
        .lines()
        .find(|l| l.contains("hello from debug"))
        .unwrap_or_else(|| panic!("debug reached the log: {log}"));
    assert!(
        debug_line.contains("DEBUG")
            && debug_line.contains("30-chatty.rhai")
            && debug_line.contains("line=3"),
        "{debug_line}"
    );
}
