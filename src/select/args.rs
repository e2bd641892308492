//! Server-wide selection settings: `--strategy`, `--answer`, ..., and the judge (flattened into `Config`).

use std::time::Duration;

use super::{ConfidenceHistory, Extractor, JudgeMode, Select, Strategy};

/// Server-wide selection settings (`--strategy`, `--answer`, ..., and the judge).
#[derive(Clone, Debug, clap::Args)]
pub struct SelectArgs {
    /// How the winner is chosen: reward (the reward model), vote (most common extracted answer), weighted-vote
    /// (answers weighted by softmax of rewards), judge (an LLM judge), reward+judge (the judge picks among the
    /// reward model's top --shortlist), confidence (the upstream's own token confidence), confidence-vote (answers
    /// of the most confident candidates weighted by confidence). Per request: `x-bon-strategy` or
    /// `"bon": {"strategy": ...}`.
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

    /// Confidence strategies: how many top log-probabilities each candidate is asked for (`top_logprobs`, 2-20;
    /// OpenAI and vLLM allow at most 20). A token's confidence is minus their mean.
    #[arg(long, env = "BON_CONFIDENCE_TOP_K", default_value_t = 5)]
    pub confidence_top_k: u32,

    /// Confidence strategies: tokens per group; a candidate's confidence is its lowest group's mean. 16 suits
    /// chat-length answers (DeepConf's 2,048 is for long reasoning traces, longer than most answers here).
    #[arg(long, env = "BON_CONFIDENCE_WINDOW", default_value_t = 16)]
    pub confidence_window: usize,

    /// confidence-vote: the share of the candidates, most confident first, whose answers vote (per request:
    /// `bon.confidence_keep`).
    #[arg(long, env = "BON_CONFIDENCE_KEEP", default_value_t = 0.5)]
    pub confidence_keep: f64,

    /// Online confidence stop (vote, confidence, confidence-vote): stream the candidates and stop one at the
    /// upstream as soon as its group confidence falls below --confidence-percentile of the same model's recent
    /// candidates (per request: `bon.confidence_stop`).
    #[arg(long, env = "BON_CONFIDENCE_STOP")]
    pub confidence_stop: bool,

    /// Online stop: the percentile (0-100) of recent candidates' lowest group confidence below which a candidate is
    /// stopped. Higher stops more: DeepConf's "low" setting (keep the top 10 %) is 90, its "high" (keep 90 %) 10.
    #[arg(long, env = "BON_CONFIDENCE_PERCENTILE", default_value_t = 50.0)]
    pub confidence_percentile: f64,

    /// Online stop: candidates of a model remembered for its threshold (the most recent).
    #[arg(long, env = "BON_CONFIDENCE_HISTORY", default_value_t = 256)]
    pub confidence_history: usize,

    /// Online stop: no candidate of a model is stopped until this many of its candidates have finished.
    #[arg(long, env = "BON_CONFIDENCE_MIN_HISTORY", default_value_t = 32)]
    pub confidence_min_history: usize,
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
        // The start-up twin of the per-request 400 (server/prepare/selection.rs).
        if self.stop_on_agreement && !self.strategy.stops_on_agreement() {
            return Err(format!(
                "--stop-on-agreement needs --strategy vote (got {}): only a count vote is decided before every \
                 candidate has finished",
                self.strategy.as_str()
            ));
        }
        if !(2..=20).contains(&self.confidence_top_k) {
            return Err(format!(
                "--confidence-top-k must be within 2..=20 (got {}): with the top token alone, the confidence measures \
                 doubt",
                self.confidence_top_k
            ));
        }
        if self.confidence_window == 0 {
            return Err("--confidence-window must be at least 1".into());
        }
        if !(self.confidence_keep > 0.0 && self.confidence_keep <= 1.0) {
            return Err(format!("--confidence-keep must be within (0, 1] (got {})", self.confidence_keep));
        }
        if self.confidence_stop && !self.strategy.stops_on_confidence() {
            return Err(format!(
                "--confidence-stop needs --strategy vote, confidence or confidence-vote (got {}): the other \
                 strategies rank whole answers by reward or a judge",
                self.strategy.as_str()
            ));
        }
        if !(0.0..=100.0).contains(&self.confidence_percentile) {
            return Err(format!("--confidence-percentile must be within 0..=100 (got {})", self.confidence_percentile));
        }
        if self.confidence_history == 0 || self.confidence_min_history == 0 {
            return Err("--confidence-history and --confidence-min-history must be at least 1".into());
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
            confidence_top_k: self.confidence_top_k,
            confidence_window: self.confidence_window,
            confidence_keep: self.confidence_keep,
            confidence_stop: self.confidence_stop,
        }
    }

    /// The online stop's memory, empty.
    pub fn history(&self) -> ConfidenceHistory {
        ConfidenceHistory::new(self.confidence_history, self.confidence_percentile, self.confidence_min_history)
    }
}
