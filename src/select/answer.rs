//! Answer extraction for the vote strategies: what final answer a candidate gives, normalised so that equal answers
//! compare equal.
//!
//! Normalisation (every extractor): surrounding whitespace, quotes, backticks, `**` and `$` are removed, inner
//! whitespace collapses to one space, letters are lower-cased, trailing `.`, `,`, `;`, `:`, `!` and `?` are dropped.
//! A result that is a number is written canonically, so `1,000`, `1000`, `1000.0` and `+1e3` are all `1000`, and
//! `0.50` is `0.5`.

use std::sync::LazyLock;

use regex::Regex;
use serde_json::Value;

/// How a candidate's final answer is found (`bon.answer`, `--answer`).
#[derive(Clone, Debug)]
pub enum Extractor {
    /// `\boxed{…}` (the last one), else the last line containing `answer:` (its last number if it has one, else what
    /// follows the colon), else the last number, else the whole text.
    Auto,
    /// The last number in the text.
    LastNumber,
    /// The content of the last `\boxed{…}`.
    Boxed,
    /// The value at a JSON pointer of the text parsed as JSON (a ```json fence around it is allowed).
    Json(String),
    /// The first capture group (or the whole match, without groups) of the first match of a pattern.
    Regex(Regex),
    /// The whole text.
    Text,
}

impl PartialEq for Extractor {
    fn eq(&self, other: &Self) -> bool {
        self.spec() == other.spec()
    }
}

/// The text after `answer:` on a line (case-insensitive).
static ANSWER_LINE: LazyLock<Option<Regex>> = LazyLock::new(|| Regex::new(r"(?i)\banswer\s*:\s*(.*)$").ok());
/// A number: digits with optional thousands separators, decimals and exponent, and an optional sign.
static NUMBER: LazyLock<Option<Regex>> =
    LazyLock::new(|| Regex::new(r"[-+]?(?:\d{1,3}(?:,\d{3})+|\d+)(?:\.\d+)?(?:[eE][-+]?\d+)?|[-+]?\.\d+").ok());

/// Longest pattern `regex:` accepts, and the compiled size it may take (a pattern is client input).
const MAX_PATTERN: usize = 512;
const MAX_COMPILED: usize = 1 << 20;

impl Extractor {
    /// Parses `auto`, `last-number`, `boxed`, `text`, `json:/POINTER` or `regex:PATTERN`.
    pub fn parse(spec: &str) -> Result<Self, String> {
        Ok(match spec {
            "auto" => Self::Auto,
            "last-number" => Self::LastNumber,
            "boxed" => Self::Boxed,
            "text" => Self::Text,
            _ => {
                if let Some(pointer) = spec.strip_prefix("json:") {
                    if !(pointer.is_empty() || pointer.starts_with('/')) {
                        return Err(format!("json:{pointer} is not a JSON pointer (it must start with `/`)"));
                    }
                    Self::Json(pointer.to_owned())
                } else if let Some(pattern) = spec.strip_prefix("regex:") {
                    if pattern.len() > MAX_PATTERN {
                        return Err(format!("regex: patterns are limited to {MAX_PATTERN} bytes"));
                    }
                    let re = regex::RegexBuilder::new(pattern)
                        .size_limit(MAX_COMPILED)
                        .build()
                        .map_err(|e| format!("regex:{pattern} does not compile: {e}"))?;
                    Self::Regex(re)
                } else {
                    return Err(format!(
                        "{spec:?} is not one of auto, last-number, boxed, text, json:/POINTER, regex:PATTERN"
                    ));
                }
            }
        })
    }

    /// The spelling `parse` reads (cache keys, reports).
    pub fn spec(&self) -> String {
        match self {
            Self::Auto => "auto".into(),
            Self::LastNumber => "last-number".into(),
            Self::Boxed => "boxed".into(),
            Self::Text => "text".into(),
            Self::Json(p) => format!("json:{p}"),
            Self::Regex(re) => format!("regex:{}", re.as_str()),
        }
    }

