//! The shared cache tier on Redis (`--cache-redis`): replicas of the proxy see each other's results.
//!
//! Redis is an optimisation, never a dependency. Every operation is bounded by `--cache-redis-timeout`; a failure
//! (Redis down, slow, full, refusing the password) is counted in `bon_cache_redis_errors_total{op}`, logged at most
//! once per `LOG_EVERY`, and the request goes on as a miss. After a failure Redis is left alone for `PAUSE`, so an
//! outage costs requests nothing; the connection manager reconnects by itself when it comes back. A value this
//! version cannot read (corrupt, or written by another format version) is a miss too.
//!
//! Keys are `bon:<format>:<hex of the cache key>` (the key already covers the request, N, the reward model and the
//! caller's credential digest); values are the format header followed by the encoded result, with `--cache-ttl` as
//! their Redis expiry.

use std::{
    sync::{
        Arc,
        atomic::{AtomicU64, Ordering},
    },
    time::{Duration, Instant},
};

use redis::{AsyncCommands, aio::ConnectionManager};

use super::CacheKey;
use crate::metrics::Metrics;

/// After a failed operation, how long Redis is skipped.
const PAUSE: Duration = Duration::from_secs(1);
/// At most one warning per this interval.
const LOG_EVERY: Duration = Duration::from_secs(30);

/// A value the shared tier can hold: bytes with a format header.
pub trait Shared: Sized {
    /// Names the encoding; bumped whenever it changes, so that two versions of the proxy never misread each other.
    const FORMAT: &'static str;
    fn encode(&self) -> Option<Vec<u8>>;
    fn decode(bytes: &[u8]) -> Option<Self>;
}

/// Why the shared tier could not be set up (a bad URL; never "Redis is down", which is only a miss).
#[derive(Debug, thiserror::Error)]
#[error("--cache-redis: {0}")]
pub struct SharedCacheError(String);

/// The Redis tier.
pub struct SharedCache {
    conn: ConnectionManager,
    timeout: Duration,
    ttl: Duration,
    metrics: Arc<Metrics>,
    /// Milliseconds after `epoch` before which Redis is skipped (after a failure).
    paused_until: AtomicU64,
    /// Milliseconds after `epoch` of the last warning logged (+1; 0: none yet).
    last_log: AtomicU64,
    epoch: Instant,
}

impl SharedCache {
    /// Sets up the tier for `url` (`redis://[:password@]host:port[/db]`, `rediss://` for TLS). Connects lazily:
    /// Redis need not be up. Errors never contain the URL (it may hold a password).
    pub fn connect(
        url: &str,
        ttl: Duration,
        timeout: Duration,
        metrics: Arc<Metrics>,
    ) -> Result<Self, SharedCacheError> {
        if url.to_ascii_lowercase().starts_with("rediss://") {
            // Two rustls providers are linked (through reqwest and hf-hub); TLS needs a process default. Already
            // installed (by a second tier in the same process) is fine.
            let _ = rustls::crypto::aws_lc_rs::default_provider().install_default();
        }
        let client =
            redis::Client::open(url).map_err(|e| SharedCacheError(format!("not a Redis URL ({})", describe(&e))))?;
        // One connection attempt per reconnect, no back-off sleeps inside the manager: a request that finds the
        // connection lost retries once (see `run`) and must not wait out the manager's back-off; `PAUSE` spaces
        // the attempts while Redis stays down.
        let config = redis::aio::ConnectionManagerConfig::new()
            .set_connection_timeout(Some(Duration::from_secs(1)))
            .set_number_of_retries(0);
        let conn = ConnectionManager::new_lazy_with_config(client, config)
            .map_err(|e| SharedCacheError(format!("cannot set up the connection ({})", describe(&e))))?;
        Ok(Self {
            conn,
            timeout,
            ttl,
            metrics,
            paused_until: AtomicU64::new(0),
            last_log: AtomicU64::new(0),
            epoch: Instant::now(),
        })
    }

    fn now_ms(&self) -> u64 {
        u64::try_from(self.epoch.elapsed().as_millis()).unwrap_or(u64::MAX)
    }

    /// Whether Redis is being left alone after a failure.
    fn paused(&self) -> bool {
        self.now_ms() < self.paused_until.load(Ordering::Relaxed)
    }

    fn redis_key<V: Shared>(key: &CacheKey) -> String {
        format!("bon:{}:{}", V::FORMAT, key.hex())
    }

