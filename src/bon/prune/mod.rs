//! Speculative rejection (Sun et al., "Fast Best-of-N Decoding via Speculative Rejection", NeurIPS 2024): every
//! candidate is streamed from the upstream; whenever each live candidate has received `every` more content tokens
//! (one SSE content delta counts as one) or has finished, the partial answers are scored in one batch and only the
//! best `ceil(c × keep)` of the `c` competing candidates go on (at least one is stopped per round, never more than
//! leaves the number of choices asked for). Partial answers are scored through the model's prefix output when it
//! declares one (`reward::prefix`). With a confidence (`--prune-confidence`) a round stops only those of the bottom
//! candidates that are surely losing: behind the leader by more than the model's calibrated margin, or ranked below it
//! by the guard; a round may then stop none. A stopped candidate's stream is dropped, which closes its connection and
//! stops the upstream generating it. Rounds repeat until `keep_at_least` remain; the last one standing can be handed
//! to a streaming client live (`Live`).
//!
//! Content only: a candidate streaming tool calls neither holds up a round nor is stopped by one; it competes when
//! complete. The guard ranks repetitive partial answers below the others, so a loop is stopped early.
//!
//! The same loop serves the **online confidence stop** (DeepConf's online mode): with a threshold, each candidate's
//! group confidence is followed as its `logprobs` stream in (`select::confidence::Running`), and a candidate whose
//! lowest full-window group falls below the threshold is stopped at the upstream, as pruning stops one — never
//! leaving fewer than `MIN_LEFT` (or the choices asked for) in the running. With stop on agreement, the candidates
//! still generating are stopped as soon as the finished ones' vote can no longer change.

use std::{
    task::{Context, Poll},
    time::{Duration, Instant},
};

use futures::{FutureExt, StreamExt, future::BoxFuture};
use serde_json::Value;
use tokio::sync::mpsc;

mod round;
mod stops;

use round::{competing, round, round_due};
pub use round::{sentence_end, survivors};
pub use stops::{MIN_LEFT, Stops};
use stops::{agreed, unsure};

use super::{
    assemble::Assembly,
    plan::{Candidate, Plan},
};
use crate::{
    openai::{ChatCompletion, Usage},
    reward::Score,
    select::confidence::Running,
    upstream::{ChunkStream, Streamed, UpstreamError, UpstreamRequest},
};

/// Pruning settings of one call.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Prune {
    /// Content tokens between rounds.
    pub every: u32,
    /// Share of the competing candidates that go on after a round, in (0, 1): the most a round stops.
    pub keep: f64,
    /// The margin rule (`--prune-confidence`): of those, stop only a candidate the leader is ahead of by more than
    /// the model's calibrated margin for this confidence (or that the guard ranks below the leader). None: stop
    /// them all, whatever the gap.
    pub confidence: Option<f64>,
    /// Score a streaming candidate's text up to its last sentence end (`--prune-at sentence`), not mid-sentence.
    pub sentences: bool,
}

/// The last candidate standing, handed to a streaming client while it is still generating.
#[derive(Clone, Debug, PartialEq)]
pub enum Live {
    /// From now on this candidate is the answer: its text so far.
    Begin { id: String, created: u64, model: String, text: String },
    /// More of its content, as the upstream sent it.
    Delta(String),
}

/// Where `Live` events go.
pub type LiveTx = mpsc::UnboundedSender<Live>;

/// What pruning did.
#[derive(Debug, Default)]
pub struct Report {
    pub rounds: u32,
    /// Candidates the online confidence stop stopped.
    pub unconfident: u32,
    /// The upstream answered a streaming request with a whole completion (it does not stream).
    pub unstreamed: bool,
}

/// Why pruning gave up before it started: the upstream refused `stream: true`.
pub struct Refused(pub UpstreamError);

enum Phase<'a> {
    Opening(BoxFuture<'a, Result<Streamed, UpstreamError>>),
    Streaming(ChunkStream),
    Done(Result<ChatCompletion, UpstreamError>),
    Pruned,
}

struct Slot<'a> {
    phase: Phase<'a>,
    asm: Assembly,
    since_round: u64,
    latency: Duration,
    score: Option<f32>,
    /// The online confidence stop's view of its group confidence (None: the stop is off).
    running: Option<Running>,
    /// Stopped by the online confidence stop, not by a pruning round.
    unconfident: bool,
}

impl Slot<'_> {
    fn live(&self) -> bool {
        matches!(self.phase, Phase::Opening(_) | Phase::Streaming(_))
    }

    /// Finished with an answer and not stopped: selectable.
    fn finished_well(&self) -> bool {
        matches!(self.phase, Phase::Done(Ok(_)))
    }

    /// Competes in a round: streaming content, or finished well and not yet stopped.
    fn competes(&self) -> bool {
        match &self.phase {
            Phase::Streaming(_) => !self.asm.has_tool_calls(),
            Phase::Done(r) => r.is_ok(),
            _ => false,
        }
    }

    fn end(&mut self, result: Result<ChatCompletion, UpstreamError>, started: Instant) {
        self.phase = Phase::Done(result);
        self.latency = started.elapsed();
    }
}

