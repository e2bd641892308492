//! HTTP client for an OpenAI-compatible upstream, with a concurrency bound shared by every client request.

use std::{sync::Arc, time::Duration};

use eventsource_stream::Eventsource;
use futures::{FutureExt, StreamExt, future::BoxFuture};
use serde_json::Value;
use tokio::sync::Semaphore;

use super::{
    Streamed, Upstream, UpstreamError, UpstreamRequest,
    forward::{Forward, ForwardBody, Forwarded, end_to_end},
};
use crate::openai::ChatCompletion;

/// Largest upstream response body read (a chat completion is far smaller; this stops a broken upstream).
const MAX_RESPONSE_BYTES: usize = 32 * 1024 * 1024;
/// How much of an error body is kept for the message.
const MAX_ERROR_MESSAGE: usize = 2048;

/// `reqwest` client for `{base}/v1/chat/completions`.
pub struct Client {
    http: reqwest::Client,
    /// `{base}/v1/chat/completions` and `{base}/v1/models`, parsed once (parsing per request was ~2 % of an N = 1
    /// request's CPU).
    chat_url: reqwest::Url,
    models_url: reqwest::Url,
    /// The root every passed-through path is joined to.
    base: String,
    api_key: Option<String>,
    slots: Arc<Semaphore>,
}

/// How long connecting to an upstream may take.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(3);

impl Client {
    /// `base` is the upstream's root URL (`http://host:port`, with or without a trailing `/v1`).
    pub fn new(base: &str, api_key: Option<String>, concurrency: usize) -> Result<Self, UpstreamError> {
        let http = reqwest::Client::builder()
            .pool_max_idle_per_host(concurrency)
            .tcp_nodelay(true)
            // A host that drops packets fails to connect (down) rather than look slow (a probe timeout: kept up).
            .connect_timeout(CONNECT_TIMEOUT)
            // An API answers; it does not redirect. Not following also skips reparsing the URL per request.
            .redirect(reqwest::redirect::Policy::none())
            .build()
            .map_err(|e| UpstreamError::Transport(e.to_string()))?;
        let trimmed = base.trim_end_matches('/');
        let base = trimmed.strip_suffix("/v1").unwrap_or(trimmed);
        let url = |path: &str| {
            reqwest::Url::parse(&format!("{base}{path}"))
                // Not echoed: a URL may carry credentials.
                .map_err(|e| UpstreamError::Transport(format!("the upstream URL is not valid: {e}")))
        };
        Ok(Self {
            http,
            chat_url: url("/v1/chat/completions")?,
            models_url: url("/v1/models")?,
            base: base.to_owned(),
            api_key,
            slots: Arc::new(Semaphore::new(concurrency)),
        })
    }

    fn request(&self, method: reqwest::Method, url: &reqwest::Url, auth: Option<&str>) -> reqwest::RequestBuilder {
        let req = self.http.request(method, url.clone());
        match auth.or(self.api_key.as_deref()) {
            Some(key) => req.bearer_auth(key),
            None => req,
        }
    }

    /// One of the upstream's slots, held by the caller for as long as it streams.
    async fn slot(&self) -> Result<tokio::sync::OwnedSemaphorePermit, UpstreamError> {
        self.slots.clone().acquire_owned().await.map_err(|_| UpstreamError::Transport("client closed".into()))
    }

    /// Sends `req` while holding one of the upstream's slots and returns the status and body.
    async fn send(&self, req: reqwest::RequestBuilder) -> Result<(u16, Vec<u8>), UpstreamError> {
        // The permit is held until the body is read; dropping this future (client gone) frees it.
        let _permit = self.slots.acquire().await.map_err(|_| UpstreamError::Transport("client closed".into()))?;
        let resp = req.send().await.map_err(transport)?;
        let status = resp.status().as_u16();
        Ok((status, read_body(resp).await?))
    }
}

async fn read_body(mut resp: reqwest::Response) -> Result<Vec<u8>, UpstreamError> {
    let mut body = Vec::new();
    while let Some(chunk) = resp.chunk().await.map_err(transport)? {
        if body.len() + chunk.len() > MAX_RESPONSE_BYTES {
            return Err(UpstreamError::Decode(format!("response larger than {MAX_RESPONSE_BYTES} bytes")));
        }
        body.extend_from_slice(&chunk);
    }
    Ok(body)
}

