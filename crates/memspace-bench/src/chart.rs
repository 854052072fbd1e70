//! The SVG file of `--plot`: pushes per second against the number of workers, and against the
//! size of a list, as line charts written by hand (no plotting library).
//!
//! Both axes of each chart start at round values and step by 1, 2 or 5 × 10^k (the workers
//! axis by whole workers), and name their unit; every label lies inside the canvas. Each
//! chart is a `<g class="chart">`, its tick labels `<text class="tick-x">` and
//! `<text class="tick-y">`, so that a test can find them.

#![allow(
    clippy::cast_precision_loss,
    clippy::cast_possible_truncation,
    clippy::cast_sign_loss,
    reason = "tick counts and decimal places are small whole numbers computed as floats"
)]

use std::fmt::Write as _;
use std::path::Path;

use anyhow::Context;

use crate::report::Scaling;

/// The canvas: two charts, one above the other.
const WIDTH: f64 = 640.0;
const CHART_HEIGHT: f64 = 420.0;
/// Room for the title and the legend above the plotting area, and for tick labels and the
/// axis name on each side.
const TOP: f64 = 70.0;
const BOTTOM: f64 = 56.0;
const LEFT: f64 = 72.0;
const RIGHT: f64 = 36.0;

/// One line of a chart: a label, a colour, whether it is dashed, and its y values.
struct Series<'a> {
    label: &'a str,
    colour: &'a str,
    dashed: bool,
    values: Vec<f64>,
}

/// An axis: its name (with its unit), the factor that turns a value into the unit, and
/// whether its ticks must be whole numbers.
struct Axis<'a> {
    name: &'a str,
    per_unit: f64,
    whole: bool,
}

/// Writes the two scaling curves into the SVG file `path`: against the number of workers, and
/// against the list's size (`(items in the list, pushes per second)`).
pub(crate) fn write(
    path: &Path,
    scaling: &[Scaling],
    by_size: &[(f64, f64)],
) -> anyhow::Result<()> {
    std::fs::write(path, svg(scaling, by_size))
        .with_context(|| format!("writing the scaling chart {}", path.display()))
}

/// The SVG text of [`write`].
fn svg(scaling: &[Scaling], by_size: &[(f64, f64)]) -> String {
    let height = 2.0 * CHART_HEIGHT;
    let mut svg = format!(
        r#"<svg xmlns="http://www.w3.org/2000/svg" width="{WIDTH}" height="{height}" viewBox="0 0 {WIDTH} {height}" font-family="sans-serif" font-size="12">
<rect width="100%" height="100%" fill="white"/>
"#
    );
    let workers: Vec<f64> = scaling.iter().map(|s| f64::from(s.workers)).collect();
    let series = [
        Series {
            label: "SharedVec, processes",
            colour: "#1f77b4",
            dashed: false,
            values: scaling.iter().map(|s| s.shared_vec).collect(),
        },
        Series {
            label: "Mutex<Vec>, threads",
            colour: "#ff7f0e",
            dashed: true,
            values: scaling.iter().map(|s| s.mutex_vec).collect(),
        },
    ];
    let x_axis = Axis {
        name: "workers (processes or threads)",
        per_unit: 1.0,
        whole: true,
    };
    chart(
        &mut svg,
        0.0,
        "u64 pushes per second against workers, timed once all have started",
        &x_axis,
        &workers,
        &series,
    );
    let sizes: Vec<f64> = by_size.iter().map(|&(n, _)| n).collect();
    let x_axis = Axis {
        name: "items in the list (thousands)",
        per_unit: 1e3,
        whole: false,
    };
    let series = [Series {
        label: "SharedList<i64>, one process",
        colour: "#2ca02c",
        dashed: false,
        values: by_size.iter().map(|&(_, r)| r).collect(),
    }];
    chart(
        &mut svg,
        CHART_HEIGHT,
        "SharedList<i64> pushes per second against its size",
        &x_axis,
        &sizes,
        &series,
    );
    svg.push_str("</svg>\n");
    svg
}

/// Escapes text for SVG.
fn escape(text: &str) -> String {
    text.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
}

/// The unit of a rate axis whose largest value is `max`: the factor and the name.
fn rate_unit(max: f64) -> (f64, &'static str) {
    if max >= 1e6 {
        (1e6, "M pushes/s")
    } else if max >= 1e3 {
        (1e3, "k pushes/s")
    } else {
        (1.0, "pushes/s")
    }
}

