//! `/metrics` moves with traffic, in Prometheus text format; `/health` and `/ready` answer.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic, reason = "tests fail loudly")]

mod common;

use common::*;
use serde_json::json;

#[tokio::test]
async fn metrics_move_with_a_request() {
    let texts: Vec<String> = capital_answers().into_iter().map(|(t, _)| t).collect();
    let upstream = mock_upstream(BySeed::answers(9, &texts), 4).await;
    let app = spawn_app(config(&upstream.uri(), &[])).await;

    let before = app.metrics().await;
    assert_eq!(metric(&before, "bon_execution_provider{provider=\"cpu\"}"), 1.0);
    assert_eq!(metric(&before, "bon_reward_model_loaded"), 1.0);
    assert_eq!(metric(&before, "bon_requests_total{outcome=\"ok\"}"), 0.0);

    let mut body = capital_request();
    body["seed"] = json!(9);
    assert_eq!(app.chat(body.clone(), &[]).await.status(), 200);
    assert_eq!(app.chat(body, &[]).await.status(), 200); // cache hit

    let page = app.metrics().await;
    for (series, want) in [
        ("bon_requests_total{outcome=\"ok\"}", 2.0),
        ("bon_candidates_total{outcome=\"ok\"}", 4.0),
        ("bon_candidate_duration_seconds_count{outcome=\"ok\"}", 4.0),
        ("bon_request_duration_seconds_count{cache=\"miss\"}", 1.0),
        ("bon_request_duration_seconds_count{cache=\"hit\"}", 1.0),
        ("bon_n_count", 1.0),
        ("bon_n_sum", 4.0),
        ("bon_reward_batch_size_sum", 4.0),
        ("bon_reward_duration_seconds_count", 1.0),
        ("bon_winner_score_count", 1.0),
        ("bon_score_margin_count", 1.0),
        ("bon_cache_requests_total{result=\"miss\"}", 1.0),
        ("bon_cache_requests_total{result=\"hit\"}", 1.0),
        ("bon_upstream_tokens_total{kind=\"prompt\"}", 40.0),
        ("bon_upstream_tokens_total{kind=\"completion\"}", 26.0),
        ("bon_inflight_requests", 0.0),
    ] {
        assert_eq!(metric(&page, series), want, "{series}\n{page}");
    }
    // The 4 candidates went through length-bucketed runs: each run observed once, none over 20 % padding.
    let runs = metric(&page, "bon_reward_batch_size_count");
    assert!((1.0..=4.0).contains(&runs), "{runs}");
    assert_eq!(metric(&page, "bon_reward_padding_ratio_count"), runs);
    assert_eq!(metric(&page, "bon_reward_padding_ratio_bucket{le=\"0.2\"}"), runs, "{page}");
    // The winner's score is one of the reference scores.
    let best = capital_answers().iter().map(|(_, s)| *s).fold(f32::MIN, f32::max);
    assert!((metric(&page, "bon_winner_score_sum") - f64::from(best)).abs() < 1e-3);
    // Labels are from closed sets: no request text leaks into the page.
    assert!(!page.contains("France"));
    app.stop().await;
}

#[tokio::test]
async fn health_and_ready() {
    let upstream = mock_upstream(BySeed::answers(0, &["x".into()]), 0).await;
    let app = spawn_app(config(&upstream.uri(), &[])).await;
    let health = app.client.get(format!("{}/health", app.base)).send().await.unwrap();
    assert_eq!(health.status(), 200);
    let ready = app.client.get(format!("{}/ready", app.base)).send().await.unwrap();
    assert_eq!(ready.status(), 200);
    let body: serde_json::Value = ready.json().await.unwrap();
    assert_eq!(body["reward_model"], "tiny-qwen3-chatml");

    // Once shutdown starts, /ready turns false. The listener stops accepting at that moment, so ask the router
    // in-process.
    app.state.shutdown.cancel();
    let req = axum::http::Request::get("/ready").body(axum::body::Body::empty()).unwrap();
    let ready = tower::ServiceExt::oneshot(bon_proxy::router(app.state.clone()), req).await.unwrap();
    assert_eq!(ready.status(), 503);
    app.stop().await;
}

#[tokio::test]
async fn models_are_passed_through() {
    let upstream = wiremock::MockServer::start().await;
    let list =
        json!({"object": "list", "data": [{"id": "smollm2", "object": "model", "created": 1, "owned_by": "library"}]});
    wiremock::Mock::given(wiremock::matchers::path("/v1/models"))
        .respond_with(wiremock::ResponseTemplate::new(200).set_body_json(list.clone()))
        // The pass-through, and the health prober's own probes from start-up.
        .expect(1..)
        .mount(&upstream)
        .await;
    let app = spawn_app(config(&upstream.uri(), &[])).await;
    let resp = app.client.get(format!("{}/v1/models", app.base)).send().await.unwrap();
    assert_eq!(resp.status(), 200);
    assert_eq!(resp.json::<serde_json::Value>().await.unwrap(), list);
    app.stop().await;
}
