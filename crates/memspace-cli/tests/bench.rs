//! `memspace bench`: run as an installed program (outside the checkout, its Python baselines
//! carried inside it), its JSON, and the chart of `--plot`.

use std::os::unix::fs::PermissionsExt as _;
use std::path::{Path, PathBuf};
use std::process::Command;

use memspace_testkit::cli::{binary, stderr, stdout, succeed};
use memspace_testkit::names::TempDir;
use serde_json::Value;

/// The `python3` on the PATH, if any.
fn real_python() -> Option<PathBuf> {
    std::env::split_paths(&std::env::var_os("PATH")?)
        .map(|dir| dir.join("python3"))
        .find(|p| p.is_file())
}

/// Checks what every row of `bench --json` has: positive values, and a speedup that is the
/// ratio of the two (or its inverse, for costs).
fn check_rows(rows: &[Value], out: &str) {
    for row in rows {
        for field in ["memspace", "baseline_value", "speedup"] {
            assert!(
                row[field].as_f64().is_some_and(|v| v > 0.0),
                "{field} in {row}"
            );
        }
        assert!(
            row["baseline"].is_string() && row["unit"].is_string(),
            "{row}"
        );
        let ratio =
            row["memspace"].as_f64().unwrap_or(0.0) / row["baseline_value"].as_f64().unwrap_or(1.0);
        let speedup = row["speedup"].as_f64().unwrap_or(0.0);
        assert!(
            (ratio - speedup).abs() < 1e-6 * ratio.max(1.0)
                || (1.0 / ratio - speedup).abs() < 1e-6 * speedup.max(1.0),
            "speedup is not the ratio: {row} in {out}"
        );
    }
}

/// Checks the progress lines a run printed on `err` (one per step, `[bar] step/steps what`,
/// stderr being no terminal here): numbered one after the other, the last one `steps/steps`.
fn check_progress(err: &str) {
    let counts: Vec<(usize, usize)> = err
        .lines()
        .filter_map(|line| line.strip_prefix('[')?.split_once("] "))
        .filter_map(|(_, rest)| {
            let (step, steps) = rest.split_whitespace().next()?.split_once('/')?;
            Some((step.parse().ok()?, steps.parse().ok()?))
        })
        .collect();
    assert!(!counts.is_empty(), "no progress lines in {err}");
    for (i, &(step, steps)) in counts.iter().enumerate() {
        assert_eq!(step, i + 1, "steps out of order in {err}");
        assert!(step <= steps, "step {step} of {steps} in {err}");
    }
    let (last, steps) = counts[counts.len() - 1];
    assert_eq!(
        last, steps,
        "the progress line announced {steps} steps: {err}"
    );
}

/// The baselines of every run, Python or not.
const RUST_BASELINES: [&str; 12] = [
    "rust_threads_mutex_vec",
    "shared_vec_push_one_process",
    "std_mutex",
    "raw_fork",
    "fork_with_results",
    "command_spawn",
    "shared_map_get_1_process",
    "shared_pod_map_get_1_process",
    "rwlock_hash_map_get",
    "mutex_hash_map_insert",
    "queue_two_processes",
    "pod_queue_two_processes",
];

#[test]
fn bench_installed_elsewhere_runs_the_python_baselines_from_a_private_temporary_file() {
    // The program alone in a directory of its own, run from another directory.
    let install = TempDir::new("bench-install");
    let program = install.path().join("memspace");
    std::fs::copy(binary(), &program).expect("copy the memspace binary");
    let cwd = TempDir::new("bench-cwd");
    let tmp = TempDir::new("bench-tmp");
    let mut command = Command::new(&program);
    command
        .args(["bench", "--quick", "--json"])
        .current_dir(cwd.path())
        .env("TMPDIR", tmp.path());

    // A `python3` ahead of the real one on the PATH notes the script it is given, with its
    // mode and owner, then runs the real one.
    let python = real_python();
    let shims = TempDir::new("bench-shim");
    let log = shims.path().join("log");
    if let Some(real) = &python {
        let shim = shims.path().join("python3");
        std::fs::write(
            &shim,
            format!(
                "#!/bin/sh\nfor a in \"$@\"; do case \"$a\" in *.py) \
                 stat -c '%a %u' \"$a\" >> '{log}'; echo \"$a\" >> '{log}';; esac; done\n\
                 exec '{real}' \"$@\"\n",
                log = log.display(),
                real = real.display()
            ),
        )
        .expect("write the python3 shim");
        std::fs::set_permissions(&shim, std::fs::Permissions::from_mode(0o755))
            .expect("make the shim executable");
        let path = std::env::join_paths(std::iter::once(shims.path().to_path_buf()).chain(
            std::env::split_paths(&std::env::var_os("PATH").unwrap_or_default()),
        ))
        .expect("PATH");
        command.env("PATH", path);
    }

    let output = command.output().expect("run the copied memspace");
    let out = stdout(&output);
    assert!(
        output.status.success(),
        "bench failed ({}): {out}{}",
        output.status,
        stderr(&output)
    );
    let json: Value = serde_json::from_str(&out).expect("JSON");
    let rows = json.as_array().expect("an array");
    check_rows(rows, &out);
    check_progress(&stderr(&output));
    let baselines: Vec<&str> = rows.iter().filter_map(|r| r["baseline"].as_str()).collect();
    for expected in RUST_BASELINES {
        assert!(
            baselines.contains(&expected),
            "{expected} missing from {out}"
        );
    }

    if python.is_none() {
        println!("python3 is not on the PATH: the Python rows are not checked");
        return;
    }
    for expected in [
        "python_manager_list",
        "python_threads_lock",
        "python_shareable_list",
        "python_array_locked_add",
        "python_manager_list_set",
        "python_manager_list_pop",
    ] {
        assert!(
            baselines.contains(&expected),
            "{expected} missing from {out}{}",
            stderr(&output)
        );
    }
    let log = std::fs::read_to_string(&log).expect("python3 was given a script");
    let lines: Vec<&str> = log.lines().collect();
    assert_eq!(lines.len(), 2, "one script, run once: {log}");
    // This process's uid, as /proc shows it.
    let uid = std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines()
                .find_map(|l| l.strip_prefix("Uid:"))
                .and_then(|l| l.split_whitespace().next().map(str::to_owned))
        })
        .expect("this process's uid");
    assert_eq!(
        lines[0],
        format!("600 {uid}"),
        "mode and owner of the script"
    );
    let script = Path::new(lines[1]);
    assert_eq!(
        script.parent(),
        Some(tmp.path()),
        "the script is in the temporary directory"
    );
    assert!(!script.exists(), "{} was not removed", script.display());
}

