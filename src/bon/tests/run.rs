//! `bon::run` end to end against the fake upstream and scorer of `mod.rs`: selection, failures, native `n`,
//! the guard and the over-optimisation signals.

use super::*;

#[tokio::test]
async fn highest_score_wins_and_seeds_are_distinct() {
    let up = upstream(100, vec![Act::Say("a!"), Act::Say("b!!!"), Act::Say("c"), Act::Say("d!!")]);
    let sc = scorer(false);
    let m = Metrics::new().unwrap();
    let out = go(&up, &sc, &plan(4, 100), LIMIT, &m).await.unwrap();
    assert_eq!(out.ranked, vec![1, 3, 0, 2]);
    assert_eq!(out.winner().unwrap().0, 1);
    assert_eq!(out.scores(), vec![Some(1.0), Some(3.0), Some(0.0), Some(2.0)]);
    let mut seeds: Vec<i64> = up.seen.lock().unwrap().iter().map(|b| b["seed"].as_i64().unwrap()).collect();
    seeds.sort_unstable();
    assert_eq!(seeds, vec![100, 101, 102, 103]);
    assert_eq!(*sc.calls.lock().unwrap(), vec![4], "all candidates scored in one call");
    assert_eq!(out.usage.completion_tokens, 2 + 4 + 1 + 3);
    assert_eq!(out.usage.prompt_tokens, 4 * 7);
    assert!(out.id.starts_with("chatcmpl-bon-"));
}

#[tokio::test]
async fn failed_candidates_are_dropped() {
    let up = upstream(
        0,
        vec![
            Act::Fail(UpstreamError::Transport("reset".into())),
            Act::Say("ok!"),
            Act::Fail(UpstreamError::EmptyChoices),
            Act::Say("ok!!"),
        ],
    );
    let m = Metrics::new().unwrap();
    let out = go(&up, &scorer(false), &plan(4, 0), LIMIT, &m).await.unwrap();
    assert_eq!(out.ranked, vec![3, 1]);
    assert_eq!(out.scores(), vec![None, Some(1.0), None, Some(2.0)]);
    assert_eq!(m.candidates.with_label_values(&["transport"]).get(), 1);
    assert_eq!(m.candidates.with_label_values(&["empty"]).get(), 1);
    assert_eq!(m.candidates.with_label_values(&["ok"]).get(), 2);
}

#[tokio::test(start_paused = true)]
async fn a_hanging_candidate_times_out_and_one_survivor_is_not_scored() {
    let up = upstream(0, vec![Act::Hang, Act::Say("only")]);
    let sc = scorer(false);
    let m = Metrics::new().unwrap();
    let out = go(&up, &sc, &plan(2, 0), Duration::from_secs(30), &m).await.unwrap();
    assert_eq!(out.ranked, vec![1]);
    assert_eq!(out.unscored, Some(Unscored::SingleSurvivor));
    assert!(matches!(out.candidates[0].result, Err(UpstreamError::Timeout(_))));
    assert!(sc.calls.lock().unwrap().is_empty(), "one survivor needs no scoring");
    assert_eq!(m.candidates.with_label_values(&["timeout"]).get(), 1);
}

#[tokio::test]
async fn scorer_failure_falls_back_to_the_first_success() {
    let up = upstream(0, vec![Act::Fail(UpstreamError::EmptyChoices), Act::Say("x"), Act::Say("y!!")]);
    let m = Metrics::new().unwrap();
    let out = go(&up, &scorer(true), &plan(3, 0), LIMIT, &m).await.unwrap();
    assert_eq!(out.winner().unwrap().0, 1);
    assert_eq!(out.unscored, Some(Unscored::ScorerFailed));
    assert_eq!(m.scorer_fallbacks.get(), 1);
}

#[tokio::test]
async fn all_failed_lists_every_cause() {
    let up = upstream(
        0,
        vec![
            Act::Fail(UpstreamError::Transport("refused".into())),
            Act::Fail(UpstreamError::Decode("bad json".into())),
        ],
    );
    let err = go(&up, &scorer(false), &plan(2, 0), LIMIT, &Metrics::new().unwrap()).await.unwrap_err();
    assert_eq!(err.status_code(), 502);
    let text = err.to_string();
    assert!(
        text.contains("[0] upstream connection failed: refused")
            && text.contains("[1] upstream sent an invalid response: bad json"),
        "{text}"
    );
}

#[tokio::test]
async fn the_same_client_error_everywhere_is_passed_through() {
    let up = upstream(0, vec![Act::Fail(status(404, "model 'x' not found")); 3]);
    let err = go(&up, &scorer(false), &plan(3, 0), LIMIT, &Metrics::new().unwrap()).await.unwrap_err();
    assert_eq!(err.status_code(), 404);
    assert!(err.to_string().contains("model 'x' not found"));

    // Mixed causes, or a 429, are not the client's fault as such: 502.
    let up = upstream(0, vec![Act::Fail(status(404, "gone")), Act::Fail(status(500, "boom"))]);
    let err = go(&up, &scorer(false), &plan(2, 0), LIMIT, &Metrics::new().unwrap()).await.unwrap_err();
    assert_eq!(err.status_code(), 502);
    let up = upstream(0, vec![Act::Fail(status(429, "slow down")); 2]);
    let err = go(&up, &scorer(false), &plan(2, 0), LIMIT, &Metrics::new().unwrap()).await.unwrap_err();
    assert_eq!(err.status_code(), 502);
}

