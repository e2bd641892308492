//! Best-of-N orchestration: generate N candidates concurrently (`generate`), drop the ones that fail or time out, score
//! the survivors in one reward-model batch, rank them. Knows nothing about HTTP handlers.
//!
//! Cancellation: the candidate futures live inside the caller's future (`join_all`, no spawned tasks), so when the
//! client disconnects and axum drops the handler, every in-flight upstream request is dropped and its connection
//! closed.

pub mod args;
mod assemble;
mod generate;
mod outcome;
mod plan;
pub mod prune;
mod rank;
pub mod scores;

pub use args::{BonArgs, PruneAt, Switch};
pub use generate::Generation;
pub use outcome::{Outcome, Unscored};
pub use plan::{Candidate, Plan};
pub use prune::{Live, LiveTx, Prune};

use std::{
    sync::atomic::{AtomicBool, Ordering},
    time::{SystemTime, UNIX_EPOCH},
};

use crate::{
    error::ApiError,
    openai::{ChatCompletion, Message, Usage},
    select::{self, Contest, Entrant, Selection, Selector, guard},
    upstream::UpstreamError,
};

/// Runs generation and selection for `plan`. With pruning and `live`, the last candidate standing is handed to
/// `live` while it generates (when pruning leaves one).
pub async fn run(
    generation: &Generation<'_>,
    selector: &Selector<'_>,
    plan: &Plan,
    live: Option<&LiveTx>,
) -> Result<Outcome, ApiError> {
    let scorer = selector.scorer;
    let metrics = generation.metrics;
    metrics.n_used.observe(f64::from(plan.n));
    let id = completion_id();
    let created = SystemTime::now().duration_since(UNIX_EPOCH).map_or(0, |d| d.as_secs());
    let (mut candidates, rounds) = generate(generation, scorer, plan, live, &id, created).await;

    let mut usage = Usage::default();
    for c in &candidates {
        if let Ok(Some(u)) = c.result.as_ref().map(|r| r.usage) {
            usage += u;
        }
    }
    metrics.tokens.with_label_values(&["prompt"]).inc_by(usage.prompt_tokens);
    metrics.tokens.with_label_values(&["completion"]).inc_by(usage.completion_tokens);

    let ok: Vec<usize> = (0..candidates.len()).filter(|&i| candidates[i].selectable()).collect();
    if ok.is_empty() {
        return Err(all_failed(candidates.into_iter().filter_map(|c| c.result.err()).collect()));
    }

    let flags: Vec<guard::Flags> = ok.iter().map(|&i| candidates[i].flags).collect();
    annotate(generation, plan, &mut candidates, &ok, metrics);
    count_unconfident(metrics, &candidates, &ok);
    let mut selection = Selection { strategy: plan.select.strategy, ..Selection::default() };
    selection.stopped_on_agreement =
        (0..candidates.len()).filter(|&i| matches!(candidates[i].result, Err(UpstreamError::Agreed))).collect();
    if !selection.stopped_on_agreement.is_empty() {
        count_agreement(metrics, &candidates, &ok, selection.stopped_on_agreement.len());
    }
    // After pruning rounds, the last one standing is still scored whole: its score is the one reported.
    let (order, unscored) = if ok.len() == 1 && rounds == 0 {
        (vec![0], Some(Unscored::SingleSurvivor))
    } else {
        let inputs =
            ok.iter().filter_map(|&i| candidates[i].result.as_ref().ok()).map(|c| rank::input(plan, c)).collect();
        let (reward_order, scores) = match rank::score_and_rank(scorer, inputs, &flags, plan.guard, false).await {
            Ok(rank::Ranked { scores, by_score, order }) => {
                for (&i, &s) in ok.iter().zip(&scores) {
                    candidates[i].score = Some(s);
                }
                if order[0] != by_score[0] {
                    metrics.guard_overrides.inc();
                }
                (order, Some((scores, by_score)))
            }
            Err(reason) => {
                tracing::warn!(error = %reason, "scoring failed; the first successful candidate ranks first");
                metrics.scorer_fallbacks.inc();
                let order: Vec<usize> = (0..ok.len()).collect();
                (if plan.guard { guard::tiered(order, &flags) } else { order }, None)
            }
        };
        let scored = scores.is_some();
        let entrants: Vec<Entrant<'_>> = ok
            .iter()
            .filter_map(|&i| {
                let c = &candidates[i];
                c.result.as_ref().ok().map(|r| Entrant {
                    message: &r.choices[0].message,
                    answer: c.answer.clone(),
                    score: c.score,
                    tier: c.flags.tier(),
                    confidence: c.confidence.map(|c| c.lowest),
                })
            })
            .collect();
        let contest =
            Contest { select: &plan.select, guard: plan.guard, conversation: &plan.conversation, entrants: &entrants };
        let (order, refined, judge_usage) = select::refine(selector, &contest, reward_order, scored, metrics).await;
        selection = Selection { stopped_on_agreement: selection.stopped_on_agreement, ..refined };
        usage += judge_usage;
        if let Some((scores, by_score)) = scores {
            observe_scores(metrics, &scores, &by_score, order[0], plan.n);
        }
        (order, (!scored).then_some(Unscored::ScorerFailed))
    };
    metrics.selections.with_label_values(&[plan.select.strategy.as_str(), selection.decided_by.as_str()]).inc();
    let ranked: Vec<usize> = order.into_iter().map(|j| ok[j]).collect();
    if rounds > 0 {
        // What plain Best-of-N would have generated (N answers as long as the winner's) minus what was.
        let winner =
            candidates[ranked[0]].result.as_ref().ok().and_then(|c| c.usage).map_or(0, |u| u.completion_tokens);
        let saved = (u64::from(plan.n) * winner).saturating_sub(usage.completion_tokens);
        metrics.pruning_tokens_saved.inc_by(saved);
    }

    Ok(Outcome { id, created, n: plan.n, candidates, ranked, usage, unscored, selection })
}

