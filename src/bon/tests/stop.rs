//! The online confidence stop in `bon::run`: candidates streamed with scripted `logprobs`; one whose group
//! confidence collapses below the model's threshold is stopped at the upstream (counted by the fake), never leaving
//! fewer than two; the threshold waits for history; with stop on agreement the vote ends sooner.

use std::sync::atomic::Ordering;

use crate::{
    cache::Degraded,
    select::{ConfidenceHistory, Select, Strategy},
};

use super::*;

/// `n` distinct words, then the answer.
fn words(n: usize, answer: &str) -> String {
    let mut w: Vec<String> = (0..n).map(|k| format!("t{k}")).collect();
    w.push(answer.to_owned());
    w.join(" ")
}

/// Sure throughout (confidence 5).
fn sure(n: usize, answer: &str) -> Act {
    Act::Collapse(words(n, answer), 5.0, usize::MAX, 5.0)
}

/// Sure for one word, then confidence 1: its first 4-token group is 2.
fn collapsing(n: usize, answer: &str) -> Act {
    Act::Collapse(words(n, answer), 5.0, 1, 1.0)
}

fn stopping(strategy: Strategy, n: u32) -> Plan {
    let select = Select { strategy, confidence_stop: true, confidence_window: 4, ..Select::default() };
    Plan { select, ..plan(n, 0) }
}

/// A history whose threshold for model `m` is 4 (at least `min` candidates needed).
fn history(min: usize) -> ConfidenceHistory {
    let h = ConfidenceHistory::new(256, 50.0, min);
    h.record("m", [4.0; 4]);
    h
}

async fn run_with(up: &FakeUpstream, plan: &Plan, h: &ConfidenceHistory, m: &Metrics) -> Outcome {
    let generation =
        Generation { upstream: up, mode: UpstreamN::Fanout, candidate_timeout: LIMIT, metrics: m, confidence: h };
    run(&generation, &selector(&scorer(false)), plan, None).await.unwrap()
}

#[tokio::test(start_paused = true)]
async fn a_candidate_whose_confidence_collapses_is_stopped_at_the_upstream() {
    let up = FakeUpstream {
        streams: true,
        ..upstream(0, vec![sure(9, "7"), sure(9, "7"), sure(9, "8"), collapsing(40, "9")])
    };
    let (h, m) = (history(4), Metrics::new().unwrap());
    let out = run_with(&up, &stopping(Strategy::ConfidenceVote, 4), &h, &m).await;
    assert_eq!(out.unconfident(), vec![3]);
    let c = &out.candidates[3];
    assert!(c.unconfident && !c.pruned && !c.selectable());
    let partial = c.result.as_ref().unwrap();
    assert_eq!(partial.usage.unwrap().completion_tokens, 4, "stopped at its first full window, 4 of 41 tokens");
    assert_eq!(c.confidence.unwrap().lowest, 2.0, "its confidence so far is reported");
    assert_eq!(up.closed_early.load(Ordering::SeqCst), 1, "its stream was closed at the upstream");
    assert_eq!(m.confidence_stopped.get(), 1);
    assert_eq!(m.candidates.with_label_values(&["unconfident"]).get(), 1);
    assert_eq!(m.confidence_tokens_saved.get(), 10 - 4, "the mean finished answer (10 tokens) less the 4 it had");
    assert_eq!(out.selection.vote.as_ref().unwrap().answer, "7");
    assert!(out.winner().unwrap().0 < 2);
    assert_eq!(h.len("m"), 4 + 4, "every candidate remembered, the stopped one with its confidence so far");
    assert!(Arc::new(out).degraded().is_none(), "a stopped candidate is not a failure");
}

#[tokio::test(start_paused = true)]
async fn no_candidate_is_stopped_until_the_model_has_history_and_then_it_is_learnt() {
    let acts = vec![sure(9, "7"), sure(9, "7"), collapsing(12, "9")];
    let (h, m) = (ConfidenceHistory::new(256, 50.0, 3), Metrics::new().unwrap());
    let up = FakeUpstream { streams: true, ..upstream(0, acts.clone()) };
    let out = run_with(&up, &stopping(Strategy::Vote, 3), &h, &m).await;
    assert!(out.unconfident().is_empty());
    assert!(up.seen.lock().unwrap().iter().all(|b| b.get("stream").is_none()), "no threshold: not even streamed");
    assert_eq!(h.len("m"), 3);
    // Now the history holds 5, 5 and 2: the threshold is 5, and 4 in the running allow one stop.
    let up = FakeUpstream {
        streams: true,
        ..upstream(0, vec![sure(9, "7"), sure(9, "7"), sure(9, "8"), collapsing(12, "9")])
    };
    let out = run_with(&up, &stopping(Strategy::Vote, 4), &h, &m).await;
    assert_eq!(out.unconfident(), vec![3]);
    assert_eq!(h.threshold("other"), None, "per model");
}

#[tokio::test(start_paused = true)]
async fn never_fewer_than_two_are_left_in_the_running() {
    let acts = vec![sure(9, "7"), collapsing(12, "8"), collapsing(12, "9")];
    let up = FakeUpstream { streams: true, ..upstream(0, acts) };
    let (h, m) = (history(4), Metrics::new().unwrap());
    let out = run_with(&up, &stopping(Strategy::Confidence, 3), &h, &m).await;
    assert_eq!(out.unconfident().len(), 1, "{:?}", out.unconfident());
    assert_eq!(out.candidates.iter().filter(|c| c.selectable()).count(), 2);
    assert_eq!(out.winner().unwrap().0, 0, "the most confident");
}

#[tokio::test(start_paused = true)]
async fn with_stop_on_agreement_the_vote_ends_once_the_stopped_cannot_change_it() {
    // 3 collapses and is stopped; 0 and 1 agree on 7; the one still generating (2) cannot outvote them.
    let acts = vec![sure(3, "7"), sure(3, "7"), sure(40, "8"), collapsing(40, "9")];
    let up = FakeUpstream { streams: true, ..upstream(0, acts) };
    let (h, m) = (history(4), Metrics::new().unwrap());
    let mut plan = stopping(Strategy::Vote, 4);
    plan.select.stop_on_agreement = true;
    let out = run_with(&up, &plan, &h, &m).await;
    assert_eq!(out.unconfident(), vec![3]);
    assert_eq!(out.selection.stopped_on_agreement, vec![2]);
    assert!(matches!(out.candidates[2].result, Err(UpstreamError::Agreed)));
    assert_eq!(up.closed_early.load(Ordering::SeqCst), 2);
    assert_eq!(out.selection.vote.as_ref().unwrap().answer, "7");
    assert_eq!(m.agreement_stopped.get(), 1);
}
