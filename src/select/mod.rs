//! Selection strategies beyond one reward model: what decides the winner among the candidates.
//!
//! - `reward`: the highest reward-model score (the default);
//! - `vote`: the most common extracted answer (`answer`), returned as that group's best-scored member;
//! - `weighted-vote`: each candidate votes with weight softmax(score / T) (`vote`);
//! - `judge`: an LLM judge picks, pointwise (expected 1-9 rating) or by a pairwise knockout (`judge`);
//! - `reward+judge`: the reward model shortlists the top k, the judge picks among them;
//! - `confidence`: the candidate the upstream was most confident in (`confidence`: its lowest group confidence);
//! - `confidence-vote`: a vote over the most confident candidates, each weighted by its confidence.
//!
//! The strategy step itself (`decide`: `bon` hands over the candidates as `Entrant`s, gets back the order), the
//! degenerate-text guard that ranks before any strategy (`guard`), and the online confidence stop's per-model
//! history (`history`) live here too. Below `bon/` (which runs them) and above `upstream/` (the judge is an
//! upstream); knows nothing about HTTP.

pub mod answer;
mod args;
pub mod confidence;
mod decide;
pub mod guard;
mod history;
pub mod judge;
mod selection;
pub mod vote;

use clap::ValueEnum;
use serde::{Deserialize, Serialize};

pub use answer::Extractor;
pub use args::SelectArgs;
pub use confidence::Confidence;
pub use decide::{Contest, Entrant, Selector, confidence_order, refine};
pub use history::ConfidenceHistory;
pub use judge::{Judge, JudgeError, Judged};
pub use selection::{Fallback, JudgeSummary, Selection, VoteSummary};

/// What decides the winner.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash, ValueEnum, Serialize, Deserialize)]
pub enum Strategy {
    /// The highest reward-model score.
    #[default]
    #[serde(rename = "reward")]
    Reward,
    /// The most common extracted answer; its best-scored candidate is returned.
    #[serde(rename = "vote")]
    Vote,
    /// Answers weighted by softmax(reward / --vote-temperature); the heaviest wins.
    #[value(name = "weighted-vote")]
    #[serde(rename = "weighted-vote")]
    WeightedVote,
    /// An LLM judge picks among all candidates.
    #[serde(rename = "judge")]
    Judge,
    /// The reward model shortlists the top k (`bon.shortlist`), the judge picks among them.
    #[value(name = "reward+judge")]
    #[serde(rename = "reward+judge")]
    RewardJudge,
    /// The candidate the upstream was most confident in (its lowest group confidence; the guard still ranks first).
    #[serde(rename = "confidence")]
    Confidence,
    /// Answers of the most confident --confidence-keep of the candidates, each weighted by its confidence.
    #[value(name = "confidence-vote")]
    #[serde(rename = "confidence-vote")]
    ConfidenceVote,
}

impl Strategy {
    /// The name requests and responses use.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Reward => "reward",
            Self::Vote => "vote",
            Self::WeightedVote => "weighted-vote",
            Self::Judge => "judge",
            Self::RewardJudge => "reward+judge",
            Self::Confidence => "confidence",
            Self::ConfidenceVote => "confidence-vote",
        }
    }

    /// Parses a name as `as_str` writes it.
    pub fn parse(name: &str) -> Option<Self> {
        <Self as ValueEnum>::from_str(name, false).ok()
    }

    /// Whether answers are extracted and voted on.
    pub fn votes(self) -> bool {
        matches!(self, Self::Vote | Self::WeightedVote | Self::ConfidenceVote)
    }

    /// Whether it reads the upstream's token confidence (each candidate is asked for `logprobs`).
    pub fn reads_confidence(self) -> bool {
        matches!(self, Self::Confidence | Self::ConfidenceVote)
    }

    /// Whether an LLM judge is asked.
    pub fn judges(self) -> bool {
        matches!(self, Self::Judge | Self::RewardJudge)
    }

    /// Whether stop on agreement can serve it: only a count vote is decided before every candidate has finished.
    pub fn stops_on_agreement(self) -> bool {
        self == Self::Vote
    }

    /// Whether the online confidence stop can serve it: it needs a strategy that decides by answers or confidence,
    /// not one that ranks whole answers by reward or a judge.
    pub fn stops_on_confidence(self) -> bool {
        matches!(self, Self::Vote | Self::Confidence | Self::ConfidenceVote)
    }

    /// Whether pruning can serve it: pruning ranks partial answers by reward.
    pub fn prunes(self) -> bool {
        matches!(self, Self::Reward | Self::RewardJudge)
    }
}

/// How the judge compares candidates.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash, ValueEnum, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum JudgeMode {
    /// Each candidate rated 1-9 on its own (expected rating from first-token logprobs); one call per candidate.
    #[default]
    Pointwise,
    /// A knockout in a shuffled order, each pair judged in both orders; 2(k-1) calls for k candidates.
    Pairwise,
}

/// Selection settings of one request.
#[derive(Clone, Debug, PartialEq)]
pub struct Select {
    pub strategy: Strategy,
    /// How the vote strategies find a candidate's final answer.
    pub answer: Extractor,
    /// `reward+judge`: how many of the reward model's best the judge sees.
    pub shortlist: usize,
    /// Vote strategies: stop the unfinished candidates once they can no longer change the winning answer.
    pub stop_on_agreement: bool,
    /// `weighted-vote`: the softmax temperature over rewards.
    pub vote_temperature: f64,
    pub judge_mode: JudgeMode,
    /// The confidence strategies: how many top log-probabilities each candidate is asked for, and the window.
    pub confidence_top_k: u32,
    pub confidence_window: usize,
    /// `confidence-vote`: the share of the candidates, most confident first, whose answers vote.
    pub confidence_keep: f64,
    /// The online stop: stream the candidates and stop one whose group confidence falls below the model's recent
    /// percentile (`select::ConfidenceHistory`).
    pub confidence_stop: bool,
}

impl Default for Select {
    fn default() -> Self {
        Self {
            strategy: Strategy::Reward,
            answer: Extractor::Auto,
            shortlist: 2,
            stop_on_agreement: false,
            vote_temperature: 1.0,
            judge_mode: JudgeMode::Pointwise,
            confidence_top_k: 5,
            confidence_window: 16,
            confidence_keep: 0.5,
            confidence_stop: false,
        }
    }
}
