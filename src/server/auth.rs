//! Proxy API keys: `Authorization: Bearer KEY` on the OpenAI routes when keys are configured.
//!
//! The key set itself is `crate::keys`. A rejected key is never echoed, logged or counted by value.

use axum::{
    extract::{Request, State},
    http::header,
    middleware::Next,
    response::{IntoResponse, Response},
};

use crate::{error::ApiError, state::AppState};

/// Middleware: 401 unless the request carries an accepted key (or no keys are configured).
pub async fn require_key(State(state): State<AppState>, req: Request, next: Next) -> Response {
    if state.keys.is_open() {
        return next.run(req).await;
    }
    let presented = req
        .headers()
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "))
        .map(str::trim);
    match presented {
        None => ApiError::Unauthorized("missing API key: send `Authorization: Bearer <key>`").into_response(),
        Some(key) if state.keys.accepts(key) => next.run(req).await,
        Some(_) => ApiError::Unauthorized("incorrect API key").into_response(),
    }
}
