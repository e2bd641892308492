//! `bon::run` against a fake upstream and a fake scorer (no I/O; paused time makes the timeouts deterministic).

use std::{
    sync::{Arc, Mutex, atomic::AtomicUsize},
    time::Duration,
};

use futures::{FutureExt, StreamExt, future::BoxFuture};
use serde_json::{Map, Value, json};

use super::*;
use crate::{
    metrics::Metrics,
    openai::{Choice, Content},
    reward::{RewardError, Score, ScoreInput},
    upstream::{Streamed, Upstream, UpstreamN, UpstreamRequest},
};

/// What the fake upstream does for the candidate with seed offset `i`.
#[derive(Clone)]
enum Act {
    Say(&'static str),
    /// Says this and stops at the length limit (`finish_reason: "length"`).
    Cut(&'static str),
    /// Says this text (built at run time: loops).
    SayOwned(String),
    Fail(UpstreamError),
    Hang,
    /// Says this with `logprobs`: every word a token whose top log-probabilities are all minus the given
    /// confidence (so that is its token confidence); `true`: stopped by the length limit.
    Sure(&'static str, f64, bool),
    /// Says this with `logprobs`: its first k words at confidence `a`, the rest at `b` (a confidence that
    /// collapses when b < a). Streamed a word per delta, each with its `logprobs` entry.
    Collapse(String, f64, usize, f64),
}

struct FakeUpstream {
    base: i64,
    acts: Vec<Act>,
    seen: Mutex<Vec<Map<String, Value>>>,
    /// Answer `n = k` with k choices (llama.cpp, vLLM), rather than ignore it (Ollama).
    honours_n: bool,
    /// How native `n` is split (a pool's `shares`); None: one request.
    split: Option<Vec<u32>>,
    /// Stream `stream: true` requests one character per delta, 10 ms apart (else answer them whole).
    streams: bool,
    /// Answer `stream: true` with a 400.
    refuses_stream: bool,
    /// Streams dropped by the proxy before they ended.
    closed_early: Arc<AtomicUsize>,
}

/// Counts a stream dropped before it ended.
struct EarlyClose(Arc<AtomicUsize>, bool);

impl EarlyClose {
    fn ended(mut self) {
        self.1 = true;
    }
}

impl Drop for EarlyClose {
    fn drop(&mut self) {
        if !self.1 {
            self.0.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
        }
    }
}

impl Upstream for FakeUpstream {
    fn shares(&self, n: u32) -> Vec<u32> {
        self.split.clone().unwrap_or_else(|| vec![n])
    }

    fn chat(
        &self,
        req: UpstreamRequest,
        _auth: Option<Arc<str>>,
    ) -> BoxFuture<'_, Result<ChatCompletion, UpstreamError>> {
        let body = req.to_map();
        let i = (body["seed"].as_i64().unwrap() - self.base) as usize;
        let n = body.get("n").and_then(Value::as_u64).unwrap_or(1) as usize;
        self.seen.lock().unwrap().push(body);
        if self.honours_n && n > 1 {
            let mut c = completion("");
            c.choices = (0..n)
                .map(|k| match &self.acts[i + k] {
                    Act::Say(t) => completion(t).choices.remove(0),
                    _ => unreachable!("native fakes only say things"),
                })
                .collect();
            return async move { Ok(c) }.boxed();
        }
        let act = self.acts[i].clone();
        async move {
            match act {
                Act::Say(text) => Ok(completion(text)),
                Act::SayOwned(text) => Ok(completion(&text)),
                Act::Cut(text) => {
                    let mut c = completion(text);
                    c.choices[0].finish_reason = Some("length".into());
                    Ok(c)
                }
                Act::Fail(e) => Err(e),
                Act::Hang => futures::future::pending().await,
                Act::Sure(text, confidence, cut) => Ok(sure(text, confidence, cut)),
                Act::Collapse(text, a, k, b) => Ok(scripted(&text, |w| if w < k { a } else { b }, false)),
            }
        }
        .boxed()
    }

    fn chat_stream(
        &self,
        req: UpstreamRequest,
        auth: Option<Arc<str>>,
    ) -> BoxFuture<'_, Result<Streamed, UpstreamError>> {
        let body = req.to_map();
        assert_eq!(body["stream"], json!(true));
        assert_eq!(body["stream_options"], json!({"include_usage": true}));
        if self.refuses_stream {
            return async { Err(status(400, "streaming is not supported")) }.boxed();
        }
        if !self.streams {
            return self.chat(req.stream(false), auth).map(|r| r.map(Streamed::Whole)).boxed();
        }
        let i = (body["seed"].as_i64().unwrap() - self.base) as usize;
        self.seen.lock().unwrap().push(body);
        let pieces: Vec<(String, Option<Value>)> = match self.acts[i].clone() {
            Act::Say(t) | Act::Cut(t) => t.chars().map(|c| (c.to_string(), None)).collect(),
            Act::SayOwned(t) => t.chars().map(|c| (c.to_string(), None)).collect(),
            Act::Sure(t, confidence, cut) => word_deltas(sure(t, confidence, cut)),
            Act::Collapse(t, a, k, b) => word_deltas(scripted(&t, |w| if w < k { a } else { b }, false)),
            Act::Fail(e) => return async move { Err(e) }.boxed(),
            Act::Hang => return async { Ok(Streamed::Chunks(futures::stream::pending().boxed())) }.boxed(),
        };
        let chars = pieces;
        let guard = EarlyClose(self.closed_early.clone(), false);
        let chunks = futures::stream::unfold((0, guard), move |(k, guard)| {
            let chars = chars.clone();
            async move {
                tokio::time::sleep(Duration::from_millis(10)).await;
                let chunk = |delta: Value, finish: Value| json!({"id": "s", "model": "m", "choices": [{"index": 0, "delta": delta, "finish_reason": finish}]});
                match k.cmp(&chars.len()) {
                    std::cmp::Ordering::Less => {
                        let mut c = chunk(json!({"content": chars[k].0}), Value::Null);
                        if let Some(entry) = &chars[k].1 {
                            c["choices"][0]["logprobs"] = json!({"content": [entry]});
                        }
                        Some((Ok(c), (k + 1, guard)))
                    }
                    std::cmp::Ordering::Equal => {
                        let mut last = chunk(json!({}), json!("stop"));
                        last["usage"] = json!({"prompt_tokens": 7, "completion_tokens": chars.len(), "total_tokens": 7 + chars.len()});
                        Some((Ok(last), (k + 1, guard)))
                    }
                    std::cmp::Ordering::Greater => {
                        guard.ended();
                        None
                    }
                }
            }
        });
        async move { Ok(Streamed::Chunks(chunks.boxed())) }.boxed()
    }

    fn models(&self, _auth: Option<Arc<str>>) -> BoxFuture<'_, Result<Value, UpstreamError>> {
        async { Ok(json!({"data": []})) }.boxed()
    }
}

