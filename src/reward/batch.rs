//! Length-aware batching: the sequences waiting in the scoring thread are sorted by length and split into runs
//! whose padding stays a small share of the tokens computed (TEI sorts and buckets the same way). Padding is pure
//! waste on a compute-bound CPU: one run over 4 short and 4 long sequences costs as much as 8 long ones. Small runs
//! are the exception: below `small_run` tokens a run's fixed cost (ONNX Runtime dispatching the graph and waking its
//! threads) is more than its padding costs, so they are not split by length.

/// How the scoring thread groups sequences into runs.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Batching {
    /// Most sequences in one run (and most rows merged from the queue).
    pub max_batch: usize,
    /// Largest share of a run's longest length that a sequence may be padded by (`>= 1`: no bucketing).
    pub max_padding: f64,
    /// Most tokens one run computes, padding included (rows × longest length); a sequence longer than this runs
    /// alone (TEI's `max_batch_tokens`).
    pub max_tokens: usize,
    /// A run of at most this many tokens (rows × longest) takes the next sequence whatever its padding: splitting
    /// it would cost a second run's fixed cost to save less padding than that (`SMALL_RUN_TOKENS`; 0: off).
    pub small_run: usize,
}

/// Runs up to this many tokens are not split by length: measured on the default model (2 cores, the proxy on a
/// 100 ms fake), one Best-of-8 call of ~45-token answers was two runs of 4 (2 × 3.8 ms), one run of 8 is 5.2-6.2 ms.
pub const SMALL_RUN_TOKENS: usize = 1024;

/// Splits `lengths` (tokens per sequence) into runs of indices. Longest first; a run takes the next sequence while
/// it has fewer than `max_batch` rows, the sequence's padding (the run's longest length less its own) is at most
/// `max_padding` of that longest length, so no row (and no run) is more than that share padding, and the run stays
/// within `max_tokens` (rows × longest length; a longer sequence runs alone); a run that would stay within
/// `small_run` tokens takes it whatever its padding. `max_padding >= 1` switches bucketing off: runs in the order
/// given (every queued job padded to the longest), within the same row and token caps.
pub fn plan(lengths: &[usize], b: Batching) -> Vec<Vec<usize>> {
    let max_batch = b.max_batch.max(1);
    let mut order: Vec<usize> = (0..lengths.len()).collect();
    let bucketed = b.max_padding < 1.0;
    if bucketed {
        // Stable: equal lengths keep their arrival order.
        order.sort_by_key(|&i| std::cmp::Reverse(lengths[i]));
    }
    let mut runs: Vec<(Vec<usize>, usize)> = Vec::new();
    for i in order {
        match runs.last_mut() {
            Some((run, width))
                if run.len() < max_batch
                    && (run.len() + 1) * (*width).max(lengths[i]) <= b.max_tokens
                    && (!bucketed
                        || padding_share(lengths[i], *width) <= b.max_padding
                        || (run.len() + 1) * *width <= b.small_run) =>
            {
                run.push(i);
                *width = (*width).max(lengths[i]);
            }
            _ => runs.push((vec![i], lengths[i])),
        }
    }
    runs.into_iter().map(|(run, _)| run).collect()
}

