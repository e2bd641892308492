//! A pool of upstreams behind one `Upstream`: each request goes to the healthy upstream with the fewest requests in
//! flight from this proxy (ties: round-robin), so the N candidates of one call spread over the pool. A transient
//! failure (transport error, timeout, 5xx, 429, 408) is retried once on another healthy upstream, body and seed
//! unchanged, within the same deadline; the ones that say the upstream is gone (see `health`) also mark it down with
//! exponential back-off (a busy 429 or 408 does not). A down
//! upstream gets traffic again once a probe (`GET /v1/models`) answers. When every upstream is down, requests still
//! go out (to the least loaded, and a failure is retried on another): refusing them would turn a flapping pool into
//! a dead one.
//!
//! With one upstream the pool behaves as that upstream alone: there is nowhere to fail over to.

use std::{
    sync::{
        Arc, Mutex,
        atomic::{AtomicBool, AtomicUsize, Ordering},
    },
    time::Duration,
};

use futures::{FutureExt, StreamExt, future::BoxFuture};
use serde_json::Value;
use tokio::time::Instant;

pub use super::member::MemberStatus;
use super::{
    Forward, Forwarded, Streamed, Upstream, UpstreamError, UpstreamRequest,
    health::{Backoff, Health},
    member::{Lease, Member},
};
use crate::{metrics::Metrics, openai::ChatCompletion};

/// How often the prober looks for upstreams due a probe.
const PROBE_TICK: Duration = Duration::from_millis(250);

/// The pool's settings (from `Config`).
#[derive(Clone, Copy, Debug)]
pub struct PoolOptions {
    /// Back-off of a failed upstream before it is probed.
    pub backoff: Backoff,
    /// Healthy upstreams are probed this often too, so that `/ready` notices one that died while idle.
    pub probe_interval: Duration,
    /// How long a probe may take (`--upstream-probe-timeout`). A probe that times out does not mark the upstream
    /// down: it is slow (busy), not dead (see `health`).
    pub probe_timeout: Duration,
    /// Deadline of one request, failover included (`--candidate-timeout`); None: none.
    pub deadline: Option<Duration>,
    /// Learn, per member, which upstreams ignore OpenAI's `n` (`--upstream-n auto`): a member that answers a
    /// request for `n` > 1 choices with fewer (Ollama) is remembered; from then on `n` requests go to the members
    /// that honour it and `shares` splits N over those only (none: an empty split, so every candidate fans out).
    pub learn_n: bool,
}

impl Default for PoolOptions {
    fn default() -> Self {
        Self {
            backoff: Backoff { initial: Duration::from_secs(1), max: Duration::from_secs(30) },
            probe_interval: Duration::from_secs(5),
            probe_timeout: Duration::from_secs(10),
            deadline: None,
            learn_n: false,
        }
    }
}

/// Several upstreams as one.
pub struct Pool {
    members: Vec<Arc<Member>>,
    next: AtomicUsize,
    opts: PoolOptions,
}

impl Pool {
    /// A pool of `(name, upstream)`; `name` is the `upstream` label of its metrics (never a URL).
    pub fn new(members: Vec<(String, Arc<dyn Upstream>)>, opts: PoolOptions, metrics: Arc<Metrics>) -> Self {
        let now = Instant::now();
        let members = members
            .into_iter()
            .map(|(name, upstream)| {
                metrics.upstream_up.with_label_values(&[&name]).set(1);
                metrics.upstream_inflight.with_label_values(&[&name]).set(0);
                Arc::new(Member {
                    name,
                    upstream,
                    inflight: AtomicUsize::new(0),
                    health: Mutex::new(Health::new(now)),
                    metrics: metrics.clone(),
                    ignores_n: AtomicBool::new(false),
                    ignores_logprobs: AtomicBool::new(false),
                })
            })
            .collect();
        Self { members, next: AtomicUsize::new(0), opts }
    }

