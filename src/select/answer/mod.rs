//! Answer extraction for the vote strategies: what final answer a candidate gives, normalised so that equal answers
//! compare equal.
//!
//! Normalisation (every extractor): surrounding whitespace, quotes, backticks, `**`, currency signs (`$ € £ ¥`) and
//! a trailing `%` are removed (`50%` = `50`), inner whitespace collapses to one space, letters are lower-cased,
//! trailing `.`, `,`, `;`, `:`, `!` and `?` are dropped. Then, when the whole result is one:
//!
//! - a **number** is written canonically and exactly (`number`): `1,000`, `1000`, `1000.0` and `+1e3` are all
//!   `1000`, `0.50` is `0.5`, integers compare digit for digit at any size (no f64);
//! - a **fraction** `p/q` or LaTeX `\frac{p}{q}` (`\dfrac`, `\tfrac`) is exact: `3/4` = `0.75` = `6/8` =
//!   `\frac{3}{4}`; one without a terminating decimal is `p/q` in lowest terms (`2/6` = `1/3`);
//! - a **range** `a-b` (hyphen or dash, spaced or not) is its own form `a-b` with both ends canonical (`2–3` =
//!   `2 - 3` = `2-3`), never the number `-3`;
//! - a **time** `h:mm` or `h:mm:ss` is its own form without a leading zero (`01:30` = `1:30`), never `30`;
//! - anything else is text.
//!
//! Finding the last number in a text reads those shapes too (a range, a time, a date `2024-01-31`, a fraction, a
//! `\frac`), and a `-` right after a letter or digit is a hyphen, not a minus sign (`x-3` gives `3`). JSON answers
//! (`json:`) that are objects or arrays compare canonically: object keys sorted at every depth.

use std::sync::LazyLock;

use regex::Regex;
use serde_json::Value;

mod number;

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

/// The text after `answer:` on a line (case-insensitive). Not `answer is`: prose says "a multi-step answer is
/// indeed a problem" (seen in SmolLM2's answers); "The answer is **42**." is found as its last number.
static ANSWER_LINE: LazyLock<Option<Regex>> = LazyLock::new(|| Regex::new(r"(?i)\banswer\s*:\s*(.*)$").ok());
/// Something an answer's number can be, the first alternative that matches at a position wins: a `\frac`, a time, a
/// date, a range, a fraction, a number (optional sign, thousands separators, decimals, exponent).
static NUMBER: LazyLock<Option<Regex>> = LazyLock::new(|| {
    Regex::new(
        r"(?x)
        \\[dt]?frac\{\s*[-+\x{2212}]?\d+\s*\}\{\s*\d+\s*\}
        | \d{1,2}:\d{2}(?::\d{2})?\b
        | \d{4}-\d{2}-\d{2}\b
        | \d+(?:\.\d+)?\ ?[-\x{2013}\x{2014}]\ ?\d+(?:\.\d+)?\b
        | [-+\x{2212}]?\d+/\d+\b
        | [-+\x{2212}]?(?:\d{1,3}(?:,\d{3})+|\d+)(?:\.\d+)?(?:[eE][-+]?\d+)?
        | [-+\x{2212}]?\.\d+",
    )
    .ok()
});
/// Whole-answer shapes (after normalisation): a `\frac`, a fraction, a range, a time.
static FRAC: LazyLock<Option<Regex>> =
    LazyLock::new(|| Regex::new(r"^\\[dt]?frac\{\s*([-+\x{2212}]?\d+)\s*\}\{\s*(\d+)\s*\}$").ok());
static FRACTION: LazyLock<Option<Regex>> = LazyLock::new(|| Regex::new(r"^([-+\x{2212}]?\d+)\s*/\s*(\d+)$").ok());
static RANGE: LazyLock<Option<Regex>> = LazyLock::new(|| {
    Regex::new(r"^([-+\x{2212}]?[\d,]*\.?\d+)\s*[-\x{2013}\x{2014}]\s*([-+\x{2212}]?[\d,]*\.?\d+)$").ok()
});
static TIME: LazyLock<Option<Regex>> = LazyLock::new(|| Regex::new(r"^0?(\d{1,2}):(\d{2}(?::\d{2})?)$").ok());

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

/// The last number-like span of `text` (see the module documentation); a sign right after a letter or digit is a
/// hyphen and left out.
fn last_number(text: &str) -> Option<&str> {
    let m = NUMBER.as_ref()?.find_iter(text).last()?;
    let after_word = text[..m.start()].chars().next_back().is_some_and(char::is_alphanumeric);
    Some(if after_word { m.as_str().trim_start_matches(['-', '+', '\u{2212}']) } else { m.as_str() })
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
        other => Some(sorted(other).to_string()),
    }
    .filter(|a| !a.is_empty())
}

/// `value` with the keys of every object sorted.
fn sorted(value: &Value) -> Value {
    match value {
        Value::Object(map) => {
            let mut entries: Vec<(&String, &Value)> = map.iter().collect();
            entries.sort_by(|a, b| a.0.cmp(b.0));
            Value::Object(entries.into_iter().map(|(k, v)| (k.clone(), sorted(v))).collect())
        }
        Value::Array(items) => Value::Array(items.iter().map(sorted).collect()),
        other => other.clone(),
    }
}

/// Normalises an answer (see the module documentation).
pub fn normalise(raw: &str) -> String {
    let collapsed = raw.split_whitespace().collect::<Vec<_>>().join(" ").to_lowercase();
    let mut s = collapsed.as_str();
    loop {
        let before = s.len();
        s = s.trim_matches(|c: char| c.is_whitespace() || matches!(c, '"' | '\'' | '`' | '$' | '*' | '€' | '£' | '¥'));
        s = s.trim_end_matches(['.', ',', ';', ':', '!', '?', '%']);
        if s.len() == before {
            break;
        }
    }
    canonical(s).unwrap_or_else(|| s.to_owned())
}

/// `s` in its canonical form when the whole of it is a number, a fraction, a range or a time.
fn canonical(s: &str) -> Option<String> {
    let caps = |re: &LazyLock<Option<Regex>>| re.as_ref().and_then(|re| re.captures(s));
    if let Some(n) = number::decimal(s) {
        return Some(n);
    }
    if let Some(c) = caps(&FRAC).or_else(|| caps(&FRACTION)) {
        return number::fraction(&c[1], &c[2]);
    }
    if let Some(c) = caps(&RANGE) {
        return Some(format!("{}-{}", number::decimal(&c[1])?, number::decimal(&c[2])?));
    }
    caps(&TIME).map(|c| format!("{}:{}", &c[1], &c[2]))
}

#[cfg(test)]
mod tests;
