//! The prompts file `bon-proxy eval` reads: `{"messages": [...]}` or `{"prompt": "..."}` per line, with an optional
//! reference `"answer"`.

use serde_json::{Map, Value};

use super::EvalError;
use crate::openai::Message;

/// One prompt of the prompts file.
#[derive(Clone, Debug, PartialEq)]
pub struct Prompt {
    pub messages: Vec<Message>,
    /// `"answer"`: a string, or a number written as text.
    pub answer: Option<String>,
}

/// The prompts file: `{"messages": [...]}` or `{"prompt": "..."}` per non-empty line, with an optional `"answer"`.
pub fn read_prompts(path: &std::path::Path, limit: Option<usize>) -> Result<Vec<Prompt>, EvalError> {
    let text = std::fs::read_to_string(path).map_err(|e| EvalError::Io(path.display().to_string(), e))?;
    let bad = |line: usize, reason: String| EvalError::Prompt { path: path.display().to_string(), line, reason };
    let mut out = Vec::new();
    for (i, line) in text.lines().enumerate().filter(|(_, l)| !l.trim().is_empty()) {
        let v: Value = serde_json::from_str(line).map_err(|e| bad(i + 1, e.to_string()))?;
        let messages = if let Some(m) = v.get("messages") {
            serde_json::from_value::<Vec<Message>>(m.clone()).map_err(|e| bad(i + 1, format!("messages: {e}")))?
        } else if let Some(p) = v.get("prompt").and_then(Value::as_str) {
            vec![Message {
                role: "user".into(),
                content: Some(crate::openai::Content::Text(p.into())),
                extra: Map::new(),
            }]
        } else {
            return Err(bad(i + 1, "expected {\"messages\": [...]} or {\"prompt\": \"...\"}".into()));
        };
        if messages.is_empty() {
            return Err(bad(i + 1, "`messages` is empty".into()));
        }
        let answer = match v.get("answer") {
            None | Some(Value::Null) => None,
            Some(Value::String(a)) => Some(a.clone()),
            Some(Value::Number(a)) => Some(a.to_string()),
            Some(other) => return Err(bad(i + 1, format!("`answer` must be a string or a number (got {other})"))),
        };
        out.push(Prompt { messages, answer });
        if limit.is_some_and(|k| out.len() >= k) {
            break;
        }
    }
    if out.is_empty() {
        return Err(bad(0, "no prompts".into()));
    }
    Ok(out)
}
