//! An LLM judge for `bon-proxy eval`: any OpenAI-compatible chat endpoint that returns `logprobs` (Ollama, llama.cpp's
//! server, vLLM). One generated token is read through its top log-probabilities, so a judgement is a probability,
//! not a sampled word:
//!
//! - rating: the expected score 1-9, sum p(d) d / sum p(d) over the digit tokens among the top log-probabilities;
//! - pairwise: P(first answer better) = p(A) / (p(A) + p(B)); every pair is judged in both orders and the two
//!   estimates averaged, which cancels the judge's position bias.
//!
//! A judgement the judge could not give (HTTP error, no digit / no A or B among the top tokens) is an error the
//! report counts; it is never replaced by a default.

use std::sync::Arc;

use serde_json::{Map, Value, json};

use crate::{openai::ChatCompletion, upstream::Upstream};

/// The rating prompt ({request} and {answer} are replaced).
pub const RATING_PROMPT: &str = "You are grading an AI assistant's answer to a user's request. Rate how helpful, \
correct and well-written the answer is, from 1 (useless or wrong) to 9 (excellent).\n\n[Request]\n{request}\n\n\
[Answer]\n{answer}\n\nReply with a single digit from 1 to 9.";

/// The pairwise prompt ({request}, {a} and {b} are replaced).
pub const PAIRWISE_PROMPT: &str = "Two AI assistants answered the same user request. Decide which answer is more \
helpful, correct and well-written.\n\n[Request]\n{request}\n\n[Answer A]\n{a}\n\n[Answer B]\n{b}\n\nReply with a \
single letter: A or B.";

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
}

/// A judge endpoint and model.
pub struct Judge {
    pub upstream: Arc<dyn Upstream>,
    pub model: String,
}

impl Judge {
    /// Expected 1-9 rating of `answer` to `request`.
    pub async fn rate(&self, request: &str, answer: &str) -> Result<f64, JudgeError> {
        let prompt = RATING_PROMPT.replace("{request}", request).replace("{answer}", answer);
        let top = self.first_token(&prompt).await?;
        expected_digit(&top).ok_or(JudgeError::NoAnswer("a digit 1-9"))
    }

    /// Probability that `x` is the better answer, averaged over both presentation orders.
    pub async fn prefer(&self, request: &str, x: &str, y: &str) -> Result<f64, JudgeError> {
        let ask = |a: &str, b: &str| PAIRWISE_PROMPT.replace("{request}", request).replace("{a}", a).replace("{b}", b);
        let (xy, yx) = (ask(x, y), ask(y, x));
        let (first, second) = futures::join!(self.first_token(&xy), self.first_token(&yx));
        let x_first = p_first(&first?).ok_or(JudgeError::NoAnswer("A or B"))?;
        let y_first = p_first(&second?).ok_or(JudgeError::NoAnswer("A or B"))?;
        Ok((x_first + (1.0 - y_first)) / 2.0)
    }

    /// The top log-probabilities of the judge's first generated token, as (token, probability).
    async fn first_token(&self, prompt: &str) -> Result<Vec<(String, f64)>, JudgeError> {
        let mut body = Map::new();
        body.insert("model".into(), json!(self.model));
        body.insert("messages".into(), json!([{"role": "user", "content": prompt}]));
        body.insert("max_tokens".into(), json!(1));
        body.insert("temperature".into(), json!(0));
        body.insert("logprobs".into(), json!(true));
        body.insert("top_logprobs".into(), json!(TOP_LOGPROBS));
        body.insert("stream".into(), json!(false));
        let done = self.upstream.chat(body, None).await.map_err(|e| JudgeError::Upstream(e.to_string()))?;
        top_logprobs(&done).ok_or(JudgeError::NoLogprobs)
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
    for (token, p) in top {
        if let Some(d) = token.trim().parse::<u8>().ok().filter(|d| (1..=9).contains(d)) {
            weighted += p * f64::from(d);
            mass += p;
        }
    }
    (mass > 0.0).then(|| weighted / mass)
}

/// p(A) / (p(A) + p(B)) over tokens that are `A` or `B` (surrounding spaces ignored).
pub fn p_first(top: &[(String, f64)]) -> Option<f64> {
    let mass = |letter: &str| top.iter().filter(|(t, _)| t.trim() == letter).map(|(_, p)| p).sum::<f64>();
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
}
