//! `bon-proxy eval` end to end in-process: a fake upstream answering per seed, the real tiny reward model through
//! ONNX Runtime, and a fake judge that returns logprobs as an OpenAI-compatible server does.

#![cfg(feature = "eval")]
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic, reason = "tests fail loudly")]

mod common;

use std::path::Path;

use bon_proxy::eval::{self, EvalArgs};
use clap::Parser;
use common::{BySeed, capital_answers, fixture, mock_upstream};
use serde_json::{Value, json};
use wiremock::{Mock, MockServer, Request, Respond, ResponseTemplate, matchers};

#[derive(Parser)]
struct Cli {
    #[command(flatten)]
    args: EvalArgs,
}

fn args(prompts: &Path, upstream: &str, out: &Path, extra: &[&str]) -> EvalArgs {
    let model = fixture("tiny-qwen3-chatml");
    let mut argv = vec![
        "eval",
        "--prompts",
        prompts.to_str().unwrap(),
        "--upstream",
        upstream,
        "--out",
        out.to_str().unwrap(),
        "--reward-model",
        model.to_str().unwrap(),
        "--device",
        "cpu",
        "--n",
        "1,2,4",
    ];
    argv.extend_from_slice(extra);
    Cli::try_parse_from(argv).unwrap().args
}

/// Rates an answer 8.8 when it names Paris and is not Lyon, else 2; prefers the answer that names Paris alone.
struct FakeJudge {
    logprobs: bool,
}

fn good(answer: &str) -> bool {
    answer.contains("Paris") && !answer.contains("Lyon")
}

impl Respond for FakeJudge {
    fn respond(&self, request: &Request) -> ResponseTemplate {
        let body: Value = serde_json::from_slice(&request.body).unwrap();
        assert_eq!(body["max_tokens"], 1);
        assert_eq!(body["logprobs"], true);
        let prompt = body["messages"][0]["content"].as_str().unwrap();
        let top: Vec<(&str, f64)> = if let Some(a) = common::fenced(prompt, "ANSWER A") {
            let b = common::fenced(prompt, "ANSWER B").unwrap();
            match (good(a), good(b)) {
                (true, false) => vec![("A", 0.9), ("B", 0.1)],
                (false, true) => vec![("A", 0.1), ("B", 0.9)],
                // A judge with a position bias: equal answers get A.
                _ => vec![("A", 0.7), ("B", 0.3)],
            }
        } else {
            let answer = common::fenced(prompt, "ANSWER").unwrap();
            if good(answer) { vec![("9", 0.8), (" 8", 0.2), ("Sure", 0.0)] } else { vec![("2", 1.0)] }
        };
        let top_logprobs: Vec<Value> = top.iter().map(|(t, p)| json!({"token": t, "logprob": p.ln()})).collect();
        let logprobs =
            json!({"content": [{"token": top[0].0, "logprob": top[0].1.ln(), "top_logprobs": top_logprobs}]});
        let mut choice =
            json!({"index": 0, "message": {"role": "assistant", "content": top[0].0}, "finish_reason": "length"});
        if self.logprobs {
            choice["logprobs"] = logprobs;
        }
        ResponseTemplate::new(200).set_body_json(json!({"choices": [choice], "model": "judge"}))
    }
}

async fn judge(logprobs: bool) -> MockServer {
    let server = MockServer::start().await;
    Mock::given(matchers::method("POST"))
        .and(matchers::path("/v1/chat/completions"))
        .respond_with(FakeJudge { logprobs })
        .mount(&server)
        .await;
    server
}

fn write_prompts(dir: &Path) -> std::path::PathBuf {
    let path = dir.join("prompts.jsonl");
    let lines = [
        json!({"prompt": common::CAPITAL_QUESTION}).to_string(),
        String::new(),
        json!({"messages": [{"role": "user", "content": common::CAPITAL_QUESTION}]}).to_string(),
    ];
    std::fs::write(&path, lines.join("\n")).unwrap();
    path
}

fn close(a: f64, b: f64) -> bool {
    (a - b).abs() < 1e-3
}

