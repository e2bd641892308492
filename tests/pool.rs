//! A pool of upstreams through HTTP: candidates spread over the pool, a dead upstream is failed over and reported,
//! `/v1/models` comes from a healthy upstream, metrics carry names, never URLs.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic, reason = "tests fail loudly")]

mod common;

use std::time::Duration;

use common::*;
use serde_json::{Value, json};
use wiremock::{Mock, MockServer, ResponseTemplate, matchers};

/// A local port nothing listens on (bound, then released).
/// An address nothing listens on: a privileged port (1, 2, ...), which no other test's ephemeral listener can be
/// handed, unlike the port of a listener bound and dropped (another test of this binary got one and answered,
/// once).
async fn dead_upstream() -> String {
    static NEXT: std::sync::atomic::AtomicU16 = std::sync::atomic::AtomicU16::new(1);
    let port = NEXT.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
    assert!(tokio::net::TcpStream::connect(("127.0.0.1", port)).await.is_err(), "something listens on port {port}");
    format!("http://127.0.0.1:{port}")
}

#[tokio::test]
async fn best_of_8_over_4_upstreams_sends_2_to_each_with_distinct_seeds() {
    let texts: Vec<String> = capital_answers().into_iter().map(|(t, _)| t).collect();
    let responders: Vec<BySeed> = (0..4).map(|_| BySeed::answers(100, &texts)).collect();
    let mut servers = Vec::new();
    for r in &responders {
        // Each upstream answers slowly enough that all 8 candidates are in flight together.
        let slow = BySeed::new(
            100,
            texts.iter().map(|t| Behaviour::Delay(std::time::Duration::from_millis(200), t.clone())).collect(),
        );
        let slow = BySeed { seeds: r.seeds.clone(), bodies: r.bodies.clone(), ..slow };
        servers.push(mock_upstream(slow, 2).await);
    }
    let urls: Vec<String> = servers.iter().map(MockServer::uri).collect();
    let app = spawn_app(config(&urls.join(","), &["--upstream-name", "a,b,c,d"])).await;
    let mut body = capital_request();
    body["seed"] = json!(100);
    let resp = app.chat(body, &[("x-bon-n", "8")]).await;
    assert_eq!(resp.status(), 200);
    assert_eq!(header(&resp, "x-bon-n"), "8");
    assert_eq!(header_scores(&resp).iter().flatten().count(), 8, "every candidate scored");
    let mut all: Vec<i64> = responders.iter().flat_map(seeds_seen).collect();
    all.sort_unstable();
    assert_eq!(all, (100..108).collect::<Vec<_>>(), "candidate i has seed base+i, whichever upstream served it");
    let page = app.metrics().await;
    for name in ["a", "b", "c", "d"] {
        assert_eq!(metric(&page, &format!("bon_upstream_requests_total{{outcome=\"ok\",upstream=\"{name}\"}}")), 2.0);
        assert_eq!(metric(&page, &format!("bon_upstream_inflight{{upstream=\"{name}\"}}")), 0.0);
    }
    for url in &urls {
        assert!(!page.contains(url.trim_start_matches("http://")), "no URL in the metrics");
    }
    app.stop().await;
    for s in servers {
        s.verify().await;
    }
}

