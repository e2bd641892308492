//! Request parsing and preparation: any body and any `x-bon-n` value give a plan or a 4xx, never a panic, read as a
//! chat request and as a Responses API request (translated to chat first).
#![no_main]

use axum::http::{HeaderMap, HeaderValue};
use bon_proxy::{
    config::Config,
    openai::ChatRequest,
    server::{
        prepare::prepare,
        responses::{ResponsesRequest, to_chat},
    },
};
use clap::Parser;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    // First line: the x-bon-n header; the rest: the body.
    let (header, body) = match data.iter().position(|&b| b == b'\n') {
        Some(i) => (&data[..i], &data[i + 1..]),
        None => (&[][..], data),
    };
    let Ok(cfg) = Config::try_parse_from(["bon-proxy", "--reward-model", "m"]) else { return };
    let mut headers = HeaderMap::new();
    if let Ok(v) = HeaderValue::from_bytes(header) {
        headers.insert("x-bon-n", v);
    }
    if let Ok(req) = serde_json::from_slice::<ChatRequest>(body) {
        match prepare(req, &headers, &cfg) {
            Ok(p) => assert!((1..=cfg.bon.max_n).contains(&p.plan.n) && p.reply.choices <= p.plan.n),
            Err(e) => assert!(e.status_code().is_client_error()),
        }
    }
    if let Ok(req) = serde_json::from_slice::<ResponsesRequest>(body) {
        match to_chat(req).and_then(|(chat, _)| prepare(chat, &headers, &cfg)) {
            Ok(p) => assert!((1..=cfg.bon.max_n).contains(&p.plan.n) && p.reply.choices == 1),
            Err(e) => assert!(e.status_code().is_client_error()),
        }
    }
});
