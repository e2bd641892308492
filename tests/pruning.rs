//! Pruning through the HTTP API: a fake upstream that streams one word per SSE delta and counts the streams the proxy
//! closes, the real tiny reward model scoring the partial answers, the response headers, the live stream, client
//! disconnects, and bad settings.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic, reason = "tests fail loudly")]

mod common;

use std::{
    collections::HashMap,
    sync::{Arc, atomic::Ordering},
    time::Duration,
};

use bon_proxy::{
    openai::{Content, Message},
    reward::ScoreInput,
};
use common::{streamer::*, *};
use futures::StreamExt;
use serde_json::{Value, json};

/// Four distinct answers of 12 to 40 words.
fn answers() -> Vec<String> {
    vec![
        "Paris is the capital of France and has been for centuries, on the river Seine in the north.".into(),
        "The capital is Paris. It is also the largest city of the country and its cultural centre today.".into(),
        "I think it might be Lyon or maybe Marseille, I am not sure about this one at all, sorry friend.".into(),
        "France has its capital in Paris, a city of about two million people, famous for its museums, its \
         food, its long history, the Eiffel Tower, the Louvre and many bridges over the river."
            .into(),
    ]
}

fn message(role: &str, text: &str) -> Message {
    Message { role: role.into(), content: Some(Content::Text(text.into())), extra: Default::default() }
}

#[tokio::test]
async fn losers_are_stopped_early_with_their_prefix_scores_and_the_winner_is_whole() {
    let (addr, up) = streamer(answers(), Duration::from_millis(5)).await;
    let app = spawn_app(config(&format!("http://{addr}"), &["--cache-ttl", "0s"])).await;
    let mut body = capital_request();
    body["seed"] = json!(0);
    body["bon"] = json!({"prune_every": 3, "prune_keep": 0.5, "return_candidates": true});
    let resp = app.chat(body, &[("x-bon-n", "4")]).await;
    assert_eq!(resp.status(), 200);
    let pruned: Vec<usize> = header(&resp, "x-bon-pruned").split(',').map(|i| i.parse().unwrap()).collect();
    let scores = header_scores(&resp);
    let winner: usize = header(&resp, "x-bon-winner").parse().unwrap();
    let out: Value = resp.json().await.unwrap();
    assert_eq!(pruned.len(), 3, "4 -> 2 -> 1");
    assert!(!pruned.contains(&winner));
    assert_eq!(out["choices"][0]["message"]["content"], json!(answers()[winner]));
    assert_eq!(out["bon"]["pruned"], json!(pruned));
    // Each pruned candidate carries its partial text and the score the reward model gives that prefix.
    let conversation: Arc<[Message]> = Arc::from(vec![message("user", CAPITAL_QUESTION)]);
    for &i in &pruned {
        let c = &out["bon"]["candidates"][i];
        assert_eq!(c["pruned"], json!(true));
        let partial = c["message"]["content"].as_str().unwrap();
        assert!(answers()[i].starts_with(partial) && partial.len() < answers()[i].len(), "{partial:?}");
        // Rounds come every 3 words of the slowest stream; one that started a few milliseconds earlier (a pooled
        // connection the health prober left warm) may be a word or two ahead when it is stopped, never behind.
        let words = partial.split_whitespace().count();
        assert!(words >= 3, "stopped at a round, not before the first: {partial:?}");
        let input =
            ScoreInput { conversation: conversation.clone(), tools: None, response: message("assistant", partial) };
        let again = app.state.scorer.score(vec![input]).await.unwrap()[0];
        assert!((scores[i].unwrap() - again).abs() < 1e-3, "prefix score of {i}: {:?} vs {again}", scores[i]);
    }
    // Every pruned stream was closed at the upstream; the winner's ran to the end.
    eventually(Duration::from_secs(5), || up.closed_early.load(Ordering::SeqCst) == 3).await;
    assert_eq!(up.started.load(Ordering::SeqCst), 4);
    let page = app.metrics().await;
    assert_eq!(metric(&page, "bon_candidates_total{outcome=\"pruned\"}"), 3.0);
    assert_eq!(metric(&page, "bon_pruning_rounds_sum"), 2.0);
    assert!(metric(&page, "bon_pruning_tokens_saved_total") > 0.0, "{page}");
    app.stop().await;
}

