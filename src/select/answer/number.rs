//! Numbers as answers, compared exactly: a decimal's digits are kept as text (no f64: integers of any size compare
//! exactly), a fraction is reduced and written as the decimal it equals when it has one (`3/4` = `0.75` = `6/8`),
//! else as `p/q` in lowest terms (`2/6` = `1/3`).

/// The canonical form of a decimal literal: optional sign, digits with optional `,` thousands separators, optional
/// fraction and exponent (`-1,000.50e2`). None when `s` is not one, or its exponent is beyond ±`MAX_EXPONENT`.
pub fn decimal(s: &str) -> Option<String> {
    let (negative, body) = sign(s);
    let (mantissa, exponent) = match body.find(['e', 'E']) {
        Some(i) => (&body[..i], body[i + 1..].parse::<i64>().ok()?),
        None => (body, 0),
    };
    if exponent.abs() > MAX_EXPONENT {
        return None;
    }
    let (int, frac) = mantissa.split_once('.').unwrap_or((mantissa, ""));
    if !thousands_ok(int) || !frac.bytes().all(|b| b.is_ascii_digit()) || (int.is_empty() && frac.is_empty()) {
        return None;
    }
    let int: String = int.chars().filter(|&c| c != ',').collect();
    // All digits, and where the point falls in them.
    let digits = format!("{int}{frac}");
    let point = i64::try_from(int.len()).ok()? + exponent;
    Some(place(negative, &digits, point))
}

/// The canonical form of `p/q` for integer literals `p` (optionally signed) and `q`: the decimal it equals when it
/// terminates (denominator 2^a·5^b), else `p/q` in lowest terms. None when `s` is not such a fraction, `q` is 0, or a
/// part has more than 38 digits.
pub fn fraction(p: &str, q: &str) -> Option<String> {
    let (negative, p) = sign(p.trim());
    let (p, q) = (integer(p)?, integer(q.trim())?);
    if q == 0 {
        return None;
    }
    let g = gcd(p, q);
    let (p, q) = (p / g, q / g);
    let (twos, fives) = (q.trailing_zeros(), factor(q, 5));
    let minus = if negative && p != 0 { "-" } else { "" };
    if q >> twos != 5u128.checked_pow(fives)? {
        return Some(format!("{minus}{p}/{q}"));
    }
    // p/q = p·2^(k-a)·5^(k-b) / 10^k with k = max(a, b).
    let k = twos.max(fives);
    let scale = 2u128.checked_pow(k - twos)?.checked_mul(5u128.checked_pow(k - fives)?)?;
    let Some(scaled) = p.checked_mul(scale) else { return Some(format!("{minus}{p}/{q}")) };
    let digits = scaled.to_string();
    let point = i64::try_from(digits.len()).ok()? - i64::from(k);
    Some(place(negative, &digits, point))
}

/// Exponents beyond this are not numbers worth expanding (`1e999999` stays text).
const MAX_EXPONENT: i64 = 400;

/// A leading `-` (or the Unicode minus) or `+`, and the rest.
fn sign(s: &str) -> (bool, &str) {
    match s.strip_prefix(['-', '\u{2212}']) {
        Some(rest) => (true, rest),
        None => (false, s.strip_prefix('+').unwrap_or(s)),
    }
}

/// Digits, or digits grouped by `,` in threes after a first group of one to three.
fn thousands_ok(int: &str) -> bool {
    let mut groups = int.split(',');
    let first = groups.next().unwrap_or_default();
    let digits = |g: &str| g.bytes().all(|b| b.is_ascii_digit());
    if !int.contains(',') {
        return digits(int);
    }
    (1..=3).contains(&first.len()) && digits(first) && groups.all(|g| g.len() == 3 && digits(g))
}

fn integer(s: &str) -> Option<u128> {
    (!s.is_empty() && s.len() <= 38 && s.bytes().all(|b| b.is_ascii_digit())).then(|| s.parse().ok())?
}

fn gcd(mut a: u128, mut b: u128) -> u128 {
    while b != 0 {
        (a, b) = (b, a % b);
    }
    a.max(1)
}

/// How many times `f` divides `n`.
fn factor(mut n: u128, f: u128) -> u32 {
    let mut k = 0;
    while n != 0 && n.is_multiple_of(f) {
        n /= f;
        k += 1;
    }
    k
}

/// `digits` with the decimal point after `point` of them (negative: zeros before), leading and trailing zeros
/// dropped, `-0` written `0`.
fn place(negative: bool, digits: &str, point: i64) -> String {
    let lead = digits.len() - digits.trim_start_matches('0').len();
    let digits = digits.trim_start_matches('0');
    let point = point - lead as i64;
    let significant = digits.trim_end_matches('0');
    if significant.is_empty() {
        return "0".to_owned();
    }
    let len = significant.len() as i64;
    let body = if point >= len {
        format!("{significant}{}", "0".repeat((point - len) as usize))
    } else if point > 0 {
        format!("{}.{}", &significant[..point as usize], &significant[point as usize..])
    } else {
        format!("0.{}{significant}", "0".repeat((-point) as usize))
    };
    if negative { format!("-{body}") } else { body }
}
