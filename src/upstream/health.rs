//! One upstream's health as the pool sees it: up until a failure that says it is gone, then down with exponential
//! back-off until a probe (`GET /v1/models`) or a request answers.
//!
//! What says an upstream is gone (the rule, in `Pool::probe` and `Member::record`): a failed connection, or an answer
//! of 500 or above (a 503 with `Retry-After` excepted: busy). What does not: any answer below 500 (429 and 408 mean
//! busy), a probe that gets no answer in time (slow is not dead: an upstream saturated by other replicas answers
//! late), a candidate that runs out of time while the upstream answered another request meanwhile.

use std::time::Duration;

use serde::Serialize;
use tokio::time::Instant;

/// Whether an upstream gets traffic.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum State {
    /// Not probed yet, or no probe answered in time yet; gets traffic (the first answer decides).
    Unknown,
    Up,
    /// Failed; gets no traffic until a probe after `retry_at` answers (unless every upstream is down).
    Down,
}

/// Back-off after consecutive failures: `initial`, doubled per failure, at most `max`.
#[derive(Clone, Copy, Debug)]
pub struct Backoff {
    pub initial: Duration,
    pub max: Duration,
}

impl Backoff {
    pub fn after(&self, failures: u32) -> Duration {
        let doublings = failures.saturating_sub(1).min(20);
        self.initial.saturating_mul(1 << doublings).min(self.max)
    }
}

/// Mutable health of one upstream (behind the member's lock).
#[derive(Debug)]
pub struct Health {
    pub state: State,
    /// Consecutive failures (requests or probes) since it was last up.
    pub failures: u32,
    /// When a down upstream may be probed again.
    pub retry_at: Instant,
    /// When it was last probed; None: never (the prober probes it at once).
    pub last_probe: Option<Instant>,
    /// Why it was last marked down (an `UpstreamError` text, never a URL).
    pub last_error: Option<String>,
    /// When it last answered a request.
    pub last_success: Option<Instant>,
}

impl Health {
    pub fn new(now: Instant) -> Self {
        Self {
            state: State::Unknown,
            failures: 0,
            retry_at: now,
            last_probe: None,
            last_error: None,
            last_success: None,
        }
    }

    /// Gets traffic.
    pub fn routable(&self) -> bool {
        self.state != State::Down
    }

    /// A transient failure: down, to be probed after the back-off. Returns whether it was up before.
    pub fn fail(&mut self, now: Instant, backoff: Backoff, error: String) -> bool {
        let was_up = self.state != State::Down;
        self.failures = self.failures.saturating_add(1);
        self.state = State::Down;
        self.retry_at = now + backoff.after(self.failures);
        self.last_error = Some(error);
        was_up
    }

    /// A probe answered. Returns whether it was down before.
    pub fn recover(&mut self) -> bool {
        let was_down = self.state == State::Down;
        self.state = State::Up;
        self.failures = 0;
        self.last_error = None;
        was_down
    }

    /// Whether the prober should check it now: down and past its back-off; else never probed, or not for `interval`.
    pub fn probe_due(&self, now: Instant, interval: Duration) -> bool {
        match self.state {
            State::Down => now >= self.retry_at,
            State::Up | State::Unknown => self.last_probe.is_none_or(|last| now.duration_since(last) >= interval),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_doubles_up_to_its_cap() {
        let b = Backoff { initial: Duration::from_millis(500), max: Duration::from_secs(4) };
        let got: Vec<u64> = (1..=6).map(|f| b.after(f).as_millis() as u64).collect();
        assert_eq!(got, [500, 1000, 2000, 4000, 4000, 4000]);
        assert_eq!(b.after(u32::MAX), Duration::from_secs(4));
    }

    #[test]
    fn a_failure_takes_it_out_until_a_probe_after_the_backoff() {
        let now = Instant::now();
        let b = Backoff { initial: Duration::from_secs(1), max: Duration::from_secs(30) };
        let mut h = Health::new(now);
        assert!(h.routable());
        assert!(h.probe_due(now, Duration::from_secs(5)), "never probed: at once");
        h.last_probe = Some(now);
        assert!(h.fail(now, b, "HTTP 503".into()));
        assert!(!h.routable());
        assert!(!h.probe_due(now, Duration::from_secs(5)));
        assert!(h.probe_due(now + Duration::from_secs(1), Duration::from_secs(5)));
        assert!(!h.fail(now, b, "again".into()), "already down");
        assert_eq!(h.retry_at, now + Duration::from_secs(2));
        assert!(h.recover());
        assert!(h.routable() && h.failures == 0 && h.last_error.is_none());
    }
}
