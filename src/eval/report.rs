//! The numbers of `bon-proxy eval` per n, and `results.json` / `report.md`.

use std::{fmt::Write as _, path::Path};

use serde::Serialize;

use super::{
    EvalArgs, EvalError, PromptRun, Sample,
    accuracy::{self, Accuracy, Simulate},
    keys, stats,
};
use crate::bon::scores::kl_bound;

/// Everything `eval` measured.
#[derive(Clone, Debug, Serialize)]
pub struct Results {
    pub reward_model: String,
    pub upstream_model: String,
    pub judge_model: Option<String>,
    pub prompts: usize,
    pub samples_per_prompt: u32,
    pub max_tokens: u32,
    pub temperature: f64,
    pub guard: bool,
    /// Samples that failed (upstream or scoring), of all requested.
    pub failed_samples: usize,
    pub judge_failures: usize,
    /// Mean reward of the greedy (temperature 0) answers.
    pub greedy_reward: Option<f64>,
    pub greedy_rating: Option<f64>,
    /// How answers were extracted (`--answer`) and the weighted vote's temperature, when accuracy is reported.
    pub answer: Option<String>,
    pub vote_temperature: f64,
    pub by_n: Vec<NResult>,
    /// Accuracy by the samples' confidence, least confident first (when samples carry one and prompts an answer).
    pub reliability: Vec<accuracy::Reliability>,
    pub confidence_window: usize,
    /// The online stop's percentile and the history it needs first (replayed).
    pub confidence_percentile: f64,
    pub confidence_min_history: usize,
}

/// The numbers for one n, averaged over the prompts with at least n successful samples.
#[derive(Clone, Debug, Default, Serialize)]
pub struct NResult {
    pub n: u32,
    pub prompts: usize,
    /// E[reward of the best of n] (exact over all n-subsets).
    pub best_of_n_reward: Option<f64>,
    /// E[reward of one sample].
    pub single_reward: Option<f64>,
    /// Words in the picked answers vs in all answers (a length-bias signal).
    pub picked_words: Option<f64>,
    pub all_words: Option<f64>,
    /// Share of picks flagged repetitive or truncated (exact over subsets).
    pub picked_flagged: Option<f64>,
    /// log n - (n-1)/n.
    pub kl_bound: f64,
    /// E[judge rating of the best of n] / of one sample (1-9), when judged.
    pub best_of_n_rating: Option<f64>,
    pub single_rating: Option<f64>,
    pub vs_single: Option<WinRate>,
    pub vs_greedy: Option<WinRate>,
    /// Accuracy per strategy against the prompts' reference answers, when they have any.
    pub accuracy: Option<Accuracy>,
    /// What `confidence` picks beside the reward model's pick, when samples carry a confidence.
    pub confidence_pick: Option<super::confidence_report::ConfidencePick>,
}

/// Pairwise outcome counts: a preference above 0.55 is a win, below 0.45 a loss, between a tie.
#[derive(Clone, Debug, Default, Serialize)]
pub struct WinRate {
    pub wins: usize,
    pub ties: usize,
    pub losses: usize,
    /// (wins + ties / 2) / judged.
    pub win_rate: f64,
    /// Mean P(pick better).
    pub mean_preference: f64,
}

const TIE_BAND: f64 = 0.05;

fn win_rate(prefs: &[f64]) -> Option<WinRate> {
    if prefs.is_empty() {
        return None;
    }
    let wins = prefs.iter().filter(|&&p| p > 0.5 + TIE_BAND).count();
    let losses = prefs.iter().filter(|&&p| p < 0.5 - TIE_BAND).count();
    let ties = prefs.len() - wins - losses;
    Some(WinRate {
        wins,
        ties,
        losses,
        win_rate: (wins as f64 + ties as f64 / 2.0) / prefs.len() as f64,
        mean_preference: prefs.iter().sum::<f64>() / prefs.len() as f64,
    })
}

