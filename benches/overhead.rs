//! Bench binary (`cargo bench --bench overhead`): what the proxy itself costs, in one process.
//!
//!   copies    building the N candidate requests of one Best-of-8 call on a ~4k-token conversation and serialising
//!             them: as before (the forwarded body copied per candidate, `seed` inserted, a second copy for the cache
//!             key) against now (one shared body, each candidate a borrowed wrapper adding its `seed`; the key
//!             hashed from the parts): allocations, bytes and time, same body, same run
//!   call      one Best-of-8 call through the in-process proxy on a 0 ms fake upstream with that conversation:
//!             allocations and time per call, end to end (HTTP both ways, the fake, scoring with the default model)
//!   n=1 allocations  what one N = 1 request allocates in the proxy (through it minus direct, one at a time)
//!   n=1       `BON_BENCH_CLIENTS` (16) clients in a loop, N = 1, on a 0 ms fake: direct vs through the proxy,
//!             p50/p99 per request and what the proxy adds; once with every core shared by the clients, the fake
//!             and the proxy, once with the proxy pinned to a core of its own (CPU 1; the rest on CPU 0)
//!
//! `BON_BENCH_ROUNDS` (default 200) repetitions of each measurement; `BON_BENCH_PAIRS` (5) interleaved direct/proxy
//! runs of the N = 1 measurement per layout, reported as medians (one run's p99 varies by ±0.2 ms here).

mod common;

use common::{env, ms, say};

use std::{
    alloc::System,
    sync::Arc,
    time::{Duration, Instant},
};

use bon_proxy::{cache::CacheKey, upstream::UpstreamRequest};
use serde_json::{Map, Value, json};
use stats_alloc::{INSTRUMENTED_SYSTEM, StatsAlloc};

/// Counts every allocation the process makes.
#[global_allocator]
static GLOBAL: &StatsAlloc<System> = &INSTRUMENTED_SYSTEM;

/// Allocations (reallocations included) and bytes allocated so far.
fn allocated() -> (u64, u64) {
    let s = GLOBAL.stats();
    ((s.allocations + s.reallocations) as u64, (s.bytes_allocated + s.bytes_reallocated.max(0) as usize) as u64)
}

/// Allocations, bytes and time per repetition of `f`, over `rounds`.
fn measure(rounds: usize, mut f: impl FnMut()) -> (f64, f64, Duration) {
    let ((a0, b0), t) = (allocated(), Instant::now());
    for _ in 0..rounds {
        f();
    }
    let ((a1, b1), elapsed) = (allocated(), t.elapsed() / u32::try_from(rounds).unwrap_or(1));
    let per = |x: u64| x as f64 / rounds as f64;
    (per(a1 - a0), per(b1 - b0), elapsed)
}

