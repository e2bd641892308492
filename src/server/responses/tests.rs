#![allow(clippy::unwrap_used, clippy::expect_used, reason = "tests fail loudly")]

use serde_json::{Value, json};

use super::{
    object::{Frame, Ids, status_of},
    translate::{MAX_INPUT_ITEMS, ResponsesRequest, to_chat},
};
use crate::{
    error::ApiError,
    openai::{Choice, Content, Message},
    server::prepare::Logprobs,
};

fn translate(body: Value) -> Result<(crate::openai::ChatRequest, super::Echo), ApiError> {
    to_chat(serde_json::from_value::<ResponsesRequest>(body).unwrap())
}

fn chat(body: Value) -> Value {
    serde_json::to_value(translate(body).unwrap().0).unwrap()
}

fn refused(body: Value) -> (String, Option<String>) {
    match translate(body) {
        Err(ApiError::InvalidRequest { message, param, .. }) => (message, param),
        other => panic!("not refused: {other:?}"),
    }
}

#[test]
fn a_string_input_with_instructions_is_a_system_then_a_user_message() {
    let c = chat(json!({"model": "m", "input": "Hi", "instructions": "Be brief.", "max_output_tokens": 32,
        "temperature": 0.5, "store": true, "metadata": {"k": "v"}, "truncation": "auto"}));
    assert_eq!(c["messages"], json!([{"role": "system", "content": "Be brief."}, {"role": "user", "content": "Hi"}]));
    assert_eq!(c["max_tokens"], 32);
    assert_eq!(c["temperature"], 0.5);
    // Only echoed, never forwarded.
    for k in ["max_output_tokens", "store", "metadata", "truncation", "instructions", "input"] {
        assert!(c.get(k).is_none(), "{k} forwarded: {c}");
    }
}

#[test]
fn items_become_messages_with_parts_tool_calls_and_tool_results() {
    let c = chat(json!({"model": "m", "input": [
        {"role": "developer", "content": "Rules."},
        {"type": "message", "role": "user", "content": [
            {"type": "input_text", "text": "What is in"},
            {"type": "input_image", "image_url": "data:image/png;base64,AAAA", "detail": "low"}]},
        {"type": "reasoning", "id": "rs_1", "summary": []},
        {"type": "function_call", "call_id": "c1", "name": "f", "arguments": "{\"a\":1}"},
        {"type": "function_call", "call_id": "c2", "name": "g", "arguments": "{}"},
        {"type": "function_call_output", "call_id": "c1", "output": "one"},
        {"type": "function_call_output", "call_id": "c2", "output": [{"type": "input_text", "text": "two"}]},
        {"role": "assistant", "content": [{"type": "output_text", "text": "Done."}]},
    ]}));
    assert_eq!(
        c["messages"],
        json!([
            {"role": "developer", "content": "Rules."},
            {"role": "user", "content": [{"type": "text", "text": "What is in"},
                {"type": "image_url", "image_url": {"url": "data:image/png;base64,AAAA", "detail": "low"}}]},
            {"role": "assistant", "content": null, "tool_calls": [
                {"id": "c1", "type": "function", "function": {"name": "f", "arguments": "{\"a\":1}"}},
                {"id": "c2", "type": "function", "function": {"name": "g", "arguments": "{}"}}]},
            {"role": "tool", "content": "one", "tool_call_id": "c1"},
            {"role": "tool", "content": "two", "tool_call_id": "c2"},
            {"role": "assistant", "content": [{"type": "text", "text": "Done."}]},
        ])
    );
}

#[test]
fn function_tools_tool_choice_and_text_format_take_their_chat_form() {
    let c = chat(json!({"model": "m", "input": "x",
        "tools": [{"type": "function", "name": "get_weather", "description": "d",
                   "parameters": {"type": "object"}, "strict": true}],
        "tool_choice": {"type": "function", "name": "get_weather"},
        "text": {"format": {"type": "json_schema", "name": "w", "schema": {"type": "object"}, "strict": true}}}));
    assert_eq!(
        c["tools"],
        json!([{"type": "function", "function": {"name": "get_weather", "description": "d",
            "parameters": {"type": "object"}, "strict": true}}])
    );
    assert_eq!(c["tool_choice"], json!({"type": "function", "function": {"name": "get_weather"}}));
    assert_eq!(
        c["response_format"],
        json!({"type": "json_schema", "json_schema": {"name": "w", "schema": {"type": "object"}, "strict": true}})
    );
    assert!(c.get("text").is_none());
    let plain = chat(json!({"model": "m", "input": "x", "text": {"format": {"type": "text"}}, "tool_choice": "auto"}));
    assert!(plain.get("response_format").is_none());
    assert_eq!(plain["tool_choice"], "auto");
    assert_eq!(
        chat(json!({"model": "m", "input": "x", "text": {"format": {"type": "json_object"}}}))["response_format"],
        json!({"type": "json_object"})
    );
}

