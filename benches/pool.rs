//! Bench binary (`cargo bench --bench pool`): scale-out.
//!
//!   pool    Best-of-8 throughput through the proxy over 1, 2, 4, 8 fake upstreams of fixed capacity (each serves
//!           `BON_BENCH_SLOTS` requests at once, default 2, in `BON_BENCH_DELAY_MS`, default 300 ms; more queue),
//!           against k times the one-upstream throughput measured in the same run: linear scaling is 1.00.
//!   shared  latency of a cache hit served from Redis (a second replica's first look) against a local hit
//!           (p50/p99 over `BON_BENCH_KEYS` requests, default 200), end to end through HTTP; then, Redis killed,
//!           misses on that replica against misses on one without a shared tier. Needs a redis-server:
//!           `BON_BENCH_REDIS_SERVER`, else .ci-cache/redis/redis-server (`scripts/redis-server fetch`).
//!
//! `BON_BENCH_PARTS` (default `pool,shared`), `BON_BENCH_UPSTREAMS` (default `1,2,4,8`), `BON_BENCH_REQUESTS` (per
//! upstream, default 8). Reward model: the default one (scripts/setup).

mod common;

use common::{env, ms, ratio, say};

use std::{
    process::{Child, Command, Stdio},
    sync::Arc,
    time::{Duration, Instant},
};

use anyhow::Context;
use bon_proxy::{AppState, config::Config, serve};
use clap::Parser;
use futures::future::join_all;
use serde_json::{Value, json};
use tokio::task::JoinSet;
use tokio_util::sync::CancellationToken;

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let parts = std::env::var("BON_BENCH_PARTS").unwrap_or_else(|_| "pool,shared".into());
    let mut servers = JoinSet::new();
    if parts.contains("pool") {
        pool(&mut servers).await?;
    }
    if parts.contains("shared") {
        shared(&mut servers).await?;
    }
    Ok(())
}

/// A proxy with `flags`, served in `servers`; returns its base URL.
async fn proxy(servers: &mut JoinSet<std::io::Result<()>>, flags: &[&str]) -> anyhow::Result<String> {
    let mut args = vec!["bon-proxy", "--device", "cpu", "--candidate-timeout", "10m", "--request-timeout", "20m"];
    args.extend_from_slice(flags);
    let state = AppState::build(Config::try_parse_from(args)?, CancellationToken::new()).await.context("proxy")?;
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
    let url = format!("http://{}", listener.local_addr()?);
    servers.spawn(serve(listener, state, CancellationToken::new()));
    Ok(url)
}

async fn pool(servers: &mut JoinSet<std::io::Result<()>>) -> anyhow::Result<()> {
    let slots: usize = env("BON_BENCH_SLOTS", 2);
    let delay = Duration::from_millis(env("BON_BENCH_DELAY_MS", 300));
    let per_upstream: usize = env("BON_BENCH_REQUESTS", 8);
    let sizes: Vec<usize> = std::env::var("BON_BENCH_UPSTREAMS")
        .unwrap_or_else(|_| "1,2,4,8".into())
        .split(',')
        .filter_map(|s| s.trim().parse().ok())
        .collect();
    say(&format!(
        "pool: Best-of-8, fake upstreams of {slots} slots x {} ms each, {per_upstream} requests per upstream, \
         2 clients per upstream, cache off",
        delay.as_millis()
    ));
    say("upstreams | requests | seconds | Best-of-8 req/s | ideal req/s | vs k x one upstream");
    let mut one = None;
    for &k in &sizes {
        let mut urls = Vec::new();
        for _ in 0..k {
            urls.push(fake_upstream(servers, slots, delay).await?);
        }
        let url = proxy(servers, &["--upstream", &urls.join(","), "--cache-ttl", "0s"]).await?;
        let http = reqwest::Client::new();
        chat(&http, &url, 0, 8).await?; // warm-up: connections, the model's first run
        let requests = per_upstream * k;
        let next = Arc::new(std::sync::atomic::AtomicUsize::new(1));
        let started = Instant::now();
        let clients = (0..2 * k).map(|_| {
            let (http, url, next) = (http.clone(), url.clone(), next.clone());
            async move {
                loop {
                    let i = next.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                    if i > requests {
                        return Ok::<(), anyhow::Error>(());
                    }
                    chat(&http, &url, i * 100, 8).await?;
                }
            }
        });
        for r in join_all(clients).await {
            r?;
        }
        let secs = started.elapsed().as_secs_f64();
        let rate = requests as f64 / secs;
        let ideal = (k * slots) as f64 / delay.as_secs_f64() / 8.0;
        let base = *one.get_or_insert(rate / k as f64);
        say(&format!("{k} | {requests} | {secs:.2} | {rate:.2} | {ideal:.2} | {:.2}", rate / (base * k as f64)));
    }
    Ok(())
}

