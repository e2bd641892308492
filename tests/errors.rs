//! Failure paths: partial failures, all-fail 502, upstream 4xx pass-through, bad N and bad requests as
//! OpenAI-shaped 4xx, timeouts, an upstream that is down.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic, reason = "tests fail loudly")]

mod common;

use std::time::Duration;

use common::*;
use serde_json::{Value, json};

async fn error_body(resp: reqwest::Response) -> Value {
    let body: Value = resp.json().await.unwrap();
    let e = &body["error"];
    assert!(e["message"].is_string() && e["type"].is_string(), "OpenAI-shaped: {body}");
    assert!(e.get("param").is_some() && e.get("code").is_some(), "OpenAI-shaped: {body}");
    body
}

fn seeded(seed: i64) -> Value {
    let mut b = capital_request();
    b["seed"] = json!(seed);
    b
}

#[tokio::test]
async fn failed_candidates_are_dropped_and_survivors_compete() {
    let answers = capital_answers();
    let behaviours = vec![
        Behaviour::Status(500, json!({"error": "model runner crashed"})),
        Behaviour::Answer(answers[0].0.clone()),
        Behaviour::Garbage,
        Behaviour::Answer(answers[3].0.clone()),
        Behaviour::NoChoices,
    ];
    let upstream = mock_upstream(BySeed::new(0, behaviours), 5).await;
    let app = spawn_app(config(&upstream.uri(), &[])).await;
    let resp = app.chat(seeded(0), &[("x-bon-n", "5")]).await;
    assert_eq!(resp.status(), 200);
    let best = if answers[3].1 > answers[0].1 { 3 } else { 1 };
    assert_eq!(header(&resp, "x-bon-winner"), best.to_string());
    let scores = header_scores(&resp);
    assert_eq!(scores.iter().map(Option::is_some).collect::<Vec<_>>(), [false, true, false, true, false]);
    let page = app.metrics().await;
    assert_eq!(metric(&page, "bon_candidates_total{outcome=\"http_5xx\"}"), 1.0);
    assert_eq!(metric(&page, "bon_candidates_total{outcome=\"decode\"}"), 1.0);
    assert_eq!(metric(&page, "bon_candidates_total{outcome=\"empty\"}"), 1.0);
    assert_eq!(metric(&page, "bon_candidates_total{outcome=\"ok\"}"), 2.0);
    app.stop().await;
}

#[tokio::test]
async fn one_survivor_is_returned_unscored() {
    let behaviours = vec![Behaviour::Status(503, json!({})), Behaviour::Answer("lonely".into())];
    let upstream = mock_upstream(BySeed::new(0, behaviours), 2).await;
    let app = spawn_app(config(&upstream.uri(), &[])).await;
    let resp = app.chat(seeded(0), &[("x-bon-n", "2")]).await;
    assert_eq!(resp.status(), 200);
    assert_eq!(header(&resp, "x-bon-selection"), "single");
    assert_eq!(header(&resp, "x-bon-winner"), "1");
    assert_eq!(header(&resp, "x-bon-scores"), "-,-");
    app.stop().await;
}

#[tokio::test]
async fn all_candidates_failing_is_a_502_listing_each_cause() {
    let behaviours = vec![
        Behaviour::Status(500, json!({"error": {"message": "out of memory", "type": "server_error"}})),
        Behaviour::Garbage,
        Behaviour::NoChoices,
    ];
    let upstream = mock_upstream(BySeed::new(0, behaviours), 3).await;
    let app = spawn_app(config(&upstream.uri(), &[])).await;
    let resp = app.chat(seeded(0), &[("x-bon-n", "3")]).await;
    assert_eq!(resp.status(), 502);
    let body = error_body(resp).await;
    let message = body["error"]["message"].as_str().unwrap();
    assert!(message.contains("all 3 candidates failed"), "{message}");
    assert!(message.contains("[0] upstream returned HTTP 500: out of memory"), "{message}");
    assert!(message.contains("[1] upstream sent an invalid response"), "{message}");
    assert!(message.contains("[2] upstream returned no choices"), "{message}");
    assert_eq!(body["error"]["type"], "all_candidates_failed");
    let page = app.metrics().await;
    assert_eq!(metric(&page, "bon_requests_total{outcome=\"all_candidates_failed\"}"), 1.0);
    app.stop().await;
}