/// A conversation of about `tokens` tokens (about four characters each) over 16 turns, as the forwarded body.
fn conversation_body(tokens: usize) -> Map<String, Value> {
    let turn = "The quick brown fox jumps over the lazy dog while the reward model reads every word. ";
    let per_turn = tokens * 4 / 16;
    let messages: Vec<Value> = (0..16)
        .map(|i| {
            let role = if i % 2 == 0 { "user" } else { "assistant" };
            json!({"role": role, "content": turn.repeat(per_turn / turn.len() + 1)})
        })
        .collect();
    let v = json!({"model": "m", "messages": messages, "temperature": 0.8, "max_tokens": 64, "stream": false});
    v.as_object().cloned().unwrap_or_default()
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let rounds: usize = env("BON_BENCH_ROUNDS", 200);
    let clients: usize = env("BON_BENCH_CLIENTS", 16);
    let pairs: usize = env("BON_BENCH_PAIRS", 5).max(1);
    let body = conversation_body(4096);
    let body_bytes = serde_json::to_vec(&body)?.len();
    say(&format!("conversation: {} messages, {body_bytes} bytes of JSON (~4k tokens); {rounds} rounds", 16));

    // Copies: the N = 8 requests of one call, and the cache key.
    let n = 8u32;
    let extra = json!({"bon": {"guard": false}}).as_object().cloned().unwrap_or_default();
    let (before_a, before_b, before_t) = measure(rounds, || {
        let mut key_body = body.clone();
        key_body.extend(extra.clone());
        std::hint::black_box(CacheKey::new(&[&key_body], n, "rm", None));
        for i in 0..n {
            let mut one = body.clone();
            one.insert("seed".into(), json!(i));
            std::hint::black_box(serde_json::to_vec(&one).ok());
        }
    });
    let shared = Arc::new(body.clone());
    let (after_a, after_b, after_t) = measure(rounds, || {
        std::hint::black_box(CacheKey::new(&[&shared, &extra], n, "rm", None));
        for i in 0..n {
            let one = UpstreamRequest::new(shared.clone()).seed(i64::from(i));
            std::hint::black_box(serde_json::to_vec(&one).ok());
        }
    });
    say("copies (8 candidate requests + the cache key)   allocations      bytes       time");
    say(&format!("  body copied per candidate (before)  {before_a:>12.0} {before_b:>10.0} {:>8.3} ms", ms(before_t)));
    say(&format!("  shared body (now)                   {after_a:>12.0} {after_b:>10.0} {:>8.3} ms", ms(after_t)));
    say(&format!(
        "  now / before                        {:>12.2} {:>10.2} {:>8.2}",
        after_a / before_a,
        after_b / before_b,
        after_t.as_secs_f64() / before_t.as_secs_f64()
    ));

    // One Best-of-8 call end to end, and N = 1 at concurrency.
    let upstream =
        common::spawn_fake(common::fake_upstream(tokio::sync::Semaphore::MAX_PERMITS, Duration::ZERO)).await?;
    let served = common::proxy(&proxy_flags(&upstream)).await?;
    let proxy = served.url.clone();
    let http = reqwest::Client::new();
    let request = |base: &str, n: u32, seed: usize| {
        let mut b = body.clone();
        b.insert("seed".into(), json!(seed));
        http.post(format!("{base}/v1/chat/completions")).header("x-bon-n", n.to_string()).json(&b).send()
    };
    request(&proxy, 8, 0).await?.error_for_status()?;
    let calls = (rounds / 10).max(5);
    let ((a0, b0), t) = (allocated(), Instant::now());
    for seed in 0..calls {
        request(&proxy, 8, seed + 1).await?.error_for_status()?.bytes().await?;
    }
    let ((a1, b1), elapsed) = (allocated(), t.elapsed());
    let per = |x: u64| x as f64 / calls as f64;
    say(&format!(
        "Best-of-8 call through the proxy (0 ms fake, default model): {:.0} allocations, {:.0} bytes, {:.1} ms per call",
        per(a1 - a0),
        per(b1 - b0),
        ms(elapsed) / calls as f64
    ));

    // What one N = 1 request allocates in the proxy: the same short request sent one at a time, through the proxy
    // minus direct (both include the client and the fake).
    let short = short_request();
    let per_request = |base: String| {
        let (http, short) = (http.clone(), short.clone());
        async move {
            let url = format!("{base}/v1/chat/completions");
            http.post(&url).header("x-bon-n", "1").json(&short).send().await?.error_for_status()?.bytes().await?;
            let (a0, b0) = allocated();
            for _ in 0..rounds {
                http.post(&url).header("x-bon-n", "1").json(&short).send().await?.error_for_status()?.bytes().await?;
            }
            let (a1, b1) = allocated();
            anyhow::Ok(((a1 - a0) as f64 / rounds as f64, (b1 - b0) as f64 / rounds as f64))
        }
    };
    let (direct_a, direct_b) = per_request(upstream.clone()).await?;
    let (proxy_a, proxy_b) = per_request(proxy.clone()).await?;
    say(&format!(
        "N = 1 request, allocations in the proxy (through it minus direct): {:.0} allocations, {:.0} bytes",
        proxy_a - direct_a,
        proxy_b - direct_b
    ));

    // N = 1 at concurrency, two layouts, each as `pairs` interleaved (direct, proxy) runs after a warm-up of both.
    // Shared: the clients, the fake and the proxy on this runtime, every core shared, as above. Pinned: the clients
    // and the fake on CPU 0, the proxy on CPU 1 (its own core, as in a deployment); direct is the same clients and
    // fake on CPU 0.
    say(&format!("N = 1, {clients} clients x {rounds} requests, 0 ms fake, median of {pairs} pairs:   p50        p99"));
    let mut shared = Vec::new();
    latencies(http.clone(), upstream.clone(), clients, rounds).await?;
    latencies(http.clone(), proxy.clone(), clients, rounds).await?;
    for _ in 0..pairs {
        let direct = latencies(http.clone(), upstream.clone(), clients, rounds).await?;
        shared.push((direct, latencies(http.clone(), proxy.clone(), clients, rounds).await?));
    }
    report("shared cores", shared);
    served.stop().await;
    if core_affinity::get_core_ids().is_some_and(|ids| ids.len() >= 2) {
        report(
            "pinned (proxy on its own core)",
            tokio::task::spawn_blocking(move || pinned(clients, rounds, pairs)).await??,
        );
    } else {
        say("  pinned layout skipped: fewer than 2 cores");
    }
    Ok(())
}

