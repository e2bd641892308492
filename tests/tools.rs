//! Tool-using requests: tools pass through to every candidate, tool-call candidates are scored through the reward
//! model's chat template and streamed as `delta.tool_calls`.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic, reason = "tests fail loudly")]

mod common;

use common::*;
use serde_json::{Value, json};
use wiremock::{Mock, MockServer, Request, Respond, ResponseTemplate, matchers};

/// Candidate 0 calls a tool, candidate 1 answers in text (or fails, with `text_fails`).
struct ToolOrText {
    text_fails: bool,
}

impl Respond for ToolOrText {
    fn respond(&self, request: &Request) -> ResponseTemplate {
        let body: Value = serde_json::from_slice(&request.body).unwrap();
        assert_eq!(body["tools"][0]["function"]["name"], "get_weather", "tools reach every candidate");
        assert_eq!(body["tool_choice"], "auto");
        let message = if body["seed"] == 0 {
            json!({"role": "assistant", "content": null, "tool_calls": [{
                "id": "call_1", "type": "function",
                "function": {"name": "get_weather", "arguments": "{\"city\": \"Paris\", \"unit\": \"celsius\"}"}
            }]})
        } else {
            json!({"role": "assistant", "content": "I cannot check the weather."})
        };
        if self.text_fails && body["seed"] != 0 {
            return ResponseTemplate::new(500).set_body_json(json!({"error": "crashed"}));
        }
        let finish = if body["seed"] == 0 { "tool_calls" } else { "stop" };
        ResponseTemplate::new(200).set_body_json(json!({
            "id": "x", "object": "chat.completion", "created": 1, "model": "fake-llm",
            "choices": [{"index": 0, "message": message, "finish_reason": finish}],
            "usage": {"prompt_tokens": 20, "completion_tokens": 9, "total_tokens": 29}
        }))
    }
}

fn request() -> Value {
    json!({
        "model": "fake-llm", "seed": 0, "tool_choice": "auto",
        "messages": [{"role": "user", "content": "What's the weather in Paris?"}],
        "tools": [{"type": "function", "function": {"name": "get_weather", "description": "Weather for a city",
            "parameters": {"type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"]}}}]
    })
}

#[tokio::test]
async fn tool_call_candidates_are_scored_through_the_template() {
    let upstream = MockServer::start().await;
    Mock::given(matchers::path("/v1/chat/completions"))
        .respond_with(ToolOrText { text_fails: false })
        .expect(2)
        .mount(&upstream)
        .await;
    let app = spawn_app(config(&upstream.uri(), &[])).await;
    let resp = app.chat(request(), &[("x-bon-n", "2"), ("x-bon-return-candidates", "true")]).await;
    assert_eq!(resp.status(), 200);
    assert_eq!(header(&resp, "x-bon-selection"), "reward", "both candidates were scored, the tool call included");
    let scores = header_scores(&resp);
    assert!(scores.iter().all(Option::is_some) && scores[0] != scores[1], "{scores:?}");
    let body: Value = resp.json().await.unwrap();
    let winner = body["bon"]["winner"].as_u64().unwrap() as usize;
    assert_eq!(winner, if scores[0] > scores[1] { 0 } else { 1 });
    assert_eq!(body["choices"][0]["message"], body["bon"]["candidates"][winner]["message"]);
    app.stop().await;
}

#[tokio::test]
async fn a_tool_call_winner_streams_as_delta_tool_calls() {
    let upstream = MockServer::start().await;
    Mock::given(matchers::path("/v1/chat/completions"))
        .respond_with(ToolOrText { text_fails: true })
        .expect(4)
        .mount(&upstream)
        .await;
    let app = spawn_app(config(&upstream.uri(), &["--cache-ttl", "0s"])).await;

    let body: Value = app.chat(request(), &[("x-bon-n", "2")]).await.json().await.unwrap();
    assert_eq!(body["choices"][0]["finish_reason"], "tool_calls");
    assert_eq!(body["choices"][0]["message"]["tool_calls"][0]["function"]["name"], "get_weather");

    let mut streamed = request();
    streamed["stream"] = json!(true);
    let text = app.chat(streamed, &[("x-bon-n", "2")]).await.text().await.unwrap();
    let chunks = sse_chunks(&text);
    let calls: Vec<&Value> = chunks.iter().filter_map(|c| c["choices"][0]["delta"].get("tool_calls")).collect();
    assert_eq!(calls[0][0]["index"], 0);
    assert_eq!(calls[0][0]["id"], "call_1");
    assert_eq!(calls[0][0]["type"], "function");
    assert_eq!(calls[0][0]["function"]["name"], "get_weather");
    let args: String = calls.iter().filter_map(|c| c[0]["function"]["arguments"].as_str()).collect();
    assert_eq!(args, "{\"city\": \"Paris\", \"unit\": \"celsius\"}");
    assert!(calls.len() > 2, "arguments arrive in pieces");
    let finish: Vec<&Value> =
        chunks.iter().map(|c| &c["choices"][0]["finish_reason"]).filter(|f| !f.is_null()).collect();
    assert_eq!(finish, [&json!("tool_calls")]);
    app.stop().await;
}
