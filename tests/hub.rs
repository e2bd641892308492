//! `--reward-model ORG/NAME[@REVISION]` through the hf-hub crate, against a local cache folder laid out as the hub
//! lays it out (`models--org--name/{refs,snapshots}`), offline.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic, reason = "tests fail loudly")]

mod common;

use std::path::{Path, PathBuf};

use bon_proxy::reward::{hub::HubOptions, source};
use common::*;

/// A hub cache with `acme/tiny-rm` at `main` and at tag `v2`, holding the tiny decoder fixture.
fn fake_cache(name: &str) -> PathBuf {
    let root = std::env::temp_dir().join(format!("bon-hub-{name}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&root);
    let repo = root.join("hub/models--acme--tiny-rm");
    for (reference, commit) in [("main", "0a1b2c3d"), ("v2", "9f8e7d6c")] {
        std::fs::create_dir_all(repo.join("refs")).unwrap();
        std::fs::write(repo.join("refs").join(reference), commit).unwrap();
        let snapshot = repo.join("snapshots").join(commit);
        std::fs::create_dir_all(&snapshot).unwrap();
        for f in ["model.onnx", "tokenizer.json", "tokenizer_config.json", "config.json"] {
            std::fs::copy(fixture("tiny-qwen3-chatml").join(f), snapshot.join(f)).unwrap();
        }
    }
    root
}

fn offline(root: &Path) -> HubOptions {
    HubOptions { cache_dir: root.join("hub"), offline: true, endpoint: None, progress: false }
}

#[tokio::test]
async fn a_cached_repository_resolves_to_its_snapshot_offline() {
    let root = fake_cache("resolve");
    let main = source::resolve(Path::new("acme/tiny-rm"), &offline(&root)).await.unwrap();
    assert!(main.dir.ends_with("snapshots/0a1b2c3d"), "{:?}", main.dir);
    assert_eq!(main.id.as_deref(), Some("acme/tiny-rm"));
    let v2 = source::resolve(Path::new("acme/tiny-rm@v2"), &offline(&root)).await.unwrap();
    assert!(v2.dir.ends_with("snapshots/9f8e7d6c"));
    assert_eq!(v2.id.as_deref(), Some("acme/tiny-rm@v2"));

    let err = source::resolve(Path::new("acme/absent-rm"), &offline(&root)).await.unwrap_err().to_string();
    assert!(err.contains("HF_HUB_OFFLINE=1") && err.contains("acme/absent-rm@main"), "{err}");
    let err = source::resolve(Path::new("acme/tiny-rm@v3"), &offline(&root)).await.unwrap_err().to_string();
    assert!(err.contains("not in the Hugging Face cache"), "{err}");
    std::fs::remove_dir_all(root).unwrap();
}

#[tokio::test]
async fn the_proxy_serves_with_a_hub_model_from_the_cache() {
    let root = fake_cache("serve");
    let upstream =
        mock_upstream(BySeed::answers(0, &capital_answers().into_iter().map(|(t, _)| t).collect::<Vec<_>>()), 4).await;
    let mut cfg = config(&upstream.uri(), &[]);
    cfg.reward.model = Some("acme/tiny-rm".into());
    let state = bon_proxy::AppState::build_with_hub(cfg, &offline(&root), Default::default()).await.unwrap();
    assert_eq!(state.reward_model_id, "acme/tiny-rm");
    std::fs::remove_dir_all(root).unwrap();
    // The same scores as the fixture loaded from its own directory.
    let req = axum::http::Request::post("/v1/chat/completions")
        .header("content-type", "application/json")
        .header("x-bon-n", "4")
        .body(axum::body::Body::from(
            serde_json::to_vec(&{
                let mut b = capital_request();
                b["seed"] = serde_json::json!(0);
                b
            })
            .unwrap(),
        ))
        .unwrap();
    let resp = tower::ServiceExt::oneshot(bon_proxy::router(state), req).await.unwrap();
    assert_eq!(resp.status(), 200);
    assert_eq!(resp.headers()["x-bon-reward-model"], "acme/tiny-rm");
    let scores: Vec<f32> =
        resp.headers()["x-bon-scores"].to_str().unwrap().split(',').map(|s| s.parse().unwrap()).collect();
    for (got, (_, want)) in scores.iter().zip(capital_answers()) {
        assert!((got - want).abs() < 1e-4);
    }
}

#[tokio::test]
async fn presets_that_are_not_exported_say_how_to_export_them() {
    let err = source::resolve(Path::new("skywork-v2-0.6b"), &offline(Path::new("/nonexistent"))).await.unwrap_err();
    let text = err.to_string();
    assert!(
        text.contains("Skywork/Skywork-Reward-V2-Qwen3-0.6B")
            && text.contains("models/export/export.py --preset skywork-v2-0.6b"),
        "{text}"
    );
}
