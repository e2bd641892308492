//! Scores a fixture's reference conversations on a device and prints one JSON line per conversation; used by
//! scripts/gpu-check to compare the CUDA execution provider with the CPU.
//!
//!     cargo run --release --example score_fixture -- models/fixtures/tiny-qwen3-chatml cuda

use std::sync::Arc;

use anyhow::{Context, bail};
use bon_proxy::{
    metrics::Metrics,
    openai::Message,
    reward::Device,
    reward::{RewardOptions, Score, ScoreInput, Scorer},
};
use serde_json::{Value, json};

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let args: Vec<String> = std::env::args().collect();
    let [_, dir, device] = args.as_slice() else { bail!("usage: score_fixture MODEL_DIR cpu|cuda") };
    let device = match device.as_str() {
        "cpu" => Device::Cpu,
        "cuda" => Device::Cuda,
        other => bail!("device {other}: cpu or cuda"),
    };
    let reference: Value = serde_json::from_str(&std::fs::read_to_string(format!("{dir}/reference.json"))?)?;
    let cases = reference["cases"].as_array().context("reference.json has no cases")?;
    let opts = RewardOptions { device, ..RewardOptions::new(dir) };
    let scorer = Scorer::load(&opts, Arc::new(Metrics::new()?))?;
    let inputs = cases
        .iter()
        .filter(|c| c.get("max_tokens").is_none())
        .map(|c| {
            let conversation: Vec<Message> = serde_json::from_value(c["messages"].clone())?;
            let response = serde_json::from_value(json!({"role": "assistant", "content": c["response"]}))?;
            Ok(ScoreInput { conversation: Arc::from(conversation), tools: None, response })
        })
        .collect::<anyhow::Result<Vec<_>>>()?;
    let scores = scorer.score(inputs).await?;
    let line = json!({"provider": scorer.provider(), "scores": scores});
    std::io::Write::write_all(&mut std::io::stdout(), format!("{line}\n").as_bytes())?;
    Ok(())
}
