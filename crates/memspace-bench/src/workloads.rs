//! The scenarios of the default run and their baselines, each timed on its own: pushes from
//! processes against pushes from threads, a lock against `std`'s mutex, process starts
//! against a command spawn, slice reads against a `Vec`'s, memory per item, growth.

#![allow(
    clippy::cast_precision_loss,
    clippy::cast_sign_loss,
    reason = "counts and durations become floating-point rates"
)]

use std::process::Command;
use std::sync::{
    Arc, Barrier as StdBarrier, Condvar as StdCondvar, Mutex as StdMutex, RwLock as StdRwLock,
};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use memspace::collections::SharedVec;
use memspace::spawn::{Process, StartMethod};
use memspace::{Barrier, Condvar, Lock, RLock, RwLock, SharedArray, SharedList};
use serde::Serialize;
use serde::de::DeserializeOwned;

use crate::measure::per_second;

/// Starts `workers` processes, each running `target` on arguments of its own from `args`, all
/// at once, and waits for them all; returns what each returned.
fn in_processes<A, R>(
    workers: u32,
    target: fn(A) -> R,
    args: impl Fn() -> A,
) -> anyhow::Result<Vec<R>>
where
    A: Serialize + DeserializeOwned,
    R: Serialize + DeserializeOwned,
{
    let mut children: Vec<_> = (0..workers).map(|_| Process::new(target, args())).collect();
    for child in &mut children {
        child.start()?;
    }
    let mut results = Vec::with_capacity(children.len());
    for child in &mut children {
        results.push(child.join()?);
    }
    Ok(results)
}

fn push_vec((vec, n): (SharedVec<u64>, u64)) {
    for i in 0..n {
        vec.push(i).expect("push");
    }
}

/// `workers` processes each push `n` u64 into one `SharedVec`; pushes per second.
pub(crate) fn shared_vec_push(workers: u32, n: u64) -> anyhow::Result<f64> {
    let vec = SharedVec::<u64>::new()?;
    let start = Instant::now();
    in_processes(workers, push_vec, || (vec.clone(), n))?;
    let elapsed = start.elapsed();
    anyhow::ensure!(vec.len() == u64::from(workers) * n, "lost pushes");
    Ok(per_second((u64::from(workers) * n) as f64, elapsed))
}

/// `workers` threads each push `n` u64 into one `Arc<Mutex<Vec<u64>>>`.
pub(crate) fn threads_mutex_vec(workers: u32, n: u64) -> f64 {
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

/// How long a worker of the scaling curve waits for the others to start before it gives up
/// (the barrier then breaks, and every worker fails instead of waiting forever).
pub(crate) const START_TIMEOUT: Duration = Duration::from_secs(30);

/// Nanoseconds since the Unix epoch: a clock that processes can compare (an `Instant` is
/// private to its process).
pub(crate) fn wall_nanos() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_nanos() as u64)
}

/// In a worker of [`in_processes_from_barrier`]: waits at `ready` for every worker to start,
/// runs `work`, and returns when it started and ended it ([`wall_nanos`]).
pub(crate) fn after_barrier(ready: &Barrier, work: impl FnOnce()) -> (u64, u64) {
    ready.wait_timeout(START_TIMEOUT).expect("start barrier");
    let start = wall_nanos();
    work();
    (start, wall_nanos())
}

/// Starts `workers` processes, each running `target` on arguments of its own that `args`
/// makes with the start barrier, and waits for them all. Each worker waits at the barrier for
/// the others, then works, and returns when it started and ended ([`after_barrier`]); the
/// time returned runs from the first leaving the barrier to the last ending, so that a process
/// start (about a millisecond) is not counted, however short the work.
pub(crate) fn in_processes_from_barrier<A>(
    workers: u32,
    target: fn(A) -> (u64, u64),
    args: impl Fn(&Barrier) -> A,
) -> anyhow::Result<Duration>
where
    A: Serialize + DeserializeOwned,
{
    let ready = Barrier::new(workers)?;
    let spans = in_processes(workers, target, || args(&ready))?;
    let first = spans.iter().map(|s| s.0).min().unwrap_or_default();
    let last = spans.iter().map(|s| s.1).max().unwrap_or_default();
    Ok(Duration::from_nanos(last.saturating_sub(first)))
}

