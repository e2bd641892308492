//! OpenAI wire types shared by the server (what clients send and receive) and the upstream client (what Ollama,
//! llama.cpp, vLLM answer). Fields the proxy does not interpret are kept in `extra` and forwarded untouched.

use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

/// Roles a chat message may have.
pub const ROLES: [&str; 6] = ["system", "developer", "user", "assistant", "tool", "function"];

/// `POST /v1/chat/completions` body. Every other field (sampling parameters, `n`, `seed`, tools, ...) lands in
/// `extra`, is range-checked by `server::params` and reaches the upstream.
#[derive(Clone, Debug, Deserialize, Serialize)]
pub struct ChatRequest {
    pub model: String,
    pub messages: Vec<Message>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub stream: Option<bool>,
    /// bon-proxy's own extension object; never forwarded.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub bon: Option<BonOptions>,
    #[serde(flatten)]
    pub extra: Map<String, Value>,
}

/// The `"bon"` extension object of a request.
#[derive(Clone, Debug, Default, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct BonOptions {
    /// Number of candidates (the header `x-bon-n` wins over this).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub n: Option<Value>,
    /// Add every candidate (text, score, finish reason, latency) to the response's `bon` object.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub return_candidates: Option<bool>,
    /// The degenerate-text guard for this request (default: `--degenerate-guard`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub guard: Option<bool>,
    /// Content tokens between pruning rounds, 0 for none (default: `--prune-every`; the header wins).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub prune_every: Option<Value>,
    /// Share of candidates kept per pruning round, in (0, 1) (default: `--prune-keep`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub prune_keep: Option<Value>,
    /// Margin rule confidence, in (0.5, 1), or `false` for none (default: `--prune-confidence`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub prune_confidence: Option<Value>,
    /// Where a round cuts a candidate's text: "tokens" or "sentence" (default: `--prune-at`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub prune_at: Option<Value>,
    /// Milliseconds the last candidates get once half have finished (default: `--straggler-wait`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub straggler_wait_ms: Option<Value>,
    /// What decides the winner: reward, vote, weighted-vote, judge, reward+judge (default: `--strategy`; the
    /// header `x-bon-strategy` wins).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub strategy: Option<Value>,
    /// How the vote strategies extract a final answer (default: `--answer`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub answer: Option<Value>,
    /// reward+judge: candidates the judge sees (default: `--shortlist`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub shortlist: Option<Value>,
    /// vote: stop the unfinished candidates once the vote is decided (default: `--stop-on-agreement`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub stop_on_agreement: Option<bool>,
    /// `confidence-vote`: the share of the candidates, most confident first, whose answers vote.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub confidence_keep: Option<Value>,
    /// vote, confidence, confidence-vote: the online confidence stop (default: `--confidence-stop`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub confidence_stop: Option<bool>,
}

/// Every field of the `bon` object and what it sets (the generated reference; `BonOptions` denies any other).
pub const BON_FIELDS: [(&str, &str); 14] = [
    ("n", "number of candidates (the header `x-bon-n` wins)"),
    (
        "return_candidates",
        "`true`: every candidate (text, score, finish reason, latency, flags) in the response's `bon` object",
    ),
    ("guard", "the degenerate-text guard for this request (default `--degenerate-guard`)"),
    ("prune_every", "content tokens between pruning rounds, 0 for none (default `--prune-every`; the header wins)"),
    ("prune_keep", "share of candidates kept per pruning round, in (0, 1) (default `--prune-keep`)"),
    ("prune_confidence", "margin rule confidence in (0.5, 1), or `false` (default `--prune-confidence`)"),
    ("prune_at", "`tokens` or `sentence` (default `--prune-at`)"),
    ("straggler_wait_ms", "milliseconds the last candidates get once half have finished (default `--straggler-wait`)"),
    ("strategy", "what decides the winner (default `--strategy`; the header `x-bon-strategy` wins)"),
    ("answer", "how the vote strategies extract a final answer (default `--answer`)"),
    ("shortlist", "reward+judge: candidates the judge sees (default `--shortlist`)"),
    (
        "stop_on_agreement",
        "vote: stop the unfinished candidates once the vote is decided (default `--stop-on-agreement`)",
    ),
    (
        "confidence_keep",
        "`confidence-vote`: the share of the candidates, most confident first, whose answers vote (default `--confidence-keep`)",
    ),
    (
        "confidence_stop",
        "vote, confidence, confidence-vote: stop a candidate at the upstream once its group confidence falls below the model's recent percentile (default `--confidence-stop`)",
    ),
];

/// One chat message. `content` may be a string, an array of parts, or null (assistant tool calls).
#[derive(Clone, Debug, Deserialize, Serialize, PartialEq)]
pub struct Message {
    pub role: String,
    #[serde(default)]
    pub content: Option<Content>,
    #[serde(flatten)]
    pub extra: Map<String, Value>,
}

