//! Every other `/v1` route (embeddings, legacy completions, audio, files, ...): passed through to the upstream pool
//! untouched, behind the same key check as chat. The body goes upstream as it arrives (small ones are kept whole so
//! that a failed connection is retried on another upstream) and the answer comes back as it is sent, status,
//! headers and all, an SSE stream included. `--passthrough off` answers 404 instead.

use std::time::Instant;

use axum::{
    body::Body,
    extract::{Request, State},
    http::{HeaderMap, StatusCode, header},
    response::{IntoResponse, Response},
};
use futures::TryStreamExt;

use super::headers::forwarded_auth;
use crate::{
    bon::Switch,
    error::ApiError,
    state::AppState,
    upstream::{Forward, ForwardBody, Head, Upstream, forward::end_to_end},
};

/// Bodies up to this size are read whole before going upstream (then a failed connection is retried elsewhere);
/// larger ones, and those of unknown length, stream.
const WHOLE_BODY_BYTES: u64 = 1024 * 1024;

/// The handler behind the `/v1/{*path}` route.
pub async fn pass(State(state): State<AppState>, req: Request) -> Response {
    let (parts, body) = req.into_parts();
    // Off, or a path that could resolve outside /v1 upstream: not a route here.
    if state.config.server.passthrough == Switch::Off || leaves_v1(parts.uri.path()) {
        let path = parts.uri.path().chars().take(200).collect();
        return ApiError::NotFound { method: parts.method.to_string(), path }.into_response();
    }
    let route = route_label(parts.uri.path());
    let started = Instant::now();
    let head = Head {
        method: parts.method.clone(),
        path_and_query: parts.uri.path_and_query().map_or_else(|| parts.uri.path().to_owned(), |p| p.to_string()),
        headers: end_to_end(&parts.headers, true),
        auth: forwarded_auth(&parts.headers, &state.config),
    };
    let body = match whole_length(&parts.headers) {
        Some(limit) => match axum::body::to_bytes(body, limit).await {
            Ok(bytes) => ForwardBody::Whole(bytes),
            Err(_) => return count(&state, &route, "error", ApiError::PayloadTooLarge.into_response()),
        },
        None => ForwardBody::Stream(reqwest::Body::wrap_stream(body.into_data_stream())),
    };
    send(&state, &route, head, body, started).await
}

/// Sends one request through the pool and relays the answer as it came, counted under `route`.
pub(super) async fn send(state: &AppState, route: &str, head: Head, body: ForwardBody, started: Instant) -> Response {
    let result = state.upstream.forward(Forward { head: head.into(), body }).await;
    state.metrics.passthrough_duration.with_label_values(&[route]).observe(started.elapsed().as_secs_f64());
    match result {
        Ok(answer) => {
            let status = StatusCode::from_u16(answer.status).unwrap_or(StatusCode::BAD_GATEWAY);
            let mut response = Response::new(Body::from_stream(answer.body.map_err(axum::Error::new)));
            *response.status_mut() = status;
            *response.headers_mut() = answer.headers;
            count(state, route, status.as_str(), response)
        }
        Err(e) => count(state, route, "error", ApiError::Upstream(e).into_response()),
    }
}

fn count(state: &AppState, route: &str, status: &str, response: Response) -> Response {
    state.metrics.passthrough_requests.with_label_values(&[route, status]).inc();
    response
}

/// A path with a dot segment, plain or percent-encoded, could resolve outside `/v1` upstream: never passed.
fn leaves_v1(path: &str) -> bool {
    path.split('/').any(|s| {
        let s = s.to_ascii_lowercase().replace("%2e", ".");
        s == "." || s == ".."
    })
}

/// The body's length when it is small enough to read whole (no body: 0); None to stream it.
fn whole_length(headers: &HeaderMap) -> Option<usize> {
    let chunked = headers.contains_key(header::TRANSFER_ENCODING);
    let length = headers.get(header::CONTENT_LENGTH).and_then(|v| v.to_str().ok()?.trim().parse::<u64>().ok());
    match (length, chunked) {
        (Some(n), false) if n <= WHOLE_BODY_BYTES => usize::try_from(n).ok(),
        (None, false) => Some(0),
        _ => None,
    }
}

/// A low-cardinality `route` label: `/v1/` and at most two path segments of lower-case letters, `_` and `.`
/// (starting with a letter); anything else (ids: `file-abc123`, `resp_9f…`) becomes `{id}` and ends the label.
pub fn route_label(path: &str) -> String {
    let mut label = String::from("/v1");
    for segment in path.trim_start_matches("/v1").split('/').filter(|s| !s.is_empty()).take(2) {
        let named = segment.len() <= 32
            && segment.starts_with(|c: char| c.is_ascii_lowercase())
            && segment.chars().all(|c| c.is_ascii_lowercase() || c == '_' || c == '.');
        if named {
            label.push('/');
            label.push_str(segment);
        } else {
            label.push_str("/{id}");
            break;
        }
    }
    label
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn route_labels_keep_names_and_hide_ids() {
        for (path, label) in [
            ("/v1/embeddings", "/v1/embeddings"),
            ("/v1/audio/transcriptions", "/v1/audio/transcriptions"),
            ("/v1/files/file-abc123/content", "/v1/files/{id}"),
            ("/v1/responses/resp_9f/input_items", "/v1/responses/{id}"),
            ("/v1/batches/batch_1", "/v1/batches/{id}"),
            ("/v1/a/b/c/d", "/v1/a/b"),
            ("/v1/", "/v1"),
            ("/v1/%2e%2e", "/v1/{id}"),
            ("/v1/..", "/v1/{id}"),
        ] {
            assert_eq!(route_label(path), label, "{path}");
        }
    }

    #[test]
    fn dot_segments_never_pass() {
        for path in ["/v1/../slots", "/v1/%2E%2e/props", "/v1/./x", "/v1/a/%2e"] {
            assert!(leaves_v1(path), "{path}");
        }
        for path in ["/v1/embeddings", "/v1/files/a.b/content", "/v1/x..y"] {
            assert!(!leaves_v1(path), "{path}");
        }
    }

    #[test]
    fn small_bodies_are_read_whole_and_large_or_chunked_ones_stream() {
        let headers = |pairs: &[(&'static str, &'static str)]| {
            let mut h = HeaderMap::new();
            for (k, v) in pairs {
                h.insert(*k, v.parse().unwrap_or_else(|_| unreachable!()));
            }
            h
        };
        assert_eq!(whole_length(&headers(&[("content-length", "120")])), Some(120));
        assert_eq!(whole_length(&headers(&[])), Some(0));
        assert_eq!(whole_length(&headers(&[("content-length", "104857600")])), None);
        assert_eq!(whole_length(&headers(&[("transfer-encoding", "chunked")])), None);
    }
}
