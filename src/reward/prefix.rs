//! What a model directory declares about scoring partial answers (pruning rounds), in its config.json:
//!
//! ```json
//! "bon_prefix_output": "prefix_logits",
//! "bon_prefix_calibration": [{"tokens": 16, "scale": 1.9}, {"tokens": 32, "scale": 2.4}, ...]
//! ```
//!
//! `bon_prefix_output` names a second graph output trained on partial answers (the default model's); a model without
//! it scores partial answers with its whole-answer output. `bon_prefix_calibration` says how far apart two partial
//! scores must be to trust the order: after `tokens` tokens, the candidate ahead by `gap` ends up preferred with
//! probability `sigmoid(scale × gap)` (Platt scaling, fitted on held-out pairs; `models/training/train_prefix.py`, or for any
//! model `bon-proxy eval --prune-report`). `--prune-confidence P` stops a candidate only when the leader is ahead by
//! more than `logit(P) / scale`.

use serde::Deserialize;
use serde_json::{Map, Value};

/// One point of the calibration: from `tokens` tokens on, P(ahead wins) = sigmoid(scale × gap).
#[derive(Clone, Copy, Debug, Deserialize, PartialEq)]
pub struct Point {
    pub tokens: u64,
    pub scale: f64,
}

/// Platt scales by prefix length, ascending in `tokens`.
#[derive(Clone, Debug, PartialEq)]
pub struct Calibration(Vec<Point>);

impl Calibration {
    /// Points sorted by `tokens`; every scale finite and `>= 0`, no two points at the same length, at least one.
    pub fn new(mut points: Vec<Point>) -> Result<Self, String> {
        if points.is_empty() {
            return Err("no points".into());
        }
        if let Some(p) = points.iter().find(|p| !p.scale.is_finite() || p.scale < 0.0) {
            return Err(format!("scale {} at {} tokens is not a finite number >= 0", p.scale, p.tokens));
        }
        points.sort_by_key(|p| p.tokens);
        if points.windows(2).any(|w| w[0].tokens == w[1].tokens) {
            return Err("two points at the same number of tokens".into());
        }
        Ok(Self(points))
    }

    /// The score gap beyond which the one behind loses with probability >= `confidence` after `tokens` tokens:
    /// the point at the longest prefix not longer than `tokens` (the shortest one below it). `None` when that
    /// point's scale is 0 (the order of partial scores says nothing there): never stop on it.
    pub fn margin(&self, confidence: f64, tokens: u64) -> Option<f32> {
        let point = self.0.iter().rev().find(|p| p.tokens <= tokens).unwrap_or(&self.0[0]);
        (point.scale > 0.0).then(|| ((confidence / (1.0 - confidence)).ln() / point.scale) as f32)
    }

    pub fn points(&self) -> &[Point] {
        &self.0
    }
}

/// The prefix declarations of a parsed config.json: (output name, calibration).
pub fn from_config(config: &Map<String, Value>) -> Result<(Option<String>, Option<Calibration>), String> {
    let output = match config.get("bon_prefix_output") {
        None | Some(Value::Null) => None,
        Some(Value::String(s)) if !s.is_empty() => Some(s.clone()),
        Some(v) => return Err(format!("bon_prefix_output must be an output name (got {v})")),
    };
    let calibration = match config.get("bon_prefix_calibration") {
        None | Some(Value::Null) => None,
        Some(v) => {
            let points: Vec<Point> = serde_json::from_value(v.clone())
                .map_err(|e| format!("bon_prefix_calibration must be a list of {{tokens, scale}}: {e}"))?;
            Some(Calibration::new(points).map_err(|e| format!("bon_prefix_calibration: {e}"))?)
        }
    };
    Ok((output, calibration))
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn cal() -> Calibration {
        let p = |tokens, scale| Point { tokens, scale };
        Calibration::new(vec![p(64, 2.0), p(16, 1.0), p(128, 0.0)]).unwrap()
    }

    #[test]
    fn the_margin_comes_from_the_longest_point_not_past_the_prefix() {
        let logit9 = (0.9f64 / 0.1).ln() as f32;
        let c = cal();
        assert_eq!(c.margin(0.9, 4), Some(logit9), "before the first point: the first point");
        assert_eq!(c.margin(0.9, 16), Some(logit9));
        assert_eq!(c.margin(0.9, 63), Some(logit9));
        assert_eq!(c.margin(0.9, 64), Some(logit9 / 2.0));
        assert_eq!(c.margin(0.9, 500), None, "a scale of 0: partial scores say nothing there");
        assert!(c.margin(0.99, 64).unwrap() > c.margin(0.9, 64).unwrap(), "more confidence, wider margin");
    }

    #[test]
    fn bad_declarations_are_refused_with_the_field_named() {
        let parse = |v: Value| from_config(v.as_object().unwrap());
        assert_eq!(parse(json!({})), Ok((None, None)));
        let (out, c) =
            parse(json!({"bon_prefix_output": "p", "bon_prefix_calibration": [{"tokens": 8, "scale": 1}]})).unwrap();
        assert_eq!((out.as_deref(), c.unwrap().points().len()), (Some("p"), 1));
        for bad in [
            json!({"bon_prefix_output": 3}),
            json!({"bon_prefix_calibration": {"tokens": 8}}),
            json!({"bon_prefix_calibration": []}),
            json!({"bon_prefix_calibration": [{"tokens": 8, "scale": -1}]}),
            json!({"bon_prefix_calibration": [{"tokens": 8, "scale": 1}, {"tokens": 8, "scale": 2}]}),
        ] {
            let e = parse(bad.clone()).unwrap_err();
            assert!(e.contains("bon_prefix"), "{bad}: {e}");
        }
    }
}
