//! Bench binary (`cargo bench --bench prune`): speculative rejection against plain Best-of-N on a real upstream,
//! with the same seeds, in the same process, prompt by prompt (the order alternates so that neither side always
//! finds the upstream's prompt cache warm).
//!
//!   plain   `x-bon-n: N`, `stream: true`: every candidate generated to the end, the winner streamed after
//!   pruned  the same with `x-bon-prune-every: T` and `bon.prune_keep: F`: losers stopped, the survivor streamed live
//!
//! Printed: completion tokens generated (usage: upstream-reported for finished candidates, one per delta for pruned
//! ones), wall time, time to the first content token, and reward retained: (survivor's reward - mean of plain's N
//! rewards) / (plain winner's reward - that mean), averaged over prompts where plain's rewards differ.
//!
//! Needs `BON_BENCH_UPSTREAM` (e.g. `LLAMA_PARALLEL=8 scripts/llama-server start 8091`). Settings:
//! `BON_BENCH_PROMPTS` (50), `BON_BENCH_N` (8), `BON_BENCH_MAX_TOKENS` (256), `BON_BENCH_PRUNE_EVERY` (32),
//! `BON_BENCH_PRUNE_KEEP` (0.5), `BON_BENCH_REWARD_MODEL` (default: the embedded default model), prompts from
//! `../shared/data/prompts/alpaca_eval_805.jsonl` (`BON_BENCH_PROMPTS_FILE`).

mod common;

use common::env;

use std::{
    path::PathBuf,
    time::{Duration, Instant},
};

use anyhow::Context;
use bon_proxy::{AppState, config::Config, serve};
use clap::Parser;
use futures::StreamExt;
use serde_json::{Value, json};
use tokio_util::sync::CancellationToken;

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

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let Ok(upstream) = std::env::var("BON_BENCH_UPSTREAM") else {
        say!("prune bench: set BON_BENCH_UPSTREAM to a real upstream (scripts/llama-server start PORT); skipped");
        return Ok(());
    };
    let prompts_n: usize = env("BON_BENCH_PROMPTS", 50);
    let n: u32 = env("BON_BENCH_N", 8);
    let max_tokens: u32 = env("BON_BENCH_MAX_TOKENS", 256);
    let every: u32 = env("BON_BENCH_PRUNE_EVERY", 32);
    let keep: f64 = env("BON_BENCH_PRUNE_KEEP", 0.5);
    let file = std::env::var("BON_BENCH_PROMPTS_FILE").map(PathBuf::from).unwrap_or_else(|_| {
        PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../shared/data/prompts/alpaca_eval_805.jsonl")
    });
    let prompts: Vec<String> = std::fs::read_to_string(&file)
        .with_context(|| format!("read {}", file.display()))?
        .lines()
        .filter_map(|l| serde_json::from_str::<Value>(l).ok()?["prompt"].as_str().map(str::to_owned))
        .take(prompts_n)
        .collect();

    let mut args = vec![
        "bon-proxy".to_owned(),
        "--upstream".into(),
        upstream.clone(),
        "--device".into(),
        "cpu".into(),
        "--cache-ttl".into(),
        "0s".into(),
        "--max-n".into(),
        n.max(16).to_string(),
        "--candidate-timeout".into(),
        "10m".into(),
        "--request-timeout".into(),
        "20m".into(),
        "--sse-keepalive".into(),
        "30s".into(),
    ];
    if let Ok(model) = std::env::var("BON_BENCH_REWARD_MODEL") {
        args.extend(["--reward-model".into(), model]);
    }
    let state = AppState::build(Config::try_parse_from(args)?, CancellationToken::new()).await.context("proxy")?;
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
    let proxy = format!("http://{}/v1/chat/completions", listener.local_addr()?);
    let shutdown = CancellationToken::new();
    let server = tokio::task::JoinSet::from_iter([serve(listener, state.clone(), shutdown.clone())]);
    let http = reqwest::Client::new();
    say!(
        "upstream {upstream}; reward model {}; {} prompts; Best-of-{n}, max_tokens {max_tokens}; pruning every {every} \
         tokens keeping {keep}",
        state.reward_model_id,
        prompts.len()
    );

    let (mut plain, mut pruned, mut retained) = (Vec::new(), Vec::new(), Vec::new());
    for (i, prompt) in prompts.iter().enumerate() {
        let body = json!({
            "model": "smollm2", "max_tokens": max_tokens, "seed": 10_000 + 64 * i, "stream": true,
            "stream_options": {"include_usage": true},
            "messages": [{"role": "user", "content": prompt}],
            "bon": {"prune_keep": keep},
        });
        let run = |prune: u32| call(&http, &proxy, &body, n, prune);
        let (a, b) = if i % 2 == 0 {
            let a = run(0).await?;
            (a, run(every).await?)
        } else {
            let b = run(every).await?;
            (run(0).await?, b)
        };
        if let Some(r) = reward_retained(&a, &b) {
            retained.push(r);
        }
        say!(
            "  {i:>3}: tokens {:>5} -> {:>5}  wall {:>6.1} -> {:>6.1} s  first token {:>6.1} -> {:>6.1} s  \
             retained {}",
            a.completion_tokens,
            b.completion_tokens,
            a.wall.as_secs_f64(),
            b.wall.as_secs_f64(),
            a.first_token.as_secs_f64(),
            b.first_token.as_secs_f64(),
            reward_retained(&a, &b).map_or("-".into(), |r| format!("{r:.2}")),
        );
        plain.push(a);
        pruned.push(b);
    }
    let sum = |calls: &[Call], f: fn(&Call) -> f64| calls.iter().map(f).sum::<f64>();
    let tokens = sum(&pruned, |c| c.completion_tokens as f64) / sum(&plain, |c| c.completion_tokens as f64);
    let wall = sum(&pruned, |c| c.wall.as_secs_f64()) / sum(&plain, |c| c.wall.as_secs_f64());
    let first = sum(&pruned, |c| c.first_token.as_secs_f64()) / sum(&plain, |c| c.first_token.as_secs_f64());
    let mean_retained = retained.iter().sum::<f64>() / retained.len().max(1) as f64;
    let winner_plain = plain.iter().filter(|c| c.text.split_whitespace().count() > 0).count();
    say!("\n| measure (pruned / plain, totals over {} prompts) | ratio |", prompts.len());
    say!("|---|---|");
    say!("| completion tokens generated | {tokens:.2}x |");
    say!("| wall time | {wall:.2}x |");
    say!("| time to first content token (stream: true) | {first:.2}x |");
    say!("| reward retained (mean over {} prompts) | {mean_retained:.2} |", retained.len());
    say!(
        "plain: {:.0} tokens, {:.1} s, first token {:.1} s per call; {} non-empty winners",
        sum(&plain, |c| c.completion_tokens as f64) / plain.len() as f64,
        sum(&plain, |c| c.wall.as_secs_f64()) / plain.len() as f64,
        sum(&plain, |c| c.first_token.as_secs_f64()) / plain.len() as f64,
        winner_plain
    );
    shutdown.cancel();
    drop(server);
    Ok(())
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

async fn call(http: &reqwest::Client, url: &str, body: &Value, n: u32, prune: u32) -> anyhow::Result<Call> {
    let started = Instant::now();
    let resp = http
        .post(url)
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
