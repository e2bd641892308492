//! The report's confidence tables: what `confidence` picks beside the reward model (open-ended prompts too: how
//! often they agree, and the reward, length, guard flags and judge rating of each pick, exact over every n-subset),
//! and the online confidence stop replayed on the samples (`accuracy::online`).

use std::fmt::Write as _;

use serde::Serialize;

use super::{
    PromptRun, Sample, keys,
    report::{Results, num},
    stats,
};

/// `confidence`'s pick beside the reward model's, averaged over the prompts whose samples carry a confidence.
#[derive(Clone, Debug, Default, Serialize, PartialEq)]
pub struct ConfidencePick {
    pub prompts: usize,
    /// How often it is the reward model's pick.
    pub agreement: f64,
    /// Expected reward, words and flagged share of the confidence pick (the reward pick's are in `NResult`).
    pub reward: f64,
    pub words: f64,
    pub flagged: f64,
    /// Expected judge rating of the confidence pick, when every sample was rated.
    pub rating: Option<f64>,
}

/// `confidence`'s pick for `n`: the guard's tier, then the lowest group confidence (as the proxy ranks).
pub fn measure(runs: &[PromptRun], n: usize, guard: bool) -> Option<ConfidencePick> {
    let (mut agreement, mut reward, mut words, mut flagged, mut rating) = (vec![], vec![], vec![], vec![], vec![]);
    for run in runs {
        let ok: Vec<&Sample> = run.samples.iter().filter(|s| s.ok() && s.confidence.is_some()).collect();
        if ok.len() < n || n == 0 || ok.len() < run.samples.iter().filter(|s| s.ok()).count() {
            continue;
        }
        let by_reward = keys(ok.iter().copied(), guard);
        let by_confidence: Vec<(u8, f32)> =
            by_reward.iter().zip(&ok).map(|(k, s)| (k.0, s.confidence.map_or(f32::NAN, |c| c.lowest as f32))).collect();
        let pick = |f: &dyn Fn(&Sample) -> f64| {
            stats::expected_pick(&by_confidence, &ok.iter().map(|s| f(s)).collect::<Vec<_>>(), n)
        };
        agreement.extend(stats::agreement(&by_reward, &by_confidence, n));
        reward.extend(pick(&|s| f64::from(s.reward.unwrap_or(0.0))));
        words.extend(pick(&|s| s.words as f64));
        flagged.extend(pick(&|s| f64::from(u8::from(!s.flags.is_empty()))));
        if ok.iter().all(|s| s.rating.is_some()) {
            rating.extend(pick(&|s| s.rating.unwrap_or(0.0)));
        }
    }
    let prompts = agreement.len();
    Some(ConfidencePick {
        prompts,
        agreement: stats::mean(agreement)?,
        reward: stats::mean(reward)?,
        words: stats::mean(words)?,
        flagged: stats::mean(flagged)?,
        rating: stats::mean(rating),
    })
}

/// `confidence`'s pick beside the reward model's, per n.
pub fn pick_section(s: &mut String, r: &Results) {
    let rows: Vec<_> = r.by_n.iter().filter_map(|x| Some((x, x.confidence_pick.as_ref()?))).collect();
    if rows.is_empty() {
        return;
    }
    let _ = writeln!(
        s,
        "## Confidence against the reward model

The sample `confidence` would return (guard tier, then the lowest \
         group confidence) beside the reward model's pick, exact over every n-subset of the prompts whose samples all \
         carry a confidence: how often they are the same sample, and each pick's reward, words, flagged share and \
         judge rating (reward pick / confidence pick).\n\n\
         | n | prompts | same pick | reward | words | flagged | judge rating |\n|---|---|---|---|---|---|---|"
    );
    for (x, c) in rows {
        let _ = writeln!(
            s,
            "| {} | {} | {:.2} | {} / {:.2} | {} / {:.1} | {} / {:.2} | {} / {} |",
            x.n,
            c.prompts,
            c.agreement,
            num(x.best_of_n_reward, 2),
            c.reward,
            num(x.picked_words, 1),
            c.words,
            num(x.picked_flagged, 2),
            c.flagged,
            num(x.best_of_n_rating, 2),
            num(c.rating, 2)
        );
    }
    let _ = writeln!(s);
}

/// Accuracy and tokens with the online stop, beside `vote` and the confidence strategies without it.
pub fn online_section(s: &mut String, r: &Results) {
    let rows: Vec<_> = r.by_n.iter().filter_map(|x| Some((x.n, x.accuracy.as_ref()?))).collect();
    if rows.iter().all(|(_, a)| a.online_tokens.is_none()) {
        return;
    }
    let _ = writeln!(
        s,
        "### Online confidence stop\n\nReplayed as the proxy runs it: a sample stops at the first {}-token window \
         whose mean confidence falls below the {}th percentile of the earlier prompts' samples (no stop before {} of \
         them), candidates side by side, never fewer than two left. *tokens* is what the stop spends as a share of \
         all n answers' (plain `vote` spends 1.00); *+ agreement* is `vote` with the stop and stop on agreement \
         together (the vote of the finished samples, once the ones still generating cannot change it).\n\n\
         | n | vote | confidence | confidence vote | stop: confidence | stop: confidence vote | stop: tokens | \
         + agreement: vote | + agreement: tokens |\n|---|---|---|---|---|---|---|---|---|",
        r.confidence_window, r.confidence_percentile, r.confidence_min_history
    );
    for (n, a) in rows {
        let _ = writeln!(
            s,
            "| {n} | {} | {} | {} | {} | {} | {} | {} | {} |",
            num(a.vote, 3),
            num(a.confidence, 3),
            num(a.confidence_vote, 3),
            num(a.online_confidence, 3),
            num(a.online_confidence_vote, 3),
            num(a.online_tokens, 2),
            num(a.online_vote_agreement, 3),
            num(a.online_vote_agreement_tokens, 2)
        );
    }
    let _ = writeln!(s);
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::select::Confidence;

    fn sample(reward: f32, confidence: f64, words: usize) -> Sample {
        let mut s = super::super::sample_err("");
        s.error = None;
        s.reward = Some(reward);
        s.words = words;
        s.confidence = Some(Confidence { lowest: confidence, tail: confidence, mean: confidence, tokens: 16 });
        s
    }

    #[test]
    fn the_confidence_pick_beside_the_reward_pick() {
        // The reward model prefers the long answer, confidence the short one.
        let samples = vec![sample(3.0, 1.0, 90), sample(1.0, 4.0, 10), sample(2.0, 2.0, 40)];
        let run = PromptRun { messages: vec![], answer: None, greedy: sample(0.0, 0.0, 0), samples, pairwise: vec![] };
        let all = measure(std::slice::from_ref(&run), 3, true).unwrap();
        assert_eq!((all.prompts, all.agreement, all.reward, all.words), (1, 0.0, 1.0, 10.0));
        let one = measure(std::slice::from_ref(&run), 1, true).unwrap();
        assert_eq!((one.agreement, one.words), (1.0, (90.0 + 10.0 + 40.0) / 3.0), "one sample: the same pick");
        // Pairs: {0,1} reward 0 / confidence 1, {0,2} 0 / 2, {1,2} 2 / 1: never the same.
        assert_eq!(measure(std::slice::from_ref(&run), 2, true).unwrap().agreement, 0.0);
        let mut unsure = run.clone();
        unsure.samples[2].confidence = None;
        assert_eq!(measure(&[unsure], 2, true), None, "a prompt with a sample without confidence is left out");
    }
}