/// The N candidates, pruned or stopped by confidence while they generate when the plan says so (falling back to
/// plain generation when the upstream cannot stream); and how many pruning rounds ran.
async fn generate(
    generation: &Generation<'_>,
    scorer: &dyn crate::reward::Score,
    plan: &Plan,
    live: Option<&LiveTx>,
    id: &str,
    created: u64,
) -> (Vec<Candidate>, u32) {
    let metrics = generation.metrics;
    // The online stop needs a threshold: none until the model's history holds enough finished candidates.
    let confidence_below = plan.select.confidence_stop.then(|| generation.confidence.threshold(plan.model())).flatten();
    let stops = prune::Stops { prune: plan.prune, confidence_below };
    if stops == prune::Stops::default() {
        return (generation.candidates(plan).await, 0);
    }
    match prune::candidates(generation, scorer, plan, stops, live.map(|tx| (tx, id, created))).await {
        Ok((candidates, report)) => {
            if stops.prune.is_some() {
                metrics.pruning_rounds.observe(f64::from(report.rounds));
            }
            metrics.confidence_stopped.inc_by(u64::from(report.unconfident));
            if report.unstreamed {
                fell_back("the upstream answered `stream: true` with a whole completion");
                metrics.pruning_fallbacks.inc();
            }
            (candidates, report.rounds)
        }
        Err(prune::Refused(e)) => {
            fell_back(&e.to_string());
            metrics.pruning_fallbacks.inc();
            (generation.candidates(plan).await, 0)
        }
    }
}

/// What the strategy reads besides the text, on each selectable candidate: the extracted answer (vote strategies),
/// the token confidence (confidence strategies and the online stop: then also on the candidates the stop cut
/// short, and remembered for the model's threshold); and the guard's flags counted.
fn annotate(
    generation: &Generation<'_>,
    plan: &Plan,
    candidates: &mut [Candidate],
    ok: &[usize],
    metrics: &crate::metrics::Metrics,
) {
    if plan.select.strategy.votes() {
        for &i in ok {
            let text = candidates[i].result.as_ref().map(|c| response_message(c).text()).unwrap_or_default();
            candidates[i].answer = plan.select.answer.extract(&text);
        }
    }
    if plan.select.strategy.reads_confidence() || plan.select.confidence_stop {
        let mut lowest = Vec::new();
        let read: Vec<usize> =
            (0..candidates.len()).filter(|&i| ok.contains(&i) || candidates[i].unconfident).collect();
        for i in read {
            candidates[i].confidence = candidates[i].result.as_ref().ok().and_then(|c| plan::confidence_of(c, plan));
            if let Some(c) = candidates[i].confidence {
                metrics.candidate_confidence.observe(c.lowest);
                lowest.push(c.lowest);
            }
        }
        generation.confidence.record(plan.model(), lowest);
    }
    for &i in ok {
        for name in candidates[i].flags.names() {
            metrics.guard_flags.with_label_values(&[name]).inc();
        }
    }
}

