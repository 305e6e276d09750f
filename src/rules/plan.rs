//! Which rules a message runs: the plan. The rules whose conditions match, in order, up to the
//! first whose action is a fixed reply (a keyword-table rule); each with the captures of its
//! `regex` or `key_regex`.
//!
//! A set of a thousand keyword entries would cost a walk over every rule per message, so an
//! [`Index`] built at load picks the candidates instead: from each rule's conditions one
//! condition every matching message must meet (its anchor) is filed where a message finds it
//! in one step:
//!
//! | anchor | found by |
//! |---|---|
//! | `content`, `key`, `user` | a hash lookup of the trimmed content, the key, the sender |
//! | `contains`, `prefix` (content or key) | one Aho-Corasick scan of the text for every literal |
//! | `regex`, `key_regex` | one [`regex::RegexSet`] scan for many regexes |
//! | `event`, `type` | a hash lookup, case-insensitive |
//!
//! A rule with no such condition (no conditions, or a filter built in code) is a candidate for
//! every message. Candidates are then checked in rule order with their full filter, exactly as
//! the walk over every rule does ([`plan_linear`], kept as the reference and the fallback), so
//! the plan and its captures are the same: the index only skips rules that cannot match.

use std::borrow::Cow;
use std::collections::HashMap;

use aho_corasick::{AhoCorasick, MatchKind};
use regex::{RegexSet, RegexSetBuilder};

use super::conditions::{REGEX_SET_DFA_SIZE_LIMIT, REGEX_SET_SIZE_LIMIT};
use super::load::{Action, Rule, RuleSet};
use super::run::Plan;
use crate::bot::filter::{Captures, Filter, TextMatch};
use crate::wechat::Message;

impl RuleSet {
    /// The rules whose conditions match `message` (indices into `rules`), in order, up to the
    /// first that always replies; with their captures. What [`RuleSet::run`] runs.
    pub fn plan(&self, message: &Message) -> Vec<(usize, Captures)> {
        self.index.plan(&self.rules, message)
    }

    /// The same plan by checking every rule in turn, without the index: the reference the
    /// index must equal (tests and benches compare the two).
    pub fn plan_linear(&self, message: &Message) -> Vec<(usize, Captures)> {
        plan_linear(&self.rules, message)
    }
}

/// The plan by evaluating every rule's filter in order: the reference the index must equal.
pub(crate) fn plan_linear(rules: &[Rule], message: &Message) -> Plan {
    collect(rules, 0..rules.len(), message)
}

/// The plan among `candidates` (rule indices in increasing order).
fn collect(rules: &[Rule], candidates: impl IntoIterator<Item = usize>, message: &Message) -> Plan {
    let mut plan = Vec::new();
    for i in candidates {
        let rule = &rules[i];
        if let Some(caps) = rule.filter.matches(message) {
            let last = matches!(rule.action, Action::Reply(_));
            plan.push((i, caps));
            if last {
                break;
            }
        }
    }
    plan
}

/// Where each rule's anchor is filed, built once per rule set.
#[derive(Debug, Default)]
pub struct Index {
    /// How many rules it was built for: a set whose rules changed since is planned linearly.
    rules: usize,
    /// Rules without an anchor: candidates for every message.
    always: Vec<usize>,
    /// By trimmed content (`content`).
    content: HashMap<Box<str>, Vec<usize>>,
    /// By trimmed event key (`key`).
    key: HashMap<Box<str>, Vec<usize>>,
    /// By sender (`user`).
    user: HashMap<Box<str>, Vec<usize>>,
    /// By event name, in ASCII lower case (`event`).
    event: HashMap<Box<str>, Vec<usize>>,
    /// By message type, in ASCII lower case (`type`).
    msg_type: HashMap<Box<str>, Vec<usize>>,
    /// Literals and regexes on the content.
    content_text: TextIndex,
    /// Literals and regexes on the event key.
    key_text: TextIndex,
}

/// Literals (`contains`, `prefix`) and regexes on one text, each found for many rules at once.
#[derive(Debug, Default)]
struct TextIndex {
    /// Every literal, found in one scan (overlapping matches: every literal that occurs).
    literals: Option<AhoCorasick>,
    /// The rules of each literal, by pattern id.
    literal_rules: Vec<Vec<usize>>,
    /// Regexes, in sets that each fit [`REGEX_SET_SIZE_LIMIT`].
    sets: Vec<RegexGroup>,
}

