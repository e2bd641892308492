//! The tokenization stage (text-embeddings-inference's router/backend split): a small pool of threads of its own
//! (`--reward-tokenizer-threads`) renders and tokenizes each scoring call, so the scoring thread only runs graphs and
//! tokenizing one request never delays another's inference. A call's conversation is serialised to JSON for the
//! chat template once — not once per candidate, and not again in each pruning round (the last few conversations are
//! kept, by identity: at most `KEPT` of them and `KEPT_BYTES` of their text); the template then renders each
//! candidate's whole text, as it must. A panic while encoding fails that call only, and is counted
//! (`bon_reward_worker_panics_total{thread="tokenizer"}`).

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

/// Conversations recently serialised, by identity (the `Arc` is held, so an address is never reused while cached): at
/// most this many, oldest out first,
const KEPT: usize = 32;
/// and at most this many bytes of text in all (a conversation larger than that is serialised for its call only).
const KEPT_BYTES: usize = 4 << 20;

/// A kept conversation, its messages as JSON, and their text's size in bytes.
type Serialised = (Arc<[Message]>, Arc<Vec<Value>>, usize);

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
                metrics.reward_worker_panics.with_label_values(&["tokenizer"]).inc();
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
        && let Some((_, values, _)) = kept.iter().find(|(c, _, _)| Arc::ptr_eq(c, conversation))
    {
        return Ok(values.clone());
    }
    let values = conversation
        .iter()
        .map(|m| serde_json::to_value(m).map_err(|e| RewardError::Input(e.to_string())))
        .collect::<Result<Vec<_>, _>>()?;
    let values = Arc::new(values);
    let bytes = values.iter().map(text_bytes).sum::<usize>();
    if let Ok(mut kept) = kept.lock()
        && bytes <= KEPT_BYTES
    {
        while kept.len() >= KEPT || kept.iter().map(|k| k.2).sum::<usize>() + bytes > KEPT_BYTES {
            kept.remove(0);
        }
        kept.push((conversation.clone(), values.clone(), bytes));
    }
    Ok(values)
}

/// The bytes of text (strings and keys) in a JSON value: what holding it costs, near enough.
fn text_bytes(v: &Value) -> usize {
    match v {
        Value::String(s) => s.len(),
        Value::Array(items) => items.iter().map(text_bytes).sum(),
        Value::Object(map) => map.iter().map(|(k, v)| k.len() + text_bytes(v)).sum(),
        _ => 8,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::openai::Content;

    fn conversation(bytes: usize) -> Arc<[Message]> {
        let m =
            Message { role: "user".into(), content: Some(Content::Text("x".repeat(bytes))), extra: Default::default() };
        Arc::from(vec![m])
    }

    #[test]
    fn the_memo_is_bounded_in_count_and_in_bytes() {
        let kept = Mutex::new(Vec::new());
        let held = |kept: &Mutex<Vec<Serialised>>| {
            let k = kept.lock().unwrap();
            (k.len(), k.iter().map(|e| e.2).sum::<usize>())
        };
        // Many small ones: at most KEPT, the oldest out first, and a kept one is found by identity.
        let small: Vec<_> = (0..KEPT + 5).map(|_| conversation(100)).collect();
        for c in &small {
            serialised(c, &kept).unwrap();
        }
        assert_eq!(held(&kept).0, KEPT);
        assert!(Arc::ptr_eq(&kept.lock().unwrap()[0].0, &small[5]));
        let again = serialised(&small[KEPT + 4], &kept).unwrap();
        assert!(Arc::ptr_eq(&again, &kept.lock().unwrap()[KEPT - 1].1), "served from the memo");
        // Big ones: the bytes stay under KEPT_BYTES whatever the count.
        for _ in 0..5 {
            serialised(&conversation(KEPT_BYTES / 3), &kept).unwrap();
            assert!(held(&kept).1 <= KEPT_BYTES, "{:?}", held(&kept));
        }
        assert!(held(&kept).0 <= 3);
        // One larger than the whole budget is serialised for its call and not kept.
        let huge = conversation(KEPT_BYTES + 1);
        assert_eq!(serialised(&huge, &kept).unwrap()[0]["content"].as_str().unwrap().len(), KEPT_BYTES + 1);
        assert!(!kept.lock().unwrap().iter().any(|k| Arc::ptr_eq(&k.0, &huge)));
    }
}
