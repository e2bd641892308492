//! End to end through HTTP: fan-out with distinct seeds, the winner picked by the real reward model, headers, the
//! OpenAI response shape, streaming.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic, reason = "tests fail loudly")]

mod common;

use common::*;
use serde_json::{Value, json};

/// Candidate `i` answers `capital_answers()[ORDER[i]]`; the winner is known from transformers' reference scores.
const ORDER: [usize; 4] = [1, 3, 0, 2];

fn expected() -> (Vec<String>, Vec<f32>, usize) {
    let answers = capital_answers();
    let texts: Vec<String> = ORDER.iter().map(|&j| answers[j].0.clone()).collect();
    let scores: Vec<f32> = ORDER.iter().map(|&j| answers[j].1).collect();
    let best = (0..4).fold(0, |b, i| if scores[i] > scores[b] { i } else { b });
    (texts, scores, best)
}

#[tokio::test]
async fn winner_is_the_candidate_the_reference_scores_pick() {
    let (texts, scores, best) = expected();
    let responder = BySeed::answers(1000, &texts);
    let upstream = mock_upstream(responder.clone(), 4).await;
    let app = spawn_app(config(&upstream.uri(), &[])).await;

    let mut body = capital_request();
    body["seed"] = json!(1000);
    body["top_k"] = json!(40);
    body["keep_alive"] = json!("5m");
    let resp = app.chat(body, &[("x-bon-n", "4")]).await;
    assert_eq!(resp.status(), 200);
    assert_eq!(header(&resp, "x-bon-n"), "4");
    assert_eq!(header(&resp, "x-bon-winner"), best.to_string());
    assert_eq!(header(&resp, "x-bon-cache"), "miss");
    assert_eq!(header(&resp, "x-bon-reward-model"), "tiny-qwen3-chatml");
    assert_eq!(header(&resp, "x-bon-selection"), "reward");
    assert_eq!(header(&resp, "x-bon-winner-completion-tokens"), (5 + best).to_string());
    let got = header_scores(&resp);
    for (g, want) in got.iter().zip(&scores) {
        assert!((g.unwrap() - want).abs() < 1e-4, "{got:?} vs {scores:?}");
    }

    let body: Value = resp.json().await.unwrap();
    assert_eq!(body["object"], "chat.completion");
    assert!(body["id"].as_str().unwrap().starts_with("chatcmpl-bon-"), "our own id, not the upstream's");
    assert_eq!(body["model"], "fake-llm");
    assert_eq!(body["system_fingerprint"], "fp_ollama");
    assert_eq!(body["choices"].as_array().unwrap().len(), 1);
    assert_eq!(body["choices"][0]["index"], 0);
    assert_eq!(body["choices"][0]["message"]["role"], "assistant");
    assert_eq!(body["choices"][0]["message"]["content"], texts[best].as_str());
    assert_eq!(body["choices"][0]["finish_reason"], "stop");
    // usage counts every candidate: 4 × 10 prompt tokens, completion tokens 5+0 .. 5+3.
    assert_eq!(body["usage"], json!({"prompt_tokens": 40, "completion_tokens": 26, "total_tokens": 66}));

    // What the upstream saw: seeds base+i, non-streaming, the default Best-of-N temperature, unknown fields kept.
    assert_eq!(seeds_seen(&responder), vec![1000, 1001, 1002, 1003]);
    for b in responder.bodies.lock().unwrap().iter() {
        assert_eq!(b["stream"], false);
        assert_eq!(b["temperature"], 0.8);
        assert_eq!(b["top_k"], 40);
        assert_eq!(b["keep_alive"], "5m");
        assert_eq!(b["messages"], json!([{"role": "user", "content": CAPITAL_QUESTION}]));
        assert!(b.get("n").is_none() && b.get("bon").is_none());
    }
    app.stop().await;
}

#[tokio::test]
async fn unseeded_requests_still_get_distinct_seeds_and_the_default_n() {
    let upstream = wiremock::MockServer::start().await;
    let responder = BySeed::answers(0, &["one".to_owned()]);
    wiremock::Mock::given(wiremock::matchers::path("/v1/chat/completions"))
        .respond_with(responder.clone())
        .expect(4)
        .mount(&upstream)
        .await;
    let app = spawn_app(config(&upstream.uri(), &[])).await;
    let resp = app.chat(capital_request(), &[]).await;
    assert_eq!(resp.status(), 200);
    assert_eq!(header(&resp, "x-bon-n"), "4");
    let seeds = seeds_seen(&responder);
    assert_eq!(seeds.len(), 4);
    assert!(seeds.windows(2).all(|w| w[1] == w[0] + 1), "{seeds:?}");
    app.stop().await;
}

