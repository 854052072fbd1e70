//! The SVG file of `--plot`: pushes per second against the number of workers, and against the
//! size of a list, as line charts written by hand (no plotting library).

#![allow(
    clippy::cast_precision_loss,
    reason = "a series' index becomes a coordinate"
)]

use std::fmt::Write as _;
use std::path::Path;

use anyhow::Context;

use crate::report::{Scaling, human};

/// One line of a chart: a label, a colour, whether it is dashed, and its y values.
struct Series<'a> {
    label: &'a str,
    colour: &'a str,
    dashed: bool,
    values: Vec<f64>,
}

/// Writes the two scaling curves into the SVG file `path`: against the number of workers, and
/// against the list's size (`(items in the list, pushes per second)`).
pub(crate) fn write(
    path: &Path,
    scaling: &[Scaling],
    by_size: &[(f64, f64)],
) -> anyhow::Result<()> {
    let mut svg = String::from(
        r#"<svg xmlns="http://www.w3.org/2000/svg" width="640" height="800" font-family="sans-serif" font-size="12">
<rect width="100%" height="100%" fill="white"/>
"#,
    );
    let workers: Vec<f64> = scaling.iter().map(|s| f64::from(s.workers)).collect();
    chart(
        &mut svg,
        0.0,
        "u64 pushes per second against workers",
        "workers",
        &workers,
        &[
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
        ],
    );
    let sizes: Vec<f64> = by_size.iter().map(|&(n, _)| n).collect();
    chart(
        &mut svg,
        400.0,
        "SharedList<i64> pushes per second against its size",
        "items in the list",
        &sizes,
        &[Series {
            label: "SharedList, one process",
            colour: "#2ca02c",
            dashed: false,
            values: by_size.iter().map(|&(_, r)| r).collect(),
        }],
    );
    svg.push_str("</svg>\n");
    std::fs::write(path, svg).with_context(|| format!("writing {}", path.display()))
}

/// Escapes text for SVG.
fn escape(text: &str) -> String {
    text.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
}

/// Draws one line chart into `svg`, in a 640 x 400 box whose top edge is at `top`.
fn chart(
    svg: &mut String,
    top: f64,
    title: &str,
    x_label: &str,
    xs: &[f64],
    series: &[Series<'_>],
) {
    let (width, height, margin) = (640.0, 400.0, 60.0);
    let y_max = series
        .iter()
        .flat_map(|s| s.values.iter().copied())
        .fold(1.0f64, f64::max)
        * 1.1;
    let (x_min, x_max) = (
        xs.iter().copied().fold(f64::INFINITY, f64::min),
        xs.iter().copied().fold(f64::NEG_INFINITY, f64::max),
    );
    let x = |v: f64| margin + (v - x_min) / (x_max - x_min).max(1e-9) * (width - 2.0 * margin);
    let y = |v: f64| top + height - margin - v / y_max * (height - 2.0 * margin);
    let (title, x_label) = (escape(title), escape(x_label));
    // Writing into a `String` cannot fail.
    let _ = write!(
        svg,
        r#"<text x="{}" y="{}" text-anchor="middle" font-size="15">{title}</text>
<line x1="{margin}" y1="{}" x2="{}" y2="{}" stroke="black"/>
<line x1="{margin}" y1="{}" x2="{margin}" y2="{}" stroke="black"/>
<text x="{}" y="{}" text-anchor="middle">{x_label}</text>
"#,
        width / 2.0,
        top + 24.0,
        top + height - margin,
        width - margin,
        top + height - margin,
        top + margin,
        top + height - margin,
        width / 2.0,
        top + height - 20.0,
    );
    for (i, s) in series.iter().enumerate() {
        let points: Vec<String> = xs
            .iter()
            .zip(&s.values)
            .map(|(&a, &b)| format!("{:.1},{:.1}", x(a), y(b)))
            .collect();
        let dash = if s.dashed {
            r#" stroke-dasharray="6 4""#
        } else {
            ""
        };
        let _ = writeln!(
            svg,
            r#"<polyline points="{}" fill="none" stroke="{}" stroke-width="2"{dash}/>
<text x="{}" y="{}" fill="{}">{}</text>"#,
            points.join(" "),
            s.colour,
            width - margin - 170.0,
            top + margin + 10.0 + 18.0 * i as f64,
            s.colour,
            escape(s.label),
        );
    }
    for &v in xs {
        let _ = writeln!(
            svg,
            r#"<text x="{:.1}" y="{:.1}" text-anchor="middle">{}</text>"#,
            x(v),
            top + height - margin + 16.0,
            human(v)
        );
    }
    for i in 0..=4 {
        let v = y_max * f64::from(i) / 4.0;
        let _ = writeln!(
            svg,
            r#"<text x="{:.1}" y="{:.1}" text-anchor="end">{}</text>"#,
            margin - 6.0,
            y(v) + 4.0,
            human(v)
        );
    }
}
