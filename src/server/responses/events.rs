//! The Responses API's event stream for the winner: `response.created`, `response.in_progress`, then per output
//! item `response.output_item.added`, for a message `response.content_part.added`, `response.output_text.delta`
//! (a few tokens each, or one token with its log-probability when they were asked for), `response.output_text.done`,
//! `response.content_part.done`, for a tool call `response.function_call_arguments.delta` and `.done`, then
//! `response.output_item.done`; last `response.completed` (or `response.incomplete`) with the whole Response, usage
//! over every candidate and the `bon` object. Every event has its `type`, a `sequence_number`, and the
//! `item_id`/`output_index`/`content_index` the official SDKs' stream helpers read (llama-server's own stream lacks
//! `content_index`, so relaying it would not do). A stream committed before the result (past the first keep-alive)
//! opens with `response.created` at once; a failure then is an `error` event (with an `error` object, which the SDKs
//! raise) and `response.failed`. With pruning the survivor's text goes out as it is generated.

use axum::response::sse::Event;
use serde_json::{Value, json};

use super::{
    object::{Frame, Ids, calls, output_text, status_of, usage},
    translate::Echo,
};
use crate::{
    bon::{Live, Outcome},
    cache::CacheResult,
    error::ApiError,
    server::{chunks::split_text, prepare::Logprobs, response::bon_object, sse::Frames},
};

/// Writes one Response's events.
pub struct ResponseEvents {
    ids: Ids,
    echo: Echo,
    model: String,
    created: u64,
    logprobs: Logprobs,
    return_candidates: bool,
    reward_model: String,
    sequence: u64,
    /// The message item and its text part are open (live text went out).
    began: bool,
    /// `response.created` and `response.in_progress` went out.
    opened: bool,
}

impl ResponseEvents {
    pub fn new(echo: Echo, model: String, logprobs: Logprobs, return_candidates: bool, reward_model: &str) -> Self {
        let created = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(0, |d| d.as_secs());
        Self {
            ids: Ids::fresh(),
            echo,
            model,
            created,
            logprobs,
            return_candidates,
            reward_model: reward_model.to_owned(),
            sequence: 0,
            began: false,
            opened: false,
        }
    }

    fn frame(&self) -> Frame<'_> {
        Frame { ids: &self.ids, echo: &self.echo, model: &self.model, created: self.created, logprobs: self.logprobs }
    }

    /// One event: `type` and `sequence_number` added to `data`.
    fn event(&mut self, kind: &str, mut data: Value) -> Event {
        data["type"] = json!(kind);
        data["sequence_number"] = json!(self.sequence);
        self.sequence += 1;
        Event::default().event(kind).data(data.to_string())
    }

    /// `response.created` and `response.in_progress`, once.
    fn opening(&mut self) -> Vec<Event> {
        if std::mem::replace(&mut self.opened, true) {
            return Vec::new();
        }
        let response = self.frame().response("in_progress", Vec::new(), Value::Null, Value::Null);
        vec![
            self.event("response.created", json!({"response": response})),
            self.event("response.in_progress", json!({"response": response})),
        ]
    }

    /// The message item added with an empty text part.
    fn open_message(&mut self) -> Vec<Event> {
        let item = self.frame().message("in_progress", Vec::new());
        let part = output_text("", Vec::new());
        let id = self.ids.message.clone();
        vec![
            self.event("response.output_item.added", json!({"output_index": 0, "item": item})),
            self.event(
                "response.content_part.added",
                json!({"item_id": id, "output_index": 0, "content_index": 0, "part": part}),
            ),
        ]
    }

    fn text_delta(&mut self, delta: &str, logprobs: Vec<Value>) -> Event {
        let id = self.ids.message.clone();
        self.event(
            "response.output_text.delta",
            json!({"item_id": id, "output_index": 0, "content_index": 0, "delta": delta, "logprobs": logprobs}),
        )
    }

    /// The text as deltas: one token each with its entry when the tokens spell the text, else a few tokens each.
    fn text_deltas(&mut self, text: &str, logprobs: &[Value]) -> Vec<Event> {
        let tokens: Option<Vec<&str>> = logprobs.iter().map(|e| e.get("token").and_then(Value::as_str)).collect();
        match tokens.filter(|t| !t.is_empty() && t.concat() == text) {
            Some(tokens) => {
                tokens.into_iter().zip(logprobs).map(|(t, e)| self.text_delta(t, vec![e.clone()])).collect()
            }
            None => split_text(text).into_iter().map(|p| self.text_delta(p, Vec::new())).collect(),
        }
    }

    /// A function call item from added to done.
    fn call_events(&mut self, output_index: usize, item: &Value) -> Vec<Event> {
        let id = item["id"].clone();
        let arguments = item["arguments"].as_str().unwrap_or("").to_owned();
        let mut added = item.clone();
        added["arguments"] = json!("");
        added["status"] = json!("in_progress");
        let mut out =
            vec![self.event("response.output_item.added", json!({"output_index": output_index, "item": added}))];
        for piece in split_text(&arguments) {
            out.push(self.event(
                "response.function_call_arguments.delta",
                json!({"item_id": id, "output_index": output_index, "delta": piece}),
            ));
        }
        out.push(self.event(
            "response.function_call_arguments.done",
            json!({"item_id": id, "output_index": output_index, "name": item["name"], "arguments": arguments}),
        ));
        out.push(self.event("response.output_item.done", json!({"output_index": output_index, "item": item})));
        out
    }
}

