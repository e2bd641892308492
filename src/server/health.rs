//! Liveness (`/health`) and readiness (`/ready`).

use axum::{
    Json,
    extract::State,
    http::StatusCode,
    response::{IntoResponse, Response},
};
use serde_json::{Value, json};

use crate::{state::AppState, upstream::health::State as Health};

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
