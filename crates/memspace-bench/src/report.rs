//! The results: each comparison and its ratio, printed as a table or as JSON, and the scaling
//! table of `--plot`.

use serde::Serialize;

/// What a comparison compares: memspace's scenario, the baseline, and the unit of both values.
pub(crate) type Names = (&'static str, &'static str, &'static str);

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
    /// How many workers (processes for memspace, threads for the baseline) pushed: only on
    /// the points of the scaling curve.
    #[serde(skip_serializing_if = "Option::is_none")]
    workers: Option<u32>,
    /// What exactly both sides do (payload, batching, who waits how), where the names alone
    /// do not say it.
    #[serde(skip_serializing_if = "Option::is_none")]
    description: Option<&'static str>,
}

impl Comparison {
    /// memspace's figure.
    pub(crate) fn memspace(&self) -> f64 {
        self.memspace
    }

    /// For units where more is better (operations per second, bytes per second).
    pub(crate) fn throughput(
        (scenario, baseline, unit): Names,
        (memspace, baseline_value): (f64, f64),
    ) -> Self {
        Comparison {
            scenario,
            baseline,
            memspace,
            baseline_value,
            unit,
            speedup: memspace / baseline_value,
            workers: None,
            description: None,
        }
    }

    /// The comparison with `description` (see the field).
    pub(crate) fn described(self, description: &'static str) -> Self {
        Comparison {
            description: Some(description),
            ..self
        }
    }

    /// For units where less is better (bytes per item, milliseconds per million).
    pub(crate) fn cost(names: Names, (memspace, baseline_value): (f64, f64)) -> Self {
        Comparison {
            speedup: baseline_value / memspace,
            ..Self::throughput(names, (memspace, baseline_value))
        }
    }
}

/// u64 pushes per second into one vector from `workers` workers: a point of the scaling curve.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Scaling {
    pub(crate) workers: u32,
    /// Into a `SharedVec`, from processes.
    pub(crate) shared_vec: f64,
    /// Into a `Mutex<Vec>`, from threads.
    pub(crate) mutex_vec: f64,
}

impl Scaling {
    /// The point as a comparison of `--json`: scenario `shared_vec_push_scaling` against
    /// `rust_threads_mutex_vec_scaling`, with its number of workers.
    fn comparison(&self) -> Comparison {
        let names = (
            "shared_vec_push_scaling",
            "rust_threads_mutex_vec_scaling",
            "pushes/s",
        );
        Comparison {
            workers: Some(self.workers),
            ..Comparison::throughput(names, (self.shared_vec, self.mutex_vec))
        }
    }
}

/// Prints `comparisons` as a table, or as a JSON array if `json`; the JSON array ends with the
/// points of the scaling curve (`scaling`, empty without `--plot`), which have `workers`.
pub(crate) fn print(
    comparisons: &[Comparison],
    scaling: &[Scaling],
    json: bool,
) -> anyhow::Result<()> {
    if json {
        let all: Vec<Comparison> = comparisons
            .iter()
            .cloned()
            .chain(scaling.iter().map(Scaling::comparison))
            .collect();
        println!("{}", serde_json::to_string_pretty(&all)?);
    } else {
        print_table(comparisons);
    }
    Ok(())
}

fn print_table(comparisons: &[Comparison]) {
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
    let described: Vec<_> = comparisons
        .iter()
        .filter_map(|c| Some((c.scenario, c.baseline, c.description?)))
        .collect();
    if !described.is_empty() {
        println!();
        for (scenario, baseline, description) in described {
            println!("{scenario} against {baseline}: {description}");
        }
    }
}

/// Prints the scaling curve as a table, in millions of pushes per second.
pub(crate) fn print_scaling(scaling: &[Scaling]) {
    println!("WORKERS  SHAREDVEC (PROCESSES)  MUTEX<VEC> (THREADS)  RATIO");
    for point in scaling {
        println!(
            "{:>7}  {:>21}  {:>20}  {:>5.2}x",
            point.workers,
            format!("{:.2} M/s", point.shared_vec / 1e6),
            format!("{:.2} M/s", point.mutex_vec / 1e6),
            point.shared_vec / point.mutex_vec
        );
    }
}

/// `value` with three significant-ish digits: `12.34 M`, `5.6 k`, `7.89`.
pub(crate) fn human(value: f64) -> String {
    if value >= 1e6 {
        format!("{:.2} M", value / 1e6)
    } else if value >= 1e3 {
        format!("{:.1} k", value / 1e3)
    } else {
        format!("{value:.2}")
    }
}
