//! Bench binary (`cargo bench --bench reward`): the reward model alone, through bon-proxy's scorer (release build).
//!
//!   batching  concurrent Best-of-4 requests of mixed lengths: one run per request (sent one after another)
//!             against merged runs without length bucketing (`--reward-max-padding 1`) and with it (the default)
//!   sizes     Best-of-4 and Best-of-8 at ~256 and ~1,024 tokens per candidate: ms per call, RSS after load / runs
//!   arena     per `--reward-arena` mode, in a fresh child process each: RSS after load, after a burst of
//!             Best-of-8 × 1,024-token calls and a few short ones, and the time of the long calls
//!
//! Model: `BON_BENCH_REWARD_MODEL` (a directory), else the default model (scripts/setup). `BON_BENCH_THREADS` sets
//! `--reward-threads`; `BON_BENCH_PARTS` picks parts (default `batching,sizes,arena`); `BON_BENCH_ROUNDS` (3);
//! `BON_BENCH_REQUESTS` (32) the requests of the batching part.

mod common;

use common::{env, ms, say};

use std::{
    io::Write,
    path::PathBuf,
    sync::Arc,
    time::{Duration, Instant},
};

use anyhow::Context;
use bon_proxy::{
    config::reward_model_spec,
    metrics::Metrics,
    openai::Message,
    reward::{Arena, Device, ModelDir, RewardOptions, Score, ScoreInput, Scorer},
};
use clap::ValueEnum;
use serde_json::json;

const WORDS: &str = "the light of the sun reaches the air where small molecules scatter short blue waves far more \
than long red ones so that the whole sky glows blue by day while at dusk the path grows long and the blue is lost \
before it reaches us leaving orange and red clouds over the quiet hills and a cool wind from the sea";

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let dir = match std::env::var_os("BON_BENCH_REWARD_MODEL") {
        Some(d) => PathBuf::from(d),
        None => reward_model_spec(None)?,
    };
    if let Ok(mode) = std::env::var("BON_BENCH_ARENA_CHILD") {
        let arena = Arena::from_str(&mode, true).map_err(anyhow::Error::msg)?;
        return arena_child(&dir, arena).await;
    }
    let parts = std::env::var("BON_BENCH_PARTS").unwrap_or_else(|_| "batching,sizes,arena".into());
    say(&format!("reward bench: {} ({} cores)", dir.display(), std::thread::available_parallelism()?.get()));
    let texts = Texts::new(&dir)?;
    if parts.contains("batching") {
        batching(&dir, &texts).await?;
    }
    if parts.contains("sizes") {
        sizes(&dir, &texts).await?;
    }
    if parts.contains("arena") {
        for arena in Arena::value_variants() {
            let name = arena.to_possible_value().map(|v| v.get_name().to_owned()).unwrap_or_default();
            let out = std::process::Command::new(std::env::current_exe()?)
                .env("BON_BENCH_ARENA_CHILD", &name)
                .env("BON_BENCH_REWARD_MODEL", &dir)
                .output()?;
            anyhow::ensure!(out.status.success(), "arena {name}: {}", String::from_utf8_lossy(&out.stderr));
            std::io::stdout().write_all(&out.stdout)?;
        }
    }
    Ok(())
}

fn options(dir: &std::path::Path, max_padding: f64, arena: Arena) -> RewardOptions {
    let threads = std::env::var("BON_BENCH_THREADS").ok().and_then(|v| v.parse().ok());
    RewardOptions { device: Device::Cpu, max_padding, arena, threads, ..RewardOptions::new(dir) }
}

fn load(opts: &RewardOptions) -> anyhow::Result<Scorer> {
    Scorer::load(opts, Arc::new(Metrics::new()?)).context("loading the reward model")
}

async fn batching(dir: &std::path::Path, texts: &Texts) -> anyhow::Result<()> {
    // Requests with each its own typical length (20..260 tokens), its 4 candidates within ±40 % of it.
    let count = env::<usize>("BON_BENCH_REQUESTS", 32);
    let requests: Vec<Vec<ScoreInput>> = (0..count)
        .map(|r| {
            let base = 20 + (r * 37) % 240;
            (0..4).map(|c| input(&texts.of(base * (6 + c * 3) / 10))).collect()
        })
        .collect();
    let rounds = rounds();
    let mut table = Vec::new();
    for (name, max_padding, concurrent) in
        [("one run per request", 1.0, false), ("merged, no bucketing", 1.0, true), ("merged, bucketed", 0.2, true)]
    {
        let scorer = load(&options(dir, max_padding, Arena::Keep))?;
        let mut times = Vec::new();
        for _ in 0..rounds {
            let t = Instant::now();
            if concurrent {
                futures::future::try_join_all(requests.iter().map(|r| scorer.score(r.clone()))).await?;
            } else {
                for r in &requests {
                    scorer.score(r.clone()).await?;
                }
            }
            times.push(t.elapsed());
        }
        table.push((name, best(&times)));
    }
    say(&format!("batching: {count} concurrent Best-of-4 requests, 20..260 tokens (best of rounds)"));
    for (name, t) in &table {
        say(&format!("  {name:<22} {:>9.1} ms  {:.2}x", ms(*t), t.as_secs_f64() / table[0].1.as_secs_f64()));
    }
    Ok(())
}

