//! Bench binary (`cargo bench --bench bon`): bon-proxy's Best-of-N against the sequential baseline, measured in the
//! same process on the same upstream, printed as ratios to one plain request.
//!
//!   baseline  N upstream calls one after another, then N reward-model runs one candidate at a time
//!             (the Python loop this project replaces)
//!   bon-proxy one request to the proxy with `x-bon-n: N`: concurrent fan-out, one batched scoring run
//!
//! Upstream: `BON_BENCH_UPSTREAM` (e.g. a llama.cpp server started by `scripts/llama-server start PORT`), else an
//! in-process fake that answers after 100 ms with unlimited parallelism (an upper bound on the fan-out gain).
//! Reward model: the default model (scripts/setup). `BON_BENCH_ROUNDS` (default 5), `BON_BENCH_N` (default 4),
//! `BON_BENCH_UPSTREAM_N` (`fanout` default, or `native`).

mod common;

use common::{ms, ratio, say};

use std::{
    sync::Arc,
    time::{Duration, Instant},
};

use bon_proxy::{openai::Message, reward::ScoreInput};
use serde_json::{Value, json};

const PROMPT: &str = "Write two sentences about why the sky is blue.";

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let rounds: usize = std::env::var("BON_BENCH_ROUNDS").ok().and_then(|v| v.parse().ok()).unwrap_or(5);
    let n: usize = std::env::var("BON_BENCH_N").ok().and_then(|v| v.parse().ok()).unwrap_or(4);
    let (upstream, kind) = match std::env::var("BON_BENCH_UPSTREAM") {
        Ok(url) => (url, "external"),
        Err(_) => (
            common::spawn_fake(common::fake_upstream(tokio::sync::Semaphore::MAX_PERMITS, Duration::from_millis(100)))
                .await?,
            "in-process fake, 100 ms per request",
        ),
    };
    let upstream_n = std::env::var("BON_BENCH_UPSTREAM_N").unwrap_or_else(|_| "fanout".into());
    let served = common::proxy(&[
        "--upstream-n",
        &upstream_n,
        "--upstream",
        &upstream,
        "--device",
        "cpu",
        "--cache-ttl",
        "0s",
        "--candidate-timeout",
        "10m",
        "--request-timeout",
        "20m",
    ])
    .await?;
    let (state, proxy) = (served.state.clone(), served.url.clone());
    let http = reqwest::Client::new();
    let body = |seed: usize| {
        json!({"model": "smollm2", "max_tokens": 48, "temperature": 0.8, "seed": seed,
               "messages": [{"role": "user", "content": PROMPT}]})
    };

    say(&format!(
        "upstream: {upstream} ({kind}, --upstream-n {upstream_n}); reward model: {}; N = {n}; {rounds} rounds",
        state.reward_model_id
    ));
    // Warm up both paths (connection pools, the model's first run).
    post(&http, &format!("{upstream}/v1/chat/completions"), &body(0), None).await?;
    post(&http, &format!("{proxy}/v1/chat/completions"), &body(0), Some(n)).await?;

    let (mut single, mut baseline, mut proxied) = (Vec::new(), Vec::new(), Vec::new());
    for round in 0..rounds {
        let seed = 1000 * (round + 1);
        let t = Instant::now();
        post(&http, &format!("{upstream}/v1/chat/completions"), &body(seed), None).await?;
        single.push(t.elapsed());

        let t = Instant::now();
        let mut texts = Vec::new();
        for i in 0..n {
            let c = post(&http, &format!("{upstream}/v1/chat/completions"), &body(seed + i), None).await?;
            texts.push(c["choices"][0]["message"]["content"].as_str().unwrap_or_default().to_owned());
        }
        for text in &texts {
            state.scorer.score(vec![input(text)]).await?;
        }
        baseline.push(t.elapsed());

        let t = Instant::now();
        post(&http, &format!("{proxy}/v1/chat/completions"), &body(seed), Some(n)).await?;
        proxied.push(t.elapsed());
    }
    let one = mean(&single);
    say(&format!("one plain request          {:>8.1} ms   1.00x", ms(one)));
    say(&format!(
        "baseline Best-of-{n} (serial) {:>8.1} ms   {:.2}x",
        ms(mean(&baseline)),
        ratio(mean(&baseline), one)
    ));
    say(&format!("bon-proxy Best-of-{n}         {:>8.1} ms   {:.2}x", ms(mean(&proxied)), ratio(mean(&proxied), one)));
    say(&format!("bon-proxy speed-up over the baseline: {:.2}x", ratio(mean(&baseline), mean(&proxied))));

    // Scoring alone: N candidates one run each vs one batched run.
    let inputs: Vec<ScoreInput> =
        (0..8).map(|i| input(&format!("Candidate {i}: the sky scatters blue light more."))).collect();
    let (mut alone, mut batched) = (Vec::new(), Vec::new());
    for _ in 0..rounds.max(3) {
        let t = Instant::now();
        for i in &inputs {
            state.scorer.score(vec![i.clone()]).await?;
        }
        alone.push(t.elapsed());
        let t = Instant::now();
        state.scorer.score(inputs.clone()).await?;
        batched.push(t.elapsed());
    }
    say(&format!(
        "scoring 8 candidates: one run each {:.1} ms, one batch {:.1} ms ({:.2}x faster)",
        ms(mean(&alone)),
        ms(mean(&batched)),
        ratio(mean(&alone), mean(&batched))
    ));
    // The default model's budget: 8 candidates that fill its 256-token window, one batch.
    let long: Vec<ScoreInput> = (0..8)
        .map(|i| {
            input(&format!(
                "Answer {i}. {}",
                "Rayleigh scattering favours short wavelengths, so blue light is spread across the sky more than red. "
                    .repeat(14)
            ))
        })
        .collect();
    let mut full = Vec::new();
    for _ in 0..rounds.max(10) {
        let t = Instant::now();
        state.scorer.score(long.clone()).await?;
        full.push(t.elapsed());
    }
    say(&format!(
        "scoring 8 candidates of 256 tokens (the default model's window), one batch: {:.1} ms",
        ms(mean(&full))
    ));
    served.stop().await;
    Ok(())
}

fn input(text: &str) -> ScoreInput {
    let user: Message =
        serde_json::from_value(json!({"role": "user", "content": PROMPT})).unwrap_or_else(|_| unreachable!());
    let response: Message =
        serde_json::from_value(json!({"role": "assistant", "content": text})).unwrap_or_else(|_| unreachable!());
    ScoreInput { conversation: Arc::from(vec![user]), tools: None, response }
}

async fn post(http: &reqwest::Client, url: &str, body: &Value, n: Option<usize>) -> anyhow::Result<Value> {
    let mut req = http.post(url).json(body).header("cache-control", "no-store");
    if let Some(n) = n {
        req = req.header("x-bon-n", n.to_string());
    }
    let resp = req.send().await?;
    anyhow::ensure!(resp.status().is_success(), "{url}: HTTP {}", resp.status());
    Ok(resp.json().await?)
}

fn mean(v: &[Duration]) -> Duration {
    v.iter().sum::<Duration>() / u32::try_from(v.len().max(1)).unwrap_or(1)
}
