//! The degenerate-text guard: no reward model is trusted to rank a looping answer, or one cut off by the length
//! limit, below a coherent finished one. Candidates are flagged here and `rank` puts flagged ones last; the score
//! only orders candidates that carry the same flags.
//!
//! A loop runs until the length limit, so repetition is measured where a loop is: in the last `TAIL_WORDS` words
//! (lower-cased, split on whitespace), as the share of their word 4-grams that already occurred earlier in that
//! window. A text with at least `MIN_WORDS` words whose share is at least `REPETITIVE_SHARE` is flagged
//! `repetitive`; so is a shorter one, from `SHORT_MIN_WORDS` words, that is almost nothing but repetition
//! (`SHORT_SHARE`: a short loop cut early, "A reminder, a reminder, a reminder, …"). How the numbers were set, on real answers and on real loops captured from llama-server
//! (models/training/guard_calibration.py, tests/fixtures/loops.json), is in docs/guide/strategies.md ("Degenerate-text guard").

use std::collections::HashSet;

use crate::openai::ChatCompletion;

/// Share of repeated word 4-grams (in the last `TAIL_WORDS` words) at or above which a text counts as repetitive.
pub const REPETITIVE_SHARE: f64 = 0.4;
/// How many of the last words are examined.
pub const TAIL_WORDS: usize = 32;
/// Texts this long are flagged at `REPETITIVE_SHARE`.
pub const MIN_WORDS: usize = 24;
/// Shorter texts from this many words are flagged only at `SHORT_SHARE`; shorter still, never (too little text to
/// tell a loop from a short list).
pub const SHORT_MIN_WORDS: usize = 12;
/// Share of repeated 4-grams that flags a text of `SHORT_MIN_WORDS` to `MIN_WORDS` words.
pub const SHORT_SHARE: f64 = 0.75;
const GRAM: usize = 4;

/// What the guard saw in one candidate.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash, PartialOrd, Ord, serde::Serialize, serde::Deserialize)]
pub struct Flags {
    /// Mostly repetition (ranked below every candidate that is not).
    pub repetitive: bool,
    /// Stopped by the length limit (`finish_reason: "length"`), ranked below finished ones.
    pub truncated: bool,
}

impl Flags {
    /// Flags of an upstream answer (its first choice: the one bon-proxy scores and returns).
    pub fn of(c: &ChatCompletion) -> Self {
        let choice = c.choices.first();
        let text = choice.and_then(|ch| ch.message.content.as_ref()).map(|t| t.text()).unwrap_or_default();
        Self {
            repetitive: is_repetitive(&text),
            truncated: choice.and_then(|ch| ch.finish_reason.as_deref()) == Some("length"),
        }
    }

    /// The flag names, as the `bon` object lists them.
    pub fn names(self) -> Vec<&'static str> {
        let mut out = Vec::new();
        if self.repetitive {
            out.push("repetitive");
        }
        if self.truncated {
            out.push("truncated");
        }
        out
    }

    /// Sort key: lower is better. Repetition weighs more than truncation.
    pub fn tier(self) -> u8 {
        u8::from(self.repetitive) * 2 + u8::from(self.truncated)
    }
}

/// Share of the word 4-grams of the last `TAIL_WORDS` words of `text` that already occurred earlier among them (0
/// with fewer than 4 words).
pub fn repeated_share(text: &str) -> f64 {
    let mut words: Vec<String> = text.split_whitespace().rev().take(TAIL_WORDS).map(str::to_lowercase).collect();
    words.reverse();
    if words.len() < GRAM {
        return 0.0;
    }
    let mut seen = HashSet::new();
    let grams = words.windows(GRAM);
    let total = grams.len();
    let repeated = grams.filter(|g| !seen.insert(*g)).count();
    repeated as f64 / total as f64
}

/// Whether `text` is mostly repetition.
pub fn is_repetitive(text: &str) -> bool {
    let words = text.split_whitespace().take(MIN_WORDS).count();
    let threshold = match words {
        w if w >= MIN_WORDS => REPETITIVE_SHARE,
        w if w >= SHORT_MIN_WORDS => SHORT_SHARE,
        _ => return false,
    };
    repeated_share(text) >= threshold
}

