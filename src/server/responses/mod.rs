//! `POST /v1/responses`: the Responses API with Best-of-N. The request is translated to chat completions
//! (`translate`, which says what maps and what is refused), run exactly as a chat request is (N, strategies,
//! pruning, cache and coalescing, `x-bon-*` headers), and the winner goes back as a Response object (`object`) or as
//! the Responses event stream (`events`). A request that needs state stored by the upstream
//! (`previous_response_id`, `conversation`, a stored `prompt`, `background`) goes to the upstream's own
//! `/v1/responses` as one call instead (`x-bon-selection: passthrough`), unless `--passthrough off`.
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
    http::{HeaderMap, HeaderName, HeaderValue, Method, header},
    response::{IntoResponse, Response},
};

use super::{
    chat::{admit, answer},
    headers::{HEADER_N, HEADER_SELECTION, forwarded_auth},
    inflight::{Held, InFlight},
    passthrough::send,
    prepare::Reply,
    response::{bon_object, model_name},
};
use crate::{
    bon::{Outcome, Switch},
    cache::CacheResult,
    error::{ApiError, ApiJson},
    state::AppState,
    upstream::{ForwardBody, Head, forward::end_to_end},
};
pub use translate::{Echo, ResponsesRequest, needs_upstream_state, to_chat};

/// The handler. Errors are OpenAI-shaped (the Responses API uses the same `{"error": {...}}` body as chat).
pub async fn create(
    State(state): State<AppState>,
    headers: HeaderMap,
    body: Result<ApiJson<ResponsesRequest>, ApiError>,
) -> Response {
    // Counted as a pass-through (`bon_passthrough_requests_total`), not as a Best-of-N request.
    if let Ok(ApiJson(req)) = &body
        && needs_upstream_state(req)
        && state.config.server.passthrough == Switch::On
    {
        return stateful(&state, &headers, req).await;
    }
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
    let reward_model = &state.reward_model_id;
    let stream_echo = echo.clone();
    let frames = |reply: Reply| {
        let Reply { model, logprobs, return_candidates, .. } = reply;
        events::ResponseEvents::new(stream_echo, model, logprobs, return_candidates, reward_model)
    };
    let whole = |outcome: &Outcome, cache: CacheResult, reply: Reply| {
        let bon = reply.return_candidates.then(|| bon_object(outcome, cache, reward_model, true));
        let ids = object::Ids::fresh();
        let frame = object::Frame {
            ids: &ids,
            echo: &echo,
            model: model_name(outcome, &reply.model),
            created: outcome.created,
            logprobs: reply.logprobs,
        };
        Json(frame.finished(outcome, bon)).into_response()
    };
    answer(&state, &headers, Held { inflight, permit }, prepared, frames, whole).await
}

/// A request that needs the upstream's stored state, passed through to its own `/v1/responses` as one call (no
/// Best-of-N: the state lives with the upstream), the answer relayed as it comes; `x-bon-n: 1` and
/// `x-bon-selection: passthrough` say so.
async fn stateful(state: &AppState, headers: &HeaderMap, req: &ResponsesRequest) -> Response {
    let started = std::time::Instant::now();
    let body = match serde_json::to_vec(req) {
        Ok(body) => body,
        Err(e) => return ApiError::Internal(e.to_string()).into_response(),
    };
    let mut sent = end_to_end(headers, true);
    sent.remove(header::CONTENT_LENGTH);
    let head = Head {
        method: Method::POST,
        path_and_query: "/v1/responses".to_owned(),
        headers: sent,
        auth: forwarded_auth(headers, &state.config),
    };
    let mut response = send(state, "/v1/responses", head, ForwardBody::Whole(body.into()), started).await;
    let h = response.headers_mut();
    h.insert(HeaderName::from_static(HEADER_N), HeaderValue::from(1));
    h.insert(HeaderName::from_static(HEADER_SELECTION), HeaderValue::from_static("passthrough"));
    response
}
