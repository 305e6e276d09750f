//! The crate's rooms and which may use which. Every top-level module's `crate::…` paths (code,
//! not comments) are read from `src/`; the test fails when a module reaches one it must not
//! know, or when two modules know each other through any path (a cycle).
//!
//! The layers, lowest first ([`ORDER`], as the tour in `src/lib.rs` lists them): a module uses
//! only modules before it.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

/// The top-level modules, lowest first.
const ORDER: &[&str] = &[
    "support",
    "telemetry",
    "wechat",
    "config",
    "metrics",
    "store",
    "bot",
    "rules",
    "server",
    "outbound",
    "push",
    "webhooks",
    "apps",
    "simulator",
    "emulator",
    "admin",
    "app",
    "cli",
];

/// Paths that must never appear: (module, module it must not use, why).
const FORBIDDEN: &[(&str, &str, &str)] = &[
    (
        "rules",
        "outbound",
        "the app registers outbound's script functions",
    ),
    ("rules", "push", "the app registers push's script functions"),
    ("rules", "app", "the app is built on the rules"),
    (
        "rules",
        "apps",
        "the app registers the platform's script functions",
    ),
    ("push", "apps", "apps are built on the push service"),
    (
        "webhooks",
        "apps",
        "the outbox knows bodies, not the events they tell",
    ),
    ("config", "push", "config sits below every service"),
    ("config", "rules", "config sits below every service"),
    ("wechat", "store", "protocol code does no I/O"),
    ("wechat", "server", "protocol code does no I/O"),
    ("bot", "rules", "the dispatcher knows handlers, not Rhai"),
    ("bot", "app", "the app is built on the dispatcher"),
];

fn src() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("src")
}

/// The top-level modules: `src/NAME.rs` and `src/NAME/`.
fn modules() -> BTreeMap<String, Vec<PathBuf>> {
    let mut out: BTreeMap<String, Vec<PathBuf>> = BTreeMap::new();
    for entry in std::fs::read_dir(src()).unwrap().flatten() {
        let path = entry.path();
        let name = path.file_stem().unwrap().to_string_lossy().into_owned();
        if matches!(name.as_str(), "lib" | "main") {
            continue;
        }
        let files = out.entry(name).or_default();
        if path.is_dir() {
            collect(&path, files);
        } else if path.extension().is_some_and(|x| x == "rs") {
            files.push(path);
        }
    }
    out
}

fn collect(dir: &Path, out: &mut Vec<PathBuf>) {
    for entry in std::fs::read_dir(dir).unwrap().flatten() {
        let path = entry.path();
        if path.is_dir() {
            collect(&path, out);
        } else if path.extension().is_some_and(|x| x == "rs") {
            out.push(path);
        }
    }
}

/// The modules `text` names as `crate::NAME` or in a group `crate::{NAME, …}`, outside
/// comments (` // ` ends a line's code, `//` at its start makes it a comment, so a URL in a
/// string does not hide what follows it).
fn uses(text: &str, known: &BTreeSet<String>) -> BTreeSet<String> {
    let mut found = BTreeSet::new();
    let code: String = text
        .lines()
        .map(|line| match line.trim_start().starts_with("//") {
            true => "",
            false => line.split(" // ").next().unwrap_or(""),
        })
        .collect::<Vec<_>>()
        .join("\n");
    let name_at = |s: &str| -> String {
        s.trim_start()
            .chars()
            .take_while(|c| c.is_ascii_alphanumeric() || *c == '_')
            .collect()
    };
    let mut rest = code.as_str();
    while let Some(at) = rest.find("crate::") {
        rest = &rest[at + "crate::".len()..];
        let names: Vec<String> = match rest.strip_prefix('{') {
            // `crate::{a, b::c, d}`: the first segment of each item (groups span lines).
            Some(group) => group[..group.find('}').unwrap_or(group.len())]
                .split(',')
                .map(name_at)
                .collect(),
            None => vec![name_at(rest)],
        };
        found.extend(names.into_iter().filter(|n| known.contains(n)));
    }
    found
}

/// module → the modules it uses, and where (for the message).
fn graph() -> BTreeMap<String, BTreeMap<String, String>> {
    let modules = modules();
    let known: BTreeSet<String> = modules.keys().cloned().collect();
    let mut graph = BTreeMap::new();
    for (name, files) in &modules {
        let mut edges: BTreeMap<String, String> = BTreeMap::new();
        for file in files {
            let text = std::fs::read_to_string(file).unwrap();
            for used in uses(&text, &known) {
                if &used != name {
                    let rel = file.strip_prefix(src()).unwrap().display().to_string();
                    edges.entry(used).or_insert(rel);
                }
            }
        }
        graph.insert(name.clone(), edges);
    }
    graph
}

