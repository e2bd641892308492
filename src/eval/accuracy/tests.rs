use super::*;

fn s(answer: &str, reward: f32, tokens: u64) -> Sample {
    let mut x = super::super::sample_err("");
    x.error = None;
    x.answer = Some(answer.to_owned());
    x.reward = Some(reward);
    x.completion_tokens = Some(tokens);
    x
}

const SIM: Simulate = Simulate {
    guard: true,
    vote_temperature: 1.0,
    confidence_keep: 0.5,
    window: 16,
    percentile: 50.0,
    history: 256,
    min_history: 32,
};

#[test]
fn many_subsets_are_drawn_not_enumerated_and_the_estimate_says_so() {
    assert_eq!((binomial(8, 4), binomial(32, 16), binomial(3, 5)), (70, 601_080_390, 0));
    assert_eq!(binomial(400, 200), u64::MAX);
    // 32 samples, n = 16: 6·10^8 subsets exactly would take hours; drawn, it takes a moment.
    let samples: Vec<Sample> = (0..32).map(|i| s(if i % 4 == 0 { "42" } else { "7" }, i as f32, 10)).collect();
    let greedy = s("42", 0.0, 10);
    let a = accuracy(&[(Some("42"), &samples, &greedy)], 16, SIM);
    let sampled = a.sampled.clone().expect("estimated, and said so");
    assert_eq!((sampled.prompts, sampled.draws), (1, DRAWS));
    // 8 of 32 say 42: a 16-subset has a 42 almost surely, and 7 wins the vote almost surely.
    assert!(a.any_correct.unwrap() > 0.99 && a.vote.unwrap() < 0.01, "{a:?}");
    assert!(sampled.any_correct_se < 0.01 && sampled.vote_se < 0.01, "{sampled:?}");
    assert_eq!(accuracy(&[(Some("42"), &samples, &greedy)], 16, SIM), a, "seeded: the same estimate twice");
    // Small enough: exact, as before.
    assert_eq!(accuracy(&[(Some("42"), &samples[..8], &greedy)], 4, SIM).sampled, None);
}

#[test]
fn the_estimate_is_unbiased_where_the_exact_value_is_known() {
    // 12 samples, n = 6: 924 subsets, exact; the same computed from draws must land within a few standard errors.
    let samples: Vec<Sample> =
        (0..12).map(|i| s(if i % 3 == 0 { "42" } else { "7" }, (i * 7 % 12) as f32, 10 + i)).collect();
    let greedy = s("42", 0.0, 10);
    let exact = accuracy(&[(Some("42"), &samples, &greedy)], 6, SIM);
    let subsets: Vec<Vec<usize>> = {
        let mut rng = StdRng::seed_from_u64(7);
        (0..DRAWS).map(|_| rand::seq::index::sample(&mut rng, 12, 6).into_vec()).collect()
    };
    let ok: Vec<&Sample> = samples.iter().collect();
    let right: Vec<f64> = ok.iter().map(|x| f64::from(u8::from(x.answer.as_deref() == Some("42")))).collect();
    let keys = keys(ok.iter().copied(), SIM.guard);
    let drawn: Vec<f64> =
        subsets.iter().map(|sub| right[vote_pick(&ok, &keys, sub, Weighting::Count, SIM.guard)]).collect();
    let (mean, var) = mean_and_variance_of_mean(&drawn);
    assert!((mean - exact.vote.unwrap()).abs() < 4.0 * var.sqrt() + 1e-9, "{mean} vs {:?}", exact.vote);
}

fn sure(answer: &str, reward: f32, confidence: f64) -> Sample {
    let c = crate::select::Confidence { lowest: confidence, tail: confidence, mean: confidence, tokens: 4 };
    Sample { confidence: Some(c), ..s(answer, reward, 10) }
}

#[test]
fn confidence_strategies_as_the_proxy_runs_them_and_their_reliability() {
    // Three unsure 7s (the reward model likes them) against two sure 8s; the reference says 8.
    let samples =
        vec![sure("7", 3.0, 1.0), sure("8", 0.0, 5.0), sure("7", 2.0, 1.1), sure("8", 0.5, 5.5), sure("7", 1.0, 0.9)];
    let greedy = s("8", 0.0, 10);
    let a = accuracy(&[(Some("8"), &samples, &greedy)], 5, SIM);
    assert_eq!((a.vote, a.reward), (Some(0.0), Some(0.0)), "a count and the reward model say 7");
    assert_eq!((a.confidence, a.confidence_vote), (Some(1.0), Some(1.0)), "{a:?}");
    // n = 1: every strategy is one sample.
    let one = accuracy(&[(Some("8"), &samples, &greedy)], 1, SIM);
    assert_eq!((one.confidence, one.confidence_vote), (Some(0.4), Some(0.4)));
    // Without confidences the columns are empty.
    let plain: Vec<Sample> = samples.iter().map(|x| Sample { confidence: None, ..x.clone() }).collect();
    let a = accuracy(&[(Some("8"), &plain, &greedy)], 5, SIM);
    assert_eq!((a.confidence, a.confidence_vote), (None, None));
    let bands = reliability(&[(Some("8"), &samples, &greedy)], 2);
    assert_eq!(bands.len(), 2);
    assert_eq!((bands[0].samples, bands[0].accuracy, bands[0].from, bands[0].to), (3, 0.0, 0.9, 1.1));
    assert_eq!((bands[1].samples, bands[1].accuracy), (2, 1.0));
}

