//! The online confidence stop through the HTTP API: a fake upstream streams one word per delta with scripted token
//! `logprobs`; the proxy learns the model's threshold from finished candidates, then stops the one whose confidence
//! collapses (the upstream sees its stream closed), reports it and counts it; settings it cannot serve are refused.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic, reason = "tests fail loudly")]

mod common;

use std::{sync::atomic::Ordering, time::Duration};

use common::{streamer::*, *};
use serde_json::{Value, json};

fn texts() -> Vec<String> {
    vec![
        "I am quite sure the answer is 7".into(),
        "Adding them up gives 7".into(),
        "That makes 8".into(),
        "Well it could be many things and I do not really know what to say here so maybe it is 9 or 10".into(),
    ]
}

/// The first three sure throughout; the fourth sure for one word, then unsure (its first 4-word group is 2).
fn confidences() -> Vec<Script> {
    vec![|_| 5.0, |_| 5.0, |_| 5.0, |k| if k < 1 { 5.0 } else { 1.0 }]
}

fn question(seed: i64) -> Value {
    json!({"model": "fake-llm", "seed": seed, "messages": [{"role": "user", "content": "What is 3 + 4?"}],
           "bon": {"return_candidates": true}})
}

#[tokio::test]
async fn the_threshold_is_learnt_and_then_a_collapsing_candidate_is_stopped_at_the_upstream() {
    let (addr, up) = scripted_streamer(texts(), confidences(), Duration::from_millis(20)).await;
    let flags = [
        "--strategy",
        "confidence-vote",
        "--confidence-stop",
        "--confidence-window",
        "4",
        "--confidence-min-history",
        "4",
        "--confidence-percentile",
        "25",
    ];
    let app = spawn_app(config(&format!("http://{addr}"), &flags)).await;
    // No history yet: nothing is stopped (nor streamed); the four candidates' confidences (5, 5, 5, 1) are learnt.
    let resp = app.chat(question(0), &[("x-bon-n", "4")]).await;
    assert_eq!(resp.status(), 200);
    let out: Value = resp.json().await.unwrap();
    assert!(out["bon"].get("stopped_unconfident").is_none(), "{out}");
    assert_eq!(up.started.load(Ordering::SeqCst), 0, "not streamed");
    // Now the threshold is the 25th percentile of 1, 5, 5, 5: 4. The fourth falls below it at its fourth word.
    let resp = app.chat(question(4), &[("x-bon-n", "4")]).await;
    assert_eq!(resp.status(), 200);
    let out: Value = resp.json().await.unwrap();
    assert_eq!(out["bon"]["stopped_unconfident"], json!([3]), "{out}");
    let stopped = &out["bon"]["candidates"][3];
    assert_eq!((stopped["unconfident"].clone(), stopped["confidence"]["lowest"].clone()), (json!(true), json!(2.0)));
    assert_eq!(stopped["completion_tokens"], json!(4), "{stopped}");
    assert_eq!(out["bon"]["vote"]["answer"], "7");
    assert!(out["choices"][0].get("logprobs").is_none(), "the client did not ask for them");
    eventually(Duration::from_secs(5), || up.closed_early.load(Ordering::SeqCst) == 1).await;
    assert_eq!(up.started.load(Ordering::SeqCst), 4);
    for sent in up.bodies.lock().unwrap().iter() {
        assert_eq!((&sent["logprobs"], &sent["top_logprobs"]), (&json!(true), &json!(5)), "{sent}");
    }
    let page = app.metrics().await;
    assert_eq!(metric(&page, "bon_confidence_stopped_total"), 1.0);
    assert_eq!(metric(&page, "bon_candidates_total{outcome=\"unconfident\"}"), 1.0);
    assert!(metric(&page, "bon_confidence_tokens_saved_total") >= 1.0);
    app.stop().await;
}

#[tokio::test]
async fn a_stop_that_cannot_serve_the_strategy_is_a_400_or_refused_at_start_up() {
    let (addr, _up) = scripted_streamer(texts(), confidences(), Duration::from_millis(1)).await;
    let app = spawn_app(config(&format!("http://{addr}"), &[])).await;
    let mut body = question(0);
    body["bon"] = json!({"strategy": "reward", "confidence_stop": true});
    let resp = app.chat(body, &[]).await;
    assert_eq!(resp.status(), 400);
    let err: Value = resp.json().await.unwrap();
    assert_eq!(err["error"]["param"], "bon.confidence_stop", "{err}");
    app.stop().await;
    let cfg = config(&format!("http://{addr}"), &["--confidence-stop"]);
    let refused = cfg.validate().unwrap_err().to_string();
    assert!(refused.contains("--confidence-stop needs --strategy vote"), "{refused}");
}
