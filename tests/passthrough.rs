//! Every other `/v1` route passed through: the upstream's answer as it came (status, headers, body, errors), bodies
//! streamed both ways without being held whole, the same key rules as chat, failover of small bodies, metrics by
//! route, `--passthrough off`.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic, reason = "tests fail loudly")]

mod common;

use std::{sync::Arc, time::Duration};

use axum::{Router, body::Body, extract::Request, routing::post};
use bytes::Bytes;
use common::*;
use futures::StreamExt;
use serde_json::{Value, json};
use tokio::sync::{Mutex, mpsc, oneshot};
use wiremock::{Mock, MockServer, ResponseTemplate, matchers};

/// Liveness bound: a step that would only finish if a body were held whole fails here instead of hanging.
const STEP: Duration = Duration::from_secs(20);

async fn embeddings_upstream() -> MockServer {
    let server = MockServer::start().await;
    Mock::given(matchers::method("POST"))
        .and(matchers::path("/v1/embeddings"))
        .and(matchers::header("authorization", "Bearer upstream-key"))
        .respond_with(ResponseTemplate::new(200).insert_header("x-upstream", "yes").set_body_json(
            json!({"object": "list", "data": [{"object": "embedding", "index": 0, "embedding": [0.25, -1.5]}]}),
        ))
        .mount(&server)
        .await;
    Mock::given(matchers::method("POST"))
        .and(matchers::path("/v1/completions"))
        .respond_with(ResponseTemplate::new(400).set_body_json(
            json!({"error": {"message": "prompt is required", "type": "invalid_request_error", "param": "prompt", "code": null}}),
        ))
        .mount(&server)
        .await;
    server
}

