//! The shared cache tier against a real redis-server: replicas share hits; Redis dying, coming back, holding garbage
//! or wanting a password never fails a request; the password never reaches the log.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic, reason = "tests fail loudly")]

mod common;

use std::{process::Command, time::Duration};

use common::{process::*, redis::Redis, *};
use serde_json::{Value, json};
use wiremock::MockServer;

fn answers() -> Vec<String> {
    capital_answers().into_iter().map(|(t, _)| t).collect()
}

/// An upstream that answers every candidate; `calls` is checked when the test verifies it.
async fn upstream(calls: u64) -> (MockServer, BySeed) {
    let responder = BySeed::answers(0, &answers());
    (mock_upstream(responder.clone(), calls).await, responder)
}

fn request(seed: i64) -> Value {
    let mut body = capital_request();
    body["seed"] = json!(seed);
    body
}

#[tokio::test]
async fn two_replicas_share_a_hit_through_redis() {
    let redis = Redis::start(None).await;
    // One Best-of-4 call in all: the second replica never goes upstream.
    let (up, _) = upstream(4).await;
    let a = spawn_app(config(&up.uri(), &["--cache-redis", &redis.url()])).await;
    let b = spawn_app(config(&up.uri(), &["--cache-redis", &redis.url()])).await;

    let first = a.chat(request(0), &[("x-bon-n", "4")]).await;
    assert_eq!(first.status(), 200);
    assert_eq!(header(&first, "x-bon-cache"), "miss");
    let (first_scores, first_body): (String, Value) = (header(&first, "x-bon-scores"), first.json().await.unwrap());
    assert_eq!(redis.keys().await.len(), 1);
    assert!(redis.keys().await[0].starts_with("bon:outcome-v3:"));

    let second = b.chat(request(0), &[("x-bon-n", "4")]).await;
    assert_eq!(second.status(), 200);
    assert_eq!(header(&second, "x-bon-cache"), "hit");
    assert_eq!(header(&second, "x-bon-scores"), first_scores);
    let second_body: Value = second.json().await.unwrap();
    assert_eq!(second_body["choices"], first_body["choices"]);
    assert_eq!(second_body["id"], first_body["id"], "the same result, not a new one");

    let page = b.metrics().await;
    assert_eq!(metric(&page, "bon_cache_redis_requests_total{result=\"hit\"}"), 1.0);
    assert_eq!(metric(&page, "bon_cache_requests_total{result=\"hit\"}"), 1.0);
    // The TTL is the cache's (10 minutes by default).
    let mut c = redis.connection().await.unwrap();
    let ttl: i64 = ::redis::cmd("PTTL").arg(&redis.keys().await[0]).query_async(&mut c).await.unwrap();
    assert!((590_000..=600_000).contains(&ttl), "{ttl}");
    a.stop().await;
    b.stop().await;
    up.verify().await;
}

#[tokio::test]
async fn redis_dying_mid_run_costs_no_request_and_it_is_used_again_when_back() {
    let mut redis = Redis::start(None).await;
    let port = redis.port;
    let (up, _) = upstream(4 * 4).await;
    let app = spawn_app(config(&up.uri(), &["--cache-redis", &redis.url()])).await;
    assert_eq!(app.chat(request(0), &[("x-bon-n", "4")]).await.status(), 200);
    assert_eq!(redis.keys().await.len(), 1);

    redis.kill();
    let failed_at = std::time::Instant::now();
    let resp = app.chat(request(1), &[("x-bon-n", "4")]).await;
    assert_eq!(resp.status(), 200, "Redis down: served as a miss");
    assert_eq!(header(&resp, "x-bon-cache"), "miss");
    let page = app.metrics().await;
    let errors = metric(&page, "bon_cache_redis_errors_total{op=\"get\"}")
        + metric(&page, "bon_cache_redis_errors_total{op=\"set\"}");
    assert!(errors >= 1.0, "{page}");
    // Within the second after that failure, lookups leave Redis alone (and say so).
    let resp = app.chat(request(3), &[("x-bon-n", "4")]).await;
    assert_eq!(resp.status(), 200);
    if failed_at.elapsed() < Duration::from_millis(900) {
        assert_eq!(metric(&app.metrics().await, "bon_cache_redis_requests_total{result=\"skipped\"}"), 1.0);
    }

    // Back on the same port (empty: no persistence). After the pause that follows a failure, the next fresh result
    // is written again, over a new connection.
    let redis = Redis::start_on(port, None).await;
    tokio::time::sleep(Duration::from_millis(1100)).await;
    let resp = app.chat(request(2), &[("x-bon-n", "4")]).await;
    assert_eq!(resp.status(), 200);
    assert_eq!(redis.keys().await.len(), 1, "reconnected on its own and stored the new result");
    app.stop().await;
    up.verify().await;
}

