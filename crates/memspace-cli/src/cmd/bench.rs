//! `memspace bench`: memspace against its baselines, side by side, on this machine.
//!
//! Every comparison runs the memspace scenario and its baseline in the same run and reports
//! their ratio (`speedup`: above 1 means memspace is faster). Python baselines run through
//! `scripts/bench_baselines.py` when `python3` is on the PATH.

#![allow(
    clippy::cast_precision_loss,
    clippy::cast_possible_truncation,
    clippy::cast_sign_loss,
    reason = "counts and durations become floating-point rates, and back for display"
)]

use std::fmt::Write as _;
use std::io::{IsTerminal, Write};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::{Arc, Mutex as StdMutex};
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use memspace::collections::SharedVec;
use memspace::spawn::{Process, StartMethod};
use memspace::{Lock, SharedList};
use serde::Serialize;

use crate::cli::BenchArgs;

/// One comparison, as `--json` prints it.
#[derive(Debug, Clone, Serialize)]
pub(crate) struct Comparison {
    scenario: &'static str,
    baseline: &'static str,
    memspace: f64,
    baseline_value: f64,
    unit: &'static str,
    /// How many times better memspace is than the baseline (above 1: better).
    speedup: f64,
}

impl Comparison {
    pub(crate) fn throughput(
        scenario: &'static str,
        baseline: &'static str,
        memspace: f64,
        baseline_value: f64,
        unit: &'static str,
    ) -> Self {
        Comparison {
            scenario,
            baseline,
            memspace,
            baseline_value,
            unit,
            speedup: memspace / baseline_value,
        }
    }

    /// For units where less is better (bytes per item, milliseconds per million).
    fn cost(
        scenario: &'static str,
        baseline: &'static str,
        memspace: f64,
        baseline_value: f64,
        unit: &'static str,
    ) -> Self {
        Comparison {
            speedup: baseline_value / memspace,
            ..Self::throughput(scenario, baseline, memspace, baseline_value, unit)
        }
    }
}

/// Sizes of the runs.
struct Sizes {
    /// How many times the short comparisons run (their medians are reported).
    rounds: u32,
    vec_pushes: u64,
    list_pushes: u64,
    lock_rounds: u64,
    forks: u32,
    spawns: u32,
    read_elements: u64,
    growth_elements: u64,
}

impl Sizes {
    fn new(quick: bool) -> Self {
        if quick {
            Sizes {
                rounds: 3,
                vec_pushes: 250_000,
                list_pushes: 50_000,
                lock_rounds: 2_000_000,
                forks: 200,
                spawns: 30,
                read_elements: 10_000_000,
                growth_elements: 10_000_000,
            }
        } else {
            Sizes {
                rounds: 5,
                vec_pushes: 2_000_000,
                list_pushes: 250_000,
                lock_rounds: 20_000_000,
                forks: 1000,
                spawns: 200,
                read_elements: 10_000_000,
                growth_elements: 100_000_000,
            }
        }
    }
}

struct Progress {
    step: usize,
    steps: usize,
    tty: bool,
}

impl Progress {
    fn next(&mut self, what: &str) {
        self.step += 1;
        let bar_width = 24;
        let filled = bar_width * (self.step - 1) / self.steps;
        let line = format!(
            "[{}{}] {}/{} {what}",
            "#".repeat(filled),
            "-".repeat(bar_width - filled),
            self.step,
            self.steps
        );
        if self.tty {
            eprint!("\r\x1b[2K{line}");
        } else {
            eprintln!("{line}");
        }
        let _ = std::io::stderr().flush();
    }

    fn done(&self) {
        if self.tty {
            eprint!("\r\x1b[2K");
        }
    }
}

pub(crate) fn per_second(ops: f64, elapsed: Duration) -> f64 {
    ops / elapsed.as_secs_f64().max(1e-9)
}

/// Runs memspace's side and the baseline's side of a comparison `rounds` times, alternating so
/// that both see the same machine, and returns the median of each: one run of a contended
/// scenario on 2 cores varies by a factor of two with the scheduler's luck.
fn median_pair(
    rounds: u32,
    mut ours: impl FnMut() -> anyhow::Result<f64>,
    mut theirs: impl FnMut() -> anyhow::Result<f64>,
) -> anyhow::Result<(f64, f64)> {
    let mut a = Vec::new();
    let mut b = Vec::new();
    for _ in 0..rounds {
        a.push(ours()?);
        b.push(theirs()?);
    }
    Ok((median(&mut a), median(&mut b)))
}

