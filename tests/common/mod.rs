//! Test harness: the app in-process on an ephemeral port, with the real tiny reward model through ONNX Runtime and a
//! fake upstream that answers per seed.

#![allow(dead_code, reason = "each test binary uses a different part of the harness")]
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic, reason = "tests fail loudly")]

use std::{
    collections::HashMap,
    net::SocketAddr,
    path::PathBuf,
    sync::{
        Arc, Mutex,
        atomic::{AtomicUsize, Ordering},
    },
    time::Duration,
};

pub mod process;
pub mod redis;
pub mod streamer;

use bon_proxy::{AppState, config::Config, serve};
use clap::Parser;
use serde_json::{Value, json};
use tokio_util::sync::CancellationToken;
use wiremock::{Mock, MockServer, Request, Respond, ResponseTemplate, matchers};

pub fn fixture(name: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("models/fixtures").join(name)
}

/// `reference.json` of a fixture: what `transformers` computed.
pub fn reference(name: &str) -> Vec<Value> {
    let text = std::fs::read_to_string(fixture(name).join("reference.json")).unwrap();
    let v: Value = serde_json::from_str(&text).unwrap();
    v["cases"].as_array().unwrap().clone()
}

/// The four `capital_*` answers and their reference scores, in order.
pub fn capital_answers() -> Vec<(String, f32)> {
    reference("tiny-qwen3-chatml")
        .iter()
        .filter(|c| c["name"].as_str().unwrap().starts_with("capital_"))
        .map(|c| (c["response"].as_str().unwrap().to_owned(), c["score"].as_f64().unwrap() as f32))
        .collect()
}

pub const CAPITAL_QUESTION: &str = "What is the capital of France?";

/// A config for tests: the tiny decoder reward model, `upstream` as the upstream, then `extra` flags.
pub fn config(upstream: &str, extra: &[&str]) -> Config {
    let model = fixture("tiny-qwen3-chatml");
    let mut args =
        vec!["bon-proxy", "--upstream", upstream, "--reward-model", model.to_str().unwrap(), "--device", "cpu"];
    args.extend_from_slice(extra);
    Config::try_parse_from(args).unwrap()
}

pub struct TestApp {
    pub addr: SocketAddr,
    pub base: String,
    pub state: AppState,
    pub shutdown: CancellationToken,
    pub client: reqwest::Client,
    server: tokio::task::JoinHandle<std::io::Result<()>>,
}

/// Builds the real state (real scorer, real upstream client) and serves it on 127.0.0.1:0.
pub async fn spawn_app(cfg: Config) -> TestApp {
    let shutdown = CancellationToken::new();
    let state = AppState::build(cfg, shutdown.clone()).await.unwrap();
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    #[expect(clippy::disallowed_methods, reason = "the server under test runs beside the test")]
    let server = tokio::spawn(serve(listener, state.clone(), shutdown.clone()));
    TestApp { addr, base: format!("http://{addr}"), state, shutdown, client: reqwest::Client::new(), server }
}

impl TestApp {
    pub async fn chat(&self, body: Value, headers: &[(&str, &str)]) -> reqwest::Response {
        let mut req = self.client.post(format!("{}/v1/chat/completions", self.base)).json(&body);
        for (k, v) in headers {
            req = req.header(*k, *v);
        }
        req.send().await.unwrap()
    }

    pub async fn metrics(&self) -> String {
        self.client.get(format!("{}/metrics", self.base)).send().await.unwrap().text().await.unwrap()
    }

    pub async fn stop(self) {
        self.shutdown.cancel();
        let _ = tokio::time::timeout(Duration::from_secs(10), self.server).await;
    }
}

/// A chat request for the capital question.
pub fn capital_request() -> Value {
    json!({"model": "fake-llm", "messages": [{"role": "user", "content": CAPITAL_QUESTION}]})
}

