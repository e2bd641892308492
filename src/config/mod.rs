//! Command-line and environment configuration.
//!
//! Every flag has an environment variable spelled out next to it (`BON_*`). `Config::validate` checks ranges and
//! cross-field rules before anything binds a port, so a bad configuration is one clear message at start-up.

use std::path::PathBuf;

use clap::Parser;

mod server;
mod validate;

pub use server::{LogFormat, ServerArgs};
pub use validate::ConfigError;

use crate::{
    bon::args::BonArgs, cache::args::CacheArgs, reward::args::RewardArgs, select::SelectArgs,
    upstream::args::UpstreamArgs,
};

/// bon-proxy: an OpenAI-compatible Best-of-N proxy.
///
/// The flags come in groups, each owned by the module it configures (`--help` shows them under these headings);
/// this struct only puts them together, and `validate` checks the rules that span groups.
#[derive(Clone, Parser)]
#[command(name = "bon-proxy", version, about)]
pub struct Config {
    #[command(flatten)]
    pub server: ServerArgs,

    #[command(flatten, next_help_heading = "Upstream")]
    pub upstream: UpstreamArgs,

    #[command(flatten, next_help_heading = "Best-of-N")]
    pub bon: BonArgs,

    #[command(flatten, next_help_heading = "Reward model")]
    pub reward: RewardArgs,

    #[command(flatten, next_help_heading = "Selection")]
    pub select: SelectArgs,

    #[command(flatten, next_help_heading = "Cache")]
    pub cache: CacheArgs,
}

impl std::fmt::Debug for Config {
    // Hand-written so the upstream key can never reach a log line.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Config")
            .field("listen", &self.server.listen)
            .field("upstreams", &self.upstream.member_names())
            .field("upstream_api_key", &self.upstream.api_key.as_ref().map(|_| "<redacted>"))
            .field("cache_redis", &self.cache.shared.redis.as_deref().map(redact_url))
            .field("api_keys", &format_args!("<{} redacted>", self.server.api_keys.len()))
            .field("api_keys_file", &self.server.api_keys_file)
            .field("forward_client_auth", &self.upstream.forward_client_auth)
            .field("reward_model", &self.reward.model)
            .field("device", &self.reward.device)
            .field("default_n", &self.bon.default_n)
            .field("max_n", &self.bon.max_n)
            .field("upstream_concurrency", &self.upstream.concurrency)
            .field("prune_every", &self.bon.prune_every)
            .field("prune_keep", &self.bon.prune_keep)
            .field("prune_confidence", &self.bon.prune_confidence)
            .field("prune_at", &self.bon.prune_at)
            .field("straggler_wait", &self.bon.straggler_wait)
            .field("candidate_timeout", &self.bon.candidate_timeout)
            .field("request_timeout", &self.server.request_timeout)
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
