//! The winner as an OpenAI server-sent-event stream (`stream: true`).
//!
//! Best-of-N must see every candidate whole before it can pick one, so the stream starts once the winner is known:
//! a role chunk, the content split the way a token stream arrives, tool calls as `delta.tool_calls`, a
//! `finish_reason` chunk, a usage chunk when `stream_options.include_usage` is set, then `data: [DONE]`.

use std::convert::Infallible;

use axum::response::{
    IntoResponse, Response,
    sse::{Event, Sse},
};
use futures::stream;
use serde_json::{Value, json};

use super::chat::{ranked_choices, usage_json};
use crate::bon::Outcome;

/// Roughly how many characters go in one content chunk (a few tokens).
const CHUNK_CHARS: usize = 16;

/// The SSE response for `outcome`.
pub fn response(outcome: &Outcome, choices: u32, requested_model: &str, include_usage: bool) -> Response {
    let events: Vec<Result<Event, Infallible>> = chunks(outcome, choices, requested_model, include_usage)
        .into_iter()
        .map(|data| Ok(Event::default().data(data)))
        .collect();
    Sse::new(stream::iter(events)).into_response()
}

/// The `data:` payloads, in order, `[DONE]` last.
pub fn chunks(outcome: &Outcome, choices: u32, requested_model: &str, include_usage: bool) -> Vec<String> {
    let model =
        outcome.winner().map(|(_, c)| c.model.as_str()).filter(|m| !m.is_empty()).unwrap_or(requested_model).to_owned();
    let chunk = |choices: Value| {
        let mut c = json!({
            "id": outcome.id,
            "object": "chat.completion.chunk",
            "created": outcome.created,
            "model": model,
            "choices": choices,
        });
        if include_usage {
            // OpenAI sends `usage: null` on every chunk but the last when usage is requested.
            c["usage"] = Value::Null;
        }
        c.to_string()
    };
    let mut out = Vec::new();
    for (index, choice) in ranked_choices(outcome, choices).enumerate() {
        let delta = |d: Value| json!([{"index": index, "delta": d, "logprobs": null, "finish_reason": null}]);
        out.push(chunk(delta(json!({"role": "assistant", "content": ""}))));
        for piece in split_text(&choice.message.text()) {
            out.push(chunk(delta(json!({"content": piece}))));
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
    if include_usage {
        let mut last: Value = serde_json::from_str(&chunk(json!([]))).unwrap_or(Value::Null);
        last["usage"] = usage_json(outcome);
        out.push(last.to_string());
    }
    out.push("[DONE]".to_owned());
    out
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
