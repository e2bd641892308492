//! The server's own flags: listening, client keys, admission, body size, streaming, shutdown, logs.
//!
//! They live here rather than in `server/` because `server` sits above `config` (it is handed the whole `Config`);
//! the other groups are owned by the modules they configure.

use std::{net::SocketAddr, path::PathBuf, time::Duration};

use clap::ValueEnum;

use crate::bon::Switch;

/// Log line format.
#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
pub enum LogFormat {
    Text,
    Json,
}

/// Listening, client keys, admission, body size, streaming, shutdown, logs.
#[derive(Clone, clap::Args)]
pub struct ServerArgs {
    /// Address to listen on.
    #[arg(long, env = "BON_LISTEN", default_value = "127.0.0.1:8080")]
    pub listen: SocketAddr,

    /// API keys clients must present as `Authorization: Bearer KEY` (repeat the flag, or comma-separate).
    /// Without any key (here or in --api-keys-file) the proxy is open.
    #[arg(long = "api-key", env = "BON_API_KEYS", value_delimiter = ',', hide_env_values = true)]
    pub api_keys: Vec<String>,

    /// File with one API key per line (blank lines and lines starting with `#` are ignored).
    #[arg(long, env = "BON_API_KEYS_FILE")]
    pub api_keys_file: Option<PathBuf>,

    /// Most client requests handled at once; more get 429 with `Retry-After`.
    #[arg(long, env = "BON_MAX_INFLIGHT", default_value_t = 256)]
    pub max_inflight: usize,

    /// Largest request body accepted (bytes).
    #[arg(long, env = "BON_MAX_BODY_BYTES", default_value_t = 4 * 1024 * 1024)]
    pub max_body_bytes: usize,

    /// Deadline for a whole request: fan-out, scoring and response.
    #[arg(long, env = "BON_REQUEST_TIMEOUT", value_parser = humantime::parse_duration, default_value = "180s")]
    pub request_timeout: Duration,

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

    /// Pass every `/v1` route bon-proxy does not serve itself (embeddings, legacy completions, audio, ...) through to
    /// the upstream pool untouched, streamed both ways; `off` answers them 404 (chat completions and responses only).
    #[arg(long, env = "BON_PASSTHROUGH", value_enum, default_value_t = Switch::On)]
    pub passthrough: Switch,

    /// Log format.
    #[arg(long, env = "BON_LOG_FORMAT", value_enum, default_value_t = LogFormat::Text)]
    pub log_format: LogFormat,
}
