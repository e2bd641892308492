//! Selection: pure functions over scores.

/// Candidate indices (positions in `scores`) ordered best first: highest score wins, ties go to the lower index,
/// a NaN score ranks below every number.
pub fn rank(scores: &[f32]) -> Vec<usize> {
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn highest_wins_and_ties_go_to_the_lowest_index() {
        assert_eq!(rank(&[0.1, 0.9, 0.5]), vec![1, 2, 0]);
        assert_eq!(rank(&[0.7, 0.9, 0.9, 0.1]), vec![1, 2, 0, 3]);
        assert_eq!(rank(&[2.0, 2.0, 2.0]), vec![0, 1, 2]);
    }

    #[test]
    fn nan_ranks_last() {
        assert_eq!(rank(&[f32::NAN, -5.0, 1.0]), vec![2, 1, 0]);
    }

    #[test]
    fn margin_is_first_minus_second() {
        let s = [0.5, 2.0, 1.25];
        assert_eq!(margin(&s, &rank(&s)), Some(0.75));
        assert_eq!(margin(&[1.0], &[0]), None);
    }
}
