//! `POST /v1/chat/completions`: admission, preparation, cache, Best-of-N, and the response (JSON or SSE).

use std::{future::Future, sync::Arc, time::Instant};

use axum::{
    Json,
    extract::State,
    http::{HeaderMap, HeaderName, HeaderValue, header},
    response::{IntoResponse, Response},
};
use serde_json::{Value, json};
use tokio::sync::OwnedSemaphorePermit;

use super::{
    prepare::{Prepared, prepare},
    sse,
};
use crate::{
    bon::{self, Outcome, Unscored},
    cache::{CacheKey, CacheMode, CacheResult},
    error::{ApiError, ApiJson},
    metrics::Metrics,
    openai::{ChatRequest, Choice},
    state::AppState,
};

pub const HEADER_WINNER: &str = "x-bon-winner";
pub const HEADER_SCORES: &str = "x-bon-scores";
pub const HEADER_CACHE: &str = "x-bon-cache";
pub const HEADER_REWARD_MODEL: &str = "x-bon-reward-model";
pub const HEADER_WINNER_TOKENS: &str = "x-bon-winner-completion-tokens";
pub const HEADER_SELECTION: &str = "x-bon-selection";

/// A finished Best-of-N call and what the cache did for it.
pub type Finished = Result<(Arc<Outcome>, CacheResult), ApiError>;

/// Counts the request as in flight, and as `client_closed` if it is dropped before finishing.
pub struct InFlight {
    metrics: Arc<Metrics>,
    started: Instant,
    finished: bool,
}

impl InFlight {
    fn new(metrics: Arc<Metrics>) -> Self {
        metrics.inflight.inc();
        Self { metrics, started: Instant::now(), finished: false }
    }

    /// Records the outcome (`ok` or the error's kind) and latency.
    pub fn finish(&mut self, result: Result<CacheResult, &ApiError>) {
        self.finished = true;
        let (outcome, cache) = match result {
            Ok(cache) => ("ok", cache.as_str()),
            Err(e) => (e.kind(), "none"),
        };
        self.metrics.requests.with_label_values(&[outcome]).inc();
        self.metrics.request_duration.with_label_values(&[cache]).observe(self.started.elapsed().as_secs_f64());
    }
}

impl Drop for InFlight {
    fn drop(&mut self) {
        self.metrics.inflight.dec();
        if !self.finished {
            // The response was dropped: the client went away and every upstream call was cancelled with it.
            self.metrics.requests.with_label_values(&["client_closed"]).inc();
        }
    }
}

/// What a streaming response carries along until it ends: the admission permit and the in-flight record.
pub struct Held {
    pub inflight: InFlight,
    /// Held, never read: the admission slot is released when the stream ends or is dropped.
    pub permit: OwnedSemaphorePermit,
}

/// The handler.
pub async fn chat_completions(
    State(state): State<AppState>,
    headers: HeaderMap,
    ApiJson(req): ApiJson<ChatRequest>,
) -> Response {
    let mut inflight = InFlight::new(state.metrics.clone());
    let (permit, prepared) = match admit(&state, &headers, req) {
        Ok(ready) => ready,
        Err(e) => {
            inflight.finish(Err(&e));
            return e.into_response();
        }
    };
    let work = best_of_n(state.clone(), &headers, &prepared);
    if prepared.stream {
        return sse::respond(work, Held { inflight, permit }, prepared, state).await;
    }
    let result = work.await;
    inflight.finish(result.as_ref().map(|(_, cache)| *cache));
    drop(permit);
    match result {
        Ok((outcome, cache)) => {
            let mut body = completion_body(&outcome, prepared.choices, &prepared.model);
            if prepared.return_candidates {
                body["bon"] = bon_object(&outcome, cache, &state.reward_model_id, true);
            }
            let mut response = Json(body).into_response();
            bon_headers(response.headers_mut(), &outcome, cache, &state.reward_model_id);
            response
        }
        Err(e) => e.into_response(),
    }
}

fn admit(
    state: &AppState,
    headers: &HeaderMap,
    req: ChatRequest,
) -> Result<(OwnedSemaphorePermit, Prepared), ApiError> {
    let permit = state.admission.clone().try_acquire_owned().map_err(|_| ApiError::Overloaded)?;
    Ok((permit, prepare(req, headers, &state.config)?))
}

/// The cached-or-computed Best-of-N result. Owns what it needs, so a stream can carry it; dropping it cancels
/// every upstream call.
fn best_of_n(
    state: AppState,
    headers: &HeaderMap,
    prepared: &Prepared,
) -> impl Future<Output = Finished> + Send + 'static {
    let caller = headers.get(header::AUTHORIZATION).and_then(|v| v.to_str().ok());
    let key = CacheKey::new(&prepared.key_body, prepared.plan.n, &state.reward_model_id, caller);
    let mode = CacheMode::from_cache_control(headers.get(header::CACHE_CONTROL).and_then(|v| v.to_str().ok()));
    let plan = prepared.plan.clone();
    async move {
        let config = &state.config;
        let compute = async {
            let generation = bon::Generation {
                upstream: state.upstream.as_ref(),
                mode: config.upstream_n,
                candidate_timeout: config.candidate_timeout,
                native_works: &state.native_n_works,
                metrics: &state.metrics,
            };
            let run = bon::run(&generation, state.scorer.as_ref(), &plan);
            match tokio::time::timeout(config.request_timeout, run).await {
                Ok(result) => result.map(Arc::new),
                Err(_) => Err(ApiError::Timeout),
            }
        };
        state.cache.get_or_compute(key, mode, compute).await
    }
}

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

fn selection(outcome: &Outcome) -> &'static str {
    match outcome.unscored {
        None => "reward",
        Some(Unscored::SingleSurvivor) => "single",
        Some(Unscored::ScorerFailed) => "fallback",
    }
}

/// The `bon` extension object: N, winner, scores, and with `candidates` every candidate's fate.
pub fn bon_object(outcome: &Outcome, cache: CacheResult, reward_model: &str, candidates: bool) -> Value {
    let mut bon = json!({
        "n": outcome.n,
        "winner": outcome.winner().map(|(i, _)| i),
        "scores": outcome.scores(),
        "selection": selection(outcome),
        "cache": cache.as_str(),
        "reward_model": reward_model,
    });
    if candidates {
        bon["candidates"] = outcome
            .candidates
            .iter()
            .enumerate()
            .map(|(i, c)| {
                let latency_ms = (c.latency.as_secs_f64() * 1000.0 * 10.0).round() / 10.0;
                match &c.result {
                    Ok(done) => json!({
                        "index": i, "score": c.score, "latency_ms": latency_ms,
                        "message": done.choices[0].message, "finish_reason": done.choices[0].finish_reason,
                        "completion_tokens": done.usage.map(|u| u.completion_tokens),
                        "flags": c.flags.names(),
                    }),
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
    set(super::prepare::HEADER_N, outcome.n.to_string());
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
    set(HEADER_SELECTION, selection(outcome).to_owned());
}
