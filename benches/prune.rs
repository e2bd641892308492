//! Bench binary (`cargo bench --bench prune`): speculative rejection against plain Best-of-N on a real upstream,
//! with the same seeds, in the same process, prompt by prompt (the order of the runs rotates so that none always
//! finds the upstream's prompt cache warm).
//!
//!   plain     `x-bon-n: N`, `stream: true`: every candidate generated to the end, the winner streamed after
//!   settings  the same with pruning, one run per setting `EVERY:KEEP[:CONFIDENCE][:whole]` (`BON_BENCH_SETTINGS`,
//!             comma-separated; default `32:0.5:whole,32:0.5,32:0.5:0.9,32:0.5:sentence`): `x-bon-prune-every:
//!             EVERY`, `bon.prune_keep`, `bon.prune_confidence`, `sentence`: `bon.prune_at`; partial answers are scored
//!             as the model declares (its `bon_prefix_output`, else the whole-answer output); `whole`: a twin proxy
//!             on a copy of the model directory without any `bon_prefix_*` declaration (no prefix output, no
//!             calibration)
//!
//! Printed per setting: completion tokens generated (usage: upstream-reported for finished candidates, one per delta
//! for pruned ones), wall time, time to the first content token, all as pruned ÷ plain totals, and **reward retained**
//! graded twice: by the model that pruned — per prompt (survivor's reward − mean of plain's N) ÷ (plain winner's −
//! that mean), averaged over prompts where plain's rewards differ — and by an **independent grader**
//! (`BON_BENCH_GRADER`, default `models/default-deep`) rescoring the final answers: Σ (grader(survivor) − grader's mean
//! of plain's N) ÷ Σ (grader(plain's winner) − that mean), over all prompts (a ratio of summed gains: one prompt where
//! the grader sees no gain cannot blow it up).
//!
//! Needs `BON_BENCH_UPSTREAM` (e.g. `LLAMA_PARALLEL=8 scripts/llama-server start 8091`). Settings:
//! `BON_BENCH_PROMPTS` (50), `BON_BENCH_N` (8), `BON_BENCH_MAX_TOKENS` (256), `BON_BENCH_REWARD_MODEL` (default: the
//! embedded default model), prompts from `../shared/data/prompts/alpaca_eval_805.jsonl` (`BON_BENCH_PROMPTS_FILE`).

mod common;

use common::env;

use std::{
    path::{Path, PathBuf},
    sync::Arc,
    time::{Duration, Instant},
};

use anyhow::Context;
use bon_proxy::{
    metrics::Metrics,
    openai::{Content, Message},
    reward::Device,
    reward::{RewardOptions, Score, ScoreInput, Scorer},
};
use futures::StreamExt;
use serde_json::{Value, json};

/// Prints a line to stdout (the bench's report).
macro_rules! say {
    ($($arg:tt)*) => {{
        use std::io::Write;
        let _ = writeln!(std::io::stdout(), $($arg)*);
    }};
}

/// One streamed Best-of-N call, as the client saw it.
struct Call {
    wall: Duration,
    first_token: Duration,
    completion_tokens: u64,
    text: String,
    bon: Value,
}

/// One pruning setting.
#[derive(Clone, Debug)]
struct Setting {
    every: u32,
    keep: f64,
    confidence: Option<f64>,
    /// Partial answers scored by the whole-answer output (the twin proxy).
    whole: bool,
    /// Cut at the last sentence end before scoring (`bon.prune_at: "sentence"`).
    sentence: bool,
}

impl Setting {
    fn parse(text: &str) -> anyhow::Result<Self> {
        let mut parts = text.split(':');
        let every = parts.next().context("EVERY")?.parse()?;
        let keep = parts.next().context("KEEP")?.parse()?;
        let (mut confidence, mut whole, mut sentence) = (None, false, false);
        for part in parts {
            match part {
                "whole" => whole = true,
                "sentence" => sentence = true,
                p => confidence = Some(p.parse()?),
            }
        }
        Ok(Self { every, keep, confidence, whole, sentence })
    }

    /// `declared`: the prefix output the model's config.json names, if any (else partial answers are scored by the
    /// whole-answer output there too).
    fn label(&self, declared: Option<&str>) -> String {
        let head = match (self.whole, declared) {
            (true, _) => "whole-answer output, no bon_prefix_* declarations".to_owned(),
            (false, Some(output)) => format!("prefix output {output}"),
            (false, None) => "whole-answer output (the model declares no prefix output)".to_owned(),
        };
        let margin = self.confidence.map_or(String::new(), |p| format!(", confidence {p}"));
        let cut = if self.sentence { ", at sentence ends" } else { "" };
        format!("every {} keep {}{margin}{cut}, {head}", self.every, self.keep)
    }
}

