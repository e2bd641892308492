//! The result cache: hits cost no upstream call, Cache-Control is honoured, callers are kept apart, and concurrent
//! identical requests share one fan-out.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic, reason = "tests fail loudly")]

mod common;

use std::time::Duration;

use common::*;
use serde_json::{Value, json};

fn seeded() -> Value {
    let mut b = capital_request();
    b["seed"] = json!(3);
    b
}

fn texts() -> Vec<String> {
    capital_answers().into_iter().map(|(t, _)| t).collect()
}

#[tokio::test]
async fn a_repeat_is_a_hit_with_zero_upstream_calls() {
    // Exactly 4 upstream calls for both requests together: the second is served from the cache.
    let upstream = mock_upstream(BySeed::answers(3, &texts()), 4).await;
    let app = spawn_app(config(&upstream.uri(), &[])).await;
    let first = app.chat(seeded(), &[]).await;
    assert_eq!(header(&first, "x-bon-cache"), "miss");
    let first_scores = header(&first, "x-bon-scores");
    let first: Value = first.json().await.unwrap();

    // Same request with its fields in another order: same key.
    let reordered =
        json!({"seed": 3, "messages": [{"content": CAPITAL_QUESTION, "role": "user"}], "model": "fake-llm"});
    let second = app.chat(reordered, &[]).await;
    assert_eq!(second.status(), 200);
    assert_eq!(header(&second, "x-bon-cache"), "hit");
    assert_eq!(header(&second, "x-bon-scores"), first_scores);
    let second: Value = second.json().await.unwrap();
    assert_eq!(second["choices"], first["choices"]);
    assert_eq!(second["id"], first["id"]);

    let page = app.metrics().await;
    assert_eq!(metric(&page, "bon_cache_requests_total{result=\"hit\"}"), 1.0);
    assert_eq!(metric(&page, "bon_cache_requests_total{result=\"miss\"}"), 1.0);
    app.stop().await;
}

#[tokio::test]
async fn a_different_n_or_sampling_parameter_is_a_different_entry() {
    let upstream = mock_upstream(BySeed::answers(3, &texts()), 4 + 3 + 4).await;
    let app = spawn_app(config(&upstream.uri(), &[])).await;
    assert_eq!(header(&app.chat(seeded(), &[]).await, "x-bon-cache"), "miss");
    assert_eq!(header(&app.chat(seeded(), &[("x-bon-n", "3")]).await, "x-bon-cache"), "miss");
    let mut hotter = seeded();
    hotter["temperature"] = json!(1.1);
    assert_eq!(header(&app.chat(hotter, &[]).await, "x-bon-cache"), "miss");
    app.stop().await;
}

#[tokio::test]
async fn no_store_neither_reads_nor_writes() {
    let upstream = mock_upstream(BySeed::answers(3, &texts()), 8 + 4).await;
    let app = spawn_app(config(&upstream.uri(), &[])).await;
    for _ in 0..2 {
        let r = app.chat(seeded(), &[("cache-control", "no-store")]).await;
        assert_eq!(header(&r, "x-bon-cache"), "bypass");
    }
    // Nothing was stored: a normal request misses.
    assert_eq!(header(&app.chat(seeded(), &[]).await, "x-bon-cache"), "miss");
    app.stop().await;
}

#[tokio::test]
async fn no_cache_skips_the_read_but_stores() {
    let upstream = mock_upstream(BySeed::answers(3, &texts()), 8).await;
    let app = spawn_app(config(&upstream.uri(), &[])).await;
    assert_eq!(header(&app.chat(seeded(), &[]).await, "x-bon-cache"), "miss");
    assert_eq!(header(&app.chat(seeded(), &[("cache-control", "no-cache")]).await, "x-bon-cache"), "miss");
    assert_eq!(header(&app.chat(seeded(), &[]).await, "x-bon-cache"), "hit");
    app.stop().await;
}

#[tokio::test]
async fn callers_with_different_keys_never_share_entries() {
    let upstream = mock_upstream(BySeed::answers(3, &texts()), 8).await;
    let app = spawn_app(config(&upstream.uri(), &[])).await;
    let a = app.chat(seeded(), &[("authorization", "Bearer key-a")]).await;
    let b = app.chat(seeded(), &[("authorization", "Bearer key-b")]).await;
    assert_eq!((header(&a, "x-bon-cache"), header(&b, "x-bon-cache")), ("miss".into(), "miss".into()));
    assert_eq!(header(&app.chat(seeded(), &[("authorization", "Bearer key-a")]).await, "x-bon-cache"), "hit");
    app.stop().await;
}

#[tokio::test]
async fn concurrent_identical_requests_share_one_fan_out() {
    let slow: Vec<Behaviour> = texts().into_iter().map(|t| Behaviour::Delay(Duration::from_millis(400), t)).collect();
    let upstream = mock_upstream(BySeed::new(3, slow), 4).await;
    let app = spawn_app(config(&upstream.uri(), &[])).await;
    let calls = (0..3).map(|_| app.chat(seeded(), &[]));
    let responses = futures::future::join_all(calls).await;
    let results: Vec<String> = responses.iter().map(|r| header(r, "x-bon-cache")).collect();
    assert!(responses.iter().all(|r| r.status() == 200));
    assert_eq!(count_by(results.iter().map(String::as_str)), [("miss", 1), ("hit", 2)].into_iter().collect());
    let winners: Vec<String> = responses.iter().map(|r| header(r, "x-bon-winner")).collect();
    assert!(winners.windows(2).all(|w| w[0] == w[1]));
    app.stop().await;
}

#[tokio::test]
async fn a_zero_ttl_turns_the_cache_off() {
    let upstream = mock_upstream(BySeed::answers(3, &texts()), 8).await;
    let app = spawn_app(config(&upstream.uri(), &["--cache-ttl", "0s"])).await;
    for _ in 0..2 {
        assert_eq!(header(&app.chat(seeded(), &[]).await, "x-bon-cache"), "bypass");
    }
    app.stop().await;
}
