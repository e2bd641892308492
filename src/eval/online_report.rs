//! The report's table of the online confidence stop, replayed on the samples (`accuracy::online`).

use std::fmt::Write as _;

use super::report::{Results, num};

/// Accuracy and tokens with the online stop, beside `vote` and the confidence strategies without it.
pub fn section(s: &mut String, r: &Results) {
    let rows: Vec<_> = r.by_n.iter().filter_map(|x| Some((x.n, x.accuracy.as_ref()?))).collect();
    if rows.iter().all(|(_, a)| a.online_tokens.is_none()) {
        return;
    }
    let _ = writeln!(
        s,
        "### Online confidence stop\n\nReplayed as the proxy runs it: a sample stops at the first {}-token window \
         whose mean confidence falls below the {}th percentile of the earlier prompts' samples (no stop before {} of \
         them), candidates side by side, never fewer than two left. *tokens* is what the stop spends as a share of \
         all n answers' (plain `vote` spends 1.00).\n\n\
         | n | vote | confidence | confidence vote | stop: confidence | stop: confidence vote | stop: tokens |\n\
         |---|---|---|---|---|---|---|",
        r.confidence_window, r.confidence_percentile, r.confidence_min_history
    );
    for (n, a) in rows {
        let _ = writeln!(
            s,
            "| {n} | {} | {} | {} | {} | {} | {} |",
            num(a.vote, 3),
            num(a.confidence, 3),
            num(a.confidence_vote, 3),
            num(a.online_confidence, 3),
            num(a.online_confidence_vote, 3),
            num(a.online_tokens, 2)
        );
    }
    let _ = writeln!(s);
}
