//! The scoring thread: owns the tokenizer and the `ort::Session`, takes jobs over a channel (TEI's backend-thread
//! pattern) and merges jobs waiting in the queue into one batched run, so concurrent requests share a run.

use std::{borrow::Cow, sync::Arc, time::Instant};

use ort::{
    session::{RunOptions, Session, SessionInputValue},
    value::{Tensor, TensorElementType},
};
use tokio::sync::{mpsc, oneshot};

use super::{
    RewardError, ScoreInput,
    batch::{self, Batching},
    runtime::Opened,
    tokenize::{Encoded, Encoder, pad},
};
use crate::metrics::Metrics;

/// One request's candidates to score.
pub struct Job {
    pub inputs: Vec<ScoreInput>,
    pub span: tracing::Span,
    pub reply: oneshot::Sender<Result<Vec<f32>, RewardError>>,
}

/// The ONNX session plus what was learnt about its graph at load.
pub struct Graph {
    session: Session,
    run_options: RunOptions,
    token_type_ids: bool,
    position_ids: bool,
    output: String,
    pad_id: Option<u32>,
}

const KNOWN_INPUTS: [&str; 4] = ["input_ids", "attention_mask", "token_type_ids", "position_ids"];

impl Graph {
    /// Inspects the graph's inputs and outputs once.
    pub fn new(opened: Opened, output: Option<&str>, pad_id: Option<u32>) -> Result<Self, RewardError> {
        let Opened { session, run_options, .. } = opened;
        let names: Vec<&str> = session.inputs().iter().map(|i| i.name()).collect();
        for name in &names {
            if !KNOWN_INPUTS.contains(name) {
                return Err(RewardError::Load(format!(
                    "graph input `{name}` is not supported (expected some of {KNOWN_INPUTS:?})"
                )));
            }
        }
        for needed in ["input_ids", "attention_mask"] {
            if !names.contains(&needed) {
                return Err(RewardError::Load(format!("graph has no `{needed}` input (inputs: {names:?})")));
            }
        }
        for input in session.inputs() {
            if input.dtype().tensor_type() != Some(TensorElementType::Int64) {
                return Err(RewardError::Load(format!("graph input `{}` must be int64", input.name())));
            }
        }
        let outputs: Vec<&str> = session.outputs().iter().map(|o| o.name()).collect();
        let output = match output {
            Some(name) if outputs.contains(&name) => name.to_owned(),
            Some(name) => {
                return Err(RewardError::Load(format!(
                    "--reward-output `{name}` is not an output (outputs: {outputs:?})"
                )));
            }
            None if outputs.contains(&"logits") => "logits".to_owned(),
            None if outputs.len() == 1 => outputs[0].to_owned(),
            None => {
                return Err(RewardError::Load(format!(
                    "several outputs and none named `logits`; pick one with --reward-output (outputs: {outputs:?})"
                )));
            }
        };
        if let Some(o) = session.outputs().iter().find(|o| o.name() == output)
            && o.dtype().tensor_type() != Some(TensorElementType::Float32)
        {
            return Err(RewardError::Load(format!("output `{output}` must be float32")));
        }
        Ok(Self {
            token_type_ids: names.contains(&"token_type_ids"),
            position_ids: names.contains(&"position_ids"),
            session,
            run_options,
            output,
            pad_id,
        })
    }

    /// Scores encoded sequences: one run for all of them, or one run each when the model has no pad id.
    pub fn run(&mut self, seqs: &[&Encoded]) -> Result<Vec<f32>, RewardError> {
        match self.pad_id {
            Some(pad_id) => self.run_padded(seqs, pad_id),
            None => {
                let mut scores = Vec::with_capacity(seqs.len());
                for seq in seqs {
                    scores.extend(self.run_padded(std::slice::from_ref(seq), 0)?);
                }
                Ok(scores)
            }
        }
    }

    fn run_padded(&mut self, seqs: &[&Encoded], pad_id: u32) -> Result<Vec<f32>, RewardError> {
        let b = pad(seqs, pad_id);
        let shape = [b.rows, b.width];
        let tensor = |data: Vec<i64>| -> Result<SessionInputValue<'static>, RewardError> {
            Ok(Tensor::from_array((shape, data)).map_err(run_err)?.into())
        };
        let mut inputs: Vec<(Cow<'static, str>, SessionInputValue<'static>)> =
            vec![("input_ids".into(), tensor(b.input_ids)?), ("attention_mask".into(), tensor(b.attention_mask)?)];
        if self.token_type_ids {
            inputs.push(("token_type_ids".into(), tensor(b.token_type_ids)?));
        }
        if self.position_ids {
            inputs.push(("position_ids".into(), tensor(b.position_ids)?));
        }
        let outputs = self.session.run_with_options(inputs, &self.run_options).map_err(run_err)?;
        let value = outputs
            .get(&self.output)
            .ok_or_else(|| RewardError::Runtime(format!("run produced no `{}`", self.output)))?;
        let (out_shape, data) = value.try_extract_tensor::<f32>().map_err(run_err)?;
        // [rows] or [rows, k]: the reward is column 0.
        let stride = match out_shape.len() {
            1 => 1,
            2 => usize::try_from(out_shape[1]).unwrap_or(0),
            _ => 0,
        };
        if stride == 0 || data.len() != b.rows * stride {
            return Err(RewardError::Runtime(format!("unexpected output shape {out_shape:?} for {} rows", b.rows)));
        }
        Ok((0..b.rows).map(|r| data[r * stride]).collect())
    }
}