/// A regex set and the rules of each of its patterns.
#[derive(Debug)]
struct RegexGroup {
    set: RegexSet,
    rules: Vec<Vec<usize>>,
}

/// A condition every message a rule matches meets, and how to find such messages.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
enum Anchor {
    Content(String),
    Key(String),
    User(String),
    Event(String),
    MsgType(String),
    /// A literal the content contains (a `prefix` too: a text starting with it contains it).
    ContentLiteral(String),
    KeyLiteral(String),
    ContentRegex(String),
    KeyRegex(String),
}

impl Anchor {
    /// How many messages it lets through, roughly (lower is narrower): a rule is filed under
    /// its narrowest condition. A regex ranks before `event` and `type`: a hundred rules of
    /// `type: "text"` and a regex must not all be checked for every text.
    fn rank(&self) -> u8 {
        match self {
            Self::Content(_) | Self::Key(_) | Self::User(_) => 0,
            Self::ContentLiteral(_) | Self::KeyLiteral(_) => 1,
            Self::ContentRegex(_) | Self::KeyRegex(_) => 2,
            Self::Event(_) => 3,
            Self::MsgType(_) => 4,
        }
    }
}

/// The anchors of `filter`: a message it matches meets at least one of them. `None` when there
/// is no such condition (the rule is a candidate for every message).
fn anchors(filter: &Filter) -> Option<Vec<Anchor>> {
    match filter {
        Filter::Content(m) => text_anchor(m, true).map(|a| vec![a]),
        Filter::EventKey(m) => text_anchor(m, false).map(|a| vec![a]),
        Filter::User(ids) => Some(ids.iter().map(|id| Anchor::User(id.clone())).collect()),
        Filter::Event(name) => Some(vec![Anchor::Event(name.to_ascii_lowercase())]),
        Filter::MsgType(t) => Some(vec![Anchor::MsgType(t.to_ascii_lowercase())]),
        // Every part matches: any one part's anchors do; the narrowest is taken.
        Filter::All(parts) => parts
            .iter()
            .filter_map(anchors)
            .min_by_key(|a| (worst_rank(a), a.len())),
        // One part matches: the union of all parts' anchors, when each part has some.
        Filter::AnyOf(parts) => parts
            .iter()
            .map(anchors)
            .collect::<Option<Vec<_>>>()
            .map(|all| all.into_iter().flatten().collect()),
        Filter::Any | Filter::Not(_) | Filter::Custom(_) => None,
    }
}

/// The anchor of a text condition on the content (or else the event key).
fn text_anchor(m: &TextMatch, content: bool) -> Option<Anchor> {
    Some(match (m, content) {
        // `text.trim() == s`: the trimmed text is looked up.
        (TextMatch::Exact(s), true) => Anchor::Content(s.clone()),
        (TextMatch::Exact(s), false) => Anchor::Key(s.clone()),
        // An empty literal is in every text: no narrowing.
        (TextMatch::Contains(s) | TextMatch::Prefix(s), _) if s.is_empty() => return None,
        (TextMatch::Contains(s) | TextMatch::Prefix(s), true) => Anchor::ContentLiteral(s.clone()),
        (TextMatch::Contains(s) | TextMatch::Prefix(s), false) => Anchor::KeyLiteral(s.clone()),
        // The set is built from the same pattern with the same (default) flags.
        (TextMatch::Regex(re), true) => Anchor::ContentRegex(re.as_str().to_owned()),
        (TextMatch::Regex(re), false) => Anchor::KeyRegex(re.as_str().to_owned()),
    })
}

fn worst_rank(anchors: &[Anchor]) -> u8 {
    anchors.iter().map(Anchor::rank).max().unwrap_or(0)
}

/// Values and the rules filed under each, in first-seen order (a rule once per value).
#[derive(Default)]
struct Patterns {
    ids: HashMap<String, usize>,
    list: Vec<(String, Vec<usize>)>,
}

