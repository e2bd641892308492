//! Generating the N candidates: N concurrent requests with seeds `base + i` (fan-out), or one request with `n = N`
//! for upstreams that sample several choices from one prompt (llama.cpp's server, vLLM, SGLang share the prompt's
//! KV cache across them), split over the healthy upstreams of a pool. `auto` tries native `n` and fans out whatever
//! did not come back; an upstream seen to ignore `n` (Ollama returns one choice) is remembered by the pool, per
//! member, and gets fan-out from then on.

use std::{
    sync::Arc,
    time::{Duration, Instant},
};

use futures::{FutureExt, StreamExt, stream::FuturesUnordered};

use super::plan::{Candidate, Plan};
use crate::{
    metrics::Metrics,
    openai::ChatCompletion,
    select::ConfidenceHistory,
    upstream::{Upstream, UpstreamError, UpstreamN, UpstreamRequest},
};

/// How candidates are requested, and what was learnt about the upstream.
pub struct Generation<'a> {
    pub upstream: &'a dyn Upstream,
    pub mode: UpstreamN,
    pub candidate_timeout: Duration,
    pub metrics: &'a Metrics,
    /// Recent candidates' confidence per model (the online confidence stop's thresholds).
    pub confidence: &'a ConfidenceHistory,
}

impl Generation<'_> {
    /// Exactly `plan.n` candidates, in index order.
    pub async fn candidates(&self, plan: &Plan) -> Vec<Candidate> {
        // Auto asks natively too: the pool remembers, per member, which ignore `n` (its `shares` leave them out).
        if self.mode == UpstreamN::Fanout || plan.n == 1 {
            return self.fan_out(plan, (0..plan.n).collect(), 0).await;
        }
        let mut slots = self.native(plan).await;
        let missing: Vec<u32> = (0..plan.n).filter(|&i| slots[i as usize].is_none()).collect();
        if !missing.is_empty() {
            let answered = slots.iter().flatten().filter(|c| c.result.is_ok()).count();
            for (i, c) in missing.iter().zip(self.fan_out(plan, missing.clone(), answered).await) {
                slots[*i as usize] = Some(c);
            }
        }
        slots.into_iter().flatten().collect()
    }

    /// Candidates `indices`, one request each, concurrently; `answered` of the others already succeeded. With
    /// `plan.straggler_wait`, once half of all N candidates (rounded up) have answered, the others get that long to
    /// finish and are then stopped.
    async fn fan_out(&self, plan: &Plan, indices: Vec<u32>, answered: usize) -> Vec<Candidate> {
        let started = Instant::now();
        let mut calls: FuturesUnordered<_> = indices
            .iter()
            .enumerate()
            .map(|(slot, &i)| {
                let req = UpstreamRequest::new(plan.body.clone()).seed(plan.base_seed.wrapping_add(i64::from(i)));
                self.call(req, &plan.upstream_auth).map(move |r| (slot, r))
            })
            .collect();
        let mut got: Vec<Option<(Result<ChatCompletion, UpstreamError>, Duration)>> =
            indices.iter().map(|_| None).collect();
        let half = plan.n.div_ceil(2) as usize;
        let mut answered = answered;
        let mut cut_at: Option<tokio::time::Instant> = None;
        // Stop on agreement: only when this fan-out holds every candidate (the vote sees them all).
        let mut ballots: Option<Vec<String>> =
            (plan.stops_on_agreement() && indices.len() == plan.n as usize).then(Vec::new);
        let mut finished = 0;
        let mut agreed = false;
        loop {
            let next = match cut_at {
                Some(at) => match tokio::time::timeout_at(at, calls.next()).await {
                    Ok(next) => next,
                    Err(_) => break,
                },
                None => calls.next().await,
            };
            let Some((slot, (result, latency))) = next else { break };
            if result.is_ok() {
                answered += 1;
            }
            let result = result.and_then(first_choice_only);
            finished += 1;
            if let (Some(ballots), Ok(c)) = (ballots.as_mut(), &result) {
                ballots.extend(clean_answer(c, plan));
                if crate::select::vote::decided(ballots.iter().map(String::as_str), indices.len() - finished) {
                    got[slot] = Some((result, latency));
                    agreed = finished < indices.len();
                    break;
                }
            }
            got[slot] = Some((result, latency));
            if cut_at.is_none()
                && answered >= half
                && let Some(wait) = plan.straggler_wait
            {
                cut_at = Some(tokio::time::Instant::now() + wait);
            }
        }
        drop(calls);
        got.into_iter()
            .map(|slot| {
                let (result, latency) = slot.unwrap_or_else(|| {
                    let wait = plan.straggler_wait.unwrap_or_default();
                    let why = if agreed { UpstreamError::Agreed } else { UpstreamError::Straggler(wait) };
                    (Err(why), started.elapsed())
                });
                self.count(&result, latency);
                Candidate::new(result, latency)
            })
            .collect()
    }

    /// Native `n`: one request per share of N (a pool splits N over its healthy upstreams; one upstream gets all
    /// of it). The share starting at candidate i is asked with `seed = base + i` and `n` = its size; its choices
    /// become candidates i, i+1, ... `Native` mode fills a short or failed share with failed candidates, so that
    /// `x-bon-n` never claims more than was generated; `Auto` leaves those slots empty (None) for fan-out, and an
    /// upstream that answered with fewer choices than asked is remembered as one that ignores `n`.
    async fn native(&self, plan: &Plan) -> Vec<Option<Candidate>> {
        let mut from = 0u32;
        let requests = self.upstream.shares(plan.n).into_iter().filter(|&k| k > 0).map(|k| {
            let req = UpstreamRequest::new(plan.body.clone()).seed(plan.base_seed.wrapping_add(i64::from(from))).n(k);
            from += k;
            self.call(req, &plan.upstream_auth).map(move |r| (k, r))
        });
        let answers = futures::future::join_all(requests.collect::<Vec<_>>()).await;
        let mut slots: Vec<Option<Candidate>> = Vec::with_capacity(plan.n as usize);
        for (asked, (result, latency)) in answers {
            let mut got: Vec<Option<Candidate>> = match result {
                Ok(completion) => split_choices(completion)
                    .into_iter()
                    .take(asked as usize)
                    .map(|c| Some(Candidate::new(Ok(c), latency)))
                    .collect(),
                Err(e) if self.mode == UpstreamN::Native => {
                    (0..asked).map(|_| Some(Candidate::new(Err(e.clone()), latency))).collect()
                }
                Err(_) => Vec::new(),
            };
            let short = UpstreamError::Decode(format!("asked for n={asked}, the upstream returned fewer choices"));
            while got.len() < asked as usize {
                got.push((self.mode == UpstreamN::Native).then(|| Candidate::new(Err(short.clone()), latency)));
            }
            for c in got.iter().flatten() {
                self.count(&c.result, latency);
            }
            slots.extend(got);
        }
        slots.resize_with(plan.n as usize, || None);
        slots
    }

    async fn call(
        &self,
        req: UpstreamRequest,
        auth: &Option<Arc<str>>,
    ) -> (Result<ChatCompletion, UpstreamError>, Duration) {
        let started = Instant::now();
        let call = self.upstream.chat(req, auth.clone());
        let result = match tokio::time::timeout(self.candidate_timeout, call).await {
            Ok(r) => r,
            Err(_) => Err(UpstreamError::Timeout(self.candidate_timeout)),
        };
        if let Err(e) = &result {
            tracing::debug!(error = %e, "candidate failed");
        }
        (result, started.elapsed())
    }

    pub(super) fn count(&self, result: &Result<ChatCompletion, UpstreamError>, latency: Duration) {
        let outcome = match result {
            Ok(_) => "ok",
            Err(e) => e.kind(),
        };
        self.count_outcome(outcome, latency);
    }

    /// One candidate's fate in `bon_candidates_total` and `bon_candidate_duration_seconds`.
    pub(super) fn count_outcome(&self, outcome: &str, latency: Duration) {
        self.metrics.candidates.with_label_values(&[outcome]).inc();
        self.metrics.candidate_duration.with_label_values(&[outcome]).observe(latency.as_secs_f64());
    }
}

/// The answer a finished candidate votes with, as the vote will count it: none when it has none, or when the guard
/// is on and flags it (a flagged candidate only votes when no clean one has an answer, which cannot be known yet).
pub(super) fn clean_answer(c: &ChatCompletion, plan: &Plan) -> Option<String> {
    if plan.guard && crate::select::guard::Flags::of(c).tier() > 0 {
        return None;
    }
    plan.select.answer.extract(&super::response_message(c).text())
}

/// A fan-out candidate is its first choice (an upstream that honours `n` was not asked for more).
fn first_choice_only(mut c: ChatCompletion) -> Result<ChatCompletion, UpstreamError> {
    c.choices.truncate(1);
    Ok(c)
}

/// One completion per choice. Usage stays on the first so that sums count it once.
fn split_choices(mut c: ChatCompletion) -> Vec<ChatCompletion> {
    let choices = std::mem::take(&mut c.choices);
    let base = c;
    choices
        .into_iter()
        .enumerate()
        .map(|(i, choice)| {
            let mut one = base.clone();
            if i > 0 {
                one.usage = None;
            }
            one.choices = vec![choice];
            one
        })
        .collect()
}
