//! The Best-of-N flags (N, temperature, guard, pruning, stragglers, candidate deadline), flattened into the
//! process's `Config`; each is also settable per request (`server::prepare`).

use std::time::Duration;

use clap::ValueEnum;

/// A feature that is on or off.
#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
pub enum Switch {
    On,
    Off,
}

/// Where a pruning round cuts a streaming candidate's text before scoring it.
#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
pub enum PruneAt {
    /// As it stands (mid-sentence as often as not).
    Tokens,
    /// At its last sentence end (`.`, `!`, `?`, `:` then white space, or a line break).
    Sentence,
}

/// N, sampling, the degenerate-text guard, pruning and straggler handling.
#[derive(Clone, clap::Args)]
pub struct BonArgs {
    /// N when the request does not say (`x-bon-n` header or `bon.n` in the body).
    #[arg(long, env = "BON_DEFAULT_N", default_value_t = 4)]
    pub default_n: u32,

    /// Largest N a request may ask for.
    #[arg(long, env = "BON_MAX_N", default_value_t = 16)]
    pub max_n: u32,

    /// Temperature used for candidates when the client sent none and N > 1.
    #[arg(long = "bon-temperature", env = "BON_TEMPERATURE", default_value_t = 0.8)]
    pub temperature: f64,

    /// Degenerate-text guard: rank candidates that are mostly repetition, then candidates cut by the length limit,
    /// below the others, whatever their scores (per request: `"bon": {"guard": false}`).
    #[arg(long, env = "BON_DEGENERATE_GUARD", value_enum, default_value_t = Switch::On)]
    pub degenerate_guard: Switch,

    /// Speculative rejection: stream the candidates, score their partial answers every TOKENS content tokens and
    /// stop the losing ones (0: off; per request `"bon": {"prune_every": T}` or `x-bon-prune-every`).
    #[arg(long, env = "BON_PRUNE_EVERY", default_value_t = 0, value_name = "TOKENS")]
    pub prune_every: u32,

    /// Share of the candidates that go on after each pruning round, strictly between 0 and 1.
    #[arg(long, env = "BON_PRUNE_KEEP", default_value_t = 0.5, value_name = "FRACTION")]
    pub prune_keep: f64,

    /// Margin rule: a round stops only the candidates that would have lost with at least this probability, by the
    /// reward model's calibration (config.json `bon_prefix_calibration`); `--prune-keep` stays the most a round
    /// stops. Strictly between 0.5 and 1 (per request `bon.prune_confidence`; default: no margin).
    #[arg(long, env = "BON_PRUNE_CONFIDENCE", value_name = "P")]
    pub prune_confidence: Option<f64>,

    /// Where a round cuts a streaming candidate's text before scoring it (per request `bon.prune_at`).
    #[arg(long, env = "BON_PRUNE_AT", value_enum, default_value_t = PruneAt::Tokens)]
    pub prune_at: PruneAt,

    /// Once half of the candidates (rounded up) have finished, how long the others get before they are stopped
    /// and the winner is chosen among the finished (default: wait for all; per request `bon.straggler_wait_ms`).
    #[arg(long, env = "BON_STRAGGLER_WAIT", value_parser = humantime::parse_duration, value_name = "DURATION")]
    pub straggler_wait: Option<Duration>,

    /// Deadline for one candidate (queueing for an upstream slot included).
    #[arg(long, env = "BON_CANDIDATE_TIMEOUT", value_parser = humantime::parse_duration, default_value = "120s")]
    pub candidate_timeout: Duration,
}

/// A pruning confidence: strictly between 0.5 (any gap) and 1 (never stop).
pub fn valid_confidence(p: f64) -> bool {
    p > 0.5 && p < 1.0
}
