//! The LLM upstream: anything that serves OpenAI's `POST /v1/chat/completions` (Ollama, llama.cpp's server, vLLM,
//! SGLang). `bon/` talks to it through the `Upstream` trait so it can be tested with a fake.

mod client;

pub use client::{Client, decode_chat};

use std::sync::Arc;

use futures::future::BoxFuture;
use serde_json::{Map, Value};

use crate::openai::ChatCompletion;

/// An OpenAI-compatible chat completion backend.
pub trait Upstream: Send + Sync + 'static {
    /// Sends one non-streaming chat completion request (the body is forwarded as is). `auth` is the client's own
    /// bearer token when `--forward-client-auth` is on; otherwise the client's configured key (if any) is used.
    fn chat(
        &self,
        body: Map<String, Value>,
        auth: Option<Arc<str>>,
    ) -> BoxFuture<'_, Result<ChatCompletion, UpstreamError>>;

    /// `GET /v1/models`, passed through.
    fn models(&self, auth: Option<Arc<str>>) -> BoxFuture<'_, Result<Value, UpstreamError>>;
}

/// Why one upstream call failed.
#[derive(Clone, Debug, thiserror::Error, PartialEq)]
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
        }
    }

    /// A client error that every candidate would hit the same way (unknown model, bad parameter), as opposed to a
    /// transient one (429, 408) worth nothing to retry here either but not the client's fault.
    pub fn is_client_error(&self) -> bool {
        matches!(self, UpstreamError::Status { status, .. } if (400..500).contains(status) && *status != 429 && *status != 408)
    }
}
