//! Result cache (moka) with request coalescing.
//!
//! The key is blake3 over everything that decides a Best-of-N result: the request as sent upstream (model,
//! messages, tools, response format, every sampling parameter), N, the reward model id and the caller's credential.
//! Objects are hashed with sorted keys, so field order does not split entries. Concurrent identical requests share
//! one computation (moka's `try_get_with`); if the computing caller goes away, a waiting caller takes over.

use std::{
    future::Future,
    sync::{
        Arc,
        atomic::{AtomicBool, Ordering},
    },
    time::Duration,
};

use moka::{future::Cache, notification::RemovalCause};
use serde_json::{Map, Value};

use crate::{
    metrics::Metrics,
    shared_cache::{Shared, SharedCache},
};

/// 32-byte blake3 digest identifying a cacheable request.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct CacheKey([u8; 32]);

/// Bumped whenever what a cached value means changes.
const KEY_VERSION: &[u8] = b"bon-cache-v1\0";

impl CacheKey {
    /// Key of `body` (the candidate request without per-candidate fields), for `n` candidates scored by
    /// `reward_model`, on behalf of `caller` (its bearer token, or None).
    pub fn new(body: &Map<String, Value>, n: u32, reward_model: &str, caller: Option<&str>) -> Self {
        let mut h = blake3::Hasher::new();
        h.update(KEY_VERSION);
        h.update(&n.to_le_bytes());
        h.update(reward_model.as_bytes());
        h.update(b"\0");
        match caller {
            // Only the digest of the credential is kept in memory, never the credential.
            Some(c) => h.update(b"caller\0").update(blake3::hash(c.as_bytes()).as_bytes()),
            None => h.update(b"anonymous\0"),
        };
        hash_object(&mut h, body);
        Self(*h.finalize().as_bytes())
    }

    /// Lowercase hex of the digest (the shared tier's key).
    pub fn hex(&self) -> String {
        self.0.iter().map(|b| format!("{b:02x}")).collect()
    }
}

fn hash_value(h: &mut blake3::Hasher, v: &Value) {
    match v {
        Value::Null => h.update(b"n"),
        Value::Bool(b) => h.update(if *b { b"t" } else { b"f" }),
        Value::Number(n) => h.update(b"#").update(n.to_string().as_bytes()).update(b"\0"),
        Value::String(s) => h.update(b"s").update(&(s.len() as u64).to_le_bytes()).update(s.as_bytes()),
        Value::Array(items) => {
            h.update(b"[").update(&(items.len() as u64).to_le_bytes());
            for item in items {
                hash_value(h, item);
            }
            h.update(b"]")
        }
        Value::Object(map) => {
            hash_object(h, map);
            h
        }
    };
}

fn hash_object(h: &mut blake3::Hasher, map: &Map<String, Value>) {
    let mut entries: Vec<_> = map.iter().collect();
    entries.sort_by(|a, b| a.0.cmp(b.0));
    h.update(b"{").update(&(entries.len() as u64).to_le_bytes());
    for (k, v) in entries {
        h.update(&(k.len() as u64).to_le_bytes()).update(k.as_bytes());
        hash_value(h, v);
    }
    h.update(b"}");
}

/// How a request uses the cache (from `Cache-Control`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum CacheMode {
    /// Read, coalesce and store.
    Use,
    /// `no-cache`: do not read, but store the fresh result.
    Refresh,
    /// `no-store` (or the cache is off): neither read nor store.
    Bypass,
}

impl CacheMode {
    /// Reads a `Cache-Control` header value.
    pub fn from_cache_control(value: Option<&str>) -> Self {
        let Some(value) = value else { return CacheMode::Use };
        let directives: Vec<String> = value.split(',').map(|d| d.trim().to_ascii_lowercase()).collect();
        if directives.iter().any(|d| d == "no-store") {
            CacheMode::Bypass
        } else if directives.iter().any(|d| d == "no-cache") {
            CacheMode::Refresh
        } else {
            CacheMode::Use
        }
    }
}

/// What the cache did for one request (`x-bon-cache`, `bon_cache_requests_total{result}`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum CacheResult {
    Hit,
    Miss,
    Bypass,
}

impl CacheResult {
    pub fn as_str(self) -> &'static str {
        match self {
            CacheResult::Hit => "hit",
            CacheResult::Miss => "miss",
            CacheResult::Bypass => "bypass",
        }
    }
}

/// A value that knows its approximate size in bytes (the cache's weigher).
pub trait Weigh {
    fn weight(&self) -> u32;
}

/// The moka cache, or nothing when `--cache-ttl 0s`; behind it, optionally, the shared tier on Redis.
pub struct ResultCache<V: Clone + Send + Sync + 'static> {
    inner: Option<Cache<CacheKey, V>>,
    shared: Option<SharedCache>,
    metrics: Arc<Metrics>,
}