/// Candidates stopped because the vote was decided, and the completion tokens that saved: each stopped one counted
/// as long as the mean finished answer. What it had generated before it was stopped is unknown (a non-streamed
/// request reports nothing) and not subtracted, so this is an upper estimate.
fn count_agreement(metrics: &crate::metrics::Metrics, candidates: &[Candidate], ok: &[usize], stopped: usize) {
    metrics.agreement_stopped.inc_by(stopped as u64);
    let lengths: Vec<u64> = ok
        .iter()
        .filter_map(|&i| candidates[i].result.as_ref().ok().and_then(|c| c.usage).map(|u| u.completion_tokens))
        .collect();
    if !lengths.is_empty() {
        let mean = lengths.iter().sum::<u64>() / lengths.len() as u64;
        metrics.agreement_tokens_saved.inc_by(mean * stopped as u64);
    }
}

/// What the online confidence stop saved: each stopped candidate counted as long as the mean finished answer, less
/// what it had generated (streamed: known).
fn count_unconfident(metrics: &crate::metrics::Metrics, candidates: &[Candidate], ok: &[usize]) {
    let tokens = |c: &Candidate| c.result.as_ref().ok().and_then(|r| r.usage).map(|u| u.completion_tokens);
    let lengths: Vec<u64> = ok.iter().filter_map(|&i| tokens(&candidates[i])).collect();
    if lengths.is_empty() {
        return;
    }
    let mean = lengths.iter().sum::<u64>() / lengths.len() as u64;
    let saved: u64 =
        candidates.iter().filter(|c| c.unconfident).map(|c| mean.saturating_sub(tokens(c).unwrap_or(0))).sum();
    metrics.confidence_tokens_saved.inc_by(saved);
}

/// Pruning could not stream this call; logged once per process (the metric counts every time).
fn fell_back(reason: &str) {
    static LOGGED: AtomicBool = AtomicBool::new(false);
    if !LOGGED.swap(true, Ordering::Relaxed) {
        tracing::warn!(reason, "pruning needs a streaming upstream; this call ran as plain Best-of-N (logged once)");
    }
}

/// Per-call score metrics: the winner's score, the reward model's own margin, and the over-optimisation signals
/// (spread, the returned winner's z-score among the candidates, the KL bound log n - (n-1)/n of Best-of-n).
fn observe_scores(metrics: &crate::metrics::Metrics, scores: &[f32], by_score: &[usize], winner: usize, n: u32) {
    if let Some(m) = scores::margin(scores, by_score) {
        metrics.score_margin.observe(f64::from(m));
    }
    metrics.winner_score.observe(f64::from(scores[winner]));
    if let Some(spread) = scores::spread(scores) {
        metrics.score_spread.observe(f64::from(spread));
    }
    if let Some(z) = scores::z_score(scores, winner) {
        metrics.winner_z.observe(z);
    }
    metrics.kl_bound.observe(scores::kl_bound(n));
}

/// The assistant message a candidate proposes (first choice; upstreams that ignore `n` return one).
pub fn response_message(c: &ChatCompletion) -> Message {
    let mut m = c.choices[0].message.clone();
    if m.role.is_empty() {
        m.role = "assistant".into();
    }
    m
}

/// Zero survivors: the upstream's own 4xx when every candidate got the same one (the request itself is wrong,
/// e.g. an unknown model), else a 502 listing each cause.
fn all_failed(errors: Vec<UpstreamError>) -> ApiError {
    if let Some(UpstreamError::Status { status, message, kind, param, code }) = errors.first()
        && errors
            .iter()
            .all(|e| e.is_client_error() && matches!(e, UpstreamError::Status { status: s, .. } if s == status))
    {
        return ApiError::UpstreamRejected {
            status: *status,
            message: message.clone(),
            kind: kind.clone(),
            param: param.clone(),
            code: code.clone(),
        };
    }
    ApiError::AllCandidatesFailed { errors }
}

fn completion_id() -> String {
    const HEX: &[u8; 16] = b"0123456789abcdef";
    let bytes: [u8; 12] = rand::random();
    let mut id = String::with_capacity(13 + 2 * bytes.len());
    id.push_str("chatcmpl-bon-");
    for b in bytes {
        id.push(char::from(HEX[usize::from(b >> 4)]));
        id.push(char::from(HEX[usize::from(b & 15)]));
    }
    id
}

#[cfg(test)]
mod tests;
