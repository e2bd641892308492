//! `bon-proxy eval --samples results.json`: an earlier run's samples summarised again with this run's settings —
//! answers re-extracted (`--answer`), the guard's flags read back, confidence recomputed from each sample's token
//! confidences (`--confidence-window`) — so that settings are compared on the very same samples, without an
//! upstream, a judge or a reward model (rewards and ratings are the stored ones).

use std::path::Path;

use serde::Deserialize;

use super::{EvalArgs, EvalError, PromptRun};
use crate::{bon::guard::Flags, select::confidence};

#[derive(Deserialize)]
struct Stored {
    results: StoredResults,
    prompts: Vec<PromptRun>,
}

#[derive(Deserialize)]
struct StoredResults {
    reward_model: String,
    #[serde(default)]
    judge_model: Option<String>,
}

/// The stored runs with this run's settings applied, the reward model that scored them, and whether they were
/// judged.
pub fn read(path: &Path, args: &EvalArgs) -> Result<(Vec<PromptRun>, String, bool), EvalError> {
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
    Ok((runs, stored.results.reward_model, stored.results.judge_model.is_some()))
}
