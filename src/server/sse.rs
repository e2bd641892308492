//! `stream: true`: the winner as an OpenAI server-sent-event stream.
//!
//! Plain Best-of-N must see every candidate whole before it can pick one. If the result is ready within the first
//! keep-alive interval (a cache hit, a fast upstream), the response is sent with all `x-bon-*` headers, and errors
//! are plain HTTP errors. Otherwise the stream starts at once with `x-bon-n` and `x-bon-reward-model` and sends SSE
//! comment lines every `--sse-keepalive` so idle timeouts do not cut it; an error then arrives as an OpenAI error
//! event. Either way the winner is sent as a token stream would send it: a role chunk, content in small pieces,
//! tool calls as `delta.tool_calls`, a `finish_reason` chunk, a usage chunk when `stream_options.include_usage` is
//! set, then `data: [DONE]`. The last chunk before `[DONE]` carries the `bon` object (winner, scores, ...).
//!
//! With pruning, the last candidate standing arrives live (`bon::Live`): the stream starts when it is known, its
//! text so far goes out in one chunk and every later delta as it comes; the rest (tool calls, finish, usage, `bon`)
//! follows when the call is done.

use std::{convert::Infallible, future::Future, pin::Pin};

use axum::{
    http::{HeaderName, HeaderValue},
    response::{
        IntoResponse, Response,
        sse::{Event, KeepAlive, Sse},
    },
};
use futures::{StreamExt, stream};
use serde_json::{Value, json};
use tokio::sync::mpsc;

use super::{
    headers::{HEADER_N, HEADER_REWARD_MODEL},
    inflight::{Finished, Held},
    prepare::{Logprobs, Reply},
    response::{bon_headers, bon_object, client_logprobs, model_name, ranked_choices, usage_json},
};

use crate::{
    bon::{Live, Outcome},
    cache::CacheResult,
    error::ApiError,
    state::AppState,
};

/// Roughly how many characters go in one content chunk (a few tokens).
const CHUNK_CHARS: usize = 16;

/// What shapes the chunks of one response.
struct Shape {
    choices: u32,
    model: String,
    include_usage: bool,
    return_candidates: bool,
    reward_model: String,
    logprobs: Logprobs,
}

/// The streaming response for `work` (`n` candidates). `updates` brings the last candidate standing while it
/// generates (pruning).
pub async fn respond(
    work: impl Future<Output = Finished> + Send + 'static,
    updates: Option<mpsc::UnboundedReceiver<Live>>,
    mut held: Held,
    reply: Reply,
    n: u32,
    state: AppState,
) -> Response {
    let shape = Shape {
        choices: reply.choices,
        model: reply.model,
        include_usage: reply.include_usage,
        return_candidates: reply.return_candidates,
        reward_model: state.reward_model_id.clone(),
        logprobs: reply.logprobs,
    };
    let keepalive = state.config.server.sse_keepalive;
    let mut work: Work = Box::pin(work);
    let mut updates = updates;
    // Wait one keep-alive interval: a result by then goes out with every header, an error as a proper status. A
    // live candidate before then starts the stream at once.
    let first = tokio::time::timeout(keepalive, async {
        tokio::select! {
            result = &mut work => Err(result),
            Some(update) = next_update(&mut updates) => Ok(update),
        }
    })
    .await;
    let pending = match first {
        Ok(Err(result)) => {
            held.inflight.finish(result.as_ref().map(|(_, cache)| *cache));
            return match result {
                Ok((outcome, cache)) => {
                    let events: Vec<Result<Event, Infallible>> = chunks(&outcome, cache, &shape, false)
                        .into_iter()
                        .map(|d| Ok(Event::default().data(d)))
                        .collect();
                    let mut response = Sse::new(stream::iter(events)).into_response();
                    bon_headers(response.headers_mut(), &outcome, cache, &shape.reward_model);
                    response
                }
                Err(e) => e.into_response(),
            };
        }
        Ok(Ok(update)) => Some(update),
        Err(_) => None,
    };
    // Commit to a 200 stream; the work, the admission permit and the in-flight record travel inside it, so a
    // client that disconnects drops them all (cancelling the upstream calls).
    let start = Streaming { work, updates, pending, live: None, held: Some(held), shape, done: false };
    let body = stream::unfold(start, Streaming::step)
        .flat_map(|data| stream::iter(data.into_iter().map(|d| Ok::<_, Infallible>(Event::default().data(d)))));
    let mut response =
        Sse::new(body).keep_alive(KeepAlive::new().interval(keepalive).text("bon: generating")).into_response();
    let headers = response.headers_mut();
    headers.insert(HeaderName::from_static(HEADER_N), HeaderValue::from(n));
    if let Ok(v) = HeaderValue::from_str(&state.reward_model_id) {
        headers.insert(HeaderName::from_static(HEADER_REWARD_MODEL), v);
    }
    response
}

type Work = Pin<Box<dyn Future<Output = Finished> + Send>>;

/// The next live update; pending for ever when there are none (so `select!` waits on the work instead).
async fn next_update(updates: &mut Option<mpsc::UnboundedReceiver<Live>>) -> Option<Live> {
    match updates {
        Some(rx) => rx.recv().await,
        None => std::future::pending().await,
    }
}

/// A committed stream: live updates as they come, then the rest of the answer once the work is done.
struct Streaming {
    work: Work,
    updates: Option<mpsc::UnboundedReceiver<Live>>,
    pending: Option<Live>,
    /// The live candidate's chunk header (id, created, model), once it began.
    live: Option<(String, u64, String)>,
    held: Option<Held>,
    shape: Shape,
    done: bool,
}

impl Streaming {
    /// The next batch of `data:` payloads.
    async fn step(mut self) -> Option<(Vec<String>, Self)> {
        if self.done {
            return None;
        }
        if let Some(update) = self.pending.take() {
            let data = self.live_chunks(update);
            return Some((data, self));
        }
        tokio::select! {
            biased;
            update = next_update(&mut self.updates), if self.updates.is_some() => {
                let data = match update {
                    Some(update) => self.live_chunks(update),
                    None => {
                        self.updates = None;
                        Vec::new()
                    }
                };
                Some((data, self))
            }
            result = &mut self.work => {
                self.done = true;
                if let Some(mut held) = self.held.take() {
                    held.inflight.finish(result.as_ref().map(|(_, cache)| *cache));
                }
                // Deltas sent before the work returned come first.
                let mut data = Vec::new();
                while let Some(update) = self.updates.as_mut().and_then(|rx| rx.try_recv().ok()) {
                    data.extend(self.live_chunks(update));
                }
                match result {
                    Ok((outcome, cache)) => data.extend(chunks(&outcome, cache, &self.shape, self.live.is_some())),
                    Err(e) => data.push(error_event(&e)),
                }
                Some((data, self))
            }
        }
    }

    fn live_chunks(&mut self, update: Live) -> Vec<String> {
        let (first, text) = match update {
            Live::Begin { id, created, model, text } => {
                let model = if model.is_empty() { self.shape.model.clone() } else { model };
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
            if self.shape.include_usage {
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
    if status.is_server_error() {
        tracing::error!(error = %e, kind = e.kind(), "streamed request failed");
    }
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

/// Splits text into pieces of about `CHUNK_CHARS` characters, cutting after whitespace where it can, so that the
/// pieces concatenate back to the text exactly.
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
