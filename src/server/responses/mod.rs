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

use axum::{
    Json,
    extract::State,
    http::HeaderMap,
    response::{IntoResponse, Response},
};
use tokio::sync::mpsc;

use super::{
    chat::{admit, best_of_n},
    inflight::{Held, InFlight},
    prepare::Prepared,
    response::{bon_headers, bon_object},
    sse,
};
use crate::{
    error::{ApiError, ApiJson},
    state::AppState,
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
    let ((permit, Prepared { plan, key_extra, reply }), echo) = match admitted {
        Ok(ready) => ready,
        Err(e) => {
            inflight.finish(Err(&e));
            return e.into_response();
        }
    };
    if reply.stream {
        let (live, updates) = if plan.prune.is_some() {
            let (tx, rx) = mpsc::unbounded_channel();
            (Some(tx), Some(rx))
        } else {
            (None, None)
        };
        let n = plan.n;
        let frames = events::ResponseEvents::new(
            echo,
            reply.model.clone(),
            reply.logprobs,
            reply.return_candidates,
            &state.reward_model_id,
        );
        let work = best_of_n(state.clone(), &headers, plan, &key_extra, &reply.model, live);
        return sse::respond(work, updates, Held { inflight, permit }, frames, n, state).await;
    }
    let work = best_of_n(state.clone(), &headers, plan, &key_extra, &reply.model, None);
    let result = work.await;
    inflight.finish(result.as_ref().map(|(_, cache)| *cache));
    drop(permit);
    match result {
        Ok((outcome, cache)) => {
            let bon = reply.return_candidates.then(|| bon_object(&outcome, cache, &state.reward_model_id, true));
            let ids = object::Ids::fresh();
            let frame = object::Frame {
                ids: &ids,
                echo: &echo,
                model: object::model(&outcome, &reply.model),
                created: outcome.created,
                logprobs: reply.logprobs,
            };
            let mut response = Json(frame.finished(&outcome, bon)).into_response();
            bon_headers(response.headers_mut(), &outcome, cache, &state.reward_model_id);
            response
        }
        Err(e) => e.into_response(),
    }
}
