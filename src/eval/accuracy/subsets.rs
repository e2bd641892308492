//! Counting and listing n-subsets of a prompt's samples (the subset strategies are averaged over them).

/// C(m, n), saturating at `u64::MAX`.
pub(super) fn binomial(m: usize, n: usize) -> u64 {
    if n > m {
        return 0;
    }
    let n = n.min(m - n);
    let mut c: u128 = 1;
    for i in 0..n {
        c = c * (m - i) as u128 / (i + 1) as u128;
        if c > u128::from(u64::MAX) {
            return u64::MAX;
        }
    }
    c as u64
}

/// Every n-subset of 0..m, in lexicographic order.
pub(super) fn combinations(m: usize, n: usize) -> impl Iterator<Item = Vec<usize>> {
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
