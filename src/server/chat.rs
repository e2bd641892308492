//! `POST /v1/chat/completions`: admission, preparation, cache, Best-of-N, and the response (JSON or SSE).

use std::time::Instant;

use axum::{
    Json,
    extract::State,
    http::{HeaderMap, HeaderName, HeaderValue, header},
    response::{IntoResponse, Response},
};
use serde_json::{Value, json};

use super::{prepare::prepare, sse};
use crate::{
    bon::{self, Outcome, Unscored},
    cache::{CacheKey, CacheMode, CacheResult},
    error::{ApiError, ApiJson},
    metrics::Metrics,
    openai::ChatRequest,
    state::AppState,
};

pub const HEADER_WINNER: &str = "x-bon-winner";
pub const HEADER_SCORES: &str = "x-bon-scores";
pub const HEADER_CACHE: &str = "x-bon-cache";
pub const HEADER_REWARD_MODEL: &str = "x-bon-reward-model";
pub const HEADER_WINNER_TOKENS: &str = "x-bon-winner-completion-tokens";
pub const HEADER_SELECTION: &str = "x-bon-selection";

/// Counts the request as in flight, and as `client_closed` if it is dropped before finishing.
struct InFlight<'a> {
    metrics: &'a Metrics,
    started: Instant,
    finished: bool,
}

impl<'a> InFlight<'a> {
    fn new(metrics: &'a Metrics) -> Self {
        metrics.inflight.inc();
        Self { metrics, started: Instant::now(), finished: false }
    }

    fn finish(&mut self, outcome: &str, cache: &str) {
        self.finished = true;
        self.metrics.requests.with_label_values(&[outcome]).inc();
        self.metrics.request_duration.with_label_values(&[cache]).observe(self.started.elapsed().as_secs_f64());
    }
}

impl Drop for InFlight<'_> {
    fn drop(&mut self) {
        self.metrics.inflight.dec();
        if !self.finished {
            // The handler future was dropped: the client went away and every upstream call was cancelled.
            self.metrics.requests.with_label_values(&["client_closed"]).inc();
        }
    }
}

/// The handler.
pub async fn chat_completions(
    State(state): State<AppState>,
    headers: HeaderMap,
    ApiJson(req): ApiJson<ChatRequest>,
) -> Response {
    let mut inflight = InFlight::new(&state.metrics);
    match handle(&state, &headers, req).await {
        Ok((response, cache)) => {
            inflight.finish("ok", cache.as_str());
            response
        }
        Err(e) => {
            inflight.finish(e.kind(), "none");
            e.into_response()
        }
    }
}

async fn handle(state: &AppState, headers: &HeaderMap, req: ChatRequest) -> Result<(Response, CacheResult), ApiError> {
    let _permit = state.admission.clone().try_acquire_owned().map_err(|_| ApiError::Overloaded)?;
    if state.shutdown.is_cancelled() {
        return Err(ApiError::NotReady("shutting down"));
    }
    let prepared = prepare(req, headers, &state.config)?;
    let caller = headers.get(header::AUTHORIZATION).and_then(|v| v.to_str().ok());
    let key = CacheKey::new(&prepared.key_body, prepared.plan.n, &state.reward_model_id, caller);
    let mode = CacheMode::from_cache_control(headers.get(header::CACHE_CONTROL).and_then(|v| v.to_str().ok()));

    let config = &state.config;
    let compute = async {
        let run = bon::run(
            state.upstream.as_ref(),
            state.scorer.as_ref(),
            &prepared.plan,
            config.candidate_timeout,
            &state.metrics,
        );
        match tokio::time::timeout(config.request_timeout, run).await {
            Ok(result) => result.map(std::sync::Arc::new),
            Err(_) => Err(ApiError::Timeout),
        }
    };
    let (outcome, cache) = state.cache.get_or_compute(key, mode, compute).await?;

    let mut response = if prepared.stream {
        sse::response(&outcome, prepared.choices, &prepared.model, prepared.include_usage)
    } else {
        Json(completion_body(&outcome, prepared.choices, &prepared.model)).into_response()
    };
    bon_headers(response.headers_mut(), &outcome, cache, &state.reward_model_id);
    Ok((response, cache))
}

/// The OpenAI `chat.completion` for an outcome: the top `choices` candidates, usage summed over all candidates.
pub fn completion_body(outcome: &Outcome, choices: u32, requested_model: &str) -> Value {
    let winner = outcome.winner().map(|(_, c)| c);
    let model = winner.map(|c| c.model.as_str()).filter(|m| !m.is_empty()).unwrap_or(requested_model);
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
        "model": model,
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

/// The first choice of each of the best `choices` candidates.
pub fn ranked_choices(outcome: &Outcome, choices: u32) -> impl Iterator<Item = &crate::openai::Choice> {
    outcome
        .ranked
        .iter()
        .take(choices as usize)
        .filter_map(|&i| outcome.candidates[i].result.as_ref().ok())
        .map(|c| &c.choices[0])
}

/// Usage of all candidates (prompt tokens counted once per candidate, as the upstream processed them).
pub fn usage_json(outcome: &Outcome) -> Value {
    let u = outcome.usage;
    json!({
        "prompt_tokens": u.prompt_tokens,
        "completion_tokens": u.completion_tokens,
        "total_tokens": u.prompt_tokens + u.completion_tokens,
    })
}

fn bon_headers(h: &mut HeaderMap, outcome: &Outcome, cache: CacheResult, reward_model: &str) {
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
    let selection = match outcome.unscored {
        None => "reward",
        Some(Unscored::SingleSurvivor) => "single",
        Some(Unscored::ScorerFailed) => "fallback",
    };
    set(HEADER_SELECTION, selection.to_owned());
}
