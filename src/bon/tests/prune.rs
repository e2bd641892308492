//! Pruning and stragglers in `bon::run`, against the streaming fake upstream (paused time: 10 ms per character).

use super::*;

fn streaming(acts: Vec<Act>) -> FakeUpstream {
    FakeUpstream { streams: true, ..upstream(0, acts) }
}

fn pruned_plan(n: u32, every: u32) -> Plan {
    Plan { prune: Some(Prune { every, keep: 0.5, confidence: None, sentences: false }), ..plan(n, 0) }
}

/// Scores count `!`: after 2 characters C and D are behind, after 4 B is; A runs to the end.
fn race() -> Vec<Act> {
    vec![Act::Say("a!!!!!!!"), Act::Say("!!aaaaaa"), Act::Say("aaaaaaaa"), Act::Say("!aaaaaaa")]
}

#[tokio::test(start_paused = true)]
async fn pruning_stops_the_losers_round_by_round_and_closes_their_streams() {
    let up = streaming(race());
    let sc = scorer(false);
    let m = Metrics::new().unwrap();
    let out = go(&up, &sc, &pruned_plan(4, 2), LIMIT, &m).await.unwrap();
    assert_eq!(out.winner().unwrap().0, 0);
    assert_eq!(out.pruned(), vec![1, 2, 3]);
    // Prefix scores for the pruned (B after 4 characters, C and D after 2), the whole answer for the winner.
    assert_eq!(out.scores(), vec![Some(7.0), Some(2.0), Some(0.0), Some(1.0)]);
    assert_eq!(*sc.calls.lock().unwrap(), vec![4, 2, 1], "two rounds, then the survivor scored whole");
    assert_eq!(up.closed_early.load(std::sync::atomic::Ordering::SeqCst), 3);
    let partial = |i: usize| out.candidates[i].result.as_ref().unwrap().choices[0].message.text();
    assert_eq!((partial(1).as_str(), partial(2).as_str(), partial(3).as_str()), ("!!aa", "aa", "!a"));
    // Usage: the winner as reported, the pruned as counted (one token per delta, the same prompt).
    assert_eq!(out.usage.completion_tokens, 8 + 4 + 2 + 2);
    assert_eq!(out.usage.prompt_tokens, 4 * 7);
    assert_eq!(m.candidates.with_label_values(&["pruned"]).get(), 3);
    assert_eq!(m.pruning_rounds.get_sample_sum(), 2.0);
    assert_eq!(m.pruning_tokens_saved.get(), 4 * 8 - 16);
    assert!(out.unscored.is_none());
}

#[tokio::test(start_paused = true)]
async fn the_last_one_standing_is_handed_over_live() {
    let up = streaming(race());
    let m = Metrics::new().unwrap();
    let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel();
    let generation = Generation {
        upstream: &up,
        mode: UpstreamN::Fanout,
        candidate_timeout: LIMIT,
        metrics: &m,
        confidence: &crate::select::ConfidenceHistory::new(256, 50.0, 32),
    };
    let out = run(&generation, &selector(&scorer(false)), &pruned_plan(4, 2), Some(&tx)).await.unwrap();
    let mut got = Vec::new();
    while let Ok(update) = rx.try_recv() {
        got.push(update);
    }
    let Some(Live::Begin { id, text, model, .. }) = got.first().cloned() else { panic!("{got:?}") };
    assert_eq!((id, text.as_str(), model.as_str()), (out.id.clone(), "a!!!", "m"));
    let rest: String = got[1..].iter().map(|u| if let Live::Delta(t) = u { t.as_str() } else { "?" }).collect();
    assert_eq!(text + &rest, "a!!!!!!!", "the live text is the winner's, nothing lost or doubled");
}

#[tokio::test(start_paused = true)]
async fn top_n_pruning_stops_at_n_and_a_finished_candidate_competes_whole() {
    // B finishes after 3 characters with the best score so far; pruning keeps 2 (n = 2 choices).
    let acts = vec![Act::Say("a!!!!!!!"), Act::Say("!!!"), Act::Say("aaaaaaaa"), Act::Say("aaaaaaa!")];
    let up = streaming(acts);
    let plan = Plan { keep_at_least: 2, ..pruned_plan(4, 2) };
    let out = go(&up, &scorer(false), &plan, LIMIT, &Metrics::new().unwrap()).await.unwrap();
    assert_eq!(out.ranked, vec![0, 1]);
    assert_eq!(out.pruned(), vec![2, 3]);
}