fn run_err(e: ort::Error) -> RewardError {
    RewardError::Runtime(e.to_string())
}

/// The thread's loop: runs until every sender is gone.
pub fn run(mut rx: mpsc::Receiver<Job>, encoder: Encoder, mut graph: Graph, batching: Batching, metrics: Arc<Metrics>) {
    while let Some(first) = rx.blocking_recv() {
        let mut jobs = vec![first];
        let mut rows = jobs[0].inputs.len();
        // Merge what is already waiting, up to the batch bound.
        while rows < batching.max_batch {
            match rx.try_recv() {
                Ok(job) => {
                    rows += job.inputs.len();
                    jobs.push(job);
                }
                Err(_) => break,
            }
        }
        // A job whose caller is gone (client disconnected) is not worth a run.
        jobs.retain(|j| !j.reply.is_closed());
        if jobs.is_empty() {
            continue;
        }
        score_jobs(jobs, &encoder, &mut graph, batching, &metrics);
    }
    tracing::debug!("reward worker stopped");
}

fn score_jobs(jobs: Vec<Job>, encoder: &Encoder, graph: &mut Graph, batching: Batching, metrics: &Metrics) {
    let started = Instant::now();
    // Encode per job: one bad input fails its own job, not its neighbours in the batch.
    let mut ready: Vec<(Job, Vec<Encoded>)> = Vec::with_capacity(jobs.len());
    for job in jobs {
        let _enter = job.span.clone().entered();
        match job.inputs.iter().map(|i| encoder.encode(i)).collect::<Result<Vec<_>, _>>() {
            Ok(seqs) => ready.push((job, seqs)),
            Err(e) => {
                metrics.reward_errors.inc();
                let _ = job.reply.send(Err(e));
            }
        }
    }
    let all: Vec<&Encoded> = ready.iter().flat_map(|(_, seqs)| seqs.iter()).collect();
    let merged = run_buckets(graph, &all, batching, metrics);
    metrics.reward_duration.observe(started.elapsed().as_secs_f64());
    match merged {
        Ok(scores) => {
            let mut at = 0;
            for (job, seqs) in ready {
                let _ = job.reply.send(Ok(scores[at..at + seqs.len()].to_vec()));
                at += seqs.len();
            }
        }
        // A merged run failed: run each job alone so that one job's bad input does not fail the others.
        Err(e) if ready.len() > 1 => {
            tracing::warn!(error = %e, jobs = ready.len(), "merged reward run failed; retrying jobs one by one");
            for (job, seqs) in ready {
                let result = run_buckets(graph, &seqs.iter().collect::<Vec<_>>(), batching, metrics);
                if result.is_err() {
                    metrics.reward_errors.inc();
                }
                let _ = job.reply.send(result);
            }
        }
        Err(e) => {
            metrics.reward_errors.inc();
            for (job, _) in ready {
                let _ = job.reply.send(Err(e.clone()));
            }
        }
    }
}

/// Runs `seqs` in length buckets (`batch::plan`) and returns their scores in the order given.
fn run_buckets(
    graph: &mut Graph,
    seqs: &[&Encoded],
    batching: Batching,
    metrics: &Metrics,
) -> Result<Vec<f32>, RewardError> {
    let lengths: Vec<usize> = seqs.iter().map(|s| s.ids.len()).collect();
    let mut scores = vec![0.0; seqs.len()];
    for run in batch::plan(&lengths, batching.max_batch, batching.max_padding) {
        let chunk: Vec<&Encoded> = run.iter().map(|&i| seqs[i]).collect();
        let width = run.iter().map(|&i| lengths[i]).max().unwrap_or(0);
        let real: usize = run.iter().map(|&i| lengths[i]).sum();
        metrics.reward_batch.observe(run.len() as f64);
        metrics.reward_padding.observe(batch::padding_share(real, width * run.len()));
        for (&i, score) in run.iter().zip(graph.run(&chunk)?) {
            scores[i] = score;
        }
    }
    Ok(scores)
}
