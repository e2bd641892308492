//! `bon-proxy eval --samples results.json`: an earlier run's samples summarised again with this run's settings —
//! answers re-extracted (`--answer`), the guard's flags read back, confidence recomputed from each sample's token
//! confidences (`--confidence-window`) — so that settings are compared on the very same samples, without an
//! upstream, a judge or a reward model (rewards and ratings are the stored ones).

use std::path::Path;

use serde::Deserialize;

use super::{EvalArgs, EvalError, PromptRun};
use crate::select::{confidence, guard::Flags};

#[derive(Deserialize)]
struct Stored {
    results: StoredResults,
    prompts: Vec<PromptRun>,
}

/// How the stored samples were made (the report says so, whatever this run's flags say).
#[derive(Deserialize)]
struct StoredResults {
    reward_model: String,
    upstream_model: String,
    #[serde(default)]
    judge_model: Option<String>,
    max_tokens: u32,
    temperature: f64,
}

/// The stored runs with this run's settings applied; this run's arguments with the stored generation settings
/// (model, judge model, `max_tokens`, temperature); the reward model that scored them; whether they were judged.
pub fn read(path: &Path, args: &EvalArgs) -> Result<(Vec<PromptRun>, EvalArgs, String, bool), EvalError> {
    let text = std::fs::read_to_string(path).map_err(|e| EvalError::Io(path.display().to_string(), e))?;
    let stored: Stored = serde_json::from_str(&text)?;
    let mut runs = stored.prompts;
    for run in &mut runs {
        for s in run.samples.iter_mut().chain([&mut run.greedy]) {
            s.guard = Flags {
                repetitive: s.flags.iter().any(|f| f == "repetitive"),
                truncated: s.flags.iter().any(|f| f == "truncated"),
            };
            if s.error.is_none() {
                s.answer = args.answer.extract(&s.text);
            }
            if let Some(tokens) = &s.token_confidence {
                let tokens: Vec<f64> = tokens.iter().map(|&c| f64::from(c)).collect();
                s.confidence = confidence::summarise(&tokens, args.confidence_window);
            }
        }
    }
    if let Some(k) = args.limit {
        runs.truncate(k);
    }
    let r = stored.results;
    let judged = r.judge_model.is_some();
    let args = EvalArgs {
        model: r.upstream_model,
        judge_model: r.judge_model.unwrap_or_else(|| args.judge_model.clone()),
        max_tokens: r.max_tokens,
        temperature: r.temperature,
        ..args.clone()
    };
    Ok((runs, args, r.reward_model, judged))
}