/// `data:` payloads of an SSE body as JSON (without `[DONE]`), and whether `[DONE]` ended it.
fn events(text: &str) -> (Vec<Value>, bool) {
    let data: Vec<&str> = text.lines().filter_map(|l| l.strip_prefix("data: ")).collect();
    let done = data.last() == Some(&"[DONE]");
    (data.iter().filter(|d| **d != "[DONE]").map(|d| serde_json::from_str(d).unwrap()).collect(), done)
}

#[tokio::test]
async fn the_survivor_is_streamed_live_before_it_finishes() {
    let (addr, up) = streamer(answers(), Duration::from_millis(25)).await;
    let app = spawn_app(config(&format!("http://{addr}"), &["--cache-ttl", "0s", "--prune-every", "2"])).await;
    let mut body = capital_request();
    body["seed"] = json!(0);
    body["stream"] = json!(true);
    body["stream_options"] = json!({"include_usage": true});
    let resp = app.chat(body, &[("x-bon-n", "4")]).await;
    assert_eq!(resp.status(), 200);
    assert_eq!(header(&resp, "x-bon-n"), "4");
    let mut bytes = resp.bytes_stream();
    let mut text = String::new();
    let mut sent_at_first_content: Option<HashMap<i64, usize>> = None;
    while let Some(piece) = bytes.next().await {
        text.push_str(std::str::from_utf8(&piece.unwrap()).unwrap());
        let has_content = text
            .lines()
            .filter_map(|l| serde_json::from_str::<Value>(l.strip_prefix("data: ")?).ok())
            .any(|c| c["choices"][0]["delta"]["content"].as_str().is_some_and(|s| !s.is_empty()));
        if sent_at_first_content.is_none() && has_content {
            sent_at_first_content = Some(up.sent.lock().unwrap().clone());
        }
    }
    let (chunks, done) = events(&text);
    assert!(done, "{text}");
    assert_eq!(chunks[0]["choices"][0]["delta"]["role"], "assistant");
    let last = chunks.last().unwrap();
    let winner = last["bon"]["winner"].as_u64().unwrap() as usize;
    assert_eq!(last["bon"]["pruned"].as_array().unwrap().len(), 3);
    assert!(last["usage"]["completion_tokens"].as_u64().is_some(), "{last}");
    let content: String = chunks.iter().filter_map(|c| c["choices"][0]["delta"]["content"].as_str()).collect();
    assert_eq!(content, answers()[winner], "the live text is the winner's, nothing lost or doubled");
    let id = &chunks[0]["id"];
    assert!(chunks.iter().all(|c| &c["id"] == id && c["object"] == "chat.completion.chunk"));
    let finish = chunks.iter().filter(|c| c["choices"][0]["finish_reason"] == "stop").count();
    assert_eq!(finish, 1);
    // Live: when the client had its first content, the upstream had not yet sent the winner's last word.
    let sent = sent_at_first_content.unwrap()[&(winner as i64)];
    let total = answers()[winner].split_inclusive(' ').count();
    assert!(sent < total, "first content after {sent} of {total} words");
    app.stop().await;
}

#[tokio::test]
async fn a_client_that_leaves_a_pruned_stream_closes_every_upstream_stream() {
    let (addr, up) = streamer(answers(), Duration::from_millis(50)).await;
    let app = spawn_app(config(&format!("http://{addr}"), &["--cache-ttl", "0s", "--sse-keepalive", "100ms"])).await;
    let mut body = capital_request();
    body["stream"] = json!(true);
    let resp = app.chat(body, &[("x-bon-n", "4"), ("x-bon-prune-every", "50")]).await;
    assert_eq!(resp.status(), 200);
    eventually(Duration::from_secs(5), || up.started.load(Ordering::SeqCst) == 4).await;
    drop(resp);
    eventually(Duration::from_secs(5), || up.closed_early.load(Ordering::SeqCst) == 4).await;
    let page = app.metrics().await;
    assert_eq!(metric(&page, "bon_requests_total{outcome=\"client_closed\"}"), 1.0);
    app.stop().await;
}

