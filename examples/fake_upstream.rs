//! A fast fake OpenAI-compatible upstream for load tests and benchmarks: answers every chat completion after a fixed
//! delay with a text that depends on the seed, so candidates differ.
//!
//!     cargo run --release --example fake_upstream -- 127.0.0.1:18000 20ms

use std::time::Duration;

use anyhow::Context;
use axum::{Json, Router, extract::State, routing::post};
use serde_json::{Value, json};

const ANSWERS: [&str; 4] = [
    "The capital of France is Paris.",
    "Paris is the capital and largest city of France, on the Seine.",
    "I think it might be Lyon, or maybe Marseille.",
    "France? Its capital is Paris, of course!",
];

async fn chat(State(delay): State<Duration>, Json(body): Json<Value>) -> Json<Value> {
    tokio::time::sleep(delay).await;
    let seed = body["seed"].as_i64().unwrap_or(0);
    let text = ANSWERS[seed.rem_euclid(ANSWERS.len() as i64) as usize];
    Json(json!({
        "id": "chatcmpl-fake", "object": "chat.completion", "created": 1, "model": body["model"],
        "choices": [{"index": 0, "message": {"role": "assistant", "content": text}, "finish_reason": "stop"}],
        "usage": {"prompt_tokens": 12, "completion_tokens": 10, "total_tokens": 22}
    }))
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let args: Vec<String> = std::env::args().collect();
    let addr = args.get(1).map_or("127.0.0.1:18000", String::as_str);
    let delay = humantime::parse_duration(args.get(2).map_or("20ms", String::as_str)).context("delay")?;
    let app = Router::new()
        .route("/v1/chat/completions", post(chat))
        .route("/v1/models", axum::routing::get(|| async { Json(json!({"object": "list", "data": []})) }))
        .with_state(delay);
    let listener = tokio::net::TcpListener::bind(addr).await?;
    axum::serve(listener, app).await?;
    Ok(())
}
