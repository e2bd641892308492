//! Command-line and environment configuration.
//!
//! Every flag has an environment variable spelled out next to it (`BON_*`). `Config::validate` checks ranges and
//! cross-field rules before anything binds a port, so a bad configuration is one clear message at start-up.

use std::{net::SocketAddr, path::PathBuf, time::Duration};

use clap::{Parser, ValueEnum};

mod validate;

pub use validate::{ConfigError, valid_confidence};

// Defined where they are used (the reward model's runtime), so that reward/ does not depend on config/.
pub use crate::reward::runtime::{Arena, Device};

/// How N candidates are requested from the upstream.
#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
pub enum UpstreamN {
    /// N concurrent requests with seeds base+i (works everywhere; Ollama needs OLLAMA_NUM_PARALLEL >= N).
    Fanout,
    /// One request with `n = N` (llama.cpp's server, vLLM, SGLang: one prompt, N samples).
    Native,
    /// Native `n`, falling back to fan-out (for good) when the upstream returns fewer choices.
    Auto,
}

/// A feature that is on or off.
#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
pub enum Switch {
    On,
    Off,
}

/// Where a pruning round cuts a streaming candidate's text before scoring it.
#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
pub enum PruneAt {
    /// As it stands (mid-sentence as often as not).
    Tokens,
    /// At its last sentence end (`.`, `!`, `?`, `:` then white space, or a line break).
    Sentence,
}

/// Log line format.
#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
pub enum LogFormat {
    Text,
    Json,
}

/// bon-proxy: an OpenAI-compatible Best-of-N proxy.
#[derive(Clone, Parser)]
#[command(name = "bon-proxy", version, about)]
pub struct Config {
    /// Address to listen on.
    #[arg(long, env = "BON_LISTEN", default_value = "127.0.0.1:8080")]
    pub listen: SocketAddr,

