//! The tokenization stage (text-embeddings-inference's router/backend split): a small pool of threads of its own
//! (`--reward-tokenizer-threads`) renders and tokenizes each scoring call, so the scoring thread only runs graphs and
//! tokenizing one request never delays another's inference. A call's conversation is serialised to JSON for the
//! chat template once — not once per candidate, and not again in each pruning round (the last few conversations are
//! kept, by identity); the template then renders each candidate's whole text, as it must. A panic while encoding
//! fails that call only, and is counted.

use std::{
    panic::AssertUnwindSafe,
    sync::{Arc, Mutex},
    thread::JoinHandle,
    time::Instant,
};

use serde_json::Value;
use tokio::sync::{mpsc, oneshot};

use super::{RewardError, ScoreInput, tokenize::Encoded, tokenize::Encoder, worker::Ready};
use crate::{metrics::Metrics, openai::Message};

/// One scoring call, as submitted.
pub struct Job {
    pub inputs: Vec<ScoreInput>,
    /// Partial answers (a pruning round): read the prefix output, when the graph has one.
    pub partial: bool,
    pub span: tracing::Span,
    pub submitted: Instant,
    pub reply: oneshot::Sender<Result<Vec<f32>, RewardError>>,
}

/// Conversations recently serialised, by identity (the `Arc` is held, so an address is never reused while cached).
const KEPT: usize = 32;

type Serialised = (Arc<[Message]>, Arc<Vec<Value>>);

/// Starts `threads` tokenizer threads that take jobs from `rx` and hand them, encoded, to the scoring thread.
pub fn start(
    threads: usize,
    rx: mpsc::Receiver<Job>,
    encoder: Arc<Encoder>,
    scoring: mpsc::Sender<Ready>,
    metrics: Arc<Metrics>,
) -> Result<Vec<JoinHandle<()>>, RewardError> {
    let rx = Arc::new(Mutex::new(rx));
    let kept: Arc<Mutex<Vec<Serialised>>> = Arc::default();
    (0..threads.max(1))
        .map(|k| {
            let (rx, encoder, scoring, metrics, kept) =
                (rx.clone(), encoder.clone(), scoring.clone(), metrics.clone(), kept.clone());
            std::thread::Builder::new()
                .name(format!("bon-tokenize-{k}"))
                .spawn(move || serve(&rx, &encoder, &scoring, &metrics, &kept))
                .map_err(|e| RewardError::Load(format!("cannot start tokenizer thread: {e}")))
        })
        .collect()
}

fn serve(
    rx: &Mutex<mpsc::Receiver<Job>>,
    encoder: &Encoder,
    scoring: &mpsc::Sender<Ready>,
    metrics: &Metrics,
    kept: &Mutex<Vec<Serialised>>,
) {
    loop {
        // One thread waits on the queue at a time; the lock is released before encoding.
        let next = match rx.lock() {
            Ok(mut rx) => rx.blocking_recv(),
            Err(_) => None,
        };
        let Some(job) = next else { break };
        if job.reply.is_closed() {
            continue;
        }
        let started = Instant::now();
        let encoded = {
            let _enter = job.span.clone().entered();
            std::panic::catch_unwind(AssertUnwindSafe(|| encode_all(encoder, &job.inputs, kept)))
        };
        metrics.reward_tokenize.observe(started.elapsed().as_secs_f64());
        let seqs = match encoded {
            Ok(Ok(seqs)) => seqs,
            Ok(Err(e)) => {
                metrics.reward_errors.inc();
                let _ = job.reply.send(Err(e));
                continue;
            }
            Err(_) => {
                metrics.reward_worker_panics.inc();
                tracing::error!("a tokenizer thread panicked encoding a scoring call; that call failed");
                let _ = job.reply.send(Err(RewardError::Input("encoding panicked".into())));
                continue;
            }
        };
        let ready = Ready {
            seqs,
            partial: job.partial,
            span: job.span,
            submitted: job.submitted,
            ready_at: Instant::now(),
            reply: job.reply,
        };
        if scoring.blocking_send(ready).is_err() {
            break;
        }
    }
}

/// Every input encoded (the first error fails the call), each distinct conversation serialised once.
fn encode_all(
    encoder: &Encoder,
    inputs: &[ScoreInput],
    kept: &Mutex<Vec<Serialised>>,
) -> Result<Vec<Encoded>, RewardError> {
    if !encoder.has_template() {
        return inputs.iter().map(|i| encoder.encode(i)).collect();
    }
    inputs
        .iter()
        .map(|input| {
            let messages = serialised(&input.conversation, kept)?;
            encoder.encode_with(input, Some(&messages))
        })
        .collect()
}

/// The conversation's messages as JSON values, from the kept ones when it was serialised lately.
fn serialised(conversation: &Arc<[Message]>, kept: &Mutex<Vec<Serialised>>) -> Result<Arc<Vec<Value>>, RewardError> {
    if let Ok(kept) = kept.lock()
        && let Some((_, values)) = kept.iter().find(|(c, _)| Arc::ptr_eq(c, conversation))
    {
        return Ok(values.clone());
    }
    let values = conversation
        .iter()
        .map(|m| serde_json::to_value(m).map_err(|e| RewardError::Input(e.to_string())))
        .collect::<Result<Vec<_>, _>>()?;
    let values = Arc::new(values);
    if let Ok(mut kept) = kept.lock() {
        if kept.len() >= KEPT {
            kept.remove(0);
        }
        kept.push((conversation.clone(), values.clone()));
    }
    Ok(values)
}
