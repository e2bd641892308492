//! `bon-proxy eval`: is Best-of-N worth it for my upstream, prompts and reward model, and at which N?
//!
//! For every prompt it generates max(n) samples once (seeds `--seed + i`) plus one greedy answer, scores them all
//! with the reward model, and derives every n from the same samples with the exact best-of-n estimator
//! (`stats`). With `--judge`, an independent LLM rates every answer and compares picks pairwise (`select::judge`,
//! the proxy's own judge). With reference answers in the prompts file, the accuracy of every selection strategy
//! (`accuracy`). With `--prune-report`, how well partial answers' scores predict whole ones (`prune_report`). Writes
//! `results.json`, `report.md` and PNG plots to `--out`.

mod accuracy;
mod args;
mod confidence_report;
mod judging;
mod plot;
mod prompts;
pub mod prune_report;
mod replay;
mod report;
pub mod stats;

pub use crate::select::judge::{Judge, JudgeError, expected_digit, p_first};
pub use accuracy::Accuracy;
pub use args::EvalArgs;
pub use prompts::{Prompt, read_prompts};
pub use report::{NResult, Results, summarise};

use std::sync::Arc;

use futures::{StreamExt, stream};
use serde::{Deserialize, Serialize};
use serde_json::{Map, json};

use crate::{
    bon::{Switch, response_message},
    config::reward_model_spec,
    openai::Message,
    reward::{Score, ScoreInput, Scorer, hub::HubOptions, source},
    select::guard::Flags,
    select::{Confidence, confidence},
    upstream::{Client, Upstream},
};