/// A `<text>` element: its position, size, anchor, whether it is turned, and its text.
#[derive(Debug)]
struct Text {
    x: f64,
    y: f64,
    size: f64,
    anchor: String,
    turned: bool,
    class: String,
    content: String,
}

/// The value of the attribute `name` in the tag `tag`.
#[test]
fn bench_growth_reports_insert_latencies_of_a_growing_map_and_list() {
    let output = succeed(&["bench", "--growth", "--quick", "--json"]);
    let json: Value = serde_json::from_str(&output).expect("JSON");
    let rows = json.as_array().expect("an array");
    let scenarios: Vec<&str> = rows.iter().filter_map(|r| r["scenario"].as_str()).collect();
    assert_eq!(
        scenarios,
        [
            "shared_map_insert_growth",
            "shared_pod_map_insert_growth",
            "shared_list_push_growth"
        ],
        "{output}"
    );
    for row in rows {
        let field = |name: &str| {
            row[name]
                .as_u64()
                .unwrap_or_else(|| panic!("{name} in {row}"))
        };
        assert!(field("items") >= 100_000, "{row}");
        assert!(
            0 < field("p50_ns") && field("p50_ns") <= field("p99_9_ns"),
            "{row}"
        );
        assert!(field("p99_9_ns") <= field("max_ns"), "{row}");
        assert!(field("used_bytes") > 8 * field("items"), "{row}");
        let slowest = row["slowest"].as_array().expect("the slowest inserts");
        assert!(!slowest.is_empty(), "{row}");
        assert_eq!(slowest[0][0].as_u64(), Some(field("max_ns")), "{row}");
    }
}

fn attribute<'a>(tag: &'a str, name: &str) -> Option<&'a str> {
    let start = tag.find(&format!(" {name}=\""))? + name.len() + 3;
    let len = tag[start..].find('"')?;
    Some(&tag[start..start + len])
}

fn number(tag: &str, name: &str) -> f64 {
    attribute(tag, name)
        .and_then(|v| v.parse().ok())
        .unwrap_or_else(|| panic!("no number {name} in {tag}"))
}

/// Every `<text>` of `svg`, in order.
fn texts(svg: &str) -> Vec<Text> {
    svg.split("<text")
        .skip(1)
        .map(|rest| {
            let tag = &rest[..rest.find('>').expect("a closed tag")];
            let text = &rest[tag.len() + 1..rest.find("</text>").expect("</text>")];
            Text {
                x: number(tag, "x"),
                y: number(tag, "y"),
                size: attribute(tag, "font-size").map_or(12.0, |v| v.parse().expect("a size")),
                anchor: attribute(tag, "text-anchor").unwrap_or("start").to_owned(),
                turned: attribute(tag, "transform").is_some(),
                class: attribute(tag, "class").unwrap_or_default().to_owned(),
                content: text
                    .replace("&lt;", "<")
                    .replace("&gt;", ">")
                    .replace("&amp;", "&"),
            }
        })
        .collect()
}

/// Whether `values` are the multiples of a step of 1, 2 or 5 × 10^k, in order.
fn round_ticks(values: &[f64]) -> bool {
    if values.len() < 2 {
        return false;
    }
    let step = values[1] - values[0];
    let magnitude = 10f64.powf(step.log10().floor());
    let mantissa = step / magnitude;
    let round_step = [1.0, 2.0, 5.0].iter().any(|m| (mantissa - m).abs() < 1e-6);
    round_step
        && values
            .windows(2)
            .all(|w| ((w[1] - w[0]) - step).abs() < 1e-6 * step)
        && values
            .iter()
            .all(|v| ((v / step) - (v / step).round()).abs() < 1e-6)
}

