//! `POST /v1/responses` through HTTP against a fake chat upstream: the same winner as chat, the Response object, the
//! event stream, tool calls, usage over every candidate, the cache shared with chat, and errors.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic, reason = "tests fail loudly")]

mod common;

use common::*;
use serde_json::{Value, json};

/// Candidate `i` answers `capital_answers()[ORDER[i]]`; the winner is known from transformers' reference scores.
const ORDER: [usize; 4] = [1, 3, 0, 2];

fn expected() -> (Vec<String>, usize) {
    let answers = capital_answers();
    let texts: Vec<String> = ORDER.iter().map(|&j| answers[j].0.clone()).collect();
    let best = (0..4).fold(0, |b, i| if answers[ORDER[i]].1 > answers[ORDER[b]].1 { i } else { b });
    (texts, best)
}

async fn post(app: &TestApp, body: Value, headers: &[(&str, &str)]) -> reqwest::Response {
    let mut req = app.client.post(format!("{}/v1/responses", app.base)).json(&body);
    for (k, v) in headers {
        req = req.header(*k, *v);
    }
    req.send().await.unwrap()
}

fn capital(seed: i64) -> Value {
    json!({"model": "fake-llm", "input": CAPITAL_QUESTION, "seed": seed, "max_output_tokens": 64})
}

#[tokio::test]
async fn best_of_4_picks_the_same_winner_as_chat_and_answers_a_response() {
    let (texts, best) = expected();
    let responder = BySeed::answers(1000, &texts);
    let upstream = mock_upstream(responder.clone(), 4).await;
    let app = spawn_app(config(&upstream.uri(), &[])).await;
    let resp = post(&app, capital(1000), &[("x-bon-n", "4")]).await;
    assert_eq!(resp.status(), 200);
    assert_eq!(header(&resp, "x-bon-n"), "4");
    assert_eq!(header(&resp, "x-bon-winner"), best.to_string());
    assert_eq!(header(&resp, "x-bon-selection"), "reward");
    assert_eq!(header_scores(&resp).iter().flatten().count(), 4);
    let body: Value = resp.json().await.unwrap();
    assert_eq!(body["object"], "response");
    assert_eq!(body["status"], "completed");
    assert_eq!(body["output"][0]["type"], "message");
    assert_eq!(body["output"][0]["content"][0]["type"], "output_text");
    assert_eq!(body["output"][0]["content"][0]["text"], texts[best].as_str());
    assert_eq!(body["max_output_tokens"], 64);
    // Every candidate counted: 4 × 10 input tokens, 5+0 .. 5+3 output tokens.
    assert_eq!(body["usage"]["input_tokens"], 40);
    assert_eq!(body["usage"]["output_tokens"], 26);
    assert_eq!(body["usage"]["total_tokens"], 66);
    // The candidates were chat requests with the translated fields.
    let sent = responder.bodies.lock().unwrap().clone();
    assert_eq!(sent.len(), 4);
    assert_eq!(sent[0]["messages"], json!([{"role": "user", "content": CAPITAL_QUESTION}]));
    assert_eq!(sent[0]["max_tokens"], 64);
    assert!(sent[0].get("max_output_tokens").is_none() && sent[0].get("input").is_none());

    // The same conversation asked through chat is the same Best-of-N call: a cache hit, no upstream call.
    let mut chat = capital_request();
    chat["seed"] = json!(1000);
    chat["max_tokens"] = json!(64);
    let again = app.chat(chat, &[("x-bon-n", "4")]).await;
    assert_eq!(header(&again, "x-bon-cache"), "hit");
    let again: Value = again.json().await.unwrap();
    assert_eq!(again["choices"][0]["message"]["content"], texts[best].as_str());
    app.stop().await;
    upstream.verify().await;
}

/// The events of an SSE body: (event name, data).
fn events(text: &str) -> Vec<(String, Value)> {
    let mut out = Vec::new();
    let mut name = String::new();
    for line in text.lines() {
        if let Some(n) = line.strip_prefix("event: ") {
            name = n.to_owned();
        } else if let Some(d) = line.strip_prefix("data: ") {
            out.push((name.clone(), serde_json::from_str(d).unwrap()));
        }
    }
    out
}