#[tokio::test]
async fn n_can_come_from_the_body_extension() {
    let (texts, _, _) = expected();
    let upstream = mock_upstream(BySeed::answers(0, &texts), 3).await;
    let app = spawn_app(config(&upstream.uri(), &[])).await;
    let mut body = capital_request();
    body["seed"] = json!(0);
    body["bon"] = json!({"n": 3});
    let resp = app.chat(body, &[]).await;
    assert_eq!(resp.status(), 200);
    assert_eq!(header(&resp, "x-bon-n"), "3");
    assert_eq!(header_scores(&resp).len(), 3);
    app.stop().await;
}

#[tokio::test]
async fn temperature_zero_runs_one_candidate_and_says_so() {
    let upstream = mock_upstream(BySeed::answers(0, &["greedy".to_owned()]), 1).await;
    let app = spawn_app(config(&upstream.uri(), &[])).await;
    let mut body = capital_request();
    body["temperature"] = json!(0);
    let resp = app.chat(body, &[("x-bon-n", "8")]).await;
    assert_eq!(resp.status(), 200);
    assert_eq!(header(&resp, "x-bon-n"), "1");
    assert_eq!(header(&resp, "x-bon-selection"), "single");
    app.stop().await;
}

#[tokio::test]
async fn openai_n_returns_the_top_candidates_in_score_order() {
    let (texts, scores, _) = expected();
    let upstream = mock_upstream(BySeed::answers(50, &texts), 4).await;
    let app = spawn_app(config(&upstream.uri(), &[])).await;
    let mut body = capital_request();
    body["seed"] = json!(50);
    body["n"] = json!(2);
    let resp = app.chat(body, &[("x-bon-n", "4")]).await;
    assert_eq!(resp.status(), 200);
    let body: Value = resp.json().await.unwrap();
    let mut order: Vec<usize> = (0..4).collect();
    order.sort_by(|&a, &b| scores[b].total_cmp(&scores[a]));
    let choices = body["choices"].as_array().unwrap();
    assert_eq!(choices.len(), 2);
    for (k, c) in choices.iter().enumerate() {
        assert_eq!(c["index"], k);
        assert_eq!(c["message"]["content"], texts[order[k]].as_str());
    }
    app.stop().await;
}

#[tokio::test]
async fn streaming_sends_the_same_winner_as_sse() {
    let (texts, _, best) = expected();
    let upstream = mock_upstream(BySeed::answers(7, &texts), 4).await;
    let app = spawn_app(config(&upstream.uri(), &["--cache-ttl", "0s"])).await;
    let mut body = capital_request();
    body["seed"] = json!(7);
    body["stream"] = json!(true);
    body["stream_options"] = json!({"include_usage": true});
    let resp = app.chat(body, &[("x-bon-n", "4")]).await;
    assert_eq!(resp.status(), 200);
    assert!(header(&resp, "content-type").starts_with("text/event-stream"));
    assert_eq!(header(&resp, "x-bon-winner"), best.to_string());
    let text = resp.text().await.unwrap();
    let data: Vec<&str> = text.lines().filter_map(|l| l.strip_prefix("data: ")).collect();
    assert_eq!(*data.last().unwrap(), "[DONE]");
    let chunks: Vec<Value> = data[..data.len() - 1].iter().map(|d| serde_json::from_str(d).unwrap()).collect();
    let id = chunks[0]["id"].as_str().unwrap();
    for c in &chunks {
        assert_eq!(c["object"], "chat.completion.chunk");
        assert_eq!(c["id"], id);
        assert_eq!(c["model"], "fake-llm");
        assert!(c["created"].as_u64().is_some());
    }
    assert_eq!(chunks[0]["choices"][0]["delta"]["role"], "assistant");
    let content: String = chunks.iter().filter_map(|c| c["choices"][0]["delta"]["content"].as_str()).collect();
    assert_eq!(content, texts[best]);
    let pieces = chunks.iter().filter(|c| c["choices"][0]["delta"]["content"].as_str().is_some_and(|s| !s.is_empty()));
    assert!(pieces.count() > 1, "content arrives in several chunks");
    let finish = &chunks[chunks.len() - 2];
    assert_eq!(finish["choices"][0]["finish_reason"], "stop");
    let usage = chunks.last().unwrap();
    assert_eq!(usage["choices"], json!([]));
    assert_eq!(usage["usage"]["prompt_tokens"], 40);
    app.stop().await;
}