#[tokio::test]
async fn eval_reports_the_exact_best_of_n_and_the_judge() {
    let dir = tempdir("eval-judge");
    let answers = capital_answers();
    let texts: Vec<String> = answers.iter().map(|(t, _)| t.clone()).collect();
    // Two prompts x (4 samples + 1 greedy).
    let upstream = mock_upstream(BySeed::answers(0, &texts), 10).await;
    let judge = judge(true).await;
    let out = dir.join("out");
    let a = args(&write_prompts(&dir), &upstream.uri(), &out, &["--judge", &judge.uri(), "--judge-model", "j"]);
    let results = eval::run(a).await.unwrap();

    let scores: Vec<f64> = answers.iter().map(|(_, s)| f64::from(*s)).collect();
    let mean = scores.iter().sum::<f64>() / 4.0;
    // Best of 2 by hand: over the 6 pairs, the higher score of each.
    let mut pairs = Vec::new();
    for i in 0..4 {
        for j in i + 1..4 {
            pairs.push(scores[i].max(scores[j]));
        }
    }
    let best2 = pairs.iter().sum::<f64>() / 6.0;
    let by_n: Vec<_> = results.by_n.iter().map(|r| r.n).collect();
    assert_eq!(by_n, vec![1, 2, 4]);
    let [one, two, four] = &results.by_n[..] else { unreachable!() };
    assert_eq!((one.prompts, results.prompts, results.failed_samples), (2, 2, 0));
    assert!(close(one.best_of_n_reward.unwrap(), mean), "{one:?}");
    assert!(close(one.single_reward.unwrap(), mean));
    assert!(close(two.best_of_n_reward.unwrap(), best2), "{two:?} vs {best2}");
    assert!(close(four.best_of_n_reward.unwrap(), scores[3]));
    // Greedy (temperature 0, seed 0) got answer 0 from the seed-keyed fake.
    assert!(close(results.greedy_reward.unwrap(), scores[0]));
    assert!((four.kl_bound - (4f64.ln() - 0.75)).abs() < 1e-12);

    // Judge: Lyon is the only bad answer (rating 2); the others rate (0.8*9 + 0.2*8) = 8.8.
    assert!(close(one.single_rating.unwrap(), (3.0 * 8.8 + 2.0) / 4.0));
    assert!(close(four.best_of_n_rating.unwrap(), 8.8));
    assert_eq!(results.judge_failures, 0);
    // n=4 picks answer 3 (Paris) over sample 0 (Paris): both good, so the position-biased judge prefers A in both
    // orders, which cancels to 0.5: a tie, not a win.
    let vs_single = four.vs_single.as_ref().unwrap();
    assert_eq!((vs_single.wins, vs_single.ties, vs_single.losses), (0, 2, 0));
    assert!(close(vs_single.mean_preference, 0.5));

    let report = std::fs::read_to_string(out.join("report.md")).unwrap();
    assert!(report.contains("| 4 | 2 |"), "{report}");
    assert!(report.contains("judge_vs_n.png"));
    let json: Value = serde_json::from_str(&std::fs::read_to_string(out.join("results.json")).unwrap()).unwrap();
    assert_eq!(json["prompts"][0]["samples"].as_array().unwrap().len(), 4);
    assert_eq!(json["prompts"][0]["samples"][2]["seed"], 2);
    assert_eq!(json["results"]["by_n"][2]["n"], 4);
    for png in ["reward_vs_n.png", "length_vs_n.png", "judge_vs_n.png"] {
        let bytes = std::fs::read(out.join(png)).unwrap();
        assert_eq!(&bytes[..8], b"\x89PNG\r\n\x1a\n", "{png}");
        assert!(bytes.len() > 5_000, "{png} looks empty: {} bytes", bytes.len());
    }
}