/// Pushes `n` u64 once every worker has started ([`after_barrier`]).
fn push_vec_started((vec, n, ready): (SharedVec<u64>, u64, Barrier)) -> (u64, u64) {
    after_barrier(&ready, || {
        for i in 0..n {
            vec.push(i).expect("push");
        }
    })
}

/// As [`shared_vec_push`], timed over the pushes only ([`in_processes_from_barrier`]).
pub(crate) fn shared_vec_push_started(workers: u32, n: u64) -> anyhow::Result<f64> {
    let vec = SharedVec::<u64>::new()?;
    let elapsed = in_processes_from_barrier(workers, push_vec_started, |ready| {
        (vec.clone(), n, ready.clone())
    })?;
    anyhow::ensure!(vec.len() == u64::from(workers) * n, "lost pushes");
    Ok(per_second((u64::from(workers) * n) as f64, elapsed))
}

/// As [`threads_mutex_vec`], timed as [`shared_vec_push_started`]: from the first thread
/// leaving a barrier that every started thread reaches to the last one ending its pushes.
pub(crate) fn threads_mutex_vec_started(workers: u32, n: u64) -> f64 {
    let vec = Arc::new(StdMutex::new(Vec::new()));
    let ready = Arc::new(StdBarrier::new(workers as usize));
    let threads: Vec<_> = (0..workers)
        .map(|_| {
            let (vec, ready) = (Arc::clone(&vec), Arc::clone(&ready));
            std::thread::spawn(move || {
                ready.wait();
                let start = Instant::now();
                for i in 0..n {
                    vec.lock().expect("mutex").push(i);
                }
                (start, Instant::now())
            })
        })
        .collect();
    let spans: Vec<_> = threads
        .into_iter()
        .map(|t| t.join().expect("thread"))
        .collect();
    let first = spans.iter().map(|s| s.0).min();
    let last = spans.iter().map(|s| s.1).max();
    let elapsed = match (first, last) {
        (Some(first), Some(last)) => last.duration_since(first),
        _ => Duration::ZERO,
    };
    per_second((u64::from(workers) * n) as f64, elapsed)
}

fn push_list((list, n): (SharedList<i64>, u64)) {
    for i in 0..n {
        list.push(&i.cast_signed()).expect("push");
    }
}

/// 4 processes each push `n` i64 into one `SharedList`.
pub(crate) fn shared_list_push(n: u64) -> anyhow::Result<f64> {
    let list = SharedList::<i64>::new()?;
    let start = Instant::now();
    in_processes(4, push_list, || (list.clone(), n))?;
    let elapsed = start.elapsed();
    anyhow::ensure!(list.len()? == 4 * n, "lost pushes");
    Ok(per_second((4 * n) as f64, elapsed))
}

/// `n` pushes of an `i64` into a new `SharedList` from this thread, per second (the list's
/// growth included, as a user's pushes pay it).
pub(crate) fn shared_list_push_one_process(n: u64) -> anyhow::Result<f64> {
    let list = SharedList::<i64>::new()?;
    let start = Instant::now();
    for i in 0..n {
        list.push(&i.cast_signed())?;
    }
    let elapsed = start.elapsed();
    anyhow::ensure!(list.len()? == n, "lost pushes");
    Ok(per_second(n as f64, elapsed))
}

/// `n` pushes of a `u64` into a new `SharedVec` from this thread, per second (its growth
/// included).
pub(crate) fn shared_vec_push_one_process(n: u64) -> anyhow::Result<f64> {
    let vec = SharedVec::<u64>::new()?;
    let start = Instant::now();
    for i in 0..n {
        vec.push(i)?;
    }
    let elapsed = start.elapsed();
    anyhow::ensure!(vec.len() == n, "lost pushes");
    Ok(per_second(n as f64, elapsed))
}

/// The length of the list the `set` scenarios write into.
const SET_SLOTS: u64 = 1000;

/// The index of write `i` of worker `w` in a scenario of `set`s: spread over the list.
fn set_slot(w: u64, i: u64) -> u64 {
    (i * 7 + w * 251) % SET_SLOTS
}

fn set_list((list, w, n): (SharedList<i64>, u64, u64)) {
    for i in 0..n {
        list.set(set_slot(w, i), &i.cast_signed()).expect("set");
    }
}

