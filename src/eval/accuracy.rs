//! Accuracy against reference answers (prompts with `"answer"`): per n, how often each strategy's pick is right,
//! as an exact expectation over every n-subset of a prompt's samples — the same samples for every strategy. Where a
//! prompt has more than `EXACT_SUBSETS` n-subsets (C(32, 16) is 6·10^8), the subset strategies (vote, weighted vote,
//! any, stop tokens) are estimated instead from `DRAWS` n-subsets drawn uniformly (seeded: the same report twice),
//! an unbiased estimate whose standard error the report gives. Reward and judge stay exact at any size
//! (`stats::expected_pick`).
//!
//! - single: the mean over samples; greedy: the temperature-0 answer;
//! - reward: the proxy's reward pick (guard tier, then reward; `stats::expected_pick`);
//! - vote, weighted-vote: `select::vote` over the subset, returned as the proxy returns it (fallback: reward);
//! - judge: the highest judge rating (pointwise), when every sample was rated;
//! - confidence: the proxy's `confidence` pick (guard tier, then the lowest group confidence), when samples carry a
//!   confidence; confidence vote: `confidence-vote` over the subset, as the proxy runs it (fallback: a count);
//! - any correct: some sample of the subset is right (pass@n, the ceiling of any selection);
//! - stop-on-agreement tokens: completion tokens a `vote` with stop on agreement spends, as a share of all n
//!   answers'. Candidates run side by side, so they finish in order of length: the stop comes when the shortest k
//!   decide the vote, and each stopped one had generated as many tokens as the k-th. Its accuracy is `vote`'s: the
//!   stop never changes the winning answer;
//! - online stop: `confidence-vote` and `confidence` over the samples the online confidence stop leaves, and the
//!   tokens it spends as a share of all n answers' (`online`).

use rand::{SeedableRng, rngs::StdRng};
use serde::Serialize;

use super::{Sample, keys, stats};
use crate::select::{
    ConfidenceHistory,
    answer::normalise,
    confidence,
    vote::{self, Ballot, Weighting},
};

mod online;
mod subsets;

use subsets::{binomial, combinations};

/// Accuracy of every strategy for one n, over the prompts with a reference answer and at least n samples.
#[derive(Clone, Debug, Default, Serialize, PartialEq)]
pub struct Accuracy {
    pub prompts: usize,
    pub single: Option<f64>,
    pub greedy: Option<f64>,
    pub reward: Option<f64>,
    pub vote: Option<f64>,
    pub weighted_vote: Option<f64>,
    pub judge: Option<f64>,
    pub confidence: Option<f64>,
    pub confidence_vote: Option<f64>,
    pub any_correct: Option<f64>,
    /// Completion tokens spent with stop on agreement / without (vote).
    pub agreement_tokens: Option<f64>,
    /// The online confidence stop: `confidence-vote` and `confidence` over the samples it leaves, and the
    /// completion tokens spent / without it.
    pub online_confidence_vote: Option<f64>,
    pub online_confidence: Option<f64>,
    pub online_tokens: Option<f64>,
    /// `vote` with the online stop and stop on agreement together, and the tokens it spends / without them.
    pub online_vote_agreement: Option<f64>,
    pub online_vote_agreement_tokens: Option<f64>,
    /// None: exact over every n-subset; else how the subset strategies were estimated.
    pub sampled: Option<Sampled>,
}

/// The subset strategies estimated from drawn subsets (some prompt had more than `EXACT_SUBSETS`).
#[derive(Clone, Debug, Default, Serialize, PartialEq)]
pub struct Sampled {
    /// Prompts estimated, and subsets drawn for each.
    pub prompts: usize,
    pub draws: usize,
    /// Standard errors of `vote`, `weighted_vote`, `any_correct` and `agreement_tokens` from the draws.
    pub vote_se: f64,
    pub weighted_vote_se: f64,
    pub any_correct_se: f64,
    pub agreement_tokens_se: f64,
}

/// Most n-subsets a prompt is enumerated over; above it, `DRAWS` are drawn.
pub const EXACT_SUBSETS: u64 = 20_000;
/// Subsets drawn per prompt above `EXACT_SUBSETS`.
pub const DRAWS: usize = 2_000;

/// Settings the strategies are simulated with (as the proxy's `--vote-temperature`, `--degenerate-guard`).
#[derive(Clone, Copy, Debug)]
pub struct Simulate {
    pub guard: bool,
    pub vote_temperature: f64,
    pub confidence_keep: f64,
    /// The online stop (as --confidence-window, --confidence-percentile, --confidence-history,
    /// --confidence-min-history).
    pub window: usize,
    pub percentile: f64,
    pub history: usize,
    pub min_history: usize,
}

