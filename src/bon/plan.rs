//! The two types every step of a Best-of-N call passes around: what to generate (`Plan`) and what became of each
//! candidate (`Candidate`).

use std::{sync::Arc, time::Duration};

use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

use super::prune::Prune;
use crate::{
    openai::{ChatCompletion, Message},
    select::{Confidence, Select, Strategy, confidence, guard},
    upstream::UpstreamError,
};

/// What to generate: the request body as every candidate gets it (except `seed`; shared, never copied), and how many.
#[derive(Clone, Debug)]
pub struct Plan {
    /// Forwarded body: the client's request with `stream: false`, no OpenAI `n`, no `bon`, sampling defaults set.
    pub body: Arc<Map<String, Value>>,
    /// Number of candidates.
    pub n: u32,
    /// Candidate `i` is sent with `seed = base_seed + i`.
    pub base_seed: i64,
    /// The conversation being answered (for the reward model).
    pub conversation: Arc<[Message]>,
    /// Tools the client offered (rendered by chat templates that know tools).
    pub tools: Option<Arc<Value>>,
    /// The client's bearer token, forwarded upstream (`--forward-client-auth`).
    pub upstream_auth: Option<Arc<str>>,
    /// Rank repetitive and length-cut candidates below the others (`--degenerate-guard`, `bon.guard`).
    pub guard: bool,
    /// Speculative rejection (`--prune-every`, `--prune-keep`); None: every candidate runs to the end.
    pub prune: Option<Prune>,
    /// Pruning never leaves fewer candidates than this (the OpenAI `n` choices asked for).
    pub keep_at_least: u32,
    /// Once half of the candidates have finished, how long the others get (`--straggler-wait`).
    pub straggler_wait: Option<Duration>,
    /// What decides the winner (`--strategy`, `x-bon-strategy`, `bon.strategy`, ...).
    pub select: Select,
}

impl Plan {
    /// The model the request names ("" when none): what the online confidence stop keeps its history by.
    pub fn model(&self) -> &str {
        self.body.get("model").and_then(Value::as_str).unwrap_or("")
    }

    /// Whether fan-out stops the unfinished candidates once the vote is decided.
    pub fn stops_on_agreement(&self) -> bool {
        self.select.strategy == Strategy::Vote && self.select.stop_on_agreement
    }
}

/// One candidate's fate.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct Candidate {
    pub result: Result<ChatCompletion, UpstreamError>,
    pub latency: Duration,
    pub score: Option<f32>,
    /// What the degenerate-text guard saw (always computed; it only decides the ranking when the plan says so).
    pub flags: guard::Flags,
    /// Stopped early by pruning: `result` holds the partial answer and `score` its last (prefix) score.
    pub pruned: bool,
    /// Stopped early by the online confidence stop (its group confidence fell below the threshold): `result` holds
    /// the partial answer and `confidence` its confidence so far.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub unconfident: bool,
    /// The final answer extracted for the vote strategies (None: not extracted, or none found).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub answer: Option<String>,
    /// The upstream's token confidence in it (the confidence strategies; None: not asked, or no `logprobs`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub confidence: Option<Confidence>,
}

impl Candidate {
    /// A candidate as generated: flagged, not yet scored.
    pub fn new(result: Result<ChatCompletion, UpstreamError>, latency: Duration) -> Self {
        let flags = result.as_ref().map(guard::Flags::of).unwrap_or_default();
        Self { result, latency, score: None, flags, pruned: false, unconfident: false, answer: None, confidence: None }
    }

    /// A finished answer that can be selected.
    pub fn selectable(&self) -> bool {
        self.result.is_ok() && !self.pruned && !self.unconfident
    }
}

/// A completion's token confidence, from its first choice's `logprobs` (None when it has none).
pub(super) fn confidence_of(c: &ChatCompletion, plan: &Plan) -> Option<Confidence> {
    let logprobs = c.choices.first()?.extra.get("logprobs")?;
    let tokens = confidence::token_confidences(logprobs, plan.select.confidence_top_k as usize)?;
    confidence::summarise(&tokens, plan.select.confidence_window)
}
