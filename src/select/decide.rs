//! The strategy step: the reward order (reward model, then the guard) refined by the request's strategy — a vote
//! over extracted answers, the upstream's confidence, or an LLM judge — with the fallback to the reward order when
//! the strategy cannot decide. `bon` hands it the selectable candidates as `Entrant`s and gets back an order.

use std::time::{Duration, Instant};

use super::{
    Fallback, Judge, JudgeError, JudgeSummary, Select, Selection, Strategy, VoteSummary,
    judge::{self, Spent},
    vote::{self, Ballot, Weighting},
};
use crate::{
    metrics::Metrics,
    openai::{Message, Usage},
    reward::Score,
};

/// What selects the winner: the reward model and, for the judge strategies, the judge.
pub struct Selector<'a> {
    pub scorer: &'a dyn Score,
    /// None: a judge strategy falls back to `reward` (counted).
    pub judge: Option<&'a Judge>,
    pub judge_timeout: Duration,
}

/// One selectable candidate as the strategies see it.
#[derive(Clone, Debug)]
pub struct Entrant<'a> {
    /// The answer it gives.
    pub message: &'a Message,
    /// The answer extracted for the vote strategies (None: not extracted, or none found).
    pub answer: Option<String>,
    /// Its reward-model score (None: not scored).
    pub score: Option<f32>,
    /// The degenerate-text guard's tier (0: clean).
    pub tier: u8,
    /// The upstream's confidence in it: its lowest group confidence (None: no `logprobs`).
    pub confidence: Option<f64>,
}

/// What the strategy step decides over: the request's selection settings, the conversation (for the judge) and the
/// selectable candidates, in generation order.
pub struct Contest<'a> {
    pub select: &'a Select,
    /// Rank the guard's flagged candidates below the others.
    pub guard: bool,
    pub conversation: &'a [Message],
    pub entrants: &'a [Entrant<'a>],
}