/// The share of a padded run's tokens that are padding.
pub fn padding_share(real: usize, padded: usize) -> f64 {
    if padded == 0 { 0.0 } else { (padded - real) as f64 / padded as f64 }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn b(max_batch: usize, max_padding: f64) -> Batching {
        Batching { max_batch, max_padding, max_tokens: usize::MAX, small_run: 0 }
    }

    fn total_padding(lengths: &[usize], runs: &[Vec<usize>]) -> usize {
        runs.iter()
            .map(|r| {
                r.iter().map(|&i| lengths[i]).max().unwrap() * r.len() - r.iter().map(|&i| lengths[i]).sum::<usize>()
            })
            .sum()
    }

    #[test]
    fn every_sequence_is_in_exactly_one_run() {
        let lengths = [30, 250, 31, 240, 29, 255, 5, 128, 130, 7];
        for max_padding in [0.0, 0.1, 0.3, 1.0] {
            for max_batch in [1, 2, 3, 64] {
                let runs = plan(&lengths, b(max_batch, max_padding));
                let mut seen: Vec<usize> = runs.concat();
                seen.sort_unstable();
                assert_eq!(seen, (0..lengths.len()).collect::<Vec<_>>(), "{max_padding} {max_batch}");
                assert!(runs.iter().all(|r| !r.is_empty() && r.len() <= max_batch));
            }
        }
    }

    #[test]
    fn long_and_short_sequences_run_apart() {
        // Two Best-of-4 requests arriving together: one with short answers, one with long.
        let lengths = [30, 250, 31, 240, 29, 255, 32, 245];
        let runs = plan(&lengths, b(64, 0.2));
        assert_eq!(runs, vec![vec![5, 1, 7, 3], vec![6, 2, 0, 4]]);
        for run in &runs {
            let width = run.iter().map(|&i| lengths[i]).max().unwrap();
            let real: usize = run.iter().map(|&i| lengths[i]).sum();
            assert!(padding_share(real, width * run.len()) <= 0.2);
        }
        // Unbucketed, the same sequences cost 8 × 255 tokens, half of it padding.
        let merged = plan(&lengths, b(64, 1.0));
        assert_eq!(merged, vec![(0..8).collect::<Vec<_>>()]);
        assert!(total_padding(&lengths, &merged) > 4 * total_padding(&lengths, &runs));
    }

    #[test]
    fn zero_padding_batches_only_equal_lengths() {
        let runs = plan(&[10, 10, 9, 10], b(64, 0.0));
        assert_eq!(runs, vec![vec![0, 1, 3], vec![2]]);
    }

    #[test]
    fn no_bucketing_keeps_arrival_order_in_max_batch_chunks() {
        assert_eq!(plan(&[1, 9, 2, 8, 3], b(2, 1.0)), vec![vec![0, 1], vec![2, 3], vec![4]]);
        assert!(plan(&[], b(4, 0.2)).is_empty());
    }

    #[test]
    fn runs_stay_within_the_token_budget_and_a_longer_sequence_runs_alone() {
        let lengths = [4096, 300, 290, 280, 270, 9000, 260];
        for max_padding in [0.2, 1.0] {
            let budget = Batching { max_batch: 64, max_padding, max_tokens: 1024, small_run: 0 };
            let runs = plan(&lengths, budget);
            for run in &runs {
                let width = run.iter().map(|&i| lengths[i]).max().unwrap();
                assert!(run.len() == 1 || run.len() * width <= 1024, "{run:?} ({max_padding})");
            }
            assert!(runs.contains(&vec![5]) && runs.contains(&vec![0]), "over the budget: alone, {runs:?}");
            let mut seen = runs.concat();
            seen.sort_unstable();
            assert_eq!(seen, (0..lengths.len()).collect::<Vec<_>>());
        }
        // Bucketed: the five short ones make runs of three (3 × 300 <= 1024) and two.
        assert_eq!(
            plan(&lengths, Batching { max_batch: 64, max_padding: 0.2, max_tokens: 1024, small_run: 0 }).len(),
            4
        );
    }

    #[test]
    fn small_runs_are_not_split_by_length() {
        // One Best-of-8 call of short answers: one run, though 12 and 40 tokens are far apart.
        let short = [40, 12, 33, 25, 38, 17, 40, 29];
        let small = Batching { small_run: SMALL_RUN_TOKENS, ..b(64, 0.2) };
        assert_eq!(plan(&short, small).len(), 1);
        assert_eq!(plan(&short, b(64, 0.2)).len(), 4, "without the rule: split by length");
        // Long ones still go apart: 8 × 255 tokens is over the small-run size.
        let mixed = [30, 250, 31, 240, 29, 255, 32, 245];
        assert_eq!(plan(&mixed, small), plan(&mixed, b(64, 0.2)));
    }
}
