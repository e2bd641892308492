//! `bon-proxy eval`'s flags.

use std::path::PathBuf;

use crate::{bon::Switch, reward::args::RewardArgs, select::Extractor};

/// `bon-proxy eval` options.
#[derive(Clone, Debug, clap::Args)]
pub struct EvalArgs {
    /// JSONL file: one `{"messages": [...]}` or `{"prompt": "..."}` per line, optionally with a reference
    /// `"answer"` (then accuracy is reported per strategy).
    #[arg(long, required_unless_present = "samples")]
    pub prompts: Option<PathBuf>,
    /// Summarise the samples of an earlier run (its `results.json`) again, with this run's settings (answer
    /// extraction, guard, vote temperature, the confidence window, keep and online stop), instead of generating:
    /// no upstream, judge or reward model is asked.
    #[arg(long, conflicts_with_all = ["prompts", "prune_report"])]
    pub samples: Option<PathBuf>,
    /// Use only the first K prompts.
    #[arg(long)]
    pub limit: Option<usize>,
    /// OpenAI-compatible upstream that generates the samples.
    #[arg(long, env = "BON_UPSTREAM", default_value = "http://127.0.0.1:11434")]
    pub upstream: String,
    /// Bearer token for the upstream.
    #[arg(long, env = "BON_UPSTREAM_API_KEY", hide_env_values = true)]
    pub upstream_api_key: Option<String>,
    /// Model name sent to the upstream.
    #[arg(long, default_value = "default")]
    pub model: String,
    /// Values of n to report (comma-separated); max(n) samples are generated per prompt.
    #[arg(long, value_delimiter = ',', default_value = "1,2,4,8")]
    pub n: Vec<u32>,
    /// Output directory (created).
    #[arg(long)]
    pub out: PathBuf,
    /// Rank repetitive and length-cut samples below the others, as the proxy does.
    #[arg(long, value_enum, default_value_t = Switch::On)]
    pub degenerate_guard: Switch,
    /// OpenAI-compatible judge endpoint that returns logprobs (optional).
    #[arg(long)]
    pub judge: Option<String>,
    /// Model name sent to the judge.
    #[arg(long, default_value = "default")]
    pub judge_model: String,
    /// Bearer token for the judge.
    #[arg(long, env = "BON_JUDGE_API_KEY", hide_env_values = true)]
    pub judge_api_key: Option<String>,
    /// `max_tokens` of every sample.
    #[arg(long, default_value_t = 256)]
    pub max_tokens: u32,
    /// Sampling temperature of the samples (the greedy answer uses 0).
    #[arg(long, default_value_t = 0.8)]
    pub temperature: f64,
    /// Sample i of every prompt is generated with seed SEED + i.
    #[arg(long, default_value_t = 0)]
    pub seed: i64,
    /// Upstream (and judge) requests in flight.
    #[arg(long, default_value_t = 8)]
    pub concurrency: usize,
    /// How a sample's final answer is extracted for the vote strategies and the accuracy against `"answer"` (as the
    /// proxy's --answer).
    #[arg(long, default_value = "auto", value_parser = Extractor::parse)]
    pub answer: Extractor,
    /// weighted-vote: softmax temperature over rewards (as the proxy's --vote-temperature).
    #[arg(long, default_value_t = 1.0)]
    pub vote_temperature: f64,

    /// Ask every sample for this many top log-probabilities and measure the confidence strategies (as the proxy's
    /// --confidence-top-k; 0: do not ask).
    #[arg(long, default_value_t = 5)]
    pub confidence_top_k: u32,
    /// Tokens per confidence group (as the proxy's --confidence-window).
    #[arg(long, default_value_t = 16)]
    pub confidence_window: usize,
    /// confidence-vote: the share of the samples, most confident first, whose answers vote (as --confidence-keep).
    #[arg(long, default_value_t = 0.5)]
    pub confidence_keep: f64,
    /// The online confidence stop, replayed (as the proxy's --confidence-percentile): a sample is stopped once its
    /// group confidence falls below this percentile of the earlier prompts' samples.
    #[arg(long, default_value_t = 50.0)]
    pub confidence_percentile: f64,
    /// The online stop's memory: samples remembered (as --confidence-history) and needed before any stop (as
    /// --confidence-min-history).
    #[arg(long, default_value_t = 256)]
    pub confidence_history: usize,
    #[arg(long, default_value_t = 32)]
    pub confidence_min_history: usize,

    /// Also measure how well the reward model's scores of partial answers (16-128 tokens) predict its scores of
    /// the whole ones, and write the calibration `--prune-confidence` needs (prune_report.md / .json).
    #[arg(long)]
    pub prune_report: bool,

    /// The reward model and how it runs: the proxy's own flags (`--reward-model`, `--device`, `--reward-max-tokens`,
    /// `--reward-prefix-output` — run `--prune-report` with and without it to see which output orders prefixes
    /// better on your prompts —, ...).
    #[command(flatten, next_help_heading = "Reward model")]
    pub reward: RewardArgs,
}