#[tokio::test]
async fn a_dead_upstream_still_gets_n_scored_candidates_and_is_reported() {
    let texts: Vec<String> = capital_answers().into_iter().map(|(t, _)| t).collect();
    let responder = BySeed::answers(0, &texts);
    let live = MockServer::start().await;
    Mock::given(matchers::path("/v1/chat/completions")).respond_with(responder.clone()).mount(&live).await;
    let list = json!({"object": "list", "data": [{"id": "smollm2", "object": "model"}]});
    Mock::given(matchers::path("/v1/models"))
        .respond_with(ResponseTemplate::new(200).set_body_json(list.clone()))
        .mount(&live)
        .await;
    let dead = dead_upstream().await;
    // The dead one is first: round-robin would send it the first candidate, unless the prober found it dead first.
    let app = spawn_app(config(&format!("{dead},{}", live.uri()), &["--upstream-name", "dead,live"])).await;

    for round in 0..3 {
        let mut body = capital_request();
        body["seed"] = json!(round * 10);
        let resp = app.chat(body, &[("x-bon-n", "4")]).await;
        assert_eq!(resp.status(), 200, "round {round}");
        assert_eq!(header_scores(&resp).iter().flatten().count(), 4, "round {round}: N scored candidates");
    }
    let page = app.metrics().await;
    // Found dead by the prober (it runs from start-up) or by a candidate that failed over: either way, reported.
    let probed = metric(&page, "bon_upstream_probes_total{outcome=\"down\",upstream=\"dead\"}");
    let failed_over = metric(&page, "bon_upstream_failovers_total{upstream=\"dead\"}");
    assert!(probed + failed_over >= 1.0, "{page}");
    assert_eq!(metric(&page, "bon_upstream_up{upstream=\"dead\"}"), 0.0);
    assert_eq!(metric(&page, "bon_upstream_up{upstream=\"live\"}"), 1.0);
    assert_eq!(metric(&page, "bon_candidates_total{outcome=\"ok\"}"), 12.0, "no candidate was lost");

    let ready = app.client.get(format!("{}/ready", app.base)).send().await.unwrap();
    assert_eq!(ready.status(), 200, "one upstream up is enough");
    let body: Value = ready.json().await.unwrap();
    assert_eq!(body["upstreams"][0]["name"], "dead");
    assert_eq!(body["upstreams"][0]["state"], "down");
    assert!(!body["upstreams"][0]["error"].as_str().unwrap().contains("127.0.0.1"), "no URL in /ready: {body}");
    assert_eq!(body["upstreams"][1]["state"], "up");

    let models = app.client.get(format!("{}/v1/models", app.base)).send().await.unwrap();
    assert_eq!(models.status(), 200);
    assert_eq!(models.json::<Value>().await.unwrap(), list);
    app.stop().await;
}

#[tokio::test]
async fn a_client_error_is_not_retried_on_another_upstream() {
    let bad = json!({"error": {"message": "model \"nope\" not found", "type": "invalid_request_error"}});
    let a = mock_upstream(BySeed::new(0, vec![Behaviour::Status(404, bad.clone())]), 2).await;
    let b = mock_upstream(BySeed::new(0, vec![Behaviour::Status(404, bad)]), 2).await;
    let app = spawn_app(config(&format!("{},{}", a.uri(), b.uri()), &[])).await;
    let resp = app.chat(capital_request(), &[("x-bon-n", "4")]).await;
    // Four candidates, four requests in all (2 each): none retried; the upstream's own 404 comes back.
    assert_eq!(resp.status(), 404);
    let page = app.metrics().await;
    assert_eq!(metric(&page, "bon_upstream_failovers_total{upstream=\"0\"}"), 0.0);
    assert_eq!(metric(&page, "bon_upstream_up{upstream=\"0\"}"), 1.0);
    app.stop().await;
    a.verify().await;
    b.verify().await;
}

