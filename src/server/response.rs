//! What a Best-of-N response is made of, JSON or SSE alike: the `chat.completion` body, the `bon` extension
//! object and the `x-bon-*` headers. Below both `chat` (the handler) and `sse` (the stream); depends on neither.

use std::borrow::Cow;

use axum::http::{HeaderMap, HeaderName, HeaderValue};
use serde::Serialize;
use serde_json::{Map, Value, json};

use super::headers::{
    HEADER_CACHE, HEADER_CONFIDENCE, HEADER_N, HEADER_PRUNED, HEADER_REWARD_MODEL, HEADER_SCORES, HEADER_SELECTION,
    HEADER_STRATEGY, HEADER_VOTES, HEADER_WINNER, HEADER_WINNER_TOKENS,
};
use super::prepare::Logprobs;
use crate::{
    bon::{Outcome, Unscored},
    cache::CacheResult,
    openai::{Choice, Message, Usage},
    select::Strategy,
};

/// The OpenAI `chat.completion` for an outcome: the top `choices` candidates, usage summed over all candidates, the
/// fields the winner's upstream added at the top level (`system_fingerprint`, ...) and in each choice (`logprobs`,
/// ...) kept where they do not collide with ours, and the `bon` object when asked for. Serialised straight from the
/// outcome: no JSON tree is built or copied (a third of an N = 1 request's allocations were doing that).
#[derive(Serialize)]
pub struct CompletionBody<'a> {
    id: &'a str,
    object: &'static str,
    created: u64,
    model: &'a str,
    choices: Vec<ChoiceBody<'a>>,
    usage: Usage,
    #[serde(flatten)]
    extra: Rest<'a>,
    #[serde(skip_serializing_if = "Option::is_none")]
    bon: Option<Value>,
}

impl<'a> CompletionBody<'a> {
    pub fn new(
        outcome: &'a Outcome,
        choices: u32,
        requested_model: &'a str,
        logprobs: Logprobs,
        bon: Option<Value>,
    ) -> Self {
        const OURS: &[&str] = &["id", "object", "created", "model", "choices", "usage", "bon"];
        const OURS_IN_A_CHOICE: &[&str] = &["index", "message", "finish_reason", "logprobs"];
        Self {
            id: &outcome.id,
            object: "chat.completion",
            created: outcome.created,
            model: model_name(outcome, requested_model),
            choices: ranked_choices(outcome, choices)
                .enumerate()
                .map(|(index, c)| ChoiceBody {
                    index,
                    message: &c.message,
                    finish_reason: c.finish_reason.as_deref(),
                    logprobs: client_logprobs(c.extra.get("logprobs"), logprobs),
                    extra: Rest { map: Some(&c.extra), ours: OURS_IN_A_CHOICE },
                })
                .collect(),
            usage: usage(outcome),
            extra: Rest { map: outcome.winner().map(|(_, w)| &w.extra), ours: OURS },
            bon,
        }
    }
}

#[derive(Serialize)]
struct ChoiceBody<'a> {
    index: usize,
    message: &'a Message,
    finish_reason: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    logprobs: Option<Cow<'a, Value>>,
    #[serde(flatten)]
    extra: Rest<'a>,
}

/// A choice's `logprobs` as the client asked for them (see `Logprobs`); borrowed unless cut to fewer alternatives.
pub fn client_logprobs(upstream: Option<&Value>, ask: Logprobs) -> Option<Cow<'_, Value>> {
    let value = upstream?;
    match ask {
        Logprobs::AsReturned => Some(Cow::Borrowed(value)),
        Logprobs::Drop => None,
        Logprobs::Top(k) => {
            let mut cut = value.clone();
            if let Some(content) = cut.get_mut("content").and_then(Value::as_array_mut) {
                for entry in content {
                    if let Some(top) = entry.get_mut("top_logprobs").and_then(Value::as_array_mut) {
                        top.truncate(k);
                    }
                }
            }
            Some(Cow::Owned(cut))
        }
    }
}

/// An upstream's extra fields, less the names the proxy writes itself.
struct Rest<'a> {
    map: Option<&'a Map<String, Value>>,
    ours: &'static [&'static str],
}

impl Serialize for Rest<'_> {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        let kept = self.map.into_iter().flatten().filter(|(k, _)| !self.ours.contains(&k.as_str()));
        serializer.collect_map(kept)
    }
}