#[tokio::test]
async fn reference_answers_give_accuracy_per_strategy_and_a_plot() {
    let dir = tempdir("eval-accuracy");
    let texts: Vec<String> = ["47 times 8 is 376.", "It is 386.", "376", "The answer: 380, I think"]
        .iter()
        .map(|t| (*t).to_owned())
        .collect();
    // Three prompts (two with a reference answer) x (4 samples + 1 greedy).
    let upstream = mock_upstream(BySeed::answers(0, &texts), 15).await;
    let path = dir.join("math.jsonl");
    let lines = [
        json!({"prompt": "What is 47 times 8?", "answer": 376}),
        json!({"prompt": "What is 8 times 47?", "answer": "376."}),
        json!({"prompt": "Say something."}),
    ];
    std::fs::write(&path, lines.map(|l| l.to_string()).join("\n")).unwrap();
    let out = dir.join("out");
    let results = eval::run(args(&path, &upstream.uri(), &out, &[])).await.unwrap();
    assert_eq!(results.answer.as_deref(), Some("auto"));
    let acc = |n: usize| results.by_n[n].accuracy.clone().unwrap();
    let (one, four) = (acc(0), acc(2));
    assert_eq!((one.prompts, four.prompts), (2, 2), "the prompt without an answer is not counted");
    assert_eq!((one.single, one.greedy), (Some(0.5), Some(1.0)), "greedy is sample 0 (seed 0): 376");
    assert_eq!((one.vote, one.any_correct), (Some(0.5), Some(0.5)));
    assert_eq!((four.vote, four.any_correct), (Some(1.0), Some(1.0)), "376 twice against 386 and 380 once");
    // n = 4 of 4 samples: the reward model's one pick per prompt, the same for both (same answers, same scores), so
    // the share is that pick's correctness: what the proxy's own reward order says, not a guess.
    let results_json: Value =
        serde_json::from_str(&std::fs::read_to_string(out.join("results.json")).unwrap()).unwrap();
    let samples = results_json["prompts"][0]["samples"].as_array().unwrap();
    let best = (0..4).max_by(|&a, &b| {
        let r = |i: usize| samples[i]["reward"].as_f64().unwrap();
        r(a).total_cmp(&r(b)).then(b.cmp(&a))
    });
    let expected = if samples[best.unwrap()]["answer"] == "376" { 1.0 } else { 0.0 };
    assert_eq!(four.reward, Some(expected), "the highest-reward sample's answer decides");
    assert_eq!(four.judge, None, "not judged");
    let json: Value = serde_json::from_str(&std::fs::read_to_string(out.join("results.json")).unwrap()).unwrap();
    assert_eq!(json["prompts"][0]["answer"], "376");
    assert_eq!(json["prompts"][0]["samples"][3]["answer"], "380");
    let report = std::fs::read_to_string(out.join("report.md")).unwrap();
    assert!(report.contains("## Accuracy against reference answers"), "{report}");
    assert!(report.contains("| 4 | 2 | 0.500 | 1.000 |"), "{report}");
    let png = std::fs::read(out.join("accuracy_vs_n.png")).unwrap();
    assert_eq!(&png[..8], b"\x89PNG\r\n\x1a\n");
    // The same samples summarised again (no upstream call: the mock expects exactly 15): the same numbers with the
    // same settings, others with another answer extraction (the whole text: only the bare "376" is right).
    let (samples, again_out) = (out.join("results.json"), dir.join("again"));
    let again = |answer: &str| {
        let (samples, again_out) = (samples.to_str().unwrap(), again_out.to_str().unwrap());
        let argv = ["eval", "--samples", samples, "--out", again_out, "--n", "1,2,4", "--answer", answer];
        eval::run(Cli::try_parse_from(argv).unwrap().args)
    };
    let same = again("auto").await.unwrap();
    assert_eq!(same.by_n[2].accuracy, results.by_n[2].accuracy);
    assert_eq!((same.reward_model.as_str(), same.max_tokens), (results.reward_model.as_str(), results.max_tokens));
    let whole = again("text").await.unwrap();
    assert_eq!(whole.by_n[0].accuracy.clone().unwrap().single, Some(0.25));
    // A prompts file with an answer of the wrong type names its line.
    std::fs::write(&path, "{\"prompt\": \"x\", \"answer\": [1]}\n").unwrap();
    let e = eval::read_prompts(&path, None).unwrap_err().to_string();
    assert!(e.contains("math.jsonl:1") && e.contains("answer"), "{e}");
}

#[tokio::test]
async fn judge_failures_are_counted_not_hidden() {
    let dir = tempdir("eval-nolog");
    let texts: Vec<String> = capital_answers().into_iter().map(|(t, _)| t).collect();
    let upstream = mock_upstream(BySeed::answers(0, &texts), 10).await;
    let judge = judge(false).await;
    let a = args(&write_prompts(&dir), &upstream.uri(), &dir.join("out"), &["--judge", &judge.uri()]);
    let results = eval::run(a).await.unwrap();
    // 10 ratings + pairs (n=1: vs greedy; n=2, n=4: vs single when the pick is not sample 0, vs greedy).
    assert!(results.judge_failures >= 10, "{}", results.judge_failures);
    assert!(results.by_n.iter().all(|r| r.best_of_n_rating.is_none() && r.vs_greedy.is_none()));
    let report = std::fs::read_to_string(dir.join("out/report.md")).unwrap();
    assert!(report.contains(&format!("judge failures: {}", results.judge_failures)), "{report}");
}

