//! `memspace bench --growth`: how long single inserts take while a structure grows to
//! millions of items, two processes inserting at once: a `SharedMap<u64, u64>` and a
//! `SharedPodMap<u64, u64>` to 10 M keys, and a `SharedList<i64>` to 100 M items. Every insert is timed; the report gives the median,
//! the 99.9th percentile and the longest, and how many took more than 10 ms (the pauses of
//! growth: a larger table built, the segment extended).
//!
//! Latencies are counted in a histogram of 16 buckets per power of two (a percentile is the
//! upper edge of its bucket: at most 1/16 above the truth); the longest is exact.

#![allow(
    clippy::cast_precision_loss,
    clippy::cast_possible_truncation,
    reason = "nanosecond counts become floating-point figures, and bucket numbers are small"
)]

use std::time::{Duration, Instant};

use memspace::collections::{SharedMap, SharedPodMap};
use memspace::spawn::Process;
use memspace::{Barrier, SharedList};
use serde::Serialize;

use crate::workloads::{START_TIMEOUT, wall_nanos};

/// Buckets per power of two of the histogram.
const SUB: u64 = 16;
const BUCKETS: usize = 64 * SUB as usize;
/// An insert slower than this is a pause worth counting.
const PAUSE: Duration = Duration::from_millis(10);
/// How many of the slowest inserts the report names, with how many items there were then.
const SLOWEST: usize = 6;

/// The histogram bucket of a latency of `ns` nanoseconds.
fn bucket(ns: u64) -> usize {
    if ns < SUB {
        return ns as usize;
    }
    let exponent = u64::from(ns.ilog2());
    let mantissa = (ns >> (exponent - 4)) & (SUB - 1);
    ((exponent - 3) * SUB + mantissa) as usize
}

/// The largest latency that falls in bucket `index`.
fn upper_edge(index: usize) -> u64 {
    let index = index as u64;
    if index < SUB {
        return index;
    }
    let (exponent, mantissa) = (index / SUB + 3, index % SUB);
    ((SUB + mantissa + 1) << (exponent - 4)) - 1
}

/// Insert latencies of one process, or of several merged.
#[derive(Debug, Clone)]
struct Latencies {
    counts: Vec<u64>,
    max_ns: u64,
    pauses: u64,
    /// The slowest inserts: (nanoseconds, items in the structure about then), slowest first.
    slowest: Vec<(u64, u64)>,
}

impl Latencies {
    fn new() -> Self {
        Latencies {
            counts: vec![0; BUCKETS],
            max_ns: 0,
            pauses: 0,
            slowest: Vec::new(),
        }
    }

    /// Counts an insert that took `took`, made when the structure held about `items` items.
    fn record(&mut self, took: Duration, items: u64) {
        let ns = u64::try_from(took.as_nanos()).unwrap_or(u64::MAX);
        self.counts[bucket(ns).min(BUCKETS - 1)] += 1;
        self.max_ns = self.max_ns.max(ns);
        self.pauses += u64::from(took > PAUSE);
        if self.slowest.len() < SLOWEST || self.slowest.last().is_some_and(|s| s.0 < ns) {
            self.note_slow((ns, items));
        }
    }

    fn note_slow(&mut self, slow: (u64, u64)) {
        self.slowest.push(slow);
        self.slowest
            .sort_unstable_by_key(|slow| std::cmp::Reverse(slow.0));
        self.slowest.truncate(SLOWEST);
    }

    fn merge(&mut self, (counts, max_ns, pauses, slowest): Sent) {
        for (mine, theirs) in self.counts.iter_mut().zip(counts) {
            *mine += theirs;
        }
        self.max_ns = self.max_ns.max(max_ns);
        self.pauses += pauses;
        for slow in slowest {
            self.note_slow(slow);
        }
    }

    fn sent(self) -> Sent {
        (self.counts, self.max_ns, self.pauses, self.slowest)
    }

