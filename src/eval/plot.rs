//! PNG plots of `bon-proxy eval`, drawn by `plotters` with an embedded font (nothing else needed at run time).

use std::path::Path;

use plotters::prelude::*;

use super::{EvalError, accuracy::Reliability, report::Results};

const FONT: &[u8] = include_bytes!("font/DejaVuSans-subset.ttf");
const FAMILY: &str = "sans-serif";
const SIZE: (u32, u32) = (900, 480);

/// One line: a label, a colour, and (n, value) points. A reference line (a constant to compare with) is drawn thin
/// and dashed under the others, without points.
struct Line {
    label: &'static str,
    color: RGBColor,
    points: Vec<(f64, f64)>,
    reference: bool,
}

impl Line {
    fn data(label: &'static str, color: RGBColor, points: Vec<(f64, f64)>) -> Self {
        Self { label, color, points, reference: false }
    }

    fn reference(label: &'static str, color: RGBColor, points: Vec<(f64, f64)>) -> Self {
        Self { label, color, points, reference: true }
    }
}

const GREY: RGBColor = RGBColor(150, 150, 150);
const ORANGE: RGBColor = RGBColor(230, 120, 0);
const PURPLE: RGBColor = RGBColor(140, 60, 170);
const TEAL: RGBColor = RGBColor(0, 140, 140);
const GREEN: RGBColor = RGBColor(40, 150, 60);
const BROWN: RGBColor = RGBColor(140, 90, 40);

/// `reward_vs_n.png`, `length_vs_n.png`, `judge_vs_n.png` when judged, `accuracy_vs_n.png` with reference answers,
/// `reliability.png` when the samples had confidences.
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
            Line::data("best of n", BLUE, pts(&|x| x.best_of_n_reward)),
            Line::data("single sample", RED, pts(&|x| x.single_reward)),
            Line::reference("greedy", BLACK, flat(r.greedy_reward)),
        ],
        false,
    )?;
    chart(
        &out.join("length_vs_n.png"),
        "Length of the pick vs all answers",
        "words",
        &[
            Line::data("picked answers", BLUE, pts(&|x| x.picked_words)),
            Line::data("all answers", RED, pts(&|x| x.all_words)),
        ],
        false,
    )?;
    if r.judge_model.is_some() {
        chart(
            &out.join("judge_vs_n.png"),
            "Judge: win rate of best of n",
            "win rate",
            &[
                Line::data("vs single sample", BLUE, pts(&|x| x.vs_single.as_ref().map(|w| w.win_rate))),
                Line::data("vs greedy", BLACK, pts(&|x| x.vs_greedy.as_ref().map(|w| w.win_rate))),
                Line::reference("even (0.5)", GREY, flat(Some(0.5))),
            ],
            true,
        )?;
    }
    if r.answer.is_some() {
        let acc = |f: &dyn Fn(&super::Accuracy) -> Option<f64>| pts(&|x| x.accuracy.as_ref().and_then(f));
        chart(
            &out.join("accuracy_vs_n.png"),
            "Accuracy of the pick vs n, by strategy",
            "accuracy",
            &[
                Line::data("reward", BLUE, acc(&|a| a.reward)),
                Line::data("vote", RED, acc(&|a| a.vote)),
                Line::data("weighted vote", ORANGE, acc(&|a| a.weighted_vote)),
                Line::data("judge", PURPLE, acc(&|a| a.judge)),
                Line::data("confidence", GREEN, acc(&|a| a.confidence)),
                Line::data("confidence vote", BROWN, acc(&|a| a.confidence_vote)),
                Line::data("any sample right", TEAL, acc(&|a| a.any_correct)),
                Line::reference("single sample", GREY, acc(&|a| a.single)),
                Line::reference("greedy", BLACK, acc(&|a| a.greedy)),
            ],
            true,
        )?;
    }
    if !r.reliability.is_empty() {
        reliability(&out.join("reliability.png"), &r.reliability)?;
    }
    Ok(())
}