#[tokio::test]
async fn a_stalled_redis_costs_a_request_at_most_the_timeout() {
    let redis = Redis::start(None).await;
    let (up, _) = upstream(8).await;
    let app = spawn_app(config(&up.uri(), &["--cache-redis", &redis.url(), "--cache-redis-timeout", "50ms"])).await;
    assert_eq!(app.chat(request(0), &[("x-bon-n", "4")]).await.status(), 200);
    // Redis stops answering anyone for 5 s; the request must not wait for it.
    let mut c = redis.connection().await.unwrap();
    let mut sleep = ::redis::cmd("DEBUG");
    sleep.arg("SLEEP").arg(5);
    let stall = sleep.query_async::<()>(&mut c);
    tokio::pin!(stall);
    // Sent, and Redis asleep: polled for 200 ms, it cannot have finished.
    assert!(tokio::time::timeout(Duration::from_millis(200), &mut stall).await.is_err());
    let request = app.chat(request(1), &[("x-bon-n", "4")]);
    let resp = tokio::select! {
        resp = request => resp,
        _ = &mut stall => panic!("the request waited for the stalled Redis"),
    };
    assert_eq!(resp.status(), 200);
    assert_eq!(header(&resp, "x-bon-cache"), "miss");
    assert!(metric(&app.metrics().await, "bon_cache_redis_errors_total{op=\"get\"}") >= 1.0);
    app.stop().await;
    up.verify().await;
}

#[tokio::test]
async fn a_full_redis_refusing_writes_is_a_counted_miss() {
    let redis = Redis::start(None).await;
    let mut c = redis.connection().await.unwrap();
    // Full: past maxmemory with nothing to evict, Redis answers every write with an OOM error.
    for (k, v) in [("maxmemory-policy", "noeviction"), ("maxmemory", "1")] {
        let () = ::redis::cmd("CONFIG").arg("SET").arg(k).arg(v).query_async(&mut c).await.unwrap();
    }
    let (up, _) = upstream(4).await;
    let app = spawn_app(config(&up.uri(), &["--cache-redis", &redis.url()])).await;
    let resp = app.chat(request(0), &[("x-bon-n", "4")]).await;
    assert_eq!(resp.status(), 200);
    assert_eq!(header(&resp, "x-bon-cache"), "miss");
    assert_eq!(metric(&app.metrics().await, "bon_cache_redis_errors_total{op=\"set\"}"), 1.0);
    assert!(redis.keys().await.is_empty());
    app.stop().await;
    up.verify().await;
}

#[tokio::test]
async fn a_corrupt_or_foreign_value_is_ignored_and_replaced() {
    let redis = Redis::start(None).await;
    let (up, _) = upstream(8).await;
    let a = spawn_app(config(&up.uri(), &["--cache-redis", &redis.url()])).await;
    assert_eq!(a.chat(request(0), &[("x-bon-n", "4")]).await.status(), 200);
    let key = redis.keys().await.pop().unwrap();
    let mut c = redis.connection().await.unwrap();
    // Garbage, then a value that parses but was written under another format: both must be misses.
    let () =
        ::redis::cmd("SET").arg(&key).arg("outcome-v1\n{\"not\": \"an outcome\"").query_async(&mut c).await.unwrap();

    let b = spawn_app(config(&up.uri(), &["--cache-redis", &redis.url()])).await;
    let resp = b.chat(request(0), &[("x-bon-n", "4")]).await;
    assert_eq!(resp.status(), 200);
    assert_eq!(header(&resp, "x-bon-cache"), "miss");
    assert_eq!(metric(&b.metrics().await, "bon_cache_redis_errors_total{op=\"decode\"}"), 1.0);

    // b replaced it with a good value: a third replica hits.
    let c3 = spawn_app(config(&up.uri(), &["--cache-redis", &redis.url()])).await;
    assert_eq!(header(&c3.chat(request(0), &[("x-bon-n", "4")]).await, "x-bon-cache"), "hit");
    for app in [a, b, c3] {
        app.stop().await;
    }
    up.verify().await;
}

