//! The real reward-model fixtures through ONNX Runtime against what `transformers` computed (models/fixtures/make_fixtures.py):
//! same rendered text, same input ids, scores within 1e-4, alone and right-padded in one batch.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic, reason = "tests fail loudly")]

mod common;

use std::{path::Path, sync::Arc};

use bon_proxy::{
    metrics::Metrics,
    openai::Message,
    reward::{Arena, Device, Encoder, ModelDir, RewardError, RewardOptions, Score, ScoreInput, Scorer},
};
use common::{fixture, reference};
use serde_json::{Value, json};

const TOLERANCE: f32 = 1e-4;
const MODELS: [&str; 4] = ["tiny-qwen3-chatml", "tiny-bert-pair", "tiny-qwen3-export", "tiny-llama-3.1-export"];

fn input(case: &Value) -> ScoreInput {
    let messages: Vec<Message> = serde_json::from_value(case["messages"].clone()).unwrap();
    let response: Message =
        serde_json::from_value(json!({"role": "assistant", "content": case["response"].clone()})).unwrap();
    ScoreInput { conversation: Arc::from(messages), tools: None, response }
}

fn max_tokens(case: &Value) -> usize {
    case["max_tokens"].as_u64().map_or(4096, |n| n as usize)
}

fn scorer(dir: &Path, max_tokens: usize) -> Scorer {
    let opts = RewardOptions { id: Some("test".into()), device: Device::Cpu, max_tokens, ..RewardOptions::new(dir) };
    Scorer::load(&opts, Arc::new(Metrics::new().unwrap())).unwrap()
}

#[test]
fn rendered_text_and_input_ids_match_transformers() {
    for model in MODELS {
        for case in reference(model) {
            let files = ModelDir::load(&fixture(model)).unwrap();
            let encoder = Encoder::new(files.tokenizer, files.template, max_tokens(&case)).unwrap();
            let name = case["name"].as_str().unwrap();
            if let Some(text) = case["text"].as_str() {
                assert_eq!(encoder.render(&input(&case)).unwrap().as_deref(), Some(text), "{model}/{name}");
            }
            let ids: Vec<i64> = serde_json::from_value(case["input_ids"].clone()).unwrap();
            assert_eq!(encoder.encode(&input(&case)).unwrap().ids, ids, "{model}/{name}");
        }
    }
}

#[tokio::test]
async fn scores_match_transformers_one_by_one() {
    for model in MODELS {
        for case in reference(model) {
            let s = scorer(&fixture(model), max_tokens(&case));
            let got = s.score(vec![input(&case)]).await.unwrap();
            let want = case["score"].as_f64().unwrap() as f32;
            assert!((got[0] - want).abs() < TOLERANCE, "{model}/{}: {} vs {want}", case["name"], got[0]);
        }
    }
}

/// Scores every case of `model` that fits in one call through a scorer loaded with `opts`, `calls` times, and
/// checks each score against transformers' (`label` names the setting in a failure).
async fn one_call_matches_reference(model: &str, opts: RewardOptions, calls: usize, label: &str) {
    let cases: Vec<Value> = reference(model).into_iter().filter(|c| c.get("max_tokens").is_none()).collect();
    let s = Scorer::load(&RewardOptions { device: Device::Cpu, ..opts }, Arc::new(Metrics::new().unwrap())).unwrap();
    for _ in 0..calls {
        let got = s.score(cases.iter().map(input).collect()).await.unwrap();
        for (case, g) in cases.iter().zip(got) {
            let want = case["score"].as_f64().unwrap() as f32;
            assert!((g - want).abs() < TOLERANCE, "{model}/{} {label}: {g} vs {want}", case["name"]);
        }
    }
}

/// One call of mixed lengths: one padded run (`max_padding` 1), length buckets (0.2, the default), or one run per
/// length (0): every score lands back on its own candidate.
#[tokio::test]
async fn scores_match_transformers_in_one_padded_batch_bucketed_or_not() {
    for model in MODELS {
        for max_padding in [1.0, 0.2, 0.0] {
            let opts = RewardOptions { max_padding, ..RewardOptions::new(fixture(model)) };
            one_call_matches_reference(model, opts, 1, &format!("at max_padding {max_padding}")).await;
        }
    }
}

