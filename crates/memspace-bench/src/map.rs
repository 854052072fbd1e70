//! The maps' scenarios: lookups from one and from two processes, a lookup against
//! `RwLock<HashMap>`'s from one thread, and inserts against `Mutex<HashMap>`'s; the same
//! lookups and inserts for `SharedPodMap`.

#![allow(
    clippy::cast_precision_loss,
    reason = "counts become floating-point rates"
)]

use std::collections::HashMap;
use std::hint::black_box;
use std::sync::{Mutex as StdMutex, RwLock};
use std::time::Instant;

use memspace::Barrier;
use memspace::collections::{SharedMap, SharedPodMap};

use crate::measure::per_second;
use crate::workloads::{after_barrier, in_processes_from_barrier};

/// Keys in the map the lookups read (as in the criterion benchmark `map_u64`).
pub(crate) const KEYS: u64 = 10_000;

/// The key of the `i`th lookup: every key in turn, in a scattered order.
fn key(i: u64) -> u64 {
    i.wrapping_mul(7919) % KEYS
}

/// A map of [`KEYS`] keys, each its own value.
fn filled() -> anyhow::Result<SharedMap<u64, u64>> {
    let map = SharedMap::<u64, u64>::new()?;
    for k in 0..KEYS {
        map.insert(&k, &k)?;
    }
    Ok(map)
}

/// Looks `n` keys up once every reader has started ([`after_barrier`]).
fn look_up((map, n, ready): (SharedMap<u64, u64>, u64, Barrier)) -> (u64, u64) {
    after_barrier(&ready, || {
        for i in 0..n {
            let found = map.get(&key(i)).expect("get");
            assert_eq!(found, Some(key(i)), "a lookup found the wrong value");
        }
    })
}

/// `readers` processes each look `n` keys up in one map, timed from the first leaving a
/// start barrier to the last ending: lookups per second, all processes together.
pub(crate) fn get_processes(readers: u32, n: u64) -> anyhow::Result<f64> {
    let map = filled()?;
    let elapsed =
        in_processes_from_barrier(readers, look_up, |ready| (map.clone(), n, ready.clone()))?;
    Ok(per_second((u64::from(readers) * n) as f64, elapsed))
}

/// `n` lookups in a `SharedMap` from this thread: lookups per second.
pub(crate) fn get_one_thread(n: u64) -> anyhow::Result<f64> {
    let map = filled()?;
    let start = Instant::now();
    for i in 0..n {
        black_box(map.get(&key(i))?);
    }
    Ok(per_second(n as f64, start.elapsed()))
}

/// A plain-value map of [`KEYS`] keys, each its own value.
fn pod_filled() -> anyhow::Result<SharedPodMap<u64, u64>> {
    let map = SharedPodMap::<u64, u64>::new()?;
    for k in 0..KEYS {
        map.insert(k, k)?;
    }
    Ok(map)
}

/// As [`look_up`], in a plain-value map.
fn pod_look_up((map, n, ready): (SharedPodMap<u64, u64>, u64, Barrier)) -> (u64, u64) {
    after_barrier(&ready, || {
        for i in 0..n {
            let found = map.get(&key(i)).expect("get");
            assert_eq!(found, Some(key(i)), "a lookup found the wrong value");
        }
    })
}

/// As [`get_processes`], in a plain-value map.
pub(crate) fn pod_get_processes(readers: u32, n: u64) -> anyhow::Result<f64> {
    let map = pod_filled()?;
    let elapsed = in_processes_from_barrier(readers, pod_look_up, |ready| {
        (map.clone(), n, ready.clone())
    })?;
    Ok(per_second((u64::from(readers) * n) as f64, elapsed))
}

/// `n` lookups in a `SharedPodMap<u64, u64>` of [`KEYS`] keys from this thread: lookups per
/// second.
pub(crate) fn pod_get_one_thread(n: u64) -> anyhow::Result<f64> {
    let map = pod_filled()?;
    let start = Instant::now();
    for i in 0..n {
        black_box(map.get(&key(i))?);
    }
    Ok(per_second(n as f64, start.elapsed()))
}

/// As [`insert_one_thread`], into a new `SharedPodMap<u64, u64>`.
pub(crate) fn pod_insert_one_thread(n: u64) -> anyhow::Result<f64> {
    let map = SharedPodMap::<u64, u64>::new()?;
    let start = Instant::now();
    for i in 0..n {
        map.insert(key(i), i)?;
    }
    Ok(per_second(n as f64, start.elapsed()))
}

/// `n` lookups in an `RwLock<HashMap<u64, u64>>` from this thread, each under a read lock.
pub(crate) fn rwlock_hash_map_get(n: u64) -> f64 {
    let map = RwLock::new((0..KEYS).map(|k| (k, k)).collect::<HashMap<u64, u64>>());
    let start = Instant::now();
    for i in 0..n {
        black_box(map.read().expect("rwlock").get(&key(i)).copied());
    }
    per_second(n as f64, start.elapsed())
}

/// `n` inserts (new keys, then replaced values) into a new `SharedMap` from this thread.
pub(crate) fn insert_one_thread(n: u64) -> anyhow::Result<f64> {
    let map = SharedMap::<u64, u64>::new()?;
    let start = Instant::now();
    for i in 0..n {
        map.insert(&key(i), &i)?;
    }
    Ok(per_second(n as f64, start.elapsed()))
}

/// As [`insert_one_thread`], into a `Mutex<HashMap<u64, u64>>`.
pub(crate) fn mutex_hash_map_insert(n: u64) -> f64 {
    let map = StdMutex::new(HashMap::new());
    let start = Instant::now();
    for i in 0..n {
        black_box(map.lock().expect("mutex").insert(key(i), i));
    }
    per_second(n as f64, start.elapsed())
}
