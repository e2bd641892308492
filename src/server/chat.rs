//! `POST /v1/chat/completions`: admission, preparation, cache, Best-of-N, and the response (JSON or SSE).

use std::{future::Future, sync::Arc};

use axum::{
    Json,
    extract::State,
    http::{HeaderMap, header},
    response::{IntoResponse, Response},
};
use serde_json::{Map, Value};
use tokio::sync::{OwnedSemaphorePermit, mpsc};

use super::{
    chunks,
    inflight::{Finished, Held, InFlight},
    prepare::{Prepared, Reply, prepare},
    response::{CompletionBody, bon_headers, bon_object},
    sse::{self, Frames},
};
use crate::{
    bon::{self, LiveTx, Outcome, Plan},
    cache::{CacheKey, CacheMode, CacheResult},
    error::{ApiError, ApiJson},
    openai::ChatRequest,
    select::{Judge, Selector},
    state::AppState,
};

/// The handler. A body that is not a chat request (bad JSON, wrong types, too large) is answered here, not by the
/// extractor, so that it is counted in `bon_requests_total` like every other refusal.
pub async fn chat_completions(
    State(state): State<AppState>,
    headers: HeaderMap,
    body: Result<ApiJson<ChatRequest>, ApiError>,
) -> Response {
    let mut inflight = InFlight::new(state.metrics.clone());
    let (permit, prepared) = match body.and_then(|ApiJson(req)| admit(&state, &headers, req)) {
        Ok(ready) => ready,
        Err(e) => {
            inflight.finish(Err(&e));
            return e.into_response();
        }
    };
    let frames = |reply: Reply| chunks::Shape::new(reply, &state.reward_model_id);
    let whole = |outcome: &Outcome, cache: CacheResult, reply: Reply| {
        let bon = reply.return_candidates.then(|| bon_object(outcome, cache, &state.reward_model_id, true));
        Json(CompletionBody::new(outcome, reply.choices, &reply.model, reply.logprobs, bon)).into_response()
    };
    answer(&state, &headers, Held { inflight, permit }, prepared, frames, whole).await
}

/// Runs a prepared Best-of-N call and answers it: as an event stream written by `frames` when the client asked for
/// one, else with the body `whole` makes, `x-bon-*` headers added. Counts the request when it finishes.
pub(super) async fn answer<F: Frames>(
    state: &AppState,
    headers: &HeaderMap,
    mut held: Held,
    prepared: Prepared,
    frames: impl FnOnce(Reply) -> F,
    whole: impl FnOnce(&Outcome, CacheResult, Reply) -> Response,
) -> Response {
    let Prepared { plan, key_extra, reply } = prepared;
    if reply.stream {
        // With pruning and one choice, the last candidate standing is streamed while it generates.
        let (live, updates) = if plan.prune.is_some() && reply.choices == 1 {
            let (tx, rx) = mpsc::unbounded_channel();
            (Some(tx), Some(rx))
        } else {
            (None, None)
        };
        let n = plan.n;
        let work = best_of_n(state.clone(), headers, plan, &key_extra, &reply.model, live);
        return sse::respond(work, updates, held, frames(reply), n, state.clone()).await;
    }
    let result = best_of_n(state.clone(), headers, plan, &key_extra, &reply.model, None).await;
    held.inflight.finish(result.as_ref().map(|(_, cache)| *cache));
    drop(held);
    match result {
        Ok((outcome, cache)) => {
            let mut response = whole(&outcome, cache, reply);
            bon_headers(response.headers_mut(), &outcome, cache, &state.reward_model_id);
            response
        }
        Err(e) => e.into_response(),
    }
}

pub(super) fn admit(
    state: &AppState,
    headers: &HeaderMap,
    req: ChatRequest,
) -> Result<(OwnedSemaphorePermit, Prepared), ApiError> {
    let permit = state.admission.clone().try_acquire_owned().map_err(|_| ApiError::Overloaded)?;
    let prepared = prepare(req, headers, &state.config)?;
    if prepared.plan.prune.is_some_and(|p| p.confidence.is_some()) && state.scorer.calibration().is_none() {
        return Err(ApiError::invalid(
            format!(
                "bon.prune_confidence needs a reward model with a prefix calibration (config.json \
                 bon_prefix_calibration), and {} has none",
                state.reward_model_id
            ),
            "bon.prune_confidence".to_owned(),
        ));
    }
    Ok((permit, prepared))
}

/// The cached-or-computed Best-of-N result for `plan` (moved in; `key_extra` and `model` are the rest of what
/// identifies it and the client's model). Owns what it needs, so a stream can carry it; dropping it cancels
/// every upstream call. `live` gets the last candidate standing while it generates (not when the result comes from
/// the cache or from an identical request already in flight: those arrive whole).
pub(super) fn best_of_n(
    state: AppState,
    headers: &HeaderMap,
    plan: Plan,
    key_extra: &Map<String, Value>,
    model: &str,
    live: Option<LiveTx>,
) -> impl Future<Output = Finished> + Send + 'static {
    let caller = headers.get(header::AUTHORIZATION).and_then(|v| v.to_str().ok());
    // Hashing the body costs ~1 % of an N = 1 request: only when there is a cache to look in.
    let key = state
        .cache
        .is_enabled()
        .then(|| CacheKey::new(&[&plan.body, key_extra], plan.n, &state.reward_model_id, caller));
    let mode = CacheMode::from_cache_control(headers.get(header::CACHE_CONTROL).and_then(|v| v.to_str().ok()));
    let model = model.to_owned();
    async move {
        let config = &state.config;
        let compute = async {
            let generation = bon::Generation {
                upstream: state.upstream.as_ref(),
                mode: config.upstream.n,
                candidate_timeout: config.bon.candidate_timeout,
                metrics: &state.metrics,
                confidence: &state.confidence,
            };
            let judge = plan.select.strategy.judges().then(|| Judge {
                upstream: state.judge_upstream.clone(),
                model: config.select.judge_model.clone().unwrap_or_else(|| model.clone()),
                // A separate judge has its own key (--judge-api-key); the client's token goes only upstream.
                auth: config.select.judge_upstream.is_none().then(|| plan.upstream_auth.clone()).flatten(),
            });
            let selector = Selector {
                scorer: state.scorer.as_ref(),
                judge: judge.as_ref(),
                judge_timeout: config.select.judge_timeout,
            };
            let run = bon::run(&generation, &selector, &plan, live.as_ref());
            match tokio::time::timeout(config.server.request_timeout, run).await {
                Ok(result) => result.map(Arc::new),
                Err(_) => Err(ApiError::Timeout),
            }
        };
        state.cache.get_or_compute(key, mode, compute).await
    }
}
