//! Voting over extracted answers: self-consistency (Wang et al. 2023: the most common answer wins) and reward-weighted
//! voting (each candidate votes with weight softmax(score / T) over the voters; the "weighted Best-of-N" of Hugging
//! Face's search-and-learn). Pure functions.
//!
//! Who votes: candidates with an extracted answer; with the guard on, flagged ones (repetitive, or cut by the length
//! limit, whose last number is often mid-calculation) vote only when no unflagged candidate has an answer.
//! Groups are ordered by weight, then summed reward, then their lowest candidate index.

use std::collections::HashMap;

/// One candidate as the vote sees it.
#[derive(Clone, Debug, PartialEq)]
pub struct Ballot {
    pub answer: Option<String>,
    pub score: Option<f32>,
    /// Flagged by the degenerate-text guard (counted only when the guard is on).
    pub flagged: bool,
}

/// How much each vote weighs.
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum Weighting {
    /// One each.
    Count,
    /// softmax(score / temperature) over the voters.
    Softmax { temperature: f64 },
    /// The score itself (`confidence-vote`: a candidate's confidence, never below a tiny positive weight).
    Score,
}

/// The result of a vote.
#[derive(Clone, Debug, PartialEq)]
pub struct Tally {
    /// The winning answer.
    pub answer: String,
    /// Rank of each ballot's group, 0 for the winner; None for ballots that did not vote.
    pub group_rank: Vec<Option<usize>>,
    /// Votes for the winner and for everyone (counts, or softmax weights summing to 1).
    pub winner_weight: f64,
    pub total_weight: f64,
    /// Voters for the winning answer, and voters in all.
    pub winner_voters: usize,
    pub voters: usize,
}

/// Counts the ballots. None when nobody voted (no answer anywhere), or when weighting needs a score that is missing.
pub fn tally(ballots: &[Ballot], weighting: Weighting, guard: bool) -> Option<Tally> {
    let answered = |b: &Ballot| b.answer.is_some();
    let any_clean = ballots.iter().any(|b| answered(b) && !b.flagged);
    let votes = |b: &Ballot| answered(b) && (!guard || !b.flagged || !any_clean);
    let voters: Vec<usize> = (0..ballots.len()).filter(|&i| votes(&ballots[i])).collect();
    if voters.is_empty() {
        return None;
    }
    let weights: Vec<f64> = match weighting {
        Weighting::Count => vec![1.0; voters.len()],
        Weighting::Softmax { temperature } => {
            let scores: Vec<f64> = voters
                .iter()
                .map(|&i| ballots[i].score.map(f64::from).filter(|s| s.is_finite()))
                .collect::<Option<_>>()?;
            softmax(&scores, temperature)
        }
        Weighting::Score => voters
            .iter()
            .map(|&i| ballots[i].score.map(f64::from).filter(|s| s.is_finite()).map(|s| s.max(1e-9)))
            .collect::<Option<_>>()?,
    };
    struct Group {
        weight: f64,
        reward: f64,
        first: usize,
        voters: usize,
    }
    let mut groups: HashMap<&str, Group> = HashMap::new();
    for (&i, w) in voters.iter().zip(&weights) {
        let b = &ballots[i];
        let g = groups.entry(b.answer.as_deref().unwrap_or_default()).or_insert(Group {
            weight: 0.0,
            reward: 0.0,
            first: i,
            voters: 0,
        });
        g.weight += w;
        g.reward += b.score.map_or(0.0, f64::from);
        g.first = g.first.min(i);
        g.voters += 1;
    }
    let mut order: Vec<(&str, Group)> = groups.into_iter().collect();
    order.sort_by(|(_, a), (_, b)| {
        b.weight.total_cmp(&a.weight).then(b.reward.total_cmp(&a.reward)).then(a.first.cmp(&b.first))
    });
    let rank_of: HashMap<&str, usize> = order.iter().enumerate().map(|(r, (a, _))| (*a, r)).collect();
    let group_rank =
        (0..ballots.len())
            .map(|i| {
                if votes(&ballots[i]) {
                    ballots[i].answer.as_deref().and_then(|a| rank_of.get(a).copied())
                } else {
                    None
                }
            })
            .collect();
    let (answer, winner) = &order[0];
    Some(Tally {
        answer: (*answer).to_owned(),
        group_rank,
        winner_weight: winner.weight,
        total_weight: weights.iter().sum(),
        winner_voters: winner.voters,
        voters: voters.len(),
    })
}

/// `reward_order` (candidate positions, best first by reward and guard) re-ordered by vote: the winning group's
/// members first, then the next group's, ...; candidates that did not vote last. Within a group, reward order holds.
pub fn order(reward_order: &[usize], tally: &Tally) -> Vec<usize> {
    let mut out = reward_order.to_vec();
    out.sort_by_key(|&i| tally.group_rank[i].unwrap_or(usize::MAX));
    out
}

