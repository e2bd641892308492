//! Shared application state: configuration, upstream client, scorer, cache, metrics, admission, shutdown.

use std::sync::Arc;

use tokio::sync::Semaphore;
use tokio_util::sync::CancellationToken;

use crate::{
    bon::Outcome,
    cache::ResultCache,
    cache::SharedCache,
    config::Config,
    keys::Keys,
    metrics::Metrics,
    reward::{RewardError, Score, Scorer, hub::HubOptions, source},
    select::ConfidenceHistory,
    upstream::{Client, Pool, Upstream, UpstreamError},
};

/// Cheap to clone; everything lives behind one `Arc`.
#[derive(Clone)]
pub struct AppState(Arc<Inner>);

pub struct Inner {
    pub config: Arc<Config>,
    /// The upstreams (one or several), as one `Upstream`.
    pub upstream: Arc<Pool>,
    /// Where the judge strategies ask: `--judge-upstream`, else the upstream pool itself.
    pub judge_upstream: Arc<dyn Upstream>,
    pub scorer: Arc<dyn Score>,
    pub reward_model_id: String,
    /// Accepted client API keys (empty: open).
    pub keys: Keys,
    pub cache: ResultCache<Arc<Outcome>>,
    pub metrics: Arc<Metrics>,
    /// `--max-inflight` permits; a request that gets none is answered 429 at once.
    pub admission: Arc<Semaphore>,
    /// Recent candidates' confidence per model: the online confidence stop's thresholds.
    pub confidence: ConfidenceHistory,
    /// Cancelled on SIGTERM/SIGINT: `/ready` turns 503 (the server itself stops after `--shutdown-delay`).
    pub shutdown: CancellationToken,
}

impl std::ops::Deref for AppState {
    type Target = Inner;
    fn deref(&self) -> &Inner {
        &self.0
    }
}

/// Why the application could not be built.
#[derive(Debug, thiserror::Error)]
pub enum StartError {
    #[error(transparent)]
    Config(#[from] crate::config::ConfigError),
    #[error(transparent)]
    Reward(#[from] RewardError),
    #[error("upstream client: {0}")]
    Upstream(#[from] UpstreamError),
    #[error("metrics: {0}")]
    Metrics(#[from] prometheus::Error),
    #[error(transparent)]
    SharedCache(#[from] crate::cache::SharedCacheError),
}

impl AppState {
    /// Validates `config`, finds (or downloads) and loads the reward model, builds the upstream client.
    pub async fn build(config: Config, shutdown: CancellationToken) -> Result<Self, StartError> {
        Self::build_with_hub(config, &HubOptions::from_env(), shutdown).await
    }

    /// `build` with explicit Hugging Face hub settings (tests point them at a local cache).
    pub async fn build_with_hub(
        config: Config,
        hub: &HubOptions,
        shutdown: CancellationToken,
    ) -> Result<Self, StartError> {
        config.validate()?;
        let metrics = Arc::new(Metrics::new()?);
        let resolved = source::resolve(&config.reward_model_spec()?, hub).await?;
        let opts = config.reward.options(resolved.dir, resolved.id);
        let scorer = Arc::new(Scorer::load(&opts, metrics.clone())?);
        let id = scorer.id().to_owned();
        let mut members: Vec<(String, Arc<dyn Upstream>)> = Vec::new();
        for (name, url) in config.upstream.member_names().into_iter().zip(&config.upstream.urls) {
            let client = Client::new(url, config.upstream.api_key.clone(), config.upstream.concurrency)?;
            members.push((name, Arc::new(client)));
        }
        let pool = Arc::new(Pool::new(members, config.pool_options(), metrics.clone()));
        Self::from_pool(config, pool, scorer, id, metrics, shutdown)
    }

    /// Assembles a state from ready parts (tests use it with fakes): `upstream` as a pool of one.
    pub fn from_parts(
        config: Config,
        upstream: Arc<dyn Upstream>,
        scorer: Arc<dyn Score>,
        reward_model_id: String,
        metrics: Arc<Metrics>,
        shutdown: CancellationToken,
    ) -> Result<Self, StartError> {
        let pool = Arc::new(Pool::new(vec![("0".into(), upstream)], config.pool_options(), metrics.clone()));
        Self::from_pool(config, pool, scorer, reward_model_id, metrics, shutdown)
    }

    /// Assembles a state around a pool of upstreams.
    pub fn from_pool(
        config: Config,
        upstream: Arc<Pool>,
        scorer: Arc<dyn Score>,
        reward_model_id: String,
        metrics: Arc<Metrics>,
        shutdown: CancellationToken,
    ) -> Result<Self, StartError> {
        if config.bon.prune_confidence.is_some() && scorer.calibration().is_none() {
            return Err(StartError::Reward(RewardError::Load(format!(
                "--prune-confidence needs a reward model with a prefix calibration (config.json \
                 bon_prefix_calibration), and {reward_model_id} has none; measure one with `bon-proxy eval \
                 --prune-report`"
            ))));
        }
        let mut cache = ResultCache::new(config.cache.ttl, config.cache.max_bytes, metrics.clone());
        if let Some(url) = &config.cache.shared.redis {
            let shared =
                SharedCache::connect(url, config.cache.ttl, config.cache.shared.redis_timeout, metrics.clone())?;
            cache = cache.with_shared(shared);
        }
        let admission = Arc::new(Semaphore::new(config.server.max_inflight));
        let judge_upstream: Arc<dyn Upstream> = match &config.select.judge_upstream {
            Some(url) => Arc::new(Client::new(url, config.select.judge_api_key.clone(), config.upstream.concurrency)?),
            None => upstream.clone(),
        };
        let keys = Keys::new(&config.client_keys()?);
        let confidence = config.select.history();
        Ok(Self(Arc::new(Inner {
            config: Arc::new(config),
            upstream,
            judge_upstream,
            scorer,
            reward_model_id,
            keys,
            cache,
            metrics,
            admission,
            confidence,
            shutdown,
        })))
    }
}