    /// The value under `key`, if Redis answers in time with one this version can read.
    pub async fn get<V: Shared>(&self, key: &CacheKey) -> Option<V> {
        if self.paused() {
            self.metrics.cache_redis_requests.with_label_values(&["skipped"]).inc();
            return None;
        }
        let bytes: Option<Vec<u8>> =
            self.run("get", |mut c| async move { c.get(Self::redis_key::<V>(key)).await }).await?;
        let Some(bytes) = bytes else {
            self.metrics.cache_redis_requests.with_label_values(&["miss"]).inc();
            return None;
        };
        let value = bytes.strip_prefix(header::<V>().as_bytes()).and_then(V::decode);
        match value {
            Some(v) => {
                self.metrics.cache_redis_requests.with_label_values(&["hit"]).inc();
                Some(v)
            }
            None => {
                self.failed("decode", "a value under a bon-proxy key is not one this version wrote; ignored");
                None
            }
        }
    }

    /// Stores `value` under `key` with the cache's TTL (best effort).
    pub async fn set<V: Shared>(&self, key: &CacheKey, value: &V) {
        let Some(encoded) = value.encode() else { return };
        let mut bytes = header::<V>().into_bytes();
        bytes.extend_from_slice(&encoded);
        let ttl_ms = u64::try_from(self.ttl.as_millis()).unwrap_or(u64::MAX).max(1);
        self.run("set", |mut c| {
            let bytes = bytes.clone();
            async move { c.pset_ex::<_, _, ()>(Self::redis_key::<V>(key), bytes, ttl_ms).await }
        })
        .await;
    }

    /// Runs one command within the timeout, unless Redis is paused after a failure. None: skipped or failed. A
    /// command that finds the connection lost is sent once more: the connection manager reconnects on that error,
    /// and the retry waits for the new connection (the first request after an outage then succeeds).
    async fn run<T, F, Fut>(&self, op: &'static str, command: F) -> Option<T>
    where
        F: Fn(ConnectionManager) -> Fut,
        Fut: Future<Output = redis::RedisResult<T>>,
    {
        if self.paused() {
            return None;
        }
        let started = Instant::now();
        let attempt = async {
            match command(self.conn.clone()).await {
                Err(e) if e.is_io_error() || e.is_connection_dropped() || e.is_connection_refusal() => {
                    command(self.conn.clone()).await
                }
                result => result,
            }
        };
        let result = tokio::time::timeout(self.timeout, attempt).await;
        self.metrics.cache_redis_duration.with_label_values(&[op]).observe(started.elapsed().as_secs_f64());
        let why = match result {
            Ok(Ok(v)) => return Some(v),
            Ok(Err(e)) => format!("Redis {op} failed: {}", describe(&e)),
            Err(_) => format!("Redis {op} took longer than {:?}", self.timeout),
        };
        self.paused_until.store(self.now_ms() + PAUSE.as_millis() as u64, Ordering::Relaxed);
        self.failed(op, &why);
        None
    }

    /// Counts a failure and logs it, at most once per `LOG_EVERY`.
    fn failed(&self, op: &'static str, why: &str) {
        self.metrics.cache_redis_errors.with_label_values(&[op]).inc();
        let now = self.now_ms() + 1;
        let last = self.last_log.load(Ordering::Relaxed);
        let due = last == 0 || now.saturating_sub(last) >= LOG_EVERY.as_millis() as u64;
        if due && self.last_log.compare_exchange(last, now, Ordering::Relaxed, Ordering::Relaxed).is_ok() {
            tracing::warn!(op, "shared cache: {why}; serving as a miss (logged at most every {LOG_EVERY:?})");
        }
    }
}

fn header<V: Shared>() -> String {
    format!("{}\n", V::FORMAT)
}

/// Error text without anything from the URL: redis errors name their kind and the server's message, not the
/// connection info, but only the category, the server's error code and the kind are kept to be sure.
fn describe(e: &redis::RedisError) -> String {
    let what = if e.is_timeout() {
        "timed out"
    } else if e.is_connection_refusal() {
        "connection refused"
    } else if e.is_connection_dropped() || e.is_io_error() {
        "connection lost"
    } else {
        "error"
    };
    let code = e.code().map(|c| format!(" {c}")).unwrap_or_default();
    format!("{what}{code}: {:?}", e.kind())
}