async fn shared(servers: &mut JoinSet<std::io::Result<()>>) -> anyhow::Result<()> {
    let keys: usize = env("BON_BENCH_KEYS", 200);
    let binary = std::env::var("BON_BENCH_REDIS_SERVER")
        .unwrap_or_else(|_| format!("{}/.ci-cache/redis/redis-server", env!("CARGO_MANIFEST_DIR")));
    let port = std::net::TcpListener::bind("127.0.0.1:0")?.local_addr()?.port();
    let mut redis_server = Redis(
        Command::new(&binary)
            .args(["--port", &port.to_string(), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no"])
            .stdout(Stdio::null())
            .spawn()
            .with_context(|| format!("start {binary} (scripts/redis-server fetch, or BON_BENCH_REDIS_SERVER)"))?,
    );
    tokio::time::sleep(Duration::from_millis(300)).await;
    let upstream = fake_upstream(servers, 64, Duration::from_millis(5)).await?;
    let redis = format!("redis://127.0.0.1:{port}");
    let a = proxy(servers, &["--upstream", &upstream, "--cache-redis", &redis]).await?;
    let b = proxy(servers, &["--upstream", &upstream, "--cache-redis", &redis]).await?;
    let http = reqwest::Client::new();
    for i in 0..keys {
        chat_cached(&http, &a, i, "miss").await?; // computed on replica a, written to Redis
    }
    chat_cached(&http, &b, keys + 1, "miss").await?; // warm-up of b's connections and model
    let mut from_redis = Vec::new();
    let mut local = Vec::new();
    for i in 0..keys {
        from_redis.push(chat_cached(&http, &b, i, "hit").await?); // b: local miss, Redis hit
    }
    for i in 0..keys {
        local.push(chat_cached(&http, &b, i, "hit").await?); // b again: local (moka) hit
    }
    let (r50, r99, l50, l99) =
        (pct(&mut from_redis, 0.5), pct(&mut from_redis, 0.99), pct(&mut local, 0.5), pct(&mut local, 0.99));
    say(&format!(
        "shared cache: {keys} Best-of-4 results computed on replica a, then read on replica b (end to end, HTTP)"
    ));
    say("hit served from | p50 ms | p99 ms");
    say(&format!("local (moka) | {:.3} | {:.3}", ms(l50), ms(l99)));
    say(&format!("Redis (other replica's result) | {:.3} | {:.3}", ms(r50), ms(r99)));
    say(&format!("Redis / local: p50 {:.2}x, p99 {:.2}x", ratio(r50, l50), ratio(r99, l99)));

    // Redis dies: misses on replica b (whose lookups now fail, then skip Redis for a second after each failure)
    // against misses on a replica that has no shared tier, interleaved so both see the same machine.
    redis_server.kill();
    let plain = proxy(servers, &["--upstream", &upstream]).await?;
    chat_cached(&http, &plain, keys + 2, "miss").await?; // warm-up
    let (mut down, mut none) = (Vec::new(), Vec::new());
    for i in 0..keys {
        // Alternate which goes first, so neither always finds the machine busier.
        if i % 2 == 0 {
            down.push(chat_cached(&http, &b, 10_000 + i, "miss").await?);
            none.push(chat_cached(&http, &plain, 20_000 + i, "miss").await?);
        } else {
            none.push(chat_cached(&http, &plain, 20_000 + i, "miss").await?);
            down.push(chat_cached(&http, &b, 10_000 + i, "miss").await?);
        }
    }
    let (d50, d99, n50, n99) = (pct(&mut down, 0.5), pct(&mut down, 0.99), pct(&mut none, 0.5), pct(&mut none, 0.99));
    say(&format!("misses, {keys} each (Best-of-4 computed: fake upstream 5 ms + scoring)"));
    say("replica | p50 ms | p99 ms");
    say(&format!("no shared tier | {:.3} | {:.3}", ms(n50), ms(n99)));
    say(&format!("shared tier, Redis killed | {:.3} | {:.3}", ms(d50), ms(d99)));
    say(&format!("Redis down / no Redis: p50 {:.2}x, p99 {:.2}x", ratio(d50, n50), ratio(d99, n99)));
    Ok(())
}

/// A redis-server child, killed when dropped.
struct Redis(Child);

impl Redis {
    fn kill(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

impl Drop for Redis {
    fn drop(&mut self) {
        self.kill();
    }
}

fn body(seed: usize) -> Value {
    json!({"model": "fake", "seed": seed, "temperature": 0.8,
           "messages": [{"role": "user", "content": "Write two sentences about why the sky is blue."}]})
}

async fn chat(http: &reqwest::Client, url: &str, seed: usize, n: usize) -> anyhow::Result<Value> {
    let resp = http
        .post(format!("{url}/v1/chat/completions"))
        .header("x-bon-n", n.to_string())
        .header("cache-control", "no-store")
        .json(&body(seed))
        .send()
        .await?;
    anyhow::ensure!(resp.status().is_success(), "HTTP {}", resp.status());
    Ok(resp.json().await?)
}

/// One cacheable Best-of-4 request; checks `x-bon-cache` and returns its latency.
async fn chat_cached(http: &reqwest::Client, url: &str, seed: usize, want: &str) -> anyhow::Result<Duration> {
    let started = Instant::now();
    let resp = http.post(format!("{url}/v1/chat/completions")).header("x-bon-n", "4").json(&body(seed)).send().await?;
    anyhow::ensure!(resp.status().is_success(), "HTTP {}", resp.status());
    let got = resp.headers().get("x-bon-cache").and_then(|v| v.to_str().ok()).unwrap_or_default().to_owned();
    resp.bytes().await?;
    let took = started.elapsed();
    anyhow::ensure!(got == want, "seed {seed}: x-bon-cache {got}, expected {want}");
    Ok(took)
}

/// An upstream that serves `slots` requests at a time, each taking `delay`; others wait their turn.
async fn fake_upstream(
    servers: &mut JoinSet<std::io::Result<()>>,
    slots: usize,
    delay: Duration,
) -> anyhow::Result<String> {
    let app = common::fake_upstream(slots, delay);
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
    let url = format!("http://{}", listener.local_addr()?);
    servers.spawn(async move { axum::serve(listener, app).await });
    Ok(url)
}

fn pct(v: &mut [Duration], q: f64) -> Duration {
    v.sort_unstable();
    let i = ((v.len() as f64 - 1.0) * q).round() as usize;
    v.get(i).copied().unwrap_or_default()
}