/// The per-n numbers from the prompt runs.
pub fn summarise(runs: &[PromptRun], ns: &[u32], reward_model: &str, args: &EvalArgs, judged: bool) -> Results {
    let guard = args.degenerate_guard == crate::bon::Switch::On;
    let referenced = runs.iter().any(|r| r.answer.is_some());
    let sim = Simulate {
        guard,
        vote_temperature: args.vote_temperature,
        confidence_keep: args.confidence_keep,
        window: args.confidence_window,
        percentile: args.confidence_percentile,
        history: args.confidence_history,
        min_history: args.confidence_min_history,
    };
    let with_answers: Vec<(Option<&str>, &[Sample], &Sample)> =
        runs.iter().map(|r| (r.answer.as_deref(), r.samples.as_slice(), &r.greedy)).collect();
    let by_n = ns
        .iter()
        .map(|&n| NResult {
            accuracy: referenced.then(|| accuracy::accuracy(&with_answers, n as usize, sim)),
            confidence_pick: super::confidence_report::measure(runs, n as usize, guard),
            ..for_n(runs, n, guard)
        })
        .collect();
    let failed = runs.iter().flat_map(|r| r.samples.iter().chain([&r.greedy])).filter(|s| !s.ok()).count();
    let judge_failures = if judged {
        let ratings = runs
            .iter()
            .flat_map(|r| r.samples.iter().chain([&r.greedy]))
            .filter(|s| s.ok() && s.rating.is_none())
            .count();
        let pairs = runs
            .iter()
            .flat_map(|r| &r.pairwise)
            .map(|p| usize::from(p.vs_single.is_err()) + usize::from(p.vs_greedy.is_err()))
            .sum::<usize>();
        ratings + pairs
    } else {
        0
    };
    Results {
        reward_model: reward_model.to_owned(),
        upstream_model: args.model.clone(),
        judge_model: judged.then(|| args.judge_model.clone()),
        prompts: runs.len(),
        samples_per_prompt: ns.iter().copied().max().unwrap_or(1),
        max_tokens: args.max_tokens,
        temperature: args.temperature,
        guard,
        failed_samples: failed,
        judge_failures,
        greedy_reward: stats::mean(
            runs.iter().filter(|r| r.greedy.ok()).filter_map(|r| r.greedy.reward.map(f64::from)),
        ),
        greedy_rating: stats::mean(runs.iter().filter_map(|r| r.greedy.rating)),
        answer: referenced.then(|| args.answer.spec()),
        vote_temperature: args.vote_temperature,
        by_n,
        confidence_window: args.confidence_window,
        confidence_percentile: args.confidence_percentile,
        confidence_min_history: args.confidence_min_history,
        reliability: if referenced { accuracy::reliability(&with_answers, 5) } else { Vec::new() },
    }
}

fn for_n(runs: &[PromptRun], n: u32, guard: bool) -> NResult {
    let mut acc = Acc::default();
    for run in runs {
        let ok: Vec<Sample> = run.samples.iter().filter(|s| s.ok()).cloned().collect();
        let k = keys(&ok, guard);
        let value = |f: &dyn Fn(&Sample) -> f64| ok.iter().map(f).collect::<Vec<f64>>();
        let Some(reward) = stats::expected_pick(&k, &value(&|s| f64::from(s.reward.unwrap_or(0.0))), n as usize) else {
            continue;
        };
        acc.prompts += 1;
        acc.best.push(reward);
        acc.single.extend(stats::mean(ok.iter().filter_map(|s| s.reward.map(f64::from))));
        acc.picked_words.extend(stats::expected_pick(&k, &value(&|s| s.words as f64), n as usize));
        acc.all_words.extend(stats::mean(ok.iter().map(|s| s.words as f64)));
        acc.flagged.extend(stats::expected_pick(&k, &value(&|s| f64::from(u8::from(!s.flags.is_empty()))), n as usize));
        if ok.iter().all(|s| s.rating.is_some()) {
            acc.best_rating.extend(stats::expected_pick(&k, &value(&|s| s.rating.unwrap_or(0.0)), n as usize));
            acc.single_rating.extend(stats::mean(ok.iter().filter_map(|s| s.rating)));
        }
        if let Some(p) = run.pairwise.iter().find(|p| p.n == n) {
            acc.vs_single.extend(p.vs_single.as_ref().ok());
            acc.vs_greedy.extend(p.vs_greedy.as_ref().ok());
        }
    }
    NResult {
        n,
        prompts: acc.prompts,
        best_of_n_reward: stats::mean(acc.best),
        single_reward: stats::mean(acc.single),
        picked_words: stats::mean(acc.picked_words),
        all_words: stats::mean(acc.all_words),
        picked_flagged: stats::mean(acc.flagged),
        kl_bound: kl_bound(n),
        best_of_n_rating: stats::mean(acc.best_rating),
        single_rating: stats::mean(acc.single_rating),
        vs_single: win_rate(&acc.vs_single),
        vs_greedy: win_rate(&acc.vs_greedy),
        accuracy: None,
        confidence_pick: None,
    }
}

