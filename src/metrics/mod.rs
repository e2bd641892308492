//! Prometheus metrics: one typed struct owning its own `Registry` (two apps in one test process never collide).
//!
//! Labels come from closed sets (`ApiError::kind`, `UpstreamError::kind`, cache results), never from request text.

use prometheus::{
    Encoder, Histogram, HistogramOpts, HistogramVec, IntCounter, IntCounterVec, IntGauge, IntGaugeVec, Opts, Registry,
    TextEncoder, core::Collector,
};

mod names;

pub use names::*;
use names::{
    BATCH_BUCKETS, KL_BUCKETS, LATENCY_BUCKETS, MARGIN_BUCKETS, N_BUCKETS, PADDING_BUCKETS, REDIS_BUCKETS,
    REWARD_BUCKETS, ROUND_BUCKETS, SCORE_BUCKETS, SHARE_BUCKETS, Z_BUCKETS,
};

/// Every metric the proxy exports.
pub struct Metrics {
    registry: Registry,
    pub requests: IntCounterVec,
    pub request_duration: HistogramVec,
    pub inflight: IntGauge,
    pub candidates: IntCounterVec,
    pub candidate_duration: HistogramVec,
    pub n_used: Histogram,
    pub reward_duration: Histogram,
    pub reward_queue: Histogram,
    pub reward_tokenize: Histogram,
    pub reward_inference: Histogram,
    pub reward_batch: Histogram,
    pub reward_padding: Histogram,
    pub reward_errors: IntCounter,
    pub scorer_fallbacks: IntCounter,
    pub winner_score: Histogram,
    pub score_margin: Histogram,
    pub score_spread: Histogram,
    pub winner_z: Histogram,
    pub kl_bound: Histogram,
    pub guard_flags: IntCounterVec,
    pub guard_overrides: IntCounter,
    pub pruning_rounds: Histogram,
    pub pruning_tokens_saved: IntCounter,
    pub pruning_fallbacks: IntCounter,
    pub pruning_rounds_total: IntCounter,
    pub pruning_stopped: Histogram,
    pub pruning_stop_gap: Histogram,
    pub pruning_held: IntCounter,
    pub selections: IntCounterVec,
    pub selection_fallbacks: IntCounterVec,
    pub vote_share: Histogram,
    pub agreement_stopped: IntCounter,
    pub agreement_tokens_saved: IntCounter,
    pub judge_requests: IntCounterVec,
    pub judge_calls: IntCounter,
    pub judge_duration: Histogram,
    pub judge_tokens: IntCounterVec,
    pub cache_requests: IntCounterVec,
    pub cache_evictions: IntCounterVec,
    pub cache_entries: IntGauge,
    pub cache_redis_requests: IntCounterVec,
    pub cache_redis_errors: IntCounterVec,
    pub cache_redis_duration: HistogramVec,
    pub upstream_requests: IntCounterVec,
    pub upstream_duration: HistogramVec,
    pub upstream_inflight: IntGaugeVec,
    pub upstream_up: IntGaugeVec,
    pub upstream_failovers: IntCounterVec,
    pub tokens: IntCounterVec,
    pub execution_provider: IntGaugeVec,
    pub model_loaded: IntGauge,
    pub reward_worker_up: IntGauge,
    pub reward_worker_panics: IntCounter,
    pub reward_worker_restarts: IntCounter,
}

