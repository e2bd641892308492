//! Selection strategies beyond one reward model: what decides the winner among the candidates.
//!
//! - `reward`: the highest reward-model score (the default);
//! - `vote`: the most common extracted answer (`answer`), returned as that group's best-scored member;
//! - `weighted-vote`: each candidate votes with weight softmax(score / T) (`vote`);
//! - `judge`: an LLM judge picks, pointwise (expected 1-9 rating) or by a pairwise knockout (`judge`);
//! - `reward+judge`: the reward model shortlists the top k, the judge picks among them.
//!
//! Below `bon/` (which runs them) and above `upstream/` (the judge is an upstream); knows nothing about HTTP.

pub mod answer;
pub mod judge;
pub mod vote;

use std::time::Duration;

use clap::ValueEnum;
use serde::{Deserialize, Serialize};

pub use answer::Extractor;
pub use judge::{Judge, JudgeError, Judged};

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
        }
    }

    /// Parses a name as `as_str` writes it.
    pub fn parse(name: &str) -> Option<Self> {
        <Self as ValueEnum>::from_str(name, false).ok()
    }

    /// Whether answers are extracted and voted on.
    pub fn votes(self) -> bool {
        matches!(self, Self::Vote | Self::WeightedVote)
    }

    /// Whether an LLM judge is asked.
    pub fn judges(self) -> bool {
        matches!(self, Self::Judge | Self::RewardJudge)
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
        }
    }
}

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
}

impl Fallback {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::NoAnswers => "no-answers",
            Self::Unscored => "unscored",
            Self::JudgeFailed => "judge-failed",
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
}

/// The judge's order of `texts` (positions, best first), which are given in reward order: pointwise by rating (ties
/// keep reward order), pairwise by a knockout in a random order (the winner first, the rest in reward order).
pub async fn judge_order(
    judge: &Judge,
    request: &str,
    texts: &[String],
    mode: JudgeMode,
) -> Result<Judged<Vec<usize>>, JudgeError> {
    let mut usage = crate::openai::Usage::default();
    let mut calls = 0;
    match mode {
        JudgeMode::Pointwise => {
            let rated = futures::future::join_all(texts.iter().map(|t| judge.rate(request, t))).await;
            let mut ratings = Vec::with_capacity(texts.len());
            for r in rated {
                let r = r?;
                usage += r.usage;
                calls += r.calls;
                ratings.push(r.value);
            }
            let mut order: Vec<usize> = (0..texts.len()).collect();
            order.sort_by(|&a, &b| ratings[b].total_cmp(&ratings[a]));
            Ok(Judged { value: order, usage, calls })
        }
        JudgeMode::Pairwise => {
            let mut alive: Vec<usize> = (0..texts.len()).collect();
            {
                use rand::seq::SliceRandom;
                alive.shuffle(&mut rand::rng());
            }
            while alive.len() > 1 {
                let bye = (alive.len() % 2 == 1).then(|| alive[alive.len() - 1]);
                let matches = alive.chunks_exact(2).map(|p| (p[0], p[1])).collect::<Vec<_>>();
                let judged = futures::future::join_all(
                    matches.iter().map(|&(x, y)| judge.prefer(request, &texts[x], &texts[y])),
                )
                .await;
                let mut next = Vec::with_capacity(alive.len().div_ceil(2));
                for (&(x, y), r) in matches.iter().zip(judged) {
                    let r = r?;
                    usage += r.usage;
                    calls += r.calls;
                    // An exact tie goes to the better-rewarded one (the lower position).
                    let x_wins = r.value > 0.5 || (r.value == 0.5 && x < y);
                    next.push(if x_wins { x } else { y });
                }
                next.extend(bye);
                alive = next;
            }
            let winner = alive.first().copied().unwrap_or(0);
            let mut order = vec![winner];
            order.extend((0..texts.len()).filter(|&i| i != winner));
            Ok(Judged { value: order, usage, calls })
        }
    }
}