/// A chat completion as Ollama's `/v1` returns it (note the fixed, non-unique id).
pub fn completion(text: &str, completion_tokens: u64) -> Value {
    json!({
        "id": "chatcmpl-123", "object": "chat.completion", "created": 1_700_000_000, "model": "fake-llm",
        "system_fingerprint": "fp_ollama",
        "choices": [{"index": 0, "message": {"role": "assistant", "content": text}, "finish_reason": "stop"}],
        "usage": {"prompt_tokens": 10, "completion_tokens": completion_tokens, "total_tokens": 10 + completion_tokens}
    })
}

/// What the fake does for a candidate.
#[derive(Clone)]
pub enum Behaviour {
    Answer(String),
    /// An answer stopped by the length limit (`finish_reason: "length"`).
    Cut(String),
    Status(u16, Value),
    Delay(Duration, String),
    Garbage,
    NoChoices,
    /// This whole completion body.
    Body(Value),
}

/// Answers each request according to `(seed - base) mod len`, and records the seeds it saw.
#[derive(Clone)]
pub struct BySeed {
    pub base: i64,
    pub behaviours: Vec<Behaviour>,
    pub seeds: Arc<Mutex<Vec<i64>>>,
    pub bodies: Arc<Mutex<Vec<Value>>>,
}

impl BySeed {
    pub fn new(base: i64, behaviours: Vec<Behaviour>) -> Self {
        Self { base, behaviours, seeds: Default::default(), bodies: Default::default() }
    }

    pub fn answers(base: i64, texts: &[String]) -> Self {
        Self::new(base, texts.iter().cloned().map(Behaviour::Answer).collect())
    }
}

impl Respond for BySeed {
    fn respond(&self, request: &Request) -> ResponseTemplate {
        let body: Value = serde_json::from_slice(&request.body).unwrap();
        let seed = body["seed"].as_i64().expect("every candidate carries a seed");
        self.seeds.lock().unwrap().push(seed);
        self.bodies.lock().unwrap().push(body);
        let i = (seed - self.base).rem_euclid(self.behaviours.len() as i64) as usize;
        match &self.behaviours[i] {
            Behaviour::Answer(text) => ResponseTemplate::new(200).set_body_json(completion(text, 5 + i as u64)),
            Behaviour::Cut(text) => {
                let mut body = completion(text, 5 + i as u64);
                body["choices"][0]["finish_reason"] = json!("length");
                ResponseTemplate::new(200).set_body_json(body)
            }
            Behaviour::Status(code, body) => ResponseTemplate::new(*code).set_body_json(body.clone()),
            Behaviour::Delay(d, text) => {
                ResponseTemplate::new(200).set_body_json(completion(text, 5 + i as u64)).set_delay(*d)
            }
            Behaviour::Garbage => ResponseTemplate::new(200).set_body_string("{\"choices\": [oops"),
            Behaviour::NoChoices => ResponseTemplate::new(200).set_body_json(json!({"choices": []})),
            Behaviour::Body(body) => ResponseTemplate::new(200).set_body_json(body.clone()),
        }
    }
}

/// A wiremock upstream serving `responder` on `/v1/chat/completions`, expecting exactly `calls` calls.
pub async fn mock_upstream(responder: BySeed, calls: u64) -> MockServer {
    let server = MockServer::start().await;
    Mock::given(matchers::method("POST"))
        .and(matchers::path("/v1/chat/completions"))
        .respond_with(responder)
        .expect(calls)
        .mount(&server)
        .await;
    server
}

/// Parses `x-bon-scores` (`-` for unscored candidates).
pub fn header_scores(resp: &reqwest::Response) -> Vec<Option<f32>> {
    header(resp, "x-bon-scores").split(',').map(|s| s.parse().ok()).collect()
}

pub fn header(resp: &reqwest::Response, name: &str) -> String {
    resp.headers().get(name).map(|v| v.to_str().unwrap().to_owned()).unwrap_or_default()
}