impl Upstream for Client {
    fn chat(
        &self,
        body: UpstreamRequest,
        auth: Option<Arc<str>>,
    ) -> BoxFuture<'_, Result<ChatCompletion, UpstreamError>> {
        async move {
            let req = self.request(reqwest::Method::POST, &self.chat_url, auth.as_deref()).json(&body);
            let (status, bytes) = self.send(req).await?;
            decode_chat(status, &bytes)
        }
        .boxed()
    }

    fn chat_stream(
        &self,
        body: UpstreamRequest,
        auth: Option<Arc<str>>,
    ) -> BoxFuture<'_, Result<Streamed, UpstreamError>> {
        async move {
            // The slot is held for as long as the stream lives: dropping the stream frees it and closes the
            // connection, which is what stops the upstream generating (llama.cpp's server frees its slot).
            let permit = self.slot().await?;
            let req = self.request(reqwest::Method::POST, &self.chat_url, auth.as_deref()).json(&body);
            let resp = req.send().await.map_err(transport)?;
            let status = resp.status().as_u16();
            let is_sse = resp
                .headers()
                .get(reqwest::header::CONTENT_TYPE)
                .and_then(|v| v.to_str().ok())
                .is_some_and(|v| v.trim_start().starts_with("text/event-stream"));
            if !(200..300).contains(&status) || !is_sse {
                return decode_chat(status, &read_body(resp).await?).map(Streamed::Whole);
            }
            let events = resp
                .bytes_stream()
                .eventsource()
                .take_while(|e| std::future::ready(!matches!(e, Ok(ev) if ev.data.trim() == "[DONE]")))
                .map(move |e| {
                    let _held = &permit;
                    let event = e.map_err(|e| UpstreamError::Transport(format!("event stream: {e}")))?;
                    decode_chunk(&event.data)
                });
            Ok(Streamed::Chunks(events.boxed()))
        }
        .boxed()
    }

    fn probe(&self) -> BoxFuture<'_, Result<(), UpstreamError>> {
        async move {
            // No slot: a probe must not wait behind generations, or a busy upstream would look dead.
            let resp = self.request(reqwest::Method::GET, &self.models_url, None).send().await.map_err(transport)?;
            let status = resp.status().as_u16();
            // Any answer below 500 says it is there (429 and 408: busy); so does a 503 that says when to come back.
            if status < 500 || (status == 503 && resp.headers().contains_key(reqwest::header::RETRY_AFTER)) {
                return Ok(());
            }
            Err(status_error(status, &read_body(resp).await?))
        }
        .boxed()
    }

    fn models(&self, auth: Option<Arc<str>>) -> BoxFuture<'_, Result<Value, UpstreamError>> {
        async move {
            let (status, bytes) =
                self.send(self.request(reqwest::Method::GET, &self.models_url, auth.as_deref())).await?;
            if !(200..300).contains(&status) {
                return Err(status_error(status, &bytes));
            }
            serde_json::from_slice(&bytes).map_err(|e| UpstreamError::Decode(e.to_string()))
        }
        .boxed()
    }

    fn forward(&self, req: Forward) -> BoxFuture<'_, Result<Forwarded, UpstreamError>> {
        async move {
            let head = &req.head;
            let url = reqwest::Url::parse(&format!("{}{}", self.base, head.path_and_query))
                .map_err(|e| UpstreamError::Transport(format!("the passed-through path is not valid: {e}")))?;
            // Held as long as the answer streams, as a streamed chat candidate holds its slot.
            let permit = self.slot().await?;
            let builder = self.request(head.method.clone(), &url, head.auth.as_deref()).headers(head.headers.clone());
            let builder = match req.body {
                ForwardBody::Whole(bytes) => builder.body(bytes),
                ForwardBody::Stream(body) => builder.body(body),
            };
            let resp = builder.send().await.map_err(transport)?;
            let status = resp.status().as_u16();
            let headers = end_to_end(resp.headers(), false);
            let body = resp
                .bytes_stream()
                .map(move |chunk| {
                    let _held = &permit;
                    chunk.map_err(std::io::Error::other)
                })
                .boxed();
            Ok(Forwarded { status, headers, body })
        }
        .boxed()
    }
}

/// An upstream's answer to a chat completion request: the completion, or why it is not one. Never panics, whatever
/// the bytes (fuzzed by fuzz/fuzz_targets/upstream_response.rs).
pub fn decode_chat(status: u16, body: &[u8]) -> Result<ChatCompletion, UpstreamError> {
    if !(200..300).contains(&status) {
        return Err(status_error(status, body));
    }
    let completion: ChatCompletion = serde_json::from_slice(body).map_err(|e| UpstreamError::Decode(e.to_string()))?;
    if completion.choices.is_empty() {
        return Err(UpstreamError::EmptyChoices);
    }
    Ok(completion)
}

/// One `data:` payload of a streamed completion: a chunk, or the error event an upstream sends mid-stream.
fn decode_chunk(data: &str) -> Result<Value, UpstreamError> {
    let value: Value = serde_json::from_str(data).map_err(|e| UpstreamError::Decode(format!("stream chunk: {e}")))?;
    if value.get("error").is_some() {
        return Err(status_error(500, data.as_bytes()));
    }
    Ok(value)
}