#[tokio::test]
async fn ties_go_to_the_lowest_index() {
    let up = upstream(0, vec![Act::Say("a"), Act::Say("b!"), Act::Say("c!")]);
    let out = go(&up, &scorer(false), &plan(3, 0), LIMIT, &Metrics::new().unwrap()).await.unwrap();
    assert_eq!(out.ranked, vec![1, 2, 0]);
}

#[tokio::test]
async fn native_n_sends_one_request_and_splits_the_choices() {
    let mut up = upstream(5, vec![Act::Say("a"), Act::Say("b!!"), Act::Say("c!")]);
    up.honours_n = true;
    let m = Metrics::new().unwrap();
    let out = generate(&up, &scorer(false), &plan(3, 5), LIMIT, &m, UpstreamN::Native).await.unwrap();
    assert_eq!(up.seen.lock().unwrap().len(), 1, "one upstream request");
    assert_eq!(up.seen.lock().unwrap()[0]["n"], json!(3));
    assert_eq!(out.ranked, vec![1, 2, 0]);
    // Usage is counted once, not once per choice.
    assert_eq!(out.usage.prompt_tokens, 7);
    assert_eq!(m.candidates.with_label_values(&["ok"]).get(), 3);
}

#[tokio::test]
async fn native_n_over_a_pool_sends_one_request_per_share_with_the_seed_of_its_first_candidate() {
    let mut up = upstream(5, vec![Act::Say("a"), Act::Say("b!!"), Act::Say("c!"), Act::Say("d!!!!")]);
    up.honours_n = true;
    up.split = Some(vec![2, 2]);
    let m = Metrics::new().unwrap();
    let out = generate(&up, &scorer(false), &plan(4, 5), LIMIT, &m, UpstreamN::Native).await.unwrap();
    let seen: Vec<(Value, Value)> =
        up.seen.lock().unwrap().iter().map(|b| (b["seed"].clone(), b["n"].clone())).collect();
    assert_eq!(seen, [(json!(5), json!(2)), (json!(7), json!(2))]);
    let texts: Vec<String> =
        out.candidates.iter().map(|c| c.result.as_ref().unwrap().choices[0].message.text()).collect();
    assert_eq!(texts, ["a", "b!!", "c!", "d!!!!"], "candidates keep their index whichever share served them");
    assert_eq!(out.ranked[0], 3);
}

#[tokio::test]
async fn auto_falls_back_to_fan_out_when_n_is_ignored_and_the_pool_remembers() {
    // Like Ollama: `n` is ignored, one choice comes back.
    let up = Arc::new(upstream(0, vec![Act::Say("a"), Act::Say("b!!"), Act::Say("c!")]));
    let m = Arc::new(Metrics::new().unwrap());
    let opts = crate::upstream::PoolOptions { learn_n: true, ..Default::default() };
    let pool = crate::upstream::Pool::new(vec![("0".into(), up.clone() as Arc<dyn Upstream>)], opts, m.clone());
    let generation = Generation {
        upstream: &pool,
        mode: UpstreamN::Auto,
        candidate_timeout: LIMIT,
        metrics: &m,
        confidence: &crate::select::ConfidenceHistory::new(256, 50.0, 32),
    };
    let out = run(&generation, &selector(&scorer(false)), &plan(3, 0), None).await.unwrap();
    assert_eq!(out.candidates.len(), 3, "never fewer candidates than N");
    assert_eq!(out.ranked, vec![1, 2, 0]);
    let seeds: Vec<i64> = up.seen.lock().unwrap().iter().map(|b| b["seed"].as_i64().unwrap()).collect();
    assert_eq!(seeds.len(), 3, "the native request plus two fan-out requests: {seeds:?}");

    // Next time: straight to fan-out, no `n` sent.
    up.seen.lock().unwrap().clear();
    run(&generation, &selector(&scorer(false)), &plan(3, 0), None).await.unwrap();
    let seen = up.seen.lock().unwrap();
    assert_eq!(seen.len(), 3);
    assert!(seen.iter().all(|b| !b.contains_key("n")), "{seen:?}");
}