fn completion(text: &str) -> ChatCompletion {
    ChatCompletion {
        id: "same".into(),
        object: "chat.completion".into(),
        created: 1,
        model: "m".into(),
        choices: vec![Choice {
            index: 0,
            message: Message { role: "assistant".into(), content: Some(Content::Text(text.into())), extra: Map::new() },
            finish_reason: Some("stop".into()),
            extra: Map::new(),
        }],
        usage: Some(Usage {
            prompt_tokens: 7,
            completion_tokens: text.len() as u64,
            total_tokens: 7 + text.len() as u64,
        }),
        extra: Map::new(),
    }
}

/// A completion whose `logprobs` give every token the confidence `confidence` (five alternatives each).
fn sure(text: &str, confidence: f64, cut: bool) -> ChatCompletion {
    scripted(text, |_| confidence, cut)
}

/// A completion whose `logprobs` give its k-th word (a token) the confidence `confidence(k)`.
fn scripted(text: &str, confidence: impl Fn(usize) -> f64, cut: bool) -> ChatCompletion {
    let mut c = completion(text);
    let tokens: Vec<Value> = text
        .split_whitespace()
        .enumerate()
        .map(|(k, w)| {
            let top: Vec<Value> = (0..5).map(|_| json!({"token": w, "logprob": -confidence(k)})).collect();
            json!({"token": w, "logprob": -0.01, "top_logprobs": top})
        })
        .collect();
    c.choices[0].extra.insert("logprobs".into(), json!({"content": tokens}));
    if cut {
        c.choices[0].finish_reason = Some("length".into());
    }
    c
}