impl Frames for ResponseEvents {
    fn finished(&mut self, outcome: &Outcome, cache: CacheResult, streamed: bool) -> Vec<Event> {
        let mut out = self.opening();
        let winner = crate::server::response::ranked_choices(outcome, 1).next();
        let (status, incomplete) = status_of(winner);
        let text = winner.map(|c| c.message.text()).unwrap_or_default();
        let calls = winner.map(calls).unwrap_or_default();
        let logprobs = winner.map(|c| self.frame().logprobs(c)).unwrap_or_default();
        let mut output = Vec::new();
        if streamed || !text.is_empty() || calls.is_empty() {
            if !streamed {
                out.extend(self.open_message());
                out.extend(self.text_deltas(&text, &logprobs));
            }
            let id = self.ids.message.clone();
            let part = output_text(&text, logprobs.clone());
            out.push(self.event(
                "response.output_text.done",
                json!({"item_id": id, "output_index": 0, "content_index": 0, "text": text, "logprobs": logprobs}),
            ));
            out.push(self.event(
                "response.content_part.done",
                json!({"item_id": id, "output_index": 0, "content_index": 0, "part": part}),
            ));
            let item = self.frame().message(status, vec![part]);
            out.push(self.event("response.output_item.done", json!({"output_index": 0, "item": item})));
            output.push(item);
        }
        for item in calls {
            out.extend(self.call_events(output.len(), &item));
            output.push(item);
        }
        let mut response = self.frame().response(status, output, usage(outcome), incomplete);
        response["bon"] = bon_object(outcome, cache, &self.reward_model, self.return_candidates);
        let last = if status == "completed" { "response.completed" } else { "response.incomplete" };
        out.push(self.event(last, json!({"response": response})));
        out
    }

    fn live(&mut self, update: Live) -> Vec<Event> {
        match update {
            Live::Begin { text, .. } => {
                self.began = true;
                let mut out = self.opening();
                out.extend(self.open_message());
                if !text.is_empty() {
                    out.push(self.text_delta(&text, Vec::new()));
                }
                out
            }
            Live::Delta(text) if self.began && !text.is_empty() => vec![self.text_delta(&text, Vec::new())],
            Live::Delta(_) => Vec::new(),
        }
    }

    /// An `error` event (the SDKs raise it: it carries an `error` object too), then `response.failed`.
    fn error(&mut self, e: &ApiError) -> Vec<Event> {
        let status = e.status_code();
        let code = status.as_u16().to_string();
        let detail = json!({"message": e.to_string(), "type": e.kind(), "param": null, "code": code});
        let mut failed = self.frame().response("failed", Vec::new(), Value::Null, Value::Null);
        failed["error"] = json!({"code": e.kind(), "message": e.to_string()});
        vec![
            self.event("error", json!({"code": code, "message": e.to_string(), "param": null, "error": detail})),
            self.event("response.failed", json!({"response": failed})),
        ]
    }

    fn began(&self) -> bool {
        self.began
    }

    /// A stream committed before the result opens as OpenAI's does: `response.created`, `response.in_progress`.
    fn committed(&mut self) -> Vec<Event> {
        self.opening()
    }
}
