//! The default reward model (models/default, assembled by scripts/setup from PyPI wheels and the trained head):
//! it loads when no --reward-model is given and, through bon-proxy's own encoding and ONNX path, reproduces the
//! scores Python computed on held-out preference pairs (models/assembly/default_reference.py). The same for the deep model
//! (models/default-deep, `--reward-model models/default-deep`), the default before it.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic, reason = "tests fail loudly")]

mod common;

use std::sync::Arc;

use bon_proxy::{
    config::Config,
    metrics::Metrics,
    openai::Message,
    reward::{Encoder, ModelDir, RewardOptions, Score, ScoreInput, Scorer},
};
use clap::Parser;
use serde_json::{Value, json};

fn reference(name: &str) -> Value {
    let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("models/assembly").join(name);
    serde_json::from_str(&std::fs::read_to_string(path).unwrap()).unwrap()
}

fn pair(prompt: &Value, response: &Value) -> ScoreInput {
    let user: Message = serde_json::from_value(json!({"role": "user", "content": prompt})).unwrap();
    let response = serde_json::from_value(json!({"role": "assistant", "content": response})).unwrap();
    ScoreInput { conversation: Arc::from(vec![user]), tools: None, response }
}

#[tokio::test]
async fn the_default_model_is_used_without_reward_model_and_matches_python() {
    let config = Config::try_parse_from(["bon-proxy", "--device", "cpu"]).unwrap();
    let dir = config.reward_model_spec().expect("scripts/setup assembles models/default");
    let reference = reference("default_reference.json");
    assert_eq!(reference["model_id"], "bon-default-minilm-fast-v2");
    matches_python(dir, &reference, 512).await;
}

#[tokio::test]
async fn the_deep_model_matches_python() {
    let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("models/default-deep");
    let reference = reference("deep_reference.json");
    assert_eq!(reference["model_id"], "bon-default-minilm-mlp-v2");
    matches_python(dir, &reference, 256).await;
}

/// `window`: the model's `model_max_length`, which bon-proxy must read from tokenizer_config.json.
async fn matches_python(dir: std::path::PathBuf, reference: &Value, window: usize) {
    let cases = reference["cases"].as_array().unwrap();

    let files = ModelDir::load(&dir).unwrap();
    assert!(files.template.is_none(), "an encoder model: scored on (prompt, response) pairs");
    let encoder = Encoder::new(files.tokenizer, None, window).unwrap();
    for c in cases {
        let ids: Vec<i64> = serde_json::from_value(c["chosen_input_ids"].clone()).unwrap();
        assert_eq!(encoder.encode(&pair(&c["prompt"], &c["chosen"])).unwrap().ids, ids);
    }

    let opts = RewardOptions { device: bon_proxy::reward::Device::Cpu, ..RewardOptions::new(dir) };
    let scorer = Scorer::load(&opts, Arc::new(Metrics::new().unwrap())).unwrap();
    assert_eq!(scorer.id(), reference["model_id"].as_str().unwrap());
    assert_eq!(scorer.max_tokens(), window, "model_max_length from tokenizer_config.json");
    // Chosen and rejected of every pair in one padded batch.
    let inputs: Vec<ScoreInput> =
        cases.iter().flat_map(|c| [pair(&c["prompt"], &c["chosen"]), pair(&c["prompt"], &c["rejected"])]).collect();
    let scores = scorer.score(inputs).await.unwrap();
    let mut wins = 0;
    for (c, s) in cases.iter().zip(scores.chunks(2)) {
        let (chosen, rejected) =
            (c["chosen_score"].as_f64().unwrap() as f32, c["rejected_score"].as_f64().unwrap() as f32);
        assert!((s[0] - chosen).abs() < 1e-4 && (s[1] - rejected).abs() < 1e-4, "{s:?} vs {chosen} {rejected}");
        wins += usize::from(s[0] > s[1]);
    }
    assert_eq!(wins, reference["chosen_wins"].as_u64().unwrap() as usize);

    // A model with a prefix head: the prefix output on each answer's first 32 words, in one padded batch.
    if cases[0].get("chosen_prefix_score").is_none() {
        assert!(scorer.calibration().is_none(), "reference.json lacks the prefix scores of a prefix-declaring model");
        return;
    }
    assert!(scorer.calibration().is_some(), "a prefix head ships with its calibration");
    let inputs: Vec<ScoreInput> = cases
        .iter()
        .flat_map(|c| [pair(&c["prompt"], &c["chosen_prefix"]), pair(&c["prompt"], &c["rejected_prefix"])])
        .collect();
    let scores = scorer.score_partial(inputs).await.unwrap();
    for (c, s) in cases.iter().zip(scores.chunks(2)) {
        let want =
            [c["chosen_prefix_score"].as_f64().unwrap() as f32, c["rejected_prefix_score"].as_f64().unwrap() as f32];
        assert!((s[0] - want[0]).abs() < 1e-4 && (s[1] - want[1]).abs() < 1e-4, "prefix {s:?} vs {want:?}");
    }
}