#[derive(Default)]
struct Acc {
    prompts: usize,
    best: Vec<f64>,
    single: Vec<f64>,
    picked_words: Vec<f64>,
    all_words: Vec<f64>,
    flagged: Vec<f64>,
    best_rating: Vec<f64>,
    single_rating: Vec<f64>,
    vs_single: Vec<f64>,
    vs_greedy: Vec<f64>,
}

/// `results.json` (the numbers, and every sample) and `report.md`.
pub fn write(out: &Path, results: &Results, runs: &[PromptRun]) -> Result<(), EvalError> {
    let json = serde_json::json!({"results": results, "prompts": runs});
    let write = |name: &str, text: String| {
        std::fs::write(out.join(name), text).map_err(|e| EvalError::Io(out.join(name).display().to_string(), e))
    };
    write("results.json", serde_json::to_string_pretty(&json)?)?;
    write("report.md", markdown(results))
}

pub(super) fn num(x: Option<f64>, digits: usize) -> String {
    x.map_or_else(|| "–".to_owned(), |v| format!("{v:.digits$}"))
}

fn rate(w: Option<&WinRate>) -> String {
    w.map_or_else(|| "–".to_owned(), |w| format!("{:.2} ({}/{}/{})", w.win_rate, w.wins, w.ties, w.losses))
}

/// Accuracy per strategy against the reference answers.
fn accuracy_section(s: &mut String, r: &Results, answer: &str) {
    let _ = writeln!(s, "## Accuracy against reference answers\n");
    let _ = writeln!(
        s,
        "Answers extracted with `{answer}`; weighted vote at temperature {}. Each cell is the share of prompts whose \
         pick is right, exact over every n-subset of the same samples (estimated from drawn subsets where there are too many, said below the table). *any* is the share where some sample of the \
         subset is right (no selection can beat it); *stop tokens* the completion tokens a vote with stop on \
         agreement spends, as a share of all n answers' (same accuracy as *vote*).\n",
        r.vote_temperature
    );
    let _ = writeln!(
        s,
        "| n | prompts | single | greedy | reward | vote | weighted vote | judge | confidence | confidence vote | any | \
         stop tokens |\n|---|---|---|---|---|---|---|---|---|---|---|---|"
    );
    for x in &r.by_n {
        let Some(a) = &x.accuracy else { continue };
        let _ = writeln!(
            s,
            "| {} | {} | {} | {} | {} | {} | {} | {} | {} | {} | {} | {} |",
            x.n,
            a.prompts,
            num(a.single, 3),
            num(a.greedy, 3),
            num(a.reward, 3),
            num(a.vote, 3),
            num(a.weighted_vote, 3),
            num(a.judge, 3),
            num(a.confidence, 3),
            num(a.confidence_vote, 3),
            num(a.any_correct, 3),
            num(a.agreement_tokens, 2)
        );
    }
    for x in &r.by_n {
        let Some(sampled) = x.accuracy.as_ref().and_then(|a| a.sampled.as_ref()) else { continue };
        let _ = writeln!(
            s,
            "\nn = {}: more than {} subsets per prompt, so *vote*, *weighted vote*, *any* and *stop tokens* are \
             estimated from {} uniformly drawn subsets on {} prompts (unbiased; standard errors {:.3}, {:.3}, {:.3}, \
             {:.3}).",
            x.n,
            super::accuracy::EXACT_SUBSETS,
            sampled.draws,
            sampled.prompts,
            sampled.vote_se,
            sampled.weighted_vote_se,
            sampled.any_correct_se,
            sampled.agreement_tokens_se
        );
    }
    let _ = writeln!(s, "\n![accuracy vs n](accuracy_vs_n.png)\n");
    if !r.reliability.is_empty() {
        let _ = writeln!(
            s,
            "Reliability: the samples in five bands of equal count by their lowest group confidence (window {}), \
             and how often each band is right. A confidence worth selecting by rises with accuracy.\n\n\
             | confidence | samples | accuracy |\n|---|---|---|",
            r.confidence_window
        );
        for b in &r.reliability {
            let _ = writeln!(s, "| {:.2}–{:.2} | {} | {:.3} |", b.from, b.to, b.samples, b.accuracy);
        }
        let _ = writeln!(s, "\n![reliability](reliability.png)\n");
    }
}

