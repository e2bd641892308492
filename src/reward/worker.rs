//! The scoring thread: owns the `ort::Session`, takes calls the tokenization stage (`encoding`) has encoded, over a
//! channel (TEI's backend-thread pattern), and merges calls waiting in the queue into batched runs, so concurrent
//! requests share a run. A panic while scoring is caught here and the session restarted (`health`).

use std::{
    borrow::Cow,
    panic::AssertUnwindSafe,
    sync::Arc,
    time::{Duration, Instant},
};

use ort::{
    session::{RunOptions, Session, SessionInputValue},
    value::{Tensor, TensorElementType},
};
use tokio::sync::{mpsc, oneshot};

use super::{
    RewardError, ScoreInput,
    batch::{self, Batching},
    health::Health,
    runtime::Opened,
    tokenize::{Encoded, Encoder, pad},
};
use crate::{metrics::Metrics, openai::Message};

/// One scoring call, encoded by the tokenization stage (`encoding`).
pub struct Ready {
    pub seqs: Vec<Encoded>,
    /// Partial answers (a pruning round): read the prefix output, when the graph has one.
    pub partial: bool,
    pub span: tracing::Span,
    pub submitted: Instant,
    /// When encoding finished: the queue wait runs from here.
    pub ready_at: Instant,
    pub reply: oneshot::Sender<Result<Vec<f32>, RewardError>>,
}

/// One sequence's scores from one run: the whole-answer output and the prefix output (the same value when the graph
/// declares no prefix output).
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Scored {
    pub whole: f32,
    pub prefix: f32,
}

impl Scored {
    pub fn pick(self, partial: bool) -> f32 {
        if partial { self.prefix } else { self.whole }
    }
}

/// The ONNX session plus what was learnt about its graph at load.
pub struct Graph {
    session: Session,
    run_options: RunOptions,
    token_type_ids: bool,
    position_ids: bool,
    output: String,
    prefix_output: Option<String>,
    pad_id: Option<u32>,
}

const KNOWN_INPUTS: [&str; 4] = ["input_ids", "attention_mask", "token_type_ids", "position_ids"];

impl Graph {
    /// Inspects the graph's inputs and outputs once.
    pub fn new(
        opened: Opened,
        output: Option<&str>,
        prefix_output: Option<&str>,
        pad_id: Option<u32>,
    ) -> Result<Self, RewardError> {
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
        if let Some(name) = prefix_output
            && !outputs.contains(&name)
        {
            return Err(RewardError::Load(format!(
                "config.json bon_prefix_output `{name}` is not an output (outputs: {outputs:?})"
            )));
        }
        for name in std::iter::once(output.as_str()).chain(prefix_output) {
            if let Some(o) = session.outputs().iter().find(|o| o.name() == name)
                && o.dtype().tensor_type() != Some(TensorElementType::Float32)
            {
                return Err(RewardError::Load(format!("output `{name}` must be float32")));
            }
        }
        Ok(Self {
            prefix_output: prefix_output.map(str::to_owned),
            token_type_ids: names.contains(&"token_type_ids"),
            position_ids: names.contains(&"position_ids"),
            session,
            run_options,
            output,
            pad_id,
        })
    }