#[tokio::test]
async fn an_upstream_that_does_not_stream_gets_plain_best_of_n() {
    let texts = answers();
    let upstream = mock_upstream(BySeed::answers(0, &texts), 4).await;
    let app = spawn_app(config(&upstream.uri(), &["--prune-every", "2"])).await;
    let mut body = capital_request();
    body["seed"] = json!(0);
    let resp = app.chat(body, &[("x-bon-n", "4")]).await;
    assert_eq!(resp.status(), 200);
    assert_eq!(header(&resp, "x-bon-pruned"), "");
    assert_eq!(header_scores(&resp).iter().filter(|s| s.is_some()).count(), 4);
    let page = app.metrics().await;
    assert_eq!(metric(&page, "bon_pruning_fallbacks_total"), 1.0);
    app.stop().await;
}

#[tokio::test]
async fn bad_pruning_settings_are_a_400_naming_them() {
    let upstream = mock_upstream(BySeed::answers(0, &["x".into()]), 0).await;
    let app = spawn_app(config(&upstream.uri(), &[])).await;
    let cases = [
        (json!({"prune_every": -1}), vec![], "bon.prune_every"),
        (json!({"prune_every": 2.5}), vec![], "bon.prune_every"),
        (json!({"prune_keep": 1}), vec![], "bon.prune_keep"),
        (json!({"prune_keep": 0}), vec![], "bon.prune_keep"),
        (json!({"straggler_wait_ms": "1s"}), vec![], "bon.straggler_wait_ms"),
        (json!({}), vec![("x-bon-prune-every", "often")], "x-bon-prune-every"),
        (json!({}), vec![("x-bon-prune-every", "-3")], "x-bon-prune-every"),
    ];
    for (bon, headers, param) in cases {
        let mut body = capital_request();
        body["bon"] = bon.clone();
        let resp = app.chat(body, &headers).await;
        assert_eq!(resp.status(), 400, "{bon} {headers:?}");
        let err: Value = resp.json().await.unwrap();
        assert_eq!(err["error"]["param"], json!(param), "{err}");
    }
    app.stop().await;
}

/// `config` with the prefix-declaring fixture: `prefix_logits = -logits`, calibrated (models/fixtures/make_prefix_fixture.py).
fn prefix_config(upstream: &str, extra: &[&str]) -> bon_proxy::config::Config {
    let mut cfg = config(upstream, extra);
    cfg.reward.model = Some(fixture("tiny-bert-prefix"));
    cfg
}