async fn proxy(upstream: &str, n: u32, model: Option<&str>) -> anyhow::Result<common::Proxy> {
    let mut args: Vec<String> = [
        "--upstream",
        upstream,
        "--device",
        "cpu",
        "--cache-ttl",
        "0s",
        "--candidate-timeout",
        "10m",
        "--request-timeout",
        "20m",
        "--sse-keepalive",
        "30s",
        "--max-n",
    ]
    .iter()
    .map(|s| (*s).to_owned())
    .collect();
    args.push(n.max(16).to_string());
    if let Some(model) = model {
        args.extend(["--reward-model".into(), model.to_owned()]);
    }
    common::proxy(&args.iter().map(String::as_str).collect::<Vec<_>>()).await
}

/// A copy of `dir` whose config.json declares no prefix output or calibration (the graph is the same file).
fn without_prefix(dir: &Path) -> anyhow::Result<PathBuf> {
    let out = std::env::temp_dir().join(format!("bon-bench-whole-{}", std::process::id()));
    std::fs::create_dir_all(&out)?;
    for entry in std::fs::read_dir(dir)? {
        let path = entry?.path();
        if path.is_file() && path.file_name().is_some_and(|n| n != "config.json") {
            let target = out.join(path.file_name().context("name")?);
            let _ = std::fs::remove_file(&target);
            std::os::unix::fs::symlink(std::fs::canonicalize(&path)?, target)?;
        }
    }
    let mut config: Value = serde_json::from_str(&std::fs::read_to_string(dir.join("config.json"))?)?;
    if let Some(map) = config.as_object_mut() {
        map.retain(|k, _| !k.starts_with("bon_prefix"));
        map.insert("bon_model_id".into(), json!(format!("{}-whole", map["bon_model_id"].as_str().unwrap_or("model"))));
    }
    std::fs::write(out.join("config.json"), config.to_string())?;
    Ok(out)
}

