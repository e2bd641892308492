//! An LLM judge: any OpenAI-compatible chat endpoint that returns `logprobs` (Ollama, llama.cpp's server, vLLM). One
//! generated token is read through its top log-probabilities, so a judgement is a probability, not a sampled word:
//!
//! - rating: the expected score 1-9, sum p(d) d / sum p(d) over the digit tokens among the top log-probabilities;
//! - pairwise: P(first answer better) = p(A) / (p(A) + p(B)); every pair is judged in both orders and the two
//!   estimates averaged, which cancels the judge's position bias.
//!
//! The request and the answers are untrusted: each is fenced between marker lines carrying a random nonce the text
//! cannot know, every run of three or more `<` or `>` inside them is spaced out (`<<<<` becomes `< < < <`) so that
//! no substring of the fenced text is a marker's `<<<` or `>>>`, and the instructions say that nothing inside a fence
//! can change the task. The prompt is built in one pass over its constant template: text put into a slot is never
//! read again, so a `{b}` inside answer A stays the three characters it is. Answers are shown blinded (no index,
//! seed or score).
//!
//! A judgement the judge could not give (HTTP error, no digit / no A or B among the top tokens, a probability that is
//! not a number) is an error; it is never replaced by a default. Pointwise, the answers the judge did rate decide and
//! the others rank after them (reported as `unrated`); every call's tokens count, also when the judge then fails or
//! runs out of time. `bon-proxy eval` and the `judge` selection strategies use the same prompts.

mod prompt;

use std::sync::{Arc, Mutex};

use rand::seq::SliceRandom;
use serde_json::{Map, Value, json};

use prompt::nonce;
pub use prompt::{PAIRWISE_PROMPT, RATING_PROMPT, defuse, fence, pairwise_prompt, rating_prompt};

use super::JudgeMode;
use crate::{
    openai::{ChatCompletion, Message, Usage},
    upstream::Upstream,
};

/// How many alternatives the judge is asked for (OpenAI's maximum).
const TOP_LOGPROBS: u32 = 20;

/// Why a judgement is missing.
#[derive(Clone, Debug, thiserror::Error, PartialEq)]
pub enum JudgeError {
    #[error("judge request failed: {0}")]
    Upstream(String),
    #[error("judge response has no logprobs (does the endpoint support `logprobs`?)")]
    NoLogprobs,
    #[error("none of the judge's top tokens is {0}")]
    NoAnswer(&'static str),
    #[error("the judge took longer than {0:?}")]
    Timeout(std::time::Duration),
}

impl JudgeError {
    /// Low-cardinality cause, the `outcome` label of `bon_judge_requests_total`.
    pub fn kind(&self) -> &'static str {
        match self {
            Self::Timeout(_) => "timeout",
            _ => "failed",
        }
    }
}

/// A judge endpoint and model.
pub struct Judge {
    pub upstream: Arc<dyn Upstream>,
    pub model: String,
    /// Bearer token for the judge (the client's, when the judge is the proxy's own upstream and
    /// `--forward-client-auth` is on).
    pub auth: Option<Arc<str>>,
}

/// A judgement and what it cost.
#[derive(Clone, Debug, PartialEq)]
pub struct Judged<T> {
    pub value: T,
    pub usage: Usage,
    pub calls: u32,
}

/// What a judge's calls have spent so far, added as each call returns, so that the tokens of the calls that finished
/// still count when a later one fails or the whole judgement runs out of time (and is dropped).
#[derive(Debug, Default)]
pub struct Spent(Mutex<(Usage, u32)>);

impl Spent {
    fn add(&self, usage: Usage) {
        let mut g = self.0.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
        g.0 += usage;
        g.1 += 1;
    }

    /// Tokens and calls spent so far.
    pub fn get(&self) -> (Usage, u32) {
        *self.0.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    fn judged<T>(&self, value: T) -> Judged<T> {
        let (usage, calls) = self.get();
        Judged { value, usage, calls }
    }
}

/// The judge's order of some answers: positions, best first, and how many it could not rate (ranked last).
#[derive(Clone, Debug, PartialEq)]
pub struct Order {
    pub order: Vec<usize>,
    pub unrated: usize,
}

impl Judge {
    /// Expected 1-9 rating of `answer` to `request`.
    pub async fn rate(&self, request: &str, answer: &str) -> Result<Judged<f64>, JudgeError> {
        let spent = Spent::default();
        let value = self.rating(request, answer, &spent).await?;
        Ok(spent.judged(value))
    }

    /// Probability that `x` is the better answer, averaged over both presentation orders.
    pub async fn prefer(&self, request: &str, x: &str, y: &str) -> Result<Judged<f64>, JudgeError> {
        let spent = Spent::default();
        let value = self.preference(request, x, y, &spent).await?;
        Ok(spent.judged(value))
    }