/// A token budget so small that every sequence runs alone (`--reward-max-batch-tokens 1`), or one (256) that splits the
/// call in a few runs: the same scores, each on its own candidate; and the runs were that small.
#[tokio::test]
async fn scores_are_the_same_under_any_token_budget() {
    for model in MODELS {
        for budget in [1, 256] {
            let metrics = Arc::new(Metrics::new().unwrap());
            let cases: Vec<Value> = reference(model).into_iter().filter(|c| c.get("max_tokens").is_none()).collect();
            let opts =
                RewardOptions { device: Device::Cpu, max_batch_tokens: budget, ..RewardOptions::new(fixture(model)) };
            let s = Scorer::load(&opts, metrics.clone()).unwrap();
            let got = s.score(cases.iter().map(input).collect()).await.unwrap();
            for (case, g) in cases.iter().zip(got) {
                let want = case["score"].as_f64().unwrap() as f32;
                assert!((g - want).abs() < TOLERANCE, "{model}/{} at {budget}: {g} vs {want}", case["name"]);
            }
            // The runs: at a budget of 1 token each sequence runs alone; at 64 the call is split in runs of several.
            let (runs, sequences) = (metrics.reward_batch.get_sample_count(), metrics.reward_batch.get_sample_sum());
            assert_eq!(sequences, cases.len() as f64, "{model}: every sequence scored once");
            if budget == 1 {
                assert_eq!(runs, cases.len() as u64, "{model}: one run per sequence");
            } else {
                assert!(
                    runs > 1 && runs < cases.len() as u64,
                    "{model} at {budget}: {runs} runs of {} sequences",
                    cases.len()
                );
            }
            // The stages were timed: one tokenization and one queue wait for the call, a run per batch.
            assert_eq!((metrics.reward_tokenize.get_sample_count(), metrics.reward_queue.get_sample_count()), (1, 1));
            assert_eq!(metrics.reward_inference.get_sample_count(), metrics.reward_batch.get_sample_count());
        }
    }
}

/// Every `--reward-arena` mode scores the same, call after call (the mode only changes what happens to memory
/// between runs).
#[tokio::test]
async fn every_arena_mode_scores_the_same() {
    let model = "tiny-qwen3-export";
    for arena in [Arena::Keep, Arena::Shrink, Arena::Off] {
        let opts = RewardOptions { arena, ..RewardOptions::new(fixture(model)) };
        one_call_matches_reference(model, opts, 2, &format!("{arena:?}")).await;
    }
}

#[tokio::test]
async fn concurrent_jobs_are_each_answered_correctly() {
    let s = Arc::new(scorer(&fixture("tiny-qwen3-chatml"), 4096));
    let cases: Vec<Value> =
        reference("tiny-qwen3-chatml").into_iter().filter(|c| c.get("max_tokens").is_none()).collect();
    let jobs = cases.iter().map(|c| {
        let s = s.clone();
        let inputs = vec![input(c), input(c)];
        async move { s.score(inputs).await }
    });
    for (case, got) in cases.iter().zip(futures::future::join_all(jobs).await) {
        let got = got.unwrap();
        let want = case["score"].as_f64().unwrap() as f32;
        assert_eq!(got.len(), 2);
        assert!(got.iter().all(|g| (g - want).abs() < TOLERANCE), "{}: {got:?} vs {want}", case["name"]);
    }
}

/// The decoder classifier reads the score at the last token that is not the pad id. Padding with another id than
/// config.json's makes a short sequence in a batch read a pad position: the same test as above then fails.
#[tokio::test]
async fn a_wrong_pad_id_changes_batched_scores() {
    let tmp = std::env::temp_dir().join(format!("bon-wrong-pad-{}", std::process::id()));
    std::fs::create_dir_all(&tmp).unwrap();
    for f in ["model.onnx", "tokenizer.json", "tokenizer_config.json"] {
        std::fs::copy(fixture("tiny-qwen3-chatml").join(f), tmp.join(f)).unwrap();
    }
    let mut config: Value =
        serde_json::from_str(&std::fs::read_to_string(fixture("tiny-qwen3-chatml").join("config.json")).unwrap())
            .unwrap();
    config["pad_token_id"] = json!(7);
    std::fs::write(tmp.join("config.json"), config.to_string()).unwrap();

    let cases: Vec<Value> =
        reference("tiny-qwen3-chatml").into_iter().filter(|c| c.get("max_tokens").is_none()).collect();
    let s = scorer(&tmp, 4096);
    let got = s.score(cases.iter().map(input).collect()).await.unwrap();
    let off = cases.iter().zip(&got).filter(|(c, g)| (*g - c["score"].as_f64().unwrap() as f32).abs() > 1e-3).count();
    drop(s);
    std::fs::remove_dir_all(&tmp).unwrap();
    assert!(off > 0, "padding with the wrong id went unnoticed");
}