/// Usage of all candidates (prompt tokens counted once per candidate request, as the upstream processed them).
fn usage(outcome: &Outcome) -> Usage {
    let u = outcome.usage;
    Usage { total_tokens: u.prompt_tokens.saturating_add(u.completion_tokens), ..u }
}

/// The model the winner's upstream answer names, else the one the client asked for.
pub fn model_name<'a>(outcome: &'a Outcome, requested: &'a str) -> &'a str {
    outcome.winner().map(|(_, c)| c.model.as_str()).filter(|m| !m.is_empty()).unwrap_or(requested)
}

/// The first choice of each of the best `choices` candidates.
pub fn ranked_choices(outcome: &Outcome, choices: u32) -> impl Iterator<Item = &Choice> {
    outcome
        .ranked
        .iter()
        .take(choices as usize)
        .filter_map(|&i| outcome.candidates[i].result.as_ref().ok())
        .map(|c| &c.choices[0])
}

/// [`usage`] as JSON (the last chunk of a stream).
pub fn usage_json(outcome: &Outcome) -> Value {
    json!(usage(outcome))
}

/// What decided the winner: `single` (one survivor), the strategy that decided (`reward`, `vote`, `weighted-vote`,
/// `judge`, `reward+judge`), or `fallback` (the reward model failed and nothing else decided: the first success). A
/// strategy that could not decide adds why: `reward; fallback=judge-failed`; a judge that could not rate every
/// candidate says how many it left out: `judge; unrated=1`.
fn selection(outcome: &Outcome) -> String {
    let s = &outcome.selection;
    let base = match outcome.unscored {
        Some(Unscored::SingleSurvivor) => return "single".to_owned(),
        Some(Unscored::ScorerFailed) if s.decided_by == Strategy::Reward => "fallback",
        _ => s.decided_by.as_str(),
    };
    let mut out = base.to_owned();
    if let Some(f) = s.fallback {
        out = format!("{out}; fallback={}", f.as_str());
    }
    if let Some(j) = s.judge.as_ref().filter(|j| j.unrated > 0) {
        out = format!("{out}; unrated={}", j.unrated);
    }
    out
}

/// The `bon` extension object: N, winner, scores, and with `candidates` every candidate's fate.
pub fn bon_object(outcome: &Outcome, cache: CacheResult, reward_model: &str, candidates: bool) -> Value {
    let mut bon = json!({
        "n": outcome.n,
        "winner": outcome.winner().map(|(i, _)| i),
        "scores": outcome.scores(),
        "selection": selection(outcome),
        "strategy": outcome.selection.strategy.as_str(),
        "cache": cache.as_str(),
        "reward_model": reward_model,
    });
    if let Some(v) = &outcome.selection.vote {
        bon["vote"] = json!(v);
    }
    if let Some(j) = &outcome.selection.judge {
        bon["judge"] = json!(j);
    }
    if !outcome.selection.stopped_on_agreement.is_empty() {
        bon["stopped_on_agreement"] = json!(outcome.selection.stopped_on_agreement);
    }
    let pruned = outcome.pruned();
    if !pruned.is_empty() {
        bon["pruned"] = json!(pruned);
    }
    let unconfident = outcome.unconfident();
    if !unconfident.is_empty() {
        bon["stopped_unconfident"] = json!(unconfident);
    }
    if candidates {
        bon["candidates"] = outcome
            .candidates
            .iter()
            .enumerate()
            .map(|(i, c)| {
                let latency_ms = (c.latency.as_secs_f64() * 1000.0 * 10.0).round() / 10.0;
                match &c.result {
                    Ok(done) => {
                        let mut one = json!({
                            "index": i, "score": c.score, "latency_ms": latency_ms,
                            "message": done.choices[0].message, "finish_reason": done.choices[0].finish_reason,
                            "completion_tokens": done.usage.map(|u| u.completion_tokens),
                            "flags": c.flags.names(),
                        });
                        if c.pruned {
                            one["pruned"] = json!(true);
                        }
                        if c.unconfident {
                            one["unconfident"] = json!(true);
                        }
                        if let Some(a) = &c.answer {
                            one["answer"] = json!(a);
                        }
                        if let Some(conf) = &c.confidence {
                            one["confidence"] = json!(conf);
                        }
                        one
                    }
                    Err(e) => json!({"index": i, "score": null, "latency_ms": latency_ms, "error": e.to_string()}),
                }
            })
            .collect();
    }
    bon
}