    /// Upstreams that get traffic now.
    pub fn routable(&self) -> usize {
        self.members.iter().filter(|m| m.health().routable()).count()
    }

    /// Members that honour `n` and get traffic now (with `learn_n`; else every routable one).
    fn routable_for_n(&self) -> usize {
        self.members.iter().filter(|m| m.health().routable() && !self.skips_n(m)).count()
    }

    fn skips_n(&self, m: &Member) -> bool {
        self.opts.learn_n && m.ignores_n.load(Ordering::Relaxed)
    }

    /// Whether `m` is known not to serve what the request wants (`n` choices, log-probabilities).
    fn lacks(&self, m: &Member, wants: Wants) -> bool {
        (wants.n && self.skips_n(m)) || (wants.logprobs && m.ignores_logprobs.load(Ordering::Relaxed))
    }

    /// The least loaded routable member (ties: round-robin); for a retry, other than the one that failed; for a
    /// request with `n` or `logprobs` (`wants`), one not known to ignore them where one is routable. When no member
    /// is routable, any: every upstream is down, and traffic still goes to the least loaded.
    fn lease(&self, retry_of: Option<usize>, wants: Wants) -> Option<Lease> {
        let len = self.members.len();
        // A retry looks on from the member that failed, without moving the round-robin on.
        let start = retry_of.map_or_else(|| self.next.fetch_add(1, Ordering::Relaxed), |i| i + 1);
        let avoid = retry_of;
        // (healthy only, serving what is wanted only), strictest first.
        let picky = wants.n || wants.logprobs;
        let passes: &[(bool, bool)] =
            if picky { &[(true, true), (true, false), (false, false)] } else { &[(true, false), (false, false)] };
        for &(healthy_only, serves) in passes {
            let mut best: Option<(usize, usize)> = None;
            for k in 0..len {
                let i = (start + k) % len;
                let m = &self.members[i];
                if Some(i) == avoid || (healthy_only && !m.health().routable()) || (serves && self.lacks(m, wants)) {
                    continue;
                }
                let load = m.inflight.load(Ordering::Relaxed);
                if best.is_none_or(|(l, _)| load < l) {
                    best = Some((load, i));
                }
            }
            if let Some((_, i)) = best {
                return Some(Lease::new(i, self.members[i].clone()));
            }
        }
        None
    }