#[tokio::test(start_paused = true)]
async fn an_upstream_that_refuses_to_stream_gets_plain_best_of_n() {
    let up = FakeUpstream { refuses_stream: true, ..upstream(0, race()) };
    let m = Metrics::new().unwrap();
    let out = go(&up, &scorer(false), &pruned_plan(4, 2), LIMIT, &m).await.unwrap();
    assert_eq!(out.winner().unwrap().0, 0);
    assert!(out.pruned().is_empty());
    assert_eq!(m.pruning_fallbacks.get(), 1);
    // One that answers `stream: true` with whole completions: nothing to prune, counted as well.
    let up = upstream(0, race());
    let out = go(&up, &scorer(false), &pruned_plan(4, 2), LIMIT, &m).await.unwrap();
    assert_eq!((out.winner().unwrap().0, out.pruned().len()), (0, 0));
    assert_eq!(m.pruning_fallbacks.get(), 2);
}

#[tokio::test(start_paused = true)]
async fn an_ordinary_4xx_is_returned_after_one_round_not_retried_unstreamed() {
    let unknown = || Act::Fail(status(404, "model 'nope' not found"));
    let up = streaming(vec![unknown(), unknown(), unknown(), unknown()]);
    let m = Metrics::new().unwrap();
    let e = go(&up, &scorer(false), &pruned_plan(4, 2), LIMIT, &m).await.unwrap_err();
    assert!(matches!(e, ApiError::UpstreamRejected { status: 404, .. }), "{e:?}");
    let seen = up.seen.lock().unwrap();
    assert_eq!(seen.len(), 4, "one round of N, no plain Best-of-N round after the streamed one");
    assert!(seen.iter().all(|b| b["stream"] == json!(true)));
    assert_eq!(m.pruning_fallbacks.get(), 0);
}

#[tokio::test(start_paused = true)]
async fn a_stalled_stream_is_dropped_like_a_failed_candidate() {
    let up = streaming(vec![Act::Say("a!!!"), Act::Hang, Act::Say("!!aa")]);
    let m = Metrics::new().unwrap();
    let out = go(&up, &scorer(false), &pruned_plan(3, 2), LIMIT, &m).await.unwrap();
    assert!(matches!(out.candidates[1].result, Err(UpstreamError::Timeout(_))));
    assert_eq!(m.candidates.with_label_values(&["timeout"]).get(), 1);
    // No round could run while one candidate had no tokens: both others finished and were compared whole.
    assert_eq!(out.winner().unwrap().0, 0);
    assert!(out.pruned().is_empty());
}

#[tokio::test(start_paused = true)]
async fn a_loop_is_pruned_by_the_guard_whatever_its_score() {
    let looping = "the promise of a new life ! ".repeat(8);
    let up = streaming(vec![
        Act::SayOwned(looping),
        Act::Say(&*Box::leak("A fine answer, with care.".repeat(3).into_boxed_str())),
    ]);
    let m = Metrics::new().unwrap();
    let out = go(&up, &scorer(false), &pruned_plan(2, 120), LIMIT, &m).await.unwrap();
    assert_eq!(out.pruned(), vec![0]);
    assert_eq!(out.winner().unwrap().0, 1);
}

#[tokio::test(start_paused = true)]
async fn stragglers_are_stopped_once_half_have_finished() {
    let up = upstream(0, vec![Act::Say("a"), Act::Hang, Act::Say("b!"), Act::Hang]);
    let m = Metrics::new().unwrap();
    let plan = Plan { straggler_wait: Some(Duration::from_millis(300)), ..plan(4, 0) };
    let started = tokio::time::Instant::now();
    let out = go(&up, &scorer(false), &plan, LIMIT, &m).await.unwrap();
    assert_eq!(started.elapsed(), Duration::from_millis(300), "not the 5 s candidate timeout");
    assert_eq!(out.winner().unwrap().0, 2);
    assert!(matches!(out.candidates[1].result, Err(UpstreamError::Straggler(_))));
    assert_eq!(m.candidates.with_label_values(&["straggler"]).get(), 2);
    // The same with pruning on (streams): the hanging ones are stopped as stragglers too.
    let up = streaming(vec![Act::Say("a"), Act::Hang, Act::Say("b!"), Act::Hang]);
    let plan = Plan { straggler_wait: Some(Duration::from_millis(300)), ..pruned_plan(4, 50) };
    let out = go(&up, &scorer(false), &plan, LIMIT, &m).await.unwrap();
    assert_eq!(out.winner().unwrap().0, 2);
    assert!(matches!(out.candidates[3].result, Err(UpstreamError::Straggler(_))));
    assert_eq!(m.candidates.with_label_values(&["straggler"]).get(), 4);
}

