//! The harness behind `memspace bench`: memspace against its baselines, side by side, on this
//! machine.
//!
//! Every comparison runs the memspace scenario and its baseline in the same run and reports
//! their ratio (`speedup`: above 1 means memspace is faster). Python baselines run through
//! `bench_baselines.py`, compiled into the program, when `python3` is on the PATH. With [`Options::redis`], the
//! same operations run on shared memory and on a Redis server instead.
//!
//! The harness runs inside the `memspace` command, and relies on it twice: processes started
//! with [`StartMethod::Spawn`](memspace::spawn::StartMethod::Spawn) re-execute the running
//! program, whose `main` calls [`memspace::init`] first, and the baseline of that start runs
//! the same program with `--version`.
//!
//! * `suite`: which comparisons the default run makes, with which sizes
//! * `workloads`: each scenario and each baseline, timed
//! * `map`: the map's lookups and inserts against `std`'s maps
//! * `growth`: `--growth`, insert latencies while a map and a list grow to millions of items
//! * `queues`: the queue's scenarios, in one process and between two
//! * `ipc`: the other inter-process channels the queue is compared with (`ipc-channel`,
//!   iceoryx2), built with the feature `ipc-baselines`
//! * `fork`: the bare `fork` + `waitpid` baseline (the crate's only `unsafe`)
//! * `python`: the Python baselines, from `bench_baselines.py` (written to a temporary file)
//! * `redis`: shared memory against a Redis server
//! * `measure`: rates and medians
//! * `report`: the table and the JSON of the results
//! * `chart`: the SVG scaling curves of `--plot`
//! * `progress`: the progress line on stderr

mod chart;
mod fork;
mod growth;
#[cfg(feature = "ipc-baselines")]
mod ipc;
mod map;
mod measure;
mod progress;
mod python;
mod queues;
mod redis;
mod report;
mod suite;
mod workloads;

use std::io::IsTerminal;
use std::path::PathBuf;

use self::progress::Progress;
use self::suite::Sizes;

/// What a run measures, and how it prints the results.
#[allow(
    clippy::struct_excessive_bools,
    reason = "each is a switch of the command line, independent of the others"
)]
#[derive(Debug, Clone, Default)]
pub struct Options {
    /// Smaller runs, done in well under a minute.
    pub quick: bool,
    /// Print a JSON array, one object per comparison, instead of a table; with `plot`, the
    /// array ends with the points of the scaling curve (objects with a `workers` field).
    pub json: bool,
    /// Also measure 1, 2, 4 and 8 workers and draw the scaling curves into this SVG file.
    pub plot: Option<PathBuf>,
    /// Skip the Python baselines even if `python3` is on the PATH.
    pub no_python: bool,
    /// Instead of the default run, compare shared memory with the Redis server at this URL
    /// (`redis://HOST:PORT`).
    pub redis: Option<String>,
    /// With `redis`, also compare pushes to 30 objects from 6 threads on the Redis Cluster
    /// this node (`redis://HOST:PORT`) belongs to with the same on the `redis` server.
    pub redis_cluster: Option<String>,
    /// Instead of the default run, measure how long inserts take while a map grows to 10 M
    /// keys and a list to 100 M items, two processes inserting (p50, p99.9 and the longest);
    /// with `quick`, to 250 000 keys and 1 M items.
    pub growth: bool,
}

/// Measures what `options` asks for and prints the results on stdout; progress goes to
/// stderr.
///
/// # Errors
///
/// If a scenario or a baseline fails (a segment cannot be created, a worker process dies, the
/// Python script fails, the Redis server cannot be reached), or the chart cannot be written.
pub fn run(options: &Options) -> anyhow::Result<()> {
    if let Some(url) = &options.redis {
        return redis::run(
            url,
            options.redis_cluster.as_deref(),
            options.quick,
            options.json,
        );
    }
    if options.growth {
        return growth::run(options.quick, options.json);
    }
    let sizes = Sizes::new(options.quick);
    let python = !options.no_python && python::available();
    if !python && !options.no_python {
        eprintln!("python3 is not on the PATH: the Python baselines are skipped");
    }
    let mut progress = Progress::new(
        suite::steps(python) + if options.plot.is_some() { 5 } else { 0 },
        std::io::stderr().is_terminal(),
    );
    let comparisons = suite::measure(&sizes, python, options.quick, &mut progress)?;
    let mut scaling = Vec::new();
    if let Some(path) = &options.plot {
        scaling = suite::scaling(&sizes, &mut progress)?;
        progress.next("SharedList push against its size");
        let by_size = workloads::list_size_curve(sizes.list_pushes * 4)?;
        chart::write(path, &scaling, &by_size)?;
    }
    progress.done();
    report::print(&comparisons, &scaling, options.json)?;
    if let Some(path) = &options.plot
        && !options.json
    {
        println!("\nscaling curve written to {}", path.display());
        report::print_scaling(&scaling);
    }
    Ok(())
}