enum Event {
    Chunk(Value),
    End,
    Whole(ChatCompletion),
    Failed(UpstreamError),
}

/// Generates `plan.n` streamed candidates, stopping them as `stops` says. `Err(Refused)`: the upstream refused to
/// stream; nothing was kept.
pub async fn candidates(
    generation: &super::Generation<'_>,
    scorer: &dyn Score,
    plan: &Plan,
    stops: Stops,
    live: Option<(&LiveTx, &str, u64)>,
) -> Result<(Vec<Candidate>, Report), Refused> {
    let started = Instant::now();
    let deadline = started + generation.candidate_timeout;
    let mut slots: Vec<Slot<'_>> = (0..plan.n)
        .map(|i| {
            let req =
                UpstreamRequest::new(plan.body.clone()).seed(plan.base_seed.wrapping_add(i64::from(i))).stream(true);
            Slot {
                phase: Phase::Opening(generation.upstream.chat_stream(req, plan.upstream_auth.clone())),
                asm: Assembly::default(),
                since_round: 0,
                latency: Duration::ZERO,
                score: None,
                running: stops
                    .confidence_below
                    .map(|_| Running::new(plan.select.confidence_window, plan.select.confidence_top_k as usize)),
                unconfident: false,
            }
        })
        .collect();
    let mut report = Report::default();
    let mut pruning = stops.prune;
    let mut live_index: Option<usize> = None;
    let mut straggle_at: Option<Instant> = None;
    let mut cursor = 0;
    let half = plan.n.div_ceil(2) as usize;
    while slots.iter().any(Slot::live) {
        let until = straggle_at.map_or(deadline, |t| t.min(deadline));
        let next = std::future::poll_fn(|cx| poll_slots(&mut slots, &mut cursor, cx));
        let Ok((i, event)) = tokio::time::timeout_at(until.into(), next).await else {
            if out_of_time(&mut slots, &mut straggle_at, plan, generation, deadline, started) {
                break;
            }
            continue;
        };
        let ended = matches!(event, Event::End | Event::Whole(_));
        apply(&mut slots, i, event, live.map(|(tx, _, _)| tx).filter(|_| live_index == Some(i)), &mut report, started)?;
        if let Some(threshold) = stops.confidence_below
            && unsure(&mut slots, i, threshold, plan, started)
        {
            report.unconfident += 1;
        }
        if ended && plan.stops_on_agreement() && agreed(&slots, plan) {
            for slot in slots.iter_mut().filter(|s| s.live()) {
                slot.end(Err(UpstreamError::Agreed), started);
            }
        }
        if straggle_at.is_none()
            && let Some(wait) = plan.straggler_wait
            && slots.iter().filter(|s| s.finished_well()).count() >= half
        {
            straggle_at = Some(Instant::now() + wait);
        }
        if let Some(prune) = pruning
            && round_due(&slots, prune.every, plan.keep_at_least)
        {
            match round(&mut slots, scorer, plan, prune, started, generation.metrics).await {
                Ok(()) => report.rounds += 1,
                Err(reason) => {
                    tracing::warn!(error = %reason, "scoring partial answers failed; the candidates run to the end");
                    pruning = None;
                }
            }
        }
        if live_index.is_none()
            && let Some(live) = live
        {
            live_index = go_live(&slots, live);
        }
    }
    Ok((finish(slots, generation), report))
}

