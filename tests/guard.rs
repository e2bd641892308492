//! The degenerate-text guard against real loops: answers SmolLM2 gave on llama-server that repeat a phrase until the
//! length limit (tests/fixtures/loops.json, captured by models/fixtures/capture_loops.py, which picks loops by the
//! periodicity of their last characters, not by the guard's own measure).

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic, reason = "tests fail loudly")]

mod common;

use bon_proxy::{config::Config, select::guard};
use clap::Parser;
use common::*;
use serde_json::{Value, json};

fn fixture() -> Value {
    let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/loops.json");
    serde_json::from_str(&std::fs::read_to_string(path).unwrap()).unwrap()
}

fn texts(kind: &str) -> Vec<(String, String)> {
    fixture()[kind]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| (c["prompt"].as_str().unwrap().to_owned(), c["text"].as_str().unwrap().to_owned()))
        .collect()
}

#[test]
fn the_captured_loops_are_flagged_and_no_coherent_answer_is() {
    let loops = texts("loops");
    let coherent = texts("coherent");
    assert_eq!(loops.len(), 12, "the fixture holds real loops");
    let missed: Vec<&String> = loops.iter().map(|(_, t)| t).filter(|t| !guard::is_repetitive(t)).collect();
    // The one loop the measure misses had only just started when the length limit cut it ("... I'm so, so, so,
    // so,"): its last 32 words are mostly fresh text. It is still flagged `truncated` (next test).
    assert!(missed.len() <= 1, "{missed:#?}");
    for (_, text) in &coherent {
        assert!(!guard::is_repetitive(text), "share {:.2}: {text}", guard::repeated_share(text));
    }
}

/// The proxy with the default reward model (no --reward-model) and `extra` flags.
fn default_model_config(upstream: &str, extra: &[&str]) -> Config {
    let mut args = vec!["bon-proxy", "--upstream", upstream, "--device", "cpu"];
    args.extend_from_slice(extra);
    Config::try_parse_from(args).unwrap()
}

/// Best-of-4 for each captured prompt: its loop (candidate 0, cut by the length limit as llama-server reported it)
/// against three coherent SmolLM2 answers that finished. The loop never wins; without the guard the reward model
/// alone decides, and the flags are still reported.
#[tokio::test]
async fn a_real_loop_never_wins_against_coherent_answers() {
    let loops = texts("loops");
    let coherent = texts("coherent");
    let mut loop_wins_unguarded = 0;
    for (i, (prompt, looped)) in loops.iter().enumerate() {
        let behaviours: Vec<Behaviour> = std::iter::once(Behaviour::Cut(looped.clone()))
            .chain((1..4).map(|k| Behaviour::Answer(coherent[(i + k) % coherent.len()].1.clone())))
            .collect();
        // Two calls (guard on, guard off) of four candidates each.
        let upstream = mock_upstream(BySeed::new(0, behaviours), 8).await;
        let app = spawn_app(default_model_config(&upstream.uri(), &[])).await;
        let body = json!({"model": "smollm2", "seed": 0, "messages": [{"role": "user", "content": prompt}],
                          "bon": {"return_candidates": true}});
        let guarded: Value = app.chat(body.clone(), &[("x-bon-n", "4")]).await.json().await.unwrap();
        assert_ne!(guarded["bon"]["winner"], 0, "the loop won: {}", guarded["bon"]);
        let flags = guarded["bon"]["candidates"][0]["flags"].clone();
        let expected =
            if guard::is_repetitive(looped) { json!(["repetitive", "truncated"]) } else { json!(["truncated"]) };
        assert_eq!(flags, expected);
        for k in 1..4 {
            assert_eq!(guarded["bon"]["candidates"][k]["flags"], json!([]), "coherent answers are clean");
        }
        let mut off = body;
        off["bon"]["guard"] = json!(false);
        let unguarded: Value = app.chat(off, &[("x-bon-n", "4")]).await.json().await.unwrap();
        assert_eq!(unguarded["bon"]["candidates"][0]["flags"], expected, "flags are reported when off");
        loop_wins_unguarded += usize::from(unguarded["bon"]["winner"] == 0);
        app.stop().await;
    }
    // Not an assertion on the model: how often the default reward model alone would have returned the loop.
    eprintln!("without the guard, the loop won {loop_wins_unguarded} of {} calls", loops.len());
}
