//! `memspace bench --redis URL`: the same operations on shared memory and on a Redis server,
//! side by side, in the default run's table (`speedup` is how many times faster shared memory
//! is).
//!
//! Every scenario runs in one process, one call after another, so each Redis call costs at
//! least one round trip to the server. The batched scenario appends 100 items per call: one
//! `RPUSH` of 100 items, one round trip, which is what pipelining buys.
//!
//! With a Redis Cluster (`--redis-cluster`), one more row: [`SPREAD_THREADS`] threads push to
//! [`SPREAD_OBJECTS`] lists, each thread to its own, on the cluster (whose masters serve a
//! third of the lists each) and on the `--redis` server, side by side (`speedup` is then how
//! many times faster the cluster is).

#![allow(
    clippy::cast_precision_loss,
    reason = "counts become floating-point rates"
)]

use std::time::Instant;

use anyhow::Context;
use memspace::collections::Queue;
use memspace::{Backend, Lock, SharedList};

use crate::measure::per_second;
use crate::report::{self, Comparison};

/// Items per call in the batched scenario.
const BATCH: usize = 100;
/// Lists of the spread scenario.
const SPREAD_OBJECTS: usize = 30;
/// Threads of the spread scenario, each pushing to `SPREAD_OBJECTS / SPREAD_THREADS` lists in
/// turn.
const SPREAD_THREADS: usize = 6;

/// Sizes of the runs: shared memory is so much faster that it gets more operations, for a
/// comparable measuring time.
struct Sizes {
    shm: u64,
    redis: u64,
}

/// Removes the bench's objects however the run ends.
struct Cleanup(Vec<String>);

impl Drop for Cleanup {
    fn drop(&mut self) {
        for name in &self.0 {
            // Best effort: the names are the bench's own, made of its pid.
            if memspace::segment::SegmentName::new(name).is_ok_and(|name| name.is_redis()) {
                let _ = memspace::remove(name);
            } else {
                let _ = memspace::Segment::remove(name);
            }
        }
    }
}

fn push_one_by_one(list: &SharedList<i64>, n: u64) -> anyhow::Result<f64> {
    let start = Instant::now();
    for i in 0..n {
        list.push(&i.cast_signed())
            .with_context(|| format!("pushing to `{}`", list.name()))?;
    }
    Ok(per_second(n as f64, start.elapsed()))
}

fn push_batched(list: &SharedList<i64>, n: u64) -> anyhow::Result<f64> {
    let batch: Vec<i64> = (0i64..).take(BATCH).collect();
    let calls = n.div_ceil(BATCH as u64);
    let start = Instant::now();
    for _ in 0..calls {
        list.extend(&batch)
            .with_context(|| format!("extending `{}`", list.name()))?;
    }
    Ok(per_second((calls * BATCH as u64) as f64, start.elapsed()))
}

fn lock_unlock(lock: &Lock, n: u64) -> anyhow::Result<f64> {
    let start = Instant::now();
    for _ in 0..n {
        let guard = lock.lock().map_err(memspace::Error::from)?;
        guard.unlock().map_err(memspace::Error::from)?;
    }
    Ok(per_second(n as f64, start.elapsed()))
}

fn put_get(queue: &Queue<i64>, n: u64) -> anyhow::Result<f64> {
    let start = Instant::now();
    for i in 0..n {
        queue.put(&i.cast_signed())?;
        queue.get()?;
    }
    Ok(per_second(n as f64, start.elapsed()))
}

/// Pushes/s of [`SPREAD_THREADS`] threads pushing `n` items in all to [`SPREAD_OBJECTS`]
/// lists on `backend`, each thread to its own lists in turn.
fn push_spread(backend: &Backend, n: u64, cleanup: &mut Cleanup) -> anyhow::Result<f64> {
    let base = format!("bench.{}.spread", std::process::id());
    let mut lists = Vec::new();
    for i in 0..SPREAD_OBJECTS {
        let name = backend.locate(&format!("{base}.{i}"));
        cleanup.0.push(name.clone());
        lists.push(SharedList::<i64>::create(&name).with_context(|| format!("creating `{name}`"))?);
    }
    let per_thread = n / SPREAD_THREADS as u64;
    let start = std::sync::Barrier::new(SPREAD_THREADS + 1);
    let elapsed = std::thread::scope(|scope| -> anyhow::Result<std::time::Duration> {
        let workers: Vec<_> = (0..SPREAD_THREADS)
            .map(|t| {
                let mine: Vec<&SharedList<i64>> =
                    lists.iter().skip(t).step_by(SPREAD_THREADS).collect();
                let start = &start;
                scope.spawn(move || -> anyhow::Result<()> {
                    start.wait();
                    for i in 0..per_thread {
                        let list = mine[usize::try_from(i).unwrap_or(0) % mine.len()];
                        list.push(&i.cast_signed())
                            .with_context(|| format!("pushing to `{}`", list.name()))?;
                    }
                    Ok(())
                })
            })
            .collect();
        start.wait();
        let began = Instant::now();
        for worker in workers {
            worker
                .join()
                .map_err(|_| anyhow::anyhow!("a pushing thread panicked"))??;
        }
        Ok(began.elapsed())
    })?;
    Ok(per_second(
        (per_thread * SPREAD_THREADS as u64) as f64,
        elapsed,
    ))
}

