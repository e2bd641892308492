//! The real binary: CLI and environment wiring, start-up errors before binding, SIGTERM exits cleanly.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic, reason = "tests fail loudly")]

mod common;

use std::{process::Command, time::Duration};

use common::{
    fixture,
    process::{BIN, exits_cleanly, start, start_logged},
};

#[test]
fn serves_from_env_configuration_and_exits_cleanly_on_sigterm() {
    let (mut child, addr, log) = start(
        Command::new(BIN)
            .env("BON_LISTEN", "127.0.0.1:0")
            .env("BON_REWARD_MODEL", fixture("tiny-qwen3-chatml"))
            .env("BON_UPSTREAM", "http://127.0.0.1:9")
            .env("BON_DEVICE", "cpu")
            .env("BON_LOG", "info"),
    );
    assert!(log.iter().any(|l| l.contains("reward model loaded") && l.contains("provider=\"cpu\"")), "{log:?}");
    let rt = tokio::runtime::Runtime::new().unwrap();
    rt.block_on(async {
        let health = reqwest::get(format!("http://{addr}/health")).await.unwrap();
        assert_eq!(health.status(), 200);
        // Nothing listens on the upstream's port: the proxy runs, and /ready says what is missing once the health
        // prober (running from start-up; /ready never probes inline) has found it.
        let started = std::time::Instant::now();
        let body: serde_json::Value = loop {
            let ready = reqwest::get(format!("http://{addr}/ready")).await.unwrap();
            if ready.status() == 503 {
                break ready.json().await.unwrap();
            }
            assert!(started.elapsed() < Duration::from_secs(10), "the prober never found the dead upstream");
            tokio::time::sleep(Duration::from_millis(20)).await;
        };
        assert_eq!(body["status"], "upstream_down");
        assert_eq!(body["upstreams"][0]["name"], "0");
        assert_eq!(body["upstreams"][0]["state"], "down");
        assert!(body["upstreams"][0]["error"].as_str().unwrap().contains("connection"), "{body}");
    });
    let status = Command::new("kill").args(["-TERM", &child.id().to_string()]).status().unwrap();
    assert!(status.success());
    exits_cleanly(&mut child, Duration::from_secs(10));
}

fn fails_with(args: &[&str], needle: &str) {
    let out = Command::new(BIN).args(args).env_remove("BON_REWARD_MODEL").output().unwrap();
    assert!(!out.status.success());
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains(needle), "expected {needle:?} in:\n{stderr}");
    assert!(!stderr.contains("listening on"), "must fail before binding:\n{stderr}");
}

#[test]
fn bad_configuration_is_one_clear_message_before_binding() {
    let model = fixture("tiny-qwen3-chatml");
    let model = model.to_str().unwrap();
    fails_with(
        &["--listen", "127.0.0.1:0", "--reward-model", model, "--default-n", "40"],
        "--default-n must be within 1..=16",
    );
    fails_with(&["--listen", "127.0.0.1:0", "--reward-model", "/no/such/model"], "/no/such/model");
    fails_with(
        &["--listen", "127.0.0.1:0", "--reward-model", model, "--candidate-timeout", "5m", "--request-timeout", "1m"],
        "--candidate-timeout",
    );
}

#[test]
fn sigterm_turns_ready_off_then_drains_in_flight_requests_and_exits_0() {
    let rt = tokio::runtime::Runtime::new().unwrap();
    let upstream = rt.block_on(common::counting_upstream(Duration::from_millis(1500)));
    let (mut child, addr, _) = start(
        Command::new(BIN)
            .args(["--listen", "127.0.0.1:0", "--device", "cpu", "--shutdown-delay", "1s", "--shutdown-grace", "20s"])
            .arg("--reward-model")
            .arg(fixture("tiny-qwen3-chatml"))
            .arg("--upstream")
            .arg(format!("http://{}", upstream.addr)),
    );
    rt.block_on(async {
        let client = reqwest::Client::new();
        let in_flight = client
            .post(format!("http://{addr}/v1/chat/completions"))
            .header("x-bon-n", "2")
            .json(&common::capital_request())
            .send();
        let watcher = async {
            common::eventually(Duration::from_secs(10), || {
                upstream.started.load(std::sync::atomic::Ordering::SeqCst) == 2
            })
            .await;
            let status = Command::new("kill").args(["-TERM", &child.id().to_string()]).status().unwrap();
            assert!(status.success());
            // Within --shutdown-delay: still serving, but not ready.
            let mut ready = 200;
            for _ in 0..50 {
                ready = client.get(format!("http://{addr}/ready")).send().await.unwrap().status().as_u16();
                if ready == 503 {
                    break;
                }
                tokio::time::sleep(Duration::from_millis(10)).await;
            }
            assert_eq!(ready, 503, "/ready turns 503 on SIGTERM");
        };
        let (resp, ()) = tokio::join!(in_flight, watcher);
        // The request that was in flight when the signal came still gets its answer.
        assert_eq!(resp.unwrap().status(), 200);
    });
    exits_cleanly(&mut child, Duration::from_secs(20));
    assert_eq!(upstream.dropped.load(std::sync::atomic::Ordering::SeqCst), 0, "nothing was cut off");
}

#[test]
fn api_keys_never_reach_the_log() {
    let (mut child, addr, mut log, rest) = start_logged(
        Command::new(BIN)
            .args(["--listen", "127.0.0.1:0", "--device", "cpu", "--upstream", "http://127.0.0.1:9"])
            .args(["--api-key", "sk-accepted-7a7a7a", "--upstream-api-key", "sk-upstream-5b5b5b"])
            .arg("--reward-model")
            .arg(fixture("tiny-qwen3-chatml"))
            .env("BON_LOG", "trace"),
    );
    let rt = tokio::runtime::Runtime::new().unwrap();
    rt.block_on(async {
        let client = reqwest::Client::new();
        for key in ["sk-rejected-9c9c9c", "sk-accepted-7a7a7a"] {
            let resp = client
                .post(format!("http://{addr}/v1/chat/completions"))
                .bearer_auth(key)
                .header("x-bon-n", "2")
                .json(&common::capital_request())
                .send()
                .await
                .unwrap();
            // Rejected, then accepted (and failing upstream, which is down: the error path logs too).
            assert!(resp.status() == 401 || resp.status() == 502, "{}", resp.status());
        }
    });
    Command::new("kill").args(["-TERM", &child.id().to_string()]).status().unwrap();
    exits_cleanly(&mut child, Duration::from_secs(10));
    log.extend(rest.iter());
    assert!(log.len() > 5, "trace logging is on: {log:?}");
    let text = log.join("\n");
    for secret in ["sk-rejected-9c9c9c", "sk-accepted-7a7a7a", "sk-upstream-5b5b5b"] {
        assert!(!text.contains(secret), "{secret} leaked into the log");
    }
}
