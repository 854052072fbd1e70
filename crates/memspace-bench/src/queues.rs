//! The queue's scenarios: `u64` items put and got with their acknowledgement, in one process
//! against `std::sync::mpsc`, and between two processes, one item per call or in batches.
//! The baselines of other inter-process channels are in `ipc.rs`.
//!
//! Between two processes a producer process (started by fork) puts `n` items and this process
//! receives them; the clock runs from the first item received to the last, so that no process
//! start is counted, on either side of a comparison.

#![allow(
    clippy::cast_precision_loss,
    reason = "counts and durations become floating-point rates"
)]

use std::time::Instant;

use memspace::collections::{PodQueue, Queue};
use memspace::spawn::Process;

use crate::measure::per_second;

/// Items per `put_many` in the batched scenario.
pub(crate) const PUT_BATCH: usize = 64;
/// Most items per `get_many` in the batched scenario.
pub(crate) const GET_BATCH: usize = 256;

/// Slots of the `PodQueue` in its scenarios (the `Queue` is unbounded).
pub(crate) const POD_CAPACITY: u64 = 4096;

/// What the scenarios do with a queue of `u64`: [`Queue`] or [`PodQueue`].
pub(crate) trait BenchQueue: Clone + serde::Serialize + serde::de::DeserializeOwned {
    /// A new anonymous queue.
    fn make() -> anyhow::Result<Self>;
    fn put_one(&self, item: u64) -> anyhow::Result<()>;
    fn put_batch(&self, items: &[u64]) -> anyhow::Result<()>;
    fn get_one(&self) -> anyhow::Result<u64>;
    fn get_batch(&self, max: usize, into: &mut Vec<u64>) -> anyhow::Result<()>;
}

impl BenchQueue for Queue<u64> {
    fn make() -> anyhow::Result<Self> {
        Ok(Queue::new()?)
    }
    fn put_one(&self, item: u64) -> anyhow::Result<()> {
        Ok(self.put(&item)?)
    }
    fn put_batch(&self, items: &[u64]) -> anyhow::Result<()> {
        Ok(self.put_many(items)?)
    }
    fn get_one(&self) -> anyhow::Result<u64> {
        Ok(self.get()?)
    }
    fn get_batch(&self, max: usize, into: &mut Vec<u64>) -> anyhow::Result<()> {
        into.extend(self.get_many(max)?);
        Ok(())
    }
}

impl BenchQueue for PodQueue<u64> {
    fn make() -> anyhow::Result<Self> {
        Ok(PodQueue::new(POD_CAPACITY)?)
    }
    fn put_one(&self, item: u64) -> anyhow::Result<()> {
        Ok(self.put(item)?)
    }
    fn put_batch(&self, items: &[u64]) -> anyhow::Result<()> {
        Ok(self.put_many(items)?)
    }
    fn get_one(&self) -> anyhow::Result<u64> {
        Ok(self.get()?)
    }
    fn get_batch(&self, max: usize, into: &mut Vec<u64>) -> anyhow::Result<()> {
        into.extend(self.get_many(max)?);
        Ok(())
    }
}

/// `n` rounds of a `put` then a `get` of a `u64` on one queue `Q` in this process; put+get
/// per second.
pub(crate) fn put_get_in_process<Q: BenchQueue>(n: u64) -> anyhow::Result<f64> {
    let queue = Q::make()?;
    let start = Instant::now();
    for i in 0..n {
        queue.put_one(i)?;
        std::hint::black_box(queue.get_one()?);
    }
    Ok(per_second(n as f64, start.elapsed()))
}

/// The baseline of [`put_get_in_process`]: `n` rounds of a `send` then a `recv` on a
/// `std::sync::mpsc::channel`.
pub(crate) fn mpsc_in_process(n: u64) -> anyhow::Result<f64> {
    let (tx, rx) = std::sync::mpsc::channel::<u64>();
    let start = Instant::now();
    for i in 0..n {
        tx.send(i)?;
        std::hint::black_box(rx.recv()?);
    }
    Ok(per_second(n as f64, start.elapsed()))
}

fn produce<Q: BenchQueue>((queue, n): (Q, u64)) {
    for i in 0..n {
        queue.put_one(i).expect("put");
    }
}

fn produce_batches<Q: BenchQueue>((queue, n): (Q, u64)) {
    let mut next = 0;
    let mut batch = Vec::with_capacity(PUT_BATCH);
    while next < n {
        batch.clear();
        batch.extend(next..(next + PUT_BATCH as u64).min(n));
        queue.put_batch(&batch).expect("put_many");
        next += batch.len() as u64;
    }
}

/// Receives `n` items with `receive` (one `get`, one `get_many`, or one `receive_many` and its
/// `ack`, per call), timed from the first to the last; checks their sum.
fn receive_timed(
    n: u64,
    mut receive: impl FnMut(&mut Vec<u64>) -> anyhow::Result<()>,
) -> anyhow::Result<f64> {
    let mut items = Vec::new();
    let mut sum = 0u64;
    let mut got = 0;
    let mut start = None;
    while got < n {
        items.clear();
        receive(&mut items)?;
        start.get_or_insert_with(Instant::now);
        got += items.len() as u64;
        sum = items.iter().fold(sum, |a, b| a.wrapping_add(*b));
    }
    let elapsed = start.map(|s| s.elapsed()).unwrap_or_default();
    anyhow::ensure!(sum == n * (n - 1) / 2, "items lost or changed on the way");
    // The first call's items were received before the clock started.
    Ok(per_second((n - 1) as f64, elapsed))
}

/// Starts a producer process that runs `produce` on a new queue `Q` and `n`, receives its `n`
/// items here with `receive` ([`receive_timed`]), and joins it. Items per second.
fn from_a_producer<Q: BenchQueue>(
    produce: fn((Q, u64)),
    n: u64,
    mut receive: impl FnMut(&Q, &mut Vec<u64>) -> anyhow::Result<()>,
) -> anyhow::Result<f64> {
    let queue = Q::make()?;
    let mut producer = Process::new(produce, (queue.clone(), n));
    producer.start()?;
    let rate = receive_timed(n, |items| receive(&queue, items))?;
    producer.join()?;
    Ok(rate)
}

/// A producer process puts `n` `u64` one `put` at a time into a queue `Q`; this process
/// takes them one `get` at a time (a `get` that finds nothing spins for an adaptive budget,
/// then sleeps on a futex until a put wakes it). Items per second.
pub(crate) fn two_processes<Q: BenchQueue>(n: u64) -> anyhow::Result<f64> {
    from_a_producer(produce::<Q>, n, |queue, items| {
        items.push(queue.get_one()?);
        Ok(())
    })
}

/// As [`two_processes`] with batches: the producer puts [`PUT_BATCH`] items per `put_many`,
/// this process takes up to [`GET_BATCH`] per `get_many`.
pub(crate) fn two_processes_batched<Q: BenchQueue>(n: u64) -> anyhow::Result<f64> {
    from_a_producer(produce_batches::<Q>, n, |queue, items| {
        queue.get_batch(GET_BATCH, items)
    })
}

/// As [`two_processes_batched`] on a [`Queue`], with the items received at least once: up to
/// [`GET_BATCH`] taken in flight per `receive_many`, then acknowledged by one `ack`.
pub(crate) fn two_processes_received_in_batches(n: u64) -> anyhow::Result<f64> {
    from_a_producer(produce_batches::<Queue<u64>>, n, |queue, items| {
        let deliveries = queue.receive_many(GET_BATCH)?;
        items.extend_from_slice(deliveries.values());
        deliveries.ack()?;
        Ok(())
    })
}