/// The report: setup, the reward table, the judge table, plots, and how to read them.
pub fn markdown(r: &Results) -> String {
    let mut s = String::new();
    let _ = writeln!(s, "# Best-of-N evaluation\n");
    let _ = writeln!(
        s,
        "{} prompts, {} samples each (temperature {}, max_tokens {}) plus one greedy answer from `{}`; reward model \
         `{}`; degenerate-text guard {}; judge: {}. Failed samples: {}; judge failures: {}.\n",
        r.prompts,
        r.samples_per_prompt,
        r.temperature,
        r.max_tokens,
        r.upstream_model,
        r.reward_model,
        if r.guard { "on" } else { "off" },
        r.judge_model.as_deref().map_or_else(|| "none".to_owned(), |m| format!("`{m}`")),
        r.failed_samples,
        r.judge_failures,
    );
    let _ = writeln!(s, "## Reward\n");
    let _ = writeln!(
        s,
        "| n | prompts | best-of-n reward | single sample | greedy | gain over single | picked words | all words | picked flagged | KL bound |"
    );
    let _ = writeln!(s, "|---|---|---|---|---|---|---|---|---|---|");
    for x in &r.by_n {
        let gain = x.best_of_n_reward.zip(x.single_reward).map(|(b, s)| b - s);
        let _ = writeln!(
            s,
            "| {} | {} | {} | {} | {} | {} | {} | {} | {} | {:.3} |",
            x.n,
            x.prompts,
            num(x.best_of_n_reward, 3),
            num(x.single_reward, 3),
            num(r.greedy_reward, 3),
            num(gain, 3),
            num(x.picked_words, 1),
            num(x.all_words, 1),
            num(x.picked_flagged, 3),
            x.kl_bound
        );
    }
    let _ = writeln!(s, "\n![reward vs n](reward_vs_n.png)\n\n![length of picked vs all answers](length_vs_n.png)\n");
    if r.judge_model.is_some() {
        let _ = writeln!(s, "## Judge\n");
        let _ = writeln!(
            s,
            "Ratings are the judge's expected score 1–9; win rates count a pairwise preference above 0.55 as a win, \
             below 0.45 as a loss (wins/ties/losses), each pair judged in both orders.\n"
        );
        let _ = writeln!(
            s,
            "| n | best-of-n rating | single rating | greedy rating | win rate vs single | win rate vs greedy |"
        );
        let _ = writeln!(s, "|---|---|---|---|---|---|");
        for x in &r.by_n {
            let _ = writeln!(
                s,
                "| {} | {} | {} | {} | {} | {} |",
                x.n,
                num(x.best_of_n_rating, 2),
                num(x.single_rating, 2),
                num(r.greedy_rating, 2),
                rate(x.vs_single.as_ref()),
                rate(x.vs_greedy.as_ref())
            );
        }
        let _ = writeln!(s, "\n![judge win rate vs n](judge_vs_n.png)\n");
    }
    if let Some(answer) = &r.answer {
        accuracy_section(&mut s, r, answer);
        super::confidence_report::online_section(&mut s, r);
    }
    super::confidence_report::pick_section(&mut s, r);
    let _ = writeln!(s, "## How to read this\n");
    let _ = writeln!(
        s,
        "- **best-of-n reward** is the reward of the answer the proxy would return. With the guard off it rises with \
         n by construction (the reward model's own choice); with the guard on it need not, since a flagged answer \
         (repetitive, or cut by the length limit) ranks below every clean one whatever its reward. What matters is \
         whether the gain is real: the judge columns check it with an independent model.\n\
         - **picked words vs all words**: a pick much longer than the average answer means the reward model may be \
         buying length, not quality.\n\
         - **KL bound** log n − (n−1)/n is how far Best-of-n moves from the model's own distribution; past the point \
         where the judge's win rate stops rising, a larger n only over-optimises the reward model (Gao et al. 2023).\n\
         - Every number comes from the same samples: the n = 1 row is one random sample, the n = k row the exact \
         expectation over all k-subsets of the generated samples."
    );
    s
}
