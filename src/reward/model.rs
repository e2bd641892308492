//! A reward model directory in Hugging Face layout.
//!
//! ```text
//! model.onnx | onnx/model.onnx   (external-data files beside it are found by ONNX Runtime)
//! tokenizer.json
//! tokenizer_config.json          chat_template (string or named list), special tokens, pad_token
//! chat_template.jinja            (newer transformers write the template here instead)
//! config.json                    pad_token_id, max_position_embeddings, bon_model_id, bon_prefix_* (prefix.rs)
//! ```

use std::path::{Path, PathBuf};

use serde_json::{Map, Value};
use tokenizers::Tokenizer;

use super::{
    RewardError,
    prefix::{self, Calibration},
    template::ChatTemplate,
};

/// Everything read from a model directory, before the ONNX session is opened.
pub struct ModelDir {
    pub onnx: PathBuf,
    pub tokenizer: Tokenizer,
    pub template: Option<ChatTemplate>,
    /// Right-padding id. `None` means the model has none: sequences are then scored one per run, as
    /// `transformers` requires for such models.
    pub pad_id: Option<u32>,
    /// `max_position_embeddings`, when config.json gives it.
    pub max_positions: Option<usize>,
    /// tokenizer_config.json's `model_max_length` (ignored when it is transformers' "unset" huge value).
    pub model_max_length: Option<usize>,
    /// config.json's `bon_model_id`, the name a model built for bon-proxy reports.
    pub model_id: Option<String>,
    /// config.json's `bon_prefix_output`: the graph output that scores partial answers (`prefix.rs`).
    pub prefix_output: Option<String>,
    /// config.json's `bon_prefix_calibration`: how far apart partial scores must be to trust their order.
    pub calibration: Option<Calibration>,
}

const SPECIAL_TOKENS: [&str; 7] =
    ["bos_token", "eos_token", "unk_token", "sep_token", "pad_token", "cls_token", "mask_token"];

impl ModelDir {
    /// Reads and checks the directory.
    pub fn load(dir: &Path) -> Result<Self, RewardError> {
        let err = |what: String| RewardError::Load(format!("{}: {what}", dir.display()));
        if !dir.is_dir() {
            return Err(err("not a directory".into()));
        }
        let onnx = ["model.onnx", "onnx/model.onnx"]
            .iter()
            .map(|p| dir.join(p))
            .find(|p| p.is_file())
            .ok_or_else(|| err("no model.onnx or onnx/model.onnx".into()))?;
        let tokenizer =
            Tokenizer::from_file(dir.join("tokenizer.json")).map_err(|e| err(format!("tokenizer.json: {e}")))?;
        let config = read_json(&dir.join("config.json"))?.ok_or_else(|| err("no config.json".into()))?;
        let tok_config = read_json(&dir.join("tokenizer_config.json"))?.unwrap_or_default();

        let template_source = match std::fs::read_to_string(dir.join("chat_template.jinja")) {
            Ok(text) => Some(text),
            Err(_) => chat_template(&tok_config),
        };
        let template = template_source
            .map(|src| ChatTemplate::new(src, special_tokens(&tok_config)))
            .transpose()
            .map_err(|e| err(format!("chat template does not compile: {e}")))?;

        // config.json's pad_token_id is what the exported graph was traced with (decoder classifiers look for the
        // last token that is not this id); the tokenizer's pad token is only a fallback.
        let pad_id = match config.get("pad_token_id") {
            Some(Value::Number(n)) => Some(
                n.as_u64()
                    .and_then(|n| u32::try_from(n).ok())
                    .ok_or_else(|| err(format!("config.json pad_token_id {n} is not a token id")))?,
            ),
            _ => token_text(tok_config.get("pad_token")).and_then(|t| tokenizer.token_to_id(&t)),
        };
        let max_positions =
            config.get("max_position_embeddings").and_then(Value::as_u64).and_then(|n| usize::try_from(n).ok());
        let model_max_length = tok_config
            .get("model_max_length")
            .and_then(Value::as_u64)
            .filter(|&n| n < 1 << 32)
            .and_then(|n| usize::try_from(n).ok());
        let model_id = config.get("bon_model_id").and_then(Value::as_str).map(str::to_owned);
        let (prefix_output, calibration) = prefix::from_config(&config).map_err(|e| err(format!("config.json {e}")))?;
        Ok(Self {
            onnx,
            tokenizer,
            template,
            pad_id,
            max_positions,
            model_max_length,
            model_id,
            prefix_output,
            calibration,
        })
    }
}

fn read_json(path: &Path) -> Result<Option<Map<String, Value>>, RewardError> {
    let text = match std::fs::read_to_string(path) {
        Ok(text) => text,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(RewardError::Load(format!("{}: {e}", path.display()))),
    };
    match serde_json::from_str(&text) {
        Ok(Value::Object(map)) => Ok(Some(map)),
        Ok(_) => Err(RewardError::Load(format!("{}: not a JSON object", path.display()))),
        Err(e) => Err(RewardError::Load(format!("{}: {e}", path.display()))),
    }
}

/// `chat_template` is a string, or a list of `{name, template}` of which `default` is the chat template.
fn chat_template(tok_config: &Map<String, Value>) -> Option<String> {
    match tok_config.get("chat_template")? {
        Value::String(s) => Some(s.clone()),
        Value::Array(named) => named
            .iter()
            .find(|t| t.get("name").and_then(Value::as_str) == Some("default"))
            .and_then(|t| t.get("template"))
            .and_then(Value::as_str)
            .map(str::to_owned),
        _ => None,
    }
}

/// A special token is a string or an `AddedToken` object `{"content": ...}`.
fn token_text(v: Option<&Value>) -> Option<String> {
    match v? {
        Value::String(s) => Some(s.clone()),
        Value::Object(o) => o.get("content").and_then(Value::as_str).map(str::to_owned),
        _ => None,
    }
}

/// The special tokens `transformers` passes to the template (only those the tokenizer defines).
fn special_tokens(tok_config: &Map<String, Value>) -> Map<String, Value> {
    let mut out = Map::new();
    for name in SPECIAL_TOKENS {
        if let Some(text) = token_text(tok_config.get(name)) {
            out.insert(name.to_owned(), Value::String(text));
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn named_templates_pick_default() {
        let cfg =
            json!({"chat_template": [{"name": "tool_use", "template": "T"}, {"name": "default", "template": "D"}]});
        assert_eq!(chat_template(cfg.as_object().unwrap()).as_deref(), Some("D"));
    }

    #[test]
    fn special_tokens_accept_added_token_objects() {
        let cfg = json!({"bos_token": {"content": "<s>", "lstrip": false}, "eos_token": "</s>", "pad_token": null});
        let tokens = special_tokens(cfg.as_object().unwrap());
        assert_eq!(Value::Object(tokens), json!({"bos_token": "<s>", "eos_token": "</s>"}));
    }

    #[test]
    fn missing_directory_is_a_load_error() {
        let e = ModelDir::load(Path::new("/nonexistent/model")).err().unwrap();
        assert!(e.to_string().contains("not a directory"), "{e}");
    }
}
