//! A client that disconnects cancels every in-flight upstream request of its call (no detached work).

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic, reason = "tests fail loudly")]

mod common;

use std::{sync::atomic::Ordering, time::Duration};

use common::*;

#[tokio::test]
async fn client_disconnect_cancels_all_upstream_calls() {
    let upstream = counting_upstream(Duration::from_secs(60)).await;
    let app = spawn_app(config(&format!("http://{}", upstream.addr), &[])).await;

    // The client gives up after 500 ms: its connection closes while all 4 candidates are in flight.
    let client = reqwest::Client::builder().timeout(Duration::from_millis(500)).build().unwrap();
    let result = client
        .post(format!("{}/v1/chat/completions", app.base))
        .header("x-bon-n", "4")
        .json(&capital_request())
        .send()
        .await;
    assert!(result.is_err(), "the client timed out");
    assert_eq!(upstream.started.load(Ordering::SeqCst), 4, "all candidates were in flight");

    // The proxy drops the handler and with it the 4 upstream requests; the upstream sees them go.
    eventually(Duration::from_secs(10), || upstream.dropped.load(Ordering::SeqCst) == 4).await;
    eventually(Duration::from_secs(5), || app.state.metrics.inflight.get() == 0).await;
    let page = app.metrics().await;
    assert_eq!(metric(&page, "bon_requests_total{outcome=\"client_closed\"}"), 1.0);
    assert_eq!(metric(&page, "bon_inflight_requests"), 0.0);
    app.stop().await;
}

#[tokio::test]
async fn a_streaming_client_that_leaves_cancels_all_upstream_calls() {
    let upstream = counting_upstream(Duration::from_secs(60)).await;
    let app = spawn_app(config(&format!("http://{}", upstream.addr), &["--sse-keepalive", "100ms"])).await;
    let mut body = capital_request();
    body["stream"] = serde_json::json!(true);
    let mut resp = app.chat(body, &[("x-bon-n", "3")]).await;
    assert_eq!(resp.status(), 200);
    // Read a keep-alive comment, proof the stream is live, then hang up.
    let first = resp.chunk().await.unwrap().unwrap();
    assert!(String::from_utf8_lossy(&first).contains("bon: generating"));
    assert_eq!(upstream.started.load(Ordering::SeqCst), 3);
    drop(resp);
    eventually(Duration::from_secs(10), || upstream.dropped.load(Ordering::SeqCst) == 3).await;
    eventually(Duration::from_secs(5), || app.state.metrics.inflight.get() == 0).await;
    app.stop().await;
}