#[test]
fn combinations_are_all_n_subsets() {
    assert_eq!(combinations(4, 2).count(), 6);
    assert_eq!(combinations(8, 4).count(), 70);
    assert_eq!(combinations(3, 3).collect::<Vec<_>>(), vec![vec![0, 1, 2]]);
    assert_eq!(combinations(2, 3).count(), 0);
    assert_eq!(combinations(3, 1).collect::<Vec<_>>(), vec![vec![0], vec![1], vec![2]]);
}

#[test]
fn vote_beats_a_reward_model_that_prefers_a_wrong_answer() {
    // Right answer 42 three times with low reward; a wrong one with the highest.
    let samples = [s("42", 0.0, 10), s("41", 5.0, 10), s("42", 0.1, 10), s("42", 0.2, 10)];
    let greedy = s("42", 0.0, 10);
    let a = accuracy(&[(Some("42."), &samples, &greedy)], 4, SIM);
    assert_eq!((a.prompts, a.single, a.greedy), (1, Some(0.75), Some(1.0)));
    assert_eq!((a.reward, a.vote, a.any_correct), (Some(0.0), Some(1.0), Some(1.0)));
    assert_eq!(a.weighted_vote, Some(0.0), "softmax(5.0) outweighs three near-zero votes");
    // n = 1: every strategy is a single sample.
    let one = accuracy(&[(Some("42"), &samples, &greedy)], 1, SIM);
    assert_eq!((one.reward, one.vote, one.any_correct), (Some(0.75), Some(0.75), Some(0.75)));
    assert_eq!(one.agreement_tokens, Some(1.0));
    // n = 2: the vote is a tie between 42 and 41 in 3 of 6 pairs, decided by summed reward (41 wins those).
    let two = accuracy(&[(Some("42"), &samples, &greedy)], 2, SIM);
    assert_eq!(two.vote, Some(0.5));
}

#[test]
fn stop_on_agreement_spends_what_the_deciding_answers_took() {
    // Three short agreeing answers decide a 4-vote (3 > 0 + 1): 5 + 6 + 7 spent, the stopped one 7 of its 100.
    let samples = [s("1", 0.0, 5), s("1", 0.0, 6), s("1", 0.0, 7), s("2", 0.0, 100)];
    let ok: Vec<&Sample> = samples.iter().collect();
    let share = agreement_share(&ok, &[0, 1, 2, 3], true);
    assert!((share - (5.0 + 6.0 + 7.0 + 7.0) / 118.0).abs() < 1e-12, "{share}");
    // Disagreement to the end: everything is spent.
    let split = [s("1", 0.0, 5), s("2", 0.0, 6)];
    let ok: Vec<&Sample> = split.iter().collect();
    assert_eq!(agreement_share(&ok, &[0, 1], true), 1.0);
}

#[test]
fn prompts_without_a_reference_are_skipped() {
    let samples = [s("1", 0.0, 5)];
    let a = accuracy(&[(None, &samples, &samples[0])], 1, SIM);
    assert_eq!((a.prompts, a.vote), (0, None));
}

#[test]
fn the_online_stop_learns_from_earlier_prompts_and_drops_the_unsure() {
    let with_tokens = |answer: &str, tokens: &[f32]| {
        let mut x = s(answer, 0.0, tokens.len() as u64);
        let as_f64: Vec<f64> = tokens.iter().map(|&c| f64::from(c)).collect();
        x.confidence = confidence::summarise(&as_f64, 2);
        x.token_confidence = Some(tokens.to_vec());
        x
    };
    let sure = |answer: &str| with_tokens(answer, &[5.0; 10]);
    let unsure = |answer: &str| with_tokens(answer, &[5.0, 1.0, 1.0, 1.0, 1.0, 1.0, 1.0, 1.0, 1.0, 1.0]);
    // The first prompt fills the history (lowest 5, 5, 1, 1: the median is 3); no stop there, none before it.
    let first = vec![sure("1"), sure("2"), unsure("3"), unsure("4")];
    // The second: two sure right answers, two unsure wrong ones: their first window (3) is not below 3, their second is: stopped at their third token.
    let second = vec![unsure("7"), sure("42"), unsure("7"), sure("42")];
    let greedy = s("42", 0.0, 10);
    let sim = Simulate { window: 2, min_history: 4, ..SIM };
    let a = accuracy(&[(Some("1"), &first, &greedy), (Some("42"), &second, &greedy)], 4, sim);
    assert_eq!(a.online_confidence_vote, Some(1.0), "the first prompt right by confidence, the second after the stop");
    assert_eq!(a.online_tokens, Some((1.0 + (10.0 + 10.0 + 3.0 + 3.0) / 40.0) / 2.0), "{a:?}");
    // Without history nothing is stopped.
    let a = accuracy(&[(Some("42"), &second, &greedy)], 4, sim);
    assert_eq!(a.online_tokens, Some(1.0));
}