fn median(values: &mut [f64]) -> f64 {
    values.sort_by(f64::total_cmp);
    values[values.len() / 2]
}

// ---------------------------------------------------------------------------------------------
// Scenarios

fn push_vec((vec, n): (SharedVec<u64>, u64)) {
    for i in 0..n {
        vec.push(i).expect("push");
    }
}

/// `workers` processes each push `n` u64 into one `SharedVec`; pushes per second.
fn shared_vec_push(workers: u32, n: u64) -> anyhow::Result<f64> {
    let vec = SharedVec::<u64>::new()?;
    let start = Instant::now();
    let mut children: Vec<_> = (0..workers)
        .map(|_| Process::new(push_vec, (vec.clone(), n)))
        .collect();
    for child in &mut children {
        child.start()?;
    }
    for child in &mut children {
        child.join()?;
    }
    let elapsed = start.elapsed();
    anyhow::ensure!(vec.len() == u64::from(workers) * n, "lost pushes");
    Ok(per_second((u64::from(workers) * n) as f64, elapsed))
}

/// `workers` threads each push `n` u64 into one `Arc<Mutex<Vec<u64>>>`.
fn threads_mutex_vec(workers: u32, n: u64) -> f64 {
    let vec = Arc::new(StdMutex::new(Vec::new()));
    let start = Instant::now();
    let threads: Vec<_> = (0..workers)
        .map(|_| {
            let vec = Arc::clone(&vec);
            std::thread::spawn(move || {
                for i in 0..n {
                    vec.lock().expect("mutex").push(i);
                }
            })
        })
        .collect();
    for thread in threads {
        thread.join().expect("thread");
    }
    per_second((u64::from(workers) * n) as f64, start.elapsed())
}

fn push_list((list, n): (SharedList<i64>, u64)) {
    for i in 0..n {
        list.push(&i.cast_signed()).expect("push");
    }
}

/// 4 processes each push `n` i64 into one `SharedList`.
fn shared_list_push(n: u64) -> anyhow::Result<f64> {
    let list = SharedList::<i64>::new()?;
    let start = Instant::now();
    let mut children: Vec<_> = (0..4)
        .map(|_| Process::new(push_list, (list.clone(), n)))
        .collect();
    for child in &mut children {
        child.start()?;
    }
    for child in &mut children {
        child.join()?;
    }
    let elapsed = start.elapsed();
    anyhow::ensure!(list.len()? == 4 * n, "lost pushes");
    Ok(per_second((4 * n) as f64, elapsed))
}

fn lock_uncontended(rounds: u64) -> anyhow::Result<f64> {
    let lock = Lock::new()?;
    let start = Instant::now();
    // No `black_box` on either side: a lock and an unlock are atomic operations on shared
    // memory, which the compiler may not remove; passing the guard through `black_box` would
    // time a copy of the guard through memory, which no caller makes.
    for _ in 0..rounds {
        match lock.lock() {
            Ok(guard) => drop(guard),
            Err(err) => return Err(memspace::Error::from(err.without_guard()).into()),
        }
    }
    Ok(per_second(rounds as f64, start.elapsed()))
}

fn std_mutex_uncontended(rounds: u64) -> f64 {
    let mutex = StdMutex::new(0u64);
    let start = Instant::now();
    for _ in 0..rounds {
        drop(mutex.lock().expect("mutex"));
    }
    per_second(rounds as f64, start.elapsed())
}

fn nothing((): ()) {}

fn process_start(method: StartMethod, count: u32) -> anyhow::Result<f64> {
    let start = Instant::now();
    for _ in 0..count {
        let mut p = Process::new(nothing, ()).start_method(method);
        p.start()?;
        p.join()?;
    }
    Ok(per_second(f64::from(count), start.elapsed()))
}

fn raw_fork(count: u32) -> anyhow::Result<f64> {
    let start = Instant::now();
    for _ in 0..count {
        memspace::spawn::raw_fork_and_wait()?;
    }
    Ok(per_second(f64::from(count), start.elapsed()))
}

fn command_spawn(count: u32) -> anyhow::Result<f64> {
    let exe = std::env::current_exe()?;
    let start = Instant::now();
    for _ in 0..count {
        let status = Command::new(&exe).arg("--version").output()?.status;
        anyhow::ensure!(status.success(), "the baseline child failed");
    }
    Ok(per_second(f64::from(count), start.elapsed()))
}

