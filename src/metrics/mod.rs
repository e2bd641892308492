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
    names: Vec<String>,
    catalogue: Vec<Described>,
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
    pub candidate_confidence: Histogram,
    pub agreement_stopped: IntCounter,
    pub agreement_tokens_saved: IntCounter,
    pub confidence_stopped: IntCounter,
    pub confidence_tokens_saved: IntCounter,
    pub judge_requests: IntCounterVec,
    pub judge_calls: IntCounter,
    pub judge_duration: Histogram,
    pub judge_tokens: IntCounterVec,
    pub cache_requests: IntCounterVec,
    pub cache_evictions: IntCounterVec,
    pub cache_degraded: IntCounterVec,
    pub cache_entries: IntGauge,
    pub cache_redis_requests: IntCounterVec,
    pub cache_redis_errors: IntCounterVec,
    pub cache_redis_duration: HistogramVec,
    pub upstream_requests: IntCounterVec,
    pub upstream_duration: HistogramVec,
    pub upstream_inflight: IntGaugeVec,
    pub upstream_up: IntGaugeVec,
    pub upstream_probes: IntCounterVec,
    pub upstream_failovers: IntCounterVec,
    pub passthrough_requests: IntCounterVec,
    pub passthrough_duration: HistogramVec,
    pub tokens: IntCounterVec,
    pub execution_provider: IntGaugeVec,
    pub model_loaded: IntGauge,
    pub reward_worker_up: IntGauge,
    pub reward_worker_panics: IntCounterVec,
    pub reward_worker_restarts: IntCounter,
}