/// `order` (positions into `flags`, best first by score) re-ordered so that candidates with fewer flags come first;
/// the sort is stable, so the score order holds among candidates with the same flags.
pub fn tiered(mut order: Vec<usize>, flags: &[Flags]) -> Vec<usize> {
    order.sort_by_key(|&i| flags[i].tier());
    order
}

#[cfg(test)]
mod tests {
    use super::*;

    const PROSE: &str = "Rust is a systems programming language focused on safety, speed and concurrency. It \
        achieves memory safety without a garbage collector, using a borrow checker that validates references at \
        compile time, and it offers zero-cost abstractions, pattern matching and a helpful compiler.";

    #[test]
    fn prose_is_not_repetitive_and_a_loop_is() {
        assert!(repeated_share(PROSE) < 0.05, "{}", repeated_share(PROSE));
        assert!(!is_repetitive(PROSE));
        let looped = format!("{PROSE} {}", "the promise of a new life, ".repeat(40));
        assert!(repeated_share(&looped) > 0.7);
        assert!(is_repetitive(&looped));
        // A loop that starts late is still caught: only the tail is measured.
        let late = format!("{PROSE} {}", "and so it goes on, ".repeat(10));
        assert!(is_repetitive(&late), "{}", repeated_share(&late));
        // Repetition early on, a fresh ending: not a loop.
        let early = format!("{} {PROSE}", "yes indeed very much so ".repeat(10));
        assert!(!is_repetitive(&early), "{}", repeated_share(&early));
    }

    #[test]
    fn short_texts_are_never_flagged() {
        assert!(!is_repetitive("yes yes yes yes yes yes yes yes"));
        assert_eq!(repeated_share("one two three"), 0.0);
    }

    #[test]
    fn a_short_loop_is_flagged_only_when_it_is_almost_all_repetition() {
        // Real SmolLM2 output (llama-server, temperature 0.8), 53 tokens: a loop cut early.
        let reminder = "A reminder, a reminder, a reminder, a reminder, a reminder, a reminder, a reminder, a \
                        reminder, a reminder, a reminder, a reminder.";
        assert!(is_repetitive(reminder), "{}", repeated_share(reminder));
        // A generator answer in ../shared/data (the only short one above the threshold there).
        assert!(is_repetitive(&"Sincerely,\n\n".repeat(12)));
        // Short and coherent, or short with a refrain: not flagged.
        assert!(!is_repetitive(
            "Paris is the capital of France, and it has been for centuries, since the Middle Ages."
        ));
        let refrain = "Row, row, row your boat, gently down the stream. Merrily, merrily, merrily, merrily, life is \
                       but a dream.";
        assert!(!is_repetitive(refrain), "{}", repeated_share(refrain));
    }

    #[test]
    fn case_and_spacing_do_not_hide_a_loop() {
        let text = "I am sorry.\nI AM SORRY.  i am sorry. ".repeat(12);
        assert!(is_repetitive(&text), "{}", repeated_share(&text));
    }

    #[test]
    fn rank_keeps_score_order_within_a_tier() {
        let clean = Flags::default();
        let cut = Flags { truncated: true, ..Flags::default() };
        let rep = Flags { repetitive: true, ..Flags::default() };
        let both = Flags { repetitive: true, truncated: true };
        // Score order 0,1,2,3,4: candidate 0 loops, 1 is cut, 2 and 4 are clean, 3 loops and is cut.
        let flags = [rep, cut, clean, both, clean];
        assert_eq!(tiered(vec![0, 1, 2, 3, 4], &flags), vec![2, 4, 1, 0, 3]);
        // All flagged the same way: plain score order.
        assert_eq!(tiered(vec![2, 0, 1], &[cut, cut, cut]), vec![2, 0, 1]);
        assert_eq!(both.names(), vec!["repetitive", "truncated"]);
    }
}
