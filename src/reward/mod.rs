//! Reward model scoring through ONNX Runtime.
//!
//! `Scorer::load` reads a model directory, opens the ONNX session on the requested device, checks the graph and
//! makes one warm-up run; then `score` calls go over a bounded channel to a small pool of tokenizer threads
//! (`encoding`), which hand them encoded to one dedicated OS thread that owns the session and only runs graphs
//! (`worker`; TEI's router/backend split). Dropping the `Scorer` closes the channel and joins the threads.

pub mod args;
mod batch;
mod encoding;
pub mod health;
pub mod hub;
mod model;
pub mod prefix;
pub mod runtime;
pub mod source;
pub mod template;
pub mod tokenize;
mod worker;

use std::{path::PathBuf, sync::Arc, thread::JoinHandle};

use futures::{FutureExt, future::BoxFuture};
use serde_json::Value;
use tokio::sync::{mpsc, oneshot};
use tracing::Instrument;

pub use batch::Batching;
pub use health::Health;
pub use model::ModelDir;
pub use prefix::Calibration;
pub use runtime::{Arena, Device};
pub use tokenize::{Encoded, Encoder};

use crate::{metrics::Metrics, openai::Message};

/// What a scored conversation is made of: the client's messages, the tools it offered, and one candidate.
#[derive(Clone, Debug)]
pub struct ScoreInput {
    pub conversation: Arc<[Message]>,
    pub tools: Option<Arc<Value>>,
    pub response: Message,
}

/// Something that scores candidates (the real `Scorer`, or a fake in `bon/` tests).
pub trait Score: Send + Sync {
    /// One score per input, in order; higher is better.
    fn score(&self, inputs: Vec<ScoreInput>) -> BoxFuture<'_, Result<Vec<f32>, RewardError>>;

    /// Scores partial answers (a pruning round): through the model's prefix output when it declares one
    /// (`prefix.rs`), else as `score`.
    fn score_partial(&self, inputs: Vec<ScoreInput>) -> BoxFuture<'_, Result<Vec<f32>, RewardError>> {
        self.score(inputs)
    }

    /// How far apart partial scores must be to trust their order, when the model says.
    fn calibration(&self) -> Option<&Calibration> {
        None
    }

    /// Whether scoring works now (`/ready`): false while the scoring thread restarts, or once it is gone.
    fn ready(&self) -> bool {
        true
    }
}

/// Reward model failures.
#[derive(Clone, Debug, thiserror::Error, PartialEq)]
pub enum RewardError {
    /// The model directory or graph is unusable (start-up).
    #[error("cannot load reward model: {0}")]
    Load(String),
    /// ONNX Runtime is missing or a run failed.
    #[error("reward model runtime: {0}")]
    Runtime(String),
    /// This input cannot be scored (template error, nothing to encode).
    #[error("cannot score input: {0}")]
    Input(String),
    /// The worker thread is gone.
    #[error("reward worker stopped")]
    WorkerGone,
}

/// How to load the reward model.
#[derive(Clone, Debug)]
pub struct RewardOptions {
    pub dir: PathBuf,
    /// Reported id; default: config.json's `bon_model_id`, else the directory name.
    pub id: Option<String>,
    pub device: Device,
    pub max_tokens: usize,
    pub max_batch: usize,
    /// Largest share of padding in one batched run (length bucketing; `1.0` merges everything queued).
    pub max_padding: f64,
    /// Most tokens (rows × longest) in one run.
    pub max_batch_tokens: usize,
    pub output: Option<String>,
    /// Overrides config.json's `bon_prefix_output`: `none` scores partial answers with the whole-answer output.
    pub prefix_output: Option<String>,
    /// ONNX Runtime intra-op threads (None: ONNX Runtime's default, one per physical core).
    pub threads: Option<usize>,
    /// Tokenizer threads (None: `default_tokenizer_threads`).
    pub tokenizer_threads: Option<usize>,
    /// What happens to the memory a run needed.
    pub arena: Arena,
}

