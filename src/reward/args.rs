//! The reward model's flags (`--reward-*`, `--device`), flattened into the process's `Config`.

use std::path::PathBuf;

use super::{Arena, DEFAULT_MAX_BATCH_TOKENS, DEFAULT_MAX_PADDING, Device, RewardOptions};

/// Which reward model, which output, and how its runs are batched and threaded.
#[derive(Clone, Debug, clap::Args)]
pub struct RewardArgs {
    /// Reward model: a directory (Hugging Face layout: model.onnx or onnx/model.onnx, tokenizer.json,
    /// tokenizer_config.json, config.json), a preset (skywork-v2-0.6b, skywork-v2-1.7b, skywork-v2-llama-8b), or a
    /// hub repository ORG/NAME[@REVISION]. Without it, the default model assembled by scripts/setup.
    #[arg(id = "reward_model", long = "reward-model", value_name = "DIR|PRESET|ORG/NAME", env = "BON_REWARD_MODEL")]
    pub model: Option<PathBuf>,

    /// Name the reward model is reported under (`x-bon-reward-model`, cache key). Defaults to config.json's
    /// `bon_model_id`, else the directory name.
    #[arg(id = "reward_model_id", long = "reward-model-id", value_name = "ID", env = "BON_REWARD_MODEL_ID")]
    pub model_id: Option<String>,

    /// Output tensor holding the reward (`[batch, k]`, column 0 is used). Defaults to `logits`, else the only output.
    #[arg(id = "reward_output", long = "reward-output", value_name = "OUTPUT", env = "BON_REWARD_OUTPUT")]
    pub output: Option<String>,

    /// Graph output that scores partial answers in pruning rounds: as the model's config.json declares
    /// (`bon_prefix_output`; the default model declares none: its whole-answer output), `none` for the whole-answer
    /// output, `prefix_logits` for the default model's prefix head (trained on other models' answers), or another
    /// output name. Only the declared output keeps the declared calibration (`--prune-confidence`).
    #[arg(
        id = "reward_prefix_output",
        long = "reward-prefix-output",
        env = "BON_REWARD_PREFIX_OUTPUT",
        value_name = "OUTPUT|none"
    )]
    pub prefix_output: Option<String>,

    /// Longest token sequence given to the reward model; longer inputs lose tokens from the left.
    #[arg(
        id = "reward_max_tokens",
        long = "reward-max-tokens",
        value_name = "TOKENS",
        env = "BON_REWARD_MAX_TOKENS",
        default_value_t = 4096
    )]
    pub max_tokens: usize,

    /// Most sequences scored in one ONNX Runtime run (jobs from concurrent requests are merged up to this).
    #[arg(
        id = "reward_max_batch",
        long = "reward-max-batch",
        value_name = "ROWS",
        env = "BON_REWARD_MAX_BATCH",
        default_value_t = 64
    )]
    pub max_batch: usize,

    /// Length bucketing: queued sequences are sorted by length and a batched run takes the next one while padding
    /// stays within this share of the run's tokens (0 batches only equal lengths; 1 pads everything to the longest).
    /// Runs of up to 1,024 tokens (rows × longest) are not split: their fixed cost is more than their padding's.
    #[arg(
        id = "reward_max_padding",
        long = "reward-max-padding",
        env = "BON_REWARD_MAX_PADDING",
        value_name = "SHARE",
        default_value_t = DEFAULT_MAX_PADDING
    )]
    pub max_padding: f64,

    /// Most tokens one ONNX Runtime run computes, padding included (rows × longest sequence); a longer sequence
    /// runs alone. Caps the memory and the stall of one run (TEI's max-batch-tokens).
    #[arg(
        id = "reward_max_batch_tokens",
        long = "reward-max-batch-tokens",
        env = "BON_REWARD_MAX_BATCH_TOKENS",
        value_name = "TOKENS",
        default_value_t = DEFAULT_MAX_BATCH_TOKENS
    )]
    pub max_batch_tokens: usize,

    /// ONNX Runtime intra-op threads for the reward model (default: ONNX Runtime's, one per physical core). Leave
    /// cores to an upstream on the same machine.
    #[arg(id = "reward_threads", long = "reward-threads", env = "BON_REWARD_THREADS", value_name = "N")]
    pub threads: Option<usize>,

    /// Threads that render and tokenize scoring calls, off the thread that runs the graphs (default: half the
    /// cores, 1 to 4).
    #[arg(
        id = "reward_tokenizer_threads",
        long = "reward-tokenizer-threads",
        env = "BON_REWARD_TOKENIZER_THREADS",
        value_name = "N"
    )]
    pub tokenizer_threads: Option<usize>,

    /// ONNX Runtime's CPU memory arena: keep (peak memory stays), shrink (returned after each run) or off.
    #[arg(
        id = "reward_arena",
        long = "reward-arena",
        env = "BON_REWARD_ARENA",
        value_enum,
        default_value_t = Arena::Shrink
    )]
    pub arena: Arena,

    /// Execution provider for the reward model.
    #[arg(long, env = "BON_DEVICE", value_enum, default_value_t = Device::Auto)]
    pub device: Device,
}

impl RewardArgs {
    /// How to load the model found at `dir`; `id` (the hub's or a preset's name) unless `--reward-model-id` says.
    pub fn options(&self, dir: PathBuf, id: Option<String>) -> RewardOptions {
        RewardOptions {
            dir,
            id: self.model_id.clone().or(id),
            device: self.device,
            max_tokens: self.max_tokens,
            max_batch: self.max_batch,
            max_padding: self.max_padding,
            max_batch_tokens: self.max_batch_tokens,
            output: self.output.clone(),
            prefix_output: self.prefix_output.clone(),
            threads: self.threads,
            tokenizer_threads: self.tokenizer_threads,
            arena: self.arena,
        }
    }
}
