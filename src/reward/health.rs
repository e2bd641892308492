//! Scorer health. A panic while scoring is caught on the scoring thread and counted
//! (`bon_reward_worker_panics_total`); that batch's callers get an error (their requests fall back, and say so in
//! `x-bon-selection`), and the thread **restarts** the scorer: it reopens the ONNX session and runs the warm-up again
//! before it takes the next job. While that fails it retries with back-off, answers every job at once with an error
//! (no request waits on a scorer that is down), and `/ready` answers 503 `reward_model_down`
//! (`bon_reward_worker_up` 0).
//!
//! Restart rather than report unready for good: a panic is most likely one bad input (a tokenizer or template edge
//! case) or a transient runtime fault, and every other request deserves its Best-of-N; taking the replica out of a
//! Service for that would move the same input to the next replica. A model that cannot be reopened keeps the replica
//! unready, which is when it should be taken out.

use std::sync::{
    Arc,
    atomic::{AtomicBool, AtomicU32, Ordering},
};

use crate::metrics::Metrics;

/// Whether the scoring thread can score now, plus hooks for tests.
pub struct Health {
    up: AtomicBool,
    panic_next: AtomicBool,
    fail_restarts: AtomicU32,
    metrics: Arc<Metrics>,
}

impl Health {
    /// Up (the model was loaded and warmed up).
    pub fn new(metrics: Arc<Metrics>) -> Arc<Self> {
        metrics.reward_worker_up.set(1);
        Arc::new(Self {
            up: AtomicBool::new(true),
            panic_next: AtomicBool::new(false),
            fail_restarts: 0.into(),
            metrics,
        })
    }

    pub fn is_up(&self) -> bool {
        self.up.load(Ordering::SeqCst)
    }

    pub(super) fn set_up(&self, up: bool) {
        self.up.store(up, Ordering::SeqCst);
        self.metrics.reward_worker_up.set(i64::from(up));
    }

    /// Test hook: the scoring thread panics at its next batch, as a bug would.
    #[doc(hidden)]
    pub fn panic_next_batch(&self) {
        self.panic_next.store(true, Ordering::SeqCst);
    }

    /// Test hook: the next `n` restarts fail, as a model that cannot be reopened would (`u32::MAX`: until changed).
    #[doc(hidden)]
    pub fn fail_restarts(&self, n: u32) {
        self.fail_restarts.store(n, Ordering::SeqCst);
    }

    pub(super) fn take_panic(&self) -> bool {
        self.panic_next.swap(false, Ordering::SeqCst)
    }

    /// Whether a restart should fail now (test hook), counting one down.
    pub(super) fn restart_fails(&self) -> bool {
        self.fail_restarts
            .fetch_update(Ordering::SeqCst, Ordering::SeqCst, |n| {
                (n > 0).then(|| n.saturating_sub(u32::from(n != u32::MAX)))
            })
            .is_ok()
    }
}
