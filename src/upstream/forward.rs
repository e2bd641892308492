//! A request passed through untouched (every `/v1` route the proxy does not serve itself) and its answer, streamed
//! both ways: the body goes upstream as it arrives and the answer comes back as it is sent, never held whole.

use std::sync::Arc;

use bytes::Bytes;
use futures::stream::BoxStream;
use http::{HeaderMap, HeaderName, Method, header};

/// Headers that describe one connection, not the message: never forwarded, either way (RFC 9110 §7.6.1), nor
/// `host` (the upstream's own) and `authorization` (the proxy's key is not the upstream's: see `Forward::auth`).
const HOP_BY_HOP: [HeaderName; 9] = [
    header::CONNECTION,
    HeaderName::from_static("keep-alive"),
    header::PROXY_AUTHENTICATE,
    header::PROXY_AUTHORIZATION,
    header::TE,
    header::TRAILER,
    header::TRANSFER_ENCODING,
    header::UPGRADE,
    header::HOST,
];

/// A request to pass through.
pub struct Forward {
    pub head: Arc<Head>,
    pub body: ForwardBody,
}

/// What a request to pass through says besides its body.
pub struct Head {
    pub method: Method,
    /// The path and query as the client sent them (`/v1/embeddings`, `/v1/files?purpose=x`).
    pub path_and_query: String,
    /// The client's headers, less those of its connection and its `authorization`.
    pub headers: HeaderMap,
    /// The bearer token for the upstream: the client's with `--forward-client-auth`; else the configured key.
    pub auth: Option<Arc<str>>,
}

/// A request body: small ones whole (so a failed connection can be retried on another upstream), the rest as a
/// stream (sent once).
pub enum ForwardBody {
    Whole(Bytes),
    Stream(reqwest::Body),
}

/// The upstream's answer: its status, headers (less those of its connection) and body as it arrives.
pub struct Forwarded {
    pub status: u16,
    pub headers: HeaderMap,
    pub body: BoxStream<'static, Result<Bytes, std::io::Error>>,
}

/// `headers` less the hop-by-hop ones, those the `connection` header names, and (for requests) `authorization`.
pub fn end_to_end(headers: &HeaderMap, request: bool) -> HeaderMap {
    let named: Vec<String> = headers
        .get_all(header::CONNECTION)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(',').map(|s| s.trim().to_ascii_lowercase()))
        .collect();
    let mut out = HeaderMap::with_capacity(headers.len());
    for (name, value) in headers {
        let dropped = HOP_BY_HOP.contains(name)
            || (request && name == header::AUTHORIZATION)
            || named.iter().any(|n| n == name.as_str());
        if !dropped {
            out.append(name.clone(), value.clone());
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_end_to_end_headers_pass() {
        let mut h = HeaderMap::new();
        for (k, v) in [
            ("content-type", "application/json"),
            ("connection", "keep-alive, x-private"),
            ("x-private", "1"),
            ("transfer-encoding", "chunked"),
            ("host", "proxy:8080"),
            ("authorization", "Bearer proxy-key"),
            ("openai-beta", "assistants=v2"),
        ] {
            h.append(HeaderName::from_static(k), v.parse().unwrap_or_else(|_| unreachable!()));
        }
        let names = |m: HeaderMap| m.keys().map(|k| k.as_str().to_owned()).collect::<Vec<_>>();
        assert_eq!(names(end_to_end(&h, true)), ["content-type", "openai-beta"]);
        assert_eq!(names(end_to_end(&h, false)), ["content-type", "authorization", "openai-beta"]);
    }
}