#[tokio::test]
async fn other_routes_get_the_upstreams_answer_as_it_came_behind_the_proxy_key() {
    let upstream = embeddings_upstream().await;
    let app =
        spawn_app(config(&upstream.uri(), &["--api-key", "proxy-key", "--upstream-api-key", "upstream-key"])).await;
    let post = |path: &str, key: Option<&str>, body: Value| {
        let mut req = app.client.post(format!("{}{path}", app.base)).json(&body);
        if let Some(key) = key {
            req = req.bearer_auth(key);
        }
        req.send()
    };
    let refused = post("/v1/embeddings", None, json!({"model": "m", "input": "x"})).await.unwrap();
    assert_eq!(refused.status(), 401, "the proxy's key rules hold for every route");

    let resp = post("/v1/embeddings", Some("proxy-key"), json!({"model": "m", "input": "x"})).await.unwrap();
    assert_eq!(resp.status(), 200);
    assert_eq!(header(&resp, "x-upstream"), "yes", "the upstream's headers come back");
    let body: Value = resp.json().await.unwrap();
    assert_eq!(body["data"][0]["embedding"], json!([0.25, -1.5]));
    // The upstream saw its own key, never the proxy's (the mock matches only `Bearer upstream-key`).
    let seen = upstream.received_requests().await.unwrap();
    assert!(seen.iter().all(|r| r.headers.get("authorization").unwrap() == "Bearer upstream-key"));

    let bad = post("/v1/completions", Some("proxy-key"), json!({"model": "m"})).await.unwrap();
    assert_eq!(bad.status(), 400, "an upstream error is returned as it came");
    let body: Value = bad.json().await.unwrap();
    assert_eq!(body["error"]["param"], "prompt");

    let missing = post("/v1/nothing/here", Some("proxy-key"), json!({})).await.unwrap();
    assert_eq!(missing.status(), 404, "the upstream's 404 for a route it does not serve");
    let escape = app.client.get(format!("{}/v1/%2e%2e/slots", app.base)).bearer_auth("proxy-key").send().await;
    assert_eq!(escape.unwrap().status(), 404, "a dot segment never reaches the upstream");
    assert!(upstream.received_requests().await.unwrap().iter().all(|r| r.url.path().starts_with("/v1/")));

    let page = app.metrics().await;
    assert_eq!(metric(&page, r#"bon_passthrough_requests_total{route="/v1/embeddings",status="200"}"#), 1.0);
    assert_eq!(metric(&page, r#"bon_passthrough_requests_total{route="/v1/completions",status="400"}"#), 1.0);
    assert_eq!(metric(&page, r#"bon_passthrough_duration_seconds_count{route="/v1/embeddings"}"#), 1.0);
    app.stop().await;
}

#[tokio::test]
async fn with_passthrough_off_other_routes_are_an_openai_shaped_404() {
    let upstream = embeddings_upstream().await;
    let app = spawn_app(config(&upstream.uri(), &["--passthrough", "off"])).await;
    let resp =
        app.client.post(format!("{}/v1/embeddings", app.base)).json(&json!({"input": "x"})).send().await.unwrap();
    assert_eq!(resp.status(), 404);
    let body: Value = resp.json().await.unwrap();
    assert_eq!(body["error"]["type"], "not_found_error");
    let seen = upstream.received_requests().await.unwrap();
    assert!(seen.iter().all(|r| r.url.path() == "/v1/models"), "only the health probes reached the upstream");
    app.stop().await;
}

/// An upstream on `/v1/echo` that reports each request chunk as it arrives and answers with chunks the test
/// releases one by one.
struct Streaming {
    url: String,
    received: mpsc::UnboundedReceiver<Bytes>,
    release: mpsc::UnboundedSender<Bytes>,
}

async fn streaming_upstream() -> Streaming {
    let (seen_tx, received) = mpsc::unbounded_channel::<Bytes>();
    let (release, out_rx) = mpsc::unbounded_channel::<Bytes>();
    let out_rx = Arc::new(Mutex::new(Some(out_rx)));
    let app = Router::new().route(
        "/v1/echo",
        post(move |req: Request| {
            let (seen_tx, out_rx) = (seen_tx.clone(), out_rx.clone());
            async move {
                let mut body = req.into_body().into_data_stream();
                // Report the request's chunks as they come; the answer starts at once and flows as released.
                #[expect(clippy::disallowed_methods, reason = "the fake upstream reads its request beside answering")]
                tokio::spawn(async move {
                    while let Some(Ok(chunk)) = body.next().await {
                        let _ = seen_tx.send(chunk);
                    }
                });
                let rx = out_rx.lock().await.take().unwrap();
                let chunks = tokio_stream_from(rx).map(Ok::<_, std::io::Error>);
                axum::response::Response::builder()
                    .header("content-type", "text/event-stream")
                    .body(Body::from_stream(chunks))
                    .unwrap()
            }
        }),
    );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}", listener.local_addr().unwrap());
    #[expect(clippy::disallowed_methods, reason = "the fake upstream runs beside the test")]
    tokio::spawn(async move { axum::serve(listener, app).await });
    Streaming { url, received, release }
}

fn tokio_stream_from(mut rx: mpsc::UnboundedReceiver<Bytes>) -> impl futures::Stream<Item = Bytes> {
    futures::stream::poll_fn(move |cx| rx.poll_recv(cx))
}

#[tokio::test]
async fn bodies_stream_both_ways_and_are_never_held_whole() {
    let mut up = streaming_upstream().await;
    let app = spawn_app(config(&up.url, &[])).await;
    // The client's body: a stream of unknown length, sent chunk by chunk as the test decides.
    let (send, body_rx) = mpsc::unbounded_channel::<Result<Bytes, std::io::Error>>();
    let body = reqwest::Body::wrap_stream(futures::stream::poll_fn({
        let mut rx = body_rx;
        move |cx| rx.poll_recv(cx)
    }));
    let (resp_tx, resp_rx) = oneshot::channel();
    let client = app.client.clone();
    let url = format!("{}/v1/echo", app.base);
    #[expect(clippy::disallowed_methods, reason = "the client streams its body while the test drives both ends")]
    tokio::spawn(async move {
        let _ = resp_tx.send(client.post(url).body(body).send().await);
    });
    send.send(Ok(Bytes::from_static(b"first part "))).unwrap();
    let got = tokio::time::timeout(STEP, up.received.recv())
        .await
        .expect("the upstream got the first part while the rest was unsent");
    assert_eq!(got.unwrap(), Bytes::from_static(b"first part "));
    send.send(Ok(Bytes::from_static(b"second part"))).unwrap();
    assert_eq!(
        tokio::time::timeout(STEP, up.received.recv()).await.unwrap().unwrap(),
        Bytes::from_static(b"second part")
    );
    drop(send);

    up.release.send(Bytes::from_static(b"data: one\n\n")).unwrap();
    let resp = tokio::time::timeout(STEP, resp_rx).await.unwrap().unwrap().unwrap();
    assert_eq!(resp.status(), 200);
    assert_eq!(header(&resp, "content-type"), "text/event-stream");
    let mut answer = resp.bytes_stream();
    let first = tokio::time::timeout(STEP, answer.next())
        .await
        .expect("the first event arrived while the upstream still held the rest");
    assert_eq!(first.unwrap().unwrap(), Bytes::from_static(b"data: one\n\n"));
    up.release.send(Bytes::from_static(b"data: two\n\n")).unwrap();
    drop(up.release);
    let mut rest = Vec::new();
    while let Some(chunk) = tokio::time::timeout(STEP, answer.next()).await.unwrap() {
        rest.extend_from_slice(&chunk.unwrap());
    }
    assert_eq!(rest, b"data: two\n\n");
    app.stop().await;
}

#[tokio::test]
async fn with_forward_client_auth_the_upstream_gets_the_clients_own_token() {
    let upstream = MockServer::start().await;
    Mock::given(matchers::method("POST"))
        .and(matchers::path("/v1/embeddings"))
        .and(matchers::header("authorization", "Bearer client-token"))
        .respond_with(ResponseTemplate::new(200).set_body_json(json!({"object": "list", "data": []})))
        .expect(1)
        .mount(&upstream)
        .await;
    let app = spawn_app(config(&upstream.uri(), &["--forward-client-auth"])).await;
    let resp =
        app.client.post(format!("{}/v1/embeddings", app.base)).bearer_auth("client-token").json(&json!({"input": "x"}));
    assert_eq!(resp.send().await.unwrap().status(), 200);
    app.stop().await;
    upstream.verify().await;
}
