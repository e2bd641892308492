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

/// The field or variant names declared in the block that opens with `opening` in a source file: the lines one
/// indent deep that start with a lower-case field (`pub name:`) or an upper-case variant (`Name {`, `Name(`, `Name,`).
fn declared(file: &str, opening: &str) -> Vec<String> {
    let source = std::fs::read_to_string(PathBuf::from(env!("CARGO_MANIFEST_DIR")).join(file)).unwrap();
    let block = source.split(opening).nth(1).unwrap().split("\n}").next().unwrap();
    block
        .lines()
        .filter_map(|l| {
            l.strip_prefix("    ").filter(|l| !l.starts_with(' ') && !l.starts_with("//") && !l.starts_with('#'))
        })
        .filter_map(|l| {
            let l = l.strip_prefix("pub ").unwrap_or(l);
            let name: String = l.chars().take_while(|c| c.is_alphanumeric() || *c == '_').collect();
            (!name.is_empty()).then_some(name)
        })
        .collect()
}

#[test]
fn every_bon_field_is_listed_and_every_listed_field_is_one() {
    // Each listed name is accepted (the object denies unknown fields)...
    for (name, _) in BON_FIELDS {
        let one: Map<String, Value> = [(name.to_owned(), Value::Null)].into_iter().collect();
        serde_json::from_value::<BonOptions>(Value::Object(one)).unwrap_or_else(|e| panic!("{name}: {e}"));
    }
    // ... and every field the struct declares is listed.
    let mut fields = declared("src/openai.rs", "pub struct BonOptions {");
    let mut listed: Vec<String> = BON_FIELDS.iter().map(|(n, _)| (*n).to_owned()).collect();
    fields.sort();
    listed.sort();
    assert_eq!(fields, listed, "BON_FIELDS and BonOptions differ");
}

#[test]
fn every_error_variant_is_in_the_reference() {
    let mut variants = declared("src/error.rs", "pub enum ApiError {");
    let mut listed: Vec<String> = bon_proxy::error::ApiError::every_kind()
        .iter()
        .map(|e| format!("{e:?}").chars().take_while(|c| c.is_alphanumeric()).collect())
        .collect();
    variants.sort();
    listed.sort();
    assert_eq!(variants, listed, "ApiError::every_kind() does not list every variant");
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