/// 4 processes each replace `n` items of one `SharedList<i64>` of 1000 items (spread over
/// it), process starts included; sets per second.
pub(crate) fn shared_list_set(n: u64) -> anyhow::Result<f64> {
    let list = SharedList::<i64>::new()?;
    list.extend((0..SET_SLOTS).map(u64::cast_signed))?;
    let next = std::cell::Cell::new(0);
    let start = Instant::now();
    in_processes(4, set_list, || {
        let w = next.get();
        next.set(w + 1);
        (list.clone(), w, n)
    })?;
    let elapsed = start.elapsed();
    anyhow::ensure!(list.len()? == SET_SLOTS, "sets changed the length");
    Ok(per_second((4 * n) as f64, elapsed))
}

/// The baseline of [`shared_list_set`]: 4 threads each replace `n` items of one
/// `Mutex<Vec<i64>>` of 1000 items, thread starts included.
pub(crate) fn threads_mutex_vec_set(n: u64) -> f64 {
    let vec = Arc::new(StdMutex::new(vec![0i64; SET_SLOTS as usize]));
    let start = Instant::now();
    let threads: Vec<_> = (0..4)
        .map(|w| {
            let vec = Arc::clone(&vec);
            std::thread::spawn(move || {
                for i in 0..n {
                    vec.lock().expect("mutex")[set_slot(w, i) as usize] = i.cast_signed();
                }
            })
        })
        .collect();
    for thread in threads {
        thread.join().expect("thread");
    }
    per_second((4 * n) as f64, start.elapsed())
}

fn pop_list((list, n): (SharedList<i64>, u64)) {
    for _ in 0..n {
        list.pop().expect("pop").expect("an item to pop");
    }
}

/// 4 processes each pop `n` items off one `SharedList<i64>` of `4 n` (filled before the
/// clock starts), process starts included; pops per second.
pub(crate) fn shared_list_pop(n: u64) -> anyhow::Result<f64> {
    let list = SharedList::<i64>::new()?;
    list.extend((0..4 * n).map(u64::cast_signed))?;
    let start = Instant::now();
    in_processes(4, pop_list, || (list.clone(), n))?;
    let elapsed = start.elapsed();
    anyhow::ensure!(list.is_empty()?, "items left after the pops");
    Ok(per_second((4 * n) as f64, elapsed))
}

/// The baseline of [`shared_list_pop`]: 4 threads each pop `n` items off one
/// `Mutex<Vec<i64>>` of `4 n`, thread starts included.
pub(crate) fn threads_mutex_vec_pop(n: u64) -> f64 {
    let vec = Arc::new(StdMutex::new(
        (0..4 * n).map(u64::cast_signed).collect::<Vec<_>>(),
    ));
    let start = Instant::now();
    let threads: Vec<_> = (0..4)
        .map(|_| {
            let vec = Arc::clone(&vec);
            std::thread::spawn(move || {
                for _ in 0..n {
                    vec.lock().expect("mutex").pop().expect("an item to pop");
                }
            })
        })
        .collect();
    for thread in threads {
        thread.join().expect("thread");
    }
    per_second((4 * n) as f64, start.elapsed())
}

fn add_to_slot((array, slot, n): (SharedArray<u64>, u64, u64)) {
    for _ in 0..n {
        array.fetch_add(slot, 1).expect("add");
    }
}

/// 4 processes each add 1 to an element of their own of one `SharedArray<u64>`, `n` times
/// (the elements share a cache line, as those of Python's `Array` do); additions per second,
/// process starts included.
pub(crate) fn shared_array_add(n: u64) -> anyhow::Result<f64> {
    let array = SharedArray::<u64>::new(4)?;
    let next_slot = std::cell::Cell::new(0);
    let start = Instant::now();
    in_processes(4, add_to_slot, || {
        let slot = next_slot.get();
        next_slot.set(slot + 1);
        (array.clone(), slot, n)
    })?;
    let elapsed = start.elapsed();
    anyhow::ensure!(array.to_vec()? == [n; 4], "lost additions");
    Ok(per_second((4 * n) as f64, elapsed))
}