/// The JSON chunks of an SSE body (`data:` lines, `[DONE]` left out).
pub fn sse_chunks(text: &str) -> Vec<Value> {
    text.lines()
        .filter_map(|l| l.strip_prefix("data: "))
        .filter(|d| *d != "[DONE]")
        .map(|d| serde_json::from_str(d).unwrap())
        .collect()
}

/// Reads one metric sample (`name{labels} value`) from a Prometheus text page; 0 when absent.
pub fn metric(page: &str, series: &str) -> f64 {
    page.lines()
        .find_map(|l| l.strip_prefix(series).and_then(|rest| rest.strip_prefix(' ')))
        .map(|v| v.trim().parse().unwrap())
        .unwrap_or(0.0)
}

/// An upstream that counts requests started and requests dropped before they finished (the client went away).
pub struct CountingUpstream {
    pub addr: SocketAddr,
    pub started: Arc<AtomicUsize>,
    pub dropped: Arc<AtomicUsize>,
}

struct DropCounter(Arc<AtomicUsize>, bool);

impl Drop for DropCounter {
    fn drop(&mut self) {
        if !self.1 {
            self.0.fetch_add(1, Ordering::SeqCst);
        }
    }
}

/// Every request sleeps `delay` before answering.
pub async fn counting_upstream(delay: Duration) -> CountingUpstream {
    scripted_upstream(0, vec![(delay, "late answer".into())]).await
}

/// The candidate with seed `base + i` sleeps `script[i % len].0`, then answers `script[i % len].1`; requests started
/// and dropped before they answered are counted.
pub async fn scripted_upstream(base: i64, script: Vec<(Duration, String)>) -> CountingUpstream {
    use axum::{Json, Router, extract::State, routing::post};
    type Shared = (Arc<AtomicUsize>, Arc<AtomicUsize>, Arc<Vec<(Duration, String)>>, i64);
    let started = Arc::new(AtomicUsize::new(0));
    let dropped = Arc::new(AtomicUsize::new(0));
    let app = Router::new()
        .route(
            "/v1/chat/completions",
            post(|State((started, dropped, script, base)): State<Shared>, Json(body): Json<Value>| async move {
                started.fetch_add(1, Ordering::SeqCst);
                let mut guard = DropCounter(dropped, false);
                let seed = body["seed"].as_i64().unwrap_or(base);
                let (delay, text) = &script[(seed - base).rem_euclid(script.len() as i64) as usize];
                tokio::time::sleep(*delay).await;
                guard.1 = true;
                Json(completion(text, 3))
            }),
        )
        .with_state((started.clone(), dropped.clone(), Arc::new(script), base));
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    #[expect(clippy::disallowed_methods, reason = "the fake upstream runs beside the test")]
    tokio::spawn(async move { axum::serve(listener, app).await });
    CountingUpstream { addr, started, dropped }
}

/// The text inside the `kind` fence (`ANSWER`, `ANSWER A`, `REQUEST`, ...) of a judge prompt.
pub fn fenced<'a>(prompt: &'a str, kind: &str) -> Option<&'a str> {
    let start = prompt.find(&format!("<<<BEGIN {kind} "))?;
    let body = start + prompt[start..].find(">>>\n")? + 4;
    let end = body + prompt[body..].find(&format!("\n<<<END {kind} "))?;
    Some(&prompt[body..end])
}

/// Waits until `cond` holds (polling), or fails after `limit`.
pub async fn eventually(limit: Duration, mut cond: impl FnMut() -> bool) {
    let start = std::time::Instant::now();
    while !cond() {
        assert!(start.elapsed() < limit, "condition not met within {limit:?}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

pub fn seeds_seen(r: &BySeed) -> Vec<i64> {
    let mut s = r.seeds.lock().unwrap().clone();
    s.sort_unstable();
    s
}

pub fn count_by<T: std::hash::Hash + Eq>(items: impl IntoIterator<Item = T>) -> HashMap<T, usize> {
    let mut m = HashMap::new();
    for i in items {
        *m.entry(i).or_insert(0) += 1;
    }
    m
}
