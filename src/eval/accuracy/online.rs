//! The online confidence stop replayed on stored samples, as the proxy runs it (`bon::prune`, `select::history`):
//! the threshold for a prompt is the percentile of the lowest group confidences of the **earlier prompts'**
//! samples (the proxy's history of the model's recent candidates; none until it holds enough); within an n-subset,
//! each sample would be stopped at the first token where a full window's mean falls below it, candidates generating
//! side by side (the same number of tokens at a time), the earliest stopped first and never fewer than
//! `MIN_LEFT` left. A stopped sample spends the tokens it had; it does not vote and cannot win.

use crate::bon::prune::MIN_LEFT;

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
}