fn message(role: &str, text: &str) -> Message {
    Message { role: role.into(), content: Some(Content::Text(text.into())), extra: Default::default() }
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let Ok(upstream) = std::env::var("BON_BENCH_UPSTREAM") else {
        say!("prune bench: set BON_BENCH_UPSTREAM to a real upstream (scripts/llama-server start PORT); skipped");
        return Ok(());
    };
    let prompts_n: usize = env("BON_BENCH_PROMPTS", 50);
    let n: u32 = env("BON_BENCH_N", 8);
    let max_tokens: u32 = env("BON_BENCH_MAX_TOKENS", 256);
    let settings: Vec<Setting> = std::env::var("BON_BENCH_SETTINGS")
        .unwrap_or_else(|_| "32:0.5:whole,32:0.5,32:0.5:0.9,32:0.5:sentence".into())
        .split(',')
        .map(Setting::parse)
        .collect::<anyhow::Result<_>>()
        .context("BON_BENCH_SETTINGS: EVERY:KEEP[:CONFIDENCE][:whole][:sentence],...")?;
    let file = std::env::var("BON_BENCH_PROMPTS_FILE").map(PathBuf::from).unwrap_or_else(|_| {
        PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../shared/data/prompts/alpaca_eval_805.jsonl")
    });
    let prompts: Vec<String> = std::fs::read_to_string(&file)
        .with_context(|| format!("read {}", file.display()))?
        .lines()
        .filter_map(|l| serde_json::from_str::<Value>(l).ok()?["prompt"].as_str().map(str::to_owned))
        .take(prompts_n)
        .collect();

    let root = PathBuf::from(env!("CARGO_MANIFEST_DIR"));
    let model = std::env::var("BON_BENCH_REWARD_MODEL").ok();
    let main = proxy(&upstream, n, model.as_deref()).await?;
    let model_dir = model.map_or_else(|| root.join("models/default"), PathBuf::from);
    let config: Value = serde_json::from_str(&std::fs::read_to_string(model_dir.join("config.json"))?)?;
    let declared = config.get("bon_prefix_output").and_then(Value::as_str);
    let twin = if settings.iter().any(|s| s.whole) {
        let dir = without_prefix(&model_dir)?;
        Some(proxy(&upstream, n, dir.to_str()).await?)
    } else {
        None
    };
    let grader_dir = std::env::var("BON_BENCH_GRADER").map_or_else(|_| root.join("models/default-deep"), PathBuf::from);
    let grader = Scorer::load(
        &RewardOptions { device: Device::Cpu, ..RewardOptions::new(&grader_dir) },
        Arc::new(Metrics::new()?),
    )
    .with_context(|| format!("grader {}", grader_dir.display()))?;
    let http = reqwest::Client::new();
    say!(
        "upstream {upstream}; reward model {}; grader {}; {} prompts; Best-of-{n}, max_tokens {max_tokens}",
        main.state.reward_model_id,
        grader.id(),
        prompts.len()
    );

    let mut plain = Vec::new();
    let mut runs: Vec<Vec<Call>> = settings.iter().map(|_| Vec::new()).collect();
    let mut retained: Vec<Vec<f64>> = settings.iter().map(|_| Vec::new()).collect();
    // Per setting: summed grader gains of the survivor and of plain's winner over the grader's mean of plain's N.
    let mut graded: Vec<(f64, f64)> = vec![(0.0, 0.0); settings.len()];
    for (i, prompt) in prompts.iter().enumerate() {
        let body = json!({
            "model": "smollm2", "max_tokens": max_tokens, "seed": 10_000 + 64 * i, "stream": true,
            "stream_options": {"include_usage": true},
            "messages": [{"role": "user", "content": prompt}],
            "bon": {"return_candidates": true},
        });
        // Run 0 is plain; the order rotates with the prompt.
        let total = settings.len() + 1;
        let mut calls: Vec<Option<Call>> = (0..total).map(|_| None).collect();
        for k in 0..total {
            let run = (i + k) % total;
            let call = if run == 0 {
                go(&http, &main.url, &body, n, 0).await?
            } else {
                let s = &settings[run - 1];
                let mut body = body.clone();
                body["bon"]["prune_keep"] = json!(s.keep);
                if let Some(p) = s.confidence {
                    body["bon"]["prune_confidence"] = json!(p);
                }
                if s.sentence {
                    body["bon"]["prune_at"] = json!("sentence");
                }
                let url = if s.whole { &twin.as_ref().context("twin")?.url } else { &main.url };
                go(&http, url, &body, n, s.every).await?
            };
            calls[run] = Some(call);
        }
        let mut calls = calls.into_iter().map(|c| c.context("a run is missing"));
        let a = calls.next().context("plain")??;
        let plain_texts: Vec<String> = candidate_texts(&a.bon);
        let conversation: Arc<[Message]> = Arc::from(vec![message("user", prompt)]);
        let grade = |texts: Vec<String>| {
            let inputs = texts
                .iter()
                .map(|t| ScoreInput {
                    conversation: conversation.clone(),
                    tools: None,
                    response: message("assistant", t),
                })
                .collect();
            grader.score(inputs)
        };
        let plain_grades = grade(plain_texts.clone()).await?;
        let mean = plain_grades.iter().map(|&g| f64::from(g)).sum::<f64>() / plain_grades.len().max(1) as f64;
        let plain_pick = f64::from(grade(vec![a.text.clone()]).await?[0]);
        let mut line = format!("  {i:>3}: plain {:>5} tok {:>5.1} s |", a.completion_tokens, a.wall.as_secs_f64());
        for (k, call) in calls.enumerate() {
            let b = call?;
            let r = reward_retained(&a, &b);
            if let Some(r) = r {
                retained[k].push(r);
            }
            let pick = f64::from(grade(vec![b.text.clone()]).await?[0]);
            graded[k].0 += pick - mean;
            graded[k].1 += plain_pick - mean;
            line += &format!(
                " {:>5} tok {:>5.1} s {:>5.1} s first, retained {}, graded {:+.2} |",
                b.completion_tokens,
                b.wall.as_secs_f64(),
                b.first_token.as_secs_f64(),
                r.map_or("-".into(), |r| format!("{r:.2}")),
                pick - plain_pick
            );
            runs[k].push(b);
        }
        say!("{line}");
        plain.push(a);
    }

    let sum = |calls: &[Call], f: fn(&Call) -> f64| calls.iter().map(f).sum::<f64>();
    say!(
        "\n| pruned ÷ plain (totals over {} prompts) | tokens | wall | first token | reward retained (same model) | retained (graded by {}) |",
        prompts.len(),
        grader.id()
    );
    say!("|---|---|---|---|---|---|");
    for (k, s) in settings.iter().enumerate() {
        let b = &runs[k];
        let tokens = sum(b, |c| c.completion_tokens as f64) / sum(&plain, |c| c.completion_tokens as f64);
        let wall = sum(b, |c| c.wall.as_secs_f64()) / sum(&plain, |c| c.wall.as_secs_f64());
        let first = sum(b, |c| c.first_token.as_secs_f64()) / sum(&plain, |c| c.first_token.as_secs_f64());
        let same = retained[k].iter().sum::<f64>() / retained[k].len().max(1) as f64;
        let (gain, plain_gain) = graded[k];
        let independent = if plain_gain.abs() > 1e-9 { format!("{:.2}", gain / plain_gain) } else { "-".into() };
        say!(
            "| {} | {tokens:.2}x | {wall:.2}x | {first:.2}x | {same:.2} ({} prompts) | {independent} |",
            s.label(declared),
            retained[k].len()
        );
    }
    say!(
        "plain: {:.0} tokens, {:.1} s, first token {:.1} s per call; the grader's gain of plain's pick over its mean: \
         {:+.3} per prompt",
        sum(&plain, |c| c.completion_tokens as f64) / plain.len().max(1) as f64,
        sum(&plain, |c| c.wall.as_secs_f64()) / plain.len().max(1) as f64,
        sum(&plain, |c| c.first_token.as_secs_f64()) / plain.len().max(1) as f64,
        graded.first().map_or(0.0, |g| g.1) / plain.len().max(1) as f64,
    );
    main.stop().await;
    if let Some(t) = twin {
        t.stop().await;
    }
    Ok(())
}

