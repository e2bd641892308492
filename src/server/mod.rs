//! HTTP layer: the route table and `serve`.

pub mod auth;
pub mod chat;
pub mod chunks;
mod exposition;
pub mod headers;
mod health;
mod inflight;
mod models;
mod passthrough;
pub mod prepare;
pub mod response;
pub mod responses;
pub mod sse;

use std::time::Duration;

use axum::{
    Router,
    extract::{DefaultBodyLimit, Request},
    routing::{any, get, post},
};
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;
use tower_http::trace::TraceLayer;

use crate::{error::ApiError, state::AppState};

/// The route table and layer stack.
pub fn router(state: AppState) -> Router {
    let openai = Router::new()
        .route("/v1/chat/completions", post(chat::chat_completions))
        .route("/v1/responses", post(responses::create))
        .route("/v1/models", get(models::models))
        .route("/v1/{*path}", any(passthrough::pass))
        .route_layer(axum::middleware::from_fn_with_state(state.clone(), auth::require_key));
    Router::new()
        .merge(openai)
        .route("/health", get(health::health))
        .route("/ready", get(health::ready))
        .route("/metrics", get(exposition::metrics))
        .fallback(not_found)
        .method_not_allowed_fallback(method_not_allowed)
        .layer(DefaultBodyLimit::max(state.config.server.max_body_bytes))
        .layer(TraceLayer::new_for_http())
        .with_state(state)
}

async fn not_found(req: Request) -> ApiError {
    ApiError::NotFound { method: req.method().to_string(), path: req.uri().path().chars().take(200).collect() }
}

async fn method_not_allowed() -> ApiError {
    ApiError::MethodNotAllowed
}

/// Serves `state` on `listener` until `shutdown` is cancelled, then drains in-flight requests for at most
/// `--shutdown-grace`. Probes the upstreams meanwhile.
pub async fn serve(listener: TcpListener, state: AppState, shutdown: CancellationToken) -> std::io::Result<()> {
    let grace: Duration = state.config.server.shutdown_grace;
    let pool = state.upstream.clone();
    let server = axum::serve(listener, router(state)).with_graceful_shutdown(shutdown.clone().cancelled_owned());
    let server = std::future::IntoFuture::into_future(server);
    // The upstreams' prober runs as long as the server does (drain included), inside this future: no detached task.
    let server = async move {
        tokio::select! {
            result = server => result,
            () = pool.watch() => Ok(()),
        }
    };
    tokio::pin!(server);
    tokio::select! {
        result = &mut server => return result,
        () = shutdown.cancelled() => {}
    }
    tracing::info!(?grace, "shutting down: draining in-flight requests");
    match tokio::time::timeout(grace, server).await {
        Ok(result) => result,
        Err(_) => {
            tracing::warn!(?grace, "grace period over; closing remaining connections");
            Ok(())
        }
    }
}