    async fn rating(&self, request: &str, answer: &str, spent: &Spent) -> Result<f64, JudgeError> {
        let top = self.first_token(&rating_prompt(request, answer, &nonce()), spent).await?;
        expected_digit(&top).ok_or(JudgeError::NoAnswer("a digit 1-9"))
    }

    async fn preference(&self, request: &str, x: &str, y: &str, spent: &Spent) -> Result<f64, JudgeError> {
        let (xy, yx) = (pairwise_prompt(request, x, y, &nonce()), pairwise_prompt(request, y, x, &nonce()));
        let (first, second) = futures::join!(self.first_token(&xy, spent), self.first_token(&yx, spent));
        let x_first = p_first(&first?).ok_or(JudgeError::NoAnswer("A or B"))?;
        let y_first = p_first(&second?).ok_or(JudgeError::NoAnswer("A or B"))?;
        Ok((x_first + (1.0 - y_first)) / 2.0)
    }

    /// The judge's order of `texts` (positions, best first), which are given in reward order: pointwise by rating (ties
    /// keep reward order; the answers it could not rate after the rated ones, in reward order; an error only when it
    /// rated none), pairwise by a knockout in a random order (the winner first, the rest in reward order; any failed
    /// match fails it). What every call spent is added to `spent` as it returns.
    pub async fn order(
        &self,
        request: &str,
        texts: &[String],
        mode: JudgeMode,
        spent: &Spent,
    ) -> Result<Order, JudgeError> {
        match mode {
            JudgeMode::Pointwise => {
                let rated = futures::future::join_all(texts.iter().map(|t| self.rating(request, t, spent))).await;
                rank_ratings(rated)
            }
            JudgeMode::Pairwise => {
                let mut alive: Vec<usize> = (0..texts.len()).collect();
                alive.shuffle(&mut rand::rng());
                while alive.len() > 1 {
                    let bye = (alive.len() % 2 == 1).then(|| alive[alive.len() - 1]);
                    let matches = alive.chunks_exact(2).map(|p| (p[0], p[1])).collect::<Vec<_>>();
                    let judged = futures::future::join_all(
                        matches.iter().map(|&(x, y)| self.preference(request, &texts[x], &texts[y], spent)),
                    )
                    .await;
                    let mut next = Vec::with_capacity(alive.len().div_ceil(2));
                    for (&(x, y), r) in matches.iter().zip(judged) {
                        let p = r?;
                        // An exact tie goes to the better-rewarded one (the lower position).
                        let x_wins = p > 0.5 || (p == 0.5 && x < y);
                        next.push(if x_wins { x } else { y });
                    }
                    next.extend(bye);
                    alive = next;
                }
                let winner = alive.first().copied().unwrap_or(0);
                let mut order = vec![winner];
                order.extend((0..texts.len()).filter(|&i| i != winner));
                Ok(Order { order, unrated: 0 })
            }
        }
    }

