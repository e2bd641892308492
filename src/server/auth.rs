//! Proxy API keys: `Authorization: Bearer KEY` on the OpenAI routes when keys are configured.
//!
//! Only blake3 digests of the keys are kept; the comparison of digests is constant-time. A rejected key is never
//! echoed, logged or counted by value.

use axum::{
    extract::{Request, State},
    http::header,
    middleware::Next,
    response::{IntoResponse, Response},
};

use crate::{error::ApiError, state::AppState};

/// Digests of the accepted keys.
#[derive(Default)]
pub struct Keys(Vec<blake3::Hash>);

impl Keys {
    pub fn new(keys: &[String]) -> Self {
        Self(keys.iter().map(|k| blake3::hash(k.as_bytes())).collect())
    }

    pub fn is_open(&self) -> bool {
        self.0.is_empty()
    }

    fn accepts(&self, presented: &str) -> bool {
        let digest = blake3::hash(presented.as_bytes());
        // blake3::Hash's == is constant-time; check every key so timing does not reveal which matched.
        self.0.iter().fold(false, |found, k| found | (*k == digest))
    }
}

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
