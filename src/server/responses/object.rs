//! The Response object (`"object": "response"`) for a Best-of-N outcome: the winner's text as a `message` output
//! item with one `output_text` part, its tool calls as `function_call` items, usage summed over every candidate, and
//! what the request set echoed back.

use serde_json::{Value, json};

use super::translate::Echo;
use crate::{
    bon::Outcome,
    openai::Choice,
    server::{
        prepare::Logprobs,
        response::{client_logprobs, ranked_choices},
    },
};

/// The ids of one Response and its message item.
#[derive(Clone, Debug)]
pub struct Ids {
    pub response: String,
    pub message: String,
}

impl Ids {
    pub fn fresh() -> Self {
        let r = rand::random::<u128>();
        Self { response: format!("resp_{r:032x}"), message: format!("msg_{r:032x}") }
    }
}

/// What the Response says besides its output.
pub struct Frame<'a> {
    pub ids: &'a Ids,
    pub echo: &'a Echo,
    pub model: &'a str,
    pub created: u64,
    pub logprobs: Logprobs,
}

impl Frame<'_> {
    /// The Response with `status`, `output` and `usage` (in progress: none yet).
    pub fn response(&self, status: &str, output: Vec<Value>, usage: Value, incomplete: Value) -> Value {
        let e = self.echo;
        json!({
            "id": self.ids.response,
            "object": "response",
            "created_at": self.created,
            "status": status,
            "background": false,
            "error": null,
            "incomplete_details": incomplete,
            "instructions": e.instructions,
            "max_output_tokens": e.max_output_tokens,
            "metadata": e.metadata,
            "model": self.model,
            "output": output,
            "parallel_tool_calls": e.parallel_tool_calls,
            "previous_response_id": null,
            "reasoning": e.reasoning,
            "store": false,
            "temperature": e.temperature,
            "text": e.text,
            "tool_choice": e.tool_choice,
            "tools": e.tools,
            "top_logprobs": e.top_logprobs,
            "top_p": e.top_p,
            "truncation": e.truncation,
            "usage": usage,
            "user": e.user,
        })
    }

    /// The finished Response for `outcome` (its winner), `bon` added when given.
    pub fn finished(&self, outcome: &Outcome, bon: Option<Value>) -> Value {
        let winner = ranked_choices(outcome, 1).next();
        let (status, incomplete) = status_of(winner);
        let output = winner.map(|c| self.output(c, status)).unwrap_or_default();
        let mut response = self.response(status, output, usage(outcome), incomplete);
        if let Some(bon) = bon {
            response["bon"] = bon;
        }
        response
    }

    /// The output items of the winner: its message (when it has text, or nothing else), then its tool calls.
    pub fn output(&self, choice: &Choice, status: &str) -> Vec<Value> {
        let text = choice.message.text();
        let calls = calls(choice);
        let mut items = Vec::with_capacity(1 + calls.len());
        if !text.is_empty() || calls.is_empty() {
            let part = output_text(&text, self.logprobs(choice));
            items.push(self.message(status, vec![part]));
        }
        items.extend(calls);
        items
    }

    /// The message item with `content`.
    pub fn message(&self, status: &str, content: Vec<Value>) -> Value {
        json!({"id": self.ids.message, "type": "message", "status": status, "role": "assistant", "content": content})
    }

    /// The winner's token log-probabilities as the Responses API lists them (empty unless asked for).
    pub fn logprobs(&self, choice: &Choice) -> Vec<Value> {
        client_logprobs(choice.extra.get("logprobs"), self.logprobs)
            .and_then(|l| l.get("content").and_then(Value::as_array).cloned())
            .unwrap_or_default()
    }
}

/// One `output_text` content part.
pub fn output_text(text: &str, logprobs: Vec<Value>) -> Value {
    json!({"type": "output_text", "text": text, "annotations": [], "logprobs": logprobs})
}

/// The winner's tool calls as `function_call` output items.
pub fn calls(choice: &Choice) -> Vec<Value> {
    let Some(Value::Array(calls)) = choice.message.extra.get("tool_calls") else { return Vec::new() };
    calls
        .iter()
        .enumerate()
        .map(|(k, call)| {
            let call_id = call.get("id").and_then(Value::as_str).map_or_else(|| format!("call_{k}"), str::to_owned);
            json!({
                "id": format!("fc_{call_id}"),
                "type": "function_call",
                "status": "completed",
                "call_id": call_id,
                "name": call.pointer("/function/name").cloned().unwrap_or(Value::Null),
                "arguments": call.pointer("/function/arguments").and_then(Value::as_str).unwrap_or(""),
            })
        })
        .collect()
}

/// `completed`, or `incomplete` with the reason, from the winner's finish reason.
pub fn status_of(winner: Option<&Choice>) -> (&'static str, Value) {
    match winner.and_then(|c| c.finish_reason.as_deref()) {
        Some("length") => ("incomplete", json!({"reason": "max_output_tokens"})),
        Some("content_filter") => ("incomplete", json!({"reason": "content_filter"})),
        _ => ("completed", Value::Null),
    }
}

/// Usage over every candidate, in the Responses API's names.
pub fn usage(outcome: &Outcome) -> Value {
    let u = outcome.usage;
    json!({
        "input_tokens": u.prompt_tokens,
        "input_tokens_details": {"cached_tokens": 0},
        "output_tokens": u.completion_tokens,
        "output_tokens_details": {"reasoning_tokens": 0},
        "total_tokens": u.prompt_tokens.saturating_add(u.completion_tokens),
    })
}
