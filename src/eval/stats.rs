//! The arithmetic of `bon-proxy eval`: what picking the best of n out of m generated samples is worth, computed
//! exactly over every n-subset (not from one random draw).
//!
//! If the m samples are sorted by the selection key (ascending), the sample at position i (0-based) is the pick of
//! exactly C(i, n-1) of the C(m, n) subsets of size n (the subsets made of it and n-1 samples below it). So the
//! expected value of any per-sample quantity v over the pick of a uniformly random n-subset is
//! sum_i C(i, n-1) / C(m, n) * v_i: the unbiased best-of-n estimator of Nakano et al. (2021), Gao et al. (2023).

/// Weight of each sorted position (ascending by selection key) in the best-of-`n` expectation over `m` samples;
/// the weights sum to 1. Empty when `n` is 0 or larger than `m`.
pub fn pick_weights(m: usize, n: usize) -> Vec<f64> {
    if n == 0 || n > m {
        return Vec::new();
    }
    let total = binomial(m, n);
    (0..m).map(|i| if i + 1 >= n { binomial(i, n - 1) / total } else { 0.0 }).collect()
}

/// C(n, k) as a float (exact for the sizes used here, m <= a few dozen).
fn binomial(n: usize, k: usize) -> f64 {
    if k > n {
        return 0.0;
    }
    let k = k.min(n - k);
    (0..k).fold(1.0, |acc, j| acc * (n - j) as f64 / (j + 1) as f64)
}

/// Expected `values[pick]` where the pick of an n-subset is its element with the highest `keys` entry (ties: the
/// lower index wins, as in the proxy). `keys` and `values` are per sample; None when `n` > the number of samples.
pub fn expected_pick(keys: &[(u8, f32)], values: &[f64], n: usize) -> Option<f64> {
    let weights = pick_weights(keys.len(), n);
    if weights.is_empty() {
        return None;
    }
    let order = ascending(keys);
    Some(order.iter().zip(&weights).map(|(&i, w)| w * values[i]).sum())
}

/// Sample indices sorted so that the best sample comes last: by guard tier (a lower tier is better), then score
/// (higher is better; NaN lowest), then index (a lower index is better, so it sorts later).
pub fn ascending(keys: &[(u8, f32)]) -> Vec<usize> {
    let mut order: Vec<usize> = (0..keys.len()).collect();
    let score = |s: f32| if s.is_nan() { f32::NEG_INFINITY } else { s };
    order.sort_by(|&a, &b| {
        keys[b].0.cmp(&keys[a].0).then(score(keys[a].1).total_cmp(&score(keys[b].1))).then(b.cmp(&a))
    });
    order
}

/// How often two selection keys pick the same sample of an n-subset, exact over every n-subset: sample i is both
/// picks of exactly the subsets made of it and n-1 samples below it in both orders, C(b_i, n-1) of them. None when
/// `n` is 0 or larger than the number of samples.
pub fn agreement(a: &[(u8, f32)], b: &[(u8, f32)], n: usize) -> Option<f64> {
    let m = a.len();
    if n == 0 || n > m || b.len() != m {
        return None;
    }
    let rank = |keys: &[(u8, f32)]| {
        let mut r = vec![0; m];
        for (position, i) in ascending(keys).into_iter().enumerate() {
            r[i] = position;
        }
        r
    };
    let (ra, rb) = (rank(a), rank(b));
    let both = |i: usize| (0..m).filter(|&j| ra[j] < ra[i] && rb[j] < rb[i]).count();
    Some((0..m).map(|i| binomial(both(i), n - 1)).sum::<f64>() / binomial(m, n))
}

/// The pick among the first `n` samples (one concrete best-of-n draw, for pairwise judging).
pub fn pick_of_first(keys: &[(u8, f32)], n: usize) -> Option<usize> {
    ascending(&keys[..n.min(keys.len())]).last().copied()
}

