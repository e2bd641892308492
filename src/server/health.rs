//! Liveness, readiness, metrics and the `/v1/models` pass-through.

use axum::{
    Json,
    extract::State,
    http::{HeaderMap, StatusCode, header},
    response::{IntoResponse, Response},
};
use serde_json::{Value, json};

use crate::{error::ApiError, state::AppState};

/// `GET /health`: the process is up.
pub async fn health() -> Json<Value> {
    Json(json!({"status": "ok"}))
}

/// `GET /ready`: the reward model is loaded (it is, once the state exists) and the server is not draining.
pub async fn ready(State(state): State<AppState>) -> Response {
    if state.shutdown.is_cancelled() {
        return (StatusCode::SERVICE_UNAVAILABLE, Json(json!({"status": "shutting_down"}))).into_response();
    }
    let loaded = state.metrics.model_loaded.get() == 1;
    let status = if loaded { StatusCode::OK } else { StatusCode::SERVICE_UNAVAILABLE };
    (status, Json(json!({"status": if loaded { "ready" } else { "loading" }, "reward_model": state.reward_model_id})))
        .into_response()
}

/// `GET /metrics`: Prometheus text format.
pub async fn metrics(State(state): State<AppState>) -> Result<Response, ApiError> {
    let text = state.metrics.render().map_err(|e| ApiError::Internal(e.to_string()))?;
    Ok(([(header::CONTENT_TYPE, "text/plain; version=0.0.4; charset=utf-8")], text).into_response())
}

/// `GET /v1/models`: the upstream's list, passed through.
pub async fn models(State(state): State<AppState>, headers: HeaderMap) -> Result<Json<Value>, ApiError> {
    let auth = super::prepare::forwarded_auth(&headers, &state.config);
    Ok(Json(state.upstream.models(auth).await?))
}
