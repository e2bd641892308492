//! What a request's selection came to — the strategy asked for, the one that decided, why it fell back, the vote or
//! the judge behind it — as the `bon` object and the `x-bon-selection` header report it.

use serde::{Deserialize, Serialize};

use super::Strategy;

/// How the winner was actually chosen (a strategy can fall back to `reward`).
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct Selection {
    /// What the request asked for.
    pub strategy: Strategy,
    /// What decided: the strategy, or `reward` after a fallback.
    pub decided_by: Strategy,
    /// Why the strategy asked for did not decide.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub fallback: Option<Fallback>,
    /// Vote strategies: the winning answer and its votes.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub vote: Option<VoteSummary>,
    /// Judge strategies: calls made and tokens spent.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub judge: Option<JudgeSummary>,
    /// Candidates stopped because the vote was already decided.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub stopped_on_agreement: Vec<usize>,
}

/// Why a strategy fell back to `reward`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Fallback {
    /// No candidate had an extractable answer.
    NoAnswers,
    /// `weighted-vote` without rewards (the scorer failed): a plain count decided.
    Unscored,
    /// The judge failed or timed out.
    JudgeFailed,
    /// A confidence strategy without log-probabilities (the upstream returned none): `reward` decides for
    /// `confidence`, a plain count for `confidence-vote`.
    NoLogprobs,
}

impl Fallback {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::NoAnswers => "no-answers",
            Self::Unscored => "unscored",
            Self::JudgeFailed => "judge-failed",
            Self::NoLogprobs => "no-logprobs",
        }
    }
}

/// The vote behind a vote strategy's winner.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct VoteSummary {
    pub answer: String,
    /// The winner's votes (a count, or its share of the softmax weight) and all votes.
    pub winner_weight: f64,
    pub total_weight: f64,
    pub winner_voters: usize,
    pub voters: usize,
}

/// What the judge cost.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct JudgeSummary {
    pub calls: u32,
    pub prompt_tokens: u64,
    pub completion_tokens: u64,
    pub seconds: f64,
    /// Pointwise: candidates the judge could not rate (ranked after the rated ones; `x-bon-selection` says so).
    #[serde(default, skip_serializing_if = "is_zero")]
    pub unrated: usize,
}

fn is_zero(n: &usize) -> bool {
    *n == 0
}
