//! Accuracy against reference answers (prompts with `"answer"`): per n, how often each strategy's pick is right,
//! as an exact expectation over every n-subset of a prompt's samples — the same samples for every strategy.
//!
//! - single: the mean over samples; greedy: the temperature-0 answer;
//! - reward: the proxy's reward pick (guard tier, then reward; `stats::expected_pick`);
//! - vote, weighted-vote: `select::vote` over the subset, returned as the proxy returns it (fallback: reward);
//! - judge: the highest judge rating (pointwise), when every sample was rated;
//! - any correct: some sample of the subset is right (pass@n, the ceiling of any selection);
//! - stop-on-agreement tokens: completion tokens a `vote` with stop on agreement spends, as a share of all n
//!   answers'. Candidates run side by side, so they finish in order of length: the stop comes when the shortest k
//!   decide the vote, and each stopped one had generated as many tokens as the k-th. Its accuracy is `vote`'s: the
//!   stop never changes the winning answer.

use serde::Serialize;

use super::{Sample, keys, stats};
use crate::select::{
    answer::normalise,
    vote::{self, Ballot, Weighting},
};

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
    pub any_correct: Option<f64>,
    /// Completion tokens spent with stop on agreement / without (vote).
    pub agreement_tokens: Option<f64>,
}

/// Settings the strategies are simulated with (as the proxy's `--vote-temperature`, `--degenerate-guard`).
#[derive(Clone, Copy, Debug)]
pub struct Simulate {
    pub guard: bool,
    pub vote_temperature: f64,
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
    any: Vec<f64>,
    tokens: Vec<f64>,
}

/// Accuracy for `n` over `prompts`: (reference answer, samples, greedy).
pub fn accuracy(prompts: &[(Option<&str>, &[Sample], &Sample)], n: usize, sim: Simulate) -> Accuracy {
    let mut acc = Acc::default();
    for &(reference, samples, greedy) in prompts {
        let Some(reference) = reference.map(normalise) else { continue };
        let ok: Vec<&Sample> = samples.iter().filter(|s| s.ok()).collect();
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
        let (mut vote_sum, mut weighted_sum, mut any_sum, mut token_share, mut count) = (0.0, 0.0, 0.0, 0.0, 0.0);
        for subset in combinations(ok.len(), n) {
            let pick = |weighting| vote_pick(&ok, &reward_keys, &subset, weighting, sim.guard);
            vote_sum += right[pick(Weighting::Count)];
            weighted_sum += right[pick(Weighting::Softmax { temperature: sim.vote_temperature })];
            any_sum += f64::from(u8::from(subset.iter().any(|&i| right[i] > 0.0)));
            token_share += agreement_share(&ok, &subset, sim.guard);
            count += 1.0;
        }
        acc.vote.push(vote_sum / count);
        acc.weighted.push(weighted_sum / count);
        acc.any.push(any_sum / count);
        acc.tokens.push(token_share / count);
    }
    Accuracy {
        prompts: acc.prompts,
        single: stats::mean(acc.single),
        greedy: stats::mean(acc.greedy),
        reward: stats::mean(acc.reward),
        vote: stats::mean(acc.vote),
        weighted_vote: stats::mean(acc.weighted),
        judge: stats::mean(acc.judge),
        any_correct: stats::mean(acc.any),
        agreement_tokens: stats::mean(acc.tokens),
    }
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

/// Every n-subset of 0..m, in lexicographic order.
fn combinations(m: usize, n: usize) -> impl Iterator<Item = Vec<usize>> {
    let mut next: Option<Vec<usize>> = (n <= m).then(|| (0..n).collect());
    std::iter::from_fn(move || {
        let current = next.take()?;
        let mut c = current.clone();
        // Advance the rightmost index that can still move.
        let mut i = n;
        while i > 0 {
            i -= 1;
            if c[i] < m - n + i {
                c[i] += 1;
                for j in i + 1..n {
                    c[j] = c[j - 1] + 1;
                }
                next = Some(c);
                break;
            }
        }
        Some(current)
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn s(answer: &str, reward: f32, tokens: u64) -> Sample {
        let mut x = super::super::sample_err("");
        x.error = None;
        x.answer = Some(answer.to_owned());
        x.reward = Some(reward);
        x.completion_tokens = Some(tokens);
        x
    }

    const SIM: Simulate = Simulate { guard: true, vote_temperature: 1.0 };

    #[test]
    fn combinations_are_all_n_subsets() {
        assert_eq!(combinations(4, 2).count(), 6);
        assert_eq!(combinations(8, 4).count(), 70);
        assert_eq!(combinations(3, 3).collect::<Vec<_>>(), vec![vec![0, 1, 2]]);
        assert_eq!(combinations(2, 3).count(), 0);
        assert_eq!(combinations(3, 1).collect::<Vec<_>>(), vec![vec![0], vec![1], vec![2]]);
    }

    #[test]
    fn vote_beats_a_reward_model_that_prefers_a_wrong_answer() {
        // Right answer 42 three times with low reward; a wrong one with the highest.
        let samples = [s("42", 0.0, 10), s("41", 5.0, 10), s("42", 0.1, 10), s("42", 0.2, 10)];
        let greedy = s("42", 0.0, 10);
        let a = accuracy(&[(Some("42."), &samples, &greedy)], 4, SIM);
        assert_eq!((a.prompts, a.single, a.greedy), (1, Some(0.75), Some(1.0)));
        assert_eq!((a.reward, a.vote, a.any_correct), (Some(0.0), Some(1.0), Some(1.0)));
        assert_eq!(a.weighted_vote, Some(0.0), "softmax(5.0) outweighs three near-zero votes");
        // n = 1: every strategy is a single sample.
        let one = accuracy(&[(Some("42"), &samples, &greedy)], 1, SIM);
        assert_eq!((one.reward, one.vote, one.any_correct), (Some(0.75), Some(0.75), Some(0.75)));
        assert_eq!(one.agreement_tokens, Some(1.0));
        // n = 2: the vote is a tie between 42 and 41 in 3 of 6 pairs, decided by summed reward (41 wins those).
        let two = accuracy(&[(Some("42"), &samples, &greedy)], 2, SIM);
        assert_eq!(two.vote, Some(0.5));
    }

    #[test]
    fn stop_on_agreement_spends_what_the_deciding_answers_took() {
        // Three short agreeing answers decide a 4-vote (3 > 0 + 1): 5 + 6 + 7 spent, the stopped one 7 of its 100.
        let samples = [s("1", 0.0, 5), s("1", 0.0, 6), s("1", 0.0, 7), s("2", 0.0, 100)];
        let ok: Vec<&Sample> = samples.iter().collect();
        let share = agreement_share(&ok, &[0, 1, 2, 3], true);
        assert!((share - (5.0 + 6.0 + 7.0 + 7.0) / 118.0).abs() < 1e-12, "{share}");
        // Disagreement to the end: everything is spent.
        let split = [s("1", 0.0, 5), s("2", 0.0, 6)];
        let ok: Vec<&Sample> = split.iter().collect();
        assert_eq!(agreement_share(&ok, &[0, 1], true), 1.0);
    }

    #[test]
    fn prompts_without_a_reference_are_skipped() {
        let samples = [s("1", 0.0, 5)];
        let a = accuracy(&[(None, &samples, &samples[0])], 1, SIM);
        assert_eq!((a.prompts, a.vote), (0, None));
    }
}
