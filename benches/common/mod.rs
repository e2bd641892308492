//! Helpers every bench binary shares: settings from the environment, units, printing.

#![allow(dead_code, reason = "each bench binary uses a different part")]

use std::time::Duration;

/// `name` from the environment, parsed, else `default`.
pub fn env<T: std::str::FromStr>(name: &str, default: T) -> T {
    std::env::var(name).ok().and_then(|v| v.parse().ok()).unwrap_or(default)
}

pub fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1000.0
}

pub fn ratio(a: Duration, b: Duration) -> f64 {
    a.as_secs_f64() / b.as_secs_f64().max(1e-9)
}

/// One line of the bench's report on stdout.
pub fn say(line: &str) {
    use std::io::Write;
    let _ = writeln!(std::io::stdout(), "{line}");
}

/// A fake OpenAI-compatible upstream that serves `slots` chat completions at a time, each after `delay`; more wait
/// their turn (`tokio::sync::Semaphore::MAX_PERMITS`: no limit). Its answer names the request's seed.
pub fn fake_upstream(slots: usize, delay: Duration) -> axum::Router {
    use std::sync::Arc;

    use axum::{Json, routing::post};
    use serde_json::{Value, json};

    let capacity = Arc::new(tokio::sync::Semaphore::new(slots));
    axum::Router::new().route(
        "/v1/chat/completions",
        post(move |Json(b): Json<Value>| {
            let capacity = capacity.clone();
            async move {
                let _slot = capacity.acquire().await;
                tokio::time::sleep(delay).await;
                Json(json!({"id": "x", "object": "chat.completion", "created": 1, "model": "fake",
                    "choices": [{"index": 0, "message": {"role": "assistant",
                        "content": format!("Rayleigh scattering, seed {}.", b["seed"])}, "finish_reason": "stop"}],
                    "usage": {"prompt_tokens": 10, "completion_tokens": 8, "total_tokens": 18}}))
            }
        }),
    )
}