#[tokio::test]
async fn every_upstream_down_makes_ready_503() {
    let app = spawn_app(config(&format!("{},{}", dead_upstream().await, dead_upstream().await), &[])).await;
    // The prober runs from start-up; /ready reads what it found.
    let start = std::time::Instant::now();
    let body = loop {
        let (status, body) = ready(&app).await;
        if status == 503 {
            break body;
        }
        assert!(start.elapsed() < Duration::from_secs(10), "{body}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    };
    assert_eq!(body["status"], "upstream_down");
    assert_eq!(body["upstreams"].as_array().unwrap().len(), 2);
    app.stop().await;
}

/// A shared upstream that is slow for everyone: completions take 300 ms, `/v1/models` a minute.
async fn slow_upstream() -> MockServer {
    let server = MockServer::start().await;
    Mock::given(matchers::method("GET"))
        .and(matchers::path("/v1/models"))
        .respond_with(ResponseTemplate::new(200).set_body_json(json!({"data": []})).set_delay(Duration::from_secs(60)))
        .mount(&server)
        .await;
    let texts: Vec<String> = capital_answers().into_iter().map(|(t, _)| t).collect();
    let slow = texts.into_iter().map(|t| Behaviour::Delay(Duration::from_millis(300), t)).collect();
    Mock::given(matchers::method("POST"))
        .and(matchers::path("/v1/chat/completions"))
        .respond_with(BySeed::new(0, slow))
        .mount(&server)
        .await;
    server
}

async fn ready(app: &TestApp) -> (u16, Value) {
    // A /ready that waited on the minute-long probe would run into this client timeout and fail the test.
    let resp = app.client.get(format!("{}/ready", app.base)).timeout(Duration::from_secs(5)).send().await.unwrap();
    (resp.status().as_u16(), resp.json().await.unwrap())
}

#[tokio::test]
async fn replicas_sharing_a_slow_upstream_stay_ready_and_never_mark_it_down() {
    let up = slow_upstream().await;
    let flags = ["--upstream-probe-timeout", "200ms", "--upstream-probe-interval", "300ms"];
    let replicas = [spawn_app(config(&up.uri(), &flags)).await, spawn_app(config(&up.uri(), &flags)).await];
    for app in &replicas {
        let (status, body) = ready(app).await;
        assert_eq!(status, 200, "{body}");
    }
    // Replica 0 serves traffic; replica 1 is idle while its probes of the shared upstream time out again and again.
    assert_eq!(replicas[0].chat(capital_request(), &[("x-bon-n", "2")]).await.status(), 200);
    let probed_out = |page: &str| metric(page, "bon_upstream_probes_total{outcome=\"timeout\",upstream=\"0\"}");
    for app in &replicas {
        let start = std::time::Instant::now();
        while probed_out(&app.metrics().await) < 2.0 {
            assert!(start.elapsed() < Duration::from_secs(20), "the prober runs from start-up");
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }
    let (status, body) = ready(&replicas[0]).await;
    assert_eq!((status, body["upstreams"][0]["state"].as_str()), (200, Some("up")), "{body}");
    let (status, body) = ready(&replicas[1]).await;
    assert_eq!((status, body["upstreams"][0]["state"].as_str()), (200, Some("unknown")), "{body}");
    for app in replicas {
        assert_eq!(metric(&app.metrics().await, "bon_upstream_up{upstream=\"0\"}"), 1.0);
        app.stop().await;
    }
}

#[tokio::test]
async fn a_probe_answered_busy_keeps_an_upstream_and_a_5xx_takes_it_out() {
    let answer = |status: u16, retry_after: bool| {
        let t = ResponseTemplate::new(status).set_body_json(json!({"error": {"message": "busy"}}));
        if retry_after { t.insert_header("retry-after", "5") } else { t }
    };
    let mut servers = Vec::new();
    for template in [answer(429, false), answer(408, false), answer(503, true), answer(503, false), answer(500, false)]
    {
        let server = MockServer::start().await;
        Mock::given(matchers::path("/v1/models")).respond_with(template).mount(&server).await;
        servers.push(server);
    }
    let urls: Vec<String> = servers.iter().map(MockServer::uri).collect();
    let app = spawn_app(config(&urls.join(","), &["--upstream-name", "a,b,c,d,e"])).await;
    let want = ["up", "up", "up", "down", "down"];
    let start = std::time::Instant::now();
    loop {
        let (_, body) = ready(&app).await;
        let states: Vec<&str> = (0..5).map(|i| body["upstreams"][i]["state"].as_str().unwrap()).collect();
        if states == want {
            break;
        }
        assert!(start.elapsed() < Duration::from_secs(10), "{states:?}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    app.stop().await;
}