#[test]
fn a_bad_model_directory_is_a_clear_load_error() {
    let opts = RewardOptions {
        device: Device::Cpu,
        max_tokens: 16,
        max_batch: 4,
        ..RewardOptions::new(fixture("does-not-exist"))
    };
    let err = Scorer::load(&opts, Arc::new(Metrics::new().unwrap())).err().unwrap();
    assert!(matches!(err, RewardError::Load(ref m) if m.contains("does-not-exist")), "{err}");

    let opts = RewardOptions { dir: fixture("tiny-qwen3-chatml"), output: Some("nope".into()), ..opts };
    let err = Scorer::load(&opts, Arc::new(Metrics::new().unwrap())).err().unwrap();
    assert!(err.to_string().contains("--reward-output `nope`"), "{err}");
}

/// `--device cuda` never falls back silently: on a machine without CUDA it is a load error naming CUDA.
#[test]
fn device_cuda_is_cuda_or_an_error() {
    let opts = RewardOptions {
        device: Device::Cuda,
        max_tokens: 64,
        max_batch: 4,
        ..RewardOptions::new(fixture("tiny-qwen3-chatml"))
    };
    match Scorer::load(&opts, Arc::new(Metrics::new().unwrap())) {
        Ok(s) => assert_eq!(s.provider(), "cuda"),
        Err(e) => assert!(e.to_string().contains("CUDA"), "{e}"),
    }
    let auto =
        Scorer::load(&RewardOptions { device: Device::Auto, ..opts }, Arc::new(Metrics::new().unwrap())).unwrap();
    assert!(["cuda", "cpu"].contains(&auto.provider()));
}

/// ONNX Runtime's Python binding (1.31.1, installed by scripts/setup into .ort/py) on `model`: each case alone, then
/// all in one right-padded run, as `make_export_fixtures.py` computes `reference.json`.
fn python_onnx_runtime_scores(model: &Path, cases: &[Value]) -> (Vec<f32>, Vec<f32>) {
    let python = Path::new(env!("CARGO_MANIFEST_DIR")).join(".ort/py/bin/python");
    let script = r#"
import json, sys
import numpy as np, onnxruntime as ort
model, rows = sys.argv[1], json.load(sys.stdin)
pad = json.load(open(model + "/config.json")).get("pad_token_id") or 0
session = ort.InferenceSession(model + "/model.onnx", providers=["CPUExecutionProvider"])
def run(rows):
    width = max(len(r) for r in rows)
    ids = np.array([r + [pad] * (width - len(r)) for r in rows], dtype=np.int64)
    mask = np.array([[1] * len(r) + [0] * (width - len(r)) for r in rows], dtype=np.int64)
    return session.run(["logits"], {"input_ids": ids, "attention_mask": mask})[0][:, 0].tolist()
print(json.dumps([[run([r])[0] for r in rows], run(rows)]))
"#;
    let rows: Vec<Value> = cases.iter().map(|c| c["input_ids"].clone()).collect();
    let mut child = std::process::Command::new(&python)
        .args(["-c", script, model.to_str().unwrap()])
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .spawn()
        .unwrap_or_else(|e| panic!("{}: {e} (run scripts/setup)", python.display()));
    serde_json::to_writer(child.stdin.take().unwrap(), &rows).unwrap();
    let out = child.wait_with_output().unwrap();
    assert!(out.status.success(), "ONNX Runtime (Python) failed; run scripts/setup");
    serde_json::from_slice(&out.stdout).unwrap()
}

/// `export.py --quantize int8` output (MatMulInteger, DynamicQuantizeLinear) through bon-proxy: alone and in one
/// padded batch, the scores ONNX Runtime's Python binding computes on the same graph on this machine (int8 kernels
/// differ by CPU: reference.json, made on a CPU without AVX-512 VNNI, is 0.2 away on one with it); in the order
/// transformers' fp32 scores give.
#[tokio::test]
async fn an_int8_export_scores_as_onnx_runtime_python_does() {
    let model = "tiny-qwen3-int8";
    let cases = reference(model);
    let one = |case: &Value, key: &str| case[key].as_f64().unwrap() as f32;
    let (alone, in_batch) = python_onnx_runtime_scores(&fixture(model), &cases);
    let s = scorer(&fixture(model), 4096);
    for (case, want) in cases.iter().zip(&alone) {
        let got = s.score(vec![input(case)]).await.unwrap()[0];
        assert!((got - want).abs() < TOLERANCE, "{}: {got} vs {want}", case["name"]);
    }
    // One run padded to the longest, as the Python reference: activation scales depend on the whole run.
    let opts = RewardOptions { device: Device::Cpu, max_padding: 1.0, ..RewardOptions::new(fixture(model)) };
    let batched = Scorer::load(&opts, Arc::new(Metrics::new().unwrap())).unwrap();
    let got = batched.score(cases.iter().map(input).collect()).await.unwrap();
    for ((case, g), want) in cases.iter().zip(&got).zip(&in_batch) {
        assert!((g - want).abs() < TOLERANCE, "{}: {g} vs {want}", case["name"]);
    }
    let order = |key: &str| {
        let mut idx: Vec<usize> = (0..cases.len()).collect();
        idx.sort_by(|&a, &b| one(&cases[a], key).total_cmp(&one(&cases[b], key)));
        idx
    };
    assert_eq!(order("score"), order("transformers_score"), "int8 reorders the fixture's cases");
}

