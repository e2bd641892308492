//! The pool remembers which members answer requests for `logprobs` without them, and sends such requests to the
//! others while one is routable (never refusing them).

use std::sync::{
    Arc,
    atomic::{AtomicUsize, Ordering},
};

use futures::{FutureExt, future::BoxFuture};
use serde_json::{Value, json};

use super::{Pool, PoolOptions};
use crate::{
    metrics::Metrics,
    openai::ChatCompletion,
    upstream::{Upstream, UpstreamError, UpstreamRequest},
};

/// Answers every chat request, with `logprobs` in its choice or not; counts them.
struct Fake {
    logprobs: bool,
    got: AtomicUsize,
}

impl Upstream for Fake {
    fn chat(&self, _: UpstreamRequest, _: Option<Arc<str>>) -> BoxFuture<'_, Result<ChatCompletion, UpstreamError>> {
        self.got.fetch_add(1, Ordering::SeqCst);
        let mut choice = json!({"index": 0, "message": {"role": "assistant", "content": "4"}, "finish_reason": "stop"});
        if self.logprobs {
            choice["logprobs"] = json!({"content": [{"token": "4", "logprob": -0.1, "top_logprobs": []}]});
        }
        let completion = serde_json::from_value(json!({"id": "x", "choices": [choice]}))
            .map_err(|e| UpstreamError::Decode(e.to_string()));
        async move { completion }.boxed()
    }
    fn models(&self, _: Option<Arc<str>>) -> BoxFuture<'_, Result<Value, UpstreamError>> {
        async { Ok(Value::Null) }.boxed()
    }
}

fn request(logprobs: bool) -> UpstreamRequest {
    let mut body = serde_json::Map::new();
    body.insert("model".into(), json!("m"));
    if logprobs {
        body.insert("logprobs".into(), json!(true));
    }
    UpstreamRequest::new(Arc::new(body))
}

#[tokio::test]
async fn requests_for_logprobs_go_to_the_members_that_return_them_once_one_is_known_not_to() {
    let (without, with) = (
        Arc::new(Fake { logprobs: false, got: AtomicUsize::new(0) }),
        Arc::new(Fake { logprobs: true, got: AtomicUsize::new(0) }),
    );
    let members: Vec<(String, Arc<dyn Upstream>)> =
        vec![("old-ollama".into(), without.clone()), ("llama".into(), with.clone())];
    let pool = Pool::new(members, PoolOptions::default(), Arc::new(Metrics::new().unwrap()));
    for _ in 0..6 {
        pool.chat(request(true), None).await.unwrap();
    }
    assert_eq!(without.got.load(Ordering::SeqCst), 1, "asked once, then remembered");
    assert_eq!(with.got.load(Ordering::SeqCst), 5);
    let status = pool.status();
    assert!(status[0].no_logprobs && !status[1].no_logprobs, "/ready says which");
    // Requests that do not need them still spread over both.
    for _ in 0..4 {
        pool.chat(request(false), None).await.unwrap();
    }
    assert_eq!(without.got.load(Ordering::SeqCst), 3);
    // A stream that needs them (the online confidence stop) goes to the members that return them as well.
    for _ in 0..4 {
        pool.chat_stream(request(true).stream(true), None).await.unwrap();
    }
    assert_eq!((without.got.load(Ordering::SeqCst), with.got.load(Ordering::SeqCst)), (3, 11));
}