/// Per-prompt values, averaged by `accuracy`.
#[derive(Default)]
struct Acc {
    prompts: usize,
    single: Vec<f64>,
    greedy: Vec<f64>,
    reward: Vec<f64>,
    vote: Vec<f64>,
    weighted: Vec<f64>,
    judge: Vec<f64>,
    confidence: Vec<f64>,
    confidence_vote: Vec<f64>,
    online: [Vec<f64>; 5],
    any: Vec<f64>,
    tokens: Vec<f64>,
    /// Prompts estimated from draws, and their summed squared standard errors (vote, weighted, any, tokens).
    sampled: usize,
    variance: [f64; 4],
}

/// Accuracy for `n` over `prompts`: (reference answer, samples, greedy).
pub fn accuracy(prompts: &[(Option<&str>, &[Sample], &Sample)], n: usize, sim: Simulate) -> Accuracy {
    let mut acc = Acc::default();
    // The proxy's memory of the model's candidates, filled in prompt order: a prompt's threshold is its past's.
    let history = ConfidenceHistory::new(sim.history, sim.percentile, sim.min_history);
    for &(reference, samples, greedy) in prompts {
        let ok: Vec<&Sample> = samples.iter().filter(|s| s.ok()).collect();
        let threshold = history.threshold("");
        history.record("", ok.iter().filter_map(|s| s.confidence.map(|c| c.lowest)));
        let Some(reference) = reference.map(normalise) else { continue };
        if ok.len() < n || n == 0 {
            continue;
        }
        acc.prompts += 1;
        let right: Vec<f64> = ok.iter().map(|s| f64::from(u8::from(s.answer.as_deref() == Some(&reference)))).collect();
        acc.single.extend(stats::mean(right.iter().copied()));
        if greedy.ok() {
            acc.greedy.push(f64::from(u8::from(greedy.answer.as_deref() == Some(&reference))));
        }
        let reward_keys = keys(ok.iter().copied(), sim.guard);
        acc.reward.extend(stats::expected_pick(&reward_keys, &right, n));
        if ok.iter().all(|s| s.rating.is_some()) {
            let judge_keys: Vec<(u8, f32)> = ok.iter().map(|s| (0, s.rating.unwrap_or(0.0) as f32)).collect();
            acc.judge.extend(stats::expected_pick(&judge_keys, &right, n));
        }
        let confident = ok.iter().any(|s| s.confidence.is_some());
        if confident {
            let keys: Vec<(u8, f32)> = reward_keys
                .iter()
                .zip(&ok)
                .map(|(k, s)| (k.0, s.confidence.map_or(f32::NAN, |c| c.lowest as f32)))
                .collect();
            acc.confidence.extend(stats::expected_pick(&keys, &right, n));
        }
        let exact = binomial(ok.len(), n) <= EXACT_SUBSETS;
        let subsets: Box<dyn Iterator<Item = Vec<usize>>> = if exact {
            Box::new(combinations(ok.len(), n))
        } else {
            let mut rng = StdRng::seed_from_u64(acc.prompts as u64);
            let m = ok.len();
            Box::new((0..DRAWS).map(move |_| rand::seq::index::sample(&mut rng, m, n).into_vec()))
        };
        // Per subset: vote right, weighted vote right, any right, stop-on-agreement token share.
        let mut values: [Vec<f64>; 4] = Default::default();
        let mut confidence_votes = Vec::new();
        let stops = online::stop_points(&ok, sim.window, threshold);
        let mut online: [Vec<f64>; 5] = Default::default();
        for subset in subsets {
            let pick = |weighting| vote_pick(&ok, &reward_keys, &subset, weighting, sim.guard);
            values[0].push(right[pick(Weighting::Count)]);
            values[1].push(right[pick(Weighting::Softmax { temperature: sim.vote_temperature })]);
            values[2].push(f64::from(u8::from(subset.iter().any(|&i| right[i] > 0.0))));
            values[3].push(agreement_share(&ok, &subset, sim.guard));
            if confident {
                confidence_votes.push(right[confidence_vote_pick(&ok, &reward_keys, &subset, sim)]);
                let (left, share) = online::replay(&ok, &subset, &stops);
                online[0].push(right[confidence_vote_pick(&ok, &reward_keys, &left, sim)]);
                online[1].push(right[left[confidence_order(&ok, &reward_keys, &left)[0]]]);
                online[2].push(share);
                let (finished, share) = online::replay_with_agreement(&ok, &subset, &stops, sim.guard);
                online[3].push(right[vote_pick(&ok, &reward_keys, &finished, Weighting::Count, sim.guard)]);
                online[4].push(share);
            }
        }
        acc.confidence_vote.extend(stats::mean(confidence_votes));
        for (sum, values) in acc.online.iter_mut().zip(online) {
            sum.extend(stats::mean(values));
        }
        let [v, w, a, t] = values.map(|xs| mean_and_variance_of_mean(&xs));
        acc.vote.push(v.0);
        acc.weighted.push(w.0);
        acc.any.push(a.0);
        acc.tokens.push(t.0);
        if !exact {
            acc.sampled += 1;
            for (sum, (_, var)) in acc.variance.iter_mut().zip([v, w, a, t]) {
                *sum += var;
            }
        }
    }
    // The mean over prompts of per-prompt estimates: its variance is the sum of theirs over the count squared.
    let se = |var: f64| var.sqrt() / acc.prompts.max(1) as f64;
    let sampled = (acc.sampled > 0).then(|| Sampled {
        prompts: acc.sampled,
        draws: DRAWS,
        vote_se: se(acc.variance[0]),
        weighted_vote_se: se(acc.variance[1]),
        any_correct_se: se(acc.variance[2]),
        agreement_tokens_se: se(acc.variance[3]),
    });
    Accuracy {
        prompts: acc.prompts,
        single: stats::mean(acc.single),
        greedy: stats::mean(acc.greedy),
        reward: stats::mean(acc.reward),
        vote: stats::mean(acc.vote),
        weighted_vote: stats::mean(acc.weighted),
        judge: stats::mean(acc.judge),
        confidence: stats::mean(acc.confidence),
        confidence_vote: stats::mean(acc.confidence_vote),
        any_correct: stats::mean(acc.any),
        agreement_tokens: stats::mean(acc.tokens),
        online_confidence_vote: stats::mean(acc.online[0].iter().copied()),
        online_confidence: stats::mean(acc.online[1].iter().copied()),
        online_tokens: stats::mean(acc.online[2].iter().copied()),
        online_vote_agreement: stats::mean(acc.online[3].iter().copied()),
        online_vote_agreement_tokens: stats::mean(acc.online[4].iter().copied()),
        sampled,
    }
}

