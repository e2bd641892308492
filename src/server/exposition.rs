//! `GET /metrics`: the Prometheus exposition of the proxy's registry.

use axum::{
    extract::State,
    http::header,
    response::{IntoResponse, Response},
};

use crate::{error::ApiError, state::AppState};

/// `GET /metrics`: Prometheus text format.
pub async fn metrics(State(state): State<AppState>) -> Result<Response, ApiError> {
    let text = state.metrics.render().map_err(|e| ApiError::Internal(e.to_string()))?;
    Ok(([(header::CONTENT_TYPE, "text/plain; version=0.0.4; charset=utf-8")], text).into_response())
}