#[tokio::test]
async fn auto_fans_out_every_candidate_when_the_pool_has_no_share_for_n() {
    // A pool whose members all ignore `n` (it learnt so itself) gives no share.
    let mut up = upstream(0, vec![Act::Say("a"), Act::Say("b!!"), Act::Say("c!")]);
    up.split = Some(Vec::new());
    let out =
        generate(&up, &scorer(false), &plan(3, 0), LIMIT, &Metrics::new().unwrap(), UpstreamN::Auto).await.unwrap();
    assert_eq!(out.ranked, vec![1, 2, 0]);
    let seen = up.seen.lock().unwrap();
    assert_eq!(seen.len(), 3, "three fan-out requests, no native one");
    assert!(seen.iter().all(|b| !b.contains_key("n")));
}

#[tokio::test]
async fn native_mode_never_claims_more_candidates_than_came_back() {
    let up = upstream(0, vec![Act::Say("a"), Act::Say("b")]);
    let m = Metrics::new().unwrap();
    let out = generate(&up, &scorer(false), &plan(2, 0), LIMIT, &m, UpstreamN::Native).await.unwrap();
    assert_eq!(out.candidates.len(), 2);
    assert!(out.candidates[1].result.is_err());
    assert_eq!(out.unscored, Some(Unscored::SingleSurvivor));
}

/// A looping answer that the fake scorer loves (many `!`).
fn loop_text() -> String {
    format!("Here we go! {}", "the promise of a new life! ".repeat(30))
}

#[tokio::test]
async fn the_guard_ranks_loops_then_cut_answers_below_coherent_ones() {
    let acts = vec![Act::SayOwned(loop_text()), Act::Cut("cut short!!!!!"), Act::Say("fine!"), Act::Say("ok")];
    let up = upstream(0, acts.clone());
    let m = Metrics::new().unwrap();
    let out = go(&up, &scorer(false), &plan(4, 0), LIMIT, &m).await.unwrap();
    // Scores: the loop 31, the cut answer 5, "fine!" 1, "ok" 0.
    assert_eq!(out.ranked, vec![2, 3, 1, 0]);
    assert_eq!(out.candidates[0].flags, guard::Flags { repetitive: true, truncated: false });
    assert_eq!(out.candidates[1].flags, guard::Flags { repetitive: false, truncated: true });
    assert_eq!(m.guard_overrides.get(), 1);
    assert_eq!(m.guard_flags.with_label_values(&["repetitive"]).get(), 1);
    assert_eq!(m.guard_flags.with_label_values(&["truncated"]).get(), 1);

    // Off: plain score order, flags still reported.
    let up = upstream(0, acts);
    let m = Metrics::new().unwrap();
    let out = go(&up, &scorer(false), &Plan { guard: false, ..plan(4, 0) }, LIMIT, &m).await.unwrap();
    assert_eq!(out.ranked, vec![0, 1, 2, 3]);
    assert!(out.candidates[0].flags.repetitive);
    assert_eq!(m.guard_overrides.get(), 0);
}

#[tokio::test]
async fn when_every_candidate_is_cut_the_score_decides() {
    let up = upstream(0, vec![Act::Cut("a!"), Act::Cut("b!!!"), Act::Cut("c!!")]);
    let m = Metrics::new().unwrap();
    let out = go(&up, &scorer(false), &plan(3, 0), LIMIT, &m).await.unwrap();
    assert_eq!(out.ranked, vec![1, 2, 0]);
    assert_eq!(m.guard_overrides.get(), 0);
}

#[tokio::test]
async fn a_scorer_failure_still_skips_a_loop() {
    let up = upstream(0, vec![Act::SayOwned(loop_text()), Act::Say("x"), Act::Say("y")]);
    let m = Metrics::new().unwrap();
    let out = go(&up, &scorer(true), &plan(3, 0), LIMIT, &m).await.unwrap();
    assert_eq!(out.unscored, Some(Unscored::ScorerFailed));
    assert_eq!(out.winner().unwrap().0, 1);
}

#[tokio::test]
async fn over_optimisation_signals_are_observed_per_scored_call() {
    let up = upstream(0, vec![Act::Say("a"), Act::Say("b!"), Act::Say("c!!"), Act::Say("d!!!")]);
    let m = Metrics::new().unwrap();
    go(&up, &scorer(false), &plan(4, 0), LIMIT, &m).await.unwrap();
    assert_eq!(m.score_spread.get_sample_count(), 1);
    assert!((m.score_spread.get_sample_sum() - 3.0).abs() < 1e-9);
    // Scores 0..3: mean 1.5, population sd sqrt(1.25); the winner (3) is 1.342 sd above.
    assert!((m.winner_z.get_sample_sum() - 1.5 / 1.25f64.sqrt()).abs() < 1e-6);
    assert!((m.kl_bound.get_sample_sum() - (4f64.ln() - 0.75)).abs() < 1e-9);
}

#[test]
fn completion_ids_are_ours_and_distinct() {
    let (a, b) = (completion_id(), completion_id());
    let hex = a.strip_prefix("chatcmpl-bon-").unwrap();
    assert_eq!(hex.len(), 24);
    assert!(hex.bytes().all(|c| c.is_ascii_digit() || (b'a'..=b'f').contains(&c)), "{a}");
    assert_ne!(a, b);
}