#[tokio::test]
async fn a_streamed_response_is_the_responses_event_sequence() {
    let (texts, best) = expected();
    let upstream = mock_upstream(BySeed::answers(1000, &texts), 4).await;
    let app = spawn_app(config(&upstream.uri(), &[])).await;
    let mut body = capital(1000);
    body["stream"] = json!(true);
    let resp = post(&app, body, &[("x-bon-n", "4")]).await;
    assert_eq!(resp.status(), 200);
    assert_eq!(header(&resp, "content-type"), "text/event-stream");
    let events = events(&resp.text().await.unwrap());
    let names: Vec<&str> = events.iter().map(|(n, _)| n.as_str()).collect();
    let deltas = names.iter().filter(|n| **n == "response.output_text.delta").count();
    assert!(deltas >= 2, "the text in pieces: {names:?}");
    let mut want =
        vec!["response.created", "response.in_progress", "response.output_item.added", "response.content_part.added"];
    want.extend(std::iter::repeat_n("response.output_text.delta", deltas));
    want.extend([
        "response.output_text.done",
        "response.content_part.done",
        "response.output_item.done",
        "response.completed",
    ]);
    assert_eq!(names, want);
    for (k, (name, data)) in events.iter().enumerate() {
        assert_eq!(data["type"], name.as_str(), "the type is in the data too");
        assert_eq!(data["sequence_number"], k, "sequence numbers count up from 0");
    }
    let text: String = events
        .iter()
        .filter(|(n, _)| n == "response.output_text.delta")
        .map(|(_, d)| {
            assert_eq!((d["output_index"].clone(), d["content_index"].clone()), (json!(0), json!(0)));
            d["delta"].as_str().unwrap().to_owned()
        })
        .collect();
    assert_eq!(text, texts[best]);
    let done = &events.last().unwrap().1["response"];
    assert_eq!(done["status"], "completed");
    assert_eq!(done["output"][0]["content"][0]["text"], texts[best].as_str());
    assert_eq!(done["usage"]["output_tokens"], 26);
    assert_eq!(done["bon"]["winner"], best);
    assert_eq!(done["id"], events[0].1["response"]["id"], "one id from created to completed");
    app.stop().await;
}

#[tokio::test]
async fn a_tool_call_is_a_function_call_item_and_tools_go_up_in_chat_form() {
    let call = json!({"id": "call_7", "type": "function", "function": {"name": "get_weather", "arguments": "{\"city\":\"Paris\"}"}});
    let completion = json!({"id": "c", "object": "chat.completion", "created": 1, "model": "fake-llm",
        "choices": [{"index": 0, "message": {"role": "assistant", "content": null, "tool_calls": [call]}, "finish_reason": "tool_calls"}],
        "usage": {"prompt_tokens": 10, "completion_tokens": 7, "total_tokens": 17}});
    let responder = BySeed::new(0, vec![Behaviour::Body(completion)]);
    let upstream = mock_upstream(responder.clone(), 2).await;
    let app = spawn_app(config(&upstream.uri(), &[])).await;
    let body = json!({"model": "fake-llm", "input": "Weather in Paris?", "instructions": "Use the tools.",
        "tools": [{"type": "function", "name": "get_weather", "parameters": {"type": "object", "properties": {"city": {"type": "string"}}}}]});
    let resp = post(&app, body, &[("x-bon-n", "2")]).await;
    assert_eq!(resp.status(), 200);
    let body: Value = resp.json().await.unwrap();
    assert_eq!(body["output"].as_array().unwrap().len(), 1, "{body}");
    assert_eq!(body["output"][0]["type"], "function_call");
    assert_eq!(body["output"][0]["call_id"], "call_7");
    assert_eq!(body["output"][0]["arguments"], "{\"city\":\"Paris\"}");
    assert_eq!(body["instructions"], "Use the tools.");
    assert_eq!(body["tools"][0]["name"], "get_weather", "the request's tools echoed in their Responses form");
    let sent = responder.bodies.lock().unwrap()[0].clone();
    assert_eq!(sent["tools"][0]["function"]["name"], "get_weather");
    assert_eq!(sent["messages"][0], json!({"role": "system", "content": "Use the tools."}));
    app.stop().await;
}

