//! `eval --judge`: the judge's rating of every answer, and the pairwise judgements of each n's pick against sample 0
//! and greedy.

use futures::{StreamExt, stream};

use super::{Judge, JudgeError, Pairwise, PromptRun, Sample, keys, progress, stats};

/// Ratings of every answer, and the pairwise judgements of each n's pick.
pub(super) async fn judge_all(judge: &Judge, runs: &mut [PromptRun], ns: &[u32], concurrency: usize, guard: bool) {
    let request = |run: &PromptRun| crate::select::judge::request_text(&run.messages);
    // Ratings.
    let jobs: Vec<(usize, usize)> =
        runs.iter().enumerate().flat_map(|(p, r)| (0..=r.samples.len()).map(move |i| (p, i))).collect();
    let bar = progress(jobs.len() as u64, "judging (ratings)");
    let ratings: Vec<(usize, usize, Result<f64, JudgeError>)> = stream::iter(jobs)
        .map(|(p, i)| {
            let run = &runs[p];
            let s = run.samples.get(i).unwrap_or(&run.greedy);
            let (req, answer, ok, bar) = (request(run), s.text.clone(), s.ok(), &bar);
            async move {
                let r = if ok {
                    judge.rate(&req, &answer).await.map(|j| j.value)
                } else {
                    Err(JudgeError::Upstream("no answer".into()))
                };
                bar.inc(1);
                (p, i, r)
            }
        })
        .buffer_unordered(concurrency)
        .collect()
        .await;
    bar.finish_and_clear();
    let mut rating_errors = Vec::new();
    for (p, i, r) in ratings {
        let run = &mut runs[p];
        let s = if i < run.samples.len() { &mut run.samples[i] } else { &mut run.greedy };
        match r {
            Ok(v) => s.rating = Some(v),
            Err(e) if s.ok() => rating_errors.push(e),
            Err(_) => {}
        }
    }
    if let Some(e) = rating_errors.first() {
        tracing::warn!(failures = rating_errors.len(), first = %e, "the judge could not rate some answers");
    }
    // Pairwise: the pick among the first n samples vs sample 0 and vs greedy.
    let jobs: Vec<(usize, u32, usize)> = runs
        .iter()
        .enumerate()
        .flat_map(|(p, r)| {
            let keys = keys(&r.samples, guard);
            ns.iter().filter_map(move |&n| {
                let usable = r.samples.iter().take(n as usize).all(Sample::ok) && r.samples.len() >= n as usize;
                (usable && r.greedy.ok()).then(|| stats::pick_of_first(&keys, n as usize).map(|pick| (p, n, pick)))?
            })
        })
        .collect();
    let bar = progress(jobs.len() as u64, "judging (pairs)");
    let pairs: Vec<(usize, Pairwise)> = stream::iter(jobs)
        .map(|(p, n, pick)| {
            let run = &runs[p];
            let (req, picked, first, greedy, bar) = (
                request(run),
                run.samples[pick].text.clone(),
                run.samples[0].text.clone(),
                run.greedy.text.clone(),
                &bar,
            );
            async move {
                let vs_single =
                    if pick == 0 { Ok(0.5) } else { judge.prefer(&req, &picked, &first).await.map(|j| j.value) };
                let vs_greedy = judge.prefer(&req, &picked, &greedy).await.map(|j| j.value);
                bar.inc(1);
                let as_text = |r: Result<f64, JudgeError>| r.map_err(|e| e.to_string());
                (p, Pairwise { n, pick, vs_single: as_text(vs_single), vs_greedy: as_text(vs_greedy) })
            }
        })
        .buffer_unordered(concurrency)
        .collect()
        .await;
    bar.finish_and_clear();
    for (p, pw) in pairs {
        runs[p].pairwise.push(pw);
    }
    for run in runs.iter_mut() {
        run.pairwise.sort_by_key(|pw| pw.n);
    }
}