#[tokio::test]
async fn an_upstream_that_answers_nothing_is_an_error_not_an_empty_report() {
    let dir = tempdir("eval-down");
    let down = MockServer::start().await;
    Mock::given(matchers::any())
        .respond_with(ResponseTemplate::new(503).set_body_json(json!({"error": {"message": "loading model"}})))
        .mount(&down)
        .await;
    let e = eval::run(args(&write_prompts(&dir), &down.uri(), &dir.join("out"), &[])).await.unwrap_err().to_string();
    assert!(e.contains("no sample") && e.contains("503") && e.contains("loading model"), "{e}");
    assert!(!dir.join("out/report.md").exists());
}

#[tokio::test]
async fn bad_prompt_files_name_the_line() {
    let dir = tempdir("eval-bad");
    let path = dir.join("p.jsonl");
    std::fs::write(&path, "{\"prompt\": \"ok\"}\n{\"nope\": 1}\n").unwrap();
    let e = eval::read_prompts(&path, None).unwrap_err().to_string();
    assert!(e.contains("p.jsonl:2") && e.contains("expected"), "{e}");
    std::fs::write(&path, "not json\n").unwrap();
    assert!(eval::read_prompts(&path, None).unwrap_err().to_string().contains(":1:"));
    std::fs::write(&path, "{\"prompt\": \"a\"}\n{\"prompt\": \"b\"}\n{\"prompt\": \"c\"}\n").unwrap();
    assert_eq!(eval::read_prompts(&path, Some(2)).unwrap().len(), 2);
}

/// Answers per seed as `BySeed` does, each reported as 129 completion tokens and ending in five spaces: cut at 128
/// tokens only trailing spaces go, which the tokenizer ignores, so the 128-token prefix scores as the whole answer.
struct Long(Vec<String>);

impl Respond for Long {
    fn respond(&self, request: &Request) -> ResponseTemplate {
        let body: Value = serde_json::from_slice(&request.body).unwrap();
        let i = body["seed"].as_i64().unwrap().rem_euclid(self.0.len() as i64) as usize;
        ResponseTemplate::new(200).set_body_json(common::completion(&format!("{}     ", self.0[i]), 129))
    }
}

#[tokio::test]
async fn the_prune_report_measures_prefixes_through_the_prefix_output_and_writes_a_calibration() {
    let dir = tempdir("eval-prune");
    let texts: Vec<String> = capital_answers().into_iter().map(|(t, _)| t).collect();
    let upstream = MockServer::start().await;
    Mock::given(matchers::method("POST")).respond_with(Long(texts)).mount(&upstream).await;
    let prompts = write_prompts(&dir);
    let report = |model: &str, out: &str| {
        let mut a = args(&prompts, &upstream.uri(), &dir.join(out), &["--prune-report"]);
        a.reward.model = Some(fixture(model));
        a
    };
    eval::run(report("tiny-bert-pair", "plain")).await.unwrap();
    let plain: Value =
        serde_json::from_str(&std::fs::read_to_string(dir.join("plain/prune_report.json")).unwrap()).unwrap();
    let cuts = plain["cuts"].as_array().unwrap();
    assert_eq!(cuts.iter().map(|c| c["tokens"].as_u64().unwrap()).collect::<Vec<_>>(), vec![16, 32, 64, 96, 128]);
    let last = &cuts[4];
    assert!(last["pairs"].as_u64().unwrap() >= 6, "{last}");
    assert_eq!(last["agreement"], 1.0, "at 128 of 129 tokens the prefix is the answer: {last}");
    assert_eq!(plain["bon_prefix_calibration"].as_array().unwrap().len(), 5);
    let md = std::fs::read_to_string(dir.join("plain/prune_report.md")).unwrap();
    assert!(md.contains("\"bon_prefix_calibration\"") && md.contains("| 128 |"), "{md}");

    // The same through a model whose prefix output is -logits: the prefixes now rank backwards, and no scale fits.
    eval::run(report("tiny-bert-prefix", "prefix")).await.unwrap();
    let negated: Value =
        serde_json::from_str(&std::fs::read_to_string(dir.join("prefix/prune_report.json")).unwrap()).unwrap();
    assert_eq!(negated["cuts"][4]["agreement"], 0.0, "{}", negated["cuts"][4]);
    assert_eq!(negated["cuts"][4]["scale"], 0.0);
    assert_eq!(negated["cuts"][4]["confidences"][0]["margin"], Value::Null);
}

fn tempdir(name: &str) -> std::path::PathBuf {
    let dir = std::env::temp_dir().join(format!("bon-{name}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    dir
}
