//! Score statistics: the ranking by score, and the over-optimisation signals of a call (margin, spread, z-score, KL
//! bound). Pure functions; what decides the winner is `decide` and `select`.

/// Candidate indices (positions in `scores`) ordered best first: highest score wins, ties go to the lower index,
/// a NaN score ranks below every number.
pub fn order_by_score(scores: &[f32]) -> Vec<usize> {
    let mut order: Vec<usize> = (0..scores.len()).collect();
    // Stable sort on a total order keeps equal scores in index order.
    order.sort_by(|&a, &b| key(scores[b]).total_cmp(&key(scores[a])));
    order
}

fn key(s: f32) -> f32 {
    if s.is_nan() { f32::NEG_INFINITY } else { s }
}

/// Winner's score minus the runner-up's (None with fewer than two scores).
pub fn margin(scores: &[f32], order: &[usize]) -> Option<f32> {
    match order {
        [first, second, ..] => Some(key(scores[*first]) - key(scores[*second])),
        _ => None,
    }
}

/// Highest minus lowest finite score (None with fewer than two finite scores).
pub fn spread(scores: &[f32]) -> Option<f32> {
    let finite: Vec<f32> = scores.iter().copied().filter(|s| s.is_finite()).collect();
    if finite.len() < 2 {
        return None;
    }
    let (lo, hi) = finite.iter().fold((f32::INFINITY, f32::NEG_INFINITY), |(lo, hi), &s| (lo.min(s), hi.max(s)));
    Some(hi - lo)
}

/// How many standard deviations candidate `i`'s score lies above the mean of all scores (population standard
/// deviation; None when the scores are all equal or not finite).
pub fn z_score(scores: &[f32], i: usize) -> Option<f64> {
    let xs: Vec<f64> = scores.iter().map(|&s| f64::from(s)).collect();
    if xs.len() < 2 || xs.iter().any(|x| !x.is_finite()) {
        return None;
    }
    let mean = xs.iter().sum::<f64>() / xs.len() as f64;
    let sd = (xs.iter().map(|x| (x - mean).powi(2)).sum::<f64>() / xs.len() as f64).sqrt();
    (sd > 1e-9).then(|| (xs[i] - mean) / sd)
}

/// The analytical bound on the KL divergence of Best-of-n sampling from the base policy, log n - (n-1)/n
/// (Stiennon et al. 2020; Gao et al. 2023 measure over-optimisation against it).
pub fn kl_bound(n: u32) -> f64 {
    let n = f64::from(n.max(1));
    n.ln() - (n - 1.0) / n
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn highest_wins_and_ties_go_to_the_lowest_index() {
        assert_eq!(order_by_score(&[0.1, 0.9, 0.5]), vec![1, 2, 0]);
        assert_eq!(order_by_score(&[0.7, 0.9, 0.9, 0.1]), vec![1, 2, 0, 3]);
        assert_eq!(order_by_score(&[2.0, 2.0, 2.0]), vec![0, 1, 2]);
    }

    #[test]
    fn nan_ranks_last() {
        assert_eq!(order_by_score(&[f32::NAN, -5.0, 1.0]), vec![2, 1, 0]);
    }

    #[test]
    fn spread_z_and_kl() {
        assert_eq!(spread(&[1.0, -2.0, 0.5]), Some(3.0));
        assert_eq!(spread(&[1.0, f32::NAN]), None);
        let z = z_score(&[1.0, 2.0, 3.0], 2).unwrap();
        assert!((z - 1.224_744_87).abs() < 1e-6, "{z}");
        assert_eq!(z_score(&[2.0, 2.0], 0), None);
        assert_eq!(kl_bound(1), 0.0);
        assert!((kl_bound(4) - (4f64.ln() - 0.75)).abs() < 1e-12);
    }

    #[test]
    fn margin_is_first_minus_second() {
        let s = [0.5, 2.0, 1.25];
        assert_eq!(margin(&s, &order_by_score(&s)), Some(0.75));
        assert_eq!(margin(&[1.0], &[0]), None);
    }
}