#[tokio::test]
async fn an_entry_whose_answers_have_no_choices_is_a_counted_miss_not_a_panic() {
    let redis = Redis::start(None).await;
    let (up, _) = upstream(12).await;
    let a = spawn_app(config(&up.uri(), &["--cache-redis", &redis.url()])).await;
    assert_eq!(a.chat(request(0), &[("x-bon-n", "4")]).await.status(), 200);
    let key = redis.keys().await.pop().unwrap();
    let mut c = redis.connection().await.unwrap();
    let stored: String = ::redis::cmd("GET").arg(&key).query_async(&mut c).await.unwrap();
    let (format, json) = stored.split_once('\n').unwrap();
    let mut outcome: Value = serde_json::from_str(json).unwrap();
    for candidate in outcome["candidates"].as_array_mut().unwrap() {
        candidate["result"]["Ok"]["choices"] = json!([]);
    }
    let tampered = format!("{format}\n{outcome}");
    // A fresh replica each time (its local cache empty), as JSON and as a stream.
    for stream in [false, true] {
        let () = ::redis::cmd("SET").arg(&key).arg(&tampered).query_async(&mut c).await.unwrap();
        let b = spawn_app(config(&up.uri(), &["--cache-redis", &redis.url()])).await;
        let mut body = request(0);
        body["stream"] = json!(stream);
        let resp = b.chat(body, &[("x-bon-n", "4")]).await;
        assert_eq!(resp.status(), 200);
        assert_eq!(header(&resp, "x-bon-cache"), "miss");
        assert!(resp.text().await.unwrap().contains("Paris"));
        assert_eq!(metric(&b.metrics().await, "bon_cache_redis_errors_total{op=\"decode\"}"), 1.0);
        b.stop().await;
    }
    a.stop().await;
    up.verify().await;
}

#[tokio::test]
async fn a_tls_url_against_a_server_without_tls_is_a_counted_miss_not_a_panic() {
    let redis = Redis::start(None).await;
    let (up, _) = upstream(4).await;
    let url = format!("rediss://127.0.0.1:{}", redis.port);
    let app = spawn_app(config(&up.uri(), &["--cache-redis", &url])).await;
    let resp = app.chat(request(0), &[("x-bon-n", "4")]).await;
    assert_eq!(resp.status(), 200);
    assert_eq!(header(&resp, "x-bon-cache"), "miss");
    let page = app.metrics().await;
    assert!(metric(&page, "bon_cache_redis_errors_total{op=\"get\"}") >= 1.0, "{page}");
    assert!(redis.keys().await.is_empty(), "nothing was written over a failed handshake");
    app.stop().await;
    up.verify().await;
}