#[test]
fn no_module_uses_one_it_must_not_know() {
    let graph = graph();
    let mut wrong = Vec::new();
    for (from, to, why) in FORBIDDEN {
        if let Some(file) = graph.get(*from).and_then(|e| e.get(*to)) {
            wrong.push(format!("src/{file} uses crate::{to} ({why})"));
        }
    }
    assert!(wrong.is_empty(), "{}", wrong.join("\n"));
}

#[test]
fn every_module_uses_only_lower_layers() {
    let graph = graph();
    let rank = |m: &str| ORDER.iter().position(|o| *o == m);
    let mut wrong = Vec::new();
    for (from, edges) in &graph {
        let Some(from_rank) = rank(from) else {
            wrong.push(format!(
                "src/{from}: a new module; give it its place in ORDER"
            ));
            continue;
        };
        for (to, file) in edges {
            if rank(to).is_none_or(|r| r >= from_rank) {
                wrong.push(format!(
                    "src/{file} ({from}) uses crate::{to}, a layer above it"
                ));
            }
        }
    }
    assert!(wrong.is_empty(), "{}", wrong.join("\n"));
}

#[test]
fn modules_form_no_cycle() {
    let graph = graph();
    // Depth-first search for a back edge, reporting the cycle's path.
    fn visit(
        node: &str,
        graph: &BTreeMap<String, BTreeMap<String, String>>,
        path: &mut Vec<String>,
        done: &mut BTreeSet<String>,
    ) -> Option<Vec<String>> {
        if let Some(at) = path.iter().position(|n| n == node) {
            let mut cycle = path[at..].to_vec();
            cycle.push(node.to_owned());
            return Some(cycle);
        }
        if done.contains(node) {
            return None;
        }
        path.push(node.to_owned());
        for next in graph.get(node).into_iter().flat_map(BTreeMap::keys) {
            if let Some(cycle) = visit(next, graph, path, done) {
                return Some(cycle);
            }
        }
        path.pop();
        done.insert(node.to_owned());
        None
    }
    let mut done = BTreeSet::new();
    for node in graph.keys() {
        if let Some(cycle) = visit(node, &graph, &mut Vec::new(), &mut done) {
            let steps: Vec<String> = cycle
                .windows(2)
                .map(|w| format!("{} → {} (src/{})", w[0], w[1], graph[&w[0]][&w[1]]))
                .collect();
            panic!("import cycle:\n{}", steps.join("\n"));
        }
    }
}

#[test]
fn the_checker_sees_real_uses_and_skips_comments() {
    let known: BTreeSet<String> = ["push", "rules", "outbound", "app"]
        .iter()
        .map(|s| s.to_string())
        .collect();
    let text =
        "use crate::push::Pushes;\n/// [`crate::rules::Rules`]\nlet x = 1; // crate::rules\n";
    assert_eq!(uses(text, &known), ["push".to_owned()].into());
    let grouped = "use crate::{\n    outbound::Client,\n    push,\n};\n\
                   let u = \"http://x\"; crate::app::App::builder;\n";
    assert_eq!(
        uses(grouped, &known),
        ["app".to_owned(), "outbound".to_owned(), "push".to_owned()].into()
    );
}

#[test]
fn the_tour_in_lib_rs_lists_the_layers_in_order() {
    let lib = std::fs::read_to_string(src().join("lib.rs")).unwrap();
    let tour: Vec<String> = lib
        .lines()
        .skip_while(|l| !l.starts_with("//! ## Layout"))
        .take_while(|l| !l.starts_with("//! ## A bot"))
        .filter_map(|l| l.strip_prefix("//! - [`"))
        .map(|l| l.split('`').next().unwrap_or("").to_owned())
        .collect();
    assert_eq!(
        tour, ORDER,
        "src/lib.rs's tour and ORDER list the layers alike"
    );
    let declared: BTreeSet<String> = modules().keys().cloned().collect();
    let ordered: BTreeSet<String> = ORDER.iter().map(|s| s.to_string()).collect();
    assert_eq!(declared, ordered, "every module of src/ has its place");
}