/// The candidates' texts of a `bon` object with `return_candidates` (failed ones left out).
fn candidate_texts(bon: &Value) -> Vec<String> {
    bon["candidates"]
        .as_array()
        .map(|c| c.iter().filter_map(|c| c["message"]["content"].as_str().map(str::to_owned)).collect())
        .unwrap_or_default()
}

/// (survivor's reward - mean of plain's rewards) / (plain winner's reward - that mean).
fn reward_retained(plain: &Call, pruned: &Call) -> Option<f64> {
    let scores: Vec<f64> = plain.bon["scores"].as_array()?.iter().filter_map(Value::as_f64).collect();
    let best = scores.iter().copied().fold(f64::NEG_INFINITY, f64::max);
    let mean = scores.iter().sum::<f64>() / scores.len() as f64;
    let winner = pruned.bon["winner"].as_u64()? as usize;
    let survivor = pruned.bon["scores"].get(winner)?.as_f64()?;
    (best - mean > 1e-6).then(|| (survivor - mean) / (best - mean))
}

async fn go(http: &reqwest::Client, url: &str, body: &Value, n: u32, prune: u32) -> anyhow::Result<Call> {
    let started = Instant::now();
    let resp = http
        .post(format!("{url}/v1/chat/completions"))
        .header("x-bon-n", n.to_string())
        .header("x-bon-prune-every", prune.to_string())
        .json(body)
        .send()
        .await?;
    anyhow::ensure!(resp.status().is_success(), "HTTP {}: {}", resp.status(), resp.text().await?);
    let mut stream = resp.bytes_stream();
    let (mut buf, mut text, mut first_token, mut usage, mut bon) = (String::new(), String::new(), None, 0, Value::Null);
    while let Some(piece) = stream.next().await {
        buf.push_str(std::str::from_utf8(&piece?)?);
        while let Some(end) = buf.find("\n\n") {
            let event: String = buf.drain(..end + 2).collect();
            let Some(data) = event.lines().find_map(|l| l.strip_prefix("data: ")) else { continue };
            if data == "[DONE]" {
                continue;
            }
            let chunk: Value = serde_json::from_str(data)?;
            anyhow::ensure!(chunk.get("error").is_none(), "stream error: {chunk}");
            if let Some(t) = chunk.pointer("/choices/0/delta/content").and_then(Value::as_str)
                && !t.is_empty()
            {
                first_token.get_or_insert_with(|| started.elapsed());
                text.push_str(t);
            }
            if let Some(u) = chunk.pointer("/usage/completion_tokens").and_then(Value::as_u64) {
                usage = u;
            }
            if let Some(b) = chunk.get("bon") {
                bon = b.clone();
            }
        }
    }
    let wall = started.elapsed();
    Ok(Call { wall, first_token: first_token.unwrap_or(wall), completion_tokens: usage, text, bon })
}