/// The reliability plot: each confidence band's accuracy at the band's middle confidence (linear axes; accuracy on
/// 0..1), labelled with its sample count. A confidence worth selecting by rises left to right.
pub fn reliability(path: &Path, bands: &[Reliability]) -> Result<(), EvalError> {
    register_font()?;
    let err = |e: &dyn std::fmt::Display| EvalError::Plot(format!("{}: {e}", path.display()));
    let points: Vec<(f64, f64)> = bands.iter().map(|b| (f64::midpoint(b.from, b.to), b.accuracy)).collect();
    let (x_lo, x_hi) =
        bands.iter().fold((f64::INFINITY, f64::NEG_INFINITY), |(lo, hi), b| (lo.min(b.from), hi.max(b.to)));
    let (x_lo, x_hi) = if x_lo.is_finite() && x_hi > x_lo { (x_lo, x_hi) } else { (0.0, 1.0) };
    let pad = (x_hi - x_lo) * 0.05;
    let root = BitMapBackend::new(path, SIZE).into_drawing_area();
    root.fill(&WHITE).map_err(|e| err(&e))?;
    let mut chart = ChartBuilder::on(&root)
        .caption("Reliability: accuracy by the sample's confidence", (FAMILY, 22))
        .margin(16)
        .x_label_area_size(40)
        .y_label_area_size(60)
        .build_cartesian_2d(x_lo - pad..x_hi + pad, 0.0..1.0)
        .map_err(|e| err(&e))?;
    chart
        .configure_mesh()
        .x_desc("lowest group confidence (band middle)")
        .y_desc("accuracy")
        .label_style((FAMILY, 14))
        .draw()
        .map_err(|e| err(&e))?;
    chart.draw_series(LineSeries::new(points.clone(), BLUE.stroke_width(2))).map_err(|e| err(&e))?;
    chart.draw_series(points.iter().map(|&p| Circle::new(p, 5, BLUE.filled()))).map_err(|e| err(&e))?;
    for (b, &(x, y)) in bands.iter().zip(&points) {
        let label = format!("{} samples", b.samples);
        chart
            .draw_series(std::iter::once(Text::new(label, (x, (y + 0.04).min(0.97)), (FAMILY, 13))))
            .map_err(|e| err(&e))?;
    }
    root.present().map_err(|e| err(&e))?;
    Ok(())
}

fn register_font() -> Result<(), EvalError> {
    plotters::style::register_font(FAMILY, FontStyle::Normal, FONT)
        .map_err(|_| EvalError::Plot("cannot load the embedded font".into()))
}

/// Tick values from about `lo` to `hi`: a round step, the first tick at or below `lo`, the last at or above `hi`
/// (so no point lies above the highest tick).
fn y_ticks(lo: f64, hi: f64) -> Vec<f64> {
    let raw = ((hi - lo) / 5.0).max(1e-6);
    let magnitude = 10f64.powf(raw.log10().floor());
    let step = [1.0, 2.0, 2.5, 5.0, 10.0].iter().map(|m| m * magnitude).find(|s| *s >= raw).unwrap_or(raw);
    let first = (lo / step).floor() as i64;
    let last = (hi / step).ceil() as i64;
    (first..=last).map(|k| k as f64 * step).collect()
}

