//! Rates and medians: how a count and a duration become the number a comparison reports.

use std::time::Duration;

/// `ops` per second over `elapsed` (at least a nanosecond, so that an empty run is finite).
pub(crate) fn per_second(ops: f64, elapsed: Duration) -> f64 {
    ops / elapsed.as_secs_f64().max(1e-9)
}

/// Runs memspace's side and the baseline's side of a comparison `rounds` times, alternating so
/// that both see the same machine, and returns the median of each: one run of a contended
/// scenario on 2 cores varies by a factor of two with the scheduler's luck.
pub(crate) fn median_pair(
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
