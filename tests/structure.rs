//! The house rules of `src/`, read from the sources: the top-level modules import each other without a circle, the
//! modules that do the work never import the ones that assemble the process (`config`, `state`, `server`, `eval`,
//! `reference`), no Rust file grows past ~400 lines, and every top-level module is on the map in
//! `docs/architecture.md`.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic, reason = "tests fail loudly")]

use std::{
    collections::{BTreeMap, BTreeSet},
    fs,
    path::{Path, PathBuf},
};

/// Modules that put the process together: nothing below them may import them.
const ASSEMBLY: [&str; 5] = ["config", "state", "server", "eval", "reference"];
const MAX_LINES: usize = 400;

fn rust_files(dir: &Path, out: &mut Vec<PathBuf>) {
    for entry in fs::read_dir(dir).unwrap() {
        let path = entry.unwrap().path();
        if path.is_dir() {
            rust_files(&path, out);
        } else if path.extension().is_some_and(|e| e == "rs") {
            out.push(path);
        }
    }
}

fn src() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("src")
}

/// The top-level module a file belongs to (`src/bon/prune/round.rs` → `bon`, `src/keys.rs` → `keys`).
fn module_of(path: &Path) -> String {
    let first = path.strip_prefix(src()).unwrap().components().next().unwrap();
    first.as_os_str().to_string_lossy().trim_end_matches(".rs").to_owned()
}

/// The top-level modules named by `crate::` paths in `text`, `use crate::{a::x, b}` groups included.
fn imported(text: &str) -> BTreeSet<String> {
    let mut out = BTreeSet::new();
    let mut rest = text;
    while let Some(at) = rest.find("crate::") {
        rest = &rest[at + "crate::".len()..];
        if let Some(group) = rest.strip_prefix('{') {
            // The group's top-level items: split at commas outside nested braces.
            let (mut depth, mut item) = (0, String::new());
            for c in group.chars() {
                match c {
                    '{' => depth += 1,
                    '}' if depth == 0 => break,
                    '}' => depth -= 1,
                    ',' if depth == 0 => {
                        out.insert(head(&item));
                        item.clear();
                        continue;
                    }
                    _ => {}
                }
                item.push(c);
            }
            out.insert(head(&item));
        } else {
            out.insert(head(rest));
        }
    }
    out.remove("");
    out
}

fn head(path: &str) -> String {
    path.trim_start().chars().take_while(|c| c.is_ascii_alphanumeric() || *c == '_').collect()
}

/// module → the other top-level modules it imports.
fn graph() -> BTreeMap<String, BTreeSet<String>> {
    let mut files = Vec::new();
    rust_files(&src(), &mut files);
    let modules: BTreeSet<String> = files.iter().map(|f| module_of(f)).collect();
    let mut graph: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
    for file in &files {
        let me = module_of(file);
        if me == "main" || me == "lib" {
            continue;
        }
        let uses = imported(&fs::read_to_string(file).unwrap());
        graph.entry(me.clone()).or_default().extend(uses.into_iter().filter(|m| *m != me && modules.contains(m)));
    }
    graph
}

/// A circle through `start`, if any (depth-first).
fn circle(graph: &BTreeMap<String, BTreeSet<String>>, start: &str) -> Option<Vec<String>> {
    fn walk(
        graph: &BTreeMap<String, BTreeSet<String>>,
        start: &str,
        path: &mut Vec<String>,
        seen: &mut BTreeSet<String>,
    ) -> bool {
        let last = path.last().unwrap().clone();
        for next in graph.get(&last).into_iter().flatten() {
            if next == start {
                path.push(next.clone());
                return true;
            }
            if seen.insert(next.clone()) {
                path.push(next.clone());
                if walk(graph, start, path, seen) {
                    return true;
                }
                path.pop();
            }
        }
        false
    }
    let mut path = vec![start.to_owned()];
    walk(graph, start, &mut path, &mut BTreeSet::new()).then_some(path)
}

#[test]
fn the_parser_sees_grouped_and_nested_imports() {
    let text = "use crate::{\n    bon::{Plan, guard},\n    metrics::Metrics,\n};\nlet x = crate::keys::Keys::new();";
    assert_eq!(imported(text), ["bon", "keys", "metrics"].map(String::from).into());
    let g = BTreeMap::from([
        ("a".to_owned(), BTreeSet::from(["b".to_owned()])),
        ("b".to_owned(), BTreeSet::from(["c".to_owned()])),
        ("c".to_owned(), BTreeSet::from(["a".to_owned()])),
    ]);
    assert_eq!(circle(&g, "a").unwrap(), ["a", "b", "c", "a"]);
}

#[test]
fn top_level_modules_import_each_other_without_a_circle() {
    let graph = graph();
    assert!(graph.len() >= 10, "found only {:?}", graph.keys());
    for module in graph.keys() {
        assert_eq!(circle(&graph, module), None, "a circle of imports; the graph: {graph:#?}");
    }
}

#[test]
fn the_modules_that_do_the_work_never_import_the_assembly() {
    for (module, uses) in graph() {
        if ASSEMBLY.contains(&module.as_str()) {
            continue;
        }
        let upward: Vec<&String> = uses.iter().filter(|u| ASSEMBLY.contains(&u.as_str())).collect();
        assert!(upward.is_empty(), "{module} imports {upward:?}, which sit above it");
    }
}

#[test]
fn no_rust_file_is_over_400_lines() {
    let mut files = Vec::new();
    rust_files(&src(), &mut files);
    let long: Vec<String> = files
        .iter()
        .map(|f| (f, fs::read_to_string(f).unwrap().lines().count()))
        .filter(|(_, n)| *n > MAX_LINES)
        .map(|(f, n)| format!("{} ({n})", f.display()))
        .collect();
    assert!(long.is_empty(), "split these: {long:?}");
}

#[test]
fn every_top_level_module_is_on_the_architecture_map() {
    let map = fs::read_to_string(Path::new(env!("CARGO_MANIFEST_DIR")).join("docs/architecture.md")).unwrap();
    let mut files = Vec::new();
    rust_files(&src(), &mut files);
    let modules: BTreeSet<String> = files.iter().map(|f| module_of(f)).filter(|m| m != "lib").collect();
    let missing: Vec<&String> = modules
        .iter()
        .filter(|m| !map.contains(&format!("src/{m}/")) && !map.contains(&format!("src/{m}.rs")))
        .collect();
    assert!(missing.is_empty(), "docs/architecture.md does not place {missing:?}");
}
