//! One pruning round: score the competing candidates as they stand and stop the losers (`--prune-keep`, and with a
//! confidence only those behind the leader by more than the calibrated margin); when a round is due; where a
//! sentence ends.

use std::time::Instant;

use super::{Phase, Prune, Slot};
use crate::{
    bon::{Plan, guard, rank},
    metrics::Metrics,
    openai::{ChatCompletion, Content},
    reward::{RewardError, Score},
};

pub(super) fn competing(slots: &[Slot<'_>]) -> Vec<usize> {
    (0..slots.len()).filter(|&i| slots[i].competes()).collect()
}

/// A round is due when more than `keep_at_least` compete and every live content candidate has `every` new tokens.
pub(super) fn round_due(slots: &[Slot<'_>], every: u32, keep_at_least: u32) -> bool {
    // Live content candidates (a slot still opening has no tool calls yet, and no tokens: it holds the round up).
    let content: Vec<&Slot<'_>> = slots.iter().filter(|s| s.live() && !s.asm.has_tool_calls()).collect();
    !content.is_empty()
        && competing(slots).len() > keep_at_least as usize
        && content.iter().all(|s| matches!(s.phase, Phase::Streaming(_)) && s.since_round >= u64::from(every))
}

/// Scores the competing candidates as they stand and stops the losers.
pub(super) async fn round(
    slots: &mut [Slot<'_>],
    scorer: &dyn Score,
    plan: &Plan,
    prune: Prune,
    started: Instant,
    metrics: &Metrics,
) -> Result<(), RewardError> {
    let comp = competing(slots);
    let views: Vec<ChatCompletion> = comp
        .iter()
        .map(|&i| match &slots[i].phase {
            Phase::Done(Ok(c)) => c.clone(),
            _ => slots[i].asm.completion(),
        })
        .collect();
    let inputs = views
        .iter()
        .zip(&comp)
        .map(|(c, &i)| {
            let mut input = rank::input(plan, c);
            if prune.sentences
                && matches!(slots[i].phase, Phase::Streaming(_))
                && let Some(Content::Text(text)) = &mut input.response.content
            {
                text.truncate(sentence_end(text));
            }
            input
        })
        .collect();
    let flags: Vec<guard::Flags> = views.iter().map(guard::Flags::of).collect();
    let rank::Ranked { scores, order, .. } = rank::score_and_rank(scorer, inputs, &flags, plan.guard, true).await?;
    let keep = survivors(comp.len(), prune.keep, plan.keep_at_least);
    for (j, &i) in comp.iter().enumerate() {
        slots[i].score = Some(scores[j]);
    }
    let leader = order[0];
    let mut stopped = 0;
    for &j in &order[keep..] {
        let gap = scores[leader] - scores[j];
        if let Some(confidence) = prune.confidence {
            let below_by_guard = plan.guard && flags[j].tier() > flags[leader].tier();
            let tokens = slots[comp[j]].asm.tokens;
            let margin = scorer.calibration().and_then(|c| c.margin(confidence, tokens));
            if !below_by_guard && !margin.is_some_and(|m| gap > m) {
                metrics.pruning_held.inc();
                continue;
            }
        }
        metrics.pruning_stop_gap.observe(f64::from(gap));
        stopped += 1;
        let slot = &mut slots[comp[j]];
        slot.phase = Phase::Pruned;
        slot.latency = started.elapsed();
    }
    metrics.pruning_rounds_total.inc();
    metrics.pruning_stopped.observe(f64::from(stopped));
    for slot in slots.iter_mut() {
        slot.since_round = 0;
    }
    Ok(())
}

/// The length of `text` up to its last sentence end: `.`, `!`, `?` or `:` followed by white space, or a line break;
/// all of it when there is none.
pub fn sentence_end(text: &str) -> usize {
    let bytes = text.as_bytes();
    (0..bytes.len())
        .rev()
        .find(|&k| {
            bytes[k] == b'\n'
                || (matches!(bytes[k], b'.' | b'!' | b'?' | b':')
                    && bytes.get(k + 1).is_some_and(u8::is_ascii_whitespace))
        })
        .map_or(text.len(), |k| k + 1)
}

/// How many of `competing` go on: `ceil(competing × keep)`, at least `keep_at_least`, at most `competing - 1`.
pub fn survivors(competing: usize, keep: f64, keep_at_least: u32) -> usize {
    let wanted = (competing as f64 * keep).ceil() as usize;
    wanted.min(competing.saturating_sub(1)).max(keep_at_least as usize).min(competing)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn survivors_halve_and_always_make_progress() {
        assert_eq!(survivors(8, 0.5, 1), 4);
        assert_eq!(survivors(4, 0.5, 1), 2);
        assert_eq!(survivors(2, 0.5, 1), 1);
        assert_eq!(survivors(3, 0.5, 1), 2);
        assert_eq!(survivors(8, 0.99, 1), 7, "at least one stopped per round");
        assert_eq!(survivors(8, 0.01, 1), 1);
        assert_eq!(survivors(8, 0.1, 3), 3, "never below the choices asked for");
    }

    #[test]
    fn sentence_ends_are_found_and_numbers_are_not_cut() {
        assert_eq!(&"One. Two is 3.14 and fo"[..sentence_end("One. Two is 3.14 and fo")], "One.");
        assert_eq!(&"A list:\n- first ite"[..sentence_end("A list:\n- first ite")], "A list:\n");
        assert_eq!(sentence_end("no end yet"), "no end yet".len());
        assert_eq!(&"Done! Really? Yes. "[..sentence_end("Done! Really? Yes. ")], "Done! Really? Yes.");
    }
}
