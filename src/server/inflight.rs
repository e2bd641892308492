//! Request accounting: a request counts as in flight until it finishes or is dropped (the client went away).

use std::{sync::Arc, time::Instant};

use tokio::sync::OwnedSemaphorePermit;

use crate::{bon::Outcome, cache::CacheResult, error::ApiError, metrics::Metrics};

/// A finished Best-of-N call and what the cache did for it.
pub type Finished = Result<(Arc<Outcome>, CacheResult), ApiError>;

/// Counts the request as in flight, and as `client_closed` if it is dropped before finishing.
pub struct InFlight {
    metrics: Arc<Metrics>,
    started: Instant,
    finished: bool,
}

impl InFlight {
    pub fn new(metrics: Arc<Metrics>) -> Self {
        metrics.inflight.inc();
        Self { metrics, started: Instant::now(), finished: false }
    }

    /// Records the outcome (`ok` or the error's kind) and latency.
    pub fn finish(&mut self, result: Result<CacheResult, &ApiError>) {
        self.finished = true;
        let (outcome, cache) = match result {
            Ok(cache) => ("ok", cache.as_str()),
            Err(e) => (e.kind(), "none"),
        };
        self.metrics.requests.with_label_values(&[outcome]).inc();
        self.metrics.request_duration.with_label_values(&[cache]).observe(self.started.elapsed().as_secs_f64());
    }
}

impl Drop for InFlight {
    fn drop(&mut self) {
        self.metrics.inflight.dec();
        if !self.finished {
            // The response was dropped: the client went away and every upstream call was cancelled with it.
            self.metrics.requests.with_label_values(&["client_closed"]).inc();
        }
    }
}

/// What a streaming response carries along until it ends: the admission permit and the in-flight record.
pub struct Held {
    pub inflight: InFlight,
    /// Held, never read: the admission slot is released when the stream ends or is dropped.
    pub permit: OwnedSemaphorePermit,
}