    /// The latency within which `per_mille` thousandths of the inserts took (the upper edge
    /// of its bucket, or the longest if that is less).
    fn quantile(&self, per_mille: u64) -> u64 {
        let total: u64 = self.counts.iter().sum();
        let rank = (total * per_mille).div_ceil(1000);
        let mut seen = 0;
        for (index, count) in self.counts.iter().enumerate() {
            seen += count;
            if seen >= rank.max(1) {
                return upper_edge(index).min(self.max_ns);
            }
        }
        self.max_ns
    }
}

/// [`Latencies`] as a worker process returns them.
type Sent = (Vec<u64>, u64, u64, Vec<(u64, u64)>);

/// One structure's growth, as `--json` prints it.
#[derive(Debug, Serialize)]
struct Growth {
    scenario: &'static str,
    items: u64,
    processes: u32,
    p50_ns: u64,
    p99_9_ns: u64,
    max_ns: u64,
    /// Inserts that took more than 10 ms.
    pauses_over_10ms: u64,
    /// The slowest inserts: nanoseconds, and how many items the structure held about then.
    slowest: Vec<(u64, u64)>,
    seconds: f64,
    /// Bytes of the segment in use at the end.
    used_bytes: u64,
}

fn map_inserter((map, worker, n, ready): (SharedMap<u64, u64>, u64, u64, Barrier)) -> Sent {
    ready.wait_timeout(START_TIMEOUT).expect("start barrier");
    let mut latencies = Latencies::new();
    for i in 0..n {
        let key = 2 * i + worker;
        let start = Instant::now();
        map.insert(&key, &key).expect("insert");
        latencies.record(start.elapsed(), 2 * i);
    }
    latencies.sent()
}

fn pod_map_inserter((map, worker, n, ready): (SharedPodMap<u64, u64>, u64, u64, Barrier)) -> Sent {
    ready.wait_timeout(START_TIMEOUT).expect("start barrier");
    let mut latencies = Latencies::new();
    for i in 0..n {
        let key = 2 * i + worker;
        let start = Instant::now();
        map.insert(key, key).expect("insert");
        latencies.record(start.elapsed(), 2 * i);
    }
    latencies.sent()
}

fn list_pusher((list, n, ready): (SharedList<i64>, u64, Barrier)) -> Sent {
    ready.wait_timeout(START_TIMEOUT).expect("start barrier");
    let mut latencies = Latencies::new();
    for i in 0..n {
        let start = Instant::now();
        list.push(&i.cast_signed()).expect("push");
        latencies.record(start.elapsed(), 2 * i);
    }
    latencies.sent()
}

/// Runs `workers` (already made, not started), merges what they return, and times them from
/// the start barrier to the last one's end.
fn run_workers<A>(mut workers: Vec<Process<A, Sent>>) -> anyhow::Result<(Latencies, f64)>
where
    A: serde::Serialize + serde::de::DeserializeOwned,
{
    for worker in &mut workers {
        worker.start()?;
    }
    let start = wall_nanos();
    let mut latencies = Latencies::new();
    for worker in &mut workers {
        latencies.merge(worker.join()?);
    }
    Ok((latencies, (wall_nanos() - start) as f64 / 1e9))
}

fn report(
    scenario: &'static str,
    items: u64,
    (latencies, seconds): (Latencies, f64),
    used_bytes: u64,
) -> Growth {
    Growth {
        scenario,
        items,
        processes: 2,
        p50_ns: latencies.quantile(500),
        p99_9_ns: latencies.quantile(999),
        max_ns: latencies.max_ns,
        pauses_over_10ms: latencies.pauses,
        slowest: latencies.slowest,
        seconds,
        used_bytes,
    }
}

/// Two processes insert `keys` keys into a new map, half each.
fn map_growth(keys: u64) -> anyhow::Result<Growth> {
    let map = SharedMap::<u64, u64>::new()?;
    let ready = Barrier::new(2)?;
    let workers = (0..2)
        .map(|worker| Process::new(map_inserter, (map.clone(), worker, keys / 2, ready.clone())))
        .collect();
    let measured = run_workers(workers)?;
    anyhow::ensure!(map.len()? == keys / 2 * 2, "lost inserts");
    Ok(report(
        "shared_map_insert_growth",
        keys,
        measured,
        map.used_bytes(),
    ))
}

