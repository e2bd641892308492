//! The strategy step: the reward order (reward model, then the guard) refined by the request's strategy — a vote
//! over extracted answers, or an LLM judge — with the fallback to the reward order when the strategy cannot decide.

use std::time::{Duration, Instant};

use super::{Candidate, Plan, response_message};
use crate::{
    metrics::Metrics,
    openai::Usage,
    reward::Score,
    select::{
        Fallback, Judge, JudgeError, JudgeSummary, Selection, Strategy, VoteSummary,
        judge::{self, Spent},
        vote::{self, Ballot, Weighting},
    },
};

/// What selects the winner: the reward model and, for the judge strategies, the judge.
pub struct Selector<'a> {
    pub scorer: &'a dyn Score,
    /// None: a judge strategy falls back to `reward` (counted).
    pub judge: Option<&'a Judge>,
    pub judge_timeout: Duration,
}

/// The winner's order after the strategy: positions into `ok` (the selectable candidates), best first, the
/// selection report, and the judge's token usage.
pub(super) async fn refine(
    selector: &Selector<'_>,
    plan: &Plan,
    candidates: &[Candidate],
    ok: &[usize],
    reward_order: Vec<usize>,
    scored: bool,
    metrics: &Metrics,
) -> (Vec<usize>, Selection, Usage) {
    let strategy = plan.select.strategy;
    let mut sel = Selection { strategy, decided_by: Strategy::Reward, ..Selection::default() };
    let mut usage = Usage::default();
    let order = match strategy {
        Strategy::Reward => reward_order,
        Strategy::Vote | Strategy::WeightedVote => {
            let ballots: Vec<Ballot> = ok
                .iter()
                .map(|&i| Ballot {
                    answer: candidates[i].answer.clone(),
                    score: candidates[i].score,
                    flagged: candidates[i].flags.tier() > 0,
                })
                .collect();
            let weighted = strategy == Strategy::WeightedVote && scored;
            if strategy == Strategy::WeightedVote && !scored {
                sel.fallback = Some(Fallback::Unscored);
            }
            let weighting = if weighted {
                Weighting::Softmax { temperature: plan.select.vote_temperature }
            } else {
                Weighting::Count
            };
            match vote::tally(&ballots, weighting, plan.guard) {
                Some(t) => {
                    sel.decided_by = if weighted { Strategy::WeightedVote } else { Strategy::Vote };
                    metrics.vote_share.observe(t.winner_weight / t.total_weight);
                    let order = vote::order(&reward_order, &t);
                    sel.vote = Some(VoteSummary {
                        answer: t.answer,
                        winner_weight: t.winner_weight,
                        total_weight: t.total_weight,
                        winner_voters: t.winner_voters,
                        voters: t.voters,
                    });
                    order
                }
                None => {
                    sel.fallback = Some(Fallback::NoAnswers);
                    reward_order
                }
            }
        }
        Strategy::Judge | Strategy::RewardJudge => {
            let k = if strategy == Strategy::Judge { ok.len() } else { plan.select.shortlist.min(ok.len()) };
            let (shortlist, rest) = reward_order.split_at(k);
            match judged(selector, plan, candidates, ok, shortlist, metrics).await {
                Judgement::Decided(picked, summary, spent) => {
                    sel.decided_by = strategy;
                    sel.judge = Some(summary);
                    usage = spent;
                    picked.into_iter().map(|p| shortlist[p]).chain(rest.iter().copied()).collect()
                }
                Judgement::Failed(spent) => {
                    sel.fallback = Some(Fallback::JudgeFailed);
                    usage = spent;
                    reward_order
                }
            }
        }
    };
    if let Some(f) = sel.fallback {
        metrics.selection_fallbacks.with_label_values(&[strategy.as_str(), f.as_str()]).inc();
    }
    (order, sel, usage)
}

/// The judge's order of `shortlist`, what it cost (logged and counted when it failed).
async fn judged(
    selector: &Selector<'_>,
    plan: &Plan,
    candidates: &[Candidate],
    ok: &[usize],
    shortlist: &[usize],
    metrics: &Metrics,
) -> Judgement {
    let Some(judge) = selector.judge else {
        tracing::warn!("a judge strategy was asked for but no judge is configured; the reward model decides");
        metrics.judge_requests.with_label_values(&["unconfigured"]).inc();
        return Judgement::Failed(Usage::default());
    };
    let texts: Vec<String> = shortlist
        .iter()
        .map(|&p| candidates[ok[p]].result.as_ref().map(|c| response_message(c).text()).unwrap_or_default())
        .collect();
    let request = judge::request_text(&plan.conversation);
    let started = Instant::now();
    let spent = Spent::default();
    let outcome =
        tokio::time::timeout(selector.judge_timeout, judge.order(&request, &texts, plan.select.judge_mode, &spent))
            .await
            .unwrap_or(Err(JudgeError::Timeout(selector.judge_timeout)));
    let seconds = started.elapsed().as_secs_f64();
    metrics.judge_duration.observe(seconds);
    // What the judge spent counts whether or not it decided (a timeout drops only the calls still unanswered).
    let (usage, calls) = spent.get();
    metrics.judge_calls.inc_by(u64::from(calls));
    metrics.judge_tokens.with_label_values(&["prompt"]).inc_by(usage.prompt_tokens);
    metrics.judge_tokens.with_label_values(&["completion"]).inc_by(usage.completion_tokens);
    match outcome {
        Ok(j) => {
            metrics.judge_requests.with_label_values(&["ok"]).inc();
            if j.unrated > 0 {
                tracing::warn!(unrated = j.unrated, "the judge could not rate some candidates; they rank last");
            }
            let summary = JudgeSummary {
                calls,
                prompt_tokens: usage.prompt_tokens,
                completion_tokens: usage.completion_tokens,
                seconds,
                unrated: j.unrated,
            };
            Judgement::Decided(j.order, summary, usage)
        }
        Err(e) => {
            tracing::warn!(error = %e, "the judge failed; the reward model decides");
            metrics.judge_requests.with_label_values(&[e.kind()]).inc();
            Judgement::Failed(usage)
        }
    }
}

/// What asking the judge came to: its order of the shortlist (positions into it), what it cost; or a failure and the
/// tokens it spent all the same.
enum Judgement {
    Decided(Vec<usize>, JudgeSummary, Usage),
    Failed(Usage),
}