#[tokio::test(start_paused = true)]
async fn the_straggler_wait_never_stops_the_last_candidate_standing() {
    // A and B finish at once (half of four: the straggler clock starts), then lose the pruning rounds to C, which
    // is left alone and still generating when the wait runs out: it is not cut, it is the answer.
    let acts = vec![Act::Say("a"), Act::Say("b"), Act::Say("!!!!!!!!!!!!!!!!!!!!"), Act::Say("aaaaaaaaaaaaaaaaaaaa")];
    let up = streaming(acts);
    let plan = Plan { straggler_wait: Some(Duration::from_millis(50)), ..pruned_plan(4, 2) };
    let out = go(&up, &scorer(false), &plan, LIMIT, &Metrics::new().unwrap()).await.unwrap();
    assert_eq!(out.winner().unwrap().0, 2);
    assert_eq!(out.pruned(), vec![0, 1, 3]);
    assert_eq!(out.candidates[2].result.as_ref().unwrap().choices[0].message.text().len(), 20);
}

/// After 4 characters A leads with 4 `!`, B has 3, C 2, D 0; the whole answers tie at 4.
fn margin_race() -> Vec<Act> {
    vec![Act::Say("!!!!aaaa"), Act::Say("!!!a!aaa"), Act::Say("!!aa!!aa"), Act::Say("aaaa!!!!")]
}

#[tokio::test(start_paused = true)]
async fn the_margin_rule_never_stops_a_candidate_inside_the_margin() {
    use crate::reward::{Calibration, prefix::Point};
    // Scale 1: at P = 0.9 the margin is logit(0.9) = 2.197 score points.
    let calibrated = FakeScorer {
        calibration: Some(Calibration::new(vec![Point { tokens: 1, scale: 1.0 }]).unwrap()),
        ..scorer(false)
    };
    let plan =
        |confidence| Plan { prune: Some(Prune { every: 4, keep: 0.5, confidence, sentences: false }), ..plan(4, 0) };

    // Without the rule the bottom half goes after 4 characters, C (2 behind) and D (4 behind), then B on a tie.
    let m = Metrics::new().unwrap();
    let out = go(&streaming(margin_race()), &calibrated, &plan(None), LIMIT, &m).await.unwrap();
    assert_eq!(out.pruned(), vec![1, 2, 3]);

    // With it only D, 4 behind: C is 2 behind, inside the margin, and runs to the end; so does everyone after.
    let m = Metrics::new().unwrap();
    let out = go(&streaming(margin_race()), &calibrated, &plan(Some(0.9)), LIMIT, &m).await.unwrap();
    assert_eq!(out.pruned(), vec![3]);
    assert_eq!(out.scores()[3], Some(0.0), "D's prefix score");
    assert_eq!(out.scores()[2], Some(4.0), "C scored whole");
    assert_eq!(m.pruning_stopped.get_sample_count(), m.pruning_rounds_total.get());
    assert_eq!(m.pruning_stopped.get_sample_sum(), 1.0);
    assert_eq!(m.pruning_stop_gap.get_sample_sum(), 4.0, "D was 4 behind");
    assert!(m.pruning_held.get() >= 1, "C held");

    // A higher confidence widens the margin past every gap: nothing is stopped, the rounds still run.
    let m = Metrics::new().unwrap();
    let out = go(&streaming(margin_race()), &calibrated, &plan(Some(0.99)), LIMIT, &m).await.unwrap();
    assert!(out.pruned().is_empty());
    assert!(m.pruning_rounds_total.get() >= 1);
    assert_eq!(m.pruning_stopped.get_sample_sum(), 0.0);

    // A model without a calibration has no margin to trust: nothing is stopped on the gap alone.
    let m = Metrics::new().unwrap();
    let out = go(&streaming(margin_race()), &scorer(false), &plan(Some(0.9)), LIMIT, &m).await.unwrap();
    assert!(out.pruned().is_empty());
}

#[tokio::test(start_paused = true)]
async fn the_margin_rule_still_stops_a_loop_the_guard_ranks_below() {
    use crate::reward::{Calibration, prefix::Point};
    let calibrated = FakeScorer {
        calibration: Some(Calibration::new(vec![Point { tokens: 1, scale: 0.01 }]).unwrap()),
        ..scorer(false)
    };
    let looping = "the promise of a new life ! ".repeat(8);
    let up = streaming(vec![
        Act::SayOwned(looping),
        Act::Say(&*Box::leak("A fine answer, with care.".repeat(3).into_boxed_str())),
    ]);
    let plan =
        Plan { prune: Some(Prune { every: 120, keep: 0.5, confidence: Some(0.9), sentences: false }), ..plan(2, 0) };
    let out = go(&up, &calibrated, &plan, LIMIT, &Metrics::new().unwrap()).await.unwrap();
    assert_eq!(out.pruned(), vec![0], "ahead on score, far inside the margin, but a loop");
}