impl Metrics {
    /// Builds and registers every metric.
    pub fn new() -> Result<Self, prometheus::Error> {
        let registry = Registry::new();
        let hist = |name: &str, help: &str, buckets: &[f64]| {
            Histogram::with_opts(HistogramOpts::new(name, help).buckets(buckets.to_vec()))
        };
        let m = Self {
            requests: IntCounterVec::new(
                Opts::new(REQUESTS, "Chat completion requests by outcome (ok, or the error type)."),
                &["outcome"],
            )?,
            request_duration: HistogramVec::new(
                HistogramOpts::new(REQUEST_DURATION, "End-to-end latency of chat completion requests.")
                    .buckets(LATENCY_BUCKETS.to_vec()),
                &["cache"],
            )?,
            inflight: IntGauge::new(INFLIGHT, "Chat completion requests being served.")?,
            candidates: IntCounterVec::new(
                Opts::new(CANDIDATES, "Upstream candidates by outcome (ok, timeout, http_5xx, transport, ...)."),
                &["outcome"],
            )?,
            candidate_duration: HistogramVec::new(
                HistogramOpts::new(CANDIDATE_DURATION, "Latency of one upstream candidate, slot wait included.")
                    .buckets(LATENCY_BUCKETS.to_vec()),
                &["outcome"],
            )?,
            n_used: hist(N_USED, "N (candidates generated) per Best-of-N request.", &N_BUCKETS)?,
            reward_duration: hist(
                REWARD_DURATION,
                "Reward model time per scoring call, submitted to answered (tokenize + queue + inference).",
                &REWARD_BUCKETS,
            )?,
            reward_queue: hist(
                REWARD_QUEUE,
                "Time a tokenized scoring call waited for the scoring thread.",
                &REWARD_BUCKETS,
            )?,
            reward_tokenize: hist(
                REWARD_TOKENIZE,
                "Time to render and tokenize one scoring call (tokenizer threads).",
                &REWARD_BUCKETS,
            )?,
            reward_inference: hist(REWARD_INFERENCE, "Time of one ONNX Runtime run (one batch).", &REWARD_BUCKETS)?,
            reward_batch: hist(REWARD_BATCH, "Sequences per reward model run.", &BATCH_BUCKETS)?,
            reward_padding: hist(
                REWARD_PADDING,
                "Share of a reward model run's tokens that are padding.",
                &PADDING_BUCKETS,
            )?,
            reward_errors: IntCounter::new(REWARD_ERRORS, "Reward model jobs that failed.")?,
            scorer_fallbacks: IntCounter::new(
                SCORER_FALLBACKS,
                "Requests answered with the first successful candidate because scoring failed.",
            )?,
            winner_score: hist(WINNER_SCORE, "Reward of the returned candidate.", &SCORE_BUCKETS)?,
            score_margin: hist(SCORE_MARGIN, "Highest reward minus the second highest.", &MARGIN_BUCKETS)?,
            score_spread: hist(
                SCORE_SPREAD,
                "Highest minus lowest reward among a call's candidates.",
                &MARGIN_BUCKETS,
            )?,
            winner_z: hist(
                WINNER_Z,
                "Returned candidate's reward in standard deviations above its call's mean.",
                &Z_BUCKETS,
            )?,
            kl_bound: hist(KL_BOUND, "KL bound log(n) - (n-1)/n of each scored Best-of-N call.", &KL_BUCKETS)?,
            guard_flags: IntCounterVec::new(
                Opts::new(GUARD_FLAGS, "Successful candidates flagged by the degenerate-text guard, by flag."),
                &["flag"],
            )?,
            guard_overrides: IntCounter::new(
                GUARD_OVERRIDES,
                "Calls whose highest-scored candidate was not returned because the guard ranked it lower.",
            )?,
            pruning_rounds: hist(PRUNING_ROUNDS, "Pruning rounds per pruned Best-of-N call.", &ROUND_BUCKETS)?,
            pruning_tokens_saved: IntCounter::new(
                PRUNING_TOKENS_SAVED,
                "Completion tokens pruning saved: N times the winner's length, minus what was generated.",
            )?,
            pruning_fallbacks: IntCounter::new(
                PRUNING_FALLBACKS,
                "Pruned calls that ran as plain Best-of-N because the upstream did not stream.",
            )?,
            pruning_rounds_total: IntCounter::new(
                PRUNING_ROUNDS_TOTAL,
                "Pruning rounds run (partial answers scored).",
            )?,
            pruning_stopped: hist(PRUNING_STOPPED, "Candidates stopped per pruning round.", &ROUND_BUCKETS)?,
            pruning_stop_gap: hist(
                PRUNING_STOP_GAP,
                "How far each stopped candidate's partial score was behind the round's leader.",
                &MARGIN_BUCKETS,
            )?,
            pruning_held: IntCounter::new(
                PRUNING_HELD,
                "Candidates the keep share would have stopped that the margin rule (--prune-confidence) kept going.",
            )?,
            selections: IntCounterVec::new(
                Opts::new(SELECTIONS, "Best-of-N calls by the strategy asked for and the one that decided."),
                &["strategy", "decided_by"],
            )?,
            selection_fallbacks: IntCounterVec::new(
                Opts::new(
                    SELECTION_FALLBACKS,
                    "Calls whose strategy could not decide (no-answers, unscored, judge-failed); the reward model did.",
                ),
                &["strategy", "reason"],
            )?,
            vote_share: hist(VOTE_SHARE, "The winning answer's share of the votes (vote strategies).", &SHARE_BUCKETS)?,
            agreement_stopped: IntCounter::new(
                AGREEMENT_STOPPED,
                "Candidates stopped because the vote was already decided (stop on agreement).",
            )?,
            agreement_tokens_saved: IntCounter::new(
                AGREEMENT_TOKENS_SAVED,
                "Completion tokens stop on agreement saved (estimate: each stopped candidate as long as the mean answer).",
            )?,
            judge_requests: IntCounterVec::new(
                Opts::new(JUDGE_REQUESTS, "Judge selections by outcome (ok, failed, unconfigured)."),
                &["outcome"],
            )?,
            judge_calls: IntCounter::new(JUDGE_CALLS, "Calls made to the judge model.")?,
            judge_duration: hist(JUDGE_DURATION, "Time the judge took per Best-of-N call.", &LATENCY_BUCKETS)?,
            judge_tokens: IntCounterVec::new(
                Opts::new(JUDGE_TOKENS, "Tokens the judge reported spending (prompt, completion)."),
                &["kind"],
            )?,
            cache_requests: IntCounterVec::new(
                Opts::new(CACHE_REQUESTS, "Cache lookups by result (hit, miss, bypass)."),
                &["result"],
            )?,
            cache_evictions: IntCounterVec::new(
                Opts::new(CACHE_EVICTIONS, "Cache entries removed, by cause (expired, size, replaced, explicit)."),
                &["cause"],
            )?,
            cache_entries: IntGauge::new(CACHE_ENTRIES, "Entries in the result cache.")?,
            cache_redis_requests: IntCounterVec::new(
                Opts::new(
                    CACHE_REDIS_REQUESTS,
                    "Shared (Redis) cache lookups after a local miss, by result (hit, miss; skipped: Redis failed less than a second ago).",
                ),
                &["result"],
            )?,
            cache_redis_errors: IntCounterVec::new(
                Opts::new(
                    CACHE_REDIS_ERRORS,
                    "Shared cache operations that failed (get, set; decode: a value this version cannot read).",
                ),
                &["op"],
            )?,
            cache_redis_duration: HistogramVec::new(
                HistogramOpts::new(CACHE_REDIS_DURATION, "Latency of shared cache operations (get, set).")
                    .buckets(REDIS_BUCKETS.to_vec()),
                &["op"],
            )?,
            upstream_requests: IntCounterVec::new(
                Opts::new(UPSTREAM_REQUESTS, "Requests to each upstream of the pool, by outcome (ok, or the failure)."),
                &["upstream", "outcome"],
            )?,
            upstream_duration: HistogramVec::new(
                HistogramOpts::new(UPSTREAM_DURATION, "Latency of one request to an upstream of the pool.")
                    .buckets(LATENCY_BUCKETS.to_vec()),
                &["upstream"],
            )?,
            upstream_inflight: IntGaugeVec::new(
                Opts::new(UPSTREAM_INFLIGHT, "Requests this proxy has in flight to each upstream."),
                &["upstream"],
            )?,
            upstream_up: IntGaugeVec::new(
                Opts::new(UPSTREAM_UP, "1 while an upstream gets traffic, 0 while it is marked down."),
                &["upstream"],
            )?,
            upstream_failovers: IntCounterVec::new(
                Opts::new(UPSTREAM_FAILOVERS, "Requests retried on another upstream after this one failed."),
                &["upstream"],
            )?,
            tokens: IntCounterVec::new(
                Opts::new(TOKENS, "Tokens the upstream reported spending, all candidates (prompt, completion)."),
                &["kind"],
            )?,
            execution_provider: IntGaugeVec::new(
                Opts::new(EXECUTION_PROVIDER, "1 for the execution provider the reward model runs on."),
                &["provider"],
            )?,
            model_loaded: IntGauge::new(MODEL_LOADED, "1 once the reward model is loaded and answered a warm-up run.")?,
            reward_worker_up: IntGauge::new(
                REWARD_WORKER_UP,
                "1 while the scoring thread can score; 0 while it restarts after a panic (/ready answers 503 then).",
            )?,
            reward_worker_panics: IntCounter::new(
                REWARD_WORKER_PANICS,
                "Panics caught on the scoring thread (each failed one batch and restarted the reward model).",
            )?,
            reward_worker_restarts: IntCounter::new(
                REWARD_WORKER_RESTARTS,
                "Times the reward model was reopened and warmed up again after a panic.",
            )?,
            registry,
        };
        m.register_all()?;
        Ok(m)
    }