fn transport(e: reqwest::Error) -> UpstreamError {
    // reqwest's Display hides the cause ("error sending request"); the chain says "connection refused" etc. The URL
    // is left out: it may carry credentials (`http://user:pass@host`), and the text reaches logs and `/ready`.
    let e = e.without_url();
    let mut text = e.to_string();
    let mut source = std::error::Error::source(&e);
    while let Some(s) = source {
        text.push_str(": ");
        text.push_str(&s.to_string());
        source = s.source();
    }
    UpstreamError::Transport(text)
}

/// Reads an error body in any of the shapes upstreams use: OpenAI's `{"error": {...}}` (vLLM, llama.cpp, Ollama's
/// `/v1`), `{"error": "text"}` (Ollama's native API), or plain text.
fn status_error(status: u16, body: &[u8]) -> UpstreamError {
    let (mut kind, mut param, mut code) = (String::new(), None, None);
    let mut message = match serde_json::from_slice::<Value>(body) {
        Ok(Value::Object(obj)) => match obj.get("error") {
            Some(Value::Object(err)) => {
                kind = err.get("type").and_then(Value::as_str).unwrap_or_default().to_owned();
                param = err.get("param").and_then(Value::as_str).map(str::to_owned);
                code = err.get("code").and_then(value_text);
                err.get("message").and_then(Value::as_str).unwrap_or_default().to_owned()
            }
            Some(Value::String(text)) => text.clone(),
            _ => obj.get("message").and_then(Value::as_str).unwrap_or_default().to_owned(),
        },
        _ => String::from_utf8_lossy(body).trim().to_owned(),
    };
    if message.is_empty() {
        message = format!("HTTP {status}");
    }
    if message.len() > MAX_ERROR_MESSAGE {
        let mut cut = MAX_ERROR_MESSAGE;
        while !message.is_char_boundary(cut) {
            cut -= 1;
        }
        message.truncate(cut);
        message.push('…');
    }
    UpstreamError::Status { status, message, kind, param, code }
}

fn value_text(v: &Value) -> Option<String> {
    match v {
        Value::String(s) => Some(s.clone()),
        Value::Number(n) => Some(n.to_string()),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn error_bodies_in_every_shape() {
        let e = status_error(
            404,
            br#"{"error":{"message":"model \"x\" not found","type":"api_error","param":null,"code":null}}"#,
        );
        assert_eq!(
            e,
            UpstreamError::Status {
                status: 404,
                message: "model \"x\" not found".into(),
                kind: "api_error".into(),
                param: None,
                code: None
            }
        );
        let e = status_error(400, br#"{"error":{"code":400,"message":"bad","type":"invalid_request_error"}}"#);
        assert!(matches!(e, UpstreamError::Status { ref code, .. } if code.as_deref() == Some("400")));
        let e = status_error(500, br#"{"error":"ollama broke"}"#);
        assert!(matches!(e, UpstreamError::Status { ref message, .. } if message == "ollama broke"));
        let e = status_error(502, b"Bad Gateway\n");
        assert!(matches!(e, UpstreamError::Status { ref message, .. } if message == "Bad Gateway"));
        let e = status_error(503, b"");
        assert!(matches!(e, UpstreamError::Status { ref message, .. } if message == "HTTP 503"));
    }

    #[test]
    fn base_url_accepts_a_trailing_v1() {
        let c = Client::new("http://h:1/v1/", None, 1).unwrap();
        assert_eq!(c.chat_url.as_str(), "http://h:1/v1/chat/completions");
        assert_eq!(c.models_url.as_str(), "http://h:1/v1/models");
        assert!(Client::new("not a url", None, 1).is_err());
    }

    #[tokio::test]
    async fn a_redirect_is_an_answer_not_followed() {
        use wiremock::{Mock, MockServer, ResponseTemplate, matchers::any};
        let (elsewhere, upstream) = (MockServer::start().await, MockServer::start().await);
        Mock::given(any()).respond_with(ResponseTemplate::new(200)).expect(0).mount(&elsewhere).await;
        let moved = ResponseTemplate::new(307).insert_header("location", elsewhere.uri().as_str());
        Mock::given(any()).respond_with(moved).mount(&upstream).await;
        let c = Client::new(&upstream.uri(), Some("secret".into()), 1).unwrap();
        let body = UpstreamRequest::new(Arc::new(serde_json::Map::new()));
        let e = c.chat(body, None).await.unwrap_err();
        assert!(matches!(e, UpstreamError::Status { status: 307, .. }), "{e:?}");
    }
}
