//! The scoring thread's health through the HTTP API: a panic while scoring (the test hook of `reward::Health`) fails
//! that batch, the request falls back and says so, `/ready` answers 503 while the model cannot be restarted, requests
//! meanwhile are answered at once, and once the restart works everything is scored again.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic, reason = "tests fail loudly")]

mod common;

use std::{sync::Arc, time::Duration};

use bon_proxy::{
    AppState,
    metrics::Metrics,
    reward::{RewardOptions, Score, Scorer},
    serve,
    upstream::Client,
};
use common::*;
use serde_json::Value;
use tokio_util::sync::CancellationToken;

#[tokio::test]
async fn a_panicking_scorer_is_counted_reported_and_restarted() {
    let texts: Vec<String> = capital_answers().into_iter().map(|(t, _)| t).collect();
    // Four requests of Best-of-4.
    let upstream = mock_upstream(BySeed::answers(0, &texts), 16).await;
    let cfg = config(&upstream.uri(), &["--cache-ttl", "0s"]);
    let metrics = Arc::new(Metrics::new().unwrap());
    let opts =
        RewardOptions { device: bon_proxy::reward::Device::Cpu, ..RewardOptions::new(fixture("tiny-qwen3-chatml")) };
    let scorer = Arc::new(Scorer::load(&opts, metrics.clone()).unwrap());
    let client = Arc::new(Client::new(&upstream.uri(), None, 64).unwrap());
    let shutdown = CancellationToken::new();
    let state =
        AppState::from_parts(cfg, client, scorer.clone() as Arc<dyn Score>, "tiny".into(), metrics, shutdown.clone())
            .unwrap();
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let base = format!("http://{}", listener.local_addr().unwrap());
    #[expect(clippy::disallowed_methods, reason = "the server under test runs beside the test")]
    let server = tokio::spawn(serve(listener, state, shutdown.clone()));
    let http = reqwest::Client::new();
    let ask = || async {
        let resp = http
            .post(format!("{base}/v1/chat/completions"))
            .header("x-bon-n", "4")
            .json(&capital_request())
            .send()
            .await
            .unwrap();
        assert_eq!(resp.status(), 200, "a scorer failure never fails the request");
        header(&resp, "x-bon-selection")
    };
    let ready = || async {
        let resp = http.get(format!("{base}/ready")).send().await.unwrap();
        let status = resp.status().as_u16();
        (status, resp.json::<Value>().await.unwrap()["status"].as_str().unwrap().to_owned())
    };
    let metric_of = |name: &'static str| {
        let (http, base) = (http.clone(), base.clone());
        async move { metric(&http.get(format!("{base}/metrics")).send().await.unwrap().text().await.unwrap(), name) }
    };

    assert_eq!(ask().await, "reward");
    assert_eq!(ready().await, (200, "ready".to_owned()));

    // The next batch panics and the restart keeps failing: the request falls back, /ready says why.
    scorer.health().fail_restarts(u32::MAX);
    scorer.health().panic_next_batch();
    assert_eq!(ask().await, "fallback");
    // The thread marks itself down once the panic has unwound, a moment after the batch's callers have their error.
    let started = std::time::Instant::now();
    while ready().await.0 != 503 {
        assert!(started.elapsed() < Duration::from_secs(10), "never unready");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    assert_eq!(ready().await, (503, "reward_model_down".to_owned()));
    assert_eq!(metric_of("bon_reward_worker_up").await, 0.0);
    assert_eq!(metric_of("bon_reward_worker_panics_total{thread=\"scoring\"}").await, 1.0);
    assert_eq!(metric_of("bon_reward_worker_panics_total{thread=\"tokenizer\"}").await, 0.0, "told apart");
    // Meanwhile requests are answered, unscored, without waiting for the scorer.
    assert_eq!(ask().await, "fallback");
    assert!(metric_of("bon_scorer_fallbacks_total").await >= 2.0);

    // The restart works again: ready, and scored, within the back-off.
    scorer.health().fail_restarts(0);
    let started = std::time::Instant::now();
    while ready().await.0 != 200 {
        assert!(started.elapsed() < Duration::from_secs(15), "not ready again");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert_eq!(ask().await, "reward");
    assert_eq!(metric_of("bon_reward_worker_up").await, 1.0);
    assert_eq!(metric_of("bon_reward_worker_restarts_total").await, 1.0);
    shutdown.cancel();
    let _ = tokio::time::timeout(Duration::from_secs(10), server).await;
}