impl Metrics {
    /// Builds and registers every metric.
    pub fn new() -> Result<Self, prometheus::Error> {
        let mut r = Registering { registry: Registry::new(), names: Vec::new(), catalogue: Vec::new() };
        let m = Self {
            requests: r.counter_vec(REQUESTS, "Chat completion requests by outcome (ok, or the error type).", &["outcome"])?,
            request_duration: r.hist_vec(REQUEST_DURATION, "End-to-end latency of chat completion requests.", &LATENCY_BUCKETS, &["cache"])?,
            inflight: r.gauge(INFLIGHT, "Chat completion requests being served.")?,
            candidates: r.counter_vec(CANDIDATES, "Upstream candidates by outcome (ok, timeout, http_5xx, transport, ...).", &["outcome"])?,
            candidate_duration: r.hist_vec(CANDIDATE_DURATION, "Latency of one upstream candidate, slot wait included.", &LATENCY_BUCKETS, &["outcome"])?,
            n_used: r.hist(N_USED, "N (candidates generated) per Best-of-N request.", &N_BUCKETS)?,
            reward_duration: r.hist(REWARD_DURATION, "Reward model time per scoring call, submitted to answered (tokenize + queue + inference).", &REWARD_BUCKETS)?,
            reward_queue: r.hist(REWARD_QUEUE, "Time a tokenized scoring call waited for the scoring thread.", &REWARD_BUCKETS)?,
            reward_tokenize: r.hist(REWARD_TOKENIZE, "Time to render and tokenize one scoring call (tokenizer threads).", &REWARD_BUCKETS)?,
            reward_inference: r.hist(REWARD_INFERENCE, "Time of one ONNX Runtime run (one batch).", &REWARD_BUCKETS)?,
            reward_batch: r.hist(REWARD_BATCH, "Sequences per reward model run.", &BATCH_BUCKETS)?,
            reward_padding: r.hist(REWARD_PADDING, "Share of a reward model run's tokens that are padding.", &PADDING_BUCKETS)?,
            reward_errors: r.counter(REWARD_ERRORS, "Reward model jobs that failed.")?,
            scorer_fallbacks: r.counter(SCORER_FALLBACKS, "Requests answered with the first successful candidate because scoring failed.")?,
            winner_score: r.hist(WINNER_SCORE, "Reward of the returned candidate.", &SCORE_BUCKETS)?,
            score_margin: r.hist(SCORE_MARGIN, "Highest reward minus the second highest.", &MARGIN_BUCKETS)?,
            score_spread: r.hist(SCORE_SPREAD, "Highest minus lowest reward among a call's candidates.", &MARGIN_BUCKETS)?,
            winner_z: r.hist(WINNER_Z, "Returned candidate's reward in standard deviations above its call's mean.", &Z_BUCKETS)?,
            kl_bound: r.hist(KL_BOUND, "KL bound log(n) - (n-1)/n of each scored Best-of-N call.", &KL_BUCKETS)?,
            guard_flags: r.counter_vec(GUARD_FLAGS, "Successful candidates flagged by the degenerate-text guard, by flag.", &["flag"])?,
            guard_overrides: r.counter(GUARD_OVERRIDES, "Calls whose highest-scored candidate was not returned because the guard ranked it lower.")?,
            pruning_rounds: r.hist(PRUNING_ROUNDS, "Pruning rounds per pruned Best-of-N call.", &ROUND_BUCKETS)?,
            pruning_tokens_saved: r.counter(PRUNING_TOKENS_SAVED, "Completion tokens pruning saved: N times the winner's length, minus what was generated.")?,
            pruning_fallbacks: r.counter(PRUNING_FALLBACKS, "Pruned calls that ran as plain Best-of-N because the upstream did not stream.")?,
            pruning_rounds_total: r.counter(PRUNING_ROUNDS_TOTAL, "Pruning rounds run (partial answers scored).")?,
            pruning_stopped: r.hist(PRUNING_STOPPED, "Candidates stopped per pruning round.", &ROUND_BUCKETS)?,
            pruning_stop_gap: r.hist(PRUNING_STOP_GAP, "How far each stopped candidate's partial score was behind the round's leader.", &MARGIN_BUCKETS)?,
            pruning_held: r.counter(PRUNING_HELD, "Candidates the keep share would have stopped that the margin rule (--prune-confidence) kept going.")?,
            selections: r.counter_vec(SELECTIONS, "Best-of-N calls by the strategy asked for and the one that decided.", &["strategy", "decided_by"])?,
            selection_fallbacks: r.counter_vec(SELECTION_FALLBACKS, "Calls whose strategy could not decide (no-answers, unscored, judge-failed); the reward model did.", &["strategy", "reason"])?,
            vote_share: r.hist(VOTE_SHARE, "The winning answer's share of the votes (vote strategies).", &SHARE_BUCKETS)?,
            candidate_confidence: r.hist(CANDIDATE_CONFIDENCE, "A candidate's lowest group confidence (confidence strategies): minus the mean top-k log-probability over its weakest --confidence-window tokens.", &CONFIDENCE_BUCKETS)?,
            agreement_stopped: r.counter(AGREEMENT_STOPPED, "Candidates stopped because the vote was already decided (stop on agreement).")?,
            agreement_tokens_saved: r.counter(AGREEMENT_TOKENS_SAVED, "Completion tokens stop on agreement saved (estimate: each stopped candidate as long as the mean answer).")?,
            confidence_stopped: r.counter(CONFIDENCE_STOPPED, "Candidates the online confidence stop stopped (their group confidence fell below the model's threshold).")?,
            confidence_tokens_saved: r.counter(CONFIDENCE_TOKENS_SAVED, "Completion tokens the online confidence stop saved (estimate: each stopped candidate as long as the mean finished answer, less what it had generated).")?,
            judge_requests: r.counter_vec(JUDGE_REQUESTS, "Judge selections by outcome (ok, failed, timeout, unconfigured).", &["outcome"])?,
            judge_calls: r.counter(JUDGE_CALLS, "Calls made to the judge model.")?,
            judge_duration: r.hist(JUDGE_DURATION, "Time the judge took per Best-of-N call.", &LATENCY_BUCKETS)?,
            judge_tokens: r.counter_vec(JUDGE_TOKENS, "Tokens the judge reported spending (prompt, completion).", &["kind"])?,
            cache_requests: r.counter_vec(CACHE_REQUESTS, "Cache lookups by result (hit, miss, bypass).", &["result"])?,
            cache_evictions: r.counter_vec(CACHE_EVICTIONS, "Cache entries removed, by cause (expired, size, replaced, explicit).", &["cause"])?,
            cache_degraded: r.counter_vec(CACHE_DEGRADED, "Fresh results not cached because a fallback or a failure degraded them, by reason (scorer-failed, unscored, judge-failed, candidates-failed).", &["reason"])?,
            cache_entries: r.gauge(CACHE_ENTRIES, "Entries in the result cache.")?,
            cache_redis_requests: r.counter_vec(CACHE_REDIS_REQUESTS, "Shared (Redis) cache lookups after a local miss, by result (hit, miss; skipped: Redis failed less than a second ago).", &["result"])?,
            cache_redis_errors: r.counter_vec(CACHE_REDIS_ERRORS, "Shared cache operations that failed (get, set; decode: a value this version cannot read).", &["op"])?,
            cache_redis_duration: r.hist_vec(CACHE_REDIS_DURATION, "Latency of shared cache operations (get, set).", &REDIS_BUCKETS, &["op"])?,
            upstream_requests: r.counter_vec(UPSTREAM_REQUESTS, "Requests to each upstream of the pool, by outcome (ok, or the failure).", &["upstream", "outcome"])?,
            upstream_duration: r.hist_vec(UPSTREAM_DURATION, "Latency of one request to an upstream of the pool.", &LATENCY_BUCKETS, &["upstream"])?,
            upstream_inflight: r.gauge_vec(UPSTREAM_INFLIGHT, "Requests this proxy has in flight to each upstream.", &["upstream"])?,
            upstream_up: r.gauge_vec(UPSTREAM_UP, "1 while an upstream gets traffic, 0 while it is marked down.", &["upstream"])?,
            upstream_probes: r.counter_vec(UPSTREAM_PROBES, "Health probes of an upstream by outcome (ok; timeout: not answered in time, kept; down: a failed connection or a 5xx).", &["upstream", "outcome"])?,
            upstream_failovers: r.counter_vec(UPSTREAM_FAILOVERS, "Requests retried on another upstream after this one failed.", &["upstream"])?,
            passthrough_requests: r.counter_vec(PASSTHROUGH_REQUESTS, "Requests passed through to the upstream untouched (every /v1 route bon-proxy does not serve itself), by route and status (the upstream's HTTP status, or error: no upstream answered).", &["route", "status"])?,
            passthrough_duration: r.hist_vec(PASSTHROUGH_DURATION, "Time until the upstream's answer to a passed-through request began (its headers; a streamed body flows on after).", &LATENCY_BUCKETS, &["route"])?,
            tokens: r.counter_vec(TOKENS, "Tokens the upstream reported spending, all candidates (prompt, completion).", &["kind"])?,
            execution_provider: r.gauge_vec(EXECUTION_PROVIDER, "1 for the execution provider the reward model runs on.", &["provider"])?,
            model_loaded: r.gauge(MODEL_LOADED, "1 once the reward model is loaded and answered a warm-up run.")?,
            reward_worker_up: r.gauge(REWARD_WORKER_UP, "1 while the scoring thread can score; 0 while it restarts after a panic (/ready answers 503 then).")?,
            reward_worker_panics: r.counter_vec(REWARD_WORKER_PANICS, "Panics caught in the reward model's threads, by thread: scoring (each failed one batch and restarted the reward model), tokenizer (each failed one scoring call).", &["thread"])?,
            reward_worker_restarts: r.counter(REWARD_WORKER_RESTARTS, "Times the reward model was reopened and warmed up again after a panic.")?,
            names: r.names,
            catalogue: r.catalogue,
            registry: r.registry,
        };
        // Both threads' series exist from the start (a dashboard sees 0, not nothing).
        for thread in ["scoring", "tokenizer"] {
            m.reward_worker_panics.with_label_values(&[thread]);
        }
        Ok(m)
    }