/// `rounds` lock and unlock pairs of an uncontended `Lock`, per second.
pub(crate) fn lock_uncontended(rounds: u64) -> anyhow::Result<f64> {
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

/// `rounds` lock and unlock pairs of an uncontended `RLock` (outermost level: each takes and
/// frees the lock), per second.
pub(crate) fn rlock_uncontended(rounds: u64) -> anyhow::Result<f64> {
    let lock = RLock::new()?;
    let start = Instant::now();
    for _ in 0..rounds {
        match lock.lock() {
            Ok(guard) => drop(guard),
            Err(err) => return Err(memspace::Error::from(err.without_guard()).into()),
        }
    }
    Ok(per_second(rounds as f64, start.elapsed()))
}

/// `rounds` lock and unlock pairs of an uncontended `std::sync::Mutex`, per second.
pub(crate) fn std_mutex_uncontended(rounds: u64) -> f64 {
    let mutex = StdMutex::new(0u64);
    let start = Instant::now();
    for _ in 0..rounds {
        drop(mutex.lock().expect("mutex"));
    }
    per_second(rounds as f64, start.elapsed())
}

/// `rounds` read (or, with `write`, write) lock and unlock pairs of an uncontended
/// `memspace::RwLock<u64>`, per second.
pub(crate) fn rwlock_uncontended(rounds: u64, write: bool) -> anyhow::Result<f64> {
    let lock = RwLock::new(0u64)?;
    let start = Instant::now();
    for _ in 0..rounds {
        if write {
            match lock.write() {
                Ok(guard) => drop(guard),
                Err(err) => return Err(memspace::Error::from(err.without_guard()).into()),
            }
        } else {
            match lock.read() {
                Ok(guard) => drop(guard),
                Err(err) => return Err(memspace::Error::from(err.without_guard()).into()),
            }
        }
    }
    Ok(per_second(rounds as f64, start.elapsed()))
}

/// As [`rwlock_uncontended`], on a `std::sync::RwLock<u64>`.
pub(crate) fn std_rwlock_uncontended(rounds: u64, write: bool) -> f64 {
    let lock = StdRwLock::new(0u64);
    let start = Instant::now();
    for _ in 0..rounds {
        if write {
            drop(lock.write().expect("rwlock"));
        } else {
            drop(lock.read().expect("rwlock"));
        }
    }
    per_second(rounds as f64, start.elapsed())
}

/// `rounds` notifications of a `memspace::Condvar` that nobody waits on, per second.
pub(crate) fn condvar_notify_unwaited(rounds: u64) -> anyhow::Result<f64> {
    let changed = Condvar::new()?;
    let start = Instant::now();
    for _ in 0..rounds {
        changed.notify_one();
    }
    Ok(per_second(rounds as f64, start.elapsed()))
}

/// As [`condvar_notify_unwaited`], on a `std::sync::Condvar`.
pub(crate) fn std_condvar_notify_unwaited(rounds: u64) -> f64 {
    let changed = StdCondvar::new();
    let start = Instant::now();
    for _ in 0..rounds {
        changed.notify_one();
    }
    per_second(rounds as f64, start.elapsed())
}

fn nothing((): ()) {}

/// `count` processes started by `method` and joined, one after another, that do nothing;
/// starts per second.
pub(crate) fn process_start(method: StartMethod, count: u32) -> anyhow::Result<f64> {
    let start = Instant::now();
    for _ in 0..count {
        let mut p = Process::new(nothing, ()).start_method(method);
        p.start()?;
        p.join()?;
    }
    Ok(per_second(f64::from(count), start.elapsed()))
}

/// `count` runs of this program with `--version`, one after another; starts per second.
pub(crate) fn command_spawn(count: u32) -> anyhow::Result<f64> {
    let exe = std::env::current_exe()?;
    let start = Instant::now();
    for _ in 0..count {
        let status = Command::new(&exe).arg("--version").output()?.status;
        anyhow::ensure!(status.success(), "the baseline child failed");
    }
    Ok(per_second(f64::from(count), start.elapsed()))
}

/// Sums `n` u64 read as a slice of a `SharedVec`, against the same sum over a `Vec`: GB/s.
pub(crate) fn read_slice(n: u64) -> anyhow::Result<(f64, f64)> {
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
pub(crate) fn list_memory(n: u64) -> anyhow::Result<(f64, f64)> {
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
/// last and the first tenth.
pub(crate) fn growth(n: u64) -> anyhow::Result<(f64, f64)> {
    let vec = SharedVec::<u64>::new()?;
    let times = SharedVec::<u64>::new()?;
    let per_process = n / 2;
    in_processes(2, grow, || (vec.clone(), per_process, times.clone()))?;
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

/// `SharedList<i64>` pushes per second in one process, measured in tenths as the list grows
/// to `total` items: `(items in the list, pushes per second)`.
pub(crate) fn list_size_curve(total: u64) -> anyhow::Result<Vec<(f64, f64)>> {
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