#[tokio::test]
async fn a_declared_prefix_output_scores_partial_answers_and_only_those() {
    // tiny-bert-prefix is tiny-bert-pair plus `prefix_logits = -logits` (models/fixtures/make_prefix_fixture.py).
    let s = scorer(&fixture("tiny-bert-prefix"), 4096);
    assert_eq!(s.prefix_output(), Some("prefix_logits"));
    let points = s.calibration().unwrap().points().to_vec();
    assert_eq!((points.len(), points[0].tokens, points[1].scale), (2, 1, 0.5));
    let cases: Vec<Value> = reference("tiny-bert-pair").into_iter().filter(|c| max_tokens(c) == 4096).collect();
    let inputs: Vec<ScoreInput> = cases.iter().map(input).collect();
    // Both kinds at once, so that the worker may merge them into one run.
    let (whole, partial) = tokio::join!(s.score(inputs.clone()), s.score_partial(inputs));
    let (whole, partial) = (whole.unwrap(), partial.unwrap());
    for (i, case) in cases.iter().enumerate() {
        let want = case["score"].as_f64().unwrap() as f32;
        assert!((whole[i] - want).abs() < TOLERANCE, "whole {i}: {} vs {want}", whole[i]);
        assert!((partial[i] + want).abs() < TOLERANCE, "partial {i}: {} vs {}", partial[i], -want);
    }
    // --reward-prefix-output none: the whole-answer output for partial answers too, and no calibration.
    let opts = RewardOptions {
        device: Device::Cpu,
        prefix_output: Some("none".into()),
        ..RewardOptions::new(fixture("tiny-bert-prefix"))
    };
    let off = Scorer::load(&opts, Arc::new(Metrics::new().unwrap())).unwrap();
    let one = vec![input(&cases[0])];
    assert_eq!(off.score_partial(one.clone()).await.unwrap(), off.score(one).await.unwrap());
    assert!(off.calibration().is_none() && off.prefix_output().is_none());
    // A model without the declaration scores partial answers with its one output.
    let plain = scorer(&fixture("tiny-bert-pair"), 4096);
    let one = vec![input(&cases[0])];
    assert_eq!(plain.score_partial(one.clone()).await.unwrap(), plain.score(one).await.unwrap());
    assert!(plain.calibration().is_none() && plain.prefix_output().is_none());
}

#[test]
fn a_prefix_output_the_graph_lacks_is_a_load_error() {
    let dir = std::env::temp_dir().join(format!("bon-prefix-missing-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    for name in ["model.onnx", "tokenizer.json", "tokenizer_config.json"] {
        std::fs::copy(fixture("tiny-bert-pair").join(name), dir.join(name)).unwrap();
    }
    let mut config: Value =
        serde_json::from_str(&std::fs::read_to_string(fixture("tiny-bert-pair").join("config.json")).unwrap()).unwrap();
    config["bon_prefix_output"] = json!("prefix_logits");
    std::fs::write(dir.join("config.json"), config.to_string()).unwrap();
    let opts = RewardOptions { device: Device::Cpu, ..RewardOptions::new(&dir) };
    let e = Scorer::load(&opts, Arc::new(Metrics::new().unwrap())).err().unwrap();
    assert!(e.to_string().contains("bon_prefix_output `prefix_logits` is not an output"), "{e}");
    config["bon_prefix_calibration"] = json!([{"tokens": 16, "scale": "wide"}]);
    config.as_object_mut().unwrap().remove("bon_prefix_output");
    std::fs::write(dir.join("config.json"), config.to_string()).unwrap();
    let e = Scorer::load(&opts, Arc::new(Metrics::new().unwrap())).err().unwrap();
    assert!(e.to_string().contains("bon_prefix_calibration"), "{e}");
    std::fs::remove_dir_all(&dir).unwrap();
}
