//! `GET /v1/models`: a healthy upstream's model list, passed through.

use axum::{Json, extract::State, http::HeaderMap};
use serde_json::Value;

use crate::{error::ApiError, state::AppState, upstream::Upstream};

/// `GET /v1/models`: a healthy upstream's list, passed through.
pub async fn models(State(state): State<AppState>, headers: HeaderMap) -> Result<Json<Value>, ApiError> {
    let auth = super::headers::forwarded_auth(&headers, &state.config);
    Ok(Json(state.upstream.models(auth).await?))
}