#[tokio::test]
async fn an_upstream_4xx_that_fails_every_candidate_is_returned_as_is() {
    let not_found = json!({"error": {"message": "model \"nope\" not found, try pulling it first", "type": "api_error", "param": null, "code": null}});
    let upstream = mock_upstream(BySeed::new(0, vec![Behaviour::Status(404, not_found)]), 4).await;
    let app = spawn_app(config(&upstream.uri(), &[])).await;
    let resp = app.chat(seeded(0), &[]).await;
    assert_eq!(resp.status(), 404);
    let body = error_body(resp).await;
    assert!(body["error"]["message"].as_str().unwrap().contains("model \"nope\" not found"), "{body}");
    app.stop().await;
}

#[tokio::test]
async fn bad_n_is_a_400_naming_the_value_and_calls_nothing() {
    let upstream = mock_upstream(BySeed::answers(0, &["x".into()]), 0).await;
    let app = spawn_app(config(&upstream.uri(), &["--max-n", "8", "--default-n", "2"])).await;
    for bad in ["0", "9", "four", "1.5", "-2"] {
        let resp = app.chat(seeded(0), &[("x-bon-n", bad)]).await;
        assert_eq!(resp.status(), 400, "{bad}");
        let body = error_body(resp).await;
        assert_eq!(body["error"]["param"], "x-bon-n");
        assert_eq!(body["error"]["type"], "invalid_request_error");
        assert!(body["error"]["message"].as_str().unwrap().contains(&format!("\"{bad}\"")), "{body}");
    }
    let mut body = seeded(0);
    body["bon"] = json!({"n": "3"});
    let resp = app.chat(body, &[]).await;
    assert_eq!(resp.status(), 400);
    assert_eq!(error_body(resp).await["error"]["param"], "bon.n");
    app.stop().await;
}

