//! One member of the pool: its upstream, requests in flight, health and what it does with `n`; the lease that
//! counts a request in flight on it.

use std::{
    sync::{
        Arc, Mutex, MutexGuard, PoisonError,
        atomic::{AtomicBool, AtomicUsize, Ordering},
    },
    time::Duration,
};

use serde::Serialize;
use tokio::time::Instant;

use super::{
    Upstream, UpstreamError,
    health::{Backoff, Health, State},
};
use crate::{metrics::Metrics, openai::ChatCompletion};

/// One upstream of the pool.
pub struct Member {
    pub(super) name: String,
    pub(super) upstream: Arc<dyn Upstream>,
    pub(super) inflight: AtomicUsize,
    pub(super) health: Mutex<Health>,
    pub(super) metrics: Arc<Metrics>,
    /// Answered a request for several choices with fewer (see `PoolOptions::learn_n`).
    pub(super) ignores_n: AtomicBool,
    /// Answered a request for `logprobs` without any (older Ollama, some gateways); an answer with them clears it.
    pub(super) ignores_logprobs: AtomicBool,
}

impl Member {
    pub(super) fn health(&self) -> MutexGuard<'_, Health> {
        self.health.lock().unwrap_or_else(PoisonError::into_inner)
    }

    pub(super) fn fail(&self, backoff: Backoff, error: &UpstreamError) {
        let was_up = self.health().fail(Instant::now(), backoff, error.to_string());
        self.metrics.upstream_up.with_label_values(&[&self.name]).set(0);
        if was_up {
            tracing::warn!(upstream = %self.name, error = %error, "upstream marked down");
        }
    }

    pub(super) fn recover(&self) {
        let was_down = self.health().recover();
        self.metrics.upstream_up.with_label_values(&[&self.name]).set(1);
        if was_down {
            tracing::info!(upstream = %self.name, "upstream is back");
        }
    }

    /// Counts one finished request; an answer marks the upstream up (the best proof of health there is); a failure that
    /// says it is gone (`UpstreamError::says_down`) marks it down, and so does a timeout, unless it answered other
    /// requests meanwhile (busy, not dead). A busy answer (429, 408) is an answer: retried elsewhere, never down.
    pub(super) fn record<T>(&self, result: &Result<T, UpstreamError>, latency: Duration, backoff: Backoff) {
        let outcome = match result {
            Ok(_) => "ok",
            Err(e) => e.kind(),
        };
        self.metrics.upstream_requests.with_label_values(&[&self.name, outcome]).inc();
        self.metrics.upstream_duration.with_label_values(&[&self.name]).observe(latency.as_secs_f64());
        match result {
            Ok(_) => {
                let was_up = {
                    let mut h = self.health();
                    h.last_success = Some(Instant::now());
                    h.state == State::Up
                };
                if !was_up {
                    self.recover();
                }
            }
            Err(UpstreamError::Timeout(_)) if self.answered_since(Instant::now() - latency) => {
                tracing::debug!(upstream = %self.name, "a request timed out while the upstream answered others; kept");
            }
            Err(e) if e.says_down() || matches!(e, UpstreamError::Timeout(_)) => self.fail(backoff, e),
            Err(_) => {}
        }
    }

    /// Records whether an answer to a request for `logprobs` carried them; true when it newly says it ignores them.
    pub(super) fn note_logprobs(&self, completion: &ChatCompletion) -> bool {
        let carried = completion.choices.iter().any(|c| c.extra.get("logprobs").is_some_and(|l| !l.is_null()));
        let was = self.ignores_logprobs.swap(!carried, Ordering::Relaxed);
        !carried && !was
    }

    /// Whether it answered a request after `t`.
    fn answered_since(&self, t: Instant) -> bool {
        self.health().last_success.is_some_and(|s| s > t)
    }
}

/// A request in flight on one member; dropping it (finished, or the caller went away) releases it.
pub(super) struct Lease {
    pub(super) index: usize,
    pub(super) member: Arc<Member>,
}

impl Lease {
    pub(super) fn new(index: usize, member: Arc<Member>) -> Self {
        member.inflight.fetch_add(1, Ordering::Relaxed);
        member.metrics.upstream_inflight.with_label_values(&[&member.name]).inc();
        Self { index, member }
    }
}

impl Drop for Lease {
    fn drop(&mut self) {
        self.member.inflight.fetch_sub(1, Ordering::Relaxed);
        self.member.metrics.upstream_inflight.with_label_values(&[&self.member.name]).dec();
    }
}

/// One upstream's state for `/ready`.
#[derive(Clone, Debug, Serialize)]
pub struct MemberStatus {
    pub name: String,
    pub state: State,
    pub inflight: usize,
    pub failures: u32,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
    /// Known to answer requests for `logprobs` without them (reported only then).
    #[serde(skip_serializing_if = "std::ops::Not::not")]
    pub no_logprobs: bool,
}
