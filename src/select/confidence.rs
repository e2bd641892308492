//! The upstream's own token confidence (DeepConf, Fu et al. 2025, "Deep Think with Confidence"), read from the
//! `logprobs` every upstream bon-proxy targets returns with an answer (llama.cpp's server, vLLM, Ollama since
//! 0.12.11, OpenAI):
//!
//! - token confidence C = −(mean of the top-k log-probabilities at a position): high when the alternatives to the
//!   chosen token are unlikely;
//! - group confidence = the mean of C over a sliding window of W tokens (`--confidence-window`);
//! - a candidate's **lowest** group confidence (its weakest stretch; the whole answer's mean when it is shorter than
//!   W), its **tail** (the mean of its last W tokens) and its **mean** (all tokens).
//!
//! Pure functions; `bon/` asks the upstream for the log-probabilities and attaches the result to each candidate.

use std::collections::VecDeque;

use serde::{Deserialize, Serialize};
use serde_json::Value;

/// One candidate's confidence (see the module documentation).
#[derive(Clone, Copy, Debug, PartialEq, Serialize, Deserialize)]
pub struct Confidence {
    pub lowest: f64,
    pub tail: f64,
    pub mean: f64,
    /// Tokens it was computed over.
    pub tokens: usize,
}

/// Per token of a choice's `logprobs` object (`{"content": [{"token", "logprob", "top_logprobs": [...]}, ...]}`),
/// −(mean of its first `top_k` top log-probabilities). A position that lists fewer than `MIN_ALTERNATIVES`
/// alternatives, or one that is not a finite number, is left out: with the top token alone the same formula measures
/// doubt, not confidence (−log p of the likeliest token is near 0 when the model is sure). None when no position is
/// left.
pub fn token_confidences(logprobs: &Value, top_k: usize) -> Option<Vec<f64>> {
    let content = logprobs.get("content")?.as_array()?;
    let tokens: Vec<f64> = content.iter().filter_map(|entry| token_confidence(entry, top_k)).collect();
    (!tokens.is_empty()).then_some(tokens)
}

/// Alternatives a position needs for its confidence to mean one (and the least `--confidence-top-k`).
pub const MIN_ALTERNATIVES: usize = 2;

/// One `logprobs.content` entry's confidence (see `token_confidences`).
fn token_confidence(entry: &Value, top_k: usize) -> Option<f64> {
    let top = entry.get("top_logprobs")?.as_array()?;
    let values: Vec<f64> =
        top.iter().take(top_k.max(MIN_ALTERNATIVES)).map(|t| t.get("logprob")?.as_f64()).collect::<Option<_>>()?;
    if values.len() < MIN_ALTERNATIVES {
        return None;
    }
    let c = -values.iter().sum::<f64>() / values.len() as f64;
    c.is_finite().then_some(c)
}

/// A streaming candidate's group confidence as its tokens come in (the online stop): the lowest mean over a full
/// window of `window` tokens so far. Entries that carry no number are skipped.
#[derive(Clone, Debug)]
pub struct Running {
    window: usize,
    top_k: usize,
    last: VecDeque<f64>,
    lowest: Option<f64>,
}

impl Running {
    pub fn new(window: usize, top_k: usize) -> Self {
        Self { window: window.max(1), top_k, last: VecDeque::with_capacity(window.max(1)), lowest: None }
    }

    /// Adds a chunk's `logprobs.content` entries; the lowest full-window group confidence so far (None until
    /// `window` tokens have come).
    pub fn push(&mut self, entries: &[Value]) -> Option<f64> {
        for c in entries.iter().filter_map(|e| token_confidence(e, self.top_k)) {
            if self.last.len() == self.window {
                self.last.pop_front();
            }
            self.last.push_back(c);
            if self.last.len() == self.window {
                // Summed afresh (w additions): no drift from a running sum over thousands of tokens.
                let group = self.last.iter().sum::<f64>() / self.window as f64;
                self.lowest = Some(self.lowest.map_or(group, |l| l.min(group)));
            }
        }
        self.lowest
    }

    /// The lowest full-window group confidence so far (None until `window` tokens have come).
    pub fn lowest(&self) -> Option<f64> {
        self.lowest
    }
}

/// Lowest, tail and mean confidence of `tokens` over windows of `window` tokens. None for no tokens.
pub fn summarise(tokens: &[f64], window: usize) -> Option<Confidence> {
    let n = tokens.len();
    if n == 0 {
        return None;
    }
    let w = window.clamp(1, n);
    let mut prefix = Vec::with_capacity(n + 1);
    prefix.push(0.0);
    for c in tokens {
        prefix.push(prefix[prefix.len() - 1] + c);
    }
    let mean_of = |from: usize, to: usize| (prefix[to] - prefix[from]) / (to - from) as f64;
    let lowest = (0..=n - w).map(|start| mean_of(start, start + w)).fold(f64::INFINITY, f64::min);
    Some(Confidence { lowest, tail: mean_of(n - w, n), mean: mean_of(0, n), tokens: n })
}

