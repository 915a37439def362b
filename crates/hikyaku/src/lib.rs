//! hikyaku: a mail-sending gateway. Devices and applications that speak plain
//! SMTP hand it messages; it sends them through Exchange Online or Gmail with
//! OAuth 2.0. See the README for the flow of a message and the module map.

pub(crate) mod address;
pub mod admin;
pub mod app;
pub mod cli_account;
pub mod cli_app;
pub mod cli_login;
pub mod clock;
pub(crate) mod clockjump;
pub mod cloud;
pub mod config;
pub mod connection;
pub mod control;
pub mod delivery;
pub mod http;
pub(crate) mod i18n;
pub mod intake;
pub mod metrics;
pub(crate) mod passwords;
pub mod provider;
pub(crate) mod proxy;
pub mod queue;
pub mod roles;
pub mod secrets;
pub mod store;
pub(crate) mod throttle;
pub mod tls;
pub mod tokens;
pub(crate) mod web;

/// The module graph of this crate: which top-level module names which other
/// one. Read from the source text, so that the check needs no tool.
#[cfg(test)]
mod module_graph {
    use std::collections::{BTreeMap, BTreeSet};
    use std::path::Path;

    fn sources(dir: &Path, out: &mut Vec<std::path::PathBuf>) {
        for entry in std::fs::read_dir(dir).into_iter().flatten().flatten() {
            let path = entry.path();
            if path.is_dir() {
                sources(&path, out);
            } else if path.extension().is_some_and(|e| e == "rs") {
                out.push(path);
            }
        }
    }

    /// Top-level module names after `crate::`, including those inside
    /// `crate::{a, b::c}` groups.
    fn named(text: &str) -> BTreeSet<String> {
        let mut names = BTreeSet::new();
        for (i, _) in text.match_indices("crate::") {
            let rest = &text[i + "crate::".len()..];
            if let Some(group) = rest.strip_prefix('{') {
                let end = group.find('}').unwrap_or(group.len());
                // Nested groups close early; the names before them count.
                for part in group[..end].split(',') {
                    let name: String = part
                        .trim()
                        .chars()
                        .take_while(|c| c.is_ascii_alphanumeric() || *c == '_')
                        .collect();
                    if !name.is_empty() {
                        names.insert(name);
                    }
                }
            } else {
                let name: String = rest
                    .chars()
                    .take_while(|c| c.is_ascii_alphanumeric() || *c == '_')
                    .collect();
                names.insert(name);
            }
        }
        names
    }

    /// Code before the first `#[cfg(test)]` (tests may reach anywhere),
    /// without comment lines (a doc comment may name any module).
    fn product_code(text: &str) -> String {
        let code = text.find("#[cfg(test)]").map_or(text, |i| &text[..i]);
        code.lines()
            .filter(|l| !l.trim_start().starts_with("//"))
            .collect::<Vec<_>>()
            .join("\n")
    }

    fn graph() -> BTreeMap<String, BTreeSet<String>> {
        let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
        let mut files = Vec::new();
        sources(&src, &mut files);
        let modules: BTreeSet<String> = files
            .iter()
            .filter_map(|f| f.strip_prefix(&src).ok())
            .filter_map(|rel| rel.components().next())
            .map(|c| {
                c.as_os_str()
                    .to_string_lossy()
                    .trim_end_matches(".rs")
                    .to_string()
            })
            .filter(|m| m != "lib" && m != "main")
            .collect();
        let mut graph: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
        for file in &files {
            let Ok(rel) = file.strip_prefix(&src) else {
                continue;
            };
            let Some(first) = rel.components().next() else {
                continue;
            };
            let module = first
                .as_os_str()
                .to_string_lossy()
                .trim_end_matches(".rs")
                .to_string();
            if !modules.contains(&module) {
                continue;
            }
            let text = std::fs::read_to_string(file).unwrap_or_default();
            let deps = graph.entry(module.clone()).or_default();
            for name in named(&product_code(&text)) {
                if name != module && modules.contains(&name) {
                    deps.insert(name);
                }
            }
        }
        graph
    }

    /// A cycle through `start`, if there is one.
    fn cycle_from(graph: &BTreeMap<String, BTreeSet<String>>, start: &str) -> Option<Vec<String>> {
        let mut stack = vec![(start.to_string(), vec![start.to_string()])];
        let mut seen = BTreeSet::new();
        while let Some((node, path)) = stack.pop() {
            for next in graph.get(&node).into_iter().flatten() {
                if next == start {
                    let mut cycle = path.clone();
                    cycle.push(start.to_string());
                    return Some(cycle);
                }
                if seen.insert(next.clone()) {
                    let mut p = path.clone();
                    p.push(next.clone());
                    stack.push((next.clone(), p));
                }
            }
        }
        None
    }

    #[test]
    fn reads_grouped_and_plain_paths() {
        let names = named("use crate::{store::Store, tls};\nlet x = crate::clock::now();");
        let expected: BTreeSet<String> = ["store", "tls", "clock"]
            .iter()
            .map(|s| s.to_string())
            .collect();
        assert_eq!(names, expected);
    }

    #[test]
    fn finds_a_cycle_when_there_is_one() {
        let mut g: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
        g.entry("a".into()).or_default().insert("b".into());
        g.entry("b".into()).or_default().insert("a".into());
        assert_eq!(
            cycle_from(&g, "a"),
            Some(vec!["a".into(), "b".into(), "a".into()])
        );
    }

    #[test]
    fn top_level_modules_have_no_cycle() {
        let graph = graph();
        assert!(graph.len() > 5, "the module graph was not read: {graph:?}");
        let cycles: Vec<String> = graph
            .keys()
            .filter_map(|m| cycle_from(&graph, m))
            .map(|c| c.join(" → "))
            .collect();
        assert!(
            cycles.is_empty(),
            "cycles between top-level modules:\n{}",
            cycles.join("\n")
        );
    }
}
