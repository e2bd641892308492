//! Proxy API keys and the upstream's key: 401s are OpenAI-shaped, keys never leak into bodies or metrics, and which
//! key reaches the upstream is explicit.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic, reason = "tests fail loudly")]

mod common;

use common::*;
use serde_json::{Value, json};
use wiremock::{Mock, MockServer, ResponseTemplate, matchers};

const GOOD: &str = "sk-bon-good-4f1c";
const WRONG: &str = "sk-wrong-key-a9a9a9";

#[tokio::test]
async fn missing_or_wrong_keys_are_401_and_never_echoed() {
    // Two accepted callers, two cache scopes: two upstream calls.
    let upstream = mock_upstream(BySeed::answers(0, &["ok".into()]), 2).await;
    let keys_file = std::env::temp_dir().join(format!("bon-keys-{}", std::process::id()));
    std::fs::write(&keys_file, "# team keys\n\nsk-from-file-77\n").unwrap();
    let app =
        spawn_app(config(&upstream.uri(), &["--api-key", GOOD, "--api-keys-file", keys_file.to_str().unwrap()])).await;
    let mut body = capital_request();
    body["seed"] = json!(0);

    for (auth, want) in [
        (None, "missing API key"),
        (Some(format!("Bearer {WRONG}")), "incorrect API key"),
        (Some(WRONG.to_owned()), "missing API key"),
    ] {
        let headers: Vec<(&str, &str)> = auth.iter().map(|a| ("authorization", a.as_str())).collect();
        let resp = app.chat(body.clone(), &headers).await;
        assert_eq!(resp.status(), 401);
        let text = resp.text().await.unwrap();
        assert!(!text.contains(WRONG), "the key is not echoed: {text}");
        let err: Value = serde_json::from_str(&text).unwrap();
        assert_eq!(err["error"]["type"], "authentication_error");
        assert_eq!(err["error"]["code"], "invalid_api_key");
        assert!(err["error"]["message"].as_str().unwrap().contains(want), "{err}");
    }
    let models = app.client.get(format!("{}/v1/models", app.base)).send().await.unwrap();
    assert_eq!(models.status(), 401);

    let ok = app.chat(body.clone(), &[("x-bon-n", "1"), ("authorization", &format!("Bearer {GOOD}"))]).await;
    assert_eq!(ok.status(), 200);
    // A key from the file works too; its cache scope is its own (a miss, not the first caller's entry).
    let also = app.chat(body, &[("x-bon-n", "1"), ("authorization", "Bearer sk-from-file-77")]).await;
    assert_eq!(also.status(), 200);
    assert_eq!(header(&also, "x-bon-cache"), "miss");

    // Health, readiness and metrics stay open for probes and scrapers; no key appears in metrics.
    assert_eq!(app.client.get(format!("{}/health", app.base)).send().await.unwrap().status(), 200);
    let page = app.metrics().await;
    for secret in [GOOD, WRONG, "sk-from-file-77"] {
        assert!(!page.contains(secret));
    }
    assert_eq!(metric(&page, "bon_requests_total{outcome=\"ok\"}"), 2.0);
    app.stop().await;
    std::fs::remove_file(keys_file).unwrap();
}

/// An upstream that answers only requests carrying `auth`, and expects exactly one.
async fn upstream_expecting(auth: &str) -> MockServer {
    let server = MockServer::start().await;
    Mock::given(matchers::path("/v1/chat/completions"))
        .and(matchers::header("authorization", auth))
        .respond_with(ResponseTemplate::new(200).set_body_json(completion("hi", 1)))
        .expect(1)
        .mount(&server)
        .await;
    server
}

#[tokio::test]
async fn the_upstream_gets_its_own_key_not_the_clients() {
    let upstream = upstream_expecting("Bearer upstream-secret").await;
    let app = spawn_app(config(&upstream.uri(), &["--upstream-api-key", "upstream-secret", "--api-key", GOOD])).await;
    let resp = app.chat(capital_request(), &[("x-bon-n", "1"), ("authorization", &format!("Bearer {GOOD}"))]).await;
    assert_eq!(resp.status(), 200);
    app.stop().await;
}

#[tokio::test]
async fn forward_client_auth_passes_the_clients_key_upstream() {
    let upstream = upstream_expecting("Bearer client-own-key").await;
    let app = spawn_app(config(&upstream.uri(), &["--forward-client-auth"])).await;
    let resp = app.chat(capital_request(), &[("x-bon-n", "1"), ("authorization", "Bearer client-own-key")]).await;
    assert_eq!(resp.status(), 200);
    app.stop().await;
}

#[tokio::test]
async fn by_default_no_key_goes_upstream() {
    let server = MockServer::start().await;
    Mock::given(matchers::path("/v1/chat/completions"))
        .respond_with(move |req: &wiremock::Request| {
            assert!(!req.headers.contains_key("authorization"), "the client's key must not leak upstream");
            ResponseTemplate::new(200).set_body_json(completion("hi", 1))
        })
        .expect(1)
        .mount(&server)
        .await;
    let app = spawn_app(config(&server.uri(), &[])).await;
    let resp = app.chat(capital_request(), &[("x-bon-n", "1"), ("authorization", "Bearer client-secret")]).await;
    assert_eq!(resp.status(), 200);
    app.stop().await;
}