/// Whether the unfinished candidates can no longer change the winner of a count vote: the leading answer has more
/// votes than the runner-up would have if every unfinished candidate voted for it (a tie would be broken by reward,
/// not yet known, so it must be strictly more).
pub fn decided<'a>(answers: impl IntoIterator<Item = &'a str>, unfinished: usize) -> bool {
    let mut counts: HashMap<&str, usize> = HashMap::new();
    for a in answers {
        *counts.entry(a).or_insert(0) += 1;
    }
    let mut c: Vec<usize> = counts.into_values().collect();
    c.sort_unstable_by(|a, b| b.cmp(a));
    match c.as_slice() {
        [] => false,
        [top] => *top > unfinished,
        [top, second, ..] => *top > second + unfinished,
    }
}

fn softmax(scores: &[f64], temperature: f64) -> Vec<f64> {
    let max = scores.iter().copied().fold(f64::NEG_INFINITY, f64::max);
    let exps: Vec<f64> = scores.iter().map(|s| ((s - max) / temperature).exp()).collect();
    let sum: f64 = exps.iter().sum();
    exps.iter().map(|e| e / sum).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn b(answer: Option<&str>, score: f32) -> Ballot {
        Ballot { answer: answer.map(str::to_owned), score: Some(score), flagged: false }
    }

    #[test]
    fn majority_wins_and_the_order_follows_groups_then_reward() {
        let ballots = [
            b(Some("7"), 3.0),
            b(Some("8"), 1.0),
            b(Some("8"), 0.5),
            b(None, 9.0),
            b(Some("7"), -1.0),
            b(Some("8"), 2.0),
        ];
        let t = tally(&ballots, Weighting::Count, true).unwrap();
        assert_eq!(t.answer, "8");
        assert_eq!((t.winner_voters, t.voters), (3, 5));
        assert_eq!(t.winner_weight, 3.0);
        // Reward order (best first): 3, 0, 5, 1, 2, 4.
        assert_eq!(order(&[3, 0, 5, 1, 2, 4], &t), vec![5, 1, 2, 0, 4, 3]);
    }

    #[test]
    fn weighted_vote_can_overturn_a_bare_majority() {
        let ballots = [b(Some("a"), 5.0), b(Some("b"), 0.0), b(Some("b"), 0.1), b(Some("b"), -0.2)];
        assert_eq!(tally(&ballots, Weighting::Count, true).unwrap().answer, "b");
        let w = tally(&ballots, Weighting::Softmax { temperature: 1.0 }, true).unwrap();
        assert_eq!(w.answer, "a");
        assert!((w.total_weight - 1.0).abs() < 1e-12);
        assert!(w.winner_weight > 0.9, "{}", w.winner_weight);
        // A high temperature flattens the weights back to a count.
        assert_eq!(tally(&ballots, Weighting::Softmax { temperature: 100.0 }, true).unwrap().answer, "b");
    }

    #[test]
    fn ties_go_to_the_higher_summed_reward_then_the_lowest_index() {
        let t = tally(&[b(Some("x"), 1.0), b(Some("y"), 2.0)], Weighting::Count, true).unwrap();
        assert_eq!(t.answer, "y");
        let t = tally(&[b(Some("x"), 1.0), b(Some("y"), 1.0)], Weighting::Count, true).unwrap();
        assert_eq!(t.answer, "x");
        let t = tally(&[b(Some("y"), 1.0), b(Some("x"), 1.0)], Weighting::Count, true).unwrap();
        assert_eq!(t.answer, "y");
    }

    #[test]
    fn flagged_candidates_vote_only_when_nobody_else_can() {
        let cut = |a: &str| Ballot { answer: Some(a.into()), score: Some(0.0), flagged: true };
        let ballots = [cut("9"), cut("9"), b(Some("4"), 0.0)];
        assert_eq!(tally(&ballots, Weighting::Count, true).unwrap().answer, "4");
        assert_eq!(tally(&ballots, Weighting::Count, false).unwrap().answer, "9", "guard off: everyone votes");
        assert_eq!(tally(&[cut("9"), b(None, 1.0)], Weighting::Count, true).unwrap().answer, "9");
    }

    #[test]
    fn nobody_votes_without_answers_and_weights_need_scores() {
        assert_eq!(tally(&[b(None, 1.0), b(None, 2.0)], Weighting::Count, true), None);
        let unscored = Ballot { answer: Some("1".into()), score: None, flagged: false };
        assert_eq!(tally(std::slice::from_ref(&unscored), Weighting::Softmax { temperature: 1.0 }, true), None);
        assert_eq!(tally(&[unscored], Weighting::Count, true).unwrap().answer, "1");
    }

    #[test]
    fn decided_only_when_the_unfinished_cannot_catch_up() {
        assert!(!decided([], 3));
        assert!(decided(["a"], 0));
        assert!(!decided(["a"], 1));
        assert!(decided(["a", "a"], 1));
        assert!(!decided(["a", "a", "b"], 1), "2 vs 1+1 would tie");
        assert!(decided(["a", "a", "a", "b"], 1));
        assert!(decided(["a", "a", "a", "b", "c"], 0));
    }
}
