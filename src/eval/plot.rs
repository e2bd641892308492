//! PNG plots of `bon-proxy eval`, drawn by `plotters` with an embedded font (nothing else needed at run time).

use std::path::Path;

use plotters::prelude::*;

use super::{EvalError, report::Results};

const FONT: &[u8] = include_bytes!("font/DejaVuSans-subset.ttf");
const FAMILY: &str = "sans-serif";
const SIZE: (u32, u32) = (800, 480);

/// One line: a label, a colour, and (n, value) points.
struct Line {
    label: &'static str,
    color: RGBColor,
    points: Vec<(f64, f64)>,
}

/// `reward_vs_n.png`, `length_vs_n.png`, and `judge_vs_n.png` when judged.
pub fn write_all(out: &Path, r: &Results) -> Result<(), EvalError> {
    register_font()?;
    let pts = |f: &dyn Fn(&super::NResult) -> Option<f64>| -> Vec<(f64, f64)> {
        r.by_n.iter().filter_map(|x| Some((f64::from(x.n), f(x)?))).collect()
    };
    let flat = |v: Option<f64>| -> Vec<(f64, f64)> {
        v.map(|v| r.by_n.iter().map(|x| (f64::from(x.n), v)).collect()).unwrap_or_default()
    };
    chart(
        &out.join("reward_vs_n.png"),
        "Reward of the pick vs n",
        "reward",
        &[
            Line { label: "best of n", color: BLUE, points: pts(&|x| x.best_of_n_reward) },
            Line { label: "single sample", color: RED, points: pts(&|x| x.single_reward) },
            Line { label: "greedy", color: BLACK, points: flat(r.greedy_reward) },
        ],
    )?;
    chart(
        &out.join("length_vs_n.png"),
        "Length of the pick vs all answers",
        "words",
        &[
            Line { label: "picked answers", color: BLUE, points: pts(&|x| x.picked_words) },
            Line { label: "all answers", color: RED, points: pts(&|x| x.all_words) },
        ],
    )?;
    if r.judge_model.is_some() {
        chart(
            &out.join("judge_vs_n.png"),
            "Judge: win rate of best of n",
            "win rate",
            &[
                Line {
                    label: "vs single sample",
                    color: BLUE,
                    points: pts(&|x| x.vs_single.as_ref().map(|w| w.win_rate)),
                },
                Line { label: "vs greedy", color: BLACK, points: pts(&|x| x.vs_greedy.as_ref().map(|w| w.win_rate)) },
                Line { label: "even", color: RGBColor(150, 150, 150), points: flat(Some(0.5)) },
            ],
        )?;
    }
    Ok(())
}

fn register_font() -> Result<(), EvalError> {
    plotters::style::register_font(FAMILY, FontStyle::Normal, FONT)
        .map_err(|_| EvalError::Plot("cannot load the embedded font".into()))
}

/// A line chart over n on a log2 axis.
fn chart(path: &Path, title: &str, y_label: &str, lines: &[Line]) -> Result<(), EvalError> {
    let err = |e: &dyn std::fmt::Display| EvalError::Plot(format!("{}: {e}", path.display()));
    let all: Vec<&(f64, f64)> = lines.iter().flat_map(|l| &l.points).collect();
    let x_max = all.iter().map(|p| p.0).fold(1.0, f64::max);
    let (mut lo, mut hi) =
        all.iter().fold((f64::INFINITY, f64::NEG_INFINITY), |(lo, hi), p| (lo.min(p.1), hi.max(p.1)));
    if !lo.is_finite() {
        (lo, hi) = (0.0, 1.0);
    }
    let pad = ((hi - lo) * 0.1).max(1e-3);
    let root = BitMapBackend::new(path, SIZE).into_drawing_area();
    root.fill(&WHITE).map_err(|e| err(&e))?;
    let mut chart = ChartBuilder::on(&root)
        .caption(title, (FAMILY, 22))
        .margin(16)
        .x_label_area_size(40)
        .y_label_area_size(60)
        .build_cartesian_2d((1.0..x_max.max(2.0)).log_scale(), (lo - pad)..(hi + pad))
        .map_err(|e| err(&e))?;
    chart
        .configure_mesh()
        .x_desc("n (log scale)")
        .y_desc(y_label)
        .label_style((FAMILY, 14))
        .x_label_formatter(&|x| format!("{x:.0}"))
        .draw()
        .map_err(|e| err(&e))?;
    for line in lines.iter().filter(|l| !l.points.is_empty()) {
        let color = line.color;
        chart
            .draw_series(LineSeries::new(line.points.clone(), color.stroke_width(2)))
            .map_err(|e| err(&e))?
            .label(line.label)
            .legend(move |(x, y)| PathElement::new(vec![(x, y), (x + 20, y)], color.stroke_width(2)));
        chart.draw_series(line.points.iter().map(|&p| Circle::new(p, 4, color.filled()))).map_err(|e| err(&e))?;
    }
    chart
        .configure_series_labels()
        .label_font((FAMILY, 14))
        .background_style(WHITE.mix(0.8))
        .border_style(BLACK)
        .position(SeriesLabelPosition::LowerRight)
        .draw()
        .map_err(|e| err(&e))?;
    root.present().map_err(|e| err(&e))?;
    Ok(())
}