impl<V: Weigh + Shared + Clone + Send + Sync + 'static> ResultCache<V> {
    pub fn new(ttl: Duration, max_bytes: u64, metrics: Arc<Metrics>) -> Self {
        let inner = (!ttl.is_zero()).then(|| {
            let evictions = metrics.cache_evictions.clone();
            Cache::builder()
                .max_capacity(max_bytes)
                .weigher(|_k: &CacheKey, v: &V| v.weight())
                .time_to_live(ttl)
                .eviction_listener(move |_k, _v, cause| {
                    let cause = match cause {
                        RemovalCause::Expired => "expired",
                        RemovalCause::Size => "size",
                        RemovalCause::Replaced => "replaced",
                        RemovalCause::Explicit => "explicit",
                    };
                    evictions.with_label_values(&[cause]).inc();
                })
                .build()
        });
        Self { inner, shared: None, metrics }
    }

    /// Adds the shared tier: looked up after a local miss, written with every fresh result.
    pub fn with_shared(mut self, shared: SharedCache) -> Self {
        self.shared = Some(shared);
        self
    }

    /// Returns the cached value for `key`, or runs `compute` (once for all concurrent identical callers).
    /// Errors are never cached.
    pub async fn get_or_compute<E, F>(&self, key: CacheKey, mode: CacheMode, compute: F) -> Result<(V, CacheResult), E>
    where
        E: Clone + Send + Sync + 'static,
        F: Future<Output = Result<V, E>>,
    {
        let result = match (&self.inner, mode) {
            (None, _) | (_, CacheMode::Bypass) => compute.await.map(|v| (v, CacheResult::Bypass)),
            (Some(cache), CacheMode::Refresh) => {
                let value = compute.await?;
                cache.insert(key, value.clone()).await;
                self.store_shared(&key, &value).await;
                Ok((value, CacheResult::Miss))
            }
            (Some(cache), CacheMode::Use) => {
                // `computed`: this caller ran `compute` (a miss); otherwise the value came from moka, from Redis, or
                // from an identical request in flight on this replica (coalescing stays per replica).
                let computed = AtomicBool::new(false);
                let init = async {
                    if let Some(shared) = &self.shared
                        && let Some(v) = shared.get::<V>(&key).await
                    {
                        return Ok(v);
                    }
                    computed.store(true, Ordering::Relaxed);
                    let value = compute.await?;
                    self.store_shared(&key, &value).await;
                    Ok::<V, E>(value)
                };
                match cache.try_get_with(key, init).await {
                    Ok(v) => {
                        let result =
                            if computed.load(Ordering::Relaxed) { CacheResult::Miss } else { CacheResult::Hit };
                        Ok((v, result))
                    }
                    Err(e) => Err((*e).clone()),
                }
            }
        };
        if let Ok((_, r)) = &result {
            self.metrics.cache_requests.with_label_values(&[r.as_str()]).inc();
        }
        if let Some(cache) = &self.inner {
            self.metrics.cache_entries.set(i64::try_from(cache.entry_count()).unwrap_or(i64::MAX));
        }
        result
    }

    async fn store_shared(&self, key: &CacheKey, value: &V) {
        if let Some(shared) = &self.shared {
            shared.set(key, value).await;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn obj(v: Value) -> Map<String, Value> {
        v.as_object().unwrap().clone()
    }

    #[test]
    fn key_ignores_field_order_but_not_content() {
        let a = obj(json!({"model": "m", "messages": [{"role": "user", "content": "hi"}], "temperature": 0.7}));
        let b = obj(json!({"temperature": 0.7, "messages": [{"content": "hi", "role": "user"}], "model": "m"}));
        let c = obj(json!({"model": "m", "messages": [{"role": "user", "content": "hi"}], "temperature": 0.8}));
        assert_eq!(CacheKey::new(&a, 4, "rm", None), CacheKey::new(&b, 4, "rm", None));
        assert_ne!(CacheKey::new(&a, 4, "rm", None), CacheKey::new(&c, 4, "rm", None));
        assert_ne!(CacheKey::new(&a, 4, "rm", None), CacheKey::new(&a, 5, "rm", None));
        assert_ne!(CacheKey::new(&a, 4, "rm", None), CacheKey::new(&a, 4, "other", None));
        assert_ne!(CacheKey::new(&a, 4, "rm", Some("key-a")), CacheKey::new(&a, 4, "rm", Some("key-b")));
        assert_ne!(CacheKey::new(&a, 4, "rm", Some("key-a")), CacheKey::new(&a, 4, "rm", None));
    }

    #[test]
    fn key_separates_ambiguous_concatenations() {
        let a = obj(json!({"messages": ["ab", "c"]}));
        let b = obj(json!({"messages": ["a", "bc"]}));
        assert_ne!(CacheKey::new(&a, 1, "rm", None), CacheKey::new(&b, 1, "rm", None));
    }

    #[test]
    fn cache_control_directives() {
        assert_eq!(CacheMode::from_cache_control(None), CacheMode::Use);
        assert_eq!(CacheMode::from_cache_control(Some("No-Cache")), CacheMode::Refresh);
        assert_eq!(CacheMode::from_cache_control(Some("max-age=0, no-store")), CacheMode::Bypass);
        assert_eq!(CacheMode::from_cache_control(Some("no-cache, no-store")), CacheMode::Bypass);
    }
}