/// The deadline or the straggler wait passed. Past the straggler wait the live candidates are stopped as
/// stragglers, past the deadline as timed out; true when the loop is over. A straggler wait is lifted instead when
/// no candidate is left finished (pruning stopped them since): the live ones are all there is to choose from.
fn out_of_time(
    slots: &mut [Slot<'_>],
    straggle_at: &mut Option<Instant>,
    plan: &Plan,
    generation: &super::Generation<'_>,
    deadline: Instant,
    started: Instant,
) -> bool {
    let cause = match (*straggle_at, plan.straggler_wait) {
        (Some(at), Some(wait)) if at < deadline => UpstreamError::Straggler(wait),
        _ => UpstreamError::Timeout(generation.candidate_timeout),
    };
    if matches!(cause, UpstreamError::Straggler(_)) && !slots.iter().any(Slot::finished_well) {
        *straggle_at = None;
        return false;
    }
    for slot in slots.iter_mut().filter(|s| s.live()) {
        slot.end(Err(cause.clone()), started);
    }
    true
}

/// Applies one slot's event: a chunk adds to its text (sent on to `live` when it is the candidate being streamed to
/// the client), an end or a whole answer finishes it, a failure ends it — or refuses the call when the upstream
/// will not stream at all.
fn apply(
    slots: &mut [Slot<'_>],
    i: usize,
    event: Event,
    live: Option<&LiveTx>,
    report: &mut Report,
    started: Instant,
) -> Result<(), Refused> {
    match event {
        Event::Chunk(chunk) => {
            let text = slots[i].asm.push(&chunk);
            if let Some(running) = slots[i].running.as_mut()
                && let Some(entries) = chunk.pointer("/choices/0/logprobs/content").and_then(Value::as_array)
            {
                running.push(entries);
            }
            if !text.is_empty() {
                slots[i].since_round += 1;
                if let Some(tx) = live {
                    // A client gone mid-stream drops this whole future; a closed channel changes nothing here.
                    let _ = tx.send(Live::Delta(text));
                }
            }
        }
        Event::End => {
            let result = slots[i].asm.finish();
            slots[i].end(result, started);
        }
        Event::Whole(c) => {
            report.unstreamed = true;
            slots[i].end(Ok(c), started);
        }
        Event::Failed(e) => {
            if matches!(slots[i].phase, Phase::Opening(_)) && refuses_streaming(&e) {
                return Err(Refused(e));
            }
            slots[i].end(Err(e), started);
        }
    }
    Ok(())
}

/// Once one candidate is left, streaming and competing, it is handed to the client: its text so far now, the rest
/// as it comes. Its index, when it began.
fn go_live(slots: &[Slot<'_>], (tx, id, created): (&LiveTx, &str, u64)) -> Option<usize> {
    let [only] = competing(slots)[..] else { return None };
    if !matches!(slots[only].phase, Phase::Streaming(_)) || slots.iter().enumerate().any(|(k, s)| k != only && s.live())
    {
        return None;
    }
    let asm = &slots[only].asm;
    let begin =
        Live::Begin { id: id.to_owned(), created, model: asm.model().to_owned(), text: asm.content().to_owned() };
    let _ = tx.send(begin);
    Some(only)
}

/// A 4xx that is about streaming itself (its message or `param` names `stream`): the call can run without it. Any
/// other 4xx (an unknown model, a bad parameter) fails the candidate, and the request, as it would unstreamed.
fn refuses_streaming(e: &UpstreamError) -> bool {
    match e {
        UpstreamError::Status { message, param, .. } if e.is_client_error() => {
            message.to_ascii_lowercase().contains("stream") || param.as_deref().is_some_and(|p| p.contains("stream"))
        }
        _ => false,
    }
}

/// Polls every live slot once, starting after the last one that yielded (so that none starves).
fn poll_slots(slots: &mut [Slot<'_>], cursor: &mut usize, cx: &mut Context<'_>) -> Poll<(usize, Event)> {
    let n = slots.len();
    for k in 0..n {
        let i = (*cursor + k) % n;
        let event = loop {
            match &mut slots[i].phase {
                Phase::Opening(open) => match open.poll_unpin(cx) {
                    Poll::Ready(Ok(Streamed::Chunks(stream))) => slots[i].phase = Phase::Streaming(stream),
                    Poll::Ready(Ok(Streamed::Whole(c))) => break Some(Event::Whole(c)),
                    Poll::Ready(Err(e)) => break Some(Event::Failed(e)),
                    Poll::Pending => break None,
                },
                Phase::Streaming(stream) => match stream.poll_next_unpin(cx) {
                    Poll::Ready(Some(Ok(chunk))) => break Some(Event::Chunk(chunk)),
                    Poll::Ready(Some(Err(e))) => break Some(Event::Failed(e)),
                    Poll::Ready(None) => break Some(Event::End),
                    Poll::Pending => break None,
                },
                Phase::Done(_) | Phase::Pruned => break None,
            }
        };
        if let Some(event) = event {
            *cursor = i + 1;
            return Poll::Ready((i, event));
        }
    }
    Poll::Pending
}

/// The slots as candidates, counted in `bon_candidates_total`. A stopped candidate keeps its partial answer, its
/// last (prefix) score and an estimated usage: the prompt as the finished ones report it, one token per delta.
fn finish(slots: Vec<Slot<'_>>, generation: &super::Generation<'_>) -> Vec<Candidate> {
    let prompt_tokens = slots
        .iter()
        .find_map(|s| match &s.phase {
            Phase::Done(Ok(c)) => c.usage.map(|u| u.prompt_tokens),
            _ => None,
        })
        .unwrap_or(0);
    slots
        .into_iter()
        .map(|s| match s.phase {
            Phase::Pruned => {
                let mut partial = s.asm.completion();
                let tokens = s.asm.tokens;
                partial.usage =
                    Some(Usage { prompt_tokens, completion_tokens: tokens, total_tokens: prompt_tokens + tokens });
                generation.count_outcome(if s.unconfident { "unconfident" } else { "pruned" }, s.latency);
                let mut c = Candidate::new(Ok(partial), s.latency);
                c.pruned = !s.unconfident;
                c.unconfident = s.unconfident;
                c.score = s.score;
                c
            }
            Phase::Done(result) => {
                generation.count(&result, s.latency);
                Candidate::new(result, s.latency)
            }
            Phase::Opening(_) | Phase::Streaming(_) => {
                // The loop only ends once no slot is live.
                let e = UpstreamError::Transport("candidate abandoned".into());
                Candidate::new(Err(e), s.latency)
            }
        })
        .collect()
}
