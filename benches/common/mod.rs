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

/// Serves `app` on a free loopback port for as long as the bench runs; its base URL.
pub async fn spawn_fake(app: axum::Router) -> anyhow::Result<String> {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
    let url = format!("http://{}", listener.local_addr()?);
    #[expect(clippy::disallowed_methods, reason = "the fake upstream lives as long as the bench")]
    tokio::spawn(async move { axum::serve(listener, app).await });
    Ok(url)
}

/// bon-proxy served in-process on a free loopback port. `stop` cancels it and waits for the drain.
pub struct Proxy {
    pub state: bon_proxy::AppState,
    pub url: String,
    shutdown: tokio_util::sync::CancellationToken,
    server: tokio::task::JoinSet<std::io::Result<()>>,
}

/// Starts a proxy with these command-line flags (after the program name).
pub async fn proxy(flags: &[&str]) -> anyhow::Result<Proxy> {
    use anyhow::Context;
    use clap::Parser;

    let config = bon_proxy::config::Config::try_parse_from(std::iter::once("bon-proxy").chain(flags.iter().copied()))?;
    let state = bon_proxy::AppState::build(config, tokio_util::sync::CancellationToken::new())
        .await
        .context("build the proxy")?;
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
    let url = format!("http://{}", listener.local_addr()?);
    let shutdown = tokio_util::sync::CancellationToken::new();
    let server = tokio::task::JoinSet::from_iter([bon_proxy::serve(listener, state.clone(), shutdown.clone())]);
    Ok(Proxy { state, url, shutdown, server })
}

impl Proxy {
    pub async fn stop(self) {
        self.shutdown.cancel();
        self.server.join_all().await;
    }
}
