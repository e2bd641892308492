//! The one public error type, its HTTP mapping and its OpenAI-shaped body.
//!
//! Every error a client sees is `{"error": {"message", "type", "param", "code"}}` with the status the official
//! OpenAI SDKs map to the right exception class. The `ApiJson` extractor makes malformed JSON take the same shape.

use axum::{
    Json,
    extract::{FromRequest, Request, rejection::JsonRejection},
    http::{HeaderValue, StatusCode, header},
    response::{IntoResponse, Response},
};
use serde::de::DeserializeOwned;

use crate::{
    openai::{ErrorBody, ErrorDetail},
    reward::RewardError,
    upstream::UpstreamError,
};

/// Everything that can go wrong while serving a request.
#[derive(Clone, Debug, thiserror::Error)]
pub enum ApiError {
    /// The request is malformed or asks for something out of range (400).
    #[error("{message}")]
    InvalidRequest { message: String, param: Option<String>, code: Option<&'static str> },
    /// The body is over `--max-body-bytes` (413).
    #[error("request body too large")]
    PayloadTooLarge,
    /// Missing or wrong proxy API key (401). Never echoes the key.
    #[error("{0}")]
    Unauthorized(&'static str),
    /// Too many requests in flight (429).
    #[error("too many requests in flight; retry shortly")]
    Overloaded,
    /// No route (404).
    #[error("unknown endpoint {method} {path}")]
    NotFound { method: String, path: String },
    /// Method not allowed on a known route (405).
    #[error("method not allowed")]
    MethodNotAllowed,
    /// Every candidate failed (502); lists each candidate's cause.
    #[error("all {} candidates failed: {}", .errors.len(), .errors.iter().enumerate().map(|(i, e)| format!("[{i}] {e}")).collect::<Vec<_>>().join("; "))]
    AllCandidatesFailed { errors: Vec<UpstreamError> },
    /// The upstream refused the request itself (the same 4xx for every candidate); passed through with its status.
    #[error("upstream rejected the request ({status}): {message}")]
    UpstreamRejected { status: u16, message: String, kind: String, param: Option<String>, code: Option<String> },
    /// The whole request ran past `--request-timeout` (504).
    #[error("request deadline exceeded")]
    Timeout,
    /// An upstream call outside the Best-of-N path (e.g. `/v1/models`) failed (502).
    #[error("upstream error: {0}")]
    Upstream(#[from] UpstreamError),
    /// Something broke inside the proxy (500). The detail is logged, never sent.
    #[error("internal error: {0}")]
    Internal(String),
}

impl From<RewardError> for ApiError {
    fn from(e: RewardError) -> Self {
        ApiError::Internal(e.to_string())
    }
}

impl ApiError {
    /// A 400 naming the offending parameter.
    pub fn invalid(message: impl Into<String>, param: impl Into<Option<String>>) -> Self {
        ApiError::InvalidRequest { message: message.into(), param: param.into(), code: None }
    }

    /// The HTTP status clients see.
    pub fn status_code(&self) -> StatusCode {
        match self {
            ApiError::InvalidRequest { .. } => StatusCode::BAD_REQUEST,
            ApiError::PayloadTooLarge => StatusCode::PAYLOAD_TOO_LARGE,
            ApiError::Unauthorized(_) => StatusCode::UNAUTHORIZED,
            ApiError::Overloaded => StatusCode::TOO_MANY_REQUESTS,
            ApiError::NotFound { .. } => StatusCode::NOT_FOUND,
            ApiError::MethodNotAllowed => StatusCode::METHOD_NOT_ALLOWED,
            ApiError::AllCandidatesFailed { .. } | ApiError::Upstream(_) => StatusCode::BAD_GATEWAY,
            ApiError::UpstreamRejected { status, .. } => {
                StatusCode::from_u16(*status).unwrap_or(StatusCode::BAD_GATEWAY)
            }
            ApiError::Timeout => StatusCode::GATEWAY_TIMEOUT,
            ApiError::Internal(_) => StatusCode::INTERNAL_SERVER_ERROR,
        }
    }

    /// Low-cardinality name: the OpenAI `type` field and the `outcome` metric label.
    pub fn kind(&self) -> &'static str {
        match self {
            ApiError::InvalidRequest { .. } => "invalid_request_error",
            ApiError::PayloadTooLarge => "payload_too_large",
            ApiError::Unauthorized(_) => "authentication_error",
            ApiError::Overloaded => "rate_limit_error",
            ApiError::NotFound { .. } => "not_found_error",
            ApiError::MethodNotAllowed => "method_not_allowed",
            ApiError::AllCandidatesFailed { .. } => "all_candidates_failed",
            ApiError::UpstreamRejected { .. } => "upstream_rejected",
            ApiError::Timeout => "timeout",
            ApiError::Upstream(_) => "upstream_error",
            ApiError::Internal(_) => "internal_error",
        }
    }

    /// When a client gets this error (the generated reference, `docs/reference/errors.md`). A match: a new variant
    /// cannot go undescribed.
    pub fn when(&self) -> &'static str {
        match self {
            ApiError::InvalidRequest { .. } => {
                "bad JSON, wrong types, an out-of-range OpenAI parameter, a bad N or `bon` field, a Responses field that needs stored state with `--passthrough off`; `param` names the field"
            }
            ApiError::PayloadTooLarge => "the body is over `--max-body-bytes`",
            ApiError::Unauthorized(_) => "`--api-key` is set and the bearer token is missing or not one of the keys",
            ApiError::Overloaded => "more than `--max-inflight` requests in flight (with `Retry-After: 1`)",
            ApiError::NotFound { .. } => "no such route (under `/v1` only with `--passthrough off`)",
            ApiError::MethodNotAllowed => "a known route with another method",
            ApiError::AllCandidatesFailed { .. } => "every candidate failed; the message lists each one's cause",
            ApiError::UpstreamRejected { .. } => {
                "every candidate got the same 4xx from the upstream (an unknown model, a bad parameter): its status, type and message"
            }
            ApiError::Timeout => "the whole call ran past `--request-timeout`",
            ApiError::Upstream(_) => "a call outside Best-of-N (`/v1/models`, a pass-through) reached no upstream",
            ApiError::Internal(_) => "something broke inside the proxy (the detail is logged, never sent)",
        }
    }

    /// One error of every kind, in the order the reference lists them.
    pub fn every_kind() -> Vec<ApiError> {
        vec![
            ApiError::invalid("", None),
            ApiError::Unauthorized(""),
            ApiError::NotFound { method: String::new(), path: String::new() },
            ApiError::MethodNotAllowed,
            ApiError::PayloadTooLarge,
            ApiError::Overloaded,
            ApiError::Internal(String::new()),
            ApiError::AllCandidatesFailed { errors: Vec::new() },
            ApiError::Upstream(UpstreamError::Transport(String::new())),
            ApiError::Timeout,
            ApiError::UpstreamRejected {
                status: 404,
                message: String::new(),
                kind: String::new(),
                param: None,
                code: None,
            },
        ]
    }

    fn body(&self) -> ErrorBody {
        let (message, param, code) = match self {
            ApiError::InvalidRequest { message, param, code } => {
                (message.clone(), param.clone(), code.map(str::to_owned))
            }
            ApiError::UpstreamRejected { message, param, code, .. } => {
                (format!("upstream rejected the request: {message}"), param.clone(), code.clone())
            }
            ApiError::Unauthorized(m) => ((*m).to_owned(), None, Some("invalid_api_key".to_owned())),
            // Internal detail goes to the log, not to the client.
            ApiError::Internal(_) => ("internal error".to_owned(), None, None),
            other => (other.to_string(), None, None),
        };
        let kind = match self {
            ApiError::UpstreamRejected { kind, .. } if !kind.is_empty() => kind.clone(),
            other => other.kind().to_owned(),
        };
        ErrorBody { error: ErrorDetail { message, kind, param, code } }
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let status = self.status_code();
        if status.is_server_error() {
            tracing::error!(error = %self, kind = self.kind(), "request failed");
        } else {
            tracing::debug!(error = %self, kind = self.kind(), "request rejected");
        }
        let mut response = (status, Json(self.body())).into_response();
        if matches!(self, ApiError::Overloaded) {
            response.headers_mut().insert(header::RETRY_AFTER, HeaderValue::from_static("1"));
        }
        response
    }
}

/// `Json<T>` whose rejection is an OpenAI-shaped 400 instead of axum's plain-text 4xx.
pub struct ApiJson<T>(pub T);

impl<S, T> FromRequest<S> for ApiJson<T>
where
    T: DeserializeOwned,
    S: Send + Sync,
{
    type Rejection = ApiError;

    async fn from_request(req: Request, state: &S) -> Result<Self, Self::Rejection> {
        match Json::<T>::from_request(req, state).await {
            Ok(Json(value)) => Ok(ApiJson(value)),
            Err(rejection) => Err(json_rejection(rejection)),
        }
    }
}

fn json_rejection(rejection: JsonRejection) -> ApiError {
    let (message, code) = match &rejection {
        JsonRejection::MissingJsonContentType(_) => {
            ("request body must be JSON with `Content-Type: application/json`".to_owned(), "invalid_content_type")
        }
        JsonRejection::JsonSyntaxError(e) => (format!("invalid JSON: {}", source_text(e)), "invalid_json"),
        JsonRejection::JsonDataError(e) => (format!("invalid request: {}", source_text(e)), "invalid_request"),
        JsonRejection::BytesRejection(e) => {
            if e.status() == StatusCode::PAYLOAD_TOO_LARGE {
                return ApiError::PayloadTooLarge;
            }
            (format!("could not read request body: {e}"), "invalid_body")
        }
        other => (other.body_text(), "invalid_request"),
    };
    ApiError::InvalidRequest { message, param: None, code: Some(code) }
}

/// serde's message (with line/column), without axum's generic prefix.
fn source_text(e: &dyn std::error::Error) -> String {
    let mut inner: &dyn std::error::Error = e;
    while let Some(next) = inner.source() {
        inner = next;
    }
    inner.to_string()
}