/// Message content: plain text or OpenAI content parts.
#[derive(Clone, Debug, Deserialize, Serialize, PartialEq)]
#[serde(untagged)]
pub enum Content {
    Text(String),
    Parts(Vec<Value>),
}

impl Content {
    /// The text of the content; text parts are joined, other parts (images, audio) are skipped.
    pub fn text(&self) -> String {
        match self {
            Content::Text(s) => s.clone(),
            Content::Parts(parts) => {
                parts.iter().filter_map(|p| p.get("text").and_then(Value::as_str)).collect::<Vec<_>>().join("\n")
            }
        }
    }
}

impl Message {
    /// Content as text ("" when absent).
    pub fn text(&self) -> String {
        self.content.as_ref().map(Content::text).unwrap_or_default()
    }
}

/// A non-streaming `chat.completion` as an upstream returns it and as the proxy answers.
#[derive(Clone, Debug, Deserialize, Serialize, PartialEq)]
pub struct ChatCompletion {
    #[serde(default)]
    pub id: String,
    #[serde(default = "completion_object")]
    pub object: String,
    #[serde(default)]
    pub created: u64,
    #[serde(default)]
    pub model: String,
    pub choices: Vec<Choice>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub usage: Option<Usage>,
    #[serde(flatten)]
    pub extra: Map<String, Value>,
}

fn completion_object() -> String {
    "chat.completion".to_owned()
}

/// One choice of a completion.
#[derive(Clone, Debug, Deserialize, Serialize, PartialEq)]
pub struct Choice {
    #[serde(default)]
    pub index: u32,
    pub message: Message,
    #[serde(default)]
    pub finish_reason: Option<String>,
    #[serde(flatten)]
    pub extra: Map<String, Value>,
}

/// Token accounting.
#[derive(Clone, Copy, Debug, Default, Deserialize, Serialize, PartialEq, Eq)]
pub struct Usage {
    #[serde(default)]
    pub prompt_tokens: u64,
    #[serde(default)]
    pub completion_tokens: u64,
    #[serde(default)]
    pub total_tokens: u64,
}

impl std::ops::AddAssign for Usage {
    fn add_assign(&mut self, rhs: Self) {
        // Saturating: the numbers come from upstreams, which are not trusted to keep them small.
        self.prompt_tokens = self.prompt_tokens.saturating_add(rhs.prompt_tokens);
        self.completion_tokens = self.completion_tokens.saturating_add(rhs.completion_tokens);
        self.total_tokens = self.total_tokens.saturating_add(rhs.total_tokens);
    }
}

/// `{"error": {...}}`, the body of every error the proxy returns.
#[derive(Clone, Debug, Deserialize, Serialize, PartialEq)]
pub struct ErrorBody {
    pub error: ErrorDetail,
}

/// The inside of an OpenAI error body.
#[derive(Clone, Debug, Deserialize, Serialize, PartialEq)]
pub struct ErrorDetail {
    pub message: String,
    #[serde(rename = "type")]
    pub kind: String,
    pub param: Option<String>,
    pub code: Option<String>,
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn unknown_fields_survive_a_round_trip() {
        let body = json!({
            "model": "m", "messages": [{"role": "user", "content": "hi", "name": "bob"}],
            "top_p": 0.9, "logit_bias": {"42": -1}, "response_format": {"type": "json_object"}
        });
        let req: ChatRequest = serde_json::from_value(body.clone()).unwrap();
        assert_eq!(req.extra["top_p"], json!(0.9));
        assert_eq!(req.messages[0].extra["name"], json!("bob"));
        assert_eq!(serde_json::to_value(&req).unwrap(), body);
    }

    #[test]
    fn content_parts_join_their_text() {
        let m: Message = serde_json::from_value(json!({"role": "user", "content": [
            {"type": "text", "text": "a"}, {"type": "image_url", "image_url": {"url": "x"}}, {"type": "text", "text": "b"}
        ]}))
        .unwrap();
        assert_eq!(m.text(), "a\nb");
        let tool: Message =
            serde_json::from_value(json!({"role": "assistant", "content": null, "tool_calls": []})).unwrap();
        assert_eq!(tool.text(), "");
    }

    #[test]
    fn upstream_completion_parses_with_missing_optional_fields() {
        let c: ChatCompletion = serde_json::from_value(json!({
            "choices": [{"message": {"role": "assistant", "content": "x"}, "finish_reason": "stop"}],
            "system_fingerprint": "fp"
        }))
        .unwrap();
        assert_eq!(c.object, "chat.completion");
        assert_eq!(c.usage, None);
        assert_eq!(c.extra["system_fingerprint"], json!("fp"));
    }
}