impl Patterns {
    fn add(&mut self, pattern: String, rule: usize) {
        let id = *self.ids.entry(pattern.clone()).or_insert_with(|| {
            self.list.push((pattern, Vec::new()));
            self.list.len() - 1
        });
        let rules = &mut self.list[id].1;
        if rules.last() != Some(&rule) {
            rules.push(rule);
        }
    }
}

fn file(map: &mut HashMap<Box<str>, Vec<usize>>, value: String, rule: usize) {
    let rules = map.entry(value.into_boxed_str()).or_default();
    if rules.last() != Some(&rule) {
        rules.push(rule);
    }
}

impl Index {
    /// The index of `rules`. Regexes go into sets of at most [`REGEX_SET_SIZE_LIMIT`] compiled;
    /// a regex that fits no set is checked on its own, for every message.
    pub fn build(rules: &[Rule]) -> Self {
        Self::build_with(rules, REGEX_SET_SIZE_LIMIT)
    }

    fn build_with(rules: &[Rule], set_limit: usize) -> Self {
        let mut index = Self {
            rules: rules.len(),
            ..Self::default()
        };
        let (mut content_literals, mut key_literals) = (Patterns::default(), Patterns::default());
        let (mut content_regexes, mut key_regexes) = (Patterns::default(), Patterns::default());
        for (i, rule) in rules.iter().enumerate() {
            let Some(anchors) = anchors(&rule.filter) else {
                index.always.push(i);
                continue;
            };
            for anchor in anchors {
                match anchor {
                    Anchor::Content(s) => file(&mut index.content, s, i),
                    Anchor::Key(s) => file(&mut index.key, s, i),
                    Anchor::User(s) => file(&mut index.user, s, i),
                    Anchor::Event(s) => file(&mut index.event, s, i),
                    Anchor::MsgType(s) => file(&mut index.msg_type, s, i),
                    Anchor::ContentLiteral(s) => content_literals.add(s, i),
                    Anchor::KeyLiteral(s) => key_literals.add(s, i),
                    Anchor::ContentRegex(s) => content_regexes.add(s, i),
                    Anchor::KeyRegex(s) => key_regexes.add(s, i),
                }
            }
        }
        index.content_text = TextIndex::build(
            content_literals,
            content_regexes,
            set_limit,
            &mut index.always,
        );
        index.key_text = TextIndex::build(key_literals, key_regexes, set_limit, &mut index.always);
        index.always.sort_unstable();
        index.always.dedup();
        index
    }

    /// The plan for `message`: the candidates' filters checked in rule order.
    pub fn plan(&self, rules: &[Rule], message: &Message) -> Plan {
        if rules.len() != self.rules {
            return plan_linear(rules, message);
        }
        let mut candidates = self.always.clone();
        let add =
            |candidates: &mut Vec<usize>, map: &HashMap<Box<str>, Vec<usize>>, value: &str| {
                if let Some(rules) = map.get(value) {
                    candidates.extend_from_slice(rules);
                }
            };
        if !self.msg_type.is_empty() {
            add(
                &mut candidates,
                &self.msg_type,
                &ascii_lowercase(message.kind.msg_type()),
            );
        }
        if !self.event.is_empty()
            && let Some(event) = message.event()
        {
            add(&mut candidates, &self.event, &ascii_lowercase(event.name()));
        }
        if !self.user.is_empty() {
            add(&mut candidates, &self.user, message.from.as_str());
        }
        if let Some(content) = message.content() {
            if !self.content.is_empty() {
                add(&mut candidates, &self.content, content.trim());
            }
            self.content_text.candidates(content, &mut candidates);
        }
        if let Some(key) = message.event_key() {
            if !self.key.is_empty() {
                add(&mut candidates, &self.key, key.trim());
            }
            self.key_text.candidates(key, &mut candidates);
        }
        candidates.sort_unstable();
        candidates.dedup();
        collect(rules, candidates, message)
    }
}

