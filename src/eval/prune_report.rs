//! `bon-proxy eval --prune-report`: how well the reward model's scores of *partial* answers predict its scores of the
//! whole ones, on the user's own prompts and upstream — what pruning relies on — and the calibration
//! (`bon_prefix_calibration`, `reward::prefix`) that lets `--prune-confidence` use the model.
//!
//! Every successful sample is cut after each of `CUTS` completion tokens (the text cut in proportion to the tokens
//! the upstream reported for it, as pruning counts one token per delta) and scored as a partial answer
//! (`Score::score_partial`: the model's prefix output when it declares one). For every pair of a prompt's samples
//! whose whole rewards differ and whose prefixes are not both the whole answer, the prefix gap is oriented by the
//! final order. Per cut: the agreement (share of pairs whose prefixes are ordered as the whole answers), the Platt
//! scale `a` of P(ahead at the cut wins at the end) = sigmoid(a × gap), and for a few confidences P the margin
//! logit(P) / a, the share of pairs beyond it and how often the one behind there really lost (in sample).

use std::sync::Arc;

use serde::Serialize;

use super::{EvalError, PromptRun};
use crate::{
    openai::{Content, Message},
    reward::{Score, ScoreInput},
};

/// Prefix lengths measured, in completion tokens.
pub const CUTS: [u64; 5] = [16, 32, 64, 96, 128];
/// Confidences whose margins are reported.
pub const CONFIDENCES: [f64; 3] = [0.8, 0.9, 0.95];

/// One confidence at one cut.
#[derive(Clone, Debug, Serialize, PartialEq)]
pub struct AtConfidence {
    pub confidence: f64,
    pub margin: Option<f64>,
    pub share_beyond: f64,
    /// Among the pairs beyond the margin, the share whose one behind lost at the end (None: no such pair).
    pub behind_lost: Option<f64>,
}

/// One cut.
#[derive(Clone, Debug, Serialize, PartialEq)]
pub struct Cut {
    pub tokens: u64,
    pub pairs: usize,
    pub agreement: Option<f64>,
    pub scale: f64,
    pub confidences: Vec<AtConfidence>,
}

/// The report: per cut, and the calibration to paste into the model's config.json.
#[derive(Clone, Debug, Serialize, PartialEq)]
pub struct PruneReport {
    pub cuts: Vec<Cut>,
    pub bon_prefix_calibration: Vec<serde_json::Value>,
}

/// Scores every sample's prefixes and measures them against the whole answers' rewards.
pub async fn measure(scorer: &dyn Score, runs: &[PromptRun]) -> Result<PruneReport, EvalError> {
    let mut gaps: Vec<Vec<f64>> = CUTS.iter().map(|_| Vec::new()).collect();
    for run in runs {
        let samples: Vec<(&str, u64, f32)> = run
            .samples
            .iter()
            .filter(|s| s.ok())
            .filter_map(|s| Some((s.text.as_str(), s.completion_tokens?, s.reward?)))
            .collect();
        if samples.len() < 2 {
            continue;
        }
        let conversation: Arc<[Message]> = Arc::from(run.messages.clone());
        for (k, &cut) in CUTS.iter().enumerate() {
            let prefixes: Vec<(&str, bool)> =
                samples.iter().map(|&(text, tokens, _)| (prefix(text, tokens, cut), tokens > cut)).collect();
            let inputs = prefixes
                .iter()
                .map(|(text, _)| ScoreInput {
                    conversation: conversation.clone(),
                    tools: None,
                    response: Message {
                        role: "assistant".into(),
                        content: Some(Content::Text((*text).to_owned())),
                        extra: Default::default(),
                    },
                })
                .collect();
            let partial = scorer.score_partial(inputs).await?;
            for i in 0..samples.len() {
                for j in i + 1..samples.len() {
                    let (ri, rj) = (samples[i].2, samples[j].2);
                    if ri == rj || !(prefixes[i].1 || prefixes[j].1) || !(partial[i] - partial[j]).is_finite() {
                        continue;
                    }
                    let gap = f64::from(partial[i] - partial[j]);
                    gaps[k].push(if ri > rj { gap } else { -gap });
                }
            }
        }
    }
    let cuts: Vec<Cut> = CUTS.iter().zip(&gaps).map(|(&tokens, g)| cut_report(tokens, g)).collect();
    let bon_prefix_calibration =
        cuts.iter().map(|c| serde_json::json!({"tokens": c.tokens, "scale": round4(c.scale)})).collect();
    Ok(PruneReport { cuts, bon_prefix_calibration })
}

fn round4(x: f64) -> f64 {
    (x * 1e4).round() / 1e4
}

fn cut_report(tokens: u64, gaps: &[f64]) -> Cut {
    let scale = platt(gaps);
    let share = |n: usize| if gaps.is_empty() { 0.0 } else { n as f64 / gaps.len() as f64 };
    let confidences = CONFIDENCES
        .iter()
        .map(|&p| {
            let margin = (scale > 0.0).then(|| (p / (1.0 - p)).ln() / scale);
            let beyond: Vec<f64> = gaps.iter().copied().filter(|g| margin.is_some_and(|m| g.abs() > m)).collect();
            let lost = beyond.iter().filter(|g| **g > 0.0).count();
            AtConfidence {
                confidence: p,
                margin,
                share_beyond: share(beyond.len()),
                behind_lost: (!beyond.is_empty()).then(|| lost as f64 / beyond.len() as f64),
            }
        })
        .collect();
    let agreement = (!gaps.is_empty()).then(|| share(gaps.iter().filter(|g| **g > 0.0).count()));
    Cut { tokens, pairs: gaps.len(), agreement, scale, confidences }
}