/// A line chart over n on a log2 axis (`share`: y from 0 to 1), ticks only at the n measured; the legend beside the plot, never over it.
fn chart(path: &Path, title: &str, y_label: &str, lines: &[Line], share: bool) -> Result<(), EvalError> {
    let err = |e: &dyn std::fmt::Display| EvalError::Plot(format!("{}: {e}", path.display()));
    let all: Vec<&(f64, f64)> = lines.iter().flat_map(|l| &l.points).collect();
    let mut xs: Vec<f64> = all.iter().map(|p| p.0).collect();
    xs.sort_by(f64::total_cmp);
    xs.dedup();
    let x_max = xs.last().copied().unwrap_or(1.0).max(2.0);
    let (mut lo, mut hi) =
        all.iter().fold((f64::INFINITY, f64::NEG_INFINITY), |(lo, hi), p| (lo.min(p.1), hi.max(p.1)));
    if !lo.is_finite() {
        (lo, hi) = (0.0, 1.0);
    }
    let pad = ((hi - lo) * 0.05).max(1e-3);
    // A share (win rate, accuracy) is drawn on 0..1 whatever the data.
    let ticks = if share { y_ticks(0.0, 1.0) } else { y_ticks(lo - pad, hi + pad) };
    let (y_lo, y_hi) = (ticks[0], ticks[ticks.len() - 1]);
    let root = BitMapBackend::new(path, SIZE).into_drawing_area();
    root.fill(&WHITE).map_err(|e| err(&e))?;
    let (plot_area, legend_area) = root.split_horizontally(SIZE.0 - LEGEND_WIDTH);
    let mut chart = ChartBuilder::on(&plot_area)
        .caption(title, (FAMILY, 22))
        .margin(16)
        .x_label_area_size(40)
        .y_label_area_size(60)
        // x is log2(n): ticks at whole powers of two, labelled only where an n was measured.
        .build_cartesian_2d(-0.15..x_max.log2() + 0.15, y_lo..y_hi)
        .map_err(|e| err(&e))?;
    let label_x = |x: &f64| {
        let n = x.exp2();
        if xs.iter().any(|v| (v - n).abs() < 1e-6) { format!("{n:.0}") } else { String::new() }
    };
    chart
        .configure_mesh()
        .x_desc("n (log scale)")
        .y_desc(y_label)
        .label_style((FAMILY, 14))
        .x_labels(x_max.log2().round() as usize + 1)
        .y_labels(ticks.len())
        .x_label_formatter(&label_x)
        .y_label_formatter(&|y| format!("{y:.3}").trim_end_matches('0').trim_end_matches('.').to_owned())
        .draw()
        .map_err(|e| err(&e))?;
    let at = |points: &[(f64, f64)]| points.iter().map(|&(n, v)| (n.log2(), v)).collect::<Vec<_>>();
    // Reference lines first, under the data.
    for line in lines.iter().filter(|l| l.reference && !l.points.is_empty()) {
        let style = line.color.stroke_width(1);
        chart.draw_series(DashedLineSeries::new(at(&line.points), 6, 4, style)).map_err(|e| err(&e))?;
    }
    for line in lines.iter().filter(|l| !l.reference && !l.points.is_empty()) {
        let color = line.color;
        let points = at(&line.points);
        chart.draw_series(LineSeries::new(points.clone(), color.stroke_width(2))).map_err(|e| err(&e))?;
        chart.draw_series(points.into_iter().map(|p| Circle::new(p, 4, color.filled()))).map_err(|e| err(&e))?;
    }
    let shown: Vec<&Line> = lines.iter().filter(|l| !l.points.is_empty()).collect();
    for (k, line) in shown.iter().enumerate() {
        let y = 60 + 24 * k as i32;
        let width = if line.reference { 1 } else { 2 };
        legend_area
            .draw(&PathElement::new(vec![(8, y), (36, y)], line.color.stroke_width(width)))
            .map_err(|e| err(&e))?;
        legend_area.draw(&Text::new(line.label, (44, y - 8), (FAMILY, 14))).map_err(|e| err(&e))?;
    }
    root.present().map_err(|e| err(&e))?;
    Ok(())
}

/// Width of the legend column.
const LEGEND_WIDTH: u32 = 170;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_reliability_plot_is_a_png_with_something_on_it() {
        let dir = std::env::temp_dir().join(format!("bon-reliability-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap_or_else(|e| panic!("{e}"));
        let path = dir.join("reliability.png");
        let band = |from: f64, to: f64, accuracy: f64| Reliability { from, to, samples: 240, accuracy };
        let bands = [
            band(0.4, 1.1, 0.01),
            band(1.1, 2.0, 0.03),
            band(2.0, 3.5, 0.05),
            band(3.5, 6.0, 0.09),
            band(6.0, 9.0, 0.1),
        ];
        reliability(&path, &bands).unwrap_or_else(|e| panic!("{e}"));
        let png = std::fs::read(&path).unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(&png[..8], b"\x89PNG\r\n\x1a\n");
        assert!(png.len() > 5_000, "looks empty: {} bytes", png.len());
        let _ = std::fs::remove_dir_all(&dir);
    }
}
