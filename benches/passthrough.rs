//! Bench binary (`cargo bench --bench passthrough`): a large body through the pass-through route, both ways.
//!
//! A fake upstream on `/v1/upload` reads a `BON_BENCH_MIB` (default 512) MiB upload as it comes and answers with a
//! body of the same size, sent in 64 KiB chunks. The client streams the upload (unknown length, so the proxy
//! cannot read it whole) and reads the answer as it arrives. Measured directly against the fake and through the
//! in-process proxy, `BON_BENCH_ROUNDS` (3) interleaved times each: wall time (the ratio through / direct) and the
//! process's peak resident memory above where it stood before the transfer (`VmHWM`, reset through
//! `/proc/self/clear_refs` before each transfer). A proxy that held either body whole would add its size.

mod common;

use common::{env, ratio, say, spawn_fake};

use std::time::{Duration, Instant};

use axum::{Router, body::Body, extract::Request, routing::post};
use bytes::Bytes;
use futures::StreamExt;

const CHUNK: usize = 64 * 1024;

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let mib: usize = env("BON_BENCH_MIB", 512);
    let rounds: usize = env("BON_BENCH_ROUNDS", 3);
    let upstream = spawn_fake(Router::new().route("/v1/upload", post(echo_size))).await?;
    let proxy = common::proxy(&["--upstream", &upstream, "--device", "cpu"]).await?;
    let client = reqwest::Client::new();
    say(&format!("pass-through of a {mib} MiB upload and a {mib} MiB answer, {rounds} rounds each"));
    let (mut direct, mut through) = (Vec::new(), Vec::new());
    for _ in 0..rounds {
        direct.push(transfer(&client, &upstream, mib).await?);
        through.push(transfer(&client, &proxy.url, mib).await?);
    }
    let median = |v: &mut Vec<(Duration, u64)>| {
        v.sort();
        v[v.len() / 2]
    };
    let worst = |v: &[(Duration, u64)]| v.iter().map(|&(_, m)| m).max().unwrap_or(0);
    let ((d_time, _), (t_time, _)) = (median(&mut direct), median(&mut through));
    say("| path | median wall | peak RSS above start (worst round) |");
    say("|---|---|---|");
    say(&format!("| direct | {:.2} s | {:.1} MiB |", d_time.as_secs_f64(), worst(&direct) as f64 / 1048576.0));
    say(&format!(
        "| through bon-proxy | {:.2} s | {:.1} MiB |",
        t_time.as_secs_f64(),
        worst(&through) as f64 / 1048576.0
    ));
    say(&format!("through / direct wall time: {:.2}×", ratio(t_time, d_time)));
    proxy.stop().await;
    Ok(())
}

/// The fake: reads the upload as it comes, then streams back as many bytes.
async fn echo_size(req: Request) -> Body {
    let mut body = req.into_body().into_data_stream();
    let mut size = 0usize;
    while let Some(Ok(chunk)) = body.next().await {
        size += chunk.len();
    }
    Body::from_stream(zeros(size))
}

fn zeros(size: usize) -> impl futures::Stream<Item = Result<Bytes, std::io::Error>> {
    let chunk = Bytes::from(vec![0u8; CHUNK]);
    futures::stream::iter((0..size.div_ceil(CHUNK)).map(move |i| Ok(chunk.slice(..CHUNK.min(size - i * CHUNK)))))
}

/// One upload and download through `base`: wall time and peak RSS above the start.
async fn transfer(client: &reqwest::Client, base: &str, mib: usize) -> anyhow::Result<(Duration, u64)> {
    std::fs::write("/proc/self/clear_refs", "5")?;
    let start_rss = status_kib("VmRSS:")?;
    let started = Instant::now();
    let resp = client
        .post(format!("{base}/v1/upload"))
        .body(reqwest::Body::wrap_stream(zeros(mib * 1024 * 1024)))
        .send()
        .await?
        .error_for_status()?;
    let mut got = 0usize;
    let mut answer = resp.bytes_stream();
    while let Some(chunk) = answer.next().await {
        got += chunk?.len();
    }
    anyhow::ensure!(got == mib * 1024 * 1024, "got {got} bytes back");
    let elapsed = started.elapsed();
    let peak = status_kib("VmHWM:")?;
    Ok((elapsed, peak.saturating_sub(start_rss) * 1024))
}

/// A `/proc/self/status` line's value in KiB.
fn status_kib(field: &str) -> anyhow::Result<u64> {
    let status = std::fs::read_to_string("/proc/self/status")?;
    let line = status.lines().find(|l| l.starts_with(field)).ok_or_else(|| anyhow::anyhow!("no {field}"))?;
    Ok(line.trim_start_matches(field).trim().trim_end_matches("kB").trim().parse()?)
}