/// The first `cut` of `tokens` completion tokens of `text`: the text cut in proportion, back to a character boundary.
pub fn prefix(text: &str, tokens: u64, cut: u64) -> &str {
    if tokens <= cut || tokens == 0 {
        return text;
    }
    let mut at = (text.len() as u128 * u128::from(cut) / u128::from(tokens)) as usize;
    while !text.is_char_boundary(at) {
        at -= 1;
    }
    &text[..at]
}

/// The scale `a >= 0` maximising Σ log sigmoid(a × gap) over oriented gaps (Newton's method on a concave function;
/// 0 when the gaps say nothing or point the wrong way).
pub fn platt(gaps: &[f64]) -> f64 {
    let mut a = 0.0f64;
    for _ in 0..100 {
        let (mut g, mut h) = (0.0, -1e-9);
        for &x in gaps {
            let p = 1.0 / (1.0 + (-a * x).exp());
            g += (1.0 - p) * x;
            h -= p * (1.0 - p) * x * x;
        }
        let step = g / h;
        a = (a - step).max(0.0);
        if step.abs() < 1e-9 {
            break;
        }
    }
    if a.is_finite() { a } else { 0.0 }
}

/// `prune_report.md`: the table and the config.json snippet.
pub fn markdown(r: &PruneReport, model: &str) -> String {
    let mut out = format!(
        "# Pruning report: {model}\n\nHow well this reward model's scores of partial answers (the first T completion \
         tokens) predict its scores of the whole answers, on these prompts: for every pair of a prompt's samples \
         whose rewards differ, whether the prefixes are ordered as the whole answers (agreement), and the Platt \
         scale a of P(ahead at T wins at the end) = sigmoid(a × gap). `--prune-confidence P` stops a candidate only \
         when it is behind by more than the margin logit(P) / a; \"behind lost\" is how often the one behind there \
         really lost (in sample).\n\n| T tokens | pairs | agreement | scale a |"
    );
    for p in CONFIDENCES {
        out += &format!(" margin at {p} | beyond | behind lost |");
    }
    out += "\n|---|---|---|---|";
    out += &"---|---|---|".repeat(CONFIDENCES.len());
    let opt = |x: Option<f64>| x.map_or("-".to_owned(), |v| format!("{v:.3}"));
    for c in &r.cuts {
        out += &format!("\n| {} | {} | {} | {:.4} |", c.tokens, c.pairs, opt(c.agreement), c.scale);
        for a in &c.confidences {
            out += &format!(" {} | {:.3} | {} |", opt(a.margin), a.share_beyond, opt(a.behind_lost));
        }
    }
    let snippet = serde_json::to_string(&r.bon_prefix_calibration).unwrap_or_default();
    out += &format!(
        "\n\nTo prune this model with `--prune-confidence`, add to its config.json:\n\n```json\n\"bon_prefix_calibration\": \
         {snippet}\n```\n\nAgreement near 0.5 at a cut means partial scores say nothing there: prune later \
         (`--prune-every`) or not at all.\n"
    );
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn platt_recovers_a_known_scale() {
        // Gaps on a grid, each counted as won and lost in the proportions sigmoid(2 × gap) says.
        let mut gaps = Vec::new();
        for k in 1..=40 {
            let x = f64::from(k) * 0.05;
            let p = 1.0 / (1.0 + (-2.0 * x).exp());
            let won = (p * 1000.0).round() as usize;
            gaps.extend(std::iter::repeat_n(x, won));
            gaps.extend(std::iter::repeat_n(-x, 1000 - won));
        }
        assert!((platt(&gaps) - 2.0).abs() < 0.01, "{}", platt(&gaps));
        assert_eq!(platt(&[-1.0, -2.0, 0.5]), 0.0, "gaps pointing the wrong way: no scale");
        assert_eq!(platt(&[]), 0.0);
    }

    #[test]
    fn prefixes_are_cut_in_proportion_on_character_boundaries() {
        assert_eq!(prefix("abcdefgh", 8, 4), "abcd");
        assert_eq!(prefix("abcdefgh", 4, 16), "abcdefgh", "shorter than the cut: whole");
        assert_eq!(prefix("ééé", 3, 1), "é");
        assert_eq!(prefix("éa", 3, 1), "", "back to a boundary");
    }

    #[test]
    fn the_report_names_margins_and_the_snippet() {
        let r = PruneReport {
            cuts: vec![cut_report(32, &[1.0, 2.0, -0.5, 3.0])],
            bon_prefix_calibration: vec![serde_json::json!({"tokens": 32, "scale": 1.0})],
        };
        assert_eq!(r.cuts[0].agreement, Some(0.75));
        let md = markdown(&r, "m");
        assert!(md.contains("| 32 | 4 | 0.750 |") && md.contains("\"bon_prefix_calibration\""), "{md}");
    }
}