#[test]
fn bench_plot_draws_round_ticks_and_units_inside_the_canvas_and_json_has_the_points() {
    let dir = TempDir::new("plot");
    let path = dir.path().join("scaling.svg");
    let out = succeed(&[
        "bench",
        "--quick",
        "--no-python",
        "--json",
        "--plot",
        path.to_str().expect("utf-8 path"),
    ]);

    // The JSON: every comparison, then one row per point of the scaling curve.
    let json: Value = serde_json::from_str(&out).expect("JSON");
    let rows = json.as_array().expect("an array");
    check_rows(rows, &out);
    for expected in ["shared_vec_push", "lock_uncontended", "process_start_fork"] {
        assert!(
            rows.iter().any(|r| r["scenario"] == expected),
            "{expected} missing from {out}"
        );
    }
    let points: Vec<&Value> = rows
        .iter()
        .filter(|r| r["scenario"] == "shared_vec_push_scaling")
        .collect();
    let workers: Vec<u64> = points
        .iter()
        .filter_map(|r| r["workers"].as_u64())
        .collect();
    assert_eq!(workers, [1, 2, 4, 8], "{out}");
    for point in points {
        assert_eq!(
            point["baseline"], "rust_threads_mutex_vec_scaling",
            "{point}"
        );
        assert_eq!(point["unit"], "pushes/s", "{point}");
    }

    // The chart.
    let svg = std::fs::read_to_string(&path).expect("the plot was written");
    assert!(
        svg.starts_with("<svg ") && svg.trim_end().ends_with("</svg>"),
        "{svg}"
    );
    assert!(
        !svg.contains("<i64>") && !svg.contains("<Vec>"),
        "unescaped text: {svg}"
    );
    check_labels_inside_the_canvas(&svg);

    check_ticks_and_units(&svg);
}

/// Checks that `svg` has a `viewBox` of its size, and that every label lies inside it.
fn check_labels_inside_the_canvas(svg: &str) {
    let root = &svg[..svg.find('>').expect("the root tag")];
    let (width, height) = (number(root, "width"), number(root, "height"));
    assert_eq!(
        attribute(root, "viewBox"),
        Some(format!("0 0 {width} {height}").as_str())
    );
    for t in texts(svg) {
        // Glyphs are at most about 0.6 em wide, and rise at most 1 em above the baseline.
        let length =
            f64::from(u32::try_from(t.content.chars().count()).unwrap_or(u32::MAX)) * t.size * 0.6;
        let (along, across) = if t.turned { (t.y, t.x) } else { (t.x, t.y) };
        let (from, to) = match t.anchor.as_str() {
            "middle" => (along - length / 2.0, along + length / 2.0),
            "end" => (along - length, along),
            _ => (along, along + length),
        };
        let (long_side, short_side) = if t.turned {
            (height, width)
        } else {
            (width, height)
        };
        assert!(
            from >= 0.0 && to <= long_side && across - t.size >= 0.0 && across <= short_side,
            "{t:?} is not inside the {width} x {height} canvas"
        );
    }
}

/// Checks both charts of `svg`: round ticks on both axes, the rate axis from 0, units named,
/// whole workers.
fn check_ticks_and_units(svg: &str) {
    let charts: Vec<&str> = svg.split(r#"<g class="chart">"#).skip(1).collect();
    assert_eq!(charts.len(), 2, "against workers, against size");
    assert_eq!(
        charts[0].matches("<polyline").count() + charts[1].matches("<polyline").count(),
        3,
        "two curves against workers, one against size"
    );
    for (i, chart) in charts.iter().enumerate() {
        let texts = texts(chart);
        let ticks = |class: &str| -> Vec<f64> {
            texts
                .iter()
                .filter(|t| t.class == class)
                .map(|t| {
                    t.content
                        .parse()
                        .unwrap_or_else(|_| panic!("a number: {t:?}"))
                })
                .collect()
        };
        let (x, y) = (ticks("tick-x"), ticks("tick-y"));
        assert!(round_ticks(&x), "x ticks {x:?}");
        assert!(round_ticks(&y), "y ticks {y:?}");
        assert!(y[0].abs() < 1e-12, "the rate axis starts at 0: {y:?}");
        let names: Vec<&str> = texts.iter().map(|t| t.content.as_str()).collect();
        assert!(
            names.iter().any(|n| n.ends_with("pushes/s")),
            "no rate unit in {names:?}"
        );
        if i == 0 {
            assert!(x.iter().all(|v| v.fract() == 0.0), "whole workers: {x:?}");
            assert!(x.contains(&1.0) && x.contains(&8.0), "{x:?}");
            assert!(names.iter().any(|n| n.starts_with("workers")), "{names:?}");
        } else {
            assert!(names.iter().any(|n| n.starts_with("items")), "{names:?}");
        }
    }
}
