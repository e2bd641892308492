//! `--reward-threads`: ONNX Runtime's intra-op pool gets the number asked for, and `--reward-tokenizer-threads` the
//! tokenizer pool (counted as OS threads of this process, which is why this is a test binary of its own); the
//! scores do not change.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic, reason = "tests fail loudly")]

mod common;

use std::sync::Arc;

use bon_proxy::{
    metrics::Metrics,
    openai::{Content, Message},
    reward::{Device, RewardOptions, Score, ScoreInput, Scorer},
};
use common::*;

fn os_threads() -> usize {
    std::fs::read_dir("/proc/self/task").unwrap().count()
}

fn load(threads: usize, tokenizers: usize) -> Scorer {
    let opts = RewardOptions {
        device: Device::Cpu,
        threads: Some(threads),
        tokenizer_threads: Some(tokenizers),
        ..RewardOptions::new(fixture("tiny-qwen3-chatml"))
    };
    Scorer::load(&opts, Arc::new(Metrics::new().unwrap())).unwrap()
}

fn text(role: &str, t: &str) -> Message {
    Message { role: role.into(), content: Some(Content::Text(t.into())), extra: Default::default() }
}

#[tokio::test(flavor = "current_thread")]
async fn the_intra_op_pool_has_the_threads_asked_for_and_scores_do_not_change() {
    // The first load also initialises ONNX Runtime itself; count from after it.
    let warm = load(1, 1);
    let before = os_threads();
    let one = load(1, 1);
    let after_one = os_threads();
    let four = load(4, 2);
    let after_four = os_threads();
    // Each scorer has its own scoring thread and tokenizer threads; a pool of n intra-op threads adds n - 1 workers.
    assert_eq!(after_one - before, 1 + 1, "one thread: the scoring thread and one tokenizer thread");
    assert_eq!(
        after_four - after_one,
        1 + 3 + 2,
        "four threads: the scoring thread, three pool workers, two tokenizers"
    );

    let input = || ScoreInput {
        conversation: Arc::from(vec![text("user", CAPITAL_QUESTION)]),
        tools: None,
        response: text("assistant", "Paris is the capital of France."),
    };
    let a = one.score(vec![input()]).await.unwrap();
    let b = four.score(vec![input()]).await.unwrap();
    assert!((a[0] - b[0]).abs() < 1e-5, "{a:?} vs {b:?}");
    drop(warm);
}
