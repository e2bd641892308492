//! Result cache (moka) with request coalescing.
//!
//! The key is blake3 over everything that decides a Best-of-N result: the request as sent upstream (model,
//! messages, tools, response format, every sampling parameter), N, the reward model id and the caller's credential.
//! Objects are hashed with sorted keys, so field order does not split entries. Concurrent identical requests share
//! one computation (moka's `try_get_with`); if the computing caller goes away, a waiting caller takes over.
//!
//! A degraded result (`Degraded`: picked by a fallback, or with candidates lost to failures) is never cached: it goes
//! to the callers that were waiting for it and nowhere else, neither the shared tier nor later requests (it is
//! stored expired, so moka's coalescing still hands it to those waiting). Counted in `bon_cache_degraded_total`.

use std::{
    future::Future,
    sync::{
        Arc,
        atomic::{AtomicBool, Ordering},
    },
    time::Duration,
};

use moka::{Expiry, future::Cache, notification::RemovalCause};

pub mod args;
mod key;
pub mod shared;

pub use key::CacheKey;
pub use shared::{Shared, SharedCache, SharedCacheError};

use crate::metrics::Metrics;

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

/// A value that may be worse than a fresh try would give (a fallback decided it, candidates failed): never cached.
pub trait Degraded {
    /// Why it is degraded (the `reason` label of `bon_cache_degraded_total`); None for a good result.
    fn degraded(&self) -> Option<&'static str>;
}

/// Entries expire at `--cache-ttl`; a degraded one the moment it is stored.
struct Lifetime(Duration);

impl<V: Degraded> Expiry<CacheKey, V> for Lifetime {
    fn expire_after_create(&self, _key: &CacheKey, value: &V, _at: std::time::Instant) -> Option<Duration> {
        Some(if value.degraded().is_some() { Duration::ZERO } else { self.0 })
    }
}

/// The moka cache, or nothing when `--cache-ttl 0s`; behind it, optionally, the shared tier on Redis.
pub struct ResultCache<V: Clone + Send + Sync + 'static> {
    inner: Option<Cache<CacheKey, V>>,
    shared: Option<SharedCache>,
    metrics: Arc<Metrics>,
}

impl<V: Weigh + Degraded + Shared + Clone + Send + Sync + 'static> ResultCache<V> {
    pub fn new(ttl: Duration, max_bytes: u64, metrics: Arc<Metrics>) -> Self {
        let inner = (!ttl.is_zero()).then(|| {
            let evictions = metrics.cache_evictions.clone();
            Cache::builder()
                .max_capacity(max_bytes)
                .weigher(|_k: &CacheKey, v: &V| v.weight())
                .expire_after(Lifetime(ttl))
                .eviction_listener(move |_k, v: V, cause| {
                    if v.degraded().is_some() {
                        return; // never served: counted in bon_cache_degraded_total instead
                    }
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

    /// Whether results are cached at all (`--cache-ttl` above 0); when not, a caller need not compute a key.
    pub fn is_enabled(&self) -> bool {
        self.inner.is_some()
    }

    /// Returns the cached value for `key`, or runs `compute` (once for all concurrent identical callers).
    /// Errors are never cached. No key (the cache is off, see `is_enabled`) runs `compute` as a bypass.
    pub async fn get_or_compute<E, F>(
        &self,
        key: Option<CacheKey>,
        mode: CacheMode,
        compute: F,
    ) -> Result<(V, CacheResult), E>
    where
        E: Clone + Send + Sync + 'static,
        F: Future<Output = Result<V, E>>,
    {
        let result = match (&self.inner, key, mode) {
            (None, _, _) | (_, None, _) | (_, _, CacheMode::Bypass) => compute.await.map(|v| (v, CacheResult::Bypass)),
            (Some(cache), Some(key), CacheMode::Refresh) => {
                let value = compute.await?;
                if self.keeps(&value) {
                    cache.insert(key, value.clone()).await;
                    self.store_shared(&key, &value).await;
                }
                Ok((value, CacheResult::Miss))
            }
            (Some(cache), Some(key), CacheMode::Use) => {
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
                    // moka stores it (expired, when degraded) for the callers waiting on this one.
                    if self.keeps(&value) {
                        self.store_shared(&key, &value).await;
                    }
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

    /// Whether a fresh `value` may be cached; a degraded one is counted instead.
    fn keeps(&self, value: &V) -> bool {
        match value.degraded() {
            Some(reason) => {
                self.metrics.cache_degraded.with_label_values(&[reason]).inc();
                false
            }
            None => true,
        }
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

    #[test]
    fn cache_control_directives() {
        assert_eq!(CacheMode::from_cache_control(None), CacheMode::Use);
        assert_eq!(CacheMode::from_cache_control(Some("No-Cache")), CacheMode::Refresh);
        assert_eq!(CacheMode::from_cache_control(Some("max-age=0, no-store")), CacheMode::Bypass);
        assert_eq!(CacheMode::from_cache_control(Some("no-cache, no-store")), CacheMode::Bypass);
    }
}
