//! When a rule applies, declared as data and evaluated in Rust (a message never runs the
//! script of a rule whose conditions do not match; regexes are compiled once, at load).
//!
//! | key | matches | value |
//! |---|---|---|
//! | `type` | `MsgType`: `text`, `image`, `voice`, `video`, `shortvideo`, `location`, `link`, `miniprogrampage`, `event` | one or a list |
//! | `event` | the event, case-insensitively: `subscribe`, `unsubscribe`, `SCAN`, `CLICK`, `VIEW`, … | one or a list |
//! | `key` | the event key, exactly (a subscribe's QR scene counts as its key) | one or a list |
//! | `key_regex` | the event key, by regex; groups become captures | one |
//! | `content` | a text message, exactly (surrounding whitespace ignored) | one or a list |
//! | `contains` | a text message containing it | one or a list |
//! | `prefix` | a text message starting with it | one or a list |
//! | `regex` | a text message, by regex; groups become captures | one |
//! | `user` | the sender's OpenID | one or a list |
//!
//! Every key given must match (a list matches when any of its values does). No keys: every
//! message.
//!
//! A message is not checked against every rule in turn: an index built at load (see
//! `super::plan`) finds the rules it may match by one condition of each (exact values by
//! hash, `contains` and `prefix` literals in one scan, regexes in sets of
//! [`REGEX_SET_SIZE_LIMIT`]), and only those are checked, in order. The result is the same.
//!
//! A regex compiles to at most [`REGEX_SIZE_LIMIT`] bytes; a larger one is a load error. A
//! rule set with a regex evaluates its conditions on the blocking thread its scripts run on,
//! inside `[rules] max_run_ms` (see [`super::run`]): matching is linear in the text, but a
//! long message on a large regex still takes milliseconds the async workers must not lose.

use crate::bot::filter::{self, Filter, TextMatch};

/// The keys a condition may use.
pub const KEYS: &[&str] = &[
    "type",
    "event",
    "key",
    "key_regex",
    "content",
    "contains",
    "prefix",
    "regex",
    "user",
];

/// Builds the filter for `(key, values)` pairs, with a one-line summary for listings.
pub fn build(pairs: &[(String, Vec<String>)]) -> Result<(Filter, String), String> {
    let mut parts = Vec::new();
    let mut summary = Vec::new();
    for (key, values) in pairs {
        // Exact and prefix matches compare trimmed messages, so their values are trimmed
        // too; a regex or a `contains` value keeps its spaces (they mean something there).
        // A prefix keeps its trailing space ("go " must not match "good").
        let values: Vec<String> = values
            .iter()
            .map(|v| match key.as_str() {
                "regex" | "key_regex" | "contains" => v.clone(),
                "prefix" => v.trim_start().to_owned(),
                _ => v.trim().to_owned(),
            })
            .collect();
        let values = &values;
        if values.is_empty() {
            return Err(format!("condition `{key}` has no value"));
        }
        if values.iter().any(String::is_empty) {
            return Err(format!("condition `{key}` has an empty value"));
        }
        let any = |make: &dyn Fn(&str) -> Filter| -> Filter {
            let mut fs: Vec<Filter> = values.iter().map(|v| make(v)).collect();
            if fs.len() == 1 {
                fs.remove(0)
            } else {
                Filter::AnyOf(fs)
            }
        };
        let single = || -> Result<&str, String> {
            match values.as_slice() {
                [one] => Ok(one.as_str()),
                _ => Err(format!("condition `{key}` takes one regex, not a list")),
            }
        };
        let part = match key.as_str() {
            "type" => any(&|v| filter::msg_type(v)),
            "event" => any(&|v| filter::event(v)),
            "key" => any(&|v| filter::event_key(v)),
            "content" => any(&|v| filter::content(v)),
            "contains" => any(&|v| filter::content_contains(v)),
            "prefix" => any(&|v| filter::content_prefix(v)),
            "user" => filter::user(values.iter().cloned()),
            "regex" => Filter::Content(regex(single()?)?),
            "key_regex" => Filter::EventKey(regex(single()?)?),
            other => {
                return Err(format!(
                    "unknown condition `{other}` (known: {})",
                    KEYS.join(", ")
                ));
            }
        };
        parts.push(part);
        summary.push(if values.len() == 1 {
            format!("{key}={:?}", values[0])
        } else {
            format!("{key}={values:?}")
        });
    }
    let filter = match parts.len() {
        0 => Filter::Any,
        1 => parts.remove(0),
        _ => Filter::All(parts),
    };
    let summary = if summary.is_empty() {
        "every message".to_owned()
    } else {
        summary.join(" ")
    };
    Ok((filter, summary))
}

/// How large a rule regex may compile (the `regex` crate's default is 10 MiB). Matching costs
/// up to the text's length times this size: `(?:\w+\s*){100}x` compiles to about 7 MiB and
/// took most of a second on a 250 KB message. (`\w`, all of Unicode, is about 90 KiB by
/// itself: `[a-z0-9_]` is far smaller when that is what is meant.)
pub const REGEX_SIZE_LIMIT: usize = 1024 * 1024;