    /// Runs `call` with `args` on a member (within `deadline`), counts it, and on a transient failure runs it once
    /// more on another routable member. Returns the result and the lease it was served under. `args` (the request,
    /// whose body is shared) is cloned only when there is another member to retry on.
    async fn with_failover<A, T, F>(
        &self,
        deadline: Option<Instant>,
        wants: Wants,
        args: A,
        call: F,
    ) -> Result<(T, Lease), UpstreamError>
    where
        A: Clone,
        F: for<'a> Fn(&'a dyn Upstream, A) -> BoxFuture<'a, Result<T, UpstreamError>>,
    {
        let first = self.lease(None, wants).ok_or_else(|| UpstreamError::Transport("no upstream configured".into()))?;
        let spare = (self.members.len() > 1).then(|| args.clone());
        let err = match self.attempt(&first, deadline, call(first.member.upstream.as_ref(), args)).await {
            Ok(v) => return Ok((v, first)),
            Err(e) => e,
        };
        // A client error would fail anywhere; past the deadline there is no time left to retry.
        if !err.is_transient() || deadline.is_some_and(|at| Instant::now() >= at) {
            return Err(err);
        }
        let (Some(args), Some(second)) = (spare, self.lease(Some(first.index), wants)) else { return Err(err) };
        first.member.metrics.upstream_failovers.with_label_values(&[&first.member.name]).inc();
        tracing::debug!(from = %first.member.name, to = %second.member.name, error = %err, "retrying on another upstream");
        drop(first);
        let v = self.attempt(&second, deadline, call(second.member.upstream.as_ref(), args)).await?;
        Ok((v, second))
    }

    /// Awaits one request on `lease`'s member within `deadline` and counts it there.
    async fn attempt<T>(
        &self,
        lease: &Lease,
        deadline: Option<Instant>,
        fut: BoxFuture<'_, Result<T, UpstreamError>>,
    ) -> Result<T, UpstreamError> {
        let started = Instant::now();
        let result = match (deadline, self.opts.deadline) {
            (Some(at), Some(limit)) => match tokio::time::timeout_at(at, fut).await {
                Ok(r) => r,
                Err(_) => Err(UpstreamError::Timeout(limit)),
            },
            _ => fut.await,
        };
        lease.member.record(&result, started.elapsed(), self.opts.backoff);
        result
    }

    fn deadline(&self) -> Option<Instant> {
        self.opts.deadline.map(|d| Instant::now() + d)
    }

    /// Probes `member` and records what it said: an answer marks it up, a failed connection or a 5xx down; no answer
    /// in time changes nothing (slow is not dead, see `health`).
    async fn probe(&self, member: &Member) -> Result<(), UpstreamError> {
        member.health().last_probe = Some(Instant::now());
        let timeout = self.opts.probe_timeout;
        let result = match tokio::time::timeout(timeout, member.upstream.probe()).await {
            Ok(r) => r,
            Err(_) => Err(UpstreamError::Timeout(timeout)),
        };
        let outcome = match &result {
            Ok(()) => {
                member.recover();
                "ok"
            }
            // Saturated (by this replica or by others sharing it), an upstream answers `/v1/models` late.
            Err(UpstreamError::Timeout(_)) => {
                tracing::debug!(upstream = %member.name, "probe not answered in time; the upstream is slow, kept");
                "timeout"
            }
            Err(e) => {
                member.fail(self.opts.backoff, e);
                "down"
            }
        };
        member.metrics.upstream_probes.with_label_values(&[&member.name, outcome]).inc();
        result
    }

    /// Probes, from start-up and forever, every upstream that is due: at once those never probed, down ones once their
    /// back-off has passed, the others every `probe_interval`. `serve` runs it beside the server.
    pub async fn watch(&self) {
        loop {
            let now = Instant::now();
            let due: Vec<&Arc<Member>> =
                self.members.iter().filter(|m| m.health().probe_due(now, self.opts.probe_interval)).collect();
            futures::future::join_all(due.into_iter().map(|m| self.probe(m))).await;
            tokio::time::sleep(PROBE_TICK).await;
        }
    }

    /// Every upstream's state as the prober and the traffic left it (what `/ready` reports). Reads state only: never
    /// waits on an upstream.
    pub fn status(&self) -> Vec<MemberStatus> {
        self.members
            .iter()
            .map(|m| {
                let h = m.health();
                MemberStatus {
                    name: m.name.clone(),
                    state: h.state,
                    inflight: m.inflight.load(Ordering::Relaxed),
                    failures: h.failures,
                    error: h.last_error.clone(),
                    no_logprobs: m.ignores_logprobs.load(Ordering::Relaxed),
                }
            })
            .collect()
    }
}

