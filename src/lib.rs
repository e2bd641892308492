//! bon-proxy: an OpenAI-compatible Best-of-N proxy.
//!
//! Each chat completion is sent N times concurrently to an OpenAI-compatible upstream, every candidate is scored by
//! a reward model through ONNX Runtime, and only the winner is returned.

pub mod bon;
pub mod cache;
pub mod config;
pub mod error;
#[cfg(feature = "eval")]
pub mod eval;
pub mod keys;
pub mod metrics;
pub mod openai;
pub mod reference;
pub mod reward;
pub mod select;
pub mod server;
pub mod state;
pub mod upstream;

pub use server::{router, serve};
pub use state::AppState;

/// Resolves on SIGINT or SIGTERM.
pub async fn shutdown_signal() {
    let ctrl_c = async {
        if tokio::signal::ctrl_c().await.is_err() {
            std::future::pending::<()>().await;
        }
    };
    #[cfg(unix)]
    let term = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut s) => {
                s.recv().await;
            }
            Err(_) => std::future::pending::<()>().await,
        }
    };
    #[cfg(not(unix))]
    let term = std::future::pending::<()>();
    tokio::select! {
        () = ctrl_c => {},
        () = term => {},
    }
}