/// Who votes in `confidence-vote`: of `order` (positions, most confident first), those `eligible` (with an answer
/// and a confidence), the first ceil(`keep` × their number), at least one.
pub fn voters(order: &[usize], eligible: impl Fn(usize) -> bool, keep: f64) -> Vec<usize> {
    let eligible: Vec<usize> = order.iter().copied().filter(|&p| eligible(p)).collect();
    let kept = ((eligible.len() as f64 * keep).ceil() as usize).max(1).min(eligible.len());
    eligible[..kept].to_vec()
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    fn entry(chosen: f64, top: &[f64]) -> Value {
        let top: Vec<Value> = top.iter().map(|l| json!({"token": "x", "logprob": l})).collect();
        json!({"token": "x", "logprob": chosen, "top_logprobs": top})
    }

    #[test]
    fn token_confidence_is_minus_the_mean_of_the_top_k() {
        let lp = json!({"content": [entry(-0.01, &[-0.01, -6.0, -8.0]), entry(-0.7, &[-0.7, -0.8, -2.5]), entry(-0.2, &[]), entry(-0.1, &[-0.1])]});
        let c = token_confidences(&lp, 5).unwrap();
        assert!((c[0] - (0.01 + 6.0 + 8.0) / 3.0).abs() < 1e-12);
        assert!((c[1] - (0.7 + 0.8 + 2.5) / 3.0).abs() < 1e-12);
        assert_eq!(c.len(), 2, "positions with fewer than two alternatives measure doubt, not confidence: left out");
        // Only the first k count (never fewer than two).
        assert!((token_confidences(&lp, 2).unwrap()[0] - 3.005).abs() < 1e-12);
        assert_eq!(token_confidences(&lp, 1), token_confidences(&lp, 2));
        assert_eq!(token_confidences(&json!({"content": []}), 5), None);
        assert_eq!(token_confidences(&json!(null), 5), None);
        assert_eq!(token_confidences(&json!({"content": [{"token": "x"}]}), 5), None, "no numbers");
    }

    #[test]
    fn the_running_group_is_the_lowest_full_window_so_far() {
        let e = |c: f64| entry(-0.01, &[-c, -c]);
        let mut r = Running::new(2, 5);
        assert_eq!(r.push(&[e(5.0)]), None, "no full window yet");
        assert_eq!(r.push(&[e(5.0), e(1.0)]), Some(3.0));
        assert_eq!(r.push(&[e(1.0)]), Some(1.0));
        assert_eq!(r.push(&[e(9.0), e(9.0)]), Some(1.0), "the lowest stays");
        assert_eq!(r.push(&[json!({"token": "x"})]), Some(1.0), "no number: skipped");
        // The same numbers as `summarise` over the whole answer.
        let tokens = [5.0, 5.0, 5.0, 1.0, 1.0, 5.0, 5.0, 3.0];
        let mut r = Running::new(4, 5);
        let got = r.push(&tokens.iter().map(|&c| e(c)).collect::<Vec<_>>());
        assert_eq!(got, Some(summarise(&tokens, 4).unwrap().lowest));
    }

    #[test]
    fn the_most_confident_share_of_the_eligible_votes() {
        let order = [4, 0, 3, 1, 2];
        assert_eq!(voters(&order, |p| p != 0, 0.5), vec![4, 3], "ceil(4 x 0.5) of those eligible, in order");
        assert_eq!(voters(&order, |_| true, 0.01), vec![4], "at least one");
        assert_eq!(voters(&order, |_| true, 1.0), order.to_vec());
        assert!(voters(&order, |_| false, 0.5).is_empty());
    }

    #[test]
    fn lowest_tail_and_mean_over_sliding_windows() {
        let tokens = [5.0, 5.0, 5.0, 1.0, 1.0, 5.0, 5.0, 3.0];
        let c = summarise(&tokens, 2).unwrap();
        assert_eq!((c.lowest, c.tail, c.mean, c.tokens), (1.0, 4.0, 30.0 / 8.0, 8));
        let c = summarise(&tokens, 4).unwrap();
        assert_eq!(c.lowest, 3.0, "the lowest of the five 4-token windows: 12/4");
        // Shorter than the window: one group, the whole answer.
        let c = summarise(&[2.0, 4.0], 16).unwrap();
        assert_eq!((c.lowest, c.tail, c.mean), (3.0, 3.0, 3.0));
        assert_eq!(summarise(&[], 16), None);
    }
}