/// Accuracy of the samples whose confidence falls in one band (a reliability table: does a sure answer tend to
/// be right?).
#[derive(Clone, Debug, Serialize, PartialEq)]
pub struct Reliability {
    /// The band's lowest and highest lowest-group confidence.
    pub from: f64,
    pub to: f64,
    pub samples: usize,
    pub accuracy: f64,
}

/// Every successful sample with a confidence, of the prompts with a reference answer, in `bands` bands of equal
/// count, least confident first.
pub fn reliability(prompts: &[(Option<&str>, &[Sample], &Sample)], bands: usize) -> Vec<Reliability> {
    let mut points: Vec<(f64, bool)> = prompts
        .iter()
        .filter_map(|&(reference, samples, _)| Some((normalise(reference?), samples)))
        .flat_map(|(reference, samples)| {
            samples
                .iter()
                .filter(|s| s.ok())
                .filter_map(|s| Some((s.confidence?.lowest, s.answer.as_deref() == Some(reference.as_str()))))
                .collect::<Vec<_>>()
        })
        .collect();
    points.sort_by(|a, b| a.0.total_cmp(&b.0));
    let per = points.len().div_ceil(bands.max(1)).max(1);
    points
        .chunks(per)
        .map(|band| Reliability {
            from: band[0].0,
            to: band[band.len() - 1].0,
            samples: band.len(),
            accuracy: band.iter().filter(|p| p.1).count() as f64 / band.len() as f64,
        })
        .collect()
}