    /// Base URL of an OpenAI-compatible upstream (Ollama, llama.cpp server, vLLM, SGLang), without `/v1`. Repeat
    /// the flag (or comma-separate) for a pool: candidates go to the healthy upstream with the fewest requests in
    /// flight, and a transient failure is retried once on another.
    #[arg(
        long = "upstream",
        env = "BON_UPSTREAM",
        value_delimiter = ',',
        default_value = "http://127.0.0.1:11434",
        hide_env_values = true
    )]
    pub upstreams: Vec<String>,

    /// Names of the upstreams, in the order given (the `upstream` label of the metrics, `/ready`). Default: their
    /// index (0, 1, ...). Never a URL: URLs can hold credentials.
    #[arg(long = "upstream-name", env = "BON_UPSTREAM_NAMES", value_delimiter = ',')]
    pub upstream_names: Vec<String>,

    /// How long an upstream that failed (transport error, timeout, 5xx, 429) gets no traffic before it is probed;
    /// doubled after each further failure, up to --upstream-backoff-max.
    #[arg(long, env = "BON_UPSTREAM_BACKOFF", value_parser = humantime::parse_duration, default_value = "1s")]
    pub upstream_backoff: Duration,

    /// Longest back-off of a failing upstream.
    #[arg(long, env = "BON_UPSTREAM_BACKOFF_MAX", value_parser = humantime::parse_duration, default_value = "30s")]
    pub upstream_backoff_max: Duration,

    /// How often healthy upstreams are probed (`GET /v1/models`), so that `/ready` notices one that died while idle.
    #[arg(long, env = "BON_UPSTREAM_PROBE_INTERVAL", value_parser = humantime::parse_duration, default_value = "5s")]
    pub upstream_probe_interval: Duration,

    /// How long a probe may take. A probe that times out while the upstream is busy (requests in flight, or one
    /// answered within the probe interval) does not mark it down.
    #[arg(long, env = "BON_UPSTREAM_PROBE_TIMEOUT", value_parser = humantime::parse_duration, default_value = "10s")]
    pub upstream_probe_timeout: Duration,

    /// Bearer token sent to the upstream. Without it, no Authorization header is sent upstream.
    #[arg(long, env = "BON_UPSTREAM_API_KEY", hide_env_values = true)]
    pub upstream_api_key: Option<String>,

    /// Forward the client's own `Authorization: Bearer` token to the upstream (instead of --upstream-api-key).
    #[arg(long, env = "BON_FORWARD_CLIENT_AUTH")]
    pub forward_client_auth: bool,

    /// API keys clients must present as `Authorization: Bearer KEY` (repeat the flag, or comma-separate).
    /// Without any key (here or in --api-keys-file) the proxy is open.
    #[arg(long = "api-key", env = "BON_API_KEYS", value_delimiter = ',', hide_env_values = true)]
    pub api_keys: Vec<String>,

    /// File with one API key per line (blank lines and lines starting with `#` are ignored).
    #[arg(long, env = "BON_API_KEYS_FILE")]
    pub api_keys_file: Option<PathBuf>,

    /// Reward model: a directory (Hugging Face layout: model.onnx or onnx/model.onnx, tokenizer.json,
    /// tokenizer_config.json, config.json), a preset (skywork-v2-0.6b, skywork-v2-1.7b, skywork-v2-llama-8b), or a
    /// hub repository ORG/NAME[@REVISION]. Without it, the default model assembled by scripts/setup.
    #[arg(long, env = "BON_REWARD_MODEL")]
    pub reward_model: Option<PathBuf>,

    /// Name the reward model is reported under (`x-bon-reward-model`, cache key). Defaults to config.json's
    /// `bon_model_id`, else the directory name.
    #[arg(long, env = "BON_REWARD_MODEL_ID")]
    pub reward_model_id: Option<String>,

    /// Output tensor holding the reward (`[batch, k]`, column 0 is used). Defaults to `logits`, else the only output.
    #[arg(long, env = "BON_REWARD_OUTPUT")]
    pub reward_output: Option<String>,

    /// Graph output that scores partial answers in pruning rounds: as the model's config.json declares
    /// (`bon_prefix_output`; the default model's prefix head), `none` for the whole-answer output, or another output
    /// name. Only the declared output keeps the declared calibration (`--prune-confidence`).
    #[arg(long, env = "BON_REWARD_PREFIX_OUTPUT", value_name = "OUTPUT|none")]
    pub reward_prefix_output: Option<String>,

    /// Longest token sequence given to the reward model; longer inputs lose tokens from the left.
    #[arg(long, env = "BON_REWARD_MAX_TOKENS", default_value_t = 4096)]
    pub reward_max_tokens: usize,

    /// Most sequences scored in one ONNX Runtime run (jobs from concurrent requests are merged up to this).
    #[arg(long, env = "BON_REWARD_MAX_BATCH", default_value_t = 64)]
    pub reward_max_batch: usize,

    /// Length bucketing: queued sequences are sorted by length and a batched run takes the next one while padding
    /// stays within this share of the run's tokens (0 batches only equal lengths; 1 pads everything to the longest).
    #[arg(long, env = "BON_REWARD_MAX_PADDING", value_name = "SHARE", default_value_t = crate::reward::DEFAULT_MAX_PADDING)]
    pub reward_max_padding: f64,

    /// Most tokens one ONNX Runtime run computes, padding included (rows × longest sequence); a longer sequence
    /// runs alone. Caps the memory and the stall of one run (TEI's max-batch-tokens).
    #[arg(long, env = "BON_REWARD_MAX_BATCH_TOKENS", value_name = "TOKENS", default_value_t = crate::reward::DEFAULT_MAX_BATCH_TOKENS)]
    pub reward_max_batch_tokens: usize,

    /// ONNX Runtime intra-op threads for the reward model (default: ONNX Runtime's, one per physical core). Leave
    /// cores to an upstream on the same machine.
    #[arg(long, env = "BON_REWARD_THREADS", value_name = "N")]
    pub reward_threads: Option<usize>,

    /// Threads that render and tokenize scoring calls, off the thread that runs the graphs (default: half the
    /// cores, 1 to 4).
    #[arg(long, env = "BON_REWARD_TOKENIZER_THREADS", value_name = "N")]
    pub reward_tokenizer_threads: Option<usize>,

    /// ONNX Runtime's CPU memory arena: keep (peak memory stays), shrink (returned after each run) or off.
    #[arg(long, env = "BON_REWARD_ARENA", value_enum, default_value_t = Arena::Shrink)]
    pub reward_arena: Arena,

    /// Execution provider for the reward model.
    #[arg(long, env = "BON_DEVICE", value_enum, default_value_t = Device::Auto)]
    pub device: Device,

    /// N when the request does not say (`x-bon-n` header or `bon.n` in the body).
    #[arg(long, env = "BON_DEFAULT_N", default_value_t = 4)]
    pub default_n: u32,

    /// Largest N a request may ask for.
    #[arg(long, env = "BON_MAX_N", default_value_t = 16)]
    pub max_n: u32,

    /// Temperature used for candidates when the client sent none and N > 1.
    #[arg(long, env = "BON_TEMPERATURE", default_value_t = 0.8)]
    pub bon_temperature: f64,

    /// Degenerate-text guard: rank candidates that are mostly repetition, then candidates cut by the length limit,
    /// below the others, whatever their scores (per request: `"bon": {"guard": false}`).
    #[arg(long, env = "BON_DEGENERATE_GUARD", value_enum, default_value_t = Switch::On)]
    pub degenerate_guard: Switch,

    /// Speculative rejection: stream the candidates, score their partial answers every TOKENS content tokens and
    /// stop the losing ones (0: off; per request `"bon": {"prune_every": T}` or `x-bon-prune-every`).
    #[arg(long, env = "BON_PRUNE_EVERY", default_value_t = 0, value_name = "TOKENS")]
    pub prune_every: u32,

    /// Share of the candidates that go on after each pruning round, strictly between 0 and 1.
    #[arg(long, env = "BON_PRUNE_KEEP", default_value_t = 0.5, value_name = "FRACTION")]
    pub prune_keep: f64,

    /// Margin rule: a round stops only the candidates that would have lost with at least this probability, by the
    /// reward model's calibration (config.json `bon_prefix_calibration`); `--prune-keep` stays the most a round
    /// stops. Strictly between 0.5 and 1 (per request `bon.prune_confidence`; default: no margin).
    #[arg(long, env = "BON_PRUNE_CONFIDENCE", value_name = "P")]
    pub prune_confidence: Option<f64>,

    /// Where a round cuts a streaming candidate's text before scoring it (per request `bon.prune_at`).
    #[arg(long, env = "BON_PRUNE_AT", value_enum, default_value_t = PruneAt::Tokens)]
    pub prune_at: PruneAt,

    /// Once half of the candidates (rounded up) have finished, how long the others get before they are stopped
    /// and the winner is chosen among the finished (default: wait for all; per request `bon.straggler_wait_ms`).
    #[arg(long, env = "BON_STRAGGLER_WAIT", value_parser = humantime::parse_duration, value_name = "DURATION")]
    pub straggler_wait: Option<Duration>,

    /// How candidates are requested: N requests, or one request with `n = N`.
    #[arg(long, env = "BON_UPSTREAM_N", value_enum, default_value_t = UpstreamN::Fanout)]
    pub upstream_n: UpstreamN,

    /// Most requests in flight at once to each upstream, across all clients (a pool of k upstreams takes k times
    /// this).
    #[arg(long, env = "BON_UPSTREAM_CONCURRENCY", default_value_t = 64)]
    pub upstream_concurrency: usize,

    /// Deadline for one candidate (queueing for an upstream slot included).
    #[arg(long, env = "BON_CANDIDATE_TIMEOUT", value_parser = humantime::parse_duration, default_value = "120s")]
    pub candidate_timeout: Duration,

    /// Deadline for a whole request: fan-out, scoring and response.
    #[arg(long, env = "BON_REQUEST_TIMEOUT", value_parser = humantime::parse_duration, default_value = "180s")]
    pub request_timeout: Duration,

    /// How long a Best-of-N result stays cached. `0s` disables the cache.
    #[arg(long, env = "BON_CACHE_TTL", value_parser = humantime::parse_duration, default_value = "10m")]
    pub cache_ttl: Duration,

    /// Size bound of the cache (approximate bytes of cached responses).
    #[arg(long, env = "BON_CACHE_MAX_BYTES", default_value_t = 64 * 1024 * 1024)]
    pub cache_max_bytes: u64,

    /// Shared cache tier on Redis, for several replicas: `redis://[:PASSWORD@]HOST:PORT[/DB]`, `rediss://` for TLS.
    /// Looked up after a local miss; fresh results are written to both with --cache-ttl. Redis being down or slow
    /// only makes requests misses.
    #[arg(long, env = "BON_CACHE_REDIS", value_name = "URL", hide_env_values = true)]
    pub cache_redis: Option<String>,

    /// Longest a shared-cache read or write may take; then the request goes on without it.
    #[arg(long, env = "BON_CACHE_REDIS_TIMEOUT", value_parser = humantime::parse_duration, default_value = "50ms")]
    pub cache_redis_timeout: Duration,

    /// Most client requests handled at once; more get 429 with `Retry-After`.
    #[arg(long, env = "BON_MAX_INFLIGHT", default_value_t = 256)]
    pub max_inflight: usize,

    /// Largest request body accepted (bytes).
    #[arg(long, env = "BON_MAX_BODY_BYTES", default_value_t = 4 * 1024 * 1024)]
    pub max_body_bytes: usize,

    /// Interval of SSE keep-alive comments while a streamed Best-of-N call is generating; a result ready within
    /// the first interval is sent with every `x-bon-*` header.
    #[arg(long, env = "BON_SSE_KEEPALIVE", value_parser = humantime::parse_duration, default_value = "5s")]
    pub sse_keepalive: Duration,

    /// After SIGTERM/SIGINT, how long /ready answers 503 while requests are still served (so that load balancers
    /// stop routing here) before the listener closes.
    #[arg(long, env = "BON_SHUTDOWN_DELAY", value_parser = humantime::parse_duration, default_value = "0s")]
    pub shutdown_delay: Duration,

    /// Time given to in-flight requests after the listener closes before exiting.
    #[arg(long, env = "BON_SHUTDOWN_GRACE", value_parser = humantime::parse_duration, default_value = "30s")]
    pub shutdown_grace: Duration,

    /// Log format.
    #[arg(long, env = "BON_LOG_FORMAT", value_enum, default_value_t = LogFormat::Text)]
    pub log_format: LogFormat,

    /// Selection: strategy, answer extraction, judge.
    #[command(flatten)]
    pub select: crate::select::SelectArgs,
}

