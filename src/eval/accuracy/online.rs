//! The online confidence stop replayed on stored samples, as the proxy runs it (`bon::prune`, `select::history`):
//! the threshold for a prompt is the percentile of the lowest group confidences of the **earlier prompts'**
//! samples (the proxy's history of the model's recent candidates; none until it holds enough); within an n-subset,
//! each sample would be stopped at the first token where a full window's mean falls below it, candidates generating
//! side by side (the same number of tokens at a time), the earliest stopped first and never fewer than
//! `MIN_LEFT` left. A stopped sample spends the tokens it had; it does not vote and cannot win.

use crate::{bon::prune::MIN_LEFT, select::vote};

use super::Sample;

/// Per sample of `ok`, the token count at which the stop would end it (None: never below `threshold`, no token
/// confidences, or finished first).
pub fn stop_points(ok: &[&Sample], window: usize, threshold: Option<f64>) -> Vec<Option<u64>> {
    ok.iter()
        .map(|s| {
            let threshold = threshold?;
            let tokens = s.token_confidence.as_deref()?;
            let w = window.max(1);
            let length = s.completion_tokens.unwrap_or(tokens.len() as u64);
            let mut sum = 0.0_f64;
            for (k, &c) in tokens.iter().enumerate() {
                sum += f64::from(c);
                if k >= w {
                    sum -= f64::from(tokens[k - w]);
                }
                if k + 1 >= w && sum / (w as f64) < threshold {
                    let at = k as u64 + 1;
                    return (at < length).then_some(at);
                }
            }
            None
        })
        .collect()
}

/// `subset` (indices into `ok`) after the stop: the samples left, and the completion tokens spent as a share of
/// all of the subset's answers'.
pub fn replay(ok: &[&Sample], subset: &[usize], stops: &[Option<u64>]) -> (Vec<usize>, f64) {
    let tokens = |i: usize| ok[i].completion_tokens.unwrap_or(ok[i].words as u64) as f64;
    let mut order: Vec<(u64, usize)> = subset.iter().filter_map(|&i| stops[i].map(|at| (at, i))).collect();
    order.sort_unstable();
    let mut left = subset.len();
    let mut stopped = Vec::new();
    for (at, i) in order {
        if left <= MIN_LEFT {
            break;
        }
        left -= 1;
        stopped.push((i, at as f64));
    }
    let total: f64 = subset.iter().map(|&i| tokens(i)).sum();
    let spent: f64 =
        subset.iter().map(|&i| stopped.iter().find(|(j, _)| *j == i).map_or_else(|| tokens(i), |(_, at)| *at)).sum();
    let remaining = subset.iter().copied().filter(|i| !stopped.iter().any(|(j, _)| j == i)).collect();
    (remaining, if total > 0.0 { spent / total } else { 1.0 })
}

/// `subset` with the stop and stop on agreement (`vote`), as the proxy streams them: in token order, a sample is
/// stopped at its stop point (never fewer than `MIN_LEFT` left) and a finishing one adds its answer (a clean one,
/// with the guard on); once the finished answers' vote cannot change whatever the ones still generating say, those
/// stop where they are. The finished samples (the vote is theirs) and the tokens spent as a share of all the
/// subset's answers'.
pub fn replay_with_agreement(
    ok: &[&Sample],
    subset: &[usize],
    stops: &[Option<u64>],
    guard: bool,
) -> (Vec<usize>, f64) {
    let tokens = |i: usize| ok[i].completion_tokens.unwrap_or(ok[i].words as u64);
    // (token count, 0 = finishes / 1 = would be stopped, sample)
    let mut events: Vec<(u64, u8, usize)> = subset.iter().map(|&i| (tokens(i), 0, i)).collect();
    events.extend(subset.iter().filter_map(|&i| stops[i].map(|at| (at, 1, i))));
    events.sort_unstable();
    let mut live: Vec<usize> = subset.to_vec();
    let (mut finished, mut answers, mut spent) = (Vec::new(), Vec::new(), 0u64);
    for (at, kind, i) in events {
        let Some(k) = live.iter().position(|&j| j == i) else { continue };
        if kind == 1 {
            if live.len() + finished.len() > MIN_LEFT {
                live.remove(k);
                spent += at;
            }
            continue;
        }
        live.remove(k);
        finished.push(i);
        spent += at;
        if (!guard || ok[i].flags.is_empty())
            && let Some(a) = ok[i].answer.as_deref()
        {
            answers.push(a);
        }
        if !live.is_empty() && vote::decided(answers.iter().copied(), live.len()) {
            spent += at * live.len() as u64;
            break;
        }
    }
    let total: u64 = subset.iter().map(|&i| tokens(i)).sum();
    (finished, if total > 0 { spent as f64 / total as f64 } else { 1.0 })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample(tokens: &[f32]) -> Sample {
        let mut s = super::super::super::sample_err("");
        s.error = None;
        s.token_confidence = Some(tokens.to_vec());
        s.completion_tokens = Some(tokens.len() as u64);
        s
    }

    #[test]
    fn a_sample_stops_at_its_first_window_below_the_threshold_unless_it_finished() {
        let samples = [sample(&[5.0, 5.0, 1.0, 1.0, 5.0]), sample(&[5.0; 5]), sample(&[5.0, 5.0, 5.0, 1.0])];
        let ok: Vec<&Sample> = samples.iter().collect();
        assert_eq!(stop_points(&ok, 2, Some(4.0)), vec![Some(3), None, None], "the third finishes at its stop");
        assert_eq!(stop_points(&ok, 2, None), vec![None; 3], "no threshold yet");
    }

    #[test]
    fn the_earliest_are_stopped_first_and_two_always_stay() {
        let samples: Vec<Sample> = (0..4).map(|_| sample(&[5.0; 10])).collect();
        let ok: Vec<&Sample> = samples.iter().collect();
        let stops = [Some(6), Some(2), None, Some(4)];
        let (left, share) = replay(&ok, &[0, 1, 2, 3], &stops);
        assert_eq!(left, vec![0, 2], "1 (at 2) and 3 (at 4) stopped; 0 would leave one");
        assert_eq!(share, (10.0 + 2.0 + 10.0 + 4.0) / 40.0);
        let (left, share) = replay(&ok, &[0, 2], &stops);
        assert_eq!((left, share), (vec![0, 2], 1.0), "two: nothing stopped");
    }

    #[test]
    fn with_agreement_the_vote_ends_once_the_unstopped_cannot_change_it() {
        let with = |answer: &str, length: usize| {
            let mut s = sample(&vec![5.0; length]);
            s.answer = Some(answer.to_owned());
            s
        };
        // 0 and 1 say 7 after 4 and 5 tokens; 2 (20 tokens) is still going; 3 is stopped at 3.
        let samples = [with("7", 4), with("7", 5), with("8", 20), with("9", 20)];
        let ok: Vec<&Sample> = samples.iter().collect();
        let stops = [None, None, None, Some(3)];
        let (finished, share) = replay_with_agreement(&ok, &[0, 1, 2, 3], &stops, true);
        assert_eq!(finished, vec![0, 1], "2 votes against the one left: decided at 5 tokens");
        assert_eq!(share, (4.0 + 5.0 + 5.0 + 3.0) / 49.0);
        // Without the stop, 3 could still side with 8: no agreement until 2 or 3 finishes.
        let (finished, _) = replay_with_agreement(&ok, &[0, 1, 2, 3], &[None; 4], true);
        assert_eq!(finished, vec![0, 1, 2, 3]);
    }
}
