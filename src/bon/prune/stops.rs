//! What stops a streaming candidate besides a pruning round: the online confidence stop (its group confidence below
//! the model's threshold) and stop on agreement among the streamed candidates.

use std::time::Instant;

use super::{Phase, Prune, Slot};
use crate::bon::plan::Plan;

/// The online confidence stop never leaves fewer candidates than this in the running (nor fewer than the choices
/// asked for): a vote needs two, and the last one standing is the answer whatever its confidence.
pub const MIN_LEFT: usize = 2;

/// What may stop a streaming candidate before it finishes.
#[derive(Clone, Copy, Debug, Default, PartialEq)]
pub struct Stops {
    /// Pruning rounds by reward.
    pub prune: Option<Prune>,
    /// The online confidence stop: a candidate whose group confidence falls below this is stopped.
    pub confidence_below: Option<f64>,
}

/// The online confidence stop after slot `i` received a chunk: stops it when its lowest group confidence so far is
/// below `threshold` and more than `MIN_LEFT` (and the choices asked for) are still in the running. True when it
/// was stopped.
pub(super) fn unsure(slots: &mut [Slot<'_>], i: usize, threshold: f64, plan: &Plan, started: Instant) -> bool {
    let in_running = slots.iter().filter(|s| s.live() || s.finished_well()).count();
    let slot = &mut slots[i];
    let below = slot.running.as_ref().and_then(|r| r.lowest()).is_some_and(|l| l < threshold);
    if !below || !matches!(slot.phase, Phase::Streaming(_)) || in_running <= MIN_LEFT.max(plan.keep_at_least as usize) {
        return false;
    }
    // Dropping the stream closes its connection: the upstream stops generating it.
    slot.phase = Phase::Pruned;
    slot.unconfident = true;
    slot.latency = started.elapsed();
    true
}

/// Stop on agreement among streamed candidates: the finished ones' vote can no longer change, whatever the ones
/// still generating answer.
pub(super) fn agreed(slots: &[Slot<'_>], plan: &Plan) -> bool {
    let left = slots.iter().filter(|s| s.live()).count();
    if left == 0 {
        return false;
    }
    let ballots: Vec<String> = slots
        .iter()
        .filter_map(|s| match &s.phase {
            Phase::Done(Ok(c)) => super::super::generate::clean_answer(c, plan),
            _ => None,
        })
        .collect();
    crate::select::vote::decided(ballots.iter().map(String::as_str), left)
}
