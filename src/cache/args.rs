//! The cache flags (`--cache-*`), local and shared tier, flattened into the process's `Config`.

use std::time::Duration;

/// The local (moka) tier.
#[derive(Clone, clap::Args)]
pub struct CacheArgs {
    /// How long a Best-of-N result stays cached. `0s` disables the cache.
    #[arg(long = "cache-ttl", value_name = "DURATION", env = "BON_CACHE_TTL", value_parser = humantime::parse_duration, default_value = "10m")]
    pub ttl: Duration,

    /// Size bound of the cache (approximate bytes of cached responses).
    #[arg(long = "cache-max-bytes", value_name = "BYTES", env = "BON_CACHE_MAX_BYTES", default_value_t = 64 * 1024 * 1024)]
    pub max_bytes: u64,

    /// The shared tier.
    #[command(flatten)]
    pub shared: SharedCacheArgs,
}

/// The shared (Redis) tier.
#[derive(Clone, clap::Args)]
pub struct SharedCacheArgs {
    /// Shared cache tier on Redis, for several replicas: `redis://[:PASSWORD@]HOST:PORT[/DB]`, `rediss://` for TLS.
    /// Looked up after a local miss; fresh results are written to both with --cache-ttl. Redis being down or slow
    /// only makes requests misses.
    #[arg(long = "cache-redis", env = "BON_CACHE_REDIS", value_name = "URL", hide_env_values = true)]
    pub redis: Option<String>,

    /// Longest a shared-cache read or write may take; then the request goes on without it.
    #[arg(long = "cache-redis-timeout", value_name = "DURATION", env = "BON_CACHE_REDIS_TIMEOUT", value_parser = humantime::parse_duration, default_value = "50ms")]
    pub redis_timeout: Duration,
}