    /// The normalised final answer of `text`; None when this extractor finds none (or it normalises to nothing).
    pub fn extract(&self, text: &str) -> Option<String> {
        let raw = match self {
            Self::Auto => boxed(text).or_else(|| answer_line(text)).or_else(|| last_number(text)).or(Some(text))?,
            Self::LastNumber => last_number(text)?,
            Self::Boxed => boxed(text)?,
            Self::Text => text,
            Self::Json(pointer) => return json_at(text, pointer),
            Self::Regex(re) => {
                let caps = re.captures(text)?;
                caps.get(1).or_else(|| caps.get(0))?.as_str()
            }
        };
        Some(normalise(raw)).filter(|a| !a.is_empty())
    }
}

/// The content of the last `\boxed{…}`, braces balanced.
fn boxed(text: &str) -> Option<&str> {
    let start = text.rfind("\\boxed{")? + "\\boxed{".len();
    let mut depth = 1usize;
    for (i, c) in text[start..].char_indices() {
        match c {
            '{' => depth += 1,
            '}' => {
                depth -= 1;
                if depth == 0 {
                    return Some(&text[start..start + i]);
                }
            }
            _ => {}
        }
    }
    None
}

/// On the last line with `answer:`: its last number, else what follows the colon.
fn answer_line(text: &str) -> Option<&str> {
    let re = ANSWER_LINE.as_ref()?;
    let rest = text.lines().rev().find_map(|l| re.captures(l).and_then(|c| c.get(1)))?.as_str();
    last_number(rest).or(Some(rest)).filter(|r| !r.trim().is_empty())
}

fn last_number(text: &str) -> Option<&str> {
    NUMBER.as_ref()?.find_iter(text).last().map(|m| m.as_str())
}

/// The value at `pointer` in `text` parsed as JSON (a Markdown code fence around it is removed).
fn json_at(text: &str, pointer: &str) -> Option<String> {
    let body = text.trim();
    let body = body
        .strip_prefix("```json")
        .or_else(|| body.strip_prefix("```"))
        .and_then(|b| b.trim_end().strip_suffix("```"))
        .unwrap_or(body);
    let doc: Value = serde_json::from_str(body.trim()).ok()?;
    match doc.pointer(pointer)? {
        Value::String(s) => Some(normalise(s)),
        Value::Null => None,
        Value::Number(n) => Some(normalise(&n.to_string())),
        other => Some(other.to_string()),
    }
    .filter(|a| !a.is_empty())
}

/// Normalises an answer (see the module documentation).
pub fn normalise(raw: &str) -> String {
    let collapsed = raw.split_whitespace().collect::<Vec<_>>().join(" ").to_lowercase();
    let mut s = collapsed.as_str();
    loop {
        let before = s.len();
        s = s.trim_matches(|c: char| c.is_whitespace() || matches!(c, '"' | '\'' | '`' | '$' | '*'));
        s = s.trim_end_matches(['.', ',', ';', ':', '!', '?']);
        if s.len() == before {
            break;
        }
    }
    canonical_number(s).unwrap_or_else(|| s.to_owned())
}