    /// The top log-probabilities of the judge's first generated token, as (token, probability); what the call spent
    /// is added to `spent` as soon as it answers.
    async fn first_token(&self, prompt: &str, spent: &Spent) -> Result<Vec<(String, f64)>, JudgeError> {
        let mut body = Map::new();
        body.insert("model".into(), json!(self.model));
        body.insert("messages".into(), json!([{"role": "user", "content": prompt}]));
        body.insert("max_tokens".into(), json!(1));
        body.insert("temperature".into(), json!(0));
        body.insert("logprobs".into(), json!(true));
        body.insert("top_logprobs".into(), json!(TOP_LOGPROBS));
        body.insert("stream".into(), json!(false));
        let done = self
            .upstream
            .chat(body.into(), self.auth.clone())
            .await
            .map_err(|e| JudgeError::Upstream(e.to_string()))?;
        spent.add(done.usage.unwrap_or_default());
        top_logprobs(&done).ok_or(JudgeError::NoLogprobs)
    }
}

/// Pointwise ratings (positions in reward order) to an order: rated ones by rating, best first (ties keep reward
/// order), then the unrated ones in reward order; the first error when none was rated.
fn rank_ratings(rated: Vec<Result<f64, JudgeError>>) -> Result<Order, JudgeError> {
    // A rating that is not a number is no rating (`expected_digit` never returns one; this keeps it so).
    let ratings: Vec<Option<f64>> = rated.iter().map(|r| r.as_ref().ok().copied().filter(|v| v.is_finite())).collect();
    let unrated = ratings.iter().filter(|r| r.is_none()).count();
    if unrated == ratings.len() {
        let first = rated.into_iter().find_map(Result::err);
        return Err(first.unwrap_or(JudgeError::NoAnswer("a digit 1-9")));
    }
    let mut order: Vec<usize> = (0..ratings.len()).collect();
    // None sorts below every rating: descending by Option<rating>.
    order.sort_by(|&a, &b| match (ratings[a], ratings[b]) {
        (Some(x), Some(y)) => y.total_cmp(&x),
        (x, y) => y.is_some().cmp(&x.is_some()),
    });
    Ok(Order { order, unrated })
}

/// The conversation as the judge reads it: a lone user message as its text, else every message as `role: text`.
pub fn request_text(messages: &[Message]) -> String {
    match messages {
        [only] if only.role == "user" => only.text(),
        _ => messages.iter().map(|m| format!("{}: {}", m.role, m.text())).collect::<Vec<_>>().join("\n\n"),
    }
}

/// `choices[0].logprobs.content[0].top_logprobs` as (token, probability).
fn top_logprobs(done: &ChatCompletion) -> Option<Vec<(String, f64)>> {
    let first = done.choices.first()?.extra.get("logprobs")?.get("content")?.get(0)?;
    let top = first.get("top_logprobs").and_then(Value::as_array).filter(|t| !t.is_empty());
    let entries: Vec<&Value> = match top {
        Some(t) => t.iter().collect(),
        // No alternatives: the chosen token alone.
        None => vec![first],
    };
    let out: Vec<(String, f64)> = entries
        .into_iter()
        .filter_map(|e| Some((e.get("token")?.as_str()?.to_owned(), e.get("logprob")?.as_f64()?.exp())))
        .collect();
    (!out.is_empty()).then_some(out)
}

/// sum p(d) d / sum p(d) over tokens that are one digit 1-9 (surrounding spaces ignored).
pub fn expected_digit(top: &[(String, f64)]) -> Option<f64> {
    let (mut weighted, mut mass) = (0.0, 0.0);
    for (token, p) in top.iter().filter(|(_, p)| p.is_finite()) {
        if let Some(d) = token.trim().parse::<u8>().ok().filter(|d| (1..=9).contains(d)) {
            weighted += p * f64::from(d);
            mass += p;
        }
    }
    (mass > 0.0).then(|| weighted / mass)
}

/// p(A) / (p(A) + p(B)) over tokens that are `A` or `B` (surrounding spaces ignored).
pub fn p_first(top: &[(String, f64)]) -> Option<f64> {
    let mass =
        |letter: &str| top.iter().filter(|(t, p)| t.trim() == letter && p.is_finite()).map(|(_, p)| p).sum::<f64>();
    let (a, b) = (mass("A"), mass("B"));
    (a + b > 0.0).then(|| a / (a + b))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn top(pairs: &[(&str, f64)]) -> Vec<(String, f64)> {
        pairs.iter().map(|(t, p)| ((*t).to_owned(), *p)).collect()
    }

    #[test]
    fn expected_digit_weights_digits_and_ignores_the_rest() {
        let t = top(&[("7", 0.5), (" 7", 0.1), ("9", 0.2), ("The", 0.15), ("10", 0.05)]);
        assert!((expected_digit(&t).unwrap() - (0.6 * 7.0 + 0.2 * 9.0) / 0.8).abs() < 1e-12);
        assert_eq!(expected_digit(&top(&[("Sure", 0.9), ("0", 0.1)])), None);
    }

    #[test]
    fn p_first_normalises_a_and_b() {
        assert!((p_first(&top(&[("A", 0.3), (" B", 0.1), ("I", 0.6)])).unwrap() - 0.75).abs() < 1e-12);
        assert_eq!(p_first(&top(&[("a", 0.3)])), None);
    }

    #[test]
    fn a_probability_that_is_not_a_number_is_no_vote() {
        let nan = f64::NAN.exp();
        assert_eq!(expected_digit(&top(&[("9", nan), ("3", 0.5)])), Some(3.0));
        assert_eq!(expected_digit(&top(&[("9", nan)])), None);
        assert_eq!(expected_digit(&top(&[("9", f64::INFINITY), ("2", 0.1)])), Some(2.0));
        assert_eq!(p_first(&top(&[("A", nan), ("B", 0.2)])), Some(0.0));
        assert_eq!(p_first(&top(&[("A", nan)])), None);
    }

    #[test]
    fn ratings_rank_best_first_and_unrated_or_nan_last() {
        let fail = || Err(JudgeError::NoAnswer("a digit 1-9"));
        let o = rank_ratings(vec![Ok(3.0), fail(), Ok(f64::NAN), Ok(7.5), Ok(3.0)]).unwrap();
        assert_eq!(o, Order { order: vec![3, 0, 4, 1, 2], unrated: 2 }, "ties and unrated keep reward order");
        let o = rank_ratings(vec![Ok(f64::NAN), Ok(1.0)]).unwrap();
        assert_eq!(o.order, vec![1, 0], "a NaN rating loses to the worst real one");
        let e = rank_ratings(vec![Err(JudgeError::Upstream("x".into())), Ok(f64::NAN)]).unwrap_err();
        assert_eq!(e, JudgeError::Upstream("x".into()), "none rated: the first error");
    }
}