/// Sums `n` u64 read as a slice of a `SharedVec`, against the same sum over a `Vec`: GB/s.
fn read_slice(n: u64) -> anyhow::Result<(f64, f64)> {
    let data: Vec<u64> = (0..n).collect();
    let vec = SharedVec::<u64>::new()?;
    vec.extend_from_slice(&data)?;
    let bytes = (n * 8) as f64;
    let best = |f: &dyn Fn() -> u64| {
        (0..5)
            .map(|_| {
                let start = Instant::now();
                std::hint::black_box(f());
                start.elapsed()
            })
            .min()
            .unwrap_or_default()
    };
    let slice = vec.as_slice()?;
    let ours = best(&|| slice.iter().fold(0u64, |a, b| a.wrapping_add(*b)));
    let theirs = best(&|| data.iter().fold(0u64, |a, b| a.wrapping_add(*b)));
    Ok((
        per_second(bytes, ours) / 1e9,
        per_second(bytes, theirs) / 1e9,
    ))
}

/// Bytes of segment per `SharedList<i64>` item, against the encoded size of the items.
fn list_memory(n: u64) -> anyhow::Result<(f64, f64)> {
    let list = SharedList::<i64>::new()?;
    let items: Vec<i64> = (0..n).map(|i| (i * 7919).cast_signed()).collect();
    for chunk in items.chunks(10_000) {
        list.extend(chunk)?;
    }
    let encoded: usize = items.iter().map(|i| rmp_encoded_len(*i)).sum();
    let used = list.used_bytes() as f64;
    Ok((used / n as f64, encoded as f64 / n as f64))
}

/// The length of an i64 in `MessagePack` (what `SharedList` stores as each item's payload).
fn rmp_encoded_len(value: i64) -> usize {
    match value {
        -32..=127 => 1,
        -128..=255 => 2,
        -32_768..=65_535 => 3,
        -2_147_483_648..=4_294_967_295 => 5,
        _ => 9,
    }
}

fn grow((vec, n, times): (SharedVec<u64>, u64, SharedVec<u64>)) {
    let batch: Vec<u64> = (0..65_536).collect();
    let mut pushed = 0;
    let tenth = n / 10;
    let mut mark = Instant::now();
    while pushed < n {
        let take = batch.len().min((n - pushed) as usize);
        vec.extend_from_slice(&batch[..take]).expect("push");
        pushed += take as u64;
        if pushed % tenth < take as u64 {
            times
                .push(mark.elapsed().as_nanos() as u64)
                .expect("record");
            mark = Instant::now();
        }
    }
}

/// Two processes push `n` u64 each in 64 Ki batches; milliseconds per million items in the
/// first and last tenth.
fn growth(n: u64) -> anyhow::Result<(f64, f64)> {
    let vec = SharedVec::<u64>::new()?;
    let times = SharedVec::<u64>::new()?;
    let per_process = n / 2;
    let mut children: Vec<_> = (0..2)
        .map(|_| Process::new(grow, (vec.clone(), per_process, times.clone())))
        .collect();
    for child in &mut children {
        child.start()?;
    }
    for child in &mut children {
        child.join()?;
    }
    anyhow::ensure!(vec.len() == 2 * per_process, "lost pushes");
    let times = times.to_vec()?;
    let per_million = |ns: u64| ns as f64 / 1e6 / (per_process as f64 / 10.0 / 1e6);
    let early = times.iter().take(2).map(|&t| per_million(t)).sum::<f64>() / 2.0;
    let late = times
        .iter()
        .rev()
        .take(2)
        .map(|&t| per_million(t))
        .sum::<f64>()
        / 2.0;
    Ok((late, early))
}

/// The Python baselines, from `scripts/bench_baselines.py`.
fn python_baselines(quick: bool) -> anyhow::Result<serde_json::Value> {
    let script = locate_script()?;
    let mut command = Command::new("python3");
    command.arg(&script);
    if quick {
        command.arg("--quick");
    }
    let output = command
        .output()
        .with_context(|| format!("running {}", script.display()))?;
    if !output.status.success() {
        bail!(
            "{} failed: {}",
            script.display(),
            String::from_utf8_lossy(&output.stderr)
        );
    }
    Ok(serde_json::from_slice(&output.stdout)?)
}

