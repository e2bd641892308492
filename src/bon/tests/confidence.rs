//! The confidence strategies in `bon::run`: the upstream's token confidence (scripted `logprobs`) picks, weighs a
//! vote, and its absence falls back.

use crate::select::{Extractor, Fallback, Select, Strategy};

use super::*;

fn with(strategy: Strategy, n: u32) -> Plan {
    Plan { select: Select { strategy, ..Select::default() }, ..plan(n, 0) }
}

#[tokio::test]
async fn confidence_picks_the_most_confident_and_a_confident_loop_still_loses() {
    let loop_text = "Paris Paris Paris Paris Paris Paris Paris Paris Paris Paris";
    let acts = vec![
        Act::Sure("Lyon is the capital!!!", 1.5, false),
        Act::Sure("The capital is Paris.", 6.0, false),
        Act::Sure(loop_text, 12.0, true),
        Act::Sure("Marseille, I think", 2.0, false),
    ];
    let up = upstream(0, acts);
    let m = Metrics::new().unwrap();
    let out = go(&up, &scorer(false), &with(Strategy::Confidence, 4), LIMIT, &m).await.unwrap();
    assert_eq!(out.winner().unwrap().0, 1, "the reward model would pick 0 (most `!`), the loop is most confident");
    assert_eq!(out.ranked, vec![1, 3, 0, 2], "by confidence, the length-cut loop last");
    assert_eq!((out.selection.decided_by, out.selection.fallback), (Strategy::Confidence, None));
    let c = out.candidates[1].confidence.unwrap();
    assert_eq!((c.lowest, c.tail, c.mean, c.tokens), (6.0, 6.0, 6.0, 4));
    assert_eq!(m.candidate_confidence.get_sample_count(), 4);
    assert_eq!(m.selections.with_label_values(&["confidence", "confidence"]).get(), 1);
}

#[tokio::test]
async fn a_confidence_weighted_vote_overturns_a_bare_majority() {
    // Three unsure 7s against two confident 8s.
    let acts = vec![
        Act::Sure("It is 7", 1.0, false),
        Act::Sure("8, surely", 5.0, false),
        Act::Sure("7 I guess", 1.1, false),
        Act::Sure("Answer: 8", 5.5, false),
        Act::Sure("maybe 7!!", 0.9, false),
    ];
    let m = Metrics::new().unwrap();
    let vote = go(&upstream(0, acts.clone()), &scorer(false), &with(Strategy::Vote, 5), LIMIT, &m).await.unwrap();
    assert_eq!(vote.selection.vote.unwrap().answer, "7", "a plain count: 3 to 2");
    let out = go(&upstream(0, acts), &scorer(false), &with(Strategy::ConfidenceVote, 5), LIMIT, &m).await.unwrap();
    let v = out.selection.vote.clone().unwrap();
    // The most confident half (ceil(2.5) = 3 voters): both 8s and the surest 7.
    assert_eq!((v.answer.as_str(), v.winner_voters, v.voters), ("8", 2, 3));
    assert!((v.winner_weight - 10.5).abs() < 1e-6 && (v.total_weight - 11.6).abs() < 1e-6, "{v:?}");
    assert_eq!(out.winner().unwrap().0, 3, "the most confident of the winning answer");
    assert_eq!(out.selection.decided_by, Strategy::ConfidenceVote);
}

#[tokio::test]
async fn without_logprobs_the_confidence_strategies_fall_back_and_say_so() {
    let acts = vec![Act::Say("7!!"), Act::Say("8"), Act::Say("8")];
    let m = Metrics::new().unwrap();
    let out = go(&upstream(0, acts.clone()), &scorer(false), &with(Strategy::Confidence, 3), LIMIT, &m).await.unwrap();
    assert_eq!((out.selection.decided_by, out.selection.fallback), (Strategy::Reward, Some(Fallback::NoLogprobs)));
    assert_eq!(out.winner().unwrap().0, 0, "the reward model decides");
    let mut p = with(Strategy::ConfidenceVote, 3);
    p.select.answer = Extractor::LastNumber;
    let out = go(&upstream(0, acts), &scorer(false), &p, LIMIT, &m).await.unwrap();
    assert_eq!((out.selection.decided_by, out.selection.fallback), (Strategy::Vote, Some(Fallback::NoLogprobs)));
    assert_eq!(out.selection.vote.as_ref().unwrap().answer, "8", "a plain count decides");
    assert_eq!(m.selection_fallbacks.with_label_values(&["confidence", "no-logprobs"]).get(), 1);
    assert_eq!(m.selection_fallbacks.with_label_values(&["confidence-vote", "no-logprobs"]).get(), 1);
    // Not a degraded result: the upstream does not return logprobs, a retry would not either.
    assert_eq!(crate::cache::Degraded::degraded(&Arc::new(out)), None);
}

#[tokio::test]
async fn a_confidence_vote_without_answers_leaves_the_confidence_order() {
    let mut p = with(Strategy::ConfidenceVote, 3);
    p.select.answer = Extractor::LastNumber;
    let acts = vec![
        Act::Sure("no digits!!", 1.0, false),
        Act::Sure("none here", 4.0, false),
        Act::Sure("nor here", 2.0, false),
    ];
    let m = Metrics::new().unwrap();
    let out = go(&upstream(0, acts), &scorer(false), &p, LIMIT, &m).await.unwrap();
    assert_eq!((out.selection.decided_by, out.selection.fallback), (Strategy::Confidence, Some(Fallback::NoAnswers)));
    assert_eq!(out.ranked, vec![1, 2, 0]);
}

#[tokio::test]
async fn two_fairly_sure_agreeing_voters_outweigh_the_single_surest() {
    let acts = vec![
        Act::Sure("5", 5.0, false),
        Act::Sure("6", 4.0, false),
        Act::Sure("It is 6", 3.9, false),
        Act::Sure("7", 1.0, false),
        Act::Sure("8", 0.5, false),
    ];
    let m = Metrics::new().unwrap();
    let sure = go(&upstream(0, acts.clone()), &scorer(false), &with(Strategy::Confidence, 5), LIMIT, &m).await.unwrap();
    assert_eq!(sure.winner().unwrap().0, 0, "the single surest");
    let out = go(&upstream(0, acts), &scorer(false), &with(Strategy::ConfidenceVote, 5), LIMIT, &m).await.unwrap();
    let v = out.selection.vote.clone().unwrap();
    assert_eq!((v.answer.as_str(), v.voters), ("6", 3), "6 weighs 7.9 against 5's 5.0 among the surest three");
    assert_eq!(out.winner().unwrap().0, 1, "the surer of the two 6s");
}