#[tokio::test]
async fn a_prefix_declaring_model_prunes_by_its_prefix_output_and_picks_by_its_whole_one() {
    let (addr, up) = streamer(answers(), Duration::from_millis(5)).await;
    let app = spawn_app(prefix_config(&format!("http://{addr}"), &["--cache-ttl", "0s"])).await;
    let mut body = capital_request();
    body["seed"] = json!(0);
    body["bon"] = json!({"prune_every": 3, "prune_keep": 0.5, "return_candidates": true});
    let resp = app.chat(body, &[("x-bon-n", "4")]).await;
    assert_eq!(resp.status(), 200);
    let scores = header_scores(&resp);
    let winner: usize = header(&resp, "x-bon-winner").parse().unwrap();
    let out: Value = resp.json().await.unwrap();
    let pruned: Vec<usize> = serde_json::from_value(out["bon"]["pruned"].clone()).unwrap();
    assert_eq!(pruned.len(), 3, "4 -> 2 -> 1");
    let conversation: Arc<[Message]> = Arc::from(vec![message("user", CAPITAL_QUESTION)]);
    let scored = |text: &str| ScoreInput {
        conversation: conversation.clone(),
        tools: None,
        response: message("assistant", text),
    };
    for &i in &pruned {
        // A stopped candidate carries the score of its prefix through `prefix_logits` (= -logits).
        let partial = out["bon"]["candidates"][i]["message"]["content"].as_str().unwrap();
        let whole = app.state.scorer.score(vec![scored(partial)]).await.unwrap()[0];
        assert!((scores[i].unwrap() + whole).abs() < 1e-3, "{i}: {:?} is not -{whole}", scores[i]);
    }
    // The winner, run to the end, is scored whole through `logits`.
    let whole = app.state.scorer.score(vec![scored(&answers()[winner])]).await.unwrap()[0];
    assert!((scores[winner].unwrap() - whole).abs() < 1e-3, "{:?} vs {whole}", scores[winner]);
    eventually(Duration::from_secs(5), || up.closed_early.load(Ordering::SeqCst) == 3).await;
    let page = app.metrics().await;
    assert_eq!(metric(&page, "bon_pruning_rounds_total"), 2.0);
    assert_eq!(metric(&page, "bon_pruning_stopped_sum"), 3.0);
    assert_eq!(metric(&page, "bon_pruning_stop_gap_count"), 3.0);
    app.stop().await;
}

#[tokio::test]
async fn a_confidence_nothing_can_reach_stops_no_one_and_the_rounds_say_so() {
    let (addr, up) = streamer(answers(), Duration::from_millis(5)).await;
    let app =
        spawn_app(prefix_config(&format!("http://{addr}"), &["--cache-ttl", "0s", "--prune-confidence", "0.999"]))
            .await;
    let mut body = capital_request();
    body["seed"] = json!(0);
    let resp = app.chat(body, &[("x-bon-n", "4"), ("x-bon-prune-every", "3")]).await;
    assert_eq!(resp.status(), 200);
    // The fixture's scores lie within a few tenths of each other; the margin at 0.999 is logit(0.999) / 0.5 = 13.8.
    assert_eq!(header(&resp, "x-bon-pruned"), "");
    assert_eq!(header_scores(&resp).iter().filter(|s| s.is_some()).count(), 4, "all four ran to the end");
    let page = app.metrics().await;
    assert!(metric(&page, "bon_pruning_rounds_total") >= 1.0, "{page}");
    assert_eq!(metric(&page, "bon_pruning_stopped_sum"), 0.0);
    assert!(metric(&page, "bon_pruning_held_total") >= 2.0, "{page}");
    assert_eq!(up.closed_early.load(Ordering::SeqCst), 0);
    app.stop().await;
}

#[tokio::test]
async fn a_confidence_needs_a_calibrated_model() {
    let upstream = mock_upstream(BySeed::answers(0, &["x".into()]), 0).await;
    // At start-up: the flag with a model that has no calibration is refused, saying why.
    let shutdown = tokio_util::sync::CancellationToken::new();
    let e = bon_proxy::AppState::build(config(&upstream.uri(), &["--prune-confidence", "0.9"]), shutdown)
        .await
        .err()
        .unwrap();
    assert!(e.to_string().contains("bon_prefix_calibration"), "{e}");
    // Per request: a 400 naming the field; a value out of range as well.
    let app = spawn_app(config(&upstream.uri(), &[])).await;
    for (confidence, says) in [(json!(0.9), "prefix calibration"), (json!(0.5), "strictly between 0.5 and 1")] {
        let mut body = capital_request();
        body["bon"] = json!({"prune_every": 4, "prune_confidence": confidence});
        let resp = app.chat(body, &[("x-bon-n", "4")]).await;
        assert_eq!(resp.status(), 400);
        let err: Value = resp.json().await.unwrap();
        assert_eq!(err["error"]["param"], json!("bon.prune_confidence"), "{err}");
        assert!(err["error"]["message"].as_str().unwrap().contains(says), "{err}");
    }
    app.stop().await;
}