impl std::fmt::Debug for Config {
    // Hand-written so the upstream key can never reach a log line.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Config")
            .field("listen", &self.listen)
            .field("upstreams", &self.upstream_names())
            .field("upstream_api_key", &self.upstream_api_key.as_ref().map(|_| "<redacted>"))
            .field("cache_redis", &self.cache_redis.as_deref().map(redact_url))
            .field("api_keys", &format_args!("<{} redacted>", self.api_keys.len()))
            .field("api_keys_file", &self.api_keys_file)
            .field("forward_client_auth", &self.forward_client_auth)
            .field("reward_model", &self.reward_model)
            .field("device", &self.device)
            .field("default_n", &self.default_n)
            .field("max_n", &self.max_n)
            .field("upstream_concurrency", &self.upstream_concurrency)
            .field("prune_every", &self.prune_every)
            .field("prune_keep", &self.prune_keep)
            .field("prune_confidence", &self.prune_confidence)
            .field("prune_at", &self.prune_at)
            .field("straggler_wait", &self.straggler_wait)
            .field("candidate_timeout", &self.candidate_timeout)
            .field("request_timeout", &self.request_timeout)
            .field("strategy", &self.select.strategy)
            .field("judge_upstream", &self.select.judge_upstream.as_deref().map(redact_url))
            .finish_non_exhaustive()
    }
}