impl RewardOptions {
    /// `dir` with the defaults of the command line: no id override, `Auto` device, 4,096 tokens, batches of up to
    /// 64 sequences with at most 20 % padding, the `logits` output, ONNX Runtime's threads.
    pub fn new(dir: impl Into<PathBuf>) -> Self {
        Self {
            dir: dir.into(),
            id: None,
            device: Device::Auto,
            max_tokens: 4096,
            max_batch: 64,
            max_padding: DEFAULT_MAX_PADDING,
            max_batch_tokens: DEFAULT_MAX_BATCH_TOKENS,
            output: None,
            prefix_output: None,
            threads: None,
            tokenizer_threads: None,
            arena: Arena::Shrink,
        }
    }
}

/// Default largest padding share of one batched run (`--reward-max-padding`).
pub const DEFAULT_MAX_PADDING: f64 = 0.2;

/// Default most tokens in one run (`--reward-max-batch-tokens`): TEI's default.
pub const DEFAULT_MAX_BATCH_TOKENS: usize = 16_384;

/// Tokenizer threads by default: half the cores, 1 to 4 (the other half runs the graphs).
pub fn default_tokenizer_threads() -> usize {
    std::thread::available_parallelism().map_or(1, |n| (n.get() / 2).clamp(1, 4))
}

/// Handle to the scoring threads.
pub struct Scorer {
    tx: Option<mpsc::Sender<encoding::Job>>,
    thread: Option<JoinHandle<()>>,
    tokenizers: Vec<JoinHandle<()>>,
    id: String,
    provider: &'static str,
    max_tokens: usize,
    prefix_output: Option<String>,
    calibration: Option<Calibration>,
    health: Arc<Health>,
}

impl Scorer {
    /// Loads the model, checks it with a warm-up run and starts the worker thread.
    pub fn load(opts: &RewardOptions, metrics: Arc<Metrics>) -> Result<Self, RewardError> {
        let files = ModelDir::load(&opts.dir)?;
        let max_tokens =
            [files.max_positions, files.model_max_length].into_iter().flatten().fold(opts.max_tokens, usize::min);
        let id = opts.id.clone().or(files.model_id).unwrap_or_else(|| {
            opts.dir.file_name().map_or_else(|| "reward-model".to_owned(), |n| n.to_string_lossy().into_owned())
        });
        let encoder = Encoder::new(files.tokenizer, files.template, max_tokens)?;
        // The declared calibration belongs to the declared output only.
        let (prefix_output, calibration) = match opts.prefix_output.as_deref() {
            None => (files.prefix_output, files.calibration),
            Some("none") => (None, None),
            Some(name) => {
                let calibration = files.calibration.filter(|_| files.prefix_output.as_deref() == Some(name));
                (Some(name.to_owned()), calibration)
            }
        };
        let (onnx, device, threads, arena) = (files.onnx.clone(), opts.device, opts.threads, opts.arena);
        let (output, prefix_name, pad_id) = (opts.output.clone(), prefix_output.clone(), files.pad_id);
        // Opens the session; again on a restart (health.rs), on the device it first opened on.
        let open = move |device| -> Result<(worker::Graph, &'static str), RewardError> {
            let opened = runtime::open(&onnx, device, threads, arena)?;
            let provider = opened.provider;
            Ok((worker::Graph::new(opened, output.as_deref(), prefix_name.as_deref(), pad_id)?, provider))
        };
        let (mut graph, provider) = open(device)?;
        // Fail at start-up, not on the first request, if the graph cannot run.
        worker::warm_up(&encoder, &mut graph)?;
        let opened_on = if provider == "cuda" { Device::Cuda } else { Device::Cpu };
        let reopen: worker::Reopen = Box::new(move || open(opened_on).map(|(g, _)| g));
        tracing::info!(
            model = %id, provider, arena = ?opts.arena, chat_template = encoder.has_template(),
            pad_id = ?files.pad_id, max_tokens, prefix_output = ?prefix_output,
            prefix_calibration = calibration.is_some(), "reward model loaded"
        );
        metrics.execution_provider.with_label_values(&[provider]).set(1);
        metrics.model_loaded.set(1);

        let encoder = Arc::new(encoder);
        let (tx, rx) = mpsc::channel(1024);
        let (ready_tx, ready_rx) = mpsc::channel(1024);
        let batching = Batching {
            max_batch: opts.max_batch,
            max_padding: opts.max_padding,
            max_tokens: opts.max_batch_tokens,
            small_run: batch::SMALL_RUN_TOKENS,
        };
        let health = Health::new(metrics.clone());
        let worker_health = health.clone();
        let thread = std::thread::Builder::new()
            .name("bon-reward".into())
            .spawn({
                let (encoder, metrics) = (encoder.clone(), metrics.clone());
                move || worker::run(ready_rx, encoder, graph, batching, metrics, worker_health, reopen)
            })
            .map_err(|e| RewardError::Load(format!("cannot start reward thread: {e}")))?;
        let threads = opts.tokenizer_threads.unwrap_or_else(default_tokenizer_threads);
        let tokenizers = encoding::start(threads, rx, encoder, ready_tx, metrics)?;
        Ok(Self {
            tx: Some(tx),
            thread: Some(thread),
            tokenizers,
            id,
            provider,
            max_tokens,
            prefix_output,
            calibration,
            health,
        })
    }