fn locate_script() -> anyhow::Result<PathBuf> {
    let relative = Path::new("scripts/bench_baselines.py");
    let mut candidates = vec![relative.to_path_buf()];
    if let Ok(exe) = std::env::current_exe() {
        // target/<profile>/memspace -> the checkout
        for ancestor in exe.ancestors().skip(1).take(4) {
            candidates.push(ancestor.join(relative));
        }
    }
    candidates.push(
        Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("../..")
            .join(relative),
    );
    candidates
        .into_iter()
        .find(|p| p.exists())
        .context("scripts/bench_baselines.py not found; run from the memspace checkout")
}

fn python_available() -> bool {
    Command::new("python3")
        .arg("--version")
        .output()
        .is_ok_and(|o| o.status.success())
}

// ---------------------------------------------------------------------------------------------
// Output

pub(crate) fn print_table(comparisons: &[Comparison]) {
    println!(
        "{:<22} {:<24} {:>14} {:>14}  {:<12} {:>8}",
        "SCENARIO", "BASELINE", "MEMSPACE", "BASELINE", "UNIT", "RATIO"
    );
    for c in comparisons {
        println!(
            "{:<22} {:<24} {:>14} {:>14}  {:<12} {:>7.2}x",
            c.scenario,
            c.baseline,
            human(c.memspace),
            human(c.baseline_value),
            c.unit,
            c.speedup
        );
    }
}

fn human(value: f64) -> String {
    if value >= 1e6 {
        format!("{:.2} M", value / 1e6)
    } else if value >= 1e3 {
        format!("{:.1} k", value / 1e3)
    } else {
        format!("{value:.2}")
    }
}

/// One line of a chart: a label, a colour, whether it is dashed, and its y values.
struct Series<'a> {
    label: &'a str,
    colour: &'a str,
    dashed: bool,
    values: Vec<f64>,
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

/// `SharedList<i64>` pushes per second in one process, measured in tenths as the list grows
/// to `total` items: `(items in the list, pushes per second)`.
fn list_size_curve(total: u64) -> anyhow::Result<Vec<(f64, f64)>> {
    let list = SharedList::<i64>::new()?;
    let tenth = (total / 10).max(1);
    let mut curve = Vec::new();
    for step in 1..=10u64 {
        let start = Instant::now();
        for i in 0..tenth {
            list.push(&i.cast_signed())?;
        }
        curve.push((
            (step * tenth) as f64,
            per_second(tenth as f64, start.elapsed()),
        ));
    }
    Ok(curve)
}