    /// The name of every metric this struct exports (dashboards and rules may only use these).
    pub fn names(&self) -> &[String] {
        &self.names
    }

    /// Every exported metric with its type, help and labels, in registration order (the generated reference).
    pub fn catalogue(&self) -> &[Described] {
        &self.catalogue
    }

    /// Prometheus text exposition of every metric.
    pub fn render(&self) -> Result<String, prometheus::Error> {
        let mut buf = Vec::new();
        TextEncoder::new().encode(&self.registry.gather(), &mut buf)?;
        String::from_utf8(buf).map_err(|e| prometheus::Error::Msg(e.to_string()))
    }
}

/// Builds each metric and registers it as it is made: nothing can be built and left unexported.
struct Registering {
    registry: Registry,
    names: Vec<String>,
    catalogue: Vec<Described>,
}

/// One exported metric as the reference lists it.
#[derive(Clone, Debug)]
pub struct Described {
    pub name: String,
    /// `counter`, `gauge` or `histogram`.
    pub kind: &'static str,
    pub help: String,
    pub labels: Vec<String>,
}

impl Registering {
    fn add<C: Collector + Clone + 'static>(&mut self, kind: &'static str, c: C) -> Result<C, prometheus::Error> {
        for d in c.desc() {
            self.names.push(d.fq_name.clone());
            self.catalogue.push(Described {
                name: d.fq_name.clone(),
                kind,
                help: d.help.clone(),
                labels: d.variable_labels.clone(),
            });
        }
        self.registry.register(Box::new(c.clone()))?;
        Ok(c)
    }

    fn counter(&mut self, name: &str, help: &str) -> Result<IntCounter, prometheus::Error> {
        self.add("counter", IntCounter::new(name, help)?)
    }

    fn counter_vec(&mut self, name: &str, help: &str, labels: &[&str]) -> Result<IntCounterVec, prometheus::Error> {
        self.add("counter", IntCounterVec::new(Opts::new(name, help), labels)?)
    }

    fn gauge(&mut self, name: &str, help: &str) -> Result<IntGauge, prometheus::Error> {
        self.add("gauge", IntGauge::new(name, help)?)
    }

    fn gauge_vec(&mut self, name: &str, help: &str, labels: &[&str]) -> Result<IntGaugeVec, prometheus::Error> {
        self.add("gauge", IntGaugeVec::new(Opts::new(name, help), labels)?)
    }

    fn hist(&mut self, name: &str, help: &str, buckets: &[f64]) -> Result<Histogram, prometheus::Error> {
        self.add("histogram", Histogram::with_opts(HistogramOpts::new(name, help).buckets(buckets.to_vec()))?)
    }

    fn hist_vec(
        &mut self,
        name: &str,
        help: &str,
        buckets: &[f64],
        labels: &[&str],
    ) -> Result<HistogramVec, prometheus::Error> {
        self.add("histogram", HistogramVec::new(HistogramOpts::new(name, help).buckets(buckets.to_vec()), labels)?)
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
