//! What a Best-of-N response is made of, JSON or SSE alike: the `chat.completion` body, the `bon` extension
//! object and the `x-bon-*` headers. Below both `chat` (the handler) and `sse` (the stream); depends on neither.

use axum::http::{HeaderMap, HeaderName, HeaderValue};
use serde_json::{Value, json};

use super::headers::{
    HEADER_CACHE, HEADER_N, HEADER_PRUNED, HEADER_REWARD_MODEL, HEADER_SCORES, HEADER_SELECTION, HEADER_STRATEGY,
    HEADER_VOTES, HEADER_WINNER, HEADER_WINNER_TOKENS,
};
use crate::{
    bon::{Outcome, Unscored},
    cache::CacheResult,
    openai::Choice,
    select::Strategy,
};

/// The OpenAI `chat.completion` for an outcome: the top `choices` candidates, usage summed over all candidates.
pub fn completion_body(outcome: &Outcome, choices: u32, requested_model: &str) -> Value {
    let winner = outcome.winner().map(|(_, c)| c);
    let picked: Vec<Value> = ranked_choices(outcome, choices)
        .enumerate()
        .map(|(k, choice)| {
            let mut c = serde_json::Map::new();
            c.insert("index".into(), json!(k));
            c.insert("message".into(), json!(choice.message));
            c.insert("finish_reason".into(), json!(choice.finish_reason));
            for (name, v) in &choice.extra {
                c.entry(name.clone()).or_insert_with(|| v.clone());
            }
            Value::Object(c)
        })
        .collect();
    let mut body = json!({
        "id": outcome.id,
        "object": "chat.completion",
        "created": outcome.created,
        "model": model_name(outcome, requested_model),
        "choices": picked,
        "usage": usage_json(outcome),
    });
    // Keep what the upstream added at the top level (system_fingerprint, ...).
    if let (Some(w), Some(obj)) = (winner, body.as_object_mut()) {
        for (name, v) in &w.extra {
            obj.entry(name.clone()).or_insert_with(|| v.clone());
        }
    }
    body
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

/// Usage of all candidates (prompt tokens counted once per candidate request, as the upstream processed them).
pub fn usage_json(outcome: &Outcome) -> Value {
    let u = outcome.usage;
    json!({
        "prompt_tokens": u.prompt_tokens,
        "completion_tokens": u.completion_tokens,
        "total_tokens": u.prompt_tokens + u.completion_tokens,
    })
}

/// What decided the winner: `single` (one survivor), the strategy that decided (`reward`, `vote`, `weighted-vote`,
/// `judge`, `reward+judge`), or `fallback` (the reward model failed and nothing else decided: the first success). A
/// strategy that could not decide adds why: `reward; fallback=judge-failed`.
fn selection(outcome: &Outcome) -> String {
    let s = &outcome.selection;
    let base = match outcome.unscored {
        Some(Unscored::SingleSurvivor) => return "single".to_owned(),
        Some(Unscored::ScorerFailed) if s.decided_by == Strategy::Reward => "fallback",
        _ => s.decided_by.as_str(),
    };
    match s.fallback {
        Some(f) => format!("{base}; fallback={}", f.as_str()),
        None => base.to_owned(),
    }
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
                        if let Some(a) = &c.answer {
                            one["answer"] = json!(a);
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
    let mut set = |name: &'static str, value: String| {
        if let Ok(v) = HeaderValue::from_str(&value) {
            h.insert(HeaderName::from_static(name), v);
        }
    };
    set(HEADER_N, outcome.n.to_string());
    if let Some((i, c)) = outcome.winner() {
        set(HEADER_WINNER, i.to_string());
        if let Some(u) = c.usage {
            set(HEADER_WINNER_TOKENS, u.completion_tokens.to_string());
        }
    }
    let scores: Vec<String> =
        outcome.scores().iter().map(|s| s.map_or_else(|| "-".to_owned(), |s| s.to_string())).collect();
    set(HEADER_SCORES, scores.join(","));
    set(HEADER_CACHE, cache.as_str().to_owned());
    set(HEADER_REWARD_MODEL, reward_model.to_owned());
    set(HEADER_SELECTION, selection(outcome));
    set(HEADER_STRATEGY, outcome.selection.strategy.as_str().to_owned());
    if let Some(v) = &outcome.selection.vote {
        set(HEADER_VOTES, format!("{}/{}", v.winner_voters, v.voters));
    }
    let pruned = outcome.pruned();
    if !pruned.is_empty() {
        set(HEADER_PRUNED, pruned.iter().map(usize::to_string).collect::<Vec<_>>().join(","));
    }
}
