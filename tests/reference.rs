//! The generated reference pages (`docs/reference/`) are what the code says: a flag, header, `bon` field, metric or
//! error added, renamed or reworded without regenerating them fails here. `BON_BLESS=1 cargo test --test reference`
//! rewrites them.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic, reason = "tests fail loudly")]

use std::path::PathBuf;

use bon_proxy::openai::{BON_FIELDS, BonOptions};
use serde_json::{Map, Value};

fn dir() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("docs/reference")
}

#[test]
fn the_reference_pages_match_the_code() {
    let bless = std::env::var_os("BON_BLESS").is_some();
    let mut stale = Vec::new();
    for (name, text) in bon_proxy::reference::pages() {
        let path = dir().join(name);
        if bless {
            std::fs::create_dir_all(dir()).unwrap();
            std::fs::write(&path, &text).unwrap();
        } else if std::fs::read_to_string(&path).ok().as_deref() != Some(text.as_str()) {
            stale.push(name);
        }
    }
    assert!(
        stale.is_empty(),
        "docs/reference/{stale:?} drifted from the code: run `BON_BLESS=1 cargo test --test reference`"
    );
}

#[test]
fn every_bon_field_is_listed_and_every_listed_field_is_one() {
    // Each listed name is accepted (the object denies unknown fields)...
    for (name, _) in BON_FIELDS {
        let one: Map<String, Value> = [(name.to_owned(), Value::Null)].into_iter().collect();
        serde_json::from_value::<BonOptions>(Value::Object(one)).unwrap_or_else(|e| panic!("{name}: {e}"));
    }
    // ... and every field the object has is listed.
    let all: Map<String, Value> = BON_FIELDS.iter().map(|(n, _)| ((*n).to_owned(), Value::Bool(true))).collect();
    let probe = serde_json::json!({"n": 1, "return_candidates": true, "guard": true, "prune_every": 1, "prune_keep": 1,
        "prune_confidence": 1, "prune_at": 1, "straggler_wait_ms": 1, "strategy": 1, "answer": 1, "shortlist": 1,
        "stop_on_agreement": true, "confidence_keep": 1});
    let full: BonOptions = serde_json::from_value(probe).unwrap();
    let written = serde_json::to_value(full).unwrap();
    let mut fields: Vec<&String> = written.as_object().unwrap().keys().collect();
    let mut listed: Vec<&String> = all.keys().collect();
    fields.sort();
    listed.sort();
    assert_eq!(fields, listed, "BON_FIELDS and BonOptions differ");
}

#[test]
fn every_header_constant_is_in_a_table() {
    let source =
        std::fs::read_to_string(PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("src/server/headers.rs")).unwrap();
    let tables = bon_proxy::reference::pages().into_iter().find(|(n, _)| *n == "headers.md").unwrap().1;
    for line in source.lines().filter(|l| l.starts_with("pub const HEADER_")) {
        let value = line.split('"').nth(1).unwrap();
        assert!(tables.contains(&format!("`{value}`")), "{value} is in no table of headers.rs");
    }
}

#[test]
fn the_readme_is_short_and_opens_with_the_two_commands() {
    let readme = std::fs::read_to_string(PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("README.md")).unwrap();
    let lines: Vec<&str> = readme.lines().collect();
    assert!(lines.len() <= 250, "README.md has {} lines; the guide is docs/guide/", lines.len());
    let first_screen = lines[..lines.len().min(50)].join("\n");
    for command in ["scripts/run --upstream", "scripts/test"] {
        assert!(first_screen.contains(command), "{command} is not in README.md's first 50 lines");
    }
    // Every relative link points at a file of the repository.
    for link in readme.split("](").skip(1).filter_map(|rest| rest.split(')').next()) {
        if link.starts_with("http") {
            continue;
        }
        let path = link.split('#').next().unwrap();
        assert!(
            PathBuf::from(env!("CARGO_MANIFEST_DIR")).join(path).exists(),
            "README.md links to {link}, which is not there"
        );
    }
}