/// The round step (1, 2 or 5 × 10^k) that cuts `span` into at most about `ticks` parts.
fn round_step(span: f64, ticks: f64) -> f64 {
    let raw = (span / ticks).max(f64::MIN_POSITIVE);
    let magnitude = 10f64.powf(raw.log10().floor());
    let step = [1.0, 2.0, 5.0, 10.0]
        .into_iter()
        .find(|&m| m * magnitude >= raw * (1.0 - 1e-9))
        .unwrap_or(10.0);
    step * magnitude
}

/// The ticks of an axis covering `min..=max` (in the axis's unit): multiples of a round step,
/// from the one at or below `min` to the one at or above `max`, and how many decimals their
/// labels need.
fn ticks(min: f64, max: f64, whole: bool) -> (Vec<f64>, usize) {
    let (min, max) = if max > min {
        (min, max)
    } else {
        (min, min + 1.0)
    };
    // A few workers get a tick each.
    let step = if whole && max - min <= 10.0 {
        1.0
    } else {
        round_step(max - min, 5.0).max(if whole { 1.0 } else { 0.0 })
    };
    let first = (min / step + 1e-9).floor() as i64;
    let last = (max / step - 1e-9).ceil() as i64;
    let decimals = if step >= 1.0 {
        0
    } else {
        (-step.log10().floor()) as usize
    };
    // Multiplying the index (rather than adding the step) keeps the values round.
    let values = (first..=last).map(|i| i as f64 * step).collect();
    (values, decimals)
}