async fn sizes(dir: &std::path::Path, texts: &Texts) -> anyhow::Result<()> {
    let before = rss_mb();
    let scorer = load(&options(dir, 0.2, Arena::Shrink))?;
    say(&format!("sizes (arena shrink): RSS {before:.0} MB before load, {:.0} MB after", rss_mb()));
    for tokens in [256, 1024] {
        for n in [4, 8] {
            let call: Vec<ScoreInput> = (0..n).map(|i| input(&texts.of(tokens - 30 + i))).collect();
            let mut times = Vec::new();
            for _ in 0..rounds() {
                let t = Instant::now();
                scorer.score(call.clone()).await?;
                times.push(t.elapsed());
            }
            say(&format!("  Best-of-{n} x ~{tokens} tokens: {:>8.1} ms (best of rounds)", ms(best(&times))));
        }
    }
    say(&format!("  RSS after the runs {:.0} MB", rss_mb()));
    Ok(())
}

async fn arena_child(dir: &std::path::Path, arena: Arena) -> anyhow::Result<()> {
    let texts = Texts::new(dir)?;
    let scorer = load(&options(dir, 0.2, arena))?;
    let loaded = rss_mb();
    let long: Vec<ScoreInput> = (0..8).map(|i| input(&texts.of(1000 + i))).collect();
    let short: Vec<ScoreInput> = (0..4).map(|i| input(&texts.of(40 + i))).collect();
    let mut long_times = Vec::new();
    for _ in 0..rounds() {
        let t = Instant::now();
        scorer.score(long.clone()).await?;
        long_times.push(t.elapsed());
    }
    let t = Instant::now();
    for _ in 0..10 {
        scorer.score(short.clone()).await?;
    }
    let short_time = t.elapsed() / 10;
    let after = rss_mb();
    say(&format!(
        "arena {arena:?}: RSS {loaded:.0} MB after load, peak {:.0}, {after:.0} after the burst ({:.2}x load); \
         Best-of-8 x 1,024 tokens {:.1} ms, Best-of-4 x 40 tokens {:.1} ms",
        peak_mb(),
        after / loaded,
        ms(best(&long_times)),
        ms(short_time)
    ));
    Ok(())
}

/// Texts of a given token count under the model's tokenizer (the response alone; the template adds a few).
struct Texts {
    tokenizer: tokenizers::Tokenizer,
}

impl Texts {
    fn new(dir: &std::path::Path) -> anyhow::Result<Self> {
        let mut tokenizer = ModelDir::load(dir)?.tokenizer;
        // The model's own truncation would cap every count below the lengths asked for.
        tokenizer.with_truncation(None).map_err(anyhow::Error::msg)?;
        Ok(Self { tokenizer })
    }

    fn of(&self, tokens: usize) -> String {
        let words: Vec<&str> = WORDS.split(' ').collect();
        let mut text = String::new();
        let mut i = 0;
        while self.count(&text) < tokens {
            text.push_str(words[i % words.len()]);
            text.push(' ');
            i += 1;
        }
        text
    }

    fn count(&self, text: &str) -> usize {
        self.tokenizer.encode(text, false).map(|e| e.len()).unwrap_or(usize::MAX)
    }
}

fn input(text: &str) -> ScoreInput {
    let user: Message = serde_json::from_value(json!({"role": "user", "content": "Why is the sky blue?"}))
        .unwrap_or_else(|_| unreachable!());
    let response: Message =
        serde_json::from_value(json!({"role": "assistant", "content": text})).unwrap_or_else(|_| unreachable!());
    ScoreInput { conversation: Arc::from(vec![user]), tools: None, response }
}

fn rounds() -> usize {
    env::<usize>("BON_BENCH_ROUNDS", 3)
}

fn best(times: &[Duration]) -> Duration {
    times.iter().copied().min().unwrap_or_default()
}

/// A line of `/proc/self/status` in MB.
fn status_mb(key: &str) -> f64 {
    let status = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
    status
        .lines()
        .find_map(|l| l.strip_prefix(key))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse::<f64>().ok())
        .map_or(f64::NAN, |kb| kb / 1024.0)
}

fn rss_mb() -> f64 {
    status_mb("VmRSS:")
}

fn peak_mb() -> f64 {
    status_mb("VmHWM:")
}