/// A scripted completion as stream deltas: a word (with its trailing space) per delta, with its `logprobs` entry.
fn word_deltas(c: ChatCompletion) -> Vec<(String, Option<Value>)> {
    let text = c.choices[0].message.text();
    let entries = c.choices[0].extra["logprobs"]["content"].as_array().cloned().unwrap_or_default();
    let words: Vec<&str> = text.split_whitespace().collect();
    let last = words.len().saturating_sub(1);
    words
        .iter()
        .zip(entries)
        .enumerate()
        .map(|(k, (w, e))| (if k < last { format!("{w} ") } else { (*w).to_owned() }, Some(e)))
        .collect()
}

/// Scores a candidate by the number of `!` in it; can be told to fail.
struct FakeScorer {
    fail: bool,
    calls: Mutex<Vec<usize>>,
    calibration: Option<crate::reward::Calibration>,
}

impl Score for FakeScorer {
    fn score(&self, inputs: Vec<ScoreInput>) -> BoxFuture<'_, Result<Vec<f32>, RewardError>> {
        self.calls.lock().unwrap().push(inputs.len());
        let out = if self.fail {
            Err(RewardError::Runtime("boom".into()))
        } else {
            Ok(inputs.iter().map(|i| i.response.text().matches('!').count() as f32).collect())
        };
        async move { out }.boxed()
    }

    fn calibration(&self) -> Option<&crate::reward::Calibration> {
        self.calibration.as_ref()
    }
}

fn scorer(fail: bool) -> FakeScorer {
    FakeScorer { fail, calls: Mutex::new(Vec::new()), calibration: None }
}

fn plan(n: u32, base_seed: i64) -> Plan {
    let mut body = Map::new();
    body.insert("model".into(), json!("m"));
    Plan {
        body: Arc::new(body),
        n,
        base_seed,
        conversation: Arc::from(Vec::new()),
        tools: None,
        upstream_auth: None,
        guard: true,
        prune: None,
        keep_at_least: 1,
        straggler_wait: None,
        select: crate::select::Select::default(),
    }
}

fn upstream(base: i64, acts: Vec<Act>) -> FakeUpstream {
    FakeUpstream {
        base,
        acts,
        seen: Mutex::new(Vec::new()),
        honours_n: false,
        split: None,
        streams: false,
        refuses_stream: false,
        closed_early: Arc::default(),
    }
}

async fn go(
    up: &FakeUpstream,
    sc: &FakeScorer,
    plan: &Plan,
    limit: Duration,
    m: &Metrics,
) -> Result<Outcome, ApiError> {
    generate(up, sc, plan, limit, m, UpstreamN::Fanout).await
}

async fn generate(
    up: &FakeUpstream,
    sc: &FakeScorer,
    plan: &Plan,
    limit: Duration,
    m: &Metrics,
    mode: UpstreamN,
) -> Result<Outcome, ApiError> {
    let generation = Generation {
        upstream: up,
        mode,
        candidate_timeout: limit,
        metrics: m,
        confidence: &crate::select::ConfidenceHistory::new(256, 50.0, 32),
    };
    run(&generation, &selector(sc), plan, None).await
}

/// The fake scorer and no judge.
fn selector(sc: &FakeScorer) -> Selector<'_> {
    Selector { scorer: sc, judge: None, judge_timeout: LIMIT }
}

const LIMIT: Duration = Duration::from_secs(5);

fn status(code: u16, message: &str) -> UpstreamError {
    UpstreamError::Status {
        status: code,
        message: message.into(),
        kind: "invalid_request_error".into(),
        param: None,
        code: None,
    }
}

mod confidence;
mod encoding;
mod prune;
mod run;
mod select;
mod stop;