/// Mean of `xs` (None when empty).
pub fn mean(xs: impl IntoIterator<Item = f64>) -> Option<f64> {
    let (sum, count) = xs.into_iter().fold((0.0, 0usize), |(s, c), x| (s + x, c + 1));
    (count > 0).then(|| sum / count as f64)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Brute force over every n-subset.
    fn brute(keys: &[(u8, f32)], values: &[f64], n: usize) -> f64 {
        let m = keys.len();
        let (mut sum, mut count) = (0.0, 0.0);
        for mask in 0u32..(1 << m) {
            if mask.count_ones() as usize != n {
                continue;
            }
            let subset: Vec<usize> = (0..m).filter(|i| mask & (1 << i) != 0).collect();
            let sub_keys: Vec<(u8, f32)> = subset.iter().map(|&i| keys[i]).collect();
            let best = subset[*ascending(&sub_keys).last().unwrap()];
            sum += values[best];
            count += 1.0;
        }
        sum / count
    }

    #[test]
    fn weights_sum_to_one_and_match_brute_force() {
        for m in 1..=8 {
            for n in 1..=m {
                let w = pick_weights(m, n);
                assert!((w.iter().sum::<f64>() - 1.0).abs() < 1e-12, "m={m} n={n}");
            }
        }
        let keys = [(0, 0.3), (1, 2.0), (0, -1.0), (0, 0.3), (0, 5.0), (1, 9.0), (0, 0.1)];
        let values = [1.0, 7.0, 2.0, 3.0, 4.0, 11.0, 5.0];
        for n in 1..=keys.len() {
            let fast = expected_pick(&keys, &values, n).unwrap();
            assert!((fast - brute(&keys, &values, n)).abs() < 1e-9, "n={n}");
        }
        assert_eq!(expected_pick(&keys, &values, 8), None);
    }

    #[test]
    fn agreement_matches_brute_force() {
        let a = [(0, 0.3), (1, 2.0), (0, -1.0), (0, 0.3), (0, 5.0), (1, 9.0), (0, 0.1)];
        let b = [(0, 2.0), (1, 1.0), (0, 3.0), (0, f32::NAN), (0, 0.5), (1, 4.0), (0, 2.0)];
        let m = a.len();
        for n in 1..=m {
            let (mut same, mut count) = (0.0, 0.0);
            for mask in 0u32..(1 << m) {
                if mask.count_ones() as usize != n {
                    continue;
                }
                let subset: Vec<usize> = (0..m).filter(|i| mask & (1 << i) != 0).collect();
                let best = |keys: &[(u8, f32)]| {
                    let sub: Vec<(u8, f32)> = subset.iter().map(|&i| keys[i]).collect();
                    subset[*ascending(&sub).last().unwrap()]
                };
                same += f64::from(u8::from(best(&a) == best(&b)));
                count += 1.0;
            }
            assert!((agreement(&a, &b, n).unwrap() - same / count).abs() < 1e-9, "n={n}");
        }
        assert_eq!(agreement(&a, &a, 3), Some(1.0));
        assert_eq!(agreement(&a, &b, 8), None);
    }

    #[test]
    fn best_of_one_is_the_mean_and_best_of_all_is_the_top() {
        let keys = [(0, 1.0), (0, 3.0), (0, 2.0)];
        let values = [10.0, 30.0, 20.0];
        assert!((expected_pick(&keys, &values, 1).unwrap() - 20.0).abs() < 1e-12);
        assert!((expected_pick(&keys, &values, 3).unwrap() - 30.0).abs() < 1e-12);
        assert_eq!(pick_of_first(&keys, 2), Some(1));
        assert_eq!(pick_of_first(&[(1, 9.0), (0, 0.0)], 2), Some(1), "the guard tier comes first");
        assert_eq!(pick_of_first(&[(0, 1.0), (0, 1.0)], 2), Some(0), "ties go to the lower index");
    }
}