/// The sample `confidence-vote` returns among `subset` (indices into `ok`), as the proxy runs it (`bon::decide`):
/// subset positions in reward order re-ordered by guard tier and confidence; the most confident `confidence_keep`
/// of those with an answer and a confidence vote, weighted by confidence; the winning answer's most confident
/// sample. Without any confidence, a count vote.
fn confidence_vote_pick(ok: &[&Sample], keys: &[(u8, f32)], subset: &[usize], sim: Simulate) -> usize {
    let conf = |p: usize| ok[subset[p]].confidence.map(|c| c.lowest);
    if (0..subset.len()).all(|p| conf(p).is_none()) {
        return vote_pick(ok, keys, subset, Weighting::Count, sim.guard);
    }
    let sub_keys: Vec<(u8, f32)> = subset.iter().map(|&i| keys[i]).collect();
    let order = confidence_order(ok, keys, subset);
    let answer = |p: usize| ok[subset[p]].answer.clone();
    let voters = confidence::voters(&order, |p| answer(p).is_some() && conf(p).is_some(), sim.confidence_keep);
    let ballots: Vec<Ballot> = (0..subset.len())
        .map(|p| Ballot {
            answer: answer(p).filter(|_| voters.contains(&p)),
            score: conf(p).map(|c| c as f32),
            flagged: sub_keys[p].0 > 0,
        })
        .collect();
    let best = match vote::tally(&ballots, Weighting::Score, sim.guard) {
        Some(t) => vote::order(&order, &t)[0],
        None => order[0],
    };
    subset[best]
}

/// Positions into `subset` as `confidence` orders them, through the proxy's own `select::confidence_order`: the
/// subset's reward order re-ordered by guard tier (the keys carry tier 0 when the guard is off), then the lowest
/// group confidence.
fn confidence_order(ok: &[&Sample], keys: &[(u8, f32)], subset: &[usize]) -> Vec<usize> {
    let sub_keys: Vec<(u8, f32)> = subset.iter().map(|&i| keys[i]).collect();
    let reward_order: Vec<usize> = stats::ascending(&sub_keys).into_iter().rev().collect();
    let confidence: Vec<Option<f64>> = subset.iter().map(|&i| ok[i].confidence.map(|c| c.lowest)).collect();
    let tiers: Vec<u8> = sub_keys.iter().map(|k| k.0).collect();
    crate::select::confidence_order(&reward_order, &confidence, &tiers, true)
}

/// The mean of `xs` and the variance of that mean (sample variance / count; 0 for fewer than two).
fn mean_and_variance_of_mean(xs: &[f64]) -> (f64, f64) {
    let k = xs.len() as f64;
    let mean = xs.iter().sum::<f64>() / k.max(1.0);
    if xs.len() < 2 {
        return (mean, 0.0);
    }
    let var = xs.iter().map(|x| (x - mean).powi(2)).sum::<f64>() / (k - 1.0);
    (mean, var / k)
}

/// The sample a vote returns among `subset` (indices into `ok`): the winning group's best by reward order, or the
/// reward pick when nobody has an answer.
fn vote_pick(ok: &[&Sample], keys: &[(u8, f32)], subset: &[usize], weighting: Weighting, guard: bool) -> usize {
    let sub_keys: Vec<(u8, f32)> = subset.iter().map(|&i| keys[i]).collect();
    // Best first, positions into `subset`.
    let reward_order: Vec<usize> = stats::ascending(&sub_keys).into_iter().rev().collect();
    let ballots: Vec<Ballot> = subset
        .iter()
        .map(|&i| Ballot { answer: ok[i].answer.clone(), score: ok[i].reward, flagged: !ok[i].flags.is_empty() })
        .collect();
    let tally = vote::tally(&ballots, weighting, guard)
        .or_else(|| vote::tally(&ballots, Weighting::Count, guard).filter(|_| weighting != Weighting::Count));
    let order = match &tally {
        Some(t) => vote::order(&reward_order, t),
        None => reward_order,
    };
    subset[order[0]]
}

/// Completion tokens a stop-on-agreement vote over `subset` spends, as a share of all of its answers' tokens.
fn agreement_share(ok: &[&Sample], subset: &[usize], guard: bool) -> f64 {
    let tokens = |i: usize| ok[i].completion_tokens.unwrap_or(ok[i].words as u64) as f64;
    let mut by_length = subset.to_vec();
    by_length.sort_by(|&a, &b| tokens(a).total_cmp(&tokens(b)).then(a.cmp(&b)));
    let total: f64 = subset.iter().map(|&i| tokens(i)).sum();
    if total == 0.0 {
        return 1.0;
    }
    let mut answers: Vec<&str> = Vec::new();
    let mut spent = 0.0;
    for (k, &i) in by_length.iter().enumerate() {
        spent += tokens(i);
        let clean = !guard || ok[i].flags.is_empty();
        if let (true, Some(a)) = (clean, ok[i].answer.as_deref()) {
            answers.push(a);
        }
        let unfinished = by_length.len() - k - 1;
        if unfinished > 0 && vote::decided(answers.iter().copied(), unfinished) {
            return (spent + unfinished as f64 * tokens(i)) / total;
        }
    }
    1.0
}

#[cfg(test)]
mod tests;