#[tokio::test]
async fn bad_input_is_an_openai_shaped_400_and_nothing_goes_upstream() {
    let upstream = mock_upstream(BySeed::answers(0, &["x".to_owned()]), 0).await;
    let app = spawn_app(config(&upstream.uri(), &[])).await;
    for (body, param) in [
        (json!({"model": "fake-llm", "input": "x", "tools": [{"type": "web_search"}]}), "tools[0]"),
        (json!({"model": "fake-llm", "input": [{"role": "user", "content": 5}]}), "input[0].content"),
        (json!({"model": "fake-llm", "input": "x", "temperature": 7}), "temperature"),
        (json!({"model": "", "input": "x"}), "model"),
    ] {
        let resp = post(&app, body.clone(), &[]).await;
        assert_eq!(resp.status(), 400, "{body}");
        let err: Value = resp.json().await.unwrap();
        assert_eq!(err["error"]["type"], "invalid_request_error");
        assert_eq!(err["error"]["param"], param, "{body}");
    }
    let not_json =
        app.client.post(format!("{}/v1/responses", app.base)).body("{oops").header("content-type", "application/json");
    let resp = not_json.send().await.unwrap();
    assert_eq!(resp.status(), 400);
    let page = app.metrics().await;
    assert_eq!(metric(&page, r#"bon_requests_total{outcome="invalid_request_error"}"#), 5.0);
    app.stop().await;
    upstream.verify().await;
}

#[tokio::test]
async fn a_request_that_needs_stored_state_goes_to_the_upstreams_own_responses_api() {
    let upstream = mock_upstream(BySeed::answers(0, &["x".to_owned()]), 0).await;
    let stored = json!({"id": "resp_up", "object": "response", "status": "completed", "output": []});
    wiremock::Mock::given(wiremock::matchers::method("POST"))
        .and(wiremock::matchers::path("/v1/responses"))
        .and(wiremock::matchers::body_partial_json(json!({"previous_response_id": "resp_1", "input": "and then?"})))
        .respond_with(wiremock::ResponseTemplate::new(200).set_body_json(stored.clone()))
        .expect(1)
        .mount(&upstream)
        .await;
    let app = spawn_app(config(&upstream.uri(), &[])).await;
    let body = json!({"model": "fake-llm", "input": "and then?", "previous_response_id": "resp_1", "bon": {"n": 4}});
    let resp = post(&app, body.clone(), &[("x-bon-n", "4")]).await;
    assert_eq!(resp.status(), 200);
    assert_eq!(
        (header(&resp, "x-bon-n"), header(&resp, "x-bon-selection")),
        ("1".to_owned(), "passthrough".to_owned())
    );
    assert_eq!(resp.json::<Value>().await.unwrap(), stored, "the upstream's Response as it came");
    let sent = upstream.received_requests().await.unwrap();
    let sent: Vec<Value> =
        sent.iter().filter(|r| r.url.path() == "/v1/responses").map(|r| r.body_json().unwrap()).collect();
    assert!(sent[0].get("bon").is_none(), "`bon` is never forwarded: {}", sent[0]);
    let page = app.metrics().await;
    assert_eq!(metric(&page, r#"bon_passthrough_requests_total{route="/v1/responses",status="200"}"#), 1.0);
    app.stop().await;

    // With --passthrough off there is nowhere to send it: a 400 naming the field.
    let app = spawn_app(config(&upstream.uri(), &["--passthrough", "off"])).await;
    let resp = post(&app, body, &[]).await;
    assert_eq!(resp.status(), 400);
    assert_eq!(resp.json::<Value>().await.unwrap()["error"]["param"], "previous_response_id");
    app.stop().await;
    upstream.verify().await;
}

#[tokio::test]
async fn a_stream_committed_before_the_result_opens_at_once_and_a_failure_is_an_error_event() {
    // Every candidate outlives --candidate-timeout, which is past the first keep-alive: the stream has started.
    let late = BySeed::new(0, vec![Behaviour::Delay(std::time::Duration::from_secs(3), "late".into())]);
    let upstream = mock_upstream(late, 2).await;
    let app = spawn_app(config(&upstream.uri(), &["--sse-keepalive", "100ms", "--candidate-timeout", "500ms"])).await;
    let resp = post(&app, json!({"model": "fake-llm", "input": "x", "stream": true}), &[("x-bon-n", "2")]).await;
    assert_eq!(resp.status(), 200, "committed to a stream before the failure");
    let events = events(&resp.text().await.unwrap());
    let names: Vec<&str> = events.iter().map(|(n, _)| n.as_str()).collect();
    assert_eq!(names, ["response.created", "response.in_progress", "error", "response.failed"]);
    assert_eq!(events[0].1["response"]["status"], "in_progress", "opened as soon as the stream was committed");
    let error = &events[2].1;
    assert_eq!(error["error"]["type"], "all_candidates_failed", "an `error` object: the SDKs raise it");
    assert_eq!(error["sequence_number"], 2);
    assert_eq!(events[3].1["response"]["status"], "failed");
    assert_eq!(events[3].1["response"]["error"]["code"], "all_candidates_failed");
    assert_eq!(events[3].1["response"]["id"], events[0].1["response"]["id"]);
    app.stop().await;
}