impl TextIndex {
    fn build(
        literals: Patterns,
        regexes: Patterns,
        set_limit: usize,
        always: &mut Vec<usize>,
    ) -> Self {
        let mut index = Self::default();
        if !literals.list.is_empty() {
            let patterns: Vec<&str> = literals.list.iter().map(|(p, _)| p.as_str()).collect();
            // Standard semantics: the only kind that reports overlapping matches, so every
            // literal that occurs is found, not just the leftmost.
            match AhoCorasick::builder()
                .match_kind(MatchKind::Standard)
                .build(&patterns)
            {
                Ok(ac) => {
                    index.literals = Some(ac);
                    index.literal_rules = literals.list.into_iter().map(|(_, r)| r).collect();
                }
                // Too many states for its ids (far beyond any rules folder): checked one by one.
                Err(_) => always.extend(literals.list.into_iter().flat_map(|(_, r)| r)),
            }
        }
        // A regex with a Unicode word boundary stops the lazy DFA at the first non-ASCII byte,
        // which sends the whole set to the slower engines on every Chinese text: it gets a
        // set of its own, so only it pays.
        let (alone, shared): (Vec<_>, Vec<_>) = regexes
            .list
            .into_iter()
            .partition(|(pattern, _)| has_word_boundary(pattern));
        add_sets(shared, set_limit, &mut index.sets, always);
        for one in alone {
            add_sets(vec![one], set_limit, &mut index.sets, always);
        }
        index
    }

    /// Adds the rules whose literal or regex occurs in `text`.
    fn candidates(&self, text: &str, out: &mut Vec<usize>) {
        if let Some(ac) = &self.literals {
            let mut found: Vec<usize> = ac
                .find_overlapping_iter(text)
                .map(|m| m.pattern().as_usize())
                .collect();
            found.sort_unstable();
            found.dedup();
            for id in found {
                out.extend_from_slice(&self.literal_rules[id]);
            }
        }
        for group in &self.sets {
            for id in group.set.matches(text).iter() {
                out.extend_from_slice(&group.rules[id]);
            }
        }
    }
}

/// Compiles `patterns` into sets within `limit`, halving a group that does not fit; a regex
/// that does not fit alone is left to be checked on its own (its rules join `always`).
fn add_sets(
    patterns: Vec<(String, Vec<usize>)>,
    limit: usize,
    sets: &mut Vec<RegexGroup>,
    always: &mut Vec<usize>,
) {
    if patterns.is_empty() {
        return;
    }
    let built = RegexSetBuilder::new(patterns.iter().map(|(p, _)| p))
        .size_limit(limit)
        .dfa_size_limit(REGEX_SET_DFA_SIZE_LIMIT)
        .build();
    match built {
        Ok(set) => sets.push(RegexGroup {
            set,
            rules: patterns.into_iter().map(|(_, r)| r).collect(),
        }),
        Err(_) if patterns.len() == 1 => {
            always.extend(patterns.into_iter().flat_map(|(_, r)| r));
        }
        Err(_) => {
            let mut first = patterns;
            let second = first.split_off(first.len() / 2);
            add_sets(first, limit, sets, always);
            add_sets(second, limit, sets, always);
        }
    }
}

/// Whether `pattern` has `\b` or `\B` (read loosely: escapes are skipped pairwise, classes are
/// not parsed; a false positive only costs the regex a set of its own).
fn has_word_boundary(pattern: &str) -> bool {
    let mut chars = pattern.chars();
    while let Some(c) = chars.next() {
        if c == '\\' && matches!(chars.next(), Some('b' | 'B')) {
            return true;
        }
    }
    false
}

