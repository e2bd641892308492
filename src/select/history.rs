//! The online confidence stop's memory: the lowest group confidences of recent candidates, per model. A proxy sees
//! many requests, so the threshold comes from earlier calls rather than from warm-up candidates of each request
//! (DeepConf's offline warm-up): the `--confidence-percentile`-th percentile of the last `--confidence-history`
//! candidates of the same model, once it holds `--confidence-min-history` of them. A candidate the stop cut short is
//! recorded with its lowest group so far (its final one can only be lower), so stopping does not move the threshold
//! up by leaving the weak candidates out. Bounded: at most `MAX_MODELS` models, the least recently seen forgotten.

use std::{
    collections::{HashMap, VecDeque},
    sync::{Mutex, PoisonError},
};

/// Models remembered at once (a model name is client text: the map must not grow with it).
pub const MAX_MODELS: usize = 64;

/// Recent lowest-group confidences per model.
#[derive(Debug)]
pub struct ConfidenceHistory {
    capacity: usize,
    percentile: f64,
    min_history: usize,
    models: Mutex<Models>,
}

#[derive(Debug, Default)]
struct Models {
    rings: HashMap<String, Ring>,
    clock: u64,
}

#[derive(Debug)]
struct Ring {
    values: VecDeque<f64>,
    seen: u64,
}

impl ConfidenceHistory {
    /// `capacity` candidates per model; the threshold is their `percentile`-th percentile (0-100) once there are
    /// `min_history` of them.
    pub fn new(capacity: usize, percentile: f64, min_history: usize) -> Self {
        Self {
            capacity: capacity.max(1),
            percentile: percentile.clamp(0.0, 100.0),
            min_history: min_history.max(1),
            models: Mutex::default(),
        }
    }

    /// The stop threshold for `model`: None until enough candidates of it have been seen.
    pub fn threshold(&self, model: &str) -> Option<f64> {
        let models = self.models.lock().unwrap_or_else(PoisonError::into_inner);
        let ring = models.rings.get(model)?;
        if ring.values.len() < self.min_history.min(self.capacity) {
            return None;
        }
        let mut sorted: Vec<f64> = ring.values.iter().copied().collect();
        drop(models);
        sorted.sort_by(f64::total_cmp);
        Some(percentile(&sorted, self.percentile))
    }

    /// How many candidates of `model` are remembered.
    pub fn len(&self, model: &str) -> usize {
        let models = self.models.lock().unwrap_or_else(PoisonError::into_inner);
        models.rings.get(model).map_or(0, |r| r.values.len())
    }

    /// Remembers candidates' lowest group confidences (non-finite values are left out).
    pub fn record(&self, model: &str, lowest: impl IntoIterator<Item = f64>) {
        let values: Vec<f64> = lowest.into_iter().filter(|v| v.is_finite()).collect();
        if values.is_empty() {
            return;
        }
        let mut models = self.models.lock().unwrap_or_else(PoisonError::into_inner);
        models.clock += 1;
        let now = models.clock;
        if !models.rings.contains_key(model) && models.rings.len() >= MAX_MODELS {
            let oldest = models.rings.iter().min_by_key(|(_, r)| r.seen).map(|(k, _)| k.clone());
            if let Some(k) = oldest {
                models.rings.remove(&k);
            }
        }
        let ring = models.rings.entry(model.to_owned()).or_insert_with(|| Ring { values: VecDeque::new(), seen: now });
        ring.seen = now;
        for v in values {
            if ring.values.len() == self.capacity {
                ring.values.pop_front();
            }
            ring.values.push_back(v);
        }
    }
}

/// The `p`-th percentile of `sorted` (not empty), interpolated linearly between ranks.
fn percentile(sorted: &[f64], p: f64) -> f64 {
    let rank = p / 100.0 * (sorted.len() - 1) as f64;
    let (lo, hi) = (rank.floor() as usize, rank.ceil() as usize);
    sorted[lo] + (sorted[hi] - sorted[lo]) * (rank - lo as f64)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn no_threshold_until_enough_history_then_the_percentile_of_the_recent() {
        let h = ConfidenceHistory::new(4, 50.0, 3);
        h.record("m", [1.0, 2.0]);
        assert_eq!(h.threshold("m"), None, "2 of 3");
        h.record("m", [3.0]);
        assert_eq!(h.threshold("m"), Some(2.0));
        h.record("m", [10.0, 11.0, f64::NAN]);
        assert_eq!(h.len("m"), 4, "bounded; NaN left out");
        assert_eq!(h.threshold("m"), Some(6.5), "the last four: 2, 3, 10, 11");
        assert_eq!(h.threshold("other"), None, "per model");
    }

    #[test]
    fn percentiles_interpolate_between_ranks() {
        let v = [1.0, 2.0, 3.0, 4.0, 5.0];
        assert_eq!(percentile(&v, 0.0), 1.0);
        assert_eq!(percentile(&v, 90.0), 4.6);
        assert_eq!(percentile(&v, 100.0), 5.0);
        assert_eq!(percentile(&[7.0], 10.0), 7.0);
    }

    #[test]
    fn the_models_remembered_are_bounded_and_the_least_recent_goes() {
        let h = ConfidenceHistory::new(8, 50.0, 1);
        for i in 0..MAX_MODELS {
            h.record(&format!("m{i}"), [i as f64]);
        }
        h.record("m0", [0.5]);
        h.record("new", [1.0]);
        assert_eq!(h.len("m1"), 0, "the least recently seen was forgotten");
        assert_eq!(h.len("m0"), 2);
        assert_eq!(h.len("new"), 1);
        assert_eq!(h.models.lock().unwrap().rings.len(), MAX_MODELS);
    }
}
