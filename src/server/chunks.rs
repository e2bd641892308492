//! Chat completion chunks (`chat.completion.chunk`): how `sse` writes a chat answer. A role chunk, content in small
//! pieces, tool calls as `delta.tool_calls`, a `finish_reason` chunk, a usage chunk when
//! `stream_options.include_usage` is set, then `data: [DONE]`. The last chunk before `[DONE]` carries the `bon` object
//! (winner, scores, ...).

use axum::response::sse::Event;
use serde_json::{Value, json};

use super::{
    prepare::{Logprobs, Reply},
    response::{bon_object, client_logprobs, model_name, ranked_choices, usage_json},
    sse::Frames,
};
use crate::{
    bon::{Live, Outcome},
    cache::CacheResult,
    error::ApiError,
};

/// Roughly how many characters go in one content chunk (a few tokens).
const CHUNK_CHARS: usize = 16;

/// What shapes the chunks of one response.
pub struct Shape {
    choices: u32,
    model: String,
    include_usage: bool,
    return_candidates: bool,
    reward_model: String,
    logprobs: Logprobs,
    /// The live candidate's chunk header (id, created, model), once it began.
    live: Option<(String, u64, String)>,
}

impl Shape {
    pub fn new(reply: Reply, reward_model: &str) -> Self {
        Self {
            choices: reply.choices,
            model: reply.model,
            include_usage: reply.include_usage,
            return_candidates: reply.return_candidates,
            reward_model: reward_model.to_owned(),
            logprobs: reply.logprobs,
            live: None,
        }
    }
}

fn events(data: Vec<String>) -> Vec<Event> {
    data.into_iter().map(|d| Event::default().data(d)).collect()
}

impl Frames for Shape {
    fn finished(&mut self, outcome: &Outcome, cache: CacheResult, streamed: bool) -> Vec<Event> {
        events(chunks(outcome, cache, self, streamed))
    }

    fn live(&mut self, update: Live) -> Vec<Event> {
        events(self.live_chunks(update))
    }

    fn error(&mut self, e: &ApiError) -> Vec<Event> {
        events(vec![error_event(e)])
    }

    fn began(&self) -> bool {
        self.live.is_some()
    }
}

impl Shape {
    fn live_chunks(&mut self, update: Live) -> Vec<String> {
        let (first, text) = match update {
            Live::Begin { id, created, model, text } => {
                let model = if model.is_empty() { self.model.clone() } else { model };
                self.live = Some((id, created, model));
                (true, text)
            }
            Live::Delta(text) => (false, text),
        };
        let Some((id, created, model)) = &self.live else { return Vec::new() };
        let chunk = |delta: Value| {
            let mut c = json!({
                "id": id, "object": "chat.completion.chunk", "created": created, "model": model,
                "choices": [{"index": 0, "delta": delta, "logprobs": null, "finish_reason": null}],
            });
            if self.include_usage {
                c["usage"] = Value::Null;
            }
            c.to_string()
        };
        let mut out = Vec::new();
        if first {
            out.push(chunk(json!({"role": "assistant", "content": ""})));
        }
        if !text.is_empty() {
            out.push(chunk(json!({"content": text})));
        }
        out
    }
}

/// An error after the stream started, as OpenAI sends one (the SDKs raise it as an `APIError`).
fn error_event(e: &ApiError) -> String {
    let status = e.status_code();
    json!({"error": {"message": e.to_string(), "type": e.kind(), "param": null, "code": status.as_u16().to_string()}})
        .to_string()
}