#[tokio::test]
async fn malformed_requests_get_openai_shaped_4xx() {
    let upstream = mock_upstream(BySeed::answers(0, &["x".into()]), 0).await;
    let app = spawn_app(config(&upstream.uri(), &["--max-body-bytes", "4096"])).await;
    let url = format!("{}/v1/chat/completions", app.base);
    let post =
        |body: &'static str, ct: &'static str| app.client.post(&url).header("content-type", ct).body(body).send();

    let cases: Vec<(reqwest::Response, u16, &str)> = vec![
        (post("{not json", "application/json").await.unwrap(), 400, "invalid JSON"),
        (post(r#"{"model": "m"}"#, "application/json").await.unwrap(), 400, "messages"),
        (post(r#"{"model": "m", "messages": []}"#, "application/json").await.unwrap(), 400, "at least one message"),
        (post(r#"{"model": "m", "messages": "hi"}"#, "application/json").await.unwrap(), 400, "invalid request"),
        (
            post(r#"{"model": "m", "messages": [{"role": "pirate", "content": "arr"}]}"#, "application/json")
                .await
                .unwrap(),
            400,
            "pirate",
        ),
        (
            post(r#"{"model": "m", "messages": [{"role": "user", "content": 5}]}"#, "application/json").await.unwrap(),
            400,
            "invalid request",
        ),
        (
            post(
                r#"{"model": "m", "messages": [{"role": "user", "content": "x"}], "temperature": -1}"#,
                "application/json",
            )
            .await
            .unwrap(),
            400,
            "temperature",
        ),
        (
            post(
                r#"{"model": "m", "messages": [{"role": "user", "content": "x"}], "bon": {"nn": 2}}"#,
                "application/json",
            )
            .await
            .unwrap(),
            400,
            "nn",
        ),
        (
            post(r#"{"model": "m", "messages": [{"role": "user", "content": "x"}]}"#, "text/plain").await.unwrap(),
            400,
            "Content-Type",
        ),
    ];
    for (resp, status, needle) in cases {
        assert_eq!(resp.status(), status, "{needle}");
        let body = error_body(resp).await;
        assert!(body["error"]["message"].as_str().unwrap().contains(needle), "{needle}: {body}");
    }

    let huge = json!({"model": "m", "messages": [{"role": "user", "content": "x".repeat(10_000)}]});
    let resp = app.client.post(&url).json(&huge).send().await.unwrap();
    assert_eq!(resp.status(), 413);
    error_body(resp).await;
    // Every refusal is counted, those the body extractor makes (bad JSON, wrong types, too large) included.
    let page = app.metrics().await;
    let counted: f64 = page
        .lines()
        .filter(|l| l.starts_with("bon_requests_total{"))
        .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
        .sum();
    assert_eq!(counted, 10.0, "{page}");

    let resp = app.client.get(format!("{}/nothing-here", app.base)).send().await.unwrap();
    assert_eq!(resp.status(), 404);
    error_body(resp).await;
    // Under /v1 a route the proxy does not serve is the upstream's to answer (passed through; here a 404).
    let resp = app.client.get(format!("{}/v1/nothing-here", app.base)).send().await.unwrap();
    assert_eq!(resp.status(), 404);
    let resp = app.client.get(&url).send().await.unwrap();
    assert_eq!(resp.status(), 405);
    error_body(resp).await;
    app.stop().await;
}

#[tokio::test]
async fn a_slow_candidate_times_out_and_is_dropped() {
    let answers = capital_answers();
    let behaviours = vec![
        Behaviour::Delay(Duration::from_secs(20), answers[0].0.clone()),
        Behaviour::Answer(answers[1].0.clone()),
        Behaviour::Answer(answers[2].0.clone()),
    ];
    let upstream = mock_upstream(BySeed::new(0, behaviours), 3).await;
    let app = spawn_app(config(&upstream.uri(), &["--candidate-timeout", "300ms", "--request-timeout", "5s"])).await;
    let resp = app.chat(seeded(0), &[("x-bon-n", "3")]).await;
    assert_eq!(resp.status(), 200);
    let scores = header_scores(&resp);
    assert!(scores[0].is_none() && scores[1].is_some() && scores[2].is_some(), "{scores:?}");
    assert_eq!(metric(&app.metrics().await, "bon_candidates_total{outcome=\"timeout\"}"), 1.0);
    app.stop().await;
}

#[tokio::test]
async fn an_upstream_that_is_down_is_a_502_with_the_cause() {
    // Bind and drop a listener: nothing listens on that port any more.
    let port = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
    let app = spawn_app(config(&format!("http://127.0.0.1:{port}"), &[])).await;
    let resp = app.chat(seeded(0), &[("x-bon-n", "2")]).await;
    assert_eq!(resp.status(), 502);
    let body = error_body(resp).await;
    assert!(body["error"]["message"].as_str().unwrap().contains("upstream connection failed"), "{body}");
    let resp = app.client.get(format!("{}/v1/models", app.base)).send().await.unwrap();
    assert_eq!(resp.status(), 502);
    error_body(resp).await;
    app.stop().await;
}

#[tokio::test]
async fn beyond_max_inflight_is_an_immediate_429_with_retry_after() {
    let slow = vec![Behaviour::Delay(Duration::from_secs(3), "slow".into())];
    let upstream = mock_upstream(BySeed::new(0, slow), 1).await;
    let app = spawn_app(config(&upstream.uri(), &["--max-inflight", "1", "--cache-ttl", "0s"])).await;
    let mut first = Box::pin(app.chat(seeded(0), &[("x-bon-n", "1")]));
    // Drive the first request until it holds the only slot.
    tokio::select! {
        _ = &mut first => panic!("the first request finished too early"),
        () = eventually(Duration::from_secs(10), || app.state.metrics.inflight.get() == 1) => {}
    }
    let second = app.chat(seeded(0), &[("x-bon-n", "1")]).await;
    assert_eq!(second.status(), 429);
    assert_eq!(header(&second, "retry-after"), "1");
    assert_eq!(error_body(second).await["error"]["type"], "rate_limit_error");
    // Rejected at once, not queued behind the first: that one is still running.
    assert!(futures::FutureExt::now_or_never(&mut first).is_none());
    assert_eq!(first.await.status(), 200);
    assert_eq!(metric(&app.metrics().await, "bon_requests_total{outcome=\"rate_limit_error\"}"), 1.0);
    app.stop().await;
}

/// A copy of the tiny decoder model whose chat template refuses any conversation mentioning FAIL-SCORE, the way a
/// real template raises on input it cannot format.
fn refusing_model() -> std::path::PathBuf {
    let dir = std::env::temp_dir().join(format!("bon-refusing-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    for f in ["model.onnx", "tokenizer.json", "config.json"] {
        std::fs::copy(fixture("tiny-qwen3-chatml").join(f), dir.join(f)).unwrap();
    }
    let path = fixture("tiny-qwen3-chatml").join("tokenizer_config.json");
    let mut cfg: Value = serde_json::from_str(&std::fs::read_to_string(path).unwrap()).unwrap();
    let guard =
        "{% if 'FAIL-SCORE' in messages[-1]['content'] %}{{ raise_exception('cannot format this') }}{% endif %}";
    cfg["chat_template"] = json!(format!("{guard}{}", cfg["chat_template"].as_str().unwrap()));
    std::fs::write(dir.join("tokenizer_config.json"), cfg.to_string()).unwrap();
    dir
}

#[tokio::test]
async fn a_reward_model_failure_falls_back_to_the_first_candidate_and_says_so() {
    let behaviours = vec![
        Behaviour::Status(500, json!({"error": "down"})),
        Behaviour::Answer("first good answer, FAIL-SCORE".into()),
        Behaviour::Answer("second good answer".into()),
    ];
    let upstream = mock_upstream(BySeed::new(0, behaviours), 3).await;
    let model = refusing_model();
    let mut cfg = config(&upstream.uri(), &[]);
    cfg.reward.model = Some(model.clone());
    let app = spawn_app(cfg).await;
    let resp = app.chat(seeded(0), &[("x-bon-n", "3")]).await;
    assert_eq!(resp.status(), 200);
    assert_eq!(header(&resp, "x-bon-selection"), "fallback");
    assert_eq!(header(&resp, "x-bon-winner"), "1", "the first successful candidate");
    assert_eq!(header(&resp, "x-bon-scores"), "-,-,-");
    let body: Value = resp.json().await.unwrap();
    assert_eq!(body["choices"][0]["message"]["content"], "first good answer, FAIL-SCORE");
    let page = app.metrics().await;
    assert_eq!(metric(&page, "bon_scorer_fallbacks_total"), 1.0);
    assert_eq!(metric(&page, "bon_reward_errors_total"), 1.0);
    app.stop().await;
    std::fs::remove_dir_all(model).unwrap();
}

/// An upstream that answers candidate 0 with headers and part of the body, then closes the connection; every other
/// candidate gets a proper answer.
async fn resetting_upstream() -> String {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    #[expect(clippy::disallowed_methods, reason = "the fake upstream runs beside the test")]
    tokio::spawn(async move {
        loop {
            let Ok((mut socket, _)) = listener.accept().await else { return };
            #[expect(clippy::disallowed_methods, reason = "one task per fake connection")]
            tokio::spawn(async move {
                let mut buf = vec![0u8; 65536];
                let mut got = Vec::new();
                // Read until the whole JSON body is in (Content-Length).
                loop {
                    let n = socket.read(&mut buf).await.unwrap_or(0);
                    if n == 0 {
                        return;
                    }
                    got.extend_from_slice(&buf[..n]);
                    let text = String::from_utf8_lossy(&got);
                    if let Some((head, body)) = text.split_once("\r\n\r\n") {
                        let len = head
                            .lines()
                            .find_map(|l| {
                                l.to_ascii_lowercase()
                                    .strip_prefix("content-length:")
                                    .map(|v| v.trim().parse::<usize>().unwrap())
                            })
                            .unwrap_or(0);
                        if body.len() >= len {
                            let seed = serde_json::from_str::<Value>(body).unwrap()["seed"].as_i64().unwrap();
                            if seed == 0 {
                                let partial = "HTTP/1.1 200 OK\r\ncontent-type: application/json\r\ncontent-length: 4000\r\n\r\n{\"choices\": [{\"mess";
                                let _ = socket.write_all(partial.as_bytes()).await;
                                return; // dropped: the connection closes mid-body
                            }
                            let answer = completion("a complete answer", 3).to_string();
                            let reply = format!(
                                "HTTP/1.1 200 OK\r\ncontent-type: application/json\r\ncontent-length: {}\r\n\r\n{answer}",
                                answer.len()
                            );
                            let _ = socket.write_all(reply.as_bytes()).await;
                            return;
                        }
                    }
                }
            });
        }
    });
    format!("http://{addr}")
}

#[tokio::test]
async fn a_connection_cut_mid_body_drops_that_candidate_only() {
    let upstream = resetting_upstream().await;
    let app = spawn_app(config(&upstream, &[])).await;
    let resp = app.chat(seeded(0), &[("x-bon-n", "3")]).await;
    assert_eq!(resp.status(), 200);
    let scores = header_scores(&resp);
    assert!(scores[0].is_none() && scores[1].is_some() && scores[2].is_some(), "{scores:?}");
    assert_eq!(metric(&app.metrics().await, "bon_candidates_total{outcome=\"transport\"}"), 1.0);
    app.stop().await;
}

#[tokio::test]
async fn oversized_headers_are_refused_without_harm() {
    let upstream = mock_upstream(BySeed::answers(0, &["x".into()]), 0).await;
    let app = spawn_app(config(&upstream.uri(), &[])).await;
    let huge = "a".repeat(512 * 1024);
    let resp = app
        .client
        .post(format!("{}/v1/chat/completions", app.base))
        .header("x-padding", huge)
        .json(&seeded(0))
        .send()
        .await;
    // hyper refuses the request head (431) or closes the connection; either way no work starts and no 5xx.
    if let Ok(r) = resp {
        assert!(r.status().is_client_error(), "{}", r.status());
    }
    assert_eq!(app.client.get(format!("{}/health", app.base)).send().await.unwrap().status(), 200);
    assert!(!app.metrics().await.contains("bon_requests_total{"), "no request reached the handler");
    app.stop().await;
}