#[test]
fn logprobs_are_asked_for_only_through_include() {
    let asked =
        chat(json!({"model": "m", "input": "x", "include": ["message.output_text.logprobs"], "top_logprobs": 3}));
    assert_eq!((asked["logprobs"].clone(), asked["top_logprobs"].clone()), (json!(true), json!(3)));
    let not = chat(json!({"model": "m", "input": "x", "top_logprobs": 3, "include": ["reasoning.encrypted_content"]}));
    assert!(not.get("logprobs").is_none() && not.get("top_logprobs").is_none() && not.get("include").is_none());
}

#[test]
fn what_needs_stored_state_or_openai_tools_is_refused_naming_the_field() {
    for (body, param) in [
        (json!({"model": "m", "input": "x", "previous_response_id": "resp_1"}), "previous_response_id"),
        (json!({"model": "m", "input": "x", "conversation": "conv_1"}), "conversation"),
        (json!({"model": "m", "prompt": {"id": "pmpt_1"}}), "prompt"),
        (json!({"model": "m", "input": "x", "background": true}), "background"),
        (json!({"model": "m", "input": [{"type": "item_reference", "id": "msg_1"}]}), "input[0]"),
        (
            json!({"model": "m", "input": [{"role": "user", "content": [{"type": "input_file", "file_id": "f"}]}]}),
            "input[0].content[0]",
        ),
        (json!({"model": "m", "input": "x", "tools": [{"type": "web_search"}]}), "tools[0]"),
        (json!({"model": "m", "input": "x", "n": 4}), "n"),
        (json!({"model": "m", "input": [{"role": "tool", "content": "x"}]}), "input[0].role"),
        (
            json!({"model": "m", "input": [{"type": "function_call", "name": "f", "arguments": "{}"}]}),
            "input[0].call_id",
        ),
        (json!({"model": "m", "input": 7}), "input"),
        (json!({"model": "m", "input": "x", "instructions": ["a"]}), "instructions"),
        (json!({"model": "m", "input": "x", "include": "all"}), "include"),
        (
            json!({"model": "m", "input": "x", "text": {"format": {"type": "json_schema", "name": "w"}}}),
            "text.format.schema",
        ),
    ] {
        let (message, got) = refused(body.clone());
        assert_eq!(got.as_deref(), Some(param), "{body}: {message}");
    }
    let many = vec![json!({"role": "user", "content": "x"}); MAX_INPUT_ITEMS + 1];
    assert_eq!(refused(json!({"model": "m", "input": many})).1.as_deref(), Some("input"));
    // Background off and a null previous id are fine.
    assert!(translate(json!({"model": "m", "input": "x", "background": false, "previous_response_id": null})).is_ok());
}

fn choice(text: &str, finish: &str, calls: Option<Value>) -> Choice {
    let mut message =
        Message { role: "assistant".into(), content: Some(Content::Text(text.into())), extra: Default::default() };
    if let Some(calls) = calls {
        message.extra.insert("tool_calls".into(), calls);
    }
    serde_json::from_value(json!({"index": 0, "message": message, "finish_reason": finish})).unwrap()
}

#[test]
fn the_winner_becomes_output_items_and_a_status() {
    let (_, echo) =
        translate(json!({"model": "m", "input": "x", "instructions": "I", "metadata": {"a": "b"}})).unwrap();
    let ids = Ids::fresh();
    let frame = Frame { ids: &ids, echo: &echo, model: "m", created: 5, logprobs: Logprobs::AsReturned };
    let plain = choice("Paris.", "stop", None);
    let out = frame.output(&plain, "completed");
    assert_eq!(out.len(), 1);
    assert_eq!(out[0]["type"], "message");
    assert_eq!(
        out[0]["content"][0],
        json!({"type": "output_text", "text": "Paris.", "annotations": [], "logprobs": []})
    );
    assert!(out[0]["id"].as_str().unwrap().starts_with("msg_"));

    let calls = json!([{"id": "call_9", "type": "function", "function": {"name": "f", "arguments": "{\"x\":2}"}}]);
    let tool = choice("", "tool_calls", Some(calls));
    let out = frame.output(&tool, "completed");
    assert_eq!(out.len(), 1, "no empty message beside a tool call: {out:?}");
    assert_eq!(
        out[0],
        json!({"id": "fc_call_9", "type": "function_call", "status": "completed", "call_id": "call_9", "name": "f",
            "arguments": "{\"x\":2}"})
    );
    assert_eq!(status_of(Some(&choice("a", "length", None))), ("incomplete", json!({"reason": "max_output_tokens"})));
    assert_eq!(status_of(Some(&plain)).0, "completed");

    let r = frame.response("completed", out, Value::Null, Value::Null);
    assert_eq!(
        (r["object"].clone(), r["instructions"].clone(), r["metadata"].clone()),
        (json!("response"), json!("I"), json!({"a": "b"}))
    );
    assert_eq!(r["store"], false);
    assert!(r["id"].as_str().unwrap().starts_with("resp_"));
}
