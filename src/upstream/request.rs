//! One chat completion request as it goes upstream: the forwarded body, shared by every candidate of a client
//! request (an `Arc`, never copied), and the few fields that differ per candidate, written over the body when it is
//! serialised.

use std::sync::Arc;

use serde::{Serialize, Serializer, ser::SerializeMap};
use serde_json::{Map, Value, json};

/// The body sent to `POST /v1/chat/completions`. Cloning it clones an `Arc` and three small fields.
#[derive(Clone, Debug, Default)]
pub struct UpstreamRequest {
    body: Arc<Map<String, Value>>,
    seed: Option<i64>,
    n: Option<u32>,
    stream: Option<bool>,
}

/// The fields a `UpstreamRequest` may set over its body.
const OVERRIDDEN: [&str; 4] = ["seed", "n", "stream", "stream_options"];

impl UpstreamRequest {
    /// The shared body as it is; nothing set over it yet.
    pub fn new(body: Arc<Map<String, Value>>) -> Self {
        Self { body, seed: None, n: None, stream: None }
    }

    /// With `seed` set (candidate i of a request gets `base + i`).
    pub fn seed(mut self, seed: i64) -> Self {
        self.seed = Some(seed);
        self
    }

    /// With `n` set (native `n`: several choices from one request).
    pub fn n(mut self, n: u32) -> Self {
        self.n = Some(n);
        self
    }

    /// Streamed or not: `true` also asks for usage in the last chunk (`stream_options.include_usage`); `false`
    /// drops any `stream_options`, which only a streamed request may carry.
    pub fn stream(mut self, stream: bool) -> Self {
        self.stream = Some(stream);
        self
    }

    /// The value `key` has in the request as sent.
    pub fn get(&self, key: &str) -> Option<Value> {
        match self.overrides(key) {
            Some(set) => set,
            None => self.body.get(key).cloned(),
        }
    }

    /// The request as one JSON object, exactly as it serialises (tests and fakes; the client serialises without
    /// building it).
    pub fn to_map(&self) -> Map<String, Value> {
        match serde_json::to_value(self) {
            Ok(Value::Object(map)) => map,
            // Unreachable: `serialize` writes a map of JSON values.
            _ => Map::new(),
        }
    }

    /// What this request sets `key` to over the body: `Some(Some(v))` a value, `Some(None)` removed, `None` the
    /// body's own.
    fn overrides(&self, key: &str) -> Option<Option<Value>> {
        match key {
            "seed" => self.seed.map(|s| Some(json!(s))),
            "n" => self.n.map(|n| Some(json!(n))),
            "stream" => self.stream.map(|s| Some(json!(s))),
            "stream_options" => self.stream.map(|s| s.then(|| json!({"include_usage": true}))),
            _ => None,
        }
    }
}

impl From<Map<String, Value>> for UpstreamRequest {
    fn from(body: Map<String, Value>) -> Self {
        Self::new(Arc::new(body))
    }
}

impl Serialize for UpstreamRequest {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        let mut map = serializer.serialize_map(None)?;
        for (k, v) in self.body.iter() {
            if self.overrides(k).is_none() {
                map.serialize_entry(k, v)?;
            }
        }
        for key in OVERRIDDEN {
            if let Some(Some(v)) = self.overrides(key) {
                map.serialize_entry(key, &v)?;
            }
        }
        map.end()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn body() -> Arc<Map<String, Value>> {
        let v = json!({"model": "m", "messages": [{"role": "user", "content": "hi"}], "seed": 1, "stream": false,
                       "stream_options": {"include_usage": false}, "temperature": 0.7});
        Arc::new(v.as_object().unwrap().clone())
    }

    #[test]
    fn serialises_the_shared_body_with_its_own_fields_over_it() {
        let shared = body();
        let one = UpstreamRequest::new(shared.clone()).seed(42).n(3).stream(true);
        let sent: Value = serde_json::from_slice(&serde_json::to_vec(&one).unwrap()).unwrap();
        assert_eq!(
            sent,
            json!({"model": "m", "messages": [{"role": "user", "content": "hi"}], "temperature": 0.7, "seed": 42,
                   "n": 3, "stream": true, "stream_options": {"include_usage": true}})
        );
        assert_eq!(Value::Object(one.to_map()), sent, "to_map is what is sent");
        assert_eq!(Arc::strong_count(&shared), 2, "the body is shared, not copied");
    }

    #[test]
    fn unset_fields_keep_the_body_and_an_unstreamed_request_drops_stream_options() {
        let plain = UpstreamRequest::new(body());
        assert_eq!(Value::Object(plain.to_map()), Value::Object((*body()).clone()));
        let whole = UpstreamRequest::new(body()).stream(false);
        assert_eq!(whole.get("stream"), Some(json!(false)));
        assert_eq!(whole.get("stream_options"), None);
        assert_eq!(whole.get("seed"), Some(json!(1)));
        assert!(!whole.to_map().contains_key("stream_options"));
        let sent: Value = serde_json::to_value(&whole).unwrap();
        assert!(sent.get("stream_options").is_none());
    }
}