    /// The model id (`x-bon-reward-model`).
    pub fn id(&self) -> &str {
        &self.id
    }

    /// `"cuda"` or `"cpu"`.
    pub fn provider(&self) -> &'static str {
        self.provider
    }

    /// Longest sequence scored (after clamping to the model's positions).
    pub fn max_tokens(&self) -> usize {
        self.max_tokens
    }

    /// The scoring thread's health (and its test hooks).
    pub fn health(&self) -> &Health {
        &self.health
    }

    /// The graph output partial answers are scored with, when the model declares one.
    pub fn prefix_output(&self) -> Option<&str> {
        self.prefix_output.as_deref()
    }

    fn submit(&self, inputs: Vec<ScoreInput>, partial: bool) -> BoxFuture<'_, Result<Vec<f32>, RewardError>> {
        let span = tracing::debug_span!("reward", n = inputs.len(), partial);
        async move {
            if inputs.is_empty() {
                return Ok(Vec::new());
            }
            let tx = self.tx.as_ref().ok_or(RewardError::WorkerGone)?;
            let (reply, rx) = oneshot::channel();
            let job = encoding::Job {
                inputs,
                partial,
                span: tracing::Span::current(),
                submitted: std::time::Instant::now(),
                reply,
            };
            tx.send(job).await.map_err(|_| RewardError::WorkerGone)?;
            rx.await.map_err(|_| RewardError::WorkerGone)?
        }
        .instrument(span)
        .boxed()
    }
}

impl Score for Scorer {
    fn score(&self, inputs: Vec<ScoreInput>) -> BoxFuture<'_, Result<Vec<f32>, RewardError>> {
        self.submit(inputs, false)
    }

    fn score_partial(&self, inputs: Vec<ScoreInput>) -> BoxFuture<'_, Result<Vec<f32>, RewardError>> {
        self.submit(inputs, true)
    }

    fn calibration(&self) -> Option<&Calibration> {
        self.calibration.as_ref()
    }

    fn ready(&self) -> bool {
        self.health.is_up()
            && self.thread.as_ref().is_some_and(|t| !t.is_finished())
            && self.tokenizers.iter().any(|t| !t.is_finished())
    }
}

impl Drop for Scorer {
    fn drop(&mut self) {
        // Closing the channel ends the tokenizer threads, whose end closes the scoring thread's; wait for them all.
        self.tx.take();
        for t in self.tokenizers.drain(..) {
            if t.join().is_err() {
                tracing::error!("a tokenizer thread panicked");
            }
        }
        if let Some(t) = self.thread.take()
            && t.join().is_err()
        {
            tracing::error!("reward worker panicked");
        }
    }
}