/// The `data:` payloads, in order, `[DONE]` last. `streamed`: the winner's role and content already went out live.
fn chunks(outcome: &Outcome, cache: CacheResult, shape: &Shape, streamed: bool) -> Vec<String> {
    let chunk = |choices: Value| {
        let mut c = json!({
            "id": outcome.id,
            "object": "chat.completion.chunk",
            "created": outcome.created,
            "model": model_name(outcome, &shape.model),
            "choices": choices,
        });
        if shape.include_usage {
            // OpenAI sends `usage: null` on every chunk but the last when usage is requested.
            c["usage"] = Value::Null;
        }
        c
    };
    let mut out = Vec::new();
    for (index, choice) in ranked_choices(outcome, shape.choices).enumerate() {
        let with = |d: Value, lp: Value| json!([{"index": index, "delta": d, "logprobs": lp, "finish_reason": null}]);
        let delta = |d: Value| with(d, Value::Null);
        if !(streamed && index == 0) {
            out.push(chunk(delta(json!({"role": "assistant", "content": ""}))));
            let (text, logprobs) =
                (choice.message.text(), client_logprobs(choice.extra.get("logprobs"), shape.logprobs));
            for (piece, lp) in content_pieces(&text, logprobs.as_deref()) {
                out.push(chunk(with(json!({"content": piece}), lp)));
            }
        }
        if let Some(Value::Array(calls)) = choice.message.extra.get("tool_calls") {
            for (k, call) in calls.iter().enumerate() {
                let name = call.pointer("/function/name").cloned().unwrap_or(Value::Null);
                let args = call.pointer("/function/arguments").and_then(Value::as_str).unwrap_or("");
                out.push(chunk(delta(json!({"tool_calls": [{
                    "index": k, "id": call.get("id").cloned().unwrap_or(Value::Null),
                    "type": "function", "function": {"name": name, "arguments": ""}
                }]}))));
                for piece in split_text(args) {
                    out.push(chunk(delta(json!({"tool_calls": [{"index": k, "function": {"arguments": piece}}]}))));
                }
            }
        }
        let finish = choice.finish_reason.clone().unwrap_or_else(|| "stop".to_owned());
        out.push(chunk(json!([{"index": index, "delta": {}, "logprobs": null, "finish_reason": finish}])));
    }
    if shape.include_usage {
        let mut last = chunk(json!([]));
        last["usage"] = usage_json(outcome);
        out.push(last);
    }
    if let Some(last) = out.last_mut() {
        last["bon"] = bon_object(outcome, cache, &shape.reward_model, shape.return_candidates);
    }
    let mut data: Vec<String> = out.iter().map(Value::to_string).collect();
    data.push("[DONE]".to_owned());
    data
}

/// The content deltas of a streamed answer and the `logprobs` each carries, as OpenAI streams them: with the
/// client's log-probabilities, one token a chunk with its entry when the tokens spell the text; when they do not
/// (byte-level pieces), the text in pieces and every entry on the first. Without, the text in pieces, `null` each.
fn content_pieces<'a>(text: &'a str, logprobs: Option<&'a Value>) -> Vec<(&'a str, Value)> {
    let mut pieces: Vec<(&str, Value)> = split_text(text).into_iter().map(|p| (p, Value::Null)).collect();
    let entries = logprobs.and_then(|l| l.get("content")).and_then(Value::as_array).filter(|e| !e.is_empty());
    let Some(entries) = entries else { return pieces };
    let tokens: Option<Vec<&str>> = entries.iter().map(|e| e.get("token").and_then(Value::as_str)).collect();
    if let Some(tokens) = tokens.filter(|t| t.concat() == text) {
        return tokens.into_iter().zip(entries).map(|(t, e)| (t, json!({"content": [e]}))).collect();
    }
    match pieces.first_mut() {
        Some(first) => first.1 = json!({"content": entries}),
        None => pieces.push(("", json!({"content": entries}))),
    }
    pieces
}

/// Splits text into pieces of about `CHUNK_CHARS` characters, cutting after whitespace where it can, so that the
/// pieces concatenate back to the text exactly.
pub fn split_text(text: &str) -> Vec<&str> {
    let mut pieces = Vec::new();
    let mut start = 0;
    let mut count = 0;
    let mut last_space_end = None;
    for (i, ch) in text.char_indices() {
        count += 1;
        let end = i + ch.len_utf8();
        if ch.is_whitespace() {
            last_space_end = Some(end);
        }
        if count >= CHUNK_CHARS {
            let cut = last_space_end.filter(|&e| e > start).unwrap_or(end);
            pieces.push(&text[start..cut]);
            count = text[cut..end].chars().count();
            start = cut;
            last_space_end = None;
        }
    }
    if start < text.len() {
        pieces.push(&text[start..]);
    }
    pieces
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn split_is_lossless_and_chunky() {
        for text in [
            "",
            "short",
            "The capital of France is Paris, and its river is the Seine. こんにちは世界、元気ですか？",
            &"x".repeat(100),
        ] {
            let pieces = split_text(text);
            assert_eq!(pieces.concat(), text);
            assert!(pieces.iter().all(|p| !p.is_empty()));
            if text.chars().count() > CHUNK_CHARS {
                assert!(pieces.len() > 1, "{text}");
            }
        }
    }
}
