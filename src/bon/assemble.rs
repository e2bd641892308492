//! A streamed candidate put back together: `chat.completion.chunk` deltas accumulate into the completion a
//! non-streaming request would have returned (content, tool calls merged by index, other text fields such as
//! `reasoning_content`, token log-probabilities, finish reason, usage).

use serde_json::{Map, Value, json};

use crate::{
    openai::{ChatCompletion, Choice, Content, Message, Usage},
    upstream::UpstreamError,
};

/// What one candidate's stream has delivered so far.
#[derive(Clone, Debug, Default)]
pub struct Assembly {
    id: String,
    model: String,
    created: u64,
    content: String,
    tool_calls: Vec<Value>,
    /// Other text fields of `delta` (e.g. `reasoning_content`), concatenated.
    other: Map<String, Value>,
    finish_reason: Option<String>,
    usage: Option<Usage>,
    /// Top-level fields the upstream added (`system_fingerprint`, ...).
    extra: Map<String, Value>,
    /// Content deltas received: one delta counts as one token.
    pub tokens: u64,
    /// The `logprobs.content` entries of the chunks, in order (when the request asked for them).
    logprobs: Vec<Value>,
}

impl Assembly {
    /// Adds one chunk; returns the content it carried ("" for none).
    pub fn push(&mut self, chunk: &Value) -> String {
        let Some(obj) = chunk.as_object() else { return String::new() };
        for (name, v) in obj {
            match name.as_str() {
                "id" => set_str(&mut self.id, v),
                "model" => set_str(&mut self.model, v),
                "created" => self.created = v.as_u64().unwrap_or(self.created),
                "usage" => {
                    if let Ok(u) = serde_json::from_value::<Usage>(v.clone())
                        && !v.is_null()
                    {
                        self.usage = Some(u);
                    }
                }
                "choices" | "object" => {}
                _ => {
                    self.extra.insert(name.clone(), v.clone());
                }
            }
        }
        let mut added = String::new();
        // One candidate, one choice (fan-out never asks for more).
        let Some(choice) = obj.get("choices").and_then(Value::as_array).and_then(|c| c.first()) else {
            return added;
        };
        if let Some(reason) = choice.get("finish_reason").and_then(Value::as_str) {
            self.finish_reason = Some(reason.to_owned());
        }
        if let Some(entries) = choice.pointer("/logprobs/content").and_then(Value::as_array) {
            self.logprobs.extend(entries.iter().cloned());
        }
        let Some(delta) = choice.get("delta").and_then(Value::as_object) else { return added };
        for (name, v) in delta {
            match (name.as_str(), v) {
                ("role", _) => {}
                ("content", Value::String(text)) => added.push_str(text),
                ("tool_calls", Value::Array(calls)) => calls.iter().for_each(|c| self.merge_tool_call(c)),
                (_, Value::String(text)) => {
                    let slot = self.other.entry(name.clone()).or_insert_with(|| json!(""));
                    if let Value::String(s) = slot {
                        s.push_str(text);
                    }
                }
                _ => {}
            }
        }
        if !added.is_empty() {
            self.tokens += 1;
            self.content.push_str(&added);
        }
        added
    }

    fn merge_tool_call(&mut self, delta: &Value) {
        let index = delta.get("index").and_then(Value::as_u64).map_or(self.tool_calls.len(), |i| i as usize);
        while self.tool_calls.len() <= index {
            self.tool_calls.push(json!({"id": null, "type": "function", "function": {"name": null, "arguments": ""}}));
        }
        let call = &mut self.tool_calls[index];
        for key in ["id", "type"] {
            if let Some(v) = delta.get(key).filter(|v| !v.is_null()) {
                call[key] = v.clone();
            }
        }
        if let Some(name) = delta.pointer("/function/name").filter(|v| !v.is_null()) {
            call["function"]["name"] = name.clone();
        }
        if let Some(args) = delta.pointer("/function/arguments").and_then(Value::as_str)
            && let Some(Value::String(s)) = call.pointer_mut("/function/arguments")
        {
            s.push_str(args);
        }
    }

    /// The text so far.
    pub fn content(&self) -> &str {
        &self.content
    }

    /// The model the upstream names.
    pub fn model(&self) -> &str {
        &self.model
    }

    /// Whether the candidate is streaming tool calls (content-only pruning leaves it alone).
    pub fn has_tool_calls(&self) -> bool {
        !self.tool_calls.is_empty()
    }

    /// The assistant message so far.
    pub fn message(&self) -> Message {
        let mut extra = self.other.clone();
        if !self.tool_calls.is_empty() {
            extra.insert("tool_calls".into(), Value::Array(self.tool_calls.clone()));
        }
        let content =
            (!self.content.is_empty() || self.tool_calls.is_empty()).then(|| Content::Text(self.content.clone()));
        Message { role: "assistant".into(), content, extra }
    }