impl Upstream for Pool {
    fn chat(
        &self,
        body: UpstreamRequest,
        auth: Option<Arc<str>>,
    ) -> BoxFuture<'_, Result<ChatCompletion, UpstreamError>> {
        async move {
            let deadline = self.deadline();
            let asked = body.get("n").and_then(|n| n.as_u64()).unwrap_or(1);
            let wants = Wants {
                n: self.opts.learn_n && asked > 1,
                logprobs: body.get("logprobs").and_then(|l| l.as_bool()) == Some(true),
            };
            let call = per_upstream(|u: &dyn Upstream, (body, auth)| u.chat(body, auth));
            let (completion, lease) = self.with_failover(deadline, wants, (body, auth), call).await?;
            let got = completion.choices.len() as u64;
            if wants.logprobs && lease.member.note_logprobs(&completion) {
                tracing::info!(upstream = %lease.member.name,
                    "upstream returns no `logprobs`; requests that need them go to the others where they can");
            }
            if wants.n && got > 0 && got < asked && !lease.member.ignores_n.swap(true, Ordering::Relaxed) {
                tracing::info!(upstream = %lease.member.name, asked, got,
                    "upstream ignores `n`; its share of N fans out from now on");
            }
            Ok(completion)
        }
        .boxed()
    }

    fn chat_stream(
        &self,
        body: UpstreamRequest,
        auth: Option<Arc<str>>,
    ) -> BoxFuture<'_, Result<Streamed, UpstreamError>> {
        async move {
            // Failover covers opening the stream; a stream that breaks later is the caller's to handle. A stream
            // that needs `logprobs` (the online confidence stop) prefers the members known to return them.
            let deadline = self.deadline();
            let wants = Wants { n: false, logprobs: body.get("logprobs").and_then(|l| l.as_bool()) == Some(true) };
            let call = per_upstream(|u: &dyn Upstream, (body, auth)| u.chat_stream(body, auth));
            let (streamed, lease) = self.with_failover(deadline, wants, (body, auth), call).await?;
            Ok(match streamed {
                Streamed::Whole(c) => Streamed::Whole(c),
                Streamed::Chunks(chunks) => {
                    // The lease lives as long as the stream: it is in flight until dropped.
                    let backoff = self.opts.backoff;
                    Streamed::Chunks(
                        chunks
                            .inspect(move |item| {
                                if let Err(e) = item
                                    && e.says_down()
                                {
                                    lease.member.fail(backoff, e);
                                }
                            })
                            .boxed(),
                    )
                }
            })
        }
        .boxed()
    }

    fn forward(&self, req: Forward) -> BoxFuture<'_, Result<Forwarded, UpstreamError>> {
        self.forward_request(req).boxed()
    }

    fn models(&self, auth: Option<Arc<str>>) -> BoxFuture<'_, Result<Value, UpstreamError>> {
        async move {
            let call = per_upstream(|u: &dyn Upstream, auth| u.models(auth));
            self.with_failover(None, Wants::default(), auth, call).await.map(|(v, _)| v)
        }
        .boxed()
    }

    /// N over the routable members, or with `learn_n` over those that honour `n` (none: no share, every candidate
    /// fans out).
    fn shares(&self, n: u32) -> Vec<u32> {
        if self.opts.learn_n {
            return match self.routable_for_n() {
                0 if self.members.iter().any(|m| self.skips_n(m)) => Vec::new(),
                k => split(n, k.max(1)),
            };
        }
        split(n, self.routable().max(1))
    }
}

/// What a request needs of the member that serves it.
#[derive(Clone, Copy, Debug, Default)]
struct Wants {
    /// Several choices from one request (`n`).
    n: bool,
    /// Token log-probabilities (`logprobs: true`).
    logprobs: bool,
}

/// Pins a closure to the higher-ranked signature `with_failover` takes (closures do not infer it alone).
fn per_upstream<A, T, F>(f: F) -> F
where
    F: for<'a> Fn(&'a dyn Upstream, A) -> BoxFuture<'a, Result<T, UpstreamError>>,
{
    f
}

/// `n` split into at most `parts` near-equal counts, larger first (8 over 3: 3, 3, 2).
pub fn split(n: u32, parts: usize) -> Vec<u32> {
    let parts = u32::try_from(parts).unwrap_or(u32::MAX).clamp(1, n.max(1));
    (0..parts).map(|i| n / parts + u32::from(i < n % parts)).collect()
}

#[path = "pool_forward.rs"]
mod forward;

#[cfg(test)]
#[path = "pool_tests.rs"]
mod tests;

#[cfg(test)]
#[path = "pool_logprobs_tests.rs"]
mod logprobs_tests;