/// The winner's order after the strategy: positions into `contest.entrants`, best first, the selection report, and
/// the judge's token usage.
pub async fn refine(
    selector: &Selector<'_>,
    contest: &Contest<'_>,
    reward_order: Vec<usize>,
    scored: bool,
    metrics: &Metrics,
) -> (Vec<usize>, Selection, Usage) {
    let entrants = contest.entrants;
    let strategy = contest.select.strategy;
    let mut sel = Selection { strategy, decided_by: Strategy::Reward, ..Selection::default() };
    let mut usage = Usage::default();
    let order = match strategy {
        Strategy::Reward => reward_order,
        Strategy::Vote | Strategy::WeightedVote => {
            let answers: Vec<Option<String>> = entrants.iter().map(|e| e.answer.clone()).collect();
            let flagged: Vec<bool> = entrants.iter().map(|e| e.tier > 0).collect();
            let ballots = ballots(&answers, &flagged, |p| entrants[p].score, |_| true);
            let weighted = strategy == Strategy::WeightedVote && scored;
            if strategy == Strategy::WeightedVote && !scored {
                sel.fallback = Some(Fallback::Unscored);
            }
            let (weighting, by) = if weighted {
                (Weighting::Softmax { temperature: contest.select.vote_temperature }, Strategy::WeightedVote)
            } else {
                (Weighting::Count, Strategy::Vote)
            };
            voted(&mut sel, &ballots, weighting, by, reward_order, contest.guard, metrics)
        }
        Strategy::Confidence | Strategy::ConfidenceVote => {
            let confidence: Vec<Option<f64>> = entrants.iter().map(|e| e.confidence).collect();
            let tiers: Vec<u8> = entrants.iter().map(|e| e.tier).collect();
            let flagged: Vec<bool> = tiers.iter().map(|&t| t > 0).collect();
            let answers: Vec<Option<String>> = entrants.iter().map(|e| e.answer.clone()).collect();
            if confidence.iter().all(Option::is_none) {
                // No `logprobs` came back: `reward` decides for `confidence`, a plain count for `confidence-vote`.
                sel.fallback = Some(Fallback::NoLogprobs);
                if strategy == Strategy::Confidence {
                    reward_order
                } else {
                    let ballots = ballots(&answers, &flagged, |_| None, |_| true);
                    voted(&mut sel, &ballots, Weighting::Count, Strategy::Vote, reward_order, contest.guard, metrics)
                }
            } else {
                let order = confidence_order(&reward_order, &confidence, &tiers, contest.guard);
                if strategy == Strategy::Confidence {
                    sel.decided_by = Strategy::Confidence;
                    order
                } else {
                    // The most confident `keep` share of the candidates with an answer and a confidence vote.
                    let eligible = |p: usize| answers[p].is_some() && confidence[p].is_some();
                    let voters = super::confidence::voters(&order, eligible, contest.select.confidence_keep);
                    let score = |p: usize| confidence[p].map(|c| c as f32);
                    let ballots = ballots(&answers, &flagged, score, |p| voters.contains(&p));
                    let order = voted(
                        &mut sel,
                        &ballots,
                        Weighting::Score,
                        Strategy::ConfidenceVote,
                        order,
                        contest.guard,
                        metrics,
                    );
                    if sel.fallback == Some(Fallback::NoAnswers) {
                        // Nothing to vote on: the confidence order stands (`confidence; fallback=no-answers`).
                        sel.decided_by = Strategy::Confidence;
                    }
                    order
                }
            }
        }
        Strategy::Judge | Strategy::RewardJudge => {
            let k =
                if strategy == Strategy::Judge { entrants.len() } else { contest.select.shortlist.min(entrants.len()) };
            let (shortlist, rest) = reward_order.split_at(k);
            match judged(selector, contest, shortlist, metrics).await {
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

/// Ballots of the candidates at positions 0.., those `votes` leaves out without an answer.
fn ballots(
    answers: &[Option<String>],
    flagged: &[bool],
    score: impl Fn(usize) -> Option<f32>,
    votes: impl Fn(usize) -> bool,
) -> Vec<Ballot> {
    (0..answers.len())
        .map(|p| Ballot { answer: answers[p].clone().filter(|_| votes(p)), score: score(p), flagged: flagged[p] })
        .collect()
}

/// A vote over `ballots`: `base` (positions, best first) re-ordered by it and `decided_by` recorded, or `base` and
/// the `no-answers` fallback when nobody voted.
fn voted(
    sel: &mut Selection,
    ballots: &[Ballot],
    weighting: Weighting,
    decided_by: Strategy,
    base: Vec<usize>,
    guard: bool,
    metrics: &Metrics,
) -> Vec<usize> {
    let Some(t) = vote::tally(ballots, weighting, guard) else {
        sel.fallback = Some(Fallback::NoAnswers);
        return base;
    };
    sel.decided_by = decided_by;
    metrics.vote_share.observe(t.winner_weight / t.total_weight);
    let order = vote::order(&base, &t);
    sel.vote = Some(VoteSummary {
        answer: t.answer,
        winner_weight: t.winner_weight,
        total_weight: t.total_weight,
        winner_voters: t.winner_voters,
        voters: t.voters,
    });
    order
}

/// `reward_order` re-ordered by confidence, most confident first (no confidence last), the guard's tiers before
/// that when on: a confident loop must not win. Ties keep reward order.
pub fn confidence_order(reward_order: &[usize], confidence: &[Option<f64>], tiers: &[u8], guard: bool) -> Vec<usize> {
    let mut order = reward_order.to_vec();
    order.sort_by(|&a, &b| {
        let tier = |p: usize| if guard { tiers[p] } else { 0 };
        tier(a).cmp(&tier(b)).then_with(|| match (confidence[a], confidence[b]) {
            (Some(x), Some(y)) => y.total_cmp(&x),
            (x, y) => y.is_some().cmp(&x.is_some()),
        })
    });
    order
}

/// The judge's order of `shortlist`, what it cost (logged and counted when it failed).
async fn judged(selector: &Selector<'_>, contest: &Contest<'_>, shortlist: &[usize], metrics: &Metrics) -> Judgement {
    let Some(judge) = selector.judge else {
        tracing::warn!("a judge strategy was asked for but no judge is configured; the reward model decides");
        metrics.judge_requests.with_label_values(&["unconfigured"]).inc();
        return Judgement::Failed(Usage::default());
    };
    let texts: Vec<String> = shortlist.iter().map(|&p| contest.entrants[p].message.text()).collect();
    let request = judge::request_text(contest.conversation);
    let started = Instant::now();
    let spent = Spent::default();
    let outcome =
        tokio::time::timeout(selector.judge_timeout, judge.order(&request, &texts, contest.select.judge_mode, &spent))
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