/// `s` in ASCII lower case, borrowed when it is already.
fn ascii_lowercase(s: &str) -> Cow<'_, str> {
    if s.bytes().any(|b| b.is_ascii_uppercase()) {
        Cow::Owned(s.to_ascii_lowercase())
    } else {
        Cow::Borrowed(s)
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use proptest::prelude::*;

    use super::*;
    use crate::bot::filter;
    use crate::rules::conditions;
    use crate::rules::load::{Origin, ScriptFn};
    use crate::wechat::Reply;

    /// A script action (never run here: planning only looks at whether it is a fixed reply).
    fn script() -> Action {
        Action::Script(ScriptFn {
            ast: Arc::new(rhai::AST::empty()),
            handler: rhai::FnPtr::new("handler").expect("a valid name"),
            arity: 2,
        })
    }

    fn rule(filter: Filter, reply: bool) -> Rule {
        Rule {
            origin: Origin {
                file: Arc::from("test"),
                line: 1,
            },
            filter,
            conditions: String::new(),
            action: if reply {
                Action::Reply(Reply::text("fixed"))
            } else {
                script()
            },
        }
    }

    fn when(pairs: &[(&str, &[&str])], reply: bool) -> Rule {
        let pairs: Vec<(String, Vec<String>)> = pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.iter().map(|s| s.to_string()).collect()))
            .collect();
        rule(
            conditions::build(&pairs).expect("valid conditions").0,
            reply,
        )
    }

    fn parse(from: &str, body: &str) -> Message {
        let xml = format!(
            "<xml><ToUserName>gh</ToUserName><FromUserName>{from}</FromUserName>\
             <CreateTime>1</CreateTime>{body}</xml>"
        );
        Message::parse(xml.as_bytes()).expect("a valid message")
    }

    fn text(from: &str, content: &str) -> Message {
        parse(
            from,
            &format!(
                "<MsgType>text</MsgType><Content><![CDATA[{content}]]></Content><MsgId>1</MsgId>"
            ),
        )
    }

    fn event(from: &str, name: &str, key: Option<&str>) -> Message {
        let key = match (name, key) {
            ("subscribe", Some(k)) => {
                format!("<EventKey><![CDATA[qrscene_{k}]]></EventKey><Ticket>t</Ticket>")
            }
            (_, Some(k)) => format!("<EventKey><![CDATA[{k}]]></EventKey>"),
            (_, None) => String::new(),
        };
        parse(
            from,
            &format!("<MsgType>event</MsgType><Event><![CDATA[{name}]]></Event>{key}"),
        )
    }

    fn image(from: &str) -> Message {
        parse(
            from,
            "<MsgType>image</MsgType><PicUrl>http://x/p.jpg</PicUrl><MediaId>M</MediaId>\
             <MsgId>2</MsgId>",
        )
    }

    /// The indexed plan, checked against the linear one.
    fn plan(rules: &[Rule], msg: &Message) -> Vec<(usize, Captures)> {
        let indexed = Index::build(rules).plan(rules, msg);
        assert_eq!(indexed, plan_linear(rules, msg));
        indexed
    }

    fn indices(plan: &[(usize, Captures)]) -> Vec<usize> {
        plan.iter().map(|(i, _)| *i).collect()
    }

    #[test]
    fn rule_order_is_kept_and_the_first_fixed_reply_ends_the_plan() {
        let rules = vec![
            when(&[("type", &["text"])], false),           // 0
            when(&[("regex", &["^he"])], false),           // 1
            when(&[("content", &["hello", "hi"])], false), // 2
            when(&[("contains", &["ll"])], false),         // 3
            when(&[("user", &["u1"])], false),             // 4
            when(&[("content", &["hello"])], true),        // 5: a keyword entry
            when(&[("type", &["text"])], false),           // 6: after it, never planned
            when(&[("content", &["bye"])], true),          // 7
            rule(filter::any(), false),                    // 8
        ];
        assert_eq!(
            indices(&plan(&rules, &text("u1", "hello "))),
            [0, 1, 2, 3, 4, 5]
        );
        assert_eq!(indices(&plan(&rules, &text("u2", "hi"))), [0, 2, 6, 8]);
        assert_eq!(indices(&plan(&rules, &text("u2", "bye"))), [0, 6, 7]);
        assert_eq!(indices(&plan(&rules, &image("u1"))), [4, 8]);
    }

    #[test]
    fn captures_come_from_the_rule_that_matched() {
        let rules = vec![
            when(&[("regex", &[r"^(?i:sub)\s+(?P<topic>\w+)$"])], false),
            when(&[("regex", &[r"(\d+)-(\d+)"]), ("contains", &["-"])], false),
            when(
                &[
                    ("event", &["scan"]),
                    ("key_regex", &[r"^topic:(?P<topic>[a-z]+)$"]),
                ],
                false,
            ),
            when(&[("content", &["sub news"]), ("regex", &[r"(news)"])], true),
        ];
        let p = plan(&rules, &text("u1", "SUB news"));
        assert_eq!(indices(&p), [0]);
        assert_eq!(p[0].1.name("topic"), Some("news"));
        assert_eq!(p[0].1.get(0), Some("SUB news"));

        let p = plan(&rules, &text("u1", "sub news"));
        assert_eq!(indices(&p), [0, 3]);
        assert_eq!(p[1].1.get(1), Some("news"));

        let p = plan(&rules, &text("u1", "order 12-345"));
        assert_eq!(indices(&p), [1]);
        assert_eq!((p[0].1.get(1), p[0].1.get(2)), (Some("12"), Some("345")));

        let p = plan(&rules, &event("u1", "SCAN", Some("topic:ab")));
        assert_eq!(indices(&p), [2]);
        assert_eq!(p[0].1.name("topic"), Some("ab"));
        assert!(plan(&rules, &event("u1", "CLICK", Some("topic:ab"))).is_empty());
    }

    #[test]
    fn exact_values_are_compared_as_the_filters_compare_them() {
        let rules = vec![
            when(&[("content", &[" Help "])], true),
            when(&[("key", &["k1"])], true),
            when(&[("event", &["SUBSCRIBE"])], false),
            when(&[("type", &["Event"])], false),
            rule(filter::content(" padded "), true),
        ];
        // Content and key: trimmed, case kept.
        assert_eq!(indices(&plan(&rules, &text("u", "  Help\n"))), [0]);
        assert!(plan(&rules, &text("u", "help")).is_empty());
        // A value built in code with spaces never equals a trimmed text, indexed or not.
        assert!(plan(&rules, &text("u", " padded ")).is_empty());
        assert_eq!(
            indices(&plan(&rules, &event("u", "CLICK", Some(" k1 ")))),
            [1]
        );
        // Event and type: any case.
        assert_eq!(
            indices(&plan(&rules, &event("u", "subscribe", None))),
            [2, 3]
        );
    }

    #[test]
    fn oversized_regex_groups_are_split_or_matched_alone() {
        let rules: Vec<Rule> = (0..40)
            .map(|n| when(&[("regex", &[&format!(r"^cmd{n}\s+(\w+)$")])], false))
            .chain([when(&[("regex", &[r"\bword\b"])], false)])
            .collect();
        let whole = Index::build(&rules);
        assert_eq!(whole.content_text.sets.len(), 2, "one set, and `\\b` alone");
        // `\w` is large (all of Unicode): under a small limit each regex is matched alone.
        let split = Index::build_with(&rules, 200 * 1024);
        assert!(split.content_text.sets.len() > 2);
        let alone = Index::build_with(&rules, 1024);
        assert_eq!(alone.always, (0..40).collect::<Vec<_>>(), "no `\\w` fits");
        for msg in [
            text("u", "cmd7 go"),
            text("u", "cmd39 x"),
            text("u", "a word"),
        ] {
            let expected = plan_linear(&rules, &msg);
            assert_eq!(expected.len(), 1);
            for index in [&whole, &split, &alone] {
                assert_eq!(index.plan(&rules, &msg), expected);
            }
        }
    }

    #[test]
    fn a_changed_rule_list_is_planned_rule_by_rule() {
        let mut rules = vec![when(&[("content", &["a"])], true)];
        let index = Index::build(&rules);
        rules.push(when(&[("content", &["b"])], true));
        assert_eq!(indices(&index.plan(&rules, &text("u", "b"))), [1]);
    }

    #[test]
    fn word_boundaries_are_spotted() {
        assert!(has_word_boundary(r"\bx"));
        assert!(has_word_boundary(r"x\B"));
        assert!(!has_word_boundary(r"\\b"));
        assert!(!has_word_boundary(r"\d+b"));
    }

    // --- property: the indexed plan equals the linear one --------------------------------

    const VALUES: &[(&str, &[&str])] = &[
        ("type", &["text", "event", "image", "Text"]),
        ("event", &["subscribe", "scan", "CLICK", "weird_event"]),
        ("key", &["k1", "12", "topic:z", " k1 "]),
        (
            "key_regex",
            &[r"^k(\d)$", r"^topic:(?P<t>\w+)$", "2", r"\bk1\b", "(?i)K"],
        ),
        (
            "content",
            &["a", "hello", "你好", "k1", " a ", "hello 你好"],
        ),
        ("contains", &["a", "ll", "好", " x", "12", "a a"]),
        ("prefix", &["he", "a ", "你", " hello", "sub "]),
        (
            "regex",
            &[
                r"^a(.*)$",
                r"(?P<n>\d+)",
                "l+",
                "^$",
                "(?i)HELLO",
                r"\bhe",
                r"^sub\s+(?P<topic>\w+)$",
            ],
        ),
        ("user", &["u1", "u2", "u4"]),
    ];

    /// Filters made in code, beyond what conditions build.
    fn coded_filter(n: usize) -> Filter {
        match n % 8 {
            0 => filter::content("a").not(),
            1 => filter::custom(|m| m.content().is_some_and(|c| c.len() % 2 == 0)),
            2 => filter::any(),
            3 => filter::content("a").or(filter::msg_type("image")),
            4 => Filter::All(Vec::new()),
            5 => Filter::AnyOf(Vec::new()),
            6 => filter::event("subscribe").and(filter::event_key("k1").not()),
            _ => filter::content_prefix("").or(filter::content_contains("")),
        }
    }

    /// A generated rule: conditions, or a filter made in code; a fixed reply or a script.
    #[derive(Debug, Clone)]
    enum Spec {
        Conditions(Vec<(String, Vec<String>)>, bool),
        Coded(usize, bool),
    }

    impl Spec {
        fn rule(&self) -> Rule {
            match self {
                Self::Conditions(pairs, reply) => rule(
                    conditions::build(pairs).expect("valid conditions").0,
                    *reply,
                ),
                Self::Coded(n, reply) => rule(coded_filter(*n), *reply),
            }
        }
    }

    /// Conditions of distinct keys, one to three values each (one for regexes); now and then
    /// a filter made in code instead.
    fn rule_strategy() -> impl Strategy<Value = Spec> {
        let condition = (0..VALUES.len(), prop::collection::vec(0usize..8, 1..=3));
        (
            prop::collection::vec(condition, 0..=3),
            0usize..12,
            any::<bool>(),
        )
            .prop_map(|(conds, coded, reply)| {
                if coded < 8 && conds.is_empty() {
                    return Spec::Coded(coded, reply);
                }
                let mut pairs: Vec<(String, Vec<String>)> = Vec::new();
                for (k, picks) in conds {
                    let (key, values) = VALUES[k];
                    if pairs.iter().any(|(seen, _)| seen == key) {
                        continue;
                    }
                    let mut vs: Vec<String> = picks
                        .iter()
                        .map(|p| values[p % values.len()].to_owned())
                        .collect();
                    if key.ends_with("regex") {
                        vs.truncate(1);
                    }
                    pairs.push((key.to_owned(), vs));
                }
                Spec::Conditions(pairs, reply)
            })
    }

    const PIECES: &[&str] = &[
        "a", " ", "hello", "你好", "k1", "12", "he", "ll", " x", "sub ", "A", "topic:z", "HELLO",
        "2",
    ];

    fn message_strategy() -> impl Strategy<Value = Message> {
        let words = prop::collection::vec(0..PIECES.len(), 0..=3)
            .prop_map(|ps| ps.into_iter().map(|p| PIECES[p]).collect::<String>());
        let from = prop::sample::select(vec!["u1", "u2", "u3"]);
        let name = prop::sample::select(vec!["subscribe", "SCAN", "CLICK", "VIEW", "Weird_Event"]);
        prop_oneof![
            4 => (from.clone(), words.clone()).prop_map(|(f, w)| text(f, &w)),
            3 => (from.clone(), name, prop::option::of(words))
                .prop_map(|(f, n, k)| event(f, n, k.as_deref().filter(|k| !k.trim().is_empty()))),
            1 => from.prop_map(image),
        ]
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(300))]

        #[test]
        fn the_indexed_plan_is_the_linear_plan(
            specs in prop::collection::vec(rule_strategy(), 1..40),
            messages in prop::collection::vec(message_strategy(), 1..25),
        ) {
            let rules: Vec<Rule> = specs.iter().map(Spec::rule).collect();
            let index = Index::build(&rules);
            // A small set limit: regexes split into several sets, the largest matched alone.
            let small = Index::build_with(&rules, 16 * 1024);
            for msg in &messages {
                let expected = plan_linear(&rules, msg);
                prop_assert_eq!(&index.plan(&rules, msg), &expected);
                prop_assert_eq!(&small.plan(&rules, msg), &expected);
            }
        }
    }
}
