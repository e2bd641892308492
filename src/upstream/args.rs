//! The upstream flags (`--upstream*`), flattened into the process's `Config`, and the pool settings they make.

use std::time::Duration;

use clap::ValueEnum;

use super::{PoolOptions, health::Backoff};

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

/// Where candidates are generated, how the pool treats its members, and what key goes upstream.
#[derive(Clone, clap::Args)]
pub struct UpstreamArgs {
    /// Base URL of an OpenAI-compatible upstream (Ollama, llama.cpp server, vLLM, SGLang), without `/v1`. Repeat
    /// the flag (or comma-separate) for a pool: candidates go to the healthy upstream with the fewest requests in
    /// flight, and a transient failure is retried once on another.
    #[arg(
        long = "upstream",
        value_name = "URL",
        env = "BON_UPSTREAM",
        value_delimiter = ',',
        default_value = "http://127.0.0.1:11434",
        hide_env_values = true
    )]
    pub urls: Vec<String>,

    /// Names of the upstreams, in the order given (the `upstream` label of the metrics, `/ready`). Default: their
    /// index (0, 1, ...). Never a URL: URLs can hold credentials.
    #[arg(long = "upstream-name", value_name = "NAME", env = "BON_UPSTREAM_NAMES", value_delimiter = ',')]
    pub names: Vec<String>,

    /// How long an upstream that failed (a failed connection, a 5xx, a request timeout while it answered nothing
    /// else) gets no traffic before it is probed; doubled after each further failure, up to --upstream-backoff-max.
    #[arg(long = "upstream-backoff", value_name = "DURATION", env = "BON_UPSTREAM_BACKOFF", value_parser = humantime::parse_duration, default_value = "1s")]
    pub backoff: Duration,

    /// Longest back-off of a failing upstream.
    #[arg(long = "upstream-backoff-max", value_name = "DURATION", env = "BON_UPSTREAM_BACKOFF_MAX", value_parser = humantime::parse_duration, default_value = "30s")]
    pub backoff_max: Duration,

    /// How often healthy upstreams are probed (`GET /v1/models`), so that `/ready` notices one that died while idle.
    #[arg(long = "upstream-probe-interval", value_name = "DURATION", env = "BON_UPSTREAM_PROBE_INTERVAL", value_parser = humantime::parse_duration, default_value = "5s")]
    pub probe_interval: Duration,

    /// How long a probe may take. A probe that gets no answer in time does not mark the upstream down (slow, e.g.
    /// saturated by other replicas, is not dead); a failed connection or a 5xx does (a 503 with Retry-After: busy).
    #[arg(long = "upstream-probe-timeout", value_name = "DURATION", env = "BON_UPSTREAM_PROBE_TIMEOUT", value_parser = humantime::parse_duration, default_value = "10s")]
    pub probe_timeout: Duration,

    /// Bearer token sent to the upstream. Without it, no Authorization header is sent upstream.
    #[arg(long = "upstream-api-key", value_name = "KEY", env = "BON_UPSTREAM_API_KEY", hide_env_values = true)]
    pub api_key: Option<String>,

    /// Forward the client's own `Authorization: Bearer` token to the upstream (instead of --upstream-api-key).
    #[arg(long, env = "BON_FORWARD_CLIENT_AUTH")]
    pub forward_client_auth: bool,

    /// How candidates are requested: N requests, or one request with `n = N`.
    #[arg(long = "upstream-n", value_name = "MODE", env = "BON_UPSTREAM_N", value_enum, default_value_t = UpstreamN::Fanout)]
    pub n: UpstreamN,

    /// Most requests in flight at once to each upstream, across all clients (a pool of k upstreams takes k times
    /// this).
    #[arg(long = "upstream-concurrency", value_name = "N", env = "BON_UPSTREAM_CONCURRENCY", default_value_t = 64)]
    pub concurrency: usize,
}

impl UpstreamArgs {
    /// Each upstream's name: `--upstream-name`, else its index.
    pub fn member_names(&self) -> Vec<String> {
        if self.names.is_empty() { (0..self.urls.len()).map(|i| i.to_string()).collect() } else { self.names.clone() }
    }

    /// The pool's settings; `deadline` is the candidate timeout (a member's request is abandoned after it).
    pub fn pool_options(&self, deadline: Duration) -> PoolOptions {
        PoolOptions {
            backoff: Backoff { initial: self.backoff, max: self.backoff_max.max(self.backoff) },
            probe_interval: self.probe_interval,
            probe_timeout: self.probe_timeout,
            deadline: Some(deadline),
            learn_n: self.n == UpstreamN::Auto,
        }
    }
}