/// Why `eval` stopped.
#[derive(Debug, thiserror::Error)]
pub enum EvalError {
    #[error("{0}")]
    Args(String),
    #[error("{path}:{line}: {reason}")]
    Prompt { path: String, line: usize, reason: String },
    #[error("{0}: {1}")]
    Io(String, std::io::Error),
    #[error(transparent)]
    Config(#[from] crate::config::ConfigError),
    #[error(transparent)]
    Reward(#[from] crate::reward::RewardError),
    #[error(transparent)]
    Upstream(#[from] crate::upstream::UpstreamError),
    #[error("the upstream generated no sample; the first error: {0}")]
    NoSamples(String),
    #[error("metrics: {0}")]
    Metrics(#[from] prometheus::Error),
    #[error("plot: {0}")]
    Plot(String),
    #[error("json: {0}")]
    Json(#[from] serde_json::Error),
}

/// One generated answer and everything measured about it.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct Sample {
    pub seed: Option<i64>,
    pub text: String,
    pub finish_reason: Option<String>,
    pub completion_tokens: Option<u64>,
    pub words: usize,
    pub flags: Vec<String>,
    pub reward: Option<f32>,
    /// The judge's expected 1-9 rating.
    pub rating: Option<f64>,
    /// The final answer extracted by `--answer` (normalised).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub answer: Option<String>,
    /// The upstream's token confidence in it (`--confidence-top-k` above 0 and the upstream returned `logprobs`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub confidence: Option<Confidence>,
    /// Each token's confidence (what `confidence` summarises; the online stop is replayed over it).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub token_confidence: Option<Vec<f32>>,
    pub error: Option<String>,
    /// What the guard saw (`flags` holds their names); whether it ranks by them is `--degenerate-guard`.
    #[serde(skip)]
    guard: Flags,
    #[serde(skip)]
    message: Option<Message>,
}

impl Sample {
    fn ok(&self) -> bool {
        self.error.is_none() && self.reward.is_some()
    }
}

/// One prompt's samples (index order), its greedy answer, and the pairwise judgements per n.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct PromptRun {
    pub messages: Vec<Message>,
    /// The reference answer, when the prompts file gives one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub answer: Option<String>,
    pub samples: Vec<Sample>,
    pub greedy: Sample,
    /// n -> P(pick of the first n samples beats sample 0), P(... beats greedy); absent when not judged.
    pub pairwise: Vec<Pairwise>,
}

/// Pairwise judgements of one concrete best-of-n pick (the pick among the first n samples).
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct Pairwise {
    pub n: u32,
    pub pick: usize,
    /// P(pick better than sample 0); 0.5 without a call when the pick is sample 0.
    pub vs_single: Result<f64, String>,
    pub vs_greedy: Result<f64, String>,
}

/// Runs the whole evaluation and writes its files; returns the per-n results.
pub async fn run(args: EvalArgs) -> Result<Results, EvalError> {
    let mut ns = args.n.clone();
    ns.sort_unstable();
    ns.dedup();
    let max_n = *ns.last().ok_or_else(|| EvalError::Args("--n needs at least one value".into()))?;
    if ns[0] == 0 || args.concurrency == 0 {
        return Err(EvalError::Args("--n values and --concurrency must be at least 1".into()));
    }
    if !(args.vote_temperature.is_finite() && args.vote_temperature > 0.0) {
        return Err(EvalError::Args("--vote-temperature must be a finite number > 0".into()));
    }
    if args.confidence_top_k == 1 || args.confidence_top_k > 20 || args.confidence_window == 0 {
        return Err(EvalError::Args(
            "--confidence-top-k must be 0 (off) or within 2..=20, --confidence-window at least 1".into(),
        ));
    }
    if !(args.confidence_keep > 0.0 && args.confidence_keep <= 1.0) {
        return Err(EvalError::Args("--confidence-keep must be within (0, 1]".into()));
    }
    if !(0.0..=100.0).contains(&args.confidence_percentile) || args.confidence_history == 0 {
        return Err(EvalError::Args(
            "--confidence-percentile must be within 0..=100, --confidence-history at least 1".into(),
        ));
    }
    std::fs::create_dir_all(&args.out).map_err(|e| EvalError::Io(args.out.display().to_string(), e))?;
    if let Some(path) = &args.samples {
        let (runs, stored, reward_model, judged) = replay::read(path, &args)?;
        let results = summarise(&runs, &ns, &reward_model, &stored, judged);
        report::write(&args.out, &results, &runs)?;
        plot::write_all(&args.out, &results)?;
        return Ok(results);
    }
    let prompts_path = args.prompts.as_deref().ok_or_else(|| EvalError::Args("--prompts or --samples".into()))?;
    let prompts = read_prompts(prompts_path, args.limit)?;

    let resolved = source::resolve(&reward_model_spec(args.reward.model.as_deref())?, &HubOptions::from_env()).await?;
    let opts = args.reward.options(resolved.dir, resolved.id);
    let scorer = Scorer::load(&opts, Arc::new(crate::metrics::Metrics::new()?))?;
    let upstream: Arc<dyn Upstream> =
        Arc::new(Client::new(&args.upstream, args.upstream_api_key.clone(), args.concurrency)?);
    let judge = match &args.judge {
        Some(url) => Some(Judge {
            upstream: Arc::new(Client::new(url, args.judge_api_key.clone(), args.concurrency)?),
            model: args.judge_model.clone(),
            auth: None,
        }),
        None => None,
    };
    let mut runs = generate(&args, upstream.as_ref(), &prompts, max_n).await;
    if let Some(first) = first_error_if_all_failed(&runs) {
        return Err(EvalError::NoSamples(first));
    }
    let guard = args.degenerate_guard == Switch::On;
    score(&scorer, &mut runs).await;
    if args.prune_report {
        let r = prune_report::measure(&scorer, &runs).await?;
        let write = |name: &str, text: String| {
            let path = args.out.join(name);
            std::fs::write(&path, text).map_err(|e| EvalError::Io(path.display().to_string(), e))
        };
        write("prune_report.json", serde_json::to_string_pretty(&r)? + "\n")?;
        write("prune_report.md", prune_report::markdown(&r, scorer.id()))?;
    }
    if let Some(judge) = &judge {
        judging::judge_all(judge, &mut runs, &ns, args.concurrency, guard).await;
    }
    let results = summarise(&runs, &ns, scorer.id(), &args, judge.is_some());
    report::write(&args.out, &results, &runs)?;
    plot::write_all(&args.out, &results)?;
    Ok(results)
}

/// The first error, when every sample failed (nothing to evaluate).
fn first_error_if_all_failed(runs: &[PromptRun]) -> Option<String> {
    let errors: Option<Vec<&str>> =
        runs.iter().flat_map(|r| r.samples.iter().chain([&r.greedy])).map(|s| s.error.as_deref()).collect();
    errors.and_then(|e| e.first().map(|s| (*s).to_owned()))
}

/// Every sample of every prompt (sample `max_n` is the greedy answer), `--concurrency` requests at a time.
async fn generate(args: &EvalArgs, upstream: &dyn Upstream, prompts: &[Prompt], max_n: u32) -> Vec<PromptRun> {
    let jobs: Vec<(usize, u32)> = (0..prompts.len()).flat_map(|p| (0..=max_n).map(move |i| (p, i))).collect();
    let bar = progress(jobs.len() as u64, "generating");
    let done: Vec<(usize, u32, Sample)> = stream::iter(jobs)
        .map(|(p, i)| {
            let greedy = i == max_n;
            let seed = (!greedy).then(|| args.seed + i64::from(i));
            let mut body = Map::new();
            body.insert("model".into(), json!(args.model));
            body.insert("messages".into(), json!(prompts[p].messages));
            body.insert("max_tokens".into(), json!(args.max_tokens));
            body.insert("temperature".into(), json!(if greedy { 0.0 } else { args.temperature }));
            body.insert("seed".into(), json!(seed.unwrap_or(args.seed)));
            body.insert("stream".into(), json!(false));
            if args.confidence_top_k > 0 {
                body.insert("logprobs".into(), json!(true));
                body.insert("top_logprobs".into(), json!(args.confidence_top_k));
            }
            let bar = &bar;
            async move {
                let result = upstream.chat(body.into(), None).await;
                bar.inc(1);
                (p, i, sample(result, seed, args))
            }
        })
        .buffer_unordered(args.concurrency)
        .collect()
        .await;
    bar.finish_and_clear();
    let mut runs: Vec<PromptRun> = prompts
        .iter()
        .map(|p| PromptRun {
            messages: p.messages.clone(),
            answer: p.answer.clone(),
            samples: Vec::new(),
            greedy: sample_err("missing"),
            pairwise: Vec::new(),
        })
        .collect();
    let mut sorted = done;
    sorted.sort_by_key(|(p, i, _)| (*p, *i));
    for (p, i, s) in sorted {
        if i == max_n {
            runs[p].greedy = s;
        } else {
            runs[p].samples.push(s);
        }
    }
    runs
}

fn sample(
    result: Result<crate::openai::ChatCompletion, crate::upstream::UpstreamError>,
    seed: Option<i64>,
    args: &EvalArgs,
) -> Sample {
    match result {
        Ok(c) => {
            let flags = Flags::of(&c);
            let message = response_message(&c);
            let text = message.text();
            let tokens = c.choices[0]
                .extra
                .get("logprobs")
                .and_then(|l| confidence::token_confidences(l, args.confidence_top_k as usize));
            let confidence = tokens.as_ref().and_then(|t| confidence::summarise(t, args.confidence_window));
            Sample {
                seed,
                words: text.split_whitespace().count(),
                answer: args.answer.extract(&text),
                confidence,
                token_confidence: tokens.map(|t| t.iter().map(|&c| c as f32).collect()),
                text,
                finish_reason: c.choices[0].finish_reason.clone(),
                completion_tokens: c.usage.map(|u| u.completion_tokens),
                flags: flags.names().into_iter().map(str::to_owned).collect(),
                reward: None,
                rating: None,
                error: None,
                guard: flags,
                message: Some(message),
            }
        }
        Err(e) => Sample { seed, ..sample_err(&e.to_string()) },
    }
}

fn sample_err(error: &str) -> Sample {
    Sample {
        seed: None,
        text: String::new(),
        finish_reason: None,
        completion_tokens: None,
        words: 0,
        flags: Vec::new(),
        reward: None,
        rating: None,
        answer: None,
        confidence: None,
        token_confidence: None,
        error: Some(error.to_owned()),
        guard: Flags::default(),
        message: None,
    }
}

/// Rewards for every successful sample and greedy answer, one reward-model batch per prompt.
async fn score(scorer: &dyn Score, runs: &mut [PromptRun]) {
    let bar = progress(runs.len() as u64, "scoring");
    for run in runs.iter_mut() {
        let conversation: Arc<[Message]> = Arc::from(run.messages.clone());
        let mut targets: Vec<&mut Sample> = run.samples.iter_mut().chain(std::iter::once(&mut run.greedy)).collect();
        targets.retain(|s| s.message.is_some());
        let inputs = targets
            .iter()
            .filter_map(|s| s.message.clone())
            .map(|response| ScoreInput { conversation: conversation.clone(), tools: None, response })
            .collect();
        match scorer.score(inputs).await {
            Ok(scores) => {
                for (s, r) in targets.into_iter().zip(scores) {
                    s.reward = Some(r);
                }
            }
            Err(e) => {
                for s in targets {
                    s.error = Some(format!("scoring failed: {e}"));
                }
            }
        }
        bar.inc(1);
    }
    bar.finish_and_clear();
}

/// Selection keys (guard tier, or 0 with the guard off; reward) of the samples, as the proxy ranks candidates;
/// failed ones rank last.
fn keys<'a>(samples: impl IntoIterator<Item = &'a Sample>, guard: bool) -> Vec<(u8, f32)> {
    let tier = |s: &Sample| if guard { s.guard.tier() } else { 0 };
    samples
        .into_iter()
        .map(|s| if s.ok() { (tier(s), s.reward.unwrap_or(f32::NAN)) } else { (u8::MAX, f32::NAN) })
        .collect()
}

/// A progress bar on a terminal, nothing otherwise.
fn progress(len: u64, what: &'static str) -> indicatif::ProgressBar {
    let bar = indicatif::ProgressBar::with_draw_target(Some(len), indicatif::ProgressDrawTarget::stderr());
    if let Ok(style) = indicatif::ProgressStyle::with_template("{msg:>18} [{bar:30}] {pos}/{len} {elapsed}") {
        bar.set_style(style.progress_chars("=> "));
    }
    bar.set_message(what);
    bar
}
