//! The public Qwen3 and Llama-3.1 chat templates rendered by bon-proxy are byte-identical to transformers'
//! apply_chat_template(..., tokenize=False) (fixtures by models/fixtures/make_export_fixtures.py): single turn, multi-turn,
//! system message, tool calls with tools offered.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic, reason = "tests fail loudly")]

mod common;

use bon_proxy::reward::template::ChatTemplate;
use serde_json::{Map, Value};

#[test]
fn qwen3_and_llama_templates_render_like_transformers() {
    let dir = common::fixture("templates");
    let fixture: Value = serde_json::from_str(&std::fs::read_to_string(dir.join("cases.json")).unwrap()).unwrap();
    let mut checked = 0;
    for (family, spec) in fixture.as_object().unwrap() {
        let source = std::fs::read_to_string(dir.join(spec["template"].as_str().unwrap())).unwrap();
        let tokens: Map<String, Value> = spec["special_tokens"].as_object().unwrap().clone();
        let template = ChatTemplate::new(source, tokens).unwrap();
        for case in spec["cases"].as_array().unwrap() {
            let messages = case["messages"].as_array().unwrap();
            let tools = case.get("tools");
            let got = template.render(messages, tools).unwrap();
            let want = case["text"].as_str().unwrap();
            assert_eq!(got, want, "{family}/{}", case["name"]);
            checked += 1;
        }
    }
    assert_eq!(checked, 8);
}