/// Server-wide selection settings (`--strategy`, `--answer`, ..., and the judge).
#[derive(Clone, Debug, clap::Args)]
pub struct SelectArgs {
    /// How the winner is chosen: reward (the reward model), vote (most common extracted answer), weighted-vote
    /// (answers weighted by softmax of rewards), judge (an LLM judge), reward+judge (the judge picks among the
    /// reward model's top --shortlist). Per request: `x-bon-strategy` or `"bon": {"strategy": ...}`.
    #[arg(long, env = "BON_STRATEGY", value_enum, default_value_t = Strategy::Reward)]
    pub strategy: Strategy,

    /// How vote strategies find a candidate's final answer: auto, last-number, boxed, text, json:/POINTER,
    /// regex:PATTERN (per request: `bon.answer`).
    #[arg(long, env = "BON_ANSWER", default_value = "auto", value_parser = Extractor::parse)]
    pub answer: Extractor,

    /// reward+judge: how many of the reward model's best candidates the judge sees (per request: `bon.shortlist`).
    #[arg(long, env = "BON_SHORTLIST", default_value_t = 2)]
    pub shortlist: usize,

    /// Vote strategy: stop the candidates still generating once they can no longer change the winning answer
    /// (per request: `bon.stop_on_agreement`).
    #[arg(long, env = "BON_STOP_ON_AGREEMENT")]
    pub stop_on_agreement: bool,

    /// weighted-vote: softmax temperature over the candidates' rewards (lower: the best-scored weighs more).
    #[arg(long, env = "BON_VOTE_TEMPERATURE", default_value_t = 1.0)]
    pub vote_temperature: f64,

    /// Base URL of the judge (OpenAI-compatible, must return `logprobs`), without `/v1`. Default: the upstream.
    #[arg(long, env = "BON_JUDGE_UPSTREAM", hide_env_values = true)]
    pub judge_upstream: Option<String>,

    /// Model the judge is asked with. Default: the model of the request.
    #[arg(long, env = "BON_JUDGE_MODEL")]
    pub judge_model: Option<String>,

    /// Bearer token for --judge-upstream.
    #[arg(long, env = "BON_JUDGE_API_KEY", hide_env_values = true)]
    pub judge_api_key: Option<String>,

    /// pointwise (rate each candidate 1-9) or pairwise (knockout, each pair judged in both orders).
    #[arg(long, env = "BON_JUDGE_MODE", value_enum, default_value_t = JudgeMode::Pointwise)]
    pub judge_mode: JudgeMode,

    /// Longest the judge may take for one request; then the reward model decides.
    #[arg(long, env = "BON_JUDGE_TIMEOUT", value_parser = humantime::parse_duration, default_value = "60s")]
    pub judge_timeout: Duration,
}

impl SelectArgs {
    /// Range checks; the message names the flag.
    pub fn validate(&self) -> Result<(), String> {
        if self.shortlist < 2 {
            return Err(format!("--shortlist must be at least 2 (got {})", self.shortlist));
        }
        if !(self.vote_temperature.is_finite() && self.vote_temperature > 0.0) {
            return Err(format!("--vote-temperature must be a finite number > 0 (got {})", self.vote_temperature));
        }
        if self.judge_timeout.is_zero() {
            return Err("--judge-timeout must be longer than 0s".into());
        }
        if let Some(url) = &self.judge_upstream {
            let lower = url.to_ascii_lowercase();
            if !(lower.starts_with("http://") || lower.starts_with("https://")) || reqwest::Url::parse(url).is_err() {
                return Err("--judge-upstream must be an http:// or https:// URL".into());
            }
        }
        Ok(())
    }

    /// A request's settings when it says nothing.
    pub fn defaults(&self) -> Select {
        Select {
            strategy: self.strategy,
            answer: self.answer.clone(),
            shortlist: self.shortlist,
            stop_on_agreement: self.stop_on_agreement,
            vote_temperature: self.vote_temperature,
            judge_mode: self.judge_mode,
        }
    }
}