    /// The completion so far (a partial one has no finish reason).
    pub fn completion(&self) -> ChatCompletion {
        ChatCompletion {
            id: self.id.clone(),
            object: "chat.completion".into(),
            created: self.created,
            model: self.model.clone(),
            choices: vec![Choice {
                index: 0,
                message: self.message(),
                finish_reason: self.finish_reason.clone(),
                extra: if self.logprobs.is_empty() {
                    Map::new()
                } else {
                    Map::from_iter([("logprobs".to_owned(), json!({"content": self.logprobs}))])
                },
            }],
            usage: self.usage,
            extra: self.extra.clone(),
        }
    }

    /// The finished completion, once the stream has ended; a stream that ended without a finish reason broke.
    pub fn finish(&self) -> Result<ChatCompletion, UpstreamError> {
        if self.finish_reason.is_none() {
            return Err(UpstreamError::Transport("the stream ended before the answer finished".into()));
        }
        let mut c = self.completion();
        if c.usage.is_none() {
            // An upstream that ignores `stream_options.include_usage`: count the deltas.
            c.usage = Some(Usage { prompt_tokens: 0, completion_tokens: self.tokens, total_tokens: self.tokens });
        }
        Ok(c)
    }
}

fn set_str(slot: &mut String, v: &Value) {
    if let Some(s) = v.as_str().filter(|s| !s.is_empty()) {
        s.clone_into(slot);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn chunk(delta: Value, finish: Option<&str>) -> Value {
        json!({"id": "c1", "object": "chat.completion.chunk", "created": 7, "model": "m", "system_fingerprint": "fp",
               "choices": [{"index": 0, "delta": delta, "finish_reason": finish}]})
    }

    #[test]
    fn content_tool_calls_and_usage_come_back_together() {
        let mut a = Assembly::default();
        assert_eq!(a.push(&chunk(json!({"role": "assistant", "content": ""}), None)), "");
        assert_eq!(a.push(&chunk(json!({"content": "Hel"}), None)), "Hel");
        a.push(&chunk(json!({"content": "lo", "reasoning_content": "hm"}), None));
        a.push(&chunk(
            json!({"tool_calls": [{"index": 0, "id": "call_1", "type": "function",
                                   "function": {"name": "f", "arguments": "{\"a\""}}]}),
            None,
        ));
        a.push(&chunk(json!({"tool_calls": [{"index": 0, "function": {"arguments": ": 1}"}}]}), Some("tool_calls")));
        assert!(a.finish().is_ok());
        a.push(&json!({"id": "c1", "choices": [], "usage": {"prompt_tokens": 4, "completion_tokens": 3, "total_tokens": 7}}));
        let c = a.finish().unwrap();
        assert_eq!(a.tokens, 2);
        assert_eq!(c.choices[0].message.text(), "Hello");
        assert_eq!(c.choices[0].message.extra["reasoning_content"], json!("hm"));
        assert_eq!(c.choices[0].message.extra["tool_calls"][0]["function"]["arguments"], json!("{\"a\": 1}"));
        assert_eq!(c.choices[0].message.extra["tool_calls"][0]["id"], json!("call_1"));
        assert_eq!(c.choices[0].finish_reason.as_deref(), Some("tool_calls"));
        assert_eq!(c.usage.unwrap().completion_tokens, 3);
        assert_eq!((c.id.as_str(), c.model.as_str(), c.created), ("c1", "m", 7));
        assert_eq!(c.extra["system_fingerprint"], json!("fp"));
    }

    #[test]
    fn streamed_logprobs_come_back_as_one_list() {
        let mut a = Assembly::default();
        let entry = |t: &str| json!({"token": t, "logprob": -0.5, "top_logprobs": []});
        for t in ["Par", "is"] {
            let mut c = chunk(json!({"content": t}), None);
            c["choices"][0]["logprobs"] = json!({"content": [entry(t)]});
            a.push(&c);
        }
        a.push(&chunk(json!({}), Some("stop")));
        let done = a.finish().unwrap();
        assert_eq!(done.choices[0].extra["logprobs"], json!({"content": [entry("Par"), entry("is")]}));
        assert!(
            Assembly::default().completion().choices[0].extra.get("logprobs").is_none(),
            "none asked, none made up"
        );
    }

    #[test]
    fn a_stream_without_a_finish_reason_broke() {
        let mut a = Assembly::default();
        a.push(&chunk(json!({"content": "half"}), None));
        assert!(matches!(a.finish(), Err(UpstreamError::Transport(_))));
        assert_eq!(a.completion().choices[0].message.text(), "half");
        a.push(&chunk(json!({}), Some("stop")));
        assert_eq!(a.finish().unwrap().usage.unwrap().completion_tokens, 1, "counted when not reported");
    }
}