/// Draws the two scaling curves: against the number of workers, and against the list's size.
fn plot(path: &Path, scaling: &[(u32, f64, f64)], by_size: &[(f64, f64)]) -> anyhow::Result<()> {
    let mut svg = String::from(
        r#"<svg xmlns="http://www.w3.org/2000/svg" width="640" height="800" font-family="sans-serif" font-size="12">
<rect width="100%" height="100%" fill="white"/>
"#,
    );
    let workers: Vec<f64> = scaling.iter().map(|&(w, _, _)| f64::from(w)).collect();
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
                values: scaling.iter().map(|s| s.1).collect(),
            },
            Series {
                label: "Mutex<Vec>, threads",
                colour: "#ff7f0e",
                dashed: true,
                values: scaling.iter().map(|s| s.2).collect(),
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

pub(crate) fn run(args: &BenchArgs) -> anyhow::Result<()> {
    if let Some(url) = &args.redis {
        return super::bench_redis::run(url, args.quick, args.json);
    }
    let sizes = Sizes::new(args.quick);
    let python = !args.no_python && python_available();
    if !python && !args.no_python {
        eprintln!("python3 is not on the PATH: the Python baselines are skipped");
    }
    let mut progress = Progress {
        step: 0,
        steps: 8 + usize::from(python) + if args.plot.is_some() { 5 } else { 0 },
        tty: std::io::stderr().is_terminal(),
    };
    let out = measure(&sizes, python, args.quick, &mut progress)?;
    let mut scaling = Vec::new();
    if let Some(path) = &args.plot {
        for workers in [1, 2, 4, 8] {
            progress.next(&format!("scaling, {workers} workers"));
            let n = sizes.vec_pushes / 4;
            scaling.push((
                workers,
                shared_vec_push(workers, n)?,
                threads_mutex_vec(workers, n),
            ));
        }
        progress.next("SharedList push against its size");
        let by_size = list_size_curve(sizes.list_pushes * 4)?;
        plot(path, &scaling, &by_size)?;
    }
    progress.done();
    if args.json {
        println!("{}", serde_json::to_string_pretty(&out)?);
    } else {
        print_table(&out);
        if let Some(path) = &args.plot {
            println!("\nscaling curve written to {}", path.display());
            println!("WORKERS  SHAREDVEC (PROCESSES)  MUTEX<VEC> (THREADS)  RATIO");
            for (workers, ours, theirs) in &scaling {
                println!(
                    "{workers:>7}  {:>21}  {:>20}  {:>5.2}x",
                    format!("{:.2} M/s", ours / 1e6),
                    format!("{:.2} M/s", theirs / 1e6),
                    ours / theirs
                );
            }
        }
    }
    Ok(())
}

fn measure(
    sizes: &Sizes,
    python: bool,
    quick: bool,
    progress: &mut Progress,
) -> anyhow::Result<Vec<Comparison>> {
    let mut out = Vec::new();
    progress.next("SharedVec<u64> push, 4 processes, against Mutex<Vec<u64>>, 4 threads");
    let (ours, theirs) = median_pair(
        sizes.rounds,
        || shared_vec_push(4, sizes.vec_pushes),
        || Ok(threads_mutex_vec(4, sizes.vec_pushes)),
    )?;
    out.push(Comparison::throughput(
        "shared_vec_push",
        "rust_threads_mutex_vec",
        ours,
        theirs,
        "pushes/s",
    ));

    progress.next("SharedList<i64> push, 4 processes");
    let list = shared_list_push(sizes.list_pushes)?;
    if python {
        progress.next("Python baselines");
        let py = python_baselines(quick)?;
        for (baseline, key) in [
            ("python_manager_list", "manager_list_append"),
            ("python_threads_lock", "threads_lock_append"),
            ("python_shareable_list", "shareable_list_write"),
        ] {
            if let Some(value) = py.get(key).and_then(serde_json::Value::as_f64) {
                out.push(Comparison::throughput(
                    "shared_list_push",
                    baseline,
                    list,
                    value,
                    "appends/s",
                ));
            }
        }
    }

    progress.next("Lock vs std::sync::Mutex, uncontended");
    let (ours, std) = median_pair(
        sizes.rounds,
        || lock_uncontended(sizes.lock_rounds),
        || Ok(std_mutex_uncontended(sizes.lock_rounds)),
    )?;
    out.push(Comparison::throughput(
        "lock_uncontended",
        "std_mutex",
        ours,
        std,
        "lock+unlock/s",
    ));

    measure_processes_and_memory(sizes, &mut out, progress)?;
    Ok(out)
}

/// The comparisons of process start, slice reads, memory per item and growth.
fn measure_processes_and_memory(
    sizes: &Sizes,
    out: &mut Vec<Comparison>,
    progress: &mut Progress,
) -> anyhow::Result<()> {
    progress.next("Process start+join, fork");
    let (ours, theirs) = median_pair(
        sizes.rounds,
        || process_start(StartMethod::Fork, sizes.forks),
        || raw_fork(sizes.forks),
    )?;
    out.push(Comparison::throughput(
        "process_start_fork",
        "raw_fork",
        ours,
        theirs,
        "starts/s",
    ));

    progress.next("Process start+join, spawn");
    let (ours, theirs) = median_pair(
        sizes.rounds,
        || process_start(StartMethod::Spawn, sizes.spawns),
        || command_spawn(sizes.spawns),
    )?;
    out.push(Comparison::throughput(
        "process_start_spawn",
        "command_spawn",
        ours,
        theirs,
        "starts/s",
    ));

    progress.next("reading 10 M u64 as a slice");
    let (ours, theirs) = read_slice(sizes.read_elements)?;
    out.push(Comparison::throughput(
        "shared_vec_read",
        "vec_read",
        ours,
        theirs,
        "GB/s",
    ));

    progress.next("SharedList memory per item");
    let (ours, encoded) = list_memory(1_000_000)?;
    out.push(Comparison::cost(
        "shared_list_memory",
        "encoded_size",
        ours,
        encoded,
        "bytes/item",
    ));

    progress.next("growth: 2 processes push into one SharedVec");
    let (late, early) = growth(sizes.growth_elements)?;
    out.push(Comparison::cost(
        "shared_vec_growth",
        "first_tenth",
        late,
        early,
        "ms/M items",
    ));
    Ok(())
}
