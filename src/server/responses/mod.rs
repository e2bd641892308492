//! `POST /v1/responses`: the Responses API with Best-of-N. The request is translated to chat completions
//! (`translate`, which says what maps and what is refused), run exactly as a chat request is (N, strategies,
//! pruning, cache and coalescing, `x-bon-*` headers), and the winner goes back as a Response object (`object`) or as
//! the Responses event stream (`events`).
//!
//! Every upstream gets the chat translation, even one that serves `/v1/responses` itself: the candidates then come
//! back in one shape every strategy reads (text, tool calls, token log-probabilities for the confidence
//! strategies), and the stream the client gets is the proxy's own, valid for the SDKs' stream helpers whatever the
//! upstream's looks like.

mod events;
mod object;
#[cfg(test)]
mod tests;
mod translate;

use super::{
    chat::{admit, answer},
    inflight::{Held, InFlight},
    prepare::Reply,
    response::bon_object,
};
use crate::{
    bon::Outcome,
    cache::CacheResult,
    error::{ApiError, ApiJson},
    state::AppState,
};
use axum::{
    Json,
    extract::State,
    http::HeaderMap,
    response::{IntoResponse, Response},
};
pub use translate::{Echo, ResponsesRequest, to_chat};

/// The handler. Errors are OpenAI-shaped (the Responses API uses the same `{"error": {...}}` body as chat).
pub async fn create(
    State(state): State<AppState>,
    headers: HeaderMap,
    body: Result<ApiJson<ResponsesRequest>, ApiError>,
) -> Response {
    let mut inflight = InFlight::new(state.metrics.clone());
    let admitted = body.and_then(|ApiJson(req)| {
        let (chat, echo) = to_chat(req)?;
        Ok((admit(&state, &headers, chat)?, echo))
    });
    let ((permit, prepared), echo) = match admitted {
        Ok(ready) => ready,
        Err(e) => {
            inflight.finish(Err(&e));
            return e.into_response();
        }
    };
    let reward_model = state.reward_model_id.clone();
    let stream_echo = echo.clone();
    let frames = |reply: Reply| {
        let Reply { model, logprobs, return_candidates, .. } = reply;
        events::ResponseEvents::new(stream_echo, model, logprobs, return_candidates, &reward_model)
    };
    let whole = |outcome: &Outcome, cache: CacheResult, reply: Reply| {
        let bon = reply.return_candidates.then(|| bon_object(outcome, cache, &reward_model, true));
        let ids = object::Ids::fresh();
        let frame = object::Frame {
            ids: &ids,
            echo: &echo,
            model: object::model(outcome, &reply.model),
            created: outcome.created,
            logprobs: reply.logprobs,
        };
        Json(frame.finished(outcome, bon)).into_response()
    };
    answer(state.clone(), &headers, Held { inflight, permit }, prepared, frames, whole).await
}
