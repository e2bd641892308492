//! A finished Best-of-N call: what it holds, and what the cache makes of it (its weight, its shared-tier
//! encoding, whether it is degraded and so never cached).

use std::sync::Arc;

use serde::{Deserialize, Serialize};

use super::plan::Candidate;
use crate::{
    cache::{Degraded, Shared, Weigh},
    openai::{ChatCompletion, Usage},
    select::{Fallback, Selection},
    upstream::UpstreamError,
};

/// Why the winner was not chosen by score.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum Unscored {
    /// Only one candidate survived: nothing to compare.
    SingleSurvivor,
    /// The reward model failed; the first successful candidate was returned.
    ScorerFailed,
}

/// A finished Best-of-N call (what the cache holds, locally and in the shared tier).
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct Outcome {
    /// Our own completion id (upstream ids, e.g. Ollama's, are not unique).
    pub id: String,
    pub created: u64,
    pub n: u32,
    pub candidates: Vec<Candidate>,
    /// Indices of successful candidates, best first.
    pub ranked: Vec<usize>,
    /// Everything the upstream reported spending, all candidates.
    pub usage: Usage,
    pub unscored: Option<Unscored>,
    /// The strategy asked for and what decided.
    pub selection: Selection,
}

impl Outcome {
    /// The winning candidate's completion.
    pub fn winner(&self) -> Option<(usize, &ChatCompletion)> {
        let i = *self.ranked.first()?;
        self.candidates[i].result.as_ref().ok().map(|c| (i, c))
    }

    /// Scores in candidate order (None: failed or not scored; a pruned candidate's last prefix score).
    pub fn scores(&self) -> Vec<Option<f32>> {
        self.candidates.iter().map(|c| c.score).collect()
    }

    /// Indices of the candidates pruning stopped early.
    pub fn pruned(&self) -> Vec<usize> {
        (0..self.candidates.len()).filter(|&i| self.candidates[i].pruned).collect()
    }

    /// Indices of the candidates the online confidence stop stopped early.
    pub fn unconfident(&self) -> Vec<usize> {
        (0..self.candidates.len()).filter(|&i| self.candidates[i].unconfident).collect()
    }
}

impl Degraded for Arc<Outcome> {
    /// A result a fresh try would likely better: the reward model failed (`scorer-failed`), a strategy fell back because
    /// its scorer or judge failed (`unscored`, `judge-failed`), or candidates were lost to upstream failures
    /// (`candidates-failed`; candidates the proxy stopped on purpose, as stragglers, by pruning, for low confidence or
    /// on agreement, are not failures). A vote that found no answers (`no-answers`) is what these candidates say, not a failure.
    fn degraded(&self) -> Option<&'static str> {
        if self.unscored == Some(Unscored::ScorerFailed) {
            return Some("scorer-failed");
        }
        match self.selection.fallback {
            Some(f @ (Fallback::Unscored | Fallback::JudgeFailed)) => return Some(f.as_str()),
            Some(Fallback::NoAnswers | Fallback::NoLogprobs) | None => {}
        }
        let failed = |c: &Candidate| {
            c.result.as_ref().is_err_and(|e| !matches!(e, UpstreamError::Straggler(_) | UpstreamError::Agreed))
        };
        self.candidates.iter().any(failed).then_some("candidates-failed")
    }
}

impl Weigh for Arc<Outcome> {
    // Computed when the cache stores the outcome (moka weighs once, on insert), not on every request: bypassed
    // and no-store requests never pay for it.
    fn weight(&self) -> u32 {
        let bytes: usize = self
            .candidates
            .iter()
            .map(|c| c.result.as_ref().map_or(256, |r| serde_json::to_vec(r).map_or(4096, |v| v.len() + 256)))
            .sum();
        u32::try_from(bytes).unwrap_or(u32::MAX)
    }
}

impl Shared for Arc<Outcome> {
    // Bump when `Outcome` (or anything in it) changes shape: replicas of two versions then never read each other's
    // entries.
    const FORMAT: &'static str = "outcome-v3";

    fn encode(&self) -> Option<Vec<u8>> {
        serde_json::to_vec(&**self).ok()
    }

    fn decode(bytes: &[u8]) -> Option<Self> {
        let outcome: Outcome = serde_json::from_slice(bytes).ok()?;
        // A value that decodes but could not have been written by this version (a winner out of range, an answer
        // without a choice to return) is foreign.
        let one_choice = |c: &Candidate| c.result.as_ref().map_or(true, |r| !r.choices.is_empty());
        let valid = outcome.ranked.iter().all(|&i| outcome.candidates.get(i).is_some_and(|c| c.result.is_ok()))
            && outcome.candidates.iter().all(one_choice)
            && outcome.winner().is_some();
        valid.then(|| Arc::new(outcome))
    }
}