type Quantiles = (Duration, Duration);

/// The proxy under test: the default model, no cache (every request reaches the fake), one request per candidate.
fn proxy_flags(upstream: &str) -> [&str; 8] {
    ["--upstream", upstream, "--device", "cpu", "--cache-ttl", "0s", "--upstream-n", "fanout"]
}

/// The N = 1 request every latency and allocation measurement sends.
fn short_request() -> Value {
    json!({"model": "m", "messages": [{"role": "user", "content": "Hi"}]})
}

/// p50 and p99 of `clients` loops of `rounds` N = 1 requests each to `base`.
async fn latencies(http: reqwest::Client, base: String, clients: usize, rounds: usize) -> anyhow::Result<Quantiles> {
    let mut tasks = tokio::task::JoinSet::new();
    for c in 0..clients {
        let (http, url) = (http.clone(), format!("{base}/v1/chat/completions"));
        tasks.spawn(async move {
            let mut short = short_request();
            let mut got = Vec::with_capacity(rounds);
            for i in 0..rounds {
                short["seed"] = json!(c * rounds + i);
                let t = Instant::now();
                let ok = http.post(&url).header("x-bon-n", "1").json(&short);
                ok.send().await?.error_for_status()?.bytes().await?;
                got.push(t.elapsed());
            }
            anyhow::Ok(got)
        });
    }
    let mut all: Vec<Duration> = Vec::new();
    while let Some(done) = tasks.join_next().await {
        all.extend(done??);
    }
    all.sort();
    let at = |q: f64| all[((all.len() - 1) as f64 * q) as usize];
    Ok((at(0.5), at(0.99)))
}

/// The median over pairs of direct, through the proxy and their difference, p50 and p99; and every pair's p99 added.
fn report(layout: &str, pairs: Vec<(Quantiles, Quantiles)>) {
    let median = |f: &dyn Fn(&(Quantiles, Quantiles)) -> Duration| {
        let mut v: Vec<Duration> = pairs.iter().map(f).collect();
        v.sort();
        ms(v[v.len() / 2])
    };
    let added = |(d, p): &(Quantiles, Quantiles)| (p.0.saturating_sub(d.0), p.1.saturating_sub(d.1));
    say(&format!("  {layout}"));
    say(&format!(
        "    direct                            {:>7.3} ms {:>7.3} ms",
        median(&|x| x.0.0),
        median(&|x| x.0.1)
    ));
    say(&format!(
        "    through the proxy                 {:>7.3} ms {:>7.3} ms",
        median(&|x| x.1.0),
        median(&|x| x.1.1)
    ));
    say(&format!(
        "    added by the proxy                {:>7.3} ms {:>7.3} ms",
        median(&|x| added(x).0),
        median(&|x| added(x).1)
    ));
    let each: Vec<String> = pairs.iter().map(|x| format!("{:.2}", ms(added(x).1))).collect();
    say(&format!("    p99 added in each pair (ms): {}", each.join(" ")));
}

/// A one-worker runtime whose threads run on CPU `core` only.
fn pinned_runtime(core: usize) -> anyhow::Result<tokio::runtime::Runtime> {
    let pin = move || {
        core_affinity::set_for_current(core_affinity::CoreId { id: core });
    };
    Ok(tokio::runtime::Builder::new_multi_thread().worker_threads(1).on_thread_start(pin).enable_all().build()?)
}

/// The pinned layout: a fresh proxy on CPU 1, the clients and the fake on CPU 0; `pairs` (direct, proxy) runs after
/// a warm-up of each.
fn pinned(clients: usize, rounds: usize, pairs: usize) -> anyhow::Result<Vec<(Quantiles, Quantiles)>> {
    let (load, proxy_rt) = (pinned_runtime(0)?, pinned_runtime(1)?);
    let upstream =
        load.block_on(common::spawn_fake(common::fake_upstream(tokio::sync::Semaphore::MAX_PERMITS, Duration::ZERO)))?;
    let served = proxy_rt.block_on(common::proxy(&proxy_flags(&upstream)))?;
    let http = load.block_on(async { reqwest::Client::new() });
    let run = |base: &str| load.block_on(latencies(http.clone(), base.to_owned(), clients, rounds));
    run(&upstream)?;
    run(&served.url)?;
    let mut got = Vec::new();
    for _ in 0..pairs {
        got.push((run(&upstream)?, run(&served.url)?));
    }
    proxy_rt.block_on(served.stop());
    Ok(got)
}