/// Draws one line chart into `svg`, in a `WIDTH` x `CHART_HEIGHT` box whose top edge is at
/// `top`: the y axis from 0, in a unit chosen from the largest value.
fn chart(
    svg: &mut String,
    top: f64,
    title: &str,
    x_axis: &Axis<'_>,
    xs: &[f64],
    series: &[Series<'_>],
) {
    let y_max = series
        .iter()
        .flat_map(|s| s.values.iter().copied())
        .fold(0.0f64, f64::max);
    let (per_unit, y_name) = rate_unit(y_max);
    let (y_ticks, y_decimals) = ticks(0.0, y_max / per_unit, false);
    let x_min = xs.iter().copied().fold(f64::INFINITY, f64::min) / x_axis.per_unit;
    let x_max = xs.iter().copied().fold(f64::NEG_INFINITY, f64::max) / x_axis.per_unit;
    let (x_ticks, x_decimals) = if xs.is_empty() {
        ticks(0.0, 1.0, x_axis.whole)
    } else if x_axis.whole {
        ticks(x_min, x_max, true)
    } else {
        ticks(0.0, x_max, false)
    };
    let (x_lo, x_hi) = (x_ticks[0], x_ticks[x_ticks.len() - 1]);
    let (y_lo, y_hi) = (y_ticks[0], y_ticks[y_ticks.len() - 1]);
    let (left, right) = (LEFT, WIDTH - RIGHT);
    let (plot_top, bottom) = (top + TOP, top + CHART_HEIGHT - BOTTOM);
    let x = |v: f64| left + (v / x_axis.per_unit - x_lo) / (x_hi - x_lo) * (right - left);
    let y = |v: f64| bottom - (v / per_unit - y_lo) / (y_hi - y_lo) * (bottom - plot_top);
    let mid_y = f64::midpoint(plot_top, bottom);

    // Writing into a `String` cannot fail.
    let _ = writeln!(svg, r#"<g class="chart">"#);
    let _ = writeln!(
        svg,
        r#"<text x="{}" y="{}" text-anchor="middle" font-size="15">{}</text>"#,
        WIDTH / 2.0,
        top + 24.0,
        escape(title)
    );
    legend(svg, top + 48.0, series);
    // Grid lines and tick labels.
    for &v in &y_ticks {
        let py = y(v * per_unit);
        let _ = writeln!(
            svg,
            r##"<line x1="{left}" y1="{py:.1}" x2="{right}" y2="{py:.1}" stroke="#e0e0e0"/>
<text class="tick-y" x="{:.1}" y="{:.1}" text-anchor="end">{v:.y_decimals$}</text>"##,
            left - 6.0,
            py + 4.0,
        );
    }
    for &v in &x_ticks {
        let px = x(v * x_axis.per_unit);
        let _ = writeln!(
            svg,
            r#"<line x1="{px:.1}" y1="{bottom}" x2="{px:.1}" y2="{}" stroke="black"/>
<text class="tick-x" x="{px:.1}" y="{:.1}" text-anchor="middle">{v:.x_decimals$}</text>"#,
            bottom + 5.0,
            bottom + 19.0,
        );
    }
    // The axes and their names.
    let _ = writeln!(
        svg,
        r#"<line x1="{left}" y1="{bottom}" x2="{right}" y2="{bottom}" stroke="black"/>
<line x1="{left}" y1="{plot_top}" x2="{left}" y2="{bottom}" stroke="black"/>
<text x="{}" y="{}" text-anchor="middle">{}</text>
<text x="20" y="{mid_y}" text-anchor="middle" transform="rotate(-90 20 {mid_y})">{}</text>"#,
        f64::midpoint(left, right),
        bottom + 40.0,
        escape(x_axis.name),
        escape(y_name),
    );
    curves(svg, xs, series, x, y);
    let _ = writeln!(svg, "</g>");
}

/// The legend of `series`, in a row whose baseline is at `ly`.
fn legend(svg: &mut String, ly: f64, series: &[Series<'_>]) {
    for (i, s) in series.iter().enumerate() {
        let lx = LEFT + 230.0 * i as f64;
        let dash = if s.dashed {
            r#" stroke-dasharray="6 4""#
        } else {
            ""
        };
        let _ = writeln!(
            svg,
            r#"<line x1="{lx}" y1="{}" x2="{}" y2="{}" stroke="{}" stroke-width="2"{dash}/>
<text x="{}" y="{ly}" fill="{}">{}</text>"#,
            ly - 4.0,
            lx + 28.0,
            ly - 4.0,
            s.colour,
            lx + 34.0,
            s.colour,
            escape(s.label),
        );
    }
}

/// The lines of `series` at `xs`, placed by `x` and `y`, with a dot on each measured point.
fn curves(
    svg: &mut String,
    xs: &[f64],
    series: &[Series<'_>],
    x: impl Fn(f64) -> f64,
    y: impl Fn(f64) -> f64,
) {
    for s in series {
        let points: Vec<(f64, f64)> = xs
            .iter()
            .zip(&s.values)
            .map(|(&a, &b)| (x(a), y(b)))
            .collect();
        let line: Vec<String> = points
            .iter()
            .map(|(a, b)| format!("{a:.1},{b:.1}"))
            .collect();
        let dash = if s.dashed {
            r#" stroke-dasharray="6 4""#
        } else {
            ""
        };
        let _ = writeln!(
            svg,
            r#"<polyline points="{}" fill="none" stroke="{}" stroke-width="2"{dash}/>"#,
            line.join(" "),
            s.colour,
        );
        for (a, b) in points {
            let _ = writeln!(
                svg,
                r#"<circle cx="{a:.1}" cy="{b:.1}" r="3" fill="{}"/>"#,
                s.colour
            );
        }
    }
}

#[cfg(test)]
mod tests {
    use super::{round_step, ticks};

    #[test]
    fn steps_are_one_two_or_five_times_a_power_of_ten() {
        for (span, step) in [
            (7.0, 2.0),
            (25.3, 10.0),
            (0.9, 0.2),
            (180.0, 50.0),
            (1.0, 0.2),
        ] {
            assert!(
                (round_step(span, 5.0) - step).abs() < 1e-12,
                "{span}: {step}"
            );
        }
    }

    #[test]
    fn ticks_cover_the_range() {
        let (values, decimals) = ticks(0.0, 23.1, false);
        assert_eq!(values, vec![0.0, 5.0, 10.0, 15.0, 20.0, 25.0]);
        assert_eq!(decimals, 0);
        let (values, _) = ticks(1.0, 8.0, true);
        assert_eq!(values, vec![1.0, 2.0, 3.0, 4.0, 5.0, 6.0, 7.0, 8.0]);
        let (values, _) = ticks(1.0, 64.0, true);
        assert_eq!(values, vec![0.0, 20.0, 40.0, 60.0, 80.0]);
        let (values, decimals) = ticks(0.0, 0.53, false);
        assert_eq!(values.len(), 4);
        assert_eq!(decimals, 1);
    }
}