#[tokio::test]
async fn a_slow_stream_is_kept_alive_and_ends_with_the_bon_object() {
    let (texts, scores, best) = expected();
    let slow: Vec<Behaviour> =
        texts.iter().map(|t| Behaviour::Delay(std::time::Duration::from_millis(700), t.clone())).collect();
    let upstream = mock_upstream(BySeed::new(11, slow), 4).await;
    let app = spawn_app(config(&upstream.uri(), &["--sse-keepalive", "200ms"])).await;
    let mut body = capital_request();
    body["seed"] = json!(11);
    body["stream"] = json!(true);
    let resp = app.chat(body, &[("x-bon-n", "4")]).await;
    assert_eq!(resp.status(), 200);
    // Committed before the winner was known: N and the model are in the headers, the winner is not.
    assert_eq!(header(&resp, "x-bon-n"), "4");
    assert_eq!(header(&resp, "x-bon-winner"), "");
    let text = resp.text().await.unwrap();
    let first_data = text.find("data: ").unwrap();
    assert!(text[..first_data].contains(": bon: generating"), "keep-alive comments first:\n{text}");
    let data: Vec<&str> = text.lines().filter_map(|l| l.strip_prefix("data: ")).collect();
    assert_eq!(*data.last().unwrap(), "[DONE]");
    let last: Value = serde_json::from_str(data[data.len() - 2]).unwrap();
    assert_eq!(last["bon"]["winner"], best);
    assert_eq!(last["bon"]["n"], 4);
    for (got, want) in last["bon"]["scores"].as_array().unwrap().iter().zip(&scores) {
        assert!((got.as_f64().unwrap() as f32 - want).abs() < 1e-4);
    }
    let content: String = data[..data.len() - 1]
        .iter()
        .map(|d| serde_json::from_str::<Value>(d).unwrap())
        .filter_map(|c| c["choices"][0]["delta"]["content"].as_str().map(str::to_owned))
        .collect();
    assert_eq!(content, texts[best]);
    app.stop().await;
}

#[tokio::test]
async fn a_stream_that_fails_after_it_started_ends_with_an_error_event() {
    let failing = vec![Behaviour::Status(500, json!({"error": "boom"})); 2];
    let upstream = wiremock::MockServer::start().await;
    wiremock::Mock::given(wiremock::matchers::path("/v1/chat/completions"))
        .respond_with(SlowStatus(BySeed::new(0, failing)))
        .expect(2)
        .mount(&upstream)
        .await;
    let app = spawn_app(config(&upstream.uri(), &["--sse-keepalive", "200ms"])).await;
    let mut body = capital_request();
    body["seed"] = json!(0);
    body["stream"] = json!(true);
    let resp = app.chat(body, &[("x-bon-n", "2")]).await;
    assert_eq!(resp.status(), 200, "the stream had started");
    let text = resp.text().await.unwrap();
    let data: Vec<&str> = text.lines().filter_map(|l| l.strip_prefix("data: ")).collect();
    assert_eq!(data.len(), 1, "{text}");
    let event: Value = serde_json::from_str(data[0]).unwrap();
    assert_eq!(event["error"]["type"], "all_candidates_failed");
    assert_eq!(event["error"]["code"], "502");
    app.stop().await;
}

/// Delays whatever `BySeed` answers by 600 ms (longer than the keep-alive interval).
struct SlowStatus(BySeed);

impl wiremock::Respond for SlowStatus {
    fn respond(&self, request: &wiremock::Request) -> wiremock::ResponseTemplate {
        self.0.respond(request).set_delay(std::time::Duration::from_millis(600))
    }
}

#[tokio::test]
async fn return_candidates_lists_every_candidate() {
    let (mut texts, scores, _) = expected();
    texts.truncate(3);
    let mut behaviours: Vec<Behaviour> = texts.iter().cloned().map(Behaviour::Answer).collect();
    behaviours.push(Behaviour::Status(500, json!({"error": "crashed"})));
    let upstream = mock_upstream(BySeed::new(20, behaviours), 8).await;
    let app = spawn_app(config(&upstream.uri(), &["--cache-ttl", "0s"])).await;
    let mut body = capital_request();
    body["seed"] = json!(20);
    body["bon"] = json!({"return_candidates": true});
    let via_body: Value = app.chat(body.clone(), &[("x-bon-n", "4")]).await.json().await.unwrap();
    body.as_object_mut().unwrap().remove("bon");
    let via_header: Value =
        app.chat(body, &[("x-bon-n", "4"), ("x-bon-return-candidates", "true")]).await.json().await.unwrap();
    for resp in [via_body, via_header] {
        let bon = &resp["bon"];
        let candidates = bon["candidates"].as_array().unwrap();
        assert_eq!(candidates.len(), 4);
        for (i, c) in candidates.iter().enumerate().take(3) {
            assert_eq!(c["message"]["content"], texts[i].as_str());
            assert!((c["score"].as_f64().unwrap() as f32 - scores[i]).abs() < 1e-4);
            assert_eq!(c["finish_reason"], "stop");
            assert!(c["latency_ms"].as_f64().unwrap() >= 0.0);
        }
        assert!(candidates[3]["error"].as_str().unwrap().contains("crashed"));
        let winner = bon["winner"].as_u64().unwrap() as usize;
        assert_eq!(resp["choices"][0]["message"]["content"], candidates[winner]["message"]["content"]);
    }
    app.stop().await;
}