/// `s` as a canonical number when the whole of it is one (thousands separators allowed).
fn canonical_number(s: &str) -> Option<String> {
    let m = NUMBER.as_ref()?.find(s)?;
    if m.start() != 0 || m.end() != s.len() {
        return None;
    }
    let x: f64 = s.replace(',', "").parse().ok()?;
    if !x.is_finite() {
        return None;
    }
    let x = if x == 0.0 { 0.0 } else { x };
    // Integers print without a fraction; others in Rust's shortest round-trip form.
    Some(if x.fract() == 0.0 && x.abs() < 1e15 { format!("{}", x as i64) } else { format!("{x}") })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ex(spec: &str, text: &str) -> Option<String> {
        Extractor::parse(spec).unwrap().extract(text)
    }

    #[test]
    fn numbers_compare_as_numbers() {
        for (a, b) in [("1,000", "1000"), ("1000.0", "1000"), ("+1e3", "1000"), ("0.50", "0.5"), ("-0", "0")] {
            assert_eq!(normalise(a), normalise(b), "{a} vs {b}");
        }
        assert_eq!(normalise("1,000"), "1000");
        assert_eq!(normalise(" **$376.** "), "376");
        assert_eq!(normalise("12, 13"), "12, 13", "a list is not one number");
    }

    #[test]
    fn text_normalises_case_space_and_trailing_punctuation() {
        assert_eq!(normalise("  Paris. "), "paris");
        assert_eq!(normalise("The   Eiffel\nTower!?"), "the eiffel tower");
        assert_eq!(normalise("\"Yes\""), "yes");
    }

    #[test]
    fn auto_prefers_boxed_then_answer_line_then_last_number_then_text() {
        assert_eq!(ex("auto", "so 2+2 = \\boxed{4}, and 5 later").as_deref(), Some("4"));
        assert_eq!(ex("auto", "\\boxed{\\frac{1}{2}}").as_deref(), Some("\\frac{1}{2}"));
        assert_eq!(ex("auto", "47 x 8 = 376\nAnswer: 47 * 8 = 376 apples\nHope this helps 1").as_deref(), Some("376"));
        assert_eq!(ex("auto", "Final answer: Paris.").as_deref(), Some("paris"));
        assert_eq!(ex("auto", "47 times 8 is 376.").as_deref(), Some("376"));
        assert_eq!(ex("auto", "It is 1,234 in total").as_deref(), Some("1234"));
        assert_eq!(ex("auto", "  Paris ").as_deref(), Some("paris"));
        assert_eq!(ex("auto", "   "), None);
    }

    #[test]
    fn explicit_extractors() {
        assert_eq!(ex("last-number", "3 apples and -2.50 pears").as_deref(), Some("-2.5"));
        assert_eq!(ex("last-number", "no digits here"), None);
        assert_eq!(ex("boxed", "x = 5"), None);
        assert_eq!(ex("boxed", "\\boxed{x = {5}}").as_deref(), Some("x = {5}"));
        assert_eq!(ex("boxed", "\\boxed{unclosed"), None);
        assert_eq!(ex("text", "Hello  World."), Some("hello world".into()));
    }

    #[test]
    fn json_pointer() {
        assert_eq!(ex("json:/answer", r#"{"answer": "Paris", "why": "x"}"#).as_deref(), Some("paris"));
        assert_eq!(ex("json:/a/0", "```json\n{\"a\": [1000.0]}\n```").as_deref(), Some("1000"));
        assert_eq!(ex("json:/b", r#"{"b": {"y": 1, "x": 2}}"#).as_deref(), Some(r#"{"y":1,"x":2}"#));
        assert_eq!(ex("json:/missing", r#"{"a": 1}"#), None);
        assert_eq!(ex("json:/a", r#"{"a": null}"#), None);
        assert_eq!(ex("json:/a", "not json"), None);
        assert!(Extractor::parse("json:answer").is_err());
    }

    #[test]
    fn regex_takes_the_first_group_of_the_first_match() {
        assert_eq!(ex(r"regex:ANSWER=(\w+)", "ANSWER=Blue then ANSWER=red").as_deref(), Some("blue"));
        assert_eq!(ex(r"regex:\d+", "a 12 b 13").as_deref(), Some("12"));
        assert_eq!(ex(r"regex:(x)", "nothing"), None);
        let e = Extractor::parse("regex:(unclosed").unwrap_err();
        assert!(e.contains("does not compile"), "{e}");
        assert!(Extractor::parse(&format!("regex:{}", "a".repeat(600))).is_err());
        assert!(Extractor::parse("majority").is_err());
    }

    #[test]
    fn spec_round_trips() {
        for s in ["auto", "last-number", "boxed", "text", "json:/a/b", r"regex:(\d+)"] {
            assert_eq!(Extractor::parse(s).unwrap().spec(), s);
        }
    }
}
