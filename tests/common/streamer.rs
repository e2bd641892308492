//! A fake upstream that streams one word per SSE delta (with scripted token `logprobs` when asked) and counts the
//! streams the proxy closes early: pruning and the online confidence stop.

use std::{
    collections::HashMap,
    convert::Infallible,
    net::SocketAddr,
    sync::{
        Arc, Mutex,
        atomic::{AtomicUsize, Ordering},
    },
    time::Duration,
};

use axum::{
    Json, Router,
    extract::State,
    response::{IntoResponse, Response, Sse, sse::Event},
    routing::post,
};
use serde_json::{Value, json};

use super::completion;

/// A text's token confidence by word index.
pub type Script = fn(usize) -> f64;

/// Streams `texts[seed % len]`, one word per delta every `interval`; counts streams started and closed early, and
/// the words sent per seed so far.
#[derive(Clone)]
pub struct Streamer {
    pub texts: Arc<Vec<String>>,
    pub interval: Duration,
    pub started: Arc<AtomicUsize>,
    pub closed_early: Arc<AtomicUsize>,
    pub sent: Arc<Mutex<HashMap<i64, usize>>>,
    /// Per text (same index), the token confidence of its k-th word, each delta carrying a `logprobs` entry whose
    /// five alternatives all have minus that log-probability; empty: no `logprobs`.
    pub confidence: Arc<Vec<Script>>,
    /// The request bodies, as they came.
    pub bodies: Arc<Mutex<Vec<Value>>>,
}

struct Early(Arc<AtomicUsize>, bool);

impl Drop for Early {
    fn drop(&mut self) {
        if !self.1 {
            self.0.fetch_add(1, Ordering::SeqCst);
        }
    }
}

/// A token's `logprobs` entry whose five alternatives all have log-probability `-confidence`.
fn logprobs_entry(token: &str, confidence: f64) -> Value {
    let top: Vec<Value> = (0..5).map(|_| json!({"token": "x", "logprob": -confidence})).collect();
    json!({"token": token, "logprob": -0.01, "top_logprobs": top})
}

fn chunk(delta: Value, finish: Value) -> Value {
    json!({"id": "chatcmpl-up", "object": "chat.completion.chunk", "created": 1, "model": "fake-llm",
           "choices": [{"index": 0, "delta": delta, "finish_reason": finish}]})
}

async fn stream_handler(State(s): State<Streamer>, Json(body): Json<Value>) -> Response {
    s.bodies.lock().unwrap().push(body.clone());
    let seed = body["seed"].as_i64().unwrap();
    let index = seed.rem_euclid(s.texts.len() as i64) as usize;
    let text = s.texts[index].clone();
    if body["stream"] != json!(true) {
        let mut whole = completion(&text, text.split_whitespace().count() as u64);
        if let Some(confidence) = s.confidence.get(index) {
            let entries: Vec<Value> =
                text.split_inclusive(' ').enumerate().map(|(k, w)| logprobs_entry(w, confidence(k))).collect();
            whole["choices"][0]["logprobs"] = json!({"content": entries});
        }
        return Json(whole).into_response();
    }
    assert_eq!(body["stream_options"]["include_usage"], json!(true));
    s.started.fetch_add(1, Ordering::SeqCst);
    let words: Vec<String> = text.split_inclusive(' ').map(str::to_owned).collect();
    let early = Early(s.closed_early.clone(), false);
    let events = futures::stream::unfold((0usize, early, s, words), move |(k, mut early, s, words)| async move {
        tokio::time::sleep(s.interval).await;
        let data = if k < words.len() {
            *s.sent.lock().unwrap().entry(seed).or_default() += 1;
            let mut c = chunk(json!({"content": words[k]}), Value::Null);
            if let Some(confidence) = s.confidence.get(index) {
                c["choices"][0]["logprobs"] = json!({"content": [logprobs_entry(&words[k], confidence(k))]});
            }
            c.to_string()
        } else if k == words.len() {
            chunk(json!({}), json!("stop")).to_string()
        } else if k == words.len() + 1 {
            let n = words.len();
            json!({"id": "chatcmpl-up", "object": "chat.completion.chunk", "model": "fake-llm", "choices": [],
                   "usage": {"prompt_tokens": 10, "completion_tokens": n, "total_tokens": 10 + n}})
            .to_string()
        } else if k == words.len() + 2 {
            early.1 = true;
            "[DONE]".to_owned()
        } else {
            return None;
        };
        Some((Ok::<_, Infallible>(Event::default().data(data)), (k + 1, early, s, words)))
    });
    Sse::new(events).into_response()
}

pub async fn streamer(texts: Vec<String>, interval: Duration) -> (SocketAddr, Streamer) {
    scripted_streamer(texts, Vec::new(), interval).await
}

/// `streamer` whose texts carry token `logprobs`: text i's k-th word has confidence `confidence[i](k)`.
pub async fn scripted_streamer(
    texts: Vec<String>,
    confidence: Vec<Script>,
    interval: Duration,
) -> (SocketAddr, Streamer) {
    let s = Streamer {
        texts: Arc::new(texts),
        interval,
        started: Arc::default(),
        closed_early: Arc::default(),
        sent: Arc::default(),
        confidence: Arc::new(confidence),
        bodies: Arc::default(),
    };
    let app = Router::new().route("/v1/chat/completions", post(stream_handler)).with_state(s.clone());
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    #[expect(clippy::disallowed_methods, reason = "the fake upstream runs beside the test")]
    tokio::spawn(async move { axum::serve(listener, app).await });
    (addr, s)
}