/// `url` without what could be a secret: its scheme, host and port if it parses, else a placeholder.
pub fn redact_url(url: &str) -> String {
    match reqwest::Url::parse(url) {
        Ok(u) if u.password().is_none() && u.username().is_empty() => url.to_owned(),
        Ok(u) => {
            let port = u.port_or_known_default().unwrap_or(0);
            format!("{}://<credentials>@{}:{port}", u.scheme(), u.host_str().unwrap_or(""))
        }
        Err(_) if url.contains('@') => "<a URL with credentials>".to_owned(),
        Err(_) => url.to_owned(),
    }
}

/// Where the default reward model may be, in order.
pub fn default_model_candidates() -> Vec<PathBuf> {
    let mut out = Vec::new();
    if let Some(dir) = std::env::current_exe().ok().and_then(|e| e.parent().map(std::path::Path::to_path_buf)) {
        out.push(dir.join("models/default"));
    }
    out.push(PathBuf::from("models/default"));
    out.push(PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("models/default"));
    out
}

/// `--reward-model` as given, else the assembled default model (the first of `default_model_candidates` that
/// holds one).
pub fn reward_model_spec(given: Option<&std::path::Path>) -> Result<PathBuf, ConfigError> {
    if let Some(dir) = given {
        return Ok(dir.to_path_buf());
    }
    let looked = default_model_candidates();
    looked.iter().find(|d| d.join("model.onnx").is_file()).cloned().ok_or_else(|| {
        ConfigError::DefaultModelMissing(looked.iter().map(|p| p.display().to_string()).collect::<Vec<_>>().join(", "))
    })
}

#[cfg(test)]
mod tests;