    /// Scores encoded sequences: one run for all of them, or one run each when the model has no pad id.
    pub fn run(&mut self, seqs: &[&Encoded]) -> Result<Vec<Scored>, RewardError> {
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

    fn run_padded(&mut self, seqs: &[&Encoded], pad_id: u32) -> Result<Vec<Scored>, RewardError> {
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
        let whole = column0(&outputs, &self.output, b.rows)?;
        let prefix = match &self.prefix_output {
            Some(name) => column0(&outputs, name, b.rows)?,
            None => whole.clone(),
        };
        Ok(whole.into_iter().zip(prefix).map(|(whole, prefix)| Scored { whole, prefix }).collect())
    }
}

/// Column 0 of output `name`, shaped [rows] or [rows, k].
fn column0(outputs: &ort::session::SessionOutputs<'_>, name: &str, rows: usize) -> Result<Vec<f32>, RewardError> {
    let value = outputs.get(name).ok_or_else(|| RewardError::Runtime(format!("run produced no `{name}`")))?;
    let (out_shape, data) = value.try_extract_tensor::<f32>().map_err(run_err)?;
    let stride = match out_shape.len() {
        1 => 1,
        2 => usize::try_from(out_shape[1]).unwrap_or(0),
        _ => 0,
    };
    if stride == 0 || data.len() != rows * stride {
        return Err(RewardError::Runtime(format!("unexpected `{name}` shape {out_shape:?} for {rows} rows")));
    }
    Ok((0..rows).map(|r| data[r * stride]).collect())
}

fn run_err(e: ort::Error) -> RewardError {
    RewardError::Runtime(e.to_string())
}

/// Opens the graph again (what `Scorer::load` did), for a restart.
pub type Reopen = Box<dyn FnMut() -> Result<Graph, RewardError> + Send>;

/// One run of two short sequences, which must give finite scores: at load, and after every restart.
pub fn warm_up(encoder: &Encoder, graph: &mut Graph) -> Result<(), RewardError> {
    let text = |role: &str, t: &str| Message {
        role: role.into(),
        content: Some(crate::openai::Content::Text(t.into())),
        extra: Default::default(),
    };
    let probe = ScoreInput {
        conversation: Arc::from(vec![text("user", "ping")]),
        tools: None,
        response: text("assistant", "pong"),
    };
    let probe = encoder.encode(&probe)?;
    let warm = graph.run(&[&probe, &probe])?;
    if warm.iter().any(|s| !s.whole.is_finite() || !s.prefix.is_finite()) {
        return Err(RewardError::Load(format!("warm-up run gave non-finite scores {warm:?}")));
    }
    Ok(())
}

/// The thread's loop: runs until every sender is gone. A panic while scoring a batch fails that batch's jobs (their
/// reply channels are dropped) and restarts the graph (`health`).
pub fn run(
    mut rx: mpsc::Receiver<Ready>,
    encoder: Arc<Encoder>,
    mut graph: Graph,
    batching: Batching,
    metrics: Arc<Metrics>,
    health: Arc<Health>,
    mut reopen: Reopen,
) {
    while let Some(first) = rx.blocking_recv() {
        let mut jobs = vec![first];
        let mut rows = jobs[0].seqs.len();
        // Merge what is already waiting, up to the batch bound.
        while rows < batching.max_batch {
            match rx.try_recv() {
                Ok(job) => {
                    rows += job.seqs.len();
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
        let scored = std::panic::catch_unwind(AssertUnwindSafe(|| {
            if health.take_panic() {
                // The test hook (`Health::panic_next_batch`): a panic as a bug would raise one.
                #[expect(clippy::panic, reason = "the test hook stands for a bug")]
                {
                    panic!("test hook: the scoring thread panics");
                }
            }
            score_jobs(jobs, &mut graph, batching, &metrics);
        }));
        if scored.is_err() {
            metrics.reward_worker_panics.with_label_values(&["scoring"]).inc();
            health.set_up(false);
            tracing::error!("the scoring thread panicked (its batch failed); restarting the reward model");
            match restart(&mut rx, &mut reopen, &encoder, &health, &metrics) {
                Some(g) => graph = g,
                None => break,
            }
        }
    }
    tracing::debug!("reward worker stopped");
}

/// Reopens and warms up the graph until it works, with back-off; meanwhile every job that arrives is answered with an
/// error at once. None: every sender is gone.
fn restart(
    rx: &mut mpsc::Receiver<Ready>,
    reopen: &mut Reopen,
    encoder: &Encoder,
    health: &Health,
    metrics: &Metrics,
) -> Option<Graph> {
    let mut backoff = Duration::from_millis(100);
    loop {
        let attempt = if health.restart_fails() {
            Err(RewardError::Load("test hook: the restart fails".into()))
        } else {
            reopen().and_then(|mut g| warm_up(encoder, &mut g).map(|()| g))
        };
        match attempt {
            Ok(graph) => {
                metrics.reward_worker_restarts.inc();
                health.set_up(true);
                tracing::info!("reward model restarted");
                return Some(graph);
            }
            Err(e) => tracing::warn!(error = %e, retry_in = ?backoff, "reward model restart failed"),
        }
        let until = Instant::now() + backoff;
        while Instant::now() < until {
            loop {
                match rx.try_recv() {
                    Ok(job) => {
                        let _ = job.reply.send(Err(RewardError::Runtime("the reward model is restarting".into())));
                    }
                    Err(mpsc::error::TryRecvError::Empty) => break,
                    Err(mpsc::error::TryRecvError::Disconnected) => return None,
                }
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        backoff = (backoff * 2).min(Duration::from_secs(5));
    }
}

fn score_jobs(jobs: Vec<Ready>, graph: &mut Graph, batching: Batching, metrics: &Metrics) {
    let now = Instant::now();
    for job in &jobs {
        metrics.reward_queue.observe(now.duration_since(job.ready_at).as_secs_f64());
    }
    let reply = |job: Ready, result: Result<Vec<f32>, RewardError>| {
        let seconds = job.submitted.elapsed().as_secs_f64();
        metrics.reward_duration.observe(seconds);
        job.span.in_scope(|| tracing::debug!(seconds, ok = result.is_ok(), "scored"));
        let _ = job.reply.send(result);
    };
    let all: Vec<&Encoded> = jobs.iter().flat_map(|job| job.seqs.iter()).collect();
    let merged = run_buckets(graph, &all, batching, metrics);
    match merged {
        Ok(scores) => {
            let mut at = 0;
            for job in jobs {
                let picked = scores[at..at + job.seqs.len()].iter().map(|s| s.pick(job.partial)).collect();
                at += job.seqs.len();
                reply(job, Ok(picked));
            }
        }
        // A merged run failed: run each job alone so that one job's bad input does not fail the others.
        Err(e) if jobs.len() > 1 => {
            tracing::warn!(error = %e, jobs = jobs.len(), "merged reward run failed; retrying jobs one by one");
            for job in jobs {
                let result = run_buckets(graph, &job.seqs.iter().collect::<Vec<_>>(), batching, metrics)
                    .map(|scores| scores.iter().map(|s| s.pick(job.partial)).collect());
                if result.is_err() {
                    metrics.reward_errors.inc();
                }
                reply(job, result);
            }
        }
        Err(e) => {
            metrics.reward_errors.inc();
            for job in jobs {
                reply(job, Err(e.clone()));
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
) -> Result<Vec<Scored>, RewardError> {
    let lengths: Vec<usize> = seqs.iter().map(|s| s.ids.len()).collect();
    let mut scores = vec![Scored { whole: 0.0, prefix: 0.0 }; seqs.len()];
    for run in batch::plan(&lengths, batching) {
        let chunk: Vec<&Encoded> = run.iter().map(|&i| seqs[i]).collect();
        let width = run.iter().map(|&i| lengths[i]).max().unwrap_or(0);
        let real: usize = run.iter().map(|&i| lengths[i]).sum();
        metrics.reward_batch.observe(run.len() as f64);
        metrics.reward_padding.observe(batch::padding_share(real, width * run.len()));
        let started = Instant::now();
        let run_scores = graph.run(&chunk)?;
        metrics.reward_inference.observe(started.elapsed().as_secs_f64());
        for (&i, score) in run.iter().zip(run_scores) {
            scores[i] = score;
        }
    }
    Ok(scores)
}