/// The cache each matching thread keeps for a rule regex's lazy DFA (the crate's default).
pub const REGEX_DFA_SIZE_LIMIT: usize = 2 * 1024 * 1024;

/// How large a set of rule regexes matched together may compile: the rules' regexes are
/// grouped into sets within it (matching one costs about what matching its regexes one by one
/// does, in one pass); a group too large is split, and a regex that fits no set is matched on
/// its own. Four rule regexes at their limit, or hundreds of ordinary ones.
pub const REGEX_SET_SIZE_LIMIT: usize = 4 * REGEX_SIZE_LIMIT;

/// The cache each matching thread keeps for a regex set's lazy DFA: its states hold every
/// regex of the set, so it gets room for more of them than a single regex's.
pub const REGEX_SET_DFA_SIZE_LIMIT: usize = 4 * REGEX_DFA_SIZE_LIMIT;

fn regex(pattern: &str) -> Result<TextMatch, String> {
    regex::RegexBuilder::new(pattern)
        .size_limit(REGEX_SIZE_LIMIT)
        .dfa_size_limit(REGEX_DFA_SIZE_LIMIT)
        .build()
        .map(TextMatch::Regex)
        .map_err(|e| match e {
            regex::Error::CompiledTooBig(limit) => format!(
                "regex {pattern:?} is too large: it compiles to over {} KiB, the limit for \
                 rules (use smaller repetitions; `\\w` covers all of Unicode, `[a-z0-9_]` is \
                 far smaller)",
                limit / 1024
            ),
            e => format!("invalid regex {pattern:?}: {e}"),
        })
}

/// Whether `filter` matches anything by regex (matching then costs more than microseconds
/// on a long text).
pub fn uses_regex(filter: &Filter) -> bool {
    match filter {
        Filter::Content(TextMatch::Regex(_)) | Filter::EventKey(TextMatch::Regex(_)) => true,
        Filter::All(filters) | Filter::AnyOf(filters) => filters.iter().any(uses_regex),
        Filter::Not(inner) => uses_regex(inner),
        // A custom predicate is not made from rule conditions; assume the worst.
        Filter::Custom(_) => true,
        Filter::Any
        | Filter::MsgType(_)
        | Filter::Event(_)
        | Filter::EventKey(_)
        | Filter::Content(_)
        | Filter::User(_) => false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::wechat::Message;

    fn text(content: &str) -> Message {
        let xml = format!(
            "<xml><ToUserName>gh</ToUserName><FromUserName>u1</FromUserName><CreateTime>1</CreateTime>\
             <MsgType>text</MsgType><Content><![CDATA[{content}]]></Content><MsgId>1</MsgId></xml>"
        );
        Message::parse(xml.as_bytes()).unwrap()
    }

    fn pairs(p: &[(&str, &[&str])]) -> Vec<(String, Vec<String>)> {
        p.iter()
            .map(|(k, v)| (k.to_string(), v.iter().map(|s| s.to_string()).collect()))
            .collect()
    }

    #[test]
    fn lists_any_keys_all() {
        let (f, summary) =
            build(&pairs(&[("content", &["help", "帮助"]), ("user", &["u1"])])).unwrap();
        assert!(f.matches(&text("帮助")).is_some());
        assert!(f.matches(&text("other")).is_none());
        assert!(summary.contains("content="));
        let (f, _) = build(&pairs(&[("regex", &[r"^deploy (\w+)$"])])).unwrap();
        assert_eq!(
            f.matches(&text("deploy prod")).unwrap().get(1),
            Some("prod")
        );
    }

    #[test]
    fn values_are_trimmed_like_messages() {
        let (f, _) = build(&pairs(&[("content", &[" help "])])).unwrap();
        assert!(f.matches(&text("help")).is_some());
        let (f, _) = build(&pairs(&[("prefix", &[" go "])])).unwrap();
        assert!(f.matches(&text("go home")).is_some());
        assert!(
            f.matches(&text("good")).is_none(),
            "a prefix keeps its trailing space"
        );
        let (f, _) = build(&pairs(&[("contains", &[" x "])])).unwrap();
        assert!(f.matches(&text("a x b")).is_some());
        assert!(f.matches(&text("axb")).is_none());
        assert!(
            build(&pairs(&[("content", &["  "])]))
                .unwrap_err()
                .contains("empty")
        );
        assert!(
            build(&pairs(&[("content", &[])]))
                .unwrap_err()
                .contains("no value")
        );
    }

    #[test]
    fn mistakes_are_named() {
        assert!(
            build(&pairs(&[("contnet", &["x"])]))
                .unwrap_err()
                .contains("contnet")
        );
        assert!(
            build(&pairs(&[("regex", &["("])]))
                .unwrap_err()
                .contains("invalid regex")
        );
        assert!(
            build(&pairs(&[("regex", &["a", "b"])]))
                .unwrap_err()
                .contains("one regex")
        );
    }
}