    /// Every collector, once (registration and `names` go through this list).
    fn collectors(&self) -> Vec<Box<dyn Collector>> {
        vec![
            Box::new(self.requests.clone()),
            Box::new(self.request_duration.clone()),
            Box::new(self.inflight.clone()),
            Box::new(self.candidates.clone()),
            Box::new(self.candidate_duration.clone()),
            Box::new(self.n_used.clone()),
            Box::new(self.reward_duration.clone()),
            Box::new(self.reward_queue.clone()),
            Box::new(self.reward_tokenize.clone()),
            Box::new(self.reward_inference.clone()),
            Box::new(self.reward_batch.clone()),
            Box::new(self.reward_padding.clone()),
            Box::new(self.reward_errors.clone()),
            Box::new(self.scorer_fallbacks.clone()),
            Box::new(self.winner_score.clone()),
            Box::new(self.score_margin.clone()),
            Box::new(self.score_spread.clone()),
            Box::new(self.winner_z.clone()),
            Box::new(self.kl_bound.clone()),
            Box::new(self.guard_flags.clone()),
            Box::new(self.guard_overrides.clone()),
            Box::new(self.pruning_rounds.clone()),
            Box::new(self.pruning_tokens_saved.clone()),
            Box::new(self.pruning_fallbacks.clone()),
            Box::new(self.pruning_rounds_total.clone()),
            Box::new(self.pruning_stopped.clone()),
            Box::new(self.pruning_stop_gap.clone()),
            Box::new(self.pruning_held.clone()),
            Box::new(self.selections.clone()),
            Box::new(self.selection_fallbacks.clone()),
            Box::new(self.vote_share.clone()),
            Box::new(self.agreement_stopped.clone()),
            Box::new(self.agreement_tokens_saved.clone()),
            Box::new(self.judge_requests.clone()),
            Box::new(self.judge_calls.clone()),
            Box::new(self.judge_duration.clone()),
            Box::new(self.judge_tokens.clone()),
            Box::new(self.cache_requests.clone()),
            Box::new(self.cache_evictions.clone()),
            Box::new(self.cache_entries.clone()),
            Box::new(self.cache_redis_requests.clone()),
            Box::new(self.cache_redis_errors.clone()),
            Box::new(self.cache_redis_duration.clone()),
            Box::new(self.upstream_requests.clone()),
            Box::new(self.upstream_duration.clone()),
            Box::new(self.upstream_inflight.clone()),
            Box::new(self.upstream_up.clone()),
            Box::new(self.upstream_failovers.clone()),
            Box::new(self.tokens.clone()),
            Box::new(self.execution_provider.clone()),
            Box::new(self.model_loaded.clone()),
            Box::new(self.reward_worker_up.clone()),
            Box::new(self.reward_worker_panics.clone()),
            Box::new(self.reward_worker_restarts.clone()),
        ]
    }

