//! A corpus of malformed and hostile requests: every one gets an OpenAI-shaped 4xx, none a 5xx, and the server
//! keeps serving afterwards.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic, reason = "tests fail loudly")]

mod common;

use common::*;
use serde_json::{Value, json};

fn msg() -> Value {
    json!([{"role": "user", "content": "hi"}])
}

#[tokio::test]
async fn hostile_requests_get_openai_shaped_4xx_and_never_a_5xx() {
    // Valid-looking requests that reach the upstream (huge text, conflicting n/N) get real answers.
    let upstream = mock_upstream(BySeed::answers(0, &["fine".into(), "also fine".into()]), 2 + 5).await;
    let app = spawn_app(config(&upstream.uri(), &["--max-body-bytes", "2000000", "--cache-ttl", "0s"])).await;
    let url = format!("{}/v1/chat/completions", app.base);

    let deep = format!("{{\"model\":\"m\",\"messages\":[],\"x\":{}{}}}", "[".repeat(5000), "]".repeat(5000));
    let mut raw: Vec<(&str, Vec<u8>, &str)> = vec![
        ("invalid JSON", b"{\"model\": ".to_vec(), "application/json"),
        ("not an object", b"[1, 2, 3]".to_vec(), "application/json"),
        ("empty body", Vec::new(), "application/json"),
        ("deep nesting", deep.into_bytes(), "application/json"),
        (
            "invalid UTF-8",
            b"{\"model\": \"m\", \"messages\": [{\"role\": \"user\", \"content\": \"\xff\xfe\"}]}".to_vec(),
            "application/json",
        ),
        ("wrong content type", serde_json::to_vec(&json!({"model": "m", "messages": msg()})).unwrap(), "text/plain"),
        ("form body", b"model=m&messages=hi".to_vec(), "application/x-www-form-urlencoded"),
    ];
    let typed = [
        ("missing model", json!({"messages": msg()})),
        ("missing messages", json!({"model": "m"})),
        ("empty messages", json!({"model": "m", "messages": []})),
        ("null messages", json!({"model": "m", "messages": null})),
        ("messages object", json!({"model": "m", "messages": {"role": "user"}})),
        ("message without role", json!({"model": "m", "messages": [{"content": "x"}]})),
        ("unknown role", json!({"model": "m", "messages": [{"role": "root", "content": "x"}]})),
        ("numeric role", json!({"model": "m", "messages": [{"role": 7, "content": "x"}]})),
        ("model number", json!({"model": 42, "messages": msg()})),
        ("blank model", json!({"model": "   ", "messages": msg()})),
        ("content number", json!({"model": "m", "messages": [{"role": "user", "content": 3.5}]})),
        ("negative temperature", json!({"model": "m", "messages": msg(), "temperature": -0.5})),
        ("temperature string", json!({"model": "m", "messages": msg(), "temperature": "hot"})),
        ("n zero", json!({"model": "m", "messages": msg(), "n": 0})),
        ("n negative", json!({"model": "m", "messages": msg(), "n": -3})),
        ("n absurd", json!({"model": "m", "messages": msg(), "n": 1_000_000})),
        ("seed float", json!({"model": "m", "messages": msg(), "seed": 1.5})),
        ("stream string", json!({"model": "m", "messages": msg(), "stream": "yes"})),
        ("bon not object", json!({"model": "m", "messages": msg(), "bon": 4})),
        ("bon n huge", json!({"model": "m", "messages": msg(), "bon": {"n": 1e30}})),
        ("bon n negative", json!({"model": "m", "messages": msg(), "bon": {"n": -1}})),
        ("bon unknown field", json!({"model": "m", "messages": msg(), "bon": {"best_of": 3}})),
        ("bon guard not a boolean", json!({"model": "m", "messages": msg(), "bon": {"guard": "yes"}})),
    ];
    for (name, body) in &typed {
        raw.push((name, serde_json::to_vec(body).unwrap(), "application/json"));
    }
    let huge =
        serde_json::to_vec(&json!({"model": "m", "messages": [{"role": "user", "content": "x".repeat(3_000_000)}]}))
            .unwrap();
    raw.push(("over the body limit", huge, "application/json"));

    for (name, body, content_type) in raw {
        let resp = app.client.post(&url).header("content-type", content_type).body(body).send().await.unwrap();
        let status = resp.status();
        assert!(status.is_client_error(), "{name}: {status}");
        let body: Value = resp.json().await.unwrap_or_else(|e| panic!("{name}: not JSON ({e})"));
        assert!(body["error"]["message"].is_string() && body["error"]["type"].is_string(), "{name}: {body}");
    }

    // Out-of-range OpenAI parameters: a 400 naming the parameter, as the official API answers, before anything goes
    // upstream (the mock counts its calls).
    let ranged = [
        ("max_tokens", json!(-5)),
        ("max_tokens", json!(0)),
        ("max_completion_tokens", json!(0)),
        ("temperature", json!(2.5)),
        ("temperature", json!(-0.5)),
        ("temperature", json!("hot")),
        ("top_p", json!(1.01)),
        ("presence_penalty", json!(-3)),
        ("frequency_penalty", json!(2.5)),
        ("n", json!(0)),
        ("n", json!(-3)),
        ("top_logprobs", json!(21)),
        ("seed", json!(1.5)),
        ("seed", json!("7")),
        ("stop", json!(["a", "b", "c", "d", "e"])),
    ];
    for (param, value) in ranged {
        let resp = app.chat(json!({"model": "m", "messages": msg(), param: value}), &[]).await;
        assert_eq!(resp.status(), 400, "{param} = {value}");
        let body: Value = resp.json().await.unwrap();
        assert_eq!(body["error"]["param"], json!(param), "{param} = {value}: {body}");
        assert_eq!(body["error"]["type"], json!("invalid_request_error"));
    }

    let header_cases = ["", "0", "-1", "17", "4.0", "1e1", "0x4", "four", " 99999999999999999999 ", "\u{1F600}"];
    for n in header_cases {
        let Ok(value) = reqwest::header::HeaderValue::from_str(n) else { continue };
        let resp = app
            .client
            .post(&url)
            .header("x-bon-n", value)
            .json(&json!({"model": "m", "messages": msg()}))
            .send()
            .await
            .unwrap();
        assert_eq!(resp.status(), 400, "x-bon-n {n:?}");
    }
    let resp = app
        .client
        .post(&url)
        .header("x-bon-n", reqwest::header::HeaderValue::from_bytes(b"\xfa\xfb").unwrap())
        .json(&json!({"model": "m", "messages": msg()}))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 400, "non-ASCII x-bon-n");

    // Hostile but valid: a 200 kB message is truncated for the reward model from the left, never a crash.
    let big = json!({"model": "m", "seed": 0, "messages": [{"role": "user", "content": "word ".repeat(40_000)}]});
    let resp = app.chat(big, &[("x-bon-n", "2")]).await;
    assert_eq!(resp.status(), 200);
    assert_eq!(header(&resp, "x-bon-selection"), "reward");
    // Conflicting n and N: N is raised to n and the header says so.
    let resp = app.chat(json!({"model": "m", "seed": 0, "n": 5, "messages": msg()}), &[("x-bon-n", "2")]).await;
    assert_eq!(resp.status(), 200);
    assert_eq!(header(&resp, "x-bon-n"), "5");

    let page = app.metrics().await;
    assert!(!page.lines().any(|l| l.starts_with("bon_requests_total") && l.contains("internal_error")), "{page}");
    assert_eq!(app.client.get(format!("{}/health", app.base)).send().await.unwrap().status(), 200);
    app.stop().await;
}
