//! Server-wide selection settings: `--strategy`, `--answer`, ..., and the judge (flattened into `Config`).

use std::time::Duration;

use super::{Extractor, JudgeMode, Select, Strategy};

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
        // The start-up twin of the per-request 400 (server/selection.rs).
        if self.stop_on_agreement && !self.strategy.stops_on_agreement() {
            return Err(format!(
                "--stop-on-agreement needs --strategy vote (got {}): only a count vote is decided before every \
                 candidate has finished",
                self.strategy.as_str()
            ));
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