#[test]
fn a_password_protected_redis_works_and_the_password_is_not_logged() {
    const PASSWORD: &str = "pw-5f5f5f-redis";
    let rt = tokio::runtime::Runtime::new().unwrap();
    let (redis, up, other, a) = rt.block_on(async {
        let redis = Redis::start(Some(PASSWORD)).await;
        let (up, _) = upstream(4).await;
        let (other, _) = upstream(4).await;
        let a = spawn_app(config(&up.uri(), &["--cache-redis", &redis.url()])).await;
        assert_eq!(a.chat(request(0), &[("x-bon-n", "4")]).await.status(), 200);
        assert_eq!(redis.keys().await.len(), 1, "written with the password");
        (redis, up, other, a)
    });
    let (mut child, addr, mut log, rest) = start_logged(
        Command::new(BIN)
            .args(["--listen", "127.0.0.1:0", "--device", "cpu", "--upstream", &up.uri()])
            .arg("--reward-model")
            .arg(fixture("tiny-qwen3-chatml"))
            .env("BON_CACHE_REDIS", redis.url())
            .env("BON_LOG", "trace"),
    );
    // And one with a wrong password: requests still succeed, and that password is not logged either.
    let (mut wrong, wrong_addr, mut wrong_log, wrong_rest) = start_logged(
        Command::new(BIN)
            .args(["--listen", "127.0.0.1:0", "--device", "cpu", "--upstream", &other.uri()])
            .arg("--reward-model")
            .arg(fixture("tiny-qwen3-chatml"))
            .args(["--cache-redis", &format!("redis://:wrong-pw-6e6e6e@127.0.0.1:{}", redis.port)])
            .env("BON_LOG", "trace"),
    );
    rt.block_on(async {
        let client = reqwest::Client::new();
        let resp = client
            .post(format!("http://{addr}/v1/chat/completions"))
            .header("x-bon-n", "4")
            .json(&request(0))
            .send()
            .await
            .unwrap();
        assert_eq!(resp.status(), 200);
        assert_eq!(header(&resp, "x-bon-cache"), "hit", "the binary reads what the in-process replica wrote");
        let resp = client
            .post(format!("http://{wrong_addr}/v1/chat/completions"))
            .header("x-bon-n", "4")
            .json(&request(0))
            .send()
            .await
            .unwrap();
        assert_eq!(resp.status(), 200, "a refused password is a miss, not a failure");
        a.stop().await;
    });
    for c in [&mut child, &mut wrong] {
        Command::new("kill").args(["-TERM", &c.id().to_string()]).status().unwrap();
        exits_cleanly(c, Duration::from_secs(10));
    }
    log.extend(rest.iter());
    wrong_log.extend(wrong_rest.iter());
    let text = format!("{}\n{}", log.join("\n"), wrong_log.join("\n"));
    assert!(text.contains("shared cache"), "the refused password is logged as a failure: {text}");
    for secret in [PASSWORD, "wrong-pw-6e6e6e"] {
        assert!(!text.contains(secret), "{secret} leaked into the log");
    }
    rt.block_on(async {
        up.verify().await;
        other.verify().await;
    });
    drop(redis);
}

#[tokio::test]
async fn a_degraded_outcome_is_cached_nowhere() {
    let redis = Redis::start(None).await;
    // Candidate 2 of every call fails: Best-of-3 of 4, degraded. Three calls, all of them go upstream.
    let mut behaviours: Vec<Behaviour> = answers().into_iter().map(Behaviour::Answer).collect();
    behaviours[2] = Behaviour::Status(500, json!({"error": {"message": "overloaded"}}));
    let up = mock_upstream(BySeed::new(0, behaviours), 3 * 4).await;
    let a = spawn_app(config(&up.uri(), &["--cache-redis", &redis.url()])).await;
    let b = spawn_app(config(&up.uri(), &["--cache-redis", &redis.url()])).await;
    for app in [&a, &a, &b] {
        let resp = app.chat(request(0), &[("x-bon-n", "4")]).await;
        assert_eq!(resp.status(), 200);
        assert_eq!(header(&resp, "x-bon-cache"), "miss", "neither the local tier nor Redis holds it");
    }
    assert!(redis.keys().await.is_empty(), "never written to the shared tier");
    let page = a.metrics().await;
    assert_eq!(metric(&page, "bon_cache_degraded_total{reason=\"candidates-failed\"}"), 2.0);
    assert_eq!(metric(&page, "bon_cache_requests_total{result=\"hit\"}"), 0.0);
    assert_eq!(metric(&page, "bon_cache_evictions_total{cause=\"expired\"}"), 0.0, "not counted as an eviction");
    a.stop().await;
    b.stop().await;
    up.verify().await;
}