/// Two processes insert `keys` keys into a new plain-value map, half each. Its "used" bytes
/// are the segment's committed size: a plain-value map has no garbage to tell apart.
fn pod_map_growth(keys: u64) -> anyhow::Result<Growth> {
    let map = SharedPodMap::<u64, u64>::new()?;
    let ready = Barrier::new(2)?;
    let workers = (0..2)
        .map(|worker| {
            Process::new(
                pod_map_inserter,
                (map.clone(), worker, keys / 2, ready.clone()),
            )
        })
        .collect();
    let measured = run_workers(workers)?;
    anyhow::ensure!(map.len()? == keys / 2 * 2, "lost inserts");
    let size = map.segment().map_or(0, memspace::Segment::size);
    Ok(report("shared_pod_map_insert_growth", keys, measured, size))
}

/// Two processes push `items` items into a new list, half each.
fn list_growth(items: u64) -> anyhow::Result<Growth> {
    let list = SharedList::<i64>::new()?;
    let ready = Barrier::new(2)?;
    let workers = (0..2)
        .map(|_| Process::new(list_pusher, (list.clone(), items / 2, ready.clone())))
        .collect();
    let measured = run_workers(workers)?;
    anyhow::ensure!(list.len()? == items / 2 * 2, "lost pushes");
    Ok(report(
        "shared_list_push_growth",
        items,
        measured,
        list.used_bytes(),
    ))
}

/// Measures both growths and prints them as a table, or as a JSON array.
pub(crate) fn run(quick: bool, json: bool) -> anyhow::Result<()> {
    let (keys, items) = if quick {
        (250_000, 1_000_000)
    } else {
        (10_000_000, 100_000_000)
    };
    eprintln!("growing a SharedMap<u64, u64> to {keys} keys from 2 processes");
    let map = map_growth(keys)?;
    eprintln!("growing a SharedPodMap<u64, u64> to {keys} keys from 2 processes");
    let pod_map = pod_map_growth(keys)?;
    eprintln!("growing a SharedList<i64> to {items} items from 2 processes");
    let list = list_growth(items)?;
    let rows = [map, pod_map, list];
    if json {
        println!("{}", serde_json::to_string_pretty(&rows)?);
        return Ok(());
    }
    println!(
        "{:<30} {:>11} {:>9} {:>10} {:>10} {:>8} {:>8} {:>10}",
        "scenario", "items", "p50 ns", "p99.9 ns", "max ms", ">10 ms", "seconds", "MiB used"
    );
    for row in &rows {
        println!(
            "{:<30} {:>11} {:>9} {:>10} {:>10.2} {:>8} {:>8.1} {:>10.0}",
            row.scenario,
            row.items,
            row.p50_ns,
            row.p99_9_ns,
            row.max_ns as f64 / 1e6,
            row.pauses_over_10ms,
            row.seconds,
            row.used_bytes as f64 / f64::from(1 << 20),
        );
    }
    for row in &rows {
        let slowest: Vec<String> = row
            .slowest
            .iter()
            .map(|&(ns, items)| format!("{:.1} ms at {items}", ns as f64 / 1e6))
            .collect();
        println!("{} slowest: {}", row.scenario, slowest.join(", "));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_latency_lies_in_its_bucket() {
        for ns in (0..5000).chain([1 << 20, 12_345_678, u64::MAX >> 1]) {
            let index = bucket(ns);
            assert!(ns <= upper_edge(index), "{ns} above bucket {index}");
            assert!(
                index == 0 || ns > upper_edge(index - 1),
                "{ns} below bucket {index}"
            );
        }
    }

    #[test]
    fn quantiles_come_from_the_counts() {
        let mut latencies = Latencies::new();
        for ns in 1..=1000u64 {
            latencies.record(Duration::from_nanos(ns), ns);
        }
        latencies.record(Duration::from_millis(20), 7);
        assert!((480..=540).contains(&latencies.quantile(500)));
        assert_eq!(latencies.max_ns, 20_000_000);
        assert_eq!(latencies.pauses, 1);
        assert_eq!(latencies.slowest[..2], [(20_000_000, 7), (1000, 1000)]);
    }
}