    fn register_all(&self) -> Result<(), prometheus::Error> {
        for c in self.collectors() {
            self.registry.register(c)?;
        }
        Ok(())
    }

    /// The name of every metric this struct exports (dashboards and rules may only use these).
    pub fn names(&self) -> Vec<String> {
        self.collectors().iter().flat_map(|c| c.desc().into_iter().map(|d| d.fq_name.clone())).collect()
    }

    /// Prometheus text exposition of every metric.
    pub fn render(&self) -> Result<String, prometheus::Error> {
        let mut buf = Vec::new();
        TextEncoder::new().encode(&self.registry.gather(), &mut buf)?;
        String::from_utf8(buf).map_err(|e| prometheus::Error::Msg(e.to_string()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn two_instances_do_not_collide_and_render() {
        let a = Metrics::new().unwrap();
        let b = Metrics::new().unwrap();
        a.requests.with_label_values(&["ok"]).inc();
        a.execution_provider.with_label_values(&["cpu"]).set(1);
        let text = a.render().unwrap();
        assert!(text.contains("bon_requests_total{outcome=\"ok\"} 1"), "{text}");
        assert!(text.contains("bon_execution_provider{provider=\"cpu\"} 1"));
        assert!(!b.render().unwrap().contains("outcome=\"ok\""));
    }
}
