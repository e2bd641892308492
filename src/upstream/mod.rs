//! The LLM upstream: anything that serves OpenAI's `POST /v1/chat/completions` (Ollama, llama.cpp's server, vLLM,
//! SGLang). `bon/` talks to it through the `Upstream` trait so it can be tested with a fake.

pub mod args;
mod client;
pub mod forward;
pub mod health;
mod member;
pub mod pool;
mod request;

pub use args::{UpstreamArgs, UpstreamN};
pub use client::{Client, decode_chat};
pub use forward::{Forward, ForwardBody, Forwarded, Head};
pub use pool::{Pool, PoolOptions};
pub use request::UpstreamRequest;

use std::sync::Arc;

use futures::{FutureExt, future::BoxFuture, stream::BoxStream};
use serde_json::Value;

use crate::openai::ChatCompletion;

/// An OpenAI-compatible chat completion backend.
pub trait Upstream: Send + Sync + 'static {
    /// Sends one non-streaming chat completion request (forwarded as it serialises). `auth` is the client's own
    /// bearer token when `--forward-client-auth` is on; otherwise the client's configured key (if any) is used.
    fn chat(
        &self,
        req: UpstreamRequest,
        auth: Option<Arc<str>>,
    ) -> BoxFuture<'_, Result<ChatCompletion, UpstreamError>>;

    /// Sends one chat completion request with `stream: true` (the caller sets it on `req`). An upstream that
    /// answers with a whole completion instead of a stream yields `Streamed::Whole`; so does this default, for
    /// upstreams that cannot stream at all.
    fn chat_stream(
        &self,
        req: UpstreamRequest,
        auth: Option<Arc<str>>,
    ) -> BoxFuture<'_, Result<Streamed, UpstreamError>> {
        self.chat(req.stream(false), auth).map(|r| r.map(Streamed::Whole)).boxed()
    }

    /// `GET /v1/models`, passed through.
    fn models(&self, auth: Option<Arc<str>>) -> BoxFuture<'_, Result<Value, UpstreamError>>;

    /// Any other request, passed through untouched: the answer whatever its status (a 4xx or 5xx is the upstream's
    /// to say), an error only when none came. Upstreams that pass nothing through answer 404 (this default).
    fn forward(&self, req: Forward) -> BoxFuture<'_, Result<Forwarded, UpstreamError>> {
        let _ = req;
        async move {
            Err(UpstreamError::Status {
                status: 404,
                message: "this upstream passes nothing through".into(),
                kind: "not_found_error".into(),
                param: None,
                code: None,
            })
        }
        .boxed()
    }

    /// A health probe: is the upstream there? Any HTTP answer below 500 (401, 404, and 429 and 408: busy) says it
    /// is; a transport error or a 5xx says it is not (the HTTP client also counts a 503 with `Retry-After` as busy).
    /// The HTTP client overrides it so that a probe never queues for a slot behind long generations.
    fn probe(&self) -> BoxFuture<'_, Result<(), UpstreamError>> {
        async move {
            match self.models(None).await {
                Err(e) if e.says_down() => Err(e),
                // It answered: a 4xx or an odd body still says it is there.
                _ => Ok(()),
            }
        }
        .boxed()
    }

    /// How a native `n = N` request is split: one count per request, summing to `n` (a pool sends one request per
    /// healthy upstream). One request by default.
    fn shares(&self, n: u32) -> Vec<u32> {
        vec![n]
    }
}

/// The `data:` objects of a streamed completion (`chat.completion.chunk`), in order; ends after `[DONE]` or when
/// the upstream closes the stream. Dropping it closes the connection, which stops the upstream generating.
pub type ChunkStream = BoxStream<'static, Result<Value, UpstreamError>>;

/// What a streaming request got back.
pub enum Streamed {
    /// Server-sent events, as asked.
    Chunks(ChunkStream),
    /// A whole completion: the upstream does not stream.
    Whole(ChatCompletion),
}

/// Why one upstream call failed.
#[derive(Clone, Debug, thiserror::Error, PartialEq, serde::Serialize, serde::Deserialize)]
pub enum UpstreamError {
    /// The upstream answered with a non-2xx status.
    #[error("upstream returned HTTP {status}: {message}")]
    Status { status: u16, message: String, kind: String, param: Option<String>, code: Option<String> },
    /// Connecting or sending failed, or the connection broke mid-body.
    #[error("upstream connection failed: {0}")]
    Transport(String),
    /// The candidate ran past `--candidate-timeout`.
    #[error("candidate timed out after {0:?}")]
    Timeout(std::time::Duration),
    /// The body was not a chat completion.
    #[error("upstream sent an invalid response: {0}")]
    Decode(String),
    /// A completion with no choices.
    #[error("upstream returned no choices")]
    EmptyChoices,
    /// Stopped by the proxy: still generating `--straggler-wait` after half of the candidates had finished.
    #[error("stopped as a straggler: still generating {0:?} after half of the candidates had finished")]
    Straggler(std::time::Duration),
    /// Stopped by the proxy: the vote was decided whatever this candidate would have answered.
    #[error("stopped: the vote was decided without this candidate")]
    Agreed,
}

impl UpstreamError {
    /// Low-cardinality cause, the `outcome` label of `bon_candidates_total`.
    pub fn kind(&self) -> &'static str {
        match self {
            UpstreamError::Status { status, .. } if *status >= 500 => "http_5xx",
            UpstreamError::Status { status: 429, .. } => "http_429",
            UpstreamError::Status { .. } => "http_4xx",
            UpstreamError::Transport(_) => "transport",
            UpstreamError::Timeout(_) => "timeout",
            UpstreamError::Decode(_) => "decode",
            UpstreamError::EmptyChoices => "empty",
            UpstreamError::Straggler(_) => "straggler",
            UpstreamError::Agreed => "agreed",
        }
    }

    /// A failure that says more about the upstream than about the request: worth retrying on another one
    /// (transport errors, timeouts, 5xx, 429, 408). Which of them also mark it down: `says_down` and the pool.
    pub fn is_transient(&self) -> bool {
        match self {
            UpstreamError::Transport(_) | UpstreamError::Timeout(_) => true,
            UpstreamError::Status { status, .. } => *status >= 500 || *status == 429 || *status == 408,
            _ => false,
        }
    }

    /// What a probe reads as "gone": a failed connection or an answer of 500 or above (a timeout is the pool's to
    /// judge: slow is not dead).
    pub fn says_down(&self) -> bool {
        match self {
            UpstreamError::Transport(_) => true,
            UpstreamError::Status { status, .. } => *status >= 500,
            _ => false,
        }
    }

    /// A client error that every candidate would hit the same way (unknown model, bad parameter), as opposed to a
    /// transient one (429, 408) worth nothing to retry here either but not the client's fault.
    pub fn is_client_error(&self) -> bool {
        matches!(self, UpstreamError::Status { status, .. } if (400..500).contains(status) && *status != 429 && *status != 408)
    }
}