/// `x-bon-*` response headers.
pub fn bon_headers(h: &mut HeaderMap, outcome: &Outcome, cache: CacheResult, reward_model: &str) {
    let mut set = |name: &'static str, value: Option<HeaderValue>| {
        if let Some(v) = value {
            h.insert(HeaderName::from_static(name), v);
        }
    };
    let text = |value: &str| HeaderValue::from_str(value).ok();
    set(HEADER_N, Some(outcome.n.into()));
    if let Some((i, c)) = outcome.winner() {
        set(HEADER_WINNER, Some(i.into()));
        set(HEADER_WINNER_TOKENS, c.usage.map(|u| u.completion_tokens.into()));
    }
    let scores: Vec<String> =
        outcome.scores().iter().map(|s| s.map_or_else(|| "-".to_owned(), |s| s.to_string())).collect();
    set(HEADER_SCORES, text(&scores.join(",")));
    set(HEADER_CACHE, Some(HeaderValue::from_static(cache.as_str())));
    set(HEADER_REWARD_MODEL, text(reward_model));
    set(HEADER_SELECTION, text(&selection(outcome)));
    set(HEADER_STRATEGY, Some(HeaderValue::from_static(outcome.selection.strategy.as_str())));
    if let Some(v) = &outcome.selection.vote {
        set(HEADER_VOTES, text(&format!("{}/{}", v.winner_voters, v.voters)));
    }
    if let Some(c) = outcome.winner().and_then(|(i, _)| outcome.candidates[i].confidence) {
        set(HEADER_CONFIDENCE, text(&format!("{:.3}", c.lowest)));
    }
    let pruned = outcome.pruned();
    if !pruned.is_empty() {
        set(HEADER_PRUNED, text(&pruned.iter().map(usize::to_string).collect::<Vec<_>>().join(",")));
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;
    use crate::{
        bon::Candidate,
        openai::{ChatCompletion, Usage},
        select::Selection,
    };

    #[test]
    fn the_body_keeps_the_upstreams_fields_that_do_not_collide_with_ours() {
        let mut upstream = json!({"id": "up-1", "object": "chat.completion", "created": 5, "model": "llm",
            "choices": [{"index": 3, "message": {"role": "assistant", "content": "a"}, "finish_reason": "stop",
                "logprobs": {"content": []}}],
            "usage": {"prompt_tokens": 2, "completion_tokens": 1, "total_tokens": 3},
            "system_fingerprint": "fp", "bon": "theirs"});
        let first: ChatCompletion = serde_json::from_value(upstream.clone()).unwrap();
        upstream["choices"][0]["message"]["content"] = json!("b");
        upstream["model"] = json!("");
        let second: ChatCompletion = serde_json::from_value(upstream).unwrap();
        let outcome = Outcome {
            id: "chatcmpl-bon-x".into(),
            created: 9,
            n: 2,
            candidates: vec![Candidate::new(Ok(first), Duration::ZERO), Candidate::new(Ok(second), Duration::ZERO)],
            ranked: vec![1, 0],
            usage: Usage { prompt_tokens: 4, completion_tokens: 2, total_tokens: 0 },
            unscored: None,
            selection: Selection::default(),
        };
        let body = serde_json::to_value(CompletionBody::new(&outcome, 2, "asked", Logprobs::AsReturned, None)).unwrap();
        let choice = |index: usize, text: &str| {
            json!({"index": index, "message": {"role": "assistant", "content": text}, "finish_reason": "stop",
                "logprobs": {"content": []}})
        };
        // The winner's upstream named no model: the client's is reported.
        assert_eq!(
            body,
            json!({"id": "chatcmpl-bon-x", "object": "chat.completion", "created": 9, "model": "asked",
                "choices": [choice(0, "b"), choice(1, "a")],
                "usage": {"prompt_tokens": 4, "completion_tokens": 2, "total_tokens": 6},
                "system_fingerprint": "fp"})
        );
        // OpenAI's key order, the upstream's additions after ours, then `bon`.
        let text = serde_json::to_string(&CompletionBody::new(
            &outcome,
            1,
            "asked",
            Logprobs::AsReturned,
            Some(json!({"n": 2})),
        ))
        .unwrap();
        assert!(
            text.starts_with(r#"{"id":"chatcmpl-bon-x","object":"chat.completion","created":9,"model":"asked","choices":[{"index":0,"#),
            "{text}"
        );
        assert!(text.ends_with(r#""system_fingerprint":"fp","bon":{"n":2}}"#), "{text}");
    }
}
