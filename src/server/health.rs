//! Liveness, readiness, metrics and the `/v1/models` pass-through.

use axum::{
    Json,
    extract::State,
    http::{HeaderMap, StatusCode, header},
    response::{IntoResponse, Response},
};
use serde_json::{Value, json};

use crate::{
    error::ApiError,
    state::AppState,
    upstream::{Upstream, health::State as Health},
};

/// `GET /health`: the process is up.
pub async fn health() -> Json<Value> {
    Json(json!({"status": "ok"}))
}

/// `GET /ready`: 200 when the reward model is loaded and its scoring thread is up (not restarting after a panic), at
/// least one upstream gets traffic (up, or not answered a probe yet) and the server is not draining; otherwise 503
/// saying which. Lists every upstream's state. Reads state only: the upstreams are probed in the background (see
/// `upstream::health` for what marks one down), so it answers at once whatever they do.
pub async fn ready(State(state): State<AppState>) -> Response {
    if state.shutdown.is_cancelled() {
        return (StatusCode::SERVICE_UNAVAILABLE, Json(json!({"status": "shutting_down"}))).into_response();
    }
    let loaded = state.metrics.model_loaded.get() == 1;
    let upstreams = state.upstream.status();
    let up = upstreams.iter().any(|u| u.state != Health::Down);
    let (status, word) = match (loaded, state.scorer.ready(), up) {
        (true, true, true) => (StatusCode::OK, "ready"),
        (false, _, _) => (StatusCode::SERVICE_UNAVAILABLE, "loading"),
        (true, false, _) => (StatusCode::SERVICE_UNAVAILABLE, "reward_model_down"),
        (true, true, false) => (StatusCode::SERVICE_UNAVAILABLE, "upstream_down"),
    };
    let body = json!({"status": word, "reward_model": state.reward_model_id, "upstreams": upstreams});
    (status, Json(body)).into_response()
}

/// `GET /metrics`: Prometheus text format.
pub async fn metrics(State(state): State<AppState>) -> Result<Response, ApiError> {
    let text = state.metrics.render().map_err(|e| ApiError::Internal(e.to_string()))?;
    Ok(([(header::CONTENT_TYPE, "text/plain; version=0.0.4; charset=utf-8")], text).into_response())
}

/// `GET /v1/models`: a healthy upstream's list, passed through.
pub async fn models(State(state): State<AppState>, headers: HeaderMap) -> Result<Json<Value>, ApiError> {
    let auth = super::headers::forwarded_auth(&headers, &state.config);
    Ok(Json(state.upstream.models(auth).await?))
}
