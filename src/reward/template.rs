//! Chat templates rendered the way `transformers`' `apply_chat_template(..., tokenize=False)` renders them.
//!
//! `transformers` uses Jinja2 with `trim_blocks`, `lstrip_blocks`, loop controls, the functions `raise_exception`
//! and `strftime_now`, and a `tojson` filter that is Python's `json.dumps` (`", "` and `": "` separators, no HTML
//! escaping). minijinja with the pycompat method shims (`.strip()`, `.items()`, `.startswith()`, …) plus those
//! functions renders published reward-model templates byte for byte.

use minijinja::{Environment, Error, ErrorKind, Value, value::Kwargs};
use serde_json::{Map, Value as Json};

/// A compiled chat template plus the special tokens `transformers` passes to it.
pub struct ChatTemplate {
    env: Environment<'static>,
    special_tokens: Map<String, Json>,
}

const NAME: &str = "chat_template";

impl ChatTemplate {
    /// Compiles `source`; `special_tokens` are the `bos_token`, `eos_token`, … strings of tokenizer_config.json.
    pub fn new(source: String, special_tokens: Map<String, Json>) -> Result<Self, Error> {
        let mut env = Environment::new();
        env.set_syntax(minijinja::syntax::SyntaxConfig::builder().trim_blocks(true).lstrip_blocks(true).build()?);
        env.set_unknown_method_callback(minijinja_contrib::pycompat::unknown_method_callback);
        env.add_function("raise_exception", raise_exception);
        env.add_function("strftime_now", strftime_now);
        env.add_filter("tojson", tojson);
        env.add_template_owned(NAME, source)?;
        Ok(Self { env, special_tokens })
    }

    /// Renders `messages` (OpenAI-shaped JSON objects) with `add_generation_prompt=False`, as a scored conversation.
    pub fn render(&self, messages: &[Json], tools: Option<&Json>) -> Result<String, Error> {
        let mut ctx = self.special_tokens.clone();
        ctx.insert("messages".into(), Json::Array(messages.to_vec()));
        ctx.insert("tools".into(), tools.cloned().unwrap_or(Json::Null));
        ctx.insert("documents".into(), Json::Null);
        ctx.insert("add_generation_prompt".into(), Json::Bool(false));
        self.env.get_template(NAME)?.render(Value::from(minijinja::value::Serde(&ctx)))
    }
}

fn raise_exception(message: String) -> Result<Value, Error> {
    Err(Error::new(ErrorKind::InvalidOperation, message))
}

/// Python's `json.dumps(x, ensure_ascii=False, indent=indent, separators=separators, sort_keys=sort_keys)`.
fn tojson(value: Value, kwargs: Kwargs) -> Result<Value, Error> {
    let indent: Option<usize> = kwargs.get("indent")?;
    let sort_keys: Option<bool> = kwargs.get("sort_keys")?;
    let separators: Option<Vec<String>> = kwargs.get("separators")?;
    kwargs.assert_all_used()?;
    let (item, key) = match separators.as_deref() {
        Some([item, key]) => (item.clone(), key.clone()),
        _ if indent.is_some() => (",".to_owned(), ": ".to_owned()),
        _ => (", ".to_owned(), ": ".to_owned()),
    };
    let json = serde_json::to_value(&value).map_err(|e| Error::new(ErrorKind::BadSerialization, e.to_string()))?;
    let style = PyJson { indent, item, key, sort_keys: sort_keys.unwrap_or(false) };
    let mut out = String::new();
    style.write(&json, 0, &mut out);
    Ok(Value::from_safe_string(out))
}

struct PyJson {
    indent: Option<usize>,
    item: String,
    key: String,
    sort_keys: bool,
}

impl PyJson {
    fn write(&self, v: &Json, level: usize, out: &mut String) {
        match v {
            Json::Null => out.push_str("null"),
            Json::Bool(b) => out.push_str(if *b { "true" } else { "false" }),
            Json::Number(n) => out.push_str(&py_number(n)),
            Json::String(s) => out.push_str(&Json::String(s.clone()).to_string()),
            Json::Array(items) => {
                if items.is_empty() {
                    out.push_str("[]");
                    return;
                }
                out.push('[');
                for (i, item) in items.iter().enumerate() {
                    self.separate(i, level + 1, out);
                    self.write(item, level + 1, out);
                }
                self.close(level, out);
                out.push(']');
            }
            Json::Object(map) => {
                if map.is_empty() {
                    out.push_str("{}");
                    return;
                }
                let mut entries: Vec<_> = map.iter().collect();
                if self.sort_keys {
                    entries.sort_by(|a, b| a.0.cmp(b.0));
                }
                out.push('{');
                for (i, (k, item)) in entries.into_iter().enumerate() {
                    self.separate(i, level + 1, out);
                    out.push_str(&Json::String(k.clone()).to_string());
                    out.push_str(&self.key);
                    self.write(item, level + 1, out);
                }
                self.close(level, out);
                out.push('}');
            }
        }
    }

    fn separate(&self, i: usize, level: usize, out: &mut String) {
        if i > 0 {
            out.push_str(if self.indent.is_some() { self.item.trim_end() } else { &self.item });
        }
        if let Some(width) = self.indent {
            out.push('\n');
            out.push_str(&" ".repeat(width * level));
        }
    }

    fn close(&self, level: usize, out: &mut String) {
        if let Some(width) = self.indent {
            out.push('\n');
            out.push_str(&" ".repeat(width * level));
        }
    }
}

