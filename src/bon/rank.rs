//! The score-and-rank step both selection (`bon::run`) and pruning rounds (`prune`) take: the candidates' answers
//! scored in one batch, ordered by score, then by the guard's tiers when the plan asks for it.

use super::{plan::Plan, response_message, scores as statistics};
use crate::select::guard;
use crate::{
    openai::ChatCompletion,
    reward::{RewardError, Score, ScoreInput},
};

/// Scores and the orders they give.
pub struct Ranked {
    pub scores: Vec<f32>,
    /// Positions best first by score alone.
    pub by_score: Vec<usize>,
    /// Positions best first as selection ranks them (the guard's tiers first, when on).
    pub order: Vec<usize>,
}

/// The scorer's input for one candidate's answer in this plan's conversation.
pub fn input(plan: &Plan, c: &ChatCompletion) -> ScoreInput {
    ScoreInput { conversation: plan.conversation.clone(), tools: plan.tools.clone(), response: response_message(c) }
}

/// Scores `inputs` (`partial`: answers still being generated, through the model's prefix output) and ranks them;
/// `flags` are the inputs' guard flags, in order.
pub async fn score_and_rank(
    scorer: &dyn Score,
    inputs: Vec<ScoreInput>,
    flags: &[guard::Flags],
    guard: bool,
    partial: bool,
) -> Result<Ranked, RewardError> {
    let n = inputs.len();
    let scores = if partial { scorer.score_partial(inputs).await? } else { scorer.score(inputs).await? };
    if scores.len() != n {
        return Err(RewardError::Runtime(format!("scorer returned {} scores for {n} candidates", scores.len())));
    }
    let by_score = statistics::order_by_score(&scores);
    let order = if guard { guard::tiered(by_score.clone(), flags) } else { by_score.clone() };
    Ok(Ranked { scores, by_score, order })
}