/// The four scenarios on one backend: pushes/s, batched pushes/s, locks/s, put+get/s.
fn measure(backend: &Backend, n: u64, cleanup: &mut Cleanup) -> anyhow::Result<[f64; 4]> {
    let base = format!("bench.{}", std::process::id());
    let name = |what: &str| backend.locate(&format!("{base}.{what}"));
    let (list_name, batch_name, lock_name, queue_name) =
        (name("list"), name("batch"), name("lock"), name("queue"));
    cleanup.0.extend([
        list_name.clone(),
        batch_name.clone(),
        lock_name.clone(),
        queue_name.clone(),
    ]);
    let list =
        SharedList::<i64>::create(&list_name).with_context(|| format!("creating `{list_name}`"))?;
    let batched = SharedList::<i64>::create(&batch_name)
        .with_context(|| format!("creating `{batch_name}`"))?;
    let lock = Lock::create(&lock_name).with_context(|| format!("creating `{lock_name}`"))?;
    let queue =
        Queue::<i64>::create(&queue_name).with_context(|| format!("creating `{queue_name}`"))?;
    Ok([
        push_one_by_one(&list, n)?,
        push_batched(&batched, n * 10)?,
        lock_unlock(&lock, n / 4)?,
        put_get(&queue, n / 4)?,
    ])
}

/// Runs the four scenarios on shared memory, then on the Redis server at `url`, and prints
/// them side by side.
pub(crate) fn run(
    url: &str,
    cluster_url: Option<&str>,
    quick: bool,
    json: bool,
) -> anyhow::Result<()> {
    let redis = Backend::redis(url).context("reading --redis")?;
    // The URL as shown: its password hidden.
    let url = match &redis {
        Backend::Redis { server } => server.clone(),
        _ => unreachable!("Backend::redis gives a Redis backend"),
    };
    let sizes = if quick {
        Sizes {
            shm: 100_000,
            redis: 5_000,
        }
    } else {
        Sizes {
            shm: 400_000,
            redis: 20_000,
        }
    };
    let mut cleanup = Cleanup(Vec::new());
    // A server that cannot be reached or refuses the login fails the run before the shared
    // memory half is measured.
    let probe = redis.locate(&format!("bench.{}.probe", std::process::id()));
    cleanup.0.push(probe.clone());
    SharedList::<i64>::create(&probe).with_context(|| format!("trying the Redis server {url}"))?;
    eprintln!("shared memory ...");
    let shm = measure(&Backend::SharedMemory, sizes.shm, &mut cleanup)?;
    eprintln!("redis at {url} ...");
    let remote = measure(&redis, sizes.redis, &mut cleanup)?;
    let names = [
        ("shared_list_push", "redis_list_push", "pushes/s"),
        ("shared_list_extend_100", "redis_extend_100", "pushes/s"),
        ("lock_uncontended", "redis_lock_lease", "lock+unlock/s"),
        ("queue_put_get", "redis_queue_put_get", "put+get/s"),
    ];
    let mut comparisons: Vec<Comparison> = names
        .into_iter()
        .zip(shm.into_iter().zip(remote))
        .map(|(names, values)| Comparison::throughput(names, values))
        .collect();
    if let Some(cluster_url) = cluster_url {
        let cluster = Backend::redis(cluster_url).context("reading --redis-cluster")?;
        eprintln!("{SPREAD_OBJECTS} lists from {SPREAD_THREADS} threads at {url} ...");
        let one_server = push_spread(&redis, sizes.redis, &mut cleanup)?;
        eprintln!(
            "{SPREAD_OBJECTS} lists from {SPREAD_THREADS} threads on the cluster at {cluster_url} ..."
        );
        let on_cluster = push_spread(&cluster, sizes.redis, &mut cleanup)?;
        comparisons.push(Comparison::throughput(
            (
                "cluster_push_30_lists",
                "one_server_push_30_lists",
                "pushes/s",
            ),
            (on_cluster, one_server),
        ));
    }
    report::print(&comparisons, &[], json)?;
    if !json {
        println!(
            "\nspeedup: how many times faster shared memory is than Redis at {url}; every Redis \
             call is at least one round trip, a batch of {BATCH} is one round trip"
        );
        if let Some(cluster_url) = cluster_url {
            println!(
                "cluster_push_30_lists: how many times faster the Redis Cluster at {cluster_url} \
                 takes pushes to {SPREAD_OBJECTS} lists from {SPREAD_THREADS} threads than the \
                 one server at {url}"
            );
        }
    }
    Ok(())
}