/// Python prints floats with `repr`: shortest round-trip digits, fixed notation for exponents -4..16, else
/// scientific with a signed two-digit exponent (`1.0`, `0.0001`, `1e-05`, `1e+16`).
fn py_number(n: &serde_json::Number) -> String {
    let Some(f) = n.as_f64().filter(|_| n.is_f64()) else { return n.to_string() };
    if !f.is_finite() {
        return if f.is_nan() {
            "NaN".into()
        } else if f > 0.0 {
            "Infinity".into()
        } else {
            "-Infinity".into()
        };
    }
    let sci = format!("{f:e}");
    let (mantissa, exp) = sci.split_once('e').unwrap_or((&sci, "0"));
    let exp: i32 = exp.parse().unwrap_or(0);
    if (-4..16).contains(&exp) {
        let fixed = format!("{f}");
        if fixed.contains('.') { fixed } else { format!("{fixed}.0") }
    } else {
        format!("{mantissa}e{}{:02}", if exp < 0 { '-' } else { '+' }, exp.abs())
    }
}

/// `strftime_now(format)`: the current UTC time; supports the directives templates use.
fn strftime_now(format: String) -> String {
    let secs = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map(|d| d.as_secs()).unwrap_or(0);
    strftime(secs, &format)
}

const MONTHS: [&str; 12] = [
    "January",
    "February",
    "March",
    "April",
    "May",
    "June",
    "July",
    "August",
    "September",
    "October",
    "November",
    "December",
];
const DAYS: [&str; 7] = ["Thursday", "Friday", "Saturday", "Sunday", "Monday", "Tuesday", "Wednesday"];

fn strftime(secs: u64, format: &str) -> String {
    let days = secs / 86_400;
    let (y, m, d) = civil_from_days(days as i64);
    let (hh, mm, ss) = ((secs % 86_400) / 3600, (secs % 3600) / 60, secs % 60);
    let month = MONTHS[(m - 1) as usize];
    let weekday = DAYS[(days % 7) as usize];
    let mut out = String::new();
    let mut chars = format.chars();
    while let Some(c) = chars.next() {
        if c != '%' {
            out.push(c);
            continue;
        }
        match chars.next() {
            Some('Y') => out.push_str(&y.to_string()),
            Some('y') => out.push_str(&format!("{:02}", y % 100)),
            Some('m') => out.push_str(&format!("{m:02}")),
            Some('d') => out.push_str(&format!("{d:02}")),
            Some('b') => out.push_str(&month[..3]),
            Some('B') => out.push_str(month),
            Some('a') => out.push_str(&weekday[..3]),
            Some('A') => out.push_str(weekday),
            Some('H') => out.push_str(&format!("{hh:02}")),
            Some('M') => out.push_str(&format!("{mm:02}")),
            Some('S') => out.push_str(&format!("{ss:02}")),
            Some('%') => out.push('%'),
            Some(other) => {
                out.push('%');
                out.push(other);
            }
            None => out.push('%'),
        }
    }
    out
}

/// Days since 1970-01-01 to (year, month, day), after Howard Hinnant's `civil_from_days`.
fn civil_from_days(z: i64) -> (i64, u32, u32) {
    let z = z + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = (doy - (153 * mp + 2) / 5 + 1) as u32;
    let m = (if mp < 10 { mp + 3 } else { mp - 9 }) as u32;
    (yoe + era * 400 + i64::from(m <= 2), m, d)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn render(source: &str, messages: Json) -> String {
        let t = ChatTemplate::new(source.to_owned(), Map::new()).unwrap();
        t.render(messages.as_array().unwrap(), None).unwrap()
    }

    #[test]
    fn tojson_is_pythons_json_dumps() {
        let out = render(
            "{{ messages[0] | tojson }}|{{ messages[0] | tojson(indent=2) }}",
            json!([{"b": [1, 2.5, "<é>"], "a": null, "c": {}}]),
        );
        assert_eq!(
            out,
            "{\"b\": [1, 2.5, \"<é>\"], \"a\": null, \"c\": {}}|{\n  \"b\": [\n    1,\n    2.5,\n    \"<é>\"\n  ],\n  \"a\": null,\n  \"c\": {}\n}"
        );
    }

    #[test]
    fn trims_blocks_and_supports_python_methods() {
        let src = "{% for m in messages %}\n  {% if m.role == 'user' %}\n[{{ m.content.strip() | upper }}]\n  {% endif %}\n{% endfor %}";
        assert_eq!(render(src, json!([{"role": "user", "content": "  hi "}])), "[HI]\n");
    }

    #[test]
    fn raise_exception_fails_the_render() {
        let t = ChatTemplate::new("{{ raise_exception('no system role') }}".into(), Map::new()).unwrap();
        let err = t.render(&[], None).unwrap_err();
        assert!(err.to_string().contains("no system role"), "{err}");
    }

    #[test]
    fn strftime_formats_dates() {
        // 2024-07-26 12:34:56 UTC
        assert_eq!(strftime(1_721_997_296, "%d %b %Y %H:%M:%S %A"), "26 Jul 2024 12:34:56 Friday");
        assert_eq!(strftime(0, "%Y-%m-%d %B %%"), "1970-01-01 January %");
    }

    #[test]
    fn python_float_repr() {
        assert_eq!(py_number(&serde_json::Number::from_f64(1e-5).unwrap()), "1e-05");
        assert_eq!(py_number(&serde_json::Number::from_f64(1.0).unwrap()), "1.0");
        assert_eq!(py_number(&serde_json::Number::from_f64(0.0001).unwrap()), "0.0001");
        assert_eq!(py_number(&serde_json::Number::from_f64(1.5e16).unwrap()), "1.5e+16");
        assert_eq!(py_number(&serde_json::Number::from_f64(-2.5).unwrap()), "-2.5");
        assert_eq!(py_number(&serde_json::Number::from(7)), "7");
    }
}
